/*
 * kernel_check.c — compare every fast kernel set this CPU runs with the reference kernels,
 * on random data; exit 0 if all agree within tolerance, 1 otherwise, 2 if a set named on the
 * command line cannot run here.
 *
 * Not part of the library (build.py compiles only the .c files directly in csrc/). tests/test_kernels_cross.py
 * builds it with the kernel sources, natively and cross-compiled for arm64 to run under
 * qemu-aarch64:
 *
 *   cc -std=c11 -O2 -Icsrc csrc/tests/kernel_check.c csrc/kernels.c csrc/kernels_ref.c \
 *      csrc/kernels_avx2.c csrc/kernels_avx512.c csrc/kernels_amx.c csrc/kernels_neon.c \
 *      csrc/qact.c csrc/errbuf.c -lm -o kernel_check \
 *      && ./kernel_check [sets...]
 *
 * Tolerance: a fast result y may differ from the reference y_ref by
 *   TOL · Σ_c |W[r,c]| · |x[c]|  +  cols · 2^-149
 * (f32 accumulation instead of double; the second term covers results in the subnormal
 * range), plus, where the set rounds activations to int16 blocks for the weight type
 * (edgemoe_kernel_int16_activations), Σ_c |W[r,c]| · d_b(c) / 2 with d_b the block's scale
 * max|x| / 32767 (kernels.h, struct qact); one token over int8 activations likewise with
 * max|x| / 127. The batched entry point (edgemoe_kernel_matmul) must give bit for bit the
 * one-token results, over 3, 21 and 45 tokens. Where the reference is finite the fast result
 * must be finite; where it is not, both
 * must be the same infinity or both NaN (checked on data built so that f32 partial sums
 * cannot overflow).
 */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edgemoe.h"
#include "kernels_ref.h"

#define TOL 1e-5

/* ---------------------------------------------------------------------------------------
 * Random numbers (xorshift64*, deterministic)
 */

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t rng_u64(void) {
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Dull;
}

/* uniform in [-1, 1) */
static float rng_unit(void) {
    return (float)((double)(rng_u64() >> 11) * 0x1p-52 - 1.0);
}

static uint32_t rng_below(uint32_t n) {
    return (uint32_t)(rng_u64() % n);
}

/* ---------------------------------------------------------------------------------------
 * Random tensors in model.bin layout
 */

static const int TYPES[] = {EDGEMOE_TYPE_F32, EDGEMOE_TYPE_F16, EDGEMOE_TYPE_BF16, EDGEMOE_TYPE_Q8_0,
                            EDGEMOE_TYPE_MXFP4};
static const char *const TYPE_NAMES[] = {"f32", "f16", "bf16", "u8", "q8_0", "mxfp4"};

static size_t tensor_bytes(int type, int64_t rows, int64_t cols) {
    const size_t n = (size_t)rows * (size_t)cols;
    switch (type) {
    case EDGEMOE_TYPE_F32: return 4 * n;
    case EDGEMOE_TYPE_F16:
    case EDGEMOE_TYPE_BF16: return 2 * n;
    case EDGEMOE_TYPE_Q8_0: return n / 32 * 34;
    default: return n / 32 * 17;
    }
}

static void store_u16(uint8_t *p, uint16_t v) {
    memcpy(p, &v, sizeof v);
}

static uint16_t float_to_bf16_trunc(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return (uint16_t)(u >> 16);
}

/* f16 bits of a finite random value with exponent field in [lo, hi] (1..30) */
static uint16_t random_half(int lo, int hi) {
    const uint32_t exponent = (uint32_t)lo + rng_below((uint32_t)(hi - lo + 1));
    return (uint16_t)((rng_below(2) << 15) | (exponent << 10) | rng_below(1024));
}

/*
 * Fill w with a random tensor. scale_byte >= 0 forces every mxfp4 scale byte (else random in
 * 110..140); d_bits >= 0 forces every q8_0 scale (else random normal f16 around 2^-7).
 */
static void random_tensor(uint8_t *w, int type, int64_t rows, int64_t cols, int scale_byte,
                          int d_bits) {
    const size_t n = (size_t)rows * (size_t)cols;
    switch (type) {
    case EDGEMOE_TYPE_F32:
        for (size_t i = 0; i < n; i++) {
            const float v = rng_unit();
            memcpy(w + 4 * i, &v, 4);
        }
        break;
    case EDGEMOE_TYPE_F16:
        for (size_t i = 0; i < n; i++) store_u16(w + 2 * i, random_half(5, 16));
        break;
    case EDGEMOE_TYPE_BF16:
        for (size_t i = 0; i < n; i++) store_u16(w + 2 * i, float_to_bf16_trunc(rng_unit()));
        break;
    case EDGEMOE_TYPE_Q8_0:
        for (size_t b = 0; b < n / 32; b++) {
            uint8_t *block = w + 34 * b;
            store_u16(block, d_bits >= 0 ? (uint16_t)d_bits : random_half(6, 10));
            for (int i = 0; i < 32; i++) block[2 + i] = (uint8_t)(rng_below(255) + 129); /* -127..127 */
        }
        break;
    default:
        for (size_t i = 0; i < n / 2; i++) w[i] = (uint8_t)rng_u64();
        for (size_t g = 0; g < n / 32; g++)
            w[n / 2 + g] = (uint8_t)(scale_byte >= 0 ? scale_byte : 110 + (int)rng_below(31));
        break;
    }
}

/* ---------------------------------------------------------------------------------------
 * Comparisons
 */

static int failures = 0;
static int checks = 0;

typedef struct worst {
    double err;   /* max |y - ref| / bound-scale */
} worst;

/* Classify and compare one output; updates *wst and the failure count. */
static void compare(const char *what, double y, double ref, double scale, double floor_abs,
                    worst *wst) {
    checks++;
    if (isfinite(ref)) {
        if (!isfinite(y)) {
            if (failures++ < 20) printf("FAIL %s: got %g, reference %g (finite)\n", what, y, ref);
            return;
        }
        const double err = fabs(y - ref);
        /* the relative error reported is over results well above the subnormal range */
        if (scale > 0x1p-100 && err / scale > wst->err) wst->err = err / scale;
        if (err > TOL * scale + floor_abs) {
            if (failures++ < 20)
                printf("FAIL %s: got %.9g, reference %.9g, error %.3g > %.3g\n", what, y, ref, err,
                       TOL * scale + floor_abs);
        }
        return;
    }
    if ((isnan(ref) && !isnan(y)) || (!isnan(ref) && y != ref)) {
        if (failures++ < 20) printf("FAIL %s: got %g, reference %g\n", what, y, ref);
    }
}

/* Σ |W[r,c]|·|x[c]| for each row, from the exact dequantization. */
static void abs_products(const uint8_t *w, int type, int64_t rows, int64_t cols, const float *x,
                         double *out) {
    float *row = malloc((size_t)cols * sizeof *row + 1);
    const tensor t = {.data = w, .type = type, .rows = rows, .cols = cols};
    for (int64_t r = 0; r < rows; r++) {
        dequantize_row(&t, r, row);
        double s = 0;
        for (int64_t c = 0; c < cols; c++) {
            const double p = fabs((double)row[c]) * fabs((double)x[c]);
            if (!isnan(p)) s += p;   /* inf stays inf: no finite check then */
        }
        out[r] = s;
    }
    free(row);
}

/* Per row, what rounding x to blocks of integers within ±m (32767: int16, 127: int8) can cost:
 * Σ |W[r,c]| · (max|x| of c's block / m) / 2. */
static void quantization_bound(const uint8_t *w, int type, int64_t rows, int64_t cols,
                               const float *x, double m, double *out) {
    float *row = malloc((size_t)cols * sizeof *row + 1);
    const tensor t = {.data = w, .type = type, .rows = rows, .cols = cols};
    for (int64_t r = 0; r < rows; r++) {
        dequantize_row(&t, r, row);
        double s = 0;
        for (int64_t b = 0; b < cols / 32; b++) {
            double amax = 0, wsum = 0;
            for (int i = 0; i < 32; i++) {
                amax = fmax(amax, fabs((double)x[b * 32 + i]));
                wsum += fabs((double)row[b * 32 + i]);
            }
            s += wsum * amax / m * 0.5 * (1 + 0x1p-10);
        }
        out[r] = s;
    }
    free(row);
}

/* The batched product of n_tok tokens equals the one-token products, bit for bit, with
 * activations rounded to int16 and to int8 (one token over int8 takes kernels of its own). */
static void check_batch_equal(const char *set, int type, const uint8_t *w, int64_t rows,
                              int64_t cols, const float *x, int n_tok) {
    float *xs = malloc((size_t)(n_tok * cols) * sizeof *xs);
    float *yb = malloc((size_t)(n_tok * rows) * sizeof *yb), *y1 = malloc((size_t)rows * sizeof *y1 + 1);
    for (int t = 0; t < n_tok; t++)
        for (int64_t c = 0; c < cols; c++)
            xs[t * cols + c] = x[(c + 7 * t) % cols] * (float)(t % 5 + 1) - (float)t * 0.25f;
    for (int bits = 8; bits <= 16; bits += 8) {
        int rc = edgemoe_kernel_matmul(set, type, w, rows, cols, xs, n_tok, bits, yb);
        for (int t = 0; t < n_tok && !rc; t++) {
            rc = edgemoe_kernel_matmul(set, type, w, rows, cols, xs + t * cols, 1, bits, y1);
            checks++;
            if (!rc && memcmp(y1, yb + t * rows, (size_t)rows * sizeof *y1) != 0 && failures++ < 20)
                printf("FAIL %s matmul %s %lldx%lld int%d token %d differs from one token\n", set,
                       TYPE_NAMES[type], (long long)rows, (long long)cols, bits, t);
        }
        if (rc) {
            printf("FAIL %s %s: edgemoe_kernel_matmul returned %d\n", set, TYPE_NAMES[type], rc);
            failures++;
        }
    }
    free(xs);
    free(yb);
    free(y1);
}

static void check_matvec_case(const char *set, int type, int64_t rows, int64_t cols, float x_scale,
                              int scale_byte, int d_bits, worst *wst) {
    uint8_t *w = malloc(tensor_bytes(type, rows, cols) + 1);
    float *x = malloc((size_t)cols * sizeof *x + 1);
    float *y = malloc((size_t)rows * sizeof *y + 1), *ref = malloc((size_t)rows * sizeof *ref + 1);
    double *scale = malloc((size_t)rows * sizeof *scale + 1);
    double *qbound = calloc((size_t)rows + 1, sizeof *qbound);
    double *qbound8 = calloc((size_t)rows + 1, sizeof *qbound8);
    float *y8 = malloc((size_t)rows * sizeof *y8 + 1);
    const int integer = edgemoe_kernel_int16_activations(set, type);
    random_tensor(w, type, rows, cols, scale_byte, d_bits);
    for (int64_t c = 0; c < cols; c++) x[c] = rng_unit() * x_scale;
    int rc = edgemoe_kernel_matvec("reference", type, w, rows, cols, x, ref);
    rc |= edgemoe_kernel_matvec(set, type, w, rows, cols, x, y);
    /* one token over int8 activations: the kernels the int8 option decodes with */
    if (integer) rc |= edgemoe_kernel_matmul(set, type, w, rows, cols, x, 1, 8, y8);
    if (rc != EDGEMOE_OK) {
        printf("FAIL %s %s: edgemoe_kernel_matvec returned %d\n", set, TYPE_NAMES[type], rc);
        failures++;
    } else {
        abs_products(w, type, rows, cols, x, scale);
        if (integer) {
            quantization_bound(w, type, rows, cols, x, 32767.0, qbound);
            quantization_bound(w, type, rows, cols, x, 127.0, qbound8);
        }
        if (x_scale == 1.0f && scale_byte < 0 && d_bits < 0) {
            /* 3 tokens: one partial tile; 21: whole tiles, a second token group, partial ones;
             * 45: the amx set's tiles with int8 activations too (it takes them from 40) */
            check_batch_equal(set, type, w, rows, cols, x, 3);
            if (cols <= 544) check_batch_equal(set, type, w, rows, cols, x, 21);
            if (cols <= 544) check_batch_equal(set, type, w, rows, cols, x, 45);
        } else if (cols <= 544) {   /* extreme scales and x: a batch too (amx: its tiles) */
            check_batch_equal(set, type, w, rows, cols, x, 45);
        }
        for (int64_t r = 0; r < rows; r++) {
            char what[160];
            snprintf(what, sizeof what, "%s matvec %s %lldx%lld row %lld (scale byte %d, d %d)", set,
                     TYPE_NAMES[type], (long long)rows, (long long)cols, (long long)r, scale_byte,
                     d_bits);
            compare(what, y[r], ref[r], scale[r], (double)cols * 0x1p-149 + qbound[r], wst);
            if (!integer) continue;
            snprintf(what, sizeof what, "%s matvec %s int8 %lldx%lld row %lld (scale byte %d, d %d)",
                     set, TYPE_NAMES[type], (long long)rows, (long long)cols, (long long)r, scale_byte,
                     d_bits);
            worst unused = {0};   /* the int8 rounding dominates: not a kernel's error to report */
            compare(what, y8[r], ref[r], scale[r], (double)cols * 0x1p-149 + qbound8[r], &unused);
        }
    }
    free(w);
    free(x);
    free(y);
    free(ref);
    free(scale);
    free(qbound);
    free(qbound8);
    free(y8);
}

static void check_matvec(const char *set) {
    static const int64_t ROWS[] = {1, 3, 4, 5, 8, 17};
    static const int64_t BLOCK_COLS[] = {32, 64, 96, 160, 256, 288, 544, 2880};
    static const int64_t PLAIN_COLS[] = {1, 7, 8, 9, 15, 16, 17, 31, 33, 65, 96, 2880};
    for (size_t t = 0; t < sizeof TYPES / sizeof TYPES[0]; t++) {
        const int type = TYPES[t];
        const int blocked = type == EDGEMOE_TYPE_Q8_0 || type == EDGEMOE_TYPE_MXFP4;
        const int64_t *cols = blocked ? BLOCK_COLS : PLAIN_COLS;
        const size_t n_cols = blocked ? sizeof BLOCK_COLS / sizeof BLOCK_COLS[0]
                                      : sizeof PLAIN_COLS / sizeof PLAIN_COLS[0];
        worst wst = {0};
        for (size_t r = 0; r < sizeof ROWS / sizeof ROWS[0]; r++)
            for (size_t c = 0; c < n_cols; c++)
                check_matvec_case(set, type, ROWS[r], cols[c], 1.0f, -1, -1, &wst);
        printf("%-6s matvec %-5s max error %.3g of sum|W||x| (tolerance %.0e)\n", set, TYPE_NAMES[type],
               wst.err, TOL);
    }
}

/* Extreme scales: every mxfp4 scale byte / q8_0 d at a limit; x small enough that no f32
 * partial sum can overflow where the reference's double sum does not. */
static void check_extremes(const char *set) {
    static const int SCALE_BYTES[] = {0, 1, 2, 3, 26, 127, 200, 252, 253, 254, 255};
    static const int D_BITS[] = {0x0000, 0x8000, 0x0001, 0x03FF, 0x0400, 0x7BFF, 0xFBFF};
    worst wst = {0};
    for (size_t i = 0; i < sizeof SCALE_BYTES / sizeof SCALE_BYTES[0]; i++) {
        if (SCALE_BYTES[i] <= 200)
            check_matvec_case(set, EDGEMOE_TYPE_MXFP4, 5, 96, 1.0f, SCALE_BYTES[i], -1, &wst);
        check_matvec_case(set, EDGEMOE_TYPE_MXFP4, 5, 96, 0x1p-20f, SCALE_BYTES[i], -1, &wst);
    }
    /* x of every magnitude, subnormals included (the fast mxfp4 route rescales x) */
    check_matvec_case(set, EDGEMOE_TYPE_MXFP4, 6, 288, 0x1p-110f, -1, -1, &wst);
    check_matvec_case(set, EDGEMOE_TYPE_MXFP4, 6, 288, 0x1p-130f, -1, -1, &wst);
    check_matvec_case(set, EDGEMOE_TYPE_MXFP4, 6, 288, 0x1p100f, -1, -1, &wst);
    check_matvec_case(set, EDGEMOE_TYPE_MXFP4, 6, 288, 0x1p126f, 60, -1, &wst);
    printf("%-6s matvec mxfp4 extreme scale bytes and x: max error %.3g\n", set, wst.err);
    wst.err = 0;
    for (size_t i = 0; i < sizeof D_BITS / sizeof D_BITS[0]; i++)
        check_matvec_case(set, EDGEMOE_TYPE_Q8_0, 5, 96, 1.0f, -1, D_BITS[i], &wst);
    check_matvec_case(set, EDGEMOE_TYPE_Q8_0, 5, 96, 0x1p126f, -1, 0x0001, &wst);
    printf("%-6s matvec q8_0 extreme scales and x: max error %.3g\n", set, wst.err);
}

static void check_vector_ops(const char *set) {
    static const int64_t N[] = {1, 7, 8, 31, 32, 33, 64, 100, 2880};
    worst dot_w = {0}, ws_w = {0}, norm_w = {0}, exp_w = {0};
    for (size_t k = 0; k < sizeof N / sizeof N[0]; k++) {
        const int64_t n = N[k];
        float *a = malloc((size_t)n * sizeof *a), *b = malloc((size_t)n * sizeof *b);
        float *w = malloc((size_t)n * sizeof *w);
        float *o1 = malloc((size_t)n * sizeof *o1), *o2 = malloc((size_t)n * sizeof *o2);
        double scale = 0, d_ref = 0, d_got = 0;
        for (int64_t i = 0; i < n; i++) {
            a[i] = rng_unit();
            b[i] = rng_unit();
            w[i] = 1.0f + 0.1f * rng_unit();
            scale += fabs((double)a[i] * b[i]);
        }
        char what[96];
        int rc = edgemoe_kernel_dot("reference", a, b, n, &d_ref) | edgemoe_kernel_dot(set, a, b, n, &d_got);
        snprintf(what, sizeof what, "%s dot n=%lld", set, (long long)n);
        if (rc) failures++;
        else compare(what, d_got, d_ref, scale, 0, &dot_w);

        /* scores of a against 3 keys (b, then a, then b again), stride n */
        float keys[3 * 2880], s_ref[3], s_got[3];
        for (int64_t i = 0; i < n; i++) {
            keys[i] = b[i];
            keys[n + i] = a[i];
            keys[2 * n + i] = b[i];
        }
        rc = edgemoe_kernel_scores("reference", s_ref, a, 1, keys, n, 3, n, 0.125)
             | edgemoe_kernel_scores(set, s_got, a, 1, keys, n, 3, n, 0.125);
        if (rc) failures++;
        for (int j = 0; j < 3 && !rc; j++) {
            double sc = 0;
            for (int64_t i = 0; i < n; i++) sc += fabs((double)a[i] * keys[j * n + i]) * 0.125;
            snprintf(what, sizeof what, "%s scores n=%lld key %d", set, (long long)n, j);
            compare(what, s_got[j], s_ref[j], sc, 0x1p-126, &dot_w);
        }

        rc = edgemoe_kernel_rmsnorm("reference", o1, a, w, n, 1e-5f) | edgemoe_kernel_rmsnorm(set, o2, a, w, n, 1e-5f);
        if (rc) failures++;
        for (int64_t i = 0; i < n && !rc; i++) {
            snprintf(what, sizeof what, "%s rmsnorm n=%lld i=%lld", set, (long long)n, (long long)i);
            compare(what, o2[i], o1[i], fabs((double)o1[i]), 0, &norm_w);
        }

        /* softmax of 20·a (exponents down to about -100) and SwiGLU of the pairs (10·a, 10·b) */
        for (int64_t i = 0; i < n; i++) o1[i] = o2[i] = 20.0f * a[i];
        rc = edgemoe_kernel_softmax("reference", o1, n) | edgemoe_kernel_softmax(set, o2, n);
        if (rc) failures++;
        for (int64_t i = 0; i < n && !rc; i++) {
            snprintf(what, sizeof what, "%s softmax n=%lld i=%lld", set, (long long)n, (long long)i);
            compare(what, o2[i], o1[i], fabs((double)o1[i]), 0x1p-140, &exp_w);
        }
        float *h = malloc((size_t)(2 * n) * sizeof *h);
        for (int64_t i = 0; i < n; i++) {
            h[2 * i] = 10.0f * a[i];
            h[2 * i + 1] = 10.0f * b[i];
        }
        rc = edgemoe_kernel_swiglu("reference", o1, h, n, 1.702f, 7.0f) | edgemoe_kernel_swiglu(set, o2, h, n, 1.702f, 7.0f);
        if (rc) failures++;
        for (int64_t i = 0; i < n && !rc; i++) {
            snprintf(what, sizeof what, "%s swiglu n=%lld i=%lld", set, (long long)n, (long long)i);
            compare(what, o2[i], o1[i], fabs((double)o1[i]), 0x1p-140, &exp_w);
        }
        free(h);

        /* weighted sum of n rows of dim 64 / 70 (a tail), stride dim + 3 */
        for (int64_t dim = 64; dim <= 70; dim += 6) {
            const int64_t stride = dim + 3;
            float *rows = malloc((size_t)(n * stride) * sizeof *rows);
            float *r1 = malloc((size_t)dim * sizeof *r1), *r2 = malloc((size_t)dim * sizeof *r2);
            for (int64_t i = 0; i < n * stride; i++) rows[i] = rng_unit();
            for (int64_t i = 0; i < n; i++) a[i] = fabsf(a[i]);
            rc = edgemoe_kernel_weighted_sum("reference", r1, a, 1, rows, stride, n, dim)
                 | edgemoe_kernel_weighted_sum(set, r2, a, 1, rows, stride, n, dim);
            if (rc) failures++;
            for (int64_t d = 0; d < dim && !rc; d++) {
                double s = 0;
                for (int64_t j = 0; j < n; j++) s += fabs((double)a[j] * rows[j * stride + d]);
                snprintf(what, sizeof what, "%s weighted_sum n=%lld dim=%lld d=%lld", set, (long long)n,
                         (long long)dim, (long long)d);
                compare(what, r2[d], r1[d], s, 0, &ws_w);
            }
            free(rows);
            free(r1);
            free(r2);
        }
        free(a);
        free(b);
        free(w);
        free(o1);
        free(o2);
    }
    printf("%-6s dot max error %.3g, weighted_sum %.3g, rmsnorm %.3g, softmax and swiglu %.3g (relative)\n",
           set, dot_w.err, ws_w.err, norm_w.err, exp_w.err);
}

int main(int argc, char **argv) {
    static const char *const SETS[] = {"amx", "avx512", "avx2", "neon"};
    for (int i = 1; i < argc; i++) {
        if (!edgemoe_kernels_available(argv[i])) {
            printf("kernel set '%s' cannot run here\n", argv[i]);
            return 2;
        }
    }
    int tested = 0;
    for (size_t s = 0; s < sizeof SETS / sizeof SETS[0]; s++) {
        if (!edgemoe_kernels_available(SETS[s])) continue;
        tested++;
        check_matvec(SETS[s]);
        check_extremes(SETS[s]);
        check_vector_ops(SETS[s]);
    }
    printf("auto selects: %s\n", edgemoe_kernels_name());   /* with EDGEMOE_KERNELS unset */
    if (!tested) printf("no fast kernel set runs on this CPU; nothing to compare\n");
    printf("%d checks, %d failures\n", checks, failures);
    return failures ? 1 : 0;
}

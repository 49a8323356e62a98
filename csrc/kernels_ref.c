/*
 * kernels_ref.c — scalar reference kernels (see kernels_ref.h): clean, minimal, exact.
 *
 * Weights are read with memcpy loads, so no access depends on the alignment of the file's
 * tensors. Accumulation: dot products and sums of squares in double.
 */
#include "kernels_ref.h"

#include <math.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------
 * Scalar conversions
 */

static uint16_t load_u16(const uint8_t *p) {
    uint16_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

static float bits_to_float(uint32_t bits) {
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exponent = (h >> 10) & 0x1Fu;
    uint32_t mantissa = h & 0x3FFu;
    if (exponent == 0x1F) return bits_to_float(sign | 0x7F800000u | mantissa << 13); /* inf, NaN */
    if (exponent != 0) return bits_to_float(sign | (exponent + 112) << 23 | mantissa << 13);
    /* zero or subnormal: mantissa · 2^-24, exact in f32 */
    float magnitude = (float)mantissa * 0x1p-24f;
    return sign ? -magnitude : magnitude;
}

float bf16_to_float(uint16_t b) {
    return bits_to_float((uint32_t)b << 16);
}

/* ---------------------------------------------------------------------------------------
 * Dequantization of one row
 */

void dequantize_row_f32(const tensor *t, int64_t row, float *out) {
    memcpy(out, t->data + (size_t)(row * t->cols) * 4, (size_t)t->cols * 4);
}

void dequantize_row_f16(const tensor *t, int64_t row, float *out) {
    const uint8_t *src = t->data + (size_t)(row * t->cols) * 2;
    for (int64_t i = 0; i < t->cols; i++) out[i] = half_to_float(load_u16(src + 2 * i));
}

void dequantize_row_bf16(const tensor *t, int64_t row, float *out) {
    const uint8_t *src = t->data + (size_t)(row * t->cols) * 2;
    for (int64_t i = 0; i < t->cols; i++) out[i] = bf16_to_float(load_u16(src + 2 * i));
}

void dequantize_row_q8_0(const tensor *t, int64_t row, float *out) {
    const int64_t n_blocks = t->cols / QK8_0;
    const uint8_t *src = t->data + (size_t)(row * n_blocks) * sizeof(block_q8_0);
    for (int64_t b = 0; b < n_blocks; b++) {
        block_q8_0 block;
        memcpy(&block, src + (size_t)b * sizeof block, sizeof block);
        const float d = half_to_float(block.d);
        for (int i = 0; i < QK8_0; i++) out[b * QK8_0 + i] = d * (float)block.qs[i];
    }
}

/* FP4 E2M1 values by 4-bit code; bit 3 is the sign. */
static const float FP4_VALUES[16] = {
    +0.0f, +0.5f, +1.0f, +1.5f, +2.0f, +3.0f, +4.0f, +6.0f,
    -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f,
};

void dequantize_row_mxfp4(const tensor *t, int64_t row, float *out) {
    const int64_t n_groups = t->cols / QK_MXFP4;
    /* [rows, n_groups] 16-byte groups, then [rows, n_groups] scale bytes */
    const uint8_t *groups = t->data + (size_t)(row * n_groups) * sizeof(group_mxfp4);
    const uint8_t *scales = t->data + (size_t)(t->rows * n_groups) * sizeof(group_mxfp4)
                            + (size_t)(row * n_groups);
    for (int64_t g = 0; g < n_groups; g++) {
        const uint8_t *codes = groups + (size_t)g * sizeof(group_mxfp4);
        const int exponent = (int)scales[g] - 127;
        float *dst = out + g * QK_MXFP4;
        for (int j = 0; j < QK_MXFP4 / 2; j++) {
            dst[2 * j] = ldexpf(FP4_VALUES[codes[j] & 0x0F], exponent);
            dst[2 * j + 1] = ldexpf(FP4_VALUES[codes[j] >> 4], exponent);
        }
    }
}

void dequantize_row(const tensor *t, int64_t row, float *out) {
    switch (t->type) {
    case EDGEMOE_TYPE_F32: dequantize_row_f32(t, row, out); break;
    case EDGEMOE_TYPE_F16: dequantize_row_f16(t, row, out); break;
    case EDGEMOE_TYPE_BF16: dequantize_row_bf16(t, row, out); break;
    case EDGEMOE_TYPE_Q8_0: dequantize_row_q8_0(t, row, out); break;
    case EDGEMOE_TYPE_MXFP4: dequantize_row_mxfp4(t, row, out); break;
    default: memset(out, 0, (size_t)t->cols * sizeof *out); break; /* not a weight type */
    }
}

/* ---------------------------------------------------------------------------------------
 * Matrix-vector products: dequantize a row into work[cols], then one double-accumulated dot.
 */

typedef void (*dequantize_row_fn)(const tensor *t, int64_t row, float *out);

static void matvec_rows(const tensor *w, int64_t r0, int64_t r1, const float *x, float *y,
                        float *work, dequantize_row_fn dequantize) {
    for (int64_t r = r0; r < r1; r++) {
        dequantize(w, r, work);
        y[r] = (float)dot_f32(work, x, w->cols);
    }
}

void matvec_f32_f32(const tensor *w, int64_t r0, int64_t r1, const float *x, float *y,
                    float *work) {
    matvec_rows(w, r0, r1, x, y, work, dequantize_row_f32);
}

void matvec_f32_f16(const tensor *w, int64_t r0, int64_t r1, const float *x, float *y,
                    float *work) {
    matvec_rows(w, r0, r1, x, y, work, dequantize_row_f16);
}

void matvec_f32_bf16(const tensor *w, int64_t r0, int64_t r1, const float *x, float *y,
                    float *work) {
    matvec_rows(w, r0, r1, x, y, work, dequantize_row_bf16);
}

void matvec_f32_q8_0(const tensor *w, int64_t r0, int64_t r1, const float *x, float *y,
                    float *work) {
    matvec_rows(w, r0, r1, x, y, work, dequantize_row_q8_0);
}

void matvec_f32_mxfp4(const tensor *w, int64_t r0, int64_t r1, const float *x, float *y,
                    float *work) {
    matvec_rows(w, r0, r1, x, y, work, dequantize_row_mxfp4);
}

/* One head's scores over n keys (scores_fn of kernels.h): dot_f32 per key, inlined. */
static void scores_f32(float *out, size_t out_stride, const float *q, int nq, const float *keys,
                       size_t stride, int64_t n, int64_t dim, double scale) {
    for (int i = 0; i < nq; i++)
        for (int64_t j = 0; j < n; j++)
            out[(size_t)i * out_stride + (size_t)j] =
                (float)(dot_f32(q + (size_t)i * (size_t)dim, keys + (size_t)j * stride, dim) * scale);
}

const kernel_table KERNELS_REFERENCE = {
    .name = "reference",
    .matvec = {
        [EDGEMOE_TYPE_F32] = matvec_f32_f32,
        [EDGEMOE_TYPE_F16] = matvec_f32_f16,
        [EDGEMOE_TYPE_BF16] = matvec_f32_bf16,
        [EDGEMOE_TYPE_U8] = NULL,
        [EDGEMOE_TYPE_Q8_0] = matvec_f32_q8_0,
        [EDGEMOE_TYPE_MXFP4] = matvec_f32_mxfp4,
    },
    .quantize = qact_quantize,   /* unused: the reference has no matmul */
    .dot = dot_f32,
    .scores = scores_f32,
    .weighted_sum = weighted_sum,
    .rmsnorm = rmsnorm,
    .softmax = softmax,
    .swiglu = swiglu_clamped,
};

/* ---------------------------------------------------------------------------------------
 * Vector operations
 */

double dot_f32(const float *a, const float *b, int64_t n) {
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) sum += (double)a[i] * (double)b[i];
    return sum;
}

void vec_add(float *y, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] += x[i];
}

void vec_axpy(float *y, float a, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] += a * x[i];
}

void weighted_sum(float *out, const float *p, size_t p_stride, int nq, const float *rows,
                  size_t stride, int64_t n, int64_t dim, double *acc) {
    for (int i = 0; i < nq; i++, p += p_stride, out += dim) {
        for (int64_t d = 0; d < dim; d++) acc[d] = 0.0;
        for (int64_t j = 0; j < n; j++) {
            const float *v = rows + (size_t)j * stride;
            for (int64_t d = 0; d < dim; d++) acc[d] += (double)p[j] * (double)v[d];
        }
        for (int64_t d = 0; d < dim; d++) out[d] = (float)acc[d];
    }
}

void rmsnorm(float *out, const float *x, const float *w, int64_t n, float eps) {
    const double mean_square = dot_f32(x, x, n) / (double)n;
    const float scale = (float)(1.0 / sqrt(mean_square + (double)eps));
    for (int64_t i = 0; i < n; i++) out[i] = w[i] * (x[i] * scale);
}

void softmax(float *x, int64_t n) {
    float max = x[0];
    for (int64_t i = 1; i < n; i++) max = x[i] > max ? x[i] : max;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) {
        x[i] = expf(x[i] - max);
        sum += x[i];
    }
    const float inv = (float)(1.0 / sum);
    for (int64_t i = 0; i < n; i++) x[i] *= inv;
}

void rope_rotate(float *x, int n_heads, int head_dim, const float *cos_, const float *sin_) {
    const int half = head_dim / 2;
    for (int h = 0; h < n_heads; h++) {
        float *first = x + (size_t)h * (size_t)head_dim; /* [half] */
        float *second = first + half;                    /* [half] */
        for (int i = 0; i < half; i++) {
            const float a = first[i], b = second[i];
            first[i] = a * cos_[i] - b * sin_[i];
            second[i] = b * cos_[i] + a * sin_[i];
        }
    }
}

void swiglu_clamped(float *out, const float *h, int64_t n, float alpha, float limit) {
    for (int64_t j = 0; j < n; j++) {
        float gate = h[2 * j], up = h[2 * j + 1];
        gate = gate < limit ? gate : limit;            /* min(gate, limit); NaN → limit */
        up = up < -limit ? -limit : (up > limit ? limit : up);
        const float glu = gate / (1.0f + expf(-alpha * gate));
        out[j] = glu * (up + 1.0f);
    }
}

/* 1 if a beats b for the top-k: greater, or a number against a NaN. */
static int topk_better(float a, float b) {
    if (isnan(b)) return !isnan(a);
    return a > b;
}

void topk_indices(const float *x, int n, int k, int *idx) {
    for (int slot = 0; slot < k; slot++) {
        int best = -1;
        for (int j = 0; j < n; j++) {
            int taken = 0;
            for (int s = 0; s < slot; s++) taken |= idx[s] == j;
            if (taken) continue;
            if (best < 0 || topk_better(x[j], x[best])) best = j;
        }
        idx[slot] = best;
    }
}

/*
 * kernels.c — choose the kernel table at run time, and the edgemoe_kernel_* entry points
 * that let tests and benchmarks call one kernel of a chosen set directly.
 *
 * Every set this library knows is listed in KNOWN, best first. A set is *built* when the
 * library was compiled for its architecture (the table exists) and *runnable* when, in
 * addition, the CPU has the instructions it needs. The CPU is probed once; the result is
 * cached in an atomic (the probe is a pure function of the CPU, so threads racing to fill the
 * cache store the same value; no pthread or <threads.h> needed).
 *
 * EDGEMOE_KERNELS is read each time a model is opened (the tests switch it between models);
 * "auto", empty or unset pick the first runnable set of KNOWN.
 */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edgemoe.h"
#include "errbuf.h"
#include "kernels.h"
#include "kernels_isa.h"
#include "kernels_ref.h"

#if defined(EDGEMOE_BUILD_AVX2) && defined(__GNUC__)
#include <cpuid.h>
#endif

/* ---------------------------------------------------------------------------------------
 * What this CPU can run
 */

enum {
    CPU_PROBED = 1,    /* the cache below is filled */
    CPU_AVX2 = 2,      /* AVX2 + FMA + F16C, with OS support for the YMM state */
    CPU_NEON = 4,      /* arm64 Advanced SIMD */
    CPU_AVX512 = 8,    /* AVX-512 F, BW, VL and VNNI, with OS support for the ZMM state */
    CPU_AMX = 16,      /* AMX-TILE and AMX-INT8, the tile data granted to this process */
};

static atomic_int cpu_flags_cache;   /* 0 until the first probe */

static int cpu_probe(void) {
    int flags = CPU_PROBED;
#if defined(EDGEMOE_BUILD_AVX2) && defined(__GNUC__)
    /* The compiler runtime's detection checks the OS has enabled the AVX state (XGETBV) too.
     * F16C comes from CPUID directly: clang's __builtin_cpu_supports does not know it. */
    unsigned a = 0, b = 0, c = 0, d = 0;
    const int f16c = __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C);
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c)
        flags |= CPU_AVX2;
#if defined(EDGEMOE_EMULATE_AVX512)
    /* tests only: kernels_avx512.c built on SIMDe runs its intrinsics as portable C */
    if (flags & CPU_AVX2) flags |= CPU_AVX512;
#else
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")
        && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni"))
        flags |= CPU_AVX512;
#endif
    /* the CPU's AMX, and Linux's grant of the tile data (amx_enable asks for it; built with
     * EDGEMOE_EMULATE_AMX, for tests, it says yes: the tile instructions are portable C) */
    if ((flags & CPU_AVX512) && amx_enable()) flags |= CPU_AMX;
#endif
#if defined(EDGEMOE_BUILD_NEON)
    flags |= CPU_NEON;
#endif
    return flags;
}

static int cpu_flags(void) {
    int flags = atomic_load_explicit(&cpu_flags_cache, memory_order_relaxed);
    if (flags == 0) {
        flags = cpu_probe();
        atomic_store_explicit(&cpu_flags_cache, flags, memory_order_relaxed);
    }
    return flags;
}

/* ---------------------------------------------------------------------------------------
 * The sets
 */

typedef struct kernel_set {
    const char *name;
    const kernel_table *table;   /* NULL when not built for this architecture */
    int cpu_needs;               /* CPU_* flags the set needs */
    const char *needs;           /* for messages */
} kernel_set;

/* Best first; the reference stays last (it runs everywhere). */
static const kernel_set KNOWN[] = {
#if defined(EDGEMOE_BUILD_AMX)
    {"amx", &KERNELS_AMX, CPU_AMX | CPU_AVX512 | CPU_AVX2,
     "an x86-64 CPU with AVX-512 (F, BW, VL), VNNI and AMX-INT8, and an OS that grants the tiles"},
#else
    {"amx", NULL, CPU_AMX | CPU_AVX512 | CPU_AVX2,
     "an x86-64 CPU with AVX-512 (F, BW, VL), VNNI and AMX-INT8, and an OS that grants the tiles"},
#endif
#if defined(EDGEMOE_BUILD_AVX512)
    {"avx512", &KERNELS_AVX512, CPU_AVX512 | CPU_AVX2,
     "an x86-64 CPU with AVX-512 (F, BW, VL) and VNNI"},
#else
    {"avx512", NULL, CPU_AVX512 | CPU_AVX2, "an x86-64 CPU with AVX-512 (F, BW, VL) and VNNI"},
#endif
#if defined(EDGEMOE_BUILD_AVX2)
    {"avx2", &KERNELS_AVX2, CPU_AVX2, "an x86-64 CPU with AVX2, FMA and F16C"},
#else
    {"avx2", NULL, CPU_AVX2, "an x86-64 CPU with AVX2, FMA and F16C"},
#endif
#if defined(EDGEMOE_BUILD_NEON)
    {"neon", &KERNELS_NEON, CPU_NEON, "an arm64 CPU"},
#else
    {"neon", NULL, CPU_NEON, "an arm64 CPU"},
#endif
    {"reference", &KERNELS_REFERENCE, 0, "nothing"},
};
#define N_KNOWN (sizeof KNOWN / sizeof KNOWN[0])

static int set_runnable(const kernel_set *s) {
    return s->table && (cpu_flags() & s->cpu_needs) == s->cpu_needs;
}

static int is_auto(const char *name) {
    return !name || !*name || strcmp(name, "auto") == 0;
}

int kernels_find(const char *name, const kernel_table **out) {
    *out = NULL;
    for (size_t i = 0; i < N_KNOWN; i++) {
        if (is_auto(name) ? set_runnable(&KNOWN[i]) : strcmp(KNOWN[i].name, name) == 0) {
            if (!set_runnable(&KNOWN[i])) return EDGEMOE_ERR_UNSUPPORTED;
            *out = KNOWN[i].table;
            return EDGEMOE_OK;
        }
    }
    return EDGEMOE_ERR_ARG;   /* "auto" always finds the reference, so this is an unknown name */
}

/* "avx2, reference": the sets runnable here, for messages. */
static void runnable_list(char *buf, size_t len) {
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < N_KNOWN; i++) {
        if (!set_runnable(&KNOWN[i])) continue;
        int n = snprintf(buf + used, len - used, "%s%s", used ? ", " : "", KNOWN[i].name);
        if (n < 0 || (size_t)n >= len - used) return;
        used += (size_t)n;
    }
}

int kernels_from_env(const kernel_table **out, char *err, size_t err_len) {
    const char *wanted = getenv("EDGEMOE_KERNELS");
    int rc = kernels_find(wanted, out);
    if (rc == EDGEMOE_OK) return rc;
    char runnable[128];
    runnable_list(runnable, sizeof runnable);
    if (rc == EDGEMOE_ERR_ARG)
        return error_write(err, err_len, rc,
                           "EDGEMOE_KERNELS='%.64s' is not a kernel set (use auto, reference, avx2, "
                           "avx512, amx or neon; this CPU runs: %s)", wanted, runnable);
    const kernel_set *set = NULL;
    for (size_t i = 0; i < N_KNOWN; i++)
        if (strcmp(KNOWN[i].name, wanted) == 0) set = &KNOWN[i];
    /* a set this CPU cannot run is as much a bad setting as an unknown name: ERR_ARG both */
    return error_write(err, err_len, EDGEMOE_ERR_ARG,
                       "EDGEMOE_KERNELS='%s' cannot run here: it needs %s%s (this CPU runs: %s)",
                       wanted, set ? set->needs : "?",
                       set && !set->table ? " and this build is for another architecture" : "",
                       runnable);
}

const char *edgemoe_kernels_name(void) {
    const kernel_table *t;
    return kernels_find(getenv("EDGEMOE_KERNELS"), &t) == EDGEMOE_OK ? t->name : "invalid";
}

/* ---------------------------------------------------------------------------------------
 * Direct calls, for tests and benchmarks
 */

int edgemoe_kernels_available(const char *name) {
    const kernel_table *t;
    return kernels_find(name, &t) == EDGEMOE_OK;
}

/* The table named kernels, or a status: ERR_ARG for a NULL or unknown name. */
static int table_for_call(const char *kernels, const kernel_table **out) {
    if (!kernels) {
        *out = NULL;
        return EDGEMOE_ERR_ARG;
    }
    return kernels_find(kernels, out);
}

static int is_weight_type(int type) {
    return type == EDGEMOE_TYPE_F32 || type == EDGEMOE_TYPE_F16 || type == EDGEMOE_TYPE_BF16
           || type == EDGEMOE_TYPE_Q8_0 || type == EDGEMOE_TYPE_MXFP4;
}

/* y[t·rows + r] = W[r, :] · x[t·cols :] for t < n_tok: the path the forward pass takes (the
 * set's integer matmul over quantized activations where it has one, else matvec per token). */
static int kernel_matmul(const kernel_table *t, const tensor *w, const float *x, int64_t n_tok,
                         int act_bits, float *y) {
    const int64_t cols = w->cols;
    if ((uint64_t)cols > SIZE_MAX / sizeof(float) / 4 || (uint64_t)n_tok > SIZE_MAX / 4 / (cols ? (uint64_t)cols : 1))
        return EDGEMOE_ERR_ARG;
    if (t->matmul[w->type]) {
        const size_t n = (size_t)n_tok * (size_t)cols;
        qact a = {.x = x, .n_tok = n_tok, .cols = cols, .bits = act_bits};
        a.q = malloc(n ? n * sizeof(int16_t) : 1);
        a.d = malloc(n ? n / 32 * sizeof(float) + 1 : 1);
        a.exact = malloc(n_tok ? (size_t)n_tok : 1);
        int rc = EDGEMOE_ERR_NOMEM;
        if (a.q && a.d && a.exact) {
            t->quantize(&a, t->qact_order[w->type]);
            t->matmul[w->type](w, 0, w->rows, &a, y, w->rows);
            rc = EDGEMOE_OK;
        }
        free(a.q);
        free(a.d);
        free(a.exact);
        return rc;
    }
    float *work = malloc(cols ? (size_t)cols * sizeof(float) : 1);
    if (!work) return EDGEMOE_ERR_NOMEM;
    for (int64_t i = 0; i < n_tok; i++)
        t->matvec[w->type](w, 0, w->rows, x + i * cols, y + i * w->rows, work);
    free(work);
    return EDGEMOE_OK;
}

int edgemoe_kernel_matmul(const char *kernels, int type, const uint8_t *w, int64_t rows,
                          int64_t cols, const float *x, int64_t n_tok, int32_t act_bits, float *y) {
    const kernel_table *t;
    int rc = table_for_call(kernels, &t);
    if (rc) return rc;
    if (!is_weight_type(type) || !w || !x || !y || rows < 0 || cols < 0 || n_tok < 0
        || (act_bits != 8 && act_bits != 16))
        return EDGEMOE_ERR_ARG;
    if ((type == EDGEMOE_TYPE_Q8_0 || type == EDGEMOE_TYPE_MXFP4) && cols % 32 != 0)
        return EDGEMOE_ERR_ARG;
    const tensor view = {.data = w, .type = type, .rows = rows, .cols = cols};
    return kernel_matmul(t, &view, x, n_tok, act_bits, y);
}

int edgemoe_kernel_int16_activations(const char *kernels, int type) {
    const kernel_table *t;
    if (table_for_call(kernels, &t) || !is_weight_type(type)) return 0;
    return t->matmul[type] != NULL;
}

int edgemoe_kernel_matvec(const char *kernels, int type, const uint8_t *w, int64_t rows,
                          int64_t cols, const float *x, float *y) {
    return edgemoe_kernel_matmul(kernels, type, w, rows, cols, x, 1, 16, y);
}

int edgemoe_kernel_quantize(const char *kernels, const float *x, int64_t n_tok, int64_t cols,
                            int32_t bits, int32_t order, int16_t *q, float *d, uint8_t *exact) {
    const kernel_table *t;
    int rc = table_for_call(kernels, &t);
    if (rc) return rc;
    if (!x || !q || !d || !exact || n_tok < 0 || cols < 0 || cols % 32 != 0
        || (bits != 8 && bits != 16) || order < QACT_ORDER_NATURAL || order > QACT_ORDER_EVEN_ODD_HALVES)
        return EDGEMOE_ERR_ARG;
    qact a = {.x = x, .q = q, .d = d, .exact = exact, .n_tok = n_tok, .cols = cols, .bits = bits};
    t->quantize(&a, order);
    return EDGEMOE_OK;
}

int edgemoe_kernel_dot(const char *kernels, const float *a, const float *b, int64_t n,
                       double *out) {
    const kernel_table *t;
    int rc = table_for_call(kernels, &t);
    if (rc) return rc;
    if (!a || !b || !out || n < 0) return EDGEMOE_ERR_ARG;
    *out = t->dot(a, b, n);
    return EDGEMOE_OK;
}

int edgemoe_kernel_scores(const char *kernels, float *out, const float *q, int32_t nq,
                          const float *keys, int64_t stride, int64_t n, int64_t dim, double scale) {
    const kernel_table *t;
    int rc = table_for_call(kernels, &t);
    if (rc) return rc;
    if (!out || !q || !keys || nq < 1 || n < 0 || dim < 0 || stride < dim) return EDGEMOE_ERR_ARG;
    t->scores(out, (size_t)n, q, nq, keys, (size_t)stride, n, dim, scale);
    return EDGEMOE_OK;
}

int edgemoe_kernel_weighted_sum(const char *kernels, float *out, const float *p, int32_t nq,
                                const float *rows, int64_t stride, int64_t n, int64_t dim) {
    const kernel_table *t;
    int rc = table_for_call(kernels, &t);
    if (rc) return rc;
    if (!out || !p || !rows || nq < 1 || n < 0 || dim < 0 || stride < dim) return EDGEMOE_ERR_ARG;
    if ((uint64_t)dim > SIZE_MAX / sizeof(double)) return EDGEMOE_ERR_ARG;
    double *acc = malloc(dim ? (size_t)dim * sizeof(double) : 1);
    if (!acc) return EDGEMOE_ERR_NOMEM;
    t->weighted_sum(out, p, (size_t)n, nq, rows, (size_t)stride, n, dim, acc);
    free(acc);
    return EDGEMOE_OK;
}

int edgemoe_kernel_softmax(const char *kernels, float *x, int64_t n) {
    const kernel_table *t;
    int rc = table_for_call(kernels, &t);
    if (rc) return rc;
    if (!x || n < 1) return EDGEMOE_ERR_ARG;
    t->softmax(x, n);
    return EDGEMOE_OK;
}

int edgemoe_kernel_swiglu(const char *kernels, float *out, const float *h, int64_t n, float alpha,
                          float limit) {
    const kernel_table *t;
    int rc = table_for_call(kernels, &t);
    if (rc) return rc;
    if (!out || !h || n < 0) return EDGEMOE_ERR_ARG;
    t->swiglu(out, h, n, alpha, limit);
    return EDGEMOE_OK;
}

int edgemoe_kernel_rmsnorm(const char *kernels, float *out, const float *x, const float *w,
                           int64_t n, float eps) {
    const kernel_table *t;
    int rc = table_for_call(kernels, &t);
    if (rc) return rc;
    if (!out || !x || !w || n < 1) return EDGEMOE_ERR_ARG;
    t->rmsnorm(out, x, w, n, eps);
    return EDGEMOE_OK;
}

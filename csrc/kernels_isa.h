/*
 * kernels_isa.h — the kernel tables of the instruction-set-specific files.
 *
 * Each table exists only in a build for its architecture; whether the CPU running the build
 * can use it is decided at run time by kernels.c.
 */
#ifndef EDGEMOE_KERNELS_ISA_H
#define EDGEMOE_KERNELS_ISA_H

#include "kernels.h"

#if defined(__x86_64__) || defined(_M_X64)
#define EDGEMOE_BUILD_AVX2 1
/* "avx2" (kernels_avx2.c): needs AVX2, FMA and F16C. */
extern const kernel_table KERNELS_AVX2;

#define EDGEMOE_BUILD_AVX512 1
/* "avx512" (kernels_avx512.c): needs what "avx2" needs plus AVX-512 F, BW, VL and VNNI. */
extern const kernel_table KERNELS_AVX512;

#define EDGEMOE_BUILD_AMX 1
/* "amx" (kernels_amx.c): needs what "avx512" needs plus AMX-TILE and AMX-INT8, and the OS's
 * leave to use the tile data (amx_enable). */
extern const kernel_table KERNELS_AMX;

/* 1 if this process may use AMX tiles: the CPU has AMX-TILE and AMX-INT8, the OS saves their
 * state (XCR0) and grants this process the tile data (Linux's ARCH_REQ_XCOMP_PERM, asked for
 * here once). Call only where CPUID leaf 7 exists (an AVX2 CPU). */
int amx_enable(void);

/* The avx512 kernels the amx set shares: all but its batched q8_0 / mxfp4 products (one
 * token, or a batch the tiles do not pay for, still goes to matmul_int_avx512). */
void matmul_int_avx512(const tensor *w, int64_t r0, int64_t r1, const qact *x, float *y,
                       int64_t ldy);
double dot_f32_avx512(const float *a, const float *b, int64_t n);
void scores_avx512(float *out, size_t out_stride, const float *q, int nq, const float *keys,
                   size_t stride, int64_t n, int64_t dim, double scale);
void weighted_sum_avx512(float *out, const float *p, size_t p_stride, int nq, const float *rows,
                         size_t stride, int64_t n, int64_t dim, double *acc_unused);
void softmax_avx512(float *x, int64_t n);
void swiglu_avx512(float *out, const float *h, int64_t n, float alpha, float limit);

/* The entries of the avx512 table that the amx table has too: all but the name and the
 * matmul entries (one list for both, so the two sets cannot drift apart). */
#define KERNELS_AVX512_SHARED_ENTRIES                                                              \
    .matvec = {                                                                                    \
        [EDGEMOE_TYPE_F32] = matvec_f32_f32_avx2,                                                  \
        [EDGEMOE_TYPE_F16] = matvec_f32_f16_avx2,                                                  \
        [EDGEMOE_TYPE_BF16] = matvec_f32_bf16_avx2,                                                \
        [EDGEMOE_TYPE_U8] = NULL,                                                                  \
        [EDGEMOE_TYPE_Q8_0] = matvec_f32_q8_0_avx2,                                                \
        [EDGEMOE_TYPE_MXFP4] = matvec_f32_mxfp4_avx2,                                              \
    },                                                                                             \
    .qact_order = {                                                                                \
        [EDGEMOE_TYPE_Q8_0] = QACT_ORDER_NATURAL,                                                  \
        [EDGEMOE_TYPE_MXFP4] = QACT_ORDER_NATURAL,                                                 \
    },                                                                                             \
    .quantize = qact_quantize_avx2, .dot = dot_f32_avx512, .scores = scores_avx512,                \
    .weighted_sum = weighted_sum_avx512, .rmsnorm = rmsnorm_avx2, .softmax = softmax_avx512,       \
    .swiglu = swiglu_avx512

/* The avx2 kernels the avx512 set shares (every CPU with AVX-512 has AVX2, FMA and F16C):
 * its entries for the products it has no 512-bit kernel for, and the exact f32 routes. */
void matvec_f32_f32_avx2(const tensor *w, int64_t r0, int64_t r1, const float *x, float *y,
                         float *work);
void matvec_f32_f16_avx2(const tensor *w, int64_t r0, int64_t r1, const float *x, float *y,
                         float *work);
void matvec_f32_bf16_avx2(const tensor *w, int64_t r0, int64_t r1, const float *x, float *y,
                          float *work);
void matvec_f32_q8_0_avx2(const tensor *w, int64_t r0, int64_t r1, const float *x, float *y,
                          float *work);
void matvec_f32_mxfp4_avx2(const tensor *w, int64_t r0, int64_t r1, const float *x, float *y,
                           float *work);
/* qact_quantize with 8 lanes at a time: the same q, d and exact bit for bit. */
void qact_quantize_avx2(qact *a, int order);
void rmsnorm_avx2(float *out, const float *x, const float *w, int64_t n, float eps);
/* 1 if every mxfp4 scale byte of s[n] takes the integer kernels (2..252), else 0. */
int scales_fast_avx2(const uint8_t *s, size_t n);
/* Row r of W (q8_0 or mxfp4) · xf by the exact f32 route (matches the reference's infinities
 * and NaNs): rows with a scale byte outside 2..252, and tokens qact marked exact. */
float row_exact_avx2(const tensor *w, int64_t r, const float *xf);
#endif

#if defined(__aarch64__)
#define EDGEMOE_BUILD_NEON 1
/* "neon" (kernels_neon.c): any arm64 CPU. */
extern const kernel_table KERNELS_NEON;
#endif

#endif /* EDGEMOE_KERNELS_ISA_H */

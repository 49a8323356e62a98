/*
 * kernels_neon.c — the "neon" kernel set: arm64 Advanced SIMD twins of kernels_ref.c.
 *
 * NEON is part of the arm64 baseline, so no target attribute or run-time check is needed
 * beyond the architecture, except for the one-token int8 kernels, which use the dot product
 * extension (SDOT, Armv8.2+) where the CPU reports it; on other architectures the file
 * compiles to nothing.
 *
 * Numerics: as kernels_avx2.c (see there).
 * - matvec (every weight type; also the exact route of the integer kernels): f32 activations,
 *   weights dequantized to exactly the reference's values, f32 FMA accumulation in several
 *   sums; block scales multiply the block's sum, except for mxfp4 rows with a scale byte
 *   outside 2..252 (or an x above 2^100), which take the per-element route so that overflow
 *   to infinity happens exactly where the reference's does.
 * - matmul (q8_0 and mxfp4 only): activations rounded to int16 blocks of 32 (struct qact,
 *   kernels.h), exact int32 block sums, f32 scaling and accumulation; the rounding of x is the
 *   one error added to the matvec's (bound in tests/test_kernels.py). Tokens qact marks exact
 *   and mxfp4 rows with a scale byte outside 2..252 take the f32 matvec routes. One token or
 *   many, a row's result is the same bit for bit.
 * (arm64 Linux runs with subnormals enabled, FPCR.FZ = 0, as the reference assumes.)
 */
#if defined(__aarch64__)

#include <arm_neon.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#if defined(__linux__)
#include <sys/auxv.h>
#elif defined(__APPLE__)
#include <sys/sysctl.h>
#endif

#include "kernels_isa.h"
#include "kernels_ref.h"

#define INLINE static inline __attribute__((always_inline))

/* ---------------------------------------------------------------------------------------
 * Helpers
 */

INLINE float32x4_t load4_f32(const uint8_t *p) {
    return vreinterpretq_f32_u8(vld1q_u8(p));   /* byte load: no alignment needed */
}

INLINE float load_f32(const uint8_t *p) {
    float v;
    memcpy(&v, p, sizeof v);
    return v;
}

INLINE uint16_t load_u16(const uint8_t *p) {
    uint16_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* Ask for the weight bytes 4 KiB ahead of p (see kernels_avx2.c: weights stream from DRAM).
 * A prefetch never faults; the address is formed as an integer. */
INLINE void prefetch_ahead(const uint8_t *p) {
    __builtin_prefetch((const void *)((uintptr_t)p + 4096), 0, 3);
}

/* 16 int8 → 4 × 4 f32 (exact), in order. */
INLINE void i8x16_to_f32(int8x16_t v, float32x4_t out[4]) {
    const int16x8_t lo = vmovl_s8(vget_low_s8(v)), hi = vmovl_high_s8(v);
    out[0] = vcvtq_f32_s32(vmovl_s16(vget_low_s16(lo)));
    out[1] = vcvtq_f32_s32(vmovl_high_s16(lo));
    out[2] = vcvtq_f32_s32(vmovl_s16(vget_low_s16(hi)));
    out[3] = vcvtq_f32_s32(vmovl_high_s16(hi));
}

/* ---------------------------------------------------------------------------------------
 * matvec, f32 / f16 / bf16 weights: four rows at a time, 8 columns per step, scalar tail.
 * The three differ only in how 8 weights become two float32x4_t.
 */

typedef enum { PLAIN_F32, PLAIN_F16, PLAIN_BF16 } plain_type;

INLINE void plain_load8(const uint8_t *p, const plain_type t, float32x4_t *a, float32x4_t *b) {
    if (t == PLAIN_F32) {
        *a = load4_f32(p);
        *b = load4_f32(p + 16);
    } else if (t == PLAIN_F16) {
        const float16x8_t h = vreinterpretq_f16_u8(vld1q_u8(p));
        *a = vcvt_f32_f16(vget_low_f16(h));
        *b = vcvt_high_f32_f16(h);
    } else {
        const uint16x8_t h = vreinterpretq_u16_u8(vld1q_u8(p));
        *a = vreinterpretq_f32_u32(vshll_n_u16(vget_low_u16(h), 16));
        *b = vreinterpretq_f32_u32(vshll_high_n_u16(h, 16));
    }
}

INLINE float plain_scalar(const uint8_t *p, const plain_type t) {
    if (t == PLAIN_F32) return load_f32(p);
    if (t == PLAIN_F16) return half_to_float(load_u16(p));
    return bf16_to_float(load_u16(p));
}

INLINE void rows_plain(const uint8_t *row0, size_t row_bytes, int64_t cols, const float *x,
                       float *y, const int nr, const plain_type t) {
    const size_t elem = t == PLAIN_F32 ? 4 : 2;
    float32x4_t acc[4] = {vdupq_n_f32(0), vdupq_n_f32(0), vdupq_n_f32(0), vdupq_n_f32(0)};
    float32x4_t acc2[4] = {vdupq_n_f32(0), vdupq_n_f32(0), vdupq_n_f32(0), vdupq_n_f32(0)};
    int64_t c = 0;
    for (; c + 8 <= cols; c += 8) {
        const float32x4_t x0 = vld1q_f32(x + c), x1 = vld1q_f32(x + c + 4);
        for (int i = 0; i < nr; i++) {
            const uint8_t *w = row0 + (size_t)i * row_bytes + (size_t)c * elem;
            float32x4_t w0, w1;
            if (c % 16 == 0) prefetch_ahead(w);
            plain_load8(w, t, &w0, &w1);
            acc[i] = vfmaq_f32(acc[i], w0, x0);
            acc2[i] = vfmaq_f32(acc2[i], w1, x1);
        }
    }
    for (int i = 0; i < nr; i++) {
        const uint8_t *w = row0 + (size_t)i * row_bytes;
        float sum = vaddvq_f32(vaddq_f32(acc[i], acc2[i]));
        for (int64_t k = c; k < cols; k++) sum += plain_scalar(w + (size_t)k * elem, t) * x[k];
        y[i] = sum;
    }
}

INLINE void matvec_plain(const tensor *w, int64_t r0, int64_t r1, const float *x, float *y,
                         const plain_type t) {
    const size_t row_bytes = (size_t)w->cols * (t == PLAIN_F32 ? 4 : 2);
    int64_t r = r0;
    for (; r + 4 <= r1; r += 4)
        rows_plain(w->data + (size_t)r * row_bytes, row_bytes, w->cols, x, y + r, 4, t);
    for (; r < r1; r++)
        rows_plain(w->data + (size_t)r * row_bytes, row_bytes, w->cols, x, y + r, 1, t);
}

static void matvec_f32_f32_neon(const tensor *w, int64_t r0, int64_t r1, const float *x,
                               float *y, float *work) {
    (void)work;
    matvec_plain(w, r0, r1, x, y, PLAIN_F32);
}

static void matvec_f32_f16_neon(const tensor *w, int64_t r0, int64_t r1, const float *x,
                               float *y, float *work) {
    (void)work;
    matvec_plain(w, r0, r1, x, y, PLAIN_F16);
}

static void matvec_f32_bf16_neon(const tensor *w, int64_t r0, int64_t r1, const float *x,
                               float *y, float *work) {
    (void)work;
    matvec_plain(w, r0, r1, x, y, PLAIN_BF16);
}

/* ---------------------------------------------------------------------------------------
 * matvec, q8_0 weights: per block Σ q·x in f32, then acc += d · that sum. If some |x| exceeds
 * 2^100 (or is NaN), Σ q·x could overflow where the reference's Σ (d·q)·x does not: such a
 * call forms each weight d·q first, as the reference does.
 */

/* 1 if every |x[i]| <= 2^100 (no NaN): unscaled block sums cannot overflow then. */
static int x_in_block_range(const float *x, int64_t n) {
    int out_of_range = 0;
    for (int64_t i = 0; i < n; i++) out_of_range |= !(fabsf(x[i]) <= 0x1p100f);
    return !out_of_range;
}

INLINE float32x4_t block_dot_q8(const uint8_t *qs, const float32x4_t x[8]) {
    float32x4_t q[8];
    i8x16_to_f32(vld1q_s8((const int8_t *)qs), q);
    i8x16_to_f32(vld1q_s8((const int8_t *)(qs + 16)), q + 4);
    float32x4_t s0 = vmulq_f32(q[0], x[0]), s1 = vmulq_f32(q[1], x[1]);
    for (int k = 2; k < 8; k += 2) {
        s0 = vfmaq_f32(s0, q[k], x[k]);
        s1 = vfmaq_f32(s1, q[k + 1], x[k + 1]);
    }
    return vaddq_f32(s0, s1);
}

/* f16 bits → f32 with the conversion instruction (exact). */
INLINE float half_bits_to_f32(uint16_t h) {
    return vgetq_lane_f32(vcvt_f32_f16(vreinterpret_f16_u16(vdup_n_u16(h))), 0);
}

INLINE void rows_q8_0(const uint8_t *row0, size_t row_bytes, int64_t n_blocks, const float *x,
                      float *y, const int nr) {
    float32x4_t acc[4] = {vdupq_n_f32(0), vdupq_n_f32(0), vdupq_n_f32(0), vdupq_n_f32(0)};
    for (int64_t b = 0; b < n_blocks; b++) {
        float32x4_t xv[8];
        for (int k = 0; k < 8; k++) xv[k] = vld1q_f32(x + b * QK8_0 + 4 * k);
        for (int i = 0; i < nr; i++) {
            const uint8_t *block = row0 + (size_t)i * row_bytes + (size_t)b * sizeof(block_q8_0);
            prefetch_ahead(block);
            acc[i] = vfmaq_n_f32(acc[i], block_dot_q8(block + 2, xv), half_bits_to_f32(load_u16(block)));
        }
    }
    for (int i = 0; i < nr; i++) y[i] = vaddvq_f32(acc[i]);
}

/* One row with each weight d·q formed first (exact), as the reference. */
static float row_q8_0_exact(const uint8_t *row, int64_t n_blocks, const float *x) {
    float32x4_t acc = vdupq_n_f32(0);
    for (int64_t b = 0; b < n_blocks; b++) {
        const uint8_t *block = row + (size_t)b * sizeof(block_q8_0);
        const float d = half_bits_to_f32(load_u16(block));
        float32x4_t q[8];
        i8x16_to_f32(vld1q_s8((const int8_t *)(block + 2)), q);
        i8x16_to_f32(vld1q_s8((const int8_t *)(block + 18)), q + 4);
        for (int k = 0; k < 8; k++)
            acc = vfmaq_f32(acc, vmulq_n_f32(q[k], d), vld1q_f32(x + b * QK8_0 + 4 * k));
    }
    return vaddvq_f32(acc);
}

static void matvec_f32_q8_0_neon(const tensor *w, int64_t r0, int64_t r1, const float *x,
                                 float *y, float *work) {
    (void)work;
    const int64_t n_blocks = w->cols / QK8_0;
    const size_t row_bytes = (size_t)n_blocks * sizeof(block_q8_0);
    if (!x_in_block_range(x, w->cols)) {
        for (int64_t r = r0; r < r1; r++)
            y[r] = row_q8_0_exact(w->data + (size_t)r * row_bytes, n_blocks, x);
        return;
    }
    int64_t r = r0;
    for (; r + 4 <= r1; r += 4)
        rows_q8_0(w->data + (size_t)r * row_bytes, row_bytes, n_blocks, x, y + r, 4);
    for (; r < r1; r++)
        rows_q8_0(w->data + (size_t)r * row_bytes, row_bytes, n_blocks, x, y + r, 1);
}

/* ---------------------------------------------------------------------------------------
 * matvec, mxfp4 weights: a table lookup maps each nibble to twice its FP4 value as an int8
 * (an integer), the group's scale is 2^(e − 128), so (2·FP4) · 2^(e−128) is exactly the
 * reference's ldexpf(FP4, e − 127). The low nibbles are a group's even elements and the high
 * nibbles its odd ones; vld2q_f32 splits x the same way as it loads.
 */

#define MXFP4_FAST_MIN_SCALE 2     /* 2^(e−128) normal; see kernels_avx2.c */
#define MXFP4_FAST_MAX_SCALE 252   /* 12 · 2^124 < FLT_MAX: a group cannot overflow */

static int scales_fast(const uint8_t *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] < MXFP4_FAST_MIN_SCALE || s[i] > MXFP4_FAST_MAX_SCALE) return 0;
    return 1;
}

/* 2^(e − 128) as an f32, exact for every byte (subnormal for e = 0, 1). */
INLINE float e8m0_half_scale(uint8_t e) {
    const uint32_t bits = e >= 2 ? (uint32_t)(e - 1) << 23 : 0x00200000u << e;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* One group's 32 weights as 2·FP4 in f32: [even 0..15 in 4 vectors, odd 0..15 in 4 vectors]. */
INLINE void group_codes_mxfp4(const uint8_t *packed, float32x4_t w[8]) {
    static const int8_t FP4_DOUBLED[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};
    const int8x16_t lut = vld1q_s8(FP4_DOUBLED);
    const uint8x16_t bytes = vld1q_u8(packed);
    i8x16_to_f32(vqtbl1q_s8(lut, vandq_u8(bytes, vdupq_n_u8(0x0F))), w);
    i8x16_to_f32(vqtbl1q_s8(lut, vshrq_n_u8(bytes, 4)), w + 4);
}

INLINE void rows_mxfp4(const uint8_t *groups0, const uint8_t *scales0, int64_t n_groups,
                       const float *x, float *y, const int nr, const int exact) {
    const size_t row_group_bytes = (size_t)n_groups * sizeof(group_mxfp4);
    float32x4_t acc[4] = {vdupq_n_f32(0), vdupq_n_f32(0), vdupq_n_f32(0), vdupq_n_f32(0)};
    for (int64_t g = 0; g < n_groups; g++) {
        float32x4_t xv[8];   /* even elements 0..15, then odd 0..15 */
        for (int k = 0; k < 4; k++) {
            const float32x4x2_t pair = vld2q_f32(x + g * QK_MXFP4 + 8 * k);
            xv[k] = pair.val[0];
            xv[4 + k] = pair.val[1];
        }
        for (int i = 0; i < nr; i++) {
            const uint8_t e = scales0[(size_t)i * (size_t)n_groups + (size_t)g];
            const uint8_t *packed = groups0 + (size_t)i * row_group_bytes + (size_t)g * sizeof(group_mxfp4);
            float32x4_t w[8];
            prefetch_ahead(packed);
            group_codes_mxfp4(packed, w);
            const float scale = e8m0_half_scale(e);
            if (exact) {
                for (int k = 0; k < 8; k++) acc[i] = vfmaq_f32(acc[i], vmulq_n_f32(w[k], scale), xv[k]);
            } else {
                float32x4_t s0 = vmulq_f32(w[0], xv[0]), s1 = vmulq_f32(w[1], xv[1]);
                for (int k = 2; k < 8; k += 2) {
                    s0 = vfmaq_f32(s0, w[k], xv[k]);
                    s1 = vfmaq_f32(s1, w[k + 1], xv[k + 1]);
                }
                acc[i] = vfmaq_n_f32(acc[i], vaddq_f32(s0, s1), scale);
            }
        }
    }
    for (int i = 0; i < nr; i++) y[i] = vaddvq_f32(acc[i]);
}

INLINE void row_block_mxfp4(const tensor *w, int64_t r, const float *x, int fast_x, float *y,
                            const int nr) {
    const int64_t n_groups = w->cols / QK_MXFP4;
    const size_t row_group_bytes = (size_t)n_groups * sizeof(group_mxfp4);
    const uint8_t *groups = w->data + (size_t)r * row_group_bytes;
    const uint8_t *scales = w->data + (size_t)w->rows * row_group_bytes + (size_t)r * (size_t)n_groups;
    if (fast_x && scales_fast(scales, (size_t)nr * (size_t)n_groups))
        rows_mxfp4(groups, scales, n_groups, x, y + r, nr, 0);
    else
        rows_mxfp4(groups, scales, n_groups, x, y + r, nr, 1);
}

static void matvec_f32_mxfp4_neon(const tensor *w, int64_t r0, int64_t r1, const float *x,
                                  float *y, float *work) {
    (void)work;
    const int fast_x = x_in_block_range(x, w->cols);
    int64_t r = r0;
    for (; r + 4 <= r1; r += 4) row_block_mxfp4(w, r, x, fast_x, y, 4);
    for (; r < r1; r++) row_block_mxfp4(w, r, x, fast_x, y, 1);
}

/* ---------------------------------------------------------------------------------------
 * Integer matmul for q8_0 and mxfp4 weights over int16 activations (struct qact, kernels.h):
 * the design of the section of that name in kernels_avx2.c, in NEON.
 *
 * Per weight block b (32 elements) and token: S_b = Σ w·q exactly in int32 (w: the q8_0 int8
 * or the doubled FP4 code 2·FP4, q: the int16 activations; |S_b| <= 32·128·32767 < 2^31), then
 * acc += (f32(S_b) · d_b) · ws_b, with ws_b the weight block's scale (q8_0: its f16 d; mxfp4:
 * 2^(e−128)) and d_b the activation block's. Blocks go 8 at a time: the eight int32x4 partial
 * sums reduce to [S_b .. S_b+3], [S_b+4 .. S_b+7] by six pairwise adds (ADDP), each half is
 * converted, scaled and accumulated by one multiply and one FMA; a tail of fewer than 8 blocks
 * is padded with zero sums, zero activation scales and zero weight scales.
 *
 * Products: SMLAL / SMLAL2 (vmlal_s16 / vmlal_high_s16) multiply four int16 pairs and add them
 * to an int32x4 in one instruction, 8 per block in two independent chains (then one add).
 * vmull + vpadal would spend two instructions per four products (int32 products pairwise-add
 * into int64 lanes); SDOT would need int8 activations. Cortex-A76-class cores issue one
 * widening multiply-accumulate per cycle (their multiply pipe) with the accumulator
 * forwarded, so the chains run back to back; Apple-class cores have four such pipes, and the
 * eight blocks' independent chains per step keep them fed. The weights cost one load, a
 * widening (SXTL) and, for mxfp4, a nibble lookup (TBL, vqtbl1q_s8) per 16 elements.
 *
 * One token reads each weight block into registers and uses it once. Several tokens decode a
 * row once into int16 (and f32 block scales) in a buffer and reuse it for every token, with
 * the same integer sums and the same float operations in the same order: a row's result does
 * not depend on how many tokens share it. Rows whose mxfp4 scale bytes are outside 2..252, and
 * tokens qact marked exact, take the f32 routes above with qact's x.
 */

#define IBLK 8   /* blocks reduced together */
#define GROUP_BYTES sizeof(group_mxfp4)

INLINE int8x16_t fp4_doubled_lut(void) {
    static const int8_t FP4_DOUBLED[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};
    return vld1q_s8(FP4_DOUBLED);
}

/* Partial int32 sums of 32 int16 weights w[0..3] times the 32 int16 activations at q. */
INLINE int32x4_t dot32_i16(const int16x8_t w[4], const int16_t *q) {
    const int16x8_t q0 = vld1q_s16(q), q1 = vld1q_s16(q + 8);
    const int16x8_t q2 = vld1q_s16(q + 16), q3 = vld1q_s16(q + 24);
    int32x4_t s0 = vmull_s16(vget_low_s16(w[0]), vget_low_s16(q0));
    int32x4_t s1 = vmull_high_s16(w[0], q0);
    s0 = vmlal_s16(s0, vget_low_s16(w[1]), vget_low_s16(q1));
    s1 = vmlal_high_s16(s1, w[1], q1);
    s0 = vmlal_s16(s0, vget_low_s16(w[2]), vget_low_s16(q2));
    s1 = vmlal_high_s16(s1, w[2], q2);
    s0 = vmlal_s16(s0, vget_low_s16(w[3]), vget_low_s16(q3));
    s1 = vmlal_high_s16(s1, w[3], q3);
    return vaddq_s32(s0, s1);
}

/* A q8_0 block's 32 int8 as int16, in order (QACT_ORDER_NATURAL). */
INLINE void q8_0_block_i16(const uint8_t *block, int16x8_t w[4]) {
    const int8x16_t a = vld1q_s8((const int8_t *)(block + 2));
    const int8x16_t b = vld1q_s8((const int8_t *)(block + 18));
    w[0] = vmovl_s8(vget_low_s8(a));
    w[1] = vmovl_high_s8(a);
    w[2] = vmovl_s8(vget_low_s8(b));
    w[3] = vmovl_high_s8(b);
}

/* The 32 doubled FP4 codes of a group as int16: even elements, then odd (QACT_ORDER_EVEN_ODD). */
INLINE void mxfp4_group_i16(const uint8_t *packed, int8x16_t lut, int16x8_t w[4]) {
    const uint8x16_t bytes = vld1q_u8(packed);
    const int8x16_t even = vqtbl1q_s8(lut, vandq_u8(bytes, vdupq_n_u8(0x0F)));
    const int8x16_t odd = vqtbl1q_s8(lut, vshrq_n_u8(bytes, 4));
    w[0] = vmovl_s8(vget_low_s8(even));
    w[1] = vmovl_high_s8(even);
    w[2] = vmovl_s8(vget_low_s8(odd));
    w[3] = vmovl_high_s8(odd);
}

/* acc[k] += (f32(S) · xd[k]) · ws[k] for the 8 blocks whose partial sums are p (k = 0: blocks
 * 0..3, k = 1: blocks 4..7). As in kernels_avx2.c, f32(S) · xd stays normal (|S| >= 1, xd >=
 * 2^-115 by qact's range), so nothing underflows unless the product with ws does. */
INLINE void scale_blocks(float32x4_t acc[2], const int32x4_t p[IBLK], const float32x4_t ws[2],
                         const float32x4_t xd[2]) {
    const int32x4_t s01 = vpaddq_s32(p[0], p[1]), s23 = vpaddq_s32(p[2], p[3]);
    const int32x4_t s45 = vpaddq_s32(p[4], p[5]), s67 = vpaddq_s32(p[6], p[7]);
    const int32x4_t s[2] = {vpaddq_s32(s01, s23), vpaddq_s32(s45, s67)};
    for (int k = 0; k < 2; k++)
        acc[k] = vfmaq_f32(acc[k], vmulq_f32(vcvtq_f32_s32(s[k]), xd[k]), ws[k]);
}

/* The activation scales of blocks b .. b+n−1 (n <= 8), zero beyond. */
INLINE void load_xd(const float *xd, int64_t n, float32x4_t out[2]) {
    float tmp[IBLK] = {0};
    if (n < IBLK) {
        for (int64_t i = 0; i < n; i++) tmp[i] = xd[i];
        xd = tmp;
    }
    out[0] = vld1q_f32(xd);
    out[1] = vld1q_f32(xd + 4);
}

INLINE float finish(const float32x4_t acc[2]) {
    return vaddvq_f32(vaddq_f32(acc[0], acc[1]));
}

/* 2^(e − 128) for 8 scale bytes (2 <= e: normal; e = 1 gives +0, the padding), as f32. */
INLINE void e8m0_half_scales8(const uint8_t e[IBLK], float32x4_t ws[2]) {
    const uint16x8_t e16 = vmovl_u8(vld1_u8(e));
    const uint32x4_t one = vdupq_n_u32(1);
    ws[0] = vreinterpretq_f32_u32(vshlq_n_u32(vsubq_u32(vmovl_u16(vget_low_u16(e16)), one), 23));
    ws[1] = vreinterpretq_f32_u32(vshlq_n_u32(vsubq_u32(vmovl_high_u16(e16), one), 23));
}

/*
 * One step of 8 blocks (the n <= 8 first real, the rest padding) of a row · one token, for
 * the three weight sources. The row functions call a step with n = IBLK for every full step
 * and once with the remainder, so the full steps unroll with the partial sums in registers.
 */

/* acc += the n (<= 8) mxfp4 blocks' partial sums p scaled by their scale bytes and xd. */
INLINE void scale_mxfp4(const uint8_t *scales, const float *xd, const int64_t n,
                        const int32x4_t p[IBLK], float32x4_t acc[2]) {
    uint8_t e_tail[IBLK] = {1, 1, 1, 1, 1, 1, 1, 1};   /* padding: scale +0 */
    if (n < IBLK) {
        for (int64_t i = 0; i < n; i++) e_tail[i] = scales[i];
        scales = e_tail;
    }
    float32x4_t ws[2], xv[2];
    e8m0_half_scales8(scales, ws);
    load_xd(xd, n, xv);
    scale_blocks(acc, p, ws, xv);
}

/* mxfp4 groups g .. g+n−1 read from the tensor. */
INLINE void step_mxfp4(const uint8_t *groups, const uint8_t *scales, const int16_t *q,
                       const float *xd, const int64_t n, int8x16_t lut, float32x4_t acc[2]) {
    int32x4_t p[IBLK];
    prefetch_ahead(groups);
    prefetch_ahead(groups + 64);
#pragma GCC unroll 8
    for (int64_t i = 0; i < IBLK; i++) {
        if (i < n) {
            int16x8_t w[4];
            mxfp4_group_i16(groups + i * GROUP_BYTES, lut, w);
            p[i] = dot32_i16(w, q + i * QK_MXFP4);
        } else {
            p[i] = vdupq_n_s32(0);
        }
    }
    scale_mxfp4(scales, xd, n, p, acc);
}

/* acc += the n (<= 8) q8_0 blocks' partial sums p scaled by their f16 scales and xd. */
INLINE void scale_q8_0(const uint8_t *blocks, const float *xd, const int64_t n,
                       const int32x4_t p[IBLK], float32x4_t acc[2]) {
    uint16x8_t h = vdupq_n_u16(0);   /* the f16 scales; padding +0 */
    if (n == IBLK) {
        const size_t B = sizeof(block_q8_0);
        h = vsetq_lane_u16(load_u16(blocks), h, 0);
        h = vsetq_lane_u16(load_u16(blocks + B), h, 1);
        h = vsetq_lane_u16(load_u16(blocks + 2 * B), h, 2);
        h = vsetq_lane_u16(load_u16(blocks + 3 * B), h, 3);
        h = vsetq_lane_u16(load_u16(blocks + 4 * B), h, 4);
        h = vsetq_lane_u16(load_u16(blocks + 5 * B), h, 5);
        h = vsetq_lane_u16(load_u16(blocks + 6 * B), h, 6);
        h = vsetq_lane_u16(load_u16(blocks + 7 * B), h, 7);
    } else {
        uint16_t tmp[IBLK] = {0};
        for (int64_t i = 0; i < n; i++) tmp[i] = load_u16(blocks + (size_t)i * sizeof(block_q8_0));
        h = vld1q_u16(tmp);
    }
    const float16x8_t hv = vreinterpretq_f16_u16(h);
    const float32x4_t ws[2] = {vcvt_f32_f16(vget_low_f16(hv)), vcvt_high_f32_f16(hv)};
    float32x4_t xv[2];
    load_xd(xd, n, xv);
    scale_blocks(acc, p, ws, xv);
}

/* q8_0 blocks b .. b+n−1 read from the tensor (blocks at the first block's address). */
INLINE void step_q8_0(const uint8_t *blocks, const int16_t *q, const float *xd, const int64_t n,
                      float32x4_t acc[2]) {
    int32x4_t p[IBLK];
#pragma GCC unroll 8
    for (int64_t i = 0; i < IBLK; i++) {
        if (i < n) {
            const uint8_t *block = blocks + (size_t)i * sizeof(block_q8_0);
            int16x8_t w[4];
            if (i % 2 == 0) prefetch_ahead(block);
            q8_0_block_i16(block, w);
            p[i] = dot32_i16(w, q + i * QK8_0);
        } else {
            p[i] = vdupq_n_s32(0);
        }
    }
    scale_q8_0(blocks, xd, n, p, acc);
}

/* Blocks b .. b+n−1 of a decoded row (w16, ws at block b; ws padded to the full step). */
INLINE void step_decoded(const int16_t *w16, const float *ws, const int16_t *q, const float *xd,
                         const int64_t n, float32x4_t acc[2]) {
    int32x4_t p[IBLK];
#pragma GCC unroll 8
    for (int64_t i = 0; i < IBLK; i++) {
        if (i < n) {
            const int16_t *wb = w16 + i * 32;
            const int16x8_t w[4] = {vld1q_s16(wb), vld1q_s16(wb + 8), vld1q_s16(wb + 16),
                                    vld1q_s16(wb + 24)};
            p[i] = dot32_i16(w, q + i * 32);
        } else {
            p[i] = vdupq_n_s32(0);
        }
    }
    const float32x4_t wsv[2] = {vld1q_f32(ws), vld1q_f32(ws + 4)};
    float32x4_t xv[2];
    load_xd(xd, n, xv);
    scale_blocks(acc, p, wsv, xv);
}

/* One mxfp4 row (fast scale bytes only) · one token's int16 activations, weights in registers. */
static float row_mxfp4_i16(const uint8_t *groups, const uint8_t *scales, int64_t n_groups,
                           const int16_t *q, const float *xd) {
    const int8x16_t lut = fp4_doubled_lut();
    float32x4_t acc[2] = {vdupq_n_f32(0), vdupq_n_f32(0)};
    int64_t g = 0;
    for (; g + IBLK <= n_groups; g += IBLK)
        step_mxfp4(groups + g * GROUP_BYTES, scales + g, q + g * QK_MXFP4, xd + g, IBLK, lut, acc);
    if (g < n_groups)
        step_mxfp4(groups + g * GROUP_BYTES, scales + g, q + g * QK_MXFP4, xd + g, n_groups - g,
                   lut, acc);
    return finish(acc);
}

/* One q8_0 row · one token's int16 activations, weights in registers. */
static float row_q8_0_i16(const uint8_t *row, int64_t n_blocks, const int16_t *q, const float *xd) {
    float32x4_t acc[2] = {vdupq_n_f32(0), vdupq_n_f32(0)};
    int64_t b = 0;
    for (; b + IBLK <= n_blocks; b += IBLK)
        step_q8_0(row + (size_t)b * sizeof(block_q8_0), q + b * QK8_0, xd + b, IBLK, acc);
    if (b < n_blocks)
        step_q8_0(row + (size_t)b * sizeof(block_q8_0), q + b * QK8_0, xd + b, n_blocks - b, acc);
    return finish(acc);
}

/* A decoded row: int16 weights (in the activations' order) and f32 block scales (n_blocks
 * rounded up to 8, zero beyond n_blocks) · one token's int16 activations. */
static float row_decoded_i16(const int16_t *w16, const float *ws, int64_t n_blocks,
                             const int16_t *q, const float *xd) {
    float32x4_t acc[2] = {vdupq_n_f32(0), vdupq_n_f32(0)};
    int64_t b = 0;
    for (; b + IBLK <= n_blocks; b += IBLK)
        step_decoded(w16 + b * 32, ws + b, q + b * 32, xd + b, IBLK, acc);
    if (b < n_blocks) step_decoded(w16 + b * 32, ws + b, q + b * 32, xd + b, n_blocks - b, acc);
    return finish(acc);
}

/* Decode an mxfp4 row (fast scale bytes) into w16[cols] and ws[n_groups rounded up to 8]. */
static void decode_row_mxfp4(const uint8_t *groups, const uint8_t *scales, int64_t n_groups,
                             int16_t *w16, float *ws) {
    const int8x16_t lut = fp4_doubled_lut();
    for (int64_t g = 0; g < n_groups; g++) {
        int16x8_t w[4];
        mxfp4_group_i16(groups + g * GROUP_BYTES, lut, w);
        for (int k = 0; k < 4; k++) vst1q_s16(w16 + g * 32 + 8 * k, w[k]);
        const uint32_t bits = (uint32_t)(scales[g] - 1) << 23;   /* e8m0_half_scales8's value */
        memcpy(ws + g, &bits, sizeof bits);
    }
    for (int64_t g = n_groups; g % IBLK; g++) ws[g] = 0.0f;   /* as the padding byte 1 */
}

/* Decode a q8_0 row into w16[cols] and ws[n_blocks rounded up to 8]. */
static void decode_row_q8_0(const uint8_t *row, int64_t n_blocks, int16_t *w16, float *ws) {
    for (int64_t b = 0; b < n_blocks; b++) {
        const uint8_t *block = row + (size_t)b * sizeof(block_q8_0);
        int16x8_t w[4];
        q8_0_block_i16(block, w);
        for (int k = 0; k < 4; k++) vst1q_s16(w16 + b * 32 + 8 * k, w[k]);
        ws[b] = half_bits_to_f32(load_u16(block));   /* the conversion row_q8_0_i16 uses */
    }
    for (int64_t b = n_blocks; b % IBLK; b++) ws[b] = 0.0f;
}

/* Room for a decoded row: int16[cols] then f32[n_blocks + 8]; NULL if out of memory (the
 * callers then read the weights into registers per token: the same results). */
static int16_t *decoded_row_new(int64_t cols, float **ws) {
    int16_t *w16 = malloc((size_t)cols * sizeof(int16_t) + ((size_t)cols / 32 + IBLK) * sizeof(float));
    if (w16) *ws = (float *)(void *)(w16 + cols);   /* cols·2 is a multiple of 64: aligned */
    return w16;
}

/*
 * One token over int8 activations (qact bits 8: every q within ±127), on CPUs with the dot
 * product extension (SDOT: four int8 products summed into each int32 lane). SDOT multiplies
 * signed by signed, so the weights go in as they are (the doubled FP4 codes, the q8_0
 * int8) against an int8 copy of the token's q in the same order; each block's partial sums
 * reduce to the same exact int32 S as dot32_i16's, and the same scale_* steps follow, so the
 * result is bit-identical to the int16 route over the same q. Without the extension (or
 * built by a compiler without it) int8 activations take the int16 kernels.
 */
/* GCC's arm_neon.h declares vdotq_s32 for armv8.2-a+dotprod; these functions use nothing
 * else beyond Armv8.0 (no atomics, no FP16 arithmetic), and run only where SDOT exists. */
#if defined(__clang__)
#define DOTPROD __attribute__((target("dotprod")))
#else
#define DOTPROD __attribute__((target("arch=armv8.2-a+dotprod")))
#endif

static atomic_int dotprod_state;   /* 0: not probed yet, 1: absent, 2: present */

static int cpu_has_dotprod(void) {
    int s = atomic_load_explicit(&dotprod_state, memory_order_relaxed);
    if (s == 0) {
        int has = 0;
#if defined(__linux__)
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1UL << 20)
#endif
        has = (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
#elif defined(__APPLE__)
        int v = 0;
        size_t len = sizeof v;
        has = sysctlbyname("hw.optional.arm.FEAT_DotProd", &v, &len, NULL, 0) == 0 && v;
#endif
        s = has ? 2 : 1;
        atomic_store_explicit(&dotprod_state, s, memory_order_relaxed);
    }
    return s == 2;
}

DOTPROD static float row_mxfp4_sdot(const uint8_t *groups, const uint8_t *scales,
                                    int64_t n_groups, const int8_t *q8, const float *xd) {
    const int8x16_t lut = fp4_doubled_lut();
    float32x4_t acc[2] = {vdupq_n_f32(0), vdupq_n_f32(0)};
    for (int64_t g = 0; g < n_groups; g += IBLK) {
        const int64_t n = n_groups - g < IBLK ? n_groups - g : IBLK;
        int32x4_t p[IBLK];
        prefetch_ahead(groups + g * GROUP_BYTES);
        prefetch_ahead(groups + g * GROUP_BYTES + 64);
        for (int64_t i = 0; i < IBLK; i++) {
            p[i] = vdupq_n_s32(0);
            if (i >= n) continue;
            const uint8x16_t bytes = vld1q_u8(groups + (g + i) * GROUP_BYTES);
            const int8x16_t even = vqtbl1q_s8(lut, vandq_u8(bytes, vdupq_n_u8(0x0F)));
            const int8x16_t odd = vqtbl1q_s8(lut, vshrq_n_u8(bytes, 4));
            const int8_t *a = q8 + (g + i) * QK_MXFP4;   /* even elements, then odd */
            p[i] = vdotq_s32(vdotq_s32(p[i], even, vld1q_s8(a)), odd, vld1q_s8(a + 16));
        }
        scale_mxfp4(scales + g, xd + g, n, p, acc);
    }
    return finish(acc);
}

DOTPROD static float row_q8_0_sdot(const uint8_t *row, int64_t n_blocks, const int8_t *q8,
                                   const float *xd) {
    float32x4_t acc[2] = {vdupq_n_f32(0), vdupq_n_f32(0)};
    for (int64_t b = 0; b < n_blocks; b += IBLK) {
        const int64_t n = n_blocks - b < IBLK ? n_blocks - b : IBLK;
        const uint8_t *blocks = row + (size_t)b * sizeof(block_q8_0);
        int32x4_t p[IBLK];
        for (int64_t i = 0; i < IBLK; i++) {
            p[i] = vdupq_n_s32(0);
            if (i >= n) continue;
            const int8_t *w = (const int8_t *)(blocks + (size_t)i * sizeof(block_q8_0) + 2);
            const int8_t *a = q8 + (b + i) * QK8_0;
            if (i % 2 == 0) prefetch_ahead((const uint8_t *)w + 64);
            p[i] = vdotq_s32(vdotq_s32(p[i], vld1q_s8(w), vld1q_s8(a)), vld1q_s8(w + 16),
                             vld1q_s8(a + 16));
        }
        scale_q8_0(blocks, xd + b, n, p, acc);
    }
    return finish(acc);
}

/* Whether x takes the SDOT route. */
static int use_sdot(const qact *x) {
    return qact_one_token_i8(x) && cpu_has_dotprod();
}

static void matmul_mxfp4_neon(const tensor *w, int64_t r0, int64_t r1, const qact *x, float *y,
                              int64_t ldy) {
    const int64_t n_groups = w->cols / QK_MXFP4, cols = w->cols;
    const size_t row_group_bytes = (size_t)n_groups * GROUP_BYTES;
    const uint8_t *scales = w->data + (size_t)w->rows * row_group_bytes;
    if (use_sdot(x)) {
        int8_t q8[QACT_I8_MAX_COLS];
        qact_narrow_i8(x->q, cols, q8);
        for (int64_t r = r0; r < r1; r++) {
            const uint8_t *groups = w->data + (size_t)r * row_group_bytes;
            const uint8_t *sc = scales + (size_t)r * (size_t)n_groups;
            if (scales_fast(sc, (size_t)n_groups))
                y[r] = row_mxfp4_sdot(groups, sc, n_groups, q8, x->d);
            else
                rows_mxfp4(groups, sc, n_groups, x->x, y + r, 1, 1);
        }
        return;
    }
    float *ws = NULL;
    int16_t *w16 = x->n_tok > 1 ? decoded_row_new(cols, &ws) : NULL;
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *groups = w->data + (size_t)r * row_group_bytes;
        const uint8_t *sc = scales + (size_t)r * (size_t)n_groups;
        const int fast_row = scales_fast(sc, (size_t)n_groups);
        if (fast_row && w16) decode_row_mxfp4(groups, sc, n_groups, w16, ws);
        for (int64_t t = 0; t < x->n_tok; t++) {
            const int16_t *q = x->q + t * cols;
            const float *xd = x->d + t * n_groups;
            float *out = y + t * ldy + r;
            if (!fast_row || x->exact[t])
                rows_mxfp4(groups, sc, n_groups, x->x + t * cols, out, 1, 1);
            else if (w16)
                *out = row_decoded_i16(w16, ws, n_groups, q, xd);
            else
                *out = row_mxfp4_i16(groups, sc, n_groups, q, xd);
        }
    }
    free(w16);
}

static void matmul_q8_0_neon(const tensor *w, int64_t r0, int64_t r1, const qact *x, float *y,
                             int64_t ldy) {
    const int64_t n_blocks = w->cols / QK8_0, cols = w->cols;
    const size_t row_bytes = (size_t)n_blocks * sizeof(block_q8_0);
    if (use_sdot(x)) {
        int8_t q8[QACT_I8_MAX_COLS];
        qact_narrow_i8(x->q, cols, q8);
        for (int64_t r = r0; r < r1; r++)
            y[r] = row_q8_0_sdot(w->data + (size_t)r * row_bytes, n_blocks, q8, x->d);
        return;
    }
    float *ws = NULL;
    int16_t *w16 = x->n_tok > 1 ? decoded_row_new(cols, &ws) : NULL;
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *row = w->data + (size_t)r * row_bytes;
        if (w16) decode_row_q8_0(row, n_blocks, w16, ws);
        for (int64_t t = 0; t < x->n_tok; t++) {
            const int16_t *q = x->q + t * cols;
            const float *xd = x->d + t * n_blocks;
            float *out = y + t * ldy + r;
            if (x->exact[t])
                *out = row_q8_0_exact(row, n_blocks, x->x + t * cols);
            else if (w16)
                *out = row_decoded_i16(w16, ws, n_blocks, q, xd);
            else
                *out = row_q8_0_i16(row, n_blocks, q, xd);
        }
    }
    free(w16);
}

/* ---------------------------------------------------------------------------------------
 * Vector kernels
 */

static double dot_f32_neon(const float *a, const float *b, int64_t n) {
    float32x4_t acc[4] = {vdupq_n_f32(0), vdupq_n_f32(0), vdupq_n_f32(0), vdupq_n_f32(0)};
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int k = 0; k < 4; k++)
            acc[k] = vfmaq_f32(acc[k], vld1q_f32(a + i + 4 * k), vld1q_f32(b + i + 4 * k));
    for (; i + 4 <= n; i += 4) acc[0] = vfmaq_f32(acc[0], vld1q_f32(a + i), vld1q_f32(b + i));
    float sum = vaddvq_f32(vaddq_f32(vaddq_f32(acc[0], acc[1]), vaddq_f32(acc[2], acc[3])));
    for (; i < n; i++) sum += a[i] * b[i];
    return sum;
}

static void weighted_sum_one_neon(float *out, const float *p, const float *rows, size_t stride,
                                  int64_t n, int64_t dim) {
    int64_t d = 0;
    for (; d + 16 <= dim; d += 16) {
        float32x4_t acc[4] = {vdupq_n_f32(0), vdupq_n_f32(0), vdupq_n_f32(0), vdupq_n_f32(0)};
        for (int64_t j = 0; j < n; j++) {
            const float *v = rows + (size_t)j * stride + d;
            for (int k = 0; k < 4; k++) acc[k] = vfmaq_n_f32(acc[k], vld1q_f32(v + 4 * k), p[j]);
        }
        for (int k = 0; k < 4; k++) vst1q_f32(out + d + 4 * k, acc[k]);
    }
    for (; d + 4 <= dim; d += 4) {
        float32x4_t acc = vdupq_n_f32(0);
        for (int64_t j = 0; j < n; j++) acc = vfmaq_n_f32(acc, vld1q_f32(rows + (size_t)j * stride + d), p[j]);
        vst1q_f32(out + d, acc);
    }
    for (; d < dim; d++) {
        float sum = 0.0f;
        for (int64_t j = 0; j < n; j++) sum += p[j] * rows[(size_t)j * stride + (size_t)d];
        out[d] = sum;
    }
}

static void rmsnorm_neon(float *out, const float *x, const float *w, int64_t n, float eps) {
    float64x2_t acc0 = vdupq_n_f64(0), acc1 = vdupq_n_f64(0);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const float32x4_t v = vld1q_f32(x + i);
        const float64x2_t lo = vcvt_f64_f32(vget_low_f32(v)), hi = vcvt_high_f64_f32(v);
        acc0 = vfmaq_f64(acc0, lo, lo);
        acc1 = vfmaq_f64(acc1, hi, hi);
    }
    double sum = vaddvq_f64(vaddq_f64(acc0, acc1));
    for (int64_t t = i; t < n; t++) sum += (double)x[t] * (double)x[t];
    const float scale = (float)(1.0 / sqrt(sum / (double)n + (double)eps));
    for (i = 0; i + 4 <= n; i += 4)
        vst1q_f32(out + i, vmulq_f32(vld1q_f32(w + i), vmulq_n_f32(vld1q_f32(x + i), scale)));
    for (; i < n; i++) out[i] = w[i] * (x[i] * scale);
}

/* weighted_sum_fn of kernels.h: weighted_sum_one_neon per head. */
static void weighted_sum_neon(float *out, const float *p, size_t p_stride, int nq, const float *rows,
                              size_t stride, int64_t n, int64_t dim, double *acc_unused) {
    (void)acc_unused;
    for (int i = 0; i < nq; i++)
        weighted_sum_one_neon(out + (size_t)i * (size_t)dim, p + (size_t)i * p_stride, rows, stride, n, dim);
}

/* scores_fn of kernels.h: dot_f32_neon per query and key, inlined. */
static void scores_f32_neon(float *out, size_t out_stride, const float *q, int nq, const float *keys,
                            size_t stride, int64_t n, int64_t dim, double scale) {
    for (int i = 0; i < nq; i++)
        for (int64_t j = 0; j < n; j++)
            out[(size_t)i * out_stride + (size_t)j] =
                (float)(dot_f32_neon(q + (size_t)i * (size_t)dim, keys + (size_t)j * stride, dim) * scale);
}

const kernel_table KERNELS_NEON = {
    .name = "neon",
    .matvec = {
        [EDGEMOE_TYPE_F32] = matvec_f32_f32_neon,
        [EDGEMOE_TYPE_F16] = matvec_f32_f16_neon,
        [EDGEMOE_TYPE_BF16] = matvec_f32_bf16_neon,
        [EDGEMOE_TYPE_U8] = NULL,
        [EDGEMOE_TYPE_Q8_0] = matvec_f32_q8_0_neon,
        [EDGEMOE_TYPE_MXFP4] = matvec_f32_mxfp4_neon,
    },
    .matmul = {
        [EDGEMOE_TYPE_Q8_0] = matmul_q8_0_neon,
        [EDGEMOE_TYPE_MXFP4] = matmul_mxfp4_neon,
    },
    .qact_order = {
        [EDGEMOE_TYPE_Q8_0] = QACT_ORDER_NATURAL,
        [EDGEMOE_TYPE_MXFP4] = QACT_ORDER_EVEN_ODD,
    },
    .quantize = qact_quantize,
    .dot = dot_f32_neon,
    .scores = scores_f32_neon,
    .weighted_sum = weighted_sum_neon,
    .rmsnorm = rmsnorm_neon,
    .softmax = softmax,
    .swiglu = swiglu_clamped,
};

#else
/* Not arm64: no NEON kernels (ISO C wants at least one declaration per file). */
typedef int kernels_neon_not_built;
#endif

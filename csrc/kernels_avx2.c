/*
 * kernels_avx2.c — the "avx2" kernel set: AVX2 + FMA + F16C twins of kernels_ref.c.
 *
 * Compiled with the same flags as every other file (no -march): the instruction set is
 * enabled for this file only, by a target pragma, and kernels.c hands out KERNELS_AVX2 only
 * after checking the CPU. On other architectures the file compiles to nothing.
 *
 * Numerics (the contract tests/test_kernels.py checks). matvec, every weight type (and the
 * exact route of the integer kernels): activations stay f32, every weight is dequantized to
 * exactly the value the reference computes, and products are accumulated in f32 with FMA in
 * several independent sums; only the summation order and f32 rounding of the partial sums
 * differ from the reference. matmul, q8_0 and mxfp4 (what the forward pass uses for them):
 * activations first rounded to int16 (or int8) blocks (struct qact, kernels.h), then exact int32
 * block sums (see the "Integer matmul" section). Block scales are applied to a block's partial sum
 * (d · Σ q·x), which equals Σ (d·q)·x up to rounding because d·q is exact in f32 — except
 * where d·q would overflow or be subnormal, which only mxfp4 scale bytes outside 2..252 can
 * make happen: rows with such a byte take a per-element route, so infinities and NaNs appear
 * exactly where the reference has them (see the mxfp4 section).
 *
 * Unaligned data: weights are read through the *_u vector types (alignment 1) or memcpy.
 */
#if defined(__x86_64__) || defined(_M_X64)

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC target("avx2,fma,f16c")
#endif

#include <immintrin.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels_isa.h"
#include "kernels_ref.h"

#define INLINE static inline __attribute__((always_inline))

/* ---------------------------------------------------------------------------------------
 * Small helpers
 */

INLINE float hsum_ps(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

INLINE double hsum_pd(__m256d v) {
    __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    s = _mm_add_sd(s, _mm_unpackhi_pd(s, s));
    return _mm_cvtsd_f64(s);
}

INLINE __m256 load8_f32(const uint8_t *p) {
    return _mm256_castsi256_ps(_mm256_loadu_si256((const __m256i_u *)p));
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

/*
 * Ask for the weight bytes PREFETCH_DISTANCE ahead of p. Weights stream from DRAM once per
 * token; without this the loads wait on memory and the arithmetic on the loads (measured on
 * Zen 3: q8_0 7 GB/s instead of 11 GB/s for a 219 MB matrix). A prefetch never faults, and
 * the address is formed as an integer, so running past the tensor's end is harmless.
 */
#define PREFETCH_DISTANCE 4096

INLINE void prefetch_ahead(const uint8_t *p) {
    _mm_prefetch((const char *)((uintptr_t)p + PREFETCH_DISTANCE), _MM_HINT_T0);
}

/* The low 8 int8 of v → 8 f32 (exact). */
INLINE __m256 i8x8_to_ps(__m128i v) {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v));
}

/* ---------------------------------------------------------------------------------------
 * matvec, f32 weights. Rows are handled four at a time (x loaded once for all four); the
 * column tail that is not a multiple of 8 is summed in scalar f32.
 */

INLINE void rows_f32(const uint8_t *row0, size_t row_bytes, int64_t cols, const float *x,
                     float *y, const int nr) {
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                     _mm256_setzero_ps()};
    __m256 acc2[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                      _mm256_setzero_ps()};
    int64_t c = 0;
    for (; c + 16 <= cols; c += 16) {
        const __m256 x0 = _mm256_loadu_ps(x + c), x1 = _mm256_loadu_ps(x + c + 8);
        for (int i = 0; i < nr; i++) {
            const uint8_t *w = row0 + (size_t)i * row_bytes + (size_t)c * 4;
            prefetch_ahead(w);
            acc[i] = _mm256_fmadd_ps(load8_f32(w), x0, acc[i]);
            acc2[i] = _mm256_fmadd_ps(load8_f32(w + 32), x1, acc2[i]);
        }
    }
    for (; c + 8 <= cols; c += 8) {
        const __m256 x0 = _mm256_loadu_ps(x + c);
        for (int i = 0; i < nr; i++)
            acc[i] = _mm256_fmadd_ps(load8_f32(row0 + (size_t)i * row_bytes + (size_t)c * 4), x0,
                                     acc[i]);
    }
    for (int i = 0; i < nr; i++) {
        const uint8_t *w = row0 + (size_t)i * row_bytes;
        float sum = hsum_ps(_mm256_add_ps(acc[i], acc2[i]));
        for (int64_t t = c; t < cols; t++) sum += load_f32(w + (size_t)t * 4) * x[t];
        y[i] = sum;
    }
}

void matvec_f32_f32_avx2(const tensor *w, int64_t r0, int64_t r1, const float *x,
                         float *y, float *work) {
    (void)work;
    const size_t row_bytes = (size_t)w->cols * 4;
    int64_t r = r0;
    for (; r + 4 <= r1; r += 4)
        rows_f32(w->data + (size_t)r * row_bytes, row_bytes, w->cols, x, y + r, 4);
    for (; r < r1; r++)
        rows_f32(w->data + (size_t)r * row_bytes, row_bytes, w->cols, x, y + r, 1);
}

/* ---------------------------------------------------------------------------------------
 * matvec, f16 weights: F16C converts 8 halves at a time (exactly).
 */

INLINE void rows_f16(const uint8_t *row0, size_t row_bytes, int64_t cols, const float *x,
                     float *y, const int nr) {
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                     _mm256_setzero_ps()};
    int64_t c = 0;
    for (; c + 8 <= cols; c += 8) {
        const __m256 x0 = _mm256_loadu_ps(x + c);
        for (int i = 0; i < nr; i++) {
            const uint8_t *w = row0 + (size_t)i * row_bytes + (size_t)c * 2;
            if (c % 32 == 0) prefetch_ahead(w);
            acc[i] = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i_u *)w)), x0,
                                     acc[i]);
        }
    }
    for (int i = 0; i < nr; i++) {
        const uint8_t *w = row0 + (size_t)i * row_bytes;
        float sum = hsum_ps(acc[i]);
        for (int64_t t = c; t < cols; t++) sum += half_to_float(load_u16(w + (size_t)t * 2)) * x[t];
        y[i] = sum;
    }
}

void matvec_f32_f16_avx2(const tensor *w, int64_t r0, int64_t r1, const float *x,
                         float *y, float *work) {
    (void)work;
    const size_t row_bytes = (size_t)w->cols * 2;
    int64_t r = r0;
    for (; r + 4 <= r1; r += 4)
        rows_f16(w->data + (size_t)r * row_bytes, row_bytes, w->cols, x, y + r, 4);
    for (; r < r1; r++)
        rows_f16(w->data + (size_t)r * row_bytes, row_bytes, w->cols, x, y + r, 1);
}

/* ---------------------------------------------------------------------------------------
 * matvec, bf16 weights. 16 bf16 loaded as 8 32-bit lanes hold element 2k in the low half of
 * lane k and element 2k+1 in the high half: masking gives the odd elements as f32 and a
 * 16-bit shift the even ones, with no shuffle. x is therefore deinterleaved once per call
 * into work: for each chunk of 16, its 8 even-indexed then its 8 odd-indexed elements.
 */

static void deinterleave_16(const float *x, int64_t cols, float *out) {
    for (int64_t c = 0; c + 16 <= cols; c += 16) {
        for (int k = 0; k < 8; k++) {
            out[c + k] = x[c + 2 * k];
            out[c + 8 + k] = x[c + 2 * k + 1];
        }
    }
}

INLINE void rows_bf16(const uint8_t *row0, size_t row_bytes, int64_t cols, const float *x,
                      const float *xd, float *y, const int nr) {
    const __m256i high_half = _mm256_set1_epi32((int)0xFFFF0000u);
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                     _mm256_setzero_ps()};
    __m256 acc2[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                      _mm256_setzero_ps()};
    int64_t c = 0;
    for (; c + 16 <= cols; c += 16) {
        const __m256 x_even = _mm256_loadu_ps(xd + c), x_odd = _mm256_loadu_ps(xd + c + 8);
        for (int i = 0; i < nr; i++) {
            const uint8_t *w = row0 + (size_t)i * row_bytes + (size_t)c * 2;
            prefetch_ahead(w);
            const __m256i v = _mm256_loadu_si256((const __m256i_u *)w);
            const __m256 even = _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
            const __m256 odd = _mm256_castsi256_ps(_mm256_and_si256(v, high_half));
            acc[i] = _mm256_fmadd_ps(even, x_even, acc[i]);
            acc2[i] = _mm256_fmadd_ps(odd, x_odd, acc2[i]);
        }
    }
    for (int i = 0; i < nr; i++) {
        const uint8_t *w = row0 + (size_t)i * row_bytes;
        float sum = hsum_ps(_mm256_add_ps(acc[i], acc2[i]));
        for (int64_t t = c; t < cols; t++) sum += bf16_to_float(load_u16(w + (size_t)t * 2)) * x[t];
        y[i] = sum;
    }
}

void matvec_f32_bf16_avx2(const tensor *w, int64_t r0, int64_t r1, const float *x,
                          float *y, float *work) {
    const size_t row_bytes = (size_t)w->cols * 2;
    deinterleave_16(x, w->cols, work);
    int64_t r = r0;
    for (; r + 4 <= r1; r += 4)
        rows_bf16(w->data + (size_t)r * row_bytes, row_bytes, w->cols, x, work, y + r, 4);
    for (; r < r1; r++)
        rows_bf16(w->data + (size_t)r * row_bytes, row_bytes, w->cols, x, work, y + r, 1);
}

/* ---------------------------------------------------------------------------------------
 * matvec, q8_0 weights: per block, Σ q·x over its 32 elements in f32 (q converted exactly),
 * then acc += d · that sum (d: f16 → f32 by F16C, exact). If some |x| exceeds 2^100 (or is
 * NaN), Σ q·x could overflow where the reference's Σ (d·q)·x does not: such a call forms each
 * weight d·q first, as the reference does.
 */

/* 1 if every |x[i]| <= 2^100 (no NaN): unscaled block sums Σ q·x cannot overflow then. */
static int x_in_block_range(const float *x, int64_t n) {
    const __m256 limit = _mm256_set1_ps(0x1p100f);
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
    __m256 bad = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)   /* !(|x| <= limit): true for NaN too */
        bad = _mm256_or_ps(bad, _mm256_cmp_ps(_mm256_and_ps(_mm256_loadu_ps(x + i), abs_mask),
                                              limit, _CMP_NLE_UQ));
    int out = _mm256_movemask_ps(bad);
    for (; i < n; i++) out |= !(fabsf(x[i]) <= 0x1p100f);
    return !out;
}

/* 8 int8 at p → 8 f32 (sign-extended straight from memory: no lane-crossing register shuffle). */
INLINE __m256 load_i8x8_ps(const uint8_t *p) {
    return i8x8_to_ps(_mm_loadl_epi64((const __m128i_u *)p));
}

/* Σ q[k]·x[k] of one block's 32 int8 at qs, as 8 partial sums. */
INLINE __m256 block_dot_q8(const uint8_t *qs, const __m256 x[4]) {
    __m256 s0 = _mm256_mul_ps(load_i8x8_ps(qs), x[0]);
    __m256 s1 = _mm256_mul_ps(load_i8x8_ps(qs + 8), x[1]);
    s0 = _mm256_fmadd_ps(load_i8x8_ps(qs + 16), x[2], s0);
    s1 = _mm256_fmadd_ps(load_i8x8_ps(qs + 24), x[3], s1);
    return _mm256_add_ps(s0, s1);
}

INLINE void rows_q8_0(const uint8_t *row0, size_t row_bytes, int64_t n_blocks, const float *x,
                      float *y, const int nr) {
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                     _mm256_setzero_ps()};
    for (int64_t b = 0; b < n_blocks; b++) {
        const float *xb = x + b * QK8_0;
        const __m256 xv[4] = {_mm256_loadu_ps(xb), _mm256_loadu_ps(xb + 8),
                              _mm256_loadu_ps(xb + 16), _mm256_loadu_ps(xb + 24)};
        for (int i = 0; i < nr; i++) {
            const uint8_t *block = row0 + (size_t)i * row_bytes + (size_t)b * sizeof(block_q8_0);
            prefetch_ahead(block);
            const __m256 d = _mm256_set1_ps(_cvtsh_ss(load_u16(block)));
            acc[i] = _mm256_fmadd_ps(block_dot_q8(block + 2, xv), d, acc[i]);
        }
    }
    for (int i = 0; i < nr; i++) y[i] = hsum_ps(acc[i]);
}

/* One row with each weight d·q formed first (exact), as the reference. */
static float row_q8_0_exact(const uint8_t *row, int64_t n_blocks, const float *x) {
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < n_blocks; b++) {
        const uint8_t *block = row + (size_t)b * sizeof(block_q8_0);
        const __m256 d = _mm256_set1_ps(_cvtsh_ss(load_u16(block)));
        for (int k = 0; k < 4; k++)
            acc = _mm256_fmadd_ps(_mm256_mul_ps(load_i8x8_ps(block + 2 + 8 * k), d),
                                  _mm256_loadu_ps(x + b * QK8_0 + 8 * k), acc);
    }
    return hsum_ps(acc);
}

void matvec_f32_q8_0_avx2(const tensor *w, int64_t r0, int64_t r1, const float *x,
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
 * matvec, mxfp4 weights.
 *
 * Values. A nibble maps, by a byte shuffle, to twice its FP4 value as an int8 ({0, 1, 2, 3, 4,
 * 6, 8, 12} with sign: all integers), and the group's scale byte e to 2^(e − 128), so that
 * (2·FP4) · 2^(e−128) = FP4 · 2^(e−127) is the reference's ldexpf value exactly.
 *
 * Fast route. A group's 16 bytes hold its even elements in the low nibbles and its odd ones in
 * the high nibbles. After the lookup, in-lane byte shuffles move each code into the top byte
 * of a 32-bit lane (no lane-crossing instruction: those are slow on Zen), where it converts to
 * f32 as code · 2^24; x is scaled by 2^-24 once per call (exact unless some x is a nonzero below
 * 2^-102 in magnitude), so each product is exactly code · x (x above 2^100 or NaN also sends the
 * call to the exact route, so that no product overflows before its scale shrinks it). The group's sum is multiplied by
 * 2^(e−128), which needs a normal scale and no overflow: 2 <= e <= 252 (12 · 2^124 < FLT_MAX).
 * Two consecutive groups of a row are handled in one 256-bit register (group g in the low
 * 128-bit lane, g + 1 in the high one), with x prepared in work in the matching order.
 *
 * Exact route, for a block of rows with any other scale byte (or an x that cannot be scaled):
 * every weight is formed as the reference forms it, 2·FP4 · 2^(e−128) (inf where it
 * overflows), and multiplied with x in its natural order.
 */

#define MXFP4_FAST_MIN_SCALE 2
#define MXFP4_FAST_MAX_SCALE 252
#define MXFP4_CHUNK 8            /* groups per chunk: 4 pairs, 8 scale bytes in one load */
#define X_FOLD 0x1p-24f          /* undoes the 2^24 of a code converted from a top byte */
#define GROUP_BYTES sizeof(group_mxfp4)   /* 16 bytes: a group's 32 nibbles */

/* The int8 codes 2·FP4[nibble], in both 128-bit lanes. */
INLINE __m256i fp4_doubled_lut(void) {
    return _mm256_setr_epi8(0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12,
                            0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12);
}

/* Byte shuffle moving bytes 4k..4k+3 of each lane to the top bytes of its four 32-bit lanes. */
INLINE __m256i spread_to_top_byte(int k) {
    const char a = (char)(4 * k), b = (char)(4 * k + 1);
    const char c = (char)(4 * k + 2), d = (char)(4 * k + 3);
    return _mm256_setr_epi8(-1, -1, -1, a, -1, -1, -1, b, -1, -1, -1, c, -1, -1, -1, d,
                            -1, -1, -1, a, -1, -1, -1, b, -1, -1, -1, c, -1, -1, -1, d);
}

/* Codes (int8) 4k..4k+3 of each lane of v, as f32 times 2^24. */
INLINE __m256 spread_codes(__m256i v, int k) {
    return _mm256_cvtepi32_ps(_mm256_shuffle_epi8(v, spread_to_top_byte(k)));
}

/*
 * x for the fast route, into out (n_groups · 32 floats), times 2^-24. For the pairs of groups of
 * the chunks (n_groups rounded down to a multiple of MXFP4_CHUNK), per pair (g, g+1) 8 vectors:
 * k = 0..3: [x_g[2(4k+t)], t < 4 | x_g+1[2(4k+t)], t < 4]  (even elements, 4k..4k+3)
 * k = 4..7: the same with the odd elements 2(4k'+t)+1, k' = k − 4.
 * For each remaining group g, 4 vectors, k = 0..3: [x_g[8k], x_g[8k+2], x_g[8k+4], x_g[8k+6],
 * x_g[8k+1], x_g[8k+3], x_g[8k+5], x_g[8k+7]]. Returns 0 if some x is outside the range
 * where x·2^-24 is exact and code·x cannot overflow (nonzero |x| < 2^-102, |x| > 2^100, NaN).
 */
static int mxfp4_prepare_x(const float *x, int64_t n_groups, float *out) {
    const int64_t paired = n_groups - n_groups % MXFP4_CHUNK;
    int out_of_range = !x_in_block_range(x, n_groups * QK_MXFP4);   /* code·x could overflow */
    for (int64_t i = 0; i < n_groups * QK_MXFP4; i++) {                /* x·2^-24 inexact */
        const float a = fabsf(x[i]);
        out_of_range |= a < 0x1p-102f && a != 0.0f;
    }
    for (int64_t g = 0; g < paired; g += 2) {
        const float *x0 = x + g * QK_MXFP4, *x1 = x0 + QK_MXFP4;
        float *o = out + g * QK_MXFP4;
        for (int parity = 0; parity < 2; parity++)
            for (int k = 0; k < 4; k++)
                for (int t = 0; t < 4; t++) {
                    const int e = 2 * (4 * k + t) + parity;
                    o[32 * parity + 8 * k + t] = x0[e] * X_FOLD;
                    o[32 * parity + 8 * k + 4 + t] = x1[e] * X_FOLD;
                }
    }
    for (int64_t g = paired; g < n_groups; g++) {
        const float *xg = x + g * QK_MXFP4;
        float *o = out + g * QK_MXFP4;
        for (int k = 0; k < 4; k++)
            for (int t = 0; t < 4; t++) {
                o[8 * k + t] = xg[8 * k + 2 * t] * X_FOLD;
                o[8 * k + 4 + t] = xg[8 * k + 2 * t + 1] * X_FOLD;
            }
    }
    return !out_of_range;
}

/* Nonzero bytes where the 32 bytes at s are outside [lo, hi] (unsigned):
 * max(v, lo) != v or min(v, hi) != v. */
INLINE __m256i bytes_outside(const uint8_t *s, __m256i lo, __m256i hi) {
    const __m256i v = _mm256_loadu_si256((const __m256i_u *)s);
    return _mm256_or_si256(_mm256_xor_si256(_mm256_max_epu8(v, lo), v),
                           _mm256_xor_si256(_mm256_min_epu8(v, hi), v));
}

/* 1 if every byte of s[n] is in [MXFP4_FAST_MIN_SCALE, MXFP4_FAST_MAX_SCALE]. */
int scales_fast_avx2(const uint8_t *s, size_t n) {
    const __m256i lo = _mm256_set1_epi8((char)MXFP4_FAST_MIN_SCALE);
    const __m256i hi = _mm256_set1_epi8((char)MXFP4_FAST_MAX_SCALE);
    __m256i bad = _mm256_setzero_si256();
    size_t i = 0;
    for (; i + 32 <= n; i += 32) bad = _mm256_or_si256(bad, bytes_outside(s + i, lo, hi));
    if (i < n && n >= 32) {   /* the last 32 bytes again, not a byte loop (90 groups: 26) */
        bad = _mm256_or_si256(bad, bytes_outside(s + n - 32, lo, hi));
        i = n;
    }
    if (!_mm256_testz_si256(bad, bad)) return 0;
    for (; i < n; i++)
        if (s[i] < MXFP4_FAST_MIN_SCALE || s[i] > MXFP4_FAST_MAX_SCALE) return 0;
    return 1;
}

/* 2^(e − 128) for MXFP4_FAST_MIN_SCALE <= e, as 32-bit lanes of e (a normal f32 each). */
INLINE __m256 e8m0_half_scales(__m256i e) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_sub_epi32(e, _mm256_set1_epi32(1)), 23));
}

/* 2^(e − 128) as an f32, exact for every byte (subnormal for e = 0, 1), broadcast. */
INLINE __m256 e8m0_half_scale(uint8_t e) {
    const uint32_t bits = e >= 2 ? (uint32_t)(e - 1) << 23 : 0x00200000u << e;
    float f;
    memcpy(&f, &bits, sizeof f);
    return _mm256_set1_ps(f);
}

/* Σ code·x' over the 64 weights of two consecutive groups (32 bytes at packed), as 8 sums:
 * lanes 0..3 belong to the first group, lanes 4..7 to the second. */
INLINE __m256 pair_dot_mxfp4(const uint8_t *packed, const __m256 xv[8]) {
    const __m256i nibble = _mm256_set1_epi8(0x0F);
    const __m256i bytes = _mm256_loadu_si256((const __m256i_u *)packed);
    const __m256i even = _mm256_shuffle_epi8(fp4_doubled_lut(), _mm256_and_si256(bytes, nibble));
    const __m256i odd = _mm256_shuffle_epi8(fp4_doubled_lut(),
                                            _mm256_and_si256(_mm256_srli_epi16(bytes, 4), nibble));
    __m256 s0 = _mm256_mul_ps(spread_codes(even, 0), xv[0]);
    __m256 s1 = _mm256_mul_ps(spread_codes(odd, 0), xv[4]);
    for (int k = 1; k < 4; k++) {
        s0 = _mm256_fmadd_ps(spread_codes(even, k), xv[k], s0);
        s1 = _mm256_fmadd_ps(spread_codes(odd, k), xv[4 + k], s1);
    }
    return _mm256_add_ps(s0, s1);
}

/* The 32 nibbles of a group's 16 packed bytes as byte indices: the low lane holds the low
 * nibbles (even elements 0, 2, .., 30), the high lane the high nibbles (odd elements). */
INLINE __m256i mxfp4_group_nibbles(const uint8_t *packed) {
    const __m256i bytes = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i_u *)packed));
    return _mm256_and_si256(_mm256_blend_epi32(bytes, _mm256_srli_epi16(bytes, 4), 0xF0),
                            _mm256_set1_epi8(0x0F));
}

/* Σ code·x' over one group's 32 weights, as 8 sums (layout of the remaining groups). */
INLINE __m256 group_dot_mxfp4(const uint8_t *packed, const __m256 xv[4]) {
    const __m256i codes = _mm256_shuffle_epi8(fp4_doubled_lut(), mxfp4_group_nibbles(packed));
    __m256 s0 = _mm256_mul_ps(spread_codes(codes, 0), xv[0]);
    __m256 s1 = _mm256_mul_ps(spread_codes(codes, 1), xv[1]);
    s0 = _mm256_fmadd_ps(spread_codes(codes, 2), xv[2], s0);
    s1 = _mm256_fmadd_ps(spread_codes(codes, 3), xv[3], s1);
    return _mm256_add_ps(s0, s1);
}

/* Fast route for nr rows: row i's groups at groups0 + i·n_groups·16, its scales at
 * scales0 + i·n_groups; xd prepared by mxfp4_prepare_x. */
INLINE void rows_mxfp4_fast(const uint8_t *groups0, const uint8_t *scales0, int64_t n_groups,
                            const float *xd, float *y, const int nr) {
    const size_t row_group_bytes = (size_t)n_groups * GROUP_BYTES;
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                     _mm256_setzero_ps()};
    int64_t g = 0;
    for (; g + MXFP4_CHUNK <= n_groups; g += MXFP4_CHUNK) {
        __m256 scale[4];   /* 2^(e−128) of the chunk's 8 groups, per row */
        for (int i = 0; i < nr; i++) {
            const uint8_t *e = scales0 + (size_t)i * (size_t)n_groups + (size_t)g;
            const __m128i bytes = _mm_loadl_epi64((const __m128i_u *)e);
            scale[i] = e8m0_half_scales(_mm256_cvtepu8_epi32(bytes));
        }
        for (int pair = 0; pair < MXFP4_CHUNK / 2; pair++) {
            const int64_t gp = g + 2 * pair;
            const int a = 2 * pair, b = 2 * pair + 1;   /* the pair's groups within the chunk */
            const __m256i which = _mm256_setr_epi32(a, a, a, a, b, b, b, b);
            __m256 xv[8];
            for (int k = 0; k < 8; k++) xv[k] = _mm256_loadu_ps(xd + gp * QK_MXFP4 + 8 * k);
            for (int i = 0; i < nr; i++) {
                const uint8_t *packed = groups0 + (size_t)i * row_group_bytes
                                        + (size_t)gp * GROUP_BYTES;
                prefetch_ahead(packed);
                acc[i] = _mm256_fmadd_ps(pair_dot_mxfp4(packed, xv),
                                         _mm256_permutevar8x32_ps(scale[i], which), acc[i]);
            }
        }
    }
    for (; g < n_groups; g++) {
        __m256 xv[4];
        for (int k = 0; k < 4; k++) xv[k] = _mm256_loadu_ps(xd + g * QK_MXFP4 + 8 * k);
        for (int i = 0; i < nr; i++) {
            const uint8_t e = scales0[(size_t)i * (size_t)n_groups + (size_t)g];
            const uint8_t *packed = groups0 + (size_t)i * row_group_bytes + (size_t)g * GROUP_BYTES;
            acc[i] = _mm256_fmadd_ps(group_dot_mxfp4(packed, xv), e8m0_half_scale(e), acc[i]);
        }
    }
    for (int i = 0; i < nr; i++) y[i] = hsum_ps(acc[i]);
}

/* One row by the exact route: each weight 2·FP4 · 2^(e−128) as the reference's, x natural. */
static float row_mxfp4_exact(const uint8_t *groups, const uint8_t *scales, int64_t n_groups,
                             const float *x) {
    const __m128i lut = _mm256_castsi256_si128(fp4_doubled_lut());
    const __m128i nibble = _mm_set1_epi8(0x0F);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t g = 0; g < n_groups; g++) {
        const uint8_t *packed = groups + (size_t)g * GROUP_BYTES;
        const __m128i bytes = _mm_loadu_si128((const __m128i_u *)packed);
        const __m128i even = _mm_shuffle_epi8(lut, _mm_and_si128(bytes, nibble));
        const __m128i odd = _mm_shuffle_epi8(lut, _mm_and_si128(_mm_srli_epi16(bytes, 4), nibble));
        const __m128i first = _mm_unpacklo_epi8(even, odd), second = _mm_unpackhi_epi8(even, odd);
        const __m128i codes[4] = {first, _mm_unpackhi_epi64(first, first), second,
                                  _mm_unpackhi_epi64(second, second)};
        const __m256 scale = e8m0_half_scale(scales[g]);
        for (int k = 0; k < 4; k++) {
            const __m256 w = _mm256_mul_ps(i8x8_to_ps(codes[k]), scale);
            acc = _mm256_fmadd_ps(w, _mm256_loadu_ps(x + g * QK_MXFP4 + 8 * k), acc);
        }
    }
    return hsum_ps(acc);
}

void matvec_f32_mxfp4_avx2(const tensor *w, int64_t r0, int64_t r1, const float *x,
                           float *y, float *work) {
    const int64_t n_groups = w->cols / QK_MXFP4;
    const size_t row_group_bytes = (size_t)n_groups * GROUP_BYTES;
    const uint8_t *scales = w->data + (size_t)w->rows * row_group_bytes;
    const int x_fast = mxfp4_prepare_x(x, n_groups, work);
    for (int64_t r = r0; r < r1;) {
        const int nr = r1 - r >= 4 ? 4 : 1;
        const uint8_t *g0 = w->data + (size_t)r * row_group_bytes;
        const uint8_t *s0 = scales + (size_t)r * (size_t)n_groups;
        if (x_fast && scales_fast_avx2(s0, (size_t)nr * (size_t)n_groups)) {
            if (nr == 4) rows_mxfp4_fast(g0, s0, n_groups, work, y + r, 4);
            else rows_mxfp4_fast(g0, s0, n_groups, work, y + r, 1);
        } else {
            for (int i = 0; i < nr; i++)
                y[r + i] = row_mxfp4_exact(g0 + (size_t)i * row_group_bytes,
                                           s0 + (size_t)i * (size_t)n_groups, n_groups, x);
        }
        r += nr;
    }
}

/* ---------------------------------------------------------------------------------------
 * Integer matmul for q8_0 and mxfp4 weights over int16 activations (struct qact, kernels.h;
 * activations rounded to int8 are int16 too, and one token over them has kernels of its own
 * below, with the same block sums).
 *
 * Per weight block b (32 elements) and token: S_b = Σ w·q exactly in int32, where w is the
 * q8_0 int8 or the doubled FP4 code and q the activation's int16 (|S_b| <= 32·128·32767 <
 * 2^31); then acc += (f32(S_b) · d_b) · ws_b, ws_b the weight block's scale (q8_0: its f16 d;
 * mxfp4: 2^(e−128)) and d_b the activation block's scale. VPMADDWD does 16 products per
 * instruction, against 8 for an f32 FMA after a conversion: the integer route is what lets one
 * core keep up with memory. Blocks go 8 at a time: eight vectors of partial sums are reduced
 * to one vector [S_b .. S_b+7], converted and scaled by one FMA; a tail of fewer than 8 blocks
 * is padded with zero sums and zero activation scales.
 *
 * One token (decoding) reads each weight block into registers and uses it once. Several tokens
 * (prefill) decode rows once into int16 in work memory, in a layout that needs no reduction,
 * and reuse them for every token: the same block sums and the same float operations, so a
 * row's result does not depend on how many tokens share it.
 * Rows whose mxfp4 scale bytes are outside 2..252, and tokens qact marked exact, take the f32
 * routes above (matvec), which match the reference everywhere.
 */

#define IBLK 8   /* blocks reduced together */

/*
 * Horizontal sums without VPHADDD (measured here: ~2 cycles each on Zen 3, against two
 * unpacks per cycle). Within each 128-bit half: pair_sums(a, b) = [a0+a2, b0+b2, a1+a3, b1+b3],
 * quad_sums(pair_sums(a, b), pair_sums(c, d)) = [Σa, Σb, Σc, Σd] (of that half's lanes); the
 * same lanes hadd(hadd(a, b), hadd(c, d)) gives. Integer sums: exact in any order.
 */
INLINE __m256i pair_sums(__m256i a, __m256i b) {
    return _mm256_add_epi32(_mm256_unpacklo_epi32(a, b), _mm256_unpackhi_epi32(a, b));
}

INLINE __m256i quad_sums(__m256i ab, __m256i cd) {
    return _mm256_add_epi32(_mm256_unpacklo_epi64(ab, cd), _mm256_unpackhi_epi64(ab, cd));
}

/* [Σ lanes of p[0], ..., Σ lanes of p[7]]. */
INLINE __m256i reduce8_epi32(const __m256i p[IBLK]) {
    const __m256i lo = quad_sums(pair_sums(p[0], p[1]), pair_sums(p[2], p[3]));
    const __m256i hi = quad_sums(pair_sums(p[4], p[5]), pair_sums(p[6], p[7]));
    return _mm256_add_epi32(_mm256_permute2x128_si256(lo, hi, 0x20),
                            _mm256_permute2x128_si256(lo, hi, 0x31));
}

/* Partial int32 sums of 32 int16 weights (w) times 32 int16 activations (q). */
INLINE __m256i dot32_i16(__m256i w_lo, __m256i w_hi, const int16_t *q) {
    return _mm256_add_epi32(_mm256_madd_epi16(w_lo, _mm256_loadu_si256((const __m256i_u *)q)),
                            _mm256_madd_epi16(w_hi, _mm256_loadu_si256((const __m256i_u *)(q + 16))));
}

/*
 * The 32 doubled FP4 codes of a group as int16 in QACT_ORDER_EVEN_ODD_HALVES: lo = elements
 * 0, 2, .., 14 | 1, 3, .., 15 and hi = 16, .., 30 | 17, .., 31 (128-bit halves). One byte
 * shuffle decodes all 32 codes (low nibbles in the low half, high nibbles in the high half);
 * in-lane unpacks with the sign bytes widen them (VPMOVSXBW crosses lanes: 0.8 per cycle here).
 */
INLINE void mxfp4_group_i16(const uint8_t *packed, __m256i *lo, __m256i *hi) {
    const __m256i v = _mm256_shuffle_epi8(fp4_doubled_lut(), mxfp4_group_nibbles(packed));
    const __m256i sign = _mm256_cmpgt_epi8(_mm256_setzero_si256(), v);
    *lo = _mm256_unpacklo_epi8(v, sign);
    *hi = _mm256_unpackhi_epi8(v, sign);
}

/* A q8_0 block's 32 int8 as int16, in order. */
INLINE void q8_0_block_i16(const uint8_t *block, __m256i *lo, __m256i *hi) {
    *lo = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i_u *)(block + 2)));
    *hi = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i_u *)(block + 18)));
}

/* f16 scales of the q8_0 blocks b .. b+7 of a row (blocks 34 bytes apart), as f32. */
INLINE __m256 q8_0_scales8(const uint8_t *block) {
    const __m128i h = _mm_setr_epi16(
        (short)load_u16(block), (short)load_u16(block + 34), (short)load_u16(block + 68),
        (short)load_u16(block + 102), (short)load_u16(block + 136), (short)load_u16(block + 170),
        (short)load_u16(block + 204), (short)load_u16(block + 238));
    return _mm256_cvtph_ps(h);
}


/* The activation scales of blocks b .. b+n−1 (n <= 8), zero beyond. */
INLINE __m256 load_xd(const float *xd, int64_t n) {
    if (n == IBLK) return _mm256_loadu_ps(xd);
    /* a masked load (nothing read past xd + n): a copy through the stack would stall on store
     * forwarding once per row */
    const __m256i live = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    return _mm256_maskload_ps(xd, live);
}

/* n < 8 mxfp4 scale bytes at p, then the padding byte 127, as 8 int32: gathered in a register,
 * not copied through the stack (store forwarding, as load_xd). */
INLINE __m256i scale_bytes_tail(const uint8_t *p, int64_t n) {
    uint64_t v = 0x7F7F7F7F7F7F7F7FULL;
    for (int64_t i = 0; i < n; i++) v = (v & ~((uint64_t)0xFF << (8 * i))) | ((uint64_t)p[i] << (8 * i));
    return _mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)v));
}

/*
 * Block sums. Integer additions are exact, so how the eight vectors are reduced does not change
 * the sums: full chunks pair them up as they are produced (few live registers), tails go
 * through reduce8_epi32 with zero padding; both give the same [S_b .. S_b+7].
 */

/* Σ w·q of mxfp4 group `packed` with 32 activations q (partial sums in 8 lanes). */
INLINE __m256i mxfp4_group_dot(const uint8_t *packed, const int16_t *q) {
    __m256i lo, hi;
    mxfp4_group_i16(packed, &lo, &hi);
    return dot32_i16(lo, hi, q);
}

/* Σ w·q of q8_0 block `block` with 32 activations q. */
INLINE __m256i q8_0_block_dot(const uint8_t *block, const int16_t *q) {
    __m256i lo, hi;
    q8_0_block_i16(block, &lo, &hi);
    return dot32_i16(lo, hi, q);
}

/* [S_0 .. S_7] from lo = quad_sums of p0..p3 and hi = quad_sums of p4..p7 (per-half sums). */
INLINE __m256i finish8_epi32(__m256i lo, __m256i hi) {
    return _mm256_add_epi32(_mm256_permute2x128_si256(lo, hi, 0x20),
                            _mm256_permute2x128_si256(lo, hi, 0x31));
}

#define SUMS8(DOT, W, WSTEP, Q)                                                                   \
    finish8_epi32(                                                                                \
        quad_sums(pair_sums(DOT((W), (Q)), DOT((W) + (WSTEP), (Q) + 32)),                         \
                  pair_sums(DOT((W) + 2 * (WSTEP), (Q) + 64), DOT((W) + 3 * (WSTEP), (Q) + 96))), \
        quad_sums(pair_sums(DOT((W) + 4 * (WSTEP), (Q) + 128), DOT((W) + 5 * (WSTEP), (Q) + 160)),\
                  pair_sums(DOT((W) + 6 * (WSTEP), (Q) + 192), DOT((W) + 7 * (WSTEP), (Q) + 224))))

/* acc += (f32(S) · xd) · ws for 8 blocks given their sums S. */
INLINE __m256 scale_sums(__m256 acc, __m256i sums, __m256 ws, __m256 xd) {
    return _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(sums), xd), ws, acc);
}

/* acc plus the groups g .. n_groups−1 (fewer than 8) of an mxfp4 row over int16 q: zero sums
 * and activation scales pad the chunk, scale bytes 127. Every one-token mxfp4 kernel ends here. */
static __m256 mxfp4_tail(__m256 acc, const uint8_t *groups, const uint8_t *scales, int64_t g,
                         int64_t n_groups, const int16_t *q, const float *xd) {
    if (g >= n_groups) return acc;
    const int64_t n = n_groups - g;
    __m256i p[IBLK];
    for (int64_t i = 0; i < IBLK; i++)
        p[i] = i < n ? mxfp4_group_dot(groups + (g + i) * GROUP_BYTES, q + (g + i) * QK_MXFP4)
                     : _mm256_setzero_si256();
    const __m256 ws = e8m0_half_scales(scale_bytes_tail(scales + g, n));
    return scale_sums(acc, reduce8_epi32(p), ws, load_xd(xd + g, n));
}

/* acc plus the blocks b .. n_blocks−1 (fewer than 8) of a q8_0 row over int16 q: zero sums,
 * weight scales and activation scales pad the chunk. */
static __m256 q8_0_tail(__m256 acc, const uint8_t *row, int64_t b, int64_t n_blocks,
                        const int16_t *q, const float *xd) {
    if (b >= n_blocks) return acc;
    const int64_t n = n_blocks - b;
    __m256i p[IBLK];
    uint64_t h[2] = {0, 0};   /* the f16 scales, zero past the end, kept in registers */
    for (int64_t i = 0; i < IBLK; i++) {
        const uint8_t *block = row + (size_t)(b + i) * sizeof(block_q8_0);
        p[i] = i < n ? q8_0_block_dot(block, q + (b + i) * QK8_0) : _mm256_setzero_si256();
        if (i < n) h[i / 4] |= (uint64_t)load_u16(block) << (16 * (i % 4));
    }
    const __m256 ws = _mm256_cvtph_ps(_mm_set_epi64x((long long)h[1], (long long)h[0]));
    return scale_sums(acc, reduce8_epi32(p), ws, load_xd(xd + b, n));
}

/* One mxfp4 row (fast scale bytes only) · one token's int16 activations, weights in registers. */
static float row_mxfp4_i16(const uint8_t *groups, const uint8_t *scales, int64_t n_groups,
                           const int16_t *q, const float *xd) {
    __m256 acc = _mm256_setzero_ps();
    int64_t g = 0;
    for (; g + IBLK <= n_groups; g += IBLK) {
        const uint8_t *w = groups + g * GROUP_BYTES;
        prefetch_ahead(w);
        prefetch_ahead(w + 64);
        const __m256i sums = SUMS8(mxfp4_group_dot, w, GROUP_BYTES, q + g * QK_MXFP4);
        const __m256i e = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i_u *)(scales + g)));
        acc = scale_sums(acc, sums, e8m0_half_scales(e), _mm256_loadu_ps(xd + g));
    }
    return hsum_ps(mxfp4_tail(acc, groups, scales, g, n_groups, q, xd));
}

/*
 * One q8_0 row · one token, weights in registers: chunks of 8 blocks summed by DOT over qc
 * (the int16 q, or their int8 copy), the tail over the int16 q; the same float steps for both,
 * which keeps the int8 route bit-identical to the int16 one.
 */
#define DEFINE_ROW_Q8_0(NAME, QTYPE, DOT)                                                        \
    static float NAME(const uint8_t *row, int64_t n_blocks, const QTYPE *qc, const int16_t *q,  \
                      const float *xd) {                                                         \
        __m256 acc = _mm256_setzero_ps();                                                        \
        int64_t b = 0;                                                                           \
        for (; b + IBLK <= n_blocks; b += IBLK) {                                                \
            const uint8_t *blocks = row + (size_t)b * sizeof(block_q8_0);                        \
            for (int k = 0; k < 5; k++) prefetch_ahead(blocks + 64 * k); /* 272 bytes */         \
            const __m256i sums = SUMS8(DOT, blocks, sizeof(block_q8_0), qc + b * QK8_0);         \
            acc = scale_sums(acc, sums, q8_0_scales8(blocks), _mm256_loadu_ps(xd + b));          \
        }                                                                                        \
        return hsum_ps(q8_0_tail(acc, row, b, n_blocks, q, xd));                                 \
    }

DEFINE_ROW_Q8_0(row_q8_0_i16, int16_t, q8_0_block_dot)

/*
 * One token over int8 activations (qact bits 8: every q within ±127). The weight sums are the
 * same exact int32 block sums as above, reached with VPMADDUBSW (unsigned |w| × signed
 * sign(q, w), pairs of products within int16: |2·128·127| < 2^15) instead of widening to int16,
 * and the same scale_sums follow, so the result is bit-identical to row_*_i16 over the same q.
 * The token's q are first copied to int8 in the order these kernels load them (pack_i8_*).
 */
#define FP4_OFFSET 12       /* see mxfp4_pair_dot_i8_bytes */

/* offset[g] = FP4_OFFSET · Σ q of group g, for n_groups rounded up to a multiple of 8 (0 past
 * the end): what the int8 mxfp4 kernels subtract from their offset sums. */
static void fp4_offsets(const int16_t *q, int64_t n_groups, int32_t *offset) {
    qact_block_offsets(q, n_groups, (n_groups + IBLK - 1) / IBLK * IBLK, FP4_OFFSET, offset);
}

/* The byte of q that the int8 routes multiply: q itself when it fits in int8 (qact bits 8), else
 * (the split route) its high byte h (part 1) or low byte l (part 0), q = 256·h + l, l in 0..255;
 * l is stored in an int8_t, and the kernels read it back as unsigned. */
INLINE int8_t q_part(int16_t q, int part) {
    const int lo = (int)((unsigned)q & 0xFFu);
    return part ? (int8_t)((q - lo) / 256) : (int8_t)(uint8_t)lo;
}

/* mxfp4: per pair of groups (A, B), 64 bytes [A even | B even][A odd | B odd] (even: elements
 * 0, 2, .., 30) of q_part(q, part), from QACT_ORDER_EVEN_ODD_HALVES; an odd last group is paired
 * with zeros. out holds n_groups rounded up to even × 32 bytes. */
static void pack_i8_mxfp4(const int16_t *q, int64_t n_groups, int part, int8_t *out) {
    for (int64_t g = 0; g < n_groups; g += 2) {
        for (int h = 0; h < 2; h++) {   /* group A (h = 0), B (h = 1) */
            const int16_t *src = q + (g + h) * QK_MXFP4;
            int8_t *even = out + g * QK_MXFP4 + h * 16, *odd = even + 32;
            for (int i = 0; i < 16; i++) {   /* element 2i and 2i+1 */
                const int half = i / 8, k = i % 8;
                even[i] = g + h < n_groups ? q_part(src[half * 16 + k], part) : 0;
                odd[i] = g + h < n_groups ? q_part(src[half * 16 + 8 + k], part) : 0;
            }
        }
    }
}

/* The split route's offsets: offset[g] = 256 · FP4_OFFSET · Σ h over group g (0 past n_groups,
 * up to n_groups rounded up to a multiple of 8), h the high bytes of q. */
static void split_offsets(const int16_t *q, int64_t n_groups, int32_t *offset) {
    for (int64_t g = 0; g < (n_groups + IBLK - 1) / IBLK * IBLK; g++) {
        int32_t s = 0;
        for (int i = 0; g < n_groups && i < QK_MXFP4; i++) s += q_part(q[g * QK_MXFP4 + i], 1);
        offset[g] = 256 * FP4_OFFSET * s;
    }
}

/*
 * The int8 route shifts the doubled FP4 codes by FP4_OFFSET into [0, 24], so VPMADDUBSW takes
 * them as its unsigned operand as they are (no abs/sign step): a group sums
 * Σ (w + 12)·q = S + 12·Σq, and the row kernel subtracts 12·Σq, computed once per token
 * (pack_i8_mxfp4), to get the same exact S. A zero-padded group or pair has q = 0 and adds 0.
 */

/* The doubled FP4 codes plus FP4_OFFSET, in both 128-bit lanes. */
INLINE __m256i fp4_offset_lut(void) {
    return _mm256_setr_epi8(12, 13, 14, 15, 16, 18, 20, 24, 12, 11, 10, 9, 8, 6, 4, 0,
                            12, 13, 14, 15, 16, 18, 20, 24, 12, 11, 10, 9, 8, 6, 4, 0);
}

/* 8 int32 lanes: lanes 0..3 partial sums of group A, 4..7 of group B, of (w + FP4_OFFSET)·q,
 * from their 32 packed bytes (B's all zero for a last, unpaired group, whose q are 0). */
INLINE __m256i mxfp4_pair_dot_i8_bytes(__m256i bytes, const int8_t *q) {
    const __m256i nibble = _mm256_set1_epi8(0x0F);
    const __m256i even = _mm256_shuffle_epi8(fp4_offset_lut(), _mm256_and_si256(bytes, nibble));
    const __m256i odd = _mm256_shuffle_epi8(fp4_offset_lut(),
                                            _mm256_and_si256(_mm256_srli_epi16(bytes, 4), nibble));
    const __m256i qe = _mm256_loadu_si256((const __m256i_u *)q);
    const __m256i qo = _mm256_loadu_si256((const __m256i_u *)(q + 32));
    /* each pair <= 2·24·127, so the two pair sums add within int16 */
    const __m256i pairs = _mm256_add_epi16(_mm256_maddubs_epi16(even, qe),
                                           _mm256_maddubs_epi16(odd, qo));
    return _mm256_madd_epi16(pairs, _mm256_set1_epi16(1));
}

/*
 * The split route: one token's int16 q (qact bits 16) as q = 256·h + l, the high bytes h signed
 * and the low bytes l unsigned, each packed as pack_i8_mxfp4 packs int8 q. Per pair of groups,
 * 8 int32 lanes as mxfp4_pair_dot_i8_bytes's, of 256·(w + FP4_OFFSET)·h + w·l: the offset
 * codes are VPMADDUBSW's unsigned operand against h, the signed codes its signed operand
 * against l. Pairs stay within int16: |2·2·24·128| and |2·2·255·12| < 2^15. With the group's
 * 256·FP4_OFFSET·Σh subtracted (split_offsets) the block sums are Σ w·q, the same exact
 * integers row_mxfp4_i16 forms, in fewer instructions than its widening of the codes to int16
 * (one thread, tests/bench hot 2880×2880: 8.1 → 9.2 GB/s of weights).
 */
INLINE __m256i mxfp4_pair_dot_split_bytes(__m256i bytes, const int8_t *lo, const int8_t *hi) {
    const __m256i nibble = _mm256_set1_epi8(0x0F);
    const __m256i ue = _mm256_shuffle_epi8(fp4_offset_lut(), _mm256_and_si256(bytes, nibble));
    const __m256i uo = _mm256_shuffle_epi8(fp4_offset_lut(),
                                           _mm256_and_si256(_mm256_srli_epi16(bytes, 4), nibble));
    const __m256i off = _mm256_set1_epi8(FP4_OFFSET);
    const __m256i we = _mm256_sub_epi8(ue, off), wo = _mm256_sub_epi8(uo, off);
    const __m256i h = _mm256_add_epi16(
        _mm256_maddubs_epi16(ue, _mm256_loadu_si256((const __m256i_u *)hi)),
        _mm256_maddubs_epi16(uo, _mm256_loadu_si256((const __m256i_u *)(hi + 32))));
    const __m256i l = _mm256_add_epi16(
        _mm256_maddubs_epi16(_mm256_loadu_si256((const __m256i_u *)lo), we),
        _mm256_maddubs_epi16(_mm256_loadu_si256((const __m256i_u *)(lo + 32)), wo));
    return _mm256_add_epi32(_mm256_madd_epi16(h, _mm256_set1_epi16(256)),
                            _mm256_madd_epi16(l, _mm256_set1_epi16(1)));
}

/* The pair dot of either route at the 32 packed bytes `bytes`: int8 q (hi NULL) or split. */
INLINE __m256i mxfp4_pair_dot_any(__m256i bytes, const int8_t *q, const int8_t *hi) {
    return hi ? mxfp4_pair_dot_split_bytes(bytes, q, hi) : mxfp4_pair_dot_i8_bytes(bytes, q);
}

/* [S_g .. S_g+7] from the pair sums p[k] of groups g+2k, g+2k+1 (lanes: A×4 | B×4). */
INLINE __m256i pair_block_sums(__m256i p0, __m256i p1, __m256i p2, __m256i p3) {
    /* quad_sums gives [S_g, S_g+2, S_g+4, S_g+6 | S_g+1, S_g+3, S_g+5, S_g+7] */
    return _mm256_permutevar8x32_epi32(quad_sums(pair_sums(p0, p1), pair_sums(p2, p3)),
                                       _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

/* acc plus the last n_groups − g < 8 groups of an mxfp4 row over the byte routes' q (hi as
 * row_mxfp4_bytes's), padded as mxfp4_tail pads them: the same sums and scale steps. */
INLINE __m256 mxfp4_bytes_tail(__m256 acc, const uint8_t *groups, const uint8_t *scales,
                               int64_t g, int64_t n_groups, const int8_t *q, const int8_t *hi,
                               const int32_t *offset, const float *xd) {
    if (g >= n_groups) return acc;
    const int64_t n = n_groups - g;
    __m256i p[IBLK / 2];
    for (int64_t k = 0; k < IBLK / 2; k++) {
        const int64_t a = g + 2 * k, at = a * QK_MXFP4;
        const uint8_t *w = groups + a * GROUP_BYTES;
        const int8_t *h = hi ? hi + at : NULL;
        if (a + 1 < n_groups)
            p[k] = mxfp4_pair_dot_any(_mm256_loadu_si256((const __m256i_u *)w), q + at, h);
        else if (a < n_groups)   /* never read past the row's last group */
            p[k] = mxfp4_pair_dot_any(
                _mm256_zextsi128_si256(_mm_loadu_si128((const __m128i_u *)w)), q + at, h);
        else
            p[k] = _mm256_setzero_si256();
    }
    const __m256 ws = e8m0_half_scales(scale_bytes_tail(scales + g, n));
    const __m256i sums = _mm256_sub_epi32(pair_block_sums(p[0], p[1], p[2], p[3]),
                                          _mm256_loadu_si256((const __m256i_u *)(offset + g)));
    return scale_sums(acc, sums, ws, load_xd(xd + g, n));
}

/* One mxfp4 row (fast scale bytes only) · one token, over int8 q (hi NULL) or split into the
 * low bytes q and high bytes hi; offset as the route's (fp4_offsets, split_offsets). The
 * chunk, tail and scale steps are row_mxfp4_i16's, so all three give the same float.
 * (Measured: taking two rows at a time, sharing the loads of q, is no faster.) */
INLINE float row_mxfp4_bytes(const uint8_t *groups, const uint8_t *scales, int64_t n_groups,
                             const int8_t *q, const int8_t *hi, const int32_t *offset,
                             const float *xd) {
#define PAIR_AT(W, A) \
    mxfp4_pair_dot_any(_mm256_loadu_si256((const __m256i_u *)(W)), q + (A), hi ? hi + (A) : NULL)
    __m256 acc = _mm256_setzero_ps();
    int64_t g = 0;
    for (; g + IBLK <= n_groups; g += IBLK) {
        const uint8_t *w = groups + g * GROUP_BYTES;
        const int64_t a = g * QK_MXFP4;
        prefetch_ahead(w);
        prefetch_ahead(w + 64);
        const __m256i sums = _mm256_sub_epi32(
            pair_block_sums(PAIR_AT(w, a), PAIR_AT(w + 32, a + 64), PAIR_AT(w + 64, a + 128),
                            PAIR_AT(w + 96, a + 192)),
            _mm256_loadu_si256((const __m256i_u *)(offset + g)));
        const __m256i e = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i_u *)(scales + g)));
        acc = scale_sums(acc, sums, e8m0_half_scales(e), _mm256_loadu_ps(xd + g));
    }
#undef PAIR_AT
    return hsum_ps(mxfp4_bytes_tail(acc, groups, scales, g, n_groups, q, hi, offset, xd));
}

static float row_mxfp4_i8(const uint8_t *groups, const uint8_t *scales, int64_t n_groups,
                          const int8_t *q8, const int32_t *offset, const float *xd) {
    return row_mxfp4_bytes(groups, scales, n_groups, q8, NULL, offset, xd);
}

static float row_mxfp4_split(const uint8_t *groups, const uint8_t *scales, int64_t n_groups,
                             const int8_t *lo, const int8_t *hi, const int32_t *offset,
                             const float *xd) {
    return row_mxfp4_bytes(groups, scales, n_groups, lo, hi, offset, xd);
}

INLINE __m256i q8_0_block_dot_i8(const uint8_t *block, const int8_t *q) {
    const __m256i w = _mm256_loadu_si256((const __m256i_u *)(block + 2));
    const __m256i a = _mm256_loadu_si256((const __m256i_u *)q);
    return _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_abs_epi8(w), _mm256_sign_epi8(a, w)),
                             _mm256_set1_epi16(1));
}

DEFINE_ROW_Q8_0(row_q8_0_i8, int8_t, q8_0_block_dot_i8)

/*
 * Several tokens (prefill). Rows are decoded to int16 once per call and every token's
 * activations are rearranged once per call, both into the "interleaved" layout: for each chunk
 * of 8 blocks (256 values), 16 vectors of 8 int32 lanes, lane j of vector k holding int16 pair
 * k of block j (blocks past the row's end zero). VPMADDWD of a weight vector with an
 * activation vector then adds to lane j a piece of block j's sum only, so 16 multiply-adds
 * leave the 8 block sums [S_b .. S_b+7] in lanes with no horizontal reduction — the same exact
 * integers SUMS8 yields, followed by the same scale_sums, so every (row, token) gets exactly
 * the one-token path's result. The work runs chunk by chunk (a ROW_BLOCK-row slice of weights
 * and every token's slice sit in L1) in tiles of up to TILE rows × TILE tokens: each loaded
 * vector feeds TILE products, 9 block-sum accumulators live in registers. mxfp4 over int8
 * activations has int8 twins of the layout and the tile (tile8, below): 8 vectors per chunk,
 * lane j of vector k holding values 4k .. 4k+3 of block j.
 */
#define ROW_BLOCK 24
#define TILE 3
#define TOKEN_GROUP 12
#define CHUNK 256            /* int16 values in 8 blocks */

/* The 8×8 int32 transpose: out[k] lane j = in[j] lane k. */
INLINE void transpose8_epi32(const __m256i in[8], __m256i out[8]) {
    __m256i t[8], u[8];
    for (int i = 0; i < 4; i++) {
        t[2 * i] = _mm256_unpacklo_epi32(in[2 * i], in[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_epi32(in[2 * i], in[2 * i + 1]);
    }
    for (int h = 0; h < 2; h++) {   /* rows 4h .. 4h+3 */
        u[4 * h + 0] = _mm256_unpacklo_epi64(t[4 * h + 0], t[4 * h + 2]);
        u[4 * h + 1] = _mm256_unpackhi_epi64(t[4 * h + 0], t[4 * h + 2]);
        u[4 * h + 2] = _mm256_unpacklo_epi64(t[4 * h + 1], t[4 * h + 3]);
        u[4 * h + 3] = _mm256_unpackhi_epi64(t[4 * h + 1], t[4 * h + 3]);
    }
    for (int k = 0; k < 4; k++) {
        out[k] = _mm256_permute2x128_si256(u[k], u[4 + k], 0x20);
        out[k + 4] = _mm256_permute2x128_si256(u[k], u[4 + k], 0x31);
    }
}

/* Blocks [0, n) (n <= 8) of src (32 int16 each, in order) into one interleaved chunk at dst. */
INLINE void interleave_chunk(const int16_t *src, int64_t n, int16_t *dst) {
    __m256i lo[8], hi[8], out[8];
    for (int64_t j = 0; j < 8; j++) {
        lo[j] = j < n ? _mm256_loadu_si256((const __m256i_u *)(src + 32 * j)) : _mm256_setzero_si256();
        hi[j] = j < n ? _mm256_loadu_si256((const __m256i_u *)(src + 32 * j + 16)) : _mm256_setzero_si256();
    }
    transpose8_epi32(lo, out);
    for (int k = 0; k < 8; k++) _mm256_storeu_si256((__m256i_u *)(dst + 16 * k), out[k]);
    transpose8_epi32(hi, out);
    for (int k = 0; k < 8; k++) _mm256_storeu_si256((__m256i_u *)(dst + 128 + 16 * k), out[k]);
}

/* A whole row of n_blocks blocks (in order) into n_chunks interleaved chunks. */
static void interleave_row(const int16_t *src, int64_t n_blocks, int16_t *dst) {
    for (int64_t b = 0; b < n_blocks; b += IBLK)
        interleave_chunk(src + b * 32, n_blocks - b < IBLK ? n_blocks - b : IBLK, dst + b * 32);
}

/* ws[g] = 2^(e − 128) of a row's fast scale bytes (e8m0_half_scales' value), padded with a
 * finite 0.5 to n_groups rounded up to 8. */
static void mxfp4_row_scales(const uint8_t *scales, int64_t n_groups, float *ws) {
    for (int64_t g = 0; g < n_groups; g++) {
        const uint32_t bits = (uint32_t)(scales[g] - 1) << 23;
        memcpy(ws + g, &bits, sizeof bits);
    }
    for (int64_t g = n_groups; g % IBLK; g++) ws[g] = 0.5f;
}

/* int8 counterparts (mxfp4 over int8 activations): a block is 32 bytes, i.e. 8 int32 lanes of
 * 4 consecutive values, so one 8×8 transpose interleaves a chunk: lane j of vector k holds
 * values 4k .. 4k+3 of block j. */
INLINE void interleave_chunk_i8(const int8_t *src, int64_t n, int8_t *dst) {
    __m256i in[8], out[8];
    for (int64_t j = 0; j < 8; j++)
        in[j] = j < n ? _mm256_loadu_si256((const __m256i_u *)(src + 32 * j)) : _mm256_setzero_si256();
    transpose8_epi32(in, out);
    for (int k = 0; k < 8; k++) _mm256_storeu_si256((__m256i_u *)(dst + 32 * k), out[k]);
}

static void interleave_row_i8(const int8_t *src, int64_t n_blocks, int8_t *dst) {
    for (int64_t b = 0; b < n_blocks; b += IBLK)
        interleave_chunk_i8(src + b * 32, n_blocks - b < IBLK ? n_blocks - b : IBLK, dst + b * 32);
}

/* Decode an mxfp4 row (fast scale bytes) into its doubled FP4 codes plus FP4_OFFSET, as
 * int8 in QACT_ORDER_EVEN_ODD_HALVES (mxfp4_group_i16's order: the shuffled bytes hold the
 * even elements in their low lane, the odd in the high lane; VPERMQ 0, 2, 1, 3 gives
 * 0, 2, .., 14 | 1, .., 15 | 16, .., 30 | 17, .., 31), and ws as decode_row_mxfp4's. */
static void decode_row_mxfp4_i8(const uint8_t *groups, const uint8_t *scales, int64_t n_groups,
                                int8_t *w8, float *ws) {
    for (int64_t g = 0; g < n_groups; g++) {
        const __m256i v = _mm256_shuffle_epi8(fp4_offset_lut(), mxfp4_group_nibbles(groups + g * GROUP_BYTES));
        _mm256_storeu_si256((__m256i_u *)(w8 + g * 32), _mm256_permute4x64_epi64(v, 0xD8));
    }
    mxfp4_row_scales(scales, n_groups, ws);
}

/* Decode an mxfp4 row (fast scale bytes) into w16[cols] and ws[n_groups rounded up to 8]. */
static void decode_row_mxfp4(const uint8_t *groups, const uint8_t *scales, int64_t n_groups,
                             int16_t *w16, float *ws) {
    for (int64_t g = 0; g < n_groups; g++) {
        __m256i lo, hi;
        mxfp4_group_i16(groups + g * GROUP_BYTES, &lo, &hi);
        _mm256_storeu_si256((__m256i_u *)(w16 + g * 32), lo);
        _mm256_storeu_si256((__m256i_u *)(w16 + g * 32 + 16), hi);
    }
    mxfp4_row_scales(scales, n_groups, ws);
}

/* Decode a q8_0 row into w16[cols] and ws[n_blocks rounded up to 8]. */
static void decode_row_q8_0(const uint8_t *row, int64_t n_blocks, int16_t *w16, float *ws) {
    for (int64_t b = 0; b < n_blocks; b++) {
        const uint8_t *block = row + (size_t)b * sizeof(block_q8_0);
        __m256i lo, hi;
        q8_0_block_i16(block, &lo, &hi);
        _mm256_storeu_si256((__m256i_u *)(w16 + b * 32), lo);
        _mm256_storeu_si256((__m256i_u *)(w16 + b * 32 + 16), hi);
        ws[b] = _cvtsh_ss(load_u16(block));
    }
    for (int64_t b = n_blocks; b % IBLK; b++) ws[b] = 0.0f;
}

/* Scratch of one blocked call; every array is indexed by chunk-padded columns (stride). */
typedef struct blocked {
    int16_t *w;          /* [ROW_BLOCK, stride] interleaved weights */
    float *ws;           /* [ROW_BLOCK, n_sc] block scales, padded with finite values */
    int16_t *q;          /* [n_tok, stride] interleaved activations */
    float *xd;           /* [n_tok, n_sc] activation scales, padded with 0 */
    float *acc;          /* [ROW_BLOCK, TOKEN_GROUP, 8] */
    int16_t *row;        /* [stride] one row or token in order, before interleaving */
    int32_t *off;        /* mxfp4 over int8 activations: [n_tok, n_sc] FP4_OFFSET · Σq of each
                          * block (0 past the end), and w, q, row hold int8 (in their first
                          * stride bytes per row), weights as offset codes; else NULL */
    int64_t stride, n_sc;
    uint8_t fast[ROW_BLOCK];   /* row decoded (else: exact route) */
} blocked;

/* Allocate the scratch for cols and n_tok; 0 if out of memory. */
static int blocked_new(blocked *s, int64_t cols, int64_t n_tok, int i8) {
    s->n_sc = (cols / 32 + IBLK - 1) / IBLK * IBLK;
    s->stride = s->n_sc * 32;
    const size_t w = (size_t)ROW_BLOCK * (size_t)s->stride * sizeof(int16_t);
    const size_t ws = (size_t)ROW_BLOCK * (size_t)s->n_sc * sizeof(float);
    const size_t q = (size_t)n_tok * (size_t)s->stride * sizeof(int16_t);
    const size_t xd = (size_t)n_tok * (size_t)s->n_sc * sizeof(float);
    const size_t acc = (size_t)ROW_BLOCK * TOKEN_GROUP * IBLK * sizeof(float);
    const size_t row = (size_t)s->stride * sizeof(int16_t);
    const size_t off = i8 ? xd : 0;
    uint8_t *p = aligned_alloc(64, (w + ws + q + xd + acc + row + off + 63) / 64 * 64);
    if (!p) return 0;   /* every size is a multiple of 32 bytes: the arrays stay aligned */
    s->w = (int16_t *)(void *)p;
    s->ws = (float *)(void *)(p + w);
    s->q = (int16_t *)(void *)(p + w + ws);
    s->xd = (float *)(void *)(p + w + ws + q);
    s->acc = (float *)(void *)(p + w + ws + q + xd);
    s->row = (int16_t *)(void *)(p + w + ws + q + xd + acc);
    s->off = i8 ? (int32_t *)(void *)(p + w + ws + q + xd + acc + row) : NULL;
    return 1;
}

/*
 * One chunk of an R-row × T-token tile: w (row r at w + r·stride), q (token t at q + t·stride)
 * interleaved chunks; ws / xd the chunk's 8 scales (row r at ws + r·n_sc, token t at
 * xd + t·n_sc); acc (row r, token t at acc + (r·n_tok + t)·8) updated by scale_sums.
 */
#define DEFINE_TILE(R, T)                                                                       \
    static void tile_##R##x##T(const int16_t *w, const int16_t *q, const float *ws,             \
                               const float *xd, float *acc, int64_t stride, int64_t n_sc,       \
                               int64_t n_tok) {                                                 \
        __m256i s[R][T];                                                                         \
        for (int r = 0; r < R; r++)                                                              \
            for (int t = 0; t < T; t++) s[r][t] = _mm256_setzero_si256();                        \
        _Pragma("GCC unroll 4") for (int k = 0; k < 16; k++) {                                   \
            __m256i wv[R], qv[T];                                                                \
            for (int r = 0; r < R; r++)                                                          \
                wv[r] = _mm256_load_si256((const __m256i *)(w + r * stride + 16 * k));           \
            for (int t = 0; t < T; t++)                                                          \
                qv[t] = _mm256_load_si256((const __m256i *)(q + t * stride + 16 * k));           \
            for (int r = 0; r < R; r++)                                                          \
                for (int t = 0; t < T; t++)                                                      \
                    s[r][t] = _mm256_add_epi32(s[r][t], _mm256_madd_epi16(wv[r], qv[t]));        \
        }                                                                                        \
        for (int r = 0; r < R; r++)                                                              \
            for (int t = 0; t < T; t++) {                                                        \
                float *a = acc + (r * n_tok + t) * IBLK;                                         \
                _mm256_store_ps(a, scale_sums(_mm256_load_ps(a), s[r][t],                       \
                                              _mm256_load_ps(ws + r * n_sc),                     \
                                              _mm256_load_ps(xd + t * n_sc)));                   \
            }                                                                                    \
    }

DEFINE_TILE(1, 1)
DEFINE_TILE(1, 2)
DEFINE_TILE(1, 3)
DEFINE_TILE(2, 1)
DEFINE_TILE(2, 2)
DEFINE_TILE(2, 3)
DEFINE_TILE(3, 1)
DEFINE_TILE(3, 2)
DEFINE_TILE(3, 3)

typedef void (*tile_fn)(const int16_t *, const int16_t *, const float *, const float *, float *,
                        int64_t, int64_t, int64_t);
static const tile_fn TILES[TILE][TILE] = {
    {tile_1x1, tile_1x2, tile_1x3}, {tile_2x1, tile_2x2, tile_2x3}, {tile_3x1, tile_3x2, tile_3x3}};

/*
 * The same tile for mxfp4 weights over int8 activations: w holds the doubled FP4 codes plus
 * FP4_OFFSET (unsigned, <= 24) and q the int8 activations (|q| <= 127), both interleaved by
 * interleave_chunk_i8, and off (token t at off + t·n_sc) FP4_OFFSET · Σq of each block.
 * VPMADDUBSW leaves in each int16 lane a pair of products (|.| <= 2·24·127 = 6096), so the
 * pairs of four vectors add within int16 (<= 24384) before one VPMADDWD widens them: per
 * chunk 8 VPMADDUBSW and 2 VPMADDWD per (row, token) instead of 16 VPMADDWD. The block sums
 * minus off are the exact S the int16 tile and the one-token kernels compute, and the same
 * scale_sums follows, so the results are the same bit for bit. (On Zen 3, one thread, a
 * 5760 × 2880 expert over 64 tokens: 113–126 GFLOP/s against the int16 tile's 78–81.)
 */

/* The widened sums of vectors k0 .. k0+3 of the tile's rows and tokens. */
INLINE void tile8_half(const int R, const int T, const int8_t *w, const int8_t *q, int64_t stride,
                       int k0, __m256i out[TILE][TILE]) {
    __m256i p[TILE][TILE];
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) p[r][t] = _mm256_setzero_si256();
    for (int k = k0; k < k0 + 4; k++) {
        __m256i wv[TILE], qv[TILE];
        for (int r = 0; r < R; r++) wv[r] = _mm256_load_si256((const __m256i *)(w + r * stride + 32 * k));
        for (int t = 0; t < T; t++) qv[t] = _mm256_load_si256((const __m256i *)(q + t * stride + 32 * k));
        for (int r = 0; r < R; r++)
            for (int t = 0; t < T; t++) {
                p[r][t] = _mm256_add_epi16(p[r][t], _mm256_maddubs_epi16(wv[r], qv[t]));
                /* keep the sum a running one: GCC otherwise reassociates the four adds into a
                 * tree that holds every product at once and spills them to the stack */
                __asm__("" : "+x"(p[r][t]));
            }
    }
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) out[r][t] = _mm256_madd_epi16(p[r][t], _mm256_set1_epi16(1));
}

INLINE void tile8(const int R, const int T, const int8_t *w, const int8_t *q, const float *ws,
                  const float *xd, const int32_t *off, float *acc, int64_t stride, int64_t n_sc,
                  int64_t n_tok) {
    /* the first half's sums wait in memory: the partial sums, the loaded vectors and both
     * halves' sums do not fit in the 16 registers together */
    __attribute__((aligned(32))) int32_t first[TILE * TILE * IBLK];
    __m256i h[TILE][TILE];
    tile8_half(R, T, w, q, stride, 0, h);
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) _mm256_store_si256((__m256i *)(void *)(first + (r * TILE + t) * IBLK), h[r][t]);
    tile8_half(R, T, w, q, stride, 4, h);
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) {
            float *a = acc + (r * n_tok + t) * IBLK;
            const __m256i s0 = _mm256_load_si256((const __m256i *)(void *)(first + (r * TILE + t) * IBLK));
            const __m256i sums = _mm256_sub_epi32(_mm256_add_epi32(s0, h[r][t]),
                                                  _mm256_load_si256((const __m256i *)(off + t * n_sc)));
            _mm256_store_ps(a, scale_sums(_mm256_load_ps(a), sums, _mm256_load_ps(ws + r * n_sc),
                                          _mm256_load_ps(xd + t * n_sc)));
        }
}

/* One chunk (8 blocks) of nr rows × n_tok tokens, in TILE × TILE tiles (arguments as
 * tile8's, acc for row i, token t at acc + (i·n_tok + t)·8). */
static void chunk8(const int8_t *w, const int8_t *q, const float *ws, const float *xd,
                   const int32_t *off, float *acc, int64_t stride, int64_t n_sc, int64_t nr,
                   int64_t n_tok) {
    for (int64_t t = 0; t < n_tok; t += TILE) {
        const int64_t nt = n_tok - t < TILE ? n_tok - t : TILE;
        for (int64_t i = 0; i < nr; i += TILE) {
            const int64_t ni = nr - i < TILE ? nr - i : TILE;
            const int8_t *wi = w + i * stride, *qt = q + t * stride;
            const float *wsi = ws + i * n_sc, *xdt = xd + t * n_sc;
            const int32_t *offt = off + t * n_sc;
            float *a = acc + (i * n_tok + t) * IBLK;
#define TILE_I8_CASE(R, T)                                                                        \
    case (R) * 4 + (T):                                                                         \
        tile8(R, T, wi, qt, wsi, xdt, offt, a, stride, n_sc, n_tok);                            \
        break;
            switch (ni * 4 + nt) {   /* every size a constant: tile8 unrolled for each */
                TILE_I8_CASE(3, 3) TILE_I8_CASE(3, 2) TILE_I8_CASE(3, 1)
                TILE_I8_CASE(2, 3) TILE_I8_CASE(2, 2) TILE_I8_CASE(2, 1)
                TILE_I8_CASE(1, 3) TILE_I8_CASE(1, 2) TILE_I8_CASE(1, 1)
                default: break;
            }
#undef TILE_I8_CASE
        }
    }
}

/* Row r of W (q8_0 or mxfp4) · xf by the exact f32 route: mxfp4 rows with a scale byte outside
 * 2..252, and tokens qact marked exact. */
float row_exact_avx2(const tensor *w, int64_t r, const float *xf) {
    const int64_t n_blocks = w->cols / 32;
    if (w->type == EDGEMOE_TYPE_MXFP4) {
        const size_t row_bytes = (size_t)n_blocks * GROUP_BYTES;
        const uint8_t *scales = w->data + (size_t)w->rows * row_bytes + (size_t)r * (size_t)n_blocks;
        return row_mxfp4_exact(w->data + (size_t)r * row_bytes, scales, n_blocks, xf);
    }
    return row_q8_0_exact(w->data + (size_t)r * (size_t)n_blocks * sizeof(block_q8_0), n_blocks, xf);
}

/* Every token's activations interleaved (exact tokens: zeros; their results come from
 * row_exact_avx2), scales padded with zeros to whole chunks. */
static void blocked_tokens(blocked *s, const qact *x, int64_t cols) {
    const int64_t n_blocks = cols / 32;
    for (int64_t t = 0; t < x->n_tok; t++) {
        int16_t *q = s->q + t * s->stride;
        float *xd = s->xd + t * s->n_sc;
        int32_t *off = s->off ? s->off + t * s->n_sc : NULL;
        if (x->exact[t]) {
            memset(q, 0, (size_t)s->stride * sizeof *q);
            memset(xd, 0, (size_t)s->n_sc * sizeof *xd);
            if (off) memset(off, 0, (size_t)s->n_sc * sizeof *off);
            continue;
        }
        const int16_t *src = x->q + t * cols;
        if (off) {   /* int8 copy in the same order, and FP4_OFFSET · Σq per block */
            qact_narrow_i8(src, cols, (int8_t *)s->row);
            interleave_row_i8((const int8_t *)s->row, n_blocks, (int8_t *)q);
            fp4_offsets(src, n_blocks, off);   /* n_sc = n_blocks rounded up to 8 */
        } else {
            interleave_row(src, n_blocks, q);
        }
        memcpy(xd, x->d + t * n_blocks, (size_t)n_blocks * sizeof *xd);
        for (int64_t b = n_blocks; b < s->n_sc; b++) xd[b] = 0.0f;
    }
}

/* Decode rows [rb, rb + nr) of W into the scratch, interleaved (rows for the exact route:
 * zeros). */
static void blocked_rows(blocked *s, const tensor *w, int64_t rb, int64_t nr) {
    const int64_t n_blocks = w->cols / 32;
    for (int64_t i = 0; i < nr; i++) {
        int16_t *wi = s->w + i * s->stride;
        float *ws = s->ws + i * s->n_sc;
        if (w->type == EDGEMOE_TYPE_MXFP4) {
            const size_t row_bytes = (size_t)n_blocks * GROUP_BYTES;
            const uint8_t *sc = w->data + (size_t)w->rows * row_bytes + (size_t)(rb + i) * (size_t)n_blocks;
            s->fast[i] = (uint8_t)scales_fast_avx2(sc, (size_t)n_blocks);
            if (s->fast[i] && s->off) {
                decode_row_mxfp4_i8(w->data + (size_t)(rb + i) * row_bytes, sc, n_blocks,
                                    (int8_t *)s->row, ws);
                interleave_row_i8((const int8_t *)s->row, n_blocks, (int8_t *)wi);
                continue;
            }
            if (s->fast[i]) decode_row_mxfp4(w->data + (size_t)(rb + i) * row_bytes, sc, n_blocks, s->row, ws);
        } else {
            s->fast[i] = 1;
            decode_row_q8_0(w->data + (size_t)(rb + i) * (size_t)n_blocks * sizeof(block_q8_0), n_blocks,
                            s->row, ws);
        }
        if (s->fast[i]) {
            interleave_row(s->row, n_blocks, wi);
        } else {
            memset(wi, 0, (size_t)s->stride * sizeof *wi);
            for (int64_t b = 0; b < s->n_sc; b++) ws[b] = 0.0f;
        }
    }
}

/* Y for rows [r0, r1) and every token: one row block at a time, and within it TOKEN_GROUP
 * tokens at a time, so that a chunk's weights, activations and accumulators stay in L1. */
static void matmul_blocked(const tensor *w, int64_t r0, int64_t r1, const qact *x, float *y,
                           int64_t ldy, blocked *s) {
    blocked_tokens(s, x, w->cols);
    for (int64_t rb = r0; rb < r1; rb += ROW_BLOCK) {
        const int64_t nr = r1 - rb < ROW_BLOCK ? r1 - rb : ROW_BLOCK;
        blocked_rows(s, w, rb, nr);
        for (int64_t tg = 0; tg < x->n_tok; tg += TOKEN_GROUP) {
            const int64_t n_tok = x->n_tok - tg < TOKEN_GROUP ? x->n_tok - tg : TOKEN_GROUP;
            const int16_t *q = s->q + tg * s->stride;
            const float *xd = s->xd + tg * s->n_sc;
            for (int64_t k = 0; k < nr * n_tok; k++) _mm256_store_ps(s->acc + k * IBLK, _mm256_setzero_ps());
            for (int64_t c = 0; c < s->n_sc; c += IBLK) {
                if (s->off) {   /* int8 rows are 2·stride bytes apart (the int16 arrays' stride) */
                    chunk8((const int8_t *)s->w + c * 32, (const int8_t *)q + c * 32, s->ws + c,
                           xd + c, s->off + tg * s->n_sc + c, s->acc, 2 * s->stride, s->n_sc, nr, n_tok);
                    continue;
                }
                for (int64_t t = 0; t < n_tok; t += TILE) {
                    const int64_t nt = n_tok - t < TILE ? n_tok - t : TILE;
                    for (int64_t i = 0; i < nr; i += TILE) {
                        const int64_t ni = nr - i < TILE ? nr - i : TILE;
                        TILES[ni - 1][nt - 1](s->w + i * s->stride + c * 32, q + t * s->stride + c * 32,
                                              s->ws + i * s->n_sc + c, xd + t * s->n_sc + c,
                                              s->acc + (i * n_tok + t) * IBLK, s->stride, s->n_sc, n_tok);
                    }
                }
            }
            for (int64_t t = 0; t < n_tok; t++) {
                for (int64_t i = 0; i < nr; i++) {
                    float *out = y + (tg + t) * ldy + rb + i;
                    if (s->fast[i] && !x->exact[tg + t])
                        *out = hsum_ps(_mm256_load_ps(s->acc + (i * n_tok + t) * IBLK));
                    else
                        *out = row_exact_avx2(w, rb + i, x->x + (tg + t) * w->cols);
                }
            }
        }
    }
}

/* One token over int8 activations (qact bits 8), or (split) an mxfp4 product over int16 ones
 * cut into their low and high bytes: rows as matmul_int_avx2's, byte kernels. */
static void matvec_bytes_avx2(const tensor *w, int64_t r0, int64_t r1, const qact *x, float *y,
                              size_t row_bytes, int split) {
    const int mxfp4 = w->type == EDGEMOE_TYPE_MXFP4;
    const int64_t n_blocks = w->cols / 32;
    int8_t q8[QACT_I8_MAX_COLS + 2 * QK_MXFP4];   /* mxfp4 pads to whole pairs */
    int8_t h8[QACT_I8_MAX_COLS + 2 * QK_MXFP4];   /* the high bytes, when split */
    int32_t offset[QACT_I8_MAX_COLS / QK_MXFP4 + IBLK];
    if (mxfp4) {
        pack_i8_mxfp4(x->q, n_blocks, 0, q8);
        if (split) {
            pack_i8_mxfp4(x->q, n_blocks, 1, h8);
            split_offsets(x->q, n_blocks, offset);
        } else {
            fp4_offsets(x->q, n_blocks, offset);
        }
    } else {
        qact_narrow_i8(x->q, w->cols, q8);   /* q8_0: QACT_ORDER_NATURAL, kept */
    }
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *row = w->data + (size_t)r * row_bytes;
        if (!mxfp4) {
            y[r] = row_q8_0_i8(row, n_blocks, q8, x->q, x->d);
            continue;
        }
        const uint8_t *sc = w->data + (size_t)w->rows * row_bytes + (size_t)r * (size_t)n_blocks;
        if (!scales_fast_avx2(sc, (size_t)n_blocks))
            y[r] = row_exact_avx2(w, r, x->x);
        else if (split)
            y[r] = row_mxfp4_split(row, sc, n_blocks, q8, h8, offset, x->d);
        else
            y[r] = row_mxfp4_i8(row, sc, n_blocks, q8, offset, x->d);
    }
}

/* The matmul entry of both q8_0 and mxfp4 (kernels.h): the blocked route for several tokens,
 * weights decoded in registers for one (or when the blocked route has no memory). */
static void matmul_int_avx2(const tensor *w, int64_t r0, int64_t r1, const qact *x, float *y,
                            int64_t ldy) {
    blocked s;
    if (x->n_tok > 1 && blocked_new(&s, w->cols, x->n_tok,
                                    x->bits == 8 && w->type == EDGEMOE_TYPE_MXFP4)) {
        matmul_blocked(w, r0, r1, x, y, ldy, &s);
        free(s.w);
        return;
    }
    const int mxfp4 = w->type == EDGEMOE_TYPE_MXFP4;
    const int64_t n_blocks = w->cols / 32, cols = w->cols;
    const size_t row_bytes = (size_t)n_blocks * (mxfp4 ? GROUP_BYTES : sizeof(block_q8_0));
    if (qact_one_token_i8(x) || (mxfp4 && qact_one_token_split(x))) {
        matvec_bytes_avx2(w, r0, r1, x, y, row_bytes, x->bits != 8);
        return;
    }
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *row = w->data + (size_t)r * row_bytes;
        const uint8_t *sc = mxfp4 ? w->data + (size_t)w->rows * row_bytes + (size_t)r * (size_t)n_blocks
                                  : NULL;   /* mxfp4's scale bytes follow all rows' groups */
        const int fast_row = !mxfp4 || scales_fast_avx2(sc, (size_t)n_blocks);
        for (int64_t t = 0; t < x->n_tok; t++) {
            const int16_t *q = x->q + t * cols;
            const float *xd = x->d + t * n_blocks;
            float *out = y + t * ldy + r;
            if (!fast_row || x->exact[t])
                *out = row_exact_avx2(w, r, x->x + t * cols);
            else
                *out = mxfp4 ? row_mxfp4_i16(row, sc, n_blocks, q, xd) : row_q8_0_i16(row, n_blocks, q, q, xd);
        }
    }
}

/* ---------------------------------------------------------------------------------------
 * Vector kernels
 */

/* Σ a·b in f32, four sums of 8. */
static double dot_f32_avx2(const float *a, const float *b, int64_t n) {
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                     _mm256_setzero_ps()};
    int64_t i = 0;
    for (; i + 32 <= n; i += 32)
        for (int k = 0; k < 4; k++)
            acc[k] = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8 * k), _mm256_loadu_ps(b + i + 8 * k),
                                     acc[k]);
    for (; i + 8 <= n; i += 8)
        acc[0] = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc[0]);
    float sum = hsum_ps(
        _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
    for (; i < n; i++) sum += a[i] * b[i];
    return sum;
}

/* out[d] = Σ_j p[j]·rows[j·stride + d], f32 sums kept in registers, 32 (then 8) columns at
 * a time. */
static void weighted_sum_one_avx2(float *out, const float *p, const float *rows, size_t stride,
                                  int64_t n, int64_t dim) {
    int64_t d = 0;
    for (; d + 32 <= dim; d += 32) {
        __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                         _mm256_setzero_ps()};
        for (int64_t j = 0; j < n; j++) {
            const float *v = rows + (size_t)j * stride + d;
            const __m256 pj = _mm256_set1_ps(p[j]);
            for (int k = 0; k < 4; k++)
                acc[k] = _mm256_fmadd_ps(pj, _mm256_loadu_ps(v + 8 * k), acc[k]);
        }
        for (int k = 0; k < 4; k++) _mm256_storeu_ps(out + d + 8 * k, acc[k]);
    }
    for (; d + 8 <= dim; d += 8) {
        __m256 acc = _mm256_setzero_ps();
        for (int64_t j = 0; j < n; j++)
            acc = _mm256_fmadd_ps(_mm256_set1_ps(p[j]),
                                  _mm256_loadu_ps(rows + (size_t)j * stride + d), acc);
        _mm256_storeu_ps(out + d, acc);
    }
    for (; d < dim; d++) {
        float sum = 0.0f;
        for (int64_t j = 0; j < n; j++) sum += p[j] * rows[(size_t)j * stride + (size_t)d];
        out[d] = sum;
    }
}

/* ---------------------------------------------------------------------------------------
 * Activations into int16 (or int8) blocks: qact_quantize (qact.c) 8 lanes at a time. Every
 * element goes through the same IEEE operations — |x|, the block's largest, x · (qmax / amax)
 * rounded half to even, clamped to ±qmax — so q, d and exact come out bit for bit as the
 * reference's (kernel tests compare them).
 */

INLINE float hmax_ps(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

/* 16 int16 in order (two 128-bit lanes of 8) as QACT_ORDER_EVEN_ODD_HALVES wants a half of a
 * block: its 8 even elements, then its 8 odd ones. */
INLINE __m256i even_odd16(__m256i v) {
    const __m256i pick = _mm256_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15,
                                          0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15);
    return _mm256_permute4x64_epi64(_mm256_shuffle_epi8(v, pick), 0xD8);
}

/* One block of 32 (quantize_block of qact.c): q in `order` and *d; 0 if the block must take
 * the exact route. */
INLINE int quantize_block_avx2(const float *x, int16_t *q, float *d, int order, float qmax) {
    const __m256 sign = _mm256_set1_ps(-0.0f), limit = _mm256_set1_ps(QACT_MAX_NORM);
    __m256 v[4], amax = _mm256_setzero_ps();
    int bad = 0;
    for (int k = 0; k < 4; k++) {
        v[k] = _mm256_loadu_ps(x + 8 * k);
        const __m256 a = _mm256_andnot_ps(sign, v[k]);
        bad |= _mm256_movemask_ps(_mm256_cmp_ps(a, limit, _CMP_NLE_UQ));   /* NaN too */
        amax = _mm256_max_ps(amax, a);
    }
    if (bad) return 0;
    const float m = hmax_ps(amax);
    if (m == 0.0f) {
        memset(q, 0, QACT_BLOCK * sizeof *q);
        *d = 0.0f;
        return 1;
    }
    if (m < QACT_MIN_NORM) return 0;
    const __m256 inv = _mm256_set1_ps(qmax / m), hi = _mm256_set1_ps(qmax), lo = _mm256_set1_ps(-qmax);
    __m256i r[4];
    for (int k = 0; k < 4; k++) {
        const __m256 y = _mm256_round_ps(_mm256_mul_ps(v[k], inv), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        r[k] = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(y, lo), hi));
    }
    /* packs interleaves the 128-bit lanes of its operands; the permute restores the order */
    __m256i h0 = _mm256_permute4x64_epi64(_mm256_packs_epi32(r[0], r[1]), 0xD8);
    __m256i h1 = _mm256_permute4x64_epi64(_mm256_packs_epi32(r[2], r[3]), 0xD8);
    if (order == QACT_ORDER_NATURAL || order == QACT_ORDER_EVEN_ODD_HALVES) {
        if (order == QACT_ORDER_EVEN_ODD_HALVES) {
            h0 = even_odd16(h0);
            h1 = even_odd16(h1);
        }
        _mm256_storeu_si256((__m256i_u *)q, h0);
        _mm256_storeu_si256((__m256i_u *)(q + 16), h1);
    } else {
        int16_t tmp[QACT_BLOCK];
        _mm256_storeu_si256((__m256i_u *)tmp, h0);
        _mm256_storeu_si256((__m256i_u *)(tmp + 16), h1);
        for (int i = 0; i < QACT_BLOCK; i++) q[qact_block_slot(i, order)] = tmp[i];
    }
    *d = m / qmax;
    return 1;
}

void qact_quantize_avx2(qact *a, int order) {
    const int64_t n_blocks = a->cols / QACT_BLOCK;
    const float qmax = a->bits == 8 ? QACT8_MAX : QACT_MAX;
    a->order = order;
    for (int64_t t = 0; t < a->n_tok; t++) {
        int ok = 1;
        for (int64_t b = 0; b < n_blocks && ok; b++) {
            const int64_t e = t * a->cols + b * QACT_BLOCK;
            ok = quantize_block_avx2(a->x + e, a->q + e, a->d + t * n_blocks + b, order, qmax);
        }
        a->exact[t] = (uint8_t)!ok;
    }
}

/* As the reference, with the sum of squares in double (x² is exact in double), 8 at a time. */
void rmsnorm_avx2(float *out, const float *x, const float *w, int64_t n, float eps) {
    __m256d acc0 = _mm256_setzero_pd(), acc1 = _mm256_setzero_pd();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        const __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(v));
        const __m256d hi = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
        acc0 = _mm256_fmadd_pd(lo, lo, acc0);
        acc1 = _mm256_fmadd_pd(hi, hi, acc1);
    }
    double sum = hsum_pd(_mm256_add_pd(acc0, acc1));
    for (int64_t t = i; t < n; t++) sum += (double)x[t] * (double)x[t];
    const float scale = (float)(1.0 / sqrt(sum / (double)n + (double)eps));
    const __m256 vscale = _mm256_set1_ps(scale);
    for (i = 0; i + 8 <= n; i += 8)
        _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_loadu_ps(w + i),
                                                _mm256_mul_ps(_mm256_loadu_ps(x + i), vscale)));
    for (; i < n; i++) out[i] = w[i] * (x[i] * scale);
}

/* weighted_sum_fn of kernels.h: weighted_sum_one_avx2 per head. */
static void weighted_sum_avx2(float *out, const float *p, size_t p_stride, int nq, const float *rows,
                              size_t stride, int64_t n, int64_t dim, double *acc_unused) {
    (void)acc_unused;
    for (int i = 0; i < nq; i++)
        weighted_sum_one_avx2(out + (size_t)i * (size_t)dim, p + (size_t)i * p_stride, rows, stride, n, dim);
}

/* scores_fn of kernels.h: dot_f32_avx2 per query and key, inlined. */
static void scores_f32_avx2(float *out, size_t out_stride, const float *q, int nq, const float *keys,
                            size_t stride, int64_t n, int64_t dim, double scale) {
    for (int i = 0; i < nq; i++)
        for (int64_t j = 0; j < n; j++)
            out[(size_t)i * out_stride + (size_t)j] =
                (float)(dot_f32_avx2(q + (size_t)i * (size_t)dim, keys + (size_t)j * stride, dim) * scale);
}

const kernel_table KERNELS_AVX2 = {
    .name = "avx2",
    .matvec = {
        [EDGEMOE_TYPE_F32] = matvec_f32_f32_avx2,
        [EDGEMOE_TYPE_F16] = matvec_f32_f16_avx2,
        [EDGEMOE_TYPE_BF16] = matvec_f32_bf16_avx2,
        [EDGEMOE_TYPE_U8] = NULL,
        [EDGEMOE_TYPE_Q8_0] = matvec_f32_q8_0_avx2,
        [EDGEMOE_TYPE_MXFP4] = matvec_f32_mxfp4_avx2,
    },
    .matmul = {
        [EDGEMOE_TYPE_Q8_0] = matmul_int_avx2,
        [EDGEMOE_TYPE_MXFP4] = matmul_int_avx2,
    },
    .qact_order = {
        [EDGEMOE_TYPE_Q8_0] = QACT_ORDER_NATURAL,
        [EDGEMOE_TYPE_MXFP4] = QACT_ORDER_EVEN_ODD_HALVES,
    },
    .quantize = qact_quantize_avx2,
    .dot = dot_f32_avx2,
    .scores = scores_f32_avx2,
    .weighted_sum = weighted_sum_avx2,
    .rmsnorm = rmsnorm_avx2,
    .softmax = softmax,
    .swiglu = swiglu_clamped,
};

#if defined(__clang__)
#pragma clang attribute pop
#endif

#else
/* Not x86-64: no AVX2 kernels (ISO C wants at least one declaration per file). */
typedef int kernels_avx2_not_built;
#endif

/*
 * kernels_avx512.c — the "avx512" kernel set: the integer products over q8_0 and mxfp4 weights
 * with 512-bit vectors and VNNI (AVX-512 F, BW, VL and VNNI: Intel Cascade Lake, Ice Lake and
 * later, AMD Zen 4 and later), and attention's dot products, value sums, softmax and SwiGLU
 * (the last two with a 16-lane exp). Every other entry is the avx2 set's: those CPUs have AVX2.
 *
 * They compute what kernels_avx2.c's integer kernels compute: activations rounded to int16 (or
 * int8) blocks by qact_quantize, exact int32 block sums S = Σ w·q, then per block
 * acc += (f32(S) · xd) · ws in f32. The instructions differ. VPDPWSSD multiplies int16 pairs and
 * adds them to int32 lanes in one step (int16 activations). VPDPBUSD multiplies four unsigned
 * by four signed bytes and adds them to an int32 lane (int8 activations): the weights are made
 * unsigned by an offset (mxfp4 doubled codes + 12, q8_0 values + 128) whose share of a block
 * sum, offset · Σq, is computed once per token and subtracted, so S is the same exact integer.
 * One token's int16 activations meet mxfp4 weights by bytes: q = 256·h + l, two VPDPBUSD per
 * pair of byte vectors instead of widening the codes to int16 (quad_dot_bytes).
 * Blocks go 16 at a time (one vector of 16 block sums), so the float steps are not avx2's:
 * results agree with the reference within the tolerances tests state, not bit for bit with the
 * avx2 set. Within this set a batch gives bit for bit the one-token results: the same sums,
 * the same 16-lane float steps in the same order, the same final sum (hsum16).
 *
 * Tested natively on a Zen 4 (tests/test_kernels.py, kernel_check) and without AVX-512
 * hardware: built with -DEDGEMOE_EMULATE_AVX512 (tests/test_kernels_cross.py does so for
 * csrc/tests/kernel_check.c), the intrinsics come from SIMDe, which implements each in portable
 * C, and kernels.c counts the set as runnable on any AVX2 CPU. The library (build.py) never
 * defines it: there the file is compiled for the real instructions by a target pragma, and
 * kernels.c hands the set out only after checking the CPU. Tuned on that Zen 4 (docs/
 * PERFORMANCE.md): tile and block sizes are chosen for 32 vector registers and a 32 KB L1.
 *
 * Unaligned data: weights and activations from the caller are read with unaligned loads; the
 * scratch this file allocates is 64-byte aligned. Tails (blocks past the last whole chunk of
 * 16) are read with AVX-512BW masked loads, so no load reaches past a row or a tensor (SIMDe's
 * masked loads and stores touch every lane: the emulated build copies through small buffers).
 */
#if defined(__x86_64__) || defined(_M_X64)

#if defined(EDGEMOE_EMULATE_AVX512)
#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>
#else
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")
#endif
#include <immintrin.h>
#endif

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels_isa.h"
#include "simd512.h"   /* the helpers, block scales and float steps shared with the amx set */

#define FP4_OFFSET 12             /* doubled FP4 codes (-12..12) + 12: unsigned for VPDPBUSD */
#define Q8_OFFSET 128             /* q8_0 values (-128..127) + 128, likewise */
#define PREFETCH_DISTANCE 4096    /* as kernels_avx2.c: weights stream from DRAM once a token */

/* ---------------------------------------------------------------------------------------
 * Small helpers
 */

INLINE void prefetch_ahead(const uint8_t *p) {
    _mm_prefetch((const char *)((uintptr_t)p + PREFETCH_DISTANCE), _MM_HINT_T0);
}

INLINE int64_t round_up16(int64_t n) {
    return (n + NB - 1) / NB * NB;
}

/* The sum of the 16 lanes, in one fixed order (every route of the set ends with it). */
INLINE float hsum16(__m512 v) {
    const __m256 lo = _mm512_castps512_ps256(v);
    const __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
    const __m256 s8 = _mm256_add_ps(lo, hi);
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/*
 * Lane i: hsum16(v[i]) for i < 16, bit for bit: the same four rounds of additions as hsum16
 * on each vector (lane l + l+8, then l + l+4, l + l+2, l + l+1), done for 16 vectors together
 * by pairing their halves. The sums come out in the lane order src below; a permutation
 * restores 0..15.
 */
INLINE __m512 hsum16_x16(const __m512 v[16]) {
    __m512 u[8], w[4], x[2];
    for (int j = 0; j < 8; j++)   /* quarters [v_j: l + l+8 (2 quarters), v_j+8: the same] */
        u[j] = _mm512_add_ps(_mm512_shuffle_f32x4(v[j], v[j + 8], 0x44), _mm512_shuffle_f32x4(v[j], v[j + 8], 0xEE));
    for (int j = 0; j < 4; j++)   /* quarters: l + l+4 of v_j, v_j+8, v_j+4, v_j+12 */
        w[j] = _mm512_add_ps(_mm512_shuffle_f32x4(u[j], u[j + 4], 0x88), _mm512_shuffle_f32x4(u[j], u[j + 4], 0xDD));
    for (int j = 0; j < 2; j++)   /* per quarter: l + l+2 of a w_j vector (2 lanes), then of w_j+2's */
        x[j] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(w[j]), _mm512_castps_pd(w[j + 2]))),
                             _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(w[j]), _mm512_castps_pd(w[j + 2]))));
    /* l + l+1: lane L holds the sum of v[src[L]] */
    const __m512 r = _mm512_add_ps(_mm512_shuffle_ps(x[0], x[1], 0x88), _mm512_shuffle_ps(x[0], x[1], 0xDD));
    const __m512i src = _mm512_setr_epi32(0, 2, 1, 3, 8, 10, 9, 11, 4, 6, 5, 7, 12, 14, 13, 15);
    return _mm512_permutexvar_ps(src, r);
}

/* The first n (< 16) floats at p, zeros after them; nothing past p + n is read. */
INLINE __m512 load_f32_upto(const float *p, int64_t n) {
#if defined(EDGEMOE_EMULATE_AVX512)   /* SIMDe's masked loads read every lane */
    float b[NB] = {0};
    memcpy(b, p, (size_t)n * sizeof *p);
    return _mm512_loadu_ps(b);
#else
    return _mm512_maskz_loadu_ps((__mmask16)((1u << n) - 1), p);
#endif
}

/*
 * Horizontal sums of int32 vectors (exact in any order). Within each 128-bit lane:
 * pair_sums(a, b) = [a0+a2, b0+b2, a1+a3, b1+b3]; lane_sums4(a, b, c, d) = [Σa, Σb, Σc, Σd] of
 * that lane's four elements. fold_lanes adds 128-bit lanes pairwise:
 * [a.L0+a.L1, a.L2+a.L3, b.L0+b.L1, b.L2+b.L3].
 */
INLINE __m512i pair_sums(__m512i a, __m512i b) {
    return _mm512_add_epi32(_mm512_unpacklo_epi32(a, b), _mm512_unpackhi_epi32(a, b));
}

INLINE __m512i lane_sums4(__m512i a, __m512i b, __m512i c, __m512i d) {
    const __m512i ab = pair_sums(a, b), cd = pair_sums(c, d);
    return _mm512_add_epi32(_mm512_unpacklo_epi64(ab, cd), _mm512_unpackhi_epi64(ab, cd));
}

INLINE __m512i fold_lanes(__m512i a, __m512i b) {
    return _mm512_add_epi32(_mm512_shuffle_i32x4(a, b, 0x88), _mm512_shuffle_i32x4(a, b, 0xDD));
}

/* [Σ lanes of p[0], .., Σ lanes of p[15]]: lane_sums4 puts Σ over 128-bit lane L of p[4m+v]
 * in lane 4L+v of its m-th result; two folds add the four 128-bit lanes. */
INLINE __m512i sums16(const __m512i p[NB]) {
    const __m512i u0 = lane_sums4(p[0], p[1], p[2], p[3]), u1 = lane_sums4(p[4], p[5], p[6], p[7]);
    const __m512i u2 = lane_sums4(p[8], p[9], p[10], p[11]);
    const __m512i u3 = lane_sums4(p[12], p[13], p[14], p[15]);
    return fold_lanes(fold_lanes(u0, u1), fold_lanes(u2, u3));
}

/* ---------------------------------------------------------------------------------------
 * mxfp4 groups, four at a time (simd512.h: the layout, the code tables, quad_nibbles).
 */

/* Their sign bytes (0xFF where the code is negative): code and sign unpack to int16. */
INLINE __m512i fp4_sign_lut(void) {
    return _mm512_broadcast_i32x4(_mm_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 0, -1, -1, -1, -1, -1, -1, -1));
}

/* The codes plus FP4_OFFSET: 0 .. 24, VPDPBUSD's unsigned operand. */
INLINE __m512i fp4_offset_lut(void) {
    return _mm512_broadcast_i32x4(_mm_setr_epi8(12, 13, 14, 15, 16, 18, 20, 24, 12, 11, 10, 9, 8, 6, 4, 0));
}

/* Partial sums of 4 groups times int8 q (128 bytes at q, pack_quads_i8: the even elements of the
 * 4 groups, then the odd), with the offset codes u = w + FP4_OFFSET: Σ u·q per group, lanes
 * 4g .. 4g+3 holding group g's. */
INLINE __m512i quad_dot_i8(__m512i packed, const int8_t *q) {
    __m512i lo, hi;
    quad_nibbles(packed, &lo, &hi);
    const __m512i s = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_shuffle_epi8(fp4_offset_lut(), lo),
                                          _mm512_loadu_si512((const void *)q));
    return _mm512_dpbusd_epi32(s, _mm512_shuffle_epi8(fp4_offset_lut(), hi), _mm512_loadu_si512((const void *)(q + 64)));
}

/* The same over int16 q taken by bytes, q = 256·h + l (h = q >> 8 signed, l = q & 255; 256 bytes
 * at hl, pack_quads_bytes): Σ u·q = 256·Σ u·h + Σ l·u. VPDPBUSD takes u unsigned against the
 * signed h, then l unsigned against u (0 .. 24: a signed byte too). As many multiply-adds as
 * VPDPWSSD would take, without widening the codes to int16 (4 shuffles + 4 unpacks a quad). */
INLINE __m512i quad_dot_bytes(__m512i packed, const uint8_t *hl) {
    __m512i lo, hi;
    quad_nibbles(packed, &lo, &hi);
    const __m512i ue = _mm512_shuffle_epi8(fp4_offset_lut(), lo), uo = _mm512_shuffle_epi8(fp4_offset_lut(), hi);
    __m512i sh = _mm512_dpbusd_epi32(_mm512_setzero_si512(), ue, _mm512_loadu_si512((const void *)hl));
    sh = _mm512_dpbusd_epi32(sh, uo, _mm512_loadu_si512((const void *)(hl + 64)));
    __m512i sl = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_loadu_si512((const void *)(hl + 128)), ue);
    sl = _mm512_dpbusd_epi32(sl, _mm512_loadu_si512((const void *)(hl + 192)), uo);
    return _mm512_add_epi32(_mm512_slli_epi32(sh, 8), sl);
}

/* [S_0 .. S_15] of 16 groups from their four quads' partial sums: lane_sums4 leaves group 4v+L
 * in lane 4L+v. */
INLINE __m512i quad_block_sums(__m512i p0, __m512i p1, __m512i p2, __m512i p3) {
    const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    return _mm512_permutexvar_epi32(order, lane_sums4(p0, p1, p2, p3));
}

/* ---------------------------------------------------------------------------------------
 * One token (decoding): each weight is loaded into registers and used once. The token's
 * activations are first laid out for the kernels (struct token), padded with zeros to whole
 * chunks.
 */

typedef struct token {
    const int16_t *q16;   /* int16, q8_0: the caller's q */
    const int8_t *q8;     /* int8 activations: q8_0 in order, mxfp4 pack_quads_i8's */
    const uint8_t *hl;    /* int16, mxfp4: pack_quads_bytes' */
    const int32_t *off;   /* mxfp4 or int8: offset · Σq of each block (FP4_OFFSET, Q8_OFFSET) */
    const float *xd;      /* block scales, zero past the last block */
} token;

/* The int8 quad layout of q (n_groups groups, natural order; n_pad groups, a multiple of 16,
 * zeros past the end): per 4 groups, 64 bytes of their even elements (group g at 16g), then 64
 * of their odd elements. */
static void pack_quads_i8(const int16_t *q, int64_t n_groups, int64_t n_pad, int8_t *out) {
    for (int64_t g = 0; g < n_pad; g++) {
        int8_t *o = out + g / 4 * 4 * QK + g % 4 * 16;
        const int16_t *src = q + g * QK;
        const int live = g < n_groups;
        for (int i = 0; i < 16; i++) {
            o[i] = live ? (int8_t)src[2 * i] : 0;
            o[2 * QK + i] = live ? (int8_t)src[2 * i + 1] : 0;
        }
    }
}

/* The by-bytes layout of int16 q = 256·h + l (quad_dot_bytes): per 4 groups, the int8 quad
 * layout of the high bytes h, then that of the low bytes l (256 bytes). */
static void pack_quads_bytes(const int16_t *q, int64_t n_groups, int64_t n_pad, uint8_t *out) {
    for (int64_t g = 0; g < n_pad; g++) {
        uint8_t *o = out + g / 4 * 8 * QK + g % 4 * 16;
        const int16_t *src = q + g * QK;
        const int live = g < n_groups;
        for (int i = 0; i < 16; i++) {
            const uint16_t even = live ? (uint16_t)src[2 * i] : 0, odd = live ? (uint16_t)src[2 * i + 1] : 0;
            o[i] = (uint8_t)(even >> 8);
            o[2 * QK + i] = (uint8_t)(odd >> 8);
            o[4 * QK + i] = (uint8_t)even;
            o[6 * QK + i] = (uint8_t)odd;
        }
    }
}

/* q (n_blocks blocks) as int8 in order, zeros to n_pad blocks. */
static void narrow_padded(const int16_t *q, int64_t n_blocks, int64_t n_pad, int8_t *out) {
    qact_narrow_i8(q, n_blocks * QK, out);
    memset(out + n_blocks * QK, 0, (size_t)((n_pad - n_blocks) * QK));
}

/* acc plus 16 mxfp4 groups (packed bytes w, scale bytes e) over int16 (by bytes) or int8
 * activations: Σ u·q less the offsets' share, the exact S = Σ w·q either way. */
INLINE __m512 mxfp4_chunk_bytes(__m512 acc, const __m512i w[4], __m128i e, const uint8_t *hl,
                                const int32_t *off, const float *xd) {
    const __m512i sums = _mm512_sub_epi32(
        quad_block_sums(quad_dot_bytes(w[0], hl), quad_dot_bytes(w[1], hl + 8 * QK),
                        quad_dot_bytes(w[2], hl + 16 * QK), quad_dot_bytes(w[3], hl + 24 * QK)),
        _mm512_loadu_si512((const void *)off));
    return scale_sums(acc, sums, e8m0_half_scales16(e), _mm512_loadu_ps(xd));
}

INLINE __m512 mxfp4_chunk_i8(__m512 acc, const __m512i w[4], __m128i e, const int8_t *q,
                             const int32_t *off, const float *xd) {
    const __m512i sums = _mm512_sub_epi32(
        quad_block_sums(quad_dot_i8(w[0], q), quad_dot_i8(w[1], q + 4 * QK), quad_dot_i8(w[2], q + 8 * QK),
                        quad_dot_i8(w[3], q + 12 * QK)),
        _mm512_loadu_si512((const void *)off));
    return scale_sums(acc, sums, e8m0_half_scales16(e), _mm512_loadu_ps(xd));
}

/* One mxfp4 row (fast scale bytes) · one token. The last chunk's groups are copied to a
 * buffer padded with zero bytes (their q are zero: they add nothing) and scale bytes 127. */
INLINE float row_mxfp4(const uint8_t *groups, const uint8_t *scales, int64_t n_groups,
                       const token *tk, const int i8) {
    __m512 acc = _mm512_setzero_ps();
    int64_t g = 0;
    for (; g + NB <= n_groups; g += NB) {
        const uint8_t *w = groups + g * GROUP_BYTES;
        for (int k = 0; k < 4; k++) prefetch_ahead(w + 64 * k);
        __m512i wq[4];
        for (int k = 0; k < 4; k++) wq[k] = _mm512_loadu_si512((const void *)(w + 64 * k));
        const __m128i e = _mm_loadu_si128((const void *)(scales + g));
        acc = i8 ? mxfp4_chunk_i8(acc, wq, e, tk->q8 + g * QK, tk->off + g, tk->xd + g)
                 : mxfp4_chunk_bytes(acc, wq, e, tk->hl + g * 2 * QK, tk->off + g, tk->xd + g);
    }
    if (g < n_groups) {
        const int64_t m = n_groups - g;   /* the last, partial chunk: zero bytes, scale bytes 127 */
        __m512i wq[4];
        for (int k = 0; k < 4; k++) wq[k] = load_bytes_upto(groups + g * GROUP_BYTES + 64 * k, m * GROUP_BYTES - 64 * k);
        const __m128i e = load_scale_bytes_upto(scales + g, m);
        acc = i8 ? mxfp4_chunk_i8(acc, wq, e, tk->q8 + g * QK, tk->off + g, tk->xd + g)
                 : mxfp4_chunk_bytes(acc, wq, e, tk->hl + g * 2 * QK, tk->off + g, tk->xd + g);
    }
    return hsum16(acc);
}

/* Σ w·q of one q8_0 block over 32 int16 q, as 16 partial sums. */
INLINE __m512i q8_0_block_dot_i16(const uint8_t *block, const int16_t *q) {
    const __m512i w = _mm512_cvtepi8_epi16(_mm256_loadu_si256((const void *)(block + 2)));
    return _mm512_dpwssd_epi32(_mm512_setzero_si512(), w, _mm512_loadu_si512((const void *)q));
}

/* Σ (w + Q8_OFFSET)·q of two consecutive q8_0 blocks a, b (b NULL: past the row's end, its
 * q are zero) over 64 int8 q: lanes 0..7 block a's partial sums, 8..15 block b's. */
INLINE __m512i q8_0_pair_dot_i8(const uint8_t *a, const uint8_t *b, const int8_t *q) {
    const __m256i wa = _mm256_loadu_si256((const void *)(a + 2));
    const __m256i wb = b ? _mm256_loadu_si256((const void *)(b + 2)) : _mm256_setzero_si256();
    const __m512i w = _mm512_xor_si512(_mm512_inserti64x4(_mm512_castsi256_si512(wa), wb, 1),
                                       _mm512_set1_epi8((char)0x80));   /* w + 128, unsigned */
    return _mm512_dpbusd_epi32(_mm512_setzero_si512(), w, _mm512_loadu_si512((const void *)q));
}

/* acc plus q8_0 blocks 0 .. n−1 (n <= 16) at blocks over int16 q: zero sums and scales pad. */
INLINE __m512 q8_0_chunk_i16(__m512 acc, const uint8_t *blocks, int64_t n, const int16_t *q,
                             const float *xd) {
    __m512i p[NB];
    for (int64_t j = 0; j < NB; j++)
        p[j] = j < n ? q8_0_block_dot_i16(blocks + (size_t)j * Q8_BYTES, q + j * QK) : _mm512_setzero_si512();
    return scale_sums(acc, sums16(p), q8_0_scales16(blocks, n), _mm512_loadu_ps(xd));
}

/* The same over int8 q (padded with zeros) and their offsets. Pair k's sums sit in 128-bit
 * lanes 0, 1 (block 2k) and 2, 3 (block 2k+1); lane_sums4 and one fold leave block b in lane
 * order[b]. */
INLINE __m512 q8_0_chunk_i8(__m512 acc, const uint8_t *blocks, int64_t n, const int8_t *q,
                            const int32_t *off, const float *xd) {
    const __m512i order = _mm512_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7, 8, 12, 9, 13, 10, 14, 11, 15);
    __m512i p[NB / 2];
    for (int64_t k = 0; k < NB / 2; k++) {
        const uint8_t *a = blocks + (size_t)(2 * k) * Q8_BYTES;
        p[k] = 2 * k < n ? q8_0_pair_dot_i8(a, 2 * k + 1 < n ? a + Q8_BYTES : NULL, q + 2 * k * QK)
                         : _mm512_setzero_si512();
    }
    const __m512i folded = fold_lanes(lane_sums4(p[0], p[1], p[2], p[3]), lane_sums4(p[4], p[5], p[6], p[7]));
    const __m512i sums = _mm512_sub_epi32(_mm512_permutexvar_epi32(order, folded),
                                          _mm512_loadu_si512((const void *)off));
    return scale_sums(acc, sums, q8_0_scales16(blocks, n), _mm512_loadu_ps(xd));
}

/* One q8_0 row · one token. */
INLINE float row_q8_0(const uint8_t *row, int64_t n_blocks, const token *tk, const int i8) {
    __m512 acc = _mm512_setzero_ps();
    for (int64_t b = 0; b < n_blocks; b += NB) {
        const uint8_t *blocks = row + (size_t)b * Q8_BYTES;
        const int64_t n = n_blocks - b < NB ? n_blocks - b : NB;
        for (int k = 0; k < 9; k++) prefetch_ahead(blocks + 64 * k);   /* 544 bytes */
        if (n == NB)   /* whole chunks: n a constant, the padding compiled away */
            acc = i8 ? q8_0_chunk_i8(acc, blocks, NB, tk->q8 + b * QK, tk->off + b, tk->xd + b)
                     : q8_0_chunk_i16(acc, blocks, NB, tk->q16 + b * QK, tk->xd + b);
        else
            acc = i8 ? q8_0_chunk_i8(acc, blocks, n, tk->q8 + b * QK, tk->off + b, tk->xd + b)
                     : q8_0_chunk_i16(acc, blocks, n, tk->q16 + b * QK, tk->xd + b);
    }
    return hsum16(acc);
}

/* Where mxfp4 row r's scale bytes are (after every row's groups). */
INLINE const uint8_t *mxfp4_scales(const tensor *w, int64_t r) {
    const int64_t n_groups = w->cols / QK;
    return w->data + (size_t)w->rows * (size_t)n_groups * GROUP_BYTES + (size_t)r * (size_t)n_groups;
}

/* Rows [r0, r1) · each token, one token at a time (y[t·ldy + r]). The token's layout lives in
 * one allocation; without it (out of memory) the rows take the exact f32 route. */
static void matmul_tokens(const tensor *w, int64_t r0, int64_t r1, const qact *x, float *y,
                          int64_t ldy) {
    const int mxfp4 = w->type == EDGEMOE_TYPE_MXFP4, i8 = x->bits == 8;
    const int64_t n_blocks = w->cols / QK, n_pad = round_up16(n_blocks);
    const size_t row_bytes = (size_t)n_blocks * (mxfp4 ? GROUP_BYTES : Q8_BYTES);
    /* q (int16 at most), offsets, scales: each a multiple of 64 bytes */
    uint8_t *buf = aligned_alloc(64, (size_t)n_pad * (QK * sizeof(int16_t) + sizeof(int32_t) + sizeof(float)));
    int16_t *q16 = (int16_t *)(void *)buf;
    int32_t *off = buf ? (int32_t *)(void *)(buf + (size_t)n_pad * QK * sizeof(int16_t)) : NULL;
    float *xd = buf ? (float *)(void *)(off + n_pad) : NULL;
    for (int64_t t = 0; t < x->n_tok; t++) {
        const float *xf = x->x + t * w->cols;
        float *out = y + t * ldy;
        if (!buf || x->exact[t]) {
            for (int64_t r = r0; r < r1; r++) out[r] = row_exact_avx2(w, r, xf);
            continue;
        }
        const int16_t *q = x->q + t * w->cols;
        token tk = {.q16 = q, .q8 = (const int8_t *)q16, .hl = (const uint8_t *)q16, .off = off, .xd = xd};
        if (i8) {
            if (mxfp4) pack_quads_i8(q, n_blocks, n_pad, (int8_t *)q16);
            else narrow_padded(q, n_blocks, n_pad, (int8_t *)q16);
        } else if (mxfp4) {
            pack_quads_bytes(q, n_blocks, n_pad, (uint8_t *)q16);
        }
        if (i8 || mxfp4) qact_block_offsets(q, n_blocks, n_pad, mxfp4 ? FP4_OFFSET : Q8_OFFSET, off);
        for (int64_t b = 0; b < n_pad; b++) xd[b] = b < n_blocks ? x->d[t * n_blocks + b] : 0.0f;
        for (int64_t r = r0; r < r1; r++) {
            const uint8_t *row = w->data + (size_t)r * row_bytes;
            if (!mxfp4) {   /* i8 a constant in each call: two compiled kernels */
                out[r] = i8 ? row_q8_0(row, n_blocks, &tk, 1) : row_q8_0(row, n_blocks, &tk, 0);
                continue;
            }
            const uint8_t *sc = mxfp4_scales(w, r);
            if (!scales_fast_avx2(sc, (size_t)n_blocks))
                out[r] = row_exact_avx2(w, r, xf);
            else
                out[r] = i8 ? row_mxfp4(row, sc, n_blocks, &tk, 1) : row_mxfp4(row, sc, n_blocks, &tk, 0);
        }
    }
    free(buf);
}

/* ---------------------------------------------------------------------------------------
 * Several tokens (prefill). Rows are decoded once per call and every token's activations laid
 * out once per call, both "interleaved": per chunk of 16 blocks, vector k lane j holds piece k
 * of block j (int16: the pair 2k, 2k+1, 16 vectors; int8: values 4k .. 4k+3, 8 vectors; blocks
 * past the end zero). A VPDPWSSD / VPDPBUSD of a weight vector with an activation vector then
 * adds to lane j a piece of block j's sum only, so a chunk leaves [S_b .. S_b+15] in the lanes
 * with no horizontal step: the sums the one-token kernels reach, followed by the same
 * scale_sums and hsum16's additions (hsum16_rows: 16 rows' at once). Work goes by ROW_BLOCK
 * rows × TOKEN_GROUP tokens (a chunk of their weights and activations, 1 KB per row or token,
 * stays in L1) in tiles of up to TILE × TILE:
 * 16 accumulators and 8 loaded vectors of the 32 registers. The scratch is chunk-major (the
 * rows, or tokens, of one chunk side by side), so within a tile every row, token, scale and
 * accumulator sits a constant distance from the tile's first: few address registers.
 */
#define ROW_BLOCK 16
#define TOKEN_GROUP 16
#define TILE 4

/* Bytes of one chunk of one row or token: 16 blocks of int16, or of int8 (weights offset,
 * unsigned) when the activations are int8. */
#define CHUNK_BYTES(i8) (NB * QK * ((i8) ? 1 : 2))

/* Scratch of one blocked call (n_ch = n_pad / 16 chunks, n_tok tokens). */
typedef struct blocked {
    uint8_t *w;          /* [n_ch, ROW_BLOCK, CHUNK_BYTES] interleaved weights */
    float *ws;           /* [n_ch, ROW_BLOCK, 16] weight block scales (finite padding) */
    uint8_t *q;          /* [n_ch, n_tok, CHUNK_BYTES] interleaved activations */
    float *xd;           /* [n_ch, n_tok, 16] activation scales, 0 past the end */
    int32_t *off;        /* int8: [n_ch, n_tok, 16] offset · Σq per block; else NULL */
    float *acc;          /* [ROW_BLOCK, TOKEN_GROUP, 16] */
    uint8_t *row;        /* [stride] one row or token in order, before interleaving */
    int64_t n_pad, stride, n_tok;   /* stride: bytes of a whole row or token */
    uint8_t fast[ROW_BLOCK];   /* row decoded (else: exact route) */
} blocked;

static int blocked_new(blocked *s, int64_t cols, int64_t n_tok, int i8) {
    s->n_pad = round_up16(cols / QK);
    s->stride = s->n_pad * QK * (i8 ? 1 : 2);
    s->n_tok = n_tok;
    const size_t w = (size_t)ROW_BLOCK * (size_t)s->stride;
    const size_t ws = (size_t)ROW_BLOCK * (size_t)s->n_pad * sizeof(float);
    const size_t q = (size_t)n_tok * (size_t)s->stride;
    const size_t xd = (size_t)n_tok * (size_t)s->n_pad * sizeof(float);
    const size_t off = i8 ? (size_t)n_tok * (size_t)s->n_pad * sizeof(int32_t) : 0;
    const size_t acc = (size_t)ROW_BLOCK * TOKEN_GROUP * NB * sizeof(float);
    const size_t row = (size_t)s->stride;
    uint8_t *p = aligned_alloc(64, w + ws + q + xd + off + acc + row);
    if (!p) return 0;   /* every size is a multiple of 64 bytes: the arrays stay aligned */
    s->w = p;
    s->ws = (float *)(void *)(p + w);
    s->q = p + w + ws;
    s->xd = (float *)(void *)(p + w + ws + q);
    s->off = i8 ? (int32_t *)(void *)(p + w + ws + q + xd) : NULL;
    s->acc = (float *)(void *)(p + w + ws + q + xd + off);
    s->row = p + w + ws + q + xd + off + acc;
    return 1;
}

/* n_pad blocks in order at src (32 int16, or 32 int8, each) into interleaved chunks, chunk k at
 * dst + k·chunk_stride. */
static void interleave(const uint8_t *src, int64_t n_pad, int i8, uint8_t *dst, int64_t chunk_stride) {
    const size_t block = i8 ? QK : QK * sizeof(int16_t);
    for (int64_t c = 0; c < n_pad; c += NB) {
        const uint8_t *s = src + (size_t)c * block;
        uint8_t *d = dst + c / NB * chunk_stride;
        __m512i in[NB], out[NB];
        for (int j = 0; j < NB; j++)
            in[j] = i8 ? _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_loadu_si256((const void *)(s + j * block)), 0)
                       : _mm512_loadu_si512((const void *)(s + j * block));
        transpose16_epi32(in, out);
        for (int k = 0; k < (i8 ? NB / 2 : NB); k++) _mm512_store_si512((void *)(d + 64 * k), out[k]);
    }
}

/*
 * 16 mxfp4 groups (256 packed bytes at g, of which the first n_bytes are in bounds; zero
 * codes, or the offset 12 for int8, past them) straight into the interleaved layout at out:
 * vector k, lane j = piece k of group j. Lane L of every vector draws on groups 4L .. 4L+3 only,
 * which one 64-byte load holds: per round c, two two-source dword permutes and a blend bring
 * dword c of each of those groups into lane L (bytes 4c .. 4c+3: int8 pieces 2c and 2c+1, int16
 * pieces 4c .. 4c+3), a byte shuffle in the lane orders them by piece, and unpacking the FP4
 * codes of low with high nibbles writes the pieces. The codes are decode's: the same bytes.
 */
INLINE void decode_chunk_mxfp4(const uint8_t *g, int64_t n_bytes, const int i8, uint8_t *out) {
    __m512i p[4];
    for (int m = 0; m < 4; m++) p[m] = load_bytes_upto(g + 64 * m, n_bytes - 64 * m);
    /* dword (lane L, g) <- dword 4g + c of p[L] (indices 16.. name the second source) */
    const __m512i base = _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 0, 4, 8, 12, 16, 20, 24, 28);
    /* int8: out bytes 8m + 2g + b <- 4g + 2m + b (word m of dword g); int16: 4m + g <- 4g + m */
    const __m512i order = i8 ? _mm512_broadcast_i32x4(_mm_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15))
                             : _mm512_broadcast_i32x4(_mm_setr_epi8(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15));
    for (int c = 0; c < 4; c++) {
        const __m512i idx = _mm512_add_epi32(base, _mm512_set1_epi32(c));
        const __m512i z = _mm512_shuffle_epi8(_mm512_mask_blend_epi32((__mmask16)0xFF00, _mm512_permutex2var_epi32(p[0], idx, p[1]),
                                                                      _mm512_permutex2var_epi32(p[2], idx, p[3])),
                                              order);
        __m512i lo, hi;
        quad_nibbles(z, &lo, &hi);
        if (i8) {
            const __m512i e = _mm512_shuffle_epi8(fp4_offset_lut(), lo), o = _mm512_shuffle_epi8(fp4_offset_lut(), hi);
            _mm512_store_si512((void *)(out + 64 * (2 * c)), _mm512_unpacklo_epi8(e, o));
            _mm512_store_si512((void *)(out + 64 * (2 * c + 1)), _mm512_unpackhi_epi8(e, o));
        } else {
            const __m512i e = _mm512_shuffle_epi8(fp4_lut(), lo), es = _mm512_shuffle_epi8(fp4_sign_lut(), lo);
            const __m512i o = _mm512_shuffle_epi8(fp4_lut(), hi), os = _mm512_shuffle_epi8(fp4_sign_lut(), hi);
            const __m512i e0 = _mm512_unpacklo_epi8(e, es), o0 = _mm512_unpacklo_epi8(o, os);   /* bytes 0..7: pieces 4c, 4c+1 */
            const __m512i e1 = _mm512_unpackhi_epi8(e, es), o1 = _mm512_unpackhi_epi8(o, os);   /* 8..15: 4c+2, 4c+3 */
            _mm512_store_si512((void *)(out + 64 * (4 * c)), _mm512_unpacklo_epi16(e0, o0));
            _mm512_store_si512((void *)(out + 64 * (4 * c + 1)), _mm512_unpackhi_epi16(e0, o0));
            _mm512_store_si512((void *)(out + 64 * (4 * c + 2)), _mm512_unpacklo_epi16(e1, o1));
            _mm512_store_si512((void *)(out + 64 * (4 * c + 3)), _mm512_unpackhi_epi16(e1, o1));
        }
    }
}

/* An mxfp4 row (n_groups groups, n_pad padded) interleaved: chunk k at out + k·chunk_stride,
 * its scales 2^(e−128) at ws + k·ws_stride (0.5 past the end). */
static void decode_mxfp4(const uint8_t *groups, const uint8_t *scales, int64_t n_groups, int64_t n_pad,
                         int i8, uint8_t *out, int64_t chunk_stride, float *ws, int64_t ws_stride) {
    for (int64_t g = 0; g < n_pad; g += NB) {
        const int64_t n_bytes = (n_groups - g) * (int64_t)GROUP_BYTES;
        if (i8) decode_chunk_mxfp4(groups + g * GROUP_BYTES, n_bytes, 1, out + g / NB * chunk_stride);
        else decode_chunk_mxfp4(groups + g * GROUP_BYTES, n_bytes, 0, out + g / NB * chunk_stride);
        _mm512_store_ps(ws + g / NB * ws_stride,
                        e8m0_half_scales16(load_scale_bytes_upto(scales + g, n_groups - g < NB ? n_groups - g : NB)));
    }
}

/* A q8_0 row's values in order into out (int16, or + 128 as unsigned bytes for int8; zeros
 * past the end, which zero activations meet), and its scales into ws as decode_mxfp4's (0 past
 * the end). */
static void decode_q8_0(const uint8_t *row, int64_t n_blocks, int64_t n_pad, int i8, uint8_t *out,
                        float *ws, int64_t ws_stride) {
    for (int64_t b = 0; b < n_pad; b++) {
        const uint8_t *block = row + (size_t)b * Q8_BYTES;
        if (i8) {
            const __m256i v = b < n_blocks ? _mm256_loadu_si256((const void *)(block + 2)) : _mm256_setzero_si256();
            _mm256_storeu_si256((void *)(out + b * QK), _mm256_xor_si256(v, _mm256_set1_epi8((char)0x80)));
        } else {
            const __m512i v = b < n_blocks ? _mm512_cvtepi8_epi16(_mm256_loadu_si256((const void *)(block + 2)))
                                           : _mm512_setzero_si512();
            _mm512_storeu_si512((void *)(out + b * QK * 2), v);
        }
    }
    for (int64_t b = 0; b < n_pad; b += NB)
        _mm512_store_ps(ws + b / NB * ws_stride,
                        q8_0_scales16(row + (size_t)b * Q8_BYTES, n_blocks - b < NB ? n_blocks - b : NB));
}

/* Every token's activations interleaved (exact tokens: zeros; their results come from
 * row_exact_avx2), with their scales (and offsets). */
static void blocked_tokens(blocked *s, const qact *x, int64_t cols, int mxfp4) {
    const int64_t n_blocks = cols / QK;
    const int i8 = s->off != NULL;
    const int64_t ch = CHUNK_BYTES(i8), n_tok = s->n_tok;   /* token t, chunk k at [k·n_tok + t] */
    for (int64_t t = 0; t < n_tok; t++) {
        uint8_t *q = s->q + t * ch;
        float *xd = s->xd + t * NB;
        int32_t *off = i8 ? s->off + t * NB : NULL;
        if (x->exact[t]) {
            for (int64_t k = 0; k < s->n_pad / NB; k++) {
                memset(q + k * n_tok * ch, 0, (size_t)ch);
                memset(xd + k * n_tok * NB, 0, NB * sizeof *xd);
                if (i8) memset(off + k * n_tok * NB, 0, NB * sizeof *off);
            }
            continue;
        }
        const int16_t *src = x->q + t * cols;
        if (i8) {
            int32_t *sums = (int32_t *)(void *)s->row;   /* n_pad int32 fit in a row's bytes */
            qact_block_offsets(src, n_blocks, s->n_pad, mxfp4 ? FP4_OFFSET : Q8_OFFSET, sums);
            for (int64_t b = 0; b < s->n_pad; b++) off[b / NB * n_tok * NB + b % NB] = sums[b];
            narrow_padded(src, n_blocks, s->n_pad, (int8_t *)s->row);
        } else {
            memcpy(s->row, src, (size_t)cols * sizeof *src);
            memset(s->row + cols * sizeof *src, 0, (size_t)(s->stride - cols * (int64_t)sizeof *src));
        }
        interleave(s->row, s->n_pad, i8, q, n_tok * ch);
        for (int64_t b = 0; b < s->n_pad; b++)
            xd[b / NB * n_tok * NB + b % NB] = b < n_blocks ? x->d[t * n_blocks + b] : 0.0f;
    }
}

/* Rows [rb, rb + nr) of W decoded and interleaved into the scratch (rows for the exact route:
 * zeros). */
static void blocked_rows(blocked *s, const tensor *w, int64_t rb, int64_t nr) {
    const int64_t n_blocks = w->cols / QK;
    const int i8 = s->off != NULL;
    const int64_t ch = CHUNK_BYTES(i8);   /* row i, chunk k at [k·ROW_BLOCK + i] */
    for (int64_t i = 0; i < nr; i++) {
        uint8_t *wi = s->w + i * ch;
        float *ws = s->ws + i * NB;
        if (w->type == EDGEMOE_TYPE_MXFP4) {
            const uint8_t *sc = mxfp4_scales(w, rb + i);
            s->fast[i] = (uint8_t)scales_fast_avx2(sc, (size_t)n_blocks);
            if (s->fast[i])   /* decoded into place */
                decode_mxfp4(w->data + (size_t)(rb + i) * (size_t)n_blocks * GROUP_BYTES, sc, n_blocks,
                             s->n_pad, i8, wi, ROW_BLOCK * ch, ws, ROW_BLOCK * NB);
        } else {
            s->fast[i] = 1;
            decode_q8_0(w->data + (size_t)(rb + i) * (size_t)n_blocks * Q8_BYTES, n_blocks, s->n_pad, i8,
                        s->row, ws, ROW_BLOCK * NB);
            interleave(s->row, s->n_pad, i8, wi, ROW_BLOCK * ch);
        }
        if (!s->fast[i]) {
            for (int64_t k = 0; k < s->n_pad / NB; k++) {
                memset(wi + k * ROW_BLOCK * ch, 0, (size_t)ch);
                memset(ws + k * ROW_BLOCK * NB, 0, NB * sizeof *ws);
            }
        }
    }
}

/*
 * One chunk of an R-row × T-token tile: w (row r at w + r·CHUNK_BYTES), q (token t at
 * q + t·CHUNK_BYTES) interleaved chunks; ws, xd, off the chunk's 16 scales and offsets (row r at
 * ws + 16r, token t at xd + 16t, off + 16t); acc (row r, token t at acc + (r·TOKEN_GROUP + t)·16)
 * updated by scale_sums, from zero when first (what the one-token kernels start from, without
 * zeroing the accumulators beforehand). int8: w offset codes or values (unsigned), q int8, VPDPBUSD.
 */
INLINE void tile(const int R, const int T, const int i8, const uint8_t *w, const uint8_t *q,
                 const float *ws, const float *xd, const int32_t *off, float *acc, const int first) {
    const int64_t stride = CHUNK_BYTES(i8);
    __m512i s[TILE][TILE];
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) s[r][t] = _mm512_setzero_si512();
    for (int k = 0; k < (i8 ? NB / 2 : NB); k++) {
        __m512i wv[TILE], qv[TILE];
        for (int r = 0; r < R; r++) wv[r] = _mm512_load_si512((const void *)(w + r * stride + 64 * k));
        for (int t = 0; t < T; t++) qv[t] = _mm512_load_si512((const void *)(q + t * stride + 64 * k));
        for (int r = 0; r < R; r++)
            for (int t = 0; t < T; t++)
                s[r][t] = i8 ? _mm512_dpbusd_epi32(s[r][t], wv[r], qv[t]) : _mm512_dpwssd_epi32(s[r][t], wv[r], qv[t]);
    }
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) {
            float *a = acc + (r * TOKEN_GROUP + t) * NB;
            const __m512i sums = i8 ? _mm512_sub_epi32(s[r][t], _mm512_load_si512((const void *)(off + t * NB)))
                                    : s[r][t];
            const __m512 before = first ? _mm512_setzero_ps() : _mm512_load_ps(a);
            _mm512_store_ps(a, scale_sums(before, sums, _mm512_load_ps(ws + r * NB), _mm512_load_ps(xd + t * NB)));
        }
}

/* Chunk k of nr rows × n_tok tokens (from token tg) of the scratch, in tiles (chunk 0 starts
 * the accumulators from zero). */
static void chunk(const blocked *s, int64_t k, int64_t tg, int64_t nr, int64_t n_tok) {
    const int start = k == 0;
    const int i8 = s->off != NULL;
    const int64_t ch = CHUNK_BYTES(i8), first = k * s->n_tok + tg;   /* chunk k's token tg */
    const uint8_t *w = s->w + k * ROW_BLOCK * ch, *q = s->q + first * ch;
    const float *ws = s->ws + k * ROW_BLOCK * NB, *xd = s->xd + first * NB;
    const int32_t *off = i8 ? s->off + first * NB : NULL;
    for (int64_t t = 0; t < n_tok; t += TILE) {
        const int64_t nt = n_tok - t < TILE ? n_tok - t : TILE;
        for (int64_t i = 0; i < nr; i += TILE) {
            const int64_t ni = nr - i < TILE ? nr - i : TILE;
            const uint8_t *wi = w + i * ch, *qt = q + t * ch;
            const float *wsi = ws + i * NB, *xdt = xd + t * NB;
            const int32_t *offt = i8 ? off + t * NB : NULL;
            float *a = s->acc + (i * TOKEN_GROUP + t) * NB;
#define TILE_CASE(R, T)                                                                            \
    case (R) * 8 + (T):                                                                            \
        if (i8) tile(R, T, 1, wi, qt, wsi, xdt, offt, a, start);                                   \
        else tile(R, T, 0, wi, qt, wsi, xdt, offt, a, start);                                      \
        break;
            switch (ni * 8 + nt) {   /* every size a constant: tile unrolled for each */
                TILE_CASE(4, 4) TILE_CASE(4, 3) TILE_CASE(4, 2) TILE_CASE(4, 1)
                TILE_CASE(3, 4) TILE_CASE(3, 3) TILE_CASE(3, 2) TILE_CASE(3, 1)
                TILE_CASE(2, 4) TILE_CASE(2, 3) TILE_CASE(2, 2) TILE_CASE(2, 1)
                TILE_CASE(1, 4) TILE_CASE(1, 3) TILE_CASE(1, 2) TILE_CASE(1, 1)
                default: break;
            }
#undef TILE_CASE
        }
    }
}

/* out[i] = hsum16(acc + i·TOKEN_GROUP·16) for i < nr (≤ 16 rows of one token). */
static void hsum16_rows(const float *acc, int64_t nr, float *out) {
    __m512 v[16];
    for (int i = 0; i < 16; i++)
        v[i] = i < nr ? _mm512_load_ps(acc + i * TOKEN_GROUP * NB) : _mm512_setzero_ps();
    store_f32_upto(out, nr, hsum16_x16(v));
}

/* Y for rows [r0, r1) and every token: a row block at a time, TOKEN_GROUP tokens at a time. */
static void matmul_blocked(const tensor *w, int64_t r0, int64_t r1, const qact *x, float *y,
                           int64_t ldy, blocked *s) {
    blocked_tokens(s, x, w->cols, w->type == EDGEMOE_TYPE_MXFP4);
    for (int64_t rb = r0; rb < r1; rb += ROW_BLOCK) {
        const int64_t nr = r1 - rb < ROW_BLOCK ? r1 - rb : ROW_BLOCK;
        blocked_rows(s, w, rb, nr);
        for (int64_t tg = 0; tg < x->n_tok; tg += TOKEN_GROUP) {
            const int64_t n_tok = x->n_tok - tg < TOKEN_GROUP ? x->n_tok - tg : TOKEN_GROUP;
            for (int64_t k = 0; k < s->n_pad / NB; k++) chunk(s, k, tg, nr, n_tok);
            for (int64_t t = 0; t < n_tok; t++) {
                float *out = y + (tg + t) * ldy + rb;
                if (!x->exact[tg + t]) hsum16_rows(s->acc + t * NB, nr, out);
                for (int64_t i = 0; i < nr; i++)
                    if (!s->fast[i] || x->exact[tg + t]) out[i] = row_exact_avx2(w, rb + i, x->x + (tg + t) * w->cols);
            }
        }
    }
}

/* The matmul entry of both q8_0 and mxfp4 (kernels.h): the blocked route for several tokens,
 * weights in registers for one (or when the blocked route has no memory). */
void matmul_int_avx512(const tensor *w, int64_t r0, int64_t r1, const qact *x, float *y,
                       int64_t ldy) {
    blocked s;
    if (x->n_tok > 1 && blocked_new(&s, w->cols, x->n_tok, x->bits == 8)) {
        matmul_blocked(w, r0, r1, x, y, ldy, &s);
        free(s.w);
        return;
    }
    matmul_tokens(w, r0, r1, x, y, ldy);
}

/* ---------------------------------------------------------------------------------------
 * Attention. A dot product is 16 lanes of FMAs over the dimensions in order (zeros past the
 * end), then hsum16; scores take 16 keys at a time, their sums by hsum16_x16 (the same numbers),
 * each block of keys read from memory once for all the query heads that share it. The value
 * sums are FMAs in key order per output lane, 4 heads at a time.
 */

/* 16 floats at p, of which the first n (< 16: the rest zero, none read) are in bounds. */
INLINE __m512 load_f32_part(const float *p, int64_t n) {
    return n >= 16 ? _mm512_loadu_ps(p) : n <= 0 ? _mm512_setzero_ps() : load_f32_upto(p, n);
}

double dot_f32_avx512(const float *a, const float *b, int64_t n) {
    __m512 acc = _mm512_setzero_ps();
    for (int64_t i = 0; i < n; i += 16) acc = _mm512_fmadd_ps(load_f32_part(a + i, n - i), load_f32_part(b + i, n - i), acc);
    return hsum16(acc);
}

/* (float)((double)s · scale) for 4 floats. */
INLINE __m128 scale4(__m128 s, __m256d scale) {
    return _mm256_cvtpd_ps(_mm256_mul_pd(_mm256_cvtps_pd(s), scale));
}

/* scores_fn (kernels.h) for dim D (a constant where inlined for the common 64). */
INLINE void scores_heads(float *out, size_t out_stride, const float *q, int nq, const float *keys,
                         size_t stride, int64_t n, const int64_t D, double scale) {
    const __m256d sc = _mm256_set1_pd(scale);
    for (int64_t j0 = 0; j0 < n; j0 += 16) {
        const int64_t nk = n - j0 < 16 ? n - j0 : 16;
        const float *k = keys + (size_t)j0 * stride;
        for (int i = 0; i < nq; i++) {
            const float *qi = q + (size_t)i * (size_t)D;
            __m512 acc[16];
            for (int j = 0; j < 16; j++) acc[j] = _mm512_setzero_ps();
            for (int64_t c = 0; c < D; c += 16) {
                const __m512 qc = load_f32_part(qi + c, D - c);
                for (int j = 0; j < 16; j++)
                    if (j < nk) acc[j] = _mm512_fmadd_ps(qc, load_f32_part(k + (size_t)j * stride + c, D - c), acc[j]);
            }
            /* (float)((double)sum · scale), as the dot's caller computes it, 4 at a time (SIMDe has
             * no 512-bit conversions between float and double) */
            const __m512 s = hsum16_x16(acc);
            __m512 scaled = _mm512_castps128_ps512(scale4(_mm512_extractf32x4_ps(s, 0), sc));
            scaled = _mm512_insertf32x4(scaled, scale4(_mm512_extractf32x4_ps(s, 1), sc), 1);
            scaled = _mm512_insertf32x4(scaled, scale4(_mm512_extractf32x4_ps(s, 2), sc), 2);
            scaled = _mm512_insertf32x4(scaled, scale4(_mm512_extractf32x4_ps(s, 3), sc), 3);
            store_f32_upto(out + (size_t)i * out_stride + (size_t)j0, nk, scaled);
        }
    }
}

void scores_avx512(float *out, size_t out_stride, const float *q, int nq, const float *keys,
                   size_t stride, int64_t n, int64_t dim, double scale) {
    if (dim == 64) scores_heads(out, out_stride, q, nq, keys, stride, n, 64, scale);
    else scores_heads(out, out_stride, q, nq, keys, stride, n, dim, scale);
}

/* weighted_sum_fn (kernels.h) for columns [d, d + nd) (nd ≤ 64) of up to 4 heads. */
INLINE void weighted_sum_heads(float *out, size_t out_stride, const float *p, size_t p_stride, int nh,
                               const float *rows, size_t stride, int64_t n, const int64_t nd) {
    __m512 acc[4][4];
    for (int h = 0; h < 4; h++)
        for (int c = 0; c < 4; c++) acc[h][c] = _mm512_setzero_ps();
    for (int64_t j = 0; j < n; j++) {
        const float *v = rows + (size_t)j * stride;
        __m512 vc[4];
        for (int c = 0; c < 4; c++) vc[c] = 16 * c < nd ? load_f32_part(v + 16 * c, nd - 16 * c) : _mm512_setzero_ps();
        for (int h = 0; h < 4; h++)
            if (h < nh) {
                const __m512 pj = _mm512_set1_ps(p[(size_t)h * p_stride + (size_t)j]);
                for (int c = 0; c < 4; c++)
                    if (16 * c < nd) acc[h][c] = _mm512_fmadd_ps(pj, vc[c], acc[h][c]);
            }
    }
    for (int h = 0; h < nh; h++)
        for (int c = 0; c < 4; c++)
            if (16 * c < nd) store_f32_upto(out + (size_t)h * out_stride + 16 * c, nd - 16 * c < 16 ? nd - 16 * c : 16, acc[h][c]);
}

void weighted_sum_avx512(float *out, const float *p, size_t p_stride, int nq, const float *rows,
                         size_t stride, int64_t n, int64_t dim, double *acc_unused) {
    (void)acc_unused;
    for (int i = 0; i < nq; i += 4) {
        const int nh = nq - i < 4 ? nq - i : 4;
        for (int64_t d = 0; d < dim; d += 64) {
            float *o = out + (size_t)i * (size_t)dim + (size_t)d;
            const float *pi = p + (size_t)i * p_stride;
            if (dim - d >= 64) weighted_sum_heads(o, (size_t)dim, pi, p_stride, nh, rows + d, stride, n, 64);
            else weighted_sum_heads(o, (size_t)dim, pi, p_stride, nh, rows + d, stride, n, dim - d);
        }
    }
}

/* ---------------------------------------------------------------------------------------
 * Softmax and SwiGLU with a 16-lane exp. expf per element (a libm call each) took ~4 % of a
 * pp512 in attention's softmax and ~2 % in the experts' SwiGLU.
 */

/*
 * e^x in each lane, within 2 ulp of expf (tests/test_kernels.py measures it against float64):
 * x = k·ln 2 + r with |r| ≤ ln 2 / 2 (ln 2 in two parts, FMA), e^r by its Taylor polynomial of
 * degree 7 (truncation below 6e-9 relative), times 2^k by VSCALEFPS, which rounds results
 * below the normal range to subnormals and zero and past it to infinity, as expf does. x is
 * first clamped to [−104, 89], beyond which e^x is 0 or infinity in f32 anyway; NaN stays NaN.
 */
INLINE __m512 exp16(__m512 x) {
    const __m512 xc = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-104.0f)), _mm512_set1_ps(89.0f));
    const __m512 k = _mm512_roundscale_ps(_mm512_mul_ps(xc, _mm512_set1_ps(1.44269504088896341f)),
                                          _MM_FROUND_TO_NEAREST_INT);
    __m512 r = _mm512_fnmadd_ps(k, _mm512_set1_ps(0.693359375f), xc);   /* ln 2 = 0.693359375 − 2.12194440e-4 */
    r = _mm512_fnmadd_ps(k, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.0f / 5040.0f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    const __m512 e = _mm512_scalef_ps(p, k);
    return _mm512_mask_mov_ps(e, _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), x);
}

/* softmax_fn (kernels.h): the maximum, e^(x − max) by exp16, their sum in double (in 16
 * lanes, then added up), times the f32 inverse of the sum. */
void softmax_avx512(float *x, int64_t n) {
    const __m512 first = _mm512_set1_ps(x[0]);
    __m512 m = first;
    for (int64_t i = 0; i < n; i += 16)   /* lanes past the end repeat x[0] */
        m = _mm512_max_ps(m, n - i >= 16 ? _mm512_loadu_ps(x + i)
                                         : _mm512_mask_mov_ps(first, (__mmask16)((1u << (n - i)) - 1), load_f32_upto(x + i, n - i)));
    float b[NB], max = x[0];
    _mm512_storeu_ps(b, m);
    for (int i = 0; i < NB; i++) max = b[i] > max ? b[i] : max;
    const __m512 mv = _mm512_set1_ps(max);
    __m256d s[4] = {_mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd()};
    for (int64_t i = 0; i < n; i += 16) {
        const int64_t k = n - i < 16 ? n - i : 16;
        const __m512 e = exp16(_mm512_sub_ps(load_f32_part(x + i, k), mv));
        store_f32_upto(x + i, k, e);
        const __m512 z = k < 16 ? _mm512_maskz_mov_ps((__mmask16)((1u << k) - 1), e) : e;
        /* in double, a quarter at a time (SIMDe has no 512-bit float-to-double conversion) */
        s[0] = _mm256_add_pd(s[0], _mm256_cvtps_pd(_mm512_extractf32x4_ps(z, 0)));
        s[1] = _mm256_add_pd(s[1], _mm256_cvtps_pd(_mm512_extractf32x4_ps(z, 1)));
        s[2] = _mm256_add_pd(s[2], _mm256_cvtps_pd(_mm512_extractf32x4_ps(z, 2)));
        s[3] = _mm256_add_pd(s[3], _mm256_cvtps_pd(_mm512_extractf32x4_ps(z, 3)));
    }
    double sum[4];
    _mm256_storeu_pd(sum, _mm256_add_pd(_mm256_add_pd(s[0], s[1]), _mm256_add_pd(s[2], s[3])));
    const __m512 inv = _mm512_set1_ps((float)(1.0 / ((sum[0] + sum[1]) + (sum[2] + sum[3]))));
    for (int64_t i = 0; i < n; i += 16) {
        const int64_t k = n - i < 16 ? n - i : 16;
        store_f32_upto(x + i, k, _mm512_mul_ps(load_f32_part(x + i, k), inv));
    }
}

/* swiglu_fn (kernels.h): swiglu_clamped's formula 16 pairs at a time, e^(−α·gate) by exp16. */
void swiglu_avx512(float *out, const float *h, int64_t n, float alpha, float limit) {
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    const __m512 lim = _mm512_set1_ps(limit), neg_lim = _mm512_set1_ps(-limit), one = _mm512_set1_ps(1.0f);
    const __m512 neg_alpha = _mm512_set1_ps(-alpha);
    for (int64_t j = 0; j < n; j += 16) {
        const int64_t k = n - j < 16 ? n - j : 16;
        const __m512 a = load_f32_part(h + 2 * j, 2 * k), b = load_f32_part(h + 2 * j + 16, 2 * k - 16);
        /* min(gate, limit) with NaN -> limit; up clamped to ±limit with NaN kept (operand order) */
        const __m512 gate = _mm512_min_ps(_mm512_permutex2var_ps(a, even, b), lim);
        const __m512 up = _mm512_min_ps(lim, _mm512_max_ps(neg_lim, _mm512_permutex2var_ps(a, odd, b)));
        const __m512 glu = _mm512_div_ps(gate, _mm512_add_ps(one, exp16(_mm512_mul_ps(neg_alpha, gate))));
        store_f32_upto(out + j, k, _mm512_mul_ps(glu, _mm512_add_ps(up, one)));
    }
}

const kernel_table KERNELS_AVX512 = {
    .name = "avx512",
    .matmul = {
        [EDGEMOE_TYPE_Q8_0] = matmul_int_avx512,
        [EDGEMOE_TYPE_MXFP4] = matmul_int_avx512,
    },
    KERNELS_AVX512_SHARED_ENTRIES,
};

#if defined(__clang__) && !defined(EDGEMOE_EMULATE_AVX512)
#pragma clang attribute pop
#endif

#else
/* Not x86-64: no AVX-512 kernels (ISO C wants at least one declaration per file). */
typedef int kernels_avx512_not_built;
#endif

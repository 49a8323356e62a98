/*
 * simd512.h — 512-bit helpers shared by the avx512 and amx kernel sets (kernels_avx512.c,
 * kernels_amx.c): masked loads and stores that read or write nothing past their bounds, the
 * float step every integer product ends a block with (scale_sums), the weight block scales,
 * the 16×16 dword transpose and the FP4 code table. The two sets give the same numbers
 * because they share these (what only the avx512 set uses stays in its file).
 *
 * Include it after the intrinsics (<immintrin.h> under the file's target pragma, or SIMDe's
 * <simde/x86/avx512.h> in the emulated build, EDGEMOE_EMULATE_AVX512) and kernels_isa.h.
 */
#ifndef EDGEMOE_SIMD512_H
#define EDGEMOE_SIMD512_H

#include <stdint.h>
#include <string.h>

#include "format.h"

#define INLINE static inline __attribute__((always_inline))

#define NB 16                     /* blocks per chunk: one vector of 16 int32 block sums */
#define QK 32                     /* values per q8_0 block and per mxfp4 group */
#define Q8_BYTES sizeof(block_q8_0)      /* 34: f16 scale, 32 int8 */
#define GROUP_BYTES sizeof(group_mxfp4)  /* 16: 32 nibbles; the scale bytes follow all rows */

/* The first n bytes at p (all 64 if n >= 64, none if n <= 0), zeros after them: nothing past
 * p + n is read. SIMDe has no masked byte loads: the emulated build copies instead. */
INLINE __m512i load_bytes_upto(const uint8_t *p, int64_t n) {
    if (n <= 0) return _mm512_setzero_si512();
#if defined(EDGEMOE_EMULATE_AVX512)
    uint8_t b[64] = {0};
    memcpy(b, p, (size_t)(n < 64 ? n : 64));
    return _mm512_loadu_si512((const void *)b);
#else
    return _mm512_maskz_loadu_epi8(n >= 64 ? ~(__mmask64)0 : ((__mmask64)1 << n) - 1, p);
#endif
}

/* 0 < n <= 16 mxfp4 scale bytes at p, then the padding byte 127 (a normal scale); nothing past
 * p + n is read. */
INLINE __m128i load_scale_bytes_upto(const uint8_t *p, int64_t n) {
#if defined(EDGEMOE_EMULATE_AVX512)
    uint8_t b[NB];
    memset(b, 127, sizeof b);
    memcpy(b, p, (size_t)n);
    return _mm_loadu_si128((const void *)b);
#else
    return _mm_mask_loadu_epi8(_mm_set1_epi8(127), (__mmask16)(((unsigned)1 << n) - 1), p);
#endif
}

/* The first n (≤ 16) lanes of v to p; nothing past p + n is written. */
INLINE void store_f32_upto(float *p, int64_t n, __m512 v) {
#if defined(EDGEMOE_EMULATE_AVX512)   /* SIMDe's masked stores write every lane */
    float b[NB];
    _mm512_storeu_ps(b, v);
    memcpy(p, b, (size_t)n * sizeof *p);
#else
    _mm512_mask_storeu_ps(p, (__mmask16)((1u << n) - 1), v);
#endif
}

/* acc += (f32(S) · xd) · ws for the 16 blocks of a chunk, given their sums S. */
INLINE __m512 scale_sums(__m512 acc, __m512i sums, __m512 ws, __m512 xd) {
    return _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(sums), xd), ws, acc);
}

/* 2^(e − 128) for 16 mxfp4 scale bytes e (fast bytes 2..252, or the padding 127): the scale of
 * the doubled codes, a normal f32 each. */
INLINE __m512 e8m0_half_scales16(__m128i bytes) {
    const __m512i e = _mm512_cvtepu16_epi32(_mm256_cvtepu8_epi16(bytes));   /* (SIMDe lacks cvtepu8_epi32) */
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_sub_epi32(e, _mm512_set1_epi32(1)), 23));
}

/* The f16 scales of q8_0 blocks 0 .. n−1 at blocks (34 bytes apart) as f32, zero from n to 16. */
INLINE __m512 q8_0_scales16(const uint8_t *blocks, int64_t n) {
    uint64_t h[4] = {0, 0, 0, 0};   /* gathered in registers: a copy through the stack read back
                                       by one load would stall on store forwarding */
    for (int64_t j = 0; j < NB; j++) {
        uint16_t v = 0;
        if (j < n) memcpy(&v, blocks + (size_t)j * Q8_BYTES, sizeof v);
        h[j / 4] |= (uint64_t)v << (16 * (j % 4));
    }
    return _mm512_cvtph_ps(_mm256_set_epi64x((long long)h[3], (long long)h[2], (long long)h[1], (long long)h[0]));
}

/* The 16×16 int32 transpose: out[k] lane j = in[j] lane k. */
INLINE void transpose16_epi32(const __m512i in[16], __m512i out[16]) {
    __m512i t[16], u[16];
    for (int i = 0; i < 8; i++) {   /* per 128-bit lane: [a0 b0 a1 b1], [a2 b2 a3 b3] */
        t[2 * i] = _mm512_unpacklo_epi32(in[2 * i], in[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_epi32(in[2 * i], in[2 * i + 1]);
    }
    for (int m = 0; m < 4; m++) {   /* u[4m+e] 128-bit lane L: column 4L+e of in[4m .. 4m+3] */
        u[4 * m + 0] = _mm512_unpacklo_epi64(t[4 * m + 0], t[4 * m + 2]);
        u[4 * m + 1] = _mm512_unpackhi_epi64(t[4 * m + 0], t[4 * m + 2]);
        u[4 * m + 2] = _mm512_unpacklo_epi64(t[4 * m + 1], t[4 * m + 3]);
        u[4 * m + 3] = _mm512_unpackhi_epi64(t[4 * m + 1], t[4 * m + 3]);
    }
    for (int e = 0; e < 4; e++) {   /* out[4L+e] = [u[e].L, u[4+e].L, u[8+e].L, u[12+e].L] */
        const __m512i v0 = _mm512_shuffle_i32x4(u[e], u[4 + e], 0x44);
        const __m512i v1 = _mm512_shuffle_i32x4(u[e], u[4 + e], 0xEE);
        const __m512i v2 = _mm512_shuffle_i32x4(u[8 + e], u[12 + e], 0x44);
        const __m512i v3 = _mm512_shuffle_i32x4(u[8 + e], u[12 + e], 0xEE);
        out[e] = _mm512_shuffle_i32x4(v0, v2, 0x88);
        out[4 + e] = _mm512_shuffle_i32x4(v0, v2, 0xDD);
        out[8 + e] = _mm512_shuffle_i32x4(v1, v3, 0x88);
        out[12 + e] = _mm512_shuffle_i32x4(v1, v3, 0xDD);
    }
}

/* mxfp4 groups, four at a time: 64 packed bytes, group g of the four in 128-bit lane g. Byte i
 * of a group holds element 2i in its low nibble and 2i+1 in its high nibble, so one byte
 * shuffle per nibble half decodes 4 groups (the 16-entry table repeated in every lane). */

/* Doubled FP4 codes 2·FP4[nibble] (int8). */
INLINE __m512i fp4_lut(void) {
    return _mm512_broadcast_i32x4(_mm_setr_epi8(0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12));
}

/* The nibbles of 4 groups' packed bytes: lo = elements 0, 2, .., 30, hi = 1, 3, .., 31. */
INLINE void quad_nibbles(__m512i bytes, __m512i *lo, __m512i *hi) {
    const __m512i mask = _mm512_set1_epi8(0x0F);
    *lo = _mm512_and_si512(bytes, mask);
    *hi = _mm512_and_si512(_mm512_srli_epi16(bytes, 4), mask);
}

#endif /* EDGEMOE_SIMD512_H */

/*
 * kernels_amx.c — the "amx" kernel set: the avx512 set with its batched q8_0 and mxfp4 products
 * (prompts, and the experts of a prompt) on AMX tiles (AMX-TILE and AMX-INT8: Intel Sapphire
 * Rapids and later). Every other entry, and one token at a time, is the avx512 set's.
 *
 * Same numbers as the avx512 set, bit for bit. Both compute, per row and token, the exact int32
 * sum S of every block of 32 (weights as int8: doubled FP4 codes or q8_0 values; activations as
 * qact's int16 or int8 q), then for block b = 16c + j the float step scale_sums applies to lane
 * j of a 16-lane accumulator, chunk c after chunk c, then hsum16 of the lanes. An AMX tile
 * product (TDPBSSD / TDPBSUD) sums 16 rows × 16 tokens × 32 bytes of one block exactly in
 * int32; int16 activations go by bytes, q = 256·h + l, h signed (TDPBSSD) and l unsigned
 * (TDPBSUD), S = 256·S_h + S_l. The float steps then run across 16 tokens at once, one vector
 * per row, with lane j's chunks in order (the blocks taken lane after lane); hsum16's additions
 * become vector additions between the 16 lanes' accumulators. So a batch here equals a batch of
 * the avx512 set, which equals its one-token results.
 *
 * Tiles: C[row][token] (int32, 16 × 16) += A[row][k] · B[k/4][token][k%4], with A the weights of
 * one block (16 rows × 32 bytes) and B the activations of one block in the VNNI layout (8 rows
 * × 16 tokens × 4 bytes). Both are laid out in scratch once per call (activations) or per 16
 * rows (weights), in the order the tiles read them.
 *
 * The process must be granted the tile data by the OS before the first tile instruction
 * (amx_enable, which kernels.c calls before handing the set out). Each call loads the tile
 * configuration and releases the tiles before it returns: the thread's AMX state is back in its
 * initial configuration outside this file, so context switches and signal frames do not carry
 * it.
 *
 * Tested on an AMX CPU natively (tests/test_kernels.py, kernel_check) and anywhere else with
 * -DEDGEMOE_EMULATE_AMX (with EDGEMOE_EMULATE_AVX512): the tile instructions then come from
 * csrc/tests/amx_emulate.h, portable C that reads and writes exactly the bytes the hardware
 * would, and the 512-bit intrinsics from SIMDe.
 */
#define _DEFAULT_SOURCE   /* syscall() under -std=c11 */

#if defined(__x86_64__) || defined(_M_X64)

#if defined(EDGEMOE_EMULATE_AVX512)
#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>
#else
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c,amx-tile,amx-int8"))), apply_to = function)
#else
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c,amx-tile,amx-int8")
#endif
#include <immintrin.h>
#endif

#if defined(EDGEMOE_EMULATE_AMX)
#include "tests/amx_emulate.h"
#else
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels_isa.h"
#include "simd512.h"

#define TR 16                /* rows per tile */
#define TT 16                /* tokens per tile */
#define TILE_B 512           /* bytes of one block's B tile: 8 rows of 64 */

/* Tile registers (macros: GCC's intrinsics paste the number into the instruction). Two sets of
 * C tiles, int32 sums of rows × tokens: over the high bytes of int16 activations (CH) or over
 * int8 ones, and over the low bytes (CL). A: the weights of a block; B: its activations, high
 * bytes or int8 (BH), low bytes (BL). */
#define T_CH0 0
#define T_CL0 1
#define T_A 2
#define T_BH 4
#define T_BL 5
#define T_CH1 6
#define T_CL1 7

/* 16 × 16 int32 sums of tile t to dst. GCC's _tile_stored tells the compiler it may write any
 * memory, so it keeps every local array in memory around it (the accumulators of a pass went
 * to the stack and back for every block); this one names the 1 KB it writes. */
#if defined(__GNUC__) && !defined(__clang__) && !defined(EDGEMOE_EMULATE_AMX)
#define TILE_STR_(x) #x
#define TILE_STR(x) TILE_STR_(x)
#define tile_store_sums(t, dst)                                                                    \
    __asm__ volatile("{tilestored\t%%tmm" TILE_STR(t) ", (%1,%2,1)|tilestored\t[%1+%2*1], %%tmm" TILE_STR(t) "}" \
                     : "=m"(*(int32_t(*)[TR * TT])(dst))                                           \
                     : "r"(dst), "r"((long)(TT * 4)))
#else
#define tile_store_sums(t, dst) _tile_stored(t, dst, TT * 4)
#endif

/* The compiler may not move memory accesses across it: what the layout functions wrote is in
 * memory before the tile loads (GCC's _tile_loadd does not say it reads memory). */
#define memory_barrier() __asm__ volatile("" ::: "memory")

/* Loops over a pass's 16 rows, unrolled so their accumulators can live in registers (an array
 * indexed in a loop lives in memory). */
#define UNROLL16 _Pragma("GCC unroll 16")

/* ---------------------------------------------------------------------------------------
 * Permission and configuration
 */

#if defined(EDGEMOE_EMULATE_AMX)
int amx_enable(void) {
    return 1;
}
#else
#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18

int amx_enable(void) {
    unsigned a, b, c, d;
    __asm__("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(7), "c"(0));
    if (!(d & (1u << 24)) || !(d & (1u << 25))) return 0;   /* AMX-TILE, AMX-INT8 */
    __asm__("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(1), "c"(0));
    if (!(c & (1u << 27))) return 0;                          /* OSXSAVE: XGETBV usable */
    unsigned lo, hi;
    __asm__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    if ((lo & 0x60000u) != 0x60000u) return 0;                /* XTILECFG, XTILEDATA */
#if defined(__linux__)
    /* Linux 5.16+: the tile data is off until the process asks (it enlarges every signal
     * frame); elsewhere, or on an older kernel, no AMX. */
    return syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
#else
    return 0;
#endif
}
#endif

/* Palette 1: the byte layout LDTILECFG reads. */
typedef struct tile_config {
    uint8_t palette, start_row;
    uint8_t reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} tile_config;

/* A constant object, not one filled in on the stack: GCC's _tile_loadconfig tells the compiler
 * it reads only the first 8 bytes, so stores to the rest of a local may be dropped. */
static const tile_config CONFIG = {
    .palette = 1,
    .colsb = {[T_CH0] = TT * 4, [T_CL0] = TT * 4, [T_CH1] = TT * 4, [T_CL1] = TT * 4,   /* int32 */
              [T_A] = QK,                                                             /* a block */
              [T_BH] = TT * 4, [T_BL] = TT * 4},                                      /* VNNI */
    .rows = {[T_CH0] = TR, [T_CL0] = TR, [T_CH1] = TR, [T_CL1] = TR, [T_A] = TR,
             [T_BH] = QK / 4, [T_BL] = QK / 4},
};

static void tiles_configure(void) {
    _tile_loadconfig(&CONFIG);
}

/* ---------------------------------------------------------------------------------------
 * Scratch of one call
 */

typedef struct amx_scratch {
    int64_t n_blocks;          /* blocks of a row */
    int64_t n_groups;          /* groups of 16 tokens */
    int planes;                /* B tiles per (group, block): 2 (h, l) for int16, 1 for int8 */
    /* Everything a pass reads is stored in the order the pass reads it (position k: block
     * order[k]), so that it streams through the caches. */
    int32_t *order;            /* [n_blocks] the blocks lane after lane: 0, 16, 32, .., 1, 17, .. */
    int32_t *pos;              /* [n_blocks] the inverse: block b at position pos[b] */
    uint8_t *b;                /* [n_groups][n_blocks][planes][TILE_B] activations, by position */
    float *xd;                 /* [n_groups][n_blocks][16] activation scales by token, by position */
    int8_t *a;                 /* [n_blocks][16][32] decoded weights of one pass's rows, by position */
    float *ws;                 /* [n_blocks][16] their block scales, by position */
    int32_t *c;                /* [2 buffers][2][16][16] tile sums stored for the float steps */
    float *acc;                /* [16 lanes][16 rows][16 tokens] */
    uint8_t fast[TR];          /* row decoded (else the exact route) */
} amx_scratch;

static int scratch_new(amx_scratch *s, int64_t cols, int64_t n_tok, int i8) {
    s->n_blocks = cols / QK;
    s->n_groups = (n_tok + TT - 1) / TT;
    s->planes = i8 ? 1 : 2;
    const size_t nb = (size_t)s->n_blocks;
    const size_t order = 2 * nb * sizeof(int32_t);
    const size_t b = (size_t)s->n_groups * nb * (size_t)s->planes * TILE_B;
    const size_t xd = (size_t)s->n_groups * nb * TT * sizeof(float);
    const size_t a = nb * TR * QK;
    const size_t ws = nb * TR * sizeof(float);
    const size_t c = 2 * 2 * TR * TT * sizeof(int32_t);
    const size_t acc = (size_t)NB * TR * TT * sizeof(float);
    const size_t round = 64;   /* each array starts on a 64-byte boundary */
#define UP(n) (((n) + round - 1) / round * round)
    uint8_t *p = aligned_alloc(64, UP(order) + b + UP(xd) + a + UP(ws) + c + acc);
    if (!p) return 0;
    s->order = (int32_t *)(void *)p;
    s->pos = s->order + nb;
    s->b = p + UP(order);
    s->xd = (float *)(void *)(p + UP(order) + b);
    s->a = (int8_t *)(p + UP(order) + b + UP(xd));
    s->ws = (float *)(void *)(p + UP(order) + b + UP(xd) + a);
    s->c = (int32_t *)(void *)(p + UP(order) + b + UP(xd) + a + UP(ws));
    s->acc = (float *)(void *)(p + UP(order) + b + UP(xd) + a + UP(ws) + c);
#undef UP
    int64_t k = 0;
    for (int64_t j = 0; j < NB; j++)
        for (int64_t blk = j; blk < s->n_blocks; blk += NB) {
            s->order[k] = (int32_t)blk;
            s->pos[blk] = (int32_t)k++;
        }
    return 1;
}

/* ---------------------------------------------------------------------------------------
 * Activations: per group of 16 tokens and block, the B tile(s). Token t's 32 values of block b
 * become dwords 0..7 of row t of a 16 × 16 dword matrix (int16: the high bytes h, then the low
 * bytes l in dwords 8..15; int8: block b, then block b + 1), and the transpose puts dword k of
 * token t at row k, column t: the VNNI layout, B[k][t][i] = value 4k + i of token t.
 */

/* The 32 int16 q of a block as bytes: high (signed) in the low half, low in the high half. */
INLINE __m512i split_bytes(__m512i q) {
    const __m256i h = _mm512_cvtepi16_epi8(_mm512_srai_epi16(q, 8));
    const __m256i l = _mm512_cvtepi16_epi8(q);
    return _mm512_inserti64x4(_mm512_castsi256_si512(h), l, 1);
}

static void lay_out_tokens(amx_scratch *s, const qact *x) {
    const int64_t nb = s->n_blocks, cols = x->cols;
    const int i8 = s->planes == 1;
    const size_t tile_bytes = (size_t)s->planes * TILE_B;
    for (int64_t g = 0; g < s->n_groups; g++) {
        const int64_t t0 = g * TT;
        const int16_t *q[TT];
        for (int t = 0; t < TT; t++)   /* NULL: no token, or an exact one (zero activations) */
            q[t] = t0 + t < x->n_tok && !x->exact[t0 + t] ? x->q + (t0 + t) * cols : NULL;
        uint8_t *bg = s->b + (size_t)g * (size_t)nb * tile_bytes;
        for (int64_t b = 0; b < nb; b += i8 ? 2 : 1) {
            __m512i rows[TT], cols16[TT];
            for (int t = 0; t < TT; t++) {
                if (!q[t]) {
                    rows[t] = _mm512_setzero_si512();
                } else if (i8) {
                    const int16_t *src = q[t] + b * QK;
                    const __m256i lo = _mm512_cvtepi16_epi8(_mm512_loadu_si512((const void *)src));
                    const __m256i hi = b + 1 < nb ? _mm512_cvtepi16_epi8(_mm512_loadu_si512((const void *)(src + QK)))
                                                  : _mm256_setzero_si256();
                    rows[t] = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
                } else {
                    rows[t] = split_bytes(_mm512_loadu_si512((const void *)(q[t] + b * QK)));
                }
            }
            transpose16_epi32(rows, cols16);
            /* rows 0..7: block b (int16: its high bytes); 8..15: its low bytes, or block b + 1 */
            uint8_t *dst = bg + (size_t)s->pos[b] * tile_bytes;
            uint8_t *rest = !i8 ? dst + TILE_B : b + 1 < nb ? bg + (size_t)s->pos[b + 1] * tile_bytes : NULL;
            for (int k = 0; k < 8; k++) _mm512_store_si512((void *)(dst + 64 * k), cols16[k]);
            for (int k = 8; k < TT && rest; k++) _mm512_store_si512((void *)(rest + 64 * (k - 8)), cols16[k]);
        }
        for (int64_t b = 0; b < nb; b++) {
            float *xd = s->xd + ((size_t)g * (size_t)nb + (size_t)s->pos[b]) * TT;
            for (int t = 0; t < TT; t++) xd[t] = q[t] ? x->d[(t0 + t) * nb + b] : 0.0f;
        }
    }
}

/* ---------------------------------------------------------------------------------------
 * Weights: a block of up to 16 rows, decoded into s->a (int8; absent and slow rows zero) by
 * position: the A tile of position k is 512 bytes at s->a + 512k, its 16 rows 32 bytes apart.
 * Scales go to s->ws likewise, 16 rows' at each position.
 */

/* 4 mxfp4 groups (64 packed bytes) as doubled codes in natural order: groups 0, 1 in *first,
 * 2, 3 in *second (32 bytes each). */
INLINE void decode_quad(__m512i packed, __m512i *first, __m512i *second) {
    __m512i lo, hi;
    quad_nibbles(packed, &lo, &hi);
    const __m512i e = _mm512_shuffle_epi8(fp4_lut(), lo), o = _mm512_shuffle_epi8(fp4_lut(), hi);
    const __m512i u = _mm512_unpacklo_epi8(e, o), v = _mm512_unpackhi_epi8(e, o);   /* per group */
    *first = _mm512_permutex2var_epi64(u, _mm512_setr_epi64(0, 1, 8, 9, 2, 3, 10, 11), v);
    *second = _mm512_permutex2var_epi64(u, _mm512_setr_epi64(4, 5, 12, 13, 6, 7, 14, 15), v);
}

INLINE void store_block(int8_t *dst, __m256i v) {
    _mm256_store_si256((void *)dst, v);
}

static void lay_out_rows(amx_scratch *s, const tensor *w, int64_t rb, int64_t nr) {
    const int64_t nb = s->n_blocks;
    const int mxfp4 = w->type == EDGEMOE_TYPE_MXFP4;
    const size_t row_bytes = (size_t)nb * (mxfp4 ? GROUP_BYTES : Q8_BYTES);
    const uint8_t *rows = w->data + (size_t)rb * row_bytes;
    /* mxfp4: the scale bytes, after every row's groups */
    const uint8_t *scales = mxfp4 ? w->data + (size_t)w->rows * row_bytes + (size_t)rb * (size_t)nb : NULL;
    for (int64_t i = 0; i < TR; i++) {
        s->fast[i] = (uint8_t)(i < nr && (!mxfp4 || scales_fast_avx2(scales + (size_t)i * (size_t)nb, (size_t)nb)));
        if (!s->fast[i]) {   /* zero weights (the exact route gives slow rows) */
            for (int64_t k = 0; k < nb; k++) store_block(s->a + (k * TR + i) * QK, _mm256_setzero_si256());
            continue;
        }
        const uint8_t *row = rows + (size_t)i * row_bytes;
        if (!mxfp4) {
            for (int64_t b = 0; b < nb; b++)
                store_block(s->a + ((int64_t)s->pos[b] * TR + i) * QK,
                            _mm256_loadu_si256((const void *)(row + (size_t)b * Q8_BYTES + 2)));
        } else {
            for (int64_t g = 0; g < nb; g += 4) {   /* past the row's end: zero bytes, nothing read */
                __m512i first, second;
                decode_quad(load_bytes_upto(row + g * GROUP_BYTES, (nb - g) * (int64_t)GROUP_BYTES), &first, &second);
                const __m256i blocks[4] = {_mm512_castsi512_si256(first), _mm512_extracti64x4_epi64(first, 1),
                                           _mm512_castsi512_si256(second), _mm512_extracti64x4_epi64(second, 1)};
                for (int m = 0; m < 4 && g + m < nb; m++)
                    store_block(s->a + ((int64_t)s->pos[g + m] * TR + i) * QK, blocks[m]);
            }
        }
    }
    /* The scales, 16 blocks at a time: one vector per row (zero for slow and absent rows),
     * transposed into one vector per block, the 16 rows' scales at its position. */
    for (int64_t b = 0; b < nb; b += NB) {
        const int64_t n = nb - b < NB ? nb - b : NB;
        __m512i by_row[TR], by_block[NB];
        for (int64_t i = 0; i < TR; i++) {
            __m512 v = _mm512_setzero_ps();
            if (s->fast[i])
                v = mxfp4 ? e8m0_half_scales16(load_scale_bytes_upto(scales + (size_t)i * (size_t)nb + b, n))
                          : q8_0_scales16(rows + (size_t)i * row_bytes + (size_t)b * Q8_BYTES, n);
            by_row[i] = _mm512_castps_si512(v);
        }
        transpose16_epi32(by_row, by_block);
        for (int64_t m = 0; m < n; m++) _mm512_store_si512((void *)(s->ws + (int64_t)s->pos[b + m] * TR), by_block[m]);
    }
}

/* ---------------------------------------------------------------------------------------
 * One pass: 16 rows × the 16 tokens of group g. Lane j of the one-token accumulators takes
 * blocks j, 16 + j, 32 + j, .. (below nb) in that order: here lane j is 16 vectors, one per row
 * over the tokens, kept in registers while its blocks go by, then stored to acc[j]. The pass
 * walks the blocks lane after lane (s->order) in a three-stage pipeline, one block apart: the
 * float steps of block k, the sums of block k + 1 to memory, the tile products of block k + 2
 * (two sets of C tiles alternate). A tile store is committed only after it retires and its sums
 * are read back by ordinary loads, so they are read one block after they are stored, while the
 * tile unit runs the next products.
 *
 * The one-token route also adds (0 · 0) · ws for the padding blocks of a row's last chunk: that
 * is + (+0), which leaves every value but −0 as it is, and a lane is never −0 (it starts at +0,
 * and a sum that rounds to zero is +0), so those steps are left out. Lanes no block reaches
 * (rows of fewer than 16 blocks) are +0.
 */

/* acc[r] ← scale_sums(acc[r], S[r][·], ws[r], xd[·]) for the 16 rows, from the sums the tiles
 * left in c (int16: the high bytes' sums, then the low bytes'). */
INLINE void float_steps(__m512 acc[TR], const int32_t *c, const int i8, const float *ws, const float *xd) {
    const __m512 x = _mm512_load_ps(xd);
    UNROLL16 for (int r = 0; r < TR; r++) {
        const __m512i h = _mm512_load_si512((const void *)(c + r * TT));
        const __m512i sums = i8 ? h
                                : _mm512_add_epi32(_mm512_slli_epi32(h, 8), _mm512_load_si512((const void *)(c + (TR + r) * TT)));
        acc[r] = scale_sums(acc[r], sums, _mm512_set1_ps(ws[r]), x);
    }
}

/* One block's tile products (A at a, B at bt) into C set `set`. */
INLINE void tile_products(const int8_t *a, const uint8_t *bt, const int set, const int i8) {
    _tile_loadd(T_A, a, QK);
    _tile_loadd(T_BH, bt, 64);
    if (set) {
        _tile_zero(T_CH1);
        _tile_dpbssd(T_CH1, T_A, T_BH);
    } else {
        _tile_zero(T_CH0);
        _tile_dpbssd(T_CH0, T_A, T_BH);
    }
    if (!i8) {
        _tile_loadd(T_BL, bt + TILE_B, 64);
        if (set) {
            _tile_zero(T_CL1);
            _tile_dpbsud(T_CL1, T_A, T_BL);
        } else {
            _tile_zero(T_CL0);
            _tile_dpbsud(T_CL0, T_A, T_BL);
        }
    }
}

/* C set `set` to c (int16: the high bytes' sums, then the low bytes'). */
INLINE void tile_sums_store(int32_t *c, const int set, const int i8) {
    if (set) tile_store_sums(T_CH1, c);
    else tile_store_sums(T_CH0, c);
    if (!i8) {
        if (set) tile_store_sums(T_CL1, c + TR * TT);
        else tile_store_sums(T_CL0, c + TR * TT);
    }
}

static void pass_rows_tokens(const amx_scratch *s, int64_t g, const int i8) {
    const int64_t nb = s->n_blocks;
    const size_t tile_bytes = (size_t)s->planes * TILE_B;
    const int32_t *order = s->order;
    const uint8_t *bg = s->b + (size_t)g * (size_t)nb * tile_bytes;
    const float *xg = s->xd + (size_t)g * (size_t)nb * TT;
#define PRODUCTS(k, set) tile_products(s->a + (k) * TR * QK, bg + (size_t)(k) * tile_bytes, set, i8)
#define SUMS(set) (s->c + (set) * 2 * TR * TT)
    PRODUCTS(0, 0);
    tile_sums_store(SUMS(0), 0, i8);
    if (nb > 1) PRODUCTS(1, 1);
    __m512 acc[TR];
    UNROLL16 for (int r = 0; r < TR; r++) acc[r] = _mm512_setzero_ps();
    for (int64_t k = 0; k < nb; k++) {
        const int set = (int)(k & 1);
        if (k + 1 < nb) tile_sums_store(SUMS(1 - set), 1 - set, i8);
        if (k + 2 < nb) PRODUCTS(k + 2, set);
        const int64_t b = order[k];
        if (b < NB)   /* a lane's first block */
            UNROLL16 for (int r = 0; r < TR; r++) acc[r] = _mm512_setzero_ps();
        float_steps(acc, SUMS(set), i8, s->ws + k * TR, xg + k * TT);
        if (b + NB >= nb)   /* its last */
            UNROLL16 for (int r = 0; r < TR; r++) _mm512_store_ps(s->acc + (b % NB * TR + r) * TT, acc[r]);
    }
    for (int64_t j = nb; j < NB; j++)
        for (int r = 0; r < TR; r++) _mm512_store_ps(s->acc + (j * TR + r) * TT, _mm512_setzero_ps());
#undef SUMS
#undef PRODUCTS
}

/* Row r, token t: hsum16 over lanes j of acc, as hsum16 adds them (j + j+8, then + j+4, j+2,
 * j+1), 16 tokens at once; then rows and tokens swapped, token t's nr rows stored at
 * y + t·ldy. */
static void finish_pass(const amx_scratch *s, int64_t nr, int64_t nt, float *y, int64_t ldy) {
    __m512i in[TR], out[TT];
    for (int r = 0; r < TR; r++) {
        __m512 v[NB];
        for (int j = 0; j < NB; j++) v[j] = _mm512_load_ps(s->acc + (j * TR + r) * TT);
        for (int j = 0; j < 8; j++) v[j] = _mm512_add_ps(v[j], v[j + 8]);
        for (int j = 0; j < 4; j++) v[j] = _mm512_add_ps(v[j], v[j + 4]);
        for (int j = 0; j < 2; j++) v[j] = _mm512_add_ps(v[j], v[j + 2]);
        in[r] = _mm512_castps_si512(_mm512_add_ps(v[0], v[1]));
    }
    transpose16_epi32(in, out);
    for (int64_t t = 0; t < nt; t++) store_f32_upto(y + t * ldy, nr, _mm512_castsi512_ps(out[t]));
}

static void matmul_amx(const tensor *w, int64_t r0, int64_t r1, const qact *x, float *y, int64_t ldy,
                       amx_scratch *s) {
    const int i8 = s->planes == 1;
    lay_out_tokens(s, x);
    tiles_configure();
    memory_barrier();
    for (int64_t rb = r0; rb < r1; rb += TR) {
        const int64_t nr = r1 - rb < TR ? r1 - rb : TR;
        lay_out_rows(s, w, rb, nr);
        memory_barrier();
        for (int64_t g = 0; g < s->n_groups; g++) {
            const int64_t t0 = g * TT, nt = x->n_tok - t0 < TT ? x->n_tok - t0 : TT;
            if (i8) pass_rows_tokens(s, g, 1);
            else pass_rows_tokens(s, g, 0);
            finish_pass(s, nr, nt, y + t0 * ldy + rb, ldy);
            for (int64_t t = 0; t < nt; t++)
                for (int64_t i = 0; i < nr; i++)
                    if (!s->fast[i] || x->exact[t0 + t])
                        y[(t0 + t) * ldy + rb + i] = row_exact_avx2(w, rb + i, x->x + (t0 + t) * w->cols);
        }
    }
    _tile_release();
}

/* Whether a batch of n_tok tokens is faster on the tiles than by the avx512 route. A pass costs
 * as much for 1 token as for 16, and decoding mxfp4 rows for the tiles as much for 16 tokens as
 * for 512, while the avx512 route scales with the tokens and its int8 mxfp4 product is quick:
 * the tiles win from 8 tokens over q8_0, 12 over mxfp4 with int16 activations and 40 with int8
 * (one thread, gpt-oss-20b's shapes, edgemoe_kernel_matmul; docs/PERFORMANCE.md). */
static int tiles_pay(int type, int bits, int64_t n_tok) {
    if (type == EDGEMOE_TYPE_Q8_0) return n_tok >= 8;
    return n_tok >= (bits == 8 ? 40 : 12);
}

/* The matmul entry of both q8_0 and mxfp4: tiles for a batch, the avx512 route for a few tokens
 * (or when the scratch cannot be had). */
static void matmul_int_amx(const tensor *w, int64_t r0, int64_t r1, const qact *x, float *y, int64_t ldy) {
    amx_scratch s;
    if (tiles_pay(w->type, x->bits, x->n_tok) && scratch_new(&s, w->cols, x->n_tok, x->bits == 8)) {
        matmul_amx(w, r0, r1, x, y, ldy, &s);
        free(s.order);   /* the one allocation */
        return;
    }
    matmul_int_avx512(w, r0, r1, x, y, ldy);
}

const kernel_table KERNELS_AMX = {
    .name = "amx",
    .matmul = {
        [EDGEMOE_TYPE_Q8_0] = matmul_int_amx,
        [EDGEMOE_TYPE_MXFP4] = matmul_int_amx,
    },
    KERNELS_AVX512_SHARED_ENTRIES,
};

#if defined(__clang__) && !defined(EDGEMOE_EMULATE_AVX512)
#pragma clang attribute pop
#endif

#else
/* Not x86-64: no AMX kernels. */
typedef int kernels_amx_not_built;
#endif

/*
 * qact.c — activations rounded to int16 blocks for the integer kernels (see struct qact in
 * kernels.h). Plain C on purpose: the rounding rule is part of the numerical contract (the
 * tests replay it in numpy), and this is its reference. A set may have a faster twin (its
 * table's quantize, e.g. qact_quantize_avx2) that must give the same q, d and exact bit for
 * bit: the caller runs it alone while the other threads wait, so in a prompt it showed.
 */
#include <math.h>

#include "kernels.h"

int qact_block_slot(int i, int order) {
    if (order == QACT_ORDER_EVEN_ODD) return (i % 2) * (QACT_BLOCK / 2) + i / 2;
    if (order == QACT_ORDER_EVEN_ODD_HALVES) return (i / 16) * 16 + (i % 2) * 8 + (i / 2) % 8;
    return i;
}

/* One block of 32: q (in order) and d; returns 0 if the block must take the exact route. */
static int quantize_block(const float *x, int16_t *q, float *d, int order, float qmax) {
    float amax = 0.0f;
    for (int i = 0; i < QACT_BLOCK; i++) {
        const float a = fabsf(x[i]);
        if (!(a <= QACT_MAX_NORM)) return 0;   /* NaN, infinity or too large */
        amax = a > amax ? a : amax;
    }
    if (amax == 0.0f) {
        for (int i = 0; i < QACT_BLOCK; i++) q[i] = 0;
        *d = 0.0f;
        return 1;
    }
    if (amax < QACT_MIN_NORM) return 0;
    const float inv = qmax / amax;
    for (int i = 0; i < QACT_BLOCK; i++) {
        float v = rintf(x[i] * inv);   /* round half to even, as the SIMD conversions */
        v = v > qmax ? qmax : (v < -qmax ? -qmax : v);
        q[qact_block_slot(i, order)] = (int16_t)v;
    }
    *d = amax / qmax;
    return 1;
}

void qact_quantize(qact *a, int order) {
    const int64_t n_blocks = a->cols / QACT_BLOCK;
    const float qmax = a->bits == 8 ? QACT8_MAX : QACT_MAX;
    a->order = order;
    for (int64_t t = 0; t < a->n_tok; t++) {
        int ok = 1;
        for (int64_t b = 0; b < n_blocks && ok; b++) {
            const int64_t e = t * a->cols + b * QACT_BLOCK;
            ok = quantize_block(a->x + e, a->q + e, a->d + t * n_blocks + b, order, qmax);
        }
        a->exact[t] = (uint8_t)!ok;
    }
}

int qact_one_token_i8(const qact *a) {
    return a->bits == 8 && a->n_tok == 1 && !a->exact[0] && a->cols <= QACT_I8_MAX_COLS;
}

int qact_one_token_split(const qact *a) {
    return a->bits != 8 && a->n_tok == 1 && !a->exact[0] && a->cols <= QACT_I8_MAX_COLS;
}

void qact_narrow_i8(const int16_t *q, int64_t n, int8_t *out) {
    for (int64_t i = 0; i < n; i++) out[i] = (int8_t)q[i];
}

void qact_block_offsets(const int16_t *q, int64_t n_blocks, int64_t n_pad, int32_t offset,
                        int32_t *out) {
    for (int64_t b = 0; b < n_pad; b++) {
        int32_t s = 0;
        for (int i = 0; b < n_blocks && i < QACT_BLOCK; i++) s += q[b * QACT_BLOCK + i];
        out[b] = offset * s;
    }
}

/*
 * kernels_ref.h — scalar reference kernels: the numerical ground truth of edgemoe.
 *
 * Plain C, one element at a time, activations always f32. Weights of any type are first
 * dequantized to f32 (exactly: every stored value is representable in f32), then dot
 * products accumulate in double, so a result is the f32 rounding of an almost exact sum.
 * Faster kernels are tested against these.
 */
#ifndef EDGEMOE_KERNELS_REF_H
#define EDGEMOE_KERNELS_REF_H

#include <stddef.h>
#include <stdint.h>

#include "kernels.h"

/* The reference kernel table ("reference"). */
extern const kernel_table KERNELS_REFERENCE;

/* ---- scalar conversions ---- */

/* IEEE binary16 bits → f32 (exact, including subnormals, infinities and NaNs). */
float half_to_float(uint16_t h);

/* bfloat16 bits → f32 (exact). */
float bf16_to_float(uint16_t b);

/* ---- dequantization: out[cols] = row `row` of t, as f32 (t->type must not be u8) ---- */

void dequantize_row_f32(const tensor *t, int64_t row, float *out);
void dequantize_row_f16(const tensor *t, int64_t row, float *out);
void dequantize_row_bf16(const tensor *t, int64_t row, float *out);
void dequantize_row_q8_0(const tensor *t, int64_t row, float *out);
void dequantize_row_mxfp4(const tensor *t, int64_t row, float *out);

/* Dispatch on t->type to the functions above. */
void dequantize_row(const tensor *t, int64_t row, float *out);

/* ---- matrix-vector products, y[r] = W[r, :] · x for r0 <= r < r1 (matvec_fn of kernels.h) ---- */

void matvec_f32_f32(const tensor *w, int64_t r0, int64_t r1, const float *x, float *y,
                    float *work);
void matvec_f32_f16(const tensor *w, int64_t r0, int64_t r1, const float *x, float *y,
                    float *work);
void matvec_f32_bf16(const tensor *w, int64_t r0, int64_t r1, const float *x, float *y,
                     float *work);
void matvec_f32_q8_0(const tensor *w, int64_t r0, int64_t r1, const float *x, float *y,
                     float *work);
void matvec_f32_mxfp4(const tensor *w, int64_t r0, int64_t r1, const float *x, float *y,
                      float *work);

/* ---- vector operations ---- */

/* Σ a[i]·b[i] over n elements, accumulated in double. */
double dot_f32(const float *a, const float *b, int64_t n);

/* y[i] += x[i] for i < n. */
void vec_add(float *y, const float *x, int64_t n);

/* y[i] += a·x[i] for i < n. */
void vec_axpy(float *y, float a, const float *x, int64_t n);

/* weighted_sum_fn of kernels.h: each head's sums accumulated in acc (double). */
void weighted_sum(float *out, const float *p, size_t p_stride, int nq, const float *rows,
                  size_t stride, int64_t n, int64_t dim, double *acc);

/* out[i] = w[i] · x[i] / sqrt(mean(x²) + eps) for i < n (out may alias x). */
void rmsnorm(float *out, const float *x, const float *w, int64_t n, float eps);

/* x[n] ← softmax(x) in place: exp(x - max) / Σ. n >= 1. */
void softmax(float *x, int64_t n);

/*
 * Rotate each of n_heads heads of x[n_heads, head_dim] in place by the half-split (NeoX)
 * rule: for i < head_dim/2, (x[i], x[i + head_dim/2]) ← (x[i]·c − x[i+h/2]·s, x[i+h/2]·c + x[i]·s)
 * with c = cos_[i], s = sin_[i] (both already scaled by the attention factor).
 */
void rope_rotate(float *x, int n_heads, int head_dim, const float *cos_, const float *sin_);

/*
 * Clamped SwiGLU of gpt-oss on interleaved rows h[2n] = (gate_0, up_0, gate_1, up_1, ...):
 * gate = min(gate, limit), up = clip(up, −limit, limit), out[j] = gate·σ(alpha·gate)·(up + 1).
 */
void swiglu_clamped(float *out, const float *h, int64_t n, float alpha, float limit);

/*
 * Indices of the k largest of x[n] into idx[k], largest first; ties go to the lower index
 * (as a stable descending sort). NaNs are never preferred. 1 <= k <= n.
 */
void topk_indices(const float *x, int n, int k, int *idx);

#endif /* EDGEMOE_KERNELS_REF_H */

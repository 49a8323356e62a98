/*
 * kernels.h — the weight view the kernels read, and the kernel dispatch table.
 *
 * The forward pass calls its hot loops (matrix-vector products, attention dot products and
 * weighted sums, RMSNorm) through a kernel_table chosen at run time:
 *
 *   "reference"  kernels_ref.c    scalar, weights dequantized exactly, sums in double; the
 *                                 numerical ground truth, runs everywhere
 *   "amx"        kernels_amx.c    x86-64 with AMX-INT8 as well: avx512's numbers bit for bit,
 *                                 batches of q8_0 / mxfp4 products on AMX tiles
 *   "avx512"     kernels_avx512.c x86-64 with AVX-512 F/BW/VL + VNNI: the q8_0 and mxfp4
 *                                 integer matmuls; its other entries are avx2's
 *   "avx2"       kernels_avx2.c   x86-64 with AVX2 + FMA + F16C (compiled with a target
 *                                 attribute, so one build runs on any x86-64)
 *   "neon"       kernels_neon.c   arm64 (NEON is baseline there)
 *
 * Every fast kernel dequantizes weights to the exact values the reference uses and accumulates
 * in f32 in its own order. Products with f32/f16/bf16 weights keep activations in f32; products
 * with q8_0 and mxfp4 weights (the matmul entries) first round the activations to int16 blocks
 * (struct qact below: at most 2^-16 of a block's largest element per element; int8 blocks,
 * 2^-8, when the model was opened with activation_bits 8) and sum weight × activation exactly
 * in int32 per block. tests/test_kernels.py states the tolerances.
 *
 * Selection (kernels.c): EDGEMOE_KERNELS=reference|amx|avx512|avx2|neon|auto, read when a model
 * is opened; unset, empty or "auto" picks the best set this CPU runs. An unknown name, or a set
 * this CPU cannot run, makes edgemoe_model_open fail with a message naming the variable.
 */
#ifndef EDGEMOE_KERNELS_H
#define EDGEMOE_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "format.h"

/*
 * A weight tensor as the kernels see it: a read-only view into the mapped file.
 * A 2-D weight W[rows, cols] maps x[cols] to y[rows]; a 1-D tensor has rows = 1.
 * Layout by type (FORMAT.md): plain row-major for f32/f16/bf16; q8_0 rows of cols/32
 * blocks; mxfp4 all rows' 16-byte groups first, then all rows' scale bytes.
 * Nothing is assumed about the alignment of data.
 */
typedef struct tensor {
    const uint8_t *data; /* first byte of the tensor in the mapping */
    int type;            /* EDGEMOE_TYPE_* */
    int64_t rows;
    int64_t cols;
} tensor;

/*
 * y[r] = W[r, :] · x for r0 <= r < r1 (y indexed by the absolute row, so threads splitting the
 * rows write disjoint parts of one y). work: scratch of at least cols floats.
 */
typedef void (*matvec_fn)(const tensor *w, int64_t r0, int64_t r1, const float *x, float *y,
                          float *work);

/*
 * Activations prepared for an integer kernel (kernels_avx2.c): each token's x cut into blocks of
 * 32, each block rounded to int16 with its own f32 scale d = max|x| / M, q = rint(x / d)
 * (computed as rint(x · (M / max|x|))), M = 32767 (bits 16) or 127 (bits 8: q still stored as
 * int16, so every kernel takes both; one-token kernels may use int8 arithmetic then). The
 * relative error this adds to a block's contribution is at most 1/(2M) of its largest element
 * (tests/test_kernels.py states the bound). Within a block, q is stored in the order the weight type's kernel wants
 * (QACT_ORDER_*). A token whose x has a NaN, an infinity or a block with a largest magnitude
 * outside [2^-100, 2^100] (other than an all-zero block) is marked exact: kernels compute it
 * from the f32 x instead, with the exact-weight route of the plain matvec.
 */
enum {
    QACT_ORDER_NATURAL = 0,
    QACT_ORDER_EVEN_ODD = 1,        /* elements 0, 2, .., 30, then 1, 3, .., 31 */
    QACT_ORDER_EVEN_ODD_HALVES = 2  /* 0, 2, .., 14, 1, 3, .., 15, then 16, 18, .., 30, 17, .., 31 */
};

typedef struct qact {
    const float *x;      /* [n_tok, cols] f32, as given */
    int16_t *q;          /* [n_tok, cols] */
    float *d;            /* [n_tok, cols / 32] block scales */
    uint8_t *exact;      /* [n_tok] 1: use x, not q */
    int64_t n_tok;
    int64_t cols;
    int order;           /* QACT_ORDER_* the q were written in */
    int bits;            /* 16 (or 0): q within ±32767; 8: within ±127 (see qact_quantize) */
} qact;

#define QACT_BLOCK 32
#define QACT_MAX 32767.0f          /* int16 blocks: q within ±QACT_MAX */
#define QACT8_MAX 127.0f           /* int8 blocks (bits 8) */
#define QACT_MIN_NORM 0x1p-100f    /* smaller block maxima (but 0) take the exact route */
#define QACT_MAX_NORM 0x1p100f     /* so do larger ones, NaN and infinities */

/* Fill a->q, a->d, a->exact from a->x (n_tok, cols, bits set; cols a multiple of 32). */
void qact_quantize(qact *a, int order);

/* Position, within a block stored in `order`, of element i (< 32) of the block. */
int qact_block_slot(int i, int order);

/* Longest row the one-token int8 kernels take (their int8 copy of q lives on the stack);
 * longer rows take the int16 kernels. */
#define QACT_I8_MAX_COLS 16384

/* Whether a is one token of int8-range q (bits 8), not marked exact, of at most
 * QACT_I8_MAX_COLS columns: what the one-token int8 kernels of every set require. */
int qact_one_token_i8(const qact *a);

/* The same for one token of int16 q (bits 16 or 0): what the kernels that take q apart into
 * its low and high bytes require (the avx2 set's mxfp4 product). */
int qact_one_token_split(const qact *a);

/* q[0..n) (each within ±127) as int8, in the same order. */
void qact_narrow_i8(const int16_t *q, int64_t n, int8_t *out);

/* out[b] = offset · Σ q of block b (32 values) for b < n_blocks, 0 for n_blocks <= b < n_pad:
 * what an int8 kernel whose weights are shifted by `offset` (to make them unsigned) subtracts
 * from its block sums. */
void qact_block_offsets(const int16_t *q, int64_t n_blocks, int64_t n_pad, int32_t offset,
                        int32_t *out);

/*
 * Y[t, r] = W[r, :] · X[t, :] for t < x->n_tok and r0 <= r < r1, into y[t·ldy + r], from
 * activations prepared by qact_quantize in the order the set's qact_order[type] names.
 */
typedef void (*matmul_fn)(const tensor *w, int64_t r0, int64_t r1, const qact *x, float *y,
                          int64_t ldy);

/* Σ a[i]·b[i] for i < n (the attention scores q·k). */
typedef double (*dot_fn)(const float *a, const float *b, int64_t n);

/*
 * out[i·out_stride + j] = (float)(dot(q + i·dim, keys + j·stride, dim) · scale) for i < nq,
 * j < n: the attention scores of nq query heads that share one key head, over n cached keys,
 * in one call (the set's dot; the same numbers as calling it per query and key).
 */
typedef void (*scores_fn)(float *out, size_t out_stride, const float *q, int nq, const float *keys,
                          size_t stride, int64_t n, int64_t dim, double scale);

/*
 * out[i·dim + d] = Σ_j p[i·p_stride + j] · rows[j·stride + d] for i < nq, d < dim, j < n
 * (attention: the softmax-weighted sums of the value rows nq query heads share; each head's
 * numbers do not depend on nq). acc: scratch of dim doubles (the reference accumulates in it).
 */
typedef void (*weighted_sum_fn)(float *out, const float *p, size_t p_stride, int nq,
                                const float *rows, size_t stride, int64_t n, int64_t dim,
                                double *acc);

/* qact_quantize's numbers (the same q, d and exact bit for bit), faster where the set can. */
typedef void (*quantize_fn)(qact *a, int order);

/* x[n] ← softmax(x) in place, n >= 1: exp(x − max) / Σ (kernels_ref.c's softmax, up to the
 * set's exp and order of summation). */
typedef void (*softmax_fn)(float *x, int64_t n);

/* out[j] = gpt-oss's clamped SwiGLU of gate h[2j] and up h[2j+1] for j < n (kernels_ref.c's
 * swiglu_clamped states the formula; a set may differ in its exp). */
typedef void (*swiglu_fn)(float *out, const float *h, int64_t n, float alpha, float limit);

/* out[i] = w[i] · x[i] / sqrt(mean(x²) + eps) for i < n (out may alias x). */
typedef void (*rmsnorm_fn)(float *out, const float *x, const float *w, int64_t n, float eps);

/* One set of kernels. Every entry is non-NULL except matvec of a non-weight type (u8) and the
 * matmul entries a set does not have. */
typedef struct kernel_table {
    const char *name;                       /* "reference", "amx", "avx512", "avx2", "neon" */
    matvec_fn matvec[EDGEMOE_TYPE_COUNT];   /* by weight type */
    /* integer kernels over prepared activations, by weight type; NULL: use matvec per token */
    matmul_fn matmul[EDGEMOE_TYPE_COUNT];
    int qact_order[EDGEMOE_TYPE_COUNT];     /* QACT_ORDER_* each matmul wants */
    quantize_fn quantize;                   /* prepares the matmul's activations */
    dot_fn dot;
    scores_fn scores;
    weighted_sum_fn weighted_sum;
    rmsnorm_fn rmsnorm;
    softmax_fn softmax;                     /* attention's */
    swiglu_fn swiglu;                       /* the experts' */
} kernel_table;

/*
 * The kernel set named by `name` ("reference", "amx", "avx512", "avx2", "neon", or "auto" / NULL /
 * "" for the best this CPU runs) into *out. Returns EDGEMOE_OK; EDGEMOE_ERR_ARG for a name that is not a
 * kernel set; EDGEMOE_ERR_UNSUPPORTED for a set this build or CPU cannot run (*out NULL then).
 */
int kernels_find(const char *name, const kernel_table **out);

/*
 * The kernel set EDGEMOE_KERNELS asks for (see kernels_find) into *out. Returns EDGEMOE_OK, or
 * EDGEMOE_ERR_ARG for a name that is not a kernel set or a set that cannot run here, with a
 * message naming the variable, its value and the sets this CPU runs in err (err_len bytes,
 * may be NULL); *out is NULL then.
 */
int kernels_from_env(const kernel_table **out, char *err, size_t err_len);

#endif /* EDGEMOE_KERNELS_H */

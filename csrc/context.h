/*
 * context.h — the inside of an edgemoe_context (KV cache + scratch), and the forward pass
 * that uses it (forward.c).
 */
#ifndef EDGEMOE_CONTEXT_H
#define EDGEMOE_CONTEXT_H

#include <stdint.h>

#include "edgemoe.h"
#include "kernels.h"
#include "model.h"

#define CONTEXT_MAX_N_CTX (1 << 20)   /* positions; keeps every cache index far inside int64 */

/*
 * Shapes below: H = n_embd, I = n_ff, E = n_expert, K = n_expert_used, nh/nkv heads of hd,
 * Q = nh·hd, KV = nkv·hd, D = max(H, Q, 2I, E) (the widest row or vector the model has).
 */
struct edgemoe_context {
    edgemoe_model *model;
    const kernel_table *kernels;
    int32_t n_ctx;
    int32_t n_past;
    int32_t n_threads;

    /* KV cache: keys after RoPE, and values, of every position < n_past */
    float *k_cache;      /* [n_layer, n_ctx, KV] */
    float *v_cache;      /* [n_layer, n_ctx, KV] */

    /* RoPE */
    float *inv_freq;     /* [hd/2] */
    float rope_factor;   /* attention factor multiplying cos and sin */
    float *rope_cos;     /* [hd/2] cos(pos · inv_freq) · factor of the current position */
    float *rope_sin;     /* [hd/2] */

    /* activations of the token being evaluated */
    float *x;            /* [H] residual stream */
    float *xn;           /* [H] x after an RMSNorm */
    float *q;            /* [Q] queries */
    float *att;          /* [Q] attention output, heads concatenated */
    double *att_acc;     /* [hd] one head's P·V accumulator */
    float *scores;       /* [n_ctx + 1] one head's scores over keys, then the sink */
    float *sinks;        /* [nh] */
    float *proj;         /* [H] output of o_proj, or of one expert */
    float *moe;          /* [H] Σ weight · expert output */
    float *router;       /* [E] router logits */
    int *chosen;         /* [K] experts picked by the router, best first */
    float *gate_weight;  /* [K] softmax over the chosen logits */
    float *gate_up;      /* [2I] expert's first projection, gate/up interleaved */
    float *act;          /* [I] SwiGLU activation */
    float *vec;          /* [D] a 1-D weight (bias or norm) dequantized */
    float *work;         /* [D] a weight row dequantized (kernel scratch) */

    char error[512];     /* message of the last failed call, "" if none */
};

/*
 * Run one token through the model at position pos (< n_ctx), writing its keys and values
 * into the cache at pos. Positions < pos must already be in the cache. If logits is not
 * NULL, write the n_vocab output logits there. The arguments are trusted (checked by
 * edgemoe_context_eval).
 */
void forward_token(edgemoe_context *ctx, int32_t token, int32_t pos, float *logits);

#endif /* EDGEMOE_CONTEXT_H */

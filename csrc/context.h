/*
 * context.h — the inside of an edgemoe_context (KV cache + scratch), and the forward pass
 * that uses it (forward.c).
 */
#ifndef EDGEMOE_CONTEXT_H
#define EDGEMOE_CONTEXT_H

#include <stdatomic.h>
#include <stdint.h>

#include "edgemoe.h"
#include "kernels.h"
#include "model.h"
#include "pool.h"

#define CONTEXT_MAX_N_CTX (1 << 20)   /* positions; keeps every cache index far inside int64 */
#define CONTEXT_MAX_THREADS 1024

#define CONTEXT_BATCH 512  /* tokens evaluated together (a prompt goes in chunks of this) */

/*
 * Shapes below: B = CONTEXT_BATCH, H = n_embd, I = n_ff, E = n_expert, K = n_expert_used,
 * nh/nkv heads of hd, Q = nh·hd, KV = nkv·hd, D = max(H, Q, 2I, E) (the widest row or vector
 * the model has), T = threads.
 */
struct edgemoe_context {
    edgemoe_model *model;
    const kernel_table *kernels;
    int32_t n_ctx;
    int32_t n_past;
    int32_t n_threads;
    int32_t act_bits;    /* 16 or 8: how the integer kernels round activations (qact) */
    pool *pool;          /* T threads, the caller included (pool.h) */

    /* KV cache: keys after RoPE, and values, of every position < n_past */
    float *k_cache;      /* [n_layer, n_ctx, KV] */
    float *v_cache;      /* [n_layer, n_ctx, KV] */

    /* RoPE */
    float *inv_freq;     /* [hd/2] */
    float rope_factor;   /* attention factor multiplying cos and sin */
    float *rope_cos;     /* [B, hd/2] cos(pos · inv_freq) · factor of each token's position */
    float *rope_sin;     /* [B, hd/2] */

    /* activations of the tokens being evaluated, one row per token */
    float *x;            /* [B, H] residual stream */
    float *xn;           /* [B, H] x after an RMSNorm */
    float *q;            /* [B, Q] queries */
    float *att;          /* [B, Q] attention output, heads concatenated */
    float *proj;         /* [B, H] output of o_proj; then Σ weight · expert output */
    float *router;       /* [B, E] router logits */
    int *chosen;         /* [B, K] experts picked by the router, best first */
    float *gate_weight;  /* [B, K] softmax over the chosen logits */
    float *expert_out;   /* [B, K, H] output of the k-th chosen expert of each token */
    int *expert_tokens;  /* [B] tokens routed to the expert being applied */
    int *expert_slots;   /* [B] which of the token's K choices it is */
    int *expert_list;    /* [E] the distinct experts a layer's batch chose, in run order */
    uint8_t *expert_seen;/* [E] */
    float *expert_in;    /* [B, H] their normalized x, gathered */
    float *gate_up;      /* [B, 2I] expert's first projection, gate/up interleaved */
    float *act;          /* [B, I] SwiGLU activation */
    float *vec;          /* [D] a 1-D weight (bias or norm) dequantized */
    float *sinks;        /* [nh] the layer's attention sinks */
    size_t width;        /* D */

    /* activations quantized for the integer kernels (kernels.h: struct qact) */
    int16_t *qa_q;       /* [B, D] */
    float *qa_d;         /* [B, D/32] */
    uint8_t *qa_exact;   /* [B] */

    /* per thread */
    float *work;         /* [T, D] kernel scratch */
    float *scores;       /* [T, G, n_ctx + 1] a key head's G query heads' scores over keys, then the sink */
    double *att_acc;     /* [T, hd] one head's P·V accumulator */
    float *t_gate_up;    /* [T, 2I] one token's expert, computed whole by one thread */
    float *t_act;        /* [T, I] */
    int16_t *t_qa_q;     /* [T, D] */
    float *t_qa_d;       /* [T, D/32 + 1] */

    /* a read of the mapping faulted (mapguard.h): set by any thread, read after each job */
    atomic_int map_fault;
    struct mapguard *batch_guard;   /* the caller's guard around the batch being evaluated */

    char error[512];     /* message of the last failed call, "" if none */
};

/*
 * Run n tokens (1 <= n <= CONTEXT_BATCH) through the model at positions pos .. pos+n−1
 * (< n_ctx), writing their keys and values into the cache. Positions < pos must already be in
 * the cache. logits_mode 2: the n rows of logits; 1: the last token's row; 0: none (logits may
 * be NULL). The arguments are trusted (checked by edgemoe_context_eval). The result does not
 * depend on n: a batch gives the same numbers as its tokens one at a time. Returns EDGEMOE_OK,
 * or EDGEMOE_ERR_IO with the message in ctx->error when the file cannot be read (under a
 * memory budget; the KV cache beyond pos is then undefined).
 */
int forward_batch(edgemoe_context *ctx, const int32_t *tokens, int32_t n, int32_t pos,
                  float *logits, int32_t logits_mode);

#endif /* EDGEMOE_CONTEXT_H */

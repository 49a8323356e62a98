/*
 * context.c — inference contexts: allocation of the KV cache and scratch, argument checks
 * of edgemoe_context_eval, truncation. The arithmetic is in forward.c.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "context.h"
#include "errbuf.h"
#include "rope.h"

/* calloc of n elements of size bytes, NULL on overflow or failure (n may be 0). */
static void *array_new(size_t n, size_t size) {
    return calloc(n ? n : 1, size);
}

/* Largest of the model's row lengths and 1-D vector lengths: D in context.h. */
static size_t widest_vector(const hparams *hp) {
    size_t d = (size_t)hp->n_embd;
    size_t q = (size_t)hp->n_head * (size_t)hp->head_dim;
    size_t gate_up = 2 * (size_t)hp->n_ff;
    if (q > d) d = q;
    if (gate_up > d) d = gate_up;
    if ((size_t)hp->n_expert > d) d = (size_t)hp->n_expert;
    return d;
}

/* Allocate every buffer of ctx (model, n_ctx, n_threads set). Returns 0 if any failed. */
static int context_alloc(edgemoe_context *ctx) {
    const hparams *hp = &ctx->model->hp;
    const size_t H = (size_t)hp->n_embd, I = (size_t)hp->n_ff, hd = (size_t)hp->head_dim;
    const size_t Q = (size_t)hp->n_head * hd, KV = (size_t)hp->n_head_kv * hd;
    const size_t E = (size_t)hp->n_expert, K = (size_t)hp->n_expert_used;
    const size_t D = widest_vector(hp), B = CONTEXT_BATCH, T = (size_t)ctx->n_threads;
    /* n_layer <= 2^10, n_ctx <= 2^20, KV <= 2^20: the cache size fits 64 bits */
    const uint64_t cache = (uint64_t)hp->n_layer * (uint64_t)ctx->n_ctx * (uint64_t)KV;
    if (cache > SIZE_MAX / sizeof(float)) return 0;
    ctx->k_cache = array_new((size_t)cache, sizeof(float));
    ctx->v_cache = array_new((size_t)cache, sizeof(float));
    ctx->inv_freq = array_new(hd / 2, sizeof(float));
    ctx->rope_cos = array_new(B * hd / 2, sizeof(float));
    ctx->rope_sin = array_new(B * hd / 2, sizeof(float));
    ctx->x = array_new(B * H, sizeof(float));
    ctx->xn = array_new(B * H, sizeof(float));
    ctx->q = array_new(B * Q, sizeof(float));
    ctx->att = array_new(B * Q, sizeof(float));
    ctx->proj = array_new(B * H, sizeof(float));
    ctx->router = array_new(B * E, sizeof(float));
    ctx->chosen = array_new(B * K, sizeof(int));
    ctx->gate_weight = array_new(B * K, sizeof(float));
    ctx->expert_out = array_new(B * K * H, sizeof(float));
    ctx->expert_tokens = array_new(B, sizeof(int));
    ctx->expert_slots = array_new(B, sizeof(int));
    ctx->expert_list = array_new(E, sizeof(int));
    ctx->expert_seen = array_new(E, 1);
    ctx->expert_in = array_new(B * H, sizeof(float));
    ctx->gate_up = array_new(B * 2 * I, sizeof(float));
    ctx->act = array_new(B * I, sizeof(float));
    ctx->vec = array_new(D, sizeof(float));
    ctx->sinks = array_new((size_t)hp->n_head, sizeof(float));
    ctx->width = D;
    ctx->qa_q = array_new(B * D, sizeof(int16_t));
    ctx->qa_d = array_new(B * (D / 32 + 1), sizeof(float));
    ctx->qa_exact = array_new(B, 1);
    ctx->work = array_new(T * D, sizeof(float));
    const size_t group = (size_t)(hp->n_head / hp->n_head_kv);   /* query heads per key head */
    ctx->scores = array_new(T * group * ((size_t)ctx->n_ctx + 1), sizeof(float));
    ctx->att_acc = array_new(T * hd, sizeof(double));
    ctx->t_gate_up = array_new(T * 2 * I, sizeof(float));
    ctx->t_act = array_new(T * I, sizeof(float));
    ctx->t_qa_q = array_new(T * D, sizeof(int16_t));
    ctx->t_qa_d = array_new(T * (D / 32 + 1), sizeof(float));
    return ctx->k_cache && ctx->v_cache && ctx->inv_freq && ctx->rope_cos && ctx->rope_sin && ctx->x
           && ctx->xn && ctx->q && ctx->att && ctx->proj && ctx->router && ctx->chosen
           && ctx->gate_weight && ctx->expert_out && ctx->expert_tokens && ctx->expert_slots && ctx->expert_list && ctx->expert_seen
           && ctx->expert_in && ctx->gate_up && ctx->act && ctx->vec && ctx->sinks && ctx->qa_q && ctx->qa_d
           && ctx->qa_exact && ctx->work && ctx->scores && ctx->att_acc && ctx->t_gate_up
           && ctx->t_act && ctx->t_qa_q && ctx->t_qa_d;
}

int edgemoe_context_new(edgemoe_model *model, int32_t n_ctx, int32_t n_threads,
                        edgemoe_context **out, char *err, size_t err_len) {
    if (err && err_len) err[0] = '\0';
    if (!out) return error_write(err, err_len, EDGEMOE_ERR_ARG, "out must not be NULL");
    *out = NULL;
    if (!model) return error_write(err, err_len, EDGEMOE_ERR_ARG, "model must not be NULL");
    if (n_threads > CONTEXT_MAX_THREADS)
        return error_write(err, err_len, EDGEMOE_ERR_ARG, "n_threads %d is more than %d", n_threads,
                           CONTEXT_MAX_THREADS);
    if (n_ctx < 1 || n_ctx > CONTEXT_MAX_N_CTX)
        return error_write(err, err_len, EDGEMOE_ERR_ARG, "n_ctx %d is out of range [1, %d]", n_ctx,
                           CONTEXT_MAX_N_CTX);
    edgemoe_context *ctx = calloc(1, sizeof *ctx);
    if (!ctx) return error_write(err, err_len, EDGEMOE_ERR_NOMEM, "out of memory for a context");
    ctx->model = model;
    ctx->kernels = model->kernels;
    ctx->n_ctx = n_ctx;
    ctx->n_threads = n_threads > 0 ? n_threads : 1;
    ctx->act_bits = model->act_bits;
    if (!context_alloc(ctx)) {
        const hparams *hp = &model->hp;
        double mib = 2.0 * hp->n_layer * (double)n_ctx * hp->n_head_kv * hp->head_dim * 4 / 1048576.0;
        edgemoe_context_free(ctx);
        return error_write(err, err_len, EDGEMOE_ERR_NOMEM,
                           "out of memory for a context of %d positions (KV cache %.1f MiB)", n_ctx, mib);
    }
    ctx->pool = pool_new(ctx->n_threads);
    if (!ctx->pool) {
        edgemoe_context_free(ctx);
        return error_write(err, err_len, EDGEMOE_ERR_NOMEM, "could not start %d worker threads",
                           n_threads - 1);
    }
    ctx->rope_factor = rope_inv_freq(&model->hp, ctx->inv_freq);
    *out = ctx;
    return EDGEMOE_OK;
}

void edgemoe_context_free(edgemoe_context *ctx) {
    if (!ctx) return;
    pool_free(ctx->pool);
    void *buffers[] = {
        ctx->k_cache, ctx->v_cache, ctx->inv_freq, ctx->rope_cos, ctx->rope_sin, ctx->x, ctx->xn,
        ctx->q, ctx->att, ctx->proj, ctx->router, ctx->chosen, ctx->gate_weight, ctx->expert_out,
        ctx->expert_tokens, ctx->expert_slots, ctx->expert_list, ctx->expert_seen, ctx->expert_in, ctx->gate_up, ctx->act, ctx->vec,
        ctx->sinks, ctx->qa_q, ctx->qa_d, ctx->qa_exact, ctx->work, ctx->scores, ctx->att_acc,
        ctx->t_gate_up, ctx->t_act, ctx->t_qa_q, ctx->t_qa_d,
    };
    for (size_t i = 0; i < sizeof buffers / sizeof buffers[0]; i++) free(buffers[i]);
    free(ctx);
}

/* Record the message of a failed call on ctx. Returns status. */
static int context_fail(edgemoe_context *ctx, int status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

static int context_fail(edgemoe_context *ctx, int status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx->error, sizeof ctx->error, fmt, ap);
    va_end(ap);
    return status;
}

/* Every check of edgemoe_context_eval, before any state changes. */
static int eval_check(edgemoe_context *ctx, const int32_t *tokens, int32_t n_tokens,
                      const float *logits, int32_t logits_mode) {
    const int32_t n_vocab = ctx->model->hp.n_vocab;
    if (logits_mode < 0 || logits_mode > 2)
        return context_fail(ctx, EDGEMOE_ERR_ARG, "logits_mode %d is not 0, 1 or 2", logits_mode);
    if (n_tokens < 1)
        return context_fail(ctx, EDGEMOE_ERR_ARG, "n_tokens %d must be >= 1", n_tokens);
    if (!tokens) return context_fail(ctx, EDGEMOE_ERR_ARG, "tokens must not be NULL");
    if (logits_mode != 0 && !logits)
        return context_fail(ctx, EDGEMOE_ERR_ARG, "logits must not be NULL with logits_mode %d",
                            logits_mode);
    for (int32_t i = 0; i < n_tokens; i++) {
        if (tokens[i] < 0 || tokens[i] >= n_vocab)
            return context_fail(ctx, EDGEMOE_ERR_ARG, "token id %d at index %d is out of range [0, %d)",
                                tokens[i], i, n_vocab);
    }
    if ((int64_t)ctx->n_past + n_tokens > ctx->n_ctx)
        return context_fail(ctx, EDGEMOE_ERR_CONTEXT_FULL, "context full: n_past %d + %d tokens > n_ctx %d",
                            ctx->n_past, n_tokens, ctx->n_ctx);
    return EDGEMOE_OK;
}

int edgemoe_context_eval(edgemoe_context *ctx, const int32_t *tokens, int32_t n_tokens,
                         float *logits, int32_t logits_mode) {
    if (!ctx) return EDGEMOE_ERR_ARG;
    ctx->error[0] = '\0';
    int rc = eval_check(ctx, tokens, n_tokens, logits, logits_mode);
    if (rc) return rc;
    rc = model_check_file(ctx->model, ctx->error, sizeof ctx->error);
    if (rc) return rc;
    const size_t n_vocab = (size_t)ctx->model->hp.n_vocab;
    for (int32_t i = 0; i < n_tokens; i += CONTEXT_BATCH) {
        const int32_t n = n_tokens - i < CONTEXT_BATCH ? n_tokens - i : CONTEXT_BATCH;
        const int last_chunk = i + n == n_tokens;
        if (logits_mode == 2)
            rc = forward_batch(ctx, tokens + i, n, ctx->n_past + i, logits + (size_t)i * n_vocab, 2);
        else
            rc = forward_batch(ctx, tokens + i, n, ctx->n_past + i, logits,
                               logits_mode == 1 && last_chunk ? 1 : 0);
        if (rc) return rc;   /* message in ctx->error; n_past unchanged */
    }
    ctx->n_past += n_tokens;
    return EDGEMOE_OK;
}

int32_t edgemoe_context_n_past(const edgemoe_context *ctx) {
    return ctx ? ctx->n_past : 0;
}

int32_t edgemoe_context_n_ctx(const edgemoe_context *ctx) {
    return ctx ? ctx->n_ctx : 0;
}

int edgemoe_context_truncate(edgemoe_context *ctx, int32_t n_past) {
    if (!ctx) return EDGEMOE_ERR_ARG;
    ctx->error[0] = '\0';
    if (n_past < 0 || n_past > ctx->n_past)
        return context_fail(ctx, EDGEMOE_ERR_ARG, "truncate: n_past %d is out of range [0, %d]", n_past,
                            ctx->n_past);
    ctx->n_past = n_past;
    return EDGEMOE_OK;
}

const char *edgemoe_context_error(const edgemoe_context *ctx) {
    return ctx ? ctx->error : "";
}

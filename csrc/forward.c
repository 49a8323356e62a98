/*
 * forward.c — the gpt-oss forward pass for one token, in f32 (ORACLES.md §3.4).
 *
 *   x = embed[token]
 *   per layer:  x += o_proj(attention(rope(q), rope(k), v over the cache, sinks))   (of rmsnorm(x))
 *               x += Σ_top-k softmax(router)_e · expert_e(rmsnorm(x))
 *   logits = lm_head(rmsnorm(x))
 *
 * A batch is evaluated one token at a time (edgemoe_context_eval): token i sees the cache
 * entries of every earlier position, which is exactly causal attention over the batch.
 */
#include <math.h>
#include <string.h>

#include "context.h"
#include "kernels_ref.h"

/* ---------------------------------------------------------------------------------------
 * Building blocks
 */

/* y[rows] = W x (+ b): the matvec through the kernel table, then the bias. b may be NULL. */
static void linear(edgemoe_context *ctx, const tensor *w, const tensor *b, const float *x, float *y) {
    ctx->kernels->matvec[w->type](w, x, y, ctx->work);
    if (b) {
        dequantize_row(b, 0, ctx->vec);
        vec_add(y, ctx->vec, w->rows);
    }
}

/* out[H] = rmsnorm(x[H]) with weight w. */
static void norm(edgemoe_context *ctx, const tensor *w, const float *x, float *out) {
    dequantize_row(w, 0, ctx->vec);
    ctx->kernels->rmsnorm(out, x, ctx->vec, w->cols, ctx->model->hp.rms_norm_eps);
}

/* Row of the cache for (layer, pos): [KV] floats. */
static float *kv_row(const edgemoe_context *ctx, float *cache, int32_t layer, int32_t pos) {
    const hparams *hp = &ctx->model->hp;
    const size_t kv_dim = (size_t)hp->n_head_kv * (size_t)hp->head_dim;
    return cache + ((size_t)layer * (size_t)ctx->n_ctx + (size_t)pos) * kv_dim;
}

/* cos and sin of pos · inv_freq (angles in f32, as transformers), times the attention factor. */
static void rope_angles(edgemoe_context *ctx, int32_t pos) {
    for (int i = 0; i < ctx->model->hp.head_dim / 2; i++) {
        const float angle = (float)pos * ctx->inv_freq[i];
        ctx->rope_cos[i] = cosf(angle) * ctx->rope_factor;
        ctx->rope_sin[i] = sinf(angle) * ctx->rope_factor;
    }
}

/* ---------------------------------------------------------------------------------------
 * Attention
 */

/*
 * Query head h at position pos attends over cached positions first..pos plus its sink:
 * out[hd] = Σ_t softmax([q·k_t / sqrt(hd) ..., sink])_t · v_t   (the sink column dropped).
 */
static void attention_head(edgemoe_context *ctx, int32_t layer, int h, int32_t first, int32_t pos,
                           float *out) {
    const hparams *hp = &ctx->model->hp;
    const int hd = hp->head_dim;
    const int kv_head = h / (hp->n_head / hp->n_head_kv);
    const float *q = ctx->q + (size_t)h * (size_t)hd;
    const double scale = 1.0 / sqrt((double)hd);
    const int32_t n = pos - first + 1;
    for (int32_t j = 0; j < n; j++) {
        const float *k = kv_row(ctx, ctx->k_cache, layer, first + j) + (size_t)kv_head * (size_t)hd;
        ctx->scores[j] = (float)(ctx->kernels->dot(q, k, hd) * scale);
    }
    ctx->scores[n] = ctx->sinks[h];
    softmax(ctx->scores, n + 1);
    /* the value rows of positions first..pos are kv_dim floats apart in the cache */
    const float *v = kv_row(ctx, ctx->v_cache, layer, first) + (size_t)kv_head * (size_t)hd;
    const size_t kv_dim = (size_t)hp->n_head_kv * (size_t)hd;
    ctx->kernels->weighted_sum(out, ctx->scores, v, kv_dim, n, hd, ctx->att_acc);
}

/* x += o_proj(attention(rmsnorm(x))) for one layer; stores this position's k and v. */
static void forward_attention(edgemoe_context *ctx, int32_t layer, int32_t pos) {
    const hparams *hp = &ctx->model->hp;
    const layer_weights *L = &ctx->model->layers[layer];
    float *k = kv_row(ctx, ctx->k_cache, layer, pos);   /* [KV] */
    float *v = kv_row(ctx, ctx->v_cache, layer, pos);   /* [KV] */
    norm(ctx, &L->attn_norm, ctx->x, ctx->xn);
    linear(ctx, &L->wq, &L->bq, ctx->xn, ctx->q);
    linear(ctx, &L->wk, &L->bk, ctx->xn, k);
    linear(ctx, &L->wv, &L->bv, ctx->xn, v);
    rope_rotate(ctx->q, hp->n_head, hp->head_dim, ctx->rope_cos, ctx->rope_sin);
    rope_rotate(k, hp->n_head_kv, hp->head_dim, ctx->rope_cos, ctx->rope_sin);
    dequantize_row(&L->sinks, 0, ctx->sinks);
    /* a sliding layer sees the W keys ending at pos (itself included) */
    int32_t first = 0;
    if (L->sliding && pos >= hp->sliding_window) first = pos - hp->sliding_window + 1;
    for (int h = 0; h < hp->n_head; h++)
        attention_head(ctx, layer, h, first, pos, ctx->att + (size_t)h * (size_t)hp->head_dim);
    linear(ctx, &L->wo, &L->bo, ctx->att, ctx->proj);
    vec_add(ctx->x, ctx->proj, hp->n_embd);
}

/* ---------------------------------------------------------------------------------------
 * Mixture of experts
 */

/* out[H] = down(swiglu(gate_up(xn) + b1)) + b2 for one expert. */
static void expert_apply(edgemoe_context *ctx, const expert_weights *e, const float *xn, float *out) {
    const hparams *hp = &ctx->model->hp;
    linear(ctx, &e->gate_up, &e->gate_up_bias, xn, ctx->gate_up);
    swiglu_clamped(ctx->act, ctx->gate_up, hp->n_ff, hp->swiglu_alpha, hp->swiglu_limit);
    linear(ctx, &e->down, &e->down_bias, ctx->act, out);
}

/* x += Σ_k w_k · expert_k(rmsnorm(x)): top-k of the router logits, softmax over those k. */
static void forward_moe(edgemoe_context *ctx, int32_t layer) {
    const hparams *hp = &ctx->model->hp;
    const layer_weights *L = &ctx->model->layers[layer];
    const int k = hp->n_expert_used;
    norm(ctx, &L->mlp_norm, ctx->x, ctx->xn);
    linear(ctx, &L->router, &L->router_bias, ctx->xn, ctx->router);
    topk_indices(ctx->router, hp->n_expert, k, ctx->chosen);
    for (int j = 0; j < k; j++) ctx->gate_weight[j] = ctx->router[ctx->chosen[j]];
    softmax(ctx->gate_weight, k);
    memset(ctx->moe, 0, (size_t)hp->n_embd * sizeof *ctx->moe);
    for (int j = 0; j < k; j++) {
        expert_apply(ctx, &L->experts[ctx->chosen[j]], ctx->xn, ctx->proj);
        vec_axpy(ctx->moe, ctx->gate_weight[j], ctx->proj, hp->n_embd);
    }
    vec_add(ctx->x, ctx->moe, hp->n_embd);
}

/* ---------------------------------------------------------------------------------------
 * One token
 */

void forward_token(edgemoe_context *ctx, int32_t token, int32_t pos, float *logits) {
    const edgemoe_model *m = ctx->model;
    dequantize_row(&m->embed, token, ctx->x);
    rope_angles(ctx, pos);
    for (int32_t l = 0; l < m->hp.n_layer; l++) {
        forward_attention(ctx, l, pos);
        forward_moe(ctx, l);
    }
    if (!logits) return;
    norm(ctx, &m->norm, ctx->x, ctx->xn);
    linear(ctx, &m->lm_head, NULL, ctx->xn, logits);
}

/*
 * forward.c — the gpt-oss forward pass for a batch of tokens, in f32 (ORACLES.md §3.4).
 *
 *   x = embed[token]
 *   per layer:  x += o_proj(attention(rope(q), rope(k), v over the cache, sinks))   (of rmsnorm(x))
 *               x += Σ_top-k softmax(router)_e · expert_e(rmsnorm(x))
 *   logits = lm_head(rmsnorm(x))
 *
 * Batching. The n tokens of a batch go through each matrix together: the integer kernels decode
 * a weight row once for all of them, and the experts are applied expert by expert to the tokens
 * routed to each, so an expert's weights are read once per batch, not once per token. Keys and
 * values of the whole batch enter the cache before attention, and token i attends to positions
 * up to its own: exactly causal attention. Every per-token sum keeps the order of the one-token
 * path (the experts' outputs are summed in the router's order, not in expert order), so a batch
 * gives the same numbers as its tokens one at a time.
 *
 * Threads. Matrix products split their rows, and attention its (token, head) pairs, between the
 * context's pool threads (pool.h); the cheap vector steps run on the calling thread.
 *
 * A file truncated under us. Every thread reads the mapping inside a guard (mapguard.h): the
 * caller around the whole batch, each pool thread around its share of a job. A SIGBUS there
 * makes the batch fail with an error naming the file, once every thread is out of the job.
 */
#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <stdatomic.h>
#include <string.h>

#include "context.h"
#include "expert_cache.h"
#include "errbuf.h"
#include "kernels_ref.h"
#include "mapguard.h"
#include "residency.h"

/* Matrices with fewer rows than this run on one thread: a job costs a few microseconds. */
#define PARALLEL_MIN_ROWS 64

/* ---------------------------------------------------------------------------------------
 * Pool jobs under a guard
 */

typedef struct guarded_job {
    edgemoe_context *ctx;
    pool_fn fn;
    void *arg;
} guarded_job;

/* Share i of the job, inside a guard over the mapping: a fault ends the share early and marks
 * the batch as failed. */
static void guarded_share(void *arg, int i, int n) {
    const guarded_job *job = arg;
    const edgemoe_model *m = job->ctx->model;
    mapguard g;
    mapguard_push(&g, m->map, m->map_size);
    if (sigsetjmp(g.env, 0) == 0) job->fn(job->arg, i, n);
    else atomic_store_explicit(&job->ctx->map_fault, 1, memory_order_relaxed);
    mapguard_leave(&g);
}

/* pool_run(fn, arg) on the context's threads; if a share faulted on the mapping, leave the
 * batch (to forward_batch's guard) now that every thread is out of the job. */
static void run(edgemoe_context *ctx, pool_fn fn, void *arg) {
    guarded_job job = {.ctx = ctx, .fn = fn, .arg = arg};
    pool_run(ctx->pool, guarded_share, &job);
    if (atomic_load_explicit(&ctx->map_fault, memory_order_relaxed))
        siglongjmp(ctx->batch_guard->env, 1);
}

/* ---------------------------------------------------------------------------------------
 * Matrix products over a batch
 */

typedef struct linear_job {
    edgemoe_context *ctx;
    const tensor *w;
    const float *x;      /* [n, cols] */
    const qact *qa;      /* prepared x, or NULL: matvec per token */
    float *y;            /* y[t·ldy + r] */
    int64_t ldy;
    int32_t n;
    const float *bias;   /* [rows] added to every token's y, or NULL */
} linear_job;

/* Rows [r0, r1) of share i of n: equal shares, boundaries on multiples of 4 rows. */
static void share_rows(int64_t rows, int i, int n, int64_t *r0, int64_t *r1) {
    const int64_t quads = (rows + 3) / 4;
    const int64_t a = quads * i / n * 4, b = quads * (i + 1) / n * 4;
    *r0 = a < rows ? a : rows;
    *r1 = b < rows ? b : rows;
}

static void linear_share(void *arg, int i, int n) {
    const linear_job *job = arg;
    const tensor *w = job->w;
    int64_t r0, r1;
    share_rows(w->rows, i, n, &r0, &r1);
    if (r0 >= r1) return;
    const kernel_table *k = job->ctx->kernels;
    if (job->qa) {
        k->matmul[w->type](w, r0, r1, job->qa, job->y, job->ldy);
    } else {
        float *work = job->ctx->work + (size_t)i * job->ctx->width;
        for (int32_t t = 0; t < job->n; t++)
            k->matvec[w->type](w, r0, r1, job->x + (size_t)t * (size_t)w->cols,
                               job->y + (size_t)t * (size_t)job->ldy, work);
    }
    if (job->bias)   /* each share its own rows, while they are in cache */
        for (int32_t t = 0; t < job->n; t++)
            vec_add(job->y + (size_t)t * (size_t)job->ldy + r0, job->bias + r0, r1 - r0);
}

/*
 * y[t·ldy + r] = W[r, :] · x[t, :] (+ b[r]) for t < n: the set's integer kernel over
 * activations quantized once here, or its matvec per token; rows split between the threads.
 */
static void linear(edgemoe_context *ctx, const tensor *w, const tensor *b, const float *x,
                   int32_t n, float *y, int64_t ldy) {
    qact qa = {.x = x, .q = ctx->qa_q, .d = ctx->qa_d, .exact = ctx->qa_exact, .n_tok = n,
               .cols = w->cols, .bits = ctx->act_bits};
    linear_job job = {.ctx = ctx, .w = w, .x = x, .qa = NULL, .y = y, .ldy = ldy, .n = n};
    if (ctx->kernels->matmul[w->type]) {
        ctx->kernels->quantize(&qa, ctx->kernels->qact_order[w->type]);
        job.qa = &qa;
    }
    if (b) {
        dequantize_row(b, 0, ctx->vec);
        job.bias = ctx->vec;
    }
    if (w->rows < PARALLEL_MIN_ROWS) linear_share(&job, 0, 1);
    else run(ctx, linear_share, &job);
}

/* out[t] = rmsnorm(x[t]) with weight w, for the n rows of [n, H]. */
static void norm(edgemoe_context *ctx, const tensor *w, const float *x, float *out, int32_t n) {
    const size_t H = (size_t)w->cols;
    dequantize_row(w, 0, ctx->vec);
    for (int32_t t = 0; t < n; t++)
        ctx->kernels->rmsnorm(out + t * H, x + t * H, ctx->vec, w->cols, ctx->model->hp.rms_norm_eps);
}

/* Row of the cache for (layer, pos): [KV] floats. */
static float *kv_row(const edgemoe_context *ctx, float *cache, int32_t layer, int32_t pos) {
    const hparams *hp = &ctx->model->hp;
    const size_t kv_dim = (size_t)hp->n_head_kv * (size_t)hp->head_dim;
    return cache + ((size_t)layer * (size_t)ctx->n_ctx + (size_t)pos) * kv_dim;
}

/* cos and sin of pos · inv_freq (angles in f32, as transformers), times the attention factor,
 * into row t of rope_cos / rope_sin. */
static void rope_angles(edgemoe_context *ctx, int32_t t, int32_t pos) {
    const int half = ctx->model->hp.head_dim / 2;
    float *c = ctx->rope_cos + (size_t)t * (size_t)half, *s = ctx->rope_sin + (size_t)t * (size_t)half;
    for (int i = 0; i < half; i++) {
        const float angle = (float)pos * ctx->inv_freq[i];
        c[i] = cosf(angle) * ctx->rope_factor;
        s[i] = sinf(angle) * ctx->rope_factor;
    }
}

/* ---------------------------------------------------------------------------------------
 * Attention
 */

typedef struct attention_job {
    edgemoe_context *ctx;
    int32_t layer;
    int32_t n;           /* tokens */
    int32_t pos;         /* position of token 0 */
    const float *sinks;  /* [nh] */
} attention_job;

/*
 * The G query heads h of key head g (h = g·G .. g·G + G−1) of token t (at position pos) attend
 * over cached positions first..pos plus their sinks: out_h[hd] = Σ_j softmax([q_h·k_j / sqrt(hd)
 * ..., sink_h])_j · v_j (the sink column dropped); the G heads read each key and value once.
 * scores: [G, n_ctx + 1], acc: [hd] of the calling thread.
 */
static void attention_group(edgemoe_context *ctx, int32_t layer, int32_t t, int g, int32_t pos,
                            const float *sinks, float *scores, double *acc) {
    const hparams *hp = &ctx->model->hp;
    const layer_weights *L = &ctx->model->layers[layer];
    const int hd = hp->head_dim, G = hp->n_head / hp->n_head_kv, h0 = g * G;
    const size_t Q = (size_t)hp->n_head * (size_t)hd;
    const float *q = ctx->q + (size_t)t * Q + (size_t)h0 * (size_t)hd;
    const double scale = 1.0 / sqrt((double)hd);
    /* a sliding layer sees the W keys ending at pos (itself included) */
    int32_t first = 0;
    if (L->sliding && pos >= hp->sliding_window) first = pos - hp->sliding_window + 1;
    const int32_t n = pos - first + 1;
    const size_t kv_dim = (size_t)hp->n_head_kv * (size_t)hd;   /* keys of positions first..pos */
    const float *k = kv_row(ctx, ctx->k_cache, layer, first) + (size_t)g * (size_t)hd;
    ctx->kernels->scores(scores, (size_t)n + 1, q, G, k, kv_dim, n, hd, scale);
    for (int i = 0; i < G; i++) {
        float *s = scores + (size_t)i * ((size_t)n + 1);
        s[n] = sinks[h0 + i];
        ctx->kernels->softmax(s, n + 1);
    }
    /* the value rows of positions first..pos are kv_dim floats apart in the cache */
    const float *v = kv_row(ctx, ctx->v_cache, layer, first) + (size_t)g * (size_t)hd;
    float *out = ctx->att + (size_t)t * Q + (size_t)h0 * (size_t)hd;
    ctx->kernels->weighted_sum(out, scores, (size_t)n + 1, G, v, kv_dim, n, hd, acc);
}

static void attention_share(void *arg, int i, int n_shares) {
    const attention_job *job = arg;
    edgemoe_context *ctx = job->ctx;
    const hparams *hp = &ctx->model->hp;
    const int n_kv = hp->n_head_kv, G = hp->n_head / hp->n_head_kv;
    const int64_t items = (int64_t)job->n * n_kv;
    float *scores = ctx->scores + (size_t)i * (size_t)G * ((size_t)ctx->n_ctx + 1);
    double *acc = ctx->att_acc + (size_t)i * (size_t)hp->head_dim;
    for (int64_t it = items * i / n_shares; it < items * (i + 1) / n_shares; it++) {
        const int32_t t = (int32_t)(it / n_kv);
        attention_group(ctx, job->layer, t, (int)(it % n_kv), job->pos + t, job->sinks, scores, acc);
    }
}

/* x += o_proj(attention(rmsnorm(x))) for one layer; stores the batch's keys and values. */
static void forward_attention(edgemoe_context *ctx, int32_t layer, int32_t n, int32_t pos) {
    const hparams *hp = &ctx->model->hp;
    const layer_weights *L = &ctx->model->layers[layer];
    const size_t H = (size_t)hp->n_embd, Q = (size_t)hp->n_head * (size_t)hp->head_dim;
    const size_t KV = (size_t)hp->n_head_kv * (size_t)hp->head_dim, half = (size_t)hp->head_dim / 2;
    float *k = kv_row(ctx, ctx->k_cache, layer, pos);   /* [n, KV]: consecutive positions */
    float *v = kv_row(ctx, ctx->v_cache, layer, pos);
    norm(ctx, &L->attn_norm, ctx->x, ctx->xn, n);
    linear(ctx, &L->wq, &L->bq, ctx->xn, n, ctx->q, (int64_t)Q);
    linear(ctx, &L->wk, &L->bk, ctx->xn, n, k, (int64_t)KV);
    linear(ctx, &L->wv, &L->bv, ctx->xn, n, v, (int64_t)KV);
    for (int32_t t = 0; t < n; t++) {
        const float *c = ctx->rope_cos + t * half, *s = ctx->rope_sin + t * half;
        rope_rotate(ctx->q + t * Q, hp->n_head, hp->head_dim, c, s);
        rope_rotate(k + t * KV, hp->n_head_kv, hp->head_dim, c, s);
    }
    dequantize_row(&L->sinks, 0, ctx->sinks);
    attention_job job = {.ctx = ctx, .layer = layer, .n = n, .pos = pos, .sinks = ctx->sinks};
    run(ctx, attention_share, &job);
    linear(ctx, &L->wo, &L->bo, ctx->att, n, ctx->proj, (int64_t)H);
    vec_add(ctx->x, ctx->proj, (int64_t)(n * H));
}

/* ---------------------------------------------------------------------------------------
 * Mixture of experts
 */

typedef struct swiglu_job {
    edgemoe_context *ctx;
    int32_t m;           /* tokens: gate_up [m, 2·n_ff] -> act [m, n_ff] */
} swiglu_job;

static void swiglu_share(void *arg, int i, int n) {
    const swiglu_job *job = arg;
    edgemoe_context *ctx = job->ctx;
    const hparams *hp = &ctx->model->hp;
    const size_t I = (size_t)hp->n_ff;
    for (int32_t t = (int32_t)((int64_t)job->m * i / n); t < (int32_t)((int64_t)job->m * (i + 1) / n); t++)
        ctx->kernels->swiglu(ctx->act + t * I, ctx->gate_up + t * 2 * I, hp->n_ff, hp->swiglu_alpha,
                             hp->swiglu_limit);
}

/* Apply expert e to the m tokens routed to it (expert_tokens / expert_slots), writing each
 * output to expert_out[token, slot]. */
static void expert_apply(edgemoe_context *ctx, const expert_weights *e, int32_t m) {
    const hparams *hp = &ctx->model->hp;
    const size_t H = (size_t)hp->n_embd, I = (size_t)hp->n_ff, K = (size_t)hp->n_expert_used;
    for (int32_t i = 0; i < m; i++)
        memcpy(ctx->expert_in + i * H, ctx->xn + (size_t)ctx->expert_tokens[i] * H, H * sizeof(float));
    linear(ctx, &e->gate_up, &e->gate_up_bias, ctx->expert_in, m, ctx->gate_up, (int64_t)(2 * I));
    swiglu_job job = {.ctx = ctx, .m = m};
    if (m > 1) run(ctx, swiglu_share, &job);
    else swiglu_share(&job, 0, 1);
    /* the outputs land in expert_in (free again), then move to their (token, slot) rows */
    linear(ctx, &e->down, &e->down_bias, ctx->act, m, ctx->expert_in, (int64_t)H);
    for (int32_t i = 0; i < m; i++) {
        const size_t row = (size_t)ctx->expert_tokens[i] * K + (size_t)ctx->expert_slots[i];
        memcpy(ctx->expert_out + row * H, ctx->expert_in + i * H, H * sizeof(float));
    }
}

/*
 * y[r] = W[r, :] · x (+ b) for one token, all rows, on the calling thread alone (scratch of
 * thread i): the same kernels, rows and sums as linear(), so the same numbers.
 */
static void linear_one(edgemoe_context *ctx, int i, const tensor *w, const tensor *b,
                       const float *x, float *y, float *vec) {
    const kernel_table *k = ctx->kernels;
    if (k->matmul[w->type]) {
        uint8_t exact = 0;
        qact qa = {.x = x, .q = ctx->t_qa_q + (size_t)i * ctx->width,
                   .d = ctx->t_qa_d + (size_t)i * (ctx->width / 32 + 1), .exact = &exact,
                   .n_tok = 1, .cols = w->cols, .bits = ctx->act_bits};
        k->quantize(&qa, k->qact_order[w->type]);
        k->matmul[w->type](w, 0, w->rows, &qa, y, w->rows);
    } else {
        k->matvec[w->type](w, 0, w->rows, x, y, ctx->work + (size_t)i * ctx->width);
    }
    if (b) {
        dequantize_row(b, 0, vec);
        vec_add(y, vec, w->rows);
    }
}

typedef struct experts_job {
    edgemoe_context *ctx;
    const layer_weights *layer;
    int32_t l;
    _Atomic int failed;   /* an expert could not be read: the first failure's message in ctx */
} experts_job;

/* Expert e of layer l: from the cache under a budget (NULL on a read error, message in ctx,
 * first failure only), else the mapping. */
static const expert_weights *expert_get(edgemoe_context *ctx, const layer_weights *L, int32_t l,
                                        int e, _Atomic int *failed) {
    expert_cache *c = ctx->model->cache;
    if (!c) return &L->experts[e];
    char msg[sizeof ctx->error];
    const expert_weights *w = expert_cache_acquire(c, l, e, msg, sizeof msg);
    if (!w && !atomic_exchange(failed, 1)) memcpy(ctx->error, msg, sizeof msg);
    return w;
}

static void expert_put(edgemoe_context *ctx, int32_t l, int e) {
    if (ctx->model->cache) expert_cache_release(ctx->model->cache, l, e);
}

/* One token: the chosen experts dealt out whole to the threads (slot j to thread j mod n), so
 * a token's MoE costs one pool job instead of two per expert. */
static void experts_share(void *arg, int i, int n) {
    experts_job *job = arg;
    edgemoe_context *ctx = job->ctx;
    const hparams *hp = &ctx->model->hp;
    const size_t H = (size_t)hp->n_embd, I = (size_t)hp->n_ff;
    float *gate_up = ctx->t_gate_up + (size_t)i * 2 * I, *act = ctx->t_act + (size_t)i * I;
    float *vec = ctx->work + (size_t)i * ctx->width;   /* biases; free while no matvec runs */
    for (int j = i; j < hp->n_expert_used; j += n) {
        const expert_weights *e = expert_get(ctx, job->layer, job->l, ctx->chosen[j], &job->failed);
        if (!e) continue;
        float *out = ctx->expert_out + (size_t)j * H;
        linear_one(ctx, i, &e->gate_up, &e->gate_up_bias, ctx->xn, gate_up, vec);
        ctx->kernels->swiglu(act, gate_up, hp->n_ff, hp->swiglu_alpha, hp->swiglu_limit);
        linear_one(ctx, i, &e->down, &e->down_bias, act, out, vec);
        expert_put(ctx, job->l, ctx->chosen[j]);
    }
}

/* Under a budget, one token: guess layer l+1's experts from the residual now (its router on
 * its own norm of x) and have the cache read them while this layer computes. */
static void predict_next(edgemoe_context *ctx, int32_t l) {
    edgemoe_model *m = ctx->model;
    if (!m->cache || !expert_cache_predicts(m->cache) || l + 1 >= m->hp.n_layer) return;
    const layer_weights *next = &m->layers[l + 1];
    const int K = m->hp.n_expert_used, E = m->hp.n_expert;
    float *xn = ctx->expert_in, *logits = ctx->router + E;   /* unused by one token's MoE */
    int *guess = ctx->expert_tokens;
    norm(ctx, &next->mlp_norm, ctx->x, xn, 1);
    linear_one(ctx, 0, &next->router, &next->router_bias, xn, logits, ctx->vec);
    topk_indices(logits, E, K, guess);
    expert_cache_predict(m->cache, l + 1, guess, K);
}

/* x += Σ_k w_k · expert_k(rmsnorm(x)): top-k of the router logits, softmax over those k.
 * EDGEMOE_ERR_IO (message in ctx) when an expert cannot be read under a budget. */
static int forward_moe(edgemoe_context *ctx, int32_t layer, int32_t n) {
    const hparams *hp = &ctx->model->hp;
    const layer_weights *L = &ctx->model->layers[layer];
    const int K = hp->n_expert_used, E = hp->n_expert;
    const size_t H = (size_t)hp->n_embd;
    norm(ctx, &L->mlp_norm, ctx->x, ctx->xn, n);
    linear(ctx, &L->router, &L->router_bias, ctx->xn, n, ctx->router, E);
    for (int32_t t = 0; t < n; t++) {
        int *chosen = ctx->chosen + t * K;
        float *weight = ctx->gate_weight + t * K;
        topk_indices(ctx->router + (size_t)t * (size_t)E, E, K, chosen);
        for (int j = 0; j < K; j++) weight[j] = ctx->router[(size_t)t * (size_t)E + (size_t)chosen[j]];
        softmax(weight, K);
    }
    /* the distinct experts chosen, in the order they will run */
    int *used = ctx->expert_list, n_used = 0;
    if (n == 1) {
        for (int j = 0; j < K; j++) used[n_used++] = ctx->chosen[j];
    } else {
        memset(ctx->expert_seen, 0, (size_t)E);
        for (int32_t t = 0; t < n * K; t++) ctx->expert_seen[ctx->chosen[t]] = 1;
        for (int e = 0; e < E; e++)
            if (ctx->expert_seen[e]) used[n_used++] = e;
    }
    edgemoe_model *mm = ctx->model;
    if (mm->cache) {
        expert_cache_route(mm->cache, layer, used, n_used);
        if (n == 1) predict_next(ctx, layer);
    } else {   /* the chosen experts' spans, read ahead together */
        atomic_fetch_add_explicit(&mm->expert_uses, (unsigned long long)n_used, memory_order_relaxed);
        for (int i = 0; i < n_used; i++) residency_expert(mm, layer, used[i]);
    }
    experts_job job = {.ctx = ctx, .layer = L, .l = layer};
    if (n == 1 && pool_size(ctx->pool) > 1) {   /* one token: experts dealt out whole */
        run(ctx, experts_share, &job);
    } else {                                      /* a batch: expert by expert, rows split */
        for (int i = 0; i < n_used && !job.failed; i++) {
            const int e = used[i];
            int32_t m = 0;
            for (int32_t t = 0; t < n; t++)
                for (int j = 0; j < K; j++)
                    if (ctx->chosen[t * K + j] == e) {
                        ctx->expert_tokens[m] = t;
                        ctx->expert_slots[m++] = j;
                    }
            const expert_weights *w = expert_get(ctx, L, layer, e, &job.failed);
            if (!w) break;
            expert_apply(ctx, w, m);
            expert_put(ctx, layer, e);
            if (mm->cache) expert_cache_readahead(mm->cache, layer, used + i + 1, n_used - i - 1);
        }
    }
    if (job.failed) return EDGEMOE_ERR_IO;
    for (int32_t t = 0; t < n; t++) {
        float *moe = ctx->proj + t * H;
        memset(moe, 0, H * sizeof *moe);
        for (int j = 0; j < K; j++)
            vec_axpy(moe, ctx->gate_weight[t * K + j], ctx->expert_out + ((size_t)t * K + j) * H,
                     (int64_t)H);
    }
    vec_add(ctx->x, ctx->proj, (int64_t)(n * H));
    return EDGEMOE_OK;
}

/* ---------------------------------------------------------------------------------------
 * A batch
 */

/* Token `id`'s embedding into x: from the mapping, or read by pread under a budget (rows of
 * every type but mxfp4 are contiguous). */
static int embed_token(edgemoe_context *ctx, int32_t id, float *x) {
    const edgemoe_model *m = ctx->model;
    if (!m->cache || m->embed.type == EDGEMOE_TYPE_MXFP4) {
        dequantize_row(&m->embed, id, x);
        return EDGEMOE_OK;
    }
    uint8_t *row = (uint8_t *)ctx->work;   /* >= H floats: more than a row of any type */
    if (!expert_cache_embed_row(m->cache, &m->embed, id, row, ctx->error, sizeof ctx->error))
        return EDGEMOE_ERR_IO;
    const tensor one = {.data = row, .type = m->embed.type, .rows = 1, .cols = m->embed.cols};
    dequantize_row(&one, 0, x);
    return EDGEMOE_OK;
}

static int forward_tokens(edgemoe_context *ctx, const int32_t *tokens, int32_t n, int32_t pos,
                          float *logits, int32_t logits_mode) {
    const edgemoe_model *m = ctx->model;
    const size_t H = (size_t)m->hp.n_embd;
    int rc;
    for (int32_t t = 0; t < n; t++) {
        if ((rc = embed_token(ctx, tokens[t], ctx->x + t * H))) return rc;
        rope_angles(ctx, t, pos + t);
    }
    edgemoe_model *mm = ctx->model;
    if (!mm->cache) residency_layer(mm, 0);
    for (int32_t l = 0; l < m->hp.n_layer; l++) {
        if (!mm->cache) {
            residency_layer(mm, l + 1);   /* the next layer's dense weights load while this runs */
            if (l == m->hp.n_layer / 2 && logits_mode) residency_head(mm);
        }
        forward_attention(ctx, l, n, pos);
        if ((rc = forward_moe(ctx, l, n))) return rc;
    }
    if (logits_mode == 0) return EDGEMOE_OK;
    /* mode 1: only the last token's row goes through the final norm and the head */
    const int32_t first = logits_mode == 1 ? n - 1 : 0;
    norm(ctx, &m->norm, ctx->x + first * H, ctx->xn, n - first);
    linear(ctx, &m->lm_head, NULL, ctx->xn, n - first, logits, m->hp.n_vocab);
    return EDGEMOE_OK;
}

int forward_batch(edgemoe_context *ctx, const int32_t *tokens, int32_t n, int32_t pos,
                  float *logits, int32_t logits_mode) {
    const edgemoe_model *m = ctx->model;
    mapguard g;
    int rc;
    atomic_store_explicit(&ctx->map_fault, 0, memory_order_relaxed);
    mapguard_push(&g, m->map, m->map_size);
    ctx->batch_guard = &g;
    if (sigsetjmp(g.env, 0) == 0) {
        rc = forward_tokens(ctx, tokens, n, pos, logits, logits_mode);
    } else {   /* a page of the mapping could not be read: the file shrank during the call */
        rc = error_write(ctx->error, sizeof ctx->error, EDGEMOE_ERR_IO,
                         "%s: the model file was truncated while in use (a read of the mapping "
                         "failed during evaluation); reopen it", m->path);
    }
    ctx->batch_guard = NULL;
    mapguard_leave(&g);
    return rc;
}

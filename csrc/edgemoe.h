/*
 * edgemoe.h — public C API of the edgemoe inference core.
 *
 * Opaque handles, status codes, no global state besides the kernel dispatch table,
 * never exit()/abort() on bad input. The file format is described in docs/FORMAT.md.
 *
 * Everything between the CDEF-BEGIN and CDEF-END markers is read by build.py as the
 * cffi cdef, so it must stay plain C declarations (no preprocessor lines).
 */
#ifndef EDGEMOE_H
#define EDGEMOE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* CDEF-BEGIN */

/* Status codes returned by every fallible function. */
typedef enum edgemoe_status {
    EDGEMOE_OK = 0,
    EDGEMOE_ERR_IO = 1,           /* the file could not be opened, read or mapped */
    EDGEMOE_ERR_FORMAT = 2,       /* the file is not a valid model.bin (message names the field) */
    EDGEMOE_ERR_VERSION = 3,      /* model.bin version this build does not know */
    EDGEMOE_ERR_CHECKSUM = 4,     /* a CRC-32 did not match */
    EDGEMOE_ERR_NOMEM = 5,        /* an allocation failed */
    EDGEMOE_ERR_ARG = 6,          /* an invalid argument (message names it) */
    EDGEMOE_ERR_CONTEXT_FULL = 7, /* n_past + n_tokens would exceed n_ctx */
    EDGEMOE_ERR_UNSUPPORTED = 8   /* valid file, but a feature this build cannot run */
} edgemoe_status;

typedef struct edgemoe_model edgemoe_model;
typedef struct edgemoe_context edgemoe_context;

/* Facts about an open model (all read from the file's header). */
typedef struct edgemoe_model_info {
    int32_t n_vocab;          /* rows of embedding / lm_head */
    int32_t n_embd;           /* hidden size H */
    int32_t n_ff;             /* expert intermediate size I */
    int32_t n_layer;
    int32_t n_head;           /* query heads */
    int32_t n_head_kv;        /* key/value heads */
    int32_t head_dim;
    int32_t n_expert;
    int32_t n_expert_used;    /* top-k */
    int32_t sliding_window;
    int32_t n_ctx_train;      /* max_position_embeddings */
    int32_t dense_type;       /* edgemoe tensor type of q_proj (see EDGEMOE_TYPE_* in format.h) */
    uint64_t file_size;
    uint64_t expert_bytes;    /* bytes of all expert spans */
    uint64_t dense_bytes;     /* bytes of all other tensors */
} edgemoe_model_info;

/* Human-readable name of a status code. Never NULL. */
const char *edgemoe_status_string(int status);

/* Version of this C core, e.g. "0.1.0". */
const char *edgemoe_version(void);

/*
 * Name of the kernel set a model opened now would use: "reference", "avx512", "avx2" or
 * "neon" — the one named by the environment variable EDGEMOE_KERNELS
 * (reference|avx512|avx2|neon|auto;
 * unset, empty or "auto" = the best this CPU runs), or "invalid" when that value is
 * unknown or cannot run here (edgemoe_model_open then fails, naming the variable).
 * The CPU is probed once; the variable is read on every call. Never NULL.
 */
const char *edgemoe_kernels_name(void);

/* Name of the kernel set an open model uses (chosen when it was opened). "" for NULL. */
const char *edgemoe_model_kernels_name(const edgemoe_model *model);

/*
 * Open and validate a model.bin.
 * Success: returns EDGEMOE_OK and stores a new model in *out (free with edgemoe_model_free).
 * Failure: returns an error status, leaves *out NULL, and writes a NUL-terminated message
 * naming the file and the field at fault into err (at most err_len bytes, may be NULL).
 * The model's kernel set is chosen here (see edgemoe_kernels_name): EDGEMOE_ERR_ARG if
 * EDGEMOE_KERNELS names a set that does not exist or cannot run on this CPU.
 */
int edgemoe_model_open(const char *path, edgemoe_model **out, char *err, size_t err_len);

/* Replacement policies of the expert cache (edgemoe_model_params.policy). */
typedef enum edgemoe_policy {
    EDGEMOE_POLICY_LFU = 0,   /* evict the expert used least often (per-expert counts that
                               * survive eviction and halve as they age; ties: LRU). Default:
                               * measured ahead of LRU in docs/MEMORY.md */
    EDGEMOE_POLICY_LRU = 1    /* evict the expert used longest ago */
} edgemoe_policy;

/* How to open a model (edgemoe_model_open_params). Zero-initialized = edgemoe_model_open. */
typedef struct edgemoe_model_params {
    uint64_t memory_budget;   /* bytes of resident weights; 0: no budget, plain mmap */
    int32_t policy;           /* EDGEMOE_POLICY_* (under a budget) */
    int32_t io_threads;       /* background readers under a budget; <= 0: 2; at most 64 */
    int32_t no_predict;       /* 1: do not read ahead the experts a next layer will likely use */
    int32_t activation_bits;  /* 16 (or 0): integer kernels round activations to int16 blocks;
                                 8: to int8 blocks (faster one-token products, coarser) */
} edgemoe_model_params;

/*
 * edgemoe_model_open with a memory budget (docs/MEMORY.md): the non-expert weights are read
 * into memory at open, experts into a cache of slots that fits the rest of the budget, every
 * read by pread. EDGEMOE_ERR_ARG (message naming the smallest budget that works) when the
 * budget cannot hold the non-expert weights plus one layer's active experts.
 */
int edgemoe_model_open_params(const char *path, const edgemoe_model_params *params,
                              edgemoe_model **out, char *err, size_t err_len);

/* What the expert cache did since the model was opened. Without a budget only expert_uses,
 * and dense_resident_bytes = 0, are filled (the page cache decides the rest). */
typedef struct edgemoe_model_stats {
    uint64_t expert_uses;         /* (layer, expert) uses: per token, or per batch for prompts */
    uint64_t hits;                /* uses found resident (or on their way, read by prediction) */
    uint64_t misses;              /* uses that had to be read: hits + misses = expert_uses */
    uint64_t bytes_read;          /* bytes read from the file by the cache (experts + dense) */
    uint64_t evictions;           /* experts dropped to make room */
    uint64_t predicted;           /* experts read ahead by next-layer prediction */
    uint64_t predicted_used;      /* ... of which the next layer's router did choose */
    uint64_t budget_bytes;        /* the budget, 0 if none */
    uint64_t dense_resident_bytes;/* non-expert weights held in memory */
    uint64_t slot_bytes;          /* one expert slot */
    uint64_t n_slots;             /* experts the cache holds at once */
    uint64_t resident_expert_bytes; /* slots currently holding an expert */
    double io_wait_s;             /* time the forward pass waited for expert reads */
} edgemoe_model_stats;

/* Fill *out. Returns EDGEMOE_OK, or EDGEMOE_ERR_ARG on NULL. */
int edgemoe_model_get_stats(edgemoe_model *model, edgemoe_model_stats *out);

/* Release a model. All its contexts must have been freed first. NULL is a no-op. */
void edgemoe_model_free(edgemoe_model *model);

/* Fill *out with the model's facts. Returns EDGEMOE_OK, or EDGEMOE_ERR_ARG on NULL. */
int edgemoe_model_get_info(const edgemoe_model *model, edgemoe_model_info *out);

/*
 * Create an inference context (KV cache + scratch) for up to n_ctx positions, evaluated by
 * n_threads threads (the caller and n_threads − 1 workers the context starts and keeps until it
 * is freed; <= 0 means 1, more than 1024 is EDGEMOE_ERR_ARG). Success: EDGEMOE_OK and *out set
 * (free with edgemoe_context_free). Failure: error status, *out NULL, message in err.
 */
int edgemoe_context_new(edgemoe_model *model, int32_t n_ctx, int32_t n_threads,
                        edgemoe_context **out, char *err, size_t err_len);

/* Release a context. NULL is a no-op. */
void edgemoe_context_free(edgemoe_context *ctx);

/*
 * Evaluate n_tokens tokens at positions n_past .. n_past + n_tokens - 1, appending their
 * keys and values to the KV cache.
 * logits_mode 0: write nothing (logits may be NULL);
 *             1: write the last token's logits, n_vocab floats;
 *             2: write every token's logits, n_tokens * n_vocab floats (row-major).
 * Success: EDGEMOE_OK, n_past advanced by n_tokens.
 * Failure: error status (EDGEMOE_ERR_ARG for a token id out of range or a bad argument,
 * EDGEMOE_ERR_CONTEXT_FULL when the context would overflow), n_past unchanged, message
 * available from edgemoe_context_error.
 */
int edgemoe_context_eval(edgemoe_context *ctx, const int32_t *tokens, int32_t n_tokens,
                         float *logits, int32_t logits_mode);

/* Number of positions currently held in the KV cache. */
int32_t edgemoe_context_n_past(const edgemoe_context *ctx);

/* Capacity of the context in positions. */
int32_t edgemoe_context_n_ctx(const edgemoe_context *ctx);

/* Drop every position >= n_past (0 <= n_past <= current n_past). Returns EDGEMOE_ERR_ARG otherwise. */
int edgemoe_context_truncate(edgemoe_context *ctx, int32_t n_past);

/* Message of the last failed call on this context ("" if none). Never NULL. */
const char *edgemoe_context_error(const edgemoe_context *ctx);

/*
 * Kernel sets called directly, for tests and benchmarks (the forward pass uses the set its
 * model chose at open). `kernels` names a set as EDGEMOE_KERNELS does ("reference", "avx512",
 * "avx2", "neon" or "auto"). Each call returns EDGEMOE_OK; EDGEMOE_ERR_ARG for an unknown set name, a
 * NULL pointer or a bad size; EDGEMOE_ERR_UNSUPPORTED if the set cannot run on this CPU or
 * build; EDGEMOE_ERR_NOMEM.
 */

/* 1 if the kernel set `name` exists and runs on this CPU, else 0. */
int edgemoe_kernels_available(const char *name);

/*
 * y[rows] = W[rows, cols] · x[cols], W given as the bytes of a tensor of edgemoe type `type`
 * (EDGEMOE_TYPE_* of format.h: 0 f32, 1 f16, 2 bf16, 4 q8_0, 5 mxfp4) in FORMAT.md's layout,
 * not necessarily aligned; cols a multiple of 32 for q8_0 and mxfp4.
 */
int edgemoe_kernel_matvec(const char *kernels, int type, const uint8_t *w, int64_t rows,
                          int64_t cols, const float *x, float *y);

/*
 * Y[n_tok, rows] = X[n_tok, cols] · Wᵀ: edgemoe_kernel_matvec for n_tok tokens at once, through
 * the batched path prompt evaluation takes (row t of y is the product with row t of x), with
 * activations rounded to act_bits (16 or 8; edgemoe_model_params.activation_bits) where the
 * set has an integer kernel for the type.
 */
int edgemoe_kernel_matmul(const char *kernels, int type, const uint8_t *w, int64_t rows,
                          int64_t cols, const float *x, int64_t n_tok, int32_t act_bits, float *y);

/*
 * 1 if the set's products with weights of `type` round activations to int16 blocks first (the
 * integer kernels: struct qact in csrc/kernels.h states the rule), 0 if they keep x in f32 or
 * the set or type does not exist.
 */
int edgemoe_kernel_int16_activations(const char *kernels, int type);

/*
 * x[n_tok, cols] rounded to blocks of 32 as the set's integer kernels take them (struct qact in
 * csrc/kernels.h states the rule): q[n_tok, cols] within ±32767 (bits 16) or ±127 (bits 8), each
 * block in `order` (0 natural, 1 even then odd elements, 2 the same per half block),
 * d[n_tok, cols / 32] the block scales, exact[n_tok] 1 where a token takes the f32 route (its q
 * and d then unspecified); cols a multiple of 32.
 */
int edgemoe_kernel_quantize(const char *kernels, const float *x, int64_t n_tok, int64_t cols,
                            int32_t bits, int32_t order, int16_t *q, float *d, uint8_t *exact);

/* *out = Σ a[i]·b[i] for i < n (attention scores). */
int edgemoe_kernel_dot(const char *kernels, const float *a, const float *b, int64_t n,
                       double *out);

/* out[i·n + j] = (float)(dot(q + i·dim, keys + j·stride, dim) · scale) for i < nq, j < n (the
 * attention scores of nq query heads sharing a key head; the same numbers as
 * edgemoe_kernel_dot per query and key); stride >= dim, nq >= 1. */
int edgemoe_kernel_scores(const char *kernels, float *out, const float *q, int32_t nq,
                          const float *keys, int64_t stride, int64_t n, int64_t dim, double scale);

/* out[i·dim + d] = Σ_j p[i·n + j]·rows[j·stride + d] for i < nq, d < dim, j < n (attention
 * values of nq query heads sharing a value head); stride >= dim, nq >= 1. */
int edgemoe_kernel_weighted_sum(const char *kernels, float *out, const float *p, int32_t nq,
                                const float *rows, int64_t stride, int64_t n, int64_t dim);

/* x[n] <- softmax(x) in place (n >= 1): the set's attention softmax. */
int edgemoe_kernel_softmax(const char *kernels, float *x, int64_t n);

/* out[j] = gpt-oss's clamped SwiGLU of gate h[2j] and up h[2j+1] for j < n: the set's. */
int edgemoe_kernel_swiglu(const char *kernels, float *out, const float *h, int64_t n, float alpha,
                          float limit);

/* out[i] = w[i]·x[i] / sqrt(mean(x²) + eps) for i < n (n >= 1; out may alias x). */
int edgemoe_kernel_rmsnorm(const char *kernels, float *out, const float *x, const float *w,
                           int64_t n, float eps);

/* CDEF-END */

#ifdef __cplusplus
}
#endif

#endif /* EDGEMOE_H */

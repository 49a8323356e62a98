/*
 * model.h — the inside of an edgemoe_model: hyperparameters and views of every weight,
 * resolved and checked once by edgemoe_model_open (model.c), then read-only.
 */
#ifndef EDGEMOE_MODEL_H
#define EDGEMOE_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "edgemoe.h"
#include "kernels.h"

/* Upper bounds on hyperparameters, so that every size derived from them fits comfortably
 * in 64 bits (and in int32 where the API uses int32). gpt-oss-120b is far inside them. */
#define HP_MAX_VOCAB (1 << 24)
#define HP_MAX_EMBD (1 << 16)
#define HP_MAX_FF (1 << 18)
#define HP_MAX_LAYERS 1024
#define HP_MAX_HEADS 1024
#define HP_MAX_HEAD_DIM 1024
#define HP_MAX_EXPERTS 4096
#define HP_MAX_EXPERTS_USED 256

/* gpt-oss hyperparameters (FORMAT.md "hparams"). */
typedef struct hparams {
    int32_t n_vocab;          /* vocab_size V */
    int32_t n_embd;           /* hidden_size H */
    int32_t n_ff;             /* intermediate_size I */
    int32_t n_layer;          /* num_hidden_layers */
    int32_t n_head;           /* num_attention_heads */
    int32_t n_head_kv;        /* num_key_value_heads */
    int32_t head_dim;
    int32_t n_expert;         /* num_local_experts */
    int32_t n_expert_used;    /* num_experts_per_tok */
    int32_t sliding_window;   /* W: a sliding layer's query sees W keys including itself */
    int32_t n_ctx_train;      /* max_position_embeddings */
    float rms_norm_eps;
    float swiglu_limit;
    float swiglu_alpha;
    /* RoPE */
    int rope_yarn;            /* 1: "yarn", 0: "default" */
    double rope_theta;
    double rope_factor;       /* yarn only, from here down */
    double rope_beta_fast;
    double rope_beta_slow;
    double rope_original_ctx; /* original_max_position_embeddings */
    int rope_truncate;
} hparams;

/* One expert's weights, all inside its expert span. */
typedef struct expert_weights {
    tensor gate_up;        /* [2I, H] mxfp4, rows interleaved gate_0, up_0, gate_1, ... */
    tensor gate_up_bias;   /* [2I] */
    tensor down;           /* [H, I] mxfp4 */
    tensor down_bias;      /* [H] */
    const uint8_t *span;   /* the expert's span in the mapping (expert_alignment-aligned) */
    size_t span_length;
} expert_weights;

/* One decoder layer's weights. */
typedef struct layer_weights {
    int sliding;               /* 1 for "sliding_attention", 0 for "full_attention" */
    tensor attn_norm;          /* [H] input_layernorm */
    tensor wq, bq;             /* [nh·hd, H], [nh·hd] */
    tensor wk, bk;             /* [nkv·hd, H], [nkv·hd] */
    tensor wv, bv;             /* [nkv·hd, H], [nkv·hd] */
    tensor wo, bo;             /* [H, nh·hd], [H] */
    tensor sinks;              /* [nh] */
    tensor mlp_norm;           /* [H] post_attention_layernorm */
    tensor router, router_bias;/* [E, H], [E] */
    expert_weights *experts;   /* [E], points into edgemoe_model.experts */
} layer_weights;

/* The dense (non-expert) tensors of one layer: attention, norms, sinks, router. */
#define LAYER_DENSE_TENSORS 13
void layer_dense_tensors(layer_weights *L, tensor *out[LAYER_DENSE_TENSORS]);

/*
 * EDGEMOE_OK while the mapped file is still as long as the mapping; EDGEMOE_ERR_IO with a
 * message naming the file in err once something truncated it. Called before each eval, so a
 * file truncated between calls is an error instead of SIGBUS (one truncated during a call
 * faults inside forward.c's guards: mapguard.h).
 */
int model_check_file(const edgemoe_model *m, char *err, size_t err_len);

/* The bytes of a bound tensor (its shape was checked against the file at open). */
size_t tensor_bytes(const tensor *t);

struct edgemoe_model {
    char *path;                /* as given to edgemoe_model_open, for messages */
    const kernel_table *kernels; /* chosen at open from EDGEMOE_KERNELS (kernels.h) */
    int act_bits;                /* 16 or 8: activation rounding of the integer kernels (qact) */
    const uint8_t *map;        /* the whole file, mapped read-only */
    size_t map_size;
    int fd;                    /* the mapped file, kept open to notice truncation; -1: none */
    hparams hp;
    tensor embed;              /* [V, H] */
    tensor norm;               /* [H] model.norm */
    tensor lm_head;            /* [V, H] */
    layer_weights *layers;     /* [n_layer] */
    expert_weights *experts;   /* [n_layer · n_expert], layer-major */
    /* residency.c: which parts of the mapping were already announced to the kernel, one flag
     * per (layer, expert), per layer's dense tensors, and for the output head */
    _Atomic unsigned char *advised;   /* [n_layer · n_expert + n_layer + 1] */
    struct expert_cache *cache;  /* under a memory budget (expert_cache.h), else NULL */
    _Atomic unsigned long long expert_uses;   /* without a budget: (layer, expert) uses */
    edgemoe_model_info info;
};

#endif /* EDGEMOE_MODEL_H */

/*
 * hparams.c — check the header's top level and read "hparams" (FORMAT.md "JSON header").
 *
 * Every hyperparameter is required unless noted, must have the right JSON type, and must lie
 * in a range that keeps all derived sizes far from overflow (HP_MAX_* in model.h).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loader.h"

/* Member `key` of object obj as an integer in [lo, hi]; `where` names obj in messages. */
static int json_int_field(loader *ld, json_ref obj, const char *where, const char *key,
                          int64_t lo, int64_t hi, int64_t *out) {
    json_ref v = json_get(&ld->doc, obj, key);
    if (v == JSON_NONE) return loader_fail(ld, EDGEMOE_ERR_FORMAT, "%s.%s: missing", where, key);
    if (!json_get_int(&ld->doc, v, out))
        return loader_fail(ld, EDGEMOE_ERR_FORMAT, "%s.%s: must be an integer", where, key);
    if (*out < lo || *out > hi)
        return loader_fail(ld, EDGEMOE_ERR_FORMAT, "%s.%s: %lld is out of range [%lld, %lld]",
                           where, key, (long long)*out, (long long)lo, (long long)hi);
    return EDGEMOE_OK;
}

/* Member `key` of object obj as a number in the open interval (lo, hi). */
static int json_real_field(loader *ld, json_ref obj, const char *where, const char *key,
                           double lo, double hi, double *out) {
    json_ref v = json_get(&ld->doc, obj, key);
    if (v == JSON_NONE) return loader_fail(ld, EDGEMOE_ERR_FORMAT, "%s.%s: missing", where, key);
    if (!json_get_double(&ld->doc, v, out))
        return loader_fail(ld, EDGEMOE_ERR_FORMAT, "%s.%s: must be a number", where, key);
    if (!(*out > lo && *out < hi))
        return loader_fail(ld, EDGEMOE_ERR_FORMAT, "%s.%s: %g is out of range (%g, %g)",
                           where, key, *out, lo, hi);
    return EDGEMOE_OK;
}

/* String v decoded into buf for a message: "?" if it is not a string or too long. */
static const char *string_for_message(const json_doc *doc, json_ref v, char *buf, size_t cap) {
    size_t n = json_string_decode(doc, v, buf, cap);
    return (n == SIZE_MAX || strlen(buf) != n) ? "?" : buf;
}

/* An int32 hyperparameter in [lo, hi]. */
static int hp_int(loader *ld, const char *key, int64_t lo, int64_t hi, int32_t *out) {
    int64_t v = 0;
    int rc = json_int_field(ld, ld->hparams, "hparams", key, lo, hi, &v);
    *out = (int32_t)v;
    return rc;
}

/* "format", "version" and "architecture", and locate "hparams". */
static int header_check_top(loader *ld) {
    const json_doc *doc = &ld->doc;
    if (json_type_of(doc, 0) != JSON_OBJECT)
        return loader_fail(ld, EDGEMOE_ERR_FORMAT, "header: not a JSON object");
    if (!json_string_eq(doc, json_get(doc, 0, "format"), "edgemoe"))
        return loader_fail(ld, EDGEMOE_ERR_FORMAT, "header.format: missing or not \"edgemoe\"");
    int64_t version = 0;
    if (!json_get_int(doc, json_get(doc, 0, "version"), &version))
        return loader_fail(ld, EDGEMOE_ERR_FORMAT, "header.version: missing or not an integer");
    if (version != EDGEMOE_FORMAT_VERSION)
        return loader_fail(ld, EDGEMOE_ERR_VERSION,
                           "header.version %lld is not supported (this build reads version %u)",
                           (long long)version, EDGEMOE_FORMAT_VERSION);
    json_ref arch = json_get(doc, 0, "architecture");
    if (json_type_of(doc, arch) != JSON_STRING)
        return loader_fail(ld, EDGEMOE_ERR_FORMAT, "header.architecture: missing or not a string");
    char name[64];
    if (!json_string_eq(doc, arch, "gpt-oss"))
        return loader_fail(ld, EDGEMOE_ERR_UNSUPPORTED,
                           "header.architecture \"%s\" is not supported (this build runs \"gpt-oss\")",
                           string_for_message(doc, arch, name, sizeof name));
    ld->hparams = json_get(doc, 0, "hparams");
    if (json_type_of(doc, ld->hparams) != JSON_OBJECT)
        return loader_fail(ld, EDGEMOE_ERR_FORMAT, "hparams: missing or not an object");
    return EDGEMOE_OK;
}

/* The integer sizes, and the relations between them. */
static int hparams_read_sizes(loader *ld, hparams *hp) {
    int rc;
    if ((rc = hp_int(ld, "vocab_size", 1, HP_MAX_VOCAB, &hp->n_vocab))
        || (rc = hp_int(ld, "hidden_size", 32, HP_MAX_EMBD, &hp->n_embd))
        || (rc = hp_int(ld, "intermediate_size", 32, HP_MAX_FF, &hp->n_ff))
        || (rc = hp_int(ld, "num_hidden_layers", 1, HP_MAX_LAYERS, &hp->n_layer))
        || (rc = hp_int(ld, "num_attention_heads", 1, HP_MAX_HEADS, &hp->n_head))
        || (rc = hp_int(ld, "num_key_value_heads", 1, hp->n_head, &hp->n_head_kv))
        || (rc = hp_int(ld, "head_dim", 2, HP_MAX_HEAD_DIM, &hp->head_dim))
        || (rc = hp_int(ld, "num_local_experts", 1, HP_MAX_EXPERTS, &hp->n_expert))
        || (rc = hp_int(ld, "num_experts_per_tok", 1,
                        hp->n_expert < HP_MAX_EXPERTS_USED ? hp->n_expert : HP_MAX_EXPERTS_USED,
                        &hp->n_expert_used))
        || (rc = hp_int(ld, "sliding_window", 1, INT32_MAX, &hp->sliding_window))
        || (rc = hp_int(ld, "max_position_embeddings", 1, INT32_MAX, &hp->n_ctx_train)))
        return rc;
    if (hp->n_embd % 32 != 0)
        return loader_fail(ld, EDGEMOE_ERR_FORMAT,
                           "hparams.hidden_size: %d is not a multiple of 32", hp->n_embd);
    if (hp->n_ff % 32 != 0)
        return loader_fail(ld, EDGEMOE_ERR_FORMAT,
                           "hparams.intermediate_size: %d is not a multiple of 32", hp->n_ff);
    if (hp->n_head % hp->n_head_kv != 0)
        return loader_fail(ld, EDGEMOE_ERR_FORMAT,
                           "hparams.num_key_value_heads: %d does not divide num_attention_heads %d",
                           hp->n_head_kv, hp->n_head);
    if (hp->head_dim % 2 != 0)
        return loader_fail(ld, EDGEMOE_ERR_FORMAT, "hparams.head_dim: %d is not even", hp->head_dim);
    return EDGEMOE_OK;
}

/* "layer_types": one "sliding_attention" or "full_attention" per layer, into sliding[n_layer]. */
static int hparams_read_layer_types(loader *ld, const hparams *hp, uint8_t *sliding) {
    const json_doc *doc = &ld->doc;
    json_ref types = json_get(doc, ld->hparams, "layer_types");
    if (json_type_of(doc, types) != JSON_ARRAY)
        return loader_fail(ld, EDGEMOE_ERR_FORMAT, "hparams.layer_types: missing or not an array");
    if (json_count(doc, types) != (uint32_t)hp->n_layer)
        return loader_fail(ld, EDGEMOE_ERR_FORMAT,
                           "hparams.layer_types: %u entries but num_hidden_layers is %d",
                           json_count(doc, types), hp->n_layer);
    json_ref t = json_first(doc, types);
    for (int32_t l = 0; l < hp->n_layer; l++, t = json_next(doc, t)) {
        if (json_string_eq(doc, t, "sliding_attention")) sliding[l] = 1;
        else if (json_string_eq(doc, t, "full_attention")) sliding[l] = 0;
        else
            return loader_fail(ld, EDGEMOE_ERR_FORMAT,
                               "hparams.layer_types[%d]: expected \"sliding_attention\" or "
                               "\"full_attention\"", l);
    }
    return EDGEMOE_OK;
}

/* rms_norm_eps, swiglu_limit, swiglu_alpha. */
static int hparams_read_reals(loader *ld, hparams *hp) {
    double eps, limit, alpha;
    int rc;
    if ((rc = json_real_field(ld, ld->hparams, "hparams", "rms_norm_eps", 0.0, 1.0, &eps))
        || (rc = json_real_field(ld, ld->hparams, "hparams", "swiglu_limit", 0.0, 1e30, &limit))
        || (rc = json_real_field(ld, ld->hparams, "hparams", "swiglu_alpha", 0.0, 1e30, &alpha)))
        return rc;
    hp->rms_norm_eps = (float)eps;
    hp->swiglu_limit = (float)limit;
    hp->swiglu_alpha = (float)alpha;
    return EDGEMOE_OK;
}

/* The YaRN members of "rope". "truncate" is optional and defaults to true, as in transformers. */
static int hparams_read_yarn(loader *ld, json_ref rope, hparams *hp) {
    const char *where = "hparams.rope";
    int rc;
    if ((rc = json_real_field(ld, rope, where, "factor", 0.0, 1e30, &hp->rope_factor))
        || (rc = json_real_field(ld, rope, where, "beta_fast", 0.0, 1e30, &hp->rope_beta_fast))
        || (rc = json_real_field(ld, rope, where, "beta_slow", 0.0, 1e30, &hp->rope_beta_slow))
        || (rc = json_real_field(ld, rope, where, "original_max_position_embeddings", 0.0, 1e30,
                                 &hp->rope_original_ctx)))
        return rc;
    json_ref truncate = json_get(&ld->doc, rope, "truncate");
    json_type t = json_type_of(&ld->doc, truncate);
    if (truncate != JSON_NONE && t != JSON_TRUE && t != JSON_FALSE)
        return loader_fail(ld, EDGEMOE_ERR_FORMAT, "hparams.rope.truncate: must be true or false");
    hp->rope_truncate = truncate == JSON_NONE || t == JSON_TRUE;
    return EDGEMOE_OK;
}

/* "rope": {"type": "yarn" | "default", "theta": ..., yarn members}. */
static int hparams_read_rope(loader *ld, hparams *hp) {
    const json_doc *doc = &ld->doc;
    json_ref rope = json_get(doc, ld->hparams, "rope");
    if (json_type_of(doc, rope) != JSON_OBJECT)
        return loader_fail(ld, EDGEMOE_ERR_FORMAT, "hparams.rope: missing or not an object");
    json_ref type = json_get(doc, rope, "type");
    if (json_type_of(doc, type) != JSON_STRING)
        return loader_fail(ld, EDGEMOE_ERR_FORMAT, "hparams.rope.type: missing or not a string");
    int rc = json_real_field(ld, rope, "hparams.rope", "theta", 1.0, 1e30, &hp->rope_theta);
    if (rc) return rc;
    if (json_string_eq(doc, type, "default")) {
        hp->rope_yarn = 0;
        return EDGEMOE_OK;
    }
    char name[64];
    if (!json_string_eq(doc, type, "yarn"))
        return loader_fail(ld, EDGEMOE_ERR_UNSUPPORTED,
                           "hparams.rope.type \"%s\" is not supported (expected \"yarn\" or \"default\")",
                           string_for_message(doc, type, name, sizeof name));
    hp->rope_yarn = 1;
    return hparams_read_yarn(ld, rope, hp);
}

/* Optional "eos_token_ids": non-negative integers (the C core does not use them). */
static int hparams_check_eos(loader *ld) {
    const json_doc *doc = &ld->doc;
    json_ref eos = json_get(doc, ld->hparams, "eos_token_ids");
    if (eos == JSON_NONE) return EDGEMOE_OK;
    if (json_type_of(doc, eos) != JSON_ARRAY)
        return loader_fail(ld, EDGEMOE_ERR_FORMAT, "hparams.eos_token_ids: not an array");
    json_ref id = json_first(doc, eos);
    for (uint32_t i = 0; i < json_count(doc, eos); i++, id = json_next(doc, id)) {
        int64_t v;
        if (!json_get_int(doc, id, &v) || v < 0)
            return loader_fail(ld, EDGEMOE_ERR_FORMAT,
                               "hparams.eos_token_ids[%u]: not a non-negative integer", i);
    }
    return EDGEMOE_OK;
}

int hparams_load(loader *ld, edgemoe_model *m) {
    hparams *hp = &m->hp;
    int rc;
    if ((rc = header_check_top(ld)) || (rc = hparams_read_sizes(ld, hp))
        || (rc = hparams_read_reals(ld, hp)) || (rc = hparams_read_rope(ld, hp))
        || (rc = hparams_check_eos(ld)))
        return rc;
    uint8_t sliding[HP_MAX_LAYERS];
    if ((rc = hparams_read_layer_types(ld, hp, sliding))) return rc;
    m->layers = calloc((size_t)(uint32_t)hp->n_layer, sizeof *m->layers);   /* n_layer in [1, 1024] */
    if (!m->layers) return loader_fail(ld, EDGEMOE_ERR_NOMEM, "out of memory for %d layers", hp->n_layer);
    for (int32_t l = 0; l < hp->n_layer; l++) m->layers[l].sliding = sliding[l];
    return EDGEMOE_OK;
}

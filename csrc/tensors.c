/*
 * tensors.c — check the header's tensor table and expert spans against the file, and bind
 * every weight the gpt-oss forward pass needs (FORMAT.md "tensors", "experts", "Tensor names").
 *
 * Every entry is checked, including ones the C core does not use (e.g. tokenizer.ranks):
 * known type, shape of non-negative integers, size implied by type and shape == length,
 * offset aligned, [offset, offset + length) inside [data_offset, file_length), no two
 * tensors overlapping, names unique. Then each required tensor must be present with an
 * accepted type and exactly the expected shape, and each (layer, expert) must have one
 * span holding exactly its four tensors, in order.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loader.h"

/* Sets of accepted types, as bit masks of 1 << EDGEMOE_TYPE_*. */
#define TYPES_FLOAT ((1u << EDGEMOE_TYPE_F32) | (1u << EDGEMOE_TYPE_F16) | (1u << EDGEMOE_TYPE_BF16))
#define TYPES_DENSE (TYPES_FLOAT | (1u << EDGEMOE_TYPE_Q8_0) | (1u << EDGEMOE_TYPE_MXFP4))
#define TYPES_MXFP4 (1u << EDGEMOE_TYPE_MXFP4)

#define NAME_MAX_LEN 160        /* longest name the C core looks up, with room to spare */
#define MAX_DIM ((int64_t)1 << 40)

/* The four tensors of an expert span, in their required order. */
static const char *const EXPERT_PARTS[4] = {
    "gate_up_proj", "gate_up_proj_bias", "down_proj", "down_proj_bias",
};

/* ---------------------------------------------------------------------------------------
 * Reading one entry of "tensors"
 */

/* Decode entry i's "name" into *cursor (advanced past its NUL). */
static int entry_read_name(loader *ld, uint32_t i, json_ref obj, tensor_entry *e, char **cursor) {
    json_ref v = json_get(&ld->doc, obj, "name");
    if (json_type_of(&ld->doc, v) != JSON_STRING)
        return loader_fail(ld, EDGEMOE_ERR_FORMAT, "tensors[%u].name: missing or not a string", i);
    size_t cap = (size_t)ld->doc.values[v].len + 1;
    size_t n = json_string_decode(&ld->doc, v, *cursor, cap);
    if (n == SIZE_MAX || n == 0 || strlen(*cursor) != n)
        return loader_fail(ld, EDGEMOE_ERR_FORMAT, "tensors[%u].name: empty or contains a NUL", i);
    e->name = *cursor;
    *cursor += n + 1;
    return EDGEMOE_OK;
}

/* "type": one of the names of format.h. */
static int entry_read_type(loader *ld, json_ref obj, tensor_entry *e) {
    char buf[16];
    json_ref v = json_get(&ld->doc, obj, "type");
    size_t n = json_string_decode(&ld->doc, v, buf, sizeof buf);
    e->type = n == SIZE_MAX ? -1 : type_from_name(buf, n);
    if (e->type < 0)
        return loader_fail(ld, EDGEMOE_ERR_FORMAT,
                           "tensor '%s': type: missing or not one of f32, f16, bf16, u8, q8_0, mxfp4",
                           e->name);
    return EDGEMOE_OK;
}

/* "shape": 0..TENSOR_MAX_DIMS integers in [0, 2^40]; their product into *n_elements. */
static int entry_read_shape(loader *ld, json_ref obj, tensor_entry *e, uint64_t *n_elements) {
    const json_doc *doc = &ld->doc;
    json_ref shape = json_get(doc, obj, "shape");
    if (json_type_of(doc, shape) != JSON_ARRAY || json_count(doc, shape) > TENSOR_MAX_DIMS)
        return loader_fail(ld, EDGEMOE_ERR_FORMAT,
                           "tensor '%s': shape: missing or not an array of at most %d dimensions",
                           e->name, TENSOR_MAX_DIMS);
    e->n_dims = (int)json_count(doc, shape);
    *n_elements = 1;
    json_ref d = json_first(doc, shape);
    for (int k = 0; k < e->n_dims; k++, d = json_next(doc, d)) {
        int64_t dim;
        if (!json_get_int(doc, d, &dim) || dim < 0 || dim > MAX_DIM)
            return loader_fail(ld, EDGEMOE_ERR_FORMAT,
                               "tensor '%s': shape[%d]: not an integer in [0, 2^40]", e->name, k);
        e->shape[k] = dim;
        if (dim != 0 && *n_elements > UINT64_MAX / (uint64_t)dim)
            return loader_fail(ld, EDGEMOE_ERR_FORMAT,
                               "tensor '%s': shape: element count overflows 64 bits", e->name);
        *n_elements *= (uint64_t)dim;
    }
    return EDGEMOE_OK;
}

/* "crc32": 8 lowercase hex digits (checked by `edgemoe verify`, not here). */
static int entry_check_crc_field(loader *ld, json_ref obj, const tensor_entry *e) {
    char buf[16];
    size_t n = json_string_decode(&ld->doc, json_get(&ld->doc, obj, "crc32"), buf, sizeof buf);
    int ok = n == 8;
    for (size_t k = 0; ok && k < 8; k++)
        ok = (buf[k] >= '0' && buf[k] <= '9') || (buf[k] >= 'a' && buf[k] <= 'f');
    if (!ok)
        return loader_fail(ld, EDGEMOE_ERR_FORMAT,
                           "tensor '%s': crc32: missing or not 8 lowercase hex digits", e->name);
    return EDGEMOE_OK;
}

/* A non-negative integer member `key` of an entry, as u64. */
static int entry_read_u64(loader *ld, json_ref obj, const tensor_entry *e, const char *key,
                          uint64_t *out) {
    int64_t v;
    if (!json_get_int(&ld->doc, json_get(&ld->doc, obj, key), &v) || v < 0)
        return loader_fail(ld, EDGEMOE_ERR_FORMAT,
                           "tensor '%s': %s: missing or not a non-negative integer", e->name, key);
    *out = (uint64_t)v;
    return EDGEMOE_OK;
}

/* length == size implied by type and shape; offset aligned and inside the data section. */
static int entry_check_placement(loader *ld, const tensor_entry *e, uint64_t n_elements) {
    const preamble *pre = &ld->pre;
    uint64_t last = e->n_dims > 0 ? (uint64_t)e->shape[e->n_dims - 1] : 1;
    uint64_t nbytes = 0;
    if (!tensor_nbytes(e->type, n_elements, last, &nbytes))
        return loader_fail(ld, EDGEMOE_ERR_FORMAT,
                           "tensor '%s': shape does not fit type %s (last dimension %llu must be a "
                           "multiple of 32 for blocked types, size must fit 64 bits)",
                           e->name, type_name(e->type), (unsigned long long)last);
    if (e->length != nbytes)
        return loader_fail(ld, EDGEMOE_ERR_FORMAT,
                           "tensor '%s': length %llu but type %s and its shape imply %llu bytes",
                           e->name, (unsigned long long)e->length, type_name(e->type),
                           (unsigned long long)nbytes);
    if (e->offset % pre->alignment != 0)
        return loader_fail(ld, EDGEMOE_ERR_FORMAT,
                           "tensor '%s': offset %llu is not a multiple of alignment %u", e->name,
                           (unsigned long long)e->offset, pre->alignment);
    if (e->offset < pre->data_offset)
        return loader_fail(ld, EDGEMOE_ERR_FORMAT, "tensor '%s': offset %llu is before data_offset %llu",
                           e->name, (unsigned long long)e->offset,
                           (unsigned long long)pre->data_offset);
    if (e->offset > ld->size || e->length > ld->size - e->offset)
        return loader_fail(ld, EDGEMOE_ERR_FORMAT,
                           "tensor '%s': offset %llu + length %llu exceeds file length %llu", e->name,
                           (unsigned long long)e->offset, (unsigned long long)e->length,
                           (unsigned long long)ld->size);
    return EDGEMOE_OK;
}

/* Read and check entry i (JSON object obj) into e. */
static int entry_read(loader *ld, uint32_t i, json_ref obj, tensor_entry *e, char **cursor) {
    if (json_type_of(&ld->doc, obj) != JSON_OBJECT)
        return loader_fail(ld, EDGEMOE_ERR_FORMAT, "tensors[%u]: not an object", i);
    uint64_t n_elements = 0;
    int rc;
    if ((rc = entry_read_name(ld, i, obj, e, cursor)) || (rc = entry_read_type(ld, obj, e))
        || (rc = entry_read_shape(ld, obj, e, &n_elements))
        || (rc = entry_read_u64(ld, obj, e, "offset", &e->offset))
        || (rc = entry_read_u64(ld, obj, e, "length", &e->length))
        || (rc = entry_check_crc_field(ld, obj, e)))
        return rc;
    return entry_check_placement(ld, e, n_elements);
}

/* Read every entry of "tensors" into ld->entries. */
static int table_read(loader *ld) {
    const json_doc *doc = &ld->doc;
    json_ref tensors = json_get(doc, 0, "tensors");
    if (json_type_of(doc, tensors) != JSON_ARRAY)
        return loader_fail(ld, EDGEMOE_ERR_FORMAT, "tensors: missing or not an array");
    ld->n_entries = json_count(doc, tensors);
    ld->entries = calloc((size_t)ld->n_entries + 1, sizeof *ld->entries);
    /* decoded names are no longer than their raw text, plus one NUL each */
    ld->names = malloc(doc->text_len + (size_t)ld->n_entries + 1);
    if (!ld->entries || !ld->names)
        return loader_fail(ld, EDGEMOE_ERR_NOMEM, "out of memory for %u tensor entries", ld->n_entries);
    char *cursor = ld->names;
    json_ref item = json_first(doc, tensors);
    for (uint32_t i = 0; i < ld->n_entries; i++, item = json_next(doc, item)) {
        int rc = entry_read(ld, i, item, &ld->entries[i], &cursor);
        if (rc) return rc;
    }
    return EDGEMOE_OK;
}

/* ---------------------------------------------------------------------------------------
 * Name index (open addressing, FNV-1a)
 */

static uint32_t name_hash(const char *s) {
    uint32_t h = 2166136261u;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

/* Index of the entry named `name`, or UINT32_MAX. */
static uint32_t table_find(const loader *ld, const char *name) {
    for (uint32_t slot = name_hash(name) & ld->hash_mask;; slot = (slot + 1) & ld->hash_mask) {
        uint32_t v = ld->hash[slot];
        if (v == 0) return UINT32_MAX;
        if (strcmp(ld->entries[v - 1].name, name) == 0) return v - 1;
    }
}

/* Build the name index; a name listed twice is an error. */
static int table_index(loader *ld) {
    uint32_t size = 16;
    while (size < 2 * (uint64_t)ld->n_entries) size *= 2;   /* n_entries < 2^31: header <= 256 MiB */
    ld->hash = calloc(size, sizeof *ld->hash);
    if (!ld->hash) return loader_fail(ld, EDGEMOE_ERR_NOMEM, "out of memory for the tensor index");
    ld->hash_mask = size - 1;
    for (uint32_t i = 0; i < ld->n_entries; i++) {
        const char *name = ld->entries[i].name;
        if (table_find(ld, name) != UINT32_MAX)
            return loader_fail(ld, EDGEMOE_ERR_FORMAT, "tensor '%s': listed twice", name);
        uint32_t slot = name_hash(name) & ld->hash_mask;
        while (ld->hash[slot] != 0) slot = (slot + 1) & ld->hash_mask;
        ld->hash[slot] = i + 1;
    }
    return EDGEMOE_OK;
}

/* ---------------------------------------------------------------------------------------
 * Order by offset: overlaps, and the rank used by the expert span check
 */

typedef struct offset_key {
    uint64_t offset, length;
    uint32_t index;
} offset_key;

static int offset_key_compare(const void *pa, const void *pb) {
    const offset_key *a = pa, *b = pb;
    if (a->offset != b->offset) return a->offset < b->offset ? -1 : 1;
    if (a->length != b->length) return a->length < b->length ? -1 : 1;
    return a->index < b->index ? -1 : a->index > b->index;
}

/* Sort the entries by offset into ld->by_offset / ld->rank; refuse overlapping tensors. */
static int table_sort(loader *ld) {
    const uint32_t n = ld->n_entries;
    offset_key *keys = malloc(((size_t)n + 1) * sizeof *keys);
    ld->by_offset = malloc(((size_t)n + 1) * sizeof *ld->by_offset);
    ld->rank = malloc(((size_t)n + 1) * sizeof *ld->rank);
    if (!keys || !ld->by_offset || !ld->rank) {
        free(keys);
        return loader_fail(ld, EDGEMOE_ERR_NOMEM, "out of memory sorting %u tensors", n);
    }
    for (uint32_t i = 0; i < n; i++)
        keys[i] = (offset_key){ld->entries[i].offset, ld->entries[i].length, i};
    qsort(keys, n, sizeof *keys, offset_key_compare);
    uint32_t widest = UINT32_MAX;   /* non-empty entry reaching furthest so far */
    int rc = EDGEMOE_OK;
    for (uint32_t r = 0; r < n; r++) {
        const offset_key *k = &keys[r];
        ld->by_offset[r] = k->index;
        ld->rank[k->index] = r;
        if (k->length == 0 || rc) continue;
        const tensor_entry *w = widest == UINT32_MAX ? NULL : &ld->entries[widest];
        if (w && k->offset < w->offset + w->length)
            rc = loader_fail(ld, EDGEMOE_ERR_FORMAT, "tensor '%s': bytes [%llu, %llu) overlap tensor '%s'",
                             ld->entries[k->index].name, (unsigned long long)k->offset,
                             (unsigned long long)(k->offset + k->length), w->name);
        if (!w || k->offset + k->length > w->offset + w->length) widest = k->index;
    }
    free(keys);
    return rc;
}

/* ---------------------------------------------------------------------------------------
 * Binding required tensors
 */

/* "f32, f16, bf16" for a mask of types. */
static void types_describe(unsigned accepted, char *buf, size_t cap) {
    size_t used = 0;
    buf[0] = '\0';
    for (int t = 0; t < EDGEMOE_TYPE_COUNT; t++) {
        if (!(accepted & (1u << t))) continue;
        int n = snprintf(buf + used, cap - used, "%s%s", used ? ", " : "", type_name(t));
        if (n < 0 || (size_t)n >= cap - used) return;
        used += (size_t)n;
    }
}

/* "[a, b]" for a shape. */
static void shape_describe(const int64_t *shape, int n_dims, char *buf, size_t cap) {
    size_t used = 0;
    int n = snprintf(buf, cap, "[");
    for (int k = 0; n >= 0 && (size_t)n < cap - used && k < n_dims; k++) {
        used += (size_t)n;
        n = snprintf(buf + used, cap - used, "%s%lld", k ? ", " : "", (long long)shape[k]);
    }
    if (n >= 0 && (size_t)n < cap - used) used += (size_t)n;
    if (used + 1 < cap) snprintf(buf + used, cap - used, "]");
}

/*
 * Bind the tensor `name` into *out: it must exist, have a type in `accepted`, and shape
 * [rows, cols] (or [cols] when rows == 0).
 */
static int weight_bind(loader *ld, const char *name, unsigned accepted, int64_t rows, int64_t cols,
                       tensor *out) {
    uint32_t i = table_find(ld, name);
    if (i == UINT32_MAX)
        return loader_fail(ld, EDGEMOE_ERR_FORMAT, "required tensor '%s' is missing", name);
    const tensor_entry *e = &ld->entries[i];
    char want[96], got[96];
    if (!(accepted & (1u << e->type))) {
        types_describe(accepted, want, sizeof want);
        return loader_fail(ld, EDGEMOE_ERR_FORMAT, "tensor '%s': type %s is not accepted here (expected %s)",
                           name, type_name(e->type), want);
    }
    const int64_t expect[2] = {rows ? rows : cols, cols};
    const int n_dims = rows ? 2 : 1;
    if (e->n_dims != n_dims || e->shape[0] != expect[0] || (n_dims == 2 && e->shape[1] != expect[1])) {
        shape_describe(expect, n_dims, want, sizeof want);
        shape_describe(e->shape, e->n_dims, got, sizeof got);
        return loader_fail(ld, EDGEMOE_ERR_FORMAT, "tensor '%s': shape %s, expected %s", name, got, want);
    }
    *out = (tensor){.data = ld->map + e->offset, .type = e->type, .rows = rows ? rows : 1, .cols = cols};
    return EDGEMOE_OK;
}

/* Bind "model.layers.<l>.<suffix>". */
static int layer_weight(loader *ld, int32_t l, const char *suffix, unsigned accepted, int64_t rows,
                        int64_t cols, tensor *out) {
    char name[NAME_MAX_LEN];
    snprintf(name, sizeof name, "model.layers.%d.%s", l, suffix);
    return weight_bind(ld, name, accepted, rows, cols, out);
}

/* Name of part k (EXPERT_PARTS) of expert e of layer l. */
static void expert_part_name(char *buf, size_t cap, int32_t l, int32_t e, int k) {
    snprintf(buf, cap, "model.layers.%d.mlp.experts.%d.%s", l, e, EXPERT_PARTS[k]);
}

static int expert_bind(loader *ld, const hparams *hp, int32_t l, int32_t e, expert_weights *x) {
    const int64_t H = hp->n_embd, I = hp->n_ff;
    const int64_t rows[4] = {2 * I, 0, H, 0}, cols[4] = {H, 2 * I, I, H};
    const unsigned accepted[4] = {TYPES_MXFP4, TYPES_FLOAT, TYPES_MXFP4, TYPES_FLOAT};
    tensor *parts[4] = {&x->gate_up, &x->gate_up_bias, &x->down, &x->down_bias};
    for (int k = 0; k < 4; k++) {
        char name[NAME_MAX_LEN];
        expert_part_name(name, sizeof name, l, e, k);
        int rc = weight_bind(ld, name, accepted[k], rows[k], cols[k], parts[k]);
        if (rc) return rc;
    }
    return EDGEMOE_OK;
}

static int layer_bind(loader *ld, edgemoe_model *m, int32_t l) {
    const hparams *hp = &m->hp;
    layer_weights *L = &m->layers[l];
    const int64_t H = hp->n_embd, E = hp->n_expert;
    const int64_t Q = (int64_t)hp->n_head * hp->head_dim, KV = (int64_t)hp->n_head_kv * hp->head_dim;
    int rc;
    if ((rc = layer_weight(ld, l, "input_layernorm.weight", TYPES_FLOAT, 0, H, &L->attn_norm))
        || (rc = layer_weight(ld, l, "self_attn.q_proj.weight", TYPES_DENSE, Q, H, &L->wq))
        || (rc = layer_weight(ld, l, "self_attn.q_proj.bias", TYPES_FLOAT, 0, Q, &L->bq))
        || (rc = layer_weight(ld, l, "self_attn.k_proj.weight", TYPES_DENSE, KV, H, &L->wk))
        || (rc = layer_weight(ld, l, "self_attn.k_proj.bias", TYPES_FLOAT, 0, KV, &L->bk))
        || (rc = layer_weight(ld, l, "self_attn.v_proj.weight", TYPES_DENSE, KV, H, &L->wv))
        || (rc = layer_weight(ld, l, "self_attn.v_proj.bias", TYPES_FLOAT, 0, KV, &L->bv))
        || (rc = layer_weight(ld, l, "self_attn.o_proj.weight", TYPES_DENSE, H, Q, &L->wo))
        || (rc = layer_weight(ld, l, "self_attn.o_proj.bias", TYPES_FLOAT, 0, H, &L->bo))
        || (rc = layer_weight(ld, l, "self_attn.sinks", TYPES_FLOAT, 0, hp->n_head, &L->sinks))
        || (rc = layer_weight(ld, l, "post_attention_layernorm.weight", TYPES_FLOAT, 0, H, &L->mlp_norm))
        || (rc = layer_weight(ld, l, "mlp.router.weight", TYPES_FLOAT, E, H, &L->router))
        || (rc = layer_weight(ld, l, "mlp.router.bias", TYPES_FLOAT, 0, E, &L->router_bias)))
        return rc;
    L->experts = m->experts + (size_t)l * (size_t)hp->n_expert;
    for (int32_t e = 0; e < hp->n_expert; e++) {
        if ((rc = expert_bind(ld, hp, l, e, &L->experts[e]))) return rc;
    }
    return EDGEMOE_OK;
}

/* Bind the embedding, every layer, the final norm and the output head. */
static int weights_bind(loader *ld, edgemoe_model *m) {
    const hparams *hp = &m->hp;
    m->experts = calloc((size_t)hp->n_layer * (size_t)hp->n_expert, sizeof *m->experts);
    if (!m->experts) return loader_fail(ld, EDGEMOE_ERR_NOMEM, "out of memory for the expert table");
    int rc;
    if ((rc = weight_bind(ld, "model.embed_tokens.weight", TYPES_DENSE, hp->n_vocab, hp->n_embd, &m->embed))
        || (rc = weight_bind(ld, "model.norm.weight", TYPES_FLOAT, 0, hp->n_embd, &m->norm))
        || (rc = weight_bind(ld, "lm_head.weight", TYPES_DENSE, hp->n_vocab, hp->n_embd, &m->lm_head)))
        return rc;
    for (int32_t l = 0; l < hp->n_layer; l++) {
        if ((rc = layer_bind(ld, m, l))) return rc;
    }
    return EDGEMOE_OK;
}

/* ---------------------------------------------------------------------------------------
 * Expert spans
 */

/* One row of "experts", read. */
typedef struct span {
    int64_t layer, expert;
    uint64_t offset, length;
} span;

static int span_read(loader *ld, uint32_t i, json_ref obj, const hparams *hp, span *s) {
    const char *keys[4] = {"layer", "expert", "offset", "length"};
    int64_t v[4];
    for (int k = 0; k < 4; k++) {
        if (!json_get_int(&ld->doc, json_get(&ld->doc, obj, keys[k]), &v[k]) || v[k] < 0)
            return loader_fail(ld, EDGEMOE_ERR_FORMAT,
                               "experts[%u].%s: missing or not a non-negative integer", i, keys[k]);
    }
    *s = (span){v[0], v[1], (uint64_t)v[2], (uint64_t)v[3]};
    if (s->layer >= hp->n_layer || s->expert >= hp->n_expert)
        return loader_fail(ld, EDGEMOE_ERR_FORMAT,
                           "experts[%u]: layer %lld expert %lld is out of range (%d layers, %d experts)",
                           i, (long long)s->layer, (long long)s->expert, hp->n_layer, hp->n_expert);
    return EDGEMOE_OK;
}

/* The span's own placement: aligned, inside the data section. */
static int span_check_bounds(loader *ld, uint32_t i, const span *s) {
    if (s->offset % ld->pre.expert_alignment != 0)
        return loader_fail(ld, EDGEMOE_ERR_FORMAT,
                           "experts[%u]: offset %llu is not a multiple of expert_alignment %u", i,
                           (unsigned long long)s->offset, ld->pre.expert_alignment);
    if (s->offset < ld->pre.data_offset || s->offset > ld->size || s->length > ld->size - s->offset)
        return loader_fail(ld, EDGEMOE_ERR_FORMAT,
                           "experts[%u]: offset %llu + length %llu is outside the data section "
                           "[%llu, %llu)", i, (unsigned long long)s->offset,
                           (unsigned long long)s->length, (unsigned long long)ld->pre.data_offset,
                           (unsigned long long)ld->size);
    return EDGEMOE_OK;
}

/*
 * The span holds exactly its expert's four tensors, in order (each 64-aligned, so there may
 * be padding between them), ends where the last one ends, and holds nothing else. Adds the four tensors' lengths to *parts_bytes.
 */
static int span_check_contents(loader *ld, uint32_t i, const span *s, uint64_t *parts_bytes) {
    uint32_t idx[4];
    for (int k = 0; k < 4; k++) {
        char name[NAME_MAX_LEN];
        expert_part_name(name, sizeof name, (int32_t)s->layer, (int32_t)s->expert, k);
        idx[k] = table_find(ld, name);   /* present: weights_bind checked it */
        *parts_bytes += ld->entries[idx[k]].length;
    }
    const tensor_entry *first = &ld->entries[idx[0]], *last = &ld->entries[idx[3]];
    const uint64_t end = s->offset + s->length, last_end = last->offset + last->length;
    const uint32_t r = ld->rank[idx[0]];
    int in_order = ld->rank[idx[1]] == r + 1 && ld->rank[idx[2]] == r + 2 && ld->rank[idx[3]] == r + 3;
    if (first->offset != s->offset || !in_order || last_end > end)
        return loader_fail(ld, EDGEMOE_ERR_FORMAT,
                           "experts[%u] (layer %lld expert %lld): span [%llu, %llu) does not hold "
                           "gate_up_proj, gate_up_proj_bias, down_proj, down_proj_bias contiguously "
                           "in that order", i, (long long)s->layer, (long long)s->expert,
                           (unsigned long long)s->offset, (unsigned long long)end);
    if (end != last_end)
        return loader_fail(ld, EDGEMOE_ERR_FORMAT,
                           "experts[%u]: span ends at %llu but its last tensor ends at %llu", i,
                           (unsigned long long)end, (unsigned long long)last_end);
    if (r + 4 < ld->n_entries && ld->entries[ld->by_offset[r + 4]].offset < end)
        return loader_fail(ld, EDGEMOE_ERR_FORMAT, "experts[%u]: span contains tensor '%s'", i,
                           ld->entries[ld->by_offset[r + 4]].name);
    return EDGEMOE_OK;
}

/*
 * Every (layer, expert) has exactly one valid span. Sums the spans' bytes into
 * m->info.expert_bytes and the bytes of the tensors inside them into *part_bytes.
 */
static int experts_check(loader *ld, edgemoe_model *m, uint64_t *part_bytes) {
    const json_doc *doc = &ld->doc;
    const hparams *hp = &m->hp;
    json_ref spans = json_get(doc, 0, "experts");
    if (json_type_of(doc, spans) != JSON_ARRAY)
        return loader_fail(ld, EDGEMOE_ERR_FORMAT, "experts: missing or not an array");
    uint8_t *seen = calloc((size_t)hp->n_layer * (size_t)hp->n_expert, 1);
    if (!seen) return loader_fail(ld, EDGEMOE_ERR_NOMEM, "out of memory checking expert spans");
    int rc = EDGEMOE_OK;
    json_ref item = json_first(doc, spans);
    for (uint32_t i = 0; !rc && i < json_count(doc, spans); i++, item = json_next(doc, item)) {
        span s = {0};
        if ((rc = span_read(ld, i, item, hp, &s)) || (rc = span_check_bounds(ld, i, &s))
            || (rc = span_check_contents(ld, i, &s, part_bytes)))
            break;
        uint8_t *mark = &seen[s.layer * hp->n_expert + s.expert];
        if (*mark)
            rc = loader_fail(ld, EDGEMOE_ERR_FORMAT, "experts[%u]: second span for layer %lld expert %lld",
                             i, (long long)s.layer, (long long)s.expert);
        *mark = 1;
        m->info.expert_bytes += s.length;
        expert_weights *e = &m->experts[s.layer * hp->n_expert + s.expert];
        e->span = ld->map + s.offset;
        e->span_length = (size_t)s.length;
    }
    for (size_t k = 0; !rc && k < (size_t)hp->n_layer * (size_t)hp->n_expert; k++) {
        if (!seen[k])
            rc = loader_fail(ld, EDGEMOE_ERR_FORMAT, "experts: no span for layer %zu expert %zu",
                             k / (size_t)hp->n_expert, k % (size_t)hp->n_expert);
    }
    free(seen);
    return rc;
}

/* Sum of the lengths of all tensors in the table. */
static uint64_t table_bytes(const loader *ld) {
    uint64_t all = 0;   /* cannot overflow: the tensors do not overlap inside the file */
    for (uint32_t i = 0; i < ld->n_entries; i++) all += ld->entries[i].length;
    return all;
}

int tensors_load(loader *ld, edgemoe_model *m) {
    uint64_t expert_part_bytes = 0;
    int rc;
    if ((rc = table_read(ld)) || (rc = table_index(ld)) || (rc = table_sort(ld))
        || (rc = weights_bind(ld, m)) || (rc = experts_check(ld, m, &expert_part_bytes)))
        return rc;
    m->info.dense_bytes = table_bytes(ld) - expert_part_bytes;
    return EDGEMOE_OK;
}

void tensors_release(loader *ld) {
    free(ld->entries);
    free(ld->names);
    free(ld->hash);
    free(ld->rank);
    free(ld->by_offset);
    ld->entries = NULL;
    ld->names = NULL;
    ld->hash = ld->rank = ld->by_offset = NULL;
}

void layer_dense_tensors(layer_weights *L, tensor *out[LAYER_DENSE_TENSORS]) {
    tensor *all[LAYER_DENSE_TENSORS] = {&L->attn_norm, &L->wq, &L->bq, &L->wk, &L->bk, &L->wv,
                                        &L->bv, &L->wo, &L->bo, &L->sinks, &L->mlp_norm,
                                        &L->router, &L->router_bias};
    memcpy(out, all, sizeof all);
}

size_t tensor_bytes(const tensor *t) {
    uint64_t n = 0;
    if (!tensor_nbytes(t->type, (uint64_t)t->rows * (uint64_t)t->cols, (uint64_t)t->cols, &n))
        return 0;
    return (size_t)n;
}

/*
 * format.c — model.bin v1 constants turned into functions: preamble decoding, type names
 * and tensor sizes (docs/FORMAT.md, "Preamble" and "Tensor types").
 */
#include "format.h"

#include <string.h>

/* Little-endian loads that do not depend on the host's byte order or alignment. */
static uint32_t load_le32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t load_le64(const uint8_t *p) {
    return (uint64_t)load_le32(p) | (uint64_t)load_le32(p + 4) << 32;
}

void preamble_read(const uint8_t *p, preamble *out) {
    out->version = load_le32(p + PRE_VERSION);
    out->header_crc32 = load_le32(p + PRE_HEADER_CRC32);
    out->header_offset = load_le64(p + PRE_HEADER_OFFSET);
    out->header_length = load_le64(p + PRE_HEADER_LENGTH);
    out->data_offset = load_le64(p + PRE_DATA_OFFSET);
    out->file_length = load_le64(p + PRE_FILE_LENGTH);
    out->alignment = load_le32(p + PRE_ALIGNMENT);
    out->expert_alignment = load_le32(p + PRE_EXPERT_ALIGNMENT);
}

/* Header names of the types, indexed by edgemoe_type. */
static const char *const TYPE_NAMES[EDGEMOE_TYPE_COUNT] = {
    [EDGEMOE_TYPE_F32] = "f32",   [EDGEMOE_TYPE_F16] = "f16",   [EDGEMOE_TYPE_BF16] = "bf16",
    [EDGEMOE_TYPE_U8] = "u8",     [EDGEMOE_TYPE_Q8_0] = "q8_0", [EDGEMOE_TYPE_MXFP4] = "mxfp4",
};

const char *type_name(int type) {
    if (type < 0 || type >= EDGEMOE_TYPE_COUNT) return NULL;
    return TYPE_NAMES[type];
}

int type_from_name(const char *name, size_t n) {
    for (int t = 0; t < EDGEMOE_TYPE_COUNT; t++) {
        if (strlen(TYPE_NAMES[t]) == n && memcmp(TYPE_NAMES[t], name, n) == 0) return t;
    }
    return -1;
}

/* Size of `count` units of `unit_bytes` each, or 0 on overflow (the result is then unused). */
static int mul_u64(uint64_t a, uint64_t b, uint64_t *out) {
    if (a != 0 && b > UINT64_MAX / a) return 0;
    *out = a * b;
    return 1;
}

int tensor_nbytes(int type, uint64_t n_elements, uint64_t last_dim, uint64_t *out) {
    switch (type) {
    case EDGEMOE_TYPE_F32: return mul_u64(n_elements, 4, out);
    case EDGEMOE_TYPE_F16:
    case EDGEMOE_TYPE_BF16: return mul_u64(n_elements, 2, out);
    case EDGEMOE_TYPE_U8: *out = n_elements; return 1;
    case EDGEMOE_TYPE_Q8_0:
        if (last_dim % QK8_0 != 0) return 0;
        return mul_u64(n_elements / QK8_0, sizeof(block_q8_0), out);
    case EDGEMOE_TYPE_MXFP4:
        /* per 32 elements: 16 bytes of codes + 1 scale byte */
        if (last_dim % QK_MXFP4 != 0) return 0;
        return mul_u64(n_elements / QK_MXFP4, sizeof(group_mxfp4) + 1, out);
    default: return 0;
    }
}

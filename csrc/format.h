/*
 * format.h — the C side of the model.bin v1 file format (docs/FORMAT.md).
 *
 * Constants, the preamble layout, the tensor types and their block structs. The Python
 * side (edgemoe/format.py) holds the same constants; both must agree with FORMAT.md.
 */
#ifndef EDGEMOE_FORMAT_H
#define EDGEMOE_FORMAT_H

#include <stddef.h>
#include <stdint.h>

/* The file is little-endian and tensors are read in place, so the host must be too. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "edgemoe reads model.bin in place and needs a little-endian host"
#endif

/* ---------------------------------------------------------------------------------------
 * Preamble: 64 bytes at offset 0, every integer little-endian.
 */
#define EDGEMOE_MAGIC "EDGEMOE\0"            /* 8 bytes, including the NUL */
#define EDGEMOE_MAGIC_LEN 8
#define EDGEMOE_FORMAT_VERSION 1u
#define EDGEMOE_PREAMBLE_SIZE 64u
#define EDGEMOE_HEADER_OFFSET 64u            /* header_offset in version 1 */
#define EDGEMOE_DATA_ALIGN 4096u             /* data_offset is a multiple of this */
#define EDGEMOE_MIN_EXPERT_ALIGN 4096u       /* expert_alignment is a power of two >= this */

/* Byte offsets of the preamble fields. */
enum {
    PRE_MAGIC = 0,              /* u8[8]  */
    PRE_VERSION = 8,            /* u32    */
    PRE_HEADER_CRC32 = 12,      /* u32    */
    PRE_HEADER_OFFSET = 16,     /* u64    */
    PRE_HEADER_LENGTH = 24,     /* u64    */
    PRE_DATA_OFFSET = 32,       /* u64    */
    PRE_FILE_LENGTH = 40,       /* u64    */
    PRE_ALIGNMENT = 48,         /* u32    */
    PRE_EXPERT_ALIGNMENT = 52,  /* u32    */
    PRE_RESERVED = 56           /* u8[8]  */
};

/* The preamble, decoded into host integers (see preamble_read). */
typedef struct preamble {
    uint32_t version;
    uint32_t header_crc32;
    uint64_t header_offset;
    uint64_t header_length;
    uint64_t data_offset;
    uint64_t file_length;
    uint32_t alignment;
    uint32_t expert_alignment;
} preamble;

/* Decode the 64 preamble bytes at p (the caller has checked they exist). Magic not checked. */
void preamble_read(const uint8_t *p, preamble *out);

/* ---------------------------------------------------------------------------------------
 * Tensor types. The numbers are stable (they cross the C API as edgemoe_model_info.dense_type).
 */
typedef enum edgemoe_type {
    EDGEMOE_TYPE_F32 = 0,
    EDGEMOE_TYPE_F16 = 1,
    EDGEMOE_TYPE_BF16 = 2,
    EDGEMOE_TYPE_U8 = 3,
    EDGEMOE_TYPE_Q8_0 = 4,
    EDGEMOE_TYPE_MXFP4 = 5,
    EDGEMOE_TYPE_COUNT = 6
} edgemoe_type;

#define QK8_0 32     /* elements per q8_0 block */
#define QK_MXFP4 32  /* elements per mxfp4 group (one E8M0 scale) */

/* q8_0: 32 int8 values sharing one f16 scale; value = d * qs[i]. Same as ggml's block_q8_0. */
typedef struct block_q8_0 {
    uint16_t d;          /* f16 bits of the scale */
    int8_t qs[QK8_0];
} block_q8_0;
_Static_assert(sizeof(block_q8_0) == 34, "q8_0 block must be 34 bytes");

/* mxfp4: 16 bytes of packed E2M1 codes for 32 elements (low nibble = even element). The
 * E8M0 scales are not interleaved: they follow all the groups of the tensor (FORMAT.md). */
typedef struct group_mxfp4 {
    uint8_t qs[QK_MXFP4 / 2];
} group_mxfp4;
_Static_assert(sizeof(group_mxfp4) == 16, "mxfp4 group must be 16 bytes");

/* Name of a type as written in the header ("f32", ..., "mxfp4"), or NULL if unknown. */
const char *type_name(int type);

/* Type named by the n bytes at name, or -1 if none. */
int type_from_name(const char *name, size_t n);

/*
 * Bytes a tensor of n_elements of this type occupies, whose last dimension is last_dim.
 * Success: returns 1 and stores the size in *out. Failure (unknown type, last_dim not a
 * multiple of the block size for a blocked type, or overflow of 64 bits): returns 0.
 */
int tensor_nbytes(int type, uint64_t n_elements, uint64_t last_dim, uint64_t *out);

#endif /* EDGEMOE_FORMAT_H */

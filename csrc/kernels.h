/*
 * kernels.h — the weight view the kernels read, and the kernel dispatch table.
 *
 * The forward pass calls matrix-vector products through a kernel_table so that faster
 * twins (AVX2, AVX-512, NEON) can be chosen at run time. Today only the scalar reference
 * table exists (kernels_ref.c); EDGEMOE_KERNELS=reference will keep forcing it once others
 * are added.
 */
#ifndef EDGEMOE_KERNELS_H
#define EDGEMOE_KERNELS_H

#include <stdint.h>

#include "format.h"

/*
 * A weight tensor as the kernels see it: a read-only view into the mapped file.
 * A 2-D weight W[rows, cols] maps x[cols] to y[rows]; a 1-D tensor has rows = 1.
 * Layout by type (FORMAT.md): plain row-major for f32/f16/bf16; q8_0 rows of cols/32
 * blocks; mxfp4 all rows' 16-byte groups first, then all rows' scale bytes.
 */
typedef struct tensor {
    const uint8_t *data; /* first byte of the tensor in the mapping */
    int type;            /* EDGEMOE_TYPE_* */
    int64_t rows;
    int64_t cols;
} tensor;

/* y[rows] = W[rows, cols] · x[cols]. work: scratch of at least cols floats. */
typedef void (*matvec_fn)(const tensor *w, const float *x, float *y, float *work);

/* One set of kernels. */
typedef struct kernel_table {
    const char *name;                       /* "reference", ... */
    matvec_fn matvec[EDGEMOE_TYPE_COUNT];   /* by weight type; NULL where a type is not a weight (u8) */
} kernel_table;

/*
 * The kernel set to use: the one named by the environment variable EDGEMOE_KERNELS if it is
 * set and available here, else the best available on this CPU. Never NULL.
 */
const kernel_table *kernels_get(void);

#endif /* EDGEMOE_KERNELS_H */

/*
 * loader.h — state shared by the steps of edgemoe_model_open while it validates a file.
 *
 * model.c maps the file and checks the preamble; hparams.c reads and checks the header's
 * top level and "hparams"; tensors.c checks the tensor table and the expert spans and
 * binds every weight the forward pass needs. Each step fails through loader_fail, which
 * writes "<path>: <what is wrong>" into the caller's buffer.
 */
#ifndef EDGEMOE_LOADER_H
#define EDGEMOE_LOADER_H

#include <stddef.h>
#include <stdint.h>

#include "format.h"
#include "json.h"
#include "model.h"

#define TENSOR_MAX_DIMS 8

/* One row of the header's "tensors" table, checked against the file. */
typedef struct tensor_entry {
    const char *name;      /* decoded, NUL-terminated, no embedded NUL */
    int type;              /* EDGEMOE_TYPE_* */
    int n_dims;
    int64_t shape[TENSOR_MAX_DIMS];
    uint64_t offset;       /* absolute, in [data_offset, file_length] */
    uint64_t length;       /* bytes, offset + length <= file_length */
} tensor_entry;

typedef struct loader {
    const char *path;
    char *err;             /* caller's message buffer (may be NULL) */
    size_t err_len;
    const uint8_t *map;    /* the file, size bytes */
    uint64_t size;
    preamble pre;
    json_doc doc;          /* the parsed header */
    json_ref hparams;      /* the "hparams" object */
    /* tensor table (tensors.c) */
    tensor_entry *entries; /* [n_entries] */
    uint32_t n_entries;
    char *names;           /* storage of the decoded names */
    uint32_t *hash;        /* open addressing: entry index + 1, 0 = empty; [hash_mask + 1] */
    uint32_t hash_mask;
    uint32_t *rank;        /* [n_entries]: position of each entry when sorted by offset */
    uint32_t *by_offset;   /* [n_entries]: entry indices sorted by offset */
} loader;

/* Format "<path>: " + message into the error buffer. Returns status, for `return loader_fail(...)`. */
int loader_fail(loader *ld, int status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Check the header's top level ("format", "version", "architecture") and read "hparams" into
 * m->hp. Returns EDGEMOE_OK or an error status (message written). */
int hparams_load(loader *ld, edgemoe_model *m);

/* Check the tensor table and the expert spans, and bind every weight of m (m->hp is set).
 * Returns EDGEMOE_OK or an error status (message written). */
int tensors_load(loader *ld, edgemoe_model *m);

/* Release what tensors_load allocated in ld (safe on a partly filled loader). */
void tensors_release(loader *ld);

#endif /* EDGEMOE_LOADER_H */

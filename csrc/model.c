/*
 * model.c — open a model.bin: map it, check the preamble and the header checksum, parse
 * the header, then hand over to hparams.c and tensors.c (FORMAT.md "Reading").
 *
 * The file is untrusted. Every offset and length read from it is checked against the real
 * file size, with overflow-safe arithmetic, before anything is read through it. The
 * mapping is read-only and shared, so experts are paged in only when a token routes to
 * them. The descriptor stays open: model_check_file compares the file's length with the
 * mapping's before each evaluation, so a file truncated between calls is an error; one
 * truncated during a call makes the read fault, which forward.c's guards turn into an error
 * (mapguard.h).
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crc32.h"
#include "errbuf.h"
#include "expert_cache.h"
#include "residency.h"
#include "loader.h"
#include "mapguard.h"

#define HEADER_MAX_LENGTH ((uint64_t)256 << 20)   /* the 120b model's header is a few MiB */

int loader_fail(loader *ld, int status, const char *fmt, ...) {
    if (!ld->err || ld->err_len == 0) return status;
    int n = snprintf(ld->err, ld->err_len, "%s: ", ld->path);
    if (n >= 0 && (size_t)n < ld->err_len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(ld->err + n, ld->err_len - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return status;
}

/* ---------------------------------------------------------------------------------------
 * Mapping the file
 */

/* Map the whole file read-only into m->map / m->map_size. */
static int file_map(loader *ld, edgemoe_model *m) {
    int fd = open(ld->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return loader_fail(ld, EDGEMOE_ERR_IO, "cannot open: %s", strerror(errno));
    struct stat st;
    int rc = EDGEMOE_OK;
    if (fstat(fd, &st) != 0) {
        rc = loader_fail(ld, EDGEMOE_ERR_IO, "cannot stat: %s", strerror(errno));
    } else if (!S_ISREG(st.st_mode)) {
        rc = loader_fail(ld, EDGEMOE_ERR_IO, "not a regular file");
    } else if (st.st_size < (off_t)EDGEMOE_PREAMBLE_SIZE) {
        rc = loader_fail(ld, EDGEMOE_ERR_FORMAT,
                         "file is %lld bytes, too short for the %u-byte preamble (truncated?)",
                         (long long)st.st_size, EDGEMOE_PREAMBLE_SIZE);
    } else if ((uint64_t)st.st_size > (uint64_t)SIZE_MAX) {
        rc = loader_fail(ld, EDGEMOE_ERR_IO, "file of %lld bytes is too large to map",
                         (long long)st.st_size);
    } else {
        void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED) {
            rc = loader_fail(ld, EDGEMOE_ERR_IO, "cannot map: %s", strerror(errno));
        } else {
            m->map = p;
            m->map_size = (size_t)st.st_size;
            m->fd = fd;   /* model_check_file's */
            (void)mapguard_install();   /* a fault on it during a call: an error (forward.c) */
            return EDGEMOE_OK;
        }
    }
    close(fd);
    return rc;
}

int model_check_file(const edgemoe_model *m, char *err, size_t err_len) {
    struct stat st;
    if (m->fd < 0) return EDGEMOE_OK;
    if (fstat(m->fd, &st) != 0)
        return error_write(err, err_len, EDGEMOE_ERR_IO, "%s: cannot stat: %s", m->path,
                           strerror(errno));
    if ((uint64_t)st.st_size < (uint64_t)m->map_size)
        return error_write(err, err_len, EDGEMOE_ERR_IO,
                           "%s: the model file was truncated to %lld bytes while in use (it had "
                           "%zu); reopen it", m->path, (long long)st.st_size, m->map_size);
    return EDGEMOE_OK;
}

/* ---------------------------------------------------------------------------------------
 * Preamble and header
 */

static int is_power_of_two(uint64_t x) { return x != 0 && (x & (x - 1)) == 0; }

/* The preamble's magic and version (FORMAT.md "Reading", first checks). */
static int preamble_check_identity(loader *ld) {
    if (memcmp(ld->map + PRE_MAGIC, EDGEMOE_MAGIC, EDGEMOE_MAGIC_LEN) != 0)
        return loader_fail(ld, EDGEMOE_ERR_FORMAT,
                           "not an edgemoe model.bin (magic is not \"EDGEMOE\\0\")");
    preamble_read(ld->map, &ld->pre);
    if (ld->pre.version != EDGEMOE_FORMAT_VERSION)
        return loader_fail(ld, EDGEMOE_ERR_VERSION,
                           "format version %u is not supported (this build reads version %u)",
                           ld->pre.version, EDGEMOE_FORMAT_VERSION);
    return EDGEMOE_OK;
}

/* header_offset, header_length, data_offset and file_length against each other and the file. */
static int preamble_check_layout(loader *ld) {
    const preamble *p = &ld->pre;
    if (p->header_offset != EDGEMOE_HEADER_OFFSET)
        return loader_fail(ld, EDGEMOE_ERR_FORMAT, "header_offset is %llu, expected %u",
                           (unsigned long long)p->header_offset, EDGEMOE_HEADER_OFFSET);
    if (p->data_offset < p->header_offset || p->header_length > p->data_offset - p->header_offset)
        return loader_fail(ld, EDGEMOE_ERR_FORMAT,
                           "header_offset %llu + header_length %llu exceeds data_offset %llu",
                           (unsigned long long)p->header_offset, (unsigned long long)p->header_length,
                           (unsigned long long)p->data_offset);
    if (p->data_offset > p->file_length)
        return loader_fail(ld, EDGEMOE_ERR_FORMAT, "data_offset %llu exceeds file_length %llu",
                           (unsigned long long)p->data_offset, (unsigned long long)p->file_length);
    if (p->file_length != ld->size)
        return loader_fail(ld, EDGEMOE_ERR_FORMAT,
                           "file_length is %llu but the file has %llu bytes (%s)",
                           (unsigned long long)p->file_length, (unsigned long long)ld->size,
                           ld->size < p->file_length ? "truncated" : "bytes appended");
    if (p->data_offset % EDGEMOE_DATA_ALIGN != 0)
        return loader_fail(ld, EDGEMOE_ERR_FORMAT, "data_offset %llu is not a multiple of %u",
                           (unsigned long long)p->data_offset, EDGEMOE_DATA_ALIGN);
    if (p->header_length > HEADER_MAX_LENGTH)
        return loader_fail(ld, EDGEMOE_ERR_FORMAT, "header_length %llu exceeds the limit of %llu",
                           (unsigned long long)p->header_length,
                           (unsigned long long)HEADER_MAX_LENGTH);
    return EDGEMOE_OK;
}

static int preamble_check_alignments(loader *ld) {
    const preamble *p = &ld->pre;
    if (!is_power_of_two(p->alignment))
        return loader_fail(ld, EDGEMOE_ERR_FORMAT, "alignment %u is not a power of two", p->alignment);
    if (!is_power_of_two(p->expert_alignment) || p->expert_alignment < EDGEMOE_MIN_EXPERT_ALIGN)
        return loader_fail(ld, EDGEMOE_ERR_FORMAT,
                           "expert_alignment %u is not a power of two >= %u", p->expert_alignment,
                           EDGEMOE_MIN_EXPERT_ALIGN);
    return EDGEMOE_OK;
}

/* CRC-32 of the header bytes, then parse them as JSON into ld->doc. */
static int header_parse(loader *ld) {
    const uint8_t *text = ld->map + ld->pre.header_offset;
    const size_t len = (size_t)ld->pre.header_length;
    uint32_t crc = crc32_update(0, text, len);
    if (crc != ld->pre.header_crc32)
        return loader_fail(ld, EDGEMOE_ERR_CHECKSUM,
                           "header CRC-32 is %08x but the preamble says %08x (corrupt header)",
                           crc, ld->pre.header_crc32);
    json_error jerr;
    json_status js = json_parse(&ld->doc, (const char *)text, len, &jerr);
    if (js == JSON_ERR_NOMEM) return loader_fail(ld, EDGEMOE_ERR_NOMEM, "out of memory parsing the header");
    if (js != JSON_OK)
        return loader_fail(ld, EDGEMOE_ERR_FORMAT, "header JSON: %s at header byte %zu (file offset %llu)",
                           jerr.message, jerr.offset,
                           (unsigned long long)(ld->pre.header_offset + jerr.offset));
    return EDGEMOE_OK;
}

/* ---------------------------------------------------------------------------------------
 * Open / free / info
 */

static void model_info_fill(edgemoe_model *m) {
    const hparams *hp = &m->hp;
    edgemoe_model_info *info = &m->info;   /* expert_bytes, dense_bytes set by tensors_load */
    info->n_vocab = hp->n_vocab;
    info->n_embd = hp->n_embd;
    info->n_ff = hp->n_ff;
    info->n_layer = hp->n_layer;
    info->n_head = hp->n_head;
    info->n_head_kv = hp->n_head_kv;
    info->head_dim = hp->head_dim;
    info->n_expert = hp->n_expert;
    info->n_expert_used = hp->n_expert_used;
    info->sliding_window = hp->sliding_window;
    info->n_ctx_train = hp->n_ctx_train;
    info->dense_type = m->layers[0].wq.type;
    info->file_size = m->map_size;
}

/* Every step of opening, in FORMAT.md's order. */
static int model_load(loader *ld, edgemoe_model *m) {
    int rc;
    if ((rc = file_map(ld, m))) return rc;
    ld->map = m->map;
    ld->size = m->map_size;
    if ((rc = preamble_check_identity(ld)) || (rc = preamble_check_layout(ld))
        || (rc = preamble_check_alignments(ld)) || (rc = header_parse(ld))
        || (rc = hparams_load(ld, m)) || (rc = tensors_load(ld, m)))
        return rc;
    model_info_fill(m);
    return EDGEMOE_OK;
}

int edgemoe_model_open(const char *path, edgemoe_model **out, char *err, size_t err_len) {
    loader ld = {.path = path ? path : "(null)", .err = err, .err_len = err_len};
    if (err && err_len) err[0] = '\0';
    if (!out) return loader_fail(&ld, EDGEMOE_ERR_ARG, "out must not be NULL");
    *out = NULL;
    if (!path) return loader_fail(&ld, EDGEMOE_ERR_ARG, "path must not be NULL");
    edgemoe_model *m = calloc(1, sizeof *m);
    char *path_copy = malloc(strlen(path) + 1);
    if (!m || !path_copy) {
        free(m);
        free(path_copy);
        return loader_fail(&ld, EDGEMOE_ERR_NOMEM, "out of memory");
    }
    m->fd = -1;
    m->path = strcpy(path_copy, path);
    m->act_bits = 16;
    char msg[256];
    int rc = kernels_from_env(&m->kernels, msg, sizeof msg);
    if (rc != EDGEMOE_OK) {
        edgemoe_model_free(m);
        return loader_fail(&ld, rc, "%s", msg);
    }
    rc = model_load(&ld, m);
    if (rc == EDGEMOE_OK && !residency_init(m)) rc = loader_fail(&ld, EDGEMOE_ERR_NOMEM, "out of memory");
    json_free(&ld.doc);
    tensors_release(&ld);
    if (rc != EDGEMOE_OK) {
        edgemoe_model_free(m);
        return rc;
    }
    *out = m;
    return EDGEMOE_OK;
}

int edgemoe_model_open_params(const char *path, const edgemoe_model_params *params,
                              edgemoe_model **out, char *err, size_t err_len) {
    if (params && params->activation_bits != 0 && params->activation_bits != 8
        && params->activation_bits != 16)
        return error_write(err, err_len, EDGEMOE_ERR_ARG,
                           "activation_bits must be 8 or 16, got %d", (int)params->activation_bits);
    int rc = edgemoe_model_open(path, out, err, err_len);
    if (rc != EDGEMOE_OK || !params) return rc;
    if (params->activation_bits == 8) (*out)->act_bits = 8;
    if (params->memory_budget == 0) return rc;
    const int io = params->io_threads <= 0 ? 2 : params->io_threads > 64 ? 64 : params->io_threads;
    rc = expert_cache_new(*out, params->memory_budget, params->policy, io, !params->no_predict,
                          err, err_len);
    if (rc != EDGEMOE_OK) {
        edgemoe_model_free(*out);
        *out = NULL;
    }
    return rc;
}

int edgemoe_model_get_stats(edgemoe_model *model, edgemoe_model_stats *out) {
    if (!model || !out) return EDGEMOE_ERR_ARG;
    if (model->cache) {
        expert_cache_stats(model->cache, out);
    } else {
        *out = (edgemoe_model_stats){0};
        out->expert_uses = (uint64_t)model->expert_uses;
    }
    return EDGEMOE_OK;
}

void edgemoe_model_free(edgemoe_model *model) {
    if (!model) return;
    expert_cache_free(model->cache);
    if (model->map) munmap((void *)model->map, model->map_size);
    if (model->fd >= 0) close(model->fd);
    free(model->layers);
    free(model->experts);
    free((void *)model->advised);
    free(model->path);
    free(model);
}

int edgemoe_model_get_info(const edgemoe_model *model, edgemoe_model_info *out) {
    if (!model || !out) return EDGEMOE_ERR_ARG;
    *out = model->info;
    return EDGEMOE_OK;
}

const char *edgemoe_model_kernels_name(const edgemoe_model *model) {
    return model ? model->kernels->name : "";
}

const char *edgemoe_status_string(int status) {
    switch (status) {
    case EDGEMOE_OK: return "ok";
    case EDGEMOE_ERR_IO: return "I/O error";
    case EDGEMOE_ERR_FORMAT: return "invalid model file";
    case EDGEMOE_ERR_VERSION: return "unsupported model file version";
    case EDGEMOE_ERR_CHECKSUM: return "checksum mismatch";
    case EDGEMOE_ERR_NOMEM: return "out of memory";
    case EDGEMOE_ERR_ARG: return "invalid argument";
    case EDGEMOE_ERR_CONTEXT_FULL: return "context full";
    case EDGEMOE_ERR_UNSUPPORTED: return "unsupported model";
    default: return "unknown status";
    }
}

const char *edgemoe_version(void) {
    return "0.1.0";
}

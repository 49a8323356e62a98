/*
 * fuzz_loader.c — libFuzzer harness over the model loader and one forward step
 * (tests/test_fuzz.py builds it with clang -fsanitize=fuzzer,address,undefined and runs it
 * on a corpus of small converted files).
 *
 * Each input is written to a memory file and opened with edgemoe_model_open, as a user's
 * downloaded model.bin would be; when it opens, a context is created and one token
 * evaluated, so every offset and size the loader accepted is also used. Before that the
 * header CRC-32 in the preamble is recomputed over the header bytes the input points at
 * (when they lie inside it), so that mutations of the JSON header reach the parser and the
 * tensor-table checks instead of all stopping at the checksum; when the input's last byte
 * is odd, the preamble's file length is also set to the input's length.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "crc32.h"
#include "edgemoe.h"
#include "format.h"

static uint64_t le64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

static void put_le32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static void put_le64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static void fix_preamble(uint8_t *buf, size_t size) {
    if (size < EDGEMOE_PREAMBLE_SIZE) return;
    const uint64_t off = le64(buf + PRE_HEADER_OFFSET), len = le64(buf + PRE_HEADER_LENGTH);
    if (off <= size && len <= size - off) put_le32(buf + PRE_HEADER_CRC32, crc32_update(0, buf + off, len));
    if (buf[size - 1] & 1) put_le64(buf + PRE_FILE_LENGTH, size);
}

static void write_all(int fd, const uint8_t *p, size_t n) {
    while (n) {
        const ssize_t w = write(fd, p, n);
        if (w <= 0) abort();
        p += w;
        n -= (size_t)w;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *buf = malloc(size ? size : 1);
    memcpy(buf, data, size);
    fix_preamble(buf, size);
    const int fd = memfd_create("model.bin", MFD_CLOEXEC);
    if (fd < 0) abort();
    write_all(fd, buf, size);
    free(buf);
    char path[64], err[512];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    edgemoe_model *model = NULL;
    if (edgemoe_model_open(path, &model, err, sizeof err) == EDGEMOE_OK) {
        edgemoe_model_info info;
        edgemoe_context *ctx = NULL;
        if (edgemoe_model_get_info(model, &info) == EDGEMOE_OK
            && edgemoe_context_new(model, 4, 1, &ctx, err, sizeof err) == EDGEMOE_OK) {
            float *logits = malloc((size_t)info.n_vocab * sizeof *logits + 1);
            const int32_t tokens[2] = {0, info.n_vocab - 1};
            if (logits) edgemoe_context_eval(ctx, tokens, 2, logits, 1);
            free(logits);
            edgemoe_context_free(ctx);
        }
        edgemoe_model_free(model);
    }
    close(fd);
    return 0;
}

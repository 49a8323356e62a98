/*
 * residency.c — MADV_WILLNEED hints for the regions the forward pass is about to read
 * (see residency.h).
 */
#define _DEFAULT_SOURCE   /* madvise and MADV_WILLNEED in <sys/mman.h> under -std=c11 */

#include "residency.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

static size_t flag_count(const edgemoe_model *m) {
    return (size_t)m->hp.n_layer * (size_t)m->hp.n_expert + (size_t)m->hp.n_layer + 1;
}

int residency_init(edgemoe_model *m) {
    m->advised = calloc(flag_count(m), sizeof *m->advised);
    return m->advised != NULL;
}

/* 1 the first time flag i is claimed (by any thread), 0 afterwards. */
static int first_time(edgemoe_model *m, size_t i) {
    return !atomic_exchange_explicit(&m->advised[i], 1, memory_order_relaxed);
}

/* Ask for the pages of [p, p + length) (widened to whole pages). */
static void advise(const uint8_t *p, size_t length) {
    const long page = sysconf(_SC_PAGESIZE);
    if (page <= 0 || length == 0) return;
    const uintptr_t start = (uintptr_t)p & ~((uintptr_t)page - 1);
    (void)madvise((void *)start, (uintptr_t)p + length - start, MADV_WILLNEED);
}

static void advise_tensor(const tensor *t) {
    advise(t->data, tensor_bytes(t));
}

void residency_expert(edgemoe_model *m, int32_t l, int e) {
    const size_t i = (size_t)l * (size_t)m->hp.n_expert + (size_t)e;
    if (!first_time(m, i)) return;
    const expert_weights *x = &m->experts[i];
    advise(x->span, x->span_length);
}

void residency_layer(edgemoe_model *m, int32_t l) {
    if (l >= m->hp.n_layer) return;
    if (!first_time(m, (size_t)m->hp.n_layer * (size_t)m->hp.n_expert + (size_t)l)) return;
    tensor *all[LAYER_DENSE_TENSORS];
    layer_dense_tensors(&m->layers[l], all);
    for (int k = 0; k < LAYER_DENSE_TENSORS; k++) advise_tensor(all[k]);
}

void residency_head(edgemoe_model *m) {
    if (!first_time(m, flag_count(m) - 1)) return;
    advise_tensor(&m->norm);
    advise_tensor(&m->lm_head);
}

/*
 * expert_cache.h — run a model inside a memory budget (docs/MEMORY.md).
 *
 * With a budget, the file's mapping is no longer read for weights. The non-expert tensors
 * (attention, norms, routers, output head) are read once into anonymous memory and stay
 * there; the embedding's rows are read one at a time when a token needs them; experts live in
 * a slab of fixed-size slots, each holding one expert span exactly as it lies in the file,
 * read with pread (O_DIRECT where the file system allows it: no second copy in the page
 * cache) by background I/O threads. When every slot is taken, a new expert replaces one that
 * nobody is using, chosen by the replacement policy.
 *
 * Every read goes through pread, so a file truncated under a running model gives a short
 * read and a clear error, never SIGBUS. The bytes are the file's bytes, so the forward pass
 * computes exactly what it computes on the plain mapping.
 *
 * The forward pass, per layer: expert_cache_route() with the experts the router chose (counts
 * uses, hits and misses, starts the reads of the missing ones), then expert_cache_acquire() /
 * expert_cache_release() around each expert's compute; expert_cache_readahead() starts reads
 * for experts further down the list once slots come free; expert_cache_predict() announces
 * the experts the next layer will probably need. Reads started by route, readahead and
 * predict only take slots not chosen by the current route() ("this step"); acquire may take
 * any slot nobody holds.
 */
#ifndef EDGEMOE_EXPERT_CACHE_H
#define EDGEMOE_EXPERT_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"

typedef struct expert_cache expert_cache;

/*
 * Put m (opened, no context yet) under a budget of `budget` bytes of resident weights: read
 * the dense tensors into memory, rebind them, allocate the slots, start io_threads readers.
 * Fails with EDGEMOE_ERR_ARG, naming the smallest budget that works, when the budget cannot
 * hold the dense tensors and one layer's active experts. policy: EDGEMOE_POLICY_*.
 */
int expert_cache_new(edgemoe_model *m, uint64_t budget, int policy, int io_threads,
                     int predict, char *err, size_t err_len);

void expert_cache_free(expert_cache *c);

/* Whether next-layer prediction is on. */
int expert_cache_predicts(const expert_cache *c);

/* The router of layer l chose experts[0..n) (distinct): a new step; count the uses, and start
 * reading the ones not resident, in this order, while slots outside this step are free. */
void expert_cache_route(expert_cache *c, int32_t l, const int *experts, int n);

/* Start reads for experts[0..n) of layer l not resident, while slots outside this step are
 * free (no counting). */
void expert_cache_readahead(expert_cache *c, int32_t l, const int *experts, int n);

/* The weights of expert e of layer l, resident until expert_cache_release(): waits for its read
 * (started here if needed). NULL on a read error, with the message in err. */
const expert_weights *expert_cache_acquire(expert_cache *c, int32_t l, int e, char *err,
                                           size_t err_len);

/* Done with expert e of layer l for this step (its slot may be reused from now on). */
void expert_cache_release(expert_cache *c, int32_t l, int e);

/* Layer l will probably want experts[0..n): read those not resident into slots outside this
 * step. */
void expert_cache_predict(expert_cache *c, int32_t l, const int *experts, int n);

/* Row `row` of the embedding (a type with contiguous rows) into buf. 0 on a read error. */
int expert_cache_embed_row(expert_cache *c, const tensor *embed, int64_t row, uint8_t *buf,
                           char *err, size_t err_len);

/* Counters (edgemoe.h: edgemoe_model_stats). */
void expert_cache_stats(expert_cache *c, edgemoe_model_stats *out);

#endif /* EDGEMOE_EXPERT_CACHE_H */

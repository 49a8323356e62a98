/*
 * residency.h — tell the kernel which parts of the mapped file the forward pass needs next.
 *
 * A page fault on the mapping reads ahead only a little (128 KiB by default), so a cold run
 * that touched a 12.6 MiB expert page by page would wait on a hundred small reads in a row.
 * Announcing a whole expert span (MADV_WILLNEED) as soon as the router has chosen it, and the
 * next layer's dense tensors while this layer computes, turns that into large reads issued
 * ahead of use and overlapping compute. Each region is announced once per model (an atomic
 * flag each): afterwards it is in the page cache, and re-announcing it would only cost time.
 * Nothing is read that no token needs. Hints only: failures are ignored.
 */
#ifndef EDGEMOE_RESIDENCY_H
#define EDGEMOE_RESIDENCY_H

#include "model.h"

/* Allocate m->advised (after the weights are bound). Returns 0 if out of memory. */
int residency_init(edgemoe_model *m);

/* The span of expert e of layer l. */
void residency_expert(edgemoe_model *m, int32_t l, int e);

/* The dense tensors of layer l (attention, norms, router); l may be n_layer (no-op). */
void residency_layer(edgemoe_model *m, int32_t l);

/* The final norm and the output head. */
void residency_head(edgemoe_model *m);

#endif /* EDGEMOE_RESIDENCY_H */

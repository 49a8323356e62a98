/*
 * rope.h — rotary position embedding frequencies: plain RoPE and YaRN (ORACLES.md §3.5).
 */
#ifndef EDGEMOE_ROPE_H
#define EDGEMOE_ROPE_H

#include "model.h"

/*
 * Fill inv_freq[head_dim / 2] with the inverse frequencies of hp's RoPE, and return the
 * attention factor that multiplies both cos and sin (1 for plain RoPE).
 *
 * Computed in f32 step by step as transformers' _compute_yarn_parameters /
 * _compute_default_rope_parameters do, so that angles (f32 pos · inv_freq) match it at
 * large positions, where one ulp of inv_freq is already visible in the logits.
 */
float rope_inv_freq(const hparams *hp, float *inv_freq);

#endif /* EDGEMOE_ROPE_H */

/*
 * rope.c — RoPE / YaRN inverse frequencies (see rope.h).
 *
 * YaRN blends, per frequency i, the plain frequency (extrapolation) with the frequency
 * divided by `factor` (interpolation) along a linear ramp between two dimensions derived
 * from beta_fast and beta_slow:
 *   ramp_i   = clip((i − low) / (high − low), 0, 1)         (1 → interpolate)
 *   inv_freq = interp · ramp + extrap · (1 − ramp)
 * The correction range is computed in double (Python floats in transformers), everything
 * per-frequency in f32 (torch float32 tensors).
 */
#include "rope.h"

#include <math.h>

/* Dimension at which a frequency makes `rotations` turns over original_ctx positions. */
static double yarn_correction_dim(double rotations, int dim, double theta, double original_ctx) {
    const double pi = 3.14159265358979323846;
    return (dim * log(original_ctx / (rotations * 2.0 * pi))) / (2.0 * log(theta));
}

/* θ^(2i/dim) in f32, as torch computes `base ** (arange(0, dim, 2).float() / dim)`. */
static float rope_pos_freq(double theta, int i, int dim) {
    return powf((float)theta, (float)(2 * i) / (float)dim);
}

static float yarn_inv_freq(const hparams *hp, float *inv_freq) {
    const int dim = hp->head_dim;
    double low = yarn_correction_dim(hp->rope_beta_fast, dim, hp->rope_theta, hp->rope_original_ctx);
    double high = yarn_correction_dim(hp->rope_beta_slow, dim, hp->rope_theta, hp->rope_original_ctx);
    if (hp->rope_truncate) {
        low = floor(low);
        high = ceil(high);
    }
    low = low > 0.0 ? low : 0.0;
    high = high < dim - 1 ? high : dim - 1;
    if (low == high) high += 0.001; /* as transformers: avoid a zero-width ramp */
    const float factor = (float)hp->rope_factor;
    for (int i = 0; i < dim / 2; i++) {
        const float pos_freq = rope_pos_freq(hp->rope_theta, i, dim);
        const float extrapolation = 1.0f / pos_freq;
        const float interpolation = 1.0f / (factor * pos_freq);
        float ramp = ((float)i - (float)low) / (float)(high - low);
        ramp = ramp < 0.0f ? 0.0f : (ramp > 1.0f ? 1.0f : ramp);
        const float extrapolation_factor = 1.0f - ramp;
        inv_freq[i] = interpolation * (1.0f - extrapolation_factor) + extrapolation * extrapolation_factor;
    }
    return hp->rope_factor <= 1.0 ? 1.0f : (float)(0.1 * log(hp->rope_factor) + 1.0);
}

float rope_inv_freq(const hparams *hp, float *inv_freq) {
    if (hp->rope_yarn) return yarn_inv_freq(hp, inv_freq);
    for (int i = 0; i < hp->head_dim / 2; i++)
        inv_freq[i] = 1.0f / rope_pos_freq(hp->rope_theta, i, hp->head_dim);
    return 1.0f;
}

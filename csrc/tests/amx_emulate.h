/*
 * amx_emulate.h — the AMX tile intrinsics kernels_amx.c uses, in portable C, so that the amx set
 * is tested on CPUs without AMX (tests/test_kernels_cross.py builds kernel_check.c with
 * -DEDGEMOE_EMULATE_AMX -DEDGEMOE_EMULATE_AVX512). Not part of the library.
 *
 * Each function follows the instruction's definition in Intel's Architecture Instruction Set
 * Extensions reference (palette 1: 8 tiles of up to 16 rows × 64 bytes): a load reads exactly
 * rows × colsb bytes, row r at base + r·stride, and zeroes the rest of the tile; a store writes
 * exactly rows × colsb bytes; TDPB[SU][SU]D multiplies groups of 4 bytes into int32, C[m][n] +=
 * Σ_k Σ_i A[m][4k+i] · B[k][4n+i]. Where the hardware would fault (no configuration, or shapes
 * that do not fit together), the emulation aborts, so a wrong configuration fails the check.
 */
#ifndef EDGEMOE_AMX_EMULATE_H
#define EDGEMOE_AMX_EMULATE_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct amx_emulated {
    int configured;
    uint8_t rows[8];
    uint16_t colsb[8];
    uint8_t data[8][16][64];
} amx_emulated;

static _Thread_local amx_emulated amx_emu;

static inline void amx_emu_fault(const char *what) {
    fprintf(stderr, "amx_emulate: %s\n", what);
    abort();
}

static inline void amx_emu_loadconfig(const void *config) {
    const uint8_t *c = config;
    if (c[0] != 1) amx_emu_fault("LDTILECFG: palette is not 1");
    memset(&amx_emu, 0, sizeof amx_emu);
    for (int t = 0; t < 8; t++) {
        memcpy(&amx_emu.colsb[t], c + 16 + 2 * t, 2);
        amx_emu.rows[t] = c[48 + t];
        if (amx_emu.rows[t] > 16 || amx_emu.colsb[t] > 64 || (amx_emu.rows[t] == 0) != (amx_emu.colsb[t] == 0))
            amx_emu_fault("LDTILECFG: a tile of more than 16 rows or 64 bytes, or half configured");
    }
    amx_emu.configured = 1;
}

static inline void amx_emu_release(void) {
    memset(&amx_emu, 0, sizeof amx_emu);
}

static inline void amx_emu_check(int t) {
    if (!amx_emu.configured) amx_emu_fault("tile instruction without a configuration");
    if (t < 0 || t > 7 || amx_emu.rows[t] == 0) amx_emu_fault("tile not configured");
}

static inline void amx_emu_zero(int t) {
    amx_emu_check(t);
    memset(amx_emu.data[t], 0, sizeof amx_emu.data[t]);
}

static inline void amx_emu_loadd(int t, const void *base, long stride) {
    amx_emu_check(t);
    memset(amx_emu.data[t], 0, sizeof amx_emu.data[t]);
    for (int r = 0; r < amx_emu.rows[t]; r++)
        memcpy(amx_emu.data[t][r], (const uint8_t *)base + (long)r * stride, amx_emu.colsb[t]);
}

static inline void amx_emu_stored(int t, void *base, long stride) {
    amx_emu_check(t);
    for (int r = 0; r < amx_emu.rows[t]; r++)
        memcpy((uint8_t *)base + (long)r * stride, amx_emu.data[t][r], amx_emu.colsb[t]);
}

/* C += A · B with A's bytes signed if sa, B's if sb. */
static inline void amx_emu_dp(int c, int a, int b, int sa, int sb) {
    amx_emu_check(c);
    amx_emu_check(a);
    amx_emu_check(b);
    const int m = amx_emu.rows[c], n = amx_emu.colsb[c] / 4, k = amx_emu.colsb[a] / 4;
    if (amx_emu.rows[a] != m || amx_emu.rows[b] != k || amx_emu.colsb[b] != amx_emu.colsb[c]
        || amx_emu.colsb[c] % 4 || amx_emu.colsb[a] % 4)
        amx_emu_fault("TDPB*D: tile shapes do not fit together");
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            int32_t s;
            memcpy(&s, &amx_emu.data[c][i][4 * j], 4);
            for (int kk = 0; kk < k; kk++)
                for (int e = 0; e < 4; e++) {
                    const uint8_t x = amx_emu.data[a][i][4 * kk + e], y = amx_emu.data[b][kk][4 * j + e];
                    const int32_t xa = sa ? (int32_t)(int8_t)x : (int32_t)x, yb = sb ? (int32_t)(int8_t)y : (int32_t)y;
                    s = (int32_t)((uint32_t)s + (uint32_t)(xa * yb));   /* wraps, as the hardware */
                }
            memcpy(&amx_emu.data[c][i][4 * j], &s, 4);
        }
}

/* (in place of <immintrin.h>'s, where the build includes it) */
#undef _tile_loadconfig
#undef _tile_release
#undef _tile_zero
#undef _tile_loadd
#undef _tile_stored
#undef _tile_dpbssd
#undef _tile_dpbsud
#undef _tile_dpbusd
#undef _tile_dpbuud
#define _tile_loadconfig(config) amx_emu_loadconfig(config)
#define _tile_release() amx_emu_release()
#define _tile_zero(t) amx_emu_zero(t)
#define _tile_loadd(t, base, stride) amx_emu_loadd((t), (base), (long)(stride))
#define _tile_stored(t, base, stride) amx_emu_stored((t), (base), (long)(stride))
#define _tile_dpbssd(c, a, b) amx_emu_dp((c), (a), (b), 1, 1)
#define _tile_dpbsud(c, a, b) amx_emu_dp((c), (a), (b), 1, 0)
#define _tile_dpbusd(c, a, b) amx_emu_dp((c), (a), (b), 0, 1)
#define _tile_dpbuud(c, a, b) amx_emu_dp((c), (a), (b), 0, 0)

#endif /* EDGEMOE_AMX_EMULATE_H */

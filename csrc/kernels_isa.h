/*
 * kernels_isa.h — the kernel tables of the instruction-set-specific files.
 *
 * Each table exists only in a build for its architecture; whether the CPU running the build
 * can use it is decided at run time by kernels.c.
 */
#ifndef EDGEMOE_KERNELS_ISA_H
#define EDGEMOE_KERNELS_ISA_H

#include "kernels.h"

#if defined(__x86_64__) || defined(_M_X64)
#define EDGEMOE_BUILD_AVX2 1
/* "avx2" (kernels_avx2.c): needs AVX2, FMA and F16C. */
extern const kernel_table KERNELS_AVX2;
#endif

#if defined(__aarch64__)
#define EDGEMOE_BUILD_NEON 1
/* "neon" (kernels_neon.c): any arm64 CPU. */
extern const kernel_table KERNELS_NEON;
#endif

#endif /* EDGEMOE_KERNELS_ISA_H */

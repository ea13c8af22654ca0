/*
 * core/tr8x8.h - an 8 x 8 block of float32 transposed through AVX2 registers, for the kernels that
 * transpose in tiles (core/iter.c's transposed tiles, ops/matmul.c's (W·xᵀ)ᵀ pass).  Only where
 * AG_X86_INTRINSICS (core/sum.h) is defined, called from functions marked target("avx2") where
 * AG_VEC_WIDE() holds.
 */
#ifndef AG_CORE_TR8X8_H
#define AG_CORE_TR8X8_H
#include <stdint.h>
#include "core/sum.h"
#ifdef AG_X86_INTRINSICS
#include <immintrin.h>
/* 8 x 8 float32 through registers: r[k] is column k of s (byte stride sl between rows); 8 loads and
 * 24 shuffles. */
__attribute__((target("avx2"), always_inline)) static inline void tr8x8_rows(const char *s, int64_t sl, __m256 r[8]) {
    __m256 v[8], t[8], u[8];
    for (int k = 0; k < 8; k++) v[k] = _mm256_loadu_ps((const float *)(s + k * sl));
    for (int k = 0; k < 8; k += 2) {
        t[k] = _mm256_unpacklo_ps(v[k], v[k + 1]);
        t[k + 1] = _mm256_unpackhi_ps(v[k], v[k + 1]);
    }
    for (int k = 0; k < 8; k += 4) {
        u[k] = _mm256_shuffle_ps(t[k], t[k + 2], _MM_SHUFFLE(1, 0, 1, 0));
        u[k + 1] = _mm256_shuffle_ps(t[k], t[k + 2], _MM_SHUFFLE(3, 2, 3, 2));
        u[k + 2] = _mm256_shuffle_ps(t[k + 1], t[k + 3], _MM_SHUFFLE(1, 0, 1, 0));
        u[k + 3] = _mm256_shuffle_ps(t[k + 1], t[k + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (int k = 0; k < 4; k++) {
        r[k] = _mm256_permute2f128_ps(u[k], u[k + 4], 0x20);
        r[k + 4] = _mm256_permute2f128_ps(u[k], u[k + 4], 0x31);
    }
}

/* 8 x 8 float32 through registers: row k of d (byte stride dl between rows) is column k of s (byte stride
 * sl between rows); 8 loads, 24 shuffles, 8 stores (inlined: a call per block cost a tenth). */
__attribute__((target("avx2"), always_inline)) static inline void tr8x8(const char *s, int64_t sl, char *d, int64_t dl) {
    __m256 r[8];
    tr8x8_rows(s, sl, r);
    for (int k = 0; k < 8; k++) _mm256_storeu_ps((float *)(d + k * dl), r[k]);
}
#endif
#endif

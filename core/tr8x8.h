/*
 * core/tr8x8.h - square blocks transposed through registers, for the kernels that transpose in tiles
 * (core/iter.c's transposed tiles, ops/matmul.c's (W·xᵀ)ᵀ pass): 8 x 8 float32 (AVX2), 16 x 16 bytes
 * (bool and uint8) and 4 x 4 float64 or int64.  Only where AG_X86_INTRINSICS (core/sum.h) is defined,
 * called from functions marked target("avx2") where AG_VEC_WIDE() holds.
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

/* 16 x 16 bytes through SSE registers: row k of d (byte stride dl) is column k of s (byte stride sl);
 * 16 loads, four rounds of 16 byte interleaves (row i with row i + 8, low halves to 2i, high to 2i + 1:
 * four perfect shuffles of 16 rows are the transpose), 16 stores. */
__attribute__((target("avx2"), always_inline)) static inline void tr16x16_u8(const char *s, int64_t sl, char *d, int64_t dl) {
    __m128i v[16], w[16];
    for (int k = 0; k < 16; k++) v[k] = _mm_loadu_si128((const __m128i *)(s + k * sl));
    for (int round = 0; round < 4; round++) {
        for (int i = 0; i < 8; i++) {
            w[2 * i] = _mm_unpacklo_epi8(v[i], v[i + 8]);
            w[2 * i + 1] = _mm_unpackhi_epi8(v[i], v[i + 8]);
        }
        for (int k = 0; k < 16; k++) v[k] = w[k];
    }
    for (int k = 0; k < 16; k++) _mm_storeu_si128((__m128i *)(d + k * dl), v[k]);
}

/* 4 x 4 elements of 8 bytes through AVX2 registers: row k of d (byte stride dl) is column k of s (byte
 * stride sl); 4 loads, 8 shuffles, 4 stores (the bits move as doubles: no arithmetic). */
__attribute__((target("avx2"), always_inline)) static inline void tr4x4_64(const char *s, int64_t sl, char *d, int64_t dl) {
    __m256d v[4], t[4];
    for (int k = 0; k < 4; k++) v[k] = _mm256_loadu_pd((const double *)(s + k * sl));
    t[0] = _mm256_unpacklo_pd(v[0], v[1]), t[1] = _mm256_unpackhi_pd(v[0], v[1]);
    t[2] = _mm256_unpacklo_pd(v[2], v[3]), t[3] = _mm256_unpackhi_pd(v[2], v[3]);
    _mm256_storeu_pd((double *)d, _mm256_permute2f128_pd(t[0], t[2], 0x20));
    _mm256_storeu_pd((double *)(d + dl), _mm256_permute2f128_pd(t[1], t[3], 0x20));
    _mm256_storeu_pd((double *)(d + 2 * dl), _mm256_permute2f128_pd(t[0], t[2], 0x31));
    _mm256_storeu_pd((double *)(d + 3 * dl), _mm256_permute2f128_pd(t[1], t[3], 0x31));
}
#endif
#endif

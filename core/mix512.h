/*
 * core/mix512.h - the counter-based generator's hash (core/random.c: SplitMix64's mix of the counter
 * k + (j + 1)·γ) on eight counters at once in AVX-512 lanes, for the kernels that make its values where
 * they are used: random.c's fills, and batch norm's dropout mask over [N, C] (ops/bn_cols512.h), which
 * compares the hashes' 32-bit halves in place of reading a mask.  Only where AG_X86_INTRINSICS (core/sum.h)
 * is defined; callers run these where AG_VEC_512() holds.
 */
#ifndef AGRAD_MIX512_H
#define AGRAD_MIX512_H

#include "core/sum.h"

#ifdef AG_X86_INTRINSICS
#include <immintrin.h>
#include <stdint.h>

/* SplitMix64's increment γ, the step between consecutive counters */
#define AG_MIX_GAMMA 0x9e3779b97f4a7c15ULL

/* ag__mix64 of each of the eight 64-bit lanes of z: (z ^ z >> 30)·c1, (z ^ z >> 27)·c2, z ^ z >> 31, the
 * products modulo 2^64 (vpmullq), so the same bits as the scalar mix */
__attribute__((target("avx512f,avx512dq"))) static inline __m512i ag__mix8_512(__m512i z) {
    z = _mm512_mullo_epi64(_mm512_xor_si512(z, _mm512_srli_epi64(z, 30)), _mm512_set1_epi64((long long)0xbf58476d1ce4e5b9ULL));
    z = _mm512_mullo_epi64(_mm512_xor_si512(z, _mm512_srli_epi64(z, 27)), _mm512_set1_epi64((long long)0x94d049bb133111ebULL));
    return _mm512_xor_si512(z, _mm512_srli_epi64(z, 31));
}

/* The counters of hashes j, j + stride, ..., j + 7·stride of key: lane i holds k + (j + i·stride + 1)·γ
 * (modulo 2^64) */
__attribute__((target("avx512f,avx512dq"))) static inline __m512i ag__counters8_512(uint64_t key, uint64_t j,
                                                                                   uint64_t stride) {
    const __m512i lane = _mm512_set_epi64(7, 6, 5, 4, 3, 2, 1, 0);
    const __m512i g = _mm512_set1_epi64((long long)AG_MIX_GAMMA);
    return _mm512_add_epi64(_mm512_set1_epi64((long long)(key + (j + 1) * AG_MIX_GAMMA)),
                            _mm512_mullo_epi64(_mm512_mullo_epi64(lane, _mm512_set1_epi64((long long)stride)), g));
}
#endif

#endif

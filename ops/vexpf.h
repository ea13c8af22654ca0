/*
 * ops/vexpf.h - a float32 exp that vectorises, shared by the kernels whose loops
 * over exp would otherwise be bound by libm calls (softmax, logsumexp).
 */
#ifndef AGRAD_VEXPF_H
#define AGRAD_VEXPF_H

#include <stdint.h>
#include <math.h>
#include <string.h>
#include "core/sum.h"

/* p·2^n, rounded once, for t = n + 1.5·2^23 (the sum that rounded n to an integer), n in
 * [-256, 256) (from -150 the result is 0, from 128 inf): 2^n as two scales 2^floor(n/2) and
 * 2^ceil(n/2) made from exponent bits, so that denormal results come out right. */
static inline float vexpf_scale(float p, float t) {
    uint32_t tb;
    memcpy(&tb, &t, sizeof tb);
    /* u = n + 256 >= 0; the two scales as biased exponents */
    const uint32_t u = tb - 0x4B400000u + 256u, h = u >> 1, e1 = (h - 1u) << 23, e2 = (u - h - 1u) << 23;
    float s1, s2;
    memcpy(&s1, &e1, sizeof s1);
    memcpy(&s2, &e2, sizeof s2);
    return p * s1 * s2;
}

/* The Cephes steps of vexpf_times, with MADD(a, b, c) as a·b + c: x clamped (negative x below -104,
 * bits of -104.0f, to -104: an integer select, as a float one would not vectorise with trapping
 * maths), t = x·log2 e + 1.5·2^23 (its low mantissa bits hold n = round(x·log2 e)), r = x - n·ln 2
 * (ln 2 in two parts) and p(r), Cephes' degree-5 polynomial with e^r = 1 + r + r²·p(r); leaves p, r_
 * and t. */
#define VEXPF_STEPS(MADD, x, p, t)                                                                  \
    uint32_t xb_;                                                                                   \
    memcpy(&xb_, &x, sizeof xb_);                                                                   \
    xb_ = xb_ > 0xC2D00000u ? 0xC2D00000u : xb_;                                                    \
    memcpy(&x, &xb_, sizeof x);                                                                     \
    const float magic_ = 12582912.0f;                                                               \
    const float t = MADD(x, 1.44269504088896341f, magic_), n_ = t - magic_;                         \
    const float r_ = MADD(n_, 2.12194440e-4f, MADD(n_, -0.693359375f, x));                         \
    float p = 1.9875691500e-4f;                                                                     \
    p = MADD(p, r_, 1.3981999507e-3f);                                                              \
    p = MADD(p, r_, 8.3334519073e-3f);                                                              \
    p = MADD(p, r_, 4.1665795894e-2f);                                                              \
    p = MADD(p, r_, 1.6666665459e-1f);                                                              \
    p = MADD(p, r_, 5.0000001201e-1f);
#define VEXPF_MUL_ADD(a, b, c) ((a) * (b) + (c))

/* k·exp(x) for a power of two k, rounded once: vexpf with k applied before the scales, so that
 * e^x/2 (k = 1/2) comes out right up to x = 89.4, where e^x alone has overflowed. */
static inline float vexpf_times(float x, float k) {
    VEXPF_STEPS(VEXPF_MUL_ADD, x, p, t)
    p = p * r_ * r_ + r_ + 1.0f;
    return vexpf_scale(p * k, t);
}

/* exp(x) for float32 x <= 0 (-inf included) without a libm call, so that loops over it vectorise:
 * x = n·ln 2 + r with |r| <= ln 2 / 2 (Cody-Waite, ln 2 in two parts), Cephes' degree-6 polynomial
 * for e^r, and 2^n made from its exponent bits in two halves so that denormal results come out
 * right.  Within 1 float32 ulp of exp for every normal result (measured over all float32 x in
 * [-87.3, 0]: 0.99 ulps; libm's expf 0.50), 0 below -104 (the clamp is on the bits, an integer
 * select, as a float one would not vectorise with trapping maths).  Positive x up to 88.7 come
 * out right too; NaN may give NaN or 0, so callers deal with NaN lanes themselves. */
static inline float vexpf(float x) { return vexpf_times(x, 1.0f); }

/* vexpf's steps with fused multiply-adds (fmaf, one rounding each) and e^r = 1 + r·(1 + r·p(r)) by
 * Horner: for float32 x <= 0 within 1 float32 ulp of exp for every normal result (measured over
 * every 7th float32 x in [-87.3, 0]: 0.87 ulps; vexpf 0.99), 0 below -104; NaN may give NaN or 0.
 * About 1.5x vexpf's speed in the x86-64-v3 and -v4 clones (AG_VEC_CLONES), where fmaf is an
 * instruction; in their baseline clone (CPUs without FMA) fmaf is a libm call, exact and several
 * times slower: use it in cloned loops.  Builds without the clones (clang, TSan) and without FMA in
 * their target would make every fmaf a call (3-4 ns each, eight an element, against about 0.5 ns
 * for all of vexpf): there vexpf_fma is vexpf (VEXPF_FUSED 0; its bits, within the same bound). */
#if defined(AG_X86_INTRINSICS) || defined(__FMA__)
#define VEXPF_FUSED 1
static inline float vexpf_fma(float x) {
    VEXPF_STEPS(fmaf, x, p, t)
    return vexpf_scale(fmaf(fmaf(p, r_, 1.0f), r_, 1.0f), t);
}
#else
#define VEXPF_FUSED 0
static inline float vexpf_fma(float x) { return vexpf(x); }
#endif

#ifdef AG_X86_INTRINSICS
#include <immintrin.h>
/* vexpf_fma of sixteen floats with AVX-512, the same bits: the same clamp (on the bits) and steps,
 * and vscalefps for p·2^n (rounded once, denormal results included, as vexpf_scale) */
__attribute__((target("avx512f"))) static inline __m512 vexpf_fma16(__m512 x) {
    x = _mm512_castsi512_ps(_mm512_min_epu32(_mm512_castps_si512(x), _mm512_set1_epi32((int)0xC2D00000u)));
    const __m512 magic = _mm512_set1_ps(12582912.0f);
    const __m512 t = _mm512_fmadd_ps(x, _mm512_set1_ps(1.44269504088896341f), magic), n = _mm512_sub_ps(t, magic);
    const __m512 r = _mm512_fmadd_ps(n, _mm512_set1_ps(2.12194440e-4f), _mm512_fmadd_ps(n, _mm512_set1_ps(-0.693359375f), x));
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    const __m512 one = _mm512_set1_ps(1.0f);
    return _mm512_scalef_ps(_mm512_fmadd_ps(_mm512_fmadd_ps(p, r, one), r, one), n);
}
#endif

#endif

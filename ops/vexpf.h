/*
 * ops/vexpf.h - a float32 exp that vectorises, shared by the kernels whose loops
 * over exp would otherwise be bound by libm calls (softmax, logsumexp).
 */
#ifndef AGRAD_VEXPF_H
#define AGRAD_VEXPF_H

#include <stdint.h>
#include <string.h>

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

/* k·exp(x) for a power of two k, rounded once: vexpf with k applied before the scales, so that
 * e^x/2 (k = 1/2) comes out right up to x = 89.4, where e^x alone has overflowed. */
static inline float vexpf_times(float x, float k) {
    uint32_t xb;
    memcpy(&xb, &x, sizeof xb);
    xb = xb > 0xC2D00000u ? 0xC2D00000u : xb; /* negative x below -104 (bits of -104.0f) */
    memcpy(&x, &xb, sizeof x);
    const float magic = 12582912.0f;          /* 1.5·2^23: t's low mantissa bits hold round(x·log2 e) */
    const float t = x * 1.44269504088896341f + magic, n = t - magic;
    const float r = (x - n * 0.693359375f) + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
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

#endif

/*
 * ops/vmathf.h - float32 expm1, log1p, sigmoid, softplus, sinh, cosh, atan, asin that vectorise.
 *
 * libm's float functions are calls the loops of ops/unary.c cannot vectorise (~10 ns an
 * element); these are polynomials with range reductions, branch-free (selects), so that
 * AG_VEC_CLONES loops over them do.  Special values are libm's: NaN in, NaN out; ±0 keep
 * their sign where libm's do; overflow to inf at libm's thresholds.  Error bounds in float32
 * ulps of the exact (float64 libm) result, which test/test_vmathf.c checks over a dense
 * sweep (every 4099th bit pattern; the worst in brackets over every 97th, 44M inputs a
 * function): vexpm1f 2.0 (1.69), vlog1pf 1.5 (0.82), vsigmoidf 3.0 (2.28), vsoftplusf 2.5
 * (1.55), vsinhf 2.5 (1.86), vcoshf 2.5 (1.37), vatanf 2.5 (2.01), vasinf 3.0 (2.37); libm's
 * expm1f and friends are within 0.5.
 */
#ifndef AGRAD_VMATHF_H
#define AGRAD_VMATHF_H

#include <math.h>
#include <stdbool.h>
#include "core/logf_poly.h"
#include "ops/vexpf.h"

/* 2^n as a float for an integer-valued float n in [-126, 127]. */
static inline float vmathf_pow2(float n) {
    const uint32_t b = (uint32_t)((int32_t)n + 127) << 23;
    float s;
    memcpy(&s, &b, sizeof s);
    return s;
}

/* expm1(x): x = n·ln 2 + r, |r| <= ln 2 / 2 (Cody-Waite), expm1(r) as its degree-7 Taylor
 * polynomial (truncation below 1.3e-8 relative), expm1(x) = 2^n·expm1(r) + (2^n - 1) with
 * x clamped to [-30, 20] (expm1 is -1 in float32 below -17); above 20 it is e^x (vexpf,
 * inf from 88.73); NaN stays NaN and -0 stays -0. */
static inline float vexpm1f(float x) {
    /* NaN compares false and goes to -30, so the integer conversion in vmathf_pow2 never sees it */
    const float xc = x > -30.0f ? (x < 20.0f ? x : 20.0f) : -30.0f;
    const float magic = 12582912.0f; /* 1.5·2^23: adding it rounds to an integer */
    const float n = (xc * 1.44269504088896341f + magic) - magic;
    const float r = (xc - n * 0.693359375f) + n * 2.12194440e-4f;
    float p = 1.0f / 5040;
    p = p * r + 1.0f / 720;
    p = p * r + 1.0f / 120;
    p = p * r + 1.0f / 24;
    p = p * r + 1.0f / 6;
    p = p * r + 0.5f;
    const float em = r + r * r * p, s = vmathf_pow2(n);
    const float mid = s * em + (s - 1.0f);
    const float big = vexpf(x > 89.0f ? 89.0f : x);
    const float y = x > 20.0f ? big : mid;
    return x == 0.0f || x != x ? x : y;
}

/* log1p(x): u = 1 + x rounded = 2^k·m with m in [√2/2, √2), f = m - 1, and
 * log1p(x) = k·ln 2 + log1p(f) + c, where c = (x - (u - 1))/u restores what rounding 1 + x
 * lost; log1p(f) = f - f²/2 + f³·P(f), Cephes' logf polynomial (degree 8).  -1 gives -inf,
 * below -1 NaN, inf inf, NaN NaN, ±0 itself. */
static inline float vlog1pf(float x) {
    const float u = 1.0f + x;
    uint32_t ub;
    memcpy(&ub, &u, sizeof ub);
    ub += 0x3F800000u - 0x3F3504F3u;
    const float k = (float)((int32_t)(ub >> 23) - 127);
    ub = (ub & 0x007FFFFFu) + 0x3F3504F3u;
    float m;
    memcpy(&m, &ub, sizeof m);
    const float f = m - 1.0f;
    const float c = (k >= 2.0f ? 1.0f - (u - x) : x - (u - 1.0f)) / u;
    const float p = ag__logf_poly(f);
    const float z = f * f;
    const float y = k * 0.693359375f + (f + ((f * z * p + (k * -2.12194440e-4f + c)) - 0.5f * z));
    return x == 0.0f || x != x || x == INFINITY ? x : x == -1.0f ? -INFINITY : x < -1.0f ? NAN : y;
}

/* sigmoid from e = e^-|x| (vexpf): 1/(1 + e) or e/(1 + e); NaN stays NaN. */
static inline float vsigmoidf(float x) {
    const float e = vexpf(-fabsf(x));
    const float y = x >= 0 ? 1.0f / (1.0f + e) : e / (1.0f + e);
    return x != x ? x : y;
}

/* softplus(z) = max(z, 0) + log1p(e^-|z|); NaN stays NaN. */
static inline float vsoftplusf(float z) {
    const float y = (z > 0 ? z : 0.0f) + vlog1pf(vexpf(-fabsf(z)));
    return z != z ? z : y;
}

/* e^a/2 for a in (88, 89.5], where e^a itself overflows from 88.73 (vexpf_times). */
static inline float vmathf_half_exp_big(float a) { return vexpf_times(a > 89.5f ? 89.5f : a, 0.5f); }

/* sinh(x) = sign(x)·(t + t/(t + 1))/2 with t = expm1(|x|) (vexpm1f; for |x| < 1 as
 * (2t - t²/(t + 1))/2, which cancels less), e^|x|/2 above |x| = 88, inf above 89.5. */
static inline float vsinhf(float x) {
    const float a = fabsf(x), t = vexpm1f(a); /* inf from 88.73, not selected */
    const float small = 0.5f * (2.0f * t - t * t / (t + 1.0f)), mid = 0.5f * (t + t / (t + 1.0f));
    const float y = a > 89.5f ? INFINITY : a > 88.0f ? vmathf_half_exp_big(a) : a < 1.0f ? small : mid;
    return x != x ? x : copysignf(y, x);
}

/* cosh(x) = (e + 1/e)/2 with e = e^|x| (vexpf), e^|x|/2 above |x| = 88, inf above 89.5. */
static inline float vcoshf(float x) {
    const float a = fabsf(x), e = vexpf(a > 88.0f ? 88.0f : a);
    const float y = a > 89.5f ? INFINITY : a > 88.0f ? vmathf_half_exp_big(a) : 0.5f * e + 0.5f / e;
    return x != x ? x : y;
}

/* atan(x) = sign(x)·(c + atan(t)): for |x| > tan(3π/8) c = π/2, t = -1/|x|; above tan(π/8)
 * c = π/4, t = (|x| - 1)/(|x| + 1); else c = 0, t = |x|; atan(t) = t + t·z·P(z), z = t²,
 * Cephes' atanf polynomial (degree 4).  ±inf give ±π/2, NaN NaN, -0 -0. */
static inline float vatanf(float x) {
    const float a = fabsf(x);
    const bool far = a > 2.414213562373095f, mid = a > 0.4142135623730950f;
    const float t = far ? -1.0f / a : mid ? (a - 1.0f) / (a + 1.0f) : a;
    /* c in two parts: float(c) + c_lo */
    const float c = far ? 1.5707963267948966f : mid ? 0.7853981633974483f : 0.0f;
    const float c_lo = far ? -4.37113900018624e-8f : mid ? -2.18556950009312e-8f : 0.0f;
    const float z = t * t;
    float p = 8.05374449538e-2f;
    p = p * z - 1.38776856032e-1f;
    p = p * z + 1.99777106478e-1f;
    p = p * z - 3.33329491539e-1f;
    const float y = c + ((t * z * p + c_lo) + t);
    return x != x ? x : copysignf(y, x);
}

/* asin(x) = sign(x)·asin(|x|): for |x| <= 1/2, s + s·z·P(z) with s = |x|, z = s²; above,
 * π/2 - 2·asin(s) with s = √z, z = (1 - |x|)/2; Cephes' asinf polynomial (degree 4).
 * NaN beyond ±1 and for NaN, -0 -0. */
static inline float vasinf(float x) {
    const float a = fabsf(x);
    const bool high = a > 0.5f;
    const float z = high ? 0.5f * (1.0f - a) : a * a, s = high ? sqrtf(z) : a;
    float p = 4.2163199048e-2f;
    p = p * z + 2.4181311049e-2f;
    p = p * z + 4.5470025998e-2f;
    p = p * z + 7.4953002686e-2f;
    p = p * z + 1.6666752422e-1f;
    const float r = s * z * p + s;
    const float y = high ? 1.5707963267948966f - ((r + r) + 4.37113900018624e-8f) : r; /* π/2 in two parts */
    return x != x ? x : a > 1.0f ? NAN : copysignf(y, x);
}

#endif

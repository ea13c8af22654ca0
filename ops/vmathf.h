/*
 * ops/vmathf.h - float32 exp, expm1, log1p, log, log2, log10, exp2, pow, sigmoid, softplus, sinh, cosh, tan,
 * sin, cos, sinc and sinc', tanh, atan, asin, atan2, acos, asinh, acosh, atanh, erf, erfc, mish and mish', log Γ,
 * ψ, ψ' and erf⁻¹ that vectorise.
 *
 * libm's float functions are calls the loops of ops/unary.c cannot vectorise (~10 ns an
 * element); these are polynomials with range reductions, branch-free (selects), so that
 * AG_VEC_CLONES loops over them do.  Special values are libm's: NaN in, NaN out; ±0 keep
 * their sign where libm's do; overflow to inf at libm's thresholds.  Error bounds in float32
 * ulps of the exact (float64 libm) result, which test/test_vmathf.c checks over a dense
 * sweep (every 4099th bit pattern; the worst in brackets over every 97th, 44M inputs a
 * function): vexpm1f 2.0 (1.69), vlog1pf 1.5 (0.82), vsigmoidf 3.0 (2.28), vsoftplusf 2.5
 * (1.55), vsinhf 2.5 (1.86), vcoshf 2.5 (1.37), vatanf 2.5 (2.01), vasinf 3.0 (2.37), vacosf
 * 1.5 (1.12), vasinhf 2.0 (1.64), vacoshf 2.5 (2.20), vatanhf 2.5 (1.99), verff 1.5 (1.23),
 * verfcf 4.5 (4.13), vmishf 5.0 (4.59), vlog2f 2.5 (1.83), vlog10f 2.5 (1.89), vexp2f 1.5 (1.22,
 * over every 7th), vtanf 1.0 (0.80, over every 7th), vsinf 1.0 and vcosf 1.0 (0.52 and 0.52, over
 * every 4099th), vlogf 1.0 (0.79), vexpf_any 1.0 (0.98, over every 7th), vtanhf 2.0 (1.51, over all 2^32),
 * vsincf 0.501 (0.5000 over every 97th and over every float in [1/4, 4)) and vsinc_gradf 0.501 in ulps of the
 * larger of its two terms beyond |x| = 1/4 (0.5000); vpowf and vmathf_pow_at 1.0 (0.50, over every 32793rd x for each
 * of 27 exponents and bases, and pairs of special values); vatan2f 2.5 (2.13) over pseudo-random pairs, one
 * operand within 2^±4 of the other (88M pairs in the brackets' run); vmish_gradf 7.0 (6.42)
 * in ulps of the larger of its two terms, which cancel near -1.19; vlgammaf 9.0 (7.96, at 1.45
 * beside log Γ's minimum, where log Γ(2 + z) and log a cancel) relative for x > 0 and in ulps
 * of max(|log Γ(x)|, 1) for x < 0 (a zero in every interval from -2 to -2^23), vdigammaf 6.0
 * (4.41) in ulps of the largest of 1, ψ(x) and, for x < 0, the terms of its reflection ψ(1 - x)
 * and π·cot(πx), vtrigammaf 7.0 (6.14), verfinvf 4.0 (3.53); these four against
 * ops/special.c's float64 functions.  libm's expm1f and friends are within 0.5.
 */
#ifndef AGRAD_VMATHF_H
#define AGRAD_VMATHF_H

#include <math.h>
#include <stdbool.h>
#include "core/logf_poly.h"
#include "ops/vexpf.h"
#include "ops/vmathf_2pi.h"

/* 2^n as a float for an integer-valued float n in [-126, 127]. */
static inline float vmathf_pow2(float n) {
    const uint32_t b = (uint32_t)((int32_t)n + 127) << 23;
    float s;
    memcpy(&s, &b, sizeof s);
    return s;
}

/* expm1(x) for x <= 20 (and NaN): x = n·ln 2 + r, |r| <= ln 2 / 2 (Cody-Waite), expm1(r) as its
 * degree-7 Taylor polynomial (truncation below 1.3e-8 relative), expm1(x) = 2^n·expm1(r) + (2^n - 1)
 * with x clamped to [-30, 20] (expm1 is -1 in float32 below -17); NaN stays NaN and -0 stays -0.  vexpm1f's
 * bits there without its e^x for x > 20: the loops whose argument is never above 20 (elu's x <= 0). */
static inline float vexpm1f_le20(float x) {
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
    return x == 0.0f || x != x ? x : mid;
}

/* expm1(x): vexpm1f_le20 up to 20, e^x above (vexpf, inf from 88.73); NaN stays NaN and -0 stays -0. */
static inline float vexpm1f(float x) {
    const float big = vexpf(x > 89.0f ? 89.0f : x);
    return x > 20.0f ? big : vexpm1f_le20(x);
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

/* log(x) = k·ln 2 + L for normal x > 0 as k and L: x = 2^k·m (denormals scaled by 2^23
 * first) with m in [√2/2, √2), f = m - 1 (exact), L = log(m) = f - f²/2 + f³·P(f) (Cephes'
 * logf polynomial).  Other x give numbers the callers select away. */
static inline float vmathf_log_parts(float x, float *l) {
    const bool tiny = x < 1.17549435e-38f;
    const float xs = tiny ? x * 0x1p23f : x;
    uint32_t ub;
    memcpy(&ub, &xs, sizeof ub);
    ub += 0x3F800000u - 0x3F3504F3u;
    const float k = (float)((int32_t)(ub >> 23) - 127) - (tiny ? 23.0f : 0.0f);
    ub = (ub & 0x007FFFFFu) + 0x3F3504F3u;
    float m;
    memcpy(&m, &ub, sizeof m);
    const float f = m - 1.0f, z = f * f;
    *l = f + (f * z * ag__logf_poly(f) - 0.5f * z);
    return k;
}

/* log2(x) = k + L/ln 2 (vmathf_log_parts).  -inf at ±0, NaN below 0 and for NaN, inf at inf. */
static inline float vlog2f(float x) {
    float l;
    const float k = vmathf_log_parts(x, &l), y = k + l * 1.44269504088896341f;
    return x != x || x == INFINITY ? x : x == 0.0f ? -INFINITY : x < 0.0f ? NAN : y;
}

/* log10(x) = k·log10(2) + L·log10(e) (vmathf_log_parts; log10(2) in two parts, the first
 * with 12 bits so that k times it is exact).  -inf at ±0, NaN below 0 and for NaN, inf at
 * inf. */
static inline float vlog10f(float x) {
    float l;
    const float k = vmathf_log_parts(x, &l);
    const float y = k * 0.301025390625f + (k * 4.6050389811980175e-06f + l * 0.43429448190325182f);
    return x != x || x == INFINITY ? x : x == 0.0f ? -INFINITY : x < 0.0f ? NAN : y;
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

/* Cephes' atanf polynomial (degree 4): atan(t) = t + t·z·P(z), z = t², for |t| <= tan(π/8). */
static inline float vmathf_atan_p(float z) {
    float p = 8.05374449538e-2f;
    p = p * z - 1.38776856032e-1f;
    p = p * z + 1.99777106478e-1f;
    return p * z - 3.33329491539e-1f;
}

/* atan(x) = sign(x)·(c + atan(t)): for |x| > tan(3π/8) c = π/2, t = -1/|x|; above tan(π/8)
 * c = π/4, t = (|x| - 1)/(|x| + 1); else c = 0, t = |x|; atan(t) by vmathf_atan_p.
 * ±inf give ±π/2, NaN NaN, -0 -0. */
static inline float vatanf(float x) {
    const float a = fabsf(x);
    const bool far = a > 2.414213562373095f, mid = a > 0.4142135623730950f;
    const float t = far ? -1.0f / a : mid ? (a - 1.0f) / (a + 1.0f) : a;
    /* c in two parts: float(c) + c_lo */
    const float c = far ? 1.5707963267948966f : mid ? 0.7853981633974483f : 0.0f;
    const float c_lo = far ? -4.37113900018624e-8f : mid ? -2.18556950009312e-8f : 0.0f;
    const float z = t * t, p = vmathf_atan_p(z);
    const float y = c + ((t * z * p + c_lo) + t);
    return x != x ? x : copysignf(y, x);
}

/* atan2(y, x), the angle of (x, y) in [-π, π]: q = min(|x|, |y|)/max(|x|, |y|) in [0, 1]
 * (an infinite max gives 0, or 1 if both are infinite; 0/0 gives 0), atan(q) = c + atan(t)
 * as in vatanf (c = π/4, t = (num - den)/(num + den), computed from the operands, above
 * tan(π/8); both scaled by 1/4 near overflow), and the angle k·π/4 ± atan(q): k = 0, +
 * when |y| <= |x| and x >= +0; 2, - when |y| > |x| and x >= +0; 4, - when |y| <= |x| and
 * x <= -0; 2, + when |y| > |x| and x <= -0; with y's sign.  libm's special values: atan2(±0,
 * +0) = ±0, atan2(±0, -0) = ±π, atan2(±inf, ±inf) = ±π/4 or ±3π/4, NaN if either is. */
static inline float vatan2f(float y, float x) {
    const float ay = fabsf(y), ax = fabsf(x);
    const bool swap = ay > ax, negx = copysignf(1.0f, x) < 0;
    const float num0 = swap ? ax : ay, den0 = swap ? ay : ax;
    const bool dinf = den0 == INFINITY;
    const float num = dinf ? (num0 == INFINITY ? 1.0f : 0.0f) : num0;
    const float den = dinf || den0 == 0.0f ? 1.0f : den0;
    const bool mid = num > 0.4142135623730950f * den;
    const float s = den > 0x1p125f ? 0.25f : 1.0f; /* exact: num > den/4 there */
    const float t = mid ? (num * s - den * s) / (num * s + den * s) : num / den;
    const float sg = swap != negx ? -1.0f : 1.0f; /* the sign of atan(q) in the angle */
    const float k = (swap ? 2.0f : negx ? 4.0f : 0.0f) + (mid ? sg : 0.0f);
    const float z = t * t, p = vmathf_atan_p(z);
    /* π/4 in two parts: 0.785398185 - 2.18556950e-8 */
    const float r = k * 0.7853981633974483f + ((sg * (t * z * p) + k * -2.18556950009312e-8f) + sg * t);
    return x != x || y != y ? x + y : copysignf(r, y);
}

/* Cephes' asinf polynomial (degree 4): asin(s) = s + s·z·P(z), z = s², for 0 <= s <= 1/2. */
static inline float vmathf_asin_poly(float s, float z) {
    float p = 4.2163199048e-2f;
    p = p * z + 2.4181311049e-2f;
    p = p * z + 4.5470025998e-2f;
    p = p * z + 7.4953002686e-2f;
    p = p * z + 1.6666752422e-1f;
    return s * z * p + s;
}

/* asin(x) = sign(x)·asin(|x|): for |x| <= 1/2, vmathf_asin_poly(|x|); above, π/2 - 2·asin(s)
 * with s = √z, z = (1 - |x|)/2.  NaN beyond ±1 and for NaN, -0 -0. */
static inline float vasinf(float x) {
    const float a = fabsf(x);
    const bool high = a > 0.5f;
    const float z = high ? 0.5f * (1.0f - a) : a * a, s = high ? sqrtf(z) : a;
    const float r = vmathf_asin_poly(s, z);
    const float y = high ? 1.5707963267948966f - ((r + r) + 4.37113900018624e-8f) : r; /* π/2 in two parts */
    return x != x ? x : a > 1.0f ? NAN : copysignf(y, x);
}

/* acos(x): π/2 - asin(x) for |x| <= 1/2; 2·asin(s) for x > 1/2 and π - 2·asin(s) for
 * x < -1/2, s = √((1 - |x|)/2); asin by vmathf_asin_poly, π/2 and π in two parts.  NaN
 * beyond ±1 and for NaN; acos(1) = +0. */
static inline float vacosf(float x) {
    const float a = fabsf(x);
    const bool high = a > 0.5f;
    const float z = high ? 0.5f * (1.0f - a) : a * a, s = high ? sqrtf(z) : a;
    const float r = vmathf_asin_poly(s, z), r2 = r + r;
    const float y = !high ? 1.5707963267948966f - (copysignf(r, x) + 4.37113900018624e-8f)
                    : x > 0 ? r2 : 3.1415926535897932f - (r2 + 8.74227800037248e-8f);
    return x != x ? x : a > 1.0f ? NAN : y;
}

/* asinh(x) = sign(x)·log1p(a + a²/(1 + √(1 + a²))), a = |x| (vlog1pf; no cancellation near
 * 0), and log1p(a) + ln 2 above a = 2^30 (a² overflows from 2^64, inf/inf, not selected;
 * 1/a² is below an ulp); one vlog1pf for both.  ±inf, NaN and ±0 give themselves.
 * (Clamping a instead stops gcc 12 vectorising the loops.) */
static inline float vasinhf(float x) {
    const float a = fabsf(x), a2 = a * a;
    const bool big = a > 0x1p30f;
    const float y = vlog1pf(big ? a : a + a2 / (1.0f + sqrtf(1.0f + a2))) + (big ? 0.6931471805599453f : 0.0f);
    return x != x ? x : copysignf(y, x);
}

/* acosh(x) = log1p(t + √(t·(t + 2))), t = x - 1 (exact below 2^24; vlog1pf), and
 * log1p(x) + ln 2 above x = 2^30; one vlog1pf for both.  NaN below 1 and for NaN, +0 at 1,
 * inf at inf. */
static inline float vacoshf(float x) {
    const float t = x - 1.0f;
    const bool big = x > 0x1p30f;
    const float y = vlog1pf(big ? x : t + sqrtf(t * (t + 2.0f))) + (big ? 0.6931471805599453f : 0.0f);
    return x != x ? x : x < 1.0f ? NAN : y;
}

/* a·b + c with one rounding (fmaf) where vexpf_fma has it (VEXPF_FUSED: the x86-64-v3 and -v4 clones, an
 * instruction), else rounded twice; the bits of a build do not depend on the clone that runs. */
#if VEXPF_FUSED
#define VMATHF_MADD(a, b, c) fmaf(a, b, c)
#else
#define VMATHF_MADD(a, b, c) ((a) * (b) + (c))
#endif

/* tanh(x) = sign(x)·t(a), a = |x|: for a < 0.625 t = a + a·z·P(z), z = a², Cephes' tanhf polynomial
 * (degree 4); else t = (1 - e)/(1 + e), e = e^(-2a) = 2^n·e^r by vexpf's reduction and polynomial with
 * a clamped to 9.5 (tanh is 1 in float32 from 9.01; e >= e^-19 stays normal, so 2^n is exponent bits);
 * fused multiply-adds where VMATHF_MADD has them.  NaN stays NaN, ±0 and ±inf give ±0 and ±1. */
static inline float vtanhf(float x) {
    const float a = fabsf(x), z = a * a;
    float p = -5.70498872745e-3f;
    p = VMATHF_MADD(p, z, 2.06390887954e-2f);
    p = VMATHF_MADD(p, z, -5.37397155531e-2f);
    p = VMATHF_MADD(p, z, 1.33314422036e-1f);
    p = VMATHF_MADD(p, z, -3.33332819422e-1f);
    const float small = VMATHF_MADD(a * z, p, a);
    const float u = -2.0f * (a < 9.5f ? a : 9.5f); /* NaN to -19 too: no NaN reaches the integer steps */
    const float magic = 12582912.0f;               /* 1.5·2^23: t's low mantissa bits hold n = round(u·log2 e) */
    const float t = VMATHF_MADD(u, 1.44269504088896341f, magic), n = t - magic;
    const float r = VMATHF_MADD(n, 2.12194440e-4f, VMATHF_MADD(n, -0.693359375f, u));
    float q = 1.9875691500e-4f;
    q = VMATHF_MADD(q, r, 1.3981999507e-3f);
    q = VMATHF_MADD(q, r, 8.3334519073e-3f);
    q = VMATHF_MADD(q, r, 4.1665795894e-2f);
    q = VMATHF_MADD(q, r, 1.6666665459e-1f);
    q = VMATHF_MADD(q, r, 5.0000001201e-1f);
    uint32_t tb;
    memcpy(&tb, &t, sizeof tb);
    const uint32_t sb = (tb - 0x4B400000u + 127u) << 23; /* 2^n, n in [-28, 0] */
    float s;
    memcpy(&s, &sb, sizeof s);
    const float e = VMATHF_MADD(VMATHF_MADD(q, r, 1.0f), r, 1.0f) * s;
    const float y = a < 0.625f ? small : (1.0f - e) / (1.0f + e);
    return x != x ? x : copysignf(y, x);
}

/* atanh(x) = sign(x)·log1p(2a/(1 - a))/2, a = |x| (vlog1pf).  ±inf at ±1, NaN beyond and
 * for NaN, -0 -0. */
static inline float vatanhf(float x) {
    const float a = fabsf(x), y = 0.5f * vlog1pf((a + a) / (1.0f - a));
    return x != x ? x : a > 1.0f ? NAN : copysignf(y, x);
}

/* erfc(a)·e^(a²)·(a + 1) for 0 <= a <= 10.1 as a polynomial (degree 12) in t = (a - 1)/(a + 1)
 * in [-1, 0.82], fitted for relative error (Lawson's iteration on Chebyshev nodes against
 * mpmath; 1.3 float32 ulps with float32 coefficients and Horner steps). */
static inline float vmathf_erfcx_poly(float t) {
    float p = 8.5291103460e-05f;
    p = p * t + 4.2026102892e-04f;
    p = p * t + 5.9040333144e-04f;
    p = p * t - 3.5377073800e-04f;
    p = p * t - 2.3599483538e-03f;
    p = p * t - 3.7594558671e-03f;
    p = p * t - 1.2207520194e-03f;
    p = p * t + 9.5682311803e-03f;
    p = p * t + 2.5395175442e-02f;
    p = p * t + 1.3906525448e-02f;
    p = p * t - 9.5556370914e-02f;
    p = p * t - 2.3768083751e-01f;
    return p * t + 8.5516715050e-01f;
}

/* erfc(a) for a >= 0 (NaN gives a number, callers select): e^(-a²)·P(t)/(a + 1), with a²
 * = h + l split exactly (Dekker: a = hi + lo, hi with 12 bits) and e^(-a²) = e^(-h)·(1 - l),
 * so that the rounding of a² (up to 2^-18 absolute at a = 10) does not enter; 0 above
 * 10.1 (erfc is below half the least denormal from 10.06). */
static inline float vmathf_erfc_pos(float a) {
    const float ac = a < 10.1f ? a : 10.1f; /* NaN too */
    const float c = ac * 4097.0f, hi = c - (c - ac), lo = ac - hi;
    const float h = ac * ac, l = ((hi * hi - h) + 2.0f * hi * lo) + lo * lo;
    const float e = vexpf(-h) * (1.0f - l);
    const float y = e * (vmathf_erfcx_poly((ac - 1.0f) / (ac + 1.0f)) / (ac + 1.0f));
    return a > 10.1f ? 0.0f : y;
}

/* erf(x) = x·P(x²) for |x| < 1 (Cephes' erff polynomial, degree 6, as x + x·(P - 1): P's
 * constant 2/√π is 0.4 ulp off in float32, its fraction 0.128... 0.03), sign(x)·(1 -
 * erfc(|x|)) above (vmathf_erfc_pos).  ±1 at ±inf, NaN NaN, -0 -0. */
static inline float verff(float x) {
    const float a = fabsf(x), z = a * a;
    float p = 7.853861353153693e-5f;
    p = p * z - 8.010193625184903e-4f;
    p = p * z + 5.188327685732524e-3f;
    p = p * z - 2.685381193529856e-2f;
    p = p * z + 1.128358514861418e-1f;
    p = p * z - 3.761262582423300e-1f;
    p = p * z + 0.128379165726710f;
    const float y = a < 1.0f ? a + a * p : 1.0f - vmathf_erfc_pos(a);
    return x != x ? x : copysignf(y, x);
}

/* erfc(x): vmathf_erfc_pos(|x|), 2 - that for x < 0.  2 at -inf, +0 at inf, NaN NaN. */
static inline float verfcf(float x) {
    const float r = vmathf_erfc_pos(fabsf(x));
    return x != x ? x : x < 0 ? 2.0f - r : r;
}

/* e^(-x²) (vexpf), NaN for NaN: erf's and erfc's derivatives. */
static inline float vmathf_exp_negsq(float x) {
    const float e = vexpf(-x * x);
    return x != x ? x : e;
}

/* e^(x²) (vexpf, x² clamped to 100 so that it overflows to inf from 88.8 as expf), NaN for NaN:
 * erfinv's derivative. */
static inline float vmathf_exp_sq(float x) {
    const float q = x * x, e = vexpf(q < 100.0f ? q : 100.0f);
    return x != x ? x : e;
}

/* mish(x) = x·tanh(softplus(x)) = x·n/(n + 2), n = e·(e + 2), e = e^x (vexpf); x above 40
 * (the factor is 1 in float32 from 9); below -20 x·e^x (the factor is e to float32
 * precision) as (x·e^(x/2))·e^(x/2), so that results in the denormals round once.  NaN NaN,
 * -inf NaN (-inf·0, as libm's formula), inf inf. */
static inline float vmishf(float x) {
    const float e = vexpf(x < 40.0f ? x : 40.0f), n = e * (e + 2.0f), h = vexpf(0.5f * x);
    const float y = x > 40.0f ? x : x < -20.0f ? (x * h) * h : x * (n / (n + 2.0f));
    return x != x ? x : y;
}

/* mish'(x) = t + x·σ(x)·(1 - t²), t = n/(n + 2) (vmishf's), σ = e/(1 + e), 1 - t² =
 * 4(n + 1)/(n + 2)²; 1 above 40; below -20 (1 + x)·e^x, as (1 + x)·e^(x/2)·e^(x/2).  NaN
 * NaN, -inf NaN (-inf·0, as libm's formula). */
static inline float vmish_gradf(float x) {
    const float e = vexpf(x < 40.0f ? x : 40.0f), n = e * (e + 2.0f), n2 = n + 2.0f, h = vexpf(0.5f * x);
    const float d = n / n2 + x * (e / (1.0f + e)) * (4.0f * ((n + 1.0f) / n2) / n2);
    return x != x ? x : x > 40.0f ? 1.0f : x < -20.0f ? ((1.0f + x) * h) * h : d;
}

/* 2^x: n = round(x) (x clamped to [-160, 130] first, NaN to -160), r = x - n exact in [-1/2,
 * 1/2], 2^r = 1 + r·P(r) (Cephes' exp2f polynomial, degree 5), and 2^n applied in two halves
 * (vexpf_scale) so that denormal results round once.  0 at -inf, inf from 128, NaN NaN. */
static inline float vexp2f(float x) {
    const float xc = x > -160.0f ? (x < 130.0f ? x : 130.0f) : -160.0f;
    const float t = xc + 12582912.0f, n = t - 12582912.0f, r = xc - n; /* 1.5·2^23 rounds to an integer */
    float p = 1.535336188319500e-4f;
    p = p * r + 1.339887440266574e-3f;
    p = p * r + 9.618437357674640e-3f;
    p = p * r + 5.550332471162809e-2f;
    p = p * r + 2.402264791363012e-1f;
    p = p * r + 6.931472028550421e-1f;
    const float y = vexpf_scale(r * p + 1.0f, t);
    return x != x ? x : y;
}

/* The argument reduction of vtanf, vsinf and vcosf, in double: |x| = M·2^E (M the integer
 * significand), y = M·2^E·2/π mod 4 from the row c0, c1, c2 of vmathf_2pi for x's exponent (row 0
 * below e = 127, scaled by 2^(e - 127); Payne-Hanek: M·c0 mod 4 and M·c1 exact, so the
 * cancellation in y - n costs nothing at any exponent), n = round(y); returns θ = (y - n)·π/2 in
 * [-π/4, π/4] and *q the bits of n + 1.5·2^52, whose last two are n mod 4.  No branch, no
 * float-to-integer conversion. */
static inline double vmathf_rem_pio2(float x, double c0, double c1, double c2, uint64_t *q) {
    uint32_t b;
    memcpy(&b, &x, sizeof b);
    const uint32_t e = (b >> 23) & 0xFFu, m = (b & 0x007FFFFFu) | (e ? 0x00800000u : 0u);
    const uint32_t ec = e > 1u ? e : 1u; /* denormals: e = 1 */
    const uint64_t sb = (uint64_t)((ec < 127u ? ec : 127u) + 1023u - 127u) << 52;
    double sc;
    memcpy(&sc, &sb, sizeof sc);
    const double mm = (double)(int32_t)m * sc;
    const double big = 6755399441055744.0; /* 1.5·2^52: adding it rounds to an integer */
    double p0 = mm * c0;
    p0 -= 4.0 * ((p0 * 0.25 + big) - big); /* exact, to [-2, 2] */
    const double p1 = mm * c1, p2 = mm * c2;
    const double t = (p0 + p1) + big, n = t - big;
    memcpy(q, &t, sizeof *q);
    return (((p0 - n) + p1) + p2) * 1.5707963267948966;
}

/* The row of vmathf_2pi for x's exponent (gcc 12 gathers with 64-bit indices). */
static inline uint64_t vmathf_2pi_row(float x) {
    uint32_t b;
    memcpy(&b, &x, sizeof b);
    const uint32_t e = (b >> 23) & 0xFFu, ec = e > 1u ? e : 1u, lo = ec > 127u ? ec : 127u;
    return (lo < 254u ? lo : 254u) - 127u;
}

/* The argument reduction of vtanf, vsinf and vcosf for |x| < VMATHF_TRIG_SMALL (512), in double (Cody-Waite,
 * as FreeBSD's __rem_pio2f for medium x): n = round(|x|·2/π), θ = (|x| - n·P1) - n·P2 with P1 the first 33
 * bits of π/2 (n·P1 exact for n < 2^20) and P2 = π/2 - P1; θ in [-π/4, π/4] (a little beyond where the
 * rounding of |x|·2/π puts it), *q the bits of n + 1.5·2^52, whose last two are n mod 4.  Five double
 * operations against vmathf_rem_pio2's table row and its twenty; no float-to-integer conversion. */
#define VMATHF_TRIG_SMALL 512.0f
static inline double vmathf_rem_pio2_small(float x, uint64_t *q) {
    const double xd = fabsf(x), big = 6755399441055744.0; /* 1.5·2^52: adding it rounds to an integer */
    const double t = xd * 0.63661977236758134308 + big, n = t - big;
    memcpy(q, &t, sizeof *q);
    return (xd - n * 1.57079632673412561417e+00) - n * 6.07710050650619224932e-11;
}

/* θ and q for any x: vmathf_rem_pio2_small's below VMATHF_TRIG_SMALL, vmathf_rem_pio2's (the row of
 * vmathf_2pi for x's exponent) from there; both computed, one selected (no branch). */
static inline double vmathf_rem_pio2_any(float x, uint64_t *q) {
    const uint64_t i = vmathf_2pi_row(x);
    uint64_t qs, qb;
    const double ts = vmathf_rem_pio2_small(x, &qs), tb = vmathf_rem_pio2(x, vmathf_2pi_c0[i], vmathf_2pi_c1[i], vmathf_2pi_c2[i], &qb);
    const bool small = fabsf(x) < VMATHF_TRIG_SMALL;
    *q = small ? qs : qb;
    return small ? ts : tb;
}

/* tan(x), computed in double from θ and q of x's reduction: t = tan θ by FreeBSD's k_tanf polynomial
 * (relative error 2^-25.6) and tan x = sign(x)·(n odd ? -1/t : t); NaN at ±inf and NaN, -0 -0. */
static inline float vtanf_at(float x, double th, uint64_t tb) {
    const double z = th * th, w = z * z, s = z * th;
    const double r = 2.97435743359967304927e-3 + z * 9.46564784943673166728e-3;
    const double u = 5.33812378445670393523e-2 + z * 2.45283181166547278873e-2;
    const double v = 3.33331395030791399758e-1 + z * 1.33392002712976742718e-1;
    const double q = (th + s * v) + (s * w) * (u + w * r);
    const double y = tb & 1u ? -1.0 / q : q;
    uint32_t b;
    memcpy(&b, &x, sizeof b);
    const float yf = (float)(b >> 31 ? -y : y);
    return x - x != 0.0f ? x - x : yf; /* NaN at ±inf and NaN */
}

/* sin(x) (cosine false) or cos(x) (true), computed in double from θ and q of x's reduction: sin θ and
 * cos θ by FreeBSD's k_sinf and k_cosf polynomials (errors below 2^-37.5 and 2^-34.1), picked and
 * signed by the quadrant (n mod 4 for sin |x|, n + 1 for cos |x|), then sin's sign of x: rounded once
 * to float (within 0.52 ulps); NaN at ±inf and NaN, sin(-0) = -0. */
static inline float vsincosf_at(float x, double th, uint64_t q, bool cosine) {
    const double z = th * th, w = z * z, zt = z * th;
    const double s = (th + zt * (-1.66666666416265235595e-1 + z * 8.33333293858894631756e-3)) +
                     (zt * w) * (-1.98393348360966317347e-4 + z * 2.71831149398982190641e-6);
    const double c = ((1.0 + z * -4.99999997251031003120e-1) + w * 4.16666233237390631894e-2) +
                     (w * z) * (-1.38867637746099294692e-3 + z * 2.43904487962774090654e-5);
    const uint64_t k = cosine ? q + 1u : q;
    const double v = k & 1u ? c : s, y = k & 2u ? -v : v;
    uint32_t b;
    memcpy(&b, &x, sizeof b);
    const float yf = (float)(!cosine && b >> 31 ? -y : y);
    return x - x != 0.0f ? x - x : yf; /* NaN at ±inf and NaN */
}

/* tan, sin and cos of x; the _small ones for |x| < VMATHF_TRIG_SMALL only, the same bits
 * (test_vmathf compares them over every 1025th float below 512), with vmathf_rem_pio2_small's
 * reduction alone (sin [512, 512] in a C harness, one thread: 440-470 µs for session 12's small path
 * below 2, three table values as constants and Payne-Hanek's operations, -> 265-275).  ops/unary.c's
 * kernels pick them block by block. */
#define VMATHF_TRIG(NAME, AT)                                                                  \
    static inline float NAME(float x) {                                                       \
        uint64_t q;                                                                           \
        const double th = vmathf_rem_pio2_any(x, &q);                                         \
        return AT;                                                                            \
    }                                                                                         \
    static inline float NAME##_small(float x) {                                               \
        uint64_t q;                                                                           \
        const double th = vmathf_rem_pio2_small(x, &q);                                       \
        return AT;                                                                            \
    }
VMATHF_TRIG(vtanf, vtanf_at(x, th, q))
VMATHF_TRIG(vsinf, vsincosf_at(x, th, q, false))
VMATHF_TRIG(vcosf, vsincosf_at(x, th, q, true))

/* sinc's reduction, exact: a = n/2 + r for a = |x| (a float), n = round(2a) and |r| <= 1/4, computed in
 * double, where 2a and r = a - n/2 are exact (no error at any a, unlike a reduction of the rounded π·a);
 * a >= 2^24 (even integers, and inf) as 0: sin πa = 0, cos πa = 1 (a NaN stays NaN).  Returns θ = π·r
 * and *q the bits of n + 1.5·2^52, whose last two are n mod 4 (sin πa = ±sin θ or ±cos θ by them). */
static inline double vmathf_rem_half(float a, uint64_t *q) {
    const double ad = a >= 0x1p24f ? 0.0 : (double)a, big = 6755399441055744.0; /* 1.5·2^52 */
    const double t = ad * 2.0 + big, n = t - big;
    memcpy(q, &t, sizeof *q);
    return (ad - 0.5 * n) * 3.14159265358979323846;
}

/* sin πa (*sp) and cos πa (*cp) of vmathf_rem_half's θ and q: sin θ and cos θ by their Taylor polynomials
 * to θ^13 and θ^14 (|θ| <= π/4: truncation below 2^-45 and 2^-50 relative; FreeBSD's k_sinf, vsinf's, is
 * 2^-29.3 off at π/4, 0.02 float32 ulps), picked and signed by n mod 4 (sin πa: s, c, -s, -c; cos πa: c,
 * -s, -c, s). */
static inline void vmathf_sincospi_d(double th, uint64_t q, double *sp, double *cp) {
    const double z = th * th;
    double ps = 1.0 / 6227020800.0, pc = -1.0 / 87178291200.0; /* 1/13!, -1/14! */
    ps = ps * z - 1.0 / 39916800.0, pc = pc * z + 1.0 / 479001600.0;
    ps = ps * z + 1.0 / 362880.0, pc = pc * z - 1.0 / 3628800.0;
    ps = ps * z - 1.0 / 5040.0, pc = pc * z + 1.0 / 40320.0;
    ps = ps * z + 1.0 / 120.0, pc = pc * z - 1.0 / 720.0;
    ps = ps * z - 1.0 / 6.0, pc = pc * z + 1.0 / 24.0;
    pc = pc * z - 0.5;
    const double s = th + (th * z) * ps, c = 1.0 + z * pc;
    const double v = q & 1u ? c : s, w = q & 1u ? s : c;
    *sp = q & 2u ? -v : v;
    *cp = (q + 1u) & 2u ? -w : w;
}

/* sinc x = sin(πx)/(πx), 1 at ±0: sin π|x| by the exact reduction (vmathf_rem_half, vmathf_sincospi_d),
 * over π|x|, in double (relative error below 2^-44), rounded once to float: within 0.501 ulps of the exact
 * sinc at every x (0 at the integers: +0 for both signs, and from 2^24); NaN at ±inf and NaN. */
static inline float vsincf(float x) {
    const float a = fabsf(x);
    uint64_t q;
    double sp, cp;
    const double th = vmathf_rem_half(a, &q);
    vmathf_sincospi_d(th, q, &sp, &cp);
    const float y = (float)((sp + 0.0) / ((double)a * 3.14159265358979323846)); /* + 0.0: -0 -> +0 */
    return x == 0.0f ? 1.0f : x - x != 0.0f ? x - x : y;
}

/* dy·sinc'(x), sinc'(x) = (πx·cos πx - sin πx)/(πx²), 0 at ±0 (whatever dy: PyTorch's), NaN at ±inf and
 * NaN; in double, rounded once to float.  |x| > 1/4: the formula over vmathf_sincospi_d's sin π|x| and
 * cos π|x|, whose two terms cancel near sinc's extrema: within 0.501 ulps of the larger of the two terms
 * (π|x|·cos πx and sin πx over πx², times |dy|); |x| <= 1/4, where they cancel towards 0, its Taylor
 * series π·u·(-1/3 + u²/30 - u⁴/840 + u⁶/45360 - u⁸/3991680 + u¹⁰/518918400) in u = π|x| (truncation
 * below 2^-39 relative), within 0.501 ulps of dy·sinc'(x) itself; sinc' is odd. */
static inline float vsinc_gradf(float x, float dy) {
    const float a = fabsf(x);
    uint64_t q;
    double sp, cp;
    const double th = vmathf_rem_half(a, &q);
    vmathf_sincospi_d(th, q, &sp, &cp);
    const double ad = a, u = ad * 3.14159265358979323846, u2 = u * u;
    const double gen = (u * cp - sp) / (u * ad);
    double p = 1.0 / 518918400.0;
    p = p * u2 - 1.0 / 3991680.0;
    p = p * u2 + 1.0 / 45360.0;
    p = p * u2 - 1.0 / 840.0;
    p = p * u2 + 1.0 / 30.0;
    p = p * u2 - 1.0 / 3.0;
    const double ser = (u * 3.14159265358979323846) * p, d = a <= 0.25f ? ser : gen;
    uint32_t b;
    memcpy(&b, &x, sizeof b);
    const float g = (float)((double)dy * (b >> 31 ? -d : d));
    return x == 0.0f ? 0.0f : x - x != 0.0f ? x - x : g;
}

/* exp(x) with expf's special values: vexpf below 88.8 (its scales overflow to inf from expf's
 * threshold 88.7228), inf above, NaN for NaN. */
static inline float vexpf_any(float x) {
    const float y = vexpf(x);
    return x != x ? x : x > 88.8f ? INFINITY : y;
}

/* log(x) for finite x > 0 (denormals too): k·ln 2 + L (vmathf_log_parts; ln 2 in two parts,
 * the first with 9 bits so that k times it is exact).  Other x give numbers callers select away. */
static inline float vmathf_logf(float x) {
    float l;
    const float k = vmathf_log_parts(x, &l);
    return k * 0.693359375f + (k * -2.12194440e-4f + l);
}

/* log(x) with libm's special values: NaN for NaN and x < 0, -inf at ±0, inf at inf; vmathf_logf
 * between. */
static inline float vlogf(float x) {
    const float y = vmathf_logf(x);
    return x != x || x == INFINITY ? x : x == 0.0f ? -INFINITY : x < 0.0f ? NAN : y;
}

/* log2|x| in double: |x| = 2^k·m (denormals scaled by 2^23 first) with m in [√2/2, √2), log m =
 * 2·atanh s, s = (m - 1)/(m + 1) in [-0.172, 0.172], by its series to s^15 (truncation below
 * 1e-14); -inf at ±0, inf at ±inf, NaN for NaN. */
static inline __attribute__((always_inline)) double vmathf_log2_d(float x) {
    const float a = fabsf(x);
    const bool tiny = a < 1.17549435e-38f;
    const float as = tiny ? a * 0x1p23f : a;
    uint32_t ub;
    memcpy(&ub, &as, sizeof ub);
    ub += 0x3F800000u - 0x3F3504F3u;
    const float kf = (float)((int32_t)(ub >> 23) - 127) - (tiny ? 23.0f : 0.0f);
    /* the special values through k, selected in float (gcc 12 vectorises no select of doubles on a
     * float compare of a loop invariant, as rpow_scalar's base is) */
    const float k = a == 0.0f ? -INFINITY : a != a || a == INFINITY ? a : kf;
    ub = (ub & 0x007FFFFFu) + 0x3F3504F3u;
    float m;
    memcpy(&m, &ub, sizeof m);
    const double md = m, s = (md - 1.0) / (md + 1.0), z = s * s;
    double p = 1.0 / 15;
    p = p * z + 1.0 / 13;
    p = p * z + 1.0 / 11;
    p = p * z + 1.0 / 9;
    p = p * z + 1.0 / 7;
    p = p * z + 1.0 / 5;
    p = p * z + 1.0 / 3;
    p = p * z + 1.0;
    return (double)k + 2.8853900817779268 * (s * p); /* 2/ln 2 */
}

/* 2^t for t in [-1022, 1023] (not NaN): n = round(t), u = (t - n)·ln 2 in [-0.347, 0.347], e^u by
 * its Taylor polynomial to degree 11 (truncation below 1e-14), times 2^n made from exponent bits (no
 * float-to-integer conversion). */
static inline __attribute__((always_inline)) double vmathf_exp2_core(double tc) {
    const double big = 6755399441055744.0; /* 1.5·2^52: adding it rounds to an integer */
    const double tb = tc + big, n = tb - big, u = (tc - n) * 0.69314718055994531;
    double p = 1.0 / 39916800;
    p = p * u + 1.0 / 3628800;
    p = p * u + 1.0 / 362880;
    p = p * u + 1.0 / 40320;
    p = p * u + 1.0 / 5040;
    p = p * u + 1.0 / 720;
    p = p * u + 1.0 / 120;
    p = p * u + 1.0 / 24;
    p = p * u + 1.0 / 6;
    p = p * u + 0.5;
    p = p * u + 1.0;
    p = p * u + 1.0;
    uint64_t b;
    memcpy(&b, &tb, sizeof b);
    b = (b + 1023u) << 52; /* the low bits of tb are n (two's complement): 2^n's exponent field */
    double sc;
    memcpy(&sc, &b, sizeof sc);
    return p * sc;
}

/* 2^t rounded once to float: t clamped to [-200, 200] (NaN to -200; callers select it away), then
 * vmathf_exp2_core. */
static inline __attribute__((always_inline)) float vmathf_exp2_d(double t) {
    return (float)vmathf_exp2_core(t > -200.0 ? (t < 200.0 ? t : 200.0) : -200.0);
}

/* 2^t in float64 (within 1e-14 relative) for t in [-1020, 1020]: 0 below, 2^1020 above, and for NaN
 * 0 (callers select it away). */
static inline __attribute__((always_inline)) double vmathf_exp2_dd(double t) {
    return t > -1020.0 ? vmathf_exp2_core(t < 1020.0 ? t : 1020.0) : 0.0;
}

/* pow(x, y) with powf's special values (vmathf_pow_at given l2 = log2|x| in double, which a caller
 * with a loop-invariant x computes once; vpowf computes it by vmathf_log2_d; always inlined: the
 * loops over them vectorise only inlined, and gcc's size limits left pow_scalar's adjoint a call): |x|^y = 2^(y·log2|x|) in double (vmathf_log2_d,
 * vmathf_exp2_d; ±0 and ±inf go through the clamp to 0 or inf), negated where x's sign is set and
 * y is an odd integer; NaN for finite x < 0 and y not an integer; 1 for y = ±0, for x = 1 and for
 * x = -1, y = ±inf; other NaN operands give NaN.  Rounded once from double: within 0.51 ulps. */
static inline __attribute__((always_inline)) float vmathf_pow_at(float x, float y, double l2) {
    const float ay = fabsf(y), ty = truncf(y), hy = truncf(y * 0.5f);
    /* & and | rather than && and ||, one select a statement: gcc 12 vectorises no select whose
     * condition is a loop invariant (y in pow_scalar, x in rpow_scalar), nor a PHI of more than four
     * arguments; with the invariant and the element's conditions combined, it does */
    const bool yint = ty == y, odd = yint & (ay < 0x1p24f) & (hy != y * 0.5f);
    const float r = vmathf_exp2_d((double)y * l2);
    float v = (odd & (signbit(x) != 0)) ? -r : r;
    v = ((x < 0.0f) & (x > -INFINITY) & !yint) ? NAN : v;
    v = ((x == -1.0f) & (ay == INFINITY)) ? 1.0f : v;
    v = ((x != x) | (y != y)) ? x + y : v;
    return ((y == 0.0f) | (x == 1.0f)) ? 1.0f : v;
}
static inline __attribute__((always_inline)) float vpowf(float x, float y) { return vmathf_pow_at(x, y, vmathf_log2_d(x)); }

/* round(a) for 0 <= a (ties to even): (a + 2^23) - 2^23 below 2^23, a itself above (an
 * integer); NaN stays NaN. */
static inline float vmathf_round_pos(float a) { return a < 0x1p23f ? (a + 0x1p23f) - 0x1p23f : a; }

/* sin(π|z|) and cos(π|z|) for |z| <= 1/2 in parts: w = min(|z|, 1/2 - |z|) (exact), *sq =
 * sin(πw)/π as w·Q(w²) (a denormal w stays exact) and *cw = cos(πw) as C(w²), Q and C the Taylor
 * polynomials (w <= 1/4: truncation below 3e-9 relative); returns whether |z| > 1/4, where
 * sin(π|z|) = cos(πw) and cos(π|z|) = sin(πw) (callers combine the parts with few roundings). */
static inline bool vmathf_sincospi(float z, float *sq, float *cw) {
    const float az = fabsf(z);
    const bool swap = az > 0.25f;
    const float w = swap ? 0.5f - az : az, w2 = w * w;
    float q = 2.6147847817654790e-2f;
    q = q * w2 - 1.9075182412208420e-1f;
    q = q * w2 + 8.1174242528335350e-1f;
    q = q * w2 - 1.6449340668482264f;
    *sq = w + w * (w2 * q);
    float p = -2.5806891390014050e-2f;
    p = p * w2 + 2.3533063035889312e-1f;
    p = p * w2 - 1.3352627688545893f;
    p = p * w2 + 4.0587121264167680f;
    p = p * w2 - 4.9348022005446790f;
    *cw = 1.0f + w2 * p;
    return swap;
}

/* log Γ(a) for a >= 0 given z = a - round(a) and l = log(a >= 6.5 ? a : the product below):
 * Stirling's series (Cephes' lgamf, degree 2 in 1/a²) from 6.5; below, n = round(a) - 2 in
 * [-2, 4], log Γ(2 + z) by Cephes' polynomial for |z| <= 1/2 (z exact, so no cancellation
 * near the zeros at 1 and 2) and log Γ(a) = log Γ(2 + z) ± l, l the log of (2 + z)(3 + z)...
 * (n factors) for n > 0, of a(a + 1)... (-n factors) for n < 0 (vmathf_lgamma_arg). */
static inline float vmathf_lgamma_pos(float a, float z, float l) {
    float b = 6.055172732649237e-4f;
    b = b * z - 1.311620815545743e-3f;
    b = b * z + 2.863437556468661e-3f;
    b = b * z - 7.366775108654962e-3f;
    b = b * z + 2.058355474821512e-2f;
    b = b * z - 6.735323259371034e-2f;
    b = b * z + 3.224669577325661e-1f;
    b = b * z + 4.227843421859038e-1f;
    const float n = (a - z) - 2.0f, small = z * b + (n < 0.0f ? -l : l);
    const float ia = 1.0f / a, p = ia * ia;
    const float ser = ((6.789774945028216e-4f * p - 2.769887652139868e-3f) * p + 8.333316229807355e-2f) * ia;
    /* (a - 1/2)(log a - 1) + log(2π)/2 - 1/2: no a·log a to overflow below where log Γ does */
    const float big = (a - 0.5f) * (l - 1.0f) + (4.18938533204672742e-1f + ser);
    return a >= 6.5f ? big : small;
}

/* The argument of vmathf_lgamma_pos's log: a from 6.5, else the product of its small range. */
static inline float vmathf_lgamma_arg(float a, float z) {
    const float n = (a - z) - 2.0f;
    float u = 1.0f;
    for (int k = 0; k < 4; k++) u *= (float)k < n ? z + (float)(2 + k) : 1.0f;
    const float d = (n < 0.0f ? a : 1.0f) * (n < -1.0f ? a + 1.0f : 1.0f);
    return a >= 6.5f ? a : n < 0.0f ? d : u;
}

/* log|Γ(x)|: vmathf_lgamma_pos(|x|) for x > 0; for x < 0, with a = -x (exact), the reflection
 * log|Γ(x)| = -log(a·sin(πa)/π) - log Γ(a) (vmathf_sincospi of a - round(a)), and -log a below
 * a = 2^-30 (where a·sin(πa) would underflow; the rest is below an ulp).  +inf at ±0, ±inf and
 * the non-positive integers (a·sin(πa)/π = 0), overflow to inf from 4.08e36, NaN NaN. */
static inline float vlgammaf(float x) {
    const float a = fabsf(x), z = a - vmathf_round_pos(a);
    float sq, cw;
    const float w = vmathf_sincospi(z, &sq, &cw) ? a * cw * 0.318309886183790671538f : a * sq; /* a·sin(πa)/π */
    const float lg = vmathf_lgamma_pos(a, z, vmathf_logf(vmathf_lgamma_arg(a, z)));
    const bool tiny = a < 0x1p-30f;
    const float lr = vmathf_logf(tiny ? a : w);
    const float neg = tiny ? -lr : -lr - lg;
    const float y = x > 0.0f ? lg : neg;
    return x != x ? x : a == INFINITY || x == 0.0f || (x < 0.0f && z == 0.0f) ? INFINITY : y;
}

/* The shared part of ψ(a) and ψ'(a) for a >= 0: s = a + m >= 4 (m the number of j in [0, 3]
 * with a + j < 4), and the sums over j in [1, 3] with a + j < 4 of 1/(a + j) (*s1) and 1/(a +
 * j)² (*s2), each as one quotient of products (the j = 0 terms, 1/a and 1/a², are the callers'). */
static inline float vmathf_psi_shift(float a, float *s1, float *s2) {
    float n1 = 0.0f, d1 = 1.0f, n2 = 0.0f, d2 = 1.0f, s = a < 4.0f ? a + 1.0f : a;
    for (int j = 1; j < 4; j++) {
        const float f = a + (float)j;
        const bool in = f < 4.0f;
        n1 = in ? n1 * f + d1 : n1;
        d1 = in ? d1 * f : d1;
        n2 = in ? n2 * (f * f) + d2 : n2;
        d2 = in ? d2 * (f * f) : d2;
        s = in ? f + 1.0f : s;
    }
    *s1 = n1 / d1;
    *s2 = n2 / d2;
    return s;
}

/* ψ(x): ψ(a) = ψ(s) - Σ 1/(a + j) (vmathf_psi_shift, a = |x|), ψ(s) for s >= 4 by the
 * asymptotic series log s - 1/(2s) - Σ B₂ₖ/(2k·s²ᵏ) (seven terms, Cephes' psi: below 3e-10
 * from s = 4); for x < 0 the reflection ψ(x) = ψ(a) + 1/a + π·cot(πa) (vmathf_sincospi).
 * Absolute error near ψ's zeros (the sums cancel).  NaN at the negative integers, -inf, NaN;
 * -inf at +0, +inf at -0, inf at inf. */
static inline float vdigammaf(float x) {
    const float a = fabsf(x), z = a - vmathf_round_pos(a);
    float s1, s2;
    const float s = vmathf_psi_shift(a, &s1, &s2);
    const float zz = 1.0f / (s * s);
    float p = 8.33333333333333333333e-2f;
    p = p * zz - 2.10927960927960927961e-2f;
    p = p * zz + 7.57575757575757575758e-3f;
    p = p * zz - 4.16666666666666666667e-3f;
    p = p * zz + 3.96825396825396825397e-3f;
    p = p * zz - 8.33333333333333333333e-3f;
    p = p * zz + 8.33333333333333333333e-2f;
    const float ps = vmathf_logf(s) - 0.5f / s - zz * p, r = ps - s1; /* ψ(a) + [a < 4]/a */
    const float rcp = 1.0f / a;
    float sq, cw;
    /* π·cot(π|z|): cos(πw)/(sin(πw)/π), or π²·(sin(πw)/π)/cos(πw) above |z| = 1/4 */
    const float pcot = vmathf_sincospi(z, &sq, &cw) ? 9.86960440108935861883f * sq / cw : cw / sq;
    const float pos = r - (a < 4.0f ? rcp : 0.0f);
    const float neg = r + (a < 4.0f ? 0.0f : rcp) + copysignf(pcot, z);
    const float y = x > 0.0f ? pos : x == 0.0f ? copysignf(INFINITY, -x) : z == 0.0f ? NAN : neg;
    return x != x || x == INFINITY ? x : y;
}

/* ψ'(x), PyTorch's polygamma(1, x): ψ'(a) = ψ'(s) + Σ 1/(a + j)² (vmathf_psi_shift), ψ'(s)
 * for s >= 4 by the asymptotic series 1/s + 1/(2s²) + Σ B₂ₖ/s^(2k+1) (seven terms, below 4e-9
 * relative from s = 4); for x < 0 the reflection ψ'(x) = π²/sin²(πa) - ψ'(a) + 1/a².  +inf at
 * 0 and the negative integers (the poles), 0 at inf, NaN at -inf and NaN. */
static inline float vtrigammaf(float x) {
    const float a = fabsf(x), z = a - vmathf_round_pos(a);
    float s1, s2;
    const float s = vmathf_psi_shift(a, &s1, &s2);
    const float u = 1.0f / s, u2 = u * u;
    float p = 7.0f / 6.0f;
    p = p * u2 - 691.0f / 2730.0f;
    p = p * u2 + 5.0f / 66.0f;
    p = p * u2 - 1.0f / 30.0f;
    p = p * u2 + 1.0f / 42.0f;
    p = p * u2 - 1.0f / 30.0f;
    p = p * u2 + 1.0f / 6.0f;
    const float r = (u + u2 * (0.5f + u * p)) + s2; /* ψ'(a) - [a < 4]/a² */
    const float rcp = 1.0f / a, r2 = rcp * rcp;
    float sq, cw;
    const float q = vmathf_sincospi(z, &sq, &cw) ? 3.14159265358979323846f / cw : 1.0f / sq; /* π/sin(πa) */
    const float pos = r + (a < 4.0f ? r2 : 0.0f);
    const float neg = q * q - r + (a < 4.0f ? 0.0f : r2);
    const float y = x > 0.0f ? pos : neg;
    return x != x ? x : x == 0.0f ? INFINITY : y;
}

/* erf⁻¹(x), Giles's single-precision approximation ("Approximating the erfinv function", GPU
 * Computing Gems, 2011): w = -log((1 - x)(1 + x)), x·P(w - 2.5) for w < 5 and x·Q(√w - 3)
 * above (both degree 8).  ±inf at ±1, NaN beyond and for NaN, -0 -0. */
static inline float verfinvf(float x) {
    const float a = fabsf(x), w = -vmathf_logf((1.0f - a) * (1.0f + a));
    const float t = w - 2.5f, v = sqrtf(w) - 3.0f;
    float p = 2.81022636e-08f;
    p = p * t + 3.43273939e-07f;
    p = p * t - 3.5233877e-06f;
    p = p * t - 4.39150654e-06f;
    p = p * t + 0.00021858087f;
    p = p * t - 0.00125372503f;
    p = p * t - 0.00417768164f;
    p = p * t + 0.246640727f;
    p = p * t + 1.50140941f;
    float q = -0.000200214257f;
    q = q * v + 0.000100950558f;
    q = q * v + 0.00134934322f;
    q = q * v - 0.00367342844f;
    q = q * v + 0.00573950773f;
    q = q * v - 0.0076224613f;
    q = q * v + 0.00943887047f;
    q = q * v + 1.00167406f;
    q = q * v + 2.83297682f;
    const float y = x * (w < 5.0f ? p : q);
    return x != x ? x : a > 1.0f ? NAN : a == 1.0f ? copysignf(INFINITY, x) : y;
}

#endif

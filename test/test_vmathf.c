/*
 * The float32 maths of ops/vmathf.h against float64 libm: over a dense sweep of float32
 * bit patterns (every STEP-th, both signs; VMATHF_STEP=1 in the environment sweeps all
 * 2^32), each function's worst error in units of the last place of the float32 result
 * stays within the bound its header states, and special values are libm's: NaN for NaN,
 * the same infinity, zeros of the same sign (log Γ, ψ, ψ' and erf⁻¹ against ops/special.c's float64
 * functions, some in absolute terms near their zeros: see fns).  And ops/vlogsum.h's (float)log(s) of the
 * float64 sums s >= 1 of the softmax kernels: libm's bits for every s of a sweep; and ops/vexpf.h's
 * vexpf_fma over x <= 0, its AVX-512 form vexpf_fma16 with the same bits.  And the ops on them whose paths
 * moved: float32 tanh, log (vlogf), celu, elu and selu (vexpm1f) on every path, their bits.
 */
#include <float.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "ops/vmathf.h"
#include "ops/vlogsum.h"
#include "ops/special.h"
#include "agrad/agrad.h"
#include "core/parallel.h"
#include "tap.h"

/* The error of got in float32 ulps of max(|want|, size), want the exact result (a double):
 * relative for size 0, absolute near the zeros of a function for size 1; a special-value
 * mismatch (NaN, infinity, sign of zero) counts as infinitely wrong. */
static double ulps_of(float got, double want, double size) {
    if (want != want)
        return got != got ? 0 : INFINITY;
    if (got != got)
        return INFINITY;
    const float wf = (float)want;
    if (isinf(wf) || isinf(got))
        return got == wf ? 0 : INFINITY;
    if (want == 0)
        return got == 0 && !signbit(got) == !signbit(want) ? 0 : INFINITY;
    int e;
    frexp(fmax(fabs(want), size), &e); /* 2^(e-1) <= max(|want|, size) < 2^e */
    const double ulp = ldexp(1.0, (e - 24 < -149 ? -149 : e - 24));
    return fabs((double)got - want) / ulp;
}

/* The error of got in float32 ulps of the exact result want. */
static double ulps(float got, double want) { return ulps_of(got, want, 0); }

static double softplus64(double z) { return (z > 0 ? z : 0) + log1p(exp(-fabs(z))); }
static double sigmoid64(double x) { return x >= 0 ? 1 / (1 + exp(-x)) : exp(x) / (1 + exp(x)); }
static double mish64(double x) { return x * tanh(log1p(exp(x))); }

/* A xorshift64 step: the pseudo-random operands of the two-argument sweep. */
static uint64_t next(uint64_t *s) {
    *s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
    return *s;
}

/* vatan2f over n pairs (y, x): x a random bit pattern, y within a factor 2^±4 of it (random
 * mantissa, sign and exponent offset: the quotients that reach the polynomial), or random
 * bits too (every 8th pair); then every pair of special values.  Returns the worst error. */
static double atan2_worst(uint64_t n, float *wy, float *wx) {
    enum { N = 4096 };
    static float xs[N], ys[N], r[N];
    uint64_t seed = 0x9E3779B97F4A7C15u;
    double worst = 0;
    for (uint64_t done = 0; done < n; done += N) {
        for (int i = 0; i < N; i++) {
            const uint64_t v = next(&seed);
            const uint32_t xb = (uint32_t)v, off = (uint32_t)(v >> 32);
            const uint32_t e = (xb >> 23) & 0xFF, ye = e + ((off >> 23) & 7) - 4;
            const uint32_t yb = i % 8 == 7 || e < 8 || e > 246 ? (uint32_t)(v >> 32)
                                                                : (off & 0x807FFFFFu) | (ye << 23);
            memcpy(&xs[i], &xb, sizeof xs[i]);
            memcpy(&ys[i], &yb, sizeof ys[i]);
        }
        for (int i = 0; i < N; i++) r[i] = vatan2f(ys[i], xs[i]);
        for (int i = 0; i < N; i++) {
            const double e = ulps(r[i], atan2((double)ys[i], (double)xs[i]));
            if (e > worst || e != e) worst = e, *wy = ys[i], *wx = xs[i];
        }
    }
    const float special[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, 1.0f, -1.0f, 3.0f, -0.5f, 1e-45f, -1e-45f,
                             FLT_MIN, FLT_MAX, -FLT_MAX, 3e38f, -2.9e38f};
    const int ns = (int)(sizeof special / sizeof special[0]);
    for (int i = 0; i < ns; i++)
        for (int j = 0; j < ns; j++) {
            const double e = ulps(vatan2f(special[i], special[j]), atan2((double)special[i], (double)special[j]));
            if (e > worst || e != e) worst = e, *wy = special[i], *wx = special[j];
        }
    return worst;
}

/* vpowf(x, y) over every step-th float32 x for each exponent y of a list (and vmathf_pow_at(y, x,
 * log2|y|), rpow_scalar's a^x, with y as the base), then every pair of special values; against
 * float64 pow, whose results (and special values: powf's) the float32 ones round.  Returns the worst
 * error, its x and y. */
static double pow_worst(uint64_t step, float *wx, float *wy) {
    static const float ys[] = {2.5f, -1.5f, 3.0f, -2.0f, 0.5f, 1e-3f, 37.1f, -7.0f, 0.3333f, 127.9f, -150.2f,
                               1.7f, 1e9f, -1e9f, 16777217.0f, 0.0f, -0.0f, 1.0f, -1.0f, 2.0f, -3.0f, 10.0f,
                               INFINITY, -INFINITY, NAN, 1e-45f, FLT_MAX};
    const size_t ny = sizeof ys / sizeof ys[0];
    double worst = 0;
    for (size_t k = 0; k < ny; k++)
        for (uint64_t b = 0; b <= UINT32_MAX; b += step) {
            const uint32_t u = (uint32_t)b;
            float x;
            memcpy(&x, &u, sizeof x);
            const double e = ulps(vpowf(x, ys[k]), pow((double)x, (double)ys[k]));
            const double er = ulps(vmathf_pow_at(ys[k], x, log2(fabs((double)ys[k]))), pow((double)ys[k], (double)x));
            if (e > worst || e != e) worst = e, *wx = x, *wy = ys[k];
            if (er > worst || er != er) worst = er, *wx = ys[k], *wy = x;
        }
    const float special[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, 1.0f, -1.0f, 0.5f, -0.5f, 2.0f, -2.0f, 3.0f,
                             -3.0f, 2.5f, -2.5f, 1e-45f, -1e-45f, FLT_MIN, FLT_MAX, -FLT_MAX, 0.99999994f, 1.00000012f};
    const size_t ns = sizeof special / sizeof special[0];
    for (size_t i = 0; i < ns; i++)
        for (size_t j = 0; j < ns; j++) {
            const float x = special[i], y = special[j];
            const double want = pow((double)x, (double)y);
            const double e = fmax(ulps(vpowf(x, y), want), ulps(vmathf_pow_at(x, y, log2(fabs((double)x))), want));
            if (!(e <= 1.0)) diag("pow(%g, %g) = %g, libm %g", (double)x, (double)y, (double)vpowf(x, y), want);
            if (e > worst || e != e) worst = e, *wx = x, *wy = y;
        }
    return worst;
}

/* mish'(x) against float64, in float32 ulps of the larger of its two terms (the terms
 * cancel near x = -1.19, where no float32 formula of them is accurate relative to the sum). */
static double mish_grad_worst(uint64_t step, float *wx) {
    double worst = 0;
    for (uint64_t b = 0; b <= UINT32_MAX; b += step) {
        const uint32_t u = (uint32_t)b;
        float x;
        memcpy(&x, &u, sizeof x);
        const double xd = x, t = tanh(log1p(exp(xd))), s = xd * sigmoid64(xd) * (1 - t * t), d = t + s;
        const double size = fmax(fmax(fabs(t), fabs(s)), FLT_MIN), got = vmish_gradf(x);
        const double e = d != d ? (got != got ? 0 : INFINITY) : isinf(d) ? (got == d ? 0 : INFINITY)
                                                                        : fabs(got - d) / fmax(size * 0x1p-24, 0x1p-149);
        if (e > worst || e != e) worst = e, *wx = x;
    }
    return worst;
}

/* sin πa and cos πa of a finite a >= 0 in float64: a mod 2 (exact), = n/2 + r with n = round(2(a mod 2))
 * and |r| <= 1/4 (exact), libm's sin and cos of π·r picked and signed by n mod 4 (errors near 2^-53
 * relative; no reduction of a rounded π·a). */
static void sincospi64(double a, double *sp, double *cp) {
    const double m = fmod(a, 2.0), n = nearbyint(2 * m), r = m - n / 2, pr = 3.14159265358979323846 * r;
    const int k = (int)n & 3;
    const double s = sin(pr), c = cos(pr);
    *sp = k == 0 ? s : k == 1 ? c : k == 2 ? -s : -c;
    *cp = k == 0 ? c : k == 1 ? -s : k == 2 ? -c : s;
}

/* sinc x = sin(πx)/(πx) in float64: 1 at ±0, +0 at the other integers, NaN at ±inf and NaN. */
static double sinc64(double x) {
    if (x == 0) return 1;
    if (!isfinite(x)) return NAN;
    double sp, cp;
    sincospi64(fabs(x), &sp, &cp);
    return sp == 0 ? 0 : sp / (3.14159265358979323846 * fabs(x));
}

/* sinc'(x) = (πx·cos πx - sin πx)/(πx²) in long double, 0 at ±0, NaN at ±inf and NaN; *size the size of
 * its error's ulps: 0 (relative) for |x| <= 1/4, where it is the Taylor series Σ (-1)^k·2k·π·u^(2k-1)/(2k+1)!
 * in u = π|x| (to k = 12), else the larger of its two terms π|x|·cos πx and sin πx over πx², which cancel
 * near sinc's extrema. */
static double sinc_grad64(double x, double *size) {
    *size = 0;
    if (x == 0) return 0;
    if (!isfinite(x)) return NAN;
    const long double pi = 3.14159265358979323846264338327950288L, a = fabsl((long double)x), u = pi * a;
    long double d = 0;
    if (a <= 0.25L) {
        long double t = u; /* u^(2k-1)/(2k+1)!, k = 1: u/3! */
        t /= 6;
        for (int k = 1; k <= 12; k++) {
            d += (k % 2 ? -1 : 1) * 2 * k * t;
            t *= u * u / ((2 * k + 2) * (2 * k + 3));
        }
        d *= pi;
    } else {
        double sp, cp;
        sincospi64((double)a, &sp, &cp);
        d = (u * cp - sp) / (u * a);
        *size = (double)(fmaxl(fabsl(u * cp), fabsl((long double)sp)) / (u * a));
    }
    return (double)(x < 0 ? -d : d);
}

/* The error of vsinc_gradf(x, dy) in float32 ulps of the size sinc_grad64 gives (relative, or of its
 * larger term), times |dy|; a special-value mismatch counts as infinitely wrong. */
static double sinc_grad_err(float x, float dy) {
    double size = 0;
    const double want = x == 0 ? 0 : sinc_grad64(x, &size) * dy; /* +0 at ±0 whatever dy */
    return ulps_of(vsinc_gradf(x, dy), want, size * fabs((double)dy));
}

/* The worst errors of vsincf and vsinc_gradf (dy = 1 and -0.37) over every float32 x with
 * lo <= x < hi (bit patterns, a range of one sign), and where they are. */
static void sinc_range_worst(float lo, float hi, double *wf, float *wfx, double *wg, float *wgx) {
    uint32_t b0, b1;
    memcpy(&b0, &lo, sizeof b0);
    memcpy(&b1, &hi, sizeof b1);
    for (uint32_t b = b0; b < b1; b++) {
        float x;
        memcpy(&x, &b, sizeof x);
        const double ef = ulps(vsincf(x), sinc64(x));
        const double eg = fmax(sinc_grad_err(x, 1.0f), sinc_grad_err(x, -0.37f));
        if (ef > *wf || ef != ef) *wf = ef, *wfx = x;
        if (eg > *wg || eg != eg) *wg = eg, *wgx = x;
    }
}

/* The references of the special functions: ops/special.c's float64 ones (lgamma_r's), ψ'
 * infinite at the poles (the non-positive integers; ops/special.c's is a huge finite 1/sin²(πx)). */
static double lgamma64(double x) { return ag__lgamma(x); }
static double trigamma64(double x) { return isfinite(x) && x <= 0 && x == trunc(x) ? INFINITY : ag__trigamma(x); }

/* The sizes the errors of log Γ and ψ are measured in ulps of, at least |f(x)| (NULL: relative
 * error): log Γ's relative for x > 0 and absolute (size 1) for x < 0, where it has a zero in
 * every interval from -2 to -2^23; ψ's absolute near its zero at 1.46, and for x < 0 in ulps
 * of the larger of ψ(1 - x) and π·cot(πx), the terms of the reflection ψ(x) = ψ(1 - x) -
 * π·cot(πx), which cancel at ψ's zeros there. */
static double lgamma_size(double x) { return x < 0 ? 1 : 0; }
static double digamma_size(double x) {
    return x < 0 ? fmax(1, fmax(fabs(ag__digamma(1 - x)), fabs(3.14159265358979323846 / tan(3.14159265358979323846 * x)))) : 1;
}

static const struct fn {
    const char *name;
    float (*f)(float);
    double (*ref)(double);
    double bound; /* the header's */
    double (*size)(double x); /* the size of the error's ulps (NULL: relative) */
} fns[] = {
    {"expm1", vexpm1f, expm1, 2.0, NULL}, {"log1p", vlog1pf, log1p, 1.5, NULL},       {"sigmoid", vsigmoidf, sigmoid64, 3.0, NULL},
    {"softplus", vsoftplusf, softplus64, 2.5, NULL}, {"sinh", vsinhf, sinh, 2.5, NULL}, {"cosh", vcoshf, cosh, 2.5, NULL},
    {"atan", vatanf, atan, 2.5, NULL},               {"asin", vasinf, asin, 3.0, NULL},       {"acos", vacosf, acos, 1.5, NULL},
    {"asinh", vasinhf, asinh, 2.0, NULL},            {"acosh", vacoshf, acosh, 2.5, NULL},    {"atanh", vatanhf, atanh, 2.5, NULL},
    {"erf", verff, erf, 1.5, NULL},                  {"erfc", verfcf, erfc, 4.5, NULL},       {"mish", vmishf, mish64, 5.0, NULL},
    {"log2", vlog2f, log2, 2.5, NULL},               {"log10", vlog10f, log10, 2.5, NULL},    {"exp2", vexp2f, exp2, 1.5, NULL},
    {"tan", vtanf, tan, 1.0, NULL},                  {"sin", vsinf, sin, 1.0, NULL},          {"cos", vcosf, cos, 1.0, NULL},
    {"log", vlogf, log, 1.0, NULL},                  {"exp", vexpf_any, exp, 1.0, NULL},      {"tanh", vtanhf, tanh, 2.0, NULL},
    {"lgamma", vlgammaf, lgamma64, 9.0, lgamma_size},
    {"digamma", vdigammaf, ag__digamma, 6.0, digamma_size}, {"trigamma", vtrigammaf, trigamma64, 7.0, NULL},
    {"erfinv", verfinvf, ag__erfinv, 4.0, NULL},     {"sinc", vsincf, sinc64, 0.501, NULL},
};

#ifdef AG_X86_INTRINSICS
/* How many of the n results of vexpf_fma16 over x differ from want's bits (vexpf_fma's). */
__attribute__((target("avx512f"))) static uint64_t exp_fma16_differ(const float *x, const float *want, int n) {
    uint64_t differ = 0;
    for (int i = 0; i < n; i += 16) {
        const __mmask16 m = (__mmask16)(n - i >= 16 ? 0xFFFFu : (1u << (n - i)) - 1);
        const __m512i got = _mm512_castps_si512(vexpf_fma16(_mm512_maskz_loadu_ps(m, x + i)));
        differ += (uint64_t)__builtin_popcount(_mm512_mask_cmpneq_epi32_mask(m, got, _mm512_maskz_loadu_epi32(m, want + i)));
    }
    return differ;
}
#endif

/* float32 ag_tanh runs vtanhf on every path, not oneDNN's tanh nor libm's tanhf: its bits for a
 * contiguous x above the thread threshold (1 and 2 threads), a transposed one and a small one, and
 * the adjoint dy·(1 - y²) from them; oneDNN stays in AG_BACKEND_ACCEL (within 2e-6 of vtanhf). */
static void test_tanh_op(void) {
    enum { R = 512, C = 300, N = R * C };
    float *x = malloc(N * sizeof *x), *y = malloc(N * sizeof *y), *g = malloc(N * sizeof *g);
    uint64_t seed = 0x2545F4914F6CDD1Du;
    for (int i = 0; i < N; i++) { /* |x| up to 12 with some specials: both branches, the clamp */
        const uint64_t v = next(&seed);
        x[i] = i % 997 == 5 ? (i % 3 ? -0.0f : NAN) : (float)((int64_t)(v >> 40) - (1 << 23)) * 0x1p-19f;
    }
    ag_scope_begin();
    const int threads = ag_get_num_threads();
    int64_t bad = 0, bad_t = 0, bad_g = 0;
    for (int nt = 1; nt <= 2; nt++) {
        ag_set_num_threads(nt);
        ag_tensor *tx = ag_requires_grad_(ag_from_data(x, AG_SHAPE(N), AG_F32), true);
        ag_tensor *ty = ag_tanh(tx);
        if (ag_copy_to(ty, y, N, AG_F32) || ag_backward(ag_sum(ty)) || ag_copy_to(ag_grad(tx), g, N, AG_F32)) {
            bad += N;
            continue;
        }
        for (int i = 0; i < N; i++) {
            const float want = vtanhf(x[i]), wg = 1 * (1 - want * want);
            bad += memcmp(&y[i], &want, sizeof want) != 0;
            bad_g += memcmp(&g[i], &wg, sizeof wg) != 0 && !(g[i] != g[i] && wg != wg);
        }
    }
    ag_set_num_threads(threads);
    ag_tensor *xt = ag_transpose(ag_from_data(x, AG_SHAPE(C, R), AG_F32), 0, 1); /* [R, C], strided */
    if (ag_copy_to(ag_tanh(xt), y, N, AG_F32)) bad_t += N;
    for (int r = 0; r < R && !bad_t; r++)
        for (int c = 0; c < C; c++) {
            const float want = vtanhf(x[c * R + r]);
            bad_t += memcmp(&y[r * C + c], &want, sizeof want) != 0;
        }
    float small[5];
    if (ag_copy_to(ag_tanh(ag_from_data(x + 3, AG_SHAPE(5), AG_F32)), small, 5, AG_F32)) bad_t += 5;
    for (int i = 0; i < 5; i++) {
        const float want = vtanhf(x[3 + i]);
        bad_t += memcmp(&small[i], &want, sizeof want) != 0;
    }
    ok(bad == 0 && bad_g == 0, "float32 tanh of %d elements on 1 and 2 threads: vtanhf's bits (%lld differ), the "
       "adjoint's from them (%lld differ)", N, (long long)bad, (long long)bad_g);
    ok(bad_t == 0, "float32 tanh of a transposed [%d, %d] and of 5 elements: vtanhf's bits (%lld differ)", R, C,
       (long long)bad_t);
    ag_backend_mode saved = ag__backend;
    ag__backend = AG_BACKEND_ACCEL;
    double worst = 0;
    if (!ag_copy_to(ag_tanh(ag_from_data(x, AG_SHAPE(N), AG_F32)), y, N, AG_F32))
        for (int i = 0; i < N; i++) worst = x[i] == x[i] ? fmax(worst, fabs((double)y[i] - vtanhf(x[i]))) : worst;
    else
        worst = INFINITY;
    ag__backend = saved;
    ok(worst <= 2e-6, "float32 tanh in AG_BACKEND_ACCEL (oneDNN where it is on): within %.2g of vtanhf", worst);
    ag_scope_end();
    free(x), free(y), free(g);
}

/* float32 ag_sinc runs vsincf and its adjoint vsinc_gradf on every path: their bits for a contiguous x above
 * the thread threshold on 1 and 2 threads (x of every size to 2^30 with integers, half-integers and special
 * values among them), the adjoint with dy one value (the gradient of a sum) and with dy contiguous (of a
 * weighted sum), and for a transposed x; within 0.501 ulps of the exact sinc (libm's sinf of the rounded
 * π·x, the row before session 22, is 10^7 ulps off at x = 1000.25 and not 0 at the integers). */
static void test_sinc_op(void) {
    enum { R = 512, C = 300, N = R * C };
    float *x = malloc(N * sizeof *x), *w = malloc(N * sizeof *w), *y = malloc(N * sizeof *y),
          *g = malloc(N * sizeof *g);
    uint64_t seed = 0xA0761D6478BD642Fu;
    static const float special[] = {0.0f, -0.0f, 1.0f, -2.0f, 0.5f, -1.5f, INFINITY, -INFINITY, NAN, 1e-45f,
                                    1000.25f, 8388609.0f, 1e30f};
    for (int i = 0; i < N; i++) { /* |x| = m·2^e, e from -20 to 30; every 7th an integer or a half-integer */
        const uint64_t v = next(&seed);
        const float m = (float)(int32_t)(v >> 40 & 0xFFFFFF) * 0x1p-24f, e = (float)((int)(v % 51) - 20);
        const float a = ldexpf(m, (int)e);
        x[i] = (v >> 32 & 1 ? -1 : 1) * (i % 7 == 3 ? nearbyintf(2 * a) / 2 : a);
        if (i % 1013 == 11) x[i] = special[(i / 1013) % 13];
        w[i] = (float)((int64_t)(v >> 20 & 0xFFFF) - 0x8000) * 0x1p-12f;
    }
    ag_scope_begin();
    const int threads = ag_get_num_threads();
    int64_t bad = 0, bad_g = 0, bad_w = 0, bad_t = 0;
    double worst = 0;
    for (int nt = 1; nt <= 2; nt++) {
        ag_set_num_threads(nt);
        for (int weighted = 0; weighted < 2; weighted++) {
            ag_tensor *tx = ag_requires_grad_(ag_from_data(x, AG_SHAPE(N), AG_F32), true);
            ag_tensor *ty = ag_sinc(tx);
            ag_tensor *loss = weighted ? ag_sum(ag_mul(ty, ag_from_data(w, AG_SHAPE(N), AG_F32))) : ag_sum(ty);
            if (ag_copy_to(ty, y, N, AG_F32) || ag_backward(loss) || ag_copy_to(ag_grad(tx), g, N, AG_F32)) {
                bad += N;
                continue;
            }
            for (int i = 0; i < N; i++) {
                const float want = vsincf(x[i]), wg = vsinc_gradf(x[i], weighted ? w[i] : 1.0f);
                bad += memcmp(&y[i], &want, sizeof want) != 0 && !(y[i] != y[i] && want != want);
                *(weighted ? &bad_w : &bad_g) += memcmp(&g[i], &wg, sizeof wg) != 0 && !(g[i] != g[i] && wg != wg);
                const double e = ulps(y[i], sinc64(x[i]));
                worst = e > worst || e != e ? e : worst;
            }
        }
    }
    ag_set_num_threads(threads);
    ag_tensor *xt = ag_requires_grad_(ag_from_data(x, AG_SHAPE(C, R), AG_F32), true);
    ag_tensor *yt = ag_sinc(ag_transpose(xt, 0, 1)); /* [R, C] of a strided x */
    if (ag_copy_to(ag_contiguous(yt), y, N, AG_F32) || ag_backward(ag_sum(yt)) || ag_copy_to(ag_grad(xt), g, N, AG_F32))
        bad_t += N;
    for (int i = 0; i < N && !bad_t; i++) {
        const int r = i / C, c = i % C;
        const float want = vsincf(x[c * R + r]), wg = vsinc_gradf(x[i], 1.0f);
        bad_t += memcmp(&y[i], &want, sizeof want) != 0 && !(y[i] != y[i] && want != want);
        bad_t += memcmp(&g[i], &wg, sizeof wg) != 0 && !(g[i] != g[i] && wg != wg);
    }
    ok(bad == 0 && worst <= 0.501, "float32 sinc of %d elements on 1 and 2 threads: vsincf's bits (%lld differ), "
       "within %.4f ulps of the exact sinc (bound 0.501)", N, (long long)bad, worst);
    ok(bad_g == 0 && bad_w == 0, "float32 sinc's adjoint, dy one value and dy contiguous: vsinc_gradf's bits (%lld "
       "and %lld differ)", (long long)bad_g, (long long)bad_w);
    ok(bad_t == 0, "float32 sinc of a transposed [%d, %d] and its adjoint: vsincf's and vsinc_gradf's bits (%lld differ)",
       R, C, (long long)bad_t);
    ag_scope_end();
    free(x), free(w), free(y), free(g);
}

/* float32 ag_log runs vlogf on every path (no longer oneDNN's log from 512 elements, nor libm's logf below):
 * its bits for a contiguous x above the thread threshold on 1 and 2 threads (normal, denormal and special
 * inputs: 0, -0, negative, inf, NaN), a transposed one, a small one and in AG_BACKEND_ACCEL, within 1 ulp of
 * float64 log; the adjoint dy/x. */
static void test_log_op(void) {
    enum { R = 512, C = 300, N = R * C };
    float *x = malloc(N * sizeof *x), *y = malloc(N * sizeof *y), *g = malloc(N * sizeof *g);
    uint64_t seed = 0x9E3779B97F4A7C15u;
    static const float special[] = {0.0f, -0.0f, -1.0f, INFINITY, -INFINITY, NAN, 1e-45f, 1.17549435e-38f, 1.0f, FLT_MAX};
    for (int i = 0; i < N; i++) { /* positive floats of every exponent, denormals among them */
        const uint32_t u = (uint32_t)(next(&seed) >> 33) % 0x7F800000u;
        memcpy(&x[i], &u, sizeof u);
        if (i % 1009 == 7) x[i] = special[(i / 1009) % 10];
    }
    ag_scope_begin();
    const int threads = ag_get_num_threads();
    ag_backend_mode saved = ag__backend;
    int64_t bad = 0, bad_g = 0, bad_t = 0;
    double worst = 0;
    for (int run = 0; run < 3; run++) { /* 1 thread, 2 threads, AG_BACKEND_ACCEL */
        ag_set_num_threads(run ? 2 : 1);
        if (run == 2) ag__backend = AG_BACKEND_ACCEL;
        ag_tensor *tx = ag_requires_grad_(ag_from_data(x, AG_SHAPE(N), AG_F32), true);
        ag_tensor *ty = ag_log(tx);
        if (ag_copy_to(ty, y, N, AG_F32) || ag_backward(ag_sum(ty)) || ag_copy_to(ag_grad(tx), g, N, AG_F32)) {
            bad += N;
            continue;
        }
        for (int i = 0; i < N; i++) {
            const float want = vlogf(x[i]), wg = 1 / x[i];
            bad += memcmp(&y[i], &want, sizeof want) != 0;
            bad_g += memcmp(&g[i], &wg, sizeof wg) != 0 && !(g[i] != g[i] && wg != wg);
            const double e = ulps(y[i], log((double)x[i]));
            worst = e > worst || e != e ? e : worst;
        }
    }
    ag__backend = saved;
    ag_set_num_threads(threads);
    ag_tensor *xt = ag_transpose(ag_from_data(x, AG_SHAPE(C, R), AG_F32), 0, 1); /* [R, C], strided */
    if (ag_copy_to(ag_contiguous(ag_log(xt)), y, N, AG_F32)) bad_t += N;
    for (int r = 0; r < R && !bad_t; r++)
        for (int c = 0; c < C; c++) {
            const float want = vlogf(x[c * R + r]);
            bad_t += memcmp(&y[r * C + c], &want, sizeof want) != 0;
        }
    float small[R];
    if (ag_copy_to(ag_log(ag_slice(ag_from_data(x, AG_SHAPE(N), AG_F32), 0, 3, 3 + 2 * R, 2)), small, R, AG_F32))
        bad_t += R;
    for (int i = 0; i < R; i++) { /* a strided run of 512 elements */
        const float want = vlogf(x[3 + 2 * i]);
        bad_t += memcmp(&small[i], &want, sizeof want) != 0;
    }
    if (ag_copy_to(ag_log(ag_from_data(x + 3, AG_SHAPE(5), AG_F32)), small, 5, AG_F32)) bad_t += 5;
    for (int i = 0; i < 5; i++) {
        const float want = vlogf(x[3 + i]);
        bad_t += memcmp(&small[i], &want, sizeof want) != 0;
    }
    ok(bad == 0 && bad_g == 0 && worst <= 1.0,
       "float32 log of %d elements on 1 and 2 threads and in AG_BACKEND_ACCEL: vlogf's bits (%lld differ), "
       "within %.3f ulps of float64 log, the adjoint dy/x (%lld differ)", N, (long long)bad, worst, (long long)bad_g);
    ok(bad_t == 0, "float32 log of a transposed [%d, %d], a strided run and 5 elements: vlogf's bits (%lld differ)", R,
       C, (long long)bad_t);
    ag_scope_end();
    free(x), free(y), free(g);
}

/* float32 celu(x, α) = α·expm1(x/α) for x <= 0, x above: the bits of that expression over vexpm1f at α = 1.5 and
 * 0.3 (the α > 0 kernel, vexpm1f_le20) and -0.7 (the row's, arguments above 20 too), contiguous and transposed;
 * within 2.5 ulps (of max(|y|, 2^-126)) of float64's α·expm1(x/α) (α the float32 the op takes), plus |x/α|
 * ulps (expm1's condition number, about 1 + |t| at t = x/α, times x/α's float32 rounding) for α < 0; elu and
 * selu for x <= 0 the bits of α·vexpm1f(x) (their arguments are never above 20), within 2.5 ulps of float64. */
static void test_elu_family_op(void) {
    enum { R = 300, C = 200, N = R * C };
    float *x = malloc(N * sizeof *x), *y = malloc(N * sizeof *y);
    uint64_t seed = 0xD1B54A32D192ED03u;
    for (int i = 0; i < N; i++) /* x in (-40, 24): below expm1's -1, near 0 and past 20·|α| */
        x[i] = i % 991 == 3 ? (i % 2 ? -0.0f : NAN) : (float)((int64_t)(next(&seed) >> 40) - (5 << 21)) * 0x1p-18f;
    ag_scope_begin();
    static const double alphas[] = {1.5, 0.3, -0.7};
    int64_t bad = 0, bad_e = 0;
    double worst = 0;
    for (int k = 0; k < 3; k++) {
        const double al = alphas[k];
        const float a = (float)al;
        for (int tr = 0; tr < 2; tr++) {
            ag_tensor *tx = ag_from_data(x, AG_SHAPE(tr ? C : R, tr ? R : C), AG_F32);
            if (tr) tx = ag_transpose(tx, 0, 1);
            if (ag_copy_to(ag_contiguous(ag_celu(tx, al)), y, N, AG_F32)) {
                bad += N;
                continue;
            }
            for (int r = 0; r < R; r++)
                for (int c = 0; c < C; c++) {
                    const float v = x[tr ? c * R + r : r * C + c], got = y[r * C + c];
                    const float want = v <= 0 ? vexpm1f(v / a) * a : v;
                    bad += memcmp(&got, &want, sizeof want) != 0 && !(got != got && want != want);
                    const double w = v <= 0 ? (double)a * expm1((double)v / a) : v; /* the float32 α the op takes */
                    const double e = ulps_of(got, w, 0x1p-126) - (al < 0 && v == v ? fabs((double)v / al) : 0);
                    worst = e > worst || e != e ? e : worst;
                }
        }
    }
    const float lam = (float)1.0507009873554804934193349852946, neg = (float)1.6732632423543772848170429916717 * lam;
    double worst_e = 0;
    for (int k = 0; k < 2; k++) { /* elu at α = 1.25, selu */
        const float an = k ? neg : 1.25f, ap = k ? lam : 1.0f;
        ag_tensor *tx = ag_from_data(x, AG_SHAPE(N), AG_F32);
        if (ag_copy_to(k ? ag_selu(tx) : ag_elu(tx, 1.25), y, N, AG_F32)) bad_e += N;
        for (int i = 0; i < N; i++) {
            const float want = x[i] <= 0 ? vexpm1f(x[i]) * an : x[i] * ap;
            bad_e += memcmp(&y[i], &want, sizeof want) != 0 && !(y[i] != y[i] && want != want);
            const double e = ulps_of(y[i], x[i] <= 0 ? (double)an * expm1((double)x[i]) : (double)x[i] * ap, 0x1p-126);
            worst_e = e > worst_e || e != e ? e : worst_e;
        }
    }
    ok(bad == 0 && worst <= 2.5, "float32 celu at alpha 1.5, 0.3, -0.7, contiguous and transposed: the bits of "
       "alpha·vexpm1f(x/alpha) (%lld differ), within %.3f ulps of float64 (bound 2.5, plus |x/alpha| for alpha < 0)",
       (long long)bad, worst);
    ok(bad_e == 0 && worst_e <= 2.5, "float32 elu and selu: the bits of alpha·vexpm1f(x) for x <= 0 (%lld differ), "
       "within %.3f ulps of float64 (bound 2.5)", (long long)bad_e, worst_e);
    ag_scope_end();
    free(x), free(y);
}

int main(void) {
    test_tanh_op();
    test_log_op();
    test_elu_family_op();
    test_sinc_op();
    const char *env = getenv("VMATHF_STEP");
    const uint64_t step = env ? strtoull(env, NULL, 10) : 4099; /* odd: all mantissa residues */
    enum { N = 4096 };
    static float x[N], y[N];
    for (size_t k = 0; k < sizeof fns / sizeof fns[0]; k++) {
        const struct fn *fn = &fns[k];
        double worst = 0;
        float worst_x = 0;
        for (uint64_t b = 0; b <= UINT32_MAX;) {
            int n = 0;
            for (; n < N && b <= UINT32_MAX; n++, b += step) {
                const uint32_t u = (uint32_t)b;
                memcpy(&x[n], &u, sizeof x[n]);
            }
            for (int i = 0; i < n; i++) /* a loop the compiler may vectorise, as the kernels' */
                y[i] = fn->f(x[i]);
            for (int i = 0; i < n; i++) {
                const double e = ulps_of(y[i], fn->ref((double)x[i]), fn->size ? fn->size((double)x[i]) : 0);
                if (e > worst || e != e)
                    worst = e, worst_x = x[i];
            }
        }
        ok(worst <= fn->bound, "%s: worst %.4f ulps (bound %g) at x = %.9g, step %llu", fn->name, worst, fn->bound,
           (double)worst_x, (unsigned long long)step);
        /* the special values, one by one */
        const float special[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, -1.0f, 1e-45f, -1e-45f, 88.7f, 89.4f, 89.5f,
                                 100.0f, -100.0f, 1e30f, -1e30f, FLT_MAX, -FLT_MAX, 1.17549435e-38f,
                                 /* tan's floats nearest ±π/2 and 3π/2 (its poles); exp2's overflow and
                                  * denormal edges */
                                 1.57079637f, -1.57079637f, 4.71238899f, 128.0f, -126.0f, -149.5f, -150.0f,
                                 /* the poles and zeros of log Γ, ψ and ψ', log Γ's overflow edge,
                                  * half-integers beyond 2^22, erfinv's ±1 and the float below 1 */
                                 1.0f, 2.0f, -2.0f, -3.0f, -8388607.0f, 1.46163213f, -2.45695400f, 4.0850e36f,
                                 4.0860e36f, 6291456.5f, -6291456.5f, -0.5f, 0.99999994f, -0.99999994f};
        double sworst = 0;
        for (size_t i = 0; i < sizeof special / sizeof special[0]; i++) {
            const double e = ulps_of(fn->f(special[i]), fn->ref((double)special[i]),
                                     fn->size ? fn->size((double)special[i]) : 0);
            if (!(e <= fn->bound))
                diag("%s(%g) = %g, libm %g", fn->name, (double)special[i], (double)fn->f(special[i]),
                     fn->ref((double)special[i]));
            sworst = e > sworst || e != e ? e : sworst;
        }
        ok(sworst <= fn->bound, "%s: special values as libm's", fn->name);
    }
    float wy = 0, wx = 0;
    const double a2 = atan2_worst(((uint64_t)1 << 32) / step * 2, &wy, &wx);
    ok(a2 <= 2.5, "atan2: worst %.3f ulps (bound %.1f) at (%.9g, %.9g), special values as libm's", a2, 2.5,
       (double)wy, (double)wx);
    /* vtanf_small, vsinf_small and vcosf_small: the bits of vtanf, vsinf and vcosf for |x| < 512 */
    {
        uint64_t wrong = 0, checked = 0;
        for (uint64_t b = 0; b < 0x44000000u; b += step / 4 | 1)
            for (int sign = 0; sign < 2; sign++) {
                const uint32_t u = (uint32_t)b | (uint32_t)sign << 31;
                float v, a[3], c[3];
                memcpy(&v, &u, sizeof v);
                a[0] = vtanf(v), a[1] = vsinf(v), a[2] = vcosf(v);
                c[0] = vtanf_small(v), c[1] = vsinf_small(v), c[2] = vcosf_small(v);
                wrong += memcmp(a, c, sizeof a) != 0;
                checked++;
            }
        ok(wrong == 0, "tan, sin, cos below 512 by the small reduction alone: the same bits (%llu of %llu differ)",
           (unsigned long long)wrong, (unsigned long long)checked);
    }
    {
        float px = 0, py = 0;
        const double pw = pow_worst(step * 8 | 1, &px, &py);
        ok(pw <= 1.0, "pow: worst %.3f ulps (bound 1.0) at (%.9g, %.9g), special values as powf's", pw, (double)px,
           (double)py);
    }
    /* sinc and dy·sinc' (vsincf, vsinc_gradf): every float32 in [1/4, 4) (where sinc has its first zeros
     * and extrema), every step-th bit pattern (both signs), and their special values */
    {
        double wf = 0, wg = 0;
        float wfx = 0, wgx = 0;
        sinc_range_worst(0.25f, 4.0f, &wf, &wfx, &wg, &wgx);
        ok(wf <= 0.501 && wg <= 0.501, "sinc over every float32 in [1/4, 4): worst %.6f ulps (bound 0.501) at x = %.9g; "
           "dy·sinc' %.6f ulps (bound 0.501, of its larger term) at x = %.9g", wf, (double)wfx, wg, (double)wgx);
        wg = 0;
        for (uint64_t b = 0; b <= UINT32_MAX; b += step) {
            const uint32_t u = (uint32_t)b;
            float x;
            memcpy(&x, &u, sizeof x);
            const double e = fmax(sinc_grad_err(x, 1.0f), sinc_grad_err(x, -0.37f));
            if (e > wg || e != e) wg = e, wgx = x;
        }
        ok(wg <= 0.501, "dy·sinc': worst %.6f ulps (bound 0.501, of its larger term beyond 1/4) at x = %.9g, step %llu",
           wg, (double)wgx, (unsigned long long)step);
        /* exact values: sinc(±0) = 1, +0 at integers of either sign (odd ones beyond 2^23 too) and huge x,
         * NaN at ±inf and NaN; sinc' 0 at ±0 whatever dy, (-1)^n/n at the integers, NaN at ±inf and NaN */
        const float z[] = {1.0f, -1.0f, 2.0f, -3.0f, 1000001.0f, 8388609.0f, -16777215.0f, 16777216.0f, 1e30f,
                           -FLT_MAX};
        bool exact = vsincf(0.0f) == 1.0f && vsincf(-0.0f) == 1.0f && vsincf(INFINITY) != vsincf(INFINITY) &&
                     vsincf(-INFINITY) != vsincf(-INFINITY) && vsincf(NAN) != vsincf(NAN);
        for (size_t i = 0; i < sizeof z / sizeof z[0]; i++) {
            const float y = vsincf(z[i]), g = vsinc_gradf(z[i], 1.0f);
            const double n = z[i], want = (fmod(fabs(n), 2.0) == 1.0 ? -1.0 : 1.0) / n;
            exact = exact && y == 0.0f && !signbit(y) && g == (float)want;
        }
        exact = exact && vsinc_gradf(0.0f, 2.0f) == 0.0f && vsinc_gradf(-0.0f, NAN) == 0.0f &&
                vsinc_gradf(INFINITY, 1.0f) != vsinc_gradf(INFINITY, 1.0f) && vsinc_gradf(NAN, 1.0f) != vsinc_gradf(NAN, 1.0f);
        const float tiny[] = {1e-45f, -1e-45f, FLT_MIN, 1e-20f, -3e-8f, 0.5f, -1.5f, 6291456.5f};
        double wt = 0;
        for (size_t i = 0; i < sizeof tiny / sizeof tiny[0]; i++)
            wt = fmax(wt, fmax(ulps(vsincf(tiny[i]), sinc64(tiny[i])), sinc_grad_err(tiny[i], 1.0f)));
        ok(exact && wt <= 0.51, "sinc: 1 at ±0, +0 at integers and huge x, NaN at ±inf and NaN; sinc' 0 at ±0, "
           "(-1)^n/n at the integers, NaN at ±inf and NaN; tiny, denormal and half-integer x within %.3f ulps", wt);
    }
    const double mg = mish_grad_worst(step, &wx);
    ok(mg <= 7.0, "mish': worst %.3f ulps of its larger term (bound %.1f) at x = %.9g", mg, 7.0, (double)wx);
    /* vlogsum_fix: (float)log(s) bit for bit, over s = 1 and its neighbours, every float64 of a
     * stride through [1, 2^40] and consecutive float64s around a few powers of two; how many sums
     * vlogsum left to libm is reported (about one in 2^12) */
    {
        enum { M = 1 << 16 };
        static double s[M];
        static float f[M];
        uint64_t checked = 0, wrong = 0, fallback = 0;
        double worst64 = 0; /* vlog_ge1's worst error in float64 ulps of libm's log */
        const uint64_t one = 0x3FF0000000000000ull, top = 0x4270000000000000ull; /* 1 and 2^40 */
        for (int pass = 0; pass < 2; pass++)
            for (uint64_t b = one; b < top;) {
                int n = 0;
                for (; n < M && b < top; n++) {
                    memcpy(&s[n], &b, sizeof b);
                    b += pass == 0 ? 0x3FFFFFFFFull : (n % 4096 == 4095 ? 0x10000000000000ull - 4095 : 1);
                }
                vlogsum_fix(s, f, n);
                for (int i = 0; i < n; i++) {
                    int okv;
                    (void)vlogsum(s[i], &okv);
                    fallback += !okv;
                    const float want = (float)log(s[i]);
                    wrong += memcmp(&f[i], &want, sizeof want) != 0;
                    const double l = log(s[i]), d = fabs(vlog_ge1(s[i]) - l);
                    const double e = l > 0 ? d / (nextafter(l, INFINITY) - l) : d / 0x1p-1074;
                    worst64 = e > worst64 || e != e ? e : worst64;
                }
                checked += (uint64_t)n;
            }
        ok(wrong == 0, "vlogsum_fix: %llu of %llu sums differ from (float)log(s); %llu left to libm",
           (unsigned long long)wrong, (unsigned long long)checked, (unsigned long long)fallback);
        ok(worst64 <= 4, "vlog_ge1: within %.2f float64 ulps of log (bound 4)", worst64);
        int okv;
        ok(vlogsum(1.0, &okv) == 0 && okv && (vlogsum(0.5, &okv), !okv) && (vlogsum(INFINITY, &okv), !okv) &&
               (vlogsum(NAN, &okv), !okv),
           "vlogsum: log 1 = 0; s < 1, +inf and NaN left to libm");
    }
    /* vexpf_fma (ops/vexpf.h, the softmax kernels' exp) over x <= 0: within 1 ulp for every normal
     * result, denormal results within one denormal step, 0 below -104 and at -inf; with AVX-512,
     * vexpf_fma16 gives the same bits (for every swept x <= 0, -inf included) */
    {
        enum { M = 4096 };
        static float xs[M], ys[M];
        double worst = 0, worst_sub = 0;
        float wx = 0;
        uint64_t differ = 0, zero_wrong = 0;
        const uint64_t top = 0xFF800000u; /* -inf */
        for (uint64_t b = 0x80000000u; b <= top;) {
            int n = 0;
            for (; n < M && b <= top; n++, b = b + step > top && b < top ? top : b + step) {
                const uint32_t u = (uint32_t)b;
                memcpy(&xs[n], &u, sizeof u);
            }
            for (int i = 0; i < n; i++) ys[i] = vexpf_fma(xs[i]);
            for (int i = 0; i < n; i++) {
                const double e = exp((double)xs[i]);
                if (xs[i] < -104.0f) {
                    zero_wrong += ys[i] != 0;
                } else if (e >= 0x1p-126) {
                    const double u = ulps(ys[i], e);
                    if (u > worst || u != u) worst = u, wx = xs[i];
                } else {
                    worst_sub = fmax(worst_sub, fabs((double)ys[i] - e) / 0x1p-149);
                }
            }
#ifdef AG_X86_INTRINSICS
            if (AG_VEC_512()) differ += exp_fma16_differ(xs, ys, n);
#endif
        }
        ok(worst <= 1.0 && worst_sub <= 1.0 && zero_wrong == 0,
           "vexpf_fma: worst %.3f ulps (bound 1.0) at x = %.9g, denormal results within %.2f of 2^-149, 0 below -104, "
           "step %llu", worst, (double)wx, worst_sub, (unsigned long long)step);
        ok(differ == 0, "vexpf_fma16: the same bits as vexpf_fma (%llu differ; checked where AVX-512 runs)",
           (unsigned long long)differ);
    }
    /* the test can fail: one ulp off at 1 is caught */
    ok(ulps(nextafterf(expm1f(1.0f), 0) , expm1(1.0)) > 0.5, "an error of one ulp counts");
    return tap_done();
}

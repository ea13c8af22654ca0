/*
 * The elementwise ops of issue 15 (include/agrad/ops.h: asin ... nan_to_num, the masks
 * isnan/isinf/isfinite, atan2 ... heaviside, lerp, clamp_tensor): values and gradients
 * against PyTorch (test/fixtures/elementwise.txt, from scripts/gen_elementwise_fixtures.py)
 * in float64 and float32 at edge inputs (0, -0, ±1, domain edges, poles, large, tiny,
 * NaN, ±inf), binary and ternary ops on every pair (triple) of such values; the masks
 * record nothing; empty and 0-d operands; the errors by their messages.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "agrad/agrad.h"
#include "tap.h"
#include "test/fixture.h"

#ifndef FIXTURES
#define FIXTURES "test/fixtures"
#endif

/* A result matches PyTorch's when |got - want| <= RTOL·|want| + ATOL (NaN matches NaN,
 * an infinity the same infinity).  PyTorch's float32 kernels are SLEEF's (1 ulp) or
 * float versions of the special functions; agrad's compute those in double. */
#define RTOL_F64 1e-12
#define ATOL_F64 1e-15
#define RTOL_F32 1e-5
#define ATOL_F32 1e-6

enum { MAXIN = 3 };

/* Where agrad knowingly differs from PyTorch 1.13: in one case, dtype ([f64, f32]) and result
 * (0: y, 1 + i: the gradient of input i), the elements whose first input satisfies skip are
 * left out of the comparison; and why. */
static bool negative_integer(double x) { return x < 0 && x == trunc(x); }
static const struct deviation {
    const char *label;
    int dtype, k;
    bool (*skip)(double x);
    const char *why;
} deviations[] = {
    {"digamma", 1, 1, negative_integer,
     "the poles (negative integers): the trigamma function is infinite there, and both give a huge finite 1/sin²(πx); "
     "agrad's float32 rounds the float64 one, PyTorch's computes sin(πx) in float (2.6e30 vs 2.9e11)"},
    {"polygamma/0", 1, 1, negative_integer, "as digamma's: its derivative is the same trigamma"},
    {"polygamma/1", 1, 0, negative_integer, "the same trigamma at the same poles"},
    {NULL, 0, 0, NULL, NULL},
};

static const struct deviation *deviation_of(const char *label, int d, int k) {
    for (size_t i = 0; deviations[i].label; i++)
        if (strcmp(deviations[i].label, label) == 0 && deviations[i].dtype == d && deviations[i].k == k)
            return &deviations[i];
    return NULL;
}

/* ---- the fixture file ------------------------------------------------------------------------ */
typedef struct fx_case {
    char label[48], fn[32];
    double opt[3];
    int nin;
    int64_t n;
    double *in[MAXIN];
    double *want[2][1 + MAXIN]; /* [f64, f32][y, d0, d1, d2]; no d for the masks */
} fx_case;

static fx_case *cases;
static int ncases;

/* One line of elementwise.txt into the case c (fixture_read_cases). */
static bool take_line(void *cv, char *line, void *ctx) {
    fx_case *c = cv;
    (void)ctx;
    if (!c) return false;
    if (strncmp(line, "case ", 5) == 0)
        return sscanf(line + 5, "%47s %31s %lf %lf %lf", c->label, c->fn, &c->opt[0], &c->opt[1], &c->opt[2]) == 5;
    if (strncmp(line, "inputs ", 7) == 0) {
        long long n;
        bool good = sscanf(line + 7, "%d %lld", &c->nin, &n) == 2 && c->nin >= 1 && c->nin <= MAXIN && n > 0;
        c->n = n;
        return good;
    }
    if (strncmp(line, "in ", 3) == 0) {
        int i, used;
        return c->n > 0 && sscanf(line + 3, "%d%n", &i, &used) == 1 && i >= 0 && i < c->nin && !c->in[i] &&
               (c->in[i] = fixture_parse_values(line + 3 + used, c->n)) != NULL;
    }
    if (strncmp(line, "f64 ", 4) == 0 || strncmp(line, "f32 ", 4) == 0) {
        int d = line[1] == '3', k = line[4] == 'y' ? 0 : 1 + (line[5] - '0');
        return c->n > 0 && k >= 0 && k <= c->nin && !c->want[d][k] &&
               (c->want[d][k] = fixture_parse_values(line + (k ? 7 : 6), c->n)) != NULL;
    }
    bool good = strcmp(line, "end") == 0;
    for (int i = 0; i < c->nin; i++) good = good && c->in[i];
    return good && c->want[0][0] && c->want[1][0];
}

static void free_fixtures(void) {
    for (int i = 0; i < ncases; i++) {
        for (int k = 0; k < MAXIN; k++) free(cases[i].in[k]);
        for (int d = 0; d < 2; d++)
            for (int k = 0; k <= MAXIN; k++) free(cases[i].want[d][k]);
    }
    free(cases);
}

/* ---- calling an op by name ------------------------------------------------------------------------ */
static ag_tensor *call(const fx_case *c, ag_tensor *const *x) {
    const char *fn = c->fn;
    const double *o = c->opt;
#define UNARY(NAME) \
    if (strcmp(fn, #NAME) == 0) return ag_##NAME(x[0]);
#define BINARY(NAME) \
    if (strcmp(fn, #NAME) == 0) return ag_##NAME(x[0], x[1]);
    UNARY(asin) UNARY(acos) UNARY(sinh) UNARY(cosh) UNARY(asinh) UNARY(acosh) UNARY(atanh) UNARY(log2)
    UNARY(log10) UNARY(exp2) UNARY(erfc) UNARY(erfinv) UNARY(lgamma) UNARY(digamma) UNARY(sinc) UNARY(ceil)
    UNARY(frac) UNARY(isnan) UNARY(isinf) UNARY(isfinite)
    BINARY(atan2) BINARY(hypot) BINARY(fmod) BINARY(remainder) BINARY(copysign) BINARY(logaddexp)
    BINARY(logaddexp2) BINARY(xlogy) BINARY(heaviside)
    if (strcmp(fn, "polygamma") == 0) return ag_polygamma((int64_t)o[0], x[0]);
    if (strcmp(fn, "logit") == 0) return ag_logit(x[0], o[0]);
    if (strcmp(fn, "nan_to_num") == 0) return ag_nan_to_num(x[0], o[0], o[1], o[2]);
    if (strcmp(fn, "lerp") == 0) return ag_lerp(x[0], x[1], x[2]);
    if (strcmp(fn, "clamp_tensor") == 0) return ag_clamp_tensor(x[0], x[1], x[2]);
#undef UNARY
#undef BINARY
    return NULL;
}

/* ---- against PyTorch ---------------------------------------------------------------------------- */
/* y and, where the fixture has them, the gradients of sum(y) in dtype; out[k] gets c->n doubles
 * (out[1 + i] NULL: not wanted).  False on failure. */
static bool evaluate(const fx_case *c, ag_dtype dtype, double *out[1 + MAXIN]) {
    bool grads = out[1] != NULL;
    ag_scope_begin();
    ag_tensor *x[MAXIN] = {NULL};
    for (int i = 0; i < c->nin; i++)
        x[i] = ag_requires_grad_(ag_to_dtype(ag_from_data(c->in[i], AG_SHAPE(c->n), AG_F64), dtype), grads);
    ag_tensor *y = call(c, x);
    bool good = y && ag_copy_to(y, out[0], c->n, AG_F64) == AG_OK;
    if (good && grads) {
        good = ag_backward(ag_sum(y)) == AG_OK;
        for (int i = 0; good && i < c->nin; i++)
            good = ag_grad(x[i]) && ag_copy_to(ag_grad(x[i]), out[1 + i], c->n, AG_F64) == AG_OK;
    }
    ag_scope_end();
    return good;
}

/* The largest |got - want| / (|want| + atol/rtol) over n values (0 where both are NaN or
 * equal, INFINITY where one is NaN and the other not); *bad gets the index of the worst. */
static double worst_error(const double *got, const double *want, const double *in0, int64_t n, double rtol,
                          double atol, bool (*skip)(double), int64_t *bad) {
    double worst = 0;
    *bad = -1;
    for (int64_t i = 0; i < n; i++) {
        if ((isnan(got[i]) && isnan(want[i])) || got[i] == want[i] || (skip && skip(in0[i]))) continue;
        double e = fabs(got[i] - want[i]) / (fabs(want[i]) + atol / rtol);
        if (isnan(e)) e = INFINITY;
        if (e > worst) {
            worst = e;
            *bad = i;
        }
    }
    return worst;
}

static double overall[2]; /* the worst error over the file per dtype, deviations left out */

static void check_case(const fx_case *c, int d) {
    ag_dtype dtype = d ? AG_F32 : AG_F64;
    bool grads = c->want[d][1] != NULL;
    double *got[1 + MAXIN] = {NULL};
    for (int k = 0; k <= (grads ? c->nin : 0); k++) got[k] = malloc(sizeof(double) * (size_t)c->n);
    bool good = evaluate(c, dtype, got);
    for (int k = 0; k <= (grads ? c->nin : 0); k++) {
        const struct deviation *dev = deviation_of(c->label, d, k);
        double rtol = d ? RTOL_F32 : RTOL_F64, atol = d ? ATOL_F32 : ATOL_F64;
        int64_t bad = -1;
        double e = good ? worst_error(got[k], c->want[d][k], c->in[0], c->n, rtol, atol, dev ? dev->skip : NULL, &bad)
                        : INFINITY;
        if (!dev && e > overall[d]) overall[d] = e;
        char what[8];
        snprintf(what, sizeof what, k ? "d%d" : "y", k - 1);
        ok(e <= rtol, "%s %s %s: within %g·|want| + %g of PyTorch over %lld inputs (worst %.2g)%s", c->label,
           d ? "f32" : "f64", what, rtol, atol, (long long)c->n, e, dev ? " - inputs left out, a known deviation" : "");
        if (dev) diag("%s", dev->why);
        if (bad >= 0 && e > rtol) {
            char at[128] = "";
            for (int i = 0, used = 0; i < c->nin; i++)
                used += snprintf(at + used, sizeof at - (size_t)used, "%s%.17g", i ? ", " : "", c->in[i][bad]);
            diag("at (%s): agrad %.17g, PyTorch %.17g", at, got[k][bad], c->want[d][k][bad]);
        }
    }
    for (int k = 0; k <= MAXIN; k++) free(got[k]);
}

static void test_fixtures(void) {
    for (int i = 0; i < ncases; i++)
        for (int d = 0; d < 2; d++) check_case(&cases[i], d);
    diag("worst |agrad - PyTorch| / (|PyTorch| + atol/rtol): float64 %.2g, float32 %.2g", overall[0], overall[1]);
}

/* ---- shapes, recording, errors ---------------------------------------------------------------- */
static bool has_shape(const ag_tensor *t, int ndim, int64_t d0, int64_t d1) {
    return t && ag_ndim(t) == ndim && (ndim < 1 || ag_size(t, 0) == d0) && (ndim < 2 || ag_size(t, 1) == d1);
}

/* Empty and 0-d operands broadcast as in PyTorch for the binary and ternary ops; the masks
 * record nothing and give bool; the grad_fn names are PyTorch's. */
static void test_shapes(void) {
    ag_scope_begin();
    ag_tensor *e = ag_requires_grad_(ag_zeros(AG_SHAPE(0, 3), AG_F64), true);
    ag_tensor *r = ag_requires_grad_(ag_ones(AG_SHAPE(3), AG_F64), true);
    ag_tensor *s = ag_requires_grad_(ag_full(AG_SCALAR_SHAPE, 0.5, AG_F64), true);
    ag_tensor *(*binary[])(ag_tensor *, ag_tensor *) = {ag_atan2, ag_hypot, ag_fmod, ag_remainder, ag_copysign,
                                                         ag_logaddexp, ag_logaddexp2, ag_xlogy, ag_heaviside};
    bool empty_ok = true, scalar_ok = true;
    for (size_t i = 0; i < sizeof binary / sizeof binary[0]; i++) {
        empty_ok = empty_ok && has_shape(binary[i](e, r), 2, 0, 3);
        scalar_ok = scalar_ok && has_shape(binary[i](s, s), 0, 0, 0);
    }
    ok(empty_ok, "binary ops: [0, 3] with [3] gives [0, 3]");
    ok(scalar_ok, "binary ops: two 0-d operands give a 0-d result");
    ag_tensor *l = ag_lerp(e, r, s);
    ok(has_shape(l, 2, 0, 3) && ag_backward(ag_sum(l)) == AG_OK && has_shape(ag_grad(r), 1, 3, 0) &&
           ag_item(ag_sum(ag_grad(r))) == 0,
       "lerp of an empty start: [0, 3], and the gradient of end is zeros of its shape");
    ok(has_shape(ag_clamp_tensor(s, s, s), 0, 0, 0), "clamp_tensor of 0-d operands is 0-d");
    ag_tensor *x = ag_requires_grad_(ag_rand(AG_SHAPE(2, 3), AG_F64), true);
    ag_tensor *m[3] = {ag_isnan(x), ag_isinf(x), ag_isfinite(x)};
    bool masks = true;
    for (int i = 0; i < 3; i++) masks = masks && m[i] && ag_dtype_of(m[i]) == AG_BOOL && !ag_requires_grad(m[i]);
    ok(masks, "isnan, isinf, isfinite give bool masks that record nothing");
    ag_tensor *n = ag_full(AG_SHAPE(2), 5, AG_I64);
    ok(ag_isfinite(n) && ag_item(ag_sum(ag_to_dtype(ag_isfinite(n), AG_F64))) == 2,
       "an int64 tensor is finite everywhere");
    const char *fn = ag_grad_fn_name(ag_digamma(x));
    ok(fn && strcmp(fn, "DigammaBackward0") == 0, "digamma's node is PyTorch's DigammaBackward0");
    ag_scope_end();
}

/* ---- float32 fmod and remainder: the same bits as libm's fmodf ------------------------------- */
static uint64_t sweep_state = 0x9e3779b97f4a7c15u;
static uint32_t sweep_bits(void) { /* xorshift64 */
    sweep_state ^= sweep_state << 13, sweep_state ^= sweep_state >> 7, sweep_state ^= sweep_state << 17;
    return (uint32_t)(sweep_state >> 16);
}
static float float_of(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}
static bool same_bits(float x, float y) { return (isnan(x) && isnan(y)) || memcmp(&x, &y, sizeof x) == 0; }
static float python_mod(float a, float b) {
    float m = fmodf(a, b);
    return m != 0 && (b < 0) != (m < 0) ? m + b : m;
}
/* floor(a / b) as ops/binary.c computed it with libm's fmodf before it vectorised. */
static float python_floor_div(float a, float b) {
    if (b == 0) return a / b;
    float m = fmodf(a, b), d = (a - m) / b;
    if (m != 0 && (b < 0) != (m < 0)) d -= 1;
    if (d == 0) return copysignf(0, a / b);
    float f = floorf(d);
    return d - f > 0.5f ? f + 1 : f;
}

/* The operand pairs: every edge value with every other, then random bit patterns (huge and
 * tiny quotients, subnormals, NaN, inf), neighbours of multiples k·b (trunc(a / b) must not
 * round up; k up to 2^52), exponents close together, and small integers and ratios of them. */
enum { SWEEP = 1 << 18 };
static void sweep_pairs(float *a, float *b) {
    static const float edge[] = {0.0f, -0.0f, 1.0f, -1.0f, 3.0f, -3.0f, 0.5f, 1e-45f, -1e-45f, 1.17549435e-38f,
                                 3.4028235e38f, -3.4028235e38f, INFINITY, -INFINITY, NAN, 0x1p29f, 0x1p-24f, 7.0f};
    enum { E = sizeof edge / sizeof edge[0] };
    int64_t n = 0;
    for (int i = 0; i < E; i++)
        for (int j = 0; j < E; j++) a[n] = edge[i], b[n++] = edge[j];
    for (; n < SWEEP; n++) {
        uint32_t u = sweep_bits(), v = sweep_bits();
        switch (n % 4) {
        case 0: a[n] = float_of(u), b[n] = float_of(v); break;
        case 1: a[n] = float_of(u), b[n] = float_of((u & 0x7f800000u) ^ (v & 0x807fffffu) ^ ((v & 3u) << 23)); break;
        case 2:
            b[n] = float_of(v);
            a[n] = nextafterf(b[n] * ldexpf((float)(int)(u % 8191 - 4095), (int)(u >> 13) % 40), u >> 31 ? INFINITY : -INFINITY);
            break;
        default: a[n] = (float)(int)(u % 200001 - 100000) / (float)(v % 7 + 1), b[n] = (float)(int)(v % 301 - 150) / (float)(u % 5 + 1);
        }
    }
}

/* fmod and remainder in float32 run a vectorised exact form (ops/binary.c: FMOD) that falls
 * back to libm where it cannot vouch for its bits: the bits are fmodf's (and Python's a mod b
 * built on it) over the sweep, contiguous, with a broadcast divisor and a broadcast dividend. */
static void test_fmod_bits(void) {
    ag_scope_begin();
    float *a = malloc(SWEEP * sizeof *a), *b = malloc(SWEEP * sizeof *b), *y = malloc(SWEEP * sizeof *y);
    sweep_pairs(a, b);
    ag_tensor *ta = ag_from_data(a, AG_SHAPE(SWEEP), AG_F32), *tb = ag_from_data(b, AG_SHAPE(SWEEP), AG_F32);
    ag_tensor *(*op[2])(ag_tensor *, ag_tensor *) = {ag_fmod, ag_remainder};
    float (*ref[2])(float, float) = {fmodf, python_mod};
    const char *name[2] = {"fmod", "remainder"};
    for (int k = 0; k < 2; k++) {
        int64_t bad = 0, first = -1;
        if (ag_copy_to(op[k](ta, tb), y, SWEEP, AG_F32)) bad = SWEEP;
        for (int64_t i = 0; i < SWEEP && !bad; i++)
            if (!same_bits(y[i], ref[k](a[i], b[i]))) bad++, first = first < 0 ? i : first;
        ok(bad == 0, "float32 %s: fmodf's bits on %d pairs (%lld differ)", name[k], SWEEP, (long long)bad);
        if (first >= 0) diag("the first: a = %a, b = %a", a[first], b[first]);
        bool scalars = true;
        for (int64_t j = 0; j < 8 && scalars; j++) { /* [4096] with [] and [] with [4096] */
            int64_t at = j * 997 + 5;
            ag_tensor *sa = ag_full(AG_SCALAR_SHAPE, a[at], AG_F32), *sb = ag_full(AG_SCALAR_SHAPE, b[at], AG_F32);
            ag_tensor *part_a = ag_narrow(ta, 0, j * 4096, 4096), *part_b = ag_narrow(tb, 0, j * 4096, 4096);
            float u[4096], v[4096];
            scalars = !ag_copy_to(op[k](part_a, sb), u, 4096, AG_F32) && !ag_copy_to(op[k](sa, part_b), v, 4096, AG_F32);
            for (int64_t i = 0; i < 4096 && scalars; i++)
                scalars = same_bits(u[i], ref[k](a[j * 4096 + i], b[at])) && same_bits(v[i], ref[k](a[at], b[j * 4096 + i]));
        }
        ok(scalars, "float32 %s with a 0-d divisor or dividend: fmodf's bits", name[k]);
    }
    ag_tensor *gb = ag_requires_grad_(ag_clone(tb), true);
    int64_t bad = 0;
    if (ag_backward(ag_sum(ag_remainder(ta, gb))) || ag_copy_to(ag_grad(gb), y, SWEEP, AG_F32)) bad = SWEEP;
    for (int64_t i = 0; i < SWEEP && !bad; i++) bad += !same_bits(y[i], -python_floor_div(a[i], b[i]));
    ok(bad == 0, "float32 remainder's gradient of b, -floor(a / b): the bits of libm's fmodf form (%lld differ)",
       (long long)bad);
    free(a), free(b), free(y);
    ag_scope_end();
}

/* float32 hypot computes glibc's hypotf in double (ops/binary.c: HYPOT): hypotf's bits over the sweep
 * and with a 0-d operand; logaddexp's float32 correction log1p(e^-|a - b|) and adjoints run
 * vectorising polynomials (ops/vmathf.h): within 4 ulps of max(|a|, |b|, ln 2) of the float64
 * result, NaN where it is NaN, and its adjoints within 8 ulps of the float64 sigmoid of a - b rounded
 * to float (as float32 arithmetic rounds it: from there on the error grows with |a - b|); logaddexp2
 * (log1p(2^-|a - b|)/ln 2, 1/(1 + 2^(b - a))) likewise, with 1 for ln 2 in the scale. */
static void test_vector_binary(void) {
    ag_scope_begin();
    float *a = malloc(SWEEP * sizeof *a), *b = malloc(SWEEP * sizeof *b), *y = malloc(SWEEP * sizeof *y);
    sweep_pairs(a, b);
    ag_tensor *ta = ag_from_data(a, AG_SHAPE(SWEEP), AG_F32), *tb = ag_from_data(b, AG_SHAPE(SWEEP), AG_F32);
    int64_t bad = ag_copy_to(ag_hypot(ta, tb), y, SWEEP, AG_F32) ? SWEEP : 0;
    for (int64_t i = 0; i < SWEEP && bad < SWEEP; i++) bad += !same_bits(y[i], hypotf(a[i], b[i]));
    float u[4096];
    ag_tensor *s = ag_full(AG_SCALAR_SHAPE, -3.5, AG_F32), *part = ag_narrow(ta, 0, 4096, 4096);
    bad += ag_copy_to(ag_hypot(s, part), u, 4096, AG_F32) ? 1 : 0;
    for (int64_t i = 0; i < 4096; i++) bad += !same_bits(u[i], hypotf(-3.5f, a[4096 + i]));
    ok(bad == 0, "float32 hypot: hypotf's bits on %d pairs and with a 0-d operand (%lld differ)", SWEEP,
       (long long)bad);
    for (int64_t i = 0; i < SWEEP; i++) /* logaddexp: moderate values (exponents 2^-8..2^8), then the sweep's */
        if (i % 2) a[i] = ldexpf((float)(i % 1000) / 500 - 1, (int)(i % 17) - 8), b[i] = ldexpf((float)(i % 777) / 388 - 1, (int)(i % 13) - 6);
    ta = ag_from_data(a, AG_SHAPE(SWEEP), AG_F32), tb = ag_from_data(b, AG_SHAPE(SWEEP), AG_F32);
    float *da = malloc(SWEEP * sizeof *da);
    for (int two = 0; two < 2; two++) { /* logaddexp, then logaddexp2 (base 2: log1p(2^-|d|)/ln 2 and 1/(1 + 2^-d)) */
        ag_tensor *(*f)(ag_tensor *, ag_tensor *) = two ? ag_logaddexp2 : ag_logaddexp;
        ag_tensor *ga = ag_requires_grad_(ag_clone(ta), true), *gb = ag_requires_grad_(ag_clone(tb), true);
        bad = ag_copy_to(f(ta, tb), y, SWEEP, AG_F32) || ag_backward(ag_sum(f(ga, gb))) ||
                      ag_copy_to(ag_grad(ga), da, SWEEP, AG_F32) ? SWEEP : 0;
        double worst = 0, worst_da = 0;
        for (int64_t i = 0; i < SWEEP && bad < SWEEP; i++) {
            double x = a[i], z = b[i], m = x < z ? z : x, d = x - z, fd = (float)d;
            double corr = two ? log1p(exp2(-fabs(d))) / 0.69314718055994531 : log1p(exp(-fabs(d)));
            double want = isinf(x) && x == z ? x : m + corr, w = 1 / (1 + (two ? exp2(-fd) : exp(-fd)));
            if (isnan(want) || isnan(y[i])) {
                bad += isnan(want) != isnan(y[i]);
                continue;
            }
            if (isinf(want) || isinf(y[i])) {
                bad += want != y[i];
                continue;
            }
            double scale = fmax(fmax(fabs(x), fabs(z)), two ? 1 : 0.6931), err = fabs(y[i] - want) / (scale * 0x1p-23);
            double err_da = isnan(w) ? (isnan(da[i]) ? 0 : 1e9) : fabs(da[i] - w) / (fmax(w, 0x1p-126) * 0x1p-23);
            worst = fmax(worst, err), worst_da = fmax(worst_da, err_da);
        }
        ok(bad == 0 && worst <= 4 && worst_da <= 8,
           "float32 %s: within 4 ulps of the scale (%.2f), its gradient within 8 ulps (%.2f), NaN and inf "
           "where float64 has them (%lld differ)", two ? "logaddexp2" : "logaddexp", worst, worst_da, (long long)bad);
    }
    free(a), free(b), free(y), free(da);
    ag_scope_end();
}

/* pow's float32 exponent gradient dy·y·log a runs ops/vmathf.h's vlogf (within 1 ulp), not libm's logf:
 * within 2.5 ulps of y·log a in double (y agrad's float32 forward) over a in 2^±20 (and beside 1, where
 * log a is tiny) and b in [-4, 4], contiguous and with a 0-d base; libm's special values (a = 0 with b < 0:
 * -inf, a < 0: NaN, a = inf, a = 1: 0; a = 0 with b >= 0 stays 0). */
static void test_pow_exponent_grad(void) {
    ag_scope_begin();
    enum { N = 1 << 16, S = 10 };
    static const float sa[S] = {0.0f, 0.0f, -2.0f, -0.5f, INFINITY, INFINITY, 1.0f, NAN, 1e-45f, 0.0f};
    static const float sb[S] = {-1.5f, 2.0f, 3.0f, 0.5f, 2.0f, -1.0f, -3.0f, 1.0f, 0.25f, 0.0f};
    float *a = malloc(N * sizeof *a), *b = malloc(N * sizeof *b), *y = malloc(N * sizeof *y), *db = malloc(N * sizeof *db);
    for (int64_t i = 0; i < N; i++) {
        uint32_t u = sweep_bits(), v = sweep_bits();
        a[i] = i < S ? sa[i] : i % 3 ? ldexpf(0.5f + (float)(u % 8388608) * 0x1p-24f, (int)(u >> 23) % 41 - 20)
                                     : 1.0f + (float)((int)(u % 4097) - 2048) * 0x1p-22f;
        b[i] = i < S ? sb[i] : (float)((int)(v % 65537) - 32768) * 0x1p-13f;
    }
    int64_t bad = 0;
    double worst = 0;
    for (int bcast = 0; bcast < 2; bcast++) { /* a per element, then a 0-d a = 2.5 */
        ag_tensor *ta = bcast ? ag_full(AG_SCALAR_SHAPE, 2.5, AG_F32) : ag_from_data(a, AG_SHAPE(N), AG_F32);
        ag_tensor *tb = ag_requires_grad_(ag_from_data(b, AG_SHAPE(N), AG_F32), true);
        if (ag_copy_to(ag_pow(ta, tb), y, N, AG_F32) || ag_backward(ag_sum(ag_pow(ta, tb))) ||
            ag_copy_to(ag_grad(tb), db, N, AG_F32)) {
            bad += N;
            continue;
        }
        for (int64_t i = 0; i < N; i++) {
            double x = bcast ? 2.5 : a[i], want = x == 0 && b[i] >= 0 ? 0 : (double)y[i] * log(x);
            if (isnan(want) || isinf(want) || want == 0 || isnan(db[i]) || isinf(db[i])) {
                if (!same_bits(db[i], (float)want) && bad < 4) diag("a %a b %a: db %a, want %a", x, b[i], db[i], want);
                bad += !same_bits(db[i], (float)want);
                continue;
            }
            worst = fmax(worst, fabs(db[i] - want) / (fabs(want) * 0x1p-23));
        }
    }
    ok(bad == 0 && worst <= 2.5, "float32 pow's gradient of b, y·log a: within 2.5 ulps (%.2f), libm's special "
       "values (%lld differ)", worst, (long long)bad);
    free(a), free(b), free(y), free(db);
    ag_scope_end();
}

/* The comparisons and the tests of one tensor (vectorised loops over unit steps, a constant operand
 * along the run, byte steps otherwise): C's operators over edge values and random bits, contiguous,
 * [N, 1] against [1, N], transposed, and against a 0-d operand. */
static void test_compare_paths(void) {
    ag_scope_begin();
    enum { R = 67, C = 131 };
    float a[R * C], b[R * C], col[R], row[C];
    for (int i = 0; i < R * C; i++) a[i] = float_of(sweep_bits()), b[i] = i % 3 ? float_of(sweep_bits()) : a[i];
    for (int i = 0; i < 40; i++) a[i * 7] = (float[]){0.0f, -0.0f, INFINITY, -INFINITY, NAN}[i % 5], b[i * 11] = -0.0f;
    for (int i = 0; i < R; i++) col[i] = a[i * 5];
    for (int i = 0; i < C; i++) row[i] = i % 4 ? a[i * 3 + 1] : col[i % R];
    ag_tensor *ta = ag_from_data(a, AG_SHAPE(R, C), AG_F32), *tb = ag_from_data(b, AG_SHAPE(R, C), AG_F32);
    ag_tensor *tc = ag_from_data(col, AG_SHAPE(R, 1), AG_F32), *tr = ag_from_data(row, AG_SHAPE(1, C), AG_F32);
    ag_tensor *at = ag_transpose(ag_contiguous(ag_transpose(ta, 0, 1)), 0, 1); /* a's values, strides (1, R) */
    ag_tensor *s = ag_full(AG_SCALAR_SHAPE, a[5], AG_F32);
    ag_tensor *(*op[6])(const ag_tensor *, const ag_tensor *) = {ag_eq, ag_ne, ag_lt, ag_le, ag_gt, ag_ge};
    int64_t bad = 0;
    uint8_t m[R * C];
    for (int k = 0; k < 6; k++) {
        ag_tensor *got[4] = {op[k](ta, tb), op[k](tc, tr), op[k](at, tb), op[k](ta, s)};
        for (int g = 0; g < 4; g++) {
            if (!got[g] || ag_copy_to(got[g], m, R * C, AG_BOOL)) {
                bad += R * C;
                continue;
            }
            for (int i = 0; i < R * C; i++) {
                float x = g == 1 ? col[i / C] : a[i], y = g == 1 ? row[i % C] : g == 3 ? a[5] : b[i];
                bool want = k == 0 ? x == y : k == 1 ? x != y : k == 2 ? x < y : k == 3 ? x <= y : k == 4 ? x > y : x >= y;
                if (m[i] != want && bad < 4) diag("op %d group %d at %d: %a vs %a gives %d", k, g, i, x, y, m[i]);
                bad += m[i] != want;
            }
        }
    }
    ag_tensor *(*test[3])(const ag_tensor *) = {ag_isnan, ag_isinf, ag_isfinite};
    for (int k = 0; k < 3; k++)
        for (int g = 0; g < 2; g++) {
            if (ag_copy_to(test[k](g ? at : ta), m, R * C, AG_BOOL)) {
                bad += R * C;
                continue;
            }
            for (int i = 0; i < R * C; i++) {
                bool want = k == 0 ? isnan(a[i]) : k == 1 ? isinf(a[i]) : isfinite(a[i]);
                if (m[i] != want && bad < 4) diag("test %d group %d at %d: %a gives %d", k, g, i, a[i], m[i]);
                bad += m[i] != want;
            }
        }
    ok(bad == 0, "comparisons and isnan/isinf/isfinite: C's answers contiguous, [N, 1] with [1, N], transposed, "
                 "with a 0-d operand (%lld differ)", (long long)bad);
    ag_scope_end();
}

/* Whether a and b hold the same 4 values (NaN equal to NaN). */
static bool same_values(const ag_tensor *a, const ag_tensor *b) {
    double u[4], v[4];
    if (!a || !b || ag_numel(a) != 4 || ag_copy_to(a, u, 4, AG_F64) || ag_copy_to(b, v, 4, AG_F64)) return false;
    for (int i = 0; i < 4; i++)
        if (!(u[i] == v[i] || (isnan(u[i]) && isnan(v[i])))) return false;
    return true;
}

/* Integer and bool inputs of the ops PyTorch computes in floating point give float32, as
 * torch.asin(torch.tensor([0, 1])): the op of the input converted to float32; no tensor is
 * left behind with no scope open. */
static void test_promotion(void) {
    const int64_t iv[4] = {0, 1, -1, 3};
    const uint8_t bv[4] = {0, 1, 1, 0};
    ag_tensor *(*unary[])(ag_tensor *) = {ag_exp, ag_sin, ag_asin, ag_acosh, ag_log2, ag_exp2, ag_erfc,
                                          ag_erfinv, ag_lgamma, ag_digamma, ag_sinc};
    const char *names[] = {"exp", "sin", "asin", "acosh", "log2", "exp2", "erfc", "erfinv", "lgamma", "digamma", "sinc"};
    ag_scope_begin();
    ag_tensor *ints[2] = {ag_from_data(iv, AG_SHAPE(4), AG_I64), ag_from_data(bv, AG_SHAPE(4), AG_BOOL)};
    for (size_t k = 0; k < sizeof unary / sizeof unary[0]; k++) {
        bool same = true;
        for (int t = 0; t < 2; t++) {
            ag_tensor *y = unary[k](ints[t]), *want = unary[k](ag_to_dtype(ints[t], AG_F32));
            same = same && y && ag_dtype_of(y) == AG_F32 && same_values(y, want);
        }
        ok(same, "%s of int64 and bool tensors: float32, as of their float32 values", names[k]);
    }
    ag_tensor *l = ag_logit(ints[1], 0.25);
    ok(l && ag_dtype_of(l) == AG_F32 && same_values(l, ag_logit(ag_to_dtype(ints[1], AG_F32), 0.25)),
       "logit of a bool tensor with eps: float32");
    ag_tensor *(*binary[])(ag_tensor *, ag_tensor *) = {ag_atan2, ag_copysign, ag_xlogy};
    bool same = true;
    for (int k = 0; k < 3; k++) {
        ag_tensor *y = binary[k](ints[0], ints[1]);
        same = same && y && ag_dtype_of(y) == AG_F32 &&
               same_values(y, binary[k](ag_to_dtype(ints[0], AG_F32), ag_to_dtype(ints[1], AG_F32)));
    }
    ok(same, "atan2, copysign, xlogy of an int64 and a bool tensor: float32");
    ag_scope_end();
    long live = ag_live_tensors();
    ag_tensor *i = ag_from_data(iv, AG_SHAPE(4), AG_I64);
    ag_tensor *y = ag_digamma(i), *z = ag_xlogy(i, i);
    ok(y && z && ag_live_tensors() == live + 3, "with no scope open only the results are left (the caller's)");
    ag_release(y);
    ag_release(z);
    ag_release(i);
}

static bool failed_with(const void *r, ag_status s, const char *msg) {
    bool good = r == NULL && ag_last_status() == s && strcmp(ag_last_error(), msg) == 0;
    if (!good) diag("got status %d, message \"%s\"", (int)ag_last_status(), ag_last_error());
    ag_clear_error();
    return good;
}

static void test_errors(void) {
    ag_scope_begin();
    ag_tensor *x = ag_rand(AG_SHAPE(3), AG_F64), *f = ag_rand(AG_SHAPE(3), AG_F32);
    ok(failed_with(ag_logit(x, 0.6), AG_ERR_ARG, "logit: eps 0.6 is not at most 0.5 (a negative eps clamps nothing)"),
       "logit with eps > 0.5 fails");
    ok(failed_with(ag_logit(x, NAN), AG_ERR_ARG, "logit: eps nan is not at most 0.5 (a negative eps clamps nothing)"),
       "logit with a NaN eps fails");
    ok(failed_with(ag_polygamma(-1, x), AG_ERR_ARG, "polygamma: n must be non-negative, got -1"),
       "polygamma refuses a negative n");
    ok(failed_with(ag_polygamma((int64_t)1 << 40, x), AG_ERR_ARG,
                   "polygamma: n 1099511627776 is past the largest order supported (2^31 - 1)"),
       "polygamma refuses an n past 2^31 - 1");
    { /* far below 0 the terms up to 0 are summed in closed form, not one by one (the API fuzzer's
         timeout); mpmath's polygamma(2, -1500.3) = 68.8375432705994, PyTorch's 68.83754327059938 */
        ag_tensor *far = ag_polygamma(2, ag_full(AG_SHAPE(1), -1500.3, AG_F64));
        ok(far && fabs(ag_item(far) - 68.8375432705994) < 1e-11, "polygamma(2, -1500.3) = 68.8375432705994");
        far = ag_polygamma(3, ag_full(AG_SHAPE(1), -1e15 + 0.5, AG_F64));
        ok(far && isfinite(ag_item(far)), "polygamma(3, -1e15 + 0.5) ends, finite");
    }
    ok(ag_logit(x, -1) && ag_logit(x, 0.5), "logit with eps < 0 (None) and 0.5 is accepted");
    ok(failed_with(ag_isnan(ag_zeros(AG_SHAPE(2), AG_BOOL)), AG_ERR_DTYPE,
                   "isnan: expected a float32, float64 or int64 tensor, got bool"),
       "isnan of a bool tensor fails");
    ok(failed_with(ag_atan2(x, f), AG_ERR_DTYPE, "atan2: dtypes float64 and float32 differ (convert one with ag_to_dtype)"),
       "atan2 of two dtypes fails");
    ok(failed_with(ag_lerp(x, x, f), AG_ERR_DTYPE, "lerp: dtypes float64 and float32 differ (convert one with ag_to_dtype)"),
       "lerp with a weight of another dtype fails");
    ok(failed_with(ag_clamp_tensor(x, x, ag_rand(AG_SHAPE(4), AG_F64)), AG_ERR_SHAPE,
                   "clamp_tensor: shapes [3] and [4] cannot be broadcast (dim -1: 3 vs 4)"),
       "clamp_tensor with bounds that do not broadcast fails");
    ok(ag_ceil(ag_zeros(AG_SHAPE(2), AG_I64)) == NULL && ag_last_status() == AG_ERR_DTYPE,
       "ceil of an int64 tensor is refused (PyTorch returns it as it is)");
    ag_clear_error();
    ok(failed_with(ag_atan2(ag_zeros(AG_SHAPE(2), AG_I64), x), AG_ERR_DTYPE,
                   "atan2: expected a float32 or float64 tensor, got int64 (convert with ag_to_dtype)"),
       "atan2 of an int64 and a float64 tensor is refused (agrad does not mix dtypes)");
    ok(ag_erfinv(NULL) == NULL && ag_lerp(x, NULL, x) == NULL && ag_last_status() == AG_OK,
       "NULL passes through without a message");
    ag_scope_end();
}

/* The binary op of index k (test_long_binary_adjoint_runs' rows): those whose adjoints take dy in some
 * lanes only (ops/binary.c, BWD_UNIT: maximum, minimum, heaviside and pow in blocks beyond L2, copysign and
 * xlogy in one loop), and mul, which takes it whole. */
static ag_tensor *long_run_binary(int k, ag_tensor *a, ag_tensor *b) {
    switch (k) {
    case 0: return ag_maximum(a, b);
    case 1: return ag_minimum(a, b);
    case 2: return ag_heaviside(a, b);
    case 3: return ag_copysign(a, b);
    case 4: return ag_pow(a, b);
    case 5: return ag_xlogy(a, b);
    default: return ag_mul(a, b);
    }
}

/* The binary adjoints' unit-step runs of 2 MiB and more go in blocks that prefetch dy ahead (ops/binary.c,
 * ops/adjoint_run.h): on one thread (one run) of 2^19 + 37 floats or 2^18 + 37 doubles, da and db bit for
 * bit equal to those of the same values in pieces of 4096 (runs that keep one loop), with a and b tied in
 * places, at 0, -0, NaN and infinities, and dy NaN and infinite in places; b whole and b one value broadcast
 * along the run (a [n] with a [1]: the step-0 loops). */
static void test_long_binary_adjoint_runs(void) {
    static const char *const names[] = {"maximum", "minimum", "heaviside", "copysign", "pow", "xlogy", "mul"};
    static const double edges[] = {-3, 3, -1, 1, 0, -0.0, 1.5, NAN, INFINITY, -INFINITY};
    const int threads = ag_get_num_threads();
    ag_set_num_threads(1);
    for (int d = 0; d < 2; d++) {
        const ag_dtype dt = d ? AG_F64 : AG_F32;
        const size_t es = d ? sizeof(double) : sizeof(float);
        const int64_t n = ((int64_t)1 << (d ? 18 : 19)) + 37, piece = 4096;
        char *ab = malloc((size_t)n * es), *bb = malloc((size_t)n * es), *db = malloc((size_t)n * es);
        char *wa = malloc((size_t)n * es), *wb = malloc((size_t)n * es);
        uint64_t r = 88172645463325252u;
        for (int64_t i = 0; i < n; i++) {
            r ^= r << 13, r ^= r >> 7, r ^= r << 17;
            const double av = i % 7 == 0 ? edges[(i / 7) % 10] : (double)(r % 80001) / 10000 - 4;
            const double bv = i % 5 == 0 ? av : i % 11 == 3 ? edges[(i / 11) % 10] : (double)((r >> 20) % 80001) / 10000 - 4;
            const double dv = i % 101 == 5 ? NAN : i % 103 == 7 ? -INFINITY : (double)(r >> 40) / (1 << 24) - 0.5;
            if (d) {
                ((double *)ab)[i] = av, ((double *)bb)[i] = bv, ((double *)db)[i] = dv;
            } else {
                ((float *)ab)[i] = (float)av, ((float *)bb)[i] = (float)bv, ((float *)db)[i] = (float)dv;
            }
        }
        for (int k = 0; k < (int)(sizeof names / sizeof names[0]); k++)
            for (int bc = 0; bc < 2; bc++) { /* bc: b one value (its first), broadcast along the run */
                ag_scope_begin();
                bool run = true;
                const int64_t nb = bc ? 1 : n;
                ag_tensor *bw = ag_requires_grad_(ag_from_data(bb, AG_SHAPE(nb), dt), true);
                for (int64_t i0 = 0; i0 < n && run; i0 += piece) {
                    const int64_t m = n - i0 < piece ? n - i0 : piece;
                    ag_tensor *a = ag_requires_grad_(ag_from_data(ab + i0 * es, AG_SHAPE(m), dt), true);
                    ag_tensor *b = bc ? bw : ag_requires_grad_(ag_from_data(bb + i0 * es, AG_SHAPE(m), dt), true);
                    ag_tensor *y = long_run_binary(k, a, b);
                    run = ag_backward_ex(y, ag_from_data(db + i0 * es, AG_SHAPE(m), dt), false) == AG_OK;
                    if (run) memcpy(wa + i0 * es, ag_data(ag_grad(a)), (size_t)m * es);
                    if (run && !bc) memcpy(wb + i0 * es, ag_data(ag_grad(b)), (size_t)m * es);
                }
                ag_tensor *a = ag_requires_grad_(ag_from_data(ab, AG_SHAPE(n), dt), true);
                ag_tensor *b = ag_requires_grad_(ag_from_data(bb, AG_SHAPE(nb), dt), true);
                run = run && ag_backward_ex(long_run_binary(k, a, b), ag_from_data(db, AG_SHAPE(n), dt), false) == AG_OK;
                int64_t bad = -1;
                for (int64_t i = 0; run && i < n && bad < 0; i++)
                    if (memcmp((char *)ag_data(ag_grad(a)) + i * es, wa + i * es, es) ||
                        (!bc && memcmp((char *)ag_data(ag_grad(b)) + i * es, wb + i * es, es)))
                        bad = i;
                ok(run && bad < 0, "the adjoints of %s over one run of %lld %s%s: the bits of pieces of 4096 (first differing at %lld)",
                   names[k], (long long)n, d ? "doubles" : "floats", bc ? ", b broadcast" : "", (long long)bad);
                ag_scope_end();
            }
        free(ab), free(bb), free(db), free(wa), free(wb);
    }
    ag_set_num_threads(threads);
}

int main(void) {
    bool loaded = (cases = fixture_read_cases(FIXTURES "/elementwise.txt", sizeof *cases, take_line, NULL, &ncases));
    ok(loaded, "fixtures read (%d cases)", ncases);
    if (loaded) test_fixtures();
    test_shapes();
    test_fmod_bits();
    test_vector_binary();
    test_pow_exponent_grad();
    test_compare_paths();
    test_promotion();
    test_errors();
    test_long_binary_adjoint_runs();
    free_fixtures();
    ok(ag_live_tensors() == 0, "no tensors leaked");
    return tap_done();
}

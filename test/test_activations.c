/*
 * Activations (include/agrad/ops.h, nn.h): values and derivatives against PyTorch
 * (test/fixtures/activations.txt, from scripts/gen_activation_fixtures.py) in float64
 * and float32, with the plain loops and with oneDNN wherever a row has a primitive,
 * on inputs that include ±100, ±1e4, the kinks and NaN; no inf or NaN from any finite
 * input up to ±1e4 in either dtype; every module prints as PyTorch's repr and equals
 * its functional; the errors by their messages.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "agrad/agrad.h"
#include "core/parallel.h"
#include "tap.h"
#include "test/fixture.h"

#ifndef FIXTURES
#define FIXTURES "test/fixtures"
#endif

/* A result matches PyTorch's when |got - want| <= RTOL·|want| + ATOL (NaN matches NaN).
 * ATOL only matters near 0, where PyTorch's own formulas cancel (1 + erf(x/√2) for
 * gelu at x < -5, e^x - 1 for elu at tiny x, the composite softsign gradient at 1e4)
 * and agrad's stable ones do not. */
#define RTOL_F64 1e-12
#define ATOL_F64 1e-15
#define RTOL_F32 1e-5
#define ATOL_F32 1e-6

/* Where agrad knowingly differs from PyTorch 1.13: in one case (label, or every case of a
 * function when label ends in '/'), dtype ([f64, f32]), result ([y, dx]) and backend, either
 * everywhere (skip NAN: the relative tolerance rtol instead) or at the one input skip (left
 * out of the comparison) or at the NaN input (skip_nan); and why. */
static const struct deviation {
    const char *label, *backend;
    int dtype, k;
    double rtol, skip;
    const char *why;
    bool skip_nan;
} deviations[] = {
    {"hardsigmoid", "default", 0, 1, 5e-8, NAN,
     "PyTorch's float64 backward multiplies by the float constant 1.0f/6.0f; agrad by 1/6", false},
    {"hardswish", "accelerated", 1, 1, RTOL_F32, -3,
     "oneDNN's hardswish derivative at -3 is 0, PyTorch's -1/2: agrad's default backend never runs it", false},
    {"softshrink/", "default", 0, 1, RTOL_F64, NAN, "PyTorch's softshrink is 0 at NaN but passes the gradient 1 there; agrad's gives 0", true},
    {"softshrink/", "default", 1, 1, RTOL_F32, NAN, "PyTorch's softshrink is 0 at NaN but passes the gradient 1 there; agrad's gives 0", true},
};

/* Whether a deviation's label names the case label: equal, or "fn/" for fn and fn/... */
static bool label_matches(const char *pattern, const char *label) {
    size_t n = strlen(pattern);
    if (n && pattern[n - 1] == '/') return strncmp(label, pattern, n - 1) == 0 && (label[n - 1] == '\0' || label[n - 1] == '/');
    return strcmp(pattern, label) == 0;
}

static const struct deviation *deviation_of(const char *label, const char *backend, int d, int k) {
    for (size_t i = 0; i < sizeof deviations / sizeof deviations[0]; i++)
        if (label_matches(deviations[i].label, label) && strcmp(deviations[i].backend, backend) == 0 &&
            deviations[i].dtype == d && deviations[i].k == k)
            return &deviations[i];
    return NULL;
}

/* ---- the fixture file ------------------------------------------------------------------------ */
typedef struct fx_case {
    char label[48], fn[32], module[96]; /* module: PyTorch's repr, "" if none */
    double a, b;
    double *want[2][2]; /* [f64, f32][y, dx] */
} fx_case;

static double *inputs;
static int64_t n_inputs;
static fx_case *cases;
static int ncases;

/* One line of activations.txt: the shared inputs, or into the case c (fixture_read_cases). */
static bool take_line(void *cv, char *line, void *ctx) {
    fx_case *c = cv;
    (void)ctx;
    if (strncmp(line, "input ", 6) == 0) {
        long long n;
        int used = 0;
        bool good = sscanf(line + 6, "%lld%n", &n, &used) == 1 && n > 0;
        n_inputs = n;
        return good && (inputs = fixture_parse_values(line + 6 + used, n_inputs)) != NULL;
    }
    if (!c) return false;
    if (strncmp(line, "case ", 5) == 0)
        return sscanf(line + 5, "%47s %31s %lf %lf", c->label, c->fn, &c->a, &c->b) == 4;
    if (strncmp(line, "module ", 7) == 0) {
        snprintf(c->module, sizeof c->module, "%s", line + 7);
        return true;
    }
    if (strncmp(line, "f64 ", 4) == 0 || strncmp(line, "f32 ", 4) == 0) {
        int d = line[1] == '3', k = line[4] == 'd';
        return n_inputs > 0 && (c->want[d][k] = fixture_parse_values(line + (k ? 7 : 6), n_inputs)) != NULL;
    }
    bool good = strcmp(line, "end") == 0;
    for (int d = 0; d < 2; d++)
        for (int k = 0; k < 2; k++) good = good && c->want[d][k];
    return good;
}

static void free_fixtures(void) {
    for (int i = 0; i < ncases; i++)
        for (int d = 0; d < 2; d++)
            for (int k = 0; k < 2; k++) free(cases[i].want[d][k]);
    free(cases);
    free(inputs);
}

/* ---- calling the functional and the module by name ------------------------------------------------ */
static ag_tensor *call(const char *fn, ag_tensor *x, double a, double b) {
    if (strcmp(fn, "relu") == 0) return ag_relu(x);
    if (strcmp(fn, "sigmoid") == 0) return ag_sigmoid(x);
    if (strcmp(fn, "tanh") == 0) return ag_tanh(x);
    if (strcmp(fn, "atan") == 0) return ag_atan(x);
    if (strcmp(fn, "leaky_relu") == 0) return ag_leaky_relu(x, a);
    if (strcmp(fn, "elu") == 0) return ag_elu(x, a);
    if (strcmp(fn, "selu") == 0) return ag_selu(x);
    if (strcmp(fn, "celu") == 0) return ag_celu(x, a);
    if (strcmp(fn, "softplus") == 0) return ag_softplus(x, a, b);
    if (strcmp(fn, "gelu") == 0) return ag_gelu(x);
    if (strcmp(fn, "gelu_tanh") == 0) return ag_gelu_tanh(x);
    if (strcmp(fn, "silu") == 0) return ag_silu(x);
    if (strcmp(fn, "mish") == 0) return ag_mish(x);
    if (strcmp(fn, "hardtanh") == 0) return ag_hardtanh(x, a, b);
    if (strcmp(fn, "relu6") == 0) return ag_relu6(x);
    if (strcmp(fn, "hardsigmoid") == 0) return ag_hardsigmoid(x);
    if (strcmp(fn, "hardswish") == 0) return ag_hardswish(x);
    if (strcmp(fn, "softsign") == 0) return ag_softsign(x);
    if (strcmp(fn, "binary_step") == 0) return ag_binary_step(x);
    if (strcmp(fn, "logsigmoid") == 0) return ag_logsigmoid(x);
    if (strcmp(fn, "tanhshrink") == 0) return ag_tanhshrink(x);
    if (strcmp(fn, "softshrink") == 0) return ag_softshrink(x, a);
    if (strcmp(fn, "hardshrink") == 0) return ag_hardshrink(x, a);
    if (strcmp(fn, "threshold") == 0) return ag_threshold(x, a, b);
    if (strcmp(fn, "rrelu") == 0) return ag_rrelu(x, a, b, false);
    if (strcmp(fn, "gaussian") == 0) return ag_gaussian(x);
    if (strcmp(fn, "gelu_sigmoid") == 0) return ag_gelu_sigmoid(x);
    return NULL;
}

static ag_module *make_module(const char *fn, double a, double b) {
    if (strcmp(fn, "relu") == 0) return ag_nn_relu();
    if (strcmp(fn, "sigmoid") == 0) return ag_nn_sigmoid();
    if (strcmp(fn, "tanh") == 0) return ag_nn_tanh();
    if (strcmp(fn, "leaky_relu") == 0) return ag_nn_leaky_relu(a);
    if (strcmp(fn, "elu") == 0) return ag_nn_elu(a);
    if (strcmp(fn, "selu") == 0) return ag_nn_selu();
    if (strcmp(fn, "celu") == 0) return ag_nn_celu(a);
    if (strcmp(fn, "softplus") == 0) return ag_nn_softplus(a, b);
    if (strcmp(fn, "gelu") == 0) return ag_nn_gelu(false);
    if (strcmp(fn, "gelu_tanh") == 0) return ag_nn_gelu(true);
    if (strcmp(fn, "silu") == 0) return ag_nn_silu();
    if (strcmp(fn, "mish") == 0) return ag_nn_mish();
    if (strcmp(fn, "hardtanh") == 0) return ag_nn_hardtanh(a, b);
    if (strcmp(fn, "relu6") == 0) return ag_nn_relu6();
    if (strcmp(fn, "hardsigmoid") == 0) return ag_nn_hardsigmoid();
    if (strcmp(fn, "hardswish") == 0) return ag_nn_hardswish();
    if (strcmp(fn, "softsign") == 0) return ag_nn_softsign();
    if (strcmp(fn, "logsigmoid") == 0) return ag_nn_logsigmoid();
    if (strcmp(fn, "tanhshrink") == 0) return ag_nn_tanhshrink();
    if (strcmp(fn, "softshrink") == 0) return ag_nn_softshrink(a);
    if (strcmp(fn, "hardshrink") == 0) return ag_nn_hardshrink(a);
    if (strcmp(fn, "threshold") == 0) return ag_nn_threshold(a, b);
    if (strcmp(fn, "gaussian") == 0) return ag_nn_gaussian();
    if (strcmp(fn, "gelu_sigmoid") == 0) return ag_nn_gelu_sigmoid();
    if (strcmp(fn, "rrelu") == 0) {
        ag_module *m = ag_nn_rrelu(a, b);
        if (m) ag_module_train(m, false);
        return m;
    }
    if (strcmp(fn, "binary_step") == 0) return ag_nn_binary_step();
    return NULL;
}

/* ---- against PyTorch ---------------------------------------------------------------------------- */
/* y = f(x) and dx = d(sum y)/dx for x = v[0..n) in dtype, through the functional (m NULL)
 * or the module m; out[0] and out[1] get n doubles each.  False on failure. */
static bool evaluate(const fx_case *c, ag_module *m, const double *v, int64_t n, ag_dtype dtype, double *out[2]) {
    ag_scope_begin();
    ag_tensor *x = ag_requires_grad_(ag_to_dtype(ag_from_data(v, AG_SHAPE(n), AG_F64), dtype), true);
    ag_tensor *y = m ? ag_module_forward(m, x) : call(c->fn, x, c->a, c->b);
    bool good = y && ag_backward(ag_sum(y)) == AG_OK && ag_grad(x) &&
                ag_copy_to(y, out[0], n, AG_F64) == AG_OK && ag_copy_to(ag_grad(x), out[1], n, AG_F64) == AG_OK;
    ag_scope_end();
    return good;
}

/* The largest |got - want| / (|want| + atol/rtol) over n values, INFINITY where one is NaN
 * and the other not (inputs that are NaN skipped unless with_nan, and the input skip);
 * *bad gets the index of the worst. */
static double worst_error(const double *got, const double *want, int64_t n, double rtol, double atol, bool with_nan,
                          double skip, int64_t *bad) {
    double worst = 0;
    *bad = -1;
    for (int64_t i = 0; i < n; i++) {
        if ((isnan(got[i]) && isnan(want[i])) || (!with_nan && isnan(inputs[i])) || inputs[i] == skip) continue;
        double e = fabs(got[i] - want[i]) / (fabs(want[i]) + atol / rtol);
        if (isnan(e)) e = INFINITY;
        if (e > worst) {
            worst = e;
            *bad = i;
        }
    }
    return worst;
}

/* The worst error over the whole file, per dtype (deviations left out). */
static double overall[2];

/* One case in one dtype with the current backend (NaN inputs skipped unless with_nan). */
static void check_case(const fx_case *c, int d, const char *backend, bool with_nan) {
    ag_dtype dtype = d ? AG_F32 : AG_F64;
    double atol = d ? ATOL_F32 : ATOL_F64;
    double *got[2] = {malloc(sizeof(double) * (size_t)n_inputs), malloc(sizeof(double) * (size_t)n_inputs)};
    bool good = evaluate(c, NULL, inputs, n_inputs, dtype, got);
    for (int k = 0; k < 2; k++) {
        const struct deviation *dev = deviation_of(c->label, backend, d, k);
        const char *why = dev ? dev->why : NULL;
        double rtol = dev ? dev->rtol : d ? RTOL_F32 : RTOL_F64, skip = dev ? dev->skip : NAN;
        int64_t bad = -1;
        bool nan_in = with_nan && !(dev && dev->skip_nan);
        double e = good ? worst_error(got[k], c->want[d][k], n_inputs, rtol, atol, nan_in, skip, &bad) : INFINITY;
        if (!why && e > overall[d]) overall[d] = e;
        ok(e <= rtol, "%s %s %s %s: within %g·|y| + %g of PyTorch (worst %.2g)%s", c->label, d ? "f32" : "f64",
           k ? "dx" : "y", backend, rtol, atol, e, why ? " - a known deviation" : "");
        if (why) diag("%s", why);
        if (bad >= 0 && e > rtol)
            diag("at x = %.17g: agrad %.17g, PyTorch %.17g", inputs[bad], got[k][bad], c->want[d][k][bad]);
    }
    free(got[0]);
    free(got[1]);
}

static void test_fixtures(void) {
    /* The default backend: the fixture's 63 inputs are below every oneDNN threshold, so these
     * are the C loops. */
    for (int i = 0; i < ncases; i++)
        for (int d = 0; d < 2; d++) check_case(&cases[i], d, "default", true);
    /* float32 through oneDNN wherever a row has a primitive (and the split loops elsewhere);
     * not at NaN: oneDNN's relu turns NaN into 0 where PyTorch keeps it. */
    ag_backend_mode saved = ag__backend;
    ag__backend = AG_BACKEND_ACCEL;
    for (int i = 0; i < ncases; i++) check_case(&cases[i], 1, "accelerated", false);
    ag__backend = saved;
    diag("worst |agrad - PyTorch| / (|PyTorch| + atol/rtol): float64 %.2g, float32 %.2g", overall[0], overall[1]);
}

/* ---- stability ------------------------------------------------------------------------------------ */
/* Every activation gives finite values and derivatives on ±[1e-6, 1e4] (log-spaced) and 0. */
static void test_finite(void) {
    enum { N = 2 * 241 + 1 };
    double v[N];
    int n = 0;
    v[n++] = 0;
    for (int k = 0; k <= 240; k++) {
        double m = pow(10, -6 + k / 24.0);
        v[n++] = m;
        v[n++] = -m;
    }
    ag_backend_mode modes[2] = {AG_BACKEND_REFERENCE, AG_BACKEND_ACCEL};
    for (int i = 0; i < ncases; i++) {
        for (int d = 0; d < 2; d++) {
            for (int b = 0; b < 2; b++) {
                if (b == 1 && d == 0) continue; /* oneDNN is float32 only */
                ag_backend_mode saved = ag__backend;
                ag__backend = modes[b];
                double y[N], dx[N], *out[2] = {y, dx};
                bool good = evaluate(&cases[i], NULL, v, n, d ? AG_F32 : AG_F64, out);
                ag__backend = saved;
                int first = -1;
                for (int k = 0; good && k < n && first < 0; k++)
                    if (!isfinite(y[k]) || !isfinite(dx[k])) first = k;
                ok(good && first < 0, "%s %s %s: finite values and derivatives on ±[1e-6, 1e4]", cases[i].label,
                   d ? "f32" : "f64", b ? "accelerated" : "loops");
                if (first >= 0) diag("at x = %g: y %g, dx %g", v[first], y[first], dx[first]);
            }
        }
    }
}

/* ---- modules ------------------------------------------------------------------------------------ */
/* Each case's module prints as PyTorch's repr and gives the functional's values and derivatives exactly. */
static void test_modules(void) {
    for (int i = 0; i < ncases; i++) {
        const fx_case *c = &cases[i];
        if (!c->module[0]) continue;
        ag_module *m = make_module(c->fn, c->a, c->b);
        if (!ok(m != NULL, "%s: module made", c->label)) continue;
        char *s = fixture_module_repr(m), want[128];
        snprintf(want, sizeof want, "%s\n", c->module);
        ok(s && strcmp(s, want) == 0, "%s: module prints as PyTorch's %s", c->label, c->module);
        if (s && strcmp(s, want) != 0) diag("got %.*s", (int)strcspn(s, "\n"), s);
        free(s);
        for (int d = 0; d < 2; d++) {
            double *fy[2], *my[2];
            for (int k = 0; k < 2; k++) {
                fy[k] = malloc(sizeof(double) * (size_t)n_inputs);
                my[k] = malloc(sizeof(double) * (size_t)n_inputs);
            }
            bool good = evaluate(c, NULL, inputs, n_inputs, d ? AG_F32 : AG_F64, fy) &&
                        evaluate(c, m, inputs, n_inputs, d ? AG_F32 : AG_F64, my);
            for (int k = 0; good && k < 2; k++)
                for (int64_t j = 0; j < n_inputs; j++)
                    good = good && (fy[k][j] == my[k][j] || (isnan(fy[k][j]) && isnan(my[k][j])));
            ok(good, "%s %s: module forward and gradient equal the functional's", c->label, d ? "f32" : "f64");
            for (int k = 0; k < 2; k++) {
                free(fy[k]);
                free(my[k]);
            }
        }
        ag_module_free(m);
    }
    /* Options printed as PyTorch prints them when given in the type of its defaults. */
    struct {
        ag_module *m;
        const char *want;
    } more[] = {
        {ag_nn_leaky_relu(1e-7), "LeakyReLU(negative_slope=1e-07)\n"},
        {ag_nn_elu(1e16), "ELU(alpha=1e+16)\n"},
        {ag_nn_softplus(1e20, 1e-5), "Softplus(beta=1e+20, threshold=1e-05)\n"},
        {ag_nn_softplus(-3, 0), "Softplus(beta=-3, threshold=0)\n"},
        {ag_nn_hardtanh(-0.1, 1e-5), "Hardtanh(min_val=-0.1, max_val=1e-05)\n"},
    };
    for (size_t i = 0; i < sizeof more / sizeof more[0]; i++) {
        char *s = fixture_module_repr(more[i].m);
        ok(s && strcmp(s, more[i].want) == 0, "prints %.*s", (int)strlen(more[i].want) - 1, more[i].want);
        if (s && strcmp(s, more[i].want) != 0) diag("got %.*s", (int)strcspn(s, "\n"), s);
        free(s);
        ag_module_free(more[i].m);
    }
    ag_module *seq = AG_SEQUENTIAL(ag_nn_gelu(true), ag_nn_relu6(), ag_nn_binary_step());
    char *s = fixture_module_repr(seq);
    ok(s && strcmp(s, "Sequential(\n  (0): GELU(approximate='tanh')\n  (1): ReLU6()\n  (2): BinaryStep()\n)\n") == 0,
       "a Sequential of activations prints as PyTorch's");
    free(s);
    ag_module_free(seq);
}

/* ---- errors ---------------------------------------------------------------------------------------- */
static bool failed_with(const void *r, ag_status s, const char *msg) {
    bool good = r == NULL && ag_last_status() == s && strcmp(ag_last_error(), msg) == 0;
    if (!good) diag("got status %d, message \"%s\"", (int)ag_last_status(), ag_last_error());
    ag_clear_error();
    return good;
}

static void test_errors(void) {
    ag_scope_begin();
    ag_tensor *x = ag_rand(AG_SHAPE(3), AG_F64);
    ok(failed_with(ag_celu(x, 0), AG_ERR_ARG, "celu: alpha cannot be 0"), "celu with alpha 0 fails");
    ok(failed_with(ag_hardtanh(x, 2, 1), AG_ERR_ARG, "hardtanh: min_val 2 is greater than max_val 1"),
       "hardtanh with min_val > max_val fails");
    ok(ag_hardtanh(x, 0.5, 0.5) != NULL, "hardtanh with equal bounds is accepted (as PyTorch's functional)");
    ok(failed_with(ag_nn_hardtanh(1, 1), AG_ERR_ARG, "nn.Hardtanh: max_val 1 must be greater than min_val 1"),
       "nn.Hardtanh with max_val == min_val fails (as PyTorch's assert)");
    ag_module *celu0 = ag_nn_celu(0);
    ok(celu0 && failed_with(ag_module_forward(celu0, x), AG_ERR_ARG, "celu: alpha cannot be 0"),
       "nn.CELU(0) is made and fails in forward (as PyTorch)");
    ag_module_free(celu0);
    ag_tensor *i = ag_zeros(AG_SHAPE(3), AG_I64);
    ok(ag_gelu(i) == NULL && ag_last_status() != AG_OK, "an int64 input is refused");
    ag_clear_error();
    ok(ag_mish(NULL) == NULL && ag_last_status() == AG_OK, "NULL passes through without a message");
    ag_scope_end();
}

/* ---- the composite activations (nn/activation_composite.c) ------------------------------------ */
/* Whether a and b (same shape) are equal everywhere. */
static bool same(ag_tensor *a, ag_tensor *b) {
    return a && b && ag_item(ag_max(ag_abs(ag_sub(a, b)))) == 0;
}
static ag_tensor *call_composite(ag_tensor *const *in, int n, void *ctx) {
    (void)n;
    const char *name = ctx;
    ag_tensor *x = in[0];
    if (strcmp(name, "logsigmoid") == 0) return ag_logsigmoid(x);
    if (strcmp(name, "softmin") == 0) return ag_softmin(x, 1);
    if (strcmp(name, "glu") == 0) return ag_glu(x, 1);
    if (strcmp(name, "glu/0") == 0) return ag_glu(x, 0);
    if (strcmp(name, "threshold") == 0) return ag_threshold(x, 0.3, -2);
    if (strcmp(name, "softshrink") == 0) return ag_softshrink(x, 0.5);
    if (strcmp(name, "hardshrink") == 0) return ag_hardshrink(x, 0.5);
    if (strcmp(name, "tanhshrink") == 0) return ag_tanhshrink(x);
    if (strcmp(name, "gaussian") == 0) return ag_gaussian(x);
    if (strcmp(name, "gelu_sigmoid") == 0) return ag_gelu_sigmoid(x);
    if (strcmp(name, "rrelu/eval") == 0) return ag_rrelu(x, 0.1, 0.3, false);
    return NULL;
}

/* Every composite is gradchecked in float64 on a [4, 6] input away from the kinks, and
 * gradgradchecked where its parts have double-backward rules (where and slice, used by glu,
 * threshold and the shrinks, are on the higher-order pending list); softmin is softmax(-x), glu a·σ(b); rrelu in training draws each slope of a
 * negative input from [lower, upper] and passes it as the derivative. */
static void test_composites(void) {
    static const char *const names[] = {"logsigmoid", "softmin",  "glu",        "glu/0",     "threshold",   "softshrink",
                                        "hardshrink", "tanhshrink", "gaussian", "gelu_sigmoid", "rrelu/eval"};
    ag_scope_begin();
    ag_manual_seed(20);
    ag_tensor *x = ag_mul_scalar(ag_randn(AG_SHAPE(4, 6), AG_F64), 2);
    ag_requires_grad_(x, true);
    ag_gradcheck_opts opts = {.eps = 1e-6, .atol = 1e-6, .rtol = 1e-4, .quiet = false};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        ok(ag_gradcheck(call_composite, (void *)names[i], &x, 1, &opts, NULL) == AG_OK, "%s: gradcheck", names[i]);
        bool pending = strncmp(names[i], "glu", 3) == 0 || strcmp(names[i], "threshold") == 0 || strstr(names[i], "shrink");
        if (!pending || strcmp(names[i], "tanhshrink") == 0)
            ok(ag_gradgradcheck(call_composite, (void *)names[i], &x, 1, &opts, NULL) == AG_OK, "%s: gradgradcheck", names[i]);
    }
    ok(same(ag_softmin(x, 0), ag_softmax(ag_neg(x), 0)), "softmin(x, 0) is softmax(-x, 0)");
    ag_tensor *a = ag_narrow(x, 1, 0, 3), *b = ag_narrow(x, 1, 3, 3);
    ok(same(ag_glu(x, -1), ag_mul(a, ag_sigmoid(b))), "glu(x, -1) is a·σ(b) of x's halves");
    ag_shape s = ag_shape_of(ag_glu(x, 0));
    ok(s.ndim == 2 && s.dim[0] == 2 && s.dim[1] == 6, "glu halves dim 0: [4, 6] -> [2, 6]");

    /* rrelu in training: slopes in [0.1, 0.3] that differ, the gradient is the slope, positives pass */
    ag_tensor *xr = ag_randn(AG_SHAPE(1000), AG_F64);
    ag_requires_grad_(xr, true);
    ag_tensor *y = ag_rrelu(xr, 0.1, 0.3, true);
    ok(y && ag_backward(ag_sum(y)) == AG_OK, "rrelu in training runs forward and backward");
    const double *xv = ag_data(xr), *yv = ag_data(y), *gv = ag_data(ag_grad(xr));
    double lo = 1, hi = 0;
    bool slope_is_grad = true, positives_pass = true;
    for (int k = 0; k < 1000; k++) {
        if (xv[k] > 0) {
            positives_pass &= yv[k] == xv[k] && gv[k] == 1;
            continue;
        }
        double slope = yv[k] / xv[k];
        lo = fmin(lo, slope), hi = fmax(hi, slope);
        slope_is_grad &= fabs(gv[k] - slope) <= 1e-12;
    }
    ok(lo >= 0.1 && hi <= 0.3 && hi - lo > 0.15, "rrelu's training slopes lie in [0.1, 0.3] and vary (%.3f..%.3f)", lo, hi);
    ok(slope_is_grad && positives_pass, "rrelu's gradient is its slope on negatives and 1 on positives");
    ag_module *m = ag_nn_rrelu(0.1, 0.3);
    ag_tensor *y1 = ag_module_forward(m, xr), *y2 = ag_module_forward(m, xr);
    ok(y1 && y2 && !same(y1, y2), "nn.RReLU in training mode draws new slopes each forward");
    ag_module_train(m, false);
    ok(same(ag_module_forward(m, xr), ag_leaky_relu(xr, 0.2)), "nn.RReLU in eval mode is leaky_relu((lower + upper)/2)");
    ag_module_free(m);
    ag_module *g = ag_nn_glu(-1), *sm = ag_nn_softmin(1);
    char *gs = fixture_module_repr(g), *ss = fixture_module_repr(sm);
    ok(gs && strcmp(gs, "GLU(dim=-1)\n") == 0 && ss && strcmp(ss, "Softmin(dim=1)\n") == 0, "GLU and Softmin print as PyTorch");
    free(gs);
    free(ss);
    ok(same(ag_module_forward(g, x), ag_glu(x, -1)) && same(ag_module_forward(sm, x), ag_softmin(x, 1)),
       "GLU and Softmin modules equal their functionals");
    ag_module_free(g);
    ag_module_free(sm);

    ok(failed_with(ag_glu(ag_narrow(x, 1, 0, 5), 1), AG_ERR_SHAPE, "glu: halving dim 1 needs an even size, got 5"),
       "glu of an odd size fails");
    ok(failed_with(ag_glu(x, 2), AG_ERR_INDEX, "glu: dim 2 out of range for a 2-d input"), "glu with a bad dim fails");
    ok(failed_with(ag_softshrink(x, -1), AG_ERR_ARG, "softshrink: lambd must be >= 0, got -1"), "softshrink with lambd < 0 fails");
    ok(failed_with(ag_rrelu(x, 0.5, 0.1, true), AG_ERR_ARG, "rrelu: needs finite lower <= upper, got lower 0.5, upper 0.1"),
       "rrelu with lower > upper fails");
    ok(ag_nn_rrelu(NAN, 1) == NULL && ag_last_status() == AG_ERR_ARG, "nn.RReLU with a NaN bound fails");
    ag_clear_error();
    ag_scope_end();
}

/* The activation of index k (test_long_adjoint_runs' rows): those whose adjoint takes dy in some lanes only. */
static ag_tensor *long_run_op(int k, ag_tensor *x) {
    switch (k) {
    case 0: return ag_hardswish(x);
    case 1: return ag_relu(x);
    case 2: return ag_clamp(x, -1, 1.5);
    case 3: return ag_hardtanh(x, -1, 1);
    case 4: return ag_hardsigmoid(x);
    default: return ag_leaky_relu(x, 0.1);
    }
}

/* The unary adjoints' contiguous runs of 2 MiB and more go in blocks that prefetch dy ahead (ops/unary.c,
 * ops/adjoint_run.h): on one thread (one run) of 2^19 + 37 floats or 2^18 + 37 doubles, dx bit for bit
 * equal to dx of the same values in pieces of 4096 (runs that keep one loop), with x at the rows' edges
 * (±3, ±1, 0, -0), NaN and infinities, and dy NaN and infinite in places. */
static void test_long_adjoint_runs(void) {
    static const char *const names[] = {"hardswish", "relu", "clamp", "hardtanh", "hardsigmoid", "leaky_relu"};
    static const double edges[] = {-3, 3, -1, 1, 0, -0.0, 1.5, NAN, INFINITY, -INFINITY};
    const int threads = ag_get_num_threads();
    ag_set_num_threads(1);
    for (int d = 0; d < 2; d++) {
        const ag_dtype dt = d ? AG_F64 : AG_F32;
        const size_t es = d ? sizeof(double) : sizeof(float);
        const int64_t n = ((int64_t)1 << (d ? 18 : 19)) + 37, piece = 4096;
        double *xv = malloc((size_t)n * sizeof(double)), *dv = malloc((size_t)n * sizeof(double));
        char *xb = malloc((size_t)n * es), *db = malloc((size_t)n * es), *want = malloc((size_t)n * es);
        uint64_t r = 88172645463325252u;
        for (int64_t i = 0; i < n; i++) {
            r ^= r << 13, r ^= r >> 7, r ^= r << 17;
            xv[i] = i % 7 == 0 ? edges[(i / 7) % 10] : (double)(r % 80001) / 10000 - 4;
            dv[i] = i % 101 == 5 ? NAN : i % 103 == 7 ? -INFINITY : (double)(r >> 40) / (1 << 24) - 0.5;
        }
        for (int64_t i = 0; i < n; i++) {
            if (d) {
                ((double *)xb)[i] = xv[i], ((double *)db)[i] = dv[i];
            } else {
                ((float *)xb)[i] = (float)xv[i], ((float *)db)[i] = (float)dv[i];
            }
        }
        for (int k = 0; k < (int)(sizeof names / sizeof names[0]); k++) {
            ag_scope_begin();
            bool run = true;
            for (int64_t i0 = 0; i0 < n && run; i0 += piece) {
                const int64_t m = n - i0 < piece ? n - i0 : piece;
                ag_tensor *x = ag_requires_grad_(ag_from_data(xb + i0 * es, AG_SHAPE(m), dt), true);
                run = ag_backward_ex(long_run_op(k, x), ag_from_data(db + i0 * es, AG_SHAPE(m), dt), false) == AG_OK;
                if (run) memcpy(want + i0 * es, ag_data(ag_grad(x)), (size_t)m * es);
            }
            ag_tensor *x = ag_requires_grad_(ag_from_data(xb, AG_SHAPE(n), dt), true);
            run = run && ag_backward_ex(long_run_op(k, x), ag_from_data(db, AG_SHAPE(n), dt), false) == AG_OK;
            int64_t bad = -1;
            for (int64_t i = 0; run && i < n && bad < 0; i++)
                if (memcmp((char *)ag_data(ag_grad(x)) + i * es, want + i * es, es)) bad = i;
            ok(run && bad < 0, "the adjoint of %s over one run of %lld %s: the bits of pieces of 4096 (first differing at %lld)",
               names[k], (long long)n, d ? "doubles" : "floats", (long long)bad);
            ag_scope_end();
        }
        free(xv), free(dv), free(xb), free(db), free(want);
    }
    ag_set_num_threads(threads);
}

int main(void) {
    bool loaded = (cases = fixture_read_cases(FIXTURES "/activations.txt", sizeof *cases, take_line, NULL, &ncases));
    if (ok(loaded, "read %d cases on %lld inputs from %s", ncases, (long long)n_inputs, FIXTURES "/activations.txt")) {
        test_fixtures();
        test_finite();
        test_modules();
    }
    test_errors();
    test_composites();
    test_long_adjoint_runs();
    free_fixtures();
    ok(ag_live_tensors() == 0, "no tensors leaked");
    return tap_done();
}

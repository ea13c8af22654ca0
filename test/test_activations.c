/*
 * Activations (include/agrad/ops.h, nn.h): values and derivatives against PyTorch
 * (test/fixtures/activations.txt, from scripts/gen_activation_fixtures.py) in float64
 * and float32, with the plain loops and with oneDNN wherever a row has a primitive,
 * on inputs that include ±100, ±1e4, the kinks and NaN; no inf or NaN from any finite
 * input up to ±1e4 in either dtype; every module prints as PyTorch's repr and equals
 * its functional; the errors by their messages.
 */
#include <stdlib.h>
#include <string.h>
#include "agrad/agrad.h"
#include "core/parallel.h"
#include "tap.h"

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

/* Where agrad knowingly differs from PyTorch 1.13: in one case, dtype ([f64, f32]), result
 * ([y, dx]) and backend, either everywhere (skip NAN: the relative tolerance rtol instead) or
 * at the one input skip (left out of the comparison); and why. */
static const struct deviation {
    const char *label, *backend;
    int dtype, k;
    double rtol, skip;
    const char *why;
} deviations[] = {
    {"hardsigmoid", "default", 0, 1, 5e-8, NAN,
     "PyTorch's float64 backward multiplies by the float constant 1.0f/6.0f; agrad by 1/6"},
    {"hardswish", "accelerated", 1, 1, RTOL_F32, -3,
     "oneDNN's hardswish derivative at -3 is 0, PyTorch's -1/2: agrad's default backend never runs it"},
};

static const struct deviation *deviation_of(const char *label, const char *backend, int d, int k) {
    for (size_t i = 0; i < sizeof deviations / sizeof deviations[0]; i++)
        if (strcmp(deviations[i].label, label) == 0 && strcmp(deviations[i].backend, backend) == 0 &&
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

static double *parse_values(const char *s, int64_t n) {
    double *v = malloc(sizeof(double) * (size_t)n);
    char *end;
    for (int64_t k = 0; v && k < n; k++) {
        v[k] = strtod(s, &end);
        if (end == s) {
            free(v);
            return NULL;
        }
        s = end;
    }
    return v;
}

static bool load_fixtures(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return false;
    char *line = NULL;
    size_t cap = 0;
    int alloc = 0, used = 0;
    fx_case *c = NULL;
    bool good = true;
    while (good && getline(&line, &cap, f) > 0) {
        line[strcspn(line, "\n")] = '\0';
        if (line[0] == '#' || line[0] == '\0') continue;
        if (strncmp(line, "input ", 6) == 0) {
            long long n;
            good = sscanf(line + 6, "%lld%n", &n, &used) == 1 && n > 0;
            n_inputs = n;
            if (good) good = (inputs = parse_values(line + 6 + used, n_inputs)) != NULL;
        } else if (strncmp(line, "case ", 5) == 0) {
            if (ncases == alloc) {
                alloc = alloc ? 2 * alloc : 64;
                cases = realloc(cases, sizeof *cases * (size_t)alloc);
            }
            c = &cases[ncases++];
            memset(c, 0, sizeof *c);
            good = sscanf(line + 5, "%47s %31s %lf %lf", c->label, c->fn, &c->a, &c->b) == 4;
        } else if (!c) {
            good = false;
        } else if (strncmp(line, "module ", 7) == 0) {
            snprintf(c->module, sizeof c->module, "%s", line + 7);
        } else if (strncmp(line, "f64 ", 4) == 0 || strncmp(line, "f32 ", 4) == 0) {
            int d = line[1] == '3', k = line[4] == 'd';
            const char *vals = line + (k ? 7 : 6);
            good = n_inputs > 0 && (c->want[d][k] = parse_values(vals, n_inputs)) != NULL;
        } else if (strcmp(line, "end") == 0) {
            for (int d = 0; d < 2; d++)
                for (int k = 0; k < 2; k++) good = good && c->want[d][k];
            c = NULL;
        } else {
            good = false;
        }
    }
    free(line);
    fclose(f);
    return good && ncases > 0;
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
        double e = good ? worst_error(got[k], c->want[d][k], n_inputs, rtol, atol, with_nan, skip, &bad) : INFINITY;
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
static char *print_module(const ag_module *m) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    ag_module_print(m, f);
    fclose(f);
    return buf;
}

/* Each case's module prints as PyTorch's repr and gives the functional's values and derivatives exactly. */
static void test_modules(void) {
    for (int i = 0; i < ncases; i++) {
        const fx_case *c = &cases[i];
        if (!c->module[0]) continue;
        ag_module *m = make_module(c->fn, c->a, c->b);
        if (!ok(m != NULL, "%s: module made", c->label)) continue;
        char *s = print_module(m), want[128];
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
        char *s = print_module(more[i].m);
        ok(s && strcmp(s, more[i].want) == 0, "prints %.*s", (int)strlen(more[i].want) - 1, more[i].want);
        if (s && strcmp(s, more[i].want) != 0) diag("got %.*s", (int)strcspn(s, "\n"), s);
        free(s);
        ag_module_free(more[i].m);
    }
    ag_module *seq = AG_SEQUENTIAL(ag_nn_gelu(true), ag_nn_relu6(), ag_nn_binary_step());
    char *s = print_module(seq);
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

int main(void) {
    bool loaded = load_fixtures(FIXTURES "/activations.txt");
    if (ok(loaded, "read %d cases on %lld inputs from %s", ncases, (long long)n_inputs, FIXTURES "/activations.txt")) {
        test_fixtures();
        test_finite();
        test_modules();
    }
    test_errors();
    free_fixtures();
    ok(ag_live_tensors() == 0, "no tensors leaked");
    return tap_done();
}

/*
 * nn.init.dirac_ and sparse_, and the weight reparametrisations weight_norm and
 * spectral_norm, against PyTorch (test/fixtures/nn_parametrize.safetensors, from
 * scripts/gen_nn_fixtures.py): dirac_ on 3-, 4- and 5-d weights with groups;
 * weight_norm over dims 0, 1 and the whole tensor on a Linear and over dim 0 on a
 * Conv2d; spectral_norm with 1 and 3 power iterations on a Linear and a Conv2d,
 * started from PyTorch's u and v: three training forwards (outputs, u, v), the
 * gradients of the last, an eval forward; then remove_*, state dicts and errors.
 */
#include <string.h>
#include "agrad/agrad.h"
#include "fixture.h"
#include "tap.h"

#ifndef FIXTURES
#define FIXTURES "test/fixtures"
#endif

static ag_state_dict *fx;

static ag_tensor *F(const char *fmt, const char *tag) {
    char key[96];
    snprintf(key, sizeof key, fmt, tag);
    ag_tensor *t = ag_state_dict_get(fx, key);
    if (!t) diag("fixture %s missing", key);
    return t;
}

static bool error_is(ag_status want, const char *needle) {
    bool r = ag_last_status() == want && strstr(ag_last_error(), needle) != NULL;
    if (!r) diag("got %s: %s", ag_status_name(ag_last_status()), ag_last_error());
    ag_clear_error();
    return r;
}

static void test_dirac_sparse(void) {
    const struct {
        const char *key;
        ag_shape shape;
        int groups;
    } d[] = {{"dirac.d3", AG_SHAPE(4, 6, 3), 1}, {"dirac.d4g2", AG_SHAPE(6, 4, 3, 3), 2},
             {"dirac.d5", AG_SHAPE(2, 3, 3, 2, 3), 1}, {"dirac.d4g3", AG_SHAPE(6, 1, 2, 2), 3}};
    for (size_t i = 0; i < sizeof d / sizeof *d; i++) {
        ag_scope_begin();
        ag_tensor *t = ag_init_dirac_(ag_randn(d[i].shape, AG_F32), d[i].groups);
        ok(worst(t, ag_state_dict_get(fx, d[i].key)) == 0, "dirac_(groups=%d) on %d dims equals PyTorch's (%s)",
           d[i].groups, d[i].shape.ndim, d[i].key);
        ag_scope_end();
    }
    ag_scope_begin();
    ok(!ag_init_dirac_(ag_empty(AG_SHAPE(3, 3), AG_F32), 1) && error_is(AG_ERR_SHAPE, "only tensors with 3, 4, or 5 dimensions"),
       "dirac_ on 2 dims: AG_ERR_SHAPE");
    ok(!ag_init_dirac_(ag_empty(AG_SHAPE(5, 3, 3), AG_F32), 2) && error_is(AG_ERR_ARG, "dim 0 (5) must be divisible by groups (2)"),
       "dirac_ with 5 channels in 2 groups: AG_ERR_ARG");
    ok(ag_init_dirac_(ag_empty(AG_SHAPE(2, 2, 0), AG_F32), 1) != NULL, "dirac_ on an empty kernel does nothing");

    /* sparse_: exactly ⌈sparsity·rows⌉ zeros in each column, the rest N(0, std²) */
    ag_manual_seed(5);
    int64_t rows = 300, cols = 40;
    ag_tensor *s = ag_init_sparse_(ag_empty(AG_SHAPE(rows, cols), AG_F64), 0.25, 0.5);
    double *v = ag_data(s), sum2 = 0;
    int64_t nz = 0;
    bool columns = true;
    for (int64_t c = 0; c < cols; c++) {
        int64_t zeros = 0;
        for (int64_t r = 0; r < rows; r++) zeros += v[r * cols + c] == 0;
        columns &= zeros == 75;
    }
    for (int64_t i = 0; i < rows * cols; i++)
        if (v[i] != 0) sum2 += v[i] * v[i], nz++;
    double sd = sqrt(sum2 / (double)nz);
    ok(columns && fabs(sd - 0.5) < 0.02, "sparse_(0.25, std=0.5) on [300, 40]: 75 zeros in every column, the rest of std %.4f",
       sd);
    ok(!ag_init_sparse_(ag_empty(AG_SHAPE(3), AG_F32), 0.1, 0.01) && error_is(AG_ERR_SHAPE, "only tensors with 2 dimensions"),
       "sparse_ on 1 dim: AG_ERR_SHAPE");
    ok(!ag_init_sparse_(s, 1.5, 0.01) && error_is(AG_ERR_ARG, "sparsity in [0, 1]"), "sparse_ with sparsity 1.5: AG_ERR_ARG");
    ag_scope_end();
}

/* A float64 Linear(4, 3), Conv2d(2, 4, 3) or ConvTranspose2d(2, 3, 3) with the fixture's weight and bias. */
static ag_module *layer(const char *kind) {
    ag_module *m = !strcmp(kind, "lin")    ? ag_nn_linear(4, 3, true)
                   : !strcmp(kind, "conv") ? ag_nn_conv2d(2, 4, 3, 3, NULL, true)
                                           : ag_nn_conv_transpose2d(2, 3, 3, 3, NULL, true);
    ag_module_to_dtype(m, AG_F64);
    ag_no_grad_begin();
    ag_copy_(ag_module_get_parameter(m, "weight"), F("%s.weight", kind));
    ag_copy_(ag_module_get_parameter(m, "bias"), F("%s.bias", kind));
    ag_no_grad_end();
    return m;
}

/* The largest error over `steps` training forwards (and u, v after each), the gradients of
 * sum(y·dy) after the last for the named parameters, the weight then, and an eval forward. */
static double replay(const char *tag, const char *kind, ag_module *m, const char *const *names, int n, int steps,
                     bool spectral) {
    double e = 0;
    ag_tensor *x = F("%s.x", kind), *y = NULL;
    char key[96];
    for (int k = 0; k < steps; k++) {
        ag_module_zero_grad(m);
        y = ag_module_forward(m, x);
        snprintf(key, sizeof key, "%s.y%d", tag, k);
        e = fmax(e, worst(y, ag_state_dict_get(fx, key)));
        for (int b = 0; spectral && b < 2; b++) {
            snprintf(key, sizeof key, "%s.weight_%s%d", tag, b ? "v" : "u", k);
            e = fmax(e, worst(ag_module_get_buffer(m, b ? "weight_v" : "weight_u"), ag_state_dict_get(fx, key)));
        }
    }
    ag_backward(ag_sum(ag_mul(y, F("%s.dy", kind))));
    e = fmax(e, worst(ag_module_get_parameter(m, "weight"), F("%s.weight", tag)));
    for (int i = 0; i < n; i++) {
        snprintf(key, sizeof key, "%s.grad.%s", tag, names[i]);
        e = fmax(e, worst(ag_grad(ag_module_get_parameter(m, names[i])), ag_state_dict_get(fx, key)));
    }
    ag_module_eval(m);
    e = fmax(e, worst(ag_module_forward(m, x), F("%s.y_eval", tag)));
    return e;
}

static void test_weight_norm(void) {
    static const char *const names[] = {"bias", "weight_g", "weight_v"};
    static const struct {
        const char *tag, *kind;
        int dim;
    } c[] = {{"wn0", "lin", 0}, {"wn1", "lin", 1}, {"wnall", "lin", -1}, {"wnconv", "conv", 0}};
    for (size_t i = 0; i < sizeof c / sizeof *c; i++) {
        ag_scope_begin();
        ag_module *m = layer(c[i].kind);
        ag_tensor *w = ag_module_get_parameter(m, "weight");
        ag_status st = ag_weight_norm(m, "weight", c[i].dim);
        char n0[32] = "", n1[32] = "", n2[32] = "";
        ag_module_parameter(m, 0, n0, sizeof n0), ag_module_parameter(m, 1, n1, sizeof n1), ag_module_parameter(m, 2, n2, sizeof n2);
        ok(st == AG_OK && ag_module_get_parameter(m, "weight_v") == w && ag_module_num_parameter_tensors(m) == 3 &&
               !strcmp(n0, "bias") && !strcmp(n1, "weight_g") && !strcmp(n2, "weight_v") &&
               worst(ag_module_get_parameter(m, "weight_g"), F("%s.weight_g", c[i].tag)) < 1e-15,
           "weight_norm(%s, dim=%d): parameters bias, weight_g (as PyTorch's), weight_v (the old weight)", c[i].kind,
           c[i].dim);
        double e = replay(c[i].tag, c[i].kind, m, names, 3, 1, false);
        ok(e < 1e-13, "weight_norm(%s, dim=%d): output, weight, gradients of bias, g and v, eval output match PyTorch (%.2g)",
           c[i].kind, c[i].dim, e);
        ag_module_free(m);
        ag_scope_end();
    }
}

static void test_spectral_norm(void) {
    static const char *const names[] = {"bias", "weight_orig"};
    static const struct {
        const char *tag, *kind;
        int iters;
    } c[] = {{"sn1", "lin", 1}, {"sn3", "lin", 3}, {"snconv", "conv", 1}, {"snconvt", "convt", 2}};
    for (size_t i = 0; i < sizeof c / sizeof *c; i++) {
        ag_scope_begin();
        ag_module *m = layer(c[i].kind);
        ag_tensor *w = ag_module_get_parameter(m, "weight");
        ag_status st = ag_spectral_norm(m, "weight", c[i].iters, 1e-12, -1);
        ag_no_grad_begin();
        bool set = st == AG_OK && ag_copy_(ag_module_get_buffer(m, "weight_u"), F("%s.u0", c[i].tag)) &&
                   ag_copy_(ag_module_get_buffer(m, "weight_v"), F("%s.v0", c[i].tag));
        ag_no_grad_end();
        ag_state_dict *sd = ag_state_dict_new();
        ag_module_state_dict(m, sd);
        ok(set && ag_module_get_parameter(m, "weight_orig") == w && ag_state_dict_size(sd) == 4 &&
               ag_state_dict_get(sd, "weight_u") && ag_state_dict_get(sd, "weight_orig") && !ag_state_dict_get(sd, "weight"),
           "spectral_norm(%s, %d iterations): parameter weight_orig (the old weight), buffers weight_u, weight_v; the state "
           "dict holds bias, weight_orig, weight_u, weight_v", c[i].kind, c[i].iters);
        ag_state_dict_free(sd);
        double e = replay(c[i].tag, c[i].kind, m, names, 2, 3, true);
        ok(e < 1e-12, "spectral_norm(%s, %d iterations): 3 training forwards (outputs, u, v), the weight, gradients of "
                      "bias and weight_orig, an eval forward match PyTorch (%.2g)", c[i].kind, c[i].iters, e);
        ag_module_free(m);
        ag_scope_end();
    }
}

static void test_remove_and_errors(void) {
    ag_scope_begin();
    ag_module *m = layer("lin");
    ag_tensor *x = F("%s.x", "lin");
    ag_weight_norm(m, "weight", 0);
    ag_tensor *y0 = ag_module_forward(m, x);
    ok(ag_weight_norm(m, "weight", 0) == AG_ERR_ARG && error_is(AG_ERR_ARG, "already has a weight_norm or spectral_norm"),
       "weight_norm twice on one parameter: AG_ERR_ARG");
    ok(ag_remove_spectral_norm(m, "weight") == AG_ERR_ARG && error_is(AG_ERR_ARG, "has no spectral_norm"),
       "remove_spectral_norm of a weight_norm: AG_ERR_ARG");
    ok(ag_remove_weight_norm(m, "weight") == AG_OK && ag_module_num_parameter_tensors(m) == 2 &&
           !ag_module_get_parameter(m, "weight_g") && worst(ag_module_forward(m, x), y0) < 1e-15,
       "remove_weight_norm: weight is a parameter again and the output is unchanged");
    ok(ag_spectral_norm(m, "weight", 1, 1e-12, 0) == AG_OK && ag_remove_spectral_norm(m, "weight") == AG_OK &&
           ag_module_num_parameter_tensors(m) == 2 && !ag_module_get_buffer(m, "weight_u"),
       "spectral_norm then remove_spectral_norm: back to weight and bias");
    ok(ag_weight_norm(m, "bias", 0) == AG_OK && ag_remove_weight_norm(m, "bias") == AG_OK, "weight_norm on a 1-d bias");
    ok(ag_weight_norm(m, "nothing", 0) == AG_ERR_ARG && error_is(AG_ERR_ARG, "Linear has no parameter \"nothing\""),
       "weight_norm of a missing parameter: AG_ERR_ARG");
    ok(ag_weight_norm(m, "weight", 2) == AG_ERR_ARG && error_is(AG_ERR_ARG, "dim 2 out of range"),
       "weight_norm over dim 2 of a matrix: AG_ERR_ARG");
    ok(ag_spectral_norm(m, "weight", -1, 1e-12, 0) == AG_ERR_ARG && error_is(AG_ERR_ARG, "n_power_iterations >= 0"),
       "spectral_norm with -1 iterations: AG_ERR_ARG");
    ok(ag_weight_norm(NULL, "weight", 0) == AG_ERR_ARG && error_is(AG_ERR_ARG, "module or name is NULL"),
       "weight_norm(NULL): AG_ERR_ARG");
    /* trained through g and v with SGD: the loss falls */
    ag_weight_norm(m, "weight", 0);
    ag_tensor *ps[4];
    int np = ag_module_parameters(m, ps, 4);
    ag_sgd_options so = ag_sgd_defaults();
    so.lr = 0.05;
    ag_optimizer *opt = ag_sgd_new(ps, np, &so);
    double first = 0, last = 0;
    for (int s = 0; s < 20; s++) {
        ag_scope_begin();
        ag_optimizer_zero_grad(opt);
        ag_tensor *l = ag_mean(ag_square(ag_sub(ag_module_forward(m, x), ag_zeros(AG_SHAPE(5, 3), AG_F64))));
        ag_backward(l);
        ag_optimizer_step(opt);
        last = ag_item(l);
        if (s == 0) first = last;
        ag_scope_end();
    }
    ok(np == 3 && last < 0.5 * first, "SGD through weight_g and weight_v: the loss falls from %.4f to %.4f", first, last);
    ag_optimizer_free(opt);
    ag_module_free(m);
    ag_scope_end();
}

int main(void) {
    fx = ag_load_safetensors(FIXTURES "/nn_parametrize.safetensors");
    ok(fx != NULL, "read nn_parametrize.safetensors");
    if (!fx) return tap_done();
    test_dirac_sparse();
    test_weight_norm();
    test_spectral_norm();
    test_remove_and_errors();
    ag_state_dict_free(fx);
    ok(ag_live_tensors() == 0, "no tensor left alive (%lld)", (long long)ag_live_tensors());
    return tap_done();
}

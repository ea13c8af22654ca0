/*
 * Flat parameter buffers: ag_flatten_parameters keeps values, handles and
 * training results unchanged, backward and zero_grad work in place on the flat
 * gradient, one all-reduce on the flat gradient of two replicas gives the
 * full-batch gradient, versions are shared; parameters_to_vector and
 * vector_to_parameters; the errors.
 */
#include <string.h>
#include "agrad/agrad.h"
#include "tap.h"
#include "failing_alloc.h"

/* An MLP 4 -> 8 -> 3 in float64, initialised from seed. */
static ag_module *mlp(uint64_t seed) {
    ag_manual_seed(seed);
    ag_module *layers[3] = {ag_nn_linear(4, 8, true), ag_nn_tanh(), ag_nn_linear(8, 3, true)};
    ag_module *m = ag_nn_sequential(3, layers);
    ag_module_to_dtype(m, AG_F64);
    return m;
}

/* mse(model(x), y) for rows [row0, row0 + rows) of x and y. */
static ag_tensor *loss_on(ag_module *m, ag_tensor *x, ag_tensor *y, int64_t row0, int64_t rows) {
    ag_tensor *xb = ag_narrow(x, 0, row0, rows), *yb = ag_narrow(y, 0, row0, rows);
    return ag_mse_loss(ag_module_forward(m, xb), yb, NULL);
}

/* Largest |a - b| over two tensors of one shape. */
static double max_diff(ag_tensor *a, ag_tensor *b) {
    ag_scope_begin();
    double d = a && b ? ag_item(ag_max(ag_abs(ag_sub(a, b)))) : 1e300;
    ag_scope_end();
    return d;
}

/* Largest difference between the parameters (or gradients) of two models. */
static double model_diff(ag_module *a, ag_module *b, bool grads) {
    ag_tensor *pa[8], *pb[8];
    int n = ag_module_parameters(a, pa, 8);
    ag_module_parameters(b, pb, 8);
    double d = 0;
    for (int i = 0; i < n; i++) {
        double di = grads ? max_diff(ag_grad(pa[i]), ag_grad(pb[i])) : max_diff(pa[i], pb[i]);
        if (di > d) d = di;
    }
    return d;
}

static void test_values_and_training(ag_tensor *x, ag_tensor *y) {
    ag_module *plain = mlp(7), *flat = mlp(7);
    ag_tensor *p[8];
    int n = ag_module_parameters(flat, p, 8);
    ag_tensor *before = ag_parameters_to_vector(p, n);
    ag_tensor *fp = NULL, *fg = NULL;
    ok(ag_flatten_parameters(p, n, &fp, &fg) == AG_OK, "flatten_parameters succeeds");
    ok(fp && ag_ndim(fp) == 1 && ag_numel(fp) == 4 * 8 + 8 + 8 * 3 + 3, "flat params hold all %d elements", 67);
    ok(fg && ag_numel(fg) == ag_numel(fp) && ag_dtype_of(fg) == AG_F64, "flat grads have the same layout");
    ok(max_diff(fp, before) == 0, "flat params equal parameters_to_vector before flattening");
    ok(model_diff(plain, flat, false) == 0, "parameters keep their values");
    ag_tensor *g0 = ag_grad(p[0]);
    ag_scope_begin();
    ok(g0 && ag_item(ag_sum(g0)) == 0, "each parameter has a zero gradient view");
    ag_scope_end();

    ag_sgd_options o = ag_sgd_defaults();
    o.lr = 0.1, o.momentum = 0.9;
    ag_tensor *pp[8];
    ag_module_parameters(plain, pp, 8);
    ag_optimizer *oa = ag_sgd_new(pp, n, &o), *ob = ag_sgd_new(p, n, &o);
    double worst = 0;
    for (int step = 0; step < 5; step++) {
        ag_scope_begin();
        ag_optimizer_zero_grad(oa);
        ag_optimizer_zero_grad(ob);
        ag_backward(loss_on(plain, x, y, 0, 16));
        ag_backward(loss_on(flat, x, y, 0, 16));
        double d = model_diff(plain, flat, true);
        if (d > worst) worst = d;
        ag_optimizer_step(oa);
        ag_optimizer_step(ob);
        ag_scope_end();
    }
    ok(worst == 0, "gradients of the flattened model equal the plain model's over 5 steps (max diff %g)", worst);
    ok(model_diff(plain, flat, false) == 0, "SGD with momentum gives identical parameters after 5 steps");
    ok(ag_grad(p[0]) == g0, "the gradient view survives zero_grad");

    ag_scope_begin();
    ag_tensor *pieces[8];
    for (int i = 0; i < n; i++) pieces[i] = ag_reshape(ag_grad(p[i]), AG_SHAPE(-1));
    ok(max_diff(fg, ag_cat(pieces, n, 0)) == 0, "flat grads are the parameters' gradients, in order");
    ag_optimizer_zero_grad(ob);
    ok(ag_item(ag_max(ag_abs(fg))) == 0, "zero_grad zeros the flat gradient in place");
    ag_backward(loss_on(flat, x, y, 0, 16));
    ag_tensor *once = ag_clone(fg);
    ag_backward(loss_on(flat, x, y, 0, 16));
    ok(max_diff(fg, ag_mul_scalar(once, 2.0)) < 1e-15, "a second backward pass accumulates into the flat gradient");

    ag_fill_(fp, 0.5);
    ok(ag_item(ag_mean(p[2])) == 0.5, "writing the flat params writes the parameters");
    ag_scope_end();

    ag_optimizer_free(oa);
    ag_optimizer_free(ob);
    ag_release(before);
    ag_release(fp);
    ag_release(fg);
    ag_module_free(plain);
    ag_scope_begin();
    ok(ag_numel(p[0]) == 32 && ag_item(ag_sum(p[1])) == 4.0, "parameters outlive the returned flat tensors");
    ag_scope_end();
    ag_module_free(flat);
}

/* Data parallelism in miniature: two replicas, each on half the batch; one
 * all-reduce (mean) of their flat gradients gives the full batch's gradient. */
static void test_all_reduce(ag_tensor *x, ag_tensor *y) {
    ag_module *full = mlp(3), *r0 = mlp(3), *r1 = mlp(3);
    ag_tensor *p0[8], *p1[8], *g0 = NULL, *g1 = NULL;
    int n = ag_module_parameters(r0, p0, 8);
    ag_module_parameters(r1, p1, 8);
    ag_flatten_parameters(p0, n, NULL, &g0);
    ag_flatten_parameters(p1, n, NULL, &g1);
    ag_scope_begin();
    ag_backward(loss_on(full, x, y, 0, 16));
    ag_backward(loss_on(r0, x, y, 0, 8));
    ag_backward(loss_on(r1, x, y, 8, 8));
    ag_add_(g0, g1, 1.0); /* the all-reduce: sum, then average */
    ag_mul_scalar_(g0, 0.5);
    ag_copy_(g1, g0);
    double d0 = model_diff(full, r0, true), d1 = model_diff(full, r1, true);
    ok(d0 < 1e-15 && d1 < 1e-15, "averaged flat gradients equal the full-batch gradient (%g, %g)", d0, d1);
    ag_scope_end();
    ag_release(g0);
    ag_release(g1);
    ag_module_free(full);
    ag_module_free(r0);
    ag_module_free(r1);
}

static void test_versions(ag_tensor *x, ag_tensor *y) {
    ag_module *m = mlp(5);
    ag_tensor *p[8], *fp = NULL;
    int n = ag_module_parameters(m, p, 8);
    ag_flatten_parameters(p, n, &fp, NULL);
    ag_scope_begin();
    ag_tensor *loss = loss_on(m, x, y, 0, 4);
    ag_mul_scalar_(fp, 1.0); /* changes every parameter in place, behind the graph's back */
    ok(ag_backward(loss) == AG_ERR_GRAPH && strstr(ag_last_error(), "modified by an in-place operation"),
       "an in-place write through the flat params is caught by backward: %s", ag_last_error());
    ag_scope_end();

    /* A write through ag_data is invisible to the graph until ag_increment_version says so. */
    ag_module_zero_grad(m);
    ag_scope_begin();
    loss = loss_on(m, x, y, 0, 4);
    uint32_t before = ag_version(p[0]);
    ((double *)ag_data(fp))[0] += 1.0;
    ok(ag_version(p[0]) == before, "a write through ag_data leaves the version as it was (%u)", before);
    ag_status bumped = ag_increment_version(fp);
    uint32_t after = ag_version(p[0]);
    ok(bumped == AG_OK && after == before + 1,
       "ag_increment_version bumps it, for the parameters sharing the flat buffer too (%u to %u)", before, after);
    ok(ag_backward(loss) == AG_ERR_GRAPH && strstr(ag_last_error(), "modified by an in-place operation"),
       "and backward through the graph that saved the old values fails: %s", ag_last_error());
    ok(ag_increment_version(NULL) == AG_ERR_ARG, "ag_increment_version(NULL): AG_ERR_ARG");
    ag_scope_end();

    /* Replacing a flattened parameter's tensor would take it out of the buffer. */
    ag_module *first = ag_module_child(m, 0, NULL);
    ag_tensor *w = ag_module_get_parameter(first, "weight");
    ag_tensor *fresh = ag_zeros_like(w);
    ok(ag_module_set_tensor(first, "weight", fresh) == AG_ERR_ARG && strstr(ag_last_error(), "lives in a flat parameter buffer") &&
           ag_module_get_parameter(first, "weight") == w,
       "module_set_tensor of a flattened parameter is refused, the parameter kept: %s", ag_last_error());
    ag_release(fresh);
    ag_release(fp);
    ag_module_free(m);
}

static void test_vectors(void) {
    ag_module *m = mlp(9);
    ag_tensor *p[8];
    int n = ag_module_parameters(m, p, 8);
    ag_scope_begin();
    ag_tensor *v = ag_parameters_to_vector(p, n);
    ok(v && ag_numel(v) == 67 && ag_requires_grad(v), "parameters_to_vector: 67 elements, differentiable");
    ag_backward(ag_sum(ag_mul(v, v)));
    ok(max_diff(ag_grad(p[0]), ag_mul_scalar(p[0], 2.0)) == 0, "its gradient flows back to the parameters");
    ag_tensor *w = ag_mul_scalar(ag_detach(v), 2.0);
    ok(ag_vector_to_parameters(w, p, n) == AG_OK, "vector_to_parameters succeeds");
    ok(max_diff(ag_parameters_to_vector(p, n), w) == 0, "vector_to_parameters writes the slices in order");
    ok(ag_vector_to_parameters(ag_narrow(w, 0, 0, 66), p, n) == AG_ERR_SHAPE &&
           strstr(ag_last_error(), "vector_to_parameters: the vector has 66 elements, the 4 parameters 67"),
       "length mismatch: %s", ag_last_error());
    ok(ag_vector_to_parameters(ag_reshape(w, AG_SHAPE(67, 1)), p, n) == AG_ERR_SHAPE, "a 2-D vector is refused");
    ok(ag_parameters_to_vector(p, 0) == NULL && ag_last_status() == AG_ERR_ARG, "parameters_to_vector of none");
    ag_scope_end();
    ag_module_free(m);
}

static void test_errors(void) {
    ag_tensor *a = ag_requires_grad_(ag_randn(AG_SHAPE(2, 3), AG_F64), true);
    ag_tensor *b = ag_requires_grad_(ag_randn(AG_SHAPE(3), AG_F32), true);
    ag_tensor *two[2] = {a, a}, *mixed[2] = {a, b}, *null[1] = {NULL};
    ok(ag_flatten_parameters(two, 0, NULL, NULL) == AG_ERR_ARG, "no parameters: %s", ag_last_error());
    ok(ag_flatten_parameters(null, 1, NULL, NULL) == AG_ERR_ARG, "a NULL parameter: %s", ag_last_error());
    ok(ag_flatten_parameters(mixed, 2, NULL, NULL) == AG_ERR_DTYPE &&
           strstr(ag_last_error(), "flatten_parameters: parameter 1 (float32 [3]) has a different dtype"),
       "mixed dtypes: %s", ag_last_error());
    ok(ag_flatten_parameters(two, 2, NULL, NULL) == AG_ERR_ARG &&
           strstr(ag_last_error(), "flatten_parameters: parameters 0 and 1 share their data (listed twice?)"),
       "a parameter listed twice: %s", ag_last_error());
    ok(ag_flatten_parameters(two, 1, NULL, NULL) == AG_OK, "one of them alone is fine");
    ok(ag_flatten_parameters(two, 1, NULL, NULL) == AG_ERR_ARG &&
           strstr(ag_last_error(), "parameter 0 (float64 [2, 3]) is flattened already"),
       "flattening again is refused: %s", ag_last_error());

    ag_tensor *c = ag_requires_grad_(ag_randn(AG_SHAPE(2, 3), AG_F64), true), *fc = NULL;
    ag_tensor *view = ag_transpose(c, 0, 1);
    ok(ag_flatten_parameters(&c, 1, &fc, NULL) == AG_OK, "a parameter with a live view can be flattened");
    ag_fill_(fc, 2.0);
    ag_scope_begin();
    ok(ag_item(ag_sum(view)) == 12.0, "and the view follows it into the flat buffer");
    ag_scope_end();
    ag_tensor *part = ag_narrow(fc, 0, 1, 2);
    ok(ag_flatten_parameters(&part, 1, NULL, NULL) == AG_ERR_ARG && strstr(ag_last_error(), "does not own its whole storage"),
       "a view of a larger tensor: %s", ag_last_error());
    ag_release(part);
    ag_release(fc);
    ag_tensor *d = ag_mul_scalar(c, 2.0);
    ok(ag_flatten_parameters(&d, 1, NULL, NULL) == AG_ERR_ARG && strstr(ag_last_error(), "is not a leaf"),
       "a non-leaf: %s", ag_last_error());
    ag_tensor *i = ag_zeros(AG_SHAPE(2), AG_I64);
    ok(ag_flatten_parameters(&i, 1, NULL, NULL) == AG_ERR_DTYPE, "int64 parameters: %s", ag_last_error());
    ag_release(i);
    ag_release(d);
    ag_release(view);
    ag_release(c);
    ag_release(a);
    ag_release(b);
}

/* Failing each allocation of a flatten in turn: AG_ERR_NOMEM, the model unchanged
 * (a later flatten succeeds), nothing leaked. */
static void test_out_of_memory(void) {
    ag_module *m = mlp(11);
    ag_tensor *p[8], *before = NULL;
    int n = ag_module_parameters(m, p, 8);
    ag_no_grad_begin();
    before = ag_parameters_to_vector(p, n);
    ag_no_grad_end();
    int failures = 0, clean = 0;
    ag_set_allocator(failing_alloc, NULL);
    for (fail_at = 1; fail_at < 100; fail_at++) {
        alloc_calls = 0;
        long blocks = live_blocks;
        ag_tensor *fp = NULL, *fg = NULL;
        ag_status st = ag_flatten_parameters(p, n, &fp, &fg);
        if (st == AG_OK) {
            ag_release(fp);
            ag_release(fg);
            break;
        }
        failures++;
        clean += st == AG_ERR_NOMEM && live_blocks == blocks && !fp && !fg;
    }
    fail_at = -1;
    ag_set_allocator(NULL, NULL);
    ok(failures > 0 && clean == failures, "each of the %d allocations of a flatten failing gives AG_ERR_NOMEM and leaks nothing",
       failures);
    ag_scope_begin();
    ok(max_diff(ag_parameters_to_vector(p, n), before) == 0, "and the parameters keep their values through it all");
    ag_scope_end();
    ag_release(before);
    ag_module_free(m);
}

int main(int argc, char **argv) {
    int only = argc > 1 ? argv[1][0] - '0' : 0;
    ag_manual_seed(1);
    ag_tensor *x = ag_randn(AG_SHAPE(16, 4), AG_F64), *y = ag_randn(AG_SHAPE(16, 3), AG_F64);
    if (!only || only == 1) test_values_and_training(x, y);
    if (!only || only == 2) test_all_reduce(x, y);
    if (!only || only == 3) test_versions(x, y);
    if (!only || only == 4) test_vectors();
    if (!only || only == 5) test_errors();
    if (!only || only == 6) test_out_of_memory();
    ag_release(x);
    ag_release(y);
    ok(ag_live_tensors() == 0, "no tensor leaked");
    return tap_done();
}

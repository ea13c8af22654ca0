/*
 * Autograd semantics: accumulation, retain_grad, no_grad, detach, errors,
 * version counters, the textbook example and graph export.
 */
#include <stdlib.h>
#include <string.h>
#include "agrad/agrad.h"
#include "core/internal.h"
#include "tap.h"

/* f(x1, x2) = x1·x2 + exp(x1·x2) − sin(x2) */
static void test_textbook(void) {
    double pts[3][2] = {{1.0, 2.0}, {-0.5, 0.3}, {0.0, 1.5}};
    for (int i = 0; i < 3; i++) {
        ag_scope_begin();
        double a = pts[i][0], b = pts[i][1];
        ag_tensor *x1 = ag_requires_grad_(ag_scalar(a, AG_F64), true);
        ag_tensor *x2 = ag_requires_grad_(ag_scalar(b, AG_F64), true);
        ag_tensor *p = ag_mul(x1, x2);
        ag_tensor *f = ag_sub(ag_add(p, ag_exp(p)), ag_sin(x2));
        ok(ag_backward(f) == AG_OK, "backward of the textbook function");
        double v = a * b + exp(a * b) - sin(b);
        close_to(ag_item(f), v, 1e-14, "f(%g, %g) = %.10f", a, b, v);
        close_to(ag_item(ag_grad(x1)), b + b * exp(a * b), 1e-14, "df/dx1 = x2 + x2·exp(x1·x2)");
        close_to(ag_item(ag_grad(x2)), a + a * exp(a * b) - cos(b), 1e-14, "df/dx2 = x1 + x1·exp(x1·x2) − cos(x2)");
        ag_scope_end();
    }
}

static void test_accumulate(void) {
    ag_scope_begin();
    ag_tensor *w = ag_requires_grad_(ag_full(AG_SHAPE(3), 2, AG_F32), true);
    ag_backward(ag_sum(ag_mul(w, w)));
    ag_backward(ag_sum(ag_mul(w, w)));
    ok(ag_get(ag_grad(w), (int64_t[]){0}) == 8, "grad accumulates across backward calls (2 * 2w)");
    ag_zero_grad(w);
    ok(ag_grad(w) == NULL, "zero_grad sets grad to none");
    ag_tensor *x = ag_requires_grad_(ag_full(AG_SHAPE(2), 3, AG_F64), true);
    ag_backward(ag_sum(ag_add(x, x)));
    ok(ag_get(ag_grad(x), (int64_t[]){1}) == 2, "x + x gives gradient 2");
    ag_scope_end();
}

static void test_retain_and_modes(void) {
    ag_scope_begin();
    ag_tensor *x = ag_requires_grad_(ag_full(AG_SHAPE(2), 3, AG_F64), true);
    ag_tensor *h = ag_retain_grad(ag_mul_scalar(x, 2));
    ag_tensor *y = ag_sum(ag_square(h));
    ok(!ag_is_leaf(h) && ag_is_leaf(x), "leaf and non-leaf");
    ok(strcmp(ag_grad_fn_name(y), "SumBackward1") == 0, "grad_fn name");
    ag_backward(y);
    ok(ag_grad(h) && ag_get(ag_grad(h), (int64_t[]){0}) == 12, "retain_grad keeps d/dh = 2h = 12");
    ok(ag_get(ag_grad(x), (int64_t[]){0}) == 24, "dx = 24");
    ag_no_grad_begin();
    ag_no_grad_begin();
    ag_tensor *z = ag_mul(x, x);
    ag_no_grad_end();
    ok(!ag_requires_grad(z) && !ag_is_grad_enabled(), "nested no_grad records nothing");
    ag_no_grad_end();
    ok(ag_is_grad_enabled(), "grad mode restored");
    ag_tensor *d = ag_detach(ag_mul(x, x));
    ok(!ag_requires_grad(d) && ag_is_leaf(d), "detach cuts the graph");
    ag_scope_end();
}

/* ag_backward_ex hands grad_out's data to the adjoints without copying it when no hook or user-defined
 * function can see it: no .grad may alias it (mutating grad_out afterwards changes no gradient), and
 * backward writes nothing into it (x used twice adds two gradients into x's .grad, not into grad_out). */
static bool same_values(const ag_tensor *a, const ag_tensor *b) {
    int64_t n = ag_numel(a);
    if (!b || ag_numel(b) != n) return false;
    double *u = malloc(sizeof(double) * (size_t)(2 * n + 1)), *v = u + n;
    bool same = !ag_copy_to(a, u, n, AG_F64) && !ag_copy_to(b, v, n, AG_F64) && !memcmp(u, v, sizeof(double) * (size_t)n);
    free(u);
    return same;
}

static void test_borrowed_grad_out(void) {
    ag_scope_begin();
    const int64_t n = 1000;
    ag_tensor *x = ag_requires_grad_(ag_randn(AG_SHAPE(n), AG_F32), true);
    ag_tensor *w = ag_requires_grad_(ag_randn(AG_SHAPE(n), AG_F32), true);
    ag_tensor *g = ag_randn(AG_SHAPE(n), AG_F32), *g0 = ag_clone(g);
    ag_tensor *y = ag_add(x, w); /* dx = dw = dy: the adjoint passes dy on as both gradients */
    ag_retain_grad(y);
    ag_tensor *u = ag_add(w, w), *v = ag_mul_scalar(ag_add(x, x), 1); /* w twice; x twice under a node */
    ok(ag_backward_ex(y, g, false) == AG_OK && ag_backward_ex(u, g, false) == AG_OK && ag_backward_ex(v, g, false) == AG_OK,
       "backward with grad_out through add(x, w), add(w, w), add(x, x)·1");
    ok(same_values(g, g0), "backward wrote nothing into grad_out");
    ag_tensor *gx = ag_clone(ag_grad(x)), *gw = ag_clone(ag_grad(w)), *gy = ag_clone(ag_grad(y));
    ok(same_values(gy, g0) && same_values(gx, ag_mul_scalar(g0, 3)) && same_values(gw, ag_mul_scalar(g0, 3)),
       "the gradients: y.grad = g, x.grad = w.grad = 3g");
    ag_fill_(g, 5);
    ok(same_values(ag_grad(x), gx) && same_values(ag_grad(w), gw) && same_values(ag_grad(y), gy),
       "filling grad_out afterwards changes no .grad (none aliases it)");
    ag_tensor *z = ag_add(x, w);
    ag_zero_grad(x);
    ok(ag_backward_ex(z, g, false) == AG_OK && ag_fill_(g, 6) == g && ag_get(ag_grad(x), (int64_t[]){0}) == 5,
       "the first gradient a leaf gets from a borrowed grad_out is a copy too");
    ag_scope_end();
}

/* A view's or add's adjoint hands its incoming gradient on to a leaf's .grad without a copy when the engine
 * alone holds that gradient (ag__accumulate_last): each .grad is still a tensor of its own, so that writing
 * one changes no other gradient, and later passes add into it. */
static void test_passed_gradient(void) {
    ag_scope_begin();
    const int64_t n = 600;
    ag_tensor *x = ag_requires_grad_(ag_randn(AG_SHAPE(n), AG_F32), true);
    ag_tensor *w = ag_requires_grad_(ag_randn(AG_SHAPE(n), AG_F32), true), *c = ag_randn(AG_SHAPE(n), AG_F32);
    ag_tensor *g = ag_randn(AG_SHAPE(n), AG_F32), *g0 = ag_clone(g);
    ag_tensor *h = ag_retain_grad(ag_reshape(x, AG_SHAPE(20, 30))); /* dx: a view of dh, which h keeps a copy of */
    ok(ag_backward_ex(ag_reshape(ag_mul_scalar(h, 2), AG_SHAPE(n)), g, false) == AG_OK &&
       same_values(ag_grad(x), ag_mul_scalar(g0, 2)) && same_values(ag_grad(h), ag_mul_scalar(g0, 2)),
       "x.grad = h.grad = 2g through reshape, mul, reshape");
    ag_fill_(ag_grad(h), 9);
    ok(same_values(ag_grad(x), ag_mul_scalar(g0, 2)), "filling h.grad leaves x.grad");
    ag_tensor *z = ag_mul_scalar(ag_add(x, w), 1); /* dx added into x.grad; dw: the same dy, adopted */
    ok(ag_backward_ex(z, g, false) == AG_OK && same_values(ag_grad(x), ag_mul_scalar(g0, 3)) &&
       same_values(ag_grad(w), g0), "add(x, w): x.grad = 3g, w.grad = g");
    ag_fill_(ag_grad(w), 5);
    ok(same_values(ag_grad(x), ag_mul_scalar(g0, 3)) && same_values(g, g0), "filling w.grad leaves x.grad and g");
    ag_zero_grad(w);
    ok(ag_backward_ex(ag_mul_scalar(ag_sub(w, c), 1), g, false) == AG_OK &&
       ag_backward_ex(ag_mul_scalar(ag_unsqueeze(w, 0), 1), ag_unsqueeze(g, 0), false) == AG_OK &&
       same_values(ag_grad(w), ag_mul_scalar(g0, 2)), "sub(w, c) then unsqueeze(w): w.grad = 2g, added into");
    ag_tensor *v = ag_requires_grad_(ag_randn(AG_SHAPE(n), AG_F32), true);
    ok(ag_backward_ex(ag_mul_scalar(ag_add(v, v), 1), g, false) == AG_OK && same_values(ag_grad(v), ag_mul_scalar(g0, 2)),
       "add(v, v): v.grad = 2g");
    ok(same_values(g, g0) && same_values(ag_grad(h), ag_full(AG_SHAPE(20, 30), 9, AG_F32)),
       "g and h.grad unchanged by the passes that added into x.grad");
    ag_scope_end();
}

/* A leaf's .grad copied whole from the caller's grad_out through a view's adjoint (reshape, unsqueeze):
 * from AG_COPY_MOVSB_MIN bytes a thread the copy is `rep movsb` (core/copy_bytes.h), below it memcpy;
 * each .grad holds grad_out's bytes exactly, in a block of its own, and a second pass adds into it.
 * Sizes about the threshold, on one thread (one run) and two (runs of half each). */
static void test_large_grad_copies(void) {
    const int64_t sizes[] = {262143, 262144, 262145, 444 * 592, 655361}; /* float32: 1 MiB - 4 bytes to 2.5 MiB */
    const int old = ag_get_num_threads();
    for (int threads = 1; threads <= 2; threads++) {
        ag_set_num_threads(threads);
        for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
            ag_scope_begin();
            const int64_t n = sizes[k];
            ag_tensor *x = ag_requires_grad_(ag_randn(AG_SHAPE(n), AG_F32), true), *g = ag_randn(AG_SHAPE(n, 1), AG_F32);
            ok(ag_backward_ex(ag_reshape(x, AG_SHAPE(n, 1)), g, false) == AG_OK && ag_grad(x) &&
               memcmp(ag_data(ag_grad(x)), ag_data(g), (size_t)n * 4) == 0 && ag_data(ag_grad(x)) != ag_data(g),
               "%d thread(s), %lld floats: x.grad holds grad_out's bytes in a block of its own", threads, (long long)n);
            ok(ag_backward_ex(ag_unsqueeze(x, 1), g, false) == AG_OK && same_values(ag_grad(x), ag_mul_scalar(g, 2)),
               "%d thread(s), %lld floats: a second pass adds into it", threads, (long long)n);
            ag_scope_end();
        }
    }
    ag_set_num_threads(old);
}

static void test_errors(void) {
    ag_scope_begin();
    ag_tensor *x = ag_requires_grad_(ag_ones(AG_SHAPE(3), AG_F32), true);
    ag_tensor *y = ag_mul_scalar(x, 2);
    ok(ag_backward(y) == AG_ERR_GRAPH && strstr(ag_last_error(), "one-element"), "non-scalar backward: %s",
       ag_last_error());
    ag_tensor *g = ag_ones(AG_SHAPE(3), AG_F32);
    ok(ag_backward_ex(y, g, false) == AG_OK && ag_get(ag_grad(x), (int64_t[]){0}) == 2, "backward with grad_out");
    ok(ag_backward_ex(y, g, false) == AG_ERR_GRAPH && strstr(ag_last_error(), "second time"), "backward twice: %s",
       ag_last_error());
    ag_tensor *l = ag_sum(ag_mul_scalar(x, 3));
    ok(ag_backward_ex(l, NULL, true) == AG_OK && ag_backward(l) == AG_OK, "retain_graph allows a second backward");

    /* a saved tensor modified in place */
    ag_tensor *a = ag_requires_grad_(ag_ones(AG_SHAPE(2), AG_F64), true);
    ag_tensor *b = ag_ones(AG_SHAPE(2), AG_F64);
    ag_tensor *m = ag_sum(ag_mul(a, b));
    ag_add_scalar_(b, 1);
    ok(ag_backward(m) == AG_ERR_GRAPH && strstr(ag_last_error(), "in-place") && strstr(ag_last_error(), "MulBackward0"),
       "version counter: %s", ag_last_error());
    ag_tensor *e = ag_exp(a);
    ag_tensor *se = ag_sum(e);
    ag_no_grad_begin();
    ag_add_scalar_(e, 1);
    ag_no_grad_end();
    ok(ag_backward(se) == AG_ERR_GRAPH && strstr(ag_last_error(), "ExpBackward0"), "output modified in place: %s",
       ag_last_error());

    /* shape errors name the op and shapes; NULL propagates */
    ag_tensor *p = ag_ones(AG_SHAPE(3, 4), AG_F32), *q = ag_ones(AG_SHAPE(5, 6), AG_F32);
    ag_tensor *r = ag_matmul(p, q);
    ok(!r && strcmp(ag_last_error(), "matmul: [3, 4] x [5, 6]: inner dimensions differ (4 vs 5)") == 0, "%s",
       ag_last_error());
    ag_tensor *chain = ag_sum(ag_relu(ag_add(r, p)));
    ok(!chain && strstr(ag_last_error(), "matmul"), "NULL propagates and keeps the first message");
    ok(ag_add(p, ag_ones(AG_SHAPE(3), AG_F32)) == NULL && strstr(ag_last_error(), "[3, 4] and [3]"), "broadcast error: %s",
       ag_last_error());
    ok(ag_add(p, ag_ones(AG_SHAPE(3, 4), AG_F64)) == NULL && ag_last_status() == AG_ERR_DTYPE, "dtype mix: %s",
       ag_last_error());
    ok(ag_backward(ag_sum(p)) == AG_ERR_GRAPH, "backward on a graph without grad: %s", ag_last_error());
    ag_clear_error();
    ok(ag_last_status() == AG_OK && ag_last_error()[0] == 0, "clear_error");
    ag_scope_end();
}

static void test_broadcast_grad(void) {
    ag_scope_begin();
    ag_tensor *x = ag_requires_grad_(ag_ones(AG_SHAPE(4, 3), AG_F64), true);
    ag_tensor *b = ag_requires_grad_(ag_arange(0, 3, 1, AG_F64), true);
    ag_backward(ag_sum(ag_mul(x, b)));
    ok(ag_ndim(ag_grad(b)) == 1 && ag_get(ag_grad(b), (int64_t[]){2}) == 4, "broadcast gradient sums to the input's shape");
    ag_scope_end();
}

static void test_graph_export(void) {
    ag_scope_begin();
    ag_tensor *x = ag_requires_grad_(ag_ones(AG_SHAPE(2), AG_F32), true);
    ag_tensor *y = ag_sum(ag_tanh(ag_mul_scalar(x, 2)));
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    ag_graph_dot(f, y);
    fclose(f);
    ok(buf && strstr(buf, "digraph") && strstr(buf, "TanhBackward0") && strstr(buf, "requires_grad"), "DOT export");
    free(buf);
    ag_scope_end();
}

static void test_deep_graph(void) {
    ag_scope_begin();
    ag_tensor *x = ag_requires_grad_(ag_ones(AG_SHAPE(1), AG_F64), true);
    ag_tensor *h = x;
    for (int i = 0; i < 100000; i++) h = ag_mul_scalar(h, 1.0);
    ok(ag_backward(ag_sum(h)) == AG_OK && ag_get(ag_grad(x), (int64_t[]){0}) == 1, "a 100000-op chain backpropagates");
    ag_scope_end();
}

/* y is NULL with an anomaly report naming op. */
static void reported(const ag_tensor *y, const char *op) {
    char want[64];
    snprintf(want, sizeof want, "anomaly: %s produced a non-finite value", op);
    ok(!y && ag_last_status() == AG_ERR_VALUE && strstr(ag_last_error(), want), "reported: %s", ag_last_error());
}

static void test_anomaly(void) {
    ag_scope_begin();
    ag_tensor *x = ag_requires_grad_(ag_from_data((double[]){1, 0, 2}, AG_SHAPE(3), AG_F64), true);
    ag_tensor *quiet = ag_log(x); /* -inf at 0 is allowed while anomaly mode is off */
    ok(quiet != NULL, "anomaly mode off: log(0) gives -inf silently");
    ag_set_detect_anomaly(true);
    int line = __LINE__ + 1;
    ag_tensor *bad = ag_log(x);
    char want[128];
    snprintf(want, sizeof want, "test_autograd.c:%d", line);
    ok(!bad && strstr(ag_last_error(), "anomaly: log") && strstr(ag_last_error(), "[3]") && strstr(ag_last_error(), want),
       "forward NaN/Inf is reported with op, shape and file:line: %s", ag_last_error());
    /* sqrt(x) is finite at 0 but its gradient 1/(2·sqrt(x)) is not */
    line = __LINE__ + 1;
    ag_tensor *s = ag_sum(ag_sqrt(x));
    snprintf(want, sizeof want, "test_autograd.c:%d", line);
    ok(s && ag_backward(s) == AG_ERR_VALUE && strstr(ag_last_error(), "SqrtBackward0") && strstr(ag_last_error(), want),
       "backward NaN/Inf is reported with the node and where it was recorded: %s", ag_last_error());
    /* reductions, matmul and a narrowing conversion make NaN or inf out of inf and finite values */
    ag_tensor *pm = ag_from_data((double[]){INFINITY, -INFINITY}, AG_SHAPE(2), AG_F64);
    ag_tensor *over = ag_full(AG_SHAPE(2, 2), 3e38, AG_F32);
    reported(ag_sum(pm), "sum");
    reported(ag_sum_dim(over, 0, false), "sum"); /* 6e38 overflows float32 */
    reported(ag_mean(pm), "mean");
    reported(ag_mean_dims(ag_zeros(AG_SHAPE(0, 2), AG_F64), 1, (int[]){0}, false), "mean"); /* 0/0 */
    reported(ag_var(pm, 1), "var");
    reported(ag_std_dims(pm, 1, (int[]){0}, 0, false), "std");
    reported(ag_prod(ag_from_data((double[]){INFINITY, 0}, AG_SHAPE(2), AG_F64)), "prod");
    reported(ag_matmul(pm, ag_ones(AG_SHAPE(2), AG_F64)), "matmul");
    reported(ag_matmul(over, over), "matmul");
    reported(ag_to_dtype(ag_scalar(1e300, AG_F64), AG_F32), "to_dtype");
    ag_clear_error();
    ok(ag_sum(ag_ones(AG_SHAPE(3), AG_F32)) && ag_matmul(over, ag_zeros(AG_SHAPE(2, 2), AG_F32)),
       "finite sums and products pass");
    ag_set_detect_anomaly(false);
    ok(!ag_is_anomaly_enabled(), "anomaly mode off again");
    ag_tensor *nan_sum = ag_sum(pm);
    ok(nan_sum && isnan(ag_item(nan_sum)), "anomaly mode off: sum([inf, -inf]) is NaN silently");
    ag_clear_error();
    ag_scope_end();

    /* outside any scope the refused output is freed at once: the report names its shape
     * from before (under ASan a read of the freed header fails here) */
    long before = ag_live_tensors();
    ag_tensor *z = ag_zeros(AG_SHAPE(2, 5), AG_F32);
    ag_set_detect_anomaly(true);
    ag_tensor *r = ag_reciprocal(z);
    ag_set_detect_anomaly(false);
    ok(!r && ag_last_status() == AG_ERR_VALUE && strstr(ag_last_error(), "output [2, 5]"),
       "outside a scope: %s", ag_last_error());
    ag_release(z);
    ok(ag_live_tensors() == before, "and the refused output is freed (%ld left)", ag_live_tensors() - before);
    ag_clear_error();
}

/* ---- gradients at the edges, as PyTorch's derivatives.yaml -------------------------------------------- */
/* Backward of y seeded with dy everywhere; x's gradient as doubles into g (n values). */
static bool grad_of(ag_tensor *y, double dy, ag_tensor *x, double *g, int64_t n) {
    return y && ag_backward_ex(y, ag_full_like(y, dy), false) == AG_OK && ag_grad(x) &&
           ag_copy_to(ag_grad(x), g, n, AG_F64) == AG_OK;
}

static void test_edge_gradients(void) {
    for (int k = 0; k < 2; k++) {
        ag_dtype dt = k ? AG_F32 : AG_F64;
        const char *dn = ag_dtype_name(dt);
        ag_scope_begin();
        double g[4] = {NAN, NAN, NAN, NAN}, gq[4] = {NAN, NAN, NAN, NAN};
        /* 0^x: dx = y·log 0 masked to 0 where x >= 0 (PyTorch's pow_backward_exponent for a 0 base) */
        ag_tensor *x = ag_requires_grad_(ag_to_dtype(ag_from_data((double[]){-1, 0, 2}, AG_SHAPE(3), AG_F64), dt), true);
        bool ran = grad_of(ag_rpow_scalar(0, x), 1, x, g, 3);
        ok(ran && g[0] == -INFINITY && g[1] == 0 && g[2] == 0, "%s d(0^x)/dx at x = -1, 0, 2 is -inf, 0, 0 (got %g, %g, %g)",
           dn, g[0], g[1], g[2]);
        /* pow's da = dy·(b·a^(b-1)): a^(b-1) underflows to 0 where dy·b alone would overflow */
        const double e = dt == AG_F32 ? 200 : 1200, huge = dt == AG_F32 ? 1e37 : 1e306;
        ag_tensor *a = ag_requires_grad_(ag_full(AG_SHAPE(1), 0.5, dt), true), *b = ag_full(AG_SHAPE(1), e, dt);
        ran = grad_of(ag_pow(a, b), huge, a, g, 1);
        ok(ran && g[0] == 0, "%s pow(0.5, %g)'s da with dy = %g is 0, not NaN (%g)", dn, e, huge, g[0]);
        ag_tensor *ps = ag_requires_grad_(ag_full(AG_SHAPE(1), 0.5, dt), true);
        ran = grad_of(ag_pow_scalar(ps, e), huge, ps, g, 1);
        ok(ran && g[0] == 0, "%s pow_scalar(0.5, %g)'s dx with dy = %g is 0, not NaN (%g)", dn, e, huge, g[0]);
        /* pow's db = dy·(y·log a): y·log a = 3e8 is finite where dy·y (1e39) is not, in float32 */
        if (dt == AG_F32) {
            ag_tensor *a2 = ag_full(AG_SHAPE(1), 1.03, dt), *b2 = ag_requires_grad_(ag_full(AG_SHAPE(1), 780, dt), true);
            double want = 1e29 * ((double)powf(1.03f, 780) * log((double)1.03f));
            ran = grad_of(ag_pow(a2, b2), 1e29, b2, g, 1);
            ok(ran && fabs(g[0] - want) < 1e-5 * want, "float32 pow(1.03, 780)'s db with dy = 1e29 is %.4g, finite (%g)", want,
               g[0]);
        }
        /* maximum / minimum: the side that lost gets 0, a tie splits dy, a NaN gives both dy */
        ag_tensor *p = ag_requires_grad_(ag_to_dtype(ag_from_data((double[]){NAN, 1, 2, 3}, AG_SHAPE(4), AG_F64), dt), true);
        ag_tensor *q = ag_requires_grad_(ag_to_dtype(ag_from_data((double[]){1, NAN, 2, 1}, AG_SHAPE(4), AG_F64), dt), true);
        ran = grad_of(ag_maximum(p, q), 1, p, g, 4) && ag_copy_to(ag_grad(q), gq, 4, AG_F64) == AG_OK;
        ok(ran && g[0] == 1 && g[1] == 1 && g[2] == 0.5 && g[3] == 1 && gq[0] == 1 && gq[1] == 1 && gq[2] == 0.5 && gq[3] == 0,
           "%s maximum([nan, 1, 2, 3], [1, nan, 2, 1]): da = [1, 1, 1/2, 1], db = [1, 1, 1/2, 0] (got [%g, %g, ..], [%g, %g, ..])",
           dn, g[0], g[1], gq[0], gq[1]);
        ag_zero_grad(p);
        ag_zero_grad(q);
        ran = grad_of(ag_minimum(p, q), 1, p, g, 4) && ag_copy_to(ag_grad(q), gq, 4, AG_F64) == AG_OK;
        ok(ran && g[0] == 1 && g[1] == 1 && g[2] == 0.5 && g[3] == 0 && gq[0] == 1 && gq[1] == 1 && gq[2] == 0.5 && gq[3] == 1,
           "%s minimum([nan, 1, 2, 3], [1, nan, 2, 1]): da = [1, 1, 1/2, 0], db = [1, 1, 1/2, 1] (got [%g, %g, ..], [%g, %g, ..])",
           dn, g[0], g[1], gq[0], gq[1]);
        ag_scope_end();
    }
}

/* The adjoint of a view lays dy back over x: -0 in dy stays -0 (as PyTorch, whose view
 * adjoints copy), elements no view reaches get 0, and a reshape's covers all of x. */
static void test_view_adjoint_copies(void) {
    ag_scope_begin();
    ag_tensor *x = ag_requires_grad_(ag_zeros(AG_SHAPE(2, 3), AG_F32), true);
    ag_tensor *dy = ag_from_data((double[]){-0.0, 1, -0.0, 2}, AG_SHAPE(2, 2), AG_F64);
    ag_tensor *y = ag_reshape(ag_narrow(ag_reshape(x, AG_SHAPE(6)), 0, 1, 4), AG_SHAPE(2, 2)); /* x's elements 1..4 */
    bool ran = ag_backward_ex(y, ag_to_dtype(dy, AG_F32), false) == AG_OK;
    float g[6] = {1, 1, 1, 1, 1, 1};
    ran = ran && ag_copy_to(ag_grad(x), g, 6, AG_F32) == AG_OK;
    ok(ran && g[0] == 0 && !signbit(g[0]) && g[1] == 0 && signbit(g[1]) && g[2] == 1 && g[3] == 0 && signbit(g[3]) &&
           g[4] == 2 && g[5] == 0 && !signbit(g[5]),
       "reshape(narrow(reshape(x)))'s adjoint: dx = [0, -0, 1, -0, 2, 0] (got %g %g %g %g %g %g)", g[0], g[1], g[2],
       g[3], g[4], g[5]);
    ag_scope_end();
}

/* Several slices of one node (a packed projection's q, k and v): the adjoints after the first
 * add dy into the node's gradient through their view, in place; overlapping slices sum. */
static void test_slices_of_one_node(void) {
    ag_scope_begin();
    ag_tensor *x = ag_requires_grad_(ag_zeros(AG_SHAPE(6), AG_F32), true), *h = ag_mul_scalar(x, 2);
    ag_tensor *wa = ag_from_data((float[]){1, 2, 3, 4}, AG_SHAPE(4), AG_F32);
    ag_tensor *wb = ag_from_data((float[]){10, 20, 30, 40}, AG_SHAPE(4), AG_F32);
    ag_tensor *loss = ag_add(ag_add(ag_sum(ag_mul(ag_narrow(h, 0, 0, 4), wa)), ag_sum(ag_mul(ag_narrow(h, 0, 2, 4), wb))),
                             ag_mul_scalar(ag_select(h, 0, 5), 3));
    float g[6] = {0};
    bool ran = ag_backward(loss) == AG_OK && ag_copy_to(ag_grad(x), g, 6, AG_F32) == AG_OK;
    ok(ran && g[0] == 2 && g[1] == 4 && g[2] == 26 && g[3] == 48 && g[4] == 60 && g[5] == 86,
       "h[0:4], h[2:6] and h[5] of one node h = 2x: dx = [2, 4, 26, 48, 60, 86] (got %g %g %g %g %g %g)", g[0], g[1],
       g[2], g[3], g[4], g[5]);
    ag_scope_end();
}

int main(void) {
    test_view_adjoint_copies();
    test_slices_of_one_node();
    test_anomaly();
    test_edge_gradients();
    test_textbook();
    test_accumulate();
    test_retain_and_modes();
    test_errors();
    test_borrowed_grad_out();
    test_passed_gradient();
    test_large_grad_copies();
    test_broadcast_grad();
    test_graph_export();
    test_deep_graph();
    ok(ag_live_tensors() == 0, "nothing leaked (%ld live tensors)", ag_live_tensors());
    return tap_done();
}

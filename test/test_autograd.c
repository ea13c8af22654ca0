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
    ag_set_detect_anomaly(false);
    ok(!ag_is_anomaly_enabled(), "anomaly mode off again");
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

int main(void) {
    test_anomaly();
    test_textbook();
    test_accumulate();
    test_retain_and_modes();
    test_errors();
    test_broadcast_grad();
    test_graph_export();
    test_deep_graph();
    ok(ag_live_tensors() == 0, "nothing leaked (%ld live tensors)", ag_live_tensors());
    return tap_done();
}

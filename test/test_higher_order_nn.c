/*
 * The second-order and tangent rules of the norm, pooling and convolution ops on
 * the variants their registry rows (test/cases/) do not reach: batch norm in
 * evaluation mode (running statistics, with and without weight and bias); conv2d with
 * "same" padding (a kernel of even size: more padding at the bottom and right than at
 * the top and left), conv1d, conv_transpose1d; the 1-d poolings (their nodes keep a
 * 2-d geometry over 1-d tensors) and average pooling without the padding in the
 * divisor.  Each is gradgradchecked in float64 (second derivatives through
 * create_graph against finite differences of first ones) and its tangent (ag_jvp)
 * compared with central differences along a random direction.  Then third
 * derivatives: the ops' create_graph adjoints are themselves ops with adjoints in
 * differentiable ops (conv2d's are conv_transpose2d and conv2d_weight, average
 * pooling's avg_pool2d_backward), so the gradient of a function, taken with
 * create_graph, is gradgradchecked in turn.  Last, those adjoints as public
 * functions (ag_conv2d_weight, ag_avg_pool2d_backward,
 * ag_adaptive_avg_pool2d_backward) give the first-order gradients, in both dtypes,
 * and refuse a grad_output of the wrong shape.
 */
#include <stdlib.h>
#include <string.h>
#include "agrad/agrad.h"
#include "tap.h"

/* Checks fn at inputs in (float64): gradgradcheck, then J·v against central differences. */
static void check(const char *what, ag_fn fn, void *ctx, ag_tensor *const *in, int n) {
    ag_scope_begin();
    ag_gradcheck_report rep;
    ag_status st = ag_gradgradcheck(fn, ctx, in, n, NULL, &rep);
    ok(st == AG_OK, "gradgradcheck %s (%lld entries, worst error %.2g)%s%s", what, (long long)rep.checked, rep.error,
       st ? ": " : "", st ? ag_last_error() : "");
    ag_tensor *v[4], *yp_in[4], *ym_in[4], *out = NULL, *jv = NULL;
    const double eps = 1e-6;
    for (int i = 0; i < n; i++) {
        v[i] = ag_randn(ag_shape_of(in[i]), AG_F64);
        yp_in[i] = ag_add(ag_detach(in[i]), ag_mul_scalar(v[i], eps));
        ym_in[i] = ag_sub(ag_detach(in[i]), ag_mul_scalar(v[i], eps));
    }
    st = ag_jvp(fn, ctx, in, n, v, &out, &jv);
    if (ok(st == AG_OK && jv, "%s has a tangent%s%s", what, st ? ": " : "", st ? ag_last_error() : "")) {
        ag_no_grad_begin();
        ag_tensor *fd = ag_div_scalar(ag_sub(fn(yp_in, n, ctx), fn(ym_in, n, ctx)), 2 * eps);
        ag_no_grad_end();
        double worst = ag_item(ag_max(ag_abs(ag_sub(jv, fd)))), scale = ag_item(ag_max(ag_abs(fd)));
        ok(worst <= 1e-5 + 1e-4 * scale, "jvp of %s matches central differences (worst %.2g, scale %.2g)", what, worst,
           scale);
    }
    ag_scope_end();
}

/* Inputs of the given shapes, N(0, 1) in float64, requiring grad. */
static void inputs(ag_tensor **in, int n, const ag_shape *shapes) {
    for (int i = 0; i < n; i++) in[i] = ag_requires_grad_(ag_randn(shapes[i], AG_F64), true);
}

/* ---- batch norm in evaluation mode -------------------------------------------------------------- */
typedef struct bn_ctx {
    ag_tensor *mean, *var;
} bn_ctx;

static ag_tensor *bn_eval(ag_tensor *const *in, int n, void *ctx) {
    const bn_ctx *c = ctx;
    return ag_batch_norm(in[0], c->mean, c->var, n > 1 ? in[1] : NULL, n > 2 ? in[2] : NULL, false, 0.1, 1e-5);
}

static void batch_norm_eval(void) {
    ag_scope_begin();
    bn_ctx c = {ag_randn(AG_SHAPE(3), AG_F64), ag_add_scalar(ag_rand(AG_SHAPE(3), AG_F64), 0.5)};
    ag_tensor *in[3];
    inputs(in, 3, (ag_shape[]){AG_SHAPE(4, 3, 2), AG_SHAPE(3), AG_SHAPE(3)});
    check("batch_norm eval, affine", bn_eval, &c, in, 3);
    check("batch_norm eval, no affine", bn_eval, &c, in, 1);
    ag_scope_end();
}

/* group_norm(layer_norm(batch_norm(x))) in training mode, without weights. */
static ag_tensor *bn_layer_group(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    ag_tensor *y = ag_batch_norm(in[0], NULL, NULL, NULL, NULL, true, 0.1, 1e-5);
    y = ag_layer_norm(y, AG_SHAPE(5), NULL, NULL, 1e-5);
    return ag_group_norm(y, 2, NULL, NULL, 1e-5);
}

/* ---- convolutions -------------------------------------------------------------------------------- */
static ag_tensor *conv_same(ag_tensor *const *in, int n, void *ctx) {
    (void)ctx;
    ag_conv_opts o = {.dilation = {1, 2}, .padding_mode = AG_PADDING_SAME};
    return ag_conv2d(in[0], in[1], n > 2 ? in[2] : NULL, &o);
}

static ag_tensor *conv1d_fn(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    ag_conv_opts o = {.stride = {2}, .padding = {1}, .groups = 2};
    return ag_conv1d(in[0], in[1], in[2], &o);
}

static ag_tensor *conv_transpose1d_fn(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    ag_conv_transpose_opts o = {.stride = {3}, .padding = {1}, .output_padding = {2}, .dilation = {2}};
    return ag_conv_transpose1d(in[0], in[1], in[2], &o);
}

static void convolutions(void) {
    ag_scope_begin();
    ag_tensor *in[3];
    inputs(in, 3, (ag_shape[]){AG_SHAPE(2, 2, 5, 4), AG_SHAPE(3, 2, 2, 2), AG_SHAPE(3)});
    check("conv2d padding=\"same\", kernel 2x2", conv_same, NULL, in, 3);
    inputs(in, 3, (ag_shape[]){AG_SHAPE(2, 4, 7), AG_SHAPE(4, 2, 3), AG_SHAPE(4)});
    check("conv1d stride 2, groups 2", conv1d_fn, NULL, in, 3);
    inputs(in, 3, (ag_shape[]){AG_SHAPE(2, 3, 4), AG_SHAPE(3, 2, 3), AG_SHAPE(2)});
    check("conv_transpose1d output_padding 2", conv_transpose1d_fn, NULL, in, 3);
    ag_scope_end();
}

/* ---- 1-d poolings, average pooling without padding in the divisor ---------------------------------------- */
static ag_tensor *max_pool1d_fn(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    return ag_max_pool1d(in[0], &(ag_pool_opts){.kernel = {3}, .stride = {2}, .padding = {1}, .ceil_mode = true}, NULL);
}

static ag_tensor *avg_pool1d_fn(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    return ag_avg_pool1d(in[0], &(ag_pool_opts){.kernel = {3}, .stride = {2}, .padding = {1}, .ceil_mode = true});
}

static ag_tensor *avg_exclude_pad(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    return ag_avg_pool2d(in[0], &(ag_pool_opts){.kernel = {3, 3}, .stride = {2, 2}, .padding = {1, 1}, .exclude_pad = true});
}

static void poolings(void) {
    ag_scope_begin();
    ag_tensor *in[1];
    inputs(in, 1, (ag_shape[]){AG_SHAPE(2, 3, 8)});
    check("max_pool1d", max_pool1d_fn, NULL, in, 1);
    check("avg_pool1d", avg_pool1d_fn, NULL, in, 1);
    inputs(in, 1, (ag_shape[]){AG_SHAPE(2, 2, 5, 6)});
    check("avg_pool2d exclude_pad", avg_exclude_pad, NULL, in, 1);
    ag_scope_end();
}

/* ---- third derivatives ------------------------------------------------------------------------------------ */
/* The gradient of Σ tanh(f(inputs)) with respect to input 0, taken with create_graph (f: ctx), with grad
 * mode on (gradgradcheck's finite differences run without it, on inputs that do not require grad: those
 * get stand-ins that do). */
static ag_tensor *gradient_of(ag_tensor *const *in, int n, void *ctx) {
    ag_fn f = *(ag_fn *)ctx;
    ag_enable_grad_begin();
    ag_tensor *x[4], *g = NULL;
    for (int i = 0; i < n; i++) x[i] = ag_requires_grad(in[i]) ? in[i] : ag_requires_grad_(ag_detach(in[i]), true);
    ag_tensor *y = ag_sum(ag_tanh(f(x, n, NULL)));
    ag_grad_opts o = {.create_graph = true};
    if (y && ag_autograd_grad(&y, 1, x, 1, NULL, &o, &g)) g = NULL;
    ag_enable_grad_end();
    return g;
}

static ag_tensor *conv2d_fn(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    return ag_conv2d(in[0], in[1], NULL, &(ag_conv_opts){.stride = {2, 1}, .padding = {1, 0}});
}

static ag_tensor *avg_pool2d_fn(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    return ag_avg_pool2d(in[0], &(ag_pool_opts){.kernel = {2, 3}, .stride = {1, 2}, .padding = {1, 1}});
}

static ag_tensor *adaptive_avg_fn(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    return ag_adaptive_avg_pool2d(in[0], 3, 2);
}

static void third_order(void) {
    ag_scope_begin();
    ag_tensor *in[2];
    ag_fn f = conv2d_fn;
    inputs(in, 2, (ag_shape[]){AG_SHAPE(1, 2, 4, 3), AG_SHAPE(2, 2, 2, 2)});
    check("third order: conv2d (dx through conv_transpose2d, dw through conv2d_weight)", gradient_of, &f, in, 2);
    f = avg_pool2d_fn;
    inputs(in, 1, (ag_shape[]){AG_SHAPE(1, 2, 4, 5)});
    check("third order: avg_pool2d (through avg_pool2d_backward)", gradient_of, &f, in, 1);
    f = adaptive_avg_fn;
    check("third order: adaptive_avg_pool2d (through adaptive_avg_pool2d_backward)", gradient_of, &f, in, 1);
    f = bn_layer_group;
    inputs(in, 1, (ag_shape[]){AG_SHAPE(3, 4, 5)});
    check("third order: batch_norm, layer_norm, group_norm", gradient_of, &f, in, 1);
    ag_scope_end();
}

/* ---- the adjoint functions ------------------------------------------------------------------------------ */
/* The largest |a - b| over the elements (a and b of one shape). */
static double max_diff(ag_tensor *a, ag_tensor *b) {
    ag_tensor *d = a && b ? ag_max(ag_abs(ag_sub(ag_to_dtype(a, AG_F64), ag_to_dtype(b, AG_F64)))) : NULL;
    return d ? ag_item(d) : INFINITY;
}

/* x.grad and w.grad of <dy, conv2d(x, w)> against conv_transpose2d / conv2d_weight of dy, and the pooling's. */
static void adjoint_functions(ag_dtype dt) {
    const char *name = ag_dtype_name(dt);
    const double tol = dt == AG_F64 ? 1e-12 : 1e-4;
    ag_scope_begin();
    ag_tensor *x = ag_requires_grad_(ag_randn(AG_SHAPE(2, 4, 6, 5), dt), true);
    ag_tensor *w = ag_requires_grad_(ag_randn(AG_SHAPE(6, 2, 3, 2), dt), true);
    ag_conv_opts o = {.stride = {2, 1}, .padding = {1, 1}, .dilation = {1, 2}, .groups = 2};
    ag_tensor *y = ag_conv2d(x, w, NULL, &o), *dy = ag_randn(ag_shape_of(y), dt);
    ag_backward_ex(y, dy, false);
    ok(max_diff(ag_conv2d_weight(x, ag_shape_of(w), dy, &o), ag_grad(w)) <= tol,
       "%s: conv2d_weight(x, w's shape, dy) is conv2d's weight gradient", name);
    ag_tensor *wrong = ag_randn(AG_SHAPE(2, 6, 3, 3), dt);
    ok(!ag_conv2d_weight(x, ag_shape_of(w), wrong, &o) && ag_last_status() == AG_ERR_SHAPE,
       "%s: conv2d_weight refuses a grad_output not of conv2d's output shape: %s", name, ag_last_error());
    ok(!ag_conv2d_weight(x, AG_SHAPE(6, 3, 3, 2), dy, &o) && ag_last_status() == AG_ERR_SHAPE,
       "%s: conv2d_weight refuses a weight shape that does not fit x: %s", name, ag_last_error());

    ag_pool_opts po = {.kernel = {3, 2}, .stride = {2, 1}, .padding = {1, 1}, .ceil_mode = true};
    ag_tensor *xp = ag_requires_grad_(ag_randn(AG_SHAPE(2, 3, 7, 4), dt), true);
    y = ag_avg_pool2d(xp, &po), dy = ag_randn(ag_shape_of(y), dt);
    ag_backward_ex(y, dy, false);
    ok(max_diff(ag_avg_pool2d_backward(dy, ag_shape_of(xp), &po), ag_grad(xp)) <= tol,
       "%s: avg_pool2d_backward(dy, x's shape) is avg_pool2d's gradient", name);
    ok(!ag_avg_pool2d_backward(wrong, ag_shape_of(xp), &po) && ag_last_status() == AG_ERR_SHAPE,
       "%s: avg_pool2d_backward refuses a grad_output not of the output's shape: %s", name, ag_last_error());
    ag_zero_grad(xp);
    y = ag_adaptive_avg_pool2d(xp, 3, 5), dy = ag_randn(ag_shape_of(y), dt);
    ag_backward_ex(y, dy, false);
    ok(max_diff(ag_adaptive_avg_pool2d_backward(dy, ag_shape_of(xp)), ag_grad(xp)) <= tol,
       "%s: adaptive_avg_pool2d_backward(dy, x's shape) is adaptive_avg_pool2d's gradient", name);
    ok(!ag_adaptive_avg_pool2d_backward(dy, AG_SHAPE(2, 3, 0, 4)) && ag_last_status() == AG_ERR_SHAPE,
       "%s: adaptive_avg_pool2d_backward refuses an input with an empty plane: %s", name, ag_last_error());
    ok(!ag_adaptive_avg_pool2d_backward(ag_randn(AG_SHAPE(3, 5), dt), ag_shape_of(xp)) &&
           ag_last_status() == AG_ERR_SHAPE,
       "%s: adaptive_avg_pool2d_backward refuses a grad_output of other dims: %s", name, ag_last_error());
    ag_scope_end();
}

int main(void) {
    ag_manual_seed(7);
    batch_norm_eval();
    convolutions();
    poolings();
    third_order();
    adjoint_functions(AG_F64);
    adjoint_functions(AG_F32);
    ok(ag_live_tensors() == 0, "no tensor outlives the checks (%ld live)", ag_live_tensors());
    return tap_done();
}

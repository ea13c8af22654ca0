/*
 * User-defined differentiable functions (ag_function_type, torch.autograd.Function):
 * values and gradients against the built-in ops, gradcheck, several outputs,
 * inputs and outputs without gradients, the saved-tensor version check, bad
 * gradients and failing callbacks, no-grad mode, retain_graph, anomaly mode and
 * graph printing.  Every check ends with no tensor alive.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "agrad/agrad.h"
#include "tap.h"

/* max |a - b| over two tensors of one shape (as float64). */
static double max_diff(ag_tensor *a, ag_tensor *b) {
    if (!a || !b || ag_numel(a) != ag_numel(b)) return INFINITY;
    ag_scope_begin();
    ag_tensor *x = ag_contiguous(ag_to_dtype(a, AG_F64)), *y = ag_contiguous(ag_to_dtype(b, AG_F64));
    const double *p = ag_data(x), *q = ag_data(y);
    double m = 0;
    for (int64_t i = 0; i < ag_numel(x); i++) m = fmax(m, fabs(p[i] - q[i]));
    ag_scope_end();
    return m;
}

static bool has(const char *text, const char *part) { return text && strstr(text, part) != NULL; }

/* ---- exp: saves its output ------------------------------------------------------------------- */
static int exp_backward_calls;

static ag_status exp_forward(ag_ctx *ctx, ag_tensor *const *in, int nin, ag_tensor **out, int nout) {
    (void)nin, (void)nout;
    out[0] = ag_exp(in[0]);
    return out[0] ? ag_ctx_save_for_backward(ctx, out, 1) : ag_last_status();
}

static ag_status exp_backward(ag_ctx *ctx, ag_tensor *const *gout, int nout, ag_tensor **gin, int nin) {
    (void)nout, (void)nin;
    exp_backward_calls++;
    if (ag_ctx_needs_input_grad(ctx, 0)) gin[0] = ag_mul(gout[0], ag_ctx_saved(ctx, 0)); /* dx = dy·y */
    return gin[0] ? AG_OK : ag_last_status();
}

static const ag_function_type my_exp = {.name = "MyExp", .forward = exp_forward, .backward = exp_backward};

static ag_tensor *call_exp(ag_tensor *const *in, int n, void *ctx) {
    (void)ctx;
    return ag_function_apply1(&my_exp, in, n, NULL);
}

static void test_exp(void) {
    ag_scope_begin();
    ag_manual_seed(1);
    ag_tensor *x = ag_randn(AG_SHAPE(3, 4), AG_F64), *x2 = ag_requires_grad_(ag_clone(x), true);
    ag_requires_grad_(x, true);
    ag_tensor *y = ag_function_apply1(&my_exp, &x, 1, NULL), *ref = ag_exp(x2);
    ok(y && max_diff(y, ref) == 0, "MyExp: the values are exp's");
    ok(y && has(ag_grad_fn_name(y), "MyExpBackward") && ag_requires_grad(y) && !ag_is_leaf(y),
       "MyExp: the output's grad_fn is MyExpBackward (%s)", y ? ag_grad_fn_name(y) : "NULL");
    exp_backward_calls = 0;
    ag_status st = ag_backward(ag_sum(ag_mul(y, y)));
    ag_backward(ag_sum(ag_mul(ref, ref)));
    ok(st == AG_OK && exp_backward_calls == 1 && max_diff(ag_grad(x), ag_grad(x2)) < 1e-12,
       "MyExp: the gradient is exp's, one call of backward (%s)", ag_last_error());

    ag_tensor *xs = ag_requires_grad_(ag_randn(AG_SHAPE(2, 3), AG_F64), true);
    ag_gradcheck_report rep = {0};
    ag_status gc = ag_gradcheck(call_exp, NULL, &xs, 1, NULL, &rep);
    ok(gc == AG_OK && rep.checked == 36,
       "MyExp passes gradcheck in float64 (%lld entries)", (long long)rep.checked);

    ag_tensor *xf = ag_requires_grad_(ag_randn(AG_SHAPE(5), AG_F32), true);
    ag_tensor *yf = ag_function_apply1(&my_exp, &xf, 1, NULL);
    ok(yf && ag_dtype_of(yf) == AG_F32 && ag_backward(ag_sum(yf)) == AG_OK && max_diff(ag_grad(xf), yf) < 1e-6,
       "MyExp in float32: dx = exp(x)");
    ag_scope_end();
}

/* ---- logsumexp over a dim, stable ----------------------------------------------------------------- */
static ag_status lse_forward(ag_ctx *ctx, ag_tensor *const *in, int nin, ag_tensor **out, int nout) {
    (void)nin, (void)nout;
    int dim = *(const int *)ag_ctx_user(ctx);
    ag_tensor *x = in[0];
    ag_tensor *m = ag_max_dim(x, dim, true); /* y = m + log Σ exp(x - m) */
    ag_tensor *y = ag_add(m, ag_log(ag_sum_dims(ag_exp(ag_sub(x, m)), 1, &dim, true)));
    ag_tensor *save[2] = {x, y};
    ag_status st = ag_ctx_save_for_backward(ctx, save, 2);
    if (st == AG_OK) st = ag_ctx_set_scalar(ctx, 0, dim);
    out[0] = ag_squeeze(y, dim);
    return out[0] && st == AG_OK ? AG_OK : ag_last_status();
}

static ag_status lse_backward(ag_ctx *ctx, ag_tensor *const *gout, int nout, ag_tensor **gin, int nin) {
    (void)nout, (void)nin;
    int dim = (int)ag_ctx_scalar(ctx, 0);
    ag_tensor *x = ag_ctx_saved(ctx, 0), *y = ag_ctx_saved(ctx, 1); /* dx = dy·exp(x - y) */
    gin[0] = ag_mul(ag_unsqueeze(gout[0], dim), ag_exp(ag_sub(x, y)));
    return gin[0] ? AG_OK : ag_last_status();
}

static const ag_function_type my_logsumexp = {.name = "MyLogSumExp", .forward = lse_forward, .backward = lse_backward};

static ag_tensor *call_lse(ag_tensor *const *in, int n, void *ctx) { return ag_function_apply1(&my_logsumexp, in, n, ctx); }

static void test_logsumexp(void) {
    ag_scope_begin();
    ag_manual_seed(2);
    int dim = 1;
    ag_tensor *x = ag_mul_scalar(ag_randn(AG_SHAPE(3, 5, 2), AG_F64), 300), *x2 = ag_requires_grad_(ag_clone(x), true);
    ag_requires_grad_(x, true);
    ag_tensor *y = ag_function_apply1(&my_logsumexp, &x, 1, &dim), *ref = ag_logsumexp_dims(x2, 1, &dim, false);
    double dv = max_diff(y, ref);
    ok(y && ag_ndim(y) == 2 && dv < 1e-12 && isfinite(ag_item(ag_sum(y))),
       "MyLogSumExp over dim 1 of values near ±900: logsumexp's values, finite (diff %g)", dv);
    ag_tensor *w = ag_randn(AG_SHAPE(3, 2), AG_F64);
    ag_backward(ag_sum(ag_mul(y, w)));
    ag_backward(ag_sum(ag_mul(ref, w)));
    ok(max_diff(ag_grad(x), ag_grad(x2)) < 1e-12, "MyLogSumExp: logsumexp's gradient");
    ag_tensor *xs = ag_requires_grad_(ag_randn(AG_SHAPE(2, 3, 2), AG_F64), true);
    ok(ag_gradcheck(call_lse, &dim, &xs, 1, NULL, NULL) == AG_OK, "MyLogSumExp passes gradcheck in float64");
    ag_scope_end();
}

/* ---- two outputs: (sin x, cos x) ------------------------------------------------------------------- */
static int sincos_calls, sincos_null_grads;

static ag_status sincos_forward(ag_ctx *ctx, ag_tensor *const *in, int nin, ag_tensor **out, int nout) {
    (void)nin, (void)nout;
    if (ag_ctx_user(ctx)) ag_ctx_set_materialize_grads(ctx, false);
    out[0] = ag_sin(in[0]);
    out[1] = ag_cos(in[0]);
    return ag_ctx_save_for_backward(ctx, in, 1);
}

static ag_status sincos_backward(ag_ctx *ctx, ag_tensor *const *gout, int nout, ag_tensor **gin, int nin) {
    (void)nout, (void)nin;
    sincos_calls++;
    ag_tensor *x = ag_ctx_saved(ctx, 0), *g = NULL; /* dx = d(sin)·cos x - d(cos)·sin x */
    for (int k = 0; k < 2; k++) {
        if (!gout[k]) {
            sincos_null_grads++;
            continue;
        }
        ag_tensor *term = k == 0 ? ag_mul(gout[0], ag_cos(x)) : ag_neg(ag_mul(gout[1], ag_sin(x)));
        g = g ? ag_add(g, term) : term;
    }
    gin[0] = g;
    return AG_OK;
}

/* d(sin x) = dx·cos x, d(cos x) = -dx·sin x (the cosine's tangent left NULL, zero, when the user pointer says so) */
static ag_status sincos_jvp(ag_ctx *ctx, ag_tensor *const *tin, int nin, ag_tensor **tout, int nout) {
    (void)nin, (void)nout;
    ag_tensor *x = ag_ctx_saved(ctx, 0);
    tout[0] = ag_mul(tin[0], ag_cos(x));
    tout[1] = ag_ctx_user(ctx) ? NULL : ag_neg(ag_mul(tin[0], ag_sin(x)));
    return tout[0] ? AG_OK : ag_last_status();
}

static const ag_function_type my_sincos = {
    .name = "SinCos", .forward = sincos_forward, .backward = sincos_backward, .jvp = sincos_jvp};

/* cos x alone through SinCos (its sine output unused) */
static ag_tensor *call_sincos_one(ag_tensor *const *in, int n, void *ctx) {
    ag_tensor *y[2];
    return ag_function_apply(&my_sincos, in, n, y, 2, ctx) ? NULL : y[1];
}

static ag_tensor *call_sincos_sum(ag_tensor *const *in, int n, void *ctx) {
    ag_tensor *y[2];
    if (ag_function_apply(&my_sincos, in, n, y, 2, ctx)) return NULL;
    return ag_add(y[0], ag_mul_scalar(y[1], 3));
}

/* SinCos saving its outputs instead of its input: dx = d(sin)·c - d(cos)·s, so that
 * under create_graph the saved outputs come back with their graph (the context node). */
static ag_status sincos_out_forward(ag_ctx *ctx, ag_tensor *const *in, int nin, ag_tensor **out, int nout) {
    (void)nin, (void)nout;
    if (ag_ctx_user(ctx)) ag_ctx_set_materialize_grads(ctx, false);
    out[0] = ag_sin(in[0]);
    out[1] = ag_cos(in[0]);
    return ag_ctx_save_for_backward(ctx, out, 2);
}

static ag_status sincos_out_backward(ag_ctx *ctx, ag_tensor *const *gout, int nout, ag_tensor **gin, int nin) {
    (void)nout, (void)nin;
    ag_tensor *s = ag_ctx_saved(ctx, 0), *c = ag_ctx_saved(ctx, 1), *g = NULL;
    if (gout[0]) g = ag_mul(gout[0], c);
    if (gout[1]) g = g ? ag_sub(g, ag_mul(gout[1], s)) : ag_neg(ag_mul(gout[1], s));
    gin[0] = g;
    return AG_OK;
}

static const ag_function_type my_sincos_out = {.name = "SinCosOut", .forward = sincos_out_forward,
                                               .backward = sincos_out_backward};

/* Σ sin x · cos x through SinCosOut: its gradient cos 2x reads both outputs and their gradients. */
static ag_tensor *call_sincos_prod(ag_tensor *const *in, int n, void *ctx) {
    ag_tensor *y[2];
    if (ag_function_apply(&my_sincos_out, in, n, y, 2, ctx)) return NULL;
    return ag_sum(ag_mul(y[0], y[1]));
}

/* sin x + 3 cos x through SinCosOut */
static ag_tensor *call_sincos_out_sum(ag_tensor *const *in, int n, void *ctx) {
    ag_tensor *y[2];
    if (ag_function_apply(&my_sincos_out, in, n, y, 2, ctx)) return NULL;
    return ag_add(y[0], ag_mul_scalar(y[1], 3));
}

/* The second derivative of f through ag_autograd_grad with create_graph then a
 * backward of Σ g: the diagonal of the Hessian of Σ f for an elementwise f. */
static ag_tensor *second(ag_fn f, void *ctx, ag_tensor *x, ag_tensor **grad) {
    ag_tensor *l = ag_sum(f(&x, 1, ctx)), *g = NULL, *h = NULL;
    if (ag_autograd_grad(&l, 1, &x, 1, NULL, &(ag_grad_opts){.create_graph = true}, &g)) return NULL;
    *grad = g;
    ag_tensor *sg = ag_sum(g);
    return ag_autograd_grad(&sg, 1, &x, 1, NULL, NULL, &h) ? NULL : h;
}

/* Double backward through functions of two differentiable outputs (a context node). */
static void test_two_outputs_double_backward(ag_tensor *x) {
    ag_tensor *g = NULL, *h = second(call_sincos_sum, NULL, x, &g);
    ag_tensor *dg = ag_sub(ag_cos(x), ag_mul_scalar(ag_sin(x), 3)), *dh = ag_neg(ag_add(ag_sin(x), ag_mul_scalar(ag_cos(x), 3)));
    ok(h && ag_requires_grad(g) && max_diff(g, dg) < 1e-15 && max_diff(h, dh) < 1e-14,
       "SinCos (two outputs) under create_graph: d(sin x + 3 cos x)/dx = cos x - 3 sin x, its derivative -sin x - 3 cos x "
       "(%.2g)", max_diff(h, dh));
    h = second(call_sincos_out_sum, NULL, x, &g);
    ok(h && max_diff(g, dg) < 1e-15 && max_diff(h, dh) < 1e-14,
       "SinCosOut (saves its outputs): the same second derivative through the saved outputs' graph (%.2g)", max_diff(h, dh));
    h = second(call_sincos_prod, NULL, x, &g);
    dg = ag_cos(ag_mul_scalar(x, 2));
    dh = ag_mul_scalar(ag_sin(ag_mul_scalar(x, 2)), -2);
    ok(h && max_diff(g, dg) < 1e-14 && max_diff(h, dh) < 1e-14,
       "SinCosOut: d(sin x cos x)/dx = cos 2x, its derivative -2 sin 2x (an output and its saved alias summed: %.2g)",
       max_diff(h, dh));
    int flag = 1; /* materialize off: the unused output's gradient is NULL under create_graph too */
    sincos_null_grads = 0;
    ag_tensor *l = ag_sum(call_sincos_one(&x, 1, &flag)), *g1 = NULL;
    ag_status st = ag_autograd_grad(&l, 1, &x, 1, NULL, &(ag_grad_opts){.create_graph = true}, &g1);
    ok(st == AG_OK && sincos_null_grads == 1 && max_diff(g1, ag_neg(ag_sin(x))) < 1e-15 && ag_requires_grad(g1),
       "create_graph without materialize_grads: NULL for the output without a gradient");
    ok(ag_gradgradcheck(call_sincos_sum, NULL, &x, 1, NULL, NULL) == AG_OK, "SinCos passes gradgradcheck");
    ok(ag_gradgradcheck(call_sincos_out_sum, NULL, &x, 1, NULL, NULL) == AG_OK, "SinCosOut passes gradgradcheck");
    ok(ag_gradgradcheck(call_sincos_prod, NULL, &x, 1, NULL, NULL) == AG_OK, "SinCosOut's Σ sin·cos passes gradgradcheck");
    ok(ag_gradgradcheck(call_sincos_prod, &flag, &x, 1, NULL, NULL) == AG_OK,
       "... and without materialize_grads");
    /* a third derivative: create_graph again through the recorded second */
    ag_tensor *l3 = ag_sum(call_sincos_out_sum(&x, 1, NULL)), *g3 = NULL, *h3 = NULL, *t3 = NULL;
    ag_grad_opts create = {.create_graph = true};
    st = ag_autograd_grad(&l3, 1, &x, 1, NULL, &create, &g3);
    ag_tensor *s3 = st ? NULL : ag_sum(g3);
    if (s3) st = ag_autograd_grad(&s3, 1, &x, 1, NULL, &create, &h3);
    ag_tensor *u3 = st ? NULL : ag_sum(h3);
    if (u3) st = ag_autograd_grad(&u3, 1, &x, 1, NULL, NULL, &t3);
    ag_tensor *want = ag_sub(ag_mul_scalar(ag_sin(x), 3), ag_cos(x));
    ok(st == AG_OK && max_diff(t3, want) < 1e-14, "SinCosOut: a third derivative, 3 sin x - cos x (%.2g)", max_diff(t3, want));
}

static void test_two_outputs(void) {
    ag_scope_begin();
    ag_manual_seed(3);
    ag_tensor *x = ag_requires_grad_(ag_randn(AG_SHAPE(4), AG_F64), true), *y[2];
    ok(ag_function_apply(&my_sincos, &x, 1, y, 2, NULL) == AG_OK && max_diff(y[0], ag_sin(x)) == 0 &&
           max_diff(y[1], ag_cos(x)) == 0 && has(ag_grad_fn_name(y[0]), "SinCosBackward") &&
           has(ag_grad_fn_name(y[1]), "SinCosBackward"),
       "SinCos: two outputs, sin and cos, both SinCosBackward");
    sincos_calls = sincos_null_grads = 0;
    ok(ag_backward(ag_sum(y[0])) == AG_OK && sincos_calls == 1 && max_diff(ag_grad(x), ag_cos(x)) < 1e-15,
       "SinCos: a loss of the first output only: dx = cos x, one call");
    ag_zero_grad(x);
    ag_function_apply(&my_sincos, &x, 1, y, 2, NULL);
    sincos_calls = 0;
    ag_status st = ag_backward(ag_add(ag_sum(y[0]), ag_mul_scalar(ag_sum(y[1]), 2)));
    ag_tensor *want = ag_sub(ag_cos(x), ag_mul_scalar(ag_sin(x), 2));
    ok(st == AG_OK && sincos_calls == 1 && max_diff(ag_grad(x), want) < 1e-15,
       "SinCos: a loss of both outputs: dx = cos x - 2 sin x, backward called once with both");
    ag_zero_grad(x);
    ag_function_apply(&my_sincos, &x, 1, y, 2, NULL);
    sincos_calls = 0;
    st = ag_backward(ag_sum(y[1]));
    ok(st == AG_OK && sincos_calls == 1 && max_diff(ag_grad(x), ag_neg(ag_sin(x))) < 1e-15 && sincos_null_grads == 0,
       "SinCos: a loss of the second output only: dx = -sin x (the first's gradient materialized as zeros)");
    ag_zero_grad(x);
    int flag = 1; /* materialize off: the unused output's gradient is NULL */
    ag_function_apply(&my_sincos, &x, 1, y, 2, &flag);
    st = ag_backward(ag_sum(y[1]));
    ok(st == AG_OK && sincos_null_grads == 1 && max_diff(ag_grad(x), ag_neg(ag_sin(x))) < 1e-15,
       "SinCos with ag_ctx_set_materialize_grads(false): NULL for the output without a gradient");
    ok(ag_gradcheck(call_sincos_sum, NULL, &x, 1, NULL, NULL) == AG_OK, "SinCos passes gradcheck (both outputs used)");
    /* the jvp callback of a function of two outputs (a context node), and a NULL tangent as zero */
    ag_tensor *v = ag_randn(AG_SHAPE(4), AG_F64), *yv = NULL, *jv = NULL, *jz = NULL;
    ag_status js = ag_jvp(call_sincos_sum, NULL, &x, 1, &v, &yv, &jv);
    double dj = max_diff(jv, ag_mul(v, ag_sub(ag_cos(x), ag_mul_scalar(ag_sin(x), 3))));
    ok(js == AG_OK && dj < 1e-15, "SinCos's jvp callback: the tangent of sin x + 3 cos x is v·(cos x - 3 sin x) (%.3g)", dj);
    int no_cos_tangent = 1;
    js = ag_jvp(call_sincos_sum, &no_cos_tangent, &x, 1, &v, &yv, &jz);
    dj = max_diff(jz, ag_mul(v, ag_cos(x)));
    ok(js == AG_OK && dj < 1e-15, "an output tangent left NULL is zero (%.3g)", dj);
    test_two_outputs_double_backward(x);

    /* retain_graph: two backward passes through the same two-output node */
    ag_zero_grad(x);
    ag_function_apply(&my_sincos, &x, 1, y, 2, NULL);
    ag_tensor *loss = ag_add(ag_sum(y[0]), ag_sum(y[1]));
    st = ag_backward_ex(loss, NULL, true);
    if (st == AG_OK) st = ag_backward_ex(loss, NULL, false);
    want = ag_mul_scalar(ag_sub(ag_cos(x), ag_sin(x)), 2);
    ok(st == AG_OK && max_diff(ag_grad(x), want) < 1e-15, "SinCos: retain_graph, then a second pass adds the same");
    st = ag_backward(loss);
    ok(st == AG_ERR_GRAPH && has(ag_last_error(), "a second time"), "SinCos: a third pass after freeing fails: %s",
       ag_last_error());
    ag_scope_end();
}

/* ---- straight-through estimator: round forward, identity backward ------------------------------------ */
static ag_status ste_forward(ag_ctx *ctx, ag_tensor *const *in, int nin, ag_tensor **out, int nout) {
    (void)ctx, (void)nin, (void)nout;
    out[0] = ag_round(in[0]);
    return out[0] ? AG_OK : ag_last_status();
}

static ag_status ste_backward(ag_ctx *ctx, ag_tensor *const *gout, int nout, ag_tensor **gin, int nin) {
    (void)ctx, (void)nout, (void)nin;
    gin[0] = gout[0]; /* dx = dy */
    return AG_OK;
}

static const ag_function_type round_ste = {.name = "RoundSTE", .forward = ste_forward, .backward = ste_backward};

static void test_ste(void) {
    ag_scope_begin();
    double v[4] = {0.2, 1.7, -2.4, 3.5};
    ag_tensor *x = ag_requires_grad_(ag_from_data(v, AG_SHAPE(4), AG_F64), true);
    ag_tensor *y = ag_function_apply1(&round_ste, &x, 1, NULL);
    const double *p = y ? ag_data(y) : NULL;
    ok(p && p[0] == 0 && p[1] == 2 && p[2] == -2 && p[3] == 4, "RoundSTE: rounds forward");
    ag_backward(ag_sum(ag_mul_scalar(y, 3)));
    ok(max_diff(ag_grad(x), ag_full(AG_SHAPE(4), 3, AG_F64)) == 0, "RoundSTE: the gradient passes straight through");
    ag_scope_end();
}

/* ---- an input that needs no gradient; a saved tensor changed in place ------------------------------------ */
static bool scale_needs[2];

static ag_status scale_forward(ag_ctx *ctx, ag_tensor *const *in, int nin, ag_tensor **out, int nout) {
    (void)nin, (void)nout;
    out[0] = ag_mul(in[0], in[1]);
    return ag_ctx_save_for_backward(ctx, in, 2);
}

static ag_status scale_backward(ag_ctx *ctx, ag_tensor *const *gout, int nout, ag_tensor **gin, int nin) {
    (void)nout, (void)nin;
    for (int i = 0; i < 2; i++) scale_needs[i] = ag_ctx_needs_input_grad(ctx, i);
    if (scale_needs[0]) gin[0] = ag_mul(gout[0], ag_ctx_saved(ctx, 1)); /* dx = dy·w */
    if (scale_needs[1]) gin[1] = ag_mul(gout[0], ag_ctx_saved(ctx, 0)); /* dw = dy·x */
    return AG_OK;
}

static const ag_function_type scale_fn = {.name = "Scale", .forward = scale_forward, .backward = scale_backward};

static void test_inputs_without_grad(void) {
    ag_scope_begin();
    ag_tensor *x = ag_requires_grad_(ag_full(AG_SHAPE(3), 2, AG_F64), true), *w = ag_full(AG_SHAPE(3), 5, AG_F64);
    ag_tensor *in[2] = {x, w};
    ag_tensor *y = ag_function_apply1(&scale_fn, in, 2, NULL);
    ok(ag_backward(ag_sum(y)) == AG_OK && scale_needs[0] && !scale_needs[1] && !ag_grad(w) &&
           max_diff(ag_grad(x), w) == 0,
       "Scale: needs_input_grad is (true, false); dx = w, w gets no gradient");

    ag_zero_grad(x);
    y = ag_function_apply1(&scale_fn, in, 2, NULL);
    ag_fill_(w, 7); /* w does not require grad: it may change, but Scale saved it */
    ag_status st = ag_backward(ag_sum(y));
    ok(st == AG_ERR_GRAPH && has(ag_last_error(), "modified by an in-place operation: saved tensor 1 of ScaleBackward") &&
           !ag_grad(x),
       "Scale: a saved input changed in place fails backward before any gradient moves: %s", ag_last_error());

    ag_tensor *e = ag_function_apply1(&my_exp, &x, 1, NULL);
    ag_no_grad_begin();
    ag_add_scalar_(e, 1); /* the saved output */
    ag_no_grad_end();
    st = ag_backward(ag_sum(e));
    ok(st == AG_ERR_GRAPH && has(ag_last_error(), "saved tensor 0 of MyExpBackward, float64 [3], is at version 1; "
                                                  "expected version 0"),
       "MyExp: its saved output changed in place: %s", ag_last_error());

    ag_tensor *c = ag_full(AG_SHAPE(3), 1, AG_F64), *in2[2] = {c, w};
    y = ag_function_apply1(&scale_fn, in2, 2, NULL);
    ok(y && !ag_requires_grad(y) && !ag_grad_fn_name(y), "Scale of inputs none of which requires grad records nothing");
    ag_scope_end();
}

/* ---- non-differentiable outputs: (2x, argmax x, a marked float mask) --------------------------------------- */
static ag_status argmax_forward(ag_ctx *ctx, ag_tensor *const *in, int nin, ag_tensor **out, int nout) {
    (void)nin, (void)nout;
    out[0] = ag_mul_scalar(in[0], 2);
    out[1] = ag_argmax(in[0], 0, false);
    out[2] = ag_to_dtype(ag_gt(in[0], ag_scalar(0, AG_F64)), AG_F64);
    return ag_ctx_mark_non_differentiable(ctx, 2);
}

static int argmax_null_grads;

static ag_status argmax_backward(ag_ctx *ctx, ag_tensor *const *gout, int nout, ag_tensor **gin, int nin) {
    (void)ctx, (void)nin;
    for (int k = 0; k < nout; k++) argmax_null_grads += gout[k] == NULL;
    gin[0] = ag_mul_scalar(gout[0], 2);
    return AG_OK;
}

static const ag_function_type double_argmax = {.name = "DoubleArgmax", .forward = argmax_forward, .backward = argmax_backward};

static void test_non_differentiable(void) {
    ag_scope_begin();
    double v[3] = {-1, 4, 2};
    ag_tensor *x = ag_requires_grad_(ag_from_data(v, AG_SHAPE(3), AG_F64), true), *y[3];
    ag_status st = ag_function_apply(&double_argmax, &x, 1, y, 3, NULL);
    ok(st == AG_OK && ag_requires_grad(y[0]) && !ag_requires_grad(y[1]) && ag_dtype_of(y[1]) == AG_I64 &&
           ag_item(y[1]) == 1 && !ag_requires_grad(y[2]) && !ag_grad_fn_name(y[2]),
       "DoubleArgmax: the int64 indices and the marked mask do not require grad; 2x does");
    argmax_null_grads = 0;
    st = ag_backward(ag_sum(y[0]));
    ok(st == AG_OK && argmax_null_grads == 0 && max_diff(ag_grad(x), ag_full(AG_SHAPE(3), 2, AG_F64)) == 0,
       "DoubleArgmax: dx = 2, the other outputs' gradients materialized");
    ok(ag_ctx_mark_non_differentiable(NULL, 0) == AG_ERR_ARG, "mark_non_differentiable outside a forward is refused");
    ag_scope_end();
}

/* ---- bad gradients and failing callbacks --------------------------------------------------------------------- */
static ag_status ident_forward(ag_ctx *ctx, ag_tensor *const *in, int nin, ag_tensor **out, int nout) {
    (void)ctx, (void)nin, (void)nout;
    out[0] = ag_mul_scalar(in[0], 1);
    return AG_OK;
}

static ag_status bad_shape_backward(ag_ctx *ctx, ag_tensor *const *gout, int nout, ag_tensor **gin, int nin) {
    (void)ctx, (void)gout, (void)nout, (void)nin;
    gin[0] = ag_ones(AG_SHAPE(2), AG_F64);
    return AG_OK;
}

static ag_status bad_dtype_backward(ag_ctx *ctx, ag_tensor *const *gout, int nout, ag_tensor **gin, int nin) {
    (void)ctx, (void)nout, (void)nin;
    gin[0] = ag_to_dtype(gout[0], AG_F32);
    return AG_OK;
}

static ag_status failing_backward(ag_ctx *ctx, ag_tensor *const *gout, int nout, ag_tensor **gin, int nin) {
    (void)ctx, (void)nout, (void)nin;
    gin[0] = ag_reshape(gout[0], AG_SHAPE(7)); /* fails: 3 elements */
    return gin[0] ? AG_OK : ag_last_status();
}

static ag_status failing_forward(ag_ctx *ctx, ag_tensor *const *in, int nin, ag_tensor **out, int nout) {
    (void)ctx, (void)nin, (void)nout;
    out[0] = ag_matmul(in[0], in[0]); /* a 1-D by 1-D product is fine; reshape to 5 fails */
    out[0] = ag_reshape(out[0], AG_SHAPE(5));
    return out[0] ? AG_OK : ag_last_status();
}

static ag_status null_forward(ag_ctx *ctx, ag_tensor *const *in, int nin, ag_tensor **out, int nout) {
    (void)ctx, (void)in, (void)nin, (void)nout, (void)out;
    return AG_OK;
}

static const ag_function_type bad_shape = {.name = "BadShape", .forward = ident_forward, .backward = bad_shape_backward};
static const ag_function_type bad_dtype = {.name = "BadDtype", .forward = ident_forward, .backward = bad_dtype_backward};
static const ag_function_type failing = {.name = "Failing", .forward = ident_forward, .backward = failing_backward};
static const ag_function_type failing_fwd = {.name = "FailingForward", .forward = failing_forward, .backward = bad_shape_backward};
static const ag_function_type null_fwd = {.name = "NullForward", .forward = null_forward, .backward = bad_shape_backward};

static void test_errors(void) {
    ag_scope_begin();
    ag_tensor *x = ag_requires_grad_(ag_ones(AG_SHAPE(3), AG_F64), true);
    ag_status st = ag_backward(ag_sum(ag_function_apply1(&bad_shape, &x, 1, NULL)));
    ok(st == AG_ERR_SHAPE && has(ag_last_error(), "BadShapeBackward returned a gradient of shape [2] for input 0 of shape [3]") &&
           !ag_grad(x),
       "a gradient of the wrong shape: %s", ag_last_error());
    st = ag_backward(ag_sum(ag_function_apply1(&bad_dtype, &x, 1, NULL)));
    ok(st == AG_ERR_DTYPE && has(ag_last_error(), "BadDtypeBackward returned a float32 gradient for input 0, which is float64 [3]"),
       "a gradient of the wrong dtype: %s", ag_last_error());
    st = ag_backward(ag_sum(ag_function_apply1(&failing, &x, 1, NULL)));
    ok(st == AG_ERR_SHAPE && has(ag_last_error(), "FailingBackward: backward failed (shape error): reshape") && !ag_grad(x),
       "a backward that fails returns its status, naming the function: %s", ag_last_error());

    ag_tensor *y = ag_function_apply1(&failing_fwd, &x, 1, NULL);
    ok(!y && ag_last_status() == AG_ERR_SHAPE && has(ag_last_error(), "FailingForward: forward failed (shape error): reshape"),
       "a forward that fails: NULL with its status: %s", ag_last_error());
    ag_tensor *two[2] = {x, x};
    ok(ag_function_apply(&null_fwd, &x, 1, two, 2, NULL) == AG_ERR_ARG && !two[0] && !two[1] &&
           has(ag_last_error(), "NullForward: forward returned AG_OK but left output 0 NULL"),
       "a forward that leaves an output NULL: %s", ag_last_error());
    ag_function_type no_backward = {.name = "NoBackward", .forward = ident_forward, .backward = NULL};
    ok(!ag_function_apply1(&no_backward, &x, 1, NULL) && ag_last_status() == AG_ERR_ARG, "a type without backward is refused");
    ok(ag_function_apply(&my_exp, &x, 1, NULL, 1, NULL) == AG_ERR_ARG && ag_function_apply(&my_exp, &x, 1, two, 0, NULL) == AG_ERR_ARG,
       "no output array, or no outputs, is refused");
    ag_clear_error();
    ag_tensor *none = NULL;
    ok(!ag_function_apply1(&my_exp, &none, 1, NULL) && has(ag_last_error(), "MyExp: input 0 is NULL"), "a NULL input: %s",
       ag_last_error());
    ag_scope_end();
}

/* ---- no-grad mode, anomaly mode, graph printing ---------------------------------------------------------------- */
static int exp_forward_calls;

static ag_status log_forward(ag_ctx *ctx, ag_tensor *const *in, int nin, ag_tensor **out, int nout) {
    (void)nin, (void)nout;
    exp_forward_calls++;
    out[0] = ag_log(in[0]);
    return out[0] ? ag_ctx_save_for_backward(ctx, in, 1) : ag_last_status();
}

static ag_status log_backward(ag_ctx *ctx, ag_tensor *const *gout, int nout, ag_tensor **gin, int nin) {
    (void)nout, (void)nin;
    gin[0] = ag_div(gout[0], ag_ctx_saved(ctx, 0)); /* dx = dy / x */
    return AG_OK;
}

static const ag_function_type my_log = {.name = "MyLog", .forward = log_forward, .backward = log_backward};

/* log and its gradient on raw float64 data (ag_data), without agrad ops */
static ag_status raw_log_forward(ag_ctx *ctx, ag_tensor *const *in, int nin, ag_tensor **out, int nout) {
    (void)nin, (void)nout;
    ag_tensor *x = ag_contiguous(in[0]);
    out[0] = ag_zeros_like(x);
    if (!out[0]) return ag_last_status();
    const double *p = ag_data(x);
    double *q = ag_data(out[0]);
    for (int64_t i = 0; i < ag_numel(x); i++) q[i] = log(p[i]);
    return ag_ctx_save_for_backward(ctx, &x, 1);
}

static ag_status raw_log_backward(ag_ctx *ctx, ag_tensor *const *gout, int nout, ag_tensor **gin, int nin) {
    (void)nout, (void)nin;
    ag_tensor *x = ag_ctx_saved(ctx, 0);
    gin[0] = ag_zeros_like(x);
    if (!gin[0]) return ag_last_status();
    const double *p = ag_data(x), *g = ag_data(gout[0]);
    double *q = ag_data(gin[0]);
    for (int64_t i = 0; i < ag_numel(x); i++) q[i] = g[i] / p[i]; /* dx = dy / x */
    return AG_OK;
}

static const ag_function_type raw_log = {.name = "RawLog", .forward = raw_log_forward, .backward = raw_log_backward};

static void test_modes(void) {
    ag_scope_begin();
    ag_tensor *x = ag_requires_grad_(ag_full(AG_SHAPE(2), 4, AG_F64), true);
    exp_forward_calls = 0;
    ag_no_grad_begin();
    ag_tensor *y = ag_function_apply1(&my_log, &x, 1, NULL);
    ag_no_grad_end();
    ok(y && exp_forward_calls == 1 && !ag_requires_grad(y) && !ag_grad_fn_name(y) && fabs(ag_get(y, (int64_t[]){0}) - log(4)) < 1e-15,
       "no-grad mode: the forward runs, nothing is recorded");

    ag_set_detect_anomaly(true);
    ag_tensor *neg = ag_requires_grad_(ag_full(AG_SHAPE(2), -1, AG_F64), true);
    y = ag_function_apply1(&raw_log, &neg, 1, NULL);
    ok(!y && ag_last_status() == AG_ERR_VALUE && has(ag_last_error(), "anomaly: RawLog produced a non-finite value"),
       "anomaly mode: a non-finite output names the function: %s", ag_last_error());
    ag_tensor *zero = ag_requires_grad_(ag_zeros(AG_SHAPE(2), AG_F64), true);
    ag_set_detect_anomaly(false);
    ag_tensor *loss = ag_sum(ag_function_apply1(&raw_log, &zero, 1, NULL)); /* log 0 = -inf */
    ag_set_detect_anomaly(true);
    ag_status st = ag_backward(loss);
    ok(st == AG_ERR_VALUE && has(ag_last_error(), "anomaly: RawLogBackward produced a non-finite gradient") && !ag_grad(zero),
       "anomaly mode: a non-finite gradient names the function's backward: %s", ag_last_error());
    y = ag_function_apply1(&my_log, &zero, 1, NULL);
    ag_set_detect_anomaly(false);
    ok(!y && ag_last_status() == AG_ERR_VALUE && has(ag_last_error(), "MyLog: forward failed (value error): anomaly: log"),
       "anomaly mode: an op of the forward that makes a NaN fails the forward: %s", ag_last_error());

    y = ag_function_apply1(&my_log, &x, 1, NULL);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    st = f ? ag_graph_print(f, ag_sum(y)) : AG_ERR_IO;
    if (f) fclose(f);
    ok(st == AG_OK && has(text, "MyLogBackward [2] float64") && has(text, "SumBackward1"),
       "graph printing names the function's node");
    free(text);
    text = NULL;
    f = open_memstream(&text, &len);
    ag_tensor *pair[2];
    ag_function_apply(&my_sincos, &x, 1, pair, 2, NULL);
    st = f ? ag_graph_dot(f, ag_add(pair[0], pair[1])) : AG_ERR_IO;
    if (f) fclose(f);
    ok(st == AG_OK && has(text, "SinCosBackward\\n[2] float64") && has(text, "SinCosBackward\\n[0] float32"),
       "DOT of a two-output function: its outputs and its context node");
    free(text);
    ag_scope_end();
}

/* ---- dirty inputs (ctx.mark_dirty): x *= w in place, returned as itself ------------------------------------- */
static bool dirty_before_write = true;

static ag_status mul_into_forward(ag_ctx *ctx, ag_tensor *const *in, int nin, ag_tensor **out, int nout) {
    (void)nin, (void)nout;
    ag_tensor *keep[2] = {ag_clone(in[0]), in[1]}; /* old x, w */
    if (!keep[0] || ag_ctx_save_for_backward(ctx, keep, 2)) return ag_last_status();
    if (dirty_before_write && ag_ctx_mark_dirty(ctx, 0)) return ag_last_status();
    out[0] = ag_mul_(in[0], in[1]);
    if (!dirty_before_write && ag_ctx_mark_dirty(ctx, 0)) return ag_last_status();
    return out[0] ? AG_OK : ag_last_status();
}

static ag_status mul_into_backward(ag_ctx *ctx, ag_tensor *const *gout, int nout, ag_tensor **gin, int nin) {
    (void)nout, (void)nin;
    if (ag_ctx_needs_input_grad(ctx, 0) && !(gin[0] = ag_mul(gout[0], ag_ctx_saved(ctx, 1)))) return ag_last_status();
    if (ag_ctx_needs_input_grad(ctx, 1) && !(gin[1] = ag_mul(gout[0], ag_ctx_saved(ctx, 0)))) return ag_last_status();
    return AG_OK; /* d(old x) = dy·w,  dw = dy·(old x) */
}

static const ag_function_type mul_into = {.name = "MulInto", .forward = mul_into_forward, .backward = mul_into_backward};

/* A forward that marks its input dirty but returns a copy. */
static ag_status lost_forward(ag_ctx *ctx, ag_tensor *const *in, int nin, ag_tensor **out, int nout) {
    (void)nin, (void)nout;
    if (ag_ctx_mark_dirty(ctx, 0)) return ag_last_status();
    out[0] = ag_clone(ag_mul_scalar_(in[0], 2));
    return out[0] ? AG_OK : ag_last_status();
}

static const ag_function_type lost_dirty = {.name = "LostDirty", .forward = lost_forward, .backward = mul_into_backward};

/* (x *= 2 in place, s = Σ new x) from input 0 (dirty), or both inputs dirty with user set:
 * d(old x) = 2·dy + 2·ds. */
static ag_status double_sum_forward(ag_ctx *ctx, ag_tensor *const *in, int nin, ag_tensor **out, int nout) {
    (void)nout;
    for (int i = 0; i < (ag_ctx_user(ctx) ? nin : 1); i++)
        if (ag_ctx_mark_dirty(ctx, i)) return ag_last_status();
    out[0] = ag_mul_scalar_(in[0], 2);
    out[1] = ag_ctx_user(ctx) ? in[0] : ag_sum(in[0]);
    return out[0] && out[1] ? AG_OK : ag_last_status();
}

static ag_status double_sum_backward(ag_ctx *ctx, ag_tensor *const *gout, int nout, ag_tensor **gin, int nin) {
    (void)ctx, (void)nout, (void)nin;
    gin[0] = ag_mul_scalar(ag_add(gout[0], gout[1]), 2);
    return gin[0] ? AG_OK : ag_last_status();
}

static const ag_function_type double_sum = {.name = "DoubleSum", .forward = double_sum_forward, .backward = double_sum_backward};

/* y + s of DoubleSum(3·x) */
static ag_tensor *call_double_sum(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    ag_tensor *y = ag_mul_scalar(in[0], 3), *out[2];
    return ag_function_apply(&double_sum, &y, 1, out, 2, NULL) ? NULL : ag_add(ag_mul(out[0], out[0]), out[1]);
}

/* exp(MulInto(2·x, w)): the dirty input is a non-leaf made inside the program. */
static ag_tensor *call_mul_into(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    ag_tensor *args[2] = {ag_mul_scalar(in[0], 2), in[1]};
    return ag_exp(ag_function_apply1(&mul_into, args, 2, NULL));
}

/* The same with a view: b = 2·x [3, 4], b[1] *= w [4] by MulInto, then exp(b). */
static ag_tensor *call_mul_into_view(ag_tensor *const *in, int n, void *ctx) {
    (void)n;
    ag_tensor *b = ag_mul_scalar(in[0], 2), *args[2] = {ag_select(b, 0, 1), in[1]};
    if (ctx) ag_mul_(args[0], args[1]); /* the built-in twin */
    else ag_function_apply1(&mul_into, args, 2, NULL);
    return ag_exp(b);
}

/* x = exp(x) in place, saving the result: dx_old = dy·y. */
static ag_status exp_into_forward(ag_ctx *ctx, ag_tensor *const *in, int nin, ag_tensor **out, int nout) {
    (void)nin, (void)nout;
    if (ag_ctx_mark_dirty(ctx, 0) || !(out[0] = ag_copy_(in[0], ag_exp(in[0])))) return ag_last_status();
    return ag_ctx_save_for_backward(ctx, out, 1);
}

static ag_status exp_into_backward(ag_ctx *ctx, ag_tensor *const *gout, int nout, ag_tensor **gin, int nin) {
    (void)nout, (void)nin;
    gin[0] = ag_mul(gout[0], ag_ctx_saved(ctx, 0));
    return gin[0] ? AG_OK : ag_last_status();
}

static const ag_function_type exp_into = {.name = "ExpInto", .forward = exp_into_forward, .backward = exp_into_backward};

/* ExpInto(2·x)², elementwise: exp(4x) (a view of a non-leaf base with ctx set). */
static ag_tensor *call_exp_into(ag_tensor *const *in, int n, void *ctx) {
    (void)n;
    ag_tensor *y = ag_mul_scalar(in[0], 2), *b = NULL;
    if (ctx) y = ag_select(b = ag_mul_scalar(in[0], 2), 0, 0);
    ag_tensor *z = ag_function_apply1(&exp_into, &y, 1, NULL);
    return ctx ? (z ? ag_mul(b, b) : NULL) : ag_mul(z, z);
}

/* Double backward through dirty inputs. */
static void test_dirty_double_backward(void) {
    ag_scope_begin();
    ag_manual_seed(8);
    ag_tensor *x = ag_requires_grad_(ag_mul_scalar(ag_randn(AG_SHAPE(2, 3), AG_F64), 0.5), true), *g = NULL;
    ag_tensor *h = second(call_exp_into, NULL, x, &g);
    ag_tensor *e4 = ag_exp(ag_mul_scalar(x, 4));
    ok(h && ag_requires_grad(g) && max_diff(g, ag_mul_scalar(e4, 4)) < 1e-13 && max_diff(h, ag_mul_scalar(e4, 16)) < 1e-12,
       "ExpInto (a dirty input, its saved result) under create_graph: d exp(4x) = 4 exp(4x), then 16 exp(4x) (%.2g)",
       max_diff(h, ag_mul_scalar(e4, 16)));
    ok(ag_gradgradcheck(call_exp_into, NULL, &x, 1, NULL, NULL) == AG_OK, "ExpInto passes gradgradcheck");
    ok(ag_gradgradcheck(call_double_sum, NULL, &x, 1, NULL, NULL) == AG_OK,
       "DoubleSum (a dirty output beside an ordinary one) passes gradgradcheck");
    ag_tensor *l = ag_sum(call_exp_into(&x, 1, (void *)1));
    ag_status st = ag_autograd_grad(&l, 1, &x, 1, NULL, &(ag_grad_opts){.create_graph = true}, &g);
    ok(st == AG_ERR_GRAPH && has(ag_last_error(), "CopySlices (op ExpInto) has no double-backward rule"),
       "a dirty view under create_graph: CopySlices has no double-backward rule yet, named: %s", ag_last_error());
    ag_scope_end();
}

static void test_dirty(void) {
    ag_scope_begin();
    ag_manual_seed(7);
    ag_tensor *x = ag_requires_grad_(ag_randn(AG_SHAPE(3, 4), AG_F64), true);
    ag_tensor *w = ag_requires_grad_(ag_randn(AG_SHAPE(3, 4), AG_F64), true);
    ag_tensor *x2 = ag_requires_grad_(ag_clone(ag_detach(x)), true), *w2 = ag_requires_grad_(ag_clone(ag_detach(w)), true);
    dirty_before_write = false; /* marking after the write works as well */
    ag_tensor *y = ag_mul_scalar(x, 3), *args[2] = {y, w};
    uint32_t v0 = ag_version(y);
    ag_tensor *z = ag_function_apply1(&mul_into, args, 2, NULL);
    dirty_before_write = true;
    ag_tensor *y2 = ag_mul_(ag_mul_scalar(x2, 3), w2);
    ok(z == y && ag_version(y) > v0, "MulInto returns its dirty input itself, its version bumped (%u -> %u)", v0,
       ag_version(y));
    ok(z && has(ag_grad_fn_name(z), "MulIntoBackward") && max_diff(z, y2) == 0,
       "the dirty input's grad_fn is MulIntoBackward (%s) and its values are x·3·w", z ? ag_grad_fn_name(z) : "NULL");
    ag_status st = ag_backward(ag_sum(ag_mul(z, z))), st2 = ag_backward(ag_sum(ag_mul(y2, y2)));
    ok(st == AG_OK && st2 == AG_OK && max_diff(ag_grad(x), ag_grad(x2)) < 1e-12 && max_diff(ag_grad(w), ag_grad(w2)) < 1e-12,
       "gradients through the dirty input equal the built-in mul_'s (x %.2g, w %.2g)", max_diff(ag_grad(x), ag_grad(x2)),
       max_diff(ag_grad(w), ag_grad(w2)));

    ag_tensor *xs[2] = {ag_detach(x), ag_detach(w)};
    ag_requires_grad_(xs[0], true), ag_requires_grad_(xs[1], true);
    ok(ag_gradcheck(call_mul_into, NULL, xs, 2, NULL, NULL) == AG_OK, "MulInto on a non-leaf passes gradcheck");
    ag_tensor *vs[2] = {xs[0], ag_requires_grad_(ag_randn(AG_SHAPE(4), AG_F64), true)};
    ok(ag_gradcheck(call_mul_into_view, NULL, vs, 2, NULL, NULL) == AG_OK, "MulInto on a view passes gradcheck");

    /* the view case against the built-in in-place op (CopySlices) */
    ag_tensor *b = ag_mul_scalar(vs[0], 2), *va[2] = {ag_select(b, 0, 1), vs[1]};
    ag_tensor *r = ag_function_apply1(&mul_into, va, 2, NULL);
    ok(r == va[0] && has(ag_grad_fn_name(b), "CopySlices"), "a dirty view: returned as itself, its base's grad_fn is %s",
       ag_grad_fn_name(b));
    ag_tensor *loss = ag_sum(ag_exp(b));
    ag_tensor *ref = ag_sum(call_mul_into_view(vs, 2, (void *)1));
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    st = f ? ag_graph_print(f, loss) : AG_ERR_IO;
    if (f) fclose(f);
    ok(st == AG_OK && has(text, "CopySlices [3, 4] float64") && has(text, "MulIntoBackward [0] float32"),
       "graph printing of a dirty view: CopySlices over the function's context node");
    free(text);
    ok(max_diff(loss, ref) == 0, "a dirty view: its base sees the write");
    st = ag_backward(loss);
    ag_tensor *ga[2] = {ag_clone(ag_grad(vs[0])), ag_clone(ag_grad(vs[1]))}, *gb[2];
    ag_zero_grad(vs[0]), ag_zero_grad(vs[1]);
    st2 = ag_backward(ref);
    gb[0] = ag_grad(vs[0]), gb[1] = ag_grad(vs[1]);
    ok(st == AG_OK && st2 == AG_OK && max_diff(ga[0], gb[0]) < 1e-12 && max_diff(ga[1], gb[1]) < 1e-12,
       "a dirty view: gradients equal the built-in CopySlices' (%.2g, %.2g)", max_diff(ga[0], gb[0]),
       max_diff(ga[1], gb[1]));

    /* an op that saved the dirty input before the write fails backward's version check */
    ag_tensor *c = ag_mul_scalar(vs[0], 1), *sq = ag_mul(c, c), *ca[2] = {c, ag_detach(vs[0])};
    ag_function_apply1(&mul_into, ca, 2, NULL);
    st = ag_backward(ag_sum(sq));
    ok(st == AG_ERR_GRAPH && has(ag_last_error(), "modified by an in-place operation"),
       "an op that saved the dirty input fails backward: %s", ag_last_error());

    /* a leaf that requires grad: PyTorch's error, before the forward writes */
    ag_tensor *leaf = ag_requires_grad_(ag_ones(AG_SHAPE(3, 4), AG_F64), true), *la[2] = {leaf, w};
    ok(!ag_function_apply1(&mul_into, la, 2, NULL) && ag_last_status() == AG_ERR_GRAPH &&
           has(ag_last_error(), "MulInto: forward failed") && has(ag_last_error(), "a leaf tensor [3, 4] that requires grad "
                                                                                   "is being used in an in-place operation") &&
           ((const double *)ag_data(leaf))[0] == 1.0,
       "a dirty leaf that requires grad is refused, unchanged: %s", ag_last_error());
    ag_tensor *lv[2] = {ag_select(leaf, 0, 0), ag_ones(AG_SHAPE(4), AG_F64)};
    ok(!ag_function_apply1(&mul_into, lv, 2, NULL) && ag_last_status() == AG_ERR_GRAPH &&
           has(ag_last_error(), "a view [4] of a leaf tensor that requires grad"),
       "a dirty view of such a leaf too: %s", ag_last_error());

    /* an operand computed from a leaf view of the dirty input: refused as the built-in in-place ops refuse it
     * (recorded, the leaf would sit inside its base's history, a cycle never freed) */
    long live = ag_live_tensors();
    ag_scope_begin();
    ag_tensor *base = ag_zeros(AG_SHAPE(3, 4), AG_F64), *lvw = ag_requires_grad_(ag_t(base), true);
    ag_tensor *from[2] = {base, ag_t(ag_mul_scalar(lvw, 2))};
    ok(!ag_function_apply1(&mul_into, from, 2, NULL) && ag_last_status() == AG_ERR_GRAPH &&
           has(ag_last_error(), "MulInto: forward failed") &&
           has(ag_last_error(), "MulInto: the operand is computed from a view [4, 3] of the tensor [3, 4]") &&
           ag_item(ag_sum(ag_abs(base))) == 0,
       "a dirty input whose other operand comes from its own leaf view: refused, unchanged: %s", ag_last_error());
    ag_tensor *safe[2] = {base, ag_t(ag_detach(ag_clone(lvw)))};
    ok(ag_function_apply1(&mul_into, safe, 2, NULL) == base, "from a detached clone of that view: written");
    ag_scope_end();
    ok(ag_live_tensors() == live, "nothing left behind (%ld)", ag_live_tensors() - live);

    /* a plain tensor marked dirty with w requiring grad joins the graph; without grad nothing is recorded */
    ag_tensor *p = ag_ones(AG_SHAPE(3, 4), AG_F64), *pa[2] = {p, w};
    ag_zero_grad(w);
    ok(ag_function_apply1(&mul_into, pa, 2, NULL) == p && ag_requires_grad(p) && !ag_is_leaf(p) &&
           ag_backward(ag_sum(p)) == AG_OK && max_diff(ag_grad(w), ag_ones(AG_SHAPE(3, 4), AG_F64)) == 0,
       "a dirty tensor that needs no grad becomes a node (dw = old p = 1)");
    ag_no_grad_begin();
    ag_tensor *q = ag_ones(AG_SHAPE(3, 4), AG_F64), *qa[2] = {q, w};
    ok(ag_function_apply1(&mul_into, qa, 2, NULL) == q && !ag_requires_grad(q) && max_diff(q, w) == 0,
       "in no-grad mode the dirty input is written and returned, nothing recorded");
    ag_no_grad_end();

    /* retain_graph: a second pass through the dirty node gives the same gradient again */
    ag_zero_grad(x);
    ag_tensor *ry = ag_mul_scalar(x, 1), *ra[2] = {ry, ag_detach(w)};
    ag_function_apply1(&mul_into, ra, 2, NULL);
    ag_tensor *rl = ag_sum(ry);
    st = ag_backward_ex(rl, NULL, true);
    ag_tensor *once = ag_clone(ag_grad(x));
    st2 = ag_backward_ex(rl, NULL, false);
    ok(st == AG_OK && st2 == AG_OK && max_diff(once, w) == 0 && max_diff(ag_grad(x), ag_mul_scalar(once, 2)) == 0,
       "retain_graph: two passes through a dirty input give dx = w, then 2w");

    /* a dirty output beside an ordinary one */
    ag_tensor *d = ag_mul_scalar(vs[0], 1), *dout[2];
    ok(ag_function_apply(&double_sum, &d, 1, dout, 2, NULL) == AG_OK && dout[0] == d &&
           has(ag_grad_fn_name(dout[1]), "DoubleSumBackward") && ag_gradcheck(call_double_sum, NULL, vs, 1, NULL, NULL) == AG_OK,
       "a dirty output and an ordinary one from one call: gradcheck passes");
    ag_tensor *pair[2] = {ag_mul_scalar(vs[0], 1), NULL};
    pair[1] = pair[0];
    ok(ag_function_apply(&double_sum, pair, 1, dout, 2, (void *)1) == AG_ERR_ARG &&
           has(ag_last_error(), "DoubleSum: dirty input 0 is returned twice") && !dout[0],
       "a dirty input returned twice: %s", ag_last_error());
    ag_tensor *views[2] = {ag_select(pair[0], 0, 0), ag_select(pair[0], 0, 1)};
    ok(ag_function_apply(&double_sum, views, 2, dout, 2, (void *)1) == AG_ERR_ARG &&
           has(ag_last_error(), "DoubleSum: dirty inputs 0 and 1 share memory"),
       "two dirty views of one base: %s", ag_last_error());
    ok(ag_function_apply(&double_sum, pair, 2, dout, 2, (void *)1) == AG_ERR_ARG &&
           has(ag_last_error(), "DoubleSum: dirty inputs 0 and 1 share memory"),
       "one tensor given twice, both dirty: %s", ag_last_error());

    ag_tensor *n = ag_mul_scalar(vs[0], 1);
    ok(!ag_function_apply1(&lost_dirty, &n, 1, NULL) && ag_last_status() == AG_ERR_ARG &&
           has(ag_last_error(), "LostDirty: input 0 was marked dirty but is not returned as an output"),
       "a dirty input that is not returned: %s", ag_last_error());
    ag_scope_end();
}

int main(void) {
    test_exp();
    test_logsumexp();
    test_two_outputs();
    test_ste();
    test_inputs_without_grad();
    test_non_differentiable();
    test_errors();
    test_modes();
    test_dirty();
    test_dirty_double_backward();
    ok(ag_live_tensors() == 0, "no tensor left alive (%ld)", ag_live_tensors());
    return tap_done();
}

/*
 * Dual tensors (autograd/forward.c, autograd/dual.c): levels, make_dual's checks,
 * tangents in no-grad mode, reverse mode through a dual tensor, the error of an op
 * without a tangent rule, and tangents dropped with their level.
 */
#include <math.h>
#include <string.h>
#include "agrad/agrad.h"
#include "tap.h"

static double item(ag_tensor *t) { return t ? ag_item(t) : NAN; }

/* f(x, W) = log_softmax(x·Wᵀ) summed over rows: R^(2x3) x R^(4x3) -> R^4 */
static ag_tensor *f(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    return ag_sum_dim(ag_log_softmax(ag_linear(in[0], in[1], NULL), 1), 0, false);
}

static ag_tensor *constant(ag_tensor *const *in, int n, void *ctx) {
    (void)in, (void)n, (void)ctx;
    return ag_ones(AG_SHAPE(2), AG_F64);
}

static ag_tensor *unary_det(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    return ag_linalg_det(in[0]);
}

/* ag_jvp against central differences, and its errors. */
static void check_functional(void) {
    ag_scope_begin();
    ag_manual_seed(7);
    ag_tensor *in[2] = {ag_randn(AG_SHAPE(2, 3), AG_F64), ag_randn(AG_SHAPE(4, 3), AG_F64)};
    ag_tensor *v[2] = {ag_randn(AG_SHAPE(2, 3), AG_F64), ag_randn(AG_SHAPE(4, 3), AG_F64)};
    ag_tensor *y = NULL, *jv = NULL;
    ok(ag_jvp(f, NULL, in, 2, v, &y, &jv) == AG_OK && y && jv && ag_numel(jv) == 4 && !ag_dual_level_open(),
       "ag_jvp gives f(x) and J·v, and closes its level");
    const double eps = 1e-6;
    ag_tensor *p[2], *m[2];
    for (int i = 0; i < 2; i++) {
        p[i] = ag_add(in[i], ag_mul_scalar(v[i], eps));
        m[i] = ag_sub(in[i], ag_mul_scalar(v[i], eps));
    }
    ag_tensor *fd = ag_mul_scalar(ag_sub(f(p, 2, NULL), f(m, 2, NULL)), 0.5 / eps);
    double worst = item(ag_amax(ag_abs(ag_sub(fd, jv)), 1, (int[]){0}, false));
    ok(worst < 1e-7, "J·v matches central differences (worst %.2g)", worst);
    ok(item(ag_sum(ag_abs(ag_sub(f(in, 2, NULL), y)))) == 0, "the output is f(inputs)");
    ag_tensor *only_w[2] = {NULL, v[1]};
    ag_tensor *y2, *jv2;
    ag_tensor *in2[2] = {in[0], ag_detach(in[1])};
    ag_tensor *v0[2] = {v[0], NULL};
    ag_tensor *ja, *jb;
    ok(ag_jvp(f, NULL, in, 2, only_w, &y2, &jb) == AG_OK && ag_jvp(f, NULL, in2, 2, v0, &y2, &ja) == AG_OK &&
           item(ag_sum(ag_abs(ag_sub(ag_add(ja, jb), jv)))) < 1e-12,
       "a NULL tangent is zero: J·(v0, 0) + J·(0, v1) = J·(v0, v1)");
    ok(ag_jvp(constant, NULL, in, 2, v, &y2, &jv2) == AG_OK && jv2 && item(ag_sum(ag_abs(jv2))) == 0,
       "an output that does not depend on the inputs has a zero tangent");
    ok(ag_jvp(f, NULL, in, 0, v, &y2, &jv2) == AG_ERR_ARG && !y2 && !jv2, "n = 0: AG_ERR_ARG (%s)", ag_last_error());
    ag_tensor *bad[2] = {v[1], v[0]};
    ok(ag_jvp(f, NULL, in, 2, bad, &y2, &jv2) == AG_ERR_SHAPE && !ag_dual_level_open(),
       "tangents of the wrong shape: make_dual's AG_ERR_SHAPE, and the level is closed (%s)", ag_last_error());
    ag_dual_level_begin();
    ok(ag_jvp(f, NULL, in, 2, v, &y2, &jv2) == AG_ERR_GRAPH, "ag_jvp inside an open level: AG_ERR_GRAPH (%s)",
       ag_last_error());
    ag_dual_level_end();
    ag_scope_end();
}

/* det's tangent d·tr(A⁻¹·dA) needs A invertible: a singular A is an error, not a NaN. */
static void check_det_singular(void) {
    ag_scope_begin();
    ag_tensor *a = ag_from_data((double[]){1, 2, 2, 4}, AG_SHAPE(2, 2), AG_F64);
    ag_tensor *t = ag_from_data((double[]){1, 0, 0, 1}, AG_SHAPE(2, 2), AG_F64);
    ag_tensor *y = NULL, *jv = NULL;
    ag_dual_level_begin();
    ag_tensor *d = ag_linalg_det(ag_make_dual(a, t));
    ok(d && item(d) == 0 && ag_tangent(d) == NULL && ag_last_status() == AG_ERR_VALUE,
       "det of a singular dual: the value 0, no tangent, AG_ERR_VALUE (%s)", ag_last_error());
    ag_dual_level_end();
    ag_tensor *in[1] = {ag_from_data((double[]){2, 1, 1, 3}, AG_SHAPE(2, 2), AG_F64)};
    ok(ag_jvp(unary_det, NULL, in, 1, &t, &y, &jv) == AG_OK && fabs(item(y) - 5) < 1e-12 && fabs(item(jv) - 5) < 1e-12,
       "det [[2, 1], [1, 3]] = 5, tangent along I = d·tr(A⁻¹) = 5");
    ag_scope_end();
}

/* max |a - b|, INFINITY when either is missing */
static double gap(ag_tensor *a, ag_tensor *b) { return a && b ? item(ag_max(ag_abs(ag_sub(a, b)))) : INFINITY; }

/* The in-place ops of ops/inplace.c on dual tensors: the tangent each leaves equals the
 * tangent of the out-of-place op it stands for (test_ops_jvp checks those), in grad
 * mode with a recorded write and in no-grad mode. */
typedef enum { I_ADD, I_SUB, I_MUL, I_DIV, I_MUL_SELF, I_DIV_SELF, I_ADD_SCALAR, I_MUL_SCALAR, I_CLAMP, I_RELU,
               I_MASKED_FILL, I_FILL, I_ZERO, I_COPY, I_COUNT } inplace_kind;
static const char *const INPLACE_NAMES[I_COUNT] = {"add_", "sub_", "mul_", "div_", "mul_ (itself)", "div_ (itself)",
                                                   "add_scalar_", "mul_scalar_", "clamp_", "relu_", "masked_fill_",
                                                   "fill_", "zero_", "copy_"};

/* a op= w in place (a returned), or the out-of-place twin of x and w when twin */
static ag_tensor *inplace_op(inplace_kind k, ag_tensor *a, ag_tensor *w, ag_tensor *mask, bool twin) {
    switch (k) {
    case I_ADD: return twin ? ag_add(a, ag_mul_scalar(w, 0.5)) : ag_add_(a, w, 0.5);
    case I_SUB: return twin ? ag_sub(a, w) : ag_sub_(a, w);
    case I_MUL: return twin ? ag_mul(a, w) : ag_mul_(a, w);
    case I_DIV: return twin ? ag_div(a, w) : ag_div_(a, w);
    case I_MUL_SELF: return twin ? ag_mul(a, a) : ag_mul_(a, a);
    case I_DIV_SELF: return twin ? ag_div(a, a) : ag_div_(a, a);
    case I_ADD_SCALAR: return twin ? ag_add_scalar(a, 2) : ag_add_scalar_(a, 2);
    case I_MUL_SCALAR: return twin ? ag_mul_scalar(a, -3) : ag_mul_scalar_(a, -3);
    case I_CLAMP: return twin ? ag_clamp(a, -0.5, 0.7) : ag_clamp_(a, -0.5, 0.7);
    case I_RELU: return twin ? ag_relu(a) : ag_relu_(a);
    case I_MASKED_FILL: return twin ? ag_masked_fill(a, mask, 4) : ag_masked_fill_(a, mask, 4);
    case I_FILL: return twin ? ag_add_scalar(ag_mul_scalar(a, 0), 1.5) : ag_fill_(a, 1.5);
    case I_ZERO: return twin ? ag_mul_scalar(ag_sub(a, a), 0) : ag_zero_(a);
    case I_COPY: return twin ? ag_add(ag_mul_scalar(a, 0), w) : ag_copy_(a, w);
    case I_COUNT: break;
    }
    return NULL;
}

static void check_inplace_tangents(void) {
    ag_scope_begin();
    ag_manual_seed(11);
    ag_tensor *x0 = ag_randn(AG_SHAPE(3, 4), AG_F64), *tx = ag_randn(AG_SHAPE(3, 4), AG_F64);
    ag_tensor *w0 = ag_add_scalar(ag_rand(AG_SHAPE(4), AG_F64), 0.5), *tw = ag_randn(AG_SHAPE(4), AG_F64);
    ag_tensor *mask = ag_gt(ag_randn(AG_SHAPE(3, 4), AG_F64), ag_zeros(AG_SHAPE(1), AG_F64));
    for (int grad = 1; grad >= 0; grad--) {
        ag_tensor *xg = ag_requires_grad_(ag_clone(x0), grad);
        int good = 0;
        for (int k = 0; k < I_COUNT; k++) {
            ag_dual_level_begin();
            if (!grad) ag_no_grad_begin();
            ag_tensor *x = ag_make_dual(xg, tx), *w = ag_make_dual(w0, tw);
            ag_tensor *a = ag_mul_scalar(x, 1); /* a non-leaf, carrying tx */
            ag_tensor *ref = inplace_op(k, x, w, mask, true), *r = inplace_op(k, a, w, mask, false);
            double dv = gap(r, ref), dt = gap(ag_tangent(r), ag_tangent(ref));
            bool same = r == a && dv < 1e-15 && dt < 1e-14 && (!grad || ag_requires_grad(a));
            if (!grad) ag_no_grad_end();
            if (ag_dual_level_end() == AG_OK && same) good++;
            else diag("%s: values %.3g, tangents %.3g (%s)", INPLACE_NAMES[k], dv, dt, ag_last_error());
        }
        ok(good == I_COUNT, "%s mode: %d of the %d in-place updates of a dual tensor leave the tangent of their "
           "out-of-place twin", grad ? "grad" : "no-grad", good, I_COUNT);
    }

    ag_dual_level_begin();
    ag_tensor *w = ag_make_dual(w0, tw);
    /* a plain tensor updated by a dual operand gets its first tangent (broadcast), as in PyTorch */
    ag_tensor *z = ag_zeros(AG_SHAPE(3, 4), AG_F64);
    ag_tensor *tz = ag_add_(z, w, 2) ? ag_tangent(z) : NULL;
    ok(gap(tz, ag_expand(ag_mul_scalar(tw, 2), AG_SHAPE(3, 4))) == 0, "z += 2·w for a plain z: z's tangent is 2·tw");
    /* a view's update writes into the base's tangent (the view's tangent is a view of it) */
    ag_tensor *b = ag_mul_scalar(ag_make_dual(x0, tx), 1), *row = ag_select(b, 0, 1);
    ag_mul_(row, w);
    ag_tensor *want = ag_clone(tx), *wrow = ag_select(want, 0, 1);
    ag_no_grad_begin();
    ag_copy_(wrow, ag_add(ag_mul(ag_select(tx, 0, 1), w0), ag_mul(ag_select(x0, 0, 1), tw)));
    ag_no_grad_end();
    ok(gap(ag_tangent(b), want) < 1e-15 && gap(ag_tangent(row), ag_select(want, 0, 1)) < 1e-15,
       "b[1] *= w through a view: the base's tangent row is tx·w + x·tw, the others unchanged");
    /* a view that carries no tangent cannot take one from its operand: its base would not follow */
    ag_tensor *zz = ag_zeros(AG_SHAPE(3, 4), AG_F64), *zv = ag_select(zz, 0, 0);
    ok(ag_add_(zv, w, 1) == NULL && ag_last_status() == AG_ERR_GRAPH && strstr(ag_last_error(), "carries no tangent") &&
           item(ag_sum(ag_abs(zz))) == 0,
       "a view without a tangent updated by a dual: AG_ERR_GRAPH, nothing written (%s)", ag_last_error());
    /* the tangent make_dual was given is the dual's own: updated in place, as PyTorch's */
    ag_tensor *tv = ag_clone(tx), *dx = ag_make_dual(ag_clone(x0), tv);
    ag_mul_scalar_(dx, 2);
    ok(gap(ag_tangent(dx), ag_mul_scalar(tx, 2)) == 0 && gap(tv, ag_mul_scalar(tx, 2)) == 0,
       "x *= 2 on make_dual's result: its tangent, the one given, doubles in place (as PyTorch)");
    /* the random fills make a dual's tangent zero (written in place: a view's tangent follows) */
    ag_tensor *fills[3] = {ag_mul_scalar(ag_make_dual(x0, tx), 1), ag_mul_scalar(ag_make_dual(x0, tx), 1),
                           ag_mul_scalar(ag_make_dual(x0, tx), 1)};
    ag_tensor *fv = ag_select(fills[0], 0, 2);
    ag_tangent(fv); /* computed before the write (the fills, in core/, do not flush pending tangents) */
    ag_uniform_(fills[0], 0, 1), ag_normal_(fills[1], 0, 1), ag_exponential_(fills[2], 1);
    ok(item(ag_sum(ag_abs(ag_tangent(fills[0])))) == 0 && item(ag_sum(ag_abs(ag_tangent(fills[1])))) == 0 &&
           item(ag_sum(ag_abs(ag_tangent(fills[2])))) == 0 && item(ag_sum(ag_abs(ag_tangent(fv)))) == 0,
       "uniform_, normal_, exponential_ on a dual: its tangent (and a view's) is zero");
    /* an expanded tangent (its elements share memory) cannot be written in place: it is replaced */
    ag_tensor *te = ag_expand(tw, AG_SHAPE(3, 4)), *de = ag_make_dual(ag_clone(x0), te);
    ag_mul_scalar_(de, 2);
    ok(gap(ag_tangent(de), ag_mul_scalar(te, 2)) == 0 && gap(tw, ag_select(te, 0, 0)) == 0,
       "x *= 2 with an expanded tangent: the tangent is replaced by 2·t, the expanded one untouched");
    /* a tangent that is a leaf requiring grad cannot be written in place: refused before the write */
    ag_tensor *leaf_t = ag_requires_grad_(ag_clone(tx), true), *dl = ag_make_dual(ag_clone(x0), leaf_t);
    ag_tensor *before = ag_clone(dl);
    ok(ag_mul_scalar_(dl, 2) == NULL && ag_last_status() == AG_ERR_GRAPH && strstr(ag_last_error(), "tangent") &&
           gap(dl, before) == 0,
       "a tangent that is a leaf requiring grad: AG_ERR_GRAPH, unchanged (%s)", ag_last_error());
    /* reverse mode through a recorded in-place update of a dual: the gradient is the built-in's */
    ag_tensor *xr = ag_requires_grad_(ag_clone(x0), true), *ar = ag_mul_scalar(ag_make_dual(xr, tx), 1);
    ag_mul_(ar, w);
    ok(ag_backward(ag_sum(ar)) == AG_OK && gap(ag_grad(xr), ag_expand(w0, AG_SHAPE(3, 4))) == 0,
       "backward through a dual updated in place: dx = w");
    ok(ag_dual_level_end() == AG_OK, "the level closes");
    ag_scope_end();
}

int main(void) {
    check_inplace_tangents();
    ag_scope_begin();
    ag_tensor *x = ag_from_data((double[]){1, 2, 3}, AG_SHAPE(3), AG_F64);
    ag_tensor *v = ag_from_data((double[]){1, 0, -1}, AG_SHAPE(3), AG_F64);

    /* levels */
    ok(!ag_dual_level_open(), "no dual level is open at first");
    ok(ag_make_dual(x, v) == NULL && ag_last_status() == AG_ERR_GRAPH, "make_dual without a level: AG_ERR_GRAPH (%s)",
       ag_last_error());
    ok(ag_dual_level_end() == AG_ERR_GRAPH, "ending no level: AG_ERR_GRAPH (%s)", ag_last_error());
    ok(ag_dual_level_begin() == AG_OK && ag_dual_level_open(), "a level opens");
    ok(ag_dual_level_begin() == AG_ERR_GRAPH && strstr(ag_last_error(), "nested"),
       "a second level while one is open: AG_ERR_GRAPH (%s)", ag_last_error());

    /* make_dual's checks */
    ag_clear_error();
    ok(ag_make_dual(x, NULL) == NULL && ag_last_status() == AG_OK,
       "NULL tangent (a failed op's result): NULL, no new error, as every op");
    ag_tensor *v2 = ag_zeros(AG_SHAPE(2), AG_F64);
    ok(ag_make_dual(x, v2) == NULL && ag_last_status() == AG_ERR_SHAPE, "tangent [2] for primal [3]: AG_ERR_SHAPE (%s)",
       ag_last_error());
    ok(ag_make_dual(x, ag_zeros(AG_SHAPE(3), AG_F32)) == NULL && ag_last_status() == AG_ERR_DTYPE,
       "float32 tangent for a float64 primal: AG_ERR_DTYPE (%s)", ag_last_error());
    ok(ag_make_dual(ag_zeros(AG_SHAPE(3), AG_I64), ag_zeros(AG_SHAPE(3), AG_I64)) == NULL &&
           ag_last_status() == AG_ERR_DTYPE, "an int64 primal: AG_ERR_DTYPE (%s)", ag_last_error());

    /* a tangent through ops: d/dε Σ (x + εv) = Σ v = 0, and Σ 2(x + εv) · ... */
    ag_tensor *d = ag_make_dual(x, v);
    ok(d && ag_tangent(d) && ag_tangent(x) == NULL, "the dual carries the tangent, the primal does not");
    ag_tensor *s = ag_sum(ag_reshape(d, AG_SHAPE(3, 1)));
    close_to(item(ag_tangent(s)), 0.0, 1e-12, "tangent of sum(reshape(dual)) = Σ v = 0");
    ag_tensor *m = ag_mean(d);
    close_to(item(ag_tangent(m)), 0.0, 1e-12, "tangent of mean = mean of v = 0");
    ag_tensor *w = ag_from_data((double[]){3, 5, 7}, AG_SHAPE(3), AG_F64);
    ag_tensor *p = ag_matmul(ag_reshape(d, AG_SHAPE(1, 3)), ag_reshape(w, AG_SHAPE(3, 1)));
    close_to(item(ag_reshape(ag_tangent(p), AG_SCALAR_SHAPE)), 3.0 - 7.0, 1e-12, "tangent of x·w = v·w = -4");
    ag_clear_error();
    ok(ag_tangent(ag_argmax(d, 0, false)) == NULL && ag_last_status() == AG_OK,
       "an integer result carries no tangent, and that is no error");

    /* no-grad mode: tangents still flow, nothing is recorded */
    ag_no_grad_begin();
    ag_tensor *q = ag_sum(d);
    ag_no_grad_end();
    ok(q && ag_tangent(q) && !ag_requires_grad(q) && ag_is_leaf(q), "in no-grad mode the result has a tangent and no node");

    /* reverse mode through a dual tensor: the dual is differentiable as its primal */
    ag_tensor *xr = ag_requires_grad_(ag_from_data((double[]){1, 2, 3}, AG_SHAPE(3), AG_F64), true);
    ag_tensor *dr = ag_make_dual(xr, v);
    ag_tensor *l = ag_sum(dr);
    ok(ag_backward(l) == AG_OK && ag_grad(xr) && item(ag_sum(ag_grad(xr))) == 3.0,
       "backward through a dual tensor reaches its primal (grad 1 each)");

    /* the tangent dropped with its level */
    ag_tensor *kept = s;
    ok(ag_dual_level_end() == AG_OK && !ag_dual_level_open(), "the level closes");
    ok(ag_tangent(kept) == NULL && ag_tangent(d) == NULL, "after the level, no tensor has a tangent");
    ag_tensor *after = ag_sum(d);
    ok(after && ag_tangent(after) == NULL, "ops after the level carry no tangent");
    ok(ag_dual_level_begin() == AG_OK && ag_tangent(d) == NULL && ag_dual_level_end() == AG_OK,
       "a new level does not see the old level's tangents");
    ag_scope_end();
    check_functional();
    check_det_singular();
    ok(ag_live_tensors() == 0, "no tensor outlives the test (%ld live)", ag_live_tensors());
    return tap_done();
}

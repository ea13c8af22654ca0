/*
 * In-place ops inside a graph (PyTorch semantics): each in-place arithmetic op on
 * a non-leaf that requires grad (and with an operand that requires grad) is
 * recorded, and its gradients equal those of the out-of-place composition; a
 * gradcheck of a function built from in-place ops; chains; an operand that is the
 * tensor itself; a leaf not requiring grad updated from one that does; consumers
 * recorded before the update (also past the third input); the version check on a
 * tensor saved before an update; the leaf, view and dtype refusals; no-grad
 * updates of leaves (optimizers); retain_grad.  Every check ends with no tensor
 * alive.
 */
#include <math.h>
#include <string.h>
#include "agrad/agrad.h"
#include "tap.h"

static bool has(const char *text, const char *part) { return text && strstr(text, part) != NULL; }

/* max |a - b| over two tensors of one shape (INFINITY when either is missing). */
static double max_diff(const ag_tensor *a, const ag_tensor *b) {
    if (!a || !b || ag_numel(a) != ag_numel(b)) return INFINITY;
    ag_scope_begin();
    ag_tensor *x = ag_contiguous(ag_to_dtype((ag_tensor *)a, AG_F64)), *y = ag_contiguous(ag_to_dtype((ag_tensor *)b, AG_F64));
    const double *p = ag_data(x), *q = ag_data(y);
    double m = 0;
    for (int64_t i = 0; i < ag_numel(x); i++) m = fmax(m, fabs(p[i] - q[i]));
    ag_scope_end();
    return m;
}

/* A float64 tensor of shape s with values spread over [lo, hi], away from 0 when lo > 0. */
static ag_tensor *values(ag_shape s, double lo, double hi, bool grad) {
    ag_tensor *t = ag_empty(s, AG_F64);
    double *p = ag_data(t);
    int64_t n = ag_numel(t);
    for (int64_t k = 0; k < n; k++) p[k] = lo + (hi - lo) * (double)((k * 7) % n + 0.5) / (double)n;
    return grad ? ag_requires_grad_(t, true) : t;
}

/* ---- each op against its out-of-place composition ------------------------------------------- */
typedef struct op_case {
    const char *name, *grad_fn;
    ag_tensor *(*inplace)(ag_tensor *y, ag_tensor *w); /* updates y, returns it */
    ag_tensor *(*outofplace)(ag_tensor *y, ag_tensor *w);
} op_case;

static ag_tensor *ip_add(ag_tensor *y, ag_tensor *w) { return ag_add_(y, w, 0.5); }
static ag_tensor *op_add(ag_tensor *y, ag_tensor *w) { return ag_add(y, ag_mul_scalar(w, 0.5)); }
static ag_tensor *ip_sub(ag_tensor *y, ag_tensor *w) { return ag_sub_(y, w); }
static ag_tensor *op_sub(ag_tensor *y, ag_tensor *w) { return ag_sub(y, w); }
static ag_tensor *ip_mul(ag_tensor *y, ag_tensor *w) { return ag_mul_(y, w); }
static ag_tensor *op_mul(ag_tensor *y, ag_tensor *w) { return ag_mul(y, w); }
static ag_tensor *ip_div(ag_tensor *y, ag_tensor *w) { return ag_div_(y, w); }
static ag_tensor *op_div(ag_tensor *y, ag_tensor *w) { return ag_div(y, w); }
static ag_tensor *ip_adds(ag_tensor *y, ag_tensor *w) { return (void)w, ag_add_scalar_(y, 1.5); }
static ag_tensor *op_adds(ag_tensor *y, ag_tensor *w) { return (void)w, ag_add_scalar(y, 1.5); }
static ag_tensor *ip_muls(ag_tensor *y, ag_tensor *w) { return (void)w, ag_mul_scalar_(y, -3); }
static ag_tensor *op_muls(ag_tensor *y, ag_tensor *w) { return (void)w, ag_mul_scalar(y, -3); }
static ag_tensor *ip_clamp(ag_tensor *y, ag_tensor *w) { return (void)w, ag_clamp_(y, 1, 3); }
static ag_tensor *op_clamp(ag_tensor *y, ag_tensor *w) { return (void)w, ag_clamp(y, 1, 3); }
static ag_tensor *ip_crelu(ag_tensor *y, ag_tensor *w) { return (void)w, ag_clamp_(y, 0, INFINITY); }
static ag_tensor *op_relu(ag_tensor *y, ag_tensor *w) { return (void)w, ag_relu(y); }
static ag_tensor *ip_relu(ag_tensor *y, ag_tensor *w) { return (void)w, ag_relu_(y); }
/* masked_fill_ where y > w (broadcast): the mask is recorded, not differentiated. */
static ag_tensor *ip_mfill(ag_tensor *y, ag_tensor *w) { return ag_masked_fill_(y, ag_gt(y, w), -0.25); }
static ag_tensor *op_mfill(ag_tensor *y, ag_tensor *w) { return ag_masked_fill(y, ag_gt(y, w), -0.25); }
/* copy_ of w broadcast: y's old value gets no gradient, w gets dy summed over rows. */
static ag_tensor *ip_copy(ag_tensor *y, ag_tensor *w) { return ag_copy_(y, w); }
static ag_tensor *op_copy(ag_tensor *y, ag_tensor *w) { return ag_add(ag_mul_scalar(y, 0), w); }
static ag_tensor *ip_fill(ag_tensor *y, ag_tensor *w) { return (void)w, ag_fill_(y, 2.5); }
static ag_tensor *op_fill(ag_tensor *y, ag_tensor *w) { return (void)w, ag_add_scalar(ag_mul_scalar(y, 0), 2.5); }
static ag_tensor *ip_zero(ag_tensor *y, ag_tensor *w) { return (void)w, ag_zero_(y); }
static ag_tensor *op_zero(ag_tensor *y, ag_tensor *w) { return (void)w, ag_mul_scalar(y, 0); }

static const op_case cases[] = {
    {"add_", "AddBackward0", ip_add, op_add},       {"sub_", "SubBackward0", ip_sub, op_sub},
    {"mul_", "MulBackward0", ip_mul, op_mul},       {"div_", "DivBackward0", ip_div, op_div},
    {"add_scalar_", "AddBackward0", ip_adds, op_adds}, {"mul_scalar_", "MulBackward0", ip_muls, op_muls},
    {"clamp_", "ClampBackward1", ip_clamp, op_clamp}, {"clamp_ as relu_", "ClampBackward1", ip_crelu, op_relu},
    {"relu_", "ReluBackward0", ip_relu, op_relu},   {"masked_fill_", "MaskedFillBackward0", ip_mfill, op_mfill},
    {"copy_", "CopyBackwards", ip_copy, op_copy},   {"fill_", "FillBackward0", ip_fill, op_fill},
    {"zero_", "ZeroBackward0", ip_zero, op_zero},
};

/* loss = sum(f(x·2 - 1, w) · c), f in place or not; the gradients of x and w land in gx, gw. */
static ag_status grads(const op_case *oc, bool inplace, ag_tensor **gx, ag_tensor **gw, const char **grad_fn) {
    ag_tensor *x = values(AG_SHAPE(2, 3), -1, 2, true), *w = values(AG_SHAPE(3), 0.5, 2, true);
    ag_tensor *c = values(AG_SHAPE(2, 3), -2, 3, false);
    ag_scope_begin();
    ag_tensor *y = ag_add_scalar(ag_mul_scalar(x, 2), -1);
    ag_tensor *z = inplace ? oc->inplace(y, w) : oc->outofplace(y, w);
    if (inplace && z != y) z = NULL;
    *grad_fn = z ? ag_grad_fn_name(z) : NULL;
    ag_status st = ag_backward(ag_sum(ag_mul(z, c)));
    ag_scope_end();
    *gx = ag_retain(ag_grad(x)), *gw = ag_retain(ag_grad(w));
    ag_release(x), ag_release(w), ag_release(c);
    return st;
}

static void each_op(void) {
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const op_case *oc = &cases[k];
        long before = ag_live_tensors();
        ag_tensor *ix, *iw, *ox, *ow;
        const char *ifn, *ofn;
        ag_status si = grads(oc, true, &ix, &iw, &ifn), so = grads(oc, false, &ox, &ow, &ofn);
        ok(si == AG_OK && so == AG_OK, "%s on a non-leaf: backward runs (%s)", oc->name, si ? ag_last_error() : "ok");
        ok(ifn && strcmp(ifn, oc->grad_fn) == 0, "%s: grad_fn %s", oc->name, ifn ? ifn : "(none)");
        ok(max_diff(ix, ox) <= 1e-12, "%s: dL/dx equals the out-of-place composition's (%.3g)", oc->name, max_diff(ix, ox));
        ok((!iw && !ow) || (iw && ow && max_diff(iw, ow) <= 1e-12),
           "%s: dL/dw equals the out-of-place composition's (%.3g)", oc->name, iw && ow ? max_diff(iw, ow) : 0.0);
        ag_release(ix), ag_release(iw), ag_release(ox), ag_release(ow);
        ok(ag_live_tensors() == before, "%s: nothing left behind", oc->name);
    }
}

/* ---- gradcheck of a function made of in-place ops ------------------------------------------- */
static ag_tensor *inplace_fn(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    ag_tensor *y = ag_mul_scalar(in[0], 1.5);      /* y = 1.5 a */
    ag_mul_(y, in[1]);                             /* y *= b */
    ag_add_(y, in[1], -2);                         /* y -= 2 b */
    ag_div_(y, ag_add_scalar(ag_mul(in[1], in[1]), 1)); /* y /= b² + 1 */
    ag_clamp_(y, -0.8, 0.8);
    ag_tensor *z = ag_mul(in[0], in[0]);
    ag_mul_(z, ag_clone(y));                       /* z = a² · y (z.mul_(y) would save y) */
    ag_mul_(y, y);                                 /* y = y² */
    return ag_add(y, z);
}

static void gradcheck(void) {
    long before = ag_live_tensors();
    ag_tensor *in[2] = {values(AG_SHAPE(2, 3), -1, 1.3, true), values(AG_SHAPE(3), 0.4, 1.7, true)};
    ag_gradcheck_report r;
    ag_status st = ag_gradcheck(inplace_fn, NULL, in, 2, NULL, &r);
    ok(st == AG_OK && r.checked > 0, "gradcheck of a function of in-place ops on non-leaves (%lld entries, worst %.3g)",
       (long long)r.checked, r.error);
    ag_release(in[0]), ag_release(in[1]);
    ok(ag_live_tensors() == before, "gradcheck: nothing left behind");
}

/* The in-place ops inplace_fn leaves out: the scalar updates, relu_, masked_fill_, copy_,
 * fill_/zero_ (on a slice of a fresh tensor's copy) and t /= t. */
static ag_tensor *inplace_fn2(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    ag_tensor *y = ag_mul(in[0], in[1]);             /* y = a·b */
    ag_add_scalar_(y, 0.25);                         /* y += 0.25 */
    ag_mul_scalar_(y, -1.5);                         /* y *= -1.5 */
    ag_tensor *m = ag_gt(in[1], ag_scalar(1, AG_F64));
    ag_masked_fill_(y, m, 0.5);
    ag_relu_(y);                                     /* saves y: the last write to it */
    ag_tensor *w = ag_mul_scalar(in[1], 2);
    ag_tensor *c = ag_mul(in[0], in[0]);
    ag_copy_(c, w);                                  /* c = 2b (broadcast): a² forgotten */
    ag_tensor *d = ag_add_scalar(in[1], 1);
    ag_div_(d, d);                                   /* d = 1, derivative 0 */
    ag_tensor *f = ag_sin(in[0]);
    ag_zero_(f);
    return ag_add(ag_add(ag_mul(y, y), ag_mul(c, in[0])), ag_add(d, f));
}

/* Second derivatives through in-place ops on non-leaves (create_graph records their adjoints,
 * the old values carrying the old history's derivative): gradgradcheck of both functions. */
static void gradgradcheck(void) {
    long before = ag_live_tensors();
    ag_fn fns[2] = {inplace_fn, inplace_fn2};
    for (int k = 0; k < 2; k++) {
        ag_tensor *in[2] = {values(AG_SHAPE(2, 3), -1, 1.3, true), values(AG_SHAPE(3), 0.4, 1.7, true)};
        ag_gradcheck_report r;
        ag_status st = ag_gradgradcheck(fns[k], NULL, in, 2, NULL, &r);
        ok(st == AG_OK && r.checked > 0, "gradgradcheck of in-place function %d on non-leaves (%lld entries, margin %.3g, <= 0 passes)%s%s",
           k + 1, (long long)r.checked, r.error, st ? ": " : "", st ? ag_last_error() : "");
        ag_release(in[0]), ag_release(in[1]);
    }
    ok(ag_live_tensors() == before, "gradgradcheck: nothing left behind");

    /* t.mul_(t) and t.mul_(o) where the result overflowed: the old values cannot carry the
     * derivative (inf - inf); a clear error, not NaN. */
    ag_scope_begin();
    ag_tensor *x = ag_requires_grad_(ag_full(AG_SHAPE(2), 1e200, AG_F64), true);
    ag_tensor *o = ag_requires_grad_(ag_full(AG_SHAPE(2), 1e200, AG_F64), true);
    ag_tensor *y = ag_mul_scalar(x, 1);
    ag_mul_(y, o);
    ag_tensor *g[2] = {NULL, NULL};
    ag_grad_opts opts = {.create_graph = true};
    ag_tensor *sum = ag_sum(y), *ins[2] = {x, o};
    ag_status st = ag_autograd_grad(&sum, 1, ins, 2, NULL, &opts, g);
    ok(st == AG_ERR_VALUE && strstr(ag_last_error(), "mul_") && strstr(ag_last_error(), "finite"),
       "create_graph through mul_ with an infinite result: %s", ag_last_error());
    ag_scope_end();
}

/* ---- chains, self operand, leaves not requiring grad, earlier consumers --------------------- */
static void chains(void) {
    long before = ag_live_tensors();
    ag_tensor *x = values(AG_SHAPE(4), -1, 2, true), *w = values(AG_SHAPE(4), 0.5, 1.5, true);
    ag_tensor *x2 = values(AG_SHAPE(4), -1, 2, true), *w2 = values(AG_SHAPE(4), 0.5, 1.5, true);
    ag_scope_begin();
    /* y = x·2; y *= w; y += 1; y *= y; y.clamp_(0, 5) against the out-of-place chain. */
    ag_tensor *y = ag_mul_scalar(x, 2);
    ag_clamp_(ag_mul_(ag_add_scalar_(ag_mul_(y, w), 1), y), 0, 5);
    ag_tensor *r = ag_mul_scalar(x2, 2);
    r = ag_add_scalar(ag_mul(r, w2), 1);
    r = ag_clamp(ag_mul(r, r), 0, 5);
    ok(max_diff(y, r) == 0, "a chain of four in-place ops gives the out-of-place values");
    ag_status sy = ag_backward(ag_sum(y));
    ok(sy == AG_OK && ag_backward(ag_sum(r)) == AG_OK, "backward through the chain (%s)", sy ? ag_last_error() : "ok");
    ok(max_diff(ag_grad(x), ag_grad(x2)) <= 1e-12 && max_diff(ag_grad(w), ag_grad(w2)) <= 1e-12,
       "the chain's gradients equal the out-of-place ones (y.mul_(y) included)");
    ag_scope_end();

    /* A leaf not requiring grad updated from tensors that do: buf.copy_(w); buf.mul_(x). */
    ag_zero_grad(x), ag_zero_grad(w);
    ag_scope_begin();
    ag_tensor *buf = ag_zeros(AG_SHAPE(4), AG_F64);
    ok(ag_copy_(buf, w) && ag_mul_(buf, x) && ag_requires_grad(buf) && !ag_is_leaf(buf) &&
           strcmp(ag_grad_fn_name(buf), "MulBackward0") == 0,
       "a buffer updated in place from tensors requiring grad becomes a node (MulBackward0)");
    ok(ag_backward(ag_sum(buf)) == AG_OK && max_diff(ag_grad(x), w) == 0 && max_diff(ag_grad(w), x) == 0,
       "d(sum(w·x)) reaches x and w through copy_ and mul_");
    ag_scope_end();

    /* Consumers recorded before the update consumed the old value: z = y + 1 (add reads
     * nothing); then y *= 3; L = sum(z) + sum(y): dL/dx = 2 + 6 = 8. */
    ag_zero_grad(x);
    ag_scope_begin();
    y = ag_mul_scalar(x, 2);
    ag_tensor *z = ag_add_scalar(y, 1);
    ag_tensor *parts[4] = {y, x, x, y}; /* y also as input 3, past the inline inputs */
    ag_tensor *cat = ag_cat(parts, 4, 0);
    ag_mul_scalar_(y, 3);
    ag_tensor *cat2 = ag_cat(parts, 4, 0); /* recorded after: sees the new y */
    ag_status st = ag_backward(ag_add(ag_add(ag_sum(z), ag_sum(y)), ag_add(ag_sum(cat), ag_sum(cat2))));
    /* z: 2, y: 6, cat: 2 + 1 + 1 + 2, cat2: 6 + 1 + 1 + 6 */
    ag_tensor *expect = ag_full(AG_SHAPE(4), 2 + 6 + 6 + 14, AG_F64);
    ok(st == AG_OK && max_diff(ag_grad(x), expect) <= 1e-12,
       "consumers recorded before an in-place op get the old value's history, those after the new (%s)",
       st ? ag_last_error() : "ok");
    ag_scope_end();
    ag_release(x), ag_release(w), ag_release(x2), ag_release(w2);
    ok(ag_live_tensors() == before, "chains: nothing left behind");
}

/* ---- errors and modes ------------------------------------------------------------------------ */
static void errors(void) {
    long before = ag_live_tensors();
    ag_tensor *x = values(AG_SHAPE(2, 3), -1, 2, true), *w = values(AG_SHAPE(3), 0.5, 2, true);
    ag_scope_begin();
    /* Saved, then changed in place: y·y saves y; y.relu_(); backward fails. */
    ag_tensor *y = ag_mul_scalar(x, 2);
    ag_tensor *z = ag_mul(y, y);
    ok(ag_clamp_(y, 0, INFINITY) != NULL, "relu_ on a non-leaf that another op saved is allowed");
    ag_clear_error();
    ag_status st = ag_backward(ag_sum(z));
    ok(st == AG_ERR_GRAPH && has(ag_last_error(), "modified by an in-place operation") && !ag_grad(x),
       "backward through the op that saved it fails, nothing accumulated: %s", ag_last_error());
    /* An op that saves its output: e = exp(x); e *= 2. */
    ag_tensor *e = ag_exp(x);
    ag_mul_scalar_(e, 2);
    ag_clear_error();
    ok(ag_backward(ag_sum(e)) == AG_ERR_GRAPH && has(ag_last_error(), "the output of ExpBackward0"),
       "exp(x).mul_(2): exp's saved output was changed: %s", ag_last_error());

    /* A leaf that requires grad: refused in grad mode, nothing written. */
    ag_clear_error();
    double x0 = ag_item(ag_sum(x));
    ok(!ag_mul_scalar_(x, 2) && ag_last_status() == AG_ERR_GRAPH &&
           has(ag_last_error(), "a leaf tensor [2, 3] that requires grad is being used in an in-place operation") &&
           ag_item(ag_sum(x)) == x0,
       "in-place on a leaf requiring grad fails: %s", ag_last_error());
    /* In no-grad mode it is an optimizer step: allowed, not recorded. */
    ag_no_grad_begin();
    ag_tensor *step = ag_add_(x, w, -0.5);
    ag_no_grad_end();
    ok(step == x && ag_is_leaf(x) && ag_requires_grad(x) && !ag_grad_fn_name(x),
       "no-grad mode still updates leaves in place (optimizer steps), unrecorded");
    ag_no_grad_begin();
    ag_tensor *yy = ag_mul_scalar(x, 2);
    ok(yy && ag_mul_(yy, w) && !ag_requires_grad(yy), "in no-grad mode nothing is recorded");
    ag_no_grad_end();

    /* Integer destinations cannot require grad. */
    ag_tensor *ints = ag_zeros(AG_SHAPE(3), AG_I64);
    ag_clear_error();
    ok(!ag_copy_(ints, w) && ag_last_status() == AG_ERR_DTYPE, "copy_ of a tensor requiring grad into int64 fails");

    /* retain_grad keeps the gradient of the updated tensor. */
    ag_zero_grad(x);
    ag_tensor *r = ag_retain_grad(ag_mul_scalar(x, 2));
    ag_mul_scalar_(r, 3);
    ok(ag_backward(ag_sum(r)) == AG_OK && ag_grad(r) && ag_item(ag_sum(ag_grad(r))) == 6 &&
           ag_item(ag_sum(ag_grad(x))) == 36,
       "retain_grad on a tensor updated in place keeps dL/d(new value)");
    /* A second backward through a freed chain fails as any other. */
    ag_clear_error();
    ok(ag_backward(ag_sum(r)) == AG_ERR_GRAPH && has(ag_last_error(), "second time"), "a freed chain cannot run twice");
    ag_scope_end();
    ag_release(x), ag_release(w);
    ag_clear_error();
    ok(ag_live_tensors() == before, "errors: nothing left behind");
}

/* An operand computed from the tensor written in place: t.copy_(t + 1) and t.mul_(t.exp())
 * record no reference cycle (found by fuzz_api: three tensors were never freed) and
 * differentiate through t's old value. */
static void operand_from_target(void) {
    long live = ag_live_tensors();
    ag_tensor *x = ag_requires_grad_(ag_from_data((double[]){1, 2, 3}, AG_SHAPE(3), AG_F64), true);
    ag_tensor *t = ag_neg(x), *o = ag_add_scalar(t, 1);
    ag_tensor *r = ag_copy_(t, o); /* t = -x + 1: dt/dx = -1 */
    ag_tensor *loss = r ? ag_sum(t) : NULL;
    bool good = loss && ag_backward(loss) == AG_OK && ag_grad(x);
    for (int i = 0; good && i < 3; i++) good = ag_get(ag_grad(x), (int64_t[]){i}) == -1;
    ok(good, "t.copy_(t + 1) differentiates through t's old value (dx = -1)");
    ag_release(loss);
    ag_release(o);
    ag_release(t);
    ag_tensor *u = ag_neg(x), *e = ag_exp(u);
    r = ag_mul_(u, e); /* u = -x·e^-x */
    ag_release(e);
    ag_release(u);
    ag_release(x);
    ok(r && ag_live_tensors() == live, "nothing is left alive once the handles are released (%ld extra)",
       ag_live_tensors() - live);
}

/* ---- views (PyTorch's CopySlices) ---------------------------------------------------------- */
/* Each program writes through views of a non-leaf built from a [4, 3] and b [3], then
 * reads the base or other views; gradcheck compares backward with finite differences. */
static ag_tensor *vp_slice_step(ag_tensor *a, ag_tensor *b) { /* rows 0 and 2 times b */
    ag_tensor *y = ag_mul_scalar(a, 1.5);
    ag_mul_(ag_slice(y, 0, 0, 4, 2), b);
    return ag_mul(y, y);
}
static ag_tensor *vp_transpose_narrow(ag_tensor *a, ag_tensor *b) { /* a chain of views: y.T[:, 1:3] */
    ag_tensor *y = ag_mul_scalar(a, 1.5), *t = ag_transpose(y, 0, 1);
    ag_tensor *v = ag_narrow(t, 1, 1, 2);
    ag_div_(v, ag_unsqueeze(ag_add_scalar(ag_mul(b, b), 1), 1));
    ag_clamp_(v, -1, 1);
    return ag_add(ag_mul(y, a), ag_sum(ag_mul(t, t))); /* t was made before the writes */
}
static ag_tensor *vp_select_copy(ag_tensor *a, ag_tensor *b) { /* y[2] = 2b */
    ag_tensor *y = ag_add_scalar(a, 0);
    ag_copy_(ag_select(y, 0, 2), ag_mul_scalar(b, 2));
    return ag_mul(y, a);
}
static ag_tensor *vp_view_self(ag_tensor *a, ag_tensor *b) { /* a flat view, its middle squared in place */
    ag_tensor *y = ag_mul(a, b);
    ag_tensor *f = ag_narrow(ag_view(y, AG_SHAPE(12)), 0, 3, 6);
    ag_mul_(f, f);
    return y;
}
static ag_tensor *vp_two_views(ag_tensor *a, ag_tensor *b) { /* write through p, read through q (they overlap) */
    ag_tensor *y = ag_mul_scalar(a, 1.5);
    ag_tensor *p = ag_narrow(y, 0, 0, 3), *q = ag_narrow(y, 0, 1, 3);
    ag_tensor *before = ag_mul_scalar(q, 2); /* recorded before the write: q's old value */
    ag_mul_(p, b);
    return ag_add(before, ag_mul(q, q));
}
static ag_tensor *vp_copy_of_itself(ag_tensor *a, ag_tensor *b) { /* v.copy_(2v + b): nothing saves v */
    ag_tensor *y = ag_mul_scalar(a, 2);
    ag_tensor *v = ag_narrow(y, 0, 1, 2);
    ag_copy_(v, ag_add(ag_mul_scalar(v, 2), b));
    return ag_mul(y, y);
}
static ag_tensor *vp_chain(ag_tensor *a, ag_tensor *b) { /* writes through views and to the base, in turn */
    ag_tensor *y = ag_mul_scalar(a, 1);
    ag_mul_scalar_(ag_narrow(y, 0, 0, 2), 3);
    ag_add_(ag_select(y, 1, 1), ag_select(y, 1, 2), 0.5); /* a column from another view of y */
    ag_sub_(y, b);
    ag_tensor *r = ag_narrow(y, 1, 0, 2);
    ag_mul_(r, r);
    return ag_mul(y, y);
}
static ag_tensor *vp_buffer(ag_tensor *a, ag_tensor *b) { /* a buffer requiring no grad filled through views */
    ag_tensor *buf = ag_zeros(AG_SHAPE(4, 3), AG_F64), *top = ag_narrow(buf, 0, 0, 3);
    ag_copy_(ag_narrow(buf, 0, 1, 2), ag_narrow(a, 0, 2, 2));
    ag_add_(ag_select(buf, 1, 0), ag_narrow(b, 0, 0, 1), 1);
    return ag_mul(top, top); /* top was made before buf required grad */
}
static ag_tensor *vp_expand_row(ag_tensor *a, ag_tensor *b) { /* one row of an expanded view */
    ag_tensor *y = ag_mul_scalar(ag_select(a, 0, 1), 1);
    ag_tensor *e = ag_expand(ag_view(y, AG_SHAPE(1, 3)), AG_SHAPE(4, 3));
    ag_mul_(ag_select(e, 0, 2), b);
    return ag_mul(e, a); /* e's four rows are y's elements */
}

typedef struct view_prog {
    const char *name;
    ag_tensor *(*fn)(ag_tensor *a, ag_tensor *b);
} view_prog;

static const view_prog view_progs[] = {
    {"a slice with a step", vp_slice_step},     {"a narrow of a transpose", vp_transpose_narrow},
    {"select, copy_", vp_select_copy},          {"a flat view times itself", vp_view_self},
    {"two overlapping views", vp_two_views},    {"copy_ of an expression of the view", vp_copy_of_itself},
    {"a chain of writes", vp_chain},            {"a buffer requiring no grad", vp_buffer},
    {"a row of an expanded view", vp_expand_row},
};

static ag_tensor *run_view_prog(ag_tensor *const *in, int n, void *ctx) {
    (void)n;
    return ((const view_prog *)ctx)->fn(in[0], in[1]);
}

static void views_gradcheck(void) {
    for (size_t k = 0; k < sizeof view_progs / sizeof view_progs[0]; k++) {
        long before = ag_live_tensors();
        ag_tensor *in[2] = {values(AG_SHAPE(4, 3), -1.2, 1.4, true), values(AG_SHAPE(3), 0.4, 1.7, true)};
        ag_gradcheck_report r;
        ag_gradcheck_opts o = {.eps = 1e-6, .atol = 1e-7, .rtol = 1e-6};
        ag_status st = ag_gradcheck(run_view_prog, (void *)&view_progs[k], in, 2, &o, &r);
        ok(st == AG_OK && r.checked >= 9 * 15,
           "views, %s: gradcheck (%lld entries, worst %.3g)%s%s", view_progs[k].name, (long long)r.checked, r.error,
           st ? ": " : "", st ? ag_last_error() : "");
        ag_release(in[0]), ag_release(in[1]);
        ok(ag_live_tensors() == before, "views, %s: nothing left behind", view_progs[k].name);
    }
}

static void views(void) {
    long before = ag_live_tensors();
    ag_tensor *x = ag_requires_grad_(ag_from_data((double[]){1, 2, 3, 4, 5}, AG_SHAPE(5), AG_F64), true);
    ag_scope_begin();
    /* y = x.clone(); y[1:3].mul_(2); y.sum().backward(): dx = [1, 2, 2, 1, 1]. */
    ag_tensor *y = ag_clone(x), *v = ag_slice(y, 0, 1, 3, 1);
    ok(ag_mul_scalar_(v, 2) == v && ag_get(y, (int64_t[]){2}) == 6, "y[1:3].mul_(2) writes y");
    ok(strcmp(ag_grad_fn_name(y), "CopySlices") == 0 && strcmp(ag_grad_fn_name(v), "AsStridedBackward0") == 0,
       "the base's node is CopySlices, the view's AsStridedBackward0 (as PyTorch's)");
    ag_status st = ag_backward(ag_sum(y));
    bool good = st == AG_OK && ag_grad(x);
    for (int i = 0; good && i < 5; i++) good = ag_get(ag_grad(x), (int64_t[]){i}) == (i == 1 || i == 2 ? 2 : 1);
    ok(good, "y.sum().backward() gives dx = [1, 2, 2, 1, 1] (%s)", st ? ag_last_error() : "ok");
    ag_scope_end();

    /* A buffer requiring no grad becomes a node when a view of it is written from x;
     * another view made before then sees it. */
    ag_zero_grad(x);
    ag_scope_begin();
    ag_tensor *buf = ag_zeros(AG_SHAPE(5), AG_F64), *lo = ag_narrow(buf, 0, 0, 3), *hi = ag_narrow(buf, 0, 2, 3);
    ok(!ag_requires_grad(hi), "a view of a buffer does not require grad");
    ag_copy_(lo, ag_narrow(x, 0, 0, 3));
    ok(ag_requires_grad(buf) && !ag_is_leaf(buf) && ag_requires_grad(hi) && !ag_is_leaf(hi) &&
           strcmp(ag_grad_fn_name(hi), "AsStridedBackward0") == 0,
       "after lo.copy_(x[:3]) the buffer and its other view hi require grad (hi: AsStridedBackward0)");
    st = ag_backward(ag_sum(ag_mul(hi, hi)));
    good = st == AG_OK && ag_grad(x);
    for (int i = 0; good && i < 5; i++) good = ag_get(ag_grad(x), (int64_t[]){i}) == (i == 2 ? 6 : 0);
    ok(good, "sum(hi²) reaches x[2] only, through the copy: dx = [0, 0, 6, 0, 0] (%s)", st ? ag_last_error() : "ok");
    ag_scope_end();

    /* A write to the base is seen by a view made before it: v = y[1:3]; y.mul_(2); sum(v²). */
    ag_zero_grad(x);
    ag_scope_begin();
    y = ag_clone(x);
    v = ag_narrow(y, 0, 1, 2);
    ag_mul_scalar_(y, 2);
    st = ag_backward(ag_sum(ag_mul(v, v)));
    good = st == AG_OK && ag_grad(x);
    for (int i = 0; good && i < 5; i++) good = ag_get(ag_grad(x), (int64_t[]){i}) == (i == 1 ? 16 : i == 2 ? 24 : 0);
    ok(good, "a view made before a write to its base differentiates its new values: dx = 8x on [1:3] (%s)",
       st ? ag_last_error() : "ok");
    ag_scope_end();

    /* The version counter still catches a saved tensor changed later through a view. */
    ag_zero_grad(x);
    ag_scope_begin();
    y = ag_mul_scalar(x, 1);
    ag_tensor *sq = ag_mul(y, y); /* saves y */
    ag_mul_scalar_(ag_narrow(y, 0, 1, 2), 2);
    ag_clear_error();
    ok(ag_backward(ag_sum(sq)) == AG_ERR_GRAPH && has(ag_last_error(), "modified by an in-place operation") &&
           !ag_grad(x),
       "a tensor saved by mul, then written through a view: backward fails: %s", ag_last_error());
    y = ag_mul_scalar(x, 1);
    v = ag_narrow(y, 0, 0, 2);
    ag_tensor *s = ag_sin(v); /* saves v */
    ag_add_scalar_(y, 1);
    ag_clear_error();
    ok(ag_backward(ag_sum(s)) == AG_ERR_GRAPH && has(ag_last_error(), "modified by an in-place operation"),
       "a view saved by sin, then its base written: backward fails: %s", ag_last_error());
    ag_scope_end();

    /* A view of a leaf kept across unrecorded updates of the leaf (optimizer steps) is
     * not refreshed: its node stays the slice, and nothing piles up per step (the
     * graph is retained: a backward frees the view's node as any other). */
    ag_tensor *kept = ag_narrow(x, 0, 1, 3);
    long live = ag_live_tensors();
    for (int step = 0; step < 5; step++) {
        ag_scope_begin();
        ag_status sk = ag_backward_ex(ag_sum(ag_mul(kept, kept)), NULL, true);
        ag_no_grad_begin();
        ag_add_(x, ag_grad(x), -0.01);
        ag_no_grad_end();
        ag_zero_grad(x);
        ag_scope_end();
        if (sk != AG_OK) live = -1;
    }
    ok(live == ag_live_tensors() && strcmp(ag_grad_fn_name(kept), "SliceBackward0") == 0,
       "a view of a leaf used across optimizer steps stays a slice, nothing left per step (%ld extra)",
       ag_live_tensors() - live);
    ag_release(kept);

    /* Refusals, as PyTorch's. */
    ag_scope_begin();
    ag_clear_error();
    double x0 = ag_item(ag_sum(x));
    ok(!ag_mul_scalar_(ag_narrow(x, 0, 1, 2), 2) && ag_last_status() == AG_ERR_GRAPH &&
           has(ag_last_error(), "a view [2] of a leaf tensor that requires grad is being used in an in-place operation") &&
           ag_item(ag_sum(x)) == x0,
       "in-place on a view of a leaf requiring grad fails, nothing written: %s", ag_last_error());
    ag_no_grad_begin();
    ag_tensor *w = ag_narrow(x, 0, 0, 2);
    ok(ag_mul_scalar_(w, 1) == w, "in no-grad mode a view of a leaf is updated in place (an optimizer step)");
    ag_no_grad_end();
    y = ag_clone(x);
    ag_no_grad_begin();
    w = ag_narrow(y, 0, 0, 2);
    ag_no_grad_end();
    ag_clear_error();
    ok(!ag_mul_scalar_(w, 2) && ag_last_status() == AG_ERR_GRAPH && has(ag_last_error(), "created in no-grad mode"),
       "a view made in no-grad mode cannot be written with grad mode on: %s", ag_last_error());
    ag_tensor *parts[2];
    ag_clear_error();
    ok(ag_split(y, 3, 0, parts, 2) == 2 && !ag_add_scalar_(parts[0], 1) && ag_last_status() == AG_ERR_GRAPH &&
           has(ag_last_error(), "several views"),
       "an output of split cannot be written in place: %s", ag_last_error());
    ag_tensor *e = ag_expand(ag_view(y, AG_SHAPE(1, 5)), AG_SHAPE(3, 5));
    ag_clear_error();
    ok(!ag_mul_scalar_(e, 2) && ag_last_status() == AG_ERR_ARG,
       "an expanded view (elements sharing memory) cannot be written in place: %s", ag_last_error());
    ag_scope_end();
    ag_release(x);
    ag_clear_error();
    ok(ag_live_tensors() == before, "views: nothing left behind");
}

/* Operands computed from the view written, from its base or from another view hold no
 * reference cycle: everything goes once the handles are released (no scope open). */
static void views_no_cycle(void) {
    long live = ag_live_tensors();
    ag_tensor *x = ag_requires_grad_(ag_from_data((double[]){1, 2, 3, 4}, AG_SHAPE(4), AG_F64), true);
    ag_tensor *y = ag_neg(x), *v = ag_narrow(y, 0, 1, 2), *u = ag_narrow(y, 0, 0, 2);
    ag_tensor *o1 = ag_add_scalar(v, 1), *o2 = ag_add(u, u), *o3 = ag_sum(y);
    bool good = ag_copy_(v, o1) && ag_add_(v, o2, 1) && ag_sub_(u, o3) && ag_add_(y, v, 1) == NULL;
    ag_clear_error(); /* y += v: shapes [4] and [2] do not broadcast */
    good = good && ag_mul_(y, u) == NULL;
    ag_clear_error();
    ag_tensor *last = ag_select(y, 0, 3), *o4 = ag_mul_scalar(last, 2); /* a 0-d view broadcast over y */
    good = good && ag_add_(y, o4, 1) == y;
    ag_tensor *loss = ag_sum(y);
    good = good && ag_backward(loss) == AG_OK;
    ag_tensor *all[] = {loss, o4, last, o3, o2, o1, u, v, y, x};
    for (size_t k = 0; k < sizeof all / sizeof all[0]; k++) ag_release(all[k]);
    ok(good && ag_live_tensors() == live, "operands from the view, its base and other views: nothing left alive (%ld extra)",
       ag_live_tensors() - live);
}

/* A view made a leaf that requires grad, written back into its own base: refused (recording it
 * would put the leaf inside its base's history, a cycle never freed; PyTorch fails at backward),
 * with nothing written or left behind; a clone of the view is fine. */
static void test_leaf_view_into_base(void) {
    long before = ag_live_tensors();
    ag_scope_begin();
    ag_tensor *x = ag_zeros(AG_SHAPE(2, 3), AG_F64), *v = ag_t(x);
    ok(ag_requires_grad_(v, true) != NULL, "a view of a tensor without grad made a leaf that requires grad");
    ok(ag_copy_(x, ag_t(ag_mul_scalar(v, 2))) == NULL && ag_last_status() == AG_ERR_GRAPH &&
           strstr(ag_last_error(), "copy_: the operand is computed from a view [3, 2] of the tensor [2, 3]") != NULL,
       "copy_ of x from its own leaf view refused: %s", ag_last_error());
    ok(ag_item(ag_sum(ag_abs(x))) == 0, "nothing written");
    ok(ag_add_(ag_select(x, 0, 1), ag_select(v, 1, 0), 1) == NULL && ag_last_status() == AG_ERR_GRAPH,
       "add_ into a view of x from the leaf view refused too");
    ag_tensor *c = ag_clone(v);
    ok(c && ag_copy_(x, ag_t(ag_detach(c))) == x, "from a detached clone: written");
    ag_scope_end();
    ok(ag_live_tensors() == before, "leaf view into its base: nothing left behind (%ld)", ag_live_tensors() - before);
}

/* A gradient written in place, in grad mode, from its own tensor (x.grad += x): refused, as
 * recording it would make x.grad hold x, a cycle never freed (PyTorch records it and leaks),
 * through a view of the gradient, an operand computed from x and a retained non-leaf's
 * .grad alike, with nothing written or left behind; a detached operand, no-grad mode and
 * an unrelated operand are fine.  Both steps of fuzz_api's seed-1 finding (session 18). */
static void test_grad_from_own_tensor(void) {
    long before = ag_live_tensors();
    ag_scope_begin();
    ag_tensor *x = ag_requires_grad_(ag_rand(AG_SHAPE(2, 3), AG_F64), true);
    ag_tensor *h = ag_tanh(x);
    ag_retain_grad(h);
    ok(ag_backward(ag_sum(ag_matmul(h, ag_t(h)))) == AG_OK, "backward of sum(tanh(x) tanh(x)^T)");
    ag_tensor *g = ag_grad(x), *keep = ag_clone(g);
    ok(ag_add_(g, x, 1) == NULL && ag_last_status() == AG_ERR_GRAPH &&
           strstr(ag_last_error(), "add_: the tensor [2, 3] being written is the .grad of a tensor [2, 3]") != NULL,
       "x.grad += x refused: %s", ag_last_error());
    ok(max_diff(g, keep) == 0 && !ag_requires_grad(g), "nothing written, the gradient still has no history");
    ok(ag_mul_(ag_select(g, 0, 1), ag_select(ag_mul_scalar(x, 2), 0, 0)) == NULL && ag_last_status() == AG_ERR_GRAPH,
       "a view of x.grad times a view of 2x refused");
    ok(ag_copy_(ag_grad(h), ag_sin(h)) == NULL && ag_last_status() == AG_ERR_GRAPH,
       "a retained non-leaf's .grad from its own tensor refused");
    ok(ag_add_(g, ag_detach(x), 1) == g && !ag_requires_grad(g) && max_diff(ag_sub(g, keep), x) < 1e-15,
       "from a detached operand: written, not recorded");
    ag_no_grad_begin();
    ok(ag_add_(g, x, -1) == g && max_diff(g, keep) < 1e-15, "in no-grad mode: written");
    ag_no_grad_end();
    ag_tensor *w = ag_requires_grad_(ag_ones(AG_SHAPE(2, 3), AG_F64), true);
    ok(ag_add_(g, w, 1) == g && ag_requires_grad(g) && !ag_is_leaf(g), "from an unrelated leaf: recorded");
    ag_scope_end();
    ok(ag_live_tensors() == before, "a gradient written from its own tensor: nothing left behind (%ld)",
       ag_live_tensors() - before);
}

int main(void) {
    each_op();
    gradcheck();
    gradgradcheck();
    chains();
    errors();
    operand_from_target();
    views_gradcheck();
    views();
    views_no_cycle();
    test_leaf_view_into_base();
    test_grad_from_own_tensor();
    return tap_done();
}

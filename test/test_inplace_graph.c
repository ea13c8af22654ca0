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
static ag_tensor *ip_relu(ag_tensor *y, ag_tensor *w) { return (void)w, ag_clamp_(y, 0, INFINITY); }
static ag_tensor *op_relu(ag_tensor *y, ag_tensor *w) { return (void)w, ag_relu(y); }
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
    {"clamp_", "ClampBackward1", ip_clamp, op_clamp}, {"clamp_ as relu_", "ClampBackward1", ip_relu, op_relu},
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

    /* Views: in-place on a view of a tensor requiring grad, or on a tensor with a view. */
    ag_tensor *b = ag_mul_scalar(x, 2);
    ag_tensor *v = ag_narrow(b, 0, 0, 1);
    ag_clear_error();
    ok(!ag_mul_scalar_(v, 3) && ag_last_status() == AG_ERR_GRAPH && has(ag_last_error(), "shares its storage"),
       "in-place on a view of a tensor requiring grad is refused: %s", ag_last_error());
    ag_clear_error();
    ok(!ag_mul_scalar_(b, 3) && ag_last_status() == AG_ERR_GRAPH, "so is in-place on a tensor with a live view");
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

int main(void) {
    each_op();
    gradcheck();
    chains();
    errors();
    operand_from_target();
    return tap_done();
}

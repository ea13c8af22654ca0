/*
 * functional.c - torch.autograd.functional on agrad: ag_vjp, ag_jacobian, ag_hessian,
 * ag_hvp and ag_vhp, on an ag_fn of several tensors (the callback ag_gradcheck takes).
 *
 * Each reverse-mode call evaluates fn, with grad mode on, on stand-ins of its inputs that require
 * grad: a leaf detached from the input (sharing its data), or, under create_graph for
 * an input that requires grad, a view of it, so that the results stay differentiable
 * in the caller's tensors.  The derivatives are then ag_autograd_grad passes: a
 * Jacobian in reverse mode takes one pass per output element (its rows), in forward
 * mode one ag_jvp per input element (its columns); a Hessian is
 * the reverse Jacobian of the gradient recorded with create_graph; vᵀH (ag_vhp) the
 * gradient of <grad f, v>, H v (ag_hvp) the tangent of the gradient along v.  Every intermediate
 * lives in a scope of the call's own; only the results leave it.
 */
#include <string.h>
#include "core/internal.h"
#include "agrad/autograd.h"
#include "agrad/ops.h"

#define MAX_INPUTS 64

static const ag_functional_opts default_opts;

typedef struct call {
    const char *name;
    ag_functional_opts o;
    int n;
    ag_tensor *in[MAX_INPUTS]; /* the stand-ins fn is evaluated on */
} call;

static bool floating(const ag_tensor *t) { return t->dtype == AG_F32 || t->dtype == AG_F64; }

static bool same_shape(const ag_tensor *a, const ag_tensor *b) {
    if (a->ndim != b->ndim) return false;
    for (int d = 0; d < a->ndim; d++)
        if (a->shape[d] != b->shape[d]) return false;
    return true;
}

static ag_status check_inputs(const char *name, ag_fn fn, ag_tensor *const *inputs, int n) {
    if (!fn || !inputs || n < 1 || n > MAX_INPUTS)
        return ag__fail(AG_ERR_ARG, "%s: needs a function and 1 to %d inputs (got %s, %d inputs)", name, MAX_INPUTS,
                        fn ? "a function" : "no function", inputs ? n : 0);
    for (int i = 0; i < n; i++)
        if (!inputs[i]) return ag__fail(AG_ERR_ARG, "%s: input %d is NULL", name, i);
    AG_CHECK_HANDLE_ARRAY(AG_ERR_ARG, name, inputs, n);
    char s[AG_SHAPE_STR];
    for (int i = 0; i < n; i++)
        if (!floating(inputs[i]))
            return ag__fail(AG_ERR_DTYPE, "%s: input %d, %s %s, is not floating", name, i,
                            ag_dtype_name(inputs[i]->dtype), ag__tshape(s, inputs[i]));
    return AG_OK;
}

/* The n tensors of v (one per input) are each of their input's shape and dtype. */
static ag_status check_vectors(const char *name, ag_tensor *const *inputs, int n, ag_tensor *const *v) {
    if (!v) return ag__fail(AG_ERR_ARG, "%s: v is NULL (one tensor per input is needed)", name);
    for (int i = 0; i < n; i++)
        if (!v[i]) return ag__fail(AG_ERR_ARG, "%s: v[%d] is NULL", name, i);
    AG_CHECK_HANDLE_ARRAY(AG_ERR_ARG, name, v, n);
    char s1[AG_SHAPE_STR], s2[AG_SHAPE_STR];
    for (int i = 0; i < n; i++)
        if (v[i]->dtype != inputs[i]->dtype || !same_shape(v[i], inputs[i]))
            return ag__fail(AG_ERR_SHAPE, "%s: v[%d], %s %s, is not like input %d, %s %s", name, i,
                            ag_dtype_name(v[i]->dtype), ag__tshape(s1, v[i]), i, ag_dtype_name(inputs[i]->dtype),
                            ag__tshape(s2, inputs[i]));
    return AG_OK;
}

/* The stand-ins of the inputs (in the call's scope). */
static ag_status stand_ins(call *c, ag_tensor *const *inputs) {
    for (int i = 0; i < c->n; i++) {
        ag_tensor *x = inputs[i];
        c->in[i] = c->o.create_graph && x->requires_grad ? ag_view(x, ag_shape_of(x))
                                                         : ag_requires_grad_(ag_detach(x), true);
        if (!c->in[i]) return ag_last_status() ? ag_last_status() : AG_ERR_NOMEM;
    }
    return AG_OK;
}

/* fn on the stand-ins, recorded; NULL with fn's error, or with AG_ERR_DTYPE for an
 * output that is not floating. */
static ag_tensor *evaluate(call *c, ag_fn fn, void *ctx) {
    ag_tensor *y = fn(c->in, c->n, ctx);
    if (!y && !ag_last_status()) return ag__fail_null(AG_ERR_ARG, "%s: the function returned NULL", c->name);
    if (!y) return NULL; /* with the function's own error */
    char s[AG_SHAPE_STR];
    if (!floating(y))
        return ag__fail_null(AG_ERR_DTYPE, "%s: the function's output, %s %s, is not floating", c->name,
                             ag_dtype_name(y->dtype), ag__tshape(s, y));
    return y;
}

static ag_status independent(const call *c, int i) {
    return ag__fail(AG_ERR_GRAPH, "%s: the output of the function is independent of input %d (strict)", c->name, i);
}

/* g[i] may be NULL (the output does not reach input i): an error under strict,
 * otherwise zeros of the input's shape. */
static ag_status fill_unused(const call *c, ag_tensor **g) {
    for (int i = 0; i < c->n; i++) {
        if (g[i]) continue;
        if (c->o.strict) return independent(c, i);
        if (!(g[i] = ag_zeros_like(c->in[i]))) return AG_ERR_NOMEM;
    }
    return AG_OK;
}

/* A tensor of shape s, zero but for a one at flat index k. */
static ag_tensor *unit(ag_shape s, ag_dtype dt, int64_t k) {
    ag_tensor *e = ag_zeros(s, dt);
    if (e && dt == AG_F64) ((double *)ag_data(e))[k] = 1;
    else if (e) ((float *)ag_data(e))[k] = 1;
    return e;
}

/* The shape a's dims then b's; AG_ERR_SHAPE past AG_MAX_DIMS. */
static ag_status joined(const call *c, const ag_tensor *a, const ag_tensor *b, ag_shape *s) {
    if (a->ndim + b->ndim > AG_MAX_DIMS) {
        char s1[AG_SHAPE_STR], s2[AG_SHAPE_STR];
        return ag__fail(AG_ERR_SHAPE, "%s: a block of %s by %s would have more than %d dimensions", c->name,
                        ag__tshape(s1, a), ag__tshape(s2, b), AG_MAX_DIMS);
    }
    s->ndim = a->ndim + b->ndim;
    for (int d = 0; d < a->ndim; d++) s->dim[d] = a->shape[d];
    for (int d = 0; d < b->ndim; d++) s->dim[a->ndim + d] = b->shape[d];
    return AG_OK;
}

/* jac[i] = d y / d in[i], of shape y.shape + in[i].shape: one reverse pass per element
 * of y, its rows stacked (recorded under create_graph). */
static ag_status reverse_jacobian(const call *c, ag_tensor *y, ag_tensor **jac) {
    int64_t m = ag_numel(y);
    ag_shape js[MAX_INPUTS];
    for (int i = 0; i < c->n; i++) {
        ag_status st = joined(c, y, c->in[i], &js[i]);
        if (st) return st;
    }
    if (m > INT32_MAX) return ag__fail(AG_ERR_SHAPE, "%s: %lld output elements, more rows than supported", c->name,
                                       (long long)m);
    if (m > 0 && !y->requires_grad && c->o.strict) return independent(c, 0);
    ag_tensor **rows = ag__alloc_n(m * c->n + 1, sizeof *rows), **col = ag__alloc_n(m + 1, sizeof *col);
    ag_status st = rows && col ? AG_OK : ag__fail(AG_ERR_NOMEM, "%s: out of memory", c->name);
    ag_grad_opts go = {.retain_graph = true, .create_graph = c->o.create_graph, .allow_unused = true};
    for (int64_t k = 0; k < m && st == AG_OK; k++) {
        ag_tensor **r = rows + k * c->n;
        for (int i = 0; i < c->n; i++) r[i] = NULL;
        if (y->requires_grad) {
            ag_tensor *e = unit(ag_shape_of(y), y->dtype, k);
            st = e ? ag_autograd_grad(&y, 1, c->in, c->n, &e, &go, r) : AG_ERR_NOMEM;
        }
        for (int i = 0; i < c->n && st == AG_OK; i++)
            if (r[i] && c->o.strict && c->o.create_graph && !r[i]->requires_grad)
                st = ag__fail(AG_ERR_GRAPH, "%s: the Jacobian is independent of input %d (strict, create_graph)",
                              c->name, i);
        if (st == AG_OK) st = fill_unused(c, r);
    }
    for (int i = 0; i < c->n && st == AG_OK; i++) {
        if (m == 0) {
            jac[i] = ag_zeros(js[i], y->dtype);
        } else {
            for (int64_t k = 0; k < m; k++) col[k] = rows[k * c->n + i];
            jac[i] = ag_reshape(ag_stack(col, (int)m, 0), js[i]);
        }
        if (!jac[i]) st = ag_last_status() ? ag_last_status() : AG_ERR_NOMEM;
    }
    ag__free(rows);
    ag__free(col);
    return st;
}

/* jac[i] = d fn / d inputs[i] in forward mode: one ag_jvp (a forward pass carrying
 * tangents) per element of each input, with that element's unit tangent; the columns
 * are stacked after the output's dimensions. */
static ag_status forward_jacobian(const call *c, ag_fn fn, void *ctx, ag_tensor *const *inputs, ag_tensor **jac) {
    ag_tensor *prim[MAX_INPUTS], *tan[MAX_INPUTS] = {0}, *y = NULL;
    ag_status st = AG_OK;
    for (int i = 0; i < c->n && !st; i++)
        if (!(prim[i] = ag_detach(inputs[i]))) st = AG_ERR_NOMEM;
    for (int i = 0; i < c->n && !st; i++) {
        int64_t cols = ag_numel(prim[i]);
        if (cols > INT32_MAX) return ag__fail(AG_ERR_SHAPE, "%s: %lld input elements, more columns than supported",
                                              c->name, (long long)cols);
        ag_tensor **col = ag__alloc_n(cols + 1, sizeof *col);
        if (!col) return ag__fail(AG_ERR_NOMEM, "%s: out of memory", c->name);
        for (int64_t k = 0; k < cols && !st; k++) {
            ag_tensor *out = NULL;
            if (!(tan[i] = unit(ag_shape_of(prim[i]), prim[i]->dtype, k))) st = AG_ERR_NOMEM;
            if (!st) st = ag_jvp(fn, ctx, prim, c->n, tan, &out, &col[k]);
            tan[i] = NULL;
            if (!st && !y) y = out;
            if (!st && !col[k]) st = ag__fail(AG_ERR_DTYPE, "%s: the function's output, %s, is not floating", c->name,
                                              ag_dtype_name(out->dtype));
        }
        if (!st && !y) { /* every input so far empty: one evaluation for the output's shape */
            ag_no_grad_begin();
            y = fn(prim, c->n, ctx);
            ag_no_grad_end();
            if (!y) st = ag_last_status() ? ag_last_status() : ag__fail(AG_ERR_ARG, "%s: the function returned NULL", c->name);
        }
        ag_shape js;
        if (!st) st = joined(c, y, prim[i], &js);
        if (!st) jac[i] = cols ? ag_reshape(ag_stack(col, (int)cols, y->ndim), js) : ag_zeros(js, y->dtype);
        if (!st && !jac[i]) st = ag_last_status() ? ag_last_status() : AG_ERR_NOMEM;
        ag__free(col);
    }
    return st;
}

/* Runs body's results out of the call's scope: res[0..k-1] (owned by that scope)
 * move to the caller's scope on success; all are NULL on failure. */
static ag_status hand_out(ag_status st, ag_tensor **res, int k) {
    for (int i = 0; i < k; i++) {
        if (st == AG_OK) ag_retain(res[i]);
        else res[i] = NULL;
    }
    ag_enable_grad_end();
    ag_scope_end();
    for (int i = 0; i < k && st == AG_OK; i++)
        if (res[i] && !(res[i] = ag__own(res[i]))) st = ag__fail(AG_ERR_NOMEM, "%s: out of memory", "functional");
    if (st != AG_OK)
        for (int i = 0; i < k; i++) res[i] = NULL;
    return st;
}

static ag_status open_call(call *c, const char *name, ag_fn fn, ag_tensor *const *inputs, int n,
                           const ag_functional_opts *opts) {
    *c = (call){.name = name, .o = opts ? *opts : default_opts, .n = n};
    ag_status st = check_inputs(name, fn, inputs, n);
    if (st) return st;
    if (ag_is_inference_mode_enabled()) /* grad mode cannot be turned on: nothing would be recorded */
        return ag__fail(AG_ERR_GRAPH, "%s: cannot differentiate in inference mode", name);
    if (ag_scope_begin()) return ag__fail(AG_ERR_NOMEM, "%s: out of memory", name);
    ag_enable_grad_begin();
    return AG_OK;
}

/* Detached unless create_graph, as torch's outputs. */
static ag_tensor *output(const call *c, ag_tensor *y) { return c->o.create_graph ? y : ag_detach(y); }

ag_status ag_vjp(ag_fn fn, void *ctx, ag_tensor *const *inputs, int n, ag_tensor *v, const ag_functional_opts *opts,
                 ag_tensor **out, ag_tensor **vjp) {
    if (!vjp) return ag__fail(AG_ERR_ARG, "%s: the result array is NULL", "vjp");
    for (int i = 0; i < n && i < MAX_INPUTS; i++) vjp[i] = NULL;
    if (out) *out = NULL;
    if (v) AG_CHECK_HANDLES(AG_ERR_ARG, "vjp", v);
    call c;
    ag_status st = open_call(&c, "vjp", fn, inputs, n, opts);
    if (st) return st;
    st = stand_ins(&c, inputs);
    ag_tensor *y = st ? NULL : evaluate(&c, fn, ctx);
    if (!st && !y) st = ag_last_status();
    char s1[AG_SHAPE_STR], s2[AG_SHAPE_STR];
    if (!st && v && (v->dtype != y->dtype || !same_shape(v, y)))
        st = ag__fail(AG_ERR_SHAPE, "vjp: v, %s %s, is not like the function's output, %s %s", ag_dtype_name(v->dtype),
                      ag__tshape(s1, v), ag_dtype_name(y->dtype), ag__tshape(s2, y));
    if (!st && !v && ag_numel(y) != 1)
        st = ag__fail(AG_ERR_SHAPE, "%s: the function must return one element, not %s", "vjp (with no v)",
                      ag__tshape(s1, y));
    if (!st && y->requires_grad) {
        ag_grad_opts go = {.create_graph = c.o.create_graph, .allow_unused = true};
        st = ag_autograd_grad(&y, 1, c.in, n, &v, &go, vjp);
    }
    if (!st) st = fill_unused(&c, vjp);
    ag_tensor *res[MAX_INPUTS + 1];
    for (int i = 0; i < n; i++) res[i] = vjp[i];
    res[n] = st || !out ? NULL : output(&c, y); /* none to hand out when out is NULL */
    st = hand_out(st, res, n + 1);
    for (int i = 0; i < n; i++) vjp[i] = res[i];
    if (out) *out = res[n];
    return st;
}

ag_status ag_jacobian(ag_fn fn, void *ctx, ag_tensor *const *inputs, int n, const ag_functional_opts *opts,
                      ag_tensor **jac) {
    if (!jac) return ag__fail(AG_ERR_ARG, "%s: the result array is NULL", "jacobian");
    for (int i = 0; i < n && i < MAX_INPUTS; i++) jac[i] = NULL;
    call c;
    ag_status st = open_call(&c, "jacobian", fn, inputs, n, opts);
    if (st) return st;
    if (c.o.mode != AG_JACOBIAN_AUTO && c.o.mode != AG_JACOBIAN_REVERSE && c.o.mode != AG_JACOBIAN_FORWARD)
        st = ag__fail(AG_ERR_ARG, "jacobian: unknown mode %d", (int)c.o.mode);
    else if (c.o.mode == AG_JACOBIAN_FORWARD && (c.o.create_graph || c.o.strict))
        st = ag__fail(AG_ERR_ARG, "%s: forward mode takes neither create_graph nor strict (reverse mode does)", c.name);
    if (!st && c.o.mode == AG_JACOBIAN_FORWARD) return hand_out(forward_jacobian(&c, fn, ctx, inputs, jac), jac, n);
    if (!st) st = stand_ins(&c, inputs);
    ag_tensor *y = st ? NULL : evaluate(&c, fn, ctx);
    if (!st && !y) st = ag_last_status();
    if (!st && c.o.mode == AG_JACOBIAN_AUTO && !c.o.create_graph && !c.o.strict) {
        int64_t columns = 0; /* fewer inputs than outputs: forward mode, as the theory says */
        for (int i = 0; i < n; i++) columns += ag_numel(inputs[i]);
        if (columns < ag_numel(y)) return hand_out(forward_jacobian(&c, fn, ctx, inputs, jac), jac, n);
    }
    if (!st) st = reverse_jacobian(&c, y, jac);
    return hand_out(st, jac, n);
}

/* The gradient of fn's one-element output with respect to the stand-ins, recorded;
 * zeros (not requiring grad) for an input it does not reach, unless strict. */
static ag_status recorded_gradient(call *c, ag_fn fn, void *ctx, ag_tensor *const *inputs, ag_tensor **y,
                                   ag_tensor **g) {
    for (int i = 0; i < c->n; i++) g[i] = NULL;
    ag_status st = stand_ins(c, inputs);
    *y = st ? NULL : evaluate(c, fn, ctx);
    if (!st && !*y) st = ag_last_status();
    char s[AG_SHAPE_STR];
    if (!st && ag_numel(*y) != 1)
        st = ag__fail(AG_ERR_SHAPE, "%s: the function must return one element, not %s", c->name, ag__tshape(s, *y));
    if (!st && (*y)->requires_grad) {
        ag_grad_opts go = {.create_graph = true, .allow_unused = true};
        st = ag_autograd_grad(y, 1, c->in, c->n, NULL, &go, g);
    }
    return st ? st : fill_unused(c, g);
}

ag_status ag_hessian(ag_fn fn, void *ctx, ag_tensor *const *inputs, int n, const ag_functional_opts *opts,
                     ag_tensor **hess) {
    if (!hess) return ag__fail(AG_ERR_ARG, "%s: the result array is NULL", "hessian");
    for (int i = 0; n >= 1 && n <= MAX_INPUTS && i < n * n; i++) hess[i] = NULL; /* n·n: only for a valid n */
    call c;
    ag_status st = open_call(&c, "hessian", fn, inputs, n, opts);
    if (st) return st;
    ag_tensor *y, *g[MAX_INPUTS];
    st = recorded_gradient(&c, fn, ctx, inputs, &y, g);
    for (int i = 0; i < n && st == AG_OK; i++) st = reverse_jacobian(&c, g[i], hess + i * n);
    return hand_out(st, hess, n * n);
}

/* <g, v> summed over the inputs whose gradient is recorded; NULL (no error) when none is. */
static ag_tensor *inner(const call *c, ag_tensor *const *g, ag_tensor *const *v, ag_status *st) {
    ag_tensor *dot = NULL;
    for (int i = 0; i < c->n && *st == AG_OK; i++) {
        if (!g[i]->requires_grad) continue;
        ag_tensor *term = ag_sum(ag_mul(g[i], v[i]));
        dot = dot && term ? ag_add(dot, term) : term;
        if (!dot) *st = ag_last_status() ? ag_last_status() : AG_ERR_NOMEM;
    }
    return dot;
}

/* ag_vhp's product, vᵀH: the gradient of <grad fn, v>, two backward passes. */
static ag_status reverse_over_reverse(call *c, ag_fn fn, void *ctx, ag_tensor *const *inputs, ag_tensor *const *v,
                                      ag_tensor **y, ag_tensor **prod) {
    ag_tensor *g[MAX_INPUTS];
    ag_status st = recorded_gradient(c, fn, ctx, inputs, y, g);
    if (!st) { /* (vᵀH)_j = Σ_i v_i ∂g_i/∂x_j = ∂<g, v>/∂x_j */
        ag_tensor *dot = inner(c, g, v, &st);
        ag_grad_opts last = {.create_graph = c->o.create_graph, .allow_unused = true};
        if (!st && dot) st = ag_autograd_grad(&dot, 1, c->in, c->n, NULL, &last, prod);
    }
    return st;
}

/* ag_hvp's product, H v, forward-over-reverse: fn at the stand-ins made dual with the
 * tangents v, its gradient g recorded (create_graph) so that the backward's own ops
 * carry tangents, and (H v)_i = Σ_j ∂g_i/∂x_j v_j the tangent of g_i (the JVP of the
 * gradient, as torch.func's jvp(grad(f))).  One forward pass and one backward pass,
 * each carrying tangents; in a dual level of its own. */
static ag_status forward_over_reverse(call *c, ag_fn fn, void *ctx, ag_tensor *const *inputs, ag_tensor *const *v,
                                      ag_tensor **y, ag_tensor **prod) {
    if (ag_dual_level_open())
        return ag__fail(AG_ERR_GRAPH, "%s: a dual level is open on this thread already (H·v is the tangent of the "
                        "gradient, taken in a level of its own; ag_vhp needs none)", c->name);
    ag_status st = stand_ins(c, inputs);
    if (st) return st;
    ag_dual_level_begin();
    call dual = *c; /* fn is evaluated on the duals, the gradient taken at the stand-ins */
    for (int i = 0; i < c->n && !st; i++)
        if (!(dual.in[i] = ag_make_dual(c->in[i], v[i]))) st = ag_last_status();
    *y = st ? NULL : evaluate(&dual, fn, ctx);
    if (!st && !*y) st = ag_last_status();
    char s[AG_SHAPE_STR];
    if (!st && ag_numel(*y) != 1)
        st = ag__fail(AG_ERR_SHAPE, "%s: the function must return one element, not %s", c->name, ag__tshape(s, *y));
    ag_tensor *g[MAX_INPUTS] = {0};
    if (!st && (*y)->requires_grad) {
        ag_grad_opts go = {.create_graph = true, .allow_unused = true};
        st = ag_autograd_grad(y, 1, c->in, c->n, NULL, &go, g);
    }
    for (int i = 0; i < c->n && !st; i++) {
        prod[i] = g[i] ? ag_tangent(g[i]) : NULL; /* NULL: g_i is constant along v, or absent */
        if (prod[i] && !c->o.create_graph && !(prod[i] = ag_detach(prod[i]))) st = AG_ERR_NOMEM;
    }
    ag_status e = ag_dual_level_end(); /* the tangents computed late report here */
    return st ? st : e;
}

/* The body of ag_vhp and ag_hvp (product: reverse_over_reverse or forward_over_reverse). */
typedef ag_status (*product_fn)(call *c, ag_fn fn, void *ctx, ag_tensor *const *inputs, ag_tensor *const *v,
                                ag_tensor **y, ag_tensor **prod);
static ag_status second_order_product(const char *name, product_fn product, ag_fn fn, void *ctx,
                                      ag_tensor *const *inputs, int n, ag_tensor *const *v,
                                      const ag_functional_opts *opts, ag_tensor **out, ag_tensor **prod) {
    if (!prod) return ag__fail(AG_ERR_ARG, "%s: the result array is NULL", name);
    for (int i = 0; i < n && i < MAX_INPUTS; i++) prod[i] = NULL;
    if (out) *out = NULL;
    call c;
    ag_status st = open_call(&c, name, fn, inputs, n, opts);
    if (st) return st;
    st = check_vectors(name, inputs, n, v);
    ag_tensor *y = NULL;
    if (!st) st = product(&c, fn, ctx, inputs, v, &y, prod);
    if (!st) st = fill_unused(&c, prod);
    ag_tensor *res[MAX_INPUTS + 1];
    for (int i = 0; i < n; i++) res[i] = prod[i];
    res[n] = st || !out ? NULL : output(&c, y); /* none to hand out when out is NULL */
    st = hand_out(st, res, n + 1);
    for (int i = 0; i < n; i++) prod[i] = res[i];
    if (out) *out = res[n];
    return st;
}

ag_status ag_vhp(ag_fn fn, void *ctx, ag_tensor *const *inputs, int n, ag_tensor *const *v,
                 const ag_functional_opts *opts, ag_tensor **out, ag_tensor **vhp) {
    return second_order_product("vhp", reverse_over_reverse, fn, ctx, inputs, n, v, opts, out, vhp);
}

ag_status ag_hvp(ag_fn fn, void *ctx, ag_tensor *const *inputs, int n, ag_tensor *const *v,
                 const ag_functional_opts *opts, ag_tensor **out, ag_tensor **hvp) {
    return second_order_product("hvp", forward_over_reverse, fn, ctx, inputs, n, v, opts, out, hvp);
}

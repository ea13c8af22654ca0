/*
 * grad.c - the reverse passes beyond ag_backward: create_graph, where backward
 * records the gradient computation itself so that the gradients it produces can be
 * differentiated again (to any order), and ag_autograd_grad, which returns the
 * gradients of chosen inputs instead of accumulating them into .grad.
 *
 * Under create_graph each node's adjoint is its row's backward_graph (struct ag_op),
 * written in agrad ops, and gradients are summed down to an input's shape and
 * accumulated with recorded ops (ag_sum_dims, ag_add).  The pass lives here, above
 * the engine of autograd/backward.c, because it calls ops; ag_backward and
 * ag_backward_ex never come here, so the first-order pass is what it was.
 * ag_autograd_grad without create_graph runs the first-order adjoints: every leaf
 * the graph reaches is marked, for the pass, as a hooked leaf still collecting
 * (hooked, pending > 0), so that ag__accumulate leaves its gradient in its bgrad
 * slot rather than in .grad; the inputs' slots are then handed out.
 */
#include <string.h>
#include "core/autocast.h"
#include "core/iter.h"
#include "autograd/tape.h"
#include "agrad/autograd.h"
#include "agrad/ops.h"

/* ---- lists ------------------------------------------------------------------------------ */
typedef struct tlist {
    ag_tensor **v;
    int64_t n, cap;
} tlist;

static bool push(tlist *l, ag_tensor *t) {
    if (l->n == l->cap) {
        int64_t cap = l->cap ? 2 * l->cap : 32;
        ag_tensor **v = ag__alloc_n(cap, sizeof *v);
        if (!v) return false;
        if (l->n) memcpy(v, l->v, sizeof *v * (size_t)l->n);
        ag__free(l->v);
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = t;
    return true;
}

/* ---- one pass ----------------------------------------------------------------------------- */
typedef struct pass {
    bool create, retain, allow_unused;
    ag_tensor *const *inputs; /* ag_autograd_grad: the tensors whose gradients are returned */
    int m;
    ag_tensor **results;      /* m slots, references */
    tlist order, leaves;      /* nodes in post-order; leaves requiring grad that the graph reaches */
    bool *hooked;             /* the leaves' own hooked flags, while the pass marks them */
} pass;

static bool is_node(const ag_tensor *t) { return t && t->requires_grad && (t->op || t->graph_freed); }

/* Post-order of the nodes reachable from the roots (marked visited), and the leaves
 * requiring grad they reach. */
static ag_status order_graph(pass *p, ag_tensor *const *roots, int n) {
    tlist stack = {0};
    bool ok = true;
    for (int r = 0; r < n && ok; r++) {
        ag_tensor *root = roots[r];
        if (root->visited) continue;
        root->visited = true;
        root->pending = 0;
        if (!is_node(root)) {
            ok = push(&p->leaves, root);
            continue;
        }
        ok = push(&stack, root);
        while (ok && stack.n) {
            ag_tensor *t = stack.v[stack.n - 1];
            if (t->pending < t->nin) {
                ag_tensor *c = ag__input_as_recorded(t, t->pending++);
                if (!c || c->visited || !c->requires_grad) continue;
                c->visited = true;
                c->pending = 0;
                ok = is_node(c) ? push(&stack, c) : push(&p->leaves, c);
                continue;
            }
            stack.n--;
            ok = push(&p->order, t);
        }
    }
    ag__free(stack.v);
    return ok ? AG_OK : ag__fail(AG_ERR_NOMEM, "autograd_grad: out of memory ordering the graph");
}

/* g summed over the dims it was broadcast along to c's shape, with recorded ops. */
static ag_tensor *sum_down(ag_tensor *g, const ag_tensor *c) {
    int dims[AG_MAX_DIMS], k = 0, lead = g->ndim - c->ndim;
    for (int d = 0; d < lead; d++) dims[k++] = d;
    if (k) g = ag_sum_dims(g, k, dims, false);
    k = 0;
    for (int d = 0; g && d < c->ndim; d++)
        if (c->shape[d] == 1 && g->shape[d] != 1) dims[k++] = d;
    return g && k ? ag_sum_dims(g, k, dims, true) : g;
}

/* *slot += g with recorded ops (g summed down to c's shape first); the slot holds a
 * reference.  Runs inside the caller's scope. */
static ag_status add_recorded(ag_tensor **slot, const ag_tensor *c, ag_tensor *g) {
    if (g->ndim != c->ndim || memcmp(g->shape, c->shape, sizeof(int64_t) * (size_t)c->ndim)) g = sum_down(g, c);
    if (g && g->dtype != c->dtype) {
        char s[AG_SHAPE_STR];
        return ag__fail(AG_ERR_DTYPE, "backward: a %s gradient for a %s tensor %s: its dtype changed after the graph was "
                        "recorded (ag_module_to_dtype); run the forward pass again", ag_dtype_name(g->dtype), ag_dtype_name(c->dtype), ag__tshape(s, c));
    }
    ag_tensor *v = g && *slot ? ag_add(*slot, g) : g;
    if (!v) return ag_last_status() ? ag_last_status() : AG_ERR_NOMEM;
    ag__retain(v);
    ag__release(*slot);
    *slot = v;
    return AG_OK;
}

/* One node under create_graph: its backward_graph, then each input's gradient added
 * to that input's slot, all recorded, inside a scope that keeps only the slots. */
static ag_status graph_step(ag_tensor *t, ag_tensor *g) {
    ag_tensor *inl[AG_NODE_INLINE] = {0}, **gin = t->nin <= AG_NODE_INLINE ? inl : ag__calloc(sizeof *gin * (size_t)t->nin);
    if (!gin) return AG_ERR_NOMEM;
    ag_status st = ag_scope_begin();
    if (st == AG_OK) {
        const uint8_t autocast = ag__autocast_switch(t->autocast); /* as its forward computed */
        st = t->op->backward_graph(t, g, gin);
        ag__autocast_restore(t->autocast, autocast);
        for (int i = 0; i < t->nin && st == AG_OK; i++)
            if (gin[i] && t->in[i] && t->in[i]->requires_grad) st = add_recorded(&t->in[i]->bgrad, t->in[i], gin[i]);
        if (st == AG_OK && t->retains_grad) st = add_recorded(&t->grad, t, g);
        ag_scope_end();
    }
    if (gin != inl) ag__free(gin);
    return st;
}

/* The seed of output o: grad_out (used as it is under create_graph, so that the
 * gradients are differentiable in it too; copied otherwise) or ones for a
 * one-element output; added to o's slot. */
static ag_status seed(pass *p, ag_tensor *o, const ag_tensor *grad_out) {
    if (p->create) {
        if (ag_scope_begin()) return AG_ERR_NOMEM;
        ag_tensor *s = grad_out ? (ag_tensor *)grad_out : ag_ones_like(o);
        ag_status st = s ? add_recorded(&o->bgrad, o, s) : AG_ERR_NOMEM;
        ag_scope_end();
        return st;
    }
    ag_tensor *s = ag__new_unowned(o->dtype, o->ndim, o->shape, false);
    if (!s) return AG_ERR_NOMEM;
    if (grad_out) ag__copy_into(s, grad_out);
    else if (o->dtype == AG_F32) *(float *)ag__ptr(s) = 1.0f;
    else *(double *)ag__ptr(s) = 1.0;
    return ag__accumulate(o, s); /* into o's slot: o is a node, or a leaf marked as collecting */
}

/* Checks outputs, their grad_outputs and the graph (AG_ERR_* recorded). */
static ag_status check_outputs(const char *fn, ag_tensor *const *outputs, int n, ag_tensor *const *grad_outputs) {
    char s1[AG_SHAPE_STR], s2[AG_SHAPE_STR];
    for (int k = 0; k < n; k++) {
        ag_tensor *o = outputs[k];
        const ag_tensor *go = grad_outputs ? grad_outputs[k] : NULL;
        if (!o) return ag__fail(AG_ERR_ARG, "%s: output %d is NULL", fn, k);
        if (o->view_base && ag__view_stale(o) && ag__refresh_view(o)) return AG_ERR_NOMEM;
        if (!o->requires_grad)
            return ag__fail(AG_ERR_GRAPH, "%s: output %d, %s, does not require grad and has no grad_fn", fn, k,
                            ag__tshape(s1, o));
        if (go && (go->ndim != o->ndim || memcmp(go->shape, o->shape, sizeof(int64_t) * (size_t)o->ndim)))
            return ag__fail(AG_ERR_SHAPE, "%s: grad_output %d has shape %s but output %d has shape %s", fn, k,
                            ag__tshape(s1, go), k, ag__tshape(s2, o));
        if (go && go->dtype != o->dtype)
            return ag__fail(AG_ERR_DTYPE, "%s: grad_output %d is %s but output %d is %s", fn, k,
                            ag_dtype_name(go->dtype), k, ag_dtype_name(o->dtype));
        if (!go && ag__numel(o->ndim, o->shape) != 1)
            return ag__fail(AG_ERR_GRAPH, "%s: grad can be implicitly created only for one-element outputs, output %d "
                            "has shape %s (pass its grad_output)", fn, k, ag__tshape(s1, o));
    }
    return AG_OK;
}

static ag_status check_graph(const char *fn, const pass *p) {
    for (int64_t i = 0; i < p->order.n; i++) {
        const ag_tensor *t = p->order.v[i];
        ag_status st = ag__check_node(t);
        if (st) return st;
        if (p->create && !t->op->backward_graph)
            return ag__fail(AG_ERR_GRAPH, "%s: %s (op %s) has no double-backward rule yet (ag_op.backward_graph), so "
                            "create_graph cannot differentiate through it", fn, t->op->grad_fn, t->op->name);
    }
    return AG_OK;
}

static ag_status unused(const char *fn, const ag_tensor *x, int j) {
    char s[AG_SHAPE_STR];
    return ag__fail(AG_ERR_GRAPH, "%s: input %d, %s %s, was not used in the graph of the outputs (pass "
                    "allow_unused to get NULL for it)", fn, j, ag_dtype_name(x->dtype), ag__tshape(s, x));
}

/* Runs the pass from the outputs; the gradients end in the slots (bgrad) of the
 * leaves (and, for the inputs that are nodes, in results). */
static ag_status run(pass *p, const char *fn, ag_tensor *const *outputs, int n, ag_tensor *const *grad_outputs) {
    if (p->create) ag__graph_add = ag_add; /* for the engine's adjoints that sum kept gradients */
    ag_status st = order_graph(p, outputs, n);
    if (st == AG_OK) st = check_graph(fn, p);
    for (int j = 0; j < p->m && st == AG_OK && !p->allow_unused; j++) /* before the graph is freed */
        if (!p->inputs[j]->visited) st = unused(fn, p->inputs[j], j);
    if (st == AG_OK && !p->create) { /* leaves collect in their slots (see the top of the file) */
        p->hooked = ag__calloc(sizeof(bool) * (size_t)(p->leaves.n + 1));
        if (!p->hooked) st = AG_ERR_NOMEM;
        for (int64_t i = 0; p->hooked && i < p->leaves.n; i++) {
            ag_tensor *l = p->leaves.v[i];
            p->hooked[i] = l->hooked;
            l->hooked = true;
            l->pending = 1;
        }
    }
    /* the pass holds its nodes and leaves until finish: without retain_graph each node's inputs are
     * released as it is done, and a leaf only the graph held would be gone before finish unmarks it */
    for (int64_t i = 0; i < p->order.n; i++) ag__retain(p->order.v[i]);
    for (int64_t i = 0; i < p->leaves.n; i++) ag__retain(p->leaves.v[i]);
    for (int k = 0; k < n && st == AG_OK; k++) st = seed(p, outputs[k], grad_outputs ? grad_outputs[k] : NULL);
    if (st == AG_OK) ag__backward_pass++;
    for (int64_t i = p->order.n - 1; i >= 0 && st == AG_OK; i--) {
        ag_tensor *t = p->order.v[i];
        ag_tensor *g = t->bgrad;
        t->bgrad = NULL;
        if (!g) continue;
        for (int j = 0; j < p->m; j++)
            if (p->inputs[j] == t) p->results[j] = ag__retain(g);
        if (p->create) {
            st = graph_step(t, g);
        } else {
            if (!ag__contig(g) && !(t->op->saves & AG_GOUT_ANY_STRIDES)) {
                ag_tensor *c = ag__contig_or_copy(g);
                ag__release(g);
                g = c;
            }
            const bool frees = ag__adjoint_frees_node; /* an adjoint may run a backward of its own */
            ag__adjoint_frees_node = !p->retain;
            st = g ? t->op->backward(t, g) : AG_ERR_NOMEM;
            ag__adjoint_frees_node = frees;
            if (!p->retain) ag__release_graph(t);
        }
        ag__release(g);
    }
    if (st != AG_OK && ag_last_status() != st) ag__fail(st, "%s: %s", fn, ag_status_name(st));
    return st;
}

/* Releases what the pass holds and unmarks the graph. */
static void finish(pass *p) {
    for (int64_t i = 0; i < p->order.n; i++) {
        ag_tensor *t = p->order.v[i];
        ag__release(t->bgrad);
        t->bgrad = NULL;
        t->visited = false;
        ag__release(t);
    }
    for (int64_t i = 0; i < p->leaves.n; i++) {
        ag_tensor *l = p->leaves.v[i];
        ag__release(l->bgrad);
        l->bgrad = NULL;
        l->visited = false;
        if (p->hooked) {
            l->hooked = p->hooked[i];
            l->pending = 0;
        }
        ag__release(l);
    }
    ag__free(p->hooked);
    ag__free(p->order.v);
    ag__free(p->leaves.v);
}

/* ---- public functions ---------------------------------------------------------------------- */
static const ag_grad_opts default_opts;

ag_status ag_backward_opts(ag_tensor *out, const ag_tensor *grad_out, const ag_grad_opts *opts) {
    AG_CHECK_HANDLES(AG_ERR_ARG, "backward", out, grad_out);
    if (!opts) opts = &default_opts;
    if (!opts->create_graph) return ag_backward_ex(out, grad_out, opts->retain_graph);
    if (!out) return ag_last_status() ? ag_last_status() : ag__fail(AG_ERR_ARG, "backward: tensor is NULL");
    ag_tensor *go = (ag_tensor *)grad_out;
    ag_status st = check_outputs("backward", &out, 1, grad_out ? &go : NULL);
    if (st) return st;
    pass p = {.create = true, .retain = true};
    st = run(&p, "backward", &out, 1, grad_out ? &go : NULL);
    for (int64_t i = 0; i < p.leaves.n && st == AG_OK; i++) { /* .grad += the leaf's gradient, recorded */
        ag_tensor *l = p.leaves.v[i];
        if (!l->bgrad) continue;
        if (l->grad_pinned && l->grad) { /* a view into a flat buffer: added in place, not recorded */
            st = ag__accumulate(l, ag__contig_or_copy(l->bgrad));
            continue;
        }
        if (ag_scope_begin()) {
            st = AG_ERR_NOMEM;
            break;
        }
        st = add_recorded(&l->grad, l, l->bgrad);
        ag__mark_grad_held(l->grad);
        ag_scope_end();
    }
    finish(&p);
    return st;
}

ag_status ag_autograd_grad(ag_tensor *const *outputs, int n, ag_tensor *const *inputs, int m,
                           ag_tensor *const *grad_outputs, const ag_grad_opts *opts, ag_tensor **grads) {
    const char *fn = "autograd_grad";
    if (!grads) return ag__fail(AG_ERR_ARG, "%s: grads is NULL", fn);
    for (int j = 0; j < m; j++) grads[j] = NULL;
    if (!outputs || !inputs || n < 1 || m < 1)
        return ag__fail(AG_ERR_ARG, "%s: needs at least one output and one input (got %d outputs, %d inputs)", fn,
                        outputs ? n : 0, inputs ? m : 0);
    AG_CHECK_HANDLE_ARRAY(AG_ERR_ARG, fn, outputs, n);
    AG_CHECK_HANDLE_ARRAY(AG_ERR_ARG, fn, inputs, m);
    if (grad_outputs) AG_CHECK_HANDLE_ARRAY(AG_ERR_ARG, fn, grad_outputs, n);
    if (!opts) opts = &default_opts;
    char s[AG_SHAPE_STR];
    for (int j = 0; j < m; j++) {
        if (!inputs[j]) return ag__fail(AG_ERR_ARG, "%s: input %d is NULL", fn, j);
        if (!inputs[j]->requires_grad)
            return ag__fail(AG_ERR_GRAPH, "%s: input %d, %s %s, does not require grad", fn, j,
                            ag_dtype_name(inputs[j]->dtype), ag__tshape(s, inputs[j]));
    }
    ag_status st = check_outputs(fn, outputs, n, grad_outputs);
    if (st) return st;
    ag_tensor **res = ag__calloc(sizeof *res * (size_t)m);
    if (!res) return ag__fail(AG_ERR_NOMEM, "%s: out of memory", fn);
    pass p = {.create = opts->create_graph, .retain = opts->retain_graph || opts->create_graph,
              .allow_unused = opts->allow_unused, .inputs = inputs, .m = m, .results = res};
    st = run(&p, fn, outputs, n, grad_outputs);
    for (int j = 0; j < m && st == AG_OK; j++) {
        ag_tensor *x = inputs[j];
        if (!res[j] && !is_node(x) && x->bgrad) res[j] = p.create ? ag__retain(x->bgrad) : ag__contig_or_copy(x->bgrad);
        if (!res[j] && !is_node(x) && x->bgrad) st = AG_ERR_NOMEM;
        if (!res[j] && st == AG_OK && !opts->allow_unused) st = unused(fn, x, j); /* reached, but no gradient came */
    }
    finish(&p);
    for (int j = 0; j < m; j++) {
        if (st == AG_OK && res[j]) {
            grads[j] = ag__own(res[j]);
            if (!grads[j]) st = AG_ERR_NOMEM;
        } else if (res[j]) {
            ag__release(res[j]);
        }
    }
    if (st != AG_OK)
        for (int j = 0; j < m; j++) grads[j] = NULL; /* the owned ones go with their scope */
    ag__free(res);
    return st;
}

/*
 * backward.c - recording nodes on the tape and the reverse pass.
 *
 * An op's output tensor is its graph node (op, inputs, attributes), so the
 * tape is the DAG of outputs reachable from the loss.  Backward orders it by
 * an iterative depth-first walk (reverse post-order is a topological order),
 * checks every saved tensor's version before touching any gradient, then calls
 * each node's adjoint once its gradient is complete.
 */
#include <math.h>
#include <string.h>
#include "core/autocast.h"
#include "core/copy_bytes.h"
#include "core/parallel.h"
#include "core/sum.h"
#include "autograd/tape.h"
#include "agrad/autograd.h"

_Thread_local uint64_t ag__backward_pass;
_Thread_local bool ag__anomaly;             /* ag_set_detect_anomaly */
static _Thread_local const ag_tensor *current_node; /* node whose adjoint runs, for messages */
static _Thread_local const char *trace_file;          /* the user's last op call (agrad/trace.h) */
static _Thread_local int trace_line;

void ag_trace_location(const char *file, int line) {
    trace_file = file;
    trace_line = line;
}

/* " (recorded at file:line)" or "" when unknown. */
static const char *where(const char *file, int line, char *buf, size_t n) {
    if (!file) return "";
    snprintf(buf, n, " (recorded at %s:%d)", file, line);
    return buf;
}

void ag_set_detect_anomaly(bool on) {
    if (on == ag__anomaly) return;
    atomic_fetch_add_explicit(&ag__rare_modes, on ? 1 : -1, memory_order_relaxed);
    ag__anomaly = on;
}
bool ag_is_anomaly_enabled(void) { return ag__anomaly; }

/* An input requires grad, or is a view whose base does (PyTorch's view of a base
 * that came to require grad). */
static inline bool input_requires_grad(const ag_tensor *a) {
    return a->requires_grad || (a->view_base && ag__view_requires_grad(a));
}

bool ag__needs_grad1(const ag_tensor *a) {
    return (ag__no_grad_depth == 0 && a && input_requires_grad(a)) || (ag__fw_level && a && ag__fw_dual(a));
}

/* Grad mode is on and an input requires grad. */
static bool grad_needed(ag_tensor *const *in, int n) {
    if (ag__no_grad_depth) return false;
    for (int i = 0; i < n; i++)
        if (in[i] && input_requires_grad(in[i])) return true;
    return false;
}

bool ag__needs_grad(ag_tensor *const *in, int n) {
    return grad_needed(in, n) || (ag__fw_level && ag__fw_any_dual(in, n)); /* forward mode: a tangent to carry */
}

ag_status ag__check_saveable(const ag_op *op, ag_tensor *const *in, int n) {
    for (int i = 0; i < n && i < AG_NODE_INLINE; i++) {
        if (!(op->saves >> i & 1) || !in[i] || !in[i]->inference) continue;
        char s[AG_SHAPE_STR];
        return ag__fail(AG_ERR_GRAPH, "%s: inference tensors cannot be saved for backward: input %d, %s %s, was made "
                        "in inference mode; make a clone (ag_clone) outside inference mode to get a normal tensor "
                        "and use it in autograd", op->name, i, ag_dtype_name(in[i]->dtype), ag__tshape(s, in[i]));
    }
    return AG_OK;
}

/* What ag__record asks of an input that is a view or an inference tensor: a stale view
 * is refreshed, an inference tensor the op would save refused.  An error, recorded, or
 * AG_OK. */
static ag_status unusual_input(const ag_op *op, ag_tensor *const *in, int n, int i) {
    ag_tensor *x = in[i];
    if (x->view_base && ag__view_stale(x) && ag__refresh_view(x)) return AG_ERR_NOMEM;
    if (x->inference && i < AG_NODE_INLINE && (op->saves >> i & 1)) return ag__check_saveable(op, in, n);
    return AG_OK;
}

ag_tensor *ag__record(ag_tensor *out, const ag_op *op, ag_tensor *const *in, int n) {
    if (!out) return NULL;
    for (int i = 0; i < n; i++)
        if (in[i] && (in[i]->view_base || in[i]->inference) && unusual_input(op, in, n, i)) {
            ag__discard(out);
            return NULL;
        }
    if (n > AG_NODE_INLINE) {
        out->in = ag__cache_alloc(AG_NODE_BLOCK(n));
        if (!out->in) {
            out->in = out->in_inline;
            ag__discard(out);
            return NULL;
        }
    }
    out->op = op;
    out->requires_grad = true;
    out->nin = n;
    uint32_t *version = ag__in_versions(out);
    for (int i = 0; i < n; i++) {
        out->in[i] = ag__retain(in[i]);
        version[i] = in[i] ? ag__version(in[i]) : 0;
    }
    out->out_version = ag__version(out);
    out->autocast = ag__autocast_state(); /* its adjoint computes as its forward did */
    if (ag__rare_mode_on() && ag__anomaly) {
        out->where_file = trace_file;
        out->where_line = trace_line;
    }
    if (ag__fw_level && ag__fw_note(out, in, n, grad_needed(in, n))) { /* forward mode (autograd/forward.c) */
        ag__discard(out);
        return NULL;
    }
    return out;
}

ag_tensor *ag__record_saved(ag_tensor *out, const ag_op *op, ag_tensor *const *in, int n, ag_tensor *saved) {
    bool record = out && ag__needs_grad(in, n);
    if (record && ag__record(out, op, in, n)) {
        out->saved = saved;
        return out;
    }
    ag__release(saved);
    return record ? NULL : out; /* ag__record failed and discarded out, or nothing to record */
}

/* ---- views whose base changed (autograd/rebase.c) -------------------------------------- */
/* y = b viewed: the adjoint scatters dy into zeros of b's shape through y's geometry. */
static ag_status as_strided_backward(ag_tensor *out, ag_tensor *gout) {
    ag_tensor *b = out->in[1];
    if (!ag__wants(out, 1)) return AG_OK;
    return ag__accumulate(b, ag__base_grad(b, out, NULL, gout, true));
}

static const ag_op row_as_strided = {.name = "as_strided", .grad_fn = "AsStridedBackward0",
                                     .backward = as_strided_backward, .saves = AG_OP_INPLACE | AG_GOUT_ANY_STRIDES,
                                     .math = "y = b viewed with y's geometry (b changed since y was made);  "
                                             "db = 0, db[y] += dy"};

bool ag__view_requires_grad(const ag_tensor *x) {
    return !(x->view_flags & AG_VIEW_NO_GRAD) && x->view_base->requires_grad;
}

ag_status ag__refresh_view(ag_tensor *x) {
    ag_tensor *b = x->view_base;
    if (!b->requires_grad || (x->view_flags & AG_VIEW_NO_GRAD)) {
        x->out_version = ag__version(x);
        return AG_OK;
    }
    ag_tensor *h = ag__new_view_unowned(x, x->ndim, x->shape, x->stride, x->offset);
    if (!h) return AG_ERR_NOMEM;
    ag__rebase(x, h);
    ag__record_view_of(x, h, b);
    ag__release(h);
    return AG_OK;
}

void ag__record_view_of(ag_tensor *x, ag_tensor *h, ag_tensor *b) {
    ag_tensor *in[2] = {h, b};
    ag__record(x, &row_as_strided, in, 2); /* cannot fail: two inputs, nothing saved, neither a stale view */
}

/* ---- anomaly checks --------------------------------------------------------------- */
static int64_t first_nonfinite(const ag_tensor *t) {
    if (t->dtype != AG_F32 && t->dtype != AG_F64) return -1;
    ag_tensor *c = ag__contig_or_copy((ag_tensor *)t);
    if (!c) return -1;
    int64_t n = ag__numel(c->ndim, c->shape), bad = -1;
    for (int64_t i = 0; i < n && bad < 0; i++) {
        double v = c->dtype == AG_F32 ? ((const float *)ag__ptr(c))[i] : ((const double *)ag__ptr(c))[i];
        if (!isfinite(v)) bad = i;
    }
    ag__release(c);
    return bad;
}

ag_tensor *ag__check_finite_slow(ag_tensor *t, const char *op) {
    int64_t bad = first_nonfinite(t);
    if (bad < 0) return t;
    char s[AG_SHAPE_STR], w[512];
    ag__tshape(s, t); /* before t goes */
    ag__discard(t);
    return ag__fail_null(AG_ERR_VALUE, "anomaly: %s produced a non-finite value in its output %s at flat index %lld%s",
                         op, s, (long long)bad, where(trace_file, trace_line, w, sizeof w));
}

/* ---- gradient accumulation ------------------------------------------------------------ */
/* p[0] += p[1] over contiguous runs (split over threads by add_into). */
#define ADD_KERNEL(NAME, T)                                                     \
    static void NAME(char **p, const int64_t *s, int64_t n, void *ctx) {       \
        (void)s, (void)ctx;                                                     \
        T *restrict d = (T *)p[0];                                              \
        const T *restrict a = (const T *)p[1];                                  \
        for (int64_t i = 0; i < n; i++) d[i] += a[i];                           \
    }
ADD_KERNEL(add_f32, float)
ADD_KERNEL(add_f64, double)

/* p[0] += p[1] with byte steps s[0], s[1] (the contiguous kernel above where both are unit). */
#define ADD_STRIDED_KERNEL(NAME, FLAT, T)                                       \
    static void NAME(char **p, const int64_t *s, int64_t n, void *ctx) {       \
        if (s[0] == (int64_t)sizeof(T) && s[1] == (int64_t)sizeof(T)) {         \
            FLAT(p, s, n, ctx);                                                 \
            return;                                                             \
        }                                                                       \
        for (int64_t i = 0; i < n; i++) *(T *)(p[0] + i * s[0]) += *(const T *)(p[1] + i * s[1]); \
    }
ADD_STRIDED_KERNEL(add_strided_f32, add_f32, float)
ADD_STRIDED_KERNEL(add_strided_f64, add_f64, double)

/* p[0] = p[1] over a contiguous run (dst fresh: no overlap). */
static void copy_kernel(char **p, const int64_t *s, int64_t n, void *ctx) {
    (void)ctx;
    ag__copy_bytes(p[0], p[1], (size_t)(n * s[0]));
}

/* dst = src, same shape and dtype, dst contiguous (src may be a strided view). */
static void copy_flat(ag_tensor *dst, const ag_tensor *src) {
    if (!ag__contig(src)) {
        ag__copy_into(dst, src);
        return;
    }
    char *p[2] = {ag__ptr(dst), ag__ptr(src)};
    ag__par_run_flat(copy_kernel, NULL, ag__numel(dst->ndim, dst->shape), 2, p, (int64_t)ag__esize(dst->dtype));
}

/* dst += src, both contiguous with the same shape. */
static void add_into(ag_tensor *dst, const ag_tensor *src) {
    char *p[2] = {ag__ptr(dst), ag__ptr(src)};
    ag__par_run_flat(dst->dtype == AG_F64 ? add_f64 : add_f32, NULL, ag__numel(dst->ndim, dst->shape), 2, p,
                     (int64_t)ag__esize(dst->dtype));
}

static bool same_shape(const ag_tensor *a, const ag_tensor *b) {
    if (a->ndim != b->ndim) return false;
    for (int d = 0; d < a->ndim; d++) /* no memcmp call: shapes are short */
        if (a->shape[d] != b->shape[d]) return false;
    return true;
}

/* True if nobody else holds t or its storage. */
static bool unshared(const ag_tensor *t) {
    return ag__ref_count(&t->refcount) == 1 && ag__ref_count(&t->storage->refcount) == 1;
}

/* True if g will be unshared once the engine drops gout, the incoming gradient of the adjoint
 * that passes g (NULL: none): g is gout itself (retained once by the adjoint) or the one view
 * of it, and only the engine holds gout, so that gout's storage is then g's alone. */
static bool unshared_after(const ag_tensor *g, const ag_tensor *gout) {
    if (unshared(g)) return true;
    if (!gout || g->storage != gout->storage) return false;
    if (g == gout) return ag__ref_count(&g->refcount) == 2 && ag__ref_count(&g->storage->refcount) == 1;
    return ag__ref_count(&g->refcount) == 1 && ag__ref_count(&gout->refcount) == 1 &&
           ag__ref_count(&g->storage->refcount) == 2;
}

/* Adds g into *slot; consumes g.  Returns AG_OK or AG_ERR_NOMEM.  A user-visible
 * slot (.grad) adopts g only when g is contiguous and unshared, or will be once the
 * engine drops gout (unshared_after), so that it never aliases another gradient.  An
 * internal slot (a node's incoming gradient) may share g, or hold a strided view (sum's
 * broadcast); it is copied before an addition while shared (copy on write). */
static ag_status add_to_slot(ag_tensor **slot, ag_tensor *g, bool internal, const ag_tensor *gout) {
    ag_tensor *s = *slot;
    if (!s && (internal || (ag__contig(g) && unshared_after(g, gout)))) {
        *slot = g;
        return AG_OK;
    }
    if (!s || !unshared(s) || !ag__contig(s)) { /* a gradient of its own: a copy of g, or of the shared or strided slot */
        ag_tensor *fresh = ag__new_unowned(g->dtype, g->ndim, g->shape, false);
        if (!fresh) {
            ag__release(g);
            return AG_ERR_NOMEM;
        }
        copy_flat(fresh, s ? s : g);
        ag__release(s);
        *slot = fresh;
        if (!s) {
            ag__release(g);
            return AG_OK;
        }
        s = fresh;
    }
    add_into(s, g);
    ag__release(g);
    return AG_OK;
}

ag_status ag__add_to_slot(ag_tensor **slot, ag_tensor *g) { return add_to_slot(slot, g, true, NULL); }

ag_tensor *ag__grad_so_far(ag_tensor *in) {
    ag_tensor *s = in->op && in->requires_grad ? in->bgrad : NULL;
    if (!s || !unshared(s) || !ag__contig(s) || s->dtype != in->dtype || !same_shape(in, s)) return NULL;
    return ag__rare_mode_on() && ag__anomaly ? NULL : s;
}

bool ag__gout_writable(const ag_tensor *gout) {
    return gout && ag__contig(gout) && unshared(gout) && !gout->storage->base && !gout->storage->spill &&
           !(ag__rare_mode_on() && ag__anomaly);
}

void ag__add_through(ag_tensor *dst, const ag_tensor *src) {
    ag_iter it;
    ag__iter_init(&it, dst->ndim, dst->shape);
    ag__iter_add(&it, dst);
    ag__iter_add(&it, src);
    ag__iter_run_par(&it, dst->dtype == AG_F64 ? add_strided_f64 : add_strided_f32, NULL);
}

_Thread_local ag_tensor *(*ag__graph_add)(ag_tensor *a, ag_tensor *b);

/* Adds g (contiguous, in's shape; consumed) into the leaf in's .grad (gout: as add_to_slot). */
static ag_status to_grad(ag_tensor *in, ag_tensor *g, const ag_tensor *gout) {
    if (in->grad_pinned && in->grad) {
        add_into(in->grad, g);
        ag__release(g);
        return AG_OK;
    }
    ag_status st = add_to_slot(&in->grad, g, false, gout);
    ag__mark_grad_held(in->grad);
    return st;
}

_Thread_local bool ag__adjoint_frees_node;

ag_status ag__accumulate(ag_tensor *in, ag_tensor *g) { return ag__accumulate_last(in, g, NULL); }

ag_status ag__accumulate_last(ag_tensor *in, ag_tensor *g, const ag_tensor *gout) {
    if (!g) return ag_last_status() ? ag_last_status() : AG_ERR_NOMEM;
    if (!in || !in->requires_grad) {
        ag__release(g);
        return AG_OK;
    }
    if (g->dtype != in->dtype) { /* its data was converted in place after the graph was recorded */
        char s[AG_SHAPE_STR];
        ag_release(g);
        return ag__fail(AG_ERR_DTYPE, "backward: a %s gradient for a %s tensor %s: its dtype changed after the graph was "
                        "recorded (ag_module_to_dtype); run the forward pass again", ag_dtype_name(g->dtype),
                        ag_dtype_name(in->dtype), ag__tshape(s, in));
    }
    if (!same_shape(in, g)) {
        ag_tensor *r = ag__sum_to(g, in->ndim, in->shape);
        ag__release(g);
        if (!r) return AG_ERR_NOMEM;
        g = r;
    }
    /* A node's first incoming gradient may stay a strided view (sum's broadcast); .grad
     * and a sum of gradients are contiguous. */
    if (!ag__contig(g) && (!in->op || in->bgrad)) {
        ag_tensor *c = ag__contig_or_copy(g);
        ag__release(g);
        if (!c) return AG_ERR_NOMEM;
        g = c;
    }
    if (ag__rare_mode_on() && ag__anomaly) {
        int64_t bad = first_nonfinite(g);
        if (bad >= 0) {
            char s[AG_SHAPE_STR], w[512];
            ag__release(g);
            return ag__fail(AG_ERR_VALUE, "anomaly: %s produced a non-finite gradient for an input of shape %s at flat index %lld%s",
                            current_node ? current_node->op->grad_fn : "backward", ag__tshape(s, in), (long long)bad,
                            current_node ? where(current_node->where_file, current_node->where_line, w, sizeof w) : "");
        }
    }
    if (in->op) return add_to_slot(&in->bgrad, g, true, NULL);
    if (in->hooked && in->pending > 0) return add_to_slot(&in->bgrad, g, true, NULL); /* a hooked leaf collects first */
    return to_grad(in, g, gout);
}

/* ---- the reverse pass ------------------------------------------------------------------ */
void ag__node_list_free(ag_node_list *l) {
    ag__cache_free(l->v, sizeof(ag_tensor *) * (size_t)l->cap);
    *l = (ag_node_list){0};
}

bool ag__node_list_push(ag_node_list *l, ag_tensor *t) {
    if (l->n == l->cap) {
        int64_t cap = l->cap ? 2 * l->cap : 32;
        ag_tensor **g = ag__cache_alloc(sizeof(ag_tensor *) * (size_t)cap);
        if (!g) return false;
        if (l->n) memcpy(g, l->v, sizeof(ag_tensor *) * (size_t)l->n);
        ag__cache_free(l->v, sizeof(ag_tensor *) * (size_t)l->cap);
        l->v = g;
        l->cap = cap;
    }
    l->v[l->n++] = t;
    return true;
}

static bool is_node(const ag_tensor *t) { return t && t->requires_grad && (t->op || t->graph_freed); }

/* Post-order of the nodes reachable from root, iteratively; marks them visited.
 * The leaves with hooks go to *leaves (retained), each marked visited with
 * pending = the number of edges to it from those nodes. */
static ag_status topo_order(ag_tensor *root, ag_node_list *order, ag_node_list *leaves) {
    ag_node_list stack = {0};
    ag_status st = AG_OK;
    if (!ag__node_list_push(&stack, root)) return AG_ERR_NOMEM;
    root->visited = true;
    root->pending = 0; /* pending: index of the next input to visit */
    while (stack.n) {
        ag_tensor *t = stack.v[stack.n - 1];
        if (t->pending < t->nin) {
            ag_tensor *c = ag__input_as_recorded(t, t->pending++);
            if (is_node(c) && !c->visited) {
                c->visited = true;
                c->pending = 0;
                if (!ag__node_list_push(&stack, c)) { st = AG_ERR_NOMEM; break; }
            } else if (c && c->hooked && c->requires_grad && !is_node(c)) {
                if (!c->visited) {
                    if (!ag__node_list_push(leaves, c)) { st = AG_ERR_NOMEM; break; }
                    ag__retain(c);
                    c->visited = true;
                    c->pending = 0;
                }
                c->pending++;
            }
            continue;
        }
        stack.n--;
        if (!ag__node_list_push(order, t)) { st = AG_ERR_NOMEM; break; }
    }
    ag__node_list_free(&stack);
    if (st != AG_OK) ag__fail(AG_ERR_NOMEM, "backward: out of memory ordering the graph");
    return st;
}

static ag_status check_node(const ag_tensor *t) {
    char s[AG_SHAPE_STR];
    if (t->graph_freed)
        return ag__fail(AG_ERR_GRAPH,
                        "backward: trying to backward through the graph a second time (%s of shape %s was already freed); "
                        "pass retain_graph=true to ag_backward_ex the first time",
                        t->op ? t->op->grad_fn : "node", ag__tshape(s, t));
    if (!t->op->backward)
        return ag__fail(AG_ERR_GRAPH, "backward: %s is not differentiable", t->op->name);
    const uint32_t *version = ag__in_versions((ag_tensor *)t); /* inline only for up to AG_NODE_INLINE inputs */
    for (int i = 0; i < t->nin && i < AG_NODE_INLINE; i++) {
        if (!(t->op->saves >> i & 1) || !t->in[i]) continue;
        if (ag__version(t->in[i]) != version[i])
            return ag__fail(AG_ERR_GRAPH,
                            "backward: one of the variables needed for gradient computation has been modified by an "
                            "in-place operation: input %d of %s, %s %s, is at version %u; expected version %u instead",
                            i, t->op->grad_fn, ag_dtype_name(t->in[i]->dtype), ag__tshape(s, t->in[i]),
                            ag__version(t->in[i]), version[i]);
    }
    if ((t->op->saves & AG_SAVES_OUT) && ag__version(t) != t->out_version)
        return ag__fail(AG_ERR_GRAPH,
                        "backward: one of the variables needed for gradient computation has been modified by an "
                        "in-place operation: the output of %s, %s %s, is at version %u; expected version %u instead",
                        t->op->grad_fn, ag_dtype_name(t->dtype), ag__tshape(s, t), ag__version(t), t->out_version);
    if (t->op->saves & AG_OP_EXT) return ((const ag_op_ext *)t->op)->check(t);
    return AG_OK;
}

ag_status ag__check_node(const ag_tensor *t) { return check_node(t); }

/* t's tensor hooks and a leaf's post-accumulate hooks run in no-grad mode. */
static ag_status grad_hooks(ag_tensor *t, ag_tensor **g) {
    ag__no_grad_depth++;
    ag_status st = ag__run_grad_hooks(t, g);
    ag__no_grad_depth--;
    return st;
}

static ag_status post_accumulate_hooks(ag_tensor *t) {
    ag__no_grad_depth++;
    ag_status st = ag__run_post_accumulate_hooks(t);
    ag__no_grad_depth--;
    return st;
}

/* The hooked leaf t's gradient for this pass is complete: its tensor hooks see
 * it, .grad gets it, then its post-accumulate hooks run. */
static ag_status leaf_done(ag_tensor *t) {
    ag_tensor *g = t->bgrad;
    t->bgrad = NULL;
    t->pending = 0;
    if (!g) return AG_OK;
    ag_status st = grad_hooks(t, &g);
    if (st != AG_OK) {
        ag__release(g);
        return st;
    }
    if (!ag__contig(g)) {
        ag_tensor *c = ag__contig_or_copy(g);
        ag__release(g);
        if (!c) return AG_ERR_NOMEM;
        g = c;
    }
    st = to_grad(t, g, NULL);
    return st == AG_OK ? post_accumulate_hooks(t) : st;
}

/* Node t's adjoint has run (or it had no gradient): each hooked leaf it feeds has
 * one consumer fewer to wait for. */
static ag_status leaves_reached(const ag_tensor *t) {
    ag_status st = AG_OK;
    for (int i = 0; i < t->nin && st == AG_OK; i++) {
        ag_tensor *c = t->in[i];
        if (c && c->hooked && c->pending > 0 && !is_node(c) && --c->pending == 0) st = leaf_done(c);
    }
    return st;
}

/* Whether backward may hand grad_out's own data to the adjoints instead of a copy: no user
 * code runs on the gradients (no tensor or node hook on any tensor of the graph, no
 * user-defined function), which could write into or keep the tensor it is given.  The
 * engine itself never writes into a gradient it did not make: a gradient slot shares
 * what it adopts and copies before adding while shared, and a .grad adopts only an
 * unshared tensor, which the borrowed seed (a view) never is while grad_out lives. */
static bool may_borrow(const ag_node_list *order, const ag_node_list *leaves) {
    if (leaves->n) return false; /* hooked leaves */
    for (int64_t i = 0; i < order->n; i++)
        if (order->v[i]->hooked || (order->v[i]->op->saves & AG_OP_EXT)) return false;
    return true;
}

/* The gradient of out that starts backward, owned by the caller: 1 for a one-element out
 * without grad_out; a view of grad_out when borrow allows and it is contiguous (no copy of
 * a large gradient); else a copy of grad_out.  NULL when out of memory. */
static ag_tensor *new_seed(const ag_tensor *out, const ag_tensor *grad_out, bool borrow) {
    if (grad_out && borrow && ag__contig(grad_out) && !(grad_out->view_base && ag__view_stale(grad_out)))
        return ag__new_view_unowned(grad_out, grad_out->ndim, grad_out->shape, grad_out->stride, grad_out->offset);
    ag_tensor *seed = ag__new_unowned(out->dtype, out->ndim, out->shape, false);
    if (!seed) return NULL;
    if (grad_out) ag__copy_into(seed, grad_out);
    else if (out->dtype == AG_F32) *(float *)ag__ptr(seed) = 1.0f;
    else *(double *)ag__ptr(seed) = 1.0;
    return seed;
}

ag_status ag_backward_ex(ag_tensor *out, const ag_tensor *grad_out, bool retain_graph) {
    AG_CHECK_HANDLES(AG_ERR_ARG, "backward", out, grad_out);
    char s1[AG_SHAPE_STR], s2[AG_SHAPE_STR];
    if (!out) return ag_last_status() ? ag_last_status() : ag__fail(AG_ERR_ARG, "backward: tensor is NULL");
    if (out->view_base && ag__view_stale(out) && ag__refresh_view(out)) return AG_ERR_NOMEM;
    if (!out->requires_grad)
        return ag__fail(AG_ERR_GRAPH, "backward: the tensor %s does not require grad and has no grad_fn", ag__tshape(s1, out));
    if (out->graph_freed) return check_node(out);
    if (grad_out) {
        if (!same_shape(out, grad_out))
            return ag__fail(AG_ERR_SHAPE, "backward: grad_out has shape %s but the output has shape %s",
                            ag__tshape(s1, grad_out), ag__tshape(s2, out));
        if (grad_out->dtype != out->dtype)
            return ag__fail(AG_ERR_DTYPE, "backward: grad_out is %s but the output is %s",
                            ag_dtype_name(grad_out->dtype), ag_dtype_name(out->dtype));
    } else if (ag__numel(out->ndim, out->shape) != 1) {
        return ag__fail(AG_ERR_GRAPH, "backward: grad can be implicitly created only for one-element outputs, got shape %s "
                                      "(pass grad_out to ag_backward_ex)", ag__tshape(s1, out));
    }

    if (!out->op) { /* a leaf: its gradient is the seed */
        ag_tensor *seed = new_seed(out, grad_out, false);
        if (!seed) return AG_ERR_NOMEM;
        if (!out->hooked) return ag__accumulate(out, seed);
        out->bgrad = seed;
        return leaf_done(out);
    }

    ag_node_list order = {0}, leaves = {0};
    ag_status st = topo_order(out, &order, &leaves);
    ag_tensor *seed = st == AG_OK ? new_seed(out, grad_out, may_borrow(&order, &leaves)) : NULL;
    if (st == AG_OK && !seed) st = AG_ERR_NOMEM;
    for (int64_t i = 0; i < order.n; i++) order.v[i]->visited = false;
    for (int64_t i = 0; i < leaves.n; i++) leaves.v[i]->visited = false;
    for (int64_t i = 0; st == AG_OK && i < order.n; i++) st = check_node(order.v[i]);
    if (st != AG_OK) {
        for (int64_t i = 0; i < leaves.n; i++) leaves.v[i]->pending = 0, ag__release(leaves.v[i]);
        ag__release(seed);
        ag__node_list_free(&order);
        ag__node_list_free(&leaves);
        return st;
    }
    for (int64_t i = 0; i < order.n; i++) ag__retain(order.v[i]);
    ag__backward_pass++;

    out->bgrad = seed;
    const ag_tensor *failed = NULL; /* the node being differentiated when st went bad */
    const uint64_t failures = ag__failures();
    for (int64_t i = order.n - 1; i >= 0 && st == AG_OK; i--) {
        ag_tensor *t = order.v[i];
        failed = t;
        ag_tensor *g = t->bgrad;
        t->bgrad = NULL;
        if (!g) {
            if (leaves.n) st = leaves_reached(t);
            continue;
        }
        if (t->hooked) st = grad_hooks(t, &g);
        if (st == AG_OK && t->retains_grad) {
            st = add_to_slot(&t->grad, ag__retain(g), false, NULL);
            ag__mark_grad_held(t->grad);
        }
        if (st == AG_OK && !ag__contig(g) && !(t->op->saves & AG_GOUT_ANY_STRIDES)) {
            ag_tensor *c = ag__contig_or_copy(g); /* the adjoint wants gout contiguous */
            ag__release(g);
            g = c;
            if (!g) st = AG_ERR_NOMEM;
        }
        current_node = t;
        const uint8_t autocast = ag__autocast_switch(t->autocast); /* the adjoint in its forward's precision */
        const bool frees = ag__adjoint_frees_node; /* an adjoint may run a backward of its own */
        ag__adjoint_frees_node = !retain_graph;
        if (st == AG_OK) st = t->op->backward(t, g);
        ag__adjoint_frees_node = frees;
        ag__autocast_restore(t->autocast, autocast);
        current_node = NULL;
        ag__release(g);
        if (st == AG_OK && leaves.n) st = leaves_reached(t);
        if (!retain_graph) ag__release_graph(t);
    }
    for (int64_t i = 0; i < order.n; i++) {
        ag__release(order.v[i]->bgrad);
        order.v[i]->bgrad = NULL;
    }
    for (int64_t i = 0; i < leaves.n; i++) { /* after a failure: what a leaf collected goes */
        ag__release(leaves.v[i]->bgrad);
        leaves.v[i]->bgrad = NULL;
        leaves.v[i]->pending = 0;
        ag__release(leaves.v[i]);
    }
    ag__node_list_free(&leaves);
    /* Every failure is recorded: an adjoint or an allocation that returned a status
     * without a message gets one naming the node (a status returned must be the one
     * ag_last_status() reports). */
    if (st != AG_OK && (ag__failures() == failures || ag_last_status() != st))
        ag__fail(st, "backward: %s while computing the gradients of %s",
                 st == AG_ERR_NOMEM ? "out of memory" : ag_status_name(st),
                 failed && failed->op ? failed->op->grad_fn : "the graph");
    for (int64_t i = 0; i < order.n; i++) ag__release(order.v[i]);
    ag__node_list_free(&order);
    return st;
}

ag_status ag_backward(ag_tensor *loss) {
    AG_CHECK_HANDLES(AG_ERR_ARG, "backward", loss);
    return ag_backward_ex(loss, NULL, false);
}

/* ---- requires_grad, grad, detach ------------------------------------------------------------- */
ag_tensor *ag_requires_grad_(ag_tensor *t, bool requires_grad) {
    AG_CHECK_HANDLES(NULL, "requires_grad_", t);
    if (!t) return NULL;
    if (t->op)
        return ag__fail_null(AG_ERR_GRAPH, "requires_grad_: only leaf tensors can change requires_grad "
                                           "(this one comes from %s); use ag_detach", t->op->grad_fn);
    if (requires_grad && t->dtype != AG_F32 && t->dtype != AG_F64)
        return ag__fail_null(AG_ERR_DTYPE, "requires_grad_: only floating tensors can require grad, got %s",
                             ag_dtype_name(t->dtype));
    t->requires_grad = requires_grad;
    if (requires_grad && t->view_base) t->view_base->view_flags |= AG_VIEW_GRAD_LEAF;
    return t;
}

/* A view whose base changed since its node was made shows its new history (as a
 * PyTorch view's grad_fn does); out of memory leaves it as it was. */
static const ag_tensor *current(const ag_tensor *t) {
    if (t && t->view_base && ag__view_stale(t)) ag__refresh_view((ag_tensor *)t);
    return t;
}

bool ag_requires_grad(const ag_tensor *t) {
    AG_CHECK_HANDLES(false, "requires_grad", t);
    return current(t) && t->requires_grad;
}

bool ag_is_leaf(const ag_tensor *t) {
    AG_CHECK_HANDLES(false, "is_leaf", t);
    return current(t) && !t->op && !t->graph_freed;
}

ag_tensor *ag_grad(const ag_tensor *t) {
    AG_CHECK_HANDLES(NULL, "grad", t);
    return t ? t->grad : NULL;
}

void ag_zero_grad(ag_tensor *t) {
    AG_CHECK_HANDLES(, "zero_grad", t);
    if (!t) return;
    if (t->grad_pinned && t->grad) { /* a view into a flat gradient buffer: keep it, zeroed */
        const ag_tensor *g = t->grad;
        memset(ag__ptr(g), 0, (size_t)ag__numel(g->ndim, g->shape) * ag__esize(g->dtype));
        ag__bump_version(t->grad);
        return;
    }
    ag__release(t->grad);
    t->grad = NULL;
}

ag_tensor *ag_retain_grad(ag_tensor *t) {
    AG_CHECK_HANDLES(NULL, "retain_grad", t);
    if (t && t->op) t->retains_grad = true;
    return t;
}

const char *ag_grad_fn_name(const ag_tensor *t) {
    AG_CHECK_HANDLES(NULL, "grad_fn_name", t);
    return current(t) && t->op ? t->op->grad_fn : NULL;
}

ag_tensor *ag_detach(ag_tensor *t) {
    AG_CHECK_HANDLES(NULL, "detach", t);
    if (!t) return NULL;
    return ag__new_view(t, t->ndim, t->shape, t->stride, t->offset);
}

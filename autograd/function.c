/*
 * function.c - user-defined differentiable functions (torch.autograd.Function):
 * a forward and a backward written in C, recorded as a node of the tape.
 *
 * Each call makes a context (ag_ctx) that holds what forward saved, the outputs'
 * shapes and the function's node rows (ag_op_ext, core/internal.h), so that the
 * nodes are named after the user's function.  With one differentiable output that
 * output is the node calling the user's backward (the "runner"), its inputs the
 * function's.  With several, a hidden context node of shape [0] is the runner and
 * every differentiable output is a node whose only input is it: an output's adjoint
 * keeps its gradient in the context and hands the context node an empty gradient,
 * so the context node comes after every output in backward's topological order
 * and calls the user's backward once, with all the gradients that arrived.
 *
 * An input the forward modified in place and marked dirty is returned as itself
 * (ag_ctx_mark_dirty) and recorded as an in-place write (autograd/write.c): a
 * context node is then the runner, its input the dirty tensor's history (the
 * hidden header ag__write_begin made), and the tensor, or for a view its base as
 * CopySlices, becomes a node over {history, context node} whose adjoint keeps
 * dL/d out[k] (for a view, its elements of the base's gradient) for the user's
 * backward, as an output's does.
 *
 * Under create_graph (ops/grad.c) the same nodes run their backward_graph: the
 * outputs' keep their recorded gradients (summed with ag__graph_add when an output
 * has several nodes) and the runner calls the user's backward with grad mode on,
 * ag_ctx_saved giving what was saved of an input or output with its graph: an
 * input itself, an output as a new node of the context node (output_alias), as
 * PyTorch unpacks a saved output with the function's node as its grad_fn.
 *
 * The context is reference counted by the headers whose op is one of its rows,
 * since ag_grad_fn_name reads the name as long as a tensor lives; the saved
 * tensors go with the runner's graph (after backward, unless retain_graph).
 */
#include <stddef.h>
#include <string.h>
#include "autograd/tape.h"
#include "agrad/autograd.h"

/* What the context remembers of an output: enough to make its zero gradient. */
typedef struct out_info {
    ag_dtype dtype;
    int ndim;
    int64_t shape[AG_MAX_DIMS];
    bool non_diff;     /* ag_ctx_mark_non_differentiable, or not a float tensor */
    int dirty_in;      /* the dirty input it is (ag_ctx_mark_dirty), or -1 */
    ag_tensor *grad;   /* with a context node: the gradient it got in pass `pass` (summed over its nodes) */
    ag_tensor *alias;  /* while the user's backward runs under create_graph: the output as ag_ctx_saved gives it */
    ag_tensor *tangent; /* with a context node: its tangent from the user's jvp, until its own node reads it */
} out_info;

struct ag_ctx {
    ag_op_ext run;     /* the runner's row: its adjoint calls the user's backward */
    ag_op_ext out;     /* an output's row when a context node is the runner */
    ag_op_ext dirty;   /* a dirty input's row, and its CopySlices twin for a view */
    ag_op_ext dirty_cs;
    ag_refcount refcount; /* headers whose op is run or out, and apply while it runs (atomic, as tensors') */
    const ag_function_type *type;
    void *user;
    double scalar[AG_CTX_SCALARS];
    int nin, nout, nsaved;
    bool in_forward, materialize, grad;
    ag_tensor *const *in; /* [nin], while forward runs */
    bool *marked;      /* [nin]: ag_ctx_mark_dirty */
    bool context_node; /* a context node is the runner (several differentiable outputs) */
    bool *needs;       /* [nin]: ag_ctx_needs_input_grad */
    out_info *outs;    /* [nout] */
    ag_tensor **saved; /* [nsaved]: views sharing the saved tensors' data */
    uint32_t *saved_version;
    int *saved_src;    /* [nsaved]: the input j >= 0 or the output -2 - k it is, or -1 */
    ag_tensor *graph_node; /* while backward (under create_graph) or jvp runs: the runner */
    bool graph_backward;   /* backward runs under create_graph */
    uint64_t pass;     /* ag__backward_pass of the gradients in outs[].grad */
    char grad_fn[];    /* "<name>Backward" */
};

static ag_status run_backward(ag_tensor *t, ag_tensor *gout);
static ag_status out_backward(ag_tensor *t, ag_tensor *gout);
static ag_status dirty_backward(ag_tensor *t, ag_tensor *gout);
static ag_status dirty_cs_backward(ag_tensor *t, ag_tensor *gout);
static ag_status run_backward_graph(ag_tensor *t, ag_tensor *gout, ag_tensor **gin);
static ag_status out_backward_graph(ag_tensor *t, ag_tensor *gout, ag_tensor **gin);
static ag_status dirty_backward_graph(ag_tensor *t, ag_tensor *gout, ag_tensor **gin);
static ag_tensor *run_jvp(ag_tensor *t, ag_tensor *const *tin);
static ag_tensor *out_jvp(ag_tensor *t, ag_tensor *const *tin);
static void node_release(ag_tensor *t, bool dies);
static ag_status node_check(const ag_tensor *t);

/* The context a node's op row lies in. */
static ag_ctx *ctx_of(const ag_tensor *t) {
    ag_backward_fn f = t->op->backward;
    size_t at = f == run_backward     ? offsetof(ag_ctx, run)
                : f == out_backward   ? offsetof(ag_ctx, out)
                : f == dirty_backward ? offsetof(ag_ctx, dirty)
                                      : offsetof(ag_ctx, dirty_cs);
    return (ag_ctx *)((char *)(uintptr_t)t->op - at);
}

static void drop_saved(ag_ctx *c) {
    for (int i = 0; i < c->nsaved; i++) ag__release(c->saved[i]);
    ag__free(c->saved);
    ag__free(c->saved_version);
    ag__free(c->saved_src);
    c->saved = NULL;
    c->saved_version = NULL;
    c->saved_src = NULL;
    c->nsaved = 0;
}

static void drop_grads(ag_ctx *c) {
    for (int k = 0; k < c->nout; k++) {
        ag__release(c->outs[k].grad);
        c->outs[k].grad = NULL;
        ag__release(c->outs[k].tangent);
        c->outs[k].tangent = NULL;
    }
}

static void ctx_unref(ag_ctx *c) {
    if (!c || !ag__ref_drop(&c->refcount)) return;
    drop_saved(c);
    drop_grads(c);
    ag__free(c->needs);
    ag__free(c->marked);
    ag__free(c->outs);
    ag__free(c);
}

static ag_ctx *ctx_new(const ag_function_type *f, int nin, int nout, void *user) {
    size_t len = strlen(f->name);
    ag_ctx *c = ag__calloc(sizeof *c + len + sizeof "Backward");
    if (!c) return ag__fail_null(AG_ERR_NOMEM, "%s: out of memory", f->name);
    memcpy(c->grad_fn, f->name, len);
    memcpy(c->grad_fn + len, "Backward", sizeof "Backward");
    c->run = (ag_op_ext){{.name = f->name, .grad_fn = c->grad_fn, .backward = run_backward, .saves = AG_OP_EXT,
                          .backward_graph = run_backward_graph, .jvp = f->jvp ? run_jvp : NULL},
                         node_release, node_check};
    c->out = (ag_op_ext){{.name = f->name, .grad_fn = c->grad_fn, .backward = out_backward, .saves = AG_OP_EXT,
                          .backward_graph = out_backward_graph, .jvp = f->jvp ? out_jvp : NULL},
                         node_release, node_check};
    c->dirty = (ag_op_ext){{.name = f->name, .grad_fn = c->grad_fn, .backward = dirty_backward,
                            .saves = AG_OP_EXT | AG_OP_INPLACE, .backward_graph = dirty_backward_graph},
                           node_release, node_check};
    c->dirty_cs = (ag_op_ext){{.name = f->name, .grad_fn = "CopySlices", .backward = dirty_cs_backward,
                               .saves = AG_OP_EXT | AG_OP_INPLACE},
                              node_release, node_check};
    ag__ref_init(&c->refcount, 1);
    c->type = f;
    c->user = user;
    c->nin = nin;
    c->nout = nout;
    c->materialize = true;
    c->needs = ag__calloc(sizeof(bool) * (size_t)(nin ? nin : 1));
    c->marked = ag__calloc(sizeof(bool) * (size_t)(nin ? nin : 1));
    c->outs = ag__calloc(sizeof(out_info) * (size_t)nout);
    if (!c->needs || !c->marked || !c->outs) {
        ctx_unref(c);
        return ag__fail_null(AG_ERR_NOMEM, "%s: out of memory", f->name);
    }
    for (int k = 0; k < nout; k++) c->outs[k].dirty_in = -1;
    return c;
}

/* Re-records status st (the callback's) with the callback's message after a prefix
 * naming the function. */
static ag_status wrap_failure(ag_status st, const char *name, const char *what) {
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", ag_last_status() ? ag_last_error() : "no message recorded");
    return ag__fail(st, "%s: %s failed (%s): %s", name, what, ag_status_name(st), msg);
}

/* ---- the context's accessors ----------------------------------------------------------------- */
ag_status ag_ctx_save_for_backward(ag_ctx *ctx, ag_tensor *const *t, int n) {
    if (!ctx || !ctx->in_forward) return ag__fail(AG_ERR_ARG, "ctx_save_for_backward: only a forward may save tensors");
    if (n < 0 || (n > 0 && !t))
        return ag__fail(AG_ERR_ARG, "ctx_save_for_backward: %s: expects n >= 0 tensors, got %d", ctx->type->name, n);
    AG_CHECK_HANDLE_ARRAY(AG_ERR_ARG, "ctx_save_for_backward", t, n);
    ag_tensor **saved = ag__calloc(sizeof(ag_tensor *) * (size_t)(n ? n : 1));
    uint32_t *version = ag__calloc(sizeof(uint32_t) * (size_t)(n ? n : 1));
    int *src = ag__calloc(sizeof(int) * (size_t)(n ? n : 1));
    for (int i = 0; saved && version && src && i < n; i++) {
        src[i] = -1;
        for (int j = 0; j < ctx->nin && src[i] < 0; j++)
            if (t[i] == ctx->in[j]) src[i] = j;
        if (!t[i]) continue;
        /* a view, so that the context holds the data but not the tensor's graph */
        saved[i] = ag__new_view_unowned(t[i], t[i]->ndim, t[i]->shape, t[i]->stride, t[i]->offset);
        if (!saved[i]) {
            for (int j = 0; j < i; j++) ag__release(saved[j]);
            ag__free(saved);
            saved = NULL;
            break;
        }
        version[i] = ag__version(t[i]);
    }
    if (!saved || !version || !src) {
        ag__free(saved);
        ag__free(version);
        ag__free(src);
        return ag__fail(AG_ERR_NOMEM, "ctx_save_for_backward: %s: out of memory", ctx->type->name);
    }
    drop_saved(ctx);
    ctx->saved = saved;
    ctx->saved_version = version;
    ctx->saved_src = src;
    ctx->nsaved = n;
    return AG_OK;
}

/* Output k of the call whose context node is c->graph_node, for the user's backward
 * under create_graph: a tensor over the saved data v, recorded as another node of
 * output k (its gradient summed with the output's own in the next pass: keep), made
 * once per backward and owned by its scope, as PyTorch unpacks a saved output with
 * the function's node as grad_fn.  NULL on ENOMEM. */
static ag_tensor *output_alias(ag_ctx *c, int k, const ag_tensor *v) {
    out_info *o = &c->outs[k];
    if (o->alias) return o->alias;
    ag_tensor *node = c->graph_node, *a = ag__new_view(v, v->ndim, v->shape, v->stride, v->offset);
    if (!a || !ag__record(a, &c->out.op, &node, 1)) return NULL; /* one input: only the header can fail */
    a->attr.i[0] = k;
    ag__ref_take(&c->refcount);
    return o->alias = a;
}

ag_tensor *ag_ctx_saved(const ag_ctx *ctx, int i) {
    if (!ctx) return ag__fail_null(AG_ERR_ARG, "ctx_saved: ctx is NULL");
    if (i < 0 || i >= ctx->nsaved)
        return ag__fail_null(AG_ERR_INDEX, "ctx_saved: %s: index %d is out of range for %d saved tensors",
                             ctx->type->name, i, ctx->nsaved);
    ag_tensor *g = ctx->graph_node; /* under create_graph: an input or the output with its graph */
    int src = ctx->saved[i] && g ? ctx->saved_src[i] : -1;
    if (!ctx->context_node) {
        if (src >= 0) return g->in[src];
        if (src <= -2 && -2 - src == g->attr.i[0]) return g;
        return ctx->saved[i];
    }
    int k = src <= -2 ? -2 - src : -1; /* the output it is: a dirty input, saved after the write, is one */
    for (int o = 0; src >= 0 && o < ctx->nout; o++)
        if (ctx->outs[o].dirty_in == src) k = o;
    if (src >= 0 && k < 0) return g->in[src];
    if (k < 0 || !ctx->graph_backward || ctx->outs[k].non_diff) return ctx->saved[i];
    return output_alias((ag_ctx *)(uintptr_t)ctx, k, ctx->saved[i]);
}

int ag_ctx_num_saved(const ag_ctx *ctx) { return ctx ? ctx->nsaved : 0; }

bool ag_ctx_needs_input_grad(const ag_ctx *ctx, int i) { return ctx && i >= 0 && i < ctx->nin && ctx->needs[i]; }

ag_status ag_ctx_mark_non_differentiable(ag_ctx *ctx, int k) {
    if (!ctx || !ctx->in_forward)
        return ag__fail(AG_ERR_ARG, "ctx_mark_non_differentiable: only a forward may mark its outputs");
    if (k < 0 || k >= ctx->nout)
        return ag__fail(AG_ERR_INDEX, "ctx_mark_non_differentiable: %s: output %d is out of range for %d outputs",
                        ctx->type->name, k, ctx->nout);
    ctx->outs[k].non_diff = true;
    return AG_OK;
}

ag_status ag_ctx_mark_dirty(ag_ctx *ctx, int i) {
    if (!ctx || !ctx->in_forward) return ag__fail(AG_ERR_ARG, "ctx_mark_dirty: only a forward may mark its inputs");
    if (i < 0 || i >= ctx->nin)
        return ag__fail(AG_ERR_INDEX, "ctx_mark_dirty: %s: input %d is out of range for %d inputs", ctx->type->name,
                        i, ctx->nin);
    ag_tensor *x = ctx->in[i];
    if (ctx->grad) { /* recorded: what a built-in in-place op refuses, before the write */
        if (ag__write_check(ctx->type->name, x)) return ag_last_status();
        for (int j = 0; j < ctx->nin; j++) /* an operand from a leaf view of x: the built-ins' refusal */
            if (j != i && ag__write_check_operand(ctx->type->name, x, ctx->in[j])) return ag_last_status();
        if (x->view_base && ag__view_stale(x) && ag__refresh_view(x)) return AG_ERR_NOMEM;
    }
    ctx->marked[i] = true;
    return AG_OK;
}

void ag_ctx_set_materialize_grads(ag_ctx *ctx, bool materialize) {
    if (ctx) ctx->materialize = materialize;
}

ag_status ag_ctx_set_scalar(ag_ctx *ctx, int i, double v) {
    if (!ctx || i < 0 || i >= AG_CTX_SCALARS)
        return ag__fail(AG_ERR_INDEX, "ctx_set_scalar: index %d is out of range for %d scalars", i, AG_CTX_SCALARS);
    ctx->scalar[i] = v;
    return AG_OK;
}

double ag_ctx_scalar(const ag_ctx *ctx, int i) { return ctx && i >= 0 && i < AG_CTX_SCALARS ? ctx->scalar[i] : 0; }

void *ag_ctx_user(const ag_ctx *ctx) { return ctx ? ctx->user : NULL; }

void ag_ctx_set_user(ag_ctx *ctx, void *user) {
    if (ctx) ctx->user = user;
}

/* ---- forward ---------------------------------------------------------------------------------- */
/* Runs the user's forward inside a scope of its own, in no-grad mode; on success
 * res[k] are the outputs, each with a reference of the caller's. */
static ag_status run_forward(ag_ctx *c, ag_tensor *const *in, int nin, ag_tensor **res, int nout) {
    const char *name = c->type->name;
    if (ag__composite_begin(name)) return AG_ERR_NOMEM;
    c->in_forward = true;
    ag_no_grad_begin();
    ag_status st = c->type->forward(c, in, nin, res, nout);
    ag_no_grad_end();
    c->in_forward = false;
    if (st) {
        st = wrap_failure(st, name, "forward");
    } else {
        for (int k = 0; k < nout && !st; k++)
            if (!res[k]) st = ag__fail(AG_ERR_ARG, "%s: forward returned AG_OK but left output %d NULL", name, k);
        if (!st && !ag__handle_array_ok(name, "out", res, nout)) st = AG_ERR_ARG;
    }
    for (int k = 0; k < nout && !st; k++) ag__retain(res[k]);
    ag__composite_end(NULL);
    return st;
}

/* Turns the differentiable outputs y[] into nodes of c over in[] (see the top of
 * the file), whose versions when the forward read them are pre[].  Returns AG_OK
 * or AG_ERR_NOMEM; an output that ag__record failed on is discarded and set to
 * NULL; nothing is recorded when a dirty input's write cannot be. */
static ag_status record(ag_ctx *c, ag_tensor *const *in, int nin, ag_tensor **y, int nout, const uint32_t *pre) {
    int ndiff = 0, last = -1, ndirty = 0;
    for (int k = 0; k < nout; k++) {
        if (!c->outs[k].non_diff) ndiff++, last = k;
        if (c->outs[k].dirty_in >= 0) ndirty++;
    }
    if (ndiff == 0) return AG_OK;
    if (ndiff == 1 && ndirty == 0) { /* the output is the runner */
        if (!ag__record(y[last], &c->run.op, in, nin)) { /* only allocating an array of more than 3 inputs fails */
            y[last] = NULL;
            return ag__fail(AG_ERR_NOMEM, "%s: out of memory", c->type->name);
        }
        y[last]->attr.i[0] = last;
        ag__ref_take(&c->refcount);
        return AG_OK;
    }
    /* The dirty inputs' hidden headers first: nothing can fail once one is rebased. */
    ag_write *w = ag__calloc(sizeof(ag_write) * (size_t)nout);
    int begun = 0;
    for (; w && begun < nout; begun++)
        if (c->outs[begun].dirty_in >= 0 && ag__write_begin(&w[begun], y[begun])) break;
    /* A context node, made in a scope of its own so that a failed ag__record leaves it to the scope. */
    ag_tensor *node = NULL;
    if (begun == nout && !ag__composite_begin(c->type->name)) {
        int64_t empty = 0;
        node = ag__new(AG_F32, 1, &empty);
        node = ag__retain(node ? ag__record(node, &c->run.op, in, nin) : NULL);
        ag__composite_end(NULL);
    }
    if (!node) {
        for (int k = 0; k < begun; k++) ag__write_cancel(&w[k]);
        ag__free(w);
        return ag__fail(AG_ERR_NOMEM, "%s: out of memory", c->type->name);
    }
    c->context_node = true;
    ag__ref_take(&c->refcount);
    uint32_t *version = ag__in_versions(node);
    for (int i = 0; i < nin; i++) version[i] = pre[i]; /* what the forward read */
    for (int k = 0; k < nout; k++) { /* the node consumed a dirty input's history */
        int i = c->outs[k].dirty_in;
        if (i < 0) continue;
        ag__write_rebase(&w[k]);
        ag__release(node->in[i]);
        node->in[i] = ag__retain(w[k].h);
    }
    for (int k = 0; k < nout; k++) {
        if (c->outs[k].non_diff) continue;
        if (c->outs[k].dirty_in >= 0) {
            ag_attr attr = {.i = {k}};
            ag__write_record(&w[k], w[k].base ? &c->dirty_cs.op : &c->dirty.op, node, NULL, &attr);
        } else {
            ag__record(y[k], &c->out.op, &node, 1); /* one input: nothing to allocate */
            y[k]->attr.i[0] = k;
        }
        ag__ref_take(&c->refcount);
    }
    ag__free(w);
    ag__release(node); /* the outputs hold it */
    return AG_OK;
}

/* The outputs that are dirty inputs (out_info.dirty_in); AG_ERR_ARG when a dirty
 * input is not returned, is returned non-differentiable, or shares memory with
 * another dirty input. */
/* Whether a and b are the same elements of the same storage. */
static bool same_tensor(const ag_tensor *a, const ag_tensor *b) {
    return a->storage == b->storage && a->offset == b->offset && a->ndim == b->ndim && a->dtype == b->dtype &&
           !memcmp(a->shape, b->shape, sizeof(int64_t) * (size_t)a->ndim) &&
           !memcmp(a->stride, b->stride, sizeof(int64_t) * (size_t)a->ndim);
}

static ag_status match_dirty(ag_ctx *c, ag_tensor *const *in, ag_tensor *const *res) {
    const char *name = c->type->name;
    for (int i = 0; i < c->nin; i++)
        for (int j = 0; j < i && c->marked[i]; j++)
            if (c->marked[j] && ag__version_counter(in[j]->storage) == ag__version_counter(in[i]->storage))
                return ag__fail(AG_ERR_ARG, "%s: dirty inputs %d and %d share memory; mark one tensor of the "
                                "memory dirty", name, j, i);
    for (int k = 0; k < c->nout; k++) {
        c->outs[k].dirty_in = -1;
        for (int i = 0; i < c->nin; i++)
            if (c->marked[i] && res[k] == in[i]) c->outs[k].dirty_in = i;
    }
    for (int i = 0; i < c->nin; i++) {
        if (!c->marked[i]) continue;
        int found = 0;
        for (int k = 0; k < c->nout; k++)
            if (c->outs[k].dirty_in == i) {
                if (found++)
                    return ag__fail(AG_ERR_ARG, "%s: dirty input %d is returned twice (outputs %d and earlier)", name,
                                    i, k);
                if (c->outs[k].non_diff && c->grad)
                    return ag__fail(AG_ERR_ARG, "%s: output %d is dirty input %d and cannot be marked "
                                    "non-differentiable", name, k, i);
            }
        if (!found)
            return ag__fail(AG_ERR_ARG, "%s: input %d was marked dirty but is not returned as an output (as in "
                            "PyTorch, a tensor the forward modified in place must be returned)", name, i);
    }
    return AG_OK;
}

ag_status ag_function_apply(const ag_function_type *f, ag_tensor *const *in, int nin, ag_tensor **out, int nout,
                            void *user) {
    if (out)
        for (int k = 0; k < nout; k++) out[k] = NULL;
    if (!f || !f->name || !f->forward || !f->backward)
        return ag__fail(AG_ERR_ARG, "function_apply: the function type is NULL or lacks a name, forward or backward");
    if (nin < 0 || nout < 1 || !out || (nin > 0 && !in))
        return ag__fail(AG_ERR_ARG, "%s: expects nin >= 0 inputs and nout >= 1 outputs with their arrays, got nin %d "
                        "and nout %d", f->name, nin, nout);
    AG_CHECK_HANDLE_ARRAY(AG_ERR_ARG, f->name, in, nin);
    for (int i = 0; i < nin; i++)
        if (!in[i]) return ag_last_status() ? ag_last_status() : ag__fail(AG_ERR_ARG, "%s: input %d is NULL", f->name, i);

    ag_ctx *c = ctx_new(f, nin, nout, user);
    ag_tensor **res = c ? ag__calloc(sizeof(ag_tensor *) * (size_t)nout) : NULL;
    if (!res) {
        ctx_unref(c);
        return c ? ag__fail(AG_ERR_NOMEM, "%s: out of memory", f->name) : AG_ERR_NOMEM;
    }
    bool grad = ag__needs_grad(in, nin);
    for (int i = 0; i < nin; i++) c->needs[i] = grad && in[i]->requires_grad;
    c->grad = grad;
    c->in = in;
    uint32_t pre[AG_NODE_INLINE], *pre_heap = nin > AG_NODE_INLINE ? ag__alloc(sizeof(uint32_t) * (size_t)nin) : NULL;
    uint32_t *version = nin > AG_NODE_INLINE ? pre_heap : pre;
    ag_status st = version ? AG_OK : ag__fail(AG_ERR_NOMEM, "%s: out of memory", f->name);
    for (int i = 0; i < nin && version; i++) version[i] = ag__version(in[i]);
    if (!st) st = run_forward(c, in, nin, res, nout);
    bool retained = st == AG_OK;
    c->in = NULL;
    if (!st) st = match_dirty(c, in, res);
    for (int i = 0; !st && i < c->nsaved; i++) /* which saved tensors are outputs (create_graph reads them so) */
        for (int k = 0; k < nout && c->saved[i] && c->saved_src[i] == -1; k++)
            if (same_tensor(c->saved[i], res[k])) c->saved_src[i] = -2 - k;
    /* Each output becomes a new header over the forward's data, owned by the caller's
     * scope; a dirty input is returned as itself. */
    for (int k = 0; k < nout && !st; k++) {
        ag_tensor *r = res[k];
        bool dirty = c->outs[k].dirty_in >= 0; /* the caller's own tensor: never discarded */
        out[k] = dirty ? r : ag__new_view(r, r->ndim, r->shape, r->stride, r->offset);
        if (!out[k]) st = ag__fail(AG_ERR_NOMEM, "%s: out of memory", f->name);
        else if (!dirty && (r->dtype == AG_F32 || r->dtype == AG_F64) && !(out[k] = ag__check_finite(out[k], f->name)))
            st = AG_ERR_VALUE;
        out_info *o = &c->outs[k];
        o->dtype = r->dtype;
        o->ndim = r->ndim;
        memcpy(o->shape, r->shape, sizeof(int64_t) * (size_t)r->ndim);
        o->non_diff = o->non_diff || !grad || (r->dtype != AG_F32 && r->dtype != AG_F64);
    }
    for (int k = 0; k < nout && retained; k++) ag__release(res[k]);
    ag__free(res);
    if (!st) st = record(c, in, nin, out, nout, version);
    ag__free(pre_heap);
    if (st)
        for (int k = 0; k < nout; k++) {
            if (c->outs[k].dirty_in < 0) ag__discard(out[k]);
            out[k] = NULL;
        }
    ctx_unref(c); /* apply's reference: the nodes hold the context from now on */
    return st;
}

ag_tensor *ag_function_apply1(const ag_function_type *f, ag_tensor *const *in, int nin, void *user) {
    ag_tensor *y = NULL;
    return ag_function_apply(f, in, nin, &y, 1, user) ? NULL : y;
}

/* ---- backward ---------------------------------------------------------------------------------- */
/* Keeps g = dL/dy_k for the user's backward, added to what the other nodes of output
 * k (its aliases under create_graph) gave it in this pass: with recorded ops when
 * recorded (create_graph).  Borrows g. */
static ag_status keep(ag_ctx *c, int k, ag_tensor *g, bool recorded) {
    if (c->pass != ag__backward_pass) { /* gradients kept by a pass that failed before the runner */
        drop_grads(c);
        c->pass = ag__backward_pass;
    }
    out_info *o = &c->outs[k];
    if (!o->grad) {
        o->grad = ag__retain(g);
        return AG_OK;
    }
    if (!recorded) return ag__add_to_slot(&o->grad, ag__retain(g));
    ag_tensor *sum = ag__graph_add ? ag__graph_add(o->grad, g) : NULL; /* dL/dy_k summed over its nodes */
    if (!sum) return ag_last_status() ? ag_last_status() : ag__fail(AG_ERR_NOMEM, "%s: out of memory", c->grad_fn);
    ag__release(o->grad);
    o->grad = ag__retain(sum);
    return AG_OK;
}

/* An output's adjoint when a context node is the runner: keeps dL/dy_k for the
 * user's backward and hands the context node an empty gradient, so that it runs. */
static ag_status keep_grad(ag_tensor *t, ag_tensor *node, ag_tensor *gout) {
    ag_status st = keep(ctx_of(t), t->attr.i[0], gout, false);
    int64_t empty = 0;
    return st ? st : ag__accumulate(node, ag__new_unowned(AG_F32, 1, &empty, false));
}

static ag_status out_backward(ag_tensor *t, ag_tensor *gout) { return keep_grad(t, t->in[0], gout); }

/* A dirty input's adjoint: its node t is over {its history, the context node}; keeps
 * dL/dy_k as out_backward does (the history gets its gradient from the user's). */
static ag_status dirty_backward(ag_tensor *t, ag_tensor *gout) { return keep_grad(t, t->in[1], gout); }

/* A dirty view's adjoint: its base b is over {b's history, the context node, the
 * view's history (its geometry)}.  dL/dy_k = db[v] goes to the user's backward;
 * d(old b) = db outside v (v's old elements get theirs through the user's gradient
 * of the dirty input, its history a view of old b). */
static ag_status dirty_cs_backward(ag_tensor *t, ag_tensor *gout) {
    ag_tensor *hv = t->in[2], *gv = ag__view_grad(t, hv, gout);
    if (!gv) return AG_ERR_NOMEM;
    ag_status st = keep_grad(t, t->in[1], gv);
    ag__release(gv);
    if (!st && ag__wants(t, 0)) st = ag__accumulate(t->in[0], ag__base_grad(t, hv, gout, NULL, false));
    return st;
}

/* Checks the user's gradient for input i of the runner t. */
static ag_status check_grad(const ag_ctx *c, const ag_tensor *t, int i, const ag_tensor *g) {
    const ag_tensor *x = t->in[i];
    char s1[AG_SHAPE_STR], s2[AG_SHAPE_STR];
    if (g->dtype != x->dtype)
        return ag__fail(AG_ERR_DTYPE, "%s returned a %s gradient for input %d, which is %s %s", c->grad_fn,
                        ag_dtype_name(g->dtype), i, ag_dtype_name(x->dtype), ag__tshape(s1, x));
    if (g->ndim != x->ndim || memcmp(g->shape, x->shape, sizeof(int64_t) * (size_t)x->ndim))
        return ag__fail(AG_ERR_SHAPE, "%s returned a gradient of shape %s for input %d of shape %s", c->grad_fn,
                        ag__tshape(s1, g), i, ag__tshape(s2, x));
    return AG_OK;
}

/* Calls the user's backward with grad_out[] (NULL: no gradient) and accumulates
 * what it returns into the inputs of t.  Consumes nothing. */
static ag_status call_user(ag_ctx *c, ag_tensor *t, ag_tensor **grad_out) {
    int nin = c->nin, nout = c->nout;
    ag_tensor **gin = ag__calloc(sizeof(ag_tensor *) * (size_t)(nin ? nin : 1));
    ag_tensor **zeros = ag__calloc(sizeof(ag_tensor *) * (size_t)nout);
    ag_status st = gin && zeros ? AG_OK : ag__fail(AG_ERR_NOMEM, "%s: out of memory", c->grad_fn);
    for (int k = 0; k < nout && !st && c->materialize; k++) {
        if (grad_out[k]) continue;
        out_info *o = &c->outs[k];
        grad_out[k] = zeros[k] = ag__new_unowned(o->dtype, o->ndim, o->shape, true);
        if (!zeros[k]) st = AG_ERR_NOMEM;
    }
    if (!st && !(st = ag__composite_begin(c->grad_fn))) {
        ag_no_grad_begin();
        st = c->type->backward(c, grad_out, nout, gin, nin);
        ag_no_grad_end();
        if (st) st = wrap_failure(st, c->grad_fn, "backward");
        else if (!ag__handle_array_ok(c->grad_fn, "grad_in", gin, nin)) st = AG_ERR_ARG;
        for (int i = 0; i < nin; i++) /* keep each gradient past the scope, or forget it */
            if (!st && gin[i] && ag__wants(t, i)) ag__retain(gin[i]);
            else gin[i] = NULL;
        ag__composite_end(NULL);
    }
    for (int i = 0; i < nin && !st; i++) /* every gradient checked before any moves */
        if (gin[i]) st = check_grad(c, t, i, gin[i]);
    for (int i = 0; i < nin && gin; i++) {
        if (gin[i] && !st) st = ag__accumulate(t->in[i], gin[i]);
        else ag__release(gin[i]);
    }
    for (int k = 0; k < nout && zeros; k++) ag__release(zeros[k]);
    ag__free(gin);
    ag__free(zeros);
    return st;
}

/* The runner's adjoint: gout is the gradient of the one differentiable output, or
 * the context node's empty one, the outputs' gradients then waiting in the context. */
static ag_status run_backward(ag_tensor *t, ag_tensor *gout) {
    ag_ctx *c = ctx_of(t);
    ag_tensor **grad_out = ag__calloc(sizeof(ag_tensor *) * (size_t)c->nout);
    if (!grad_out) return ag__fail(AG_ERR_NOMEM, "%s: out of memory", c->grad_fn);
    if (!c->context_node) grad_out[t->attr.i[0]] = gout;
    else if (c->pass == ag__backward_pass)
        for (int k = 0; k < c->nout; k++) grad_out[k] = c->outs[k].grad;
    ag_status st = call_user(c, t, grad_out);
    ag__free(grad_out);
    drop_grads(c);
    return st;
}

static ag_shape shape_of(int ndim, const int64_t *dims) {
    ag_shape s = {ndim, {0}};
    for (int d = 0; d < ndim; d++) s.dim[d] = dims[d];
    return s;
}

/* The empty gradient an output's node hands the context node under create_graph. */
static ag_status to_context_node(ag_tensor **gin) {
    int64_t empty = 0;
    *gin = ag__new(AG_F32, 1, &empty);
    return *gin ? AG_OK : AG_ERR_NOMEM;
}

/* An output's adjoint under create_graph, when a context node is the runner: keeps
 * dL/dy_k (recorded) as out_backward does. */
static ag_status out_backward_graph(ag_tensor *t, ag_tensor *gout, ag_tensor **gin) {
    ag_status st = keep(ctx_of(t), t->attr.i[0], gout, true);
    return st ? st : to_context_node(&gin[0]);
}

/* A dirty input's adjoint under create_graph: as dirty_backward (its history gets its
 * gradient from the user's backward).  A dirty view's CopySlices has none yet, as
 * the built-in in-place ops' (create_graph fails naming it). */
static ag_status dirty_backward_graph(ag_tensor *t, ag_tensor *gout, ag_tensor **gin) {
    ag_status st = keep(ctx_of(t), t->attr.i[0], gout, true);
    return st ? st : to_context_node(&gin[1]);
}

/* The runner's adjoint under create_graph (ag_op.backward_graph): the user's
 * backward with grad mode on, so that its agrad ops are recorded, ag_ctx_saved
 * giving the inputs and outputs themselves (with their graph) for what was saved
 * of them.  gout is the gradient of the one differentiable output, or with a
 * context node the empty one, the outputs' (recorded) gradients kept in the context
 * by their nodes; an output without one gets zeros, or NULL without materialize. */
static ag_status run_backward_graph(ag_tensor *t, ag_tensor *gout, ag_tensor **gin) {
    ag_ctx *c = ctx_of(t);
    int nin = c->nin, nout = c->nout;
    ag_tensor **grad_out = ag__calloc(sizeof(ag_tensor *) * (size_t)nout);
    if (!grad_out) return ag__fail(AG_ERR_NOMEM, "%s: out of memory", c->grad_fn);
    ag_status st = AG_OK;
    for (int k = 0; k < nout && !st; k++) {
        out_info *o = &c->outs[k];
        if (!c->context_node) grad_out[k] = k == t->attr.i[0] ? gout : NULL;
        else if (c->pass == ag__backward_pass) grad_out[k] = o->grad;
        if (!grad_out[k] && c->materialize && !(grad_out[k] = ag_zeros(shape_of(o->ndim, o->shape), o->dtype)))
            st = ag_last_status() ? ag_last_status() : AG_ERR_NOMEM;
    }
    if (!st) {
        c->graph_node = t;
        c->graph_backward = true;
        st = c->type->backward(c, grad_out, nout, gin, nin);
        c->graph_node = NULL;
        c->graph_backward = false;
        for (int k = 0; k < nout; k++) c->outs[k].alias = NULL; /* the scope's, held by what used them */
        if (st) st = wrap_failure(st, c->grad_fn, "backward");
        else if (!ag__handle_array_ok(c->grad_fn, "grad_in", gin, nin)) st = AG_ERR_ARG;
    }
    for (int i = 0; i < nin && !st; i++) {
        if (gin[i] && !ag__wants(t, i)) gin[i] = NULL;
        if (gin[i]) st = check_grad(c, t, i, gin[i]);
    }
    ag__free(grad_out);
    if (c->context_node) drop_grads(c);
    return st;
}

/* Calls the user's jvp with the inputs' tangents tin; with a context node keeps the
 * outputs' tangents for their nodes (out_jvp) and gives the node zeros of its [0]. */
static ag_tensor *run_jvp(ag_tensor *t, ag_tensor *const *tin) {
    ag_ctx *c = ctx_of(t);
    int nout = c->nout;
    ag_tensor **tout = ag__calloc(sizeof(ag_tensor *) * (size_t)nout);
    if (!tout) return ag__fail_null(AG_ERR_NOMEM, "%s: out of memory", c->type->name);
    c->graph_node = t; /* ag_ctx_saved: inputs and output with their graph, so the tangent is differentiable */
    ag_status st = c->type->jvp(c, tin, c->nin, tout, nout);
    c->graph_node = NULL;
    if (st) st = wrap_failure(st, c->type->name, "jvp");
    else if (!ag__handle_array_ok(c->type->name, "tangent_out", tout, nout)) st = AG_ERR_ARG;
    ag_tensor *r = NULL;
    if (!st && !c->context_node) {
        int k = t->attr.i[0];
        r = tout[k] ? tout[k] : ag_zeros_like(t);
    } else if (!st) {
        for (int k = 0; k < nout; k++) {
            ag__release(c->outs[k].tangent);
            c->outs[k].tangent = ag__retain(tout[k]);
        }
        r = ag_zeros_like(t);
    }
    ag__free(tout);
    return r;
}

/* An output's tangent when a context node is the runner: what the user's jvp gave
 * it (zeros for none), handed over. */
static ag_tensor *out_jvp(ag_tensor *t, ag_tensor *const *tin) {
    (void)tin;
    ag_ctx *c = ctx_of(t);
    out_info *o = &c->outs[t->attr.i[0]];
    ag_tensor *d = o->tangent ? ag__own(o->tangent) : ag_zeros_like(t); /* the context's reference to the scope */
    o->tangent = NULL;
    return d;
}

/* ---- the engine's hooks (ag_op_ext) ------------------------------------------------------------ */
static void node_release(ag_tensor *t, bool dies) {
    ag_ctx *c = ctx_of(t);
    if (t->op == &c->run.op) { /* the graph is gone: what backward would have read goes with it */
        drop_saved(c);
        drop_grads(c);
    }
    if (dies) ctx_unref(c);
}

/* The saved tensors' versions, as check_node does for the built-in ops' inputs. */
static ag_status node_check(const ag_tensor *t) {
    const ag_ctx *c = ctx_of(t);
    if (t->op != &c->run.op) return AG_OK;
    char s[AG_SHAPE_STR];
    for (int i = 0; i < c->nsaved; i++) {
        const ag_tensor *v = c->saved[i];
        if (v && ag__version(v) != c->saved_version[i])
            return ag__fail(AG_ERR_GRAPH,
                            "backward: one of the variables needed for gradient computation has been modified by an "
                            "in-place operation: saved tensor %d of %s, %s %s, is at version %u; expected version %u "
                            "instead", i, c->grad_fn, ag_dtype_name(v->dtype), ag__tshape(s, v), ag__version(v),
                            c->saved_version[i]);
    }
    return AG_OK;
}

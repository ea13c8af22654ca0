/*
 * rebase.c - in-place ops on the tape, on tensors and on views.
 *
 * A tensor is its own graph node, so an in-place op on y that must be recorded
 * (y requires grad, or its operand does) cannot add a node after y: y's header is
 * the node.  Instead y's node moves into a new hidden header h viewing y's data,
 * which takes over y's op, inputs, saved tensor and attributes, and y is recorded
 * afresh as the in-place op's node with h as input 0.  y's history then reads
 * "old y (h), then the op", and a chain of in-place ops gives a chain of hidden
 * headers.
 *
 * Consumers recorded before the in-place op still name y in their inputs, but
 * they consumed old y.  Each input's version when recorded tells which: a node
 * that recorded y at a version older than the in-place node's own recorded
 * version consumed the history below it.  Backward asks ag__input_as_recorded as
 * it walks the graph and rewrites such an input to the hidden header.  A consumer
 * that saved old y's values then fails the version check, as in PyTorch.
 *
 * Views (PyTorch's CopySlices).  A view made by a view op names its base
 * (view_base, never itself a view).  A recorded in-place op on a view v of base b
 * changes b's values, so it is b's history that is rewritten: b's node moves into
 * a hidden header hb, and b becomes a CopySlices node over hb, the op's operand and
 * hv, the hidden header that takes v's old node (and gives the adjoint v's
 * geometry).  Its adjoint takes b's gradient, hands the part outside v to hb and
 * runs the op's adjoint on the part inside v.  v itself becomes a view of the new
 * b (AsStridedBackward0 over hv, its history, and b).  Other views of b learn of
 * the write lazily, as PyTorch's do: a view whose storage version moved since its
 * node last matched its base is stale, and ag__record refreshes it the same way
 * before recording it as an input, so its new values' history is b's.
 */
#include <string.h>
#include "core/iter.h"
#include "core/sum.h"
#include "autograd/tape.h"

static bool is_inplace_node(const ag_tensor *t) {
    return t->op && (t->op->saves & AG_OP_INPLACE) && t->nin > 0 && t->in[0];
}

void ag__rebase(ag_tensor *t, ag_tensor *h) {
    h->op = t->op;
    h->nin = t->nin;
    if (t->in == t->in_inline) {
        memcpy(h->in_inline, t->in_inline, sizeof h->in_inline);
        h->in = h->in_inline;
    } else {
        h->in = t->in; /* the heap block, versions included, moves as it is */
    }
    memcpy(h->in_version, t->in_version, sizeof h->in_version);
    h->out_version = t->out_version;
    h->autocast = t->autocast;
    h->saved = t->saved;
    h->attr = t->attr;
    h->where_file = t->where_file;
    h->where_line = t->where_line;
    h->requires_grad = t->requires_grad;
    h->graph_freed = t->graph_freed;
    t->op = NULL;
    t->nin = 0;
    t->in = t->in_inline;
    t->saved = NULL;
    t->graph_freed = false;
    t->where_file = NULL;
}

ag_tensor *ag__input_rewound(ag_tensor *t, int i) {
    ag_tensor *c = t->in[i];
    if (!c || !is_inplace_node(c)) return c;
    uint32_t v = ag__in_versions(t)[i];
    ag_tensor *r = c;
    while (is_inplace_node(r) && v < r->out_version) r = r->in[0];
    if (r != c) {
        t->in[i] = ag__retain(r);
        ag__release(c);
    }
    return r;
}

/* ---- the gradient of a base through one of its views ---------------------------------- */
/* Elements of storage from t's first element to its last (strides are never negative). */
static int64_t span(const ag_tensor *t) {
    int64_t n = 1;
    for (int d = 0; d < t->ndim; d++) {
        if (t->shape[d] == 0) return 0;
        n += (t->shape[d] - 1) * t->stride[d];
    }
    return n;
}

/* h, a header on the caller's stack: t's geometry laid over `over`'s data, where
 * storage element lo of t's storage is over's first element. */
static void laid_over(ag_tensor *h, const ag_tensor *t, const ag_tensor *over, int64_t lo) {
    memset(h, 0, sizeof *h);
    h->ndim = t->ndim;
    h->dtype = over->dtype;
    memcpy(h->shape, t->shape, sizeof(int64_t) * (size_t)t->ndim);
    memcpy(h->stride, t->stride, sizeof(int64_t) * (size_t)t->ndim);
    h->offset = over->offset + t->offset - lo;
    h->storage = over->storage;
}

/* A scratch buffer laid out as b lies in its storage: b itself (contiguous, b's
 * shape) when b is contiguous, else a vector of b's span; zeroed if asked.  NULL on
 * ENOMEM; fails (AG_ERR_GRAPH) when v does not lie within b's span. */
static ag_tensor *scratch(const ag_tensor *b, const ag_tensor *v, ag_dtype dtype, bool zero) {
    int64_t n = span(b), m = span(v);
    if (m > 0 && (v->offset < b->offset || v->offset - b->offset > n - m))
        return ag__fail_null(AG_ERR_GRAPH, "backward: a view's elements lie outside its base's");
    if (ag__contig(b)) return ag__new_unowned(dtype, b->ndim, b->shape, zero);
    return ag__new_unowned(dtype, 1, &n, zero);
}

ag_tensor *ag__view_grad(const ag_tensor *b, const ag_tensor *v, const ag_tensor *gb) {
    ag_tensor *s = scratch(b, v, gb->dtype, false), *r = s ? ag__new_unowned(gb->dtype, v->ndim, v->shape, false) : NULL;
    if (r) {
        ag_tensor hb, hv;
        laid_over(&hb, b, s, b->offset);
        laid_over(&hv, v, s, b->offset);
        ag__copy_into(&hb, gb);
        ag__copy_into(r, &hv);
    }
    ag__release(s);
    return r;
}

ag_tensor *ag__base_grad(const ag_tensor *b, const ag_tensor *v, const ag_tensor *gb, const ag_tensor *gv, bool add) {
    ag_dtype dtype = gv ? gv->dtype : gb->dtype;
    ag_tensor *s = scratch(b, v, dtype, !gb || !ag__contig(b)), *r = s;
    if (!s) return NULL;
    ag_tensor hb, hv;
    laid_over(&hb, b, s, b->offset);
    laid_over(&hv, v, s, b->offset);
    if (gb) ag__copy_into(&hb, gb);
    if (!gv) { /* v's elements get no gradient */
        ag_tensor *z = ag__new_unowned(dtype, 0, NULL, true);
        if (!z) {
            ag__release(s);
            return NULL;
        }
        ag__copy_into(&hv, z);
        ag__release(z);
    } else if (add) { /* serially: v may view an element more than once (an expanded view) */
        ag_iter it;
        ag__iter_init(&it, hv.ndim, hv.shape);
        ag__iter_add(&it, &hv);
        ag__iter_add(&it, gv);
        ag__iter_run(&it, ag__acc_kernel, &dtype);
    } else {
        ag__copy_into(&hv, gv);
    }
    if (s->ndim != b->ndim || !ag__contig(b)) { /* the scratch vector: gather b's elements */
        r = ag__new_unowned(dtype, b->ndim, b->shape, false);
        if (r) ag__copy_into(r, &hb);
        ag__release(s);
    }
    return r;
}

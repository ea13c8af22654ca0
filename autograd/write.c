/*
 * write.c - recording an in-place write (ops/inplace.c) on the tape, of a tensor
 * or, as PyTorch's CopySlices, of a view's base (autograd/rebase.c explains the
 * rewriting): the hidden headers made before the write, the nodes recorded after
 * it, and the rewiring that keeps an operand computed from the written tensor, its
 * base or their views from holding them in a reference cycle.
 */
#include "autograd/tape.h"

/* ---- what PyTorch refuses to record ------------------------------------------------------ */
ag_status ag__write_check(const char *op, const ag_tensor *t) {
    char s[AG_SHAPE_STR];
    const ag_tensor *base = t->view_base;
    if (t->view_flags & AG_VIEW_MULTI)
        return ag__fail(AG_ERR_GRAPH, "%s: a view %s returned by ag_split or ag_chunk (a function that returns "
                        "several views) is being modified in place with grad mode enabled; such views cannot be "
                        "modified in place (as in PyTorch): use an out-of-place op", op, ag__tshape(s, t));
    if (t->view_flags & AG_VIEW_NO_GRAD)
        return ag__fail(AG_ERR_GRAPH, "%s: a view %s was created in no-grad mode and is being modified in place "
                        "with grad mode enabled; this is ambiguous, so it is refused (as in PyTorch): make the view "
                        "and the in-place op both inside the no-grad region or both outside", op, ag__tshape(s, t));
    if (base && base->requires_grad && !base->op && !base->graph_freed)
        return ag__fail(AG_ERR_GRAPH, "%s: a view %s of a leaf tensor that requires grad is being used in an in-place "
                        "operation; update the leaf under ag_no_grad_begin()/ag_no_grad_end(), or work on a "
                        "non-leaf (ag_clone)", op, ag__tshape(s, t));
    if (!base && t->requires_grad && !t->op && !t->graph_freed)
        return ag__fail(AG_ERR_GRAPH, "%s: a leaf tensor %s that requires grad is being used in an in-place operation; "
                        "update it under ag_no_grad_begin()/ag_no_grad_end() (an optimizer step), or work on "
                        "a non-leaf (ag_clone)", op, ag__tshape(s, t));
    if (t->dtype != AG_F32 && t->dtype != AG_F64)
        return ag__fail(AG_ERR_DTYPE, "%s: the operand requires grad, but only floating tensors can require grad, "
                        "got a %s destination", op, ag_dtype_name(t->dtype));
    if (base && ag__has_internal_overlap(base)) {
        char b[AG_SHAPE_STR];
        return ag__fail(AG_ERR_GRAPH, "%s: the view %s is of a tensor %s whose elements share memory (an expanded "
                        "tensor): an in-place op on it cannot be recorded; clone the base first", op, ag__tshape(s, t),
                        ag__tshape(b, base));
    }
    return AG_OK;
}

/* Whether x's .grad is t, its base b or a view of b. */
static bool grad_is(const ag_tensor *x, const ag_tensor *t, const ag_tensor *b) {
    const ag_tensor *g = x->grad;
    return g && (g == t || g == b || g->view_base == b);
}

ag_status ag__write_check_operand(const char *op, const ag_tensor *t, const ag_tensor *other) {
    const ag_tensor *b = t->view_base ? t->view_base : t;
    bool leaf_view = b->view_flags & AG_VIEW_GRAD_LEAF, held = (t->view_flags | b->view_flags) & AG_VIEW_GRAD_HELD;
    if (!other || !other->requires_grad || !(leaf_view || held)) return AG_OK;
    ag_node_list v = {0};
    const ag_tensor *found = NULL, *owner = NULL;
    bool nomem = !ag__node_list_push(&v, (ag_tensor *)other);
    if (!nomem) ((ag_tensor *)other)->visited = true;
    for (int64_t top = 0; top < v.n && !found && !owner && !nomem; top++) {
        const ag_tensor *x = v.v[top];
        if (held && grad_is(x, t, b)) owner = x;
        if (!x->op) {
            if (leaf_view && x->view_base == b && x->requires_grad) found = x;
            continue;
        }
        for (int i = 0; i < x->nin && !nomem; i++) {
            ag_tensor *in = x->in[i];
            if (!in || in->visited) continue;
            nomem = !ag__node_list_push(&v, in);
            if (!nomem) in->visited = true;
        }
    }
    for (int64_t k = 0; k < v.n; k++) v.v[k]->visited = false;
    ag__node_list_free(&v);
    if (nomem) return ag__fail(AG_ERR_NOMEM, "%s: out of memory checking the operand's history", op);
    char s1[AG_SHAPE_STR], s2[AG_SHAPE_STR];
    if (owner)
        return ag__fail(AG_ERR_GRAPH, "%s: the tensor %s being written is the .grad of a tensor %s that the operand is "
                        "computed from; recording the write would make that gradient hold its own tensor, a reference "
                        "cycle never freed (PyTorch records it and leaks): update gradients under "
                        "ag_no_grad_begin()/ag_no_grad_end(), as an optimizer step does, or write a detached operand "
                        "(ag_detach)", op, ag__tshape(s1, t), ag__tshape(s2, owner));
    if (!found) return AG_OK;
    return ag__fail(AG_ERR_GRAPH, "%s: the operand is computed from a view %s of the tensor %s being written, and that "
                    "view is a leaf that requires grad; the write would move the leaf inside its base's history (PyTorch "
                    "fails at backward: leaf variable has been moved into the graph interior): clone the view first",
                    op, ag__tshape(s1, found), ag__tshape(s2, b));
}

/* ---- recording a write ------------------------------------------------------------------- */
ag_status ag__write_begin(ag_write *w, ag_tensor *t) {
    *w = (ag_write){.t = t, .base = t->view_base, .version = ag__version(t)};
    w->h = ag__new_view_unowned(t, t->ndim, t->shape, t->stride, t->offset);
    if (w->h && w->base) {
        ag_tensor *b = w->base;
        w->hbase = ag__new_view_unowned(b, b->ndim, b->shape, b->stride, b->offset);
    }
    if (w->h && (w->hbase || !w->base)) return AG_OK;
    ag__write_cancel(w);
    return AG_ERR_NOMEM;
}

void ag__write_cancel(ag_write *w) {
    ag__release(w->h);
    ag__release(w->hbase);
    w->h = w->hbase = NULL;
}

/* Slot i of node c during a rewiring after a write to root: a view of root the write
 * made stale is refreshed first (then it names root's new history), and the slot is
 * rewritten to what it stood for when c was recorded. */
static ag_tensor *resolve(ag_tensor *c, int i, const ag_tensor *root) {
    ag_tensor *x = c->in[i];
    if (x && x->view_base == root && ag__view_stale(x)) ag__refresh_view(x); /* out of memory: x stays */
    return ag__input_as_recorded(c, i);
}

/* After root was recorded as the node of a write: rewrites, in root's operands
 * (in[1..]) and the graph below them, every input that stood for root or one of its
 * views before the write to the hidden header of that time, refreshing those views.
 * Otherwise an operand computed from root (t.copy_(t + 1)) or from a view of it
 * would hold root, whose new node holds the operand: a reference cycle, never freed. */
static void rewire(ag_tensor *root) {
    ag_node_list v = {0};
    bool stuck = false;
    int64_t top = 0;
    for (ag_tensor *c = root;; c = v.v[top++]) {
        for (int i = c == root ? 1 : 0; i < c->nin; i++) {
            ag_tensor *in = resolve(c, i, root); /* a consumer of old root now points at its history */
            if (!in || !in->op || in->visited || in == root) continue;
            if (!ag__node_list_push(&v, in)) { /* out of memory: stop here (backward still rewires lazily) */
                stuck = true;
                break;
            }
            in->visited = true;
        }
        if (stuck || top == v.n) break;
    }
    for (int64_t k = 0; k < v.n; k++) v.v[k]->visited = false;
    ag__node_list_free(&v);
}

void ag__write_rebase(ag_write *w) {
    ag_tensor *t = w->t;
    ag__rebase(t, w->h);
    if (w->base) { /* t first, so that recording the base does not find t stale */
        ag__rebase(w->base, w->hbase);
        ag__record_view_of(t, w->h, w->base);
    }
}

ag_tensor *ag__write_commit(ag_write *w, const ag_op *row, ag_tensor *other, ag_tensor *saved, const ag_attr *attr) {
    ag__write_rebase(w);
    return ag__write_record(w, row, other, saved, attr);
}

ag_tensor *ag__write_record(ag_write *w, const ag_op *row, ag_tensor *other, ag_tensor *saved, const ag_attr *attr) {
    ag_tensor *t = w->t, *node = w->base ? w->base : t;
    ag_tensor *in[3] = {w->base ? w->hbase : w->h, other, w->h};
    ag__record(node, row, in, w->base ? 3 : (other ? 2 : 1)); /* cannot fail: inputs inline, saveable checked */
    /* An operand over the same data was read before the write: its history then is
     * what the node consumed (resolved by rewire below). */
    if (other && ag__version_counter(other->storage) == ag__version_counter(t->storage))
        ag__in_versions(node)[1] = w->version;
    node->attr = *attr;
    node->saved = saved;
    rewire(node);
    ag__write_cancel(w); /* the nodes hold the hidden headers now */
    return node;
}

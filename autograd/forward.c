/*
 * autograd/forward.c - forward-mode AD: dual levels, dual tensors and their tangents
 * (docs/forward-mode.md).
 *
 * A tensor carries a tangent (its `tangent` field, a reference) valid while the dual
 * level it was set at is open.  An op records a node whenever an input carries one
 * (ag__needs_grad says so while a level is open), even in no-grad mode; the node is
 * marked tangent_pending, and its tangent is computed from the node by the op's jvp
 * once the op has finished filling it: when the op returns through ag__check_finite,
 * or at the latest when the next op records, when the tangent is read, or when the
 * level ends.  A node kept only for its tangent (no-grad mode, or no input requiring
 * grad) is then dropped.  Nothing of this runs while no level is open.
 */
#include <string.h>
#include "autograd/tape.h"
#include "agrad/autograd.h"

_Thread_local uint32_t ag__fw_level;   /* the open dual level, 0 if none (or paused) */
static _Thread_local uint32_t open_level; /* the open level even while paused */
static _Thread_local uint32_t last_level;

/* Tensors recorded with a tangent still to compute, each holding a reference. */
static _Thread_local ag_tensor **pending;
static _Thread_local int npending, pending_cap;

ag_status ag_dual_level_begin(void) {
    if (open_level)
        return ag__fail(AG_ERR_GRAPH, "dual_level_begin: a dual level is already open on this thread; nested "
                                      "forward-mode levels are not supported (as torch.autograd.forward_ad)");
    open_level = ag__fw_level = ++last_level ? last_level : ++last_level; /* 0 means none */
    atomic_fetch_add_explicit(&ag__rare_modes, 1, memory_order_relaxed);
    return AG_OK;
}

ag_status ag_dual_level_end(void) {
    if (!open_level) return ag__fail(AG_ERR_GRAPH, "dual_level_end: no dual level is open on this thread");
    ag_status s = ag__fw_flush();
    open_level = ag__fw_level = 0; /* every tangent of the level is dead from now on */
    atomic_fetch_sub_explicit(&ag__rare_modes, 1, memory_order_relaxed);
    return s;
}

bool ag_dual_level_open(void) { return open_level != 0; }

/* Drops the node t kept only to compute its tangent. */
static void drop_node(ag_tensor *t) {
    ag__release_graph(t);
    t->op = NULL;
    t->graph_freed = false;
}

/* Computes t's tangent from its node (t->tangent_pending).  AG_OK, or an error
 * recorded (t then has no tangent). */
static ag_status materialise(ag_tensor *t) {
    t->tangent_pending = false;
    const ag_op *op = t->op;
    ag_tensor *inl[8], **tin = t->nin <= 8 ? inl : ag__alloc(sizeof(ag_tensor *) * (size_t)t->nin);
    if (!tin) return ag__fail(AG_ERR_NOMEM, "%s: out of memory computing a tangent", op->name);
    ag_status s = AG_OK;
    const uint32_t *version = ag__in_versions(t);
    bool any = false;
    for (int i = 0; i < t->nin; i++) {
        ag_tensor *x = t->in[i];
        tin[i] = NULL;
        if (!x || x->tangent_level != open_level) continue;
        if (x->tangent_pending && (s = materialise(x))) break;
        if (ag__version(x) != version[i]) {
            s = ag__fail(AG_ERR_GRAPH, "%s: forward-mode AD: input %d was modified by an in-place operation "
                                       "before the op's tangent was computed", op->name, i);
            break;
        }
        tin[i] = x->tangent;
        any = any || x->tangent;
    }
    ag_tensor *d = NULL;
    if (!s && any && !op->jvp)
        s = ag__fail(AG_ERR_GRAPH, "%s: forward-mode AD: the op has no tangent rule (jvp) yet", op->name);
    if (!s && any) {
        ag__fw_level = 0; /* the rule's own ops carry no tangent */
        if (ag_scope_begin()) {
            s = ag__fail(AG_ERR_NOMEM, "%s: out of memory computing a tangent", op->name);
        } else {
            d = op->jvp(t, tin);
            if (d) ag__ref_take(&d->refcount);
            else s = ag_last_status() ? ag_last_status() : ag__fail(AG_ERR_GRAPH, "%s: tangent rule failed", op->name);
            ag_scope_end();
        }
        ag__fw_level = open_level;
    }
    if (d && (d->ndim != t->ndim || memcmp(d->shape, t->shape, sizeof(int64_t) * (size_t)t->ndim) ||
              d->dtype != t->dtype)) {
        char a[AG_SHAPE_STR], b[AG_SHAPE_STR];
        s = ag__fail(AG_ERR_SHAPE, "%s: forward-mode AD: the tangent rule gave %s %s for an output %s %s", op->name,
                     ag_dtype_name(d->dtype), ag__tshape(a, d), ag_dtype_name(t->dtype), ag__tshape(b, t));
        ag__release(d);
        d = NULL;
    }
    if (tin != inl) ag__free(tin);
    ag__release(t->tangent);
    t->tangent = d;
    if (!d) t->tangent_level = 0;
    if (!t->requires_grad && t->op) drop_node(t);
    return s;
}

ag_status ag__fw_flush(void) {
    ag_status s = AG_OK;
    while (npending) { /* from the newest: an older one is then at most one level deep */
        ag_tensor *t = pending[--npending];
        if (t->tangent_pending) {
            ag_status e = materialise(t);
            if (!s) s = e;
        }
        ag__release(t);
    }
    return s;
}

uint32_t ag__fw_open_level(void) { return open_level; }

ag_status ag__fw_note(ag_tensor *out, ag_tensor *const *in, int n, bool grad) {
    out->requires_grad = grad; /* a node kept only for its tangent requires no grad */
    bool dual = out->dtype == AG_F32 || out->dtype == AG_F64; /* only floating results carry one */
    if (dual) {
        dual = false;
        for (int i = 0; i < n && !dual; i++) dual = in[i] && ag__fw_dual(in[i]);
    }
    if (!dual) return AG_OK; /* recorded for grad alone */
    ag_status s = ag__fw_flush();
    if (s) return s;
    if (npending == pending_cap) {
        int cap = pending_cap ? 2 * pending_cap : 8;
        ag_tensor **p = ag__alloc(sizeof *p * (size_t)cap);
        if (!p) return ag__fail(AG_ERR_NOMEM, "%s: out of memory", out->op->name);
        ag__free(pending);
        pending = p;
        pending_cap = cap;
    }
    ag__ref_take(&out->refcount);
    pending[npending++] = out;
    out->tangent_pending = true;
    out->tangent_level = open_level;
    return AG_OK;
}

ag_tensor *ag__fw_finish(ag_tensor *t) {
    if (!t->tangent_pending) return t;
    if (materialise(t)) {
        ag__discard(t);
        return NULL;
    }
    return t;
}


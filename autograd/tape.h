/*
 * autograd/tape.h - what the primitives (ops/) and the layers above ask of the
 * engine (autograd/backward.c): recording nodes on the tape, accumulating
 * gradients in adjoints, grad mode and anomaly checks.  Not installed.
 */
#ifndef AGRAD_TAPE_H
#define AGRAD_TAPE_H

#include "core/internal.h"
#include "agrad/autograd.h"

/* True when an op with these inputs must record a node: grad mode is on and an
 * input requires grad. */
AG_HIDDEN bool ag__needs_grad1(const ag_tensor *a);
AG_HIDDEN bool ag__needs_grad(ag_tensor *const *in, int n);
/* Turns out into a node of op over the n inputs (retaining them).  Returns out,
 * or NULL on ENOMEM (out discarded). */
AG_HIDDEN ag_tensor *ag__record(ag_tensor *out, const ag_op *op, ag_tensor *const *in, int n);
/* ag__record when the inputs need grad, the node then owning saved (an unowned tensor
 * its adjoint reads); otherwise, and on failure, saved is released.  Returns out
 * (out->op set when recorded), or NULL on ENOMEM (out discarded). */
AG_HIDDEN ag_tensor *ag__record_saved(ag_tensor *out, const ag_op *op, ag_tensor *const *in, int n, ag_tensor *saved);
/* AG_ERR_GRAPH naming op when an input its adjoint reads (the AG_SAVES_IN* bits) is
 * an inference tensor (PyTorch's "Inference tensors cannot be saved for backward"),
 * else AG_OK; ag__record checks it, an in-place op before it writes. */
AG_HIDDEN ag_status ag__check_saveable(const ag_op *op, ag_tensor *const *in, int n);
/* In-place ops on the tape (autograd/rebase.c).  ag__rebase moves t's node (op,
 * inputs and their versions, saved, attributes; none for a leaf) into h, a new
 * hidden header viewing t's data (ag__new_view_unowned of t), and leaves t without
 * one, for ag__record to make t the node of the in-place op with h as input 0: t's
 * history becomes "old t, then the op".  ag__input_as_recorded(t, i) is the tensor
 * input i of node t stood for when t was recorded: in[i] itself, or, when in[i] was
 * changed by recorded in-place ops since, the hidden header holding its history
 * then (t->in[i] is rewritten to it); backward calls it as it walks the graph. */
AG_HIDDEN void ag__rebase(ag_tensor *t, ag_tensor *h);
AG_HIDDEN ag_tensor *ag__input_rewound(ag_tensor *t, int i);
static inline ag_tensor *ag__input_as_recorded(ag_tensor *t, int i) {
    ag_tensor *c = t->in[i]; /* only an in-place node has a history to rewind to */
    return c && c->op && (c->op->saves & AG_OP_INPLACE) ? ag__input_rewound(t, i) : c;
}
/* A growable list of graph tensors for the engine's walks (its array from the block
 * cache).  push appends t, false when out of memory (the list unchanged); free drops
 * the array and empties the list.  A zeroed list is empty. */
typedef struct ag_node_list {
    ag_tensor **v;
    int64_t n, cap;
} ag_node_list;
AG_HIDDEN bool ag__node_list_push(ag_node_list *l, ag_tensor *t);
AG_HIDDEN void ag__node_list_free(ag_node_list *l);

/* A recorded in-place write of t (ops/inplace.c), in steps:
 *   ag__write_begin before the data changes makes the hidden headers that will hold
 *   the histories (AG_ERR_NOMEM, recorded, with nothing made);
 *   the caller writes and bumps the version;
 *   ag__write_commit records.  When t is not a view, t becomes the node of row over
 *   {t's history, other}; when t is a view of b, b becomes the node of row (a
 *   CopySlices row) over {b's history, other, t's history (also t's geometry)} and
 *   t a view of the new b (AsStridedBackward0).  The node gets attr and saved (an
 *   unowned tensor it takes).  other (NULL for none) is taken as read before the
 *   write; inputs standing for t, its base or their views before the write are
 *   rewritten to their histories (no reference cycle through an operand computed
 *   from them).  Returns the node; cannot fail.
 *   ag__write_cancel instead drops what begin made.
 *   ag__write_commit is ag__write_rebase (t's and its base's nodes move into the
 *   hidden headers; t, a view, is recorded as a view of its base) then
 *   ag__write_record (the rest), for a caller that records `other` in between over
 *   the hidden headers (a user function's dirty input, autograd/function.c).
 * The caller checks first what PyTorch refuses with ag__write_check: AG_ERR_GRAPH
 * (recorded, naming op) for a leaf that requires grad, a view of one, a view of
 * several (ag_split) or made in no-grad mode, a view of an expanded tensor;
 * AG_ERR_DTYPE for a tensor that is not floating; else AG_OK. */
typedef struct ag_write {
    ag_tensor *t, *base;   /* base: t's view base, or NULL when t is no view */
    ag_tensor *h, *hbase;  /* the hidden headers for their histories */
    uint32_t version;      /* t's version before the write */
} ag_write;
AG_HIDDEN ag_status ag__write_check(const char *op, const ag_tensor *t);
/* AG_OK unless other's history holds a view of t's base (or of t) that was made a leaf
 * requiring grad: a recorded write of other into that base would put the leaf inside
 * its own base's history, a reference cycle never freed (PyTorch records it, then fails
 * at backward: "leaf variable has been moved into the graph interior"); or unless t is
 * (a view of) some tensor x's .grad and other's history holds x: the write would make
 * x.grad hold x (x.grad.add_(x) in grad mode), a cycle PyTorch leaks.  AG_ERR_GRAPH
 * (recorded, naming op) then, AG_ERR_NOMEM if the walk runs out of memory.  Walks only
 * when such a view was ever made of the base, or t or its base was ever a .grad. */
AG_HIDDEN ag_status ag__write_check_operand(const char *op, const ag_tensor *t, const ag_tensor *other);
AG_HIDDEN ag_status ag__write_begin(ag_write *w, ag_tensor *t);
AG_HIDDEN ag_tensor *ag__write_commit(ag_write *w, const ag_op *row, ag_tensor *other, ag_tensor *saved,
                                      const ag_attr *attr);
AG_HIDDEN void ag__write_cancel(ag_write *w);
AG_HIDDEN void ag__write_rebase(ag_write *w);
AG_HIDDEN ag_tensor *ag__write_record(ag_write *w, const ag_op *row, ag_tensor *other, ag_tensor *saved,
                                      const ag_attr *attr);
/* Views (x->view_base set).  A view is stale when its base's history was rewritten
 * by a recorded write (to the base or through another view) since the view's node
 * last matched it, or when its base requires grad and it does not; ag__refresh_view
 * then makes x a view of its base's current history (its old node kept, for earlier
 * consumers, in a hidden header): AG_OK, or AG_ERR_NOMEM with x unchanged.  A write
 * that is not recorded (no-grad mode: an optimizer step) changes no history, so a
 * view kept across steps is not refreshed.  A view made in no-grad mode never is.
 * ag__record refreshes the stale views among its inputs.  ag__view_requires_grad:
 * whether x, not requiring grad itself, is a view whose base does (so that an op on
 * it must record). */
static inline bool ag__view_stale(const ag_tensor *x) {
    const ag_tensor *b = x->view_base;
    if (x->view_flags & AG_VIEW_NO_GRAD) return false;
    if (x->requires_grad != b->requires_grad) return true;
    return ag__version(x) != x->out_version && b->op && (b->op->saves & AG_OP_INPLACE) &&
           b->out_version > x->out_version;
}
AG_HIDDEN ag_status ag__refresh_view(ag_tensor *x);
/* Records x, which has no node (ag__rebase moved it into h), as a view of b's current
 * history (AsStridedBackward0: in[0] = h, its history, no gradient; in[1] = b). */
AG_HIDDEN void ag__record_view_of(ag_tensor *x, ag_tensor *h, ag_tensor *b);
AG_HIDDEN bool ag__view_requires_grad(const ag_tensor *x);
/* Gradients through a view v of b (v's elements are b's).  ag__view_grad: the
 * elements of gb (b's shape, contiguous) that v views, as a contiguous tensor of v's
 * shape.  ag__base_grad: a contiguous gradient of b's shape, gb (NULL: zeros) with
 * v's elements replaced by gv (NULL: zeros), or with gv added into them (add; v may
 * view an element more than once).  Both owned by the caller; NULL on ENOMEM. */
AG_HIDDEN ag_tensor *ag__view_grad(const ag_tensor *b, const ag_tensor *v, const ag_tensor *gb);
AG_HIDDEN ag_tensor *ag__base_grad(const ag_tensor *b, const ag_tensor *v, const ag_tensor *gb, const ag_tensor *gv,
                                   bool add);
/* Adds g (input's shape, contiguous, owned by the caller) to in's gradient:
 * sums g over broadcast dims first when g's shape is a broadcast of in's. */
AG_HIDDEN ag_status ag__accumulate(ag_tensor *in, ag_tensor *g);
/* ag__accumulate for an adjoint's last use of its incoming gradient gout, g being gout itself
 * (retained) or a view of it, after which the adjoint neither writes gout nor keeps it: a
 * leaf's .grad may then adopt g, whose storage is g's alone once the engine drops gout (when
 * the engine alone holds gout), instead of a copy of it (a parameter's reshape, unsqueeze or
 * add: a pass over the gradient saved). */
AG_HIDDEN ag_status ag__accumulate_last(ag_tensor *in, ag_tensor *g, const ag_tensor *gout);
/* True while the engine runs an adjoint whose node it releases right after (a backward without
 * retain_graph), false otherwise: the adjoint may then move the node's saved tensor into its
 * result instead of copying it (cross_entropy's saved dl/dx becomes x's gradient). */
AG_HIDDEN extern _Thread_local bool ag__adjoint_frees_node;
/* The gradient the node `in` has collected so far, when a view's gradient may be added into
 * it in place (ag__add_through): unshared, contiguous, of in's shape and dtype.  NULL when
 * there is none yet, it may not be written, or anomaly mode (which checks each incoming
 * gradient whole) is on: the caller then makes a gradient of in's shape and accumulates it. */
AG_HIDDEN ag_tensor *ag__grad_so_far(ag_tensor *in);
/* Whether an adjoint may overwrite its incoming gradient gout in place (a pass over dy that makes a
 * tensor of dy's shape and reads dy no more, as linear_relu's mask): contiguous, and only the engine
 * holds it and its storage (no .grad retained, no caller's seed, no hook's tensor kept elsewhere, no
 * view of a flat buffer), and anomaly mode off. */
AG_HIDDEN bool ag__gout_writable(const ag_tensor *gout);
/* dst += src, one shape, any strides (dst viewing each element at most once), split over the
 * threads when large. */
AG_HIDDEN void ag__add_through(ag_tensor *dst, const ag_tensor *src);
/* *slot += g as backward sums a node's incoming gradients (g consumed; the slot may
 * adopt g, and is copied before an addition while shared).  AG_OK or AG_ERR_NOMEM. */
AG_HIDDEN ag_status ag__add_to_slot(ag_tensor **slot, ag_tensor *g);
/* The recorded sum (ag_add) under create_graph: ops/grad.c sets it on its thread
 * before a pass records, so that an adjoint of the engine that keeps gradients (a
 * user function's outputs, autograd/function.c) sums recorded gradients without
 * calling the ops layer.  NULL until a create_graph pass ran on the thread. */
AG_HIDDEN extern _Thread_local ag_tensor *(*ag__graph_add)(ag_tensor *a, ag_tensor *b);
/* True if input i of node out needs a gradient. */
static inline bool ag__wants(const ag_tensor *out, int i) {
    return out->in[i] && out->in[i]->requires_grad;
}
/* Forward mode (autograd/forward.c).  ag__fw_level: the dual level open on this
 * thread, 0 when none (or while a tangent rule runs).  ag__fw_dual: t carries a
 * tangent (or one still to compute) at that level; call only when it is not 0.
 * ag__fw_note, called by ag__record for every node while a level is open, sets
 * out->requires_grad to grad (whether grad mode alone would record), and marks out's tangent to compute
 * when an input is dual (AG_OK, or an error recorded).  ag__fw_finish computes the
 * tangent of t, marked so, now (t, or NULL with t discarded and the rule's error
 * recorded); ag__fw_flush those of every marked tensor (AG_OK or the first error). */
AG_HIDDEN extern _Thread_local uint32_t ag__fw_level;
static inline bool ag__fw_dual(const ag_tensor *t) {
    return t->tangent_level == ag__fw_level && (t->tangent || t->tangent_pending);
}
static inline bool ag__fw_any_dual(ag_tensor *const *in, int n) {
    for (int i = 0; i < n; i++)
        if (in[i] && ag__fw_dual(in[i])) return true;
    return false;
}
AG_HIDDEN ag_status ag__fw_note(ag_tensor *out, ag_tensor *const *in, int n, bool grad);
/* The level open on this thread even while paused (0: none). */
AG_HIDDEN uint32_t ag__fw_open_level(void);
AG_HIDDEN ag_tensor *ag__fw_finish(ag_tensor *t);
AG_HIDDEN ag_status ag__fw_flush(void);
/* The end of an op's forward: the anomaly check of its result (no-op unless anomaly
 * mode is on; on a non-finite value t is discarded and NULL returned), and, in
 * forward mode, its tangent (ag__fw_finish).  Both rare: one test when neither is on. */
AG_HIDDEN extern _Thread_local bool ag__anomaly; /* ag_set_detect_anomaly on this thread */
AG_HIDDEN ag_tensor *ag__check_finite_slow(ag_tensor *t, const char *op);
static inline ag_tensor *ag__check_finite(ag_tensor *t, const char *op) {
    if (!t || !ag__rare_mode_on()) return t;
    if (t->tangent_pending && !(t = ag__fw_finish(t))) return NULL;
    return ag__anomaly ? ag__check_finite_slow(t, op) : t;
}
/* What backward checks of a node before any gradient moves: its graph not freed,
 * an adjoint, the versions of what it saved (AG_ERR_GRAPH, recorded), else AG_OK.
 * ops/grad.c (create_graph, ag_autograd_grad) checks its nodes with it. */
AG_HIDDEN ag_status ag__check_node(const ag_tensor *t);
/* Counts the reverse passes run on this thread (ag_backward_ex), so that state an
 * adjoint keeps across nodes (a user function's output gradients) can tell a new
 * pass from the rest of a failed one. */
AG_HIDDEN extern _Thread_local uint64_t ag__backward_pass;
/* Hooks (autograd/hooks.c).  ag__run_grad_hooks runs t's tensor hooks (the
 * library's own first, then the user's in registration order) on its complete
 * gradient *g (a reference of the caller's), replacing *g by each hook's
 * replacement; a failing hook's status is returned, its message prefixed with
 * the hook and t.  ag__run_post_accumulate_hooks runs a leaf's post-accumulate
 * hooks.  Backward calls them, in no-grad mode, only for a tensor whose hooked
 * flag is set.
 * ag__register_grad_hook_owned adds a library hook that owns user (free_user
 * frees it with t); its failures pass through unprefixed, so it names its owner. */
AG_HIDDEN ag_status ag__run_grad_hooks(ag_tensor *t, ag_tensor **g);
AG_HIDDEN ag_status ag__run_post_accumulate_hooks(ag_tensor *t);
AG_HIDDEN ag_status ag__register_grad_hook_owned(ag_tensor *t, ag_tensor_hook fn, void *user, void (*free_user)(void *));
/* Grad mode on this thread (autograd/grad_mode.c): 0 when on, non-zero when off
 * (no-grad or inference mode, ag_set_grad_enabled(false)). */
AG_HIDDEN extern _Thread_local int ag__no_grad_depth;

#endif

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
 * then (t->in[i] is rewritten to it); backward calls it as it walks the graph.
 * ag__storage_shared: whether a header outside t's chain of hidden headers uses
 * t's storage (t is a view, or has one), so that an in-place op on t cannot be
 * recorded (no rebasing of views' histories, PyTorch's CopySlices). */
AG_HIDDEN void ag__rebase(ag_tensor *t, ag_tensor *h);
AG_HIDDEN ag_tensor *ag__input_as_recorded(ag_tensor *t, int i);
AG_HIDDEN bool ag__storage_shared(const ag_tensor *t);
/* After t was recorded as an in-place op: rewrites now, in the graph below t's
 * operands (in[1..]), every input that stood for t before the write to the hidden
 * header of that time.  Otherwise an operand computed from t (t.copy_(t + 1)) would
 * hold t, whose new node holds the operand: a reference cycle, never freed. */
AG_HIDDEN void ag__rewire_operands(ag_tensor *t);
/* Adds g (input's shape, contiguous, owned by the caller) to in's gradient:
 * sums g over broadcast dims first when g's shape is a broadcast of in's. */
AG_HIDDEN ag_status ag__accumulate(ag_tensor *in, ag_tensor *g);
/* True if input i of node out needs a gradient. */
static inline bool ag__wants(const ag_tensor *out, int i) {
    return out->in[i] && out->in[i]->requires_grad;
}
/* Anomaly check of a forward result (no-op unless anomaly mode is on); on a
 * non-finite value t is discarded and NULL returned. */
AG_HIDDEN ag_tensor *ag__check_finite(ag_tensor *t, const char *op);
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

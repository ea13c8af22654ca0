/*
 * agrad/autograd.h - requires_grad, backward, no-grad mode, graph inspection,
 * gradient checking.
 *
 * Every op whose inputs require grad records a node on the dynamic tape: the
 * output tensor itself carries the op, references to its inputs and what its
 * adjoint needs.  ag_backward walks the recorded graph from the output in
 * reverse topological order, accumulating d(out)/d(leaf) into the .grad of each
 * leaf that requires grad.  Gradients of non-leaf tensors are kept only when
 * ag_retain_grad was called on them.
 */
#ifndef AGRAD_AUTOGRAD_H
#define AGRAD_AUTOGRAD_H

#include <stdio.h>
#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Marks a leaf as requiring grad (or not).  Returns t; NULL with AG_ERR_GRAPH for a
 * non-leaf (use ag_detach), AG_ERR_DTYPE for requiring grad on an int64 or bool tensor. */
AG_API ag_tensor *ag_requires_grad_(ag_tensor *t, bool requires_grad);
AG_API bool ag_requires_grad(const ag_tensor *t);
/* True for tensors not produced by a recorded op. */
AG_API bool ag_is_leaf(const ag_tensor *t);
/* The accumulated gradient of t, or NULL if none.  Borrowed: owned by t. */
AG_API ag_tensor *ag_grad(const ag_tensor *t);
/* Drops t's gradient (PyTorch's zero_grad(set_to_none=True)); a gradient that is a
 * view into a flat buffer (ag_flatten_parameters) is zeroed in place instead. */
AG_API void ag_zero_grad(ag_tensor *t);
/* Makes a non-leaf keep its gradient in .grad during backward.  Returns t. */
AG_API ag_tensor *ag_retain_grad(ag_tensor *t);
/* A new tensor sharing t's storage, cut from the graph, not requiring grad. */
AG_API ag_tensor *ag_detach(ag_tensor *t);
/* Name of the op that produced t ("MulBackward0" style), or NULL for a leaf. */
AG_API const char *ag_grad_fn_name(const ag_tensor *t);

/* Grad mode, per thread.  While it is off nothing is recorded (ops on tensors
 * that require grad give results that do not) and in-place updates of leaves
 * that require grad are allowed (optimizer steps).
 *
 * The begin/end pairs are regions, nested like Python's with-blocks: each begin
 * saves the mode it found and its end restores it, whatever happened inside.
 * Every begin needs its end, innermost first; an end without a begin is ignored.
 * Up to 64 changes of mode nest (a region entering the mode it found does not
 * count); a begin beyond that records AG_ERR_ARG and changes nothing, and its
 * end is ignored. */
/* No-grad region (torch.no_grad()): grad mode off. */
AG_API void ag_no_grad_begin(void);
AG_API void ag_no_grad_end(void);
/* Grad region (torch.enable_grad()) inside a no-grad one: grad mode on, except in
 * inference mode, which keeps it off. */
AG_API void ag_enable_grad_begin(void);
AG_API void ag_enable_grad_end(void);
/* Sets grad mode (torch.set_grad_enabled(enabled)) until the next change or the
 * end of the enclosing region, and returns the previous state, so that
 * `bool was = ag_set_grad_enabled(false); ... ag_set_grad_enabled(was);` restores
 * it.  In inference mode grad mode stays off. */
AG_API bool ag_set_grad_enabled(bool enabled);
AG_API bool ag_is_grad_enabled(void);

/* Inference mode (torch.inference_mode()): no-grad mode, cheaper still.  Nothing
 * is recorded, and every tensor made inside (and every view of one) is an
 * inference tensor (ag_is_inference) whose in-place updates bump no version
 * counter.  An inference tensor cannot be saved for backward: an op recorded
 * later (grad mode on, an input requiring grad) whose adjoint would read one
 * fails with AG_ERR_GRAPH ("inference tensors cannot be saved for backward");
 * an op that does not read it (add) takes it.  An in-place update of an inference
 * tensor outside inference mode fails with AG_ERR_GRAPH too.  ag_clone outside
 * inference mode gives a normal tensor with the same values. */
AG_API void ag_inference_mode_begin(void);
AG_API void ag_inference_mode_end(void);
AG_API bool ag_is_inference_mode_enabled(void);

/* Backward from a one-element tensor with seed 1; frees the graph afterwards.
 * Returns AG_OK, or AG_ERR_GRAPH (non-scalar, graph already freed, a saved tensor
 * modified in place, nothing requires grad), AG_ERR_NOMEM. */
AG_API ag_status ag_backward(ag_tensor *loss);
/* General form: grad_out (same shape as out, NULL allowed only for one element)
 * seeds the backward pass; retain_graph keeps the graph for another backward.
 * grad_out is only read, during the call: no gradient aliases it afterwards. */
AG_API ag_status ag_backward_ex(ag_tensor *out, const ag_tensor *grad_out, bool retain_graph);

/* ---- higher order (docs/higher-order.md); defined with the ops (ops/grad.c) ---- */
/* Options of ag_backward_opts and ag_autograd_grad; all false is the default (NULL). */
typedef struct ag_grad_opts {
    bool retain_graph; /* keep the graph for another pass (always kept under create_graph) */
    bool create_graph; /* record the gradient computation, so that the gradients require grad
                          and can be differentiated again (to any order) */
    bool allow_unused; /* ag_autograd_grad: an input the outputs do not depend on gets NULL
                          instead of an error */
} ag_grad_opts;
/* ag_backward_ex with options (torch.Tensor.backward(gradient, retain_graph,
 * create_graph)).  Without create_graph it is ag_backward_ex, adding nothing to its
 * cost.  With it, every node's adjoint runs as its differentiable form (the op's
 * backward_graph), recorded while grad mode is on, and each leaf's .grad becomes
 * .grad + gradient (recorded too: it requires grad and has a grad_fn); grad_out, if
 * given, is used as it is (not copied), so the gradients are differentiable in it as
 * well.  The graph is kept (retain_graph is implied).  A .grad that records a graph
 * holding its own leaf is a reference cycle, as in PyTorch: drop it with
 * ag_zero_grad(leaf) when done.  Tensor hooks are not run under create_graph.
 * Returns as ag_backward_ex, and AG_ERR_GRAPH naming the op when a node's op has no
 * differentiable adjoint yet. */
AG_API ag_status ag_backward_opts(ag_tensor *out, const ag_tensor *grad_out, const ag_grad_opts *opts);
/* torch.autograd.grad: the gradients of sum_k <grad_outputs[k], outputs[k]> with
 * respect to inputs[0..m-1] (each requiring grad), written to grads[0..m-1] instead
 * of accumulated into .grad (no .grad changes).  grad_outputs may be NULL, or an
 * entry NULL, for one-element outputs (seed 1).  opts (NULL: all false): retain_graph,
 * create_graph (the gradients then require grad, as in ag_backward_opts; the graph
 * is kept), allow_unused (an input the outputs do not reach gets NULL; otherwise
 * that fails with AG_ERR_GRAPH naming the input).  Each gradient is owned by the
 * innermost scope, or the caller.  Returns AG_OK; on failure every grads[j] is NULL
 * and the status is AG_ERR_ARG (NULL or freed tensors, no output or input),
 * AG_ERR_GRAPH (an output or input not requiring grad, an unused input, a freed
 * graph, a saved tensor changed in place, an op without a differentiable adjoint
 * under create_graph), AG_ERR_SHAPE / AG_ERR_DTYPE (a grad_output unlike its output)
 * or AG_ERR_NOMEM.  Tensor hooks are not run. */
AG_API ag_status ag_autograd_grad(ag_tensor *const *outputs, int n, ag_tensor *const *inputs, int m,
                                  ag_tensor *const *grad_outputs, const ag_grad_opts *opts, ag_tensor **grads);

/* Anomaly mode (torch.autograd.detect_anomaly): when on, every op checks its
 * forward result and its input gradients for NaN/Inf and fails with a message
 * naming the op, its shapes and the
 * file:line of the user's call that recorded it (see agrad/trace.h). */
AG_API void ag_set_detect_anomaly(bool on);
/* Remembers the caller's source location for anomaly reports.  agrad/trace.h
 * calls it before every op, so users never need to. */
AG_API void ag_trace_location(const char *file, int line);
AG_API bool ag_is_anomaly_enabled(void);

/* Writes the graph that produced t: one line per node, deepest first. */
AG_API ag_status ag_graph_print(FILE *f, const ag_tensor *t);
/* Writes the graph as Graphviz DOT: ops, shapes, which tensors require grad. */
AG_API ag_status ag_graph_dot(FILE *f, const ag_tensor *t);

/* ---- hooks (docs/hooks.md) ---- */
/* A tensor hook (torch.Tensor.register_hook) is called during backward with
 * grad = dL/dt once t's gradient for this pass is complete: for a leaf before it
 * is added to .grad, for a non-leaf before the adjoint of the op that made t
 * runs (and before retain_grad stores it).  It runs in no-grad mode inside a
 * scope of its own; grad is to be read, not written.  It may set *replace to a
 * new gradient of t's shape and dtype (made there, or any live tensor: backward
 * takes a reference), which later hooks and the rest of backward then see, or
 * leave it NULL.  It returns AG_OK, or an error status (with a message): backward
 * then stops with that status, the message prefixed with the hook and t. */
typedef ag_status (*ag_tensor_hook)(ag_tensor *grad, ag_tensor **replace, void *user);
/* Registers fn on t (which must require grad), after the hooks already there:
 * hooks run in registration order.  user is passed through (borrowed).  Writes
 * the hook's handle to *handle unless handle is NULL (ag_hook_remove removes it);
 * the hook is freed with t.  AG_OK; AG_ERR_ARG for a NULL t or fn, AG_ERR_GRAPH
 * when t does not require grad, AG_ERR_NOMEM. */
AG_API ag_status ag_register_hook(ag_tensor *t, ag_tensor_hook fn, void *user, ag_hook_handle *handle);
/* A post-accumulate-grad hook (torch.Tensor.register_post_accumulate_grad_hook)
 * is called with a leaf once its .grad holds this backward's whole gradient: as
 * soon as the last node using t has run, while backward goes on through the rest
 * of the graph (what a data-parallel trainer uses to start reducing a bucket of
 * gradients early).  Once per backward that reaches t; in no-grad mode, inside a
 * scope of its own.  It may read and change ag_grad(t) in place.  A failing
 * status stops backward, as for tensor hooks. */
typedef ag_status (*ag_post_accumulate_hook)(ag_tensor *t, void *user);
/* Registers fn on the leaf t (which must require grad): as ag_register_hook;
 * AG_ERR_GRAPH for a non-leaf. */
AG_API ag_status ag_register_post_accumulate_grad_hook(ag_tensor *t, ag_post_accumulate_hook fn, void *user,
                                                       ag_hook_handle *handle);

/* ---- user-defined differentiable functions (torch.autograd.Function) ---- */
/* A function type pairs a forward with its backward, written in C; applying it
 * records one node named "<name>Backward" (docs/functions.md is the guide).
 *
 * forward(ctx, in, nin, out, nout) runs in no-grad mode inside a scope of its own:
 * it sets out[0..nout-1] (agrad ops, or raw data through ag_data), may save
 * tensors, scalars and a pointer in ctx, and returns AG_OK or an error status
 * (with a message).  Its intermediates are released when it returns; each output
 * is handed to the caller as a new tensor over the same data (so returning an
 * input, or one tensor twice, is allowed).
 *
 * backward(ctx, grad_out, nout, grad_in, nin) runs once per backward pass, after
 * the gradients of all the outputs have arrived, in no-grad mode inside a scope of
 * its own; under create_graph (one differentiable output, no dirty input) with grad
 * mode on, so that its agrad ops are recorded (docs/functions.md).  grad_out[k] = dL/d
 * out[k], contiguous, to be read, not written; an output that got no gradient (not
 * used in the loss, or non-differentiable) gets zeros of its shape, or NULL after
 * ag_ctx_set_materialize_grads(ctx, false).  It sets grad_in[i] = dL/d in[i] (the
 * input's shape and dtype) for the inputs that need one (ag_ctx_needs_input_grad),
 * leaving NULL for no gradient; grad_in[i] may be one of grad_out, a saved tensor
 * or an input.  It returns AG_OK or an error status, which backward returns.
 *
 * The type (and its name) must outlive every tensor it made: a static const. */
typedef struct ag_ctx ag_ctx;

typedef struct ag_function_type {
    const char *name; /* "MyExp": grad_fn "MyExpBackward", and error messages */
    ag_status (*forward)(ag_ctx *ctx, ag_tensor *const *in, int nin, ag_tensor **out, int nout);
    ag_status (*backward)(ag_ctx *ctx, ag_tensor *const *grad_out, int nout, ag_tensor **grad_in, int nin);
    /* Optional (NULL: none; forward mode through the function then fails naming it):
     * the tangent rule (torch's Function.jvp), called in forward mode once per call
     * whose input carries a tangent.  tangent_in[i] is input i's tangent (NULL: zero);
     * it sets tangent_out[k] to output k's (its shape and dtype; NULL: zero), computed
     * with agrad ops (recorded when grad mode is on, so that the tangent can be
     * differentiated), reading what forward saved.  AG_OK or an error status. */
    ag_status (*jvp)(ag_ctx *ctx, ag_tensor *const *tangent_in, int nin, ag_tensor **tangent_out, int nout);
} ag_function_type;

/* Applies f to the nin inputs (none NULL), writing nout >= 1 outputs to out.
 * user is what ag_ctx_user returns (borrowed: it must live as long as the graph
 * when backward reads it).  When grad mode is on and an input requires grad, the
 * float outputs not marked non-differentiable require grad and have grad_fn
 * "<name>Backward".  Outputs are owned by the innermost scope, or the caller.
 * Returns AG_OK; on failure every out[k] is NULL and the status is AG_ERR_ARG (a
 * NULL or malformed type, bad counts, an output left NULL), the forward's own
 * status (its message prefixed with the name), AG_ERR_VALUE (anomaly mode: a
 * non-finite output) or AG_ERR_NOMEM. */
AG_API ag_status ag_function_apply(const ag_function_type *f, ag_tensor *const *in, int nin, ag_tensor **out,
                                   int nout, void *user);
/* ag_function_apply for a function of one output: returns it, or NULL on failure. */
AG_API ag_tensor *ag_function_apply1(const ag_function_type *f, ag_tensor *const *in, int nin, void *user);

/* In forward: keeps n tensors (NULL entries allowed) for backward, replacing any
 * saved before.  The context holds each tensor's data (not its graph) and its
 * version, so a saved tensor changed in place before backward fails backward with
 * AG_ERR_GRAPH, as built-in ops do.  AG_OK, AG_ERR_ARG outside forward, AG_ERR_NOMEM. */
AG_API ag_status ag_ctx_save_for_backward(ag_ctx *ctx, ag_tensor *const *t, int n);
/* In backward: saved tensor i (borrowed from ctx; does not require grad), or, under
 * create_graph and in the jvp callback, the input or output it is itself (with its
 * graph) when forward saved an input or output; NULL
 * when it was saved as NULL or with AG_ERR_INDEX when i is out of range. */
AG_API ag_tensor *ag_ctx_saved(const ag_ctx *ctx, int i);
AG_API int ag_ctx_num_saved(const ag_ctx *ctx);
/* Whether input i needs a gradient: grad mode was on and it requires grad. */
AG_API bool ag_ctx_needs_input_grad(const ag_ctx *ctx, int i);
/* In forward: output k will not require grad (indices, masks); its gradient in
 * backward is zeros (or NULL).  Non-float outputs are never differentiable.
 * AG_OK, AG_ERR_ARG outside forward, AG_ERR_INDEX for a bad k. */
AG_API ag_status ag_ctx_mark_non_differentiable(ag_ctx *ctx, int k);
/* In forward: input i is modified in place by the forward and returned as one of
 * its outputs, the same tensor (torch's ctx.mark_dirty): out[k] = in[i].  apply
 * then hands the caller in[i] itself (its version bumped by the write), and when
 * the call is recorded in[i]'s history becomes "old in[i], then this function"
 * (grad_fn "<name>Backward"; for a view, its base's becomes "CopySlices", as for
 * the built-in in-place ops), so that ops that saved old in[i] fail backward's
 * version check.  Call it before writing: while grad mode is on and an input
 * requires grad it refuses, with AG_ERR_GRAPH, what the built-in in-place ops
 * refuse (a leaf that requires grad, a view of one, ...; AG_ERR_DTYPE: not
 * floating).  AG_OK, AG_ERR_ARG outside forward, AG_ERR_INDEX for a bad i.  apply
 * fails with AG_ERR_ARG when a dirty input is not returned, is returned marked
 * non-differentiable, or shares memory with another dirty input. */
AG_API ag_status ag_ctx_mark_dirty(ag_ctx *ctx, int i);
/* Whether backward gets zeros (true, the default) or NULL for an output that got
 * no gradient (torch's ctx.set_materialize_grads). */
AG_API void ag_ctx_set_materialize_grads(ag_ctx *ctx, bool materialize);
/* Scalars kept for backward (ctx.dim = dim): AG_CTX_SCALARS slots, zero at first.
 * ag_ctx_set_scalar returns AG_OK or AG_ERR_INDEX; ag_ctx_scalar gives 0 for a bad i. */
#define AG_CTX_SCALARS 8
AG_API ag_status ag_ctx_set_scalar(ag_ctx *ctx, int i, double v);
AG_API double ag_ctx_scalar(const ag_ctx *ctx, int i);
/* The user pointer: apply's user argument until forward replaces it (borrowed). */
AG_API void *ag_ctx_user(const ag_ctx *ctx);
AG_API void ag_ctx_set_user(ag_ctx *ctx, void *user);

/* ---- gradient checking ------------------------------------------------- */
/* The function gradcheck differentiates is an ag_fn (agrad/core.h); gradcheck
 * calls it inside a scope it opens and closes, passing ctx through. */

typedef struct ag_gradcheck_opts {
    double eps;  /* finite-difference step, default 1e-6 */
    double atol; /* default 1e-5 */
    double rtol; /* default 1e-3 */
    bool quiet;  /* do not print a failure report to stderr */
} ag_gradcheck_opts;

/* The worst element found by gradcheck. */
typedef struct ag_gradcheck_report {
    int input;             /* which input, -1 if none was checked */
    int64_t index;         /* flat row-major index within that input */
    int64_t output_index;  /* flat index of the output element */
    double analytic, numeric;
    double error;          /* |analytic - numeric| - (atol + rtol*|numeric|), > 0 fails */
    int64_t checked;       /* number of Jacobian entries compared */
} ag_gradcheck_report;

/* Compares the Jacobian of fn from backward with central finite differences at
 * the given inputs (those requiring grad are checked; float64 recommended).
 * opts and report may be NULL.  Returns AG_OK when every entry satisfies
 * |a - n| <= atol + rtol*|n|, AG_ERR_VALUE with a message naming the worst entry
 * otherwise, or the error of fn itself. */
AG_API ag_status ag_gradcheck(ag_fn fn, void *ctx, ag_tensor *const *inputs, int n,
                              const ag_gradcheck_opts *opts, ag_gradcheck_report *report);
/* Cheap check for large models (KANN style): compares the directional derivative
 * along one random direction with a central difference (3 evaluations).  Inputs
 * that require grad are perturbed.  Returns AG_OK or AG_ERR_VALUE. */
AG_API ag_status ag_gradcheck_random(ag_fn fn, void *ctx, ag_tensor *const *inputs, int n,
                                     const ag_gradcheck_opts *opts, double *rel_error);

/* torch.autograd.gradgradcheck: checks second derivatives.  With v random normal of
 * fn's output shape (requiring grad), it gradchecks, for each input j requiring grad,
 * the function (inputs, v) -> d<v, fn(inputs)>/d inputs[j] computed by
 * ag_autograd_grad with create_graph: its Jacobian from backward (through the
 * recorded gradient computation) against finite differences of first derivatives,
 * in float64 (inputs should be float64).  Arguments and returns as ag_gradcheck;
 * report (may be NULL) is the worst over the inputs, report->input naming the input
 * whose gradient was checked.  An op without a differentiable adjoint fails with
 * AG_ERR_GRAPH naming it.  Defined with the ops (ops/gradgradcheck.c). */
AG_API ag_status ag_gradgradcheck(ag_fn fn, void *ctx, ag_tensor *const *inputs, int n,
                                  const ag_gradcheck_opts *opts, ag_gradcheck_report *report);

/* ---- the functional API (torch.autograd.functional; docs/higher-order.md) ----
 * Derivatives of a user function fn (an ag_fn, as ag_gradcheck takes: one output
 * from n inputs, 1 <= n <= 64, each floating) at the given inputs.  fn is evaluated
 * with grad mode on, on stand-ins of the inputs: leaves sharing their data, or, under
 * create_graph for an input that requires grad, views of it (so that the results are
 * differentiable in the caller's tensors).  The inputs themselves and their .grad are
 * not changed.  Results are owned by the innermost scope, or by the caller when none
 * is open; without create_graph they do not require grad.  On failure every result
 * is NULL and the status is AG_ERR_ARG (NULL or freed arguments, a bad count or
 * mode), AG_ERR_DTYPE (an input or output not floating), AG_ERR_SHAPE (a vector
 * unlike what it multiplies, a block past AG_MAX_DIMS dimensions, a non-scalar
 * function for the Hessian ones), AG_ERR_GRAPH (strict and an output independent of
 * an input; an op on the way without a differentiable adjoint; inference mode, where
 * nothing can be recorded), fn's own error, or
 * AG_ERR_NOMEM. */
typedef enum ag_jacobian_mode {
    AG_JACOBIAN_AUTO = 0, /* by shape: forward mode when the inputs have fewer elements than
                             the output (and neither create_graph nor strict is set),
                             reverse mode otherwise */
    AG_JACOBIAN_REVERSE,  /* one backward pass per output element, the rows (jacrev) */
    AG_JACOBIAN_FORWARD,  /* one forward pass with a tangent (ag_jvp) per input element, the
                             columns (jacfwd); takes neither create_graph nor strict */
} ag_jacobian_mode;
typedef struct ag_functional_opts {
    bool create_graph;     /* record the derivatives, so that they can be differentiated again */
    bool strict;           /* an output independent of an input is AG_ERR_GRAPH; otherwise its
                              derivative is zeros (as PyTorch's strict=False) */
    ag_jacobian_mode mode; /* ag_jacobian only */
} ag_functional_opts;
/* torch.autograd.functional.vjp: *out = fn(inputs) (out may be NULL) and vjp[i] =
 * vᵀ d fn / d inputs[i] (of inputs[i]'s shape), one backward pass.  v is of the
 * output's shape and dtype, or NULL for a one-element output (v = 1). */
AG_API ag_status ag_vjp(ag_fn fn, void *ctx, ag_tensor *const *inputs, int n, ag_tensor *v,
                        const ag_functional_opts *opts, ag_tensor **out, ag_tensor **vjp);
/* torch.autograd.functional.jacobian: jac[i] = d fn / d inputs[i], of shape
 * out.shape + inputs[i].shape (jac[i][k..., j...] = d out[k...] / d inputs[i][j...]),
 * in the mode opts->mode names (AUTO evaluates fn once to see the output's size, then
 * chooses).  Forward mode opens dual levels (ag_jvp): AG_ERR_GRAPH when one is open. */
AG_API ag_status ag_jacobian(ag_fn fn, void *ctx, ag_tensor *const *inputs, int n, const ag_functional_opts *opts,
                             ag_tensor **jac);
/* torch.autograd.functional.hessian of a one-element fn: n*n blocks, hess[i*n + j] =
 * d² fn / d inputs[i] d inputs[j], of shape inputs[i].shape + inputs[j].shape: the
 * reverse Jacobian of the gradient recorded with create_graph. */
AG_API ag_status ag_hessian(ag_fn fn, void *ctx, ag_tensor *const *inputs, int n, const ag_functional_opts *opts,
                            ag_tensor **hess);
/* torch.autograd.functional.vhp of a one-element fn: *out = fn(inputs) (out may be
 * NULL) and vhp[i] = (vᵀH)[i] = d <grad fn, v> / d inputs[i], v holding n tensors of
 * the inputs' shapes and dtypes: two backward passes. */
AG_API ag_status ag_vhp(ag_fn fn, void *ctx, ag_tensor *const *inputs, int n, ag_tensor *const *v,
                        const ag_functional_opts *opts, ag_tensor **out, ag_tensor **vhp);
/* torch.autograd.functional.hvp: as ag_vhp, hvp[i] = (H v)[i] = Σ_j ∂g_i/∂x_j v_j,
 * g = grad fn, computed forward-over-reverse: the tangent along v of the gradient
 * (recorded with create_graph) of fn at the inputs made dual, in a dual level of its
 * own (AG_ERR_GRAPH when one is open on the thread; every op on the way needs a
 * tangent rule).  Equal to ag_vhp's vᵀH wherever fn is twice continuously
 * differentiable. */
AG_API ag_status ag_hvp(ag_fn fn, void *ctx, ag_tensor *const *inputs, int n, ag_tensor *const *v,
                        const ag_functional_opts *opts, ag_tensor **out, ag_tensor **hvp);

/* ---- forward-mode AD (dual tensors), as torch.autograd.forward_ad --------
 * docs/forward-mode.md.  A dual level is open on one thread at a time, once: no
 * nesting (as PyTorch 1.13).  While it is open, every op whose input carries a
 * tangent gives its result the tangent J·t (its tangent rule), in no-grad mode too. */

/* Opens the dual level of this thread (torch.autograd.forward_ad.enter_dual_level).
 * AG_OK, or AG_ERR_GRAPH (recorded) when one is open already. */
AG_API ag_status ag_dual_level_begin(void);
/* Closes it (exit_dual_level): every tangent set or computed in it is released (a
 * tensor kept past the level holds none; ag_tangent no longer sees it), which also
 * frees what only a tangent's graph kept alive.  AG_OK; AG_ERR_GRAPH when none is open; the error of a tangent rule still to
 * run, if it failed (the level is closed anyway). */
AG_API ag_status ag_dual_level_end(void);
/* True while this thread has a dual level open. */
AG_API bool ag_dual_level_open(void);
/* make_dual: a view of primal (differentiable as primal in reverse mode) carrying
 * tangent (a reference is kept; not copied) at the open level; owned by the
 * innermost scope.  NULL for a NULL argument (the error that made it is kept, as for
 * every op), NULL with AG_ERR_GRAPH when no
 * level is open, AG_ERR_SHAPE / AG_ERR_DTYPE when tangent's shape or dtype is not
 * the primal's, AG_ERR_DTYPE when primal is not floating. */
AG_API ag_tensor *ag_make_dual(ag_tensor *primal, ag_tensor *tangent);
/* The tangent of t at the open level (unpack_dual(t).tangent; the primal is t
 * itself), a new reference owned by the innermost scope.  NULL with no error when t
 * carries none (no level open, or t does not depend on a dual tensor through a
 * floating op); NULL with the error when computing it failed (an op without a
 * tangent rule: AG_ERR_GRAPH naming it). */
AG_API ag_tensor *ag_tangent(ag_tensor *t);
/* torch.func.jvp (torch.autograd.functional.jvp): evaluates fn (an ag_fn, as
 * ag_gradcheck takes) at inputs in a dual level of its own, the inputs carrying
 * tangents[i] (NULL: zero; each of its input's shape and dtype), and writes
 * *out = fn(inputs) and *jvp = J_fn(inputs)·tangents, one forward pass; *jvp is
 * zeros when the output does not depend on the inputs, NULL when it is not
 * floating.  Both are owned by the innermost scope (the caller with none open).
 * AG_OK; on failure both are NULL and the status is AG_ERR_ARG (NULL arguments,
 * n < 1), AG_ERR_GRAPH (a dual level is open already; an op on the way has no
 * tangent rule), make_dual's errors for a bad tangent, or fn's own error. */
AG_API ag_status ag_jvp(ag_fn fn, void *ctx, ag_tensor *const *inputs, int n, ag_tensor *const *tangents,
                        ag_tensor **out, ag_tensor **jvp);

#ifdef __cplusplus
}
#endif
#endif

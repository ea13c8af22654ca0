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

/* No-grad mode (torch.no_grad): while enabled nothing is recorded.  Nestable;
 * every begin needs its end. */
AG_API void ag_no_grad_begin(void);
AG_API void ag_no_grad_end(void);
AG_API bool ag_is_grad_enabled(void);

/* Backward from a one-element tensor with seed 1; frees the graph afterwards.
 * Returns AG_OK, or AG_ERR_GRAPH (non-scalar, graph already freed, a saved tensor
 * modified in place, nothing requires grad), AG_ERR_NOMEM. */
AG_API ag_status ag_backward(ag_tensor *loss);
/* General form: grad_out (same shape as out, NULL allowed only for one element)
 * seeds the backward pass; retain_graph keeps the graph for another backward. */
AG_API ag_status ag_backward_ex(ag_tensor *out, const ag_tensor *grad_out, bool retain_graph);

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

#ifdef __cplusplus
}
#endif
#endif

/*
 * loss.h - the fused loss primitives (ops/loss.c) and the element access the
 * losses share.  Private: the functional losses in nn/ call these after
 * checking their arguments; the primitives check only what they compute on.
 */
#ifndef AGRAD_OPS_LOSS_H
#define AGRAD_OPS_LOSS_H

#include "core/internal.h"
#include "agrad/ops.h"

/* Storage offset (in elements) of element k of t in row-major order. */
AG_HIDDEN int64_t ag__loss_offset(const ag_tensor *t, int64_t k);
/* Element k (row-major) of t as a double, for any dtype. */
AG_HIDDEN double ag__loss_at(const ag_tensor *t, int64_t k);
/* Element k (row-major) of an int64 tensor, exactly. */
AG_HIDDEN int64_t ag__loss_index_at(const ag_tensor *t, int64_t k);

/* The fused terms below take follow: true lays their result out as x and t when those are dense in one
 * permuted layout (core/layout.h's rule: a transposed input and target give a transposed result, one
 * flat pass over memory, as torch's reduction "none"), false makes it row-major (a reduced loss: its
 * sum then walks the terms in row-major order, the order its bits are defined by). */

/* The binary cross-entropy of probabilities x and targets t, elementwise, unreduced
 * and unweighted: x and t float of one dtype and one shape (the caller checks).
 * Returns a new tensor of that shape (scope-owned), recording the op
 * binary_cross_entropy; NULL on ENOMEM or, in anomaly mode, a non-finite result. */
AG_HIDDEN ag_tensor *ag__bce_terms(ag_tensor *x, ag_tensor *t, bool follow);

/* binary_cross_entropy_with_logits's terms softplus(x) - t·x of logits x and targets t (float,
 * t of x's dtype, broadcast together), elementwise and unreduced.  Returns a new tensor of the
 * broadcast shape (scope-owned), recording the op binary_cross_entropy_with_logits; NULL on a
 * shape clash, ENOMEM or, in anomaly mode, a non-finite result. */
AG_HIDDEN ag_tensor *ag__bce_logits_terms(ag_tensor *x, ag_tensor *t, bool follow);

/* binary_cross_entropy_with_logits's terms (1 - t)·x + (1 + (p - 1)·t)·softplus(-x) of logits x,
 * targets t and pos_weight p (float, of x's dtype, broadcast together), elementwise and unreduced.
 * Returns a new tensor of the broadcast shape (scope-owned), recording the op
 * binary_cross_entropy_with_logits_pos_weight; NULL on a shape clash, ENOMEM or, in anomaly mode,
 * a non-finite result. */
AG_HIDDEN ag_tensor *ag__bce_logits_pw_terms(ag_tensor *x, ag_tensor *t, ag_tensor *p, bool follow);

/* poisson_nll_loss's terms of x and counts t (float, t of x's dtype, broadcast together),
 * elementwise and unreduced: e^x - t·x when log_input (x log-rates), else x - t·log(x + eps)
 * (x rates); full adds Stirling's term t·log t - t + ½·log(2πt) where t > 1.  Returns a new
 * tensor of the broadcast shape (scope-owned), recording the op poisson_nll_loss (log_input)
 * or poisson_nll_loss_rate; NULL on a shape clash, ENOMEM or, in anomaly mode, a non-finite
 * result. */
AG_HIDDEN ag_tensor *ag__poisson_terms(ag_tensor *x, ag_tensor *t, bool log_input, double eps, bool full, bool follow);

/* kl_div's terms t·(log t - x) (0 at t = 0) of log-probabilities x and target probabilities t
 * (float, t of x's dtype, broadcast together), elementwise and unreduced.  Returns a new tensor
 * of the broadcast shape (scope-owned), recording the op kl_div; NULL on a shape clash, ENOMEM
 * or, in anomaly mode, a non-finite result. */
AG_HIDDEN ag_tensor *ag__kl_div_terms(ag_tensor *x, ag_tensor *t, bool follow);

/* kl_div's terms e^t·(t - x) with log-probability targets t (log_target; float, t of x's dtype,
 * broadcast together), elementwise and unreduced.  Returns a new tensor of the broadcast shape
 * (scope-owned), recording the op kl_div_log_target; NULL on a shape clash, ENOMEM or, in
 * anomaly mode, a non-finite result. */
AG_HIDDEN ag_tensor *ag__kl_div_log_terms(ag_tensor *x, ag_tensor *t, bool follow);

/* huber_loss's and smooth_l1_loss's terms of input x and target t (float, t of x's dtype, broadcast
 * together), elementwise and unreduced: c·m·(2d - m) with d = x - t, m = clamp(d, -k, k) (huber:
 * c = 1/2, k = δ; smooth_l1: k = β > 0, c = 1/(2β)).  Returns a new tensor of the broadcast shape
 * (scope-owned), recording the op huber; NULL on a shape clash, ENOMEM or, in anomaly mode, a
 * non-finite result. */
AG_HIDDEN ag_tensor *ag__huber_terms(ag_tensor *x, ag_tensor *t, double k, double c, bool follow);

/* The cross-entropy of logits x [N, C] (float) with int64 class indices t [N], as one
 * op (cross_entropy): targets equal to ignore_index count for nothing, others must lie
 * in [0, C) (AG_ERR_INDEX naming loss otherwise); weight (NULL or float [C] of x's
 * dtype) weights each target's class; label_smoothing in [0, 1] mixes the uniform
 * distribution into the target; reduction MEAN (by the total weight of the targets
 * not ignored), SUM or NONE (per row, [N]).  The caller checks shapes and dtypes.
 * Returns the loss (scope-owned), NULL on error. */
AG_HIDDEN ag_tensor *ag__cross_entropy_rows(const char *loss, ag_tensor *x, ag_tensor *t, ag_tensor *weight,
                                            ag_reduction reduction, int64_t ignore_index, double label_smoothing);

#endif

/*
 * loss_internal.h - pieces shared by the loss functions (nn/loss*.c): option
 * resolution, argument checks with messages naming the loss, reduction, and
 * small compositions (stable softplus, constants).  Not installed.
 */
#ifndef AGRAD_LOSS_INTERNAL_H
#define AGRAD_LOSS_INTERNAL_H

#include "core/iter.h"
#include "agrad/loss.h"
#include "ops/loss.h"

/* Copies o (NULL: the defaults) into *buf and checks its reduction (BATCHMEAN only
 * when batchmean_ok).  Returns buf, or NULL with AG_ERR_ARG naming the loss. */
AG_HIDDEN const ag_loss_opts *ag__loss_opts(const char *loss, const ag_loss_opts *o, ag_loss_opts *buf,
                                            bool batchmean_ok);
/* v, or dflt when v is NAN (the "per-loss default" marker of margin, eps, p). */
static inline double ag__loss_or(double v, double dflt) { return v != v ? dflt : v; }

/* t is float32/float64 and, when like is not NULL, of like's dtype.  what names t
 * in the message ("target", "weight", ...). */
AG_HIDDEN ag_status ag__loss_check_float(const char *loss, const char *what, const ag_tensor *t,
                                         const ag_tensor *like);
/* a and b broadcast together (AG_ERR_SHAPE naming both otherwise). */
AG_HIDDEN ag_status ag__loss_check_broadcast(const char *loss, const char *wa, const ag_tensor *a,
                                             const char *wb, const ag_tensor *b);
/* from broadcasts to to's shape exactly (AG_ERR_SHAPE otherwise). */
AG_HIDDEN ag_status ag__loss_check_broadcast_to(const char *loss, const char *wfrom, const ag_tensor *from,
                                                const char *wto, const ag_tensor *to);
/* a and b have the same shape (AG_ERR_SHAPE otherwise). */
AG_HIDDEN ag_status ag__loss_check_same_shape(const char *loss, const char *wa, const ag_tensor *a,
                                              const char *wb, const ag_tensor *b);

/* Applies reduction r (MEAN, SUM, NONE; BATCHMEAN: sum / size of dim 0). */
AG_HIDDEN ag_tensor *ag__loss_reduce(ag_tensor *l, ag_reduction r);
/* Whether ops/loss.c's fused terms of a loss with options o follow their inputs' layout (a transposed
 * input and target give transposed terms, one flat pass): only unreduced, as torch's reduction
 * "none"; a reduced loss keeps row-major terms, whose sum is then in row-major order (its bits). */
#define LAYOUT(o) ((o)->reduction == AG_REDUCTION_NONE)
/* A 0-d constant of t's dtype (NULL for a NULL t). */
AG_HIDDEN ag_tensor *ag__loss_const(const ag_tensor *t, double v);
/* softplus(z) = log(1 + e^z) = max(z, 0) + log1p(e^-|z|), finite for any finite z;
 * its gradient is σ(z) everywhere (ag_maximum gives the tie at z = 0 half of dy). */
AG_HIDDEN ag_tensor *ag__loss_softplus(ag_tensor *z);

#endif

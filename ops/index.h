/*
 * ops/index.h - the argument checks the index families share (ops/index.c,
 * ops/scatter.c): each fails with a message naming op.
 */
#ifndef AGRAD_OPS_INDEX_H
#define AGRAD_OPS_INDEX_H

#include "core/internal.h"

/* index is int64 (else AG_ERR_DTYPE). */
AG_HIDDEN ag_status ag__check_index_dtype(const char *op, const ag_tensor *index);
/* mask, described as `what`, is bool (else AG_ERR_DTYPE). */
AG_HIDDEN ag_status ag__check_mask_dtype(const char *op, const char *what, const ag_tensor *mask);
/* Every value of index lies in [0, size of x's dim d) (else AG_ERR_INDEX naming the first bad one). */
AG_HIDDEN ag_status ag__check_index_bounds(const char *op, const ag_tensor *index, const ag_tensor *x, int d);
/* index has limit's ndim and is no larger than limit (named `what`) along every dim but skip
 * (-1: none); else AG_ERR_SHAPE. */
AG_HIDDEN ag_status ag__check_index_fits(const char *op, const ag_tensor *index, const ag_tensor *limit,
                                         const char *what, int skip);
/* t placed in zeros of `shape` at the corner [0, t.shape[k]) of every dim (t has shape's ndim
 * and is no larger): an ag_index_add along the identity index of each dim where they differ, so
 * it is recorded and differentiable to any order (the adjoint of reading index's region of src).
 * Returns t itself when the shapes agree; NULL (error recorded) on failure or for a NULL t. */
AG_HIDDEN ag_tensor *ag__index_corner(ag_tensor *t, ag_shape shape);

#endif

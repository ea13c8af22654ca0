/*
 * ops/jvp.h - helpers of the tangent rules (ag_op.jvp, core/internal.h) that the op
 * families share.  A rule computes out's tangent from its inputs' tangents tin[i]
 * (NULL: zero) with public, differentiable ag_* ops, so that the tangent is itself
 * differentiable (forward-over-reverse); autograd/forward.c runs it in a scope of
 * its own with forward mode paused.  Not installed.
 */
#ifndef AGRAD_OPS_JVP_H
#define AGRAD_OPS_JVP_H

#include "core/internal.h"
#include "agrad/ops.h"

/* A rule's sum of terms: acc + term, or term when acc is NULL (no term yet).  A
 * NULL term is a failure (its error recorded): NULL is returned. */
static inline ag_tensor *ag__jvp_add(ag_tensor *acc, ag_tensor *term) {
    if (!term) return NULL;
    return acc ? ag_add(acc, term) : term;
}

/* t with out's shape (a rule whose op kept or dropped size-1 dims: keepdim). */
static inline ag_tensor *ag__jvp_shaped(ag_tensor *t, const ag_tensor *out) {
    if (!t) return NULL;
    ag_shape s = {out->ndim, {0}};
    for (int d = 0; d < out->ndim; d++) s.dim[d] = out->shape[d];
    return ag_reshape(t, s);
}

/* The dims set in a reduction's mask (attr.i[0]); returns their count. */
static inline int ag__jvp_mask_dims(uint64_t mask, int ndim, int *dims) {
    int n = 0;
    for (int d = 0; d < ndim; d++)
        if (mask >> d & 1) dims[n++] = d;
    return n;
}

/* Σ of t over nd dims (kept, size 1); t itself when nd is 0 (a 0-d input: nothing to sum). */
static inline ag_tensor *ag__jvp_sum_dims(ag_tensor *t, int nd, const int *dims) {
    return nd ? ag_sum_dims(t, nd, dims, true) : t;
}

/* A reduction's out seen with the reduced dims of x (mask) kept as size 1, to broadcast. */
static inline ag_tensor *ag__jvp_keepdim(ag_tensor *out, const ag_tensor *x, uint64_t mask) {
    ag_shape s = {x->ndim, {0}};
    for (int d = 0; d < x->ndim; d++) s.dim[d] = mask >> d & 1 ? 1 : x->shape[d];
    return ag_reshape(out, s);
}

/* A selection's tangent: dx picked at the int64 indices idx along d (idx has out's
 * shape, with dim d or, when out dropped it, without): gather(dx, d, idx). */
static inline ag_tensor *ag__jvp_pick(ag_tensor *out, ag_tensor *dx, ag_tensor *idx, int d) {
    if (out->in[0]->ndim == 0) return ag__jvp_shaped(dx, out);
    ag_tensor *i = out->ndim < out->in[0]->ndim ? ag_unsqueeze(idx, d) : idx;
    return i ? ag__jvp_shaped(ag_gather(dx, d, i), out) : NULL;
}

/* [y > 0] in y's dtype: relu's local derivative (ops/unary.c's partial, 0 at NaN), for the rules of
 * the ops that end in a relu (linear_relu, batch_norm_relu). */
static inline ag_tensor *ag__relu_mask(ag_tensor *y) { return ag_to_dtype(ag_gt(y, ag_scalar(0, y->dtype)), y->dtype); }

/* [x ties y] in x's dtype: 1 where x = y, or where both are NaN (a NaN max, min or
 * median came from x's NaNs, as PyTorch's evenly_distribute_backward), 0 elsewhere. */
static inline ag_tensor *ag__tie_mask(ag_tensor *x, ag_tensor *y) {
    ag_tensor *nan = ag_mul(ag_to_dtype(ag_isnan(x), x->dtype), ag_to_dtype(ag_isnan(y), x->dtype));
    return ag_add(ag_to_dtype(ag_eq(x, y), x->dtype), nan);
}

/* The tangent of a value chosen among all of x (max, min, median; ties split evenly,
 * as the adjoint): Σ dx·[x ties y] / #{x ties y}, 0-d. */
static inline ag_tensor *ag__jvp_tie_split(ag_tensor *out, ag_tensor *dx) {
    ag_tensor *hit = ag__tie_mask(out->in[0], out);
    return ag_div(ag_sum(ag_mul(dx, hit)), ag_sum(hit));
}

#endif

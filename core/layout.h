/*
 * core/layout.h - the layout of an element-wise map's result (PyTorch's preserve_format): row-major,
 * or, when every input read in full (none broadcast along a dim) is dense with one and the same
 * permuted layout, that layout, so that the map is one flat pass over memory.
 */
#ifndef AGRAD_LAYOUT_H
#define AGRAD_LAYOUT_H

#include "core/internal.h"

/* The element strides of a map's result of shape ndim/shape over the inputs ins[0..nin): true, with
 * stride[0..ndim) set, when the inputs that are not broadcast (their shape is the result's and no dim
 * of more than one element has stride 0) are all dense (a permutation of a contiguous layout, positive
 * strides) in one and the same order of their dims of more than one element, at least one of them,
 * and that order is not row-major's; then stride is that order's contiguous layout (dims of one
 * element get the total count).  false (stride untouched) otherwise, and for an empty shape: the
 * result is then row-major. */
AG_HIDDEN bool ag__map_layout(int ndim, const int64_t *shape, const ag_tensor *const *ins, int nin, int64_t *stride);
/* A new tensor (owned as ag__new's) of dtype and shape with ag__map_layout's strides over ins, or
 * row-major ones: a contiguous block either way, in memory order.  NULL on ENOMEM. */
AG_HIDDEN ag_tensor *ag__new_map_result(ag_dtype dtype, int ndim, const int64_t *shape, const ag_tensor *const *ins,
                                        int nin);
/* Whether x has y's shape and strides (the strides of dims of one element aside) and is dense: then y
 * and x are walked as one flat run of their elements each, from ag__ptr, in the same element order. */
AG_HIDDEN bool ag__same_dense(const ag_tensor *y, const ag_tensor *x);

#endif

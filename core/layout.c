/*
 * core/layout.c - the layout of an element-wise map's result: that of its dense inputs (PyTorch's
 * preserve_format), so that a map over transposed or permuted inputs is one flat pass.
 */
#include <string.h>
#include "core/layout.h"

/* Whether t, of the iteration's shape ndim/shape, is read in full (no broadcast dim: its shape is the
 * iteration's and no dim of more than one element has stride 0). */
static bool full_operand(const ag_tensor *t, int ndim, const int64_t *shape) {
    if (t->ndim != ndim) return false;
    for (int d = 0; d < ndim; d++)
        if (t->shape[d] != shape[d] || (shape[d] > 1 && t->stride[d] == 0)) return false;
    return true;
}

/* The dims of t of more than one element, outermost first in memory (largest stride first), in
 * order[0..*m); true if t is dense in that order (non-overlapping, no gaps, positive strides: a
 * permutation of a contiguous layout). */
static bool dense_order(const ag_tensor *t, int *order, int *m) {
    int n = 0;
    for (int d = 0; d < t->ndim; d++) {
        if (t->shape[d] <= 1) continue;
        if (t->stride[d] <= 0) return false;
        int e = n++;
        for (; e > 0 && t->stride[order[e - 1]] < t->stride[d]; e--) order[e] = order[e - 1];
        order[e] = d;
    }
    *m = n;
    int64_t s = 1;
    for (int e = n - 1; e >= 0; e--) {
        if (t->stride[order[e]] != s) return false;
        s *= t->shape[order[e]];
    }
    return true;
}

bool ag__map_layout(int ndim, const int64_t *shape, const ag_tensor *const *ins, int nin, int64_t *stride) {
    int order[AG_MAX_DIMS], m = -1, full = 0;
    for (int d = 0; d < ndim; d++)
        if (shape[d] == 0) return false; /* nothing to lay out */
    for (int k = 0; k < nin; k++) {
        if (!full_operand(ins[k], ndim, shape)) continue;
        int o[AG_MAX_DIMS], n;
        if (!dense_order(ins[k], o, &n)) return false;
        if (full++ == 0) {
            for (int e = 0; e < n; e++) order[e] = o[e];
            m = n;
            continue;
        }
        for (int e = 0; e < n; e++)
            if (o[e] != order[e]) return false; /* another layout: row-major */
    }
    bool identity = true;
    for (int e = 1; e < m; e++) identity &= order[e - 1] < order[e];
    if (m < 2 || identity) return false;
    /* the dims of one element first (outermost, any stride serves them), then order's */
    int64_t s = 1;
    for (int e = m - 1; e >= 0; e--) {
        stride[order[e]] = s;
        s *= shape[order[e]];
    }
    for (int d = 0; d < ndim; d++)
        if (shape[d] <= 1) stride[d] = s;
    return true;
}

ag_tensor *ag__new_map_result(ag_dtype dtype, int ndim, const int64_t *shape, const ag_tensor *const *ins, int nin) {
    int64_t stride[AG_MAX_DIMS];
    bool rowmajor = true; /* every input row-major: so is the result (the common case, checked first) */
    for (int k = 0; k < nin && rowmajor; k++) rowmajor = ag__contig(ins[k]);
    const bool permuted = !rowmajor && ag__map_layout(ndim, shape, ins, nin, stride);
    ag_tensor *y = ag__new(dtype, ndim, shape);
    if (y && permuted) memcpy(y->stride, stride, sizeof(int64_t) * (size_t)ndim);
    return y;
}

bool ag__same_dense(const ag_tensor *y, const ag_tensor *x) {
    if (x->ndim != y->ndim) return false;
    for (int d = 0; d < y->ndim; d++)
        if (x->shape[d] != y->shape[d] || (y->shape[d] > 1 && x->stride[d] != y->stride[d])) return false;
    int order[AG_MAX_DIMS], m;
    return dense_order(x, order, &m);
}

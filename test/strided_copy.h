/*
 * strided_copy.h - the tests' reference for a strided tensor's values: a row-major copy made
 * element by element through the tensor's strides (no library copy involved), and bitwise equality
 * of two tensors' values compared through such copies.  The copies live in the caller's scope.
 */
#ifndef AGRAD_TEST_STRIDED_COPY_H
#define AGRAD_TEST_STRIDED_COPY_H

#include <stdbool.h>
#include <string.h>
#include "agrad/agrad.h"
#include "core/internal.h"

/* A row-major copy of t made element by element here, through t's strides; NULL when out of memory. */
static inline ag_tensor *plain(ag_tensor *t) {
    ag_tensor *c = ag_empty(ag_shape_of(t), ag_dtype_of(t));
    if (!c) return NULL;
    const size_t es = ag_dtype_size(ag_dtype_of(t));
    int64_t idx[AG_MAX_DIMS] = {0}, n = ag_numel(t);
    for (int64_t k = 0; k < n; k++) {
        int64_t off = 0;
        for (int d = 0; d < t->ndim; d++) off += idx[d] * t->stride[d];
        memcpy((char *)ag_data(c) + (size_t)k * es, ag__ptr(t) + off * (int64_t)es, es);
        for (int d = t->ndim - 1; d >= 0 && ++idx[d] == t->shape[d]; d--) idx[d] = 0;
    }
    return c;
}

/* Whether a and b (one dtype and element count) hold the same values bit for bit, in logical order
 * whatever their layouts (row-major copies compared). */
static inline bool same_bits(ag_tensor *a, ag_tensor *b) {
    if (!a || !b || ag_dtype_of(a) != ag_dtype_of(b) || ag_numel(a) != ag_numel(b)) return false;
    ag_tensor *ca = plain(a), *cb = plain(b);
    return ca && cb && memcmp(ag_data(ca), ag_data(cb), (size_t)ag_numel(a) * ag_dtype_size(ag_dtype_of(a))) == 0;
}

#endif

/*
 * core/overlap.c - where a tensor's elements lie in memory: whether two of its
 * own elements can share one address (internal overlap, as an expanded view
 * has), and whether two tensors share any bytes.  In-place functions use
 * them to refuse a destination that would be written twice per element and
 * to read a source that overlaps the destination from a copy.
 */
#include <stdlib.h>
#include "core/internal.h"

/* Dims of t with more than one element, sorted by increasing |stride|. */
static int sorted_dims(const ag_tensor *t, int64_t *size, int64_t *stride) {
    int n = 0;
    for (int d = 0; d < t->ndim; d++) {
        if (t->shape[d] <= 1) continue;
        int64_t s = t->stride[d] < 0 ? -t->stride[d] : t->stride[d];
        int k = n++;
        for (; k > 0 && stride[k - 1] > s; k--) {
            stride[k] = stride[k - 1];
            size[k] = size[k - 1];
        }
        stride[k] = s;
        size[k] = t->shape[d];
    }
    return n;
}

bool ag__has_internal_overlap(const ag_tensor *t) {
    int64_t size[AG_MAX_DIMS], stride[AG_MAX_DIMS];
    for (int d = 0; d < t->ndim; d++)
        if (t->shape[d] == 0) return false; /* no element at all */
    int n = sorted_dims(t, size, stride);
    /* Sorted by stride, the dims nest when each stride exceeds the span of the
     * smaller ones: then distinct indices give distinct addresses.  Views made
     * by agrad's view ops of a dense tensor always nest unless expanded. */
    int64_t span = 0; /* largest offset reachable through the dims seen so far */
    for (int k = 0; k < n; k++) {
        if (stride[k] <= span) return true;
        span += stride[k] * (size[k] - 1);
    }
    return false;
}

ag_status ag__check_no_internal_overlap(const char *op, const ag_tensor *t) {
    if (!ag__has_internal_overlap(t)) return AG_OK;
    char s[AG_SHAPE_STR];
    return ag__fail(AG_ERR_ARG,
                    "%s: more than one element of the written-to tensor %s refers to a single memory location "
                    "(an expanded view?); clone() it before the in-place operation",
                    op, ag__tshape(s, t));
}

/* The byte range [lo, hi) that t's elements occupy; lo == hi for an empty tensor. */
static void byte_range(const ag_tensor *t, uintptr_t *lo, uintptr_t *hi) {
    int64_t first = 0, last = 0;
    for (int d = 0; d < t->ndim; d++) {
        if (t->shape[d] == 0) {
            *lo = *hi = 0;
            return;
        }
        int64_t reach = (t->shape[d] - 1) * t->stride[d];
        if (reach < 0) first += reach;
        else last += reach;
    }
    uintptr_t base = (uintptr_t)ag__ptr(t);
    int64_t es = (int64_t)ag__esize(t->dtype);
    *lo = base + (uintptr_t)(first * es);
    *hi = base + (uintptr_t)((last + 1) * es);
}

ag_overlap ag__overlap(const ag_tensor *a, const ag_tensor *b) {
    uintptr_t alo, ahi, blo, bhi;
    byte_range(a, &alo, &ahi);
    byte_range(b, &blo, &bhi);
    if (alo == ahi || blo == bhi || ahi <= blo || bhi <= alo) return AG_OVERLAP_NONE;
    if (a->dtype != b->dtype || ag__ptr(a) != ag__ptr(b) || a->ndim != b->ndim) return AG_OVERLAP_PARTIAL;
    for (int d = 0; d < a->ndim; d++)
        if (a->shape[d] != b->shape[d] || (a->shape[d] > 1 && a->stride[d] != b->stride[d]))
            return AG_OVERLAP_PARTIAL;
    return AG_OVERLAP_SAME;
}

/*
 * core/memorder.h - a reduction of a permuted x (transposed, permuted: a permutation of a contiguous
 * block) made on x's memory layout with the dims renamed, no copy of x.
 */
#ifndef AGRAD_MEMORDER_H
#define AGRAD_MEMORDER_H

#include <stdbool.h>
#include <stdint.h>
#include "core/internal.h"

/* The dims of x in its memory order: perm[i] = the dim at position i (largest stride first, size-1
 * dims last, ties in dim order).  True when x, seen so, is contiguous and x itself is not (x of 2+
 * dims, a permutation of a contiguous block); false (perm unspecified) for any other x: contiguous,
 * sliced (gaps), expanded (stride 0) or overlapping. */
AG_HIDDEN bool ag__memory_order(const ag_tensor *x, int *perm);

/* A reduction as the public ops take it: x reduced over the ndims dims listed (all listed when all
 * are reduced), keeping them as size 1; ctx the op's own arguments. */
typedef ag_tensor *(*ag_reduce_fn)(ag_tensor *x, int ndims, const int *dims, void *ctx);

/* dst (contiguous, of x's dims with the reduced ones 1: ndim n) = src, a tensor of the same geometry
 * with its dims in the memory order perm (ag__memory_order): src's dim i is dst's dim perm[i]. */
AG_HIDDEN void ag__from_memory_order(ag_tensor *dst, const ag_tensor *src, const int *perm);

/* y (fresh, contiguous, x's shape with the dims in mask dropped or, keepdim, 1; nothing recorded)
 * = fn(x over mask) made on x's memory-order view (ag__memory_order): fn gets that contiguous view
 * (which needs no gradient) and the renamed dims, its result is copied back in x's dim order.  So
 * each output is bit for bit what fn gives for the contiguous block x permutes, reduced over the
 * matching dims.  Returns y; NULL with *tried false (and no error) where x is not permuted so,
 * NULL with *tried true where fn or an allocation failed (its error set). */
AG_HIDDEN ag_tensor *ag__reduce_in_memory_order(ag_tensor *x, uint64_t mask, bool keepdim, ag_reduce_fn fn, void *ctx,
                                                bool *tried);

#endif

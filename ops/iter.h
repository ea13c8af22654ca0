/*
 * iter.h - walking several strided operands of one shape with a typed inner
 * loop, broadcasting, and the shared pieces of elementwise kernels.
 */
#ifndef AGRAD_ITER_H
#define AGRAD_ITER_H

#include "../autograd/internal.h"

#define AG_ITER_MAX 6

/* Inner loop over n elements: p[k] is operand k's first element, s[k] its step in bytes. */
typedef void (*ag_inner_fn)(char **p, const int64_t *s, int64_t n, void *ctx);

/* Byte strides of each operand, one row per operand, aligned to the iteration shape. */
typedef struct ag_iter {
    int ndim, nops;
    int64_t shape[AG_MAX_DIMS];
    char *base[AG_ITER_MAX];
    int64_t stride[AG_ITER_MAX][AG_MAX_DIMS];
} ag_iter;

/* Starts an iteration over shape. */
AG_HIDDEN void ag__iter_init(ag_iter *it, int ndim, const int64_t *shape);
/* Adds t as the next operand, broadcast to the iteration shape (t's shape must
 * broadcast to it; stride 0 along broadcast dims). */
AG_HIDDEN void ag__iter_add(ag_iter *it, const ag_tensor *t);
/* Adds t with stride 0 along every dim marked in reduced_mask (t has the
 * iteration's ndim with size 1 there, or fewer dims as for broadcasting). */
AG_HIDDEN void ag__iter_add_reduced(ag_iter *it, const ag_tensor *t, uint64_t reduced_mask);
/* Runs fn over every element, innermost dim last, after merging dims that are
 * contiguous for all operands. */
AG_HIDDEN void ag__iter_run(ag_iter *it, ag_inner_fn fn, void *ctx);

/* Shape of broadcasting a with b into ndim/shape.  Fails naming op. */
AG_HIDDEN ag_status ag__broadcast_shape(const char *op, const ag_tensor *a, const ag_tensor *b,
                                        int *ndim, int64_t *shape);
/* True if from's shape broadcasts to ndim/shape. */
AG_HIDDEN bool ag__broadcastable(int from_ndim, const int64_t *from, int ndim, const int64_t *shape);
/* Normalises a possibly negative dim of t (a 0-d t accepts 0 and -1, as PyTorch);
 * -1 with an AG_ERR_INDEX message naming op, the dim and t's shape if invalid. */
AG_HIDDEN int ag__tdim(const char *op, int dim, const ag_tensor *t);
/* Checks t is float32/float64 (and same dtype as other if other != NULL). */
AG_HIDDEN ag_status ag__check_float(const char *op, const ag_tensor *t, const ag_tensor *other);
/* Returns a new tensor of shape `to` holding the sum of g over the dims that
 * broadcasting added or expanded (g's shape is a broadcast of `to`).  The result
 * is owned by the caller (in no scope), as are those of ag__contig_or_copy. */
AG_HIDDEN ag_tensor *ag__sum_to(const ag_tensor *g, int ndim, const int64_t *to);
/* Inner loop p[0] += p[1] for float32/float64; ctx points at the ag_dtype. */
AG_HIDDEN void ag__acc_kernel(char **p, const int64_t *s, int64_t n, void *ctx);
/* Copies src into dst (same shape or broadcast), converting dtypes. */
AG_HIDDEN void ag__copy_into(ag_tensor *dst, const ag_tensor *src);
/* A contiguous tensor with t's values: t itself retained if contiguous, else a copy. */
AG_HIDDEN ag_tensor *ag__contig_or_copy(ag_tensor *t);

/* A tensor seen as outer x n x inner along one dim: element (o, k, i) is at
 * (o*n + k)*inner + i of its contiguous layout. */
typedef struct ag_lanes {
    int64_t outer, n, inner;
} ag_lanes;
/* The lanes of x along dim d (a 0-d x is one lane of one element). */
AG_HIDDEN ag_lanes ag__lanes_of(const ag_tensor *x, int d);

/* Instantiates fn for float and double inner loops: NAME##_f32, NAME##_f64. */
#define AG_DTYPE_INDEX(dt) ((dt) == AG_F64)

#endif

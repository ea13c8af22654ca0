/*
 * core/iter.h - walking several strided operands of one shape with a typed inner
 * loop, broadcasting, and the shared pieces of elementwise kernels.
 */
#ifndef AGRAD_ITER_H
#define AGRAD_ITER_H

#include "core/internal.h"

#define AG_ITER_MAX 6

/* Inner loop over n elements: p[k] is operand k's first element, s[k] its step in bytes. */
typedef void (*ag_inner_fn)(char **p, const int64_t *s, int64_t n, void *ctx);

/* How an operand is laid out over the iteration shape.  When every operand is
 * contiguous with that shape or constant (stride 0 everywhere), ag__iter_run
 * makes one flat call and the per-dim strides are never computed. */
enum { AG_ITER_CONTIG = 0, AG_ITER_CONST = 1, AG_ITER_STRIDED = 2 };

/* Byte strides of each operand, one row per operand, aligned to the iteration shape
 * (filled for AG_ITER_STRIDED operands, and for the others only when needed). */
typedef struct ag_iter {
    int ndim, nops;
    bool all_flat;
    int64_t numel;
    int64_t shape[AG_MAX_DIMS];
    char *base[AG_ITER_MAX];
    int64_t esize[AG_ITER_MAX];
    int kind[AG_ITER_MAX];
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

/* ag__iter_run for a kernel whose result does not depend on the order it visits the elements in (an
 * exact reduction into operand 0: an extreme, a count): the dims are walked in operand 1's memory order
 * (largest stride outermost, broadcast dims outermost of all), so a transposed or permuted input is read
 * in runs, its fast paths taken (a reduced inner dim: s[0] == 0; a kept one: a column update), instead of
 * one cache line per element.  The dims are permuted, never reversed: the elements that differ along one
 * dim alone are still visited in increasing order along it (index_copy's put relies on that). */
AG_HIDDEN void ag__iter_run_any_order(ag_iter *it, ag_inner_fn fn, void *ctx);

/* ag__iter_run split over threads for large iterations (see parallel.h): fn must
 * be a pure elementwise map writing only operand 0, which is written at a distinct
 * place for each element (no reduction into it), and must not write ctx. */
AG_HIDDEN void ag__iter_run_par(ag_iter *it, ag_inner_fn fn, void *ctx);

/* ag__iter_run for a sum into a float64 operand 0: fn adds into operand 0 (operand 0
 * += terms of the other operands, as a sum kernel with s[0] == 0 does) and writes
 * nothing else.  A large full reduction of one contiguous operand (two operands,
 * operand 0 one element) is split over threads into zeroed float64 partials that
 * are then added into operand 0; other iterations split only along a dim where
 * operand 0 differs between the parts. */
AG_HIDDEN void ag__iter_run_sum(ag_iter *it, ag_inner_fn fn, void *ctx);

/* The shape of broadcasting a [an dims] with b [bn dims] into ndim/shape (room for
 * the larger count): 0, or the first dim (counted from the end, so negative) where
 * they clash; records no error. */
AG_HIDDEN int ag__broadcast_dims(int an, const int64_t *a, int bn, const int64_t *b, int *ndim, int64_t *shape);
/* Shape of broadcasting a with b into ndim/shape.  Fails naming op. */
AG_HIDDEN ag_status ag__broadcast_shape(const char *op, const ag_tensor *a, const ag_tensor *b,
                                        int *ndim, int64_t *shape);
/* True if from's shape broadcasts to ndim/shape. */
AG_HIDDEN bool ag__broadcastable(int from_ndim, const int64_t *from, int ndim, const int64_t *shape);
/* Checks t is float32/float64 (and same dtype as other if other != NULL). */
AG_HIDDEN ag_status ag__check_float(const char *op, const ag_tensor *t, const ag_tensor *other);
/* Copies src into dst (same shape or broadcast), converting dtypes. */
AG_HIDDEN void ag__copy_into(ag_tensor *dst, const ag_tensor *src);
/* A contiguous tensor with t's values: t itself retained if contiguous, else a copy. */
AG_HIDDEN ag_tensor *ag__contig_or_copy(ag_tensor *t);
/* The walks (one per thread) that copied transposed tiles straight into the output (core/iter.c
 * walk_packed, direct_copy): counted for the tests (test_iter_pack), which check the path is taken. */
AG_HIDDEN extern atomic_long ag__direct_copy_walks;

/* True if t is contiguous with exactly the shape ndim/shape: elementwise kernels
 * can then take it as one flat run of numel elements, without an iterator. */
static inline bool ag__flat_as(const ag_tensor *t, int ndim, const int64_t *shape) {
    if (t->ndim != ndim) return false;
    int64_t s = 1;
    for (int d = ndim - 1; d >= 0; d--) {
        if (t->shape[d] != shape[d] || (shape[d] != 1 && t->stride[d] != s)) return false;
        s *= shape[d];
    }
    return true;
}

/* Runs fn once over n contiguous elements of each of the nops operands p. */
static inline void ag__run_flat(ag_inner_fn fn, void *ctx, int64_t n, int nops, char **p, int64_t esize) {
    int64_t s[AG_ITER_MAX];
    for (int k = 0; k < nops; k++) s[k] = esize;
    if (n > 0) fn(p, s, n, ctx);
}

/* ---- the loops of elementwise kernels (inside an ag_inner_fn: p, s, n in scope) ------------------
 * Operand k's element i, of type T, at any step. */
#define AG_AT(T, k) (*(const T *)(p[k] + i * s[k]))
/* Element by element at any steps: for each i, unless KEEP (which may read *o_, the output's element
 * i), the declarations ... (operand loads, AG_AT) then *o_ = (TY)(EXPR).  KEEP 0 writes them all;
 * *o_ == *o_ rewrites only the NaNs a fast first pass left (binary.c's R rows). */
#define AG_MAP_STRIDED(TY, KEEP, EXPR, ...)                                                     \
    for (int64_t i = 0; i < n; i++) {                                                           \
        TY *const o_ = (TY *)(p[0] + i * s[0]);                                                 \
        if (KEEP) continue;                                                                     \
        __VA_ARGS__;                                                                            \
        *o_ = (TY)(EXPR);                                                                       \
    }
/* One unit-step loop of y = EXPR over y (TY) and a, b (TX), a read at i·KA and b at i·KB: KA, KB are
 * 1 (a run) or 0 (constant along it, hoisted; the loop still vectorises). */
#define AG_MAP2_UNIT(TY, TX, EXPR, KA, KB)                                                      \
    do {                                                                                        \
        TY *restrict yp_ = (TY *)p[0];                                                          \
        const TX *restrict ap_ = (const TX *)p[1], *restrict bp_ = (const TX *)p[2];            \
        for (int64_t i = 0; i < n; i++) {                                                       \
            const TX a = ap_[i * (KA)], b = bp_[i * (KB)];                                      \
            yp_[i] = (TY)(EXPR);                                                                \
        }                                                                                       \
    } while (0)
/* The body of a kernel y = EXPR(a, b) over operands y (TY), a and b (TX): unit steps, or a or b constant
 * along a unit-step run ([N, N] with [N], [N, 1] with [1, N], a tensor with a one-element one) as loops
 * the compiler vectorises, any other steps element by element. */
#define AG_MAP2_LOOPS(TY, TX, EXPR)                                                             \
    do {                                                                                        \
        const int64_t ty_ = (int64_t)sizeof(TY), tx_ = (int64_t)sizeof(TX);                     \
        if (s[0] == ty_ && s[1] == tx_ && s[2] == tx_) AG_MAP2_UNIT(TY, TX, EXPR, 1, 1);        \
        else if (s[0] == ty_ && s[1] == tx_ && s[2] == 0) AG_MAP2_UNIT(TY, TX, EXPR, 1, 0);     \
        else if (s[0] == ty_ && s[1] == 0 && s[2] == tx_) AG_MAP2_UNIT(TY, TX, EXPR, 0, 1);     \
        else AG_MAP_STRIDED(TY, 0, EXPR, const TX a = AG_AT(TX, 1); const TX b = AG_AT(TX, 2)); \
    } while (0)

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

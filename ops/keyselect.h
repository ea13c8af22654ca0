/*
 * ops/keyselect.h - one order statistic of all the values of a float tensor, values only (the
 * median and nanmedian of all elements, ops/sort.c).  Private.
 *
 * The values become their sort keys alone (ops/lanesort.c's unsigned keys: NaN largest, -0.0
 * equal to 0.0), with no index beside them, and a quickselect partitions the keys three ways
 * around a pivot, out of place, by AVX-512 compress where the CPU runs it.  The element returned
 * is the one the stable order (key, then index) puts at the rank asked, so its bits are those
 * of the radix select of lanesort.h (which it falls back to if the pivots choose badly).  A
 * float32 lane's item (median or kthvalue along a dim) is selected likewise, its key and index
 * packed in one uint64.
 */
#ifndef AGRAD_OPS_KEYSELECT_H
#define AGRAD_OPS_KEYSELECT_H

#include "core/internal.h"

/* The number of NaNs among the n contiguous float32 or float64 values x. */
AG_HIDDEN int64_t ag__count_nan(const void *x, ag_dtype dtype, int64_t n);

/* How ag__select_value partitions: AVX-512 where it runs, else the scalar loop (BEST); the scalar
 * loop (SCALAR); the radix select at once (RADIX).  The same result whichever (tests). */
typedef enum ag_select_how { AG_SELECT_BEST, AG_SELECT_SCALAR, AG_SELECT_RADIX } ag_select_how;

/* Writes into out (one element of dtype) the element of the n contiguous float32 or float64
 * values x that the stable ascending order (NaN largest, -0.0 equal to 0.0, equal values in
 * index order) puts at rank k (0 <= k < n).  Returns AG_ERR_NOMEM (out untouched) if its
 * scratch (about 3n keys) cannot be had, else AG_OK. */
AG_HIDDEN ag_status ag__select_value(const void *x, ag_dtype dtype, int64_t n, int64_t k, ag_select_how how,
                                     void *out);

/* Float32 lanes at least this long take ag__select_lane_f32 (its scratch, 3 (n + 16) uint64,
 * then fits in the 2n (key, index) items a sort of the lane has). */
#define AG_SELECT_LANE_MIN 48

/* The index of the element of the float32 lane x (element j at x + j * stride; n < 2^32) that
 * the stable ascending order (NaN largest, -0.0 equal to 0.0, equal values in index order) puts at
 * rank k (0 <= k < n), by a quickselect of the key and index packed in one uint64; buf: room for
 * 3 (n + 16).  Returns -1 (out of memory) only if the pivots chose badly and the radix select it
 * falls back to cannot have its scratch. */
AG_HIDDEN int64_t ag__select_lane_f32(const float *x, int64_t n, int64_t stride, int64_t k, uint64_t *buf);

#endif

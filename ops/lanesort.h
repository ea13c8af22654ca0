/*
 * ops/lanesort.h - the stable sort that the sorting ops share (sort, argsort, topk,
 * kthvalue, median in ops/sort.c; unique and mode in ops/stats.c).  Private.
 *
 * A lane's elements become (key, index) items: the key an unsigned integer whose
 * order is the values' sort order (NaN largest, -0.0 equal to 0.0; inverted for a
 * descending sort), the index the element's place in the lane.  Items are sorted by
 * key with an LSD radix sort (stable by construction, linear in the lane) or, for
 * short lanes, a rank sort (each item's place counted by vectorised compares, where
 * AVX-512 runs) or an insertion sort (elsewhere); a long single lane is split over
 * threads and the sorted runs merged.  Equal keys keep their index order, so the result is the same
 * stable order whatever the method or the thread count.
 */
#ifndef AGRAD_OPS_LANESORT_H
#define AGRAD_OPS_LANESORT_H

#include "core/internal.h"

typedef struct ag_sort_item {
    uint64_t key;
    int64_t idx;
} ag_sort_item;

/* Elements from which sorting-like work (a sort, a binary search per element) runs on all
 * threads: at about 10 ns an element (the radix sort on one thread, ops/lanesort.c) 4096
 * elements take some 40 µs, ten times the cost of starting a team (about 3 µs, core/parallel.c),
 * where a cheap elementwise loop needs AG_PAR_MIN_ELEMS. */
#define AG_SORT_PAR_MIN 4096

/* Threads for sorting-like work on n elements: ag__threads_for's choice, from AG_SORT_PAR_MIN
 * elements instead of AG_PAR_MIN_ELEMS (1 under AG_BACKEND_REFERENCE, in a parallel region,
 * or with ag_set_num_threads(1)). */
AG_HIDDEN int ag__sort_threads(int64_t n);

/* The bytes of key that float32 (4), float64 and int64 (8), uint8 and bool (1) keys use. */
AG_HIDDEN int ag__sort_key_bytes(ag_dtype dtype);

/* Writes the n items of a lane whose element k is at x + k * stride elements of dtype
 * (float32, float64, int64, uint8 or bool): key in ascending order (descending: inverted),
 * idx = k. */
AG_HIDDEN void ag__sort_fill(ag_sort_item *it, const void *x, ag_dtype dtype, int64_t n, int64_t stride,
                             bool descending);

/* Sorts the n items it[0..n) by key, stably (tmp: room for n more; key_bytes from
 * ag__sort_key_bytes).  Returns where the sorted items are: it or tmp. */
AG_HIDDEN ag_sort_item *ag__sort_items(ag_sort_item *it, ag_sort_item *tmp, int64_t n, int key_bytes);

/* ag__sort_items over `threads` threads: chunks sorted in parallel, then merged in rounds,
 * each merge split over the threads; the same result as ag__sort_items. */
AG_HIDDEN ag_sort_item *ag__sort_items_par(ag_sort_item *it, ag_sort_item *tmp, int64_t n, int key_bytes,
                                           int threads);

/* The first k items (k <= n) of the stable order of the lane ag__sort_fill would write (element
 * j at x + j * stride), in that order, written into h[0..k): a bounded heap fed straight from
 * the values, O(n log k); float32 keys and indices packed in one uint64 each in scratch (room
 * for k of them). */
AG_HIDDEN void ag__sort_first_k_lane(const void *x, ag_dtype dtype, int64_t n, int64_t stride, bool descending,
                                     int64_t k, ag_sort_item *h, void *scratch);

/* The item the stable order of it[0..n) (items in index order) puts at k (0 <= k < n): a radix
 * select, the digit of rank k found from each byte's histogram, most significant first, and
 * only the items with that digit kept (into tmp or it, in their order), O(n) with no sort.
 * it and tmp (n items) are overwritten. */
AG_HIDDEN ag_sort_item ag__sort_select(ag_sort_item *it, ag_sort_item *tmp, int64_t n, int64_t k, int key_bytes);

/* ag__sort_select of the lane ag__sort_fill would write (element j at x + j * stride), without
 * writing it whole: the top key byte's digit of rank k is counted from the values, and only the
 * items with that digit are written into it (tmp: scratch; both room for n items). */
AG_HIDDEN ag_sort_item ag__sort_select_lane(const void *x, ag_dtype dtype, int64_t n, int64_t stride, bool descending,
                                            int64_t k, ag_sort_item *it, ag_sort_item *tmp);

#endif

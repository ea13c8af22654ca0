/*
 * norm.h - the chunk and thread rules of ops/norm.c's batch norm over [N, C], for its tests.
 */
#ifndef AGRAD_OPS_NORM_H
#define AGRAD_OPS_NORM_H

#include "core/internal.h"

/* Threads a batch norm over an [N, C] input (L = 1) of one chunk of rows (N <= ag__bn_chunk_rows(N)) splits
 * its channels over (each thread a block of at least 1024 channels, all N rows; 1: no parallel region), as
 * its kernels would pick now. */
AG_HIDDEN int ag__bn_cols_threads(int64_t N, int64_t C);

/* Rows K of a chunk of a batch norm over [N, C] (L = 1): N > K, its sums go by chunks of K rows (the last
 * one shorter), each from 0 in row order (chunk 0 from row 1 for the forward's statistics), combined in
 * chunk order; else in row order.  Depends on N alone (not on the thread count). */
AG_HIDDEN int64_t ag__bn_chunk_rows(int64_t N);

/* Threads a batch norm over [N, C] by chunks of rows (N > ag__bn_chunk_rows(N)) splits its chunks over, its
 * training forward (forward) or its adjoint, whole chunks a thread (1: no parallel region); under
 * OMP_WAIT_POLICY=passive one for the forward and for an adjoint below 2^19 elements. */
AG_HIDDEN int ag__bn_rows_threads(int64_t N, int64_t C, bool forward);

/* Whether batch norm over [N, C] float32 runs its AVX-512 kernels (ops/bn_cols512.h) where the CPU has x86-64-v4
 * (true, the default) or the C kernels (false): the tests compare the two; process-wide. */
AG_HIDDEN extern bool ag__bn_cols_avx512;

#endif

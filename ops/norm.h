/*
 * norm.h - the thread rule of ops/norm.c's batch norm over [N, C], for its tests.
 */
#ifndef AGRAD_OPS_NORM_H
#define AGRAD_OPS_NORM_H

#include "core/internal.h"

/* Threads a batch norm over an [N, C] input (L = 1) splits its channels over (each thread a block of
 * at least 1024 channels, all N rows; 1: no parallel region), as its kernels would pick now. */
AG_HIDDEN int ag__bn_cols_threads(int64_t N, int64_t C);

#endif

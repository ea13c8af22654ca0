/*
 * core/sqdev.h - the squared deviations Σ (x - mean)² of var and std along one run of dims,
 * read as the column and row sums of core/sum.c read x: in rows, contiguous.
 */
#ifndef AGRAD_SQDEV_H
#define AGRAD_SQDEV_H

#include "core/iter.h"

/* acc += Σ (x - mean)² summed over the dims where acc has size 1, in float64: acc and mean are
 * float64 and contiguous, of x's shape with the summed dims 1 (mean broadcast over them); x is a
 * contiguous float32 or float64 tensor.  Handles a sum over one run of consecutive dims with kept
 * dims after it (x as [A, R, C], C >= 8: columns) or only before it (C = 1, A > 1: rows); returns
 * false and does nothing for other shapes (a full sum, several runs, fewer than 8 columns, an
 * empty x). */
AG_HIDDEN bool ag__sqdev_into(ag_tensor *acc, const ag_tensor *x, const ag_tensor *mean);

/* var/std's adjoint over the geometries ag__sqdev_into takes: gx = sg·(T)(x - mean) elementwise (T x's
 * dtype), sg (x's dtype, contiguous, of mean's shape) the per-output scale 2·dy'/(n - correction) made
 * by the caller, gx contiguous of x's shape and dtype.  Returns false and does nothing for the
 * geometries ag__sqdev_into declines. */
AG_HIDDEN bool ag__var_grad_into(ag_tensor *gx, const ag_tensor *x, const ag_tensor *mean, const ag_tensor *sg);

#endif

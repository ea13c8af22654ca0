/*
 * core/sqdev.h - the squared deviations Σ (x - mean)² of var and std along one run of dims,
 * read as the column and row sums of core/sum.c read x: in rows, contiguous.
 */
#ifndef AGRAD_SQDEV_H
#define AGRAD_SQDEV_H

#include "core/iter.h"

/* acc += Σ (x - mean)² summed over the dims where acc has size 1, in float64: acc and mean are
 * float64 and contiguous, of x's shape with the summed dims 1 (mean broadcast over them); x is a
 * contiguous float32 or float64 tensor.  Any set of summed dims: x is read as slabs [A, R, C] (R the
 * last run of summed dims, A and C the kept dims around it), each output's slabs in order, each slab
 * in rows (C = 1), columns (C >= 8) or narrow columns (C < 8, and a full sum), in the order
 * core/sqdev.c states: the same bits on any number of threads.  Returns false and does nothing for
 * an empty or non-contiguous x. */
AG_HIDDEN bool ag__sqdev_into(ag_tensor *acc, const ag_tensor *x, const ag_tensor *mean);

/* var/std's adjoint over the geometries ag__sqdev_into takes: gx = sg·(T)(x - mean) elementwise (T x's
 * dtype), sg (x's dtype, contiguous, of mean's shape) the per-output scale 2·dy'/(n - correction) made
 * by the caller, gx contiguous of x's shape and dtype.  Returns false and does nothing where
 * ag__sqdev_into would (or gx is not contiguous, or a dtype differs). */
AG_HIDDEN bool ag__var_grad_into(ag_tensor *gx, const ag_tensor *x, const ag_tensor *mean, const ag_tensor *sg);

/* acc += Σ x over the dims where acc (float64, contiguous, of x's shape with the summed dims 1) has size 1,
 * where those dims make several runs (x contiguous, float32 or float64): x's [A, R, C] slabs (R the
 * last summed run, A and C the kept runs around it) each summed by ag__sum_term_into, the slabs of one
 * output in order.  Returns false and does nothing for one run of summed dims or fewer, or another x. */
AG_HIDDEN bool ag__sum_slabs_into(ag_tensor *acc, const ag_tensor *x);

#endif

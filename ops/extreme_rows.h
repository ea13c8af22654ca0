/*
 * extreme_rows.h - amax/amin of short contiguous float32 rows in registers (ops/extreme_rows.c),
 * for ops/reduce.c's amax/amin.  Private.
 */
#ifndef AGRAD_OPS_EXTREME_ROWS_H
#define AGRAD_OPS_EXTREME_ROWS_H

#include <stdbool.h>
#include <stdint.h>
#include "core/internal.h"

/* acc[o] (float64) = the largest (is_max) or smallest element of row o of x, rows of n contiguous
 * float32 elements, for o in [o0, o1); NaN where the row holds a NaN; exact (x's own value; of equal
 * zeros, either).  amax/amin's rows (ops/reduce.c's extreme_rows) with AVX-512, for
 * 2 <= n <= EXTREME_SHORT_MAX; false, nothing written, for any other n, without AVX-512 or on the
 * reference backend. */
#define EXTREME_SHORT_MAX 256
AG_HIDDEN bool ag__extreme_rows_f32(double *acc, const float *x, int64_t n, int64_t o0, int64_t o1, bool is_max);

#endif

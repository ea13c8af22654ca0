/*
 * matmul.h - the batched product kernel of ops/matmul.c, for ops that multiply
 * matrices inside their own forward and adjoint (ops/attention.c).
 */
#ifndef AGRAD_OPS_MATMUL_H
#define AGRAD_OPS_MATMUL_H

#include "core/internal.h"

/* c[batch..., n, m] = op(a)·op(b) over c's batch dims (c contiguous, allocated by the
 * caller; a and b of any strides, broadcast over c's batch dims); ta/tb transpose the
 * last two dims of a/b.  AG_OK, or the status of a failed allocation or oneDNN call
 * (recorded). */
AG_HIDDEN ag_status ag__batched_gemm(ag_tensor *c, const ag_tensor *a, bool ta, const ag_tensor *b, bool tb);

#endif

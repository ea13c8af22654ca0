/*
 * kernels.h - the forward C kernels of the elementwise families, by op, and the
 * oneDNN algorithm a unary op runs on.  Private: lets bench/bench_ops.c time the
 * loop an op runs on small contiguous inputs apart from the op's checks,
 * allocation and recording, and test/test_backend.c find the accelerated ops.
 */
#ifndef AGRAD_KERNELS_H
#define AGRAD_KERNELS_H

#include "core/iter.h"

/* The forward kernel of a unary op (ops/unary.c) for dtype, operands y, x; its
 * ctx is an ag_attr with the op's scalar arguments in a and b.  NULL: not a unary op. */
AG_HIDDEN ag_inner_fn ag__unary_kernel(const ag_op *op, ag_dtype dtype);

/* The oneDNN eltwise algorithm a unary op (ops/unary.c) uses on float32 (0: none,
 * or not a unary op). */
AG_HIDDEN int ag__unary_dnnl_alg(const ag_op *op);

/* The forward kernel of a binary op (ops/binary.c) for dtype, operands y, a, b;
 * its ctx is NULL.  NULL: not a binary op. */
AG_HIDDEN ag_inner_fn ag__binary_kernel(const ag_op *op, ag_dtype dtype);

/* Records y, computed by the caller as a·b (a new tensor of a's and b's shape and dtype, owned as
 * ag_mul's result), as the node of mul over a and b when they need grad: a fused forward whose
 * adjoint and tangent are mul's (nn/dropout.c: relu then dropout).  Returns y, or NULL with y
 * discarded on ENOMEM or (anomaly mode) a non-finite value. */
AG_HIDDEN ag_tensor *ag__mul_record(ag_tensor *y, ag_tensor *a, ag_tensor *b);

#endif

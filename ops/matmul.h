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
/* c = op(a)·op(b), or c += op(a)·op(b) with acc: float32 row-major matrices, op(a) [m, k] and
 * op(b) [k, n] (ta/tb: read from a [k, m] / b [n, k]), lda/ldb/ldc the row strides, by
 * dnnl_sgemm on the calling thread alone (for ops that run products block by block inside
 * their own parallel regions: ops/distance.c).  With acc false c is only written.  false if
 * oneDNN failed (nothing recorded). */
AG_HIDDEN bool ag__sgemm_1t(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                            const float *b, int64_t ldb, bool acc, float *c, int64_t ldc);
/* Whether linear's adjoint for x [rows, in] and W [out, in] in float32 computes dx and dW by halves of
 * W's rows, one a thread (ops/matmul.c linear_halves), with the threads and options it has now: then
 * dx = dy[:, :h]·W[:h] + dy[:, h:]·W[h:] (h = out / 2, each product on one thread), whose last bits
 * differ from one thread's single product. */
AG_HIDDEN bool ag__linear_by_halves(int64_t rows, int64_t in, int64_t out);

#endif

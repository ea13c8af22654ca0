/*
 * agrad/linalg.h - linear algebra with gradients, as torch.linalg.
 *
 * Every function takes a matrix [m, n] or a batch of them [..., m, n] (float32
 * or float64) and works on each matrix of the batch; where two operands are
 * taken their batch dims broadcast.  The factorisations are LAPACK's (LAPACKE);
 * the adjoints are PyTorch's (derivatives.yaml), listed in docs/linalg.md.
 *
 * Results are owned like any op result (the innermost scope, or the caller when
 * none is open).  On failure a function returns NULL (or a status) with a message
 * naming the op: AG_ERR_DTYPE for a non-float tensor or mixed dtypes, AG_ERR_SHAPE
 * for shapes that do not fit (and for a matrix beyond LAPACK's int sizes, 2^31 - 1
 * elements), AG_ERR_VALUE naming the batch element for a singular or
 * non-positive-definite matrix, or one holding NaN: never a NaN result in silence.
 * NULL inputs give NULL without a new message.
 */
#ifndef AGRAD_LINALG_H
#define AGRAD_LINALG_H

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* X with A·X = B, as torch.linalg.solve(A, B): A [..., n, n]; B [..., n, k], or a
 * vector [n] (or [..., n] with A's batch dims), giving X of B's form.
 * AG_ERR_VALUE when a matrix of A is singular. */
AG_API ag_tensor *ag_linalg_solve(ag_tensor *a, ag_tensor *b);
/* A⁻¹ of each square matrix, as torch.linalg.inv.  AG_ERR_VALUE when singular. */
AG_API ag_tensor *ag_linalg_inv(ag_tensor *a);
/* det(A) [...] of each square matrix, as torch.linalg.det (0 for a singular one,
 * whose gradient is the cofactor matrix, through the SVD). */
AG_API ag_tensor *ag_linalg_det(ag_tensor *a);
/* sign(det A) and log|det A| [...], as torch.linalg.slogdet: a singular matrix gives
 * sign 0 and -inf (its backward then fails with AG_ERR_VALUE).  Both results are
 * set (owned like op results) and AG_OK returned, or both NULL and the error's
 * status.  Only logabsdet is differentiable. */
AG_API ag_status ag_linalg_slogdet(ag_tensor *a, ag_tensor **sign, ag_tensor **logabsdet);
/* The Cholesky factor of each symmetric positive-definite matrix, as
 * torch.linalg.cholesky(A, upper): lower L with A = L·Lᵀ, or upper U = Lᵀ.  Reads
 * A's lower triangle only.  AG_ERR_VALUE naming the batch element and the order of
 * the leading minor when a matrix is not positive-definite. */
AG_API ag_tensor *ag_linalg_cholesky(ag_tensor *a, bool upper);
/* X with (L·Lᵀ)·X = B (or (Uᵀ·U)·X = B when upper), as torch.cholesky_solve(B, L,
 * upper): B [..., n, k], L [..., n, n] a Cholesky factor (its other triangle is not
 * read), batch dims broadcast.  AG_ERR_VALUE when L has a zero on its diagonal. */
AG_API ag_tensor *ag_cholesky_solve(ag_tensor *b, ag_tensor *l, bool upper);
/* Eigenvalues (ascending) [..., n] and orthonormal eigenvectors (columns)
 * [..., n, n] of each symmetric matrix, as torch.linalg.eigh(A, UPLO): uplo "L" or
 * "U" (NULL for "L") names the triangle read.  Both results are set and AG_OK
 * returned, or both NULL and the error's status.  As in PyTorch, the eigenvectors'
 * gradient is defined only for distinct eigenvalues: a backward through them with
 * a repeated eigenvalue fails with AG_ERR_VALUE instead of giving inf or NaN;
 * either result may be left unused. */
AG_API ag_status ag_linalg_eigh(ag_tensor *a, const char *uplo, ag_tensor **eigenvalues, ag_tensor **eigenvectors);
/* The eigenvalues of ag_linalg_eigh alone, as torch.linalg.eigvalsh: differentiable
 * for repeated eigenvalues too. */
AG_API ag_tensor *ag_linalg_eigvalsh(ag_tensor *a, const char *uplo);

#ifdef __cplusplus
}
#endif

#endif

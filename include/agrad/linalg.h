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
/* X with A·X = B (left) or X·A = B (left false) for triangular A, as
 * torch.linalg.solve_triangular(A, B, upper=, left=, unitriangular=): A [..., n, n],
 * of which only the upper (upper) or lower triangle is read, its diagonal taken as
 * ones when unitriangular; B a matrix [..., n, k] ([..., k, n] when left is false),
 * batch dims broadcast.  AG_ERR_VALUE when a diagonal element read is zero.  A's
 * gradient lies in the triangle read. */
AG_API ag_tensor *ag_linalg_solve_triangular(ag_tensor *a, ag_tensor *b, bool upper, bool left, bool unitriangular);
/* torch.linalg.solve(A, B, left): left true is ag_linalg_solve; left false solves X·A = B
 * for a matrix B [..., k, n] (a vector B fails with AG_ERR_SHAPE, as in PyTorch 1.13), as
 * solve(Aᵀ, Bᵀ)ᵀ: differentiable through it. */
AG_API ag_tensor *ag_linalg_solve_ex(ag_tensor *a, ag_tensor *b, bool left);
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

/* The QR decomposition, as torch.linalg.qr(A, mode): mode NULL or "reduced" gives Q
 * [..., m, k] with orthonormal columns and upper-triangular R [..., k, n], k = min(m, n);
 * "complete" gives an orthogonal Q [..., m, m] and R [..., m, n] (zero below row k);
 * "r" gives R and an empty Q of shape [0]; another mode is AG_ERR_ARG.  LAPACK's signs
 * (R's diagonal may be negative, as in PyTorch).  Both results set and AG_OK, or both
 * NULL and the error's status.  The backward (and a tangent) fails with AG_ERR_VALUE
 * for a rank-deficient matrix (a zero on R's diagonal), in mode "r", and in mode
 * "complete" of a matrix with more rows than columns (as PyTorch). */
AG_API ag_status ag_linalg_qr(ag_tensor *a, const char *mode, ag_tensor **q, ag_tensor **r);
/* The singular value decomposition A = U·diag(S)·Vh, as torch.linalg.svd(A,
 * full_matrices): U [..., m, k], S [..., k] (descending), Vh [..., k, n], k = min(m,
 * n); with full_matrices, U [..., m, m] and Vh [..., n, n], orthogonal, whose last
 * m - k columns (n - k rows) get no gradient and a zero tangent (PyTorch's definition).
 * The three results set and AG_OK, or all NULL and the error's status.  As PyTorch,
 * the singular vectors' gradient is not defined for repeated singular values (or a
 * zero one, for the part outside the square): a backward through them fails there
 * with AG_ERR_VALUE; the singular values' gradient is always defined. */
AG_API ag_status ag_linalg_svd(ag_tensor *a, bool full_matrices, ag_tensor **u, ag_tensor **s, ag_tensor **vh);
/* The singular values [..., k] (descending), as torch.linalg.svdvals. */
AG_API ag_tensor *ag_linalg_svdvals(ag_tensor *a);
/* The Moore-Penrose pseudo-inverse [..., n, m], as torch.linalg.pinv(A, atol=, rtol=):
 * singular values at most max(atol, rtol·σmax) count as zero; rtol < 0 means
 * PyTorch's default (eps·max(m, n) when atol <= 0, else 0).  NaN tolerances are
 * AG_ERR_ARG. */
AG_API ag_tensor *ag_linalg_pinv(ag_tensor *a, double atol, double rtol);
/* The least-squares solution X [..., n, k] of A·X ≈ B (A [..., m, n], B [..., m, k],
 * batch dims broadcast), as torch.linalg.lstsq(A, B, rcond).solution: the
 * minimum-norm solution pinv(A, rtol=rcond)·B (rcond < 0: eps·max(m, n)), which is
 * PyTorch's for full-rank A (and its gelsd driver's for any A).  Differentiable in A
 * and B (PyTorch's lstsq adjoint is the same pinv formula). */
AG_API ag_tensor *ag_linalg_lstsq(ag_tensor *a, ag_tensor *b, double rcond);
/* The rank [...] (int64) of each matrix, as torch.linalg.matrix_rank(A, atol=,
 * rtol=, hermitian=): the count of singular values (of |eigenvalues| when hermitian,
 * reading the lower triangle) above max(atol, rtol·σmax), rtol < 0 as in
 * ag_linalg_pinv.  Not differentiable. */
AG_API ag_tensor *ag_linalg_matrix_rank(ag_tensor *a, double atol, double rtol, bool hermitian);

/* Aⁿ of each square matrix, as torch.linalg.matrix_power(A, n): repeated squaring
 * by ag_matmul; n < 0 powers A⁻¹ (AG_ERR_VALUE when singular); n = 0 gives the
 * identity (no gradient reaches A).  Differentiable through matmul and inv. */
AG_API ag_tensor *ag_linalg_matrix_power(ag_tensor *a, int64_t n);
/* The cross product along dim (size 3 after broadcasting a with b), as
 * torch.linalg.cross(a, b, dim=dim). */
AG_API ag_tensor *ag_linalg_cross(ag_tensor *a, ag_tensor *b, int dim);
/* Σ x·y along dim (after broadcasting), as torch.linalg.vecdot(x, y, dim=dim). */
AG_API ag_tensor *ag_linalg_vecdot(ag_tensor *x, ag_tensor *y, int dim);

/* The ord-norm of x over dims (ndims of them; 0 or dims NULL: every dim), as
 * torch.linalg.vector_norm(x, ord, dim, keepdim): (Σ|x|^ord)^(1/ord), max |x| for
 * INFINITY, min |x| for -INFINITY, the count of non-zeros for 0.  The gradient is
 * PyTorch's: 0 where the norm is 0 (ord >= 1) or x is 0 (ord < 1), shared evenly
 * among ties for ±inf.  A NaN ord, or a dim named twice, is AG_ERR_ARG; the ±inf or
 * negative norm of an empty reduction AG_ERR_SHAPE. */
AG_API ag_tensor *ag_linalg_vector_norm(ag_tensor *x, double ord, int ndims, const int *dims, bool keepdim);
/* The ord-norm of each matrix [..., m, n], as torch.linalg.matrix_norm(A, ord,
 * keepdim=keepdim): ord "fro" (NULL), "nuc" (Σσ), "2" / "-2" (largest / smallest σ),
 * "1" / "-1" (largest / smallest column sum of |A|), "inf" / "-inf" (row sums).
 * Built from vector_norm, svdvals and max/min along a dim (whose gradient goes to
 * the first extreme, where PyTorch's amax splits it among ties). */
AG_API ag_tensor *ag_linalg_matrix_norm(ag_tensor *a, const char *ord, bool keepdim);

#ifdef __cplusplus
}
#endif

#endif

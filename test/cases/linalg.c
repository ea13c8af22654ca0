/*
 * linalg.c - the test rows of the linear algebra ops (ops/linalg.c).
 *
 * Inputs are drawn from [-2, 2]; each call first makes them the matrices the op
 * is defined and well conditioned on, through differentiable agrad ops, so the
 * gradient flows back to the drawn inputs: A + 2n·I (strictly diagonally
 * dominant: invertible, condition number small) for solve, inv, det and
 * slogdet; A·Aᵀ + n·I (symmetric positive-definite) for cholesky; A + Aᵀ
 * (symmetric, distinct eigenvalues almost surely) for eigh.  The cases cover a
 * batch, broadcast batch dims, 1x1 matrices and an empty batch.
 */
#include "test/cases/op_cases.h"

/* Intermediates of the calls are dropped as they are used (ag__discard: released
 * now when no scope is open, else left to the scope), so that a call run without a
 * scope (test_no_scope) leaves only its result behind.  t is returned. */
static ag_tensor *drop(ag_tensor *t, ag_tensor *intermediate) {
    ag__discard(intermediate);
    return t;
}

/* a + c·I over a's batch. */
static ag_tensor *plus_identity(ag_tensor *a, double c) {
    ag_tensor *e = ag_eye(a->shape[a->ndim - 1], a->dtype);
    ag_tensor *ce = e ? drop(ag_mul_scalar(e, c), e) : NULL;
    return ce ? drop(ag_add(a, ce), ce) : NULL;
}

/* a + 2n·I: strictly diagonally dominant for entries in [-2, 2]. */
static ag_tensor *invertible(ag_tensor *a) { return plus_identity(a, 2.0 * (double)a->shape[a->ndim - 1]); }

/* a·aᵀ + n·I: symmetric positive-definite. */
static ag_tensor *spd(ag_tensor *a) {
    ag_tensor *at = ag_transpose(a, -1, -2);
    ag_tensor *aat = at ? drop(ag_matmul(a, at), at) : NULL;
    return aat ? drop(plus_identity(aat, (double)a->shape[a->ndim - 1]), aat) : NULL;
}

/* a + aᵀ. */
static ag_tensor *symmetric(ag_tensor *a) {
    ag_tensor *at = ag_transpose(a, -1, -2);
    return at ? drop(ag_add(a, at), at) : NULL;
}

static ag_tensor *call_solve(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    ag_tensor *a = invertible(in[0]);
    return a ? drop(ag_linalg_solve(a, in[1]), a) : NULL;
}

/* A + 2n·I (the op reads one triangle of it) and B, by case: [3, 3] lower; [2, 4, 4]
 * upper; [2, 1, 3, 3] lower unitriangular; [5, 5] upper with left false (X·A = B). */
static ag_tensor *call_solve_triangular(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    ag_tensor *a = invertible(in[0]);
    int64_t size = in[0]->shape[in[0]->ndim - 1];
    bool upper = size == 4 || size == 5, left = size != 5, unit = in[0]->ndim == 4;
    return a ? drop(ag_linalg_solve_triangular(a, in[1], upper, left, unit), a) : NULL;
}

static ag_tensor *call_inv(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    ag_tensor *a = invertible(in[0]);
    return a ? drop(ag_linalg_inv(a), a) : NULL;
}

static ag_tensor *call_det(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    ag_tensor *a = invertible(in[0]);
    return a ? drop(ag_linalg_det(a), a) : NULL;
}

/* log|det| + sign, so that the float32 check sees the sign too (elementwise ops only:
 * the second-order checks differentiate every op of the call through its backward_graph). */
static ag_tensor *call_slogdet(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    ag_tensor *a = invertible(in[0]), *s = NULL, *l = NULL;
    ag_status st = a ? ag_linalg_slogdet(a, &s, &l) : AG_ERR_NOMEM;
    ag__discard(a);
    if (st) return NULL;
    return drop(drop(ag_add(l, s), s), l);
}

/* Upper when the row's arg[0] is set. */
static ag_tensor *call_cholesky(ag_tensor *const *in, int n, void *ctx) {
    (void)n;
    const ag_op_test *row = ctx;
    ag_tensor *a = spd(in[0]);
    return a ? drop(ag_linalg_cholesky(a, row->arg[0] != 0), a) : NULL;
}

/* B, then the factor of in[1]·in[1]ᵀ + n·I: upper in the case of batch 3, else lower. */
static ag_tensor *call_cholesky_solve(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    bool upper = in[1]->ndim > 2 && in[1]->shape[0] == 3;
    ag_tensor *a = spd(in[1]), *f = a ? drop(ag_linalg_cholesky(a, upper), a) : NULL;
    return f ? drop(ag_cholesky_solve(in[0], f, upper), f) : NULL;
}

/* V∘V·diag(λ) + V∘V: the square removes the eigenvectors' arbitrary signs. */
static ag_tensor *call_eigh(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    ag_tensor *a = symmetric(in[0]), *l = NULL, *v = NULL;
    ag_status st = a ? ag_linalg_eigh(a, NULL, &l, &v) : AG_ERR_NOMEM;
    ag__discard(a);
    if (st) return NULL;
    ag_tensor *row = drop(ag_unsqueeze(l, -2), l), *vv = drop(ag_mul(v, v), v);
    ag_tensor *scaled = row && vv ? ag_mul(vv, row) : NULL, *y = scaled ? ag_add(scaled, vv) : NULL;
    return drop(drop(drop(y, row), vv), scaled);
}

/* The upper triangle when the row's arg[0] is set. */
static ag_tensor *call_eigvalsh(ag_tensor *const *in, int n, void *ctx) {
    (void)n;
    const ag_op_test *row = ctx;
    ag_tensor *a = symmetric(in[0]);
    return a ? drop(ag_linalg_eigvalsh(a, row->arg[0] != 0 ? "U" : "L"), a) : NULL;
}

/* a + c·I with I the [m, n] identity (ones on the main diagonal): well conditioned. */
static ag_tensor *plus_rect_identity(ag_tensor *a) {
    int64_t m = a->shape[a->ndim - 2], n = a->shape[a->ndim - 1], big = m > n ? m : n;
    ag_tensor *e = ag_eye(big, a->dtype), *rows = e ? drop(ag_narrow(e, 0, 0, m), e) : NULL;
    ag_tensor *i = rows ? drop(ag_narrow(rows, 1, 0, n), rows) : NULL;
    ag_tensor *ci = i ? drop(ag_mul_scalar(i, 2.0 * (double)big), i) : NULL;
    return ci ? drop(ag_add(a, ci), ci) : NULL;
}

/* Q·(R∘R): a function of both results (through products, not cat: the second-order
 * checks differentiate every op of the call through its backward_graph). */
static ag_tensor *call_qr(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    ag_tensor *a = plus_rect_identity(in[0]), *q = NULL, *r = NULL;
    ag_status st = a ? ag_linalg_qr(a, NULL, &q, &r) : AG_ERR_NOMEM;
    ag__discard(a);
    if (st) return NULL;
    ag_tensor *rr = drop(ag_mul(r, r), r);
    return drop(drop(rr ? ag_matmul(q, rr) : NULL, q), rr);
}

/* (U∘U)·diag(S)·(Vh∘Vh): the squares remove the joint sign of each pair of singular
 * vectors.  Random inputs: their singular values are apart. */
static ag_tensor *call_svd(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    ag_tensor *u, *s, *vh;
    if (ag_linalg_svd(in[0], false, &u, &s, &vh)) return NULL;
    ag_tensor *uu = drop(ag_mul(u, u), u), *vv = drop(ag_mul(vh, vh), vh), *row = drop(ag_unsqueeze(s, -2), s);
    ag_tensor *us = uu && row ? ag_mul(uu, row) : NULL, *y = us && vv ? ag_matmul(us, vv) : NULL;
    return drop(drop(drop(drop(y, uu), vv), row), us);
}

static ag_tensor *call_pinv(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    ag_tensor *a = plus_rect_identity(in[0]);
    return a ? drop(ag_linalg_pinv(a, 0, -1), a) : NULL;
}

/* The ord and dims by case: [3, 4] the 2-norm of everything; [2, 3, 4] the 3-norm over
 * dims 0 and 2, kept; [5] the inf-norm; [4, 2] the 0.5-norm over dim -1 of x + 1/4
 * (the inputs hold an exact 0, where |x|^0.5 has no second derivative; the fixture
 * vector_norm_0.5_with_zero of test_linalg checks the first-order gradient there). */
static ag_tensor *call_vector_norm(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    ag_tensor *x = in[0];
    switch (x->shape[0]) {
    case 3: return ag_linalg_vector_norm(x, 2, 0, NULL, false);
    case 2: return ag_linalg_vector_norm(x, 3, 2, (const int[]){0, 2}, true);
    case 5: return ag_linalg_vector_norm(x, INFINITY, 0, NULL, false);
    default: {
        ag_tensor *shifted = ag_add_scalar(x, 0.25);
        return shifted ? drop(ag_linalg_vector_norm(shifted, 0.5, 1, (const int[]){-1}, false), shifted) : NULL;
    }
    }
}

#define RECT_CASES                                                                                      \
    {{1, {AG_DIMS(4, 3)}}, {1, {AG_DIMS(3, 5)}}, {1, {AG_DIMS(2, 3, 3)}}, {1, {AG_DIMS(1, 1)}}}

#define SQUARE_CASES                                                                                    \
    {{1, {AG_DIMS(3, 3)}}, {1, {AG_DIMS(2, 4, 4)}}, {1, {AG_DIMS(1, 1)}}, {1, {AG_DIMS(0, 2, 2)}}}

const ag_op_test ag_test_linalg_cases[] = {
    {.name = "linalg_solve", .call = call_solve, .domain = AG_DOMAIN_ANY,
     .cases = {{2, {AG_DIMS(3, 3), AG_DIMS(3, 2)}},
               {2, {AG_DIMS(2, 4, 4), AG_DIMS(4, 1)}},
               {2, {AG_DIMS(2, 1, 3, 3), AG_DIMS(3, 3, 2)}},
               {2, {AG_DIMS(5, 5), AG_DIMS(5)}}}},
    {.name = "linalg_solve_triangular", .call = call_solve_triangular, .domain = AG_DOMAIN_ANY,
     .cases = {{2, {AG_DIMS(3, 3), AG_DIMS(3, 2)}},
               {2, {AG_DIMS(2, 4, 4), AG_DIMS(4, 1)}},
               {2, {AG_DIMS(2, 1, 3, 3), AG_DIMS(3, 3, 2)}},
               {2, {AG_DIMS(5, 5), AG_DIMS(2, 5)}}}},
    {.name = "linalg_inv", .call = call_inv, .domain = AG_DOMAIN_ANY, .cases = SQUARE_CASES},
    {.name = "linalg_det", .call = call_det, .domain = AG_DOMAIN_ANY, .cases = SQUARE_CASES},
    {.name = "linalg_slogdet", .call = call_slogdet, .domain = AG_DOMAIN_ANY, .cases = SQUARE_CASES},
    {.name = "linalg_cholesky", .call = call_cholesky, .domain = AG_DOMAIN_ANY, .cases = SQUARE_CASES},
    {.name = "cholesky_solve", .call = call_cholesky_solve, .domain = AG_DOMAIN_ANY,
     .cases = {{2, {AG_DIMS(3, 2), AG_DIMS(3, 3)}},
               {2, {AG_DIMS(2, 4, 3), AG_DIMS(4, 4)}},
               {2, {AG_DIMS(1, 1), AG_DIMS(1, 1)}},
               {2, {AG_DIMS(3, 3, 1), AG_DIMS(3, 3, 3)}}}},
    {.name = "linalg_eigh", .call = call_eigh, .domain = AG_DOMAIN_ANY, .cases = SQUARE_CASES},
    {.name = "linalg_eigvalsh", .call = call_eigvalsh, .domain = AG_DOMAIN_ANY, .cases = SQUARE_CASES, .arg = {1}},
    {.name = "linalg_qr", .call = call_qr, .domain = AG_DOMAIN_ANY, .cases = RECT_CASES},
    {.name = "linalg_svd", .call = call_svd, .domain = AG_DOMAIN_ANY, .cases = RECT_CASES},
    {.name = "linalg_pinv", .call = call_pinv, .domain = AG_DOMAIN_ANY, .cases = RECT_CASES},
    {.name = "linalg_vector_norm", .call = call_vector_norm, .domain = AG_DOMAIN_DISTINCT,
     .cases = {{1, {AG_DIMS(3, 4)}}, {1, {AG_DIMS(2, 3, 4)}}, {1, {AG_DIMS(5)}}, {1, {AG_DIMS(4, 2)}}}},
    {.name = NULL},
};

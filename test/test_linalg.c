/*
 * The linear algebra functions (agrad/linalg.h) against PyTorch 1.13 on the
 * committed fixture test/fixtures/linalg.txt (scripts/gen_linalg_fixtures.py):
 * values and input gradients of each case, in the case's dtype.  Then what the
 * fixture cannot show: the errors naming the op and the batch element for
 * singular, non-positive-definite and NaN inputs, the refusal of sizes beyond
 * LAPACK's int, repeated eigenvalues (eigvalsh differentiable, the eigenvectors'
 * gradient an error), det and slogdet of a singular matrix.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "agrad/agrad.h"
#include "tap.h"
#include "test/fixture.h"
#include "test/on_valgrind.h"

#define TOL_F64 1e-7
#define TOL_F32 2e-4

/* ---- the fixture file ------------------------------------------------------------------------ */
#define FX_MAX_T 12

typedef struct fx_case {
    char name[96], fn[48], dtype[8], opt[24];
    int nt;
    fixture_tensor t[FX_MAX_T];
} fx_case;

static fx_case *cases;
static int ncases;

/* "name ndim dims... values..." into t. */
static bool parse_tensor(char *s, fixture_tensor *t) {
    int used = 0;
    return sscanf(s, "%31s%n", t->name, &used) == 1 && fixture_parse_shaped(s + used, t);
}

/* One line of linalg.txt into the case c (fixture_read_cases). */
static bool take_line(void *cv, char *line, void *ctx) {
    fx_case *c = cv;
    (void)ctx;
    if (!c) return false;
    if (strncmp(line, "case ", 5) == 0)
        return sscanf(line + 5, "%95s %47s %7s %23s", c->name, c->fn, c->dtype, c->opt) == 4;
    if (strncmp(line, "tensor ", 7) == 0 && c->nt < FX_MAX_T) return parse_tensor(line + 7, &c->t[c->nt++]);
    return strcmp(line, "end") == 0;
}

static void free_fixtures(void) {
    for (int i = 0; i < ncases; i++)
        for (int k = 0; k < cases[i].nt; k++) free(cases[i].t[k].v);
    free(cases);
}

/* The tensor named prefix<k> of c; NULL if none. */
static const fixture_tensor *fx_get(const fx_case *c, const char *prefix, int k) {
    char name[16];
    snprintf(name, sizeof name, "%s%d", prefix, k);
    for (int i = 0; i < c->nt; i++)
        if (strcmp(c->t[i].name, name) == 0) return &c->t[i];
    return NULL;
}

/* The largest |got - want| / max(1, |want|); INFINITY on a shape or count mismatch. */
static double compare(const ag_tensor *got, const fixture_tensor *want) {
    if (!got || ag_ndim(got) != want->ndim || ag_numel(got) != want->n) return INFINITY;
    for (int d = 0; d < want->ndim; d++)
        if (ag_size(got, d) != want->dim[d]) return INFINITY;
    double *v = malloc(sizeof(double) * (size_t)(want->n + 1)), worst = 0;
    ag_copy_to(got, v, want->n, AG_F64);
    for (int64_t k = 0; k < want->n; k++) {
        double e = fabs(v[k] - want->v[k]) / fmax(1, fabs(want->v[k]));
        if (!(e <= worst)) worst = isnan(e) ? INFINITY : e;
    }
    free(v);
    return worst;
}

/* vector_norm with opt "ord:dims:keepdim" (dims "all" or "d,d"). */
static ag_tensor *call_vector_norm(ag_tensor *x, const char *opt) {
    char buf[64];
    snprintf(buf, sizeof buf, "%s", opt);
    char *dims = strchr(buf, ':'), *keep = dims ? strchr(dims + 1, ':') : NULL;
    if (!keep) return NULL;
    *dims++ = '\0', *keep++ = '\0';
    double ord = strcmp(buf, "inf") == 0 ? INFINITY : strcmp(buf, "-inf") == 0 ? -INFINITY : atof(buf);
    int d[AG_MAX_DIMS], nd = 0;
    for (char *p = dims; strcmp(dims, "all") != 0 && *p && nd < AG_MAX_DIMS; p += strcspn(p, ","), p += *p == ',')
        d[nd++] = atoi(p);
    return ag_linalg_vector_norm(x, ord, nd, d, strcmp(keep, "1") == 0);
}

/* Calls c's function on in into out[] (λ and V∘V for eigh; S, U∘U and Vh∘Vh for svd);
 * the number of outputs, 0 on error. */
static int call(const fx_case *c, ag_tensor **in, ag_tensor **out) {
    const char *fn = c->fn;
    if (strcmp(fn, "linalg_solve") == 0) out[0] = ag_linalg_solve(in[0], in[1]);
    else if (strcmp(fn, "linalg_solve_triangular") == 0) /* opt upper:left:unitriangular */
        out[0] = ag_linalg_solve_triangular(in[0], in[1], c->opt[0] == '1', c->opt[2] == '1', c->opt[4] == '1');
    else if (strcmp(fn, "linalg_inv") == 0) out[0] = ag_linalg_inv(in[0]);
    else if (strcmp(fn, "linalg_det") == 0) out[0] = ag_linalg_det(in[0]);
    else if (strcmp(fn, "linalg_cholesky") == 0) out[0] = ag_linalg_cholesky(in[0], strcmp(c->opt, "1") == 0);
    else if (strcmp(fn, "cholesky_solve") == 0) out[0] = ag_cholesky_solve(in[0], in[1], strcmp(c->opt, "1") == 0);
    else if (strcmp(fn, "linalg_eigvalsh") == 0) out[0] = ag_linalg_eigvalsh(in[0], c->opt);
    else if (strcmp(fn, "linalg_svdvals") == 0) out[0] = ag_linalg_svdvals(in[0]);
    else if (strcmp(fn, "linalg_pinv") == 0) out[0] = ag_linalg_pinv(in[0], 0, -1);
    else if (strcmp(fn, "linalg_lstsq") == 0) out[0] = ag_linalg_lstsq(in[0], in[1], -1);
    else if (strcmp(fn, "linalg_matrix_rank") == 0) out[0] = ag_linalg_matrix_rank(in[0], 0, -1, strcmp(c->opt, "1") == 0);
    else if (strcmp(fn, "linalg_matrix_power") == 0) out[0] = ag_linalg_matrix_power(in[0], atoi(c->opt));
    else if (strcmp(fn, "linalg_cross") == 0) out[0] = ag_linalg_cross(in[0], in[1], atoi(c->opt));
    else if (strcmp(fn, "linalg_vecdot") == 0) out[0] = ag_linalg_vecdot(in[0], in[1], atoi(c->opt));
    else if (strcmp(fn, "linalg_vector_norm") == 0) out[0] = call_vector_norm(in[0], c->opt);
    else if (strcmp(fn, "linalg_matrix_norm") == 0) {
        char ord[8];
        snprintf(ord, sizeof ord, "%.*s", (int)strcspn(c->opt, ":"), c->opt);
        out[0] = ag_linalg_matrix_norm(in[0], ord, strstr(c->opt, ":1") != NULL);
    } else if (strcmp(fn, "linalg_qr") == 0)
        return ag_linalg_qr(in[0], strcmp(c->opt, "-") == 0 ? NULL : c->opt, &out[0], &out[1]) ? 0 : 2;
    else if (strcmp(fn, "linalg_svd") == 0) {
        ag_tensor *u, *vh;
        if (ag_linalg_svd(in[0], strcmp(c->opt, "1") == 0, &u, &out[0], &vh)) return 0;
        out[1] = ag_mul(u, u);
        out[2] = ag_mul(vh, vh);
        return out[2] ? 3 : 0;
    }
    else if (strcmp(fn, "linalg_slogdet") == 0) return ag_linalg_slogdet(in[0], &out[0], &out[1]) ? 0 : 2;
    else if (strcmp(fn, "linalg_eigh") == 0) {
        ag_tensor *v;
        if (ag_linalg_eigh(in[0], c->opt, &out[0], &v)) return 0;
        out[1] = ag_mul(v, v);
        return out[1] ? 2 : 0;
    } else
        return 0;
    return out[0] ? 1 : 0;
}

static bool failed_with(ag_status st, const char *text);

/* True for the cases PyTorch has no derivative of (their fixture gradients are zeros):
 * qr in mode r, and complete Q of a tall matrix. */
static bool no_derivative(const fx_case *c, ag_tensor *a) {
    if (strcmp(c->fn, "linalg_qr") != 0) return false;
    return strcmp(c->opt, "r") == 0 || (strcmp(c->opt, "complete") == 0 && ag_size(a, -2) > ag_size(a, -1));
}

static void check_case(const fx_case *c) {
    ag_dtype dtype = strcmp(c->dtype, "f32") == 0 ? AG_F32 : AG_F64;
    double tol = dtype == AG_F32 ? TOL_F32 : TOL_F64;
    ag_scope_begin();
    ag_tensor *in[4] = {NULL}, *out[3] = {NULL};
    int nin = 0;
    for (const fixture_tensor *t; nin < 4 && (t = fx_get(c, "in", nin)); nin++)
        in[nin] = ag_requires_grad_(fixture_tensor_make(t, dtype), true);
    int nout = call(c, in, out);
    ok(nout > 0, "%s: %s runs%s%s", c->name, c->fn, nout ? "" : ": ", nout ? "" : ag_last_error());
    ag_tensor *loss = NULL;
    for (int k = 0; k < nout; k++) {
        double e = compare(out[k], fx_get(c, "out", k));
        ok(e <= tol, "%s: output %d matches PyTorch (worst relative error %.2g)", c->name, k, e);
        if (ag_dtype_of(out[k]) == AG_I64) continue; /* matrix_rank: not differentiable */
        ag_tensor *term = ag_sum(ag_mul(out[k], fixture_tensor_make(fx_get(c, "seed", k), dtype)));
        loss = loss ? ag_add(loss, term) : term;
    }
    if (loss && no_derivative(c, in[0])) {
        ok(ag_backward(loss) == AG_ERR_VALUE && failed_with(AG_ERR_VALUE, "as in PyTorch"),
           "%s: no derivative, as PyTorch: %s", c->name, ag_last_error());
    } else if (loss && !ag_requires_grad(loss)) { /* matrix_power(A, 0): the gradient is zero */
        for (int k = 0; k < nin; k++) {
            double e = compare(ag_zeros_like(in[k]), fx_get(c, "grad", k));
            ok(e == 0, "%s: the gradient of input %d is zero, as PyTorch's", c->name, k);
        }
    } else if (loss) {
        ag_status st = ag_backward(loss);
        ok(st == AG_OK, "%s: backward%s%s", c->name, st ? ": " : "", st ? ag_last_error() : "");
        for (int k = 0; k < nin; k++) {
            const fixture_tensor *want = fx_get(c, "grad", k);
            ag_tensor *g = ag_grad(in[k]);
            double e = want->n == 0 && !g ? 0 : compare(g ? g : ag_zeros_like(in[k]), want);
            ok(e <= tol * 10, "%s: gradient of input %d matches PyTorch (worst relative error %.2g)", c->name, k, e);
        }
    }
    ag_scope_end();
}

/* The functions built from other ops (no registry row, so test_ops_gradcheck does not
 * see them) are gradchecked here on their float64 fixture inputs. */
static const fx_case *gc_case;
static ag_tensor *gc_call(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    ag_tensor *out[3] = {NULL};
    return call(gc_case, (ag_tensor **)in, out) == 1 ? out[0] : NULL;
}

static void check_composite_gradient(const fx_case *c) {
    static const char *const composites[] = {"linalg_matrix_power", "linalg_cross", "linalg_vecdot", "linalg_lstsq",
                                             "linalg_svdvals", "linalg_matrix_norm"};
    bool composite = false;
    for (size_t i = 0; i < sizeof composites / sizeof composites[0]; i++) composite |= strcmp(c->fn, composites[i]) == 0;
    if (!composite || strcmp(c->dtype, "f64") != 0) return;
    ag_scope_begin();
    ag_tensor *in[4];
    int nin = 0;
    for (const fixture_tensor *t; nin < 4 && (t = fx_get(c, "in", nin)); nin++) in[nin] = ag_requires_grad_(fixture_tensor_make(t, AG_F64), true);
    gc_case = c;
    ag_gradcheck_report rep;
    ag_status st = ag_gradcheck(gc_call, NULL, in, nin, NULL, &rep);
    ok(st == AG_OK, "%s: gradcheck (%lld entries)%s%s", c->name, (long long)rep.checked, st ? ": " : "", st ? ag_last_error() : "");
    ag_scope_end();
}

static void test_fixtures(void) {
    bool loaded = (cases = fixture_read_cases(FIXTURES "/linalg.txt", sizeof *cases, take_line, NULL, &ncases));
    ok(loaded, "fixtures loaded (%d cases)", ncases);
    for (int i = 0; loaded && i < ncases; i++) check_case(&cases[i]);
    for (int i = 0; loaded && i < ncases; i++) check_composite_gradient(&cases[i]);
    free_fixtures();
}

/* ---- errors ------------------------------------------------------------------------------------ */
/* True if the last error has status st and contains text. */
static bool failed_with(ag_status st, const char *text) {
    return ag_last_status() == st && strstr(ag_last_error(), text) != NULL;
}

static ag_tensor *mat(int b, int n, const double *v) { return ag_from_data(v, AG_SHAPE(b, n, n), AG_F64); }

static void test_errors(void) {
    ag_scope_begin();
    /* batch element 1 is singular (rank 1) */
    double sing[8] = {2, 0, 0, 3, 1, 2, 2, 4};
    ag_tensor *b = ag_ones(AG_SHAPE(2, 2, 1), AG_F64);
    ok(!ag_linalg_solve(mat(2, 2, sing), b) && failed_with(AG_ERR_VALUE, "linalg_solve: batch element 1 is singular (U[2, 2]"),
       "solve of a singular batch element: %s", ag_last_error());
    ok(!ag_linalg_inv(mat(2, 2, sing)) && failed_with(AG_ERR_VALUE, "linalg_inv: batch element 1 is singular"),
       "inv of a singular batch element: %s", ag_last_error());
    ag_tensor *f32 = ag_to_dtype(mat(2, 2, sing), AG_F32);
    ok(!ag_linalg_inv(f32) && failed_with(AG_ERR_VALUE, "linalg_inv: batch element 1 is singular"),
       "float32 inv of a singular batch element: %s", ag_last_error());

    /* batch element 3 of 4 is not positive-definite: its leading minor of order 2 is -3 */
    double pd[16] = {4, 0, 0, 4, 2, 1, 1, 2, 1, 0, 0, 1, 1, 2, 2, 1};
    ok(!ag_linalg_cholesky(mat(4, 2, pd), false) &&
           failed_with(AG_ERR_VALUE, "linalg_cholesky: batch element 3 is not positive-definite (leading minor of order 2)"),
       "cholesky names the batch element and the minor: %s", ag_last_error());

    double nan[4] = {1, NAN, 0, 1};
    ok(!ag_linalg_solve(mat(1, 2, nan), ag_ones(AG_SHAPE(1, 2, 1), AG_F64)) &&
           failed_with(AG_ERR_VALUE, "linalg_solve: batch element 0 contains NaN"),
       "a NaN is an error, not a NaN result: %s", ag_last_error());
    ok(!ag_linalg_eigvalsh(mat(1, 2, nan), "U") && failed_with(AG_ERR_VALUE, "batch element 0 contains NaN"),
       "eigvalsh of a NaN: %s", ag_last_error());

    double inf[4] = {1, 0, INFINITY, 1};
    ok(!ag_linalg_det(mat(1, 2, inf)) && failed_with(AG_ERR_VALUE, "linalg_det: batch element 0 contains an infinity"),
       "an infinity is an error too (LAPACK would make NaN of it): %s", ag_last_error());
    ok(!ag_linalg_svdvals(ag_to_dtype(mat(1, 2, inf), AG_F32)) && failed_with(AG_ERR_VALUE, "contains an infinity"),
       "svdvals of an infinity (float32): %s", ag_last_error());
    double zero_diag[4] = {1, 0, 5, 0};
    ok(!ag_cholesky_solve(ag_ones(AG_SHAPE(2, 1), AG_F64), ag_from_data(zero_diag, AG_SHAPE(2, 2), AG_F64), false) &&
           failed_with(AG_ERR_VALUE, "the Cholesky factor has a zero on its diagonal (row 2)"),
       "cholesky_solve with a zero on the factor's diagonal: %s", ag_last_error());

    /* shapes */
    ok(!ag_linalg_inv(ag_ones(AG_SHAPE(2, 3), AG_F64)) && failed_with(AG_ERR_SHAPE, "expects square matrices"),
       "inv of a non-square matrix: %s", ag_last_error());
    ok(!ag_linalg_det(ag_ones(AG_SHAPE(3), AG_F64)) && failed_with(AG_ERR_SHAPE, "a batch of matrices"),
       "det of a vector: %s", ag_last_error());
    ok(!ag_linalg_solve(ag_ones(AG_SHAPE(2, 3, 3), AG_F64), ag_ones(AG_SHAPE(4, 3, 1), AG_F64)) &&
           failed_with(AG_ERR_SHAPE, "cannot be broadcast"),
       "solve with batch dims that do not broadcast: %s", ag_last_error());
    ok(!ag_linalg_eigvalsh(ag_eye(2, AG_F64), "X") && failed_with(AG_ERR_ARG, "UPLO must be"), "eigvalsh UPLO: %s",
       ag_last_error());
    ok(!ag_linalg_inv(ag_ones(AG_SHAPE(2, 2), AG_I64)) && ag_last_status() == AG_ERR_DTYPE, "inv of int64: %s",
       ag_last_error());

    /* 50000 x 50000 (2.5e9 elements, an expanded view of one) is beyond lapack_int: refused before any allocation */
    ag_tensor *huge = ag_expand(ag_ones(AG_SHAPE(1, 1), AG_F64), AG_SHAPE(50000, 50000));
    ok(huge && !ag_linalg_det(huge) && failed_with(AG_ERR_SHAPE, "linalg_det: a 50000 x 50000 matrix is beyond LAPACK's int"),
       "a matrix beyond LAPACK's int sizes: %s", ag_last_error());
    ok(!ag_linalg_cholesky(huge, false) && failed_with(AG_ERR_SHAPE, "beyond LAPACK's int sizes"),
       "cholesky refuses it too: %s", ag_last_error());
    ag_tensor *s, *l, *v;
    ok(ag_linalg_slogdet(huge, &s, &l) == AG_ERR_SHAPE && !s && !l, "slogdet refuses it, both results NULL");
    ok(ag_linalg_eigh(huge, NULL, &l, &v) == AG_ERR_SHAPE && !l && !v, "eigh refuses it, both results NULL");
    ag_scope_end();
}

/* ---- singular and repeated ---------------------------------------------------------------------- */
static void test_singular(void) {
    ag_scope_begin();
    /* det of [[1, 2], [2, 4]] is 0; its gradient is the cofactor matrix [[4, -2], [-2, 1]] */
    double v[4] = {1, 2, 2, 4};
    ag_tensor *a = ag_requires_grad_(ag_from_data(v, AG_SHAPE(2, 2), AG_F64), true);
    ag_tensor *d = ag_linalg_det(a);
    ok(d && ag_item(d) == 0, "det of a singular matrix is 0");
    ok(ag_backward(d) == AG_OK, "det's backward at a singular matrix");
    double want[4] = {4, -2, -2, 1}, worst = 0;
    for (int k = 0; k < 4; k++) worst = fmax(worst, fabs(ag_get(ag_grad(a), (int64_t[]){k / 2, k % 2}) - want[k]));
    ok(worst < 1e-12, "its gradient is the cofactor matrix (error %.2g)", worst);

    ag_tensor *s, *l;
    ag_tensor *b = ag_requires_grad_(ag_from_data(v, AG_SHAPE(2, 2), AG_F64), true);
    ok(ag_linalg_slogdet(b, &s, &l) == AG_OK && ag_item(s) == 0 && isinf(ag_item(l)) && ag_item(l) < 0,
       "slogdet of a singular matrix: sign 0, log|det| -inf (as PyTorch)");
    ok(ag_backward(l) == AG_ERR_VALUE && failed_with(AG_ERR_VALUE, "linalg_slogdet: backward: batch element 0 is singular"),
       "its backward is an error, not NaN: %s", ag_last_error());

    /* repeated eigenvalues: diag(2, 2, 5) */
    double r[9] = {2, 0, 0, 0, 2, 0, 0, 0, 5};
    ag_tensor *e = ag_requires_grad_(ag_from_data(r, AG_SHAPE(3, 3), AG_F64), true);
    ag_tensor *lam = ag_linalg_eigvalsh(e, NULL);
    ok(lam && ag_backward(ag_sum(ag_mul(lam, lam))) == AG_OK, "eigvalsh is differentiable at a repeated eigenvalue");
    /* d Σλ² / dA = 2A */
    worst = 0;
    for (int k = 0; k < 9; k++) worst = fmax(worst, fabs(ag_get(ag_grad(e), (int64_t[]){k / 3, k % 3}) - 2 * r[k]));
    ok(worst < 1e-12, "its gradient is 2A (error %.2g)", worst);

    ag_tensor *ev, *vec;
    ag_tensor *e2 = ag_requires_grad_(ag_from_data(r, AG_SHAPE(3, 3), AG_F64), true);
    ok(ag_linalg_eigh(e2, "L", &ev, &vec) == AG_OK, "eigh at a repeated eigenvalue");
    ag_tensor *w = ag_arange(0, 9, 1, AG_F64);
    ag_status st = ag_backward(ag_sum(ag_mul(vec, ag_reshape(w, AG_SHAPE(3, 3)))));
    ok(st == AG_ERR_VALUE && failed_with(AG_ERR_VALUE, "linalg_eigh: backward: batch element 0 has the repeated eigenvalue 2"),
       "a gradient through its eigenvectors is an error: %s", ag_last_error());
    ag_tensor *e3 = ag_requires_grad_(ag_from_data(r, AG_SHAPE(3, 3), AG_F64), true);
    ok(ag_linalg_eigh(e3, "L", &ev, &vec) == AG_OK && ag_backward(ag_sum(ev)) == AG_OK,
       "through its eigenvalues alone it is defined");
    ok(!ag_linalg_cross(ag_ones(AG_SHAPE(2, 3), AG_F64), ag_ones(AG_SHAPE(2, 3), AG_F64), 0) &&
           failed_with(AG_ERR_SHAPE, "dim 0 must have size 3 (has 2)"),
       "cross along a dim of size 2: %s", ag_last_error());
    double sing[8] = {2, 0, 0, 3, 1, 2, 2, 4};
    ok(!ag_linalg_matrix_power(mat(2, 2, sing), -1) && failed_with(AG_ERR_VALUE, "linalg_inv: batch element 1 is singular"),
       "matrix_power of a singular matrix to -1: %s", ag_last_error());
    ag_scope_end();
}

/* ---- qr, svd, pinv: what the fixture cannot show ------------------------------------------------- */
static void test_decompositions(void) {
    ag_scope_begin();
    ag_tensor *q, *r, *u, *s, *vh;
    ag_tensor *a = ag_ones(AG_SHAPE(3, 2), AG_F64);
    ok(ag_linalg_qr(a, "economic", &q, &r) == AG_ERR_ARG && !q && !r &&
           failed_with(AG_ERR_ARG, "mode \"economic\" is not one of \"reduced\", \"complete\", \"r\""),
       "qr: an unknown mode is refused: %s", ag_last_error());
    ok(!ag_linalg_pinv(a, NAN, -1) && failed_with(AG_ERR_ARG, "must not be NaN"), "pinv: a NaN tolerance: %s", ag_last_error());

    /* QR of a rank-deficient matrix: the forward is fine, the backward is an error */
    double rd[6] = {1, 0, 2, 0, 3, 0}; /* a zero column: R[2, 2] is exactly 0 */
    ag_tensor *x = ag_requires_grad_(ag_from_data(rd, AG_SHAPE(3, 2), AG_F64), true);
    ok(ag_linalg_qr(x, NULL, &q, &r) == AG_OK, "qr of a rank-deficient matrix");
    ok(ag_backward(ag_sum(q)) == AG_ERR_VALUE && failed_with(AG_ERR_VALUE, "linalg_qr: backward: batch element 0 is rank-deficient"),
       "its backward is an error: %s", ag_last_error());

    /* the identity has one singular value repeated: S differentiable, U and Vh not */
    ag_tensor *e = ag_requires_grad_(ag_eye(3, AG_F64), true);
    ok(ag_linalg_svd(e, false, &u, &s, &vh) == AG_OK, "svd of the identity");
    ok(ag_backward(ag_sum(s)) == AG_OK, "its singular values are differentiable");
    double worst = 0;
    for (int k = 0; k < 9; k++) worst = fmax(worst, fabs(ag_get(ag_grad(e), (int64_t[]){k / 3, k % 3}) - (k % 4 == 0)));
    ok(worst < 1e-12, "d Σσ / dA = U·Vᵀ = I (error %.2g)", worst);
    ag_tensor *e2 = ag_requires_grad_(ag_eye(3, AG_F64), true);
    ag_linalg_svd(e2, false, &u, &s, &vh);
    ag_tensor *w = ag_reshape(ag_arange(0, 9, 1, AG_F64), AG_SHAPE(3, 3));
    ok(ag_backward(ag_sum(ag_mul(u, w))) == AG_ERR_VALUE && failed_with(AG_ERR_VALUE, "repeated singular value 1"),
       "a gradient through its singular vectors is an error: %s", ag_last_error());

    /* norms: the arguments */
    ag_tensor *m = ag_ones(AG_SHAPE(2, 3), AG_F64);
    ok(!ag_linalg_vector_norm(m, NAN, 0, NULL, false) && failed_with(AG_ERR_ARG, "ord must not be NaN"), "vector_norm NaN ord");
    ok(!ag_linalg_vector_norm(m, 2, 2, (const int[]){1, -1}, false) && failed_with(AG_ERR_ARG, "dim -1 appears twice"),
       "vector_norm with a dim twice: %s", ag_last_error());
    ok(!ag_linalg_vector_norm(m, 2, 1, (const int[]){2}, false) && ag_last_status() == AG_ERR_INDEX, "vector_norm dim 2 of 2: %s",
       ag_last_error());
    ok(!ag_linalg_vector_norm(ag_zeros(AG_SHAPE(2, 0), AG_F64), INFINITY, 1, (const int[]){1}, false) &&
           failed_with(AG_ERR_SHAPE, "empty reduction"),
       "the inf-norm of nothing: %s", ag_last_error());
    ag_tensor *n0 = ag_linalg_vector_norm(ag_zeros(AG_SHAPE(2, 0), AG_F64), 2, 1, (const int[]){1}, true);
    ok(n0 && ag_ndim(n0) == 2 && ag_size(n0, 1) == 1 && ag_get(n0, (int64_t[]){1, 0}) == 0, "the 2-norm of nothing is 0 (keepdim)");
    ok(!ag_linalg_matrix_norm(m, "3", false) && failed_with(AG_ERR_ARG, "ord \"3\" is not one of"), "matrix_norm ord 3: %s",
       ag_last_error());
    ag_tensor *big = ag_full(AG_SHAPE(3), 1e300, AG_F64); /* no overflow: scaled by the largest */
    ok(fabs(ag_item(ag_linalg_vector_norm(big, 2, 0, NULL, false)) / (sqrt(3) * 1e300) - 1) < 1e-15, "the 2-norm of 1e300s");

    /* matrix_rank: the tolerances */
    double v[4] = {1, 0, 0, 1e-3};
    ag_tensor *d = ag_from_data(v, AG_SHAPE(2, 2), AG_F64);
    ok(ag_item(ag_linalg_matrix_rank(d, 0, -1, false)) == 2, "rank 2 with the default tolerance");
    ok(ag_item(ag_linalg_matrix_rank(d, 1e-2, -1, false)) == 1, "rank 1 with atol 1e-2");
    ok(ag_item(ag_linalg_matrix_rank(d, 0, 0.5, true)) == 1, "rank 1 with rtol 0.5 (hermitian)");
    ok(ag_dtype_of(ag_linalg_matrix_rank(d, 0, -1, false)) == AG_I64, "the rank is int64");
    /* pinv with a tolerance that drops the small singular value: [[1, 0], [0, 0]] */
    ag_tensor *p = ag_linalg_pinv(d, 1e-2, -1);
    ok(p && ag_get(p, (int64_t[]){0, 0}) == 1 && ag_get(p, (int64_t[]){1, 1}) == 0, "pinv drops σ <= atol");
    ag_scope_end();
}

/* t^p as ops/linalg.c's pow_norm: products and roots for 2, 3, 4, 0.5, 1.5 and -0.5, pow otherwise. */
static double pow_ref(double t, double p) {
    return p == 2 ? t * t : p == 3 ? t * t * t : p == 4 ? (t * t) * (t * t) : p == 0.5 ? sqrt(t)
         : p == 1.5 ? t * sqrt(t) : p == -0.5 ? 1 / sqrt(t) : pow(t, p);
}

/* The p-norm of one row as ops/linalg.c's scalar loop computed it before its terms went into
 * vectors (session 20): max |v| by fmax, the terms pow_ref(|v/m|, p) added one by one in order,
 * m·(Σ)^(1/p); p < 0 unscaled; 0, inf or NaN where the row is all 0 or holds an inf or a NaN. */
static double norm_ref(const double *v, int64_t n, double p) {
    double m = 0, acc = 0;
    for (int64_t i = 0; i < n; i++) m = fmax(m, fabs(v[i]));
    if (p > 0 && (m == 0 || isinf(m))) {
        for (int64_t i = 0; i < n; i++)
            if (isnan(v[i])) return NAN;
        return m;
    }
    const double s = p > 0 ? m : 1;
    for (int64_t i = 0; i < n; i++) acc += pow_ref(fabs(v[i] / s), p);
    if (p < 0) return pow(acc, 1 / p);
    return m * (p == 2 ? sqrt(acc) : p == 1 ? acc : pow(acc, 1 / p));
}

/* ∂y/∂x of the p-norm y at x (dy = 1) as the scalar loop computed it: 0 where y = 0 (p >= 1) or
 * x = 0, x/y for 2, else sgn(x)·pow_ref(|x|, p - 1)·(1 / y^(p-1)). */
static double norm_grad_ref(double x, double y, double p) {
    if ((y == 0 && p >= 1) || x == 0) return 0;
    if (p == 2) return 1 * x / y;
    return (double)((x > 0) - (x < 0)) * pow_ref(fabs(x), p - 1) * (1 / pow(y, p - 1));
}

/* Whether a and b are the same bits, or both NaN. */
static bool same_bits(double a, double b) { return (isnan(a) && isnan(b)) || memcmp(&a, &b, sizeof a) == 0; }

/* vector_norm's rows, their terms computed in vectors (ops/linalg.c's NORM_KERNELS): the bits of
 * the scalar loop (norm_ref) for p in {0.5, 1.5, -0.5, 2 (float64), 3, 4} and pow's 2.5, float32 rows as
 * they lie (dim -1), float32 read across (dim 0: the float64 copy) and float64, rows of 1 to 1000
 * (the 8 lanes' tails, the 256-term blocks), with zeros, and rows with an inf, a NaN, both, all 0;
 * and their gradients (NORM_GRAD_LOOP's vectors for p - 1 in {-0.5, 0.5, 1.5, 2, 3, 4}). */
static void test_norm_rows(void) {
    ag_scope_begin();
    static const double ps[] = {0.5, 1.5, -0.5, 2, 3, 4, 2.5, 5};
    static const int64_t ns[] = {1, 7, 8, 9, 255, 256, 257, 600, 1000};
    uint64_t seed = 20;
    int bad = 0, checked = 0, gbad = 0;
    int64_t gchecked = 0;
    for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++) {
        const int64_t n = ns[ni], R = 6;
        double *v = malloc(sizeof(double) * (size_t)(R * n));
        for (int64_t i = 0; i < R * n; i++) {
            seed = seed * 6364136223846793005ull + 1442695040888963407ull;
            const double u = (double)(seed >> 11) / 9007199254740992.0;
            v[i] = (float)(i % 5 == 3 ? 0 : (u - 0.5) * 8 * (1 + (double)(i % 3)));
        }
        v[1 * n + n / 2] = INFINITY, v[2 * n + n - 1] = NAN; /* row 1 an inf, row 2 a NaN */
        v[3 * n] = -INFINITY, v[3 * n + n / 3] = NAN;       /* row 3 both (one element: the NaN) */
        for (int64_t i = 0; i < n; i++) v[4 * n + i] = 0;   /* row 4 all 0, row 5 a NaN and zeros */
        for (int64_t i = 0; i < n; i++) v[5 * n + i] = i == n - 1 ? NAN : 0;
        ag_tensor *x64 = ag_from_data(v, AG_SHAPE(R, n), AG_F64), *x32 = ag_to_dtype(x64, AG_F32);
        ag_tensor *xt = ag_contiguous(ag_transpose(x32, 0, 1)); /* [n, R]: the norm over dim 0 */
        for (size_t pi = 0; pi < sizeof ps / sizeof ps[0]; pi++)
            for (int form = 0; form < 3; form++) {
                const double p = ps[pi];
                if (p == 2 && form < 2) continue; /* float32's 2-norm: norm12_into's sums */
                ag_tensor *xin = ag_requires_grad_(ag_detach(form == 0 ? x32 : form == 1 ? xt : x64), true);
                ag_tensor *y = ag_linalg_vector_norm(xin, p, 1, (const int[]){form == 1 ? 0 : -1}, false);
                if (!y || ag_backward(ag_sum(y)) != AG_OK) bad++;
                ag_tensor *gx = ag_grad(xin);
                for (int64_t r = 0; y && r < R; r++) {
                    const double want = norm_ref(v + r * n, n, p), got = ag_get(y, (int64_t[]){r});
                    checked++;
                    if (!same_bits(form < 2 ? (double)(float)want : want, got) && bad++ < 5)
                        diag("n %ld p %g form %d row %ld: %.17g, the scalar loop %.17g", (long)n, p, form, (long)r, got,
                             want);
                    for (int64_t i = 0; gx && i < n; i++) { /* the gradient, y as stored (float32 rounded) */
                        const double gw = norm_grad_ref(v[r * n + i], got, p),
                                     gg = ag_get(gx, form == 1 ? (int64_t[]){i, r} : (int64_t[]){r, i});
                        gchecked++;
                        if (!same_bits(form < 2 ? (double)(float)gw : gw, gg) && gbad++ < 5)
                            diag("n %ld p %g form %d dx[%ld, %ld]: %.17g, the scalar loop %.17g", (long)n, p, form,
                                 (long)r, (long)i, gg, gw);
                    }
                }
                if (!y || !gx) bad++;
            }
        free(v);
    }
    ok(bad == 0 && checked == 9 * (8 * 3 - 2) * 6, "vector_norm rows: the scalar loop's bits (%d of %d differ)", bad, checked);
    ok(gbad == 0 && gchecked == (int64_t)(8 * 3 - 2) * 6 * (1 + 7 + 8 + 9 + 255 + 256 + 257 + 600 + 1000),
       "vector_norm rows' gradients: the scalar loop's bits (%d of %ld differ)", gbad, (long)gchecked);
    ag_scope_end();
}

/* The largest |a - b|. */
static double max_diff(ag_tensor *a, ag_tensor *b) { return ag_item(ag_max(ag_abs(ag_sub(a, b)))); }

/* Qᵀ·Q against the identity. */
static double orthogonality(ag_tensor *q) {
    return max_diff(ag_matmul(ag_transpose(q, -1, -2), q), ag_eye(ag_size(q, -1), AG_F64));
}

/* QR's modes "complete" and "r" and SVD's full_matrices beyond their fixtures: the
 * extra columns are orthonormal, the rest is the reduced decomposition, and the
 * derivatives are PyTorch's (none for complete Q of a tall matrix or in mode "r"; the
 * extra singular vectors get no gradient and a zero tangent). */
static void test_full_modes(void) {
    ag_scope_begin();
    ag_manual_seed(7);
    ag_tensor *tall = ag_requires_grad_(ag_randn(AG_SHAPE(2, 4, 3), AG_F64), true), *q, *r, *q0, *r0;
    ok(ag_linalg_qr(tall, NULL, &q0, &r0) == AG_OK, "qr reduced of [2, 4, 3]");
    ok(ag_linalg_qr(tall, "complete", &q, &r) == AG_OK && ag_size(q, 2) == 4 && ag_size(r, 1) == 4,
       "qr complete: Q [2, 4, 4], R [2, 4, 3]");
    ok(orthogonality(q) < 1e-12 && max_diff(ag_matmul(q, r), tall) < 1e-12, "Q is orthogonal and Q·R = A");
    ok(max_diff(ag_narrow(q, -1, 0, 3), q0) == 0 && max_diff(ag_narrow(r, -2, 0, 3), r0) == 0 &&
           ag_item(ag_max(ag_abs(ag_narrow(r, -2, 3, 1)))) == 0,
       "its first 3 columns and rows are the reduced ones, R's last row is zero");
    ok(ag_backward(ag_sum(r)) == AG_ERR_VALUE && failed_with(AG_ERR_VALUE, "linalg_qr: backward: QR with mode=\"complete\" of a 4 x 3 matrix"),
       "complete of a tall matrix has no gradient, as PyTorch: %s", ag_last_error());
    ag_dual_level_begin();
    ag_tensor *dual = ag_make_dual(ag_detach(tall), ag_ones(AG_SHAPE(2, 4, 3), AG_F64));
    ok(ag_linalg_qr(dual, "complete", &q, &r) != AG_OK || !ag_tangent(q), "nor a tangent: %s", ag_last_error());
    ag_dual_level_end();
    ok(ag_linalg_qr(tall, "r", &q, &r) == AG_OK && ag_ndim(q) == 1 && ag_numel(q) == 0 && max_diff(r, r0) == 0,
       "qr mode r: an empty Q and the reduced R");
    ok(ag_backward(ag_sum(r)) == AG_ERR_VALUE && failed_with(AG_ERR_VALUE, "which is not computed when mode=\"r\""),
       "and no gradient, as PyTorch: %s", ag_last_error());
    ag_tensor *wide = ag_requires_grad_(ag_randn(AG_SHAPE(3, 5), AG_F64), true);
    ok(ag_linalg_qr(wide, "complete", &q, &r) == AG_OK && ag_linalg_qr(wide, NULL, &q0, &r0) == AG_OK &&
           max_diff(q, q0) == 0 && max_diff(r, r0) == 0 && ag_backward(ag_add(ag_sum(q), ag_sum(r))) == AG_OK,
       "complete of a wide matrix is the reduced QR, differentiable");

    ag_tensor *u, *s, *vh, *u0, *s0, *vh0;
    ok(ag_linalg_svd(tall, true, &u, &s, &vh) == AG_OK && ag_size(u, 2) == 4 && ag_size(vh, 1) == 3,
       "svd full_matrices of [2, 4, 3]: U [2, 4, 4], Vh [2, 3, 3]");
    ok(ag_linalg_svd(tall, false, &u0, &s0, &vh0) == AG_OK && max_diff(s, s0) < 1e-12, "the same singular values");
    ag_tensor *uk = ag_narrow(u, -1, 0, 3);
    ok(orthogonality(u) < 1e-12 && max_diff(ag_matmul(ag_mul(uk, ag_unsqueeze(s, -2)), vh), tall) < 1e-12,
       "U is orthogonal and U[:, :k]·diag(S)·Vh = A");
    ag_tensor *g = NULL, *extra = ag_sum(ag_narrow(u, -1, 3, 1));
    ag_grad_opts keep = {.retain_graph = true};
    ok(ag_autograd_grad(&extra, 1, &tall, 1, NULL, &keep, &g) == AG_OK && g && ag_item(ag_max(ag_abs(g))) == 0,
       "U's extra column gets no gradient (PyTorch's definition)");
    ag_tensor *y = ag_linalg_svd(wide, true, &u, &s, &vh) == AG_OK ? ag_sum(ag_mul(vh, vh)) : NULL, *gw = NULL;
    ok(y && ag_size(vh, 1) == 5 && orthogonality(ag_transpose(vh, -1, -2)) < 1e-12 &&
           ag_autograd_grad(&y, 1, &wide, 1, NULL, NULL, &gw) == AG_OK && gw,
       "svd full_matrices of [3, 5]: Vh [5, 5] orthogonal, differentiable");
    ag_dual_level_begin();
    dual = ag_make_dual(ag_detach(tall), ag_randn(AG_SHAPE(2, 4, 3), AG_F64));
    ag_tensor *du = ag_linalg_svd(dual, true, &u, &s, &vh) == AG_OK ? ag_tangent(u) : NULL;
    ag_tensor *du0 = ag_linalg_svd(dual, false, &u0, &s0, &vh0) == AG_OK ? ag_tangent(u0) : NULL;
    ok(du && du0 && ag_item(ag_max(ag_abs(ag_narrow(du, -1, 3, 1)))) == 0 &&
           max_diff(ag_mul(ag_narrow(du, -1, 0, 3), ag_narrow(u, -1, 0, 3)), ag_mul(du0, u0)) < 1e-12,
       "its tangent: zero for the extra column, the reduced one elsewhere (up to the columns' signs)");
    ag_dual_level_end();
    ag_scope_end();
}

/* solve_triangular reads one triangle only (a NaN in the other is no matter), and a zero
 * on the diagonal it reads is an error naming the batch element. */
static void test_solve_triangular(void) {
    ag_scope_begin();
    double v[8] = {2, NAN, 1, 4, 1, 0, 0, 0}; /* element 1 has a zero diagonal */
    ag_tensor *a = ag_from_data(v, AG_SHAPE(2, 2, 2), AG_F64), *b = ag_ones(AG_SHAPE(2, 1), AG_F64);
    ag_tensor *x = ag_linalg_solve_triangular(ag_narrow(a, 0, 0, 1), b, false, true, false);
    ok(x && ag_get(x, (int64_t[]){0, 0, 0}) == 0.5 && ag_get(x, (int64_t[]){0, 1, 0}) == 0.125,
       "the lower triangle only: the NaN above it is not read");
    ok(!ag_linalg_solve_triangular(a, b, false, true, false) &&
           failed_with(AG_ERR_VALUE, "linalg_solve_triangular: batch element 1 is singular (A[2, 2] on its diagonal is zero)"),
       "a zero on the diagonal: %s", ag_last_error());
    ok(ag_linalg_solve_triangular(a, b, false, true, true) != NULL, "unitriangular: the diagonal is not read");
    ok(!ag_linalg_solve_triangular(a, ag_ones(AG_SHAPE(3, 1), AG_F64), true, true, false) &&
           failed_with(AG_ERR_SHAPE, "B needs 2 rows"),
       "B of the wrong rows: %s", ag_last_error());
    ok(!ag_linalg_solve_triangular(a, ag_ones(AG_SHAPE(2), AG_F64), true, true, false) && ag_last_status() == AG_ERR_SHAPE,
       "B a vector (PyTorch needs a matrix): %s", ag_last_error());
    ag_scope_end();
}

/* What create_graph and forward mode meet that first-order gradients do not: det's
 * second derivative needs A invertible; the eigenvectors' rules fail at a repeated
 * eigenvalue under create_graph and in forward mode as in backward. */
static void test_higher_order(void) {
    ag_scope_begin();
    double sing[4] = {1, 2, 2, 4};
    ag_tensor *a = ag_requires_grad_(ag_from_data(sing, AG_SHAPE(2, 2), AG_F64), true), *g = NULL;
    ag_tensor *d = ag_linalg_det(a);
    ag_grad_opts create = {.create_graph = true};
    ok(ag_autograd_grad(&d, 1, &a, 1, NULL, &create, &g) == AG_ERR_VALUE && failed_with(AG_ERR_VALUE, "is singular"),
       "create_graph through det of a singular matrix: %s", ag_last_error());
    /* the Hessian-vector product of log det at A = [[2, 1], [1, 3]]: d/dA <A⁻ᵀ, V> = -A⁻ᵀ·Vᵀ·A⁻ᵀ */
    double spd[4] = {2, 1, 1, 3}, v[4] = {1, -1, 0.5, 2};
    ag_tensor *x = ag_requires_grad_(ag_from_data(spd, AG_SHAPE(2, 2), AG_F64), true), *s, *l, *gx = NULL, *hv = NULL;
    ag_tensor *vv = ag_from_data(v, AG_SHAPE(2, 2), AG_F64);
    ok(ag_linalg_slogdet(x, &s, &l) == AG_OK && ag_autograd_grad(&l, 1, &x, 1, NULL, &create, &gx) == AG_OK, "d log|det A|/dA recorded");
    ag_tensor *inner = ag_sum(ag_mul(gx, vv));
    ok(ag_autograd_grad(&inner, 1, &x, 1, NULL, NULL, &hv) == AG_OK, "and differentiated again");
    ag_tensor *it = ag_transpose(ag_linalg_inv(x), 0, 1);
    ok(max_diff(hv, ag_neg(ag_matmul(ag_matmul(it, ag_transpose(vv, 0, 1)), it))) < 1e-12, "to -A⁻ᵀ·Vᵀ·A⁻ᵀ");

    double r[9] = {2, 0, 0, 0, 2, 0, 0, 0, 5};
    ag_tensor *e = ag_requires_grad_(ag_from_data(r, AG_SHAPE(3, 3), AG_F64), true), *lam, *vec, *ge = NULL;
    ag_tensor *w = ag_reshape(ag_arange(0, 9, 1, AG_F64), AG_SHAPE(3, 3));
    ag_tensor *loss = ag_linalg_eigh(e, NULL, &lam, &vec) == AG_OK ? ag_sum(ag_mul(vec, w)) : NULL;
    ok(loss && ag_autograd_grad(&loss, 1, &e, 1, NULL, &create, &ge) == AG_ERR_VALUE &&
           failed_with(AG_ERR_VALUE, "linalg_eigh: backward: batch element 0 has the repeated eigenvalue 2"),
       "create_graph through eigh's eigenvectors at a repeated eigenvalue: %s", ag_last_error());
    /* eigvalsh's second-order rule re-runs eigh on A: an in-place change of A is caught */
    ag_tensor *b = ag_requires_grad_(ag_from_data(spd, AG_SHAPE(2, 2), AG_F64), true), *c = ag_mul_scalar(b, 1), *gc = NULL;
    ag_tensor *ls = ag_sum(ag_linalg_eigvalsh(c, NULL));
    ag_add_(c, ag_ones(AG_SHAPE(2, 2), AG_F64), 1);
    ok(ag_autograd_grad(&ls, 1, &b, 1, NULL, &create, &gc) == AG_ERR_GRAPH && failed_with(AG_ERR_GRAPH, "modified by an in-place"),
       "create_graph through eigvalsh after its input changed in place: %s", ag_last_error());
    ag_dual_level_begin();
    ag_tensor *dual = ag_make_dual(ag_from_data(r, AG_SHAPE(3, 3), AG_F64), ag_ones(AG_SHAPE(3, 3), AG_F64));
    ok(ag_linalg_eigh(dual, NULL, &lam, &vec) != AG_OK || !ag_tangent(vec), "its tangent too: %s", ag_last_error());
    ag_dual_level_end();
    ag_scope_end();
}

/* The outputs and gradients of a batch of float32 matrices for thread count nt: solve (A and
 * B), solve_triangular, inv, det, slogdet, concatenated flat. */
static ag_tensor *batch_results(ag_tensor *a0, ag_tensor *b0, int nt) {
    ag_set_num_threads(nt);
    ag_tensor *a = ag_requires_grad_(ag_clone(a0), true), *b = ag_requires_grad_(ag_clone(b0), true);
    ag_tensor *s, *l, *ys[5] = {ag_linalg_solve(a, b), ag_linalg_solve_triangular(a, b, true, true, false), ag_linalg_inv(a),
                                ag_linalg_det(a), NULL};
    if (ag_linalg_slogdet(a, &s, &l)) return NULL;
    ys[4] = l;
    ag_tensor *loss = NULL;
    for (int i = 0; i < 5; i++) {
        ag_tensor *t = ag_sum(ag_mul(ys[i], ys[i]));
        loss = loss ? ag_add(loss, t) : t;
    }
    if (!loss || ag_backward(loss)) return NULL;
    ag_tensor *parts[7] = {ag_flatten(ys[0], 0, -1), ag_flatten(ys[1], 0, -1), ag_flatten(ys[2], 0, -1), ys[3], ys[4],
                           ag_flatten(ag_grad(a), 0, -1), ag_flatten(ag_grad(b), 0, -1)};
    return ag_cat(parts, 7, 0);
}

/* eigh of aᵀ·a, qr and svd of the batch a0 and the gradients of the sum of their cubes, on nt
 * threads, flattened into one tensor. */
static ag_tensor *decomposition_results(ag_tensor *a0, int nt) {
    ag_set_num_threads(nt);
    ag_tensor *a = ag_requires_grad_(ag_clone(a0), true), *ys[7];
    if (ag_linalg_eigh(ag_matmul(ag_transpose(a, -2, -1), a), NULL, &ys[0], &ys[1]) ||
        ag_linalg_qr(a, NULL, &ys[2], &ys[3]) || ag_linalg_svd(a, false, &ys[4], &ys[5], &ys[6]))
        return NULL;
    ag_tensor *loss = NULL, *parts[8];
    for (int i = 0; i < 7; i++) {
        ag_tensor *t = ag_sum(ag_mul(ag_mul(ys[i], ys[i]), ys[i]));
        loss = loss ? ag_add(loss, t) : t;
        parts[i] = ag_flatten(ys[i], 0, -1);
    }
    if (!loss || ag_backward(loss)) return NULL;
    parts[7] = ag_flatten(ag_grad(a), 0, -1);
    return ag_cat(parts, 8, 0);
}

/* The elements of a batch run over agrad's threads (OpenBLAS at one thread inside each): every
 * element computes as on one thread, so 1 and 2 threads give the same bits, and a failure names
 * the first failing element whichever thread met it. */
static void test_batch_threads(void) {
    ag_scope_begin();
    int threads = ag_get_num_threads();
    ag_manual_seed(11);
    int64_t n = 24;
    ag_tensor *a = ag_add(ag_add_scalar(ag_rand(AG_SHAPE(16, n, n), AG_F32), -0.5), ag_mul_scalar(ag_eye(n, AG_F32), 2));
    ag_tensor *b = ag_randn(AG_SHAPE(16, n, 5), AG_F32);
    ag_tensor *one = batch_results(a, b, 1), *two = batch_results(a, b, 2);
    ok(one && two && max_diff(one, two) == 0, "16 float32 24 x 24 solves, triangular solves, inverses, det and slogdet with "
       "their gradients: 1 and 2 threads differ by %g", one && two ? max_diff(one, two) : INFINITY);
    ag_tensor *tall = ag_randn(AG_SHAPE(16, 2 * n, n), AG_F32);
    one = decomposition_results(tall, 1), two = decomposition_results(tall, 2);
    ok(one && two && max_diff(one, two) == 0, "16 float32 48 x 24 eigh (of aᵀ·a), qr and svd with their gradients: 1 "
       "and 2 threads differ by %g", one && two ? max_diff(one, two) : INFINITY);
    /* A batch of one 240 x 240 matrix: the gradients' products (240³ multiply-adds) run on OpenBLAS's
     * threads at 2 threads (blas_widen); its LAPACK calls stay on one.  How OpenBLAS splits a product
     * among its threads may change the last bits of the elements at the split's edges (its Haswell and
     * Zen kernels do at this size), so 2 threads agree with 1 to float32 rounding, not bit for bit.
     * Not under valgrind: OpenBLAS's kernels there take the test past its 30 s (and the widened calls
     * are the same BLAS calls on the same buffers as on one thread). */
    if (!RUNNING_ON_VALGRIND) {
        int64_t m = 240;
        ag_tensor *a1 = ag_add(ag_eye(m, AG_F32), ag_mul_scalar(ag_add_scalar(ag_rand(AG_SHAPE(1, m, m), AG_F32), -0.5), 0.1));
        ag_tensor *b1 = ag_randn(AG_SHAPE(1, m, 160), AG_F32);
        one = batch_results(a1, b1, 1), two = batch_results(a1, b1, 2);
        double scale = one ? ag_item(ag_max(ag_abs(one))) : NAN, diff = one && two ? max_diff(one, two) : INFINITY;
        ok(isfinite(scale) && diff <= 1e-5 * scale,
           "one float32 240 x 240 solve (160 columns), triangular solve, inverse, det and slogdet with their gradients: 1 "
           "and 2 threads differ by %g, %.3g of the largest magnitude %g", diff, diff / scale, scale);
    }
    ag_tensor *sing = ag_clone(a);
    for (int e = 3; e < 16; e += 6) /* elements 3, 9 and 15: a zero row */
        ag_fill_(ag_select(ag_select(sing, 0, e), 0, 1), 0);
    for (int nt = 1; nt <= 2; nt++) {
        ag_set_num_threads(nt);
        ok(!ag_linalg_inv(sing) && failed_with(AG_ERR_VALUE, "linalg_inv: batch element 3 is singular"),
           "%d thread(s): the first singular element named: %s", nt, ag_last_error());
        ok(!ag_linalg_solve(sing, b) && failed_with(AG_ERR_VALUE, "linalg_solve: batch element 3 is singular"),
           "%d thread(s): solve too: %s", nt, ag_last_error());
    }
    ag_set_num_threads(threads);
    ag_scope_end();
}

/* A batch of 2^40 empty matrices holds no element: no lane of it is walked, forward or
 * backward (each call here would otherwise run 2^40 iterations). */
static void test_empty_batches(void) {
    ag_scope_begin();
    ag_shape e = AG_SHAPE((int64_t)1 << 40, 0, 0);
    ag_tensor *a = ag_requires_grad_(ag_zeros(e, AG_F64), true);
    ag_tensor *y = ag_linalg_inv(a);
    ok(y && ag_numel(y) == 0 && ag_backward(ag_sum(y)) == AG_OK, "inv of 2^40 empty matrices, and its backward");
    ok(ag_linalg_cholesky(a, false) && ag_linalg_eigvalsh(a, NULL), "cholesky and eigvalsh of them");
    ag_tensor *l = ag_linalg_eigvalsh(a, "U");
    ok(l && ag_backward(ag_sum(l)) == AG_OK, "eigvalsh's backward");
    ag_tensor *w = ag_requires_grad_(ag_zeros(AG_SHAPE((int64_t)1 << 40, 0, 3), AG_F64), true);
    ag_tensor *p = ag_linalg_pinv(w, 0, -1);
    ok(p && ag_size(p, 1) == 3 && ag_backward(ag_sum(p)) == AG_OK, "pinv of 2^40 empty 0 x 3 matrices, and its backward");
    ag_tensor *s = ag_linalg_svdvals(w), *q, *r;
    ok(s && ag_numel(s) == 0 && ag_linalg_qr(w, NULL, &q, &r) == AG_OK, "svdvals and qr of them");
    /* the solves: empty right-hand sides of the empty matrices (each of their checks walked the batch) */
    ag_tensor *bs = ag_requires_grad_(ag_zeros(AG_SHAPE((int64_t)1 << 40, 0, 3), AG_F64), true);
    for (int upper = 0; upper < 2; upper++) {
        ag_tensor *xt = ag_linalg_solve_triangular(a, bs, upper, true, upper);
        ok(xt && ag_size(xt, 2) == 3 && ag_backward(ag_sum(xt)) == AG_OK, "solve_triangular (upper %d) of them, and its backward", upper);
    }
    ag_tensor *xs = ag_linalg_solve(a, bs), *xc = ag_cholesky_solve(bs, a, false), *xl = ag_linalg_lstsq(a, bs, -1);
    ok(xs && ag_numel(xs) == 0 && ag_backward(ag_sum(xs)) == AG_OK, "solve of them, and its backward");
    ok(xc && ag_numel(xc) == 0 && ag_backward(ag_sum(xc)) == AG_OK, "cholesky_solve of them, and its backward");
    ok(xl && ag_numel(xl) == 0 && ag_backward(ag_sum(xl)) == AG_OK, "lstsq of them, and its backward");
    /* det has a result per matrix: 2^20 determinants of 0 x 0 matrices, each 1 */
    ag_tensor *d = ag_linalg_det(ag_zeros(AG_SHAPE((int64_t)1 << 20, 0, 0), AG_F64));
    ok(d && ag_numel(d) == (int64_t)1 << 20 && ag_get(d, (int64_t[]){0}) == 1 && ag_get(d, (int64_t[]){((int64_t)1 << 20) - 1}) == 1,
       "det of 2^20 empty matrices: 1 each");
    ag_scope_end();
}

int main(void) {
    test_fixtures();
    test_errors();
    test_norm_rows();
    test_singular();
    test_decompositions();
    test_full_modes();
    test_solve_triangular();
    test_batch_threads();
    test_higher_order();
    test_empty_batches();
    ok(ag_live_tensors() == 0, "no tensor is alive (%ld)", ag_live_tensors());
    return tap_done();
}

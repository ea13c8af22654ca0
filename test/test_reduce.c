/*
 * Reductions and softmax against values derived by hand from PyTorch's
 * documented semantics: ties of max/min (even split over all elements, first
 * index along a dim), argmax/argmin, var/std with corrections 0 and 1, prod
 * gradients with zeros, logsumexp/softmax/log_softmax at ±1e4, ±1e8 and -inf,
 * error messages, and the oneDNN softmax path against the reference kernel.
 */
#include <stdlib.h>
#include <string.h>
#include "agrad/agrad.h"
#include "core/internal.h"
#include "core/dnnl_cache.h"
#include "ops/softmax.h"
#include "tap.h"
#include "test/on_valgrind.h"

#define LN2 0.6931471805599453
#define LN3 1.0986122886681098
#define NELEM(a) ((int64_t)(sizeof(a) / sizeof((a)[0])))

static const ag_dtype dtypes[2] = {AG_F64, AG_F32};
/* Hand values are exact or to 16 digits; float32 results get float32's precision. */
static double tol_of(ag_dtype dt) { return dt == AG_F64 ? 1e-12 : 2e-6; }

/* A leaf requiring grad with values v (given as doubles) in dtype dt. */
static ag_tensor *leaf(ag_dtype dt, ag_shape shape, const double *v) {
    int64_t n = ag__numel(shape.ndim, shape.dim);
    float f[256];
    for (int64_t i = 0; i < n && i < 256; i++) f[i] = (float)v[i];
    return ag_requires_grad_(ag_from_data(dt == AG_F64 ? (const void *)v : (const void *)f, shape, dt), true);
}

/* t holds the n values want (NaN matches NaN, infinities match exactly, others within tol·max(1, |want|)). */
static bool values_are(const ag_tensor *t, const double *want, int64_t n, double tol) {
    if (!t || ag_numel(t) != n) return false;
    double got[256];
    if (n > 256 || ag_copy_to(t, got, 256, AG_F64)) return false;
    bool same = true;
    for (int64_t i = 0; i < n; i++) {
        bool ok_i = isnan(want[i]) ? isnan(got[i])
                  : isinf(want[i]) ? got[i] == want[i]
                                   : fabs(got[i] - want[i]) <= tol * fmax(1, fabs(want[i]));
        if (!ok_i) {
            diag("  element %lld: got %.17g, want %.17g", (long long)i, got[i], want[i]);
            same = false;
        }
    }
    return same;
}

/* Backward from y seeded with dy (n values; NULL: all ones). */
static ag_status backward_with(ag_tensor *y, const double *dy) {
    if (!y) return AG_ERR_ARG;
    int64_t n = ag_numel(y);
    double ones[256];
    for (int64_t i = 0; i < n && i < 256; i++) ones[i] = dy ? dy[i] : 1;
    ag_shape s = ag_shape_of(y);
    ag_tensor *g = ag_from_data(ones, s, AG_F64);
    if (ag_dtype_of(y) != AG_F64) g = ag_to_dtype(g, ag_dtype_of(y));
    return ag_backward_ex(y, g, false);
}

/* ---- max / min over all elements: ties share the gradient evenly ------------------------------- */
static void test_max_all(void) {
    for (int k = 0; k < 2; k++) {
        ag_dtype dt = dtypes[k];
        const char *dn = ag_dtype_name(dt);
        ag_scope_begin();
        /* max of [[1, 3], [3, 2]] is 3, reached twice: each 3 gets dy/2 */
        ag_tensor *x = leaf(dt, AG_SHAPE(2, 2), (double[]){1, 3, 3, 2});
        ag_tensor *y = ag_max(x);
        ok(y && ag_ndim(y) == 0 && ag_item(y) == 3, "%s max([[1,3],[3,2]]) = 3 (0-d)", dn);
        ok(y && strcmp(ag_grad_fn_name(y), "MaxBackward1") == 0, "%s max grad_fn MaxBackward1", dn);
        ok(ag_backward(y) == AG_OK && values_are(ag_grad(x), (double[]){0, 0.5, 0.5, 0}, 4, 0),
           "%s max: the two tied maxima get 1/2 each", dn);
        /* three-way tie of the min */
        ag_tensor *z = leaf(dt, AG_SHAPE(4), (double[]){2, 5, 2, 2});
        ag_tensor *m = ag_min(z);
        ok(m && ag_item(m) == 2 && strcmp(ag_grad_fn_name(m), "MinBackward1") == 0, "%s min([2,5,2,2]) = 2", dn);
        ok(ag_backward(m) == AG_OK && values_are(ag_grad(z), (double[]){1.0 / 3, 0, 1.0 / 3, 1.0 / 3}, 4, tol_of(dt)),
           "%s min: three tied minima get 1/3 each", dn);
        /* NaN wins both, and the gradient goes to the NaN */
        ag_tensor *w = leaf(dt, AG_SHAPE(3), (double[]){1, NAN, 5});
        ag_tensor *mx = ag_max(w);
        ok(mx && isnan(ag_item(mx)) && isnan(ag_item(ag_min(w))), "%s max and min of [1, nan, 5] are nan", dn);
        ok(ag_backward(mx) == AG_OK && values_are(ag_grad(w), (double[]){0, 1, 0}, 3, 0), "%s max: gradient to the NaN", dn);
        /* a 0-d input is its own max, gradient 1 */
        ag_tensor *s = leaf(dt, AG_SCALAR_SHAPE, (double[]){-4});
        ag_tensor *ms = ag_max(s);
        ok(ms && ag_item(ms) == -4 && ag_backward(ms) == AG_OK && ag_item(ag_grad(s)) == 1, "%s max of a 0-d tensor", dn);
        ag_scope_end();
    }
}

/* ---- max / min along a dim: the gradient goes to the first extreme -------------------------------- */
static void test_max_dim(void) {
    for (int k = 0; k < 2; k++) {
        ag_dtype dt = dtypes[k];
        const char *dn = ag_dtype_name(dt);
        ag_scope_begin();
        const double v[6] = {1, 3, 3, 5, 5, 0};
        ag_tensor *x = leaf(dt, AG_SHAPE(2, 3), v);
        ag_tensor *y = ag_max_dim(x, 1, false);
        ok(y && ag_ndim(y) == 1 && values_are(y, (double[]){3, 5}, 2, 0), "%s max_dim([[1,3,3],[5,5,0]], 1) = [3, 5]", dn);
        ok(y && strcmp(ag_grad_fn_name(y), "MaxBackward0") == 0, "%s max_dim grad_fn MaxBackward0", dn);
        ok(backward_with(y, (double[]){10, 20}) == AG_OK && values_are(ag_grad(x), (double[]){0, 10, 0, 20, 0, 0}, 6, 0),
           "%s max_dim: dy goes to the first of the tied maxima only", dn);
        ag_tensor *x0 = leaf(dt, AG_SHAPE(2, 3), v);
        ag_tensor *y0 = ag_max_dim(x0, 0, true);
        ag_shape s0 = y0 ? ag_shape_of(y0) : AG_SCALAR_SHAPE;
        ok(y0 && s0.ndim == 2 && s0.dim[0] == 1 && s0.dim[1] == 3 && values_are(y0, (double[]){5, 5, 3}, 3, 0),
           "%s max_dim(dim 0, keepdim) = [[5, 5, 3]]", dn);
        ok(backward_with(y0, NULL) == AG_OK && values_are(ag_grad(x0), (double[]){0, 0, 1, 1, 1, 0}, 6, 0),
           "%s max_dim(dim 0): gradient at the column maxima", dn);
        ag_tensor *x2 = leaf(dt, AG_SHAPE(2, 3), (double[]){2, 1, 1, 0, 4, 0});
        ag_tensor *m = ag_min_dim(x2, -1, false);
        ok(m && values_are(m, (double[]){1, 0}, 2, 0) && strcmp(ag_grad_fn_name(m), "MinBackward0") == 0,
           "%s min_dim([[2,1,1],[0,4,0]], -1) = [1, 0]", dn);
        ok(backward_with(m, NULL) == AG_OK && values_are(ag_grad(x2), (double[]){0, 1, 0, 1, 0, 0}, 6, 0),
           "%s min_dim: gradient to the first minimum", dn);
        /* NaN propagates as the max and its first index takes the gradient */
        ag_tensor *xn = leaf(dt, AG_SHAPE(1, 4), (double[]){1, NAN, 7, NAN});
        ag_tensor *yn = ag_max_dim(xn, 1, false);
        ok(yn && isnan(ag_item(yn)) && backward_with(yn, NULL) == AG_OK &&
               values_are(ag_grad(xn), (double[]){0, 1, 0, 0}, 4, 0),
           "%s max_dim([1, nan, 7, nan]) = nan, gradient at index 1", dn);
        /* a 3-d input over dim 1 */
        ag_tensor *x3 = leaf(dt, AG_SHAPE(2, 2, 2), (double[]){1, 8, 4, 2, 6, 6, 6, 5});
        ag_tensor *y3 = ag_max_dim(x3, 1, false);
        ok(y3 && values_are(y3, (double[]){4, 8, 6, 6}, 4, 0) && backward_with(y3, NULL) == AG_OK &&
               values_are(ag_grad(x3), (double[]){0, 1, 1, 0, 1, 1, 0, 0}, 8, 0),
           "%s max_dim of a [2, 2, 2] tensor over dim 1, ties to the first index", dn);
        ag_scope_end();
    }
}

/* ---- argmax / argmin ---------------------------------------------------------------------------- */
static void test_argmax(void) {
    for (int k = 0; k < 2; k++) {
        ag_dtype dt = dtypes[k];
        const char *dn = ag_dtype_name(dt);
        ag_scope_begin();
        ag_tensor *x = leaf(dt, AG_SHAPE(2, 3), (double[]){1, 3, 3, 5, 5, 0});
        ag_tensor *i1 = ag_argmax(x, 1, false);
        ok(i1 && ag_dtype_of(i1) == AG_I64 && !ag_requires_grad(i1) && ag_grad_fn_name(i1) == NULL,
           "%s argmax is int64 without grad_fn", dn);
        int64_t got[3] = {-1, -1, -1};
        ok(i1 && ag_copy_to(i1, got, 3, AG_I64) == AG_OK && got[0] == 1 && got[1] == 0,
           "%s argmax([[1,3,3],[5,5,0]], 1) = [1, 0] (first occurrence): [%lld, %lld]", dn, (long long)got[0],
           (long long)got[1]);
        ag_tensor *i0 = ag_argmax(x, 0, true);
        ag_shape s0 = i0 ? ag_shape_of(i0) : AG_SCALAR_SHAPE;
        ok(i0 && s0.ndim == 2 && s0.dim[0] == 1 && ag_copy_to(i0, got, 3, AG_I64) == AG_OK && got[0] == 1 && got[1] == 1 &&
               got[2] == 0,
           "%s argmax(dim 0, keepdim) = [[1, 1, 0]]", dn);
        ag_tensor *j1 = ag_argmin(x, -1, false);
        ok(j1 && ag_dtype_of(j1) == AG_I64 && ag_copy_to(j1, got, 3, AG_I64) == AG_OK && got[0] == 0 && got[1] == 2,
           "%s argmin(dim -1) = [0, 2]", dn);
        ag_tensor *j0 = ag_argmin(x, 0, false);
        ok(j0 && ag_copy_to(j0, got, 3, AG_I64) == AG_OK && got[0] == 0 && got[1] == 0 && got[2] == 1,
           "%s argmin(dim 0) = [0, 0, 1]", dn);
        ag_tensor *xn = leaf(dt, AG_SHAPE(4), (double[]){1, 9, NAN, NAN});
        ok(ag_item(ag_argmax(xn, 0, false)) == 2 && ag_item(ag_argmin(xn, 0, false)) == 2,
           "%s argmax and argmin of [1, 9, nan, nan] are 2 (the first NaN)", dn);
        ag_tensor *t = leaf(dt, AG_SHAPE(5), (double[]){4, 4, 4, 4, 4});
        ok(ag_item(ag_argmax(t, 0, false)) == 0 && ag_item(ag_argmin(t, -1, false)) == 0, "%s all ties: index 0", dn);
        ag_tensor *sc = leaf(dt, AG_SCALAR_SHAPE, (double[]){3});
        ag_tensor *is = ag_argmax(sc, 0, false);
        ok(is && ag_ndim(is) == 0 && ag_item(is) == 0, "%s argmax of a 0-d tensor is 0", dn);
        ag_scope_end();
    }
}

/* ---- var and std ---------------------------------------------------------------------------------- */
static void test_var_std(void) {
    for (int k = 0; k < 2; k++) {
        ag_dtype dt = dtypes[k];
        const char *dn = ag_dtype_name(dt);
        double tol = tol_of(dt);
        ag_scope_begin();
        /* [1, 2, 3, 4]: mean 2.5, Σ(x - mean)² = 2.25 + 0.25 + 0.25 + 2.25 = 5 */
        const double v[4] = {1, 2, 3, 4};
        ag_tensor *x1 = leaf(dt, AG_SHAPE(4), v), *x0 = leaf(dt, AG_SHAPE(4), v);
        ag_tensor *v1 = ag_var(x1, 1), *v0 = ag_var(x0, 0);
        close_to(ag_item(v1), 5.0 / 3, tol, "%s var([1,2,3,4], correction 1) = 5/3", dn);
        close_to(ag_item(v0), 1.25, tol, "%s var([1,2,3,4], correction 0) = 5/4", dn);
        ok(strcmp(ag_grad_fn_name(v1), "VarBackward0") == 0, "%s var grad_fn VarBackward0", dn);
        /* dx = 2(x - mean)/(n - c) */
        ok(ag_backward(v1) == AG_OK && values_are(ag_grad(x1), (double[]){-1, -1.0 / 3, 1.0 / 3, 1}, 4, tol),
           "%s var' (correction 1) = 2(x - 2.5)/3", dn);
        ok(ag_backward(v0) == AG_OK && values_are(ag_grad(x0), (double[]){-0.75, -0.25, 0.25, 0.75}, 4, tol),
           "%s var' (correction 0) = 2(x - 2.5)/4", dn);
        ag_tensor *xs1 = leaf(dt, AG_SHAPE(4), v), *xs0 = leaf(dt, AG_SHAPE(4), v);
        ag_tensor *s1 = ag_std(xs1, 1), *s0 = ag_std(xs0, 0);
        close_to(ag_item(s1), sqrt(5.0 / 3), tol, "%s std(correction 1) = √(5/3)", dn);
        close_to(ag_item(s0), sqrt(1.25), tol, "%s std(correction 0) = √(5/4)", dn);
        ok(strcmp(ag_grad_fn_name(s0), "StdBackward0") == 0, "%s std grad_fn StdBackward0", dn);
        /* dstd = dvar / (2 std) */
        double r0 = 2 * sqrt(1.25), r1 = 2 * sqrt(5.0 / 3);
        ok(ag_backward(s0) == AG_OK && values_are(ag_grad(xs0), (double[]){-0.75 / r0, -0.25 / r0, 0.25 / r0, 0.75 / r0}, 4, tol),
           "%s std' (correction 0) = var'/(2 std)", dn);
        ok(ag_backward(s1) == AG_OK && values_are(ag_grad(xs1), (double[]){-1 / r1, -1 / (3 * r1), 1 / (3 * r1), 1 / r1}, 4, tol),
           "%s std' (correction 1) = var'/(2 std)", dn);

        /* [[1, 2, 3], [4, 6, 8]]: rows have Σ(x - mean)² = 2 and 8; columns 4.5, 8, 12.5 */
        const double m[6] = {1, 2, 3, 4, 6, 8};
        ag_tensor *a = leaf(dt, AG_SHAPE(2, 3), m);
        int d1 = 1, d0 = 0, both[2] = {0, 1};
        ag_tensor *vr = ag_var_dims(a, 1, &d1, 1, true);
        ag_shape sr = vr ? ag_shape_of(vr) : AG_SCALAR_SHAPE;
        ok(vr && sr.ndim == 2 && sr.dim[0] == 2 && sr.dim[1] == 1 && values_are(vr, (double[]){1, 4}, 2, tol),
           "%s var_dims(dim 1, correction 1, keepdim) = [[1], [4]]", dn);
        ok(values_are(ag_var_dims(a, 1, &d1, 0, false), (double[]){2.0 / 3, 8.0 / 3}, 2, tol),
           "%s var_dims(dim 1, correction 0) = [2/3, 8/3]", dn);
        ok(values_are(ag_var_dims(a, 1, &d0, 0, false), (double[]){2.25, 4, 6.25}, 3, tol),
           "%s var_dims(dim 0, correction 0) = [2.25, 4, 6.25]", dn);
        /* all six: mean 4, Σ(x - mean)² = 9 + 4 + 1 + 0 + 4 + 16 = 34 */
        close_to(ag_item(ag_var_dims(a, 2, both, 1, false)), 34.0 / 5, tol, "%s var_dims(dims {0, 1}, correction 1) = 34/5", dn);
        ag_tensor *sd = ag_std_dims(a, 1, &d0, 0, false);
        ok(values_are(sd, (double[]){1.5, 2, 2.5}, 3, tol), "%s std_dims(dim 0, correction 0) = [1.5, 2, 2.5]", dn);
        /* each column: (x - mean)/(2 std) with n = 2 gives ∓1/2 */
        ok(backward_with(sd, NULL) == AG_OK && values_are(ag_grad(a), (double[]){-0.5, -0.5, -0.5, 0.5, 0.5, 0.5}, 6, tol),
           "%s std_dims' (dim 0) = ∓1/2", dn);

        /* degenerate cases, as PyTorch: one element with correction 1 is 0/0 = nan (gradient nan);
         * a constant input has std 0 and gradient 0 */
        ag_tensor *one = leaf(dt, AG_SHAPE(1), (double[]){7});
        ag_tensor *vn = ag_var(one, 1);
        ok(vn && isnan(ag_item(vn)) && ag_backward(vn) == AG_OK && isnan(ag_item(ag_grad(one))),
           "%s var of one element with correction 1 is nan, gradient nan", dn);
        ag_tensor *c = leaf(dt, AG_SHAPE(3), (double[]){2, 2, 2});
        ag_tensor *sc = ag_std(c, 1);
        ok(sc && ag_item(sc) == 0 && ag_backward(sc) == AG_OK && values_are(ag_grad(c), (double[]){0, 0, 0}, 3, 0),
           "%s std of a constant is 0 with gradient 0", dn);
        ag_scope_end();
    }
}

/* ---- prod, with zeros ------------------------------------------------------------------------------ */
static void test_prod(void) {
    for (int k = 0; k < 2; k++) {
        ag_dtype dt = dtypes[k];
        const char *dn = ag_dtype_name(dt);
        double tol = tol_of(dt);
        ag_scope_begin();
        ag_tensor *a = leaf(dt, AG_SHAPE(3), (double[]){2, 3, 4});
        ag_tensor *pa = ag_prod(a);
        ok(pa && ag_item(pa) == 24 && strcmp(ag_grad_fn_name(pa), "ProdBackward0") == 0, "%s prod([2,3,4]) = 24", dn);
        ok(ag_backward(pa) == AG_OK && values_are(ag_grad(a), (double[]){12, 8, 6}, 3, tol), "%s prod' = [12, 8, 6]", dn);
        ag_tensor *b = leaf(dt, AG_SHAPE(3), (double[]){2, 0, 4});
        ag_tensor *pb = ag_prod(b);
        ok(pb && ag_item(pb) == 0 && ag_backward(pb) == AG_OK && values_are(ag_grad(b), (double[]){0, 8, 0}, 3, 0),
           "%s prod([2,0,4]) = 0: gradient only at the zero, the product of the others (8)", dn);
        ag_tensor *c = leaf(dt, AG_SHAPE(3), (double[]){0, 3, 0});
        ag_tensor *pc = ag_prod(c);
        ok(pc && ag_item(pc) == 0 && ag_backward(pc) == AG_OK && values_are(ag_grad(c), (double[]){0, 0, 0}, 3, 0),
           "%s prod([0,3,0]): two zeros give gradient 0 everywhere", dn);

        /* along dims: [[2, 0, 4], [1, 3, 5]] */
        const double m[6] = {2, 0, 4, 1, 3, 5};
        ag_tensor *x = leaf(dt, AG_SHAPE(2, 3), m);
        ag_tensor *p1 = ag_prod_dim(x, 1, false);
        ok(p1 && values_are(p1, (double[]){0, 15}, 2, 0) && strcmp(ag_grad_fn_name(p1), "ProdBackward1") == 0,
           "%s prod_dim(dim 1) = [0, 15]", dn);
        ok(backward_with(p1, (double[]){1, 2}) == AG_OK && values_are(ag_grad(x), (double[]){0, 8, 0, 30, 10, 6}, 6, tol),
           "%s prod_dim' with dy [1, 2]: [[0, 8, 0], [30, 10, 6]]", dn);
        ag_tensor *x0 = leaf(dt, AG_SHAPE(2, 3), m);
        ag_tensor *p0 = ag_prod_dim(x0, 0, true);
        ag_shape s0 = p0 ? ag_shape_of(p0) : AG_SCALAR_SHAPE;
        ok(p0 && s0.ndim == 2 && s0.dim[0] == 1 && values_are(p0, (double[]){2, 0, 20}, 3, 0), "%s prod_dim(dim 0, keepdim)", dn);
        ok(backward_with(p0, NULL) == AG_OK && values_are(ag_grad(x0), (double[]){1, 3, 5, 2, 0, 4}, 6, tol),
           "%s prod_dim' (dim 0) = [[1, 3, 5], [2, 0, 4]]", dn);
        ag_tensor *z = leaf(dt, AG_SHAPE(2, 3), (double[]){0, 0, 5, 2, 2, 2});
        ag_tensor *pz = ag_prod_dim(z, -1, false);
        ok(pz && values_are(pz, (double[]){0, 8}, 2, 0) && backward_with(pz, NULL) == AG_OK &&
               values_are(ag_grad(z), (double[]){0, 0, 0, 4, 4, 4}, 6, tol),
           "%s prod_dim: a row with two zeros gets gradient 0, the other row Π of the others", dn);
        /* PyTorch passes dy straight through for a 0-d input, even at 0 */
        ag_tensor *s = leaf(dt, AG_SCALAR_SHAPE, (double[]){0});
        ag_tensor *ps = ag_prod(s);
        ok(ps && ag_item(ps) == 0 && ag_backward(ps) == AG_OK && ag_item(ag_grad(s)) == 1, "%s prod of a 0-d 0 has gradient 1", dn);
        ag_tensor *e = ag_prod(ag_zeros(AG_SHAPE(0), dt));
        ok(e && ag_item(e) == 1, "%s prod of an empty tensor is 1", dn);
        ag_scope_end();
    }
}

/* ---- logsumexp ------------------------------------------------------------------------------------- */
static void test_logsumexp(void) {
    for (int k = 0; k < 2; k++) {
        ag_dtype dt = dtypes[k];
        const char *dn = ag_dtype_name(dt);
        double tol = tol_of(dt);
        ag_scope_begin();
        int last = -1;
        /* rows: [1e4, 1e4] -> 1e4 + ln 2; [1e8, 0] -> 1e8; [-1e8, -1e8] -> -1e8 + ln 2; [-inf, 0] -> 0 */
        ag_tensor *x = leaf(dt, AG_SHAPE(4, 2), (double[]){1e4, 1e4, 1e8, 0, -1e8, -1e8, -INFINITY, 0});
        ag_tensor *y = ag_logsumexp_dims(x, 1, &last, false);
        ok(y && values_are(y, (double[]){1e4 + LN2, 1e8, -1e8 + LN2, 0}, 4, tol), "%s logsumexp at ±1e4, ±1e8, -inf", dn);
        ok(y && strcmp(ag_grad_fn_name(y), "LogsumexpBackward0") == 0, "%s logsumexp grad_fn LogsumexpBackward0", dn);
        /* dx = dy·exp(x - y): [1/2, 1/2], [1, 0], [1/2, 1/2], [0, 1] */
        /* dx = dy·exp(x - y): [1/2, 1/2], [1, 0], [1/2, 1/2], [0, 1] -- up to the rounding of y itself,
         * which PyTorch shares: y = fl(m + ln 2), so exp(x - y) = exp(m - fl(m + ln 2)) for m = 1e4, -1e8.
         * In float32 fl(1e4 + ln 2) = 10000.693359375 (ulp 2^-10) and fl(-1e8 + ln 2) = -1e8 (ulp 8). */
        const double g0 = dt == AG_F64 ? exp(1e4 - (1e4 + LN2)) : exp(1e4 - 10000.693359375);
        const double g2 = dt == AG_F64 ? exp(-1e8 - (-1e8 + LN2)) : 1;
        ok(backward_with(y, NULL) == AG_OK && values_are(ag_grad(x), (double[]){g0, g0, 1, 0, g2, g2, 0, 1}, 8, tol),
           "%s logsumexp' finite at ±1e4, ±1e8, -inf", dn);
        /* an all -inf row gives -inf (not NaN), a +inf gives +inf, as PyTorch */
        ag_tensor *w = leaf(dt, AG_SHAPE(3, 2), (double[]){-INFINITY, -INFINITY, INFINITY, 1, 1e4, -1e4});
        ok(values_are(ag_logsumexp_dims(w, 1, &last, false), (double[]){-INFINITY, INFINITY, 1e4}, 3, tol),
           "%s logsumexp of [-inf, -inf] = -inf, [inf, 1] = inf, [1e4, -1e4] = 1e4", dn);
        /* several dims, keepdim: four zeros give ln 4, gradient 1/4 */
        ag_tensor *z = leaf(dt, AG_SHAPE(2, 2), (double[]){0, 0, 0, 0});
        int both[2] = {0, 1};
        ag_tensor *yz = ag_logsumexp_dims(z, 2, both, true);
        ag_shape sz = yz ? ag_shape_of(yz) : AG_SCALAR_SHAPE;
        ok(yz && sz.ndim == 2 && sz.dim[0] == 1 && sz.dim[1] == 1 && values_are(yz, (double[]){2 * LN2}, 1, tol) &&
               backward_with(yz, NULL) == AG_OK && values_are(ag_grad(z), (double[]){0.25, 0.25, 0.25, 0.25}, 4, tol),
           "%s logsumexp over dims {0, 1} of zeros = ln 4, gradient 1/4", dn);
        /* 3-d over dim 1: columns (0, ln 3) -> ln 4 and (1e4, -1e4) -> 1e4 */
        ag_tensor *t = leaf(dt, AG_SHAPE(1, 2, 2), (double[]){0, 1e4, LN3, -1e4});
        int mid = 1;
        ag_tensor *yt = ag_logsumexp_dims(t, 1, &mid, false);
        ok(yt && values_are(yt, (double[]){2 * LN2, 1e4}, 2, tol) && backward_with(yt, NULL) == AG_OK &&
               values_are(ag_grad(t), (double[]){0.25, 1, 0.75, 0}, 4, tol),
           "%s logsumexp of a [1, 2, 2] tensor over dim 1", dn);
        ag_scope_end();
    }
}

/* ---- softmax and log_softmax ---------------------------------------------------------------------- */
static void test_softmax(void) {
    for (int k = 0; k < 2; k++) {
        ag_dtype dt = dtypes[k];
        const char *dn = ag_dtype_name(dt);
        double tol = tol_of(dt);
        ag_scope_begin();
        /* [1e8, -1e8, -inf, 1e8]: exp(x - 1e8) = [1, 0, 0, 1], sum 2 */
        const double v[4] = {1e8, -1e8, -INFINITY, 1e8};
        const double dy[4] = {1, 2, 3, 4};
        ag_tensor *x = leaf(dt, AG_SHAPE(4), v);
        ag_tensor *y = ag_softmax(x, 0);
        ok(y && values_are(y, (double[]){0.5, 0, 0, 0.5}, 4, tol), "%s softmax([1e8, -1e8, -inf, 1e8]) = [.5, 0, 0, .5]", dn);
        ok(y && strcmp(ag_grad_fn_name(y), "SoftmaxBackward0") == 0, "%s softmax grad_fn SoftmaxBackward0", dn);
        /* Σ dy·y = 0.5 + 2 = 2.5;  dx = y·(dy - 2.5) */
        ok(backward_with(y, dy) == AG_OK && values_are(ag_grad(x), (double[]){-0.75, 0, 0, 0.75}, 4, tol),
           "%s softmax' = y·(dy - Σ dy·y) = [-.75, 0, 0, .75]", dn);
        ag_tensor *xl = leaf(dt, AG_SHAPE(4), v);
        ag_tensor *yl = ag_log_softmax(xl, -1);
        ok(yl && values_are(yl, (double[]){-LN2, -2e8 - LN2, -INFINITY, -LN2}, 4, tol),
           "%s log_softmax([1e8, -1e8, -inf, 1e8]) = [-ln 2, -2e8 - ln 2, -inf, -ln 2]", dn);
        ok(yl && strcmp(ag_grad_fn_name(yl), "LogSoftmaxBackward0") == 0, "%s log_softmax grad_fn LogSoftmaxBackward0", dn);
        /* Σ dy = 10;  dx = dy - exp(y)·10 = [1 - 5, 2 - 0, 3 - 0, 4 - 5] */
        ok(backward_with(yl, dy) == AG_OK && values_are(ag_grad(xl), (double[]){-4, 2, 3, -1}, 4, tol),
           "%s log_softmax' = dy - exp(y)·Σ dy = [-4, 2, 3, -1]", dn);

        /* rows [1e4, 0] and [0, -inf, ...] over the last dim of a [2, 2] */
        ag_tensor *a = leaf(dt, AG_SHAPE(2, 2), (double[]){1e4, 0, -INFINITY, -1e4});
        ok(values_are(ag_softmax(a, 1), (double[]){1, 0, 0, 1}, 4, tol) &&
               values_are(ag_log_softmax(a, 1), (double[]){0, -1e4, -INFINITY, 0}, 4, tol),
           "%s softmax/log_softmax of [[1e4, 0], [-inf, -1e4]]", dn);
        /* 3-d over dim 1: columns (0, ln 3) -> (1/4, 3/4), (1e4, -1e4) -> (1, 0) */
        ag_tensor *t = leaf(dt, AG_SHAPE(1, 2, 2), (double[]){0, 1e4, LN3, -1e4});
        ag_tensor *yt = ag_softmax(t, 1);
        ok(yt && values_are(yt, (double[]){0.25, 1, 0.75, 0}, 4, tol), "%s softmax of a [1, 2, 2] tensor over dim 1", dn);
        /* dy = [[1, 2], [3, 4]]: column 0 Σ = 1/4 + 9/4 = 5/2, dx = (1/4)(1 - 5/2), (3/4)(3 - 5/2); column 1 dx = 0 */
        ok(backward_with(yt, dy) == AG_OK && values_are(ag_grad(t), (double[]){-0.375, 0, 0.375, 0}, 4, tol),
           "%s softmax' over dim 1 of a 3-d tensor", dn);
        ag_tensor *tl = leaf(dt, AG_SHAPE(1, 2, 2), (double[]){0, 1e4, LN3, -1e4});
        ag_tensor *ytl = ag_log_softmax(tl, -2);
        /* column 0: ln(1/4), ln(3/4); column 1: 0, -2e4.  dx = dy - exp(y)·Σ dy: Σ = 4 and 6 */
        ok(ytl && values_are(ytl, (double[]){-2 * LN2, 0, LN3 - 2 * LN2, -2e4}, 4, tol) && backward_with(ytl, dy) == AG_OK &&
               values_are(ag_grad(tl), (double[]){0, -4, 0, 4}, 4, tol),
           "%s log_softmax and its gradient over dim -2 of a 3-d tensor", dn);
        /* PyTorch gives NaN for a lane that is all -inf (exp(-inf - -inf)); the finite lane is unaffected */
        ag_tensor *n = leaf(dt, AG_SHAPE(2, 2), (double[]){-INFINITY, -INFINITY, 0, 0});
        ok(values_are(ag_softmax(n, 1), (double[]){NAN, NAN, 0.5, 0.5}, 4, tol), "%s softmax of an all -inf row is nan", dn);
        /* a +inf logit makes the max +inf, so x - max is NaN there and the lane sum NaN: all NaN */
        ag_tensor *p = leaf(dt, AG_SHAPE(2, 2), (double[]){INFINITY, 1, 0, LN3});
        ok(values_are(ag_log_softmax(p, 1), (double[]){NAN, NAN, -2 * LN2, LN3 - 2 * LN2}, 4, tol),
           "%s log_softmax of a row holding +inf is nan", dn);
        /* a 0-d input: softmax 1, log_softmax 0 */
        ag_tensor *s = leaf(dt, AG_SCALAR_SHAPE, (double[]){-3});
        ok(ag_item(ag_softmax(s, 0)) == 1 && ag_item(ag_log_softmax(s, -1)) == 0, "%s softmax of a 0-d tensor is 1", dn);
        ag_scope_end();
    }
}

/* ---- errors ------------------------------------------------------------------------------------------ */
static bool says(const char *a, const char *b) { return strstr(ag_last_error(), a) && strstr(ag_last_error(), b); }

static void test_errors(void) {
    ag_scope_begin();
    ag_tensor *x = ag_ones(AG_SHAPE(2, 3), AG_F32);
    int bad = 2;
    ag_clear_error();
    ok(!ag_max_dim(x, 2, false) && ag_last_status() == AG_ERR_INDEX && says("max_dim", "of 2 dims (expected -2 to 1)"), "bad dim: %s", ag_last_error());
    ok(!ag_min_dim(x, -3, true) && says("min_dim", "of 2 dims (expected -2 to 1)"), "bad dim: %s", ag_last_error());
    ok(!ag_argmax(x, 5, false) && says("argmax", "of 2 dims (expected -2 to 1)"), "bad dim: %s", ag_last_error());
    ok(!ag_argmin(x, 2, false) && says("argmin", "of 2 dims (expected -2 to 1)"), "bad dim: %s", ag_last_error());
    ok(!ag_prod_dim(x, 2, false) && says("prod_dim", "of 2 dims (expected -2 to 1)"), "bad dim: %s", ag_last_error());
    ok(!ag_softmax(x, 2) && says("softmax", "of 2 dims (expected -2 to 1)"), "bad dim: %s", ag_last_error());
    ok(!ag_log_softmax(x, -3) && says("log_softmax", "of 2 dims (expected -2 to 1)"), "bad dim: %s", ag_last_error());
    ok(!ag_logsumexp_dims(x, 1, &bad, false) && says("logsumexp", "of 2 dims (expected -2 to 1)"), "bad dim: %s", ag_last_error());
    ok(!ag_var_dims(x, 1, &bad, 1, false) && says("var", "of 2 dims (expected -2 to 1)"), "bad dim: %s", ag_last_error());
    ok(!ag_std_dims(x, 1, &bad, 1, false) && says("std", "of 2 dims (expected -2 to 1)"), "bad dim: %s", ag_last_error());
    ok(!ag_sum_dims(x, 1, &bad, false) && says("sum", "of 2 dims (expected -2 to 1)"), "bad dim: %s", ag_last_error());
    /* a dim listed twice fails alike for n-d tensors and for a 0-d one, whose dims 0 and -1 are one */
    const int twice[2] = {1, -1}, twice0[2] = {0, -1}, zeros[2] = {0, 0};
    ok(!ag_sum_dims(x, 2, twice, false) && ag_last_status() == AG_ERR_ARG && says("sum", "appears twice"), "n-d: %s",
       ag_last_error());
    ag_tensor *s0 = ag_scalar(2, AG_F32);
    ag_clear_error();
    ok(!ag_sum_dims(s0, 2, twice0, false) && ag_last_status() == AG_ERR_ARG && says("sum", "dim -1 appears twice"), "0-d: %s",
       ag_last_error());
    ok(!ag_mean_dims(s0, 2, zeros, true) && ag_last_status() == AG_ERR_ARG && says("mean", "appears twice"), "0-d: %s",
       ag_last_error());
    ok(!ag_logsumexp_dims(s0, 2, twice0, false) && ag_last_status() == AG_ERR_ARG && says("logsumexp", "appears twice"),
       "0-d: %s", ag_last_error());
    ok(!ag_var_dims(s0, 2, zeros, 0, false) && ag_last_status() == AG_ERR_ARG && says("var", "appears twice"), "0-d: %s",
       ag_last_error());
    ok(!ag_std_dims(s0, 2, twice0, 0, false) && ag_last_status() == AG_ERR_ARG && says("std", "appears twice"), "0-d: %s",
       ag_last_error());
    ag_tensor *once = ag_sum_dims(s0, 1, twice0 + 1, true);
    ok(once && ag_ndim(once) == 0 && ag_item(once) == 2, "a 0-d tensor reduced over dim -1 once is itself");
    ag_tensor *e = ag_zeros(AG_SHAPE(0, 3), AG_F64);
    ok(!ag_max(e) && ag_last_status() == AG_ERR_SHAPE && says("max", "[0, 3]"), "empty max: %s", ag_last_error());
    ok(!ag_argmax(e, 0, false) && says("argmax", "[0, 3]"), "empty dim: %s", ag_last_error());
    ag_tensor *me = ag_max_dim(e, 1, false);
    ok(me && ag_numel(me) == 0, "max_dim over a non-empty dim of an empty tensor is empty");
    ag_tensor *i = ag_zeros(AG_SHAPE(3), AG_I64);
    ok(!ag_argmax(i, 0, false) && ag_last_status() == AG_ERR_DTYPE && says("argmax", "int64"), "dtype: %s", ag_last_error());
    ag_clear_error();
    ok(!ag_max(NULL) && !ag_softmax(NULL, 0) && !ag_var(NULL, 1) && !ag_prod_dim(NULL, 0, false) &&
           !ag_logsumexp_dims(NULL, 1, &bad, false) && !ag_argmax(NULL, 0, false) && ag_last_status() == AG_OK,
       "NULL inputs give NULL without a message");
    ag_scope_end();
}

/* ---- oneDNN float32 softmax against the reference kernel --------------------------------------------- */
/* Runs (log_)softmax of x along dim forward and backward with backend b; writes y and dx. */
static bool run_softmax(ag__softmax_backend b, bool is_log, const float *xv, ag_shape shape, int dim, const float *dyv,
                        float *y, float *dx) {
    ag__softmax_backend old = ag__softmax_set_backend(b);
    ag_scope_begin();
    ag_tensor *x = ag_requires_grad_(ag_from_data(xv, shape, AG_F32), true);
    ag_tensor *out = is_log ? ag_log_softmax(x, dim) : ag_softmax(x, dim);
    int64_t n = ag__numel(shape.ndim, shape.dim);
    bool good = out && ag_copy_to(out, y, n, AG_F32) == AG_OK &&
                ag_backward_ex(out, ag_from_data(dyv, shape, AG_F32), false) == AG_OK &&
                ag_copy_to(ag_grad(x), dx, n, AG_F32) == AG_OK;
    ag_scope_end();
    ag__softmax_set_backend(old);
    return good;
}

/* Largest |a - b| / max(1, |b|), with NaN/inf required to match exactly. */
static double worst_diff(const float *a, const float *b, int64_t n) {
    double w = 0;
    for (int64_t i = 0; i < n; i++) {
        if (isnan(b[i]) || isinf(b[i])) {
            if (!(isnan(a[i]) && isnan(b[i])) && a[i] != b[i]) return INFINITY;
            continue;
        }
        double d = fabs((double)a[i] - b[i]) / fmax(1, fabs((double)b[i]));
        w = isnan(d) ? INFINITY : fmax(w, d);
    }
    return w;
}

static void test_onednn_softmax(void) {
    struct { ag_shape shape; int dim; } cases[] = {
        {AG_SHAPE(64, 100), -1}, /* the automatic path's shape: last dim, 6400 elements */
        {AG_SHAPE(300, 10), 1},  /* short rows */
        {AG_SHAPE(4, 50, 6), 1}, /* a middle dim: softmax_v2 for both */
        {AG_SHAPE(7, 3), 0},
    };
    ag_manual_seed(7);
    for (int c = 0; c < 4; c++) {
        int64_t n = ag__numel(cases[c].shape.ndim, cases[c].shape.dim);
        float *x = malloc(sizeof(float) * (size_t)n * 6), *dy = x + n, *y1 = x + 2 * n, *y2 = x + 3 * n, *g1 = x + 4 * n,
              *g2 = x + 5 * n;
        for (int64_t i = 0; i < n; i++) {
            x[i] = (float)(10 * ag__rand_normal());
            dy[i] = (float)ag__rand_normal();
        }
        /* extreme logits next to finite ones (never a whole lane), and lanes holding a NaN or +inf,
         * which PyTorch (and the reference kernel) turn wholly into NaN */
        x[0] = 1e8f, x[1] = -1e8f, x[2] = -INFINITY, x[3] = 1e4f, x[n - 1] = -1e4f;
        x[n / 2] = NAN, x[n / 3] = INFINITY;
        char s[AG_SHAPE_STR];
        ag__shape_str(s, cases[c].shape.ndim, cases[c].shape.dim);
        for (int lg = 0; lg < 2; lg++) {
            const char *name = lg ? "log_softmax" : "softmax";
            bool ran = run_softmax(AG__SOFTMAX_ONEDNN, lg, x, cases[c].shape, cases[c].dim, dy, y1, g1) &&
                       run_softmax(AG__SOFTMAX_REFERENCE, lg, x, cases[c].shape, cases[c].dim, dy, y2, g2);
            ok(ran, "%s %s dim %d runs on both backends%s%s", name, s, cases[c].dim, ran ? "" : ": ", ran ? "" : ag_last_error());
            double wy = ran ? worst_diff(y1, y2, n) : INFINITY, wg = ran ? worst_diff(g1, g2, n) : INFINITY;
            /* oneDNN's exp is within a few ulps; its log (softmax_v2 log_softmax, used for a dim
             * other than the last) is off by up to ~4e-6 absolute near 0 */
            bool last = cases[c].dim == -1 || cases[c].dim == cases[c].shape.ndim - 1;
            double tol = lg && !last ? 2e-5 : 2e-6;
            ok(wy < tol, "oneDNN %s %s dim %d forward matches the reference (worst %.2g)", name, s, cases[c].dim, wy);
            ok(wg < 2 * tol, "oneDNN %s %s dim %d backward matches the reference (worst %.2g)", name, s, cases[c].dim, wg);
        }
        free(x);
    }
    /* logits in [-2, 2] over 10 classes, where oneDNN's own log_softmax is off by ~4e-6: the
     * automatic path (the exp route) stays within a few ulps of the reference */
    {
        int64_t n = 1024 * 10;
        float *x = malloc(sizeof(float) * (size_t)n * 5), *y1 = x + n, *y2 = x + 2 * n, *g1 = x + 3 * n, *g2 = x + 4 * n;
        for (int64_t i = 0; i < n; i++) x[i] = (float)(-2 + 4 * ag__rand_uniform());
        bool ran = run_softmax(AG__SOFTMAX_AUTO, true, x, AG_SHAPE(1024, 10), 1, x, y1, g1) &&
                   run_softmax(AG__SOFTMAX_REFERENCE, true, x, AG_SHAPE(1024, 10), 1, x, y2, g2);
        double wy = ran ? worst_diff(y1, y2, n) : INFINITY, wg = ran ? worst_diff(g1, g2, n) : INFINITY;
        ok(wy < 5e-7 && wg < 1e-6, "log_softmax [1024, 10] of logits in [-2, 2] matches the reference (worst %.2g, %.2g)", wy, wg);
        free(x);
    }
    /* the automatic choice takes oneDNN for the first case and reuses its primitives */
    int64_t n = 6400;
    float *x = calloc((size_t)n * 3, sizeof(float)), *y = x + n, *g = x + 2 * n;
    ok(run_softmax(AG__SOFTMAX_AUTO, false, x, AG_SHAPE(64, 100), -1, x, y, g), "automatic softmax [64, 100] runs");
    long made = ag__dnnl_primitives_created();
    for (int r = 0; r < 5; r++) run_softmax(AG__SOFTMAX_AUTO, false, x, AG_SHAPE(64, 100), -1, x, y, g);
    if (ag_onednn_enabled())
        ok(made > 0 && ag__dnnl_primitives_created() == made, "repeated calls reuse the cached primitives (%ld made)", made);
    else /* AGRAD_ONEDNN=0 (the valgrind run): every path above ran the C kernel */
        ok(made == 0, "with oneDNN disabled no primitive is made # SKIP primitive reuse needs oneDNN");
    ok(fabsf(y[0] - 0.01f) < 1e-9f && fabsf(y[n - 1] - 0.01f) < 1e-9f, "softmax of zeros over 100 is 1/100");
    free(x);
}

/* ---- sum's gradient as a broadcast view ------------------------------------------------- */
/* The functions below feed a reduction's gradient (a stride-0 view) into adjoints that
 * take it as is (unary ops), into ones that need a copy (mul, matmul), into a node with
 * two consumers, and into a leaf. */
static ag_tensor *f_tanh_sum(ag_tensor *const *in, int n, void *ctx) { (void)n, (void)ctx; return ag_sum(ag_tanh(in[0])); }
static ag_tensor *f_sigmoid_mean1(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    return ag_mean_dim(ag_sigmoid(in[0]), 1, false);
}
static ag_tensor *f_two_consumers(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    ag_tensor *y = ag_exp(in[0]);
    return ag_add(ag_sum_dim(ag_tanh(y), 0, true), ag_mul(ag_sum(y), ag_sum_dim(y, 0, false)));
}
static ag_tensor *f_matmul_sum(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    return ag_sum_dim(ag_matmul(in[0], ag_transpose(in[0], 0, 1)), 0, false);
}
static ag_tensor *f_leaf_sum(ag_tensor *const *in, int n, void *ctx) { (void)n, (void)ctx; return ag_mean(in[0]); }

static void test_broadcast_gradients(void) {
    ag_fn fns[] = {f_tanh_sum, f_sigmoid_mean1, f_two_consumers, f_matmul_sum, f_leaf_sum};
    const char *names[] = {"tanh(x).sum()", "sigmoid(x).mean(1)", "two consumers of a summed node",
                           "matmul(x, xT).sum(0)", "x.mean() on a leaf"};
    ag_scope_begin();
    ag_manual_seed(5);
    for (int k = 0; k < 5; k++) {
        ag_tensor *x = ag_requires_grad_(ag_mul_scalar(ag_randn(AG_SHAPE(3, 4), AG_F64), 0.5), true);
        ag_gradcheck_report r;
        ag_status st = ag_gradcheck(fns[k], NULL, &x, 1, NULL, &r);
        ok(st == AG_OK, "gradcheck %s (%lld Jacobian entries, worst |analytic - numeric| %.1e)", names[k],
           (long long)r.checked, fabs(r.analytic - r.numeric));
    }
    ag_tensor *x = ag_requires_grad_(ag_randn(AG_SHAPE(3, 4), AG_F32), true);
    ag_tensor *y = ag_retain_grad(ag_tanh(x));
    ag_backward(ag_sum(y));
    ok(ag_is_contiguous(ag_grad(y)) && ag_is_contiguous(ag_grad(x)) && ag_item(ag_sum(ag_grad(y))) == 12,
       "a retained gradient and a leaf's .grad stay contiguous tensors of their own");
    ag_backward(ag_sum(ag_tanh(x)));
    ag_tensor *t = ag_tanh(ag_detach(x));
    double want = 2 * ag_item(ag_sum(ag_sub(ag_scalar(1, AG_F32), ag_mul(t, t))));
    ok(fabs(ag_item(ag_sum(ag_grad(x))) - want) < 1e-4, "a second backward accumulates into it");
    ag_scope_end();
}

/* ---- float32 reductions at 10^7 elements against float64 references --------------------------------
 * Every reduction path over 10^7 float32 values (0.1 + U[0, 1)), along the innermost, a middle and
 * the outermost dim, over all elements, and through transposed (strided) views: each result must
 * be within ULPS float32 ulps of the float64 reference.  A float32 accumulator drifts by
 * hundreds of ulps here (the mean along dim 0 of [10^6, 4] of 0.1f came out 0.10096).  All views
 * share one 40 MB tensor (peak RSS 180 MB).  They take about 4 s of CPU and are skipped
 * under valgrind. */
#define BIG ((int64_t)10000000)
#define ULPS 1.0

/* |got - want| in float32 ulps at want (the spacing of float32 values next to |want|). */
static double ulps(double got, double want) {
    if (got == want) return 0;
    if (isnan(got) || isnan(want)) return INFINITY;
    int e;
    frexp(want, &e);
    return fabs(got - want) / ldexp(1, e - 24);
}

/* A reduction geometry: the tensor is seen as [A, B, C] with element strides sa, sb, sc from
 * data, reduced over B; output (a, c) is element a·C + c of the result. */
typedef struct geom3 {
    const char *name;
    const float *data;
    int64_t A, B, C, sa, sb, sc;
} geom3;

/* Float64 references of sum, mean, var (correction 1) and logsumexp per output. */
static void reference3(const geom3 *g, double *sum, double *var, double *lse) {
    for (int64_t a = 0; a < g->A; a++)
        for (int64_t c = 0; c < g->C; c++) {
            const float *p = g->data + a * g->sa + c * g->sc;
            double s = 0, m = -INFINITY;
            for (int64_t b = 0; b < g->B; b++) {
                s += p[b * g->sb];
                m = fmax(m, p[b * g->sb]);
            }
            double mean = s / (double)g->B, q = 0, e = 0;
            for (int64_t b = 0; b < g->B; b++) {
                double d = p[b * g->sb] - mean;
                q += d * d;
                e += exp(p[b * g->sb] - m);
            }
            sum[a * g->C + c] = s;
            var[a * g->C + c] = q / (double)(g->B - 1);
            lse[a * g->C + c] = m + log(e);
        }
}

/* The worst ulps of y's n values against want (with f applied to want). */
static double worst_ulps(const ag_tensor *y, const double *want, int64_t n, double (*f)(double, double), double arg) {
    if (!y || ag_numel(y) != n || ag_dtype_of(y) != AG_F32) return INFINITY;
    const float *v = (const float *)ag__ptr(y);
    double w = 0;
    for (int64_t k = 0; k < n; k++) w = fmax(w, ulps(v[k], f ? f(want[k], arg) : want[k]));
    return w;
}
static double divide(double v, double d) { return v / d; }
static double root(double v, double d) { (void)d; return sqrt(v); }

static void test_reduce_accuracy(void) {
    ag_scope_begin();
    ag_manual_seed(11);
    ag_tensor *x = ag_add_scalar_(ag_rand(AG_SHAPE(BIG), AG_F32), 0.1) /* in place: one 40 MB tensor */;
    const float *d = (const float *)ag__ptr(x);
    ag_tensor *m2 = ag_view(x, AG_SHAPE(1000, 10000)), *t2 = ag_transpose(m2, 0, 1);
    const int d0 = 0, d1 = 1;
    /* name, tensor, dim (-9: all elements), geometry */
    struct {
        ag_tensor *t;
        int dim;
        geom3 g;
    } cases[] = {
        {x, -9, {"all elements of [1e7]", d, 1, BIG, 1, 0, 1, 0}},
        {m2, 1, {"the innermost dim of [1000, 10000]", d, 1000, 10000, 1, 10000, 1, 0}},
        {ag_view(x, AG_SHAPE(2500000, 4)), 0, {"the outermost dim of [2.5e6, 4]", d, 1, 2500000, 4, 0, 4, 1}},
        {ag_view(x, AG_SHAPE(10, 1000000)), 0, {"the outermost dim of [10, 1e6]", d, 1, 10, 1000000, 0, 1000000, 1}},
        {ag_view(x, AG_SHAPE(100, 10000, 10)), 1, {"the middle dim of [100, 10000, 10]", d, 100, 10000, 10, 100000, 10, 1}},
        {t2, 1, {"the strided dim 1 of a transposed [10000, 1000]", d, 10000, 1000, 1, 1, 10000, 0}},
        {t2, 0, {"the outer dim 0 of a transposed [10000, 1000]", d, 1, 10000, 1000, 0, 1, 10000}},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        const geom3 *g = &cases[k].g;
        ag_tensor *t = cases[k].t;
        const int *dim = cases[k].dim == 0 ? &d0 : &d1;
        const bool all = cases[k].dim == -9;
        int64_t n = g->A * g->C;
        double *ref = malloc(sizeof(double) * (size_t)(3 * n)), *var = ref + n, *lse = ref + 2 * n;
        reference3(g, ref, var, lse);
        ag_scope_begin();
        double w = worst_ulps(all ? ag_sum(t) : ag_sum_dims(t, 1, dim, false), ref, n, NULL, 0);
        ok(w <= ULPS, "float32 sum over %s: within %.2f ulps of float64", g->name, w);
        w = worst_ulps(all ? ag_mean(t) : ag_mean_dims(t, 1, dim, false), ref, n, divide, (double)g->B);
        ok(w <= ULPS, "float32 mean over %s: within %.2f ulps", g->name, w);
        w = worst_ulps(all ? ag_var(t, 1) : ag_var_dims(t, 1, dim, 1, false), var, n, NULL, 0);
        ok(w <= ULPS, "float32 var over %s: within %.2f ulps", g->name, w);
        w = worst_ulps(all ? ag_std(t, 1) : ag_std_dims(t, 1, dim, 1, false), var, n, root, 0);
        ok(w <= ULPS, "float32 std over %s: within %.2f ulps", g->name, w);
        w = worst_ulps(ag_logsumexp_dims(t, 1, all ? &d0 : dim, false), lse, n, NULL, 0);
        ok(w <= ULPS, "float32 logsumexp over %s: within %.2f ulps", g->name, w);
        ag_scope_end();
        free(ref);
    }
    ag_scope_end();
    ag_free_caches(); /* the 40 MB blocks the cache kept */
}

/* The reproducers, on expanded views (no memory): float32 accumulation got the mean of
 * 0.1f along dim 0 of [10^6, 4] as 0.10096 (0.1088 for 10^7 rows), stuck at 2^24 summing 2^25
 * ones along dim 0, and gave a constant's variance along dim 0 as 7.5e-5.  Under valgrind
 * (big false) the sizes are smaller. */
static void test_reduce_reproducers(bool big) {
    ag_scope_begin();
    ag_tensor *c = ag_full(AG_SHAPE(1, 4), 0.1, AG_F32);
    const int64_t rows[2] = {1000000, 10000000};
    for (int k = 0; k < 1 + big; k++) {
        ag_tensor *m = ag_mean_dim(ag_expand(c, AG_SHAPE(rows[k], 4)), 0, false);
        ok(m && ag_numel(m) == 4 && ag_get(m, (int64_t[]){0}) == (double)0.1f && ag_get(m, (int64_t[]){3}) == (double)0.1f,
           "float32 mean of 0.1f along dim 0 of [%lld, 4] is 0.1f (%.9g)", (long long)rows[k], m ? ag_get(m, (int64_t[]){0}) : NAN);
    }
    const int64_t n = big ? (int64_t)1 << 25 : (int64_t)1 << 20; /* 2^20 already lost float32's 2^-23 steps */
    ag_tensor *s = ag_sum_dim(ag_expand(ag_full(AG_SHAPE(1, 2), 1 + 0x1p-23, AG_F32), AG_SHAPE(n, 2)), 0, false);
    ok(s && ag_get(s, (int64_t[]){1}) == (double)n * (1 + 0x1p-23),
       "float32 sum of %lld copies of 1 + 2^-23 along dim 0 is exact (%.9g)", (long long)n, s ? ag_get(s, (int64_t[]){1}) : NAN);
    if (big) {
        s = ag_sum_dim(ag_expand(ag_ones(AG_SHAPE(1, 2), AG_F32), AG_SHAPE((int64_t)1 << 25, 2)), 0, false);
        ok(s && ag_get(s, (int64_t[]){1}) == 33554432.0, "float32 sum of 2^25 ones along dim 0 is 2^25 (%.9g)",
           s ? ag_get(s, (int64_t[]){1}) : NAN);
    }
    ag_tensor *v = ag_var_dims(ag_expand(c, AG_SHAPE(rows[big], 4)), 1, (int[]){0}, 1, false);
    ok(v && ag_get(v, (int64_t[]){0}) >= 0 && ag_get(v, (int64_t[]){0}) < 1e-20,
       "float32 var of a constant along dim 0 of [%lld, 4] is 0 (%.3g)", (long long)rows[big], v ? ag_get(v, (int64_t[]){0}) : NAN);
    /* std of values near 2e19: the squared deviations (4e38) overflow float32, not float64 */
    ag_tensor *huge = ag_requires_grad_(ag_from_data((float[]){0, 4e19f}, AG_SHAPE(2), AG_F32), true);
    ag_tensor *sd = ag_std(huge, 0);
    ok(sd && ag_item(sd) == 2e19f, "float32 std of [0, 4e19] is 2e19 (%.9g), not inf", sd ? ag_item(sd) : NAN);
    ok(ag_backward(sd) == AG_OK && values_are(ag_grad(huge), (double[]){-0.5, 0.5}, 2, 1e-7), "and its gradient is ∓1/2");
    ag_tensor *sdd = ag_std_dims(ag_from_data((float[]){-3e19f, 3e19f, 1, 1}, AG_SHAPE(2, 2), AG_F32), 1, (int[]){1}, 1, false);
    ok(sdd && ulps(ag_get(sdd, (int64_t[]){0}), sqrt(2.0) * 3e19f) <= 0.5 && ag_get(sdd, (int64_t[]){1}) == 0,
       "float32 std_dims along dim 1 of [[-3e19, 3e19], [1, 1]] is [4.24e19, 0]");
    ag_scope_end();
}

/* prod multiplies in float64: partial products of float32 values may leave float32's range
 * (1e30·1e30) when the product does not, and its gradient stays finite there. */
static void test_prod_accuracy(void) {
    ag_scope_begin();
    ag_tensor *x = ag_requires_grad_(ag_from_data((float[]){1e30f, 1e30f, 1e-30f, 1e-30f}, AG_SHAPE(4), AG_F32), true);
    double want = (double)1e30f * 1e30f * 1e-30f * 1e-30f;
    ag_tensor *p = ag_prod(x);
    ok(p && ulps(ag_item(p), want) <= 0.5, "float32 prod of [1e30, 1e30, 1e-30, 1e-30] is %.9g (not inf)", p ? ag_item(p) : NAN);
    ag_status st = ag_backward(p);
    double g0 = st ? NAN : ag_get(ag_grad(x), (int64_t[]){0}), g3 = st ? NAN : ag_get(ag_grad(x), (int64_t[]){3});
    ok(ulps(g0, want / 1e30f) <= 1 && ulps(g3, want / 1e-30f) <= 1, "and its gradient y/x is finite: [%.3g, ..., %.3g]", g0, g3);
    /* one zero: the safe path's Π_{j≠k} x_j; for k = 2 it is 1e30·1e30·0 = 0, where float32 made inf·0 = NaN */
    ag_tensor *z = ag_requires_grad_(ag_from_data((float[]){1e30f, 1e30f, 5, 0}, AG_SHAPE(1, 4), AG_F32), true);
    ag_tensor *pz = ag_prod_dim(z, 1, false);
    ok(pz && ag_item(pz) == 0 && backward_with(pz, NULL) == AG_OK &&
           values_are(ag_grad(z), (double[]){0, 0, 0, INFINITY}, 4, 0),
       "float32 prod_dim of [1e30, 1e30, 5, 0]: gradient [0, 0, 0, inf] (5e60 overflows), no NaN");
    /* 10^6 factors within 1e-4 of 1, all elements and along dim 0 */
    int64_t n = 1000000;
    ag_tensor *f = ag_add_scalar(ag_mul_scalar(ag_rand(AG_SHAPE(n), AG_F32), 2e-4), 1 - 1e-4);
    const float *fv = (const float *)ag__ptr(f);
    double all = 1, col[4] = {1, 1, 1, 1};
    for (int64_t i = 0; i < n; i++) {
        all *= fv[i];
        col[i % 4] *= fv[i];
    }
    double w = ulps(ag_item(ag_prod(f)), all);
    ok(w <= ULPS, "float32 prod of 10^6 factors near 1: within %.2f ulps of float64", w);
    w = worst_ulps(ag_prod_dim(ag_view(f, AG_SHAPE(n / 4, 4)), 0, false), col, 4, NULL, 0);
    ok(w <= ULPS, "float32 prod_dim along dim 0 of [250000, 4]: within %.2f ulps", w);
    ag_scope_end();
}

/* softmax's denominators: the exp route for long rows, softmax_v2 for rows of 10^4, the C
 * kernel along dim 0.  oneDNN's exp is a few ulps off and its softmax_v2 6 to 9 ulps on rows of
 * any length it is given (at most 16384: beyond, its float32 sums drift to 547 ulps at 10^7). */
#define SOFTMAX_ULPS 10.0
/* Per lane (a, c) of g: its max m and Σ exp(x - m), in float64. */
static void lane_stats(const geom3 *g, double *m, double *s) {
    for (int64_t a = 0; a < g->A; a++)
        for (int64_t c = 0; c < g->C; c++) {
            const float *p = g->data + a * g->sa + c * g->sc;
            double mx = -INFINITY, e = 0;
            for (int64_t b = 0; b < g->B; b++) mx = fmax(mx, p[b * g->sb]);
            for (int64_t b = 0; b < g->B; b++) e += exp(p[b * g->sb] - mx);
            m[a * g->C + c] = mx;
            s[a * g->C + c] = e;
        }
}

/* The worst ulps of y = softmax (log_softmax if is_log) over g's lanes against float64. */
static double worst_softmax(const ag_tensor *y, const geom3 *g, const double *m, const double *s, bool is_log) {
    if (!y || ag_numel(y) != g->A * g->B * g->C) return INFINITY;
    const float *v = (const float *)ag__ptr(y);
    double w = 0;
    for (int64_t a = 0; a < g->A; a++)
        for (int64_t c = 0; c < g->C; c++) {
            const float *p = g->data + a * g->sa + c * g->sc;
            const double mx = m[a * g->C + c], e = s[a * g->C + c], ls = log(e);
            for (int64_t b = 0; b < g->B; b++) {
                const double d = p[b * g->sb] - mx, got = v[(a * g->B + b) * g->C + c];
                w = fmax(w, is_log ? ulps(got, d - ls) : ulps(got, exp(d) / e));
            }
        }
    return w;
}

static void test_softmax_accuracy(void) {
    ag_scope_begin();
    ag_manual_seed(12);
    ag_tensor *x = ag_add_scalar_(ag_rand(AG_SHAPE(BIG), AG_F32), 0.1) /* in place: one 40 MB tensor */;
    const float *d = (const float *)ag__ptr(x);
    ag_tensor *m2 = ag_view(x, AG_SHAPE(1000, 10000));
    struct {
        ag_tensor *t;
        int dim;
        geom3 g;
    } cases[] = {
        {ag_view(x, AG_SHAPE(1, BIG)), 1, {"a row of 1e7", d, 1, BIG, 1, 0, 1, 0}},
        {m2, 1, {"rows of [1000, 10000]", d, 1000, 10000, 1, 10000, 1, 0}},
        {m2, 0, {"dim 0 of [1000, 10000]", d, 1, 1000, 10000, 0, 10000, 1}},
        {ag_transpose(m2, 0, 1), 1, {"strided rows of a transposed [10000, 1000]", d, 10000, 1000, 1, 1, 10000, 0}},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        const geom3 *g = &cases[k].g;
        double *m = malloc(sizeof(double) * (size_t)(2 * g->A * g->C)), *e = m + g->A * g->C;
        lane_stats(g, m, e);
        for (int lg = 0; lg < 2; lg++) { /* one 40 MB output at a time */
            ag_scope_begin();
            ag_tensor *y = lg ? ag_log_softmax(cases[k].t, cases[k].dim) : ag_softmax(cases[k].t, cases[k].dim);
            double w = worst_softmax(y, g, m, e, lg);
            ok(w <= SOFTMAX_ULPS, "float32 %s over %s: within %.2f ulps of float64", lg ? "log_softmax" : "softmax", g->name, w);
            ag_scope_end();
            ag_free_caches(); /* the block cache would keep the last outputs */
        }
        free(m);
    }
    /* softmax's backward sums Σ dy·y over the row: with dy = 1, dx = y·(1 - Σ y) is within float32
     * rounding of 0 (a float32 sum of 10^7 terms drifts by ~1e-4) */
    ag_tensor *r = ag_requires_grad_(ag_view(x, AG_SHAPE(1, BIG)), true);
    ag_tensor *y = ag_softmax(r, 1);
    double worst = INFINITY;
    if (y && ag_backward_ex(y, ag_expand(ag_ones(AG_SHAPE(1, 1), AG_F32), AG_SHAPE(1, BIG)), false) == AG_OK) {
        const float *g = (const float *)ag__ptr(ag_grad(r)), *yv = (const float *)ag__ptr(y);
        worst = 0;
        for (int64_t i = 0; i < BIG; i++) worst = fmax(worst, fabs(g[i]) / yv[i]);
    }
    ok(worst < 1e-6, "float32 softmax backward over a row of 1e7 with dy = 1: |dx| <= %.2g·y", worst);
    ag_scope_end();
    ag_free_caches(); /* the 40 MB blocks the cache kept */
}

/* batch_norm's and layer_norm's statistics (float64 already): the running statistics with
 * momentum 1 are the batch's mean and unbiased variance; the outputs (x - μ)/σ. */
static double worst_normalised(const ag_tensor *y, const geom3 *g, double eps) {
    if (!y || ag_numel(y) != BIG) return INFINITY;
    const float *v = (const float *)ag__ptr(y);
    double w = 0;
    for (int64_t a = 0; a < g->A; a++)
        for (int64_t c = 0; c < g->C; c++) {
            const float *p = g->data + a * g->sa + c * g->sc;
            double s = 0, q = 0;
            for (int64_t b = 0; b < g->B; b++) s += p[b * g->sb];
            const double m = s / (double)g->B;
            for (int64_t b = 0; b < g->B; b++) q += (p[b * g->sb] - m) * (p[b * g->sb] - m);
            const double r = 1 / sqrt(q / (double)g->B + eps);
            for (int64_t b = 0; b < g->B; b++)
                w = fmax(w, ulps(v[a * g->sa + b * g->sb + c * g->sc], (p[b * g->sb] - m) * r));
        }
    return w;
}

static void test_norm_accuracy(void) {
    ag_scope_begin();
    ag_manual_seed(13);
    ag_tensor *x = ag_add_scalar_(ag_rand(AG_SHAPE(BIG), AG_F32), 0.1) /* in place: one 40 MB tensor */;
    const float *d = (const float *)ag__ptr(x);
    /* [N, C, L] = [1000, 10, 1000] and [N, C] = [10^6, 10]: per channel c the values x[n, c, l] */
    struct {
        ag_shape shape;
        geom3 g; /* A: channels (as C of the geometry below), B: the N·L values */
    } bn[] = {
        {AG_SHAPE(1000, 10, 1000), {"[1000, 10, 1000]", d, 1, 1000, 10, 0, 10000, 1000}},
        {AG_SHAPE(1000000, 10), {"[1e6, 10]", d, 1, 1000000, 10, 0, 10, 1}},
    };
    for (int k = 0; k < 2; k++) {
        ag_scope_begin();
        ag_tensor *rm = ag_zeros(AG_SHAPE(10), AG_F32), *rv = ag_zeros(AG_SHAPE(10), AG_F32);
        ag_tensor *y = ag_batch_norm(ag_view(x, bn[k].shape), rm, rv, NULL, NULL, true, 1.0, 0);
        double sum[10], var[10], lse[10], mean[10];
        geom3 g = bn[k].g;
        if (k == 0) { /* per channel: L contiguous values for each n; walk them as one lane */
            for (int c = 0; c < 10; c++) {
                double s = 0, q = 0;
                for (int64_t n = 0; n < 1000; n++)
                    for (int64_t l = 0; l < 1000; l++) s += d[n * 10000 + c * 1000 + l];
                mean[c] = s / 1e6;
                for (int64_t n = 0; n < 1000; n++)
                    for (int64_t l = 0; l < 1000; l++) q += (d[n * 10000 + c * 1000 + l] - mean[c]) * (d[n * 10000 + c * 1000 + l] - mean[c]);
                var[c] = q / (1e6 - 1);
            }
        } else {
            reference3(&g, sum, var, lse);
            for (int c = 0; c < 10; c++) mean[c] = sum[c] / 1e6;
        }
        double wm = worst_ulps(rm, mean, 10, NULL, 0), wv = worst_ulps(rv, var, 10, NULL, 0);
        ok(wm <= ULPS && wv <= ULPS, "float32 batch_norm %s: running mean and variance within %.2f, %.2f ulps of float64",
           g.name, wm, wv);
        if (k == 1) {
            double wy = worst_normalised(y, &g, 0);
            ok(wy <= 2, "float32 batch_norm %s: (x - μ)/σ within %.2f ulps", g.name, wy);
        }
        ag_scope_end();
    }
    ag_tensor *ln = ag_layer_norm(ag_view(x, AG_SHAPE(10, 1000000)), AG_SHAPE(1000000), NULL, NULL, 1e-5);
    const geom3 g = {"[10, 1e6]", d, 10, 1000000, 1, 1000000, 1, 0};
    double w = worst_normalised(ln, &g, 1e-5);
    ok(w <= 2, "float32 layer_norm over the last dim of %s: (x - μ)/√(σ² + ε) within %.2f ulps of float64", g.name, w);
    ag_scope_end();
    ag_free_caches(); /* the 40 MB blocks the cache kept */
}

/* Sums of gradients over broadcast rows (ag__sum_to): add's, expand's and linear's bias; and the
 * losses' reductions (mse's mean, cross_entropy's log Σ exp over 10^7 classes). */
static void test_grad_sum_accuracy(void) {
    ag_scope_begin();
    ag_manual_seed(14);
    ag_tensor *x = ag_add_scalar_(ag_rand(AG_SHAPE(BIG), AG_F32), 0.1) /* in place: one 40 MB tensor */;
    const float *d = (const float *)ag__ptr(x);
    ag_tensor *x2 = ag_view(x, AG_SHAPE(2500000, 4));
    const geom3 g = {"", d, 1, 2500000, 4, 0, 4, 1};
    double cols[4], var[4], lse[4];
    reference3(&g, cols, var, lse);
    ag_scope_begin(); /* each step in a scope of its own: one 40 MB temporary at a time */
    ag_tensor *b = ag_requires_grad_(ag_zeros(AG_SHAPE(4), AG_F32), true);
    ag_status st = ag_backward_ex(ag_add(ag_detach(x2), b), x2, false);
    double w = st ? INFINITY : worst_ulps(ag_grad(b), cols, 4, NULL, 0);
    ag_scope_end();
    ok(w <= ULPS, "float32 add's broadcast gradient summed over 2.5e6 rows: within %.2f ulps of float64", w);
    ag_scope_begin();
    ag_tensor *e = ag_requires_grad_(ag_zeros(AG_SHAPE(1, 4), AG_F32), true);
    st = ag_backward_ex(ag_expand(e, AG_SHAPE(2500000, 4)), x2, false);
    w = st ? INFINITY : worst_ulps(ag_grad(e), cols, 4, NULL, 0);
    ag_scope_end();
    ok(w <= ULPS, "float32 expand's gradient summed over 2.5e6 rows: within %.2f ulps", w);
    ag_scope_begin();
    ag_tensor *lb = ag_requires_grad_(ag_zeros(AG_SHAPE(4), AG_F32), true);
    ag_tensor *lw = ag_zeros(AG_SHAPE(4, 1), AG_F32);
    st = ag_backward_ex(ag_linear(ag_zeros(AG_SHAPE(2500000, 1), AG_F32), lw, lb), x2, false);
    w = st ? INFINITY : worst_ulps(ag_grad(lb), cols, 4, NULL, 0);
    ag_scope_end();
    ok(w <= ULPS, "float32 linear's bias gradient summed over 2.5e6 rows: within %.2f ulps", w);
    /* mse_loss(x, 0) = mean x² */
    double sq = 0, m = -INFINITY, s = 0;
    for (int64_t i = 0; i < BIG; i++) {
        sq += (double)(d[i] * d[i]); /* x² is rounded to float32 before the mean, as in the loss */
        m = fmax(m, d[i]);
    }
    for (int64_t i = 0; i < BIG; i++) s += exp(d[i] - m);
    ag_free_caches();
    ag_scope_begin();
    w = ulps(ag_item(ag_mse_loss(x, ag_zeros(AG_SHAPE(1), AG_F32), NULL)), sq / (double)BIG);
    ag_scope_end();
    ag_free_caches();
    ok(w <= ULPS, "float32 mse_loss over 1e7 elements: within %.2f ulps", w);
    /* cross_entropy of one row of 10^7 logits, target 0: log Σ exp(x) - x[0] */
    ag_scope_begin();
    w = ulps(ag_item(ag_cross_entropy(ag_view(x, AG_SHAPE(1, BIG)), ag_zeros(AG_SHAPE(1), AG_I64), NULL)),
             m + log(s) - d[0]);
    ag_scope_end();
    ok(w <= ULPS, "float32 cross_entropy over 1e7 classes: within %.2f ulps", w);
    ag_scope_end();
    ag_free_caches(); /* the 40 MB blocks the cache kept */
}

int main(void) {
    test_max_all();
    test_max_dim();
    test_argmax();
    test_var_std();
    test_prod();
    test_logsumexp();
    test_softmax();
    test_errors();
    test_onednn_softmax();
    test_broadcast_gradients();
    test_reduce_reproducers(!RUNNING_ON_VALGRIND);
    test_prod_accuracy();
    if (RUNNING_ON_VALGRIND) { /* 10^7 elements: minutes under memcheck, and nothing it would see */
        ok(1, "the float32 accuracy checks at 10^7 elements # SKIP under valgrind");
    } else {
        test_reduce_accuracy();
        test_softmax_accuracy();
        test_norm_accuracy();
        test_grad_sum_accuracy();
    }
    ok(ag_live_tensors() == 0, "no tensor outlives the tests (%ld live)", ag_live_tensors());
    return tap_done();
}

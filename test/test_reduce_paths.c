/*
 * The fast paths of the reductions and normalisations (sum and mean over a middle run of dims,
 * the blocked and row softmax / log_softmax kernels and their adjoints, the vectorised and
 * threaded layer_norm, float32 vector_norm of orders 1 and 2 in one pass, amax/amin's vectorised
 * scans, NaN included) against the reference loops (AG_BACKEND_REFERENCE: plain loops on the
 * calling thread), along the innermost, outermost and middle dims and over several dims, on
 * contiguous and strided (permuted, sliced) float32 and float64 inputs; two threads against one
 * (within float tolerance) and two threads twice (bit for bit); empty and 0-d inputs.
 * The reductions, layer_norm and group_norm (forward and gradients) are also checked against float64 loops
 * written here, as are prod and prod_dim on lanes split over 1, 2 and 3 threads in every way (and, on
 * transposed and permuted inputs, in the order their memory layout gives), with
 * zeros, NaN and inf, and on strided, expanded and empty inputs.  The float32 accuracy of long sums against float64 is test_reduce.c's
 * test_reduce_accuracy.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "agrad/agrad.h"
#include "core/internal.h"
#include "core/parallel.h"
#include "core/sum.h"
#include "core/sum_pairs.h"
#include "ops/softmax.h"
#include "ops/vexpf.h"
#include "failing_alloc.h"
#include "quads_ref.h"
#include "tap.h"

/* The input of the thread checks: large enough that the fast paths split it over threads
 * (3·300·200 > AG_PAR_MIN_ELEMS). */
#define D0 3
#define D1 300
#define D2 200

/* The largest |a - b| / max(1, |b|) over two tensors of the same shape (INFINITY if they differ
 * in shape, or where one is NaN and the other not). */
static double worst_diff(ag_tensor *a, ag_tensor *b) {
    if (!a || !b || ag_numel(a) != ag_numel(b) || ag_ndim(a) != ag_ndim(b)) return INFINITY;
    const int64_t n = ag_numel(a);
    double *va = malloc(sizeof(double) * (size_t)(2 * n + 1)), *vb = va + n, w = 0;
    if (!va || ag_copy_to(a, va, n, AG_F64) || ag_copy_to(b, vb, n, AG_F64)) w = INFINITY;
    for (int64_t i = 0; i < n && w < INFINITY; i++) {
        if (isnan(va[i]) || isnan(vb[i])) w = isnan(va[i]) && isnan(vb[i]) ? w : INFINITY;
        else w = fmax(w, fabs(va[i] - vb[i]) / fmax(1, fabs(vb[i])));
    }
    free(va);
    return w;
}

/* Whether two tensors hold the same bits. */
static bool same_bits(ag_tensor *a, ag_tensor *b) {
    return a && b && ag_numel(a) == ag_numel(b) && ag_dtype_of(a) == ag_dtype_of(b) &&
           memcmp(ag_data(ag_contiguous(a)), ag_data(ag_contiguous(b)), (size_t)ag_numel(a) * ag_dtype_size(ag_dtype_of(a))) == 0;
}

typedef enum { SUM, MEAN, VAR, LOGSUMEXP, AMAX, NORM1, NORM2, SOFTMAX, LOG_SOFTMAX, LAYER_NORM, NOPS } which;
static const char *const names[NOPS] = {"sum", "mean", "var", "logsumexp", "amax", "vector_norm(1)", "vector_norm(2)",
                                        "softmax", "log_softmax", "layer_norm"};

/* ---- float64 references computed here, for the paths with no reference mode of their own ---- */
/* The reduction of x (any view) over the dims in mask into out (float64, one per output in the
 * order of the kept dims): sum, mean, var (correction 1), logsumexp or amax, in float64 loops. */
static void reference_reduce(int op, ag_tensor *x, uint64_t mask, double *out, int64_t nout) {
    const int64_t n = ag_numel(x);
    ag_shape s = ag_shape_of(x);
    double *v = malloc(sizeof(double) * (size_t)(n + 3 * nout + 1)), *sum = v + n, *mx = sum + nout, *acc = mx + nout;
    ag_copy_to(x, v, n, AG_F64);
    int64_t *index = malloc(sizeof(int64_t) * (size_t)(n + 1)), count = n / (nout ? nout : 1);
    for (int64_t i = 0; i < n; i++) { /* output index of element i (row-major, reduced dims dropped) */
        int64_t rest = i, o = 0, scale = 1;
        for (int d = s.ndim - 1; d >= 0; d--) {
            const int64_t c = rest % s.dim[d];
            rest /= s.dim[d];
            if (!(mask >> d & 1)) o += c * scale, scale *= s.dim[d];
        }
        index[i] = o;
    }
    for (int64_t o = 0; o < nout; o++) sum[o] = 0, mx[o] = -INFINITY, acc[o] = 0;
    for (int64_t i = 0; i < n; i++) sum[index[i]] += v[i], mx[index[i]] = fmax(mx[index[i]], v[i]);
    for (int64_t i = 0; i < n; i++) {
        const double d = v[i] - sum[index[i]] / (double)count;
        acc[index[i]] += op == VAR ? d * d : op == NORM2 ? v[i] * v[i] : op == NORM1 ? fabs(v[i]) : exp(v[i] - mx[index[i]]);
    }
    for (int64_t o = 0; o < nout; o++)
        out[o] = op == SUM ? sum[o] : op == MEAN ? sum[o] / (double)count : op == VAR ? acc[o] / (double)(count - 1)
               : op == AMAX ? mx[o] : op == NORM1 ? acc[o] : op == NORM2 ? sqrt(acc[o]) : mx[o] + log(acc[o]);
    free(index);
    free(v);
}

/* layer_norm over the trailing K of x (rows R = numel / K) with weight w and bias b, and its
 * gradients for the seed g, in float64: y = x̂·w + b, x̂ = (x - μ)/√(σ² + ε); dx = r·(gw - mean(gw) -
 * x̂·mean(gw·x̂)), gw = g·w; dw = Σ_rows g·x̂; db = Σ_rows g.  out: y, dx (n each), dw, db (K each). */
static void reference_layer_norm(ag_tensor *x, ag_tensor *w, ag_tensor *b, ag_tensor *g, int64_t K, double *out) {
    const int64_t n = ag_numel(x), R = n / K;
    double *xv = malloc(sizeof(double) * (size_t)(2 * n + 2 * K)), *gv = xv + n, *wv = gv + n, *bv = wv + K;
    ag_copy_to(x, xv, n, AG_F64), ag_copy_to(g, gv, n, AG_F64), ag_copy_to(w, wv, K, AG_F64), ag_copy_to(b, bv, K, AG_F64);
    double *y = out, *dx = out + n, *dw = out + 2 * n, *db = dw + K;
    for (int64_t k = 0; k < K; k++) dw[k] = db[k] = 0;
    for (int64_t r = 0; r < R; r++) {
        const double *xr = xv + r * K, *gr = gv + r * K;
        double m = 0, q = 0, sg = 0, sgx = 0;
        for (int64_t k = 0; k < K; k++) m += xr[k];
        m /= (double)K;
        for (int64_t k = 0; k < K; k++) q += (xr[k] - m) * (xr[k] - m);
        const double rs = 1 / sqrt(q / (double)K + 1e-5);
        for (int64_t k = 0; k < K; k++) {
            const double xh = (xr[k] - m) * rs;
            y[r * K + k] = xh * wv[k] + bv[k];
            sg += gr[k] * wv[k], sgx += gr[k] * wv[k] * xh;
            dw[k] += gr[k] * xh, db[k] += gr[k];
        }
        for (int64_t k = 0; k < K; k++)
            dx[r * K + k] = rs * (gr[k] * wv[k] - sg / (double)K - (xr[k] - m) * rs * sgx / (double)K);
    }
    free(xv);
}

/* The worst |got - want| / max(1, |want|) of t against n float64 values. */
static double worst_vs(ag_tensor *t, const double *want, int64_t n) {
    if (!t || ag_numel(t) != n) return INFINITY;
    double *v = malloc(sizeof(double) * (size_t)(n + 1)), w = 0;
    ag_copy_to(t, v, n, AG_F64);
    for (int64_t i = 0; i < n; i++) w = isnan(v[i]) ? INFINITY : fmax(w, fabs(v[i] - want[i]) / fmax(1, fabs(want[i])));
    free(v);
    return w;
}

/* One computation: its outputs (a forward result and gradients) for an input x and a seed g. */
typedef struct outputs {
    ag_tensor *t[4];
} outputs;


/* Runs op on a detached copy of the view x (requiring grad where the op has an adjoint here),
 * over dims (ndims of them; layer_norm: the trailing ndims). */
static outputs run(which op, ag_tensor *x, int ndims, const int *dims, ag_tensor *w, ag_tensor *b) {
    outputs o = {{NULL, NULL, NULL, NULL}};
    ag_tensor *xl = ag_requires_grad_(ag_detach(x), true);
    ag_tensor *wl = w ? ag_requires_grad_(ag_detach(w), true) : NULL, *bl = b ? ag_requires_grad_(ag_detach(b), true) : NULL;
    ag_tensor *y = NULL;
    switch (op) {
    case SUM: y = ag_sum_dims(xl, ndims, dims, false); break;
    case MEAN: y = ag_mean_dims(xl, ndims, dims, true); break;
    case VAR: y = ag_var_dims(xl, ndims, dims, 1, false); break;
    case LOGSUMEXP: y = ag_logsumexp_dims(xl, ndims, dims, false); break;
    case AMAX: y = ag_amax(xl, ndims, dims, false); break;
    case NORM1: y = ag_linalg_vector_norm(xl, 1, ndims, dims, false); break;
    case NORM2: y = ag_linalg_vector_norm(xl, 2, ndims, dims, true); break;
    case SOFTMAX: y = ag_softmax(xl, dims[0]); break;
    case LOG_SOFTMAX: y = ag_log_softmax(xl, dims[0]); break;
    case LAYER_NORM: {
        ag_shape s = ag_shape_of(xl), ns = {ndims, {0}};
        for (int k = 0; k < ndims; k++) ns.dim[k] = s.dim[s.ndim - ndims + k];
        y = ag_layer_norm(xl, ns, wl, bl, 1e-5);
        break;
    }
    default: break;
    }
    if (!y) return o;
    o.t[0] = y;
    ag_manual_seed(5);
    ag_tensor *g = ag_randn(ag_shape_of(y), ag_dtype_of(y));
    if (ag_backward_ex(y, g, false) != AG_OK) return o;
    o.t[1] = ag_grad(xl);
    o.t[2] = wl ? ag_grad(wl) : NULL;
    o.t[3] = bl ? ag_grad(bl) : NULL;
    return o;
}

/* The worst difference over the outputs of two runs (INFINITY if one is missing where the other is not). */
static double worst_of(outputs a, outputs b) {
    double w = 0;
    for (int k = 0; k < 4; k++) {
        if (!a.t[k] != !b.t[k]) return INFINITY;
        if (a.t[k]) w = fmax(w, worst_diff(a.t[k], b.t[k]));
    }
    return a.t[0] ? w : INFINITY;
}

static bool bits_of(outputs a, outputs b) {
    for (int k = 0; k < 4; k++)
        if (!a.t[k] != !b.t[k] || (a.t[k] && !same_bits(a.t[k], b.t[k]))) return false;
    return a.t[0] != NULL;
}

/* The inputs: the contiguous x [a, b, c], a permuted view [c, a, b] and a sliced one (every other
 * element of the last dim). */
static void cases(ag_tensor *x, ag_tensor *views[3], const char *vnames[3]) {
    static char names_[3][64];
    ag_shape s = ag_shape_of(x);
    long long a = (long long)s.dim[0], b = (long long)s.dim[1], c = (long long)s.dim[2];
    snprintf(names_[0], sizeof names_[0], "contiguous [%lld, %lld, %lld]", a, b, c);
    snprintf(names_[1], sizeof names_[1], "permuted [%lld, %lld, %lld]", c, a, b);
    snprintf(names_[2], sizeof names_[2], "sliced [%lld, %lld, %lld]", a, b, (c + 1) / 2);
    views[0] = x, views[1] = ag_permute(x, (int[]){2, 0, 1}), views[2] = ag_slice(x, 2, 0, s.dim[2], 2);
    for (int k = 0; k < 3; k++) vnames[k] = names_[k];
}

/* Dim lists to reduce over: each dim alone (innermost, outermost, middle), two adjacent dims, the
 * first and last, all three. */
static const struct {
    int n, d[3];
    const char *name;
} dimsets[] = {
    {1, {2}, "dim 2"}, {1, {0}, "dim 0"}, {1, {1}, "dim 1"}, {2, {1, 2}, "dims 1, 2"}, {2, {0, 2}, "dims 0, 2"},
    {3, {0, 1, 2}, "all dims"},
};

static void test_against_reference(ag_dtype dt) {
    ag_scope_begin();
    ag_manual_seed(1);
    ag_tensor *x = ag_randn(AG_SHAPE(D0, 70, 131), dt), *views[3]; /* blocks of lanes end part-full */
    const char *vnames[3];
    cases(x, views, vnames);
    const double tol = dt == AG_F64 ? 1e-12 : 2e-5;
    for (int op = 0; op < NOPS; op++)
        for (int v = 0; v < 3; v++) {
            double worst = 0;
            const char *where = "";
            for (size_t s = 0; s < sizeof dimsets / sizeof *dimsets; s++) {
                const bool single = op == SOFTMAX || op == LOG_SOFTMAX;
                if (single && dimsets[s].n != 1) continue;
                if (op == LAYER_NORM && dimsets[s].d[0] + dimsets[s].n != 3 && dimsets[s].n != 3) continue;
                int nd = dimsets[s].n;
                ag_tensor *w = NULL, *b = NULL;
                if (op == LAYER_NORM) { /* over the trailing nd dims, with a weight and a bias */
                    ag_shape vs = ag_shape_of(views[v]), ns = {nd, {0}};
                    for (int k = 0; k < nd; k++) ns.dim[k] = vs.dim[vs.ndim - nd + k];
                    w = ag_randn(ns, dt), b = ag_randn(ns, dt);
                }
                ag_scope_begin();
                ag__backend = AG_BACKEND_REFERENCE;
                outputs ref = run((which)op, views[v], nd, dimsets[s].d, w, b);
                ag__backend = AG_BACKEND_AUTO;
                outputs fast = run((which)op, views[v], nd, dimsets[s].d, w, b);
                double d = worst_of(fast, ref);
                if (op <= NORM2 && fast.t[0]) { /* the forward against float64 loops */
                    uint64_t mask = 0;
                    for (int k = 0; k < nd; k++) mask |= (uint64_t)1 << dimsets[s].d[k];
                    const int64_t nout = ag_numel(fast.t[0]);
                    double *want = malloc(sizeof(double) * (size_t)(nout + 1));
                    reference_reduce(op, views[v], mask, want, nout);
                    d = fmax(d, worst_vs(fast.t[0], want, nout));
                    free(want);
                }
                if (op == LAYER_NORM && fast.t[0]) { /* forward and gradients against float64 loops */
                    const int64_t n = ag_numel(views[v]), K = ag_numel(w);
                    double *want = malloc(sizeof(double) * (size_t)(2 * n + 2 * K));
                    ag_manual_seed(5); /* run()'s seed */
                    reference_layer_norm(views[v], w, b, ag_randn(ag_shape_of(views[v]), dt), K, want);
                    d = fmax(d, fmax(fmax(worst_vs(fast.t[0], want, n), worst_vs(fast.t[1], want + n, n)),
                                     fmax(worst_vs(fast.t[2], want + 2 * n, K), worst_vs(fast.t[3], want + 2 * n + K, K))));
                    free(want);
                }
                if (d > worst) worst = d, where = dimsets[s].name;
                ag_scope_end();
            }
            ok(worst <= tol, "%s %s %s: within %.2g of the reference loops and float64 (worst: %s)", ag_dtype_name(dt),
               names[op], vnames[v], worst, where);
        }
    ag_scope_end();
}

/* One thread against two (within float32 rounding: the split of a reduced dim changes the order of
 * the float64 partial sums), and two threads twice (bit for bit). */
static void test_threads(void) {
    ag_scope_begin();
    ag_manual_seed(2);
    ag_tensor *x = ag_randn(AG_SHAPE(D0, D1, D2), AG_F32), *views[3];
    const char *vnames[3];
    cases(x, views, vnames);
    const int saved = ag_get_num_threads();
    for (int op = 0; op < NOPS; op++)
        for (int v = 0; v < 3; v += 2) {
            double worst = 0;
            bool same = true;
            for (size_t s = 0; s < sizeof dimsets / sizeof *dimsets; s++) {
                const bool single = op == SOFTMAX || op == LOG_SOFTMAX;
                if ((single || op == LAYER_NORM) && dimsets[s].n != 1) continue;
                if (op == LAYER_NORM && dimsets[s].d[0] != 2) continue;
                ag_tensor *w = NULL, *b = NULL;
                if (op == LAYER_NORM) {
                    ag_shape vs = ag_shape_of(views[v]);
                    w = ag_randn(AG_SHAPE(vs.dim[2]), AG_F32), b = ag_randn(AG_SHAPE(vs.dim[2]), AG_F32);
                }
                ag_scope_begin();
                ag_set_num_threads(1);
                outputs one = run((which)op, views[v], dimsets[s].n, dimsets[s].d, w, b);
                ag_set_num_threads(2);
                outputs two = run((which)op, views[v], dimsets[s].n, dimsets[s].d, w, b);
                outputs again = run((which)op, views[v], dimsets[s].n, dimsets[s].d, w, b);
                worst = fmax(worst, worst_of(two, one));
                same &= bits_of(two, again);
                ag_scope_end();
            }
            ok(worst <= 2e-6 && same, "float32 %s %s: 2 threads within %.2g of 1 thread, and the same bits twice%s",
               names[op], vnames[v], worst, same ? "" : " (NOT the same bits)");
        }
    ag_set_num_threads(saved);
    ag_scope_end();
}

/* amax/amin's vectorised scans keep NaN winning: a [37, 41] float32 input with a NaN at (2, 3)
 * and ±inf elsewhere, a row of only -inf and one of only +inf (amax / amin of them ∓inf: clang's
 * omp simd reductions start from ∓FLT_MAX, core/simd_extreme.h), reduced along each dim, against
 * loops here that let NaN win. */
static void test_extreme_nan(void) {
    ag_scope_begin();
    ag_manual_seed(3);
    ag_tensor *x = ag_contiguous(ag_randn(AG_SHAPE(37, 41), AG_F32));
    float *v = ag_data(x);
    v[2 * 41 + 3] = NAN, v[5 * 41 + 7] = INFINITY, v[9 * 41 + 11] = -INFINITY;
    for (int64_t k = 0; k < 41; k++) v[13 * 41 + k] = -INFINITY, v[17 * 41 + k] = INFINITY;
    for (int is_max = 0; is_max < 2; is_max++)
        for (int d = 0; d < 2; d++) {
            ag_tensor *y = is_max ? ag_amax(x, 1, &d, false) : ag_amin(x, 1, &d, false);
            const int64_t nout = d == 0 ? 41 : 37, nred = d == 0 ? 37 : 41;
            bool good = y && ag_numel(y) == nout;
            for (int64_t o = 0; good && o < nout; o++) {
                double want = is_max ? -INFINITY : INFINITY;
                for (int64_t k = 0; k < nred; k++) {
                    const double e = d == 0 ? v[k * 41 + o] : v[o * 41 + k];
                    if (isnan(e) || isnan(want)) want = NAN;
                    else want = is_max ? fmax(want, e) : fmin(want, e);
                }
                const double got = ((const float *)ag_data(y))[o];
                good = isnan(want) ? isnan(got) : got == want;
            }
            ok(good, "%s along dim %d of [37, 41] with a NaN, ±inf and rows of only -inf, +inf: NaN wins, the rest exact", is_max ? "amax" : "amin", d);
        }
    ag_scope_end();
}

/* The same for the scans of contiguous runs in 64 lanes (ops/reduce.c's EXTREME_KERNEL: a max or min
 * select per lane and the NaNs caught in lanes of their own, session 20): rows of 64 to 4099
 * float32 and float64 with a NaN first (the lanes' start), in the lanes, in the tail, beside ±inf,
 * none (±inf and ±0 only), along dim 1 and over all, against loops that let NaN win. */
static void test_extreme_nan_lanes(void) {
    ag_scope_begin();
    static const int64_t ns[] = {64, 200, 1000, 4099};
    int bad = 0, checked = 0;
    for (int dt = 0; dt < 2; dt++)
        for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++) {
            const int64_t n = ns[ni], R = 5;
            ag_manual_seed(20 + (uint64_t)ni);
            ag_tensor *x64 = ag_contiguous(ag_randn(AG_SHAPE(R, n), AG_F64));
            double *v = ag_data(x64);
            v[0] = NAN;                                                             /* row 0: first */
            v[1 * n + n / 2] = NAN, v[1 * n + n / 2 + 1] = INFINITY;                /* row 1: lanes */
            v[2 * n + n - 1] = NAN;                                                 /* row 2: last */
            v[3 * n + 5] = -INFINITY, v[3 * n + 6] = INFINITY, v[3 * n + 7] = -0.0; /* row 3: none */
            v[4 * n + 63] = -NAN, v[4 * n + 62] = -INFINITY;                        /* row 4: lane 63 */
            ag_tensor *x = dt ? x64 : ag_to_dtype(x64, AG_F32);
            for (int is_max = 0; is_max < 2; is_max++)
                for (int all = 0; all < 2; all++) {
                    const int d = 1;
                    ag_tensor *y = all ? (is_max ? ag_amax(x, 0, NULL, false) : ag_amin(x, 0, NULL, false))
                                       : (is_max ? ag_amax(x, 1, &d, false) : ag_amin(x, 1, &d, false));
                    const int64_t nout = all ? 1 : R;
                    for (int64_t o = 0; o < nout; o++) {
                        double want = is_max ? -INFINITY : INFINITY;
                        for (int64_t k = all ? 0 : o * n; k < (all ? R * n : (o + 1) * n); k++) {
                            const double e = dt ? v[k] : (double)(float)v[k];
                            if (isnan(e) || isnan(want)) want = NAN;
                            else want = is_max ? fmax(want, e) : fmin(want, e);
                        }
                        const double got = y ? ag_get(y, all ? NULL : (int64_t[]){o}) : 0;
                        checked++;
                        if (!y || !(isnan(want) ? isnan(got) : got == want)) bad++;
                    }
                }
        }
    ok(bad == 0 && checked == 2 * 4 * 2 * (5 + 1), "amax, amin over rows of 64 to 4099 with NaNs first, in the lanes, last: "
                                                   "NaN wins, the rest exact (%d of %d differ)", bad, checked);
    ag_scope_end();
}

/* amax and amin of short contiguous rows (ops/extrema.c's short-row kernel: a scalar chain, four or eight
 * lanes, a vector a row, for rows of 2 to 256; longer rows the lane scan) over dim 1 of [R, n] for every
 * n from 1 to 300, float32 and float64, on 1 and 2 threads (enough rows to split): against a loop here,
 * NaN wins (first, last or inside the row, -NaN too), else exact and one of the row's own elements (the
 * sign of a zero too), with ties (randn·3 rounded), rows of mixed ±0, of -inf only, +inf last. */
static void test_extreme_short_rows(void) {
    ag_scope_begin();
    const int saved = ag_get_num_threads();
    int bad = 0, checked = 0;
    for (int dt = 0; dt < 2; dt++)
        for (int64_t n = 1; n <= 300; n++) {
            const int64_t R = ((int64_t)1 << 18) / n + 37;
            ag_manual_seed(700 + (uint64_t)n);
            ag_tensor *x64 = ag_contiguous(ag_round(ag_mul_scalar(ag_randn(AG_SHAPE(R, n), AG_F64), 3)));
            double *v = ag_data(x64);
            for (int64_t o = 0; o < R; o++) {
                double *r = v + o * n;
                switch (o % 9) {
                case 0: r[(o / 9) % n] = NAN; break;
                case 1: for (int64_t k = 0; k < n; k++) r[k] = (k + o / 9) % 3 ? 0.0 : -0.0; break;
                case 2: for (int64_t k = 0; k < n; k++) r[k] = -INFINITY; break;
                case 3: r[n - 1] = INFINITY, r[0] = -INFINITY; break;
                case 4: r[n - 1] = NAN; break;
                case 5: r[0] = -NAN; break;
                case 6: r[n - 1] = 1e6, r[0] = -1e6; break; /* the extremes at the row's ends */
                case 7: r[n / 2] = 1e6, r[(n - 1) / 3] = -1e6; break;
                default: break;
                }
            }
            ag_tensor *x = dt ? x64 : ag_to_dtype(x64, AG_F32);
            const float *xf = dt ? NULL : ag_data(x);
            for (int th = 1; th <= 2; th++) {
                ag_set_num_threads(th);
                for (int is_max = 0; is_max < 2; is_max++) {
                    const int d = 1;
                    ag_tensor *y = is_max ? ag_amax(x, 1, &d, false) : ag_amin(x, 1, &d, false);
                    const void *yd = y ? ag_data(y) : NULL;
                    for (int64_t o = 0; o < R; o++) {
                        double want = is_max ? -INFINITY : INFINITY;
                        for (int64_t k = 0; k < n; k++) {
                            const double e = dt ? v[o * n + k] : (double)xf[o * n + k];
                            if (isnan(e) || isnan(want)) want = NAN;
                            else want = is_max ? fmax(want, e) : fmin(want, e);
                        }
                        checked++;
                        if (!yd) {
                            bad++;
                            continue;
                        }
                        const double got = dt ? ((const double *)yd)[o] : (double)((const float *)yd)[o];
                        bool own = isnan(want); /* else got is one of the row's elements, the sign of a zero too */
                        for (int64_t k = 0; k < n && !own; k++) {
                            const double e = dt ? v[o * n + k] : (double)xf[o * n + k];
                            own = e == got && signbit(e) == signbit(got);
                        }
                        if (!(isnan(want) ? isnan(got) : got == want) || !own) bad++;
                    }
                }
            }
        }
    ag_set_num_threads(saved);
    ok(bad == 0 && checked > 0, "amax, amin over rows of 1 to 300, float32 and float64, 1 and 2 threads: NaN wins, "
                                "the rest exact and the row's own (%d of %d differ)", bad, checked);
    ag_scope_end();
}

/* argmax, argmin, max_dim and min_dim (the fast kernels of ops/extrema.c: vectorised scans of contiguous
 * lanes in blocks of 256, and column selects split over threads) against the reference loop, bit for bit
 * (values and first indices), on 1 and 2 threads, float32 and float64, along every dim of inputs with
 * many ties (randn·3 rounded), NaNs in some lanes (in a late block of a long lane too), ±inf and ±0;
 * the shapes make lanes of 1 to 700 elements, blocks that end part-full, and enough work for threads. */
static void test_arg_extremes(void) {
    ag_scope_begin();
    const ag_shape shapes[4] = {AG_SHAPE(D0, D1, D2), AG_SHAPE(4, 5, 700), AG_SHAPE(3, 70, 131), AG_SHAPE(1, 1, 9)};
    const int saved = ag_get_num_threads();
    for (int dt = 0; dt < 2; dt++) {
        const ag_dtype dtype = dt ? AG_F64 : AG_F32;
        bool same = true, differs = false;
        for (int s = 0; s < 4; s++) {
            ag_manual_seed(11 + s);
            ag_tensor *x = ag_contiguous(ag_round(ag_mul_scalar(ag_randn(shapes[s], AG_F64), 3)));
            double *v = ag_data(x);
            const int64_t n = ag_numel(x);
            for (int64_t k = 0; k < n; k += 97) v[k] = k % 3 == 0 ? NAN : k % 3 == 1 ? INFINITY : -INFINITY;
            for (int64_t k = 5; k < n; k += 89) v[k] = k % 2 ? -0.0 : 0.0;
            if (s == 1) v[3 * 700 + 650] = NAN; /* a NaN in the third block of lane (0, 3) */
            x = ag_to_dtype(x, dtype);
            for (int d = 0; d < 3; d++)
                for (int op = 0; op < 4; op++)
                    for (int threads = 1; threads <= 2; threads++) {
                        ag_set_num_threads(threads);
                        ag_tensor *got[2];
                        for (int ref = 0; ref < 2; ref++) {
                            ag__backend = ref ? AG_BACKEND_REFERENCE : AG_BACKEND_AUTO;
                            got[ref] = op == 0   ? ag_argmax(x, d, false)
                                       : op == 1 ? ag_argmin(x, d, true)
                                       : op == 2 ? ag_max_dim(x, d, false)
                                                 : ag_min_dim(x, d, false);
                        }
                        ag__backend = AG_BACKEND_AUTO;
                        same &= same_bits(got[0], got[1]);
                        if (op == 0 && s == 0 && d == 1 && threads == 2) /* the check sees a wrong index */
                            differs = !same_bits(got[0], ag_argmin(x, d, false));
                    }
        }
        ag_set_num_threads(saved);
        ok(same && differs, "%s argmax, argmin, max_dim, min_dim along each dim, 1 and 2 threads: the reference "
           "loop's values and indices, bit for bit", ag_dtype_name(dtype));
    }
    ag_scope_end();
}

/* Whether argmax, argmin, max_dim and min_dim of x along dim give the reference loop's indices and
 * value bits. */
static bool arg_extremes_match_reference(ag_tensor *x, int dim) {
    bool same = true;
    for (int op = 0; op < 4; op++) {
        ag_tensor *got[2];
        for (int ref = 0; ref < 2; ref++) {
            ag__backend = ref ? AG_BACKEND_REFERENCE : AG_BACKEND_AUTO;
            got[ref] = op == 0 ? ag_argmax(x, dim, false) : op == 1 ? ag_argmin(x, dim, false)
                     : op == 2 ? ag_max_dim(x, dim, false) : ag_min_dim(x, dim, false);
        }
        ag__backend = AG_BACKEND_AUTO;
        same &= same_bits(got[0], got[1]);
    }
    return same;
}

/* The column scans of argmax, argmin, max_dim and min_dim (order keys, four rows at a time) on values
 * where a key could go wrong: ±0 (equal: the first stays, and the value keeps its sign), ±denormals,
 * ±1, ±inf, NaN of either sign with a payload (the value comes back with its bits), drawn at random for
 * [n, 300] along dim 0 with n = 1..9 (every remainder of the four-row step) and [5, 9, 40] along dim 1:
 * against the reference loop bit for bit. */

static void test_arg_extreme_keys(void) {
    ag_scope_begin();
    static const uint32_t bits32[] = {0x80000000u, 0x00000000u, 0x80000001u, 0x00000001u, 0xbf800000u,
                                      0x3f800000u, 0xff800000u, 0x7f800000u, 0xffc00123u, 0x7fc00456u};
    static const uint64_t bits64[] = {0x8000000000000000u, 0, 0x8000000000000001u, 1, 0xbff0000000000000u,
                                      0x3ff0000000000000u, 0xfff0000000000000u, 0x7ff0000000000000u,
                                      0xfff8000000000123u, 0x7ff8000000000456u};
    uint64_t state = 12345;
    bool same = true;
    for (int dt = 0; dt < 2; dt++)
        for (int64_t rows = 1; rows <= 10; rows++) {
            const ag_shape shape = rows <= 9 ? AG_SHAPE(rows, 300) : AG_SHAPE(5, 9, 40);
            ag_tensor *x = ag_empty(shape, dt ? AG_F64 : AG_F32);
            const int64_t n = ag_numel(x);
            for (int64_t k = 0; k < n; k++) {
                state = state * 6364136223846793005u + 1442695040888963407u;
                const int pick = (int)((state >> 33) % 10);
                if (dt) memcpy((double *)ag_data(x) + k, &bits64[pick], 8);
                else memcpy((float *)ag_data(x) + k, &bits32[pick], 4);
            }
            same &= arg_extremes_match_reference(x, rows <= 9 ? 0 : 1);
        }
    ok(same, "argmax, argmin, max_dim, min_dim down columns of ±0, ±denormals, ±1, ±inf and NaNs with payloads, "
       "1-9 rows: the reference loop's indices and value bits");
    /* Contiguous rows (the _rows scan) of only -inf and only +inf, 1 to 600 long: with clang the
     * scan's simd partials start at ∓FLT_MAX, and the index search once ran past such a row. */
    bool rows_same = true;
    for (int dt = 0; dt < 2; dt++)
        for (int64_t len = 1; len <= 600; len += len < 10 ? 1 : 97) {
            ag_tensor *x = ag_empty(AG_SHAPE(2, len), dt ? AG_F64 : AG_F32);
            for (int64_t k = 0; k < len; k++) {
                if (dt) ((double *)ag_data(x))[k] = -INFINITY, ((double *)ag_data(x))[len + k] = INFINITY;
                else ((float *)ag_data(x))[k] = -INFINITY, ((float *)ag_data(x))[len + k] = INFINITY;
            }
            rows_same &= arg_extremes_match_reference(x, 1);
        }
    ok(rows_same, "argmax, argmin, max_dim, min_dim along rows of only -inf and only +inf, 1-600 long: the "
       "reference loop's indices and values");
    ag_scope_end();
}

/* The column kernel's register blocks (8 rows by 64 columns held in registers, ops/extrema.c; float32
 * where AVX-512 runs: the float compares of EXTREME_COLS_512): argmax, argmin, max_dim and min_dim along
 * dim 0 of [rows, cols] with rows of 1, 8, 9, 17, 23 (block remainders) and cols of 1, 63, 64, 65, 130,
 * 200 (strip and 16-lane remainders), values with many ties (randn·2 rounded), without NaN and with
 * NaNs (a column with two), ±inf and -inf-only columns, -0 and +0 tied as the extreme, denormals, float32 and float64, 1
 * and 2 threads: against the reference loop bit for bit. */
static void test_arg_extreme_blocks(void) {
    ag_scope_begin();
    static const int64_t rows[] = {1, 8, 9, 17, 23}, cols[] = {1, 63, 64, 65, 130, 200};
    const int saved = ag_get_num_threads();
    bool same = true;
    for (int dt = 0; dt < 2; dt++)
        for (int nans = 0; nans < 2; nans++) /* without NaN (the float compares) and with (the keys) */
        for (int a = 0; a < 5; a++)
            for (int b = 0; b < 6; b++) {
                const int64_t m = rows[a], c = cols[b];
                ag_manual_seed(700 + a * 6 + b);
                ag_tensor *x = ag_contiguous(ag_round(ag_mul_scalar(ag_randn(AG_SHAPE(m, c), AG_F64), 2)));
                double *v = ag_data(x);
                for (int64_t k = 0; k < m * c; k += 29)
                    v[k] = k % 4 == 0 ? (nans ? NAN : 1e30) : k % 4 == 1 ? INFINITY : -INFINITY;
                for (int64_t k = 0; k < m; k++) v[k * c + c - 1] = -INFINITY; /* a column of only -inf */
                if (m > 10 && c > 40 && nans) v[9 * c + 40] = NAN, v[10 * c + 40] = -NAN; /* two NaNs: the first wins */
                if (c > 3 && m > 5) /* column 1: -0 and +0 above negatives (the first zero wins, its sign kept);
                                     * column 2: denormals above zeros, the smallest first */
                    for (int64_t k = 0; k < m; k++)
                        v[k * c + 1] = k == 2 ? -0.0 : k == 5 ? 0.0 : -1.0 - (double)k,
                        v[k * c + 2] = k == 1 ? 0x1p-149 : k == 4 ? 0x1p-148 : k == 3 ? 0x1p-148 : 0.0;
                x = ag_to_dtype(x, dt ? AG_F64 : AG_F32);
                for (int threads = 1; threads <= 2; threads++) {
                    ag_set_num_threads(threads);
                    same &= arg_extremes_match_reference(x, 0);
                }
            }
    ag_set_num_threads(saved);
    ok(same, "argmax, argmin, max_dim, min_dim down [1-23, 1-200] columns (8x64 register blocks and their "
       "remainders) with ties, NaNs, ±inf, 1 and 2 threads: the reference loop's indices and value bits");
    ag_scope_end();
}

/* The row scans of argmax, argmin, max_dim and min_dim (contiguous lanes in blocks of 256; float32 where
 * AVX-512 runs: EXTREME_ROWS_512's four accumulators, the block reduced only when it beats the running
 * extreme, the first element equal to it searched by sixteen-lane compares) along dim 1 of [12, n] with n
 * of 1 to 4099 (16-lane, 64-element and block remainders), rows of: ties (randn·2 rounded) with the
 * extreme repeated in later blocks, zeros of both signs as the max (first +0) and as the min (first -0),
 * a NaN last, first, and two NaNs of both signs after +inf in a late block, only -inf, only +inf, a strict
 * extreme in the last element, the extreme at 0 repeated last, ±denormals among zeros, the extreme at the
 * start of two blocks; float32 and float64, 1 and 2 threads: against the reference loop bit for bit. */
static void test_arg_extreme_rows(void) {
    ag_scope_begin();
    static const int64_t lens[] = {1, 2, 15, 16, 17, 63, 64, 65, 255, 256, 257, 300, 511, 513, 700, 1000, 4099};
    const int saved = ag_get_num_threads();
    bool same = true;
    for (int dt = 0; dt < 2; dt++)
        for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
            const int64_t n = lens[li], R = 12;
            ag_manual_seed(900 + (uint64_t)li);
            ag_tensor *x = ag_contiguous(ag_round(ag_mul_scalar(ag_randn(AG_SHAPE(R, n), AG_F64), 2)));
            double *v = ag_data(x);
            for (int64_t k = 0; k < n; k++) {
                v[1 * n + k] = -1.0 - (double)(k % 7);                  /* zeros as the max */
                v[2 * n + k] = 1.0 + (double)(k % 7);                   /* zeros as the min */
                v[6 * n + k] = -INFINITY, v[7 * n + k] = INFINITY;      /* only -inf, only +inf */
                v[10 * n + k] = k % 5 == 1 ? 0x1p-149 : k % 5 == 3 ? -0x1p-149 : k % 2 ? -0.0 : 0.0;
            }
            v[0 * n + n * 2 / 3] = 50, v[0 * n + n - 1] = 50, v[0 * n + n / 3] = -50, v[0 * n + n - 1 - n / 5] = -50;
            v[1 * n + n * 3 / 4] = -0.0, v[1 * n + n / 2] = 0.0;
            v[2 * n + n / 3] = -0.0, v[2 * n + n * 2 / 3] = 0.0;
            v[3 * n + n - 1] = NAN;
            v[4 * n] = NAN;
            v[5 * n + n / 2] = INFINITY, v[5 * n + n * 3 / 4] = NAN, v[5 * n + n - 1] = -NAN;
            v[8 * n + n - 1] = 100, v[8 * n + (n > 1 ? n - 2 : 0)] = -100;
            v[9 * n] = 100, v[9 * n + n - 1] = 100;
            if (n > 512) v[11 * n + 256] = 60, v[11 * n + 512] = 60, v[11 * n + 257] = -60, v[11 * n + 513] = -60;
            x = ag_to_dtype(x, dt ? AG_F64 : AG_F32);
            for (int threads = 1; threads <= 2; threads++) {
                ag_set_num_threads(threads);
                same &= arg_extremes_match_reference(x, 1);
            }
        }
    ag_set_num_threads(saved);
    ok(same, "argmax, argmin, max_dim, min_dim along rows of 1-4099 (16-lane, 64 and 256 blocks and remainders) with "
       "ties across blocks, ±0 tied, NaNs first, last and late, ±inf, denormals, 1 and 2 threads: the reference "
       "loop's indices and value bits");
    ag_scope_end();
}

/* prod_dim's gradient without zeros (dx = dy·y/x, in memory order and split over threads) along each dim
 * of [3, 300, 200] float32 factors near 1, on 1 and 2 threads, against float64 loops written here. */
static void test_prod_paths(void) {
    ag_scope_begin();
    ag_manual_seed(17);
    const int64_t sz[3] = {D0, D1, D2}, n = D0 * D1 * D2;
    ag_tensor *x = ag_contiguous(ag_add_scalar(ag_mul_scalar(ag_randn(AG_SHAPE(D0, D1, D2), AG_F32), 0.01), 1));
    double *xv = malloc(sizeof(double) * (size_t)(3 * n)), *yv = xv + n, *dx = yv + n;
    ag_copy_to(x, xv, n, AG_F64);
    const int saved = ag_get_num_threads();
    double worst = 0;
    for (int d = 0; d < 3; d++) {
        const int64_t inner = d == 2 ? 1 : d == 1 ? D2 : D1 * D2, len = sz[d], outer = n / (len * inner);
        ag_manual_seed(19);
        ag_tensor *g = ag_randn(d == 0 ? AG_SHAPE(D1, D2) : d == 1 ? AG_SHAPE(D0, D2) : AG_SHAPE(D0, D1), AG_F32);
        double *gv = malloc(sizeof(double) * (size_t)(outer * inner));
        ag_copy_to(g, gv, outer * inner, AG_F64);
        for (int64_t o = 0; o < outer; o++)
            for (int64_t i = 0; i < inner; i++) {
                double p = 1;
                for (int64_t k = 0; k < len; k++) p *= xv[(o * len + k) * inner + i];
                for (int64_t k = 0; k < len; k++)
                    dx[(o * len + k) * inner + i] = gv[o * inner + i] * (p / xv[(o * len + k) * inner + i]);
            }
        for (int threads = 1; threads <= 2; threads++) {
            ag_set_num_threads(threads);
            ag_tensor *xl = ag_requires_grad_(ag_detach(x), true);
            const bool done = ag_backward_ex(ag_prod_dim(xl, d, false), g, false) == AG_OK;
            worst = fmax(worst, done ? worst_vs(ag_grad(xl), dx, n) : INFINITY);
        }
        free(gv);
    }
    ag_set_num_threads(saved);
    ok(worst <= 1e-5, "float32 prod_dim along each dim of [3, 300, 200], 1 and 2 threads: gradient within %.2g of "
       "float64", worst);
    free(xv);
    ag_scope_end();
}

/* ---- prod along a dim: its lanes split over threads, zeros, NaN and inf ------------------------ */
/* The product of lane (o, i) of x [outer, n, inner] but its element k (k = n: the whole lane), in
 * float64, one factor at a time. */
static double lane_product(const double *x, int64_t n, int64_t inner, int64_t o, int64_t i, int64_t k) {
    double p = 1;
    for (int64_t j = 0; j < n; j++)
        if (j != k) p *= x[(o * n + j) * inner + i];
    return p;
}

/* PyTorch's prod along the lanes of x [outer, n, inner] (all: prod of all elements, one lane) and
 * its gradient for the seed g [outer, inner], in float64: dx = dy·y/x when x holds no zero at all,
 * 0 for all elements holding two zeros or more, else dy·Π_{j≠k} x_j on every lane
 * (prod_safe_zeros_backward; taken one by one on lanes holding a zero, NaN or inf; elsewhere y/x,
 * the same number to float64's rounding). */
static void reference_prod(const double *x, const double *g, int64_t outer, int64_t n, int64_t inner, bool all,
                           double *y, double *dx) {
    int64_t zeros = 0;
    for (int64_t k = 0; k < outer * n * inner; k++) zeros += x[k] == 0;
    const bool zero = zeros > 0, vanishes = all && zeros > 1;
    for (int64_t o = 0; o < outer; o++)
        for (int64_t i = 0; i < inner; i++) {
            const double p = lane_product(x, n, inner, o, i, n), dy = g[o * inner + i];
            y[o * inner + i] = p;
            bool plain = true;
            for (int64_t k = 0; k < n; k++) plain &= isfinite(x[(o * n + k) * inner + i]) && x[(o * n + k) * inner + i] != 0;
            for (int64_t k = 0; k < n; k++) {
                const double v = x[(o * n + k) * inner + i];
                dx[(o * n + k) * inner + i] = vanishes ? 0 : zero && !plain ? dy * lane_product(x, n, inner, o, i, k) : dy * (p / v);
            }
        }
}

/* The worst error of t against want in units of tol float32 ulps of want (f32) or tol·|want| (NaN
 * must meet NaN, inf the same inf, 0 an exact 0); INFINITY on a mismatch. */
static double worst_rel(ag_tensor *t, const double *want, int64_t n, double tol, bool f32) {
    if (!t || ag_numel(t) != n) return INFINITY;
    double *v = malloc(sizeof(double) * (size_t)(n + 1)), w = 0;
    ag_copy_to(t, v, n, AG_F64);
    for (int64_t i = 0; i < n; i++) {
        if (isnan(want[i]) || isnan(v[i]) || isinf(want[i]) || want[i] == 0) w = v[i] == want[i] || (isnan(v[i]) && isnan(want[i])) ? w : INFINITY;
        else {
            int e;
            frexp(want[i], &e);
            w = fmax(w, fabs(v[i] - want[i]) / (tol * (f32 ? ldexp(1, e - 24) : fabs(want[i]))));
        }
    }
    free(v);
    return w;
}

/* prod and prod_dim forward and backward on lanes that the threads split in every way (many short
 * lanes, strided lanes in column blocks fewer than threads or wider than a block, two and one long
 * lanes cut into runs) on 1, 2 and 3 threads (AG_BACKEND_ACCEL: threads at every size): the same
 * bits on each, and float64's values (float32: within 1.5 ulps, the gradient rounding y once and
 * y/x once; float64: 1e-12) as PyTorch defines them, with factors near ±1, and with lanes holding
 * one zero, two zeros, a NaN or an inf. */
static void test_prod_lanes(void) {
    typedef struct geometry {
        int64_t outer, n, inner;
        int dim; /* -1: ag_prod of a 1-d x */
        bool specials;
    } geometry;
    static const geometry geo[] = {{7, 1001, 3, 1, true},  {5003, 3, 1, 1, true}, {1, 3, 5003, 0, true},
                                   {2, 40001, 1, 1, false}, {1, 100003, 1, -1, false}, {1, 9, 1, -1, true}};
    const int saved = ag_get_num_threads();
    const ag_backend_mode mode = ag__backend;
    ag__backend = AG_BACKEND_ACCEL;
    uint64_t seed = 12345;
    bool all_same = true;
    for (size_t c = 0; c < sizeof geo / sizeof geo[0]; c++)
        for (int specials = 0; specials <= (int)geo[c].specials; specials++)
            for (int dt = 0; dt < 2; dt++) {
                const geometry G = geo[c];
                const ag_dtype dtype = dt ? AG_F64 : AG_F32;
                const int64_t n = G.outer * G.n * G.inner, lanes = G.outer * G.inner;
                double *xv = malloc(sizeof(double) * (size_t)(2 * n + 2 * lanes)), *dx = xv + n, *g = dx + n, *y = g + lanes;
                for (int64_t k = 0; k < n; k++) { /* factors in ±[0.99, 1.01], every third negative */
                    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
                    const double v = 0.99 + 0.02 * (double)(seed >> 11) / 9007199254740992.0;
                    xv[k] = (float)(k % 3 ? v : -v);
                }
                for (int64_t l = 0; l < lanes; l++) g[l] = (float)(0.5 + (double)(l % 7) / 4);
                if (specials) { /* lane 0: one zero and a -inf; lane 1: two zeros and an inf (both products
                                   NaN, not 0); lane 2: a NaN; lane 3: an inf (lanes mod the number of lanes) */
                    const int64_t L0 = 0, L1 = 1 % lanes, L2 = 2 % lanes, L3 = 3 % lanes;
#define AT(l, k) xv[((l) / G.inner * G.n + (k)) * G.inner + (l) % G.inner]
                    AT(L0, G.n / 2) = 0, AT(L0, 0) = -INFINITY;
                    if (G.n > 2) AT(L1, 0) = 0, AT(L1, G.n - 1) = 0, AT(L1, 1) = INFINITY;
                    AT(L2, 1) = NAN;
                    AT(L3, G.n - 2) = INFINITY;
#undef AT
                }
                reference_prod(xv, g, G.outer, G.n, G.inner, G.dim < 0, y, dx);
                ag_scope_begin();
                ag_tensor *x = ag_to_dtype(ag_from_data(xv, AG_SHAPE(n), AG_F64), dtype);
                x = G.dim < 0 ? x : ag_reshape(x, G.dim == 1 ? AG_SHAPE(G.outer, G.n, G.inner) : AG_SHAPE(G.n, G.inner));
                ag_tensor *gt = ag_to_dtype(ag_from_data(g, AG_SHAPE(lanes), AG_F64), dtype);
                ag_tensor *first[2] = {NULL, NULL};
                double w = 0;
                for (int threads = 1; threads <= 3; threads++) {
                    ag_set_num_threads(threads);
                    ag_tensor *xl = ag_requires_grad_(ag_detach(x), true);
                    ag_tensor *p = G.dim < 0 ? ag_prod(xl) : ag_prod_dim(xl, G.dim, false);
                    const bool done = p && ag_backward_ex(p, ag_reshape(gt, ag_shape_of(p)), false) == AG_OK;
                    const bool f32 = dtype == AG_F32;
                    const double tol = f32 ? 1.5 : 1e-12;
                    w = fmax(w, done ? fmax(worst_rel(p, y, lanes, tol, f32), worst_rel(ag_grad(xl), dx, n, tol, f32)) : INFINITY);
                    if (threads == 1) first[0] = p, first[1] = ag_grad(xl);
                    else all_same &= done && same_bits(first[0], p) && same_bits(first[1], ag_grad(xl));
                }
                ok(w <= 1, "%s %s of [%lld, %lld, %lld]%s, 1 to 3 threads: y and dx within tolerance of float64 (worst %.2f of it)",
                   ag_dtype_name(dtype), G.dim < 0 ? "prod" : "prod_dim", (long long)G.outer, (long long)G.n, (long long)G.inner,
                   specials ? " with zeros, NaN, inf" : "", w);
                ag_scope_end();
                free(xv);
            }
    ok(all_same, "prod and prod_dim: the same bits on 1, 2 and 3 threads, forward and backward");
    ag_set_num_threads(saved);
    ag__backend = mode;
}

/* prod_dim of strided and expanded views: the transposed x along dim 0 is x along dim 1, bit for
 * bit, gradient included (and so for cumprod, with zeros); a row v expanded to [5, 257] has the product v^5 along dim 0, and v the
 * gradient Σ over its copies of dy·v^4 = 5·dy·v^4; empty lanes give 1, no lane an empty result. */
static void test_prod_views(void) {
    ag_scope_begin();
    ag_manual_seed(23);
    ag_tensor *x = ag_add_scalar(ag_mul_scalar(ag_randn(AG_SHAPE(300, 200), AG_F32), 0.01), 1);
    ag_tensor *a = ag_requires_grad_(ag_detach(x), true), *b = ag_requires_grad_(ag_detach(x), true);
    ag_tensor *g = ag_randn(AG_SHAPE(300), AG_F32);
    ag_tensor *ya = ag_prod_dim(a, 1, false), *yb = ag_prod_dim(ag_transpose(b, 0, 1), 0, false);
    ok(same_bits(ya, yb) && ag_backward_ex(ya, g, false) == AG_OK && ag_backward_ex(yb, g, false) == AG_OK &&
           same_bits(ag_grad(a), ag_grad(b)),
       "prod_dim of a transposed [300, 200] along dim 0: the bits of prod_dim along dim 1, gradient included");
    /* cumprod's adjoint: lanes a row at a time along dim 0 (vectorised over columns), one at a time
     * along dim 1; zeros (first, later, a column of two) and an inf before a zero */
    ag_tensor *xz = ag_contiguous(ag_detach(x));
    float *zp = (float *)ag_data(xz);
    zp[0] = 0, zp[5 * 200 + 3] = 0, zp[9 * 200 + 3] = 0, zp[299 * 200 + 7] = 0, zp[2 * 200 + 11] = INFINITY,
    zp[4 * 200 + 11] = 0;
    ag_tensor *c = ag_requires_grad_(ag_detach(xz), true), *e2 = ag_requires_grad_(ag_detach(xz), true);
    ag_tensor *gc = ag_randn(AG_SHAPE(300, 200), AG_F32);
    ag_tensor *yc = ag_cumprod(c, 0), *ye2 = ag_transpose(ag_cumprod(ag_transpose(e2, 0, 1), 1), 0, 1);
    ok(same_bits(yc, ye2) && ag_backward_ex(yc, gc, false) == AG_OK && ag_backward_ex(ye2, gc, false) == AG_OK &&
           same_bits(ag_grad(c), ag_grad(e2)),
       "cumprod of [300, 200] with zeros and an inf along dim 0: the bits of the transpose along dim 1, gradient included");
    /* column blocks (three of 200 lanes) without a zero (the adjoint's rows without selects), and with zeros
     * only in late rows (the rows past a block's first zero with selects, those before without; a
     * negative x past a zero, whose dx is 0, not -0) */
    ag_tensor *xw = ag_contiguous(ag_add_scalar(ag_mul_scalar(ag_randn(AG_SHAPE(300, 600), AG_F32), 0.01), 1));
    float *wp = (float *)ag_data(xw);
    wp[250 * 600 + 300] = 0, wp[280 * 600 + 301] = 0, wp[270 * 600 + 511] = INFINITY, wp[290 * 600 + 511] = 0, wp[299 * 600 + 599] = 0;
    wp[200 * 600 + 512] = 0, wp[280 * 600 + 513] = 0, wp[100 * 600 + 400] = 0, wp[150 * 600 + 400] = -1.5f; /* blocks of 200 */
    ag_tensor *cw = ag_requires_grad_(ag_detach(xw), true), *tw = ag_requires_grad_(ag_detach(xw), true);
    ag_tensor *gw = ag_randn(AG_SHAPE(300, 600), AG_F32);
    ag_tensor *ycw = ag_cumprod(cw, 0), *ytw = ag_transpose(ag_cumprod(ag_transpose(tw, 0, 1), 1), 0, 1);
    ok(same_bits(ycw, ytw) && ag_backward_ex(ycw, gw, false) == AG_OK && ag_backward_ex(ytw, gw, false) == AG_OK &&
           same_bits(ag_grad(cw), ag_grad(tw)),
       "cumprod of [300, 600] along dim 0, a block of lanes without zeros and zeros only in late rows: the bits of the "
       "transpose along dim 1, gradient included");
    double vv[257], want[257], dwant[257];
    for (int i = 0; i < 257; i++) {
        vv[i] = 0.9 + i / 1000.0;
        want[i] = pow(vv[i], 5), dwant[i] = 5 * pow(vv[i], 4);
    }
    ag_tensor *v = ag_requires_grad_(ag_from_data(vv, AG_SHAPE(1, 257), AG_F64), true);
    ag_tensor *ye = ag_prod_dim(ag_expand(v, AG_SHAPE(5, 257)), 0, false);
    ok(worst_vs(ye, want, 257) <= 1e-15 && ag_backward_ex(ye, ag_ones(AG_SHAPE(257), AG_F64), false) == AG_OK &&
           worst_vs(ag_grad(v), dwant, 257) <= 1e-14,
       "prod_dim of a row expanded to [5, 257] along dim 0: v^5, gradient 5·v^4");
    ag_tensor *e = ag_requires_grad_(ag_zeros(AG_SHAPE(3, 0), AG_F32), true);
    ag_tensor *ye1 = ag_prod_dim(e, 1, false);
    ok(ye1 && ag_numel(ye1) == 3 && worst_vs(ye1, (double[]){1, 1, 1}, 3) == 0 &&
           ag_backward_ex(ye1, ag_ones(AG_SHAPE(3), AG_F32), false) == AG_OK && ag_grad(e) && ag_numel(ag_grad(e)) == 0,
       "prod_dim of [3, 0] along dim 1: three empty lanes give 1, and an empty gradient");
    ag_tensor *ye0 = ag_prod_dim(ag_zeros(AG_SHAPE(0, 5), AG_F32), 1, true);
    ag_shape s0 = ye0 ? ag_shape_of(ye0) : AG_SCALAR_SHAPE;
    ok(ye0 && s0.ndim == 2 && s0.dim[0] == 0 && s0.dim[1] == 1, "prod_dim of [0, 5] along dim 1 (keepdim): shape [0, 1]");
    ag_scope_end();
}

/* ---- prod_dim on the lanes as they lie in memory --------------------------------------------- */
/* The product of v[0], v[s], .. v[(n - 1)·s] in float64 in the order ops/extrema.c documents for a
 * lane of prod_dim: along the innermost dim in memory (unit) in runs of 2^15 factors, each in
 * sixteen interleaved accumulators (factor k into k mod 16, then a_j·a_{j+8}, then
 * ((a0·a4)·(a1·a5))·((a2·a6)·(a3·a7))), the runs' products multiplied in order; any other lane
 * one factor at a time, in order. */
static double documented_product(const double *v, int64_t n, int64_t s, bool unit) {
    double p = 1;
    if (!unit) {
        for (int64_t k = 0; k < n; k++) p *= v[k * s];
        return p;
    }
    for (int64_t k0 = 0; k0 < n; k0 += (int64_t)1 << 15) {
        const int64_t m = n - k0 < ((int64_t)1 << 15) ? n - k0 : (int64_t)1 << 15;
        double a[16];
        for (int j = 0; j < 16; j++) a[j] = 1;
        for (int64_t k = 0; k < m; k++) a[k % 16] *= v[k0 + k];
        for (int j = 0; j < 8; j++) a[j] *= a[j + 8];
        p *= ((a[0] * a[4]) * (a[1] * a[5])) * ((a[2] * a[6]) * (a[3] * a[7]));
    }
    return p;
}

/* prod_dim of contiguous, transposed and permuted inputs (odd sizes: 8-row blocks and 32-column
 * strips of the column kernel with their leftovers, and a lane longer than a run of 2^15), along every
 * dim, keepdim or not, float32 and float64, with and without a zero, a NaN and infinities, on 1 to 3
 * threads (AG_BACKEND_ACCEL: threads at every size): every result the bits of documented_product
 * over the lane in the input's memory (rounded once to float32), and within the bound of any
 * order of float64 products of the exact product: against the product one factor at a time in
 * logical order, float64 within 2(n - 1)·2^-53 relative and float32 within 1 ulp. */
static void test_prod_memory_order(void) {
    typedef struct geometry {
        int nd;
        int64_t shape[3]; /* of the contiguous tensor c */
        int perm[3];      /* x = permute(c, perm) */
    } geometry;
    static const geometry geo[] = {
        {2, {37, 45}, {0, 1}},         {2, {37, 45}, {1, 0}},         {2, {19, 130}, {1, 0}},
        {2, {3, 40001}, {1, 0}},       {3, {5, 23, 41}, {0, 1, 2}},   {3, {5, 23, 41}, {2, 0, 1}},
        {3, {5, 23, 41}, {1, 2, 0}},   {3, {5, 23, 41}, {0, 2, 1}},   {3, {5, 23, 41}, {2, 1, 0}},
        {3, {9, 1, 70}, {1, 2, 0}},
    };
    const int saved = ag_get_num_threads();
    const ag_backend_mode mode = ag__backend;
    ag__backend = AG_BACKEND_ACCEL;
    uint64_t seed = 4242;
    double worst_bound = 0;
    for (size_t c = 0; c < sizeof geo / sizeof geo[0]; c++)
        for (int specials = 0; specials <= 1; specials++)
            for (int dt = 0; dt < 2; dt++) {
                const geometry G = geo[c];
                const ag_dtype dtype = dt ? AG_F64 : AG_F32;
                int64_t n = 1, cstride[3];
                for (int k = G.nd - 1; k >= 0; k--) cstride[k] = n, n *= G.shape[k];
                double *cv = malloc(sizeof(double) * (size_t)n);
                for (int64_t k = 0; k < n; k++) { /* factors in ±[0.5, 2], in the dtype */
                    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
                    const double v = exp2(2 * (double)(seed >> 11) / 9007199254740992.0 - 1);
                    cv[k] = dt ? (seed >> 7 & 1 ? v : -v) : (double)(float)(seed >> 7 & 1 ? v : -v);
                }
                if (specials) cv[n / 3] = 0, cv[n / 2] = NAN, cv[n - 2] = INFINITY, cv[1] = -INFINITY;
                int64_t vshape[3], vstride[3]; /* the view's shape and strides into cv */
                for (int k = 0; k < G.nd; k++) vshape[k] = G.shape[G.perm[k]], vstride[k] = cstride[G.perm[k]];
                char bad[96] = "";
                ag_scope_begin();
                ag_shape cs = {.ndim = G.nd};
                for (int k = 0; k < G.nd; k++) cs.dim[k] = G.shape[k];
                ag_tensor *x = ag_permute(ag_to_dtype(ag_from_data(cv, cs, AG_F64), dtype), G.perm);
                for (int d = 0; d < G.nd; d++)
                    for (int keep = 0; keep <= 1; keep++) {
                        /* the expected results, in y's (row-major) order: the view's other dims */
                        const int64_t lanes = n / vshape[d];
                        double *want = malloc(sizeof(double) * (size_t)(2 * lanes)), *seq = want + lanes;
                        for (int64_t l = 0; l < lanes; l++) {
                            int64_t rest = l, off = 0;
                            for (int k = G.nd - 1; k >= 0; k--) {
                                if (k == d) continue;
                                off += rest % vshape[k] * vstride[k], rest /= vshape[k];
                            }
                            const double p = documented_product(cv + off, vshape[d], vstride[d], vstride[d] == 1);
                            want[l] = dt ? p : (double)(float)p;
                            seq[l] = documented_product(cv + off, vshape[d], vstride[d], false);
                        }
                        for (int threads = 1; threads <= 3; threads++) {
                            ag_set_num_threads(threads);
                            ag_tensor *y = ag_prod_dim(x, d, keep);
                            double *got = malloc(sizeof(double) * (size_t)(lanes + 1));
                            bool same = y && ag_numel(y) == lanes && (int)ag_shape_of(y).ndim == G.nd - !keep;
                            if (same) ag_copy_to(y, got, lanes, AG_F64);
                            for (int64_t l = 0; same && l < lanes; l++) {
                                same = got[l] == want[l] || (isnan(got[l]) && isnan(want[l]));
                                /* the bound, against one order (float32: where the product is a normal float32) */
                                if (same && isfinite(seq[l]) && seq[l] != 0 &&
                                    (dt || (fabs(seq[l]) >= 0x1p-126 && fabs(seq[l]) <= 0x1.fffffep127))) {
                                    int e;
                                    frexp(seq[l], &e);
                                    const double b = dt ? fabs(seq[l]) * 2 * (double)(vshape[d] - 1) * ldexp(1, -53)
                                                        : ldexp(1, e - 24);
                                    worst_bound = fmax(worst_bound, fabs(got[l] - seq[l]) / b);
                                }
                            }
                            free(got);
                            if (!same && !bad[0])
                                snprintf(bad, sizeof bad, " (first miss: dim %d%s, %d threads)", d, keep ? ", keepdim" : "", threads);
                        }
                        free(want);
                    }
                ok(!bad[0], "%s prod_dim of a %d-d [%lld, %lld, ...] permuted (%d, %d, ...)%s along every dim, keepdim or not, "
                   "1 to 3 threads: the documented order's bits%s", ag_dtype_name(dtype), G.nd, (long long)G.shape[0],
                   (long long)G.shape[1], G.perm[0], G.perm[1], specials ? " with 0, NaN, inf" : "", bad);
                ag_scope_end();
                free(cv);
            }
    ok(worst_bound <= 1, "prod_dim in memory order: within 2(n-1)·2^-53 (float64) or 1 ulp (float32) of the product in "
       "logical order (worst %.3f of the bound)", worst_bound);
    ag_set_num_threads(saved);
    ag__backend = mode;
}

/* Softmax and log_softmax forward over float32 rows of 8 (with AVX-512 two rows a vector, the rows
 * past the last multiple of 8 in the transposed kernel) against the reference kernels: [1003, 8] of
 * randn·3 with a NaN row, a +inf row, a row of only -inf, a row of ±0 and one with -inf next to
 * finite values, 1 and 2 threads; the same bits on both. */
static void test_softmax_rows8(void) {
    ag_scope_begin();
    const int saved = ag_get_num_threads();
    ag_manual_seed(29);
    ag_tensor *x = ag_contiguous(ag_mul_scalar(ag_randn(AG_SHAPE(1003, 8), AG_F32), 3));
    float *v = ag_data(x);
    v[5 * 8 + 3] = NAN, v[9 * 8 + 2] = INFINITY, v[14 * 8 + 7] = -INFINITY;
    for (int k = 0; k < 8; k++) v[11 * 8 + k] = -INFINITY, v[1001 * 8 + k] = k % 2 ? 0.0f : -0.0f;
    double worst = 0;
    bool same = true;
    for (int is_log = 0; is_log < 2; is_log++) {
        ag_tensor *first = NULL;
        for (int threads = 1; threads <= 2; threads++) {
            ag_set_num_threads(threads);
            ag_tensor *y[2];
            for (int ref = 0; ref < 2; ref++) {
                ag__backend = ref ? AG_BACKEND_REFERENCE : AG_BACKEND_AUTO;
                y[ref] = is_log ? ag_log_softmax(x, 1) : ag_softmax(x, 1);
            }
            ag__backend = AG_BACKEND_AUTO;
            worst = fmax(worst, worst_diff(y[0], y[1]));
            if (threads == 1) first = y[0];
            else same &= same_bits(first, y[0]);
        }
    }
    ag_set_num_threads(saved);
    ok(worst <= 1e-6 && same, "softmax and log_softmax over float32 rows of 8 with NaN, inf, -inf and ±0 rows: within "
       "%.2g of the reference kernels, the same bits on 1 and 2 threads", worst);
    ag_scope_end();
}

/* softmax and log_softmax of x along dim on 1 and 2 threads, by the default kernels, the C block
 * kernel and the reference: *same keeps whether the default gives the C blocks' bits, *worst the
 * largest difference from the reference, *ran whether every call returned. */
static void softmax_backends_agree(ag_tensor *x, int dim, bool *ran, bool *same, double *worst) {
    for (int is_log = 0; is_log < 2; is_log++)
        for (int threads = 1; threads <= 2; threads++) {
            ag_set_num_threads(threads);
            ag_tensor *y[3];
            const ag__softmax_backend be[3] = {AG__SOFTMAX_AUTO, AG__SOFTMAX_C_BLOCKS, AG__SOFTMAX_REFERENCE};
            for (int b = 0; b < 3; b++) {
                const ag__softmax_backend old = ag__softmax_set_backend(be[b]);
                y[b] = is_log ? ag_log_softmax(x, dim) : ag_softmax(x, dim);
                ag__softmax_set_backend(old);
                *ran &= y[b] != NULL;
            }
            *same &= same_bits(y[0], y[1]);
            *worst = fmax(*worst, worst_diff(y[0], y[2]));
        }
}

/* Softmax and log_softmax forward along a dim with lanes a stride apart in float32 blocks: the
 * AVX-512 block kernel (fast_fwd_block_f32_512, where the CPU runs AVX-512) against the cloned C block
 * kernel (AG__SOFTMAX_C_BLOCKS), bit for bit: [1000, 1000] along dim 0 (fifteen blocks of 64 lanes
 * and one of 40: two full vectors and a masked one), [2, 37, 70] along dim 1 (a block of 64 and one
 * of 6), [300, 17] along dim 0 (17: one full vector and one lane) and [9, 5, 16] along dim 0, each of
 * randn·3 with a NaN in one lane, +inf in another, a lane of only -inf, one of ±0 and one with -inf
 * next to finite values, on 1 and 2 threads; and the block kernel within 1e-6 of the reference. */
static void test_softmax_blocks512(void) {
    ag_scope_begin();
    const int saved = ag_get_num_threads();
    const struct {
        ag_shape shape;
        int dim;
    } cases[] = {{AG_SHAPE(1000, 1000), 0}, {AG_SHAPE(2, 37, 70), 1}, {AG_SHAPE(300, 17), 0}, {AG_SHAPE(9, 5, 16), 0}};
    bool same = true, ran = true;
    double worst = 0;
    ag_manual_seed(31);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        ag_tensor *x = ag_contiguous(ag_mul_scalar(ag_randn(cases[c].shape, AG_F32), 3));
        float *v = ag_data(x);
        const int64_t n = cases[c].shape.dim[cases[c].dim];
        int64_t inner = 1;
        for (int d = cases[c].dim + 1; d < cases[c].shape.ndim; d++) inner *= cases[c].shape.dim[d];
        /* lanes of the first outer slab: lane i's element k at k·inner + i */
        v[3 * inner + 1] = NAN, v[2 * inner + 2] = INFINITY;
        for (int64_t k = 0; k < n; k++) v[k * inner + 4] = -INFINITY, v[k * inner + inner - 1] = k % 2 ? 0.0f : -0.0f;
        v[5 * inner + 3] = -INFINITY;
        softmax_backends_agree(x, cases[c].dim, &ran, &same, &worst);
    }
    ag_set_num_threads(saved);
    ok(ran && same && worst <= 1e-6,
       "softmax and log_softmax along dims with lanes a stride apart, float32 blocks of 64, 40, 17, 16 and 6 lanes "
       "with NaN, inf, -inf and ±0 lanes: the %s block kernel gives the C block kernel's bits, within %.2g of the "
       "reference", AG_VEC_512() ? "AVX-512" : "(no AVX-512 here: C)", worst);
    ag_scope_end();
}

/* Softmax and log_softmax forward along a dim with lanes a stride apart, float32, where the CPU runs AVX-512:
 * the pipelined steps of 32 lanes (fast_fwd_steps_f32_512: a step's exponentials with the next step's max
 * pass and the previous step's last pass, NaN lanes found by a sum of x - x) and each block's lanes left
 * against the cloned C block kernel (AG__SOFTMAX_C_BLOCKS), bit for bit: [160, 1000] along dim 0 (31 steps
 * and a block's 8 lanes left), [8, 160, 128] along dim 1 (the pipeline across outer slabs), [4, 170, 200]
 * along dim 1 (six steps a slab, 8 lanes left), [7, 3, 50] along dim 0 (two steps of 64 and 22 lanes left)
 * and [33, 31] along dim 0 (no step); randn·3 with, in the first and last slab, NaN lanes (one where the
 * max is finite, one negative NaN last in a vector beside a -inf lane: only the NaN marks make it NaN, as
 * vexpf's clamp takes it to -104), a +inf lane, a lane of only -inf, lanes
 * with -inf beside finite values (the x - x sum NaN, the output not) and a ±0 lane, in different steps; on
 * 1 and 2 threads (the items split between them), within 1e-6 of the reference kernels. */
static void test_softmax_blocks_pipelined(void) {
    ag_scope_begin();
    const int saved = ag_get_num_threads();
    const struct {
        ag_shape shape;
        int dim;
    } cases[] = {{AG_SHAPE(160, 1000), 0}, {AG_SHAPE(8, 160, 128), 1}, {AG_SHAPE(4, 170, 200), 1},
                 {AG_SHAPE(7, 3, 50), 0}, {AG_SHAPE(33, 31), 0}};
    bool same = true, ran = true;
    double worst = 0;
    ag_manual_seed(41);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        ag_tensor *x = ag_contiguous(ag_mul_scalar(ag_randn(cases[c].shape, AG_F32), 3));
        float *v = ag_data(x);
        const int64_t n = cases[c].shape.dim[cases[c].dim];
        int64_t inner = 1, outer = 1;
        for (int d = cases[c].dim + 1; d < cases[c].shape.ndim; d++) inner *= cases[c].shape.dim[d];
        for (int d = 0; d < cases[c].dim; d++) outer *= cases[c].shape.dim[d];
        for (int64_t o = 0; o < outer; o += outer > 1 ? outer - 1 : 1) {
            float *s = v + o * n * inner; /* lane i's element k at k·inner + i */
            const int64_t lane[8] = {1, 40 % inner, 70 % inner, 99 % inner, 96 % inner, 130 % inner, inner - 1, 17 % inner};
            s[3 * inner + lane[0]] = NAN;                                     /* NaN, finite max */
            s[(n / 2) * inner + lane[1]] = INFINITY;                          /* +inf */
            for (int64_t k = 0; k < n; k++) s[k * inner + lane[2]] = -INFINITY; /* only -inf */
            s[0 * inner + lane[3]] = -INFINITY;                                /* -inf beside finite values */
            s[(n - 1) * inner + lane[4]] = copysignf(NAN, -1.0f); /* a negative NaN (vexpf's clamp would make it
                                                                     * -104) last, beside lane 99's -inf */
            for (int64_t k = 0; k < n; k++) s[k * inner + lane[5]] = k % 2 ? 0.0f : -0.0f; /* ±0 */
            s[(n - 1) * inner + lane[6]] = -INFINITY, s[1 * inner + lane[7]] = -INFINITY;
        }
        softmax_backends_agree(x, cases[c].dim, &ran, &same, &worst);
    }
    ag_set_num_threads(saved);
    ok(ran && same && worst <= 1e-6,
       "softmax and log_softmax along dims with lanes a stride apart, float32, pipelined steps of 32 lanes and the "
       "lanes left, with NaN, inf, -inf and ±0 lanes: the %s gives the C block kernel's bits on 1 and 2 threads, "
       "within %.2g of the reference",
       AG_VEC_512() ? "AVX-512 pipeline" : "(no AVX-512 here: C block kernel)", worst);
    ag_scope_end();
}

/* Softmax and log_softmax forward over float32 rows along the last dim: the fused AVX-512 pass
 * (exp_sum_row_avx512: x - m, the exponentials and the row's float64 sum in one pass, where the CPU runs
 * AVX-512) against the separate passes (AG__SOFTMAX_C_BLOCKS), bit for bit, on one thread: rows of 64 (the
 * shortest fused), 71, 72, 79, 80 (full vectors, a masked one, a group of eight more, a tail), 1000, 1003
 * and 3001 (one row a block), each [8, n] of randn·3 with a NaN row, a +inf row, a row of only -inf, a row
 * of ±0 and one with -inf next to finite values; the fused rows on two threads give the same bits, and
 * stay within 1e-6 of the reference kernels.  Softmax's rows after a thread's first take their max from the
 * previous row's pass (exp_sum_row_next_avx512): an eighth row holds a negative NaN first, row 5 a NaN last,
 * row 6 its max last (a masked tail where n mod 16 is not 0) and row 1 its +inf there, so that a NaN or a max
 * missed in the next row, in the full vectors or the tail, shows. */
static void test_softmax_rows_fused(void) {
    ag_scope_begin();
    const int saved = ag_get_num_threads();
    const int64_t ns[] = {64, 71, 72, 79, 80, 1000, 1003, 3001};
    bool same = true, ran = true;
    double worst = 0;
    ag_manual_seed(37);
    for (size_t c = 0; c < sizeof ns / sizeof ns[0]; c++) {
        const int64_t n = ns[c];
        ag_tensor *x = ag_contiguous(ag_mul_scalar(ag_randn(AG_SHAPE(8, n), AG_F32), 3));
        float *v = ag_data(x);
        v[0 * n + n / 2] = NAN, v[1 * n + n - 1] = INFINITY, v[3 * n + 5] = -INFINITY;
        for (int64_t k = 0; k < n; k++) v[2 * n + k] = -INFINITY, v[4 * n + k] = k % 2 ? 0.0f : -0.0f;
        v[5 * n + n - 1] = NAN, v[6 * n + n - 1] = 40, v[7 * n] = -NAN;
        for (int is_log = 0; is_log < 2; is_log++) {
            ag_set_num_threads(1);
            ag_tensor *y[3];
            const ag__softmax_backend be[3] = {AG__SOFTMAX_AUTO, AG__SOFTMAX_C_BLOCKS, AG__SOFTMAX_REFERENCE};
            for (int b = 0; b < 3; b++) {
                const ag__softmax_backend old = ag__softmax_set_backend(be[b]);
                y[b] = is_log ? ag_log_softmax(x, 1) : ag_softmax(x, 1);
                ag__softmax_set_backend(old);
                ran &= y[b] != NULL;
            }
            ag_set_num_threads(2);
            ag_tensor *two = is_log ? ag_log_softmax(x, 1) : ag_softmax(x, 1);
            ran &= two != NULL;
            same &= ran && same_bits(y[0], y[1]) && same_bits(y[0], two);
            if (ran) worst = fmax(worst, worst_diff(y[0], y[2]));
        }
    }
    ag_set_num_threads(saved);
    ok(ran && same && worst <= 1e-6,
       "softmax and log_softmax over float32 rows of 64 to 3001 with NaN, inf, -inf and ±0 rows: the %s gives the "
       "separate passes' bits, on 1 and 2 threads, within %.2g of the reference",
       AG_VEC_512() ? "fused AVX-512 pass" : "(no AVX-512 here: separate passes)", worst);
    ag_scope_end();
}

/* Softmax and log_softmax over float32 rows of 64 and more (ops/softmax.c: the row sums in AG_SUM16_QUADS_THEN16's
 * order, the fused AVX-512 pass, the C loops, log_softmax's adjoint's Σ dy) on one thread, with the default kernels
 * and AG__SOFTMAX_C_BLOCKS, against their documented order written out here, bit for bit: softmax y = e·(float)(1/s)
 * with e = vexpf_fma(x - m), s = quads_then16_ref(e); softmax's dx = y·(dy - (float)s), s = AG_SUM8 of dy·y (kept:
 * faster there); log_softmax's dx = dy - vexpf_fma(y)·(float)s, s = quads_then16_ref(dy).  And within their bounds of
 * long double:
 * softmax's y within 2^-24·p·(|x - m| + Σ p·(m - x) + 8) of p = exp(x - m) / Σ exp(x - m) (x - m rounded,
 * vexpf_fma's 0.87 ulp in e and in Σ, the quads' Σ within 2·2^-24 + float64's, 1/s and the product rounded);
 * softmax's dx within 2^-24·(|y|·(3.01·Σ|dy·y| + |S| + 2·|dy - S|) + |dx|) of y·(dy - S), S = Σ dy·y exact over
 * the float32 y (the products, the sum's roundings, (float)s, the difference and the product).  Rows
 * [5, n] of randn·3 (dy randn), one with a value 30 above the rest; n = 64, 80, 100, 127, 128, 176, 1000, 1003, 3001
 * (n mod 64 = 0, 16, 36, 63, 0, 48, 40, 43, 57: the blocks of 16 after the quads and the tails). */
static void test_softmax_row_sum_bounds(void) {
    ag_scope_begin();
    const int saved = ag_get_num_threads();
    const int64_t ns[] = {64, 80, 100, 127, 128, 176, 1000, 1003, 3001}, R = 5;
    const double u = 0x1p-24;
    bool ran = true;
    int bad = 0, cases = 0;
    double worst_y = 0, worst_dx = 0;
    ag_set_num_threads(1);
    ag_manual_seed(53);
    for (size_t c = 0; c < sizeof ns / sizeof ns[0]; c++)
        for (int b = 0; b < 2; b++)
            for (int is_log = 0; is_log < 2; is_log++) {
                const int64_t n = ns[c];
                ag_tensor *x = ag_contiguous(ag_mul_scalar(ag_randn(AG_SHAPE(R, n), AG_F32), 3));
                ag_tensor *g = ag_randn(AG_SHAPE(R, n), AG_F32);
                float *xv = ag_data(x);
                xv[2 * n + n / 3] += 30;
                const ag__softmax_backend old = ag__softmax_set_backend(b ? AG__SOFTMAX_C_BLOCKS : AG__SOFTMAX_AUTO);
                ag_tensor *xg = ag_requires_grad_(ag_clone(x), true);
                ag_tensor *y = is_log ? ag_log_softmax(xg, 1) : ag_softmax(xg, 1);
                ran &= y && ag_backward_ex(y, g, false) == AG_OK && ag_grad(xg);
                ag__softmax_set_backend(old);
                float *t = malloc(sizeof(float) * (size_t)n);
                if (!ran || !t) {
                    free(t);
                    ran = false;
                    break;
                }
                const float *yv = ag_data(y), *gv = ag_data(g), *dv = ag_data(ag_grad(xg));
                for (int64_t r = 0; r < R; r++) {
                    const float *xr = xv + r * n, *yr = yv + r * n, *gr = gv + r * n, *dr = dv + r * n;
                    int rowbad = 0;
                    if (!is_log) { /* the forward's bits and bound */
                        float m = -INFINITY;
                        for (int64_t k = 0; k < n; k++) m = xr[k] > m ? xr[k] : m;
                        for (int64_t k = 0; k < n; k++) t[k] = vexpf_fma(xr[k] - m);
                        const float f = (float)(1 / quads_then16_ref(t, n));
                        for (int64_t k = 0; k < n; k++) {
                            const float want = t[k] * f;
                            rowbad |= memcmp(&yr[k], &want, sizeof want) != 0;
                        }
                        long double S = 0, spread = 0;
                        for (int64_t k = 0; k < n; k++) S += expl((long double)xr[k] - m);
                        for (int64_t k = 0; k < n; k++) spread += expl((long double)xr[k] - m) / S * (m - (long double)xr[k]);
                        for (int64_t k = 0; k < n; k++) {
                            const long double p = expl((long double)xr[k] - m) / S;
                            const double tol = u * (double)p * ((double)(m - xr[k]) + (double)spread + 8) + 0x1p-149;
                            worst_y = fmax(worst_y, (double)fabsl(yr[k] - p) / tol);
                        }
                        /* the adjoint: dx = y·(dy - (float)s) */
                        for (int64_t k = 0; k < n; k++) t[k] = gr[k] * yr[k];
                        double sd;
                        AG_SUM8(sd, n, k, (double)t[k]);
                        const float fs = (float)sd;
                        for (int64_t k = 0; k < n; k++) {
                            const float want = yr[k] * (gr[k] - fs);
                            rowbad |= memcmp(&dr[k], &want, sizeof want) != 0;
                        }
                        long double SD = 0, A = 0;
                        for (int64_t k = 0; k < n; k++)
                            SD += (long double)gr[k] * yr[k], A += fabsl((long double)gr[k] * yr[k]);
                        for (int64_t k = 0; k < n; k++) {
                            const long double want = (long double)yr[k] * (gr[k] - SD);
                            const long double tol = u * (fabsl((long double)yr[k]) * (3.01L * A + fabsl(SD) + 2 * fabsl(gr[k] - SD)) + fabsl(want)) + 0x1p-149L;
                            worst_dx = fmax(worst_dx, (double)(fabsl(dr[k] - want) / tol));
                        }
                    } else { /* log_softmax's adjoint: dx = dy - vexpf_fma(y)·(float)s, s = Σ dy */
                        const float fs = (float)quads_then16_ref(gr, n);
                        for (int64_t k = 0; k < n; k++) {
                            const float want = gr[k] - vexpf_fma(yr[k]) * fs;
                            rowbad |= memcmp(&dr[k], &want, sizeof want) != 0;
                        }
                    }
                    bad += rowbad;
                    cases++;
                }
                free(t);
            }
    ag_set_num_threads(saved);
    ok(ran && bad == 0, "softmax and log_softmax over float32 rows of 64 to 3001 (%s and the C loops): y and dx are "
       "the documented sums' orders' (float32 quads, then sixteens; softmax's Σ dy·y AG_SUM8's) bit for bit (%d of %d rows differ)",
       AG_VEC_512() ? "the fused AVX-512 pass" : "no AVX-512 here", bad, cases);
    ok(ran && worst_y <= 1 && worst_dx <= 1, "softmax over float32 rows of 64 to 3001: y and dx within their bounds of "
       "long double (worst error / bound: %.3g, %.3g)", worst_y, worst_dx);
    ag_scope_end();
}

/* layer_norm's float32 rows four at a time (the statistics and the adjoint's two sums of four rows
 * at once by AVX-512 intrinsics, where the CPU runs them) against each row alone (one row: the
 * row kernels), bit for bit: y and dx of [7, K] (four rows and three) for K = 1024, 1001 (blocks of 64
 * and 32 and a tail of the quads, the eight accumulators' tail of Σ x), 17 and 7 (no full vector), with and without
 * weight and bias (and with a weight and no gradient for it: dx alone), rows of randn·2 + 0.5, one
 * row offset by 1e4, on 1 and 2 threads. */
static void test_layer_norm_rows4(void) {
    ag_scope_begin();
    const int saved = ag_get_num_threads();
    const int64_t Ks[] = {1024, 1001, 17, 7}, A = 7;
    bool same = true, ran = true;
    ag_manual_seed(37);
    for (size_t c = 0; c < sizeof Ks / sizeof Ks[0]; c++)
        for (int affine = 0; affine < 3; affine++) /* none, weight and bias with gradients, a weight without */
            for (int threads = 1; threads <= 2; threads++) {
                const int64_t K = Ks[c];
                ag_set_num_threads(threads);
                ag_tensor *x0 = ag_add_scalar(ag_mul_scalar(ag_randn(AG_SHAPE(A, K), AG_F32), 2), 0.5);
                float *xv = ag_data(x0);
                for (int64_t k = 0; k < K; k++) xv[2 * K + k] += 1e4f;
                ag_tensor *x = ag_requires_grad_(x0, true), *g = ag_randn(AG_SHAPE(A, K), AG_F32);
                ag_tensor *w = affine ? ag_requires_grad_(ag_randn(AG_SHAPE(K), AG_F32), affine == 1) : NULL;
                ag_tensor *b = affine == 1 ? ag_requires_grad_(ag_randn(AG_SHAPE(K), AG_F32), true) : NULL;
                ag_tensor *y = ag_layer_norm(x, AG_SHAPE(K), w, b, 1e-5);
                ran &= y && ag_backward_ex(y, g, false) == AG_OK && ag_grad(x);
                for (int64_t a = 0; ran && a < A; a++) {
                    ag_tensor *xa = ag_requires_grad_(ag_contiguous(ag_slice(ag_detach(x), 0, a, a + 1, 1)), true);
                    ag_tensor *ya = ag_layer_norm(xa, AG_SHAPE(K), w, b, 1e-5);
                    ran &= ya && ag_backward_ex(ya, ag_contiguous(ag_slice(g, 0, a, a + 1, 1)), false) == AG_OK;
                    same &= ran && same_bits(ya, ag_slice(y, 0, a, a + 1, 1)) &&
                            same_bits(ag_grad(xa), ag_slice(ag_grad(x), 0, a, a + 1, 1));
                }
            }
    ag_set_num_threads(saved);
    ok(ran && same, "float32 layer_norm of [7, K], K = 1024, 1001, 17, 7, with and without weight and bias, 1 and 2 "
       "threads: y and dx of rows taken four at a time (%s) have the bits of each row alone",
       AG_VEC_512() ? "AVX-512" : "no AVX-512 here: the row kernels");
    ag_scope_end();
}

/* layer_norm's adjoint over four float32 rows with a weight, when dx is wanted too, makes dw and db in the
 * pass that makes the rows' two sums (ln_rows4_bwd_fused_f32_512, where the CPU runs AVX-512): dw and db
 * bit for bit against the same layer_norm whose x wants no gradient (dw, db by ln_rows4_param_grads
 * alone), for [9, K] (two blocks of four rows and one alone) with K = 1024 (blocks of 64 only), 1050
 * (and blocks of 16, a tail), 1001 (a block of 32, a tail), 51, 17 and 7 (no block of 64), rows
 * of randn·2 + 0.5 and one offset by 1e4, a weight and bias both wanted, the weight alone, and the bias
 * alone (a weight without gradient), on 1 and 2 threads. */
static void test_layer_norm_param_grads_fused(void) {
    ag_scope_begin();
    const int saved = ag_get_num_threads();
    const int64_t Ks[] = {1024, 1050, 1001, 51, 17, 7}, A = 9;
    bool same = true, ran = true;
    ag_manual_seed(41);
    for (size_t c = 0; c < sizeof Ks / sizeof Ks[0]; c++)
        for (int want = 0; want < 3; want++) /* dw and db, dw alone (no bias), db alone */
            for (int threads = 1; threads <= 2; threads++) {
                const int64_t K = Ks[c];
                ag_set_num_threads(threads);
                ag_tensor *x0 = ag_add_scalar(ag_mul_scalar(ag_randn(AG_SHAPE(A, K), AG_F32), 2), 0.5);
                float *xv = ag_data(x0);
                for (int64_t k = 0; k < K; k++) xv[5 * K + k] += 1e4f;
                ag_tensor *g = ag_randn(AG_SHAPE(A, K), AG_F32), *wd = ag_randn(AG_SHAPE(K), AG_F32);
                ag_tensor *bd = want != 1 ? ag_randn(AG_SHAPE(K), AG_F32) : NULL, *grads[2][2] = {{NULL}};
                for (int with_dx = 0; with_dx < 2; with_dx++) {
                    ag_tensor *x = ag_requires_grad_(ag_detach(x0), with_dx);
                    ag_tensor *w = ag_requires_grad_(ag_detach(wd), want != 2);
                    ag_tensor *b = bd ? ag_requires_grad_(ag_detach(bd), want != 1) : NULL;
                    ran &= ag_backward_ex(ag_layer_norm(x, AG_SHAPE(K), w, b, 1e-5), g, false) == AG_OK &&
                           !ag_grad(x) == !with_dx;
                    grads[with_dx][0] = ag_grad(w), grads[with_dx][1] = b ? ag_grad(b) : NULL;
                }
                for (int p = 0; p < 2; p++) {
                    const bool wanted = p ? want != 1 : want != 2;
                    same &= wanted ? same_bits(grads[0][p], grads[1][p]) : !grads[0][p] && !grads[1][p];
                }
            }
    ag_set_num_threads(saved);
    ok(ran && same, "float32 layer_norm of [9, K], K = 1024, 1050, 1001, 51, 17, 7, weight and bias, weight alone, "
       "bias alone, 1 and 2 threads: dw and db made with the rows' sums (%s) have the bits of dw and db alone",
       AG_VEC_512() ? "AVX-512" : "no AVX-512 here: the two kernels");
    ag_scope_end();
}

/* float32 layer_norm's sums (ops/norm.c, core/sum_pairs.h's AG_SUM16_QUADS: terms added four at a time in
 * float32, then in float64) within their documented bounds of exact sums in long double, on the rows taken
 * four at a time (AVX-512, where the CPU runs it) and alone ([9, K]: two blocks of four and one row):
 * - the mean m (the saved statistics): Σ x of exact terms in float64 (AG_SUM8), within (K/8 + 12)·2^-53·Σ|x|;
 * - the variance, 1/r² - ε from the saved r: Σ (x - mt)² in float32 terms within 5·2^-24 of the sum of
 *   squares about mt (+ the mean's error through (m - mt)², + float64's);
 * - db = Σ_rows dy, four rows added in float32 first: within 2·2^-24·Σ|dy| (+ float64's and the result's
 *   rounding to float32).
 * Rows: randn·2 + 0.5, 1e4 + randn, x[0] an outlier (1e3, the rest randn), values of exponents -20..20
 * with random signs; K = 1024, 1001, 77, 40, 17, 7, 1; without a weight and with one (db then made in the
 * pass of the rows' sums, ln_rows4_bwd_fused_f32_512). */
static void test_layer_norm_sum_bounds(void) {
    ag_scope_begin();
    const int64_t Ks[] = {1024, 1001, 77, 40, 17, 7, 1}, R = 9;
    const long double u = 0x1p-24L, e53 = 0x1p-53L;
    double worst_m = 0, worst_v = 0, worst_db = 0; /* the largest error / bound seen */
    bool ran = true;
    ag_manual_seed(43);
    for (size_t c = 0; c < sizeof Ks / sizeof Ks[0]; c++)
        for (int kind = 0; kind < 8; kind++) { /* kind / 2: the rows; odd: with a weight (db by the fused pass) */
            const int64_t K = Ks[c];
            ag_tensor *x = ag_randn(AG_SHAPE(R, K), AG_F32), *g = ag_randn(AG_SHAPE(R, K), AG_F32);
            float *xv = ag_data(x);
            for (int64_t i = 0; i < R * K; i++)
                xv[i] = kind / 2 == 0 ? xv[i] * 2 + 0.5f : kind / 2 == 1 ? xv[i] + 1e4f
                      : kind / 2 == 2 ? (i % K == 0 ? 1e3f : xv[i]) : ldexpf(xv[i] < 0 ? -1.0f : 1.0f, (int)(i * 7919 % 41) - 20) * (1 + fabsf(xv[i]));
            ag_tensor *b = ag_requires_grad_(ag_zeros(AG_SHAPE(K), AG_F32), true);
            ag_tensor *xg = ag_requires_grad_(x, true);
            ag_tensor *w = kind % 2 ? ag_requires_grad_(ag_randn(AG_SHAPE(K), AG_F32), true) : NULL;
            ag_tensor *y = ag_layer_norm(xg, AG_SHAPE(K), w, b, 1e-5);
            double st[2 * 9]; /* the saved statistics (m, r) of each row, which the backward releases */
            ran &= y && y->saved && ag_numel(y->saved) == 2 * R;
            if (ran) memcpy(st, ag__ptr(y->saved), sizeof st);
            ran &= ran && ag_backward_ex(y, g, false) == AG_OK && ag_grad(b);
            if (!ran) break;
            const float *gv = ag_data(g);
            for (int64_t r = 0; r < R; r++) {
                const float *xr = xv + r * K;
                long double S = 0, A = 0, Q = 0;
                for (int64_t k = 0; k < K; k++) S += xr[k], A += fabsl((long double)xr[k]);
                const long double M = S / K, mh = st[2 * r], mt = (float)st[2 * r];
                const long double tol_m = (K / 8 + 12) * e53 * (1 + 4 * u) * A / K + 2 * e53 * fabsl(M);
                worst_m = fmax(worst_m, (double)(fabsl(mh - M) / tol_m));
                long double V = 0;
                for (int64_t k = 0; k < K; k++) V += ((long double)xr[k] - M) * ((long double)xr[k] - M), Q += ((long double)xr[k] - mt) * ((long double)xr[k] - mt);
                V /= K;
                const long double vh = 1 / ((long double)st[2 * r + 1] * st[2 * r + 1]) - 1e-5L, dd = fabsl(M - mt);
                const long double tol_v = (5 * u + (K / 64 + 16) * e53) * (1 + 8 * u) * Q / K + tol_m * (2 * dd + tol_m) +
                                          8 * e53 * (V + 1e-5L + Q / K);
                worst_v = fmax(worst_v, (double)(fabsl(vh - V) / tol_v));
            }
            const float *dbv = ag_data(ag_grad(b));
            for (int64_t k = 0; k < K; k++) {
                long double D = 0, AD = 0;
                for (int64_t r = 0; r < R; r++) D += gv[r * K + k], AD += fabsl((long double)gv[r * K + k]);
                const long double tol = (2 * u + (R / 4 + 4) * e53) * (1 + 4 * u) * AD + u * fabsl(D) * (1 + u);
                worst_db = fmax(worst_db, (double)(fabsl(dbv[k] - D) / tol));
            }
        }
    ok(ran && worst_m <= 1 && worst_v <= 1 && worst_db <= 1,
       "float32 layer_norm of [9, K], K = 1024 to 1 (%s): the mean, the variance and db within their bounds of "
       "long double sums (worst error / bound: %.3g, %.3g, %.3g)",
       AG_VEC_512() ? "four rows on AVX-512 and one alone" : "no AVX-512 here: the row kernels", worst_m, worst_v, worst_db);
    ag_scope_end();
}

/* The fused cross-entropy's rows (the fast row kernels: max, vexpf, float64 sum, for rows of 256 and
 * more, of 16 to 255, and blocks of rows shorter than 16; chunks of rows taken by threads as they come
 * free, the row's loss computed in the same pass) against the reference kernels: per-row losses and
 * gradients of [37, 1001] (one thread), [300, 500], [1500, 100] and [20000, 7] (five chunks each,
 * threaded) float32 and float64 logits (randn·3, a row with a NaN, one with +inf, one all -inf), plain and with label
 * smoothing 0.2, class weights and an ignored row, on 1, 2 and 3 threads; and the same bits on every
 * thread count (each row's result depends on the row alone, the sum over rows is in row order). */
static void test_cross_entropy_rows(void) {
    ag_scope_begin();
    const int saved = ag_get_num_threads();
    const int64_t shapes[4][2] = {{37, 1001}, {300, 500}, {1500, 100}, {20000, 7}};
    double worst = 0;
    bool same = true;
    for (int dt = 0; dt < 2; dt++)
        for (int s = 0; s < 4; s++)
            for (int opts = 0; opts < 2; opts++) {
                const int64_t N = shapes[s][0], C = shapes[s][1];
                ag_manual_seed(23);
                ag_tensor *x = ag_contiguous(ag_mul_scalar(ag_randn(AG_SHAPE(N, C), AG_F64), 3));
                double *v = ag_data(x);
                v[5 * C + 3] = NAN, v[9 * C + 3] = INFINITY;
                for (int64_t k = 0; k < C; k++) v[11 * C + k] = -INFINITY;
                x = ag_to_dtype(x, dt ? AG_F64 : AG_F32);
                ag_tensor *t = ag_empty(AG_SHAPE(N), AG_I64);
                for (int64_t n = 0; n < N; n++) ((int64_t *)ag_data(t))[n] = (n * 7919) % C;
                ag_loss_opts o = {.reduction = AG_REDUCTION_NONE, .ignore_index = -100};
                if (opts) { /* smoothing, weights 0.5 + k/C, row 13 ignored (its target set to 3) */
                    ag_tensor *w = ag_add_scalar(ag_div_scalar(ag_arange(0, (double)C, 1, dt ? AG_F64 : AG_F32), (double)C), 0.5);
                    o = (ag_loss_opts){.reduction = AG_REDUCTION_NONE, .ignore_index = 3, .label_smoothing = 0.2, .weight = w};
                    ((int64_t *)ag_data(t))[13] = 3;
                }
                ag_tensor *first[2] = {NULL, NULL};
                for (int threads = 1; threads <= 3; threads++) {
                    ag_set_num_threads(threads);
                    ag_tensor *l[2], *g[2];
                    for (int ref = 0; ref < 2; ref++) {
                        ag__backend = ref ? AG_BACKEND_REFERENCE : AG_BACKEND_AUTO;
                        ag_tensor *xl = ag_requires_grad_(ag_detach(x), true);
                        l[ref] = ag_cross_entropy(xl, t, &o);
                        g[ref] = l[ref] && ag_backward_ex(l[ref], ag_ones_like(l[ref]), false) == AG_OK ? ag_grad(xl) : NULL;
                    }
                    ag__backend = AG_BACKEND_AUTO;
                    worst = fmax(worst, fmax(worst_diff(l[0], l[1]), worst_diff(g[0], g[1])));
                    if (threads == 1) first[0] = l[0], first[1] = g[0];
                    else same &= same_bits(first[0], l[0]) && same_bits(first[1], g[0]);
                }
            }
    ag_set_num_threads(saved);
    ok(worst <= 2e-6, "cross_entropy rows, float32 and float64, 1-3 threads, NaN and inf rows, with and without "
       "smoothing, weights and an ignored row: losses and gradients within %.2g of the reference kernels", worst);
    ok(same, "cross_entropy rows: the same bits of losses and gradients on 1, 2 and 3 threads");
    ag_scope_end();
}

/* Sums along the last dim of a contiguous [A, R] (core/sum.c's row_sums): on one thread, and on two
 * and eight, where rows go to the threads whole when A is a multiple of the thread count or at least
 * 16 times it, and each row is cut into one chunk per thread otherwise (100 rows on 8 threads: 800
 * partials); R not a multiple of the 16 accumulators.  Each against float64 loops (float64: 1e-10 of
 * max(1, |Σ x|); float32, whose pairs 16 apart are added in float32 first (core/sum_pairs.h), within
 * 2^-24·(Σ|x| + |Σ x|) of it, the pairs' roundings and the result's; a chunk or a row dropped or
 * counted twice is off by O(1)), with a NaN, a +inf and an
 * inf - inf row in the threaded shapes; also x.sum over the last two dims of [A, 3, R / 3] (the same
 * kernel), a sliced (every other column) and an expanded (stride 0) x, which take the iterator. */
static void test_row_sums(void) {
    ag_scope_begin();
    ag_manual_seed(11);
    static const int64_t shapes[][2] = {{1, 5}, {3, 17}, {40, 1000}, {1, 262147}, {3, 100003}, {31, 8193},
                                        {33, 4099}, {2, 131101}, {5, 65536}, {100, 2053}};
    const int saved = ag_get_num_threads();
    for (int dt = 0; dt < 2; dt++) {
        const ag_dtype dtype = dt ? AG_F64 : AG_F32;
        const double tol = dt ? 1e-10 : 1; /* float32: the error over its bound */
        double worst = 0;
        bool specials = true;
        for (size_t k = 0; k < sizeof shapes / sizeof *shapes; k++) {
            const int64_t A = shapes[k][0], R = shapes[k][1];
            ag_scope_begin();
            ag_tensor *x = ag_randn(AG_SHAPE(A, R), dtype);
            const bool special = A >= 3 && A * R >= ((int64_t)1 << 17);
            if (special) { /* row 0 holds a NaN, row 1 a +inf, row 2 a +inf and a -inf */
                ag_tensor *row0 = ag_select(x, 0, 0), *row1 = ag_select(x, 0, 1), *row2 = ag_select(x, 0, 2);
                ag_fill_(ag_slice(row0, 0, R / 2, R / 2 + 1, 1), NAN);
                ag_fill_(ag_slice(row1, 0, R - 1, R, 1), INFINITY);
                ag_fill_(ag_slice(row2, 0, 0, 1, 1), INFINITY);
                ag_fill_(ag_slice(row2, 0, R - 2, R - 1, 1), -INFINITY);
            }
            double *want = malloc(sizeof(double) * (size_t)(2 * A)), *abs_sum = want + A;
            reference_reduce(SUM, x, 2, want, A);
            reference_reduce(SUM, ag_abs(x), 2, abs_sum, A);
            for (int threads = 1; threads <= 8; threads *= threads == 1 ? 2 : 4) { /* 1, 2, 8 */
                ag_set_num_threads(threads);
                ag_tensor *y = ag_sum_dim(x, 1, false);
                ag_tensor *y2 = ag_sum_dims(ag_view(x, AG_SHAPE(A, 1, R)), 2, (int[]){1, 2}, false);
                double *got = malloc(sizeof(double) * (size_t)(2 * A));
                if (!y || !y2 || ag_numel(y) != A || ag_copy_to(y, got, A, AG_F64) || ag_copy_to(y2, got + A, A, AG_F64)) {
                    worst = INFINITY;
                } else {
                    for (int64_t a = special ? 3 : 0; a < A; a++)
                        for (int c = 0; c < 2; c++)
                            worst = fmax(worst, fabs(got[c * A + a] - want[a]) /
                                                    (dt ? fmax(1, fabs(want[a])) : 0x1p-24 * (abs_sum[a] + fabs(want[a]))));
                    if (special)
                        for (int c = 0; c < 2; c++)
                            specials &= isnan(got[c * A]) && got[c * A + 1] == INFINITY && isnan(got[c * A + 2]);
                }
                free(got);
            }
            free(want);
            ag_scope_end();
        }
        ok(worst <= tol && specials, "%s sums along the last dim of [A, R] (A < 16·threads and not a multiple of "
           "them: chunked rows, else whole rows), 1, 2 and 8 threads: %.2g of the error bound, NaN / inf / inf - inf rows%s",
           ag_dtype_name(dtype), worst, specials ? "" : " WRONG");
        /* strided and expanded x: the iterator's rows */
        ag_scope_begin();
        ag_tensor *x = ag_randn(AG_SHAPE(37, 2 * 4099), dtype), *sl = ag_slice(x, 1, 0, 2 * 4099, 2);
        ag_tensor *col = ag_randn(AG_SHAPE(37, 1), dtype), *ex = ag_expand(col, AG_SHAPE(37, 4099));
        double want[2 * 37], cv[37];
        reference_reduce(SUM, sl, 2, want, 37);
        ag_copy_to(col, cv, 37, AG_F64);
        for (int a = 0; a < 37; a++) want[37 + a] = 4099 * cv[a];
        double w2 = 0;
        for (int threads = 1; threads <= 2; threads++) {
            ag_set_num_threads(threads);
            w2 = fmax(w2, fmax(worst_vs(ag_sum_dim(sl, 1, false), want, 37), worst_vs(ag_sum_dim(ex, 1, false), want + 37, 37)));
        }
        ok(w2 <= (dt ? 1e-10 : 2e-7), "%s sums along the last dim of a sliced and an expanded [37, 4099], 1 and 2 threads: within %.2g of "
           "float64", ag_dtype_name(dtype), w2);
        ag_scope_end();
    }
    ag_set_num_threads(saved);
    ag_scope_end();
}

/* A float32 run summed as one (x, |x|, x²: contig_sum, whichever of its C, AVX2 and AVX-512 kernels
 * this CPU takes) against AG_SUM16_PAIRS (x) or AG_SUM16 (|x|, x²) over its chunks of 2^15
 * (core/sum.c's SUM_CHUNK) added in order: the same bits, on lengths around the vectors' 16 and the
 * pairs' 32, a chunk and two chunks and a tail. */
static void test_contig_sum_bits(void) {
    ag_scope_begin();
    ag_manual_seed(13);
    const int saved = ag_get_num_threads();
    ag_set_num_threads(1);
    static const int64_t lengths[] = {1, 15, 16, 17, 31, 32, 33, 47, 48, 49, 1000, 32768, 32785, 65573};
    static const ag_sum_term terms[] = {AG_SUM_X, AG_SUM_ABS, AG_SUM_SQ};
    bool same = true;
    for (int l = 0; l < 14; l++) {
        const int64_t n = lengths[l];
        ag_tensor *x = ag_randn(AG_SHAPE(n), AG_F32);
        float *xp = x ? ag_data(x) : NULL;
        /* scaled by 2^-40 .. 2^40, so that no order of the additions is exact (randn's sum is) */
        for (int64_t i = 0; xp && i < n; i++) xp[i] = ldexpf(xp[i], (int)(i * 7919 % 81) - 40);
        for (int t = 0; xp && t < 3; t++) {
            ag_tensor *acc = ag_zeros(AG_SHAPE(1), AG_F64);
            if (!acc || !ag__sum_term_into(acc, x, terms[t])) {
                same = false;
                continue;
            }
            double want = 0;
            for (int64_t c = 0; c < n; c += 32768) {
                const int64_t m = n - c < 32768 ? n - c : 32768;
                double part;
                if (terms[t] == AG_SUM_X) AG_SUM16_PAIRS(part, m, xp + c);
                else if (terms[t] == AG_SUM_ABS) AG_SUM16(part, m, i, fabs((double)xp[c + i]));
                else AG_SUM16(part, m, i, (double)xp[c + i] * (double)xp[c + i]);
                want += part;
            }
            same &= memcmp(&want, ag_data(acc), sizeof want) == 0;
        }
    }
    ag_set_num_threads(saved);
    ok(same, "float32 runs of 1 to 65573 summed as one (x, |x|, x²): AG_SUM16_PAIRS's and AG_SUM16's bits chunk by chunk");
    ag_scope_end();
}

/* The order core/sum.c's narrow column sums promise (fewer than 256 columns, not folded): a column of a
 * chunk of rows summed from 0, four rows at a time as ((t0 + t1) + (t2 + t3)) (in float32, then widened,
 * for float32 columns of 64 rows or more; in float64 otherwise) and the rows past the last four one by
 * one in float64, the chunks' sums added from 0 in order, that total added to acc once (t the term of
 * x: x, |x| or x²).  Chunks: at most 64 of at least 256 rows, a multiple of 8. */
static double narrow_ref_term(double v, ag_sum_term term) { return term == AG_SUM_SQ ? v * v : term == AG_SUM_ABS ? fabs(v) : v; }
static float narrow_ref_termf(float v, ag_sum_term term) { return term == AG_SUM_SQ ? v * v : term == AG_SUM_ABS ? fabsf(v) : v; }
static double narrow_ref_column(const void *x, ag_dtype dt, int64_t C, int64_t r0, int64_t r1, int64_t c, ag_sum_term term, bool tree) {
    const float *f = x;
    const double *d = x;
    double s = 0;
    int64_t r = r0;
    for (; r + 4 <= r1; r += 4) {
        if (dt == AG_F32 && tree) {
            float t[4];
            for (int k = 0; k < 4; k++) t[k] = narrow_ref_termf(f[(r + k) * C + c], term);
            s += (double)((t[0] + t[1]) + (t[2] + t[3]));
        } else {
            double t[4];
            for (int k = 0; k < 4; k++) t[k] = narrow_ref_term(dt == AG_F32 ? (double)f[(r + k) * C + c] : d[(r + k) * C + c], term);
            s += (t[0] + t[1]) + (t[2] + t[3]);
        }
    }
    for (; r < r1; r++) s += narrow_ref_term(dt == AG_F32 ? (double)f[r * C + c] : d[r * C + c], term);
    return s;
}

/* Narrow column sums (core/sum.c's NARROW_KERNEL: strips of 32 columns, the last narrower, each chunk's
 * sums made from 0 and added to acc in place) into an acc that is not zero, over dim 0 of [R, C] and
 * dim 1 of [3, R, C], float32 and float64, x, |x| and x², on 1, 2 and 3 threads: the bits of the
 * reference order above, added to acc once (not acc + t0 + t1 ... term by term: acc here is large,
 * so that order rounds otherwise); columns 64 to 255 (strip remainders 0, 1, 31 and others) and 2 to 63
 * over fewer than 16 rows (not folded), rows 1 to 1049 (leftover rows,
 * float32 trees from 64 rows, one to five chunks); values scaled by 2^-20 .. 2^20. */
static void test_narrow_column_sums_bits(void) {
    ag_scope_begin();
    ag_manual_seed(22);
    const int saved = ag_get_num_threads();
    static const int64_t wide_cols[] = {64, 65, 95, 96, 97, 127, 161, 200, 255}, wide_rows[] = {1, 3, 4, 5, 63, 64, 67, 257, 600, 1049};
    static const int64_t few_cols[] = {2, 7, 31, 33, 63}, few_rows[] = {1, 4, 5, 15};
    bool same = true;
    int64_t cases = 0, columns = 0;
    for (int dt = 0; dt < 2; dt++)
        for (int geo = 0; geo < 2; geo++) {
            const int ncols = geo ? 5 : 9, nrows = geo ? 4 : 10;
            for (int ci = 0; ci < ncols; ci++)
                for (int ri = 0; ri < nrows; ri++)
                    for (int64_t A = 1; A <= 3; A += 2) {
                        const int64_t C = geo ? few_cols[ci] : wide_cols[ci], R = geo ? few_rows[ri] : wide_rows[ri];
                        const ag_dtype dtype = dt ? AG_F64 : AG_F32;
                        ag_scope_begin();
                        ag_tensor *x = ag_randn(A == 1 ? AG_SHAPE(R, C) : AG_SHAPE(A, R, C), dtype);
                        void *xp = x ? ag_data(x) : NULL;
                        for (int64_t i = 0; xp && i < A * R * C; i++) {
                            const int e = (int)(i * 7919 % 41) - 20;
                            if (dt) ((double *)xp)[i] = ldexp(((double *)xp)[i], e);
                            else ((float *)xp)[i] = ldexpf(((float *)xp)[i], e);
                        }
                        int64_t K = (R + 63) / 64;
                        K = K < 256 ? 256 : (K + 7) / 8 * 8;
                        for (int t = 0; xp && t < 3; t++)
                            for (int threads = 1; threads <= 3; threads++) {
                                ag_set_num_threads(threads);
                                ag_tensor *acc = ag_zeros(A == 1 ? AG_SHAPE(C) : AG_SHAPE(A, 1, C), AG_F64);
                                double *ap = acc ? ag_data(acc) : NULL;
                                for (int64_t k = 0; ap && k < A * C; k++) ap[k] = 1e6 * (double)(k % 7 + 1) / 3;
                                if (!ap || !ag__sum_term_into(acc, x, (ag_sum_term)t)) {
                                    same = false;
                                    continue;
                                }
                                cases++;
                                for (int64_t a = 0; a < A; a++)
                                    for (int64_t c = 0; c < C; c++) {
                                        const char *xa = (const char *)xp + a * R * C * (dt ? 8 : 4);
                                        double total = 0;
                                        for (int64_t r0 = 0; r0 < R; r0 += K)
                                            total += narrow_ref_column(xa, dtype, C, r0, r0 + K < R ? r0 + K : R, c, (ag_sum_term)t, R >= 64);
                                        const double want = 1e6 * (double)((a * C + c) % 7 + 1) / 3 + total;
                                        same &= memcmp(&want, ap + a * C + c, sizeof want) == 0;
                                        columns++;
                                    }
                            }
                        ag_scope_end();
                    }
        }
    ag_set_num_threads(saved);
    ok(same && cases == 2 * (9 * 10 + 5 * 4) * 2 * 9, "narrow column sums (x, |x|, x²) into a non-zero acc, %lld calls, %lld columns of "
       "2-255 by 1-1049 rows, float32 and float64, 1-3 threads: the reference order's bits, added to acc once", (long long)cases,
       (long long)columns);
    ag_scope_end();
}

/* Float32 row sums of many rows (core/sum.c's eight-row kernel where the CPU has AVX-512, in groups
 * of eight rows, the last A mod 8 rows one by one): each row's float64 sum, of x, |x| and x², has the
 * bits of the same row summed alone (contig_sum), for rows of 1 to 70 (all tails mod 16) and 3001,
 * with -0, ±inf, NaN and subnormals among them; and [46, 3001] (large enough to split) the same bits,
 * NaN rows included, on 1, 2 and 3 threads. */
static void test_row_sums_bits(void) {
    ag_scope_begin();
    ag_manual_seed(12);
    static const uint32_t specials[] = {0x80000000u, 0x7f800000u, 0xff800000u, 0x7fc00001u, 0xffc00123u, 0x00000001u, 0x807fffffu};
    const int saved = ag_get_num_threads();
    bool same = true, threads_same = true;
    uint64_t draw = 99;
    for (int64_t R = 1; R <= 3001; R = R == 70 ? 3001 : R + 1) { /* 1..70, 3001 */
        const int64_t A = 35 + R % 13; /* 35..47 rows: a group of eight split by 2 and 3 threads, and a rest */
        ag_scope_begin();
        ag_tensor *x = ag_randn(AG_SHAPE(A, R), AG_F32);
        float *xp = ag_data(x);
        for (int64_t i = 0; i < A * R; i++) {
            draw = draw * 6364136223846793005u + 1442695040888963407u;
            if (draw >> 58 == 0 && R % 4 == 1) memcpy(xp + i, &specials[(draw >> 32) % 7], 4);
        }
        for (int term = 0; term < 3; term++) {
            double first[64];
            for (int threads = 1; threads <= 3; threads++) {
                ag_set_num_threads(threads);
                ag_tensor *acc = ag_zeros(AG_SHAPE(A, 1), AG_F64);
                if (!acc || !ag__sum_term_into(acc, x, (ag_sum_term)term)) {
                    same = false;
                    continue;
                }
                const double *got = ag_data(acc);
                if (threads == 1) memcpy(first, got, sizeof(double) * (size_t)A);
                else threads_same &= memcmp(first, got, sizeof(double) * (size_t)A) == 0;
            }
            ag_set_num_threads(1);
            for (int64_t a = 0; a < A; a++) {
                ag_tensor *row = ag_contiguous(ag_slice(x, 0, a, a + 1, 1)), *one = ag_zeros(AG_SHAPE(1, 1), AG_F64);
                if (!row || !one || !ag__sum_term_into(one, row, (ag_sum_term)term)) {
                    same = false;
                    continue;
                }
                const double want = 0 + *(const double *)ag_data(one);
                same &= memcmp(&want, first + a, sizeof want) == 0 || (isnan(want) && isnan(first[a]));
            }
        }
        ag_scope_end();
    }
    ag_set_num_threads(saved);
    ok(same, "float32 sums of x, |x|, x² along the last dim of [35..47, 1..70 and 3001]: each row the bits of that row "
       "alone (NaN: a NaN), -0, inf, NaN and subnormals included");
    ok(threads_same, "the same row sums ([46, 3001] split over threads), NaN rows included, on 1, 2 and 3 threads: the same bits");
    ag_scope_end();
}

/* layer_norm's row kernels add the terms of a row's sums four at a time in float32 (AG_SUM16_QUADS: blocks
 * of 64, 32 and 16, a tail) and take dw, db four rows at a time (the rest one by one): rows R not a multiple of 4
 * (1, 2, 5, 7, 9), K odd, even and 1, with and without weight and bias, 1 and 2 threads, float32 and
 * float64, forward and gradients against float64 loops. */
static void test_layer_norm_rows(void) {
    ag_scope_begin();
    ag_manual_seed(13);
    static const int64_t shapes[][2] = {{1, 5}, {5, 1}, {2, 4}, {7, 3}, {9, 1025}, {5, 40000}, {4, 2}};
    const int saved = ag_get_num_threads();
    for (int dt = 0; dt < 2; dt++) {
        const ag_dtype dtype = dt ? AG_F64 : AG_F32;
        double worst = 0;
        for (size_t k = 0; k < sizeof shapes / sizeof *shapes; k++)
            for (int affine = 0; affine < 2; affine++)
                for (int threads = 1; threads <= 2; threads++) {
                    const int64_t R = shapes[k][0], K = shapes[k][1], n = R * K;
                    ag_scope_begin();
                    ag_set_num_threads(threads);
                    ag_tensor *x = ag_randn(AG_SHAPE(R, K), dtype);
                    ag_tensor *w = affine ? ag_randn(AG_SHAPE(K), dtype) : ag_ones(AG_SHAPE(K), dtype);
                    ag_tensor *b = affine ? ag_randn(AG_SHAPE(K), dtype) : ag_zeros(AG_SHAPE(K), dtype);
                    outputs o = run(LAYER_NORM, x, 1, (int[]){1}, affine ? w : NULL, affine ? b : NULL);
                    double *want = malloc(sizeof(double) * (size_t)(2 * n + 2 * K));
                    ag_manual_seed(5); /* run()'s seed */
                    reference_layer_norm(x, w, b, ag_randn(AG_SHAPE(R, K), dtype), K, want);
                    worst = fmax(worst, fmax(worst_vs(o.t[0], want, n), worst_vs(o.t[1], want + n, n)));
                    if (affine) worst = fmax(worst, fmax(worst_vs(o.t[2], want + 2 * n, K), worst_vs(o.t[3], want + 2 * n + K, K)));
                    free(want);
                    ag_scope_end();
                }
        ok(worst <= (dt ? 1e-12 : 2e-5), "%s layer_norm rows R = 1, 2, 4, 5, 7, 9 of K = 1 to 40000 (odd and even), with "
           "and without weight and bias, 1 and 2 threads: forward and gradients within %.2g of float64",
           ag_dtype_name(dtype), worst);
    }
    ag_set_num_threads(saved);
    ag_scope_end();
}

/* group_norm of x [N, C, S] in G groups with weight w and bias b ([C]), and its gradients for the seed g, in
 * float64: layer_norm's maths over each sample's group of C/G·S values, w and b per channel.  out: y, dx (n
 * each), dw, db (C each). */
static void reference_group_norm(ag_tensor *x, ag_tensor *w, ag_tensor *b, ag_tensor *g, int64_t G, double *out) {
    const ag_shape s = ag_shape_of(x);
    const int64_t n = ag_numel(x), N = s.dim[0], C = s.dim[1], S = n / (N * C), K = C / G * S;
    double *xv = malloc(sizeof(double) * (size_t)(2 * n + 2 * C)), *gv = xv + n, *wv = gv + n, *bv = wv + C;
    ag_copy_to(x, xv, n, AG_F64), ag_copy_to(g, gv, n, AG_F64), ag_copy_to(w, wv, C, AG_F64), ag_copy_to(b, bv, C, AG_F64);
    double *y = out, *dx = out + n, *dw = out + 2 * n, *db = dw + C;
    for (int64_t c = 0; c < C; c++) dw[c] = db[c] = 0;
    for (int64_t r = 0; r < N * G; r++) {
        const double *xr = xv + r * K, *gr = gv + r * K;
        const int64_t c0 = r % G * (C / G);
        double m = 0, q = 0, sg = 0, sgx = 0;
        for (int64_t k = 0; k < K; k++) m += xr[k];
        m /= (double)K;
        for (int64_t k = 0; k < K; k++) q += (xr[k] - m) * (xr[k] - m);
        const double rs = 1 / sqrt(q / (double)K + 1e-5);
        for (int64_t k = 0; k < K; k++) {
            const int64_t c = c0 + k / S;
            const double xh = (xr[k] - m) * rs;
            y[r * K + k] = xh * wv[c] + bv[c];
            sg += gr[k] * wv[c], sgx += gr[k] * wv[c] * xh;
            dw[c] += gr[k] * xh, db[c] += gr[k];
        }
        for (int64_t k = 0; k < K; k++)
            dx[r * K + k] = rs * (gr[k] * wv[c0 + k / S] - sg / (double)K - (xr[k] - m) * rs * sgx / (double)K);
    }
    free(xv);
}

/* group_norm's kernels (each channel's plane of a group with the channel's weight as a scalar, the planes'
 * Σ dy and Σ dy·x̂ added over the batch after the rows): [N, C, S] with groups of one channel (instance
 * norm), of several and of all, S = 1 to 1024, with and without weight and bias, float32 and float64,
 * forward and gradients against float64 loops on 1 thread, and 2 threads the same bits as 1 (the rows
 * split whole, the batch sums in order). */
static void test_group_norm_rows(void) {
    ag_scope_begin();
    ag_manual_seed(17);
    static const int64_t shapes[][4] = {{2, 6, 5, 3}, {3, 4, 1, 2}, {1, 8, 1, 8}, {2, 3, 7, 1}, {5, 12, 49, 12},
                                        {4, 64, 1024, 8}, {3, 32, 2048, 32}};
    const int saved = ag_get_num_threads();
    for (int dt = 0; dt < 2; dt++) {
        const ag_dtype dtype = dt ? AG_F64 : AG_F32;
        double worst = 0;
        bool same = true;
        for (size_t k = 0; k < sizeof shapes / sizeof *shapes; k++)
            for (int affine = 0; affine < 2; affine++) {
                const int64_t N = shapes[k][0], C = shapes[k][1], S = shapes[k][2], G = shapes[k][3], n = N * C * S;
                ag_scope_begin();
                ag_tensor *x = ag_randn(AG_SHAPE(N, C, S), dtype);
                ag_tensor *w = affine ? ag_randn(AG_SHAPE(C), dtype) : ag_ones(AG_SHAPE(C), dtype);
                ag_tensor *b = affine ? ag_randn(AG_SHAPE(C), dtype) : ag_zeros(AG_SHAPE(C), dtype);
                ag_tensor *g = ag_randn(AG_SHAPE(N, C, S), dtype);
                outputs o[2];
                for (int t = 0; t < 2; t++) {
                    ag_set_num_threads(t + 1);
                    ag_tensor *xl = ag_requires_grad_(ag_detach(x), true);
                    ag_tensor *wl = affine ? ag_requires_grad_(ag_detach(w), true) : NULL;
                    ag_tensor *bl = affine ? ag_requires_grad_(ag_detach(b), true) : NULL;
                    ag_tensor *y = ag_group_norm(xl, G, wl, bl, 1e-5);
                    const bool ran = y && ag_backward_ex(y, g, false) == AG_OK;
                    o[t] = (outputs){{ran ? y : NULL, ran ? ag_grad(xl) : NULL, wl && ran ? ag_grad(wl) : NULL,
                                      bl && ran ? ag_grad(bl) : NULL}};
                }
                double *want = malloc(sizeof(double) * (size_t)(2 * n + 2 * C));
                reference_group_norm(x, w, b, g, G, want);
                worst = fmax(worst, fmax(worst_vs(o[0].t[0], want, n), worst_vs(o[0].t[1], want + n, n)));
                if (affine) worst = fmax(worst, fmax(worst_vs(o[0].t[2], want + 2 * n, C), worst_vs(o[0].t[3], want + 2 * n + C, C)));
                same &= bits_of(o[0], o[1]);
                free(want);
                ag_scope_end();
            }
        ok(worst <= (dt ? 1e-12 : 2e-5) && same, "%s group_norm of [N, C, S] in 1, C/G and C channels a group, S = 1 to 2048, with "
           "and without weight and bias: forward and gradients within %.2g of float64, 2 threads the same bits as 1%s",
           ag_dtype_name(dtype), worst, same ? "" : " (NOT the same bits)");
    }
    ag_set_num_threads(saved);
    ag_scope_end();
}

/* Empty inputs along each dim, and 0-d inputs. */
static void test_empty_and_scalar(void) {
    ag_scope_begin();
    const ag_shape shapes[3] = {AG_SHAPE(0, 5), AG_SHAPE(5, 0), AG_SHAPE(2, 0, 3)};
    for (int s = 0; s < 3; s++)
        for (int d = 0; d < shapes[s].ndim; d++) {
            ag_tensor *x = ag_requires_grad_(ag_zeros(shapes[s], AG_F32), true);
            ag_tensor *y = ag_softmax(x, d), *l = ag_log_softmax(x, d), *m = ag_sum_dim(x, d, false);
            bool good = y && l && m && ag_numel(y) == 0 && ag_backward_ex(y, ag_zeros_like(y), false) == AG_OK &&
                        ag_numel(ag_grad(x)) == 0;
            /* the sum over an empty dim is zeros of the other dims' shape */
            int64_t keep = 1;
            for (int k = 0; k < shapes[s].ndim; k++) keep *= k == d ? 1 : shapes[s].dim[k];
            good = good && ag_numel(m) == keep && (keep == 0 || ag_item(ag_amax(ag_abs(m), 0, NULL, false)) == 0);
            ok(good, "softmax, log_softmax, their backward and sum along dim %d of an empty %s", d,
               s == 0 ? "[0, 5]" : s == 1 ? "[5, 0]" : "[2, 0, 3]");
        }
    ag_tensor *e = ag_requires_grad_(ag_zeros(AG_SHAPE(0, 4), AG_F32), true);
    ag_tensor *ln = ag_layer_norm(e, AG_SHAPE(4), NULL, NULL, 1e-5);
    ok(ln && ag_numel(ln) == 0 && ag_backward_ex(ln, ag_zeros_like(ln), false) == AG_OK, "layer_norm of an empty [0, 4]");
    ag_tensor *s0 = ag_requires_grad_(ag_scalar(3.0, AG_F32), true);
    ag_tensor *p = ag_softmax(s0, 0), *lp = ag_log_softmax(s0, -1), *sum = ag_sum_dim(s0, 0, false);
    ok(p && lp && sum && ag_item(p) == 1 && ag_item(lp) == 0 && ag_item(sum) == 3 && ag_ndim(p) == 0,
       "0-d: softmax 1, log_softmax 0, sum the value");
    ok(ag_backward(ag_add(p, lp)) == AG_OK && ag_item(ag_grad(s0)) == 0, "0-d: the softmax gradients are 0");
    ag_scope_end();
}

/* float32 layer_norm of rows whose mean is far from 0 (1e4 + randn: the mean rounded to float32 is off by
 * up to 5e-4, the spread about 1) against float64 loops: the kernels take the rounding of the mean back
 * out of x̂ and the variance, forward and gradients; group_norm runs the same kernels. */
static void test_layer_norm_offset(void) {
    ag_scope_begin();
    ag_manual_seed(7);
    ag_tensor *x = ag_add_scalar(ag_randn(AG_SHAPE(6, 77), AG_F32), 1e4);
    ag_tensor *w = ag_randn(AG_SHAPE(77), AG_F32), *b = ag_randn(AG_SHAPE(77), AG_F32);
    outputs o = run(LAYER_NORM, x, 1, (int[]){1}, w, b);
    const int64_t n = 6 * 77, K = 77;
    double *want = malloc(sizeof(double) * (size_t)(2 * n + 2 * K));
    ag_manual_seed(5); /* run()'s seed */
    reference_layer_norm(x, w, b, ag_randn(AG_SHAPE(6, 77), AG_F32), K, want);
    double d = fmax(fmax(worst_vs(o.t[0], want, n), worst_vs(o.t[1], want + n, n)),
                    fmax(worst_vs(o.t[2], want + 2 * n, K), worst_vs(o.t[3], want + 2 * n + K, K)));
    ok(d <= 2e-5, "float32 layer_norm of 1e4 + randn [6, 77]: forward and gradients within %.2g of float64", d);
    ag_tensor *g = ag_group_norm(ag_view(x, AG_SHAPE(6, 7, 11)), 1, NULL, NULL, 1e-5);
    ag_tensor *l = ag_layer_norm(x, AG_SHAPE(77), NULL, NULL, 1e-5);
    d = g && l ? worst_diff(ag_view(g, AG_SHAPE(6, 77)), l) : INFINITY;
    ok(d <= 2e-6, "group_norm with one group: layer_norm's rows (within %.2g)", d);
    free(want);
    ag_scope_end();
}

/* logsumexp's lane kernels (ops/reduce.c: rows, and LSE_COLS-wide column blocks split over threads)
 * and their adjoint against float64 loops here, float32 and float64, on [outer, n, inner] inputs
 * reduced along dim 1 (rows; columns in blocks that end part-full; a middle dim; one long lane
 * reduced over all dims; rows longer than LSE_BLOCK, whose blocks split over threads), with lanes of all -inf (-inf, gradient NaN), a +inf (+inf), a NaN (NaN) and
 * a lone -inf; one, two and three threads give the same bits, values and gradients. */
static void test_logsumexp_lanes(void) {
    typedef struct geometry {
        int64_t outer, n, inner;
        bool all; /* reduce over all three dims (one lane) */
    } geometry;
    static const geometry geo[] = {{1, 150, 1037, false}, {150, 1037, 1, false}, {5, 300, 97, false},
                                   {1, 140001, 1, true},  {3, 1, 5, false},      {7, 513, 2, false},
                                   {5, 70001, 1, false},  {1, 65537, 1, true}}; /* the last two: blocks of 2^15 */
    const int saved = ag_get_num_threads();
    uint64_t seed = 99;
    for (size_t c = 0; c < sizeof geo / sizeof geo[0]; c++)
        for (int dt = 0; dt < 2; dt++) {
            ag_scope_begin();
            const geometry G = geo[c];
            const ag_dtype dtype = dt ? AG_F64 : AG_F32;
            const int64_t n = G.outer * G.n * G.inner, lanes = G.outer * G.inner;
            double *xv = malloc(sizeof(double) * (size_t)(2 * n + 2 * lanes)), *gw = xv + n, *dy = gw + n, *yw = dy + lanes;
            for (int64_t k = 0; k < n; k++) { /* values in [-8, 8), rounded to float32 */
                seed = seed * 6364136223846793005ull + 1442695040888963407ull;
                xv[k] = (float)(16 * (double)(seed >> 11) / 9007199254740992.0 - 8);
            }
            for (int64_t l = 0; l < lanes; l++) dy[l] = (float)(0.5 + (double)(l % 5) / 4);
#define AT(l, k) xv[((l) / G.inner * G.n + (k)) * G.inner + (l) % G.inner]
            if (lanes > 4) { /* lane 1 all -inf, lane 2 a +inf, lane 3 a NaN, lane 4 one -inf */
                for (int64_t k = 0; k < G.n; k++) AT(1, k) = -INFINITY;
                AT(2, G.n / 2) = INFINITY, AT(3, G.n - 1) = NAN, AT(4, 0) = -INFINITY;
            } else if (G.all) {
                xv[n - 3] = -INFINITY;
            }
            for (int64_t l = 0; l < lanes; l++) { /* y = m + log Σ exp(x - m) and dx = dy·exp(x - y) in float64 */
                double m = -INFINITY, s = 0;
                bool nan = false;
                for (int64_t k = 0; k < G.n; k++) nan = nan || isnan(AT(l, k)), m = fmax(m, AT(l, k));
                const double mm = isinf(m) ? 0 : m;
                for (int64_t k = 0; k < G.n; k++) s += exp(AT(l, k) - mm);
                yw[l] = nan ? NAN : mm + log(s);
                for (int64_t k = 0; k < G.n; k++) {
                    const int64_t at = &AT(l, k) - xv;
                    gw[at] = dy[l] * exp(xv[at] - (double)(dt ? yw[l] : (float)yw[l]));
                }
            }
#undef AT
            ag_tensor *x = ag_from_data(xv, AG_SHAPE(G.outer, G.n, G.inner), AG_F64);
            x = ag_requires_grad_(ag_to_dtype(x, dtype), true);
            ag_tensor *g = ag_to_dtype(ag_from_data(dy, G.all ? AG_SCALAR_SHAPE : AG_SHAPE(G.outer, G.inner), AG_F64), dtype);
            static const int all_dims[3] = {0, 1, 2};
            const int one = 1;
            ag_tensor *yt[3] = {NULL, NULL, NULL}, *gt[3] = {NULL, NULL, NULL};
            for (int nt = 1; nt <= 3; nt++) {
                ag_set_num_threads(nt);
                ag_zero_grad(x);
                yt[nt - 1] = G.all ? ag_logsumexp_dims(x, 3, all_dims, false) : ag_logsumexp_dims(x, 1, &one, false);
                if (!yt[nt - 1] || ag_backward_ex(yt[nt - 1], g, false) != AG_OK) break;
                gt[nt - 1] = ag_detach(ag_clone(ag_grad(x)));
            }
            ag_set_num_threads(saved);
            const double tol = dt ? 1e-12 : 2e-6, gtol = dt ? 1e-12 : 1e-5;
            ag_tensor *ywant = ag_from_data(yw, G.all ? AG_SCALAR_SHAPE : AG_SHAPE(G.outer, G.inner), AG_F64);
            ag_tensor *gwant = ag_from_data(gw, AG_SHAPE(G.outer, G.n, G.inner), AG_F64);
            const double wy = worst_diff(yt[0], ywant), wg = gt[0] ? worst_diff(gt[0], gwant) : INFINITY;
            const bool same = same_bits(yt[0], yt[1]) && same_bits(yt[0], yt[2]) && same_bits(gt[0], gt[1]) &&
                              same_bits(gt[0], gt[2]);
            bool inf_ok = true; /* worst_diff takes inf - inf as NaN: check the infinite lanes exactly */
            for (int64_t l = 0; yt[0] && l < lanes; l++) {
                const double got = dt ? ((const double *)ag_data(yt[0]))[l] : ((const float *)ag_data(yt[0]))[l];
                if (isinf(yw[l])) inf_ok = inf_ok && got == yw[l];
            }
            ok(wy <= tol && wg <= gtol && inf_ok && same,
               "logsumexp of %s [%lld, %lld, %lld] along %s: y within %.2g, dx within %.2g of float64 loops "
               "(NaN, ±inf lanes exact), the same bits on 1, 2 and 3 threads%s",
               dt ? "float64" : "float32", (long long)G.outer, (long long)G.n, (long long)G.inner,
               G.all ? "all dims" : "dim 1", wy, wg, same ? "" : " (NOT the same bits)");
            free(xv);
            ag_scope_end();
        }
}

/* The next input value of the logsumexp bit tests from the generator state *seed: uniform in [-8, 8),
 * or in (-108, -92] where low (an exponential that is subnormal or zero after the max is taken off). */
static float lse_draw(uint64_t *seed, bool low) {
    *seed = *seed * 6364136223846793005ull + 1442695040888963407ull;
    const double u = (double)(*seed >> 11) / 9007199254740992.0;
    return (float)(low ? -92 - 16 * u : 16 * u - 8);
}

/* logsumexp of float32 along a middle dim (ops/reduce.c: lse_cols and lse_bwd_cols, LSE_COLS columns a
 * block, compiled for AVX-512 too) gives the bits of its definition in scalar C here: per lane m = max_k x,
 * s = Σ_k (double)vexpf(x - m) in k order from 0, y = (float)(m + log s), and dx = dy·vexpf(x - y) in
 * float32; lanes 2 to 1025 columns wide (vector tails, two blocks and one column more), 1 to 64 long,
 * values in [-8, 8) and some near -100 (subnormal and zero exponentials), on 1 and 2 threads. */
static void test_logsumexp_cols_bits(void) {
    static const int64_t geo[][3] = {{3, 64, 2}, {2, 5, 15}, {4, 7, 16}, {3, 64, 17}, {64, 64, 64}, {2, 33, 100},
                                     {2, 9, 513}, {1, 1, 31}, {2, 3, 1025}};
    const int saved = ag_get_num_threads();
    uint64_t seed = 7;
    int bad_y = 0, bad_g = 0, lanes_all = 0;
    for (size_t c = 0; c < sizeof geo / sizeof *geo; c++)
        for (int nt = 1; nt <= 2; nt++) {
            ag_scope_begin();
            ag_set_num_threads(nt);
            const int64_t O = geo[c][0], N = geo[c][1], I = geo[c][2], n = O * N * I;
            float *xv = malloc(sizeof(float) * (size_t)(n + O * I));
            float *dy = xv + n;
            for (int64_t k = 0; k < n; k++) xv[k] = lse_draw(&seed, k % 11 == 3);
            for (int64_t l = 0; l < O * I; l++) dy[l] = (float)(0.5 + (double)(l % 7) / 3);
            ag_tensor *x = ag_requires_grad_(ag_from_data(xv, AG_SHAPE(O, N, I), AG_F32), true);
            const int one = 1;
            ag_tensor *y = ag_logsumexp_dims(x, 1, &one, false);
            const bool run = y && ag_backward_ex(y, ag_from_data(dy, AG_SHAPE(O, I), AG_F32), false) == AG_OK && ag_grad(x);
            const float *yv = run ? (const float *)ag_data(y) : NULL, *gv = run ? (const float *)ag_data(ag_grad(x)) : NULL;
            for (int64_t o = 0; o < O; o++)
                for (int64_t i = 0; i < I; i++) {
                    float m = xv[o * N * I + i];
                    for (int64_t k = 1; k < N; k++) m = xv[(o * N + k) * I + i] > m ? xv[(o * N + k) * I + i] : m;
                    double s = 0;
                    for (int64_t k = 0; k < N; k++) s += (double)vexpf(xv[(o * N + k) * I + i] - m);
                    const float want = (float)((double)m + log(s));
                    bad_y += !yv || memcmp(&yv[o * I + i], &want, sizeof want) != 0;
                    for (int64_t k = 0; k < N; k++) {
                        const int64_t at = (o * N + k) * I + i;
                        const float gw = dy[o * I + i] * vexpf(xv[at] - want);
                        bad_g += !gv || memcmp(&gv[at], &gw, sizeof gw) != 0;
                    }
                    lanes_all++;
                }
            free(xv);
            ag_set_num_threads(saved);
            ag_scope_end();
        }
    ok(bad_y == 0 && bad_g == 0,
       "float32 logsumexp along a middle dim: %d lanes of 2-1025 columns, y and dx the bits of scalar vexpf and a float64 "
       "sum in order (%d values, %d gradients differ)", lanes_all, bad_y, bad_g);
}

/* Σ_k (double)vexpf(r[k] - m) over a row of n in AG_SUM8's order: accumulator k takes the terms k mod 8
 * of the whole 8-blocks, in turn, then the tail, added as AG_SUM8 adds them. */
static double sum8_vexpf(const float *r, int64_t n, float m) {
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0}, tail = 0;
    int64_t k = 0;
    for (; k < n - n % 8; k++) acc[k % 8] += (double)vexpf(r[k] - m);
    for (; k < n; k++) tail += (double)vexpf(r[k] - m);
    return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail;
}

/* logsumexp of float32 along the last dim (ops/reduce.c: lse_rows, whose Σ exp is made LSE_CHUNK terms at
 * a time, lse_short_rows, and lse_blocks for rows longer than LSE_BLOCK; all compiled for AVX-512 too)
 * gives the bits of its definition in scalar C here: per row m = max x, s = Σ (double)vexpf(x - m) in
 * AG_SUM8's order, y = (float)(m + log s) (a long row: per 2^15-block m_b and s_b so, then M = max m_b and
 * y = (float)(M + log Σ_b s_b·exp(m_b - M)) in block order), and dx = dy·vexpf(x - y); rows of 9 to 70001
 * (chunk and vector tails, one and several chunks, two and three blocks), values in [-8, 8) and some near
 * -100 (subnormal and zero exponentials), on 1 and 2 threads.  (The float64 sum's order is below the
 * float32 result's rounding: this checks the terms, the chunks' bounds and the blocks, not the order.) */
static void test_logsumexp_rows_bits(void) {
    static const int64_t geo[][2] = {{9, 13},  {3, 16},   {2, 17},  {5, 76},   {4, 255},  {3, 256},   {3, 263},
                                     {2, 264}, {2, 519},  {2, 1031}, {64, 512}, {1, 70001}, {2, 32775}};
    const int saved = ag_get_num_threads();
    uint64_t seed = 11;
    int bad_y = 0, bad_g = 0, rows_all = 0;
    for (size_t c = 0; c < sizeof geo / sizeof *geo; c++)
        for (int nt = 1; nt <= 2; nt++) {
            ag_scope_begin();
            ag_set_num_threads(nt);
            const int64_t O = geo[c][0], N = geo[c][1], n = O * N, block = (int64_t)1 << 15;
            float *xv = malloc(sizeof(float) * (size_t)(n + O));
            float *dy = xv + n;
            for (int64_t k = 0; k < n; k++) xv[k] = lse_draw(&seed, k % 13 == 5);
            for (int64_t o = 0; o < O; o++) dy[o] = (float)(0.5 + (double)(o % 7) / 3);
            ag_tensor *x = ag_requires_grad_(ag_from_data(xv, AG_SHAPE(O, N), AG_F32), true);
            const int one = 1;
            ag_tensor *y = ag_logsumexp_dims(x, 1, &one, false);
            const bool run = y && ag_backward_ex(y, ag_from_data(dy, AG_SHAPE(O), AG_F32), false) == AG_OK && ag_grad(x);
            const float *yv = run ? (const float *)ag_data(y) : NULL, *gv = run ? (const float *)ag_data(ag_grad(x)) : NULL;
            for (int64_t o = 0; o < O; o++) {
                const float *r = xv + o * N;
                float want;
                if (N <= block) {
                    float m = r[0];
                    for (int64_t k = 1; k < N; k++) m = r[k] > m ? r[k] : m;
                    want = (float)((double)m + log(sum8_vexpf(r, N, m)));
                } else {
                    float mb[8], big = -INFINITY;
                    double sb[8], s = 0;
                    const int64_t nb = (N + block - 1) / block;
                    for (int64_t b = 0; b < nb; b++) {
                        const int64_t lo = b * block, len = N - lo < block ? N - lo : block;
                        mb[b] = r[lo];
                        for (int64_t k = lo; k < lo + len; k++) mb[b] = r[k] > mb[b] ? r[k] : mb[b];
                        sb[b] = sum8_vexpf(r + lo, len, mb[b]);
                        big = mb[b] > big ? mb[b] : big;
                    }
                    for (int64_t b = 0; b < nb; b++) s += sb[b] * exp((double)mb[b] - (double)big);
                    want = (float)((double)big + log(s));
                }
                bad_y += !yv || memcmp(&yv[o], &want, sizeof want) != 0;
                for (int64_t k = 0; k < N; k++) {
                    const float gw = dy[o] * vexpf(r[k] - want);
                    bad_g += !gv || memcmp(&gv[o * N + k], &gw, sizeof gw) != 0;
                }
                rows_all++;
            }
            free(xv);
            ag_set_num_threads(saved);
            ag_scope_end();
        }
    ok(bad_y == 0 && bad_g == 0,
       "float32 logsumexp along the last dim: %d rows of 9-70001, y and dx the bits of scalar vexpf and a float64 sum "
       "in AG_SUM8's order (%d values, %d gradients differ)", rows_all, bad_y, bad_g);
}

/* amax/amin's fast adjoint (ops/reduce.c: a vectorised tie count and select per row, or TIE_COLS
 * columns at a time, lanes split over threads) against the reference two passes, bit for bit, on 1,
 * 2 and 3 threads, float32 and float64, on [outer, n, inner] inputs reduced along dim 1 or over all
 * dims, with many ties (values floor(4·u) - 2), a NaN in one lane and two in another (their NaNs
 * share dy), an all -inf lane and a +inf; each lane's gradient adds up to its dy. */
static void test_amax_ties_lanes(void) {
    typedef struct geometry {
        int64_t outer, n, inner;
        bool all;
    } geometry;
    static const geometry geo[] = {{1, 150, 1037, false}, {150, 1037, 1, false}, {5, 300, 97, false},
                                   {1, 140001, 1, true},  {3, 1, 5, false},      {7, 513, 2, false},
                                   {5, 70001, 1, false},  {1, 65537, 1, true}}; /* the last two: blocks of 2^15 */
    const int saved = ag_get_num_threads();
    const ag_backend_mode mode = ag__backend;
    uint64_t seed = 7;
    for (size_t c = 0; c < sizeof geo / sizeof geo[0]; c++)
        for (int dt = 0; dt < 2; dt++)
            for (int is_max = 0; is_max < 2; is_max++) {
                ag_scope_begin();
                const geometry G = geo[c];
                const ag_dtype dtype = dt ? AG_F64 : AG_F32;
                const int64_t n = G.outer * G.n * G.inner, lanes = G.outer * G.inner;
                double *xv = malloc(sizeof(double) * (size_t)(n + lanes)), *dy = xv + n;
                for (int64_t k = 0; k < n; k++) {
                    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
                    xv[k] = floor(4 * (double)(seed >> 11) / 9007199254740992.0) - 2;
                }
                for (int64_t l = 0; l < lanes; l++) dy[l] = 0.5 + (double)(l % 5) / 4;
#define AT(l, k) xv[((l) / G.inner * G.n + (k)) * G.inner + (l) % G.inner]
                if (lanes > 4) {
                    for (int64_t k = 0; k < G.n; k++) AT(1, k) = -INFINITY;
                    AT(2, G.n / 2) = INFINITY, AT(3, G.n - 1) = NAN, AT(4, 0) = NAN, AT(4, G.n - 1) = NAN;
                } else if (G.all) {
                    xv[n - 3] = NAN, xv[5] = NAN;
                }
#undef AT
                ag_tensor *x = ag_requires_grad_(ag_to_dtype(ag_from_data(xv, AG_SHAPE(G.outer, G.n, G.inner), AG_F64), dtype), true);
                ag_tensor *g = ag_to_dtype(ag_from_data(dy, G.all ? AG_SCALAR_SHAPE : AG_SHAPE(G.outer, G.inner), AG_F64), dtype);
                static const int all_dims[3] = {0, 1, 2};
                const int one = 1;
                ag_tensor *gt[4] = {NULL, NULL, NULL, NULL}; /* 1, 2, 3 threads, then the reference */
                for (int run = 0; run < 4; run++) {
                    ag__backend = run == 3 ? AG_BACKEND_REFERENCE : AG_BACKEND_ACCEL;
                    ag_set_num_threads(run == 3 ? 1 : run + 1);
                    ag_zero_grad(x);
                    const int nd = G.all ? 3 : 1;
                    const int *dims = G.all ? all_dims : &one;
                    ag_tensor *y = is_max ? ag_amax(x, nd, dims, false) : ag_amin(x, nd, dims, false);
                    if (!y || ag_backward_ex(y, g, false) != AG_OK) break;
                    gt[run] = ag_detach(ag_clone(ag_grad(x)));
                }
                ag__backend = mode;
                ag_set_num_threads(saved);
                const bool same = same_bits(gt[3], gt[0]) && same_bits(gt[3], gt[1]) && same_bits(gt[3], gt[2]);
                ag_tensor *sums = gt[0] ? ag_sum_dims(gt[0], G.all ? 3 : 1, G.all ? all_dims : &one, false) : NULL;
                const double wsum = worst_diff(sums, ag_to_dtype(g, AG_F64));
                ok(same && wsum <= (dt ? 1e-12 : 1e-6),
                   "%s's adjoint, %s [%lld, %lld, %lld] along %s with ties, NaN, ±inf: the reference's bits on 1, 2 "
                   "and 3 threads%s, lane sums within %.2g of dy",
                   is_max ? "amax" : "amin", dt ? "float64" : "float32", (long long)G.outer, (long long)G.n,
                   (long long)G.inner, G.all ? "all dims" : "dim 1", same ? "" : " (NOT the same bits)", wsum);
                free(xv);
                ag_scope_end();
            }
}

/* amax, amin, any, all and count_nonzero walk a strided input in its memory order (core/iter.h's
 * ag__iter_run_any_order), as does amax's adjoint count of ties: on each of the six permutations of
 * a [37, 65, 129] input, a slice, and an expanded one, float32 and float64, with NaNs, ±0, ±inf and
 * many ties, reduced over every dim list (keepdim and not), the results equal those of the same op on
 * the contiguous copy (NaN for NaN; an extreme may be either of two equal zeros), the counts and truth
 * values exactly, and the adjoint (amin's) through a permuted leaf bit for bit. */
static void test_exact_reductions_any_layout(void) {
    const int64_t A = 37, B = 65, C = 129, n = A * B * C;
    static const int perms[6][3] = {{0, 1, 2}, {0, 2, 1}, {1, 0, 2}, {1, 2, 0}, {2, 0, 1}, {2, 1, 0}};
    double *xv = malloc(sizeof(double) * (size_t)n);
    uint64_t seed = 11;
    for (int64_t k = 0; k < n; k++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        const int r = (int)(seed >> 33) % 1000;
        xv[k] = r < 3 ? NAN : r < 20 ? 0.0 : r < 30 ? -0.0 : r < 32 ? INFINITY : r < 34 ? -INFINITY : (double)(r % 41) - 20;
    }
    for (int64_t k = 0; k < B * C; k++) xv[5 * B * C + k] = 0; /* a plane of zeros: all() false, count 0 */
    for (int dt = 0; dt < 2; dt++) {
        ag_scope_begin();
        const ag_dtype dtype = dt ? AG_F64 : AG_F32;
        ag_tensor *base = ag_to_dtype(ag_from_data(xv, AG_SHAPE(A, B, C), AG_F64), dtype);
        ag_tensor *row = ag_slice(base, 0, 3, 4, 1);
        ag_tensor *views[8];
        const char *what[8] = {"permuted (0, 1, 2)", "permuted (0, 2, 1)", "permuted (1, 0, 2)", "permuted (1, 2, 0)",
                               "permuted (2, 0, 1)", "permuted (2, 1, 0)", "sliced", "expanded"};
        for (int p = 0; p < 6; p++) views[p] = ag_permute(base, perms[p]);
        views[6] = ag_slice(ag_permute(base, perms[3]), 2, 1, A, 3);
        views[7] = ag_permute(ag_expand(row, AG_SHAPE(A, B, C)), perms[4]);
        for (int v = 0; v < 8; v++) {
            ag_tensor *c = ag_contiguous(ag_clone(views[v]));
            bool good = c != NULL;
            for (int mask = 0; mask < 8 && good; mask++) {
                int dims[3], nd = 0;
                for (int k = 0; k < 3; k++)
                    if (mask >> k & 1) dims[nd++] = k;
                const bool kd = mask & 1;
                good &= worst_diff(ag_amax(views[v], nd, dims, kd), ag_amax(c, nd, dims, kd)) == 0;
                good &= worst_diff(ag_amin(views[v], nd, dims, !kd), ag_amin(c, nd, dims, !kd)) == 0;
                good &= same_bits(ag_count_nonzero(views[v], nd, dims), ag_count_nonzero(c, nd, dims));
                if (nd == 1) {
                    good &= same_bits(ag_any_dim(views[v], dims[0], kd), ag_any_dim(c, dims[0], kd));
                    good &= same_bits(ag_all_dim(views[v], dims[0], !kd), ag_all_dim(c, dims[0], !kd));
                }
                if (v < 6) { /* amax's gradient through the permuted view of a leaf, against the contiguous leaf's */
                    ag_tensor *leaf = ag_requires_grad_(ag_clone(base), true);
                    ag_tensor *lc = ag_requires_grad_(ag_contiguous(ag_clone(views[v])), true);
                    ag_tensor *y = ag_amin(ag_permute(leaf, perms[v]), nd, dims, false), *yc = ag_amin(lc, nd, dims, false);
                    ag_tensor *g = y ? ag_add_scalar(ag_zeros_like(y), 1.5) : NULL;
                    good &= y && yc && g && ag_backward_ex(y, g, false) == AG_OK && ag_backward_ex(yc, g, false) == AG_OK &&
                            same_bits(ag_contiguous(ag_permute(ag_grad(leaf), perms[v])), ag_grad(lc));
                }
            }
            good &= same_bits(ag_any(views[v]), ag_any(c)) && same_bits(ag_all(views[v]), ag_all(c));
            ok(good, "%s amax, amin, count_nonzero, any, all and amin's gradient of a %s [37, 65, 129] over every dim "
               "list: those of the contiguous copy", ag_dtype_name(dtype), what[v]);
        }
        ag_scope_end();
    }
    free(xv);
}

/* cumprod's lane kernels split over threads (ops/scan.c: contiguous lanes four at a time, column
 * blocks): along dim 1 of [3501, 40] (lanes not a multiple of four, enough for threads) and along
 * dim 0 of [40, 3501] (part-full blocks), float32 and float64, with zeros (one, two, first, last) in
 * some lanes: values and gradients within float rounding of float64 loops here
 * (dx_k = Σ_{j>=k} dy_j·Π_{i<=j, i≠k} x_i), and the same bits on 1, 2 and 3 threads. */
static void test_cumprod_lanes(void) {
    enum { LANES = 3501, N = 40 };
    const int saved = ag_get_num_threads();
    double *xv = malloc(sizeof(double) * 4 * LANES * N), *dy = xv + LANES * N, *yw = dy + LANES * N, *gw = yw + LANES * N;
    uint64_t seed = 5;
    for (int d = 0; d < 2; d++)
        for (int dt = 0; dt < 2; dt++) {
            ag_scope_begin();
            const ag_dtype dtype = dt ? AG_F64 : AG_F32;
            const int64_t st = d == 1 ? 1 : LANES, ls = d == 1 ? N : 1; /* element k of lane l at l·ls + k·st */
            for (int64_t k = 0; k < LANES * N; k++) {
                seed = seed * 6364136223846793005ull + 1442695040888963407ull;
                const double u = (double)(seed >> 11) / 9007199254740992.0;
                xv[k] = (float)(k % 3 ? 0.8 + 0.4 * u : -(0.8 + 0.4 * u));
                dy[k] = (float)(u - 0.5);
            }
            for (int64_t l = 0; l < LANES; l += 7) xv[l * ls + (l % N) * st] = 0; /* zeros */
            for (int64_t l = 3; l < LANES; l += 11) xv[l * ls + 2 * st] = 0, xv[l * ls + (N - 5) * st] = 0;
            xv[5 * ls] = 0, xv[6 * ls + (N - 1) * st] = 0;
            for (int64_t l = 0; l < LANES; l++) {
                double p = 1;
                for (int64_t k = 0; k < N; k++) yw[l * ls + k * st] = p *= xv[l * ls + k * st];
                for (int64_t k = 0; k < N; k++) {
                    double q = 1, acc = 0;
                    for (int64_t j = 0; j < N; j++) {
                        if (j != k) q *= xv[l * ls + j * st];
                        if (j >= k) acc += dy[l * ls + j * st] * q;
                    }
                    gw[l * ls + k * st] = acc;
                }
            }
            const ag_shape shape = d == 1 ? AG_SHAPE(LANES, N) : AG_SHAPE(N, LANES);
            ag_tensor *x = ag_requires_grad_(ag_to_dtype(ag_from_data(xv, shape, AG_F64), dtype), true);
            ag_tensor *g = ag_to_dtype(ag_from_data(dy, shape, AG_F64), dtype);
            ag_tensor *yt[3] = {NULL, NULL, NULL}, *gt[3] = {NULL, NULL, NULL};
            for (int nt = 1; nt <= 3; nt++) {
                ag_set_num_threads(nt);
                ag_zero_grad(x);
                yt[nt - 1] = ag_cumprod(x, d);
                if (!yt[nt - 1] || ag_backward_ex(yt[nt - 1], g, false) != AG_OK) break;
                gt[nt - 1] = ag_detach(ag_clone(ag_grad(x)));
            }
            ag_set_num_threads(saved);
            const bool same = same_bits(yt[0], yt[1]) && same_bits(yt[0], yt[2]) && same_bits(gt[0], gt[1]) &&
                              same_bits(gt[0], gt[2]);
            const double wy = worst_diff(yt[0], ag_from_data(yw, shape, AG_F64));
            const double wg = gt[0] ? worst_diff(gt[0], ag_from_data(gw, shape, AG_F64)) : INFINITY;
            const double tol = dt ? 1e-13 : 2e-6;
            ok(same && wy <= tol && wg <= tol,
               "cumprod of %s %s along dim %d with zeros: y within %.2g, dx within %.2g of float64 loops, "
               "the same bits on 1, 2 and 3 threads%s",
               dt ? "float64" : "float32", d == 1 ? "[3501, 40]" : "[40, 3501]", d, wy, wg, same ? "" : " (NOT the same bits)");
            ag_scope_end();
        }
    free(xv);
}

/* Sums over leading and middle dims (core/sum.c's column sums) add eight or four rows at a time in a
 * float32 tree and those trees in float64 (an error below 3·2^-24 of Σ|x|): on a large value
 * followed by small ones (2^24, then 2^17 to 2^20 values u in [0, 1) in each column), each float32
 * result must be within 2 ulps of the float64 sum, where a serial float32 sum (one float32
 * accumulator: each u is lost against 2^24) is checked to be more than 1000 ulps off.  Shapes: the folded
 * narrow path ([2^20, 4] over dim 0), a middle dim ([4, 2^17, 8] over dim 1) and the wide path
 * ([2^17, 256] over dim 0); and on 1, 2 and 3 threads the same bits (rows split at fixed chunks,
 * columns at whole lines), as for sums along the last dim of few long rows (chunks of 2^15), and for
 * the float32 2-norm, which takes the same paths. */
static double ulps_off(float got, double want) {
    const double ulp = ldexp(1.0, ilogb(want) - 23);
    return fabs((double)got - want) / ulp;
}
static void test_column_sum_accuracy(void) {
    static const struct {
        int64_t A, R, C; /* x [A, R, C] summed over dim 1 (A = 1: a [R, C] x over dim 0) */
    } geo[] = {{1, (int64_t)1 << 20, 4}, {4, (int64_t)1 << 17, 8}, {1, (int64_t)1 << 17, 256}};
    const int saved = ag_get_num_threads();
    for (size_t g = 0; g < sizeof geo / sizeof *geo; g++) {
        ag_scope_begin();
        const int64_t A = geo[g].A, R = geo[g].R, C = geo[g].C, n = A * R * C;
        float *v = malloc(sizeof(float) * (size_t)n);
        uint64_t seed = 7 + g;
        for (int64_t i = 0; i < n; i++) {
            seed = seed * 6364136223846793005ull + 1442695040888963407ull;
            v[i] = i / C % R == 0 ? 16777216.0f : (float)((double)(seed >> 40) / 16777216.0); /* row 0: 2^24 */
        }
        double worst = 0, serial_best = INFINITY, *exact = calloc((size_t)(A * C), sizeof(double));
        for (int64_t a = 0; a < A; a++)
            for (int64_t c = 0; c < C; c++) {
                float serial = 0;
                for (int64_t r = 0; r < R; r++) exact[a * C + c] += v[(a * R + r) * C + c], serial += v[(a * R + r) * C + c];
                serial_best = fmin(serial_best, ulps_off(serial, exact[a * C + c]));
            }
        ag_tensor *x = ag_from_data(v, A == 1 ? AG_SHAPE(R, C) : AG_SHAPE(A, R, C), AG_F32);
        ag_tensor *y[3] = {NULL, NULL, NULL};
        for (int nt = 1; nt <= 3; nt++) {
            ag_set_num_threads(nt);
            y[nt - 1] = ag_sum_dim(x, A == 1 ? 0 : 1, false);
        }
        ag_set_num_threads(saved);
        const float *got = y[0] ? (const float *)ag_data(y[0]) : NULL;
        for (int64_t k = 0; got && k < A * C; k++) worst = fmax(worst, ulps_off(got[k], exact[k]));
        free(exact);
        const bool same = same_bits(y[0], y[1]) && same_bits(y[0], y[2]);
        ok(got && worst <= 2 && serial_best > 1000 && same,
           "float32 sum over dim %d of [%lld, %lld, %lld] (large and small values): within %.2f ulps of float64 "
           "(a serial float32 sum: at least %.0f ulps off), the same bits on 1, 2 and 3 threads%s",
           A == 1 ? 0 : 1, (long long)A, (long long)R, (long long)C, worst, serial_best, same ? "" : " (NOT the same bits)");
        free(v);
        ag_scope_end();
    }
    /* the same bits on 1, 2 and 3 threads for the other sum paths: narrow chunked columns, a middle dim
     * with few outer indices, rows along the last dim cut into chunks, all elements */
    ag_scope_begin();
    ag_manual_seed(5);
    static const struct {
        int64_t d0, d1, d2;
        int dim; /* -1: all elements */
    } more[] = {{1, 100003, 40, 1}, {2, 50001, 300, 1}, {3, 3, 100003, 2}, {1, 2, 200003, 2}, {1, 3, 300007, -1}};
    bool same = true;
    for (size_t k = 0; k < sizeof more / sizeof *more; k++) {
        ag_tensor *x = ag_randn(AG_SHAPE(more[k].d0, more[k].d1, more[k].d2), AG_F32), *y[3], *norm[3];
        for (int nt = 1; nt <= 3; nt++) {
            ag_set_num_threads(nt);
            y[nt - 1] = more[k].dim < 0 ? ag_sum(x) : ag_mean_dim(x, more[k].dim, false);
            norm[nt - 1] = ag_linalg_vector_norm(x, 2, more[k].dim < 0 ? 0 : 1, &more[k].dim, false);
        }
        same &= same_bits(y[0], y[1]) && same_bits(y[0], y[2]) && same_bits(norm[0], norm[1]) && same_bits(norm[0], norm[2]);
    }
    ag_set_num_threads(saved);
    ok(same, "float32 sums, means and 2-norms along middle and last dims and over all elements of large inputs: the "
       "same bits on 1, 2 and 3 threads");
    ag_scope_end();
}

/* sum/mean over several runs of dims of a contiguous x (core/sqdev.c's ag__sum_slabs_into): x
 * [S1, K, S2, A, R, C] over dims (0, 2, 4) is read as the slabs [A, R, C] of each output group k in
 * the order s1, s2, each slab summed by ag__sum_term_into into the group's float64 acc[A, 1, C].  That
 * order is made here slab by slab (contiguous copies) and the result must match it bit for bit, on 1,
 * 2 and 3 threads (the rows shared out in units, or each slab on all threads where the units are
 * fewer), NaN and inf included; and within the bound docs/design.md states against a long double sum:
 * |y - Σ x| <= (3·2^-24 (float32 x) + (N + 2)·2^-53)·Σ|x| + y's own rounding (N terms an output). */
static void test_sum_slabs(void) {
    ag_scope_begin();
    ag_manual_seed(2323);
    const int saved = ag_get_num_threads();
    static const int64_t cases[][6] = {{1, 2, 8, 40, 300, 1}, {1, 1, 8, 37, 500, 1}, {1, 1, 70, 2, 1000, 1}, {1, 2, 5, 6, 70, 16},
                                       {1, 1, 3, 4, 200, 64}, {1, 1, 2, 2, 120, 300}, {2, 3, 2, 5, 9, 3}, {2, 2, 3, 33, 64, 1},
                                       {1, 2, 3, 5, 9, 1}, {3, 1, 4, 9, 130, 2}};
    const int ncases = (int)(sizeof cases / sizeof cases[0]);
    static const int dims[3] = {0, 2, 4};
    bool bits = true, threads_same = true, within = true, shapes = true, special = true;
    double worst = 0;
    for (int dt = 0; dt < 2; dt++)
        for (int ci = 0; ci < ncases; ci++) {
            const ag_dtype dtype = dt ? AG_F64 : AG_F32;
            const size_t es = dt ? 8 : 4;
            const int64_t S1 = cases[ci][0], K = cases[ci][1], S2 = cases[ci][2], A = cases[ci][3], R = cases[ci][4], C = cases[ci][5];
            const int64_t slab = A * R * C, outn = K * A * C, terms = S1 * S2 * R;
            ag_scope_begin();
            ag_tensor *x = ag_randn(AG_SHAPE(S1, K, S2, A, R, C), dtype);
            char *xp = x ? ag_data(x) : NULL;
            const int64_t n = S1 * K * S2 * slab;
            for (int64_t i = 0; xp && i < n; i++) { /* outputs of mixed scales; a few NaN and inf */
                const int64_t u = i % slab / (R * C) * C + i % C, k = i / (S2 * slab) % K;
                double v = (dt ? ((double *)xp)[i] : ((float *)xp)[i]) * ldexp(1, (int)((u + k) % 7) - 3) + ((u + k) % 3 == 1 ? 100.0 : 0.0);
                if ((u + k) % 13 == 5 && i % (R * C) / C == R / 2) v = NAN;
                if ((u + k) % 17 == 6 && i % (R * C) / C == 0) v = INFINITY;
                if (dt) ((double *)xp)[i] = v;
                else ((float *)xp)[i] = (float)v;
            }
            /* the documented order, slab by slab */
            ag_tensor *ref = xp ? ag_zeros(AG_SHAPE(K, A, 1, C), AG_F64) : NULL;
            ag_tensor *sl = ref ? ag_zeros(AG_SHAPE(A, R, C), dtype) : NULL;
            ag_set_num_threads(1);
            for (int64_t k = 0; sl && k < K; k++)
                for (int64_t s1 = 0; s1 < S1; s1++)
                    for (int64_t s2 = 0; s2 < S2; s2++) {
                        memcpy(ag_data(sl), xp + (size_t)(((s1 * K + k) * S2 + s2) * slab) * es, (size_t)slab * es);
                        ag_tensor av = *ref;
                        av.ndim = 3, av.shape[0] = A, av.shape[1] = 1, av.shape[2] = C;
                        ag__contiguous_strides(3, av.shape, av.stride);
                        av.offset = ref->offset + k * A * C;
                        bits &= ag__sum_term_into(&av, sl, AG_SUM_X);
                    }
            for (int is_mean = 0; sl && is_mean <= 1; is_mean++) {
                ag_tensor *y[3];
                for (int t = 0; t < 3; t++) {
                    ag_set_num_threads(t + 1);
                    y[t] = is_mean ? ag_mean_dims(x, 3, dims, false) : ag_sum_dims(x, 3, dims, false);
                }
                if (!y[0] || !y[1] || !y[2] || ag_numel(y[0]) != outn || ag_ndim(y[0]) != 3) {
                    shapes = false;
                    continue;
                }
                for (int t = 1; t < 3; t++) threads_same &= memcmp(ag_data(y[0]), ag_data(y[t]), (size_t)outn * es) == 0;
                const double *r = ag_data(ref);
                for (int64_t o = 0; o < outn; o++) {
                    const double want = is_mean ? r[o] / (double)terms : r[o];
                    const double got = dt ? ((double *)ag_data(y[0]))[o] : (double)((float *)ag_data(y[0]))[o];
                    const double wr = dt ? want : (double)(float)want;
                    bits &= memcmp(&got, &wr, sizeof got) == 0 || (isnan(got) && isnan(wr));
                    /* against long double */
                    const int64_t k = o / (A * C), a = o / C % A, c = o % C;
                    long double sum = 0, sabs = 0;
                    for (int64_t s1 = 0; s1 < S1; s1++)
                        for (int64_t s2 = 0; s2 < S2; s2++)
                            for (int64_t rr = 0; rr < R; rr++) {
                                const int64_t i = ((s1 * K + k) * S2 + s2) * slab + (a * R + rr) * C + c;
                                const long double v = dt ? ((double *)xp)[i] : ((float *)xp)[i];
                                sum += v, sabs += fabsl(v);
                            }
                    if (is_mean) sum /= (long double)terms, sabs /= (long double)terms;
                    if (isnan((double)sum) || isinf((double)sabs)) {
                        special &= isnan((double)sum) ? isnan(got) : got == (double)sum;
                        continue;
                    }
                    const double tol = ((dt ? 0 : 3 * 0x1p-24) + (double)(terms + 2) * 0x1p-53) * (double)sabs +
                                       (dt ? 0x1p-53 : 0x1p-24) * fabs(got);
                    const double err = fabs((double)((long double)got - sum));
                    within &= err <= tol;
                    if (tol > 0 && err / tol > worst) worst = err / tol;
                }
            }
            ag_scope_end();
        }
    ag_set_num_threads(saved);
    ok(shapes, "sum/mean over several runs of dims give their shapes");
    ok(bits, "sum/mean over several runs of dims: the documented slab order, bit for bit");
    ok(threads_same, "sum/mean over several runs of dims: the same bits on 1, 2 and 3 threads");
    ok(special, "sum/mean over several runs of dims: NaN and inf outputs");
    ok(within, "sum/mean over several runs of dims within the documented bound of a long double sum (worst %.3f of it)", worst);
    ag_scope_end();
}

/* sum/mean of a permuted x (ops/reduce.c's sum_memory_order): summed in x's memory order, so bit for bit
 * the sum of the contiguous tensor it permutes over the matching dims, permuted (keepdim), on 1-3
 * threads, NaN included; float32 and float64. */
static void test_sum_memory_order(void) {
    ag_scope_begin();
    ag_manual_seed(2324);
    const int saved = ag_get_num_threads();
    static const int perms[][4] = {{3, 1, 2, 0}, {1, 0, 2, 3}, {2, 3, 0, 1}, {0, 3, 1, 2}, {3, 2, 1, 0}};
    static const int dsets[][3] = {{0, 2, -1}, {1, 3, -1}, {0, 1, 3}, {1, -1, -1}, {0, 3, -1}};
    bool same = true, ran = true;
    for (int dt = 0; dt < 2; dt++) {
        const ag_dtype dtype = dt ? AG_F64 : AG_F32;
        ag_tensor *x0 = ag_randn(AG_SHAPE(6, 40, 7, 90), dtype);
        if (!x0) {
            ran = false;
            continue;
        }
        if (dt) ((double *)ag_data(x0))[1234] = NAN;
        else ((float *)ag_data(x0))[1234] = NAN;
        for (int pi = 0; pi < 5; pi++)
            for (int di = 0; di < 5; di++)
                for (int is_mean = 0; is_mean <= 1; is_mean++)
                    for (int t = 1; t <= 3; t++) {
                        ag_scope_begin();
                        ag_set_num_threads(t);
                        int nd = 0, d[3], d0[3];
                        for (int k = 0; k < 3 && dsets[di][k] >= 0; k++) d[nd] = dsets[di][k], d0[nd] = perms[pi][d[nd]], nd++;
                        ag_tensor *x = ag_permute(x0, perms[pi]);
                        ag_tensor *y = x ? (is_mean ? ag_mean_dims(x, nd, d, true) : ag_sum_dims(x, nd, d, true)) : NULL;
                        ag_tensor *y0 = is_mean ? ag_mean_dims(x0, nd, d0, true) : ag_sum_dims(x0, nd, d0, true);
                        ag_tensor *want = y0 ? ag_contiguous(ag_permute(y0, perms[pi])) : NULL;
                        if (!y || !want || ag_numel(y) != ag_numel(want)) ran = false;
                        else same &= memcmp(ag_data(y), ag_data(want), (size_t)ag_numel(y) * (dt ? 8 : 4)) == 0;
                        ag_scope_end();
                    }
        ag_release(x0);
    }
    ag_set_num_threads(saved);
    ok(ran, "sum/mean of permuted x: shapes");
    ok(same, "sum/mean of permuted x: in memory order, bit for bit the contiguous sum permuted, 1-3 threads");
    ag_scope_end();
}

/* var/std, logsumexp, amax/amin and vector_norm of a permuted x (core/memorder.c): made on x's memory
 * layout with the dims renamed, so each output is bit for bit the same op of the contiguous x0 that x
 * permutes, over the matching dims, permuted back; var/std's gradient (its saved mean copied back in
 * x's dim order) bit for bit x0's; 1-3 threads, keepdim or not, float32 and float64, a NaN. */
static ag_tensor *reduce_op(int op, ag_tensor *x, int nd, const int *d, bool keep) {
    switch (op) {
    case 0: return ag_var_dims(x, nd, d, 1, keep);
    case 1: return ag_std_dims(x, nd, d, 0, keep);
    case 2: return ag_logsumexp_dims(x, nd, d, keep);
    case 3: return ag_amax(x, nd, d, keep);
    case 4: return ag_amin(x, nd, d, keep);
    case 5: return ag_linalg_vector_norm(x, 1, nd, d, keep);
    case 6: return ag_linalg_vector_norm(x, 2, nd, d, keep);
    case 7: return ag_linalg_vector_norm(x, INFINITY, nd, d, keep);
    default: return ag_linalg_vector_norm(x, 3, nd, d, keep);
    }
}
static bool bits_equal(const ag_tensor *a, const ag_tensor *b) {
    return a && b && ag_numel(a) == ag_numel(b) &&
           memcmp(ag_data(a), ag_data(b), (size_t)ag_numel(a) * (ag_dtype_of(a) == AG_F64 ? 8 : 4)) == 0;
}
static void test_reductions_memory_order(void) {
    ag_scope_begin();
    ag_manual_seed(2424);
    const int saved = ag_get_num_threads();
    static const int perms[][4] = {{3, 1, 2, 0}, {1, 0, 2, 3}, {0, 2, 1, 3}, {3, 2, 1, 0}};
    static const int dsets[][4] = {{0, -1}, {3, -1}, {0, 2, -1}, {1, 3, -1}, {0, 1, 3, -1}, {0, 1, 2, 3}};
    bool same = true, grads = true, ran = true;
    int cases = 0;
    for (int dt = 0; dt < 2; dt++) {
        const ag_dtype dtype = dt ? AG_F64 : AG_F32;
        ag_tensor *x0 = ag_randn(AG_SHAPE(5, 24, 7, 70), dtype);
        if (!x0) {
            ran = false;
            continue;
        }
        if (dt) ((double *)ag_data(x0))[4321] = NAN;
        else ((float *)ag_data(x0))[4321] = NAN;
        for (int pi = 0; pi < 4; pi++)
            for (int di = 0; di < 6; di++)
                for (int op = 0; op < 9; op++)
                    for (int t = 1; t <= 3; t++) {
                        ag_scope_begin();
                        ag_set_num_threads(t);
                        const bool keep = t == 2, grad = op <= 1 && t != 3;
                        int nd = 0, d[4], d0[4];
                        for (int k = 0; k < 4 && dsets[di][k] >= 0; k++) d[nd] = dsets[di][k], d0[nd] = perms[pi][d[nd]], nd++;
                        ag_tensor *xa = ag_clone(x0), *xb = ag_clone(x0);
                        if (grad) ag_requires_grad_(xa, true), ag_requires_grad_(xb, true);
                        ag_tensor *y = reduce_op(op, ag_permute(xa, perms[pi]), nd, d, keep);
                        ag_tensor *y0 = reduce_op(op, xb, nd, d0, true);
                        ag_tensor *want = y0 ? ag_contiguous(ag_permute(y0, perms[pi])) : NULL;
                        if (!y || !want || ag_numel(y) != ag_numel(want) || ag_ndim(y) != (keep ? 4 : 4 - nd)) ran = false; /* the same order */
                        else same &= bits_equal(y, want);
                        if (grad && y && y0) {
                            if (ag_backward(ag_sum(y)) || ag_backward(ag_sum(y0))) ran = false;
                            else grads &= bits_equal(ag_grad(xa), ag_grad(xb));
                        }
                        cases++;
                        ag_scope_end();
                    }
        ag_release(x0);
    }
    ag_set_num_threads(saved);
    ok(ran && cases == 2 * 4 * 6 * 9 * 3, "var/std/logsumexp/amax/amin/vector_norm of permuted x: shapes");
    ok(same, "... in memory order: bit for bit the op of the contiguous x permutes, 1-3 threads");
    ok(grads, "... var/std's gradient (the mean copied back) bit for bit the contiguous x's");
    ag_scope_end();
}

/* sum/mean of a sliced x (gaps, no stride 0) over dims that keep its smallest stride's dim (ops/reduce.c's
 * sum_of_copy): bit for bit the sum of its contiguous copy over the same dims, 1-3 threads, keepdim or not,
 * float32 and float64, a NaN; x sliced with unit and non-unit inner steps, and sliced after a transpose. */
static void test_sum_sliced(void) {
    ag_scope_begin();
    ag_manual_seed(2425);
    const int saved = ag_get_num_threads();
    static const int dsets[][3] = {{0, -1, -1}, {1, -1, -1}, {2, -1, -1}, {0, 2, -1}, {0, 1, 2}};
    bool same = true, ran = true;
    for (int dt = 0; dt < 2; dt++) {
        const ag_dtype dtype = dt ? AG_F64 : AG_F32;
        ag_tensor *x0 = ag_randn(AG_SHAPE(7, 40, 9, 66), dtype);
        if (!x0) {
            ran = false;
            continue;
        }
        if (dt) ((double *)ag_data(x0))[2 * 66 + 5] = NAN;
        else ((float *)ag_data(x0))[2 * 66 + 5] = NAN;
        for (int v = 0; v < 4; v++)
            for (int di = 0; di < 5; di++)
                for (int is_mean = 0; is_mean <= 1; is_mean++)
                    for (int t = 1; t <= 3; t++) {
                        ag_scope_begin();
                        ag_set_num_threads(t);
                        ag_tensor *x = v == 0   ? ag_slice(x0, 3, 1, 65, 1)                     /* rows with gaps */
                                       : v == 1 ? ag_slice(ag_slice(x0, 1, 0, 40, 3), 3, 0, 66, 2) /* steps 3 and 2 */
                                       : v == 2 ? ag_slice(x0, 0, 1, 6, 1)                     /* dense: the slabs */
                                                : ag_slice(ag_transpose(x0, 0, 2), 1, 2, 38, 1); /* transposed, sliced */
                        int nd = 0, d[3];
                        for (int k = 0; k < 3 && dsets[di][k] >= 0; k++) d[nd++] = dsets[di][k];
                        const bool keep = t == 2;
                        ag_tensor *xc = x ? ag_contiguous(x) : NULL;
                        ag_tensor *y = x ? (is_mean ? ag_mean_dims(x, nd, d, keep) : ag_sum_dims(x, nd, d, keep)) : NULL;
                        ag_tensor *want = xc ? (is_mean ? ag_mean_dims(xc, nd, d, keep) : ag_sum_dims(xc, nd, d, keep)) : NULL;
                        if (!y || !want || ag_numel(y) != ag_numel(want)) ran = false;
                        else same &= memcmp(ag_data(y), ag_data(want), (size_t)ag_numel(y) * (dt ? 8 : 4)) == 0;
                        ag_scope_end();
                    }
        ag_release(x0);
    }
    ag_set_num_threads(saved);
    ok(ran, "sum/mean of sliced x: shapes");
    ok(same, "sum/mean of sliced x keeping its smallest stride's dim: bit for bit the sum of its contiguous copy, 1-3 threads");
    ag_scope_end();
}


/* sum over a dim of a dense x (contiguous or transposed) that keeps its smallest stride's dim takes the
 * contiguous or memory-order paths, which read x in place: no copy of x (ops/reduce.c's sum_of_copy is for
 * sliced x only; it once took these too and made sum_d0_4096 3.3x slower, with the same bits).  Measured
 * by the bytes alive at the peak, not by time: [512, 512] float32 is 1 MiB, a copy would double it. */
static void test_sum_dense_no_copy(void) {
    ag_set_allocator(peak_alloc, NULL);
    bool ran = true;
    size_t worst = 0;
    ag_scope_begin();
    ag_tensor *x[3] = {ag_randn(AG_SHAPE(512, 512), AG_F32), NULL, ag_randn(AG_SHAPE(16, 512, 32), AG_F32)};
    x[1] = x[0] ? ag_transpose(x[0], 0, 1) : NULL;
    for (int k = 0; k < 3; k++) {
        ag_scope_begin();
        const size_t base = live_bytes;
        peak_bytes = live_bytes;
        ag_tensor *y = x[k] ? ag_sum_dim(x[k], k == 2 ? 1 : 0, false) : NULL;
        ran &= y != NULL;
        if (peak_bytes - base > worst) worst = peak_bytes - base;
        ag_scope_end();
    }
    ag_scope_end();
    ag_set_allocator(NULL, NULL);
    ok(ran && worst < (256u << 10),
       "sum over dim 0 of a contiguous and a transposed [512, 512] and over dim 1 of [16, 512, 32] (1 MiB each) reads x in "
       "place: at most %zu KiB allocated (a copy of x would take 1024)",
       worst >> 10);
}

/* The documented order of a float32 sum over dims of an expanded x whose last reduced dims (size > 1)
 * have stride 0 (their product L): each output adds, from 0 and in the lexicographic order of its other
 * reduced dims, AG_SUM8 of the L copies of one stored value (eight chains k mod 8, the tree
 * ((a0 + a4) + (a1 + a5)) + ((a2 + a6) + (a3 + a7)), the tail) — written out here, not as L·v.
 * b: the stored [bs] float32 values (contiguous, 1 where expanded), fs the expanded shape. */
static void expanded_sum_reference(const float *b, const int64_t *bs, const int64_t *fs, int nd, uint64_t mask, double *out,
                                   long double *exact) {
    int64_t L = 1, fstride[8], bstride[8], n = 1;
    uint64_t run = 0; /* the trailing stride-0 reduced dims */
    for (int d = nd - 1; d >= 0; d--) {
        if (!(mask >> d & 1) || fs[d] == 1) continue;
        if (bs[d] != 1) break;
        run |= 1ull << d, L *= fs[d];
    }
    for (int d = nd - 1; d >= 0; d--) fstride[d] = n, n *= fs[d];
    int64_t m = 1;
    for (int d = nd - 1; d >= 0; d--) bstride[d] = bs[d] == 1 ? 0 : m, m *= bs[d];
    int64_t nout = 1;
    for (int d = 0; d < nd; d++) nout *= mask >> d & 1 ? 1 : fs[d];
    for (int64_t o = 0; o < nout; o++) out[o] = 0, exact[o] = 0;
    /* every index of x in lexicographic order: the outputs' terms come in their order */
    for (int64_t i = 0; i < n; i++) {
        int64_t o = 0, src = 0;
        bool first = true; /* the first element of a run of L copies */
        for (int d = 0; d < nd; d++) {
            const int64_t id = i / fstride[d] % fs[d];
            if (!(mask >> d & 1)) o = o * fs[d] + id;
            if (run >> d & 1 && id != 0) first = false;
            src += id * bstride[d];
        }
        exact[o] += (long double)b[src];
        if (!first) continue;
        const double v = (double)b[src];
        double a[8] = {0}, tail = 0;
        int64_t k = 0;
        for (; k < L - L % 8; k += 8)
            for (int j = 0; j < 8; j++) a[j] += v;
        for (; k < L; k++) tail += v;
        out[o] += ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7])) + tail;
    }
}

static void test_sum_expanded(void) {
    ag_scope_begin();
    ag_manual_seed(2426);
    const int saved = ag_get_num_threads();
    static const struct {
        int nd;
        int64_t bs[4], fs[4];
        int ndims, dims[3];
    } cases[] = {
        {2, {37, 1}, {37, 300}, 1, {1}},          {2, {37, 1}, {37, 300}, 2, {0, 1}},    {2, {1, 53}, {41, 53}, 1, {0}},
        {2, {1, 53}, {41, 53}, 2, {0, 1}},        {3, {6, 1, 7}, {6, 5, 7}, 2, {0, 1}},  {3, {6, 1, 7}, {6, 5, 7}, 1, {1}},
        {3, {6, 1, 7}, {6, 5, 7}, 3, {0, 1, 2}},  {4, {1, 3, 1, 4}, {5, 3, 6, 4}, 2, {0, 2}},
        {3, {4, 1, 5}, {4, 6, 5}, 2, {0, 1}},     {3, {1, 1, 9}, {3, 4, 9}, 2, {0, 1}},  {2, {3000, 1}, {3000, 200}, 1, {1}},
        {3, {64, 1, 64}, {64, 64, 64}, 2, {0, 1}}, {2, {1, 1}, {70, 90}, 1, {1}},
        {3, {20, 300, 1}, {20, 300, 6}, 2, {1, 2}}, {3, {1, 300, 1}, {20, 300, 6}, 3, {0, 1, 2}},
    };
    const int ncase = (int)(sizeof cases / sizeof cases[0]);
    bool ran = true, same = true, bound = true;
    for (int c = 0; c < ncase; c++) {
        const int nd = cases[c].nd;
        ag_tensor *b = ag_randn((ag_shape){.ndim = nd, .dim = {cases[c].bs[0], cases[c].bs[1], cases[c].bs[2], cases[c].bs[3]}},
                                AG_F32);
        if (!b) {
            ran = false;
            continue;
        }
        if (c == 4) ((float *)ag_data(b))[3] = NAN;
        uint64_t mask = 0;
        for (int k = 0; k < cases[c].ndims; k++) mask |= 1ull << cases[c].dims[k];
        int64_t nout = 1;
        for (int d = 0; d < nd; d++) nout *= mask >> d & 1 ? 1 : cases[c].fs[d];
        int64_t count = 1;
        for (int d = 0; d < nd; d++) count *= mask >> d & 1 ? cases[c].fs[d] : 1;
        double *want = malloc(sizeof(double) * (size_t)nout);
        long double *exact = malloc(sizeof(long double) * (size_t)nout);
        if (!want || !exact) ran = false;
        else expanded_sum_reference(ag_data(b), cases[c].bs, cases[c].fs, nd, mask, want, exact);
        for (int is_mean = 0; want && exact && is_mean <= 1; is_mean++)
            for (int t = 1; t <= 3; t++) {
                ag_scope_begin();
                ag_set_num_threads(t);
                ag_tensor *x = ag_expand(b, (ag_shape){.ndim = nd, .dim = {cases[c].fs[0], cases[c].fs[1], cases[c].fs[2], cases[c].fs[3]}});
                const bool keep = t == 2;
                ag_tensor *y = !x ? NULL : is_mean ? ag_mean_dims(x, cases[c].ndims, cases[c].dims, keep) : ag_sum_dims(x, cases[c].ndims, cases[c].dims, keep);
                if (!y || ag_numel(y) != nout) ran = false;
                else
                    for (int64_t o = 0; o < nout; o++) {
                        const float got = ((const float *)ag_data(y))[o];
                        const float w = (float)(is_mean ? want[o] / (double)count : want[o]);
                        same &= memcmp(&got, &w, sizeof w) == 0;
                        /* float32 rounding of a float64 sum of count terms: 2^-24 |Σ| + count·2^-53·Σ|x| (|x| <= 8) */
                        const long double e = is_mean ? exact[o] / count : exact[o];
                        if (!isnan((double)e)) bound &= fabsl((long double)got - e) <= 0x1p-24L * fabsl(e) + count * 8 * 0x1p-52L + 1e-30L;
                    }
                ag_scope_end();
            }
        free(want);
        free(exact);
        ag_release(b);
    }
    ag_set_num_threads(saved);
    ok(ran, "sum/mean of expanded float32 x: shapes");
    ok(same, "sum/mean of expanded float32 x over stride-0 dims: bit for bit the documented order (AG_SUM8 of the copies), 1-3 threads");
    ok(bound, "sum/mean of expanded float32 x: within float32 rounding of the long double sum");
    ag_scope_end();
}


/* Sums of expanded x (stride 0 along kept and summed dims), float32 and float64, against the iterator's
 * walk run here with the plain sum kernel (ag__sum_kernel: every run summed where it stands, no run's
 * sum reused, no dim cut), the order ag__sum_into documents for such x: bit for bit, 1-3 threads. */
static void test_sum_expanded_walk(void) {
    ag_scope_begin();
    ag_manual_seed(2427);
    const int saved = ag_get_num_threads();
    static const struct {
        int nd;
        int64_t bs[4], fs[4];
        int ndims, dims[3];
    } cases[] = {
        {2, {1, 53}, {41, 53}, 2, {0, 1}},           {2, {37, 1}, {37, 300}, 1, {0}},         {2, {1, 300}, {37, 300}, 1, {1}},
        {4, {9, 1, 8, 10}, {9, 6, 8, 10}, 1, {0}},    {4, {9, 1, 8, 10}, {9, 6, 8, 10}, 2, {0, 2}},
        {4, {9, 1, 8, 10}, {9, 6, 8, 10}, 2, {2, 3}}, {4, {9, 1, 8, 10}, {9, 6, 8, 10}, 4, {0, 1, 2}},
        {3, {1, 5, 1}, {7, 5, 6}, 1, {1}},            {3, {600, 1, 1}, {600, 3, 200}, 1, {0}}, {3, {4, 1, 5}, {4, 6, 5}, 2, {0, 1}},
    };
    const int ncase = (int)(sizeof cases / sizeof cases[0]);
    bool ran = true, same = true;
    for (int dt = 0; dt < 2; dt++)
        for (int c = 0; c < ncase; c++) {
            const ag_dtype dtype = dt ? AG_F64 : AG_F32;
            const int nd = cases[c].nd;
            ag_tensor *b = ag_randn((ag_shape){.ndim = nd, .dim = {cases[c].bs[0], cases[c].bs[1], cases[c].bs[2], cases[c].bs[3]}}, dtype);
            if (!b) {
                ran = false;
                continue;
            }
            if (c == 3 && dt) ((double *)ag_data(b))[5] = NAN;
            const int nd4 = cases[c].ndims > 3 ? 3 : cases[c].ndims; /* {0, 1, 2} of 4 dims */
            uint64_t mask = 0;
            for (int k = 0; k < nd4; k++) mask |= 1ull << cases[c].dims[k];
            int64_t kshape[4], count = 1;
            for (int d = 0; d < nd; d++) kshape[d] = mask >> d & 1 ? 1 : cases[c].fs[d], count *= mask >> d & 1 ? cases[c].fs[d] : 1;
            for (int is_mean = 0; is_mean <= 1; is_mean++)
                for (int t = 1; t <= 3; t++) {
                    ag_scope_begin();
                    ag_set_num_threads(t);
                    ag_tensor *x = ag_expand(b, (ag_shape){.ndim = nd, .dim = {cases[c].fs[0], cases[c].fs[1], cases[c].fs[2], cases[c].fs[3]}});
                    ag_tensor *y = !x ? NULL : is_mean ? ag_mean_dims(x, nd4, cases[c].dims, true) : ag_sum_dims(x, nd4, cases[c].dims, true);
                    ag_tensor *acc = ag_zeros((ag_shape){.ndim = nd, .dim = {kshape[0], kshape[1], kshape[2], kshape[3]}}, AG_F64);
                    if (!y || !acc || ag_numel(y) != ag_numel(acc)) {
                        ran = false;
                        ag_scope_end();
                        continue;
                    }
                    ag_dtype xdt = dtype;
                    ag_iter it;
                    ag__iter_init(&it, x->ndim, x->shape);
                    ag__iter_add(&it, acc);
                    ag__iter_add(&it, x);
                    ag__iter_run_sum(&it, ag__sum_kernel, &xdt);
                    for (int64_t o = 0; o < ag_numel(y); o++) {
                        const double a = ((const double *)ag_data(acc))[o] / (is_mean ? (double)count : 1.0);
                        if (dt) same &= memcmp(&a, (const double *)ag_data(y) + o, 8) == 0;
                        else {
                            const float w = (float)a;
                            same &= memcmp(&w, (const float *)ag_data(y) + o, 4) == 0;
                        }
                    }
                    ag_scope_end();
                }
            ag_release(b);
        }
    ag_set_num_threads(saved);
    ok(ran, "sum/mean of expanded x against the iterator's walk: shapes");
    ok(same, "sum/mean of expanded float32 and float64 x (kept and summed stride-0 dims): bit for bit the iterator's walk with the plain kernel, 1-3 threads");
    ag_scope_end();
}

int main(void) {
    test_layer_norm_offset();
    test_against_reference(AG_F32);
    test_against_reference(AG_F64);
    test_threads();
    test_extreme_nan();
    test_extreme_nan_lanes();
    test_extreme_short_rows();
    test_logsumexp_lanes();
    test_logsumexp_cols_bits();
    test_logsumexp_rows_bits();
    test_amax_ties_lanes();
    test_exact_reductions_any_layout();
    test_cumprod_lanes();
    test_arg_extremes();
    test_prod_paths();
    test_prod_lanes();
    test_prod_views();
    test_prod_memory_order();
    test_cross_entropy_rows();
    test_softmax_rows8();
    test_softmax_blocks512();
    test_softmax_blocks_pipelined();
    test_softmax_rows_fused();
    test_softmax_row_sum_bounds();
    test_arg_extreme_keys();
    test_arg_extreme_blocks();
    test_arg_extreme_rows();
    test_row_sums();
    test_sum_slabs();
    test_sum_memory_order();
    test_reductions_memory_order();
    test_sum_sliced();
    test_sum_dense_no_copy();
    test_sum_expanded();
    test_sum_expanded_walk();
    test_row_sums_bits();
    test_contig_sum_bits();
    test_narrow_column_sums_bits();
    test_column_sum_accuracy();
    test_layer_norm_rows();
    test_layer_norm_rows4();
    test_layer_norm_param_grads_fused();
    test_layer_norm_sum_bounds();
    test_group_norm_rows();
    test_empty_and_scalar();
    ag__backend = AG_BACKEND_AUTO;
    ok(ag_live_tensors() == 0, "no tensor outlives the tests (%ld live)", ag_live_tensors());
    return tap_done();
}

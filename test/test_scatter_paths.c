/*
 * test_scatter_paths.c - scatter_reduce's walk by blocks of lanes (ops/scatter.c)
 * and index_add's rows (ops/index.c), each
 * against a plain loop over index's positions written here, for every reduction,
 * with and without include_self, along every dim of a 3-D input (the last: one
 * lane per block; the others: blocks of adjacent lanes, split into chunks when
 * there are few), float32 and float64, values drawn from a small set with NaN so
 * that targets tie: forward and both gradients.  Then the same on 2 threads with
 * every loop split (AG_BACKEND_ACCEL) gives the same bits as on one, transposed
 * (non-contiguous) operands give the contiguous result, and empty indices leave
 * x as it is.  Indices smaller than x (x copied first, the walk's boxes a part of
 * it) and of x's shape but along dim (each box copied as its run starts), src
 * larger than index and of its shape; a block whose box of scratch is over the cap (narrower
 * runs).  index_add alike: along every dim, repeated indices, alpha 1 and
 * 0.5, forward and both gradients against a plain loop, 2 threads (the rows of y
 * split) against one, strided, empty, dy broadcast from a sum (read as it comes,
 * into a leaf and through a node used twice).  gather, scatter_add and index_select,
 * forward and backward, along every dim on 2 threads (their walks split) against one; scatter_add
 * over chunks of y (each copied from x, then its puts) against a float32 plain loop.  Negative
 * dims give the bits of the positive ones.  The threads' scratch regions of the walk (core/parallel.h
 * ag__scratch_*) lie in their block, each on a page and 256 KiB past the end of the one before
 * (session 18: closer, two threads ran the amax adjoint up to 2.5x slower each on the test host),
 * the last 256 KiB before the block's end.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "agrad/agrad.h"
#include "core/internal.h"
#include "core/parallel.h"
#include "tap.h"

static const char *const red_name[] = {"sum", "prod", "mean", "amax", "amin"};

/* A [a, b, c] tensor of dtype dt whose values come from {-1, 0, 0.5, 2, 3} and, when nan, NaN
 * (one in 97). */
static ag_tensor *small_values(int64_t a, int64_t b, int64_t c, ag_dtype dt, bool nan, uint64_t seed) {
    ag_tensor *t = ag_empty(AG_SHAPE(a, b, c), AG_F64);
    double *v = ag_data(t);
    static const double pick[] = {-1, 0, 0.5, 2, 3};
    for (int64_t k = 0; k < a * b * c; k++) {
        seed = seed * 6364136223846793005u + 1442695040888963407u;
        v[k] = nan && (seed >> 33) % 97 == 0 ? NAN : pick[(seed >> 40) % 5];
    }
    return ag_to_dtype(t, dt);
}

/* An index of shape [a, b, c] with values in [0, m), repeating. */
static ag_tensor *targets(int64_t a, int64_t b, int64_t c, int64_t m, uint64_t seed) {
    ag_tensor *t = ag_empty(AG_SHAPE(a, b, c), AG_I64);
    int64_t *v = ag_data(t);
    for (int64_t k = 0; k < a * b * c; k++) {
        seed = seed * 6364136223846793005u + 1442695040888963407u;
        v[k] = (int64_t)((seed >> 33) % (uint64_t)m);
    }
    return t;
}

static bool same(double a, double b) { return a == b || (isnan(a) && isnan(b)); }
static bool ties(double v, double r) { return v == r || (isnan(v) && isnan(r)); }

/* scatter_reduce of src into x along d at index, and its gradients for dy = g, by a plain loop
 * over index's positions in row-major order (all in float64, contiguous): y, dx, dsrc. */
static void reference(const ag_tensor *x, int d, const ag_tensor *index, const ag_tensor *src, int red, bool self,
                      const ag_tensor *g, double *y, double *dx, double *ds) {
    const int64_t nx = ag_numel(x), n = ag_numel(index), ns = ag_numel(src);
    const double *xv = ag_data(x), *sv = ag_data(src), *gv = ag_data(g);
    const int64_t *iv = ag_data(index);
    int64_t *to = calloc((size_t)n + 1, sizeof *to), *from = calloc((size_t)n + 1, sizeof *from);
    int64_t *cnt = calloc((size_t)nx + 1, sizeof *cnt);
    for (int64_t k = 0; k < n; k++) { /* position k = (i0, i1, i2) of index */
        int64_t c[3] = {k / (index->shape[1] * index->shape[2]), k / index->shape[2] % index->shape[1], k % index->shape[2]};
        from[k] = (c[0] * src->shape[1] + c[1]) * src->shape[2] + c[2];
        c[d] = iv[k];
        to[k] = (c[0] * x->shape[1] + c[1]) * x->shape[2] + c[2];
    }
    for (int64_t o = 0; o < nx; o++) y[o] = xv[o];
    for (int64_t k = 0; k < n; k++) {
        int64_t o = to[k];
        double v = sv[from[k]];
        if (cnt[o]++ == 0 && !self) y[o] = v;
        else if (red == AG_SCATTER_SUM || red == AG_SCATTER_MEAN) y[o] += v;
        else if (red == AG_SCATTER_PROD) y[o] *= v;
        else if (isnan(v) || (red == AG_SCATTER_AMAX ? v > y[o] : v < y[o])) y[o] = v;
    }
    for (int64_t o = 0; o < nx; o++)
        if (red == AG_SCATTER_MEAN && cnt[o]) y[o] /= (double)(cnt[o] + self);
    /* per target: prod's zero contributors and product of the others, amax/amin's ties (the
     * self value counted where it contributes) */
    int64_t *zeros = calloc((size_t)nx + 1, sizeof *zeros);
    double *prod = calloc((size_t)nx + 1, sizeof *prod), *tied = calloc((size_t)nx + 1, sizeof *tied);
    for (int64_t o = 0; o < nx; o++) {
        prod[o] = self && xv[o] != 0 ? xv[o] : 1;
        zeros[o] = self && xv[o] == 0;
        tied[o] = self && ties(xv[o], y[o]);
    }
    for (int64_t k = 0; k < n; k++) {
        int64_t o = to[k];
        double v = sv[from[k]];
        v == 0 ? (void)zeros[o]++ : (void)(prod[o] *= v);
        tied[o] += ties(v, y[o]);
    }
    /* dy[o]·∂y[o]/∂v for a contributor v of o: pass 0 the values sent, pass 1 the self values */
    for (int64_t k = 0; k < ns; k++) ds[k] = 0;
    for (int pass = 0; pass < 2; pass++)
        for (int64_t k = 0; k < (pass ? nx : n); k++) {
            int64_t o = pass ? k : to[k];
            double v = pass ? xv[o] : sv[from[k]], w;
            if (pass && cnt[o] == 0) w = gv[o];
            else if (pass && !self) w = 0;
            else if (red == AG_SCATTER_SUM) w = gv[o];
            else if (red == AG_SCATTER_MEAN) w = gv[o] / (double)(cnt[o] + self);
            else if (red == AG_SCATTER_PROD) w = v != 0 ? (zeros[o] == 0 ? gv[o] * prod[o] / v : 0)
                                                        : (zeros[o] == 1 ? gv[o] * prod[o] : 0);
            else w = ties(v, y[o]) ? gv[o] / tied[o] : 0;
            if (pass) dx[o] = w;
            else ds[from[k]] = w;
        }
    free(zeros), free(prod), free(tied);
    free(to), free(from), free(cnt);
}

typedef struct result {
    ag_tensor *y, *dx, *ds;
} result;

/* y = scatter_reduce(x, d, index, src) and its gradients for dy = g, on this thread count and
 * backend; x, src and index may be views. */
static result run(ag_tensor *x, int d, ag_tensor *index, ag_tensor *src, int red, bool self, ag_tensor *g) {
    ag_tensor *xl = ag_requires_grad_(ag_detach(x), true), *sl = ag_requires_grad_(ag_detach(src), true);
    result r = {ag_scatter_reduce(xl, d, index, sl, (ag_scatter_reduction)red, self), NULL, NULL};
    if (r.y && ag_backward_ex(r.y, g, false) == AG_OK) r.dx = ag_grad(xl), r.ds = ag_grad(sl);
    return r;
}

/* Both float64 and agreeing element by element (NaN with NaN). */
static bool equal(ag_tensor *t, const double *want) {
    if (!t) return false;
    ag_tensor *c = ag_contiguous(ag_to_dtype(t, AG_F64));
    const double *v = ag_data(c);
    for (int64_t k = 0; k < ag_numel(c); k++)
        if (!same(v[k], want[k])) return false;
    return true;
}
static bool bits_equal(ag_tensor *a, ag_tensor *b) {
    if (!a || !b || ag_numel(a) != ag_numel(b)) return false;
    ag_tensor *ca = ag_contiguous(a), *cb = ag_contiguous(b);
    return !memcmp(ag_data(ca), ag_data(cb), (size_t)ag_numel(a) * ag_dtype_size(a->dtype));
}

static void check(const int64_t xs[3], const int64_t is[3], int64_t spare, int d, int red, bool self, ag_dtype dt) {
    ag_scope_begin();
    uint64_t seed = (uint64_t)(d * 131 + red * 17 + self * 3 + (dt == AG_F64));
    ag_tensor *x = small_values(xs[0], xs[1], xs[2], dt, true, seed);
    ag_tensor *src = small_values(is[0] + spare, is[1] + spare, is[2] + spare, dt, true, seed + 1);
    ag_tensor *index = targets(is[0], is[1], is[2], xs[d], seed + 2);
    ag_tensor *g = small_values(xs[0], xs[1], xs[2], dt, false, seed + 3);
    const int64_t nx = ag_numel(x), ns = ag_numel(src);
    double *y = calloc((size_t)nx, sizeof *y), *dx = calloc((size_t)nx, sizeof *dx), *ds = calloc((size_t)ns, sizeof *ds);
    ag_tensor *x64 = ag_to_dtype(x, AG_F64), *s64 = ag_to_dtype(src, AG_F64), *g64 = ag_to_dtype(g, AG_F64);
    reference(x64, d, index, s64, red, self, g64, y, dx, ds);
    result one = run(x, d, index, src, red, self, g);
    /* float32: the reference's float64 values rounded (prod and mean round once in the op too) */
    bool fine = dt == AG_F64 ? equal(one.y, y) && equal(one.dx, dx) && equal(one.ds, ds) : one.y && one.dx && one.ds;
    if (dt == AG_F32 && fine) {
        ag_tensor *wy = ag_to_dtype(ag_from_data(y, AG_SHAPE(xs[0], xs[1], xs[2]), AG_F64), AG_F32);
        ag_tensor *wx = ag_to_dtype(ag_from_data(dx, AG_SHAPE(xs[0], xs[1], xs[2]), AG_F64), AG_F32);
        ag_tensor *ws = ag_to_dtype(ag_from_data(ds, ag_shape_of(src), AG_F64), AG_F32);
        fine = bits_equal(one.y, wy) && bits_equal(one.dx, wx) && bits_equal(one.ds, ws);
    }
    ok(fine, "scatter_reduce %s%s along dim %d of [%lld, %lld, %lld], index [%lld, %lld, %lld], src %lld larger, %s: "
       "the plain loop's values and gradients", red_name[red], self ? "" : " without self", d, (long long)xs[0],
       (long long)xs[1], (long long)xs[2], (long long)is[0], (long long)is[1], (long long)is[2], (long long)spare,
       ag_dtype_name(dt));
    /* every loop split over 2 threads: the same bits */
    ag_backend_mode saved = ag__backend;
    int threads = ag_get_num_threads();
    ag__backend = AG_BACKEND_ACCEL;
    ag_set_num_threads(2);
    result two = run(x, d, index, src, red, self, g);
    ag__backend = saved;
    ag_set_num_threads(threads);
    ok(bits_equal(one.y, two.y) && bits_equal(one.dx, two.dx) && bits_equal(one.ds, two.ds),
       "... on 2 threads, every loop split: the same bits as on one");
    /* transposed operands: the contiguous result */
    ag_tensor *xt = ag_transpose(ag_contiguous(ag_transpose(x, 0, 2)), 0, 2);
    ag_tensor *st = ag_transpose(ag_contiguous(ag_transpose(src, 0, 2)), 0, 2);
    ag_tensor *it = ag_transpose(ag_contiguous(ag_transpose(index, 0, 2)), 0, 2);
    ag_tensor *gt = ag_transpose(ag_contiguous(ag_transpose(g, 0, 2)), 0, 2);
    result nc = run(xt, d, it, st, red, self, gt);
    ok(bits_equal(one.y, nc.y) && bits_equal(one.dx, nc.dx) && bits_equal(one.ds, nc.ds),
       "... with non-contiguous x, index, src and dy: the same bits");
    free(y), free(dx), free(ds);
    ag_scope_end();
}

/* An index with no element (of size 0 along dim, or along another dim): y = x, dx = dy, dsrc = 0. */
static void check_empty(const int64_t is[3], int d) {
    ag_scope_begin();
    ag_tensor *x = small_values(4, 5, 6, AG_F64, false, 9), *src = small_values(4, 5, 6, AG_F64, false, 10);
    ag_tensor *g = small_values(4, 5, 6, AG_F64, false, 11);
    result r = run(x, d, targets(is[0], is[1], is[2], 1, 12), src, AG_SCATTER_AMAX, true, g);
    ok(r.y && bits_equal(r.y, x) && bits_equal(r.dx, g) && ag_item(ag_sum(ag_abs(r.ds))) == 0,
       "scatter_reduce with an empty [%lld, %lld, %lld] index along dim %d: y = x, dx = dy, dsrc = 0",
       (long long)is[0], (long long)is[1], (long long)is[2], d);
    ag_scope_end();
}


/* index_add(x, d, index, src, alpha) with gradients for dy = g against a plain loop (float64
 * reference, float32 rounded once: each element gets at most a few adds of exact values). */
static void check_index_add(const int64_t xs[3], int d, int64_t len, double alpha, ag_dtype dt) {
    ag_scope_begin();
    uint64_t seed = (uint64_t)(d * 7 + len + (dt == AG_F64));
    int64_t ss[3] = {xs[0], xs[1], xs[2]};
    ss[d] = len;
    ag_tensor *x = small_values(xs[0], xs[1], xs[2], dt, false, seed), *src = small_values(ss[0], ss[1], ss[2], dt, false, seed + 1);
    ag_tensor *g = small_values(xs[0], xs[1], xs[2], dt, false, seed + 2);
    ag_tensor *index = ag_reshape(targets(1, 1, len, xs[d], seed + 3), AG_SHAPE(len));
    const int64_t *iv = ag_data(index);
    ag_tensor *x64 = ag_to_dtype(x, AG_F64), *s64 = ag_to_dtype(src, AG_F64), *g64 = ag_to_dtype(g, AG_F64);
    ag_tensor *wy = ag_clone(x64), *ws = ag_zeros(AG_SHAPE(ss[0], ss[1], ss[2]), AG_F64);
    double *y = ag_data(wy), *ds = ag_data(ws);
    const double *sv = ag_data(s64), *gv = ag_data(g64);
    for (int64_t a = 0; a < ss[0]; a++)
        for (int64_t b = 0; b < ss[1]; b++)
            for (int64_t c = 0; c < ss[2]; c++) {
                int64_t t[3] = {a, b, c};
                t[d] = iv[t[d]];
                int64_t to = (t[0] * xs[1] + t[1]) * xs[2] + t[2], from = (a * ss[1] + b) * ss[2] + c;
                y[to] += alpha * sv[from];
                ds[from] = alpha * gv[to];
            }
    ag_tensor *xl = ag_requires_grad_(ag_detach(x), true), *sl = ag_requires_grad_(ag_detach(src), true);
    ag_tensor *out = ag_index_add(xl, d, index, sl, alpha);
    bool fine = out && ag_backward_ex(out, g, false) == AG_OK && bits_equal(out, ag_to_dtype(wy, dt)) &&
                bits_equal(ag_grad(xl), g) && bits_equal(ag_grad(sl), ag_to_dtype(ws, dt));
    ok(fine, "index_add along dim %d of [%lld, %lld, %lld], %lld indices, alpha %g, %s: the plain loop's values and "
             "gradients", d, (long long)xs[0], (long long)xs[1], (long long)xs[2], (long long)len, alpha, ag_dtype_name(dt));
    /* 2 threads, every loop split; transposed operands */
    ag_backend_mode saved = ag__backend;
    int threads = ag_get_num_threads();
    ag__backend = AG_BACKEND_ACCEL;
    ag_set_num_threads(2);
    ag_tensor *xl2 = ag_requires_grad_(ag_detach(x), true), *sl2 = ag_requires_grad_(ag_detach(src), true);
    ag_tensor *out2 = ag_index_add(xl2, d, index, sl2, alpha);
    bool ran = out2 && ag_backward_ex(out2, g, false) == AG_OK;
    ag__backend = saved;
    ag_set_num_threads(threads);
    ok(ran && bits_equal(out, out2) && bits_equal(ag_grad(sl), ag_grad(sl2)), "... on 2 threads: the same bits");
    ag_tensor *xt = ag_transpose(ag_contiguous(ag_transpose(x, 0, 2)), 0, 2);
    ag_tensor *st = ag_transpose(ag_contiguous(ag_transpose(src, 0, 2)), 0, 2);
    ag_tensor *gt = ag_transpose(ag_contiguous(ag_transpose(g, 0, 2)), 0, 2);
    ag_tensor *xl3 = ag_requires_grad_(xt, true), *sl3 = ag_requires_grad_(st, true);
    ag_tensor *out3 = ag_index_add(xl3, d, index, sl3, alpha);
    ran = out3 && ag_backward_ex(out3, gt, false) == AG_OK;
    ok(ran && bits_equal(out, out3) && bits_equal(ag_grad(sl), ag_grad(sl3)), "... with non-contiguous x, src and dy: the same bits");
    /* dy expanded from a scalar (the adjoint of a sum, read in place): dsrc = alpha everywhere */
    ag_tensor *sl4 = ag_requires_grad_(ag_detach(src), true);
    ran = ag_backward(ag_sum(ag_index_add(x, d, index, sl4, alpha))) == AG_OK;
    ok(ran && bits_equal(ag_grad(sl4), ag_mul_scalar(ag_ones_like(src), alpha)), "... dy expanded from a scalar: dsrc = alpha");
    /* dx from that dy, passed on as it comes: a leaf's .grad is ones and contiguous; through a
     * node that also feeds the sum (its two gradients added), 2·(1 + 1) */
    ag_tensor *xl5 = ag_requires_grad_(ag_detach(x), true), *xl6 = ag_requires_grad_(ag_detach(x), true);
    ran = ag_backward(ag_sum(ag_index_add(xl5, d, index, src, alpha))) == AG_OK;
    ag_tensor *x6 = ag_mul_scalar(xl6, 2);
    ran = ran && ag_backward(ag_sum(ag_add(ag_index_add(x6, d, index, src, alpha), x6))) == AG_OK;
    ok(ran && ag_is_contiguous(ag_grad(xl5)) && bits_equal(ag_grad(xl5), ag_ones_like(x)) &&
           bits_equal(ag_grad(xl6), ag_full_like(x, 4)),
       "... dx from it: ones in a leaf's contiguous .grad, 4 through a node used twice");
    ag_scope_end();
}

/* gather (and its adjoint, scatter_add into zeros; dy = gi), scatter_add (and its adjoint, a
 * gather; dy = g) and index_select (and its adjoint, a put; dy = 1) along d of x, on this thread
 * count and backend: the outputs and gradients. */
typedef struct run_out {
    ag_tensor *t[7];
} run_out;
static run_out index_runs(ag_tensor *x, int d, ag_tensor *index, ag_tensor *row, ag_tensor *src, ag_tensor *g,
                          ag_tensor *gi) {
    run_out r = {{NULL}};
    ag_tensor *xl = ag_requires_grad_(ag_detach(x), true), *sl = ag_requires_grad_(ag_detach(src), true);
    ag_tensor *gy = ag_gather(xl, d, index);
    if (gy && ag_backward_ex(gy, gi, false) == AG_OK) r.t[0] = gy, r.t[1] = ag_grad(xl);
    ag_tensor *xl2 = ag_requires_grad_(ag_detach(x), true), *sy = ag_scatter_add(xl2, d, index, sl);
    if (sy && ag_backward_ex(sy, g, false) == AG_OK) r.t[2] = sy, r.t[3] = ag_grad(sl);
    ag_tensor *xl3 = ag_requires_grad_(ag_detach(x), true), *iy = ag_index_select(xl3, d, row);
    if (iy && ag_backward_ex(iy, ag_ones_like(iy), false) == AG_OK) r.t[4] = iy, r.t[5] = ag_grad(xl3);
    return r;
}

/* scatter_add's plain loop: w[t] += src[k] in T for each position k of index and src (sizes is), in
 * their row-major order, t being k's position with index[k] along d, in w of sizes xs. */
#define PLAIN_SCATTER_ADD(NAME, T)                                                                       \
    static void NAME(T *w, const int64_t *xs, const T *src, const int64_t *index, const int64_t *is, int d) { \
        for (int64_t a = 0; a < is[0]; a++)                                                              \
            for (int64_t b = 0; b < is[1]; b++)                                                          \
                for (int64_t c = 0; c < is[2]; c++) {                                                    \
                    int64_t t[3] = {a, b, c};                                                            \
                    const int64_t k = (a * is[1] + b) * is[2] + c;                                       \
                    t[d] = index[k];                                                                     \
                    w[(t[0] * xs[1] + t[1]) * xs[2] + t[2]] += src[k];                                   \
                }                                                                                        \
    }
PLAIN_SCATTER_ADD(plain_scatter_add_f64, double)
PLAIN_SCATTER_ADD(plain_scatter_add_f32, float)

/* The pick and put walks (ops/index.c index_run) split over 2 threads along a dim where the
 * written places differ (for a put, one other than d): the bits of one thread, the plain loop's
 * scatter_add, the contiguous result for transposed operands, and an index value out of bounds
 * failing as on one thread. */
static void check_index_run(int d, ag_dtype dt) {
    ag_scope_begin();
    const int64_t xs[3] = {6, 9, 70}, is[3] = {d == 0 ? 11 : 5, d == 1 ? 13 : 8, d == 2 ? 90 : 67};
    uint64_t seed = (uint64_t)(40 + d * 3 + (dt == AG_F64));
    ag_tensor *x = small_values(xs[0], xs[1], xs[2], dt, true, seed), *src = small_values(is[0], is[1], is[2], dt, true, seed + 1);
    ag_tensor *g = small_values(xs[0], xs[1], xs[2], dt, false, seed + 2);
    ag_tensor *gi = small_values(is[0], is[1], is[2], dt, false, seed + 5);
    ag_tensor *index = targets(is[0], is[1], is[2], xs[d], seed + 3); /* smaller than x but along d */
    ag_tensor *row = ag_reshape(targets(1, 1, 2 * xs[d] + 1, xs[d], seed + 4), AG_SHAPE(2 * xs[d] + 1));
    run_out one = index_runs(x, d, index, row, src, g, gi);
    /* scatter_add against a plain loop in float64 (each target's adds in index's row-major order) */
    ag_tensor *w = ag_to_dtype(x, AG_F64);
    double *wv = ag_data(w);
    const double *sv = ag_data(ag_to_dtype(src, AG_F64));
    const int64_t *iv = ag_data(index);
    plain_scatter_add_f64(wv, xs, sv, iv, is, d);
    bool fine = true;
    for (int k = 0; k < 6; k++) fine = fine && one.t[k];
    ok(fine && (dt == AG_F32 || equal(one.t[2], wv)), "gather, scatter_add and index_select along dim %d, %s, "
       "forward and backward: %s", d, ag_dtype_name(dt), dt == AG_F32 ? "they run" : "scatter_add the plain loop's values");
    ag_backend_mode saved = ag__backend;
    int threads = ag_get_num_threads();
    ag__backend = AG_BACKEND_ACCEL;
    ag_set_num_threads(2);
    run_out two = index_runs(x, d, index, row, src, g, gi);
    ag_tensor *bad = ag_clone(index);
    ((int64_t *)ag_data(bad))[ag_numel(bad) - 3] = xs[d];
    ag_tensor *failed = ag_gather(x, d, bad);
    const bool fails2 = !failed && ag_last_status() == AG_ERR_INDEX;
    failed = ag_scatter_add(x, d, bad, src);
    const bool fails2s = !failed && ag_last_status() == AG_ERR_INDEX;
    ag__backend = saved;
    ag_set_num_threads(threads);
    for (int k = 0; k < 6; k++) fine = fine && bits_equal(one.t[k], two.t[k]);
    ok(fine, "... on 2 threads, the walks split: the same bits as on one");
    ok(fails2 && fails2s, "... an index value out of bounds on 2 threads: AG_ERR_INDEX from gather and scatter_add");
    ag_tensor *xt = ag_transpose(ag_contiguous(ag_transpose(x, 0, 2)), 0, 2);
    ag_tensor *st = ag_transpose(ag_contiguous(ag_transpose(src, 0, 2)), 0, 2);
    ag_tensor *it = ag_transpose(ag_contiguous(ag_transpose(index, 0, 2)), 0, 2);
    ag_tensor *gt = ag_transpose(ag_contiguous(ag_transpose(g, 0, 2)), 0, 2);
    ag_tensor *git = ag_transpose(ag_contiguous(ag_transpose(gi, 0, 2)), 0, 2);
    ag__backend = AG_BACKEND_ACCEL;
    ag_set_num_threads(2);
    run_out nc = index_runs(xt, d, it, row, st, gt, git);
    ag__backend = saved;
    ag_set_num_threads(threads);
    for (int k = 0; k < 6; k++) fine = fine && bits_equal(one.t[k], nc.t[k]);
    ok(fine, "... with non-contiguous x, index, src and dy on 2 threads: the same bits");
    ag_scope_end();
}

/* [a, b, c] float32 values that round when added (k·0.37 mod 1.7 - 0.8, scaled by 1 + k mod 7 / 3): the
 * bits of a float32 sum depend on the order of its adds. */
static ag_tensor *rough_f32(int64_t a, int64_t b, int64_t c, uint64_t seed) {
    ag_tensor *t = ag_empty(AG_SHAPE(a, b, c), AG_F32);
    float *v = ag_data(t);
    for (int64_t k = 0; k < a * b * c; k++)
        v[k] = (float)((fmod((double)(k + (int64_t)seed) * 0.37, 1.7) - 0.8) * (1 + (double)(k % 7) / 3));
    return t;
}

/* scatter_add with an index of x's shape but along d, x of several 256 KiB chunks of slabs along
 * dim 0 (ops/index.c index_run: each chunk of y copied from x, then its puts): the bits of a plain
 * float32 loop adding in index's row-major order, on 1 and 2 threads, and an index value out of
 * bounds in the last chunk failing as the check says. */
static void check_scatter_add_chunks(int d) {
    ag_scope_begin();
    const int64_t xs[3] = {5, 90, 300};
    int64_t is[3] = {xs[0], xs[1], xs[2]};
    is[d] = d == 2 ? 350 : 7;
    ag_tensor *x = rough_f32(xs[0], xs[1], xs[2], 1), *src = rough_f32(is[0], is[1], is[2], 2);
    ag_tensor *index = targets(is[0], is[1], is[2], xs[d], (uint64_t)(60 + d));
    ag_tensor *w = ag_clone(x);
    float *wv = ag_data(w);
    const float *sv = ag_data(src);
    const int64_t *iv = ag_data(index);
    plain_scatter_add_f32(wv, xs, sv, iv, is, d);
    ag_tensor *y1 = ag_scatter_add(x, d, index, src);
    ag_backend_mode saved = ag__backend;
    int threads = ag_get_num_threads();
    ag__backend = AG_BACKEND_ACCEL;
    ag_set_num_threads(2);
    ag_tensor *y2 = ag_scatter_add(x, d, index, src);
    ag_tensor *bad = ag_clone(index);
    ((int64_t *)ag_data(bad))[ag_numel(bad) - 2] = -1;
    const bool fails2 = !ag_scatter_add(x, d, bad, src) && ag_last_status() == AG_ERR_INDEX;
    ag__backend = saved;
    ag_set_num_threads(threads);
    const bool fails1 = !ag_scatter_add(x, d, bad, src) && ag_last_status() == AG_ERR_INDEX &&
                        strstr(ag_last_error(), "index -1 is out of bounds") != NULL;
    ok(bits_equal(y1, w) && bits_equal(y2, w) && bits_equal(x, rough_f32(xs[0], xs[1], xs[2], 1)),
       "scatter_add of x's shape along dim %d over chunks of slabs: the plain float32 loop's bits on 1 and 2 threads, x unchanged", d);
    ok(fails1 && fails2, "... an index value out of bounds in the last chunk: AG_ERR_INDEX on 1 and 2 threads");
    ag_scope_end();
}

/* scatter along the last dim (one contiguous lane a run: the AVX-512 scatter of eight places a
 * store where the CPU has it) against a plain loop, float32, float64 and int64: lanes of 5, 8, 19
 * and 64 places (no group of eight, one, and a tail), index of x's shape or shorter (x copied
 * first), targets repeating inside every group of eight (the last write wins: lane order) and
 * across groups; then a value out of bounds (-1, and x's size) in a group or in the tail fails
 * with AG_ERR_INDEX, on 1 and 2 threads. */
static void check_scatter_lanes(void) {
    static const ag_dtype dts[3] = {AG_F32, AG_F64, AG_I64};
    static const int64_t lens[4] = {5, 8, 19, 64};
    bool same_bits = true, fails = true;
    for (int f = 0; f < 3; f++)
        for (int li = 0; li < 4; li++)
            for (int shorter = 0; shorter < 2; shorter++) {
                ag_scope_begin();
                const int64_t rows = 7, xlen = 23, len = lens[li], ilen = shorter ? len : (len < xlen ? len : xlen);
                const int64_t irows = shorter ? rows - 2 : rows;
                ag_tensor *x = ag_to_dtype(ag_mul_scalar(small_values(1, rows, xlen, AG_F64, false, 70 + li), 3), dts[f]);
                ag_tensor *src = ag_to_dtype(ag_add_scalar(small_values(1, rows, len + 3, AG_F64, false, 80 + li), 7), dts[f]);
                x = ag_reshape(x, AG_SHAPE(rows, xlen));
                src = ag_reshape(src, AG_SHAPE(rows, len + 3));
                ag_tensor *index = ag_empty(AG_SHAPE(irows, ilen), AG_I64);
                int64_t *iv = ag_data(index);
                for (int64_t r = 0; r < irows; r++)
                    for (int64_t j = 0; j < ilen; j++) iv[r * ilen + j] = (j * 5 + r) % (3 + (j / 8 + r) % 4) % xlen;
                ag_tensor *want = ag_clone(x);
                const size_t es = ag_dtype_size(dts[f]);
                char *w = ag_data(want);
                const char *sv = ag_data(src);
                for (int64_t r = 0; r < irows; r++)
                    for (int64_t j = 0; j < ilen; j++)
                        memcpy(w + (size_t)(r * xlen + iv[r * ilen + j]) * es, sv + (size_t)(r * (len + 3) + j) * es, es);
                ag_tensor *y = ag_scatter(x, 1, index, src);
                same_bits = same_bits && y && ag_numel(y) == ag_numel(want) && memcmp(ag_data(y), w, (size_t)ag_numel(y) * es) == 0;
                for (int nt = 1; nt <= 2; nt++)
                    for (int at = 0; at < 2; at++) {
                        ag_tensor *bad = ag_clone(index);
                        int64_t *bv = ag_data(bad);
                        bv[(irows - 1) * ilen + (at ? ilen - 1 : ilen / 2)] = at ? xlen : -1;
                        int threads = ag_get_num_threads();
                        ag_backend_mode saved = ag__backend;
                        if (nt == 2) ag__backend = AG_BACKEND_ACCEL, ag_set_num_threads(2);
                        fails = fails && !ag_scatter(x, 1, bad, src) && ag_last_status() == AG_ERR_INDEX;
                        ag__backend = saved;
                        ag_set_num_threads(threads);
                    }
                ag_scope_end();
            }
    ok(same_bits, "scatter along the last dim (float32, float64, int64; lanes of 5, 8, 19, 64; targets repeating "
                  "in each group of eight): the plain loop's bits, the last write winning");
    ok(fails, "... a value out of bounds in a group of eight or in the tail: AG_ERR_INDEX on 1 and 2 threads");
}

/* scatter_reduce sum and prod with include_self keep x's bits where nothing is sent: a signalling
 * NaN of x (which the walk's float64 accumulator would quieten) stays signalling, float32 and
 * float64, along the last dim and dim 0 (noted as x is read, not after the walk). */
static void check_self_nan_bits(void) {
    bool fine = true;
    for (int f = 0; f < 2; f++)
        for (int red = 0; red < 2; red++)
            for (int d = 0; d < 2; d++) {
                ag_scope_begin();
                const ag_dtype dt = f ? AG_F64 : AG_F32;
                ag_tensor *x = ag_to_dtype(ag_reshape(small_values(1, 6, 40, AG_F64, false, 90), AG_SHAPE(6, 40)), dt);
                ag_tensor *src = ag_to_dtype(ag_reshape(small_values(1, 6, 40, AG_F64, false, 91), AG_SHAPE(6, 40)), dt);
                const int64_t places = d ? 40 : 6;
                ag_tensor *index = ag_empty(AG_SHAPE(6, 40), AG_I64);
                int64_t *iv = ag_data(index);
                for (int64_t k = 0; k < 240; k++) iv[k] = (k * 7) % (places - 1); /* nothing to the last place */
                const int64_t at = d ? 2 * 40 + 39 : 5 * 40 + 3;                   /* x's last place along d */
                if (f) {
                    const uint64_t snan = 0x7ff0000000000001u;
                    memcpy((double *)ag_data(x) + at, &snan, 8);
                } else {
                    const uint32_t snan = 0x7f800001u;
                    memcpy((float *)ag_data(x) + at, &snan, 4);
                }
                ag_tensor *y = ag_scatter_reduce(x, d, index, src, red ? AG_SCATTER_PROD : AG_SCATTER_SUM, true);
                const size_t es = ag_dtype_size(dt);
                fine = fine && y && memcmp((char *)ag_data(y) + at * (int64_t)es, (char *)ag_data(x) + at * (int64_t)es, es) == 0;
                ag_scope_end();
            }
    ok(fine, "scatter_reduce sum/prod with include_self: a signalling NaN of x where nothing is sent keeps its bits "
             "(float32, float64, dims 0 and 1)");
}

/* A negative dim counts from the end: the bits of the positive one, values and gradients. */
static void check_negative_dims(void) {
    ag_scope_begin();
    ag_tensor *x = small_values(3, 7, 70, AG_F32, true, 21), *src = small_values(3, 7, 90, AG_F32, true, 22);
    ag_tensor *g = small_values(3, 7, 70, AG_F32, false, 23), *index = targets(3, 7, 90, 70, 24);
    result p = run(x, 2, index, src, AG_SCATTER_AMAX, true, g), m = run(x, -1, index, src, AG_SCATTER_AMAX, true, g);
    ok(bits_equal(p.y, m.y) && bits_equal(p.dx, m.dx) && bits_equal(p.ds, m.ds),
       "scatter_reduce along dim -1 of a 3-D input: the bits of dim 2");
    ag_tensor *rows = targets(1, 1, 5, 3, 25), *sr = small_values(5, 7, 70, AG_F32, false, 26);
    ag_tensor *i1 = ag_reshape(rows, AG_SHAPE(5));
    ag_tensor *ya = ag_index_add(x, 0, i1, sr, 0.5), *yb = ag_index_add(x, -3, i1, sr, 0.5);
    ok(ya && yb && bits_equal(ya, yb), "index_add along dim -3 of a 3-D input: the bits of dim 0");
    ag_scope_end();
}

/* The threads' scratch regions in one block (core/parallel.h): for 1 to 5 threads each starts
 * on a page, at least 256 KiB past the end of the one before, and the last is followed by 256 KiB
 * inside the block, wherever malloc put the block. */
static void check_scratch_apart(void) {
    bool fine = true;
    for (int nt = 1; nt <= 5; nt++)
        for (int64_t bytes = 0; bytes <= (int64_t)1 << 20; bytes = bytes * 7 + 64) {
            const int64_t stride = ag__scratch_stride(bytes), n = ag__scratch_block(stride, nt);
            char *block = n > 0 ? malloc((size_t)n) : NULL;
            fine = fine && block;
            for (int t = 0; block && t < nt; t++) {
                char *at = ag__scratch_at(block, stride, t);
                fine = fine && (uintptr_t)at % 4096 == 0 && at >= block && at + bytes + (256 << 10) <= block + n;
                if (t) fine = fine && at - (ag__scratch_at(block, stride, t - 1) + bytes) >= (int64_t)256 << 10;
            }
            free(block);
        }
    ok(fine, "scatter_reduce's scratch: 1-5 threads' regions each on a page, 256 KiB apart and before the "
             "block's end");
    ok(ag__scratch_stride(INT64_MAX - 100) == -1 && ag__scratch_block(INT64_MAX / 2, 3) == -1 &&
           ag__scratch_block(INT64_MAX / 2 + 1, 2) == -1 && ag__scratch_stride(-1) == -1,
       "... sizes past int64: -1 (out of memory), not a wrapped size");
}

int main(void) {
    /* index smaller than x (and src one larger than index) along every dim but d; the last
     * dim wide enough that blocks along dims 0 and 1 split into chunks on 2 threads */
    static const int64_t xs[3] = {3, 7, 70}, is[3] = {2, 6, 67};
    for (int d = 0; d < 3; d++)
        for (int red = 0; red < 5; red++)
            for (int self = 0; self < 2; self++)
                for (int f = 0; f < 2; f++) {
                    int64_t shape[3] = {is[0], is[1], is[2]};
                    if (d != 2) shape[d] = 9; /* more places than x has along d: targets repeat */
                    check(xs, shape, 1, d, red, self, f ? AG_F64 : AG_F32);
                }
    /* index of x's shape but along d (its runs cover x: y and dx written run by run, no copy of
     * x or dy first), src of index's shape (every element of dsrc written by the walk) */
    for (int d = 0; d < 3; d++)
        for (int red = 0; red < 5; red++)
            for (int self = 0; self < 2; self++)
                for (int f = 0; f < 2; f++) {
                    int64_t shape[3] = {xs[0], xs[1], xs[2]};
                    shape[d] = d == 2 ? 90 : 9;
                    check(xs, shape, 0, d, red, self, f ? AG_F64 : AG_F32);
                }
    /* a box of more than 1 MiB of scratch (2100 targets a lane, 68 lanes a run on 1 thread): sum,
     * prod and mean split the block into narrower runs (SCRATCH_CAP), 2 threads into others:
     * the same bits */
    static const int64_t wide[3] = {1, 2100, 272};
    for (int self = 0; self < 2; self++) {
        check(wide, wide, 0, 1, AG_SCATTER_SUM, self, AG_F32);
        check(wide, wide, 0, 1, AG_SCATTER_PROD, self, AG_F64);
    }
    check(wide, wide, 0, 1, AG_SCATTER_MEAN, true, AG_F32);
    check_empty((const int64_t[]){4, 0, 6}, 0);
    check_empty((const int64_t[]){0, 5, 6}, 0);
    check_empty((const int64_t[]){4, 5, 0}, 1);
    for (int d = 0; d < 3; d++)
        for (int f = 0; f < 2; f++) {
            check_index_add(xs, d, 11, 1, f ? AG_F64 : AG_F32);
            check_index_add(xs, d, 11, 0.5, f ? AG_F64 : AG_F32);
            check_index_add(xs, d, 0, 1, f ? AG_F64 : AG_F32); /* an empty index: y = x */
        }
    for (int d = 0; d < 3; d++)
        for (int f = 0; f < 2; f++) check_index_run(d, f ? AG_F64 : AG_F32);
    for (int d = 0; d < 3; d++) check_scatter_add_chunks(d);
    check_scatter_lanes();
    check_self_nan_bits();
    check_negative_dims();
    check_scratch_apart();
    ok(ag_live_tensors() == 0, "no tensor leaked");
    return tap_done();
}

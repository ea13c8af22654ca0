/*
 * test_gemm_paths.c - every path ops/matmul.c picks for a float32 product gives the
 * float64 product of the same numbers, within float tolerance: linear and matmul
 * with 1 to 8 rows (dnnl_sgemm reading the transposed operand in place) and with
 * more (the matmul primitive), with every layout of each operand (contiguous,
 * transposed view), with and without bias, forward and both gradients; batched
 * matmul split over the threads ([32,128,64]x[32,64,128], and products of 128³
 * multiply-adds, transposed operands, a broadcast batch), against the same product
 * on one thread and in float64; batched matmul's db = aᵀ·dy against dnnl_sgemm('T', 'N') item by
 * item, bit for bit; linear's dx and dW at once on two threads against one
 * thread (dW by dnnl_sgemm from 128 rows, at once or in turn), dx by halves of W's rows against
 * the two halves' sum and within γ_n of float64; linear's lone dW (x needing no gradient) on two threads,
 * by halves of its rows below 128 rows, against one thread bit for bit and float64; linear's float32 dW
 * with 64 and 127 rows by the
 * matmul primitive and with 128 and 256 by dnnl_sgemm('T', 'N') (the primitives made, the bits); linear with 9 to 64 rows (computed as (W·xᵀ)ᵀ) against the primitive's x·Wᵀ bit for
 * bit; linear of one row on one thread (computed as two) against its row in a batch of two bit for bit;
 * linear_relu's adjoint in place over dy against its own buffer, bit for bit; linear_relu's bias gradient
 * summed by fixed chunks of rows (the chunks' bits, the same on 1 and 2 threads); and that training steps
 * of an MLP make no oneDNN primitive once the first steps made theirs.
 */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include "agrad/agrad.h"
#include "core/internal.h"
#include "core/dnnl_cache.h"
#include "core/parallel.h"
#include "ops/matmul.h"
#include "tap.h"

/* max |got - want| / (1 + max |want|); got float32, want float64. */
static double rel_err(ag_tensor *got, ag_tensor *want) {
    ag_tensor *d = ag_max(ag_abs(ag_sub(ag_to_dtype(got, AG_F64), want)));
    return ag_item(d) / (1 + ag_item(ag_max(ag_abs(want))));
}

/* A [r, c] tensor of randn values; transposed: a contiguous [c, r] tensor viewed as [r, c]. */
static ag_tensor *mat(int64_t r, int64_t c, bool transposed) {
    if (!transposed) return ag_randn(AG_SHAPE(r, c), AG_F32);
    return ag_transpose(ag_randn(AG_SHAPE(c, r), AG_F32), 0, 1);
}

static ag_tensor *leaf64(ag_tensor *t) { return ag_requires_grad_(ag_detach(ag_to_dtype(t, AG_F64)), true); }

static void check_linear(int64_t m, int64_t k, int64_t n, bool xt, bool wt, bool bias) {
    ag_scope_begin();
    ag_tensor *x = ag_requires_grad_(mat(m, k, xt), true), *w = ag_requires_grad_(mat(n, k, wt), true);
    ag_tensor *b = bias ? ag_requires_grad_(ag_randn(AG_SHAPE(n), AG_F32), true) : NULL;
    ag_tensor *x64 = leaf64(x), *w64 = leaf64(w), *b64 = bias ? leaf64(b) : NULL;
    ag_tensor *g = ag_randn(AG_SHAPE(m, n), AG_F32);
    ag_tensor *y = ag_linear(x, w, b), *y64 = ag_linear(x64, w64, b64);
    bool fine = y && y64 && ag_backward_ex(y, g, false) == AG_OK &&
                ag_backward_ex(y64, ag_to_dtype(g, AG_F64), false) == AG_OK;
    double tol = 2e-6 * sqrt((double)(k > m ? k : m)) + 1e-6;
    double ey = fine ? rel_err(y, y64) : 1, ex = fine ? rel_err(ag_grad(x), ag_grad(x64)) : 1;
    double ew = fine ? rel_err(ag_grad(w), ag_grad(w64)) : 1;
    ok(ey <= tol && ex <= tol && ew <= tol, "linear [%lld,%lld]%s x [%lld,%lld]%s%s: y %.1e, dx %.1e, dw %.1e",
       (long long)m, (long long)k, xt ? "(view of its transpose)" : "", (long long)n, (long long)k,
       wt ? "(view of its transpose)" : "", bias ? " + bias" : "", ey, ex, ew);
    ag_scope_end();
}

static void check_matmul(int64_t m, int64_t k, int64_t n, bool at, bool bt) {
    ag_scope_begin();
    ag_tensor *a = mat(m, k, at), *b = mat(k, n, bt);
    ag_tensor *y = ag_matmul(a, b), *y64 = ag_matmul(ag_to_dtype(a, AG_F64), ag_to_dtype(b, AG_F64));
    double e = y && y64 ? rel_err(y, y64) : 1;
    ok(e <= 2e-6 * sqrt((double)k) + 1e-6, "matmul [%lld,%lld]%s x [%lld,%lld]%s: %.1e", (long long)m, (long long)k,
       at ? "ᵀ-view" : "", (long long)k, (long long)n, bt ? "ᵀ-view" : "", e);
    ag_scope_end();
}

/* Batched [B,M,K]x[B,K,N] (b2d: b is [K,N], broadcast), operands optionally transposed views. */
static void check_batched(int64_t B, int64_t M, int64_t K, int64_t N, bool at, bool bt, bool b2d) {
    ag_scope_begin();
    ag_tensor *a = at ? ag_transpose(ag_randn(AG_SHAPE(B, K, M), AG_F32), 1, 2) : ag_randn(AG_SHAPE(B, M, K), AG_F32);
    ag_tensor *b = b2d ? mat(K, N, bt)
                       : bt ? ag_transpose(ag_randn(AG_SHAPE(B, N, K), AG_F32), 1, 2) : ag_randn(AG_SHAPE(B, K, N), AG_F32);
    ag_tensor *y = ag_matmul(a, b);
    int before = ag_get_num_threads();
    ag_set_num_threads(1);
    ag_tensor *y1 = ag_matmul(a, b);
    ag_set_num_threads(before);
    ag_tensor *y64 = ag_matmul(ag_to_dtype(a, AG_F64), ag_to_dtype(b, AG_F64));
    double e = y && y64 ? rel_err(y, y64) : 1;
    double e1 = y && y1 ? rel_err(y, ag_to_dtype(y1, AG_F64)) : 1;
    ok(e <= 2e-6 * sqrt((double)K) + 1e-6 && e1 == 0,
       "batched matmul [%lld,%lld,%lld]%s x %s%s on %d threads: %.1e from float64, %.1e from one thread", (long long)B,
       (long long)M, (long long)K, at ? "ᵀ-view" : "", b2d ? "[K,N]" : "[B,K,N]", bt ? "ᵀ-view" : "", before, e, e1);
    ag_scope_end();
}

/* linear's dx = dy·W on two threads by halves of W's rows (ops/matmul.c linear_halves), from dy [m, n]
 * and W [n, k] contiguous: dy[:, :h]·W[:h] + dy[:, h:]·W[h:] (h = n / 2), each by dnnl_sgemm on one
 * thread, into want; false if oneDNN failed. */
static bool dx_by_halves(const float *dy, const float *w, int64_t m, int64_t k, int64_t n, float *want) {
    const int64_t h = n / 2;
    float *p1 = malloc(sizeof(float) * (size_t)(m * k));
    bool fine = p1 && ag__sgemm_1t(false, false, m, k, h, dy, n, w, k, false, want, k) &&
                ag__sgemm_1t(false, false, m, k, n - h, dy + h, n, w + h * k, k, false, p1, k);
    for (int64_t i = 0; fine && i < m * k; i++) want[i] += p1[i];
    free(p1);
    return fine;
}

/* Whether |got - want| <= γ_n·bound elementwise (γ_n = n·u / (1 - n·u), u = 2^-24: the float32 error
 * bound of an n-term dot product in any order, bound = Σ|a||b| in float64), got float32, want and
 * bound float64 of got's shape. */
static bool within_gamma(ag_tensor *got, ag_tensor *want, ag_tensor *bound, int64_t n) {
    const double u = ldexp(1, -24), gamma = (double)n * u / (1 - (double)n * u);
    ag_tensor *got64 = ag_contiguous(ag_to_dtype(got, AG_F64));
    const double *g = ag_data(got64), *w = ag_data(want), *b = ag_data(bound);
    for (int64_t i = 0; i < ag_numel(got); i++)
        if (!(fabs(g[i] - w[i]) <= gamma * b[i])) return false;
    return true;
}

/* A linear layer's weight W [n, k] needing its gradient, drawn from the generator: contiguous, or (wt)
 * a transposed view of a [k, n] tensor.  Owned by the caller. */
static ag_tensor *linear_weight(int64_t k, int64_t n, bool wt) {
    ag_tensor *base = ag_randn(wt ? AG_SHAPE(k, n) : AG_SHAPE(n, k), AG_F32);
    ag_tensor *w = ag_requires_grad_(wt ? ag_transpose(base, 0, 1) : ag_retain(base), true);
    ag_release(base);
    return w;
}

/* dx and dW of linear [m, k]·([n, k])ᵀ (wt: W a transposed view of a [k, n] tensor), from a fixed dy:
 * on two threads (where the two products run at once, one per thread, or in turn, each on both) they
 * are the bits of one thread, but dx by halves of W's rows (ag__linear_by_halves) the bits of
 * dx_by_halves (W contiguous); each within γ of float64 (dx's n terms, dW's m). */
static void check_concurrent_adjoint(int64_t m, int64_t k, int64_t n, bool wt) {
    ag_tensor *g[2][2];
    ag_manual_seed(9);
    ag_tensor *x = ag_requires_grad_(ag_randn(AG_SHAPE(m, k), AG_F32), true), *dy = ag_randn(AG_SHAPE(m, n), AG_F32);
    ag_tensor *w = linear_weight(k, n, wt);
    bool fine = true, halves = false;
    for (int t = 0; t < 2; t++) {
        ag_set_num_threads(t ? 2 : 1);
        if (t) halves = ag__linear_by_halves(m, k, n);
        ag_zero_grad(x), ag_zero_grad(w);
        ag_scope_begin();
        fine = fine && ag_backward_ex(ag_linear(x, w, NULL), dy, false) == AG_OK;
        ag_scope_end();
        g[t][0] = ag_retain(ag_grad(x)), g[t][1] = ag_retain(ag_grad(w));
    }
    ag_scope_begin();
    ag_tensor *want_dx = ag_empty(AG_SHAPE(m, k), AG_F32), *wc = ag_contiguous(w);
    if (halves) fine = fine && dx_by_halves(ag_data(dy), ag_data(wc), m, k, n, ag_data(want_dx));
    else memcpy(ag_data(want_dx), ag_data(g[0][0]), (size_t)(m * k) * 4);
    ag_tensor *x64 = leaf64(x), *w64 = leaf64(w), *dy64 = ag_to_dtype(dy, AG_F64);
    fine = fine && ag_backward_ex(ag_linear(x64, w64, NULL), dy64, false) == AG_OK;
    ag_tensor *bx = ag_matmul(ag_abs(dy64), ag_abs(ag_to_dtype(w, AG_F64)));                  /* Σ|dy||W| */
    ag_tensor *bw = ag_matmul(ag_transpose(ag_abs(dy64), 0, 1), ag_abs(ag_to_dtype(x, AG_F64))); /* Σ|dy||x| */
    /* (a transposed W takes the matmul primitive for each half, whose bits the bound covers) */
    const bool bits = (wt || memcmp(ag_data(want_dx), ag_data(g[1][0]), (size_t)(m * k) * 4) == 0) &&
                      memcmp(ag_data(g[0][1]), ag_data(g[1][1]), (size_t)(n * k) * 4) == 0;
    ok(fine && bits && within_gamma(g[0][0], ag_grad(x64), bx, n) && within_gamma(g[1][0], ag_grad(x64), bx, n) &&
           within_gamma(g[1][1], ag_contiguous(ag_grad(w64)), bw, m),
       "linear [%lld, %lld]·[%lld, %lld]ᵀ%s: dx and dW on 2 threads are the bits of %s, within γ of float64",
       (long long)m, (long long)k, (long long)n, (long long)k, wt ? " (W a transposed view)" : "",
       halves ? "1 thread's dW and dx by halves of W's rows" : "1 thread");
    ag_scope_end();
    for (int t = 0; t < 2; t++) ag_release(g[t][0]), ag_release(g[t][1]);
    ag_release(x), ag_release(w), ag_release(dy);
    ag_set_num_threads(2);
}

/* linear [m, k]·([n, k])ᵀ with x needing no gradient (a first layer): its lone dW = dyᵀ·x on two threads,
 * by halves of dW's rows from dy's halves copied dense where ag__linear_by_halves holds below 128 rows
 * (ops/matmul.c dw_halves), else one product on both threads, is the bits of one thread's whole product
 * (each row the same sum over the m batch rows in order) and within γ_m·Σ|dy||x| of float64. */
static void check_lone_dw(int64_t m, int64_t k, int64_t n, bool wt) {
    ag_tensor *g[2];
    ag_manual_seed(13);
    ag_tensor *x = ag_randn(AG_SHAPE(m, k), AG_F32), *dy = ag_randn(AG_SHAPE(m, n), AG_F32);
    ag_tensor *w = linear_weight(k, n, wt);
    bool fine = true, halves = false;
    for (int t = 0; t < 2; t++) {
        ag_set_num_threads(t ? 2 : 1);
        if (t) halves = ag__linear_by_halves(m, k, n) && m < 128;
        ag_zero_grad(w);
        ag_scope_begin();
        fine = fine && ag_backward_ex(ag_linear(x, w, NULL), dy, false) == AG_OK;
        ag_scope_end();
        g[t] = ag_retain(ag_grad(w));
    }
    ag_scope_begin();
    ag_tensor *w64 = leaf64(w), *dy64 = ag_to_dtype(dy, AG_F64);
    fine = fine && ag_backward_ex(ag_linear(ag_to_dtype(x, AG_F64), w64, NULL), dy64, false) == AG_OK;
    ag_tensor *bw = ag_matmul(ag_transpose(ag_abs(dy64), 0, 1), ag_abs(ag_to_dtype(x, AG_F64))); /* Σ|dy||x| */
    ag_tensor *g0 = ag_contiguous(g[0]), *g1 = ag_contiguous(g[1]);
    ok(fine && g0 && g1 && memcmp(ag_data(g0), ag_data(g1), (size_t)(n * k) * 4) == 0 &&
           within_gamma(g1, ag_contiguous(ag_grad(w64)), bw, m),
       "linear [%lld, %lld]·[%lld, %lld]ᵀ%s, x without a gradient: dW on 2 threads%s is the bits of 1 thread, "
       "within γ of float64",
       (long long)m, (long long)k, (long long)n, (long long)k, wt ? " (W a transposed view)" : "",
       halves ? " (by halves of its rows)" : "");
    ag_scope_end();
    for (int t = 0; t < 2; t++) ag_release(g[t]);
    ag_release(x), ag_release(w), ag_release(dy);
    ag_set_num_threads(2);
}

/* linear [m, k]·([n, k])ᵀ's dW = dyᵀ·x ([n, m]·[m, k]) takes dnnl_sgemm('T', 'N') from 128 rows and the
 * matmul primitive below (ops/matmul.c dw_by_sgemm; by_sgemm says which): the first backward at a
 * shape no other check uses makes one oneDNN primitive for the primitive's path and none for sgemm's
 * (the forward's and dx's products are made or not alike on both), and dW on one and two threads is
 * the bits of that path called directly on one thread.  (On the AMD Zen 5 host the two kernels give
 * the same bits at these shapes, so the primitives made tell the paths apart.) */
static void check_dw_path(int64_t m, int64_t k, int64_t n, bool by_sgemm) {
    if (!ag_onednn_enabled()) return; /* the portable loop: no path to tell */
    ag_scope_begin();
    ag_manual_seed(11);
    ag_tensor *x = ag_randn(AG_SHAPE(m, k), AG_F32), *dy = ag_randn(AG_SHAPE(m, n), AG_F32);
    ag_tensor *want = ag_zeros(AG_SHAPE(n, k), AG_F32), *gw[2];
    bool fine = true;
    long made = -1;
    for (int t = 0; t < 2; t++) {
        ag_set_num_threads(t ? 2 : 1);
        ag_tensor *w = ag_requires_grad_(ag_randn(AG_SHAPE(n, k), AG_F32), true), *y = ag_linear(x, w, NULL);
        const long before = ag__dnnl_primitives_created();
        fine = fine && y && ag_backward_ex(y, dy, false) == AG_OK;
        if (t == 0) made = ag__dnnl_primitives_created() - before;
        gw[t] = ag_grad(w);
    }
    /* the path called directly after the backward, which would otherwise find its primitive made */
    fine = fine && (by_sgemm ? ag__sgemm_1t(true, false, n, k, m, ag_data(dy), n, ag_data(x), k, false, ag_data(want), k)
                             : ag__dnnl_matmul(n, m, k, ag_data(dy), 1, n, ag_data(x), k, 1, ag_data(want), k, NULL, 1));
    const size_t bytes = (size_t)(n * k) * 4;
    ok(fine && made == (by_sgemm ? 0 : 1) && gw[0] && gw[1] && memcmp(ag_data(gw[0]), ag_data(want), bytes) == 0 &&
           memcmp(ag_data(gw[1]), ag_data(want), bytes) == 0,
       "linear [%lld, %lld]·[%lld, %lld]ᵀ: dW by %s (%ld primitives made by the first backward), its bits on 1 and "
       "2 threads", (long long)m, (long long)k, (long long)n, (long long)k,
       by_sgemm ? "dnnl_sgemm('T', 'N')" : "the matmul primitive", made);
    ag_scope_end();
    ag_set_num_threads(2);
}

/* A matrix-vector product with a transposed operand (matmul [m, m]·[m]'s db = aᵀ·dy, and aᵀ·v forward) runs as
 * dnnl_sgemm('T', 'N') with one column, oneDNN's matrix-vector kernel (ops/matmul.c gemm_by: the matmul
 * primitive took 20 us for it at m = 256, sgemm 1): the first backward at a shape no other check uses makes no
 * oneDNN primitive (the forward's product is sgemm's too), db and aᵀ·v are the bits of ag__sgemm_1t on one
 * thread, on 1 and 2 threads, and near float64.  (Session 20: the bits of the matrix-vector kernel, where
 * the primitive's were within the same bound.) */
static void check_matvec_t(int64_t m) {
    if (!ag_onednn_enabled()) return; /* the portable loop: no path to tell */
    ag_scope_begin();
    ag_manual_seed(13);
    ag_tensor *a = ag_requires_grad_(ag_randn(AG_SHAPE(m, m), AG_F32), true), *v = ag_randn(AG_SHAPE(m), AG_F32);
    ag_tensor *b = ag_requires_grad_(ag_randn(AG_SHAPE(m), AG_F32), true), *dy = ag_randn(AG_SHAPE(m), AG_F32);
    float *want = ag__alloc_n(2 * m, sizeof(float));
    bool fine = want != NULL;
    long made = -1;
    ag_tensor *db[2] = {NULL, NULL}, *yt[2] = {NULL, NULL};
    for (int t = 0; fine && t < 2; t++) {
        ag_set_num_threads(t ? 2 : 1);
        ag_zero_grad(a), ag_zero_grad(b);
        const long before = ag__dnnl_primitives_created();
        fine = ag_backward_ex(ag_matmul(a, b), dy, false) == AG_OK && (db[t] = ag_clone(ag_grad(b))) &&
               (yt[t] = ag_matmul(ag_transpose(ag_detach(a), 0, 1), v));
        if (t == 0) made = ag__dnnl_primitives_created() - before;
    }
    fine = fine && ag__sgemm_1t(true, false, m, 1, m, ag_data(a), m, ag_data(dy), 1, false, want, 1) &&
           ag__sgemm_1t(true, false, m, 1, m, ag_data(a), m, ag_data(v), 1, false, want + m, 1);
    ag_tensor *a64 = leaf64(a), *b64 = leaf64(b);
    fine = fine && ag_backward_ex(ag_matmul(a64, b64), ag_to_dtype(dy, AG_F64), false) == AG_OK;
    const double tol = 2e-6 * sqrt((double)m) + 1e-6;
    const size_t bytes = (size_t)m * 4;
    ok(fine && made == 0 && memcmp(ag_data(db[0]), want, bytes) == 0 && memcmp(ag_data(db[1]), want, bytes) == 0 &&
           memcmp(ag_data(yt[0]), want + m, bytes) == 0 && memcmp(ag_data(yt[1]), want + m, bytes) == 0 &&
           rel_err(db[0], ag_grad(b64)) < tol && rel_err(ag_grad(a), ag_grad(a64)) < tol,
       "matmul [%lld, %lld]·[%lld]: db = aᵀ·dy and aᵀ·v by dnnl_sgemm('T', 'N') (%ld primitives made), its bits on 1 "
       "and 2 threads, da and db near float64", (long long)m, (long long)m, (long long)m, made);
    ag__free(want);
    ag_scope_end();
    ag_set_num_threads(2);
}

/* linear [m, k]·([n, k])ᵀ + b with 9 to 64 rows runs as (W·xᵀ)ᵀ (ops/matmul.c gemm_swapped): the bits of
 * the matmul primitive on x·Wᵀ then + b, on one thread and on two, and linear_relu's are relu's of them
 * (with oneDNN off, where the portable loop runs, the same bits on 1 and 2 threads and relu's). */
static void check_swapped(int64_t m, int64_t k, int64_t n) {
    ag_scope_begin();
    ag_tensor *x = ag_randn(AG_SHAPE(m, k), AG_F32), *w = ag_randn(AG_SHAPE(n, k), AG_F32);
    ag_tensor *b = ag_randn(AG_SHAPE(n), AG_F32);
    ag_tensor *want = ag_add(ag_matmul(x, ag_transpose(w, 0, 1)), b), *y[2], *r;
    for (int t = 0; t < 2; t++) {
        ag_set_num_threads(t ? 2 : 1);
        y[t] = ag_linear(x, w, b);
    }
    r = ag_linear_relu(x, w, b);
    ag_tensor *want_r = y[1] ? ag_relu(y[1]) : NULL;
    const size_t bytes = (size_t)(m * n) * 4;
    if (!ag_onednn_enabled()) want = y[0]; /* the portable loop adds the bias first: only 1 = 2 threads holds */
    ok(want && y[0] && y[1] && r && want_r && memcmp(ag_data(y[0]), ag_data(want), bytes) == 0 &&
           memcmp(ag_data(y[1]), ag_data(want), bytes) == 0 && memcmp(ag_data(r), ag_data(want_r), bytes) == 0,
       "linear [%lld, %lld]·[%lld, %lld]ᵀ + b as (W·xᵀ)ᵀ: the bits of matmul then add on 1 and 2 threads, "
       "linear_relu those of relu", (long long)m, (long long)k, (long long)n, (long long)k);
    ag_scope_end();
    ag_set_num_threads(2);
}

/* linear [1, k]·([n, k])ᵀ + b on one thread runs as the first row of a two-row dnnl_sgemm (ops/matmul.c
 * sgemm_one_row): the bits of that sample's row in a batch of two (a sample's output does not depend on
 * whether it came alone), and matmul of one row by a transposed view the same bits again. */
static void check_one_row(int64_t k, int64_t n) {
    ag_scope_begin();
    ag_set_num_threads(1);
    ag_tensor *x2 = ag_randn(AG_SHAPE(2, k), AG_F32), *w = ag_randn(AG_SHAPE(n, k), AG_F32);
    ag_tensor *b = ag_randn(AG_SHAPE(n), AG_F32), *x = ag_contiguous(ag_narrow(x2, 0, 0, 1));
    ag_tensor *want = ag_linear(x2, w, b), *y = ag_linear(x, w, b);
    ag_tensor *mm = ag_matmul(x, ag_transpose(w, 0, 1)), *mm2 = ag_matmul(x2, ag_transpose(w, 0, 1));
    const size_t bytes = (size_t)n * 4;
    ok(want && y && mm && mm2 && memcmp(ag_data(y), ag_data(want), bytes) == 0 &&
           memcmp(ag_data(mm), ag_data(mm2), bytes) == 0,
       "linear [1, %lld]·[%lld, %lld]ᵀ + b on one thread: the bits of its row in a batch of two, matmul's too",
       (long long)k, (long long)n, (long long)k);
    ag_scope_end();
    ag_set_num_threads(2);
}

/* linear_relu's adjoint writes dz over dy in place when only the engine holds dy (ag__gout_writable: here
 * mul's gradient of sum(relu(x·Wᵀ + b)·g), which is g's bits): dx, dW and db are the bits of the adjoint
 * making dz in a buffer of its own (dy the seed g, which backward borrows from the caller), and g is
 * left as it was. */
static void check_relu_in_place(int64_t m, int64_t k, int64_t n) {
    ag_scope_begin();
    ag_tensor *in[3] = {ag_requires_grad_(ag_randn(AG_SHAPE(m, k), AG_F32), true),
                        ag_requires_grad_(ag_randn(AG_SHAPE(n, k), AG_F32), true),
                        ag_requires_grad_(ag_randn(AG_SHAPE(n), AG_F32), true)};
    ag_tensor *g = ag_randn(AG_SHAPE(m, n), AG_F32), *g0 = ag_clone(g), *held[3] = {NULL};
    ag_tensor *y = ag_linear_relu(in[0], in[1], in[2]);
    bool fine = y && ag_backward_ex(y, g, false) == AG_OK; /* the seed borrows g: not written */
    for (int i = 0; fine && i < 3; i++) {
        fine = (held[i] = ag_clone(ag_grad(in[i]))) != NULL;
        ag_zero_grad(in[i]);
    }
    ag_tensor *loss = fine ? ag_sum(ag_mul(ag_linear_relu(in[0], in[1], in[2]), g)) : NULL;
    fine = loss && ag_backward(loss) == AG_OK;
    const int64_t sizes[3] = {m * k, n * k, n};
    for (int i = 0; fine && i < 3; i++)
        fine = ag_grad(in[i]) && memcmp(ag_data(held[i]), ag_data(ag_grad(in[i])), (size_t)sizes[i] * 4) == 0;
    ok(fine && memcmp(ag_data(g), ag_data(g0), (size_t)(m * n) * 4) == 0,
       "linear_relu [%lld, %lld]·[%lld, %lld]ᵀ: the adjoint with dz over dy in place gives the bits of the one "
       "with a buffer of its own, and the caller's seed is untouched", (long long)m, (long long)k, (long long)n,
       (long long)k);
    ag_scope_end();
}

/* Rows of one of linear_relu's bias-sum chunks over `rows` rows (ops/matmul.c mask_chunk_rows): 64, or
 * more (multiples of 8) to keep at most 16 chunks. */
static int64_t chunk_rows(int64_t rows) {
    const int64_t k = (rows + 15) / 16;
    return k <= 64 ? 64 : (k + 7) / 8 * 8;
}

/* linear_relu's bias gradient from 2·64 rows is summed by fixed chunks of rows (ops/matmul.c
 * relu_mask_sum_chunks: each chunk's float64 sums from 0 in row order, the partials added in chunk
 * order, rounded once): on one thread and on two the bits of that order computed here, dz (seen through
 * dx = dz·W and dW = dzᵀ·x) the same bits on both, and db within 2^-24·|Σ| + 2·rows·2^-53·Σ|dz| of the
 * float64 sum in row order.  Below 128 rows one chunk: the row order's bits. */
static void check_relu_bias_chunks(int64_t rows, int64_t cols) {
    ag_scope_begin();
    ag_tensor *x = ag_randn(AG_SHAPE(rows, 24), AG_F32), *w = ag_randn(AG_SHAPE(cols, 24), AG_F32);
    ag_tensor *b = ag_randn(AG_SHAPE(cols), AG_F32), *g = ag_randn(AG_SHAPE(rows, cols), AG_F32);
    ag_tensor *grads[2][3] = {{NULL}};
    ag_tensor *y = NULL;
    const int before = ag_get_num_threads();
    bool fine = true;
    for (int t = 0; t < 2 && fine; t++) {
        ag_set_num_threads(t + 1);
        ag_tensor *in[3] = {ag_requires_grad_(ag_clone(x), true), ag_requires_grad_(ag_clone(w), true),
                            ag_requires_grad_(ag_clone(b), true)};
        y = ag_linear_relu(in[0], in[1], in[2]);
        fine = y && ag_backward_ex(y, g, false) == AG_OK;
        for (int i = 0; fine && i < 3; i++) fine = (grads[t][i] = ag_grad(in[i])) != NULL;
    }
    ag_set_num_threads(before);
    const int64_t K = rows >= 128 ? chunk_rows(rows) : rows;
    bool bits = fine, near = fine;
    for (int i = 0; fine && i < 3; i++)
        bits = bits && memcmp(ag_data(grads[0][i]), ag_data(grads[1][i]), (size_t)ag_numel(grads[0][i]) * 4) == 0;
    const float *yv = fine ? ag_data(y) : NULL, *gv = ag_data(g), *db = fine ? ag_data(grads[0][2]) : NULL;
    for (int64_t j = 0; fine && j < cols; j++) {
        double chunked = 0, seq = 0, mag = 0;
        for (int64_t r0 = 0; r0 < rows; r0 += K) {
            double part = 0;
            for (int64_t r = r0; r < rows && r < r0 + K; r++) {
                const double v = yv[r * cols + j] <= 0 ? 0 : gv[r * cols + j];
                part += v, seq += v, mag += fabs(v);
            }
            chunked = r0 ? chunked + part : part;
        }
        bits = bits && db[j] == (float)chunked;
        near = near && fabs(db[j] - seq) <= ldexp(fabs(seq), -24) + 2 * (double)rows * ldexp(mag, -53);
    }
    ok(bits && near,
       "linear_relu [%lld, 24]·[%lld, 24]ᵀ: db by chunks of %lld rows in chunk order, bit for bit, dx, dW and db the "
       "same bits on 1 and 2 threads, db near the float64 sum in row order", (long long)rows, (long long)cols,
       (long long)K);
    ag_scope_end();
}

/* The chunks' order decides: with y = 1 everywhere, each column of dy 2^60 in row 0, 4 in rows 64-127 and
 * -2^60 in row 128 sums to 256 by 64-row chunks ((2^60 + 256) - 2^60, float64) but to 0 in row order (each
 * 4 lost against 2^60, whose float64 ulp is 256), on one thread and on two. */
static void check_relu_bias_order(void) {
    ag_scope_begin();
    const int64_t rows = 192, cols = 40;
    ag_tensor *g = ag_zeros(AG_SHAPE(rows, cols), AG_F32);
    float *gv = ag_data(g);
    for (int64_t j = 0; j < cols; j++) {
        gv[j] = 0x1p60f, gv[128 * cols + j] = -0x1p60f;
        for (int64_t r = 64; r < 128; r++) gv[r * cols + j] = 4;
    }
    const int before = ag_get_num_threads();
    bool fine = true;
    for (int t = 1; t <= 2; t++) {
        ag_set_num_threads(t);
        ag_tensor *b = ag_requires_grad_(ag_ones(AG_SHAPE(cols), AG_F32), true);
        ag_tensor *y = ag_linear_relu(ag_zeros(AG_SHAPE(rows, 8), AG_F32), ag_randn(AG_SHAPE(cols, 8), AG_F32), b);
        fine = fine && y && ag_backward_ex(y, g, false) == AG_OK && ag_grad(b);
        for (int64_t j = 0; fine && j < cols; j++) fine = ((float *)ag_data(ag_grad(b)))[j] == 256;
    }
    ag_set_num_threads(before);
    ok(fine, "linear_relu's db over 192 rows: the 64-row chunks' order (256, not the row order's 0), 1 and 2 threads");
    ag_scope_end();
}

/* matmul's db = aᵀ·dy for [batch, n, n] products at dw_by_sgemm's sizes runs as dnnl_sgemm('T', 'N'),
 * product by product (ops/matmul.c tn_by_sgemm): each item of b's gradient is the bits of
 * ag__sgemm_1t on that item, on one thread and on two (the batch split, each product on one), and
 * near float64; a's gradient (dy·bᵀ, the primitive) near float64 too.  (The primitive gave these
 * bits as well at these sizes: check_db_makes_no_primitive tells the paths apart.) */
static void check_batched_db_sgemm(int64_t batch, int64_t n) {
    ag_scope_begin();
    ag_tensor *a = ag_requires_grad_(ag_randn(AG_SHAPE(batch, n, n), AG_F32), true);
    ag_tensor *b = ag_requires_grad_(ag_randn(AG_SHAPE(batch, n, n), AG_F32), true);
    ag_tensor *g = ag_randn(AG_SHAPE(batch, n, n), AG_F32), *db[2] = {NULL, NULL}, *da = NULL;
    bool fine = true;
    for (int t = 0; fine && t < 2; t++) {
        ag_set_num_threads(t ? 2 : 1);
        ag_zero_grad(a), ag_zero_grad(b);
        fine = ag_backward_ex(ag_matmul(a, b), g, false) == AG_OK && (db[t] = ag_clone(ag_grad(b))) &&
               (da = ag_clone(ag_grad(a)));
    }
    float *want = ag__alloc_n(batch * n * n, sizeof(float));
    const float *pa = ag_data(a), *pg = ag_data(g);
    for (int64_t i = 0; fine && i < batch; i++)
        fine = want && ag__sgemm_1t(true, false, n, n, n, pa + i * n * n, n, pg + i * n * n, n, false, want + i * n * n, n);
    ag_tensor *a64 = leaf64(a), *b64 = leaf64(b);
    fine = fine && ag_backward_ex(ag_matmul(a64, b64), ag_to_dtype(g, AG_F64), false) == AG_OK;
    const double tol = 2e-6 * sqrt((double)n) + 1e-6;
    const size_t bytes = (size_t)(batch * n * n) * 4;
    ok(fine && memcmp(ag_data(db[0]), want, bytes) == 0 && memcmp(ag_data(db[1]), want, bytes) == 0 &&
           rel_err(db[0], ag_grad(b64)) < tol && rel_err(da, ag_grad(a64)) < tol,
       "matmul [%lld, %lld, %lld]²: db = aᵀ·dy is dnnl_sgemm('T', 'N')'s bits item by item on 1 and 2 threads, "
       "da and db near float64", (long long)batch, (long long)n, (long long)n);
    ag__free(want);
    ag_scope_end();
    ag_set_num_threads(2);
}

/* matmul [2, m, k]·[2, k, n] with only b wanting its gradient, at a shape no other check uses: the
 * backward (db = aᵀ·dy: [k, m]·[m, n], dw_by_sgemm's sizes: 128 <= m <= 1024, 64 <= k <= n) runs as
 * dnnl_sgemm and makes no oneDNN primitive (the matmul primitive made one for the new shape), on 1 and 2
 * threads (m differs between them, so the one-thread call's cache holds nothing for the second). */
static void check_db_makes_no_primitive(int64_t m, int64_t k, int64_t n) {
    for (int t = 0; t < 2; t++) {
        ag_scope_begin();
        ag_set_num_threads(t ? 2 : 1);
        ag_tensor *a = ag_randn(AG_SHAPE(2, m + t, k), AG_F32);
        ag_tensor *b = ag_requires_grad_(ag_randn(AG_SHAPE(2, k, n), AG_F32), true);
        ag_tensor *y = ag_matmul(a, b), *g = ag_randn(AG_SHAPE(2, m + t, n), AG_F32);
        const long before = ag__dnnl_primitives_created();
        bool fine = y && ag_backward_ex(y, g, false) == AG_OK && ag_grad(b);
        const long made = ag__dnnl_primitives_created() - before;
        ok(fine && made == 0, "matmul [2, %lld, %lld]·[2, %lld, %lld] on %d thread(s): db = aᵀ·dy makes no oneDNN "
           "primitive (%ld made)", (long long)(m + t), (long long)k, (long long)k, (long long)n, t + 1, made);
        ag_scope_end();
    }
    ag_set_num_threads(2);
}

/* ---- no primitive made per call ---------------------------------------------------------------- */
/* One training step of net on x: forward (under bf16 autocast if bf16), cross-entropy, backward,
 * optimizer step. */
static bool train_step(ag_module *net, ag_optimizer *opt, ag_tensor *x, ag_tensor *target, bool bf16) {
    ag_scope_begin();
    ag_optimizer_zero_grad(opt);
    if (bf16) ag_autocast_begin(AG_AUTOCAST_BF16, true);
    ag_tensor *loss = ag_cross_entropy(ag_module_forward(net, x), target, NULL);
    if (bf16) ag_autocast_end();
    bool fine = loss && ag_backward(loss) == AG_OK && ag_optimizer_step(opt) == AG_OK;
    ag_scope_end();
    return fine;
}

/* The MLPs of bench_steps, scaled down (Linear, BatchNorm1d, ReLU, Dropout, Linear; AdamW), at a
 * batch that takes the primitives (32) and one that takes sgemm (4), float32 and bf16: after the
 * first steps made their primitives, further steps make none (each shape's primitive is cached). */
static void check_no_primitive_per_step(void) {
    for (int v = 0; v < 4; v++) {
        const int64_t batch = v & 1 ? 4 : 32;
        const bool bf16 = v & 2;
        ag_manual_seed(3);
        ag_module *net = AG_SEQUENTIAL(ag_nn_linear(96, 64, true), ag_nn_batch_norm1d(64, 1e-5, 0.1, true, true),
                                       ag_nn_relu(), ag_nn_dropout(0.1), ag_nn_linear(64, 10, true));
        ag_tensor *params[16], *x = ag_randn(AG_SHAPE(batch, 96), AG_F32), *target = ag_zeros(AG_SHAPE(batch), AG_I64);
        ag_adamw_options o = ag_adamw_defaults();
        ag_optimizer *opt = net ? ag_adamw_new(params, ag_module_parameters(net, params, 16), &o) : NULL;
        bool fine = opt && train_step(net, opt, x, target, bf16) && train_step(net, opt, x, target, bf16);
        const long before = ag__dnnl_primitives_created();
        for (int k = 0; fine && k < 3; k++) fine = train_step(net, opt, x, target, bf16);
        const long made = ag__dnnl_primitives_created() - before;
        ok(fine && made == 0, "batch %lld%s: 3 more training steps make no oneDNN primitive (%ld made)",
           (long long)batch, bf16 ? ", bf16" : "", made);
        ag_optimizer_free(opt);
        ag_module_free(net);
        ag_release(x);
        ag_release(target);
    }
}

int main(void) {
    ag_manual_seed(7);
    static const int64_t kn[][2] = {{784, 256}, {256, 10}, {13, 7}};
    static const int64_t rows[] = {1, 2, 8, 9, 16, 64};
    for (size_t s = 0; s < sizeof kn / sizeof kn[0]; s++)
        for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++)
            for (int v = 0; v < 8; v++) check_linear(rows[r], kn[s][0], kn[s][1], v & 1, v & 2, v & 4);
    for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++)
        for (int v = 0; v < 4; v++) check_matmul(rows[r], 96, 40, v & 1, v & 2);
    if (ag_get_num_threads() < 2) ag_set_num_threads(2); /* the split runs even on one CPU */
    for (int v = 0; v < 8; v++) check_batched(32, 128, 64, 128, v & 1, v & 2, v & 4);
    check_batched(3, 5, 4, 6, false, true, false); /* too small to split */
    /* products of 2^21 multiply-adds (threaded each on their own), split over the batch when it
     * divides evenly over the threads or is at least 4 per thread */
    int nt = ag_get_num_threads();
    for (int v = 0; v < 4; v++) check_batched(2 * nt, 128, 128, 128, v & 1, v & 2, false);
    check_batched(4 * nt + 1, 128, 128, 128, false, false, true);
    check_batched_db_sgemm(8, 128); /* einsum_bmm's products */
    check_batched_db_sgemm(3, 64);
    if (ag_onednn_enabled()) check_db_makes_no_primitive(136, 80, 88);
    check_concurrent_adjoint(256, 512, 10, false);  /* bench_steps' mlp_bn_dropout output layer: 1.3M each */
    check_concurrent_adjoint(64, 256, 96, false);   /* 1.6M each, the matmul primitive (W too small for halves) */
    check_concurrent_adjoint(4, 256, 96, false);    /* sgemm for dx (4 rows) */
    check_concurrent_adjoint(64, 512, 512, false);  /* bench_steps' mlp_512_b64: 16.8M each, by halves on 2 threads */
    check_concurrent_adjoint(64, 512, 512, true);   /* W a transposed view: its halves strided */
    check_concurrent_adjoint(64, 400, 331, false);  /* by halves of 165 and 166 rows */
    check_concurrent_adjoint(64, 400, 331, true);
    check_concurrent_adjoint(128, 512, 512, false); /* dW by dnnl_sgemm('T', 'N') (dw_by_sgemm), by halves */
    check_concurrent_adjoint(256, 512, 512, false); /* at once: more rows than the halves take */
    check_concurrent_adjoint(256, 1024, 1024, false); /* mlp_1024_b256: 2^28 each, in turn on 2 threads, dW by sgemm */
    check_lone_dw(64, 512, 512, false);  /* bench_steps' mlp_512_b64's first layer: by halves of dW's rows */
    check_lone_dw(64, 512, 512, true);   /* W a transposed view (its gradient contiguous all the same) */
    check_lone_dw(64, 400, 331, false);  /* halves of 165 and 166 rows */
    check_lone_dw(127, 400, 331, false); /* the most rows the primitive takes dW at */
    check_lone_dw(128, 512, 512, false); /* dW by dnnl_sgemm('T', 'N'): one product on both threads */
    check_lone_dw(64, 256, 96, false);   /* W too small for halves */
    check_dw_path(64, 520, 512, false); /* bench_steps' mlp_512_b64's shape, but for in (a shape of its own) */
    check_dw_path(127, 520, 512, false);
    check_dw_path(128, 520, 512, true);
    check_dw_path(256, 792, 512, true); /* near mlp_bn_dropout's first layer */
    check_matvec_t(256); /* the sweep's matvec row */
    check_matvec_t(203);
    check_matvec_t(1030); /* 2 threads where the machine has them */
    check_swapped(64, 512, 512); /* bench_steps' mlp_512_b64 */
    check_swapped(9, 784, 256);
    check_swapped(33, 100, 70);
    check_one_row(784, 256); /* bench_steps' mlp_infer_b1 */
    check_one_row(512, 512);
    check_one_row(100, 300);
    check_relu_in_place(64, 96, 80);
    check_relu_in_place(1024, 256, 1024); /* the Transformer's feed-forward: the mask split over the threads */
    check_relu_bias_chunks(1024, 256); /* bench_steps' mlp_784_256_10: 16 chunks of 64 rows */
    check_relu_bias_chunks(4000, 37);  /* 16 chunks of 256 rows, the last short */
    check_relu_bias_chunks(200, 70);   /* 4 chunks, the last of 8 rows */
    check_relu_bias_chunks(127, 70);   /* one chunk: the row order */
    check_relu_bias_order();
    check_no_primitive_per_step();
    ok(ag_live_tensors() == 0, "no tensor leaked");
    return tap_done();
}

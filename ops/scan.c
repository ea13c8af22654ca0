/*
 * scan.c - cumulative ops along one dim: cumsum, cumprod, logcumsumexp, cummax
 * and cummin (torch.cumsum, torch.cumprod, torch.logcumsumexp, torch.cummax,
 * torch.cummin).
 *
 * A scan along dim d sees the (contiguous) input as [outer, n, inner] lanes of
 * n elements a stride `inner` apart, as the reductions of extrema.c do; its
 * result has the input's shape.  Sums and products run in float64 for float32
 * tensors too and each element is rounded once, as PyTorch's CPU kernels do.
 * A 0-d tensor is one lane of one element (dims 0 and -1); an empty tensor
 * gives an empty result.
 */
#include <float.h>
#include <math.h>
#include <omp.h>
#include <string.h>
#include "core/iter.h"
#include "core/parallel.h"
#include "core/sum.h"
#include "autograd/tape.h"
#include "ops/jvp.h"
#include "ops/extrema.h"
#include "agrad/ops.h"

/* Checks x and dim for a scan; the normalised dim, or -1 with the failure recorded. */
static int check_scan(const char *op, const ag_tensor *x, int dim) {
    if (ag__check_float(op, x, NULL)) return -1;
    return ag__dim(op, dim, x->ndim);
}

/* The lanes of x along d, none when x is empty: a [2^40, 0] tensor has 2^40 empty lanes along
 * dim 1, whose scan writes nothing, so none is walked. */
static ag_lanes lanes(const ag_tensor *x, int d) {
    ag_lanes L = ag__lanes_of(x, d);
    if (L.n == 0) L.outer = L.inner = 0;
    return L;
}

/* ---- kernels, instantiated for float and double -------------------------------------------------- */
#define BLOCK 256
/* cumsum splits lanes along their length from this many elements on (fewer lanes than threads) */
#define SCAN_SPLIT_MIN ((int64_t)1 << 16)
#define SCAN_MAX_SPLIT 64

/* The lanes L split over threads (ag__lane_split_of: each lane whole on one thread, the same bits on
 * any number): ROWS runs on the contiguous lanes [a_, b_) (inner 1), COLS on the lanes (o_, i0_ ..
 * i1_) a stride inner apart (both are expressions of those names). */
#define LANES_SPLIT(L, ROWS, COLS)                                                                  \
    do {                                                                                            \
        const ag_lane_split S_ = ag__lane_split_of(L, BLOCK);                                       \
        if (S_.nt <= 1) { /* no parallel region: the loops stay the caller's */                     \
            LANES_TASKS(L, S_, 0, S_.tasks, ROWS, COLS);                                            \
            break;                                                                                  \
        }                                                                                           \
        _Pragma("omp parallel num_threads(S_.nt)")                                                  \
        {                                                                                           \
            const int n_ = omp_get_num_threads(), t_ = omp_get_thread_num();                        \
            LANES_TASKS(L, S_, ag__share_start(S_.tasks, t_, n_), ag__share_start(S_.tasks, t_ + 1, n_), ROWS, COLS);\
        }                                                                                           \
    } while (0)
#define LANES_TASKS(L, S_, A, B, ROWS, COLS)                                                        \
    do {                                                                                            \
        const int64_t a_ = (A), b_ = (B);                                                           \
        if ((L).inner == 1 && a_ < b_) ROWS;                                                        \
        for (int64_t t = a_; (L).inner > 1 && t < b_; t++) {                                        \
            int64_t o_, i0_, i1_;                                                                   \
            ag__lane_task(L, S_, t, &o_, &i0_, &i1_);                                               \
            COLS;                                                                                   \
        }                                                                                           \
    } while (0)

/* y[o,k,i] = Σ_{j<=k} x[o,j,i] (reverse: Σ_{j>=k}), each lane's running sum one float64 chain
 * (each element rounded once, as PyTorch), the lanes split over threads (LANES_SPLIT): blocks of
 * up to BLOCK lanes a stride inner apart a row at a time, or contiguous lanes one at a time; fewer
 * lanes than threads, long ones, split along their length (_split: then two threads may differ
 * from one in the last bits). */
#define LANE_CUMSUM(NAME, T, DT)                                                                        \
    /* contiguous lanes o0 .. o1, one at a time (four at a time through a float64 buffer was 20%    \
     * faster in cache, [256, 1024], but 15% slower from memory, [1024, 1024]) */                   \
    static void NAME##_rows(const T *x, T *y, int64_t n, int64_t o0, int64_t o1, bool reverse) {    \
        for (int64_t o = o0; o < o1; o++) {                                                         \
            double a = 0;                                                                           \
            const T *xl = x + o * n;                                                                \
            T *yl = y + o * n;                                                                      \
            if (reverse)                                                                            \
                for (int64_t k = n - 1; k >= 0; k--) yl[k] = (T)(a += (double)xl[k]);               \
            else                                                                                    \
                for (int64_t k = 0; k < n; k++) yl[k] = (T)(a += (double)xl[k]);                    \
        }                                                                                           \
    }                                                                                               \
    /* lanes (o, i0 .. i1) a stride inner apart, i1 - i0 <= BLOCK */                                \
    static void NAME##_cols(const T *restrict x, T *restrict y, ag_lanes L, int64_t o, int64_t i0, int64_t i1, \
                            bool reverse) {                                                         \
        double acc[BLOCK];                                                                          \
        const int64_t w = i1 - i0;                                                                  \
        for (int64_t i = 0; i < w; i++) acc[i] = 0;                                                 \
        for (int64_t s = 0; s < L.n; s++) {                                                         \
            const int64_t at = (o * L.n + (reverse ? L.n - 1 - s : s)) * L.inner + i0;              \
            for (int64_t i = 0; i < w; i++) y[at + i] = (T)(acc[i] += (double)x[at + i]);          \
        }                                                                                           \
    }                                                                                               \
    /* fewer contiguous lanes than threads, each of SCAN_SPLIT_MIN elements or more: each lane split\
     * in one block a thread; each thread sums its block (tot, float64), then scans it from the sum of\
     * the blocks before it (after it, reverse).  Block 0 (the last, reverse) is as one thread makes\
     * it; the others start from a carry summed in another order than one running sum, so their     \
     * float64 sums may differ in the last bits (a float32 result, rounded from float64, rarely). */\
    static void NAME##_split(const T *x, T *y, ag_lanes L, bool reverse, int nt) {                  \
        double tot[SCAN_MAX_SPLIT];                                                                 \
        _Pragma("omp parallel num_threads(nt)")                                                     \
        {                                                                                           \
            const int m_ = omp_get_num_threads(), t_ = omp_get_thread_num();                        \
            const int64_t k0 = ag__share_start(L.n, t_, m_), k1 = ag__share_start(L.n, t_ + 1, m_); \
            for (int64_t o = 0; o < L.outer; o++) {                                                 \
                const T *xl = x + o * L.n;                                                          \
                T *yl = y + o * L.n;                                                                \
                tot[t_] = ag__sum_run((const char *)(xl + k0), sizeof(T), k1 - k0, DT);             \
                _Pragma("omp barrier")                                                              \
                double a = 0;                                                                       \
                for (int u = reverse ? m_ - 1 : 0; reverse ? u > t_ : u < t_; u += reverse ? -1 : 1) a += tot[u];\
                if (reverse)                                                                        \
                    for (int64_t k = k1 - 1; k >= k0; k--) yl[k] = (T)(a += (double)xl[k]);         \
                else                                                                                \
                    for (int64_t k = k0; k < k1; k++) yl[k] = (T)(a += (double)xl[k]);              \
                _Pragma("omp barrier")                                                              \
            }                                                                                       \
        }                                                                                           \
    }                                                                                               \
    static void NAME(const char *xp, char *yp, ag_lanes L, bool reverse) {                          \
        const T *x = (const T *)xp;                                                                 \
        T *y = (T *)yp;                                                                             \
        int nt = L.inner == 1 && L.n >= SCAN_SPLIT_MIN ? ag__threads_for(L.outer * L.n) : 1;        \
        nt = nt < SCAN_MAX_SPLIT ? nt : SCAN_MAX_SPLIT;                                             \
        if (nt > 1 && L.outer < nt) {                                                               \
            NAME##_split(x, y, L, reverse, nt);                                                     \
            return;                                                                                 \
        }                                                                                           \
        LANES_SPLIT(L, NAME##_rows(x, y, L.n, a_, b_, reverse), NAME##_cols(x, y, L, o_, i0_, i1_, reverse));\
    }
LANE_CUMSUM(lane_cumsum_f32, float, AG_F32)
LANE_CUMSUM(lane_cumsum_f64, double, AG_F64)

/* y[o,k,i] = Π_{j<=k} x[o,j,i] in float64, the lanes split over threads (ag__lane_split_of: each
 * lane whole on one thread, the same bits on any number): blocks of up to BLOCK lanes a stride
 * inner apart a row at a time, or contiguous lanes four at a time (four independent chains of
 * products: one chain waits on each multiply's latency; the adjoint's rows likewise).  cumprod of
 * [1000, 1000] float32 along dim 1, forward and backward: one thread 5.7 -> 2.4 ms CPU, two 5.6 ->
 * 1.2 ms wall (PyTorch 5.1 and 3.8). */
#define LANE_CUMPROD(NAME, T)                                                                       \
    /* contiguous lanes o0 .. o1 */                                                                 \
    static void NAME##_rows(const T *restrict x, T *restrict y, int64_t n, int64_t o0, int64_t o1) { \
        int64_t o = o0;                                                                             \
        for (; o + 4 <= o1; o += 4) {                                                               \
            const T *x0 = x + o * n, *x1 = x0 + n, *x2 = x1 + n, *x3 = x2 + n;                      \
            T *y0 = y + o * n, *y1 = y0 + n, *y2 = y1 + n, *y3 = y2 + n;                            \
            double a0 = 1, a1 = 1, a2 = 1, a3 = 1;                                                  \
            for (int64_t k = 0; k < n; k++) {                                                       \
                y0[k] = (T)(a0 *= (double)x0[k]);                                                   \
                y1[k] = (T)(a1 *= (double)x1[k]);                                                   \
                y2[k] = (T)(a2 *= (double)x2[k]);                                                   \
                y3[k] = (T)(a3 *= (double)x3[k]);                                                   \
            }                                                                                       \
        }                                                                                           \
        for (; o < o1; o++) {                                                                       \
            double a = 1;                                                                           \
            for (int64_t k = 0; k < n; k++) y[o * n + k] = (T)(a *= (double)x[o * n + k]);          \
        }                                                                                           \
    }                                                                                               \
    /* lanes (o, i0 .. i1) of a stride inner apart, i1 - i0 <= BLOCK (cloned: AVX2's products of four \
     * lanes at a time where SSE2's were two; the same products in the same order) */              \
    AG_VEC_CLONES static void NAME##_cols(const T *restrict x, T *restrict y, ag_lanes L, int64_t o, int64_t i0, int64_t i1) { \
        double acc[BLOCK];                                                                          \
        const int64_t w = i1 - i0;                                                                  \
        for (int64_t i = 0; i < w; i++) acc[i] = 1;                                                 \
        for (int64_t k = 0; k < L.n; k++) {                                                         \
            const int64_t at = (o * L.n + k) * L.inner + i0;                                        \
            for (int64_t i = 0; i < w; i++) y[at + i] = (T)(acc[i] *= (double)x[at + i]);          \
        }                                                                                           \
    }                                                                                               \
    static void NAME(const char *xp, char *yp, ag_lanes L) {                                        \
        const T *x = (const T *)xp;                                                                 \
        T *y = (T *)yp;                                                                             \
        LANES_SPLIT(L, NAME##_rows(x, y, L.n, a_, b_), NAME##_cols(x, y, L, o_, i0_, i1_));         \
    }
LANE_CUMPROD(lane_cumprod_f32, float)
LANE_CUMPROD(lane_cumprod_f64, double)

/* The adjoint of cumprod on each lane, as PyTorch's cumprod_backward: with z the first zero
 * of the lane (n if none), dx_k = (Σ_{j>=k} dy_j·y_j) / x_k for k < z (the terms j >= z are 0),
 * dx_z = Σ_{j>=z} dy_j·Π_{i<=j, i≠z} x_i, and dx_k = 0 for k > z (every y_j it reaches holds
 * the zero).  Sums and products in float64. */
#define LANE_CUMPROD_BWD(NAME, T)                                                                   \
    /* dx_z at the first zero z of lane (o, i) (the rest of the lane after it stays 0) */           \
    static void NAME##_at_zero(T *gx, const T *x, const T *g, ag_lanes L, int64_t o, int64_t i, int64_t z) { \
        const int64_t base = o * L.n * L.inner + i, st = L.inner;                                   \
        double p = 1;                                                                               \
        for (int64_t k = 0; k < z; k++) p *= (double)x[base + k * st];                              \
        double acc = (double)g[base + z * st] * p;                                                  \
        for (int64_t j = z + 1; j < L.n; j++) {                                                     \
            p *= (double)x[base + j * st];                                                          \
            acc += (double)g[base + j * st] * p;                                                    \
        }                                                                                           \
        gx[base + z * st] = (T)acc;                                                                 \
    }                                                                                               \
    /* the lanes (o, i0 .. i0 + w) (inner > 1, w <= BLOCK) a row at a time, vectorised over the     \
     * lanes: their first zeros z going down, then the sums going up (the same operations in the    \
     * same order as the lane loop below: the same bits; cumprod of [1000, 1000] along dim 0,       \
     * forward and backward on one thread: 19.8 -> 3.9 ms CPU) */                                   \
    AG_VEC_CLONES static void NAME##_cols(T *restrict gx, const T *restrict x, const T *restrict y, const T *restrict g, \
                                          ag_lanes L, int64_t o, int64_t i0, int64_t w) {          \
        int64_t z[BLOCK];                                                                           \
        double s[BLOCK];                                                                            \
        const int64_t base = o * L.n * L.inner + i0;                                                \
        for (int64_t i = 0; i < w; i++) z[i] = L.n, s[i] = 0;                                       \
        for (int64_t k = 0; k < L.n; k++) {                                                         \
            const T *row = x + base + k * L.inner;                                                  \
            for (int64_t i = 0; i < w; i++) z[i] = z[i] == L.n && row[i] == 0 ? k : z[i];           \
        }                                                                                           \
        int64_t zmin = L.n, k = L.n - 1;                                                            \
        for (int64_t i = 0; i < w; i++) zmin = z[i] < zmin ? z[i] : zmin;                           \
        for (; k >= zmin; k--) { /* rows at or past some lane's first zero */                       \
            const int64_t at = base + k * L.inner;                                                  \
            for (int64_t i = 0; i < w; i++) { /* s stays 0 (and dx 0) from the first zero on */   \
                const bool live = k < z[i];                                                         \
                s[i] += live ? (double)g[at + i] * (double)y[at + i] : 0;                           \
                gx[at + i] = live ? (T)(s[i] / (double)x[at + i]) : 0;                              \
            }                                                                                       \
        }                                                                                           \
        for (; k >= 0; k--) { /* every lane live: the same operations without the selects, which    \
                               * left the loop scalar (session 23) */                                \
            const int64_t at = base + k * L.inner;                                                  \
            for (int64_t i = 0; i < w; i++) {                                                       \
                s[i] += (double)g[at + i] * (double)y[at + i];                                      \
                gx[at + i] = (T)(s[i] / (double)x[at + i]);                                         \
            }                                                                                       \
        }                                                                                           \
        for (int64_t i = 0; i < w; i++)                                                             \
            if (z[i] < L.n) NAME##_at_zero(gx, x, g, L, o, i0 + i, z[i]);                           \
    }                                                                                               \
    /* contiguous lanes o0 .. o1 (inner 1) */                                                     \
    static void NAME##_rows(T *gx, const T *x, const T *y, const T *g, ag_lanes L, int64_t o0, int64_t o1) { \
        int64_t o = o0;                                                                             \
        for (; o + 4 <= o1; o += 4) { /* four lanes at once, as _cols: s stays 0 from a lane's first zero on */ \
            int64_t z[4];                                                                           \
            double s[4] = {0, 0, 0, 0};                                                             \
            for (int r = 0; r < 4; r++) {                                                           \
                const T *xr = x + (o + r) * L.n;                                                    \
                z[r] = 0;                                                                           \
                while (z[r] < L.n && xr[z[r]] != 0) z[r]++;                                         \
            }                                                                                       \
            for (int64_t k = L.n - 1; k >= 0; k--)                                                  \
                for (int r = 0; r < 4; r++) {                                                       \
                    const int64_t at = (o + r) * L.n + k;                                           \
                    const bool live = k < z[r];                                                     \
                    s[r] += live ? (double)g[at] * (double)y[at] : 0;                               \
                    gx[at] = live ? (T)(s[r] / (double)x[at]) : 0;                                  \
                }                                                                                   \
            for (int r = 0; r < 4; r++)                                                             \
                if (z[r] < L.n) NAME##_at_zero(gx, x, g, L, o + r, 0, z[r]);                        \
        }                                                                                           \
        for (; o < o1; o++) {                                                                       \
            const int64_t base = o * L.n;                                                           \
            int64_t z = 0;                                                                          \
            while (z < L.n && x[base + z] != 0) z++;                                                \
            double s = 0;                                                                           \
            for (int64_t k = z - 1; k >= 0; k--) {                                                  \
                s += (double)g[base + k] * (double)y[base + k];                                     \
                gx[base + k] = (T)(s / (double)x[base + k]);                                        \
            }                                                                                       \
            if (z < L.n) NAME##_at_zero(gx, x, g, L, o, 0, z);                                      \
        }                                                                                           \
    }                                                                                               \
    static void NAME(char *gxp, const char *xp, const char *yp, const char *gp, ag_lanes L) {       \
        T *gx = (T *)gxp;                                                                           \
        const T *x = (const T *)xp, *y = (const T *)yp, *g = (const T *)gp;                        \
        LANES_SPLIT(L, NAME##_rows(gx, x, y, g, L, a_, b_), NAME##_cols(gx, x, y, g, L, o_, i0_, i1_ - i0_)); \
    }
LANE_CUMPROD_BWD(lane_cumprod_bwd_f32, float)
LANE_CUMPROD_BWD(lane_cumprod_bwd_f64, double)

/* ---- cumsum ------------------------------------------------------------------------------------ */
static ag_status cumsum_backward(ag_tensor *out, ag_tensor *gout);
/* y_k = Σ_{j<=k} x_j along d;  dx_k = Σ_{j>=k} dy_j */
/* ---- tangent rules ---------------------------------------------------------------------------- */
/* dy = cumsum(dx) */
static ag_tensor *cumsum_jvp(ag_tensor *out, ag_tensor *const *tin) {
    return out->ndim ? ag_cumsum(tin[0], (int)out->attr.i[0]) : ag_clone(tin[0]);
}
/* dy_k = Σ_{j≤k} dx_j·e^{x_j - y_k} = e^{P_k - y_k} - e^{N_k - y_k}, P_k (N_k) the logcumsumexp
 * of x_j + log|dx_j| over dx_j > 0 (< 0), the others at the dtype's lowest value (log space, as
 * the adjoint: a lane spanning more than the exponent range neither underflows to 0/0 nor
 * overflows) */
static ag_tensor *logcumsumexp_jvp(ag_tensor *out, ag_tensor *const *tin) {
    ag_tensor *x = out->in[0], *dx = tin[0];
    if (!out->ndim || !ag_numel(x)) return ag_clone(dx);
    const int d = (int)out->attr.i[0];
    ag_tensor *zero = ag_scalar(0, x->dtype), *lowest = ag_scalar(x->dtype == AG_F64 ? -DBL_MAX : -FLT_MAX, x->dtype);
    ag_tensor *log_abs = ag_add(ag_log(ag_abs(dx)), x);
    ag_tensor *side[2] = {ag_where(ag_gt(dx, zero), log_abs, lowest), ag_where(ag_lt(dx, zero), log_abs, lowest)};
    for (int k = 0; k < 2; k++) side[k] = ag_exp(ag_sub(ag_logcumsumexp(side[k], d), out));
    return ag_sub(side[0], side[1]);
}
/* dy_k = dx at i_k, the index of the running extreme */
static ag_tensor *cumextreme_jvp(ag_tensor *out, ag_tensor *const *tin) {
    return ag__jvp_pick(out, tin[0], out->saved, (int)out->attr.i[0]);
}

/* The cumsum of t from the end of each lane along d: flip(cumsum(flip(t))). */
static ag_tensor *reverse_cumsum(ag_tensor *t, int d) { return ag_flip(ag_cumsum(ag_flip(t, 1, &d), d), 1, &d); }

/* Whether x holds a zero (x float32 or float64, any strides). */
static bool has_zero(ag_tensor *x) {
    ag_tensor *xc = ag__contig_or_copy(x);
    bool any = false;
    const int64_t n = xc ? ag_numel(xc) : 0;
    for (int64_t k = 0; k < n && !any; k++)
        any = x->dtype == AG_F64 ? ((const double *)ag__ptr(xc))[k] == 0 : ((const float *)ag__ptr(xc))[k] == 0;
    ag_release(xc);
    return any;
}

/* dy_k = Σ_{j≤k} dx_j·Π_{i≤k, i≠j} x_i: y·cumsum(dx / x) up to each lane's first zero z, and from
 * it on cumprod of x with dx_z in the place of x_z (PyTorch's cumprod_jvp; zeros divide by 1) */
static ag_tensor *cumprod_jvp(ag_tensor *out, ag_tensor *const *tin) {
    ag_tensor *x = out->in[0], *t = tin[0];
    if (!out->ndim) return ag_clone(t);
    const int d = (int)out->attr.i[0];
    if (!has_zero(x)) return ag_mul(ag_cumsum(ag_div(t, x), d), out);
    ag_tensor *zero = ag_scalar(0, x->dtype), *one = ag_scalar(1, x->dtype);
    ag_tensor *is_zero = ag_eq(x, zero), *zf = ag_to_dtype(is_zero, x->dtype);
    ag_tensor *first = ag_gt(ag_mul(zf, ag_to_dtype(ag_eq(ag_cumsum(zf, d), one), x->dtype)), zero);
    ag_tensor *after = ag_gt(ag_cumsum(ag_to_dtype(first, x->dtype), d), zero);
    ag_tensor *before = ag_mul(ag_cumsum(ag_div(t, ag_where(is_zero, one, x)), d), out);
    return ag_where(after, ag_cumprod(ag_where(first, t, x), d), before);
}

/* ---- adjoints in differentiable ops (create_graph) ------------------------------------------ */
/* dx = reversed cumsum of dy */
static ag_status cumsum_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin) {
    gin[0] = out->ndim ? reverse_cumsum(gout, (int)out->attr.i[0]) : gout;
    return gin[0] ? AG_OK : ag_last_status();
}

/* dx_k = Σ_{j≥k} dy_j·e^{x_k - y_j} = e^{x_k + P_k} - e^{x_k + N_k}, P_k (N_k) the reversed
 * logcumsumexp of log|dy_j| - y_j over dy_j > 0 (< 0), the others at the dtype's lowest value
 * (PyTorch's logcumsumexp_backward: log space, so no e^{-y_j} overflows) */
static ag_status logcumsumexp_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin) {
    ag_tensor *x = out->in[0];
    if (!out->ndim || !ag_numel(x)) return (gin[0] = gout) ? AG_OK : ag_last_status();
    int d = (int)out->attr.i[0];
    ag_tensor *zero = ag_scalar(0, x->dtype), *lowest = ag_scalar(x->dtype == AG_F64 ? -DBL_MAX : -FLT_MAX, x->dtype);
    ag_tensor *log_abs = ag_log(ag_abs(gout));
    ag_tensor *side[2] = {ag_where(ag_gt(gout, zero), log_abs, lowest), ag_where(ag_lt(gout, zero), log_abs, lowest)};
    for (int k = 0; k < 2; k++)
        side[k] = ag_exp(ag_add(ag_flip(ag_logcumsumexp(ag_flip(ag_sub(side[k], out), 1, &d), d), 1, &d), x));
    gin[0] = ag_sub(side[0], side[1]);
    return gin[0] ? AG_OK : ag_last_status();
}

/* dx_k = Σ_{j≥k} dy_j·Π_{i≤j, i≠k} x_i: reversed cumsum(dy·y) / x without zeros; with a zero,
 * for each k: y_{k-1}·Σ_{j≥k} dy_j·Π_{k<i≤j} x_i, exact for zeros and twice differentiable
 * (PyTorch's cumprod_backward in grad mode; O(n²) ops) */
static ag_status cumprod_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin) {
    ag_tensor *x = out->in[0];
    const int d = (int)out->attr.i[0];
    const int64_t n = out->ndim ? x->shape[d] : 1;
    if (n <= 1 || !ag_numel(x)) return (gin[0] = gout) ? AG_OK : ag_last_status();
    if (!has_zero(x)) return (gin[0] = ag_div(reverse_cumsum(ag_mul(gout, out), d), x)) ? AG_OK : ag_last_status();
    ag_tensor **parts = ag__alloc_n(n, sizeof(ag_tensor *));
    if (!parts) return AG_ERR_NOMEM; /* recorded by the allocator */
    ag_tensor *ones = ag_ones_like(ag_narrow(x, d, 0, 1));
    bool good = ones != NULL;
    for (int64_t k = 0; k < n && good; k++) {
        ag_tensor *omitted = ones; /* Π_{k<i≤j} x_i for j = k .. n-1 */
        if (k < n - 1) omitted = ag_cat((ag_tensor *[]){ones, ag_cumprod(ag_narrow(x, d, k + 1, n - k - 1), d)}, 2, d);
        ag_tensor *part = ag_sum_dims(ag_mul(ag_narrow(gout, d, k, n - k), omitted), 1, &d, true);
        parts[k] = k ? ag_mul(part, ag_narrow(out, d, k - 1, 1)) : part;
        good = parts[k] != NULL;
    }
    gin[0] = good ? ag_cat(parts, (int)n, d) : NULL;
    ag__free(parts);
    return gin[0] ? AG_OK : ag_last_status();
}

static const ag_op op_cumsum = {.name = "cumsum", .grad_fn = "CumsumBackward0", .backward = cumsum_backward,
                                .math = "y_k = Σ_{j≤k} x_j along d;  dx_k = Σ_{j≥k} dy_j (a reversed cumsum)",
                                .backward_graph = cumsum_backward_graph, .jvp = cumsum_jvp,
                                .tangent = "ẏ = cumsum(ẋ) along d"};

ag_tensor *ag_cumsum(ag_tensor *x, int dim) {
    AG_CHECK_HANDLES(NULL, "cumsum", x);
    if (!x) return NULL;
    int d = check_scan("cumsum", x, dim);
    if (d < 0) return NULL;
    ag_tensor *xc = ag__contig_or_copy(x);
    ag_tensor *y = xc ? ag__new(x->dtype, x->ndim, x->shape) : NULL;
    if (!y) {
        ag_release(xc);
        return NULL;
    }
    ag_lanes L = lanes(x, d);
    if (x->dtype == AG_F64) lane_cumsum_f64(ag__ptr(xc), ag__ptr(y), L, false);
    else lane_cumsum_f32(ag__ptr(xc), ag__ptr(y), L, false);
    ag_release(xc);
    if (ag__needs_grad1(x)) {
        if (!ag__record(y, &op_cumsum, &x, 1)) return NULL;
        y->attr.i[0] = d;
    }
    return ag__check_finite(y, "cumsum");
}

/* dx = the cumsum of dy from the end of each lane. */
static ag_status cumsum_backward(ag_tensor *out, ag_tensor *gout) {
    ag_tensor *x = out->in[0];
    ag_tensor *gx = ag__new_unowned(x->dtype, x->ndim, x->shape, false);
    if (!gx) return AG_ERR_NOMEM;
    ag_lanes L = lanes(x, (int)out->attr.i[0]);
    if (x->dtype == AG_F64) lane_cumsum_f64(ag__ptr(gout), ag__ptr(gx), L, true);
    else lane_cumsum_f32(ag__ptr(gout), ag__ptr(gx), L, true);
    return ag__accumulate(x, gx);
}

/* ---- cumprod ----------------------------------------------------------------------------------- */
static ag_status cumprod_backward(ag_tensor *out, ag_tensor *gout);
/* y_k = Π_{j<=k} x_j along d;  dx_k = Σ_{j>=k} dy_j·Π_{i<=j, i≠k} x_i */
static const ag_op op_cumprod = {.name = "cumprod", .grad_fn = "CumprodBackward0", .backward = cumprod_backward,
                                 .saves = AG_SAVES_IN0 | AG_SAVES_OUT,
                                 .math = "y_k = Π_{j≤k} x_j along d;  "
                                         "dx_k = Σ_{j≥k} dy_j·Π_{i≤j, i≠k} x_i (exact with zeros, as PyTorch)",
                                 .backward_graph = cumprod_backward_graph, .jvp = cumprod_jvp,
                                 .tangent = "ẏ_k = Σ_{j≤k} ẋ_j·Π_{i≤k, i≠j} x_i along d (exact with zeros)"};

ag_tensor *ag_cumprod(ag_tensor *x, int dim) {
    AG_CHECK_HANDLES(NULL, "cumprod", x);
    if (!x) return NULL;
    int d = check_scan("cumprod", x, dim);
    if (d < 0) return NULL;
    ag_tensor *xc = ag__contig_or_copy(x);
    ag_tensor *y = xc ? ag__new(x->dtype, x->ndim, x->shape) : NULL;
    if (!y) {
        ag_release(xc);
        return NULL;
    }
    ag_lanes L = lanes(x, d);
    if (x->dtype == AG_F64) lane_cumprod_f64(ag__ptr(xc), ag__ptr(y), L);
    else lane_cumprod_f32(ag__ptr(xc), ag__ptr(y), L);
    ag_release(xc);
    if (ag__needs_grad1(x)) {
        if (!ag__record(y, &op_cumprod, &x, 1)) return NULL;
        y->attr.i[0] = d;
    }
    return ag__check_finite(y, "cumprod");
}

static ag_status cumprod_backward(ag_tensor *out, ag_tensor *gout) {
    ag_tensor *x = out->in[0];
    ag_tensor *xc = ag__contig_or_copy(x);
    ag_tensor *gx = xc ? ag__new_unowned(x->dtype, x->ndim, x->shape, true) : NULL;
    if (!gx) {
        ag_release(xc);
        return AG_ERR_NOMEM;
    }
    ag_lanes L = lanes(x, (int)out->attr.i[0]);
    if (x->dtype == AG_F64) lane_cumprod_bwd_f64(ag__ptr(gx), ag__ptr(xc), ag__ptr(out), ag__ptr(gout), L);
    else lane_cumprod_bwd_f32(ag__ptr(gx), ag__ptr(xc), ag__ptr(out), ag__ptr(gout), L);
    ag_release(xc);
    return ag__accumulate(x, gx);
}

/* ---- logcumsumexp ------------------------------------------------------------------------------ */
/* log(e^a + e^b) without overflow; equal infinities give themselves, NaN propagates (PyTorch's
 * _log_add_exp_helper). */
static double log_add_exp(double a, double b) {
    if (isnan(a) || isnan(b)) return a + b;
    const double lo = a < b ? a : b, hi = a < b ? b : a;
    return lo != hi || isfinite(lo) ? hi + log1p(exp(lo - hi)) : a;
}

/* Reads element k of a lane of a float32 or float64 array as a double, and writes one. */
static inline double get(const char *p, bool f64, int64_t k) { return f64 ? ((const double *)p)[k] : ((const float *)p)[k]; }
static inline void put(char *p, bool f64, int64_t k, double v) {
    if (f64) ((double *)p)[k] = v;
    else ((float *)p)[k] = (float)v;
}

static ag_status logcumsumexp_backward(ag_tensor *out, ag_tensor *gout);
/* y_k = log Σ_{j<=k} exp x_j;  dx_k = Σ_{j>=k} dy_j·exp(x_k - y_j) */
static const ag_op op_logcumsumexp = {.name = "logcumsumexp", .grad_fn = "LogcumsumexpBackward0",
                                      .backward = logcumsumexp_backward, .saves = AG_SAVES_IN0 | AG_SAVES_OUT,
                                      .math = "y_k = log Σ_{j≤k} exp x_j along d;  dx_k = Σ_{j≥k} dy_j·exp(x_k - y_j)",
                                      .backward_graph = logcumsumexp_backward_graph, .jvp = logcumsumexp_jvp,
                                      .tangent = "ẏ_k = Σ_{j≤k} ẋ_j·exp(x_j - y_k) along d (in log space)"};

ag_tensor *ag_logcumsumexp(ag_tensor *x, int dim) {
    AG_CHECK_HANDLES(NULL, "logcumsumexp", x);
    if (!x) return NULL;
    int d = check_scan("logcumsumexp", x, dim);
    if (d < 0) return NULL;
    ag_tensor *xc = ag__contig_or_copy(x);
    ag_tensor *y = xc ? ag__new(x->dtype, x->ndim, x->shape) : NULL;
    if (!y) {
        ag_release(xc);
        return NULL;
    }
    const ag_lanes L = lanes(x, d);
    const bool f64 = x->dtype == AG_F64;
    for (int64_t o = 0; o < L.outer; o++)
        for (int64_t i = 0; i < L.inner; i++) {
            const int64_t base = o * L.n * L.inner + i;
            double acc = -INFINITY;
            for (int64_t k = 0; k < L.n; k++) {
                acc = log_add_exp(acc, get(ag__ptr(xc), f64, base + k * L.inner));
                put(ag__ptr(y), f64, base + k * L.inner, acc);
            }
        }
    ag_release(xc);
    if (ag__needs_grad1(x)) {
        if (!ag__record(y, &op_logcumsumexp, &x, 1)) return NULL;
        y->attr.i[0] = d;
    }
    return ag__check_finite(y, "logcumsumexp");
}

/* dx_k = exp(x_k + P_k) - exp(x_k + N_k), with P_k = log Σ_{j>=k, dy_j>0} dy_j·e^{-y_j} and N_k
 * the same over -dy_j for dy_j < 0: kept in log space, so no e^{-y_j} overflows (PyTorch's
 * logcumsumexp_backward, computed here in one reverse pass per lane); 0 at an input of -inf. */
static ag_status logcumsumexp_backward(ag_tensor *out, ag_tensor *gout) {
    ag_tensor *x = out->in[0];
    ag_tensor *xc = ag__contig_or_copy(x);
    ag_tensor *gx = xc ? ag__new_unowned(x->dtype, x->ndim, x->shape, false) : NULL;
    if (!gx) {
        ag_release(xc);
        return AG_ERR_NOMEM;
    }
    const ag_lanes L = lanes(x, (int)out->attr.i[0]);
    const bool f64 = x->dtype == AG_F64;
    for (int64_t o = 0; o < L.outer; o++)
        for (int64_t i = 0; i < L.inner; i++) {
            const int64_t base = o * L.n * L.inner + i;
            double pos = -INFINITY, neg = -INFINITY;
            for (int64_t k = L.n - 1; k >= 0; k--) {
                const int64_t at = base + k * L.inner;
                const double g = get(ag__ptr(gout), f64, at), yk = get(ag__ptr(out), f64, at);
                if (g > 0) pos = log_add_exp(pos, log(g) - yk);
                else if (g < 0) neg = log_add_exp(neg, log(-g) - yk);
                else if (isnan(g)) pos = neg = NAN;
                const double xk = get(ag__ptr(xc), f64, at);
                /* an input of -inf adds nothing to any y_j: its gradient is 0 (not e^{-inf + inf}) */
                put(ag__ptr(gx), f64, at, xk == -INFINITY ? 0 : exp(xk + pos) - exp(xk + neg));
            }
        }
    ag_release(xc);
    return ag__accumulate(x, gx);
}

/* ---- cummax and cummin --------------------------------------------------------------------------- */
static ag_status cumextreme_backward(ag_tensor *out, ag_tensor *gout);
/* y_k = max_{j<=k} x_j, i_k its last index;  dx_j = Σ_{k: i_k = j} dy_k */
static const ag_op op_cummax = {.name = "cummax", .grad_fn = "CummaxBackward0", .backward = cumextreme_backward,
                                .math = "y_k = max_{j≤k} x_j along d (NaN wins; i_k the last index of it);  "
                                        "dx_j = Σ_{k: i_k = j} dy_k",
                                .backward_graph = ag__pick_backward_graph, .jvp = cumextreme_jvp,
                                .tangent = "ẏ_k = ẋ at i_k, the index of the running max"};
/* y_k = min_{j<=k} x_j, i_k its last index;  dx_j = Σ_{k: i_k = j} dy_k */
static const ag_op op_cummin = {.name = "cummin", .grad_fn = "CumminBackward0", .backward = cumextreme_backward,
                                .math = "y_k = min_{j≤k} x_j along d (NaN wins; i_k the last index of it);  "
                                        "dx_j = Σ_{k: i_k = j} dy_k",
                                .backward_graph = ag__pick_backward_graph, .jvp = cumextreme_jvp,
                                .tangent = "ẏ_k = ẋ at i_k, the index of the running min"};

/* The running extreme of the lanes L of x into y, and its index into ip (NULL: none), as
 * cumextreme says.  A value v takes over from the best b when TAKES(v, b): v >= b (max) or
 * v <= b (min), or v is NaN (a NaN best stays until the next NaN).  Rows (inner 1) carry the best
 * in a register; lanes a stride inner apart go a row of them at a time, each compared with the
 * row before it in y (unit steps: vectorises).  The same values and indices as one element at a
 * time in double (session 12's loop, a scalar walk through get/put). */
typedef void (*cumext_fn)(const char *x, char *y, int64_t *restrict ip, ag_lanes L);
#define CUMEXT(NAME, T, CMP)                                                                       \
    AG_VEC_CLONES static void NAME(const char *xb, char *yb, int64_t *restrict ip, ag_lanes L) {   \
        const T *restrict x = (const T *)xb;                                                       \
        T *restrict y = (T *)yb;                                                                   \
        const int64_t n = L.n, in = L.inner;                                                       \
        for (int64_t o = 0; o < L.outer; o++) {                                                    \
            const int64_t base = o * n * in;                                                       \
            const T *restrict xo = x + base;                                                       \
            T *restrict yo = y + base;                                                             \
            int64_t *restrict io = ip ? ip + base : NULL;                                          \
            if (in == 1) {                                                                         \
                T b = xo[0];                                                                       \
                int64_t bi = 0;                                                                    \
                yo[0] = b;                                                                         \
                if (io) io[0] = 0;                                                                 \
                for (int64_t k = 1; k < n; k++) {                                                  \
                    const T v = xo[k];                                                             \
                    const bool take = (v CMP b) | (v != v);                                        \
                    b = take ? v : b;                                                              \
                    bi = take ? k : bi;                                                            \
                    yo[k] = b;                                                                     \
                    if (io) io[k] = bi;                                                            \
                }                                                                                  \
                continue;                                                                          \
            }                                                                                      \
            for (int64_t i = 0; i < in; i++) yo[i] = xo[i];                                        \
            if (io)                                                                                \
                for (int64_t i = 0; i < in; i++) io[i] = 0;                                        \
            for (int64_t k = 1; k < n; k++) {                                                      \
                const T *restrict xk = xo + k * in, *restrict yp = yo + (k - 1) * in;              \
                T *restrict yk = yo + k * in;                                                      \
                if (io) {                                                                          \
                    const int64_t *restrict ipv = io + (k - 1) * in;                               \
                    int64_t *restrict ik = io + k * in;                                            \
                    for (int64_t i = 0; i < in; i++) {                                             \
                        const bool take = (xk[i] CMP yp[i]) | (xk[i] != xk[i]);                    \
                        yk[i] = take ? xk[i] : yp[i];                                              \
                        ik[i] = take ? k : ipv[i];                                                 \
                    }                                                                              \
                } else {                                                                           \
                    for (int64_t i = 0; i < in; i++) {                                             \
                        const bool take = (xk[i] CMP yp[i]) | (xk[i] != xk[i]);                    \
                        yk[i] = take ? xk[i] : yp[i];                                              \
                    }                                                                              \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    }
CUMEXT(cummax_f32, float, >=)
CUMEXT(cummax_f64, double, >=)
CUMEXT(cummin_f32, float, <=)
CUMEXT(cummin_f64, double, <=)

/* The running max (min) and its index along dim, as PyTorch: NaN wins and a later equal value
 * (or NaN) takes over the index. */
static ag_tensor *cumextreme(const ag_op *op, ag_tensor *x, int dim, ag_tensor **indices) {
    AG_CHECK_HANDLES(NULL, op->name, x);
    if (indices) *indices = NULL;
    if (!x) return NULL;
    int d = check_scan(op->name, x, dim);
    if (d < 0) return NULL;
    const bool record = ag__needs_grad1(x), is_max = op == &op_cummax;
    ag_tensor *xc = ag__contig_or_copy(x);
    ag_tensor *y = xc ? ag__new(x->dtype, x->ndim, x->shape) : NULL;
    /* the graph's indices are its own (unowned); the caller gets a copy */
    ag_tensor *idx = y && (record || indices) ? ag__new_unowned(AG_I64, x->ndim, x->shape, false) : NULL;
    ag_tensor *given = idx && indices ? ag__new(AG_I64, x->ndim, x->shape) : NULL;
    if (!y || ((record || indices) && !idx) || (indices && !given)) {
        ag_release(xc);
        ag_release(idx);
        ag__discard(y);
        ag__discard(given);
        return NULL;
    }
    const ag_lanes L = lanes(x, d);
    int64_t *ip = idx ? (int64_t *)ag__ptr(idx) : NULL;
    static const cumext_fn kernels[2][2] = {{cummin_f32, cummin_f64}, {cummax_f32, cummax_f64}};
    kernels[is_max][x->dtype == AG_F64](ag__ptr(xc), ag__ptr(y), ip, L);
    ag_release(xc);
    if (given) memcpy(ag__ptr(given), ag__ptr(idx), sizeof(int64_t) * (size_t)ag_numel(idx));
    if (record) {
        if (!ag__record_saved(y, op, &x, 1, idx)) {
            ag__discard(given);
            return NULL;
        }
        y->attr.i[0] = d;
    } else {
        ag_release(idx);
    }
    if (indices) *indices = given;
    return y;
}

/* gx[o, i_k, i] += g[o, k, i] over the lanes L (gx zeroed; k in order, as before). */
#define CUMEXT_SCATTER(NAME, T)                                                                    \
    static void NAME(char *gxb, const char *gb, const int64_t *restrict idx, ag_lanes L) {         \
        T *restrict gx = (T *)gxb;                                                                 \
        const T *restrict g = (const T *)gb;                                                       \
        const int64_t n = L.n, in = L.inner;                                                       \
        for (int64_t o = 0; o < L.outer; o++) {                                                    \
            const int64_t base = o * n * in;                                                       \
            for (int64_t k = 0; k < n; k++)                                                        \
                for (int64_t i = 0; i < in; i++) {                                                 \
                    const int64_t at = base + k * in + i;                                          \
                    gx[base + idx[at] * in + i] += g[at];                                          \
                }                                                                                  \
        }                                                                                          \
    }
CUMEXT_SCATTER(cumext_scatter_f32, float)
CUMEXT_SCATTER(cumext_scatter_f64, double)

/* dx = 0, then dx[o, i_k, i] += dy[o, k, i]: several k may name one j. */
static ag_status cumextreme_backward(ag_tensor *out, ag_tensor *gout) {
    ag_tensor *x = out->in[0];
    ag_tensor *gx = ag__new_unowned(x->dtype, x->ndim, x->shape, true);
    if (!gx) return AG_ERR_NOMEM;
    const ag_lanes L = lanes(x, (int)out->attr.i[0]);
    const int64_t *idx = (const int64_t *)ag__ptr(out->saved);
    if (x->dtype == AG_F64) cumext_scatter_f64(ag__ptr(gx), ag__ptr(gout), idx, L);
    else cumext_scatter_f32(ag__ptr(gx), ag__ptr(gout), idx, L);
    return ag__accumulate(x, gx);
}

ag_tensor *ag_cummax(ag_tensor *x, int dim, ag_tensor **indices) { return cumextreme(&op_cummax, x, dim, indices); }
ag_tensor *ag_cummin(ag_tensor *x, int dim, ag_tensor **indices) { return cumextreme(&op_cummin, x, dim, indices); }

const ag_op *const ag__scan_ops[] = {&op_cumsum, &op_cumprod, &op_logcumsumexp, &op_cummax, &op_cummin, NULL};

/*
 * softmax.c - softmax and log_softmax along one dim, stable by subtracting the
 * lane max, with fused adjoints.
 *
 * The (contiguous) input is seen as [outer, n, inner] lanes of n elements a
 * stride `inner` apart, as in extrema.c.  The reference C kernels serve both
 * dtypes and follow PyTorch's CPU kernels step by step (NaN-propagating max,
 * exp(x - max), then y = e·(1/Σe) or y = (x - max) - log Σe), so logits of
 * ±1e8 and -inf next to finite values stay finite; a lane of only -inf gives
 * NaN, as in PyTorch.  They run in the reference modes; otherwise the fast
 * kernels below, which compute the same steps in vectorised passes, rows or
 * blocks of 64 lanes at a time, split over threads (measured: softmax along dim 0
 * of [1000, 1000] forward + backward 16 ms -> 2.3 ms on one thread).  On CPUs
 * without the x86-64-v3 clones (AG_VEC_CLONES), large float32 inputs along the
 * last dim go to oneDNN instead (see use_onednn): softmax forward and both backwards to the softmax_v2
 * primitives of the shared cache (dnnl_cache.h), log_softmax forward to the
 * "exp route" (C max and sum, oneDNN's eltwise exp), as oneDNN's own log is
 * inexact; lanes longer than SOFTMAX_V2_MAX_LANE avoid softmax_v2, whose float32
 * sums drift.  Every sum of a lane is accumulated in float64 (core/sum.h).  If
 * oneDNN cannot run them the C kernel does.  Lanes where oneDNN produced a NaN are
 * redone by the C kernel, which makes the whole lane NaN as PyTorch does.
 */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>
#include "core/dnnl_cache.h"
#include "core/iter.h"
#include "core/parallel.h"
#include "ops/vexpf.h"
#include "ops/vlogsum.h"
#include "core/simd_extreme.h"
#include "autograd/tape.h"
#include "ops/jvp.h"
#include "core/sum.h"
#include "core/sum_pairs.h"
#include "ops/softmax.h"
#include "agrad/ops.h"

#define ALG(is_log) ((is_log) ? dnnl_softmax_log : dnnl_softmax_accurate)

/* This thread's choice of kernels (ag__softmax_set_backend) */
static _Thread_local ag__softmax_backend backend;


/* ---- reference kernels ------------------------------------------------------------------------- */
/* With redo_nan a kernel only (re)computes the lanes whose output already holds a NaN (backward:
 * or whose y is NaN): oneDNN leaves 0 beside a NaN or +inf logit, where PyTorch's NaN lane max
 * makes the whole lane NaN, and its exp(NaN) is inf where PyTorch's is NaN. */
#define LANE_HAS_NAN(p, n, st, bad)                                                                 \
    bool bad = false;                                                                               \
    for (int64_t k = 0; k < (n); k++) bad |= isnan((p)[k * (st)]);

/* m = max x (NaN wins);  softmax y = exp(x - m)·(1/Σ exp(x - m)),  log_softmax y = (x - m) - log Σ exp(x - m) */
#define SOFTMAX_FWD(NAME, T, EXP)                                                                   \
    static void NAME(const char *xp, char *yp, ag_lanes L, bool is_log, bool redo_nan) {              \
        const int64_t st = L.inner;                                                                 \
        for (int64_t o = 0; o < L.outer; o++)                                                       \
            for (int64_t i = 0; i < L.inner; i++) {                                                 \
                const T *x = (const T *)xp + o * L.n * L.inner + i;                                 \
                T *y = (T *)yp + o * L.n * L.inner + i;                                             \
                if (redo_nan) {                                                                     \
                    LANE_HAS_NAN(y, L.n, st, bad)                                                   \
                    if (!bad) continue;                                                             \
                }                                                                                   \
                T m = -INFINITY;                                                                    \
                for (int64_t k = 0; k < L.n && !isnan(m); k++)                                      \
                    if (!(x[k * st] <= m)) m = x[k * st];                                           \
                double s = 0;                                                                       \
                if (is_log) {                                                                       \
                    for (int64_t k = 0; k < L.n; k++) s += EXP(x[k * st] - m);                      \
                    const T ls = (T)log(s);                                                         \
                    for (int64_t k = 0; k < L.n; k++) y[k * st] = x[k * st] - m - ls;               \
                } else {                                                                            \
                    for (int64_t k = 0; k < L.n; k++) s += y[k * st] = EXP(x[k * st] - m);          \
                    const T r = (T)(1 / s);                                                         \
                    for (int64_t k = 0; k < L.n; k++) y[k * st] *= r;                               \
                }                                                                                   \
            }                                                                                       \
    }
SOFTMAX_FWD(softmax_fwd_f32, float, expf)
SOFTMAX_FWD(softmax_fwd_f64, double, exp)

/* softmax dx = y·(dy - Σ dy·y);  log_softmax dx = dy - exp(y)·Σ dy */
#define SOFTMAX_BWD(NAME, T, EXP)                                                                   \
    static void NAME(char *gxp, const char *yp, const char *gp, ag_lanes L, bool is_log, bool redo_nan) { \
        const int64_t st = L.inner;                                                                 \
        for (int64_t o = 0; o < L.outer; o++)                                                       \
            for (int64_t i = 0; i < L.inner; i++) {                                                 \
                const int64_t base = o * L.n * L.inner + i;                                         \
                T *gx = (T *)gxp + base;                                                            \
                const T *y = (const T *)yp + base, *g = (const T *)gp + base;                       \
                if (redo_nan) { /* a forward lane is all NaN or NaN-free: y[0] tells */           \
                    LANE_HAS_NAN(gx, L.n, st, bad)                                                  \
                    if (!bad && !(L.n > 0 && isnan(y[0]))) continue;                                \
                }                                                                                   \
                double s = 0;                                                                       \
                if (is_log) {                                                                       \
                    for (int64_t k = 0; k < L.n; k++) s += g[k * st];                               \
                    for (int64_t k = 0; k < L.n; k++) gx[k * st] = g[k * st] - EXP(y[k * st]) * (T)s; \
                } else {                                                                            \
                    for (int64_t k = 0; k < L.n; k++) s += (double)(g[k * st] * y[k * st]);         \
                    for (int64_t k = 0; k < L.n; k++) gx[k * st] = y[k * st] * (g[k * st] - (T)s);  \
                }                                                                                   \
            }                                                                                       \
    }
SOFTMAX_BWD(softmax_bwd_f32, float, expf)
SOFTMAX_BWD(softmax_bwd_f64, double, exp)

/* p = softmax of row r, lse[r] = m + log Σ exp(x - m): the reference, one row of n elements */
#define SOFTMAX_ROW_LSE(NAME, T, EXP)                                                               \
    static void NAME(const T *x, T *p, int64_t n, double *lse) {                                    \
        T m = -INFINITY;                                                                            \
        for (int64_t k = 0; k < n && !isnan(m); k++)                                                \
            if (!(x[k] <= m)) m = x[k];                                                             \
        double s = 0;                                                                               \
        for (int64_t k = 0; k < n; k++) s += p[k] = EXP(x[k] - m);                                  \
        const T r = (T)(1 / s);                                                                     \
        for (int64_t k = 0; k < n; k++) p[k] *= r;                                                  \
        *lse = (double)m + log(s);                                                                  \
    }
SOFTMAX_ROW_LSE(softmax_row_lse_f32, float, expf)
SOFTMAX_ROW_LSE(softmax_row_lse_f64, double, exp)

/* ---- fast kernels ------------------------------------------------------------------------------ */
/* The fast kernels take float32 and float64 (EXP: vexpf_fma, within 1 ulp as vexpf but with fused
 * multiply-adds, a block's exponentials through vexpf_run, 16 at a time with AVX-512; or libm's
 * exp), do what the reference kernels do with the same NaN and ±inf behaviour (a lane's max is NaN
 * when it holds a NaN), and differ in how they walk: a row (inner 1) is a few vectorised passes over contiguous memory; lanes
 * a stride `inner` apart are taken FAST_BLOCK at a time, each pass over k reading FAST_BLOCK
 * neighbouring elements, so that the loops over the block vectorise and read whole cache lines
 * (the reference walks one lane at a time, a cache line per element).  Lane sums are float64.
 * Rows, or (outer, block) pairs, are split over threads. */
#define FAST_BLOCK 64
/* Forward rows of at most FAST_SHORT take fast_fwd_short, FAST_LANES rows at a time (at 16, one row at a
 * time is as fast) */
#define FAST_SHORT 15
#define FAST_LANES 8
/* Forward rows longer than FAST_SHORT are taken up to ROW_BLOCK rows and ROW_BLOCK_ELEMS elements at
 * a time (fast_fwd_rows) */
#define ROW_BLOCK 64
#define ROW_BLOCK_ELEMS 2048
/* Float32 rows of at least FUSED_MIN_ROW take exp_sum_row_avx512 (where it runs) for their exponentials and
 * sum, one row at a time (shorter ones keep the block's one exp loop, without a masked tail per row);
 * SOFTMAX_FUSED_EXP_SUM 0 turns it off */
#define FUSED_MIN_ROW 64
#define SOFTMAX_FUSED_EXP_SUM 1
/* res = Σ TERM (of the float32 or float64 element, the index kq) over a row of n: float32 rows of FUSED_MIN_ROW and
 * more add their terms four at a time in float32 first (core/sum_pairs.h's AG_SUM16_QUADS_THEN16: Σ e of the
 * forward, the fused AVX-512 pass's order, and log_softmax's adjoint's Σ dy over rows), within
 * (2·2^-24 + 2^-48 + (n/64 + 16)·2^-53)·Σ|t| of the exact sum of the float32 terms (test_reduce_paths'
 * test_softmax_row_sum_bounds, against long double): a quarter of the conversions and float64 additions, which
 * bounded the rows with the exponentials (AG_SUM8's chain before session 23): softmax's forward of [1000, 1000]
 * along dim 1, one thread, 292 -> 253 µs, log_softmax's 422 -> 326, its adjoint alone 371 -> 334 (session 23,
 * smq23).  Shorter float32 rows and float64 rows keep AG_SUM8, and so does softmax's adjoint's Σ dy·y (in this
 * order its adjoint alone took 262 µs against AG_SUM8's 247: the rows' tails of sixteens and singles).
 * SOFTMAX_SUM_QUADS 0: AG_SUM8 for every row (the fused AVX-512 pass then differs). */
#define SOFTMAX_SUM_QUADS 1
#define ROW_SUM_f32(res, n, TERM)                                                                   \
    do {                                                                                            \
        if (SOFTMAX_SUM_QUADS && (n) >= FUSED_MIN_ROW) AG_SUM16_QUADS_THEN16(res, n, kq, float, TERM); \
        else AG_SUM8(res, n, kq, (double)(TERM));                                                  \
    } while (0)
#define ROW_SUM_f64(res, n, TERM) AG_SUM8(res, n, kq, (double)(TERM))

/* f[i] = log(s[i]) for the n float64 sums (the float64 kernels' LOGS) */
static void logs_f64(const double *s, double *f, int64_t n) {
    for (int64_t i = 0; i < n; i++) f[i] = log(s[i]);
}

/* y[i] = vexpf_fma(x[i]) over a run (y may be x), the float32 kernels' exponentials over a block
 * (EXP_RUN): with AVX-512 sixteen at a time by vexpf_fma16 (the same bits; vscalefps for the
 * scaling: 0.18 ns a float in L1 on one thread, against 0.30 for the cloned vexpf_fma loop and
 * 0.47 for vexpf's), else a cloned loop. */
AG_VEC_CLONES static void vexpf_run_clones(const float *x, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = vexpf_fma(x[i]);
}
#ifdef AG_X86_INTRINSICS
__attribute__((target("avx512f"))) static void vexpf_run_avx512(const float *x, float *y, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, vexpf_fma16(_mm512_loadu_ps(x + i)));
    if (i < n) {
        const __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(y + i, m, vexpf_fma16(_mm512_maskz_loadu_ps(m, x + i)));
    }
}
/* lo and hi (float64, eight lanes each) += the low and high eight floats of e (acc[0..7] and acc[8..15] of
 * AG_SUM16_QUADS_THEN16) */
#define WIDEN_ADD(lo, hi, e)                                                                                        \
    do {                                                                                                            \
        lo = _mm512_add_pd(lo, _mm512_cvtps_pd(_mm512_castps512_ps256(e)));                                         \
        hi = _mm512_add_pd(hi, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(e), 1))));  \
    } while (0)
/* Sixteen floats of exp_sum_body at k: e = vexpf_fma16(x - m) stored to y; with next also the next row's max and NaN
 * flag from xn, and with yp the previous row's yp = yp·f.  Returns e. */
__attribute__((target("avx512f"), always_inline)) static inline __m512 exp_sum_step(const float *x, __m512 mv, float *y,
                                                                                   bool next, const float *xn,
                                                                                   __m512 *mx, __mmask16 *bad,
                                                                                   float *yp, __m512 fv, int64_t k) {
    const __m512 e = vexpf_fma16(_mm512_sub_ps(_mm512_loadu_ps(x + k), mv));
    _mm512_storeu_ps(y + k, e);
    if (next) {
        const __m512 v = _mm512_loadu_ps(xn + k);
        *mx = _mm512_max_ps(*mx, v);
        *bad |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
        if (yp) _mm512_storeu_ps(yp + k, _mm512_mul_ps(_mm512_loadu_ps(yp + k), fv));
    }
    return e;
}
/* One float32 row of fast_fwd_rows with AVX-512, its middle steps fused: y = vexpf_fma(x - m) (x - m in float32, as
 * stored and reloaded there) and the float64 sum of y in AG_SUM16_QUADS_THEN16's order (core/sum_pairs.h, the C
 * loop's ROW_SUM_f32) in one pass while the row is in L1: the four vectors of each block of 64 added in float32,
 * (e0 + e1) + (e2 + e3), then widened into two float64 vectors (acc[0..7], acc[8..15]); the blocks of sixteen
 * left widened alone; the last n mod 16 into the tail in order; ag__sum16_finish_512.  With next, the same loop
 * takes the next row xn's max *mn (of its non-NaN elements; any sign of a zero max, which x - m does not tell
 * apart) and sets *nan where xn holds a NaN, and with yp (not NULL) scales the previous row, yp[k] = yp[k]·fp.
 * (Apart, the three passes read and wrote y three times more; AG_SUM8's order before session 23 took two float64
 * additions and two conversions per sixteen floats, which bounded the loop with the exponentials.) */
__attribute__((target("avx512f"), always_inline)) static inline double exp_sum_body(const float *x, float m, float *y,
                                                                                   int64_t n, bool next,
                                                                                   const float *xn, float *mn,
                                                                                   int *nan, float *yp, float fp) {
    const __m512 mv = _mm512_set1_ps(m), fv = _mm512_set1_ps(fp);
    __m512d lo = _mm512_setzero_pd(), hi = _mm512_setzero_pd();
    __m512 mx = _mm512_set1_ps(-INFINITY);
    __mmask16 bad = 0;
    int64_t k = 0;
    for (; k + 64 <= n; k += 64) {
        const __m512 e0 = exp_sum_step(x, mv, y, next, xn, &mx, &bad, yp, fv, k),
                     e1 = exp_sum_step(x, mv, y, next, xn, &mx, &bad, yp, fv, k + 16),
                     e2 = exp_sum_step(x, mv, y, next, xn, &mx, &bad, yp, fv, k + 32),
                     e3 = exp_sum_step(x, mv, y, next, xn, &mx, &bad, yp, fv, k + 48);
        const __m512 q = _mm512_add_ps(_mm512_add_ps(e0, e1), _mm512_add_ps(e2, e3));
        WIDEN_ADD(lo, hi, q);
    }
    for (; k + 16 <= n; k += 16) {
        const __m512 e = exp_sum_step(x, mv, y, next, xn, &mx, &bad, yp, fv, k);
        WIDEN_ADD(lo, hi, e);
    }
    double tail = 0;
    if (k < n) {
        const __mmask16 mk = (__mmask16)((1u << (n - k)) - 1);
        _mm512_mask_storeu_ps(y + k, mk, vexpf_fma16(_mm512_sub_ps(_mm512_maskz_loadu_ps(mk, x + k), mv)));
        if (next) {
            const __m512 v = _mm512_maskz_loadu_ps(mk, xn + k);
            mx = _mm512_mask_max_ps(mx, mk, mx, v);
            bad |= _mm512_mask_cmp_ps_mask(mk, v, v, _CMP_UNORD_Q);
            if (yp) _mm512_mask_storeu_ps(yp + k, mk, _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, yp + k), fv));
        }
        for (; k < n; k++) tail += (double)y[k];
    }
    if (next) {
        *mn = _mm512_reduce_max_ps(mx);
        *nan = bad != 0;
    }
    return ag__sum16_finish_512(lo, hi, tail);
}
/* exp_sum_body over the row x (its max m, n >= FUSED_MIN_ROW) into y: returns Σ y */
__attribute__((target("avx512f"))) static double exp_sum_row_avx512(const float *x, float m, float *y, int64_t n) {
    return exp_sum_body(x, m, y, n, false, NULL, NULL, NULL, NULL, 1);
}
/* exp_sum_row_avx512 over the row x into y, returning the same sum with the same bits, while the same loop takes
 * the next row xn's max *mn and NaN flag *nan: the next row's loads from the last-level cache then overlap this
 * row's exponentials, which bound the loop, instead of a max pass of their own waiting on them.  With yp (not NULL)
 * the same loop also scales the previous row: yp[k] = yp[k]·fp (in L1, a pass of its own before). */
__attribute__((target("avx512f"))) static double exp_sum_row_next_avx512(const float *x, float m, float *y, int64_t n,
                                                                        const float *xn, float *mn, int *nan,
                                                                        float *yp, float fp) {
    return exp_sum_body(x, m, y, n, true, xn, mn, nan, yp, fp);
}
#endif
/* Whether exp_sum_row_avx512 runs here (the float32 rows' fused pass: where the CPU runs AVX-512 and this
 * thread's softmax backend is not AG__SOFTMAX_C_BLOCKS); the float64 rows never */
static bool exp_sum_rows_f32(void) {
#ifdef AG_X86_INTRINSICS
    return SOFTMAX_FUSED_EXP_SUM && AG_VEC_512() && backend != AG__SOFTMAX_C_BLOCKS;
#else
    return false;
#endif
}
#define exp_sum_rows_f64() false
#ifdef AG_X86_INTRINSICS
#define EXP_SUM_ROW_f32(x, m, y, n) exp_sum_row_avx512(x, m, y, n)
#else
#define EXP_SUM_ROW_f32(x, m, y, n) 0.0
#endif
#define EXP_SUM_ROW_f64(x, m, y, n) 0.0
/* Softmax's (not log_softmax's: there the sign of a zero max can show) float32 rows after the first of a
 * thread's rows take their max from the previous row's exp_sum_row_next_avx512, where the fused pass runs;
 * SOFTMAX_NEXT_MAX 0 turns it off */
#define SOFTMAX_NEXT_MAX 1
#define next_max_f32() SOFTMAX_NEXT_MAX
#define next_max_f64() 0
#ifdef AG_X86_INTRINSICS
#define EXP_SUM_NEXT_f32(x, m, y, n, xn, mn, nan, yp, fp) exp_sum_row_next_avx512(x, m, y, n, xn, mn, nan, yp, fp)
#else
#define EXP_SUM_NEXT_f32(x, m, y, n, xn, mn, nan, yp, fp) ((void)(yp), (void)(fp), 0.0)
#endif
#define EXP_SUM_NEXT_f64(x, m, y, n, xn, mn, nan, yp, fp) ((void)(yp), (void)(fp), 0.0)
static void vexpf_run(const float *x, float *y, int64_t n) {
#ifdef AG_X86_INTRINSICS
    if (AG_VEC_512()) {
        vexpf_run_avx512(x, y, n);
        return;
    }
#endif
    vexpf_run_clones(x, y, n);
}
/* y[i] = exp(x[i]) over a run (the float64 kernels' EXP_RUN) */
static void exp_run(const double *x, double *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = exp(x[i]);
}

#ifdef AG_X86_INTRINSICS
/* Float32 rows of exactly 8 with AVX-512, the forward of fast_fwd_short's steps on each row with
 * the same bits (its transposed copies in and out, scalar per element, were most of its time: softmax
 * of [32768, 8], one thread, see docs/benchmarks.md, session 10): a block of up to ROWS8_BLOCK rows
 * at a time, two rows a vector: each row's max by three in-row shuffles (any order gives the same
 * max, and the rows where order could matter, those with a NaN or no finite max, become NaN as
 * there), x - m into y; y = vexpf_fma(y) over the block (vexpf_run); eight rows' sums at once, AG_SUM8's
 * tree for n = 8 ((e0 + e4) + (e1 + e5)) + ((e2 + e6) + (e3 + e7)) made lane-wise in float64 by
 * shuffles; the block's (float)log Σ (vlogsum_fix) or (float)(1 / Σ); then y = (x - m) - f or y·f.
 * The rows [lo, hi) with hi - lo a multiple of 8. */
#define ROWS8_BLOCK 256
/* the max of each row of 8 of v (two rows), in each of its lanes */
__attribute__((target("avx512f"))) static inline __m512 rows8_max(__m512 v) {
    v = _mm512_max_ps(v, _mm512_shuffle_ps(v, v, 0xB1));    /* lanes 1 apart */
    v = _mm512_max_ps(v, _mm512_shuffle_ps(v, v, 0x4E));    /* 2 apart */
    return _mm512_max_ps(v, _mm512_shuffle_f32x4(v, v, 0xB1)); /* 4 apart */
}
/* the float64 sums of the eight rows of 8 at e, in row order, into s[0..7] */
__attribute__((target("avx512f"))) static inline void rows8_sums(const float *e, double *s) {
    __m512d a[4];
    for (int j = 0; j < 4; j++) { /* rows 2j, 2j + 1: lanes e_k + e_{k+4} */
        const __m512d d0 = _mm512_cvtps_pd(_mm256_loadu_ps(e + 16 * j)), d1 = _mm512_cvtps_pd(_mm256_loadu_ps(e + 16 * j + 8));
        a[j] = _mm512_add_pd(_mm512_shuffle_f64x2(d0, d1, 0x44), _mm512_shuffle_f64x2(d0, d1, 0xEE));
    }
    /* (a0 + a1), (a2 + a3): rows 0, 2, 0, 2, 1, 3, 1, 3, then 4, 6, 4, 6, 5, 7, 5, 7 */
    const __m512d b0 = _mm512_add_pd(_mm512_shuffle_pd(a[0], a[1], 0x00), _mm512_shuffle_pd(a[0], a[1], 0xFF));
    const __m512d b1 = _mm512_add_pd(_mm512_shuffle_pd(a[2], a[3], 0x00), _mm512_shuffle_pd(a[2], a[3], 0xFF));
    /* (a0 + a1) + (a2 + a3): rows 0, 2, 1, 3, 4, 6, 5, 7 */
    const __m512d c = _mm512_add_pd(_mm512_shuffle_f64x2(b0, b1, 0x88), _mm512_shuffle_f64x2(b0, b1, 0xDD));
    _mm512_storeu_pd(s, _mm512_permutexvar_pd(_mm512_setr_epi64(0, 2, 1, 3, 4, 6, 5, 7), c));
}
__attribute__((target("avx512f"))) static void fast_fwd_rows8_avx512(const float *restrict x, float *restrict y, int64_t lo,
                                                                     int64_t hi, bool is_log) {
    float m[ROWS8_BLOCK], f[ROWS8_BLOCK];
    double s[ROWS8_BLOCK];
    unsigned char bad[ROWS8_BLOCK];
    for (int64_t o = lo; o < hi; o += ROWS8_BLOCK) {
        const int w = (int)(hi - o < ROWS8_BLOCK ? hi - o : ROWS8_BLOCK);
        const float *restrict xb = x + o * 8;
        float *restrict yb = y + o * 8;
        for (int j = 0; j < w; j += 2) {
            const __m512 v = _mm512_loadu_ps(xb + 8 * j), mv = rows8_max(v);
            /* a NaN in the row, or a max that is not finite (m - m not 0) */
            const unsigned b = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q) |
                               (uint16_t)~_mm512_cmp_ps_mask(_mm512_sub_ps(mv, mv), _mm512_setzero_ps(), _CMP_EQ_OQ);
            bad[j] = (b & 0xFF) != 0, bad[j + 1] = (b >> 8) != 0;
            _mm512_mask_compressstoreu_ps(m + j, 0x0101, mv);
            _mm512_storeu_ps(yb + 8 * j, _mm512_sub_ps(v, mv));
        }
        vexpf_run(yb, yb, 8 * (int64_t)w);
        for (int j = 0; j < w; j += 8) rows8_sums(yb + 8 * j, s + j);
        if (is_log) vlogsum_fix(s, f, w);
        else
            for (int j = 0; j < w; j++) f[j] = (float)(1 / s[j]);
        for (int j = 0; j < w; j++) {
            const float *restrict xr = xb + 8 * j;
            float *restrict yr = yb + 8 * j;
            if (bad[j])
                for (int k = 0; k < 8; k++) yr[k] = NAN;
            else if (is_log)
                for (int k = 0; k < 8; k++) yr[k] = xr[k] - m[j] - f[j];
            else
                for (int k = 0; k < 8; k++) yr[k] *= f[j];
        }
    }
}
#endif

#ifdef AG_X86_INTRINSICS
/* fast_fwd_block_f32 by AVX-512 intrinsics, the same steps in the same order and so the same bits:
 * the w <= FAST_BLOCK lanes as nv vectors of sixteen (masks mk), each pass over k a load of nv
 * vectors; the exponentials by vexpf_fma16 (vexpf_fma's bits) and each lane's float64 sum
 * s += (double)e in k order, in registers (two vectors of eight doubles per sixteen lanes).  The
 * cloned C block took vexpf_fma inline, about 0.30 ns a float against vexpf_fma16's 0.18 (session
 * 15), which made softmax along dim 0 of [1000, 1000] bound by its exp, not by memory. */
__attribute__((always_inline, target("avx512f"))) static inline void
fast_fwd_block_f32_512_body(const float *restrict x, float *restrict y, int64_t n, int64_t inner, int w, bool is_log,
                            const int nv, const __mmask16 *mk) {
    __m512 m[FAST_BLOCK / 16];
    __m512d slo[FAST_BLOCK / 16], shi[FAST_BLOCK / 16];
    __m512i nan[FAST_BLOCK / 16]; /* all ones in a lane that met a NaN (a vector: masks would go through GPRs) */
    __mmask16 bad[FAST_BLOCK / 16];
    const __m512 zero = _mm512_setzero_ps();
    const __m512i ones = _mm512_set1_epi32(-1);
    for (int v = 0; v < nv; v++) m[v] = _mm512_set1_ps(-INFINITY), nan[v] = _mm512_setzero_si512();
    for (int64_t k = 0; k < n; k++) { /* m = x > m ? x : m (maxps's operand order), NaN lanes marked */
        const float *xk = x + k * inner;
        for (int v = 0; v < nv; v++) {
            const __m512 xv = _mm512_maskz_loadu_ps(mk[v], xk + 16 * v);
            m[v] = _mm512_max_ps(xv, m[v]);
            nan[v] = _mm512_mask_mov_epi32(nan[v], _mm512_cmp_ps_mask(xv, xv, _CMP_UNORD_Q), ones);
        }
    }
    for (int v = 0; v < nv; v++) { /* a max that is not finite (m - m not 0) too; bad lanes shift by 0 */
        bad[v] = _mm512_test_epi32_mask(nan[v], nan[v]) |
                 _mm512_cmp_ps_mask(_mm512_sub_ps(m[v], m[v]), zero, _CMP_NEQ_UQ);
        m[v] = _mm512_mask_mov_ps(m[v], bad[v], zero);
        slo[v] = shi[v] = _mm512_setzero_pd();
    }
    for (int64_t k = 0; k < n; k++) { /* y = exp(x - m), s += (double)y */
        const float *xk = x + k * inner;
        float *yk = y + k * inner;
        for (int v = 0; v < nv; v++) {
            const __m512 e = vexpf_fma16(_mm512_sub_ps(_mm512_maskz_loadu_ps(mk[v], xk + 16 * v), m[v]));
            _mm512_mask_storeu_ps(yk + 16 * v, mk[v], e);
            slo[v] = _mm512_add_pd(slo[v], _mm512_cvtps_pd(_mm512_castps512_ps256(e)));
            shi[v] = _mm512_add_pd(shi[v], _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(e), 1))));
        }
    }
    double s[FAST_BLOCK];
    float f[FAST_BLOCK];
    for (int v = 0; v < nv; v++) _mm512_storeu_pd(s + 16 * v, slo[v]), _mm512_storeu_pd(s + 16 * v + 8, shi[v]);
    if (is_log) vlogsum_fix(s, f, w);
    else
        for (int i = 0; i < w; i++) f[i] = (float)(1 / s[i]);
    __m512 fv[FAST_BLOCK / 16];
    for (int v = 0; v < nv; v++) fv[v] = _mm512_maskz_loadu_ps(mk[v], f + 16 * v);
    const __m512 qnan = _mm512_set1_ps(NAN);
    for (int64_t k = 0; k < n; k++) { /* y = (x - m) - f or y·f; NaN lanes all NaN */
        const float *xk = x + k * inner;
        float *yk = y + k * inner;
        for (int v = 0; v < nv; v++) {
            const __m512 r = is_log ? _mm512_sub_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(mk[v], xk + 16 * v), m[v]), fv[v])
                                    : _mm512_mul_ps(_mm512_maskz_loadu_ps(mk[v], yk + 16 * v), fv[v]);
            _mm512_mask_storeu_ps(yk + 16 * v, mk[v], _mm512_mask_mov_ps(r, bad[v], qnan));
        }
    }
}
__attribute__((target("avx512f"))) static void fast_fwd_block_f32_512(const float *restrict x, float *restrict y, int64_t n,
                                                                      int64_t inner, int w, bool is_log) {
    static const __mmask16 full[FAST_BLOCK / 16] = {0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF};
    if (w == FAST_BLOCK) {
        fast_fwd_block_f32_512_body(x, y, n, inner, w, is_log, FAST_BLOCK / 16, full);
        return;
    }
    __mmask16 mk[FAST_BLOCK / 16];
    const int nv = (w + 15) / 16;
    for (int v = 0; v < nv; v++) mk[v] = w - 16 * v >= 16 ? 0xFFFF : (__mmask16)((1u << (w - 16 * v)) - 1);
    fast_fwd_block_f32_512_body(x, y, n, inner, w, is_log, nv, mk);
}
#endif

#ifdef AG_X86_INTRINSICS
/* The float32 forward blocks of fast_items with AVX-512 as a pipeline over steps of PIPE_W lanes (each block's
 * full steps; the lanes left, a last block's 40 - 32 = 8 of [1000, 1000] along dim 0, by
 * fast_fwd_block_f32_512), the steps of fast_fwd_block_f32_512 lane for lane and so its bits: step j's
 * exponentials and sums (bound by vexpf_fma16's multiply-adds, x in L2 after its max pass) in one pass over k
 * with step j + 1's max pass (its x read from the last-level cache while the exponentials run) and step
 * j - 1's last pass (y·f or (x - m) - f, its y or x still in L2); the first max pass and the last step's last
 * pass alone.  Apart, the max pass waited on the cache and the last pass on L2 with the multiply-add units
 * idle.  Steps of 32 lanes: with 64 the pipeline's registers (maxima, sums, the next maxima, the factors)
 * and vexpf's constants spilled.  The max pass marks a lane that met a NaN by a sum of x - x (NaN after a NaN
 * or ±inf: two additions a vector, where a compare and a masked move competed with the max); a lane so
 * marked whose max is finite (a -inf beside finite values, or a NaN) is read again for a NaN.  The
 * log_softmax exponentials are not stored (its last pass reads x).  SOFTMAX_BLOCK_PIPELINE 0 turns it off. */
#define SOFTMAX_BLOCK_PIPELINE 1
#define PIPE_W 32 /* lanes a step */
#define PIPE_NV (PIPE_W / 16)
/* m = max(x, m) (maxps's operand order, k ascending) and z += x - x over a step's vectors at xk */
#define PIPE_MAX_STEP(xk, m, z)                                                                     \
    for (int v = 0; v < PIPE_NV; v++) {                                                             \
        const __m512 xv_ = _mm512_loadu_ps((xk) + 16 * v);                                          \
        m[v] = _mm512_max_ps(xv_, m[v]);                                                            \
        z[v] = _mm512_add_ps(z[v], _mm512_sub_ps(xv_, xv_));                                        \
    }
/* A step's last pass over one row, at xq and yq: y = (x - m) - f (log_softmax) or y·f, the lanes in bad NaN */
__attribute__((always_inline, target("avx512f"))) static inline void
pipe_last(const float *xq, float *yq, const __m512 *m, const __m512 *f, const __mmask16 *bad, const bool is_log) {
    const __m512 qnan = _mm512_set1_ps(NAN);
    for (int v = 0; v < PIPE_NV; v++) {
        const __m512 r = is_log ? _mm512_sub_ps(_mm512_sub_ps(_mm512_loadu_ps(xq + 16 * v), m[v]), f[v])
                                : _mm512_mul_ps(_mm512_loadu_ps(yq + 16 * v), f[v]);
        _mm512_storeu_ps(yq + 16 * v, _mm512_mask_mov_ps(r, bad[v], qnan));
    }
}
/* The lanes of the step at xb (n elements a stride inner apart) whose output is NaN, as
 * fast_fwd_block_f32_512 marks them (a NaN seen, or a max m that is not finite), from m and the x - x sums
 * z; the bad lanes' m set to 0 */
__attribute__((target("avx512f"))) static inline void pipe_bad(const float *xb, int64_t n, int64_t inner, __m512 *m,
                                                               const __m512 *z, __mmask16 *bad) {
    const __m512 zero = _mm512_setzero_ps();
    for (int v = 0; v < PIPE_NV; v++) {
        const __mmask16 inf_m = _mm512_cmp_ps_mask(_mm512_sub_ps(m[v], m[v]), zero, _CMP_NEQ_UQ);
        __mmask16 nan = 0;
        if (_mm512_cmp_ps_mask(z[v], z[v], _CMP_UNORD_Q) & (__mmask16)~inf_m) /* a NaN, or only a -inf? */
            for (int64_t k = 0; k < n; k++) {
                const __m512 xv = _mm512_loadu_ps(xb + k * inner + 16 * v);
                nan |= _mm512_cmp_ps_mask(xv, xv, _CMP_UNORD_Q);
            }
        bad[v] = nan | inf_m;
        m[v] = _mm512_mask_mov_ps(m[v], bad[v], zero);
    }
}
/* Lanes of block j of fast_items (lanes from (j % blocks)·FAST_BLOCK of inner) */
static inline int64_t pipe_width(int64_t j, int64_t blocks, int64_t inner) {
    const int64_t i0 = j % blocks * FAST_BLOCK;
    return inner - i0 < FAST_BLOCK ? inner - i0 : FAST_BLOCK;
}
/* The first element of step q of block j */
static inline int64_t pipe_at(ag_lanes L, int64_t blocks, int64_t j, int64_t q) {
    return j / blocks * L.n * L.inner + j % blocks * FAST_BLOCK + q * PIPE_W;
}
/* Step (*j, *q) moved to the first full step at or after it in the blocks [.., hi); false when none */
static inline bool pipe_seek(int64_t blocks, int64_t inner, int64_t hi, int64_t *j, int64_t *q) {
    while (*j < hi && (*q + 1) * PIPE_W > pipe_width(*j, blocks, inner)) ++*j, *q = 0;
    return *j < hi;
}
/* y = exp(x - m)·(1/Σ) or (x - m) - log Σ over the full steps of the blocks [lo, hi) */
__attribute__((always_inline, target("avx512f"))) static inline void
fast_fwd_steps_f32_512_body(const float *x, float *y, ag_lanes L, int64_t lo, int64_t hi, const bool is_log) {
    const int64_t n = L.n, inner = L.inner, blocks = (L.inner + FAST_BLOCK - 1) / FAST_BLOCK;
    int64_t j = lo, q = 0;
    if (!pipe_seek(blocks, inner, hi, &j, &q)) return;
    __m512 m[PIPE_NV], z[PIPE_NV], mp[PIPE_NV], fp[PIPE_NV];
    __mmask16 badp[PIPE_NV];
    for (int v = 0; v < PIPE_NV; v++)
        m[v] = _mm512_set1_ps(-INFINITY), z[v] = _mm512_setzero_ps(), mp[v] = fp[v] = _mm512_setzero_ps(), badp[v] = 0;
    int64_t at = pipe_at(L, blocks, j, q), prev = -1; /* step j - 1's first element, -1 before the first */
    for (int64_t k = 0; k < n; k++) PIPE_MAX_STEP(x + at + k * inner, m, z)
    for (;;) {
        ++q;
        const bool has_next = pipe_seek(blocks, inner, hi, &j, &q), has_prev = prev >= 0;
        const int64_t next = has_next ? pipe_at(L, blocks, j, q) : at;
        __mmask16 bad[PIPE_NV];
        pipe_bad(x + at, n, inner, m, z, bad);
        __m512d slo[PIPE_NV], shi[PIPE_NV];
        __m512 mn[PIPE_NV], zn[PIPE_NV];
        for (int v = 0; v < PIPE_NV; v++)
            slo[v] = shi[v] = _mm512_setzero_pd(), mn[v] = _mm512_set1_ps(-INFINITY), zn[v] = _mm512_setzero_ps();
        for (int64_t k = 0; k < n; k++) {
            const float *xk = x + at + k * inner;
            float *yk = y + at + k * inner;
            for (int v = 0; v < PIPE_NV; v++) { /* y = exp(x - m), s += (double)y */
                const __m512 e = vexpf_fma16(_mm512_sub_ps(_mm512_loadu_ps(xk + 16 * v), m[v]));
                if (!is_log) _mm512_storeu_ps(yk + 16 * v, e);
                slo[v] = _mm512_add_pd(slo[v], _mm512_cvtps_pd(_mm512_castps512_ps256(e)));
                shi[v] = _mm512_add_pd(shi[v], _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(e), 1))));
            }
            if (has_next) PIPE_MAX_STEP(x + next + k * inner, mn, zn)
            if (has_prev) pipe_last(x + prev + k * inner, y + prev + k * inner, mp, fp, badp, is_log); /* step j - 1 */
        }
        double s[PIPE_W];
        float f[PIPE_W];
        for (int v = 0; v < PIPE_NV; v++) _mm512_storeu_pd(s + 16 * v, slo[v]), _mm512_storeu_pd(s + 16 * v + 8, shi[v]);
        if (is_log) vlogsum_fix(s, f, PIPE_W);
        else
            for (int i = 0; i < PIPE_W; i++) f[i] = (float)(1 / s[i]);
        for (int v = 0; v < PIPE_NV; v++)
            mp[v] = m[v], fp[v] = _mm512_loadu_ps(f + 16 * v), badp[v] = bad[v], m[v] = mn[v], z[v] = zn[v];
        prev = at, at = next;
        if (!has_next) break;
    }
    for (int64_t k = 0; k < n; k++) pipe_last(x + prev + k * inner, y + prev + k * inner, mp, fp, badp, is_log);
}
__attribute__((target("avx512f"))) static void fast_fwd_steps_f32_512(const float *x, float *y, ag_lanes L, int64_t lo,
                                                                      int64_t hi, bool is_log) {
    if (is_log) fast_fwd_steps_f32_512_body(x, y, L, lo, hi, true);
    else fast_fwd_steps_f32_512_body(x, y, L, lo, hi, false);
}
#endif

/* Whether the float32 forward blocks [lo, hi) of fast_items were taken here: where the CPU runs AVX-512 and this
 * thread's softmax backend is not AG__SOFTMAX_C_BLOCKS, their full steps of PIPE_W lanes by
 * fast_fwd_steps_f32_512 and each block's lanes left by fast_fwd_block_f32_512 (the same bits either way); the
 * float64 blocks never. */
static bool blocks512_f32(const float *x, float *y, ag_lanes L, int64_t lo, int64_t hi, bool is_log) {
#ifdef AG_X86_INTRINSICS
    if (SOFTMAX_BLOCK_PIPELINE && AG_VEC_512() && backend != AG__SOFTMAX_C_BLOCKS) {
        const int64_t blocks = (L.inner + FAST_BLOCK - 1) / FAST_BLOCK;
        fast_fwd_steps_f32_512(x, y, L, lo, hi, is_log);
        for (int64_t j = lo; j < hi; j++) {
            const int64_t w = pipe_width(j, blocks, L.inner), done = w / PIPE_W * PIPE_W, at = pipe_at(L, blocks, j, 0) + done;
            if (done < w) fast_fwd_block_f32_512(x + at, y + at, L.n, L.inner, (int)(w - done), is_log);
        }
        return true;
    }
#endif
    (void)x, (void)y, (void)L, (void)lo, (void)hi, (void)is_log;
    return false;
}
#define blocks512_f64(x, y, L, lo, hi, is_log) false

/* Whether fast_fwd_block_f32_512 took the block (where the CPU runs AVX-512 and this thread's
 * softmax backend is not AG__SOFTMAX_C_BLOCKS); the float64 blocks always take the C kernel. */
static bool block512_f32(const float *x, float *y, int64_t n, int64_t inner, int w, bool is_log) {
#ifdef AG_X86_INTRINSICS
    if (AG_VEC_512() && backend != AG__SOFTMAX_C_BLOCKS) {
        fast_fwd_block_f32_512(x, y, n, inner, w, is_log);
        return true;
    }
#endif
    (void)x, (void)y, (void)n, (void)inner, (void)w, (void)is_log;
    return false;
}
#define block512_f64(x, y, n, inner, w, is_log) false

/* The rows [lo, cut) of n that fast_fwd_rows8_avx512 took (the multiple of 8 rows from lo where n is
 * 8 and the CPU runs AVX-512; none elsewhere), returning cut. */
static int64_t rows8_f32(const float *x, float *y, int64_t n, int64_t lo, int64_t hi, bool is_log) {
#ifdef AG_X86_INTRINSICS
    if (n == 8 && AG_VEC_512()) {
        const int64_t cut = lo + (hi - lo) / 8 * 8;
        fast_fwd_rows8_avx512(x, y, lo, cut, is_log);
        return cut;
    }
#endif
    (void)x, (void)y, (void)n, (void)hi, (void)is_log;
    return lo;
}
#define rows8_f64(x, y, n, lo, hi, is_log) (lo)

#define FAST_KERNELS(SUF, T, EXP, EXP_RUN, LOGS, CLONES)                                                                   \
    /* The row's max, and *bad = whether it holds a NaN (one vectorised pass). */                  \
    AG_VEC_CLONES static T fast_row_max_##SUF(const T *restrict x, int64_t n, int *bad) {          \
        T m = -INFINITY;                                                                            \
        int nan_seen = 0;                                                                           \
        _Pragma("omp simd reduction(max : m) reduction(| : nan_seen)")                               \
        for (int64_t k = 0; k < n; k++) {                                                           \
            m = x[k] > m ? x[k] : m;                                                                \
            nan_seen |= x[k] != x[k];                                                               \
        }                                                                                           \
        AG_SIMD_EXTREME_FIX(T, m, n, k, x[k], AG_GREATER, -INFINITY);                               \
        *bad = nan_seen;                                                                              \
        return m;                                                                                   \
    }                                                                                               \
    /* The rows [lo, hi) of n, blocks of up to ROW_BLOCK rows and ROW_BLOCK_ELEMS elements (or one  \
     * longer row) at a time: each row's max (a NaN, a +inf (inf - inf) or only -inf make the row   \
     * NaN, as the reference) and x - m (in [-inf, 0]) into y; y = EXP(y) over the whole block, one \
     * loop without a tail per row; each row's ROW_SUM s; the block's f = (T)log(s) (LOGS:          \
     * vectorised for float32, ops/vlogsum.h) or (T)(1 / s); then y = (x - m) - f or y·f.  The      \
     * same operations as row by row, the same bits.  Cloned for AVX-512 (sixteen floats a vector:  \
     * the exp is most of the time) and AVX2.  (log_softmax of [16384, 16] float32, one thread:     \
     * libm's log, one call a row, was a third of the time; see docs/benchmarks.md, session 9.)     \
     * Softmax's fused rows after the first take their max from the last row's pass (next), whose  \
     * pass also scales the row before it.                                                        \
     * With lse (the fused cross-entropy: softmax, is_log false) also lse = m + log Σ (vlog_ge1),   \
     * and rows with a NaN or an infinity go to softmax_row_lse (its NaN and ±inf results). */     \
    CLONES static void fast_fwd_rows_##SUF(const T *restrict x, T *restrict y, int64_t n, int64_t lo, int64_t hi,\
                                           bool is_log, double *lse) {                              \
        const int64_t per = n >= ROW_BLOCK_ELEMS / ROW_BLOCK ? (n >= ROW_BLOCK_ELEMS ? 1 : ROW_BLOCK_ELEMS / n) : ROW_BLOCK;\
        const bool fused = exp_sum_rows_##SUF() && n >= FUSED_MIN_ROW;                              \
        const bool next = fused && next_max_##SUF() && !is_log && !lse; /* the max came with the last row */ \
        T next_m = -INFINITY, prev_f = 1; /* and the last row, to be scaled by prev_f in this row's pass */ \
        T *prev_y = NULL;                                                                           \
        int next_nan = 0;                                                                           \
        for (int64_t o = lo; o < hi; o += per) {                                                    \
            const int w = (int)(hi - o < per ? hi - o : per);                                       \
            T m[ROW_BLOCK], f[ROW_BLOCK];                                                           \
            int bad[ROW_BLOCK];                                                                     \
            double s[ROW_BLOCK];                                                                    \
            const T *restrict xb = x + o * n;                                                       \
            T *restrict yb = y + o * n;                                                             \
            for (int j = 0; j < w; j++) {                                                           \
                const T *restrict xr = xb + j * n;                                                  \
                T *restrict yr = yb + j * n, mr = -INFINITY;                                        \
                int nan = 0;                                                                        \
                if (next && o + j > lo)                                                             \
                    mr = next_m, nan = next_nan;                                                    \
                else {                                                                              \
                    _Pragma("omp simd reduction(max : mr) reduction(| : nan)")                      \
                    for (int64_t k = 0; k < n; k++) {                                               \
                        mr = xr[k] > mr ? xr[k] : mr;                                               \
                        nan |= xr[k] != xr[k];                                                      \
                    }                                                                               \
                    AG_SIMD_EXTREME_FIX(T, mr, n, k, xr[k], AG_GREATER, -INFINITY);                 \
                }                                                                                   \
                bad[j] = nan | !isfinite(mr), m[j] = mr;                                            \
                if (next) { /* the last row takes its own row as the next: in L1, its max unused */ \
                    s[j] = EXP_SUM_NEXT_##SUF(xr, mr, yr, n, o + j + 1 < hi ? xr + n : xr, &next_m, &next_nan, \
                                              prev_y, prev_f);                                      \
                    prev_y = yr, prev_f = (T)(1 / (bad[j] ? 1 : s[j]));                             \
                } else if (fused)                                                                   \
                    s[j] = EXP_SUM_ROW_##SUF(xr, mr, yr, n);                                        \
                else                                                                                \
                    for (int64_t k = 0; k < n; k++) yr[k] = xr[k] - mr;                             \
            }                                                                                       \
            if (!fused) {                                                                           \
                EXP_RUN(yb, yb, w * n);                                                             \
                for (int j = 0; j < w; j++) {                                                       \
                    const T *restrict yr = yb + j * n;                                              \
                    ROW_SUM_##SUF(s[j], n, yr[kq]);                                                 \
                }                                                                                   \
            }                                                                                       \
            for (int j = 0; j < w; j++) s[j] = bad[j] ? 1 : s[j];                                   \
            if (is_log) LOGS(s, f, w);                                                              \
            else                                                                                    \
                for (int j = 0; j < w; j++) f[j] = (T)(1 / s[j]);                                   \
            if (lse) {                                                                              \
                double lg[ROW_BLOCK];                                                               \
                for (int j = 0; j < w; j++) lg[j] = vlog_ge1(s[j]);                                 \
                for (int j = 0; j < w; j++) lse[o + j] = (double)m[j] + lg[j];                      \
            }                                                                                       \
            for (int j = 0; j < w; j++) {                                                           \
                const T *restrict xr = xb + j * n;                                                  \
                T *restrict yr = yb + j * n;                                                        \
                if (bad[j] && lse)                                                                  \
                    softmax_row_lse_##SUF(xr, yr, n, &lse[o + j]);                                  \
                else if (bad[j])                                                                    \
                    for (int64_t k = 0; k < n; k++) yr[k] = NAN;                                    \
                else if (is_log)                                                                    \
                    for (int64_t k = 0; k < n; k++) yr[k] = xr[k] - m[j] - f[j];                    \
                else if (!next || o + j + 1 == hi) /* (next: the next row's pass scales this one) */ \
                    for (int64_t k = 0; k < n; k++) yr[k] *= f[j];                                  \
            }                                                                                       \
        }                                                                                           \
    }                                                                                               \
    /* fast_fwd_rows over the rows [lo, hi) of n <= FAST_SHORT, FAST_LANES rows at a time, copied   \
     * transposed (t[k][j]: element k of row o + j) so that each step is a loop over the rows that  \
     * vectorises; each row's max, exponentials, AG_SUM8 and scaling made as fast_fwd_rows makes   \
     * them: the same bits, without a row's own short vector loops and their tails ([87381, 3]     \
     * float32 softmax, one thread: 6.9 -> 1.6 ms; [32768, 8] 1.4 -> 1.1; [17476, 15] 1.8 -> 1.0) */ \
    AG_VEC_CLONES static void fast_fwd_short_##SUF(const T *restrict x, T *restrict y, int64_t n, int64_t lo, \
                                                   int64_t hi, bool is_log) {                       \
        int64_t o = lo;                                                                             \
        for (; o + FAST_LANES <= hi; o += FAST_LANES) {                                             \
            const T *restrict xr = x + o * n;                                                       \
            T *restrict yr = y + o * n;                                                             \
            T t[FAST_SHORT][FAST_LANES], e[FAST_SHORT][FAST_LANES], m[FAST_LANES], f[FAST_LANES];   \
            int bad[FAST_LANES];                                                                    \
            double acc[8][FAST_LANES], tail[FAST_LANES];                                            \
            for (int j = 0; j < FAST_LANES; j++) {                                                  \
                m[j] = -INFINITY, bad[j] = 0, tail[j] = 0;                                          \
                for (int i = 0; i < 8; i++) acc[i][j] = 0;                                          \
            }                                                                                       \
            for (int j = 0; j < FAST_LANES; j++)                                                    \
                for (int64_t k = 0; k < n; k++) t[k][j] = xr[j * n + k];                            \
            for (int64_t k = 0; k < n; k++)                                                         \
                for (int j = 0; j < FAST_LANES; j++) {                                              \
                    m[j] = t[k][j] > m[j] ? t[k][j] : m[j];                                         \
                    bad[j] |= t[k][j] != t[k][j];                                                   \
                }                                                                                   \
            for (int64_t k = 0; k < n; k++)                                                         \
                for (int j = 0; j < FAST_LANES; j++) e[k][j] = EXP(t[k][j] - m[j]);                 \
            int64_t k = 0;                                                                          \
            for (; k < n - n % 8; k += 8)                                                           \
                for (int i = 0; i < 8; i++)                                                         \
                    for (int j = 0; j < FAST_LANES; j++) acc[i][j] += (double)e[k + i][j];          \
            for (; k < n; k++)                                                                      \
                for (int j = 0; j < FAST_LANES; j++) tail[j] += (double)e[k][j];                    \
            double s[FAST_LANES];                                                                   \
            for (int j = 0; j < FAST_LANES; j++) {                                                  \
                s[j] = ((acc[0][j] + acc[4][j]) + (acc[1][j] + acc[5][j])) +                        \
                       ((acc[2][j] + acc[6][j]) + (acc[3][j] + acc[7][j])) + tail[j];               \
                bad[j] |= !isfinite(m[j]); /* a NaN, a +inf or only -inf: NaN, as fast_fwd_rows */  \
            }                                                                                       \
            if (is_log) LOGS(s, f, FAST_LANES);                                                     \
            else                                                                                    \
                for (int j = 0; j < FAST_LANES; j++) f[j] = (T)(1 / s[j]);                          \
            for (int64_t k2 = 0; k2 < n; k2++)                                                      \
                for (int j = 0; j < FAST_LANES; j++)                                                \
                    e[k2][j] = bad[j] ? (T)NAN : is_log ? t[k2][j] - m[j] - f[j] : e[k2][j] * f[j]; \
            for (int j = 0; j < FAST_LANES; j++)                                                    \
                for (int64_t k2 = 0; k2 < n; k2++) yr[j * n + k2] = e[k2][j];                       \
        }                                                                                           \
        if (o < hi) fast_fwd_rows_##SUF(x, y, n, o, hi, is_log, NULL);                                 \
    }                                                                                               \
    /* w <= FAST_BLOCK lanes from x, y (lane i at i, element k of a lane at k·inner); cloned as     \
     * fast_fwd_rows (the exp is most of the time), the logs through LOGS (libm's bits) */         \
    CLONES static void fast_fwd_block_##SUF(const T *restrict x, T *restrict y, int64_t n, int64_t inner, int w, \
                                     bool is_log) {                                                 \
        T m[FAST_BLOCK], f[FAST_BLOCK];                                                             \
        int bad[FAST_BLOCK];                                                                        \
        double s[FAST_BLOCK];                                                                       \
        for (int i = 0; i < w; i++) m[i] = -INFINITY, bad[i] = 0, s[i] = 0;                          \
        for (int64_t k = 0; k < n; k++) {                                                           \
            const T *xk = x + k * inner;                                                            \
            for (int i = 0; i < w; i++) {                                                           \
                m[i] = xk[i] > m[i] ? xk[i] : m[i];                                                 \
                bad[i] |= xk[i] != xk[i];                                                           \
            }                                                                                       \
        }                                                                                           \
        for (int i = 0; i < w; i++) bad[i] |= !isfinite(m[i]), m[i] = bad[i] ? 0 : m[i];            \
        for (int64_t k = 0; k < n; k++) {                                                           \
            const T *xk = x + k * inner;                                                            \
            T *yk = y + k * inner;                                                                  \
            for (int i = 0; i < w; i++) {                                                           \
                yk[i] = EXP(xk[i] - m[i]);                                                          \
                s[i] += (double)yk[i];                                                              \
            }                                                                                       \
        }                                                                                           \
        if (is_log) LOGS(s, f, w);                                                                  \
        else                                                                                        \
            for (int i = 0; i < w; i++) f[i] = (T)(1 / s[i]);                                       \
        for (int64_t k = 0; k < n; k++) {                                                           \
            const T *xk = x + k * inner;                                                            \
            T *yk = y + k * inner;                                                                  \
            if (is_log)                                                                             \
                for (int i = 0; i < w; i++) yk[i] = xk[i] - m[i] - f[i];                            \
            else                                                                                    \
                for (int i = 0; i < w; i++) yk[i] *= f[i];                                          \
        }                                                                                           \
        for (int i = 0; i < w; i++) /* NaN lanes, as in fast_fwd_rows */                            \
            for (int64_t k = 0; bad[i] && k < n; k++) y[k * inner + i] = NAN;                       \
    }                                                                                               \
    /* softmax dx = y·(dy - Σ dy·y);  log_softmax dx = dy - exp(y)·Σ dy; the rows [lo, hi) of n, in \
     * blocks as fast_fwd_rows (log_softmax: exp(y) over a block in one loop, then each row's ROW_SUM \
     * of dy and dx; softmax: AG_SUM8 of dy·y; a NaN row, all NaN, makes its Σ NaN: y[0] tells),     \
     * cloned as fast_fwd_rows */                                                                   \
    CLONES static void fast_bwd_rows_##SUF(T *restrict gx, const T *restrict y, const T *restrict g, int64_t n,\
                                           int64_t lo, int64_t hi, bool is_log) {                   \
        const int64_t per = n >= ROW_BLOCK_ELEMS / ROW_BLOCK ? (n >= ROW_BLOCK_ELEMS ? 1 : ROW_BLOCK_ELEMS / n) : ROW_BLOCK;\
        for (int64_t o = lo; o < hi; o += per) {                                                    \
            const int64_t w = hi - o < per ? hi - o : per, at = o * n;                              \
            if (is_log) EXP_RUN(y + at, gx + at, w * n);                                            \
            for (int64_t j = 0; j < w; j++) {                                                       \
                const T *restrict yr = y + at + j * n, *restrict gr = g + at + j * n;               \
                T *restrict dr = gx + at + j * n;                                                   \
                double s;                                                                           \
                if (is_log) {                                                                       \
                    ROW_SUM_##SUF(s, n, gr[kq]);                                                    \
                    if (n > 0 && isnan(yr[0])) s = NAN;                                             \
                    for (int64_t k = 0; k < n; k++) dr[k] = gr[k] - dr[k] * (T)s;                   \
                } else {                                                                            \
                    AG_SUM8(s, n, kq, (double)(gr[kq] * yr[kq])); /* (ROW_SUM: 6% slower, smq23) */ \
                    for (int64_t k = 0; k < n; k++) dr[k] = yr[k] * (gr[k] - (T)s);                 \
                }                                                                                   \
            }                                                                                       \
        }                                                                                           \
    }                                                                                               \
    CLONES static void fast_bwd_block_##SUF(T *restrict gx, const T *restrict y, const T *restrict g, int64_t n, \
                                     int64_t inner, int w, bool is_log) {                           \
        double s[FAST_BLOCK];                                                                       \
        T f[FAST_BLOCK];                                                                            \
        for (int i = 0; i < w; i++) s[i] = 0;                                                       \
        for (int64_t k = 0; k < n; k++) {                                                           \
            const T *gk = g + k * inner, *yk = y + k * inner;                                       \
            if (is_log)                                                                             \
                for (int i = 0; i < w; i++) s[i] += (double)gk[i];                                  \
            else                                                                                    \
                for (int i = 0; i < w; i++) s[i] += (double)(gk[i] * yk[i]);                        \
        }                                                                                           \
        for (int i = 0; i < w; i++) f[i] = is_log && n > 0 && isnan(y[i]) ? (T)NAN : (T)s[i];       \
        for (int64_t k = 0; k < n; k++) {                                                           \
            const T *gk = g + k * inner, *yk = y + k * inner;                                       \
            T *dk = gx + k * inner;                                                                 \
            if (is_log)                                                                             \
                for (int i = 0; i < w; i++) dk[i] = gk[i] - EXP(yk[i]) * f[i];                      \
            else                                                                                    \
                for (int i = 0; i < w; i++) dk[i] = yk[i] * (gk[i] - f[i]);                         \
        }                                                                                           \
    }                                                                                               \
    /* Work item j of [0, items): row j, or block (o, b) of the lanes (fwd when gx is NULL) */     \
    static void fast_items_##SUF(T *gx, const T *y, const T *xg, ag_lanes L, bool is_log, int64_t lo, \
                                 int64_t hi) {                                                      \
        const int64_t blocks = (L.inner + FAST_BLOCK - 1) / FAST_BLOCK;                             \
        if (L.inner == 1 && !gx && L.n <= FAST_SHORT) {                                             \
            const int64_t cut_ = rows8_##SUF(xg, (T *)y, L.n, lo, hi, is_log);                      \
            fast_fwd_short_##SUF(xg, (T *)y, L.n, cut_, hi, is_log);                                \
            return;                                                                                 \
        }                                                                                           \
        if (L.inner == 1 && !gx) {                                                                  \
            fast_fwd_rows_##SUF(xg, (T *)y, L.n, lo, hi, is_log, NULL);                                \
            return;                                                                                 \
        }                                                                                           \
        if (L.inner == 1) {                                                                         \
            fast_bwd_rows_##SUF(gx, y, xg, L.n, lo, hi, is_log);                                    \
            return;                                                                                 \
        }                                                                                           \
        if (!gx && blocks512_##SUF(xg, (T *)y, L, lo, hi, is_log)) return;                           \
        for (int64_t j = lo; j < hi; j++) {                                                         \
            const int64_t o = j / blocks, i0 = j % blocks * FAST_BLOCK, base = o * L.n * L.inner + i0; \
            const int w = (int)(L.inner - i0 < FAST_BLOCK ? L.inner - i0 : FAST_BLOCK);             \
            if (gx) fast_bwd_block_##SUF(gx + base, y + base, xg + base, L.n, L.inner, w, is_log);   \
            else if (!block512_##SUF(xg + base, (T *)y + base, L.n, L.inner, w, is_log))              \
                fast_fwd_block_##SUF(xg + base, (T *)y + base, L.n, L.inner, w, is_log);             \
        }                                                                                           \
    }
FAST_KERNELS(f32, float, vexpf_fma, vexpf_run, vlogsum_fix, AG_VEC_CLONES_512)
FAST_KERNELS(f64, double, exp, exp_run, logs_f64, AG_VEC_CLONES)

float ag__softmax_row_max_f32(const float *x, int64_t n, int *bad) { return fast_row_max_f32(x, n, bad); }

/* y = (log_)softmax(x) (gx NULL; xg is x), or gx = its adjoint (xg is dy), through the fast
 * kernels, split over threads for large inputs.  Empty lanes (L.outer 0) do nothing. */
static void fast_run(ag_dtype dtype, char *gx, const char *y, const char *xg, ag_lanes L, bool is_log) {
    const int64_t items = L.inner == 1 ? L.outer : L.outer * ((L.inner + FAST_BLOCK - 1) / FAST_BLOCK);
    int nt = ag__threads_for(L.outer * L.n * L.inner);
    if (nt > items) nt = (int)items;
#define FAST_ITEMS(lo, hi)                                                                              \
    (dtype == AG_F64 ? fast_items_f64((double *)gx, (const double *)y, (const double *)xg, L, is_log, lo, hi) \
                     : fast_items_f32((float *)gx, (const float *)y, (const float *)xg, L, is_log, lo, hi))
    if (nt <= 1) {
        FAST_ITEMS(0, items);
        return;
    }
#pragma omp parallel num_threads(nt)
    {
        int n_ = omp_get_num_threads(), t_ = omp_get_thread_num();
        FAST_ITEMS(ag__share_start(items, t_, n_), ag__share_start(items, t_ + 1, n_));
    }
#undef FAST_ITEMS
}

/* ---- oneDNN float32 path ------------------------------------------------------------------------- */
/* From this many elements on oneDNN wins clearly: at [8, 512] 1.9 µs against the C kernel's 23 µs
 * (one thread), while tiny inputs pay oneDNN's call and OpenMP fork/join overhead. */
#define ONEDNN_MIN_NUMEL 4096

/* oneDNN's softmax_v2 sums a lane in float32: its error, 6 float32 ulps from its exp on short
 * lanes, grows with the lane past 16384 elements (measured worst: 8.7 ulps at 16384, 25 at
 * 262144, 547 at 10^7), so longer lanes take the exp route (rows) or the C kernel, forward and
 * backward (whose Σ dy·y drifts alike). */
#define SOFTMAX_V2_MAX_LANE 16384


ag__softmax_backend ag__softmax_set_backend(ag__softmax_backend b) {
    ag__softmax_backend old = backend;
    backend = b;
    return old;
}

/* ---- float32 rows through oneDNN's exp ------------------------------------------------------------ */
/* oneDNN's log_softmax is inexact and slow on short rows: its log is off by up to ~4e-6 absolute,
 * and on [1024, 10] it takes 36 µs.  The exp route keeps the exact structure of the C
 * kernel and hands the exponentials, the only costly part, to oneDNN's eltwise exp (a few ulps):
 * rows' max and sum are vectorisable C loops, the log is libm's logf, once per row. */

/* Elements from which the route's C passes run on all threads (each pass is a fork). */
#define ROUTE_PAR_MIN 32768

/* max_k x[k], vectorised (a NaN may or may not win: either way its lane's output turns NaN further
 * on, and the C kernel redoes that lane) */
static float row_max_f32(const float *x, int64_t n) {
    float m = -INFINITY;
#pragma omp simd reduction(max : m)
    for (int64_t k = 0; k < n; k++) m = x[k] > m ? x[k] : m;
    AG_SIMD_EXTREME_FIX(float, m, n, k, x[k], AG_GREATER, -INFINITY);
    return m;
}

/* Σ_k e[k], vectorised, in float64 (a float32 sum drifts over long rows) */
static double row_sum_f32(const float *e, int64_t n) { return ag__sum_run((const char *)e, sizeof(float), n, AG_F32); }

/* y = x - max x per row, for rows [lo, hi) of n floats */
static void rows_shift_f32(const float *x, float *y, int64_t n, int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; r++) {
        const float *xr = x + r * n;
        float *yr = y + r * n;
        const float m = row_max_f32(xr, n);
        for (int64_t k = 0; k < n; k++) yr[k] = xr[k] - m;
    }
}

/* e = exp(x - m) in y;  log_softmax y = (x - m) - log Σe, softmax y = e·(1/Σe); rows [lo, hi) */
static void rows_finish_f32(const float *x, float *y, int64_t n, int64_t lo, int64_t hi, bool is_log) {
    for (int64_t r = lo; r < hi; r++) {
        const float *xr = x + r * n;
        float *yr = y + r * n;
        const double s = row_sum_f32(yr, n);
        if (is_log) {
            const float m = row_max_f32(xr, n), ls = (float)log(s);
            for (int64_t k = 0; k < n; k++) yr[k] = xr[k] - m - ls;
        } else {
            const float inv = (float)(1 / s);
            for (int64_t k = 0; k < n; k++) yr[k] *= inv;
        }
    }
}

/* (log_)softmax of `rows` contiguous rows of n floats: x - m (C), exp in place (oneDNN), then
 * rows_finish_f32.  false (y unspecified) if oneDNN could not run: the caller uses the C kernel. */
static bool rows_exp_route_f32(const float *x, float *y, int64_t rows, int64_t n, bool is_log) {
    const int64_t numel = rows * n;
    int threads = ag__threads_for(numel < ROUTE_PAR_MIN ? numel : AG_PAR_MIN_ELEMS);
    if (threads > rows) threads = (int)rows;
    if (threads > 1) {
#pragma omp parallel num_threads(threads)
        {
            int nt = omp_get_num_threads(), t = omp_get_thread_num();
            rows_shift_f32(x, y, n, ag__share_start(rows, t, nt), ag__share_start(rows, t + 1, nt));
        }
    } else { /* no parallel region: even a one-thread team costs ~1 µs */
        rows_shift_f32(x, y, n, 0, rows);
    }
    if (!ag__dnnl_eltwise_fwd(dnnl_eltwise_exp, y, y, numel)) return false;
    if (threads > 1) {
#pragma omp parallel num_threads(threads)
        {
            int nt = omp_get_num_threads(), t = omp_get_thread_num();
            rows_finish_f32(x, y, n, ag__share_start(rows, t, nt), ag__share_start(rows, t + 1, nt), is_log);
        }
    } else {
        rows_finish_f32(x, y, n, 0, rows, is_log);
    }
    return true;
}

/* Whether any of p's n floats is NaN: one vectorisable pass, so that oneDNN's results need a
 * lane-by-lane look only when something is NaN. */
static bool any_nan_f32(const float *p, int64_t n) {
    int bad = 0;
    for (int64_t i = 0; i < n; i++) bad |= p[i] != p[i];
    return bad;
}

/* Whether the fast kernels run where oneDNN does not: always but in the reference modes. */
bool ag__softmax_fast(void) { return backend != AG__SOFTMAX_REFERENCE && ag__backend != AG_BACKEND_REFERENCE; }

/* Whether this float32 computation takes a oneDNN path: automatically rows (the last dim) of
 * ONEDNN_MIN_NUMEL elements and more on CPUs without the wide clones of the fast kernels (with
 * them the fast row kernels win: softmax of [1000, 1000] along dim 1 forward + backward, one
 * thread, 1.40 ms against oneDNN's 1.69); when forced, every non-empty input. */
static bool use_onednn(const ag_tensor *x, ag_lanes L) {
    if (x->dtype != AG_F32 || ag_numel(x) == 0 || backend == AG__SOFTMAX_REFERENCE ||
        ag__backend == AG_BACKEND_REFERENCE || !ag_onednn_enabled())
        return false;
    return backend == AG__SOFTMAX_ONEDNN || ag__backend == AG_BACKEND_ACCEL ||
           (L.inner == 1 && ag_numel(x) >= ONEDNN_MIN_NUMEL && !AG_VEC_WIDE());
}

/* y = (log_)softmax(x) on a oneDNN path: log_softmax of rows and softmax of rows longer than
 * SOFTMAX_V2_MAX_LANE take the exp route (oneDNN's log is inexact, and its sums drift over long
 * lanes), the rest softmax_v2 (at [1024, 10] 18.5 µs against the exp route's 22.3, 1 thread).
 * false: not taken (long strided lanes go to the C kernel), or oneDNN failed. */
static bool onednn_fwd(const ag_tensor *x, ag_lanes L, bool is_log, const float *xp, float *yp) {
    if (!use_onednn(x, L)) return false;
    const bool long_lane = L.n > SOFTMAX_V2_MAX_LANE;
    if (long_lane && L.inner != 1) return false;
    bool done = L.inner == 1 && (is_log || long_lane)
                    ? rows_exp_route_f32(xp, yp, L.outer, L.n, is_log)
                    : ag__dnnl_softmax_fwd(ALG(is_log), L.outer, L.n, L.inner, xp, yp);
    if (done && any_nan_f32(yp, ag_numel(x))) softmax_fwd_f32((const char *)xp, (char *)yp, L, is_log, true);
    return done;
}

/* ---- softmax rows with their log-sum-exp (the fused cross-entropy) ------------------------------- */

/* A row for the fused cross-entropy with the fast kernels' passes (each over the row, in L1 for rows
 * of a few thousand): the max with a NaN flag, p = EXP(x - m) (float32: vexpf_fma in the _wide kernel since
 * session 19, as the fused cross-entropy's AVX-512 loop and the softmax's fast kernels; vexpf elsewhere), their float64 sum
 * (SUM), p scaled by its reciprocal; lse = m + log Σ.  A row with a NaN or an infinity goes to the
 * reference kernel above (its NaN and ±inf results).  Float32 rows of WIDE_ROW elements and more take
 * the _wide kernel, cloned for AVX-512 as well (AG_VEC_CLONES_512) and summing in sixteen accumulators
 * (two AVX-512 vectors; eight would be one latency-bound chain): bound by vexpf's arithmetic, one
 * thread takes 2.7 ms for [4096, 1000] against 3.4 ms with the AVX2 clone; on shorter rows the wider
 * vectors leave more in the scalar tails ([8192, 24]: 0.45 against 0.39 ms).  Float32 rows of 16 to
 * WIDE_ROW - 1 elements go to fast_fwd_rows_f32 with lse: p as softmax's rows make it (ROW_SUM_f32: AG_SUM8
 * below FUSED_MIN_ROW, then AG_SUM16_QUADS_THEN16), the exp over a block of rows in one loop without each row's tail,
 * and the block's log Σ vectorised (vlog_ge1, ops/vlogsum.h: within a few float64 ulps of libm's
 * log, so a loss may differ from libm's in its last float32 bit, about once in 2^28 rows).  (Its
 * clang failure in session 9 was clang's omp simd max starting from -FLT_MAX: core/simd_extreme.h.)
 * The _wide kernel sums in AG_SUM16_QUADS_THEN16's order (core/sum_pairs.h; AG_SUM16 before session 23), as the fused
 * cross-entropy's row kernel (ops/loss.c, CE_SUM_QUADS), so that their rows have the same bits.
 * Float64 rows take this kernel with AG_SUM8. */
#define WIDE_ROW AG__SOFTMAX_WIDE_ROW
#define FAST_ROW_LSE(SUF, T, BASE, EXP, CLONES, SUM)                                                    \
    CLONES static void fast_row_lse_##SUF(const T *restrict x, T *restrict p, int64_t n, double *lse) { \
        int bad;                                                                                    \
        const T m = fast_row_max_##BASE(x, n, &bad);                                                \
        if (bad || !isfinite(m)) {                                                                  \
            softmax_row_lse_##BASE(x, p, n, lse);                                                   \
            return;                                                                                 \
        }                                                                                           \
        for (int64_t k = 0; k < n; k++) p[k] = EXP(x[k] - m);                                       \
        double s;                                                                                   \
        SUM(s, n, p[kq]);                                                                           \
        const T r = (T)(1 / s);                                                                     \
        for (int64_t k = 0; k < n; k++) p[k] *= r;                                                  \
        *lse = (double)m + log(s);                                                                  \
    }
#define LSE_SUM8(res, n, TERM) AG_SUM8(res, n, kq, (double)(TERM))
#define LSE_SUM_QUADS(res, n, TERM) AG_SUM16_QUADS_THEN16(res, n, kq, float, TERM)
FAST_ROW_LSE(f32, float, f32, vexpf, AG_VEC_CLONES, LSE_SUM8)
FAST_ROW_LSE(f32_wide, float, f32, vexpf_fma, AG_VEC_CLONES_512, LSE_SUM_QUADS)
FAST_ROW_LSE(f64, double, f64, exp, AG_VEC_CLONES, LSE_SUM8)

/* Float32 rows shorter than SHORT_ROW (ten classes) are taken a block of rows at a time, so that the
 * exp runs as one vectorised loop over the block (a short row leaves a vector loop its scalar tail:
 * [8192, 10] forward + backward, one thread, 0.53 ms row by row, 0.24 ms so): each row's max with a
 * NaN flag, x - m over the block, p = vexpf over the block, then each row's float64 sum (in order),
 * scale and log-sum-exp as fast_row_lse_f32; a row with a NaN or an infinity goes to the reference
 * kernel. */
#define SHORT_ROW 16
#define SHORT_BLOCK 2048 /* elements of a block */
AG_VEC_CLONES static void short_rows_lse_f32(const float *restrict x, float *restrict p, int64_t n, int64_t rows,
                                             double *lse) {
    float d[SHORT_BLOCK]; /* x - m */
    int bad[SHORT_BLOCK / 2];
    float m[SHORT_BLOCK / 2];
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * n;
        float mr = -INFINITY;
        int nan = 0;
        for (int64_t k = 0; k < n; k++) {
            mr = xr[k] > mr ? xr[k] : mr;
            nan |= xr[k] != xr[k];
        }
        m[r] = mr, bad[r] = nan | !isfinite(mr);
        for (int64_t k = 0; k < n; k++) d[r * n + k] = xr[k] - mr;
    }
    for (int64_t i = 0; i < rows * n; i++) p[i] = vexpf(d[i]);
    for (int64_t r = 0; r < rows; r++) {
        float *pr = p + r * n;
        if (bad[r]) {
            softmax_row_lse_f32(x + r * n, pr, n, &lse[r]);
            continue;
        }
        double s = 0;
        for (int64_t k = 0; k < n; k++) s += (double)pr[k];
        const float inv = (float)(1 / s);
        for (int64_t k = 0; k < n; k++) pr[k] *= inv;
        lse[r] = (double)m[r] + log(s);
    }
}

void ag__softmax_rows_lse(const ag_tensor *x, ag_tensor *p, double *lse, int64_t lo, int64_t hi) {
    const int64_t n = x->shape[1];
    const bool fast = ag__softmax_fast();
    if (fast && x->dtype == AG_F32 && n > 0 && n < SHORT_ROW) {
        const float *xp = (const float *)ag__ptr(x);
        float *pp = (float *)ag__ptr(p);
        for (int64_t r = lo, per = SHORT_BLOCK / n; r < hi; r += per)
            short_rows_lse_f32(xp + r * n, pp + r * n, n, hi - r < per ? hi - r : per, lse + r);
        return;
    }
    if (fast && x->dtype == AG_F32 && n < WIDE_ROW) {
        fast_fwd_rows_f32((const float *)ag__ptr(x), (float *)ag__ptr(p), n, lo, hi, false, lse);
        return;
    }
    for (int64_t r = lo; r < hi; r++) {
        if (x->dtype == AG_F64) {
            const double *xr = (const double *)ag__ptr(x) + r * n;
            double *pr = (double *)ag__ptr(p) + r * n;
            if (fast) fast_row_lse_f64(xr, pr, n, &lse[r]);
            else softmax_row_lse_f64(xr, pr, n, &lse[r]);
        } else {
            const float *xr = (const float *)ag__ptr(x) + r * n;
            float *pr = (float *)ag__ptr(p) + r * n;
            if (fast && n >= WIDE_ROW) fast_row_lse_f32_wide(xr, pr, n, &lse[r]);
            else if (fast) fast_row_lse_f32(xr, pr, n, &lse[r]);
            else softmax_row_lse_f32(xr, pr, n, &lse[r]);
        }
    }
}

/* ---- ops --------------------------------------------------------------------------------------- */
static ag_status softmax_backward(ag_tensor *out, ag_tensor *gout);
static ag_status softmax_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin);
/* y = exp(x - m) / Σ_d exp(x - m), m = max_d x;  dx = y·(dy - Σ_d dy·y) */
/* softmax: dy = y·(dx - Σ_d y·dx);  log_softmax: dy = dx - Σ_d exp(y)·dx */
static ag_tensor *softmax_jvp(ag_tensor *out, ag_tensor *const *tin);
static const ag_op op_softmax = {.name = "softmax", .grad_fn = "SoftmaxBackward0", .backward = softmax_backward,
                                 .saves = AG_SAVES_OUT,
                                 .math = "y = exp(x - m) / Σ_d exp(x - m), m = max_d x;  dx = y·(dy - Σ_d dy·y)",
                                 .backward_graph = softmax_backward_graph, .jvp = softmax_jvp,
                                 .tangent = "ẏ = y·(ẋ - Σ_d y·ẋ)"};
/* y = (x - m) - log Σ_d exp(x - m), m = max_d x;  dx = dy - exp(y)·Σ_d dy */
static const ag_op op_log_softmax = {.name = "log_softmax", .grad_fn = "LogSoftmaxBackward0",
                                     .backward = softmax_backward, .saves = AG_SAVES_OUT,
                                     .math = "y = (x - m) - log Σ_d exp(x - m), m = max_d x;  dx = dy - exp(y)·Σ_d dy",
                                     .backward_graph = softmax_backward_graph, .jvp = softmax_jvp,
                                     .tangent = "ẏ = ẋ - Σ_d exp(y)·ẋ"};

static ag_tensor *softmax_apply(const ag_op *op, ag_tensor *x, int dim) {
    AG_CHECK_HANDLES(NULL, op->name, x);
    if (!x) return NULL;
    if (ag__check_float(op->name, x, NULL)) return NULL;
    int d = ag__dim(op->name, dim, x->ndim);
    if (d < 0) return NULL;
    const bool is_log = op == &op_log_softmax;
    ag_lanes L = ag__lanes_of(x, d);
    if (L.n == 0) L.outer = 0; /* no element: no lane to walk, however many */
    ag_tensor *xc = ag__contig_or_copy(x);
    ag_tensor *y = xc ? ag__new(x->dtype, x->ndim, x->shape) : NULL;
    if (!y) {
        ag_release(xc);
        return NULL;
    }
    if (onednn_fwd(x, L, is_log, (const float *)ag__ptr(xc), (float *)ag__ptr(y))) {
    } else if (ag__softmax_fast()) {
        fast_run(x->dtype, NULL, ag__ptr(y), ag__ptr(xc), L, is_log);
    } else if (x->dtype == AG_F64) {
        softmax_fwd_f64(ag__ptr(xc), ag__ptr(y), L, is_log, false);
    } else {
        softmax_fwd_f32(ag__ptr(xc), ag__ptr(y), L, is_log, false);
    }
    ag_release(xc);
    if (ag__needs_grad1(x)) {
        if (!ag__record(y, op, &x, 1)) return NULL;
        y->attr.i[0] = d;
    }
    return ag__check_finite(y, op->name);
}

static ag_tensor *softmax_jvp(ag_tensor *out, ag_tensor *const *tin) {
    const int d = (int)out->attr.i[0];
    const bool is_log = out->op == &op_log_softmax;
    ag_tensor *p = is_log ? ag_exp(out) : out, *t = tin[0];
    ag_tensor *mean = out->ndim ? ag_sum_dim(ag_mul(p, t), d, true) : ag_mul(p, t); /* Σ_d p·dx */
    return is_log ? ag_sub(t, mean) : ag_mul(out, ag_sub(t, mean));
}

/* The fused adjoints, from the output and dy alone. */
/* Σ_d t, keeping d (t itself for a 0-d t: nothing to sum). */
static ag_tensor *sum_keep(ag_tensor *t, int d) { return t->ndim ? ag_sum_dims(t, 1, &d, true) : t; }

/* The adjoints above in agrad ops, y being the node itself. */
static ag_status softmax_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin) {
    int d = (int)out->attr.i[0];
    gin[0] = out->op == &op_softmax ? ag_mul(out, ag_sub(gout, sum_keep(ag_mul(gout, out), d)))
                                    : ag_sub(gout, ag_mul(ag_exp(out), sum_keep(gout, d)));
    return gin[0] ? AG_OK : ag_last_status();
}

static ag_status softmax_backward(ag_tensor *out, ag_tensor *gout) {
    ag_tensor *x = out->in[0];
    const bool is_log = out->op == &op_log_softmax;
    ag_lanes L = ag__lanes_of(x, (int)out->attr.i[0]);
    if (L.n == 0) L.outer = 0;
    ag_tensor *gx = ag__new_unowned(x->dtype, x->ndim, x->shape, false);
    if (!gx) return AG_ERR_NOMEM;
    if (use_onednn(x, L) && L.n <= SOFTMAX_V2_MAX_LANE && ag__dnnl_softmax_bwd(ALG(is_log), L.outer, L.n, L.inner, (const float *)ag__ptr(out),
                                                         (const float *)ag__ptr(gout), (float *)ag__ptr(gx))) {
        if (any_nan_f32((const float *)ag__ptr(gx), ag_numel(gx)) || any_nan_f32((const float *)ag__ptr(out), ag_numel(out)))
            softmax_bwd_f32(ag__ptr(gx), ag__ptr(out), ag__ptr(gout), L, is_log, true);
    } else if (ag__softmax_fast()) {
        fast_run(x->dtype, ag__ptr(gx), ag__ptr(out), ag__ptr(gout), L, is_log);
    } else if (x->dtype == AG_F64) {
        softmax_bwd_f64(ag__ptr(gx), ag__ptr(out), ag__ptr(gout), L, is_log, false);
    } else {
        softmax_bwd_f32(ag__ptr(gx), ag__ptr(out), ag__ptr(gout), L, is_log, false);
    }
    return ag__accumulate(x, gx);
}

ag_tensor *ag_softmax(ag_tensor *x, int dim) { return softmax_apply(&op_softmax, x, dim); }
ag_tensor *ag_log_softmax(ag_tensor *x, int dim) { return softmax_apply(&op_log_softmax, x, dim); }

const ag_op *const ag__softmax_ops[] = {&op_softmax, &op_log_softmax, NULL};

/*
 * core/sqdev.c - Σ (x - mean)² along one run of dims, x read in rows (see sqdev.h).
 *
 * Columns ([A, R, C] summed over R, C >= 8): each row of x is read whole and contiguous, the C
 * float64 sums kept in acc (in cache: C doubles, and C of the mean), eight rows at a time added as
 * the float64 tree ((d0² + d1²) + (d2² + d3²)) + ((d4² + d5²) + (d6² + d7²)) where C >= 256, then
 * four rows at a time as ((d0² + d1²) + (d2² + d3²)), the rows past the last four one by one (the
 * tree's roundings are those of any order of non-negative terms: within (R - 1)·2^-53 of the sum,
 * relatively, each term within 2·2^-53 of (x - mean)²).  Before session 22 the iterator summed each
 * column down its stride (var of [2048, 2048] over dim 0: 8 KiB apart, about 0.5 GB/s) on one
 * thread.  Each column's additions do not depend on which columns are computed with it, so the
 * columns split over the threads freely: the same bits on any number of threads.
 *
 * Rows ([A, R] summed over R): each row as before, AG_SUM8 of (x - m)² in float64 (the same bits as
 * the iterator's kernel gave), now split over the threads by rows, eight rows at a time on AVX-512.
 */
#include <omp.h>
#include "core/parallel.h"
#include "core/sqdev.h"
#include "core/sum.h"
#ifdef AG_X86_INTRINSICS
#include <immintrin.h>
#endif

/* Wide x (WIDE_COLS columns or more) takes eight rows a tree: eight streams, each in its own pages,
 * read memory faster than four (as core/sum.c's column sums) */
#define WIDE_COLS 256
/* acc[c] += Σ_r (x[r·C + c] - m[c])² for c in [c0, c1), r in [0, R): eight rows a tree (wide x), then
 * four rows a tree, the rest one by one */
#define SQDEV_COLS_KERNEL(NAME, T)                                                                       \
    AG_VEC_CLONES_512 static void NAME(double *restrict acc, const T *restrict x, const double *restrict m, \
                                       int64_t R, int64_t C, int64_t c0, int64_t c1) {                  \
        int64_t r = 0;                                                                                   \
        if (C >= WIDE_COLS)                                                                              \
            for (; r + 8 <= R; r += 8) {                                                                 \
                const T *restrict xr = x + r * C;                                                        \
                for (int64_t c = c0; c < c1; c++) {                                                      \
                    const double d0 = (double)xr[c] - m[c], d1 = (double)xr[C + c] - m[c];              \
                    const double d2 = (double)xr[2 * C + c] - m[c], d3 = (double)xr[3 * C + c] - m[c];  \
                    const double d4 = (double)xr[4 * C + c] - m[c], d5 = (double)xr[5 * C + c] - m[c];  \
                    const double d6 = (double)xr[6 * C + c] - m[c], d7 = (double)xr[7 * C + c] - m[c];  \
                    acc[c] += ((d0 * d0 + d1 * d1) + (d2 * d2 + d3 * d3)) + ((d4 * d4 + d5 * d5) + (d6 * d6 + d7 * d7)); \
                }                                                                                        \
            }                                                                                            \
        for (; r + 4 <= R; r += 4) {                                                                     \
            const T *restrict xr = x + r * C;                                                            \
            for (int64_t c = c0; c < c1; c++) {                                                          \
                const double d0 = (double)xr[c] - m[c], d1 = (double)xr[C + c] - m[c];                  \
                const double d2 = (double)xr[2 * C + c] - m[c], d3 = (double)xr[3 * C + c] - m[c];      \
                acc[c] += (d0 * d0 + d1 * d1) + (d2 * d2 + d3 * d3);                                     \
            }                                                                                            \
        }                                                                                                \
        for (; r < R; r++)                                                                               \
            for (int64_t c = c0; c < c1; c++) {                                                          \
                const double d = (double)x[r * C + c] - m[c];                                            \
                acc[c] += d * d;                                                                         \
            }                                                                                            \
    }
SQDEV_COLS_KERNEL(sqdev_cols_f32, float)
SQDEV_COLS_KERNEL(sqdev_cols_f64, double)

/* (v - m)² */
static inline double sq_dev(double v, double m) { return (v - m) * (v - m); }

/* acc[a] += Σ_r (x[a·R + r] - m[a])² for a in [a0, a1), each row AG_SUM8's sum */
#define SQDEV_ROWS_KERNEL(NAME, T)                                                                       \
    AG_VEC_CLONES_512 static void NAME(double *restrict acc, const T *restrict x, const double *restrict m, \
                                       int64_t R, int64_t a0, int64_t a1) {                             \
        for (int64_t a = a0; a < a1; a++) {                                                              \
            const T *restrict xa = x + a * R;                                                            \
            const double ma = m[a];                                                                      \
            double s;                                                                                    \
            AG_SUM8(s, R, i, sq_dev((double)xa[i], ma));                               \
            acc[a] += s;                                                                                 \
        }                                                                                                \
    }
SQDEV_ROWS_KERNEL(sqdev_rows_f32, float)
SQDEV_ROWS_KERNEL(sqdev_rows_f64, double)

#ifdef AG_X86_INTRINSICS
/* sqdev_rows_* on AVX-512, eight rows at a time: each row's eight accumulators AG_SUM8's (lane k the
 * terms k mod 8, in order; the tail and the finish as AG_SUM8's: the same bits), the eight rows' eight
 * vectors independent chains of additions where one row's was one latency-bound chain (the compiler
 * does not interleave rows: written with the arrays of AG_SUM8, four rows ran 2x slower).  var of
 * [2048, 2048] over dim 1, one thread, CPU time: 1.3 ms before (the iterator's AG_SUM8, SSE2/AVX2),
 * 1.0 with an x86-64-v4 clone of it, 0.87 with four rows here, about 8% less again with eight
 * ([8192, 4096]: 12.8-13.7 -> 11.9-12.2 ms). */
#define SQDEV_ROWS8_512(NAME, T, LOAD8)                                                                  \
    __attribute__((target("avx512f"))) static void NAME(double *restrict acc, const T *restrict x,       \
                                                        const double *restrict m, int64_t R, int64_t a0, int64_t a1) { \
        int64_t a = a0;                                                                                  \
        const int64_t R8 = R - R % 8;                                                                    \
        for (; a + 8 <= a1; a += 8) {                                                                    \
            const T *xr[8];                                                                              \
            __m512d mv[8], sv[8];                                                                        \
            _Pragma("GCC unroll 8") for (int k = 0; k < 8; k++) {                                        \
                xr[k] = x + (a + k) * R;                                                                 \
                mv[k] = _mm512_set1_pd(m[a + k]);                                                        \
                sv[k] = _mm512_setzero_pd();                                                             \
            }                                                                                            \
            for (int64_t b = 0; b < R8; b += 8) {                                                        \
                _Pragma("GCC unroll 8") for (int k = 0; k < 8; k++) {                                    \
                    const __m512d d = _mm512_sub_pd(LOAD8(xr[k] + b), mv[k]);                            \
                    sv[k] = _mm512_add_pd(sv[k], _mm512_mul_pd(d, d));                                   \
                }                                                                                        \
            }                                                                                            \
            for (int k = 0; k < 8; k++) {                                                                \
                double t = 0;                                                                            \
                for (int64_t b = R8; b < R; b++) t += sq_dev((double)xr[k][b], m[a + k]);                \
                acc[a + k] += ag__sum8_finish_512(sv[k], t);                                             \
            }                                                                                            \
        }                                                                                                \
        for (; a < a1; a++) {                                                                            \
            const T *xa = x + a * R;                                                                     \
            const __m512d ma = _mm512_set1_pd(m[a]);                                                     \
            __m512d s = _mm512_setzero_pd();                                                             \
            for (int64_t b = 0; b < R8; b += 8) {                                                        \
                const __m512d d = _mm512_sub_pd(LOAD8(xa + b), ma);                                      \
                s = _mm512_add_pd(s, _mm512_mul_pd(d, d));                                               \
            }                                                                                            \
            double t = 0;                                                                                \
            for (int64_t b = R8; b < R; b++) t += sq_dev((double)xa[b], m[a]);                           \
            acc[a] += ag__sum8_finish_512(s, t);                                                         \
        }                                                                                                \
    }
#define LOAD8_F32(p) _mm512_cvtps_pd(_mm256_loadu_ps(p))
#define LOAD8_F64(p) _mm512_loadu_pd(p)
SQDEV_ROWS8_512(sqdev_rows_f32_avx512, float, LOAD8_F32)
SQDEV_ROWS8_512(sqdev_rows_f64_avx512, double, LOAD8_F64)
#endif

/* Fewer columns stay on the iterator (a column down its stride): each row's loop over C is too short
 * to vectorise (var of [1e6, 3] over dim 0, one thread, CPU time: 2.0-2.2 ms against 1.8-2.0; [100, 3000, 5]
 * over dim 1 about equal; [200000, 20] 1.2-1.4 against 6.3-7.7) */
#define MIN_COLS 8

/* The columns of one [R, C] slab: acc[c] += Σ_r (x[r, c] - m[c])², columns [c0, c1) */
static void cols(double *acc, const char *x, const double *m, int64_t R, int64_t C, int64_t c0, int64_t c1, bool f64) {
    if (f64) sqdev_cols_f64(acc, (const double *)x, m, R, C, c0, c1);
    else sqdev_cols_f32(acc, (const float *)x, m, R, C, c0, c1);
}

/* The rows [a0, a1) of an [A, R] x: acc[a] += Σ_r (x[a, r] - m[a])² */
static void rows(double *acc, const char *x, const double *m, int64_t R, int64_t a0, int64_t a1, bool f64) {
#ifdef AG_X86_INTRINSICS
    if (AG_VEC_512()) {
        if (f64) sqdev_rows_f64_avx512(acc, (const double *)x, m, R, a0, a1);
        else sqdev_rows_f32_avx512(acc, (const float *)x, m, R, a0, a1);
        return;
    }
#endif
    if (f64) sqdev_rows_f64(acc, (const double *)x, m, R, a0, a1);
    else sqdev_rows_f32(acc, (const float *)x, m, R, a0, a1);
}

/* Whether out (acc, or var's per-output scale) sums a non-empty x as [A, R, C] in a geometry these kernels
 * take: rows (C = 1, A > 1) or MIN_COLS columns and more, mean contiguous; A, R, C set where true.  The
 * forward and the adjoint take the same geometries. */
static bool sqdev_geometry(const ag_tensor *out, const ag_tensor *x, const ag_tensor *mean, int64_t *A, int64_t *R,
                           int64_t *C) {
    return ag__numel(x->ndim, x->shape) > 0 && ag__contig(mean) && ag__middle_sum_geometry(out, x, A, R, C) &&
           !(*C == 1 && *A == 1) && !(*C > 1 && *C < MIN_COLS);
}

/* The threads for n elements, at most 64 (as core/sum.c's column sums) */
static int sqdev_threads(int64_t n) {
    const int threads = ag__threads_for(n);
    return threads > 64 ? 64 : threads;
}

bool ag__sqdev_into(ag_tensor *acc, const ag_tensor *x, const ag_tensor *mean) {
    int64_t A, R, C;
    if (!sqdev_geometry(acc, x, mean, &A, &R, &C)) return false;
    const int64_t n = ag__numel(x->ndim, x->shape);
    const bool f64 = x->dtype == AG_F64;
    const int64_t es = (int64_t)ag__esize(x->dtype);
    double *a = (double *)ag__ptr(acc);
    const double *m = (const double *)ag__ptr(mean);
    const char *xp = ag__ptr(x);
    const int threads = sqdev_threads(n);
    if (C == 1) { /* rows, shared out whole */
        AG_PARALLEL(threads, {
            const int64_t a0 = ag__share_start(A, ag__thread, ag__team), a1 = ag__share_start(A, ag__thread + 1, ag__team);
            rows(a, xp, m, R, a0, a1, f64);
        });
        return true;
    }
    if (A >= threads) { /* whole [R, C] slabs to each thread */
        AG_PARALLEL(threads, {
            for (int64_t i = ag__share_start(A, ag__thread, ag__team); i < ag__share_start(A, ag__thread + 1, ag__team); i++)
                cols(a + i * C, xp + i * R * C * es, m + i * C, R, C, 0, C, f64);
        });
        return true;
    }
    /* few slabs: each one's columns split over the threads in blocks of whole cache lines */
    AG_PARALLEL(threads, {
        const int64_t c0 = C * ag__thread / ag__team / 16 * 16;
        const int64_t c1 = ag__thread == ag__team - 1 ? C : C * (ag__thread + 1) / ag__team / 16 * 16;
        for (int64_t i = 0; i < A; i++)
            if (c0 < c1) cols(a + i * C, xp + i * R * C * es, m + i * C, R, C, c0, c1, f64);
    });
    return true;
}

/* ---- var/std's adjoint: gx = sg·(x - mean), sg the per-output scale --------------------------------
 * The iterator's kernel (ops/reduce.c, VAR_BWD_KERNEL) computed scale·g·(T)(x - m) for each element, g and
 * the mean read through stride-0 operands, in a scalar loop; here sg = scale·g is made once an output
 * (by the caller, in T, as that kernel's left-to-right product made it) and gx = sg·(T)(x - m) runs over
 * x's rows contiguous: the same bits. */
/* gx[q·C + c] = sg[c]·(T)(x[q·C + c] - m[c]) for the rows q in [q0, q1) of one [R, C] slab */
#define VAR_GRAD_COLS_KERNEL(NAME, T)                                                                    \
    AG_VEC_CLONES_512 static void NAME(T *restrict gx, const T *restrict x, const double *restrict m,     \
                                       const T *restrict sg, int64_t C, int64_t q0, int64_t q1) {       \
        for (int64_t q = q0; q < q1; q++)                                                                \
            for (int64_t c = 0; c < C; c++) gx[q * C + c] = sg[c] * (T)((double)x[q * C + c] - m[c]);   \
    }
VAR_GRAD_COLS_KERNEL(var_grad_cols_f32, float)
VAR_GRAD_COLS_KERNEL(var_grad_cols_f64, double)
/* gx[a·R + r] = sg[a]·(T)(x[a·R + r] - m[a]) for the rows a in [a0, a1) */
#define VAR_GRAD_ROWS_KERNEL(NAME, T)                                                                    \
    AG_VEC_CLONES_512 static void NAME(T *restrict gx, const T *restrict x, const double *restrict m,     \
                                       const T *restrict sg, int64_t R, int64_t a0, int64_t a1) {       \
        for (int64_t a = a0; a < a1; a++) {                                                              \
            const double ma = m[a];                                                                      \
            const T s = sg[a];                                                                           \
            for (int64_t r = 0; r < R; r++) gx[a * R + r] = s * (T)((double)x[a * R + r] - ma);         \
        }                                                                                                \
    }
VAR_GRAD_ROWS_KERNEL(var_grad_rows_f32, float)
VAR_GRAD_ROWS_KERNEL(var_grad_rows_f64, double)

bool ag__var_grad_into(ag_tensor *gx, const ag_tensor *x, const ag_tensor *mean, const ag_tensor *sg) {
    int64_t A, R, C;
    if (!ag__contig(gx) || gx->dtype != x->dtype || sg->dtype != x->dtype || !sqdev_geometry(sg, x, mean, &A, &R, &C))
        return false;
    const int64_t n = ag__numel(x->ndim, x->shape);
    const bool f64 = x->dtype == AG_F64;
    const double *m = (const double *)ag__ptr(mean);
    char *g = ag__ptr(gx);
    const char *xp = ag__ptr(x), *s = ag__ptr(sg);
    const int threads = sqdev_threads(n);
    if (C == 1) {
        AG_PARALLEL(threads, {
            const int64_t a0 = ag__share_start(A, ag__thread, ag__team), a1 = ag__share_start(A, ag__thread + 1, ag__team);
            if (f64) var_grad_rows_f64((double *)g, (const double *)xp, m, (const double *)s, R, a0, a1);
            else var_grad_rows_f32((float *)g, (const float *)xp, m, (const float *)s, R, a0, a1);
        });
        return true;
    }
    /* the A·R rows of C elements shared out; row q of slab a = q / R */
    AG_PARALLEL(threads, {
        const int64_t q0 = ag__share_start(A * R, ag__thread, ag__team), q1 = ag__share_start(A * R, ag__thread + 1, ag__team);
        for (int64_t q = q0; q < q1;) {
            const int64_t a = q / R, end = (a + 1) * R < q1 ? (a + 1) * R : q1;
            const int64_t base = a * R * C; /* slab a's first element */
            if (f64)
                var_grad_cols_f64((double *)g + base, (const double *)xp + base, m + a * C, (const double *)s + a * C, C, q - a * R, end - a * R);
            else
                var_grad_cols_f32((float *)g + base, (const float *)xp + base, m + a * C, (const float *)s + a * C, C, q - a * R, end - a * R);
            q = end;
        }
    });
    return true;
}

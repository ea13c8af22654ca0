/*
 * core/sum.c - float64 accumulation of float32 and float64 data (see sum.h).
 */
#include <omp.h>
#include "core/parallel.h"
#include "core/sum.h"
#ifdef AG_X86_INTRINSICS
#include <immintrin.h>
#endif

/* ---- contiguous runs ---------------------------------------------------------------------------
 * A contiguous run is summed in sixteen float64 accumulators, acc[k] taking the elements k mod 16,
 * added together in a fixed tree at the end: with four AVX2 vectors of four doubles in flight the
 * loop is bound by the float32 -> float64 conversions (four floats a cycle), not by the latency of
 * the additions, as it was with AG_SUM8's eight (two vectors): x.sum(1) of [256, 4096] float32 (in
 * cache) on one core 29 -> 58 GB/s.  The AVX2 kernel widens each four floats by one conversion
 * from memory (see rows_f32_avx2); the C kernel (AG_SUM16) makes the same additions in the same
 * order, so every CPU gets the same bits. */

/* acc[0..16) added as AG_SUM16 adds its accumulators: the AVX2 kernel's four vectors, then their lanes */
static double sum16_tree(double *acc) {
    for (int w = 8; w; w /= 2)
        for (int k = 0; k < w; k++) acc[k] += acc[k + w];
    return acc[0];
}

#define CONTIG_SUM(NAME, T)                                                                    \
    AG_VEC_CLONES static double NAME(const T *restrict x, int64_t n) {                         \
        double s;                                                                              \
        AG_SUM16(s, n, i, (double)x[i]);                                                       \
        return s;                                                                              \
    }
CONTIG_SUM(contig_sum_f32, float)
CONTIG_SUM(contig_sum_f64, double)

#ifdef AG_X86_INTRINSICS
__attribute__((target("avx2"))) static double contig_sum_f32_avx2(const float *restrict x, int64_t n) {
    __m256d v0 = _mm256_setzero_pd(), v1 = v0, v2 = v0, v3 = v0;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        v0 = _mm256_add_pd(v0, _mm256_cvtps_pd(_mm_loadu_ps(x + i)));
        v1 = _mm256_add_pd(v1, _mm256_cvtps_pd(_mm_loadu_ps(x + i + 4)));
        v2 = _mm256_add_pd(v2, _mm256_cvtps_pd(_mm_loadu_ps(x + i + 8)));
        v3 = _mm256_add_pd(v3, _mm256_cvtps_pd(_mm_loadu_ps(x + i + 12)));
    }
    double acc[16], tail = 0;
    _mm256_storeu_pd(acc, v0), _mm256_storeu_pd(acc + 4, v1), _mm256_storeu_pd(acc + 8, v2), _mm256_storeu_pd(acc + 12, v3);
    for (; i < n; i++) tail += (double)x[i];
    return sum16_tree(acc) + tail;
}
#endif

/* Σ of the n contiguous values of dtype at x, in float64. */
static double contig_sum(const char *x, int64_t n, ag_dtype dtype) {
    if (dtype == AG_F64) return contig_sum_f64((const double *)x, n);
#ifdef AG_X86_INTRINSICS
    if (AG_VEC_WIDE()) return contig_sum_f32_avx2((const float *)x, n);
#endif
    return contig_sum_f32((const float *)x, n);
}

double ag__sum_run(const char *x, int64_t step, int64_t n, ag_dtype dtype) {
    if (step == (int64_t)ag__esize(dtype)) return contig_sum(x, n, dtype);
    double s;
    if (dtype == AG_F64) AG_SUM8(s, n, i, *(const double *)(x + i * step));
    else AG_SUM8(s, n, i, (double)*(const float *)(x + i * step));
    return s;
}

/* acc[i] += x[i] over n elements (acc float64, x of type T), both steps in bytes */
#define ADD_KERNEL(NAME, T)                                                                    \
    static void NAME(char *accp, int64_t sa, const char *xp, int64_t sx, int64_t n) {          \
        if (sa == (int64_t)sizeof(double) && sx == (int64_t)sizeof(T)) {                       \
            double *restrict acc = (double *)accp;                                             \
            const T *restrict x = (const T *)xp;                                               \
            for (int64_t i = 0; i < n; i++) acc[i] += (double)x[i];                            \
            return;                                                                            \
        }                                                                                      \
        for (int64_t i = 0; i < n; i++) *(double *)(accp + i * sa) += (double)*(const T *)(xp + i * sx); \
    }
ADD_KERNEL(add_f32, float)
ADD_KERNEL(add_f64, double)

void ag__sum_kernel(char **p, const int64_t *s, int64_t n, void *ctx) {
    const ag_dtype dtype = *(const ag_dtype *)ctx;
    if (s[0] == 0) *(double *)p[0] += ag__sum_run(p[1], s[1], n, dtype);
    else if (dtype == AG_F64) add_f64(p[0], s[0], p[1], s[1], n);
    else add_f32(p[0], s[0], p[1], s[1], n);
}

/* acc[c] += Σ_r x[r·C + c] for rows [r0, r1) and columns [c0, c1) of a contiguous [R, C] x, four
 * rows at a time (summed pairwise, then into acc: a quarter of the loads and stores of acc) */
#define ROWS_KERNEL(NAME, T)                                                                   \
    AG_VEC_CLONES static void NAME(double *restrict acc, const char *xp, int64_t C, int64_t r0, int64_t r1, int64_t c0, int64_t c1) { \
        const T *restrict x = (const T *)xp;                                                   \
        int64_t r = r0;                                                                        \
        for (; r + 4 <= r1; r += 4) {                                                          \
            const T *x0 = x + r * C, *x1 = x0 + C, *x2 = x1 + C, *x3 = x2 + C;                 \
            for (int64_t c = c0; c < c1; c++)                                                  \
                acc[c] += ((double)x0[c] + (double)x1[c]) + ((double)x2[c] + (double)x3[c]);   \
        }                                                                                      \
        for (; r < r1; r++)                                                                    \
            for (int64_t c = c0; c < c1; c++) acc[c] += (double)x[r * C + c];                  \
    }
ROWS_KERNEL(rows_f32, float)
ROWS_KERNEL(rows_f64, double)

typedef void (*rows_fn)(double *, const char *, int64_t, int64_t, int64_t, int64_t, int64_t);
#ifdef AG_X86_INTRINSICS
/* rows_f32 in AVX2, each four floats widened by one conversion from memory.  The vectoriser loads
 * eight floats and needs a lane extract before every second conversion, on the port the
 * conversions use, which bound the loop: x [64, 1024, 64] summed over dim 1 (in L2) went from 42
 * to 56 GB/s on one core.  The same additions in the same order as rows_f32: the same bits. */
__attribute__((target("avx2"))) static void rows_f32_avx2(double *restrict acc, const char *xp, int64_t C, int64_t r0,
                                                          int64_t r1, int64_t c0, int64_t c1) {
    const float *restrict x = (const float *)xp;
    int64_t r = r0;
    for (; r + 4 <= r1; r += 4) {
        const float *x0 = x + r * C, *x1 = x0 + C, *x2 = x1 + C, *x3 = x2 + C;
        int64_t c = c0;
        for (; c + 4 <= c1; c += 4) {
            const __m256d a = _mm256_add_pd(_mm256_cvtps_pd(_mm_loadu_ps(x0 + c)), _mm256_cvtps_pd(_mm_loadu_ps(x1 + c)));
            const __m256d b = _mm256_add_pd(_mm256_cvtps_pd(_mm_loadu_ps(x2 + c)), _mm256_cvtps_pd(_mm_loadu_ps(x3 + c)));
            _mm256_storeu_pd(acc + c, _mm256_add_pd(_mm256_loadu_pd(acc + c), _mm256_add_pd(a, b)));
        }
        for (; c < c1; c++) acc[c] += ((double)x0[c] + (double)x1[c]) + ((double)x2[c] + (double)x3[c]);
    }
    for (; r < r1; r++)
        for (int64_t c = c0; c < c1; c++) acc[c] += (double)x[r * C + c];
}
#endif

/* The column-sum kernel for dtype. */
static rows_fn rows_for(ag_dtype dtype) {
    if (dtype == AG_F64) return rows_f64;
#ifdef AG_X86_INTRINSICS
    if (AG_VEC_WIDE()) return rows_f32_avx2;
#endif
    return rows_f32;
}

/* The number C of trailing elements that acc keeps when it sums a contiguous x over leading
 * dims only (acc contiguous, its shape without leading 1s a suffix of x's): x is then [R, C]
 * and acc[C] is a column sum.  0 when the reduction is not of that form. */
static int64_t column_sum_width(const ag_tensor *acc, const ag_tensor *x) {
    if (!ag__contig(acc) || !ag__contig(x)) return 0;
    int lead = 0;
    while (lead < acc->ndim && acc->shape[lead] == 1) lead++;
    int keep = acc->ndim - lead;
    if (keep == 0 || keep > x->ndim) return 0;
    int64_t C = 1;
    for (int k = 0; k < keep; k++) {
        if (acc->shape[lead + k] != x->shape[x->ndim - keep + k]) return 0;
        C *= acc->shape[lead + k];
    }
    return C;
}

/* Column sums of a contiguous [R, C] x into acc[C], in row order per column.  Rows are one call
 * each through the iterator (costly for narrow rows: [2.5e6, 4] made 2.5e6 calls), so here
 * wide matrices split their columns over threads, narrow ones their rows into float64 partials. */
static void column_sums(double *acc, const char *x, int64_t R, int64_t C, ag_dtype dtype) {
    const rows_fn rows = rows_for(dtype);
    int threads = ag__threads_for(R * C);
    if (threads > 64) threads = 64;
    double *part = NULL;
    if (threads > 1 && C < 64 * (int64_t)threads && !(part = ag__calloc(sizeof(double) * (size_t)(threads * C))))
        threads = 1;
    if (threads <= 1) {
        rows(acc, x, C, 0, R, 0, C);
        return;
    }
    int used = threads;
#pragma omp parallel num_threads(threads)
    {
        int nt = omp_get_num_threads(), t = omp_get_thread_num();
        if (t == 0) used = nt;
        if (part) /* narrow: rows [lo, hi) into this thread's partial row */
            rows(part + t * C, x, C, R * t / nt, R * (t + 1) / nt, 0, C);
        else /* wide: columns in blocks of whole cache lines */
            rows(acc, x, C, 0, R, C * t / nt / 8 * 8, t == nt - 1 ? C : C * (t + 1) / nt / 8 * 8);
    }
    if (part) {
        for (int t = 0; t < used; t++)
            for (int64_t c = 0; c < C; c++) acc[c] += part[t * C + c];
        ag__free(part);
    }
}

/* Whether acc sums a contiguous x over one run of consecutive dims between kept ones: x is then
 * [A, R, C] (A, C the products of the kept dims before and after the run, R of the summed ones)
 * and acc[A, C] (contiguous; its shape aligned to x's from the end, leading dims it lacks being
 * summed).  Size-1 dims of x count as either. */
static bool middle_sum_geometry(const ag_tensor *acc, const ag_tensor *x, int64_t *A, int64_t *R, int64_t *C) {
    if (!ag__contig(acc) || !ag__contig(x) || acc->ndim > x->ndim) return false;
    int phase = 0; /* 0: leading kept dims, 1: the summed run, 2: trailing kept dims */
    int64_t n[3] = {1, 1, 1};
    for (int d = 0; d < x->ndim; d++) {
        const int ad = d - (x->ndim - acc->ndim);
        const int64_t xs = x->shape[d], as = ad >= 0 ? acc->shape[ad] : 1;
        if (xs == 1) continue;
        const bool summed = as == 1;
        if (!summed && as != xs) return false;
        if (summed && phase == 2) return false; /* a second summed run */
        if (summed) phase = 1;
        else if (phase == 1) phase = 2;
        n[phase] *= xs;
    }
    *A = n[0], *R = n[1], *C = n[2];
    return true;
}

/* acc[a, c] += Σ_r x[a, r, c] over a contiguous [A, R, C] x (A > 1): the A column sums split over
 * threads when there are at least as many as threads, else each one split as column_sums does. */
static void middle_sums(double *acc, const char *x, int64_t A, int64_t R, int64_t C, ag_dtype dtype) {
    const rows_fn rows = rows_for(dtype);
    const int64_t es = (int64_t)ag__esize(dtype);
    int threads = ag__threads_for(A * R * C);
    if (threads > 1 && A >= threads) {
#pragma omp parallel num_threads(threads)
        {
            int nt = omp_get_num_threads(), t = omp_get_thread_num();
            for (int64_t a = ag__share_start(A, t, nt); a < ag__share_start(A, t + 1, nt); a++)
                rows(acc + a * C, x + a * R * C * es, C, 0, R, 0, C);
        }
        return;
    }
    for (int64_t a = 0; a < A; a++) column_sums(acc + a * C, x + a * R * C * es, R, C, dtype);
}

/* acc[a] += Σ_r x[a·R + r] over a contiguous [A, R] x (a sum along the last dims).  Whole rows go to
 * the threads when they share out evenly (A a multiple of the thread count, or many rows: at most
 * one row in 16 more on a thread); fewer rows (one, or 3 on 2 threads) are each cut into one chunk
 * per thread, whose float64 partials are added in chunk order (while rows · threads partials fit
 * ROW_PARTS: with 64 threads, fewer than 16 rows). */
#define ROW_CHUNK_MAX_ROWS 16
#define ROW_PARTS 1024 /* the chunked rows' partials, on the stack: rows · threads at most */
static void row_sums(double *acc, const char *x, int64_t A, int64_t R, ag_dtype dtype) {
    const int64_t es = (int64_t)ag__esize(dtype);
    int threads = ag__threads_for(A * R);
    if (threads > 64) threads = 64;
    if (threads <= 1) {
        for (int64_t a = 0; a < A; a++) acc[a] += contig_sum(x + a * R * es, R, dtype);
        return;
    }
    if (A % threads == 0 || A >= ROW_CHUNK_MAX_ROWS * (int64_t)threads || A * threads > ROW_PARTS) {
#pragma omp parallel num_threads(threads)
        {
            int nt = omp_get_num_threads(), t = omp_get_thread_num();
            for (int64_t a = ag__share_start(A, t, nt); a < ag__share_start(A, t + 1, nt); a++)
                acc[a] += contig_sum(x + a * R * es, R, dtype);
        }
        return;
    }
    double part[ROW_PARTS]; /* part[a·nt + t]: thread t's chunk of row a */
    int used = threads;
#pragma omp parallel num_threads(threads)
    {
        int nt = omp_get_num_threads(), t = omp_get_thread_num();
        if (t == 0) used = nt;
        const int64_t lo = ag__share_start(R, t, nt), hi = ag__share_start(R, t + 1, nt);
        for (int64_t a = 0; a < A; a++) part[a * nt + t] = contig_sum(x + (a * R + lo) * es, hi - lo, dtype);
    }
    for (int64_t a = 0; a < A; a++) {
        double s = 0;
        for (int t = 0; t < used; t++) s += part[a * used + t];
        acc[a] += s;
    }
}

void ag__sum_into(ag_tensor *acc, const ag_tensor *x) {
    ag_dtype dtype = x->dtype;
    const int64_t n = ag__numel(x->ndim, x->shape);
    if (ag__numel(acc->ndim, acc->shape) == 1 && ag__contig(x) && (n < 128 || ag__threads_for(n) <= 1)) {
        /* a small full sum (ag_sum of a training step): the one run iter_run_sum would make */
        *(double *)ag__ptr(acc) += ag__sum_run(ag__ptr(x), (int64_t)ag__esize(dtype), n, dtype);
        return;
    }
    const int64_t C = column_sum_width(acc, x);
    if (C > 1 && n > 0) {
        column_sums((double *)ag__ptr(acc), ag__ptr(x), n / C, C, dtype);
        return;
    }
    int64_t A, R, W;
    if (n > 0 && middle_sum_geometry(acc, x, &A, &R, &W) && R > 1) {
        if (W == 1) {
            row_sums((double *)ag__ptr(acc), ag__ptr(x), A, R, dtype);
            return;
        }
        if (A > 1) {
            middle_sums((double *)ag__ptr(acc), ag__ptr(x), A, R, W, dtype);
            return;
        }
    }
    ag_iter it;
    ag__iter_init(&it, x->ndim, x->shape);
    ag__iter_add(&it, acc);
    ag__iter_add(&it, x);
    ag__iter_run_sum(&it, ag__sum_kernel, &dtype);
}

ag_tensor *ag__accumulator_for(ag_tensor *y) {
    if (y->dtype == AG_F64) return ag_retain(y);
    return ag__new_unowned(AG_F64, y->ndim, y->shape, true);
}

/* ---- sum over broadcast dims ------------------------------------------------------ */
/* p[0] += p[1], elementwise, or one float64-accumulated run when s[0] == 0 */
#define ACC_KERNEL(NAME, T, DT)                                                        \
    static void NAME(char **p, const int64_t *s, int64_t n, void *ctx) {               \
        (void)ctx;                                                                     \
        if (s[0] == 0) *(T *)p[0] += (T)ag__sum_run(p[1], s[1], n, DT);                \
        else                                                                           \
            for (int64_t i = 0; i < n; i++) *(T *)(p[0] + i * s[0]) += *(const T *)(p[1] + i * s[1]); \
    }
ACC_KERNEL(acc_f32, float, AG_F32)
ACC_KERNEL(acc_f64, double, AG_F64)

void ag__acc_kernel(char **p, const int64_t *s, int64_t n, void *ctx) {
    if (*(const ag_dtype *)ctx == AG_F64) acc_f64(p, s, n, NULL);
    else acc_f32(p, s, n, NULL);
}

ag_tensor *ag__sum_to(const ag_tensor *g, int ndim, const int64_t *to) {
    ag_tensor *out = ag__new_unowned(g->dtype, ndim, to, true);
    ag_tensor *acc = out ? ag__accumulator_for(out) : NULL;
    if (!acc) {
        ag_release(out);
        return NULL;
    }
    ag__sum_into(acc, g); /* float32 sums in float64, then rounded once */
    if (acc != out) ag__copy_into(out, acc);
    ag_release(acc);
    return out;
}

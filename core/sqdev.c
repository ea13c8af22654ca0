/*
 * core/sqdev.c - Σ (x - mean)² over any dims of a contiguous x, read in rows (see sqdev.h).
 *
 * x is read as slabs [A, R, C]: R the last run of summed dims, A and C the kept dims just before and
 * after it; the dims before A (several runs: var over dims 0 and 2 of [N, C, H, W]) are looped over,
 * each output's slabs in order, each slab summed into acc by one of three kernels:
 *
 * Columns (C >= 8): each row of x is read whole and contiguous, the C float64 sums kept in acc (in
 * cache: C doubles, and C of the mean), eight rows at a time added as the float64 tree
 * ((d0² + d1²) + (d2² + d3²)) + ((d4² + d5²) + (d6² + d7²)) where C >= 256, then four rows at a time
 * as ((d0² + d1²) + (d2² + d3²)), the rows past the last four one by one (the tree's roundings are
 * those of any order of non-negative terms: within (R - 1)·2^-53 of the sum, relatively, each term
 * within 2·2^-53 of (x - mean)²).  Before session 22 the iterator summed each column down its stride
 * (var of [2048, 2048] over dim 0: 8 KiB apart, about 0.5 GB/s) on one thread.  Each column's
 * additions do not depend on which columns are computed with it, so the columns split over the
 * threads freely: the same bits on any number of threads.
 *
 * Rows (C = 1, A > 1): each row as before, AG_SUM8 of (x - m)² in float64 (the same bits as the
 * iterator's kernel gave), split over the threads by rows, eight rows at a time on AVX-512.
 *
 * Narrow columns (C < 8, and a full sum: C = 1, A = 1): see SQDEV_NARROW_BODY (session 23; before, the
 * iterator, and several runs of dims too: var over dims 0 and 2 of [64, 64, 64, 64] took 33-37 ms one
 * thread, the mean by the iterator 15 of them).  Any such order is one of non-negative terms: the
 * bound above holds with R the number of terms an output sums.
 */
#include <omp.h>
#include <stddef.h>
#include <string.h>
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
/* Each row's lines are prefetched this many bytes ahead (eight rows are eight streams; as core/sum.c's rows8) */
#define ROWS8_AHEAD 1024
/* acc + finish for eight rows at once: row k's AG_SUM8 accumulators in v[k] (lane j the terms j mod 8), its
 * tail in lane k of tail: ((a0 + a4) + (a1 + a5)) + ((a2 + a6) + (a3 + a7)) + tail in each lane, the same
 * additions as ag__sum8_finish_512's (lower operand first), made by shuffles for the eight rows together */
__attribute__((target("avx512f"))) static inline __m512d sum8_finish8_512(const __m512d *v, __m512d tail) {
    __m512d h[4]; /* b_j = a_j + a_(j+4): rows 2i and 2i + 1 in h[i]'s halves */
    for (int i = 0; i < 4; i++)
        h[i] = _mm512_add_pd(_mm512_shuffle_f64x2(v[2 * i], v[2 * i + 1], 0x44), _mm512_shuffle_f64x2(v[2 * i], v[2 * i + 1], 0xEE));
    /* b0 + b1 and b2 + b3: lanes (c0, c0, c1, c1, c0, c0, c1, c1) of rows (0, 2, 0, 2, 1, 3, 1, 3) (+4 in q1) */
    const __m512d q0 = _mm512_add_pd(_mm512_unpacklo_pd(h[0], h[1]), _mm512_unpackhi_pd(h[0], h[1]));
    const __m512d q1 = _mm512_add_pd(_mm512_unpacklo_pd(h[2], h[3]), _mm512_unpackhi_pd(h[2], h[3]));
    /* c0 + c1 of rows 0, 2, 1, 3, 4, 6, 5, 7, put back in order, + the tails */
    const __m512d c0 = _mm512_permutex2var_pd(q0, _mm512_setr_epi64(0, 1, 4, 5, 8, 9, 12, 13), q1);
    const __m512d c1 = _mm512_permutex2var_pd(q0, _mm512_setr_epi64(2, 3, 6, 7, 10, 11, 14, 15), q1);
    return _mm512_add_pd(_mm512_permutexvar_pd(_mm512_setr_epi64(0, 2, 1, 3, 4, 6, 5, 7), _mm512_add_pd(c0, c1)), tail);
}
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
                    _mm_prefetch((const char *)(xr[k] + b) + ROWS8_AHEAD, _MM_HINT_T0);                  \
                    const __m512d d = _mm512_sub_pd(LOAD8(xr[k] + b), mv[k]);                            \
                    sv[k] = _mm512_add_pd(sv[k], _mm512_mul_pd(d, d));                                   \
                }                                                                                        \
            }                                                                                            \
            double t[8];                                                                                 \
            for (int k = 0; k < 8; k++) {                                                                \
                t[k] = 0;                                                                                \
                for (int64_t b = R8; b < R; b++) t[k] += sq_dev((double)xr[k][b], m[a + k]);             \
            }                                                                                            \
            _mm512_storeu_pd(acc + a, _mm512_add_pd(_mm512_loadu_pd(acc + a), sum8_finish8_512(sv, _mm512_loadu_pd(t)))); \
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

/* Narrow x ([A, R, C] summed over R, C < MIN_COLS columns, and a full sum: C = 1, A = 1): each row's
 * loop over C would be too short to vectorise (the iterator's columns, a column down its stride: var of
 * [1e6, 3] over dim 0 1.6-1.7 ms one thread, now 0.44-0.54; a full var of [2048, 2048] 1.3, now 0.82-0.93,
 * AG_SUM8's one chain on one thread before), so x is read flat in chunks of narrow_chunk_rows(C) rows
 * (about 2^15 elements), each chunk in blocks of 8 rows (8·C elements, element p of a block in
 * column p mod C), four blocks a float64 tree: s[p] += ((d0² + d1²) + (d2² + d3²)) with dk the
 * deviation of block k's element p; the chunk's sum of column c is then 0 + s[c] + s[c + C] + ... (p
 * increasing), plus the rows past the last four blocks one by one, and acc[c] += each chunk's sum in
 * chunk order.  The chunks are fixed by R and C alone, so they may go to different threads (a full
 * var, or few outputs) with the same bits on any number of threads. */
#define MIN_COLS 8
#define NARROW_GROUP 32 /* rows: four blocks of eight */
/* the rows of a chunk: NARROW_GROUP·⌊1024 / C⌋, about 2^15 elements */
static int64_t narrow_chunk_rows(int64_t C) { return NARROW_GROUP * (1024 / C); }

/* part[c] = the sum of one chunk of rows (rows of C < MIN_COLS elements at x) as documented above */
#define SQDEV_NARROW_BODY(NAME, T)                                                                       \
    static inline __attribute__((always_inline)) void NAME(double *restrict part, const T *restrict x,  \
                                                           const double *restrict m, int64_t rows, const int64_t C) { \
        double mp[8 * MIN_COLS], s[8 * MIN_COLS];                                                        \
        const int64_t P = 8 * C;                                                                         \
        for (int64_t p = 0; p < P; p++) mp[p] = m[p % C], s[p] = 0;                                      \
        int64_t r = 0;                                                                                   \
        for (; r + NARROW_GROUP <= rows; r += NARROW_GROUP) {                                            \
            const T *restrict xb = x + r * C;                                                            \
            for (int64_t p = 0; p < P; p++) {                                                            \
                const double d0 = (double)xb[p] - mp[p], d1 = (double)xb[P + p] - mp[p];                \
                const double d2 = (double)xb[2 * P + p] - mp[p], d3 = (double)xb[3 * P + p] - mp[p];    \
                s[p] += (d0 * d0 + d1 * d1) + (d2 * d2 + d3 * d3);                                       \
            }                                                                                            \
        }                                                                                                \
        for (int64_t c = 0; c < C; c++) part[c] = 0;                                                     \
        for (int64_t p = 0; p < P; p++) part[p % C] += s[p];                                             \
        for (; r < rows; r++)                                                                            \
            for (int64_t c = 0; c < C; c++) {                                                            \
                const double d = (double)x[r * C + c] - m[c];                                            \
                part[c] += d * d;                                                                        \
            }                                                                                            \
    }
SQDEV_NARROW_BODY(narrow_body_f32, float)
SQDEV_NARROW_BODY(narrow_body_f64, double)
/* The body for each C in 1 .. 7 as a constant (its blocks' loops then unroll into vectors) */
#define SQDEV_NARROW_KERNEL(NAME, BODY, T)                                                               \
    AG_VEC_CLONES_512 static void NAME(double *restrict part, const T *restrict x, const double *restrict m, \
                                       int64_t rows, int64_t C) {                                       \
        switch (C) {                                                                                     \
        case 1: BODY(part, x, m, rows, 1); break;                                                        \
        case 2: BODY(part, x, m, rows, 2); break;                                                        \
        case 3: BODY(part, x, m, rows, 3); break;                                                        \
        case 4: BODY(part, x, m, rows, 4); break;                                                        \
        case 5: BODY(part, x, m, rows, 5); break;                                                        \
        case 6: BODY(part, x, m, rows, 6); break;                                                        \
        default: BODY(part, x, m, rows, 7); break;                                                       \
        }                                                                                                \
    }
SQDEV_NARROW_KERNEL(sqdev_narrow_f32, narrow_body_f32, float)
SQDEV_NARROW_KERNEL(sqdev_narrow_f64, narrow_body_f64, double)

/* part[c] for chunk ch of an [R, C] slab at x */
static void narrow_chunk(double *part, const char *x, const double *m, int64_t R, int64_t C, int64_t ch, bool f64) {
    const int64_t CH = narrow_chunk_rows(C), r0 = ch * CH, rows = R - r0 < CH ? R - r0 : CH;
    if (f64) sqdev_narrow_f64(part, (const double *)x + r0 * C, m, rows, C);
    else sqdev_narrow_f32(part, (const float *)x + r0 * C, m, rows, C);
}

/* acc[c] += each chunk's sum of an [R, C] slab (C < MIN_COLS), in chunk order */
static void narrow(double *acc, const char *x, const double *m, int64_t R, int64_t C, bool f64) {
    const int64_t chunks = (R + narrow_chunk_rows(C) - 1) / narrow_chunk_rows(C);
    for (int64_t ch = 0; ch < chunks; ch++) {
        double part[MIN_COLS];
        narrow_chunk(part, x, m, R, C, ch, f64);
        for (int64_t c = 0; c < C; c++) acc[c] += part[c];
    }
}

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

/* x (contiguous) read as O slabs [A, R, C]: R the product of the last run of summed dims, A of the kept
 * dims just before it, C of those after it (1 where there are none); the O slabs are the dims before A,
 * alternately runs of kept and summed dims (osize, osum; outermost first), K of them kept.  Output
 * (k, a, c) (k the kept index of a slab) is element (k·A + a)·C + c of acc, of the mean and of sg. */
typedef struct geom {
    int64_t A, R, C, O, K;
    int nout;
    int64_t osize[AG_MAX_DIMS];
    bool osum[AG_MAX_DIMS];
} geom;

/* The kernel a geometry takes: rows (C = 1, A > 1), columns (C >= MIN_COLS) or narrow (else) */
typedef enum { K_ROWS, K_COLS, K_NARROW } kernel_kind;
static kernel_kind kind_of(const geom *g) { return g->C >= MIN_COLS ? K_COLS : g->C == 1 && g->A > 1 ? K_ROWS : K_NARROW; }

/* Whether out (acc, or var's per-output scale) sums a non-empty contiguous x over some of its dims,
 * out and mean contiguous; g set where true.  The forward and the adjoint take the same geometries. */
static bool sqdev_geometry(const ag_tensor *out, const ag_tensor *x, const ag_tensor *mean, geom *g) {
    if (ag__numel(x->ndim, x->shape) <= 0 || !ag__contig(mean) || !ag__contig(out) || !ag__contig(x) || out->ndim > x->ndim)
        return false;
    int n = 0;
    int64_t size[AG_MAX_DIMS];
    bool sum[AG_MAX_DIMS];
    for (int d = 0; d < x->ndim; d++) { /* runs of dims, size-1 dims left out */
        const int ad = d - (x->ndim - out->ndim);
        const int64_t xs = x->shape[d], os = ad >= 0 ? out->shape[ad] : 1;
        if (xs == 1) continue;
        if (os != 1 && os != xs) return false;
        if (n > 0 && sum[n - 1] == (os == 1)) size[n - 1] *= xs;
        else size[n] = xs, sum[n] = os == 1, n++;
    }
    int j = n - 1; /* the last summed run */
    while (j >= 0 && !sum[j]) j--;
    g->nout = 0, g->O = g->K = 1;
    if (j < 0) { /* nothing summed: rows of one element */
        g->A = ag__numel(x->ndim, x->shape), g->R = g->C = 1;
        return true;
    }
    g->R = size[j], g->C = j + 1 < n ? size[j + 1] : 1, g->A = j >= 1 ? size[j - 1] : 1;
    for (int i = 0; i + 2 <= j; i++) {
        g->osize[g->nout] = size[i], g->osum[g->nout] = sum[i], g->nout++;
        g->O *= size[i];
        if (!sum[i]) g->K *= size[i];
    }
    return true;
}

/* The slab of kept index k and summed index s (both row-major over their runs) */
static int64_t slab_of(const geom *g, int64_t k, int64_t s) {
    int64_t o = 0, mul = 1;
    for (int i = g->nout - 1; i >= 0; i--) {
        int64_t *v = g->osum[i] ? &s : &k;
        o += *v % g->osize[i] * mul;
        *v /= g->osize[i];
        mul *= g->osize[i];
    }
    return o;
}

/* The kept index of slab o */
static int64_t kept_of(const geom *g, int64_t o) {
    int64_t k = 0, mul = 1;
    for (int i = g->nout - 1; i >= 0; i--) {
        const int64_t digit = o % g->osize[i];
        o /= g->osize[i];
        if (!g->osum[i]) k += digit * mul, mul *= g->osize[i];
    }
    return k;
}

/* The threads for n elements, at most 64 (as core/sum.c's column sums) */
static int sqdev_threads(int64_t n) {
    const int threads = ag__threads_for(n);
    return threads > 64 ? 64 : threads;
}

/* A narrow geometry with fewer outputs' rows (K·A) than threads: its chunks shared out, each chunk's sums
 * into a buffer, then added in order (the order narrow() adds them in: the same bits); false (nothing
 * done) without memory for the buffer */
static bool narrow_chunks_shared(double *acc, const char *xp, const double *m, const geom *g, int threads, bool f64) {
    const int64_t A = g->A, R = g->R, C = g->C, S = g->O / g->K, es = f64 ? 8 : 4;
    const int64_t chunks = (R + narrow_chunk_rows(C) - 1) / narrow_chunk_rows(C), per = S * chunks, tasks = g->K * A * per;
    double *part = (double *)ag__alloc(sizeof(double) * (size_t)(tasks * C));
    if (!part) return false;
    AG_PARALLEL(threads, {
        for (int64_t i = ag__share_start(tasks, ag__thread, ag__team); i < ag__share_start(tasks, ag__thread + 1, ag__team); i++) {
            const int64_t u = i / per, s = i % per / chunks, k = u / A, a = u % A;
            const char *xs = xp + (slab_of(g, k, s) * A + a) * R * C * es;
            narrow_chunk(part + i * C, xs, m + u * C, R, C, i % chunks, f64);
        }
    });
    for (int64_t u = 0; u < g->K * A; u++)
        for (int64_t i = u * per; i < (u + 1) * per; i++)
            for (int64_t c = 0; c < C; c++) acc[u * C + c] += part[i * C + c];
    ag__free(part);
    return true;
}

bool ag__sqdev_into(ag_tensor *acc, const ag_tensor *x, const ag_tensor *mean) {
    geom g;
    if (!sqdev_geometry(acc, x, mean, &g)) return false;
    const int64_t n = ag__numel(x->ndim, x->shape), A = g.A, R = g.R, C = g.C, K = g.K, S = g.O / g.K;
    const bool f64 = x->dtype == AG_F64;
    const int64_t es = (int64_t)ag__esize(x->dtype), slab = A * R * C * es;
    double *a = (double *)ag__ptr(acc);
    const double *m = (const double *)ag__ptr(mean);
    const char *xp = ag__ptr(x);
    const int threads = sqdev_threads(n);
    const kernel_kind kind = kind_of(&g);
    if (kind == K_NARROW && threads > 1 && K * A < threads && R > narrow_chunk_rows(C) &&
        narrow_chunks_shared(a, xp, m, &g, threads, f64))
        return true;
    if (kind == K_COLS && K * A < threads) { /* few slabs: each one's columns split in blocks of whole cache lines */
        AG_PARALLEL(threads, {
            const int64_t c0 = C * ag__thread / ag__team / 16 * 16;
            const int64_t c1 = ag__thread == ag__team - 1 ? C : C * (ag__thread + 1) / ag__team / 16 * 16;
            for (int64_t k = 0; k < K && c0 < c1; k++)
                for (int64_t s = 0; s < S; s++) {
                    const char *xo = xp + slab_of(&g, k, s) * slab;
                    for (int64_t i = 0; i < A; i++)
                        cols(a + (k * A + i) * C, xo + i * R * C * es, m + (k * A + i) * C, R, C, c0, c1, f64);
                }
        });
        return true;
    }
    /* the K·A rows of outputs shared out whole, each one's slabs in order */
    AG_PARALLEL(threads, {
        const int64_t u0 = ag__share_start(K * A, ag__thread, ag__team), u1 = ag__share_start(K * A, ag__thread + 1, ag__team);
        for (int64_t k = u0 / A; k < K && k * A < u1; k++) {
            const int64_t a0 = u0 > k * A ? u0 - k * A : 0, a1 = u1 < (k + 1) * A ? u1 - k * A : A;
            for (int64_t s = 0; s < S; s++) {
                const char *xo = xp + slab_of(&g, k, s) * slab;
                if (kind == K_ROWS) rows(a + k * A, xo, m + k * A, R, a0, a1, f64);
                else
                    for (int64_t i = a0; i < a1; i++) {
                        double *ai = a + (k * A + i) * C;
                        const double *mi = m + (k * A + i) * C;
                        if (kind == K_COLS) cols(ai, xo + i * R * C * es, mi, R, C, 0, C, f64);
                        else narrow(ai, xo + i * R * C * es, mi, R, C, f64);
                    }
            }
        }
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

/* gx[i] = sg·(T)(x[i] - m) for i in [0, n): a piece of one output's row (C = 1) */
#define VAR_GRAD_RUN_KERNEL(NAME, T)                                                                     \
    AG_VEC_CLONES_512 static void NAME(T *restrict gx, const T *restrict x, double m, T sg, int64_t n) { \
        for (int64_t i = 0; i < n; i++) gx[i] = sg * (T)((double)x[i] - m);                               \
    }
VAR_GRAD_RUN_KERNEL(var_grad_run_f32, float)
VAR_GRAD_RUN_KERNEL(var_grad_run_f64, double)
/* gx[q·C + c] = sg[c]·(T)(x[q·C + c] - m[c]) for the rows q in [0, rows) of C < MIN_COLS elements: in
 * blocks of eight rows, the mean and sg repeated over a block */
#define VAR_GRAD_NARROW_KERNEL(NAME, T)                                                                  \
    AG_VEC_CLONES_512 static void NAME(T *restrict gx, const T *restrict x, const double *restrict m,     \
                                       const T *restrict sg, int64_t C, int64_t rows) {                 \
        double mp[8 * MIN_COLS];                                                                         \
        T sp[8 * MIN_COLS];                                                                              \
        const int64_t P = 8 * C, full = rows / 8 * P;                                                    \
        for (int64_t p = 0; p < P; p++) mp[p] = m[p % C], sp[p] = sg[p % C];                             \
        for (int64_t b = 0; b < full; b += P)                                                            \
            for (int64_t p = 0; p < P; p++) gx[b + p] = sp[p] * (T)((double)x[b + p] - mp[p]);            \
        for (int64_t i = full; i < rows * C; i++) gx[i] = sp[i - full] * (T)((double)x[i] - mp[i - full]); \
    }
VAR_GRAD_NARROW_KERNEL(var_grad_narrow_f32, float)
VAR_GRAD_NARROW_KERNEL(var_grad_narrow_f64, double)

bool ag__var_grad_into(ag_tensor *gx, const ag_tensor *x, const ag_tensor *mean, const ag_tensor *sg) {
    geom g;
    if (!ag__contig(gx) || gx->dtype != x->dtype || sg->dtype != x->dtype || !sqdev_geometry(sg, x, mean, &g)) return false;
    const int64_t n = ag__numel(x->ndim, x->shape), A = g.A, R = g.R, C = g.C;
    const bool f64 = x->dtype == AG_F64;
    const double *m = (const double *)ag__ptr(mean);
    char *gp = ag__ptr(gx);
    const char *xp = ag__ptr(x), *sp = ag__ptr(sg);
    const int threads = sqdev_threads(n);
    if (C == 1 && g.O * A < threads) { /* few long rows: the elements shared out */
        AG_PARALLEL(threads, {
            const int64_t i1 = ag__share_start(n, ag__thread + 1, ag__team);
            for (int64_t i = ag__share_start(n, ag__thread, ag__team); i < i1;) {
                const int64_t row = i / R, end = (row + 1) * R < i1 ? (row + 1) * R : i1;
                const int64_t u = kept_of(&g, row / A) * A + row % A; /* its output */
                if (f64) var_grad_run_f64((double *)gp + i, (const double *)xp + i, m[u], ((const double *)sp)[u], end - i);
                else var_grad_run_f32((float *)gp + i, (const float *)xp + i, m[u], ((const float *)sp)[u], end - i);
                i = end;
            }
        });
        return true;
    }
    if (C == 1) { /* the O·A rows shared out whole, a slab's rows at a time */
        AG_PARALLEL(threads, {
            const int64_t q1 = ag__share_start(g.O * A, ag__thread + 1, ag__team);
            for (int64_t q = ag__share_start(g.O * A, ag__thread, ag__team); q < q1;) {
                const int64_t o = q / A, end = (o + 1) * A < q1 ? (o + 1) * A : q1, base = o * A * R, k = kept_of(&g, o) * A;
                if (f64) var_grad_rows_f64((double *)gp + base, (const double *)xp + base, m + k, (const double *)sp + k, R, q - o * A, end - o * A);
                else var_grad_rows_f32((float *)gp + base, (const float *)xp + base, m + k, (const float *)sp + k, R, q - o * A, end - o * A);
                q = end;
            }
        });
        return true;
    }
    /* the O·A·R rows of C elements shared out; row q is row q mod R of output row (q / R) mod A of slab q / (A·R) */
    AG_PARALLEL(threads, {
        const int64_t q1 = ag__share_start(g.O * A * R, ag__thread + 1, ag__team);
        for (int64_t q = ag__share_start(g.O * A * R, ag__thread, ag__team); q < q1;) {
            const int64_t oa = q / R, end = (oa + 1) * R < q1 ? (oa + 1) * R : q1;
            const int64_t u = (kept_of(&g, oa / A) * A + oa % A) * C, base = oa * R * C; /* its outputs, its first element */
            const int64_t r0 = q - oa * R, r1 = end - oa * R;
            if (C < MIN_COLS) {
                if (f64)
                    var_grad_narrow_f64((double *)gp + base + r0 * C, (const double *)xp + base + r0 * C, m + u, (const double *)sp + u, C, r1 - r0);
                else
                    var_grad_narrow_f32((float *)gp + base + r0 * C, (const float *)xp + base + r0 * C, m + u, (const float *)sp + u, C, r1 - r0);
            } else if (f64)
                var_grad_cols_f64((double *)gp + base, (const double *)xp + base, m + u, (const double *)sp + u, C, r0, r1);
            else
                var_grad_cols_f32((float *)gp + base, (const float *)xp + base, m + u, (const float *)sp + u, C, r0, r1);
            q = end;
        }
    });
    return true;
}

/* ---- var/std's mean over several runs of dims --------------------------------------------------- */
/* A contiguous view of t's storage from element off, of shape [n0, n1, n2] */
static void slab_view(ag_tensor *v, const ag_tensor *t, int64_t off, int64_t n0, int64_t n1, int64_t n2) {
    memset(v, 0, offsetof(ag_tensor, shape));
    v->ndim = 3, v->dtype = t->dtype, v->storage = t->storage, v->offset = t->offset + off;
    v->shape[0] = n0, v->shape[1] = n1, v->shape[2] = n2;
    ag__contiguous_strides(3, v->shape, v->stride);
}

bool ag__sum_slabs_into(ag_tensor *acc, const ag_tensor *x) {
    geom g;
    if ((x->dtype != AG_F32 && x->dtype != AG_F64) || acc->dtype != AG_F64 || !sqdev_geometry(acc, x, acc, &g) || g.nout == 0)
        return false;
    const int64_t A = g.A, R = g.R, C = g.C, S = g.O / g.K, es = (int64_t)ag__esize(x->dtype);
    /* the work units: an output group k's rows a (C > 1) or groups of eight rows (C = 1, ag__slab_sums) */
    const int64_t nb = C == 1 ? (A + 7) / 8 : A, units = g.K * nb;
    const int threads = sqdev_threads(ag__numel(x->ndim, x->shape));
    if (threads > 1 && units < threads) { /* few outputs: each slab on all threads (the same bits) */
        for (int64_t k = 0; k < g.K; k++)
            for (int64_t s = 0; s < S; s++) {
                ag_tensor xv, av;
                slab_view(&xv, x, slab_of(&g, k, s) * A * R * C, A, R, C);
                slab_view(&av, acc, k * A * C, A, 1, C);
                if (!ag__sum_term_into(&av, &xv, AG_SUM_X)) return false; /* not reached: every such slab has a path */
            }
        return true;
    }
    double *ap = (double *)ag__ptr(acc);
    const char *xp = ag__ptr(x);
    /* each thread its units, a group's slabs in order over its rows */
    AG_PARALLEL(threads, {
        const int64_t u1 = ag__share_start(units, ag__thread + 1, ag__team);
        for (int64_t u = ag__share_start(units, ag__thread, ag__team); u < u1;) {
            const int64_t k = u / nb, end = (k + 1) * nb < u1 ? (k + 1) * nb : u1;
            const int64_t b0 = u - k * nb, b1 = end - k * nb;
            const int64_t a0 = C == 1 ? 8 * b0 : b0, a1 = C == 1 ? (8 * b1 < A ? 8 * b1 : A) : b1;
            for (int64_t s = 0; s < S; s++)
                ag__slab_sums(ap + k * A * C, xp + slab_of(&g, k, s) * A * R * C * es, A, R, C, a0, a1, x->dtype, AG_SUM_X);
            u = end;
        }
    });
    return true;
}

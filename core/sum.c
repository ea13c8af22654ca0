/*
 * core/sum.c - float64 accumulation of float32 and float64 data (see sum.h).
 */
#include <math.h>
#include <omp.h>
#include <string.h>
#include "core/parallel.h"
#include "core/sum.h"
#include "core/sum_pairs.h"
#ifdef AG_X86_INTRINSICS
#include <immintrin.h>
#endif

/* ---- contiguous runs ---------------------------------------------------------------------------
 * A contiguous run is summed in sixteen float64 accumulators, acc[k] taking the elements k mod 16,
 * added together in a fixed tree at the end: with four AVX2 vectors of four doubles in flight the
 * loop is bound by the float32 -> float64 conversions (four floats a cycle), not by the latency of
 * the additions, as it was with AG_SUM8's eight (two vectors): x.sum(1) of [256, 4096] float32 (in
 * cache) on one core 29 -> 58 GB/s.  The AVX2 kernel widens each four floats by one conversion
 * from memory (the AVX-512 one each eight, in two vectors); the C kernel (AG_SUM16) makes the same
 * additions in the same order, so every CPU gets the same bits.  A float32 sum of x (not |x| or x²)
 * adds the elements 16 apart in each block of 32 in float32 first and widens the sums
 * (core/sum_pairs.h's AG_SUM16_PAIRS, in every kernel here): half the conversions, so that a sum in
 * cache is bound by its loads ([512, 512] along dim 1, a C harness on the Sapphire Rapids: 20.5 ->
 * 16 us, PyTorch's float32 loop 15), each element rounded at most once in float32 (an error below
 * 2^-24·Σ|x|).  A run longer than SUM_CHUNK elements is cut into chunks of SUM_CHUNK (the
 * last one shorter) whose sums are added in order from 0: the cut depends on n alone, so threads
 * may take chunks (row_sums) and still give the bits one thread gives. */
#define SUM_CHUNK ((int64_t)1 << 15)

/* The terms a sum adds (ag_sum_term), of a float64 value: exact for widened float32 (a float32
 * squared fits float64's 53 bits) */
#define TERM_X(v) (v)
#define TERM_ABS(v) fabs(v)
#define TERM_SQ(v) ((v) * (v))

#define CONTIG_SUM(NAME, T, TERM)                                                              \
    AG_VEC_CLONES static double NAME(const T *restrict x, int64_t n) {                         \
        double s;                                                                              \
        AG_SUM16(s, n, i, TERM((double)x[i]));                                                 \
        return s;                                                                              \
    }
/* Σ x of float32: pairs 16 apart added in float32 first (AG_SUM16_PAIRS) */
AG_VEC_CLONES static double chunk_sum_f32(const float *restrict x, int64_t n) {
    double s;
    AG_SUM16_PAIRS(s, n, x);
    return s;
}
CONTIG_SUM(chunk_sum_f64, double, TERM_X)
CONTIG_SUM(chunk_abs_f32, float, TERM_ABS)
CONTIG_SUM(chunk_abs_f64, double, TERM_ABS)
CONTIG_SUM(chunk_sq_f32, float, TERM_SQ)
CONTIG_SUM(chunk_sq_f64, double, TERM_SQ)

#ifdef AG_X86_INTRINSICS
/* TERM of four widened floats */
__attribute__((target("avx2"))) static inline __m256d term_avx2(__m256d v, ag_sum_term term) {
    return term == AG_SUM_SQ ? _mm256_mul_pd(v, v) : term == AG_SUM_ABS ? _mm256_andnot_pd(_mm256_set1_pd(-0.0), v) : v;
}
__attribute__((target("avx2"), always_inline)) static inline double chunk_f32_avx2(const float *restrict x, int64_t n,
                                                                                   ag_sum_term term) {
    __m256d v0 = _mm256_setzero_pd(), v1 = v0, v2 = v0, v3 = v0;
    int64_t i = 0;
    if (term == AG_SUM_X) /* AG_SUM16_PAIRS: x[i + k] + x[i + 16 + k] in float32, then widened */
        for (; i + 32 <= n; i += 32) {
            const __m256 a = _mm256_add_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(x + i + 16));
            const __m256 b = _mm256_add_ps(_mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(x + i + 24));
            v0 = _mm256_add_pd(v0, _mm256_cvtps_pd(_mm256_castps256_ps128(a)));
            v1 = _mm256_add_pd(v1, _mm256_cvtps_pd(_mm256_extractf128_ps(a, 1)));
            v2 = _mm256_add_pd(v2, _mm256_cvtps_pd(_mm256_castps256_ps128(b)));
            v3 = _mm256_add_pd(v3, _mm256_cvtps_pd(_mm256_extractf128_ps(b, 1)));
        }
    for (; i + 16 <= n; i += 16) {
        v0 = _mm256_add_pd(v0, term_avx2(_mm256_cvtps_pd(_mm_loadu_ps(x + i)), term));
        v1 = _mm256_add_pd(v1, term_avx2(_mm256_cvtps_pd(_mm_loadu_ps(x + i + 4)), term));
        v2 = _mm256_add_pd(v2, term_avx2(_mm256_cvtps_pd(_mm_loadu_ps(x + i + 8)), term));
        v3 = _mm256_add_pd(v3, term_avx2(_mm256_cvtps_pd(_mm_loadu_ps(x + i + 12)), term));
    }
    double tail = 0;
    for (; i < n; i++) {
        const double v = (double)x[i];
        tail += term == AG_SUM_SQ ? v * v : term == AG_SUM_ABS ? fabs(v) : v;
    }
    /* AG_SUM16's tree on the four vectors: 8 apart (v0 + v2, v1 + v3), 4 apart, then 2 and 1 */
    const __m256d h = _mm256_add_pd(_mm256_add_pd(v0, v2), _mm256_add_pd(v1, v3));
    const __m128d q = _mm_add_pd(_mm256_castpd256_pd128(h), _mm256_extractf128_pd(h, 1));
    return _mm_cvtsd_f64(_mm_add_sd(q, _mm_unpackhi_pd(q, q))) + tail;
}
__attribute__((target("avx2"))) static double chunk_sum_f32_avx2(const float *x, int64_t n) { return chunk_f32_avx2(x, n, AG_SUM_X); }
__attribute__((target("avx2"))) static double chunk_abs_f32_avx2(const float *x, int64_t n) { return chunk_f32_avx2(x, n, AG_SUM_ABS); }
__attribute__((target("avx2"))) static double chunk_sq_f32_avx2(const float *x, int64_t n) { return chunk_f32_avx2(x, n, AG_SUM_SQ); }

/* ---- eight rows at a time (AVX-512) -------------------------------------------------------------
 * A sum along the last dim of short or cache-resident rows was bound by each row's own latency: a
 * call, four chains of float64 additions, a horizontal tree and a serial tail per row ([4096, 64]
 * float32 over dim 1: 0.74-0.78x PyTorch).  rows8_f32_avx512 sums eight float32 rows of n <= SUM_CHUNK
 * at once with the additions of chunk_f32_avx2, in the same order: each row's sixteen accumulators
 * are two AVX-512 vectors (acc[0..7], acc[8..15]), sixteen independent chains for eight rows, so the
 * loop is bound by the conversions (eight floats each) instead; the eight rows' trees (8 apart, 4, 2,
 * 1, lower operand first) are made together by shuffles, and the n mod 16 tail elements are
 * gathered one column of the eight rows at a time and added in order.  Σ x adds its pairs 16 apart
 * first, as AG_SUM16_PAIRS.  The same bits as contig_sum
 * of each row (a NaN's sign and payload aside: which NaN an addition of two returns may differ). */
/* Each row's next cache lines are prefetched this many bytes ahead: eight rows are eight streams, and
 * from memory (or a shared last-level cache) the hardware prefetcher alone left them waiting ([4096,
 * 4096] over dim 1, one thread, alternated: 5.0-6.3 ms without, 3.1-5.7 with; in cache no slower).
 * A prefetch past x's end is harmless (it never faults). */
#define ROWS8_AHEAD 1024
/* TERM of eight widened floats (|v| clears the sign bit, as fabs) */
__attribute__((target("avx512f"))) static inline __m512d term_avx512(__m512d v, ag_sum_term term) {
    return term == AG_SUM_SQ ? _mm512_mul_pd(v, v) : term == AG_SUM_ABS ? _mm512_abs_pd(v) : v;
}
/* The upper eight floats of v (AVX-512F: no extractf32x8) */
__attribute__((target("avx512f"))) static inline __m256 upper8_avx512(__m512 v) {
    return _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
}
/* acc[r] += 0 + Σ TERM(x[r·n + i]) over i in [0, n), for r in [0, 8), each sum as chunk_sum's */
__attribute__((target("avx512f"), always_inline)) static inline void rows8_f32_avx512(double *acc, const float *x, int64_t n,
                                                                                     ag_sum_term term) {
    __m512d lo[8], hi[8];
    for (int r = 0; r < 8; r++) lo[r] = hi[r] = _mm512_setzero_pd();
    const int64_t n16 = n - n % 16, n32 = term == AG_SUM_X ? n - n % 32 : 0;
    for (int64_t i = 0; i < n32; i += 32) /* AG_SUM16_PAIRS: x[i + k] + x[i + 16 + k] in float32 */
        for (int r = 0; r < 8; r++) {
            _mm_prefetch((const char *)(x + r * n + i) + ROWS8_AHEAD, _MM_HINT_T0);
            _mm_prefetch((const char *)(x + r * n + i + 16) + ROWS8_AHEAD, _MM_HINT_T0);
            const __m512 s = _mm512_add_ps(_mm512_loadu_ps(x + r * n + i), _mm512_loadu_ps(x + r * n + i + 16));
            lo[r] = _mm512_add_pd(lo[r], _mm512_cvtps_pd(_mm512_castps512_ps256(s)));
            hi[r] = _mm512_add_pd(hi[r], _mm512_cvtps_pd(upper8_avx512(s)));
        }
    for (int64_t i = n32; i < n16; i += 16)
        for (int r = 0; r < 8; r++) {
            _mm_prefetch((const char *)(x + r * n + i) + ROWS8_AHEAD, _MM_HINT_T0);
            lo[r] = _mm512_add_pd(lo[r], term_avx512(_mm512_cvtps_pd(_mm256_loadu_ps(x + r * n + i)), term));
            hi[r] = _mm512_add_pd(hi[r], term_avx512(_mm512_cvtps_pd(_mm256_loadu_ps(x + r * n + i + 8)), term));
        }
    /* the tail: lane r adds row r's elements n16, n16 + 1, ... from 0 */
    const __m256i rows = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32((int)n));
    __m512d tail = _mm512_setzero_pd();
    for (int64_t i = n16; i < n; i++) tail = _mm512_add_pd(tail, term_avx512(_mm512_cvtps_pd(_mm256_i32gather_ps(x + i, rows, 4)), term));
    /* the trees: u = acc[k] + acc[k + 8]; h = u[k] + u[k + 4] (rows 2j, 2j + 1 in one vector's halves) */
    __m512d h[4];
    for (int j = 0; j < 4; j++) {
        const __m512d u0 = _mm512_add_pd(lo[2 * j], hi[2 * j]), u1 = _mm512_add_pd(lo[2 * j + 1], hi[2 * j + 1]);
        h[j] = _mm512_add_pd(_mm512_shuffle_f64x2(u0, u1, 0x44), _mm512_shuffle_f64x2(u0, u1, 0xEE));
    }
    /* q = h[k] + h[k + 2]: [q0 q1] of rows 4j .. 4j + 3 in order */
    const __m512d q0 = _mm512_add_pd(_mm512_shuffle_f64x2(h[0], h[1], 0x88), _mm512_shuffle_f64x2(h[0], h[1], 0xDD)),
                  q1 = _mm512_add_pd(_mm512_shuffle_f64x2(h[2], h[3], 0x88), _mm512_shuffle_f64x2(h[2], h[3], 0xDD));
    /* q0 + q1 of rows 0, 4, 1, 5, 2, 6, 3, 7, put back in order, + the tails */
    const __m512d s = _mm512_add_pd(_mm512_unpacklo_pd(q0, q1), _mm512_unpackhi_pd(q0, q1));
    const __m512d sum = _mm512_add_pd(_mm512_permutexvar_pd(_mm512_setr_epi64(0, 2, 4, 6, 1, 3, 5, 7), s), tail);
    _mm512_storeu_pd(acc, _mm512_add_pd(_mm512_loadu_pd(acc), _mm512_add_pd(_mm512_setzero_pd(), sum)));
}
/* rows8_f32_avx512 over the G groups of eight rows at x */
#define ROWS8_AVX512(NAME, TERM)                                                               \
    __attribute__((target("avx512f"))) static void NAME(double *acc, const float *x, int64_t G, int64_t n) { \
        for (int64_t g = 0; g < G; g++) rows8_f32_avx512(acc + 8 * g, x + 8 * g * n, n, TERM); \
    }
ROWS8_AVX512(rows8_sum_f32_avx512, AG_SUM_X)
ROWS8_AVX512(rows8_abs_f32_avx512, AG_SUM_ABS)
ROWS8_AVX512(rows8_sq_f32_avx512, AG_SUM_SQ)
/* chunk_f32_avx2's sum on AVX-512: its sixteen accumulators as two vectors of eight (lo the
 * elements k mod 16 < 8, hi the others), the same additions in the same order and the same tree
 * (u = lo + hi is its v0 + v2 and v1 + v3 side by side), eight floats a conversion, and each next
 * line prefetched ROWS8_AHEAD bytes ahead: the same bits.  From memory (16.8 MB, inputs rotated, one
 * thread, a C harness, min of 64): 1 844 us with chunk_f32_avx2, 1 542 with two vectors, 1 310 with
 * the prefetch (a float32 FMA loop, as PyTorch sums: 1 146).  Σ x: AG_SUM16_PAIRS's pairs first. */
__attribute__((target("avx512f"), always_inline)) static inline double chunk_f32_avx512(const float *restrict x, int64_t n,
                                                                                       ag_sum_term term) {
    __m512d lo = _mm512_setzero_pd(), hi = lo;
    int64_t i = 0;
    if (term == AG_SUM_X) /* AG_SUM16_PAIRS: x[i + k] + x[i + 16 + k] in float32, then widened */
        for (; i + 32 <= n; i += 32) {
            _mm_prefetch((const char *)(x + i) + ROWS8_AHEAD, _MM_HINT_T0);
            _mm_prefetch((const char *)(x + i + 16) + ROWS8_AHEAD, _MM_HINT_T0);
            const __m512 s = _mm512_add_ps(_mm512_loadu_ps(x + i), _mm512_loadu_ps(x + i + 16));
            lo = _mm512_add_pd(lo, _mm512_cvtps_pd(_mm512_castps512_ps256(s)));
            hi = _mm512_add_pd(hi, _mm512_cvtps_pd(upper8_avx512(s)));
        }
    for (; i + 16 <= n; i += 16) {
        _mm_prefetch((const char *)(x + i) + ROWS8_AHEAD, _MM_HINT_T0);
        lo = _mm512_add_pd(lo, term_avx512(_mm512_cvtps_pd(_mm256_loadu_ps(x + i)), term));
        hi = _mm512_add_pd(hi, term_avx512(_mm512_cvtps_pd(_mm256_loadu_ps(x + i + 8)), term));
    }
    double tail = 0;
    for (; i < n; i++) {
        const double v = (double)x[i];
        tail += term == AG_SUM_SQ ? v * v : term == AG_SUM_ABS ? fabs(v) : v;
    }
    const __m512d u = _mm512_add_pd(lo, hi);
    const __m256d h = _mm256_add_pd(_mm512_castpd512_pd256(u), _mm512_extractf64x4_pd(u, 1));
    const __m128d q = _mm_add_pd(_mm256_castpd256_pd128(h), _mm256_extractf128_pd(h, 1));
    return _mm_cvtsd_f64(_mm_add_sd(q, _mm_unpackhi_pd(q, q))) + tail;
}
__attribute__((target("avx512f"))) static double chunk_sum_f32_avx512(const float *x, int64_t n) { return chunk_f32_avx512(x, n, AG_SUM_X); }
__attribute__((target("avx512f"))) static double chunk_abs_f32_avx512(const float *x, int64_t n) { return chunk_f32_avx512(x, n, AG_SUM_ABS); }
__attribute__((target("avx512f"))) static double chunk_sq_f32_avx512(const float *x, int64_t n) { return chunk_f32_avx512(x, n, AG_SUM_SQ); }
#endif

/* Σ TERM(x) of the n <= SUM_CHUNK contiguous values of dtype at x, in float64. */
static double chunk_sum(const char *x, int64_t n, ag_dtype dtype, ag_sum_term term) {
    typedef double (*chunk_fn)(const float *, int64_t);
    if (dtype == AG_F64) {
        const double *d = (const double *)x;
        return term == AG_SUM_SQ ? chunk_sq_f64(d, n) : term == AG_SUM_ABS ? chunk_abs_f64(d, n) : chunk_sum_f64(d, n);
    }
    chunk_fn f = term == AG_SUM_SQ ? chunk_sq_f32 : term == AG_SUM_ABS ? chunk_abs_f32 : chunk_sum_f32;
#ifdef AG_X86_INTRINSICS
    if (AG_VEC_512()) f = term == AG_SUM_SQ ? chunk_sq_f32_avx512 : term == AG_SUM_ABS ? chunk_abs_f32_avx512 : chunk_sum_f32_avx512;
    else if (AG_VEC_WIDE()) f = term == AG_SUM_SQ ? chunk_sq_f32_avx2 : term == AG_SUM_ABS ? chunk_abs_f32_avx2 : chunk_sum_f32_avx2;
#endif
    return f((const float *)x, n);
}

/* Σ TERM(x) of the n contiguous values of dtype at x, in float64: its chunks' sums added in order. */
static double contig_sum(const char *x, int64_t n, ag_dtype dtype, ag_sum_term term) {
    const int64_t es = (int64_t)ag__esize(dtype);
    double s = 0;
    for (int64_t i = 0; i < n; i += SUM_CHUNK)
        s += chunk_sum(x + i * es, n - i < SUM_CHUNK ? n - i : SUM_CHUNK, dtype, term);
    return s;
}

double ag__sum_run(const char *x, int64_t step, int64_t n, ag_dtype dtype) {
    if (step == (int64_t)ag__esize(dtype)) return contig_sum(x, n, dtype, AG_SUM_X);
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

/* ---- column sums -------------------------------------------------------------------------------
 * acc[c] += Σ_r x[r·C + c] over a contiguous [R, C] x: eight rows at a time, whose float32 tree
 * ((x0 + x1) + (x2 + x3)) + ((x4 + x5) + (x6 + x7)) (an error below 3·2^-24 of their Σ|x|) is
 * widened and added to the float64 acc; rows past the last eight are added one by one in float64.
 * Narrow x (NARROW_COLS) takes four rows at a time, (x0 + x1) + (x2 + x3): eight rows 256 bytes
 * apart, read from the last-level cache, ran well below four (x [64, 1024, 64] over dim 1, one
 * thread, a C harness: means of 480-840 against 320-390 us), while eight rows of a wide x, each
 * in its own pages, read memory faster than one stream does (x [4096, 4096] over dim 0: 27 GB/s
 * against 20).  Before session 7 every element was widened and four rows at a time added in
 * float64: the conversions bound it (in cache: 56 GB/s on one core).  Σ |x| and Σ x² (the norms)
 * take the same kernels with |x| or x² in the trees.  Each column's additions do not depend on
 * which columns are computed with it, so columns may split over threads freely; rows split only
 * at fixed chunks (column_sums_unfolded).  ROWS_KERNEL makes one: W (8 or 4) rows at a time added
 * as TREE, the rows past the last W one by one as F.  Narrow x (whose [R, C] block sits in cache)
 * takes NARROW_KERNEL's instead (below).  x [64, 1024, 64] over dim 1, one thread, on the AMD Zen 5
 * host: see docs/benchmarks.md (session 16, lead). */
#define ROWS_KERNEL(NAME, T, W, TREE, F)                                                       \
    AG_VEC_CLONES_512 static void NAME(double *restrict acc, const char *xp, int64_t C, int64_t r0, int64_t r1, int64_t c0, int64_t c1) { \
        const T *restrict x = (const T *)xp;                                                   \
        int64_t r = r0;                                                                        \
        for (; r + W <= r1; r += W) {                                                          \
            const T *restrict xr = x + r * C;                                                  \
            for (int64_t c = c0; c < c1; c++) acc[c] += TREE;                                  \
        }                                                                                      \
        for (; r < r1; r++)                                                                    \
            for (int64_t c = c0; c < c1; c++) acc[c] += F((double)x[r * C + c]);               \
    }
/* Narrow x: acc[c] += 0 + s[c] for c in [0, C), s[c] the sum from 0 of column c of a contiguous [R, C]
 * x, four rows at a time added as TREE, the rows past the last four one by one as F (the partial
 * sum of a chunk of rows, column_sums_unfolded, made in place: no zeroed partial to add afterwards).
 * Strips of STRIP_COLS columns (the last one narrower) keep their sums in registers over all the
 * four-row groups, acc read and written once a strip.  Each column adds the same terms in the same
 * order whatever the strips, so the same bits; s[c] starts at +0 and so is never -0, and 0 + s[c]
 * is s[c]: the same bits as a sum into a zeroed partial added to acc (before session 22: memsets, and
 * two more passes over the partials, about a sixth of x [64, 64, 64] over dim 1). */
#define STRIP_COLS 32
#define NARROW_STRIP(T, TREE, F, WIDTH)                                                        \
    do {                                                                                       \
        double a[STRIP_COLS];                                                                  \
        for (int j = 0; j < STRIP_COLS; j++) a[j] = 0;                                         \
        int64_t r = 0;                                                                         \
        for (; r + 4 <= R; r += 4) {                                                           \
            const T *restrict xr = x + r * C;                                                  \
            for (int j = 0; j < (WIDTH); j++) {                                                \
                const int64_t c = s0 + j;                                                      \
                a[j] += TREE;                                                                  \
            }                                                                                  \
        }                                                                                      \
        for (; r < R; r++)                                                                     \
            for (int j = 0; j < (WIDTH); j++) a[j] += F((double)x[r * C + s0 + j]);            \
        for (int j = 0; j < (WIDTH); j++) acc[s0 + j] += a[j];                                 \
    } while (0)
#define NARROW_KERNEL(NAME, T, TREE, F)                                                        \
    AG_VEC_CLONES_512 static void NAME(double *restrict acc, const char *xp, int64_t C, int64_t R) { \
        const T *restrict x = (const T *)xp;                                                   \
        int64_t s0 = 0;                                                                        \
        for (; s0 + STRIP_COLS <= C; s0 += STRIP_COLS) NARROW_STRIP(T, TREE, F, STRIP_COLS);   \
        if (s0 < C) NARROW_STRIP(T, TREE, F, C - s0);                                          \
    }
/* The trees of the terms of rows r .. r + 3 and r .. r + 7 (xr: row r) at column c: F applied in T (a
 * float32 square rounds once more) */
#define TREE4_AT(F, k) ((F(xr[(k) * C + c]) + F(xr[((k) + 1) * C + c])) + (F(xr[((k) + 2) * C + c]) + F(xr[((k) + 3) * C + c])))
#define TREE4(F) TREE4_AT(F, 0)
#define TREE8(F) (TREE4_AT(F, 0) + TREE4_AT(F, 4))
#define TERM_ABSF(v) fabsf(v)
ROWS_KERNEL(rows_f32, float, 8, (double)TREE8(TERM_X), TERM_X)
ROWS_KERNEL(rows_abs_f32, float, 8, (double)TREE8(TERM_ABSF), TERM_ABS)
ROWS_KERNEL(rows_sq_f32, float, 8, (double)TREE8(TERM_SQ), TERM_SQ)
/* float64: the same trees, in float64 */
ROWS_KERNEL(rows_f64, double, 8, TREE8(TERM_X), TERM_X)
ROWS_KERNEL(rows_abs_f64, double, 8, TREE8(TERM_ABS), TERM_ABS)
ROWS_KERNEL(rows_sq_f64, double, 8, TREE8(TERM_SQ), TERM_SQ)

/* Four rows at a time, (x0 + x1) + (x2 + x3), for narrow x (NARROW_COLS) */
NARROW_KERNEL(narrow4_f32, float, (double)TREE4(TERM_X), TERM_X)
NARROW_KERNEL(narrow4_abs_f32, float, (double)TREE4(TERM_ABSF), TERM_ABS)
NARROW_KERNEL(narrow4_sq_f32, float, (double)TREE4(TERM_SQ), TERM_SQ)
NARROW_KERNEL(narrow4_f64, double, TREE4(TERM_X), TERM_X)
NARROW_KERNEL(narrow4_abs_f64, double, TREE4(TERM_ABS), TERM_ABS)
NARROW_KERNEL(narrow4_sq_f64, double, TREE4(TERM_SQ), TERM_SQ)

/* Short columns (fewer than TREE_MIN_ROWS rows) widen every element, four rows at a time:
 * (x0 + x1) + (x2 + x3) in float64, so that a short sum keeps float64's accuracy (over a few
 * rows the float32 trees' roundings do not average out: x [10, 1e6] summed over dim 0 came out
 * 1.9 ulps off) */
#define TREE_MIN_ROWS 64
#define WIDE_X(v) ((double)(v))
#define WIDE_ABS(v) fabs((double)(v))
#define WIDE_SQ(v) ((double)(v) * (double)(v))
ROWS_KERNEL(rows4_wide_f32, float, 4, TREE4(WIDE_X), TERM_X)
ROWS_KERNEL(rows4_wide_abs_f32, float, 4, TREE4(WIDE_ABS), TERM_ABS)
ROWS_KERNEL(rows4_wide_sq_f32, float, 4, TREE4(WIDE_SQ), TERM_SQ)
NARROW_KERNEL(narrow4_wide_f32, float, TREE4(WIDE_X), TERM_X)
NARROW_KERNEL(narrow4_wide_abs_f32, float, TREE4(WIDE_ABS), TERM_ABS)
NARROW_KERNEL(narrow4_wide_sq_f32, float, TREE4(WIDE_SQ), TERM_SQ)

typedef void (*rows_fn)(double *, const char *, int64_t, int64_t, int64_t, int64_t, int64_t);
typedef void (*narrow_fn)(double *, const char *, int64_t, int64_t);
/* The column kernels of one dtype and term: eight-row trees and four rows widened (wide x), four-row
 * trees and four rows widened (narrow x).  float64 has nothing to widen: its widened entries are its trees. */
typedef struct col_kernels {
    rows_fn rows8, wide4;
    narrow_fn narrow4, narrow_wide4;
} col_kernels;
static const col_kernels col_kernels_of[2][3] = {
    {{rows_f32, rows4_wide_f32, narrow4_f32, narrow4_wide_f32},
     {rows_abs_f32, rows4_wide_abs_f32, narrow4_abs_f32, narrow4_wide_abs_f32},
     {rows_sq_f32, rows4_wide_sq_f32, narrow4_sq_f32, narrow4_wide_sq_f32}},
    {{rows_f64, rows_f64, narrow4_f64, narrow4_f64},
     {rows_abs_f64, rows_abs_f64, narrow4_abs_f64, narrow4_abs_f64},
     {rows_sq_f64, rows_sq_f64, narrow4_sq_f64, narrow4_sq_f64}},
};

/* Below FOLD_COLS columns a column sum takes the leading rows eight at a time as one row of 8C
 * columns (so that each pass over the columns is long enough to vectorise: x [1048576, 3] over
 * dim 0 on one thread 866 -> 173 us) and folds the 8C sums into C at the end, in order. */
#define FOLD_COLS 64
/* Below NARROW_COLS columns (after folding) the rows split over threads, at fixed chunks of at
 * least CHUNK_ROWS rows, at most MAX_CHUNKS of them (multiples of 8), each chunk summed from 0 into
 * its own float64 partial; the partials are added in chunk order.  The chunks depend on R and C
 * alone, and one thread makes the same chunks, so any number of threads gives the same bits. */
#define NARROW_COLS 256
#define CHUNK_ROWS 256
#define MAX_CHUNKS 64

/* Column sums of a contiguous [R, C] x into acc[C] (see above), on up to `threads` threads. */
static void column_sums_unfolded(double *acc, const char *x, int64_t R, int64_t C, ag_dtype dtype, int threads, bool tree,
                                 ag_sum_term term) {
    const col_kernels *k = &col_kernels_of[dtype == AG_F64][term];
    const rows_fn rows = tree ? k->rows8 : k->wide4;
    const narrow_fn narrow = tree ? k->narrow4 : k->narrow_wide4;
    const int64_t es = (int64_t)ag__esize(dtype);
    if (threads > 64) threads = 64;
    if (C >= NARROW_COLS) { /* wide: columns in blocks of whole cache lines */
        if (threads <= 1) {
            rows(acc, x, C, 0, R, 0, C);
            return;
        }
#pragma omp parallel num_threads(threads)
        {
            const int nt = omp_get_num_threads(), t = omp_get_thread_num();
            rows(acc, x, C, 0, R, C * t / nt / 8 * 8, t == nt - 1 ? C : C * (t + 1) / nt / 8 * 8);
        }
        return;
    }
    int64_t K = (R + MAX_CHUNKS - 1) / MAX_CHUNKS; /* rows a chunk */
    K = K < CHUNK_ROWS ? CHUNK_ROWS : (K + 7) / 8 * 8;
    const int64_t chunks = (R + K - 1) / K;
    double *part = NULL;
    if (threads > 1 && chunks > 1 && !(part = ag__calloc(sizeof(double) * (size_t)(chunks * C)))) threads = 1;
    if (chunks <= 1) { /* one chunk: its sums from 0 added to acc */
        narrow(acc, x, C, R);
        ag__free(part);
        return;
    }
    if (threads <= 1) { /* the chunks in order, each from 0, added to sum from 0 */
        double sum[NARROW_COLS];
        memset(sum, 0, sizeof(double) * (size_t)C); /* C < NARROW_COLS: not the whole array, on every call */
        for (int64_t k = 0; k < chunks; k++) narrow(sum, x + k * K * C * es, C, (k + 1) * K < R ? K : R - k * K);
        for (int64_t c = 0; c < C; c++) acc[c] += sum[c];
        ag__free(part);
        return;
    }
#pragma omp parallel num_threads(threads)
    {
        const int nt = omp_get_num_threads(), t = omp_get_thread_num();
        for (int64_t k = ag__share_start(chunks, t, nt); k < ag__share_start(chunks, t + 1, nt); k++)
            narrow(part + k * C, x + k * K * C * es, C, (k + 1) * K < R ? K : R - k * K);
    }
    for (int64_t c = 0; c < C; c++) {
        double s = 0;
        for (int64_t k = 0; k < chunks; k++) s += part[k * C + c];
        acc[c] += s;
    }
    ag__free(part);
}

/* Column sums of TERM(x) of a contiguous [R, C] x into acc[C], on up to `threads` threads (the
 * same bits on any number): narrow ones folded (FOLD_COLS). */
static void column_sums_on(double *acc, const char *x, int64_t R, int64_t C, ag_dtype dtype, int threads, ag_sum_term term) {
    const bool tree = R >= TREE_MIN_ROWS;
    if (C >= FOLD_COLS || R < 16) {
        column_sums_unfolded(acc, x, R, C, dtype, threads, tree, term);
        return;
    }
    const int64_t R8 = R / 8 * 8;
    double wide[8 * FOLD_COLS] = {0};
    column_sums_unfolded(wide, x, R8 / 8, 8 * C, dtype, threads, tree, term);
    for (int64_t c = 0; c < C; c++) {
        double s = wide[c];
        for (int k = 1; k < 8; k++) s += wide[k * C + c];
        acc[c] += s;
    }
    col_kernels_of[dtype == AG_F64][term].rows8(acc, x, C, R8, R, 0, C); /* the last R mod 8 rows, one by one */
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

bool ag__middle_sum_geometry(const ag_tensor *acc, const ag_tensor *x, int64_t *A, int64_t *R, int64_t *C) {
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

/* acc[a, c] += Σ_r x[a, r, c] over a contiguous [A, R, C] x: the A column sums split over threads
 * when there are at least as many as threads, else each one split as column_sums_on does (the same
 * bits either way). */
static void middle_sums(double *acc, const char *x, int64_t A, int64_t R, int64_t C, ag_dtype dtype, ag_sum_term term) {
    const int64_t es = (int64_t)ag__esize(dtype);
    const int threads = ag__threads_for(A * R * C);
    if (threads > 1 && A >= threads) {
#pragma omp parallel num_threads(threads)
        {
            int nt = omp_get_num_threads(), t = omp_get_thread_num();
            for (int64_t a = ag__share_start(A, t, nt); a < ag__share_start(A, t + 1, nt); a++)
                column_sums_on(acc + a * C, x + a * R * C * es, R, C, dtype, 1, term);
        }
        return;
    }
    for (int64_t a = 0; a < A; a++) column_sums_on(acc + a * C, x + a * R * C * es, R, C, dtype, threads, term);
}

/* acc[a] += Σ_r x[a·R + r] over a contiguous [A, R] x (a sum along the last dims), each row as
 * contig_sum sums it: its SUM_CHUNK chunks' sums added in order.  Whole rows go to the threads when
 * they share out evenly (A a multiple of the thread count, or many rows: at most one row in 16 more
 * on a thread); fewer rows (one, or 3 on 2 threads) are cut into their chunks, shared over the
 * threads, whose float64 sums are added in chunk order: the same bits either way.  Where
 * rows8_f32_avx512 runs (float32 rows of R <= SUM_CHUNK, at least ROWS8_MIN_ROWS of them), the rows
 * go to it in groups of eight, the threads taking whole groups, and the last A mod 8 rows to
 * contig_sum: which kernel sums a row depends on A alone, so that a NaN comes out the same on any
 * number of threads. */
#define ROW_CHUNK_MAX_ROWS 16
#define ROW_PARTS 1024 /* the chunked rows' partials kept on the stack (more on the heap) */
#define ROWS8_MIN_ROWS 32
static void row_sums(double *acc, const char *x, int64_t A, int64_t R, ag_dtype dtype, ag_sum_term term) {
    const int64_t es = (int64_t)ag__esize(dtype), chunks = (R + SUM_CHUNK - 1) / SUM_CHUNK;
    int threads = ag__threads_for(A * R);
    if (threads > 64) threads = 64;
#ifdef AG_X86_INTRINSICS
    if (dtype == AG_F32 && R <= SUM_CHUNK && A >= ROWS8_MIN_ROWS && AG_VEC_512()) {
        void (*rows8)(double *, const float *, int64_t, int64_t) =
            term == AG_SUM_SQ ? rows8_sq_f32_avx512 : term == AG_SUM_ABS ? rows8_abs_f32_avx512 : rows8_sum_f32_avx512;
        const int64_t G = A / 8;
        if (threads <= 1) rows8(acc, (const float *)x, G, R);
        else {
#pragma omp parallel num_threads(threads)
            {
                const int nt = omp_get_num_threads(), t = omp_get_thread_num();
                const int64_t g0 = ag__share_start(G, t, nt), g1 = ag__share_start(G, t + 1, nt);
                rows8(acc + 8 * g0, (const float *)x + 8 * g0 * R, g1 - g0, R);
            }
        }
        for (int64_t a = 8 * G; a < A; a++) acc[a] += contig_sum(x + a * R * es, R, dtype, term);
        return;
    }
#endif
    if (threads <= 1) {
        for (int64_t a = 0; a < A; a++) acc[a] += contig_sum(x + a * R * es, R, dtype, term);
        return;
    }
    const int64_t tasks = A * chunks;
    double stack[ROW_PARTS], *part = NULL; /* part[a·chunks + k]: chunk k of row a */
    if (!(A % threads == 0 || A >= ROW_CHUNK_MAX_ROWS * (int64_t)threads))
        part = tasks <= ROW_PARTS ? stack : (double *)ag__alloc(sizeof(double) * (size_t)tasks);
    if (!part) { /* whole rows (or no memory for the partials) */
#pragma omp parallel num_threads(threads)
        {
            int nt = omp_get_num_threads(), t = omp_get_thread_num();
            for (int64_t a = ag__share_start(A, t, nt); a < ag__share_start(A, t + 1, nt); a++)
                acc[a] += contig_sum(x + a * R * es, R, dtype, term);
        }
        return;
    }
#pragma omp parallel num_threads(threads)
    {
        int nt = omp_get_num_threads(), t = omp_get_thread_num();
        for (int64_t i = ag__share_start(tasks, t, nt); i < ag__share_start(tasks, t + 1, nt); i++) {
            const int64_t a = i / chunks, lo = i % chunks * SUM_CHUNK;
            part[i] = chunk_sum(x + (a * R + lo) * es, R - lo < SUM_CHUNK ? R - lo : SUM_CHUNK, dtype, term);
        }
    }
    for (int64_t a = 0; a < A; a++) {
        double s = 0;
        for (int64_t k = 0; k < chunks; k++) s += part[a * chunks + k];
        acc[a] += s;
    }
    if (part != stack) ag__free(part);
}

/* ---- slabs of a sum over several runs of dims ----------------------------------------------------
 * core/sqdev.c's ag__sum_slabs_into reads such a sum as slabs [A, R, C], each output's slabs in order,
 * and shares the output rows a out over threads: each slab's rows [a0, a1) here, on one thread, with
 * the kernels and the order ag__sum_term_into takes for the whole slab (column_sums_on a row at a
 * time, or row_sums' groups of eight): a float32 term is rounded at most three times in a tree (3·2^-24
 * of the tree's Σ|x|) before the float64 additions, so an output of N terms is within
 * (3·2^-24 + (N + 2)·2^-53)·Σ|x| of the exact sum (float64 x: (N + 2)·2^-53·Σ|x|) before its own
 * rounding.  x [64, 64, 64, 64] over dims (0, 2), one thread: the iterator 15.7 ms, the slabs 2.7. */
void ag__slab_sums(double *acc, const char *x, int64_t A, int64_t R, int64_t C, int64_t a0, int64_t a1, ag_dtype dtype,
                   ag_sum_term term) {
    const int64_t es = (int64_t)ag__esize(dtype);
    (void)A; /* read by the AVX-512 rows alone */
    if (C > 1) { /* middle_sums' column sums, one a at a time */
        for (int64_t a = a0; a < a1; a++) column_sums_on(acc + a * C, x + a * R * C * es, R, C, dtype, 1, term);
        return;
    }
#ifdef AG_X86_INTRINSICS
    if (dtype == AG_F32 && R <= SUM_CHUNK && A >= ROWS8_MIN_ROWS && AG_VEC_512()) { /* row_sums' groups of eight */
        const int64_t g1 = a1 == A ? A / 8 : a1 / 8;
        if (g1 > a0 / 8) {
            void (*rows8)(double *, const float *, int64_t, int64_t) =
                term == AG_SUM_SQ ? rows8_sq_f32_avx512 : term == AG_SUM_ABS ? rows8_abs_f32_avx512 : rows8_sum_f32_avx512;
            rows8(acc + a0, (const float *)x + a0 * R, g1 - a0 / 8, R);
            a0 = 8 * g1;
        }
    }
#endif
    for (int64_t a = a0; a < a1; a++) acc[a] += contig_sum(x + a * R * es, R, dtype, term);
}

bool ag__sum_term_into(ag_tensor *acc, const ag_tensor *x, ag_sum_term term) {
    const ag_dtype dtype = x->dtype;
    const int64_t n = ag__numel(x->ndim, x->shape);
    if (ag__numel(acc->ndim, acc->shape) == 1 && ag__contig(x) && (n < 128 || ag__threads_for(n) <= 1)) {
        /* a small full sum (ag_sum of a training step): one run */
        *(double *)ag__ptr(acc) += contig_sum(ag__ptr(x), n, dtype, term);
        return true;
    }
    const int64_t C = column_sum_width(acc, x);
    if (C > 1 && n > 0) {
        column_sums_on((double *)ag__ptr(acc), ag__ptr(x), n / C, C, dtype, ag__threads_for(n), term);
        return true;
    }
    int64_t A, R, W;
    if (n > 0 && ag__middle_sum_geometry(acc, x, &A, &R, &W) && R > 1) {
        if (W == 1) {
            row_sums((double *)ag__ptr(acc), ag__ptr(x), A, R, dtype, term);
            return true;
        }
        if (A > 1) {
            middle_sums((double *)ag__ptr(acc), ag__ptr(x), A, R, W, dtype, term);
            return true;
        }
    }
    return false;
}

/* An expanded x (a stride-0 dim) walked by the iterator can hand the sum kernel the same run several
 * times in a row (x [1, 1024] expanded to [1024, 1024], summed over all: one row 1024 times): each
 * thread keeps the last run's sum and adds it again while the run (address, step, length) is the same.
 * The same value is added, in the same order: the bits of summing it again. */
enum { MEMO_THREADS = 64 };
typedef struct {
    ag_dtype dtype;
    struct {
        const char *p;
        int64_t step, n;
        double sum;
    } last[MEMO_THREADS];
} sum_memo;
static void sum_kernel_memo(char **p, const int64_t *s, int64_t n, void *ctx) {
    sum_memo *m = ctx;
    const int t = s[0] == 0 ? omp_get_thread_num() : MEMO_THREADS;
    if (t < 0 || t >= MEMO_THREADS) {
        ag__sum_kernel(p, s, n, &m->dtype);
        return;
    }
    if (m->last[t].p != p[1] || m->last[t].step != s[1] || m->last[t].n != n) {
        m->last[t].p = p[1], m->last[t].step = s[1], m->last[t].n = n;
        m->last[t].sum = ag__sum_run(p[1], s[1], n, m->dtype);
    }
    *(double *)p[0] += m->last[t].sum;
}

void ag__sum_into(ag_tensor *acc, const ag_tensor *x) {
    if (!ag__sum_term_into(acc, x, AG_SUM_X)) ag__sum_walk_into(acc, x);
}

void ag__sum_walk_into(ag_tensor *acc, const ag_tensor *x) {
    ag_dtype dtype = x->dtype;
    ag_iter it;
    ag__iter_init(&it, x->ndim, x->shape);
    ag__iter_add(&it, acc);
    ag__iter_add(&it, x);
    bool expanded = false;
    for (int d = 0; d < x->ndim; d++) expanded |= x->shape[d] > 1 && x->stride[d] == 0;
    if (!expanded) {
        ag__iter_run_sum(&it, ag__sum_kernel, &dtype);
        return;
    }
    sum_memo m;
    m.dtype = dtype;
    for (int t = 0; t < MEMO_THREADS; t++) m.last[t].p = NULL, m.last[t].n = -1;
    ag__iter_run_sum(&it, sum_kernel_memo, &m);
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

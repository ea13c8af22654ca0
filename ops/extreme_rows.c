/*
 * extreme_rows.c - amax/amin of short contiguous float32 rows (2 to EXTREME_SHORT_MAX elements)
 * with AVX-512, a row's extreme kept in registers (ops/reduce.c's extreme_rows calls it).  Its own
 * file so that ops/reduce.c depends on no op file (ops/extrema.c calls ag_sum).
 */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include "core/parallel.h"
#include "core/simd_extreme.h"
#include "core/sum.h"
#include "ops/extreme_rows.h"

#ifdef AG_X86_INTRINSICS
#include <immintrin.h>
/* amax/amin's short rows with AVX-512 (ag__extreme_rows_f32): acc[o] = the extreme of row o, NaN where
 * the row holds one.  Rows of 16 or more: a row a pass, two accumulators (OP, max or min) over its whole
 * vectors, the last vector read again from the row's end (overlapping: an extreme is idempotent), its NaNs
 * an unordered compare of each pair of vectors, the lanes then reduced in registers.  Rows of 8 to 15 and
 * of 4 to 7: the row's first and last eight (four) elements, overlapping, in one pair of vectors; rows of
 * 2 and 3: a scalar chain (SCMP).  Values are x's own (the max/min instructions never return a NaN here;
 * the row's NaN flag does); which of two equal zeros comes back is not specified (as for the lane scan in
 * ops/reduce.c).  The lane scan took a row's 64 lanes and a tree of six halvings through memory for any
 * row: amax of [65536, 64] over dim 1, one thread, 3.1 -> 0.41 ms, PyTorch 0.39 (session 24,
 * docs/benchmarks.md; sixteen short rows a pass by gathers were slower than four or eight lanes a row). */
#define EXTREME_SHORT_512(NAME, OP, SCMP)                                                                  \
    __attribute__((target("avx512f"))) static void NAME(double *acc, const float *x, int64_t n, int64_t o0, \
                                                        int64_t o1) {                               \
        if (n < 4) { /* a scalar chain a row */                                                     \
            for (int64_t o = o0; o < o1; o++) {                                                     \
                const float *r = x + o * n;                                                         \
                float e = r[0];                                                                     \
                bool nan = r[0] != r[0];                                                            \
                for (int64_t k = 1; k < n; k++) e = SCMP(r[k], e) ? r[k] : e, nan |= r[k] != r[k];  \
                acc[o] = nan ? (double)NAN : (double)e;                                             \
            }                                                                                       \
            return;                                                                                 \
        }                                                                                           \
        if (n < 8) { /* the row's first four and last four (overlapping) */                         \
            for (int64_t o = o0; o < o1; o++) {                                                     \
                const float *r = x + o * n;                                                         \
                const __m128 v0 = _mm_loadu_ps(r), v1 = _mm_loadu_ps(r + n - 4);                    \
                __m128 m = _mm_##OP##_ps(v0, v1);                                                          \
                m = _mm_##OP##_ps(m, _mm_shuffle_ps(m, m, _MM_SHUFFLE(2, 3, 0, 1)));                       \
                m = _mm_##OP##_ps(m, _mm_movehl_ps(m, m));                                                 \
                acc[o] = _mm_movemask_ps(_mm_cmpunord_ps(v0, v1)) ? (double)NAN : (double)_mm_cvtss_f32(m); \
            }                                                                                       \
            return;                                                                                 \
        }                                                                                           \
        if (n < 16) { /* the row's first eight and last eight (overlapping) */                      \
            for (int64_t o = o0; o < o1; o++) {                                                     \
                const float *r = x + o * n;                                                         \
                const __m256 v0 = _mm256_loadu_ps(r), v1 = _mm256_loadu_ps(r + n - 8);              \
                __m128 m = _mm_##OP##_ps(_mm256_castps256_ps128(_mm256_##OP##_ps(v0, v1)), _mm256_extractf128_ps(_mm256_##OP##_ps(v0, v1), 1)); \
                m = _mm_##OP##_ps(m, _mm_shuffle_ps(m, m, _MM_SHUFFLE(2, 3, 0, 1)));                       \
                m = _mm_##OP##_ps(m, _mm_movehl_ps(m, m));                                                 \
                acc[o] = _mm256_movemask_ps(_mm256_cmp_ps(v0, v1, _CMP_UNORD_Q)) ? (double)NAN : (double)_mm_cvtss_f32(m); \
            }                                                                                       \
            return;                                                                                 \
        }                                                                                           \
        for (int64_t o = o0; o < o1; o++) {                                                         \
            const float *r = x + o * n;                                                             \
            __m512 m0 = _mm512_loadu_ps(r), m1 = m0;                                                \
            __mmask16 un = _mm512_cmp_ps_mask(m0, m0, _CMP_UNORD_Q);                                \
            int64_t k = 16;                                                                         \
            for (; k + 32 <= n; k += 32) {                                                          \
                const __m512 v0 = _mm512_loadu_ps(r + k), v1 = _mm512_loadu_ps(r + k + 16);         \
                un |= _mm512_cmp_ps_mask(v0, v1, _CMP_UNORD_Q);                                     \
                m0 = _mm512_##OP##_ps(v0, m0), m1 = _mm512_##OP##_ps(v1, m1);                                                 \
            }                                                                                       \
            if (k < n) { /* up to 31 left: a whole vector, then the row's last 16 */                \
                const __m512 v0 = _mm512_loadu_ps(r + (k + 16 <= n ? k : n - 16)), v1 = _mm512_loadu_ps(r + n - 16); \
                un |= _mm512_cmp_ps_mask(v0, v1, _CMP_UNORD_Q);                                     \
                m0 = _mm512_##OP##_ps(v0, m0), m1 = _mm512_##OP##_ps(v1, m1);                                                 \
            }                                                                                       \
            acc[o] = un ? (double)NAN : (double)_mm512_reduce_##OP##_ps(_mm512_##OP##_ps(m0, m1));                                \
        }                                                                                           \
    }
EXTREME_SHORT_512(max_f32_short_512, max, AG_GREATER)
EXTREME_SHORT_512(min_f32_short_512, min, AG_LESS)
#define EXTREME_SHORT_ROWS 1
#endif

bool ag__extreme_rows_f32(double *acc, const float *x, int64_t n, int64_t o0, int64_t o1, bool is_max) {
#ifdef EXTREME_SHORT_ROWS
    if (ag__backend == AG_BACKEND_REFERENCE || n < 2 || n > EXTREME_SHORT_MAX || !AG_VEC_512()) return false;
    if (is_max) max_f32_short_512(acc, x, n, o0, o1);
    else min_f32_short_512(acc, x, n, o0, o1);
    return true;
#else
    (void)acc, (void)x, (void)n, (void)o0, (void)o1, (void)is_max;
    return false;
#endif
}

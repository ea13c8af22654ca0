/*
 * extrema.c - max, min, argmax, argmin and prod, over all elements or along one dim.
 *
 * A reduction along dim d sees the (contiguous) input as [outer, n, inner]
 * lanes of n elements a stride `inner` apart; its result is [outer, inner] in
 * the same order, whether the reduced dim is kept as 1 or dropped.  NaN wins
 * both max and min, as in PyTorch; ties go to the first index along a dim, and
 * an all-element max/min spreads its gradient evenly over the tied elements.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <omp.h>
#include "core/iter.h"
#include "core/parallel.h"
#include "core/simd_extreme.h"
#include "core/sum.h"
#include "autograd/tape.h"
#include "ops/jvp.h"
#include "ops/extrema.h"
#include "agrad/ops.h"

/* All elements of x as one lane. */
static ag_lanes lanes_all(const ag_tensor *x) { return (ag_lanes){1, ag_numel(x), 1}; }

/* Shape of x reduced along d: d dropped, or kept as 1 if keepdim.  Returns the ndim. */
static int dim_reduced_shape(const ag_tensor *x, int d, bool keepdim, int64_t *shape) {
    int on = 0;
    for (int k = 0; k < x->ndim; k++) {
        if (k != d) shape[on++] = x->shape[k];
        else if (keepdim) shape[on++] = 1;
    }
    return on;
}

/* Checks x and dim for a single-dim reduction that needs a non-empty lane; the normalised dim or -1. */
static int check_dim(const char *op, const ag_tensor *x, int dim) {
    if (ag__check_float(op, x, NULL)) return -1;
    int d = ag__dim(op, dim, x->ndim);
    if (d < 0) return -1;
    if (x->ndim && x->shape[d] == 0) {
        char s[AG_SHAPE_STR];
        return ag__fail(AG_ERR_SHAPE, "%s: cannot reduce the empty dim %d of a tensor of shape %s", op, dim,
                        ag__tshape(s, x)),
               -1;
    }
    return d;
}

/* ---- kernels, instantiated for float and double -------------------------------------------------- */
/* v beats best in a max (min) scan: NaN beats everything, and the first of equal values stays. */
#define BEATS(v, best, is_max) (isnan(v) || (is_max ? (v) > (best) : (v) < (best)))

/* val[o,i] / idx[o,i] = the first extreme of lane (o, i); either may be NULL. */
#define LANE_EXTREME(NAME, T)                                                                       \
    static void NAME(const char *xp, ag_lanes L, bool is_max, char *valp, int64_t *idx) {             \
        const T *x = (const T *)xp;                                                                 \
        T *val = (T *)valp;                                                                         \
        for (int64_t o = 0; o < L.outer; o++) {                                                     \
            const T *lane = x + o * L.n * L.inner;                                                  \
            for (int64_t i = 0; i < L.inner; i++) {                                                 \
                T best = lane[i];                                                                   \
                int64_t bi = 0;                                                                     \
                for (int64_t k = 1; k < L.n && !isnan(best); k++) {                                 \
                    const T v = lane[k * L.inner + i];                                              \
                    if (BEATS(v, best, is_max)) best = v, bi = k;                                   \
                }                                                                                   \
                if (val) val[o * L.inner + i] = best;                                               \
                if (idx) idx[o * L.inner + i] = bi;                                                 \
            }                                                                                       \
        }                                                                                           \
    }
LANE_EXTREME(lane_extreme_ref_f32, float)
LANE_EXTREME(lane_extreme_ref_f64, double)

/* Order keys of the column scan: integers that compare as the floats do (-0.0 = +0.0; m = |bits|,
 * key = m or -m by the sign), NaN given nan_key (the top for max, the bottom for min), so that the
 * scan compares keys and never tests a value it selected for NaN (GCC vectorises no such test of a
 * selected float).  unkey gives the value back for keys of neither zero nor NaN. */
#define ORDER_KEY(T, IT, UT, IT_MAX)                                                                \
    static inline IT key_##T(T v, IT nan_key) {                                                     \
        IT b;                                                                                       \
        memcpy(&b, &v, sizeof b);                                                                   \
        const IT m = b & IT_MAX, s = b < 0 ? -1 : 0;                                                \
        return v != v ? nan_key : (m ^ s) - s;                                                      \
    }                                                                                               \
    static inline T unkey_##T(IT k) {                                                               \
        const UT b = k < 0 ? ((UT)0 - (UT)k) | ((UT)1 << (sizeof(UT) * 8 - 1)) : (UT)k;            \
        T v;                                                                                        \
        memcpy(&v, &b, sizeof v);                                                                   \
        return v;                                                                                   \
    }
ORDER_KEY(float, int32_t, uint32_t, INT32_MAX)
ORDER_KEY(double, int64_t, uint64_t, INT64_MAX)

/* The fast kernels, one per dtype and direction (GT: max, LT: min), the same results as the reference
 * loop above (first index of the extreme; a NaN lane gives its first NaN).
 *   _rows: contiguous lanes (inner = 1) o0..o1: a vectorised scan for the extreme with a NaN flag,
 *          then the first index holding it (or the first NaN).
 *   _cols: lanes (o, i) for i in [i0, i1) of one outer o (i1 - i0 <= EXTREME_COLS): a vectorisable select
 *          over the columns, the rows read in order (a block of 256 columns walked down 4096 rows, a page
 *          per row, took three times as long), four rows at a time into the running best of each column,
 *          compared as order keys (a strictly greater key wins: the first of equals stays); a column whose
 *          extreme is a zero or NaN takes its value from x at its index (the sign, the payload).
 * [4096, 4096] float32 on one thread: argmax along dim 1 15.3 -> 3.1 ms, along dim 0 83.6 -> 6.3 ms,
 * then 5.4 -> 3.3 ms with the keys four rows at a time (the float select re-tested every selected value
 * for NaN, and loaded and stored the running best once a row); session 16: EXTREME_ROWS rows at a time,
 * a strip of EXTREME_STRIP columns' keys and indices held in registers (AVX-512 clone) between loads
 * and stores of the running best, 4.27 -> 3.13 ms (one-thread CPU time, Zen 5; 4x64 and 16x64 gave
 * less, 8x32 about the same; docs/benchmarks.md).  The same compares in the same row order: the same
 * bits. */
#define EXTREME_COLS 4096
/* the column kernel's register block: 8 rows by 64 columns (int32 keys: four AVX-512 vectors of keys, four of indices) */
#define EXTREME_ROWS 8 /* also the AVX-512 float32 kernel's rows per block (EXTREME_COLS_512) */
#define EXTREME_STRIP 64
/* the block scan's extreme made right under clang (core/simd_extreme.h), by OP */
#define EXTREME_BEATS_max AG_GREATER
#define EXTREME_BEATS_min AG_LESS
#define EXTREME_START_max (-INFINITY)
#define EXTREME_START_min INFINITY
#define EXTREME_FAST(NAME, T, IT, CMP, OP, NAN_KEY)                                                          \
    AG_VEC_CLONES static void NAME##_rows(const T *x, int64_t n, T *val, int64_t *idx, int64_t o0, int64_t o1) { \
        for (int64_t o = o0; o < o1; o++) {                                                         \
            const T *lane = x + o * n;                                                              \
            T e = lane[0];                                                                          \
            int64_t from = 0; /* the first block holding e (or the first NaN) */                    \
            bool bad = false;                                                                       \
            for (int64_t b0 = 0; b0 < n && !bad; b0 += 256) {                                       \
                const int64_t bn = n - b0 < 256 ? n - b0 : 256;                                     \
                const T *blk = lane + b0;                                                           \
                T be = blk[0];                                                                      \
                int nan = 0;                                                                        \
                AG_PRAGMA(omp simd reduction(OP : be) reduction(| : nan))                           \
                for (int64_t k = 0; k < bn; k++) {                                                  \
                    be = blk[k] CMP be ? blk[k] : be;                                               \
                    nan |= blk[k] != blk[k];                                                        \
                }                                                                                   \
                AG_SIMD_EXTREME_FIX(T, be, bn, k, blk[k], EXTREME_BEATS_##OP, EXTREME_START_##OP);  \
                if (nan) bad = true, from = b0;                                                     \
                else if (be CMP e) e = be, from = b0;                                               \
            }                                                                                       \
            int64_t bi = from;                                                                      \
            if (bad) /* bounded by n as well: the block told where e (or a NaN) is */               \
                while (bi + 1 < n && lane[bi] == lane[bi]) bi++;                                    \
            else                                                                                    \
                while (bi + 1 < n && lane[bi] != e) bi++;                                           \
            if (val) val[o] = lane[bi];                                                             \
            if (idx) idx[o] = bi;                                                                   \
        }                                                                                           \
    }                                                                                               \
    AG_VEC_CLONES_512 static void NAME##_cols(const T *lane, int64_t n, int64_t inner, T *val, int64_t *idx, int64_t i0, \
                                          int64_t i1) {                                             \
        IT best[EXTREME_COLS]; /* keys */                                                           \
        IT at[EXTREME_COLS];   /* as wide as T, so that the select vectorises */                    \
        const int64_t w = i1 - i0;                                                                  \
        for (int64_t i = 0; i < w; i++) best[i] = key_##T(lane[i0 + i], NAN_KEY), at[i] = 0;        \
        int64_t k = 1;                                                                               \
        for (; k + EXTREME_ROWS <= n; k += EXTREME_ROWS) {                                           \
            int64_t i = 0;                                                                           \
            for (; i + EXTREME_STRIP <= w; i += EXTREME_STRIP) { /* the strip's keys in registers */ \
                IT kb[EXTREME_STRIP], ib[EXTREME_STRIP];                                             \
                for (int j = 0; j < EXTREME_STRIP; j++) kb[j] = best[i + j], ib[j] = at[i + j];      \
                for (int r = 0; r < EXTREME_ROWS; r++) {                                             \
                    const T *row = lane + (k + r) * inner + i0 + i;                                  \
                    const IT kr = (IT)(k + r);                                                       \
                    for (int j = 0; j < EXTREME_STRIP; j++) {                                        \
                        const IT u = key_##T(row[j], NAN_KEY);                                       \
                        const int t = u CMP kb[j];                                                   \
                        kb[j] = t ? u : kb[j], ib[j] = t ? kr : ib[j];                               \
                    }                                                                                \
                }                                                                                    \
                for (int j = 0; j < EXTREME_STRIP; j++) best[i + j] = kb[j], at[i + j] = ib[j];      \
            }                                                                                        \
            for (int r = 0; r < EXTREME_ROWS; r++) { /* the columns past the last strip */           \
                const T *row = lane + (k + r) * inner + i0;                                          \
                for (int64_t j = i; j < w; j++) {                                                    \
                    const IT u = key_##T(row[j], NAN_KEY);                                           \
                    const int t = u CMP best[j];                                                     \
                    best[j] = t ? u : best[j], at[j] = t ? (IT)(k + r) : at[j];                      \
                }                                                                                    \
            }                                                                                        \
        }                                                                                            \
        for (; k < n; k++) {                                                                        \
            const T *row = lane + k * inner + i0;                                                   \
            for (int64_t i = 0; i < w; i++) {                                                       \
                const IT u = key_##T(row[i], NAN_KEY);                                              \
                const int t = u CMP best[i];                                                        \
                best[i] = t ? u : best[i], at[i] = t ? (IT)k : at[i];                               \
            }                                                                                       \
        }                                                                                           \
        for (int64_t i = 0; i < w; i++) {                                                           \
            if (val) val[i0 + i] = best[i] == 0 || best[i] == NAN_KEY ? lane[at[i] * inner + i0 + i] : unkey_##T(best[i]); \
            if (idx) idx[i0 + i] = at[i];                                                           \
        }                                                                                           \
    }
#define AG_PRAGMA(x) _Pragma(#x)
#ifdef AG_X86_INTRINSICS
#include <immintrin.h>
/* Prefetches into L1 the four cache lines of the 256 bytes `ahead` floats past p (the address taken as
 * an integer: it may lie past the lane, where a prefetch does nothing).  The scans below read their
 * rows no faster than memory brings them on this host unless told ahead (session 21, docs/benchmarks.md):
 * EXTREME_COLS_AHEAD, each of the column kernel's eight rows two strips (512 bytes) ahead in the same
 * row (4096 x 4096 along dim 0, one thread, CPU time: 1.26 -> 1.13x a plain read of the same bytes; 1
 * and 4 strips ahead less, the next block's rows, into L1 or L2, not better); EXTREME_ROWS_AHEAD, the
 * row kernel's stream 4 KiB ahead (2 and 8 KiB about the same). */
#define EXTREME_COLS_AHEAD 128
#define EXTREME_ROWS_AHEAD 1024
#define EXTREME_PREFETCH_256(p, ahead)                                                              \
    do {                                                                                            \
        const uintptr_t a_ = (uintptr_t)(p) + (uintptr_t)(ahead) * sizeof(float);                   \
        for (int q_ = 0; q_ < 256; q_ += 64) _mm_prefetch((const char *)(a_ + (uintptr_t)q_), _MM_HINT_T0); \
    } while (0)
/* One step of the AVX-512 column kernel: v (a row's 16 columns) into the running best kb and its row
 * index ib (kr, the row broadcast) where v is strictly beyond kb (the ordered compare PRED); acc, the
 * largest |v| bits of each lane so far, above those of inf once a NaN has come. */
#define EXTREME_STEP_512(PRED, v, kb, ib, kr, acc)                                                  \
    do {                                                                                            \
        const __mmask16 t_ = _mm512_cmp_ps_mask(v, kb, PRED);                                      \
        kb = _mm512_mask_mov_ps(kb, t_, v);                                                         \
        ib = _mm512_mask_mov_epi32(ib, t_, kr);                                                     \
        acc = _mm512_max_epu32(acc, _mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32(INT32_MAX))); \
    } while (0)
/* The float32 column kernel with AVX-512 (AG_VEC_512()): _cols' 8x64 register blocks with the values
 * compared as floats instead of order keys (EXTREME_STEP_512: four instructions a vector against the
 * keys' ten; a strictly greater, or less, value wins, so the first of equals stays and -0 and +0 tie,
 * as their keys do), for columns without NaN: the largest |bits| of each lane are kept as well, and a
 * NaN among them or in row 0 (the compares never select a NaN) makes it return false without writing
 * (the caller then runs _cols, which finds the first NaN).
 * Else the running best is the first extreme element itself: its value and index go to val and idx
 * (either may be NULL).  Columns past the last full strip go 16 at a time, the last ones as masked
 * lanes.  Comparisons of denormals assume the CPU's default (no denormals-are-zero), as the keys.
 * Each row is prefetched EXTREME_COLS_AHEAD floats ahead (session 21).
 * 4096 x 4096 along dim 0 on one thread: see docs/benchmarks.md, session 17 (a NaN-aware compare,
 * an ordered mask over kb on the dependency chain, gave back half the gain). */
#define EXTREME_COLS_512(NAME, PRED)                                                                 \
    __attribute__((target("avx512f"))) static bool NAME(const float *lane, int64_t n, int64_t inner, float *val, \
                                                        int64_t *idx, int64_t i0, int64_t i1) {     \
        float best[EXTREME_COLS];                                                                   \
        int32_t at[EXTREME_COLS];                                                                   \
        const int64_t w = i1 - i0;                                                                  \
        memcpy(best, lane + i0, (size_t)w * sizeof *best);                                          \
        memset(at, 0, (size_t)w * sizeof *at);                                                      \
        __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;                            \
        for (int64_t k = 1; k < n; k += EXTREME_ROWS) {                                             \
            const int64_t rows = n - k < EXTREME_ROWS ? n - k : EXTREME_ROWS;                           \
            int64_t i = 0;                                                                          \
            for (; i + EXTREME_STRIP <= w; i += EXTREME_STRIP) {                                    \
                __m512 k0 = _mm512_loadu_ps(best + i), k1 = _mm512_loadu_ps(best + i + 16);         \
                __m512 k2 = _mm512_loadu_ps(best + i + 32), k3 = _mm512_loadu_ps(best + i + 48);    \
                __m512i x0 = _mm512_loadu_si512(at + i), x1 = _mm512_loadu_si512(at + i + 16);      \
                __m512i x2 = _mm512_loadu_si512(at + i + 32), x3 = _mm512_loadu_si512(at + i + 48); \
                const float *row = lane + k * inner + i0 + i;                                       \
                for (int64_t r = 0; r < rows; r++, row += inner) {                                  \
                    const __m512i kr = _mm512_set1_epi32((int32_t)(k + r));                         \
                    EXTREME_PREFETCH_256(row, EXTREME_COLS_AHEAD);                                  \
                    const __m512 v0 = _mm512_loadu_ps(row), v1 = _mm512_loadu_ps(row + 16);         \
                    const __m512 v2 = _mm512_loadu_ps(row + 32), v3 = _mm512_loadu_ps(row + 48);    \
                    EXTREME_STEP_512(PRED, v0, k0, x0, kr, a0);                                     \
                    EXTREME_STEP_512(PRED, v1, k1, x1, kr, a1);                                     \
                    EXTREME_STEP_512(PRED, v2, k2, x2, kr, a2);                                     \
                    EXTREME_STEP_512(PRED, v3, k3, x3, kr, a3);                                     \
                }                                                                                   \
                _mm512_storeu_ps(best + i, k0), _mm512_storeu_ps(best + i + 16, k1);                \
                _mm512_storeu_ps(best + i + 32, k2), _mm512_storeu_ps(best + i + 48, k3);           \
                _mm512_storeu_si512(at + i, x0), _mm512_storeu_si512(at + i + 16, x1);              \
                _mm512_storeu_si512(at + i + 32, x2), _mm512_storeu_si512(at + i + 48, x3);         \
            }                                                                                       \
            for (; i < w; i += 16) { /* the columns past the last strip */                          \
                const __mmask16 m = w - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (w - i)) - 1); \
                __m512 kb = _mm512_maskz_loadu_ps(m, best + i);                                     \
                __m512i ib = _mm512_maskz_loadu_epi32(m, at + i);                                   \
                for (int64_t r = 0; r < rows; r++) {                                                \
                    const __m512 v = _mm512_maskz_loadu_ps(m, lane + (k + r) * inner + i0 + i);     \
                    EXTREME_STEP_512(PRED, v, kb, ib, _mm512_set1_epi32((int32_t)(k + r)), a0);     \
                }                                                                                   \
                _mm512_mask_storeu_ps(best + i, m, kb);                                             \
                _mm512_mask_storeu_epi32(at + i, m, ib);                                            \
            }                                                                                       \
        }                                                                                           \
        const __m512i a = _mm512_max_epu32(_mm512_max_epu32(a0, a1), _mm512_max_epu32(a2, a3));    \
        bool nan = _mm512_cmpgt_epu32_mask(a, _mm512_set1_epi32(0x7F800000)) != 0;                  \
        for (int64_t i = 0; i < w; i++) nan |= best[i] != best[i];                                  \
        if (nan) return false;                                                                      \
        for (int64_t i = 0; i < w; i++) {                                                           \
            if (val) val[i0 + i] = best[i];                                                         \
            if (idx) idx[i0 + i] = at[i];                                                           \
        }                                                                                           \
        return true;                                                                                \
    }
EXTREME_COLS_512(max_f32_cols_512, _CMP_GT_OQ)
EXTREME_COLS_512(min_f32_cols_512, _CMP_LT_OQ)
/* The float32 row kernel with AVX-512 (AG_VEC_512()): the contiguous lanes [o0, o1) as _rows scans them,
 * in blocks of 256 (e, the running extreme, starts at lane[0]; it moves to a block's extreme only where
 * that is strictly beyond it, so it lies in the first block holding it), with the arithmetic a vector
 * at a time: a block goes into four accumulators of sixteen lanes (VOP, max or min, started at e, so a
 * lane's result is beyond e only where an element is) and its NaNs into an unordered compare of each
 * pair of vectors; the lanes are reduced (REDUCE) only when one is strictly beyond e (PRED, an ordered
 * compare), and a block with a NaN ends the scan.  Then the first element of e's block equal to e (-0
 * and +0 equal, as the strict compares leave the first of them), or the block's first NaN, by sixteen
 * lanes' compares and the mask's lowest bit.  Partial vectors load e in their missing lanes; the stream
 * is prefetched EXTREME_ROWS_AHEAD floats ahead.  The same indices and values as _rows and the reference
 * loop.  _rows' x86-64-v3 clone (eight lanes, one accumulator, a NaN flag a lane, the search an element
 * at a time) scanned rows in cache at 28-45 GB/s on one thread against a read's 68-74; this one at
 * 56-67; [4096, 4096] on two threads 1.46 -> 0.89 ms (session 21, docs/benchmarks.md). */
#define EXTREME_ROWS_512(NAME, VOP, REDUCE, PRED)                                                    \
    __attribute__((target("avx512f"))) static void NAME(const float *x, int64_t n, float *val, int64_t *idx, int64_t o0, \
                                                        int64_t o1) {                               \
        for (int64_t o = o0; o < o1; o++) {                                                         \
            const float *lane = x + o * n;                                                          \
            __m512 ev = _mm512_set1_ps(lane[0]);                                                    \
            int64_t from = 0; /* the block holding e, or the first NaN */                           \
            bool nan = false;                                                                       \
            for (int64_t b0 = 0; b0 < n; b0 += 256) {                                               \
                const int64_t bn = n - b0 < 256 ? n - b0 : 256;                                     \
                const float *blk = lane + b0;                                                       \
                __m512 m0 = ev, m1 = ev, m2 = ev, m3 = ev;                                          \
                __mmask16 un = 0;                                                                   \
                int64_t k = 0;                                                                      \
                for (; k + 64 <= bn; k += 64) {                                                     \
                    EXTREME_PREFETCH_256(blk + k, EXTREME_ROWS_AHEAD);                              \
                    const __m512 v0 = _mm512_loadu_ps(blk + k), v1 = _mm512_loadu_ps(blk + k + 16);  \
                    const __m512 v2 = _mm512_loadu_ps(blk + k + 32), v3 = _mm512_loadu_ps(blk + k + 48); \
                    un |= _mm512_cmp_ps_mask(v0, v1, _CMP_UNORD_Q) | _mm512_cmp_ps_mask(v2, v3, _CMP_UNORD_Q); \
                    m0 = VOP(v0, m0), m1 = VOP(v1, m1), m2 = VOP(v2, m2), m3 = VOP(v3, m3);         \
                }                                                                                   \
                for (; k < bn; k += 16) {                                                           \
                    const __mmask16 t = bn - k >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (bn - k)) - 1); \
                    const __m512 v = _mm512_mask_loadu_ps(ev, t, blk + k);                          \
                    un |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);                                   \
                    m0 = VOP(v, m0);                                                                \
                }                                                                                   \
                if (un) {                                                                           \
                    nan = true, from = b0;                                                          \
                    break;                                                                          \
                }                                                                                   \
                const __m512 m = VOP(VOP(m0, m1), VOP(m2, m3));                                     \
                if (_mm512_cmp_ps_mask(m, ev, PRED)) ev = _mm512_set1_ps(REDUCE(m)), from = b0;     \
            }                                                                                       \
            int64_t bi = from;                                                                      \
            const int64_t bn = n - from < 256 ? n - from : 256;                                     \
            for (int64_t k = 0; k < bn; k += 16) {                                                  \
                const __mmask16 t = bn - k >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (bn - k)) - 1); \
                const __m512 v = _mm512_maskz_loadu_ps(t, lane + from + k);                         \
                const __mmask16 hit = nan ? _mm512_mask_cmp_ps_mask(t, v, v, _CMP_UNORD_Q)          \
                                          : _mm512_mask_cmp_ps_mask(t, v, ev, _CMP_EQ_OQ);          \
                if (hit) {                                                                          \
                    bi = from + k + __builtin_ctz(hit);                                             \
                    break;                                                                          \
                }                                                                                   \
            }                                                                                       \
            if (val) val[o] = lane[bi];                                                             \
            if (idx) idx[o] = bi;                                                                   \
        }                                                                                           \
    }
EXTREME_ROWS_512(max_f32_rows_512, _mm512_max_ps, _mm512_reduce_max_ps, _CMP_GT_OQ)
EXTREME_ROWS_512(min_f32_rows_512, _mm512_min_ps, _mm512_reduce_min_ps, _CMP_LT_OQ)
#define EXTREME_512(NAME, ...) (AG_VEC_512() && NAME##_512(__VA_ARGS__))
#define EXTREME_ROWS_FAST(NAME, ...) (AG_VEC_512() && (NAME##_512(__VA_ARGS__), true))
#else
#define EXTREME_512(NAME, ...) false
#define EXTREME_ROWS_FAST(NAME, ...) false
#endif
EXTREME_FAST(max_f32, float, int32_t, >, max, INT32_MAX)
EXTREME_FAST(min_f32, float, int32_t, <, min, INT32_MIN)
EXTREME_FAST(max_f64, double, int64_t, >, max, INT64_MAX)
EXTREME_FAST(min_f64, double, int64_t, <, min, INT64_MIN)

/* val[o,i] / idx[o,i] = the first extreme of lane (o, i) (either may be NULL): the fast kernels split
 * over threads (contiguous lanes, or blocks of up to EXTREME_COLS columns of one outer index), or the reference loop
 * (AG_BACKEND_REFERENCE). */
#define LANE_EXTREME_FAST(NAME, T, SUF, FAST_512)                                                   \
    static void NAME(const char *xp, ag_lanes L, bool is_max, char *valp, int64_t *idx) {           \
        if (ag__backend == AG_BACKEND_REFERENCE || (L.inner > 1 && L.n > INT32_MAX)) {             \
            lane_extreme_ref_##SUF(xp, L, is_max, valp, idx);                                       \
            return;                                                                                 \
        }                                                                                           \
        if (L.outer == 0 || L.inner == 0) return; /* no lane */                                     \
        const T *x = (const T *)xp;                                                                 \
        T *val = (T *)valp;                                                                         \
        const ag_lane_split S = ag__lane_split_of(L, EXTREME_COLS);                                        \
        AG_PARALLEL(S.nt, {                                                                         \
            const int n_ = ag__team, t_ = ag__thread;                                               \
            const int64_t a = ag__share_start(S.tasks, t_, n_), b = ag__share_start(S.tasks, t_ + 1, n_); \
            if (L.inner == 1 && a < b) {                                                            \
                if (is_max) {                                                                       \
                    if (!(FAST_512 && EXTREME_ROWS_FAST(max_f32_rows, (const float *)x, L.n, (float *)val, idx, a, b))) \
                        max_##SUF##_rows(x, L.n, val, idx, a, b);                                   \
                } else if (!(FAST_512 && EXTREME_ROWS_FAST(min_f32_rows, (const float *)x, L.n, (float *)val, idx, a, b))) { \
                    min_##SUF##_rows(x, L.n, val, idx, a, b);                                       \
                }                                                                                   \
            }                                                                                       \
            for (int64_t t = a; L.inner > 1 && t < b; t++) {                                        \
                int64_t o, i0, i1;                                                                  \
                ag__lane_task(L, S, t, &o, &i0, &i1);                                                   \
                const int64_t r = o * L.inner;                                                      \
                const T *lane = x + o * L.n * L.inner;                                              \
                T *v_ = val ? val + r : NULL;                                                       \
                int64_t *x_ = idx ? idx + r : NULL;                                                 \
                if (is_max) {                                                                       \
                    if (!(FAST_512 && EXTREME_512(max_f32_cols, (const float *)lane, L.n, L.inner, (float *)v_, x_, i0, i1))) \
                        max_##SUF##_cols(lane, L.n, L.inner, v_, x_, i0, i1);                       \
                } else if (!(FAST_512 && EXTREME_512(min_f32_cols, (const float *)lane, L.n, L.inner, (float *)v_, x_, i0, i1))) { \
                    min_##SUF##_cols(lane, L.n, L.inner, v_, x_, i0, i1);                           \
                }                                                                                   \
            }                                                                                       \
        });                                                                                         \
    }
LANE_EXTREME_FAST(lane_extreme_f32, float, f32, true)
LANE_EXTREME_FAST(lane_extreme_f64, double, f64, false)

/* ---- prod kernels -------------------------------------------------------------------------------
 * Products are taken in float64 and rounded once: a float32 product of 1000 factors near 1 keeps
 * its last bit, and a partial product whose end result is representable neither overflows nor
 * underflows.  A contiguous lane is cut into runs of PROD_RUN elements, each multiplied in sixteen
 * interleaved accumulators (the loop vectorises; ISO C reorders no product, so the bits do not
 * depend on the vector width) and the run products multiplied in order: so a long lane may be
 * split over threads at run boundaries and give the same bits on any number of threads.  A lane
 * whose elements are a stride apart (a middle or leading dim) takes its factors one at a time in
 * order.  prod_dim of a transposed or permuted dense input works on the lanes as they lie in
 * memory (prod_in_memory_order): a lane is taken in interleaved accumulators when its dim is the
 * innermost in memory, else in order, whatever its logical place. */
#define PROD_RUN ((int64_t)1 << 15)
#define PROD_COLS 1024
/* the column kernel's register block: 8 rows by 32 columns (four AVX-512 vectors of float64: 8
 * rows gave 1.5-2.5x the row-at-a-time loop; 4 and 16 rows less, see docs/benchmarks.md) */
#define PROD_ROWS 8
#define PROD_STRIP 32

#define LANE_PROD(NAME, T)                                                                          \
    /* Π x[0 .. n) for n <= PROD_RUN, in sixteen accumulators (two AVX-512 vectors: cloned for it,   \
     * the same products in the same order on every clone) */                                       \
    AG_VEC_CLONES_512 static double NAME##_run(const T *x, int64_t n) {                             \
        double a[16];                                                                               \
        for (int j = 0; j < 16; j++) a[j] = 1;                                                      \
        int64_t k = 0;                                                                              \
        for (; k + 16 <= n; k += 16)                                                                \
            for (int j = 0; j < 16; j++) a[j] *= (double)x[k + j];                                  \
        for (int j = 0; k < n; k++, j++) a[j] *= (double)x[k];                                      \
        for (int j = 0; j < 8; j++) a[j] *= a[j + 8];                                               \
        return ((a[0] * a[4]) * (a[1] * a[5])) * ((a[2] * a[6]) * (a[3] * a[7]));                  \
    }                                                                                               \
    /* y[o] = Π x[o·n .. o·n + n) for the contiguous lanes [o0, o1) */                              \
    static void NAME##_rows(const T *x, int64_t n, T *y, int64_t o0, int64_t o1) {                  \
        for (int64_t o = o0; o < o1; o++) {                                                         \
            double p = 1;                                                                           \
            for (int64_t k = 0; k < n; k += PROD_RUN) p *= NAME##_run(x + o * n + k, n - k < PROD_RUN ? n - k : PROD_RUN); \
            y[o] = (T)p;                                                                            \
        }                                                                                           \
    }                                                                                               \
    /* y[i] = Π_k lane[k·inner + i] for i in [i0, i1), i1 - i0 <= PROD_COLS, each lane's factors in  \
     * order (k = 0, 1, ...): PROD_ROWS rows at a time, PROD_STRIP columns of them multiplied into  \
     * float64 accumulators held in registers (four AVX-512 vectors) between loads and stores of acc; \
     * the columns past the last strip and the rows past the last block a row at a time */          \
    AG_VEC_CLONES_512 static void NAME##_cols(const T *lane, int64_t n, int64_t inner, T *y, int64_t i0, int64_t i1) { \
        double acc[PROD_COLS];                                                                      \
        const int64_t w = i1 - i0;                                                                  \
        for (int64_t i = 0; i < w; i++) acc[i] = 1;                                                 \
        int64_t k = 0;                                                                              \
        for (; k + PROD_ROWS <= n; k += PROD_ROWS) {                                                \
            int64_t i = 0;                                                                          \
            for (; i + PROD_STRIP <= w; i += PROD_STRIP) {                                          \
                double a[PROD_STRIP];                                                               \
                for (int j = 0; j < PROD_STRIP; j++) a[j] = acc[i + j];                             \
                for (int r = 0; r < PROD_ROWS; r++) {                                               \
                    const T *row = lane + (k + r) * inner + i0 + i;                                 \
                    for (int j = 0; j < PROD_STRIP; j++) a[j] *= (double)row[j];                    \
                }                                                                                   \
                for (int j = 0; j < PROD_STRIP; j++) acc[i + j] = a[j];                             \
            }                                                                                       \
            for (int r = 0; r < PROD_ROWS; r++) {                                                   \
                const T *row = lane + (k + r) * inner + i0;                                         \
                for (int64_t j = i; j < w; j++) acc[j] *= (double)row[j];                           \
            }                                                                                       \
        }                                                                                           \
        for (; k < n; k++) {                                                                        \
            const T *row = lane + k * inner + i0;                                                   \
            for (int64_t i = 0; i < w; i++) acc[i] *= (double)row[i];                               \
        }                                                                                           \
        for (int64_t i = 0; i < w; i++) y[i0 + i] = (T)acc[i];                                      \
    }                                                                                               \
    /* y[o,i] = Π_k x[o,k,i] over threads: whole lanes, column blocks, or (fewer lanes than threads) \
     * the runs of each lane, whose products run[] (room for lanes·runs) are then multiplied in order */ \
    static void NAME(const char *xp, ag_lanes L, char *yp, double *run) {                           \
        const T *x = (const T *)xp;                                                                 \
        T *y = (T *)yp;                                                                             \
        const ag_lane_split S = ag__lane_split_of(L, PROD_COLS);                                           \
        const int64_t runs = (L.n + PROD_RUN - 1) / PROD_RUN, items = L.outer * runs;               \
        if (run && L.inner == 1) {                                                                  \
            int nt = ag__threads_for(L.outer * L.n);                                                \
            if (nt > items) nt = (int)items;                                                        \
            AG_PARALLEL(nt, {                                                                       \
                const int n_ = ag__team, t_ = ag__thread;                                           \
                for (int64_t j = ag__share_start(items, t_, n_); j < ag__share_start(items, t_ + 1, n_); j++) { \
                    const int64_t o = j / runs, k = j % runs * PROD_RUN;                            \
                    run[j] = NAME##_run(x + o * L.n + k, L.n - k < PROD_RUN ? L.n - k : PROD_RUN);  \
                }                                                                                   \
            });                                                                                     \
            for (int64_t o = 0; o < L.outer; o++) {                                                 \
                double p = 1;                                                                       \
                for (int64_t j = 0; j < runs; j++) p *= run[o * runs + j];                          \
                y[o] = (T)p;                                                                        \
            }                                                                                       \
            return;                                                                                 \
        }                                                                                           \
        AG_PARALLEL(S.nt, {                                                                         \
            const int n_ = ag__team, t_ = ag__thread;                                               \
            const int64_t a = ag__share_start(S.tasks, t_, n_), b = ag__share_start(S.tasks, t_ + 1, n_); \
            if (L.inner == 1) NAME##_rows(x, L.n, y, a, b);                                         \
            for (int64_t t = a; L.inner > 1 && t < b; t++) {                                        \
                int64_t o, i0, i1;                                                                  \
                ag__lane_task(L, S, t, &o, &i0, &i1);                                                   \
                NAME##_cols(x + o * L.n * L.inner, L.n, L.inner, y + o * L.inner, i0, i1);          \
            }                                                                                       \
        });                                                                                         \
    }
LANE_PROD(lane_prod_f32, float)
LANE_PROD(lane_prod_f64, double)

/* dx = dy·y/x, one element: a float32 dy·y is exact in float64, so the quotient is rounded twice
 * (float64, then float32); a float64 one divides first, as PyTorch (no dy·y overflow). */
#define PROD_QUOT_float(dy, y, x) ((float)((double)(dy) * (double)(y) / (double)(x)))
#define PROD_QUOT_double(dy, y, x) ((dy) * ((y) / (x)))

/* The adjoint of prod along the lanes L, dy and y of the lanes' shape [outer, inner].
 *   _fast: x holds no zero: dx = dy·y/x, one pass over the rows [r0, r1) of the [outer·n, inner]
 *          view, in memory order (reads x, y, dy, writes dx);
 *   _safe: dx_k = dy·(Π_{j<k} x_j · Π_{j>k} x_j) on the lanes [l0, l1) (lane l: o = l / inner,
 *          i = l % inner), PyTorch's prod_safe_zeros_backward, exact where x holds zeros, in
 *          float64 and rounded once, so that a float32 partial product that overflows (1e30·1e30)
 *          does not turn into inf·0 = NaN (pre: room for n prefix products). */
#define LANE_PROD_BWD(NAME, T)                                                                      \
    AG_VEC_CLONES_512 static void NAME##_fast(T *restrict gx, const T *restrict x, const T *y, const T *g, ag_lanes L, \
                                          int64_t r0, int64_t r1) {                                 \
        for (int64_t r = r0; r < r1;) {                                                             \
            const int64_t o = r / L.n, end = (o + 1) * L.n < r1 ? (o + 1) * L.n : r1; /* lane o's rows */ \
            const T *yo = y + o * L.inner, *go = g + o * L.inner;                                   \
            if (L.inner == 1) {                                                                     \
                const T dy = go[0], yv = yo[0];                                                     \
                for (int64_t k = r; k < end; k++) gx[k] = PROD_QUOT_##T(dy, yv, x[k]);              \
            } else                                                                                  \
                for (int64_t k = r; k < end; k++)                                                   \
                    for (int64_t i = 0; i < L.inner; i++)                                           \
                        gx[k * L.inner + i] = PROD_QUOT_##T(go[i], yo[i], x[k * L.inner + i]);      \
            r = end;                                                                                \
        }                                                                                           \
    }                                                                                               \
    static void NAME##_safe(T *gx, const T *x, const T *g, ag_lanes L, int64_t l0, int64_t l1, double *pre) { \
        for (int64_t l = l0; l < l1; l++) {                                                         \
            const int64_t o = l / L.inner, i = l % L.inner, base = o * L.n * L.inner + i;           \
            const double dy = g[l];                                                                 \
            double p = 1, suf = 1;                                                                  \
            for (int64_t k = 0; k < L.n; k++) {                                                     \
                pre[k] = p;                                                                         \
                p *= x[base + k * L.inner];                                                         \
            }                                                                                       \
            for (int64_t k = L.n - 1; k >= 0; k--) {                                                \
                gx[base + k * L.inner] = (T)(dy * (pre[k] * suf));                                  \
                suf *= x[base + k * L.inner];                                                       \
            }                                                                                       \
        }                                                                                           \
    }                                                                                               \
    /* the fast rule split over rows, or (pre: room for nt lanes of n) the safe one over lanes */   \
    static void NAME(char *gxp, const char *xp, const char *yp, const char *gp, ag_lanes L, double *pre, int nt) { \
        T *gx = (T *)gxp;                                                                           \
        const T *x = (const T *)xp, *y = (const T *)yp, *g = (const T *)gp;                        \
        const int64_t items = pre ? L.outer * L.inner : L.outer * L.n;                              \
        AG_PARALLEL(nt, {                                                                           \
            const int n_ = ag__team, t_ = ag__thread;                                               \
            const int64_t a = ag__share_start(items, t_, n_), b = ag__share_start(items, t_ + 1, n_); \
            if (pre) NAME##_safe(gx, x, g, L, a, b, pre + t_ * L.n);                                \
            else NAME##_fast(gx, x, y, g, L, a, b);                                                 \
        });                                                                                         \
    }
LANE_PROD_BWD(lane_prod_bwd_f32, float)
LANE_PROD_BWD(lane_prod_bwd_f64, double)

/* Number of zeros in x (contiguous), whose product along the lanes L is y: 0 without reading x
 * when no y is 0 or NaN, for a lane holding a zero has a product of 0 (or NaN, 0·inf). */
#define COUNT_ZEROS(NAME, T)                                                                        \
    AG_VEC_CLONES static int64_t NAME(const T *x, int64_t n, const T *y, int64_t lanes) {           \
        int suspect = 0;                                                                            \
        for (int64_t l = 0; l < lanes; l++) suspect |= (y[l] == 0) | (y[l] != y[l]);                \
        if (!suspect) return 0;                                                                     \
        int64_t z = 0;                                                                              \
        for (int64_t k0 = 0; k0 < n; k0 += 4096) { /* int32 counts vectorise, int64 ones did not */ \
            int32_t zc = 0;                                                                         \
            const int64_t m = n - k0 < 4096 ? n - k0 : 4096;                                        \
            for (int64_t k = 0; k < m; k++) zc += x[k0 + k] == 0;                                   \
            z += zc;                                                                                \
        }                                                                                           \
        return z;                                                                                   \
    }
COUNT_ZEROS(count_zeros_f32, float)
COUNT_ZEROS(count_zeros_f64, double)

/* Number of zeros in x (contiguous), the input of the prod y along lanes L. */
static int64_t count_zeros(const ag_tensor *x, const ag_tensor *y, ag_lanes L) {
    const int64_t n = ag_numel(x), lanes = L.outer * L.inner;
    if (x->dtype == AG_F64) return count_zeros_f64((const double *)ag__ptr(x), n, (const double *)ag__ptr(y), lanes);
    return count_zeros_f32((const float *)ag__ptr(x), n, (const float *)ag__ptr(y), lanes);
}

static double load(const ag_tensor *t, int64_t k) {
    return t->dtype == AG_F64 ? ((const double *)ag__ptr(t))[k] : ((const float *)ag__ptr(t))[k];
}

/* ---- tangent rules ---------------------------------------------------------------------------- */
/* dy = Σ dx·[x = y] / #{x = y} */
static ag_tensor *tie_split_jvp(ag_tensor *out, ag_tensor *const *tin) { return ag__jvp_tie_split(out, tin[0]); }
/* dy = dx at the first extreme i* */
static ag_tensor *extreme_dim_jvp(ag_tensor *out, ag_tensor *const *tin) {
    return ag__jvp_pick(out, tin[0], out->saved, (int)out->attr.i[0]);
}

/* ---- adjoints in differentiable ops (create_graph) ------------------------------------------- */
/* dx = dy·[x ties y] / #{x ties y} (ops/extrema.h; ties: equal, or both NaN) */
ag_status ag__tie_split_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin) {
    ag_tensor *hit = ag__tie_mask(out->in[0], out);
    return (gin[0] = ag_mul(gout, ag_div(hit, ag_sum(hit)))) ? AG_OK : ag_last_status();
}

/* ---- max and min over all elements ------------------------------------------------------------- */
/* y = max x;  dx = dy·[x = y] / #{x = y} */
static const ag_op op_max = {.name = "max", .grad_fn = "MaxBackward1", .backward = ag__tie_split_backward,
                             .saves = AG_SAVES_IN0 | AG_SAVES_OUT,
                             .math = "y = max x;  dx = dy·[x = y] / #{x = y} (even split over ties)",
                             .backward_graph = ag__tie_split_backward_graph, .jvp = tie_split_jvp,
                             .tangent = "ẏ = Σ ẋ·[x = y] / #{x = y} (the mean tangent over ties)"};
/* y = min x;  dx = dy·[x = y] / #{x = y} */
static const ag_op op_min = {.name = "min", .grad_fn = "MinBackward1", .backward = ag__tie_split_backward,
                             .saves = AG_SAVES_IN0 | AG_SAVES_OUT,
                             .math = "y = min x;  dx = dy·[x = y] / #{x = y} (even split over ties)",
                             .backward_graph = ag__tie_split_backward_graph, .jvp = tie_split_jvp,
                             .tangent = "ẏ = Σ ẋ·[x = y] / #{x = y} (the mean tangent over ties)"};

/* y = max x (min x): a 0-d tensor; NaN if x holds one. */
static ag_tensor *extreme_all(const ag_op *op, ag_tensor *x) {
    AG_CHECK_HANDLES(NULL, op->name, x);
    if (!x) return NULL;
    if (ag__check_float(op->name, x, NULL)) return NULL;
    if (ag_numel(x) == 0) {
        char s[AG_SHAPE_STR];
        return ag__fail_null(AG_ERR_SHAPE, "%s: cannot reduce the empty tensor of shape %s; give a dim (ag_%s_dim)",
                             op->name, ag__tshape(s, x), op->name);
    }
    ag_tensor *xc = ag__contig_or_copy(x);
    ag_tensor *y = xc ? ag__new(x->dtype, 0, NULL) : NULL;
    if (!y) {
        ag_release(xc);
        return NULL;
    }
    if (x->dtype == AG_F64) lane_extreme_f64(ag__ptr(xc), lanes_all(xc), op == &op_max, ag__ptr(y), NULL);
    else lane_extreme_f32(ag__ptr(xc), lanes_all(xc), op == &op_max, ag__ptr(y), NULL);
    ag_release(xc);
    if (ag__needs_grad1(x) && !ag__record(y, op, &x, 1)) return NULL;
    return ag__check_finite(y, op->name);
}

/* dx = dy / m at the m elements equal to y (the NaNs if y is NaN), 0 elsewhere (ops/extrema.h). */
ag_status ag__tie_split_backward(ag_tensor *out, ag_tensor *gout) {
    ag_tensor *x = out->in[0];
    ag_tensor *xc = ag__contig_or_copy(x);
    ag_tensor *gx = xc ? ag__new_unowned(x->dtype, x->ndim, x->shape, true) : NULL;
    if (!gx) {
        ag_release(xc);
        return AG_ERR_NOMEM;
    }
    const double y = load(out, 0);
    const int64_t n = ag_numel(x);
    int64_t ties = 0;
    for (int64_t k = 0; k < n; k++) {
        double v = load(xc, k);
        ties += isnan(y) ? isnan(v) : v == y;
    }
    if (x->dtype == AG_F64) {
        const double share = ((const double *)ag__ptr(gout))[0] / (double)ties;
        for (int64_t k = 0; k < n; k++) {
            double v = ((const double *)ag__ptr(xc))[k];
            if (isnan(y) ? isnan(v) : v == y) ((double *)ag__ptr(gx))[k] = share;
        }
    } else {
        const float share = ((const float *)ag__ptr(gout))[0] / (float)ties;
        for (int64_t k = 0; k < n; k++) {
            float v = ((const float *)ag__ptr(xc))[k];
            if (isnan(y) ? isnan(v) : v == (float)y) ((float *)ag__ptr(gx))[k] = share;
        }
    }
    ag_release(xc);
    return ag__accumulate(x, gx);
}

ag_tensor *ag_max(ag_tensor *x) { return extreme_all(&op_max, x); }
ag_tensor *ag_min(ag_tensor *x) { return extreme_all(&op_min, x); }

/* ---- max and min along a dim ------------------------------------------------------------------- */
static ag_status extreme_dim_backward(ag_tensor *out, ag_tensor *gout);

/* y = max_d x, i* its first index;  dx = dy at i*, 0 elsewhere */
static const ag_op op_max_dim = {.name = "max_dim", .grad_fn = "MaxBackward0", .backward = extreme_dim_backward,
                                 .math = "y = max_d x (first index i*);  dx = dy at i*, 0 elsewhere",
                                 .backward_graph = ag__pick_backward_graph, .jvp = extreme_dim_jvp,
                                 .tangent = "ẏ = ẋ at the first extreme i* along d"};
/* y = min_d x, i* its first index;  dx = dy at i*, 0 elsewhere */
static const ag_op op_min_dim = {.name = "min_dim", .grad_fn = "MinBackward0", .backward = extreme_dim_backward,
                                 .math = "y = min_d x (first index i*);  dx = dy at i*, 0 elsewhere",
                                 .backward_graph = ag__pick_backward_graph, .jvp = extreme_dim_jvp,
                                 .tangent = "ẏ = ẋ at the first extreme i* along d"};
/* i = first argmax_d x (int64);  not differentiable */
static const ag_op op_argmax = {.name = "argmax",
                                .math = "i = index of the first max along d (int64);  no gradient"};
/* i = first argmin_d x (int64);  not differentiable */
static const ag_op op_argmin = {.name = "argmin",
                                .math = "i = index of the first min along d (int64);  no gradient"};

/* Values (op max_dim/min_dim) or int64 indices (argmax/argmin) of the first extreme along dim. */
static ag_tensor *extreme_dim(const ag_op *op, ag_tensor *x, int dim, bool keepdim) {
    AG_CHECK_HANDLES(NULL, op->name, x);
    if (!x) return NULL;
    const bool is_max = op == &op_max_dim || op == &op_argmax, values = op->backward != NULL;
    int d = check_dim(op->name, x, dim);
    if (d < 0) return NULL;
    int64_t shape[AG_MAX_DIMS];
    int on = dim_reduced_shape(x, d, keepdim, shape);
    ag_lanes L = ag__lanes_of(x, d);
    const bool record = values && ag__needs_grad1(x);
    ag_tensor *xc = ag__contig_or_copy(x);
    ag_tensor *y = xc ? ag__new(values ? x->dtype : AG_I64, on, shape) : NULL;
    /* argmax/argmin write their result as indices; max_dim/min_dim keep them only for backward */
    ag_tensor *idx = !values ? y : record && y ? ag__new_unowned(AG_I64, on, shape, false) : NULL;
    if (!y || (!idx && record)) {
        ag_release(xc);
        ag__discard(y);
        return NULL;
    }
    char *vp = values ? ag__ptr(y) : NULL;
    int64_t *ip = idx ? (int64_t *)ag__ptr(idx) : NULL;
    if (x->dtype == AG_F64) lane_extreme_f64(ag__ptr(xc), L, is_max, vp, ip);
    else lane_extreme_f32(ag__ptr(xc), L, is_max, vp, ip);
    ag_release(xc);
    if (record) {
        if (!ag__record(y, op, &x, 1)) {
            ag_release(idx);
            return NULL;
        }
        y->saved = idx; /* the node owns the indices */
        y->attr.i[0] = d;
    }
    return values ? ag__check_finite(y, op->name) : y;
}

/* dx[o, i*[o,i], i] = dy[o,i], zeros elsewhere. */
static ag_status extreme_dim_backward(ag_tensor *out, ag_tensor *gout) {
    ag_tensor *x = out->in[0];
    ag_lanes L = ag__lanes_of(x, (int)out->attr.i[0]);
    ag_tensor *gx = ag__new_unowned(x->dtype, x->ndim, x->shape, true);
    if (!gx) return AG_ERR_NOMEM;
    const int64_t *idx = (const int64_t *)ag__ptr(out->saved);
    size_t es = ag_dtype_size(x->dtype);
    for (int64_t o = 0; o < L.outer; o++)
        for (int64_t i = 0; i < L.inner; i++) {
            int64_t r = o * L.inner + i;
            memcpy(ag__ptr(gx) + (size_t)((o * L.n + idx[r]) * L.inner + i) * es, ag__ptr(gout) + (size_t)r * es, es);
        }
    return ag__accumulate(x, gx);
}

ag_tensor *ag_max_dim(ag_tensor *x, int dim, bool keepdim) { return extreme_dim(&op_max_dim, x, dim, keepdim); }
ag_tensor *ag_min_dim(ag_tensor *x, int dim, bool keepdim) { return extreme_dim(&op_min_dim, x, dim, keepdim); }
ag_tensor *ag_argmax(ag_tensor *x, int dim, bool keepdim) { return extreme_dim(&op_argmax, x, dim, keepdim); }
ag_tensor *ag_argmin(ag_tensor *x, int dim, bool keepdim) { return extreme_dim(&op_argmin, x, dim, keepdim); }

/* ---- prod -------------------------------------------------------------------------------------- */
static ag_status prod_backward(ag_tensor *out, ag_tensor *gout);
static ag_status prod_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin);
static ag_tensor *prod_jvp(ag_tensor *out, ag_tensor *const *tin);

/* y = Π x;  dx = dy·y/x without zeros, else dy·Π_{j≠i} x_j */
static const ag_op op_prod = {.name = "prod", .grad_fn = "ProdBackward0", .backward = prod_backward,
                              .saves = AG_SAVES_IN0 | AG_SAVES_OUT,
                              .math = "y = Π x;  dx_i = dy·y/x_i if no x is 0, else dy·Π_{j≠i} x_j",
                              .backward_graph = prod_backward_graph, .jvp = prod_jvp,
                              .tangent = "ẏ = Σ_i ẋ_i·Π_{j≠i} x_j (y/x_i·ẋ_i summed when no x is 0)"};
/* y = Π_d x;  dx = dy·y/x without zeros, else dy·Π_{j≠i} x_j along d */
static const ag_op op_prod_dim = {.name = "prod_dim", .grad_fn = "ProdBackward1", .backward = prod_backward,
                                  .saves = AG_SAVES_IN0 | AG_SAVES_OUT,
                                  .math = "y = Π_d x;  dx_i = dy·y/x_i if no x is 0, else dy·Π_{j≠i} x_j along d",
                                  .backward_graph = prod_backward_graph, .jvp = prod_jvp,
                                  .tangent = "ẏ = Σ_i ẋ_i·Π_{j≠i} x_j along d (y/x_i·ẋ_i summed when no x is 0)"};

/* ∂y/∂x_i of a prod (all elements: attr d < 0) or prod_dim, of x's shape, in differentiable ops:
 * y/x_i when x holds no zero; else the product of the others along the lane, the exclusive
 * cumprods from either end: cumprod([1, x_0 .. x_{n-2}])·flip(cumprod([1, x_{n-1} .. x_1]))
 * (PyTorch's prod_safe_zeros_backward: exact with zeros, and differentiable again). */
static ag_tensor *prod_partial(ag_tensor *out) {
    ag_tensor *x = out->in[0];
    const int d = (int)out->attr.i[0];
    if (!ag_numel(x)) return ag_zeros_like(x);
    ag_tensor *xc = ag__contig_or_copy(x);
    const int64_t zeros = xc ? count_zeros(xc, out, d < 0 ? lanes_all(x) : ag__lanes_of(x, d)) : 0;
    ag_release(xc);
    if (!xc) return NULL;
    if (!zeros) return ag_div(d >= 0 && out->ndim < x->ndim ? ag_unsqueeze(out, d) : out, x);
    int dd = d < 0 ? 0 : d;
    ag_tensor *xl = d < 0 ? ag_reshape(x, AG_SHAPE(ag_numel(x))) : x;
    const int64_t n = xl ? xl->shape[dd] : 0;
    if (n == 1) return ag_ones_like(x);
    ag_tensor *ones = ag_ones_like(ag_narrow(xl, dd, 0, 1));
    ag_tensor *from_start = ag_cumprod(ag_cat((ag_tensor *[]){ones, ag_narrow(xl, dd, 0, n - 1)}, 2, dd), dd);
    ag_tensor *rest = ag_flip(ag_narrow(xl, dd, 1, n - 1), 1, &dd);
    ag_tensor *from_end = ag_flip(ag_cumprod(ag_cat((ag_tensor *[]){ones, rest}, 2, dd), dd), 1, &dd);
    ag_tensor *p = ag_mul(from_start, from_end);
    return d < 0 ? ag_reshape(p, ag_shape_of(x)) : p;
}

/* dx = dy·∂y/∂x (dy with the reduced dim kept, to broadcast); a 0-d x passes dy */
static ag_status prod_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin) {
    ag_tensor *x = out->in[0];
    const int d = (int)out->attr.i[0];
    if (x->ndim == 0) return (gin[0] = gout) ? AG_OK : ag_last_status();
    ag_tensor *g = d >= 0 && out->ndim < x->ndim ? ag_unsqueeze(gout, d) : gout;
    return (gin[0] = ag_mul(g, prod_partial(out))) ? AG_OK : ag_last_status();
}

/* dy = Σ dx·∂y/∂x over the reduced elements */
static ag_tensor *prod_jvp(ag_tensor *out, ag_tensor *const *tin) {
    ag_tensor *x = out->in[0];
    int d = (int)out->attr.i[0];
    if (x->ndim == 0) return ag_clone(tin[0]);
    ag_tensor *t = ag_mul(tin[0], prod_partial(out));
    return d < 0 ? ag_sum(t) : ag_sum_dims(t, 1, &d, out->ndim == x->ndim);
}

/* y[o, i] = Π_k x[o, k, i] over the contiguous lanes L of xp (dtype dt) into yp. */
static void prod_lanes(ag_dtype dt, const char *xp, ag_lanes L, char *yp) {
    /* fewer contiguous lanes than threads: the lanes' runs split over threads (if there is room for
     * their products; else whole lanes, the same bits) */
    const int64_t runs = (L.n + PROD_RUN - 1) / PROD_RUN;
    double *run = L.inner == 1 && runs > 1 && L.outer < ag__threads_for(L.outer * L.n)
                      ? ag__alloc(sizeof(double) * (size_t)(L.outer * runs))
                      : NULL;
    if (dt == AG_F64) lane_prod_f64(xp, L, yp, run);
    else lane_prod_f32(xp, L, yp, run);
    ag__free(run);
}

/* The dims of x longer than 1, outermost in memory first, into order (their count), if x's elements
 * fill a dense block from ag__ptr(x) with positive strides in some order of its dims (a transposed
 * or permuted contiguous tensor); -1 for any other layout (gaps, overlaps, negative strides). */
static int dense_dim_order(const ag_tensor *x, int *order) {
    int m = 0;
    for (int k = 0; k < x->ndim; k++) {
        if (x->shape[k] == 1) continue;
        int j = m++; /* insertion by stride, largest first */
        for (; j > 0 && x->stride[order[j - 1]] < x->stride[k]; j--) order[j] = order[j - 1];
        order[j] = k;
    }
    int64_t s = 1;
    for (int j = m - 1; j >= 0; j--) {
        if (x->stride[order[j]] != s) return -1;
        s *= x->shape[order[j]];
    }
    return m;
}

/* prod_dim of a non-contiguous x along d into y (of the reduced shape) without copying x, when x
 * is a dense block in some order of its dims: the lanes as they lie in memory, their factors in
 * the same order as those of a contiguous tensor with x's memory layout (lanes a stride apart in
 * memory one factor at a time in order, lanes along the innermost dim in memory in interleaved
 * accumulators), so that the bits do not depend on the thread count; the results are written in
 * y's order (through a copy of the results when the kept dims lie in another order in memory).
 * 1 when done, 0 when x is not such a block (nothing written), -1 out of memory. */
static int prod_in_memory_order(ag_tensor *x, int d, ag_tensor *y) {
    int order[AG_MAX_DIMS];
    const int m = dense_dim_order(x, order);
    if (m < 0 || x->shape[d] == 1 || !ag_numel(x)) return 0;
    ag_lanes L = {1, x->shape[d], 1};
    int64_t mshape[AG_MAX_DIMS], mstride[AG_MAX_DIMS], ystride[AG_MAX_DIMS];
    int mn = 0, at = 0, last = -1;
    bool in_order = true;
    for (int j = 0; j < m; j++) {
        const int k = order[j];
        if (k == d) {
            at = 1;
            continue;
        }
        *(at ? &L.inner : &L.outer) *= x->shape[k];
        in_order &= k > last;
        last = k;
        mshape[mn++] = x->shape[k];
    }
    if (in_order) { /* y's contiguous layout is the lanes' [outer, inner] */
        prod_lanes(x->dtype, ag__ptr(x), L, ag__ptr(y));
        return 1;
    }
    ag_tensor *ym = ag__new_unowned(x->dtype, mn, mshape, false);
    if (!ym) return -1;
    prod_lanes(x->dtype, ag__ptr(x), L, ag__ptr(ym));
    ag__contiguous_strides(mn, mshape, mstride);
    /* y's dims (d dropped or kept as 1) with the strides their dims have in ym */
    int yn = 0;
    for (int k = 0; k < x->ndim; k++) {
        if (k == d && y->ndim < x->ndim) continue;
        ystride[yn] = 0;
        for (int j = 0, mj = 0; j < m; j++)
            if (order[j] != d) {
                if (order[j] == k) ystride[yn] = mstride[mj];
                mj++;
            }
        yn++;
    }
    ag_tensor *v = ag__new_view_unowned(ym, y->ndim, y->shape, ystride, 0);
    if (v) ag__copy_into(y, v);
    ag_release(v);
    ag_release(ym);
    return v ? 1 : -1;
}

/* Product over all elements (d < 0) or along dim d. */
static ag_tensor *prod_apply(const ag_op *op, ag_tensor *x, int d, bool keepdim) {
    int64_t shape[AG_MAX_DIMS] = {0};
    int on = d < 0 ? 0 : dim_reduced_shape(x, d, keepdim, shape);
    ag_tensor *y = ag__new(x->dtype, on, shape);
    if (!y) return NULL;
    const int done = d >= 0 && !ag__contig(x) ? prod_in_memory_order(x, d, y) : 0;
    if (done < 0) { /* the allocation recorded its failure */
        ag__discard(y);
        return NULL;
    }
    if (!done) {
        ag_tensor *xc = ag__contig_or_copy(x);
        if (!xc) {
            ag__discard(y);
            return NULL;
        }
        prod_lanes(x->dtype, ag__ptr(xc), d < 0 ? lanes_all(x) : ag__lanes_of(x, d), ag__ptr(y));
        ag_release(xc);
    }
    if (ag__needs_grad1(x)) {
        if (!ag__record(y, op, &x, 1)) return NULL;
        y->attr.i[0] = d;
    }
    return ag__check_finite(y, op->name);
}

/* As PyTorch: a 0-d x passes dy; without any zero in x dx = dy·y/x; all-element prod with
 * two or more zeros gives 0; otherwise the exclusive products of the safe path, on every lane. */
static ag_status prod_backward(ag_tensor *out, ag_tensor *gout) {
    ag_tensor *x = out->in[0];
    if (x->ndim == 0) return ag__accumulate(x, ag_retain(gout));
    const int d = (int)out->attr.i[0];
    const ag_lanes L = d < 0 ? lanes_all(x) : ag__lanes_of(x, d);
    ag_tensor *xc = ag__contig_or_copy(x);
    const int64_t zeros = xc ? count_zeros(xc, out, L) : 0;
    const bool vanishes = d < 0 && zeros > 1;
    /* every element written below, unless the gradient vanishes */
    ag_tensor *gx = xc ? ag__new_unowned(x->dtype, x->ndim, x->shape, vanishes) : NULL;
    if (!gx) {
        ag_release(xc);
        return AG_ERR_NOMEM;
    }
    if (!vanishes) {
        const int64_t lanes = L.outer * L.inner, items = zeros ? lanes : L.outer * L.n;
        int nt = ag__threads_for(ag_numel(x));
        if (nt > items) nt = items > 0 ? (int)items : 1;
        int64_t room = 0;
        double *pre = NULL;
        if (zeros && (ag__mul_overflow(L.n, nt, &room) || !(pre = ag__alloc(sizeof(double) * (size_t)room)))) {
            ag_release(xc);
            ag_release(gx);
            return AG_ERR_NOMEM;
        }
        if (x->dtype == AG_F64) lane_prod_bwd_f64(ag__ptr(gx), ag__ptr(xc), ag__ptr(out), ag__ptr(gout), L, pre, nt);
        else lane_prod_bwd_f32(ag__ptr(gx), ag__ptr(xc), ag__ptr(out), ag__ptr(gout), L, pre, nt);
        ag__free(pre);
    }
    ag_release(xc);
    return ag__accumulate(x, gx);
}

ag_tensor *ag_prod(ag_tensor *x) {
    AG_CHECK_HANDLES(NULL, "prod", x);
    if (!x || ag__check_float("prod", x, NULL)) return NULL;
    return prod_apply(&op_prod, x, -1, false);
}

ag_tensor *ag_prod_dim(ag_tensor *x, int dim, bool keepdim) {
    AG_CHECK_HANDLES(NULL, "prod_dim", x);
    if (!x || ag__check_float("prod_dim", x, NULL)) return NULL;
    int d = ag__dim("prod_dim", dim, x->ndim);
    return d < 0 ? NULL : prod_apply(&op_prod_dim, x, d, keepdim);
}

const ag_op *const ag__extrema_ops[] = {&op_max, &op_min, &op_max_dim, &op_min_dim, &op_argmax,
                                        &op_argmin, &op_prod, &op_prod_dim, NULL};

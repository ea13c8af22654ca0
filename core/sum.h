/*
 * core/sum.h - accurate sums for reductions.
 *
 * Every reduction accumulates in float64, float32 data included: a float32
 * accumulator drifts by up to n·2^-24 of the sum over n terms (the mean of 1e7
 * copies of 0.1f came out 0.1088), a float64 one by n·2^-53, far below
 * float32's rounding.  Strided runs are summed in eight independent
 * accumulators (AG_SUM8), contiguous ones in sixteen (core/sum.c), so the loop
 * vectorises and a contiguous float32 sum runs at memory speed (ag_sum of 1e7
 * terms: 1.7 ms on one core, 23 GB/s; with one accumulator it was latency-bound
 * at 8.2 ms); in cache the conversions to float64 bounded it (about 58 GB/s a
 * core), so a contiguous float32 Σ x adds its elements 16 apart in float32 first
 * and widens the pairs (core/sum_pairs.h: each element rounded at most once, an
 * error below 2^-24·Σ|x|; |x| and x² are widened one by one).  A sum along the last dims of a contiguous x splits its rows over the
 * threads, or the 2^15-element chunks of few long rows; on AVX-512 CPUs float32 rows along
 * the last dim (32 rows or more) are summed eight at a time with the same additions (core/sum.c's
 * rows8_f32_avx512: the same bits, short rows no longer bound by each row's latency).  Reductions whose output
 * is not a single run (an outer dim, a dim list) accumulate into a float64 buffer
 * of the output's shape and round once at the end (ag__sum_into); there float32
 * columns of 64 rows or more add eight (or four) rows in a float32 tree before
 * widening it into the float64 sum (an error below 3·2^-24 of each tree's Σ|x|),
 * which lifts the conversion bound.  The way a sum splits over threads depends on
 * the shapes alone: the same bits on any number of threads.
 */
#ifndef AGRAD_SUM_H
#define AGRAD_SUM_H

#include "core/iter.h"

/* Marks a hot loop kernel to be compiled twice, for x86-64-v3 (AVX2, 8 floats a vector) and for
 * the baseline (SSE2, 4), the first taken on CPUs that have it (GCC's target_clones, resolved
 * once at load).  The code is the same C and ISO C mode contracts no a·b + c into an FMA, so both
 * give the same bits (the vector width changes no summation order AG_SUM8 fixes).  Other
 * compilers and targets: the baseline only.  (layer_norm [512, 1024] forward + backward on one
 * thread: 2.2 ms with one accumulator, 1.25 ms with AG_SUM8, 0.9 ms cloned.) */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) && \
    !defined(__SANITIZE_THREAD__) /* ifunc resolvers run before TSan's runtime is up: a crash at load */
#define AG_VEC_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
/* x86 intrinsics may be used in functions marked __attribute__((target("avx2"))), called where
 * AG_VEC_WIDE() holds. */
#define AG_X86_INTRINSICS 1
/* Whether this CPU runs the x86-64-v3 clones (where a kernel's speed against oneDNN's depends on it). */
#define AG_VEC_WIDE() (__builtin_cpu_supports("x86-64-v3") != 0)
/* Whether this CPU runs x86-64-v4 (AVX-512) code: functions marked __attribute__((target("avx512f")))
 * may be called where it holds. */
#define AG_VEC_512() (__builtin_cpu_supports("x86-64-v4") != 0)
/* AG_VEC_CLONES with an x86-64-v4 (AVX-512, 16 floats a vector) clone in front, for the few kernels
 * bound by their arithmetic rather than by memory, where the wider vectors halve the instructions:
 * vexpf (ops/vexpf.h) over floats in L1 on the AMD EPYC, 0.57 -> 0.38 ns a float.  The same bits as
 * the other clones (checked over every float32 for vexpf): no contraction, the sums' order fixed by
 * AG_SUM8/AG_SUM16 (with eight float64 accumulators, one AVX-512 vector, a sum is one latency-bound
 * chain: use AG_SUM16). */
#define AG_VEC_CLONES_512 __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define AG_VEC_CLONES
#define AG_VEC_CLONES_512
#define AG_VEC_WIDE() false
#define AG_VEC_512() false
#endif

/* res = Σ TERM over the int64_t index I in [0, n), in float64 with eight accumulators
 * (TERM is an expression of I giving a float64 term; n is evaluated once).
 * TERM must not be a select on float64 values (y <= 0 ? 0 : dy, with y and dy double): gcc 12.2
 * at -O3 vectorises that for x86-64-v3 (the clone this host runs) into a wrong sum, 167 for 333
 * over 1 000 terms in a standalone reproduction; float32 selects widened afterwards and the
 * default and x86-64-v4 clones are right.  The same holds for AG_SUM16 and for any loop adding a
 * select into an array of accumulators.  Found by session 12's fused batch_norm_relu adjoint,
 * which reads y and dy apart instead. */
#define AG_SUM8(res, n, I, TERM)                                                               \
    do {                                                                                       \
        const int64_t n_ = (n);                                                                \
        double acc_[8] = {0, 0, 0, 0, 0, 0, 0, 0}, tail_ = 0;                                  \
        int64_t base_ = 0;                                                                     \
        for (; base_ < n_ - n_ % 8; base_ += 8)                                                \
            for (int k_ = 0; k_ < 8; k_++) {                                                   \
                const int64_t I = base_ + k_;                                                  \
                acc_[k_] += (TERM);                                                            \
            }                                                                                  \
        for (; base_ < n_; base_++) {                                                          \
            const int64_t I = base_;                                                           \
            tail_ += (TERM);                                                                   \
        }                                                                                      \
        (res) = ((acc_[0] + acc_[4]) + (acc_[1] + acc_[5])) + ((acc_[2] + acc_[6]) + (acc_[3] + acc_[7])) + tail_; \
    } while (0)

#ifdef AG_X86_INTRINSICS
#include <immintrin.h>
/* AG_SUM8's finish for kernels that keep its eight accumulators in one AVX-512 vector v (lane k the terms
 * k mod 8): ((a0 + a4) + (a1 + a5)) + ((a2 + a6) + (a3 + a7)) + tail, the same additions as AG_SUM8's. */
__attribute__((target("avx512f"))) static inline double ag__sum8_finish_512(__m512d v, double tail) {
    double a[8];
    _mm512_storeu_pd(a, v);
    return ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7])) + tail;
}
/* AG_SUM16_QUADS's (core/sum_pairs.h) and AG_SUM16's finish for kernels that keep their sixteen accumulators
 * in two AVX-512 vectors, lo (acc[0..7]) and hi (acc[8..15]): acc[k] += acc[k + 8], then 4, 2, 1 apart, + tail. */
__attribute__((target("avx512f"))) static inline double ag__sum16_finish_512(__m512d lo, __m512d hi, double tail) {
    double a[8];
    _mm512_storeu_pd(a, _mm512_add_pd(lo, hi));
    return ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7])) + tail;
}
#endif

/* res = Σ TERM over I in [0, n) as AG_SUM8 but in sixteen accumulators (acc[k] taking the terms k
 * mod 16), added at the end pairwise, 8 apart, then 4, 2, 1: core/sum.c's contiguous runs, where
 * eight (two AVX2 vectors) left the loop bound by the latency of the float64 additions rather than
 * by the conversions (x.sum(1) of [256, 4096] float32 in cache: 29 -> 58 GB/s on one core).  In
 * kernels whose terms cost more than a load and a conversion it gained nothing (a softmax row's Σ e,
 * layer_norm's sums: measured, unchanged); those rows now add their float32 terms four at a time
 * first (core/sum_pairs.h's quads: AG_SUM16_QUADS, AG_SUM16_QUADS_THEN16), and the rest keep AG_SUM8. */
#define AG_SUM16(res, n, I, TERM)                                                              \
    do {                                                                                       \
        const int64_t n_ = (n);                                                                \
        double acc_[16] = {0}, tail_ = 0;                                                      \
        int64_t base_ = 0;                                                                     \
        for (; base_ < n_ - n_ % 16; base_ += 16)                                              \
            for (int k_ = 0; k_ < 16; k_++) {                                                  \
                const int64_t I = base_ + k_;                                                  \
                acc_[k_] += (TERM);                                                            \
            }                                                                                  \
        for (; base_ < n_; base_++) {                                                          \
            const int64_t I = base_;                                                           \
            tail_ += (TERM);                                                                   \
        }                                                                                      \
        for (int w_ = 8; w_; w_ /= 2)                                                          \
            for (int k_ = 0; k_ < w_; k_++) acc_[k_] += acc_[k_ + w_];                         \
        (res) = acc_[0] + tail_;                                                               \
    } while (0)

/* Σ of the n float32 or float64 (dtype) values at x, step bytes apart, in float64. */
AG_HIDDEN double ag__sum_run(const char *x, int64_t step, int64_t n, ag_dtype dtype);

/* Inner loop (ag_inner_fn) of a float64 accumulation: p[0] (float64) += p[1], whose
 * dtype (float32 or float64) ctx points at.  With s[0] == 0 the run is one sum. */
AG_HIDDEN void ag__sum_kernel(char **p, const int64_t *s, int64_t n, void *ctx);

/* What a sum adds: x, |x| or x² (the float32 1- and 2-norms' sums, ops/linalg.c). */
typedef enum { AG_SUM_X, AG_SUM_ABS, AG_SUM_SQ } ag_sum_term;

/* acc += TERM(x) summed down to acc's shape, as ag__sum_into, where the shapes take one of its fast
 * paths (x and acc contiguous: a full sum, or one over leading dims, the last dims or a middle run
 * of dims); returns false and does nothing otherwise. */
AG_HIDDEN bool ag__sum_term_into(ag_tensor *acc, const ag_tensor *x, ag_sum_term term);

/* acc[a·C + c] += Σ_r TERM(x[(a·R + r)·C + c]) for a in [a0, a1) of a contiguous [A, R, C] x (A > 1,
 * R > 1; acc float64 of [A, C]), on the calling thread, each output's additions those ag__sum_term_into
 * makes for the whole [A, R, C] on any number of threads: so the a can be shared out over threads.
 * With C == 1, a0 and a1 must be multiples of 8 (or a1 == A): rows go to a kernel by eights. */
AG_HIDDEN void ag__slab_sums(double *acc, const char *x, int64_t A, int64_t R, int64_t C, int64_t a0, int64_t a1,
                             ag_dtype dtype, ag_sum_term term);

/* Whether acc sums a contiguous x over one run of consecutive dims between kept ones: x is then
 * [A, R, C] (A, C the products of the kept dims before and after the run, R of the summed ones)
 * and acc[A, C] (contiguous; its shape aligned to x's from the end, leading dims it lacks being
 * summed).  Size-1 dims of x count as either. */
AG_HIDDEN bool ag__middle_sum_geometry(const ag_tensor *acc, const ag_tensor *x, int64_t *A, int64_t *R, int64_t *C);

/* acc += x summed down to acc's shape: acc is float64 and its shape broadcasts to x's
 * (size 1 or absent along the summed dims); x is float32 or float64.  A sum over
 * leading dims of a contiguous x is a column sum without the iterator; large
 * reductions split over threads. */
AG_HIDDEN void ag__sum_into(ag_tensor *acc, const ag_tensor *x);
/* ag__sum_into's walk alone (no contiguous fast path tried): the iterator with acc's kept dims outer,
 * the summed dims inner in their order, each inner run one AG_SUM8 (contig_sum where unit-step) added to
 * acc in turn; the order ag__sum_into gives every x its fast paths do not take (an expanded x). */
AG_HIDDEN void ag__sum_walk_into(ag_tensor *acc, const ag_tensor *x);

/* The float64 accumulator for a reduction result y: y itself (retained) when y is
 * float64, else a new zeroed float64 tensor of y's shape, owned by the caller.
 * NULL when out of memory. */
AG_HIDDEN ag_tensor *ag__accumulator_for(ag_tensor *y);

/* Returns a new tensor of shape `to` holding the sum of g over the dims that
 * broadcasting added or expanded (g's shape is a broadcast of `to`), accumulated
 * in float64.  The result
 * is owned by the caller (in no scope), as are those of ag__contig_or_copy. */
AG_HIDDEN ag_tensor *ag__sum_to(const ag_tensor *g, int ndim, const int64_t *to);
/* Inner loop p[0] += p[1] for float32/float64; ctx points at the ag_dtype.  A run
 * into one element (s[0] == 0) is summed in float64 first. */
AG_HIDDEN void ag__acc_kernel(char **p, const int64_t *s, int64_t n, void *ctx);

#endif

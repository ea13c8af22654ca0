/*
 * core/sum_pairs.h - the orders of contiguous sums whose terms are added in float32 first (core/sum.c's
 * contig_sum, ops/norm.c's layer-norm rows, ops/softmax.c's float32 rows, ops/loss.c's cross-entropy rows, and
 * their tests).
 */
#ifndef AGRAD_SUM_PAIRS_H
#define AGRAD_SUM_PAIRS_H

#include <stdint.h>

/* res = Σ x[0 .. n) of the float32 array X in float64, as AG_SUM16 (sixteen accumulators, the same
 * tree, the same tail) but with the elements 16 apart in each block of 32 added in float32 first:
 * acc[k] += (double)(x[i + k] + x[i + 16 + k]).  Half the conversions to float64, which bounded a
 * float32 sum in cache; each element is rounded at most once, in a sum of two, so the error is
 * below 2^-24·Σ|x| plus float64's (a same-sign sum within one float32 rounding before its own).
 * core/sum.c's contiguous float32 sums of x (contig_sum, every kernel) make these additions. */
#define AG_SUM16_PAIRS(res, n, X)                                                              \
    do {                                                                                       \
        const int64_t n_ = (n);                                                                \
        const float *x_ = (X);                                                                 \
        double acc_[16] = {0}, tail_ = 0;                                                      \
        int64_t base_ = 0;                                                                     \
        for (; base_ + 32 <= n_; base_ += 32)                                                  \
            for (int k_ = 0; k_ < 16; k_++) acc_[k_] += (double)(x_[base_ + k_] + x_[base_ + 16 + k_]); \
        if (base_ + 16 <= n_) {                                                                \
            for (int k_ = 0; k_ < 16; k_++) acc_[k_] += (double)x_[base_ + k_];                \
            base_ += 16;                                                                       \
        }                                                                                      \
        for (; base_ < n_; base_++) tail_ += (double)x_[base_];                                \
        for (int w_ = 8; w_; w_ /= 2)                                                          \
            for (int k_ = 0; k_ < w_; k_++) acc_[k_] += acc_[k_ + w_];                         \
        (res) = acc_[0] + tail_;                                                               \
    } while (0)

/* res = Σ TERM over the int64_t index I in [0, n) in float64, TERM an expression of I of the element
 * type T (float or double), the terms added four at a time in T first: in each block of 64,
 * acc[k] += (double)((t(b + k) + t(b + 16 + k)) + (t(b + 32 + k) + t(b + 48 + k))) for k < 16; where
 * PAIRS32 a last block of 32 adds its pairs t(b + k) + t(b + 16 + k); each block of 16 left (one with
 * the pairs, up to three without) adds its terms alone, the rest (n mod 16) go one by one into a tail; the sixteen accumulators are added 8 apart, then 4, 2, 1, and the tail
 * last (AG_SUM16's finish).  A quarter of AG_SUM8's conversions; each term is rounded at most twice more
 * in T, so for float32 the result is within (2·2^-24 + 2^-48 + (n/64 + 16)·2^-53)·Σ|t| of Σ t (the float64
 * part bounded by the additions on a term's way: n/64 + 7 through an accumulator and the finish, 16
 * through the tail).
 * AG_SUM16_QUADS (PAIRS32 1): ops/norm.c's layer-norm rows make their sums in this order
 * (ag__sum16_finish_512 finishes the AVX-512 kernels' two vectors of accumulators the same way). */
#define AG_SUM16_QUADS_BY(res, n, I, T, TERM, PAIRS32)                                         \
    do {                                                                                       \
        const int64_t n_ = (n);                                                                \
        double acc_[16] = {0}, tail_ = 0;                                                      \
        int64_t b_ = 0;                                                                        \
        for (; b_ + 64 <= n_; b_ += 64)                                                        \
            for (int k_ = 0; k_ < 16; k_++) {                                                  \
                T t0_, t1_, t2_, t3_;                                                          \
                { const int64_t I = b_ + k_; t0_ = (TERM); }                                   \
                { const int64_t I = b_ + 16 + k_; t1_ = (TERM); }                              \
                { const int64_t I = b_ + 32 + k_; t2_ = (TERM); }                              \
                { const int64_t I = b_ + 48 + k_; t3_ = (TERM); }                              \
                acc_[k_] += (double)((t0_ + t1_) + (t2_ + t3_));                               \
            }                                                                                  \
        if ((PAIRS32) && b_ + 32 <= n_) {                                                      \
            for (int k_ = 0; k_ < 16; k_++) {                                                  \
                T t0_, t1_;                                                                    \
                { const int64_t I = b_ + k_; t0_ = (TERM); }                                   \
                { const int64_t I = b_ + 16 + k_; t1_ = (TERM); }                              \
                acc_[k_] += (double)(t0_ + t1_);                                               \
            }                                                                                  \
            b_ += 32;                                                                          \
        }                                                                                      \
        for (; b_ + 16 <= n_; b_ += 16) /* one block at most after the pairs, three without */ \
            for (int k_ = 0; k_ < 16; k_++) {                                                  \
                const int64_t I = b_ + k_;                                                     \
                acc_[k_] += (double)(T)(TERM);                                                 \
            }                                                                                  \
        for (; b_ < n_; b_++) {                                                                \
            const int64_t I = b_;                                                              \
            tail_ += (double)(T)(TERM);                                                        \
        }                                                                                      \
        for (int w_ = 8; w_; w_ /= 2)                                                          \
            for (int k_ = 0; k_ < w_; k_++) acc_[k_] += acc_[k_ + w_];                         \
        (res) = acc_[0] + tail_;                                                               \
    } while (0)
#define AG_SUM16_QUADS(res, n, I, T, TERM) AG_SUM16_QUADS_BY(res, n, I, T, TERM, 1)

/* res = Σ TERM over the int64_t index I in [0, n) in float64, TERM of the element type T, the terms added four
 * at a time in T first as AG_SUM16_QUADS but with every block of 16 after the blocks of 64 taken alone: in each
 * block of 64, acc[k] += (double)((t(b + k) + t(b + 16 + k)) + (t(b + 32 + k) + t(b + 48 + k))) for k < 16; then
 * acc[k] += (double)t(b + k) for each block of 16 left (up to three); the last n mod 16 one by one into a tail in
 * order; the sixteen accumulators added 8 apart, then 4, 2, 1, and the tail last.  A quarter of AG_SUM8's
 * conversions where n >= 64; each term is rounded at most twice more in T, so for float32 the result is within
 * (2·2^-24 + 2^-48 + (n/64 + 16)·2^-53)·Σ|t| of Σ t (the float64 part bounded by the additions on a term's way:
 * at most n/64 + 3 through an accumulator, 5 in the finish, 16 through the tail).  The AVX-512 kernels keep
 * acc[0..7] and acc[8..15] in two vectors and finish with ag__sum16_finish_512 (core/sum.h).
 * The float32 softmax rows of 64 and more make their Σ e and log_softmax's dim-1 adjoint its Σ dy in this order
 * (ops/softmax.c: the fused AVX-512 row pass, the C loops, fast_row_lse_f32_wide), and so does the fused
 * cross-entropy's row kernel (ops/loss.c, CE_SUM_QUADS), so that its rows repeat the per-row path's bits. */
#define AG_SUM16_QUADS_THEN16(res, n, I, T, TERM) AG_SUM16_QUADS_BY(res, n, I, T, TERM, 0)

#endif

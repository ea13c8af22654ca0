/*
 * core/sum_pairs.h - the order of a contiguous float32 sum (core/sum.c's contig_sum and its test).
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

#endif

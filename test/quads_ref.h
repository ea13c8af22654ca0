/*
 * quads_ref.h - the tests' reference for core/sum_pairs.h's AG_SUM16_QUADS_THEN16 order (the float32 row sums of
 * softmax, log_softmax and the fused cross-entropy), written out from its contract in plain C so that the kernels
 * can be checked against it bit for bit.
 */
#ifndef AGRAD_TEST_QUADS_REF_H
#define AGRAD_TEST_QUADS_REF_H

#include <stdint.h>

/* Σ t[0 .. n) in AG_SUM16_QUADS_THEN16's order for float32 terms: sixteen float64 accumulators, lane k taking
 * (float32) ((t[i + k] + t[i + 16 + k]) + (t[i + 32 + k] + t[i + 48 + k])) for each block of 64, then t[i + k] for
 * each block of 16 left, the last n mod 16 into a tail in order, the accumulators added 8, 4, 2 and 1 apart, then
 * the tail.  Returns the sum; n = 0 gives 0. */
static inline double quads_then16_ref(const float *t, int64_t n) {
    double acc[16] = {0}, tail = 0;
    int64_t i = 0;
    for (; i + 64 <= n; i += 64)
        for (int k = 0; k < 16; k++) {
            const float q = (t[i + k] + t[i + 16 + k]) + (t[i + 32 + k] + t[i + 48 + k]);
            acc[k] += (double)q;
        }
    for (; i + 16 <= n; i += 16)
        for (int k = 0; k < 16; k++) acc[k] += (double)t[i + k];
    for (; i < n; i++) tail += (double)t[i];
    for (int w = 8; w; w /= 2)
        for (int k = 0; k < w; k++) acc[k] += acc[k + w];
    return acc[0] + tail;
}

#endif

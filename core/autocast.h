/*
 * core/autocast.h - the autocast state of this thread (core/autocast.c) and the
 * float32 -> bfloat16 conversion the bf16 kernels read their operands through.
 */
#ifndef AGRAD_CORE_AUTOCAST_H
#define AGRAD_CORE_AUTOCAST_H

#include "core/internal.h"

/* 0 outside autocast (or in a region with enabled = false), else the ag_autocast_dtype
 * the matrix products and convolutions of this thread compute in.  The backward engine
 * sets it to each node's own (ag_tensor.autocast) while that node's adjoint runs. */
AG_HIDDEN extern _Thread_local uint8_t ag__autocast;

/* How many autocast regions are open in all threads, plus the adjoints running with a
 * node's nonzero state (ag__autocast_switch): when 0, ag__autocast is 0 in every thread,
 * and the per-op paths (recording, the backward walk) load this global instead of
 * reaching the thread-local byte through the TLS descriptor (tiny chain, one thread:
 * 0.68 -> 0.64 us a step, as before autocast). */
AG_HIDDEN extern atomic_int ag__autocast_users;

/* This thread's autocast state, 0 without a look at the thread-local byte when no
 * region is open anywhere. */
static inline uint8_t ag__autocast_state(void) {
    return atomic_load_explicit(&ag__autocast_users, memory_order_relaxed) ? ag__autocast : 0;
}

/* ag__autocast_switch's answer when it changed nothing. */
#define AG_AUTOCAST_UNTOUCHED 0xff

/* Sets this thread's state to mode (an adjoint about to run in its forward's precision)
 * and returns what ag__autocast_restore needs: the previous state, or
 * AG_AUTOCAST_UNTOUCHED when mode is 0 and no region is open (the state is 0 already). */
static inline uint8_t ag__autocast_switch(uint8_t mode) {
    if (!mode && !atomic_load_explicit(&ag__autocast_users, memory_order_relaxed)) return AG_AUTOCAST_UNTOUCHED;
    if (mode) atomic_fetch_add_explicit(&ag__autocast_users, 1, memory_order_relaxed);
    const uint8_t prev = ag__autocast;
    ag__autocast = mode;
    return prev;
}

/* Undoes ag__autocast_switch(mode), which returned prev. */
static inline void ag__autocast_restore(uint8_t mode, uint8_t prev) {
    if (prev == AG_AUTOCAST_UNTOUCHED) return;
    ag__autocast = prev;
    if (mode) atomic_fetch_sub_explicit(&ag__autocast_users, 1, memory_order_relaxed);
}

/* dst[i] = bf16(src[i]), i < n, rounded to nearest even (NaN stays NaN), on every
 * thread from AG_PAR_MIN_ELEMS elements (split over the team OpenMP grants). */
AG_HIDDEN void ag__f32_to_bf16(uint16_t *dst, const float *src, int64_t n);

/* dst = bf16 of the rows x cols matrix at src with element strides rs (between rows)
 * and cs (between columns), written row-major (dst[i * cols + j]). */
AG_HIDDEN void ag__f32_to_bf16_2d(uint16_t *dst, const float *src, int64_t rows, int64_t cols, int64_t rs, int64_t cs);

/* Whether ag__f32_to_bf16_nchw16c runs on this CPU (x86-64 with AVX-512 BF16, built with GCC). */
AG_HIDDEN bool ag__bf16_nchw16c_available(void);

/* dst = bf16 of the float32 NCHW activations src ([n, c, hw] contiguous) in oneDNN's
 * nChw16c layout (dst[(i·⌈c/16⌉ + c/16)·hw + p][c % 16], the channels past c zero),
 * rounded as vcvtneps2bf16 rounds (to nearest even, subnormals to zero, NaN quieted), on
 * up to `threads` threads (one inside a parallel region).  Only where
 * ag__bf16_nchw16c_available() (core/bf16_blocked.c). */
AG_HIDDEN void ag__f32_to_bf16_nchw16c(uint16_t *dst, const float *src, int64_t n, int64_t c, int64_t hw, int threads);

#endif

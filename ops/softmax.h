/*
 * softmax.h - which kernel computes float32 softmax / log_softmax.  Private:
 * lets the tests run the oneDNN path and the reference C kernel on the same
 * inputs, and benchmarks compare them.
 */
#ifndef AGRAD_SOFTMAX_H
#define AGRAD_SOFTMAX_H

#include "core/internal.h"

typedef enum ag__softmax_backend {
    AG__SOFTMAX_AUTO = 0,  /* oneDNN for large float32 inputs along the last dim, else C */
    AG__SOFTMAX_REFERENCE, /* always the C kernel */
    AG__SOFTMAX_ONEDNN,    /* oneDNN for every non-empty float32 input (any dim) */
    AG__SOFTMAX_C_BLOCKS   /* as AUTO, but float32 forward blocks along other dims take the cloned C
                            * kernel where the CPU would run the AVX-512 one, and float32 forward rows
                            * the separate passes where it would fuse them (same bits: tests compare;
                            * this thread only) */
} ag__softmax_backend;

/* Sets this thread's choice (forward and backward); returns the previous one.  The
 * process-wide ag__backend (parallel.h) and ag_onednn_enabled() still apply: the
 * reference mode or oneDNN off means the C kernel. */
AG_HIDDEN ag__softmax_backend ag__softmax_set_backend(ag__softmax_backend b);

/* Whether this thread's softmax runs the fast kernels: not in the reference modes (this thread's
 * AG__SOFTMAX_REFERENCE, or the process-wide reference backend). */
AG_HIDDEN bool ag__softmax_fast(void);

/* Float32 rows of this many elements and more take the fast _wide row kernel (fused
 * cross-entropy's one-pass rows, ops/loss.c, repeat its bits from there on). */
#define AG__SOFTMAX_WIDE_ROW 256

/* The max of a float32 row of n, *bad = whether it holds a NaN (the fast kernels' row max). */
AG_HIDDEN float ag__softmax_row_max_f32(const float *x, int64_t n, int *bad);

/* For the fused cross-entropy: x and p contiguous [R, n] of one float dtype; for rows [lo, hi)
 * writes p = softmax(x) along dim 1 and lse[r] = log Σ_k exp(x[r, k]) (m + log Σ exp(x - m)),
 * with the fast row kernel (the reference kernel in the reference modes) and the reference
 * kernel's NaN/inf behaviour.  One thread: the caller splits rows over threads. */
AG_HIDDEN void ag__softmax_rows_lse(const ag_tensor *x, ag_tensor *p, double *lse, int64_t lo, int64_t hi);

#endif

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

/* dst[i] = bf16(src[i]), i < n, rounded to nearest even (NaN stays NaN), on every
 * thread from AG_PAR_MIN_ELEMS elements. */
AG_HIDDEN void ag__f32_to_bf16(uint16_t *dst, const float *src, int64_t n);

/* dst = bf16 of the rows x cols matrix at src with element strides rs (between rows)
 * and cs (between columns), written row-major (dst[i * cols + j]). */
AG_HIDDEN void ag__f32_to_bf16_2d(uint16_t *dst, const float *src, int64_t rows, int64_t cols, int64_t rs, int64_t cs);

#endif

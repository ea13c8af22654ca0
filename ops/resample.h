/*
 * resample.h - F.interpolate's resampling loop on raw float32 planes, for the
 * image transforms of data/augment.c (Resize, RandomResizedCrop), so that they
 * read the input positions ag_interpolate reads.  Private.
 */
#ifndef AGRAD_RESAMPLE_H
#define AGRAD_RESAMPLE_H

#include "core/internal.h"

/* y [P, OH, OW] = interpolate(x [P, H, W], size (OH, OW), nearest or bilinear,
 * align_corners false), contiguous float32; all sizes >= 1.  AG_ERR_NOMEM (not
 * recorded) when its index tables cannot be allocated. */
AG_HIDDEN ag_status ag__resample_f32(int64_t P, int64_t H, int64_t W, int64_t OH, int64_t OW, bool nearest, const float *x,
                                     float *y);

#endif

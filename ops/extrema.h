/*
 * extrema.h - the adjoint that ops selecting one value of a whole tensor share
 * (max, min in ops/extrema.c; median in ops/sort.c).  Private.
 */
#ifndef AGRAD_OPS_EXTREMA_H
#define AGRAD_OPS_EXTREMA_H

#include "core/internal.h"

/* The adjoint of a 0-d out selected from all of in[0] (saves IN0 and OUT): dy split evenly
 * over the elements equal to out (the NaNs when out is NaN), 0 elsewhere, as PyTorch's
 * evenly_distribute_backward. */
AG_HIDDEN ag_status ag__tie_split_backward(ag_tensor *out, ag_tensor *gout);

#endif

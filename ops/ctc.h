/*
 * ctc.h - the CTC loss as one op (ops/ctc.c).  Private: nn/loss_ctc.c calls it
 * for ag_ctc_loss after turning the unbatched form into a batch of one, and
 * reduces its per-sample losses.
 */
#ifndef AGRAD_OPS_CTC_H
#define AGRAD_OPS_CTC_H

#include "core/internal.h"
#include "agrad/ops.h"

/* The CTC negative log-likelihood of each sample, [N] of lp's dtype (scope-owned), recording
 * the op ctc_loss (differentiable in lp).  lp: float log-probabilities [T, N, C]; targets:
 * int64, padded [N, S] or the samples' targets concatenated (1-d); input_lengths and
 * target_lengths: int64 [N]; blank in [0, C).  Errors name loss: AG_ERR_DTYPE, AG_ERR_SHAPE
 * (a shape that does not fit, concatenated targets whose size is not the lengths' sum),
 * AG_ERR_VALUE (an input length outside [0, T], a target length outside [0, S]),
 * AG_ERR_INDEX (blank, or a label within the lengths outside [0, C) or the blank).  A sample
 * without an alignment gets +inf, or 0 (and a zero gradient) with zero_infinity; an empty
 * input with an empty target gets 0. */
AG_HIDDEN ag_tensor *ag__ctc_loss(const char *loss, ag_tensor *lp, ag_tensor *targets, ag_tensor *input_lengths,
                                  ag_tensor *target_lengths, int64_t blank, bool zero_infinity);

#endif

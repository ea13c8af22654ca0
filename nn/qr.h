/*
 * qr.h - Householder QR for nn.init.orthogonal_.  Private to nn/ (and tests).
 */
#ifndef AGRAD_NN_QR_H
#define AGRAD_NN_QR_H

#include "core/internal.h"

/* Reduced QR of the m x n row-major matrix a (m >= n >= 1) by Householder
 * reflections; a is overwritten.  Writes the m x n factor Q into q (row-major)
 * with column j multiplied by sign(R[j][j]) (0 when R[j][j] is 0), which is what
 * nn.init.orthogonal_ does with torch.linalg.qr: the result is the unique Q of
 * a factorisation whose R has a positive diagonal.  Returns AG_OK or AG_ERR_NOMEM. */
AG_HIDDEN ag_status ag__qr_signed_q(double *a, int64_t m, int64_t n, double *q);

#endif

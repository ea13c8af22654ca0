/*
 * attention.h - attention on a packed projection (ops/attention.c), for nn.MultiheadAttention.
 */
#ifndef AGRAD_OPS_ATTENTION_H
#define AGRAD_OPS_ATTENTION_H

#include "core/internal.h"

/* y = softmax(q·kᵀ/√D)·v for the heads q, k, v [B, H, T, D] of qkv, the packed self-attention
 * projection: [T, B, 3E] (seq_first) or [B, T, 3E] (any strides), its thirds split into H heads of
 * D = E/H; y's heads merged into [T, B, E] (or [B, T, E]), written in place head by head.  The same
 * values as ag_scaled_dot_product_attention on those heads as views (no mask, no dropout), merged;
 * the adjoint writes one gradient of qkv's shape.  NULL on a bad shape or ENOMEM (recorded). */
AG_HIDDEN ag_tensor *ag__sdpa_packed(ag_tensor *qkv, int64_t H, bool seq_first);

#endif

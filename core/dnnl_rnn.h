/*
 * core/dnnl_rnn.h - oneDNN's fused recurrent primitives (vanilla_rnn, lstm and
 * the linear-before-reset gru) for one layer, one or both directions, in
 * float32, forward training and backward, cached per thread like the other
 * primitives (core/dnnl_cache.h).
 *
 * Buffers are the caller's, contiguous, in oneDNN's plain layouts and gate
 * order (nn/rnn_fused.c converts from PyTorch's):
 *   x [T, N, I] (tnc), y [T, N, D·H] (the directions concatenated, forward first),
 *   h, c states [D, N, H] (ldnc with one layer),
 *   weights for the forward [D, I or H, G, H] (ldigo), for the backward
 *   [D, G, H, I or H] (ldgoi), weight gradients [D, I or H, G, H] (ldigo),
 *   bias and its gradient [D, G', H] (ldgo; G' = G + 1 for the GRU: its last
 *   gate is the recurrent bias of the new gate, applied before the reset).
 * Gates: LSTM i, f, c~, o (PyTorch's order); GRU u, r, o (PyTorch's z, r, n).
 * ag__dnnl_transpose does the conversions' transposes as a cached reorder.
 */
#ifndef AGRAD_DNNL_RNN_H
#define AGRAD_DNNL_RNN_H

#include "core/dnnl_cache.h"

/* Cell kinds (ag_rnn_geom.cell). */
enum { AG_DNNL_RNN_TANH, AG_DNNL_RNN_RELU, AG_DNNL_RNN_LSTM, AG_DNNL_RNN_GRU };

/* One layer's sizes: T steps, batch N, input I, hidden H, D = dirs (1: left to
 * right, 2: bidirectional, outputs concatenated). */
typedef struct ag_rnn_geom {
    int cell, dirs;
    int64_t T, N, I, H;
} ag_rnn_geom;

/* Bytes of the workspace the forward leaves for the backward; -1 when oneDNN has no
 * primitive pair (forward training and backward) for g: the caller then uses its own
 * path.  Nothing is recorded either way. */
AG_HIDDEN int64_t ag__dnnl_rnn_workspace(const ag_rnn_geom *g);

/* Forward training: y, hy (and cy for an LSTM) from x, hx (cx), the ldigo weights
 * wl, wi and the bias b; writes the workspace ws (ag__dnnl_rnn_workspace bytes).
 * false (nothing recorded): no primitive or it failed. */
AG_HIDDEN bool ag__dnnl_rnn_fwd(const ag_rnn_geom *g, const float *x, const float *hx, const float *cx,
                                const float *wl, const float *wi, const float *b, float *y, float *hy, float *cy,
                                void *ws);

/* Backward: from the forward's tensors (weights wl, wi now ldgoi) and workspace, and
 * the gradients dy, dhy (dcy) of its outputs, writes dx, dhx (dcx) and ADDS the
 * weight and bias gradients into dwl, dwi (ldigo) and db (zero them first).
 * false (nothing recorded): no primitive or it failed. */
AG_HIDDEN bool ag__dnnl_rnn_bwd(const ag_rnn_geom *g, const float *x, const float *hx, const float *cx,
                                const float *wl, const float *wi, const float *b, const float *y, const float *hy,
                                const float *cy, void *ws, const float *dy, const float *dhy, const float *dcy,
                                float *dx, float *dhx, float *dcx, float *dwl, float *dwi, float *db);

/* dst[j·dst_rs + i] = src[i·src_rs + j] for i < rows, j < cols (float32, no overlap): one
 * gate block of the weights' layout conversions, as a cached oneDNN reorder (its JIT
 * transpose, threaded like the primitives).  false (nothing recorded, nothing written):
 * oneDNN has none; the caller transposes itself. */
AG_HIDDEN bool ag__dnnl_transpose(float *dst, int64_t dst_rs, const float *src, int64_t src_rs, int64_t rows,
                                  int64_t cols);

#endif

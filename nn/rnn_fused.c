/*
 * rnn_fused.c - one recurrent layer (all its directions) as oneDNN's fused
 * primitive (core/dnnl_rnn.h), for float32 layers without lengths.
 *
 * The layer is recorded as one node (a function type per cell: FusedRNN,
 * FusedLSTM, FusedGRU) over x, the initial states and the PyTorch-layout
 * weights, with one output: y, h_n (and c_n) packed into one flat tensor, which
 * the caller views as its parts (so that the node has one differentiable output
 * and backward under create_graph works).  The weights are converted at the
 * boundary, so parameters and state dicts stay PyTorch's:
 *   - gate order: oneDNN's LSTM gates are PyTorch's (i, f, g, o); its GRU gates
 *     are u, r, o where PyTorch's are r, z, n: u = z, o = n;
 *   - weights: PyTorch's [G·H, in] per direction is oneDNN's ldgoi as it is (the
 *     backward's layout); the forward wants ldigo, its transpose;
 *   - bias: oneDNN has one bias per gate, b_ih + b_hh, except the GRU's new gate,
 *     whose recurrent part is applied before the reset (linear_before_reset):
 *     [b_iz + b_hz, b_ir + b_hr, b_in, b_hn].
 * The forward's converted weights are kept by the module per layer
 * (ag__rnn_wcache) while the parameters keep their data and versions.
 *
 * Backward runs oneDNN's backward primitive from the forward's workspace; if the
 * forward primitive failed (the forward then ran the reference path), the adjoint
 * recomputes the layer through the reference path (ag__rnn_layer_reference) on
 * detached copies and differentiates that.  Forward mode (the tangent rule) runs
 * the reference path on the primals carrying their tangents.  Under create_graph
 * the adjoint is recorded as a node of its own (FusedLSTMAdjoint, ...) whose adjoint
 * differentiates the reference path twice on detached copies: second derivatives
 * work, a third is refused.  (Differentiating a recomputation from inside the outer
 * pass, on the inputs themselves, would nest a reverse pass over tensors the outer
 * pass is using; ops/grad.c keeps a pass's marks and gradient slots in the tensors,
 * so that corrupts both: measured, wrong gradients without an error.)
 */
#include <stdlib.h>
#include <string.h>
#include "core/dnnl_rnn.h"
#include "core/parallel.h"
#include "nn/rnn.h"
#include "agrad/autograd.h"
#include "agrad/ops.h"

/* ctx scalars */
enum { S_MODE, S_DIRS, S_BIAS };

/* PyTorch's gate block for oneDNN's gate g (GRU: u = z, r = r, o = n). */
static int pt_gate(int mode, int g) { return mode == AG__RNN_GRU && g < 2 ? 1 - g : g; }
static int dnnl_cell(int mode) {
    return mode == AG__RNN_LSTM ? AG_DNNL_RNN_LSTM : mode == AG__RNN_GRU ? AG_DNNL_RNN_GRU
           : mode == AG__RNN_RELU ? AG_DNNL_RNN_RELU : AG_DNNL_RNN_TANH;
}

/* Input positions: x, h0, (c0), then per direction w_ih, w_hh, (b_ih, b_hh). */
typedef struct layout {
    int mode, dirs, lstm, bias, nw, nin;
    ag__rnn_wcache *cache; /* forward only */
} layout;

static layout layout_of(int mode, int dirs, bool bias) {
    layout l = {mode, dirs, mode == AG__RNN_LSTM, bias, bias ? 4 : 2, 0, NULL};
    l.nin = 2 + l.lstm + dirs * l.nw;
    return l;
}
static int w_at(const layout *l, int d, int k) { return 2 + l->lstm + d * l->nw + k; } /* k: 0 w_ih 1 w_hh 2 b_ih 3 b_hh */

static ag_rnn_geom geom_of(const layout *l, ag_tensor *const *in) {
    return (ag_rnn_geom){dnnl_cell(l->mode), l->dirs, ag_size(in[0], 0), ag_size(in[0], 1), ag_size(in[0], 2),
                         ag_size(in[1], 2)};
}

static const float *fdata(ag_tensor *t) { return ag_data(t); }

#define TILE 16 /* transposes go by TILE x TILE blocks: each block's rows and columns stay in cache */
#define TRANSPOSE_MIN (64 * 64) /* from this many elements through oneDNN (a call costs ~1 µs) */

/* dst[j·dst_rs + i] = src[i·src_rs + j] for i < rows, j < cols: oneDNN's reorder (a [256, 256]
 * block of 1024-float rows 82 µs on one thread, 52 on two), else block by block (155 µs; the
 * element loop read one source row per element: 1.4 ms a step for the four gates of both
 * LSTM weight gradients).  Copies: the same bits either way. */
static void transpose(float *restrict dst, int64_t dst_rs, const float *restrict src, int64_t src_rs, int64_t rows,
                      int64_t cols) {
    if (rows * cols >= TRANSPOSE_MIN && ag__dnnl_transpose(dst, dst_rs, src, src_rs, rows, cols)) return;
    for (int64_t i0 = 0; i0 < rows; i0 += TILE)
        for (int64_t j0 = 0; j0 < cols; j0 += TILE) {
            const int64_t i1 = i0 + TILE < rows ? i0 + TILE : rows, j1 = j0 + TILE < cols ? j0 + TILE : cols;
            for (int64_t j = j0; j < j1; j++)
                for (int64_t i = i0; i < i1; i++) dst[j * dst_rs + i] = src[i * src_rs + j];
        }
}

/* The oneDNN weights of one layer from the PyTorch ones: wl, wi ldigo (ldgo = false)
 * or ldgoi (true; wl NULL: not wanted), and the bias [D, G', H] (zeros without bias). */
static void convert_weights(const layout *l, const ag_rnn_geom *g, ag_tensor *const *in, bool ldgoi, float *wl,
                            float *wi, float *b) {
    const int G = ag__rnn_gates((ag__rnn_mode)l->mode), Gb = l->mode == AG__RNN_GRU ? 4 : G;
    const int64_t H = g->H;
    for (int d = 0; wl && d < l->dirs; d++)
        for (int k = 0; k < 2; k++) {
            const int64_t I = k ? H : g->I;
            const float *w = fdata(in[w_at(l, d, k)]);
            float *o = (k ? wi : wl) + d * I * G * H;
            for (int gg = 0; gg < G; gg++) {
                const float *src = w + pt_gate(l->mode, gg) * H * I;
                if (ldgoi) memcpy(o + gg * H * I, src, (size_t)(H * I) * sizeof *o);
                else transpose(o + gg * H, G * H, src, I, H, I); /* o[(i·G + gg)·H + h] = src[h·I + i] */
            }
        }
    if (!b) return;
    memset(b, 0, (size_t)(l->dirs * Gb * H) * sizeof *b);
    if (!l->bias) return;
    for (int d = 0; d < l->dirs; d++) {
        const float *bi = fdata(in[w_at(l, d, 2)]), *bh = fdata(in[w_at(l, d, 3)]);
        float *o = b + d * Gb * H;
        for (int gg = 0; gg < G; gg++) {
            const int p = pt_gate(l->mode, gg);
            bool split = l->mode == AG__RNN_GRU && gg == 2; /* b_in here, b_hn in the 4th gate */
            for (int64_t h = 0; h < H; h++) {
                o[gg * H + h] = bi[p * H + h] + (split ? 0 : bh[p * H + h]);
                if (split) o[3 * H + h] = bh[p * H + h];
            }
        }
    }
}

/* The reference layer over the tensors in (as the fused node's inputs), packed as its output. */
static ag_tensor *reference_packed(const layout *l, ag_tensor *const *in) {
    ag_tensor *w[8] = {NULL}, *y = NULL, *hn = NULL, *cn = NULL;
    for (int d = 0; d < l->dirs; d++)
        for (int k = 0; k < l->nw; k++) w[4 * d + k] = in[w_at(l, d, k)];
    if (ag__rnn_layer_reference(l->mode, l->dirs, in[0], in[1], l->lstm ? in[2] : NULL, w, &y, &hn, l->lstm ? &cn : NULL))
        return NULL;
    ag_tensor *parts[3] = {ag_flatten(y, 0, -1), ag_flatten(hn, 0, -1), l->lstm ? ag_flatten(cn, 0, -1) : NULL};
    return ag_cat(parts, 2 + l->lstm, 0);
}

/* A block of converted forward weights: n floats, freed by whoever drops the last reference
 * (the cache's, or a forward's that outlived a refill or the module). */
struct ag__rnn_wblock {
    atomic_int refs;
    int64_t n;
    float data[];
};

static void wblock_release(ag__rnn_wblock *b) {
    if (b && atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) == 1) free(b);
}

void ag__rnn_wcache_init(ag__rnn_wcache *c) {
    memset(c, 0, sizeof *c);
    pthread_mutex_init(&c->lock, NULL);
}

void ag__rnn_wcache_free(ag__rnn_wcache *c) {
    wblock_release(c->cur);
    pthread_mutex_destroy(&c->lock);
}

/* The forward weights and bias (n floats: wl, wi, b as convert_weights writes them) for
 * the weights' present data and versions, as a block the caller holds one reference to
 * (wblock_release when done): the cache's own block when it matches, read in place, else
 * a new one converted now, which replaces the cache's.  Caches only contiguous,
 * versioned (not inference) weights.  NULL: out of memory (recorded). */
static ag__rnn_wblock *forward_weights(const layout *l, const ag_rnn_geom *g, ag_tensor *const *in,
                                       ag_tensor *const *in_raw, int64_t n) {
    ag__rnn_wcache *c = l->cache;
    const int first = w_at(l, 0, 0), nsrc = l->nin - first;
    for (int i = first; c && i < l->nin; i++)
        if (in_raw[i]->inference || !ag_is_contiguous(in_raw[i])) c = NULL;
    ag__rnn_wblock *b = NULL;
    if (c) {
        pthread_mutex_lock(&c->lock);
        bool hit = c->cur && c->cur->n == n && c->nsrc == nsrc;
        for (int i = 0; hit && i < nsrc; i++)
            hit = c->src[i] == ag_data(in_raw[first + i]) && c->version[i] == ag__version(in_raw[first + i]);
        if (hit) atomic_fetch_add_explicit(&(b = c->cur)->refs, 1, memory_order_relaxed);
        pthread_mutex_unlock(&c->lock);
        if (b) return b;
    }
    int64_t bytes;
    if (ag__mul_overflow(n, (int64_t)sizeof(float), &bytes) || bytes > AG_MAX_SIZE)
        return ag__fail_null(AG_ERR_NOMEM, "out of memory allocating %lld items of %zu bytes", (long long)n,
                             sizeof(float));
    if (!(b = malloc(sizeof *b + (size_t)bytes))) /* not ag__alloc: the block may end in the module's cache */
        return ag__fail_null(AG_ERR_NOMEM, "out of memory allocating %zu bytes", sizeof *b + (size_t)bytes);
    atomic_init(&b->refs, 1);
    b->n = n;
    const int64_t D = l->dirs, G = ag__rnn_gates((ag__rnn_mode)l->mode);
    float *wl = b->data, *wi = wl + D * G * g->H * g->I;
    convert_weights(l, g, in, false, wl, wi, wi + D * G * g->H * g->H);
    if (c) { /* the cache's reference to the new block; the old one goes when its last user ends */
        atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
        pthread_mutex_lock(&c->lock);
        ag__rnn_wblock *old = c->cur;
        c->cur = b, c->nsrc = nsrc;
        for (int i = 0; i < nsrc; i++)
            c->src[i] = ag_data(in_raw[first + i]), c->version[i] = ag__version(in_raw[first + i]);
        pthread_mutex_unlock(&c->lock);
        wblock_release(old);
    }
    return b;
}

static layout ctx_layout(const ag_ctx *ctx) {
    return layout_of((int)ag_ctx_scalar(ctx, S_MODE), (int)ag_ctx_scalar(ctx, S_DIRS), ag_ctx_scalar(ctx, S_BIAS) != 0);
}

static ag_status fused_forward(ag_ctx *ctx, ag_tensor *const *in_raw, int nin, ag_tensor **out, int nout) {
    (void)nout;
    const layout *cfg = ag_ctx_user(ctx);
    const layout l = *cfg;
    ag_ctx_set_scalar(ctx, S_MODE, l.mode);
    ag_ctx_set_scalar(ctx, S_DIRS, l.dirs);
    ag_ctx_set_scalar(ctx, S_BIAS, l.bias);
    ag_tensor *in[11];
    for (int i = 0; i < nin; i++)
        if (!(in[i] = ag_contiguous(in_raw[i]))) return ag_last_status();
    const ag_rnn_geom g = geom_of(&l, in);
    const int G = ag__rnn_gates((ag__rnn_mode)l.mode), Gb = l.mode == AG__RNN_GRU ? 4 : G;
    const int64_t T = g.T, N = g.N, H = g.H, D = l.dirs, ny = T * N * D * H, ns = D * N * H;
    int64_t ws_bytes = ag__dnnl_rnn_workspace(&g);
    ag_tensor *packed = ag_empty(AG_SHAPE(ny + (1 + l.lstm) * ns), AG_F32);
    ag_tensor *ws = ws_bytes >= 0 ? ag_empty(AG_SHAPE(ws_bytes / 4 + 1), AG_F32) : NULL;
    if (!packed || (ws_bytes >= 0 && !ws)) return ag_last_status();
    ag__rnn_wblock *wb = forward_weights(&l, &g, in, in_raw, D * G * H * (g.I + H) + D * Gb * H);
    if (!wb) return ag_last_status();
    const float *wl = wb->data, *wi = wl + D * G * H * g.I, *b = wi + D * G * H * H;
    float *y = ag_data(packed);
    bool fused = ws && ag__dnnl_rnn_fwd(&g, fdata(in[0]), fdata(in[1]), l.lstm ? fdata(in[2]) : NULL, wl, wi, b, y,
                                        y + ny, l.lstm ? y + ny + ns : NULL, ag_data(ws));
    wblock_release(wb);
    if (!fused && !(packed = reference_packed(&l, in))) return ag_last_status(); /* the primitive failed */
    ag_tensor *saved[13]; /* the inputs, the workspace, the output */
    for (int i = 0; i < nin; i++) saved[i] = in_raw[i];
    saved[nin] = fused ? ws : NULL;
    saved[nin + 1] = packed;
    out[0] = packed;
    return ag_ctx_save_for_backward(ctx, saved, nin + 2);
}

/* First-order gradients by differentiating the reference path at detached copies of
 * the inputs in (the fused node's), seeded with gout: grad_in[i] for the i with needs[i]
 * (NULL where the outputs do not depend on input i). */
static ag_status reference_grads(const layout *l, ag_tensor *const *in_saved, int nin, ag_tensor *gout,
                                 const bool *needs, ag_tensor **grad_in) {
    ag_tensor *in[11], *wrt[11], *grads[11];
    int idx[11], n = 0;
    ag_enable_grad_begin();
    ag_status st = AG_OK;
    for (int i = 0; i < nin && !st; i++) {
        in[i] = ag_detach(in_saved[i]);
        if (!in[i]) st = ag_last_status();
        else if (needs[i]) idx[n] = i, wrt[n++] = ag_requires_grad_(in[i], true);
    }
    ag_tensor *packed = st ? NULL : reference_packed(l, in);
    ag_grad_opts opts = {.allow_unused = true};
    if (!st) st = packed ? ag_autograd_grad(&packed, 1, wrt, n, &gout, &opts, grads) : ag_last_status();
    for (int j = 0; j < n && !st; j++) grad_in[idx[j]] = grads[j];
    ag_enable_grad_end();
    return st;
}

/* First-order gradients by oneDNN's backward primitive from the forward's workspace ws
 * and packed output yout, seeded with gout (the packed output's gradient): grad_in[i]
 * for the i with needs[i].  *ran is false (nothing recorded) when the primitive failed. */
static ag_status primitive_grads(const layout *l, ag_tensor *const *in_saved, int nin, ag_tensor *ws, ag_tensor *yout,
                                 ag_tensor *gout, const bool *needs, ag_tensor **grad_in, bool *ran) {
    ag_tensor *in[11];
    *ran = false;
    for (int i = 0; i < nin; i++)
        if (!(in[i] = ag_contiguous(in_saved[i]))) return ag_last_status();
    const ag_rnn_geom g = geom_of(l, in);
    const int G = ag__rnn_gates((ag__rnn_mode)l->mode), Gb = l->mode == AG__RNN_GRU ? 4 : G;
    const int64_t T = g.T, N = g.N, H = g.H, I = g.I, D = l->dirs, ny = T * N * D * H, ns = D * N * H;
    const int64_t nw = D * G * H * (I + H), nb = D * Gb * H;
    ag_tensor *dx = ag_empty(AG_SHAPE(T, N, I), AG_F32), *dh = ag_empty(AG_SHAPE(D, N, H), AG_F32),
              *dc = l->lstm ? ag_empty(AG_SHAPE(D, N, H), AG_F32) : NULL, *gy_t = ag_contiguous(gout);
    /* One direction of an RNN or LSTM: PyTorch's [G·H, in] weights are the ldgoi ones, read in place. */
    const bool in_place = D == 1 && l->mode != AG__RNN_GRU;
    /* The converted weights (unless read in place), the bias, the gradients oneDNN adds into: a
     * block of the thread's cache, so that a step reuses the last step's pages (a fresh 4 MiB block
     * a step was mapped and its huge pages cleared each time: ~0.5 ms of a 45 ms LSTM step). */
    const int64_t nconv = in_place ? 0 : nw;
    const size_t bytes = (size_t)(nconv + 2 * nb + nw) * sizeof(float);
    float *buf = dx && dh && (!l->lstm || dc) && gy_t ? ag__cache_alloc(bytes) : NULL;
    if (!buf) return ag_last_status();
    float *wl = in_place ? NULL : buf, *wi = in_place ? NULL : wl + D * G * H * I, *b = buf + nconv, *dwl = b + nb,
          *dwi = dwl + D * G * H * I, *db = dwl + nw;
    convert_weights(l, &g, in, true, wl, wi, b);
    const float *bwl = in_place ? fdata(in[w_at(l, 0, 0)]) : wl, *bwi = in_place ? fdata(in[w_at(l, 0, 1)]) : wi;
    memset(dwl, 0, (size_t)(nw + nb) * sizeof *dwl);
    const float *y = fdata(yout), *gy = fdata(gy_t);
    *ran = ag__dnnl_rnn_bwd(&g, fdata(in[0]), fdata(in[1]), l->lstm ? fdata(in[2]) : NULL, bwl, bwi, b, y, y + ny,
                            l->lstm ? y + ny + ns : NULL, ag_data(ws), gy, gy + ny, l->lstm ? gy + ny + ns : NULL,
                            ag_data(dx), ag_data(dh), l->lstm ? ag_data(dc) : NULL, dwl, dwi, db);
    ag_status st = AG_OK;
    if (*ran) {
        grad_in[0] = dx, grad_in[1] = dh;
        if (l->lstm) grad_in[2] = dc;
        for (int d = 0; d < D && !st; d++)
            for (int k = 0; k < l->nw && !st; k++) {
                int at = w_at(l, d, k);
                if (!needs[at]) continue;
                ag_tensor *t = ag_empty(ag_shape_of(in[at]), AG_F32);
                if (!t) {
                    st = ag_last_status();
                    break;
                }
                float *o = ag_data(t);
                const int64_t K = k == 1 ? H : I;
                for (int gg = 0; gg < G; gg++) {
                    const int p = pt_gate(l->mode, gg);
                    if (k < 2) { /* dW[p·H + h, i] = dw_ldigo[d, i, gg, h] */
                        const float *src = (k ? dwi + d * H * G * H : dwl + d * I * G * H);
                        transpose(o + p * H * K, K, src + gg * H, G * H, K, H);
                    } else { /* both biases get the gate's gradient, but the GRU's new gate's are apart */
                        const float *src = db + d * Gb * H + gg * H;
                        if (l->mode == AG__RNN_GRU && gg == 2 && k == 3) src += H;
                        memcpy(o + p * H, src, (size_t)H * sizeof *o);
                    }
                }
                grad_in[at] = t;
            }
    }
    ag__cache_free(buf, bytes);
    return st;
}

/* The first-order gradients, by the primitive when the forward ran it, else (or when it
 * fails) through the reference path. */
static ag_status first_order(const layout *l, ag_tensor *const *in, int nin, ag_tensor *ws, ag_tensor *yout,
                             ag_tensor *gout, const bool *needs, ag_tensor **grad_in) {
    bool ran = false;
    ag_status st = ws && ag_numel(ws) ? primitive_grads(l, in, nin, ws, yout, gout, needs, grad_in, &ran) : AG_OK;
    return st || ran ? st : reference_grads(l, in, nin, gout, needs, grad_in);
}

/* ---- second order: the adjoint as a node of its own -----------------------------------------
 * Under create_graph the fused node's adjoint is recorded as an Adjoint node over the layer's
 * inputs and the output's gradient gout (plus the workspace and output, constants), whose
 * forward is the first-order adjoint above, all gradients packed flat.  Its own adjoint, for
 * a cotangent v of those gradients, differentiates the reference path twice on detached
 * copies of the inputs and gout (a reverse pass over tensors of its own, so no pass is
 * nested over tensors another pass is using): with G(x, gout) the reference gradients
 * recorded with create_graph, it returns d<v, G>/d(x, gout).  A third derivative is refused. */
static ag_status adjoint_forward(ag_ctx *ctx, ag_tensor *const *in, int nin_all, ag_tensor **out, int nout) {
    (void)nout;
    const layout l = *(const layout *)ag_ctx_user(ctx);
    ag_ctx_set_scalar(ctx, S_MODE, l.mode);
    ag_ctx_set_scalar(ctx, S_DIRS, l.dirs);
    ag_ctx_set_scalar(ctx, S_BIAS, l.bias);
    const int nin = nin_all - 3; /* the layer's inputs, gout, ws, yout */
    bool needs[11];
    ag_tensor *g[11] = {NULL}, *flat[11];
    for (int i = 0; i < nin; i++) needs[i] = true;
    ag_status st = first_order(&l, in, nin, in[nin + 1], in[nin + 2], in[nin], needs, g);
    for (int i = 0; i < nin && !st; i++)
        if (!(flat[i] = ag_flatten(g[i] ? g[i] : ag_zeros_like(in[i]), 0, -1))) st = ag_last_status();
    if (!st) st = (out[0] = ag_cat(flat, nin, 0)) ? AG_OK : ag_last_status();
    return st ? st : ag_ctx_save_for_backward(ctx, in, nin + 1);
}

static ag_status adjoint_backward(ag_ctx *ctx, ag_tensor *const *grad_out, int nout, ag_tensor **grad_in, int nin_all) {
    (void)nout;
    if (ag_is_grad_enabled())
        return ag__fail(AG_ERR_GRAPH,
                        "the fused float32 layer (oneDNN) is differentiable twice, not three times; run it with "
                        "ag_set_onednn_enabled(false) or in float64 for higher derivatives");
    const layout l = ctx_layout(ctx);
    const int nin = nin_all - 3;
    ag_tensor *d[12], *gs[11], *flat[11], *h[12];
    ag_enable_grad_begin();
    ag_status st = AG_OK;
    for (int i = 0; i <= nin && !st; i++) /* detached copies of the layer's inputs and of gout */
        if (!(d[i] = ag_requires_grad_(ag_detach(ag_ctx_saved(ctx, i)), true))) st = ag_last_status();
    ag_tensor *packed = st ? NULL : reference_packed(&l, d);
    ag_grad_opts twice = {.create_graph = true, .allow_unused = true}, once = {.allow_unused = true};
    if (!st) st = packed ? ag_autograd_grad(&packed, 1, d, nin, &d[nin], &twice, gs) : ag_last_status();
    for (int i = 0; i < nin && !st; i++)
        if (!(flat[i] = ag_flatten(gs[i] ? gs[i] : ag_zeros_like(d[i]), 0, -1))) st = ag_last_status();
    ag_tensor *all = st ? NULL : ag_cat(flat, nin, 0);
    if (!st) st = all ? ag_autograd_grad(&all, 1, d, nin + 1, grad_out, &once, h) : ag_last_status();
    for (int i = 0; i <= nin && !st; i++)
        if (ag_ctx_needs_input_grad(ctx, i)) grad_in[i] = h[i];
    ag_enable_grad_end();
    return st;
}

static const ag_function_type adjoint_types[4] = {
    {"FusedRNNAdjoint", adjoint_forward, adjoint_backward, NULL},
    {"FusedRNNAdjoint", adjoint_forward, adjoint_backward, NULL},
    {"FusedLSTMAdjoint", adjoint_forward, adjoint_backward, NULL},
    {"FusedGRUAdjoint", adjoint_forward, adjoint_backward, NULL},
};

static ag_status fused_backward(ag_ctx *ctx, ag_tensor *const *grad_out, int nout, ag_tensor **grad_in, int nin) {
    (void)nout;
    const layout l = ctx_layout(ctx);
    ag_tensor *in[11], *ws = ag_ctx_saved(ctx, nin), *yout = ag_ctx_saved(ctx, nin + 1);
    bool needs[11];
    for (int i = 0; i < nin; i++) in[i] = ag_ctx_saved(ctx, i), needs[i] = ag_ctx_needs_input_grad(ctx, i);
    if (!ag_is_grad_enabled()) return first_order(&l, in, nin, ws, yout, grad_out[0], needs, grad_in);
    /* create_graph: the adjoint as a recorded node (above) */
    ag_tensor *ain[14];
    for (int i = 0; i < nin; i++) ain[i] = in[i];
    ain[nin] = grad_out[0];
    ain[nin + 1] = ws ? ws : ag_empty(AG_SHAPE(0), AG_F32);
    ain[nin + 2] = ag_detach(yout);
    if (!ain[nin + 1] || !ain[nin + 2]) return ag_last_status();
    ag_tensor *packed = ag_function_apply1(&adjoint_types[l.mode], ain, nin + 3, (void *)&l);
    if (!packed) return ag_last_status();
    int64_t off = 0;
    for (int i = 0; i < nin; i++) {
        int64_t n = ag_numel(in[i]);
        if (needs[i] && !(grad_in[i] = ag_view(ag_narrow(packed, 0, off, n), ag_shape_of(in[i]))))
            return ag_last_status();
        off += n;
    }
    return AG_OK;
}

/* Forward mode: the tangent of the reference path at the saved inputs carrying theirs. */
static ag_status fused_jvp(ag_ctx *ctx, ag_tensor *const *tangent_in, int nin, ag_tensor **tangent_out, int nout) {
    (void)nout;
    const layout l = ctx_layout(ctx);
    ag_tensor *in[11];
    for (int i = 0; i < nin; i++) { /* the primal with its tangent at the open level */
        in[i] = ag_detach(ag_ctx_saved(ctx, i));
        if (in[i] && tangent_in[i]) in[i] = ag_make_dual(in[i], tangent_in[i]);
        if (!in[i]) return ag_last_status();
    }
    ag_tensor *packed = reference_packed(&l, in);
    if (!packed) return ag_last_status();
    ag_clear_error();
    tangent_out[0] = ag_tangent(packed); /* NULL: no input carries a tangent (zero), or the error */
    return tangent_out[0] ? AG_OK : ag_last_status();
}

static const ag_function_type fused_types[4] = {
    {"FusedRNN", fused_forward, fused_backward, fused_jvp},
    {"FusedRNN", fused_forward, fused_backward, fused_jvp},
    {"FusedLSTM", fused_forward, fused_backward, fused_jvp},
    {"FusedGRU", fused_forward, fused_backward, fused_jvp},
};

bool ag__rnn_fused_fits(ag__rnn_mode mode, int dirs, const ag_tensor *x, int64_t hidden) {
    if (ag_dtype_of(x) != AG_F32 || ag_ndim(x) != 3 || ag__backend == AG_BACKEND_REFERENCE || !ag_onednn_enabled())
        return false;
    ag_rnn_geom g = {dnnl_cell(mode), dirs, ag_size(x, 0), ag_size(x, 1), ag_size(x, 2), hidden};
    /* the packed output (y, h_n, c_n) counts in int64 */
    if (ag__numel_checked(3, (int64_t[]){g.T, g.N, 3 * dirs * hidden}) < 0) return false;
    return ag__dnnl_rnn_workspace(&g) >= 0; /* oneDNN has the primitives (none for an empty dim) */
}

ag_status ag__rnn_layer_fused(ag__rnn_mode mode, int dirs, ag_tensor *x, ag_tensor *h0, ag_tensor *c0,
                              ag_tensor *const *w, ag__rnn_wcache *cache, ag_tensor **y, ag_tensor **h_n,
                              ag_tensor **c_n) {
    layout l = layout_of(mode, dirs, w[2] != NULL);
    l.cache = cache;
    ag_tensor *in[11] = {x, h0};
    if (l.lstm) in[2] = c0;
    for (int d = 0; d < dirs; d++)
        for (int k = 0; k < l.nw; k++) in[w_at(&l, d, k)] = w[4 * d + k];
    ag_tensor *packed = ag_function_apply1(&fused_types[mode], in, l.nin, &l);
    if (!packed) return ag_last_status();
    const int64_t T = ag_size(x, 0), B = ag_size(x, 1), H = ag_size(h0, 2), ny = T * B * dirs * H, ns = dirs * B * H;
    *y = ag_view(ag_narrow(packed, 0, 0, ny), AG_SHAPE(T, B, dirs * H));
    *h_n = ag_view(ag_narrow(packed, 0, ny, ns), AG_SHAPE(dirs, B, H));
    if (c_n) *c_n = ag_view(ag_narrow(packed, 0, ny + ns, ns), AG_SHAPE(dirs, B, H));
    return *y && *h_n && (!c_n || *c_n) ? AG_OK : ag_last_status();
}

/*
 * rnn.h - the recurrence shared by the cells (nn/rnn_cell.c) and the layers
 * (nn/rnn.c): one time step of an Elman RNN, an LSTM or a GRU, with PyTorch's
 * gate order and equations.  Private to nn/.
 */
#ifndef AGRAD_NN_RNN_H
#define AGRAD_NN_RNN_H

#include <pthread.h>
#include "core/internal.h"
#include "agrad/nn.h"

typedef enum ag__rnn_mode { AG__RNN_TANH, AG__RNN_RELU, AG__RNN_LSTM, AG__RNN_GRU } ag__rnn_mode;

/* Gates per hidden unit: 1 (RNN), 4 (LSTM: i, f, g, o), 3 (GRU: r, z, n). */
AG_HIDDEN int ag__rnn_gates(ag__rnn_mode mode);
/* The module name: "RNN", "LSTM", "GRU", or with cell "RNNCell", ... */
AG_HIDDEN const char *ag__rnn_name(ag__rnn_mode mode, bool cell);
/* One step from gi = x·W_ihᵀ + b_ih [B, G·H] and the state h [B, H] (c [B, H] for
 * an LSTM): returns h' and, for an LSTM, writes c' to *c_out.  b_hh may be NULL.
 * Results are owned by the innermost scope; NULL with the op's error. */
AG_HIDDEN ag_tensor *ag__rnn_step(ag__rnn_mode mode, ag_tensor *gi, ag_tensor *h, ag_tensor *c, ag_tensor *w_hh,
                                  ag_tensor *b_hh, ag_tensor **c_out);
/* Parameters of a cell or a layer: uniform(-1/√hidden, 1/√hidden) as PyTorch's
 * reset_parameters, float32, registered under name; AG_OK or the error. */
AG_HIDDEN ag_status ag__rnn_add_parameter(ag_module *m, const char *name, int64_t rows, int64_t cols,
                                          int64_t hidden_size);

/* One direction of one layer over x [T, B, in] from h (and c) with the weights w =
 * {w_ih, w_hh, b_ih, b_hh} (biases NULL when absent), reversed when reverse: writes
 * the outputs [T, B, H] to *out and the final states to *h_n, *c_n (c_n NULL but for
 * an LSTM).  keep[t] / drop[t] are the bool masks [B, 1] of the sequences still
 * running / ended at step t (NULL: all run): an ended sequence keeps its state and
 * outputs zeros.  steps and gi: room for T tensors each.  AG_OK or the op's status. */
AG_HIDDEN ag_status ag__rnn_direction(ag__rnn_mode mode, ag_tensor *const w[4], bool reverse, ag_tensor *x,
                                      ag_tensor *h, ag_tensor *c, ag_tensor *const *keep, ag_tensor *const *drop,
                                      ag_tensor **steps, ag_tensor **gi, ag_tensor **out, ag_tensor **h_n,
                                      ag_tensor **c_n);
/* One layer of `dirs` directions (2: the second reversed, outputs concatenated on the
 * last dim) over x [T, B, in] from h0 [dirs, B, H] (and c0 for an LSTM) with the
 * weights w[4·d ..] = {w_ih, w_hh, b_ih, b_hh} of direction d (biases NULL when
 * absent), composed of differentiable ops (any float dtype): *y [T, B, dirs·H],
 * *h_n, *c_n [dirs, B, H] (c_n only for an LSTM), owned by the innermost scope.
 * AG_OK or the failing op's status. */
AG_HIDDEN ag_status ag__rnn_layer_reference(ag__rnn_mode mode, int dirs, ag_tensor *x, ag_tensor *h0, ag_tensor *c0,
                                          ag_tensor *const *w, ag_tensor **y, ag_tensor **h_n, ag_tensor **c_n);
/* The converted forward weights of one fused layer, kept by the module (nn/rnn.c) while
 * its parameters keep their data and versions, so that a loop of forwards with fixed
 * weights (evaluation, generation) converts them once.  The block is reference counted
 * (nn/rnn_fused.c): a forward reads it in place while holding a reference, so a refill
 * by another thread, or the module's end, never frees it under the primitive.  The lock
 * serialises the lookup and refill between threads reading one module. */
typedef struct ag__rnn_wblock ag__rnn_wblock;
typedef struct ag__rnn_wcache {
    pthread_mutex_t lock;
    const void *src[8];   /* the weights' data, in the fused node's input order */
    uint32_t version[8];
    int nsrc;
    ag__rnn_wblock *cur;  /* ldigo weights then the bias (plain malloc: the module's); NULL: none */
} ag__rnn_wcache;
AG_HIDDEN void ag__rnn_wcache_init(ag__rnn_wcache *c);
AG_HIDDEN void ag__rnn_wcache_free(ag__rnn_wcache *c);

/* Whether ag__rnn_layer_fused can run this layer: float32 x [T, B, in] with no
 * empty dim, oneDNN enabled and providing the primitives. */
AG_HIDDEN bool ag__rnn_fused_fits(ag__rnn_mode mode, int dirs, const ag_tensor *x, int64_t hidden);
/* ag__rnn_layer_reference's results through oneDNN's fused primitive (nn/rnn_fused.c),
 * recorded as one node whose adjoint is the primitive's backward; cache (or NULL) keeps
 * the converted forward weights between calls. */
AG_HIDDEN ag_status ag__rnn_layer_fused(ag__rnn_mode mode, int dirs, ag_tensor *x, ag_tensor *h0, ag_tensor *c0,
                                      ag_tensor *const *w, ag__rnn_wcache *cache, ag_tensor **y, ag_tensor **h_n,
                                      ag_tensor **c_n);

#endif

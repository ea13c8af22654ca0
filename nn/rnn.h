/*
 * rnn.h - the recurrence shared by the cells (nn/rnn_cell.c) and the layers
 * (nn/rnn.c): one time step of an Elman RNN, an LSTM or a GRU, with PyTorch's
 * gate order and equations.  Private to nn/.
 */
#ifndef AGRAD_NN_RNN_H
#define AGRAD_NN_RNN_H

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

#endif

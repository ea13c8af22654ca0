/*
 * rnn_cell.c - one time step of a recurrent network: the step shared with the
 * layers of nn/rnn.c, and the modules nn.RNNCell, nn.LSTMCell and nn.GRUCell
 * with PyTorch's parameter names (weight_ih, weight_hh, bias_ih, bias_hh),
 * gate order, initialisation and repr.  Everything is composed of
 * differentiable ops, so it runs in float32 and float64 and gradchecks.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "nn/module.h"
#include "nn/rnn.h"
#include "agrad/ops.h"

int ag__rnn_gates(ag__rnn_mode mode) { return mode == AG__RNN_LSTM ? 4 : mode == AG__RNN_GRU ? 3 : 1; }

const char *ag__rnn_name(ag__rnn_mode mode, bool cell) {
    static const char *const names[2][4] = {{"RNN", "RNN", "LSTM", "GRU"}, {"RNNCell", "RNNCell", "LSTMCell", "GRUCell"}};
    return names[cell][mode];
}

ag_tensor *ag__rnn_step(ag__rnn_mode mode, ag_tensor *gi, ag_tensor *h, ag_tensor *c, ag_tensor *w_hh, ag_tensor *b_hh,
                        ag_tensor **c_out) {
    ag_tensor *gh = ag_linear(h, w_hh, b_hh);
    if (!gh) return NULL;
    int64_t hidden = ag_size(h, 1);
    switch (mode) {
    case AG__RNN_TANH: /* h' = tanh(gi + gh) */
        return ag_tanh(ag_add(gi, gh));
    case AG__RNN_RELU: /* h' = relu(gi + gh) */
        return ag_relu(ag_add(gi, gh));
    case AG__RNN_LSTM: {
        /* [i, f, o] = σ(...) over the gates 0, 1, 3; g = tanh(gate 2);
         * c' = f·c + i·g;  h' = o·tanh(c') */
        ag_tensor *g = ag_add(gi, gh);
        ag_tensor *ifo = ag_sigmoid(ag_cat((ag_tensor *[]){ag_narrow(g, 1, 0, 2 * hidden), ag_narrow(g, 1, 3 * hidden, hidden)}, 2, 1));
        ag_tensor *cell = ag_tanh(ag_narrow(g, 1, 2 * hidden, hidden));
        if (!ifo || !cell) return NULL;
        ag_tensor *c2 = ag_add(ag_mul(ag_narrow(ifo, 1, hidden, hidden), c), ag_mul(ag_narrow(ifo, 1, 0, hidden), cell));
        *c_out = c2;
        return ag_mul(ag_narrow(ifo, 1, 2 * hidden, hidden), ag_tanh(c2));
    }
    case AG__RNN_GRU: {
        /* [r, z] = σ(gi[:2H] + gh[:2H]);  n = tanh(gi[2H:] + r·gh[2H:]);
         * h' = (1 - z)·n + z·h = n + z·(h - n) */
        ag_tensor *rz = ag_sigmoid(ag_add(ag_narrow(gi, 1, 0, 2 * hidden), ag_narrow(gh, 1, 0, 2 * hidden)));
        if (!rz) return NULL;
        ag_tensor *n = ag_tanh(ag_add(ag_narrow(gi, 1, 2 * hidden, hidden),
                                      ag_mul(ag_narrow(rz, 1, 0, hidden), ag_narrow(gh, 1, 2 * hidden, hidden))));
        return ag_add(n, ag_mul(ag_narrow(rz, 1, hidden, hidden), ag_sub(h, n)));
    }
    }
    return NULL;
}

ag_status ag__rnn_add_parameter(ag_module *m, const char *name, int64_t rows, int64_t cols, int64_t hidden_size) {
    double bound = hidden_size > 0 ? 1.0 / sqrt((double)hidden_size) : 0;
    ag_tensor *t = cols < 0 ? ag_empty(AG_SHAPE(rows), AG_F32) : ag_empty(AG_SHAPE(rows, cols), AG_F32);
    t = ag_uniform_(t, -bound, bound);
    return t ? ag_module_register_parameter(m, name, t) : ag_last_status();
}

/* ---- the cell modules ------------------------------------------------------------------------ */
typedef struct rnn_cell {
    ag__rnn_mode mode;
    int64_t input_size, hidden_size;
    bool bias;
} rnn_cell;

static ag_tensor *cell_forward(ag_module *m, ag_tensor *x) { return ag_rnn_cell_forward(m, x, NULL, NULL, NULL); }

/* PyTorch's RNNCellBase.extra_repr: "in, hidden", bias=False and a non-tanh nonlinearity when set. */
static void cell_describe(const ag_module *m, char *buf, size_t size) {
    const rnn_cell *r = ag_module_data(m);
    snprintf(buf, size, "%lld, %lld%s%s", (long long)r->input_size, (long long)r->hidden_size,
             r->bias ? "" : ", bias=False", r->mode == AG__RNN_RELU ? ", nonlinearity=relu" : "");
}

static const ag_module_type cell_types[4] = {
    {"RNNCell", cell_forward, cell_describe, NULL},
    {"RNNCell", cell_forward, cell_describe, NULL},
    {"LSTMCell", cell_forward, cell_describe, NULL},
    {"GRUCell", cell_forward, cell_describe, NULL},
};

static bool is_cell(const ag_module_type *type) {
    for (int i = 0; i < 4; i++)
        if (type == &cell_types[i]) return true;
    return false;
}

static ag_module *new_cell(ag__rnn_mode mode, int64_t input_size, int64_t hidden_size, bool bias) {
    const char *name = ag__rnn_name(mode, true);
    int64_t gates = ag__rnn_gates(mode);
    if (input_size < 0 || hidden_size < 0 || input_size > AG_MAX_SIZE / 8 || hidden_size > AG_MAX_SIZE / 8 ||
        ag__numel_checked(2, (int64_t[]){gates * hidden_size, input_size > hidden_size ? input_size : hidden_size}) < 0)
        return ag__fail_null(AG_ERR_ARG, "nn.%s: input_size=%lld and hidden_size=%lld must be non-negative sizes", name,
                             (long long)input_size, (long long)hidden_size);
    rnn_cell *r = ag__alloc(sizeof *r);
    if (!r) return NULL;
    *r = (rnn_cell){mode, input_size, hidden_size, bias};
    ag_module *m = ag_module_new(&cell_types[mode], r);
    if (!m || ag_scope_begin()) {
        ag_module_free(m);
        return NULL;
    }
    ag_status st = ag__rnn_add_parameter(m, "weight_ih", gates * hidden_size, input_size, hidden_size);
    if (!st) st = ag__rnn_add_parameter(m, "weight_hh", gates * hidden_size, hidden_size, hidden_size);
    if (!st && bias) st = ag__rnn_add_parameter(m, "bias_ih", gates * hidden_size, -1, hidden_size);
    if (!st && bias) st = ag__rnn_add_parameter(m, "bias_hh", gates * hidden_size, -1, hidden_size);
    ag_scope_end();
    if (st) {
        ag_module_free(m);
        return NULL;
    }
    return m;
}

ag_module *ag_nn_rnn_cell(int64_t input_size, int64_t hidden_size, bool bias, const char *nonlinearity) {
    if (nonlinearity && strcmp(nonlinearity, "tanh") && strcmp(nonlinearity, "relu"))
        return ag__fail_null(AG_ERR_ARG, "nn.RNNCell: unknown nonlinearity '%s' (tanh or relu)", nonlinearity);
    return new_cell(nonlinearity && !strcmp(nonlinearity, "relu") ? AG__RNN_RELU : AG__RNN_TANH, input_size,
                    hidden_size, bias);
}
ag_module *ag_nn_lstm_cell(int64_t input_size, int64_t hidden_size, bool bias) {
    return new_cell(AG__RNN_LSTM, input_size, hidden_size, bias);
}
ag_module *ag_nn_gru_cell(int64_t input_size, int64_t hidden_size, bool bias) {
    return new_cell(AG__RNN_GRU, input_size, hidden_size, bias);
}

/* AG_OK when state is NULL or has the shape [batch, hidden] (or [hidden] when !batched). */
static ag_status check_state(const char *name, const char *what, const ag_tensor *state, bool batched, int64_t batch,
                             int64_t hidden) {
    if (!state) return AG_OK;
    int64_t want[2] = {batch, hidden};
    ag_shape s = ag_shape_of(state);
    bool same = s.ndim == (batched ? 2 : 1) && s.dim[s.ndim - 1] == hidden && (!batched || s.dim[0] == batch);
    if (same) return AG_OK;
    char got_s[AG_SHAPE_STR], want_s[AG_SHAPE_STR];
    return ag__fail(AG_ERR_SHAPE, "%s: %s has shape %s, expected %s", name, what, ag__shape_str(got_s, s.ndim, s.dim),
                    ag__shape_str(want_s, batched ? 2 : 1, batched ? want : want + 1));
}

ag_tensor *ag_rnn_cell_forward(ag_module *cell, ag_tensor *x, ag_tensor *h, ag_tensor *c, ag_tensor **c_out) {
    AG_CHECK_HANDLES(NULL, "rnn_cell_forward", x, h, c);
    if (c_out) *c_out = NULL;
    const ag_module_type *type = ag__module_type(cell);
    if (!cell || !is_cell(type))
        return ag__fail_null(AG_ERR_ARG, "rnn_cell_forward: the module is %s, not an RNNCell, LSTMCell or GRUCell",
                             cell ? ag_module_type_name(cell) : "NULL");
    if (!x) return NULL;
    const rnn_cell *r = ag_module_data(cell);
    const char *name = ag__rnn_name(r->mode, true);
    if (c && r->mode != AG__RNN_LSTM)
        return ag__fail_null(AG_ERR_ARG, "%s: a cell state was given, which only an LSTMCell has", name);
    int nd = ag_ndim(x);
    if (nd != 1 && nd != 2)
        return ag__fail_null(AG_ERR_SHAPE, "%s: expected input to be 1-D or 2-D but received %d-D tensor", name, nd);
    if (ag_size(x, -1) != r->input_size)
        return ag__fail_null(AG_ERR_SHAPE, "%s: input has inconsistent input_size: got %lld expected %lld", name,
                             (long long)ag_size(x, -1), (long long)r->input_size);
    bool batched = nd == 2;
    int64_t batch = batched ? ag_size(x, 0) : 1;
    if (check_state(name, "the hidden state", h, batched, batch, r->hidden_size) ||
        check_state(name, "the cell state", c, batched, batch, r->hidden_size))
        return NULL;
    if (ag__composite_begin("rnn_cell_forward")) return NULL;
    ag_tensor *x2 = batched ? x : ag_unsqueeze(x, 0);
    ag_dtype dt = ag_dtype_of(x);
    ag_tensor *h2 = h ? (batched ? h : ag_unsqueeze(h, 0)) : ag_zeros(AG_SHAPE(batch, r->hidden_size), dt);
    ag_tensor *c2 = NULL, *c_new = NULL;
    if (r->mode == AG__RNN_LSTM) c2 = c ? (batched ? c : ag_unsqueeze(c, 0)) : ag_zeros(AG_SHAPE(batch, r->hidden_size), dt);
    ag_tensor *gi = ag_linear(x2, ag_module_get_parameter(cell, "weight_ih"), ag_module_get_parameter(cell, "bias_ih"));
    ag_tensor *h_new = gi ? ag__rnn_step(r->mode, gi, h2, c2, ag_module_get_parameter(cell, "weight_hh"),
                                         ag_module_get_parameter(cell, "bias_hh"), &c_new)
                          : NULL;
    if (!batched) {
        h_new = ag_squeeze(h_new, 0);
        c_new = ag_squeeze(c_new, 0);
    }
    if (h_new && c_out && c_new) *c_out = ag_keep(c_new); /* leaves the composite's scope with h' */
    return ag__composite_end(h_new);
}

/*
 * rnn.c - the recurrent layers nn.RNN, nn.LSTM and nn.GRU: num_layers stacked
 * layers, each one or two directions, dropout between layers, initial and
 * final states, and padded batches with per-sequence lengths giving PyTorch's
 * results for packed sequences.  Parameters, their names (weight_ih_l0,
 * weight_hh_l0, bias_ih_l0, bias_hh_l0, ..._reverse), initialisation and repr
 * are PyTorch's.
 *
 * The reference path composes differentiable ops: per layer and direction one
 * product x·W_ihᵀ + b_ih over the whole sequence, then per time step the cell
 * step of nn/rnn_cell.c.  A float32 layer without lengths runs as one oneDNN
 * primitive instead (nn/rnn_fused.c) when oneDNN provides it.  With lengths, a step past a sequence's end keeps its
 * state (where(t < length, h', h)) and outputs zeros, so the forward direction
 * ends at each sequence's last step and the reverse one starts there, as a
 * packed sequence does.
 */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "nn/module.h"
#include "nn/repr.h"
#include "nn/rnn.h"
#include "agrad/autograd.h"
#include "agrad/ops.h"

typedef struct rnn_layer {
    ag__rnn_mode mode;
    int64_t input_size, hidden_size;
    int num_layers;
    bool bias, batch_first, bidirectional;
    double dropout;
    ag__rnn_wcache *cache; /* [num_layers]: the fused path's converted weights */
} rnn_layer;

static void layer_destroy(void *data) {
    rnn_layer *r = data;
    for (int l = 0; r->cache && l < r->num_layers; l++) ag__rnn_wcache_free(&r->cache[l]);
    ag__free(r->cache);
    ag__free(r);
}

static ag_tensor *layer_forward(ag_module *m, ag_tensor *x) {
    ag_tensor *y = NULL;
    return ag_rnn_forward(m, x, NULL, NULL, NULL, &y, NULL, NULL) ? NULL : y;
}

/* PyTorch's RNNBase.extra_repr: the options that differ from their defaults. */
static void layer_describe(const ag_module *m, char *buf, size_t size) {
    const rnn_layer *r = ag_module_data(m);
    char layers[48] = "", p[40], dropout[64] = "";
    if (r->num_layers != 1) snprintf(layers, sizeof layers, ", num_layers=%d", r->num_layers);
    if (r->dropout != 0) snprintf(dropout, sizeof dropout, ", dropout=%s", ag__py_float(p, sizeof p, r->dropout));
    snprintf(buf, size, "%lld, %lld%s%s%s%s%s", (long long)r->input_size, (long long)r->hidden_size, layers,
             r->bias ? "" : ", bias=False", r->batch_first ? ", batch_first=True" : "", dropout,
             r->bidirectional ? ", bidirectional=True" : "");
}

static const ag_module_type layer_types[4] = {
    {"RNN", layer_forward, layer_describe, layer_destroy},
    {"RNN", layer_forward, layer_describe, layer_destroy},
    {"LSTM", layer_forward, layer_describe, layer_destroy},
    {"GRU", layer_forward, layer_describe, layer_destroy},
};

static bool is_layer(const ag_module_type *type) {
    for (int i = 0; i < 4; i++)
        if (type == &layer_types[i]) return true;
    return false;
}

static ag_module *new_layer(ag__rnn_mode mode, int64_t input_size, int64_t hidden_size, int num_layers, bool bias,
                            bool batch_first, double dropout, bool bidirectional) {
    const char *name = ag__rnn_name(mode, false);
    if (!(dropout >= 0 && dropout <= 1))
        return ag__fail_null(AG_ERR_ARG, "nn.%s: dropout should be a number in range [0, 1], got %g", name, dropout);
    if (hidden_size <= 0 || input_size < 0 || num_layers <= 0)
        return ag__fail_null(AG_ERR_ARG,
                             "nn.%s: hidden_size=%lld and num_layers=%d must be greater than zero, input_size=%lld not negative",
                             name, (long long)hidden_size, num_layers, (long long)input_size);
    int64_t dirs = bidirectional ? 2 : 1, gates = ag__rnn_gates(mode), widest = input_size > dirs * hidden_size ? input_size : dirs * hidden_size;
    if (hidden_size > AG_MAX_SIZE / 8 || input_size > AG_MAX_SIZE / 8 || num_layers > 1 << 20 ||
        ag__numel_checked(3, (int64_t[]){gates * hidden_size, widest, 2 * num_layers}) < 0)
        return ag__fail_null(AG_ERR_ARG, "nn.%s: input_size=%lld, hidden_size=%lld, num_layers=%d are too large", name,
                             (long long)input_size, (long long)hidden_size, num_layers);
    rnn_layer *r = ag__alloc(sizeof *r);
    if (!r) return NULL;
    *r = (rnn_layer){mode, input_size, hidden_size, num_layers, bias, batch_first, bidirectional, dropout, NULL};
    if (!(r->cache = ag__alloc_n(num_layers, sizeof *r->cache))) {
        ag__free(r);
        return NULL;
    }
    for (int l = 0; l < num_layers; l++) ag__rnn_wcache_init(&r->cache[l]);
    ag_module *m = ag_module_new(&layer_types[mode], r);
    if (!m || ag_scope_begin()) {
        ag_module_free(m);
        return NULL;
    }
    ag_status st = AG_OK;
    for (int l = 0; l < num_layers && !st; l++)
        for (int d = 0; d < dirs && !st; d++) {
            const char *sfx = d ? "_reverse" : "";
            char n[64];
            int64_t in = l == 0 ? input_size : dirs * hidden_size;
            snprintf(n, sizeof n, "weight_ih_l%d%s", l, sfx);
            st = ag__rnn_add_parameter(m, n, gates * hidden_size, in, hidden_size);
            snprintf(n, sizeof n, "weight_hh_l%d%s", l, sfx);
            if (!st) st = ag__rnn_add_parameter(m, n, gates * hidden_size, hidden_size, hidden_size);
            snprintf(n, sizeof n, "bias_ih_l%d%s", l, sfx);
            if (!st && bias) st = ag__rnn_add_parameter(m, n, gates * hidden_size, -1, hidden_size);
            snprintf(n, sizeof n, "bias_hh_l%d%s", l, sfx);
            if (!st && bias) st = ag__rnn_add_parameter(m, n, gates * hidden_size, -1, hidden_size);
        }
    ag_scope_end();
    if (st) {
        ag_module_free(m);
        return NULL;
    }
    return m;
}

ag_module *ag_nn_rnn(int64_t input_size, int64_t hidden_size, int num_layers, const char *nonlinearity, bool bias,
                     bool batch_first, double dropout, bool bidirectional) {
    if (nonlinearity && strcmp(nonlinearity, "tanh") && strcmp(nonlinearity, "relu"))
        return ag__fail_null(AG_ERR_ARG, "nn.RNN: unknown nonlinearity '%s' (tanh or relu)", nonlinearity);
    return new_layer(nonlinearity && !strcmp(nonlinearity, "relu") ? AG__RNN_RELU : AG__RNN_TANH, input_size,
                     hidden_size, num_layers, bias, batch_first, dropout, bidirectional);
}
ag_module *ag_nn_lstm(int64_t input_size, int64_t hidden_size, int num_layers, bool bias, bool batch_first,
                      double dropout, bool bidirectional) {
    return new_layer(AG__RNN_LSTM, input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional);
}
ag_module *ag_nn_gru(int64_t input_size, int64_t hidden_size, int num_layers, bool bias, bool batch_first,
                     double dropout, bool bidirectional) {
    return new_layer(AG__RNN_GRU, input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional);
}

/* ---- forward ------------------------------------------------------------------------------ */
/* The parameter "<kind>_l<layer><_reverse>" (NULL when absent: no bias). */
static ag_tensor *param(ag_module *m, const char *kind, int layer, int dir) {
    char n[64];
    snprintf(n, sizeof n, "%s_l%d%s", kind, layer, dir ? "_reverse" : "");
    return ag_module_get_parameter(m, n);
}

/* AG_OK when state is NULL or has the shape [layers·dirs, batch, hidden] ([layers·dirs, hidden] unbatched). */
static ag_status check_state(const char *name, const char *what, const ag_tensor *state, bool batched,
                             const int64_t want[3]) {
    if (!state) return AG_OK;
    ag_shape s = ag_shape_of(state);
    int nd = batched ? 3 : 2;
    bool same = s.ndim == nd && s.dim[0] == want[0] && s.dim[nd - 1] == want[2] && (!batched || s.dim[1] == want[1]);
    if (same) return AG_OK;
    int64_t w2[2] = {want[0], want[2]};
    char got_s[AG_SHAPE_STR], want_s[AG_SHAPE_STR];
    return ag__fail(AG_ERR_SHAPE, "%s: %s has shape %s, expected %s", name, what, ag__shape_str(got_s, s.ndim, s.dim),
                    ag__shape_str(want_s, nd, batched ? want : w2));
}

/* Makes keep[t] = (t < length) and drop[t] = its negation as bool [B, 1] tensors for every t. */
static ag_status make_masks(const char *name, const int64_t *lengths, int64_t T, int64_t B, ag_tensor **keep,
                            ag_tensor **drop) {
    for (int64_t b = 0; b < B; b++)
        if (lengths[b] < 0 || lengths[b] > T)
            return ag__fail(AG_ERR_VALUE, "%s: lengths[%lld] = %lld is outside [0, %lld] (the input's sequence length)",
                            name, (long long)b, (long long)lengths[b], (long long)T);
    ag_tensor *k = ag_empty(AG_SHAPE(T, B, 1), AG_BOOL), *d = ag_empty(AG_SHAPE(T, B, 1), AG_BOOL);
    if (!k || !d) return ag_last_status();
    bool *kp = ag_data(k), *dp = ag_data(d);
    for (int64_t t = 0; t < T; t++)
        for (int64_t b = 0; b < B; b++) {
            kp[t * B + b] = t < lengths[b];
            dp[t * B + b] = !kp[t * B + b];
        }
    for (int64_t t = 0; t < T; t++)
        if (!(keep[t] = ag_select(k, 0, t)) || !(drop[t] = ag_select(d, 0, t))) return ag_last_status();
    return AG_OK;
}

/* The body of ag_rnn_forward inside its scope; results are left in that scope. */
static ag_status layers_forward(ag_module *m, const rnn_layer *r, ag_tensor *x, ag_tensor *hx, ag_tensor *cx,
                                const int64_t *lengths, ag_tensor **output, ag_tensor **h_n, ag_tensor **c_n) {
    const char *name = ag__rnn_name(r->mode, false);
    bool batched = ag_ndim(x) == 3, lstm = r->mode == AG__RNN_LSTM;
    /* to [T, B, in], and states to [layers·dirs, B, H] */
    if (!batched) x = ag_unsqueeze(x, 1), hx = hx ? ag_unsqueeze(hx, 1) : NULL, cx = cx ? ag_unsqueeze(cx, 1) : NULL;
    else if (r->batch_first) x = ag_transpose(x, 0, 1);
    if (!x) return ag_last_status();
    int64_t T = ag_size(x, 0), B = ag_size(x, 1), H = r->hidden_size;
    int dirs = r->bidirectional ? 2 : 1, L = r->num_layers;
    ag_dtype dt = ag_dtype_of(x);
    if (!hx) hx = ag_zeros(AG_SHAPE(L * dirs, B, H), dt);
    if (lstm && !cx) cx = ag_zeros(AG_SHAPE(L * dirs, B, H), dt);
    if (!hx || (lstm && !cx)) return ag_last_status();
    ag_tensor **buf = ag__alloc_n(4 * T + 2 * L * dirs + 1, sizeof *buf);
    if (!buf) return ag_last_status();
    ag_tensor **steps = buf, **keep = buf + T, **drop = buf + 2 * T, **gi = buf + 3 * T, **hs = buf + 4 * T,
              **cs = hs + L * dirs;
    ag_status st = AG_OK;
    bool masked = false;
    for (int64_t b = 0; lengths && b < B; b++) masked |= lengths[b] != T;
    if (lengths) st = make_masks(name, lengths, T, B, keep, drop);
    ag_tensor *input = x;
    for (int l = 0; l < L && !st; l++) {
        ag_tensor *outs[2] = {NULL, NULL}, *w[8] = {NULL};
        for (int d = 0; d < dirs; d++) {
            w[4 * d] = param(m, "weight_ih", l, d), w[4 * d + 1] = param(m, "weight_hh", l, d);
            w[4 * d + 2] = param(m, "bias_ih", l, d), w[4 * d + 3] = param(m, "bias_hh", l, d);
        }
        if (!masked && ag__rnn_fused_fits(r->mode, dirs, input, H)) {
            /* the layer's directions as one oneDNN primitive (nn/rnn_fused.c) */
            ag_tensor *hl = ag_narrow(hx, 0, l * dirs, dirs), *cl = lstm ? ag_narrow(cx, 0, l * dirs, dirs) : NULL;
            ag_tensor *hn_l = NULL, *cn_l = NULL;
            st = ag__rnn_layer_fused(r->mode, dirs, input, hl, cl, w, &r->cache[l], &input, &hn_l, lstm ? &cn_l : NULL);
            for (int d = 0; d < dirs && !st; d++) {
                hs[l * dirs + d] = ag_select(hn_l, 0, d);
                if (lstm) cs[l * dirs + d] = ag_select(cn_l, 0, d);
            }
        } else {
            for (int d = 0; d < dirs && !st; d++) {
                int k = l * dirs + d;
                st = ag__rnn_direction(r->mode, w + 4 * d, d == 1, input, ag_select(hx, 0, k),
                                   lstm ? ag_select(cx, 0, k) : NULL, masked ? keep : NULL, masked ? drop : NULL, steps,
                                   gi, &outs[d], &hs[k], lstm ? &cs[k] : NULL);
            }
            if (!st) input = dirs == 2 ? ag_cat(outs, 2, 2) : outs[0];
        }
        if (st) break;
        if (l < L - 1 && r->dropout > 0) input = ag_dropout(input, r->dropout, ag_module_is_training(m));
        if (!input) st = ag_last_status();
    }
    if (!st) {
        ag_tensor *y = input, *hn = ag_stack(hs, L * dirs, 0), *cn = lstm ? ag_stack(cs, L * dirs, 0) : NULL;
        if (!batched) y = ag_squeeze(y, 1), hn = ag_squeeze(hn, 1), cn = lstm ? ag_squeeze(cn, 1) : NULL;
        else if (r->batch_first) y = ag_transpose(y, 0, 1);
        if (!y || !hn || (lstm && !cn)) st = ag_last_status();
        *output = y;
        *h_n = hn;
        *c_n = cn;
    }
    ag__free(buf);
    return st;
}

ag_status ag_rnn_forward(ag_module *m, ag_tensor *x, ag_tensor *h0, ag_tensor *c0, const int64_t *lengths,
                         ag_tensor **output, ag_tensor **h_n, ag_tensor **c_n) {
    AG_CHECK_HANDLES(AG_ERR_ARG, "rnn_forward", x, h0, c0);
    if (output) *output = NULL;
    if (h_n) *h_n = NULL;
    if (c_n) *c_n = NULL;
    const ag_module_type *type = ag__module_type(m);
    if (!m || !is_layer(type))
        return ag__fail(AG_ERR_ARG, "rnn_forward: the module is %s, not an RNN, LSTM or GRU",
                        m ? ag_module_type_name(m) : "NULL");
    if (!x) return ag__fail(AG_ERR_ARG, "rnn_forward: the input is NULL");
    const rnn_layer *r = ag_module_data(m);
    const char *name = ag__rnn_name(r->mode, false);
    bool lstm = r->mode == AG__RNN_LSTM;
    if (c0 && !lstm) return ag__fail(AG_ERR_ARG, "%s: a cell state c0 was given, which only an LSTM has", name);
    if (c_n && !lstm) return ag__fail(AG_ERR_ARG, "%s: c_n was asked for, which only an LSTM has", name);
    int nd = ag_ndim(x);
    if (nd != 2 && nd != 3)
        return ag__fail(AG_ERR_SHAPE, "%s: expected input to be 2-D or 3-D but received %d-D tensor", name, nd);
    if (ag_size(x, -1) != r->input_size)
        return ag__fail(AG_ERR_SHAPE, "%s: input.size(-1) must be equal to input_size. Expected %lld, got %lld", name,
                        (long long)r->input_size, (long long)ag_size(x, -1));
    bool batched = nd == 3;
    int64_t T = ag_size(x, batched && r->batch_first ? 1 : 0), B = batched ? ag_size(x, r->batch_first ? 0 : 1) : 1;
    if (T == 0) return ag__fail(AG_ERR_SHAPE, "%s: the input has no time step (sequence length 0)", name);
    if (T > INT_MAX / 4) /* the steps are joined by ag_stack, which counts in int */
        return ag__fail(AG_ERR_SHAPE, "%s: a sequence of %lld steps is longer than the %d supported", name, (long long)T,
                        INT_MAX / 4);
    int64_t want[3] = {(int64_t)r->num_layers * (r->bidirectional ? 2 : 1), B, r->hidden_size};
    if (check_state(name, "h0", h0, batched, want) || check_state(name, "c0", c0, batched, want)) return ag_last_status();
    if (ag_scope_begin()) return ag_last_status();
    ag_tensor *y = NULL, *hn = NULL, *cn = NULL;
    ag_status st = layers_forward(m, r, x, h0, c0, lengths, &y, &hn, &cn);
    if (!st) { /* out of this function's scope into the caller's */
        if (output) *output = ag_keep(y);
        if (h_n) *h_n = ag_keep(hn);
        if (c_n) *c_n = ag_keep(cn);
    }
    ag_scope_end();
    return st;
}

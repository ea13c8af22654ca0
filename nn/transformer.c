/*
 * transformer.c - nn.TransformerEncoderLayer and nn.TransformerEncoder as PyTorch 1.13
 * builds them (children, parameter names, print text), with the helpers a Transformer
 * needs: the causal mask (Transformer.generate_square_subsequent_mask) and sinusoidal
 * positional encodings.
 *
 * One layer, post-norm (norm_first false) and pre-norm:
 *     x = norm1(x + sa(x)),  x = norm2(x + ff(x))      or
 *     x = x + sa(norm1(x)),  x = x + ff(norm2(x))
 * with sa(x) = dropout1(self_attn(x, x, x)) and ff(x) = dropout2(linear2(dropout(act(linear1(x))))).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "agrad/nn.h"
#include "agrad/ops.h"
#include "nn/internal.h"
#include "nn/module.h"

typedef struct encoder_layer {
    int64_t d_model, nhead, dim_feedforward;
    double dropout, layer_norm_eps;
    bool gelu, batch_first, norm_first;
} encoder_layer;

static ag_tensor *child(ag_module *m, const char *name, ag_tensor *x) {
    return ag_module_forward(ag_module_get_child(m, name), x);
}

/* sa(x) = dropout1(self_attn(x, x, x, masks)) */
static ag_tensor *sa_block(ag_module *m, ag_tensor *x, ag_tensor *mask, ag_tensor *kpm, bool is_causal) {
    ag_tensor *y = NULL;
    if (ag__mha_forward(ag_module_get_child(m, "self_attn"), x, x, x, kpm, mask,
                        &(ag_mha_opts){.need_weights = false, .is_causal = is_causal}, &y, NULL))
        return NULL;
    return child(m, "dropout1", y);
}

/* ff(x) = dropout2(linear2(dropout(act(linear1(x))))) */
static ag_tensor *ff_block(ag_module *m, const encoder_layer *e, ag_tensor *x) {
    ag_tensor *h = NULL; /* relu(linear1(x)) as one op where it can be (ag__nn_linear_relu) */
    if (e->gelu || !ag__nn_linear_relu(ag_module_get_child(m, "linear1"), x, &h)) {
        h = child(m, "linear1", x);
        h = e->gelu ? ag_gelu(h) : ag_relu(h);
    }
    return child(m, "dropout2", child(m, "linear2", child(m, "dropout", h)));
}

static bool is_encoder_layer(const ag_module *m);

/* The inputs of a layer's or the encoder's forward_n: src, src_mask, src_key_padding_mask. */
static ag_status check_inputs(const char *name, int n_in, ag_tensor *const *in, bool is_causal, int n_out) {
    if (n_in > 3 || n_out > 1)
        return ag__fail(AG_ERR_ARG, "%s: takes src, src_mask, src_key_padding_mask and gives one output; got %d inputs "
                                    "and %d outputs", name, n_in, n_out);
    if (!in[0]) return ag__fail(AG_ERR_ARG, "%s: src is NULL", name);
    if (n_in > 1 && in[1] && is_causal)
        return ag__fail(AG_ERR_VALUE, "%s: is_causal and src_mask exclude each other; give one", name);
    return AG_OK;
}

/* One layer's forward, in the caller's scope. */
static ag_tensor *layer_body(ag_module *m, ag_tensor *x, ag_tensor *mask, ag_tensor *kpm, bool is_causal) {
    const encoder_layer *e = ag_module_data(m);
    if (e->norm_first) {
        x = ag_add(x, sa_block(m, child(m, "norm1", x), mask, kpm, is_causal));
        return ag_add(x, ff_block(m, e, child(m, "norm2", x)));
    }
    x = child(m, "norm1", ag_add(x, sa_block(m, x, mask, kpm, is_causal)));
    return child(m, "norm2", ag_add(x, ff_block(m, e, x)));
}

/* forward_n: (src, src_mask, src_key_padding_mask) -> (output,); opts: ag_transformer_opts */
static ag_status layer_forward_n(ag_module *m, int n_in, ag_tensor *const *in, const void *opts, int n_out,
                                 ag_tensor **out) {
    bool is_causal = opts && ((const ag_transformer_opts *)opts)->is_causal;
    if (check_inputs("TransformerEncoderLayer", n_in, in, is_causal, n_out)) return ag_last_status();
    ag_tensor *mask = n_in > 1 ? in[1] : NULL, *kpm = n_in > 2 ? in[2] : NULL;
    out[0] = layer_body(m, in[0], mask, kpm, is_causal);
    return out[0] ? AG_OK : ag_last_status();
}

static ag_tensor *layer_forward(ag_module *m, ag_tensor *x) { return layer_body(m, x, NULL, NULL, false); }

static const ag_module_type encoder_layer_type = {"TransformerEncoderLayer", layer_forward, NULL, NULL};

static bool is_encoder_layer(const ag_module *m) { return m && ag__module_type(m) == &encoder_layer_type; }

/* Adds child under name; frees nothing else on failure (m frees its children). */
static ag_status add(ag_module *m, const char *name, ag_module *c) {
    return c ? ag_module_add_child(m, name, c) : ag_last_status();
}

static ag_module *new_encoder_layer(const encoder_layer *cfg) {
    encoder_layer *e = ag__alloc(sizeof *e);
    if (!e) return NULL;
    *e = *cfg;
    ag_module *m = ag_module_new(&encoder_layer_type, e);
    if (!m) return NULL;
    ag_module_set_forward_n(m, layer_forward_n);
    ag_shape norm = AG_SHAPE(cfg->d_model);
    ag_status st = add(m, "self_attn", ag_nn_multihead_attention(cfg->d_model, cfg->nhead, cfg->dropout, true, 0, 0,
                                                                 cfg->batch_first));
    if (!st) st = add(m, "linear1", ag_nn_linear(cfg->d_model, cfg->dim_feedforward, true));
    if (!st) st = add(m, "dropout", ag_nn_dropout(cfg->dropout));
    if (!st) st = add(m, "linear2", ag_nn_linear(cfg->dim_feedforward, cfg->d_model, true));
    if (!st) st = add(m, "norm1", ag_nn_layer_norm(norm, cfg->layer_norm_eps, true));
    if (!st) st = add(m, "norm2", ag_nn_layer_norm(norm, cfg->layer_norm_eps, true));
    if (!st) st = add(m, "dropout1", ag_nn_dropout(cfg->dropout));
    if (!st) st = add(m, "dropout2", ag_nn_dropout(cfg->dropout));
    if (st) {
        ag_module_free(m);
        return NULL;
    }
    return m;
}

ag_module *ag_nn_transformer_encoder_layer(int64_t d_model, int64_t nhead, int64_t dim_feedforward, double dropout,
                                           const char *activation, double layer_norm_eps, bool batch_first,
                                           bool norm_first) {
    if (activation && strcmp(activation, "relu") && strcmp(activation, "gelu"))
        return ag__fail_null(AG_ERR_ARG, "nn.TransformerEncoderLayer: activation should be relu/gelu, not %s", activation);
    if (dim_feedforward < 0 || dim_feedforward > AG_MAX_SIZE / 4)
        return ag__fail_null(AG_ERR_ARG, "nn.TransformerEncoderLayer: dim_feedforward=%lld is negative or too large",
                             (long long)dim_feedforward);
    if (!(layer_norm_eps >= 0))
        return ag__fail_null(AG_ERR_ARG, "nn.TransformerEncoderLayer: layer_norm_eps=%g is negative", layer_norm_eps);
    encoder_layer cfg = {d_model, nhead, dim_feedforward, dropout, layer_norm_eps,
                         activation && !strcmp(activation, "gelu"), batch_first, norm_first};
    return new_encoder_layer(&cfg);
}

/* A deep copy of the encoder layer proto (copy.deepcopy): the same configuration, dtype,
 * values and mode. */
static ag_module *clone_layer(const ag_module *proto) {
    ag_module *c = new_encoder_layer(ag_module_data(proto));
    ag_tensor *w = ag_module_parameter(proto, 0, NULL, 0);
    ag_state_dict *sd = c ? ag_state_dict_new() : NULL;
    ag_status st = !c || !sd ? ag_last_status() : ag_module_to_dtype(c, ag_dtype_of(w));
    if (!st) st = ag_module_state_dict(proto, sd);
    if (!st) st = ag_module_load_state_dict(c, sd, true);
    ag_state_dict_free(sd);
    if (st) {
        ag_module_free(c);
        return NULL;
    }
    ag_module_train(c, ag_module_is_training(proto));
    return c;
}

/* ---- TransformerEncoder -------------------------------------------------------------------- */
static ag_tensor *encoder_body(ag_module *m, ag_tensor *x, ag_tensor *mask, ag_tensor *kpm, bool is_causal) {
    ag_module *layers = ag_module_get_child(m, "layers"), *norm = ag_module_get_child(m, "norm");
    for (int i = 0; x && i < ag_module_num_children(layers); i++) {
        ag_module *l = ag_module_child(layers, i, NULL);
        if (ag_scope_begin()) return NULL;
        x = ag_keep(layer_body(l, x, mask, kpm, is_causal)); /* each layer's intermediates go with its scope */
        ag_scope_end();
    }
    return norm ? ag_module_forward(norm, x) : x;
}

static ag_status encoder_forward_n(ag_module *m, int n_in, ag_tensor *const *in, const void *opts, int n_out,
                                   ag_tensor **out) {
    bool is_causal = opts && ((const ag_transformer_opts *)opts)->is_causal;
    if (check_inputs("TransformerEncoder", n_in, in, is_causal, n_out)) return ag_last_status();
    ag_tensor *mask = n_in > 1 ? in[1] : NULL, *kpm = n_in > 2 ? in[2] : NULL;
    out[0] = encoder_body(m, in[0], mask, kpm, is_causal);
    return out[0] ? AG_OK : ag_last_status();
}

static ag_tensor *encoder_forward(ag_module *m, ag_tensor *x) {
    ag_tensor *y = encoder_body(m, x, NULL, NULL, false);
    return y == x ? ag_retain(x) : y;
}

static const ag_module_type encoder_type = {"TransformerEncoder", encoder_forward, NULL, NULL};

ag_module *ag_nn_transformer_encoder(ag_module *encoder_layer, int num_layers, ag_module *norm) {
    if (!encoder_layer) { /* its constructor failed and said why */
        if (norm && !ag__module_parent(norm)) ag_module_free(norm);
        return NULL;
    }
    const char *why = !is_encoder_layer(encoder_layer) ? "encoder_layer is not a TransformerEncoderLayer"
                      : ag__module_parent(encoder_layer) ? "encoder_layer is a child of another module"
                      : num_layers < 1 ? "num_layers must be at least 1"
                      : norm && ag__module_parent(norm) ? "norm is a child of another module"
                                                        : NULL;
    if (why) {
        if (!ag__module_parent(encoder_layer)) ag_module_free(encoder_layer);
        if (norm && !ag__module_parent(norm)) ag_module_free(norm);
        return ag__fail_null(AG_ERR_ARG, "nn.TransformerEncoder: %s (num_layers=%d)", why, num_layers);
    }
    ag_module *m = ag_module_new(&encoder_type, NULL);
    if (!m) {
        ag_module_free(encoder_layer);
        ag_module_free(norm);
        return NULL;
    }
    ag_module_set_forward_n(m, encoder_forward_n);
    /* layer 0 is encoder_layer itself, the others its deep copies */
    ag_module *layers = ag_nn_module_list(1, &encoder_layer);
    ag_status st = add(m, "layers", layers);
    for (int i = 1; i < num_layers && !st; i++) {
        ag_module *c = clone_layer(encoder_layer);
        st = c ? ag_nn_module_list_append(layers, c) : ag_last_status();
    }
    if (norm && !st) st = add(m, "norm", norm);
    else if (norm) ag_module_free(norm);
    if (st) {
        ag_module_free(m);
        return NULL;
    }
    return m;
}

/* ---- helpers ------------------------------------------------------------------------------- */
ag_tensor *ag_generate_square_subsequent_mask(int64_t sz, ag_dtype dtype) { return ag__causal_mask(sz, sz, dtype); }

/* PE[p, 2i] = sin(p·ω_i), PE[p, 2i+1] = cos(p·ω_i), ω_i = 10000^(-2i/d_model) */
ag_tensor *ag_sinusoidal_positional_encoding(int64_t max_len, int64_t d_model, ag_dtype dtype) {
    if (dtype != AG_F32 && dtype != AG_F64)
        return ag__fail_null(AG_ERR_DTYPE, "sinusoidal_positional_encoding: dtype %s is not floating",
                             ag_dtype_name(dtype));
    if (max_len < 0 || d_model < 0 || ag__numel_checked(2, (int64_t[]){max_len, d_model}) < 0)
        return ag__fail_null(AG_ERR_ARG, "sinusoidal_positional_encoding: max_len=%lld, d_model=%lld are negative or too large",
                             (long long)max_len, (long long)d_model);
    ag_tensor *pe = ag_empty(AG_SHAPE(max_len, d_model), dtype);
    if (!pe) return NULL;
    for (int64_t p = 0; p < max_len; p++)
        for (int64_t j = 0; j < d_model; j++) {
            double w = exp(-(double)(j - j % 2) * log(10000.0) / (double)d_model), v = j % 2 ? cos((double)p * w) : sin((double)p * w);
            if (dtype == AG_F32) ((float *)ag_data(pe))[p * d_model + j] = (float)v;
            else ((double *)ag_data(pe))[p * d_model + j] = v;
        }
    return pe;
}

/*
 * attention.c - nn.MultiheadAttention: queries, keys and values projected, split into
 * heads, attended with ag_scaled_dot_product_attention and projected back:
 *     y = concat_h(softmax(q_h·k_hᵀ/√D + mask)·v_h)·W_oᵀ + b_o,  q_h = (query·W_qᵀ + b_q) head h
 * with PyTorch 1.13's parameter names, initialisation and masks (bool masks: true = masked
 * out; float masks: added to the scores).  When the weights are asked for, the scores are
 * built from matmul and softmax instead, so that the weights returned are the ones used
 * (after dropout, as PyTorch's).  add_bias_kv appends the learned bias_k, bias_v as one
 * more key and value (after the projections), add_zero_attn one of zeros per head; the
 * masks are padded so that every query attends to them.  Self-attention on the packed projection
 * with no mask, no dropout and no extra keys runs as one op of the projection (ag__sdpa_packed,
 * ops/attention.c): the heads' gradients written into one buffer, the output merged in place.
 */
#include <math.h>
#include <stdio.h>
#include "agrad/autograd.h"
#include "agrad/nn.h"
#include "agrad/ops.h"
#include "nn/internal.h"
#include "nn/module.h"
#include "ops/attention.h"

typedef struct mha {
    int64_t embed_dim, num_heads, kdim, vdim;
    double dropout;
    bool bias, batch_first, same_dim; /* same_dim: kdim = vdim = embed_dim, one packed in_proj_weight */
    bool bias_kv, zero_attn;          /* add_bias_kv, add_zero_attn: extra key/value slots after the keys */
} mha;

/* The additive form of a mask: a float mask of dtype dt as it is, a bool one as 0 (kept) or
 * -inf (true: masked out).  Not recorded (masks are constants). */
static ag_tensor *additive(ag_tensor *mask, ag_dtype dt) {
    if (ag_dtype_of(mask) != AG_BOOL) return mask;
    return ag_masked_fill(ag_zeros(ag_shape_of(mask), dt), mask, -INFINITY);
}

/* acc + t, where acc may be NULL (none yet). */
static ag_tensor *add_mask(ag_tensor *acc, ag_tensor *t) { return !t ? acc : acc ? ag_add(acc, t) : t; }

ag_tensor *ag__causal_mask(int64_t L, int64_t S, ag_dtype dtype) {
    if (dtype != AG_BOOL && dtype != AG_F32 && dtype != AG_F64)
        return ag__fail_null(AG_ERR_DTYPE, "generate_square_subsequent_mask: dtype %s is neither floating nor bool",
                             ag_dtype_name(dtype));
    if (L < 0 || S < 0)
        return ag__fail_null(AG_ERR_ARG, "generate_square_subsequent_mask: negative size %lld",
                             (long long)(L < 0 ? L : S));
    ag_tensor *m = ag_empty(AG_SHAPE(L, S), dtype);
    if (!m) return NULL;
    for (int64_t i = 0; i < L; i++)
        for (int64_t j = 0; j < S; j++) { /* key j after query i is masked */
            int64_t at = i * S + j;
            if (dtype == AG_BOOL) ((bool *)ag_data(m))[at] = j > i;
            else if (dtype == AG_F32) ((float *)ag_data(m))[at] = j > i ? -INFINITY : 0.0f;
            else ((double *)ag_data(m))[at] = j > i ? -INFINITY : 0.0;
        }
    return m;
}

/* Checks a mask's dtype (bool, or the queries' floating dtype dt) and shape against want
 * (ndim sizes), naming it; alt, when not NULL, is a second accepted shape of alt_ndim sizes. */
static ag_status check_mask(const char *what, const ag_tensor *m, ag_dtype dt, int ndim, const int64_t *want,
                            int alt_ndim, const int64_t *alt) {
    char s[AG_SHAPE_STR];
    if (ag_dtype_of(m) != AG_BOOL && ag_dtype_of(m) != dt)
        return ag__fail(AG_ERR_DTYPE, "MultiheadAttention: %s is %s; only bool and the queries' %s are supported", what,
                        ag_dtype_name(ag_dtype_of(m)), ag_dtype_name(dt));
    for (int pass = 0; pass < 2; pass++) {
        int nd = pass ? alt_ndim : ndim;
        const int64_t *w = pass ? alt : want;
        if (!w || ag_ndim(m) != nd) continue;
        bool same = true;
        for (int d = 0; d < nd; d++) same &= ag_size(m, d) == w[d];
        if (same) return AG_OK;
    }
    char w[AG_SHAPE_STR], w2[AG_SHAPE_STR];
    ag__shape_str(w, ndim, want);
    if (alt)
        return ag__fail(AG_ERR_SHAPE, "MultiheadAttention: the shape of %s is %s, but should be %s or %s", what,
                        ag__tshape(s, m), w, ag__shape_str(w2, alt_ndim, alt));
    return ag__fail(AG_ERR_SHAPE, "MultiheadAttention: the shape of %s is %s, but should be %s", what, ag__tshape(s, m), w);
}

/* t with n zero columns appended to its last dim (an additive mask: the extra keys attended). */
static ag_tensor *pad_keys(ag_tensor *t, int64_t n) {
    if (!t || !n) return t;
    ag_shape s = ag_shape_of(t);
    s.dim[s.ndim - 1] = n;
    return ag_cat((ag_tensor *[]){t, ag_zeros(s, ag_dtype_of(t))}, 2, s.ndim - 1);
}

/* t [T, B, F] (sequence first), [B, T, F] (batch first) or [T, F] (unbatched) as [B, T, F]:
 * a view. */
static ag_tensor *batch_major(const mha *a, ag_tensor *t, bool batched) {
    return !batched ? ag_unsqueeze(t, 0) : a->batch_first ? t : ag_transpose(t, 0, 1);
}

/* [B, T, E] -> [B, H, T, E/H] */
static ag_tensor *heads(ag_tensor *x, int64_t H) {
    int64_t B = ag_size(x, 0), T = ag_size(x, 1), E = ag_size(x, 2);
    return ag_transpose(ag_reshape(x, AG_SHAPE(B, T, H, E / H)), 1, 2);
}

/* The queries, keys and values projected and split into heads [B, H, T, E/H], views of the
 * projections made on the inputs as they lie (a sequence-first input is not copied into batch
 * order: the projection is the same per row).  Self-attention with the packed in_proj_weight
 * is one product x·W_inᵀ + b_in [.., 3E], the heads read through strides from it: one GEMM and
 * one weight gradient instead of three, and the three heads' gradients added into one buffer
 * (seen as [.., 3, H, D], in the projection's own order, so that its adjoint takes that buffer
 * as it is: split before any transpose to batch order) in place.  Otherwise one linear per
 * projection, with add_bias_kv's bias_k, bias_v appended after them. */
static ag_status project(ag_module *m, const mha *a, ag_tensor *query, ag_tensor *key, ag_tensor *value, bool batched,
                         ag_tensor **q, ag_tensor **k, ag_tensor **v, ag_tensor **packed) {
    const int64_t E = a->embed_dim, H = a->num_heads;
    ag_tensor *ib = ag_module_get_parameter(m, "in_proj_bias");
    if (a->same_dim && query == key && key == value && !a->bias_kv) {
        ag_tensor *qkv = ag_linear(query, ag_module_get_parameter(m, "in_proj_weight"), ib);
        if (qkv && !batched) qkv = ag_unsqueeze(qkv, 0); /* [1, T, 3E], batch first */
        if (!qkv) return ag_last_status();
        *packed = qkv;
        /* [T, B, 3E] or [B, T, 3E] -> [T, B, 3, H, D] or [B, T, 3, H, D] (a view: the last dim split),
         * each third -> [B, H, T, D] */
        ag_tensor *split = ag_reshape(qkv, AG_SHAPE(ag_size(qkv, 0), ag_size(qkv, 1), 3, H, E / H));
        const bool seq_first = batched && !a->batch_first;
        const int perm[4] = {seq_first ? 1 : 0, 2, seq_first ? 0 : 1, 3};
        *q = ag_permute(ag_select(split, 2, 0), perm), *k = ag_permute(ag_select(split, 2, 1), perm);
        *v = ag_permute(ag_select(split, 2, 2), perm);
        return *q && *k && *v ? AG_OK : ag_last_status();
    }
    ag_tensor *w[3], *b[3] = {NULL, NULL, NULL};
    static const char *const sep[3] = {"q_proj_weight", "k_proj_weight", "v_proj_weight"};
    for (int i = 0; i < 3; i++) {
        w[i] = a->same_dim ? ag_narrow(ag_module_get_parameter(m, "in_proj_weight"), 0, i * E, E)
                           : ag_module_get_parameter(m, sep[i]);
        if (ib) b[i] = ag_narrow(ib, 0, i * E, E);
    }
    ag_tensor *qp = batch_major(a, ag_linear(query, w[0], b[0]), batched);
    ag_tensor *kp = batch_major(a, ag_linear(key, w[1], b[1]), batched);
    ag_tensor *vp = batch_major(a, ag_linear(value, w[2], b[2]), batched);
    if (a->bias_kv && kp && vp) { /* add_bias_kv: keys and values [B, S + 1, E], bias_k and bias_v last */
        const int64_t B = ag_size(kp, 0);
        kp = ag_cat((ag_tensor *[]){kp, ag_expand(ag_module_get_parameter(m, "bias_k"), AG_SHAPE(B, 1, E))}, 2, 1);
        vp = ag_cat((ag_tensor *[]){vp, ag_expand(ag_module_get_parameter(m, "bias_v"), AG_SHAPE(B, 1, E))}, 2, 1);
    }
    *q = heads(qp, H), *k = heads(kp, H), *v = heads(vp, H);
    return *q && *k && *v ? AG_OK : ag_last_status();
}

/* The body of ag__mha_forward inside its scope; results are left in that scope. */
static ag_status mha_body(ag_module *m, const mha *a, ag_tensor *query, ag_tensor *key, ag_tensor *value,
                          ag_tensor *kpm, ag_tensor *attn_mask, bool need_weights, bool average, bool is_causal,
                          ag_tensor **out, ag_tensor **weights) {
    bool batched = ag_ndim(query) == 3;
    int64_t E = a->embed_dim, H = a->num_heads;
    ag_dtype dt = ag_dtype_of(query);
    const int bdim = !batched || a->batch_first ? 0 : 1, tdim = batched ? 1 - bdim : 0;
    int64_t B = batched ? ag_size(query, bdim) : 1, L = ag_size(query, tdim), S = ag_size(key, tdim);
    if (!batched) kpm = kpm ? ag_unsqueeze(kpm, 0) : NULL;
    ag_tensor *q = NULL, *k = NULL, *v = NULL, *qkv = NULL;
    if (project(m, a, query, key, value, batched, &q, &k, &v, &qkv)) return ag_last_status();
    if (a->zero_attn && k && v) { /* add_zero_attn: one more key and value of zeros per head */
        ag_tensor *z = ag_zeros(AG_SHAPE(B, H, 1, E / H), dt);
        k = ag_cat((ag_tensor *[]){k, z}, 2, 2), v = ag_cat((ag_tensor *[]){v, z}, 2, 2);
    }
    if (!q || !k || !v) return ag_last_status();
    /* One additive mask broadcasting to [B, H, L, S + extra], or none; the extra slots are
     * attended by every query (PyTorch pads the masks with zeros / false). */
    int64_t extra = a->bias_kv + a->zero_attn;
    bool was = ag_set_grad_enabled(false);
    ag_tensor *mask = NULL;
    if (attn_mask)
        mask = pad_keys(additive(ag_ndim(attn_mask) == 3 ? ag_reshape(attn_mask, AG_SHAPE(B, H, L, S)) : attn_mask, dt),
                        extra);
    if (kpm) mask = add_mask(mask, pad_keys(additive(ag_reshape(kpm, AG_SHAPE(B, 1, 1, S)), dt), extra));
    bool causal_op = is_causal && !mask && !need_weights && !extra; /* the op masks without a mask tensor */
    if (is_causal && !causal_op) mask = add_mask(mask, pad_keys(ag__causal_mask(L, S, dt), extra));
    ag_set_grad_enabled(was);
    if ((attn_mask || kpm || (is_causal && !causal_op)) && !mask) return ag_last_status();
    double p = ag_module_is_training(m) ? a->dropout : 0;
    ag_tensor *o, *probs = NULL;
    bool merged = false; /* o already in the query's layout */
    if (need_weights) { /* P = dropout(softmax(q·kᵀ/√D + mask)), o = P·v */
        ag_tensor *scores = ag_mul_scalar(ag_matmul(q, ag_transpose(k, 2, 3)), 1 / sqrt((double)(E / H)));
        probs = ag_softmax(mask ? ag_add(scores, mask) : scores, -1);
        if (p > 0) probs = ag_dropout(probs, p, true);
        o = ag_matmul(probs, v);
    } else if (qkv && !extra && !mask && p == 0 && !is_causal) {
        /* one op of the packed projection: its heads' gradients written into one, its output merged */
        o = ag__sdpa_packed(qkv, a->num_heads, batched && !a->batch_first);
        merged = true;
    } else
        o = ag_scaled_dot_product_attention(q, k, v, mask, p, causal_op);
    /* [B, H, L, D] -> the query's layout ([L, B, E], [B, L, E] or [L, E]; one copy) -> out_proj */
    const int seq_first[4] = {2, 0, 1, 3}, batch_first[4] = {0, 2, 1, 3};
    if (!merged) o = ag_permute(o, batched && !a->batch_first ? seq_first : batch_first);
    if (!merged || !batched)
        o = ag_reshape(o, batched ? (a->batch_first ? AG_SHAPE(B, L, E) : AG_SHAPE(L, B, E)) : AG_SHAPE(L, E));
    o = ag_module_forward(ag_module_get_child(m, "out_proj"), o);
    if (!o) return ag_last_status();
    *out = o;
    if (need_weights) {
        if (average) probs = ag_mean_dim(probs, 1, false);
        if (!batched) probs = ag_squeeze(probs, 0);
        if (!probs) return ag_last_status();
        *weights = probs;
    }
    return AG_OK;
}

ag_status ag__mha_forward(ag_module *m, ag_tensor *query, ag_tensor *key, ag_tensor *value, ag_tensor *key_padding_mask,
                          ag_tensor *attn_mask, const ag_mha_opts *o, ag_tensor **out, ag_tensor **weights) {
    static const ag_mha_opts defaults = AG_MHA_DEFAULTS;
    if (!o) o = &defaults;
    *out = NULL;
    if (weights) *weights = NULL;
    if (!query) return ag__fail(AG_ERR_ARG, "MultiheadAttention: the query is NULL");
    if (!key) key = query;
    if (!value) value = key;
    const mha *a = ag_module_data(m);
    char s1[AG_SHAPE_STR], s2[AG_SHAPE_STR], s3[AG_SHAPE_STR];
    int nd = ag_ndim(query);
    if ((nd != 2 && nd != 3) || ag_ndim(key) != nd || ag_ndim(value) != nd)
        return ag__fail(AG_ERR_SHAPE,
                        "MultiheadAttention: query, key and value should be all 3-D (batched) or all 2-D (unbatched), "
                        "got %s, %s and %s",
                        ag__tshape(s1, query), ag__tshape(s2, key), ag__tshape(s3, value));
    bool batched = nd == 3;
    int bdim = a->batch_first ? 0 : 1, tdim = batched ? 1 - bdim : 0;
    if (ag_size(query, -1) != a->embed_dim || ag_size(key, -1) != a->kdim || ag_size(value, -1) != a->vdim)
        return ag__fail(AG_ERR_SHAPE,
                        "MultiheadAttention: query %s, key %s, value %s do not end in embed_dim %lld, kdim %lld, vdim %lld",
                        ag__tshape(s1, query), ag__tshape(s2, key), ag__tshape(s3, value), (long long)a->embed_dim,
                        (long long)a->kdim, (long long)a->vdim);
    if ((batched && (ag_size(key, bdim) != ag_size(query, bdim) || ag_size(value, bdim) != ag_size(query, bdim))) ||
        ag_size(key, tdim) != ag_size(value, tdim))
        return ag__fail(AG_ERR_SHAPE,
                        "MultiheadAttention: query %s, key %s and value %s disagree in batch size or source length%s",
                        ag__tshape(s1, query), ag__tshape(s2, key), ag__tshape(s3, value),
                        a->batch_first ? " (batch_first)" : "");
    ag_dtype dt = ag_dtype_of(ag_module_get_parameter(ag_module_get_child(m, "out_proj"), "weight"));
    if (ag_dtype_of(query) != dt || ag_dtype_of(key) != dt || ag_dtype_of(value) != dt)
        return ag__fail(AG_ERR_DTYPE, "MultiheadAttention: query, key and value are %s, %s and %s, the parameters %s",
                        ag_dtype_name(ag_dtype_of(query)), ag_dtype_name(ag_dtype_of(key)),
                        ag_dtype_name(ag_dtype_of(value)), ag_dtype_name(dt));
    int64_t B = batched ? ag_size(query, bdim) : 1, L = ag_size(query, tdim), S = ag_size(key, tdim);
    if (key_padding_mask &&
        check_mask("key_padding_mask", key_padding_mask, dt, batched ? 2 : 1, batched ? (int64_t[]){B, S} : (int64_t[]){S},
                   0, NULL))
        return ag_last_status();
    if (attn_mask && check_mask("attn_mask", attn_mask, dt, 2, (int64_t[]){L, S}, 3,
                                (int64_t[]){B * a->num_heads, L, S}))
        return ag_last_status();
    if (o->is_causal && attn_mask)
        return ag__fail(AG_ERR_VALUE, "MultiheadAttention: is_causal and attn_mask exclude each other; give one");
    if (ag_scope_begin()) return ag_last_status();
    ag_tensor *y = NULL, *wts = NULL;
    ag_status st = mha_body(m, a, query, key, value, key_padding_mask, attn_mask, o->need_weights && weights,
                            o->average_attn_weights, o->is_causal, &y, &wts);
    if (!st) { /* out of this function's scope into the caller's */
        *out = ag_keep(y);
        if (weights && wts) *weights = ag_keep(wts);
    }
    ag_scope_end();
    return st;
}

/* forward_n: (query, key, value, key_padding_mask, attn_mask) -> (output, weights) */
static ag_status mha_forward_n(ag_module *m, int n_in, ag_tensor *const *in, const void *opts, int n_out,
                               ag_tensor **out) {
    if (n_in > 5 || n_out > 2)
        return ag__fail(AG_ERR_ARG,
                        "MultiheadAttention: takes query, key, value, key_padding_mask, attn_mask and gives output, "
                        "weights; got %d inputs and %d outputs",
                        n_in, n_out);
    ag_tensor *arg[5] = {NULL, NULL, NULL, NULL, NULL};
    for (int i = 0; i < n_in; i++) arg[i] = in[i];
    return ag__mha_forward(m, arg[0], arg[1], arg[2], arg[3], arg[4], opts, &out[0], n_out > 1 ? &out[1] : NULL);
}

/* forward: self-attention of x, without weights */
static ag_tensor *mha_forward(ag_module *m, ag_tensor *x) {
    ag_tensor *y = NULL;
    return ag__mha_forward(m, x, x, x, NULL, NULL, &(ag_mha_opts){false, true, false}, &y, NULL) ? NULL : y;
}

static const ag_module_type mha_type = {"MultiheadAttention", mha_forward, NULL, NULL};

/* A parameter of shape [rows, cols] (cols < 0: [rows]) drawn by Xavier's uniform rule, or zeros. */
static ag_status add_parameter(ag_module *m, const char *name, int64_t rows, int64_t cols) {
    ag_tensor *t = cols < 0 ? ag_zeros(AG_SHAPE(rows), AG_F32)
                            : ag_init_xavier_uniform_(ag_empty(AG_SHAPE(rows, cols), AG_F32), 1.0);
    return t ? ag_module_register_parameter(m, name, t) : ag_last_status();
}

ag_module *ag_nn_multihead_attention(int64_t embed_dim, int64_t num_heads, double dropout, bool bias, int64_t kdim,
                                     int64_t vdim, bool batch_first) {
    return ag_nn_multihead_attention_ex(embed_dim, num_heads, dropout, bias, false, false, kdim, vdim, batch_first);
}

ag_module *ag_nn_multihead_attention_ex(int64_t embed_dim, int64_t num_heads, double dropout, bool bias,
                                        bool add_bias_kv, bool add_zero_attn, int64_t kdim, int64_t vdim,
                                        bool batch_first) {
    if (embed_dim <= 0 || num_heads <= 0 || embed_dim % num_heads)
        return ag__fail_null(AG_ERR_ARG,
                             "nn.MultiheadAttention: embed_dim=%lld must be positive and divisible by num_heads=%lld",
                             (long long)embed_dim, (long long)num_heads);
    if (!(dropout >= 0 && dropout <= 1))
        return ag__fail_null(AG_ERR_ARG, "nn.MultiheadAttention: dropout should be a number in range [0, 1], got %g",
                             dropout);
    if (kdim < 0 || vdim < 0)
        return ag__fail_null(AG_ERR_ARG, "nn.MultiheadAttention: negative kdim=%lld or vdim=%lld", (long long)kdim,
                             (long long)vdim);
    if (!kdim) kdim = embed_dim;
    if (!vdim) vdim = embed_dim;
    if (embed_dim > AG_MAX_SIZE / 4 || ag__numel_checked(2, (int64_t[]){3 * embed_dim, embed_dim}) < 0 || kdim > AG_MAX_SIZE / embed_dim ||
        vdim > AG_MAX_SIZE / embed_dim)
        return ag__fail_null(AG_ERR_ARG, "nn.MultiheadAttention: embed_dim=%lld, kdim=%lld, vdim=%lld are too large",
                             (long long)embed_dim, (long long)kdim, (long long)vdim);
    mha *a = ag__alloc(sizeof *a);
    if (!a) return NULL;
    *a = (mha){embed_dim, num_heads, kdim, vdim, dropout, bias, batch_first, kdim == embed_dim && vdim == embed_dim,
               add_bias_kv, add_zero_attn};
    ag_module *m = ag_module_new(&mha_type, a);
    if (!m || ag_scope_begin()) {
        ag_module_free(m);
        return NULL;
    }
    ag_module_set_forward_n(m, mha_forward_n);
    /* As PyTorch: out_proj drawn as a Linear, then Xavier's uniform rule for the input projections,
     * zero biases. */
    ag_module *out_proj = ag__nn_out_proj_linear(embed_dim, embed_dim, bias);
    ag_status st = out_proj ? ag_module_add_child(m, "out_proj", out_proj) : ag_last_status();
    if (!st && a->same_dim) st = add_parameter(m, "in_proj_weight", 3 * embed_dim, embed_dim);
    if (!st && !a->same_dim) st = add_parameter(m, "q_proj_weight", embed_dim, embed_dim);
    if (!st && !a->same_dim) st = add_parameter(m, "k_proj_weight", embed_dim, kdim);
    if (!st && !a->same_dim) st = add_parameter(m, "v_proj_weight", embed_dim, vdim);
    if (!st && bias) st = add_parameter(m, "in_proj_bias", 3 * embed_dim, -1);
    for (int i = 0; i < 2 && !st && add_bias_kv; i++) { /* bias_k, bias_v [1, 1, E]: Xavier normal, as PyTorch */
        ag_tensor *t = ag_init_xavier_normal_(ag_empty(AG_SHAPE(1, 1, embed_dim), AG_F32), 1.0);
        st = t ? ag_module_register_parameter(m, i ? "bias_v" : "bias_k", t) : ag_last_status();
    }
    if (!st && bias) {
        ag_tensor *ob = ag_module_get_parameter(out_proj, "bias");
        st = ag_init_zeros_(ob) ? AG_OK : ag_last_status();
    }
    ag_scope_end();
    if (st) {
        ag_module_free(m);
        return NULL;
    }
    return m;
}

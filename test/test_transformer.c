/*
 * MultiheadAttention, TransformerEncoderLayer and TransformerEncoder against PyTorch
 * (test/fixtures/transformer.safetensors, written by scripts/gen_transformer_fixtures.py):
 * outputs, attention weights and the gradients of the inputs and every parameter, in
 * float32 and float64, with and without masks (attn_mask bool and float, 2-D and 3-D,
 * key_padding_mask bool and float, is_causal), batch_first both ways, norm_first both ways,
 * relu and gelu, kdim/vdim apart from embed_dim, add_bias_kv and add_zero_attn, batched and
 * unbatched, sequences of 1 and 5,
 * after loading PyTorch's state dict.  Then what the fixture does not show: gradcheck in
 * float64, print text and parameter names, initialisation, deep copies, dropout (statistics
 * and seeded reproducibility), the causal mask and positional encodings, the generic
 * ag_module_forward_n, and the errors.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "agrad/agrad.h"
#include "tap.h"
#include "test/fixture.h"

#ifndef FIXTURES
#define FIXTURES "test/fixtures"
#endif

static ag_state_dict *fx;

/* ok() that got equals want, showing got when not. */
static void is_str(const char *got, const char *want, const char *what) {
    ok(got && !strcmp(got, want), "%s", what);
    if (got && strcmp(got, want)) diag("got:\n%s\nwant:\n%s", got, want);
}

/* The fixture "<key>.<name>" (borrowed); NULL if absent. */
static ag_tensor *F(const char *key, const char *name) { return fixture_get(fx, key, name); }

static fixture_tally tally = {.tol_f32 = 2e-5}; /* against PyTorch */

/* Records the error of got against want in tally; counts one failure above the tolerance (diagnosed). */
static void agree(const char *key, const char *what, const ag_tensor *got, const ag_tensor *want, ag_dtype dt) {
    fixture_agree(&tally, key, what, got, want, dt);
}

enum { KIND, E, H, KDIM, VDIM, BIAS, BATCH_FIRST, BATCHED, L, S, B, KPM, MASK, NEED, AVG, SELF, FF, GELU, NORM_FIRST, BIAS_KV,
       ZERO_ATTN, NOPTS };
enum { MHA, LAYER, ENCODER };
enum { MASK_CAUSAL = 5 };

static ag_module *make(const int64_t *o) {
    if (o[KIND] == MHA)
        return ag_nn_multihead_attention_ex(o[E], o[H], 0, o[BIAS], o[BIAS_KV], o[ZERO_ATTN], o[KDIM], o[VDIM],
                                            o[BATCH_FIRST]);
    ag_module *l = ag_nn_transformer_encoder_layer(o[E], o[H], o[FF], 0, o[GELU] ? "gelu" : "relu", 1e-5,
                                                   o[BATCH_FIRST], o[NORM_FIRST]);
    if (o[KIND] == LAYER) return l;
    return ag_nn_transformer_encoder(l, 2, ag_nn_layer_norm(AG_SHAPE(o[E]), 1e-5, true));
}

/* One case in dtype dt: returns true when every value and gradient agrees with PyTorch. */
static bool check_case(const char *key, const int64_t *o, ag_dtype dt) {
    int before = tally.failures;
    char k[128];
    ag_module *m = fixture_case_module(&tally, fx, key, dt, make, o, k, sizeof k);
    if (!m) return false;
    ag_tensor *q = fixture_leaf(fx, k, "q");
    ag_tensor *kk = o[SELF] ? q : fixture_leaf(fx, k, "k"), *v = o[SELF] ? q : fixture_leaf(fx, k, "v");
    ag_tensor *kpm = o[KPM] == 1 ? F(key, "kpm") : o[KPM] == 2 ? F(k, "kpm") : NULL;
    ag_tensor *mask = o[MASK] == 1 || o[MASK] == 3 ? F(key, "mask") : o[MASK] == 2 || o[MASK] == 4 ? F(k, "mask") : NULL;
    ag_tensor *out[2] = {NULL, NULL};
    ag_status st;
    if (o[KIND] == MHA) {
        ag_mha_opts mo = {o[NEED], o[AVG], false};
        st = ag_module_forward_n(m, 5, (ag_tensor *[]){q, kk, v, kpm, mask}, &mo, 2, out);
    } else {
        ag_transformer_opts to = {o[MASK] == MASK_CAUSAL};
        st = ag_module_forward_n(m, 3, (ag_tensor *[]){q, mask, kpm}, &to, 1, out);
    }
    if (st) tally.failures++, diag("%s: forward: %s", k, ag_last_error());
    agree(key, "output", out[0], F(k, "y"), dt);
    ag_tensor *loss = ag_sum(ag_mul(out[0], F(k, "dy")));
    if (F(k, "w")) {
        agree(key, "weights", out[1], F(k, "w"), dt);
        loss = ag_add(loss, ag_sum(ag_mul(out[1], F(k, "dw"))));
    } else if (out[1])
        tally.failures++, diag("%s: weights written though not asked for", k);
    if (ag_backward(loss)) tally.failures++, diag("%s: backward: %s", k, ag_last_error());
    agree(key, "dq", ag_grad(q), F(k, "dq"), dt);
    if (!o[SELF]) agree(key, "dk", ag_grad(kk), F(k, "dk"), dt), agree(key, "dv", ag_grad(v), F(k, "dv"), dt);
    fixture_agree_grads(&tally, fx, key, k, m, dt);
    ag_module_free(m);
    ag_scope_end();
    return tally.failures == before;
}

static void test_fixture(void) {
    int n = 0, passed[2] = {0, 0}, kinds[3] = {0, 0, 0};
    char key[64];
    for (int64_t o[NOPTS]; fixture_case_opts(fx, n, key, sizeof key, o, NOPTS); n++) {
        kinds[o[KIND]]++;
        passed[0] += check_case(key, o, AG_F32);
        passed[1] += check_case(key, o, AG_F64);
    }
    ok(n >= 32 && kinds[MHA] >= 22 && kinds[LAYER] >= 6 && kinds[ENCODER] >= 2,
       "the fixture has %d cases (%d MultiheadAttention, %d TransformerEncoderLayer, %d TransformerEncoder)", n,
       kinds[MHA], kinds[LAYER], kinds[ENCODER]);
    fixture_cases_agree(&tally, n, passed, "outputs, weights, every gradient");
}

/* ---- gradcheck in float64 ----------------------------------------------------------------------- */
typedef struct gc_ctx {
    ag_module *m;
    ag_tensor *kpm, *mask;
    bool mha, is_causal;
} gc_ctx;

/* The output (and the weights) flattened; inputs: query, key, value (MultiheadAttention) or src,
 * then the parameters (perturbed in place). */
static ag_tensor *gc_fn(ag_tensor *const *in, int n, void *ctx) {
    (void)n;
    gc_ctx *g = ctx;
    ag_tensor *out[2] = {NULL, NULL};
    if (g->mha) {
        if (ag_module_forward_n(g->m, 5, (ag_tensor *[]){in[0], in[1], in[2], g->kpm, g->mask}, NULL, 2, out))
            return NULL;
        return ag_cat((ag_tensor *[]){ag_flatten(out[0], 0, -1), ag_flatten(out[1], 0, -1)}, 2, 0);
    }
    ag_transformer_opts to = {g->is_causal};
    return ag_module_forward_n(g->m, 3, (ag_tensor *[]){in[0], g->mask, g->kpm}, &to, 1, out) ? NULL : out[0];
}

static void gradcheck_one(const char *what, ag_module *m, bool mha, ag_shape qs, ag_shape ks, ag_shape vs,
                          ag_tensor *kpm, ag_tensor *mask, bool is_causal) {
    ag_module_to_dtype(m, AG_F64);
    ag_tensor *in[40];
    int n = 0;
    in[n++] = ag_requires_grad_(ag_randn(qs, AG_F64), true);
    if (mha) {
        in[n++] = ag_requires_grad_(ag_randn(ks, AG_F64), true);
        in[n++] = ag_requires_grad_(ag_randn(vs, AG_F64), true);
    }
    for (int i = 0; i < ag_module_num_parameter_tensors(m) && n < 40; i++) in[n++] = ag_module_parameter(m, i, NULL, 0);
    gc_ctx g = {m, kpm, mask, mha, is_causal};
    ag_gradcheck_report rep;
    ag_status st = ag_gradcheck(gc_fn, &g, in, n, NULL, &rep);
    ok(st == AG_OK, "gradcheck %s: %lld Jacobian entries over the inputs and %d parameters (worst error %.2g)", what,
       (long long)rep.checked, ag_module_num_parameter_tensors(m), rep.error);
    ag_module_free(m);
}

static void test_gradcheck(void) {
    ag_manual_seed(7);
    ag_scope_begin();
    ag_tensor *kpm = ag_from_data((bool[]){false, false, true, false, false, false}, AG_SHAPE(2, 3), AG_BOOL);
    ag_tensor *mask = ag_from_data((double[]){0, -1, 0.5, 0.2, 0, -INFINITY, 1, 0.3, 0, -0.7, 0, 0.1}, AG_SHAPE(4, 3),
                                   AG_F64);
    gradcheck_one("MultiheadAttention, kdim/vdim, key_padding_mask, float mask, weights",
                  ag_nn_multihead_attention(4, 2, 0, true, 3, 5, false), true, AG_SHAPE(4, 2, 4), AG_SHAPE(3, 2, 3),
                  AG_SHAPE(3, 2, 5), kpm, mask, false);
    gradcheck_one("MultiheadAttention, batch_first, no bias", ag_nn_multihead_attention(4, 2, 0, false, 0, 0, true), true,
                  AG_SHAPE(2, 3, 4), AG_SHAPE(2, 3, 4), AG_SHAPE(2, 3, 4), NULL, NULL, false);
    gradcheck_one("MultiheadAttention, add_bias_kv, add_zero_attn, kdim/vdim, key_padding_mask, float mask",
                  ag_nn_multihead_attention_ex(4, 2, 0, true, true, true, 3, 5, false), true, AG_SHAPE(4, 2, 4),
                  AG_SHAPE(3, 2, 3), AG_SHAPE(3, 2, 5), kpm, mask, false);
    gradcheck_one("TransformerEncoderLayer, gelu, norm_first, is_causal",
                  ag_nn_transformer_encoder_layer(4, 2, 6, 0, "gelu", 1e-5, true, true), false, AG_SHAPE(2, 3, 4),
                  AG_SHAPE(0), AG_SHAPE(0), NULL, NULL, true);
    gradcheck_one("TransformerEncoder, 2 layers, key_padding_mask",
                  ag_nn_transformer_encoder(ag_nn_transformer_encoder_layer(4, 2, 6, 0, "relu", 1e-5, false, false), 2,
                                            ag_nn_layer_norm(AG_SHAPE(4), 1e-5, true)),
                  false, AG_SHAPE(3, 2, 4), AG_SHAPE(0), AG_SHAPE(0), kpm, NULL, false);
    ag_scope_end();
}

/* ---- modules: print text, parameters, initialisation, copies ---------------------------------------- */
/* The names of m's parameters joined by spaces. */
static void names(const ag_module *m, char *buf, size_t size) {
    buf[0] = 0;
    for (int i = 0; i < ag_module_num_parameter_tensors(m); i++) {
        char n[96];
        ag_module_parameter(m, i, n, sizeof n);
        snprintf(buf + strlen(buf), size - strlen(buf), "%s%s", i ? " " : "", n);
    }
}

/* The largest |value| of t. */
static double max_abs(const ag_tensor *t) {
    ag_scope_begin();
    double v = ag_item(ag_max(ag_abs(ag_to_dtype((ag_tensor *)t, AG_F64))));
    ag_scope_end();
    return v;
}

static void test_modules(void) {
    /* PyTorch 1.13's print(...) of the same modules */
    ag_module *a = ag_nn_multihead_attention(6, 3, 0, true, 0, 0, false);
    char *s = fixture_module_repr(a), nm[512];
    is_str(s, "MultiheadAttention(\n  (out_proj): NonDynamicallyQuantizableLinear(in_features=6, out_features=6, "
              "bias=True)\n)\n",
           "MultiheadAttention prints as PyTorch's");
    free(s);
    names(a, nm, sizeof nm);
    is_str(nm, "in_proj_weight in_proj_bias out_proj.weight out_proj.bias", "MultiheadAttention's parameter names");
    /* Xavier uniform on [18, 6]: bound √(6/(6 + 18)) = 0.5; zero biases; out_proj.weight within 1/√6 */
    ag_tensor *w = ag_module_get_parameter(a, "in_proj_weight");
    ok(max_abs(w) <= 0.5 && max_abs(w) > 0.4 && max_abs(ag_module_get_parameter(a, "in_proj_bias")) == 0 &&
           max_abs(ag_module_get_parameter(ag_module_get_child(a, "out_proj"), "bias")) == 0 &&
           max_abs(ag_module_get_parameter(ag_module_get_child(a, "out_proj"), "weight")) <= 1 / sqrt(6.0),
       "MultiheadAttention is initialised as PyTorch's (in_proj Xavier uniform within 0.5, biases zero)");
    ag_module_free(a);
    a = ag_nn_multihead_attention(6, 3, 0, false, 4, 5, true);
    names(a, nm, sizeof nm);
    is_str(nm, "q_proj_weight k_proj_weight v_proj_weight out_proj.weight",
           "kdim/vdim apart: q/k/v_proj_weight, and no biases without bias");
    ok(ag_shape_of(ag_module_get_parameter(a, "k_proj_weight")).dim[1] == 4 &&
           ag_shape_of(ag_module_get_parameter(a, "v_proj_weight")).dim[1] == 5,
       "k_proj_weight [6, 4], v_proj_weight [6, 5]");
    ag_module_free(a);

    /* add_bias_kv: bias_k, bias_v [1, 1, E] after in_proj_bias (PyTorch's state-dict order), Xavier normal:
     * std √(2 / (E + E)) = 1/16 for E = 256 */
    a = ag_nn_multihead_attention_ex(256, 4, 0, true, true, true, 0, 0, false);
    names(a, nm, sizeof nm);
    is_str(nm, "in_proj_weight in_proj_bias bias_k bias_v out_proj.weight out_proj.bias",
           "add_bias_kv: PyTorch's parameter names, in its order");
    ag_tensor *bk = ag_module_get_parameter(a, "bias_k"), *bv = ag_module_get_parameter(a, "bias_v");
    ag_scope_begin();
    double sk = bk ? ag_item(ag_std(bk, 0)) : 0, sv = bv ? ag_item(ag_std(bv, 0)) : 0;
    ag_scope_end();
    ok(bk && bv && ag_ndim(bk) == 3 && ag_size(bk, 2) == 256 && ag_size(bk, 0) == 1 && ag_size(bk, 1) == 1 &&
           fabs(sk - 0.0625) < 0.012 && fabs(sv - 0.0625) < 0.012,
       "bias_k, bias_v [1, 1, 256], Xavier normal (std %.4f, %.4f; want 0.0625)", sk, sv);
    ag_scope_begin();
    ag_tensor *xb = ag_randn(AG_SHAPE(5, 2, 256), AG_F32), *mo[2] = {NULL, NULL};
    ok(ag_module_forward_n(a, 1, &xb, NULL, 2, mo) == AG_OK && ag_size(mo[1], 2) == 7,
       "add_bias_kv and add_zero_attn: 5 keys attend as 7 (weights [2, 5, 7])");
    ag_scope_end();
    ag_module_free(a);

    ag_module *l = ag_nn_transformer_encoder_layer(6, 3, 10, 0.1, "gelu", 1e-5, false, false);
    ag_module *enc = ag_nn_transformer_encoder(l, 2, ag_nn_layer_norm(AG_SHAPE(6), 1e-5, true));
    s = fixture_module_repr(enc);
    const char *layer_text =
        "TransformerEncoderLayer(\n"
        "      (self_attn): MultiheadAttention(\n"
        "        (out_proj): NonDynamicallyQuantizableLinear(in_features=6, out_features=6, bias=True)\n"
        "      )\n"
        "      (linear1): Linear(in_features=6, out_features=10, bias=True)\n"
        "      (dropout): Dropout(p=0.1, inplace=False)\n"
        "      (linear2): Linear(in_features=10, out_features=6, bias=True)\n"
        "      (norm1): LayerNorm((6,), eps=1e-05, elementwise_affine=True)\n"
        "      (norm2): LayerNorm((6,), eps=1e-05, elementwise_affine=True)\n"
        "      (dropout1): Dropout(p=0.1, inplace=False)\n"
        "      (dropout2): Dropout(p=0.1, inplace=False)\n"
        "    )\n";
    char want[4096];
    snprintf(want, sizeof want,
             "TransformerEncoder(\n  (layers): ModuleList(\n    (0): %s    (1): %s  )\n"
             "  (norm): LayerNorm((6,), eps=1e-05, elementwise_affine=True)\n)\n",
             layer_text, layer_text);
    is_str(s, want, "TransformerEncoder of TransformerEncoderLayers prints as PyTorch's");
    free(s);
    names(ag_module_child(ag_module_get_child(enc, "layers"), 0, NULL), nm, sizeof nm);
    is_str(nm,
           "self_attn.in_proj_weight self_attn.in_proj_bias self_attn.out_proj.weight self_attn.out_proj.bias "
           "linear1.weight linear1.bias linear2.weight linear2.bias norm1.weight norm1.bias norm2.weight norm2.bias",
           "TransformerEncoderLayer's parameter names");
    ok(ag_module_num_parameter_tensors(enc) == 26, "TransformerEncoder: 2 × 12 parameters and the final norm's 2");
    /* the layers start as deep copies: equal values, separate tensors */
    bool equal = true, separate = true;
    for (int i = 0; i < 12; i++) {
        ag_tensor *p0 = ag_module_parameter(enc, i, NULL, 0), *p1 = ag_module_parameter(enc, 12 + i, NULL, 0);
        equal &= worst(p0, p1) == 0;
        separate &= ag_data(p0) != ag_data(p1);
    }
    ok(equal && separate, "TransformerEncoder's layers start equal (deep copies) and do not share storage");
    /* state dict round trip into a fresh encoder */
    ag_scope_begin();
    ag_state_dict *sd = ag_state_dict_new();
    ag_module_state_dict(enc, sd);
    ag_module *enc2 = ag_nn_transformer_encoder(ag_nn_transformer_encoder_layer(6, 3, 10, 0.1, "gelu", 1e-5, false, false),
                                                2, ag_nn_layer_norm(AG_SHAPE(6), 1e-5, true));
    ok(ag_module_load_state_dict(enc2, sd, true) == AG_OK && ag_state_dict_get(sd, "layers.1.self_attn.in_proj_weight") &&
           ag_state_dict_get(sd, "norm.bias"),
       "TransformerEncoder's state dict has PyTorch's keys and loads strictly");
    ag_module_eval(enc), ag_module_eval(enc2);
    ag_tensor *x = ag_randn(AG_SHAPE(4, 2, 6), AG_F32);
    ok(worst(ag_module_forward(enc, x), ag_module_forward(enc2, x)) == 0, "the loaded encoder computes the same");
    ag_state_dict_free(sd);
    ag_module_free(enc2);
    ag_scope_end();
    ag_module_free(enc);
}

/* ---- dropout ------------------------------------------------------------------------------------- */
static void test_dropout(void) {
    ag_scope_begin();
    ag_manual_seed(3);
    ag_module *a = ag_nn_multihead_attention(8, 2, 0.5, true, 0, 0, true);
    ag_tensor *x = ag_randn(AG_SHAPE(4, 64, 8), AG_F32), *out[2], *again[2];
    ag_manual_seed(11);
    ag_module_forward_n(a, 1, &x, NULL, 2, out);
    /* per-head weights after dropout: about half zero, the rest scaled by 2, so each row sums to 1 on average */
    ag_mha_opts per_head = {true, false, false};
    ag_tensor *wh[2];
    ag_module_forward_n(a, 1, &x, &per_head, 2, wh);
    int64_t n = ag_numel(wh[1]);
    double zeros = ag_item(ag_sum(ag_to_dtype(ag_eq(wh[1], ag_scalar(0, AG_F32)), AG_F64))) / (double)n;
    double row = ag_item(ag_mean(ag_sum_dim(wh[1], -1, false)));
    ok(fabs(zeros - 0.5) < 0.03 && fabs(row - 1) < 0.05,
       "dropout 0.5 on the attention probabilities: %.3f of %lld weights zero, rows sum to %.3f on average", zeros,
       (long long)n, row);
    ag_manual_seed(11);
    ag_module_forward_n(a, 1, &x, NULL, 2, again);
    ok(worst(out[0], again[0]) == 0 && worst(out[1], again[1]) == 0,
       "the same seed gives the same dropped output and weights");
    ag_module_eval(a);
    ag_tensor *e1 = ag_module_forward(a, x), *e2 = ag_module_forward(a, x);
    ok(worst(e1, e2) == 0 && worst(e1, out[0]) > 1e-3, "eval mode: no dropout (deterministic, unlike training)");
    ag_module_free(a);
    /* the encoder layer in training mode drops in three places; eval is the dropout-free layer */
    ag_module *l = ag_nn_transformer_encoder_layer(8, 2, 16, 0.3, NULL, 1e-5, true, false);
    ag_module *l0 = ag_nn_transformer_encoder_layer(8, 2, 16, 0, NULL, 1e-5, true, false);
    ag_state_dict *sd = ag_state_dict_new();
    ag_module_state_dict(l, sd);
    ag_module_load_state_dict(l0, sd, true);
    ag_state_dict_free(sd);
    ag_manual_seed(5);
    ag_tensor *t1 = ag_module_forward(l, x);
    ag_manual_seed(5);
    ag_tensor *t2 = ag_module_forward(l, x);
    ag_tensor *ref = ag_module_forward(l0, x);
    ag_module_eval(l);
    ok(worst(t1, t2) == 0 && worst(t1, ref) > 1e-2 && worst(ag_module_forward(l, x), ref) < 1e-6,
       "TransformerEncoderLayer: seeded dropout reproducible, eval mode equals the dropout-free layer");
    ag_module_free(l);
    ag_module_free(l0);
    ag_scope_end();
}

/* ---- helpers ------------------------------------------------------------------------------------- */
static void test_helpers(void) {
    ag_scope_begin();
    ag_tensor *f = ag_generate_square_subsequent_mask(4, AG_F32), *b = ag_generate_square_subsequent_mask(4, AG_BOOL);
    float fv[16];
    bool bv[16];
    ag_copy_to(f, fv, 16, AG_F32);
    ag_copy_to(b, bv, 16, AG_BOOL);
    bool right = true;
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) right &= (j > i ? fv[i * 4 + j] == -INFINITY && bv[i * 4 + j] : fv[i * 4 + j] == 0 && !bv[i * 4 + j]);
    ok(right, "generate_square_subsequent_mask: -inf (float) or true (bool) above the diagonal, 0 / false elsewhere");
    ok(!ag_generate_square_subsequent_mask(-1, AG_F32) && ag_last_status() == AG_ERR_ARG &&
           !ag_generate_square_subsequent_mask(3, AG_I64) && ag_last_status() == AG_ERR_DTYPE,
       "the mask refuses a negative size and an integer dtype");
    /* a float and a bool causal mask and is_causal give the same as each other */
    ag_module *l = ag_nn_transformer_encoder_layer(6, 3, 8, 0, NULL, 1e-5, false, false);
    ag_tensor *x = ag_randn(AG_SHAPE(5, 2, 6), AG_F32), *y[3];
    ag_module_forward_n(l, 2, (ag_tensor *[]){x, ag_generate_square_subsequent_mask(5, AG_F32)}, NULL, 1, &y[0]);
    ag_module_forward_n(l, 2, (ag_tensor *[]){x, ag_generate_square_subsequent_mask(5, AG_BOOL)}, NULL, 1, &y[1]);
    ag_module_forward_n(l, 1, &x, &(ag_transformer_opts){true}, 1, &y[2]);
    ag_tensor *free_y = ag_module_forward(l, x);
    ok(worst(y[0], y[1]) < 1e-6 && worst(y[0], y[2]) < 1e-6 && worst(y[0], free_y) > 1e-3,
       "float mask, bool mask and is_causal agree (and differ from no mask)");
    /* a causal encoder: changing the last step leaves the earlier outputs alone */
    ag_tensor *x2 = ag_clone(x);
    ag_copy_(ag_select(x2, 0, 4), ag_randn(AG_SHAPE(2, 6), AG_F32));
    ag_tensor *y2;
    ag_module_forward_n(l, 1, &x2, &(ag_transformer_opts){true}, 1, &y2);
    ok(worst(ag_narrow(y[2], 0, 0, 4), ag_narrow(y2, 0, 0, 4)) == 0 && worst(ag_select(y[2], 0, 4), ag_select(y2, 0, 4)) > 0,
       "is_causal: the outputs before a changed step do not change");
    ag_module_free(l);

    ag_tensor *pe = ag_sinusoidal_positional_encoding(50, 7, AG_F64);
    double v[350];
    ag_copy_to(pe, v, 350, AG_F64);
    bool unit = true;
    for (int p = 0; p < 50; p++)
        for (int i = 0; i + 1 < 7; i += 2) unit &= fabs(v[p * 7 + i] * v[p * 7 + i] + v[p * 7 + i + 1] * v[p * 7 + i + 1] - 1) < 1e-12;
    ok(ag_shape_of(pe).dim[0] == 50 && ag_shape_of(pe).dim[1] == 7 && v[7] == sin(1.0) && v[8] == cos(1.0) &&
           fabs(v[3 * 7 + 2] - sin(3 / pow(10000, 2.0 / 7))) < 1e-15 && fabs(v[49 * 7 + 6] - sin(49 / pow(10000, 6.0 / 7))) < 1e-15 &&
           unit && v[0] == 0 && v[1] == 1,
       "sinusoidal positional encoding [50, 7]: sin/cos pairs at frequencies 10000^(-2i/d), odd width ends in a sine");
    ok(!ag_sinusoidal_positional_encoding(-1, 4, AG_F32) && !ag_sinusoidal_positional_encoding(4, 4, AG_BOOL),
       "positional encoding refuses a negative size and a non-floating dtype");
    ag_scope_end();
}

/* ---- forward over several tensors, errors ------------------------------------------------------------- */
static void test_errors(void) {
    ag_scope_begin();
    ag_tensor *out[2] = {NULL, NULL}, *x = ag_randn(AG_SHAPE(3, 2, 6), AG_F32);
    ag_module *lin = ag_nn_linear(6, 6, true);
    ok(ag_module_forward_n(lin, 1, &x, NULL, 1, out) == AG_ERR_ARG && strstr(ag_last_error(), "Linear has no forward"),
       "forward_n on a module without one: AG_ERR_ARG naming it");
    ag_module_free(lin);
    ok(!ag_nn_multihead_attention(6, 4, 0, true, 0, 0, false) && ag_last_status() == AG_ERR_ARG &&
           strstr(ag_last_error(), "divisible"),
       "embed_dim not divisible by num_heads is refused");
    ok(!ag_nn_multihead_attention(6, 3, 1.5, true, 0, 0, false) && !ag_nn_multihead_attention(0, 1, 0, true, 0, 0, false) &&
           !ag_nn_multihead_attention(6, 3, 0, true, -1, 0, false),
       "dropout outside [0, 1], embed_dim 0, a negative kdim are refused");
    ok(!ag_nn_transformer_encoder_layer(6, 3, 8, 0, "tanh", 1e-5, false, false) && ag_last_status() == AG_ERR_ARG,
       "an unknown activation is refused");
    ok(!ag_nn_transformer_encoder(ag_nn_linear(2, 2, true), 2, NULL) && ag_last_status() == AG_ERR_ARG &&
           !ag_nn_transformer_encoder(ag_nn_transformer_encoder_layer(6, 3, 8, 0, NULL, 1e-5, false, false), 0, NULL),
       "TransformerEncoder refuses another module and num_layers 0 (freeing what it took)");
    ok(!ag_nn_transformer_encoder(ag_nn_transformer_encoder_layer(6, 4, 8, 0, NULL, 1e-5, false, false), 2,
                                  ag_nn_layer_norm(AG_SHAPE(6), 1e-5, true)) &&
           strstr(ag_last_error(), "divisible"),
       "TransformerEncoder of a failed layer constructor: NULL, the constructor's message kept");
    ag_module *a = ag_nn_multihead_attention(6, 3, 0, true, 0, 0, false);
    ok(ag_module_forward_n(a, 9, (ag_tensor *[]){x, x, x, x, x, x, x, x, x}, NULL, 1, out) == AG_ERR_ARG && !out[0],
       "more than AG_MODULE_MAX_IO inputs: AG_ERR_ARG, outputs NULL");
    ok(ag_module_forward_n(a, 6, (ag_tensor *[]){x, x, x, NULL, NULL, x}, NULL, 1, out) == AG_ERR_ARG,
       "a sixth input to MultiheadAttention: AG_ERR_ARG");
    ok(ag_module_forward_n(a, 1, (ag_tensor *[]){ag_randn(AG_SHAPE(3, 2, 5), AG_F32)}, NULL, 1, out) == AG_ERR_SHAPE &&
           strstr(ag_last_error(), "embed_dim 6"),
       "a query not ending in embed_dim: AG_ERR_SHAPE");
    ok(ag_module_forward_n(a, 3, (ag_tensor *[]){x, ag_randn(AG_SHAPE(4, 2, 6), AG_F32), ag_randn(AG_SHAPE(3, 2, 6), AG_F32)},
                           NULL, 1, out) == AG_ERR_SHAPE,
       "key and value of different lengths: AG_ERR_SHAPE");
    ok(ag_module_forward_n(a, 1, (ag_tensor *[]){ag_randn(AG_SHAPE(3, 2, 6), AG_F64)}, NULL, 1, out) == AG_ERR_DTYPE,
       "a float64 query for float32 parameters: AG_ERR_DTYPE");
    ok(ag_module_forward_n(a, 4, (ag_tensor *[]){x, NULL, NULL, ag_zeros(AG_SHAPE(2, 4), AG_BOOL)}, NULL, 1, out) ==
               AG_ERR_SHAPE &&
           strstr(ag_last_error(), "key_padding_mask"),
       "a key_padding_mask of the wrong shape: AG_ERR_SHAPE naming it");
    ok(ag_module_forward_n(a, 5, (ag_tensor *[]){x, NULL, NULL, NULL, ag_zeros(AG_SHAPE(3, 3), AG_I64)}, NULL, 1, out) ==
           AG_ERR_DTYPE,
       "an int64 attn_mask: AG_ERR_DTYPE");
    ok(ag_module_forward_n(a, 5, (ag_tensor *[]){x, NULL, NULL, NULL, ag_zeros(AG_SHAPE(5, 3, 3), AG_BOOL)}, NULL, 1, out) ==
           AG_ERR_SHAPE,
       "a 3-D attn_mask not [B·heads, L, S]: AG_ERR_SHAPE");
    ok(ag_module_forward_n(a, 5, (ag_tensor *[]){x, NULL, NULL, NULL, ag_zeros(AG_SHAPE(3, 3), AG_BOOL)},
                           &(ag_mha_opts){false, true, true}, 1, out) == AG_ERR_VALUE,
       "is_causal with attn_mask: AG_ERR_VALUE");
    ok(ag_module_forward_n(a, 1, (ag_tensor *[]){ag_randn(AG_SHAPE(2, 3, 2, 6), AG_F32)}, NULL, 1, out) == AG_ERR_SHAPE,
       "a 4-D query: AG_ERR_SHAPE");
    /* unbatched self-attention with the defaults: output and averaged weights */
    ag_tensor *u = ag_randn(AG_SHAPE(4, 6), AG_F32);
    ok(ag_module_forward_n(a, 1, &u, NULL, 2, out) == AG_OK && ag_ndim(out[0]) == 2 && ag_ndim(out[1]) == 2 &&
           fabs(ag_item(ag_sum(out[1])) - 4) < 1e-5,
       "unbatched: output [4, 6] and weights [4, 4] whose rows sum to 1");
    /* every key masked: NaN through softmax when the weights are asked for (as PyTorch), else the
     * fused op's zeros, so the output is out_proj's bias */
    ag_tensor *all = ag_full(AG_SHAPE(2, 3), 1, AG_BOOL);
    ag_module_forward_n(a, 4, (ag_tensor *[]){x, NULL, NULL, all}, NULL, 2, out);
    bool nan_weights = isnan(ag_item(ag_sum(out[1]))) && isnan(ag_item(ag_sum(out[0])));
    ag_tensor *bias = ag_module_get_parameter(ag_module_get_child(a, "out_proj"), "bias");
    ag_init_uniform_(bias, -1, 1);
    ag_module_forward_n(a, 4, (ag_tensor *[]){x, NULL, NULL, all}, &(ag_mha_opts){false, true, false}, 1, out);
    ok(nan_weights && worst(out[0], ag_expand(bias, AG_SHAPE(3, 2, 6))) == 0,
       "every key masked: NaN with the weights (as PyTorch), out_proj's bias alone without them");
    ag_module_free(a);
    ag_module *l = ag_nn_transformer_encoder_layer(6, 3, 8, 0, NULL, 1e-5, false, false);
    ok(ag_module_forward_n(l, 2, (ag_tensor *[]){x, ag_generate_square_subsequent_mask(3, AG_F32)},
                           &(ag_transformer_opts){true}, 1, out) == AG_ERR_VALUE,
       "TransformerEncoderLayer: is_causal with src_mask: AG_ERR_VALUE");
    ok(ag_module_forward_n(l, 1, &x, NULL, 2, out) == AG_ERR_ARG, "TransformerEncoderLayer gives one output");
    ag_module_free(l);
    ag_scope_end();
}

/* ag_module_forward_n with no scope open: the caller owns the outputs, and nothing else stays. */
static void test_no_scope(void) {
    ag_module *a = ag_nn_multihead_attention(4, 2, 0, true, 0, 0, false);
    ag_tensor *x = ag_randn(AG_SHAPE(3, 2, 4), AG_F32), *out[2] = {NULL, NULL};
    long before = ag_live_tensors();
    ag_status st = ag_module_forward_n(a, 3, (ag_tensor *[]){x, x, x}, NULL, 2, out);
    bool two = out[0] && out[1] && ag_live_tensors() > before;
    ag_release(out[0]);
    ag_release(out[1]);
    ok(st == AG_OK && two && ag_live_tensors() == before,
       "ag_module_forward_n without a scope: the caller owns the two outputs, nothing else is left behind");
    ag_release(x);
    ag_module_free(a);
}

/* How many lines of t's graph (ag_graph_print) name grad_fn; -1 if it cannot be printed. */
static int graph_count(const ag_tensor *t, const char *grad_fn) {
    FILE *f = tmpfile();
    int n = 0;
    char line[512];
    if (!f || !t || ag_graph_print(f, t) != AG_OK) {
        if (f) fclose(f);
        return -1;
    }
    rewind(f);
    while (fgets(line, sizeof line, f)) n += strstr(line, grad_fn) != NULL;
    fclose(f);
    return n;
}

/* Self-attention with the packed in_proj_weight projects once (one linear of width 3E, the
 * heads read through strides from it, no slice of the weight) and leaves a sequence-first
 * output as out_proj made it (no transpose back); with a key of its own, one linear per
 * projection. */
static void test_packed_projection(void) {
    ag_scope_begin();
    ag_manual_seed(3);
    ag_module *m = ag_nn_multihead_attention(8, 2, 0, true, 0, 0, false);
    ag_tensor *x = ag_requires_grad_(ag_randn(AG_SHAPE(5, 3, 8), AG_F32), true), *kv = ag_randn(AG_SHAPE(5, 3, 8), AG_F32);
    ag_tensor *y = ag_module_forward(m, x), *y2 = NULL;
    ok(graph_count(y, "AddmmBackward0") == 2 && graph_count(y, "SliceBackward0") == 0 && ag_is_contiguous(y) &&
           !strcmp(ag_grad_fn_name(y), "AddmmBackward0"),
       "self-attention: one in_proj linear of width 3E and out_proj, its output out_proj's (%d linears)",
       graph_count(y, "AddmmBackward0"));
    const bool ran = ag_module_forward_n(m, 3, (ag_tensor *[]){x, kv, kv}, NULL, 1, &y2) == AG_OK;
    const int linears = ran ? graph_count(y2, "AddmmBackward0") : -1;
    ok(linears == 4, "distinct query and key: one linear per projection (%d linears)", linears);
    ag_module_free(m);
    ag_scope_end();
}

int main(void) {
    fx = ag_load_safetensors(FIXTURES "/transformer.safetensors");
    if (!fx) {
        printf("Bail out! cannot read %s/transformer.safetensors: %s\n", FIXTURES, ag_last_error());
        return 1;
    }
    test_fixture();
    test_gradcheck();
    test_modules();
    test_dropout();
    test_helpers();
    test_errors();
    test_packed_projection();
    test_no_scope();
    ag_state_dict_free(fx);
    return tap_done();
}

/*
 * Recurrent layers and cells against PyTorch (test/fixtures/rnn.safetensors, written
 * by scripts/gen_rnn_fixtures.py): RNN (tanh, relu), LSTM, GRU with 1-2 layers, both
 * directions, batch_first both ways, with and without initial states, lengths and
 * biases, batched and unbatched, and the three cells: outputs, final states and the
 * gradients of the inputs, the states and every parameter, in float32 and float64,
 * after loading PyTorch's state dict.  Then what the fixture does not show: gradcheck
 * in float64, repr and parameter names, initialisation bounds, dropout between layers,
 * and the errors.
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

/* The fixture "<key>.<name>" (borrowed); NULL if absent. */
static ag_tensor *F(const char *key, const char *name) { return fixture_get(fx, key, name); }

static fixture_tally tally = {.tol_f32 = 1e-5}; /* against PyTorch */

/* Records the error of got against want in tally; counts one failure above the tolerance (diagnosed). */
static void agree(const char *key, const char *what, const ag_tensor *got, const ag_tensor *want, ag_dtype dt) {
    fixture_agree(&tally, key, what, got, want, dt);
}

enum { MODE, CELL, LAYERS, BIDIR, BATCH_FIRST, HAS_LENGTHS, HAS_H0, BATCHED, IN, HIDDEN, BIAS, NOPTS };

static ag_module *make(const int64_t *o) {
    static const char *const nl[2] = {"tanh", "relu"};
    if (o[CELL]) {
        if (o[MODE] < 2) return ag_nn_rnn_cell(o[IN], o[HIDDEN], o[BIAS], nl[o[MODE]]);
        return (o[MODE] == 2 ? ag_nn_lstm_cell : ag_nn_gru_cell)(o[IN], o[HIDDEN], o[BIAS]);
    }
    if (o[MODE] < 2) return ag_nn_rnn(o[IN], o[HIDDEN], (int)o[LAYERS], nl[o[MODE]], o[BIAS], o[BATCH_FIRST], 0, o[BIDIR]);
    return (o[MODE] == 2 ? ag_nn_lstm : ag_nn_gru)(o[IN], o[HIDDEN], (int)o[LAYERS], o[BIAS], o[BATCH_FIRST], 0,
                                                    o[BIDIR]);
}

/* One case in dtype dt: returns true when every value and gradient agrees with PyTorch. */
static bool check_case(const char *key, const int64_t *o, ag_dtype dt) {
    int before = tally.failures;
    char k[128];
    ag_module *m = fixture_case_module(&tally, fx, key, dt, make, o, k, sizeof k);
    if (!m) return false;
    ag_tensor *x = fixture_leaf(fx, k, "x"), *h0 = fixture_leaf(fx, k, "h0"), *c0 = fixture_leaf(fx, k, "c0");
    ag_tensor *y = NULL, *hn = NULL, *cn = NULL;
    int64_t lengths[8];
    if (o[HAS_LENGTHS]) ag_copy_to(F(key, "lengths"), lengths, 8, AG_I64);
    if (o[CELL]) {
        hn = ag_rnn_cell_forward(m, x, h0, c0, o[MODE] == 2 ? &cn : NULL);
    } else {
        (void)ag_rnn_forward(m, x, h0, c0, o[HAS_LENGTHS] ? lengths : NULL, &y, &hn, o[MODE] == 2 ? &cn : NULL);
        agree(key, "output", y, F(k, "y"), dt);
    }
    if (!hn) tally.failures++, diag("%s: forward: %s", k, ag_last_error());
    agree(key, "h_n", hn, F(k, "hn"), dt);
    if (o[MODE] == 2) agree(key, "c_n", cn, F(k, "cn"), dt);
    ag_tensor *loss = ag_sum(ag_mul(hn, F(k, "dh")));
    if (y) loss = ag_add(loss, ag_sum(ag_mul(y, F(k, "dy"))));
    if (cn) loss = ag_add(loss, ag_sum(ag_mul(cn, F(k, "dc"))));
    if (ag_backward(loss)) tally.failures++, diag("%s: backward: %s", k, ag_last_error());
    agree(key, "dx", ag_grad(x), F(k, "dx"), dt);
    if (h0) agree(key, "dh0", ag_grad(h0), F(k, "dh0"), dt);
    if (c0) agree(key, "dc0", ag_grad(c0), F(k, "dc0"), dt);
    fixture_agree_grads(&tally, fx, key, k, m, dt);
    ag_module_free(m);
    ag_scope_end();
    return tally.failures == before;
}

static void test_fixture(void) {
    int n = 0, passed[2] = {0, 0};
    char key[64];
    for (int64_t o[NOPTS]; fixture_case_opts(fx, n, key, sizeof key, o, NOPTS); n++) {
        passed[0] += check_case(key, o, AG_F32);
        passed[1] += check_case(key, o, AG_F64);
    }
    ok(n >= 40, "the fixture has %d cases", n);
    fixture_cases_agree(&tally, n, passed, "outputs, states, every gradient");
}

/* ---- gradcheck in float64 ----------------------------------------------------------------------- */
typedef struct gc_ctx {
    ag_module *m;
    const int64_t *lengths;
    bool lstm, cell;
} gc_ctx;

/* The output, h_n and c_n flattened into one vector; inputs: x, h0, (c0), the parameters (perturbed in place). */
static ag_tensor *gc_fn(ag_tensor *const *in, int n, void *ctx) {
    (void)n;
    gc_ctx *g = ctx;
    ag_tensor *y = NULL, *hn = NULL, *cn = NULL;
    if (g->cell) {
        hn = ag_rnn_cell_forward(g->m, in[0], in[1], g->lstm ? in[2] : NULL, g->lstm ? &cn : NULL);
        return g->lstm ? ag_cat((ag_tensor *[]){ag_flatten(hn, 0, -1), ag_flatten(cn, 0, -1)}, 2, 0) : hn;
    }
    if (ag_rnn_forward(g->m, in[0], in[1], g->lstm ? in[2] : NULL, g->lengths, &y, &hn, g->lstm ? &cn : NULL))
        return NULL;
    ag_tensor *parts[3] = {ag_flatten(y, 0, -1), ag_flatten(hn, 0, -1), cn ? ag_flatten(cn, 0, -1) : NULL};
    return ag_cat(parts, g->lstm ? 3 : 2, 0);
}

static void gradcheck_one(const char *what, ag_module *m, bool lstm, bool cell, ag_shape xs, ag_shape hs,
                          const int64_t *lengths) {
    ag_scope_begin();
    ag_module_to_dtype(m, AG_F64);
    ag_tensor *in[40];
    int n = 0;
    in[n++] = ag_requires_grad_(ag_randn(xs, AG_F64), true);
    in[n++] = ag_requires_grad_(ag_randn(hs, AG_F64), true);
    if (lstm) in[n++] = ag_requires_grad_(ag_randn(hs, AG_F64), true);
    for (int i = 0; i < ag_module_num_parameter_tensors(m) && n < 40; i++) in[n++] = ag_module_parameter(m, i, NULL, 0);
    gc_ctx g = {m, lengths, lstm, cell};
    ag_gradcheck_report rep;
    ag_status st = ag_gradcheck(gc_fn, &g, in, n, NULL, &rep);
    ok(st == AG_OK, "gradcheck %s: %lld Jacobian entries over the input, the states and %d parameters (worst error %.2g)",
       what, (long long)rep.checked, ag_module_num_parameter_tensors(m), rep.error);
    ag_scope_end();
    ag_module_free(m);
}

static void test_gradcheck(void) {
    ag_manual_seed(7);
    const int64_t lengths[3] = {3, 1, 2};
    gradcheck_one("LSTM, 2 layers, bidirectional, batch_first, lengths", ag_nn_lstm(2, 2, 2, true, true, 0, true), true,
                  false, AG_SHAPE(3, 3, 2), AG_SHAPE(4, 3, 2), lengths);
    gradcheck_one("GRU, 2 layers, bidirectional, lengths", ag_nn_gru(2, 2, 2, true, false, 0, true), false, false,
                  AG_SHAPE(3, 3, 2), AG_SHAPE(4, 3, 2), lengths);
    gradcheck_one("RNN tanh, 2 layers, no bias", ag_nn_rnn(2, 3, 2, "tanh", false, false, 0, false), false, false,
                  AG_SHAPE(3, 2, 2), AG_SHAPE(2, 2, 3), NULL);
    gradcheck_one("RNN relu, bidirectional, unbatched", ag_nn_rnn(2, 3, 1, "relu", true, false, 0, true), false, false,
                  AG_SHAPE(3, 2), AG_SHAPE(2, 3), NULL);
    gradcheck_one("LSTMCell", ag_nn_lstm_cell(3, 2, true), true, true, AG_SHAPE(2, 3), AG_SHAPE(2, 2), NULL);
    gradcheck_one("GRUCell", ag_nn_gru_cell(3, 2, true), false, true, AG_SHAPE(2, 3), AG_SHAPE(2, 2), NULL);
    gradcheck_one("RNNCell", ag_nn_rnn_cell(3, 2, true, "tanh"), false, true, AG_SHAPE(3), AG_SHAPE(2), NULL);
}

/* ---- modules: repr, parameters, initialisation ---------------------------------------------- */
static void repr_is(ag_module *m, const char *want) {
    char *got = m ? fixture_module_repr(m) : NULL;
    ok(got && !strcmp(got, want), "prints as PyTorch: %.*s", (int)strcspn(want, "\n"), want);
    if (got && strcmp(got, want)) diag("got %s", got);
    free(got);
    ag_module_free(m);
}

static void test_modules(void) {
    /* the texts of PyTorch 1.13's print(module) */
    repr_is(ag_nn_lstm(10, 20, 2, true, true, 0.5, true),
            "LSTM(10, 20, num_layers=2, batch_first=True, dropout=0.5, bidirectional=True)\n");
    repr_is(ag_nn_rnn(3, 4, 1, "relu", false, false, 0, false), "RNN(3, 4, bias=False)\n");
    repr_is(ag_nn_gru(3, 4, 1, true, false, 0, false), "GRU(3, 4)\n");
    repr_is(ag_nn_rnn_cell(3, 4, false, "relu"), "RNNCell(3, 4, bias=False, nonlinearity=relu)\n");
    repr_is(ag_nn_lstm_cell(3, 4, true), "LSTMCell(3, 4)\n");
    repr_is(ag_nn_gru_cell(3, 4, false), "GRUCell(3, 4, bias=False)\n");
    repr_is(AG_SEQUENTIAL(ag_nn_lstm(3, 4, 1, true, false, 0, false)), "Sequential(\n  (0): LSTM(3, 4)\n)\n");

    /* PyTorch's names and shapes, in its order, drawn within ±1/√hidden */
    ag_module *m = ag_nn_gru(3, 4, 2, true, false, 0, true);
    static const char *const names[] = {"weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0",
                                        "weight_ih_l0_reverse", "weight_hh_l0_reverse", "bias_ih_l0_reverse",
                                        "bias_hh_l0_reverse", "weight_ih_l1", "weight_hh_l1", "bias_ih_l1", "bias_hh_l1",
                                        "weight_ih_l1_reverse", "weight_hh_l1_reverse", "bias_ih_l1_reverse",
                                        "bias_hh_l1_reverse"};
    static const int64_t cols[16] = {3, 4, 0, 0, 3, 4, 0, 0, 8, 4, 0, 0, 8, 4, 0, 0};
    int good = 0;
    double lo = 1, hi = -1;
    for (int i = 0; i < 16; i++) {
        char name[64];
        ag_tensor *p = ag_module_parameter(m, i, name, sizeof name);
        bool shape = p && ag_size(p, 0) == 12 && (cols[i] ? ag_ndim(p) == 2 && ag_size(p, 1) == cols[i] : ag_ndim(p) == 1);
        good += p && !strcmp(name, names[i]) && shape && ag_dtype_of(p) == AG_F32;
        for (int64_t j = 0; p && j < ag_numel(p); j++) {
            double v = ((const float *)ag_data(p))[j];
            lo = fmin(lo, v), hi = fmax(hi, v);
        }
    }
    ok(ag_module_num_parameter_tensors(m) == 16 && good == 16, "GRU(3, 4, 2, bidirectional): PyTorch's 16 parameter names and shapes");
    ok(lo >= -0.5 && hi <= 0.5 && lo < -0.4 && hi > 0.4, "drawn from U(-1/√4, 1/√4): [%.3f, %.3f]", lo, hi);
    ag_module_free(m);

    /* ag_module_forward: the output from zero states */
    ag_scope_begin();
    m = ag_nn_lstm(3, 4, 1, true, true, 0, false);
    ag_tensor *x = ag_randn(AG_SHAPE(2, 5, 3), AG_F32), *y1 = ag_module_forward(m, x), *y2 = NULL, *hn = NULL;
    ok(ag_rnn_forward(m, x, ag_zeros(AG_SHAPE(1, 2, 4), AG_F32), NULL, NULL, &y2, &hn, NULL) == AG_OK && y1 &&
           worst(y1, y2) == 0 && ag_size(y1, 0) == 2 && ag_size(y1, 1) == 5 && ag_size(y1, 2) == 4,
       "module_forward gives the batch-first output [2, 5, 4] of zero initial states");
    ok(hn && worst(ag_select(hn, 0, 0), ag_select(y1, 1, 4)) == 0, "h_n is the last step's output");
    ag_module_free(m);

    /* dropout between layers: training draws masks, eval is deterministic */
    m = ag_nn_gru(3, 8, 2, true, false, 0.5, false);
    x = ag_randn(AG_SHAPE(4, 2, 3), AG_F32);
    ag_module_eval(m);
    ag_tensor *e1 = ag_module_forward(m, x), *e2 = ag_module_forward(m, x);
    ag_module_train(m, true);
    ag_tensor *t1 = ag_module_forward(m, x);
    ok(worst(e1, e2) == 0 && worst(e1, t1) > 1e-3, "dropout=0.5 acts between layers in training only");
    ag_module_free(m);
    ag_scope_end();
}

static void fails(ag_status st, ag_status want, const char *needle, const char *what) {
    const char *msg = ag_last_error();
    ok(st == want && ag_last_status() == want && msg && strstr(msg, needle), "%s: %s", what, msg ? msg : "(no message)");
}

static void test_errors(void) {
    ag_scope_begin();
    ag_module *m = ag_nn_lstm(3, 4, 2, true, false, 0, false), *g = ag_nn_gru(3, 4, 1, true, false, 0, false);
    ag_tensor *y = NULL, *hn = NULL, *cn = NULL;
    fails(ag_rnn_forward(m, ag_zeros(AG_SHAPE(5, 2, 6), AG_F32), NULL, NULL, NULL, &y, NULL, NULL), AG_ERR_SHAPE,
          "LSTM: input.size(-1) must be equal to input_size. Expected 3, got 6", "a wrong input size");
    ok(y == NULL, "and writes no output");
    fails(ag_rnn_forward(m, ag_zeros(AG_SHAPE(5), AG_F32), NULL, NULL, NULL, &y, NULL, NULL), AG_ERR_SHAPE,
          "LSTM: expected input to be 2-D or 3-D but received 1-D tensor", "a 1-D input");
    fails(ag_rnn_forward(m, ag_zeros(AG_SHAPE(0, 2, 3), AG_F32), NULL, NULL, NULL, &y, NULL, NULL), AG_ERR_SHAPE,
          "LSTM: the input has no time step", "no time step");
    fails(ag_rnn_forward(m, ag_zeros(AG_SHAPE(5, 2, 3), AG_F32), ag_zeros(AG_SHAPE(1, 2, 4), AG_F32), NULL, NULL, &y,
                         NULL, NULL),
          AG_ERR_SHAPE, "LSTM: h0 has shape [1, 2, 4], expected [2, 2, 4]", "h0 for one layer of two");
    fails(ag_rnn_forward(m, ag_zeros(AG_SHAPE(5, 2, 3), AG_F32), NULL, ag_zeros(AG_SHAPE(2, 3, 4), AG_F32), NULL, &y,
                         NULL, NULL),
          AG_ERR_SHAPE, "LSTM: c0 has shape [2, 3, 4], expected [2, 2, 4]", "c0 of another batch");
    fails(ag_rnn_forward(g, ag_zeros(AG_SHAPE(5, 2, 3), AG_F32), NULL, ag_zeros(AG_SHAPE(1, 2, 4), AG_F32), NULL, &y,
                         NULL, NULL),
          AG_ERR_ARG, "GRU: a cell state c0 was given, which only an LSTM has", "c0 for a GRU");
    fails(ag_rnn_forward(g, ag_zeros(AG_SHAPE(5, 2, 3), AG_F32), NULL, NULL, NULL, &y, &hn, &cn), AG_ERR_ARG,
          "GRU: c_n was asked for, which only an LSTM has", "c_n from a GRU");
    const int64_t bad[2] = {5, 6};
    fails(ag_rnn_forward(g, ag_zeros(AG_SHAPE(5, 2, 3), AG_F32), NULL, NULL, bad, &y, NULL, NULL), AG_ERR_VALUE,
          "GRU: lengths[1] = 6 is outside [0, 5] (the input's sequence length)", "a length past the input");
    fails(ag_rnn_forward(g, ag_zeros(AG_SHAPE(5, 2, 3), AG_F64), NULL, NULL, NULL, &y, NULL, NULL), AG_ERR_DTYPE,
          "", "a float64 input to float32 parameters");
    ag_tensor *endless = ag_expand(ag_zeros(AG_SHAPE(1, 1, 3), AG_F32), AG_SHAPE((int64_t)1 << 40, 1, 3));
    fails(ag_rnn_forward(g, endless, NULL, NULL, NULL, &y, NULL, NULL), AG_ERR_SHAPE,
          "GRU: a sequence of 1099511627776 steps is longer than the 536870911 supported", "2^40 steps (an expanded input)");
    ag_module *lin = ag_nn_linear(3, 4, true);
    fails(ag_rnn_forward(lin, ag_zeros(AG_SHAPE(5, 2, 3), AG_F32), NULL, NULL, NULL, &y, NULL, NULL), AG_ERR_ARG,
          "rnn_forward: the module is Linear, not an RNN, LSTM or GRU", "a Linear given to rnn_forward");
    ag_tensor *r = ag_rnn_cell_forward(lin, ag_zeros(AG_SHAPE(3), AG_F32), NULL, NULL, NULL);
    fails(r ? AG_OK : ag_last_status(), AG_ERR_ARG, "rnn_cell_forward: the module is Linear, not an RNNCell",
          "a Linear given to rnn_cell_forward");
    ag_module *cell = ag_nn_gru_cell(3, 4, true);
    r = ag_rnn_cell_forward(cell, ag_zeros(AG_SHAPE(2, 5), AG_F32), NULL, NULL, NULL);
    fails(r ? AG_OK : ag_last_status(), AG_ERR_SHAPE, "GRUCell: input has inconsistent input_size: got 5 expected 3",
          "a cell's wrong input size");
    r = ag_rnn_cell_forward(cell, ag_zeros(AG_SHAPE(2, 3), AG_F32), ag_zeros(AG_SHAPE(3, 4), AG_F32), NULL, NULL);
    fails(r ? AG_OK : ag_last_status(), AG_ERR_SHAPE, "GRUCell: the hidden state has shape [3, 4], expected [2, 4]",
          "a cell's hidden state of another batch");
    r = ag_rnn_cell_forward(cell, ag_zeros(AG_SHAPE(1, 2, 3), AG_F32), NULL, NULL, NULL);
    fails(r ? AG_OK : ag_last_status(), AG_ERR_SHAPE, "GRUCell: expected input to be 1-D or 2-D but received 3-D tensor",
          "a 3-D input to a cell");
    r = ag_rnn_cell_forward(cell, ag_zeros(AG_SHAPE(2, 3), AG_F32), NULL, ag_zeros(AG_SHAPE(2, 4), AG_F32), NULL);
    fails(r ? AG_OK : ag_last_status(), AG_ERR_ARG, "GRUCell: a cell state was given, which only an LSTMCell has",
          "a cell state for a GRUCell");
    ag_module_free(cell);
    ag_module_free(lin);
    ag_module_free(m);
    ag_module_free(g);
    ag_scope_end();
    ok(ag_nn_lstm(3, 4, 1, true, false, 1.5, false) == NULL && ag_last_status() == AG_ERR_ARG &&
           strstr(ag_last_error(), "nn.LSTM: dropout should be a number in range [0, 1], got 1.5"),
       "dropout outside [0, 1]: %s", ag_last_error());
    ok(ag_nn_gru(3, 0, 1, true, false, 0, false) == NULL && ag_last_status() == AG_ERR_ARG, "hidden_size 0: %s",
       ag_last_error());
    ok(ag_nn_rnn(3, 4, 0, "tanh", true, false, 0, false) == NULL && ag_last_status() == AG_ERR_ARG, "num_layers 0: %s",
       ag_last_error());
    ok(ag_nn_rnn(3, 4, 1, "sigmoid", true, false, 0, false) == NULL && ag_last_status() == AG_ERR_ARG &&
           strstr(ag_last_error(), "nn.RNN: unknown nonlinearity 'sigmoid' (tanh or relu)"),
       "an unknown nonlinearity: %s", ag_last_error());
    ok(ag_nn_rnn_cell(3, 4, true, "gelu") == NULL && ag_last_status() == AG_ERR_ARG, "a cell's unknown nonlinearity: %s",
       ag_last_error());
    ok(ag_nn_lstm_cell(-1, 4, true) == NULL && ag_last_status() == AG_ERR_ARG, "a negative cell size: %s", ag_last_error());
}

/* With no scope open, the results belong to the caller and nothing else stays alive. */
static void test_no_scope(void) {
    ag_module *m = ag_nn_lstm(3, 4, 2, true, false, 0, true), *cell = ag_nn_lstm_cell(3, 4, true);
    long before = ag_live_tensors();
    ag_tensor *x = ag_requires_grad_(ag_randn(AG_SHAPE(5, 2, 3), AG_F32), true), *y = NULL, *hn = NULL, *cn = NULL;
    const int64_t lengths[2] = {5, 3};
    ag_status st = ag_rnn_forward(m, x, NULL, NULL, lengths, &y, &hn, &cn);
    ag_release(y);
    ag_release(hn);
    ag_release(cn);
    ag_tensor *x0 = ag_select(x, 0, 0), *c1 = NULL, *h1 = ag_rnn_cell_forward(cell, x0, NULL, NULL, &c1);
    ag_release(x0);
    ag_tensor *parts[2] = {ag_select(x, 1, 0), NULL};
    parts[1] = ag_narrow(parts[0], 0, 0, 2);
    ag_tensor *padded = ag_pad_sequence(parts, 2, true, 0), *drawn = ag_sample_logits(parts[1], 1, 2);
    ag_release(padded);
    ag_release(drawn);
    ag_release(parts[0]);
    ag_release(parts[1]);
    ag_release(h1);
    ag_release(c1);
    ag_release(x);
    ok(st == AG_OK && h1 && c1 && padded && drawn && ag_live_tensors() == before,
       "rnn_forward, rnn_cell_forward, pad_sequence and sample_logits with no scope open leave nothing alive (%ld live, %ld before)",
       ag_live_tensors(), before);
    ag_module_free(m);
    ag_module_free(cell);
}

/* ---- utilities: pad_sequence, sampling, clipping per group ----------------------------------------- */
static void test_pad_sequence(void) {
    ag_scope_begin();
    int64_t lens[3] = {2, 4, 1};
    ag_tensor *seqs[3];
    for (int i = 0; i < 3; i++) seqs[i] = ag_requires_grad_(ag_randn(AG_SHAPE(lens[i], 2), AG_F64), true);
    ag_tensor *y = ag_pad_sequence(seqs, 3, false, -1.5), *yb = ag_pad_sequence(seqs, 3, true, 0);
    ok(y && ag_ndim(y) == 3 && ag_size(y, 0) == 4 && ag_size(y, 1) == 3 && ag_size(y, 2) == 2 && yb &&
           ag_size(yb, 0) == 3 && ag_size(yb, 1) == 4,
       "pad_sequence: [T, B, *] = [4, 3, 2], batch_first [3, 4, 2]");
    int wrong = 0;
    for (int64_t b = 0; y && b < 3; b++)
        for (int64_t t = 0; t < 4; t++)
            for (int64_t j = 0; j < 2; j++) {
                double want = t < lens[b] ? ag_get(seqs[b], (int64_t[]){t, j}) : -1.5;
                wrong += ag_get(y, (int64_t[]){t, b, j}) != want;
                wrong += ag_get(yb, (int64_t[]){b, t, j}) != (t < lens[b] ? want : 0);
            }
    ok(y && wrong == 0, "each sequence in its column, padding_value after its end");
    ag_backward(ag_sum(ag_mul_scalar(y, 3)));
    ok(ag_grad(seqs[1]) && ag_get(ag_grad(seqs[1]), (int64_t[]){3, 1}) == 3 && ag_get(ag_grad(seqs[2]), (int64_t[]){0, 0}) == 3,
       "differentiable in each sequence");
    ok(!ag_pad_sequence(seqs, 0, false, 0) && ag_last_status() == AG_ERR_ARG, "no sequence: %s", ag_last_error());
    ag_tensor *bad[2] = {seqs[0], ag_zeros(AG_SHAPE(3, 5), AG_F64)};
    ok(!ag_pad_sequence(bad, 2, false, 0) && ag_last_status() == AG_ERR_SHAPE, "trailing sizes that differ: %s",
       ag_last_error());
    ag_scope_end();
}

/* counts[i] of the n int64 samples. */
static void histogram(const ag_tensor *s, int64_t *counts, int k) {
    memset(counts, 0, sizeof *counts * (size_t)k);
    const int64_t *v = ag_data(s);
    for (int64_t i = 0; i < ag_numel(s); i++)
        if (v[i] >= 0 && v[i] < k) counts[v[i]]++;
}

static void test_sampling(void) {
    ag_scope_begin();
    const double p[4] = {0.1, 0.2, 0, 0.7};
    ag_tensor *probs = ag_from_data(p, AG_SHAPE(4), AG_F64);
    ag_manual_seed(3);
    ag_tensor *a = ag_multinomial(probs, 20000, true);
    ag_manual_seed(3);
    ag_tensor *b = ag_multinomial(probs, 20000, true);
    int64_t c[4];
    histogram(a, c, 4);
    ok(a && ag_dtype_of(a) == AG_I64 && ag_numel(a) == 20000 && worst(a, b) == 0, "multinomial: one seed, the same 20000 samples");
    ok(c[2] == 0 && fabs(c[0] / 2e4 - 0.1) < 0.01 && fabs(c[1] / 2e4 - 0.2) < 0.01 && fabs(c[3] / 2e4 - 0.7) < 0.01,
       "frequencies %.3f %.3f %.3f %.3f follow the weights 0.1 0.2 0 0.7", c[0] / 2e4, c[1] / 2e4, c[2] / 2e4, c[3] / 2e4);
    /* rows, unnormalised weights, without replacement */
    const float w[6] = {5, 0, 1, 0, 2, 2};
    ag_tensor *s = ag_multinomial(ag_from_data(w, AG_SHAPE(2, 3), AG_F32), 2, false);
    const int64_t *sv = s ? ag_data(s) : NULL;
    ok(s && ag_size(s, 0) == 2 && ag_size(s, 1) == 2 && sv[0] != sv[1] && sv[0] != 1 && sv[1] != 1 && sv[2] != sv[3] &&
           sv[2] != 0 && sv[3] != 0,
       "without replacement: distinct categories of positive weight per row");
    ag_tensor *r = ag_multinomial(probs, 4, false);
    ok(!r && ag_last_status() == AG_ERR_VALUE, "without replacement, more samples than positive weights: %s", ag_last_error());
    r = ag_multinomial(probs, 5, false);
    ok(!r && ag_last_status() == AG_ERR_ARG, "more samples than categories: %s", ag_last_error());
    const double neg[2] = {0.5, -0.1};
    r = ag_multinomial(ag_from_data(neg, AG_SHAPE(2), AG_F64), 1, true);
    ok(!r && ag_last_status() == AG_ERR_VALUE, "a negative weight: %s", ag_last_error());
    r = ag_multinomial(ag_zeros(AG_SHAPE(3), AG_F64), 1, true);
    ok(!r && ag_last_status() == AG_ERR_VALUE, "weights summing to 0: %s", ag_last_error());

    /* logits: greedy, temperature, top-k */
    const double lg[2][4] = {{1, 3, 0.5, 3}, {0, 1, 2, 0.5}};
    ag_tensor *logits = ag_from_data(lg, AG_SHAPE(2, 4), AG_F64);
    ag_tensor *g = ag_sample_logits(logits, 0, 0);
    ok(g && ag_numel(g) == 2 && ((int64_t *)ag_data(g))[0] == 1 && ((int64_t *)ag_data(g))[1] == 2,
       "sample_logits at temperature 0 is the first argmax of each row");
    int64_t counts[4] = {0, 0, 0, 0}, top[4] = {0, 0, 0, 0};
    ag_tensor *row = ag_select(logits, 0, 1);
    for (int i = 0; i < 20000; i++) {
        ag_tensor *t = ag_sample_logits(row, 0.5, 0), *k = ag_sample_logits(row, 2, 2);
        counts[(int64_t)ag_item(t)]++;
        top[(int64_t)ag_item(k)]++;
        ag_release(t), ag_release(k);
    }
    double z = 0, q[4];
    for (int i = 0; i < 4; i++) z += exp(lg[1][i] / 0.5);
    int off = 0;
    for (int i = 0; i < 4; i++) q[i] = exp(lg[1][i] / 0.5) / z, off += fabs(counts[i] / 2e4 - q[i]) > 0.015;
    ok(off == 0, "temperature 0.5: frequencies %.3f %.3f %.3f %.3f follow softmax(logits / 0.5)", counts[0] / 2e4,
       counts[1] / 2e4, counts[2] / 2e4, counts[3] / 2e4);
    double p2 = exp(2 / 2.0) / (exp(2 / 2.0) + exp(1 / 2.0));
    ok(top[0] == 0 && top[3] == 0 && fabs(top[2] / 2e4 - p2) < 0.015,
       "top_k 2 at temperature 2: only the two largest (%.3f of the largest, softmax gives %.3f)", top[2] / 2e4, p2);
    ok(!ag_sample_logits(logits, -1, 0) && ag_last_status() == AG_ERR_ARG, "a negative temperature: %s", ag_last_error());
    ag_scope_end();
}

static void test_clip_group(void) {
    ag_scope_begin();
    ag_tensor *a = ag_requires_grad_(ag_zeros(AG_SHAPE(2), AG_F64), true), *b = ag_requires_grad_(ag_zeros(AG_SHAPE(2), AG_F64), true);
    ag_optimizer *opt = ag_sgd_new(&a, 1, NULL);
    ag_optimizer_add_param_group(opt, &b, 1, NULL);
    const double ga[2] = {3, 4}, gb[2] = {6, 8};
    ag_backward(ag_add(ag_sum(ag_mul(a, ag_from_data(ga, AG_SHAPE(2), AG_F64))), ag_sum(ag_mul(b, ag_from_data(gb, AG_SHAPE(2), AG_F64)))));
    double na = 0, nb = 0;
    ok(ag_clip_grad_norm_group(opt, 1, 1.0, 2, false, &nb) == AG_OK && ag_clip_grad_norm_group(opt, 0, 10.0, 2, false, &na) == AG_OK,
       "clip_grad_norm_group on each group");
    ok(na == 5 && nb == 10 && ag_get(ag_grad(a), (int64_t[]){1}) == 4 && fabs(ag_get(ag_grad(b), (int64_t[]){1}) - 0.8) < 1e-6,
       "each group is clipped to its own max_norm (norms %g and %g; group 0 under 10 left alone)", na, nb);
    ok(ag_clip_grad_norm_group(opt, 2, 1, 2, false, NULL) == AG_ERR_INDEX, "a group out of range: %s", ag_last_error());
    ag_optimizer_free(opt);
    ag_scope_end();
}

int main(void) {
    fx = ag_load_safetensors(FIXTURES "/rnn.safetensors");
    ok(fx != NULL, "read the fixture: %s", fx ? "rnn.safetensors" : ag_last_error());
    if (fx) test_fixture();
    test_gradcheck();
    test_modules();
    test_errors();
    test_no_scope();
    test_pad_sequence();
    test_sampling();
    test_clip_group();
    ag_state_dict_free(fx);
    return tap_done();
}

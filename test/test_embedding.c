/*
 * Embedding against PyTorch (test/fixtures/embedding.safetensors, written by
 * scripts/gen_embedding_fixtures.py): F.embedding's output and weight gradient in
 * float64 and float32 with and without padding_idx, and an nn.Embedding's state dict
 * and output.  Then what the fixture does not show: the module's repr and
 * initialisation, non-contiguous inputs, and the errors.
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

static double worst_seen[2]; /* against PyTorch: float32, float64 */

static void agree(const char *key, const char *what, const ag_tensor *got, const ag_tensor *want, ag_dtype dt) {
    double e = fixture_error(worst_seen, got, want, dt), tol = dt == AG_F64 ? 1e-12 : 2e-6;
    ok(e <= tol, "%s %s: %s matches PyTorch (worst relative error %.2g)", key, ag_dtype_name(dt), what, e);
}

/* One fixture case in dtype dt: y and the weight's gradient of sum(y·dy). */
static void check_case(const char *key, ag_dtype dt) {
    ag_scope_begin();
    char k[128];
    snprintf(k, sizeof k, "%s.%s", key, dt == AG_F64 ? "f64" : "f32");
    int64_t pad = 0;
    ag_copy_to(F(key, "padding_idx"), &pad, 1, AG_I64);
    ag_tensor *w = ag_requires_grad_(ag_clone(F(k, "w")), true);
    ag_tensor *y = ag_embedding(w, F(key, "indices"), pad == -999 ? AG_NO_PADDING_IDX : pad);
    if (!y) diag("%s", ag_last_error());
    agree(key, "y", y, F(k, "y"), dt);
    ok(y && ag_backward(ag_sum(ag_mul(y, F(k, "dy")))) == AG_OK, "%s %s: backward", key, ag_dtype_name(dt));
    agree(key, "dw", ag_grad(w), F(k, "dw"), dt);
    ag_scope_end();
}

static void test_fixture(void) {
    int n = 0;
    for (;; n++) {
        char key[64];
        snprintf(key, sizeof key, "embedding.%d", n);
        if (!F(key, "indices")) break;
        check_case(key, AG_F64);
        check_case(key, AG_F32);
    }
    ok(n >= 5, "the fixture has %d embedding cases", n);
    diag("worst relative error against PyTorch: float32 %.2g, float64 %.2g", worst_seen[0], worst_seen[1]);
}

/* A transposed [50, 40] weight read in place (2 rows picked) or from a row-major copy (60 picked, at
 * least numel / EMBED_COPY_RATIO elements: session 22): the contiguous weight's bits, float32 and 64. */
static void test_strided_copy(void) {
    ag_scope_begin();
    for (int f64 = 0; f64 < 2; f64++) {
        const ag_dtype dt = f64 ? AG_F64 : AG_F32;
        ag_tensor *w = ag_t(ag_randn(AG_SHAPE(40, 50), dt)), *wc = ag_contiguous(w);
        int64_t iv[60];
        for (int k = 0; k < 60; k++) iv[k] = (k * 17 + 3) % 50;
        ag_tensor *few = ag_from_data(iv, AG_SHAPE(2), AG_I64), *many = ag_from_data(iv, AG_SHAPE(3, 20), AG_I64);
        ok(worst(ag_embedding(w, few, AG_NO_PADDING_IDX), ag_embedding(wc, few, AG_NO_PADDING_IDX)) == 0 &&
               worst(ag_embedding(w, many, AG_NO_PADDING_IDX), ag_embedding(wc, many, AG_NO_PADDING_IDX)) == 0,
           "%s: a transposed [50, 40] weight, 2 rows picked in place and 60 from a copy: the contiguous result",
           f64 ? "float64" : "float32");
    }
    ag_scope_end();
}

/* A weight and indices stored transposed (non-contiguous) give what their contiguous copies give. */
static void test_strided(void) {
    ag_scope_begin();
    ag_tensor *wt = ag_requires_grad_(ag_randn(AG_SHAPE(3, 6), AG_F64), true), *w = ag_transpose(wt, 0, 1);
    const int64_t iv[8] = {5, 0, 2, 2, 1, 5, 3, 0};
    ag_tensor *idx = ag_transpose(ag_from_data(iv, AG_SHAPE(2, 4), AG_I64), 0, 1); /* [4, 2] */
    ag_tensor *y = ag_embedding(w, idx, 2), *wc = ag_requires_grad_(ag_contiguous(ag_detach(w)), true);
    ag_tensor *yc = ag_embedding(wc, ag_contiguous(idx), 2), *dy = ag_randn(AG_SHAPE(4, 2, 3), AG_F64);
    ok(y && yc && worst(y, yc) == 0, "a transposed weight and indices give the contiguous result");
    ok(ag_backward(ag_sum(ag_mul(y, dy))) == AG_OK && ag_backward(ag_sum(ag_mul(yc, dy))) == AG_OK, "backward");
    ok(worst(ag_transpose(ag_grad(wt), 0, 1), ag_grad(wc)) == 0, "and the same weight gradient");
    double row[3];
    ag_copy_to(ag_select(ag_grad(wc), 0, 2), row, 3, AG_F64);
    ok(row[0] == 0 && row[1] == 0 && row[2] == 0, "the padding row (picked twice) gets no gradient");
    ag_scope_end();
}

static void fails(ag_tensor *y, ag_status want, const char *needle, const char *what) {
    const char *msg = ag_last_error();
    ok(!y && ag_last_status() == want && msg && strstr(msg, needle), "%s: %s", what, msg ? msg : "(no message)");
}

static void test_errors(void) {
    ag_scope_begin();
    ag_tensor *w = ag_randn(AG_SHAPE(5, 3), AG_F64);
    const int64_t big[3] = {1, 5, 0}, neg[2] = {0, -1};
    fails(ag_embedding(w, ag_from_data(big, AG_SHAPE(3), AG_I64), AG_NO_PADDING_IDX), AG_ERR_INDEX,
          "embedding: index 5 is out of range for num_embeddings 5 (weight shape [5, 3])", "an index past the table");
    fails(ag_embedding(w, ag_from_data(neg, AG_SHAPE(2), AG_I64), AG_NO_PADDING_IDX), AG_ERR_INDEX,
          "embedding: index -1 is out of range for num_embeddings 5", "a negative index");
    fails(ag_embedding(w, ag_zeros(AG_SHAPE(2), AG_F64), AG_NO_PADDING_IDX), AG_ERR_DTYPE,
          "embedding: indices must be an int64 tensor, got float64", "float indices");
    fails(ag_embedding(ag_randn(AG_SHAPE(5), AG_F64), ag_zeros(AG_SHAPE(2), AG_I64), AG_NO_PADDING_IDX), AG_ERR_SHAPE,
          "embedding: weight must be 2-D [num_embeddings, embedding_dim], got shape [5]", "a 1-D weight");
    fails(ag_embedding(ag_zeros(AG_SHAPE(5, 3), AG_I64), ag_zeros(AG_SHAPE(2), AG_I64), AG_NO_PADDING_IDX),
          AG_ERR_DTYPE, "embedding: weight must be float32 or float64, got int64", "an int64 weight");
    fails(ag_embedding(w, ag_zeros(AG_SHAPE(2), AG_I64), 5), AG_ERR_INDEX,
          "embedding: padding_idx 5 must be within num_embeddings 5", "padding_idx past the table");
    fails(ag_embedding(w, ag_zeros(AG_SHAPE(2), AG_I64), -6), AG_ERR_INDEX,
          "embedding: padding_idx -6 must be within num_embeddings 5", "padding_idx before the table");
    ag_module *m = ag_nn_embedding(4, 2, 4);
    ok(!m && ag_last_status() == AG_ERR_INDEX && strstr(ag_last_error(), "nn.Embedding: padding_idx 4"),
       "nn.Embedding refuses padding_idx out of range: %s", ag_last_error());
    m = ag_nn_embedding(-1, 2, AG_NO_PADDING_IDX);
    ok(!m && ag_last_status() == AG_ERR_ARG, "nn.Embedding refuses a negative size: %s", ag_last_error());
    m = ag_nn_embedding(4, 2, AG_NO_PADDING_IDX);
    const int64_t bad[1] = {4};
    fails(m ? ag_module_forward(m, ag_from_data(bad, AG_SHAPE(1), AG_I64)) : NULL, AG_ERR_INDEX,
          "embedding: index 4 is out of range for num_embeddings 4", "the module's index past its table");
    ag_module_free(m);
    ag_scope_end();
}

/* nn.Embedding: parameter "weight" [V, D] float32 drawn from N(0, 1), the padding row zeroed. */
static void test_module_init(void) {
    ag_module *m = ag_nn_embedding(400, 50, -3);
    ag_tensor *w = m ? ag_module_get_parameter(m, "weight") : NULL;
    ok(w && ag_ndim(w) == 2 && ag_shape_of(w).dim[0] == 400 && ag_shape_of(w).dim[1] == 50 && ag_dtype_of(w) == AG_F32 &&
       ag_requires_grad(w), "Embedding(400, 50) has a float32 parameter weight [400, 50] requiring grad");
    if (w) {
        const float *v = ag_data(w);
        double s = 0, s2 = 0, pad = 0;
        for (int i = 0; i < 400 * 50; i++) s += v[i], s2 += (double)v[i] * v[i];
        for (int j = 0; j < 50; j++) pad += fabs(v[397 * 50 + j]);
        double mean = s / 20000, sd = sqrt(s2 / 20000 - mean * mean);
        ok(fabs(mean) < 0.03 && fabs(sd - 1) < 0.03, "weight drawn from N(0, 1): mean %.4f, std %.4f", mean, sd);
        ok(pad == 0, "padding_idx -3 resolves to row 397, which starts at zero");
    }
    ag_module_free(m);
}

/* PyTorch's nn.Embedding(7, 3, padding_idx=-2): its state dict loads and gives its output and repr. */
static void test_module(void) {
    fixture_prints(ag_nn_embedding(10, 3, AG_NO_PADDING_IDX), "Embedding(10, 3)");
    fixture_prints(ag_nn_embedding(10, 3, 0), "Embedding(10, 3, padding_idx=0)");
    ag_module *m = ag_nn_embedding(7, 3, -2);
    ag_state_dict *sd = ag_state_dict_new();
    ag_state_dict_set(sd, "weight", F("module", "weight"));
    ok(m && ag_module_load_state_dict(m, sd, true) == AG_OK, "PyTorch's state dict loads strictly");
    ag_state_dict_free(sd);
    ag_scope_begin();
    agree("module", "y", ag_module_forward(m, F("module", "indices")), F("module", "y"), AG_F32);
    ag_tensor *y = ag_module_forward(m, F("module", "indices"));
    ok(y && ag_backward(ag_sum(y)) == AG_OK, "module backward");
    ag_tensor *g = ag_grad(ag_module_get_parameter(m, "weight"));
    double gv[21] = {0};
    if (g) ag_copy_to(g, gv, 21, AG_F64);
    ok(g && gv[15] == 0 && gv[16] == 0 && gv[17] == 0 && gv[18] == 1 && gv[0] == 1 && gv[3] == 1 && gv[9] == 1,
       "the padding row 5 (picked twice) gets no gradient, rows 0, 1, 3, 6 get one each");
    ag_scope_end();
    fixture_prints(m, "Embedding(7, 3, padding_idx=5)");
}

int main(void) {
    ag_manual_seed(7);
    fx = ag_load_safetensors(FIXTURES "/embedding.safetensors");
    ok(fx != NULL, "the fixture loads");
    if (fx) {
        test_fixture();
        test_module();
    }
    test_strided();
    test_strided_copy();
    test_errors();
    test_module_init();
    ag_state_dict_free(fx);
    return tap_done();
}

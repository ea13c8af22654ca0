/*
 * Layers and initialisation: BatchNorm1d, LayerNorm, PReLU and Dropout against
 * PyTorch's values (test/fixtures/nn_layers.safetensors, written by
 * scripts/gen_nn_fixtures.py): forward, input and parameter gradients, running
 * statistics.  Then what has no deterministic reference: Dropout and
 * GaussianNoise statistics and seeding, nn.init bounds and moments, orthogonal
 * matrices, calculate_gain, the BatchNorm1d state dict with PyTorch's names,
 * printing as print(model) does, and error messages.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "agrad/agrad.h"
#include "core/internal.h"
#include "core/parallel.h"
#include "core/sum.h"
#include "nn/qr.h"
#include "ops/norm.h"
#include "nn/repr.h"
#include "tap.h"
#include "test/fixture.h"

#ifndef FIXTURES
#define FIXTURES "test/fixtures"
#endif

static ag_state_dict *fx;
static double worst_seen[2]; /* worst relative error against PyTorch, float32 and float64 */

/* The fixture "<case>.<f32|f64>.<name>" (borrowed); NULL if absent. */
static ag_tensor *F(const char *c, ag_dtype dt, const char *name) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s.%s", c, dt == AG_F64 ? "f64" : "f32", name);
    ag_tensor *t = ag_state_dict_get(fx, key);
    if (!t) diag("missing fixture %s", key);
    return t;
}

/* float32 within 1e-5, float64 within 1e-12 (relative, as close_to). */
static void agree(const char *c, ag_dtype dt, const char *what, const ag_tensor *got, const ag_tensor *want) {
    double e = worst(got, want), tol = dt == AG_F64 ? 1e-12 : 1e-5;
    if (e > worst_seen[dt == AG_F64]) worst_seen[dt == AG_F64] = e;
    ok(e <= tol, "%s %s: %s matches PyTorch (worst relative error %.2g)", c, ag_dtype_name(dt), what, e);
}

static void set_param(ag_module *m, const char *name, const ag_tensor *v) {
    ag_no_grad_begin();
    ag_copy_(ag_module_get_parameter(m, name), v);
    ag_no_grad_end();
}

/* One forward/backward of m on the fixture's x_<tag> with upstream gradient dy_<tag>; compares y, dx and
 * the gradient of every parameter listed. */
static void step(ag_module *m, const char *c, ag_dtype dt, const char *tag, int np, const char *const *params) {
    char name[64];
    ag_scope_begin();
    snprintf(name, sizeof name, "x_%s", tag);
    ag_tensor *x = ag_requires_grad_(ag_clone(F(c, dt, name)), true);
    ag_tensor *y = ag_module_forward(m, x);
    snprintf(name, sizeof name, "dy_%s", tag);
    ag_status st = y ? ag_backward_ex(y, F(c, dt, name), false) : ag_last_status();
    ok(y && st == AG_OK, "%s %s: forward and backward of step %s%s%s", c, ag_dtype_name(dt), tag, st ? ": " : "",
       st ? ag_last_error() : "");
    snprintf(name, sizeof name, "y_%s", tag);
    agree(c, dt, name, y, F(c, dt, name));
    snprintf(name, sizeof name, "dx_%s", tag);
    agree(c, dt, name, ag_grad(x), F(c, dt, name));
    for (int i = 0; i < np; i++) {
        snprintf(name, sizeof name, "d%s_%s", params[i], tag);
        agree(c, dt, name, ag_grad(ag_module_get_parameter(m, params[i])), F(c, dt, name));
    }
    ag_module_zero_grad(m);
    ag_scope_end();
}

static const char *const affine[] = {"weight", "bias"};

static ag_module *in_dtype(ag_module *m, ag_dtype dt) {
    if (m && dt == AG_F64) ag_module_to_dtype(m, AG_F64);
    return m;
}

static void test_batch_norm(ag_dtype dt) {
    static const char *cases[] = {"bn2d", "bn3d"};
    for (int k = 0; k < 2; k++) {
        const char *c = cases[k];
        ag_module *m = in_dtype(ag_nn_batch_norm1d(k == 0 ? 4 : 3, 1e-5, 0.1, true, true), dt);
        set_param(m, "weight", F(c, dt, "weight"));
        set_param(m, "bias", F(c, dt, "bias"));
        const char *tags[] = {"a", "b"};
        for (int s = 0; s < 2; s++) {
            char name[64];
            step(m, c, dt, tags[s], 2, affine);
            snprintf(name, sizeof name, "running_mean_%s", tags[s]);
            agree(c, dt, name, ag_module_get_buffer(m, "running_mean"), F(c, dt, name));
            snprintf(name, sizeof name, "running_var_%s", tags[s]);
            agree(c, dt, name, ag_module_get_buffer(m, "running_var"), F(c, dt, name));
        }
        ag_tensor *nbt = ag_module_get_buffer(m, "num_batches_tracked");
        ok(ag_dtype_of(nbt) == AG_I64 && ag_item(nbt) == 2 && ag_item(F(c, dt, "num_batches_tracked")) == 2,
           "%s %s: num_batches_tracked is int64 2 after two steps, as PyTorch", c, ag_dtype_name(dt));
        ag_module_eval(m);
        step(m, c, dt, "c", 2, affine);
        ok(ag_item(nbt) == 2, "%s %s: eval leaves num_batches_tracked", c, ag_dtype_name(dt));
        ag_module_free(m);
    }

    /* momentum=None: cumulative moving average */
    ag_module *m = in_dtype(ag_nn_batch_norm1d(4, 1e-5, NAN, true, true), dt);
    ag_no_grad_begin();
    ag_scope_begin();
    ag_module_forward(m, F("bn2d", dt, "x_a"));
    ag_module_forward(m, F("bn2d", dt, "x_b"));
    ag_scope_end();
    ag_no_grad_end();
    agree("bn_cma", dt, "running_mean", ag_module_get_buffer(m, "running_mean"), F("bn_cma", dt, "running_mean"));
    agree("bn_cma", dt, "running_var", ag_module_get_buffer(m, "running_var"), F("bn_cma", dt, "running_var"));
    ag_module_free(m);

    m = in_dtype(ag_nn_batch_norm1d(3, 1e-5, 0.1, false, true), dt);
    ok(ag_module_num_parameter_tensors(m) == 0, "affine=False has no parameters");
    step(m, "bn_noaffine", dt, "a", 0, NULL);
    ag_module_free(m);

    m = in_dtype(ag_nn_batch_norm1d(4, 1e-5, 0.1, true, false), dt);
    ok(!ag_module_get_buffer(m, "running_mean") && !ag_module_get_buffer(m, "num_batches_tracked"),
       "track_running_stats=False has no buffers");
    set_param(m, "weight", F("bn_notrack", dt, "weight"));
    set_param(m, "bias", F("bn_notrack", dt, "bias"));
    ag_module_eval(m);
    step(m, "bn_notrack", dt, "a", 2, affine);
    ag_module_free(m);
}

/* BatchNorm2d over [N, C, H, W]: two training steps with different spatial sizes (running statistics
 * with the unbiased variance over N·H·W), eval, then momentum=None with affine=False. */
static void test_batch_norm2d(ag_dtype dt) {
    const char *c = "bn4d";
    ag_module *m = in_dtype(ag_nn_batch_norm2d(4, 1e-5, 0.1, true, true), dt);
    set_param(m, "weight", F(c, dt, "weight"));
    set_param(m, "bias", F(c, dt, "bias"));
    const char *tags[] = {"a", "b"};
    for (int s = 0; s < 2; s++) {
        char name[64];
        step(m, c, dt, tags[s], 2, affine);
        snprintf(name, sizeof name, "running_mean_%s", tags[s]);
        agree(c, dt, name, ag_module_get_buffer(m, "running_mean"), F(c, dt, name));
        snprintf(name, sizeof name, "running_var_%s", tags[s]);
        agree(c, dt, name, ag_module_get_buffer(m, "running_var"), F(c, dt, name));
    }
    ag_tensor *nbt = ag_module_get_buffer(m, "num_batches_tracked");
    ok(ag_item(nbt) == 2 && ag_item(F(c, dt, "num_batches_tracked")) == 2, "%s %s: num_batches_tracked is 2", c,
       ag_dtype_name(dt));
    ag_module_eval(m);
    step(m, c, dt, "c", 2, affine);
    ag_module_free(m);

    c = "bn4d_cma";
    m = in_dtype(ag_nn_batch_norm2d(4, 1e-5, NAN, false, true), dt);
    ok(ag_module_num_parameter_tensors(m) == 0, "BatchNorm2d affine=False has no parameters");
    step(m, c, dt, "a", 0, NULL);
    step(m, c, dt, "b", 0, NULL);
    agree(c, dt, "running_mean", ag_module_get_buffer(m, "running_mean"), F(c, dt, "running_mean"));
    agree(c, dt, "running_var", ag_module_get_buffer(m, "running_var"), F(c, dt, "running_var"));
    ag_scope_begin();
    ag_tensor *y = ag_module_forward(m, ag_zeros(AG_SHAPE(2, 4, 3), AG_F32));
    ok(!y && ag_last_status() == AG_ERR_SHAPE && strstr(ag_last_error(), "BatchNorm2d: expected 4D input (got 3D input)"),
       "BatchNorm2d refuses a 3-D input: %s", ag_last_error());
    ag_scope_end();
    ag_module_free(m);
}

/* GroupNorm: 2 groups with weight and bias; 1 group without affine, eps 1e-3. */
/* max |a - b| / max |b| (a float32, b float64) */
static double rel_to_max(ag_tensor *a, ag_tensor *b) {
    return ag_item(ag_max(ag_abs(ag_sub(ag_to_dtype(a, AG_F64), b)))) / ag_item(ag_max(ag_abs(b)));
}

/* batch_norm over [N, C] (BatchNorm1d's layout): one pass of statistics about each channel's first value,
 * the adjoint in float32 about the mean rounded to float32 with the rounding taken out.  Checked where that
 * matters: a mean of 1000 and a spread of 0.01 (the rounding of μ to float32 is 3e-5, 0.3% of σ), against
 * float64 of the same values; the same bits on one and two threads ([600, 301]: over 2^17 elements). */
static void test_batch_norm_cols(void) {
    ag_scope_begin();
    ag_manual_seed(5);
    ag_tensor *x = ag_requires_grad_(ag_add_scalar(ag_mul_scalar(ag_randn(AG_SHAPE(600, 301), AG_F32), 0.01), 1000), true);
    ag_tensor *w = ag_requires_grad_(ag_randn(AG_SHAPE(301), AG_F32), true);
    ag_tensor *b = ag_requires_grad_(ag_randn(AG_SHAPE(301), AG_F32), true);
    ag_tensor *g = ag_randn(AG_SHAPE(600, 301), AG_F32);
    ag_tensor *in64[3], *y64, *r[2][4];
    for (int i = 0; i < 3; i++) in64[i] = ag_requires_grad_(ag_to_dtype(ag_detach((ag_tensor *[]){x, w, b}[i]), AG_F64), true);
    y64 = ag_batch_norm(in64[0], NULL, NULL, in64[1], in64[2], true, 0.1, 1e-5);
    ag_backward_ex(y64, ag_to_dtype(g, AG_F64), false);
    const int saved = ag_get_num_threads();
    for (int t = 0; t < 2; t++) {
        ag_set_num_threads(t + 1);
        r[t][0] = ag_batch_norm(x, NULL, NULL, w, b, true, 0.1, 1e-5);
        ag_backward_ex(r[t][0], g, false);
        r[t][1] = ag_clone(ag_grad(x)), r[t][2] = ag_clone(ag_grad(w)), r[t][3] = ag_clone(ag_grad(b));
        ag_zero_grad(x), ag_zero_grad(w), ag_zero_grad(b);
    }
    ag_set_num_threads(saved);
    double diff = 0;
    for (int i = 0; i < 4; i++) diff += ag_item(ag_sum(ag_abs(ag_sub(r[0][i], r[1][i]))));
    ok(diff == 0, "batch_norm of [600, 301]: one and two threads give the same bits (total difference %g)", diff);
    const double ey = rel_to_max(r[0][0], y64), ex = rel_to_max(r[0][1], ag_grad(in64[0])),
                 ew = rel_to_max(r[0][2], ag_grad(in64[1])), eb = rel_to_max(r[0][3], ag_grad(in64[2]));
    ok(ey < 1e-6 && ex < 1e-5 && ew < 1e-5 && eb < 1e-6,
       "float32 batch_norm [600, 301], mean 1000, spread 0.01: y, dx, dw, db within %.1e, %.1e, %.1e, %.1e of float64 "
       "(relative to the largest)", ey, ex, ew, eb);
    ag_scope_end();
}

/* batch_norm over [N, C, H, W] splits its channels over threads: the outputs, running statistics and
 * gradients are the bits of one thread, and agree with the statistics computed in float64 by plain
 * reductions, at an odd size (7 channels of 5 x 67 x 59: 138 355 elements, enough to split). */
static void test_batch_norm_threads(void) {
    ag_scope_begin();
    ag_tensor *x = ag_requires_grad_(ag_add_scalar(ag_mul_scalar(ag_randn(AG_SHAPE(5, 7, 67, 59), AG_F32), 3), 2), true);
    ag_tensor *w = ag_requires_grad_(ag_randn(AG_SHAPE(7), AG_F32), true);
    ag_tensor *b = ag_requires_grad_(ag_randn(AG_SHAPE(7), AG_F32), true);
    ag_tensor *g = ag_randn(AG_SHAPE(5, 7, 67, 59), AG_F32);
    ag_tensor *y[2], *gx[2], *gw[2], *gb[2], *rm[2], *rv[2];
    const int saved = ag_get_num_threads();
    for (int t = 0; t < 2; t++) {
        ag_set_num_threads(t + 1);
        rm[t] = ag_zeros(AG_SHAPE(7), AG_F32), rv[t] = ag_ones(AG_SHAPE(7), AG_F32);
        y[t] = ag_batch_norm(x, rm[t], rv[t], w, b, true, 0.1, 1e-5);
        ag_backward_ex(y[t], g, false);
        gx[t] = ag_clone(ag_grad(x)), gw[t] = ag_clone(ag_grad(w)), gb[t] = ag_clone(ag_grad(b));
        ag_zero_grad(x), ag_zero_grad(w), ag_zero_grad(b);
    }
    ag_set_num_threads(saved);
    double diff = 0;
    ag_tensor *pairs[6][2] = {{y[0], y[1]}, {gx[0], gx[1]}, {gw[0], gw[1]}, {gb[0], gb[1]}, {rm[0], rm[1]}, {rv[0], rv[1]}};
    for (int i = 0; i < 6; i++) diff += ag_item(ag_sum(ag_abs(ag_sub(pairs[i][0], pairs[i][1]))));
    ok(diff == 0, "batch_norm of [5, 7, 67, 59]: one and two threads give the same bits (outputs, gradients, running "
                  "statistics; total difference %g)", diff);
    /* the running statistics against float64 reductions: momentum 0.1 from 0 and 1, unbiased variance */
    ag_tensor *x64 = ag_to_dtype(ag_detach(x), AG_F64);
    int dims[3] = {0, 2, 3};
    ag_tensor *m = ag_mean_dims(x64, 3, dims, false), *v = ag_var_dims(x64, 3, dims, 1, false);
    const double em = ag_item(ag_max(ag_abs(ag_sub(ag_to_dtype(rm[0], AG_F64), ag_mul_scalar(m, 0.1)))));
    const double ev = ag_item(ag_max(ag_abs(ag_sub(ag_to_dtype(rv[0], AG_F64), ag_add_scalar(ag_mul_scalar(v, 0.1), 0.9)))));
    ok(em < 1e-6 && ev < 1e-5, "its running mean and unbiased running variance match float64 reductions (%.2g, %.2g)", em, ev);
    ag_scope_end();
}

static void test_group_norm(ag_dtype dt) {
    ag_module *m = in_dtype(ag_nn_group_norm(2, 6, 1e-5, true), dt);
    set_param(m, "weight", F("gn", dt, "weight"));
    set_param(m, "bias", F("gn", dt, "bias"));
    step(m, "gn", dt, "a", 2, affine);
    ag_module_free(m);
    m = in_dtype(ag_nn_group_norm(1, 6, 1e-3, false), dt);
    ok(ag_module_num_parameter_tensors(m) == 0, "GroupNorm affine=False has no parameters");
    step(m, "gn_noaffine", dt, "a", 0, NULL);
    ag_module_free(m);
}

/* InstanceNorm2d: affine with running statistics over two training steps of different sizes, eval; the
 * default (no affine, no statistics) on a batch and on one unbatched sample [C, H, W]. */
static void test_instance_norm2d(ag_dtype dt) {
    const char *c = "in";
    ag_module *m = in_dtype(ag_nn_instance_norm2d(4, 1e-5, 0.1, true, true), dt);
    set_param(m, "weight", F(c, dt, "weight"));
    set_param(m, "bias", F(c, dt, "bias"));
    const char *tags[] = {"a", "b"};
    for (int s = 0; s < 2; s++) {
        char name[64];
        step(m, c, dt, tags[s], 2, affine);
        snprintf(name, sizeof name, "running_mean_%s", tags[s]);
        agree(c, dt, name, ag_module_get_buffer(m, "running_mean"), F(c, dt, name));
        snprintf(name, sizeof name, "running_var_%s", tags[s]);
        agree(c, dt, name, ag_module_get_buffer(m, "running_var"), F(c, dt, name));
    }
    ok(ag_item(ag_module_get_buffer(m, "num_batches_tracked")) == ag_item(F(c, dt, "num_batches_tracked")),
       "%s %s: num_batches_tracked stays %g, as PyTorch's", c, ag_dtype_name(dt), ag_item(F(c, dt, "num_batches_tracked")));
    ag_module_eval(m);
    step(m, c, dt, "c", 2, affine);
    ag_module_free(m);
    m = in_dtype(ag_nn_instance_norm2d(4, 1e-5, 0.1, false, false), dt);
    ok(ag_module_num_parameter_tensors(m) == 0 && !ag_module_get_buffer(m, "running_mean"),
       "InstanceNorm2d(4) has no parameters and no buffers");
    step(m, "in_plain", dt, "a", 0, NULL);
    step(m, "in_plain", dt, "u", 0, NULL);
    ag_scope_begin();
    ok(!ag_module_forward(m, ag_zeros(AG_SHAPE(2, 4), AG_F32)) && ag_last_status() == AG_ERR_SHAPE &&
       strstr(ag_last_error(), "InstanceNorm2d: expected 3D or 4D input (got 2D input)"), "a 2-D input fails: %s",
       ag_last_error());
    ag_scope_end();
    ag_module_free(m);
}

static void test_layer_norm(ag_dtype dt) {
    ag_module *m = in_dtype(ag_nn_layer_norm(AG_SHAPE(4), 1e-5, true), dt);
    set_param(m, "weight", F("ln4", dt, "weight"));
    set_param(m, "bias", F("ln4", dt, "bias"));
    step(m, "ln4", dt, "a", 2, affine);
    ag_module_free(m);
    m = in_dtype(ag_nn_layer_norm(AG_SHAPE(3, 4), 1e-5, true), dt);
    set_param(m, "weight", F("ln34", dt, "weight"));
    set_param(m, "bias", F("ln34", dt, "bias"));
    step(m, "ln34", dt, "a", 2, affine);
    ag_module_free(m);
    m = in_dtype(ag_nn_layer_norm(AG_SHAPE(5), 1e-3, false), dt);
    step(m, "ln_noaffine", dt, "a", 0, NULL);
    ag_module_free(m);
}

static void test_prelu(ag_dtype dt) {
    static const char *const w[] = {"weight"};
    ag_module *m = in_dtype(ag_nn_prelu(1, 0.25), dt);
    agree("prelu1", dt, "initial weight", ag_module_get_parameter(m, "weight"), F("prelu1", dt, "weight"));
    step(m, "prelu1", dt, "a", 1, w);
    ag_module_free(m);
    m = in_dtype(ag_nn_prelu(3, 0.25), dt);
    set_param(m, "weight", F("prelu3", dt, "weight"));
    step(m, "prelu3", dt, "a", 1, w);
    ag_module_free(m);
}

static void test_dropout_fixtures(ag_dtype dt) {
    ag_module *m = ag_nn_dropout(0);
    step(m, "drop_p0", dt, "a", 0, NULL);
    ag_module_free(m);
    m = ag_nn_dropout(0.5);
    ag_module_eval(m);
    step(m, "drop_eval", dt, "a", 0, NULL);
    ag_module_free(m);
    m = ag_nn_dropout(1);
    step(m, "drop_p1", dt, "a", 0, NULL);
    ag_module_free(m);
}

typedef struct moments {
    double mean, std, lo, hi;
} moments;

static moments moments_of(const ag_tensor *t) {
    int64_t n = ag_numel(t);
    double *v = malloc(sizeof(double) * (size_t)n), s = 0, q = 0;
    ag_copy_to(t, v, n, AG_F64);
    moments m = {0, 0, INFINITY, -INFINITY};
    for (int64_t i = 0; i < n; i++) {
        s += v[i];
        m.lo = fmin(m.lo, v[i]);
        m.hi = fmax(m.hi, v[i]);
    }
    m.mean = s / (double)n;
    for (int64_t i = 0; i < n; i++) q += (v[i] - m.mean) * (v[i] - m.mean);
    m.std = sqrt(q / (double)(n - 1));
    free(v);
    return m;
}

/* ---- Dropout and GaussianNoise statistics ------------------------------------------------------------------------ */
static void test_dropout_statistics(void) {
    const int64_t n = 1000000;
    const double p = 0.3;
    ag_scope_begin();
    ag_tensor *x = ag_requires_grad_(ag_ones(AG_SHAPE(1000, 1000), AG_F32), true);
    ag_manual_seed(42);
    ag_tensor *y = ag_dropout(x, p, true);
    ag_manual_seed(42);
    ag_tensor *y2 = ag_dropout(x, p, true);
    ag_tensor *y3 = ag_dropout(x, p, true);
    const float *v = ag_data(y);
    int64_t zeros = 0, bad = 0;
    for (int64_t i = 0; i < n; i++) {
        if (v[i] == 0) zeros++;
        else if (v[i] != (float)(1 / (1 - p))) bad++;
    }
    double frac = (double)zeros / (double)n, sigma = sqrt(p * (1 - p) / (double)n);
    ok(fabs(frac - p) < 5 * sigma, "Dropout(0.3) zeroes a fraction %.5f of 1e6 elements (p = 0.3, 5 sigma = %.4f)", frac,
       5 * sigma);
    ok(bad == 0, "every kept value is scaled by 1/(1 - p) = %.6f (%lld are not)", 1 / (1 - p), (long long)bad);
    close_to(ag_item(ag_mean(y)), 1.0, 5 * sqrt(p / (1 - p) / (double)n), "inverted scaling keeps the mean: %.5f",
             ag_item(ag_mean(y)));
    ok(worst(y, y2) == 0, "the same seed gives the same mask");
    ok(worst(y, y3) > 0, "the next draw gives another mask");
    ok(ag_grad_fn_name(y) && strcmp(ag_grad_fn_name(y), "MulBackward0") == 0, "y = x·mask is recorded (%s)",
       ag_grad_fn_name(y));
    ok(ag_backward(ag_sum(y)) == AG_OK && worst(ag_grad(x), y) == 0, "dx = the scaled mask (x is ones)");
    ok(ag_dropout(x, 0.5, false) == x && ag_dropout(x, 0, true) == x, "eval and p = 0 return x itself");
    ok(ag_dropout(x, 1.5, true) == NULL && strstr(ag_last_error(), "between 0 and 1"), "p = 1.5 fails: %s",
       ag_last_error());
    ok(ag_nn_dropout(-0.1) == NULL, "nn.Dropout(-0.1) fails: %s", ag_last_error());

    ag_zero_grad(x);
    ag_module *g = ag_nn_gaussian_noise(0.5);
    ag_manual_seed(5);
    ag_tensor *z = ag_module_forward(g, x);
    ag_tensor *d = ag_sub(z, x);
    moments md = moments_of(d);
    double mean = md.mean, sd = md.std;
    ok(fabs(mean) < 5 * 0.5 / 1000 && fabs(sd - 0.5) < 0.005, "GaussianNoise(0.5) adds noise of mean %.5f and std %.5f",
       mean, sd);
    ok(ag_backward(ag_sum(z)) == AG_OK && moments_of(ag_grad(x)).lo == 1 && moments_of(ag_grad(x)).hi == 1,
       "GaussianNoise passes dy unchanged");
    ag_manual_seed(5);
    ok(worst(ag_module_forward(g, x), z) == 0, "GaussianNoise is reproducible with a seed");
    ag_module_eval(g);
    ok(ag_module_forward(g, x) == x, "GaussianNoise is the identity in eval mode");
    ag_module_free(g);
    ok(ag_nn_gaussian_noise(-1) == NULL, "negative std fails: %s", ag_last_error());
    ag_scope_end();
}

/* SplitMix64's output for counter j under key k (docs/nn-layers.md, Dropout: how a mask is drawn) */
static uint64_t splitmix_at(uint64_t k, uint64_t j) {
    uint64_t z = k + (j + 1) * 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Dropout's mask is counter-based: one draw of the seeded generator is the key, element i is kept when
 * half i mod 2 of splitmix(key, i/2) is below (1 - p)·2^32.  So it is split over threads with the same
 * bits for 1 and 2 threads (an odd size over 2^17 elements takes the threaded path and the lone tail). */
static void test_dropout_counter_mask(ag_dtype dt) {
    const int64_t n = ((int64_t)1 << 17) * 3 + 1;
    const double p = 0.25;
    const int threads = ag_get_num_threads();
    ag_scope_begin();
    ag_tensor *x = ag_ones(AG_SHAPE(n), dt);
    ag_manual_seed(11);
    const uint64_t key = ag__rand_u64();
    ag_set_num_threads(1);
    ag_manual_seed(11);
    ag_tensor *y1 = ag_dropout(x, p, true);
    ag_set_num_threads(2);
    ag_manual_seed(11);
    ag_tensor *y2 = ag_dropout(x, p, true);
    ag_set_num_threads(threads);
    double *v = malloc(sizeof(double) * (size_t)n);
    ag_copy_to(y1, v, n, AG_F64);
    const uint64_t bound = (uint64_t)ceil(0.75 * 4294967296.0);
    int64_t wrong = 0, drop[2] = {0, 0}, both = 0;
    for (int64_t i = 0; i < n; i++) {
        const uint64_t h = splitmix_at(key, (uint64_t)i / 2), half = i % 2 ? h >> 32 : h & 0xffffffffu;
        const double want = half < bound ? (double)(dt == AG_F64 ? 1 / (1 - p) : (float)(1 / (1 - p))) : 0;
        wrong += v[i] != want;
        drop[i % 2] += v[i] == 0;
        both += i % 2 && v[i] == 0 && v[i - 1] == 0;
    }
    const double pairs = (double)(n / 2), sigma = sqrt(p * (1 - p) / pairs), sigma2 = sqrt(p * p * (1 - p * p) / pairs);
    ok(wrong == 0, "%s dropout mask: element i follows splitmix(key, i/2), key = one draw after the seed (%lld differ)",
       ag_dtype_name(dt), (long long)wrong);
    ok(worst(y1, y2) == 0, "%s dropout mask: the same bits on 1 and 2 threads (%lld elements)", ag_dtype_name(dt),
       (long long)n);
    ok(fabs((double)drop[0] / pairs - p) < 5 * sigma && fabs((double)drop[1] / pairs - p) < 5 * sigma &&
           fabs((double)both / pairs - p * p) < 5 * sigma2,
       "%s dropout mask: even and odd elements each dropped at %.4f and %.4f, both of a pair at %.4f (p² = %.4f)",
       ag_dtype_name(dt), (double)drop[0] / pairs, (double)drop[1] / pairs, (double)both / pairs, p * p);
    free(v);
    ag_scope_end();
}

/* Whether t's graph has a node named name (ag_graph_print's text). */
static bool graph_has(const ag_tensor *t, const char *name) {
    FILE *f = tmpfile();
    char line[512];
    bool found = false;
    if (!f || ag_graph_print(f, t) != AG_OK) return false;
    rewind(f);
    while (!found && fgets(line, sizeof line, f)) found = strstr(line, name) != NULL;
    fclose(f);
    return found;
}

static ag_status count_call(ag_module *m, ag_tensor *x, ag_tensor *y, ag_tensor **replace, void *user) {
    (void)m, (void)x, (void)y, (void)replace;
    ++*(int *)user;
    return AG_OK;
}

/* Batch norm over [N, C] sums by fixed chunks of rows (ops/norm.c bn_chunk_rows): above K rows (64, or more to
 * keep at most 16 chunks; K from N alone) each chunk's float64 sums from 0 in row order (the forward's Σd, Σd²
 * about the channel's first value s, chunk 0 from row 1; the adjoint's Σdy, Σdy·(x - μ)), combined in chunk
 * order; up to K rows one chunk, row order.  The sums' bits are made here in that order and compared with
 * float64's running mean and unbiased variance (momentum 1), dw and db, on one thread and two, and every
 * output the same bits on both.  A column whose sum the order decides (2^60, sixty-four 4s from row 64,
 * -2^60 at row 128, of 192 rows): 256 by chunks of 64, 0 in row order.  The chunks' order moves a float64
 * sum by at most 2·N·2^-53·Σ|d| from row order's; checked for float32's db and float64's mean. */
static void bn_chunk_sums(const double *x, const double *dy, int64_t N, int64_t C, int64_t c, int64_t K,
                          double eps, double *mean, double *var, double *dw, double *db) {
    double S = 0, Q = 0, sdy = 0, sdyx = 0;
    const double s = x[c];
    for (int64_t k = 0; k * K < N; k++) {
        double m = 0, q = 0;
        for (int64_t r = k ? k * K : 1; r < N && r < k * K + K; r++) {
            const double d = x[r * C + c] - s;
            m += d;
            q += d * d;
        }
        S = k ? S + m : m, Q = k ? Q + q : q;
    }
    const double M = (double)N, qq = Q - S * S / M, sq = qq < 0 ? 0 : qq;
    *mean = s + S / M, *var = sq / (M - 1);
    for (int64_t k = 0; k * K < N; k++) {
        double a = 0, b = 0;
        for (int64_t r = k * K; r < N && r < k * K + K; r++) {
            a += dy[r * C + c];
            b += dy[r * C + c] * (x[r * C + c] - *mean);
        }
        sdy = k ? sdy + a : a, sdyx = k ? sdyx + b : b;
    }
    *db = sdy, *dw = sdyx * (1 / sqrt(sq / M + eps));
}

static void test_bn_cols_chunks(void) {
    const int before = ag_get_num_threads();
    ok(ag__bn_chunk_rows(64) == 64 && ag__bn_chunk_rows(65) == 64 && ag__bn_chunk_rows(1024) == 64 &&
           ag__bn_chunk_rows(1025) == 72 && ag__bn_chunk_rows(4000) == 256,
       "batch norm over [N, C]: chunks of 64 rows, more from 1025 rows (16 chunks at most)");
    ag_set_num_threads(2);
    const bool passive = ag__omp_passive;
    ag__omp_passive = false;
    const bool spin = ag__bn_rows_threads(256, 512, true) == 2 && ag__bn_rows_threads(256, 512, false) == 2 &&
                      ag__bn_rows_threads(1000, 37, true) == 1;
    ag__omp_passive = true;
    const bool sleep = ag__bn_rows_threads(256, 512, true) == 1 && ag__bn_rows_threads(256, 512, false) == 1 &&
                       ag__bn_rows_threads(1024, 512, true) == 1 && ag__bn_rows_threads(1024, 512, false) == 2;
    ag__omp_passive = passive;
    ok(spin && sleep, "batch norm over [N, C] by chunks, two threads: [256, 512] on both, [1000, 37] on one; under "
                      "OMP_WAIT_POLICY=passive the forward on one, the adjoint on two from [1024, 512]");
    static const int64_t shapes[][2] = {{1000, 37}, {200, 70}, {256, 512}, {64, 70}, {192, 3}};
    for (int s = 0; s < 5; s++) {
        ag_scope_begin();
        ag_manual_seed(17);
        const int64_t N = shapes[s][0], C = shapes[s][1], K = N > ag__bn_chunk_rows(N) ? ag__bn_chunk_rows(N) : N;
        ag_tensor *x = ag_add_scalar(ag_mul_scalar(ag_randn(AG_SHAPE(N, C), AG_F64), 3), 5);
        ag_tensor *g = ag_randn(AG_SHAPE(N, C), AG_F64);
        if (s == 4) { /* column 0: its sums 256 by chunks of 64 rows, 0 in row order */
            double *xp = ag_data(x), *gp = ag_data(g);
            for (int64_t r = 0; r < N; r++) xp[r * C] = gp[r * C] = r >= 64 && r < 128 ? 4 : 0;
            xp[C] = gp[0] = 0x1p60, xp[128 * C] = gp[128 * C] = -0x1p60;
        }
        ag_tensor *res[2][6] = {{NULL}};
        bool fine = true;
        for (int t = 0; t < 2 && fine; t++) {
            ag_set_num_threads(t + 1);
            ag_tensor *xi = ag_requires_grad_(ag_clone(x), true), *rm = ag_zeros(AG_SHAPE(C), AG_F64);
            ag_tensor *w = ag_requires_grad_(ag_ones(AG_SHAPE(C), AG_F64), true), *rv = ag_ones(AG_SHAPE(C), AG_F64);
            ag_tensor *b = ag_requires_grad_(ag_zeros(AG_SHAPE(C), AG_F64), true);
            ag_tensor *y = ag_batch_norm(xi, rm, rv, w, b, true, 1.0, 1e-5);
            fine = y && ag_backward_ex(y, g, false) == AG_OK;
            ag_tensor *r[6] = {y, ag_grad(xi), ag_grad(w), ag_grad(b), rm, rv};
            for (int i = 0; fine && i < 6; i++) fine = (res[t][i] = r[i]) != NULL;
        }
        for (int i = 0; fine && i < 6; i++)
            fine = memcmp(ag_data(res[0][i]), ag_data(res[1][i]), (size_t)ag_numel(res[0][i]) * sizeof(double)) == 0;
        ok(fine, "float64 batch_norm [%lld, %lld]: y, dx, dw, db, running mean and variance the same bits on 1 and 2 "
                 "threads", (long long)N, (long long)C);
        int bad = fine ? 0 : -1;
        for (int64_t c = 0; c < C && fine; c++) {
            double mean, var, dw, db;
            bn_chunk_sums(ag_data(x), ag_data(g), N, C, c, K, 1e-5, &mean, &var, &dw, &db);
            for (int t = 0; t < 2; t++)
                if (((double *)ag_data(res[t][4]))[c] != mean || ((double *)ag_data(res[t][5]))[c] != var ||
                    ((double *)ag_data(res[t][2]))[c] != dw || ((double *)ag_data(res[t][3]))[c] != db)
                    bad++;
        }
        ok(bad == 0, "float64 batch_norm [%lld, %lld]: the mean, variance, dw and db of the sums by chunks of %lld rows "
                     "in chunk order, bit for bit on 1 and 2 threads (%d differ)", (long long)N, (long long)C,
           (long long)K, bad);
        if (s == 4)
            ok(fine && ((double *)ag_data(res[1][3]))[0] == 256 && ((double *)ag_data(res[1][4]))[0] == 256.0 / 192,
               "float64 batch_norm [192, 3], a column whose sum the order decides: db 256 and mean 256/192 by chunks "
               "(row order: 0)");
        if (s == 0 && fine) { /* the mean within 2·N·2^-53·Σ|d|/M (+ two roundings) of row order's */
            const double *xp = ag_data(x), *mp = ag_data(res[0][4]);
            double worst = 0;
            for (int64_t c = 0; c < C; c++) {
                double S = 0, A = 0;
                for (int64_t r = 1; r < N; r++) S += xp[r * C + c] - xp[c], A += fabs(xp[r * C + c] - xp[c]);
                const double ref = xp[c] + S / (double)N;
                const double bound = (2.0 * (double)N + 4) * 0x1p-53 * A / (double)N + 0x1p-52 * fabs(ref);
                worst = fmax(worst, fabs(mp[c] - ref) / bound);
            }
            ok(worst <= 1, "float64 batch_norm [1000, 37]: the chunks' mean within the bound of row order's "
                           "(worst %.3f of it)", worst);
        }
        ag_scope_end();
    }
    /* float32's db: Σdy in float64 by chunks, rounded once: within 2^-24·|Σ| + 2·N·2^-53·Σ|dy| of row order's */
    ag_scope_begin();
    ag_set_num_threads(2);
    ag_tensor *x = ag_requires_grad_(ag_randn(AG_SHAPE(1000, 37), AG_F32), true);
    ag_tensor *g = ag_mul_scalar(ag_add_scalar(ag_randn(AG_SHAPE(1000, 37), AG_F32), 0.5), 1e3);
    ag_tensor *b = ag_requires_grad_(ag_zeros(AG_SHAPE(37), AG_F32), true);
    ag_tensor *y = ag_batch_norm(x, NULL, NULL, NULL, b, true, 0.1, 1e-5);
    double worst = INFINITY;
    if (y && ag_backward_ex(y, g, false) == AG_OK) {
        const float *gp = ag_data(g), *db = ag_data(ag_grad(b));
        worst = 0;
        for (int c = 0; c < 37; c++) {
            double S = 0, A = 0;
            for (int r = 0; r < 1000; r++) S += gp[r * 37 + c], A += fabs(gp[r * 37 + c]);
            worst = fmax(worst, fabs(db[c] - S) / (0x1p-24 * fabs(S) + 2000 * 0x1p-53 * A));
        }
    }
    ok(worst <= 1, "float32 batch_norm [1000, 37]: db by chunks within 2^-24·|Σ| + 2·N·2^-53·Σ|dy| of row order's "
                   "float64 sum (worst %.3f of it)", worst);
    ag_scope_end();
    ag_set_num_threads(before);
}

/* batch_norm_relu and batch_norm_relu_dropout over [N, C] by chunks of rows: y, dx, dw, db the same bits on one
 * thread and two (training: [256, 512], bench_steps' mlp_bn_dropout, and [256, 2048]; [64, 2048]: one chunk, the
 * channels in two blocks of 1024); batch_norm_relu's y and dx are ag_relu(ag_batch_norm(...))'s bits in
 * training and in evaluation (its pass by rows). */
static void test_bn_cols_threads(void) {
    const int before = ag_get_num_threads();
    ag_set_num_threads(2);
    ok(ag__bn_cols_threads(64, 512) == 1 && ag__bn_cols_threads(64, 2048) == 2 && ag__bn_cols_threads(8, 2048) == 1,
       "batch norm over [N, C] of one chunk on two threads: channel blocks of 1024 at least");
    static const int64_t shapes[][2] = {{256, 512}, {256, 2048}, {64, 2048}};
    for (int s = 0; s < 3; s++) {
        ag_scope_begin();
        const int64_t n = shapes[s][0], c = shapes[s][1];
        ag_tensor *x = ag_randn(AG_SHAPE(n, c), AG_F32), *g = ag_randn(AG_SHAPE(n, c), AG_F32), *res[2][4] = {{NULL}};
        bool fine = true;
        for (int t = 0; t < 2 && fine; t++) {
            ag_set_num_threads(t + 1);
            ag_manual_seed(11); /* the same dropout mask */
            ag_tensor *xi = ag_requires_grad_(ag_clone(x), true), *w = ag_requires_grad_(ag_rand(AG_SHAPE(c), AG_F32), true);
            ag_tensor *b = ag_requires_grad_(ag_randn(AG_SHAPE(c), AG_F32), true);
            ag_tensor *y = ag_batch_norm_relu_dropout(xi, NULL, NULL, w, b, true, 0.1, 1e-5, 0.1);
            fine = y && ag_backward_ex(y, g, false) == AG_OK;
            ag_tensor *r[4] = {y, ag_grad(xi), ag_grad(w), ag_grad(b)};
            for (int i = 0; fine && i < 4; i++) fine = (res[t][i] = r[i]) != NULL;
        }
        for (int i = 0; fine && i < 4; i++)
            fine = memcmp(ag_data(res[0][i]), ag_data(res[1][i]), (size_t)ag_numel(res[0][i]) * sizeof(float)) == 0;
        ok(fine, "batch_norm_relu_dropout [%lld, %lld]: y, dx, dw, db the same bits on 1 and 2 threads", (long long)n,
           (long long)c);
        for (int training = 1; training >= 0; training--) {
            ag_set_num_threads(2);
            ag_tensor *rm = ag_randn(AG_SHAPE(c), AG_F32), *rv = ag_rand(AG_SHAPE(c), AG_F32);
            ag_tensor *x1 = ag_requires_grad_(ag_clone(x), true), *x2 = ag_requires_grad_(ag_clone(x), true);
            ag_tensor *y1 = ag_batch_norm_relu(x1, ag_clone(rm), ag_clone(rv), NULL, NULL, training, 0.1, 1e-5);
            ag_tensor *y2 = ag_relu(ag_batch_norm(x2, ag_clone(rm), ag_clone(rv), NULL, NULL, training, 0.1, 1e-5));
            bool same = y1 && y2 && ag_backward_ex(y1, g, false) == AG_OK && ag_backward_ex(y2, g, false) == AG_OK;
            const size_t bytes = (size_t)(n * c) * sizeof(float);
            same = same && memcmp(ag_data(y1), ag_data(y2), bytes) == 0 &&
                   memcmp(ag_data(ag_grad(x1)), ag_data(ag_grad(x2)), bytes) == 0;
            ok(same, "batch_norm_relu [%lld, %lld], %s, two threads: y and dx the bits of relu(batch_norm)", (long long)n,
               (long long)c, training ? "training" : "eval");
        }
        ag_scope_end();
    }
    ag_set_num_threads(before);
}

/* nn.Sequential runs a Linear followed by a ReLU as one op (ops/matmul.c linear_relu, the ReLU the matmul
 * primitive's post-ops): over 97 rows (the primitive) and 5 (sgemm), the same output bits as
 * ag_relu(ag_linear()) with NaN and zeros of both signs in x, one ReluBackward0 node and no AddmmBackward0,
 * the same x and W gradients and a bias gradient within float32 rounding (summed in float64); a hook
 * on the Linear, a Dropout after the ReLU and bf16 autocast keep the modules apart. */
static void test_linear_relu_fused(void) {
    ag_scope_begin();
    ag_manual_seed(5);
    ag_module *seq = AG_SEQUENTIAL(ag_nn_linear(437, 301, true), ag_nn_relu());
    ag_tensor *w = ag_module_get_parameter(ag_module_child(seq, 0, NULL), "weight");
    ag_tensor *b = ag_module_get_parameter(ag_module_child(seq, 0, NULL), "bias");
    for (int r = 0; r < 2; r++) {
        const int64_t rows = r ? 5 : 97;
        ag_tensor *data = ag_randn(AG_SHAPE(rows, 437), AG_F32), *g = ag_randn(AG_SHAPE(rows, 301), AG_F32);
        ag_tensor *nan = ag_clone(data); /* a NaN in row 1: that row of y is NaN */
        ag_fill_(ag_narrow(ag_narrow(nan, 0, 1, 1), 1, 7, 1), NAN);
        ag_tensor *yn1 = ag_module_forward(seq, nan), *yn2 = ag_relu(ag_linear(nan, w, b));
        const size_t bytes = (size_t)ag_numel(yn2) * sizeof(float);
        ok(yn1 && yn2 && memcmp(ag_data(yn1), ag_data(yn2), bytes) == 0 && isnan(((float *)ag_data(yn1))[301]),
           "linear+relu fused, %lld rows: the same bits as unfused (NaN kept)", (long long)rows);
        ag_tensor *x1 = ag_requires_grad_(ag_clone(data), true), *x2 = ag_requires_grad_(ag_clone(data), true);
        ag_tensor *y1 = ag_module_forward(seq, x1), *y2 = ag_relu(ag_linear(x2, w, b));
        ok(y1 && strcmp(ag_grad_fn_name(y1), "ReluBackward0") == 0 && !graph_has(y1, "AddmmBackward0") &&
               graph_has(y2, "AddmmBackward0"),
           "linear+relu fused, %lld rows: one ReluBackward0 node", (long long)rows);
        ag_backward(ag_sum(ag_mul(y1, g)));
        ag_tensor *gw1 = ag_clone(ag_grad(w)), *gb1 = ag_clone(ag_grad(b));
        ag_zero_grad(w), ag_zero_grad(b);
        ag_backward(ag_sum(ag_mul(y2, g)));
        ok(worst(ag_grad(x1), ag_grad(x2)) == 0 && worst(gw1, ag_grad(w)) == 0 && worst(gb1, ag_grad(b)) < 1e-5,
           "linear+relu fused, %lld rows: the unfused gradients (dx, dW the same bits, db %.2g)", (long long)rows,
           worst(gb1, ag_grad(b)));
        ag_zero_grad(w), ag_zero_grad(b);
    }
    ag_tensor *x = ag_randn(AG_SHAPE(16, 437), AG_F32);
    int calls = 0;
    ag_hook_handle h;
    ag_module_register_forward_hook(ag_module_child(seq, 0, NULL), count_call, &calls, &h);
    ag_tensor *y3 = ag_module_forward(seq, ag_requires_grad_(ag_clone(x), true));
    ok(calls == 1 && y3 && graph_has(y3, "AddmmBackward0"), "linear+relu: a hook on Linear runs the modules apart");
    ag_hook_remove(h);
    ag_module *seq2 = AG_SEQUENTIAL(ag_nn_linear(437, 30, true), ag_nn_relu(), ag_nn_dropout(0.2));
    ag_tensor *y4 = ag_module_forward(seq2, ag_requires_grad_(ag_clone(x), true));
    ok(y4 && graph_has(y4, "AddmmBackward0") && strcmp(ag_grad_fn_name(y4), "MulBackward0") == 0,
       "linear+relu+dropout: relu fused with dropout, not with linear");
    ag_autocast_begin(AG_AUTOCAST_BF16, true);
    ag_tensor *y5 = ag_module_forward(seq, ag_requires_grad_(ag_clone(x), true));
    ag_autocast_end();
    ok(y5 && graph_has(y5, "AddmmBackward0"), "linear+relu under bf16 autocast: the modules apart");
    ag_module_free(seq2);
    ag_module_free(seq);
    ag_scope_end();
}

/* Whether a and b hold the same bytes (same shape, contiguous). */
static bool same_bits(const ag_tensor *a, const ag_tensor *b) {
    return a && b && ag_numel(a) == ag_numel(b) &&
           memcmp(ag_data(a), ag_data(b), (size_t)ag_numel(a) * ag_dtype_size(a->dtype)) == 0;
}

/* After y1 = fused(x1) and y2 = apart(x2) in training (two Sequentials whose first module is a batch
 * norm, `what` fused in the first): the same running statistics, and after the backward of Σ y·g
 * the same dx, dw and db bits. */
static void check_same_training(ag_module *fused, ag_module *apart, ag_tensor *x1, ag_tensor *x2, ag_tensor *y1,
                                ag_tensor *y2, ag_tensor *g, const char *dn, const char *what) {
    ag_module *b1 = ag_module_child(fused, 0, NULL), *b2 = ag_module_child(apart, 0, NULL);
    ok(same_bits(ag_module_get_buffer(b1, "running_mean"), ag_module_get_buffer(b2, "running_mean")) &&
           same_bits(ag_module_get_buffer(b1, "running_var"), ag_module_get_buffer(b2, "running_var")),
       "%s %s fused: the same running statistics", dn, what);
    ag_backward(ag_sum(ag_mul(y1, g)));
    ag_backward(ag_sum(ag_mul(y2, g)));
    ok(same_bits(ag_grad(x1), ag_grad(x2)) &&
           same_bits(ag_grad(ag_module_get_parameter(b1, "weight")), ag_grad(ag_module_get_parameter(b2, "weight"))) &&
           same_bits(ag_grad(ag_module_get_parameter(b1, "bias")), ag_grad(ag_module_get_parameter(b2, "bias"))),
       "%s %s fused: the same dx, dw and db bits", dn, what);
}

/* nn.Sequential runs a BatchNorm2d (or a BatchNorm1d over [N, C, L]) followed by a ReLU as one op (ops/norm.c
 * batch_norm_relu): the same bits as the modules one by one (a hook on the ReLU keeps them apart) for y
 * (zeros of both signs and a NaN channel in x), the running statistics, dx, dw and db, in training and eval,
 * one ReluBackward0 node and no NativeBatchNormBackward0; a Dropout after the ReLU, a BatchNorm1d over [N, C]
 * and a hook on the BatchNorm keep the modules apart. */
static void test_batch_norm_relu_fused(ag_dtype dt) {
    const char *dn = dt == AG_F32 ? "float32" : "float64";
    ag_scope_begin();
    ag_manual_seed(9);
    ag_module *fused = in_dtype(AG_SEQUENTIAL(ag_nn_batch_norm2d(5, 1e-5, 0.1, true, true), ag_nn_relu()), dt);
    ag_module *apart = in_dtype(AG_SEQUENTIAL(ag_nn_batch_norm2d(5, 1e-5, 0.1, true, true), ag_nn_relu()), dt);
    int calls = 0;
    ag_hook_handle h;
    ag_module_register_forward_hook(ag_module_child(apart, 1, NULL), count_call, &calls, &h);
    const char *params[] = {"weight", "bias"};
    for (int i = 0; i < 2; i++) { /* the same random affine parameters in both */
        ag_tensor *v = ag_randn(AG_SHAPE(5), dt);
        set_param(ag_module_child(fused, 0, NULL), params[i], v);
        set_param(ag_module_child(apart, 0, NULL), params[i], v);
    }
    ag_tensor *data = ag_randn(AG_SHAPE(6, 5, 7, 9), dt), *g = ag_randn(AG_SHAPE(6, 5, 7, 9), dt);
    ag_fill_(ag_narrow(ag_narrow(data, 0, 1, 1), 1, 3, 1), 0.0);
    ag_fill_(ag_narrow(ag_narrow(data, 0, 2, 1), 1, 3, 1), -0.0);
    ag_tensor *nan = ag_clone(data);
    ag_fill_(ag_narrow(ag_narrow(ag_narrow(nan, 0, 4, 1), 1, 2, 1), 2, 3, 1), NAN);
    ag_tensor *yn1 = ag_module_forward(fused, nan), *yn2 = ag_module_forward(apart, nan);
    ok(same_bits(yn1, yn2) && calls == 1, "%s batchnorm2d+relu fused: the same bits as unfused (a NaN channel)", dn);
    ag_tensor *x1 = ag_requires_grad_(ag_clone(data), true), *x2 = ag_requires_grad_(ag_clone(data), true);
    ag_tensor *y1 = ag_module_forward(fused, x1), *y2 = ag_module_forward(apart, x2);
    ok(same_bits(y1, y2) && y1 && strcmp(ag_grad_fn_name(y1), "ReluBackward0") == 0 &&
           !graph_has(y1, "NativeBatchNormBackward0") && graph_has(y2, "NativeBatchNormBackward0"),
       "%s batchnorm2d+relu fused: the same y, one ReluBackward0 node", dn);
    check_same_training(fused, apart, x1, x2, y1, y2, g, dn, "batchnorm2d+relu");
    ag_module_eval(fused), ag_module_eval(apart);
    ag_tensor *e1 = ag_module_forward(fused, ag_requires_grad_(ag_clone(data), true));
    ag_tensor *e2 = ag_module_forward(apart, data);
    ok(same_bits(e1, e2) && e1 && strcmp(ag_grad_fn_name(e1), "ReluBackward0") == 0,
       "%s batchnorm2d+relu fused in eval: the same bits", dn);
    ag_hook_remove(h);
    ag_module *seq = AG_SEQUENTIAL(ag_nn_batch_norm1d(5, 1e-5, 0.1, true, true), ag_nn_relu(), ag_nn_dropout(0.2));
    ag_tensor *x3 = ag_requires_grad_(ag_randn(AG_SHAPE(4, 5, 3), AG_F32), true);
    ag_tensor *y3 = ag_module_forward(seq, x3);
    ok(y3 && graph_has(y3, "NativeBatchNormBackward0"), "batchnorm1d+relu+dropout: relu fused with dropout, not with the norm");
    ag_module *seq1d = AG_SEQUENTIAL(ag_nn_batch_norm1d(5, 1e-5, 0.1, true, true), ag_nn_relu());
    ag_tensor *y4 = ag_module_forward(seq1d, ag_requires_grad_(ag_randn(AG_SHAPE(4, 5, 3), AG_F32), true));
    ag_tensor *y5 = ag_module_forward(seq1d, ag_requires_grad_(ag_randn(AG_SHAPE(4, 5), AG_F32), true));
    ok(y4 && !graph_has(y4, "NativeBatchNormBackward0") && y5 && graph_has(y5, "NativeBatchNormBackward0"),
       "batchnorm1d+relu: fused over [N, C, L], apart over [N, C]");
    ag_module_register_forward_hook(ag_module_child(seq1d, 0, NULL), count_call, &calls, &h);
    ag_tensor *y6 = ag_module_forward(seq1d, ag_requires_grad_(ag_randn(AG_SHAPE(4, 5, 3), AG_F32), true));
    ok(y6 && graph_has(y6, "NativeBatchNormBackward0"), "batchnorm1d+relu: a hook on the norm runs the modules apart");
    ag_hook_remove(h);
    ag_module_free(seq1d);
    ag_module_free(seq);
    ag_module_free(apart);
    ag_module_free(fused);
    ag_scope_end();
}

/* ag_batch_norm_relu's adjoint over planes remakes relu's mask from x and the forward's saved scale and shift
 * (planes of at most 16 KiB) or reads y (larger planes): dx, dw and db the bits of ag_relu(ag_batch_norm(...))'s,
 * in training and eval, with x holding zeros of both signs and a NaN plane, after the bias changed in place
 * between the forward and the backward (batch norm's adjoint does not read the bias, so the mask must be the
 * forward's), at planes of 63 values, of exactly 16 KiB and of one value more. */
static void test_batch_norm_relu_adjoint(ag_dtype dt) {
    const char *dn = dt == AG_F32 ? "float32" : "float64";
    const int64_t es = dt == AG_F32 ? 4 : 8;
    const int64_t planes[][2] = {{7, 9}, {16384 / es / 64, 64}, {16384 / es / 64, 65}};
    ag_scope_begin();
    ag_manual_seed(17);
    for (int p = 0; p < 3; p++)
        for (int training = 1; training >= 0; training--) {
            const ag_shape sh = AG_SHAPE(3, 4, planes[p][0], planes[p][1]);
            ag_tensor *data = ag_randn(sh, dt), *g = ag_randn(sh, dt);
            ag_fill_(ag_narrow(ag_narrow(data, 0, 1, 1), 1, 1, 1), 0.0);
            ag_fill_(ag_narrow(ag_narrow(data, 0, 2, 1), 1, 1, 1), -0.0);
            if (p == 0) ag_fill_(ag_narrow(ag_narrow(data, 0, 0, 1), 1, 3, 1), NAN);
            ag_tensor *rm = ag_randn(AG_SHAPE(4), dt), *rv = ag_add_scalar(ag_rand(AG_SHAPE(4), dt), 0.5);
            ag_tensor *w[2], *b[2], *x[2];
            for (int i = 0; i < 2; i++) {
                ag_manual_seed(5);
                w[i] = ag_requires_grad_(ag_randn(AG_SHAPE(4), dt), true);
                b[i] = ag_requires_grad_(ag_randn(AG_SHAPE(4), dt), true);
                x[i] = ag_requires_grad_(ag_clone(data), true);
            }
            if (training) rm = rv = NULL; /* batch statistics */
            ag_tensor *y1 = ag_batch_norm_relu(x[0], rm, rv, w[0], b[0], training, 0.1, 1e-5);
            ag_tensor *y2 = ag_relu(ag_batch_norm(x[1], rm, rv, w[1], b[1], training, 0.1, 1e-5));
            ag_no_grad_begin();
            for (int i = 0; i < 2; i++) ag_add_scalar_(b[i], 0.75); /* the mask is the forward's, not the bias's now */
            ag_no_grad_end();
            ag_backward(ag_sum(ag_mul(y1, g)));
            ag_backward(ag_sum(ag_mul(y2, g)));
            ok(same_bits(y1, y2) && same_bits(ag_grad(x[0]), ag_grad(x[1])) && same_bits(ag_grad(w[0]), ag_grad(w[1])) &&
                   same_bits(ag_grad(b[0]), ag_grad(b[1])),
               "%s batch_norm_relu's adjoint, planes of %lld values, %s, the bias changed after the forward: the bits of "
               "relu(batch_norm)", dn, (long long)(planes[p][0] * planes[p][1]), training ? "training" : "eval");
        }
    ag_scope_end();
}

/* Batch norm (and batch_norm_relu) over planes in training, float32 (ops/norm.c: bn_planes_train and
 * bn_planes_backward, whose element kernels run AVX-512 clones where the CPU has it): y and dx are the documented
 * formulas bit for bit, y = (T)(x·s + t) with s = w·r, t = b - μ·s, r = 1/√(Σ(x - μ)²/M + ε), the ReLU's
 * v <= 0 ? 0 : v, and dx = (T)(k·((g - a) - (x - μ)·β)) with k = w·r, a = Σg/M, β = r·r·Σg(x - μ)/M, g the ReLU's
 * adjoint v <= 0 ? 0 : dy (or dy), on data whose sums are exact in float64 (x and dy multiples of 1/8, image 1
 * the negation of image 0 in x, so μ = 0) so that no order of summation shows: planes of 64 values and of 37
 * (a vector tail).  Fails if a clone rounds differently (checked: the clones built with FMA contraction). */
static void test_batch_norm_planes_bits(void) {
    enum { N = 2, C = 3, LMAX = 64 };
    const int64_t Ls[] = {64, 37};
    const float wv[C] = {1.5f, -0.75f, 2.0f}, bv[C] = {0.25f, -0.5f, 0.0f};
    for (int li = 0; li < 2; li++)
        for (int relu = 0; relu < 2; relu++) {
            const int64_t L = Ls[li];
            const double M = (double)(N * L);
            float xs[N * C * LMAX], dys[N * C * LMAX], ye[N * C * LMAX], dxe[N * C * LMAX];
            for (int64_t c = 0; c < C; c++)
                for (int64_t l = 0; l < L; l++) {
                    const float v = (float)((l * 7 + c * 5) % 17 - 8) / 8;
                    xs[c * L + l] = v, xs[(C + c) * L + l] = -v;
                    dys[c * L + l] = (float)((l * 3 + c) % 11 - 5) / 8;
                    dys[(C + c) * L + l] = (float)((l * 5 + c) % 13 - 6) / 8;
                }
            for (int64_t c = 0; c < C; c++) { /* the expected bits, channel by channel */
                double sq = 0, sdy = 0, sdyx = 0;
                for (int64_t n = 0; n < N; n++)
                    for (int64_t l = 0; l < L; l++) sq += (double)xs[(n * C + c) * L + l] * xs[(n * C + c) * L + l];
                const double r = 1 / sqrt(sq / M + 1e-5), s = (double)wv[c] * r, t = (double)bv[c] - 0.0 * s, k = (double)wv[c] * r;
                float g[N * LMAX];
                for (int64_t n = 0; n < N; n++)
                    for (int64_t l = 0; l < L; l++) {
                        const int64_t i = (n * C + c) * L + l;
                        const float v = (float)((double)xs[i] * s + t);
                        ye[i] = relu && v <= 0 ? 0 : v;
                        g[n * L + l] = relu && v <= 0 ? 0 : dys[i];
                        sdy += g[n * L + l], sdyx += (double)g[n * L + l] * xs[i];
                    }
                const double a = sdy / M, beta = r * r * sdyx / M;
                for (int64_t n = 0; n < N; n++)
                    for (int64_t l = 0; l < L; l++) {
                        const int64_t i = (n * C + c) * L + l;
                        dxe[i] = (float)(k * ((double)g[n * L + l] - a - ((double)xs[i] - 0.0) * beta));
                    }
            }
            ag_scope_begin();
            ag_tensor *x = ag_requires_grad_(ag_from_data(xs, AG_SHAPE(N, C, 1, L), AG_F32), true);
            ag_tensor *w = ag_requires_grad_(ag_from_data(wv, AG_SHAPE(C), AG_F32), true);
            ag_tensor *b = ag_requires_grad_(ag_from_data(bv, AG_SHAPE(C), AG_F32), true);
            ag_tensor *y = relu ? ag_batch_norm_relu(x, NULL, NULL, w, b, true, 0.1, 1e-5)
                                : ag_batch_norm(x, NULL, NULL, w, b, true, 0.1, 1e-5);
            ag_tensor *dy = ag_from_data(dys, AG_SHAPE(N, C, 1, L), AG_F32);
            const bool ran = y && ag_backward_ex(y, dy, false) == AG_OK && ag_grad(x);
            ag_tensor *yexp = ag_from_data(ye, AG_SHAPE(N, C, 1, L), AG_F32), *dxexp = ag_from_data(dxe, AG_SHAPE(N, C, 1, L), AG_F32);
            ok(ran && same_bits(y, yexp) && same_bits(ag_grad(x), dxexp),
               "float32 %s over planes of %lld values, training: y and dx the bits of the documented formulas",
               relu ? "batch_norm_relu" : "batch_norm", (long long)L);
            ag_scope_end();
        }
}

/* nn.Sequential runs a BatchNorm1d over [N, C], a ReLU and a Dropout in training as one op (ops/norm.c
 * batch_norm_relu_dropout): the same bits as with the BatchNorm apart (a hook on it; the ReLU and the Dropout
 * then run as relu_dropout's pass) for y (zeros of both signs in x), the running statistics, dx, dw and db at
 * the same seed, one MulBackward0 node and no NativeBatchNormBackward0; in eval the modules apart.  The op
 * over planes is ag_dropout(ag_batch_norm_relu(...)) bit for bit, y and dx; p = 0 is batch_norm_relu, p = 1
 * zeros, p outside [0, 1] an error before the running statistics move. */
static void test_batch_norm_relu_dropout_fused(ag_dtype dt) {
    const char *dn = dt == AG_F32 ? "float32" : "float64";
    ag_scope_begin();
    ag_manual_seed(9);
    ag_module *fused = in_dtype(AG_SEQUENTIAL(ag_nn_batch_norm1d(6, 1e-5, 0.1, true, true), ag_nn_relu(), ag_nn_dropout(0.3)), dt);
    ag_module *apart = in_dtype(AG_SEQUENTIAL(ag_nn_batch_norm1d(6, 1e-5, 0.1, true, true), ag_nn_relu(), ag_nn_dropout(0.3)), dt);
    int calls = 0;
    ag_hook_handle h;
    ag_module_register_forward_hook(ag_module_child(apart, 0, NULL), count_call, &calls, &h);
    const char *params[] = {"weight", "bias"};
    for (int i = 0; i < 2; i++) {
        ag_tensor *v = ag_randn(AG_SHAPE(6), dt);
        set_param(ag_module_child(fused, 0, NULL), params[i], v);
        set_param(ag_module_child(apart, 0, NULL), params[i], v);
    }
    ag_tensor *data = ag_randn(AG_SHAPE(37, 6), dt), *g = ag_randn(AG_SHAPE(37, 6), dt);
    ag_fill_(ag_narrow(ag_narrow(data, 0, 1, 1), 1, 3, 1), 0.0);
    ag_fill_(ag_narrow(ag_narrow(data, 0, 2, 1), 1, 3, 1), -0.0);
    ag_tensor *x1 = ag_requires_grad_(ag_clone(data), true), *x2 = ag_requires_grad_(ag_clone(data), true);
    ag_manual_seed(31);
    ag_tensor *y1 = ag_module_forward(fused, x1);
    ag_manual_seed(31);
    ag_tensor *y2 = ag_module_forward(apart, x2);
    ok(same_bits(y1, y2) && calls == 1 && y1 && strcmp(ag_grad_fn_name(y1), "MulBackward0") == 0 &&
           !graph_has(y1, "NativeBatchNormBackward0") && graph_has(y2, "NativeBatchNormBackward0"),
       "%s batchnorm1d+relu+dropout fused: the same y, one MulBackward0 node", dn);
    check_same_training(fused, apart, x1, x2, y1, y2, g, dn, "batchnorm1d+relu+dropout");
    ag_module_eval(fused), ag_module_eval(apart);
    ag_tensor *e1 = ag_module_forward(fused, data), *e2 = ag_module_forward(apart, data);
    ok(same_bits(e1, e2) && e1 && graph_has(e1, "NativeBatchNormBackward0") == graph_has(e2, "NativeBatchNormBackward0"),
       "%s batchnorm1d+relu+dropout in eval: the modules apart, the same bits", dn);
    ag_hook_remove(h);
    /* the op over planes against the two calls */
    ag_tensor *w = ag_randn(AG_SHAPE(4), dt), *b = ag_randn(AG_SHAPE(4), dt);
    ag_tensor *pd = ag_randn(AG_SHAPE(3, 4, 5), dt);
    ag_tensor *p1 = ag_requires_grad_(ag_clone(pd), true), *p2 = ag_requires_grad_(ag_clone(pd), true);
    ag_tensor *gp = ag_randn(AG_SHAPE(3, 4, 5), dt);
    ag_manual_seed(32);
    ag_tensor *q1 = ag_batch_norm_relu_dropout(p1, NULL, NULL, w, b, true, 0.1, 1e-5, 0.4);
    ag_manual_seed(32);
    ag_tensor *q2 = ag_dropout(ag_batch_norm_relu(p2, NULL, NULL, w, b, true, 0.1, 1e-5), 0.4, true);
    ok(same_bits(q1, q2), "%s batch_norm_relu_dropout over planes: the bits of the two calls", dn);
    ag_backward(ag_sum(ag_mul(q1, gp)));
    ag_backward(ag_sum(ag_mul(q2, gp)));
    ok(same_bits(ag_grad(p1), ag_grad(p2)), "%s batch_norm_relu_dropout over planes: the same dx bits", dn);
    ag_tensor *rm = ag_zeros(AG_SHAPE(4), dt), *rv = ag_ones(AG_SHAPE(4), dt);
    ag_tensor *z0 = ag_batch_norm_relu_dropout(data, NULL, NULL, NULL, NULL, true, 0.1, 1e-5, 0);
    ag_tensor *r0 = ag_batch_norm_relu(data, NULL, NULL, NULL, NULL, true, 0.1, 1e-5);
    ag_tensor *z1 = ag_batch_norm_relu_dropout(data, NULL, NULL, NULL, NULL, true, 0.1, 1e-5, 1);
    ok(same_bits(z0, r0) && z1 && ag_item(ag_sum(ag_abs(z1))) == 0, "%s batch_norm_relu_dropout: p = 0 and p = 1", dn);
    ag_tensor *bad = ag_batch_norm_relu_dropout(p1, rm, rv, NULL, NULL, true, 0.1, 1e-5, 1.5);
    ok(!bad && ag_last_status() == AG_ERR_ARG && strstr(ag_last_error(), "probability has to be between 0 and 1") &&
           ag_item(ag_sum(ag_abs(rm))) == 0,
       "%s batch_norm_relu_dropout: p = 1.5 is an error, the running statistics untouched", dn);
    /* one and two threads over [255, 517] (column blocks at odd elements, an odd count): the same y and dx */
    ag_tensor *big = ag_randn(AG_SHAPE(255, 517), dt), *gb = ag_randn(AG_SHAPE(255, 517), dt), *yt[2], *dt_[2];
    ag_tensor *wb = ag_randn(AG_SHAPE(517), dt), *bb = ag_randn(AG_SHAPE(517), dt);
    const int saved = ag_get_num_threads();
    for (int t = 0; t < 2; t++) {
        ag_set_num_threads(t + 1);
        ag_tensor *xb = ag_requires_grad_(ag_clone(big), true);
        ag_manual_seed(33);
        yt[t] = ag_batch_norm_relu_dropout(xb, NULL, NULL, wb, bb, true, 0.1, 1e-5, 0.1);
        ag_backward_ex(yt[t], gb, false);
        dt_[t] = ag_grad(xb);
    }
    ag_set_num_threads(saved);
    ok(same_bits(yt[0], yt[1]) && same_bits(dt_[0], dt_[1]), "%s batch_norm_relu_dropout [255, 517]: one and two threads, the same bits", dn);
    ag_module_free(apart);
    ag_module_free(fused);
    ag_scope_end();
}

/* batch_norm_relu_dropout's and batch_norm_relu's adjoint over [N, C] by chunks of rows make relu's and dropout's
 * adjoint g = y <= 0 ? 0 : dy·s inside batch norm's two passes (ops/norm.c bn_cols_fold_chunk, bn_cols_fold_x: no
 * gz pass): dx, dw and db the bits of batch norm's adjoint of that g made here from y and dy, on one thread and
 * two, float32 and float64, at [256, 512], [203, 300] (a short last chunk of 11 rows: blocks of four rows and a
 * tail of three; 300 columns: a block of 256 and one of 44), [1000, 37] (16 chunks); in training with dropout
 * (s = 1/(1 - p)) and, batch_norm_relu (s = 1), in eval with running statistics. */
static void test_bn_cols_fold(void) {
    static const int64_t shapes[][2] = {{256, 512}, {203, 300}, {1000, 37}};
    const int before = ag_get_num_threads();
    for (int d = 0; d < 2; d++)
        for (int sh = 0; sh < 3; sh++)
            for (int mode = 0; mode < 2; mode++) { /* 0: training, dropout; 1: eval, batch_norm_relu */
                const ag_dtype dt = d ? AG_F64 : AG_F32;
                const int64_t n = shapes[sh][0], c = shapes[sh][1];
                bool fine = true;
                for (int t = 1; t <= 2; t++) {
                    ag_scope_begin();
                    ag_set_num_threads(t);
                    ag_manual_seed(41 + sh);
                    ag_tensor *x = ag_randn(AG_SHAPE(n, c), dt), *dy = ag_randn(AG_SHAPE(n, c), dt);
                    ag_tensor *w0 = ag_randn(AG_SHAPE(c), dt), *b0 = ag_randn(AG_SHAPE(c), dt);
                    ag_tensor *rm = ag_randn(AG_SHAPE(c), dt), *rv = ag_add_scalar(ag_rand(AG_SHAPE(c), dt), 0.5);
                    ag_tensor *x1 = ag_requires_grad_(ag_clone(x), true), *x2 = ag_requires_grad_(ag_clone(x), true);
                    ag_tensor *w1 = ag_requires_grad_(ag_clone(w0), true), *w2 = ag_requires_grad_(ag_clone(w0), true);
                    ag_tensor *b1 = ag_requires_grad_(ag_clone(b0), true), *b2 = ag_requires_grad_(ag_clone(b0), true);
                    const double p = 0.1, s = mode ? 1 : 1 / (1 - p);
                    ag_tensor *y = mode ? ag_batch_norm_relu(x1, rm, rv, w1, b1, false, 0.1, 1e-5)
                                        : ag_batch_norm_relu_dropout(x1, NULL, NULL, w1, b1, true, 0.1, 1e-5, p);
                    fine = fine && y && ag_backward_ex(y, dy, false) == AG_OK;
                    ag_tensor *g = ag_empty(AG_SHAPE(n, c), dt);
                    for (int64_t i = 0; fine && i < n * c; i++)
                        if (d) {
                            const double *yv = ag_data(y), *dv = ag_data(dy);
                            ((double *)ag_data(g))[i] = yv[i] <= 0 ? 0 : dv[i] * s;
                        } else {
                            const float *yv = ag_data(y), *dv = ag_data(dy);
                            ((float *)ag_data(g))[i] = yv[i] <= 0 ? 0 : dv[i] * (float)s;
                        }
                    ag_tensor *z = ag_batch_norm(x2, mode ? rm : NULL, mode ? rv : NULL, w2, b2, !mode, 0.1, 1e-5);
                    fine = fine && z && ag_backward_ex(z, g, false) == AG_OK && same_bits(ag_grad(x1), ag_grad(x2)) &&
                           same_bits(ag_grad(w1), ag_grad(w2)) && same_bits(ag_grad(b1), ag_grad(b2));
                    ag_scope_end();
                }
                ok(fine, "%s %s [%lld, %lld], 1 and 2 threads: dx, dw, db the bits of batch_norm's adjoint of "
                         "g = y <= 0 ? 0 : dy·s", d ? "float64" : "float32",
                   mode ? "batch_norm_relu, eval" : "batch_norm_relu_dropout, training", (long long)n, (long long)c);
            }
    ag_set_num_threads(before);
}

/* One of test_bn_cols_avx512's runs: op 0 batch_norm_relu_dropout (training, p = 0.3), 1 batch_norm (training),
 * 2 batch_norm_relu (eval) over float32 [n, c] (from seed, a NaN and an infinity in two columns when specials)
 * with AVX-512 kernels on or off; the outputs y, dx, dw, db into out[0..3]. */
static void bn_cols_run(int op, int64_t n, int64_t c, bool specials, bool wide, ag_tensor **out) {
    ag__bn_cols_avx512 = wide;
    ag_manual_seed(77);
    ag_tensor *x = ag_randn(AG_SHAPE(n, c), AG_F32), *dy = ag_randn(AG_SHAPE(n, c), AG_F32);
    ag_tensor *w = ag_requires_grad_(ag_randn(AG_SHAPE(c), AG_F32), true);
    ag_tensor *b = ag_requires_grad_(ag_randn(AG_SHAPE(c), AG_F32), true);
    ag_tensor *rm = ag_randn(AG_SHAPE(c), AG_F32), *rv = ag_add_scalar(ag_rand(AG_SHAPE(c), AG_F32), 0.5);
    if (specials && c > 3) {
        ((float *)ag_data(x))[2 * c + 1] = NAN;
        ((float *)ag_data(x))[3 * c + 3] = INFINITY;
        ((float *)ag_data(dy))[4 * c + 2] = NAN;
    }
    ag_requires_grad_(x, true);
    ag_manual_seed(5);
    ag_tensor *y = op == 0 ? ag_batch_norm_relu_dropout(x, NULL, NULL, w, b, true, 0.1, 1e-5, 0.3)
                 : op == 1 ? ag_batch_norm(x, NULL, NULL, w, b, true, 0.1, 1e-5)
                           : ag_batch_norm_relu(x, rm, rv, w, b, false, 0.1, 1e-5);
    out[0] = y;
    out[1] = out[2] = out[3] = NULL;
    if (y && ag_backward_ex(y, dy, false) == AG_OK) out[1] = ag_grad(x), out[2] = ag_grad(w), out[3] = ag_grad(b);
    ag__bn_cols_avx512 = true;
}

/* Batch norm over [N, C] float32 by its AVX-512 kernels (ops/bn_cols512.h: the adjoint's sums, plain
 * and with relu's and dropout's adjoint folded in, the forward's apply with dropout's mask made in place) gives
 * the C kernels' bits: y, dx, dw, db, one thread and two, by chunks of rows ([256, 512], [203, 300]: a last
 * chunk of 11 rows and 12 columns past the last sixteen; [1000, 38]; [1000, 37], odd: the forward's apply in C)
 * and in one chunk ([64, 100], [50, 2048]: blocks of channels), with a NaN and an infinity in x and a NaN in dy,
 * and without. */
static void test_bn_cols_avx512(void) {
    static const int64_t shapes[][2] = {{256, 512}, {203, 300}, {1000, 38}, {1000, 37}, {64, 100}, {50, 2048}};
    const int before = ag_get_num_threads();
    for (int op = 0; op < 3; op++)
        for (int sh = 0; sh < 6; sh++) {
            bool fine = true;
            for (int t = 1; t <= 2; t++)
                for (int sp = 0; sp < 2; sp++) {
                    ag_scope_begin();
                    ag_set_num_threads(t);
                    ag_tensor *a[4], *c[4];
                    bn_cols_run(op, shapes[sh][0], shapes[sh][1], sp, true, a);
                    bn_cols_run(op, shapes[sh][0], shapes[sh][1], sp, false, c);
                    for (int k = 0; k < 4; k++) fine = fine && same_bits(a[k], c[k]);
                    ag_scope_end();
                }
            ok(fine, "%s float32 [%lld, %lld], 1 and 2 threads, with and without NaN: y, dx, dw, db of the %s "
                     "kernels the C kernels' bits",
               op == 0 ? "batch_norm_relu_dropout" : op == 1 ? "batch_norm" : "batch_norm_relu, eval,",
               (long long)shapes[sh][0], (long long)shapes[sh][1], AG_VEC_512() ? "AVX-512" : "C (no AVX-512 here)");
        }
    ag_set_num_threads(before);
}

/* Sequential(ReLU, Dropout(0.3)) in training (ctx) at a fixed seed: one function for gradcheck. */
static ag_tensor *seeded_relu_dropout(ag_tensor *const *in, int n, void *ctx) {
    (void)n;
    ag_manual_seed(21);
    return ag_module_forward(ctx, in[0]);
}

/* The same, unfused: ag_dropout(ag_relu(x)). */
static ag_tensor *seeded_relu_then_dropout(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    ag_manual_seed(21);
    return ag_dropout(ag_relu(in[0]), 0.3, true);
}

/* nn.Sequential runs a ReLU followed by a Dropout as one pass (nn/dropout.c): the same output bits and the
 * same gradient as ag_dropout(ag_relu(x)) at a seed (x over 2^17 elements, odd, with zeros of both signs:
 * the threaded pass), no ReluBackward0 node; a hook on either module, eval mode and a non-contiguous x take
 * the modules one by one; gradcheck, gradgradcheck and the tangent hold through the fused node. */
static void test_relu_dropout_fused(ag_dtype dt) {
    const char *dn = ag_dtype_name(dt);
    ag_scope_begin();
    ag_module *seq = AG_SEQUENTIAL(ag_nn_relu(), ag_nn_dropout(0.3));
    ag_manual_seed(3);
    ag_tensor *data = ag_randn(AG_SHAPE(301, 437), dt), *g = ag_randn(AG_SHAPE(301, 437), dt);
    ag_fill_(ag_narrow(ag_narrow(data, 0, 0, 1), 1, 0, 3), 0.0);
    ag_fill_(ag_narrow(ag_narrow(data, 0, 1, 1), 1, 0, 3), -0.0);
    ag_tensor *x1 = ag_requires_grad_(ag_clone(data), true), *x2 = ag_requires_grad_(ag_clone(data), true);
    ag_manual_seed(9);
    ag_tensor *y1 = ag_module_forward(seq, x1);
    ag_manual_seed(9);
    ag_tensor *y2 = ag_dropout(ag_relu(x2), 0.3, true);
    const size_t bytes = (size_t)ag_numel(data) * ag_dtype_size(dt);
    ok(y1 && y2 && memcmp(ag_data(y1), ag_data(y2), bytes) == 0, "%s relu+dropout fused: the same bits as unfused", dn);
    ok(y1 && !graph_has(y1, "ReluBackward0") && graph_has(y2, "ReluBackward0") &&
           strcmp(ag_grad_fn_name(y1), "MulBackward0") == 0,
       "%s relu+dropout fused: one MulBackward0 node over x, no ReluBackward0", dn);
    ag_backward(ag_sum(ag_mul(y1, g)));
    ag_backward(ag_sum(ag_mul(y2, g)));
    ok(worst(ag_grad(x1), ag_grad(x2)) == 0, "%s relu+dropout fused: the same gradient as unfused", dn);

    int calls = 0;
    ag_hook_handle h;
    ag_module_register_forward_hook(ag_module_child(seq, 0, NULL), count_call, &calls, &h);
    ag_manual_seed(9);
    ag_tensor *y3 = ag_module_forward(seq, x1);
    ok(calls == 1 && graph_has(y3, "ReluBackward0") && memcmp(ag_data(y3), ag_data(y2), bytes) == 0,
       "%s relu+dropout: a hook on ReLU sees its output (the modules run one by one, the same bits)", dn);
    ag_hook_remove(h);
    ag_tensor *xt = ag_transpose(ag_requires_grad_(ag_clone(ag_transpose(data, 0, 1)), true), 0, 1);
    ag_manual_seed(9);
    ag_tensor *y4 = ag_module_forward(seq, xt);
    ok(y4 && graph_has(y4, "ReluBackward0") && memcmp(ag_data(ag_contiguous(y4)), ag_data(y2), bytes) == 0,
       "%s relu+dropout: a non-contiguous x runs unfused, the same bits", dn);
    ag_module_eval(seq);
    ag_tensor *y5 = ag_module_forward(seq, x1);
    ok(y5 && worst(y5, ag_relu(x1)) == 0 && strcmp(ag_grad_fn_name(y5), "ReluBackward0") == 0,
       "%s relu+dropout in eval: relu alone", dn);
    ag_module_train(seq, true);

    if (dt == AG_F64) {
        ag_tensor *s = ag_randn(AG_SHAPE(6, 7), dt); /* away from ReLU's kink */
        ag_tensor *xs = ag_requires_grad_(ag_add(s, ag_mul_scalar(ag_sign(s), 0.2)), true);
        ok(ag_gradcheck(seeded_relu_dropout, seq, &xs, 1, NULL, NULL) == AG_OK, "relu+dropout fused: gradcheck");
        ok(ag_gradgradcheck(seeded_relu_dropout, seq, &xs, 1, NULL, NULL) == AG_OK, "relu+dropout fused: gradgradcheck");
        ag_tensor *t = ag_randn(AG_SHAPE(6, 7), dt), *o1, *j1, *o2, *j2;
        ok(ag_jvp(seeded_relu_dropout, seq, &xs, 1, &t, &o1, &j1) == AG_OK &&
               ag_jvp(seeded_relu_then_dropout, NULL, &xs, 1, &t, &o2, &j2) == AG_OK && worst(j1, j2) == 0 &&
               worst(o1, o2) == 0,
           "relu+dropout fused: the tangent is the unfused one");
    }
    ag_module_free(seq);
    ag_scope_end();
}

/* Dropout2d: each [n, c] plane of x is all zero or all 1/(1 - p), a fraction p of the planes zeroed. */
static void test_dropout2d(void) {
    const double p = 0.3;
    const int64_t N = 100, C = 200, planes = N * C, area = 3 * 5;
    ag_scope_begin();
    ag_tensor *x = ag_requires_grad_(ag_ones(AG_SHAPE(N, C, 3, 5), AG_F32), true);
    ag_manual_seed(42);
    ag_tensor *y = ag_dropout2d(x, p, true);
    ag_manual_seed(42);
    ag_tensor *y2 = ag_dropout2d(x, p, true);
    ag_tensor *y3 = ag_dropout2d(x, p, true);
    const float *v = y ? ag_data(ag_contiguous(y)) : NULL;
    int64_t zeros = 0, mixed = 0;
    for (int64_t k = 0; v && k < planes; k++) {
        const float *plane = v + k * area;
        bool zero = plane[0] == 0;
        zeros += zero;
        for (int64_t i = 0; i < area; i++) mixed += zero ? plane[i] != 0 : plane[i] != (float)(1 / (1 - p));
    }
    double frac = (double)zeros / (double)planes, sigma = sqrt(p * (1 - p) / (double)planes);
    ok(v && mixed == 0, "Dropout2d keeps or zeroes whole channels, kept ones scaled by 1/(1 - p) (%lld elements differ)",
       (long long)mixed);
    ok(fabs(frac - p) < 5 * sigma, "a fraction %.4f of %lld channels zeroed (p = 0.3, 5 sigma = %.4f)", frac,
       (long long)planes, 5 * sigma);
    ok(worst(y, y2) == 0 && worst(y, y3) > 0, "the same seed gives the same channels; the next draw others");
    ok(y && ag_backward(ag_sum(y)) == AG_OK && worst(ag_grad(x), y) == 0, "dx = the scaled channel mask (x is ones)");
    ag_tensor *x3 = ag_ones(AG_SHAPE(4, 6, 7), AG_F64), *z = ag_dropout2d(x3, 0.5, true);
    bool rows = z != NULL;
    for (int64_t r = 0; z && r < 24; r++)
        for (int64_t i = 1; i < 7; i++) rows &= ((const double *)ag_data(z))[r * 7 + i] == ((const double *)ag_data(z))[r * 7];
    ok(rows, "a 3-D input [N, C, L] drops whole [n, c] rows, as PyTorch 1.13");
    ok(ag_dropout2d(x, 0.5, false) == x && ag_dropout2d(x, 0, true) == x, "eval and p = 0 return x itself");
    z = ag_dropout2d(x, 1, true);
    ok(z && moments_of(z).lo == 0 && moments_of(z).hi == 0, "p = 1 gives zeros");
    ok(!ag_dropout2d(x, 1.5, true) && ag_last_status() == AG_ERR_ARG && strstr(ag_last_error(), "between 0 and 1"),
       "p = 1.5 fails: %s", ag_last_error());
    ok(!ag_dropout2d(ag_ones(AG_SHAPE(5), AG_F32), 0.5, true) && ag_last_status() == AG_ERR_SHAPE &&
       strstr(ag_last_error(), "dropout2d: input [5] needs at least 2 dims"), "a 1-D input fails: %s", ag_last_error());
    ag_module *m = ag_nn_dropout2d(0.3);
    ag_manual_seed(42);
    ok(m && worst(ag_module_forward(m, x), y) == 0, "nn.Dropout2d(0.3) in training mode is ag_dropout2d");
    ag_module_eval(m);
    ok(m && ag_module_forward(m, x) == x, "and the identity in eval mode");
    ag_module_free(m);
    ok(ag_nn_dropout2d(-0.1) == NULL && ag_last_status() == AG_ERR_ARG, "nn.Dropout2d(-0.1) fails: %s", ag_last_error());
    ag_scope_end();
}

/* ---- nn.init ---------------------------------------------------------------------------------------------------------- */
/* Bound b of a uniform draw: all values inside, the extremes near it, std b/√3 within 1%. */
static void check_uniform(const char *what, const ag_tensor *t, double b) {
    moments m = moments_of(t);
    ok(m.lo >= -b && m.hi <= b && m.hi > 0.999 * b && m.lo < -0.999 * b, "%s: values within ±%.5f, reaching [%.5f, %.5f]",
       what, b, m.lo, m.hi);
    ok(fabs(m.std / (b / sqrt(3.0)) - 1) < 0.01 && fabs(m.mean) < 0.01 * b, "%s: std %.5f (expected %.5f), mean %.2g", what,
       m.std, b / sqrt(3.0), m.mean);
}

static void check_normal(const char *what, const ag_tensor *t, double std) {
    moments m = moments_of(t);
    ok(fabs(m.std / std - 1) < 0.01 && fabs(m.mean) < 0.01 * std, "%s: std %.5f (expected %.5f), mean %.2g", what, m.std,
       std, m.mean);
}

static double phi(double x) { return exp(-x * x / 2) / 2.5066282746310002; }
static double Phi(double x) { return (1 + erf(x / sqrt(2.0))) / 2; }

static void test_init(void) {
    ag_scope_begin();
    /* calculate_gain against PyTorch */
    static const char *names[] = {"linear", "conv1d", "conv2d", "conv_transpose2d", "sigmoid", "tanh", "relu", "leaky_relu",
                                  "selu"};
    double gains[11];
    ag_copy_to(ag_state_dict_get(fx, "init.gains"), gains, 11, AG_F64);
    double worst_gain = 0;
    for (int i = 0; i < 9; i++) worst_gain = fmax(worst_gain, fabs(ag_init_calculate_gain(names[i], NAN) - gains[i]));
    worst_gain = fmax(worst_gain, fabs(ag_init_calculate_gain("leaky_relu", 0.2) - gains[9]));
    worst_gain = fmax(worst_gain, fabs(ag_init_calculate_gain("leaky_relu", sqrt(5.0)) - gains[10]));
    ok(worst_gain < 1e-15, "calculate_gain of 9 nonlinearities and leaky_relu(0.2), leaky_relu(√5) match PyTorch (%.2g)",
       worst_gain);
    ok(isnan(ag_init_calculate_gain("swish", NAN)) && strstr(ag_last_error(), "unsupported nonlinearity swish"),
       "unknown nonlinearity: %s", ag_last_error());

    int64_t fi, fo;
    ok(ag_init_calculate_fan_in_and_fan_out(ag_empty(AG_SHAPE(8, 4, 3, 3), AG_F32), &fi, &fo) == AG_OK && fi == 36 &&
           fo == 72, "fans of [8, 4, 3, 3]: in 36, out 72");
    ok(ag_init_calculate_fan_in_and_fan_out(ag_empty(AG_SHAPE(5), AG_F32), &fi, &fo) == AG_ERR_SHAPE,
       "no fans for 1 dim: %s", ag_last_error());

    ag_manual_seed(11);
    ag_tensor *t = ag_empty(AG_SHAPE(400, 600), AG_F64);
    check_uniform("xavier_uniform_(gain=2) [400, 600]", ag_init_xavier_uniform_(t, 2), 2 * sqrt(6.0 / 1000));
    check_normal("xavier_normal_ [400, 600]", ag_init_xavier_normal_(t, 1), sqrt(2.0 / 1000));
    check_uniform("kaiming_uniform_ defaults (a=0, fan_in, leaky_relu)", ag_init_kaiming_uniform_(t, 0, NULL, NULL),
                  sqrt(2.0) * sqrt(3.0 / 600));
    check_uniform("kaiming_uniform_(a=√5) = U(±1/√fan_in), Linear's default", ag_init_kaiming_uniform_(t, sqrt(5.0), "fan_in", "leaky_relu"),
                  1 / sqrt(600.0));
    check_normal("kaiming_normal_(fan_out, relu)", ag_init_kaiming_normal_(t, 0, "fan_out", "relu"), sqrt(2.0 / 400));
    ag_tensor *conv = ag_empty(AG_SHAPE(64, 32, 5, 5), AG_F32);
    check_normal("kaiming_normal_(fan_in, tanh) on a conv weight [64, 32, 5, 5]",
                 ag_init_kaiming_normal_(conv, 0, "fan_in", "tanh"), 5.0 / 3 / sqrt(32 * 25.0));
    ok(!ag_init_kaiming_uniform_(t, 0, "fan_avg", NULL) && strstr(ag_last_error(), "fan_avg not supported"),
       "unknown mode: %s", ag_last_error());
    ok(!ag_init_xavier_uniform_(ag_empty(AG_SHAPE(7), AG_F32), 1), "xavier on 1 dim fails: %s", ag_last_error());
    check_uniform("uniform_(-3, 5) - 1", ag_add_scalar(ag_init_uniform_(t, -3, 5), -1), 4);
    check_normal("normal_(2, 0.5) - 2", ag_add_scalar(ag_init_normal_(t, 2, 0.5), -2), 0.5);

    /* trunc_normal_: support and the truncated normal's moments */
    struct { double mean, std, a, b; } tn[] = {{0, 1, -2, 2}, {0.5, 2, -1, 3}};
    for (int i = 0; i < 2; i++) {
        double al = (tn[i].a - tn[i].mean) / tn[i].std, be = (tn[i].b - tn[i].mean) / tn[i].std, z = Phi(be) - Phi(al);
        double em = tn[i].mean + tn[i].std * (phi(al) - phi(be)) / z;
        double ev = tn[i].std * tn[i].std *
                    (1 + (al * phi(al) - be * phi(be)) / z - pow((phi(al) - phi(be)) / z, 2));
        moments m = moments_of(ag_init_trunc_normal_(t, tn[i].mean, tn[i].std, tn[i].a, tn[i].b));
        ok(m.lo >= tn[i].a && m.hi <= tn[i].b && fabs(m.mean - em) < 0.01 * tn[i].std && fabs(m.std / sqrt(ev) - 1) < 0.01,
           "trunc_normal_(%g, %g, %g, %g): within [%g, %g], mean %.4f (expected %.4f), std %.4f (expected %.4f)",
           tn[i].mean, tn[i].std, tn[i].a, tn[i].b, m.lo, m.hi, m.mean, em, m.std, sqrt(ev));
    }

    /* constants and eye, on any dtype and layout */
    ag_tensor *c = ag_init_constant_(ag_empty(AG_SHAPE(3, 4), AG_F32), 0.5);
    ok(moments_of(c).lo == 0.5 && moments_of(c).hi == 0.5, "constant_(0.5)");
    ok(ag_item(ag_sum(ag_init_ones_(c))) == 12 && ag_item(ag_sum(ag_abs(ag_init_zeros_(c)))) == 0, "ones_, zeros_");
    ag_tensor *li = ag_init_ones_(ag_empty(AG_SHAPE(3), AG_I64));
    ok(li && ag_get(li, (int64_t[]){2}) == 1, "ones_ on int64");
    ag_tensor *lb = ag_init_eye_(ag_zeros(AG_SHAPE(2, 3), AG_BOOL));
    ok(lb && ag_get(lb, (int64_t[]){1, 1}) == 1 && ag_get(lb, (int64_t[]){1, 2}) == 0, "eye_ on bool");
    ok(!ag_init_uniform_(li, 0, 1), "uniform_ on int64 fails: %s", ag_last_error());
    ag_tensor *e = ag_init_eye_(ag_transpose(ag_zeros(AG_SHAPE(5, 3), AG_F32), 0, 1));
    bool eye_ok = e && ag_size(e, 0) == 3;
    for (int64_t i = 0; eye_ok && i < 3; i++)
        for (int64_t j = 0; j < 5; j++) eye_ok = ag_get(e, (int64_t[]){i, j}) == (i == j);
    ok(eye_ok, "eye_ on a transposed [3, 5] view");
    ok(!ag_init_eye_(ag_empty(AG_SHAPE(2, 2, 2), AG_F32)), "eye_ on 3 dims fails: %s", ag_last_error());
    ag_tensor *tall = ag_empty(AG_SHAPE((int64_t)1 << 40, 0), AG_F32); /* empty: no row is walked */
    ok(tall && ag_init_eye_(tall) == tall, "eye_ on an empty [2^40, 0] returns at once");

    /* orthogonal_: rows or columns orthonormal; the QR against torch.linalg.qr with the sign correction */
    struct { ag_shape s; double gain; } og[] = {{AG_SHAPE(6, 10), 1}, {AG_SHAPE(10, 6), 1}, {AG_SHAPE(4, 2, 3), 2},
                                                {AG_SHAPE(7, 7), 1}};
    for (int i = 0; i < 4; i++) {
        ag_tensor *q = ag_init_orthogonal_(ag_empty(og[i].s, AG_F64), og[i].gain);
        ag_tensor *q2 = ag_reshape(q, AG_SHAPE(og[i].s.dim[0], -1));
        bool wide = ag_size(q2, 0) <= ag_size(q2, 1);
        ag_tensor *g = wide ? ag_matmul(q2, ag_t(q2)) : ag_matmul(ag_t(q2), q2);
        ag_tensor *want = ag_mul_scalar(ag_eye(ag_size(g, 0), AG_F64), og[i].gain * og[i].gain);
        char s[AG_SHAPE_STR];
        ok(worst(g, want) < 1e-13, "orthogonal_(gain=%g) on %s: %s = %g·I (error %.2g)", og[i].gain,
           ag__shape_str(s, og[i].s.ndim, og[i].s.dim), wide ? "Q·Qᵀ" : "Qᵀ·Q", og[i].gain * og[i].gain, worst(g, want));
    }
    static const char *qrs[] = {"init.qr53", "init.qr44"};
    for (int i = 0; i < 2; i++) {
        char key[64];
        snprintf(key, sizeof key, "%s.a", qrs[i]);
        ag_tensor *a = ag_clone(ag_state_dict_get(fx, key));
        snprintf(key, sizeof key, "%s.q", qrs[i]);
        ag_tensor *want = ag_state_dict_get(fx, key), *q = ag_zeros_like(want);
        ag_status st = ag__qr_signed_q(ag_data(a), ag_size(a, 0), ag_size(a, 1), ag_data(q));
        double err = worst(q, want);
        ok(st == AG_OK && err < 1e-13, "Householder QR of %s's matrix: Q matches torch.linalg.qr with the sign "
           "correction (error %.2g)", qrs[i], err);
    }

    /* seeding, and parameters that require grad (in grad mode) */
    ag_tensor *a1 = ag_empty(AG_SHAPE(5, 5), AG_F32), *a2 = ag_empty(AG_SHAPE(5, 5), AG_F32);
    ag_manual_seed(3);
    ag_init_orthogonal_(a1, 1);
    ag_init_trunc_normal_(a1, 0, 1, -2, 2);
    ag_manual_seed(3);
    ag_init_orthogonal_(a2, 1);
    ag_init_trunc_normal_(a2, 0, 1, -2, 2);
    ok(worst(a1, a2) == 0, "the same seed gives the same initialisation");
    ag_module *lin = ag_nn_linear(3, 2, true);
    ag_tensor *w = ag_module_get_parameter(lin, "weight");
    uint32_t v0 = ag_version(w);
    ok(ag_init_kaiming_uniform_(w, 0, NULL, NULL) == w && ag_init_zeros_(ag_module_get_parameter(lin, "bias")) &&
           ag_version(w) > v0 && ag_requires_grad(w),
       "initialising a parameter that requires grad, in grad mode, bumps its version");
    ag_module_free(lin);
    ag_scope_end();
}

/* ---- BatchNorm1d state dicts with PyTorch's names ----------------------------------------------------------------------- */
static void test_state(void) {
    ag_module *bn = ag_nn_batch_norm1d(3, 1e-5, 0.1, true, true);
    ag_state_dict *sd = ag_state_dict_new();
    ag_module_state_dict(bn, sd);
    static const char *want[] = {"weight", "bias", "running_mean", "running_var", "num_batches_tracked"};
    bool names = ag_state_dict_size(sd) == 5;
    for (int i = 0; names && i < 5; i++) names = strcmp(ag_state_dict_name(sd, i), want[i]) == 0;
    ok(names, "BatchNorm1d's state dict: weight, bias, running_mean, running_var, num_batches_tracked, in PyTorch's order");
    ag_state_dict_free(sd);

    ag_status st = ag_module_load(bn, FIXTURES "/bn_state.safetensors");
    ok(st == AG_OK, "strict load of PyTorch's BatchNorm1d(3) state dict%s%s", st ? ": " : "", st ? ag_last_error() : "");
    ag_tensor *nbt = ag_module_get_buffer(bn, "num_batches_tracked");
    ok(ag_dtype_of(nbt) == AG_I64 && ag_item(nbt) == 2, "num_batches_tracked = 2 (int64)");
    ag_module_eval(bn);
    ag_scope_begin();
    ag_tensor *y = ag_module_forward(bn, F("bn3d", AG_F32, "x_c"));
    agree("bn_state", AG_F32, "eval output with the loaded statistics", y, F("bn3d", AG_F32, "y_c"));
    ag_scope_end();

    char dir[] = "/tmp/agrad-layers-XXXXXX", path[256];
    if (mkdtemp(dir)) {
        snprintf(path, sizeof path, "%s/bn.safetensors", dir);
        ag_module *fresh = ag_nn_batch_norm1d(3, 1e-5, 0.1, true, true);
        ok(ag_module_save(bn, path) == AG_OK && ag_module_load(fresh, path) == AG_OK, "save and load into a fresh BatchNorm1d");
        bool same = true;
        for (int i = 0; i < 5; i++) {
            ag_tensor *a = i < 2 ? ag_module_get_parameter(bn, want[i]) : ag_module_get_buffer(bn, want[i]);
            ag_tensor *b = i < 2 ? ag_module_get_parameter(fresh, want[i]) : ag_module_get_buffer(fresh, want[i]);
            same = same && ag_dtype_of(a) == ag_dtype_of(b) && worst(a, b) == 0;
        }
        ok(same, "every parameter and buffer round-trips, num_batches_tracked still int64");
        ag_module_free(fresh);
        unlink(path);
        rmdir(dir);
    }
    ag_module_free(bn);

    /* PyTorch's Sequential(Linear(3, 2), BatchNorm1d(2)) file loads strictly */
    ag_module *seq = AG_SEQUENTIAL(ag_nn_linear(3, 2, true), ag_nn_batch_norm1d(2, 1e-5, 0.1, true, true));
    st = ag_module_load(seq, FIXTURES "/torch_state.safetensors");
    ok(st == AG_OK, "strict load of torch_state.safetensors (Linear + BatchNorm1d)%s%s", st ? ": " : "",
       st ? ag_last_error() : "");
    ag_module_free(seq);
}

/* ---- printing, eval-mode gradients, errors --------------------------------------------------------------------------------- */
static void test_print(void) {
    ag_module *m = AG_SEQUENTIAL(ag_nn_batch_norm1d(3, 1e-5, 0.1, true, true), ag_nn_layer_norm(AG_SHAPE(4), 1e-5, true),
                                 ag_nn_dropout(0.5), ag_nn_prelu(1, 0.25), ag_nn_batch_norm1d(4, 1e-3, NAN, false, false),
                                 ag_nn_layer_norm(AG_SHAPE(3, 4), 1e-6, false), ag_nn_dropout(0.1), ag_nn_prelu(8, 0.1),
                                 ag_nn_batch_norm1d(2, 1e-5, 0.01, true, true), ag_nn_gaussian_noise(0.1),
                                 ag_nn_batch_norm2d(8, 1e-5, 0.1, true, true),
                                 ag_nn_batch_norm2d(16, 1e-3, NAN, false, false), ag_nn_group_norm(2, 4, 1e-5, true),
                                 ag_nn_group_norm(3, 6, 1e-3, false), ag_nn_dropout2d(0.5), ag_nn_dropout2d(0.25),
                                 ag_nn_instance_norm2d(3, 1e-5, 0.1, false, false),
                                 ag_nn_instance_norm2d(4, 1e-3, 0.2, true, true));
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    ag_module_print(m, f);
    fclose(f);
    /* print() of the same model in PyTorch 1.13, plus the GaussianNoise line */
    const char *want = "Sequential(\n"
                       "  (0): BatchNorm1d(3, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)\n"
                       "  (1): LayerNorm((4,), eps=1e-05, elementwise_affine=True)\n"
                       "  (2): Dropout(p=0.5, inplace=False)\n"
                       "  (3): PReLU(num_parameters=1)\n"
                       "  (4): BatchNorm1d(4, eps=0.001, momentum=None, affine=False, track_running_stats=False)\n"
                       "  (5): LayerNorm((3, 4), eps=1e-06, elementwise_affine=False)\n"
                       "  (6): Dropout(p=0.1, inplace=False)\n"
                       "  (7): PReLU(num_parameters=8)\n"
                       "  (8): BatchNorm1d(2, eps=1e-05, momentum=0.01, affine=True, track_running_stats=True)\n"
                       "  (9): GaussianNoise(std=0.1)\n"
                       "  (10): BatchNorm2d(8, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)\n"
                       "  (11): BatchNorm2d(16, eps=0.001, momentum=None, affine=False, track_running_stats=False)\n"
                       "  (12): GroupNorm(2, 4, eps=1e-05, affine=True)\n"
                       "  (13): GroupNorm(3, 6, eps=0.001, affine=False)\n"
                       "  (14): Dropout2d(p=0.5, inplace=False)\n"
                       "  (15): Dropout2d(p=0.25, inplace=False)\n"
                       "  (16): InstanceNorm2d(3, eps=1e-05, momentum=0.1, affine=False, track_running_stats=False)\n"
                       "  (17): InstanceNorm2d(4, eps=0.001, momentum=0.2, affine=True, track_running_stats=True)\n"
                       ")\n";
    ok(buf && strcmp(buf, want) == 0, "prints as print(model) in PyTorch");
    if (buf && strcmp(buf, want) != 0) diag("got:\n%s", buf);
    free(buf);
    ag_module_free(m);

    struct { double v; const char *repr; } r[] = {{1e-5, "1e-05"}, {0.1, "0.1"}, {1, "1.0"}, {100, "100.0"},
                                                 {1e16, "1e+16"}, {123456.789, "123456.789"}, {1e-4, "0.0001"},
                                                 {1.234e-5, "1.234e-05"}, {-2.5, "-2.5"}, {1.0 / 3, "0.3333333333333333"},
                                                 {-0.0, "-0.0"}, {2e-300, "2e-300"}, {1.5e22, "1.5e+22"},
                                                 {12345678901234567.0, "1.2345678901234568e+16"}, {NAN, "nan"}};
    bool all = true;
    for (size_t i = 0; i < sizeof r / sizeof *r; i++) {
        char s[40];
        ag__py_float(s, sizeof s, r[i].v);
        if (strcmp(s, r[i].repr) != 0) {
            diag("repr(%.17g): got %s, want %s", r[i].v, s, r[i].repr);
            all = false;
        }
    }
    ok(all, "floats are written as Python's repr");
}

static ag_tensor *bn_eval_fn(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    ag_tensor *rm = ag_from_data((double[]){0.3, -0.2, 1.0}, AG_SHAPE(3), AG_F64);
    ag_tensor *rv = ag_from_data((double[]){0.5, 2.0, 1.5}, AG_SHAPE(3), AG_F64);
    return ag_batch_norm(in[0], rm, rv, in[1], in[2], false, 0.1, 1e-5);
}

static void test_group_norm_errors(void) {
    ag_scope_begin();
    ag_tensor *x = ag_randn(AG_SHAPE(2, 6, 3), AG_F64);
    ag_tensor *y = ag_group_norm(x, 4, NULL, NULL, 1e-5);
    ok(!y && ag_last_status() == AG_ERR_SHAPE &&
       strstr(ag_last_error(), "group_norm: input [2, 6, 3] has 6 channels, not divisible into num_groups=4"),
       "group_norm: channels not divisible by the groups: %s", ag_last_error());
    y = ag_group_norm(x, 0, NULL, NULL, 1e-5);
    ok(!y && ag_last_status() == AG_ERR_SHAPE, "group_norm: num_groups 0 fails: %s", ag_last_error());
    y = ag_group_norm(ag_randn(AG_SHAPE(6), AG_F64), 2, NULL, NULL, 1e-5);
    ok(!y && strstr(ag_last_error(), "group_norm: input [6] needs at least 2 dims (N, C, *)"), "group_norm: a 1-D input: %s",
       ag_last_error());
    y = ag_group_norm(x, 2, ag_ones(AG_SHAPE(3), AG_F64), NULL, 1e-5);
    ok(!y && ag_last_status() == AG_ERR_SHAPE && strstr(ag_last_error(), "group_norm: weight has shape [3], expected [6]"),
       "group_norm: a weight of the wrong size: %s", ag_last_error());
    y = ag_group_norm(ag_zeros(AG_SHAPE(0, 6, 3), AG_F64), 3, NULL, NULL, 1e-5);
    ok(y && ag_numel(y) == 0, "group_norm of an empty batch is empty");
    ag_tensor *wide = ag_requires_grad_(ag_ones(AG_SHAPE(1 << 20), AG_F32), true);
    y = ag_group_norm(ag_expand(ag_zeros(AG_SHAPE(0, 1, 1), AG_F32), AG_SHAPE(0, 1 << 20, 1 << 30)), 1 << 10, wide, NULL,
                      1e-5);
    ok(y && ag_numel(y) == 0 && ag_backward(ag_sum(y)) == AG_OK && ag_grad(wide) && ag_numel(ag_grad(wide)) == 1 << 20,
       "an empty batch of 2^50 values a sample expands no weight (zero gradients of [2^20]): %s",
       y ? "" : ag_last_error());
    ag_module *m = ag_nn_group_norm(4, 6, 1e-5, true);
    ok(!m && ag_last_status() == AG_ERR_ARG &&
       strstr(ag_last_error(), "nn.GroupNorm: num_channels=6 must be divisible by num_groups=4"),
       "nn.GroupNorm refuses 6 channels in 4 groups: %s", ag_last_error());
    ag_scope_end();
}

static void test_errors_and_eval_grad(void) {
    ag_scope_begin();
    ag_manual_seed(8);
    ag_tensor *in[3] = {ag_requires_grad_(ag_randn(AG_SHAPE(4, 3, 2), AG_F64), true),
                        ag_requires_grad_(ag_randn(AG_SHAPE(3), AG_F64), true),
                        ag_requires_grad_(ag_randn(AG_SHAPE(3), AG_F64), true)};
    ag_gradcheck_report rep;
    ag_status st = ag_gradcheck(bn_eval_fn, NULL, in, 3, NULL, &rep);
    ok(st == AG_OK && rep.checked == 720, "gradcheck of batch_norm in eval mode (%lld entries, worst error %.2g)",
       (long long)rep.checked, rep.error);
    ag_tensor *x = ag_randn(AG_SHAPE(2, 3), AG_F32);
    ag_tensor *w = ag_ones(AG_SHAPE(3), AG_F32);
    ok(!ag_batch_norm(x, NULL, NULL, w, NULL, false, 0.1, 1e-5) && strstr(ag_last_error(), "evaluation mode"),
       "eval without running statistics fails: %s", ag_last_error());
    ok(!ag_batch_norm(x, NULL, NULL, ag_ones(AG_SHAPE(4), AG_F32), NULL, true, 0.1, 1e-5) &&
           strstr(ag_last_error(), "weight has shape [4]"),
       "a weight of the wrong size fails: %s", ag_last_error());
    ok(!ag_batch_norm(x, NULL, NULL, ag_ones(AG_SHAPE(3), AG_F64), NULL, true, 0.1, 1e-5) && ag_last_status() == AG_ERR_DTYPE,
       "a weight of another dtype fails: %s", ag_last_error());
    ok(!ag_layer_norm(x, AG_SHAPE(4), NULL, NULL, 1e-5) && strstr(ag_last_error(), "expected input with shape [*, 4]"),
       "layer_norm over a size that does not fit: %s", ag_last_error());
    ok(!ag_prelu(x, ag_ones(AG_SHAPE(2), AG_F32)) && strstr(ag_last_error(), "3 channels"), "prelu with 2 slopes for 3 "
       "channels: %s", ag_last_error());
    ok(ag_batch_norm(NULL, NULL, NULL, w, NULL, true, 0.1, 1e-5) == NULL && ag_layer_norm(NULL, AG_SHAPE(3), NULL, NULL, 1e-5) == NULL &&
           ag_prelu(NULL, w) == NULL,
       "NULL inputs give NULL");

    ag_module *bn = ag_nn_batch_norm1d(3, 1e-5, 0.1, true, true);
    ok(!ag_module_forward(bn, ag_randn(AG_SHAPE(1, 3), AG_F32)) && strstr(ag_last_error(), "more than 1 value per channel") &&
           ag_item(ag_module_get_buffer(bn, "num_batches_tracked")) == 0,
       "a batch of one in training fails and counts nothing: %s", ag_last_error());
    ok(!ag_module_forward(bn, ag_randn(AG_SHAPE(2, 3, 2, 2), AG_F32)) && strstr(ag_last_error(), "expected 2D or 3D input (got 4D"),
       "4-D input: %s", ag_last_error());
    ag_module_eval(bn);
    ok(ag_module_forward(bn, ag_randn(AG_SHAPE(1, 3), AG_F32)) != NULL, "a batch of one is fine in eval mode");
    ag_module_free(bn);

    /* running statistics are not inputs of the graph: updating them does not trip version checks */
    ag_tensor *rm = ag_zeros(AG_SHAPE(3), AG_F32), *rv = ag_ones(AG_SHAPE(3), AG_F32);
    ag_tensor *xr = ag_requires_grad_(ag_randn(AG_SHAPE(5, 3), AG_F32), true);
    ag_tensor *y1 = ag_batch_norm(xr, rm, rv, NULL, NULL, true, 0.1, 1e-5);
    ag_tensor *y2 = ag_batch_norm(xr, rm, rv, NULL, NULL, true, 0.1, 1e-5);
    ok(y1 && y2 && ag_backward(ag_sum(ag_mul(ag_add(y1, y2), ag_randn(AG_SHAPE(5, 3), AG_F32)))) == AG_OK,
       "two training steps on the same running statistics, one backward");
    ag_scope_end();
}

/* relu's adjoint folded into linear_relu's (ops/matmul.c relu_mask_sum) reads dy whole, whatever the mask, and
 * selects after (mask22: no masked load): a NaN, an infinity or a -0 in dy where y <= 0 must give the bits of 0
 * there, as the select of the masked load did; prelu's dw (ops/prelu.c, which keeps its masked load: reading
 * dy whole there was slower) the same where x > 0.  linear_relu float32 and float64 at 97 rows (one chunk) and 300 (chunks), one thread and two: dx, dW
 * and db with such a dy the bits of those with 0 there; prelu over [N, C] and [N, C, L], one weight and C:
 * dw the same. */
static void test_masked_dy_whole(void) {
    const int threads = ag_get_num_threads();
    for (int d = 0; d < 2; d++) {
        const ag_dtype dt = d ? AG_F64 : AG_F32;
        const char *dn = d ? "float64" : "float32";
        for (int r = 0; r < 2; r++)
            for (int th = 1; th <= 2; th++) {
                ag_scope_begin();
                ag_set_num_threads(th);
                ag_manual_seed(11);
                const int64_t rows = r ? 300 : 97, in = 67, out = 133;
                ag_tensor *x = ag_randn(AG_SHAPE(rows, in), dt), *w = ag_randn(AG_SHAPE(out, in), dt);
                ag_tensor *b = ag_randn(AG_SHAPE(out), dt), *g0 = ag_randn(AG_SHAPE(rows, out), dt);
                ag_tensor *y = ag_linear_relu(x, w, b);
                ag_tensor *g1 = ag_clone(g0);
                int64_t poisoned = 0;
                for (int64_t i = 0; y && i < rows * out; i++) {
                    const double yv = d ? ((double *)ag_data(y))[i] : ((float *)ag_data(y))[i];
                    if (yv > 0) continue;
                    const double v = i % 3 == 0 ? NAN : i % 3 == 1 ? -INFINITY : -0.0;
                    if (d) ((double *)ag_data(g0))[i] = 0, ((double *)ag_data(g1))[i] = v;
                    else ((float *)ag_data(g0))[i] = 0, ((float *)ag_data(g1))[i] = (float)v;
                    poisoned++;
                }
                ag_tensor *grads[2][3];
                for (int k = 0; k < 2; k++) {
                    ag_tensor *xr = ag_requires_grad_(ag_clone(x), true), *wr = ag_requires_grad_(ag_clone(w), true);
                    ag_tensor *br = ag_requires_grad_(ag_clone(b), true);
                    ag_backward_ex(ag_linear_relu(xr, wr, br), k ? g1 : g0, false);
                    grads[k][0] = ag_grad(xr), grads[k][1] = ag_grad(wr), grads[k][2] = ag_grad(br);
                }
                ok(poisoned > rows && same_bits(grads[0][0], grads[1][0]) && same_bits(grads[0][1], grads[1][1]) &&
                       same_bits(grads[0][2], grads[1][2]),
                   "%s linear_relu, %lld rows, %d threads: dy NaN, -inf or -0 where y <= 0 (%lld places) gives the bits of 0 there",
                   dn, (long long)rows, th, (long long)poisoned);
                ag_scope_end();
            }
        for (int shape = 0; shape < 2; shape++)
            for (int nw = 0; nw < 2; nw++) {
                ag_scope_begin();
                ag_set_num_threads(1);
                ag_manual_seed(12);
                const int64_t C = 19;
                ag_tensor *x = shape ? ag_randn(AG_SHAPE(7, C, 45), dt) : ag_randn(AG_SHAPE(53, C), dt);
                ag_tensor *w = ag_randn(AG_SHAPE(nw ? C : 1), dt);
                ag_tensor *g0 = shape ? ag_randn(AG_SHAPE(7, C, 45), dt) : ag_randn(AG_SHAPE(53, C), dt), *g1 = ag_clone(g0);
                const int64_t n = ag_numel(x);
                int64_t poisoned = 0;
                for (int64_t i = 0; i < n; i++) {
                    const double xv = d ? ((double *)ag_data(x))[i] : ((float *)ag_data(x))[i];
                    if (xv <= 0) continue;
                    const double v = i % 2 ? NAN : INFINITY;
                    if (d) ((double *)ag_data(g0))[i] = 0, ((double *)ag_data(g1))[i] = v;
                    else ((float *)ag_data(g0))[i] = 0, ((float *)ag_data(g1))[i] = (float)v;
                    poisoned++;
                }
                ag_tensor *dw[2];
                for (int k = 0; k < 2; k++) {
                    ag_tensor *wr = ag_requires_grad_(ag_clone(w), true);
                    ag_backward_ex(ag_prelu(x, wr), k ? g1 : g0, false);
                    dw[k] = ag_grad(wr);
                }
                ok(poisoned > 0 && same_bits(dw[0], dw[1]),
                   "%s prelu over %s, %s: dy NaN or inf where x > 0 (%lld places) gives dw's bits of 0 there", dn,
                   shape ? "[N, C, L]" : "[N, C]", nw ? "C weights" : "one weight", (long long)poisoned);
                ag_scope_end();
            }
    }
    ag_set_num_threads(threads);
}

int main(void) {
    fx = ag_load_safetensors(FIXTURES "/nn_layers.safetensors");
    ok(fx != NULL, "fixtures load%s%s", fx ? "" : ": ", fx ? "" : ag_last_error());
    if (!fx) return tap_done();
    for (int d = 0; d < 2; d++) {
        ag_dtype dt = d ? AG_F32 : AG_F64;
        test_batch_norm(dt);
        test_batch_norm2d(dt);
        test_group_norm(dt);
        test_instance_norm2d(dt);
        test_layer_norm(dt);
        test_prelu(dt);
        test_dropout_fixtures(dt);
    }
    diag("worst relative error against PyTorch: float32 %.2g, float64 %.2g", worst_seen[0], worst_seen[1]);
    test_batch_norm_threads();
    test_batch_norm_cols();
    test_dropout_statistics();
    test_dropout_counter_mask(AG_F32);
    test_dropout_counter_mask(AG_F64);
    test_dropout2d();
    test_relu_dropout_fused(AG_F32);
    test_relu_dropout_fused(AG_F64);
    test_linear_relu_fused();
    test_masked_dy_whole();
    test_bn_cols_threads();
    test_bn_cols_chunks();
    test_bn_cols_fold();
    test_bn_cols_avx512();
    test_batch_norm_relu_fused(AG_F32);
    test_batch_norm_relu_fused(AG_F64);
    test_batch_norm_relu_adjoint(AG_F32);
    test_batch_norm_relu_adjoint(AG_F64);
    test_batch_norm_planes_bits();
    test_batch_norm_relu_dropout_fused(AG_F32);
    test_batch_norm_relu_dropout_fused(AG_F64);
    test_init();
    test_state();
    test_print();
    test_errors_and_eval_grad();
    test_group_norm_errors();
    ag_state_dict_free(fx);
    ok(ag_live_tensors() == 0, "nothing leaked (%ld live tensors)", ag_live_tensors());
    return tap_done();
}

/*
 * Stochastic weight averaging against PyTorch (test/fixtures/swa.txt, from
 * scripts/gen_optim_fixtures.py): a Sequential(Linear, BatchNorm1d, Tanh, Linear)
 * trained 12 SGD steps in float64, with an AveragedModel (SWA) updated after
 * steps 4-11, EMAs (decay 0.8) of the parameters and of parameters and buffers;
 * then update_bn over the inputs in batches of 4 and the eval output.  Also the
 * avg_fn form, state dicts and errors.
 */
#include <string.h>
#include "agrad/agrad.h"
#include "fixture.h"
#include "tap.h"

#ifndef FIXTURES
#define FIXTURES "test/fixtures"
#endif

static ag_state_dict *fx;

/* Reads "tensor name ndim sizes values" lines into fx (float64; names as written). */
static bool load(void) {
    FILE *f = fopen(FIXTURES "/swa.txt", "r");
    if (!f) return false;
    fx = ag_state_dict_new();
    static char line[16384];
    while (fgets(line, sizeof line, f)) {
        char name[128];
        int nd, used;
        if (sscanf(line, "tensor %127s %d %n", name, &nd, &used) != 2 || nd < 0 || nd > 4) continue;
        char *p = line + used;
        ag_shape s = {nd, {0}};
        int64_t n = 1;
        for (int d = 0; d < nd; d++) n *= s.dim[d] = strtoll(p, &p, 10);
        double v[256];
        for (int64_t i = 0; i < n && i < 256; i++) v[i] = strtod(p, &p);
        ag_tensor *t = ag_from_data(v, s, AG_F64);
        ag_state_dict_set(fx, name, t);
        ag_release(t);
    }
    fclose(f);
    return ag_state_dict_size(fx) > 40;
}

/* The fixture's entries prefix.<name> for every entry of m's state dict, loaded into m. */
static ag_status load_prefixed(ag_module *m, const char *prefix) {
    ag_state_dict *mine = ag_state_dict_new(), *want = ag_state_dict_new();
    ag_module_state_dict(m, mine);
    for (int i = 0; i < ag_state_dict_size(mine); i++) {
        char key[128];
        snprintf(key, sizeof key, "%s.%s", prefix, ag_state_dict_name(mine, i));
        ag_tensor *t = ag_state_dict_get(fx, key);
        ag_tensor *c = t ? ag_to_dtype(t, ag_dtype_of(ag_state_dict_tensor(mine, i))) : NULL;
        if (c) ag_state_dict_set(want, ag_state_dict_name(mine, i), c);
        ag_release(c);
    }
    ag_status st = ag_module_load_state_dict(m, want, true);
    ag_state_dict_free(mine);
    ag_state_dict_free(want);
    return st;
}

/* The largest difference between m's state and the fixture's prefix.* entries. */
static double compare(ag_module *m, const char *prefix) {
    ag_state_dict *mine = ag_state_dict_new();
    ag_module_state_dict(m, mine);
    double e = 0;
    for (int i = 0; i < ag_state_dict_size(mine); i++) {
        char key[128];
        snprintf(key, sizeof key, "%s.%s", prefix, ag_state_dict_name(mine, i));
        ag_tensor *got = ag_to_dtype(ag_state_dict_tensor(mine, i), AG_F64);
        double w = worst(got, ag_state_dict_get(fx, key));
        ag_release(got);
        if (w > 1e-13) diag("%s: %.3g", key, w);
        e = fmax(e, w);
    }
    ag_state_dict_free(mine);
    return e;
}

static ag_module *net(void) {
    ag_module *m = ag_nn_sequential(4, (ag_module *[]){ag_nn_linear(3, 4, true), ag_nn_batch_norm1d(4, 1e-5, 0.1, true, true),
                                                       ag_nn_tanh(), ag_nn_linear(4, 2, true)});
    ag_module_to_dtype(m, AG_F64);
    if (load_prefixed(m, "initial")) diag("loading the initial state: %s", ag_last_error());
    return m;
}

static ag_tensor *ema_fn(ag_tensor *avg, ag_tensor *cur, int64_t n, void *ctx) {
    (void)n;
    double d = *(const double *)ctx;
    return ag_add(ag_mul_scalar(avg, d), ag_mul_scalar(cur, 1 - d));
}

static void test_against_pytorch(void) {
    ag_module *model = net();
    double decay = 0.8;
    ag_averaged_model_options o = ag_averaged_model_defaults();
    ag_averaged_model *swa = ag_averaged_model_new(model, net(), &o);
    o.ema_decay = 0.8;
    ag_averaged_model *ema = ag_averaged_model_new(model, net(), &o);
    ag_averaged_model_options ob = ag_averaged_model_defaults();
    ob.avg_fn = ema_fn, ob.ctx = &decay, ob.use_buffers = true; /* as the fixture: EMA given as avg_fn */
    ag_averaged_model *ema_buf = ag_averaged_model_new(model, net(), &ob);
    ag_tensor *params[8];
    int np = ag_module_parameters(model, params, 8);
    ag_sgd_options so = ag_sgd_defaults();
    so.lr = 0.1, so.momentum = 0.9;
    ag_optimizer *opt = ag_sgd_new(params, np, &so);
    ag_tensor *X = ag_state_dict_get(fx, "X"), *Y = ag_state_dict_get(fx, "Y");
    bool good = swa && ema && ema_buf && opt;
    for (int s = 0; good && s < 12; s++) {
        ag_scope_begin();
        ag_optimizer_zero_grad(opt);
        good = ag_backward(ag_mean(ag_square(ag_sub(ag_module_forward(model, X), Y)))) == AG_OK &&
               ag_optimizer_step(opt) == AG_OK;
        if (good && s >= 4) good = ag_averaged_model_update(swa, model) == AG_OK;
        if (good) good = ag_averaged_model_update(ema, model) == AG_OK && ag_averaged_model_update(ema_buf, model) == AG_OK;
        ag_scope_end();
    }
    if (!good) diag("%s", ag_last_error());
    double em = compare(model, "model");
    ok(good && em < 1e-13, "the model after 12 SGD steps matches PyTorch's (%.2g)", em);
    struct {
        const char *tag;
        ag_averaged_model *am;
        int64_t n;
    } c[] = {{"swa", swa, 8}, {"ema", ema, 12}, {"ema_buffers", ema_buf, 12}};
    for (int i = 0; i < 3; i++) {
        double e = compare(ag_averaged_model_module(c[i].am), c[i].tag);
        ok(good && e < 1e-13 && ag_averaged_model_n_averaged(c[i].am) == c[i].n,
           "AveragedModel %s: %lld updates, parameters and buffers match PyTorch's (%.2g)", c[i].tag,
           (long long)ag_averaged_model_n_averaged(c[i].am), e);
    }
    /* update_bn over X in batches of 4, then the eval output */
    ag_dataset *ds = ag_tensor_dataset(X, Y);
    ag_loader_options lo = {.batch_size = 4};
    ag_loader *loader = ag_loader_new(ds, &lo);
    ag_module *avg = ag_averaged_model_module(swa);
    ag_module_eval(avg);
    ag_status st = ag_update_bn(loader, avg);
    double e = compare(avg, "swa_bn");
    ag_scope_begin();
    double ey = worst(ag_module_forward(avg, X), ag_state_dict_get(fx, "swa_bn.y"));
    ag_scope_end();
    ag_module *bn = ag_module_child(avg, 1, NULL);
    ok(st == AG_OK && e < 1e-13 && ey < 1e-13 && !ag_module_is_training(avg),
       "update_bn over 3 batches: running mean, variance and num_batches_tracked as PyTorch's (%.2g), eval output (%.2g); "
       "eval mode restored", e, ey);
    /* update_bn restores the momentum: a training forward after it moves the running mean by 0.1 */
    ag_scope_begin();
    ag_tensor *rm = ag_module_get_buffer(bn, "running_mean"), *before = ag_clone(rm);
    ag_module_train(avg, true);
    ag_no_grad_begin();
    ag_module_forward(avg, X);
    ag_no_grad_end();
    ag_tensor *batch_mean = ag_mean_dim(ag_module_forward(ag_module_child(avg, 0, NULL), X), 0, false);
    double drift = worst(rm, ag_add(ag_mul_scalar(before, 0.9), ag_mul_scalar(batch_mean, 0.1)));
    ok(drift < 1e-14, "after update_bn the BatchNorm's momentum 0.1 is back (%.2g)", drift);
    ag_scope_end();

    /* state dicts: PyTorch's names; a load into a fresh AveragedModel */
    ag_state_dict *sd = ag_state_dict_new(), *back = ag_state_dict_new();
    ag_averaged_model_state_dict(swa, sd);
    ag_averaged_model *again = ag_averaged_model_new(model, net(), NULL);
    bool same = ag_state_dict_get(sd, "module.1.running_var") && ag_state_dict_get_scalar(sd, "n_averaged") == 8 &&
                ag_averaged_model_load_state_dict(again, sd) == AG_OK && ag_averaged_model_n_averaged(again) == 8 &&
                ag_averaged_model_state_dict(again, back) == AG_OK && ag_state_dict_size(back) == ag_state_dict_size(sd);
    for (int i = 0; same && i < ag_state_dict_size(sd); i++)
        same = worst(ag_state_dict_tensor(sd, i), ag_state_dict_get(back, ag_state_dict_name(sd, i))) == 0;
    ok(same, "state dict: n_averaged and module.<name>; loaded into a new AveragedModel, which saves the same");
    ag_state_dict_free(back);
    ag_state_dict_set_scalar(sd, "n_averaged", -2);
    ok(ag_averaged_model_load_state_dict(again, sd) == AG_ERR_VALUE && strstr(ag_last_error(), "n_averaged"),
       "a negative n_averaged is refused: %s", ag_last_error());
    ag_clear_error();
    ag_state_dict_free(sd);
    ag_averaged_model_free(again);

    /* errors */
    ag_module *other = ag_nn_linear(3, 2, true);
    ok(!ag_averaged_model_new(model, other, NULL) && ag_last_status() != AG_OK, "a twin of another architecture is refused: %s",
       ag_last_error());
    ag_clear_error();
    ag_averaged_model_options bad = ag_averaged_model_defaults();
    bad.ema_decay = 1;
    ok(!ag_averaged_model_new(model, net(), &bad) && strstr(ag_last_error(), "ema_decay must be in [0, 1)"),
       "ema_decay 1: AG_ERR_ARG");
    ag_clear_error();
    ag_module *small = ag_nn_linear(3, 4, true);
    ok(ag_averaged_model_update(swa, small) == AG_ERR_ARG && ag_averaged_model_n_averaged(swa) == 8,
       "updating from another architecture: AG_ERR_ARG, not counted");
    ag_clear_error();
    ag_module_free(small);
    ok(ag_update_bn(NULL, avg) == AG_ERR_ARG, "update_bn(NULL, model): AG_ERR_ARG");
    ag_clear_error();

    ag_loader_free(loader);
    ag_dataset_free(ds);
    ag_optimizer_free(opt);
    ag_averaged_model_free(swa);
    ag_averaged_model_free(ema);
    ag_averaged_model_free(ema_buf);
    ag_module_free(model);
}

int main(void) {
    bool loaded = load();
    ok(loaded, "read swa.txt (%d tensors)", ag_state_dict_size(fx));
    if (loaded) test_against_pytorch();
    ag_state_dict_free(fx);
    ok(ag_live_tensors() == 0, "no tensor left alive (%lld)", (long long)ag_live_tensors());
    return tap_done();
}

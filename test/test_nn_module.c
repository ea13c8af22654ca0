/*
 * Modules: Linear, Sequential, ModuleList, ModuleDict, Flatten, Unflatten, Identity;
 * parameter names and
 * order, train/eval, zero_grad, printing, summary, state dicts and files; dtype
 * conversion in place (handles, optimizers, refusals, out of memory); ownership
 * (one parent per module, no cycles).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "agrad/agrad.h"
#include "core/internal.h"
#include "tap.h"
#include "test/fixture.h"
#include "failing_alloc.h"

#ifndef FIXTURES
#define FIXTURES "test/fixtures"
#endif

static ag_module *mlp(void) {
    return AG_SEQUENTIAL(ag_nn_flatten(1, -1), ag_nn_linear(784, 256, true), ag_nn_identity(), ag_nn_linear(256, 10, true));
}

static void test_linear(void) {
    ag_manual_seed(3);
    ag_module *l = ag_nn_linear(4, 3, true);
    ag_tensor *w = ag_module_get_parameter(l, "weight"), *b = ag_module_get_parameter(l, "bias");
    ok(w && ag_size(w, 0) == 3 && ag_size(w, 1) == 4 && ag_requires_grad(w) && ag_is_leaf(w), "weight [3, 4] requires grad");
    double lo = 1, hi = -1;
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 4; j++) {
            double v = ag_get(w, (int64_t[]){i, j});
            lo = v < lo ? v : lo;
            hi = v > hi ? v : hi;
        }
    ok(lo >= -0.5 && hi <= 0.5 && hi - lo > 0.2, "weights in U(-1/sqrt(4), 1/sqrt(4)) = U(-0.5, 0.5): [%.3f, %.3f]", lo, hi);
    ag_scope_begin();
    ag_tensor *x = ag_ones(AG_SHAPE(2, 4), AG_F32);
    ag_tensor *y = ag_module_forward(l, x);
    double expect = ag_item(ag_sum(ag_select(w, 0, 1))) + ag_get(b, (int64_t[]){1});
    ok(y && ag_size(y, 1) == 3, "forward shape [2, 3]");
    close_to(ag_get(y, (int64_t[]){1, 1}), expect, 1e-6, "y = x·Wᵀ + b");
    ok(ag_backward(ag_sum(y)) == AG_OK && ag_get(ag_grad(b), (int64_t[]){0}) == 2, "bias gradient = batch size");
    ok(ag_module_forward(l, ag_ones(AG_SHAPE(2, 5), AG_F32)) == NULL && strstr(ag_last_error(), "linear"),
       "wrong input width: %s", ag_last_error());
    ag_scope_end();
    ag_module_zero_grad(l);
    ok(ag_grad(b) == NULL, "zero_grad");
    ag_module *nb = ag_nn_linear(4, 3, false);
    ok(ag_module_num_parameter_tensors(nb) == 1, "bias=false has only a weight");
    ag_module_free(nb);
    ag_module_free(l);
}

static void test_sequential(void) {
    ag_module *m = mlp();
    ok(m && ag_module_num_children(m) == 4, "Sequential of 4");
    ok(ag_module_num_parameters(m, false) == 784 * 256 + 256 + 256 * 10 + 10, "203530 parameters");
    char name[64];
    ag_module_parameter(m, 0, name, sizeof name);
    ok(strcmp(name, "1.weight") == 0, "first parameter is 1.weight");
    ag_module_parameter(m, 3, name, sizeof name);
    ok(strcmp(name, "3.bias") == 0, "last parameter is 3.bias");
    ok(ag_module_parameter(m, 4, name, sizeof name) == NULL, "out of range");
    ag_tensor *ps[8];
    ok(ag_module_parameters(m, ps, 8) == 4 && ps[2] == ag_module_get_parameter(ag_module_get_child(m, "3"), "weight"),
       "parameters() in order");
    ag_clear_error();
    ok(ag_module_parameters(NULL, ps, 8) == -1 && ag_last_status() == AG_ERR_ARG &&
           !strcmp(ag_last_error(), "module_parameters: module is NULL"),
       "parameters() of NULL: -1 and %s", ag_last_error());
    ag_clear_error();
    char *s = fixture_module_repr(m);
    const char *want = "Sequential(\n"
                       "  (0): Flatten(start_dim=1, end_dim=-1)\n"
                       "  (1): Linear(in_features=784, out_features=256, bias=True)\n"
                       "  (2): Identity()\n"
                       "  (3): Linear(in_features=256, out_features=10, bias=True)\n"
                       ")\n";
    ok(s && strcmp(s, want) == 0, "prints like print(model)");
    free(s);
    ag_module_eval(m);
    ok(!ag_module_is_training(ag_module_get_child(m, "1")), "eval is recursive");
    ag_module_train(m, true);
    ok(ag_module_is_training(ag_module_get_child(m, "3")), "train is recursive");

    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    ok(ag_module_summary(m, AG_SHAPE(2, 28, 28), AG_F32, f) == AG_OK, "summary runs");
    fclose(f);
    ok(buf && strstr(buf, "Linear 1") && strstr(buf, "[2, 256]") && strstr(buf, "200960") && strstr(buf, "Total params: 203530"),
       "summary shows output shapes and parameter counts");
    free(buf);

    ag_scope_begin();
    ag_tensor *y = ag_module_forward(m, ag_randn(AG_SHAPE(5, 28, 28), AG_F32));
    ok(y && ag_size(y, 0) == 5 && ag_size(y, 1) == 10, "MLP forward [5, 28, 28] -> [5, 10]");
    ok(ag_backward(ag_mean(ag_square(y))) == AG_OK && ag_grad(ps[0]) && ag_grad(ps[3]), "gradients reach every layer");
    ag_scope_end();
    ok(ag_nn_sequential(2, (ag_module *[]){ag_nn_identity(), NULL}) == NULL, "a NULL member fails: %s", ag_last_error());
    ag_module *u = ag_nn_unflatten(1, AG_SHAPE(2, 5));
    ag_scope_begin();
    ag_tensor *uy = ag_module_forward(u, ag_zeros(AG_SHAPE(3, 10), AG_F32));
    ok(uy && ag_ndim(uy) == 3 && ag_size(uy, 2) == 5, "Unflatten(1, (2, 5))");
    ag_scope_end();
    ag_module_free(u);
    ag_module_free(m);

    /* outside any scope a forward leaves only its output; an empty Sequential returns a new reference */
    long before = ag_live_tensors();
    ag_module *two = ag_nn_sequential(2, (ag_module *[]){ag_nn_linear(3, 2, true), ag_nn_relu()});
    ag_tensor *x = ag_ones(AG_SHAPE(4, 3), AG_F32), *out = ag_module_forward(two, x);
    ok(out && ag_size(out, 1) == 2, "Sequential(Linear, ReLU) forward outside a scope");
    ag_release(out); /* frees the graph, and with it the Linear's output */
    ok(ag_live_tensors() == before + 3, "leaves nothing but x and the parameters once its output is released (%ld, 3 expected)",
       ag_live_tensors() - before);
    ag_module_free(two);
    ag_module *none = ag_nn_sequential(0, NULL);
    out = ag_module_forward(none, x);
    ok(out == x, "an empty Sequential passes its input through");
    ag_release(out);
    ok(ag_numel(x) == 12 && ag_live_tensors() == before + 1, "its output is a reference of its own: releasing it leaves x");
    ag_release(x);
    ag_module_free(none);
    ok(ag_live_tensors() == before, "nothing left (%ld)", ag_live_tensors() - before);
}

static void test_state(void) {
    char dir[] = "/tmp/agrad-nn-XXXXXX", path[256];
    if (!mkdtemp(dir)) return;
    snprintf(path, sizeof path, "%s/m.safetensors", dir);
    ag_manual_seed(1);
    ag_module *a = mlp();
    ag_manual_seed(2);
    ag_module *b = mlp();
    ok(ag_module_save(a, path) == AG_OK, "save");
    ok(ag_module_load(b, path) == AG_OK, "load into a differently initialised model");
    ag_scope_begin();
    ag_tensor *x = ag_randn(AG_SHAPE(3, 784), AG_F32);
    ag_tensor *ya = ag_module_forward(a, x), *yb = ag_module_forward(b, x);
    ok(ag_item(ag_sum(ag_abs(ag_sub(ya, yb)))) == 0, "save -> load gives identical outputs");
    ag_scope_end();

    ag_module *small = AG_SEQUENTIAL(ag_nn_linear(3, 2, true));
    ag_tensor *w = ag_module_get_parameter(ag_module_get_child(small, "0"), "weight");
    double before = ag_get(w, (int64_t[]){0, 0});
    ok(ag_module_load(small, path) == AG_ERR_ARG && strstr(ag_last_error(), "missing key \"0.weight\"") &&
           ag_get(w, (int64_t[]){0, 0}) == before,
       "mismatched file fails and changes nothing: %s", ag_last_error());
    ag_state_dict *sd = ag_load_safetensors(FIXTURES "/torch_state.safetensors");
    ok(ag_module_load_state_dict(small, sd, true) == AG_ERR_ARG && strstr(ag_last_error(), "unexpected key"),
       "strict load of PyTorch's file with extra BatchNorm keys: %s", ag_last_error());
    ok(ag_module_load_state_dict(small, sd, false) == AG_OK, "non-strict load takes the Linear's weights");
    close_to(ag_get(w, (int64_t[]){1, 2}), 0.15482072532176971, 1e-7, "weight from PyTorch");
    ag_state_dict_free(sd);
    ag_module_free(small);
    ag_module_free(a);
    ag_module_free(b);
    unlink(path);
    rmdir(dir);
}

/* A user's module over a ModuleList and a ModuleDict, as scripts/gen_container_fixtures.py's Net:
 * h = relu(blocks[i](h)) for each block, then heads["cls"](h) (its forward) and heads["reg"](h). */
static ag_tensor *net_hidden(ag_module *m, ag_tensor *x) {
    ag_module *blocks = ag_module_get_child(m, "blocks");
    for (int i = 0; x && i < ag_module_num_children(blocks); i++)
        x = ag_relu(ag_module_forward(ag_module_child(blocks, i, NULL), x));
    return x;
}
static ag_tensor *net_forward(ag_module *m, ag_tensor *x) {
    return ag_module_forward(ag_module_get_child(ag_module_get_child(m, "heads"), "cls"), net_hidden(m, x));
}
static const ag_module_type net_type = {"Net", net_forward, NULL, NULL};

static void test_module_list_dict(void) {
    ag_module *net = ag_module_new(&net_type, NULL);
    ag_module *blocks = AG_MODULE_LIST(ag_nn_linear(3, 4, true));
    ok(blocks && ag_nn_module_list_append(blocks, ag_nn_linear(4, 4, true)) == AG_OK, "ModuleList of Linear, appended to");
    const char *names[] = {"cls", "reg"};
    ag_module *heads = ag_nn_module_dict(2, names, (ag_module *[]){ag_nn_linear(4, 2, true), ag_nn_linear(4, 1, true)});
    ok(net && ag_module_add_child(net, "blocks", blocks) == AG_OK && ag_module_add_child(net, "heads", heads) == AG_OK,
       "a user's module holds them as children");
    char name[64];
    const char *want[8] = {"blocks.0.weight", "blocks.0.bias", "blocks.1.weight", "blocks.1.bias",
                           "heads.cls.weight", "heads.cls.bias", "heads.reg.weight", "heads.reg.bias"};
    bool named = true;
    for (int i = 0; i < 8; i++) named &= ag_module_parameter(net, i, name, sizeof name) && !strcmp(name, want[i]);
    ok(named && !ag_module_parameter(net, 8, name, sizeof name), "parameters named as PyTorch's state dict keys, in order");
    char *txt = fixture_module_repr(net);
    const char *printed = "Net(\n"
                          "  (blocks): ModuleList(\n"
                          "    (0): Linear(in_features=3, out_features=4, bias=True)\n"
                          "    (1): Linear(in_features=4, out_features=4, bias=True)\n"
                          "  )\n"
                          "  (heads): ModuleDict(\n"
                          "    (cls): Linear(in_features=4, out_features=2, bias=True)\n"
                          "    (reg): Linear(in_features=4, out_features=1, bias=True)\n"
                          "  )\n"
                          ")\n";
    ok(txt && !strcmp(txt, printed), "prints as print(model) in PyTorch");
    if (txt && strcmp(txt, printed)) diag("got:\n%s", txt);
    free(txt);

    ag_state_dict *fx = ag_load_safetensors(FIXTURES "/containers.safetensors");
    ok(fx && ag_module_load_state_dict(net, fx, false) == AG_OK, "PyTorch's state dict loads");
    ag_state_dict *sd = ag_state_dict_new();
    ok(ag_module_state_dict(net, sd) == AG_OK && ag_state_dict_size(sd) == 8, "the model's state dict has the 8 keys");
    ag_state_dict_free(sd);
    ag_scope_begin();
    ag_tensor *x = fx ? ag_requires_grad_(ag_clone(ag_state_dict_get(fx, "x")), true) : NULL;
    ag_tensor *cls = x ? ag_module_forward(net, x) : NULL;
    ag_tensor *reg = x ? ag_module_forward(ag_module_get_child(heads, "reg"), net_hidden(net, x)) : NULL;
    ok(cls && reg && ag_backward(ag_add(ag_sum(cls), ag_sum(reg))) == AG_OK, "forward through the children and backward");
    double e1 = cls ? ag_item(ag_max(ag_abs(ag_sub(cls, ag_state_dict_get(fx, "cls"))))) : 1;
    double e2 = reg ? ag_item(ag_max(ag_abs(ag_sub(reg, ag_state_dict_get(fx, "reg"))))) : 1;
    double e3 = x ? ag_item(ag_max(ag_abs(ag_sub(ag_grad(x), ag_state_dict_get(fx, "dx"))))) : 1;
    ok(e1 < 1e-6 && e2 < 1e-6 && e3 < 1e-6, "outputs and dx match PyTorch's (max differences %.2g, %.2g, %.2g)", e1, e2, e3);
    ag_tensor *y = ag_module_forward(blocks, x);
    ok(!y && ag_last_status() == AG_ERR_ARG && strstr(ag_last_error(), "ModuleList: has no forward"),
       "a ModuleList has no forward, as PyTorch's: %s", ag_last_error());
    ok(!ag_module_forward(heads, x) && strstr(ag_last_error(), "ModuleDict: has no forward"), "nor a ModuleDict");
    ag_scope_end();
    ag_state_dict_free(fx);

    ok(ag_nn_module_dict_add(heads, "cls", ag_nn_relu()) == AG_ERR_ARG, "a taken name fails: %s", ag_last_error());
    ok(ag_nn_module_dict_add(heads, "a.b", ag_nn_relu()) == AG_ERR_ARG, "a dotted name fails: %s", ag_last_error());
    ok(ag_nn_module_list_append(heads, ag_nn_relu()) == AG_ERR_ARG && strstr(ag_last_error(), "not a ModuleList"),
       "appending to a ModuleDict as a list fails: %s", ag_last_error());
    ok(ag_nn_module_dict_add(blocks, "x", ag_nn_relu()) == AG_ERR_ARG && strstr(ag_last_error(), "not a ModuleDict"),
       "adding to a ModuleList by name fails: %s", ag_last_error());
    ok(!AG_MODULE_LIST(ag_nn_relu(), NULL), "a NULL module fails the list: %s", ag_last_error());
    ag_module *empty = ag_nn_module_list(0, NULL);
    char *e = fixture_module_repr(empty);
    ok(e && !strcmp(e, "ModuleList()\n"), "an empty ModuleList prints as PyTorch's: ModuleList()");
    free(e);
    ag_module_free(empty);
    ag_module_free(net);
}

static void test_custom_and_dtype(void) {
    ag_module *m = ag_nn_linear(2, 2, true);
    ok(ag_module_register_parameter(m, "weight", ag_module_get_parameter(m, "weight")) == AG_ERR_ARG, "duplicate name: %s",
       ag_last_error());
    ok(ag_module_to_dtype(m, AG_F64) == AG_OK && ag_dtype_of(ag_module_get_parameter(m, "bias")) == AG_F64, "to float64");
    ag_scope_begin();
    ag_tensor *y = ag_module_forward(m, ag_ones(AG_SHAPE(1, 2), AG_F64));
    ok(y && ag_dtype_of(y) == AG_F64, "float64 forward");
    ag_scope_end();
    ag_module_free(m);
}

static void test_activation_modules(void) {
    ag_module *m = AG_SEQUENTIAL(ag_nn_linear(3, 4, true), ag_nn_relu(), ag_nn_tanh(), ag_nn_sigmoid(), ag_nn_softmax(-1),
                                 ag_nn_log_softmax(1));
    char *s = fixture_module_repr(m);
    ok(s && strstr(s, "(1): ReLU()\n") && strstr(s, "(4): Softmax(dim=-1)\n") && strstr(s, "(5): LogSoftmax(dim=1)\n"),
       "activation modules print as in PyTorch");
    free(s);
    ag_scope_begin();
    ag_tensor *x = ag_randn(AG_SHAPE(2, 3), AG_F32);
    ag_tensor *y = ag_module_forward(m, x);
    ag_module *lin = ag_module_get_child(m, "0");
    ag_tensor *h = ag_module_forward(lin, x);
    ag_tensor *want = ag_log_softmax(ag_softmax(ag_sigmoid(ag_tanh(ag_relu(h))), -1), 1);
    ok(y && ag_item(ag_max(ag_abs(ag_sub(y, want)))) == 0, "Sequential of activations equals the functional chain");
    ag_scope_end();
    ag_module_free(m);
}

/* ---- ag_module_to_dtype ------------------------------------------------------------------- */
/* Linear(3, 4) -> Tanh -> Linear(4, 2) in float32, initialised from seed. */
static ag_module *small_mlp(uint64_t seed) {
    ag_manual_seed(seed);
    return AG_SEQUENTIAL(ag_nn_linear(3, 4, true), ag_nn_tanh(), ag_nn_linear(4, 2, true));
}

/* One step of opt on mse(m(x), y) for fixed data in dtype dt. */
static ag_status train_step(ag_module *m, ag_optimizer *opt, ag_dtype dt) {
    static const double xs[15] = {0.1, -0.4, 0.3, 1.2, 0.5, -0.7, -0.2, 0.9, 0.4, 0.6, -1.1, 0.8, 0.0, 0.3, -0.5};
    static const double ys[10] = {0.5, -0.5, 1.0, 0.2, -0.3, 0.7, 0.1, 0.0, -0.8, 0.4};
    ag_optimizer_zero_grad(opt);
    ag_scope_begin();
    ag_tensor *x = ag_to_dtype(ag_from_data(xs, AG_SHAPE(5, 3), AG_F64), dt);
    ag_tensor *y = ag_to_dtype(ag_from_data(ys, AG_SHAPE(5, 2), AG_F64), dt);
    ag_status st = ag_backward(ag_mse_loss(ag_module_forward(m, x), y, NULL));
    ag_scope_end();
    return st ? st : ag_optimizer_step(opt);
}

/* Largest |a - b| between the parameters of two models of one architecture (1e300
 * if their dtypes differ). */
static double params_diff(const ag_module *a, const ag_module *b) {
    ag_tensor *pa[8], *pb[8];
    int n = ag_module_parameters(a, pa, 8);
    double worst = 0;
    for (int i = 0; i < n && ag_module_parameters(b, pb, 8) == n; i++) {
        if (ag_dtype_of(pa[i]) != ag_dtype_of(pb[i])) return 1e300;
        for (int64_t j = 0; j < ag_numel(pa[i]); j++) {
            double d = fabs(ag__read(pa[i], j) - ag__read(pb[i], j));
            worst = d > worst ? d : worst;
        }
    }
    return worst;
}

/* An optimizer made before the conversion keeps training the model, its state
 * following the parameters' dtype: its steps equal those of a fresh optimizer loaded
 * with the same state after the conversion (load_state_dict casts state, as PyTorch). */
static void test_to_dtype_keeps_handles(void) {
    ag_module *a = small_mlp(5), *b = small_mlp(5);
    ag_tensor *pa[4], *pb[4], *after[4];
    ag_module_parameters(a, pa, 4);
    ag_module_parameters(b, pb, 4);
    ag_optimizer *oa = ag_adam_new(pa, 4, NULL), *ob = ag_adam_new(pb, 4, NULL);
    ok(train_step(a, oa, AG_F32) == AG_OK && train_step(b, ob, AG_F32) == AG_OK, "a float32 Adam step on two equal models");
    ag_tensor *g0 = ag_grad(pa[0]);
    double w = ag_get(pa[0], (int64_t[]){1, 2}), g = ag_get(g0, (int64_t[]){1, 2});
    uint32_t version = ag_version(pa[0]);

    ok(ag_module_to_dtype(a, AG_F64) == AG_OK, "to float64");
    bool kept = ag_module_parameters(a, after, 4) == 4;
    for (int i = 0; i < 4; i++)
        kept = kept && after[i] == pa[i] && ag_optimizer_param(oa, i) == pa[i] && ag_dtype_of(pa[i]) == AG_F64;
    ok(kept, "every parameter keeps its handle (the module's and the optimizer's are the ones from before) and is float64");
    ok(ag_get(pa[0], (int64_t[]){1, 2}) == w && ag_version(pa[0]) > version, "values kept exactly, version bumped");
    ok(ag_grad(pa[0]) == g0 && ag_dtype_of(g0) == AG_F64 && ag_get(g0, (int64_t[]){1, 2}) == g,
       "the gradient is converted in place too (same handle, same value)");
    ag_scope_begin();
    ag_tensor *wt = ag_t(pa[0]);
    ok(wt && ag_dtype_of(wt) == AG_F64 && ag_get(wt, (int64_t[]){2, 1}) == w, "a view taken after the conversion reads float64");
    ag_scope_end();

    /* b: the optimizer rebuilt after the conversion, with the state saved before it */
    ag_state_dict *sd = ag_state_dict_new();
    ok(ag_optimizer_state_dict(ob, sd) == AG_OK, "save b's optimizer state");
    ag_optimizer_free(ob);
    ok(ag_module_to_dtype(b, AG_F64) == AG_OK, "b to float64");
    ob = ag_adam_new(pb, 4, NULL);
    ok(ag_optimizer_load_state_dict(ob, sd) == AG_OK, "a fresh optimizer loads it (cast to float64)");
    ag_state_dict_free(sd);

    ok(train_step(a, oa, AG_F64) == AG_OK && ag_get(pa[0], (int64_t[]){1, 2}) != w,
       "the optimizer made before the conversion trains the float64 model");
    ok(train_step(b, ob, AG_F64) == AG_OK && params_diff(a, b) == 0,
       "its state followed the parameters: the step equals the fresh optimizer's");
    sd = ag_state_dict_new();
    ag_optimizer_state_dict(oa, sd);
    ag_tensor *m0 = ag_state_dict_get(sd, "state.0.exp_avg");
    ok(m0 && ag_dtype_of(m0) == AG_F64, "exp_avg is float64 after the step");
    ag_state_dict_free(sd);

    ok(ag_module_to_dtype(a, AG_F32) == AG_OK && ag_module_to_dtype(b, AG_F32) == AG_OK, "both back to float32");
    double w2 = ag_get(pa[0], (int64_t[]){1, 2});
    ok(train_step(a, oa, AG_F32) == AG_OK && train_step(b, ob, AG_F32) == AG_OK && params_diff(a, b) == 0 &&
           ag_get(pa[0], (int64_t[]){1, 2}) != w2 && ag_dtype_of(ag_grad(pa[3])) == AG_F32,
       "and both keep training identically in float32");
    ag_optimizer_free(oa);
    ag_optimizer_free(ob);
    ag_module_free(a);
    ag_module_free(b);
}

/* True if every parameter and gradient of m is of dtype dt and the parameters hold want. */
static bool unchanged(const ag_module *m, ag_dtype dt, const double *want) {
    ag_tensor *p[8];
    int n = ag_module_parameters(m, p, 8);
    for (int i = 0, k = 0; i < n; i++) {
        if (ag_dtype_of(p[i]) != dt || (ag_grad(p[i]) && ag_dtype_of(ag_grad(p[i])) != dt)) return false;
        for (int64_t j = 0; j < ag_numel(p[i]); j++)
            if (ag__read(p[i], j) != want[k++]) return false;
    }
    return true;
}

/* The parameters of m, flattened into out (at most 64 values). */
static void snapshot(const ag_module *m, double *out) {
    ag_tensor *p[8];
    int n = ag_module_parameters(m, p, 8);
    for (int i = 0, k = 0; i < n; i++)
        for (int64_t j = 0; j < ag_numel(p[i]) && k < 64; j++) out[k++] = ag__read(p[i], j);
}

/* What can't be converted in place is refused before anything changes. */
static void test_to_dtype_refusals(void) {
    ag_module *m = small_mlp(6);
    ag_tensor *p[4];
    ag_module_parameters(m, p, 4);
    double before[64];
    snapshot(m, before);
    uint32_t v0 = ag_version(p[0]);
    ag_scope_begin();
    ag_tensor *view = ag_t(p[2]); /* "2.weight", after two parameters that could be converted */
    ok(ag_module_to_dtype(m, AG_F64) == AG_ERR_ARG &&
           strcmp(ag_last_error(), "module_to_dtype: can't convert parameter \"2.weight\" (float32 [2, 4]) of Sequential "
                                   "to float64: a view of its data is alive; release the views (close the scope of the "
                                   "forward pass) first") == 0,
       "a live view of a parameter is refused: %s", ag_last_error());
    ok(unchanged(m, AG_F32, before) && ag_version(p[0]) == v0 && ag_dtype_of(view) == AG_F32,
       "and nothing changed, not even the parameters before it");
    ag_scope_end();
    ok(ag_module_to_dtype(m, AG_F64) == AG_OK && ag_dtype_of(p[2]) == AG_F64, "once the view is gone it converts");

    /* a backward through a graph recorded before the conversion fails instead of mixing dtypes */
    ag_tensor *bias = p[1];
    ag_scope_begin();
    ag_tensor *x = ag_ones(AG_SHAPE(2, 4), AG_F64);
    ag_tensor *by_add = ag_sum(ag_add(x, bias));                  /* add keeps no input for its adjoint */
    ag_tensor *by_linear = ag_sum(ag_module_forward(m, ag_ones(AG_SHAPE(2, 3), AG_F64))); /* linear keeps its weight */
    ok(by_add && by_linear && ag_module_to_dtype(m, AG_F32) == AG_OK, "back to float32 with two graphs alive");
    ok(ag_backward(by_add) == AG_ERR_DTYPE && strstr(ag_last_error(), "its dtype changed after the graph was recorded") &&
           !ag_grad(bias),
       "backward through the first: %s", ag_last_error());
    ok(ag_backward(by_linear) == AG_ERR_GRAPH && strstr(ag_last_error(), "in-place operation"),
       "backward through the second: %s", ag_last_error());
    ag_scope_end();

    /* a buffer that is not a leaf */
    ag_module *l = ag_nn_linear(2, 2, false);
    ag_scope_begin();
    ag_tensor *leaf = ag_requires_grad_(ag_ones(AG_SHAPE(2), AG_F32), true);
    ok(ag_module_register_buffer(l, "scale", ag_mul_scalar(leaf, 2)) == AG_OK, "a non-leaf buffer");
    ag_scope_end();
    ok(ag_module_to_dtype(l, AG_F64) == AG_ERR_ARG && strstr(ag_last_error(), "buffer \"scale\"") &&
           strstr(ag_last_error(), "not a leaf (it comes from MulBackward1)") &&
           ag_dtype_of(ag_module_get_parameter(l, "weight")) == AG_F32,
       "is refused: %s", ag_last_error());
    ag_module_free(l);

    /* a flattened model keeps its flat buffer: converting it is refused */
    ag_module *f = small_mlp(7);
    ag_tensor *fp = NULL, *fg = NULL;
    ag_module_parameters(f, p, 4);
    snapshot(f, before);
    ok(ag_flatten_parameters(p, 4, &fp, &fg) == AG_OK, "flatten a model");
    ok(ag_module_to_dtype(f, AG_F64) == AG_ERR_ARG && strstr(ag_last_error(), "parameter \"0.weight\"") &&
           strstr(ag_last_error(), "it lives in a flat buffer (ag_flatten_parameters)"),
       "converting it is refused: %s", ag_last_error());
    ((float *)ag_data(fp))[0] = 42;
    ok(unchanged(f, AG_F32, (before[0] = 42, before)), "nothing changed: the parameters still live in the flat buffer");
    ok(ag_module_to_dtype(f, AG_F32) == AG_OK, "converting it to its own dtype is nothing to do");
    ag_release(fp);
    ag_release(fg);
    ag_module_free(f);
    ag_module_free(m);
}

/* Each allocation of a conversion failing in turn: AG_ERR_NOMEM, the model unchanged,
 * nothing leaked; then it converts. */
static void test_to_dtype_out_of_memory(void) {
    ag_module *m = small_mlp(8);
    ag_tensor *p[4];
    ag_module_parameters(m, p, 4);
    ag_scope_begin();
    ag_backward(ag_sum(ag_module_forward(m, ag_ones(AG_SHAPE(2, 3), AG_F32)))); /* gradients to convert too */
    ag_scope_end();
    double before[64];
    snapshot(m, before);
    long live = ag_live_tensors();
    ag_set_allocator(failing_alloc, NULL);
    for (int dir = 0; dir < 2; dir++) {
        ag_dtype to = dir ? AG_F32 : AG_F64, from = dir ? AG_F64 : AG_F32;
        int failures = 0, clean = 0;
        ag_status st = AG_ERR_NOMEM;
        for (fail_at = 1; fail_at < 100 && st; fail_at++) {
            alloc_calls = 0;
            long blocks = live_blocks;
            st = ag_module_to_dtype(m, to);
            if (st == AG_OK) break;
            failures++;
            clean += st == AG_ERR_NOMEM && live_blocks == blocks && ag_live_tensors() == live && unchanged(m, from, before);
        }
        fail_at = -1;
        ok(st == AG_OK && failures > 0 && clean == failures,
           "to %s: each of the %d allocations failing gives AG_ERR_NOMEM, leaks nothing, changes nothing",
           ag_dtype_name(to), failures);
        ok(unchanged(m, to, before), "then it converts, values kept");
    }
    ag_set_allocator(NULL, NULL);
    ag_module_free(m);
}

/* The optimizer refuses a gradient whose dtype is not its parameter's (not reachable
 * through ag_module_to_dtype, which converts both). */
static void test_optimizer_gradient_dtype(void) {
    ag_tensor *w = ag_requires_grad_(ag_zeros(AG_SHAPE(2), AG_F32), true);
    ag_optimizer *opt = ag_adam_new(&w, 1, NULL);
    w->grad = ag__new_unowned(AG_F64, 1, (int64_t[]){2}, true);
    ok(ag_optimizer_step(opt) == AG_ERR_DTYPE &&
           strcmp(ag_last_error(), "Adam: parameter 0 (float32 [2]) has a float64 gradient") == 0 && ag_get(w, (int64_t[]){0}) == 0,
       "a gradient of another dtype: %s", ag_last_error());
    ag_optimizer_free(opt);
    ag_release(w);
}

/* Where converted data goes: a float64 tensor narrows to float32 within its own block
 * and widens back into it (the two overlap: each element must be read before it is
 * overwritten); a tensor over your buffer (ag_from_buffer) converts into memory of its
 * own and leaves the buffer alone. */
static void test_to_dtype_storage(void) {
    double vals[5] = {1.5, -2.25, 3.125, 1e-3, -7}, mine[5];
    memcpy(mine, vals, sizeof mine);
    ag_module *m = ag_nn_identity();
    ag_tensor *w = ag_from_data(vals, AG_SHAPE(5), AG_F64), *u = ag_from_buffer(mine, AG_SHAPE(5), AG_F64);
    ok(ag_module_register_parameter(m, "w", w) == AG_OK && ag_module_register_buffer(m, "u", u) == AG_OK,
       "a float64 parameter and a buffer over the caller's memory");
    ag_release(w);
    ag_release(u);
    void *room = ag_data(w);
    ok(ag_module_to_dtype(m, AG_F32) == AG_OK && ag_data(w) == room && ag_get(w, (int64_t[]){2}) == 3.125 &&
           ag_get(w, (int64_t[]){3}) == (float)1e-3,
       "float64 -> float32 converts within the tensor's own memory");
    ok(ag_dtype_of(u) == AG_F32 && ag_data(u) != (void *)mine && mine[3] == 1e-3 && ag_get(u, (int64_t[]){4}) == -7,
       "the borrowed buffer is left as it was, the tensor reads its own float32 copy");
    ok(ag_module_to_dtype(m, AG_F64) == AG_OK && ag_data(w) == room && ag_get(w, (int64_t[]){0}) == 1.5 &&
           ag_get(w, (int64_t[]){4}) == -7 && ag_get(w, (int64_t[]){3}) == (double)(float)1e-3,
       "and float32 -> float64 back into the same memory");
    ag_module_free(m);
}

/* ---- ownership ------------------------------------------------------------------------------ */
/* Every misuse is refused and frees nothing: under AddressSanitizer this test shows no
 * double free and no leak. */
static void test_ownership(void) {
    long live = ag_live_tensors();
    ag_module *a = ag_nn_sequential(0, NULL), *b = ag_nn_sequential(0, NULL), *lin = ag_nn_linear(2, 2, true);
    ok(ag_module_add_child(a, "fc", lin) == AG_OK, "a Linear becomes a's child \"fc\"");
    ok(ag_module_add_child(b, "fc", lin) == AG_ERR_ARG &&
           strcmp(ag_last_error(), "module add_child: can't add Linear (child \"fc\" of Sequential) as child \"fc\" of "
                                   "Sequential: it already has a parent, and a module has one (make a second module)") == 0,
       "adding it to a second parent is refused: %s", ag_last_error());
    ok(ag_nn_sequential_append(b, lin) == AG_ERR_ARG &&
           strstr(ag_last_error(), "sequential_append: can't add Linear (child \"fc\" of Sequential) as child \"0\" of Sequential"),
       "so is appending it: %s", ag_last_error());
    ok(ag_module_num_children(b) == 0 && ag_module_get_child(a, "fc") == lin && ag_module_num_parameter_tensors(lin) == 2,
       "it stays a's child, alive");
    ag_clear_error();
    ag_module_free(lin);
    ok(ag_last_status() == AG_ERR_ARG &&
           strcmp(ag_last_error(), "module_free: Linear (child \"fc\" of Sequential) belongs to its parent, which frees it; "
                                   "free the root module instead") == 0 &&
           ag_module_num_parameter_tensors(lin) == 2,
       "freeing a child directly is refused: %s", ag_last_error());

    ok(ag_module_add_child(a, "me", a) == AG_ERR_ARG && strstr(ag_last_error(), "a module can't be its own child") &&
           ag_module_num_children(a) == 1,
       "a module as its own child: %s", ag_last_error());
    ok(ag_nn_sequential_append(a, a) == AG_ERR_ARG &&
           strstr(ag_last_error(), "sequential_append: can't add Sequential as child \"1\" of Sequential: a module can't be its own child"),
       "sequential_append(s, s): %s", ag_last_error());
    ok(ag_module_add_child(lin, "loop", a) == AG_ERR_ARG &&
           strstr(ag_last_error(), "it contains the parent, which would make a cycle") && ag_module_num_children(lin) == 0,
       "a module under its own child: %s", ag_last_error());
    ag_module *inner = AG_SEQUENTIAL(ag_nn_identity());
    ok(ag_module_add_child(a, "inner", inner) == AG_OK, "a nested Sequential");
    ok(ag_nn_sequential_append(inner, a) == AG_ERR_ARG && strstr(ag_last_error(), "cycle"),
       "appending the grandparent: %s", ag_last_error());
    ok(ag_module_add_child(ag_module_get_child(inner, "0"), "up", a) == AG_ERR_ARG && strstr(ag_last_error(), "cycle"),
       "adding the root under a grandchild: %s", ag_last_error());
    ag_module *l2 = ag_nn_linear(1, 1, false);
    ok(ag_nn_sequential_append(l2, l2) == AG_ERR_ARG && ag_module_num_parameter_tensors(l2) == 1,
       "appending a non-Sequential to itself fails without freeing it: %s", ag_last_error());
    ag_module_free(l2);

    ag_module *d = ag_nn_identity();
    ok(AG_SEQUENTIAL(d, d) == NULL && strstr(ag_last_error(), "can't add Identity (child \"0\" of Sequential) as child \"1\""),
       "a module listed twice in a Sequential: %s", ag_last_error());
    ag_module *e = ag_nn_identity();
    ok(ag_nn_sequential(3, (ag_module *[]){NULL, e, e}) == NULL, "listed twice after a NULL: freed once");
    ok(AG_SEQUENTIAL(ag_nn_identity(), lin) == NULL && strstr(ag_last_error(), "already has a parent") &&
           ag_module_get_child(a, "fc") == lin && ag_module_num_parameter_tensors(lin) == 2,
       "a Sequential of another module's child fails and leaves it there: %s", ag_last_error());
    ag_module_free(a);
    ag_module_free(b);
    ok(ag_live_tensors() == live, "freed once each, nothing leaked (%ld tensors)", ag_live_tensors() - live);
}

int main(void) {
    test_activation_modules();
    test_linear();
    test_sequential();
    test_state();
    test_custom_and_dtype();
    test_module_list_dict();
    test_to_dtype_keeps_handles();
    test_to_dtype_refusals();
    test_to_dtype_out_of_memory();
    test_optimizer_gradient_dtype();
    test_to_dtype_storage();
    test_ownership();
    ok(ag_live_tensors() == 0, "nothing leaked (%ld live tensors)", ag_live_tensors());
    return tap_done();
}

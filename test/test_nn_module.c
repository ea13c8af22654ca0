/*
 * Modules: Linear, Sequential, Flatten, Unflatten, Identity; parameter names and
 * order, train/eval, zero_grad, printing, summary, state dicts and files.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "core/internal.h"
#include "agrad/nn.h"
#include "tap.h"

#ifndef FIXTURES
#define FIXTURES "test/fixtures"
#endif

static char *print_to_string(const ag_module *m) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    ag_module_print(m, f);
    fclose(f);
    return buf;
}

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
    char *s = print_to_string(m);
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
    char *s = print_to_string(m);
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

int main(void) {
    test_activation_modules();
    test_linear();
    test_sequential();
    test_state();
    test_custom_and_dtype();
    ok(ag_live_tensors() == 0, "nothing leaked (%ld live tensors)", ag_live_tensors());
    return tap_done();
}

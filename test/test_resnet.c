/*
 * Residual and multi-input models written as ordinary user modules: the small ResNet
 * of examples/resnet.h (fashion_cnn --model resnet) against its PyTorch twin
 * (test/fixtures/resnet.safetensors, scripts/gen_resnet_fixtures.py): outputs in
 * training and eval mode, the gradients in the input and in every parameter, the
 * running statistics; and a two-input module over ag_module_forward_n.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "agrad/agrad.h"
#include "examples/resnet.h"
#include "tap.h"

/* max |a - b| / max(1, max |b|), or INFINITY when either is missing or the shapes differ. */
static double rel_diff(ag_tensor *a, ag_tensor *b) {
    if (!a || !b || ag_numel(a) != ag_numel(b)) return INFINITY;
    ag_tensor *ad = ag_to_dtype(a, AG_F64), *bd = ag_to_dtype(b, AG_F64);
    double top = ag_item(ag_max(ag_abs(bd)));
    return ag_item(ag_max(ag_abs(ag_sub(ad, ag_reshape(bd, ag_shape_of(ad)))))) / fmax(1.0, top);
}

static void resnet_matches_pytorch(void) {
    ag_state_dict *fx = ag_load_safetensors(FIXTURES "/resnet.safetensors");
    ag_module *net = resnet_new(3, 10);
    ok(fx && net, "the fixture loads and resnet_new(3, 10) builds%s%s", fx && net ? "" : ": ", fx && net ? "" : ag_last_error());
    if (!fx || !net) { ag_state_dict_free(fx), ag_module_free(net); return; }
    ag_state_dict *sd = ag_state_dict_new();
    ag_status st = ag_module_state_dict(net, sd);
    int missing = 0, n = ag_state_dict_size(sd);
    for (int i = 0; i < n; i++)
        if (!ag_state_dict_get(fx, ag_state_dict_name(sd, i))) missing++, diag("not in PyTorch's: %s", ag_state_dict_name(sd, i));
    ok(!st && n == 56 && !missing, "the state dict has PyTorch's %d names (%d missing)", n, missing);
    ag_state_dict_free(sd);
    ok(ag_module_load_state_dict(net, fx, false) == AG_OK, "PyTorch's weights load");

    ag_scope_begin();
    ag_tensor *x = ag_requires_grad_(ag_clone(ag_state_dict_get(fx, "x")), true);
    ag_tensor *y = ag_module_forward(net, x);
    ok(y && ag_backward(ag_sum(ag_mul(y, ag_state_dict_get(fx, "dy")))) == AG_OK, "forward and backward in training mode");
    double ey = rel_diff(y, ag_state_dict_get(fx, "y")), edx = rel_diff(ag_grad(x), ag_state_dict_get(fx, "dx"));
    ok(ey < 1e-5 && edx < 1e-5, "output and input gradient match PyTorch's (relative %.2g, %.2g)", ey, edx);
    double eg = 0, eb = 0;
    int grads = 0, buffers = 0;
    char name[256], key[300];
    for (int i = 0; i < ag_module_num_parameter_tensors(net); i++, grads++) {
        ag_tensor *p = ag_module_parameter(net, i, name, sizeof name);
        snprintf(key, sizeof key, "grad.%s", name);
        eg = fmax(eg, rel_diff(ag_grad(p), ag_state_dict_get(fx, key)));
    }
    ok(grads == 29 && eg < 1e-4, "the gradients of all %d parameters match PyTorch's (relative %.2g)", grads, eg);
    sd = ag_state_dict_new();
    ag_module_state_dict(net, sd);
    for (int i = 0; i < ag_state_dict_size(sd); i++) {
        snprintf(key, sizeof key, "after.%s", ag_state_dict_name(sd, i));
        ag_tensor *want = ag_state_dict_get(fx, key);
        if (want) buffers++, eb = fmax(eb, rel_diff(ag_state_dict_tensor(sd, i), want));
    }
    ag_state_dict_free(sd);
    ok(buffers == 27 && eb < 1e-5, "the %d BatchNorm buffers after the step match PyTorch's (relative %.2g)", buffers, eb);
    ag_module_eval(net);
    ag_no_grad_begin();
    double ee = rel_diff(ag_module_forward(net, x), ag_state_dict_get(fx, "y_eval"));
    ag_no_grad_end();
    ok(ee < 1e-5, "eval mode output matches PyTorch's (relative %.2g)", ee);
    ag_scope_end();
    ag_module_free(net);
    ag_state_dict_free(fx);
}

/* Two branches, one per input, added: out[0] = a(in[0]) + b(in[1]).  The single-tensor
 * forward feeds x to both. */
static ag_status two_branch_forward_n(ag_module *m, int n_in, ag_tensor *const *in, const void *opts, int n_out,
                                      ag_tensor **out) {
    (void)opts, (void)n_out;
    out[0] = ag_add(ag_module_forward(ag_module_get_child(m, "a"), in[0]),
                    ag_module_forward(ag_module_get_child(m, "b"), n_in > 1 ? in[1] : NULL)); /* NULL: add fails */
    return out[0] ? AG_OK : ag_last_status();
}
static ag_tensor *two_branch_forward(ag_module *m, ag_tensor *x) {
    ag_tensor *out;
    return two_branch_forward_n(m, 2, (ag_tensor *[]){x, x}, NULL, 1, &out) ? NULL : out;
}
static const ag_module_type two_branch_type = {"TwoBranch", two_branch_forward, NULL, NULL};

static void two_input_module(void) {
    ag_manual_seed(3);
    ag_module *m = ag_module_new(&two_branch_type, NULL);
    ok(m && !ag_module_add_child(m, "a", ag_nn_linear(3, 2, true)) && !ag_module_add_child(m, "b", ag_nn_linear(5, 2, false)),
       "a two-input module in a few lines");
    if (!m) return;
    ag_module_set_forward_n(m, two_branch_forward_n);
    ag_scope_begin();
    ag_tensor *x1 = ag_requires_grad_(ag_randn(AG_SHAPE(4, 3), AG_F32), true);
    ag_tensor *x2 = ag_requires_grad_(ag_randn(AG_SHAPE(4, 5), AG_F32), true);
    ag_tensor *y = NULL;
    ok(ag_module_forward_n(m, 2, (ag_tensor *[]){x1, x2}, NULL, 1, &y) == AG_OK && y && ag_size(y, 1) == 2,
       "ag_module_forward_n runs it");
    ag_module *a = ag_module_get_child(m, "a"), *b = ag_module_get_child(m, "b");
    ag_tensor *wa = ag_module_get_parameter(a, "weight"), *ba = ag_module_get_parameter(a, "bias");
    ag_tensor *wb = ag_module_get_parameter(b, "weight");
    ag_tensor *want = ag_add(ag_add(ag_matmul(x1, ag_t(wa)), ba), ag_matmul(x2, ag_t(wb)));
    ok(rel_diff(y, want) < 1e-6, "out = x1·Waᵀ + ba + x2·Wbᵀ (%.2g)", rel_diff(y, want));
    ok(y && ag_backward(ag_sum(y)) == AG_OK, "backward through both branches");
    /* d sum(y)/dx1 = 1·Wa, row for row; d/dx2 = 1·Wb; d/dWb = 1ᵀ·x2 */
    ag_tensor *ones = ag_ones(AG_SHAPE(4, 2), AG_F32);
    double e1 = rel_diff(ag_grad(x1), ag_matmul(ones, wa)), e2 = rel_diff(ag_grad(x2), ag_matmul(ones, wb));
    double e3 = rel_diff(ag_grad(wb), ag_matmul(ag_t(ones), x2));
    ok(e1 < 1e-6 && e2 < 1e-6 && e3 < 1e-6, "gradients reach both inputs and both branches (%.2g, %.2g, %.2g)", e1, e2, e3);
    ag_tensor *z = NULL;
    ok(ag_module_forward_n(m, 1, (ag_tensor *[]){x1}, NULL, 1, &z) != AG_OK && !z, "one input is refused");
    ag_scope_end();
    ag_module_free(m);
}

int main(void) {
    resnet_matches_pytorch();
    two_input_module();
    ok(ag_live_tensors() == 0, "no tensor left alive (%lld)", (long long)ag_live_tensors());
    return tap_done();
}

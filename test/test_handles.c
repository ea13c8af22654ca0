/*
 * Handle checks (meson option handle_checks, core/handles.c): a released
 * tensor passed back to the API gives AG_ERR_ARG naming the function and the
 * argument instead of a use-after-free, so does a pointer that never was a
 * tensor, and the property functions reject NULL.  Release builds check the
 * header's magic word instead of the registry, and must catch the same cases
 * here (the freed blocks are still agrad's, in its per-thread cache).  Under
 * AddressSanitizer (a debug build, so with the registry) this also shows that
 * no check reads a freed handle.
 */
#include <math.h>
#include <string.h>
#include "agrad/agrad.h"
#include "core/internal.h"
#include "tap.h"

#define LIVE_MSG " is not a live tensor (freed or invalid handle)"

/* The last call failed (failed) with AG_ERR_ARG and exactly the message want. */
static void expect(bool failed, const char *want, const char *call) {
    ok(failed && ag_last_status() == AG_ERR_ARG && strcmp(ag_last_error(), want) == 0, "%s -> %s", call,
       ag_last_error());
    ag_clear_error();
}
/* STALE(failed, "add", "b"): the call failed because argument b of add is not live. */
#define STALE(failed, fn, arg) expect(failed, fn ": " arg LIVE_MSG, #failed)

/* A freed tensor of an unusual size: its block is not handed out again by the
 * small tensors the calls below would make if a check were missing. */
static ag_tensor *freed_tensor(void) {
    ag_tensor *x = ag_zeros(AG_SHAPE(37, 29), AG_F64);
    ag_release(x);
    return x;
}

static void test_ops(void) {
    ag_tensor *a = ag_ones(AG_SHAPE(2, 3), AG_F32), *b = ag_ones(AG_SHAPE(3, 2), AG_F32);
    long live = ag_live_tensors();
    ag_tensor *x = freed_tensor();
    ok(ag_live_tensors() == live, "the freed tensor is gone");
    STALE(!ag_add(a, x), "add", "b");
    STALE(!ag_add(x, a), "add", "a");
    STALE(!ag_exp(x), "exp", "x");
    STALE(!ag_mul_scalar(x, 2), "mul_scalar", "x");
    STALE(!ag_clamp(x, 0, 1), "clamp", "x");
    STALE(!ag_eq(a, x), "eq", "b");
    STALE(!ag_sum(x), "sum", "x");
    STALE(!ag_sum_dim(x, 0, false), "sum", "x");
    STALE(!ag_max(x), "max", "x");
    STALE(!ag_argmax(x, 1, false), "argmax", "x");
    STALE(!ag_var(x, 1), "var", "x");
    STALE(!ag_softmax(x, 1), "softmax", "x");
    STALE(!ag_matmul(a, x), "matmul", "b");
    STALE(!ag_linear(a, b, x), "linear", "b");
    STALE(!ag_transpose(x, 0, 1), "transpose", "x");
    STALE(!ag_reshape(x, AG_SHAPE(-1)), "reshape", "x");
    STALE(!ag_contiguous(x), "contiguous", "x");
    STALE(!ag_to_dtype(x, AG_F32), "to_dtype", "x");
    STALE(!ag_where(x, a, a), "where", "cond");
    STALE(!ag_index_select(a, 0, x), "index_select", "index");
    STALE(!ag_cat((ag_tensor *[]){a, x}, 2, 0), "cat", "xs[1]");
    ag_tensor *parts[2];
    STALE(ag_chunk(x, 2, 0, parts, 2) == -1, "chunk", "x");
    STALE(!ag_layer_norm(a, AG_SHAPE(3), x, NULL, 1e-5), "layer_norm", "weight");
    STALE(!ag_dropout(x, 0.5, true), "dropout", "x");
    STALE(!ag_zeros_like(x), "zeros_like", "t");
    ok(ag_live_tensors() == live, "no failed op made a tensor");
    ag_release(a);
    ag_release(b);
}

static void test_in_place_and_reading(void) {
    ag_tensor *a = ag_ones(AG_SHAPE(2, 3), AG_F64);
    ag_tensor *x = freed_tensor();
    STALE(!ag_fill_(x, 1), "fill_", "t");
    STALE(!ag_mul_(a, x), "mul_", "other");
    STALE(!ag_copy_(x, a), "copy_", "dst");
    STALE(!ag_uniform_(x, 0, 1), "uniform_", "t");
    STALE(isnan(ag_item(x)), "item", "t");
    STALE(isnan(ag_get(x, (int64_t[]){0, 0})), "get", "t");
    double buf[6];
    STALE(ag_copy_to(x, buf, 6, AG_F64) == AG_ERR_ARG, "copy_to", "t");
    char *s = ag_to_string(x);
    STALE(!s, "to_string", "t");
    STALE(ag_ndim(x) == 0, "ndim", "t");
    STALE(ag_numel(x) == 0, "numel", "t");
    STALE(ag_size(x, 0) == -1, "size", "t");
    STALE(ag_shape_of(x).ndim == 0, "shape_of", "t");
    STALE(!ag_data(x), "data", "t");
    STALE(!ag_is_contiguous(x), "is_contiguous", "t");
    expect(ag_numel(NULL) == 0, "numel: t is NULL", "ag_numel(NULL) == 0");
    expect(ag_ndim(NULL) == 0, "ndim: t is NULL", "ag_ndim(NULL) == 0");
    /* A pointer that never was a tensor is not read either. */
    double not_a_tensor[64] = {0};
    ag_tensor *bogus = (ag_tensor *)(void *)not_a_tensor;
    STALE(ag_numel(bogus) == 0, "numel", "t");
    STALE(!ag_neg(bogus), "neg", "x");
    ag_release(a);
}

static void test_autograd_and_lifetime(void) {
    ag_tensor *w = ag_requires_grad_(ag_ones(AG_SHAPE(3), AG_F64), true);
    ag_tensor *sq = ag_mul(w, w), *loss = ag_sum(sq);
    ag_tensor *x = freed_tensor();
    STALE(ag_backward(x) == AG_ERR_ARG, "backward", "loss");
    STALE(ag_backward_ex(loss, x, false) == AG_ERR_ARG, "backward", "grad_out");
    STALE(!ag_requires_grad_(x, true), "requires_grad_", "t");
    STALE(!ag_grad(x), "grad", "t");
    STALE(!ag_detach(x), "detach", "t");
    STALE(!ag_retain(x), "retain", "t");
    STALE(!ag_keep(x), "keep", "t");
    ag_release(x);
    STALE(true, "release", "t");
    ag_zero_grad(x);
    STALE(true, "zero_grad", "t");
    ag_tensor *gsum = ag_backward(loss) == AG_OK ? ag_sum(ag_grad(w)) : NULL;
    ok(gsum && ag_item(gsum) == 6, "backward still works after the failures");
    ag_release(gsum);

    /* Released twice: once by hand, once by its scope. */
    ag_scope_begin();
    ag_tensor *t = ag_zeros(AG_SHAPE(41, 3), AG_F32);
    ag_release(t);
    ok(ag_scope_end() == AG_OK, "the scope still closes");
    STALE(true, "release", "t");
    ag_release(loss);
    ag_release(sq);
    ag_release(w);
}

static void test_optim_nn_loss(void) {
    ag_tensor *w = ag_requires_grad_(ag_ones(AG_SHAPE(2, 3), AG_F32), true);
    ag_tensor *logits = ag_ones(AG_SHAPE(4, 3), AG_F32);
    int64_t labels[4] = {0, 1, 2, 1};
    ag_tensor *y = ag_from_data(labels, AG_SHAPE(4), AG_I64);
    ag_module *m = ag_nn_linear(3, 2, true);
    ag_tensor *x = freed_tensor();
    STALE(!ag_sgd_new((ag_tensor *[]){w, x}, 2, NULL), "SGD", "params[1]");
    STALE(!ag_adam_new((ag_tensor *[]){x}, 1, NULL), "Adam", "params[0]");
    STALE(ag_clip_grad_norm((ag_tensor *[]){w, x}, 2, 1, 2, false, NULL) == AG_ERR_ARG, "clip_grad_norm", "params[1]");
    STALE(!ag_l2_penalty((ag_tensor *[]){x}, 1, 0.1), "l2_penalty", "params[0]");
    STALE(!ag_mse_loss(logits, x, NULL), "mse_loss", "target");
    STALE(!ag_cross_entropy(x, y, NULL), "cross_entropy", "input");
    ag_loss_opts o = ag_loss_defaults();
    o.weight = x;
    STALE(!ag_cross_entropy(logits, y, &o), "cross_entropy", "weight");
    STALE(!ag_module_forward(m, x), "module_forward", "x");
    STALE(ag_module_register_buffer(m, "extra", x) == AG_ERR_ARG, "module_register_buffer", "t");
    STALE(!ag_init_xavier_uniform_(x, 1), "init.xavier_uniform_", "t");
    STALE(isnan(ag_accuracy(x, y)), "accuracy", "pred");
    ag_tensor *out = ag_module_forward(m, logits);
    ok(out && ag_size(out, 1) == 2, "the module still runs on a live tensor");
    ag_release(out);
    ag_module_free(m);
    ag_release(y);
    ag_release(logits);
    ag_release(w);
}

int main(void) {
    diag("handle checks by %s", ag_handle_checks() ? "the registry of live handles" : "the header's magic word");
    test_ops();
    test_in_place_and_reading();
    test_autograd_and_lifetime();
    test_optim_nn_loss();
    ok(ag_live_tensors() == 0, "no tensor leaked (%ld live)", ag_live_tensors());
    return tap_done();
}

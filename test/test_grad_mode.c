/*
 * Grad-mode controls as PyTorch's: no_grad / enable_grad regions nesting like
 * with-blocks, set_grad_enabled returning the previous state and undone by the
 * end of an enclosing region, and inference mode: nothing recorded, inference
 * tensors marked (views too), no version bumps, the error when one would be
 * saved for backward or updated in place outside the mode, and the clone that
 * gets a normal tensor.  Every check ends with no tensor alive.
 */
#include <math.h>
#include <string.h>
#include "agrad/agrad.h"
#include "tap.h"

static bool has(const char *text, const char *part) { return text && strstr(text, part) != NULL; }

/* Element k of a 1-d tensor. */
static double at(const ag_tensor *t, int64_t k) { return ag_get(t, &k); }

static void regions_nest(void) {
    ok(ag_is_grad_enabled(), "grad mode is on at start");
    ag_no_grad_begin();
    ok(!ag_is_grad_enabled(), "no_grad_begin turns grad mode off");
    ag_enable_grad_begin();
    ok(ag_is_grad_enabled(), "enable_grad_begin inside no-grad turns it on (torch.enable_grad)");
    ag_no_grad_begin();
    ag_no_grad_begin();
    ok(!ag_is_grad_enabled(), "no-grad nested in enable_grad is off");
    ag_no_grad_end();
    ok(!ag_is_grad_enabled(), "the inner end of two no-grad regions keeps it off");
    ag_no_grad_end();
    ok(ag_is_grad_enabled(), "the end of the no-grad regions restores the enable_grad state");
    ag_enable_grad_end();
    ok(!ag_is_grad_enabled(), "enable_grad_end restores the enclosing no-grad state");
    ag_no_grad_end();
    ok(ag_is_grad_enabled(), "and the outer end restores grad mode");
    ag_no_grad_end();
    ok(ag_is_grad_enabled(), "an end without a begin is ignored");

    /* A recorded op inside enable_grad within no-grad. */
    ag_tensor *x = ag_requires_grad_(ag_ones(AG_SHAPE(3), AG_F64), true);
    ag_no_grad_begin();
    ag_tensor *a = ag_mul_scalar(x, 2);
    ag_enable_grad_begin();
    ag_tensor *b = ag_mul_scalar(x, 2);
    ag_enable_grad_end();
    ag_no_grad_end();
    ok(!ag_requires_grad(a) && ag_requires_grad(b) && ag_grad_fn_name(b), "ops record in enable_grad only");
    ag_release(a), ag_release(b), ag_release(x);
}

static void set_grad_enabled(void) {
    ok(ag_set_grad_enabled(false) == true, "set_grad_enabled(false) returns the previous state (on)");
    ok(!ag_is_grad_enabled(), "and turns grad mode off");
    ok(ag_set_grad_enabled(false) == false, "a second call returns off");
    ok(ag_set_grad_enabled(true) == false && ag_is_grad_enabled(), "set_grad_enabled(true) turns it back on");

    /* Inside nested no-grad regions: the end of the inner one restores off, as in PyTorch. */
    ag_no_grad_begin();
    ag_no_grad_begin();
    ag_set_grad_enabled(true);
    ok(ag_is_grad_enabled(), "set_grad_enabled(true) inside no-grad turns it on");
    ag_no_grad_end();
    ok(!ag_is_grad_enabled(), "the end of the inner region restores the state it found (off)");
    ag_no_grad_end();
    ok(ag_is_grad_enabled(), "the end of the outer one restores on");

    ag_enable_grad_begin();
    bool was = ag_set_grad_enabled(false);
    ok(was && !ag_is_grad_enabled(), "set_grad_enabled(false) inside enable_grad");
    ag_enable_grad_end();
    ok(ag_is_grad_enabled(), "enable_grad_end restores on");
}

static void too_deep(void) {
    /* Alternating regions change the mode each time: 64 nest, the 65th is refused. */
    for (int i = 0; i < 64; i++) i % 2 ? ag_enable_grad_begin() : ag_no_grad_begin();
    ok(ag_is_grad_enabled(), "64 alternating regions nest (the last is enable_grad)");
    ag_clear_error();
    ag_no_grad_begin();
    ok(ag_last_status() == AG_ERR_ARG && has(ag_last_error(), "nested too deeply") && ag_is_grad_enabled(),
       "the 65th change of mode is refused and changes nothing: %s", ag_last_error());
    ag_no_grad_end(); /* the refused region's end is ignored */
    ok(ag_is_grad_enabled(), "the refused region's end is ignored");
    for (int i = 63; i >= 0; i--) i % 2 ? ag_enable_grad_end() : ag_no_grad_end();
    ok(ag_is_grad_enabled(), "the 64 ends restore grad mode");
    ag_no_grad_begin();
    ag_no_grad_end();
    ok(ag_is_grad_enabled(), "regions work again afterwards");
    ag_clear_error();
}

static void inference(void) {
    long before = ag_live_tensors();
    ag_tensor *w = ag_requires_grad_(ag_full(AG_SHAPE(3), 2, AG_F64), true);
    ag_tensor *n = ag_ones(AG_SHAPE(3), AG_F64);
    ok(!ag_is_inference(w) && !ag_is_inference_mode_enabled(), "tensors made outside are normal");

    ag_inference_mode_begin();
    ok(ag_is_inference_mode_enabled() && !ag_is_grad_enabled(), "inference mode is on, grad mode off");
    ag_enable_grad_begin();
    ok(!ag_is_grad_enabled(), "enable_grad inside inference mode keeps grad mode off");
    ag_enable_grad_end();
    ok(!ag_set_grad_enabled(true) && !ag_is_grad_enabled(), "so does set_grad_enabled(true)");
    ag_tensor *y = ag_mul(w, w);
    ag_tensor *i = ag_full(AG_SHAPE(3), 3, AG_F64);
    ag_tensor *iv = ag_narrow(i, 0, 0, 2);
    ag_tensor *nv = ag_narrow(n, 0, 0, 2);
    ok(y && !ag_requires_grad(y) && ag_is_inference(y), "an op records nothing and makes an inference tensor");
    ok(ag_is_inference(i) && ag_is_inference(iv) && !ag_is_inference(nv),
       "made tensors and their views are inference tensors; a view of a normal tensor is normal");
    uint32_t vi = ag_version(i), vn = ag_version(n);
    ok(ag_add_scalar_(i, 1) && ag_version(i) == vi, "in-place on an inference tensor bumps no version");
    ok(ag_add_scalar_(n, 1) && ag_version(n) == vn + 1, "in-place on a normal tensor inside still bumps its version");
    ag_inference_mode_end();
    ok(!ag_is_inference_mode_enabled() && ag_is_grad_enabled(), "inference_mode_end restores grad mode");

    /* Saved for backward: refused; not saved (add's adjoint reads nothing): allowed. */
    ag_clear_error();
    ag_tensor *bad = ag_mul(w, i);
    ok(!bad && ag_last_status() == AG_ERR_GRAPH && has(ag_last_error(), "inference tensors cannot be saved for backward"),
       "mul of a tensor requiring grad by an inference tensor fails: %s", ag_last_error());
    ag_tensor *sum = ag_add(w, i);
    ok(sum && ag_requires_grad(sum), "add takes an inference tensor (its adjoint reads nothing)");
    ag_tensor *plain = ag_mul(i, i);
    ok(plain && !ag_requires_grad(plain), "an op that records nothing takes inference tensors");

    /* In-place outside inference mode: refused, also for uniform_. */
    ag_clear_error();
    ok(!ag_add_scalar_(i, 1) && ag_last_status() == AG_ERR_GRAPH &&
           has(ag_last_error(), "inplace update to an inference tensor") && at(i, 0) == 4,
       "in-place on an inference tensor outside inference mode fails, nothing written: %s", ag_last_error());
    ag_clear_error();
    ok(!ag_uniform_(iv, 0, 1) && ag_last_status() == AG_ERR_GRAPH, "so does uniform_ on a view of one");

    /* A clone outside inference mode is normal and works everywhere. */
    ag_tensor *c = ag_clone(i);
    ag_scope_begin();
    ag_tensor *z = ag_sum(ag_mul(w, c));
    ok(c && !ag_is_inference(c) && ag_backward(z) == AG_OK && at(ag_grad(w), 1) == 4 && ag_add_scalar_(c, 0),
       "a clone is a normal tensor: saved for backward, updated in place");
    ag_scope_end();

    ag_release(c), ag_release(plain), ag_release(sum), ag_release(nv), ag_release(iv), ag_release(i);
    ag_release(y), ag_release(n), ag_release(w);
    ag_clear_error();
    ok(ag_live_tensors() == before, "inference mode leaves no tensor behind (%ld)", ag_live_tensors() - before);
}

int main(void) {
    regions_nest();
    set_grad_enabled();
    too_deep();
    inference();
    return tap_done();
}

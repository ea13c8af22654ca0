/*
 * Hooks (docs/hooks.md): tensor hooks on leaves and non-leaves (the gradient
 * they see, replacing it, order, removal, wrong replacements, failures),
 * post-accumulate-grad hooks (once per backward, as early as the graph allows),
 * and module forward pre-, forward and full backward hooks on a Sequential,
 * checked against hand-computed and finite-difference values.  Every check ends
 * with no tensor alive.
 */
#include <math.h>
#include <string.h>
#include "agrad/agrad.h"
#include "tap.h"

static bool has(const char *text, const char *part) { return text && strstr(text, part) != NULL; }

static ag_tensor *vec(const double *v, int64_t n) { return ag_from_data(v, AG_SHAPE(n), AG_F64); }

static ag_status ag__fail_test(void) {
    ag_sqrt(NULL);
    ag_reshape(ag_zeros(AG_SHAPE(2), AG_F64), AG_SHAPE(3)); /* records a shape error */
    return AG_ERR_VALUE;
}

/* max |a - b| (float64 tensors of one shape); INFINITY if either is NULL. */
static double ag_max_abs_diff(ag_tensor *a, ag_tensor *b) {
    if (!a || !b || ag_numel(a) != ag_numel(b)) return INFINITY;
    ag_scope_begin();
    ag_tensor *d = ag_max(ag_abs(ag_sub(a, b)));
    double v = d ? ag_item(d) : INFINITY;
    ag_scope_end();
    return v;
}

static double at(const ag_tensor *t, int64_t i) { return t ? ag_get(t, &i) : NAN; }

/* ---- a log of hook calls ------------------------------------------------------------------------ */
static char log_buf[256];
static void note(const char *s) {
    size_t n = strlen(log_buf);
    snprintf(log_buf + n, sizeof log_buf - n, "%s%s", n ? " " : "", s);
}

/* Records the gradient it sees in *user (a retained copy) and its name. */
typedef struct seen {
    const char *name;
    ag_tensor *grad;
    int calls;
} seen;

static ag_status observe(ag_tensor *grad, ag_tensor **replace, void *user) {
    (void)replace;
    seen *s = user;
    s->calls++;
    ag_release(s->grad);
    ag_no_grad_begin();
    s->grad = ag_retain(ag_clone(grad)); /* ours past the hook's scope */
    ag_no_grad_end();
    note(s->name);
    return s->grad ? AG_OK : ag_last_status();
}

static ag_status times_two(ag_tensor *grad, ag_tensor **replace, void *user) {
    (void)user;
    note("x2");
    *replace = ag_mul_scalar(grad, 2);
    return *replace ? AG_OK : ag_last_status();
}

static ag_status clip_half(ag_tensor *grad, ag_tensor **replace, void *user) {
    (void)user;
    note("clip");
    *replace = ag_clamp(grad, -0.5, 0.5);
    return *replace ? AG_OK : ag_last_status();
}

/* y = sum(x * w): dy/dx = w, dy/dw = x. */
static void test_leaf_hooks(void) {
    long before = ag_live_tensors();
    ag_scope_begin();
    const double xv[] = {1, -2, 3}, wv[] = {0.25, 1, -0.75};
    ag_tensor *x = ag_requires_grad_(vec(xv, 3), true), *w = ag_requires_grad_(vec(wv, 3), true);
    seen sx = {"x", NULL, 0};
    ag_hook_handle hx;
    ok(ag_register_hook(x, observe, &sx, &hx) == AG_OK, "register_hook on a leaf");
    log_buf[0] = 0;
    ok(ag_backward(ag_sum(ag_mul(x, w))) == AG_OK, "backward with a hook on x");
    ok(sx.calls == 1 && sx.grad && at(sx.grad, 0) == 0.25 && at(sx.grad, 1) == 1 && at(sx.grad, 2) == -0.75,
       "the hook saw dy/dx = w once (%d calls)", sx.calls);
    ok(at(ag_grad(x), 1) == 1 && at(ag_grad(w), 2) == 3, "grads are unchanged by an observing hook");

    /* x used twice: the hook sees the sum of both contributions, once. */
    ag_zero_grad(x);
    sx.calls = 0;
    ok(ag_backward(ag_sum(ag_add(ag_mul(x, w), ag_mul_scalar(x, 3)))) == AG_OK &&
           sx.calls == 1 && at(sx.grad, 0) == 3.25 && at(ag_grad(x), 0) == 3.25,
       "a leaf used twice: its hook sees the whole gradient w + 3 once (%d calls, %g)", sx.calls, at(sx.grad, 0));

    /* Replacing: x2 then clip, in that order; .grad accumulates the replaced gradient. */
    ag_zero_grad(x);
    ag_zero_grad(w);
    ag_hook_handle h2 = {0, 0}, hc = {0, 0};
    ok(ag_register_hook(x, times_two, NULL, &h2) == AG_OK && ag_register_hook(x, clip_half, NULL, &hc) == AG_OK,
       "two more hooks on x");
    log_buf[0] = 0;
    ok(ag_backward(ag_sum(ag_mul(x, w))) == AG_OK, "backward with three hooks");
    ok(strcmp(log_buf, "x x2 clip") == 0, "hooks run in registration order (%s)", log_buf);
    /* clamp(2w, -0.5, 0.5) = [0.5, 0.5, -0.5] */
    ok(at(ag_grad(x), 0) == 0.5 && at(ag_grad(x), 1) == 0.5 && at(ag_grad(x), 2) == -0.5,
       "x.grad = clip(2w) = [0.5, 0.5, -0.5]: [%g, %g, %g]", at(ag_grad(x), 0), at(ag_grad(x), 1), at(ag_grad(x), 2));
    ok(at(ag_grad(w), 0) == 1 && at(ag_grad(w), 1) == -2, "w.grad is untouched by x's hooks");
    /* A second backward accumulates: the hooks see this pass's gradient, not .grad. */
    ok(ag_backward(ag_sum(ag_mul(x, w))) == AG_OK && at(ag_grad(x), 0) == 1 && at(ag_grad(x), 2) == -1,
       "a second backward accumulates the hooked gradient into .grad (%g)", at(ag_grad(x), 0));

    /* Removal. */
    ok(ag_hook_remove(hc) && !ag_hook_remove(hc), "remove returns true once, then false");
    ag_zero_grad(x);
    log_buf[0] = 0;
    ok(ag_backward(ag_sum(ag_mul(x, w))) == AG_OK && strcmp(log_buf, "x x2") == 0 && at(ag_grad(x), 1) == 2,
       "a removed hook no longer runs (%s, %g)", log_buf, at(ag_grad(x), 1));
    ok(ag_hook_remove(hx) && ag_hook_remove(h2), "remove the other two");
    ag_zero_grad(x);
    log_buf[0] = 0;
    ok(ag_backward(ag_sum(ag_mul(x, w))) == AG_OK && log_buf[0] == 0 && at(ag_grad(x), 1) == 1,
       "no hook left: plain gradients");
    ag_hook_handle zero = {0, 0};
    ok(!ag_hook_remove(zero), "a zero handle removes nothing");
    ag_release(sx.grad);
    ag_scope_end();
    ok(ag_live_tensors() == before, "leaf hooks: no tensor left (%ld)", ag_live_tensors() - before);
    ok(!ag_hook_remove(h2), "a handle outliving its tensor removes nothing");
}

/* A hook on a leaf that is the loss itself, and on a leaf reached by a strided gradient. */
static void test_leaf_root(void) {
    long before = ag_live_tensors();
    ag_scope_begin();
    ag_tensor *x = ag_requires_grad_(ag_scalar(2, AG_F64), true);
    ok(ag_register_hook(x, times_two, NULL, NULL) == AG_OK && ag_backward(x) == AG_OK && ag_item(ag_grad(x)) == 2,
       "backward from a hooked leaf: its hook doubles the seed (%g)", ag_item(ag_grad(x)));
    ag_tensor *m = ag_requires_grad_(ag_ones(AG_SHAPE(2, 3), AG_F64), true);
    seen s = {"m", NULL, 0};
    ag_register_hook(m, observe, &s, NULL);
    ok(ag_backward(ag_sum(m)) == AG_OK && s.grad && ag_numel(s.grad) == 6 && ag_item(ag_sum(ag_grad(m))) == 6,
       "sum's broadcast gradient reaches a hooked leaf");
    ag_release(s.grad);
    ag_scope_end();
    ok(ag_live_tensors() == before, "leaf root: no tensor left");
}

/* y = sum(relu(x * w)): hooks on the non-leaf h = x * w. */
static void test_nonleaf(void) {
    long before = ag_live_tensors();
    ag_scope_begin();
    const double xv[] = {1, -2, 3}, wv[] = {0.5, 1, 2};
    ag_tensor *x = ag_requires_grad_(vec(xv, 3), true), *w = vec(wv, 3);
    ag_tensor *h = ag_mul(x, w);
    seen sh = {"h", NULL, 0};
    ag_retain_grad(h);
    ok(ag_register_hook(h, observe, &sh, NULL) == AG_OK && ag_register_hook(h, times_two, NULL, NULL) == AG_OK,
       "hooks on a non-leaf");
    ok(ag_backward(ag_sum(ag_relu(h))) == AG_OK, "backward");
    /* h = [0.5, -2, 6]: dL/dh = [1, 0, 1]; doubled: [2, 0, 2]; dL/dx = 2·relu'·w = [1, 0, 4] */
    ok(sh.calls == 1 && at(sh.grad, 0) == 1 && at(sh.grad, 1) == 0 && at(sh.grad, 2) == 1,
       "the hook saw dL/dh = [1, 0, 1]");
    ok(at(ag_grad(x), 0) == 1 && at(ag_grad(x), 1) == 0 && at(ag_grad(x), 2) == 4,
       "the doubled dL/dh flows on: x.grad = [1, 0, 4] ([%g, %g, %g])", at(ag_grad(x), 0), at(ag_grad(x), 1),
       at(ag_grad(x), 2));
    ok(at(ag_grad(h), 0) == 2, "retain_grad stores the hooked gradient (%g), as PyTorch does", at(ag_grad(h), 0));
    ok(ag_register_hook(w, observe, &sh, NULL) == AG_ERR_GRAPH && has(ag_last_error(), "doesn't require gradient"),
       "a tensor that does not require grad refuses a hook");
    ok(ag_register_hook(x, NULL, NULL, NULL) == AG_ERR_ARG && ag_register_hook(NULL, observe, NULL, NULL) == AG_ERR_ARG,
       "NULL tensor or function refused");
    ag_release(sh.grad);
    ag_scope_end();
    ok(ag_live_tensors() == before, "non-leaf hooks: no tensor left");
}

/* ---- failures ------------------------------------------------------------------------------------ */
static ag_status failing(ag_tensor *grad, ag_tensor **replace, void *user) {
    (void)grad, (void)replace, (void)user;
    ag_reshape(grad, AG_SHAPE(7)); /* records a shape error */
    return AG_ERR_VALUE;
}

static ag_status wrong_shape(ag_tensor *grad, ag_tensor **replace, void *user) {
    (void)grad, (void)user;
    *replace = ag_zeros(AG_SHAPE(2), AG_F64);
    return AG_OK;
}

static ag_status wrong_dtype(ag_tensor *grad, ag_tensor **replace, void *user) {
    (void)user;
    *replace = ag_to_dtype(grad, AG_F32);
    return AG_OK;
}

static void test_failures(void) {
    long before = ag_live_tensors();
    const double xv[] = {1, 2, 3};
    struct {
        ag_tensor_hook fn;
        ag_status st;
        const char *msg;
    } cases[] = {
        {failing, AG_ERR_VALUE, "backward: hook 1 of 1 on a leaf float64 [3] failed (value error): reshape"},
        {wrong_shape, AG_ERR_SHAPE, "hook 1 of 1 on a leaf float64 [3] returned a float64 [2] gradient; expected float64 [3]"},
        {wrong_dtype, AG_ERR_SHAPE, "returned a float32 [3] gradient; expected float64 [3]"},
    };
    for (int c = 0; c < 3; c++) {
        ag_scope_begin();
        ag_tensor *x = ag_requires_grad_(vec(xv, 3), true);
        ag_register_hook(x, cases[c].fn, NULL, NULL);
        ag_status st = ag_backward(ag_sum(ag_exp(x)));
        ok(st == cases[c].st && has(ag_last_error(), cases[c].msg) && ag_grad(x) == NULL,
           "case %d: backward fails naming the hook and tensor, .grad untouched: %s", c, ag_last_error());
        ag_scope_end();
    }
    /* On a non-leaf, the message names the op that made the tensor. */
    ag_scope_begin();
    ag_tensor *x = ag_requires_grad_(vec(xv, 3), true), *h = ag_exp(x);
    ag_register_hook(h, failing, NULL, NULL);
    ok(ag_backward(ag_sum(h)) == AG_ERR_VALUE && has(ag_last_error(), "on the output of ExpBackward0 (float64 [3])"),
       "a non-leaf's failing hook names its op: %s", ag_last_error());
    ag_scope_end();
    ok(ag_live_tensors() == before, "failures: no tensor left (%ld)", ag_live_tensors() - before);
}

/* ---- post-accumulate-grad hooks --------------------------------------------------------------- */
typedef struct post_seen {
    const char *name;
    int calls;
    double grad0; /* .grad[0] when called */
} post_seen;

static ag_status post(ag_tensor *t, void *user) {
    post_seen *p = user;
    p->calls++;
    p->grad0 = at(ag_grad(t), 0);
    note(p->name);
    return AG_OK;
}

static ag_status post_fails(ag_tensor *t, void *user) {
    (void)t, (void)user;
    return AG_ERR_ARG;
}

/* loss = sum(w2 * relu(w1 * x)): the walk meets w2 first, then the non-leaf
 * a = relu(w1 * x) (its hook, "a"), then w1.  Early firing puts w2's hook before a's. */
static void test_post_accumulate(void) {
    long before = ag_live_tensors();
    ag_scope_begin();
    const double xv[] = {1, 2}, v1[] = {0.5, -1}, v2[] = {3, 4};
    ag_tensor *x = vec(xv, 2), *w1 = ag_requires_grad_(vec(v1, 2), true), *w2 = ag_requires_grad_(vec(v2, 2), true);
    post_seen p1 = {"w1", 0, 0}, p2 = {"w2", 0, 0};
    ok(ag_register_post_accumulate_grad_hook(w1, post, &p1, NULL) == AG_OK &&
           ag_register_post_accumulate_grad_hook(w2, post, &p2, NULL) == AG_OK,
       "post-accumulate hooks on two leaves");
    seen sa = {"a", NULL, 0};
    ag_tensor *a = ag_relu(ag_mul(w1, x));
    ag_register_hook(a, observe, &sa, NULL);
    ag_tensor *loss = ag_sum(ag_add(ag_mul(w2, a), ag_mul_scalar(w2, 0.5))); /* w2 used twice */
    log_buf[0] = 0;
    ok(ag_backward(loss) == AG_OK, "backward");
    ok(strcmp(log_buf, "w2 a w1") == 0, "w2's hook fires before the walk reaches a, w1's last (%s)", log_buf);
    /* dL/dw2 = a + 0.5 = [1, 0.5] (a = [0.5, 0]); dL/dw1 = w2·relu'·x = [3, 0] */
    ok(p2.calls == 1 && p2.grad0 == 1, "w2's hook ran once with its whole .grad (%d calls, %g)", p2.calls, p2.grad0);
    ok(p1.calls == 1 && p1.grad0 == 3, "w1's hook ran once with .grad complete (%d calls, %g)", p1.calls, p1.grad0);
    /* A second backward: once more each, seeing the accumulated .grad. */
    ok(ag_backward(ag_sum(ag_mul(w1, w2))) == AG_OK && p1.calls == 2 && p2.calls == 2 && p1.grad0 == 6,
       "once per backward, after accumulation (%g)", p1.grad0);
    ok(ag_register_post_accumulate_grad_hook(a, post, &p1, NULL) == AG_ERR_GRAPH &&
           has(ag_last_error(), "cannot be registered on non-leaf tensors"),
       "refused on a non-leaf");
    ok(ag_register_post_accumulate_grad_hook(x, post, &p1, NULL) == AG_ERR_GRAPH, "refused on a tensor without grad");
    ag_register_post_accumulate_grad_hook(w1, post_fails, NULL, NULL);
    ok(ag_backward(ag_sum(ag_mul(w1, x))) == AG_ERR_ARG &&
           has(ag_last_error(), "backward: post-accumulate-grad hook 2 of 2 on a leaf float64 [2] failed (invalid argument)"),
       "a failing post-accumulate hook stops backward: %s", ag_last_error());
    ag_release(sa.grad);
    ag_scope_end();
    ok(ag_live_tensors() == before, "post-accumulate: no tensor left (%ld)", ag_live_tensors() - before);
}

/* A tensor freed with hooks frees them; a hook's tensor released mid-graph is kept until backward ends. */
static void test_lifetime(void) {
    long before = ag_live_tensors();
    ag_tensor *x = ag_requires_grad_(ag_ones(AG_SHAPE(2), AG_F64), true);
    post_seen p = {"x", 0, 0};
    ag_register_hook(x, times_two, NULL, NULL);
    ag_register_post_accumulate_grad_hook(x, post, &p, NULL);
    ag_tensor *e = ag_exp(x), *y = ag_sum(e); /* no scope: after these releases the graph holds x and e */
    ag_release(e);
    ag_release(x);
    ok(ag_backward(y) == AG_OK && p.calls == 1 && fabs(p.grad0 - 2 * exp(1)) < 1e-12,
       "a leaf held only by the graph still gets its hooks (%g)", p.grad0);
    ag_release(y);
    ok(ag_live_tensors() == before, "lifetime: no tensor left (%ld)", ag_live_tensors() - before);
}

/* ---- module hooks ------------------------------------------------------------------------------- */
typedef struct module_log {
    ag_tensor *output;      /* forward hook: the output seen (retained) */
    ag_tensor *grad_input;  /* backward hook */
    ag_tensor *grad_output;
    int calls, backward_calls;
    bool saw_null_input;
} module_log;

static void log_clear(module_log *l) {
    ag_release(l->output);
    ag_release(l->grad_input);
    ag_release(l->grad_output);
    *l = (module_log){0};
}

static ag_status double_input(ag_module *m, ag_tensor *x, ag_tensor **replace, void *user) {
    (void)m, (void)user;
    note("pre");
    *replace = ag_mul_scalar(x, 2);
    return *replace ? AG_OK : ag_last_status();
}

static ag_status keep_output(ag_module *m, ag_tensor *x, ag_tensor *y, ag_tensor **replace, void *user) {
    (void)m, (void)x, (void)replace;
    module_log *l = user;
    l->calls++;
    ag_release(l->output);
    l->output = ag_retain(y);
    ag_retain_grad(y);
    note("fwd");
    return AG_OK;
}

static ag_status add_one(ag_module *m, ag_tensor *x, ag_tensor *y, ag_tensor **replace, void *user) {
    (void)m, (void)x, (void)user;
    *replace = ag_add_scalar(y, 1);
    return *replace ? AG_OK : ag_last_status();
}

static ag_status keep_grads(ag_module *m, ag_tensor *gin, ag_tensor *gout, ag_tensor **replace, void *user) {
    (void)m, (void)replace;
    module_log *l = user;
    l->backward_calls++;
    l->saw_null_input = gin == NULL;
    ag_release(l->grad_input);
    ag_release(l->grad_output);
    l->grad_input = gin ? ag_retain(ag_clone(gin)) : NULL; /* ours past the hook's scope */
    l->grad_output = ag_retain(ag_clone(gout));
    note("bwd");
    return AG_OK;
}

static ag_status triple_grad_input(ag_module *m, ag_tensor *gin, ag_tensor *gout, ag_tensor **replace, void *user) {
    (void)m, (void)gout, (void)user;
    if (gin) *replace = ag_mul_scalar(gin, 3);
    return AG_OK;
}

static ag_status bad_grad_input(ag_module *m, ag_tensor *gin, ag_tensor *gout, ag_tensor **replace, void *user) {
    (void)m, (void)gin, (void)user;
    *replace = ag_zeros(AG_SHAPE(1), ag_dtype_of(gout));
    return AG_OK;
}

static ag_status failing_forward_hook(ag_module *m, ag_tensor *x, ag_tensor *y, ag_tensor **replace, void *user) {
    (void)m, (void)x, (void)y, (void)replace, (void)user;
    return ag__fail_test();
}

/* sum(seq(x)) at x with x[i] moved by h. */
static double loss_at(ag_module *seq, ag_tensor *x, int64_t i, double h) {
    ag_scope_begin();
    ag_no_grad_begin();
    ag_tensor *xc = ag_clone(x);
    ((double *)ag_data(xc))[i] += h;
    double v = ag_item(ag_sum(ag_module_forward(seq, xc)));
    ag_no_grad_end();
    ag_scope_end();
    return v;
}

static void test_module_hooks(void) {
    long before = ag_live_tensors();
    ag_manual_seed(3);
    ag_module *parts[] = {ag_nn_linear(3, 4, true), ag_nn_relu(), ag_nn_linear(4, 2, true)};
    ag_module *seq = ag_nn_sequential(3, parts);
    ag_module_to_dtype(seq, AG_F64);
    ag_module *l1 = parts[0], *l2 = parts[2];
    const double xv[] = {0.5, -1, 2, 1, 0.25, -0.5};
    ag_scope_begin();
    ag_tensor *x = ag_requires_grad_(ag_from_data(xv, AG_SHAPE(2, 3), AG_F64), true);

    /* Reference without hooks: h1 = l1(x) (kept through a forward hook), x.grad. */
    module_log ref = {0};
    ag_hook_handle hf;
    ok(ag_module_register_forward_hook(l1, keep_output, &ref, &hf) == AG_OK, "forward hook on the first Linear");
    ag_tensor *y_ref = ag_module_forward(seq, x);
    ok(ref.calls == 1 && ref.output && ag_numel(ref.output) == 8, "the forward hook saw the Linear's output");
    ag_backward(ag_sum(y_ref));
    ag_tensor *gx_ref = ag_clone(ag_grad(x)), *gh_ref = ag_clone(ag_grad(ref.output));
    ok(gh_ref != NULL, "reference dL/dh1 retained");
    double worst = 0; /* x.grad against central differences */
    for (int64_t i = 0; i < 6; i++) {
        double fd = (loss_at(seq, x, i, 1e-6) - loss_at(seq, x, i, -1e-6)) / 2e-6;
        worst = fmax(worst, fabs(fd - ((double *)ag_data(gx_ref))[i]));
    }
    ok(worst < 1e-6, "x.grad through the hooked module matches finite differences (%g)", worst);

    /* Full backward hook: grad_input = dL/dx, grad_output = dL/dh1. */
    module_log lg = {0};
    ag_hook_handle hb;
    ok(ag_module_register_full_backward_hook(l1, keep_grads, &lg, &hb) == AG_OK, "full backward hook on the first Linear");
    ag_zero_grad(x);
    log_buf[0] = 0;
    ok(ag_backward(ag_sum(ag_module_forward(seq, x))) == AG_OK, "backward with a full backward hook");
    ok(lg.backward_calls == 1 && !lg.saw_null_input, "called once, with a grad_input");
    ok(lg.grad_output && ag_max_abs_diff(lg.grad_output, gh_ref) < 1e-12, "grad_output is dL/dh1");
    ok(lg.grad_input && ag_max_abs_diff(lg.grad_input, gx_ref) < 1e-12, "grad_input is dL/dx");
    ok(ag_max_abs_diff(ag_grad(x), gx_ref) < 1e-12, "x.grad unchanged by an observing hook");
    ok(strcmp(log_buf, "fwd bwd") == 0, "order: forward hook, then the backward hook (%s)", log_buf);

    /* Replacing grad_input: x.grad triples. */
    ag_hook_handle h3;
    ag_module_register_full_backward_hook(l1, triple_grad_input, NULL, &h3);
    ag_zero_grad(x);
    ag_backward(ag_sum(ag_module_forward(seq, x)));
    ok(ag_max_abs_diff(ag_grad(x), ag_mul_scalar(gx_ref, 3)) < 1e-12, "a replaced grad_input flows to x (3 x.grad)");
    ok(ag_hook_remove(h3), "remove it");

    /* An input that does not require grad: grad_input NULL, grad_output still dL/dh1. */
    ag_tensor *xd = ag_detach(x);
    ag_backward(ag_sum(ag_module_forward(seq, xd)));
    ok(lg.saw_null_input && ag_max_abs_diff(lg.grad_output, gh_ref) < 1e-12,
       "input without grad: grad_input NULL, grad_output dL/dh1");

    /* Pre-hook doubling l2's input and a forward hook adding 1 to the output. */
    ag_hook_handle hp, ha;
    ok(ag_module_register_forward_pre_hook(l2, double_input, NULL, &hp) == AG_OK &&
           ag_module_register_forward_hook(l2, add_one, NULL, &ha) == AG_OK, "pre-hook and forward hook on the last Linear");
    ag_tensor *y = ag_module_forward(seq, x);
    /* l2(2a) + 1 = 2·(W2 a) + b2 + 1 = 2·y_ref - b2 + 1 */
    ag_tensor *b2 = ag_module_get_parameter(l2, "bias");
    ag_tensor *want = ag_add_scalar(ag_sub(ag_mul_scalar(y_ref, 2), b2), 1);
    ok(y && ag_max_abs_diff(y, want) < 1e-12, "the replaced input and output give 2·W2·a + b2 + 1");
    ok(ag_hook_remove(hp) && ag_hook_remove(ha) && ag_hook_remove(hb) && ag_hook_remove(hf), "remove all");
    ok(ag_max_abs_diff(ag_module_forward(seq, x), y_ref) < 1e-12, "no hook left: the plain output");

    /* Failures name the module. */
    ag_module_register_forward_hook(l2, failing_forward_hook, NULL, NULL);
    ok(ag_module_forward(seq, x) == NULL && has(ag_last_error(), "module_forward: forward hook 1 of 1 of Linear (child \"2\" of Sequential) failed (value error): "),
       "a failing forward hook: %s", ag_last_error());
    ag_module_register_full_backward_hook(l1, bad_grad_input, NULL, NULL);
    ag_tensor *y1 = ag_module_forward(l1, x);
    ok(ag_backward(ag_sum(y1)) == AG_ERR_SHAPE && has(ag_last_error(), "backward hook 1 of 1 of Linear (child \"0\" of Sequential) returned a float64 [1] grad_input; expected float64 [2, 3]"),
       "a wrong grad_input: %s", ag_last_error());
    ok(ag_module_register_forward_hook(NULL, add_one, NULL, NULL) == AG_ERR_ARG, "NULL module refused");
    log_clear(&ref);
    log_clear(&lg);
    ag_scope_end(); /* gx_ref and gh_ref with the rest: the scope owns them */
    ag_module_free(seq); /* frees the hooks still registered */
    ok(ag_live_tensors() == before, "module hooks: no tensor left (%ld)", ag_live_tensors() - before);
}

int main(void) {
    test_leaf_hooks();
    test_leaf_root();
    test_nonleaf();
    test_failures();
    test_post_accumulate();
    test_lifetime();
    test_module_hooks();
    return tap_done();
}

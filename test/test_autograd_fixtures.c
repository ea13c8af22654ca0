/*
 * User functions and hooks against PyTorch: replays the programs of
 * test/fixtures/autograd.txt (written by scripts/gen_autograd_fixtures.py, whose
 * docstring gives the format and the programs) in agrad, in float64, from the same
 * inputs, and compares values, gradients, the gradients hooks see and the order
 * they fire in to 1e-12: a log-sum-exp function of several outputs (one
 * non-differentiable, an input needing no grad), a straight-through estimator,
 * ctx.mark_dirty on a non-leaf and on a view, tensor hooks that scale and replace
 * gradients, post-accumulate-grad hooks, and module hooks on Linear-Tanh-Linear.
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "agrad/agrad.h"
#include "tap.h"
#include "test/fixture.h"

#ifndef FIXTURES
#define FIXTURES "test/fixtures"
#endif

#define TOL 1e-12
#define MAX_RECORDS 128

/* ---- the fixture file ---------------------------------------------------------------------------- */
typedef struct record {
    char key[48];
    ag_tensor *t;   /* "t" records (kept out of every scope) */
    char *tokens;   /* "seq" records */
} record;

static record records[MAX_RECORDS];
static int nrecords;

/* One line of the file into the next record (fixture_read_lines); false when they are full. */
static bool take_record(char *line, void *ctx) {
    char *save, *kind = strtok_r(line, " ", &save), *key = strtok_r(NULL, " ", &save);
    (void)ctx;
    if (!key) return true;
    if (nrecords == MAX_RECORDS) return false;
    record *r = &records[nrecords++];
    snprintf(r->key, sizeof r->key, "%s", key);
    if (strcmp(kind, "seq") == 0) r->tokens = strdup(save ? save : "");
    else r->t = fixture_parse_tensor(&save);
    return true;
}

static bool load(void) { return fixture_read_lines(FIXTURES "/autograd.txt", take_record, NULL) && nrecords > 0; }

static const record *find(const char *key) {
    for (int i = 0; i < nrecords; i++)
        if (strcmp(records[i].key, key) == 0) return &records[i];
    return NULL;
}

/* A fixture tensor, as a new tensor of the current scope (requiring grad if asked). */
static ag_tensor *input(const char *key, bool grad) {
    const record *r = find(key);
    if (!r || !r->t) {
        diag("no tensor %s in the fixtures", key);
        return NULL;
    }
    ag_tensor *t = ag_clone(r->t);
    return grad ? ag_requires_grad_(t, true) : t;
}

/* max |t - fixture key| (INFINITY when missing or of another size). */
static double diff(ag_tensor *t, const char *key) {
    const record *r = find(key);
    return fixture_max_diff(t, r ? r->t : NULL);
}

#define SAME(t, key) ok(diff((t), (key)) <= TOL, "%s (max difference %.3g)", (key), diff((t), (key)))

/* ---- (a) user functions -------------------------------------------------------------------------- */
/* (logsumexp(x / t, 1), softmax(x / t, 1), argmax(x, 1)); t needs no grad. */
static ag_status lse_forward(ag_ctx *ctx, ag_tensor *const *in, int nin, ag_tensor **out, int nout) {
    (void)nin, (void)nout;
    ag_tensor *z = ag_div(in[0], in[1]);
    int dim = 1;
    out[0] = ag_logsumexp_dims(z, 1, &dim, false);
    out[1] = ag_softmax(z, 1);
    out[2] = ag_to_dtype(ag_argmax(in[0], 1, false), AG_F64);
    if (!out[0] || !out[1] || !out[2]) return ag_last_status();
    ag_tensor *keep[2] = {out[1], in[1]};
    return ag_ctx_save_for_backward(ctx, keep, 2) ? ag_last_status() : ag_ctx_mark_non_differentiable(ctx, 2);
}

/* dz = g_lse·p + p·(g_p - Σ g_p·p),  dx = dz / t */
static ag_status lse_backward(ag_ctx *ctx, ag_tensor *const *g, int nout, ag_tensor **gin, int nin) {
    (void)nout, (void)nin;
    ag_tensor *p = ag_ctx_saved(ctx, 0), *t = ag_ctx_saved(ctx, 1);
    ag_tensor *inner = ag_sub(g[1], ag_sum_dim(ag_mul(g[1], p), 1, true));
    ag_tensor *dz = ag_add(ag_mul(ag_unsqueeze(g[0], 1), p), ag_mul(p, inner));
    gin[0] = ag_div(dz, t);
    return gin[0] ? AG_OK : ag_last_status();
}

static const ag_function_type scaled_lse = {.name = "ScaledLSE", .forward = lse_forward, .backward = lse_backward};

static ag_status ste_forward(ag_ctx *ctx, ag_tensor *const *in, int nin, ag_tensor **out, int nout) {
    (void)ctx, (void)nin, (void)nout;
    out[0] = ag_round(in[0]);
    return out[0] ? AG_OK : ag_last_status();
}

static ag_status ste_backward(ag_ctx *ctx, ag_tensor *const *g, int nout, ag_tensor **gin, int nin) {
    (void)ctx, (void)nout, (void)nin;
    gin[0] = g[0]; /* straight through */
    return AG_OK;
}

static const ag_function_type ste = {.name = "STE", .forward = ste_forward, .backward = ste_backward};

static ag_status mul_into_forward(ag_ctx *ctx, ag_tensor *const *in, int nin, ag_tensor **out, int nout) {
    (void)nin, (void)nout;
    ag_tensor *keep[2] = {ag_clone(in[0]), in[1]};
    if (!keep[0] || ag_ctx_save_for_backward(ctx, keep, 2) || ag_ctx_mark_dirty(ctx, 0)) return ag_last_status();
    out[0] = ag_mul_(in[0], in[1]);
    return out[0] ? AG_OK : ag_last_status();
}

/* d(old x) = g·w,  dw = g·(old x) */
static ag_status mul_into_backward(ag_ctx *ctx, ag_tensor *const *g, int nout, ag_tensor **gin, int nin) {
    (void)nout, (void)nin;
    if (ag_ctx_needs_input_grad(ctx, 0) && !(gin[0] = ag_mul(g[0], ag_ctx_saved(ctx, 1)))) return ag_last_status();
    if (ag_ctx_needs_input_grad(ctx, 1) && !(gin[1] = ag_mul(g[0], ag_ctx_saved(ctx, 0)))) return ag_last_status();
    return AG_OK;
}

static const ag_function_type mul_into = {.name = "MulInto", .forward = mul_into_forward, .backward = mul_into_backward};

static void test_functions(void) {
    ag_scope_begin();
    ag_tensor *x = input("lse.x", true), *in[2] = {x, input("lse.t", false)}, *out[3];
    ok(ag_function_apply(&scaled_lse, in, 2, out, 3, NULL) == AG_OK && !ag_requires_grad(out[2]),
       "ScaledLSE: three outputs, argmax not differentiable");
    SAME(out[0], "lse.out_lse");
    SAME(out[1], "lse.out_p");
    SAME(out[2], "lse.out_idx");
    ag_tensor *loss = ag_add(ag_sum(ag_mul(out[0], input("lse.w_lse", false))), ag_sum(ag_mul(out[1], input("lse.w_p", false))));
    ok(ag_backward(loss) == AG_OK && !ag_grad(in[1]), "ScaledLSE: backward, no gradient for t");
    SAME(ag_grad(x), "lse.grad_x");

    ag_tensor *a = input("ste.a", true), *y = ag_mul_scalar(a, 3);
    y = ag_function_apply1(&ste, &y, 1, NULL);
    SAME(y, "ste.out");
    ok(ag_backward(ag_sum(ag_mul(ag_mul(y, a), input("ste.w", false)))) == AG_OK, "STE: backward");
    SAME(ag_grad(a), "ste.grad_a");

    a = input("dirty.a", true);
    ag_tensor *b = input("dirty.b", true), *c = input("dirty.c", false), *args[2] = {ag_mul_scalar(a, 1.5), b};
    y = args[0];
    ok(ag_function_apply1(&mul_into, args, 2, NULL) == y && strcmp(ag_grad_fn_name(y), "MulIntoBackward") == 0,
       "MulInto: the dirty non-leaf is returned, grad_fn MulIntoBackward as in PyTorch");
    SAME(y, "dirty.out");
    ok(ag_backward(ag_sum(ag_mul(ag_mul(y, y), c))) == AG_OK, "MulInto: backward");
    SAME(ag_grad(a), "dirty.grad_a");
    SAME(ag_grad(b), "dirty.grad_b");

    a = input("dirtyview.a", true), b = input("dirtyview.b", true), c = input("dirtyview.c", false);
    ag_tensor *base = ag_mul_scalar(a, 2), *vargs[2] = {ag_select(base, 0, 1), b};
    ok(ag_function_apply1(&mul_into, vargs, 2, NULL) == vargs[0] && strcmp(ag_grad_fn_name(base), "CopySlices") == 0,
       "MulInto on a view: its base's grad_fn is CopySlices as in PyTorch");
    SAME(base, "dirtyview.out");
    ok(ag_backward(ag_sum(ag_mul(ag_mul(base, base), c))) == AG_OK, "MulInto on a view: backward");
    SAME(ag_grad(a), "dirtyview.grad_a");
    SAME(ag_grad(b), "dirtyview.grad_b");
    ag_scope_end();
}

/* ---- (b) hooks ----------------------------------------------------------------------------------- */
static char fired[256];

static void note(const char *name) {
    size_t n = strlen(fired);
    snprintf(fired + n, sizeof fired - n, "%s%s", n ? " " : "", name);
}

static ag_status hook_y(ag_tensor *g, ag_tensor **replace, void *user) {
    (void)user;
    note("y");
    *replace = ag_mul_scalar(g, 3); /* scale */
    return *replace ? AG_OK : ag_last_status();
}

static ag_status hook_z(ag_tensor *g, ag_tensor **replace, void *user) {
    (void)user;
    note("z");
    *replace = ag_ones_like(g); /* replace */
    return *replace ? AG_OK : ag_last_status();
}

static ag_status hook_x1(ag_tensor *g, ag_tensor **replace, void *user) {
    (void)g, (void)replace, (void)user;
    note("x1");
    return AG_OK;
}

static ag_status hook_x2(ag_tensor *g, ag_tensor **replace, void *user) {
    (void)user;
    note("x2");
    *replace = ag_mul_scalar(g, 0.5);
    return *replace ? AG_OK : ag_last_status();
}

static ag_tensor *post_seen[2];
static int post_calls[2];

static ag_status post_hook(ag_tensor *t, void *user) {
    int i = *(const int *)user;
    post_calls[i]++;
    ag_release(post_seen[i]);
    post_seen[i] = ag_keep(ag_clone(ag_grad(t)));
    return AG_OK;
}

static void test_tensor_hooks(void) {
    ag_scope_begin();
    ag_tensor *x = input("hooks.x", true), *y = ag_mul_scalar(x, 2), *z = ag_mul(y, y);
    fired[0] = 0;
    ok(!ag_register_hook(y, hook_y, NULL, NULL) && !ag_register_hook(z, hook_z, NULL, NULL) &&
           !ag_register_hook(x, hook_x1, NULL, NULL) && !ag_register_hook(x, hook_x2, NULL, NULL),
       "tensor hooks registered");
    ok(ag_backward(ag_sum(ag_add(ag_mul(z, input("hooks.w", false)), x))) == AG_OK, "tensor hooks: backward");
    const record *r = find("hooks.order");
    ok(r && r->tokens && strcmp(fired, r->tokens) == 0, "tensor hooks fire in PyTorch's order (%s; PyTorch: %s)", fired,
       r && r->tokens ? r->tokens : "?");
    SAME(ag_grad(x), "hooks.grad_x");

    static const int ids[2] = {0, 1};
    ag_tensor *a = input("post.a", true), *b = input("post.b", true), *h = ag_mul(a, b);
    ok(!ag_register_post_accumulate_grad_hook(a, post_hook, (void *)&ids[0], NULL) &&
           !ag_register_post_accumulate_grad_hook(b, post_hook, (void *)&ids[1], NULL),
       "post-accumulate-grad hooks registered");
    ag_tensor *loss = ag_add(ag_sum(ag_mul(h, a)), ag_sum(ag_mul(ag_mul(h, input("post.w", false)), b)));
    ag_status st = ag_backward(loss);
    ok(st == AG_OK && post_calls[0] == 1 && post_calls[1] == 1,
       "post-accumulate-grad hooks: once per leaf (%d, %d)", post_calls[0], post_calls[1]);
    SAME(post_seen[0], "post.grad_a");
    SAME(post_seen[1], "post.grad_b");
    ag_release(post_seen[0]), ag_release(post_seen[1]);
    ag_scope_end();
}

/* ---- (b) module hooks ---------------------------------------------------------------------------- */
static double norms[64];
static int nnorms;

static double norm(const ag_tensor *t) {
    if (!t) return NAN;
    ag_scope_begin();
    ag_tensor *c = ag_contiguous(ag_to_dtype(ag_detach((ag_tensor *)t), AG_F64));
    const double *p = ag_data(c);
    double s = 0;
    for (int64_t i = 0; i < ag_numel(c); i++) s += p[i] * p[i];
    ag_scope_end();
    return sqrt(s);
}

static void seen(const char *what, int i, const ag_tensor *t1, const ag_tensor *t2) {
    char name[16];
    snprintf(name, sizeof name, "%s%d", what, i);
    note(name);
    if (nnorms < 62) {
        norms[nnorms++] = norm(t1);
        if (t2) norms[nnorms++] = norm(t2);
    }
}

static ag_status pre_hook(ag_module *m, ag_tensor *x, ag_tensor **replace, void *user) {
    (void)m, (void)replace;
    seen("pre", *(const int *)user, x, NULL);
    return AG_OK;
}

static ag_status fwd_hook(ag_module *m, ag_tensor *x, ag_tensor *y, ag_tensor **replace, void *user) {
    (void)m, (void)x, (void)replace;
    seen("fwd", *(const int *)user, y, NULL);
    return AG_OK;
}

static ag_status bwd_hook(ag_module *m, ag_tensor *gi, ag_tensor *go, ag_tensor **replace, void *user) {
    (void)m, (void)replace;
    seen("bwd", *(const int *)user, gi, go);
    return AG_OK;
}

static void test_module_hooks(void) {
    static const int ids[3] = {0, 1, 2};
    ag_scope_begin();
    ag_module *layers[3] = {ag_nn_linear(3, 4, true), ag_nn_tanh(), ag_nn_linear(4, 2, true)};
    ag_module *model = ag_nn_sequential(3, layers);
    ok(model && ag_module_to_dtype(model, AG_F64) == AG_OK, "Linear-Tanh-Linear in float64");
    int nparams = ag_module_num_parameter_tensors(model), loaded = 0;
    ag_no_grad_begin();
    for (int i = 0; i < nparams; i++) {
        char name[64], key[80];
        ag_tensor *prm = ag_module_parameter(model, i, name, sizeof name);
        snprintf(key, sizeof key, "mlp.%s", name);
        const record *r = find(key);
        if (r && r->t && ag_copy_(prm, r->t)) loaded++;
        else diag("no fixture %s", key);
    }
    ag_no_grad_end();
    ok(nparams == 4 && loaded == 4, "the fixed weights loaded by PyTorch's names (%d of %d)", loaded, nparams);
    for (int i = 0; i < 3; i++)
        ag_module_register_forward_pre_hook(layers[i], pre_hook, (void *)&ids[i], NULL),
            ag_module_register_forward_hook(layers[i], fwd_hook, (void *)&ids[i], NULL),
            ag_module_register_full_backward_hook(layers[i], bwd_hook, (void *)&ids[i], NULL);
    fired[0] = 0;
    nnorms = 0;
    ag_tensor *X = input("mlp.X", true), *out = ag_module_forward(model, X);
    SAME(out, "mlp.out");
    ok(ag_backward(ag_sum(ag_mul(out, input("mlp.W", false)))) == AG_OK, "module hooks: backward");
    const record *r = find("mlp.order");
    ok(r && r->tokens && strcmp(fired, r->tokens) == 0, "module hooks fire in PyTorch's order (%s; PyTorch: %s)", fired,
       r && r->tokens ? r->tokens : "?");
    ag_tensor *seen_norms = ag_from_data(norms, AG_SHAPE(nnorms), AG_F64);
    SAME(seen_norms, "mlp.norms");
    SAME(ag_grad(X), "mlp.grad_X");
    for (int i = 0; i < nparams; i++) {
        char name[64], key[80];
        ag_tensor *prm = ag_module_parameter(model, i, name, sizeof name);
        snprintf(key, sizeof key, "mlp.grad_%s", name);
        SAME(ag_grad(prm), key);
    }
    ag_module_free(model);
    ag_scope_end();
}

int main(void) {
    if (!load()) {
        ok(false, "read %s/autograd.txt", FIXTURES);
        return tap_done();
    }
    test_functions();
    test_tensor_hooks();
    test_module_hooks();
    for (int i = 0; i < nrecords; i++) {
        ag_release(records[i].t);
        free(records[i].tokens);
    }
    ok(ag_live_tensors() == 0, "no tensor left alive (%ld)", ag_live_tensors());
    return tap_done();
}

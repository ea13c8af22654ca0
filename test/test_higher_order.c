/*
 * Reverse mode beyond first order (docs/higher-order.md): ag_backward_opts with
 * create_graph, ag_autograd_grad (retain_graph, create_graph, allow_unused, several
 * outputs), against PyTorch on test/fixtures/higher_order.txt (written by
 * scripts/gen_higher_order_fixtures.py: a Hessian of an MLP loss, a Hessian-vector
 * product, a gradient penalty), and the first-order pass left as it was.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "agrad/agrad.h"
#include "tap.h"

#ifndef FIXTURES
#define FIXTURES "test/fixtures"
#endif
#define TOL 1e-10
#define MAX_RECORDS 64

/* ---- the fixture file ("t key ndim dims... values...") ------------------------------ */
typedef struct record {
    char key[48];
    ag_tensor *t; /* kept out of every scope */
} record;
static record records[MAX_RECORDS];
static int nrecords;

static bool load(void) {
    FILE *f = fopen(FIXTURES "/higher_order.txt", "r");
    if (!f) return false;
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, f) > 0 && nrecords < MAX_RECORDS) {
        line[strcspn(line, "\n")] = 0;
        char *save, *kind = strtok_r(line, " ", &save), *key = strtok_r(NULL, " ", &save);
        if (!kind || !key || kind[0] == '#') continue;
        record *r = &records[nrecords++];
        snprintf(r->key, sizeof r->key, "%s", key);
        ag_shape s = {0, {0}};
        s.ndim = atoi(strtok_r(NULL, " ", &save));
        for (int d = 0; d < s.ndim && d < AG_MAX_DIMS; d++) s.dim[d] = atoll(strtok_r(NULL, " ", &save));
        r->t = ag_keep(ag_empty(s, AG_F64));
        double *v = ag_data(r->t);
        for (int64_t i = 0; i < ag_numel(r->t); i++) {
            char *tok = strtok_r(NULL, " ", &save);
            v[i] = tok ? strtod(tok, NULL) : NAN;
        }
    }
    free(line);
    fclose(f);
    return nrecords > 0;
}

static ag_tensor *fixture(const char *key) {
    for (int i = 0; i < nrecords; i++)
        if (strcmp(records[i].key, key) == 0) return records[i].t;
    diag("no tensor %s in the fixtures", key);
    return NULL;
}

/* A fixture tensor as a new leaf of the current scope. */
static ag_tensor *input(const char *key, bool grad) {
    ag_tensor *t = fixture(key) ? ag_clone(fixture(key)) : NULL;
    return t && grad ? ag_requires_grad_(t, true) : t;
}

/* max |t - fixture key| (INFINITY when missing or of another size). */
static double diff(ag_tensor *t, const char *key) {
    ag_tensor *r = fixture(key);
    if (!t || !r || ag_numel(t) != ag_numel(r)) return INFINITY;
    ag_scope_begin();
    ag_tensor *c = ag_contiguous(ag_to_dtype(ag_detach(t), AG_F64));
    const double *p = ag_data(c), *q = ag_data(r);
    double m = 0;
    for (int64_t i = 0; i < ag_numel(c); i++) m = fmax(m, isnan(p[i] - q[i]) ? INFINITY : fabs(p[i] - q[i]));
    ag_scope_end();
    return m;
}
#define SAME(t, key) ok(diff((t), (key)) <= TOL, "%s (max difference %.3g)", (key), diff((t), (key)))

/* ---- (a), (b) the MLP loss -------------------------------------------------------------- */
static ag_tensor *mlp_loss(ag_tensor *const *p) {
    ag_tensor *x = input("mlp.x", false), *target = input("mlp.target", false);
    ag_tensor *h = ag_tanh(ag_linear(x, p[0], p[1]));
    ag_tensor *out = ag_softplus(ag_linear(h, p[2], p[3]), 1, 20);
    return ag_mean(ag_square(ag_sub(out, target)));
}

static void hessian_and_hvp(void) {
    ag_scope_begin();
    ag_tensor *p[4] = {input("mlp.w1", true), input("mlp.b1", true), input("mlp.w2", true), input("mlp.b2", true)};
    ag_tensor *loss = mlp_loss(p);
    SAME(loss, "mlp.loss");
    ag_tensor *g[4];
    ag_grad_opts create = {.create_graph = true};
    ok(ag_autograd_grad(&loss, 1, p, 4, NULL, &create, g) == AG_OK, "autograd_grad of the MLP loss, create_graph");
    SAME(g[0], "mlp.grad_w1");
    ok(g[0] && ag_requires_grad(g[0]) && ag_grad_fn_name(g[0]), "the gradient requires grad and has a grad_fn (%s)",
       g[0] ? ag_grad_fn_name(g[0]) : "none");
    ok(ag_grad(p[0]) == NULL, "autograd_grad leaves .grad alone");

    /* The Hessian with respect to w1, one row per gradient entry. */
    ag_tensor *flat = ag_reshape(g[0], AG_SHAPE(12)), *rows[12];
    bool all = flat != NULL;
    for (int i = 0; i < 12 && all; i++) {
        ag_tensor *gi = ag_select(flat, 0, i), *h = NULL;
        ag_grad_opts keep = {.retain_graph = true};
        all = ag_autograd_grad(&gi, 1, &p[0], 1, NULL, &keep, &h) == AG_OK;
        rows[i] = all ? ag_reshape(h, AG_SHAPE(12)) : NULL;
    }
    ok(all, "twelve second backward passes through the recorded gradient");
    if (all) SAME(ag_stack(rows, 12, 0), "mlp.hessian_w1");

    /* Hessian-vector product: the gradient of <grad L, v>. */
    ag_tensor *v[4] = {input("mlp.v0", false), input("mlp.v1", false), input("mlp.v2", false), input("mlp.v3", false)};
    ag_tensor *dot = ag_scalar(0, AG_F64);
    for (int i = 0; i < 4; i++) dot = ag_add(dot, ag_sum(ag_mul(g[i], v[i])));
    ag_tensor *hv[4];
    ok(ag_autograd_grad(&dot, 1, p, 4, NULL, NULL, hv) == AG_OK, "autograd_grad of <grad L, v>");
    SAME(hv[0], "mlp.hvp0");
    SAME(hv[1], "mlp.hvp1");
    SAME(hv[2], "mlp.hvp2");
    SAME(hv[3], "mlp.hvp3");
    ag_scope_end();

    /* The same HVP through ag_backward_opts: .grad records, a second backward adds the HVP. */
    ag_scope_begin();
    ag_tensor *q[4] = {input("mlp.w1", true), input("mlp.b1", true), input("mlp.w2", true), input("mlp.b2", true)};
    ag_tensor *loss2 = mlp_loss(q);
    ok(ag_backward_opts(loss2, NULL, &create) == AG_OK, "ag_backward_opts with create_graph");
    ok(ag_requires_grad(ag_grad(q[0])), ".grad requires grad under create_graph");
    SAME(ag_grad(q[0]), "mlp.grad_w1");
    ag_tensor *dot2 = ag_scalar(0, AG_F64), *v2[4];
    for (int i = 0; i < 4; i++) {
        v2[i] = input(i == 0 ? "mlp.v0" : i == 1 ? "mlp.v1" : i == 2 ? "mlp.v2" : "mlp.v3", false);
        dot2 = ag_add(dot2, ag_sum(ag_mul(ag_grad(q[i]), v2[i])));
    }
    ag_tensor *first[4];
    for (int i = 0; i < 4; i++) {
        first[i] = ag_clone(ag_detach(ag_grad(q[i])));
        ag_zero_grad(q[i]); /* breaks the cycle leaf -> .grad -> graph -> leaf before the next pass */
    }
    ok(ag_backward(dot2) == AG_OK, "backward through <.grad, v>");
    SAME(ag_grad(q[0]), "mlp.hvp0");
    SAME(ag_grad(q[3]), "mlp.hvp3");
    ok(first[0] && diff(first[0], "mlp.grad_w1") <= TOL, "the first-order .grad was right before it was dropped");
    ag_scope_end();
}

/* ---- (c) a gradient penalty --------------------------------------------------------------- */
static void gradient_penalty(void) {
    ag_scope_begin();
    ag_tensor *x = input("gp.x", true);
    ag_tensor *p[4] = {input("gp.w1", true), input("gp.b1", true), input("gp.w2", true), input("gp.b2", true)};
    ag_tensor *d = ag_sum(ag_linear(ag_tanh(ag_linear(x, p[0], p[1])), p[2], p[3]));
    ag_tensor *gx = NULL, *gp[4];
    ag_grad_opts create = {.create_graph = true};
    ok(ag_autograd_grad(&d, 1, &x, 1, NULL, &create, &gx) == AG_OK, "d D/dx with create_graph");
    SAME(gx, "gp.grad_x");
    ag_tensor *penalty = ag_sum(ag_square(gx));
    SAME(penalty, "gp.penalty");
    ag_status st = ag_autograd_grad(&penalty, 1, p, 4, NULL, NULL, gp);
    ok(st == AG_ERR_GRAPH && strstr(ag_last_error(), "input 3, float64 [1], was not used"),
       "the unused last bias is an error naming it, found before the graph is freed: %s", ag_last_error());
    ag_grad_opts unused = {.allow_unused = true};
    ok(ag_autograd_grad(&penalty, 1, p, 4, NULL, &unused, gp) == AG_OK && gp[3] == NULL,
       "allow_unused: NULL for the unused bias");
    SAME(gp[0], "gp.grad_param0");
    SAME(gp[1], "gp.grad_param1");
    SAME(gp[2], "gp.grad_param2");
    ag_scope_end();
}

/* ---- autograd_grad's semantics ------------------------------------------------------------------ */
static void semantics(void) {
    ag_scope_begin();
    ag_tensor *x = ag_requires_grad_(ag_from_data((double[]){0.5, -1.25, 2}, AG_SHAPE(3), AG_F64), true);
    ag_tensor *y1 = ag_sum(ag_square(x)), *y2 = ag_mul_scalar(x, 3); /* dy1 = 2x, <w, dy2> = 3w */
    ag_tensor *w = ag_from_data((double[]){1, 2, -1}, AG_SHAPE(3), AG_F64);
    ag_tensor *outs[2] = {y1, y2}, *gos[2] = {NULL, w}, *g = NULL;
    ag_grad_opts keep = {.retain_graph = true};
    ok(ag_autograd_grad(outs, 2, &x, 1, gos, &keep, &g) == AG_OK, "two outputs with their grad_outputs");
    double want[3], *got = g ? ag_data(g) : NULL;
    const double *xv = ag_data(x), *wv = ag_data(w);
    for (int i = 0; i < 3; i++) want[i] = 2 * xv[i] + 3 * wv[i];
    ok(got && got[0] == want[0] && got[1] == want[1] && got[2] == want[2], "the gradients of both outputs add up");
    ok(g && !ag_requires_grad(g), "without create_graph the gradient does not require grad");
    ok(ag_grad(x) == NULL, ".grad is untouched");

    /* A non-leaf input: its gradient is the one flowing into it. */
    ag_tensor *sq = ag_square(x), *s = ag_sum(ag_mul_scalar(sq, 5)), *gs = NULL;
    ok(ag_autograd_grad(&s, 1, &sq, 1, NULL, NULL, &gs) == AG_OK && gs && ((double *)ag_data(gs))[1] == 5,
       "the gradient of a non-leaf input");
    ok(ag_autograd_grad(&s, 1, &sq, 1, NULL, NULL, &gs) == AG_ERR_GRAPH && gs == NULL,
       "without retain_graph the graph is freed: a second pass fails (%s)", ag_last_error());

    /* Third order: d³/dx³ of sum(x^4) = 24x. */
    ag_tensor *q = ag_sum(ag_pow_scalar(x, 4)), *d1 = NULL, *d2 = NULL, *d3 = NULL;
    ag_grad_opts create = {.create_graph = true};
    bool ok3 = ag_autograd_grad(&q, 1, &x, 1, NULL, &create, &d1) == AG_OK;
    ag_tensor *s1 = ag_sum(d1);
    ok3 = ok3 && ag_autograd_grad(&s1, 1, &x, 1, NULL, &create, &d2) == AG_OK;
    ag_tensor *s2 = ag_sum(d2);
    ok3 = ok3 && ag_autograd_grad(&s2, 1, &x, 1, NULL, NULL, &d3) == AG_OK;
    ok(ok3 && fabs(((double *)ag_data(d3))[2] - 24 * xv[2]) < 1e-12 &&
       fabs(((double *)ag_data(d3))[1] - 24 * xv[1]) < 1e-12, "third derivative of x^4 is 24x");

    /* Errors. */
    ag_tensor *c = ag_from_data((double[]){1, 2, 3}, AG_SHAPE(3), AG_F64);
    ok(ag_autograd_grad(&y1, 1, &c, 1, NULL, NULL, &g) == AG_ERR_GRAPH && strstr(ag_last_error(), "input 0"),
       "an input not requiring grad is named: %s", ag_last_error());
    ok(ag_autograd_grad(&y2, 1, &x, 1, NULL, NULL, &g) == AG_ERR_GRAPH && g == NULL,
       "a grad_output is needed for a three-element output: %s", ag_last_error());
    ag_tensor *bad = ag_zeros(AG_SHAPE(2), AG_F64);
    ok(ag_autograd_grad(&y2, 1, &x, 1, &bad, NULL, &g) == AG_ERR_SHAPE, "a grad_output of another shape: %s",
       ag_last_error());
    ag_tensor *m = ag_amax(ag_mul_scalar(x, 1), 0, NULL, false), *gm = NULL;
    ok(m && ag_autograd_grad(&m, 1, &x, 1, NULL, &create, &gm) == AG_ERR_GRAPH && strstr(ag_last_error(), "amax"),
       "create_graph through an op without backward_graph names it: %s", ag_last_error());
    ok(m && ag_autograd_grad(&m, 1, &x, 1, NULL, NULL, &gm) == AG_OK && gm, "the same op differentiates once");
    ag_scope_end();
}

/* With no scope open the caller owns the gradients, and nothing else the passes make
 * stays behind once the caller releases what it holds. */
static void without_scope(void) {
    long before = ag_live_tensors();
    ag_tensor *x = ag_requires_grad_(ag_from_data((double[]){0.5, -1.5}, AG_SHAPE(2), AG_F64), true);
    ag_tensor *t = ag_tanh(x), *y = ag_sum(t), *g = NULL, *gg = NULL;
    ag_grad_opts create = {.create_graph = true};
    ag_status st = ag_autograd_grad(&y, 1, &x, 1, NULL, &create, &g);
    ag_tensor *s = st == AG_OK ? ag_sum(g) : NULL;
    ok(s && ag_autograd_grad(&s, 1, &x, 1, NULL, NULL, &gg) == AG_OK && gg, "two passes with no scope open");
    const double *xv = ag_data(x), *v = gg ? ag_data(gg) : NULL;
    double th = tanh(xv[1]);
    ok(v && fabs(v[1] - (-2 * th * (1 - th * th))) < 1e-12, "d²tanh/dx² = -2 tanh (1 - tanh²)");
    ag_release(gg);
    ag_release(s);
    ag_release(g);
    ag_release(y);
    ag_release(t);
    ag_release(x);
    ok(ag_live_tensors() == before, "every tensor released with the caller's (%ld live, %ld before)", ag_live_tensors(),
       before);
}

/* A user function (torch.autograd.Function): y = 2x, dx = 2 dy. */
static ag_status twice_forward(ag_ctx *ctx, ag_tensor *const *in, int nin, ag_tensor **out, int nout) {
    (void)ctx, (void)nin, (void)nout;
    out[0] = ag_mul_scalar(in[0], 2);
    return out[0] ? AG_OK : ag_last_status();
}
static ag_status twice_backward(ag_ctx *ctx, ag_tensor *const *gout, int nout, ag_tensor **gin, int nin) {
    (void)ctx, (void)nout, (void)nin;
    gin[0] = ag_mul_scalar(gout[0], 2);
    return gin[0] ? AG_OK : ag_last_status();
}
static const ag_function_type twice = {"Twice", twice_forward, twice_backward};

/* User functions have no differentiable adjoint yet: create_graph through one is a
 * clear error naming it, and the first-order pass still works. */
static void user_function(void) {
    ag_scope_begin();
    ag_tensor *x = ag_requires_grad_(ag_from_data((double[]){1, 2}, AG_SHAPE(2), AG_F64), true);
    ag_tensor *y = ag_sum(ag_square(ag_function_apply1(&twice, &x, 1, NULL))), *g = NULL;
    ag_grad_opts create = {.create_graph = true, .retain_graph = true};
    ok(ag_autograd_grad(&y, 1, &x, 1, NULL, &create, &g) == AG_ERR_GRAPH && strstr(ag_last_error(), "TwiceBackward"),
       "create_graph through a user function fails naming it: %s", ag_last_error());
    ok(ag_autograd_grad(&y, 1, &x, 1, NULL, NULL, &g) == AG_OK && g && ((double *)ag_data(g))[1] == 16,
       "without create_graph it differentiates: d(2x)²/dx = 8x");
    ag_scope_end();
}

int main(void) {
    without_scope();
    user_function();
    if (!load()) {
        ok(false, "read " FIXTURES "/higher_order.txt (run from the source root)");
        return tap_done();
    }
    semantics();
    hessian_and_hvp();
    gradient_penalty();
    for (int i = 0; i < nrecords; i++) ag_release(records[i].t);
    ok(ag_live_tensors() == 0, "no tensor outlives the tests (%ld live)", ag_live_tensors());
    return tap_done();
}

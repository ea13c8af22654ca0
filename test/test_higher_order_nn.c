/*
 * The second-order and tangent rules of the norm, pooling and convolution ops on
 * the variants their registry rows (test/cases/) do not reach: batch norm in
 * evaluation mode (running statistics, with and without weight and bias).  Each is
 * gradgradchecked in float64 (second derivatives through create_graph against finite
 * differences of first ones) and its tangent (ag_jvp) compared with central
 * differences along a random direction.
 */
#include <stdlib.h>
#include <string.h>
#include "agrad/agrad.h"
#include "tap.h"

/* Checks fn at inputs in (float64): gradgradcheck, then J·v against central differences. */
static void check(const char *what, ag_fn fn, void *ctx, ag_tensor *const *in, int n) {
    ag_scope_begin();
    ag_gradcheck_report rep;
    ag_status st = ag_gradgradcheck(fn, ctx, in, n, NULL, &rep);
    ok(st == AG_OK, "gradgradcheck %s (%lld entries, worst error %.2g)%s%s", what, (long long)rep.checked, rep.error,
       st ? ": " : "", st ? ag_last_error() : "");
    ag_tensor *v[4], *yp_in[4], *ym_in[4], *out = NULL, *jv = NULL;
    const double eps = 1e-6;
    for (int i = 0; i < n; i++) {
        v[i] = ag_randn(ag_shape_of(in[i]), AG_F64);
        yp_in[i] = ag_add(ag_detach(in[i]), ag_mul_scalar(v[i], eps));
        ym_in[i] = ag_sub(ag_detach(in[i]), ag_mul_scalar(v[i], eps));
    }
    st = ag_jvp(fn, ctx, in, n, v, &out, &jv);
    if (ok(st == AG_OK && jv, "%s has a tangent%s%s", what, st ? ": " : "", st ? ag_last_error() : "")) {
        ag_no_grad_begin();
        ag_tensor *fd = ag_div_scalar(ag_sub(fn(yp_in, n, ctx), fn(ym_in, n, ctx)), 2 * eps);
        ag_no_grad_end();
        double worst = ag_item(ag_max(ag_abs(ag_sub(jv, fd)))), scale = ag_item(ag_max(ag_abs(fd)));
        ok(worst <= 1e-5 + 1e-4 * scale, "jvp of %s matches central differences (worst %.2g, scale %.2g)", what, worst,
           scale);
    }
    ag_scope_end();
}

/* Inputs of the given shapes, N(0, 1) in float64, requiring grad. */
static void inputs(ag_tensor **in, int n, const ag_shape *shapes) {
    for (int i = 0; i < n; i++) in[i] = ag_requires_grad_(ag_randn(shapes[i], AG_F64), true);
}

/* ---- batch norm in evaluation mode -------------------------------------------------------------- */
typedef struct bn_ctx {
    ag_tensor *mean, *var;
} bn_ctx;

static ag_tensor *bn_eval(ag_tensor *const *in, int n, void *ctx) {
    const bn_ctx *c = ctx;
    return ag_batch_norm(in[0], c->mean, c->var, n > 1 ? in[1] : NULL, n > 2 ? in[2] : NULL, false, 0.1, 1e-5);
}

static void batch_norm_eval(void) {
    ag_scope_begin();
    bn_ctx c = {ag_randn(AG_SHAPE(3), AG_F64), ag_add_scalar(ag_rand(AG_SHAPE(3), AG_F64), 0.5)};
    ag_tensor *in[3];
    inputs(in, 3, (ag_shape[]){AG_SHAPE(4, 3, 2), AG_SHAPE(3), AG_SHAPE(3)});
    check("batch_norm eval, affine", bn_eval, &c, in, 3);
    check("batch_norm eval, no affine", bn_eval, &c, in, 1);
    ag_scope_end();
}

int main(void) {
    ag_manual_seed(7);
    batch_norm_eval();
    ok(ag_live_tensors() == 0, "no tensor outlives the checks (%ld live)", ag_live_tensors());
    return tap_done();
}

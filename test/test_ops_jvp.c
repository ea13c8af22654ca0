/*
 * Forward mode over the whole registry: every registered differentiable op, on each
 * of its test row's input shapes in float64 (contiguous, then non-contiguous), gives
 * through dual tensors (ag_make_dual, ag_tangent) the tangent J·v that central finite
 * differences along v give, and agrees with its adjoint: <u, J v> = <Jᵀ u, v> for
 * random u, v.  An op without a tangent rule fails unless it is on the pending list
 * below, where it is reported as a TAP TODO (the count is printed).
 */
#include <stdlib.h>
#include <string.h>
#include "test/cases/op_cases.h"
#include "agrad/agrad.h"
#include "core/internal.h"
#include "ops/registry.h"
#include "tap.h"

/* The ops whose tangent rule is still to write: the ONE list of them. */
static const char *const pending[] = {
    NULL};

static bool is_pending(const char *name) {
    for (int i = 0; pending[i]; i++)
        if (strcmp(pending[i], name) == 0) return true;
    return false;
}

/* The values of t as doubles (malloc'd, n elements). */
static double *values(ag_tensor *t, int64_t *n) {
    *n = ag_numel(t);
    double *v = malloc(sizeof(double) * (size_t)(*n + 1));
    ag_copy_to(t, v, *n, AG_F64);
    return v;
}

/* f at x + s·v (inputs in, directions v), no grad. */
static ag_tensor *shifted_call(const ag_op_test *row, ag_tensor *const *in, ag_tensor *const *v, int n, double s) {
    ag_tensor *x[4];
    for (int i = 0; i < n; i++) x[i] = ag_add(ag_detach(in[i]), ag_mul_scalar(v[i], s));
    return ag_test_call(row, x, n);
}

/* Checks op's tangent on case cs; returns false when the op gave no tangent. */
static void check_case(const ag_op *op, const ag_op_test *row, const ag_op_case *cs, int c, bool nc) {
    ag_scope_begin();
    ag_manual_seed(4321 + (uint64_t)c);
    ag_tensor *in[4], *v[4], *dual[4];
    bool any_noncontig = false;
    char shapes[512] = "";
    for (int i = 0; i < cs->n; i++) {
        in[i] = opc_input(&cs->shape[i], row->domain, nc, AG_F64);
        v[i] = opc_input(&cs->shape[i], AG_DOMAIN_ANY, nc, AG_F64);
        any_noncontig |= !ag_is_contiguous(in[i]);
        char s[AG_SHAPE_STR];
        strcat(shapes, ag__tshape(s, in[i]));
        if (i + 1 < cs->n) strcat(shapes, " ");
    }
    if (nc && !any_noncontig) {
        ag_scope_end();
        return;
    }
    const char *how = nc ? " non-contiguous" : "";
    /* forward mode */
    ag_dual_level_begin();
    for (int i = 0; i < cs->n; i++) dual[i] = ag_make_dual(in[i], v[i]);
    ag_tensor *y = ag_test_call(row, dual, cs->n);
    ag_tensor *jv = y ? ag_tangent(y) : NULL;
    const char *err = jv ? "" : ag_last_error();
    char why[512];
    snprintf(why, sizeof why, "%s", err ? err : "");
    ag_dual_level_end();
    if (!y || (y->dtype != AG_F64)) { /* an integer result carries no tangent */
        ok(y != NULL, "%s %s%s: the op runs on dual inputs%s%s", op->name, shapes, how, y ? "" : ": ", y ? "" : why);
        ag_scope_end();
        return;
    }
    if (!ok(jv != NULL, "%s %s%s has a tangent%s%s", op->name, shapes, how, jv ? "" : ": ", why)) {
        ag_scope_end();
        return;
    }
    /* central differences along v */
    const double eps = 1e-6, atol = row->atol ? row->atol : 1e-5, rtol = row->rtol ? row->rtol : 1e-3;
    ag_no_grad_begin();
    ag_tensor *yp = shifted_call(row, in, v, cs->n, eps), *ym = shifted_call(row, in, v, cs->n, -eps);
    ag_no_grad_end();
    int64_t n, np, nm;
    double *a = values(jv, &n), *p = values(yp, &np), *m = values(ym, &nm), worst = 0;
    bool same = np == n && nm == n;
    for (int64_t k = 0; same && k < n; k++) {
        double fd = (p[k] - m[k]) / (2 * eps), e = fabs(a[k] - fd) - (atol + rtol * fabs(fd));
        if (e > worst || isnan(e)) worst = isnan(e) ? INFINITY : e;
    }
    ok(same && worst <= 0, "jvp of %s %s%s matches central differences (%lld entries, worst excess %.2g)", op->name,
       shapes, how, (long long)n, worst);
    free(p);
    free(m);
    /* <u, J v> = <Jᵀ u, v> */
    ag_tensor *x[4];
    for (int i = 0; i < cs->n; i++) x[i] = ag_requires_grad_(ag_detach(in[i]), true);
    ag_tensor *yr = ag_test_call(row, x, cs->n);
    ag_shape ys = {yr->ndim, {0}};
    for (int d = 0; d < yr->ndim; d++) ys.dim[d] = yr->shape[d];
    ag_tensor *u = ag_randn(ys, AG_F64);
    int64_t nu;
    double *uv = values(u, &nu), lhs = 0, rhs = 0, scale = 0;
    for (int64_t k = 0; k < n && k < nu; k++) {
        lhs += uv[k] * a[k];
        scale += fabs(uv[k] * a[k]);
    }
    ag_status st = ag_numel(yr) ? ag_backward_ex(yr, u, false) : AG_OK;
    for (int i = 0; i < cs->n && !st; i++) {
        ag_tensor *g = ag_grad(x[i]);
        if (!g) continue;
        int64_t ng, nv;
        double *gv = values(g, &ng), *vv = values(v[i], &nv);
        for (int64_t k = 0; k < ng && k < nv; k++) {
            rhs += gv[k] * vv[k];
            scale += fabs(gv[k] * vv[k]);
        }
        free(gv);
        free(vv);
    }
    ok(!st && fabs(lhs - rhs) <= 1e-9 * fmax(1, scale), "%s %s%s: <u, J v> = %.10g and <Jᵀ u, v> = %.10g agree",
       op->name, shapes, how, lhs, rhs);
    free(uv);
    free(a);
    ag_scope_end();
}

int main(void) {
    const ag_op *op;
    int checked = 0, todo = 0;
    for (int i = 0; (op = ag__op_at(i)); i++) {
        const ag_op_test *row = ag_test_case_for(op);
        if (!op->backward || !row) continue;
        if (!op->jvp) {
            if (is_pending(op->name)) {
                printf("not ok %d - %s has no tangent rule # TODO on the pending list\n", ++tap_count, op->name);
                todo++;
            } else {
                ok(false, "%s has a tangent rule (or is on the pending list of test/test_ops_jvp.c)", op->name);
            }
            continue;
        }
        ok(!is_pending(op->name), "%s has a tangent rule and is not on the pending list", op->name);
        for (int c = 0; c < 4 && row->cases[c].n > 0; c++)
            for (int nc = 0; nc < 2; nc++) check_case(op, row, &row->cases[c], c, nc);
        checked++;
    }
    diag("%d differentiable ops with a tangent rule checked, %d pending (TODO)", checked, todo);
    ok(checked > 0, "the registry lists ops with tangent rules");
    ok(ag_live_tensors() == 0, "no tensor outlives the checks (%ld live)", ag_live_tensors());
    return tap_done();
}

/*
 * Third derivatives of the index, scatter and attention families (ops/index.c,
 * ops/scatter.c, ops/attention.c), to check that their adjoints in differentiable
 * ops close: a backward_graph calls other ops (gather's calls scatter_add, sdpa's
 * matmul and softmax's parts), and a third derivative runs THEIR backward_graph.
 * For each op and each of its test row's cases (test/cases/, contiguous float64),
 * this gradgradchecks
 *
 *     F(inputs, u) = Σ_i |∂<u, f(inputs)>/∂inputs_i|²
 *
 * with the gradient recorded by create_graph.  F's graph holds the ops of f's
 * adjoints, applied to u (an input, so that it is recorded even for a linear f);
 * gradgradcheck differentiates it twice more, through the backward_graph of every
 * op in it.  An op without one there fails with AG_ERR_GRAPH naming it.
 */
#include <string.h>
#include "test/cases/op_cases.h"
#include "agrad/agrad.h"
#include "core/internal.h"
#include "ops/registry.h"
#include "tap.h"

static const char *const FAMILIES[] = {"index", "scatter", "attention", NULL};

static bool in_families(const ag_op *op) {
    for (int i = 0; FAMILIES[i]; i++)
        if (strcmp(ag__op_family(op), FAMILIES[i]) == 0) return true;
    return false;
}

/* F(in[0..n-2], u = in[n-1]) above, for the op of test row ctx. */
static ag_tensor *squared_gradient(ag_tensor *const *in, int n, void *ctx) {
    const ag_op_test *row = ctx;
    ag_tensor *u = in[n - 1], *g[4], *f = NULL;
    ag_enable_grad_begin();
    ag_tensor *y = ag_test_call(row, in, n - 1);
    ag_grad_opts create = {.create_graph = true, .allow_unused = true};
    if (y && ag_autograd_grad(&y, 1, in, n - 1, &u, &create, g) == AG_OK) {
        f = ag_zeros(AG_SCALAR_SHAPE, AG_F64);
        for (int i = 0; i < n - 1 && f; i++)
            if (g[i]) f = ag_add(f, ag_sum(ag_square(g[i])));
    }
    ag_enable_grad_end();
    return f;
}

static void check_op(const ag_op *op, const ag_op_test *row) {
    for (int c = 0; c < 4 && row->cases[c].n > 0; c++) {
        const ag_op_case *cs = &row->cases[c];
        ag_scope_begin();
        ag_manual_seed(777 + (uint64_t)c);
        ag_tensor *in[5];
        char shapes[512] = "";
        for (int i = 0; i < cs->n; i++) {
            in[i] = opc_input(&cs->shape[i], row->domain, false, AG_F64);
            char s[AG_SHAPE_STR];
            strcat(shapes, ag__tshape(s, in[i]));
            if (i + 1 < cs->n) strcat(shapes, " ");
        }
        ag_tensor *y = ag_test_call(row, in, cs->n);
        in[cs->n] = y ? ag_randn(ag_shape_of(y), AG_F64) : NULL;
        for (int i = 0; i <= cs->n && in[i]; i++) ag_requires_grad_(in[i], true);
        ag_gradcheck_opts o = {0, row->atol, row->rtol, false};
        ag_gradcheck_report rep = {0};
        ag_status st = y ? ag_gradgradcheck(squared_gradient, (void *)row, in, cs->n + 1, &o, &rep) : ag_last_status();
        ok(st == AG_OK, "third order of %s %s (%lld entries)%s%s", op->name, shapes, (long long)rep.checked,
           st ? ": " : "", st ? ag_last_error() : "");
        ag_scope_end();
    }
}

int main(void) {
    const ag_op *op;
    int checked = 0;
    for (int i = 0; (op = ag__op_at(i)); i++) {
        const ag_op_test *row = ag_test_case_for(op);
        if (!op->backward || !row || !in_families(op)) continue;
        check_op(op, row);
        checked++;
    }
    diag("%d differentiable ops checked to third order", checked);
    ok(checked == 18, "the three families hold the 18 differentiable ops (%d)", checked);
    ok(ag_live_tensors() == 0, "no tensor outlives the checks (%ld live)", ag_live_tensors());
    return tap_done();
}

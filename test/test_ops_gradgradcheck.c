/*
 * Every registered differentiable op passes gradgradcheck in float64 on each of its
 * test row's input shapes (test/cases/, broadcasting included): its second
 * derivatives, through the gradient computation create_graph records with the op's
 * backward_graph, against finite differences of its first derivatives; once with
 * contiguous inputs and once with non-contiguous (transposed) views of them.
 *
 * gradgradcheck differentiates the gradient that backward_graph records but does not check
 * its values: each case also checks that they are backward's (a backward_graph that forgot
 * a factor would otherwise pass).
 *
 * An op without a backward_graph fails, unless it is in PENDING below: those are
 * printed as TAP "# TODO" lines, so the count of ops still to do shows in every run.
 * An op in PENDING that has one fails too (take it off the list).
 */
#include <math.h>
#include <string.h>
#include "test/cases/op_cases.h"
#include "agrad/agrad.h"
#include "core/internal.h"
#include "ops/registry.h"
#include "tap.h"

/* The differentiable ops whose adjoint is not yet written in differentiable ops
 * (docs/design.md#adding-an-op says how), by family. */
static const char *const PENDING[] = {
    NULL};

static bool pending(const char *name) {
    for (int i = 0; PENDING[i]; i++)
        if (strcmp(PENDING[i], name) == 0) return true;
    return false;
}

/* The largest |a - b| over two float64 tensors of one shape, and the largest |a|. */
static double max_diff(ag_tensor *a, ag_tensor *b, double *scale) {
    ag_tensor *ac = ag_contiguous(a), *bc = ag_contiguous(b);
    const double *x = ag_data(ac), *y = ag_data(bc);
    double m = 0;
    for (int64_t k = 0; k < ag_numel(ac); k++) {
        m = fmax(m, fabs(x[k] - y[k]));
        *scale = fmax(*scale, fabs(x[k]));
    }
    return m;
}

/* gradgradcheck checks the derivatives of the gradient that backward_graph records, not its
 * values: they must be backward's, for every input (one random grad_output). */
static void check_values(const ag_op *op, const ag_op_test *row, ag_tensor *const *in, int n, const char *shapes,
                         bool nc) {
    ag_tensor *y = ag_test_call(row, in, n);
    if (!y || !y->requires_grad || y->dtype != AG_F64) return;
    ag_tensor *u = ag_randn(ag_shape_of(y), AG_F64), *plain[4], *recorded[4];
    ag_grad_opts keep = {.retain_graph = true, .allow_unused = true}, create = {.create_graph = true, .allow_unused = true};
    ag_status st = ag_autograd_grad(&y, 1, in, n, &u, &keep, plain);
    if (st == AG_OK) st = ag_autograd_grad(&y, 1, in, n, &u, &create, recorded);
    double worst = 0, scale = 0;
    bool same = st == AG_OK;
    for (int i = 0; i < n && same; i++) {
        same = !plain[i] == !recorded[i];
        if (same && plain[i]) worst = fmax(worst, max_diff(recorded[i], plain[i], &scale));
    }
    ok(same && worst <= 1e-10 * fmax(1, scale), "backward_graph of %s %s%s gives backward's gradient (worst difference %.2g)%s%s",
       op->name, shapes, nc ? " non-contiguous" : "", worst, st ? ": " : "", st ? ag_last_error() : "");
}

static void check_op(const ag_op *op, const ag_op_test *row) {
    for (int k = 0; k < 8 && row->cases[k / 2].n > 0; k++) {
        const int c = k / 2;
        const bool nc = k % 2; /* each case contiguous, then with non-contiguous inputs */
        const ag_op_case *cs = &row->cases[c];
        bool any_noncontig = false;
        for (int i = 0; i < cs->n; i++) any_noncontig |= cs->shape[i].ndim >= 2;
        if (nc && !any_noncontig) continue; /* no input of 2+ dims: nothing new to check */
        ag_scope_begin();
        ag_manual_seed(4321 + (uint64_t)c);
        ag_tensor *in[4];
        char shapes[512] = "";
        for (int i = 0; i < cs->n; i++) {
            in[i] = opc_input(&cs->shape[i], row->domain, nc, AG_F64);
            ag_requires_grad_(in[i], true);
            char s[AG_SHAPE_STR];
            strcat(shapes, ag__tshape(s, in[i]));
            if (i + 1 < cs->n) strcat(shapes, " ");
        }
        ag_gradcheck_opts o = {0, row->atol, row->rtol, false};
        ag_gradcheck_report rep;
        ag_status st = ag_gradgradcheck(row->call, (void *)row, in, cs->n, &o, &rep);
        ok(st == AG_OK, "gradgradcheck %s %s%s (%lld entries, worst error %.2g)%s%s", op->name, shapes,
           nc ? " non-contiguous" : "", (long long)rep.checked, rep.error, st ? ": " : "", st ? ag_last_error() : "");
        check_values(op, row, in, cs->n, shapes, nc);
        ag_scope_end();
    }
}

int main(void) {
    const ag_op *op;
    int checked = 0, todo = 0;
    for (int i = 0; (op = ag__op_at(i)); i++) {
        const ag_op_test *row = ag_test_case_for(op);
        if (!op->backward || !row) continue;
        if (pending(op->name)) {
            if (op->backward_graph) {
                ok(false, "%s has a backward_graph: take it off PENDING in %s", op->name, __FILE__);
            } else {
                printf("not ok %d - gradgradcheck %s (%s) # TODO no backward_graph yet\n", ++tap_count, op->name,
                       ag__op_family(op));
                todo++;
            }
            continue;
        }
        if (!op->backward_graph) {
            ok(false, "%s (%s) has a backward_graph, or is listed in PENDING", op->name, ag__op_family(op));
            continue;
        }
        check_op(op, row);
        checked++;
    }
    for (int i = 0; PENDING[i]; i++)
        ok(ag__op_find(PENDING[i]) != NULL, "PENDING names a registered op: %s", PENDING[i]);
    diag("%d differentiable ops gradgradchecked, %d pending (TODO)", checked, todo);
    ok(checked > 0, "the registry lists ops with a backward_graph");
    ok(ag_live_tensors() == 0, "no tensor outlives the checks (%ld live)", ag_live_tensors());
    return tap_done();
}

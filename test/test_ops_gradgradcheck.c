/*
 * Every registered differentiable op passes gradgradcheck in float64 on each of its
 * test row's input shapes (test/cases/, broadcasting included): its second
 * derivatives, through the gradient computation create_graph records with the op's
 * backward_graph, against finite differences of its first derivatives; once with
 * contiguous inputs and once with non-contiguous (transposed) views of them.
 *
 * An op without a backward_graph fails, unless it is in PENDING below: those are
 * printed as TAP "# TODO" lines, so the count of ops still to do shows in every run.
 * An op in PENDING that has one fails too (take it off the list).
 */
#include <string.h>
#include "test/cases/op_cases.h"
#include "agrad/agrad.h"
#include "core/internal.h"
#include "ops/registry.h"
#include "tap.h"

/* The differentiable ops whose adjoint is not yet written in differentiable ops
 * (docs/design.md#adding-an-op says how), by family. */
static const char *const PENDING[] = {
    /* index */ "index_select", "gather", "scatter_add", "where", "masked_fill", "embedding",
    /* norm */ "batch_norm", "layer_norm", "group_norm",
    /* pool */ "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d",
    /* conv */ "conv2d", "conv_transpose2d",
    /* pool */ "adaptive_max_pool2d", "max_unpool2d",
    /* index, scatter */ "index_add", "index_copy", "index_fill", "scatter", "scatter_value", "scatter_reduce", "take", "put", "masked_select", "masked_scatter",
    /* attention */ "scaled_dot_product_attention",
    /* linalg */ "linalg_solve", "linalg_inv", "linalg_det", "linalg_slogdet", "linalg_cholesky",
    "cholesky_solve", "linalg_eigh", "linalg_eigvalsh", "linalg_qr", "linalg_svd", "linalg_pinv",
    "linalg_vector_norm",
    NULL};

static bool pending(const char *name) {
    for (int i = 0; PENDING[i]; i++)
        if (strcmp(PENDING[i], name) == 0) return true;
    return false;
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

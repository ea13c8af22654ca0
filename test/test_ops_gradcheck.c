/*
 * Every registered differentiable op passes gradcheck in float64 on each of
 * its registered input shapes (which include broadcasting), once with
 * contiguous inputs and once with non-contiguous (transposed) views of the
 * same values; and its float32 forward agrees with the float64 one.
 */
#include <stdlib.h>
#include <string.h>
#include "agrad/agrad.h"
#include "core/internal.h"
#include "ops/registry.h"
#include "../bench/op_cases.h"
#include "tap.h"

static void check_op(const ag_op *op) {
    for (int c = 0; c < 4 && op->cases[c].n > 0; c++) {
        const ag_op_case *cs = &op->cases[c];
        for (int nc = 0; nc < 2; nc++) {
            ag_scope_begin();
            ag_manual_seed(1234 + (uint64_t)c);
            ag_tensor *in[4], *in32[4];
            bool any_noncontig = false;
            for (int i = 0; i < cs->n; i++) {
                in[i] = opc_input(&cs->shape[i], op->domain, nc, AG_F64);
                ag_requires_grad_(in[i], true);
                any_noncontig |= !ag_is_contiguous(in[i]);
            }
            ag_manual_seed(1234 + (uint64_t)c);
            for (int i = 0; i < cs->n; i++) in32[i] = opc_input(&cs->shape[i], op->domain, nc, AG_F32);
            if (nc && !any_noncontig) { /* no input of 2+ dims: nothing new to check */
                ag_scope_end();
                continue;
            }
            char shapes[512] = "";
            for (int i = 0; i < cs->n; i++) {
                char s[AG_SHAPE_STR];
                strcat(shapes, ag__tshape(s, in[i]));
                if (i + 1 < cs->n) strcat(shapes, " ");
            }
            ag_gradcheck_opts o = {0, op->atol, op->rtol, false};
            ag_gradcheck_report rep;
            ag_status st = ag_gradcheck(op->call, (void *)op, in, cs->n, &o, &rep);
            ok(st == AG_OK, "gradcheck %s %s%s (%lld entries, worst error %.2g)%s%s", op->name, shapes,
               nc ? " non-contiguous" : "", (long long)rep.checked, rep.error, st ? ": " : "", st ? ag_last_error() : "");

            /* float32 forward agrees with float64 */
            ag_no_grad_begin();
            ag_tensor *y64 = op->call(in, cs->n, (void *)op);
            ag_tensor *y32 = op->call(in32, cs->n, (void *)op);
            ag_no_grad_end();
            double worst = y64 && y32 ? 0 : INFINITY;
            if (y64 && y32 && ag_numel(y64) == ag_numel(y32)) {
                int64_t n = ag_numel(y64);
                double *a = malloc(sizeof(double) * (size_t)(n + 1)), *b = malloc(sizeof(double) * (size_t)(n + 1));
                ag_copy_to(y64, a, n, AG_F64);
                ag_copy_to(y32, b, n, AG_F64);
                for (int64_t k = 0; k < n; k++) {
                    double e = fabs(a[k] - b[k]) / fmax(1, fabs(a[k]));
                    if (e > worst || isnan(e)) worst = isnan(e) ? INFINITY : e;
                }
                free(a);
                free(b);
            }
            ok(worst < 1e-4, "float32 forward of %s %s%s matches float64 (worst relative error %.2g)", op->name, shapes,
               nc ? " non-contiguous" : "", worst);
            ag_scope_end();
        }
    }
}

int main(void) {
    const ag_op *op;
    int checked = 0;
    for (int i = 0; (op = ag__op_at(i)); i++) {
        if (!op->backward || !op->call) continue;
        check_op(op);
        checked++;
    }
    diag("%d differentiable ops checked", checked);
    ok(checked > 0, "the registry lists differentiable ops");
    ok(ag_live_tensors() == 0, "no tensor outlives the checks (%ld live)", ag_live_tensors());
    return tap_done();
}

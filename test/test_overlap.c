/*
 * test_overlap.c - in-place functions whose destination or source share memory:
 * a destination with internal overlap is refused, and a source overlapping the
 * destination gives what separate tensors would.
 */
#include <string.h>
#include "agrad/agrad.h"
#include "tap.h"

static bool values_are(ag_tensor *t, const double *want, int n) {
    ag_tensor *c = ag_contiguous(t);
    if (!c || ag_numel(c) != n) return false;
    for (int i = 0; i < n; i++)
        if (((const double *)ag_data(c))[i] != want[i]) return false;
    return true;
}

static ag_tensor *vec(const double *v, int64_t n) { return ag_from_data(v, AG_SHAPE(n), AG_F64); }

int main(void) {
    ag_scope_begin();
    const double r5[] = {0, 1, 2, 3, 4};

    /* A destination with internal overlap: every in-place writer refuses it. */
    ag_tensor *base = ag_zeros(AG_SHAPE(1), AG_F64);
    ag_tensor *wide = ag_expand(base, AG_SHAPE(4));
    ag_tensor *ones = ag_ones(AG_SHAPE(4), AG_F64);
    ok(!ag_add_(wide, ones, 1) && ag_last_status() == AG_ERR_ARG && strstr(ag_last_error(), "add_") &&
           strstr(ag_last_error(), "single memory location"),
       "add_ into an expanded view is refused: %s", ag_last_error());
    ok(((const double *)ag_data(base))[0] == 0, "the expanded base is unchanged (0)");
    ok(!ag_fill_(wide, 3) && ag_last_status() == AG_ERR_ARG, "fill_ into an expanded view is refused");
    ok(!ag_copy_(wide, ones) && ag_last_status() == AG_ERR_ARG, "copy_ into an expanded view is refused");
    ok(!ag_mul_scalar_(wide, 2) && ag_last_status() == AG_ERR_ARG, "mul_scalar_ into an expanded view is refused");
    ok(!ag_clamp_(wide, 0, 1) && ag_last_status() == AG_ERR_ARG, "clamp_ into an expanded view is refused");
    ok(!ag_uniform_(wide, 0, 1) && ag_last_status() == AG_ERR_ARG, "uniform_ into an expanded view is refused");
    ok(!ag_normal_(wide, 0, 1) && ag_last_status() == AG_ERR_ARG, "normal_ into an expanded view is refused");
    ok(!ag_init_constant_(wide, 1) && ag_last_status() == AG_ERR_ARG && strstr(ag_last_error(), "init.constant_"),
       "init.constant_ into an expanded view is refused: %s", ag_last_error());
    ok(((const double *)ag_data(base))[0] == 0, "after every refusal the base is still 0");
    /* A 2-d expansion along the outer dim only, and views that do not overlap. */
    ag_tensor *row = ag_from_data(r5, AG_SHAPE(1, 5), AG_F64);
    ok(!ag_add_scalar_(ag_expand(row, AG_SHAPE(3, 5)), 1), "add_scalar_ into [1,5] expanded to [3,5] is refused");
    ag_tensor *m = ag_from_data((double[]){1, 2, 3, 4, 5, 6}, AG_SHAPE(2, 3), AG_F64);
    ok(ag_mul_scalar_(ag_transpose(m, 0, 1), 2) && values_are(m, (double[]){2, 4, 6, 8, 10, 12}, 6),
       "a transposed view is written normally");
    ok(ag_add_scalar_(ag_slice(m, 1, 0, 3, 2), 1) && values_are(m, (double[]){3, 4, 7, 9, 10, 13}, 6),
       "a strided slice is written normally");
    ag_tensor *empty = ag_expand(ag_zeros(AG_SHAPE(1, 0), AG_F64), AG_SHAPE(3, 0));
    ok(ag_fill_(empty, 1) != NULL, "an empty expanded view has nothing to overlap");

    /* x += x.T on [[1, 2], [3, 4]] is [[2, 5], [5, 8]]. */
    ag_tensor *x = ag_from_data((double[]){1, 2, 3, 4}, AG_SHAPE(2, 2), AG_F64);
    ok(ag_add_(x, ag_transpose(x, 0, 1), 1) && values_are(x, (double[]){2, 5, 5, 8}, 4), "x += x.T");
    /* x -= x[0] (row 0 broadcast over the rows, including itself). */
    ag_tensor *y = ag_from_data((double[]){1, 2, 3, 4, 5, 6}, AG_SHAPE(3, 2), AG_F64);
    ok(ag_sub_(y, ag_select(y, 0, 0)) && values_are(y, (double[]){0, 0, 2, 2, 4, 4}, 6), "x -= x[0]");
    /* x[:3] *= x[1:4] reads the source before the writes reach it. */
    ag_tensor *z = vec((double[]){1, 2, 3, 4}, 4);
    ok(ag_mul_(ag_narrow(z, 0, 0, 3), ag_narrow(z, 0, 1, 3)) && values_are(z, (double[]){2, 6, 12, 4}, 4),
       "x[:3] *= x[1:]");
    ag_tensor *w = vec((double[]){1, 2, 3, 4}, 4);
    ok(ag_div_(ag_narrow(w, 0, 1, 3), ag_narrow(w, 0, 0, 3)) && values_are(w, (double[]){1, 2, 1.5, 4.0 / 3}, 4),
       "x[1:] /= x[:3]");
    /* copy_ in both directions (memmove semantics). */
    ag_tensor *a = vec(r5, 5);
    ok(ag_copy_(ag_narrow(a, 0, 1, 4), ag_narrow(a, 0, 0, 4)) && values_are(a, (double[]){0, 0, 1, 2, 3}, 5),
       "x[1:] = x[:4] shifts right");
    ag_tensor *b = vec(r5, 5);
    ok(ag_copy_(ag_narrow(b, 0, 0, 4), ag_narrow(b, 0, 1, 4)) && values_are(b, (double[]){1, 2, 3, 4, 4}, 5),
       "x[:4] = x[1:] shifts left");
    ag_tensor *c = vec(r5, 5);
    ok(ag_copy_(c, ag_slice(c, 0, 0, 5, 1)) && values_are(c, r5, 5), "x = x is unchanged");
    /* The same tensor on both sides is element for element: no copy needed, right result. */
    ag_tensor *d = vec(r5, 5);
    ok(ag_add_(d, d, 1) && values_are(d, (double[]){0, 2, 4, 6, 8}, 5), "x += x");
    /* A float32 source overlapping nothing but converted: unchanged behaviour. */
    ag_tensor *e = vec(r5, 5);
    ag_tensor *f32 = ag_from_data((float[]){1, 1, 1, 1, 1}, AG_SHAPE(5), AG_F32);
    ok(ag_add_(e, f32, 2) && values_are(e, (double[]){2, 3, 4, 5, 6}, 5), "x += 2·float32 ones");

    ag_scope_end();
    return tap_done();
}

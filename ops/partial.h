/*
 * partial.h - the local-derivative column of the elementwise rows (ops/unary.c,
 * ops/binary.c, ops/ternary.c): each row writes dy/d(input) as an expression in
 * agrad ops, D(...), or NONE while it has none.  From that one column the row gets
 * its partial (struct ag_op) and its backward_graph (ag__elementwise_backward_graph:
 * gin[i] = gout * partial_i), and the forward mode its tangent rule (dy = sum_i
 * t_i * partial_i).  docs/design.md#adding-an-op shows a row.
 *
 * Inside D(...) the tensors are the inputs (x, or a, b, c) and the output y; these
 * shorthands make constants and masks of y's dtype (all broadcast against y):
 *   K(v)     the 0-d constant v;
 *   ZERO     zeros of y's shape (a derivative that is 0 wherever it is defined);
 *   MASK(b)  the bool tensor b as 0/1.
 * Not installed.
 */
#ifndef AGRAD_OPS_PARTIAL_H
#define AGRAD_OPS_PARTIAL_H

#include "core/internal.h"
#include "agrad/ops.h"

#define K(v) ag_scalar((double)(v), y->dtype)
#define ZERO ag_zeros_like(y)
#define MASK(b) ag_to_dtype((b), y->dtype)

/* The row's partial function body and its two fields, selected by the column's
 * first token (D or NONE): PARTIAL_##COL is the expression of input i's partial,
 * D(d), D(da, db) or D(da, db, dc) by the op's inputs (NULL for NONE);
 * SELECT_##COL(f) is f, or NULL for NONE. */
#define PARTIAL_D(...) AG__PICK(__VA_ARGS__, AG__PICK3, AG__PICK2, AG__PICK1, 0)(__VA_ARGS__)
#define AG__PICK(_1, _2, _3, NAME, ...) NAME
#define AG__PICK1(d) (d)
#define AG__PICK2(da, db) (i == 0 ? (da) : (db))
#define AG__PICK3(da, db, dc) (i == 0 ? (da) : i == 1 ? (db) : (dc))
#define PARTIAL_NONE NULL
#define SELECT_D(...) AG__KEEP
#define SELECT_NONE AG__DROP
#define AG__KEEP(f) f
#define AG__DROP(f) NULL

/* backward_graph of every elementwise row with a partial: for each input i that
 * wants a gradient, gin[i] = gout * partial(in, out, attr, i) (out's shape; the
 * engine sums it down to the input's).  Static in each family file, so that the
 * rows point at no other file (test/check_layers.py: no circles between files). */
static __attribute__((unused)) ag_status ag__elementwise_backward_graph(ag_tensor *out, ag_tensor *gout,
                                                                       ag_tensor **gin) {
    for (int i = 0; i < out->nin; i++) {
        if (!out->in[i] || !out->in[i]->requires_grad) continue;
        ag_tensor *d = out->op->partial(out->in, out, &out->attr, i);
        gin[i] = d ? ag_mul(gout, d) : NULL; /* dL/dx_i = dL/dy * dy/dx_i */
        if (!gin[i]) return ag_last_status() ? ag_last_status() : AG_ERR_NOMEM;
    }
    return AG_OK;
}

#endif

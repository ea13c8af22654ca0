/*
 * view.c - the test rows of the views and copies (ops/view.c): each view op on
 * a fixed, valid argument set for the input's rank; to_dtype converts to
 * float64 (a copy of float64 inputs, so that gradcheck differentiates it).
 */
#include "test/cases/op_cases.h"

#define VIEW_CASES {{1, {AG_DIMS(3, 4)}}, {1, {AG_DIMS(2, 3, 4)}}}
#define EXPAND_CASES {{1, {AG_DIMS(3, 1)}}, {1, {AG_DIMS(4)}}}
#define SQUEEZE_CASES {{1, {AG_DIMS(3, 1, 4)}}}
#define DIAG_CASES {{1, {AG_DIMS(4, 1)}}, {1, {AG_DIMS(3)}}, {1, {AG_DIMS(2, 3)}}, {1, {AG_DIMS(0)}}} /* first: scales linearly */

/* X(name, cases, the call of x) */
#define VIEW_OPS(X)                                                                                   \
    X(reshape, VIEW_CASES, ag_reshape(x, AG_SHAPE(-1, 2)))                                            \
    X(permute, VIEW_CASES, x->ndim == 3 ? ag_permute(x, (int[]){2, 0, 1}) : ag_t(x))                  \
    X(slice, VIEW_CASES, ag_slice(x, -1, 1, 4, 2))                                                    \
    X(select, VIEW_CASES, ag_select(x, 1, -1))                                                        \
    X(expand, EXPAND_CASES, ag_expand(x, x->ndim == 2 ? AG_SHAPE(2, 3, 5) : AG_SHAPE(3, 4)))          \
    X(unsqueeze, VIEW_CASES, ag_unsqueeze(x, 1))                                                      \
    X(squeeze, SQUEEZE_CASES, ag_squeeze(x, 1))                                                       \
    X(diagonal, VIEW_CASES, x->ndim == 3 ? ag_diagonal(x, -1, 2, 0) : ag_diagonal(x, 1, 0, 1))        \
    X(diag_embed, DIAG_CASES, x->ndim == 2 ? ag_diag_embed(x, -1, 0, 2) : ag_diag_embed(x, 2, -2, -1)) \
    X(clone, VIEW_CASES, ag_clone(x))                                                                 \
    X(to_dtype, VIEW_CASES, ag_to_dtype(x, AG_F64))

#define DEFINE_CALL(NAME, CASES, EXPR)                                      \
    static ag_tensor *call_##NAME(ag_tensor *const *in, int n, void *ctx) { \
        ag_tensor *x = in[0];                                               \
        (void)n, (void)ctx;                                                 \
        return EXPR;                                                        \
    }
VIEW_OPS(DEFINE_CALL)

#define ROW(NAME, CASES, EXPR) {.name = #NAME, .call = call_##NAME, .domain = AG_DOMAIN_ANY, .cases = CASES},
const ag_op_test ag_test_view_cases[] = {VIEW_OPS(ROW){.name = NULL}};

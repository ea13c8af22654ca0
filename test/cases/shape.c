/*
 * shape.c - the test rows of flip, roll, tril, triu and repeat (ops/shape.c),
 * each on a fixed argument set for the input's rank: [3, 4], [2, 3, 4], a 0-d
 * input where the op takes one, and an empty one.
 */
#include "test/cases/op_cases.h"

#define SHAPE_CASES {{1, {AG_DIMS(3, 4)}}, {1, {AG_DIMS(2, 3, 4)}}, {1, {AG_DIMS0}}, {1, {AG_DIMS(2, 0, 3)}}}
#define INTERLEAVE_CASES {{1, {AG_DIMS(3, 4)}}, {1, {AG_DIMS(2, 3, 4)}}, {1, {AG_DIMS(5)}}, {1, {AG_DIMS(2, 0, 3)}}}
#define TRI_CASES {{1, {AG_DIMS(3, 4)}}, {1, {AG_DIMS(2, 4, 3)}}, {1, {AG_DIMS(5, 5)}}, {1, {AG_DIMS(2, 0, 3)}}}

/* X(name, cases, the call of x) */
#define SHAPE_OPS(X)                                                                                     \
    X(flip, SHAPE_CASES, x->ndim == 3 ? ag_flip(x, 2, (int[]){0, -1}) : ag_flip(x, 1, (int[]){-1}))     \
    X(roll, SHAPE_CASES,                                                                                 \
      x->ndim == 3 ? ag_roll(x, 2, (int64_t[]){-1, 5}, (int[]){0, 2})                                    \
                   : x->ndim == 2 ? ag_roll(x, 1, (int64_t[]){1}, (int[]){1}) : ag_roll(x, 1, (int64_t[]){3}, NULL)) \
    X(tril, TRI_CASES, ag_tril(x, x->ndim == 3 ? -1 : 1))                                                \
    X(triu, TRI_CASES, ag_triu(x, x->ndim == 3 ? 1 : 0))                                                 \
    X(repeat, SHAPE_CASES, x->ndim == 3 ? ag_repeat(x, AG_SHAPE(1, 2, 1, 3)) : ag_repeat(x, AG_SHAPE(2, 3)))  \
    X(repeat_interleave, INTERLEAVE_CASES, ag_repeat_interleave(x, x->ndim == 3 ? 2 : 3, x->ndim == 3 ? 1 : -1))

#define DEFINE_CALL(NAME, CASES, EXPR)                                      \
    static ag_tensor *call_##NAME(ag_tensor *const *in, int n, void *ctx) { \
        ag_tensor *x = in[0];                                               \
        (void)n, (void)ctx;                                                 \
        return EXPR;                                                        \
    }
SHAPE_OPS(DEFINE_CALL)

#define ROW(NAME, CASES, EXPR) {.name = #NAME, .call = call_##NAME, .domain = AG_DOMAIN_ANY, .cases = CASES},
const ag_op_test ag_test_shape_cases[] = {SHAPE_OPS(ROW){.name = NULL}};

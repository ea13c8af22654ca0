/*
 * join.c - the test rows of cat and stack (ops/join.c): cat along dim 1 of
 * 3-d inputs, else along the last dim; stack along a new last dim.
 */
#include "test/cases/op_cases.h"

static ag_tensor *call_cat(ag_tensor *const *in, int n, void *ctx) {
    (void)ctx;
    return ag_cat(in, n, in[0]->ndim == 3 ? 1 : -1);
}

static ag_tensor *call_stack(ag_tensor *const *in, int n, void *ctx) {
    (void)ctx;
    return ag_stack(in, n, -1);
}

const ag_op_test ag_test_join_cases[] = {
    {.name = "cat", .call = call_cat, .domain = AG_DOMAIN_ANY,
     .cases = {{3, {AG_DIMS(2, 3), AG_DIMS(2, 4), AG_DIMS(2, 1)}},
               {3, {AG_DIMS(2, 3, 4), AG_DIMS(2, 1, 4), AG_DIMS(2, 2, 4)}},
               {2, {AG_DIMS(3), AG_DIMS(5)}},
               {4, {AG_DIMS(2, 2), AG_DIMS(2, 3), AG_DIMS(2, 1), AG_DIMS(2, 2)}}}},
    {.name = "stack", .call = call_stack, .domain = AG_DOMAIN_ANY,
     .cases = {{2, {AG_DIMS(3, 4), AG_DIMS(3, 4)}},
               {3, {AG_DIMS(2, 3, 2), AG_DIMS(2, 3, 2), AG_DIMS(2, 3, 2)}},
               {2, {AG_DIMS0, AG_DIMS0}},
               {4, {AG_DIMS(3), AG_DIMS(3), AG_DIMS(3), AG_DIMS(3)}}}},
    {.name = NULL},
};

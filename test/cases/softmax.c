/*
 * softmax.c - the test rows of softmax and log_softmax (ops/softmax.c): on a
 * [3, 4], a [2, 3, 4], a 0-d and a [5] input, along dim 1 of 3-d inputs and
 * dim -1 otherwise.
 */
#include "test/cases/op_cases.h"

#define SOFTMAX_CASES {{1, {AG_DIMS(3, 4)}}, {1, {AG_DIMS(2, 3, 4)}}, {1, {AG_DIMS0}}, {1, {AG_DIMS(5)}}}

static ag_tensor *call_softmax(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    return ag_softmax(in[0], in[0]->ndim == 3 ? 1 : -1);
}

static ag_tensor *call_log_softmax(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    return ag_log_softmax(in[0], in[0]->ndim == 3 ? 1 : -1);
}

const ag_op_test ag_test_softmax_cases[] = {
    {.name = "softmax", .call = call_softmax, .domain = AG_DOMAIN_ANY, .cases = SOFTMAX_CASES},
    {.name = "log_softmax", .call = call_log_softmax, .domain = AG_DOMAIN_ANY, .cases = SOFTMAX_CASES},
    {.name = NULL},
};

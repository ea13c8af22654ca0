/*
 * prelu.c - the test row of prelu (ops/prelu.c): one weight per channel (dim 1)
 * or a single shared one.
 */
#include "test/cases/op_cases.h"

static ag_tensor *call_prelu(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    return ag_prelu(in[0], in[1]);
}

const ag_op_test ag_test_prelu_cases[] = {
    {.name = "prelu", .call = call_prelu, .domain = AG_DOMAIN_ANY,
     .cases = {{2, {AG_DIMS(3, 4), AG_DIMS(4)}},
               {2, {AG_DIMS(2, 3, 4), AG_DIMS(3)}},
               {2, {AG_DIMS(2, 3, 4), AG_DIMS(1)}},
               {2, {AG_DIMS0, AG_DIMS(1)}}}},
    {.name = NULL},
};

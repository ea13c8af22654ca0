/*
 * distance.c - the test row of cdist (ops/distance.c): the registered op is its
 * matrix form, p = 2 with more than 25 rows on either side, plain, batched and with
 * batch dims broadcast.
 */
#include "test/cases/op_cases.h"

static ag_tensor *call_cdist(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    return ag_cdist(in[0], in[1], 2);
}

const ag_op_test ag_test_distance_cases[] = {
    {.name = "cdist", .call = call_cdist, .domain = AG_DOMAIN_ANY,
     .cases = {{2, {AG_DIMS(30, 4), AG_DIMS(7, 4)}},
               {2, {AG_DIMS(2, 5, 3), AG_DIMS(2, 27, 3)}},
               {2, {AG_DIMS(2, 1, 26, 3), AG_DIMS(3, 4, 3)}},
               {2, {AG_DIMS(0, 3), AG_DIMS(26, 3)}}}},
    {.name = NULL},
};

/*
 * distance.c - the test rows of cdist's two registered ops (ops/distance.c): its
 * matrix form (p = 2 with more than 25 rows on either side) and its direct form (any
 * other p), each plain, batched and with batch dims broadcast.
 */
#include <math.h>
#include "test/cases/op_cases.h"

static ag_tensor *call_cdist(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    return ag_cdist(in[0], in[1], 2);
}

/* The direct form at the p its case picks by its inputs' dims (which scaling a case keeps):
 * 2 and 2 dims p = 1, 3 and 3 inf, 4 and 3 p = 1.5, 2 and 3 p = 0, others p = 3. */
static ag_tensor *call_cdist_p(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    const int da = in[0]->ndim, db = in[1]->ndim;
    const double p = da == 2 && db == 2 ? 1 : da == 3 && db == 3 ? INFINITY : da == 4 && db == 3 ? 1.5 : da == 2 && db == 3 ? 0 : 3;
    return ag_cdist(in[0], in[1], p);
}

const ag_op_test ag_test_distance_cases[] = {
    {.name = "cdist", .call = call_cdist, .domain = AG_DOMAIN_ANY,
     .cases = {{2, {AG_DIMS(30, 4), AG_DIMS(7, 4)}},
               {2, {AG_DIMS(2, 5, 3), AG_DIMS(2, 27, 3)}},
               {2, {AG_DIMS(2, 1, 26, 3), AG_DIMS(3, 4, 3)}},
               {2, {AG_DIMS(0, 3), AG_DIMS(26, 3)}}}},
    {.name = "cdist_p", .call = call_cdist_p, .domain = AG_DOMAIN_ANY,
     .cases = {{2, {AG_DIMS(5, 3), AG_DIMS(4, 3)}},
               {2, {AG_DIMS(2, 4, 3), AG_DIMS(2, 5, 3)}},
               {2, {AG_DIMS(2, 1, 3, 4), AG_DIMS(3, 5, 4)}},
               {2, {AG_DIMS(3, 2), AG_DIMS(2, 4, 2)}}}},
    {.name = NULL},
};

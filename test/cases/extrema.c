/*
 * extrema.c - the test rows of max, min, argmax, argmin and prod (ops/extrema.c):
 * each on a [3, 4], a [2, 3, 4], a 0-d and a [5] input; the dim variants along
 * dim 1 kept for 3-d inputs, else along dim -1 dropped.  max and min draw
 * distinct values, so that their gradient has no ties.
 */
#include "test/cases/op_cases.h"

#define EXTREMA_CASES {{1, {AG_DIMS(3, 4)}}, {1, {AG_DIMS(2, 3, 4)}}, {1, {AG_DIMS0}}, {1, {AG_DIMS(5)}}}

/* The dim and keepdim of a dim variant's call for x. */
#define DIM(x) ((x)->ndim == 3 ? 1 : -1)
#define KEEP(x) ((x)->ndim == 3)

#define ALL_CALL(NAME)                                                      \
    static ag_tensor *call_##NAME(ag_tensor *const *in, int n, void *ctx) { \
        (void)n, (void)ctx;                                                 \
        return ag_##NAME(in[0]);                                            \
    }
#define DIM_CALL(NAME)                                                      \
    static ag_tensor *call_##NAME(ag_tensor *const *in, int n, void *ctx) { \
        (void)n, (void)ctx;                                                 \
        return ag_##NAME(in[0], DIM(in[0]), KEEP(in[0]));                   \
    }
ALL_CALL(max) ALL_CALL(min) ALL_CALL(prod)
DIM_CALL(max_dim) DIM_CALL(min_dim) DIM_CALL(argmax) DIM_CALL(argmin) DIM_CALL(prod_dim)

#define ROW(NAME, DOMAIN) {.name = #NAME, .call = call_##NAME, .domain = DOMAIN, .cases = EXTREMA_CASES}
const ag_op_test ag_test_extrema_cases[] = {
    ROW(max, AG_DOMAIN_DISTINCT),
    ROW(min, AG_DOMAIN_DISTINCT),
    ROW(max_dim, AG_DOMAIN_DISTINCT),
    ROW(min_dim, AG_DOMAIN_DISTINCT),
    ROW(argmax, AG_DOMAIN_DISTINCT),
    ROW(argmin, AG_DOMAIN_DISTINCT),
    ROW(prod, AG_DOMAIN_ANY),
    ROW(prod_dim, AG_DOMAIN_ANY),
    {.name = NULL},
};

/*
 * sort.c - the test rows of sort, argsort, topk, kthvalue, median and nanmedian (ops/sort.c):
 * distinct values (so that the gradient has no ties) on a [3, 4] input along dim
 * -1, a [2, 3, 4] along dim 1, a 0-d and an empty [2, 0, 3] along its empty dim
 * (a [5] for the selections: an empty dim is refused, or gives NaN, which the
 * float32-against-float64 check cannot compare).
 */
#include "test/cases/op_cases.h"

#define SORT_CASES {{1, {AG_DIMS(3, 4)}}, {1, {AG_DIMS(2, 3, 4)}}, {1, {AG_DIMS0}}, {1, {AG_DIMS(2, 0, 3)}}}

/* The dim a call sorts along for x. */
#define DIM(x) ((x)->ndim == 3 ? 1 : (x)->ndim == 0 ? 0 : -1)

/* Descending for 2-d inputs, ascending otherwise. */
static ag_tensor *call_sort(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    return ag_sort(in[0], DIM(in[0]), in[0]->ndim == 2, NULL);
}
static ag_tensor *call_argsort(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    return ag_argsort(in[0], DIM(in[0]), in[0]->ndim == 2);
}
/* The 2 largest along dim -1 (2-d), the 2 smallest along dim 1 (3-d), k 1 of a 0-d, k 0 of an empty dim. */
static ag_tensor *call_topk(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    ag_tensor *x = in[0];
    const int64_t k = x->ndim == 0 ? 1 : x->shape[DIM(x) < 0 ? x->ndim - 1 : DIM(x)] ? 2 : 0;
    return ag_topk(x, k, DIM(x), x->ndim != 3, true, NULL);
}

/* k 2 along dim -1 dropped (2-d), k 1 along dim 1 kept (3-d), k 1 of a 0-d; k 1 of an empty lane
 * set fails for the empty case, so kthvalue's cases have none */
static ag_tensor *call_kthvalue(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    ag_tensor *x = in[0];
    return ag_kthvalue(x, x->ndim == 2 ? 2 : 1, DIM(x), x->ndim == 3, NULL);
}
/* along dim -1 dropped (2-d), dim 1 kept (3-d), 0-d */
static ag_tensor *call_median_dim(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    return ag_median_dim(in[0], DIM(in[0]), in[0]->ndim == 3, NULL);
}
static ag_tensor *call_median(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    return ag_median(in[0]);
}
static ag_tensor *call_nanmedian(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    return ag_nanmedian(in[0]);
}

#define SELECT_CASES {{1, {AG_DIMS(3, 4)}}, {1, {AG_DIMS(2, 3, 4)}}, {1, {AG_DIMS0}}, {1, {AG_DIMS(5)}}}

#define ROW(NAME) {.name = #NAME, .call = call_##NAME, .domain = AG_DOMAIN_DISTINCT, .cases = SORT_CASES}
const ag_op_test ag_test_sort_cases[] = {
    ROW(sort),
    ROW(argsort),
    ROW(topk),
    {.name = "kthvalue", .call = call_kthvalue, .domain = AG_DOMAIN_DISTINCT, .cases = SELECT_CASES},
    {.name = "median_dim", .call = call_median_dim, .domain = AG_DOMAIN_DISTINCT, .cases = SELECT_CASES},
    {.name = "median", .call = call_median, .domain = AG_DOMAIN_DISTINCT, .cases = SELECT_CASES},
    {.name = "nanmedian", .call = call_nanmedian, .domain = AG_DOMAIN_DISTINCT, .cases = SELECT_CASES},
    {.name = NULL},
};

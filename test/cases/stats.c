/*
 * stats.c - the test rows of the counting and bucketing ops (ops/stats.c),
 * none differentiable: they are run by test_backend and timed by bench_ops.
 * The calls derive what each op needs from the drawn inputs: a sorted copy
 * for the sequence of searchsorted, int64 counts for bincount, values rounded
 * to halves (so that they repeat) for unique.
 */
#include "test/cases/op_cases.h"

/* in[0] flattened and sorted: the sequence; in[1]: the values. */
static ag_tensor *call_searchsorted(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    if (ag__composite_begin("searchsorted")) return NULL; /* owns the sequence made here */
    return ag__composite_end(ag_searchsorted(ag_sort(ag_reshape(in[0], AG_SHAPE(-1)), 0, false, NULL), in[1], false));
}
static ag_tensor *call_bucketize(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    if (ag__composite_begin("bucketize")) return NULL;
    return ag__composite_end(ag_bucketize(in[1], ag_sort(ag_reshape(in[0], AG_SHAPE(-1)), 0, false, NULL), true));
}
/* Halves of x: x rounded to multiples of 0.5, so that values repeat. */
static ag_tensor *halves(ag_tensor *x) { return ag_mul_scalar(ag_round(ag_mul_scalar(x, 2)), 0.5); }
/* counts of floor(|x|·3) flattened, weighted by x flattened when arg[0] */
static ag_tensor *call_bincount(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    if (ag__composite_begin("bincount")) return NULL;
    ag_tensor *flat = ag_reshape(in[0], AG_SHAPE(-1));
    return ag__composite_end(ag_bincount(ag_to_dtype(ag_mul_scalar(ag_abs(flat), 3), AG_I64), flat, 2));
}
static ag_tensor *call_histc(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    return ag_histc(in[0], 7, -1.5, 1.5);
}
static ag_tensor *call_unique(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    ag_tensor *inverse, *counts;
    if (ag__composite_begin("unique")) return NULL;
    return ag__composite_end(ag_unique(halves(in[0]), &inverse, &counts));
}
static ag_tensor *call_unique_consecutive(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    ag_tensor *inverse, *counts;
    if (ag__composite_begin("unique_consecutive")) return NULL;
    return ag__composite_end(ag_unique_consecutive(halves(in[0]), &inverse, &counts));
}
/* the distinct rows (dim 0) of halves of x; a 0-d x along dim 0 fails, as PyTorch */
static ag_tensor *call_unique_dim(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    ag_tensor *inverse, *counts;
    if (ag__composite_begin("unique_dim")) return NULL;
    return ag__composite_end(ag_unique_dim(halves(in[0]), 0, &inverse, &counts));
}

#define SEARCH_CASES {{2, {AG_DIMS(7), AG_DIMS(3, 4)}}, {2, {AG_DIMS(2, 5), AG_DIMS(6)}}, {2, {AG_DIMS(4), AG_DIMS0}}}
#define ONE_CASES {{1, {AG_DIMS(3, 4)}}, {1, {AG_DIMS(2, 3, 4)}}, {1, {AG_DIMS0}}, {1, {AG_DIMS(0, 3)}}}

const ag_op_test ag_test_stats_cases[] = {
    {.name = "searchsorted", .call = call_searchsorted, .domain = AG_DOMAIN_ANY, .cases = SEARCH_CASES},
    {.name = "bucketize", .call = call_bucketize, .domain = AG_DOMAIN_ANY, .cases = SEARCH_CASES},
    {.name = "bincount", .call = call_bincount, .domain = AG_DOMAIN_ANY, .cases = ONE_CASES},
    {.name = "histc", .call = call_histc, .domain = AG_DOMAIN_ANY, .cases = ONE_CASES},
    {.name = "unique", .call = call_unique, .domain = AG_DOMAIN_ANY, .cases = ONE_CASES},
    {.name = "unique_consecutive", .call = call_unique_consecutive, .domain = AG_DOMAIN_ANY, .cases = ONE_CASES},
    {.name = "unique_dim", .call = call_unique_dim, .domain = AG_DOMAIN_ANY, .cases = {{1, {AG_DIMS(6, 2)}}, {1, {AG_DIMS(4, 2, 3)}}, {1, {AG_DIMS(0, 3)}}, {1, {AG_DIMS(5)}}}},
    {.name = NULL},
};

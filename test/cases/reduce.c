/*
 * reduce.c - the test rows of the reductions (ops/reduce.c): each on a [3, 4],
 * a [2, 3, 4], a 0-d and a [5] input, over dims chosen by the input's rank.
 */
#include "test/cases/op_cases.h"

#define REDUCE_CASES {{1, {AG_DIMS(3, 4)}}, {1, {AG_DIMS(2, 3, 4)}}, {1, {AG_DIMS0}}, {1, {AG_DIMS(5)}}}

/* All elements (0-d, 1-d); dims 0 and -1 (2-d, 3-d). */
static ag_tensor *call_sum(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    if (in[0]->ndim < 2) return ag_sum(in[0]);
    int dims[2] = {0, -1};
    return ag_sum_dims(in[0], 2, dims, false);
}

/* All elements (0-d, 1-d); dim -1 kept (2-d, 3-d). */
static ag_tensor *call_mean(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    if (in[0]->ndim < 2) return ag_mean(in[0]);
    return ag_mean_dim(in[0], -1, true);
}

/* All elements with correction 0 (0-d) or 1 (1-d); dim -1 with correction 1 (2-d); dims 0 and 2
 * kept, correction 0 (3-d). */
static ag_tensor *call_var(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    ag_tensor *x = in[0];
    static const int last[1] = {-1}, outer[2] = {0, 2};
    if (x->ndim < 2) return ag_var(x, x->ndim == 1);
    if (x->ndim == 2) return ag_var_dims(x, 1, last, 1, false);
    return ag_var_dims(x, 2, outer, 0, true);
}

/* As var. */
static ag_tensor *call_std(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    ag_tensor *x = in[0];
    static const int last[1] = {-1}, outer[2] = {0, 2};
    if (x->ndim < 2) return ag_std(x, x->ndim == 1);
    if (x->ndim == 2) return ag_std_dims(x, 1, last, 1, false);
    return ag_std_dims(x, 2, outer, 0, true);
}

/* The only dim (0-d, 1-d), both dims (2-d), dim 1 kept (3-d). */
static ag_tensor *call_logsumexp(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    static const int first[1] = {0}, both[2] = {0, -1}, middle[1] = {1};
    ag_tensor *x = in[0];
    if (x->ndim < 2) return ag_logsumexp_dims(x, 1, x->ndim ? both + 1 : first, false);
    if (x->ndim == 2) return ag_logsumexp_dims(x, 2, both, false);
    return ag_logsumexp_dims(x, 1, middle, true);
}

/* All dims (0-d, 1-d), dims 0 and -1 (2-d), dims 0 and 2 kept (3-d). */
static ag_tensor *call_extreme_dims(ag_tensor *(*f)(ag_tensor *, int, const int *, bool), ag_tensor *x) {
    static const int both[2] = {0, -1}, outer[2] = {0, 2};
    if (x->ndim < 2) return f(x, 0, NULL, false);
    return x->ndim == 2 ? f(x, 2, both, false) : f(x, 2, outer, true);
}
static ag_tensor *call_amax(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    return call_extreme_dims(ag_amax, in[0]);
}
static ag_tensor *call_amin(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    return call_extreme_dims(ag_amin, in[0]);
}

/* All elements (0-d, 1-d), along dim -1 (2-d), dim 1 kept (3-d); on distinct values, which
 * hold a 0 when their count is even. */
static ag_tensor *call_truth(ag_tensor *(*all)(ag_tensor *), ag_tensor *(*dim)(ag_tensor *, int, bool), ag_tensor *x) {
    if (x->ndim < 2) return all(x);
    return x->ndim == 2 ? dim(x, -1, false) : dim(x, 1, true);
}
static ag_tensor *call_any(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    return call_truth(ag_any, ag_any_dim, in[0]);
}
static ag_tensor *call_all(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    return call_truth(ag_all, ag_all_dim, in[0]);
}
/* All dims (0-d, 1-d), dims 0 and -1 (2-d), dims 0 and 2 (3-d). */
static ag_tensor *call_count_nonzero(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    static const int both[2] = {0, -1}, outer[2] = {0, 2};
    ag_tensor *x = in[0];
    if (x->ndim < 2) return ag_count_nonzero(x, 0, NULL);
    return ag_count_nonzero(x, 2, x->ndim == 2 ? both : outer);
}

const ag_op_test ag_test_reduce_cases[] = {
    {.name = "sum", .call = call_sum, .domain = AG_DOMAIN_ANY, .cases = REDUCE_CASES},
    {.name = "mean", .call = call_mean, .domain = AG_DOMAIN_ANY, .cases = REDUCE_CASES},
    {.name = "var", .call = call_var, .domain = AG_DOMAIN_ANY, .cases = REDUCE_CASES},
    {.name = "std", .call = call_std, .domain = AG_DOMAIN_ANY, .cases = REDUCE_CASES},
    {.name = "logsumexp", .call = call_logsumexp, .domain = AG_DOMAIN_ANY, .cases = REDUCE_CASES},
    {.name = "amax", .call = call_amax, .domain = AG_DOMAIN_DISTINCT, .cases = REDUCE_CASES},
    {.name = "amin", .call = call_amin, .domain = AG_DOMAIN_DISTINCT, .cases = REDUCE_CASES},
    {.name = "any", .call = call_any, .domain = AG_DOMAIN_DISTINCT, .cases = REDUCE_CASES},
    {.name = "all", .call = call_all, .domain = AG_DOMAIN_DISTINCT, .cases = REDUCE_CASES},
    {.name = "count_nonzero", .call = call_count_nonzero, .domain = AG_DOMAIN_DISTINCT, .cases = REDUCE_CASES},
    {.name = NULL},
};

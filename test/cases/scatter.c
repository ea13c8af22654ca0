/*
 * scatter.c - the test rows of the element-wise index and mask ops
 * (ops/scatter.c).  Each row's aux makes its int64 index or bool mask from the
 * inputs, along dim 1 (dim 0 for 1-D inputs): scatter's targets are distinct in every
 * lane (a repeated target is overwritten, which no gradient can follow),
 * take's and put's indices repeat and include negative ones, and the masks
 * are the fixed [3, 1] pattern {1, 0, 1}, which broadcasts against every case.
 */
#include "test/cases/op_cases.h"

/* The dim the calls index along. */
static int index_dim(const ag_tensor *x) { return x->ndim >= 2 ? 1 : 0; }

/* Each row's index (or mask) is made by an aux function from the inputs, and its call_aux
 * calls the op on the inputs and it (op_cases.h; the benchmarks make the index before timing). */

/* index for scatter: the smaller of x's and src's sizes along every dim, with values distinct
 * along dim (wrapping at x's size there). */
static ag_tensor *aux_scatter(ag_tensor *const *in, int n, const ag_op_test *row) {
    (void)n, (void)row;
    ag_tensor *x = in[0], *src = in[1];
    int64_t shape[AG_MAX_DIMS];
    for (int k = 0; k < x->ndim; k++) shape[k] = src->shape[k] < x->shape[k] ? src->shape[k] : x->shape[k];
    return opc_lane_index(x->ndim, shape, x->ndim ? x->shape[index_dim(x)] : 1);
}
static ag_tensor *call_scatter(ag_tensor *const *in, int n, ag_tensor *index, const ag_op_test *row) {
    (void)n, (void)row;
    return ag_scatter(in[0], index_dim(in[0]), index, in[1]);
}

/* Sets all but the last place of every lane along d to arg[0]. */
static ag_tensor *aux_scatter_value(ag_tensor *const *in, int n, const ag_op_test *row) {
    (void)n, (void)row;
    ag_tensor *x = in[0];
    int d = index_dim(x);
    int64_t shape[AG_MAX_DIMS];
    for (int k = 0; k < x->ndim; k++) shape[k] = k == d && x->shape[k] > 1 ? x->shape[k] - 1 : x->shape[k];
    return opc_lane_index(x->ndim, shape, x->ndim ? x->shape[d] : 1);
}
static ag_tensor *call_scatter_value(ag_tensor *const *in, int n, ag_tensor *index, const ag_op_test *row) {
    (void)n;
    return ag_scatter_value(in[0], index_dim(in[0]), index, row->arg[0]);
}

/* scatter_reduce's targets: along d, (sum of the coordinates) mod (x's size minus one), so that
 * they repeat and the last place of every lane receives nothing. */
static ag_tensor *aux_scatter_reduce(ag_tensor *const *in, int n, const ag_op_test *row) {
    (void)n, (void)row;
    ag_tensor *x = in[0], *src = in[1];
    int d = index_dim(x);
    int64_t shape[AG_MAX_DIMS];
    for (int k = 0; k < x->ndim; k++) shape[k] = k == d ? src->shape[k] : src->shape[k] < x->shape[k] ? src->shape[k] : x->shape[k];
    int64_t m = x->ndim && x->shape[d] > 1 ? x->shape[d] - 1 : 1;
    return opc_lane_index(x->ndim, shape, m);
}

/* The reduction follows x's dims (so every one is gradchecked in one row): 1-D amax without
 * self, 2-D prod with self, 3-D mean without self, 4-D amin with self.  x is shifted by 1/77
 * so that no value of x ties with one of src (both are drawn from the distinct domain). */
static ag_tensor *call_scatter_reduce(ag_tensor *const *in, int n, ag_tensor *index, const ag_op_test *row) {
    (void)n, (void)row;
    static const ag_scatter_reduction by_dims[5] = {AG_SCATTER_SUM, AG_SCATTER_AMAX, AG_SCATTER_PROD, AG_SCATTER_MEAN,
                                                    AG_SCATTER_AMIN};
    ag_tensor *x = in[0];
    int nd = x->ndim < 5 ? x->ndim : 4;
    return ag_scatter_reduce(ag_add_scalar(x, 1.0 / 77), index_dim(x), index, in[1], by_dims[nd], nd % 2 == 0);
}

/* take at (7k + 2) mod numel, every other one counted from the end (negative). */
static ag_tensor *flat_index(const ag_tensor *x, int64_t count) {
    int64_t numel = ag_numel(x);
    ag_tensor *i = opc_index(1, &count, 7, 2, numel ? numel : 1);
    if (!i) return NULL;
    int64_t *v = ag_data(i);
    for (int64_t k = 1; k < count; k += 2) v[k] -= numel;
    return i;
}

/* take's index: 6 places, shaped [2, 3]. */
static ag_tensor *aux_take(ag_tensor *const *in, int n, const ag_op_test *row) {
    (void)n, (void)row;
    return ag_reshape(flat_index(in[0], 6), AG_SHAPE(2, 3));
}
static ag_tensor *call_take(ag_tensor *const *in, int n, ag_tensor *index, const ag_op_test *row) {
    (void)n, (void)row;
    return ag_take(in[0], index);
}

/* put of source's values, accumulating (arg[0]): a repeated place gets their sum. */
static ag_tensor *aux_put(ag_tensor *const *in, int n, const ag_op_test *row) {
    (void)n, (void)row;
    return flat_index(in[0], ag_numel(in[1]));
}
static ag_tensor *call_put(ag_tensor *const *in, int n, ag_tensor *index, const ag_op_test *row) {
    (void)n;
    return ag_put(in[0], index, in[1], row->arg[0] != 0);
}

/* A fixed [3, 1] bool mask {1, 0, 1}. */
static ag_tensor *aux_mask(ag_tensor *const *in, int n, const ag_op_test *row) {
    (void)in, (void)n, (void)row;
    static const bool pattern[3] = {true, false, true};
    return ag_from_data(pattern, AG_SHAPE(3, 1), AG_BOOL);
}

static ag_tensor *call_masked_select(ag_tensor *const *in, int n, ag_tensor *mask, const ag_op_test *row) {
    (void)n, (void)row;
    return ag_masked_select(in[0], mask);
}

static ag_tensor *call_masked_scatter(ag_tensor *const *in, int n, ag_tensor *mask, const ag_op_test *row) {
    (void)n, (void)row;
    return ag_masked_scatter(in[0], mask, in[1]);
}

/* The row fields of an op whose index or mask aux makes. */
#define WITH_AUX(aux_fn, call_fn) .call = opc_call_with_aux, .aux = aux_fn, .call_aux = call_fn

/* The nonzero places of x > 0. */
static ag_tensor *call_nonzero(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    if (ag__composite_begin("nonzero")) return NULL; /* owns the mask made here */
    return ag__composite_end(ag_nonzero(ag_gt(in[0], ag_zeros_like(in[0]))));
}
static ag_tensor *call_argwhere(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    if (ag__composite_begin("argwhere")) return NULL; /* owns the mask made here */
    return ag__composite_end(ag_argwhere(ag_gt(in[0], ag_zeros_like(in[0]))));
}

#define X_SRC_CASES                                 \
    {{2, {AG_DIMS(3, 4), AG_DIMS(3, 5)}},           \
     {2, {AG_DIMS(2, 3, 4), AG_DIMS(2, 5, 3)}},     \
     {2, {AG_DIMS(5), AG_DIMS(7)}},                 \
     {2, {AG_DIMS(2, 3, 2, 2), AG_DIMS(2, 4, 2, 2)}}}
#define X_CASES {{1, {AG_DIMS(3, 4)}}, {1, {AG_DIMS(2, 3, 4)}}, {1, {AG_DIMS(5)}}, {1, {AG_DIMS0}}}

const ag_op_test ag_test_scatter_cases[] = {
    {.name = "scatter", WITH_AUX(aux_scatter, call_scatter), .domain = AG_DOMAIN_ANY, .cases = X_SRC_CASES},
    {.name = "scatter_value", WITH_AUX(aux_scatter_value, call_scatter_value), .domain = AG_DOMAIN_ANY, .cases = X_CASES, .arg = {0.75, 0}},
    {.name = "scatter_reduce", WITH_AUX(aux_scatter_reduce, call_scatter_reduce), .domain = AG_DOMAIN_DISTINCT, .cases = X_SRC_CASES},
    {.name = "take", WITH_AUX(aux_take, call_take), .domain = AG_DOMAIN_ANY, .cases = X_CASES},
    {.name = "put", WITH_AUX(aux_put, call_put), .domain = AG_DOMAIN_ANY, .arg = {1, 0},
     .cases = {{2, {AG_DIMS(3, 4), AG_DIMS(5)}},
               {2, {AG_DIMS(2, 3, 4), AG_DIMS(2, 3)}},
               {2, {AG_DIMS(5), AG_DIMS(3)}},
               {2, {AG_DIMS0, AG_DIMS0}}}},
    {.name = "masked_select", WITH_AUX(aux_mask, call_masked_select), .domain = AG_DOMAIN_ANY,
     .cases = {{1, {AG_DIMS(3, 4)}}, {1, {AG_DIMS(2, 3, 4)}}, {1, {AG_DIMS(3, 1)}}, {1, {AG_DIMS(4)}}}},
    {.name = "masked_scatter", WITH_AUX(aux_mask, call_masked_scatter), .domain = AG_DOMAIN_ANY,
     .cases = {{2, {AG_DIMS(3, 4), AG_DIMS(3, 3)}},
               {2, {AG_DIMS(2, 3, 4), AG_DIMS(17)}},
               {2, {AG_DIMS(4), AG_DIMS(2, 5)}}}},
    {.name = "nonzero", .call = call_nonzero, .domain = AG_DOMAIN_ANY, .cases = X_CASES},
    {.name = "argwhere", .call = call_argwhere, .domain = AG_DOMAIN_ANY, .cases = X_CASES},
    {.name = NULL},
};

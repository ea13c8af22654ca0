/*
 * scatter.c - the test rows of the element-wise index and mask ops
 * (ops/scatter.c).  The calls build their int64 index or bool mask inside,
 * along dim 1 (dim 0 for 1-D inputs): scatter's targets are distinct in every
 * lane (a repeated target is overwritten, which no gradient can follow),
 * take's and put's indices repeat and include negative ones, and the masks
 * are the fixed [3, 1] pattern {1, 0, 1}, which broadcasts against every case.
 */
#include "test/cases/op_cases.h"

/* The dim the calls index along. */
static int index_dim(const ag_tensor *x) { return x->ndim >= 2 ? 1 : 0; }

/* index for scatter and scatter_reduce: the smaller of x's and src's sizes along every dim,
 * with values distinct along dim (wrapping at x's size there). */
static ag_tensor *scatter_index(const ag_tensor *x, const ag_tensor *src, int d) {
    int64_t shape[AG_MAX_DIMS];
    for (int k = 0; k < x->ndim; k++) shape[k] = src->shape[k] < x->shape[k] ? src->shape[k] : x->shape[k];
    return opc_lane_index(x->ndim, shape, x->ndim ? x->shape[d] : 1);
}

static ag_tensor *call_scatter(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    ag_tensor *x = in[0];
    int d = index_dim(x);
    if (ag__composite_begin("scatter")) return NULL; /* owns the index made here */
    return ag__composite_end(ag_scatter(x, d, scatter_index(x, in[1], d), in[1]));
}

/* Sets all but the last place of every lane along d to arg[0]. */
static ag_tensor *call_scatter_value(ag_tensor *const *in, int n, void *ctx) {
    const ag_op_test *row = ctx;
    (void)n;
    ag_tensor *x = in[0];
    int d = index_dim(x);
    int64_t shape[AG_MAX_DIMS];
    for (int k = 0; k < x->ndim; k++) shape[k] = k == d && x->shape[k] > 1 ? x->shape[k] - 1 : x->shape[k];
    if (ag__composite_begin("scatter_value")) return NULL; /* owns the index made here */
    return ag__composite_end(ag_scatter_value(x, d, opc_lane_index(x->ndim, shape, x->ndim ? x->shape[d] : 1), row->arg[0]));
}

/* The reduction follows x's dims (so every one is gradchecked in one row): 1-D amax without
 * self, 2-D prod with self, 3-D mean without self, 4-D amin with self.  x is shifted by 1/77
 * so that no value of x ties with one of src (both are drawn from the distinct domain). */
static ag_tensor *call_scatter_reduce(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    static const ag_scatter_reduction by_dims[5] = {AG_SCATTER_SUM, AG_SCATTER_AMAX, AG_SCATTER_PROD, AG_SCATTER_MEAN,
                                                    AG_SCATTER_AMIN};
    ag_tensor *x = in[0], *src = in[1];
    int d = index_dim(x);
    int nd = x->ndim < 5 ? x->ndim : 4;
    if (ag__composite_begin("scatter_reduce")) return NULL; /* owns the index made here */
    /* targets: along d, (sum of the coordinates) mod (x's size minus one), so that they repeat
     * and the last place of every lane receives nothing */
    int64_t shape[AG_MAX_DIMS];
    for (int k = 0; k < x->ndim; k++) shape[k] = k == d ? src->shape[k] : src->shape[k] < x->shape[k] ? src->shape[k] : x->shape[k];
    int64_t m = x->ndim && x->shape[d] > 1 ? x->shape[d] - 1 : 1;
    return ag__composite_end(ag_scatter_reduce(ag_add_scalar(x, 1.0 / 77), d, opc_lane_index(x->ndim, shape, m), src,
                                               by_dims[nd], nd % 2 == 0));
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

static ag_tensor *call_take(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    if (ag__composite_begin("take")) return NULL; /* owns the index made here */
    return ag__composite_end(ag_take(in[0], ag_reshape(flat_index(in[0], 6), AG_SHAPE(2, 3))));
}

/* put of source's values, accumulating (arg[0]): a repeated place gets their sum. */
static ag_tensor *call_put(ag_tensor *const *in, int n, void *ctx) {
    const ag_op_test *row = ctx;
    (void)n;
    if (ag__composite_begin("put")) return NULL; /* owns the index made here */
    return ag__composite_end(ag_put(in[0], flat_index(in[0], ag_numel(in[1])), in[1], row->arg[0] != 0));
}

/* A fixed [3, 1] bool mask {1, 0, 1}. */
static ag_tensor *test_mask(void) {
    static const bool pattern[3] = {true, false, true};
    return ag_from_data(pattern, AG_SHAPE(3, 1), AG_BOOL);
}

static ag_tensor *call_masked_select(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    if (ag__composite_begin("masked_select")) return NULL; /* owns the mask made here */
    return ag__composite_end(ag_masked_select(in[0], test_mask()));
}

static ag_tensor *call_masked_scatter(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    if (ag__composite_begin("masked_scatter")) return NULL; /* owns the mask made here */
    return ag__composite_end(ag_masked_scatter(in[0], test_mask(), in[1]));
}

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
    {.name = "scatter", .call = call_scatter, .domain = AG_DOMAIN_ANY, .cases = X_SRC_CASES},
    {.name = "scatter_value", .call = call_scatter_value, .domain = AG_DOMAIN_ANY, .cases = X_CASES, .arg = {0.75, 0}},
    {.name = "scatter_reduce", .call = call_scatter_reduce, .domain = AG_DOMAIN_DISTINCT, .cases = X_SRC_CASES},
    {.name = "take", .call = call_take, .domain = AG_DOMAIN_ANY, .cases = X_CASES},
    {.name = "put", .call = call_put, .domain = AG_DOMAIN_ANY, .arg = {1, 0},
     .cases = {{2, {AG_DIMS(3, 4), AG_DIMS(5)}},
               {2, {AG_DIMS(2, 3, 4), AG_DIMS(2, 3)}},
               {2, {AG_DIMS(5), AG_DIMS(3)}},
               {2, {AG_DIMS0, AG_DIMS0}}}},
    {.name = "masked_select", .call = call_masked_select, .domain = AG_DOMAIN_ANY,
     .cases = {{1, {AG_DIMS(3, 4)}}, {1, {AG_DIMS(2, 3, 4)}}, {1, {AG_DIMS(3, 1)}}, {1, {AG_DIMS(4)}}}},
    {.name = "masked_scatter", .call = call_masked_scatter, .domain = AG_DOMAIN_ANY,
     .cases = {{2, {AG_DIMS(3, 4), AG_DIMS(3, 3)}},
               {2, {AG_DIMS(2, 3, 4), AG_DIMS(17)}},
               {2, {AG_DIMS(4), AG_DIMS(2, 5)}}}},
    {.name = "nonzero", .call = call_nonzero, .domain = AG_DOMAIN_ANY, .cases = X_CASES},
    {.name = "argwhere", .call = call_argwhere, .domain = AG_DOMAIN_ANY, .cases = X_CASES},
    {.name = NULL},
};

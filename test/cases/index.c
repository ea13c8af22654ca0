/*
 * index.c - the test rows of the indexing ops (ops/index.c).  The calls build
 * fixed int64 indices inside: along dim 1 (dim 0 for 1-D inputs), with
 * repeated values so that gradients must accumulate; where and masked_fill
 * take a fixed [3, 1] mask; embedding indexes the rows of its weight.
 */
#include "test/cases/op_cases.h"

/* The dim the calls index along. */
static int index_dim(const ag_tensor *x) { return x->ndim >= 2 ? 1 : 0; }

static ag_tensor *call_index_select(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    ag_tensor *x = in[0];
    int d = index_dim(x);
    int64_t len = 5;
    if (ag__composite_begin("index_select")) return NULL; /* owns the index or mask made here */
    return ag__composite_end(ag_index_select(x, d, opc_index(1, &len, 7, 2, x->shape[d])));
}

/* index: one less than x along the other dims (not below 1), two more along d. */
static ag_tensor *call_gather(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    ag_tensor *x = in[0];
    int d = index_dim(x);
    int64_t shape[AG_MAX_DIMS];
    for (int k = 0; k < x->ndim; k++) shape[k] = k == d ? x->shape[k] + 2 : x->shape[k] > 1 ? x->shape[k] - 1 : 1;
    if (ag__composite_begin("gather")) return NULL; /* owns the index or mask made here */
    return ag__composite_end(ag_gather(x, d, opc_index(x->ndim, shape, 7, 2, x->shape[d])));
}

/* index: src's shape, clipped to x's along the other dims; values wrap around x's dim d. */
static ag_tensor *call_scatter_add(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    ag_tensor *x = in[0], *src = in[1];
    int d = index_dim(x);
    int64_t shape[AG_MAX_DIMS];
    for (int k = 0; k < src->ndim; k++)
        shape[k] = k == d || src->shape[k] < x->shape[k] ? src->shape[k] : x->shape[k];
    if (ag__composite_begin("scatter_add")) return NULL; /* owns the index or mask made here */
    return ag__composite_end(ag_scatter_add(x, d, opc_index(src->ndim, shape, 7, 2, x->shape[d]), src));
}

/* A fixed [3, 1] bool mask {1, 0, 1}: it broadcasts against every case's shapes. */
static ag_tensor *test_mask(void) {
    static const bool pattern[3] = {true, false, true};
    return ag_from_data(pattern, AG_SHAPE(3, 1), AG_BOOL);
}

static ag_tensor *call_where(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    if (ag__composite_begin("where")) return NULL; /* owns the index or mask made here */
    return ag__composite_end(ag_where(test_mask(), in[0], in[1]));
}

/* Fills with arg[0]. */
static ag_tensor *call_masked_fill(ag_tensor *const *in, int n, void *ctx) {
    const ag_op_test *row = ctx;
    (void)n;
    if (ag__composite_begin("masked_fill")) return NULL; /* owns the index or mask made here */
    return ag__composite_end(ag_masked_fill(in[0], test_mask(), row->arg[0]));
}

/* one_hot of class labels (k mod 4) shaped as x, with num_classes inferred. */
static ag_tensor *call_one_hot(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    ag_tensor *x = in[0];
    if (ag__composite_begin("one_hot")) return NULL; /* owns the index or mask made here */
    return ag__composite_end(ag_one_hot(opc_index(x->ndim, x->shape, 1, 0, 4), -1));
}

/* embedding of weight [V, D] by indices [2, V + 1] with values (7k + 2) mod (V - 1), so rows repeat and
 * the last row, the padding_idx (given as -1), is never picked (its gradient is 0 both ways). */
static ag_tensor *call_embedding(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    ag_tensor *w = in[0];
    const int64_t shape[2] = {2, w->shape[0] + 1};
    if (ag__composite_begin("embedding")) return NULL; /* owns the index or mask made here */
    return ag__composite_end(ag_embedding(w, opc_index(2, shape, 7, 2, w->shape[0] - 1), -1));
}

/* index_add of src, whose slices along d go to (7k + 2) mod (x's size), so repeating: add accumulates; alpha arg[0]. */
static ag_tensor *call_index_add(ag_tensor *const *in, int n, void *ctx) {
    const ag_op_test *row = ctx;
    (void)n;
    ag_tensor *x = in[0], *src = in[1];
    int d = index_dim(x);
    int64_t len = src->ndim ? src->shape[d] : 1;
    if (ag__composite_begin("index_add")) return NULL; /* owns the index made here */
    return ag__composite_end(ag_index_add(x, d, opc_index(1, &len, 7, 2, x->ndim ? x->shape[d] : 1), src, row->arg[0]));
}

/* index_copy of src's slices to distinct places (3k + 1) mod (x's size): the cases keep 3 prime to it. */
static ag_tensor *call_index_copy(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    ag_tensor *x = in[0], *src = in[1];
    int d = index_dim(x);
    int64_t len = src->ndim ? src->shape[d] : 1;
    if (ag__composite_begin("index_copy")) return NULL; /* owns the index made here */
    return ag__composite_end(ag_index_copy(x, d, opc_index(1, &len, 3, 1, x->ndim ? x->shape[d] : 1), src));
}

/* index_fill of two slices (one of them twice) with arg[0]. */
static ag_tensor *call_index_fill(ag_tensor *const *in, int n, void *ctx) {
    const ag_op_test *row = ctx;
    (void)n;
    ag_tensor *x = in[0];
    int d = index_dim(x);
    int64_t len = 3;
    if (ag__composite_begin("index_fill")) return NULL; /* owns the index made here */
    return ag__composite_end(ag_index_fill(x, d, opc_index(1, &len, 2, 1, x->ndim ? x->shape[d] : 1), row->arg[0]));
}

const ag_op_test ag_test_index_cases[] = {
    {.name = "index_select", .call = call_index_select, .domain = AG_DOMAIN_ANY,
     .cases = {{1, {AG_DIMS(3, 4)}}, {1, {AG_DIMS(2, 3, 4)}}, {1, {AG_DIMS(5)}}}},
    {.name = "gather", .call = call_gather, .domain = AG_DOMAIN_ANY,
     .cases = {{1, {AG_DIMS(3, 4)}}, {1, {AG_DIMS(2, 3, 4)}}, {1, {AG_DIMS(5)}}}},
    {.name = "scatter_add", .call = call_scatter_add, .domain = AG_DOMAIN_ANY,
     .cases = {{2, {AG_DIMS(3, 4), AG_DIMS(3, 6)}},
               {2, {AG_DIMS(2, 3, 4), AG_DIMS(2, 5, 3)}},
               {2, {AG_DIMS(5), AG_DIMS(7)}},
               {2, {AG_DIMS(3, 4), AG_DIMS(4, 2)}}}},
    {.name = "where", .call = call_where, .domain = AG_DOMAIN_ANY,
     .cases = {{2, {AG_DIMS(3, 4), AG_DIMS(3, 4)}},
               {2, {AG_DIMS(2, 3, 4), AG_DIMS(4)}},
               {2, {AG_DIMS(4), AG_DIMS(3, 1)}},
               {2, {AG_DIMS0, AG_DIMS(3, 4)}}}},
    {.name = "masked_fill", .call = call_masked_fill, .domain = AG_DOMAIN_ANY,
     .cases = {{1, {AG_DIMS(3, 4)}}, {1, {AG_DIMS(2, 3, 4)}}, {1, {AG_DIMS(3, 1)}}}, .arg = {-1.5, 0}},
    {.name = "one_hot", .call = call_one_hot, .domain = AG_DOMAIN_ANY,
     .cases = {{1, {AG_DIMS(3, 4)}}, {1, {AG_DIMS(2, 3, 4)}}, {1, {AG_DIMS0}}}},
    {.name = "embedding", .call = call_embedding, .domain = AG_DOMAIN_ANY,
     .cases = {{1, {AG_DIMS(5, 3)}}, {1, {AG_DIMS(6, 4)}}, {1, {AG_DIMS(3, 1)}}, {1, {AG_DIMS(4, 0)}}}},
    {.name = "index_add", .call = call_index_add, .domain = AG_DOMAIN_ANY, .arg = {1.5, 0},
     .cases = {{2, {AG_DIMS(3, 4), AG_DIMS(3, 5)}},
               {2, {AG_DIMS(2, 3, 4), AG_DIMS(2, 5, 4)}},
               {2, {AG_DIMS(5), AG_DIMS(7)}},
               {2, {AG_DIMS0, AG_DIMS0}}}},
    {.name = "index_copy", .call = call_index_copy, .domain = AG_DOMAIN_ANY,
     .cases = {{2, {AG_DIMS(3, 5), AG_DIMS(3, 4)}},
               {2, {AG_DIMS(2, 4, 3), AG_DIMS(2, 3, 3)}},
               {2, {AG_DIMS(5), AG_DIMS(3)}},
               {2, {AG_DIMS0, AG_DIMS0}}}},
    {.name = "index_fill", .call = call_index_fill, .domain = AG_DOMAIN_ANY, .arg = {-2.5, 0},
     .cases = {{1, {AG_DIMS(3, 4)}}, {1, {AG_DIMS(2, 3, 4)}}, {1, {AG_DIMS(5)}}, {1, {AG_DIMS0}}}},
    {.name = NULL},
};

/*
 * index.c - the test rows of the indexing ops (ops/index.c).  Each row's aux makes
 * its fixed int64 index from the inputs: along dim 1 (dim 0 for 1-D inputs), with
 * repeated values so that gradients must accumulate; where and masked_fill
 * take a fixed [3, 1] mask; embedding indexes the rows of its weight.
 */
#include "test/cases/op_cases.h"

/* The dim the calls index along. */
static int index_dim(const ag_tensor *x) { return x->ndim >= 2 ? 1 : 0; }

/* Each row's index (or mask) is made by an aux function from the inputs, and its call_aux
 * calls the op on the inputs and it (op_cases.h; the benchmarks make the index before timing). */

/* 5 values along d, repeating. */
static ag_tensor *aux_index_select(ag_tensor *const *in, int n, const ag_op_test *row) {
    (void)n, (void)row;
    int64_t len = 5;
    return opc_index(1, &len, 7, 2, in[0]->shape[index_dim(in[0])]);
}
static ag_tensor *call_index_select(ag_tensor *const *in, int n, ag_tensor *index, const ag_op_test *row) {
    (void)n, (void)row;
    return ag_index_select(in[0], index_dim(in[0]), index);
}

/* index: one less than x along the other dims (not below 1), two more along d. */
static ag_tensor *aux_gather(ag_tensor *const *in, int n, const ag_op_test *row) {
    (void)n, (void)row;
    ag_tensor *x = in[0];
    int d = index_dim(x);
    int64_t shape[AG_MAX_DIMS];
    for (int k = 0; k < x->ndim; k++) shape[k] = k == d ? x->shape[k] + 2 : x->shape[k] > 1 ? x->shape[k] - 1 : 1;
    return opc_index(x->ndim, shape, 7, 2, x->shape[d]);
}
static ag_tensor *call_gather(ag_tensor *const *in, int n, ag_tensor *index, const ag_op_test *row) {
    (void)n, (void)row;
    return ag_gather(in[0], index_dim(in[0]), index);
}

/* index: src's shape, clipped to x's along the other dims; values wrap around x's dim d. */
static ag_tensor *aux_scatter_add(ag_tensor *const *in, int n, const ag_op_test *row) {
    (void)n, (void)row;
    ag_tensor *x = in[0], *src = in[1];
    int d = index_dim(x);
    int64_t shape[AG_MAX_DIMS];
    for (int k = 0; k < src->ndim; k++)
        shape[k] = k == d || src->shape[k] < x->shape[k] ? src->shape[k] : x->shape[k];
    return opc_index(src->ndim, shape, 7, 2, x->shape[d]);
}
static ag_tensor *call_scatter_add(ag_tensor *const *in, int n, ag_tensor *index, const ag_op_test *row) {
    (void)n, (void)row;
    return ag_scatter_add(in[0], index_dim(in[0]), index, in[1]);
}

/* A fixed [3, 1] bool mask {1, 0, 1}: it broadcasts against every case's shapes. */
static ag_tensor *aux_mask(ag_tensor *const *in, int n, const ag_op_test *row) {
    (void)in, (void)n, (void)row;
    static const bool pattern[3] = {true, false, true};
    return ag_from_data(pattern, AG_SHAPE(3, 1), AG_BOOL);
}

static ag_tensor *call_where(ag_tensor *const *in, int n, ag_tensor *mask, const ag_op_test *row) {
    (void)n, (void)row;
    return ag_where(mask, in[0], in[1]);
}

/* Fills with arg[0]. */
static ag_tensor *call_masked_fill(ag_tensor *const *in, int n, ag_tensor *mask, const ag_op_test *row) {
    (void)n;
    return ag_masked_fill(in[0], mask, row->arg[0]);
}

/* one_hot of class labels (k mod 4) shaped as x, with num_classes inferred: the labels are its
 * only input, x gives their shape. */
static ag_tensor *aux_one_hot(ag_tensor *const *in, int n, const ag_op_test *row) {
    (void)n, (void)row;
    return opc_index(in[0]->ndim, in[0]->shape, 1, 0, 4);
}
static ag_tensor *call_one_hot(ag_tensor *const *in, int n, ag_tensor *labels, const ag_op_test *row) {
    (void)in, (void)n, (void)row;
    return ag_one_hot(labels, -1);
}

/* embedding of weight [V, D] by indices [2, V + 1] with values (7k + 2) mod (V - 1), so rows repeat and
 * the last row, the padding_idx (given as -1), is never picked (its gradient is 0 both ways). */
static ag_tensor *aux_embedding(ag_tensor *const *in, int n, const ag_op_test *row) {
    (void)n, (void)row;
    const int64_t shape[2] = {2, in[0]->shape[0] + 1};
    return opc_index(2, shape, 7, 2, in[0]->shape[0] - 1);
}
static ag_tensor *call_embedding(ag_tensor *const *in, int n, ag_tensor *index, const ag_op_test *row) {
    (void)n, (void)row;
    return ag_embedding(in[0], index, -1);
}

/* index_add's and index_copy's index: one value for each of src's slices along d; index_add's go
 * to (7k + 2) mod (x's size), so repeating: add accumulates; alpha arg[0]. */
static ag_tensor *aux_index_add(ag_tensor *const *in, int n, const ag_op_test *row) {
    (void)n, (void)row;
    ag_tensor *x = in[0], *src = in[1];
    int d = index_dim(x);
    int64_t len = src->ndim ? src->shape[d] : 1;
    return opc_index(1, &len, 7, 2, x->ndim ? x->shape[d] : 1);
}
static ag_tensor *call_index_add(ag_tensor *const *in, int n, ag_tensor *index, const ag_op_test *row) {
    (void)n;
    return ag_index_add(in[0], index_dim(in[0]), index, in[1], row->arg[0]);
}

/* index_copy of src's slices to distinct places (3k + 1) mod (x's size): the cases keep 3 prime to it. */
static ag_tensor *aux_index_copy(ag_tensor *const *in, int n, const ag_op_test *row) {
    (void)n, (void)row;
    ag_tensor *x = in[0], *src = in[1];
    int d = index_dim(x);
    int64_t len = src->ndim ? src->shape[d] : 1;
    return opc_index(1, &len, 3, 1, x->ndim ? x->shape[d] : 1);
}
static ag_tensor *call_index_copy(ag_tensor *const *in, int n, ag_tensor *index, const ag_op_test *row) {
    (void)n, (void)row;
    return ag_index_copy(in[0], index_dim(in[0]), index, in[1]);
}

/* index_fill of two slices (one of them twice) with arg[0]. */
static ag_tensor *aux_index_fill(ag_tensor *const *in, int n, const ag_op_test *row) {
    (void)n, (void)row;
    ag_tensor *x = in[0];
    int64_t len = 3;
    return opc_index(1, &len, 2, 1, x->ndim ? x->shape[index_dim(x)] : 1);
}
static ag_tensor *call_index_fill(ag_tensor *const *in, int n, ag_tensor *index, const ag_op_test *row) {
    (void)n;
    return ag_index_fill(in[0], index_dim(in[0]), index, row->arg[0]);
}

/* The row fields of an op whose index or mask aux makes. */
#define WITH_AUX(aux_fn, call_fn) .call = opc_call_with_aux, .aux = aux_fn, .call_aux = call_fn

const ag_op_test ag_test_index_cases[] = {
    {.name = "index_select", WITH_AUX(aux_index_select, call_index_select), .domain = AG_DOMAIN_ANY,
     .cases = {{1, {AG_DIMS(3, 4)}}, {1, {AG_DIMS(2, 3, 4)}}, {1, {AG_DIMS(5)}}}},
    {.name = "gather", WITH_AUX(aux_gather, call_gather), .domain = AG_DOMAIN_ANY,
     .cases = {{1, {AG_DIMS(3, 4)}}, {1, {AG_DIMS(2, 3, 4)}}, {1, {AG_DIMS(5)}}}},
    {.name = "scatter_add", WITH_AUX(aux_scatter_add, call_scatter_add), .domain = AG_DOMAIN_ANY,
     .cases = {{2, {AG_DIMS(3, 4), AG_DIMS(3, 6)}},
               {2, {AG_DIMS(2, 3, 4), AG_DIMS(2, 5, 3)}},
               {2, {AG_DIMS(5), AG_DIMS(7)}},
               {2, {AG_DIMS(3, 4), AG_DIMS(4, 2)}}}},
    {.name = "where", WITH_AUX(aux_mask, call_where), .domain = AG_DOMAIN_ANY,
     .cases = {{2, {AG_DIMS(3, 4), AG_DIMS(3, 4)}},
               {2, {AG_DIMS(2, 3, 4), AG_DIMS(4)}},
               {2, {AG_DIMS(4), AG_DIMS(3, 1)}},
               {2, {AG_DIMS0, AG_DIMS(3, 4)}}}},
    {.name = "masked_fill", WITH_AUX(aux_mask, call_masked_fill), .domain = AG_DOMAIN_ANY,
     .cases = {{1, {AG_DIMS(3, 4)}}, {1, {AG_DIMS(2, 3, 4)}}, {1, {AG_DIMS(3, 1)}}}, .arg = {-1.5, 0}},
    {.name = "one_hot", WITH_AUX(aux_one_hot, call_one_hot), .domain = AG_DOMAIN_ANY,
     .cases = {{1, {AG_DIMS(3, 4)}}, {1, {AG_DIMS(2, 3, 4)}}, {1, {AG_DIMS0}}}},
    {.name = "embedding", WITH_AUX(aux_embedding, call_embedding), .domain = AG_DOMAIN_ANY,
     .cases = {{1, {AG_DIMS(5, 3)}}, {1, {AG_DIMS(6, 4)}}, {1, {AG_DIMS(3, 1)}}, {1, {AG_DIMS(4, 0)}}}},
    {.name = "index_add", WITH_AUX(aux_index_add, call_index_add), .domain = AG_DOMAIN_ANY, .arg = {1.5, 0},
     .cases = {{2, {AG_DIMS(3, 4), AG_DIMS(3, 5)}},
               {2, {AG_DIMS(2, 3, 4), AG_DIMS(2, 5, 4)}},
               {2, {AG_DIMS(5), AG_DIMS(7)}},
               {2, {AG_DIMS0, AG_DIMS0}}}},
    {.name = "index_copy", WITH_AUX(aux_index_copy, call_index_copy), .domain = AG_DOMAIN_ANY,
     .cases = {{2, {AG_DIMS(3, 5), AG_DIMS(3, 4)}},
               {2, {AG_DIMS(2, 4, 3), AG_DIMS(2, 3, 3)}},
               {2, {AG_DIMS(5), AG_DIMS(3)}},
               {2, {AG_DIMS0, AG_DIMS0}}}},
    {.name = "index_fill", WITH_AUX(aux_index_fill, call_index_fill), .domain = AG_DOMAIN_ANY, .arg = {-2.5, 0},
     .cases = {{1, {AG_DIMS(3, 4)}}, {1, {AG_DIMS(2, 3, 4)}}, {1, {AG_DIMS(5)}}, {1, {AG_DIMS0}}}},
    {.name = NULL},
};

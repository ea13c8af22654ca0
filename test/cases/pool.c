/*
 * pool.c - the test rows of max_pool2d, avg_pool2d and adaptive_avg_pool2d
 * (ops/pool.c).  Pooling options are fixed per row: max pooling with a 3x2 kernel,
 * stride (2, 1), padding 1, dilation (1, 2), ceil mode (overlapping windows, a
 * last window in the padding); average pooling the same without dilation; adaptive
 * pooling to 3x2 (windows that overlap, from inputs smaller and larger), max and average.
 * The adjoints of average pooling take grad_output: avg_pool2d_backward with the
 * options of avg_pool2d's row, for the input [..., 2·OH - 1, OW - 1] (whose last window
 * rows lie in the padding); adaptive_avg_pool2d_backward for an input [..., 7, 5]
 * (to outputs smaller and larger than it).
 * test_conv covers the other options against PyTorch.
 */
#include <stdlib.h>
#include "test/cases/op_cases.h"

static ag_tensor *call_max_pool2d(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    ag_pool_opts o = {.kernel = {3, 2}, .stride = {2, 1}, .padding = {1, 1}, .dilation = {1, 2}, .ceil_mode = true};
    return ag_max_pool2d(in[0], &o, NULL);
}

static ag_tensor *call_avg_pool2d(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    ag_pool_opts o = {.kernel = {3, 2}, .stride = {2, 1}, .padding = {1, 1}, .ceil_mode = true};
    return ag_avg_pool2d(in[0], &o);
}

static ag_tensor *call_adaptive_max_pool2d(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    return ag_adaptive_max_pool2d(in[0], 3, 2, NULL);
}

/* max_unpool2d of x [.., h, w] with kernel 2 (output 2h x 2w) at the positions 3j mod 4hw of each plane:
 * distinct when h·w is not a multiple of 3, as on every shape of the row. */
static ag_tensor *call_max_unpool2d(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    const ag_tensor *x = in[0];
    if (x->ndim < 3) return ag_max_unpool2d(in[0], in[0], NULL, 0, 0);
    const int64_t h = x->shape[x->ndim - 2], w = x->shape[x->ndim - 1], hw = h * w;
    int64_t *v = malloc(sizeof(int64_t) * (size_t)(hw + 1));
    if (!v || ag_scope_begin()) { /* the indices are intermediates: only the result leaves the scope */
        free(v);
        return NULL;
    }
    for (int64_t j = 0; j < hw; j++) v[j] = 3 * j % (4 * hw);
    ag_tensor *idx = ag_contiguous(ag_expand(ag_from_data(v, AG_SHAPE(h, w), AG_I64), ag_shape_of(x)));
    free(v);
    ag_tensor *y = ag_keep(ag_max_unpool2d(in[0], idx, &(ag_pool_opts){.kernel = {2, 2}}, 0, 0));
    ag_scope_end();
    return y;
}

static ag_tensor *call_adaptive_avg_pool2d(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    return ag_adaptive_avg_pool2d(in[0], 3, 2);
}

/* grad_output [..., OH, OW] of avg_pool2d's row for the input [..., 2·OH - 1, OW - 1]. */
static ag_tensor *call_avg_pool2d_backward(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    ag_pool_opts o = {.kernel = {3, 2}, .stride = {2, 1}, .padding = {1, 1}, .ceil_mode = true};
    ag_shape s = ag_shape_of(in[0]);
    s.dim[s.ndim - 2] = 2 * s.dim[s.ndim - 2] - 1, s.dim[s.ndim - 1] -= 1;
    return ag_avg_pool2d_backward(in[0], s, &o);
}

/* grad_output [..., OH, OW] of adaptive pooling for an input [..., arg[0], arg[1]]. */
static ag_tensor *call_adaptive_avg_pool2d_backward(ag_tensor *const *in, int n, void *ctx) {
    const ag_op_test *row = ctx;
    (void)n;
    ag_shape s = ag_shape_of(in[0]);
    s.dim[s.ndim - 2] = (int64_t)row->arg[0], s.dim[s.ndim - 1] = (int64_t)row->arg[1];
    return ag_adaptive_avg_pool2d_backward(in[0], s);
}

const ag_op_test ag_test_pool_cases[] = {
    {.name = "max_pool2d", .call = call_max_pool2d, .domain = AG_DOMAIN_DISTINCT,
     .cases = {{1, {AG_DIMS(2, 3, 6, 5)}}, {1, {AG_DIMS(1, 2, 5, 4)}}, {1, {AG_DIMS(3, 4, 4)}}}},
    {.name = "avg_pool2d", .call = call_avg_pool2d, .domain = AG_DOMAIN_ANY,
     .cases = {{1, {AG_DIMS(2, 3, 6, 5)}}, {1, {AG_DIMS(1, 2, 5, 4)}}, {1, {AG_DIMS(3, 4, 4)}}}},
    {.name = "adaptive_avg_pool2d", .call = call_adaptive_avg_pool2d, .domain = AG_DOMAIN_ANY,
     .cases = {{1, {AG_DIMS(2, 3, 7, 5)}}, {1, {AG_DIMS(1, 2, 2, 1)}}, {1, {AG_DIMS(3, 4, 4)}}}},
    {.name = "adaptive_max_pool2d", .call = call_adaptive_max_pool2d, .domain = AG_DOMAIN_DISTINCT,
     .cases = {{1, {AG_DIMS(2, 3, 7, 5)}}, {1, {AG_DIMS(1, 2, 2, 1)}}, {1, {AG_DIMS(3, 4, 4)}}}},
    {.name = "max_unpool2d", .call = call_max_unpool2d, .domain = AG_DOMAIN_ANY,
     .cases = {{1, {AG_DIMS(2, 3, 2, 2)}}, {1, {AG_DIMS(1, 2, 5, 4)}}, {1, {AG_DIMS(3, 2, 4)}}}},
    {.name = "avg_pool2d_backward", .call = call_avg_pool2d_backward, .domain = AG_DOMAIN_ANY,
     .cases = {{1, {AG_DIMS(2, 3, 4, 5)}}, {1, {AG_DIMS(1, 2, 3, 3)}}, {1, {AG_DIMS(3, 2, 4)}}}},
    {.name = "adaptive_avg_pool2d_backward", .call = call_adaptive_avg_pool2d_backward, .domain = AG_DOMAIN_ANY,
     .cases = {{1, {AG_DIMS(2, 3, 3, 2)}}, {1, {AG_DIMS(1, 2, 4, 3)}}, {1, {AG_DIMS(3, 9, 6)}}}, .arg = {7, 5}},
    {.name = NULL},
};

/*
 * pool.c - the test rows of max_pool2d, avg_pool2d and adaptive_avg_pool2d
 * (ops/pool.c).  Pooling options are fixed per row: max pooling with a 3x2 kernel,
 * stride (2, 1), padding 1, dilation (1, 2), ceil mode (overlapping windows, a
 * last window in the padding); average pooling the same without dilation; adaptive
 * pooling to 3x2 (windows that overlap, from inputs smaller and larger), max and average.
 * test_conv covers the other options against PyTorch.
 */
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

static ag_tensor *call_adaptive_avg_pool2d(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    return ag_adaptive_avg_pool2d(in[0], 3, 2);
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
    {.name = NULL},
};

/*
 * conv.c - the test row of conv2d (ops/conv.c): stride (2, 1), padding (1, 2),
 * dilation (1, 2) on every case, groups read from the shapes (C / w's dim 1):
 * one group with a bias, two groups without, depthwise, unbatched.
 * test_conv covers the other options ("same", "valid", conv1d).
 *
 * conv_transpose2d: stride (2, 1), padding (1, 0), output_padding (1, 1),
 * dilation (1, 2) (a width output_padding above its padding: the reference loops'
 * negative right padding), groups = Cin / w's dim 1 (1, 2, depthwise, unbatched).
 */
#include "test/cases/op_cases.h"

static ag_tensor *call_conv2d(ag_tensor *const *in, int n, void *ctx) {
    (void)ctx;
    const ag_tensor *x = in[0], *w = in[1];
    int64_t groups = x->ndim >= 3 && w->ndim >= 2 && w->shape[1] ? x->shape[x->ndim - 3] / w->shape[1] : 1;
    ag_conv_opts o = {.stride = {2, 1}, .padding = {1, 2}, .dilation = {1, 2}, .groups = groups};
    return ag_conv2d(in[0], in[1], n > 2 ? in[2] : NULL, &o);
}

static ag_tensor *call_conv_transpose2d(ag_tensor *const *in, int n, void *ctx) {
    (void)ctx;
    const ag_tensor *x = in[0], *w = in[1];
    int64_t groups = x->ndim >= 3 && w->ndim >= 2 && w->shape[1] ? x->shape[x->ndim - 3] / w->shape[1] : 1;
    ag_conv_transpose_opts o = {.stride = {2, 1}, .padding = {1, 0}, .output_padding = {1, 1}, .dilation = {1, 2},
                                .groups = groups};
    return ag_conv_transpose2d(in[0], in[1], n > 2 ? in[2] : NULL, &o);
}

const ag_op_test ag_test_conv_cases[] = {
    {.name = "conv2d", .call = call_conv2d, .domain = AG_DOMAIN_ANY,
     .cases = {{3, {AG_DIMS(2, 3, 5, 6), AG_DIMS(4, 3, 3, 2), AG_DIMS(4)}},
               {2, {AG_DIMS(1, 4, 4, 5), AG_DIMS(6, 2, 2, 3)}},
               {3, {AG_DIMS(2, 3, 3, 4), AG_DIMS(3, 1, 3, 3), AG_DIMS(3)}},
               {2, {AG_DIMS(2, 5, 4), AG_DIMS(3, 2, 2, 2)}}}},
    {.name = "conv_transpose2d", .call = call_conv_transpose2d, .domain = AG_DOMAIN_ANY,
     .cases = {{3, {AG_DIMS(2, 3, 3, 4), AG_DIMS(3, 3, 3, 2), AG_DIMS(3)}},
               {2, {AG_DIMS(1, 4, 3, 3), AG_DIMS(4, 2, 2, 3)}},
               {3, {AG_DIMS(2, 3, 3, 4), AG_DIMS(3, 1, 3, 3), AG_DIMS(3)}},
               {2, {AG_DIMS(2, 3, 3), AG_DIMS(2, 2, 2, 2)}}}},
    {.name = NULL},
};

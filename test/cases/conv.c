/*
 * conv.c - the test row of conv2d (ops/conv.c): stride (2, 1), padding (1, 2),
 * dilation (1, 2) on every case, groups read from the shapes (C / w's dim 1):
 * one group with a bias, two groups without, depthwise, unbatched.
 * test_conv covers the other options ("same", "valid", conv1d).
 *
 * conv_transpose2d: stride (2, 1), padding (1, 0), output_padding (1, 1),
 * dilation (1, 2) (a width output_padding above its padding: the reference loops'
 * negative right padding), groups = Cin / w's dim 1 (1, 2, depthwise, unbatched).
 *
 * conv2d_weight: x and grad_output with conv2d's options, a kernel of arg[0] x arg[1],
 * groups = gcd(C, O) (1, 2, depthwise, unbatched).
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

static int64_t gcd(int64_t a, int64_t b) { return b ? gcd(b, a % b) : a; }

static ag_tensor *call_conv2d_weight(ag_tensor *const *in, int n, void *ctx) {
    const ag_op_test *row = ctx;
    (void)n;
    const ag_tensor *x = in[0], *gy = in[1];
    const int64_t C = x->ndim >= 3 ? x->shape[x->ndim - 3] : 1, O = gy->ndim >= 3 ? gy->shape[gy->ndim - 3] : 1;
    const int64_t groups = C && O ? gcd(C, O) : 1;
    ag_conv_opts o = {.stride = {2, 1}, .padding = {1, 2}, .dilation = {1, 2}, .groups = groups};
    return ag_conv2d_weight(in[0], AG_SHAPE(O, C / groups, (int64_t)row->arg[0], (int64_t)row->arg[1]), in[1], &o);
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
    {.name = "conv2d_weight", .call = call_conv2d_weight, .domain = AG_DOMAIN_ANY,
     .cases = {{2, {AG_DIMS(2, 3, 5, 6), AG_DIMS(2, 4, 3, 8)}},
               {2, {AG_DIMS(1, 4, 4, 5), AG_DIMS(1, 6, 2, 7)}},
               {2, {AG_DIMS(2, 3, 3, 4), AG_DIMS(2, 3, 2, 6)}},
               {2, {AG_DIMS(2, 5, 4), AG_DIMS(3, 3, 6)}}},
     .arg = {3, 2}},
    {.name = NULL},
};

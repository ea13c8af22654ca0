/*
 * upsample.c - the test row of interpolate (ops/upsample.c).  The mode is read
 * from the input's first size (1: nearest to size 5 x 7, 2: nearest by 2 x 1.5,
 * 3: bilinear by 1.7 x 0.8, 4: bilinear with align_corners to size 4 x 6,
 * cycling when the benchmarks scale the shapes up); test_conv checks more against
 * PyTorch.  interpolate_backward takes dy, resamples to dy's size in the mode its
 * first size picks (the same four), from an input of a size derived from dy's
 * (larger and smaller ones: a size is valid from any input).
 */
#include "test/cases/op_cases.h"

static ag_tensor *call_interpolate(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    const ag_tensor *x = in[0];
    static const ag_interp_opts opts[4] = {
        {.size = {5, 7}},
        {.scale_factor = {2, 1.5}},
        {.scale_factor = {1.7, 0.8}, .mode = AG_INTERP_BILINEAR},
        {.size = {4, 6}, .mode = AG_INTERP_BILINEAR, .align_corners = true},
    };
    return ag_interpolate(in[0], &opts[x->ndim ? (x->shape[0] + 3) % 4 : 0]);
}

static ag_tensor *call_interpolate_backward(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    const ag_tensor *dy = in[0];
    const int64_t H = dy->shape[2], W = dy->shape[3];
    const int mode = (int)((dy->shape[0] + 3) % 4);
    static const ag_interp_mode modes[4] = {AG_INTERP_NEAREST, AG_INTERP_NEAREST, AG_INTERP_BILINEAR, AG_INTERP_BILINEAR};
    const ag_interp_opts o = {.size = {H, W}, .mode = modes[mode], .align_corners = mode == 3};
    const int64_t from[4][2] = {{(H + 1) / 2, (W + 1) / 2}, {H + 1, W + 2}, {(H + 1) / 2, W + 1}, {H - 1, (W + 1) / 2}};
    return ag_interpolate_backward(in[0], AG_SHAPE(dy->shape[0], dy->shape[1], from[mode][0], from[mode][1]), &o);
}

const ag_op_test ag_test_upsample_cases[] = {
    {.name = "interpolate", .call = call_interpolate, .domain = AG_DOMAIN_ANY,
     .cases = {{1, {AG_DIMS(1, 2, 3, 4)}}, {1, {AG_DIMS(2, 2, 3, 3)}}, {1, {AG_DIMS(3, 2, 4, 5)}},
               {1, {AG_DIMS(4, 1, 3, 4)}}}},
    {.name = "interpolate_backward", .call = call_interpolate_backward, .domain = AG_DOMAIN_ANY,
     .cases = {{1, {AG_DIMS(1, 2, 5, 7)}}, {1, {AG_DIMS(2, 2, 6, 4)}}, {1, {AG_DIMS(3, 2, 6, 4)}},
               {1, {AG_DIMS(4, 1, 4, 6)}}}},
    {.name = NULL},
};

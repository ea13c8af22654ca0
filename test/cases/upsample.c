/*
 * upsample.c - the test row of interpolate (ops/upsample.c).  The mode is read
 * from the input's first size (1: nearest to size 5 x 7, 2: nearest by 2 x 1.5,
 * 3: bilinear by 1.7 x 0.8, 4: bilinear with align_corners to size 4 x 6,
 * cycling when the benchmarks scale the shapes up); test_conv checks more against
 * PyTorch.
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

const ag_op_test ag_test_upsample_cases[] = {
    {.name = "interpolate", .call = call_interpolate, .domain = AG_DOMAIN_ANY,
     .cases = {{1, {AG_DIMS(1, 2, 3, 4)}}, {1, {AG_DIMS(2, 2, 3, 3)}}, {1, {AG_DIMS(3, 2, 4, 5)}},
               {1, {AG_DIMS(4, 1, 3, 4)}}}},
    {.name = NULL},
};

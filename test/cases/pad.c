/*
 * pad.c - the test row of pad (ops/pad.c).  The mode is read from the input's
 * first size (1: constant with a crop, 2: reflect, 3: replicate, 4: circular,
 * cycling when the benchmarks scale the shapes up), each padding the last two or
 * three dims by amounts that fit the row's smallest shapes; test_conv checks
 * every mode against PyTorch.
 */
#include "test/cases/op_cases.h"

static ag_tensor *call_pad(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    static const int64_t pads[4][6] = {{-1, 2, 1, 0, 0, 1}, {2, 1, 1, 2}, {2, 1, 0, 3}, {1, 3, 2, 0}};
    const ag_tensor *x = in[0];
    const int mode = x->ndim ? (int)((x->shape[0] + 3) % 4) : 0;
    return ag_pad(in[0], mode == 0 ? 6 : 4, pads[mode], (ag_pad_mode)mode, 0.5);
}

const ag_op_test ag_test_pad_cases[] = {
    {.name = "pad", .call = call_pad, .domain = AG_DOMAIN_ANY,
     .cases = {{1, {AG_DIMS(1, 2, 3, 4)}}, {1, {AG_DIMS(2, 3, 4, 5)}}, {1, {AG_DIMS(3, 2, 3, 4)}},
               {1, {AG_DIMS(4, 2, 3, 4)}}}},
    {.name = NULL},
};

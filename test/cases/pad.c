/*
 * pad.c - the test rows of pad and pad_backward (ops/pad.c).  The mode is read
 * from the input's first size (1: constant with a crop, 2: reflect, 3: replicate,
 * 4: circular, cycling when the benchmarks scale the shapes up), each padding the
 * last two or three dims by amounts that fit the row's smallest shapes; test_conv
 * checks every mode against PyTorch.  pad_backward takes dy of the padded shapes
 * of pad's cases, the same pads, and the input shape they came from.
 */
#include "test/cases/op_cases.h"

static const int64_t pads[4][6] = {{-1, 2, 1, 0, 0, 1}, {2, 1, 1, 2}, {2, 1, 0, 3}, {1, 3, 2, 0}};

/* The mode of a call on t (from its first size). */
static int mode_of(const ag_tensor *t) { return t->ndim ? (int)((t->shape[0] + 3) % 4) : 0; }

static ag_tensor *call_pad(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    const int mode = mode_of(in[0]);
    return ag_pad(in[0], mode == 0 ? 6 : 4, pads[mode], (ag_pad_mode)mode, 0.5);
}

/* dy's shape with the pads taken off: the input it came from */
static ag_tensor *call_pad_backward(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    const int mode = mode_of(in[0]), npad = mode == 0 ? 6 : 4;
    ag_shape x = ag_shape_of(in[0]);
    for (int k = 0; k < npad / 2; k++) x.dim[x.ndim - 1 - k] -= pads[mode][2 * k] + pads[mode][2 * k + 1];
    return ag_pad_backward(in[0], x, npad, pads[mode], (ag_pad_mode)mode);
}

const ag_op_test ag_test_pad_cases[] = {
    {.name = "pad", .call = call_pad, .domain = AG_DOMAIN_ANY,
     .cases = {{1, {AG_DIMS(1, 2, 3, 4)}}, {1, {AG_DIMS(2, 3, 4, 5)}}, {1, {AG_DIMS(3, 2, 3, 4)}},
               {1, {AG_DIMS(4, 2, 3, 4)}}}},
    {.name = "pad_backward", .call = call_pad_backward, .domain = AG_DOMAIN_ANY,
     .cases = {{1, {AG_DIMS(1, 3, 4, 5)}}, {1, {AG_DIMS(2, 3, 7, 8)}}, {1, {AG_DIMS(3, 2, 6, 7)}},
               {1, {AG_DIMS(4, 2, 5, 8)}}}},
    {.name = NULL},
};

/*
 * matmul.c - the test rows of matmul, linear and linear_relu (ops/matmul.c):
 * matrix products, batched and broadcast, and linear with and without a bias.
 */
#include "test/cases/op_cases.h"

static ag_tensor *call_matmul(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    return ag_matmul(in[0], in[1]);
}

/* With the bias when the case has a third input. */
static ag_tensor *call_linear(ag_tensor *const *in, int n, void *ctx) {
    (void)ctx;
    return ag_linear(in[0], in[1], n > 2 ? in[2] : NULL);
}

/* linear then ReLU as one op (what nn.Sequential runs for Linear, ReLU). */
static ag_tensor *call_linear_relu(ag_tensor *const *in, int n, void *ctx) {
    (void)ctx;
    return ag_linear_relu(in[0], in[1], n > 2 ? in[2] : NULL);
}

const ag_op_test ag_test_matmul_cases[] = {
    {.name = "matmul", .call = call_matmul, .domain = AG_DOMAIN_ANY,
     .cases = {{2, {AG_DIMS(3, 4), AG_DIMS(4, 5)}},
               {2, {AG_DIMS(2, 3, 4), AG_DIMS(4, 2)}},
               {2, {AG_DIMS(2, 1, 3, 4), AG_DIMS(3, 4, 2)}},
               {2, {AG_DIMS(4), AG_DIMS(4)}}}},
    {.name = "linear", .call = call_linear, .domain = AG_DOMAIN_ANY,
     .cases = {{3, {AG_DIMS(5, 4), AG_DIMS(3, 4), AG_DIMS(3)}},
               {3, {AG_DIMS(2, 3, 4), AG_DIMS(2, 4), AG_DIMS(2)}},
               {2, {AG_DIMS(4), AG_DIMS(3, 4)}}}},
    {.name = "linear_relu", .call = call_linear_relu, .domain = AG_DOMAIN_ANY,
     .cases = {{3, {AG_DIMS(5, 4), AG_DIMS(3, 4), AG_DIMS(3)}},
               {3, {AG_DIMS(2, 3, 4), AG_DIMS(2, 4), AG_DIMS(2)}},
               {2, {AG_DIMS(4), AG_DIMS(3, 4)}}}},
    {.name = NULL},
};

/*
 * norm.c - the test rows of batch_norm, layer_norm and group_norm (ops/norm.c): with
 * weight and bias when the case gives them, without otherwise.
 */
#include "test/cases/op_cases.h"

/* Training mode without running statistics. */
static ag_tensor *call_batch_norm(ag_tensor *const *in, int n, void *ctx) {
    (void)ctx;
    return ag_batch_norm(in[0], NULL, NULL, n > 1 ? in[1] : NULL, n > 2 ? in[2] : NULL, true, 0.1, 1e-5);
}

/* relu(batch_norm(...)) as one op, training mode without running statistics. */
static ag_tensor *call_batch_norm_relu(ag_tensor *const *in, int n, void *ctx) {
    (void)ctx;
    return ag_batch_norm_relu(in[0], NULL, NULL, n > 1 ? in[1] : NULL, n > 2 ? in[2] : NULL, true, 0.1, 1e-5);
}

/* ag_batch_norm_relu_dropout(..., p = 0.3), training mode without running statistics; the generator seeded
 * before each call, so that every call (gradcheck's perturbed ones too) draws the same mask. */
static ag_tensor *call_batch_norm_relu_dropout(ag_tensor *const *in, int n, void *ctx) {
    (void)ctx;
    ag_manual_seed(12);
    return ag_batch_norm_relu_dropout(in[0], NULL, NULL, n > 1 ? in[1] : NULL, n > 2 ? in[2] : NULL, true, 0.1, 1e-5,
                                      0.3);
}

/* Normalised over the weight's shape when given, else over the last dim. */
static ag_tensor *call_layer_norm(ag_tensor *const *in, int n, void *ctx) {
    (void)ctx;
    ag_shape ns = n > 1 ? ag_shape_of(in[1]) : AG_SHAPE(in[0]->shape[in[0]->ndim - 1]);
    return ag_layer_norm(in[0], ns, n > 1 ? in[1] : NULL, n > 2 ? in[2] : NULL, 1e-5);
}

/* Groups of arg[0] channels' worth: num_groups = C / arg[0] (C / 1 = instance norm when arg[0] is 1). */
static ag_tensor *call_group_norm(ag_tensor *const *in, int n, void *ctx) {
    const ag_op_test *row = ctx;
    int64_t per = (int64_t)row->arg[0], C = in[0]->shape[1];
    return ag_group_norm(in[0], C % per == 0 && C >= per ? C / per : 1, n > 1 ? in[1] : NULL, n > 2 ? in[2] : NULL, 1e-5);
}

const ag_op_test ag_test_norm_cases[] = {
    {.name = "batch_norm", .call = call_batch_norm, .domain = AG_DOMAIN_ANY,
     .cases = {{3, {AG_DIMS(6, 3), AG_DIMS(3), AG_DIMS(3)}},
               {3, {AG_DIMS(4, 3, 5), AG_DIMS(3), AG_DIMS(3)}},
               {1, {AG_DIMS(5, 4)}},
               {3, {AG_DIMS(2, 3, 2, 2), AG_DIMS(3), AG_DIMS(3)}}}},
    {.name = "batch_norm_relu", .call = call_batch_norm_relu, .domain = AG_DOMAIN_ANY,
     .cases = {{3, {AG_DIMS(2, 3, 2, 2), AG_DIMS(3), AG_DIMS(3)}},
               {3, {AG_DIMS(4, 3, 5), AG_DIMS(3), AG_DIMS(3)}},
               {3, {AG_DIMS(6, 3), AG_DIMS(3), AG_DIMS(3)}},
               {1, {AG_DIMS(3, 2, 4)}}}},
    {.name = "batch_norm_relu_dropout", .call = call_batch_norm_relu_dropout, .domain = AG_DOMAIN_ANY,
     .cases = {{3, {AG_DIMS(8, 3), AG_DIMS(3), AG_DIMS(3)}},
               {3, {AG_DIMS(4, 3, 5), AG_DIMS(3), AG_DIMS(3)}},
               {1, {AG_DIMS(7, 5)}},
               {3, {AG_DIMS(2, 3, 2, 2), AG_DIMS(3), AG_DIMS(3)}}}},
    {.name = "layer_norm", .call = call_layer_norm, .domain = AG_DOMAIN_ANY,
     .cases = {{3, {AG_DIMS(4, 5), AG_DIMS(5), AG_DIMS(5)}},
               {3, {AG_DIMS(2, 3, 4), AG_DIMS(3, 4), AG_DIMS(3, 4)}},
               {1, {AG_DIMS(3, 6)}},
               {3, {AG_DIMS(2, 3, 4), AG_DIMS(4), AG_DIMS(4)}}}},
    {.name = "group_norm", .call = call_group_norm, .domain = AG_DOMAIN_ANY,
     .cases = {{3, {AG_DIMS(2, 4, 3, 2), AG_DIMS(4), AG_DIMS(4)}},
               {3, {AG_DIMS(3, 6, 5), AG_DIMS(6), AG_DIMS(6)}},
               {1, {AG_DIMS(2, 4, 3)}},
               {3, {AG_DIMS(3, 2), AG_DIMS(2), AG_DIMS(2)}}},
     .arg = {2, 0}},
    {.name = NULL},
};

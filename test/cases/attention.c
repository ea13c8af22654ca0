/*
 * attention.c - the test rows of scaled_dot_product_attention and attention_packed (ops/attention.c).
 * The call picks the mask from the case's rank, so that one row covers the three
 * paths: 2-D inputs plain, 3-D inputs causal, 4-D inputs with a bool mask [L, S]
 * broadcast over the batch and head dims (key j kept for query i when j <= i + 1).
 */
#include "test/cases/op_cases.h"
#include "ops/attention.h"

static ag_tensor *call_sdpa(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    const int nd = in[0]->ndim;
    if (nd < 4) return ag_scaled_dot_product_attention(in[0], in[1], in[2], NULL, 0, nd == 3);
    const int64_t L = in[0]->shape[nd - 2], S = in[1]->shape[nd - 2];
    if (ag__composite_begin("scaled_dot_product_attention")) return NULL; /* owns the mask made here */
    ag_tensor *mask = ag_zeros(AG_SHAPE(L, S), AG_BOOL);
    if (!mask) return ag__composite_end(NULL);
    for (int64_t i = 0; i < L; i++)
        for (int64_t j = 0; j < S && j <= i + 1; j++) ((bool *)ag_data(mask))[i * S + j] = true;
    return ag__composite_end(ag_scaled_dot_product_attention(in[0], in[1], in[2], mask, 0, false));
}

/* attention_packed: qkv [d0, d1, 3E] in 2 heads, sequence first where d0 >= d1 (T >= B), else batch first */
static ag_tensor *call_packed(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    return ag__sdpa_packed(in[0], 2, in[0]->shape[0] >= in[0]->shape[1]);
}

const ag_op_test ag_test_attention_cases[] = {
    {.name = "scaled_dot_product_attention", .call = call_sdpa, .domain = AG_DOMAIN_ANY,
     .cases = {{3, {AG_DIMS(3, 4), AG_DIMS(5, 4), AG_DIMS(5, 2)}},
               {3, {AG_DIMS(2, 4, 3), AG_DIMS(2, 4, 3), AG_DIMS(2, 4, 2)}},
               {3, {AG_DIMS(2, 2, 3, 2), AG_DIMS(2, 2, 4, 2), AG_DIMS(2, 2, 4, 3)}},
               {3, {AG_DIMS(0, 4), AG_DIMS(5, 4), AG_DIMS(5, 2)}}}},
    {.name = "attention_packed", .call = call_packed, .domain = AG_DOMAIN_ANY,
     .cases = {{1, {AG_DIMS(3, 2, 12)}}, {1, {AG_DIMS(2, 4, 6)}}, {1, {AG_DIMS(4, 3, 24)}}, {1, {AG_DIMS(0, 2, 12)}}}},
    {.name = NULL},
};

/*
 * loss.c - the test rows of the fused loss primitives (ops/loss.c), called
 * through their internal entry points, as the functional losses in nn/ do
 * after checking their arguments.
 */
#include "test/cases/op_cases.h"
#include "ops/loss.h"

/* Probabilities and targets both drawn from (0, 1). */
static ag_tensor *call_binary_cross_entropy(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    return ag__bce_terms(in[0], in[1], true);
}

/* binary_cross_entropy_with_logits terms of logits in[0] and targets in[1]. */
static ag_tensor *call_bce_logits(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    return ag__bce_logits_terms(in[0], in[1], true);
}

/* ... with pos_weight in[2]. */
static ag_tensor *call_bce_logits_pw(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    return ag__bce_logits_pw_terms(in[0], in[1], in[2], true);
}

/* poisson_nll_loss terms of log-rates in[0] and counts in[1], full = arg[1] (Stirling's term where
 * a count exceeds 1). */
static ag_tensor *call_poisson(ag_tensor *const *in, int n, void *ctx) {
    const ag_op_test *row = ctx;
    (void)n;
    return ag__poisson_terms(in[0], in[1], true, 0, row->arg[1] != 0, true);
}

/* ... of rates in[0] with eps = arg[0], full = arg[1]. */
static ag_tensor *call_poisson_rate(ag_tensor *const *in, int n, void *ctx) {
    const ag_op_test *row = ctx;
    (void)n;
    return ag__poisson_terms(in[0], in[1], false, row->arg[0], row->arg[1] != 0, true);
}

/* kl_div terms of x = in[0] and target probabilities t = in[1] (broadcast in the second case). */
static ag_tensor *call_kl_div(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    return ag__kl_div_terms(in[0], in[1], true);
}

/* kl_div terms with log-probability targets in[1]. */
static ag_tensor *call_kl_div_log(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    return ag__kl_div_log_terms(in[0], in[1], true);
}

/* huber terms of x = in[0], t = in[1] with k = arg[0], c = arg[1] (smooth_l1's scaling at β = k). */
static ag_tensor *call_huber(ag_tensor *const *in, int n, void *ctx) {
    const ag_op_test *row = ctx;
    (void)n;
    return ag__huber_terms(in[0], in[1], row->arg[0], row->arg[1], true);
}

/* Targets n mod C with the second one ignored, weights 0.5 + k/4, label smoothing arg[0], mean. */
static ag_tensor *call_cross_entropy(ag_tensor *const *in, int n, void *ctx) {
    const ag_op_test *row = ctx;
    (void)n;
    ag_tensor *x = in[0];
    const int64_t N = x->shape[0], C = x->shape[1];
    if (ag__composite_begin("cross_entropy")) return NULL; /* owns t and w */
    ag_tensor *t = ag_empty(AG_SHAPE(N), AG_I64), *w = ag_empty(AG_SHAPE(C), x->dtype);
    if (!t || !w) return ag__composite_end(NULL);
    for (int64_t k = 0; k < N; k++) ((int64_t *)ag__ptr(t))[k] = k == 1 ? -100 : k % C;
    for (int64_t k = 0; k < C; k++) ag__write(w, k, 0.5 + (double)k / 4);
    return ag__composite_end(ag__cross_entropy_rows("cross_entropy", x, t, w, AG_REDUCTION_MEAN, -100, row->arg[0]));
}

const ag_op_test ag_test_loss_cases[] = {
    {.name = "binary_cross_entropy", .call = call_binary_cross_entropy, .domain = AG_DOMAIN_PROBABILITY,
     .cases = {{2, {AG_DIMS(3, 4), AG_DIMS(3, 4)}}, {2, {AG_DIMS(2, 3, 2), AG_DIMS(2, 3, 2)}}}},
    {.name = "binary_cross_entropy_with_logits", .call = call_bce_logits, .domain = AG_DOMAIN_ANY,
     .cases = {{2, {AG_DIMS(3, 4), AG_DIMS(3, 4)}}, {2, {AG_DIMS(2, 3, 2), AG_DIMS(3, 1)}}}},
    {.name = "binary_cross_entropy_with_logits_pos_weight", .call = call_bce_logits_pw, .domain = AG_DOMAIN_ANY,
     .cases = {{3, {AG_DIMS(3, 4), AG_DIMS(3, 4), AG_DIMS(4)}}, {3, {AG_DIMS(2, 3, 2), AG_DIMS(3, 1), AG_DIMS(2)}}}},
    {.name = "poisson_nll_loss", .call = call_poisson, .domain = AG_DOMAIN_ANY,
     .cases = {{2, {AG_DIMS(3, 4), AG_DIMS(3, 4)}}, {2, {AG_DIMS(2, 3, 2), AG_DIMS(3, 1)}}}, .arg = {0, 1}},
    {.name = "poisson_nll_loss_rate", .call = call_poisson_rate, .domain = AG_DOMAIN_POSITIVE,
     .cases = {{2, {AG_DIMS(3, 4), AG_DIMS(3, 4)}}, {2, {AG_DIMS(2, 3, 2), AG_DIMS(3, 1)}}}, .arg = {1e-8, 1}},
    {.name = "kl_div", .call = call_kl_div, .domain = AG_DOMAIN_PROBABILITY,
     .cases = {{2, {AG_DIMS(3, 4), AG_DIMS(3, 4)}}, {2, {AG_DIMS(2, 3, 2), AG_DIMS(3, 1)}}}},
    {.name = "kl_div_log_target", .call = call_kl_div_log, .domain = AG_DOMAIN_ANY,
     .cases = {{2, {AG_DIMS(3, 4), AG_DIMS(3, 4)}}, {2, {AG_DIMS(2, 3, 2), AG_DIMS(3, 1)}}}},
    {.name = "huber", .call = call_huber, .domain = AG_DOMAIN_ANY,
     .cases = {{2, {AG_DIMS(3, 4), AG_DIMS(3, 4)}}, {2, {AG_DIMS(2, 3, 2), AG_DIMS(3, 1)}}}, .arg = {0.7, 0.5 / 0.7}},
    {.name = "cross_entropy", .call = call_cross_entropy, .domain = AG_DOMAIN_ANY,
     .cases = {{1, {AG_DIMS(4, 5)}}, {1, {AG_DIMS(1, 3)}}, {1, {AG_DIMS(6, 2)}}}, .arg = {0.1, 0}},
    {.name = NULL},
};

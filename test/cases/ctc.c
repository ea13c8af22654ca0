/*
 * ctc.c - the test row of the CTC loss (ops/ctc.c), called through its internal
 * entry point on log_softmax of the drawn logits: the op's adjoint is PyTorch's,
 * the gradient of the loss along normalised log-probabilities (see ops/ctc.c).
 */
#include "test/cases/op_cases.h"
#include "ops/ctc.h"

/* x [T, N, C] (C >= 3): sample n has input length T - n % 2 and a target of
 * min(1 + n % 3, T' / 2) labels ((n + k²) mod (C - 1)) + 1 (repeats included), padded with 0;
 * blank 0, summed over the batch. */
static ag_tensor *call_ctc_loss(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    ag_tensor *x = in[0];
    const int64_t T = x->shape[0], N = x->shape[1], C = x->shape[2], S = 3;
    if (ag__composite_begin("ctc_loss")) return NULL;
    ag_tensor *tg = ag_zeros(AG_SHAPE(N, S), AG_I64), *il = ag_empty(AG_SHAPE(N), AG_I64);
    ag_tensor *tl = ag_empty(AG_SHAPE(N), AG_I64);
    if (!tg || !il || !tl) return ag__composite_end(NULL);
    for (int64_t k = 0; k < N; k++) {
        const int64_t Tn = T - k % 2 > 0 ? T - k % 2 : 0, Sn = 1 + k % 3 < Tn / 2 ? 1 + k % 3 : Tn / 2;
        ((int64_t *)ag__ptr(il))[k] = Tn;
        ((int64_t *)ag__ptr(tl))[k] = Sn;
        for (int64_t j = 0; j < Sn; j++) ((int64_t *)ag__ptr(tg))[k * S + j] = (k + j * j) % (C - 1) + 1;
    }
    return ag__composite_end(ag_sum(ag__ctc_loss("ctc_loss", ag_log_softmax(x, 2), tg, il, tl, 0, false)));
}

const ag_op_test ag_test_ctc_cases[] = {
    {.name = "ctc_loss", .call = call_ctc_loss, .domain = AG_DOMAIN_ANY,
     .cases = {{1, {AG_DIMS(6, 3, 4)}}, {1, {AG_DIMS(4, 2, 3)}}, {1, {AG_DIMS(7, 4, 5)}}}},
    {.name = NULL},
};

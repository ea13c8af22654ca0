/*
 * loss_ctc.c - F.ctc_loss: the unbatched form turned into a batch of one, the
 * per-sample losses of the op ctc_loss (ops/ctc.c), and PyTorch's reductions
 * (mean divides each loss by its target length, at least 1, before averaging).
 */
#include "nn/loss_internal.h"
#include "ops/ctc.h"
#include "agrad/ops.h"

/* t as [1] when it is 0-d (an unbatched length), else t itself */
static ag_tensor *as_batch(ag_tensor *t) { return t->ndim == 0 ? ag_reshape(t, AG_SHAPE(1)) : t; }

/* l_n = -log p(target_n | log_probs_n); mean: mean_n(l_n / max(S_n, 1)), sum: Σ_n l_n */
ag_tensor *ag_ctc_loss(ag_tensor *log_probs, ag_tensor *targets, ag_tensor *input_lengths, ag_tensor *target_lengths,
                       const ag_loss_opts *o) {
    AG_CHECK_HANDLES(NULL, "ctc_loss", log_probs, targets, input_lengths, target_lengths);
    static const char *const L = "ctc_loss";
    ag_loss_opts buf;
    if (!log_probs || !targets || !input_lengths || !target_lengths || !(o = ag__loss_opts(L, o, &buf, false)))
        return NULL;
    const bool unbatched = log_probs->ndim == 2;
    if (unbatched && (targets->ndim != 1 || input_lengths->ndim > 1 || target_lengths->ndim > 1)) {
        char a[AG_SHAPE_STR], b[AG_SHAPE_STR], c[AG_SHAPE_STR], d[AG_SHAPE_STR];
        return ag__fail_null(AG_ERR_SHAPE, "ctc_loss: unbatched log_probs %s takes targets [S] and one input and target "
                             "length, got targets %s, input_lengths %s, target_lengths %s", ag__tshape(a, log_probs),
                             ag__tshape(b, targets), ag__tshape(c, input_lengths), ag__tshape(d, target_lengths));
    }
    if (ag__composite_begin(L)) return NULL;
    ag_tensor *lp = unbatched ? ag_unsqueeze(log_probs, 1) : log_probs;
    ag_tensor *tg = unbatched ? ag_unsqueeze(targets, 0) : targets;
    ag_tensor *il = as_batch(input_lengths), *tl = as_batch(target_lengths);
    ag_tensor *l = lp && tg && il && tl ? ag__ctc_loss(L, lp, tg, il, tl, o->blank, o->zero_infinity) : NULL;
    if (!l) return ag__composite_end(NULL);
    switch (o->reduction) {
    case AG_REDUCTION_MEAN:
        l = ag_mean(ag_div(l, ag_clamp(ag_to_dtype(tl, log_probs->dtype), 1, INFINITY)));
        break;
    case AG_REDUCTION_SUM: l = ag_sum(l); break;
    default: l = unbatched ? ag_squeeze(l, 0) : l; break;
    }
    return ag__composite_end(l);
}

/*
 * loss_bce.c - binary cross-entropy on probabilities and on logits, and the
 * logistic margin losses soft_margin_loss and multilabel_soft_margin_loss.
 *
 * binary_cross_entropy checks its arguments, then runs the fused elementwise op
 * of ops/loss.c (finite at predictions of exactly 0 and 1) and weights and
 * reduces its terms; so does binary_cross_entropy_with_logits (ops/loss.c's terms with
 * and without pos_weight).  The margin losses are compositions around a stable softplus.
 */
#include "nn/loss_internal.h"
#include "agrad/ops.h"
#include "autograd/tape.h"
#include "core/sum.h" /* AG_VEC_CLONES */

/* Whether all n values of the run v (float32 or float64) lie in [0, 1] (NaN does not): one
 * branch-free pass that vectorises, where the element-by-element walk below costs about ten
 * times the loss itself. */
#define UNIT_RUN(NAME, T)                                                    \
    AG_VEC_CLONES static bool NAME(const T *restrict v, int64_t n) {         \
        int bad = 0;                                                         \
        for (int64_t k = 0; k < n; k++) bad |= !(v[k] >= 0 && v[k] <= 1);    \
        return !bad;                                                         \
    }
UNIT_RUN(unit_run_f32, float)
UNIT_RUN(unit_run_f64, double)

/* Every element of t lies in [0, 1]; AG_ERR_VALUE naming the first that does not. */
static ag_status check_unit(const char *what, const ag_tensor *t) {
    int64_t n = ag_numel(t);
    if (ag_is_contiguous(t) && (t->dtype == AG_F64 ? unit_run_f64((const double *)ag__ptr(t), n)
                                                   : unit_run_f32((const float *)ag__ptr(t), n)))
        return AG_OK;
    for (int64_t k = 0; k < n; k++) {
        double v = ag__loss_at(t, k);
        if (!(v >= 0 && v <= 1))
            return ag__fail(AG_ERR_VALUE,
                            "binary_cross_entropy: all elements of %s should be between 0 and 1, got %g at flat index %lld",
                            what, v, (long long)k);
    }
    return AG_OK;
}

/* Optional weight: float of input's dtype, broadcasting to the input's shape. */
static ag_status check_weight(const char *loss, const char *what, const ag_tensor *w, const ag_tensor *x) {
    if (!w) return AG_OK;
    if (ag__loss_check_float(loss, what, w, x)) return ag_last_status();
    return ag__loss_check_broadcast_to(loss, what, w, "input", x);
}

ag_tensor *ag_binary_cross_entropy(ag_tensor *input, ag_tensor *target, const ag_loss_opts *o) {
    AG_CHECK_HANDLES(NULL, "binary_cross_entropy", input, target);
    static const char *const L = "binary_cross_entropy";
    ag_loss_opts buf;
    if (!input || !target || !(o = ag__loss_opts(L, o, &buf, false))) return NULL;
    if (ag__loss_check_float(L, "input", input, NULL) || ag__loss_check_float(L, "target", target, input) ||
        ag__loss_check_same_shape(L, "target", target, "input", input) || check_weight(L, "weight", o->weight, input) ||
        check_unit("input", input) || check_unit("target", target))
        return NULL;
    if (ag__composite_begin(L)) return NULL;
    ag_tensor *l = ag__bce_terms(input, target, LAYOUT(o));
    if (o->weight) l = ag_mul(l, o->weight);
    return ag__composite_end(ag__loss_reduce(l, o->reduction));
}

/* l = (1 - t) x + (1 + (pw - 1) t) softplus(-x), which is softplus(x) - t x without pos_weight;
 * dx = σ(x) - t resp. (1 - t) - (1 + (pw - 1) t) σ(-x) */
ag_tensor *ag_binary_cross_entropy_with_logits(ag_tensor *input, ag_tensor *target, const ag_loss_opts *o) {
    AG_CHECK_HANDLES(NULL, "binary_cross_entropy_with_logits", input, target);
    static const char *const L = "binary_cross_entropy_with_logits";
    ag_loss_opts buf;
    if (!input || !target || !(o = ag__loss_opts(L, o, &buf, false))) return NULL;
    if (ag__loss_check_float(L, "input", input, NULL) || ag__loss_check_float(L, "target", target, input) ||
        ag__loss_check_same_shape(L, "target", target, "input", input) || check_weight(L, "weight", o->weight, input) ||
        check_weight(L, "pos_weight", o->pos_weight, input))
        return NULL;
    if (ag__composite_begin(L)) return NULL;
    /* ops/loss.c's fused terms */
    ag_tensor *l = o->pos_weight ? ag__bce_logits_pw_terms(input, target, o->pos_weight, LAYOUT(o))
                                 : ag__bce_logits_terms(input, target, LAYOUT(o));
    if (o->weight) l = ag_mul(l, o->weight);
    return ag__composite_end(ag__loss_reduce(l, o->reduction));
}

/* l = log(1 + e^(-y x)) = softplus(-y x);  dx = -y σ(-y x) */
ag_tensor *ag_soft_margin_loss(ag_tensor *input, ag_tensor *target, const ag_loss_opts *o) {
    AG_CHECK_HANDLES(NULL, "soft_margin_loss", input, target);
    static const char *const L = "soft_margin_loss";
    ag_loss_opts buf;
    if (!input || !target || !(o = ag__loss_opts(L, o, &buf, false))) return NULL;
    if (ag__loss_check_float(L, "input", input, NULL) || ag__loss_check_float(L, "target", target, input) ||
        ag__loss_check_broadcast(L, "input", input, "target", target))
        return NULL;
    if (ag__composite_begin(L)) return NULL;
    ag_tensor *l = ag__loss_softplus(ag_neg(ag_mul(target, input)));
    return ag__composite_end(ag__loss_reduce(l, o->reduction));
}

/* l_n = Σ_c w_c (y softplus(-x) + (1 - y) softplus(x))_nc / C  (= -w (y log σ(x) + (1 - y) log σ(-x)));
 * dx = w (σ(x) - y) / C */
ag_tensor *ag_multilabel_soft_margin_loss(ag_tensor *input, ag_tensor *target, const ag_loss_opts *o) {
    AG_CHECK_HANDLES(NULL, "multilabel_soft_margin_loss", input, target);
    static const char *const L = "multilabel_soft_margin_loss";
    ag_loss_opts buf;
    if (!input || !target || !(o = ag__loss_opts(L, o, &buf, false))) return NULL;
    if (ag__loss_check_float(L, "input", input, NULL) || ag__loss_check_float(L, "target", target, input) ||
        ag__loss_check_broadcast(L, "input", input, "target", target) || check_weight(L, "weight", o->weight, input))
        return NULL;
    if (input->ndim == 0)
        return ag__fail_null(AG_ERR_SHAPE, "%s: input must have a class dim, got a 0-d tensor", L);
    if (ag__composite_begin(L)) return NULL;
    ag_tensor *l = ag_add(ag_mul(target, ag__loss_softplus(ag_neg(input))),
                          ag_mul(ag_rsub_scalar(1, target), ag__loss_softplus(input)));
    if (o->weight) l = ag_mul(l, o->weight);
    l = ag_div_scalar(ag_sum_dim(l, -1, false), (double)input->shape[input->ndim - 1]);
    return ag__composite_end(ag__loss_reduce(l, o->reduction));
}

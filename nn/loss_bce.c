/*
 * loss_bce.c - binary cross-entropy on probabilities and on logits, and the
 * logistic margin losses soft_margin_loss and multilabel_soft_margin_loss.
 *
 * binary_cross_entropy is one fused elementwise op: PyTorch clamps each log at
 * -100 and guards its adjoint's denominator with 1e-12, which keeps loss and
 * gradient finite for predictions of exactly 0 and 1; composed from log and
 * clamp, the chain rule would multiply a zero clamp gradient by 1/0.  The
 * logit losses are compositions around a stable softplus.
 */
#include <tgmath.h>
#include "nn/loss_internal.h"

#define BCE_EPS 1e-12
/* max(log v, -100), PyTorch's clamped log */
#define CLOG(v) fmax(log(v), (T)-100)

/* fwd operands: y, x, t */
#define BCE_FWD(NAME, TYPE)                                                             \
    static void NAME(char **p, const int64_t *s, int64_t n, void *ctx) {               \
        typedef TYPE T;                                                                 \
        (void)ctx;                                                                      \
        for (int64_t i = 0; i < n; i++) {                                               \
            const T x = *(const T *)(p[1] + i * s[1]), t = *(const T *)(p[2] + i * s[2]); \
            *(T *)(p[0] + i * s[0]) = -(t * CLOG(x) + (1 - t) * CLOG(1 - x));          \
        }                                                                               \
    }
BCE_FWD(bce_fwd_f32, float)
BCE_FWD(bce_fwd_f64, double)

/* bwd operands: g, x, t, dy; ctx selects the input (0: x, 1: t) */
#define BCE_BWD(NAME, TYPE)                                                             \
    static void NAME(char **p, const int64_t *s, int64_t n, void *ctx) {               \
        typedef TYPE T;                                                                 \
        const int which = *(const int *)ctx;                                            \
        for (int64_t i = 0; i < n; i++) {                                               \
            const T x = *(const T *)(p[1] + i * s[1]), t = *(const T *)(p[2] + i * s[2]); \
            const T dy = *(const T *)(p[3] + i * s[3]);                                 \
            *(T *)(p[0] + i * s[0]) = which == 0 ? dy * (x - t) / fmax((1 - x) * x, (T)BCE_EPS) \
                                                 : dy * (CLOG(1 - x) - CLOG(x));        \
        }                                                                               \
    }
BCE_BWD(bce_bwd_f32, float)
BCE_BWD(bce_bwd_f64, double)

static ag_status bce_backward(ag_tensor *out, ag_tensor *gout) {
    for (int which = 0; which < 2; which++) {
        if (!ag__wants(out, which)) continue;
        ag_tensor *g = ag__new_unowned(out->dtype, out->ndim, out->shape, false);
        if (!g) return AG_ERR_NOMEM;
        ag_iter it;
        ag__iter_init(&it, out->ndim, out->shape);
        ag__iter_add(&it, g);
        ag__iter_add(&it, out->in[0]);
        ag__iter_add(&it, out->in[1]);
        ag__iter_add(&it, gout);
        ag__iter_run(&it, out->dtype == AG_F64 ? bce_bwd_f64 : bce_bwd_f32, &which);
        ag_status st = ag__accumulate(out->in[which], g);
        if (st) return st;
    }
    return AG_OK;
}

static ag_tensor *bce_test_call(ag_tensor *const *in, int n, void *ctx);

/* y = -(t max(log x, -100) + (1 - t) max(log(1 - x), -100));
 * dx = dy (x - t) / max(x (1 - x), 1e-12),  dt = dy (max(log(1 - x), -100) - max(log x, -100)) */
static const ag_op op_bce = {
    "binary_cross_entropy", "BinaryCrossEntropyBackward0", bce_backward, AG_SAVES_IN0 | AG_SAVES_IN1,
    "y = -(t·max(log x, -100) + (1 - t)·max(log(1 - x), -100));  dx = dy·(x - t) / max(x·(1 - x), 1e-12),  "
    "dt = dy·(max(log(1 - x), -100) - max(log x, -100))",
    bce_test_call, AG_DOMAIN_PROBABILITY,
    {{2, {AG_DIMS(3, 4), AG_DIMS(3, 4)}}, {2, {AG_DIMS(2, 3, 2), AG_DIMS(2, 3, 2)}}}, {0, 0}, 0, 0};

/* The unreduced, unweighted loss of x and t of one shape. */
static ag_tensor *bce_elementwise(ag_tensor *x, ag_tensor *t) {
    ag_tensor *y = ag__new(x->dtype, x->ndim, x->shape);
    if (!y) return NULL;
    ag_iter it;
    ag__iter_init(&it, x->ndim, x->shape);
    ag__iter_add(&it, y);
    ag__iter_add(&it, x);
    ag__iter_add(&it, t);
    ag__iter_run(&it, x->dtype == AG_F64 ? bce_fwd_f64 : bce_fwd_f32, NULL);
    ag_tensor *in[2] = {x, t};
    if (ag__needs_grad(in, 2) && !ag__record(y, &op_bce, in, 2)) return NULL;
    return ag__check_finite(y, op_bce.name);
}

static ag_tensor *bce_test_call(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    return bce_elementwise(in[0], in[1]);
}

const ag_op *const ag__loss_ops[] = {&op_bce, &ag__op_cross_entropy, NULL};

/* Every element of t lies in [0, 1]; AG_ERR_VALUE naming the first that does not. */
static ag_status check_unit(const char *what, const ag_tensor *t) {
    int64_t n = ag_numel(t);
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
    ag_tensor *l = bce_elementwise(input, target);
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
    ag_tensor *l;
    if (o->pos_weight) {
        ag_tensor *lw = ag_add_scalar(ag_mul(ag_sub_scalar(o->pos_weight, 1), target), 1);
        l = ag_add(ag_mul(ag_rsub_scalar(1, target), input), ag_mul(lw, ag__loss_softplus(ag_neg(input))));
    } else {
        l = ag_sub(ag__loss_softplus(input), ag_mul(target, input));
    }
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

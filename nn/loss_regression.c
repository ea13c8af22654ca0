/*
 * loss_regression.c - mse_loss, l1_loss, smooth_l1_loss, huber_loss: pointwise
 * functions of d = input - target (broadcast), composed from primitives.
 *
 * The piecewise ones (smooth_l1, huber) run ops/loss.c's fused elementwise op
 * huber on input and target: one node and one pass each way instead of eight.
 */
#include "nn/loss_internal.h"
#include "agrad/ops.h"

/* Checks the pair: float of one dtype, broadcasting together. */
static ag_status check_pair(const char *loss, const ag_tensor *x, const ag_tensor *y) {
    if (ag__loss_check_float(loss, "input", x, NULL) || ag__loss_check_float(loss, "target", y, x) ||
        ag__loss_check_broadcast(loss, "input", x, "target", y))
        return ag_last_status();
    return AG_OK;
}

/* Checks the pair and returns d = input - target, or NULL. */
static ag_tensor *difference(const char *loss, ag_tensor *x, ag_tensor *y) {
    return check_pair(loss, x, y) ? NULL : ag_sub(x, y);
}

/* l = (x - y)^2;  dx = 2 (x - y) dl */
ag_tensor *ag_mse_loss(ag_tensor *input, ag_tensor *target, const ag_loss_opts *o) {
    AG_CHECK_HANDLES(NULL, "mse_loss", input, target);
    ag_loss_opts buf;
    if (!input || !target || !(o = ag__loss_opts("mse_loss", o, &buf, false))) return NULL;
    if (ag__composite_begin("mse_loss")) return NULL;
    ag_tensor *d = difference("mse_loss", input, target);
    return ag__composite_end(ag__loss_reduce(ag_square(d), o->reduction));
}

/* l = |x - y|;  dx = sign(x - y) dl */
ag_tensor *ag_l1_loss(ag_tensor *input, ag_tensor *target, const ag_loss_opts *o) {
    AG_CHECK_HANDLES(NULL, "l1_loss", input, target);
    ag_loss_opts buf;
    if (!input || !target || !(o = ag__loss_opts("l1_loss", o, &buf, false))) return NULL;
    if (ag__composite_begin("l1_loss")) return NULL;
    ag_tensor *d = difference("l1_loss", input, target);
    return ag__composite_end(ag__loss_reduce(ag_abs(d), o->reduction));
}

/* 0.5 d²/β where |d| < β, |d| - 0.5 β beyond [smooth_l1];  0.5 d² where |d| < δ, δ (|d| - 0.5 δ)
 * beyond [huber], d = x - y: both are ops/loss.c's fused huber terms c·m·(2d - m), m = clamp(d, -k, k),
 * with dd = 2c·m, i.e. clamp(d/β, -1, 1) resp. clamp(d, -δ, δ) (the clamp passing the gradient
 * at the boundary, as PyTorch's). */
ag_tensor *ag_smooth_l1_loss(ag_tensor *input, ag_tensor *target, const ag_loss_opts *o) {
    AG_CHECK_HANDLES(NULL, "smooth_l1_loss", input, target);
    ag_loss_opts buf;
    if (!input || !target || !(o = ag__loss_opts("smooth_l1_loss", o, &buf, false))) return NULL;
    if (!(o->beta >= 0))
        return ag__fail_null(AG_ERR_ARG, "smooth_l1_loss: beta must be >= 0, got %g", o->beta);
    if (ag__composite_begin("smooth_l1_loss")) return NULL;
    ag_tensor *l = o->beta == 0 ? ag_abs(difference("smooth_l1_loss", input, target))
                   : check_pair("smooth_l1_loss", input, target) ? NULL
                                                                 : ag__huber_terms(input, target, o->beta, 0.5 / o->beta, LAYOUT(o));
    return ag__composite_end(ag__loss_reduce(l, o->reduction));
}

ag_tensor *ag_huber_loss(ag_tensor *input, ag_tensor *target, const ag_loss_opts *o) {
    AG_CHECK_HANDLES(NULL, "huber_loss", input, target);
    ag_loss_opts buf;
    if (!input || !target || !(o = ag__loss_opts("huber_loss", o, &buf, false))) return NULL;
    if (!(o->delta > 0))
        return ag__fail_null(AG_ERR_ARG, "huber_loss: delta must be > 0, got %g", o->delta);
    if (ag__composite_begin("huber_loss")) return NULL;
    ag_tensor *l = check_pair("huber_loss", input, target) ? NULL : ag__huber_terms(input, target, o->delta, 0.5, LAYOUT(o));
    return ag__composite_end(ag__loss_reduce(l, o->reduction));
}

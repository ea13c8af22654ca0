/*
 * loss_regression.c - mse_loss, l1_loss, smooth_l1_loss, huber_loss: pointwise
 * functions of d = input - target (broadcast), composed from primitives.
 *
 * The piecewise ones avoid a select: with a = |d| and m = min(a, k) (a clamp,
 * whose gradient passes at the boundary as PyTorch's does), the quadratic part
 * is a function of m and the linear part is a - m, so both pieces and their
 * derivatives come out of one expression.
 */
#include "nn/loss_internal.h"
#include "agrad/ops.h"

/* Checks the pair and returns d = input - target, or NULL. */
static ag_tensor *difference(const char *loss, ag_tensor *x, ag_tensor *y) {
    if (ag__loss_check_float(loss, "input", x, NULL) || ag__loss_check_float(loss, "target", y, x) ||
        ag__loss_check_broadcast(loss, "input", x, "target", y))
        return NULL;
    return ag_sub(x, y);
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

/* With a = |d|, m = min(a, k):  0.5 m² / k + (a - m) = 0.5 d²/k (a < k), a - 0.5 k (a >= k)  [smooth_l1]
 *                               0.5 m² + k (a - m)   = 0.5 d² (a < k), k (a - 0.5 k) (a >= k) [huber]
 * dd = sign(d) (m / k + [a < k] - 1) resp. sign(d) (m + k ([a < k] - 1)), i.e. d/k, sign(d) resp. d, k sign(d). */
static ag_tensor *piecewise(ag_tensor *d, double k, bool huber) {
    ag_tensor *a = ag_abs(d);
    ag_tensor *m = ag_clamp(a, -INFINITY, k);
    ag_tensor *quad = ag_mul_scalar(ag_square(m), huber ? 0.5 : 0.5 / k);
    ag_tensor *lin = ag_sub(a, m);
    return ag_add(quad, huber ? ag_mul_scalar(lin, k) : lin);
}

ag_tensor *ag_smooth_l1_loss(ag_tensor *input, ag_tensor *target, const ag_loss_opts *o) {
    AG_CHECK_HANDLES(NULL, "smooth_l1_loss", input, target);
    ag_loss_opts buf;
    if (!input || !target || !(o = ag__loss_opts("smooth_l1_loss", o, &buf, false))) return NULL;
    if (!(o->beta >= 0))
        return ag__fail_null(AG_ERR_ARG, "smooth_l1_loss: beta must be >= 0, got %g", o->beta);
    if (ag__composite_begin("smooth_l1_loss")) return NULL;
    ag_tensor *d = difference("smooth_l1_loss", input, target);
    ag_tensor *l = o->beta == 0 ? ag_abs(d) : piecewise(d, o->beta, false);
    return ag__composite_end(ag__loss_reduce(l, o->reduction));
}

ag_tensor *ag_huber_loss(ag_tensor *input, ag_tensor *target, const ag_loss_opts *o) {
    AG_CHECK_HANDLES(NULL, "huber_loss", input, target);
    ag_loss_opts buf;
    if (!input || !target || !(o = ag__loss_opts("huber_loss", o, &buf, false))) return NULL;
    if (!(o->delta > 0))
        return ag__fail_null(AG_ERR_ARG, "huber_loss: delta must be > 0, got %g", o->delta);
    if (ag__composite_begin("huber_loss")) return NULL;
    ag_tensor *d = difference("huber_loss", input, target);
    return ag__composite_end(ag__loss_reduce(piecewise(d, o->delta, true), o->reduction));
}

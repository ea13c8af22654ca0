/*
 * loss_likelihood.c - kl_div, poisson_nll_loss and gaussian_nll_loss:
 * negative log likelihoods and divergences, composed from primitives.
 *
 * kl_div's terms are ops/loss.c's fused elementwise ops kl_div (y (log y - x),
 * 0 at y = 0, with PyTorch 1.x's gradients there: 0) and kl_div_log_target
 * (e^y (y - x)); poisson_nll_loss's are poisson_nll_loss (e^x - y x) and
 * poisson_nll_loss_rate (x - y log(x + eps)), each with Stirling's term
 * (where y > 1) when full.
 */
#include "nn/loss_internal.h"
#include "agrad/autograd.h"
#include "agrad/ops.h"

#define LOG_2PI 1.8378770664093453 /* log(2π), gaussian_nll_loss's full term */

/* Checks input and a float target of its dtype that broadcast together. */
static ag_status check_pair(const char *loss, const ag_tensor *x, const ag_tensor *y) {
    if (ag__loss_check_float(loss, "input", x, NULL) || ag__loss_check_float(loss, "target", y, x) ||
        ag__loss_check_broadcast(loss, "input", x, "target", y))
        return ag_last_status();
    return AG_OK;
}

/* l = y (log y - x) (0 at y = 0), or e^y (y - x) when log_target;
 * dx = -y resp. -e^y */
ag_tensor *ag_kl_div(ag_tensor *input, ag_tensor *target, const ag_loss_opts *o) {
    AG_CHECK_HANDLES(NULL, "kl_div", input, target);
    static const char *const L = "kl_div";
    ag_loss_opts buf;
    if (!input || !target || !(o = ag__loss_opts(L, o, &buf, true)) || check_pair(L, input, target)) return NULL;
    if (ag__composite_begin(L)) return NULL;
    ag_tensor *l = o->log_target ? ag__kl_div_log_terms(input, target, LAYOUT(o)) : ag__kl_div_terms(input, target, LAYOUT(o));
    if (o->reduction == AG_REDUCTION_BATCHMEAN) /* sum / input.size(0), as PyTorch */
        l = input->ndim ? ag_div_scalar(ag_sum(l), (double)input->shape[0]) : ag_sum(l);
    else
        l = ag__loss_reduce(l, o->reduction);
    return ag__composite_end(l);
}

/* l = e^x - y x (log_input) or x - y log(x + eps); full adds y log y - y + 0.5 log(2π y) where y > 1;
 * dx = e^x - y resp. 1 - y / (x + eps) */
ag_tensor *ag_poisson_nll_loss(ag_tensor *input, ag_tensor *target, const ag_loss_opts *o) {
    AG_CHECK_HANDLES(NULL, "poisson_nll_loss", input, target);
    static const char *const L = "poisson_nll_loss";
    ag_loss_opts buf;
    if (!input || !target || !(o = ag__loss_opts(L, o, &buf, false)) || check_pair(L, input, target)) return NULL;
    double eps = ag__loss_or(o->eps, 1e-8);
    if (ag__composite_begin(L)) return NULL;
    ag_tensor *l = ag__poisson_terms(input, target, o->log_input, eps, o->full, LAYOUT(o)); /* ops/loss.c's fused terms */
    return ag__composite_end(ag__loss_reduce(l, o->reduction));
}

/* var's shape against input's: equal; input's without the last dim (then unsqueezed); or
 * that with a last dim of 1.  Returns var ready to broadcast, or NULL. */
static ag_tensor *shape_var(const ag_tensor *x, ag_tensor *var) {
    bool same = var->ndim == x->ndim, lead = x->ndim >= 1 && var->ndim == x->ndim - 1, lead1 = x->ndim >= 1 &&
                                                                                             var->ndim == x->ndim &&
                                                                                             var->shape[x->ndim - 1] == 1;
    for (int d = 0; d < var->ndim; d++) {
        same = same && var->shape[d] == x->shape[d];
        lead = lead && var->shape[d] == x->shape[d];
        lead1 = lead1 && (d == var->ndim - 1 || var->shape[d] == x->shape[d]);
    }
    if (same || lead1) return var;
    if (lead) return ag_unsqueeze(var, -1);
    char a[AG_SHAPE_STR], b[AG_SHAPE_STR];
    return ag__fail_null(AG_ERR_SHAPE,
                         "gaussian_nll_loss: var is of incorrect size %s for input %s (expected the input's shape, "
                         "or it without its last dim, or with a last dim of 1)",
                         ag__tshape(a, var), ag__tshape(b, x));
}

/* l = 0.5 (log v + (x - y)² / v) (+ 0.5 log 2π), v = var + stop_grad(max(var, eps) - var);
 * dx = (x - y) / v,  dvar = 0.5 (1 / v - (x - y)² / v²) */
ag_tensor *ag_gaussian_nll_loss(ag_tensor *input, ag_tensor *target, ag_tensor *var, const ag_loss_opts *o) {
    AG_CHECK_HANDLES(NULL, "gaussian_nll_loss", input, target, var);
    static const char *const L = "gaussian_nll_loss";
    ag_loss_opts buf;
    if (!input || !target || !var || !(o = ag__loss_opts(L, o, &buf, false)) || check_pair(L, input, target) ||
        ag__loss_check_float(L, "var", var, input))
        return NULL;
    double eps = ag__loss_or(o->eps, 1e-6);
    int64_t n = ag_numel(var);
    for (int64_t k = 0; k < n; k++) {
        double v = ag__loss_at(var, k);
        if (v < 0)
            return ag__fail_null(AG_ERR_VALUE, "gaussian_nll_loss: var has a negative entry %g at flat index %lld", v,
                                 (long long)k);
    }
    if (ag__composite_begin(L)) return NULL;
    ag_tensor *v = shape_var(input, var);
    ag_tensor *l = NULL;
    if (v && !ag__loss_check_broadcast(L, "input", input, "var", v)) {
        /* PyTorch clamps a clone of var in no_grad mode: the value is clamped, the gradient passes. */
        ag_tensor *vd = ag_detach(v);
        v = ag_add(v, ag_sub(ag_clamp(vd, eps, INFINITY), vd));
        l = ag_mul_scalar(ag_add(ag_log(v), ag_div(ag_square(ag_sub(input, target)), v)), 0.5);
        if (o->full) l = ag_add_scalar(l, 0.5 * LOG_2PI);
    }
    return ag__composite_end(ag__loss_reduce(l, o->reduction));
}

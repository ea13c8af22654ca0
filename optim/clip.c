/*
 * clip.c - gradient clipping (torch.nn.utils.clip_grad_norm_ and
 * clip_grad_value_), in place on the .grad of each parameter.
 */
#include <math.h>
#include "optim/internal.h"
#include "agrad/autograd.h"

/* Σ|g|^p over one gradient (p = INFINITY: max |g|), accumulated in double. */
static double grad_power_sum(const ag_tensor *g, double p) {
    int64_t n = ag_numel(g);
    double acc = 0;
    for (int64_t i = 0; i < n; i++) {
        double v = fabs(g->dtype == AG_F32 ? (double)ag__f32(g)[i] : ag__f64(g)[i]);
        if (p == INFINITY) acc = v > acc || isnan(v) ? v : acc;
        else acc += p == 2 ? v * v : p == 1 ? v : pow(v, p);
    }
    return acc;
}

static void grad_scale(ag_tensor *g, double c) {
    int64_t n = ag_numel(g);
    if (g->dtype == AG_F32)
        for (int64_t i = 0; i < n; i++) ag__f32(g)[i] *= (float)c;
    else
        for (int64_t i = 0; i < n; i++) ag__f64(g)[i] *= c;
    ag__bump_version(g);
}

/* ‖g‖_p = (Σ_i Σ|g_i|^p)^(1/p) over all gradients;  g ← g · min(1, max_norm/(‖g‖_p + 10⁻⁶)) */
ag_status ag_clip_grad_norm(ag_tensor *const *params, int n, double max_norm, double norm_type,
                            bool error_if_nonfinite, double *total_norm) {
    if (!params || n < 0) return ag__fail(AG_ERR_ARG, "clip_grad_norm: parameters are NULL");
    AG_CHECK_HANDLE_ARRAY(AG_ERR_ARG, "clip_grad_norm", params, n);
    if (isnan(max_norm)) return ag__fail(AG_ERR_ARG, "clip_grad_norm: max_norm is NaN");
    if (!(norm_type >= 1)) return ag__fail(AG_ERR_ARG, "clip_grad_norm: norm_type must be >= 1 or INFINITY, got %g", norm_type);
    double acc = 0;
    for (int i = 0; i < n; i++) {
        if (!params[i]) return ag_last_status() ? ag_last_status() : ag__fail(AG_ERR_ARG, "clip_grad_norm: parameter %d is NULL", i);
        if (!params[i]->grad) continue;
        double s = grad_power_sum(params[i]->grad, norm_type);
        acc = norm_type == INFINITY ? (s > acc || isnan(s) ? s : acc) : acc + s;
    }
    double norm = norm_type == INFINITY ? acc : norm_type == 1 ? acc : norm_type == 2 ? sqrt(acc) : pow(acc, 1 / norm_type);
    if (total_norm) *total_norm = norm;
    if (error_if_nonfinite && !isfinite(norm))
        return ag__fail(AG_ERR_VALUE, "clip_grad_norm: the total norm of order %g of the gradients of %d parameters is "
                                      "non-finite (%g), so it cannot be clipped; pass error_if_nonfinite = false to "
                                      "clip anyway", norm_type, n, norm);
    double coef = max_norm / (norm + 1e-6);
    if (!(coef >= 1)) /* as torch: a NaN norm makes the gradients NaN */
        for (int i = 0; i < n; i++)
            if (params[i]->grad) grad_scale(params[i]->grad, coef);
    return AG_OK;
}

/* ag_clip_grad_norm over the parameters of one group of opt */
ag_status ag_clip_grad_norm_group(ag_optimizer *opt, int group, double max_norm, double norm_type,
                                  bool error_if_nonfinite, double *total_norm) {
    if (!opt) return ag__fail(AG_ERR_ARG, "clip_grad_norm_group: optimizer is NULL");
    if (group < 0 || group >= opt->ngroups)
        return ag__fail(AG_ERR_INDEX, "clip_grad_norm_group: group %d is out of range for %d groups", group, opt->ngroups);
    ag_tensor **params = ag__alloc_n(opt->nparams + 1, sizeof *params);
    if (!params) return ag_last_status();
    int n = 0;
    for (int i = 0; i < opt->nparams; i++)
        if (opt->ps[i].group == group) params[n++] = opt->ps[i].param;
    ag_status st = ag_clip_grad_norm(params, n, max_norm, norm_type, error_if_nonfinite, total_norm);
    ag__free(params);
    return st;
}

/* g ← clamp(g, −c, c) */
ag_status ag_clip_grad_value(ag_tensor *const *params, int n, double clip_value) {
    if (!params || n < 0) return ag__fail(AG_ERR_ARG, "clip_grad_value: parameters are NULL");
    AG_CHECK_HANDLE_ARRAY(AG_ERR_ARG, "clip_grad_value", params, n);
    if (!(clip_value >= 0)) return ag__fail(AG_ERR_ARG, "clip_grad_value: clip_value must be >= 0, got %g", clip_value);
    for (int i = 0; i < n; i++)
        if (!params[i]) return ag_last_status() ? ag_last_status() : ag__fail(AG_ERR_ARG, "clip_grad_value: parameter %d is NULL", i);
    ag_no_grad_begin();
    for (int i = 0; i < n; i++)
        if (params[i]->grad) ag_clamp_(params[i]->grad, -clip_value, clip_value);
    ag_no_grad_end();
    return AG_OK;
}

/*
 * penalty.c - regularisation terms to add to a loss, built from core ops so
 * that backward differentiates them like any other part of the model.
 */
#include <math.h>
#include "optim/internal.h"
#include "agrad/ops.h"

/* Σ_i Σ f(w_i) over the parameters, or NULL (with the error of the first failure). */
static ag_tensor *sum_of(const char *op, ag_tensor *const *params, int n, ag_tensor *(*f)(ag_tensor *)) {
    if (!params || n < 1) return ag__fail_null(AG_ERR_ARG, "%s: needs at least one parameter", op);
    AG_CHECK_HANDLE_ARRAY(NULL, op, params, n);
    for (int i = 0; i < n; i++) {
        if (!params[i]) return NULL; /* a failed op upstream: pass it on */
        if (params[i]->dtype != params[0]->dtype || (params[i]->dtype != AG_F32 && params[i]->dtype != AG_F64))
            return ag__fail_null(AG_ERR_DTYPE, "%s: parameter %d is %s but parameter 0 is %s (one floating dtype needed)",
                                 op, i, ag_dtype_name(params[i]->dtype), ag_dtype_name(params[0]->dtype));
    }
    ag_tensor *acc = ag_sum(f(params[0]));
    for (int i = 1; i < n; i++) acc = ag_add(acc, ag_sum(f(params[i])));
    return acc;
}

static bool check_lambda(const char *op, double lambda) {
    return ag__optim_check_range(op, "lambda", lambda, 0, INFINITY) == AG_OK;
}

/* λ·Σ|w|;  dw = λ·sign(w) */
ag_tensor *ag_l1_penalty(ag_tensor *const *params, int n, double lambda) {
    if (!check_lambda("l1_penalty", lambda) || ag__composite_begin("l1_penalty")) return NULL;
    return ag__composite_end(ag_mul_scalar(sum_of("l1_penalty", params, n, ag_abs), lambda));
}

/* λ·Σw²;  dw = 2λw */
ag_tensor *ag_l2_penalty(ag_tensor *const *params, int n, double lambda) {
    if (!check_lambda("l2_penalty", lambda) || ag__composite_begin("l2_penalty")) return NULL;
    return ag__composite_end(ag_mul_scalar(sum_of("l2_penalty", params, n, ag_square), lambda));
}

/* λ(ρΣ|w| + (1 − ρ)/2·Σw²);  dw = λ(ρ·sign(w) + (1 − ρ)w) */
ag_tensor *ag_elastic_net_penalty(ag_tensor *const *params, int n, double lambda, double l1_ratio) {
    const char *op = "elastic_net_penalty";
    if (!check_lambda(op, lambda) || ag__optim_check_range(op, "l1_ratio (must be in [0, 1])", l1_ratio, 0, 1) ||
        ag__composite_begin(op))
        return NULL;
    ag_tensor *l1 = ag_mul_scalar(sum_of(op, params, n, ag_abs), lambda * l1_ratio);
    ag_tensor *y = l1 ? ag_add(l1, ag_mul_scalar(sum_of(op, params, n, ag_square), lambda * (1 - l1_ratio) / 2)) : NULL;
    return ag__composite_end(y);
}

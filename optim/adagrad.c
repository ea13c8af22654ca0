/*
 * adagrad.c - torch.optim.Adagrad: per-coordinate learning rates from the
 * running sum of squared gradients (Duchi, Hazan & Singer, 2011).
 */
#include <tgmath.h>
#include "optim/internal.h"
#include "core/sum.h"

ag_adagrad_options ag_adagrad_defaults(void) {
    return (ag_adagrad_options){.kind = AG_OPTIM_ADAGRAD, .lr = 1e-2, .eps = 1e-10};
}

static ag_status adagrad_check(const void *vo) {
    const ag_adagrad_options *o = vo;
    if (ag__optim_check_range("Adagrad", "learning rate", o->lr, 0, INFINITY) ||
        ag__optim_check_range("Adagrad", "lr_decay value", o->lr_decay, 0, INFINITY) ||
        ag__optim_check_range("Adagrad", "weight_decay value", o->weight_decay, 0, INFINITY) ||
        ag__optim_check_range("Adagrad", "initial_accumulator_value value", o->initial_accumulator_value, 0, INFINITY) ||
        ag__optim_check_range("Adagrad", "epsilon value", o->eps, 0, INFINITY))
        return AG_ERR_ARG;
    return AG_OK;
}

static ag_status adagrad_prepare(ag_optimizer *opt, ag__pstate *ps, const void *vo) {
    (void)opt;
    return ag__optim_buf(ps, 0, ((const ag_adagrad_options *)vo)->initial_accumulator_value);
}

/* g ← ±∇ + λθ;  s ← s + g²;  θ ← θ − γ/(1 + (t − 1)η) · g / (√s + ε) */
#define ADAGRAD_KERNEL(NAME, T)                                                                       \
    AG_VEC_CLONES static void NAME(T *restrict p, const T *restrict g, T *restrict s, int64_t n, double clr,        \
                     const ag_adagrad_options *o) {                                                   \
        const T step = (T)-clr, wd = (T)o->weight_decay, eps = (T)o->eps, sgn = o->maximize ? -1 : 1; \
        for (int64_t i = 0; i < n; i++) {                                                             \
            T gi = sgn * g[i];                                                                        \
            if (wd != 0) gi += wd * p[i];                                                             \
            s[i] += gi * gi;                                                                          \
            p[i] += step * (gi / (sqrt(s[i]) + eps));                                                 \
        }                                                                                             \
    }
ADAGRAD_KERNEL(adagrad_f32, float)
ADAGRAD_KERNEL(adagrad_f64, double)

/* The decayed step size γ/(1 + (t − 1)η). */
static void adagrad_coef(const void *vo, ag__pstate *ps, void *clr) {
    const ag_adagrad_options *o = vo;
    *(double *)clr = o->lr / (1 + (double)(ps->step - 1) * o->lr_decay);
}

static void adagrad_update(const void *vo, const ag__pstate *ps, const ag_tensor *g, const void *clr, int64_t lo,
                           int64_t hi) {
    const ag_tensor *p = ps->param;
    double c = *(const double *)clr;
    if (p->dtype == AG_F32)
        adagrad_f32(ag__f32(p) + lo, ag__f32(g) + lo, ag__f32(ps->buf[0]) + lo, hi - lo, c, vo);
    else
        adagrad_f64(ag__f64(p) + lo, ag__f64(g) + lo, ag__f64(ps->buf[0]) + lo, hi - lo, c, vo);
}

static const ag__optim_field adagrad_fields[] = {
    AG__FD(ag_adagrad_options, lr), AG__FD(ag_adagrad_options, lr_decay),
    AG__FD(ag_adagrad_options, weight_decay), AG__FD(ag_adagrad_options, initial_accumulator_value),
    AG__FD(ag_adagrad_options, eps), AG__FB(ag_adagrad_options, maximize), {NULL, 0, 0}};

const ag__optim_algo ag__adagrad_algo = {
    .kind = AG_OPTIM_ADAGRAD, .name = "Adagrad", .c_name = "adagrad", .opts_size = sizeof(ag_adagrad_options),
    .fields = adagrad_fields, .buf_names = {"sum"},
    .check = adagrad_check, .prepare = adagrad_prepare, .coef = adagrad_coef, .update = adagrad_update,
};

ag_optimizer *ag_adagrad_new(ag_tensor *const *params, int n, const ag_adagrad_options *o) {
    ag_adagrad_options d = ag_adagrad_defaults();
    return ag__optim_new(&ag__adagrad_algo, params, n, o ? (const void *)o : &d);
}

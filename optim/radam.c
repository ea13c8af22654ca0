/*
 * radam.c - torch.optim.RAdam: Adam whose adaptive step is switched on only
 * once the variance of the adaptive learning rate is tractable, and then
 * rectified (Liu et al., "On the Variance of the Adaptive Learning Rate and
 * Beyond", 2020).
 */
#include <tgmath.h>
#include "optim/internal.h"
#include "core/sum.h"

ag_radam_options ag_radam_defaults(void) {
    return (ag_radam_options){.kind = AG_OPTIM_RADAM, .lr = 1e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8};
}

static ag_status radam_check(const void *vo) {
    const ag_radam_options *o = vo;
    if (ag__optim_check_range("RAdam", "learning rate", o->lr, 0, INFINITY) ||
        ag__optim_check_range("RAdam", "epsilon value", o->eps, 0, INFINITY) ||
        ag__optim_check_range("RAdam", "beta parameter at index 0", o->beta1, 0, nextafter(1.0, 0)) ||
        ag__optim_check_range("RAdam", "beta parameter at index 1", o->beta2, 0, nextafter(1.0, 0)) ||
        ag__optim_check_range("RAdam", "weight_decay value", o->weight_decay, 0, INFINITY))
        return AG_ERR_ARG;
    return AG_OK;
}

static ag_status radam_prepare(ag_optimizer *opt, ag__pstate *ps, const void *vo) {
    (void)opt;
    (void)vo;
    ag_status st = ag__optim_buf(ps, 0, 0);
    return st ? st : ag__optim_buf(ps, 1, 0);
}

typedef struct radam_coef {
    ag__adam_moments mo;
    double lr, bc1, bc2_sqrt, rect;
} radam_coef;
AG__COEF_FITS(radam_coef);

/* g ← ±∇ + λθ (or θ ← θ(1 − γλ) decoupled);  m ← β₁m + (1 − β₁)g;  v ← β₂v + (1 − β₂)g²;
 * m̂ ← m/(1 − β₁ᵗ);  ρ_t = ρ∞ − 2tβ₂ᵗ/(1 − β₂ᵗ);  ρ_t > 5: θ ← θ − γ·m̂·r_t·√(1 − β₂ᵗ)/(√v + ε), else θ ← θ − γm̂ */
#define RADAM_KERNEL(NAME, T)                                                                              \
    AG_VEC_CLONES static void NAME(T *restrict p, const T *restrict g, T *restrict m, T *restrict v, int64_t n,          \
                     const radam_coef *c) {                                                                \
        AG__ADAM_CONSTS(T, &c->mo);                                                                        \
        const T lr = (T)c->lr, bc1 = (T)c->bc1, bc2 = (T)c->bc2_sqrt, rect = (T)c->rect;                   \
        for (int64_t i = 0; i < n; i++) {                                                                  \
            AG__ADAM_MOMENTS(T, gi, p, g, m, v, i);                                                        \
            T mhat = m[i] / bc1;                                                                           \
            if (rect > 0)                                                                                  \
                p[i] -= mhat * lr * (bc2 / (sqrt(v[i]) + eps)) * rect;                                     \
            else                                                                                           \
                p[i] -= mhat * lr;                                                                         \
        }                                                                                                  \
    }
RADAM_KERNEL(radam_f32, float)
RADAM_KERNEL(radam_f64, double)

static void radam_coef_of(const void *vo, ag__pstate *ps, void *out) {
    const ag_radam_options *o = vo;
    double t = (double)ps->step, bc2 = 1 - pow(o->beta2, t);
    double rho_inf = 2 / (1 - o->beta2) - 1;
    double rho_t = rho_inf - 2 * t * pow(o->beta2, t) / bc2;
    double rect = rho_t > 5 ? sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)) : 0;
    *(radam_coef *)out = (radam_coef){
        .mo = ag__adam_moments_of(o->beta1, o->beta2, o->eps, o->lr, o->weight_decay, o->decoupled_weight_decay,
                                  o->maximize),
        .lr = o->lr, .bc1 = 1 - pow(o->beta1, t), .bc2_sqrt = sqrt(bc2), .rect = rect,
    };
}

static void radam_update(const void *vo, const ag__pstate *ps, const ag_tensor *g, const void *coef, int64_t lo,
                         int64_t hi) {
    (void)vo;
    const ag_tensor *p = ps->param;
    if (p->dtype == AG_F32)
        radam_f32(ag__f32(p) + lo, ag__f32(g) + lo, ag__f32(ps->buf[0]) + lo, ag__f32(ps->buf[1]) + lo, hi - lo, coef);
    else
        radam_f64(ag__f64(p) + lo, ag__f64(g) + lo, ag__f64(ps->buf[0]) + lo, ag__f64(ps->buf[1]) + lo, hi - lo, coef);
}

static const ag__optim_field radam_fields[] = {
    AG__FD(ag_radam_options, lr), AG__FD(ag_radam_options, beta1), AG__FD(ag_radam_options, beta2),
    AG__FD(ag_radam_options, eps), AG__FD(ag_radam_options, weight_decay),
    AG__FB(ag_radam_options, decoupled_weight_decay), AG__FB(ag_radam_options, maximize), {NULL, 0, 0}};

const ag__optim_algo ag__radam_algo = {
    .kind = AG_OPTIM_RADAM, .name = "RAdam", .c_name = "radam", .opts_size = sizeof(ag_radam_options),
    .fields = radam_fields, .buf_names = {"exp_avg", "exp_avg_sq"},
    .check = radam_check, .prepare = radam_prepare, .coef = radam_coef_of, .update = radam_update,
};

ag_optimizer *ag_radam_new(ag_tensor *const *params, int n, const ag_radam_options *o) {
    ag_radam_options d = ag_radam_defaults();
    return ag__optim_new(&ag__radam_algo, params, n, o ? (const void *)o : &d);
}

/*
 * nadam.c - torch.optim.NAdam: Adam with Nesterov momentum and Dozat's
 * momentum schedule μ_t = β₁(1 − ½·0.96^(tψ)) (Dozat, 2016).  The product of
 * the μ's is per-parameter state ("mu_product").
 */
#include <tgmath.h>
#include "optim/internal.h"
#include "core/sum.h"

ag_nadam_options ag_nadam_defaults(void) {
    return (ag_nadam_options){.kind = AG_OPTIM_NADAM, .lr = 2e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8,
                              .momentum_decay = 4e-3};
}

static ag_status nadam_check(const void *vo) {
    const ag_nadam_options *o = vo;
    if (ag__optim_check_range("NAdam", "learning rate", o->lr, 0, INFINITY) ||
        ag__optim_check_range("NAdam", "epsilon value", o->eps, 0, INFINITY) ||
        ag__optim_check_range("NAdam", "beta parameter at index 0", o->beta1, 0, nextafter(1.0, 0)) ||
        ag__optim_check_range("NAdam", "beta parameter at index 1", o->beta2, 0, nextafter(1.0, 0)) ||
        ag__optim_check_range("NAdam", "weight_decay value", o->weight_decay, 0, INFINITY) ||
        ag__optim_check_range("NAdam", "momentum_decay value", o->momentum_decay, 0, INFINITY))
        return AG_ERR_ARG;
    return AG_OK;
}

static ag_status nadam_prepare(ag_optimizer *opt, ag__pstate *ps, const void *vo) {
    (void)opt;
    (void)vo;
    if (!ps->buf[0]) ps->scalar[0] = 1; /* mu_product */
    ag_status st = ag__optim_buf(ps, 0, 0);
    return st ? st : ag__optim_buf(ps, 1, 0);
}

typedef struct nadam_coef {
    ag__adam_moments mo;
    double bc2, cg, cm;
} nadam_coef;
AG__COEF_FITS(nadam_coef);

/* g ← ±∇ + λθ (or θ ← θ(1 − γλ) decoupled);  m ← β₁m + (1 − β₁)g;  v ← β₂v + (1 − β₂)g²;
 * d ← √(v/(1 − β₂ᵗ)) + ε;  θ ← θ − γ(1 − μ_t)/(1 − Πμ_{≤t}) · g/d − γμ_{t+1}/(1 − Πμ_{≤t+1}) · m/d */
#define NADAM_KERNEL(NAME, T)                                                                              \
    AG_VEC_CLONES static void NAME(T *restrict p, const T *restrict g, T *restrict m, T *restrict v, int64_t n,          \
                     const nadam_coef *c) {                                                                \
        AG__ADAM_CONSTS(T, &c->mo);                                                                        \
        const T bc2 = (T)c->bc2, cg = (T)-c->cg, cm = (T)-c->cm;                                           \
        for (int64_t i = 0; i < n; i++) {                                                                  \
            AG__ADAM_MOMENTS(T, gi, p, g, m, v, i);                                                        \
            T d = sqrt(v[i] / bc2) + eps;                                                                  \
            p[i] += cg * (gi / d);                                                                         \
            p[i] += cm * (m[i] / d);                                                                       \
        }                                                                                                  \
    }
NADAM_KERNEL(nadam_f32, float)
NADAM_KERNEL(nadam_f64, double)

/* Also advances mu_product: Πμ_{≤t} = Πμ_{≤t−1}·μ_t. */
static void nadam_coef_of(const void *vo, ag__pstate *ps, void *out) {
    const ag_nadam_options *o = vo;
    double t = (double)ps->step;
    double mu = o->beta1 * (1 - 0.5 * pow(0.96, t * o->momentum_decay));
    double mu_next = o->beta1 * (1 - 0.5 * pow(0.96, (t + 1) * o->momentum_decay));
    double prod = ps->scalar[0] *= mu;
    double prod_next = prod * mu_next;
    *(nadam_coef *)out = (nadam_coef){
        .mo = ag__adam_moments_of(o->beta1, o->beta2, o->eps, o->lr, o->weight_decay, o->decoupled_weight_decay,
                                  o->maximize),
        .bc2 = 1 - pow(o->beta2, t), .cg = o->lr * (1 - mu) / (1 - prod), .cm = o->lr * mu_next / (1 - prod_next),
    };
}

static void nadam_update(const void *vo, const ag__pstate *ps, const ag_tensor *g, const void *coef, int64_t lo,
                         int64_t hi) {
    (void)vo;
    const ag_tensor *p = ps->param;
    if (p->dtype == AG_F32)
        nadam_f32(ag__f32(p) + lo, ag__f32(g) + lo, ag__f32(ps->buf[0]) + lo, ag__f32(ps->buf[1]) + lo, hi - lo, coef);
    else
        nadam_f64(ag__f64(p) + lo, ag__f64(g) + lo, ag__f64(ps->buf[0]) + lo, ag__f64(ps->buf[1]) + lo, hi - lo, coef);
}

static const ag__optim_field nadam_fields[] = {
    AG__FD(ag_nadam_options, lr), AG__FD(ag_nadam_options, beta1), AG__FD(ag_nadam_options, beta2),
    AG__FD(ag_nadam_options, eps), AG__FD(ag_nadam_options, weight_decay), AG__FD(ag_nadam_options, momentum_decay),
    AG__FB(ag_nadam_options, decoupled_weight_decay), AG__FB(ag_nadam_options, maximize), {NULL, 0, 0}};

const ag__optim_algo ag__nadam_algo = {
    .kind = AG_OPTIM_NADAM, .name = "NAdam", .c_name = "nadam", .opts_size = sizeof(ag_nadam_options),
    .fields = nadam_fields, .buf_names = {"exp_avg", "exp_avg_sq"}, .scalar_names = {"mu_product"},
    .check = nadam_check, .prepare = nadam_prepare, .coef = nadam_coef_of, .update = nadam_update,
};

ag_optimizer *ag_nadam_new(ag_tensor *const *params, int n, const ag_nadam_options *o) {
    ag_nadam_options d = ag_nadam_defaults();
    return ag__optim_new(&ag__nadam_algo, params, n, o ? (const void *)o : &d);
}

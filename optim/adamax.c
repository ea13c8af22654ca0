/*
 * adamax.c - torch.optim.Adamax: Adam with the infinity norm in place of the
 * second moment (Kingma & Ba, 2015, section 7.1).
 */
#include <tgmath.h>
#include "optim/internal.h"
#include "core/sum.h"

ag_adamax_options ag_adamax_defaults(void) {
    return (ag_adamax_options){.kind = AG_OPTIM_ADAMAX, .lr = 2e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8};
}

static ag_status adamax_check(const void *vo) {
    const ag_adamax_options *o = vo;
    if (ag__optim_check_range("Adamax", "learning rate", o->lr, 0, INFINITY) ||
        ag__optim_check_range("Adamax", "epsilon value", o->eps, 0, INFINITY) ||
        ag__optim_check_range("Adamax", "beta parameter at index 0", o->beta1, 0, nextafter(1.0, 0)) ||
        ag__optim_check_range("Adamax", "beta parameter at index 1", o->beta2, 0, nextafter(1.0, 0)) ||
        ag__optim_check_range("Adamax", "weight_decay value", o->weight_decay, 0, INFINITY))
        return AG_ERR_ARG;
    return AG_OK;
}

static ag_status adamax_prepare(ag_optimizer *opt, ag__pstate *ps, const void *vo) {
    (void)opt;
    (void)vo;
    ag_status st = ag__optim_buf(ps, 0, 0);
    return st ? st : ag__optim_buf(ps, 1, 0);
}

/* g ← ±∇ + λθ;  m ← β₁m + (1 − β₁)g;  u ← max(β₂u, |g| + ε);  θ ← θ − γ/(1 − β₁ᵗ) · m/u */
#define ADAMAX_KERNEL(NAME, T)                                                                    \
    AG_VEC_CLONES static void NAME(T *restrict p, const T *restrict g, T *restrict m, T *restrict u, int64_t n, \
                     double clr, const ag_adamax_options *o) {                                    \
        const T b1 = (T)o->beta1, omb1 = (T)(1 - o->beta1), b2 = (T)o->beta2, eps = (T)o->eps;    \
        const T wd = (T)o->weight_decay, step = (T)-clr, sgn = o->maximize ? -1 : 1;              \
        for (int64_t i = 0; i < n; i++) {                                                         \
            T gi = sgn * g[i];                                                                    \
            if (wd != 0) gi += wd * p[i];                                                         \
            m[i] = m[i] * b1 + omb1 * gi;                                                         \
            T a = u[i] * b2, c = fabs(gi) + eps;                                                  \
            u[i] = a > c ? a : c;                                                                 \
            p[i] += step * (m[i] / u[i]);                                                         \
        }                                                                                         \
    }
ADAMAX_KERNEL(adamax_f32, float)
ADAMAX_KERNEL(adamax_f64, double)

/* The bias-corrected step size γ/(1 − β₁ᵗ). */
static void adamax_coef(const void *vo, ag__pstate *ps, void *clr) {
    const ag_adamax_options *o = vo;
    *(double *)clr = o->lr / (1 - pow(o->beta1, (double)ps->step));
}

static void adamax_update(const void *vo, const ag__pstate *ps, const ag_tensor *g, const void *clr, int64_t lo,
                          int64_t hi) {
    const ag_tensor *p = ps->param;
    double c = *(const double *)clr;
    if (p->dtype == AG_F32)
        adamax_f32(ag__f32(p) + lo, ag__f32(g) + lo, ag__f32(ps->buf[0]) + lo, ag__f32(ps->buf[1]) + lo, hi - lo, c, vo);
    else
        adamax_f64(ag__f64(p) + lo, ag__f64(g) + lo, ag__f64(ps->buf[0]) + lo, ag__f64(ps->buf[1]) + lo, hi - lo, c, vo);
}

static const ag__optim_field adamax_fields[] = {
    AG__FD(ag_adamax_options, lr), AG__FD(ag_adamax_options, beta1), AG__FD(ag_adamax_options, beta2),
    AG__FD(ag_adamax_options, eps), AG__FD(ag_adamax_options, weight_decay), AG__FB(ag_adamax_options, maximize),
    {NULL, 0, 0}};

const ag__optim_algo ag__adamax_algo = {
    .kind = AG_OPTIM_ADAMAX, .name = "Adamax", .c_name = "adamax", .opts_size = sizeof(ag_adamax_options),
    .fields = adamax_fields, .buf_names = {"exp_avg", "exp_inf"},
    .check = adamax_check, .prepare = adamax_prepare, .coef = adamax_coef, .update = adamax_update,
};

ag_optimizer *ag_adamax_new(ag_tensor *const *params, int n, const ag_adamax_options *o) {
    ag_adamax_options d = ag_adamax_defaults();
    return ag__optim_new(&ag__adamax_algo, params, n, o ? (const void *)o : &d);
}

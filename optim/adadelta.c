/*
 * adadelta.c - torch.optim.Adadelta: steps whose units match the parameters,
 * from running averages of squared gradients and squared updates (Zeiler,
 * 2012).
 */
#include <tgmath.h>
#include "optim/internal.h"
#include "core/sum.h"

ag_adadelta_options ag_adadelta_defaults(void) {
    return (ag_adadelta_options){.kind = AG_OPTIM_ADADELTA, .lr = 1.0, .rho = 0.9, .eps = 1e-6};
}

static ag_status adadelta_check(const void *vo) {
    const ag_adadelta_options *o = vo;
    if (ag__optim_check_range("Adadelta", "learning rate", o->lr, 0, INFINITY) ||
        ag__optim_check_range("Adadelta", "rho value", o->rho, 0, 1) ||
        ag__optim_check_range("Adadelta", "epsilon value", o->eps, 0, INFINITY) ||
        ag__optim_check_range("Adadelta", "weight_decay value", o->weight_decay, 0, INFINITY))
        return AG_ERR_ARG;
    return AG_OK;
}

static ag_status adadelta_prepare(ag_optimizer *opt, ag__pstate *ps, const void *vo) {
    (void)opt;
    (void)vo;
    ag_status st = ag__optim_buf(ps, 0, 0);
    return st ? st : ag__optim_buf(ps, 1, 0);
}

/* g ← ±∇ + λθ;  v ← ρv + (1 − ρ)g²;  Δ ← √(u + ε)/√(v + ε) · g;  u ← ρu + (1 − ρ)Δ²;  θ ← θ − γΔ */
#define ADADELTA_KERNEL(NAME, T)                                                                  \
    AG_VEC_CLONES static void NAME(T *restrict p, const T *restrict g, T *restrict v, T *restrict u, int64_t n, \
                     const ag_adadelta_options *o) {                                              \
        const T lr = (T)o->lr, rho = (T)o->rho, omr = (T)(1 - o->rho), eps = (T)o->eps;           \
        const T wd = (T)o->weight_decay, sgn = o->maximize ? -1 : 1;                              \
        for (int64_t i = 0; i < n; i++) {                                                         \
            T gi = sgn * g[i];                                                                    \
            if (wd != 0) gi += wd * p[i];                                                         \
            v[i] = v[i] * rho + omr * gi * gi;                                                    \
            T delta = sqrt(u[i] + eps) / sqrt(v[i] + eps) * gi;                                   \
            u[i] = u[i] * rho + omr * delta * delta;                                              \
            p[i] -= lr * delta;                                                                   \
        }                                                                                         \
    }
ADADELTA_KERNEL(adadelta_f32, float)
ADADELTA_KERNEL(adadelta_f64, double)

static void adadelta_update(const void *vo, const ag__pstate *ps, const ag_tensor *g, const void *coef, int64_t lo,
                            int64_t hi) {
    (void)coef;
    const ag_tensor *p = ps->param;
    if (p->dtype == AG_F32)
        adadelta_f32(ag__f32(p) + lo, ag__f32(g) + lo, ag__f32(ps->buf[0]) + lo, ag__f32(ps->buf[1]) + lo, hi - lo, vo);
    else
        adadelta_f64(ag__f64(p) + lo, ag__f64(g) + lo, ag__f64(ps->buf[0]) + lo, ag__f64(ps->buf[1]) + lo, hi - lo, vo);
}

static const ag__optim_field adadelta_fields[] = {
    AG__FD(ag_adadelta_options, lr), AG__FD(ag_adadelta_options, rho), AG__FD(ag_adadelta_options, eps),
    AG__FD(ag_adadelta_options, weight_decay), AG__FB(ag_adadelta_options, maximize), {NULL, 0, 0}};

const ag__optim_algo ag__adadelta_algo = {
    .kind = AG_OPTIM_ADADELTA, .name = "Adadelta", .c_name = "adadelta", .opts_size = sizeof(ag_adadelta_options),
    .fields = adadelta_fields, .buf_names = {"square_avg", "acc_delta"},
    .check = adadelta_check, .prepare = adadelta_prepare, .update = adadelta_update,
};

ag_optimizer *ag_adadelta_new(ag_tensor *const *params, int n, const ag_adadelta_options *o) {
    ag_adadelta_options d = ag_adadelta_defaults();
    return ag__optim_new(&ag__adadelta_algo, params, n, o ? (const void *)o : &d);
}

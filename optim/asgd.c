/*
 * asgd.c - torch.optim.ASGD: averaged stochastic gradient descent (Polyak &
 * Juditsky, 1992) with the step size schedule of Bottou's sgd code.  The
 * parameters follow plain decayed SGD; their running average from step t0 on
 * is the state "ax", the estimate to use at the end.
 */
#include <math.h>
#include "optim/internal.h"
#include "core/sum.h"

ag_asgd_options ag_asgd_defaults(void) {
    return (ag_asgd_options){.kind = AG_OPTIM_ASGD, .lr = 1e-2, .lambd = 1e-4, .alpha = 0.75, .t0 = 1e6};
}

static ag_status asgd_check(const void *vo) {
    const ag_asgd_options *o = vo;
    if (ag__optim_check_range("ASGD", "learning rate", o->lr, 0, INFINITY) ||
        ag__optim_check_range("ASGD", "lambd value", o->lambd, 0, INFINITY) ||
        ag__optim_check_range("ASGD", "alpha value", o->alpha, 0, INFINITY) ||
        ag__optim_check_range("ASGD", "t0 value", o->t0, 0, INFINITY) ||
        ag__optim_check_range("ASGD", "weight_decay value", o->weight_decay, 0, INFINITY))
        return AG_ERR_ARG;
    return AG_OK;
}

/* Buffer 0 is ax; scalars: 0 eta (starts at lr), 1 mu (starts at 1). */
static ag_status asgd_prepare(ag_optimizer *opt, ag__pstate *ps, const void *vo) {
    (void)opt;
    if (!ps->buf[0]) {
        ps->scalar[0] = ((const ag_asgd_options *)vo)->lr;
        ps->scalar[1] = 1;
    }
    return ag__optim_buf(ps, 0, 0);
}

/* g ← ±∇ + λ_wθ;  θ ← θ(1 − λη_t) − η_t·g;  ā ← ā + μ_t(θ − ā) (ā ← θ while μ_t = 1) */
#define ASGD_KERNEL(NAME, T)                                                                               \
    AG_VEC_CLONES static void NAME(T *restrict p, const T *restrict g, T *restrict ax, int64_t n, double eta, double mu, \
                     const ag_asgd_options *o) {                                                           \
        const T decay = (T)(1 - o->lambd * eta), step = (T)-eta, m = (T)mu, wd = (T)o->weight_decay;       \
        const T sgn = o->maximize ? -1 : 1;                                                                \
        for (int64_t i = 0; i < n; i++) {                                                                  \
            T gi = sgn * g[i];                                                                             \
            if (wd != 0) gi += wd * p[i];                                                                  \
            p[i] *= decay;                                                                                 \
            p[i] += step * gi;                                                                             \
            ax[i] = mu != 1 ? ax[i] + (p[i] - ax[i]) * m : p[i];                                           \
        }                                                                                                  \
    }
ASGD_KERNEL(asgd_f32, float)
ASGD_KERNEL(asgd_f64, double)

/* This step's η_t and μ_t (the stored ones) for the kernel; the stored ones move on to
 * η_{t+1} = γ/(1 + λγt)^α and μ_{t+1} = 1/max(1, t − t0). */
typedef struct asgd_coef {
    double eta, mu;
} asgd_coef;
AG__COEF_FITS(asgd_coef);

static void asgd_coef_of(const void *vo, ag__pstate *ps, void *out) {
    const ag_asgd_options *o = vo;
    *(asgd_coef *)out = (asgd_coef){ps->scalar[0], ps->scalar[1]};
    double t = (double)ps->step;
    ps->scalar[0] = o->lr / pow(1 + o->lambd * o->lr * t, o->alpha);
    ps->scalar[1] = 1 / fmax(1, t - o->t0);
}

static void asgd_update(const void *vo, const ag__pstate *ps, const ag_tensor *g, const void *coef, int64_t lo,
                        int64_t hi) {
    const asgd_coef *c = coef;
    const ag_tensor *p = ps->param;
    if (p->dtype == AG_F32)
        asgd_f32(ag__f32(p) + lo, ag__f32(g) + lo, ag__f32(ps->buf[0]) + lo, hi - lo, c->eta, c->mu, vo);
    else
        asgd_f64(ag__f64(p) + lo, ag__f64(g) + lo, ag__f64(ps->buf[0]) + lo, hi - lo, c->eta, c->mu, vo);
}

static const ag__optim_field asgd_fields[] = {
    AG__FD(ag_asgd_options, lr), AG__FD(ag_asgd_options, lambd), AG__FD(ag_asgd_options, alpha),
    AG__FD(ag_asgd_options, t0), AG__FD(ag_asgd_options, weight_decay), AG__FB(ag_asgd_options, maximize),
    {NULL, 0, 0}};

const ag__optim_algo ag__asgd_algo = {
    .kind = AG_OPTIM_ASGD, .name = "ASGD", .c_name = "asgd", .opts_size = sizeof(ag_asgd_options),
    .fields = asgd_fields, .buf_names = {"ax"}, .scalar_names = {"eta", "mu"},
    .check = asgd_check, .prepare = asgd_prepare, .coef = asgd_coef_of, .update = asgd_update,
};

ag_optimizer *ag_asgd_new(ag_tensor *const *params, int n, const ag_asgd_options *o) {
    ag_asgd_options d = ag_asgd_defaults();
    return ag__optim_new(&ag__asgd_algo, params, n, o ? (const void *)o : &d);
}

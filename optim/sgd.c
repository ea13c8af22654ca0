/*
 * sgd.c - torch.optim.SGD: stochastic gradient descent with optional
 * (Nesterov) momentum, dampening and L2 weight decay.
 */
#include <tgmath.h>
#include "optim/internal.h"
#include "core/sum.h"

ag_sgd_options ag_sgd_defaults(void) {
    return (ag_sgd_options){.kind = AG_OPTIM_SGD, .lr = 1e-3};
}

static ag_status sgd_check(const void *vo) {
    const ag_sgd_options *o = vo;
    if (ag__optim_check_range("SGD", "learning rate", o->lr, 0, INFINITY) ||
        ag__optim_check_range("SGD", "momentum value", o->momentum, 0, INFINITY) ||
        ag__optim_check_range("SGD", "dampening value", o->dampening, -INFINITY, INFINITY) ||
        ag__optim_check_range("SGD", "weight_decay value", o->weight_decay, 0, INFINITY))
        return AG_ERR_ARG;
    if (o->nesterov && (o->momentum <= 0 || o->dampening != 0))
        return ag__fail(AG_ERR_ARG, "SGD: Nesterov momentum requires a momentum and zero dampening (got momentum %g, "
                                    "dampening %g)", o->momentum, o->dampening);
    return AG_OK;
}

static ag_status sgd_prepare(ag_optimizer *opt, ag__pstate *ps, const void *vo) {
    (void)opt;
    const ag_sgd_options *o = vo;
    return o->momentum != 0 ? ag__optim_buf(ps, 0, 0) : AG_OK;
}

/* g ← ±∇ + λθ;  b ← g on the first step, else μb + (1 − τ)g;  g ← g + μb (Nesterov) or b;  θ ← θ − γg.
 * One loop per case, the options in locals, so that each is vectorised (AG_VEC_CLONES). */
#define SGD_KERNEL(NAME, T)                                                                                 \
    AG_VEC_CLONES static void NAME(T *restrict p, const T *restrict g, T *restrict b, int64_t n,            \
                                   const ag_sgd_options *o, bool fresh) {                                   \
        const T lr = (T)o->lr, wd = (T)o->weight_decay, mu = (T)o->momentum, damp = (T)(1 - o->dampening);  \
        const T sgn = o->maximize ? -1 : 1;                                                                 \
        const bool nesterov = o->nesterov;                                                                  \
        if (!b) {                                                                                           \
            if (wd == 0)                                                                                    \
                for (int64_t i = 0; i < n; i++) p[i] -= lr * (sgn * g[i]);                                  \
            else                                                                                            \
                for (int64_t i = 0; i < n; i++) p[i] -= lr * (sgn * g[i] + wd * p[i]);                      \
        } else if (fresh) {                                                                                 \
            for (int64_t i = 0; i < n; i++) {                                                               \
                T d = sgn * g[i];                                                                           \
                if (wd != 0) d += wd * p[i];                                                                \
                b[i] = d;                                                                                   \
                p[i] -= lr * (nesterov ? d + mu * d : d);                                                   \
            }                                                                                               \
        } else if (nesterov) {                                                                              \
            for (int64_t i = 0; i < n; i++) {                                                               \
                T d = sgn * g[i];                                                                           \
                if (wd != 0) d += wd * p[i];                                                                \
                const T bi = mu * b[i] + damp * d;                                                          \
                b[i] = bi;                                                                                  \
                p[i] -= lr * (d + mu * bi);                                                                 \
            }                                                                                               \
        } else {                                                                                            \
            for (int64_t i = 0; i < n; i++) {                                                               \
                T d = sgn * g[i];                                                                           \
                if (wd != 0) d += wd * p[i];                                                                \
                const T bi = mu * b[i] + damp * d;                                                          \
                b[i] = bi;                                                                                  \
                p[i] -= lr * bi;                                                                            \
            }                                                                                               \
        }                                                                                                   \
    }
SGD_KERNEL(sgd_f32, float)
SGD_KERNEL(sgd_f64, double)

static void sgd_update(const void *vo, const ag__pstate *ps, const ag_tensor *g, const void *coef, int64_t lo,
                       int64_t hi) {
    (void)coef;
    const ag_sgd_options *o = vo;
    const ag_tensor *p = ps->param, *b = o->momentum != 0 ? ps->buf[0] : NULL;
    bool fresh = ps->fresh & 1;
    if (p->dtype == AG_F32)
        sgd_f32(ag__f32(p) + lo, ag__f32(g) + lo, b ? ag__f32(b) + lo : NULL, hi - lo, o, fresh);
    else
        sgd_f64(ag__f64(p) + lo, ag__f64(g) + lo, b ? ag__f64(b) + lo : NULL, hi - lo, o, fresh);
}

static const ag__optim_field sgd_fields[] = {
    AG__FD(ag_sgd_options, lr), AG__FD(ag_sgd_options, momentum), AG__FD(ag_sgd_options, dampening),
    AG__FD(ag_sgd_options, weight_decay), AG__FB(ag_sgd_options, nesterov), AG__FB(ag_sgd_options, maximize),
    {NULL, 0, 0}};

const ag__optim_algo ag__sgd_algo = {
    .kind = AG_OPTIM_SGD, .name = "SGD", .c_name = "sgd", .opts_size = sizeof(ag_sgd_options),
    .fields = sgd_fields, .buf_names = {"momentum_buffer"},
    .check = sgd_check, .prepare = sgd_prepare, .update = sgd_update,
};

ag_optimizer *ag_sgd_new(ag_tensor *const *params, int n, const ag_sgd_options *o) {
    ag_sgd_options d = ag_sgd_defaults();
    return ag__optim_new(&ag__sgd_algo, params, n, o ? (const void *)o : &d);
}

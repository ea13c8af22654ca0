/*
 * rmsprop.c - torch.optim.RMSprop: gradients scaled by a running RMS of
 * their recent magnitudes (Hinton's lecture 6e), optionally centred (Graves,
 * 2013: divide by the running standard deviation) and with momentum.
 */
#include <tgmath.h>
#include "optim/internal.h"
#include "core/sum.h"

ag_rmsprop_options ag_rmsprop_defaults(void) {
    return (ag_rmsprop_options){.kind = AG_OPTIM_RMSPROP, .lr = 1e-2, .alpha = 0.99, .eps = 1e-8};
}

static ag_status rmsprop_check(const void *vo) {
    const ag_rmsprop_options *o = vo;
    if (ag__optim_check_range("RMSprop", "learning rate", o->lr, 0, INFINITY) ||
        ag__optim_check_range("RMSprop", "epsilon value", o->eps, 0, INFINITY) ||
        ag__optim_check_range("RMSprop", "momentum value", o->momentum, 0, INFINITY) ||
        ag__optim_check_range("RMSprop", "weight_decay value", o->weight_decay, 0, INFINITY) ||
        ag__optim_check_range("RMSprop", "alpha value", o->alpha, 0, INFINITY))
        return AG_ERR_ARG;
    return AG_OK;
}

/* Buffers: 0 square_avg, 1 momentum_buffer, 2 grad_avg. */
static ag_status rmsprop_prepare(ag_optimizer *opt, ag__pstate *ps, const void *vo) {
    (void)opt;
    const ag_rmsprop_options *o = vo;
    ag_status st = ag__optim_buf(ps, 0, 0);
    if (!st && o->momentum > 0) st = ag__optim_buf(ps, 1, 0);
    if (!st && o->centered) st = ag__optim_buf(ps, 2, 0);
    return st;
}

/* g ← ±∇ + λθ;  v ← αv + (1 − α)g²;  ḡ ← αḡ + (1 − α)g (centred);  d ← √(v − ḡ²) + ε;
 * b ← μb + g/d, θ ← θ − γb (momentum) or θ ← θ − γ·g/d */
#define RMSPROP_KERNEL(NAME, T)                                                                        \
    AG_VEC_CLONES static void NAME(T *restrict p, const T *restrict g, T *restrict v, T *restrict b, T *restrict ga, \
                     int64_t n, const ag_rmsprop_options *o) {                                         \
        const T lr = (T)o->lr, alpha = (T)o->alpha, oma = (T)(1 - o->alpha), eps = (T)o->eps;          \
        const T wd = (T)o->weight_decay, mu = (T)o->momentum, sgn = o->maximize ? -1 : 1;              \
        for (int64_t i = 0; i < n; i++) {                                                              \
            T gi = sgn * g[i];                                                                         \
            if (wd != 0) gi += wd * p[i];                                                              \
            v[i] = v[i] * alpha + oma * gi * gi;                                                       \
            T avg;                                                                                     \
            if (ga) {                                                                                  \
                ga[i] = ga[i] * alpha + oma * gi;                                                      \
                avg = sqrt(v[i] - ga[i] * ga[i]) + eps;                                                \
            } else {                                                                                   \
                avg = sqrt(v[i]) + eps;                                                                \
            }                                                                                          \
            if (b) {                                                                                   \
                b[i] = b[i] * mu + gi / avg;                                                           \
                p[i] -= lr * b[i];                                                                     \
            } else {                                                                                   \
                p[i] -= lr * (gi / avg);                                                               \
            }                                                                                          \
        }                                                                                              \
    }
RMSPROP_KERNEL(rmsprop_f32, float)
RMSPROP_KERNEL(rmsprop_f64, double)

static void rmsprop_update(const void *vo, const ag__pstate *ps, const ag_tensor *g, const void *coef, int64_t lo,
                           int64_t hi) {
    (void)coef;
    const ag_rmsprop_options *o = vo;
    const ag_tensor *p = ps->param, *b = o->momentum > 0 ? ps->buf[1] : NULL, *ga = o->centered ? ps->buf[2] : NULL;
    if (p->dtype == AG_F32)
        rmsprop_f32(ag__f32(p) + lo, ag__f32(g) + lo, ag__f32(ps->buf[0]) + lo, b ? ag__f32(b) + lo : NULL,
                    ga ? ag__f32(ga) + lo : NULL, hi - lo, o);
    else
        rmsprop_f64(ag__f64(p) + lo, ag__f64(g) + lo, ag__f64(ps->buf[0]) + lo, b ? ag__f64(b) + lo : NULL,
                    ga ? ag__f64(ga) + lo : NULL, hi - lo, o);
}

static const ag__optim_field rmsprop_fields[] = {
    AG__FD(ag_rmsprop_options, lr), AG__FD(ag_rmsprop_options, alpha), AG__FD(ag_rmsprop_options, eps),
    AG__FD(ag_rmsprop_options, weight_decay), AG__FD(ag_rmsprop_options, momentum),
    AG__FB(ag_rmsprop_options, centered), AG__FB(ag_rmsprop_options, maximize), {NULL, 0, 0}};

const ag__optim_algo ag__rmsprop_algo = {
    .kind = AG_OPTIM_RMSPROP, .name = "RMSprop", .c_name = "rmsprop", .opts_size = sizeof(ag_rmsprop_options),
    .fields = rmsprop_fields, .buf_names = {"square_avg", "momentum_buffer", "grad_avg"},
    .check = rmsprop_check, .prepare = rmsprop_prepare, .update = rmsprop_update,
};

ag_optimizer *ag_rmsprop_new(ag_tensor *const *params, int n, const ag_rmsprop_options *o) {
    ag_rmsprop_options d = ag_rmsprop_defaults();
    return ag__optim_new(&ag__rmsprop_algo, params, n, o ? (const void *)o : &d);
}

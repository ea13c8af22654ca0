/*
 * warm_restarts.c - torch.optim.lr_scheduler.CosineAnnealingWarmRestarts (SGDR,
 * Loshchilov & Hutter, 2017): cosine annealing from the base lr down to eta_min
 * over T_0 epochs, restarted with periods growing by T_mult.  It keeps its own
 * position in the period (T_cur of T_i, saved in state dicts) and, as in
 * PyTorch, does not count its steps in step_count.
 */
#include <float.h>
#include <math.h>
#include "optim/scheduler.h"

typedef struct warm_params {
    int T_0, T_mult;
    double eta_min;
    double T_i, T_cur; /* the current period and the epochs since its start */
} warm_params;

/* T_cur counts epochs since the last restart, T_i is the current period. */
static void warm_advance(ag_scheduler *s, bool at_epoch, int64_t epoch) {
    warm_params *p = ag__sched_params(s);
    if (!at_epoch && s->last_epoch < 0) at_epoch = true, epoch = 0;
    if (!at_epoch) {
        epoch = s->last_epoch + 1;
        p->T_cur += 1;
        if (p->T_cur >= p->T_i) {
            p->T_cur -= p->T_i;
            p->T_i *= p->T_mult;
        }
    } else if (epoch >= p->T_0) {
        if (p->T_mult == 1) {
            p->T_cur = (double)(epoch % p->T_0);
        } else {
            double n = floor(log((double)epoch / p->T_0 * (p->T_mult - 1) + 1) / log(p->T_mult));
            p->T_cur = (double)epoch - p->T_0 * (pow(p->T_mult, n) - 1) / (p->T_mult - 1);
            p->T_i = p->T_0 * pow(p->T_mult, n);
        }
    } else {
        p->T_i = p->T_0;
        p->T_cur = (double)epoch;
    }
    s->last_epoch = epoch;
}

/* η = η_min + (η_max − η_min)(1 + cos(π·T_cur/T_i))/2 */
static ag_status warm_step(ag_scheduler *s, bool at_epoch, int64_t epoch) {
    const warm_params *p = ag__sched_params(s);
    warm_advance(s, at_epoch, epoch);
    for (int g = 0; g < s->ngroups; g++)
        s->scratch[g] = p->eta_min + (s->base_lrs[g] - p->eta_min) * (1 + cos(AG__PI * p->T_cur / p->T_i)) / 2;
    return ag__sched_apply(s, s->scratch);
}

static const ag__sched_field warm_hyper[] = {
    AG__SI(warm_params, T_0, 1, NULL), AG__SI(warm_params, T_mult, 1, NULL), AG__SD(warm_params, eta_min, 0, INFINITY, NULL),
    AG__SCHED_FIELDS_END};
static const ag__sched_field warm_state[] = {
    AG__STATE_D(warm_params, T_i, {1, DBL_MAX, false}),  /* a period: T_cur / T_i */
    AG__STATE_D(warm_params, T_cur, {-1, DBL_MAX, false}), /* -1 before the first step */
    AG__SCHED_FIELDS_END};

static const ag__sched_rule warm_rule = {
    .kind = AG__SCHED_WARM_RESTARTS, .name = "CosineAnnealingWarmRestarts", .params_size = sizeof(warm_params),
    .hyper = warm_hyper, .state = warm_state, .step = warm_step,
};

ag_scheduler *ag_cosine_annealing_warm_restarts_new(ag_optimizer *opt, int T_0, int T_mult, double eta_min) {
    return ag__sched_start(ag__sched_new(opt, &warm_rule, &(warm_params){T_0, T_mult, eta_min, T_0, -1}));
}

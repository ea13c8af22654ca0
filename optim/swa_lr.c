/*
 * swa_lr.c - torch.optim.swa_utils.SWALR, the schedule of stochastic weight
 * averaging (Izmailov et al., "Averaging Weights Leads to Wider Optima and
 * Better Generalization", 2018): each group's lr anneals from where it is to
 * swa_lr over anneal_epochs steps (cosine or linear), then stays there.
 * Like PyTorch it counts its steps (step_count), not epochs, and recovers the
 * lr it started from out of the current one, so it chains after another
 * schedule.
 */
#include <math.h>
#include "optim/scheduler.h"

typedef struct swa_params {
    double swa_lr;
    int anneal_epochs;
    ag_anneal strategy;
} swa_params;

/* α(t): t (linear) or (1 − cos(πt))/2 (cosine) */
static double swa_alpha(const swa_params *p, double t) {
    return p->strategy == AG_ANNEAL_LINEAR ? t : (1 - cos(AG__PI * t)) / 2;
}

/* n = steps so far, t = clamp(n/A, 0, 1); the lr the anneal started from, η_s =
 * (lr − α(t_{n−1})·η_swa)/(1 − α(t_{n−1})) (η_swa when α = 1), becomes α(t)·η_swa + (1 − α(t))·η_s. */
static double swa_chain(const ag_scheduler *s, int g, double cur, int64_t e) {
    (void)g, (void)e;
    const swa_params *p = ag__sched_params(s);
    int64_t step = s->step_count; /* PyTorch's _step_count − 1: this step is not counted yet */
    if (p->anneal_epochs == 0 && step < 1) step = 1;
    double A = p->anneal_epochs > 1 ? p->anneal_epochs : 1;
    double prev_t = fmax(0, fmin(1, (double)(step - 1) / A)), prev_alpha = swa_alpha(p, prev_t);
    double start = prev_alpha == 1 ? p->swa_lr : (cur - prev_alpha * p->swa_lr) / (1 - prev_alpha);
    double alpha = swa_alpha(p, fmax(0, fmin(1, (double)step / A)));
    return p->swa_lr * alpha + start * (1 - alpha);
}

static const ag__sched_field swa_hyper[] = {
    AG__SD(swa_params, swa_lr, 0, INFINITY, NULL), AG__SI(swa_params, anneal_epochs, 0, NULL), AG__SCHED_FIELDS_END};

static const ag__sched_rule swa_rule = {
    .kind = AG__SCHED_SWA, .name = "SWALR", .params_size = sizeof(swa_params), .hyper = swa_hyper, .chain = swa_chain,
};

ag_scheduler *ag_swa_lr_new(ag_optimizer *opt, double swa_lr, int anneal_epochs, ag_anneal anneal_strategy) {
    if (anneal_strategy != AG_ANNEAL_COS && anneal_strategy != AG_ANNEAL_LINEAR)
        return ag__fail_null(AG_ERR_ARG, "SWALR: anneal_strategy must be AG_ANNEAL_COS or AG_ANNEAL_LINEAR");
    return ag__sched_start(ag__sched_new(opt, &swa_rule, &(swa_params){swa_lr, anneal_epochs, anneal_strategy}));
}

/*
 * plateau.c - torch.optim.lr_scheduler.ReduceLROnPlateau: lr ← max(lr·factor,
 * min_lr) once the monitored metric has not improved (by more than the
 * threshold) for more than `patience` epochs, then `cooldown` epochs of rest.
 * It steps with the metric only and does not touch the lr when made.
 */
#include <limits.h>
#include <math.h>
#include "optim/scheduler.h"

ag_plateau_options ag_plateau_defaults(void) {
    return (ag_plateau_options){.mode = AG_PLATEAU_MIN, .factor = 0.1, .patience = 10, .threshold = 1e-4,
                                .threshold_mode = AG_THRESHOLD_REL, .eps = 1e-8};
}

typedef struct plateau_params {
    ag_plateau_options o;
    double best;                          /* the best metric so far */
    int num_bad_epochs, cooldown_counter; /* epochs without improvement; epochs of rest left */
} plateau_params;

/* min/rel: a < best(1 − t);  min/abs: a < best − t;  max/rel: a > best(1 + t);  max/abs: a > best + t */
static bool is_better(const ag_plateau_options *o, double a, double best) {
    if (o->mode == AG_PLATEAU_MIN)
        return o->threshold_mode == AG_THRESHOLD_REL ? a < best * (1. - o->threshold) : a < best - o->threshold;
    return o->threshold_mode == AG_THRESHOLD_REL ? a > best * (o->threshold + 1.) : a > best + o->threshold;
}

static ag_status plateau_step_metric(ag_scheduler *s, double metric) {
    plateau_params *p = ag__sched_params(s);
    const ag_plateau_options *o = &p->o;
    s->last_epoch++;
    if (is_better(o, metric, p->best)) {
        p->best = metric;
        p->num_bad_epochs = 0;
    } else {
        p->num_bad_epochs++;
    }
    if (p->cooldown_counter > 0) {
        p->cooldown_counter--;
        p->num_bad_epochs = 0; /* bad epochs in cooldown do not count */
    }
    if (p->num_bad_epochs > o->patience) {
        for (int g = 0; g < s->ngroups; g++) {
            double old = ag_optimizer_get_lr(s->opt, g), lr = fmax(old * o->factor, o->min_lr);
            s->scratch[g] = old - lr > o->eps ? lr : old;
        }
        ag_status st = ag__sched_apply(s, s->scratch);
        if (st) return st;
        p->cooldown_counter = o->cooldown;
        p->num_bad_epochs = 0;
    }
    for (int g = 0; g < s->ngroups; g++) s->last_lr[g] = ag_optimizer_get_lr(s->opt, g);
    return AG_OK;
}

static ag_status plateau_step(ag_scheduler *s, bool at_epoch, int64_t epoch) {
    (void)s, (void)at_epoch, (void)epoch;
    return ag__fail(AG_ERR_ARG, "ReduceLROnPlateau: step needs the metric; use ag_scheduler_step_metric");
}

static const ag__sched_field plateau_hyper[] = {
    AG__SD(plateau_params, o.factor, 0, 0x1.fffffffffffffp-1, "factor (must be < 1)"),
    AG__SD(plateau_params, o.threshold, 0, INFINITY, "threshold"), AG__SD(plateau_params, o.min_lr, 0, INFINITY, "min_lr"),
    AG__SD(plateau_params, o.eps, 0, INFINITY, "eps"), AG__SI(plateau_params, o.patience, 0, "patience"),
    AG__SI(plateau_params, o.cooldown, 0, "cooldown"), AG__SCHED_FIELDS_END};
static const ag__sched_field plateau_state[] = {
    AG__STATE_D(plateau_params, best, AG__NOT_NAN), /* ±inf before any metric */
    AG__STATE_I(plateau_params, num_bad_epochs, {0, INT_MAX, true}),
    AG__STATE_I(plateau_params, cooldown_counter, {0, INT_MAX, true}), AG__SCHED_FIELDS_END};

static const ag__sched_rule plateau_rule = {
    .kind = AG__SCHED_PLATEAU, .name = "ReduceLROnPlateau", .params_size = sizeof(plateau_params),
    .hyper = plateau_hyper, .state = plateau_state, .step = plateau_step, .step_metric = plateau_step_metric,
    .unsequenced = true,
};

ag_scheduler *ag_reduce_lr_on_plateau_new(ag_optimizer *opt, const ag_plateau_options *o) {
    const char *name = "ReduceLROnPlateau";
    if (!opt || !o) return ag__fail_null(AG_ERR_ARG, "%s: optimizer or options are NULL", name);
    if ((o->mode != AG_PLATEAU_MIN && o->mode != AG_PLATEAU_MAX) ||
        (o->threshold_mode != AG_THRESHOLD_REL && o->threshold_mode != AG_THRESHOLD_ABS))
        return ag__fail_null(AG_ERR_ARG, "%s: unknown mode or threshold_mode", name);
    plateau_params p = {.o = *o, .best = o->mode == AG_PLATEAU_MIN ? INFINITY : -INFINITY};
    ag_scheduler *s = ag__sched_new(opt, &plateau_rule, &p);
    if (s) s->last_epoch = 0;
    return s;
}

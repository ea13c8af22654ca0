/*
 * plateau.c - torch.optim.lr_scheduler.ReduceLROnPlateau: lr ← max(lr·factor,
 * min_lr) once the monitored metric has not improved (by more than the
 * threshold) for more than `patience` epochs, then `cooldown` epochs of rest.
 */
#include <math.h>
#include "optim/internal.h"

ag_plateau_options ag_plateau_defaults(void) {
    return (ag_plateau_options){.mode = AG_PLATEAU_MIN, .factor = 0.1, .patience = 10, .threshold = 1e-4,
                                .threshold_mode = AG_THRESHOLD_REL, .eps = 1e-8};
}

ag_scheduler *ag_reduce_lr_on_plateau_new(ag_optimizer *opt, const ag_plateau_options *o) {
    const char *name = "ReduceLROnPlateau";
    if (!opt || !o) return ag__fail_null(AG_ERR_ARG, "%s: optimizer or options are NULL", name);
    if (ag__optim_check_range(name, "factor (must be < 1)", o->factor, 0, nextafter(1.0, 0)) ||
        ag__optim_check_range(name, "threshold", o->threshold, 0, INFINITY) ||
        ag__optim_check_range(name, "min_lr", o->min_lr, 0, INFINITY) ||
        ag__optim_check_range(name, "eps", o->eps, 0, INFINITY))
        return NULL;
    if (o->patience < 0 || o->cooldown < 0)
        return ag__fail_null(AG_ERR_ARG, "%s: patience and cooldown must be >= 0 (got %d, %d)", name, o->patience, o->cooldown);
    if ((o->mode != AG_PLATEAU_MIN && o->mode != AG_PLATEAU_MAX) ||
        (o->threshold_mode != AG_THRESHOLD_REL && o->threshold_mode != AG_THRESHOLD_ABS))
        return ag__fail_null(AG_ERR_ARG, "%s: unknown mode or threshold_mode", name);
    ag_scheduler *s = ag__sched_new(opt, AG__SCHED_PLATEAU, name);
    if (!s) return NULL;
    s->plateau = *o;
    s->last_epoch = 0;
    s->best = o->mode == AG_PLATEAU_MIN ? INFINITY : -INFINITY;
    return s;
}

/* min/rel: a < best(1 − t);  min/abs: a < best − t;  max/rel: a > best(1 + t);  max/abs: a > best + t */
static bool is_better(const ag_plateau_options *o, double a, double best) {
    if (o->mode == AG_PLATEAU_MIN)
        return o->threshold_mode == AG_THRESHOLD_REL ? a < best * (1. - o->threshold) : a < best - o->threshold;
    return o->threshold_mode == AG_THRESHOLD_REL ? a > best * (o->threshold + 1.) : a > best + o->threshold;
}

ag_status ag_scheduler_step_metric(ag_scheduler *s, double metric) {
    if (!s) return ag__fail(AG_ERR_ARG, "scheduler_step_metric: scheduler is NULL");
    if (s->kind != AG__SCHED_PLATEAU) return ag_scheduler_step(s);
    const ag_plateau_options *o = &s->plateau;
    s->last_epoch++;
    if (is_better(o, metric, s->best)) {
        s->best = metric;
        s->num_bad_epochs = 0;
    } else {
        s->num_bad_epochs++;
    }
    if (s->cooldown_counter > 0) {
        s->cooldown_counter--;
        s->num_bad_epochs = 0; /* bad epochs in cooldown do not count */
    }
    if (s->num_bad_epochs > o->patience) {
        for (int g = 0; g < s->ngroups; g++) {
            double old = ag_optimizer_get_lr(s->opt, g), lr = fmax(old * o->factor, o->min_lr);
            s->scratch[g] = old - lr > o->eps ? lr : old;
        }
        ag_status st = ag__sched_apply(s, s->scratch);
        if (st) return st;
        s->cooldown_counter = o->cooldown;
        s->num_bad_epochs = 0;
    }
    for (int g = 0; g < s->ngroups; g++) s->last_lr[g] = ag_optimizer_get_lr(s->opt, g);
    return AG_OK;
}

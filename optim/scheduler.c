/*
 * scheduler.c - what every learning-rate scheduler (torch.optim.lr_scheduler)
 * shares: making one from its schedule's row, stepping, applying lrs to the
 * optimizer, freeing.
 *
 * As in PyTorch each epoch-indexed schedule has a chainable form, which
 * rescales the lr the group has now (so several schedulers on one optimizer
 * compose), and a closed form in the epoch, used when SequentialLR restarts a
 * scheduler at epoch 0.  The schedules themselves live beside their rows
 * (lr_schedules.c, warm_restarts.c, sequential.c, one_cycle.c, plateau.c).
 */
#include <math.h>
#include <string.h>
#include "optim/scheduler.h"

ag_status ag__sched_check(const ag__sched_rule *rule, const void *params) {
    for (const ag__sched_field *h = rule->hyper; h && h->f.name; h++) {
        double v = ag__optim_field_get(params, &h->f);
        const char *what = h->what ? h->what : h->f.name;
        if (h->f.type == AG__FIELD_DOUBLE) {
            ag_status st = ag__optim_check_range(rule->name, what, v, h->lo, h->hi);
            if (st) return st;
        } else if (v < h->lo) {
            return ag__fail(AG_ERR_ARG, "%s: %s must be at least %d, got %d", rule->name, what, (int)h->lo, (int)v);
        }
    }
    return AG_OK;
}

ag_scheduler *ag__sched_new(ag_optimizer *opt, const ag__sched_rule *rule, const void *params) {
    if (ag__sched_check(rule, params)) return NULL;
    if (!opt) return ag__fail_null(AG_ERR_ARG, "%s: optimizer is NULL", rule->name);
    ag_scheduler *s = ag__calloc(sizeof *s + rule->params_size);
    int n = opt->ngroups;
    double *lrs = ag__alloc(sizeof(double) * 3 * (size_t)n);
    if (!s || !lrs) {
        ag__free(s);
        ag__free(lrs);
        return NULL;
    }
    s->rule = rule;
    memcpy(s->params, params, rule->params_size);
    s->opt = opt;
    s->ngroups = n;
    s->base_lrs = lrs;
    s->last_lr = lrs + n;
    s->scratch = lrs + 2 * n;
    s->last_epoch = -1;
    for (int g = 0; g < n; g++) {
        double lr = ag_optimizer_get_lr(opt, g);
        if (isnan(opt->groups[g].initial_lr)) opt->groups[g].initial_lr = lr; /* group.setdefault('initial_lr', lr) */
        s->base_lrs[g] = opt->groups[g].initial_lr;
        s->last_lr[g] = lr;
    }
    return s;
}

void ag_scheduler_free(ag_scheduler *s) {
    if (!s) return;
    for (int i = 0; i < s->nchildren; i++) ag_scheduler_free(s->children[i]);
    ag__free(s->children);
    if (s->rule->free) s->rule->free(s);
    ag__free(s->base_lrs);
    ag__free(s);
}

ag_status ag__sched_apply(ag_scheduler *s, const double *lrs) {
    for (int g = 0; g < s->ngroups; g++)
        if (!isfinite(lrs[g]) || lrs[g] < 0)
            return ag__fail(AG_ERR_VALUE, "%s: the lr of group %d would become %g", s->rule->name, g, lrs[g]);
    for (int g = 0; g < s->ngroups; g++) {
        ag_status st = ag_optimizer_set_lr(s->opt, g, lrs[g]);
        if (st) return st;
        s->last_lr[g] = ag_optimizer_get_lr(s->opt, g);
    }
    return AG_OK;
}

ag_status ag__sched_advance(ag_scheduler *s, int64_t e, const double *lrs) {
    s->step_count++;
    s->last_epoch = e;
    return ag__sched_apply(s, lrs);
}

ag_status ag__sched_step(ag_scheduler *s, bool at_epoch, int64_t epoch) {
    const ag__sched_rule *r = s->rule;
    if (r->step) return r->step(s, at_epoch, epoch);
    int64_t e = at_epoch ? epoch : s->last_epoch + 1;
    for (int g = 0; g < s->ngroups; g++)
        s->scratch[g] = at_epoch && r->closed ? r->closed(s, g, e) : r->chain(s, g, ag_optimizer_get_lr(s->opt, g), e);
    return ag__sched_advance(s, e, s->scratch);
}

ag_scheduler *ag__sched_start(ag_scheduler *s) {
    if (!s) return NULL;
    s->step_count = 0;
    if (ag__sched_step(s, false, 0)) {
        ag_scheduler_free(s);
        return NULL;
    }
    return s;
}

/* ---- public ---------------------------------------------------------------------------------- */
ag_status ag_scheduler_step(ag_scheduler *s) {
    if (!s) return ag__fail(AG_ERR_ARG, "scheduler_step: scheduler is NULL");
    return ag__sched_step(s, false, 0);
}

ag_status ag_scheduler_step_metric(ag_scheduler *s, double metric) {
    if (!s) return ag__fail(AG_ERR_ARG, "scheduler_step_metric: scheduler is NULL");
    return s->rule->step_metric ? s->rule->step_metric(s, metric) : ag__sched_step(s, false, 0);
}

double ag_scheduler_get_last_lr(const ag_scheduler *s, int group) {
    if (!s) return ag__fail(AG_ERR_ARG, "scheduler_get_last_lr: scheduler is NULL"), NAN;
    if (group < 0 || group >= s->ngroups)
        return ag__fail(AG_ERR_INDEX, "%s: group %d out of range (%d groups)", s->rule->name, group, s->ngroups), NAN;
    return s->last_lr[group];
}

int64_t ag_scheduler_last_epoch(const ag_scheduler *s) { return s ? s->last_epoch : -1; }

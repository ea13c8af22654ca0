/*
 * chained.c - torch.optim.lr_scheduler.ChainedScheduler: one step steps each
 * of its schedulers in turn, so their chainable forms compose (ConstantLR's
 * warm-up times ExponentialLR's decay, say).  It owns its schedulers (the
 * driver frees and saves them with it) and takes no step of its own when made.
 */
#include <string.h>
#include "optim/scheduler.h"

/* Each scheduler steps (with the metric, when there is one); last_lr is the optimizer's lr after them all. */
static ag_status chained_run(ag_scheduler *s, bool with_metric, double metric) {
    ag_status st = AG_OK;
    for (int i = 0; st == AG_OK && i < s->nchildren; i++)
        st = with_metric ? ag_scheduler_step_metric(s->children[i], metric) : ag_scheduler_step(s->children[i]);
    if (st) return st;
    s->last_epoch++;
    s->step_count++;
    for (int g = 0; g < s->ngroups; g++) s->last_lr[g] = ag_optimizer_get_lr(s->opt, g);
    return AG_OK;
}

static ag_status chained_step(ag_scheduler *s, bool at_epoch, int64_t epoch) {
    (void)at_epoch, (void)epoch; /* never a SequentialLR's child, so never restarted */
    return chained_run(s, false, 0);
}

static ag_status chained_step_metric(ag_scheduler *s, double metric) { return chained_run(s, true, metric); }

static const ag__sched_rule chained_rule = {
    .kind = AG__SCHED_CHAINED, .name = "ChainedScheduler", .params_size = 0, .step = chained_step,
    .step_metric = chained_step_metric, .unsequenced = true,
};

static ag_status check_children(ag_scheduler *const *cs, int n) {
    if (!cs || n < 1) return ag__fail(AG_ERR_ARG, "ChainedScheduler: needs at least one scheduler");
    for (int i = 0; i < n; i++) {
        if (!cs[i])
            return ag_last_status() ? ag_last_status() : ag__fail(AG_ERR_ARG, "ChainedScheduler: scheduler %d is NULL", i);
        if (cs[i]->opt != cs[0]->opt)
            return ag__fail(AG_ERR_ARG, "ChainedScheduler: scheduler %d (%s) belongs to another optimizer than scheduler 0",
                            i, cs[i]->rule->name);
        for (int j = 0; j < i; j++)
            if (cs[j] == cs[i]) return ag__fail(AG_ERR_ARG, "ChainedScheduler: scheduler %d is listed twice", i);
    }
    return AG_OK;
}

ag_scheduler *ag_chained_scheduler_new(ag_scheduler *const *schedulers, int n) {
    ag_scheduler *s = NULL;
    if (check_children(schedulers, n) == AG_OK) s = ag__sched_new(schedulers[0]->opt, &chained_rule, "");
    if (s) s->children = ag__alloc(sizeof(ag_scheduler *) * (size_t)n);
    if (!s || !s->children) { /* the schedulers are ours to free either way */
        for (int i = 0; schedulers && i < n; i++) {
            bool dup = false;
            for (int j = 0; j < i; j++) dup |= schedulers[j] == schedulers[i];
            if (!dup) ag_scheduler_free(schedulers[i]);
        }
        ag_scheduler_free(s);
        return NULL;
    }
    memcpy(s->children, schedulers, sizeof(ag_scheduler *) * (size_t)n);
    s->nchildren = n;
    s->last_epoch = 0;
    return s;
}

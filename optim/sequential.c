/*
 * sequential.c - torch.optim.lr_scheduler.SequentialLR: runs its schedulers one
 * after another, each from a milestone epoch to the next, restarting each at
 * its epoch 0 (its closed form) when its turn comes.  It owns its schedulers
 * (the driver frees and saves them with it).
 */
#include <string.h>
#include "optim/scheduler.h"

typedef struct sequential_params {
    int *milestones; /* n − 1 increasing epochs for n schedulers */
    int nmilestones;
} sequential_params;

/* The scheduler for the next epoch steps; at a milestone it restarts at epoch 0. */
static ag_status sequential_step(ag_scheduler *s, bool at_epoch, int64_t epoch) {
    (void)at_epoch, (void)epoch; /* never a SequentialLR's child, so never restarted */
    const sequential_params *p = ag__sched_params(s);
    s->last_epoch++;
    int idx = 0;
    while (idx < p->nmilestones && p->milestones[idx] <= s->last_epoch) idx++;
    ag_scheduler *c = s->children[idx];
    bool restart = idx > 0 && p->milestones[idx - 1] == s->last_epoch;
    ag_status st = ag__sched_step(c, restart, 0);
    memcpy(s->last_lr, c->last_lr, sizeof(double) * (size_t)s->ngroups);
    return st;
}

static void sequential_free(ag_scheduler *s) { ag__free(((sequential_params *)ag__sched_params(s))->milestones); }

static const ag__sched_rule sequential_rule = {
    .kind = AG__SCHED_SEQUENTIAL, .name = "SequentialLR", .params_size = sizeof(sequential_params),
    .step = sequential_step, .free = sequential_free, .unsequenced = true,
};

static ag_status check_children(ag_optimizer *opt, ag_scheduler *const *cs, int n, const int *milestones) {
    if (!opt) return ag__fail(AG_ERR_ARG, "SequentialLR: optimizer is NULL");
    if (!cs || n < 1) return ag__fail(AG_ERR_ARG, "SequentialLR: needs at least one scheduler");
    if (n > 1 && !milestones) return ag__fail(AG_ERR_ARG, "SequentialLR: milestones are NULL");
    for (int i = 0; i < n; i++) {
        if (!cs[i]) return ag_last_status() ? ag_last_status() : ag__fail(AG_ERR_ARG, "SequentialLR: scheduler %d is NULL", i);
        if (cs[i]->opt != opt)
            return ag__fail(AG_ERR_ARG, "SequentialLR: scheduler %d (%s) belongs to another optimizer", i,
                            cs[i]->rule->name);
        if (cs[i]->rule->unsequenced)
            return ag__fail(AG_ERR_ARG, "SequentialLR: scheduler %d is a %s, which cannot be sequenced", i,
                            cs[i]->rule->name);
        for (int j = 0; j < i; j++)
            if (cs[j] == cs[i]) return ag__fail(AG_ERR_ARG, "SequentialLR: scheduler %d is listed twice", i);
    }
    for (int i = 0; i + 1 < n; i++)
        if (milestones[i] < 1 || (i > 0 && milestones[i] <= milestones[i - 1]))
            return ag__fail(AG_ERR_ARG, "SequentialLR: milestones must be increasing positive epochs (milestone %d is %d)",
                            i, milestones[i]);
    return AG_OK;
}

ag_scheduler *ag_sequential_lr_new(ag_optimizer *opt, ag_scheduler *const *schedulers, int n, const int *milestones) {
    ag_scheduler *s = NULL;
    sequential_params *p = NULL;
    if (check_children(opt, schedulers, n, milestones) == AG_OK)
        s = ag__sched_new(opt, &sequential_rule, &(sequential_params){NULL, 0});
    if (s) {
        p = ag__sched_params(s);
        s->children = ag__alloc(sizeof(ag_scheduler *) * (size_t)n);
        p->milestones = ag__alloc(sizeof(int) * (size_t)n);
    }
    if (!s || !s->children || !p->milestones) { /* the schedulers are ours to free either way */
        for (int i = 0; schedulers && i < n; i++) {
            bool dup = false;
            for (int j = 0; j < i; j++) dup |= schedulers[j] == schedulers[i];
            if (!dup) ag_scheduler_free(schedulers[i]);
        }
        ag_scheduler_free(s);
        return NULL;
    }
    memcpy(s->children, schedulers, sizeof(ag_scheduler *) * (size_t)n);
    if (n > 1) memcpy(p->milestones, milestones, sizeof(int) * (size_t)(n - 1));
    s->nchildren = n;
    p->nmilestones = n - 1;
    s->last_epoch = 0;
    /* Back to the initial lrs, undo the schedulers' first steps, restart the first. */
    for (int g = 0; g < s->ngroups; g++) s->scratch[g] = opt->groups[g].initial_lr;
    ag_status st = ag__sched_apply(s, s->scratch);
    for (int i = 0; i < n; i++) s->children[i]->last_epoch -= 1;
    s->children[0]->step_count = 0;
    if (st == AG_OK) st = ag__sched_step(s->children[0], false, 0);
    if (st) {
        ag_scheduler_free(s);
        return NULL;
    }
    memcpy(s->last_lr, s->children[0]->last_lr, sizeof(double) * (size_t)s->ngroups);
    return s;
}

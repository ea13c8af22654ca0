/*
 * cyclic.c - torch.optim.lr_scheduler.CyclicLR (Smith, "Cyclical Learning
 * Rates for Training Neural Networks", WACV 2017): the lr moves linearly from
 * base_lr up to max_lr and back in cycles of step_size_up + step_size_down
 * steps, the amplitude kept (triangular), halved each cycle (triangular2) or
 * scaled by gamma^step (exp_range); the momentum (or Adam's β₁) moves the
 * opposite way between max_momentum and base_momentum.
 */
#include <math.h>
#include "optim/scheduler.h"

typedef struct cyclic_params {
    ag_cyclic_options o;
    double total, ratio;  /* steps in a cycle, and the share going up */
    const char *momentum; /* "momentum" or "beta1"; NULL when not cycled */
} cyclic_params;

ag_cyclic_options ag_cyclic_defaults(void) {
    return (ag_cyclic_options){.step_size_up = 2000, .mode = AG_CYCLIC_TRIANGULAR, .gamma = 1, .cycle_momentum = true,
                               .base_momentum = 0.8, .max_momentum = 0.9};
}

/* c = ⌊1 + t/T⌋, x = 1 + t/T − c;  height h = x/r going up, (x − 1)/(r − 1) coming down;
 * lr = base + (max − base)·h·scale,  momentum = max_m − (max_m − base_m)·h·scale,
 * scale 1 (triangular), 1/2^(c−1) (triangular2), γ^t (exp_range). */
static ag_status cyclic_step(ag_scheduler *s, bool at_epoch, int64_t epoch) {
    const cyclic_params *p = ag__sched_params(s);
    const ag_cyclic_options *o = &p->o;
    int64_t e = at_epoch ? epoch : s->last_epoch + 1;
    double cycle = floor(1 + (double)e / p->total), x = 1. + (double)e / p->total - cycle;
    double h = x <= p->ratio ? x / p->ratio : (x - 1) / (p->ratio - 1);
    double scale = o->mode == AG_CYCLIC_TRIANGULAR2 ? 1 / pow(2., cycle - 1)
                   : o->mode == AG_CYCLIC_EXP_RANGE ? pow(o->gamma, (double)e)
                                                    : 1.;
    double lr = o->base_lr + (o->max_lr - o->base_lr) * h * scale;
    double mom = o->max_momentum - (o->max_momentum - o->base_momentum) * h * scale;
    for (int g = 0; g < s->ngroups; g++) {
        s->scratch[g] = lr;
        if (p->momentum) {
            ag_status st = ag_optimizer_set(s->opt, g, p->momentum, mom);
            if (st) return st;
        }
    }
    return ag__sched_advance(s, e, s->scratch);
}

static const ag__sched_field cyclic_hyper[] = {
    AG__SD(cyclic_params, o.base_lr, 0, INFINITY, "base_lr"), AG__SD(cyclic_params, o.max_lr, 0, INFINITY, "max_lr"),
    AG__SI(cyclic_params, o.step_size_up, 1, "step_size_up"), AG__SI(cyclic_params, o.step_size_down, 0, "step_size_down"),
    AG__SD(cyclic_params, o.gamma, 0, INFINITY, "gamma"),
    AG__SD(cyclic_params, o.base_momentum, 0, INFINITY, "base_momentum"),
    AG__SD(cyclic_params, o.max_momentum, 0, INFINITY, "max_momentum"), AG__SCHED_FIELDS_END};

static const ag__sched_rule cyclic_rule = {
    .kind = AG__SCHED_CYCLIC, .name = "CyclicLR", .params_size = sizeof(cyclic_params), .hyper = cyclic_hyper,
    .step = cyclic_step,
};

ag_scheduler *ag_cyclic_lr_new(ag_optimizer *opt, const ag_cyclic_options *o) {
    const char *name = "CyclicLR";
    if (!opt || !o) return ag__fail_null(AG_ERR_ARG, "%s: optimizer or options are NULL", name);
    cyclic_params p = {.o = *o};
    if (ag__sched_check(&cyclic_rule, &p)) return NULL;
    if (o->mode != AG_CYCLIC_TRIANGULAR && o->mode != AG_CYCLIC_TRIANGULAR2 && o->mode != AG_CYCLIC_EXP_RANGE)
        return ag__fail_null(AG_ERR_ARG, "%s: mode must be AG_CYCLIC_TRIANGULAR, _TRIANGULAR2 or _EXP_RANGE", name);
    double up = o->step_size_up, down = o->step_size_down ? o->step_size_down : o->step_size_up;
    p.total = up + down;
    p.ratio = up / p.total;
    if (o->cycle_momentum) {
        double v;
        p.momentum = ag_optimizer_get(opt, 0, "beta1", &v) == AG_OK ? "beta1" : "momentum";
        if (ag_optimizer_get(opt, 0, p.momentum, &v) != AG_OK)
            return ag__fail_null(AG_ERR_ARG, "%s: %s has no momentum or beta1 to cycle; set cycle_momentum = false",
                                 name, ag_optimizer_name(opt));
        ag_clear_error();
    }
    /* As PyTorch: every group starts at base_lr (and base_momentum), which becomes its initial_lr. */
    for (int g = 0; g < opt->ngroups; g++) {
        ag_status st = ag_optimizer_set_lr(opt, g, o->base_lr);
        if (!st && p.momentum) st = ag_optimizer_set(opt, g, p.momentum, o->base_momentum);
        if (st) return NULL;
    }
    ag_scheduler *s = ag__sched_new(opt, &cyclic_rule, &p);
    if (!s) return NULL;
    for (int g = 0; g < s->ngroups; g++) s->base_lrs[g] = o->base_lr;
    return ag__sched_start(s);
}

/*
 * one_cycle.c - torch.optim.lr_scheduler.OneCycleLR: the 1cycle policy (Smith
 * & Topin, "Super-Convergence", 2017) in fastai's two-phase form by default:
 * the lr anneals from max_lr/div_factor up to max_lr over pct_start of the
 * steps, then down to initial_lr/final_div_factor, while the momentum (or
 * Adam's β₁) moves the opposite way between max_momentum and base_momentum.
 */
#include <math.h>
#include "optim/scheduler.h"

typedef struct one_cycle_params {
    ag_one_cycle_options o;
    double initial, max, min; /* the lrs: max_lr/div_factor, max_lr, initial/final_div_factor */
    int total;                /* steps */
    const char *momentum;     /* "momentum" or "beta1"; NULL when not cycled */
} one_cycle_params;

ag_one_cycle_options ag_one_cycle_defaults(void) {
    return (ag_one_cycle_options){.pct_start = 0.3, .anneal_strategy = AG_ANNEAL_COS, .cycle_momentum = true,
                                  .base_momentum = 0.85, .max_momentum = 0.95, .div_factor = 25,
                                  .final_div_factor = 1e4};
}

/* Cosine: end + (start − end)(1 + cos(π·pct))/2;  linear: start + (end − start)·pct. */
static double anneal(ag_anneal how, double start, double end, double pct) {
    if (how == AG_ANNEAL_COS) return end + (start - end) / 2.0 * (cos(AG__PI * pct) + 1);
    return (end - start) * pct + start;
}

typedef struct phase {
    double end_step, lr0, lr1, m0, m1;
} phase;

static int phases(const one_cycle_params *p, phase *ph) {
    const ag_one_cycle_options *o = &p->o;
    double total = p->total, up = o->pct_start * total - 1;
    double lo = p->initial, hi = p->max, end = p->min, mb = o->base_momentum, mm = o->max_momentum;
    if (o->three_phase) {
        ph[0] = (phase){up, lo, hi, mm, mb};
        ph[1] = (phase){2 * o->pct_start * total - 2, hi, lo, mb, mm};
        ph[2] = (phase){total - 1, lo, end, mm, mm};
        return 3;
    }
    ph[0] = (phase){up, lo, hi, mm, mb};
    ph[1] = (phase){total - 1, hi, end, mb, mm};
    return 2;
}

/* The lr (and the momentum it cycles, set on the optimizer) for the step to epoch e. */
static ag_status one_cycle_step(ag_scheduler *s, bool at_epoch, int64_t epoch) {
    const one_cycle_params *p = ag__sched_params(s);
    int64_t e = at_epoch ? epoch : s->last_epoch + 1;
    if (e > p->total)
        return ag__fail(AG_ERR_VALUE, "OneCycleLR: tried to step %lld times; the specified number of total steps is %d",
                        (long long)e + 1, p->total);
    phase ph[3];
    int n = phases(p, ph);
    double start = 0, lr = 0, mom = 0;
    for (int i = 0; i < n; i++) {
        if ((double)e <= ph[i].end_step || i == n - 1) {
            double pct = ((double)e - start) / (ph[i].end_step - start);
            lr = anneal(p->o.anneal_strategy, ph[i].lr0, ph[i].lr1, pct);
            mom = anneal(p->o.anneal_strategy, ph[i].m0, ph[i].m1, pct);
            break;
        }
        start = ph[i].end_step;
    }
    for (int g = 0; g < s->ngroups; g++) {
        s->scratch[g] = lr;
        if (p->momentum) {
            ag_status st = ag_optimizer_set(s->opt, g, p->momentum, mom);
            if (st) return st;
        }
    }
    return ag__sched_advance(s, e, s->scratch);
}

static const ag__sched_field one_cycle_hyper[] = {
    AG__SD(one_cycle_params, o.max_lr, 0, INFINITY, "max_lr"),
    AG__SD(one_cycle_params, o.pct_start, 0, 1, "pct_start (must be in [0, 1])"),
    AG__SD(one_cycle_params, o.div_factor, 0x1p-1074, INFINITY, "div_factor"),
    AG__SD(one_cycle_params, o.final_div_factor, 0x1p-1074, INFINITY, "final_div_factor"),
    AG__SD(one_cycle_params, o.base_momentum, 0, INFINITY, "base_momentum"),
    AG__SD(one_cycle_params, o.max_momentum, 0, INFINITY, "max_momentum"), AG__SCHED_FIELDS_END};

static const ag__sched_rule one_cycle_rule = {
    .kind = AG__SCHED_ONE_CYCLE, .name = "OneCycleLR", .params_size = sizeof(one_cycle_params),
    .hyper = one_cycle_hyper, .step = one_cycle_step,
};

ag_scheduler *ag_one_cycle_lr_new(ag_optimizer *opt, const ag_one_cycle_options *o) {
    const char *name = "OneCycleLR";
    if (!opt || !o) return ag__fail_null(AG_ERR_ARG, "%s: optimizer or options are NULL", name);
    int total = o->total_steps;
    if (total <= 0) {
        if (o->epochs <= 0 || o->steps_per_epoch <= 0)
            return ag__fail_null(AG_ERR_ARG, "%s: set total_steps, or epochs and steps_per_epoch, to positive numbers "
                                             "(got %d, %d, %d)", name, o->total_steps, o->epochs, o->steps_per_epoch);
        total = o->epochs * o->steps_per_epoch;
    }
    one_cycle_params p = {.o = *o, .total = total, .max = o->max_lr};
    if (ag__sched_check(&one_cycle_rule, &p)) return NULL; /* before the phases are worked out */
    if (o->anneal_strategy != AG_ANNEAL_COS && o->anneal_strategy != AG_ANNEAL_LINEAR)
        return ag__fail_null(AG_ERR_ARG, "%s: anneal_strategy must be AG_ANNEAL_COS or AG_ANNEAL_LINEAR", name);
    double ends[3] = {o->pct_start * total - 1, 2 * o->pct_start * total - 2, total - 1};
    if (!o->three_phase) ends[1] = ends[2];
    for (int i = 0; i < 3; i++)
        if (!(ends[i] > (i ? ends[i - 1] : 0)) && (o->three_phase || i != 2))
            return ag__fail_null(AG_ERR_ARG, "%s: pct_start %g leaves a phase without steps out of %d", name,
                                 o->pct_start, total);
    if (o->cycle_momentum) {
        double v;
        p.momentum = ag_optimizer_get(opt, 0, "beta1", &v) == AG_OK ? "beta1" : "momentum";
        if (ag_optimizer_get(opt, 0, p.momentum, &v) != AG_OK)
            return ag__fail_null(AG_ERR_ARG, "%s: %s has no momentum or beta1 to cycle; set cycle_momentum = false",
                                 name, ag_optimizer_name(opt));
        ag_clear_error();
    }
    p.initial = o->max_lr / o->div_factor;
    p.min = p.initial / o->final_div_factor;
    ag_scheduler *s = ag__sched_new(opt, &one_cycle_rule, &p);
    if (!s) return NULL;
    for (int g = 0; g < s->ngroups; g++) s->base_lrs[g] = opt->groups[g].initial_lr = p.initial;
    return ag__sched_start(s);
}

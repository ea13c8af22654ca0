/*
 * one_cycle.c - torch.optim.lr_scheduler.OneCycleLR: the 1cycle policy (Smith
 * & Topin, "Super-Convergence", 2017) in fastai's two-phase form by default:
 * the lr anneals from max_lr/div_factor up to max_lr over pct_start of the
 * steps, then down to initial_lr/final_div_factor, while the momentum (or
 * Adam's β₁) moves the opposite way between max_momentum and base_momentum.
 */
#include <math.h>
#include "optim/internal.h"

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

static int phases(const ag_scheduler *s, phase *ph) {
    const ag_one_cycle_options *o = &s->one_cycle;
    double total = s->oc_total, up = o->pct_start * total - 1;
    double lo = s->oc_initial, hi = s->oc_max, end = s->oc_min, mb = o->base_momentum, mm = o->max_momentum;
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

ag_status ag__one_cycle_lrs(ag_scheduler *s, int64_t e, double *lrs) {
    if (e > s->oc_total)
        return ag__fail(AG_ERR_VALUE, "OneCycleLR: tried to step %lld times; the specified number of total steps is %d",
                        (long long)e + 1, s->oc_total);
    phase ph[3];
    int n = phases(s, ph);
    double start = 0, lr = 0, mom = 0;
    for (int i = 0; i < n; i++) {
        if ((double)e <= ph[i].end_step || i == n - 1) {
            double pct = ((double)e - start) / (ph[i].end_step - start);
            lr = anneal(s->one_cycle.anneal_strategy, ph[i].lr0, ph[i].lr1, pct);
            mom = anneal(s->one_cycle.anneal_strategy, ph[i].m0, ph[i].m1, pct);
            break;
        }
        start = ph[i].end_step;
    }
    for (int g = 0; g < s->ngroups; g++) {
        lrs[g] = lr;
        if (s->oc_momentum) {
            ag_status st = ag_optimizer_set(s->opt, g, s->oc_momentum, mom);
            if (st) return st;
        }
    }
    return AG_OK;
}

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
    if (ag__optim_check_range(name, "max_lr", o->max_lr, 0, INFINITY) ||
        ag__optim_check_range(name, "pct_start (must be in [0, 1])", o->pct_start, 0, 1) ||
        ag__optim_check_range(name, "div_factor", o->div_factor, 0x1p-1074, INFINITY) ||
        ag__optim_check_range(name, "final_div_factor", o->final_div_factor, 0x1p-1074, INFINITY) ||
        ag__optim_check_range(name, "base_momentum", o->base_momentum, 0, INFINITY) ||
        ag__optim_check_range(name, "max_momentum", o->max_momentum, 0, INFINITY))
        return NULL;
    if (o->anneal_strategy != AG_ANNEAL_COS && o->anneal_strategy != AG_ANNEAL_LINEAR)
        return ag__fail_null(AG_ERR_ARG, "%s: anneal_strategy must be AG_ANNEAL_COS or AG_ANNEAL_LINEAR", name);
    double ends[3] = {o->pct_start * total - 1, 2 * o->pct_start * total - 2, total - 1};
    if (!o->three_phase) ends[1] = ends[2];
    for (int i = 0; i < 3; i++)
        if (!(ends[i] > (i ? ends[i - 1] : 0)) && (o->three_phase || i != 2))
            return ag__fail_null(AG_ERR_ARG, "%s: pct_start %g leaves a phase without steps out of %d", name,
                                 o->pct_start, total);
    const char *momentum = NULL;
    if (o->cycle_momentum) {
        double v;
        momentum = ag_optimizer_get(opt, 0, "beta1", &v) == AG_OK ? "beta1" : "momentum";
        if (ag_optimizer_get(opt, 0, momentum, &v) != AG_OK)
            return ag__fail_null(AG_ERR_ARG, "%s: %s has no momentum or beta1 to cycle; set cycle_momentum = false",
                                 name, ag_optimizer_name(opt));
        ag_clear_error();
    }
    ag_scheduler *s = ag__sched_new(opt, AG__SCHED_ONE_CYCLE, name);
    if (!s) return NULL;
    s->one_cycle = *o;
    s->oc_total = total;
    s->oc_momentum = momentum;
    s->oc_max = o->max_lr;
    s->oc_initial = o->max_lr / o->div_factor;
    s->oc_min = s->oc_initial / o->final_div_factor;
    for (int g = 0; g < s->ngroups; g++) s->base_lrs[g] = opt->groups[g].initial_lr = s->oc_initial;
    return ag__sched_start(s);
}

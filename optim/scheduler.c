/*
 * scheduler.c - learning-rate schedulers (torch.optim.lr_scheduler): the
 * shared stepping and the epoch-indexed schedules.
 *
 * As in PyTorch each schedule has a chainable form, which rescales the lr
 * the group has now (so several schedulers on one optimizer compose), and a
 * closed form in the epoch, used when SequentialLR restarts a scheduler at
 * epoch 0.  OneCycleLR (one_cycle.c) and ReduceLROnPlateau (plateau.c) have
 * their own rules.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "optim/internal.h"

ag_scheduler *ag__sched_new(ag_optimizer *opt, ag__sched_kind kind, const char *name) {
    if (!opt) return ag__fail_null(AG_ERR_ARG, "%s: optimizer is NULL", name);
    ag_scheduler *s = ag__calloc(sizeof *s);
    int n = opt->ngroups;
    double *lrs = ag__alloc(sizeof(double) * 3 * (size_t)n);
    if (!s || !lrs) {
        ag__free(s);
        ag__free(lrs);
        return NULL;
    }
    s->kind = kind;
    s->name = name;
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
    ag__free(s->milestones);
    ag__free(s->base_lrs);
    ag__free(s);
}

ag_status ag__sched_apply(ag_scheduler *s, const double *lrs) {
    for (int g = 0; g < s->ngroups; g++)
        if (!isfinite(lrs[g]) || lrs[g] < 0)
            return ag__fail(AG_ERR_VALUE, "%s: the lr of group %d would become %g", s->name, g, lrs[g]);
    for (int g = 0; g < s->ngroups; g++) {
        ag_status st = ag_optimizer_set_lr(s->opt, g, lrs[g]);
        if (st) return st;
        s->last_lr[g] = ag_optimizer_get_lr(s->opt, g);
    }
    return AG_OK;
}

/* ---- the schedules ----------------------------------------------------------------------- */
/* How many milestones equal e (chainable MultiStepLR) or are <= e (closed form). */
static int milestones_at(const ag_scheduler *s, int64_t e, bool upto) {
    int k = 0;
    for (int i = 0; i < s->nmilestones; i++) k += upto ? s->milestones[i] <= e : s->milestones[i] == e;
    return k;
}

/* The new lr of a group whose lr is now cur, at epoch e: the chainable form. */
static double chain_lr(const ag_scheduler *s, int g, double cur, int64_t e) {
    double d = (double)e;
    switch (s->kind) {
    case AG__SCHED_STEP: /* lr·γ every step_size epochs */
        return e == 0 || e % s->step_size != 0 ? cur : cur * s->gamma;
    case AG__SCHED_MULTISTEP: { /* lr·γ^(milestones at e) */
        int k = milestones_at(s, e, false);
        return k ? cur * pow(s->gamma, k) : cur;
    }
    case AG__SCHED_EXPONENTIAL: /* lr·γ */
        return e == 0 ? cur : cur * s->gamma;
    case AG__SCHED_COSINE: { /* η_t = η_min + (η_{t−1} − η_min)(1 + cos(πt/T))/(1 + cos(π(t−1)/T)) */
        double T = s->T_max;
        if (e == 0) return cur;
        if ((e - 1 - s->T_max) % (2 * s->T_max) == 0)
            return cur + (s->base_lrs[g] - s->eta_min) * (1 - cos(AG__PI / T)) / 2;
        return (1 + cos(AG__PI * d / T)) / (1 + cos(AG__PI * (d - 1) / T)) * (cur - s->eta_min) + s->eta_min;
    }
    case AG__SCHED_LINEAR: { /* lr·(1 + (f_end − f_start)/(T·f_start + (t − 1)(f_end − f_start))) */
        double df = s->end_factor - s->start_factor;
        if (e == 0) return cur * s->start_factor;
        if (e > s->total_iters) return cur;
        return cur * (1 + df / (s->total_iters * s->start_factor + (d - 1) * df));
    }
    case AG__SCHED_POLYNOMIAL: { /* lr·((1 − t/T)/(1 − (t − 1)/T))^p */
        double T = s->total_iters;
        if (e == 0 || e > s->total_iters) return cur;
        return cur * pow((1 - d / T) / (1 - (d - 1) / T), s->power);
    }
    case AG__SCHED_LAMBDA: /* initial_lr·f(t) */
        return s->base_lrs[g] * s->fn(e, g, s->ctx);
    default:
        return cur;
    }
}

/* The closed form in the epoch (torch's _get_closed_form_lr), where there is one. */
static double closed_lr(const ag_scheduler *s, int g, double cur, int64_t e) {
    double base = s->base_lrs[g], d = (double)e;
    switch (s->kind) {
    case AG__SCHED_STEP: return base * pow(s->gamma, (double)(e / s->step_size));
    case AG__SCHED_MULTISTEP: return base * pow(s->gamma, milestones_at(s, e, true));
    case AG__SCHED_EXPONENTIAL: return base * pow(s->gamma, d);
    case AG__SCHED_COSINE: return s->eta_min + (base - s->eta_min) * (1 + cos(AG__PI * d / s->T_max)) / 2;
    case AG__SCHED_LINEAR:
        return base * (s->start_factor + (s->end_factor - s->start_factor) * (double)(e < s->total_iters ? e : s->total_iters) /
                                             s->total_iters);
    case AG__SCHED_POLYNOMIAL:
        return base * pow(1 - (double)(e < s->total_iters ? e : s->total_iters) / s->total_iters, s->power);
    default: return chain_lr(s, g, cur, e);
    }
}

/* SGDR: T_cur counts epochs since the last restart, T_i the current period. */
static void warm_restarts_advance(ag_scheduler *s, bool at_epoch, int64_t epoch) {
    if (!at_epoch && s->last_epoch < 0) at_epoch = true, epoch = 0;
    if (!at_epoch) {
        epoch = s->last_epoch + 1;
        s->T_cur += 1;
        if (s->T_cur >= s->T_i) {
            s->T_cur -= s->T_i;
            s->T_i *= s->T_mult;
        }
    } else if (epoch >= s->T_0) {
        if (s->T_mult == 1) {
            s->T_cur = (double)(epoch % s->T_0);
        } else {
            double n = floor(log((double)epoch / s->T_0 * (s->T_mult - 1) + 1) / log(s->T_mult));
            s->T_cur = (double)epoch - s->T_0 * (pow(s->T_mult, n) - 1) / (s->T_mult - 1);
            s->T_i = s->T_0 * pow(s->T_mult, n);
        }
    } else {
        s->T_i = s->T_0;
        s->T_cur = (double)epoch;
    }
    s->last_epoch = epoch;
}

static ag_status sequential_step(ag_scheduler *s);

/* One step: to the next epoch, or (at_epoch) to `epoch` with the closed form. */
static ag_status advance(ag_scheduler *s, bool at_epoch, int64_t epoch) {
    double *lrs = s->scratch;
    int64_t e = at_epoch ? epoch : s->last_epoch + 1;
    switch (s->kind) {
    case AG__SCHED_SEQUENTIAL: return sequential_step(s);
    case AG__SCHED_PLATEAU:
        return ag__fail(AG_ERR_ARG, "ReduceLROnPlateau: step needs the metric; use ag_scheduler_step_metric");
    case AG__SCHED_WARM_RESTARTS:
        warm_restarts_advance(s, at_epoch, epoch);
        for (int g = 0; g < s->ngroups; g++) /* η = η_min + (η_max − η_min)(1 + cos(π·T_cur/T_i))/2 */
            lrs[g] = s->eta_min + (s->base_lrs[g] - s->eta_min) * (1 + cos(AG__PI * s->T_cur / s->T_i)) / 2;
        return ag__sched_apply(s, lrs);
    case AG__SCHED_ONE_CYCLE: {
        ag_status st = ag__one_cycle_lrs(s, e, lrs);
        if (st) return st;
        break;
    }
    default:
        for (int g = 0; g < s->ngroups; g++) {
            double cur = ag_optimizer_get_lr(s->opt, g);
            lrs[g] = at_epoch ? closed_lr(s, g, cur, e) : chain_lr(s, g, cur, e);
        }
    }
    s->step_count++;
    s->last_epoch = e;
    return ag__sched_apply(s, lrs);
}

ag_scheduler *ag__sched_start(ag_scheduler *s) {
    if (!s) return NULL;
    s->step_count = 0;
    if (advance(s, false, 0)) {
        ag_scheduler_free(s);
        return NULL;
    }
    return s;
}

/* SequentialLR: the child for the current epoch steps; at a milestone it restarts at epoch 0. */
static ag_status sequential_step(ag_scheduler *s) {
    s->last_epoch++;
    int idx = 0;
    while (idx < s->nmilestones && s->milestones[idx] <= s->last_epoch) idx++;
    ag_scheduler *c = s->children[idx];
    ag_status st = idx > 0 && s->milestones[idx - 1] == s->last_epoch ? advance(c, true, 0) : advance(c, false, 0);
    memcpy(s->last_lr, c->last_lr, sizeof(double) * (size_t)s->ngroups);
    return st;
}

/* ---- public ---------------------------------------------------------------------------------- */
ag_status ag_scheduler_step(ag_scheduler *s) {
    if (!s) return ag__fail(AG_ERR_ARG, "scheduler_step: scheduler is NULL");
    return advance(s, false, 0);
}

double ag_scheduler_get_last_lr(const ag_scheduler *s, int group) {
    if (!s) return ag__fail(AG_ERR_ARG, "scheduler_get_last_lr: scheduler is NULL"), NAN;
    if (group < 0 || group >= s->ngroups)
        return ag__fail(AG_ERR_INDEX, "%s: group %d out of range (%d groups)", s->name, group, s->ngroups), NAN;
    return s->last_lr[group];
}

int64_t ag_scheduler_last_epoch(const ag_scheduler *s) { return s ? s->last_epoch : -1; }

static bool check_int(const char *name, const char *what, int v, int lo) {
    if (v >= lo) return true;
    ag__fail(AG_ERR_ARG, "%s: %s must be at least %d, got %d", name, what, lo, v);
    return false;
}

static bool check_real(const char *name, const char *what, double v, double lo, double hi) {
    return ag__optim_check_range(name, what, v, lo, hi) == AG_OK;
}

ag_scheduler *ag_step_lr_new(ag_optimizer *opt, int step_size, double gamma) {
    if (!check_int("StepLR", "step_size", step_size, 1) || !check_real("StepLR", "gamma", gamma, 0, INFINITY))
        return NULL;
    ag_scheduler *s = ag__sched_new(opt, AG__SCHED_STEP, "StepLR");
    if (s) s->step_size = step_size, s->gamma = gamma;
    return ag__sched_start(s);
}

static int cmp_int(const void *a, const void *b) { return (*(const int *)a > *(const int *)b) - (*(const int *)a < *(const int *)b); }

ag_scheduler *ag_multistep_lr_new(ag_optimizer *opt, const int *milestones, int n, double gamma) {
    if (n < 0 || (n > 0 && !milestones))
        return ag__fail_null(AG_ERR_ARG, "MultiStepLR: need n >= 0 milestones (got n = %d%s)", n, milestones ? "" : ", NULL");
    if (!check_real("MultiStepLR", "gamma", gamma, 0, INFINITY)) return NULL;
    ag_scheduler *s = ag__sched_new(opt, AG__SCHED_MULTISTEP, "MultiStepLR");
    if (!s) return NULL;
    s->milestones = ag__alloc(sizeof(int) * (size_t)(n ? n : 1));
    if (!s->milestones) {
        ag_scheduler_free(s);
        return NULL;
    }
    if (n) memcpy(s->milestones, milestones, sizeof(int) * (size_t)n);
    qsort(s->milestones, (size_t)n, sizeof(int), cmp_int);
    s->nmilestones = n;
    s->gamma = gamma;
    return ag__sched_start(s);
}

ag_scheduler *ag_exponential_lr_new(ag_optimizer *opt, double gamma) {
    if (!check_real("ExponentialLR", "gamma", gamma, 0, INFINITY)) return NULL;
    ag_scheduler *s = ag__sched_new(opt, AG__SCHED_EXPONENTIAL, "ExponentialLR");
    if (s) s->gamma = gamma;
    return ag__sched_start(s);
}

ag_scheduler *ag_cosine_annealing_lr_new(ag_optimizer *opt, int T_max, double eta_min) {
    if (!check_int("CosineAnnealingLR", "T_max", T_max, 1) ||
        !check_real("CosineAnnealingLR", "eta_min", eta_min, 0, INFINITY))
        return NULL;
    ag_scheduler *s = ag__sched_new(opt, AG__SCHED_COSINE, "CosineAnnealingLR");
    if (s) s->T_max = T_max, s->eta_min = eta_min;
    return ag__sched_start(s);
}

ag_scheduler *ag_cosine_annealing_warm_restarts_new(ag_optimizer *opt, int T_0, int T_mult, double eta_min) {
    if (!check_int("CosineAnnealingWarmRestarts", "T_0", T_0, 1) ||
        !check_int("CosineAnnealingWarmRestarts", "T_mult", T_mult, 1) ||
        !check_real("CosineAnnealingWarmRestarts", "eta_min", eta_min, 0, INFINITY))
        return NULL;
    ag_scheduler *s = ag__sched_new(opt, AG__SCHED_WARM_RESTARTS, "CosineAnnealingWarmRestarts");
    if (s) s->T_0 = T_0, s->T_i = T_0, s->T_mult = T_mult, s->eta_min = eta_min, s->T_cur = -1;
    return ag__sched_start(s);
}

ag_scheduler *ag_linear_lr_new(ag_optimizer *opt, double start_factor, double end_factor, int total_iters) {
    if (!check_real("LinearLR", "start_factor (must be in (0, 1])", start_factor, 0x1p-1074, 1) ||
        !check_real("LinearLR", "end_factor (must be in [0, 1])", end_factor, 0, 1) ||
        !check_int("LinearLR", "total_iters", total_iters, 1))
        return NULL;
    ag_scheduler *s = ag__sched_new(opt, AG__SCHED_LINEAR, "LinearLR");
    if (s) s->start_factor = start_factor, s->end_factor = end_factor, s->total_iters = total_iters;
    return ag__sched_start(s);
}

ag_scheduler *ag_polynomial_lr_new(ag_optimizer *opt, int total_iters, double power) {
    if (!check_int("PolynomialLR", "total_iters", total_iters, 1) ||
        !check_real("PolynomialLR", "power", power, 0, INFINITY))
        return NULL;
    ag_scheduler *s = ag__sched_new(opt, AG__SCHED_POLYNOMIAL, "PolynomialLR");
    if (s) s->total_iters = total_iters, s->power = power;
    return ag__sched_start(s);
}

ag_scheduler *ag_lambda_lr_new(ag_optimizer *opt, ag_lr_lambda_fn fn, void *ctx) {
    if (!fn) return ag__fail_null(AG_ERR_ARG, "LambdaLR: the lr lambda is NULL");
    ag_scheduler *s = ag__sched_new(opt, AG__SCHED_LAMBDA, "LambdaLR");
    if (s) s->fn = fn, s->ctx = ctx;
    return ag__sched_start(s);
}

static ag_status check_children(ag_optimizer *opt, ag_scheduler *const *cs, int n, const int *milestones) {
    if (!opt) return ag__fail(AG_ERR_ARG, "SequentialLR: optimizer is NULL");
    if (!cs || n < 1) return ag__fail(AG_ERR_ARG, "SequentialLR: needs at least one scheduler");
    if (n > 1 && !milestones) return ag__fail(AG_ERR_ARG, "SequentialLR: milestones are NULL");
    for (int i = 0; i < n; i++) {
        if (!cs[i]) return ag_last_status() ? ag_last_status() : ag__fail(AG_ERR_ARG, "SequentialLR: scheduler %d is NULL", i);
        if (cs[i]->opt != opt)
            return ag__fail(AG_ERR_ARG, "SequentialLR: scheduler %d (%s) belongs to another optimizer", i, cs[i]->name);
        if (cs[i]->kind == AG__SCHED_PLATEAU || cs[i]->kind == AG__SCHED_SEQUENTIAL)
            return ag__fail(AG_ERR_ARG, "SequentialLR: scheduler %d is a %s, which cannot be sequenced", i, cs[i]->name);
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
    if (check_children(opt, schedulers, n, milestones) == AG_OK) s = ag__sched_new(opt, AG__SCHED_SEQUENTIAL, "SequentialLR");
    if (s) {
        s->children = ag__alloc(sizeof(ag_scheduler *) * (size_t)n);
        s->milestones = ag__alloc(sizeof(int) * (size_t)n);
    }
    if (!s || !s->children || !s->milestones) { /* the children are ours to free either way */
        for (int i = 0; schedulers && i < n; i++) {
            bool dup = false;
            for (int j = 0; j < i; j++) dup |= schedulers[j] == schedulers[i];
            if (!dup) ag_scheduler_free(schedulers[i]);
        }
        ag_scheduler_free(s);
        return NULL;
    }
    memcpy(s->children, schedulers, sizeof(ag_scheduler *) * (size_t)n);
    if (n > 1) memcpy(s->milestones, milestones, sizeof(int) * (size_t)(n - 1));
    s->nchildren = n;
    s->nmilestones = n - 1;
    s->last_epoch = 0;
    /* Back to the initial lrs, undo the children's first steps, restart the first child. */
    for (int g = 0; g < s->ngroups; g++) s->scratch[g] = opt->groups[g].initial_lr;
    ag_status st = ag__sched_apply(s, s->scratch);
    for (int i = 0; i < n; i++) s->children[i]->last_epoch -= 1;
    s->children[0]->step_count = 0;
    if (st == AG_OK) st = advance(s->children[0], false, 0);
    if (st) {
        ag_scheduler_free(s);
        return NULL;
    }
    memcpy(s->last_lr, s->children[0]->last_lr, sizeof(double) * (size_t)s->ngroups);
    return s;
}

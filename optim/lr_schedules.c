/*
 * lr_schedules.c - the schedules that are a function of the epoch: StepLR,
 * MultiStepLR, ExponentialLR, CosineAnnealingLR, LinearLR, PolynomialLR,
 * LambdaLR, ConstantLR, MultiplicativeLR, and the power and "Attention Is All
 * You Need" (Noam) schedules.  Each is its parameters, its chainable and closed forms, its row
 * and its constructor; the driver (scheduler.c) steps them.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "optim/scheduler.h"

/* ---- StepLR ----------------------------------------------------------------------------------- */
typedef struct step_params {
    int step_size;
    double gamma;
} step_params;

/* lr·γ every step_size epochs */
static double step_chain(const ag_scheduler *s, int g, double cur, int64_t e) {
    (void)g;
    const step_params *p = ag__sched_params(s);
    return e == 0 || e % p->step_size != 0 ? cur : cur * p->gamma;
}

/* η₀·γ^⌊t/step_size⌋ */
static double step_closed(const ag_scheduler *s, int g, int64_t e) {
    const step_params *p = ag__sched_params(s);
    return s->base_lrs[g] * pow(p->gamma, (double)(e / p->step_size));
}

static const ag__sched_field step_hyper[] = {
    AG__SI(step_params, step_size, 1, NULL), AG__SD(step_params, gamma, 0, INFINITY, NULL), AG__SCHED_FIELDS_END};

static const ag__sched_rule step_rule = {
    .kind = AG__SCHED_STEP, .name = "StepLR", .params_size = sizeof(step_params), .hyper = step_hyper,
    .chain = step_chain, .closed = step_closed,
};

ag_scheduler *ag_step_lr_new(ag_optimizer *opt, int step_size, double gamma) {
    return ag__sched_start(ag__sched_new(opt, &step_rule, &(step_params){step_size, gamma}));
}

/* ---- MultiStepLR ------------------------------------------------------------------------------ */
typedef struct multistep_params {
    double gamma;
    int *milestones; /* sorted */
    int nmilestones;
} multistep_params;

/* How many milestones equal e (chainable form) or are <= e (closed form). */
static int milestones_at(const multistep_params *p, int64_t e, bool upto) {
    int k = 0;
    for (int i = 0; i < p->nmilestones; i++) k += upto ? p->milestones[i] <= e : p->milestones[i] == e;
    return k;
}

/* lr·γ^(milestones at e) */
static double multistep_chain(const ag_scheduler *s, int g, double cur, int64_t e) {
    (void)g;
    const multistep_params *p = ag__sched_params(s);
    int k = milestones_at(p, e, false);
    return k ? cur * pow(p->gamma, k) : cur;
}

/* η₀·γ^(milestones ≤ t) */
static double multistep_closed(const ag_scheduler *s, int g, int64_t e) {
    const multistep_params *p = ag__sched_params(s);
    return s->base_lrs[g] * pow(p->gamma, milestones_at(p, e, true));
}

static void multistep_free(ag_scheduler *s) { ag__free(((multistep_params *)ag__sched_params(s))->milestones); }

static const ag__sched_field multistep_hyper[] = {AG__SD(multistep_params, gamma, 0, INFINITY, NULL),
                                                   AG__SCHED_FIELDS_END};

static const ag__sched_rule multistep_rule = {
    .kind = AG__SCHED_MULTISTEP, .name = "MultiStepLR", .params_size = sizeof(multistep_params),
    .hyper = multistep_hyper, .chain = multistep_chain, .closed = multistep_closed, .free = multistep_free,
};

static int cmp_int(const void *a, const void *b) { return (*(const int *)a > *(const int *)b) - (*(const int *)a < *(const int *)b); }

ag_scheduler *ag_multistep_lr_new(ag_optimizer *opt, const int *milestones, int n, double gamma) {
    if (n < 0 || (n > 0 && !milestones))
        return ag__fail_null(AG_ERR_ARG, "MultiStepLR: need n >= 0 milestones (got n = %d%s)", n, milestones ? "" : ", NULL");
    ag_scheduler *s = ag__sched_new(opt, &multistep_rule, &(multistep_params){.gamma = gamma});
    if (!s) return NULL;
    multistep_params *p = ag__sched_params(s);
    p->milestones = ag__alloc(sizeof(int) * (size_t)(n ? n : 1));
    if (!p->milestones) {
        ag_scheduler_free(s);
        return NULL;
    }
    if (n) memcpy(p->milestones, milestones, sizeof(int) * (size_t)n);
    qsort(p->milestones, (size_t)n, sizeof(int), cmp_int);
    p->nmilestones = n;
    return ag__sched_start(s);
}

/* ---- ExponentialLR ---------------------------------------------------------------------------- */
typedef struct exponential_params {
    double gamma;
} exponential_params;

/* lr·γ */
static double exponential_chain(const ag_scheduler *s, int g, double cur, int64_t e) {
    (void)g;
    return e == 0 ? cur : cur * ((const exponential_params *)ag__sched_params(s))->gamma;
}

/* η₀·γ^t */
static double exponential_closed(const ag_scheduler *s, int g, int64_t e) {
    return s->base_lrs[g] * pow(((const exponential_params *)ag__sched_params(s))->gamma, (double)e);
}

static const ag__sched_field exponential_hyper[] = {AG__SD(exponential_params, gamma, 0, INFINITY, NULL),
                                                     AG__SCHED_FIELDS_END};

static const ag__sched_rule exponential_rule = {
    .kind = AG__SCHED_EXPONENTIAL, .name = "ExponentialLR", .params_size = sizeof(exponential_params),
    .hyper = exponential_hyper, .chain = exponential_chain, .closed = exponential_closed,
};

ag_scheduler *ag_exponential_lr_new(ag_optimizer *opt, double gamma) {
    return ag__sched_start(ag__sched_new(opt, &exponential_rule, &(exponential_params){gamma}));
}

/* ---- CosineAnnealingLR ------------------------------------------------------------------------ */
typedef struct cosine_params {
    int T_max;
    double eta_min;
} cosine_params;

/* η_t = η_min + (η_{t−1} − η_min)(1 + cos(πt/T))/(1 + cos(π(t−1)/T)) */
static double cosine_chain(const ag_scheduler *s, int g, double cur, int64_t e) {
    const cosine_params *p = ag__sched_params(s);
    double T = p->T_max, d = (double)e;
    if (e == 0) return cur;
    if ((e - 1 - p->T_max) % (2 * p->T_max) == 0)
        return cur + (s->base_lrs[g] - p->eta_min) * (1 - cos(AG__PI / T)) / 2;
    return (1 + cos(AG__PI * d / T)) / (1 + cos(AG__PI * (d - 1) / T)) * (cur - p->eta_min) + p->eta_min;
}

/* η_min + (η₀ − η_min)(1 + cos(πt/T))/2 */
static double cosine_closed(const ag_scheduler *s, int g, int64_t e) {
    const cosine_params *p = ag__sched_params(s);
    return p->eta_min + (s->base_lrs[g] - p->eta_min) * (1 + cos(AG__PI * (double)e / p->T_max)) / 2;
}

static const ag__sched_field cosine_hyper[] = {
    AG__SI(cosine_params, T_max, 1, NULL), AG__SD(cosine_params, eta_min, 0, INFINITY, NULL), AG__SCHED_FIELDS_END};

static const ag__sched_rule cosine_rule = {
    .kind = AG__SCHED_COSINE, .name = "CosineAnnealingLR", .params_size = sizeof(cosine_params),
    .hyper = cosine_hyper, .chain = cosine_chain, .closed = cosine_closed,
};

ag_scheduler *ag_cosine_annealing_lr_new(ag_optimizer *opt, int T_max, double eta_min) {
    return ag__sched_start(ag__sched_new(opt, &cosine_rule, &(cosine_params){T_max, eta_min}));
}

/* ---- LinearLR --------------------------------------------------------------------------------- */
typedef struct linear_params {
    double start_factor, end_factor;
    int total_iters;
} linear_params;

/* lr·(1 + (f_end − f_start)/(T·f_start + (t − 1)(f_end − f_start))) */
static double linear_chain(const ag_scheduler *s, int g, double cur, int64_t e) {
    (void)g;
    const linear_params *p = ag__sched_params(s);
    double df = p->end_factor - p->start_factor;
    if (e == 0) return cur * p->start_factor;
    if (e > p->total_iters) return cur;
    return cur * (1 + df / (p->total_iters * p->start_factor + ((double)e - 1) * df));
}

/* η₀·(f_start + (f_end − f_start)·min(t, T)/T) */
static double linear_closed(const ag_scheduler *s, int g, int64_t e) {
    const linear_params *p = ag__sched_params(s);
    return s->base_lrs[g] * (p->start_factor + (p->end_factor - p->start_factor) *
                                                   (double)(e < p->total_iters ? e : p->total_iters) / p->total_iters);
}

static const ag__sched_field linear_hyper[] = {
    AG__SD(linear_params, start_factor, 0x1p-1074, 1, "start_factor (must be in (0, 1])"),
    AG__SD(linear_params, end_factor, 0, 1, "end_factor (must be in [0, 1])"), AG__SI(linear_params, total_iters, 1, NULL),
    AG__SCHED_FIELDS_END};

static const ag__sched_rule linear_rule = {
    .kind = AG__SCHED_LINEAR, .name = "LinearLR", .params_size = sizeof(linear_params), .hyper = linear_hyper,
    .chain = linear_chain, .closed = linear_closed,
};

ag_scheduler *ag_linear_lr_new(ag_optimizer *opt, double start_factor, double end_factor, int total_iters) {
    return ag__sched_start(ag__sched_new(opt, &linear_rule, &(linear_params){start_factor, end_factor, total_iters}));
}

/* ---- PolynomialLR ----------------------------------------------------------------------------- */
typedef struct polynomial_params {
    int total_iters;
    double power;
} polynomial_params;

/* lr·((1 − t/T)/(1 − (t − 1)/T))^p */
static double polynomial_chain(const ag_scheduler *s, int g, double cur, int64_t e) {
    (void)g;
    const polynomial_params *p = ag__sched_params(s);
    double T = p->total_iters, d = (double)e;
    if (e == 0 || e > p->total_iters) return cur;
    return cur * pow((1 - d / T) / (1 - (d - 1) / T), p->power);
}

/* η₀·(1 − min(t, T)/T)^p */
static double polynomial_closed(const ag_scheduler *s, int g, int64_t e) {
    const polynomial_params *p = ag__sched_params(s);
    return s->base_lrs[g] * pow(1 - (double)(e < p->total_iters ? e : p->total_iters) / p->total_iters, p->power);
}

static const ag__sched_field polynomial_hyper[] = {
    AG__SI(polynomial_params, total_iters, 1, NULL), AG__SD(polynomial_params, power, 0, INFINITY, NULL),
    AG__SCHED_FIELDS_END};

static const ag__sched_rule polynomial_rule = {
    .kind = AG__SCHED_POLYNOMIAL, .name = "PolynomialLR", .params_size = sizeof(polynomial_params),
    .hyper = polynomial_hyper, .chain = polynomial_chain, .closed = polynomial_closed,
};

ag_scheduler *ag_polynomial_lr_new(ag_optimizer *opt, int total_iters, double power) {
    return ag__sched_start(ag__sched_new(opt, &polynomial_rule, &(polynomial_params){total_iters, power}));
}

/* ---- LambdaLR --------------------------------------------------------------------------------- */
typedef struct lambda_params {
    ag_lr_lambda_fn fn;
    void *ctx;
} lambda_params;

/* initial_lr·f(t), its own closed form */
static double lambda_chain(const ag_scheduler *s, int g, double cur, int64_t e) {
    (void)cur;
    const lambda_params *p = ag__sched_params(s);
    return s->base_lrs[g] * p->fn(e, g, p->ctx);
}

static const ag__sched_rule lambda_rule = {
    .kind = AG__SCHED_LAMBDA, .name = "LambdaLR", .params_size = sizeof(lambda_params), .chain = lambda_chain,
};

ag_scheduler *ag_lambda_lr_new(ag_optimizer *opt, ag_lr_lambda_fn fn, void *ctx) {
    if (!fn) return ag__fail_null(AG_ERR_ARG, "LambdaLR: the lr lambda is NULL");
    return ag__sched_start(ag__sched_new(opt, &lambda_rule, &(lambda_params){fn, ctx}));
}

/* ---- ConstantLR ------------------------------------------------------------------------------- */
typedef struct constant_params {
    double factor;
    int total_iters;
} constant_params;

/* lr·f at epoch 0, lr/f at epoch total_iters, else lr */
static double constant_chain(const ag_scheduler *s, int g, double cur, int64_t e) {
    (void)g;
    const constant_params *p = ag__sched_params(s);
    if (e == 0) return cur * p->factor;
    return e == p->total_iters ? cur * (1.0 / p->factor) : cur;
}

/* η₀·(f + [t ≥ total_iters]·(1 − f)) */
static double constant_closed(const ag_scheduler *s, int g, int64_t e) {
    const constant_params *p = ag__sched_params(s);
    return s->base_lrs[g] * (p->factor + (e >= p->total_iters) * (1 - p->factor));
}

static const ag__sched_field constant_hyper[] = {
    AG__SD(constant_params, factor, 0x1p-1074, 1, "factor (must be in (0, 1])"),
    AG__SI(constant_params, total_iters, 0, NULL), AG__SCHED_FIELDS_END};

static const ag__sched_rule constant_rule = {
    .kind = AG__SCHED_CONSTANT, .name = "ConstantLR", .params_size = sizeof(constant_params),
    .hyper = constant_hyper, .chain = constant_chain, .closed = constant_closed,
};

ag_scheduler *ag_constant_lr_new(ag_optimizer *opt, double factor, int total_iters) {
    return ag__sched_start(ag__sched_new(opt, &constant_rule, &(constant_params){factor, total_iters}));
}

/* ---- MultiplicativeLR ------------------------------------------------------------------------- */
/* lr·f(t) after epoch 0; no closed form (a restart keeps the lr, as PyTorch) */
static double multiplicative_chain(const ag_scheduler *s, int g, double cur, int64_t e) {
    const lambda_params *p = ag__sched_params(s);
    return e > 0 ? cur * p->fn(e, g, p->ctx) : cur;
}

static const ag__sched_rule multiplicative_rule = {
    .kind = AG__SCHED_MULTIPLICATIVE, .name = "MultiplicativeLR", .params_size = sizeof(lambda_params),
    .chain = multiplicative_chain,
};

ag_scheduler *ag_multiplicative_lr_new(ag_optimizer *opt, ag_lr_lambda_fn fn, void *ctx) {
    if (!fn) return ag__fail_null(AG_ERR_ARG, "MultiplicativeLR: the lr lambda is NULL");
    return ag__sched_start(ag__sched_new(opt, &multiplicative_rule, &(lambda_params){fn, ctx}));
}

/* ---- the power schedule ----------------------------------------------------------------------- */
typedef struct power_params {
    double s, c;
} power_params;

/* η₀·(1 + t/s)^c, its own closed form */
static double power_chain(const ag_scheduler *s, int g, double cur, int64_t e) {
    (void)cur;
    const power_params *p = ag__sched_params(s);
    return s->base_lrs[g] * pow(1 + (double)e / p->s, p->c);
}

static const ag__sched_field power_hyper[] = {
    AG__SD(power_params, s, 0x1p-1074, INFINITY, "s (must be > 0)"), AG__SD(power_params, c, -INFINITY, INFINITY, NULL),
    AG__SCHED_FIELDS_END};

static const ag__sched_rule power_rule = {
    .kind = AG__SCHED_POWER, .name = "PowerLR", .params_size = sizeof(power_params), .hyper = power_hyper,
    .chain = power_chain,
};

ag_scheduler *ag_power_lr_new(ag_optimizer *opt, double s, double c) {
    return ag__sched_start(ag__sched_new(opt, &power_rule, &(power_params){s, c}));
}

/* ---- "Attention Is All You Need" (Noam) ------------------------------------------------------- */
typedef struct noam_params {
    int d_model, warmup_steps;
} noam_params;

/* η₀·d^−½·min(n^−½, n·w^−³ᐟ²), n = t + 1; its own closed form */
static double noam_chain(const ag_scheduler *s, int g, double cur, int64_t e) {
    (void)cur;
    const noam_params *p = ag__sched_params(s);
    double n = (double)e + 1;
    return s->base_lrs[g] * (pow(p->d_model, -0.5) * fmin(pow(n, -0.5), n * pow(p->warmup_steps, -1.5)));
}

static const ag__sched_field noam_hyper[] = {
    AG__SI(noam_params, d_model, 1, NULL), AG__SI(noam_params, warmup_steps, 1, NULL), AG__SCHED_FIELDS_END};

static const ag__sched_rule noam_rule = {
    .kind = AG__SCHED_NOAM, .name = "NoamLR", .params_size = sizeof(noam_params), .hyper = noam_hyper,
    .chain = noam_chain,
};

ag_scheduler *ag_noam_lr_new(ag_optimizer *opt, int d_model, int warmup_steps) {
    return ag__sched_start(ag__sched_new(opt, &noam_rule, &(noam_params){d_model, warmup_steps}));
}

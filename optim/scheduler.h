/*
 * optim/scheduler.h - the private layout of learning-rate schedulers, shared by
 * the driver (scheduler.c), the schedules (lr_schedules.c, warm_restarts.c,
 * sequential.c, chained.c, one_cycle.c, cyclic.c, swa_lr.c, plateau.c) and state_dict.c.  Not installed.
 *
 * A schedule is a table row (ag__sched_rule): PyTorch's name, the size of its
 * parameters (a struct of its own, kept with the scheduler), the
 * hyperparameters among them as named fields with their ranges, the counters
 * it saves in state dicts, and its lr rule: a per-group function of the epoch
 * (the chainable form and the closed one) that the driver steps, or a step of
 * its own for a schedule that keeps its own epoch.  The driver owns the rest:
 * base and last lrs, the epoch counter, applying lrs to the optimizer,
 * checking hyperparameters, freeing, the state dict walk.  Schedule files call
 * the driver; the driver calls them only through their rows.
 */
#ifndef AGRAD_OPTIM_SCHEDULER_H
#define AGRAD_OPTIM_SCHEDULER_H

#include "optim/internal.h"

/* The numbers state dicts save as "kind": never renumber or reuse one. */
typedef enum ag__sched_kind {
    AG__SCHED_STEP, AG__SCHED_MULTISTEP, AG__SCHED_EXPONENTIAL, AG__SCHED_COSINE, AG__SCHED_WARM_RESTARTS,
    AG__SCHED_LINEAR, AG__SCHED_POLYNOMIAL, AG__SCHED_LAMBDA, AG__SCHED_SEQUENTIAL, AG__SCHED_ONE_CYCLE,
    AG__SCHED_PLATEAU, AG__SCHED_CONSTANT, AG__SCHED_MULTIPLICATIVE, AG__SCHED_POWER, AG__SCHED_NOAM,
    AG__SCHED_CYCLIC, AG__SCHED_CHAINED, AG__SCHED_SWA
} ag__sched_kind;

/* A number in a schedule's parameters: a hyperparameter, valid in [lo, hi] (an int
 * from lo up; `what` names it in messages when it says more than its name), or a
 * counter that state dicts save under its name, whose saved value a load accepts
 * only when it follows `rule` (io/state.h: AG__COUNT, AG__NOT_NAN, ...). */
typedef struct ag__sched_field {
    ag__optim_field f;
    double lo, hi;
    const char *what;
    ag__range rule;
} ag__sched_field;
/* Hyperparameters: a double in [lo, hi], an int from lo (what: NULL, or the name for messages). */
#define AG__SD(S, f, lo, hi, what) {{#f, offsetof(S, f), AG__FIELD_DOUBLE}, lo, hi, what, {0, 0, false}}
#define AG__SI(S, f, lo, what) {{#f, offsetof(S, f), AG__FIELD_INT}, lo, 0, what, {0, 0, false}}
/* Counters saved in state dicts: a double, an int, with the rule their saved value must
 * follow (an int's rule must be whole and within int). */
#define AG__STATE_D(S, f, ...) {{#f, offsetof(S, f), AG__FIELD_DOUBLE}, 0, 0, NULL, __VA_ARGS__}
#define AG__STATE_I(S, f, ...) {{#f, offsetof(S, f), AG__FIELD_INT}, 0, 0, NULL, __VA_ARGS__}
#define AG__SCHED_FIELDS_END {{NULL, 0, 0}, 0, 0, NULL, {0, 0, false}}

typedef struct ag__sched_rule {
    ag__sched_kind kind;
    const char *name;              /* PyTorch's class name */
    size_t params_size;            /* the schedule's parameters, kept with the scheduler */
    const ag__sched_field *hyper;  /* checked by ag__sched_new; NULL for none */
    const ag__sched_field *state;  /* counters saved by state dicts besides the shared ones
                                      (last_epoch, step_count), each with its rule; NULL for none */
    /* The lr of group g, whose lr is now cur, at epoch e: the chainable form. */
    double (*chain)(const ag_scheduler *s, int g, double cur, int64_t e);
    /* The closed form in e (when SequentialLR restarts the schedule at epoch 0); NULL: chain. */
    double (*closed)(const ag_scheduler *s, int g, int64_t e);
    /* Or: a step of its own, to the next epoch or (at_epoch) to `epoch`. */
    ag_status (*step)(ag_scheduler *s, bool at_epoch, int64_t epoch);
    /* A step given the monitored metric (ReduceLROnPlateau); NULL: a plain step. */
    ag_status (*step_metric)(ag_scheduler *s, double metric);
    /* Frees what the parameters own; NULL when they own nothing. */
    void (*free)(ag_scheduler *s);
    bool unsequenced; /* cannot be one of SequentialLR's schedulers */
} ag__sched_rule;

struct ag_scheduler {
    const ag__sched_rule *rule;
    ag_optimizer *opt;
    int ngroups;             /* groups when it was made */
    double *base_lrs;        /* each group's initial_lr */
    double *last_lr;         /* get_last_lr() */
    double *scratch;         /* the next lrs, while a step computes them */
    int64_t last_epoch;
    int64_t step_count;      /* torch's _step_count */
    ag_scheduler **children; /* the schedulers it runs (SequentialLR), freed and saved with it */
    int nchildren;
    _Alignas(max_align_t) unsigned char params[]; /* rule->params_size bytes */
};

/* The parameters of s, as the rule's struct. */
static inline void *ag__sched_params(const ag_scheduler *s) { return (void *)s->params; }

/* Records "<name>: invalid <what>: <v>" or "<name>: <field> must be at least <lo>,
 * got <v>" and returns AG_ERR_ARG unless every hyperparameter of params is in range. */
AG_HIDDEN ag_status ag__sched_check(const ag__sched_rule *rule, const void *params);
/* A scheduler of rule on opt with a copy of params (checked first; NULL on a bad
 * one, a NULL opt or ENOMEM, with the error recorded) and its base lrs taken
 * (initial_lr set where missing).  The caller finishes it, then calls ag__sched_start
 * (every schedule but ReduceLROnPlateau). */
AG_HIDDEN ag_scheduler *ag__sched_new(ag_optimizer *opt, const ag__sched_rule *rule, const void *params);
/* The first step a schedule takes when made; returns s, or NULL with s freed on failure. */
AG_HIDDEN ag_scheduler *ag__sched_start(ag_scheduler *s);
/* One step of s: to the next epoch, or (at_epoch) to `epoch` with the closed form. */
AG_HIDDEN ag_status ag__sched_step(ag_scheduler *s, bool at_epoch, int64_t epoch);
/* Moves s to epoch e (counting the step) and sets the lrs (ag__sched_apply). */
AG_HIDDEN ag_status ag__sched_advance(ag_scheduler *s, int64_t e, const double *lrs);
/* Sets the lr of every group to lrs[g] (all validated first) and records last_lr. */
AG_HIDDEN ag_status ag__sched_apply(ag_scheduler *s, const double *lrs);

#endif

/*
 * optim/internal.h - the private layout of optimizers, shared by the generic
 * driver (optimizer.c) and the algorithms (one file each).  Not installed.
 *
 * An algorithm is a table row (ag__optim_algo): the layout of its options
 * struct as named fields, a validator, and either a per-parameter update
 * (most algorithms) or a whole-step function (LBFGS).  The driver owns
 * everything else: parameters, groups, per-parameter state, stepping, named
 * hyperparameter access, state dicts.
 */
#ifndef AGRAD_OPTIM_INTERNAL_H
#define AGRAD_OPTIM_INTERNAL_H

#include <stddef.h>
#include "core/internal.h"
#include "agrad/optim.h"
#include "core/parallel.h"
#include "io/state.h"

/* Runs the statement(s) once per chunk [lo, hi) of an elementwise update of n
 * elements, the chunks (multiples of 16 elements) split over threads when n is
 * large enough to pay for the fork (ag__threads_for); the same result as one pass. */
#define AG__OPTIM_CHUNKS(n, lo, hi, ...)                                                           \
    do {                                                                                           \
        const int64_t n_ = (n);                                                                    \
        const int nt_ = ag__threads_for(n_);                                                       \
        if (nt_ <= 1) { /* no parallel region at all: even a one-thread team costs ~1 µs */        \
            const int64_t lo = 0, hi = n_;                                                         \
            __VA_ARGS__                                                                            \
        } else {                                                                                   \
            _Pragma("omp parallel for num_threads(nt_) schedule(static)")                          \
            for (int b_ = 0; b_ < nt_; b_++) {                                                     \
                const int64_t lo = n_ * b_ / nt_ / 16 * 16;                                        \
                const int64_t hi = b_ == nt_ - 1 ? n_ : n_ * (b_ + 1) / nt_ / 16 * 16;             \
                __VA_ARGS__                                                                        \
            }                                                                                      \
        }                                                                                          \
    } while (0)

/* One hyperparameter: a field of the options struct. */
typedef enum { AG__FIELD_DOUBLE, AG__FIELD_BOOL, AG__FIELD_INT } ag__field_type;
typedef struct ag__optim_field {
    const char *name;
    size_t offset;
    ag__field_type type;
} ag__optim_field;
#define AG__FD(S, f) {#f, offsetof(S, f), AG__FIELD_DOUBLE}
#define AG__FB(S, f) {#f, offsetof(S, f), AG__FIELD_BOOL}
#define AG__FI(S, f) {#f, offsetof(S, f), AG__FIELD_INT}

/* Most state tensors a parameter has, and most per-parameter numbers. */
#define AG__OPT_BUFS 3
#define AG__OPT_SCALARS 2

/* The state of one parameter. */
typedef struct ag__pstate {
    ag_tensor *param;
    int group;
    int64_t step;                   /* updates applied to this parameter ("step") */
    ag_tensor *buf[AG__OPT_BUFS];   /* state tensors of the parameter's shape and dtype, NULL until needed */
    double scalar[AG__OPT_SCALARS]; /* per-parameter numbers (NAdam mu_product; ASGD eta, mu) */
    unsigned fresh;                 /* bit k: buf[k] was created and no update has used it yet */
} ag__pstate;

typedef struct ag__group {
    void *opts;        /* the algorithm's options struct */
    double initial_lr; /* set by the first scheduler; NAN until then */
} ag__group;

typedef struct ag__optim_algo ag__optim_algo;

struct ag_optimizer {
    const ag__optim_algo *algo;
    ag__pstate *ps;
    int nparams, cap;
    ag__group *groups;
    int ngroups;
    void *defaults;    /* the options the optimizer was made with */
    void *global;      /* algorithm-wide state (LBFGS history, Muon workspace) */
};

struct ag__optim_algo {
    ag_optim_kind kind;
    const char *name;                 /* PyTorch's class name */
    const char *c_name;               /* "sgd" as in ag_sgd_defaults */
    size_t opts_size;
    const ag__optim_field *fields;    /* ends with {NULL} */
    const char *buf_names[AG__OPT_BUFS];       /* state tensor names as in PyTorch */
    const char *scalar_names[AG__OPT_SCALARS]; /* per-parameter number names */
    /* Validates options; records a message naming the algorithm and the field. */
    ag_status (*check)(const void *opts);
    /* Creates the state ps needs under opts (with ag__optim_buf) before any update. */
    ag_status (*prepare)(ag_optimizer *opt, ag__pstate *ps, const void *opts);
    /* Updates one parameter from its gradient; runs after ps->step was incremented. */
    void (*update)(ag_optimizer *opt, ag__pstate *ps, const ag_tensor *grad, const void *opts);
    /* Or: the whole step (LBFGS); closure may be NULL. */
    ag_status (*step)(ag_optimizer *opt, ag_closure_fn closure, void *ctx, double *loss);
    /* Algorithm-wide state: free it; save it into sd; build (*out, NULL for none) from sd
     * under the options being loaded, without changing opt.  NULL when there is none to save. */
    void (*free_global)(void *global);
    ag_status (*save_global)(const ag_optimizer *opt, ag_state_dict *sd);
    ag_status (*load_global)(const ag_optimizer *opt, const ag_state_dict *sd, const void *opts, void **out);
    bool one_group; /* refuses add_param_group */
};

/* Room for the largest options struct (a set copies a group's options first). */
#define AG__OPTS_MAX 128
_Static_assert(sizeof(ag_muon_options) <= AG__OPTS_MAX && sizeof(ag_lbfgs_options) <= AG__OPTS_MAX,
               "AG__OPTS_MAX is too small");

/* The algorithms (one file each). */
AG_HIDDEN extern const ag__optim_algo ag__sgd_algo, ag__adam_algo, ag__adamw_algo, ag__adagrad_algo,
    ag__rmsprop_algo, ag__adamax_algo, ag__nadam_algo, ag__radam_algo, ag__adadelta_algo, ag__rprop_algo,
    ag__asgd_algo, ag__lbfgs_algo, ag__muon_algo;

/* Makes an optimizer of algo over params with opts (opts_size bytes, validated here). */
AG_HIDDEN ag_optimizer *ag__optim_new(const ag__optim_algo *algo, ag_tensor *const *params, int n,
                                      const void *opts);
/* The field called name of algorithm a, or NULL. */
AG_HIDDEN const ag__optim_field *ag__optim_find_field(const ag__optim_algo *a, const char *name);
/* Reads a field as a double (bools 0/1). */
AG_HIDDEN double ag__optim_field_get(const void *opts, const ag__optim_field *f);
/* Writes a field without validating the options; AG_ERR_ARG for a non-integer
 * value of an int or bool field. */
AG_HIDDEN ag_status ag__optim_field_set(const ag__optim_algo *a, void *opts, const ag__optim_field *f, double v);
/* Buffer k of ps, created filled with value if missing (then marked fresh).
 * Returns AG_OK or AG_ERR_NOMEM. */
AG_HIDDEN ag_status ag__optim_buf(ag__pstate *ps, int k, double value);
/* Calls a closure with grad mode enabled (as torch.enable_grad) and returns its
 * status; a failing closure without a message gets one. */
AG_HIDDEN ag_status ag__optim_call(ag_closure_fn closure, void *ctx, double *loss);
/* Records "<algo>: invalid <what>: <v>" and returns AG_ERR_ARG unless v is finite and lo <= v <= hi. */
AG_HIDDEN ag_status ag__optim_check_range(const char *algo, const char *what, double v, double lo, double hi);

/* Muon's orthogonalisation of G [rows×cols] (row-major, float64) into out, with
 * ag__newton_schulz_work(rows, cols) doubles of scratch. */
AG_HIDDEN void ag__newton_schulz(const double *G, double *out, int64_t rows, int64_t cols, int steps, double *work);
AG_HIDDEN int64_t ag__newton_schulz_work(int64_t rows, int64_t cols);

#define AG__PI 3.14159265358979323846

/* ---- schedulers ------------------------------------------------------------------------------ */
typedef enum ag__sched_kind {
    AG__SCHED_STEP, AG__SCHED_MULTISTEP, AG__SCHED_EXPONENTIAL, AG__SCHED_COSINE, AG__SCHED_WARM_RESTARTS,
    AG__SCHED_LINEAR, AG__SCHED_POLYNOMIAL, AG__SCHED_LAMBDA, AG__SCHED_SEQUENTIAL, AG__SCHED_ONE_CYCLE,
    AG__SCHED_PLATEAU
} ag__sched_kind;

struct ag_scheduler {
    ag__sched_kind kind;
    const char *name;       /* PyTorch's class name */
    ag_optimizer *opt;
    int ngroups;            /* groups when it was made */
    double *base_lrs;       /* each group's initial_lr */
    double *last_lr;        /* get_last_lr() */
    double *scratch;        /* the next lrs, while a step computes them */
    int64_t last_epoch;
    int64_t step_count;     /* torch's _step_count */
    /* The kind's parameters and counters. */
    double gamma, eta_min, start_factor, end_factor, power;
    int step_size, T_max, T_0, T_mult, total_iters;
    double T_i, T_cur;      /* warm restarts */
    int *milestones;        /* multistep (sorted), sequential */
    int nmilestones;
    ag_lr_lambda_fn fn;
    void *ctx;
    ag_scheduler **children; /* sequential */
    int nchildren;
    ag_one_cycle_options one_cycle;
    double oc_initial, oc_max, oc_min; /* one-cycle lrs */
    int oc_total;
    const char *oc_momentum;           /* "momentum" or "beta1"; NULL when not cycled */
    ag_plateau_options plateau;
    double best;
    int num_bad_epochs, cooldown_counter;
};

/* A scheduler of kind on opt with its base lrs taken (initial_lr set where missing);
 * the caller fills in the parameters and then calls ag__sched_start. */
AG_HIDDEN ag_scheduler *ag__sched_new(ag_optimizer *opt, ag__sched_kind kind, const char *name);
/* The first step every scheduler but ReduceLROnPlateau takes when made; frees s on failure. */
AG_HIDDEN ag_scheduler *ag__sched_start(ag_scheduler *s);
/* Sets the lr of every group to lrs[g] (all validated first) and records last_lr. */
AG_HIDDEN ag_status ag__sched_apply(ag_scheduler *s, const double *lrs);
/* OneCycleLR's lrs for epoch e (and the momentum it cycles, set on the optimizer). */
AG_HIDDEN ag_status ag__one_cycle_lrs(ag_scheduler *s, int64_t e, double *lrs);

/* ---- state dicts ------------------------------------------------------------------------------- */
/* The entry whose name printf-formats from fmt, or NULL (no error recorded). */
AG_HIDDEN ag_tensor *ag__sd_find(const ag_state_dict *sd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Reads a one-element entry into *v; false if absent or not one number. */
AG_HIDDEN bool ag__sd_scalar(const ag_state_dict *sd, double *v, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
AG_HIDDEN ag_status ag__sd_put_scalar(ag_state_dict *sd, double v, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Stores a float64 copy of data [shape] under the formatted name. */
AG_HIDDEN ag_status ag__sd_put_f64(ag_state_dict *sd, const double *data, int ndim, const int64_t *shape,
                                   const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* The rule a saved number or state tensor called name (the <name> of "state.<i>.<name>")
 * must follow (optim/state_dict.c keeps the table). */
AG_HIDDEN ag__range ag__optim_state_rule(const char *name);
/* Checks every element of the state entry called entry (whose <name> is name) against
 * its rule: AG_OK or AG_ERR_VALUE "<Algo> load_state_dict: <entry>[<i>] is <v>, expected ...". */
AG_HIDDEN ag_status ag__optim_check_state(const ag__optim_algo *a, const char *entry, const char *name, const ag_tensor *t);
/* What ag_optimizer_load_state_dict checks, without changing opt. */
AG_HIDDEN ag_status ag__optimizer_check_state_dict(ag_optimizer *opt, const ag_state_dict *sd);
/* What ag_scheduler_load_state_dict checks, without changing s. */
AG_HIDDEN ag_status ag__scheduler_check_state_dict(const ag_scheduler *s, const ag_state_dict *sd);

/* Typed data pointers of a contiguous tensor. */
static inline float *ag__f32(const ag_tensor *t) { return (float *)ag__ptr(t); }
static inline double *ag__f64(const ag_tensor *t) { return (double *)ag__ptr(t); }

#endif

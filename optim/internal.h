/*
 * optim/internal.h - the private layout of optimizers, shared by the generic
 * driver (optimizer.c) and the algorithms (one file each).  Not installed.
 *
 * An algorithm is a table row (ag__optim_algo): the layout of its options
 * struct as named fields, a validator, and its update: an elementwise kernel
 * over a range of one parameter's elements (most algorithms; the driver splits
 * large parameters into chunks over threads), a whole-parameter update (Muon)
 * or a whole-step function (LBFGS).  The driver owns everything else:
 * parameters, groups, per-parameter state, stepping, named hyperparameter
 * access, state dicts.
 */
#ifndef AGRAD_OPTIM_INTERNAL_H
#define AGRAD_OPTIM_INTERNAL_H

#include <stddef.h>
#include "core/internal.h"
#include "agrad/optim.h"
#include "core/parallel.h"
#include "io/state.h"

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
#define AG__OPT_BUFS 4
#define AG__OPT_SCALARS 2

/* The state of one parameter. */
typedef struct ag__pstate {
    ag_tensor *param;
    int group;
    int64_t step;                   /* updates applied to this parameter ("step") */
    ag_tensor *buf[AG__OPT_BUFS];   /* state tensors of the parameter's dtype and shape (or the shape the
                                       algorithm's buf_shape gives), NULL until needed */
    double scalar[AG__OPT_SCALARS]; /* per-parameter numbers (NAdam mu_product; ASGD eta, mu) */
    unsigned fresh;                 /* bit k: buf[k] was created and no update has used it yet */
} ag__pstate;

typedef struct ag__group {
    void *opts;        /* the algorithm's options struct */
    double initial_lr; /* set by the first scheduler; NAN until then */
} ag__group;

typedef struct ag__optim_algo ag__optim_algo;

/* What the step hook of parameter i gets (step_hooks.c): its optimizer and index, and
 * the hook's handle. */
typedef struct ag__step_hook {
    ag_optimizer *opt;
    int i;
    ag_hook_handle handle;
} ag__step_hook;

/* An algorithm's elementwise update of elements [begin, end) of ps->param from grad,
 * under the group's options opts and the numbers its coef function computed for this
 * step.  It may write elements [begin, end) only (of the parameter, ps's buffers or
 * arrays coef points to), so chunks of one parameter can run on several threads at once. */
typedef void (*ag__update_fn)(const void *opts, const ag__pstate *ps, const ag_tensor *grad, const void *coef,
                              int64_t begin, int64_t end);
/* Room for the numbers a coef function writes; AG__COEF_FITS(T) checks a struct fits. */
#define AG__COEF_BYTES 128
#define AG__COEF_FITS(T) _Static_assert(sizeof(T) <= AG__COEF_BYTES, #T " does not fit in AG__COEF_BYTES")

struct ag_optimizer {
    const ag__optim_algo *algo;
    ag__pstate *ps;
    int nparams, cap;
    ag__group *groups;
    int ngroups;
    void *defaults;    /* the options the optimizer was made with */
    void *global;      /* algorithm-wide state (LBFGS history, Muon workspace) */
    ag__step_hook *hooks; /* one a parameter while it steps inside backward (step_hooks.c), else NULL */
    bool free_grad;    /* those hooks drop each gradient after its update */
};

struct ag__optim_algo {
    ag_optim_kind kind;
    const char *name;                 /* PyTorch's class name */
    const char *c_name;               /* "sgd" as in ag_sgd_defaults */
    size_t opts_size;
    const ag__optim_field *fields;    /* ends with {NULL} */
    const char *buf_names[AG__OPT_BUFS];       /* state tensor names as in PyTorch */
    const char *scalar_names[AG__OPT_SCALARS]; /* per-parameter number names */
    /* The shape of state tensor k of a parameter p, when it is not p's (Adafactor's
     * factored second moments): writes it to shape and returns its ndim. NULL: p's shape. */
    int (*buf_shape)(const ag_tensor *p, int k, int64_t *shape);
    /* Validates options; records a message naming the algorithm and the field. */
    ag_status (*check)(const void *opts);
    /* Creates the state ps needs under opts (with ag__optim_buf) before any update. */
    ag_status (*prepare)(ag_optimizer *opt, ag__pstate *ps, const void *opts);
    /* The numbers every chunk of one parameter's update shares (bias corrections, a
     * step size) into coef (at most AG__COEF_BYTES), once per parameter and step before
     * its chunks, after ps->step was incremented; it may advance the per-parameter
     * numbers (ps->scalar).  NULL when update needs the options only. */
    void (*coef)(const void *opts, ag__pstate *ps, void *coef);
    /* The elementwise update, run by ag__optim_chunks. */
    ag__update_fn update;
    /* Or: a parameter's whole update where it is not elementwise (Muon's
     * orthogonalisation), running its elementwise loops with ag__optim_chunks. */
    void (*update_param)(ag_optimizer *opt, ag__pstate *ps, const ag_tensor *grad, const void *opts);
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
    ag__asgd_algo, ag__lbfgs_algo, ag__muon_algo, ag__adafactor_algo, ag__sparse_adam_algo;

/* Makes an optimizer of algo over params with opts (opts_size bytes, validated here). */
AG_HIDDEN ag_optimizer *ag__optim_new(const ag__optim_algo *algo, ag_tensor *const *params, int n,
                                      const void *opts);
/* The field called name of algorithm a, or NULL. */
AG_HIDDEN const ag__optim_field *ag__optim_find_field(const ag__optim_algo *a, const char *name);
/* Reads a field as a double (bools 0/1). */
AG_HIDDEN double ag__optim_field_get(const void *opts, const ag__optim_field *f);
/* Writes a field without validating the options; AG_ERR_ARG for a non-integer
 * value of an int or bool field (the message names owner, such as "Adam"). */
AG_HIDDEN ag_status ag__optim_field_set(const char *owner, void *opts, const ag__optim_field *f, double v);
/* Runs fn over all the elements of ps->param: in chunks (multiples of 16 elements)
 * split over threads when the parameter is large enough to pay for the fork
 * (ag__threads_for), else in one call on this thread with no parallel region at all.
 * The same result either way, fn being elementwise. */
AG_HIDDEN void ag__optim_chunks(ag__update_fn fn, const void *opts, const ag__pstate *ps, const ag_tensor *grad,
                                const void *coef);
/* Buffer k of ps, created filled with value if missing (then marked fresh), of the
 * parameter's shape, or of shape [ndim] for ag__optim_buf_shaped.
 * Returns AG_OK or AG_ERR_NOMEM. */
AG_HIDDEN ag_status ag__optim_buf(ag__pstate *ps, int k, double value);
AG_HIDDEN ag_status ag__optim_buf_shaped(ag__pstate *ps, int k, double value, int ndim, const int64_t *shape);
/* Calls a closure with grad mode enabled (as torch.enable_grad) and returns its
 * status; a failing closure without a message gets one. */
AG_HIDDEN ag_status ag__optim_call(ag_closure_fn closure, void *ctx, double *loss);
/* Records "<algo>: invalid <what>: <v>" and returns AG_ERR_ARG unless v is finite and lo <= v <= hi. */
AG_HIDDEN ag_status ag__optim_check_range(const char *algo, const char *what, double v, double lo, double hi);

/* ---- the moment estimates of Adam, AdamW, NAdam and RAdam ----------------------------------- */
/* Their per-step numbers: β₁, β₂, 1 − β₁, 1 − β₂, ε, the L2 factor λ (0 when the
 * decay is decoupled), the decoupled decay 1 − γλ (1 for L2), the gradient's sign
 * (−1 to maximize). */
typedef struct ag__adam_moments {
    double beta1, beta2, omb1, omb2, eps, l2, decay, sgn;
} ag__adam_moments;

static inline ag__adam_moments ag__adam_moments_of(double beta1, double beta2, double eps, double lr,
                                                   double weight_decay, bool decoupled, bool maximize) {
    return (ag__adam_moments){beta1, beta2, 1 - beta1, 1 - beta2, eps, decoupled ? 0 : weight_decay,
                              decoupled ? 1 - lr * weight_decay : 1, maximize ? -1 : 1};
}

/* In a kernel over T given `const ag__adam_moments *mo`: its numbers as T constants
 * b1, b2, omb1, omb2, eps, l2, decay, sgn. */
#define AG__ADAM_CONSTS(T, mo)                                                                          \
    const T b1 = (T)(mo)->beta1, b2 = (T)(mo)->beta2, omb1 = (T)(mo)->omb1, omb2 = (T)(mo)->omb2;         \
    const T eps = (T)(mo)->eps, l2 = (T)(mo)->l2, decay = (T)(mo)->decay, sgn = (T)(mo)->sgn
/* Then element i: gi ← ±∇ + λθ (L2) or θ ← θ(1 − γλ) (decoupled);  m ← β₁m + (1 − β₁)gi;
 * v ← β₂v + (1 − β₂)gi². */
#define AG__ADAM_MOMENTS(T, gi, p, g, m, v, i)                                                          \
    T gi = sgn * g[i];                                                                                  \
    if (l2 != 0) gi += l2 * p[i];                                                                       \
    if (decay != 1) p[i] *= decay;                                                                      \
    m[i] = m[i] * b1 + omb1 * gi;                                                                       \
    v[i] = v[i] * b2 + omb2 * gi * gi

/* Muon's orthogonalisation of G [rows×cols] (row-major, float64) into out, with
 * ag__newton_schulz_work(rows, cols) doubles of scratch. */
AG_HIDDEN void ag__newton_schulz(const double *G, double *out, int64_t rows, int64_t cols, int steps, double *work);
AG_HIDDEN int64_t ag__newton_schulz_work(int64_t rows, int64_t cols);

#define AG__PI 3.14159265358979323846

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
/* Element i of a contiguous float32/float64 tensor as a double, and its store. */
static inline double ag__optim_get(const ag_tensor *t, int64_t i) {
    return t->dtype == AG_F32 ? ag__f32(t)[i] : ag__f64(t)[i];
}
static inline void ag__optim_put(ag_tensor *t, int64_t i, double v) {
    if (t->dtype == AG_F32) ag__f32(t)[i] = (float)v;
    else ag__f64(t)[i] = v;
}

#endif

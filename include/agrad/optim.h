/*
 * agrad/optim.h - optimizers (torch.optim), learning-rate schedulers
 * (torch.optim.lr_scheduler), gradient clipping and regularisation penalties.
 *
 * Names, defaults and update rules follow PyTorch; docs/optim.md gives every
 * update rule in its paper's notation.  A typical loop:
 *
 *     ag_adam_options o = ag_adam_defaults();
 *     o.lr = 3e-4;
 *     ag_optimizer *opt = ag_adam_new(params, n, &o);
 *     for (...) {
 *         ag_scope_begin();
 *         ag_optimizer_zero_grad(opt);
 *         ag_backward(loss_of(model));
 *         ag_optimizer_step(opt);
 *         ag_scope_end();
 *     }
 *     ag_optimizer_free(opt);
 *
 * Ownership.  An optimizer retains its parameters (they stay alive until
 * ag_optimizer_free) and owns its state tensors (momentum buffers, moment
 * estimates), which belong to no scope.  State is created the first time a
 * parameter has a gradient; later steps allocate nothing.  A scheduler refers
 * to its optimizer and must be freed before it.
 *
 * Parameters must be leaf, contiguous float32/float64 tensors that require
 * grad; each may appear once.  A step skips parameters whose gradient is
 * NULL (as PyTorch skips p.grad is None), runs under no-grad, updates each
 * parameter in one fused loop over its data and bumps its version counter.
 *
 * Errors follow agrad/core.h: NULL or a non-zero ag_status with a message that
 * names the algorithm and the offending value (ag_last_error()).
 */
#ifndef AGRAD_OPTIM_H
#define AGRAD_OPTIM_H

#include "core.h"
#include "state.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ag_optimizer ag_optimizer;
typedef struct ag_scheduler ag_scheduler;

/* Which algorithm an options struct or an optimizer belongs to.  Every options
 * struct starts with its kind, filled in by its ag_*_defaults() function: always
 * start from the defaults, then change fields. */
typedef enum ag_optim_kind {
    AG_OPTIM_SGD = 1,
    AG_OPTIM_ADAM,
    AG_OPTIM_ADAMW,
    AG_OPTIM_ADAGRAD,
    AG_OPTIM_RMSPROP,
    AG_OPTIM_ADAMAX,
    AG_OPTIM_NADAM,
    AG_OPTIM_RADAM,
    AG_OPTIM_ADADELTA,
    AG_OPTIM_RPROP,
    AG_OPTIM_ASGD,
    AG_OPTIM_LBFGS,
    AG_OPTIM_MUON,
    AG_OPTIM_ADAFACTOR,
    AG_OPTIM_SPARSE_ADAM
} ag_optim_kind;

/* ---- options, with PyTorch's defaults -------------------------------------------- */
/* torch.optim.SGD.  Defaults: lr 1e-3, momentum 0, dampening 0, weight_decay 0,
 * nesterov false, maximize false.  Nesterov needs momentum > 0 and dampening 0. */
typedef struct ag_sgd_options {
    ag_optim_kind kind;
    double lr, momentum, dampening, weight_decay;
    bool nesterov, maximize;
} ag_sgd_options;

/* torch.optim.Adam and torch.optim.AdamW (betas = (beta1, beta2)).  Adam:
 * lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight_decay 0 (an L2 term added to
 * the gradient), amsgrad false, maximize false.  AdamW: the same with
 * weight_decay 1e-2, applied decoupled (θ ← θ(1 − lr·wd)). */
typedef struct ag_adam_options {
    ag_optim_kind kind;
    double lr, beta1, beta2, eps, weight_decay;
    bool amsgrad, maximize;
} ag_adam_options;
typedef ag_adam_options ag_adamw_options;

/* torch.optim.Adagrad: lr 1e-2, lr_decay 0, weight_decay 0,
 * initial_accumulator_value 0, eps 1e-10, maximize false. */
typedef struct ag_adagrad_options {
    ag_optim_kind kind;
    double lr, lr_decay, weight_decay, initial_accumulator_value, eps;
    bool maximize;
} ag_adagrad_options;

/* torch.optim.RMSprop: lr 1e-2, alpha 0.99, eps 1e-8, weight_decay 0,
 * momentum 0, centered false, maximize false. */
typedef struct ag_rmsprop_options {
    ag_optim_kind kind;
    double lr, alpha, eps, weight_decay, momentum;
    bool centered, maximize;
} ag_rmsprop_options;

/* torch.optim.Adamax: lr 2e-3, betas (0.9, 0.999), eps 1e-8, weight_decay 0,
 * maximize false. */
typedef struct ag_adamax_options {
    ag_optim_kind kind;
    double lr, beta1, beta2, eps, weight_decay;
    bool maximize;
} ag_adamax_options;

/* torch.optim.NAdam: lr 2e-3, betas (0.9, 0.999), eps 1e-8, weight_decay 0,
 * momentum_decay 4e-3, decoupled_weight_decay false, maximize false. */
typedef struct ag_nadam_options {
    ag_optim_kind kind;
    double lr, beta1, beta2, eps, weight_decay, momentum_decay;
    bool decoupled_weight_decay, maximize;
} ag_nadam_options;

/* torch.optim.RAdam: lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight_decay 0,
 * decoupled_weight_decay false, maximize false. */
typedef struct ag_radam_options {
    ag_optim_kind kind;
    double lr, beta1, beta2, eps, weight_decay;
    bool decoupled_weight_decay, maximize;
} ag_radam_options;

/* torch.optim.Adadelta: lr 1.0, rho 0.9, eps 1e-6, weight_decay 0, maximize false. */
typedef struct ag_adadelta_options {
    ag_optim_kind kind;
    double lr, rho, eps, weight_decay;
    bool maximize;
} ag_adadelta_options;

/* torch.optim.Rprop (etas = (etaminus, etaplus), step_sizes = (step_size_min,
 * step_size_max)): lr 1e-2, etas (0.5, 1.2), step_sizes (1e-6, 50), maximize false. */
typedef struct ag_rprop_options {
    ag_optim_kind kind;
    double lr, etaminus, etaplus, step_size_min, step_size_max;
    bool maximize;
} ag_rprop_options;

/* torch.optim.ASGD: lr 1e-2, lambd 1e-4, alpha 0.75, t0 1e6, weight_decay 0,
 * maximize false.  The running average of the parameters is the state "ax". */
typedef struct ag_asgd_options {
    ag_optim_kind kind;
    double lr, lambd, alpha, t0, weight_decay;
    bool maximize;
} ag_asgd_options;

typedef enum ag_line_search {
    AG_LINE_SEARCH_NONE = 0,    /* fixed step lr */
    AG_LINE_SEARCH_STRONG_WOLFE /* cubic-interpolating strong-Wolfe search (minFunc) */
} ag_line_search;

/* torch.optim.LBFGS: lr 1, max_iter 20, max_eval 0 (meaning max_iter·5/4),
 * tolerance_grad 1e-7, tolerance_change 1e-9, history_size 100, line search
 * none.  One parameter group only; steps need a closure. */
typedef struct ag_lbfgs_options {
    ag_optim_kind kind;
    double lr;
    int max_iter, max_eval;
    double tolerance_grad, tolerance_change;
    int history_size;
    ag_line_search line_search;
} ag_lbfgs_options;

/* Muon (Keller Jordan, 2024): SGD momentum whose update is orthogonalised by 5
 * quintic Newton–Schulz iterations, for parameters of 2 or more dims (viewed as
 * [size(0), numel/size(0)]); the others get AdamW with the adamw_* options, as
 * in the authors' MuonWithAuxAdam.  Defaults: lr 0.02, momentum 0.95, nesterov
 * true, ns_steps 5, weight_decay 0; adamw_lr 3e-4, adamw_betas (0.9, 0.95),
 * adamw_eps 1e-10, adamw_weight_decay 0. */
typedef struct ag_muon_options {
    ag_optim_kind kind;
    double lr, momentum, weight_decay;
    bool nesterov;
    int ns_steps;
    double adamw_lr, adamw_beta1, adamw_beta2, adamw_eps, adamw_weight_decay;
} ag_muon_options;

/* Adafactor (Shazeer & Stern, "Adafactor: Adaptive Learning Rates with Sublinear
 * Memory Cost", 2018) as Hugging Face transformers' Adafactor (torch 1.13 has none):
 * the second moment of a parameter of 2 or more dims is kept factored, as row and
 * column means over its last two dims; updates are clipped to RMS clip_threshold;
 * with relative_step the step size is min(1e-2, 1/√t) (warmup_init: min(1e-6·t,
 * 1/√t)) instead of lr, and with scale_parameter it is multiplied by max(eps2,
 * RMS(θ)).  Defaults: lr 0 (must stay 0 under relative_step), eps (1e-30, 1e-3),
 * clip_threshold 1, decay_rate −0.8, beta1 0 (no first moment; HF's None),
 * weight_decay 0, scale_parameter true, relative_step true, warmup_init false. */
typedef struct ag_adafactor_options {
    ag_optim_kind kind;
    double lr, eps1, eps2, clip_threshold, decay_rate, beta1, weight_decay;
    bool scale_parameter, relative_step, warmup_init;
} ag_adafactor_options;

/* torch.optim.SparseAdam: Adam ("lazy" Adam) that updates the moments and the
 * values of only the rows (slices along dim 0, e.g. an embedding's vectors) present
 * in the gradient.  agrad's gradients are dense: a row is present when its gradient
 * row has a nonzero element (an embedding row no index looked up has a zero
 * gradient row).  lr 1e-3, betas (0.9, 0.999), eps 1e-8, maximize false. */
typedef struct ag_sparse_adam_options {
    ag_optim_kind kind;
    double lr, beta1, beta2, eps;
    bool maximize;
} ag_sparse_adam_options;

AG_API ag_sgd_options ag_sgd_defaults(void);
AG_API ag_adam_options ag_adam_defaults(void);
AG_API ag_adamw_options ag_adamw_defaults(void);
AG_API ag_adagrad_options ag_adagrad_defaults(void);
AG_API ag_rmsprop_options ag_rmsprop_defaults(void);
AG_API ag_adamax_options ag_adamax_defaults(void);
AG_API ag_nadam_options ag_nadam_defaults(void);
AG_API ag_radam_options ag_radam_defaults(void);
AG_API ag_adadelta_options ag_adadelta_defaults(void);
AG_API ag_rprop_options ag_rprop_defaults(void);
AG_API ag_asgd_options ag_asgd_defaults(void);
AG_API ag_lbfgs_options ag_lbfgs_defaults(void);
AG_API ag_muon_options ag_muon_defaults(void);
AG_API ag_adafactor_options ag_adafactor_defaults(void);
AG_API ag_sparse_adam_options ag_sparse_adam_defaults(void);

/* ---- creating an optimizer ---------------------------------------------------------- */
/* Each makes an optimizer over the n parameters (one parameter group) with the
 * options o (NULL: the defaults).  Returns a new optimizer freed with
 * ag_optimizer_free, or NULL with AG_ERR_ARG (no parameters, a parameter that
 * is NULL, not a leaf, not contiguous, listed twice or not requiring grad; an
 * invalid option such as a NaN or negative lr; options from another
 * algorithm's defaults), AG_ERR_DTYPE (a parameter that is not floating),
 * AG_ERR_NOMEM.  A NULL parameter after an earlier failure passes that
 * failure on without a new message. */
AG_API ag_optimizer *ag_sgd_new(ag_tensor *const *params, int n, const ag_sgd_options *o);
AG_API ag_optimizer *ag_adam_new(ag_tensor *const *params, int n, const ag_adam_options *o);
AG_API ag_optimizer *ag_adamw_new(ag_tensor *const *params, int n, const ag_adamw_options *o);
AG_API ag_optimizer *ag_adagrad_new(ag_tensor *const *params, int n, const ag_adagrad_options *o);
AG_API ag_optimizer *ag_rmsprop_new(ag_tensor *const *params, int n, const ag_rmsprop_options *o);
AG_API ag_optimizer *ag_adamax_new(ag_tensor *const *params, int n, const ag_adamax_options *o);
AG_API ag_optimizer *ag_nadam_new(ag_tensor *const *params, int n, const ag_nadam_options *o);
AG_API ag_optimizer *ag_radam_new(ag_tensor *const *params, int n, const ag_radam_options *o);
AG_API ag_optimizer *ag_adadelta_new(ag_tensor *const *params, int n, const ag_adadelta_options *o);
AG_API ag_optimizer *ag_rprop_new(ag_tensor *const *params, int n, const ag_rprop_options *o);
AG_API ag_optimizer *ag_asgd_new(ag_tensor *const *params, int n, const ag_asgd_options *o);
AG_API ag_optimizer *ag_lbfgs_new(ag_tensor *const *params, int n, const ag_lbfgs_options *o);
AG_API ag_optimizer *ag_muon_new(ag_tensor *const *params, int n, const ag_muon_options *o);
AG_API ag_optimizer *ag_adafactor_new(ag_tensor *const *params, int n, const ag_adafactor_options *o);
AG_API ag_optimizer *ag_sparse_adam_new(ag_tensor *const *params, int n, const ag_sparse_adam_options *o);

/* Frees the optimizer, its state and its references to the parameters.  NULL is ignored. */
AG_API void ag_optimizer_free(ag_optimizer *opt);

/* ---- stepping ------------------------------------------------------------------------- */
/* Updates every parameter that has a gradient.  Returns AG_OK, AG_ERR_ARG (NULL,
 * or LBFGS, which needs a closure), AG_ERR_NOMEM (creating state on the first
 * step; no parameter is changed then). */
AG_API ag_status ag_optimizer_step(ag_optimizer *opt);

/* A closure re-evaluates the model: zeroes the gradients, computes the loss,
 * calls ag_backward, writes the loss into *loss and returns AG_OK (or an error,
 * which ends the step).  It runs with grad mode enabled. */
typedef ag_status (*ag_closure_fn)(void *ctx, double *loss);
/* The step with a closure (torch's optimizer.step(closure)): calls closure once
 * before the update (LBFGS calls it as often as it needs).  Writes the loss of
 * the first evaluation into *loss (may be NULL).  Returns AG_OK or the first error. */
AG_API ag_status ag_optimizer_step_closure(ag_optimizer *opt, ag_closure_fn closure, void *ctx, double *loss);

/* Drops the gradient of every parameter (zero_grad(set_to_none=True)). */
AG_API void ag_optimizer_zero_grad(ag_optimizer *opt);

/* ---- the step inside backward (docs/optim.md#the-step-inside-backward) ----------------------- */
/* Updates parameter i (as ag_optimizer_param numbers them) alone, exactly as
 * ag_optimizer_step would update it: the same arithmetic and the same bits, its own
 * step count advanced, its version bumped; nothing when its gradient is NULL.  It may
 * run from a post-accumulate-grad hook (agrad/autograd.h), which is how
 * ag_optimizer_register_step_hooks uses it.  Returns AG_OK, AG_ERR_ARG (NULL; LBFGS,
 * whose step needs every parameter at once), AG_ERR_INDEX (i out of range),
 * AG_ERR_DTYPE (a gradient of another dtype), AG_ERR_NOMEM (creating its state on its
 * first update; the parameter is unchanged then). */
AG_API ag_status ag_optimizer_step_param(ag_optimizer *opt, int i);
/* The index of p among the parameters of opt, or -1 (also for NULL). */
AG_API int ag_optimizer_param_index(const ag_optimizer *opt, const ag_tensor *p);
/* Makes opt step inside backward (PyTorch's optimizer-in-backward, built on
 * register_post_accumulate_grad_hook): registers on every parameter a hook that runs
 * ag_optimizer_step_param for it as soon as backward has its whole gradient, while
 * backward goes on through the rest of the graph, then with free_grad drops that
 * gradient (ag_zero_grad).  A training step is then forward and backward: no
 * ag_optimizer_step (refused while the hooks are on, since it would update twice), and
 * with free_grad no zero_grad either (without it, zero_grad before each backward as
 * usual, or gradients add up).  The numbers are those of backward then
 * ag_optimizer_step; schedulers work unchanged (a group's lr is read at each update).
 * Not for what needs every gradient before any update: gradient clipping by a global
 * norm (ag_clip_grad_norm), gradient accumulation over several backwards, LBFGS,
 * the data-parallel wrapper (its gradients are averaged when backward returns).
 * A failing update stops backward with its error.  Returns AG_OK, AG_ERR_ARG (NULL,
 * LBFGS, hooks already registered), AG_ERR_NOMEM.  While they are on,
 * ag_optimizer_add_param_group is refused. */
AG_API ag_status ag_optimizer_register_step_hooks(ag_optimizer *opt, bool free_grad);
/* Removes those hooks (ag_optimizer_free does too): true if there were any. */
AG_API bool ag_optimizer_remove_step_hooks(ag_optimizer *opt);

/* ---- parameter groups and hyperparameters ---------------------------------------------- */
/* Adds a parameter group with its own options: o points at this optimizer's
 * options struct (e.g. ag_adam_options for Adam) or is NULL for the options the
 * optimizer was made with.  Returns AG_OK, or the errors of ag_*_new (AG_ERR_ARG
 * also for a parameter already in a group and for LBFGS, which has one group). */
AG_API ag_status ag_optimizer_add_param_group(ag_optimizer *opt, ag_tensor *const *params, int n, const void *o);
/* Number of parameter groups (0 for NULL). */
AG_API int ag_optimizer_num_groups(const ag_optimizer *opt);
/* The algorithm, and its PyTorch class name ("Adam"). */
AG_API ag_optim_kind ag_optimizer_kind(const ag_optimizer *opt);
AG_API const char *ag_optimizer_name(const ag_optimizer *opt);
/* Learning rate of a group; NAN with AG_ERR_INDEX recorded for a bad group. */
AG_API double ag_optimizer_get_lr(const ag_optimizer *opt, int group);
/* Sets the learning rate of a group.  AG_ERR_INDEX, AG_ERR_ARG (NaN, infinite or negative). */
AG_API ag_status ag_optimizer_set_lr(ag_optimizer *opt, int group, double lr);
/* Any hyperparameter of a group by its field name in the options struct
 * ("momentum", "beta1", "amsgrad", "history_size"...; bools read 0/1), as
 * torch's param_groups[group][name].  get returns AG_OK or AG_ERR_INDEX /
 * AG_ERR_ARG (unknown name); set also validates the new value like ag_*_new. */
AG_API ag_status ag_optimizer_get(const ag_optimizer *opt, int group, const char *name, double *value);
AG_API ag_status ag_optimizer_set(ag_optimizer *opt, int group, const char *name, double value);

/* ---- the parameters as one collection ----------------------------------------------------- */
/* Number of parameters, over all groups, in the order they were given. */
AG_API int ag_optimizer_num_params(const ag_optimizer *opt);
/* The i-th parameter (borrowed), NULL if out of range.  With ag_grad() this walks
 * every (param, grad) pair: for (i...) { p = ag_optimizer_param(opt, i); g = ag_grad(p); } */
AG_API ag_tensor *ag_optimizer_param(const ag_optimizer *opt, int i);
/* Total number of elements over all parameters. */
AG_API int64_t ag_optimizer_numel(const ag_optimizer *opt);

/* ---- saving and resuming ---------------------------------------------------------------------- */
/* Writes everything needed to resume exactly into sd, PyTorch style: per-group
 * hyperparameters as "param_groups.<g>.<name>" scalars, per-parameter state as
 * "state.<i>.<name>" (tensors, and the "step" count), LBFGS history as
 * "state.0.old_dirs" etc.  Tensors in sd are copies.  Returns AG_OK, AG_ERR_ARG, AG_ERR_NOMEM. */
AG_API ag_status ag_optimizer_state_dict(const ag_optimizer *opt, ag_state_dict *sd);
/* Restores what ag_optimizer_state_dict wrote into an optimizer of the same
 * algorithm over parameters of the same shapes and groups.  Every number and
 * every element of every state tensor is checked against its rule first (counts
 * whole and >= 0, second moments >= 0, everything finite: docs/optim.md, "What a
 * load accepts"); nothing changes unless it all fits.  Returns AG_OK, AG_ERR_ARG
 * (missing entry, other algorithm or group layout), AG_ERR_SHAPE, AG_ERR_VALUE (a
 * value its entry cannot hold, named with the value), AG_ERR_NOMEM. */
AG_API ag_status ag_optimizer_load_state_dict(ag_optimizer *opt, const ag_state_dict *sd);

/* ---- learning-rate schedulers ------------------------------------------------------------------ */
/* Each scheduler is attached to an optimizer and, as in PyTorch, performs its
 * first step when made (sets each group's lr for epoch 0 and records the
 * group's "initial_lr" the first time).  Call ag_scheduler_step after
 * ag_optimizer_step, once per epoch (or batch).  The chainable (recursive)
 * forms of torch are used, so several schedulers on one optimizer compose as
 * in PyTorch.  Each returns NULL with AG_ERR_ARG for NULL or an invalid
 * argument (message names it), AG_ERR_NOMEM.  Free with ag_scheduler_free. */

/* StepLR: lr ← lr·gamma every step_size epochs (PyTorch gamma default 0.1). */
AG_API ag_scheduler *ag_step_lr_new(ag_optimizer *opt, int step_size, double gamma);
/* MultiStepLR: lr ← lr·gamma at each of the n milestones (increasing epochs; default gamma 0.1). */
AG_API ag_scheduler *ag_multistep_lr_new(ag_optimizer *opt, const int *milestones, int n, double gamma);
/* ExponentialLR: lr ← lr·gamma every epoch. */
AG_API ag_scheduler *ag_exponential_lr_new(ag_optimizer *opt, double gamma);
/* CosineAnnealingLR: η = η_min + (η_max − η_min)(1 + cos(π·t/T_max))/2 (default eta_min 0). */
AG_API ag_scheduler *ag_cosine_annealing_lr_new(ag_optimizer *opt, int T_max, double eta_min);
/* CosineAnnealingWarmRestarts (SGDR): the cosine restarted every T_i epochs,
 * T_0 first and T_i ← T_i·T_mult after each restart (defaults T_mult 1, eta_min 0). */
AG_API ag_scheduler *ag_cosine_annealing_warm_restarts_new(ag_optimizer *opt, int T_0, int T_mult, double eta_min);
/* LinearLR: the factor goes linearly from start_factor to end_factor over
 * total_iters epochs (defaults 1/3, 1.0, 5; factors in (0, 1]). */
AG_API ag_scheduler *ag_linear_lr_new(ag_optimizer *opt, double start_factor, double end_factor, int total_iters);
/* PolynomialLR: lr = base·(1 − t/total_iters)^power until total_iters (defaults 5, 1.0). */
AG_API ag_scheduler *ag_polynomial_lr_new(ag_optimizer *opt, int total_iters, double power);
/* LambdaLR: lr = initial_lr·fn(epoch, group, ctx). */
typedef double (*ag_lr_lambda_fn)(int64_t epoch, int group, void *ctx);
AG_API ag_scheduler *ag_lambda_lr_new(ag_optimizer *opt, ag_lr_lambda_fn fn, void *ctx);
/* SequentialLR: runs schedulers[0] until milestones[0], then schedulers[1]
 * (restarted at its epoch 0), ...; n schedulers, n − 1 increasing milestones.
 * The schedulers must be attached to opt; the new scheduler takes them over
 * (freeing it frees them) even when it fails. */
AG_API ag_scheduler *ag_sequential_lr_new(ag_optimizer *opt, ag_scheduler *const *schedulers, int n,
                                          const int *milestones);

typedef enum ag_anneal { AG_ANNEAL_COS = 0, AG_ANNEAL_LINEAR } ag_anneal;
/* OneCycleLR.  max_lr must be set; total_steps, or epochs and steps_per_epoch.
 * Defaults: pct_start 0.3, anneal cos, cycle_momentum true (cycles "momentum",
 * or "beta1" for Adam-like optimizers, between max_momentum 0.95 and
 * base_momentum 0.85), div_factor 25, final_div_factor 1e4, three_phase false. */
typedef struct ag_one_cycle_options {
    double max_lr;
    int total_steps, epochs, steps_per_epoch;
    double pct_start;
    ag_anneal anneal_strategy;
    bool cycle_momentum;
    double base_momentum, max_momentum, div_factor, final_div_factor;
    bool three_phase;
} ag_one_cycle_options;
AG_API ag_one_cycle_options ag_one_cycle_defaults(void);
/* Stepping past total_steps fails with AG_ERR_VALUE, as in PyTorch. */
AG_API ag_scheduler *ag_one_cycle_lr_new(ag_optimizer *opt, const ag_one_cycle_options *o);

typedef enum ag_plateau_mode { AG_PLATEAU_MIN = 0, AG_PLATEAU_MAX } ag_plateau_mode;
typedef enum ag_threshold_mode { AG_THRESHOLD_REL = 0, AG_THRESHOLD_ABS } ag_threshold_mode;
/* ReduceLROnPlateau: lr ← max(lr·factor, min_lr) after more than `patience`
 * epochs without improvement of the metric.  Defaults: mode min, factor 0.1,
 * patience 10, threshold 1e-4, threshold_mode rel, cooldown 0, min_lr 0, eps 1e-8. */
typedef struct ag_plateau_options {
    ag_plateau_mode mode;
    double factor;
    int patience;
    double threshold;
    ag_threshold_mode threshold_mode;
    int cooldown;
    double min_lr, eps;
} ag_plateau_options;
AG_API ag_plateau_options ag_plateau_defaults(void);
/* Unlike the others it does not touch the lr when made; step it with ag_scheduler_step_metric. */
AG_API ag_scheduler *ag_reduce_lr_on_plateau_new(ag_optimizer *opt, const ag_plateau_options *o);

/* ConstantLR: lr = initial_lr·factor until epoch total_iters, then initial_lr
 * (PyTorch defaults 1/3, 5; factor in (0, 1], total_iters >= 0). */
AG_API ag_scheduler *ag_constant_lr_new(ag_optimizer *opt, double factor, int total_iters);
/* MultiplicativeLR: lr ← lr·fn(epoch, group, ctx) at every epoch after 0 (fn as LambdaLR's). */
AG_API ag_scheduler *ag_multiplicative_lr_new(ag_optimizer *opt, ag_lr_lambda_fn fn, void *ctx);
/* The power schedule of the course's "Training" deck: lr = initial_lr·(1 + t/s)^c
 * (s > 0; c < 0 decays, e.g. −0.5 or −1). */
AG_API ag_scheduler *ag_power_lr_new(ag_optimizer *opt, double s, double c);
/* The schedule of "Attention Is All You Need" (Vaswani et al. 2017, §5.3), often
 * called Noam: lr = initial_lr·d_model^−½·min(n^−½, n·warmup_steps^−³ᐟ²) with n = t + 1
 * the step number, so epoch 0 is the first step: a linear warm-up over warmup_steps
 * steps, then decay as 1/√n.  The paper's lr is 1 (initial_lr scales it).
 * d_model >= 1, warmup_steps >= 1. */
AG_API ag_scheduler *ag_noam_lr_new(ag_optimizer *opt, int d_model, int warmup_steps);

typedef enum ag_cyclic_mode { AG_CYCLIC_TRIANGULAR = 0, AG_CYCLIC_TRIANGULAR2, AG_CYCLIC_EXP_RANGE } ag_cyclic_mode;
/* CyclicLR (Smith, "Cyclical Learning Rates for Training Neural Networks", 2017):
 * the lr goes from base_lr up to max_lr in step_size_up steps and back down in
 * step_size_down (0: the same as up); triangular keeps the amplitude, triangular2
 * halves it every cycle, exp_range scales it by gamma^step.  With cycle_momentum
 * the group's "momentum" (or "beta1" for Adam-like optimizers, as PyTorch 2) moves
 * the opposite way between max_momentum and base_momentum.  Defaults
 * (ag_cyclic_defaults): step_size_up 2000, step_size_down 0, triangular, gamma 1,
 * cycle_momentum true, base_momentum 0.8, max_momentum 0.9; base_lr and max_lr must
 * be set (one value for all groups). */
typedef struct ag_cyclic_options {
    double base_lr, max_lr;
    int step_size_up, step_size_down;
    ag_cyclic_mode mode;
    double gamma;
    bool cycle_momentum;
    double base_momentum, max_momentum;
} ag_cyclic_options;
AG_API ag_cyclic_options ag_cyclic_defaults(void);
/* Sets every group's lr to base_lr (and momentum to base_momentum) when made, as PyTorch. */
AG_API ag_scheduler *ag_cyclic_lr_new(ag_optimizer *opt, const ag_cyclic_options *o);

/* ChainedScheduler: one step steps each of the n schedulers in turn (their
 * chainable forms compose); a metric step passes the metric to each.  They must
 * all belong to one optimizer; the new scheduler takes them over (freeing it frees
 * them) even when it fails.  Makes no step of its own when made. */
AG_API ag_scheduler *ag_chained_scheduler_new(ag_scheduler *const *schedulers, int n);

/* SWALR (torch.optim.swa_utils.SWALR, for stochastic weight averaging): anneals
 * each group's lr from its value to swa_lr over anneal_epochs steps (cosine or
 * linear), then holds swa_lr.  anneal_epochs >= 0 (PyTorch default 10, cos). */
AG_API ag_scheduler *ag_swa_lr_new(ag_optimizer *opt, double swa_lr, int anneal_epochs, ag_anneal anneal_strategy);

/* Advances one epoch and sets the lr of every group.  Returns AG_OK, AG_ERR_ARG
 * (NULL; ReduceLROnPlateau needs a metric), AG_ERR_VALUE (OneCycleLR past its end). */
AG_API ag_status ag_scheduler_step(ag_scheduler *s);
/* ReduceLROnPlateau's step with the epoch's metric (e.g. validation loss); a
 * NaN metric counts as no improvement.  Other schedulers ignore the metric and
 * step.  Returns AG_OK or AG_ERR_ARG (NULL). */
AG_API ag_status ag_scheduler_step_metric(ag_scheduler *s, double metric);
/* The lr this scheduler last set for a group (get_last_lr()[group]); NAN with
 * AG_ERR_INDEX for a bad group. */
AG_API double ag_scheduler_get_last_lr(const ag_scheduler *s, int group);
/* The scheduler's epoch counter (last_epoch). */
AG_API int64_t ag_scheduler_last_epoch(const ag_scheduler *s);
/* Saves / restores the scheduler's counters (and those of a SequentialLR's
 * children) as "scheduler.*" scalars, so they share a dict with the optimizer's
 * state; load expects a scheduler made the same way, checks every counter and lr
 * against its rule (docs/optim.md) and changes nothing otherwise.
 * Return AG_OK, AG_ERR_ARG (missing or foreign entries), AG_ERR_VALUE (a value its
 * entry cannot hold), AG_ERR_NOMEM. */
AG_API ag_status ag_scheduler_state_dict(const ag_scheduler *s, ag_state_dict *sd);
AG_API ag_status ag_scheduler_load_state_dict(ag_scheduler *s, const ag_state_dict *sd);
/* Frees the scheduler (and a SequentialLR's children).  NULL is ignored. */
AG_API void ag_scheduler_free(ag_scheduler *s);

/* ---- gradient clipping ------------------------------------------------------------------------- */
/* torch.nn.utils.clip_grad_norm_: the norm of all n gradients together (as one
 * vector; norm_type p >= 1 or INFINITY for the max-abs norm) is written to
 * *total_norm (may be NULL); if it exceeds max_norm every gradient is scaled by
 * max_norm / (norm + 1e-6).  Parameters without a gradient are skipped.
 * Returns AG_OK, AG_ERR_ARG (NULL params, norm_type < 1 or NaN, max_norm NaN),
 * AG_ERR_VALUE when error_if_nonfinite and the norm is NaN or infinite (the
 * gradients are then left unchanged). */
AG_API ag_status ag_clip_grad_norm(ag_tensor *const *params, int n, double max_norm, double norm_type,
                                   bool error_if_nonfinite, double *total_norm);
/* ag_clip_grad_norm over the parameters of one parameter group of opt, as
 * `clip_grad_norm_(opt.param_groups[group]["params"], ...)` in PyTorch: each group clipped to
 * its own max_norm (e.g. the recurrent layers and the output layer of a language model).
 * Returns as ag_clip_grad_norm, and AG_ERR_ARG for a NULL optimizer, AG_ERR_INDEX for a bad group. */
AG_API ag_status ag_clip_grad_norm_group(ag_optimizer *opt, int group, double max_norm, double norm_type,
                                         bool error_if_nonfinite, double *total_norm);
/* torch.nn.utils.clip_grad_value_: clamps every gradient element to
 * [-clip_value, clip_value].  AG_OK or AG_ERR_ARG (NULL params, negative or NaN clip_value). */
AG_API ag_status ag_clip_grad_value(ag_tensor *const *params, int n, double clip_value);

/* ---- regularisation penalties ------------------------------------------------------------------ */
/* Differentiable 0-d tensors to add to a loss, built from core ops (so backward
 * flows into the parameters); owned by the innermost scope.  All parameters
 * must share one dtype.  NULL with AG_ERR_ARG (n < 1, NaN or negative lambda,
 * l1_ratio outside [0, 1]), AG_ERR_DTYPE; a NULL parameter passes NULL through. */
/* lambda · Σ|w| */
AG_API ag_tensor *ag_l1_penalty(ag_tensor *const *params, int n, double lambda);
/* lambda · Σ w²  (its gradient 2·lambda·w equals SGD's weight_decay = 2·lambda) */
AG_API ag_tensor *ag_l2_penalty(ag_tensor *const *params, int n, double lambda);
/* Elastic net as scikit-learn: lambda · (l1_ratio·Σ|w| + (1 − l1_ratio)/2 · Σ w²) */
AG_API ag_tensor *ag_elastic_net_penalty(ag_tensor *const *params, int n, double lambda, double l1_ratio);

#ifdef __cplusplus
}
#endif
#endif

/*
 * agrad/train.h - what a training loop needs besides the model and the
 * optimizer: metrics (accuracy, confusion matrix, precision / recall / F1,
 * MSE / MAE / R²), a progress display, early stopping with the best weights
 * kept, checkpoints that resume bit for bit, repeated runs over seeds and
 * per-epoch curves written as CSV or drawn as SVG.  docs/tutorial.md uses each
 * of them.
 *
 * Errors follow agrad/core.h: NULL, a non-zero ag_status, or NAN for the
 * functions that return a number, with a message in ag_last_error().  The
 * metrics pass a NULL tensor through as the ops do: they fail without a new
 * message when an earlier call failed (its message names the first failure).
 * Metrics read tensors without recording anything for autograd and count in
 * int64 / sum in double, so they are exact for any dataset size.  Objects
 * (ag_progress, ag_early_stopping, ag_history) are freed with their own
 * _free function; tensors they return belong to the innermost scope.
 */
#ifndef AGRAD_TRAIN_H
#define AGRAD_TRAIN_H

#include <stdio.h>
#include "core.h"
#include "state.h"
#include "nn.h"
#include "data.h"
#include "optim.h"
#include "dist.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- classification metrics (sklearn.metrics) ------------------------------------------- */
/* Predictions are int64 class ids [N], or float scores [N, C] (logits or
 * probabilities) whose row-wise argmax (the first on ties) is the predicted
 * class; targets are int64 class ids [N].  For one score per sample (binary
 * classification) or per label (multi-label) turn scores into ids with
 * ag_binarize first. */

/* int64 tensor of scores' shape holding 1 where score > threshold, else 0: 0.5 for
 * probabilities, 0 for logits.  NaN gives 0.  NULL with AG_ERR_DTYPE (not float), AG_ERR_NOMEM. */
AG_API ag_tensor *ag_binarize(const ag_tensor *scores, double threshold);
/* Fraction of samples whose predicted class is the target (sklearn accuracy_score).
 * NAN with AG_ERR_SHAPE (shapes that do not pair up), AG_ERR_DTYPE, AG_ERR_VALUE (no samples). */
AG_API double ag_accuracy(const ag_tensor *pred, const ag_tensor *target);
/* The confusion matrix, int64 [C, C]: entry [i, j] counts samples of true class i
 * predicted as j (sklearn's layout).  num_classes -1 takes C from the scores, or from
 * the largest id in pred and target plus 1.  NULL with the errors of ag_accuracy and
 * AG_ERR_INDEX for a class id outside [0, C). */
AG_API ag_tensor *ag_confusion_matrix(const ag_tensor *pred, const ag_tensor *target, int64_t num_classes);

/* Precision, recall, F1 and support of one class (or their average). */
typedef struct ag_prf {
    double precision; /* tp / (tp + fp) */
    double recall;    /* tp / (tp + fn) */
    double f1;        /* 2·p·r / (p + r) */
    int64_t support;  /* samples of the class (tp + fn); the total for an average */
} ag_prf;

/* How per-class figures are averaged (sklearn's average=). */
typedef enum ag_average {
    AG_AVERAGE_MACRO = 0, /* unweighted mean over the classes */
    AG_AVERAGE_WEIGHTED,  /* mean weighted by each class's support */
    AG_AVERAGE_MICRO      /* from the counts summed over classes (single-label: = accuracy) */
} ag_average;

/* Per-class accuracy from a confusion matrix [C, C] (any numeric dtype): acc[i] =
 * cm[i, i] / Σ_j cm[i, j], the share of class i's samples predicted right (its recall),
 * 0 for a class with no samples.  acc has room for C values.  Returns AG_OK, AG_ERR_ARG
 * (NULL), AG_ERR_SHAPE (not square 2-D), AG_ERR_VALUE (a negative count). */
AG_API ag_status ag_per_class_accuracy(const ag_tensor *cm, double *acc);
/* Precision, recall and F1 from a confusion matrix [C, C]: per class into
 * per_class[0 .. C-1] and averaged into *avg (either may be NULL).  A ratio whose
 * denominator is 0 is 0, as sklearn's zero_division=0; F1 is computed per class from
 * its precision and recall and then averaged, as sklearn.  Errors as
 * ag_per_class_accuracy, and AG_ERR_ARG for an unknown average. */
AG_API ag_status ag_precision_recall_f1(const ag_tensor *cm, ag_average average, ag_prf *per_class, ag_prf *avg);

/* Multi-label figures: scores [N, L] (float; label l is predicted for sample n where
 * scores[n, l] > threshold) against targets [N, L] of 0 / 1 (any dtype).
 * ag_multilabel_accuracy is the share of the N·L decisions that are right (1 - Hamming
 * loss), or with exact_match the share of samples whose L labels are all right (sklearn's
 * accuracy_score).  NAN with AG_ERR_SHAPE (shapes differ or are not 2-D), AG_ERR_DTYPE,
 * AG_ERR_VALUE (no samples, a target other than 0 or 1). */
AG_API double ag_multilabel_accuracy(const ag_tensor *scores, const ag_tensor *target, double threshold,
                                     bool exact_match);
/* Precision / recall / F1 per label (per_label[0 .. L-1]) and averaged (*avg), either
 * may be NULL; micro pools the counts of all labels.  Errors as ag_multilabel_accuracy. */
AG_API ag_status ag_multilabel_precision_recall_f1(const ag_tensor *scores, const ag_tensor *target,
                                                   double threshold, ag_average average, ag_prf *per_label,
                                                   ag_prf *avg);

/* ---- regression metrics ------------------------------------------------------------------ */
/* pred and target have one shape ([N] against [N, 1] is also accepted), any float
 * dtypes.  Outputs [N, K] are scored per column and the K scores averaged, as sklearn's
 * multioutput='uniform_average'.  NAN with AG_ERR_ARG (NULL), AG_ERR_SHAPE, AG_ERR_DTYPE,
 * AG_ERR_VALUE (no samples). */
/* mean (pred - target)² */
AG_API double ag_mse(const ag_tensor *pred, const ag_tensor *target);
/* mean |pred - target| */
AG_API double ag_mae(const ag_tensor *pred, const ag_tensor *target);
/* R² = 1 - Σ(target - pred)² / Σ(target - mean(target))²; a constant target column
 * scores 1 when predicted exactly and 0 otherwise (sklearn's force_finite). */
AG_API double ag_r2_score(const ag_tensor *pred, const ag_tensor *target);

/* ---- progress display ------------------------------------------------------------------- */
typedef struct ag_progress ag_progress;

typedef enum ag_progress_mode {
    AG_PROGRESS_AUTO = 0, /* BAR when the stream is a terminal (isatty), LINES otherwise */
    AG_PROGRESS_BAR,      /* a bar redrawn in place with \r, then one line per epoch */
    AG_PROGRESS_LINES,    /* one plain line per epoch, for logs and pipes */
    AG_PROGRESS_QUIET     /* nothing: timing and loss only */
} ag_progress_mode;

/* A display on out (stdout if NULL) of a training of `epochs` epochs of
 * steps_per_epoch steps each, starting at epoch 1.  The bar reads
 *     epoch 3/10 [=======>      ] 31/59  loss 0.4312  52.1k samples/s  ETA 0:12
 * (redrawn at most 10 times a second and at each epoch's last step; ETA is for the whole
 * training), and the epoch line
 *     epoch 3/10  loss 0.4312  52.1k samples/s  1.20 s  <extra>
 * NULL with AG_ERR_ARG (epochs or steps < 1), AG_ERR_NOMEM. */
AG_API ag_progress *ag_progress_new(FILE *out, int64_t epochs, int64_t steps_per_epoch, ag_progress_mode mode);
/* Starts counting at epoch (1-based), e.g. after resuming from a checkpoint. */
AG_API void ag_progress_set_epoch(ag_progress *p, int64_t epoch);
/* One step is done: its mean loss over its `samples` samples. */
AG_API void ag_progress_step(ag_progress *p, double loss, int64_t samples);
/* Ends the epoch: prints its line with `extra` appended (e.g. "val_acc=0.8812"; may be
 * NULL) and moves to the next epoch. */
AG_API void ag_progress_epoch_end(ag_progress *p, const char *extra);
/* The mean loss per sample of the last finished epoch (NAN before the first). */
AG_API double ag_progress_epoch_loss(const ag_progress *p);
/* Seconds since ag_progress_new (wall clock). */
AG_API double ag_progress_seconds(const ag_progress *p);
/* Frees p, ending a bar line left open.  NULL is ignored. */
AG_API void ag_progress_free(ag_progress *p);
/* A monotonic clock in seconds, for timing. */
AG_API double ag_seconds(void);

/* ---- early stopping ----------------------------------------------------------------------- */
typedef struct ag_early_stopping ag_early_stopping;

typedef enum ag_monitor_mode {
    AG_MONITOR_MIN = 0, /* lower is better (a loss) */
    AG_MONITOR_MAX      /* higher is better (an accuracy) */
} ag_monitor_mode;

typedef struct ag_early_stopping_options {
    ag_monitor_mode mode; /* AG_MONITOR_MIN */
    int patience;         /* 5: stop after this many epochs in a row without improvement (>= 0) */
    double min_delta;     /* 0: an improvement must beat the best by more than this (>= 0) */
    bool restore_best;    /* true: keep a copy of the best weights for ag_early_stopping_restore */
} ag_early_stopping_options;

/* The defaults above (Keras' EarlyStopping with restore_best_weights). */
AG_API ag_early_stopping_options ag_early_stopping_defaults(void);
/* Watches a validation metric of model (o NULL: the defaults).  NULL with AG_ERR_ARG
 * (NULL model, negative patience or min_delta, NaN), AG_ERR_NOMEM. */
AG_API ag_early_stopping *ag_early_stopping_new(ag_module *model, const ag_early_stopping_options *o);
/* Records one epoch's metric.  It improves when it beats the best by more than
 * min_delta (a NaN never does); then the best weights are copied (restore_best).
 * Returns 1 when training should stop (patience epochs in a row without improvement),
 * 0 to go on, -1 on error (AG_ERR_NOMEM copying the weights). */
AG_API int ag_early_stopping_step(ag_early_stopping *es, double metric);
/* Whether the last step improved on the best. */
AG_API bool ag_early_stopping_improved(const ag_early_stopping *es);
/* The best metric so far (±INFINITY before any), and the epoch (1-based count of
 * steps) it came from, 0 if none. */
AG_API double ag_early_stopping_best(const ag_early_stopping *es);
AG_API int64_t ag_early_stopping_best_epoch(const ag_early_stopping *es);
/* Copies the best weights back into the model.  AG_OK; AG_ERR_ARG without
 * restore_best or before an improvement. */
AG_API ag_status ag_early_stopping_restore(ag_early_stopping *es);
/* Saves / restores the counters and the best weights as "early_stopping.*" entries
 * (into a watcher of the same model and options).  Loading checks the counters (whole,
 * >= 0, the best epoch and the epochs without improvement within the epochs) and the
 * best value (not NaN).  AG_OK, AG_ERR_ARG, AG_ERR_VALUE, AG_ERR_SHAPE, AG_ERR_NOMEM;
 * nothing changes unless everything fits. */
AG_API ag_status ag_early_stopping_state_dict(const ag_early_stopping *es, ag_state_dict *sd);
AG_API ag_status ag_early_stopping_load_state_dict(ag_early_stopping *es, const ag_state_dict *sd);
/* Frees es and its copy of the weights.  NULL is ignored. */
AG_API void ag_early_stopping_free(ag_early_stopping *es);

/* ---- curves: a table of per-epoch values --------------------------------------------------- */
typedef struct ag_history ag_history;

/* A table with ncols named columns (names copied), e.g. {"train_loss", "val_acc"}.
 * NULL with AG_ERR_ARG (ncols < 1, a NULL, empty or repeated name, a name with a
 * comma, quote or line break), AG_ERR_NOMEM. */
AG_API ag_history *ag_history_new(int ncols, const char *const *names);
/* Appends one row (the next epoch) of ncols values.  AG_OK, AG_ERR_ARG, AG_ERR_NOMEM. */
AG_API ag_status ag_history_append(ag_history *h, const double *values);
/* Number of rows (0 for NULL) and columns, and column i's name (NULL out of range). */
AG_API int64_t ag_history_len(const ag_history *h);
AG_API int ag_history_num_columns(const ag_history *h);
AG_API const char *ag_history_column_name(const ag_history *h, int i);
/* The value of column `name` at row (0-based; negative counts from the end); NAN with
 * AG_ERR_ARG (unknown column) or AG_ERR_INDEX. */
AG_API double ag_history_get(const ag_history *h, int64_t row, const char *name);
/* Writes the table as CSV, "epoch,<names>" then one line per row numbered from 1,
 * values with 9 significant digits (NaN as "nan"), atomically (a temporary file, then
 * renamed).  AG_OK, AG_ERR_ARG, AG_ERR_IO, AG_ERR_NOMEM. */
AG_API ag_status ag_history_save_csv(const ag_history *h, const char *path);
/* Draws every column against the epoch (1, 2, ...) as an SVG line chart with a
 * legend (agrad/plot.h), written atomically to path: columns whose name contains
 * "loss" on the left, the others (accuracies, learning rates) on the right, or
 * all in one chart when they are of one kind.  title may be NULL.  AG_OK, AG_ERR_ARG,
 * AG_ERR_NOMEM, AG_ERR_IO. */
AG_API ag_status ag_history_plot(const ag_history *h, const char *path, const char *title);
/* Saves / restores the rows as "history.<name>" float64 [len] entries (into a table
 * with the same columns).  AG_OK, AG_ERR_ARG, AG_ERR_VALUE, AG_ERR_NOMEM. */
AG_API ag_status ag_history_state_dict(const ag_history *h, ag_state_dict *sd);
AG_API ag_status ag_history_load_state_dict(ag_history *h, const ag_state_dict *sd);
/* Frees h.  NULL is ignored. */
AG_API void ag_history_free(ag_history *h);

/* ---- checkpoints ---------------------------------------------------------------------------- */
/* Everything a training loop needs to continue where it stopped.  Each non-NULL part
 * is saved and restored; the global generator (ag_get_rng_state) always is.  After
 * ag_checkpoint_load the continued run gives bit-identical results to the run that was
 * not interrupted, given the same program (same model, optimizer, scheduler and loader
 * construction). */
typedef struct ag_checkpoint {
    ag_module *model;                  /* required: "model.<parameter or buffer name>" */
    ag_optimizer *optimizer;           /* "optimizer.param_groups.*", "optimizer.state.*" */
    ag_scheduler *scheduler;           /* "scheduler.*" */
    ag_loader *loader;                 /* "loader.*" (epoch, order, position, generator) */
    ag_early_stopping *early_stopping; /* "early_stopping.*" */
    ag_history *history;               /* "history.*" */
    int64_t epoch, step;               /* the loop's counters: "checkpoint.epoch", "checkpoint.step" */
    ag_comm *comm;                     /* data-parallel training (agrad/dist.h), or NULL: every rank
                                          calls save and load; "rng.ranks" [size, 4] holds every
                                          rank's generator, rank 0 alone writes the file, and each
                                          rank restores its own generator */
} ag_checkpoint;

/* Writes one safetensors file holding every part, atomically (a temporary file beside
 * path, fsynced, renamed over it, the directory fsynced), so neither a crash nor a
 * power loss leaves a torn checkpoint; on failure the old file is untouched.  The
 * global generator goes in as "rng.global".  AG_OK, AG_ERR_ARG, AG_ERR_FORMAT (a name
 * a safetensors file cannot hold), AG_ERR_IO, AG_ERR_NOMEM. */
AG_API ag_status ag_checkpoint_save(const ag_checkpoint *c, const char *path);
/* With c->comm: a collective (every rank calls it); the generators are gathered,
 * rank 0 writes, and every rank returns rank 0's status once the file is written. */
/* Reads path and restores every non-NULL part of c, the global generator and the
 * counters.  All or nothing: every part is checked (shapes, and every value against
 * its rule: a NaN or negative step count, a negative second moment, ...) before any
 * is changed, so on any failure (a missing part, shapes that differ, damaged values)
 * every part is left as it was.  AG_OK, AG_ERR_ARG, AG_ERR_IO, AG_ERR_FORMAT,
 * AG_ERR_SHAPE, AG_ERR_VALUE, AG_ERR_NOMEM. */
AG_API ag_status ag_checkpoint_load(ag_checkpoint *c, const char *path);
/* With c->comm: every rank reads path and restores the shared parts and its own
 * generator from "rng.ranks" (AG_ERR_SHAPE when the file holds another number of
 * ranks' generators; a file saved without comm gives every rank "rng.global"). */

/* ---- repeated runs ------------------------------------------------------------------------------ */
/* One run: trains from scratch with seed and writes its final figures into metrics. */
typedef ag_status (*ag_run_fn)(void *ctx, uint64_t seed, double *metrics);
/* Runs fn `runs` times with seeds first_seed, first_seed + 1, ..., seeding the global
 * generator (ag_manual_seed) before each, and writes the mean and the sample standard
 * deviation (n - 1; 0 for one run) of each of the nmetrics figures; values (runs ×
 * nmetrics, row per run; may be NULL) gets every run's figures.  Returns AG_OK,
 * AG_ERR_ARG (runs or nmetrics < 1, NULL fn, mean or std), or the status of the first
 * failing run. */
AG_API ag_status ag_repeat_runs(ag_run_fn fn, void *ctx, int runs, uint64_t first_seed, int nmetrics,
                                double *mean, double *std, double *values);

/* ---- stochastic weight averaging (torch.optim.swa_utils) ---------------------------- */
/* AveragedModel: a running average of a model's parameters (and, with use_buffers, of its
 * buffers too) kept in `average`, a second module of the same architecture (agrad cannot
 * deep-copy a module: build a twin with the same constructor).  The rule: avg_fn when set
 * (the new value of one tensor from float64 copies of the average's and the model's tensor
 * and the number of updates so far; a tensor of that shape, made in the scope it runs in,
 * under no-grad; it is copied into the average in the average's dtype), else the exponential moving average decay·avg + (1 − decay)·θ when
 * ema_decay > 0 (PyTorch 2's get_ema_avg_fn; torch 1.13 takes it as an avg_fn), else the
 * SWA equal average avg + (θ − avg)/(n + 1).  The first update copies. */
typedef ag_tensor *(*ag_avg_fn)(ag_tensor *averaged, ag_tensor *current, int64_t num_averaged, void *ctx);
typedef struct ag_averaged_model_options {
    ag_avg_fn avg_fn;
    void *ctx;
    double ema_decay; /* in [0, 1); 0: SWA */
    bool use_buffers;
} ag_averaged_model_options;
typedef struct ag_averaged_model ag_averaged_model;
/* All zero: SWA over the parameters. */
AG_API ag_averaged_model_options ag_averaged_model_defaults(void);
/* Copies model's parameters and buffers into `average` (PyTorch's deepcopy), which the new
 * AveragedModel owns from now on (freed with it, also when this fails).  o NULL: defaults.
 * NULL with AG_ERR_ARG (NULL or identical modules, ema_decay outside [0, 1)) or the error of
 * loading model's state dict into average (another architecture). */
AG_API ag_averaged_model *ag_averaged_model_new(ag_module *model, ag_module *average,
                                                const ag_averaged_model_options *o);
/* update_parameters(model): averages model's tensors into the average's and counts the
 * update.  AG_ERR_ARG / AG_ERR_SHAPE when model's parameters and buffers differ from the
 * average's in number, names or shapes (nothing is counted then). */
AG_API ag_status ag_averaged_model_update(ag_averaged_model *am, ag_module *model);
/* The averaged module (borrowed; forward it, ag_update_bn it, save it), and n_averaged. */
AG_API ag_module *ag_averaged_model_module(const ag_averaged_model *am);
AG_API int64_t ag_averaged_model_n_averaged(const ag_averaged_model *am);
/* PyTorch's AveragedModel.state_dict(): "n_averaged" and "module.<name>" (the live tensors).
 * load checks n_averaged (AG_ERR_VALUE) and loads the module strictly. */
AG_API ag_status ag_averaged_model_state_dict(const ag_averaged_model *am, ag_state_dict *sd);
AG_API ag_status ag_averaged_model_load_state_dict(ag_averaged_model *am, const ag_state_dict *sd);
AG_API void ag_averaged_model_free(ag_averaged_model *am);
/* update_bn(loader, model): recomputes the running mean and variance of every BatchNorm in
 * model (with tracked statistics) as the exact average over one epoch of the loader's
 * inputs: they are reset (0, 1, num_batches_tracked 0), momentum is None during the pass,
 * the model runs in training mode under no-grad on each batch's x (the loader is reset
 * first; targets are not read), then momenta and the train/eval mode are restored.  AG_OK
 * (also with no BatchNorm: nothing runs), AG_ERR_ARG, or the loader's or forward's error. */
AG_API ag_status ag_update_bn(ag_loader *loader, ag_module *model);

#ifdef __cplusplus
}
#endif
#endif

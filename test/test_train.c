/*
 * Training utilities (agrad/train.h): metrics on hand-computed cases, the
 * progress display in each mode, early stopping (patience, min_delta, modes,
 * restoring the best weights), curves as CSV, repeated runs, the generator and
 * loader states, and checkpoints: a run resumed from a checkpoint, mid-epoch,
 * continues bit for bit as the run that was never interrupted; a checkpoint
 * that does not fit changes nothing.
 */
#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "agrad/agrad.h"
#include "core/internal.h"
#include "tap.h"
#include "failing_alloc.h"
#include "state_damage.h"

static char dir[] = "/tmp/agrad-train-XXXXXX";

static const char *path_of(const char *name) {
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

static bool error_is(ag_status s, const char *fragment) {
    return ag_last_status() == s && strstr(ag_last_error(), fragment) != NULL;
}

static ag_tensor *ids(const int64_t *v, int64_t n) { return ag_from_data(v, AG_SHAPE(n), AG_I64); }

/* ---- metrics ------------------------------------------------------------------------------ */
static void test_classification(void) {
    ag_scope_begin();
    /* 8 samples, 3 classes: confusion [[2,0,0],[0,2,1],[0,1,2]] */
    int64_t p8[] = {0, 1, 2, 2, 1, 0, 1, 2}, t8[] = {0, 1, 1, 2, 1, 0, 2, 2};
    ag_tensor *p = ids(p8, 8), *t = ids(t8, 8);
    close_to(ag_accuracy(p, t), 0.75, 1e-15, "accuracy 6/8");
    ag_tensor *cm = ag_confusion_matrix(p, t, -1);
    int64_t want[9] = {2, 0, 0, 0, 2, 1, 0, 1, 2}, got[9] = {0};
    ok(cm && ag_size(cm, 0) == 3 && ag_copy_to(cm, got, 9, AG_I64) == AG_OK && memcmp(got, want, sizeof want) == 0,
       "confusion matrix: rows are the true classes, columns the predicted ones");
    double acc[3];
    ok(ag_per_class_accuracy(cm, acc) == AG_OK && acc[0] == 1 && fabs(acc[1] - 2.0 / 3) < 1e-15 &&
           fabs(acc[2] - 2.0 / 3) < 1e-15,
       "per-class accuracy 1, 2/3, 2/3");
    ag_prf avg, per[3];
    ok(ag_precision_recall_f1(cm, AG_AVERAGE_MACRO, per, &avg) == AG_OK && fabs(avg.precision - 7.0 / 9) < 1e-15 &&
           avg.support == 8 && per[1].support == 3,
       "macro precision 7/9, supports");
    ok(ag_precision_recall_f1(cm, AG_AVERAGE_WEIGHTED, NULL, &avg) == AG_OK && fabs(avg.f1 - 0.75) < 1e-15,
       "weighted F1 0.75");

    /* 5 samples where precision and recall differ: cm [[1,0,0],[1,1,1],[1,0,0]] */
    int64_t p5[] = {0, 0, 0, 1, 2}, t5[] = {0, 1, 2, 1, 1};
    cm = ag_confusion_matrix(ids(p5, 5), ids(t5, 5), 3);
    ok(ag_precision_recall_f1(cm, AG_AVERAGE_MACRO, per, &avg) == AG_OK, "precision_recall_f1 runs");
    close_to(per[0].precision, 1.0 / 3, 1e-15, "class 0: precision 1/3");
    close_to(per[0].recall, 1.0, 1e-15, "class 0: recall 1");
    close_to(per[0].f1, 0.5, 1e-15, "class 0: F1 1/2");
    close_to(per[1].precision, 1.0, 1e-15, "class 1: precision 1");
    close_to(per[1].recall, 1.0 / 3, 1e-15, "class 1: recall 1/3");
    ok(per[2].precision == 0 && per[2].recall == 0 && per[2].f1 == 0, "class 2: no true positive gives 0, 0, 0");
    close_to(avg.precision, 4.0 / 9, 1e-15, "macro precision 4/9");
    close_to(avg.recall, 4.0 / 9, 1e-15, "macro recall 4/9");
    close_to(avg.f1, 1.0 / 3, 1e-15, "macro F1 1/3");
    ag_precision_recall_f1(cm, AG_AVERAGE_WEIGHTED, NULL, &avg);
    ok(fabs(avg.precision - 2.0 / 3) < 1e-15 && fabs(avg.recall - 0.4) < 1e-15 && fabs(avg.f1 - 0.4) < 1e-15,
       "weighted precision 2/3, recall 0.4, F1 0.4");
    ag_precision_recall_f1(cm, AG_AVERAGE_MICRO, NULL, &avg);
    ok(fabs(avg.precision - 0.4) < 1e-15 && fabs(avg.recall - 0.4) < 1e-15 && fabs(avg.f1 - 0.4) < 1e-15,
       "micro averages equal the accuracy 0.4");
    ok(ag_per_class_accuracy(ag_zeros(AG_SHAPE(2, 2), AG_I64), acc) == AG_OK && acc[0] == 0 && acc[1] == 0,
       "a class without samples has accuracy 0");

    /* Scores: the argmax of each row, the first one on ties. */
    float s[] = {0.1f, 0.7f, 0.2f, 0.5f, 0.5f, 0.0f, -1, -2, 3};
    int64_t ts[] = {1, 1, 2};
    ag_tensor *scores = ag_from_data(s, AG_SHAPE(3, 3), AG_F32);
    close_to(ag_accuracy(scores, ids(ts, 3)), 2.0 / 3, 1e-15, "accuracy from scores [N, C]; a tie picks the first class");
    cm = ag_confusion_matrix(scores, ids(ts, 3), -1);
    ok(cm && ag_size(cm, 0) == 3 && ag_get(cm, (int64_t[]){1, 0}) == 1, "confusion matrix from scores");
    float pb[] = {0.2f, 0.5f, 0.51f, NAN};
    ag_tensor *b = ag_binarize(ag_from_data(pb, AG_SHAPE(4), AG_F32), 0.5);
    int64_t bv[4] = {9, 9, 9, 9};
    ok(b && ag_dtype_of(b) == AG_I64 && ag_copy_to(b, bv, 4, AG_I64) == AG_OK && bv[0] == 0 && bv[1] == 0 &&
           bv[2] == 1 && bv[3] == 0,
       "binarize: 1 where score > threshold, NaN gives 0");

    /* Errors */
    ok(isnan(ag_accuracy(p, ids(t5, 5))) && error_is(AG_ERR_SHAPE, "do not pair up"), "accuracy: lengths differ");
    ok(isnan(ag_accuracy(p, ag_zeros(AG_SHAPE(8), AG_F32))) && error_is(AG_ERR_DTYPE, "int64 class ids"),
       "accuracy: float targets");
    ok(isnan(ag_accuracy(ag_zeros(AG_SHAPE(8), AG_F32), t)) && error_is(AG_ERR_DTYPE, "ag_binarize"),
       "accuracy: one score per sample points to ag_binarize");
    ok(isnan(ag_accuracy(ag_zeros(AG_SHAPE(0), AG_I64), ag_zeros(AG_SHAPE(0), AG_I64))) &&
           error_is(AG_ERR_VALUE, "no samples"),
       "accuracy: no samples");
    ok(!ag_confusion_matrix(p, t, 2) && error_is(AG_ERR_INDEX, "outside [0, 2)"), "confusion_matrix: class out of range");
    ok(!ag_confusion_matrix(p, t, 0) && error_is(AG_ERR_ARG, "num_classes"), "confusion_matrix: num_classes 0");
    ok(ag_per_class_accuracy(ag_zeros(AG_SHAPE(2, 3), AG_I64), acc) == AG_ERR_SHAPE, "per_class_accuracy: not square");
    ok(ag_per_class_accuracy(ag_full(AG_SHAPE(1, 1), -1, AG_F32), acc) == AG_ERR_VALUE && error_is(AG_ERR_VALUE, ">= 0"),
       "per_class_accuracy: negative count");
    ok(ag_precision_recall_f1(cm, (ag_average)7, NULL, &avg) == AG_ERR_ARG, "precision_recall_f1: unknown average");
    ok(!ag_binarize(p, 0.5) && error_is(AG_ERR_DTYPE, "binarize"), "binarize: int64 scores");
    ag_scope_end();
}

static void test_multilabel(void) {
    ag_scope_begin();
    float s[] = {0.9f, 0.2f, 0.6f, 0.1f, 0.8f, 0.4f, 0.7f, 0.6f, 0.3f};
    float y[] = {1, 0, 0, 0, 1, 1, 1, 0, 0};
    ag_tensor *scores = ag_from_data(s, AG_SHAPE(3, 3), AG_F32), *target = ag_from_data(y, AG_SHAPE(3, 3), AG_F32);
    close_to(ag_multilabel_accuracy(scores, target, 0.5, false), 2.0 / 3, 1e-15, "multi-label: 6 of 9 decisions right");
    ok(ag_multilabel_accuracy(scores, target, 0.5, true) == 0, "multi-label: no sample exactly right");
    ag_prf per[3], avg;
    ok(ag_multilabel_precision_recall_f1(scores, target, 0.5, AG_AVERAGE_MACRO, per, &avg) == AG_OK, "multi-label P/R/F1 runs");
    ok(per[0].precision == 1 && per[0].recall == 1 && per[0].f1 == 1 && per[0].support == 2, "label 0: perfect");
    ok(per[1].precision == 0.5 && per[1].recall == 1 && fabs(per[1].f1 - 2.0 / 3) < 1e-15, "label 1: P 1/2, R 1, F1 2/3");
    ok(per[2].precision == 0 && per[2].recall == 0 && per[2].f1 == 0, "label 2: 0");
    ok(fabs(avg.precision - 0.5) < 1e-15 && fabs(avg.recall - 2.0 / 3) < 1e-15 && fabs(avg.f1 - 5.0 / 9) < 1e-15,
       "macro: P 1/2, R 2/3, F1 5/9");
    ag_multilabel_precision_recall_f1(scores, target, 0.5, AG_AVERAGE_MICRO, NULL, &avg);
    ok(fabs(avg.precision - 0.6) < 1e-15 && fabs(avg.recall - 0.75) < 1e-15 && fabs(avg.f1 - 2.0 / 3) < 1e-15,
       "micro: P 3/5, R 3/4, F1 2/3");
    close_to(ag_multilabel_accuracy(ag_sub_scalar(scores, 0.5), target, 0, false), 2.0 / 3, 1e-15,
             "logits with threshold 0 decide as probabilities with 0.5");
    ok(isnan(ag_multilabel_accuracy(scores, ag_full(AG_SHAPE(3, 3), 2, AG_F32), 0.5, false)) &&
           error_is(AG_ERR_VALUE, "0 or 1"),
       "multi-label: targets other than 0 / 1");
    ok(isnan(ag_multilabel_accuracy(scores, ag_zeros(AG_SHAPE(3, 2), AG_F32), 0.5, false)) &&
           error_is(AG_ERR_SHAPE, "[N, L]"),
       "multi-label: shapes differ");
    ag_scope_end();
}

static void test_regression(void) {
    ag_scope_begin();
    float p[] = {1, 2, 3, 4}, t[] = {1.5f, 2, 2, 5};
    ag_tensor *pred = ag_from_data(p, AG_SHAPE(4), AG_F32), *target = ag_from_data(t, AG_SHAPE(4), AG_F32);
    close_to(ag_mse(pred, target), 0.5625, 1e-15, "MSE 0.5625");
    close_to(ag_mae(pred, target), 0.625, 1e-15, "MAE 0.625");
    close_to(ag_r2_score(pred, target), 1 - 2.25 / 7.6875, 1e-15, "R² = 1 - 2.25/7.6875");
    close_to(ag_mse(ag_reshape(pred, AG_SHAPE(4, 1)), target), 0.5625, 1e-15, "[N, 1] against [N]");
    /* Two outputs: the second column predicted exactly (R² 1), the scores averaged. */
    float p2[] = {1, 0, 2, 1, 3, 2, 4, 3}, t2[] = {1.5f, 0, 2, 1, 2, 2, 5, 3};
    ag_tensor *pp = ag_from_data(p2, AG_SHAPE(4, 2), AG_F32), *tt = ag_from_data(t2, AG_SHAPE(4, 2), AG_F32);
    close_to(ag_r2_score(pp, tt), (1 - 2.25 / 7.6875 + 1) / 2, 1e-15, "R² per output, averaged");
    close_to(ag_mse(pp, tt), 0.5625 / 2, 1e-15, "MSE per output, averaged");
    ag_tensor *c = ag_full(AG_SHAPE(3), 2, AG_F64);
    ok(ag_r2_score(c, c) == 1 && ag_r2_score(ag_zeros(AG_SHAPE(3), AG_F64), c) == 0,
       "constant target: R² 1 when exact, 0 otherwise");
    ok(isnan(ag_mse(pred, ag_zeros(AG_SHAPE(3), AG_F32))) && error_is(AG_ERR_SHAPE, "one shape"), "mse: shapes differ");
    ok(isnan(ag_mae(pred, ag_zeros(AG_SHAPE(4), AG_I64))) && error_is(AG_ERR_DTYPE, "float"), "mae: int64 target");
    ok(isnan(ag_r2_score(ag_mul(pred, ag_zeros(AG_SHAPE(2), AG_F32)), target)) && error_is(AG_ERR_SHAPE, "mul"),
       "a NULL input from a failed op passes through: its message stays");
    ag_clear_error();
    ok(isnan(ag_r2_score(NULL, pred)) && error_is(AG_ERR_ARG, "r2_score: NULL argument"), "r2_score: NULL, nothing failed before");
    ag_scope_end();
}

/* ---- progress --------------------------------------------------------------------------------- */
static char *slurp_stream(FILE *f) {
    long n = ftell(f);
    char *s = calloc((size_t)n + 1, 1);
    rewind(f);
    if (s && fread(s, 1, (size_t)n, f) != (size_t)n) s[0] = '\0';
    return s;
}

static void test_progress(void) {
    FILE *f = tmpfile();
    ag_progress *p = ag_progress_new(f, 2, 3, AG_PROGRESS_LINES);
    ok(p != NULL, "progress_new");
    ag_progress_step(p, 1.0, 10);
    ag_progress_step(p, 2.0, 10);
    ag_progress_step(p, 4.0, 20);
    ok(isnan(ag_progress_epoch_loss(p)), "no epoch loss before the first epoch ends");
    ag_progress_epoch_end(p, "val_acc=0.5000");
    close_to(ag_progress_epoch_loss(p), 2.75, 1e-15, "the epoch loss is the mean per sample (weighted by batch size)");
    ag_progress_free(p);
    char *s = slurp_stream(f);
    ok(s && strncmp(s, "epoch 1/2  loss 2.7500  ", 24) == 0 && strstr(s, "samples/s") && strstr(s, "val_acc=0.5000\n") &&
           !strchr(s, '\r'),
       "lines mode: one plain line per epoch");
    if (s) diag("%.*s", (int)strcspn(s, "\n"), s);
    free(s);
    fclose(f);

    f = tmpfile();
    p = ag_progress_new(f, 2, 3, AG_PROGRESS_BAR);
    ag_progress_set_epoch(p, 2);
    for (int i = 0; i < 3; i++) ag_progress_step(p, 0.5, 8);
    ag_progress_epoch_end(p, NULL);
    ag_progress_free(p);
    s = slurp_stream(f);
    ok(s && strstr(s, "\repoch 2/2 [") && strstr(s, "3/3  loss 0.5000") && strstr(s, "ETA 0:00") &&
           strstr(s, "\repoch 2/2  loss 0.5000"),
       "bar mode: redrawn with \\r, starts at the epoch set, ETA, then the epoch line");
    free(s);
    fclose(f);

    f = tmpfile();
    p = ag_progress_new(f, 1, 1, AG_PROGRESS_QUIET);
    ag_progress_step(p, 3, 1);
    ag_progress_epoch_end(p, "x=1");
    ok(ftell(f) == 0 && ag_progress_epoch_loss(p) == 3 && ag_progress_seconds(p) >= 0, "quiet mode prints nothing");
    ag_progress_free(p);
    fclose(f);
    f = tmpfile();
    p = ag_progress_new(f, 1, 1, AG_PROGRESS_AUTO);
    ag_progress_step(p, 1, 1);
    ag_progress_epoch_end(p, NULL);
    ag_progress_free(p);
    s = slurp_stream(f);
    ok(s && !strchr(s, '\r') && strstr(s, "epoch 1/1"), "auto mode writes lines to a file (not a terminal)");
    free(s);
    fclose(f);
    ok(!ag_progress_new(NULL, 0, 1, AG_PROGRESS_AUTO) && error_is(AG_ERR_ARG, "at least one epoch"), "progress_new: 0 epochs");
    double t0 = ag_seconds();
    ok(ag_seconds() >= t0, "ag_seconds is monotonic");
}

/* ---- early stopping ------------------------------------------------------------------------- */
static void set_weights(ag_module *m, double v) {
    for (int i = 0; i < ag_module_num_parameter_tensors(m); i++) {
        ag_tensor *w = ag_module_parameter(m, i, NULL, 0);
        ag_no_grad_begin();
        ag_fill_(w, v);
        ag_no_grad_end();
    }
}

static void test_early_stopping(void) {
    ag_module *m = ag_nn_linear(2, 1, true);
    ag_early_stopping_options o = ag_early_stopping_defaults();
    ok(o.mode == AG_MONITOR_MIN && o.patience == 5 && o.min_delta == 0 && o.restore_best, "defaults");
    o.patience = 2;
    o.min_delta = 0.1;
    ag_early_stopping *es = ag_early_stopping_new(m, &o);
    ok(ag_early_stopping_restore(es) == AG_ERR_ARG && error_is(AG_ERR_ARG, "no epoch improved"), "nothing to restore yet");
    double metric[] = {1.0, 0.95, 0.85, 0.8, 0.9};
    int want[] = {0, 0, 0, 0, 1}, got[5];
    bool improved[5];
    for (int e = 0; e < 5; e++) {
        set_weights(m, e + 1);
        got[e] = ag_early_stopping_step(es, metric[e]);
        improved[e] = ag_early_stopping_improved(es);
    }
    ok(memcmp(got, want, sizeof got) == 0, "stops at the 2nd epoch in a row without improvement");
    ok(improved[0] && !improved[1] && improved[2] && !improved[3] && !improved[4],
       "min_delta 0.1: 0.95 does not improve on 1.0, 0.85 does");
    ok(ag_early_stopping_best(es) == 0.85 && ag_early_stopping_best_epoch(es) == 3, "best 0.85 at epoch 3");
    ok(ag_early_stopping_restore(es) == AG_OK && ag_item(ag_module_get_parameter(m, "bias")) == 3,
       "restore puts back the weights of epoch 3");

    /* Resume: a new watcher loaded from the state dict goes on the same way. */
    ag_state_dict *sd = ag_state_dict_new();
    ag_early_stopping *es2 = ag_early_stopping_new(m, &o);
    ok(ag_early_stopping_state_dict(es, sd) == AG_OK && ag_early_stopping_load_state_dict(es2, sd) == AG_OK &&
           ag_early_stopping_best_epoch(es2) == 3 && ag_early_stopping_step(es2, 0.9) == 1,
       "state dict round trip keeps the counters");
    set_weights(m, 0);
    ok(ag_early_stopping_restore(es2) == AG_OK && ag_item(ag_module_get_parameter(m, "bias")) == 3,
       "and the best weights");
    ag_early_stopping_free(es2);
    ag_module *other = ag_nn_linear(3, 1, true);
    es2 = ag_early_stopping_new(other, &o);
    ok(ag_early_stopping_load_state_dict(es2, sd) == AG_ERR_SHAPE && error_is(AG_ERR_SHAPE, "early_stopping.weights.weight") &&
           ag_early_stopping_best_epoch(es2) == 0,
       "weights of another model are refused and nothing changes");
    ag_early_stopping_free(es2);
    ag_module_free(other);
    ag_state_dict_free(sd);
    ag_early_stopping_free(es);

    /* mode max, patience 0, NaN */
    o = ag_early_stopping_defaults();
    o.mode = AG_MONITOR_MAX;
    o.patience = 1;
    o.restore_best = false;
    es = ag_early_stopping_new(m, &o);
    ok(ag_early_stopping_step(es, NAN) == 1 && ag_early_stopping_best_epoch(es) == 0, "NaN never improves");
    ok(ag_early_stopping_step(es, 0.5) == 0 && ag_early_stopping_step(es, 0.6) == 0 && ag_early_stopping_best(es) == 0.6,
       "max mode: higher is better");
    ok(ag_early_stopping_step(es, 0.6) == 1, "max mode: equal is no improvement; patience 1 stops");
    ok(ag_early_stopping_restore(es) == AG_ERR_ARG && error_is(AG_ERR_ARG, "restore_best is off"),
       "no weights kept without restore_best");
    ag_early_stopping_free(es);
    o.patience = -1;
    ok(!ag_early_stopping_new(m, &o) && error_is(AG_ERR_ARG, "patience"), "negative patience");
    ok(!ag_early_stopping_new(NULL, NULL) && error_is(AG_ERR_ARG, "model is NULL"), "NULL model");
    ag_module_free(m);
}

/* ---- curves ------------------------------------------------------------------------------------ */
static void test_history(void) {
    const char *names[] = {"train_loss", "val_acc"};
    ag_history *h = ag_history_new(2, names);
    ok(h && ag_history_num_columns(h) == 2 && strcmp(ag_history_column_name(h, 1), "val_acc") == 0, "history_new");
    for (int e = 0; e < 40; e++) ag_history_append(h, (double[]){1.0 / (e + 1), e == 1 ? NAN : 0.5 + e / 100.0});
    ok(ag_history_len(h) == 40 && ag_history_get(h, 0, "train_loss") == 1 && ag_history_get(h, -1, "val_acc") == 0.89,
       "rows grow; negative rows count from the end");
    ok(isnan(ag_history_get(h, 40, "val_acc")) && error_is(AG_ERR_INDEX, "row 40"), "row out of range");
    ok(isnan(ag_history_get(h, 0, "nope")) && error_is(AG_ERR_ARG, "no column"), "unknown column");
    ok(ag_history_save_csv(h, path_of("curves.csv")) == AG_OK, "save_csv");
    FILE *f = fopen(path_of("curves.csv"), "r");
    char line[3][128] = {{0}};
    for (int i = 0; f && i < 3; i++)
        if (!fgets(line[i], sizeof line[i], f)) break;
    if (f) fclose(f);
    ok(strcmp(line[0], "epoch,train_loss,val_acc\n") == 0 && strcmp(line[1], "1,1,0.5\n") == 0 &&
           strcmp(line[2], "2,0.5,nan\n") == 0,
       "CSV: a header, then one numbered row per epoch");
    ok(ag_history_plot(h, path_of("curves.svg"), "training") == AG_OK, "history_plot");
    f = fopen(path_of("curves.svg"), "r");
    char svg[1 << 16] = "";
    size_t got = f ? fread(svg, 1, sizeof svg - 1, f) : 0;
    svg[got] = '\0';
    if (f) fclose(f);
    ok(strstr(svg, "<svg") && strstr(svg, "train_loss") && strstr(svg, "val_acc") && strstr(svg, "training"),
       "the SVG holds both curves with their legend and the title");
    ok(ag_history_plot(h, NULL, NULL) == AG_ERR_ARG && error_is(AG_ERR_ARG, "history_plot"), "history_plot: NULL path");
    ag_state_dict *sd = ag_state_dict_new();
    ag_history *h2 = ag_history_new(2, names);
    ok(ag_history_state_dict(h, sd) == AG_OK && ag_history_load_state_dict(h2, sd) == AG_OK && ag_history_len(h2) == 40 &&
           ag_history_get(h2, 39, "train_loss") == 1.0 / 40,
       "state dict round trip");
    ag_history_free(h2);
    h2 = ag_history_new(1, (const char *[]){"other"});
    ok(ag_history_load_state_dict(h2, sd) == AG_ERR_ARG && ag_history_len(h2) == 0, "other columns: refused");
    ag_history_free(h2);
    ag_state_dict_free(sd);
    ag_history_free(h);
    ok(!ag_history_new(2, (const char *[]){"a", "a"}) && error_is(AG_ERR_ARG, "repeated"), "repeated name");
    ok(!ag_history_new(1, (const char *[]){"a,b"}) && error_is(AG_ERR_ARG, "commas"), "name with a comma");
}

/* ---- repeated runs ----------------------------------------------------------------------------- */
static ag_status one_run(void *ctx, uint64_t seed, double *metrics) {
    int *calls = ctx;
    ++*calls;
    ag_scope_begin();
    metrics[0] = (double)seed;
    metrics[1] = ag_item(ag_rand(AG_SCALAR_SHAPE, AG_F64));
    ag_scope_end();
    return seed == 99 ? ag__fail(AG_ERR_VALUE, "one_run: seed 99 fails") : AG_OK;
}

static void test_repeat_runs(void) {
    int calls = 0;
    double mean[2], std[2], values[6];
    ok(ag_repeat_runs(one_run, &calls, 3, 10, 2, mean, std, values) == AG_OK && calls == 3, "three runs");
    ok(mean[0] == 11 && std[0] == 1, "mean and sample std of 10, 11, 12: 11 ± 1");
    ag_manual_seed(11);
    ag_scope_begin();
    ok(values[2] == 11 && values[3] == ag_item(ag_rand(AG_SCALAR_SHAPE, AG_F64)), "each run starts from ag_manual_seed(seed)");
    ag_scope_end();
    ok(ag_repeat_runs(one_run, &calls, 1, 5, 2, mean, std, NULL) == AG_OK && std[0] == 0, "one run: std 0");
    ok(ag_repeat_runs(one_run, &calls, 3, 98, 2, mean, std, NULL) == AG_ERR_VALUE && error_is(AG_ERR_VALUE, "seed 99"),
       "the first failing run's status comes back");
    ok(ag_repeat_runs(one_run, &calls, 0, 0, 2, mean, std, NULL) == AG_ERR_ARG, "0 runs");
}

/* ---- generator state ------------------------------------------------------------------------------ */
static void test_rng_state(void) {
    ag_scope_begin();
    ag_manual_seed(123);
    ag_tensor *state = ag_get_rng_state();
    ok(state && ag_dtype_of(state) == AG_I64 && ag_numel(state) == 4, "get_rng_state: int64 [4]");
    ag_tensor *a = ag_randn(AG_SHAPE(5), AG_F64);
    ok(ag_set_rng_state(state) == AG_OK, "set_rng_state");
    ag_tensor *b = ag_randn(AG_SHAPE(5), AG_F64);
    ok(memcmp(ag_data(a), ag_data(b), 5 * sizeof(double)) == 0, "the same values follow the restored state");
    ok(ag_set_rng_state(ag_zeros(AG_SHAPE(4), AG_I64)) == AG_ERR_VALUE && error_is(AG_ERR_VALUE, "all-zero"), "zero state");
    ok(ag_set_rng_state(ag_zeros(AG_SHAPE(3), AG_I64)) == AG_ERR_SHAPE, "wrong shape");
    ok(ag_set_rng_state(ag_zeros(AG_SHAPE(4), AG_F64)) == AG_ERR_DTYPE, "wrong dtype");
    ok(ag_set_rng_state(NULL) == AG_ERR_ARG, "NULL state");
    ag_scope_end();
}

/* ---- checkpoints: an interrupted run resumes bit for bit ---------------------------------------- */
enum { N = 50, BATCH = 8, EPOCHS = 3 };

typedef struct run {
    ag_module *model;
    ag_optimizer *opt;
    ag_scheduler *sched;
    ag_dataset *ds;
    ag_loader *loader;
    ag_early_stopping *es;
    ag_history *hist;
    ag_checkpoint ck;
} run;

/* Everything made as a program would make it; the data are fixed, the weights from seed. */
static bool run_new(run *r, uint64_t seed, int64_t n) {
    memset(r, 0, sizeof *r);
    ag_manual_seed(seed);
    r->model = AG_SEQUENTIAL(ag_nn_linear(3, 16, true), ag_nn_relu(), ag_nn_dropout(0.2), ag_nn_linear(16, 2, true));
    ag_tensor *params[8];
    int np = ag_module_parameters(r->model, params, 8);
    r->opt = ag_adam_new(params, np, NULL);
    r->sched = ag_step_lr_new(r->opt, 2, 0.5);
    ag_scope_begin();
    ag_manual_seed(7); /* the data do not depend on the seed */
    ag_tensor *x = ag_randn(AG_SHAPE(n, 3), AG_F32);
    ag_tensor *y = ag_randn(AG_SHAPE(n, 2), AG_F32);
    r->ds = ag_tensor_dataset(x, y);
    ag_scope_end();
    ag_manual_seed(seed + 1000);
    r->loader = ag_loader_new(r->ds, &(ag_loader_options){.batch_size = BATCH, .shuffle = true, .seed = seed});
    r->es = ag_early_stopping_new(r->model, NULL);
    r->hist = ag_history_new(1, (const char *[]){"loss"});
    r->ck = (ag_checkpoint){.model = r->model, .optimizer = r->opt, .scheduler = r->sched, .loader = r->loader,
                            .early_stopping = r->es, .history = r->hist};
    return r->model && r->opt && r->sched && r->loader && r->es && r->hist;
}

static void run_free(run *r) {
    ag_scheduler_free(r->sched);
    ag_optimizer_free(r->opt);
    ag_module_free(r->model);
    ag_loader_free(r->loader);
    ag_dataset_free(r->ds);
    ag_early_stopping_free(r->es);
    ag_history_free(r->hist);
}

/* Trains until `stop_step` steps have been done in all (or the end); returns false on error. */
static bool train(run *r, int64_t stop_step) {
    int64_t steps = ag_loader_num_batches(r->loader);
    while (r->ck.epoch < EPOCHS) {
        ag_tensor *x, *y;
        int got;
        for (;;) {
            if (r->ck.step == stop_step) return true;
            ag_scope_begin();
            if ((got = ag_loader_next(r->loader, &x, &y)) <= 0) {
                ag_scope_end();
                break;
            }
            ag_optimizer_zero_grad(r->opt);
            ag_tensor *loss = ag_mse_loss(ag_module_forward(r->model, x), y, NULL);
            bool good = ag_backward(loss) == AG_OK && ag_optimizer_step(r->opt) == AG_OK;
            ag_scope_end();
            if (!good) return false;
            r->ck.step++;
        }
        if (got < 0) return false;
        r->ck.epoch++;
        ag_scheduler_step(r->sched);
        ag_early_stopping_step(r->es, 1.0 / (double)r->ck.epoch);
        ag_history_append(r->hist, (double[]){(double)r->ck.step / (double)steps});
    }
    return true;
}

/* The model's parameters, flattened, into buf (float32). */
static int64_t weights(const ag_module *m, float *buf, int64_t cap) {
    int64_t n = 0;
    for (int i = 0; i < ag_module_num_parameter_tensors(m); i++) {
        ag_tensor *p = ag_module_parameter(m, i, NULL, 0);
        if (n + ag_numel(p) > cap) return -1;
        ag_copy_to(p, buf + n, cap - n, AG_F32);
        n += ag_numel(p);
    }
    return n;
}

static void test_checkpoint(void) {
    enum { CAP = 512 };
    static float ref[CAP], got[CAP], before[CAP];
    run a, b, c;
    /* The run that is never interrupted. */
    ok(run_new(&a, 42, N) && train(&a, -1), "reference run trains");
    int64_t nw = weights(a.model, ref, CAP);
    ag_tensor *rng = ag_keep(ag_get_rng_state());
    int64_t total = a.ck.step;
    ok(total == EPOCHS * 7 && ag_history_len(a.hist) == EPOCHS, "%d epochs of 7 batches", EPOCHS);

    /* Interrupted in the middle of epoch 2, saved; the saving run goes on unchanged. */
    int64_t mid = 7 + 3;
    ok(run_new(&b, 42, N) && train(&b, mid) && b.ck.epoch == 1, "second run stops mid-epoch");
    ok(ag_checkpoint_save(&b.ck, path_of("ck.safetensors")) == AG_OK, "checkpoint_save");
    ok(train(&b, -1) && weights(b.model, got, CAP) == nw && memcmp(got, ref, (size_t)nw * sizeof(float)) == 0,
       "saving a checkpoint does not disturb the run");
    run_free(&b);

    /* A fresh program with other random state loads it and finishes. */
    ok(run_new(&c, 4242, N), "third run made with another seed");
    ag_manual_seed(999);
    ok(ag_checkpoint_load(&c.ck, path_of("ck.safetensors")) == AG_OK && c.ck.epoch == 1 && c.ck.step == mid,
       "checkpoint_load restores the counters");
    ok(ag_history_len(c.hist) == 1 && ag_early_stopping_best_epoch(c.es) == 1, "and the curves and early stopping");
    ok(train(&c, -1) && c.ck.step == total, "the resumed run finishes");
    ok(weights(c.model, got, CAP) == nw && memcmp(got, ref, (size_t)nw * sizeof(float)) == 0,
       "resumed weights are bit-identical to the uninterrupted run's");
    ag_scope_begin();
    ag_tensor *rng2 = ag_get_rng_state();
    ok(memcmp(ag_data(rng), ag_data(rng2), 4 * sizeof(int64_t)) == 0, "and so is the global generator");
    ag_scope_end();
    ok(ag_history_get(c.hist, -1, "loss") == ag_history_get(a.hist, -1, "loss") &&
           ag_early_stopping_best_epoch(c.es) == ag_early_stopping_best_epoch(a.es),
       "and the curves and early stopping state");
    run_free(&c);
    ag_release(rng);

    /* A checkpoint that does not fit changes nothing, the model loaded first included. */
    run d;
    ok(run_new(&d, 5, N + 1), "a run whose loader has one more sample");
    weights(d.model, before, CAP);
    ag_scope_begin();
    ag_tensor *r0 = ag_get_rng_state();
    ok(ag_checkpoint_load(&d.ck, path_of("ck.safetensors")) == AG_ERR_VALUE && error_is(AG_ERR_VALUE, "loader.order"),
       "loading into a loader over other samples fails, naming the entry");
    ag_tensor *r1 = ag_get_rng_state();
    ok(weights(d.model, got, CAP) == nw && memcmp(got, before, (size_t)nw * sizeof(float)) == 0 &&
           memcmp(ag_data(r0), ag_data(r1), 4 * sizeof(int64_t)) == 0 && d.ck.step == 0 && ag_history_len(d.hist) == 0,
       "and leaves the model, the counters and the generator as they were");
    ag_scope_end();
    run_free(&d);
    run_free(&a);

    ag_checkpoint none = {0};
    ok(ag_checkpoint_save(&none, path_of("x")) == AG_ERR_ARG && error_is(AG_ERR_ARG, "NULL checkpoint, model or path"),
       "a checkpoint needs a model");
    ag_module *m = ag_nn_linear(3, 16, true);
    ag_checkpoint only = {.model = m};
    ok(ag_checkpoint_load(&only, path_of("missing.safetensors")) == AG_ERR_IO, "a missing file");
    ok(ag_checkpoint_save(&only, path_of("m.safetensors")) == AG_OK && ag_checkpoint_load(&only, path_of("m.safetensors")) == AG_OK,
       "a model-only checkpoint round trips");
    ag_module_free(m);
}


/* ---- damaged checkpoints are refused whole ---------------------------------------------------- */
/* Everything a checkpoint of r holds, as a dict (through a file, as a load sees it). */
static ag_state_dict *snapshot(run *r) {
    ag_status st = ag_checkpoint_save(&r->ck, path_of("snapshot.safetensors"));
    return st ? NULL : ag_load_safetensors(path_of("snapshot.safetensors"));
}

static void test_damaged_checkpoint(void) {
    run r;
    ok(run_new(&r, 11, N) && train(&r, 10) && ag_checkpoint_save(&r.ck, path_of("good.ck")) == AG_OK,
       "a checkpoint after 10 steps");
    train(&r, 13); /* the run moves on: a load would change it */
    ag_state_dict *good = ag_load_safetensors(path_of("good.ck")), *before = snapshot(&r);
    static const struct {
        const char *name;
        double value; /* NAN with drop: the entry is left out */
        bool drop;
        ag_status status;
        const char *message;
    } cases[] = {
        {"optimizer.state.0.step", NAN, false, AG_ERR_VALUE, "Adam load_state_dict: state.0.step is nan, expected a whole number >= 0"},
        {"optimizer.state.0.step", -7, false, AG_ERR_VALUE, "Adam load_state_dict: state.0.step is -7, expected a whole number >= 0"},
        {"optimizer.state.0.step", 0, true, AG_ERR_ARG, "Adam load_state_dict: no number \"state.0.step\""},
        {"optimizer.state.1.exp_avg_sq", -1, false, AG_ERR_VALUE, "Adam load_state_dict: state.1.exp_avg_sq[15] is -1, expected a finite number >= 0"},
        {"optimizer.param_groups.0.lr", NAN, false, AG_ERR_VALUE, "Adam load_state_dict: param_groups.0.lr is nan, expected a number (not NaN)"},
        {"optimizer.param_groups.0.initial_lr", -0.5, false, AG_ERR_VALUE, "Adam load_state_dict: param_groups.0.initial_lr is -0.5, expected a finite number >= 0"},
        {"scheduler.last_epoch", -1e18, false, AG_ERR_VALUE, "StepLR load_state_dict: scheduler.last_epoch is -1e+18, expected a whole number >= -1"},
        {"checkpoint.epoch", NAN, false, AG_ERR_VALUE, "checkpoint_load: checkpoint.epoch is nan, expected a whole number >= 0"},
        {"checkpoint.step", -1, false, AG_ERR_VALUE, "checkpoint_load: checkpoint.step is -1, expected a whole number >= 0"},
        {"early_stopping.best", NAN, false, AG_ERR_VALUE, "early_stopping_load_state_dict: early_stopping.best is nan, expected a number (not NaN)"},
        {"early_stopping.wait", 100, false, AG_ERR_VALUE, "early_stopping_load_state_dict: inconsistent counters (best epoch 1, 100 epochs without improvement, of 1)"},
        {"loader.position", 51, false, AG_ERR_VALUE, "loader_load_state_dict: loader.position is 51, expected a whole number in [0, 50]"},
        {"loader.active", 0.5, false, AG_ERR_VALUE, "loader_load_state_dict: loader.active is 0.5, expected 0 or 1"},
    };
    int n = (int)(sizeof cases / sizeof *cases);
    for (int i = 0; good && before && i < n; i++) {
        ag_tensor *t = ag_state_dict_get(good, cases[i].name);
        ag_tensor *bad = cases[i].drop || !t ? NULL : damaged(t, cases[i].value);
        ag_state_dict *dmg = dict_with(good, cases[i].name, bad);
        bool saved = ag_save_safetensors(dmg, path_of("bad.ck")) == AG_OK;
        ag_clear_error();
        ag_status st = saved ? ag_checkpoint_load(&r.ck, path_of("bad.ck")) : AG_ERR_IO;
        char msg[512];
        snprintf(msg, sizeof msg, "%s", ag_last_error());
        ag_state_dict *after = snapshot(&r);
        ok(t && st == cases[i].status && strcmp(msg, cases[i].message) == 0 && after && same_dicts(before, after) &&
               r.ck.step == 13,
           "%s = %g%s: refused, nothing changed: %s", cases[i].name, cases[i].value, cases[i].drop ? " (left out)" : "", msg);
        ag_state_dict_free(after);
        ag_state_dict_free(dmg);
        ag_release(bad);
    }
    ok(ag_checkpoint_load(&r.ck, path_of("good.ck")) == AG_OK && r.ck.step == 10, "the good checkpoint still loads");
    ag_state_dict_free(good);
    ag_state_dict_free(before);
    run_free(&r);

    /* A model whose names are longer than 1 KB: saved and restored whole. */
    char longname[3000];
    memset(longname, 'n', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    ag_module *seq = ag_nn_sequential(0, NULL);
    ag_module *lin = ag_nn_linear(2, 2, true);
    ag_module_add_child(seq, longname, lin);
    ag_checkpoint ck = {.model = seq};
    ag_state_dict *file = ag_checkpoint_save(&ck, path_of("long.ck")) == AG_OK ? ag_load_safetensors(path_of("long.ck")) : NULL;
    char want[3100];
    snprintf(want, sizeof want, "model.%s.weight", longname);
    ok(file && ag_state_dict_get(file, want) != NULL && ag_checkpoint_load(&ck, path_of("long.ck")) == AG_OK,
       "a parameter named with %zu bytes is saved and loaded under its whole name", strlen(want));
    ag_state_dict_free(file);
    ag_module_free(seq);
    const char *files[] = {"good.ck", "bad.ck", "long.ck", "snapshot.safetensors"};
    for (int i = 0; i < 4; i++) unlink(path_of(files[i]));
}

/* The bytes of a file, malloc'ed (NULL if absent). */
static unsigned char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)size + 1);
    *n = fread(b, 1, (size_t)size, f);
    fclose(f);
    return b;
}

static int temp_files(void) {
    int n = 0;
    DIR *d = opendir(dir);
    for (struct dirent *e; d && (e = readdir(d));) n += strstr(e->d_name, ".tmp.") != NULL;
    if (d) closedir(d);
    return n;
}

/* Each allocation of a checkpoint save and of a load fails in turn: the call reports
 * AG_ERR_NOMEM, the good file and the run stay as they were, nothing leaks. */
static void test_checkpoint_alloc_failures(void) {
    run r;
    ok(run_new(&r, 5, N) && train(&r, 9) && ag_checkpoint_save(&r.ck, path_of("prev.ck")) == AG_OK,
       "a run and its checkpoint");
    size_t n0 = 0, n1 = 0;
    unsigned char *good = slurp(path_of("prev.ck"), &n0);
    train(&r, 12); /* a save now would write other bytes */
    long live = ag_live_tensors();
    ag_set_allocator(failing_alloc, NULL);
    fail_at = -1;
    alloc_calls = 0;
    ok(ag_checkpoint_save(&r.ck, path_of("count.ck")) == AG_OK, "a save with a counting allocator");
    long needed = alloc_calls;
    int nomem = 0, intact = 0, clean = 0;
    for (long k = 1; k <= needed; k++) {
        fail_at = k;
        alloc_calls = 0;
        long blocks = live_blocks;
        ag_status st = ag_checkpoint_save(&r.ck, path_of("prev.ck"));
        fail_at = -1;
        unsigned char *now = slurp(path_of("prev.ck"), &n1);
        nomem += st == AG_ERR_NOMEM;
        intact += now && n1 == n0 && memcmp(now, good, n0) == 0;
        clean += ag_live_tensors() == live && live_blocks == blocks && temp_files() == 0;
        if (st != AG_ERR_NOMEM) diag("save, failing allocation %ld: status %d: %s", k, st, ag_last_error());
        free(now);
    }
    ok(nomem == needed && intact == needed && clean == needed,
       "each of the %ld allocations of a save failing: AG_ERR_NOMEM %d, the old file byte for byte %d, no leak "
       "or temporary file %d", needed, nomem, intact, clean);

    /* Loads, into a run that has moved on from the file. */
    ag_state_dict *before = NULL;
    ag_set_allocator(NULL, NULL);
    before = snapshot(&r);
    ag_set_allocator(failing_alloc, NULL);
    alloc_calls = 0;
    ag_status counted = ag_checkpoint_load(&r.ck, path_of("prev.ck"));
    needed = alloc_calls;
    ag_set_allocator(NULL, NULL);
    ok(counted == AG_OK && r.ck.step == 9, "a load with a counting allocator (%ld allocations)", needed);
    train(&r, 12);
    ag_state_dict_free(before);
    before = snapshot(&r);
    ag_set_allocator(failing_alloc, NULL);
    nomem = intact = clean = 0;
    for (long k = 1; k <= needed; k++) {
        fail_at = k;
        alloc_calls = 0;
        long blocks = live_blocks, tensors = ag_live_tensors();
        ag_status st = ag_checkpoint_load(&r.ck, path_of("prev.ck"));
        fail_at = -1;
        nomem += st == AG_ERR_NOMEM;
        clean += ag_live_tensors() == tensors && live_blocks == blocks;
        if (ag_live_tensors() != tensors || live_blocks != blocks)
            diag("load, failing allocation %ld: %ld tensors, %ld blocks left", k, ag_live_tensors() - tensors, live_blocks - blocks);
        if (st != AG_ERR_NOMEM) diag("load, failing allocation %ld: status %d: %s", k, st, ag_last_error());
        ag_set_allocator(NULL, NULL);
        ag_state_dict *after = snapshot(&r);
        intact += after && same_dicts(before, after) && r.ck.step == 12;
        ag_state_dict_free(after);
        ag_set_allocator(failing_alloc, NULL);
    }
    ag_set_allocator(NULL, NULL);
    ok(nomem == needed && intact == needed && clean == needed,
       "each of the %ld allocations of a load failing: AG_ERR_NOMEM %d, the run unchanged %d, no leak %d", needed,
       nomem, intact, clean);
    ag_state_dict_free(before);
    free(good);
    run_free(&r);
    const char *files[] = {"prev.ck", "count.ck", "snapshot.safetensors"};
    for (int i = 0; i < 3; i++) unlink(path_of(files[i]));
}

/* Every writer creates its file as fopen would: 0666 less the umask. */
static void test_file_modes(void) {
    mode_t old = umask(077);
    ag_history *h = ag_history_new(1, (const char *[]){"loss"});
    ag_history_append(h, (double[]){1});
    ag_module *m = ag_nn_linear(2, 1, true);
    ag_checkpoint ck = {.model = m};
    struct stat a, b;
    bool good = ag_history_save_csv(h, path_of("mode.csv")) == AG_OK && ag_checkpoint_save(&ck, path_of("mode.ck")) == AG_OK &&
                stat(path_of("mode.csv"), &a) == 0 && stat(path_of("mode.ck"), &b) == 0;
    ok(good && (a.st_mode & 0777) == 0600 && (b.st_mode & 0777) == 0600, "umask 077: curves and checkpoints are 0600 (%o, %o)",
       good ? (unsigned)(a.st_mode & 0777) : 0, good ? (unsigned)(b.st_mode & 0777) : 0);
    umask(022);
    unlink(path_of("mode.csv"));
    unlink(path_of("mode.ck"));
    good = ag_history_save_csv(h, path_of("mode.csv")) == AG_OK && ag_checkpoint_save(&ck, path_of("mode.ck")) == AG_OK &&
           stat(path_of("mode.csv"), &a) == 0 && stat(path_of("mode.ck"), &b) == 0;
    ok(good && (a.st_mode & 0777) == 0644 && (b.st_mode & 0777) == 0644, "umask 022: 0644 (%o, %o)",
       good ? (unsigned)(a.st_mode & 0777) : 0, good ? (unsigned)(b.st_mode & 0777) : 0);
    umask(old);
    unlink(path_of("mode.csv"));
    unlink(path_of("mode.ck"));
    ag_history_free(h);
    ag_module_free(m);
}

/* ---- failing allocations ------------------------------------------------------------------------ */

/* Everything of train.h that allocates, once: a checkpoint saved and loaded,
 * an early-stopping step that copies the weights, metrics, curves. */
static ag_status alloc_scenario(run *r, const char *ck_in) {
    ag_status st = ag_checkpoint_save(&r->ck, path_of("alloc.safetensors"));
    if (!st) st = ag_checkpoint_load(&r->ck, ck_in);
    ag_early_stopping *es = st ? NULL : ag_early_stopping_new(r->model, NULL);
    if (!st && !es) st = ag_last_status();
    if (!st && ag_early_stopping_step(es, 0.5) < 0) st = ag_last_status();
    ag_early_stopping_free(es);
    ag_history *h = st ? NULL : ag_history_new(2, (const char *[]){"a", "b"});
    if (!st && !h) st = ag_last_status();
    if (!st) st = ag_history_append(h, (double[]){1, 2});
    if (!st) st = ag_history_save_csv(h, path_of("alloc.csv"));
    ag_history_free(h);
    if (!st) st = ag_scope_begin();
    if (!st) {
        int64_t p[] = {0, 1, 2, 1}, t[] = {0, 1, 1, 1};
        ag_tensor *cm = ag_confusion_matrix(ids(p, 4), ids(t, 4), 3);
        ag_prf avg;
        if (!cm || isnan(ag_accuracy(ids(p, 4), ids(t, 4))) || ag_precision_recall_f1(cm, AG_AVERAGE_MACRO, NULL, &avg))
            st = ag_last_status();
        ag_scope_end();
    }
    return st;
}

static void test_failing_allocations(void) {
    enum { CAP = 512 };
    static float before[CAP], after[CAP];
    run r;
    bool good = run_new(&r, 3, N) && train(&r, 9) && ag_checkpoint_save(&r.ck, path_of("alloc_in.safetensors")) == AG_OK &&
                train(&r, 12);
    ok(good, "a run to test failing allocations on");
    long live = ag_live_tensors();
    ag_set_allocator(failing_alloc, NULL);
    alloc_calls = 0;
    ok(alloc_scenario(&r, path_of("alloc_in.safetensors")) == AG_OK, "the scenario succeeds with a counting allocator");
    long needed = alloc_calls;
    diag("it makes %ld allocations", needed);
    int wrong = 0, nomem = 0, kept = 0, failed = 0;
    for (long k = 1; k <= needed; k++) {
        train(&r, r.ck.step + 1); /* move on, so that a load changes the weights */
        int64_t nw = weights(r.model, before, CAP);
        int64_t step = r.ck.step;
        fail_at = k;
        alloc_calls = 0;
        long blocks = live_blocks;
        ag_clear_error();
        ag_status st = alloc_scenario(&r, path_of("alloc_in.safetensors"));
        fail_at = -1;
        nomem += st == AG_ERR_NOMEM;
        failed += st != AG_OK;
        if (st == AG_OK) diag("failing allocation %ld went unnoticed", k);
        if (st != AG_OK && st != AG_ERR_NOMEM) {
            wrong++;
            diag("failing allocation %ld gave status %d: %s", k, st, ag_last_error());
        }
        if (ag_live_tensors() != live || live_blocks != blocks) {
            wrong++;
            diag("failing allocation %ld leaked %ld tensors, %ld blocks", k, ag_live_tensors() - live, live_blocks - blocks);
        }
        /* A load that failed left the weights and counters as they were (or the save failed before it). */
        if (st && r.ck.step == step) {
            bool same = weights(r.model, after, CAP) == nw && memcmp(before, after, (size_t)nw * 4) == 0;
            kept += same;
            if (!same) diag("failing allocation %ld (%s) changed the weights", k, ag_last_error());
        } else if (st) {
            kept++; /* the load succeeded, a later part failed */
        }
    }
    ok(wrong == 0, "every failing allocation (1..%ld) gives AG_ERR_NOMEM or success, without leaks", needed);
    ok(nomem == needed, "every failure is reported as out of memory (%d of %ld)", nomem, needed);
    ok(kept == failed, "a failed checkpoint load changes nothing (%d of %d)", kept, failed);
    ag_set_allocator(NULL, NULL);
    run_free(&r);
    const char *files[] = {"alloc.safetensors", "alloc_in.safetensors", "alloc.csv"};
    for (int i = 0; i < 3; i++) unlink(path_of(files[i]));
}

int main(void) {
    if (!mkdtemp(dir)) return 1;
    test_classification();
    test_multilabel();
    test_regression();
    test_progress();
    test_early_stopping();
    test_history();
    test_repeat_runs();
    test_rng_state();
    test_checkpoint();
    test_damaged_checkpoint();
    test_checkpoint_alloc_failures();
    test_file_modes();
    test_failing_allocations();
    const char *files[] = {"curves.csv", "curves.svg", "ck.safetensors", "m.safetensors"};
    for (int i = 0; i < 4; i++) unlink(path_of(files[i]));
    rmdir(dir);
    ok(ag_live_tensors() == 0, "no tensor is alive (%ld)", ag_live_tensors());
    return tap_done();
}

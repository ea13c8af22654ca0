/*
 * regression.c - three linear models on Iris (datasets/iris.csv), each trained by
 * gradient descent with autograd:
 *   1. linear regression of petal width on the other three measurements,
 *      checked against the least-squares solution of ag_linalg_lstsq;
 *   2. logistic regression: versicolor against virginica;
 *   3. softmax regression: the three species.
 * Classifiers are scored on a held-out 20% split (features z-scored with the
 * training split's statistics).
 *
 * Ends with one line: lin_r2=0.9379 lin_max_diff=0.0000 logreg_acc=... softmax_acc=...
 */
#include <math.h>
#include <stdio.h>
#include <agrad/agrad.h>
#include "args.h"

static const char *csv_path = "datasets/iris.csv";
static int steps = 1000, seed = 0;
static arg args[] = {
    {"data", 's', &csv_path, "the Iris CSV file"},
    {"steps", 'i', &steps, "gradient steps of each model (full batch)"},
    {"seed", 'i', &seed, "seed of the split and the weights"},
};

/* Trains model on loss(model(x), y) with full-batch SGD; returns the final loss. */
static double fit(ag_module *model, ag_tensor *x, ag_tensor *y, double lr,
                  ag_tensor *(*loss_fn)(ag_tensor *, ag_tensor *, const ag_loss_opts *)) {
    ag_tensor *params[2];
    ag_sgd_options o = ag_sgd_defaults();
    o.lr = lr;
    ag_optimizer *opt = ag_sgd_new(params, ag_module_parameters(model, params, 2), &o);
    double last = NAN;
    for (int step = 1; opt && step <= steps; step++) {
        ag_scope_begin();
        ag_optimizer_zero_grad(opt);
        ag_tensor *loss = loss_fn(ag_module_forward(model, x), y, NULL);
        last = ag_backward(loss) == AG_OK && ag_optimizer_step(opt) == AG_OK ? ag_item(loss) : NAN;
        ag_scope_end();
    }
    ag_optimizer_free(opt);
    return last;
}

/* 1. petal width ~ sepal length, sepal width, petal length (all 150 flowers). */
static double linear_regression(ag_tensor *features, double *r2) {
    ag_tensor *x = ag_narrow(features, 1, 0, 3), *y = ag_narrow(features, 1, 3, 1), *mean, *std;
    ag_zscore_fit(x, true, &mean, &std);
    x = ag_normalize(x, mean, std);
    ag_module *model = ag_nn_linear(3, 1, true);
    fit(model, x, y, 0.1, ag_mse_loss);
    ag_no_grad_begin();
    *r2 = ag_r2_score(ag_module_forward(model, x), y);
    ag_no_grad_end();
    /* Least squares θ = argmin |[x 1]·θ - y|², in float64 (torch.linalg.lstsq). */
    ag_tensor *x1 = ag_to_dtype(ag_cat((ag_tensor *[]){x, ag_ones(AG_SHAPE(ag_size(x, 0), 1), AG_F32)}, 2, 1), AG_F64);
    double b[4] = {NAN, NAN, NAN, NAN}, gd[4];
    ag_tensor *theta = ag_linalg_lstsq(x1, ag_to_dtype(y, AG_F64), -1);
    if (!theta || ag_copy_to(theta, b, 4, AG_F64)) fprintf(stderr, "lstsq: %s\n", ag_last_error());
    ag_copy_to(ag_module_get_parameter(model, "weight"), gd, 3, AG_F64);
    ag_copy_to(ag_module_get_parameter(model, "bias"), gd + 3, 1, AG_F64);
    double diff = 0;
    for (int i = 0; i < 4; i++) diff = fmax(diff, fabs(gd[i] - b[i]));
    printf("linear regression: gradient descent w = [%.4f %.4f %.4f] b = %.4f\n", gd[0], gd[1], gd[2], gd[3]);
    printf("                   least squares    w = [%.4f %.4f %.4f] b = %.4f  (R² %.4f)\n", b[0], b[1], b[2], b[3], *r2);
    ag_module_free(model);
    return diff;
}

/* The training and test splits of the samples rows[0 .. n-1], z-scored with the training statistics. */
static void split(ag_tensor *x, ag_tensor *y, const int64_t *rows, int64_t n, ag_tensor **xtr, ag_tensor **ytr,
                  ag_tensor **xte, ag_tensor **yte) {
    ag_dataset *all = ag_tensor_dataset(x, y), *sub = ag_subset(all, rows, n), *part[2] = {NULL, NULL};
    ag_random_split(sub, (double[]){0.8, 0.2}, 2, (uint64_t)seed, part);
    ag_dataset_tensors(part[0], xtr, ytr);
    ag_dataset_tensors(part[1], xte, yte);
    ag_tensor *mean, *std;
    ag_zscore_fit(*xtr, true, &mean, &std);
    *xtr = ag_normalize(*xtr, mean, std);
    *xte = ag_normalize(*xte, mean, std);
    for (int i = 0; i < 2; i++) ag_dataset_free(part[i]);
    ag_dataset_free(sub);
    ag_dataset_free(all);
}

/* 2. versicolor (label 1) against virginica (label 2). */
static double logistic_regression(ag_tensor *x, ag_tensor *labels) {
    int64_t rows[100];
    for (int64_t i = 0; i < 100; i++) rows[i] = 50 + i; /* the file lists setosa first, 50 of each */
    ag_tensor *xtr, *ytr, *xte, *yte;
    split(x, labels, rows, 100, &xtr, &ytr, &xte, &yte);
    ag_module *model = ag_nn_linear(4, 1, true);
    ag_tensor *target = ag_reshape(ag_sub_scalar(ag_to_dtype(ytr, AG_F32), 1), AG_SHAPE(-1, 1));
    double loss = fit(model, xtr, target, 0.5, ag_binary_cross_entropy_with_logits);
    ag_no_grad_begin();
    ag_tensor *pred = ag_reshape(ag_binarize(ag_module_forward(model, xte), 0), AG_SHAPE(-1)); /* 1 = virginica */
    ag_no_grad_end();
    ag_tensor *truth = ag_to_dtype(ag_sub_scalar(ag_to_dtype(yte, AG_F32), 1), AG_I64);
    ag_prf prf[2];
    ag_precision_recall_f1(ag_confusion_matrix(pred, truth, 2), AG_AVERAGE_MACRO, prf, NULL);
    double acc = ag_accuracy(pred, truth);
    printf("logistic regression: training loss %.4f, test accuracy %.4f, virginica precision %.3f recall %.3f F1 %.3f\n",
           loss, acc, prf[1].precision, prf[1].recall, prf[1].f1);
    ag_module_free(model);
    return acc;
}

/* 3. the three species: a linear layer of 3 logits and cross-entropy. */
static double softmax_regression(ag_tensor *x, ag_tensor *labels) {
    int64_t rows[150];
    for (int64_t i = 0; i < 150; i++) rows[i] = i;
    ag_tensor *xtr, *ytr, *xte, *yte;
    split(x, labels, rows, 150, &xtr, &ytr, &xte, &yte);
    ag_module *model = ag_nn_linear(4, 3, true);
    double loss = fit(model, xtr, ytr, 0.5, ag_cross_entropy);
    ag_no_grad_begin();
    double acc = ag_accuracy(ag_module_forward(model, xte), yte);
    ag_no_grad_end();
    printf("softmax regression: training loss %.4f, test accuracy %.4f\n", loss, acc);
    ag_module_free(model);
    return acc;
}

int main(int argc, char **argv) {
    int rc = args_parse(argc, argv, "Linear, logistic and softmax regression on Iris.", args, NARGS(args));
    if (rc >= 0) return rc;
    double t0 = ag_seconds(), r2 = NAN;
    ag_manual_seed((uint64_t)seed);
    ag_scope_begin(); /* owns every tensor below */
    ag_csv *csv = ag_load_csv(csv_path, &(ag_csv_options){.header = true, .has_labels = true, .label_column = -1});
    if (!csv) return fprintf(stderr, "%s\n", ag_last_error()), 1;
    double diff = linear_regression(ag_csv_features(csv), &r2);
    double logreg = logistic_regression(ag_csv_features(csv), ag_csv_labels(csv));
    double softmax = softmax_regression(ag_csv_features(csv), ag_csv_labels(csv));
    ag_csv_free(csv);
    ag_scope_end();
    if (isnan(diff) || isnan(logreg) || isnan(softmax)) return fprintf(stderr, "%s\n", ag_last_error()), 1;
    printf("lin_r2=%.4f lin_max_diff=%.6f logreg_acc=%.4f softmax_acc=%.4f train_s=%.3f\n", r2, diff, logreg, softmax,
           ag_seconds() - t0);
    return ag_live_tensors() == 0 ? 0 : 1;
}

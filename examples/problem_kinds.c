/*
 * problem_kinds.c - one MLP for each kind of supervised problem, each with the
 * output activation and loss that fit it, on synthetic data drawn from a fixed
 * seed (2000 training and 1000 test samples of 4 features):
 *
 *   kind                   outputs  output activation            loss
 *   regression             3        none (identity)              MSE
 *   binary classification  1        sigmoid (inside the loss)    BCE with logits
 *   single-label, 6 classes 6       softmax (inside the loss)    cross-entropy
 *   multi-label, 6 labels  6        sigmoid per label (inside)   BCE with logits per label
 *
 * "Inside the loss": the model outputs logits and the loss applies the
 * activation in a numerically stable way; predictions apply it (or its
 * threshold) explicitly.
 *
 * Ends with one line: reg_r2=... bin_acc=... multiclass_acc=... multilabel_f1=... train_s=...
 */
#include <math.h>
#include <stdio.h>
#include <agrad/agrad.h>
#include "args.h"

static int epochs = 40, hidden = 32, seed = 0;
static arg args[] = {
    {"epochs", 'i', &epochs, "epochs of each model"},
    {"hidden", 'i', &hidden, "hidden units of each model"},
    {"seed", 'i', &seed, "seed of the data and the weights"},
};

enum { N = 3000, TRAIN = 2000 };

/* Each problem: its data (x [N, 4], y), the model's outputs and the loss on them. */
typedef struct problem {
    const char *name, *activation, *loss_name;
    int outputs;
    ag_tensor *(*make_y)(ag_tensor *x);
    ag_tensor *(*loss)(ag_tensor *logits, ag_tensor *y, const ag_loss_opts *o);
} problem;

/* Column j of x, [N]. */
static ag_tensor *col(ag_tensor *x, int j) { return ag_select(x, 1, j); }

/* Three smooth functions of x. */
static ag_tensor *regression_targets(ag_tensor *x) {
    ag_tensor *y[3] = {ag_add(ag_sin(col(x, 0)), ag_mul(col(x, 1), col(x, 2))),
                       ag_sub(ag_mul_scalar(ag_square(col(x, 3)), 0.5), col(x, 0)),
                       ag_mul_scalar(ag_tanh(ag_add(col(x, 1), col(x, 2))), 2)};
    return ag_stack(y, 3, 1);
}

/* 1 inside the circle x0² + x1² < 1.4 (about half the points), [N, 1] float. */
static ag_tensor *binary_targets(ag_tensor *x) {
    ag_tensor *r2 = ag_add(ag_square(col(x, 0)), ag_square(col(x, 1)));
    return ag_unsqueeze(ag_to_dtype(ag_lt(r2, ag_scalar(1.4, AG_F32)), AG_F32), 1);
}

/* The class whose random direction x is most aligned with, [N] int64. */
static ag_tensor *multiclass_targets(ag_tensor *x) {
    return ag_argmax(ag_matmul(x, ag_randn(AG_SHAPE(4, 6), AG_F32)), 1, false);
}

/* Label l is on when x lies far from the hyperplane of random unit normal w_l:
 * |x·w_l| > 0.674 (half the points for each), [N, 6] float. */
static ag_tensor *multilabel_targets(ag_tensor *x) {
    ag_tensor *w = ag_randn(AG_SHAPE(4, 6), AG_F32);
    w = ag_div(w, ag_sqrt(ag_sum_dim(ag_square(w), 0, true)));
    return ag_to_dtype(ag_gt(ag_abs(ag_matmul(x, w)), ag_scalar(0.674, AG_F32)), AG_F32);
}

static const problem problems[] = {
    {"regression", "none", "mse_loss", 3, regression_targets, ag_mse_loss},
    {"binary", "sigmoid", "binary_cross_entropy_with_logits", 1, binary_targets, ag_binary_cross_entropy_with_logits},
    {"multiclass", "softmax", "cross_entropy", 6, multiclass_targets, ag_cross_entropy},
    {"multilabel", "sigmoid", "binary_cross_entropy_with_logits", 6, multilabel_targets,
     ag_binary_cross_entropy_with_logits},
};

/* Trains an MLP 4 -> hidden -> outputs on the problem; returns its test score. */
static double solve(const problem *pb, double *seconds) {
    ag_scope_begin();
    ag_tensor *x = ag_randn(AG_SHAPE(N, 4), AG_F32), *y = pb->make_y(x);
    ag_tensor *x_test = ag_narrow(x, 0, TRAIN, N - TRAIN), *y_test = ag_narrow(y, 0, TRAIN, N - TRAIN);
    ag_dataset *train = ag_tensor_dataset(ag_narrow(x, 0, 0, TRAIN), ag_narrow(y, 0, 0, TRAIN));
    ag_loader *loader = ag_loader_new(train, &(ag_loader_options){.batch_size = 64, .shuffle = true, .seed = 1});
    ag_module *model = AG_SEQUENTIAL(ag_nn_linear(4, hidden, true), ag_nn_tanh(), ag_nn_linear(hidden, hidden, true),
                                     ag_nn_tanh(), ag_nn_linear(hidden, pb->outputs, true));
    ag_tensor *params[6];
    ag_adam_options o = ag_adam_defaults();
    o.lr = 0.01;
    ag_optimizer *opt = ag_adam_new(params, ag_module_parameters(model, params, 6), &o);
    double t0 = ag_seconds(), loss_sum = 0;
    for (int epoch = 1; opt && loader && epoch <= epochs; epoch++) {
        loss_sum = 0;
        for (int more = 1; more;) {
            ag_scope_begin();
            ag_tensor *xb, *yb;
            if ((more = ag_loader_next(loader, &xb, &yb) > 0)) {
                ag_optimizer_zero_grad(opt);
                ag_tensor *loss = pb->loss(ag_module_forward(model, xb), yb, NULL);
                if (ag_backward(loss) || ag_optimizer_step(opt)) more = 0, loss_sum = NAN;
                loss_sum += ag_item(loss) * (double)ag_size(xb, 0) / TRAIN;
            }
            ag_scope_end();
        }
    }
    *seconds = ag_seconds() - t0;
    ag_no_grad_begin();
    ag_tensor *out = ag_module_forward(model, x_test); /* logits, or the values for regression */
    ag_no_grad_end();
    double score = NAN;
    ag_prf f1;
    if (pb->outputs == 3) score = ag_r2_score(out, y_test);
    else if (pb->outputs == 1) score = ag_accuracy(ag_reshape(ag_binarize(ag_sigmoid(out), 0.5), AG_SHAPE(-1)),
                                                   ag_to_dtype(ag_reshape(y_test, AG_SHAPE(-1)), AG_I64));
    else if (pb->make_y == multiclass_targets) score = ag_accuracy(ag_softmax(out, 1), y_test);
    else if (!ag_multilabel_precision_recall_f1(ag_sigmoid(out), y_test, 0.5, AG_AVERAGE_MICRO, NULL, &f1)) score = f1.f1;
    printf("%-10s  4 -> %d -> %d -> %d  output %-7s  loss %-32s  train loss %.4f  test %s %.4f\n", pb->name, hidden,
           hidden, pb->outputs, pb->activation, pb->loss_name, loss_sum,
           pb->outputs == 3 ? "R²" : pb->make_y == multilabel_targets ? "micro-F1" : "accuracy", score);
    ag_optimizer_free(opt);
    ag_module_free(model);
    ag_loader_free(loader);
    ag_dataset_free(train);
    ag_scope_end();
    return score;
}

int main(int argc, char **argv) {
    int rc = args_parse(argc, argv, "Regression, binary, multi-class and multi-label MLPs on synthetic data.", args,
                        NARGS(args));
    if (rc >= 0) return rc;
    double score[4], seconds[4], total = 0;
    for (int i = 0; i < 4; i++) {
        ag_manual_seed((uint64_t)seed + (uint64_t)i);
        score[i] = solve(&problems[i], &seconds[i]);
        total += seconds[i];
        if (isnan(score[i])) return fprintf(stderr, "%s: %s\n", problems[i].name, ag_last_error()), 1;
    }
    printf("reg_r2=%.4f bin_acc=%.4f multiclass_acc=%.4f multilabel_f1=%.4f train_s=%.3f\n", score[0], score[1],
           score[2], score[3], total);
    return ag_live_tensors() == 0 ? 0 : 1;
}

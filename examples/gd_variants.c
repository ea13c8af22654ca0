/*
 * gd_variants.c - gradient descent three ways on one least-squares problem
 * (y = X·w + b + noise, 512 samples, 8 features): batch (all samples per step),
 * stochastic (one sample per step) and mini-batch (32 per step), with one
 * learning rate; then batch gradient descent with a learning rate too small, a
 * good one, one at the edge of stability and one beyond it (2/L, L the largest
 * curvature of the loss).  Both experiments are drawn as loss curves in one
 * picture (gd_variants.svg).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <agrad/agrad.h>
#include <agrad/plot.h>
#include "args.h"

enum { N = 512, D = 8 };

/* The mean squared error of model on all the data, without grad. */
static double full_loss(ag_module *model, ag_tensor *x, ag_tensor *y) {
    ag_scope_begin();
    ag_no_grad_begin();
    double v = ag_item(ag_mse_loss(ag_module_forward(model, x), y, NULL));
    ag_no_grad_end();
    ag_scope_end();
    return v;
}

/* Trains a fresh Linear(D, 1) (same initial weights every time) with SGD for
 * `epochs` epochs of batches of `batch` samples; writes the full loss after
 * each step into loss[1..] (loss[0]: before training) and the epochs done into
 * at[]; returns the number of points written. */
static int train(ag_dataset *data, ag_tensor *x, ag_tensor *y, int batch, double lr, int epochs, double *at, double *loss) {
    ag_manual_seed(7);
    ag_module *model = ag_nn_linear(D, 1, true);
    ag_tensor *params[2];
    ag_sgd_options o = ag_sgd_defaults();
    o.lr = lr;
    ag_optimizer *opt = ag_sgd_new(params, ag_module_parameters(model, params, 2), &o);
    ag_loader *loader = ag_loader_new(data, &(ag_loader_options){.batch_size = batch, .shuffle = true, .seed = 1});
    int n = 0;
    at[n] = 0;
    loss[n++] = full_loss(model, x, y);
    for (int e = 0; e < epochs; e++) {
        ag_tensor *xb, *yb;
        for (int64_t seen = 0;;) {
            ag_scope_begin();
            if (ag_loader_next(loader, &xb, &yb) <= 0) {
                ag_scope_end();
                break;
            }
            ag_optimizer_zero_grad(opt);
            if (ag_backward(ag_mse_loss(ag_module_forward(model, xb), yb, NULL)) || ag_optimizer_step(opt))
                fprintf(stderr, "%s\n", ag_last_error()), exit(1);
            seen += ag_size(xb, 0);
            at[n] = e + (double)seen / N;
            loss[n++] = full_loss(model, x, y);
            ag_scope_end();
        }
    }
    ag_loader_free(loader);
    ag_optimizer_free(opt);
    ag_module_free(model);
    return n;
}

int main(int argc, char **argv) {
    int epochs = 20;
    double lr = 0.05;
    const char *out = ".";
    arg args[] = {{"epochs", 'i', &epochs, "passes over the 512 samples"},
                     {"lr", 'd', &lr, "learning rate of the batch / stochastic / mini-batch comparison"},
                     {"out", 's', &out, "directory for gd_variants.svg"}};
    int rc = args_parse(argc, argv, "Batch vs stochastic vs mini-batch gradient descent, and learning rates too small or too large.",
                        args, NARGS(args));
    if (rc >= 0) return rc;
    if (epochs < 1 || !(lr > 0)) return fprintf(stderr, "need epochs >= 1 and lr > 0\n"), 2;

    /* The data: y = X·w + 0.5 + noise of standard deviation 0.1. */
    ag_manual_seed(0);
    ag_scope_begin();
    ag_tensor *x = ag_randn(AG_SHAPE(N, D), AG_F32), *w = ag_randn(AG_SHAPE(D, 1), AG_F32);
    ag_tensor *y = ag_add(ag_add_scalar(ag_matmul(x, w), 0.5), ag_mul_scalar(ag_randn(AG_SHAPE(N, 1), AG_F32), 0.1));
    ag_dataset *data = ag_tensor_dataset(x, y);
    if (!data) return fprintf(stderr, "%s\n", ag_last_error()), 1;

    /* The loss's Hessian is 2/N·[X 1]ᵀ[X 1] (constant: the loss is quadratic).  Its eigenvalues (ag_linalg_eigvalsh,
     * ascending) say what kind of point the minimum is: all positive (positive definite) makes it the one strict
     * minimum, as the course's second-order condition states; the largest, L, is the sharpest curvature, and
     * gradient descent converges for lr < 2/L and diverges beyond. */
    ag_tensor *xa = ag_cat((ag_tensor *[]){x, ag_ones(AG_SHAPE(N, 1), AG_F32)}, 2, 1);
    ag_tensor *h = ag_mul_scalar(ag_matmul(ag_t(xa), xa), 2.0 / N);
    ag_tensor *eig = ag_linalg_eigvalsh(ag_to_dtype(h, AG_F64), NULL);
    if (!eig) return fprintf(stderr, "%s\n", ag_last_error()), 1;
    double lmin = ag_get(eig, (int64_t[]){0}), L = ag_get(eig, (int64_t[]){D});
    printf("Hessian eigenvalues from %.4f to %.4f: %s\n", lmin, L,
           lmin > 0 ? "positive definite, so the minimum is a strict one" : "not positive definite");
    printf("largest curvature L = %.4f: batch gradient descent needs lr < 2/L = %.4f\n", L, 2 / L);

    ag_plot *plot = ag_plot_new("Gradient descent: how much data per step, and how large a step", NULL, NULL);
    ag_plot_size(plot, 1200, 480);
    size_t cap = (size_t)epochs * N + 1;
    double *at = malloc(sizeof(double) * cap), *loss = malloc(sizeof(double) * cap);
    const char *names[3] = {"batch (512 per step)", "mini-batch (32 per step)", "stochastic (1 per step)"};
    const int batches[3] = {N, 32, 1};
    double final[3], final_lr[4];
    ag_plot_subplot(plot, 1, 2, 0);
    printf("lr %g, %d epochs: full-data loss after the last step\n", lr, epochs);
    for (int k = 0; k < 3; k++) {
        int n = train(data, x, y, batches[k], lr, epochs, at, loss);
        final[k] = loss[n - 1];
        printf("  %-26s %5d steps  loss %.5f\n", names[k], n - 1, final[k]);
        ag_plot_line(plot, at, loss, n, names[k]);
        if (k == 2) ag_plot_style_last(plot, &(ag_plot_style){.width = 1, .opacity = 0.8});
    }
    ag_plot_log_scale(plot, false, true);
    char title[96];
    snprintf(title, sizeof title, "same lr (%g), same number of epochs", lr);
    ag_plot_labels(plot, title, "epochs (passes over the data)", "training loss (all samples)");

    const double factor[4] = {0.002, 0.5, 0.95, 1.1}; /* times 2/L */
    const char *what[4] = {"too small", "good", "at the edge", "too large"};
    ag_plot_subplot(plot, 1, 2, 1);
    printf("batch gradient descent, %d steps:\n", epochs);
    for (int k = 0; k < 4; k++) {
        double rate = factor[k] * 2 / L;
        int n = train(data, x, y, N, rate, epochs, at, loss);
        final_lr[k] = loss[n - 1];
        printf("  lr %-8.4g (%4.3g x 2/L, %-11s) loss %.5g\n", rate, factor[k], what[k], final_lr[k]);
        char label[64];
        snprintf(label, sizeof label, "lr %.3g: %s", rate, what[k]);
        ag_plot_line(plot, at, loss, n, label);
        ag_plot_style_last(plot, &(ag_plot_style){.markers = true});
    }
    ag_plot_log_scale(plot, false, true);
    ag_plot_limits(plot, NAN, NAN, NAN, 1e3);
    ag_plot_labels(plot, "batch gradient descent, four learning rates", "step", "training loss");

    char path[1024];
    if (!args_path(path, sizeof path, out, "gd_variants.svg") || ag_plot_save_svg(plot, path))
        return fprintf(stderr, "%s\n", ag_last_error()), 1;
    printf("max_stable_lr=%.4f batch_loss=%.5f minibatch_loss=%.5f sgd_loss=%.5f lr_small_loss=%.5g lr_good_loss=%.5g "
           "lr_edge_loss=%.5g lr_large_loss=%.5g hessian_min_eig=%.5g epochs=%d\n",
           2 / L, final[0], final[1], final[2], final_lr[0], final_lr[1], final_lr[2], final_lr[3], lmin, epochs);
    ag_plot_free(plot);
    free(at), free(loss);
    ag_dataset_free(data);
    ag_scope_end();
    return ag_live_tensors() == 0 ? 0 : 1;
}

/*
 * lr_finder.c - a learning-rate range test (Smith 2017, as fastai's lr_find):
 * train an Iris MLP (4 -> 16 -> 3) with SGD while the learning rate grows
 * exponentially from --lr-min to --lr-max over --steps mini-batches, record
 * the loss, smooth it, stop once it explodes, and suggest a learning rate:
 * where the smoothed loss falls fastest, and the lr of its minimum / 10.
 * Then train a fresh model with the suggestion to check it.  The loss against
 * the lr (log axis) and the check are drawn in lr_finder.svg.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <agrad/agrad.h>
#include <agrad/plot.h>
#include "args.h"

static ag_module *mlp(void) {
    ag_manual_seed(3); /* every model starts from the same weights */
    return AG_SEQUENTIAL(ag_nn_linear(4, 16, true), ag_nn_relu(), ag_nn_linear(16, 3, true));
}

static ag_optimizer *sgd(ag_module *m, double lr) {
    ag_tensor *params[4];
    ag_sgd_options o = ag_sgd_defaults();
    o.lr = lr;
    o.momentum = 0.9;
    return ag_sgd_new(params, ag_module_parameters(m, params, 4), &o);
}

/* One step on the next batch (a new epoch when the last one ended); returns the batch loss. */
static double step(ag_module *m, ag_optimizer *opt, ag_loader *loader) {
    ag_tensor *x, *y;
    ag_scope_begin();
    if (ag_loader_next(loader, &x, &y) == 0) ag_loader_next(loader, &x, &y);
    ag_optimizer_zero_grad(opt);
    ag_tensor *loss = ag_cross_entropy(ag_module_forward(m, x), y, NULL);
    if (ag_backward(loss) || ag_optimizer_step(opt)) fprintf(stderr, "%s\n", ag_last_error()), exit(1);
    double v = ag_item(loss);
    ag_scope_end();
    return v;
}

/* Accuracy of m on the dataset. */
static double accuracy(ag_module *m, ag_dataset *ds) {
    ag_tensor *x, *y;
    ag_scope_begin();
    ag_no_grad_begin();
    ag_dataset_tensors(ds, &x, &y);
    ag_tensor *pred = ag_argmax(ag_module_forward(m, x), 1, false);
    int64_t n = ag_size(x, 0), correct = 0;
    for (int64_t i = 0; i < n; i++) correct += ag_get(pred, &i) == ag_get(y, &i);
    ag_no_grad_end();
    ag_scope_end();
    return (double)correct / (double)n;
}

int main(int argc, char **argv) {
    int steps = 300, batch = 16, epochs = 60;
    double lr_min = 1e-5, lr_max = 10;
    const char *csv = "datasets/iris.csv", *out = ".";
    arg args[] = {{"steps", 'i', &steps, "steps of the range test"},
                     {"lr-min", 'd', &lr_min, "first learning rate"},
                     {"lr-max", 'd', &lr_max, "last learning rate"},
                     {"batch-size", 'i', &batch, "samples per batch"},
                     {"epochs", 'i', &epochs, "epochs of the check with the suggested lr"},
                     {"data", 's', &csv, "the Iris CSV file"},
                     {"out", 's', &out, "directory for lr_finder.svg"}};
    int rc = args_parse(argc, argv, "A learning-rate range test on an Iris MLP.", args, NARGS(args));
    if (rc >= 0) return rc;
    if (steps < 10 || batch < 1 || epochs < 0 || !(lr_min > 0 && lr_max > lr_min))
        return fprintf(stderr, "need steps >= 10, batch-size >= 1, epochs >= 0 and 0 < lr-min < lr-max\n"), 2;

    /* Iris, standardised, split 120 / 30. */
    ag_csv *iris = ag_load_csv(csv, &(ag_csv_options){.header = true, .has_labels = true, .label_column = -1});
    if (!iris) return fprintf(stderr, "%s\n", ag_last_error()), 1;
    ag_scope_begin();
    ag_tensor *mean, *std;
    ag_zscore_fit(ag_csv_features(iris), true, &mean, &std);
    ag_dataset *all = ag_tensor_dataset(ag_normalize(ag_csv_features(iris), mean, std), ag_csv_labels(iris)), *split[2];
    ag_scope_end();
    if (!all || ag_random_split(all, (double[]){0.8, 0.2}, 2, 42, split)) return fprintf(stderr, "%s\n", ag_last_error()), 1;
    ag_loader *loader = ag_loader_new(split[0], &(ag_loader_options){.batch_size = batch, .shuffle = true, .seed = 1});

    /* The range test: lr_t = lr_min·(lr_max/lr_min)^(t/(steps-1)). */
    double *lr = malloc(sizeof(double) * (size_t)steps), *raw = malloc(sizeof(double) * (size_t)steps);
    double *smooth = malloc(sizeof(double) * (size_t)steps), avg = 0, best = INFINITY;
    ag_module *model = mlp();
    ag_optimizer *opt = sgd(model, lr_min);
    int n = 0;
    for (; n < steps; n++) {
        lr[n] = lr_min * pow(lr_max / lr_min, (double)n / (steps - 1));
        ag_optimizer_set_lr(opt, 0, lr[n]);
        raw[n] = step(model, opt, loader);
        avg = 0.98 * avg + 0.02 * raw[n];
        smooth[n] = avg / (1 - pow(0.98, n + 1)); /* bias-corrected moving average */
        best = fmin(best, smooth[n]);
        if (!isfinite(raw[n]) || smooth[n] > 4 * best) { /* exploded: stop */
            n++;
            break;
        }
    }
    ag_optimizer_free(opt);
    ag_module_free(model);

    /* Suggestions: the steepest fall of the smoothed loss (per decade of lr) before its minimum, and the minimum / 10. */
    int imin = 0, isteep = 1;
    for (int i = 0; i < n; i++)
        if (smooth[i] < smooth[imin]) imin = i;
    double steepest = INFINITY;
    for (int i = 1; i + 1 < imin; i++) {
        double slope = (smooth[i + 1] - smooth[i - 1]) / (log10(lr[i + 1]) - log10(lr[i - 1]));
        if (slope < steepest) steepest = slope, isteep = i;
    }
    double lr_steep = lr[isteep], lr_min10 = lr[imin] / 10;
    printf("range test: %d of %d steps, lr %.3g .. %.3g; smoothed loss %.4f at lr %.3g (minimum)\n", n, steps, lr[0],
           lr[n - 1], smooth[imin], lr[imin]);
    printf("suggested lr: %.3g (steepest descent, %.3f per decade), %.3g (minimum / 10)\n", lr_steep, steepest, lr_min10);

    /* The check: a fresh model trained with the steepest-descent suggestion. */
    model = mlp();
    opt = sgd(model, lr_steep);
    int per_epoch = (int)ag_loader_num_batches(loader);
    double *curve = malloc(sizeof(double) * (size_t)(epochs * per_epoch + 1)), *acc = malloc(sizeof(double) * (size_t)(epochs + 1));
    double *epoch_at = malloc(sizeof(double) * (size_t)(epochs + 1));
    ag_loader_reset(loader);
    for (int e = 0, t = 0; e < epochs; e++) {
        for (int b = 0; b < per_epoch; b++, t++) curve[t] = step(model, opt, loader);
        acc[e] = accuracy(model, split[1]);
        epoch_at[e] = (e + 1) * per_epoch;
    }
    double train_acc = accuracy(model, split[0]), test_acc = epochs ? acc[epochs - 1] : accuracy(model, split[1]);
    printf("trained %d epochs with lr %.3g: train accuracy %.3f, test accuracy %.3f\n", epochs, lr_steep, train_acc, test_acc);

    ag_plot *plot = ag_plot_new("Learning-rate range test on Iris (SGD, momentum 0.9)", NULL, NULL);
    ag_plot_size(plot, 1200, 460);
    ag_plot_subplot(plot, 1, 2, 0);
    ag_plot_log_scale(plot, true, false);
    ag_plot_line(plot, lr, raw, n, "batch loss");
    ag_plot_style_last(plot, &(ag_plot_style){.opacity = 0.35, .width = 1});
    ag_plot_line(plot, lr, smooth, n, "smoothed");
    char label[64];
    snprintf(label, sizeof label, "steepest: %.2g", lr_steep);
    ag_plot_vline(plot, lr_steep, label);
    snprintf(label, sizeof label, "minimum / 10: %.2g", lr_min10);
    ag_plot_vline(plot, lr_min10, label);
    ag_plot_limits(plot, NAN, NAN, NAN, fmin(smooth[0] * 1.5, 4 * best));
    ag_plot_labels(plot, "loss as the learning rate grows", "learning rate", "cross-entropy");
    ag_plot_subplot(plot, 1, 2, 1);
    ag_plot_line(plot, NULL, curve, epochs * per_epoch, "batch loss");
    ag_plot_line(plot, epoch_at, acc, epochs, "test accuracy");
    snprintf(label, sizeof label, "training with lr %.2g", lr_steep);
    ag_plot_labels(plot, label, "step", NULL);

    char path[1024];
    if (!args_path(path, sizeof path, out, "lr_finder.svg") || ag_plot_save_svg(plot, path))
        return fprintf(stderr, "%s\n", ag_last_error()), 1;
    printf("suggested_lr=%.4g suggested_lr_min10=%.4g min_loss_lr=%.4g min_smoothed_loss=%.4f steps_run=%d "
           "train_accuracy=%.4f test_accuracy=%.4f\n",
           lr_steep, lr_min10, lr[imin], smooth[imin], n, train_acc, test_acc);
    ag_plot_free(plot);
    ag_optimizer_free(opt);
    ag_module_free(model);
    ag_loader_free(loader);
    ag_dataset_free(split[0]), ag_dataset_free(split[1]), ag_dataset_free(all);
    ag_csv_free(iris);
    free(lr), free(raw), free(smooth), free(curve), free(acc), free(epoch_at);
    return ag_live_tensors() == 0 ? 0 : 1;
}

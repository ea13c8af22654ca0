/*
 * deep_mlp.c - a deeper MLP on Fashion-MNIST: 784 -> 512 -> 512 -> 512 -> 10,
 * each hidden layer Linear, BatchNorm1d, ReLU, Dropout(0.1); AdamW with a
 * linear warm-up into a cosine decay (SequentialLR of LinearLR and
 * CosineAnnealingLR), stepped every batch.  Prints the test accuracy and draws
 * the training loss, the test accuracy and the learning rate (deep_mlp.svg).
 * Needs datasets/fashion-mnist/ (scripts/fetch_fashion_mnist.sh).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <agrad/agrad.h>
#include <agrad/plot.h>
#include "args.h"

/* Images [N, 784] scaled to [0, 1] and labels [N] of one split, the first limit only if limit > 0. */
static ag_dataset *load(const char *dir, const char *split, int limit) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s-images-idx3-ubyte.gz", dir, split);
    ag_tensor *x = ag_load_idx(path, AG_F32);
    snprintf(path, sizeof path, "%s/%s-labels-idx1-ubyte.gz", dir, split);
    ag_tensor *y = ag_load_idx(path, AG_I64);
    if (!x || !y) return NULL;
    int64_t n = limit > 0 && limit < ag_size(x, 0) ? limit : ag_size(x, 0);
    x = ag_reshape(ag_rescale(ag_narrow(x, 0, 0, n), 0, 255, 0, 1), AG_SHAPE(n, 784));
    return ag_tensor_dataset(x, ag_narrow(y, 0, 0, n));
}

/* Mean loss and accuracy of model over the loader, in eval mode without grad. */
static void evaluate(ag_module *model, ag_loader *loader, double *loss, double *accuracy) {
    ag_module_eval(model);
    ag_no_grad_begin();
    double sum = 0;
    int64_t correct = 0, seen = 0;
    ag_tensor *x, *y;
    ag_scope_begin();
    while (ag_loader_next(loader, &x, &y) > 0) {
        ag_tensor *logits = ag_module_forward(model, x);
        sum += ag_item(ag_cross_entropy(logits, y, NULL)) * (double)ag_size(x, 0);
        ag_tensor *pred = ag_argmax(logits, 1, false);
        for (int64_t i = 0; i < ag_size(x, 0); i++) correct += ag_get(pred, &i) == ag_get(y, &i);
        seen += ag_size(x, 0);
    }
    ag_scope_end();
    ag_no_grad_end();
    *loss = sum / (double)seen;
    *accuracy = (double)correct / (double)seen;
}

int main(int argc, char **argv) {
    int epochs = 5, batch = 128, limit = 0, seed = 0;
    double lr = 1e-3, weight_decay = 0.01, warmup = 0.1;
    const char *data = "datasets/fashion-mnist", *out = ".";
    arg args[] = {{"epochs", 'i', &epochs, "training epochs"},
                     {"batch-size", 'i', &batch, "samples per batch"},
                     {"lr", 'd', &lr, "peak learning rate of AdamW"},
                     {"weight-decay", 'd', &weight_decay, "AdamW's decoupled weight decay"},
                     {"warmup", 'd', &warmup, "fraction of the steps spent warming up linearly"},
                     {"train-limit", 'i', &limit, "use only the first N training images (0: all 60000)"},
                     {"seed", 'i', &seed, "random seed"},
                     {"data", 's', &data, "directory of the Fashion-MNIST IDX files"},
                     {"out", 's', &out, "directory for deep_mlp.svg"}};
    int rc = args_parse(argc, argv, "A 784-512-512-512-10 MLP with BatchNorm, Dropout, AdamW and warm-up + cosine on Fashion-MNIST.",
                        args, NARGS(args));
    if (rc >= 0) return rc;
    if (epochs < 1 || batch < 1 || !(warmup >= 0 && warmup < 1)) return fprintf(stderr, "need epochs, batch-size >= 1 and 0 <= warmup < 1\n"), 2;
    ag_manual_seed((uint64_t)seed);

    ag_scope_begin();
    ag_dataset *train = load(data, "train", limit), *test = load(data, "t10k", 0);
    if (!train || !test) return fprintf(stderr, "%s (fetch the data with scripts/fetch_fashion_mnist.sh)\n", ag_last_error()), 1;
    ag_loader *train_loader = ag_loader_new(train, &(ag_loader_options){.batch_size = batch, .shuffle = true, .seed = (uint64_t)seed});
    ag_loader *test_loader = ag_loader_new(test, &(ag_loader_options){.batch_size = 1000});
    ag_scope_end(); /* the datasets and loaders hold what they need */

    ag_module *model = AG_SEQUENTIAL(
        ag_nn_linear(784, 512, true), ag_nn_batch_norm1d(512, 1e-5, 0.1, true, true), ag_nn_relu(), ag_nn_dropout(0.1),
        ag_nn_linear(512, 512, true), ag_nn_batch_norm1d(512, 1e-5, 0.1, true, true), ag_nn_relu(), ag_nn_dropout(0.1),
        ag_nn_linear(512, 512, true), ag_nn_batch_norm1d(512, 1e-5, 0.1, true, true), ag_nn_relu(), ag_nn_dropout(0.1),
        ag_nn_linear(512, 10, true));
    ag_tensor *params[64];
    int nparams = ag_module_parameters(model, params, 64);
    ag_adamw_options o = ag_adamw_defaults();
    o.lr = lr;
    o.weight_decay = weight_decay;
    ag_optimizer *opt = ag_adamw_new(params, nparams, &o);
    int steps = epochs * (int)ag_loader_num_batches(train_loader), warm = (int)(warmup * steps) > 0 ? (int)(warmup * steps) : 1;
    ag_scheduler *parts[2] = {ag_linear_lr_new(opt, 0.01, 1.0, warm), ag_cosine_annealing_lr_new(opt, steps - warm, 0)};
    ag_scheduler *sched = ag_sequential_lr_new(opt, parts, 2, &warm);
    if (!model || !opt || !sched) return fprintf(stderr, "%s\n", ag_last_error()), 1;
    printf("%lld parameters, %d steps (%d of warm-up)\n", (long long)ag_module_num_parameters(model, true), steps, warm);

    double *step_loss = calloc((size_t)steps, sizeof(double)), *step_lr = calloc((size_t)steps, sizeof(double));
    double *test_acc = calloc((size_t)epochs + 1, sizeof(double)), *epoch_at = calloc((size_t)epochs + 1, sizeof(double));
    double test_loss = NAN, train_loss = NAN;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int step = 0;
    for (int epoch = 1; epoch <= epochs; epoch++) {
        ag_module_train(model, true);
        ag_tensor *x, *y;
        double sum = 0;
        int batches = 0;
        for (;;) {
            ag_scope_begin();
            if (ag_loader_next(train_loader, &x, &y) <= 0) {
                ag_scope_end();
                break;
            }
            ag_optimizer_zero_grad(opt);
            ag_tensor *loss = ag_cross_entropy(ag_module_forward(model, x), y, NULL);
            step_lr[step] = ag_optimizer_get_lr(opt, 0); /* the lr this step uses */
            if (ag_backward(loss) || ag_optimizer_step(opt) || ag_scheduler_step(sched))
                return fprintf(stderr, "step %d: %s\n", step, ag_last_error()), 1;
            sum += step_loss[step++] = ag_item(loss);
            batches++;
            ag_scope_end();
        }
        train_loss = sum / batches;
        evaluate(model, test_loader, &test_loss, &test_acc[epoch]);
        epoch_at[epoch] = step;
        printf("epoch %d  train loss %.4f  test loss %.4f  test accuracy %.4f\n", epoch, train_loss, test_loss, test_acc[epoch]);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double seconds = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);

    ag_plot *p = ag_plot_new("Deep MLP on Fashion-MNIST", "step", NULL);
    ag_plot_subplot(p, 1, 3, 0);
    ag_plot_line(p, NULL, step_loss, step, "batch loss");
    ag_plot_style_last(p, &(ag_plot_style){.opacity = 0.35, .width = 1});
    double *smooth = malloc(sizeof(double) * (size_t)step);
    for (int t = 0; t < step; t++) smooth[t] = t ? 0.98 * smooth[t - 1] + 0.02 * step_loss[t] : step_loss[0];
    ag_plot_line(p, NULL, smooth, step, "moving average (0.98)");
    ag_plot_labels(p, "training loss", NULL, "cross-entropy");
    ag_plot_subplot(p, 1, 3, 1);
    ag_plot_line(p, epoch_at + 1, test_acc + 1, epochs, "after each epoch");
    ag_plot_style_last(p, &(ag_plot_style){.markers = true});
    ag_plot_labels(p, "test accuracy", NULL, "accuracy");
    ag_plot_subplot(p, 1, 3, 2);
    ag_plot_line(p, NULL, step_lr, step, "lr");
    ag_plot_labels(p, "learning rate (warm-up + cosine)", NULL, "lr");
    char path[1024];
    if (!args_path(path, sizeof path, out, "deep_mlp.svg") || ag_plot_save_svg(p, path))
        return fprintf(stderr, "%s\n", ag_last_error()), 1;

    printf("test_accuracy=%.4f test_loss=%.4f train_loss=%.4f epochs=%d steps=%d seconds=%.1f\n", test_acc[epochs],
           test_loss, train_loss, epochs, step, seconds);
    ag_plot_free(p);
    free(step_loss), free(step_lr), free(test_acc), free(epoch_at), free(smooth);
    ag_scheduler_free(sched);
    ag_optimizer_free(opt);
    ag_module_free(model);
    ag_loader_free(train_loader), ag_loader_free(test_loader);
    ag_dataset_free(train), ag_dataset_free(test);
    return ag_live_tensors() == 0 ? 0 : 1;
}

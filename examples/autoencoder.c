/*
 * autoencoder.c - an autoencoder and a sparse autoencoder on Fashion-MNIST:
 * 784 -> 256 -> 32 (ReLU code) -> 256 -> 784 (sigmoid), trained to reproduce
 * the image with the mean squared error; the sparse one adds an L1 penalty
 * lambda·mean|code| on the code.  Prints the reconstruction error (MSE) on the
 * test set and how sparse the codes are; draws test images with both
 * reconstructions (autoencoder.svg) and the training curves with the activity
 * of each code unit (autoencoder_codes.svg).
 * Needs datasets/fashion-mnist/ (scripts/fetch_fashion_mnist.sh).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <agrad/agrad.h>
#include <agrad/plot.h>
#include "args.h"

enum { CODE = 32, SHOW = 8 };

/* Images [n, 784] in [0, 1] of one split (the first `limit` if limit > 0). */
static ag_tensor *images(const char *dir, const char *split, int limit) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s-images-idx3-ubyte.gz", dir, split);
    ag_tensor *x = ag_load_idx(path, AG_F32);
    if (!x) return NULL;
    int64_t n = limit > 0 && limit < ag_size(x, 0) ? limit : ag_size(x, 0);
    return ag_reshape(ag_rescale(ag_narrow(x, 0, 0, n), 0, 255, 0, 1), AG_SHAPE(n, 784));
}

typedef struct autoencoder {
    ag_module *encoder, *decoder;
} autoencoder;

/* Trains an autoencoder on the loader's images with Adam; lambda > 0 adds the
 * L1 penalty on the code.  Writes each batch's loss into curve. */
static autoencoder train(ag_loader *loader, int epochs, double lambda, double lr, double *curve) {
    ag_manual_seed(0);
    autoencoder ae = {AG_SEQUENTIAL(ag_nn_linear(784, 256, true), ag_nn_relu(), ag_nn_linear(256, CODE, true), ag_nn_relu()),
                      AG_SEQUENTIAL(ag_nn_linear(CODE, 256, true), ag_nn_relu(), ag_nn_linear(256, 784, true), ag_nn_sigmoid())};
    ag_tensor *params[8];
    int n = ag_module_parameters(ae.encoder, params, 4);
    n += ag_module_parameters(ae.decoder, params + n, 4);
    ag_adam_options o = ag_adam_defaults();
    o.lr = lr;
    ag_optimizer *opt = ag_adam_new(params, n, &o);
    int t = 0;
    for (int e = 0; e < epochs; e++) {
        ag_tensor *x;
        double sum = 0;
        int batches = 0;
        for (;;) {
            ag_scope_begin();
            if (ag_loader_next(loader, &x, NULL) <= 0) {
                ag_scope_end();
                break;
            }
            ag_optimizer_zero_grad(opt);
            ag_tensor *code = ag_module_forward(ae.encoder, x);
            ag_tensor *loss = ag_mse_loss(ag_module_forward(ae.decoder, code), x, NULL);
            if (lambda > 0) loss = ag_add(loss, ag_mul_scalar(ag_mean(ag_abs(code)), lambda));
            if (ag_backward(loss) || ag_optimizer_step(opt)) fprintf(stderr, "%s\n", ag_last_error()), exit(1);
            sum += curve[t++] = ag_item(loss);
            batches++;
            ag_scope_end();
        }
        printf("  epoch %d  training loss %.5f\n", e + 1, sum / batches);
    }
    ag_optimizer_free(opt);
    return ae;
}

typedef struct report {
    double mse, zero_fraction, mean_abs, active_units;
    double activity[CODE]; /* fraction of test images for which each code unit is non-zero */
} report;

/* Reconstruction error and code statistics on x; the first SHOW reconstructions go to recon. */
static report evaluate(autoencoder ae, ag_tensor *x, float *recon) {
    report r = {0};
    ag_scope_begin();
    ag_no_grad_begin();
    ag_tensor *code = ag_module_forward(ae.encoder, x), *y = ag_module_forward(ae.decoder, code);
    r.mse = ag_item(ag_mse_loss(y, x, NULL));
    r.mean_abs = ag_item(ag_mean(ag_abs(code)));
    ag_tensor *active = ag_to_dtype(ag_gt(code, ag_scalar(0, AG_F32)), AG_F32); /* ReLU codes: 0 or positive */
    r.zero_fraction = 1 - ag_item(ag_mean(active));
    ag_tensor *per_unit = ag_mean_dim(active, 0, false);
    for (int64_t u = 0; u < CODE; u++) {
        r.activity[u] = ag_get(per_unit, &u);
        r.active_units += r.activity[u] > 0.01;
    }
    ag_copy_to(ag_narrow(y, 0, 0, SHOW), recon, SHOW * 784, AG_F32);
    ag_no_grad_end();
    ag_scope_end();
    return r;
}

int main(int argc, char **argv) {
    int epochs = 3, batch = 128, limit = 0;
    double lambda = 0.003, lr = 1e-3;
    const char *data = "datasets/fashion-mnist", *out = ".";
    arg args[] = {{"epochs", 'i', &epochs, "training epochs of each model"},
                     {"batch-size", 'i', &batch, "images per batch"},
                     {"lr", 'd', &lr, "Adam's learning rate"},
                     {"lambda", 'd', &lambda, "weight of the sparse model's L1 penalty on the code"},
                     {"train-limit", 'i', &limit, "use only the first N training images (0: all 60000)"},
                     {"data", 's', &data, "directory of the Fashion-MNIST IDX files"},
                     {"out", 's', &out, "directory for autoencoder.svg and autoencoder_codes.svg"}};
    int rc = args_parse(argc, argv, "An autoencoder and a sparse (L1) autoencoder on Fashion-MNIST.", args,
                        NARGS(args));
    if (rc >= 0) return rc;
    if (epochs < 1 || batch < 1 || !(lambda > 0)) return fprintf(stderr, "need epochs, batch-size >= 1 and lambda > 0\n"), 2;

    ag_scope_begin();
    ag_tensor *train_x = images(data, "train", limit), *test_x = images(data, "t10k", 0);
    if (!train_x || !test_x) return fprintf(stderr, "%s (fetch the data with scripts/fetch_fashion_mnist.sh)\n", ag_last_error()), 1;
    ag_dataset *ds = ag_tensor_dataset(train_x, train_x); /* unlabelled: the target is the input */
    ag_loader *loader = ag_loader_new(ds, &(ag_loader_options){.batch_size = batch, .shuffle = true, .seed = 1});
    int steps = epochs * (int)ag_loader_num_batches(loader);
    double *curve[2] = {malloc(sizeof(double) * (size_t)steps), malloc(sizeof(double) * (size_t)steps)};
    float *recon[2] = {malloc(sizeof(float) * SHOW * 784), malloc(sizeof(float) * SHOW * 784)}, original[SHOW * 784];
    ag_copy_to(ag_narrow(test_x, 0, 0, SHOW), original, SHOW * 784, AG_F32);
    report rep[2];
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    const char *name[2] = {"autoencoder", "sparse autoencoder"};
    for (int k = 0; k < 2; k++) {
        printf("%s (%s):\n", name[k], k ? "MSE + lambda mean|code|" : "MSE");
        autoencoder ae = train(loader, epochs, k ? lambda : 0, lr, curve[k]);
        rep[k] = evaluate(ae, test_x, recon[k]);
        printf("  test MSE %.5f, code: %.1f%% zeros, mean |code| %.4f, %.0f of %d units ever active\n", rep[k].mse,
               100 * rep[k].zero_fraction, rep[k].mean_abs, rep[k].active_units, CODE);
        ag_module_free(ae.encoder);
        ag_module_free(ae.decoder);
    }
    ag_scope_end();
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double seconds = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);

    /* Test images (top row, with their classes) and their reconstructions. */
    static const char *classes[10] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                      "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"};
    char path[1024];
    snprintf(path, sizeof path, "%s/t10k-labels-idx1-ubyte.gz", data);
    ag_tensor *labels = ag_load_idx(path, AG_I64);
    ag_plot *grid = ag_plot_new("Fashion-MNIST test images (top) and their reconstructions", NULL, NULL);
    ag_plot_size(grid, 120 * SHOW, 3 * 130 + 34);
    for (int r = 0; r < 3; r++)
        for (int64_t i = 0; i < SHOW; i++) {
            double img[784];
            for (int j = 0; j < 784; j++) img[j] = r == 0 ? original[i * 784 + j] : recon[r - 1][i * 784 + j];
            ag_plot_subplot(grid, 3, SHOW, r * SHOW + (int)i);
            ag_plot_image(grid, img, 28, 28, 0, 1);
            int64_t c = labels ? (int64_t)ag_get(labels, &i) : -1;
            ag_plot_labels(grid, r == 0 ? (c >= 0 && c < 10 ? classes[c] : "?") : r == 1 ? "autoencoder" : "sparse", NULL, NULL);
        }
    ag_release(labels);
    if (!args_path(path, sizeof path, out, "autoencoder.svg") || ag_plot_save_svg(grid, path))
        return fprintf(stderr, "%s\n", ag_last_error()), 1;

    ag_plot *codes = ag_plot_new("Autoencoders: training and code activity", NULL, NULL);
    ag_plot_size(codes, 1200, 440);
    ag_plot_subplot(codes, 1, 2, 0);
    for (int k = 0; k < 2; k++) ag_plot_line(codes, NULL, curve[k], steps, name[k]);
    ag_plot_log_scale(codes, false, true);
    ag_plot_labels(codes, "training loss per batch", "step", "loss (MSE, + L1 term for the sparse one)");
    ag_plot_subplot(codes, 1, 2, 1);
    double unit[CODE];
    for (int u = 0; u < CODE; u++) unit[u] = u;
    for (int k = 0; k < 2; k++) {
        ag_plot_scatter(codes, unit, rep[k].activity, CODE, name[k]);
        ag_plot_style_last(codes, &(ag_plot_style){.width = k ? 3 : 5}); /* the marker radius */
    }
    ag_plot_limits(codes, NAN, NAN, -0.05, 1.3); /* room for the legend above the points */
    ag_plot_labels(codes, "how often each code unit is non-zero (test set)", "code unit", "fraction of images");
    if (!args_path(path, sizeof path, out, "autoencoder_codes.svg") || ag_plot_save_svg(codes, path))
        return fprintf(stderr, "%s\n", ag_last_error()), 1;

    printf("ae_test_mse=%.5f ae_code_zero_fraction=%.4f ae_code_mean_abs=%.4f sparse_test_mse=%.5f "
           "sparse_code_zero_fraction=%.4f sparse_code_mean_abs=%.4f ae_active_units=%.0f sparse_active_units=%.0f lambda=%g epochs=%d seconds=%.1f\n",
           rep[0].mse, rep[0].zero_fraction, rep[0].mean_abs, rep[1].mse, rep[1].zero_fraction, rep[1].mean_abs,
           rep[0].active_units, rep[1].active_units, lambda, epochs, seconds);
    ag_plot_free(grid);
    ag_plot_free(codes);
    ag_loader_free(loader);
    ag_dataset_free(ds);
    free(curve[0]), free(curve[1]), free(recon[0]), free(recon[1]);
    return ag_live_tensors() == 0 ? 0 : 1;
}

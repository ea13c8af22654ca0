/*
 * augment_fashion.c - data augmentation as a regulariser on Fashion-MNIST: the
 * same MLP (784-256-10, Adam) trained twice on a small training set, once on the
 * plain images and once through random crops with padding, horizontal flips,
 * small affine moves (shift, scale, rotation), Gaussian noise and random
 * erasing, drawn afresh every epoch by the loader's worker threads.  Without
 * augmentation the training accuracy runs to 100% while the validation accuracy
 * stalls; with it the gap narrows.  Draws the train/validation curves of both
 * runs and a batch before and after augmentation; --bench times a training step
 * on a transform-heavy pipeline with 0, 1 and 2 workers, and shows where each
 * step's CPU time goes (the training thread, its OpenMP team, the workers).
 *
 *     ./build/examples/augment_fashion --data datasets/fashion-mnist --out pictures
 *
 * Ends with one line: plain_val_acc=0.8185 aug_val_acc=0.7600 plain_gap=0.0975 aug_gap=0.0135 ...
 */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <agrad/agrad.h>
#include "args.h"

static const char *data_dir = "datasets/fashion-mnist", *out_dir = ".", *strength = "full";
static int epochs = 12, train_limit = 2000, val_limit = 2000, batch = 100, workers = 2, seed = 1, bench = 0, hidden = 256;
static arg args[] = {
    {"data", 's', &data_dir, "directory holding the four Fashion-MNIST IDX .gz files"},
    {"out", 's', &out_dir, "directory for augment_fashion.svg (curves) and augment_batch.svg (a batch)"},
    {"augment", 's', &strength, "full: crop, flip, affine, noise, erasing; light: flip, crop (padding 1), noise {full|light}"},
    {"epochs", 'i', &epochs, "epochs of each run"},
    {"train-limit", 'i', &train_limit, "training images used (the first N)"},
    {"val-limit", 'i', &val_limit, "validation images (the first N of the test set)"},
    {"batch", 'i', &batch, "batch size"},
    {"hidden", 'i', &hidden, "hidden units"},
    {"workers", 'i', &workers, "loader worker threads"},
    {"seed", 'i', &seed, "seed of the weights, the order and the augmentation"},
    {"bench", 'i', &bench, "if > 0: time this many steps with 0, 1 and 2 workers instead of training"},
};

static ag_tensor *load(const char *file, ag_dtype dtype) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", data_dir, file);
    return ag_load_idx(path, dtype);
}

/* Pixels 0..255 to [0, 1]; optionally the augmentations (fill 0 is the black
 * background); then to [-1, 1]. */
static ag_compose *pipeline(bool augment, bool heavy) {
    ag_compose *c = ag_compose_new();
    ag_compose_normalize(c, (double[]){0}, (double[]){255}, 1);
    if (augment && strcmp(strength, "light") == 0) {
        ag_compose_hflip(c, 0.5);
        ag_compose_random_crop(c, 1);
        ag_compose_gaussian_noise(c, 0.03);
    } else if (augment) {
        ag_compose_random_crop(c, 2);
        ag_compose_hflip(c, 0.5);
        ag_compose_random_affine(c, -8, 8, 0.04, 0.95, 1.05);
        ag_compose_gaussian_noise(c, 0.03);
        ag_compose_random_erasing(c, 0.2, 0.02, 0.1, 0.3, 3.3, 0);
    }
    for (int k = 0; heavy && k < 6; k++) ag_compose_random_affine(c, -5, 5, 0.03, 0.95, 1.05); /* --bench: more work per item */
    ag_compose_normalize(c, (double[]){0.5}, (double[]){0.5}, 1);
    return c;
}

static ag_module *make_model(void) {
    return AG_SEQUENTIAL(ag_nn_flatten(1, -1), ag_nn_linear(784, hidden, true), ag_nn_relu(), ag_nn_linear(hidden, 10, true));
}

/* Loss and accuracy of model over a loader's epoch, without a graph. */
static void evaluate(ag_module *model, ag_loader *l, double *loss, double *acc) {
    ag_no_grad_begin();
    ag_module_eval(model);
    double n = 0;
    *loss = *acc = 0;
    ag_tensor *x, *y;
    for (;;) {
        ag_scope_begin();
        int got = ag_loader_next(l, &x, &y);
        if (got > 0) {
            ag_tensor *logits = ag_module_forward(model, x);
            double b = (double)ag_size(x, 0);
            *loss += ag_item(ag_cross_entropy(logits, y, NULL)) * b;
            *acc += ag_accuracy(logits, y) * b;
            n += b;
        }
        ag_scope_end();
        if (got <= 0) break;
    }
    *loss /= n > 0 ? n : 1;
    *acc /= n > 0 ? n : 1;
    ag_module_train(model, true);
    ag_no_grad_end();
}

/* One run: curves[epoch][0..3] = train loss, train accuracy (on the plain
 * images), validation loss, validation accuracy. */
static ag_status train(ag_dataset *train_raw, ag_dataset *val_raw, bool augment, double (*curves)[4]) {
    ag_manual_seed((uint64_t)seed);
    ag_compose *aug = pipeline(augment, false), *plain = pipeline(false, false);
    ag_dataset *tr = ag_transformed_dataset(train_raw, aug), *tr_plain = ag_transformed_dataset(train_raw, plain);
    ag_dataset *va = ag_transformed_dataset(val_raw, plain);
    ag_compose_free(aug);
    ag_compose_free(plain);
    ag_loader *loader = ag_loader_new(tr, &(ag_loader_options){.batch_size = batch, .shuffle = true, .seed = (uint64_t)seed,
                                                               .num_workers = workers});
    ag_loader *eval_train = ag_loader_new(tr_plain, &(ag_loader_options){.batch_size = 1000});
    ag_loader *eval_val = ag_loader_new(va, &(ag_loader_options){.batch_size = 1000});
    ag_module *model = make_model();
    ag_tensor *p[8];
    int np = model ? ag_module_parameters(model, p, 8) : 0;
    ag_adam_options o = ag_adam_defaults();
    ag_optimizer *opt = np ? ag_adam_new(p, np, &o) : NULL;
    /* the learning rate falls along a cosine to 0 at the last epoch, so the run ends settled
     * rather than on one noisy epoch */
    ag_scheduler *sched = opt ? ag_cosine_annealing_lr_new(opt, epochs, 0.0) : NULL;
    ag_status st = loader && eval_train && eval_val && sched ? AG_OK : ag_last_status();
    for (int e = 0; !st && e < epochs; e++) {
        ag_tensor *x, *y;
        int got;
        for (;;) {
            ag_scope_begin();
            if ((got = ag_loader_next(loader, &x, &y)) > 0) {
                ag_optimizer_zero_grad(opt);
                st = ag_backward(ag_cross_entropy(ag_module_forward(model, x), y, NULL));
                if (!st) st = ag_optimizer_step(opt);
            }
            ag_scope_end();
            if (got <= 0 || st) break;
        }
        if (got < 0 && !st) st = ag_last_status();
        if (!st) st = ag_scheduler_step(sched);
        if (st) break;
        evaluate(model, eval_train, &curves[e][0], &curves[e][1]);
        evaluate(model, eval_val, &curves[e][2], &curves[e][3]);
        printf("%s epoch %2d: train loss %.4f acc %.4f   validation loss %.4f acc %.4f\n", augment ? "augmented" : "plain    ",
               e + 1, curves[e][0], curves[e][1], curves[e][2], curves[e][3]);
    }
    ag_scheduler_free(sched);
    ag_optimizer_free(opt);
    ag_module_free(model);
    ag_loader_free(loader);
    ag_loader_free(eval_train);
    ag_loader_free(eval_val);
    ag_dataset_free(tr);
    ag_dataset_free(tr_plain);
    ag_dataset_free(va);
    return st;
}

/* Eight training images, plain (top row) and augmented (bottom row), as the loader gives them. */
static ag_status draw_batch(ag_dataset *train_raw, const char *path) {
    ag_compose *aug = pipeline(true, false), *plain = pipeline(false, false);
    ag_dataset *a = ag_transformed_dataset(train_raw, aug), *b = ag_transformed_dataset(train_raw, plain);
    ag_compose_free(aug);
    ag_compose_free(plain);
    ag_loader *la = ag_loader_new(a, &(ag_loader_options){.batch_size = 8, .seed = (uint64_t)seed});
    ag_loader *lb = ag_loader_new(b, &(ag_loader_options){.batch_size = 8, .seed = (uint64_t)seed});
    ag_plot *p = ag_plot_new("A batch before (top) and after augmentation (bottom)", NULL, NULL);
    ag_status st = la && lb && p ? ag_plot_size(p, 960, 300) : ag_last_status();
    ag_scope_begin();
    ag_tensor *xa, *xb, *y;
    if (!st && (ag_loader_next(la, &xa, &y) <= 0 || ag_loader_next(lb, &xb, &y) <= 0)) st = ag_last_status();
    double pixels[784];
    for (int row = 0; !st && row < 2; row++)
        for (int k = 0; !st && k < 8 && k < ag_size(xa, 0); k++) {
            const float *src = (const float *)ag_data(row ? xa : xb) + k * 784;
            for (int i = 0; i < 784; i++) pixels[i] = src[i];
            st = ag_plot_subplot(p, 2, 8, row * 8 + k);
            if (!st) st = ag_plot_labels(p, "", NULL, NULL);
            if (!st) st = ag_plot_image(p, pixels, 28, 28, -1, 1);
        }
    ag_scope_end();
    if (!st) st = ag_plot_save_svg(p, path);
    ag_plot_free(p);
    ag_loader_free(la);
    ag_loader_free(lb);
    ag_dataset_free(a);
    ag_dataset_free(b);
    return st;
}

static ag_status draw_curves(double (*plain)[4], double (*aug)[4], const char *path) {
    ag_plot *p = ag_plot_new(NULL, NULL, NULL);
    double ep[1024], v[4][1024];
    for (int e = 0; e < epochs; e++) ep[e] = e + 1;
    ag_status st = p ? ag_plot_size(p, 960, 380) : ag_last_status();
    const char *what[2] = {"loss", "accuracy"};
    for (int k = 0; !st && k < 2; k++) {
        st = ag_plot_subplot(p, 1, 2, k);
        if (!st) st = ag_plot_labels(p, k ? "Accuracy" : "Cross-entropy", "epoch", what[k]);
        for (int run = 0; !st && run < 2; run++)
            for (int split = 0; !st && split < 2; split++) {
                double (*c)[4] = run ? aug : plain;
                for (int e = 0; e < epochs; e++) v[run * 2 + split][e] = c[e][split * 2 + k];
                char label[64];
                snprintf(label, sizeof label, "%s, %s", run ? "augmented" : "plain", split ? "validation" : "train");
                st = ag_plot_line(p, ep, v[run * 2 + split], epochs, label);
                if (!st) st = ag_plot_style_last(p, &(ag_plot_style){.color = run ? "#d62728" : "#1f77b4", .dashed = split == 0});
            }
        if (!st) st = ag_plot_legend(p, k ? AG_LEGEND_LOWER_RIGHT : AG_LEGEND_UPPER_RIGHT);
    }
    if (!st) st = ag_plot_save_svg(p, path);
    ag_plot_free(p);
    return st;
}

/* CPU time of each thread of this process so far (Linux: the first field of
 * /proc/self/task/TID/schedstat, nanoseconds on a CPU); n stays 0 elsewhere. */
typedef struct cpu_times {
    int n;
    long tid[256];
    double ms[256];
} cpu_times;

static void cpu_snapshot(cpu_times *c) {
    c->n = 0;
    DIR *d = opendir("/proc/self/task");
    for (struct dirent *e; d && (e = readdir(d)) && c->n < 256;) {
        char path[300];
        unsigned long long ns;
        snprintf(path, sizeof path, "/proc/self/task/%s/schedstat", e->d_name);
        FILE *f = e->d_name[0] != '.' ? fopen(path, "r") : NULL;
        if (f && fscanf(f, "%llu", &ns) == 1) c->tid[c->n] = atol(e->d_name), c->ms[c->n++] = (double)ns * 1e-6;
        if (f) fclose(f);
    }
    if (d) closedir(d);
}

/* CPU ms of thread tid in c, -1 when it did not exist. */
static double cpu_of(const cpu_times *c, long tid) {
    for (int i = 0; i < c->n; i++)
        if (c->tid[i] == tid) return c->ms[i];
    return -1;
}

/* Where the CPU time of `steps` steps (from before to after) went, per step: the
 * training thread, the threads that outlived the loader (OpenMP's team: in gone,
 * taken after the loader was freed), and those that did not (its workers). */
static void cpu_split(const cpu_times *before, const cpu_times *after, const cpu_times *gone, int steps, double out[3]) {
    long self = (long)getpid(); /* the main thread's id is the process id */
    out[0] = out[1] = out[2] = 0;
    for (int i = 0; i < after->n; i++) {
        double was = cpu_of(before, after->tid[i]), ms = after->ms[i] - (was < 0 ? 0 : was);
        out[after->tid[i] == self ? 0 : cpu_of(gone, after->tid[i]) >= 0 ? 1 : 2] += ms / steps;
    }
}

/* Mean time of a training step (waiting for the batch included) over `steps` steps
 * after 5 warm-up ones, on the heavy pipeline with w workers; with w < 0, the
 * loader alone (no training: the time to prepare a batch), with train_only the
 * training alone (one batch over and over). */
static double step_ms(ag_dataset *train_raw, int w, int steps, bool train_only, double cpu[3]) {
    bool data_only = w < 0;
    if (w < 0) w = 0;
    cpu_times c0 = {0}, c1 = {0}, c2 = {0};
    ag_compose *heavy = pipeline(true, true);
    ag_dataset *tr = ag_transformed_dataset(train_raw, heavy);
    ag_compose_free(heavy);
    ag_loader *l = ag_loader_new(tr, &(ag_loader_options){.batch_size = batch, .shuffle = true, .seed = 1, .num_workers = w});
    ag_module *model = make_model();
    ag_tensor *p[8];
    int np = model ? ag_module_parameters(model, p, 8) : 0;
    ag_adam_options o = ag_adam_defaults();
    ag_optimizer *opt = np ? ag_adam_new(p, np, &o) : NULL;
    double t0 = 0, ms = NAN;
    ag_tensor *kept_x = NULL, *kept_y = NULL; /* train_only: the one batch */
    for (int s = 0; l && opt && s < steps + 5; s++) {
        if (s == 5) {
            cpu_snapshot(&c0);
            t0 = ag_seconds();
        }
        ag_scope_begin();
        ag_tensor *x = kept_x, *y = kept_y;
        int got = kept_x ? 1 : ag_loader_next(l, &x, &y);
        if (got == 0) got = ag_loader_next(l, &x, &y); /* the next epoch */
        if (got > 0 && train_only && !kept_x) {
            kept_x = ag_retain(x);
            kept_y = ag_retain(y);
        }
        if (got > 0 && !data_only) {
            ag_optimizer_zero_grad(opt);
            ag_backward(ag_cross_entropy(ag_module_forward(model, x), y, NULL));
            ag_optimizer_step(opt);
        }
        ag_scope_end();
        if (got < 0) break;
        if (s == steps + 4) {
            ms = (ag_seconds() - t0) * 1000 / steps;
            cpu_snapshot(&c1);
        }
    }
    ag_release(kept_x);
    ag_release(kept_y);
    ag_optimizer_free(opt);
    ag_module_free(model);
    ag_loader_free(l);
    ag_dataset_free(tr);
    cpu_snapshot(&c2);
    cpu_split(&c0, &c1, &c2, steps, cpu);
    return ms;
}

int main(int argc, char **argv) {
    int rc = args_parse(argc, argv, "Fashion-MNIST with and without data augmentation (MLP 784-256-10, Adam).", args, NARGS(args));
    if (rc >= 0) return rc;
    if (epochs < 1 || epochs > 1024 || train_limit < 1 || val_limit < 1 || batch < 1 || workers < 0)
        return fprintf(stderr, "augment_fashion: epochs in [1, 1024], limits, batch >= 1, workers >= 0\n"), 2;
    ag_scope_begin(); /* owns the data */
    ag_tensor *xtr = load("train-images-idx3-ubyte.gz", AG_U8), *ytr = load("train-labels-idx1-ubyte.gz", AG_I64);
    ag_tensor *xva = load("t10k-images-idx3-ubyte.gz", AG_U8), *yva = load("t10k-labels-idx1-ubyte.gz", AG_I64);
    ag_status st = xtr && ytr && xva && yva ? AG_OK : ag_last_status();
    ag_dataset *train_raw = NULL, *val_raw = NULL;
    if (!st) {
        int64_t nt = train_limit < ag_size(xtr, 0) ? train_limit : ag_size(xtr, 0);
        int64_t nv = val_limit < ag_size(xva, 0) ? val_limit : ag_size(xva, 0);
        /* images [N, 1, 28, 28] (one channel), the first N of each split */
        train_raw = ag_tensor_dataset(ag_reshape(ag_narrow(xtr, 0, 0, nt), AG_SHAPE(nt, 1, 28, 28)), ag_narrow(ytr, 0, 0, nt));
        val_raw = ag_tensor_dataset(ag_reshape(ag_narrow(xva, 0, 0, nv), AG_SHAPE(nv, 1, 28, 28)), ag_narrow(yva, 0, 0, nv));
        if (!train_raw || !val_raw || ag_dataset_set_num_classes(train_raw, 10) || ag_dataset_set_num_classes(val_raw, 10))
            st = ag_last_status();
    }
    if (!st && bench > 0) {
        double ms[3], cpu[5][3];
        double data_ms = step_ms(train_raw, -1, bench, false, cpu[3]), model_ms = step_ms(train_raw, 0, bench, true, cpu[4]);
        for (int w = 0; w < 3; w++) ms[w] = step_ms(train_raw, w, bench, false, cpu[w]);
        printf("step_ms_w0=%.2f step_ms_w1=%.2f step_ms_w2=%.2f data_ms=%.2f model_ms=%.2f batch=%d steps=%d\n", ms[0], ms[1],
               ms[2], data_ms, model_ms, batch, bench);
        printf("\n| loader | mean step (ms), %d steps of %d | CPU ms per step: training thread, its helper threads, "
               "workers |\n| --- | --- | --- |\n",
               bench, batch);
        const char *rows[5] = {"0 workers", "1 worker", "2 workers", "preparing a batch alone (0 workers, no training)",
                               "the training step alone (one batch over and over)"};
        double wall[5] = {ms[0], ms[1], ms[2], data_ms, model_ms};
        for (int r = 0; r < 5; r++)
            printf("| %s | %.1f | %.1f, %.1f, %.1f |\n", rows[r], wall[r], cpu[r][0], cpu[r][1], cpu[r][2]);
    } else if (!st) {
        static double plain[1024][4], aug[1024][4];
        char path[1024];
        st = train(train_raw, val_raw, false, plain);
        if (!st) st = train(train_raw, val_raw, true, aug);
        if (!st) st = args_path(path, sizeof path, out_dir, "augment_fashion.svg") ? draw_curves(plain, aug, path) : AG_ERR_IO;
        if (!st) st = args_path(path, sizeof path, out_dir, "augment_batch.svg") ? draw_batch(train_raw, path) : AG_ERR_IO;
        int e = epochs - 1;
        if (!st)
            printf("plain_val_acc=%.4f aug_val_acc=%.4f plain_gap=%.4f aug_gap=%.4f plain_val_loss=%.4f aug_val_loss=%.4f\n",
                   plain[e][3], aug[e][3], plain[e][1] - plain[e][3], aug[e][1] - aug[e][3], plain[e][2], aug[e][2]);
    }
    ag_dataset_free(train_raw);
    ag_dataset_free(val_raw);
    ag_scope_end();
    if (st) return fprintf(stderr, "augment_fashion: %s\n", ag_last_error()), 1;
    return 0;
}

/*
 * fashion_cnn.c - Fashion-MNIST with a small CNN: two blocks of Conv2d 3x3
 * (padding 1), BatchNorm2d, ReLU and MaxPool2d(2), W then 2W channels
 * (28x28 -> 14x14 -> 7x7), then Flatten, Dropout and Linear(2W·7·7, 10);
 * cross-entropy on the logits, Adam with its learning rate annealed to 0 along
 * a cosine over the 3 epochs, shuffled batches of 128, PyTorch's default
 * initialisation, inputs scaled to z-scores with the mean and standard
 * deviation of the training bytes.  The images stay uint8 and each batch is
 * converted when it is drawn, as in fashion_mlp.c.  PyTorch twin: fashion_cnn.py.
 * --model resnet trains a small ResNet instead (examples/resnet.h: a stem conv, three
 * residual BasicBlocks written as an ordinary user module, global average pooling and
 * a linear head; W, 2W and 4W channels at 28x28, 14x14 and 7x7).
 *
 *     ./build/examples/fashion_cnn --plot cnn.svg --features cnn_features.svg
 *
 * Prints a progress bar (or a line per epoch), then the test set's confusion
 * matrix, and ends with one line: test_acc=... test_loss=... ... train_s=... epoch_s=...
 * --features draws what the first layer learned: its filters, and their
 * activations (after BatchNorm and ReLU) on one test image.
 *
 * Data-parallel on Open MPI (docs/distributed.md), as fashion_mlp.c: the same
 * global batch split over the ranks, each loading its share of every epoch, the
 * BatchNorms made SyncBatchNorm (statistics of the global batch), each rank its
 * own dropout stream; rank 0 evaluates, prints and draws, and the last line says
 * whether every rank ended with rank 0's parameters and buffers bit for bit:
 *
 *     mpirun -np 2 ./build/examples/fashion_cnn --distributed mpi
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <agrad/agrad.h>
#if AGRAD_HAVE_MPI
#include <agrad/mpi.h>
#endif
#include "args.h"
#include "resnet.h"

static const char *model_kind = "cnn", *scheduler = "cosine", *data_dir = "datasets/fashion-mnist", *curves_csv = "",
                  *plot = "", *features = "", *progress = "auto", *distributed = "none";
static double lr = 1e-3, dropout = 0.25;
static int width = 32, epochs = 3, batch = 128, seed = 0, train_limit = 0, image = 0;
static arg args[] = {
    {"model", 's', &model_kind, "cnn: two conv blocks; resnet: stem conv, three BasicBlocks, average pool {cnn|resnet}"},
    {"lr", 'd', &lr, "Adam's learning rate"},
    {"scheduler", 's', &scheduler, "cosine: from lr down to 0 over all the steps, stepped every batch {none|cosine}"},
    {"width", 'i', &width, "channels of the first block (the second has twice as many)"},
    {"dropout", 'd', &dropout, "dropout probability before the linear head"},
    {"epochs", 'i', &epochs, "epochs"},
    {"batch", 'i', &batch, "batch size"},
    {"seed", 'i', &seed, "seed (weights, dropout and shuffling)"},
    {"train-limit", 'i', &train_limit, "train on the first N images only (0: all)"},
    {"data", 's', &data_dir, "directory holding the four Fashion-MNIST IDX .gz files"},
    {"curves", 's', &curves_csv, "CSV file for the per-epoch loss and accuracy"},
    {"plot", 's', &plot, "SVG file drawing the per-epoch loss and accuracy"},
    {"features", 's', &features, "SVG file drawing the first layer's filters and activations on one test image"},
    {"image", 'i', &image, "the test image that --features draws"},
    {"progress", 's', &progress, "auto: a bar on a terminal, lines otherwise {auto|bar|lines|quiet}"},
    {"distributed", 's', &distributed, "data-parallel over the ranks of mpirun, the batch split among them "
                                       "{none|mpi}"},
};
static ag_comm *comm; /* --distributed mpi: the ranks of mpirun; NULL for one process */
static int rank;
#define IS(option, value) (strcmp(option, value) == 0)
#define CLASSES 10

static const char *class_names[CLASSES] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                           "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};

typedef struct data { ag_tensor *xtr, *ytr, *xte, *yte, *mean, *std; } data; /* images: uint8 [N, 28, 28] */

static ag_tensor *load(const char *file, ag_dtype dtype) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", data_dir, file);
    return ag_load_idx(path, dtype);
}

/* A batch of pixels 0..255 (uint8) [B, 28, 28] as float32 z-scores [B, 1, 28, 28]. */
static ag_tensor *inputs(const data *d, ag_tensor *bytes) { return ag_unsqueeze(ag_normalize(bytes, d->mean, d->std), 1); }

/* Conv2d(in, out, 3, padding=1), BatchNorm2d(out), ReLU, MaxPool2d(2), appended to model. */
static ag_status block(ag_module *model, int64_t in, int64_t out) {
    ag_status st = ag_nn_sequential_append(model, ag_nn_conv2d(in, out, 3, 3, &(ag_conv_opts){.padding = {1, 1}}, true));
    if (!st) st = ag_nn_sequential_append(model, ag_nn_batch_norm2d(out, 1e-5, 0.1, true, true));
    if (!st) st = ag_nn_sequential_append(model, ag_nn_relu());
    if (!st) st = ag_nn_sequential_append(model, ag_nn_max_pool2d(&(ag_pool_opts){.kernel = {2, 2}}));
    return st;
}

static ag_module *make_model(void) {
    if (IS(model_kind, "resnet")) return resnet_new(width, CLASSES);
    ag_module *model = ag_nn_sequential(0, NULL);
    ag_status st = model ? block(model, 1, width) : ag_last_status();
    if (!st) st = block(model, width, 2 * width);
    if (!st) st = ag_nn_sequential_append(model, ag_nn_flatten(1, -1));
    if (!st) st = ag_nn_sequential_append(model, ag_nn_dropout(dropout));
    if (!st) st = ag_nn_sequential_append(model, ag_nn_linear(2 * width * 7 * 7, CLASSES, true));
    if (st) ag_module_free(model);
    return st ? NULL : model;
}

/* Cross-entropy and accuracy on the test set, in batches of EVAL_BATCH, in eval mode
 * without a graph; adds each prediction to the confusion matrix cm when not NULL.
 * Batches of 256, not the MLP's 1024: the first block's activations of 1024 images
 * take 100 MB each, and buffers that large are mapped afresh (page faults) at every
 * batch instead of being reused. */
#define EVAL_BATCH 256
static ag_status evaluate(ag_module *model, const data *d, double *loss, double *acc, int64_t cm[CLASSES][CLASSES]) {
    ag_no_grad_begin();
    ag_module_eval(model);
    int64_t n = ag_size(d->yte, 0);
    ag_status st = AG_OK;
    *loss = *acc = 0;
    for (int64_t i = 0; i < n && !st; i += EVAL_BATCH) {
        ag_scope_begin();
        int64_t b = n - i < EVAL_BATCH ? n - i : EVAL_BATCH;
        ag_tensor *y = ag_narrow(d->yte, 0, i, b), *logits = ag_module_forward(model, inputs(d, ag_narrow(d->xte, 0, i, b)));
        ag_tensor *m = cm ? ag_confusion_matrix(logits, y, CLASSES) : NULL;
        *loss += ag_item(ag_cross_entropy(logits, y, NULL)) * (double)b / (double)n;
        *acc += ag_accuracy(logits, y) * (double)b / (double)n;
        if (!isfinite(*acc) || (cm && !m)) st = ag_last_status();
        for (int64_t r = 0; m && r < CLASSES; r++)
            for (int64_t c = 0; c < CLASSES; c++) cm[r][c] += (int64_t)ag_get(m, (int64_t[]){r, c});
        ag_scope_end();
    }
    ag_module_train(model, true);
    ag_no_grad_end();
    return st;
}

/* tensor's values as doubles into a new array (free it); NULL on failure. */
static double *values_of(ag_tensor *t) {
    int64_t n = t ? ag_numel(t) : 0;
    double *v = n > 0 ? malloc(sizeof(double) * (size_t)n) : NULL;
    if (v && ag_copy_to(t, v, n, AG_F64)) free(v), v = NULL;
    return v;
}

/* The first layer on test image `image`: the image, the filters (one grey scale
 * for all, mid-grey at 0) and the activations after BatchNorm and ReLU (each on
 * its own scale), eight to a row. */
static ag_status draw_features(ag_module *model, const data *d, const char *path) {
    if (image < 0 || image >= ag_size(d->xte, 0))
        return fprintf(stderr, "fashion_cnn: --image %d is not a test image\n", image), AG_ERR_ARG;
    ag_scope_begin();
    ag_no_grad_begin();
    ag_module_eval(model);
    ag_tensor *x = ag_narrow(d->xte, 0, image, 1), *a = inputs(d, x);
    for (int i = 0; i < 3; i++) a = ag_module_forward(ag_module_child(model, i, NULL), a); /* conv, bn, relu */
    ag_module_train(model, true);
    ag_no_grad_end();
    double *pixels = values_of(x), *filters = values_of(ag_module_parameter(model, 0, NULL, 0)), *maps = values_of(a);
    int64_t label = (int64_t)ag_get(d->yte, (int64_t[]){image});
    ag_scope_end();
    ag_status st = pixels && filters && maps ? AG_OK : ag_last_status();
    double top = 0;
    for (int i = 0; !st && i < width * 9; i++) top = fmax(top, fabs(filters[i]));
    char title[128];
    snprintf(title, sizeof title, "First convolution: test image %d (%s)", image,
             label >= 0 && label < CLASSES ? class_names[label] : "?");
    ag_plot *p = st ? NULL : ag_plot_new(title, NULL, NULL);
    if (!st && !p) st = ag_last_status();
    if (!st) st = ag_plot_size(p, 1260, 460);
    if (!st) st = ag_plot_subplot(p, 1, 3, 0);
    if (!st) st = ag_plot_labels(p, "input", NULL, NULL);
    if (!st) st = ag_plot_image(p, pixels, 28, 28, 0, 255);
    if (!st) st = ag_plot_subplot(p, 1, 3, 1);
    if (!st) st = ag_plot_labels(p, "3x3 filters (grey: 0)", NULL, NULL);
    if (!st) st = ag_plot_image_grid(p, filters, width, 3, 3, 8, -top - 1e-12, top + 1e-12);
    if (!st) st = ag_plot_subplot(p, 1, 3, 2);
    if (!st) st = ag_plot_labels(p, "activations after BatchNorm, ReLU", NULL, NULL);
    if (!st) st = ag_plot_image_grid(p, maps, width, 28, 28, 8, NAN, NAN);
    if (!st) st = ag_plot_save_svg(p, path);
    ag_plot_free(p);
    free(pixels), free(filters), free(maps);
    return st;
}

static void print_confusion(int64_t cm[CLASSES][CLASSES]) {
    printf("confusion matrix (rows: true class, columns: predicted):\n%13s", "");
    for (int c = 0; c < CLASSES; c++) printf(" %5d", c);
    printf("   recall\n");
    for (int r = 0; r < CLASSES; r++) {
        int64_t total = 0;
        printf("%d %-11s", r, class_names[r]);
        for (int c = 0; c < CLASSES; c++) printf(" %5lld", (long long)cm[r][c]), total += cm[r][c];
        printf("   %.3f\n", total ? (double)cm[r][r] / (double)total : 0.0);
    }
}

/* Whether every rank holds rank 0's parameters and buffers bit for bit (each
 * tensor widened to float64, exactly, and rank 0's broadcast); true for one
 * process.  *agree is the same on every rank. */
static ag_status ranks_agree(ag_module *model, bool *agree) {
    *agree = true;
    if (!comm) return AG_OK;
    ag_state_dict *sd = ag_state_dict_new();
    ag_status st = sd ? ag_module_state_dict(model, sd) : ag_last_status();
    double differ = 0;
    for (int i = 0; !st && i < ag_state_dict_size(sd); i++) {
        ag_tensor *t = ag_state_dict_tensor(sd, i);
        double *mine = values_of(t), *theirs = NULL;
        ag_scope_begin();
        ag_tensor *c = mine ? ag_from_data(mine, AG_SHAPE(ag_numel(t)), AG_F64) : NULL;
        st = c ? ag_comm_broadcast_(comm, c, 0) : ag_last_status();
        if (!st && !(theirs = values_of(c))) st = ag_last_status();
        if (!st && memcmp(mine, theirs, sizeof(double) * (size_t)ag_numel(t)) != 0) differ = 1;
        ag_scope_end();
        free(mine), free(theirs);
    }
    ag_state_dict_free(sd);
    if (!st) st = ag_comm_average(comm, &differ, 1);
    *agree = differ == 0;
    return st;
}

static ag_status train(ag_module *model, const data *d) {
    ag_tensor *params[64];
    int np = ag_module_parameters(model, params, 64);
    if (np > 64) return fprintf(stderr, "fashion_cnn: %d parameter tensors, more than 64\n", np), AG_ERR_ARG;
    ag_adam_options o = ag_adam_defaults();
    o.lr = lr;
    ag_optimizer *opt = ag_adam_new(params, np, &o);
    ag_dataset *set = ag_tensor_dataset(d->xtr, d->ytr);
    int ranks = comm ? ag_comm_size(comm) : 1; /* each loads its share of every batch */
    ag_loader *loader = ag_loader_new(set, &(ag_loader_options){.batch_size = batch / ranks, .shuffle = true,
                                                                .seed = (uint64_t)seed, .num_replicas = ranks, .rank = rank});
    ag_ddp *ddp = comm && opt ? ag_ddp_new(model, comm, NULL) : NULL; /* rank 0's weights; gradients averaged */
    int steps = loader ? (int)ag_loader_num_batches(loader) : 0;
    ag_scheduler *sched = opt && IS(scheduler, "cosine") ? ag_cosine_annealing_lr_new(opt, epochs * steps, 0) : NULL;
    const char *modes[] = {"auto", "bar", "lines", "quiet"};
    ag_progress_mode mode = AG_PROGRESS_AUTO;
    for (int i = 0; i < 4; i++) if (IS(progress, modes[i])) mode = (ag_progress_mode)i;
    if (rank != 0) mode = AG_PROGRESS_QUIET;
    ag_progress *bar = ag_progress_new(NULL, epochs, steps, mode);
    ag_history *curves = ag_history_new(3, (const char *[]){"train_loss", "test_loss", "test_acc"});
    ag_status st = opt && loader && bar && curves && (sched || IS(scheduler, "none")) && (ddp || !comm) ? AG_OK : ag_last_status();
    double train_s = 0, test_loss = NAN, test_acc = NAN;
    int64_t cm[CLASSES][CLASSES] = {{0}}; /* of the last epoch's evaluation */
    for (int epoch = 1; !st && epoch <= epochs; epoch++) {
        double t0 = ag_seconds();
        ag_tensor *x, *y;
        int got;
        while (!st) {
            ag_scope_begin(); /* owns the batch, the step's tensors and its graph */
            if ((got = ag_loader_next(loader, &x, &y)) > 0) {
                ag_optimizer_zero_grad(opt);
                ag_tensor *in = inputs(d, x);
                ag_tensor *loss = ag_cross_entropy(ddp ? ag_ddp_forward(ddp, in) : ag_module_forward(model, in), y, NULL);
                st = loss ? ag_backward(loss) : ag_last_status();
                if (!st) st = ag_optimizer_step(opt);
                if (!st && sched) st = ag_scheduler_step(sched);
                double logged = st ? 0 : ag_item(loss); /* the global batch's mean loss */
                if (!st && comm) st = ag_comm_average(comm, &logged, 1);
                if (!st) ag_progress_step(bar, logged, ag_size(x, 0) * ranks);
            }
            ag_scope_end();
            if (got <= 0) break;
        }
        if (got < 0 && !st) st = ag_last_status();
        train_s += ag_seconds() - t0;
        if (!st && rank == 0) st = evaluate(model, d, &test_loss, &test_acc, epoch == epochs ? cm : NULL);
        if (st) break;
        char extra[64];
        snprintf(extra, sizeof extra, "test_loss=%.4f test_acc=%.4f", test_loss, test_acc);
        ag_progress_epoch_end(bar, extra);
        st = ag_history_append(curves, (double[]){ag_progress_epoch_loss(bar), test_loss, test_acc});
    }
    bool agree = false;
    if (!st) st = ranks_agree(model, &agree);
    if (!st && !agree) st = AG_ERR_VALUE, fprintf(stderr, "fashion_cnn: rank %d: the ranks' parameters differ\n", rank);
    if (!st && rank == 0) print_confusion(cm);
    if (!st && rank == 0 && curves_csv[0]) st = ag_history_save_csv(curves, curves_csv);
    if (!st && rank == 0 && plot[0]) st = ag_history_plot(curves, plot, "Fashion-MNIST CNN");
    if (!st && rank == 0 && features[0]) st = draw_features(model, d, features);
    if (!st && rank == 0)
        printf("test_acc=%.4f test_loss=%.4f train_loss=%.4f epochs=%d parameters=%lld ranks=%d ranks_agree=%d "
               "train_s=%.2f epoch_s=%.2f\n",
               test_acc, test_loss, ag_progress_epoch_loss(bar), epochs, (long long)ag_module_num_parameters(model, true),
               ranks, agree, train_s, epochs > 0 ? train_s / epochs : 0);
    ag_ddp_free(ddp);
    ag_history_free(curves);
    ag_progress_free(bar);
    ag_scheduler_free(sched);
    ag_optimizer_free(opt);
    ag_loader_free(loader);
    ag_dataset_free(set);
    return st;
}

int main(int argc, char **argv) {
    int rc = args_parse(argc, argv,
                        "Fashion-MNIST: two blocks of Conv2d 3x3, BatchNorm2d, ReLU, MaxPool2d(2); Dropout, Linear "
                        "(or --model resnet); Adam, cosine schedule.",
                        args, NARGS(args));
    if (rc >= 0) return rc;
    if (width < 1 || epochs < 1 || batch < 1 || train_limit < 0 || dropout < 0 || dropout >= 1)
        return fprintf(stderr, "fashion_cnn: need --width, --epochs, --batch >= 1, --train-limit >= 0, "
                               "0 <= --dropout < 1\n"), 2;
    if (IS(distributed, "mpi")) {
#if AGRAD_HAVE_MPI
        if (!(comm = ag_mpi_world(&argc, &argv))) return fprintf(stderr, "fashion_cnn: %s\n", ag_last_error()), 1;
        rank = ag_comm_rank(comm);
        if (batch % ag_comm_size(comm))
            return fprintf(stderr, "fashion_cnn: --batch %d does not split over %d ranks\n", batch, ag_comm_size(comm)), 1;
#else
        return fprintf(stderr, "fashion_cnn: --distributed mpi: built without libagrad-mpi (meson -Dmpi=enabled)\n"), 1;
#endif
    } else if (!IS(distributed, "none")) {
        return fprintf(stderr, "fashion_cnn: --distributed %s: none or mpi\n", distributed), 2;
    }
    ag_manual_seed((uint64_t)seed + (uint64_t)rank); /* each rank its own dropout stream; ddp gives rank 0's weights */
    ag_scope_begin(); /* owns the data */
    data d = {load("train-images-idx3-ubyte.gz", AG_U8), load("train-labels-idx1-ubyte.gz", AG_I64),
              load("t10k-images-idx3-ubyte.gz", AG_U8), load("t10k-labels-idx1-ubyte.gz", AG_I64), NULL, NULL};
    ag_status st = d.xtr && d.ytr && d.xte && d.yte ? AG_OK : ag_last_status();
    if (!st && train_limit > 0 && train_limit < ag_size(d.xtr, 0)) {
        d.xtr = ag_narrow(d.xtr, 0, 0, train_limit);
        d.ytr = ag_narrow(d.ytr, 0, 0, train_limit);
    }
    if (!st) st = ag_zscore_fit(d.xtr, false, &d.mean, &d.std); /* of the bytes, in double */
    ag_module *model = st ? NULL : make_model();
    if (!st && !model) st = ag_last_status();
    if (!st && comm && ag_convert_sync_batch_norm(model, comm) != 2) st = ag_last_status(); /* global-batch statistics */
    if (!st) st = train(model, &d);
    ag_module_free(model);
    ag_scope_end();
    ag_comm_free(comm);
    if (st) return fprintf(stderr, "fashion_cnn: %s\n", ag_last_error()), 1;
    return ag_live_tensors() == 0 ? 0 : 1;
}

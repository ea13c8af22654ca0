/*
 * fashion_mlp.c - Fashion-MNIST with an MLP: Flatten, Linear(784, H), ReLU,
 * Linear(H, 10), cross-entropy on the logits, shuffled batches of 1024.  The
 * optimizer, learning rate, schedule, input scaling, initialisation, width,
 * epochs and seeds are flags; --runs N reports the mean and standard deviation
 * of the test accuracy over N seeds.  As torchvision does, the images stay
 * uint8 bytes (47 MB, not 188 MB of float32) and each batch is converted to
 * float32 inputs when it is drawn.  PyTorch twin: fashion_mlp.py.
 *
 *     ./build/examples/fashion_mlp --optimizer adam --norm pm1 --runs 3
 *
 * Data-parallel on Open MPI (docs/distributed.md), the same global batch split over
 * the ranks, each loading its share of every epoch; rank 0 prints and draws:
 *
 *     mpirun -np 2 ./build/examples/fashion_mlp --distributed mpi
 *
 * Mixed precision (bf16 products, float32 weights and loss; docs/mixed-precision.md):
 *
 *     ./build/examples/fashion_mlp --bf16
 *
 * Ends with one line: test_acc=0.8812 test_acc_std=0.0021 ... train_s=3.1
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <agrad/agrad.h>
#if AGRAD_HAVE_MPI
#include <agrad/mpi.h>
#endif
#include "args.h"

static const char *optimizer = "adam", *lr_text = "default", *scheduler = "none", *norm = "pm1", *init = "default",
                  *data_dir = "datasets/fashion-mnist", *curves_csv = "", *plot = "", *progress = "auto",
                  *distributed = "none";
static int hidden = 256, epochs = 10, batch = 1024, first_seed = 0, runs = 1, swa_start = 0;
static double swa_lr = 0;
static bool bf16; /* --bf16: forward and loss inside ag_autocast_begin(AG_AUTOCAST_BF16) */
static arg args[] = {
    {"optimizer", 's', &optimizer, "optimizer {sgd|momentum|nesterov|adagrad|rmsprop|adam|adamw|muon}"},
    {"lr", 's', &lr_text, "learning rate; default: 0.01 for sgd/momentum/nesterov/adagrad, 0.02 for muon, else 0.001"},
    {"scheduler", 's', &scheduler, "lr schedule; step: x0.5 every 3 epochs, exponential: x0.9 an epoch "
                                   "cyclic: per batch, triangular2 between lr/10 and lr, 4 epochs a cycle "
                                   "{none|step|cosine|exponential|onecycle|cyclic}"},
    {"swa", 'i', &swa_start, "stochastic weight averaging from this epoch on (0: off): SWALR takes over the lr and "
                             "the weights after each later epoch are averaged (AveragedModel, update_bn)"},
    {"swa-lr", 'd', &swa_lr, "SWALR's lr (0: half the lr)"},
    {"norm", 's', &norm, "input scaling; 01: [0,1], pm1: [-1,1] {01|pm1|zscore}"},
    {"init", 's', &init, "weights (default: PyTorch's; normal: std 0.01; biases 0 but for default) "
                         "{default|xavier|kaiming|orthogonal|normal}"},
    {"hidden", 'i', &hidden, "hidden units"},
    {"epochs", 'i', &epochs, "epochs"},
    {"batch", 'i', &batch, "batch size"},
    {"seed", 'i', &first_seed, "seed of the first run (weights and shuffling)"},
    {"runs", 'i', &runs, "runs, with seeds seed, seed+1, ..."},
    {"data", 's', &data_dir, "directory holding the four Fashion-MNIST IDX .gz files"},
    {"curves", 's', &curves_csv, "CSV file for the first run's per-epoch loss and accuracy"},
    {"plot", 's', &plot, "SVG file drawing the first run's per-epoch loss and accuracy"},
    {"progress", 's', &progress, "auto: a bar on a terminal, lines otherwise {auto|bar|lines|quiet}"},
    {"bf16", 'f', &bf16, "mixed precision: the Linear layers' products (forward and backward) in bfloat16, "
                         "weights, optimizer and loss in float32 (docs/mixed-precision.md)"},
    {"distributed", 's', &distributed, "data-parallel over the ranks of mpirun, the batch split among them "
                                       "(libagrad-mpi) {none|mpi}"},
};
static ag_comm *comm; /* --distributed mpi: the ranks of mpirun; NULL for one process */
static int rank;
#define IS(option, value) (strcmp(option, value) == 0)

typedef struct data { ag_tensor *xtr, *ytr, *xte, *yte, *mean, *std; } data; /* images: uint8 */

static ag_tensor *load(const char *file, ag_dtype dtype) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", data_dir, file);
    return ag_load_idx(path, dtype);
}

/* A batch of pixels 0..255 (uint8) as float32 inputs in [0, 1], [-1, 1], or z-scores
 * with the mean and std of the training bytes. */
static ag_tensor *inputs(const data *d, ag_tensor *bytes) {
    if (IS(norm, "zscore")) return ag_normalize(bytes, d->mean, d->std);
    return ag_rescale(bytes, 0, 255, IS(norm, "pm1") ? -1 : 0, 1);
}

static ag_status init_weights(ag_module *model) {
    if (IS(init, "default")) return AG_OK;
    for (int i = 0; i < ag_module_num_parameter_tensors(model); i++) {
        char name[64];
        ag_tensor *p = ag_module_parameter(model, i, name, sizeof name), *r = NULL;
        if (strstr(name, "bias")) r = ag_init_zeros_(p);
        else if (IS(init, "xavier")) r = ag_init_xavier_uniform_(p, 1);
        else if (IS(init, "kaiming")) r = ag_init_kaiming_uniform_(p, 0, "fan_in", "relu");
        else if (IS(init, "orthogonal")) r = ag_init_orthogonal_(p, 1);
        else r = ag_init_normal_(p, 0, 0.01);
        if (!r) return ag_last_status();
    }
    return AG_OK;
}

#define MAKE(kind, default_lr) do {                                         \
        ag_##kind##_options o = ag_##kind##_defaults();                     \
        o.lr = IS(lr_text, "default") ? default_lr : strtod(lr_text, NULL); \
        return ag_##kind##_new(p, n, &o);                                   \
    } while (0)

static ag_optimizer *make_optimizer(ag_module *model) {
    ag_tensor *p[8];
    int n = ag_module_parameters(model, p, 8);
    if (IS(optimizer, "sgd") || IS(optimizer, "momentum") || IS(optimizer, "nesterov")) {
        ag_sgd_options o = ag_sgd_defaults();
        o.lr = IS(lr_text, "default") ? 0.01 : strtod(lr_text, NULL);
        o.momentum = IS(optimizer, "sgd") ? 0 : 0.9;
        o.nesterov = IS(optimizer, "nesterov");
        return ag_sgd_new(p, n, &o);
    }
    if (IS(optimizer, "adagrad")) MAKE(adagrad, 0.01);
    if (IS(optimizer, "rmsprop")) MAKE(rmsprop, 0.001);
    if (IS(optimizer, "adam")) MAKE(adam, 0.001);
    if (IS(optimizer, "adamw")) MAKE(adamw, 0.001);
    MAKE(muon, 0.02);
}

static ag_scheduler *make_scheduler(ag_optimizer *opt, int epochs, int steps) {
    if (IS(scheduler, "step")) return ag_step_lr_new(opt, 3, 0.5);
    if (IS(scheduler, "cosine")) return ag_cosine_annealing_lr_new(opt, epochs, 0);
    if (IS(scheduler, "exponential")) return ag_exponential_lr_new(opt, 0.9);
    if (IS(scheduler, "onecycle")) {
        ag_one_cycle_options o = ag_one_cycle_defaults();
        o.max_lr = ag_optimizer_get_lr(opt, 0);
        o.epochs = epochs;
        o.steps_per_epoch = steps;
        o.cycle_momentum = false;
        return ag_one_cycle_lr_new(opt, &o);
    }
    if (IS(scheduler, "cyclic")) { /* CyclicLR(base_lr=lr/10, max_lr=lr, step_size_up=2 epochs, mode="triangular2") */
        ag_cyclic_options o = ag_cyclic_defaults();
        o.max_lr = ag_optimizer_get_lr(opt, 0);
        o.base_lr = o.max_lr / 10;
        o.step_size_up = 2 * steps;
        o.mode = AG_CYCLIC_TRIANGULAR2;
        o.cycle_momentum = IS(optimizer, "momentum") || IS(optimizer, "nesterov") || IS(optimizer, "adam") ||
                           IS(optimizer, "adamw"); /* SGD's momentum or Adam's β₁ between 0.8 and 0.9 */
        return ag_cyclic_lr_new(opt, &o);
    }
    return NULL; /* none */
}

static bool per_batch(void) { return IS(scheduler, "onecycle") || IS(scheduler, "cyclic"); }

static ag_module *make_model(void) {
    return AG_SEQUENTIAL(ag_nn_flatten(1, -1), ag_nn_linear(784, hidden, true), ag_nn_relu(), ag_nn_linear(hidden, 10, true));
}

/* Cross-entropy and accuracy of the model on the test set, in batches of 1024, without recording a graph. */
static void evaluate(ag_module *model, const data *d, double *loss, double *acc) {
    ag_no_grad_begin();
    ag_module_eval(model);
    int64_t n = ag_size(d->yte, 0);
    *loss = *acc = 0;
    for (int64_t i = 0; i < n; i += 1024) {
        ag_scope_begin();
        int64_t b = n - i < 1024 ? n - i : 1024;
        if (bf16) ag_autocast_begin(AG_AUTOCAST_BF16, true);
        ag_tensor *y = ag_narrow(d->yte, 0, i, b), *logits = ag_module_forward(model, inputs(d, ag_narrow(d->xte, 0, i, b)));
        if (bf16) ag_autocast_end();
        *loss += ag_item(ag_cross_entropy(logits, y, NULL)) * (double)b / (double)n;
        *acc += ag_accuracy(logits, y) * (double)b / (double)n;
        ag_scope_end();
    }
    ag_module_train(model, true);
    ag_no_grad_end();
}

/* One training run from seed: writes test_acc, test_loss, train_loss, train_s into out. */
static ag_status one_run(void *ctx, uint64_t seed, double *out) {
    data *d = ctx;
    ag_module *model = make_model();
    ag_optimizer *opt = model && !init_weights(model) ? make_optimizer(model) : NULL;
    ag_dataset *train = ag_tensor_dataset(d->xtr, d->ytr);
    int ranks = comm ? ag_comm_size(comm) : 1; /* each loads its share of every batch */
    ag_loader *loader = ag_loader_new(train, &(ag_loader_options){.batch_size = batch / ranks, .shuffle = true,
                                                                  .seed = seed, .num_replicas = ranks, .rank = rank});
    ag_ddp *ddp = comm && opt ? ag_ddp_new(model, comm, NULL) : NULL; /* rank 0's weights; gradients averaged */
    int steps = (int)ag_loader_num_batches(loader);
    ag_scheduler *sched = opt ? make_scheduler(opt, epochs, steps) : NULL;
    const char *modes[] = {"auto", "bar", "lines", "quiet"};
    ag_progress_mode mode = AG_PROGRESS_AUTO;
    for (int i = 0; i < 4; i++) if (IS(progress, modes[i])) mode = (ag_progress_mode)i;
    if (rank != 0) mode = AG_PROGRESS_QUIET;
    ag_progress *bar = ag_progress_new(NULL, epochs, steps, mode);
    ag_history *curves = ag_history_new(4, (const char *[]){"train_loss", "test_loss", "test_acc", "lr"});
    ag_status st = opt && loader && bar && curves && (sched || IS(scheduler, "none")) && (ddp || !comm) ? AG_OK : AG_ERR_ARG;
    double train_s = 0, test_loss = NAN, test_acc = NAN;
    ag_averaged_model *swa = NULL; /* --swa: the average of the weights after each epoch from swa_start on */
    ag_scheduler *swa_sched = NULL;
    for (int epoch = 1; !st && epoch <= epochs; epoch++) {
        if (swa_start > 0 && epoch == swa_start) { /* SWALR anneals to swa_lr over 2 epochs, replacing the schedule */
            double to = swa_lr > 0 ? swa_lr : ag_optimizer_get_lr(opt, 0) / 2;
            swa = ag_averaged_model_new(model, make_model(), NULL);
            swa_sched = swa ? ag_swa_lr_new(opt, to, 2, AG_ANNEAL_COS) : NULL;
            if (!swa_sched) st = ag_last_status();
        }
        ag_scheduler *now = swa_sched ? swa_sched : sched;
        double t0 = ag_seconds(), lr = ag_optimizer_get_lr(opt, 0);
        ag_tensor *x, *y;
        int got;
        while (!st) {
            ag_scope_begin(); /* owns the batch, the step's tensors and its graph */
            if ((got = ag_loader_next(loader, &x, &y)) > 0) {
                ag_optimizer_zero_grad(opt);
                ag_tensor *in = inputs(d, x);
                if (bf16) ag_autocast_begin(AG_AUTOCAST_BF16, true);
                ag_tensor *loss = ag_cross_entropy(ddp ? ag_ddp_forward(ddp, in) : ag_module_forward(model, in), y, NULL);
                if (bf16) ag_autocast_end(); /* backward follows each node's precision */
                st = ag_backward(loss);
                if (!st) st = ag_optimizer_step(opt);
                if (!st && per_batch() && now == sched) st = ag_scheduler_step(sched);
                double logged = loss ? ag_item(loss) : NAN; /* the global batch's mean loss */
                if (!st && comm) st = ag_comm_average(comm, &logged, 1);
                if (!st) ag_progress_step(bar, logged, ag_size(x, 0) * ranks);
            }
            ag_scope_end();
            if (got <= 0) break;
        }
        if (got < 0 && !st) st = ag_last_status();
        train_s += ag_seconds() - t0;
        if (st) break;
        if (swa) st = ag_averaged_model_update(swa, model);
        if (!st && now && (now == swa_sched || !per_batch())) st = ag_scheduler_step(now);
        if (st) break;
        evaluate(model, d, &test_loss, &test_acc);
        char extra[64];
        snprintf(extra, sizeof extra, "test_loss=%.4f test_acc=%.4f", test_loss, test_acc);
        ag_progress_epoch_end(bar, extra);
        st = ag_history_append(curves, (double[]){ag_progress_epoch_loss(bar), test_loss, test_acc, lr});
    }
    if (!st && rank == 0 && seed == (uint64_t)first_seed && curves_csv[0]) st = ag_history_save_csv(curves, curves_csv);
    if (!st && rank == 0 && seed == (uint64_t)first_seed && plot[0]) st = ag_history_plot(curves, plot, "Fashion-MNIST MLP");
    if (!st && rank == 0) printf("seed=%llu test_acc=%.4f train_s=%.2f\n", (unsigned long long)seed, test_acc, train_s);
    if (!st && swa) { /* the averaged weights, their BatchNorm statistics recomputed over 10000 training
                         * images (a no-op for this MLP, which has none; a model with BatchNorm needs it) */
        double swa_loss, swa_acc;
        ag_module *avg = ag_averaged_model_module(swa);
        ag_scope_begin();
        int64_t k = ag_size(d->xtr, 0) < 10000 ? ag_size(d->xtr, 0) : 10000;
        ag_dataset *xs = ag_tensor_dataset(inputs(d, ag_narrow(d->xtr, 0, 0, k)), ag_narrow(d->ytr, 0, 0, k));
        ag_loader *all = ag_loader_new(xs, &(ag_loader_options){.batch_size = 1024});
        st = all ? ag_update_bn(all, avg) : ag_last_status();
        ag_loader_free(all);
        ag_dataset_free(xs);
        ag_scope_end();
        evaluate(avg, d, &swa_loss, &swa_acc);
        if (!st && rank == 0)
            printf("seed=%llu swa_epochs=%lld swa_test_acc=%.4f swa_test_loss=%.4f (last weights: %.4f, %.4f)\n",
                   (unsigned long long)seed, (long long)ag_averaged_model_n_averaged(swa), swa_acc, swa_loss, test_acc,
                   test_loss);
    }
    ag_scheduler_free(swa_sched);
    ag_averaged_model_free(swa);
    out[0] = test_acc, out[1] = test_loss, out[2] = ag_progress_epoch_loss(bar), out[3] = train_s;
    ag_history_free(curves);
    ag_progress_free(bar);
    ag_scheduler_free(sched);
    ag_optimizer_free(opt);
    ag_ddp_free(ddp);
    ag_module_free(model);
    ag_loader_free(loader);
    ag_dataset_free(train);
    return st;
}

int main(int argc, char **argv) {
    int rc = args_parse(argc, argv, "Fashion-MNIST: Flatten, Linear(784, H), ReLU, Linear(H, 10), cross-entropy.", args,
                        NARGS(args));
    if (rc >= 0) return rc;
    if (IS(distributed, "mpi")) {
#if AGRAD_HAVE_MPI
        if (!(comm = ag_mpi_world(&argc, &argv))) return fprintf(stderr, "fashion_mlp: %s\n", ag_last_error()), 1;
        rank = ag_comm_rank(comm);
        if (batch % ag_comm_size(comm))
            return fprintf(stderr, "fashion_mlp: --batch %d does not split over %d ranks\n", batch, ag_comm_size(comm)), 1;
#else
        return fprintf(stderr, "fashion_mlp: --distributed mpi: built without libagrad-mpi (meson -Dmpi=enabled)\n"), 1;
#endif
    }
    ag_scope_begin(); /* owns the data */
    data d = {load("train-images-idx3-ubyte.gz", AG_U8), load("train-labels-idx1-ubyte.gz", AG_I64),
              load("t10k-images-idx3-ubyte.gz", AG_U8), load("t10k-labels-idx1-ubyte.gz", AG_I64), NULL, NULL};
    ag_status st = d.xtr && d.ytr && d.xte && d.yte ? AG_OK : ag_last_status();
    if (!st && IS(norm, "zscore")) st = ag_zscore_fit(d.xtr, false, &d.mean, &d.std); /* of the bytes, in double */
    double mean[4], std[4];
    if (!st) st = ag_repeat_runs(one_run, &d, runs, (uint64_t)first_seed, 4, mean, std, NULL);
    ag_scope_end();
    ag_comm_free(comm);
    if (st) return fprintf(stderr, "fashion_mlp: %s\n", ag_last_error()), 1;
    if (rank == 0)
        printf("test_acc=%.4f test_acc_std=%.4f runs=%d test_loss=%.4f train_loss=%.4f train_s=%.2f\n", mean[0], std[0],
           runs, mean[1], mean[2], mean[3]);
    return ag_live_tensors() == 0 ? 0 : 1;
}

/*
 * iris_mlp.c - the program of the training guide (docs/tutorial.md, part 2):
 * an MLP 4 -> hidden -> 3 classifies Iris flowers.  It loads the CSV, splits
 * it 60/20/20 into training, validation and test sets, z-scores the features
 * with the training split's statistics, trains with Adam on mini-batches,
 * stops early on the validation loss (keeping the best weights), reports the
 * test accuracy, confusion matrix and per-class precision / recall / F1, and
 * can save the model, per-epoch curves and resumable checkpoints.
 * PyTorch twin: iris_mlp.py.
 *
 *     ./build/examples/iris_mlp --save iris_mlp.safetensors --curves iris.csv --plot iris.svg
 *
 * Ends with one line: test_acc=0.9667 val_acc=... best_epoch=... train_s=...
 */
#include <math.h>
#include <stdio.h>
#include <agrad/agrad.h>
#include "args.h"

static const char *data = "datasets/iris.csv", *save = "", *curves_csv = "", *plot = "", *checkpoint = "", *resume = "",
                  *progress = "auto";
static int hidden = 16, epochs = 200, patience = 20, seed = 0;
static double lr = 0.01;
static arg args[] = {
    {"data", 's', &data, "the Iris CSV file"},
    {"hidden", 'i', &hidden, "hidden units"},
    {"epochs", 'i', &epochs, "most epochs"},
    {"patience", 'i', &patience, "early stopping: epochs without a better validation loss"},
    {"lr", 'd', &lr, "Adam's learning rate"},
    {"seed", 'i', &seed, "seed of the split, the weights and the shuffling"},
    {"save", 's', &save, "write the trained model's weights to this safetensors file"},
    {"curves", 's', &curves_csv, "write the per-epoch curves to this CSV file"},
    {"plot", 's', &plot, "draw the per-epoch curves into this SVG file"},
    {"checkpoint", 's', &checkpoint, "save a checkpoint to this file after every epoch"},
    {"resume", 's', &resume, "resume training from this checkpoint file"},
    {"progress", 's', &progress, "auto: a bar on a terminal, lines otherwise {auto|bar|lines|quiet}"},
};

/* "auto", "bar", "lines" or "quiet". */
static ag_progress_mode progress_mode(const char *s) {
    return s[0] == 'b' ? AG_PROGRESS_BAR : s[0] == 'l' ? AG_PROGRESS_LINES : s[0] == 'q' ? AG_PROGRESS_QUIET : AG_PROGRESS_AUTO;
}

/* Cross-entropy and accuracy on (x, y) in eval mode, recording nothing. */
static void evaluate(ag_module *model, ag_tensor *x, ag_tensor *y, double *loss, double *acc) {
    ag_scope_begin();
    ag_no_grad_begin();
    ag_module_eval(model);
    ag_tensor *logits = ag_module_forward(model, x);
    *loss = ag_item(ag_cross_entropy(logits, y, NULL));
    *acc = ag_accuracy(logits, y);
    ag_module_train(model, true);
    ag_no_grad_end();
    ag_scope_end();
}

int main(int argc, char **argv) {
    int rc = args_parse(argc, argv, "Iris: an MLP 4 -> hidden -> 3 with early stopping.", args, NARGS(args));
    if (rc >= 0) return rc;
    ag_manual_seed(seed);
    ag_scope_begin(); /* owns the data */

    /* Load the CSV: 4 features, the species name as the label. */
    ag_csv *csv = ag_load_csv(data, &(ag_csv_options){.header = true, .has_labels = true, .label_column = -1});
    if (!csv) return fprintf(stderr, "%s\n", ag_last_error()), 1;
    ag_dataset *all = ag_tensor_dataset(ag_csv_features(csv), ag_csv_labels(csv)), *part[3];
    ag_random_split(all, (double[]){0.7, 0.1, 0.2}, 3, seed, part);
    ag_tensor *x_train, *y_train, *x_val, *y_val, *x_test, *y_test, *mean, *std;
    ag_dataset_tensors(part[0], &x_train, &y_train);
    ag_dataset_tensors(part[1], &x_val, &y_val);
    ag_dataset_tensors(part[2], &x_test, &y_test);

    /* Standardise with the training split's statistics only. */
    ag_zscore_fit(x_train, true, &mean, &std);
    ag_normalize_(x_train, mean, std);
    ag_normalize_(x_val, mean, std);
    ag_normalize_(x_test, mean, std);
    ag_dataset *train = ag_tensor_dataset(x_train, y_train);
    ag_loader *loader = ag_loader_new(train, &(ag_loader_options){.batch_size = 16, .shuffle = true, .seed = seed});

    /* The model and its optimizer. */
    ag_module *model = AG_SEQUENTIAL(ag_nn_linear(4, hidden, true), ag_nn_relu(), ag_nn_linear(hidden, 3, true));
    ag_tensor *params[4];
    ag_adam_options o = ag_adam_defaults();
    o.lr = lr;
    ag_optimizer *opt = ag_adam_new(params, ag_module_parameters(model, params, 4), &o);
    if (!loader || !opt) return fprintf(stderr, "%s\n", ag_last_error()), 1;
    ag_module_print(model, stdout);

    /* What watches the training: early stopping, curves, checkpoints. */
    ag_early_stopping_options es_opt = ag_early_stopping_defaults(); /* mode min: the validation loss */
    es_opt.patience = patience;
    ag_early_stopping *stopper = ag_early_stopping_new(model, &es_opt);
    ag_history *curves = ag_history_new(4, (const char *[]){"train_loss", "train_acc", "val_loss", "val_acc"});
    ag_checkpoint ck = {.model = model, .optimizer = opt, .loader = loader, .early_stopping = stopper, .history = curves};
    if (resume[0] && ag_checkpoint_load(&ck, resume))
        return fprintf(stderr, "resume: %s\n", ag_last_error()), 1;

    /* Train: one scope per step, early stopping on the validation loss. */
    ag_progress *bar = ag_progress_new(NULL, epochs, ag_loader_num_batches(loader), progress_mode(progress));
    ag_progress_set_epoch(bar, ck.epoch + 1);
    double train_loss, train_acc, val_loss = NAN, val_acc = NAN;
    bool stop = false;
    for (int epoch = (int)ck.epoch + 1; epoch <= epochs && !stop; epoch++) {
        for (int more = 1; more;) {
            ag_scope_begin(); /* owns the batch, the step's tensors and its graph */
            ag_tensor *x, *y;
            if ((more = ag_loader_next(loader, &x, &y) > 0)) {
                ag_optimizer_zero_grad(opt);
                ag_tensor *loss = ag_cross_entropy(ag_module_forward(model, x), y, NULL);
                if (ag_backward(loss) || ag_optimizer_step(opt)) return fprintf(stderr, "%s\n", ag_last_error()), 1;
                ag_progress_step(bar, ag_item(loss), ag_size(x, 0));
            }
            ag_scope_end();
        }
        evaluate(model, x_train, y_train, &train_loss, &train_acc);
        evaluate(model, x_val, y_val, &val_loss, &val_acc);
        stop = ag_early_stopping_step(stopper, val_loss) == 1;
        char extra[80];
        snprintf(extra, sizeof extra, "val_loss=%.4f val_acc=%.4f%s", val_loss, val_acc,
                 ag_early_stopping_improved(stopper) ? " *" : "");
        ag_progress_epoch_end(bar, extra);
        ag_history_append(curves, (double[]){train_loss, train_acc, val_loss, val_acc});
        ck.epoch = epoch;
        if (checkpoint[0] && ag_checkpoint_save(&ck, checkpoint))
            return fprintf(stderr, "%s\n", ag_last_error()), 1;
    }
    double train_s = ag_progress_seconds(bar);
    ag_progress_free(bar);

    /* Evaluate the best weights on the test split. */
    ag_early_stopping_restore(stopper);
    ag_no_grad_begin();
    ag_module_eval(model);
    ag_tensor *logits = ag_module_forward(model, x_test);
    ag_no_grad_end();
    ag_tensor *cm = ag_confusion_matrix(logits, y_test, 3);
    ag_prf per_class[3], macro;
    if (ag_precision_recall_f1(cm, AG_AVERAGE_MACRO, per_class, &macro))
        return fprintf(stderr, "%s\n", ag_last_error()), 1;
    printf("confusion matrix (rows: true species, columns: predicted):\n");
    for (int64_t i = 0; i < 3; i++)
        printf("  %-10s %3.0f %3.0f %3.0f   precision %.3f recall %.3f F1 %.3f\n", ag_csv_class_name(csv, i),
               ag_get(cm, (int64_t[]){i, 0}), ag_get(cm, (int64_t[]){i, 1}), ag_get(cm, (int64_t[]){i, 2}),
               per_class[i].precision, per_class[i].recall, per_class[i].f1);

    /* Save the weights (PyTorch loads them with safetensors), the curves and their plot. */
    if (save[0] && ag_module_save(model, save)) return fprintf(stderr, "%s\n", ag_last_error()), 1;
    if (curves_csv[0] && ag_history_save_csv(curves, curves_csv))
        return fprintf(stderr, "%s\n", ag_last_error()), 1;
    if (plot[0] && ag_history_plot(curves, plot, "Iris MLP"))
        return fprintf(stderr, "%s\n", ag_last_error()), 1;
    printf("test_acc=%.4f macro_f1=%.4f val_acc=%.4f best_epoch=%lld epochs=%lld train_s=%.3f\n",
           ag_accuracy(logits, y_test), macro.f1, val_acc, (long long)ag_early_stopping_best_epoch(stopper),
           (long long)ag_history_len(curves), train_s);

    ag_history_free(curves);
    ag_early_stopping_free(stopper);
    ag_optimizer_free(opt);
    ag_module_free(model);
    ag_loader_free(loader);
    ag_dataset_free(train);
    for (int i = 0; i < 3; i++) ag_dataset_free(part[i]);
    ag_dataset_free(all);
    ag_csv_free(csv);
    ag_scope_end();
    return ag_live_tensors() == 0 ? 0 : 1;
}

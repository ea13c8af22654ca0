/*
 * perceptron.c - Rosenblatt's perceptron learns AND, and cannot learn XOR (no
 * line separates XOR's classes); a small MLP then solves XOR with autograd.
 *
 *     ./build/examples/perceptron --data data
 *
 * Ends with one line: and_acc=1.0000 xor_perceptron_acc=0.5000 xor_mlp_acc=1.0000 ...
 */
#include <math.h>
#include <stdio.h>
#include <agrad/agrad.h>
#include "args.h"

static const char *data_dir = "datasets";
static int epochs = 100, steps = 500, seed = 0;
static arg args[] = {
    {"data", 's', &data_dir, "directory holding and.csv and xor.csv"},
    {"epochs", 'i', &epochs, "perceptron epochs (passes over the 4 points)"},
    {"steps", 'i', &steps, "MLP training steps (full batch)"},
    {"seed", 'i', &seed, "seed of the MLP's weights"},
};

/* Reads a truth table: x [4, 2] float32 and labels y [4] int64 (owned by the scope). */
static ag_status load(const char *name, ag_tensor **x, ag_tensor **y) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", data_dir, name);
    ag_csv *csv = ag_load_csv(path, &(ag_csv_options){.header = true, .has_labels = true, .label_column = -1});
    if (!csv) return ag_last_status();
    *x = ag_clone(ag_csv_features(csv));
    *y = ag_clone(ag_csv_labels(csv));
    ag_csv_free(csv);
    return *x && *y ? AG_OK : ag_last_status();
}

/* The perceptron rule: for each misclassified point, w += lr·(y - ŷ)·x, b += lr·(y - ŷ).
 * Returns the accuracy of the step function ŷ = [x·w + b > 0] after the last epoch. */
static double perceptron(ag_tensor *x, ag_tensor *y, int max_epochs, int *epochs_used) {
    ag_tensor *w = ag_zeros(AG_SHAPE(2), AG_F32), *b = ag_zeros(AG_SCALAR_SHAPE, AG_F32);
    const double lr = 0.1;
    int errors = 1, epoch = 0;
    while (errors && epoch < max_epochs) {
        epoch++;
        errors = 0;
        for (int64_t i = 0; i < ag_size(x, 0); i++) {
            ag_scope_begin(); /* owns this point's temporaries */
            ag_tensor *xi = ag_select(x, 0, i);
            double z = ag_item(ag_add(ag_matmul(xi, w), b));
            double err = ag_get(y, (int64_t[]){i}) - (z > 0);
            if (err != 0) {
                ag_add_(w, xi, lr * err);
                ag_add_scalar_(b, lr * err);
                errors++;
            }
            ag_scope_end();
        }
    }
    *epochs_used = epoch;
    return ag_accuracy(ag_binarize(ag_add(ag_matmul(x, w), b), 0), y);
}

/* A 2 -> 8 -> 1 MLP (tanh) trained with Adam on binary cross-entropy of the logits. */
static double mlp(ag_tensor *x, ag_tensor *labels, int max_steps, double *final_loss) {
    ag_module *model = AG_SEQUENTIAL(ag_nn_linear(2, 8, true), ag_nn_tanh(), ag_nn_linear(8, 1, true));
    ag_tensor *params[4];
    ag_adam_options o = ag_adam_defaults();
    o.lr = 0.05;
    ag_optimizer *opt = ag_adam_new(params, ag_module_parameters(model, params, 4), &o);
    ag_tensor *y = ag_reshape(ag_to_dtype(labels, AG_F32), AG_SHAPE(-1, 1));
    for (int step = 1; opt && step <= max_steps; step++) {
        ag_scope_begin();
        ag_optimizer_zero_grad(opt);
        ag_tensor *loss = ag_binary_cross_entropy_with_logits(ag_module_forward(model, x), y, NULL);
        if (ag_backward(loss) == AG_OK) ag_optimizer_step(opt);
        *final_loss = ag_item(loss);
        ag_scope_end();
    }
    ag_no_grad_begin();
    double acc = ag_accuracy(ag_reshape(ag_binarize(ag_module_forward(model, x), 0), AG_SHAPE(-1)), labels);
    ag_no_grad_end();
    ag_optimizer_free(opt);
    ag_module_free(model);
    return acc;
}

int main(int argc, char **argv) {
    int rc = args_parse(argc, argv, "A perceptron learns AND but not XOR; an MLP learns XOR.", args, NARGS(args));
    if (rc >= 0) return rc;
    double t0 = ag_seconds();
    ag_manual_seed((uint64_t)seed);
    ag_scope_begin(); /* owns everything below */
    ag_tensor *xa, *ya, *xx, *yx;
    if (load("and.csv", &xa, &ya) || load("xor.csv", &xx, &yx)) return fprintf(stderr, "%s\n", ag_last_error()), 1;
    int ea, ex;
    double and_acc = perceptron(xa, ya, epochs, &ea);
    printf("perceptron on AND: accuracy %.2f after %d epochs%s\n", and_acc, ea, and_acc == 1 ? " (converged)" : "");
    double xor_p = perceptron(xx, yx, epochs, &ex);
    printf("perceptron on XOR: accuracy %.2f after %d epochs: %s\n", xor_p, ex,
           xor_p < 1 ? "it fails, as it must: no line separates XOR's classes" : "converged (unexpected!)");
    double loss = NAN, xor_m = mlp(xx, yx, steps, &loss);
    printf("MLP 2-8-1 on XOR: accuracy %.2f, loss %.4f after %d steps\n", xor_m, loss, steps);
    ag_scope_end();
    if (isnan(and_acc) || isnan(xor_p) || isnan(xor_m)) return fprintf(stderr, "%s\n", ag_last_error()), 1;
    printf("and_acc=%.4f and_epochs=%d xor_perceptron_acc=%.4f xor_mlp_acc=%.4f xor_mlp_loss=%.4f train_s=%.3f\n",
           and_acc, ea, xor_p, xor_m, loss, ag_seconds() - t0);
    return ag_live_tensors() == 0 ? 0 : 1;
}

/*
 * layer_stats.c - watching a network train through hooks (docs/hooks.md): a
 * deep MLP (4 -> 6 x 32 -> 3, Sigmoid activations, PyTorch's default
 * initialisation) learns Iris with Adam, and the training loop knows nothing of
 * the three hooks registered on each of its Linear layers:
 *  - a forward hook records the L2 norm of the layer's output (activation norm);
 *  - a full backward hook records the L2 norm of its grad_output, dL/dy;
 *  - a post-accumulate-grad hook on its weight records the L2 norm of dL/dW
 *    once backward has finished accumulating it.
 * Per epoch the mean of each per layer is kept and drawn (layer_stats.svg):
 * with sigmoids the gradient shrinks layer by layer towards the input (each
 * sigmoid's slope is at most 1/4), the vanishing-gradient picture.  With
 * --activation relu (and He initialisation) it stays about level.  The hooks
 * are removed before the final evaluation, which then records nothing.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <agrad/agrad.h>
#include <agrad/plot.h>
#include "args.h"

enum { ACT, GRAD_OUT, WEIGHT_GRAD, NKINDS }; /* what the hooks record */

/* One Linear layer's sums of norms over the current epoch, by kind. */
typedef struct layer_watch {
    double sum[NKINDS];
    int count[NKINDS];
} layer_watch;

/* Adds ||t||_2 to w's sums of this kind; a hook's status. */
static ag_status record(layer_watch *w, int kind, ag_tensor *t) {
    ag_scope_begin();
    ag_no_grad_begin();
    ag_tensor *norm = ag_sqrt(ag_sum(ag_square(ag_to_dtype(t, AG_F64))));
    if (norm) w->sum[kind] += ag_item(norm), w->count[kind]++;
    ag_no_grad_end();
    ag_scope_end();
    return norm ? AG_OK : ag_last_status();
}

/* PyTorch: lin.register_forward_hook(lambda m, args, out: acts.append(out.norm())) */
static ag_status on_forward(ag_module *m, ag_tensor *x, ag_tensor *y, ag_tensor **replace, void *user) {
    (void)m, (void)x, (void)replace;
    return record(user, ACT, y);
}

/* PyTorch: lin.register_full_backward_hook(lambda m, gin, gout: grads.append(gout[0].norm())) */
static ag_status on_backward(ag_module *m, ag_tensor *grad_input, ag_tensor *grad_output, ag_tensor **replace,
                             void *user) {
    (void)m, (void)grad_input, (void)replace; /* grad_input is NULL for the first layer: its input is data */
    return record(user, GRAD_OUT, grad_output);
}

/* PyTorch: lin.weight.register_post_accumulate_grad_hook(lambda w: wgrads.append(w.grad.norm())) */
static ag_status on_weight_grad(ag_tensor *weight, void *user) {
    return record(user, WEIGHT_GRAD, ag_grad(weight));
}

/* Accuracy of model on (x, y), recording nothing. */
static double accuracy(ag_module *model, ag_dataset *ds) {
    ag_tensor *x, *y;
    ag_scope_begin();
    ag_no_grad_begin();
    ag_dataset_tensors(ds, &x, &y);
    double acc = ag_accuracy(ag_module_forward(model, x), y);
    ag_no_grad_end();
    ag_scope_end();
    return acc;
}

enum { MAX_DEPTH = 30 };

int main(int argc, char **argv) {
    int epochs = 60, depth = 6, hidden = 32, batch = 20, seed = 0;
    double lr = 0.001;
    const char *activation = "sigmoid", *csv = "datasets/iris.csv", *out = ".";
    arg args[] = {{"epochs", 'i', &epochs, "training epochs"},
                  {"depth", 'i', &depth, "hidden layers"},
                  {"hidden", 'i', &hidden, "units per hidden layer"},
                  {"activation", 's', &activation, "sigmoid (default init) or relu (He init) {sigmoid|relu}"},
                  {"lr", 'd', &lr, "Adam's learning rate"},
                  {"batch-size", 'i', &batch, "samples per batch"},
                  {"seed", 'i', &seed, "seed of the weights and the shuffling"},
                  {"data", 's', &csv, "the Iris CSV file"},
                  {"out", 's', &out, "directory for layer_stats.svg"}};
    int rc = args_parse(argc, argv, "Per-layer activation and gradient norms of a deep MLP, recorded with hooks.", args,
                        NARGS(args));
    if (rc >= 0) return rc;
    if (epochs < 1 || depth < 1 || depth > MAX_DEPTH || hidden < 1 || batch < 1 || !(lr > 0))
        return fprintf(stderr, "need epochs >= 1, 1 <= depth <= %d, hidden >= 1, batch-size >= 1 and lr > 0\n",
                       MAX_DEPTH),
               2;
    bool relu = activation[0] == 'r';
    int layers = depth + 1; /* Linear layers: depth hidden ones and the output layer */

    /* Iris, standardised, split 120 / 30 (as lr_finder.c). */
    ag_csv *iris = ag_load_csv(csv, &(ag_csv_options){.header = true, .has_labels = true, .label_column = -1});
    if (!iris) return fprintf(stderr, "%s\n", ag_last_error()), 1;
    ag_scope_begin();
    ag_tensor *mean, *std;
    ag_zscore_fit(ag_csv_features(iris), true, &mean, &std);
    ag_dataset *all = ag_tensor_dataset(ag_normalize(ag_csv_features(iris), mean, std), ag_csv_labels(iris)), *split[2];
    ag_scope_end();
    if (!all || ag_random_split(all, (double[]){0.8, 0.2}, 2, 42, split)) return fprintf(stderr, "%s\n", ag_last_error()), 1;
    ag_loader *loader = ag_loader_new(split[0], &(ag_loader_options){.batch_size = batch, .shuffle = true, .seed = seed});

    /* The model: Linear, activation, ..., Linear. */
    ag_manual_seed(seed);
    ag_module *model = ag_nn_sequential(0, NULL), *linear[MAX_DEPTH + 1];
    for (int l = 0; l < layers; l++) {
        linear[l] = ag_nn_linear(l == 0 ? 4 : hidden, l < depth ? hidden : 3, true);
        if (relu) {
            ag_init_kaiming_normal_(ag_module_get_parameter(linear[l], "weight"), 0, "fan_in", "relu");
            ag_init_zeros_(ag_module_get_parameter(linear[l], "bias"));
        }
        ag_nn_sequential_append(model, linear[l]);
        if (l < depth) ag_nn_sequential_append(model, relu ? ag_nn_relu() : ag_nn_sigmoid());
    }
    ag_tensor *params[2 * (MAX_DEPTH + 1)];
    ag_adam_options o = ag_adam_defaults();
    o.lr = lr;
    ag_optimizer *opt = ag_adam_new(params, ag_module_parameters(model, params, 2 * (MAX_DEPTH + 1)), &o);
    if (!loader || !opt) return fprintf(stderr, "%s\n", ag_last_error()), 1;

    /* The hooks: three per Linear layer, each writing into that layer's watch. */
    layer_watch watch[MAX_DEPTH + 1] = {{{0}, {0}}};
    ag_hook_handle handles[3 * (MAX_DEPTH + 1)];
    for (int l = 0; l < layers; l++)
        if (ag_module_register_forward_hook(linear[l], on_forward, &watch[l], &handles[3 * l]) ||
            ag_module_register_full_backward_hook(linear[l], on_backward, &watch[l], &handles[3 * l + 1]) ||
            ag_register_post_accumulate_grad_hook(ag_module_get_parameter(linear[l], "weight"), on_weight_grad,
                                                  &watch[l], &handles[3 * l + 2]))
            return fprintf(stderr, "%s\n", ag_last_error()), 1;

    /* Training, as it would be without the hooks; after each epoch the means per layer are kept:
     * stats[kind][l * epochs + e]. */
    double *stats[NKINDS], *epoch_x = malloc(sizeof(double) * (size_t)epochs), train_loss = NAN;
    for (int k = 0; k < NKINDS; k++) stats[k] = malloc(sizeof(double) * (size_t)(layers * epochs));
    for (int e = 0; e < epochs; e++) {
        double loss_sum = 0;
        int steps = 0;
        for (int more = 1; more;) {
            ag_scope_begin();
            ag_tensor *x, *y;
            if ((more = ag_loader_next(loader, &x, &y) > 0)) {
                ag_optimizer_zero_grad(opt);
                ag_tensor *loss = ag_cross_entropy(ag_module_forward(model, x), y, NULL);
                if (ag_backward(loss) || ag_optimizer_step(opt)) return fprintf(stderr, "%s\n", ag_last_error()), 1;
                loss_sum += ag_item(loss), steps++;
            }
            ag_scope_end();
        }
        train_loss = loss_sum / steps;
        epoch_x[e] = e + 1;
        for (int l = 0; l < layers; l++)
            for (int k = 0; k < NKINDS; k++) {
                stats[k][l * epochs + e] = watch[l].count[k] ? watch[l].sum[k] / watch[l].count[k] : NAN;
                watch[l].sum[k] = 0, watch[l].count[k] = 0;
            }
    }
    for (int h = 0; h < 3 * layers; h++) ag_hook_remove(handles[h]);
    double train_acc = accuracy(model, split[0]), test_acc = accuracy(model, split[1]);
    for (int l = 0; l < layers; l++)
        for (int k = 0; k < NKINDS; k++)
            if (watch[l].count[k]) return fprintf(stderr, "a hook ran after it was removed\n"), 1;

    /* Per layer, the means over the whole training. */
    double mean_of[NKINDS][MAX_DEPTH + 1];
    printf("%s MLP 4 -> %d x %d -> 3, %d epochs of Adam (lr %g); mean norms over training, input side first:\n"
           "  layer  ||y|| (forward hook)  ||dL/dy|| (backward hook)  ||dL/dW|| (post-accumulate hook)\n",
           relu ? "ReLU" : "Sigmoid", depth, hidden, epochs, lr);
    for (int l = 0; l < layers; l++) {
        for (int k = 0; k < NKINDS; k++) {
            mean_of[k][l] = 0;
            for (int e = 0; e < epochs; e++) mean_of[k][l] += stats[k][l * epochs + e] / epochs;
        }
        printf("  %5d  %20.4g  %25.4g  %34.4g\n", l + 1, mean_of[ACT][l], mean_of[GRAD_OUT][l], mean_of[WEIGHT_GRAD][l]);
    }
    printf("train loss %.4f, train accuracy %.4f, test accuracy %.4f\n", train_loss, train_acc, test_acc);

    /* The picture: one line per layer and epoch in each of the three subplots. */
    ag_plot *plot = ag_plot_new(relu ? "Per-layer norms, ReLU MLP (He init) on Iris, recorded by hooks"
                                     : "Per-layer norms, sigmoid MLP (default init) on Iris, recorded by hooks",
                                NULL, NULL);
    ag_plot_size(plot, 1500, 480);
    static const char *const titles[NKINDS] = {"activation ||y|| (forward hook)", "||dL/dy|| (full backward hook)",
                                               "||dL/dW|| (post-accumulate-grad hook)"};
    for (int k = 0; k < NKINDS; k++) {
        ag_plot_subplot(plot, 1, 3, k);
        for (int l = 0; l < layers; l++) {
            char label[32];
            snprintf(label, sizeof label, "layer %d%s", l + 1, l == 0 ? " (input)" : l == depth ? " (output)" : "");
            ag_plot_line(plot, epoch_x, &stats[k][l * epochs], epochs, label);
        }
        if (k > ACT) ag_plot_log_scale(plot, false, true);
        ag_plot_legend(plot, k == NKINDS - 1 ? AG_LEGEND_OUTSIDE : AG_LEGEND_NONE);
        ag_plot_labels(plot, titles[k], "epoch", "mean L2 norm per batch");
    }
    char path[1024];
    if (!args_path(path, sizeof path, out, "layer_stats.svg") || ag_plot_save_svg(plot, path))
        return fprintf(stderr, "%s\n", ag_last_error()), 1;

    double first = mean_of[WEIGHT_GRAD][0], last = mean_of[WEIGHT_GRAD][depth];
    printf("first_layer_grad=%.4g last_layer_grad=%.4g grad_ratio=%.4g first_layer_grad_out=%.4g "
           "last_layer_grad_out=%.4g grad_out_ratio=%.4g first_layer_act=%.4g last_layer_act=%.4g train_loss=%.4f "
           "train_acc=%.4f test_acc=%.4f\n",
           first, last, first / last, mean_of[GRAD_OUT][0], mean_of[GRAD_OUT][depth],
           mean_of[GRAD_OUT][0] / mean_of[GRAD_OUT][depth], mean_of[ACT][0], mean_of[ACT][depth], train_loss, train_acc,
           test_acc);
    ag_plot_free(plot);
    ag_optimizer_free(opt);
    ag_module_free(model);
    ag_loader_free(loader);
    ag_dataset_free(split[0]), ag_dataset_free(split[1]), ag_dataset_free(all);
    ag_csv_free(iris);
    for (int k = 0; k < NKINDS; k++) free(stats[k]);
    free(epoch_x);
    return ag_live_tensors() == 0 ? 0 : 1;
}

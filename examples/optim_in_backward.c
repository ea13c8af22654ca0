/*
 * optim_in_backward.c - the optimizer step fused into the backward pass
 * (docs/optim.md#the-step-inside-backward; PyTorch's tutorial "How to save memory
 * by fusing the optimizer step into the backward pass").  An MLP (4 -> 64 -> 64 ->
 * 64 -> 3, ReLU) learns Iris twice from the same start, with AdamW and a cosine learning
 * rate schedule:
 *  - the usual loop: zero_grad, forward, backward, step;
 *  - the fused one: ag_optimizer_register_step_hooks(opt, true) once, then forward
 *    and backward alone.  Each parameter is updated by a post-accumulate-grad hook
 *    as soon as backward has its whole gradient, and that gradient is freed at
 *    once, so no step holds every gradient at the same time.
 * The two runs end with the same bits in every parameter (the update is the same
 * arithmetic); the last line reports that, both test accuracies, and the largest
 * number of gradient bytes held at once while backward runs, seen by a hook on
 * each parameter registered before the optimizer's (so it runs before the update
 * and sees the new gradient): every gradient in the usual loop, the largest one
 * (a 64 x 64 weight's) in the fused one.
 */
#include <stdio.h>
#include <string.h>
#include <agrad/agrad.h>
#include "args.h"

enum { NPARAMS = 8 };

/* The gradient bytes the parameters hold now, and the largest seen so far. */
typedef struct grad_watch {
    ag_tensor *const *params;
    int n;
    int64_t peak;
} grad_watch;

static int64_t held_bytes(const grad_watch *w) {
    int64_t b = 0;
    for (int i = 0; i < w->n; i++)
        if (ag_grad(w->params[i])) b += ag_numel(w->params[i]) * 4;
    return b;
}

/* A post-accumulate-grad hook: once each parameter's gradient is done, the bytes held. */
static ag_status watch_grads(ag_tensor *p, void *user) {
    (void)p;
    grad_watch *w = user;
    int64_t b = held_bytes(w);
    if (b > w->peak) w->peak = b;
    return AG_OK;
}

/* Accuracy of model on ds. */
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

/* One training run; fused: the step inside backward.  Writes the model's parameters
 * into params (owned by *model), the test accuracy and the peak gradient bytes. */
static int train(ag_dataset *const split[2], int epochs, int batch, double lr, int seed, bool fused,
                 ag_module **model, ag_tensor **params, double *test_acc, int64_t *peak) {
    ag_loader *loader = ag_loader_new(split[0], &(ag_loader_options){.batch_size = batch, .shuffle = true, .seed = seed});
    ag_manual_seed(seed);
    *model = AG_SEQUENTIAL(ag_nn_linear(4, 64, true), ag_nn_relu(), ag_nn_linear(64, 64, true), ag_nn_relu(),
                           ag_nn_linear(64, 64, true), ag_nn_relu(), ag_nn_linear(64, 3, true));
    int n = ag_module_parameters(*model, params, NPARAMS);
    ag_adamw_options o = ag_adamw_defaults(); /* torch.optim.AdamW(model.parameters(), lr=lr) */
    o.lr = lr;
    ag_optimizer *opt = ag_adamw_new(params, n, &o);
    ag_scheduler *sched = ag_cosine_annealing_lr_new(opt, epochs, 0.0);
    if (!loader || !opt || !sched) return fprintf(stderr, "%s\n", ag_last_error()), 1;
    grad_watch watch = {params, n, 0};
    for (int i = 0; i < n; i++)
        if (ag_register_post_accumulate_grad_hook(params[i], watch_grads, &watch, NULL))
            return fprintf(stderr, "%s\n", ag_last_error()), 1;
    /* PyTorch: for p in model.parameters(): p.register_post_accumulate_grad_hook(hook), where
     * hook(p) steps p's optimizer and sets p.grad = None */
    if (fused && ag_optimizer_register_step_hooks(opt, true)) return fprintf(stderr, "%s\n", ag_last_error()), 1;

    for (int e = 0; e < epochs; e++) {
        for (int more = 1; more;) {
            ag_scope_begin();
            ag_tensor *x, *y;
            if ((more = ag_loader_next(loader, &x, &y) > 0)) {
                if (!fused) ag_optimizer_zero_grad(opt); /* fused: each gradient is gone already */
                ag_tensor *loss = ag_cross_entropy(ag_module_forward(*model, x), y, NULL);
                if (ag_backward(loss) || (!fused && ag_optimizer_step(opt))) return fprintf(stderr, "%s\n", ag_last_error()), 1;
            }
            ag_scope_end();
        }
        ag_scheduler_step(sched); /* schedulers work as usual: each update reads the group's lr */
    }
    *test_acc = accuracy(*model, split[1]);
    *peak = watch.peak;
    ag_scheduler_free(sched);
    ag_optimizer_free(opt); /* also removes its step hooks */
    ag_loader_free(loader);
    return 0;
}

int main(int argc, char **argv) {
    int epochs = 40, batch = 16, seed = 0;
    double lr = 3e-3;
    const char *csv = "datasets/iris.csv";
    arg args[] = {{"epochs", 'i', &epochs, "training epochs"},
                  {"batch-size", 'i', &batch, "samples per batch"},
                  {"lr", 'd', &lr, "AdamW's learning rate"},
                  {"seed", 'i', &seed, "seed of the weights and the shuffling"},
                  {"data", 's', &csv, "the Iris CSV file"}};
    int rc = args_parse(argc, argv, "The optimizer step inside backward against the usual loop: same bits, less memory.",
                        args, NARGS(args));
    if (rc >= 0) return rc;
    if (epochs < 1 || batch < 1 || !(lr > 0)) return fprintf(stderr, "need epochs >= 1, batch-size >= 1 and lr > 0\n"), 2;

    /* Iris, standardised, split 120 / 30 (as lr_finder.c). */
    ag_csv *iris = ag_load_csv(csv, &(ag_csv_options){.header = true, .has_labels = true, .label_column = -1});
    if (!iris) return fprintf(stderr, "%s\n", ag_last_error()), 1;
    ag_scope_begin();
    ag_tensor *mean, *std;
    ag_zscore_fit(ag_csv_features(iris), true, &mean, &std);
    ag_dataset *all = ag_tensor_dataset(ag_normalize(ag_csv_features(iris), mean, std), ag_csv_labels(iris)), *split[2];
    ag_scope_end();
    if (!all || ag_random_split(all, (double[]){0.8, 0.2}, 2, 42, split)) return fprintf(stderr, "%s\n", ag_last_error()), 1;

    ag_module *model[2];
    ag_tensor *params[2][NPARAMS];
    double acc[2];
    int64_t peak[2];
    for (int fused = 0; fused < 2; fused++)
        if (train(split, epochs, batch, lr, seed, fused, &model[fused], params[fused], &acc[fused], &peak[fused])) return 1;
    bool same = true;
    for (int i = 0; i < NPARAMS; i++)
        same = same && memcmp(ag_data(params[0][i]), ag_data(params[1][i]), (size_t)ag_numel(params[0][i]) * 4) == 0;

    printf("MLP 4 -> 64 -> 64 -> 64 -> 3 on Iris, %d epochs of AdamW (lr %g, cosine schedule), batch %d\n", epochs, lr, batch);
    printf("  usual loop:       test accuracy %.4f, gradients held at once up to %lld bytes\n", acc[0], (long long)peak[0]);
    printf("  step in backward: test accuracy %.4f, gradients held at once up to %lld bytes\n", acc[1], (long long)peak[1]);
    printf("  parameters after training: %s\n", same ? "the same bits" : "DIFFERENT");
    printf("same_params=%d test_acc=%.4f fused_test_acc=%.4f grad_bytes=%lld fused_grad_bytes=%lld\n", same, acc[0],
           acc[1], (long long)peak[0], (long long)peak[1]);
    for (int k = 0; k < 2; k++) ag_module_free(model[k]);
    ag_dataset_free(split[0]), ag_dataset_free(split[1]), ag_dataset_free(all);
    ag_csv_free(iris);
    return same && ag_live_tensors() == 0 ? 0 : 1;
}

/*
 * demos.c - three classic failures, shown with numbers and a picture (demos.svg):
 *  1. a dying ReLU: a hidden unit whose pre-activation is negative for every
 *     input gets a gradient of exactly zero, so training never revives it;
 *  2. zero initialisation: every hidden unit starts equal, receives the same
 *     gradient and stays equal to the others, so the network is no better than
 *     one unit and cannot learn a circular boundary (a random initialisation can);
 *  3. vanishing gradients: in a deep sigmoid network with PyTorch's default
 *     initialisation the gradient shrinks layer by layer towards the input,
 *     while ReLU with He (kaiming) initialisation keeps it about level.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <agrad/agrad.h>
#include <agrad/plot.h>
#include "args.h"

/* ||t||_2 of a tensor (0 for NULL: a parameter that got no gradient). */
static double norm(ag_tensor *t) {
    if (!t) return 0;
    ag_scope_begin();
    double v = ag_item(ag_sqrt(ag_sum(ag_square(ag_to_dtype(t, AG_F64)))));
    ag_scope_end();
    return v;
}

static ag_tensor *param(ag_module *seq, int layer, const char *name) {
    return ag_module_get_parameter(ag_module_child(seq, layer, NULL), name);
}

/* One SGD step on loss(model(x), y); returns the loss. */
static double sgd_step(ag_module *model, ag_optimizer *opt, ag_tensor *x, ag_tensor *y, bool bce) {
    ag_optimizer_zero_grad(opt);
    ag_tensor *out = ag_module_forward(model, x);
    ag_tensor *loss = bce ? ag_binary_cross_entropy_with_logits(out, y, NULL) : ag_mse_loss(out, y, NULL);
    if (ag_backward(loss) || ag_optimizer_step(opt)) fprintf(stderr, "%s\n", ag_last_error()), exit(1);
    return ag_item(loss);
}

static ag_optimizer *sgd(ag_module *m, double lr) {
    ag_tensor *params[8];
    ag_sgd_options o = ag_sgd_defaults();
    o.lr = lr;
    return ag_sgd_new(params, ag_module_parameters(m, params, 8), &o);
}

int main(int argc, char **argv) {
    int steps = 500, depth = 20;
    const char *out = ".";
    arg args[] = {{"steps", 'i', &steps, "training steps of demos 1 and 2"},
                     {"depth", 'i', &depth, "layers of the deep networks of demo 3"},
                     {"out", 's', &out, "directory for demos.svg"}};
    int rc = args_parse(argc, argv, "Dying ReLU, zero initialisation and vanishing gradients, demonstrated.", args,
                        NARGS(args));
    if (rc >= 0) return rc;
    if (steps < 1 || depth < 2 || depth > 200) return fprintf(stderr, "need steps >= 1 and 2 <= depth <= 200\n"), 2;
    ag_manual_seed(0);
    ag_plot *plot = ag_plot_new("Three ways training fails", NULL, NULL);
    ag_plot_size(plot, 1500, 460);
    double *a = calloc((size_t)steps, sizeof(double)), *b = calloc((size_t)steps, sizeof(double));

    /* ---- 1. dying ReLU: unit 0 gets a bias of -10, far below what w·x reaches -------------------- */
    ag_scope_begin();
    ag_tensor *x = ag_randn(AG_SHAPE(256, 4), AG_F32);
    ag_tensor *y = ag_sum_dim(x, 1, true); /* y = x1 + x2 + x3 + x4 */
    ag_module *net = AG_SEQUENTIAL(ag_nn_linear(4, 8, true), ag_nn_relu(), ag_nn_linear(8, 1, true));
    ag_tensor *w1 = param(net, 0, "weight"), *b1 = param(net, 0, "bias");
    ag_no_grad_begin();
    ag_fill_(ag_narrow(b1, 0, 0, 1), -10);
    ag_tensor *w_dead_before = ag_clone(ag_select(w1, 0, 0));
    double max_pre = ag_item(ag_max(ag_select(ag_linear(x, w1, b1), 1, 0)));
    ag_no_grad_end();
    ag_optimizer *opt = sgd(net, 0.05);
    double dead_max = 0, first_loss = NAN, last_loss = NAN;
    for (int t = 0; t < steps; t++) {
        ag_scope_begin();
        last_loss = sgd_step(net, opt, x, y, false);
        if (t == 0) first_loss = last_loss;
        a[t] = norm(ag_select(ag_grad(w1), 0, 0)) + fabs(ag_get(ag_grad(b1), (int64_t[]){0})); /* the dead unit */
        b[t] = norm(ag_select(ag_grad(w1), 0, 1)) + fabs(ag_get(ag_grad(b1), (int64_t[]){1})); /* a live one */
        dead_max = fmax(dead_max, a[t]);
        ag_scope_end();
    }
    ag_no_grad_begin();
    double dead_change = ag_item(ag_max(ag_abs(ag_sub(ag_select(w1, 0, 0), w_dead_before))));
    ag_no_grad_end();
    printf("1. dying ReLU: unit 0's pre-activation is at most %.3f over the 256 inputs.\n"
           "   Over %d SGD steps (loss %.4f -> %.4f) its largest gradient was %g and its weights moved by %g.\n",
           max_pre, steps, first_loss, last_loss, dead_max, dead_change);
    ag_plot_subplot(plot, 1, 3, 0);
    ag_plot_line(plot, NULL, b, steps, "unit 1 (alive)");
    ag_plot_line(plot, NULL, a, steps, "unit 0 (dead: bias -10)");
    ag_plot_labels(plot, "1. dying ReLU: gradient of a unit", "step", "|dL/dw| + |dL/db|");
    ag_optimizer_free(opt);
    ag_module_free(net);
    ag_scope_end();

    /* ---- 2. zero init: sigmoid units that start equal stay equal --------------------------------------- */
    /* 256 points of [-2, 2]², labelled 1 inside the circle of radius 1.3: a ring of different units is needed. */
    double spread = 0, loss_of[2] = {0, 0}, acc_of[2] = {0, 0};
    ag_scope_begin();
    ag_manual_seed(1);
    x = ag_sub_scalar(ag_mul_scalar(ag_rand(AG_SHAPE(256, 2), AG_F32), 4), 2);
    y = ag_to_dtype(ag_lt(ag_sum_dim(ag_square(x), 1, true), ag_scalar(1.69, AG_F32)), AG_F32);
    for (int zero = 1; zero >= 0; zero--) {
        ag_manual_seed(1);
        net = AG_SEQUENTIAL(ag_nn_linear(2, 8, true), ag_nn_sigmoid(), ag_nn_linear(8, 1, true));
        if (zero)
            for (int i = 0; i < ag_module_num_parameter_tensors(net); i++) ag_init_zeros_(ag_module_parameter(net, i, NULL, 0));
        opt = sgd(net, 1.0);
        for (int t = 0; t < steps; t++) {
            ag_scope_begin();
            (zero ? a : b)[t] = sgd_step(net, opt, x, y, true);
            ag_scope_end();
        }
        ag_scope_begin();
        ag_no_grad_begin();
        ag_tensor *p = ag_sigmoid(ag_module_forward(net, x));
        for (int64_t i = 0; i < 256; i++)
            acc_of[zero] += ((ag_get(p, (int64_t[]){i, 0}) > 0.5) == (ag_get(y, (int64_t[]){i, 0}) > 0.5)) / 256.0;
        loss_of[zero] = zero ? a[steps - 1] : b[steps - 1];
        if (zero) { /* the largest difference between any hidden unit's parameters and unit 0's */
            ag_tensor *w = param(net, 0, "weight"), *bias = param(net, 0, "bias"), *v = param(net, 2, "weight");
            spread = ag_item(ag_max(ag_abs(ag_sub(w, ag_narrow(w, 0, 0, 1))))) +
                     ag_item(ag_max(ag_abs(ag_sub(bias, ag_narrow(bias, 0, 0, 1))))) +
                     ag_item(ag_max(ag_abs(ag_sub(v, ag_narrow(v, 1, 0, 1)))));
            printf("2. zero init: after %d steps the 8 hidden units differ by %g (unit 0's weights %.4f, %.4f);\n", steps,
                   spread, ag_get(w, (int64_t[]){0, 0}), ag_get(w, (int64_t[]){0, 1}));
        }
        ag_no_grad_end();
        ag_scope_end();
        ag_optimizer_free(opt);
        ag_module_free(net);
    }
    printf("   loss %.4f, accuracy %.3f with zero init; loss %.4f, accuracy %.3f with random init.\n", loss_of[1],
           acc_of[1], loss_of[0], acc_of[0]);
    ag_scope_end();
    ag_plot_subplot(plot, 1, 3, 1);
    ag_plot_line(plot, NULL, b, steps, "random init");
    ag_plot_line(plot, NULL, a, steps, "zero init (units stay equal)");
    ag_plot_labels(plot, "2. inside a circle? 8 sigmoid units", "step", "binary cross-entropy");

    /* ---- 3. gradient norm per layer: deep sigmoid (default init) vs ReLU (He init) -------------------- */
    double *grads[2] = {calloc((size_t)depth, sizeof(double)), calloc((size_t)depth, sizeof(double))};
    double *layer = calloc((size_t)depth, sizeof(double));
    ag_scope_begin();
    x = ag_randn(AG_SHAPE(256, 64), AG_F32);
    y = ag_randn(AG_SHAPE(256, 1), AG_F32);
    for (int relu = 0; relu < 2; relu++) {
        ag_manual_seed(2);
        net = AG_SEQUENTIAL(ag_nn_identity());
        for (int l = 0; l < depth; l++) {
            ag_module *lin = ag_nn_linear(64, l + 1 < depth ? 64 : 1, true);
            if (relu) {
                ag_init_kaiming_normal_(ag_module_get_parameter(lin, "weight"), 0, "fan_in", "relu");
                ag_init_zeros_(ag_module_get_parameter(lin, "bias"));
            }
            ag_nn_sequential_append(net, lin);
            if (l + 1 < depth) ag_nn_sequential_append(net, relu ? ag_nn_relu() : ag_nn_sigmoid());
        }
        ag_tensor *loss = ag_mse_loss(ag_module_forward(net, x), y, NULL);
        if (ag_backward(loss)) return fprintf(stderr, "%s\n", ag_last_error()), 1;
        for (int l = 0; l < depth; l++) {
            grads[relu][l] = norm(ag_grad(param(net, 1 + 2 * l, "weight")));
            layer[l] = l + 1;
        }
        ag_module_free(net);
    }
    ag_scope_end();
    printf("3. gradient norm of each layer's weight, input side first (depth %d, width 64):\n   layer  sigmoid+default  relu+kaiming\n", depth);
    for (int l = 0; l < depth; l++) printf("   %5d  %15.3e  %12.3e\n", l + 1, grads[0][l], grads[1][l]);
    ag_plot_subplot(plot, 1, 3, 2);
    ag_plot_line(plot, layer, grads[0], depth, "sigmoid, default init");
    ag_plot_style_last(plot, &(ag_plot_style){.markers = true});
    ag_plot_line(plot, layer, grads[1], depth, "ReLU, He (kaiming) init");
    ag_plot_style_last(plot, &(ag_plot_style){.markers = true});
    ag_plot_log_scale(plot, false, true);
    ag_plot_labels(plot, "3. gradient norm per layer", "layer (1 = input side)", "||dL/dW||");

    char path[1024];
    if (!args_path(path, sizeof path, out, "demos.svg") || ag_plot_save_svg(plot, path))
        return fprintf(stderr, "%s\n", ag_last_error()), 1;
    printf("dead_unit_max_grad=%g dead_unit_weight_change=%g dead_unit_max_preactivation=%.4f zero_init_unit_spread=%g "
           "zero_init_loss=%.4f zero_init_accuracy=%.3f random_init_loss=%.4f random_init_accuracy=%.3f "
           "sigmoid_grad_input_layer=%.3e sigmoid_grad_output_layer=%.3e sigmoid_grad_ratio=%.3e "
           "relu_grad_input_layer=%.3e relu_grad_output_layer=%.3e relu_grad_ratio=%.3f\n",
           dead_max, dead_change, max_pre, spread, loss_of[1], acc_of[1], loss_of[0], acc_of[0], grads[0][0],
           grads[0][depth - 1], grads[0][0] / grads[0][depth - 1], grads[1][0], grads[1][depth - 1],
           grads[1][0] / grads[1][depth - 1]);
    ag_plot_free(plot);
    free(a), free(b), free(grads[0]), free(grads[1]), free(layer);
    return ag_live_tensors() == 0 ? 0 : 1;
}

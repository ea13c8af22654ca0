/*
 * mlp_insight.c - the worked examples of the "Insight into Multi-layer
 * Perceptron" deck, computed by agrad with the deck's data and weights, each
 * printed next to the number the deck gives:
 *
 *   1. the forward pass of an MLP 2 -> 2 (ReLU) -> 3 (softmax) on three Iris
 *      flowers, and its cross-entropy loss (deck: 1.269);
 *   2. a dying ReLU: one flower, backward and one SGD step (lr 0.01): the
 *      second hidden unit's pre-activation is negative, so its weights get a
 *      gradient of exactly 0 and the unit is still dead after the step;
 *   3-5. zero initialisation works for linear, logistic and softmax regression:
 *      one SGD step from all-zero parameters lowers the loss (deck: 82.81 ->
 *      0.559, 0.693, 0.693 -> 0.678);
 *   6. and fails for the MLP: with every weight 0 each ReLU sees 0, so no
 *      hidden or output weight ever gets a gradient; after training only the
 *      output biases moved and the network predicts one class for every flower,
 *      while the same MLP trained from the deck's weights learns most of them.
 *
 * The deck's weights are rounded to two digits, so its numbers differ from the
 * exact ones in the third digit (1.273 against the deck's 1.269).  Example 5's
 * slide subtracts with the wrong sign in the updated θ; the loss after the step
 * it reports (-log 0.51 = 0.678) is that of the correct step printed here.
 *
 *     ./build/examples/mlp_insight [--steps 300] [--lr 0.1]
 *
 * The last line holds the figures as key=value pairs (examples/meson.build checks them).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <agrad/agrad.h>
#include "args.h"

static void die(void) {
    fprintf(stderr, "mlp_insight: %s\n", ag_last_error());
    exit(1);
}

/* A float64 matrix [rows, cols] (cols 0: a vector [rows]) from row-major data. */
static ag_tensor *mat(int64_t rows, int64_t cols, const double *v) {
    ag_tensor *t = cols ? ag_from_data(v, AG_SHAPE(rows, cols), AG_F64) : ag_from_data(v, AG_SHAPE(rows), AG_F64);
    if (!t) die();
    return t;
}
static ag_tensor *param(int64_t rows, int64_t cols, const double *v) { return ag_requires_grad_(mat(rows, cols, v), true); }

/* t[i, j] (j ignored for a vector) */
static double at(const ag_tensor *t, int64_t i, int64_t j) {
    int64_t idx[2] = {i, j};
    return ag_get(t, idx);
}

static void show(const char *name, const ag_tensor *t) {
    if (!t) die();
    int64_t rows = ag_shape_of(t).dim[0], cols = ag_ndim(t) == 2 ? ag_shape_of(t).dim[1] : 1;
    printf("  %-10s", name);
    for (int64_t i = 0; i < rows; i++) {
        printf(i ? " |" : "");
        for (int64_t j = 0; j < cols; j++) printf(" %8.4f", ag_ndim(t) == 2 ? at(t, i, j) : ag_get(t, &i));
    }
    printf("\n");
}

/* θ -= lr·∇θ for each parameter, outside the graph (torch.no_grad()), then zero its grad. */
static void sgd(ag_tensor *const *params, int n, double lr) {
    ag_no_grad_begin();
    for (int i = 0; i < n; i++) {
        if (ag_grad(params[i]) && !ag_add_(params[i], ag_grad(params[i]), -lr)) die();
        ag_zero_grad(params[i]);
    }
    ag_no_grad_end();
}

/* The deck's MLP: z = ReLU(x·m + bm)·w + bw; h and r (its hidden pre-activations and outputs) kept. */
typedef struct mlp {
    ag_tensor *m, *bm, *w, *bw;
} mlp;

static ag_tensor *forward(const mlp *net, ag_tensor *x, ag_tensor **h, ag_tensor **r) {
    *h = ag_add(ag_matmul(x, net->m), net->bm);
    *r = ag_relu(*h);
    return ag_add(ag_matmul(*r, net->w), net->bw);
}

static const double deck_m[] = {0.86, -1.04, 0.41, -0.65};               /* [2 inputs, 2 hidden] */
static const double deck_w[] = {0.32, 0.25, 0.14, -0.47, -1.06, 0.063}; /* [2 hidden, 3 classes] */
static const double zeros[6] = {0};

/* Example 1: the forward pass on three flowers; returns the mean cross-entropy loss. */
static double example1(void) {
    printf("Example 1: forward pass of the 2-2-3 MLP on three flowers (petal length, width)\n");
    ag_scope_begin();
    static const double xv[] = {1.5, 0.2, 4.7, 1.6, 5.6, 2.2};
    static const int64_t yv[] = {0, 1, 2};
    mlp net = {mat(2, 2, deck_m), mat(2, 0, zeros), mat(2, 3, deck_w), mat(3, 0, zeros)};
    ag_tensor *h, *r, *z = forward(&net, mat(3, 2, xv), &h, &r);
    ag_tensor *loss = ag_cross_entropy(z, ag_from_data(yv, AG_SHAPE(3), AG_I64), NULL);
    if (!loss) die();
    show("h", h), show("ReLU(h)", r), show("z", z), show("softmax(z)", ag_softmax(z, 1));
    double l = ag_item(loss);
    printf("  loss = %.4f (deck: 1.269)\n\n", l);
    ag_scope_end();
    return l;
}

typedef struct dying {
    double grad_relu[2], grad_w_row1[3], dead_grad_max, h2_after, w11_after, bw1_after, m11_after, bm1_after;
} dying;

/* Example 2: one flower, backward and one SGD step: the second hidden unit is dead. */
static dying example2(void) {
    printf("Example 2: dying ReLU, x = (1.5, 0.2), y = 0, one SGD step with lr 0.01\n");
    dying d;
    ag_scope_begin();
    static const double xv[] = {1.5, 0.2};
    static const int64_t yv[] = {0};
    ag_tensor *x = mat(1, 2, xv), *y = ag_from_data(yv, AG_SHAPE(1), AG_I64);
    mlp net = {param(2, 2, deck_m), param(2, 0, zeros), param(2, 3, deck_w), param(3, 0, zeros)};
    ag_tensor *h, *r, *z = forward(&net, x, &h, &r);
    ag_retain_grad(r);
    ag_tensor *loss = ag_cross_entropy(z, y, NULL);
    if (!loss || ag_backward(loss)) die();
    show("h", h), show("ReLU(h)", r), show("z", z), show("softmax(z)", ag_softmax(z, 1));
    ag_tensor *gr = ag_grad(r), *gw = ag_grad(net.w), *gm = ag_grad(net.m);
    show("dL/dReLU", gr);
    printf("             (deck: -0.0759 -0.0445)\n");
    show("dL/dw", gw);
    printf("             (deck: -0.861 0.463 0.398 | 0 0 0)\n");
    show("dL/dm", gm), show("dL/dbm", ag_grad(net.bm)), show("dL/dbw", ag_grad(net.bw));
    for (int j = 0; j < 2; j++) d.grad_relu[j] = at(gr, 0, j);
    for (int j = 0; j < 3; j++) d.grad_w_row1[j] = at(gw, 0, j);
    /* the dead unit 2: its input weights (column 2 of m), its bias and its output weights (row 2 of w) */
    d.dead_grad_max = fmax(fmax(fabs(at(gm, 0, 1)), fabs(at(gm, 1, 1))), fabs(ag_get(ag_grad(net.bm), (int64_t[]){1})));
    for (int j = 0; j < 3; j++) d.dead_grad_max = fmax(d.dead_grad_max, fabs(at(gw, 1, j)));
    ag_tensor *params[] = {net.m, net.bm, net.w, net.bw};
    sgd(params, 4, 0.01);
    printf("  after the step:\n");
    show("m", net.m), show("bm", net.bm), show("w", net.w), show("bw", net.bw);
    printf("             (deck: m 0.861 -1.04 | 0.4105 -0.65, bm 0.000759 0, w 0.328 0.245 0.136 | ..., bw 0.0062 -0.0033 -0.0029)\n");
    d.w11_after = at(net.w, 0, 0), d.bw1_after = ag_get(net.bw, (int64_t[]){0});
    d.m11_after = at(net.m, 0, 0), d.bm1_after = ag_get(net.bm, (int64_t[]){0});
    z = forward(&net, x, &h, &r);
    if (!z) die();
    show("h again", h), show("ReLU again", r), show("softmax", ag_softmax(z, 1));
    printf("             (deck: h 1.374 -1.68, still zero; softmax 0.378 0.334 0.287)\n\n");
    d.h2_after = at(h, 0, 1);
    ag_scope_end();
    return d;
}

typedef struct regressions {
    double lin_loss[2], lin_w, lin_b, log_loss, log_grad[3], log_loss_after, soft_loss[2], soft_grad_w[2];
} regressions;

/* Examples 3-5: one SGD step from zero parameters, for linear, logistic and softmax regression. */
static regressions examples3to5(void) {
    regressions g;
    ag_scope_begin();
    printf("Example 3: linear regression from w = b = 0: x = 6.7 (area), y = 9.1 (price), lr 0.01\n");
    ag_tensor *w = param(1, 0, zeros), *b = param(1, 0, zeros), *x = ag_scalar(6.7, AG_F64), *y = ag_scalar(9.1, AG_F64);
    ag_tensor *loss = ag_square(ag_sub(ag_add(ag_mul(w, x), b), y));
    if (!loss || ag_backward(ag_sum(loss))) die();
    g.lin_loss[0] = ag_item(ag_sum(loss));
    printf("  loss %.2f (deck: 82.81), dL/dw %.2f (deck: -121.94), dL/db %.2f (deck: -18.2)\n", g.lin_loss[0],
           ag_item(ag_grad(w)), ag_item(ag_grad(b)));
    ag_tensor *lin[] = {w, b};
    sgd(lin, 2, 0.01);
    g.lin_w = ag_item(w), g.lin_b = ag_item(b);
    ag_tensor *yhat = ag_add(ag_mul(w, x), b);
    g.lin_loss[1] = ag_item(ag_sum(ag_square(ag_sub(yhat, y))));
    printf("  after: w %.4f (deck: 1.2194), b %.3f (deck: 0.182), prediction %.3f (deck: 8.351), loss %.3f (deck: 0.559)\n\n",
           g.lin_w, g.lin_b, ag_item(ag_sum(yhat)), g.lin_loss[1]);

    printf("Example 4: logistic regression from θ = (b, w1, w2) = 0: x = (1, 1.4, 0.2), y = 0, lr 0.01\n");
    static const double xv[] = {1, 1.4, 0.2};
    ag_tensor *theta = param(3, 0, zeros), *xl = mat(3, 0, xv), *yl = ag_scalar(0, AG_F64);
    ag_tensor *bce = ag_binary_cross_entropy_with_logits(ag_sum(ag_mul(theta, xl)), yl, NULL);
    if (!bce || ag_backward(bce)) die();
    g.log_loss = ag_item(bce);
    for (int i = 0; i < 3; i++) g.log_grad[i] = ag_get(ag_grad(theta), (int64_t[]){i});
    printf("  ŷ = σ(0) = 0.5, loss %.3f (deck: 0.693), ∇θ = (%.1f, %.1f, %.1f) (deck: 0.5, 0.7, 0.1)\n", g.log_loss,
           g.log_grad[0], g.log_grad[1], g.log_grad[2]);
    sgd(&theta, 1, 0.01);
    g.log_loss_after = ag_item(ag_binary_cross_entropy_with_logits(ag_sum(ag_mul(theta, xl)), yl, NULL));
    show("θ after", theta);
    printf("             (deck: -0.005 -0.007 -0.001); loss after %.4f\n\n", g.log_loss_after);

    printf("Example 5: softmax regression (2 classes, 1 feature) from zero: x = 1.4, y = 0, lr 0.01\n");
    ag_tensor *ws = param(1, 2, zeros), *bs = param(2, 0, zeros), *xs = mat(1, 1, (double[]){1.4});
    static const int64_t ys[] = {0};
    ag_tensor *ce = ag_cross_entropy(ag_add(ag_matmul(xs, ws), bs), ag_from_data(ys, AG_SHAPE(1), AG_I64), NULL);
    if (!ce || ag_backward(ce)) die();
    g.soft_loss[0] = ag_item(ce);
    show("dL/db", ag_grad(bs)), show("dL/dw", ag_grad(ws));
    printf("             (deck: -0.5 0.5 and -0.7 0.7)\n");
    for (int j = 0; j < 2; j++) g.soft_grad_w[j] = at(ag_grad(ws), 0, j);
    ag_tensor *soft[] = {ws, bs};
    sgd(soft, 2, 0.01);
    show("b after", bs), show("w after", ws);
    g.soft_loss[1] = ag_item(ag_cross_entropy(ag_add(ag_matmul(xs, ws), bs), ag_from_data(ys, AG_SHAPE(1), AG_I64), NULL));
    printf("  loss %.3f -> %.3f (deck: 0.693 -> 0.678): zero initialisation trains\n\n", g.soft_loss[0], g.soft_loss[1]);
    ag_scope_end();
    return g;
}

typedef struct mlp_run {
    double hidden_grad_max, weight_max, accuracy, loss;
} mlp_run;

/* Example 6: the MLP on seven flowers, trained by full-batch SGD from zero or from the deck's weights. */
static mlp_run example6(bool zero, int steps, double lr) {
    static const double xv[] = {1.6, 0.2, 4.7, 1.6, 3.3, 1.1, 4.6, 1.3, 5.6, 2.2, 5.1, 1.5, 5.6, 1.4};
    static const int64_t yv[] = {0, 1, 1, 1, 2, 2, 2};
    mlp_run run = {0, 0, 0, 0};
    ag_scope_begin();
    ag_tensor *x = mat(7, 2, xv), *y = ag_from_data(yv, AG_SHAPE(7), AG_I64);
    mlp net = {param(2, 2, zero ? zeros : deck_m), param(2, 0, zeros), param(2, 3, zero ? zeros : deck_w),
               param(3, 0, zeros)};
    ag_tensor *params[] = {net.m, net.bm, net.w, net.bw};
    for (int s = 0; s < steps; s++) {
        ag_scope_begin();
        ag_tensor *h, *r, *loss = ag_cross_entropy(forward(&net, x, &h, &r), y, NULL);
        if (!loss || ag_backward(loss)) die();
        /* the largest gradient of a weight or bias into or out of the hidden layer */
        for (int i = 0; i < 3; i++) run.hidden_grad_max = fmax(run.hidden_grad_max, ag_item(ag_max(ag_abs(ag_grad(params[i])))));
        sgd(params, 4, lr);
        ag_scope_end();
    }
    ag_tensor *h, *r, *z = forward(&net, x, &h, &r);
    ag_tensor *hits = ag_eq(ag_argmax(z, 1, false), y);
    if (!hits) die();
    run.accuracy = ag_item(ag_sum(ag_to_dtype(hits, AG_F64))) / 7;
    run.loss = ag_item(ag_cross_entropy(z, y, NULL));
    run.weight_max = fmax(ag_item(ag_max(ag_abs(net.m))), ag_item(ag_max(ag_abs(net.w))));
    if (zero) show("bw", net.bw);
    ag_scope_end();
    return run;
}

int main(int argc, char **argv) {
    int steps = 300;
    double lr = 0.1;
    arg args[] = {{"steps", 'i', &steps, "full-batch SGD steps of example 6"},
                  {"lr", 'd', &lr, "learning rate of example 6"}};
    int rc = args_parse(argc, argv, "The worked examples of the \"Insight into MLP\" deck: forward pass, dying ReLU, "
                                    "zero initialisation.", args, NARGS(args));
    if (rc >= 0) return rc;
    if (steps < 1 || !(lr > 0)) return fprintf(stderr, "need steps >= 1 and lr > 0\n"), 2;

    double loss1 = example1();
    dying d = example2();
    regressions g = examples3to5();
    printf("Example 6: the MLP from all-zero weights on seven flowers, %d full-batch SGD steps, lr %g\n", steps, lr);
    mlp_run zero = example6(true, steps, lr), deck = example6(false, steps, lr);
    printf("  from zero: every hidden weight's gradient stays %g, weights still %g, accuracy %.3f (one class for all)\n",
           zero.hidden_grad_max, zero.weight_max, zero.accuracy);
    printf("  from the deck's weights: accuracy %.3f, loss %.3f\n", deck.accuracy, deck.loss);

    printf("ex1_loss=%.4f ex2_grad_relu1=%.4f ex2_grad_relu2=%.4f ex2_grad_w11=%.4f ex2_grad_w12=%.4f "
           "ex2_grad_w13=%.4f ex2_dead_grad_max=%g ex2_h2_after=%.4f ex2_w11_after=%.4f ex2_bw1_after=%.5f "
           "ex2_m11_after=%.5f ex2_bm1_after=%.6f lin_loss0=%.2f lin_w=%.4f lin_b=%.3f lin_loss1=%.3f "
           "log_loss=%.3f log_grad_w1=%.2f log_loss_after=%.4f soft_loss0=%.3f soft_loss1=%.3f soft_grad_w0=%.2f "
           "zero_mlp_hidden_grad_max=%g zero_mlp_weight_max=%g zero_mlp_acc=%.4f deck_mlp_acc=%.4f\n",
           loss1, d.grad_relu[0], d.grad_relu[1], d.grad_w_row1[0], d.grad_w_row1[1], d.grad_w_row1[2],
           d.dead_grad_max, d.h2_after, d.w11_after, d.bw1_after, d.m11_after, d.bm1_after, g.lin_loss[0], g.lin_w,
           g.lin_b, g.lin_loss[1], g.log_loss, g.log_grad[1], g.log_loss_after, g.soft_loss[0], g.soft_loss[1],
           g.soft_grad_w[0], zero.hidden_grad_max, zero.weight_max, zero.accuracy, deck.accuracy);
    return ag_live_tensors() == 0 ? 0 : (fprintf(stderr, "mlp_insight: %ld tensors leaked\n", ag_live_tensors()), 1);
}

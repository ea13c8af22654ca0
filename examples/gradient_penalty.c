/*
 * gradient_penalty.c - a WGAN-GP critic (Gulrajani et al., 2017) on 2-d data: a
 * small MLP D trained to estimate the Wasserstein-1 distance between two fixed
 * point clouds, "real" N((2, 2), 0.5²I) and "fake" N((-1, 0), 0.5²I), whose true
 * distance is that between their means, √13 ≈ 3.61.
 *
 * The critic maximises mean D(real) - mean D(fake) over 1-Lipschitz functions; the
 * constraint is a penalty λ·mean (|∇ₓD(x̂)| - 1)² at points x̂ drawn between real
 * and fake ones.  ∇ₓD(x̂) comes from ag_autograd_grad with create_graph, so the
 * penalty is a function of D's parameters that backward differentiates (a second
 * derivative: d/dθ of dD/dx).  The loss mean D(fake) - mean D(real) + λ·penalty
 * goes down, the penalty with it as the gradient norm settles near 1, and the
 * estimate mean D(real) - mean D(fake) lands near √13 (a little above: the soft
 * penalty lets the slope exceed 1 slightly); gradient_penalty.svg draws the curves.
 */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <agrad/agrad.h>
#include <agrad/plot.h>
#include "args.h"

enum { HIDDEN = 32, NPARAM = 6, MAX_STEPS = 100000 };

static void die(void) {
    fprintf(stderr, "%s\n", ag_last_error());
    exit(1);
}

/* D(x) = Linear(32, 1)(tanh(Linear(32, 32)(tanh(Linear(2, 32)(x))))), one value per row. */
static ag_tensor *critic(ag_tensor *const *p, ag_tensor *x) {
    ag_tensor *h = ag_tanh(ag_linear(x, p[0], p[1]));
    h = ag_tanh(ag_linear(h, p[2], p[3]));
    return ag_linear(h, p[4], p[5]);
}

/* batch points of N(centre, 0.5² I). */
static ag_tensor *cloud(int batch, double cx, double cy) {
    ag_tensor *centre = ag_from_data((float[]){(float)cx, (float)cy}, AG_SHAPE(2), AG_F32);
    return ag_add(ag_mul_scalar(ag_randn(AG_SHAPE(batch, 2), AG_F32), 0.5), centre);
}

typedef struct record {
    double loss, wasserstein, penalty, norm;
} record;

/* One critic step; returns its figures. */
static record train_step(ag_tensor *const *p, ag_optimizer *opt, int batch, double lambda) {
    ag_scope_begin();
    ag_tensor *real = cloud(batch, 2, 2), *fake = cloud(batch, -1, 0);
    ag_tensor *eps = ag_rand(AG_SHAPE(batch, 1), AG_F32);
    ag_tensor *between = ag_add(ag_mul(eps, real), ag_mul(ag_rsub_scalar(1, eps), fake));
    ag_tensor *xhat = ag_requires_grad_(between, true), *gx = NULL; /* x̂ = εx + (1-ε)x̃ */
    ag_tensor *dhat = ag_sum(critic(p, xhat));
    ag_grad_opts create = {.create_graph = true};
    if (ag_autograd_grad(&dhat, 1, &xhat, 1, NULL, &create, &gx)) die(); /* ∇ₓD(x̂), recorded */
    ag_tensor *norm = ag_sqrt(ag_add_scalar(ag_sum_dim(ag_square(gx), 1, false), 1e-12));
    ag_tensor *penalty = ag_mean(ag_square(ag_sub_scalar(norm, 1)));
    ag_tensor *wloss = ag_sub(ag_mean(critic(p, fake)), ag_mean(critic(p, real)));
    ag_tensor *loss = ag_add(wloss, ag_mul_scalar(penalty, lambda));
    ag_optimizer_zero_grad(opt);
    if (!loss || ag_backward(loss) || ag_optimizer_step(opt)) die();
    record r = {ag_item(loss), -ag_item(wloss), ag_item(penalty), ag_item(ag_mean(norm))};
    ag_scope_end();
    return r;
}

/* The mean of field f over records[from, to). */
static double average(const record *r, int from, int to, size_t offset) {
    double s = 0;
    for (int k = from; k < to; k++) s += *(const double *)((const char *)&r[k] + offset);
    return s / (to - from);
}
#define AVG(r, from, to, field) average(r, from, to, offsetof(record, field))

int main(int argc, char **argv) {
    int steps = 400, batch = 128, seed = 1;
    double lr = 2e-3, lambda = 10;
    const char *out = ".";
    arg args[] = {{"steps", 'i', &steps, "critic steps"},
                  {"batch", 'i', &batch, "points of each cloud per step"},
                  {"lr", 'd', &lr, "Adam learning rate"},
                  {"lambda", 'd', &lambda, "weight of the gradient penalty"},
                  {"seed", 'i', &seed, "random seed"},
                  {"out", 's', &out, "directory for gradient_penalty.svg"}};
    int rc = args_parse(argc, argv, "A WGAN-GP critic: a training loop with a gradient penalty |grad_x D(x)|.", args,
                        NARGS(args));
    if (rc >= 0) return rc;
    if (steps < 40 || steps > MAX_STEPS || batch < 1 || !(lr > 0) || !(lambda >= 0))
        return fprintf(stderr, "need 40 <= steps <= %d, batch >= 1, lr > 0, lambda >= 0\n", MAX_STEPS), 2;

    ag_manual_seed((uint64_t)seed);
    static const int64_t shapes[NPARAM][2] = {{HIDDEN, 2}, {HIDDEN, 0}, {HIDDEN, HIDDEN}, {HIDDEN, 0}, {1, HIDDEN}, {1, 0}};
    ag_tensor *p[NPARAM];
    ag_scope_begin();
    for (int i = 0; i < NPARAM; i++) { /* PyTorch's default: U(-1/√fan_in, 1/√fan_in) */
        double bound = 1 / sqrt((double)shapes[i - i % 2][1]);
        ag_shape s = shapes[i][1] ? AG_SHAPE(shapes[i][0], shapes[i][1]) : AG_SHAPE(shapes[i][0]);
        p[i] = ag_keep(ag_requires_grad_(ag_sub_scalar(ag_mul_scalar(ag_rand(s, AG_F32), 2 * bound), bound), true));
        if (!p[i]) die();
    }
    ag_scope_end();
    ag_adam_options o = ag_adam_defaults();
    o.lr = lr, o.beta1 = 0.5, o.beta2 = 0.9; /* the WGAN-GP paper's betas */
    ag_optimizer *opt = ag_adam_new(p, NPARAM, &o);
    if (!opt) die();

    record *r = calloc((size_t)steps, sizeof *r);
    double *at = calloc((size_t)steps, sizeof *at), *col[4];
    for (int c = 0; c < 4; c++) col[c] = calloc((size_t)steps, sizeof *col[c]);
    if (!r || !at || !col[0] || !col[1] || !col[2] || !col[3]) return fprintf(stderr, "out of memory\n"), 1;
    printf(" step      loss  -wloss (W estimate)   penalty   mean |grad D|\n");
    for (int k = 0; k < steps; k++) {
        r[k] = train_step(p, opt, batch, lambda);
        at[k] = k + 1;
        col[0][k] = r[k].loss, col[1][k] = r[k].wasserstein, col[2][k] = r[k].penalty, col[3][k] = r[k].norm;
        if (k == 0 || (k + 1) % 50 == 0)
            printf("%5d  %8.4f  %19.4f  %8.4f  %14.4f\n", k + 1, r[k].loss, r[k].wasserstein, r[k].penalty, r[k].norm);
    }

    ag_plot *plot = ag_plot_new("A WGAN-GP critic: loss with a gradient penalty", NULL, NULL);
    ag_plot_size(plot, 1100, 440);
    ag_plot_subplot(plot, 1, 2, 0);
    ag_plot_line(plot, at, col[0], steps, "loss = mean D(fake) - mean D(real) + λ·penalty");
    ag_plot_line(plot, at, col[1], steps, "W estimate = mean D(real) - mean D(fake)");
    ag_plot_hline(plot, sqrt(13), "true W₁ = √13");
    ag_plot_labels(plot, "critic loss and Wasserstein estimate", "step", "value");
    ag_plot_subplot(plot, 1, 2, 1);
    ag_plot_line(plot, at, col[2], steps, "penalty mean (|∇ₓD(x̂)| - 1)²");
    ag_plot_line(plot, at, col[3], steps, "mean |∇ₓD(x̂)|");
    ag_plot_log_scale(plot, false, true);
    ag_plot_labels(plot, "the gradient penalty", "step", "value (log scale)");
    char path[4096];
    if (!args_path(path, sizeof path, out, "gradient_penalty.svg") || ag_plot_save_svg(plot, path)) die();
    ag_plot_free(plot);

    int w = steps / 10; /* averages over the first and last tenth of the run */
    printf("loss_first=%.4f loss_last=%.4f penalty_first=%.4f penalty_last=%.4f grad_norm_last=%.4f "
           "w_estimate=%.4f w_true=%.4f\n",
           AVG(r, 0, w, loss), AVG(r, steps - w, steps, loss), AVG(r, 0, w, penalty), AVG(r, steps - w, steps, penalty),
           AVG(r, steps - w, steps, norm), AVG(r, steps - w, steps, wasserstein), sqrt(13));
    free(r), free(at);
    for (int c = 0; c < 4; c++) free(col[c]);
    ag_optimizer_free(opt);
    for (int i = 0; i < NPARAM; i++) ag_release(p[i]);
    return 0;
}

/*
 * perturb_weights.c - learning by perturbing weights against backpropagation,
 * as the "Introduction to Neural Networks" deck contrasts them: a 2 -> H (tanh)
 * -> 1 MLP learns which quadrants a point lies in (XOR of the signs; N points,
 * binary cross-entropy on the logit), trained three ways with the same data and
 * starting weights:
 *
 *   backprop   one forward and one backward pass per step give every dL/dw
 *              (ag_backward), then an SGD step;
 *   finite     the same SGD, but each dL/dw from perturbing that weight alone:
 *   differences (L(w + ε) - L(w - ε)) / 2ε, two forward passes per weight, so
 *              P weights cost 2P forward passes per step.  The gradients agree
 *              with backprop's to ~1e-10 and the training follows the same path,
 *              each step costing hundreds of times backprop's (more as P grows);
 *   random     the deck's first idea: perturb one random weight by N(0, σ²) and
 *   perturbation keep the change when the loss falls, given as many forward
 *              passes as finite differences used; backprop is then run again on
 *              that budget (a step counted as two passes) for comparison.
 *
 * Prints the time per gradient of each method and the loss each reached; the
 * last line holds the figures as key=value pairs (examples/meson.build checks them).
 *
 *     ./build/examples/perturb_weights [--steps 100] [--hidden 16] [--lr 2]
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <agrad/agrad.h>
#include "args.h"

#define NPARAM 4

static void die(void) {
    fprintf(stderr, "perturb_weights: %s\n", ag_last_error());
    exit(1);
}

typedef struct problem {
    ag_tensor *x, *y; /* [N, 2], [N, 1] in {0, 1} */
} problem;

/* w1 [2, H], b1 [H], w2 [H, 1], b2 [1]: the model's parameters, float64, contiguous */
typedef struct net {
    ag_tensor *p[NPARAM];
} net;

/* L = BCE(tanh(x·w1 + b1)·w2 + b2, y), the mean over the N points. */
static ag_tensor *loss_of(const problem *pb, const net *n) {
    ag_tensor *h = ag_tanh(ag_add(ag_matmul(pb->x, n->p[0]), n->p[1]));
    return ag_binary_cross_entropy_with_logits(ag_add(ag_matmul(h, n->p[2]), n->p[3]), pb->y, NULL);
}

/* The loss as a number, outside any graph (one forward pass). */
static double loss_value(const problem *pb, const net *n) {
    ag_scope_begin();
    ag_no_grad_begin();
    ag_tensor *l = loss_of(pb, n);
    if (!l) die();
    double v = ag_item(l);
    ag_no_grad_end();
    ag_scope_end();
    return v;
}

static net net_clone(const net *from) {
    net n;
    ag_scope_begin();
    for (int i = 0; i < NPARAM; i++) n.p[i] = ag_keep(ag_requires_grad_(ag_clone(ag_detach(from->p[i])), true));
    ag_scope_end();
    return n;
}
static void net_free(net *n) {
    for (int i = 0; i < NPARAM; i++) ag_release(n->p[i]);
}
static int64_t net_size(const net *n) {
    int64_t k = 0;
    for (int i = 0; i < NPARAM; i++) k += ag_numel(n->p[i]);
    return k;
}

/* The gradient by backpropagation into g (net_size doubles). */
static void grad_backprop(const problem *pb, const net *n, double *g) {
    ag_scope_begin();
    for (int i = 0; i < NPARAM; i++) ag_zero_grad(n->p[i]);
    ag_tensor *l = loss_of(pb, n);
    if (!l || ag_backward(l)) die();
    for (int i = 0; i < NPARAM; i++) {
        const double *d = ag_data(ag_grad(n->p[i]));
        for (int64_t k = 0; k < ag_numel(n->p[i]); k++) *g++ = d[k];
    }
    ag_scope_end();
}

/* The gradient by central differences, one weight at a time, into g; returns the forward passes used. */
static int64_t grad_finite(const problem *pb, const net *n, double eps, double *g) {
    int64_t passes = 0;
    for (int i = 0; i < NPARAM; i++) {
        double *w = ag_data(n->p[i]);
        for (int64_t k = 0; k < ag_numel(n->p[i]); k++) {
            double keep = w[k];
            w[k] = keep + eps;
            double up = loss_value(pb, n);
            w[k] = keep - eps;
            double down = loss_value(pb, n);
            w[k] = keep;
            *g++ = (up - down) / (2 * eps);
            passes += 2;
        }
    }
    return passes;
}

/* w -= lr·g over all parameters */
static void sgd(const net *n, const double *g, double lr) {
    for (int i = 0; i < NPARAM; i++) {
        double *w = ag_data(n->p[i]);
        for (int64_t k = 0; k < ag_numel(n->p[i]); k++) w[k] -= lr * *g++;
    }
}

/* The deck's random search: perturb one weight, keep it if the loss falls; passes forward passes. */
static double perturb(const problem *pb, const net *n, int64_t passes, double sigma) {
    double best = loss_value(pb, n);
    for (int64_t t = 1; t < passes; t++) {
        ag_scope_begin();
        int64_t which = (int64_t)(ag_item(ag_rand(AG_SCALAR_SHAPE, AG_F64)) * (double)net_size(n));
        double step = sigma * ag_item(ag_randn(AG_SCALAR_SHAPE, AG_F64));
        ag_scope_end();
        int i = 0;
        while (which >= ag_numel(n->p[i])) which -= ag_numel(n->p[i]), i++;
        double *w = ag_data(n->p[i]), keep = w[which];
        w[which] = keep + step;
        double l = loss_value(pb, n);
        if (l < best) best = l;
        else w[which] = keep;
    }
    return best;
}

int main(int argc, char **argv) {
    int steps = 100, hidden = 16, points = 200, seed = 1;
    double lr = 2, eps = 1e-6, sigma = 0.1;
    arg args[] = {{"steps", 'i', &steps, "SGD steps of backprop and of finite differences"},
                  {"hidden", 'i', &hidden, "hidden units H"},
                  {"points", 'i', &points, "training points N"},
                  {"lr", 'd', &lr, "SGD learning rate"},
                  {"eps", 'd', &eps, "finite-difference step ε"},
                  {"sigma", 'd', &sigma, "standard deviation of a random perturbation"},
                  {"seed", 'i', &seed, "random seed of the data and the weights"}};
    int rc = args_parse(argc, argv, "Learning by perturbing weights against backpropagation, timed.", args, NARGS(args));
    if (rc >= 0) return rc;
    if (steps < 1 || hidden < 1 || points < 1 || !(lr > 0) || !(eps > 0) || !(sigma > 0))
        return fprintf(stderr, "need steps, hidden, points >= 1 and lr, eps, sigma > 0\n"), 2;

    /* Data: x ~ U(-1, 1)², y = 1 where x1·x2 > 0.  Weights: PyTorch's default uniform ±1/√fan_in. */
    ag_manual_seed((uint64_t)seed);
    ag_scope_begin();
    ag_tensor *x = ag_sub_scalar(ag_mul_scalar(ag_rand(AG_SHAPE(points, 2), AG_F64), 2), 1);
    ag_tensor *prod = ag_mul(ag_narrow(x, 1, 0, 1), ag_narrow(x, 1, 1, 1));
    ag_tensor *y = ag_to_dtype(ag_gt(prod, ag_scalar(0, AG_F64)), AG_F64);
    if (!y) die();
    problem pb = {ag_keep(x), ag_keep(y)};
    double b1 = 1 / sqrt(2.0), b2 = 1 / sqrt((double)hidden);
    ag_shape shapes[NPARAM] = {AG_SHAPE(2, hidden), AG_SHAPE(hidden), AG_SHAPE(hidden, 1), AG_SHAPE(1)};
    net start;
    for (int i = 0; i < NPARAM; i++) {
        double b = i < 2 ? b1 : b2;
        start.p[i] = ag_keep(ag_requires_grad_(ag_sub_scalar(ag_mul_scalar(ag_rand(shapes[i], AG_F64), 2 * b), b), true));
        if (!start.p[i]) die();
    }
    ag_scope_end();
    int64_t P = net_size(&start);
    double *g_bp = malloc((size_t)P * sizeof *g_bp), *g_fd = malloc((size_t)P * sizeof *g_fd);
    if (!g_bp || !g_fd) return fprintf(stderr, "out of memory\n"), 1;
    double loss0 = loss_value(&pb, &start);
    printf("%d points, MLP 2 -> %d (tanh) -> 1: P = %lld weights, loss at the start %.4f\n", points, hidden,
           (long long)P, loss0);

    /* The two gradients at the start, compared. */
    grad_backprop(&pb, &start, g_bp);
    grad_finite(&pb, &start, eps, g_fd);
    double max_diff = 0, max_grad = 0;
    for (int64_t k = 0; k < P; k++) max_diff = fmax(max_diff, fabs(g_bp[k] - g_fd[k])), max_grad = fmax(max_grad, fabs(g_bp[k]));
    printf("at the start: max |backprop - finite difference| = %.2e (largest |dL/dw| %.3f)\n", max_diff, max_grad);

    /* Backprop: steps SGD steps. */
    net a = net_clone(&start);
    double t0 = ag_seconds();
    for (int s = 0; s < steps; s++) grad_backprop(&pb, &a, g_bp), sgd(&a, g_bp, lr);
    double t_bp = ag_seconds() - t0, loss_bp = loss_value(&pb, &a);

    /* Finite differences: the same steps. */
    net f = net_clone(&start);
    int64_t passes = 0;
    t0 = ag_seconds();
    for (int s = 0; s < steps; s++) passes += grad_finite(&pb, &f, eps, g_fd), sgd(&f, g_fd, lr);
    double t_fd = ag_seconds() - t0, loss_fd = loss_value(&pb, &f);

    /* Random perturbation: as many forward passes as finite differences used. */
    net r = net_clone(&start);
    t0 = ag_seconds();
    double loss_rp = perturb(&pb, &r, passes, sigma);
    double t_rp = ag_seconds() - t0;

    /* Backprop again with the budget of the random search: one step per two forward passes
     * (its backward pass costs about one forward pass). */
    net b = net_clone(&start);
    int64_t long_steps = passes / 2;
    t0 = ag_seconds();
    for (int64_t s = 0; s < long_steps; s++) grad_backprop(&pb, &b, g_bp), sgd(&b, g_bp, lr);
    double t_bp_long = ag_seconds() - t0, loss_bp_long = loss_value(&pb, &b);

    printf("%-24s %10s %14s %12s\n", "method", "seconds", "ms per step", "final loss");
    printf("%-24s %10.3f %14.3f %12.4f\n", "backprop", t_bp, 1e3 * t_bp / steps, loss_bp);
    printf("%-24s %10.3f %14.3f %12.4f\n", "finite differences", t_fd, 1e3 * t_fd / steps, loss_fd);
    printf("%-24s %10.3f %14s %12.4f  (%lld forward passes)\n", "random perturbation", t_rp, "-", loss_rp,
           (long long)passes);
    printf("%-24s %10.3f %14.3f %12.4f  (%lld steps: the random search's budget)\n", "backprop", t_bp_long,
           1e3 * t_bp_long / (double)long_steps, loss_bp_long, (long long)long_steps);
    printf("finite differences cost %.0f times backprop's time for the same %d steps (2P = %lld forward passes "
           "per step)\n", t_fd / t_bp, steps, (long long)(2 * P));
    printf("params=%lld grad_max_diff=%.3e loss_start=%.4f loss_backprop=%.4f loss_finite=%.4f loss_perturb=%.4f "
           "path_diff=%.3e time_backprop=%.4f time_finite=%.4f time_perturb=%.4f slowdown=%.1f forward_passes=%lld "
           "loss_backprop_same_budget=%.4f time_backprop_same_budget=%.4f\n",
           (long long)P, max_diff, loss0, loss_bp, loss_fd, loss_rp, fabs(loss_bp - loss_fd), t_bp, t_fd, t_rp,
           t_fd / t_bp, (long long)passes, loss_bp_long, t_bp_long);
    net_free(&b), net_free(&a), net_free(&f), net_free(&r), net_free(&start);
    ag_release(pb.x), ag_release(pb.y);
    free(g_bp), free(g_fd);
    return ag_live_tensors() == 0 ? 0 : (fprintf(stderr, "perturb_weights: %ld tensors leaked\n", ag_live_tensors()), 1);
}

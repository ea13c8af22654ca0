/*
 * newton_logreg.c - Newton's method against gradient descent on L2-regularised
 * logistic regression (synthetic data: 400 samples, 6 features and a bias).
 *
 * The loss L(θ) = mean(softplus(Xθ) - y·Xθ) + λ/2 |θ|² is smooth and strictly
 * convex.  Gradient descent steps θ -= g/L with L the largest eigenvalue of the
 * Hessian at the start (the classic safe step); Newton's method steps
 * θ -= H⁻¹g, the Hessian H from ag_hessian and the step from ag_linalg_solve.  Near
 * the minimum Newton's error squares at every step (quadratic convergence) while
 * gradient descent's shrinks by a constant factor (linear convergence): the plot of
 * both losses above the minimum (newton_logreg.svg, log scale) shows it.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <agrad/agrad.h>
#include <agrad/plot.h>
#include "args.h"

enum { N = 400, D = 7, MAX_STEPS = 2000 }; /* D counts the bias column */

typedef struct problem {
    ag_tensor *x, *y; /* [N, D] with a column of ones, [N] of 0/1 */
    double lambda;
} problem;

/* mean(softplus(Xθ) - y·Xθ) + λ/2 |θ|², the negative log-likelihood of y under
 * p = σ(Xθ), plus the penalty. */
static ag_tensor *loss_fn(ag_tensor *const *in, int n, void *ctx) {
    const problem *p = ctx;
    (void)n;
    ag_tensor *z = ag_matmul(p->x, in[0]);
    ag_tensor *nll = ag_mean(ag_sub(ag_softplus(z, 1, 20), ag_mul(p->y, z)));
    return ag_add(nll, ag_mul_scalar(ag_sum(ag_square(in[0])), p->lambda / 2));
}

static void die(void) {
    fprintf(stderr, "%s\n", ag_last_error());
    exit(1);
}

/* One step from theta (replaced by the new point); returns the loss before it. */
static double step(problem *p, ag_tensor **theta, bool newton, double lr) {
    ag_scope_begin();
    ag_tensor *loss = NULL, *g = NULL, *next;
    if (ag_vjp(loss_fn, p, theta, 1, NULL, NULL, &loss, &g)) die();
    if (newton) {
        ag_tensor *h = NULL;
        if (ag_hessian(loss_fn, p, theta, 1, NULL, &h)) die();
        next = ag_sub(*theta, ag_linalg_solve(h, g)); /* θ - H⁻¹g */
    } else {
        next = ag_sub(*theta, ag_mul_scalar(g, lr)); /* θ - lr·g */
    }
    if (!next) die();
    double value = ag_item(loss);
    ag_release(*theta);
    *theta = ag_keep(next);
    ag_scope_end();
    return value;
}

/* Runs `steps` steps from θ = 0, writing the loss before each into loss[0..steps]
 * (the last one after the last step). */
static void run(problem *p, bool newton, double lr, int steps, double *loss) {
    ag_tensor *theta = ag_zeros(AG_SHAPE(D), AG_F64);
    for (int k = 0; k < steps; k++) loss[k] = step(p, &theta, newton, lr);
    ag_scope_begin();
    ag_tensor *last = loss_fn(&theta, 1, p);
    loss[steps] = last ? ag_item(last) : NAN;
    ag_scope_end();
    ag_release(theta);
}

/* The first k with gap[k] <= tol, or -1. */
static int reached(const double *gap, int n, double tol) {
    for (int k = 0; k < n; k++)
        if (gap[k] <= tol) return k;
    return -1;
}

int main(int argc, char **argv) {
    int newton_steps = 12, gd_steps = 300, seed = 3;
    double lambda = 1e-2;
    const char *out = ".";
    arg args[] = {{"newton-steps", 'i', &newton_steps, "Newton steps"},
                  {"gd-steps", 'i', &gd_steps, "gradient descent steps"},
                  {"lambda", 'd', &lambda, "L2 penalty λ"},
                  {"seed", 'i', &seed, "random seed of the data"},
                  {"out", 's', &out, "directory for newton_logreg.svg"}};
    int rc = args_parse(argc, argv, "Newton's method (ag_hessian) against gradient descent on logistic regression.",
                        args, NARGS(args));
    if (rc >= 0) return rc;
    if (newton_steps < 1 || gd_steps < 1 || newton_steps > MAX_STEPS || gd_steps > MAX_STEPS || !(lambda > 0))
        return fprintf(stderr, "need 1 <= steps <= %d and lambda > 0\n", MAX_STEPS), 2;

    /* Data: x ~ N(0, 1) (and a one), y ~ Bernoulli(σ(x·θ*)). */
    ag_manual_seed((uint64_t)seed);
    ag_scope_begin();
    ag_tensor *cols[2] = {ag_randn(AG_SHAPE(N, D - 1), AG_F64), ag_ones(AG_SHAPE(N, 1), AG_F64)};
    ag_tensor *x = ag_cat(cols, 2, 1), *truth = ag_mul_scalar(ag_randn(AG_SHAPE(D), AG_F64), 1.5);
    ag_tensor *y = ag_to_dtype(ag_lt(ag_rand(AG_SHAPE(N), AG_F64), ag_sigmoid(ag_matmul(x, truth))), AG_F64);
    if (!y) die();
    problem p = {ag_keep(x), ag_keep(y), lambda};
    ag_scope_end();

    /* Gradient descent's step: 1/L, L the largest curvature at the start. */
    ag_scope_begin();
    ag_tensor *theta0 = ag_zeros(AG_SHAPE(D), AG_F64), *h = NULL;
    if (ag_hessian(loss_fn, &p, &theta0, 1, NULL, &h)) die();
    ag_tensor *eig = ag_linalg_eigvalsh(h, "L");
    if (!eig) die();
    double L = ((double *)ag_data(eig))[D - 1], mu = ((double *)ag_data(eig))[0];
    ag_scope_end();
    printf("Hessian at θ = 0: eigenvalues from %.4f to %.4f (condition number %.1f); gradient descent steps 1/L = %.3f\n",
           mu, L, L / mu, 1 / L);

    int steps = newton_steps > gd_steps ? newton_steps : gd_steps;
    double *newton = calloc((size_t)steps + 1, sizeof *newton), *gd = calloc((size_t)steps + 1, sizeof *gd);
    double *at = calloc((size_t)steps + 1, sizeof *at), *gap_n = calloc((size_t)steps + 1, sizeof *gap_n);
    double *gap_g = calloc((size_t)steps + 1, sizeof *gap_g);
    if (!newton || !gd || !at || !gap_n || !gap_g) return fprintf(stderr, "out of memory\n"), 1;
    run(&p, true, 0, newton_steps, newton);
    run(&p, false, 1 / L, gd_steps, gd);

    /* The minimum: the best loss either method reached (Newton's, once converged). */
    double best = INFINITY;
    for (int k = 0; k <= newton_steps; k++) best = fmin(best, newton[k]);
    for (int k = 0; k <= gd_steps; k++) best = fmin(best, gd[k]);
    for (int k = 0; k <= steps; k++) {
        at[k] = k;
        gap_n[k] = k <= newton_steps ? fmax(newton[k] - best, 1e-16) : NAN;
        gap_g[k] = k <= gd_steps ? fmax(gd[k] - best, 1e-16) : NAN;
    }
    printf("step  Newton: loss - min   gradient descent: loss - min\n");
    for (int k = 0; k <= steps; k++)
        if (k <= 8 || k == newton_steps || k == gd_steps || k % 50 == 0)
            printf("%4d  %18.3e   %18.3e\n", k, k <= newton_steps ? gap_n[k] : NAN, k <= gd_steps ? gap_g[k] : NAN);

    ag_plot *plot = ag_plot_new("Newton's method against gradient descent: logistic regression",
                                "step", "loss - minimum loss");
    ag_plot_line(plot, at, gap_n, newton_steps + 1, "Newton (ag_hessian + linalg_solve)");
    ag_plot_style_last(plot, &(ag_plot_style){.markers = true});
    ag_plot_line(plot, at, gap_g, gd_steps + 1, "gradient descent, lr = 1/L");
    ag_plot_log_scale(plot, false, true);
    char path[4096];
    if (!args_path(path, sizeof path, out, "newton_logreg.svg") || ag_plot_save_svg(plot, path)) die();
    ag_plot_free(plot);

    int tol_n = reached(gap_n, newton_steps + 1, 1e-10), tol_g = reached(gap_g, gd_steps + 1, 1e-10);
    printf("tol=1e-10 newton_min=%.12f newton_steps_to_tol=%d gd_steps_to_tol=%d gd_gap_after_newton_steps=%.3g "
           "gd_final_gap=%.3g condition=%.2f\n",
           best, tol_n, tol_g, gap_g[newton_steps < gd_steps ? newton_steps : gd_steps], gap_g[gd_steps], L / mu);
    free(newton), free(gd), free(at), free(gap_n), free(gap_g);
    ag_release(p.x);
    ag_release(p.y);
    return 0;
}

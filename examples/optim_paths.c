/*
 * optim_paths.c - seven optimizers side by side on three 2-D test functions:
 * Rosenbrock's valley, Beale's function and the saddle x² - y².  Each
 * optimizer starts from the same point with a learning rate suited to it and
 * the function; the paths are drawn on the filled contour plot of each
 * function (optim_paths.svg) and the final points and losses printed.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <agrad/agrad.h>
#include <agrad/plot.h>
#include "args.h"

/* The functions, written once with agrad ops: the contour plot evaluates them too. */
static ag_tensor *rosenbrock(ag_tensor *x, ag_tensor *y) { /* (1 - x)² + 100 (y - x²)² */
    return ag_add(ag_square(ag_rsub_scalar(1, x)), ag_mul_scalar(ag_square(ag_sub(y, ag_square(x))), 100));
}
static ag_tensor *beale(ag_tensor *x, ag_tensor *y) { /* Σ_k (c_k - x + x y^k)², c = 1.5, 2.25, 2.625 */
    const double c[3] = {1.5, 2.25, 2.625};
    ag_tensor *sum = NULL, *yk = y;
    for (int k = 0; k < 3; k++, yk = ag_mul(yk, y)) {
        ag_tensor *term = ag_square(ag_add(ag_rsub_scalar(c[k], x), ag_mul(x, yk)));
        sum = sum ? ag_add(sum, term) : term;
    }
    return sum;
}
static ag_tensor *saddle(ag_tensor *x, ag_tensor *y) { return ag_sub(ag_square(x), ag_square(y)); } /* x² - y² */

typedef ag_tensor *(*fn2)(ag_tensor *, ag_tensor *);
typedef struct problem {
    const char *name;
    fn2 f;
    double start[2], minimum[2]; /* minimum NAN: none (the saddle) */
    double box[4];               /* the contour plot's box */
    double levels[12];
    int nlevels;
} problem;

static const char *names[7] = {"SGD", "Momentum", "Nesterov", "Adagrad", "RMSprop", "Adam", "AdamW"};
static const double lrs[7] = {1e-3, 1e-3, 1e-3, 0.5, 0.01, 0.05, 0.05};

/* Optimizer k of names[] over the parameter p with learning rate lr. */
static ag_optimizer *make(int k, ag_tensor *p, double lr) {
    ag_sgd_options s = ag_sgd_defaults();
    s.lr = lr;
    s.momentum = k == 1 || k == 2 ? 0.9 : 0;
    s.nesterov = k == 2;
    ag_adagrad_options ag = ag_adagrad_defaults();
    ag_rmsprop_options rm = ag_rmsprop_defaults();
    ag_adam_options ad = k == 6 ? ag_adamw_defaults() : ag_adam_defaults();
    ag.lr = rm.lr = ad.lr = lr;
    switch (k) {
    case 3: return ag_adagrad_new(&p, 1, &ag);
    case 4: return ag_rmsprop_new(&p, 1, &rm);
    case 5: return ag_adam_new(&p, 1, &ad);
    case 6: return ag_adamw_new(&p, 1, &ad);
    default: return ag_sgd_new(&p, 1, &s);
    }
}

/* f at one point, for the contour plot: the same graph on 0-d tensors, without grad. */
static double eval_at(double x, double y, void *ctx) {
    ag_scope_begin();
    ag_no_grad_begin();
    double v = ag_item(((const problem *)ctx)->f(ag_scalar(x, AG_F64), ag_scalar(y, AG_F64)));
    ag_no_grad_end();
    ag_scope_end();
    return v;
}

int main(int argc, char **argv) {
    int steps = 1000;
    const char *out = ".";
    arg args[] = {{"steps", 'i', &steps, "optimizer steps per run"},
                     {"out", 's', &out, "directory for optim_paths.svg"}};
    int rc = args_parse(argc, argv, "SGD, momentum, Nesterov, Adagrad, RMSprop, Adam and AdamW on Rosenbrock, Beale and a saddle.",
                        args, NARGS(args));
    if (rc >= 0) return rc;
    if (steps < 1) return fprintf(stderr, "need steps >= 1\n"), 2;
    problem problems[3] = {
        {"rosenbrock", rosenbrock, {-1.5, 2}, {1, 1}, {-2, 2, -1, 3}, {0.3, 1, 3, 10, 30, 100, 300, 1000}, 8},
        {"beale", beale, {1, 1.5}, {3, 0.5}, {-1, 4.5, -1.5, 2.5}, {0.1, 0.3, 1, 3, 10, 30, 100, 300, 1000}, 9},
        {"saddle", saddle, {-1.2, 1e-3}, {NAN, NAN}, {-1.5, 1.5, -1.5, 1.5}, {-2, -1.5, -1, -0.5, 0, 0.5, 1, 1.5, 2}, 9}};

    ag_plot *plot = ag_plot_new("Optimizer paths (squares: start, large dots: after the last step)", "x", "y");
    ag_plot_size(plot, 1560, 540);
    double *px = malloc(sizeof(double) * (size_t)(steps + 1)), *py = malloc(sizeof(double) * (size_t)(steps + 1));
    char summary[4096] = "";
    size_t used = 0;
    for (int f = 0; f < 3; f++) {
        problem *pb = &problems[f];
        ag_plot_subplot(plot, 1, 3, f);
        ag_plot_contour_options co = {.levels = pb->levels, .nlevels = pb->nlevels, .filled = true};
        if (ag_plot_contour(plot, eval_at, pb, pb->box[0], pb->box[1], pb->box[2], pb->box[3], &co))
            return fprintf(stderr, "%s\n", ag_last_error()), 1;
        printf("%s, from (%g, %g), %d steps:\n", pb->name, pb->start[0], pb->start[1], steps);
        for (int k = 0; k < 7; k++) {
            ag_tensor *p = ag_requires_grad_(ag_from_data(pb->start, AG_SHAPE(2), AG_F64), true);
            ag_optimizer *opt = make(k, p, lrs[k]);
            int t = 0, escape = -1; /* the saddle: the first step with f < -1 */
            for (;; t++) {
                const double *v = ag_data(p);
                px[t] = v[0], py[t] = v[1];
                if (escape < 0 && v[0] * v[0] - v[1] * v[1] < -1 && isnan(pb->minimum[0])) escape = t;
                if (t == steps || !(fabs(v[0]) < 1e3 && fabs(v[1]) < 1e3)) break; /* stop runs that diverge */
                ag_scope_begin();
                ag_optimizer_zero_grad(opt);
                ag_tensor *l = pb->f(ag_select(p, 0, 0), ag_select(p, 0, 1));
                if (ag_backward(l) || ag_optimizer_step(opt)) return fprintf(stderr, "%s\n", ag_last_error()), 1;
                ag_scope_end();
            }
            double loss = eval_at(px[t], py[t], pb), dist = hypot(px[t] - pb->minimum[0], py[t] - pb->minimum[1]);
            printf("  %-9s lr %-6g -> (%8.4f, %8.4f) after %4d steps  loss %-10.4g", names[k], lrs[k], px[t], py[t], t, loss);
            char key[64];
            snprintf(key, sizeof key, "%s_%s", pb->name, names[k]);
            if (!isnan(dist)) {
                printf("  distance to the minimum %.4f\n", dist);
                used += (size_t)snprintf(summary + used, sizeof summary - used, "%s_loss=%.4g %s_dist=%.4g ", key, loss, key, dist);
            } else {
                printf("  %s\n", escape < 0 ? "still at the saddle" : "escaped");
                used += (size_t)snprintf(summary + used, sizeof summary - used, "%s_escape=%d ", key, escape);
            }
            char label[64];
            snprintf(label, sizeof label, "%s (lr %g)", names[k], lrs[k]);
            ag_plot_trajectory(plot, px, py, t + 1, f == 2 ? label : NULL); /* one legend, in the last subplot */
            ag_optimizer_free(opt);
            ag_release(p);
        }
        char title[96];
        snprintf(title, sizeof title, "%s from (%g, %g)", pb->name, pb->start[0], pb->start[1]);
        ag_plot_labels(plot, title, NULL, NULL);
    }
    char path[1024];
    if (!args_path(path, sizeof path, out, "optim_paths.svg") || ag_plot_save_svg(plot, path))
        return fprintf(stderr, "%s\n", ag_last_error()), 1;
    for (char *c = summary; *c; c++) *c = *c >= 'A' && *c <= 'Z' ? (char)(*c - 'A' + 'a') : *c;
    printf("%ssteps=%d\n", summary, steps);
    ag_plot_free(plot);
    free(px), free(py);
    return ag_live_tensors() == 0 ? 0 : 1;
}

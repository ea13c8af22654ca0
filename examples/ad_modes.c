/*
 * ad_modes.c - forward mode against reverse mode: the Jacobian of f: R^n -> R^m,
 * f(x) = tanh(W₂ tanh(W₁ x)) (W₁ [64, n], W₂ [m, 64]), computed by ag_jacobian both
 * ways and by central finite differences, timed as n and m vary.
 *
 * Reverse mode gets the Jacobian a row at a time: one forward pass, then one
 * backward pass per output (m of them).  Forward mode gets it a column at a time:
 * one forward pass carrying a tangent per input (n of them).  Each pass costs a
 * small multiple of evaluating f, so the theory predicts forward mode wins when
 * n < m and reverse mode when n > m (a gradient, m = 1, is reverse mode's best
 * case: one backward pass whatever n).  Central differences also take n columns
 * (2n evaluations of f, no tangents) but are approximate: their error is printed.
 * The table shows the crossover along n = m.  Times are CPU time (run it with
 * OMP_NUM_THREADS=1 to count one core's work only).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <agrad/agrad.h>
#include "args.h"

enum { HIDDEN = 64, MAX_SIZES = 8 };

typedef struct net {
    ag_tensor *w1, *w2;
} net;

static ag_tensor *f(ag_tensor *const *in, int n, void *ctx) {
    const net *w = ctx;
    (void)n;
    return ag_tanh(ag_matmul(w->w2, ag_tanh(ag_matmul(w->w1, in[0]))));
}

static void die(void) {
    fprintf(stderr, "%s\n", ag_last_error());
    exit(1);
}

/* CPU time of the process: the work done, whatever else the machine runs (wall
 * time on a shared machine counts the waits for a core too). */
static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The Jacobian by central differences, [m, n] (owned by the current scope). */
static ag_tensor *finite_differences(net *w, ag_tensor *x, int64_t m) {
    int64_t n = ag_numel(x);
    ag_tensor *jac = ag_zeros(AG_SHAPE(m, n), AG_F64);
    double *xv = ag_data(x), *j = ag_data(jac), h = 1e-6;
    ag_no_grad_begin();
    for (int64_t c = 0; c < n; c++) {
        double keep = xv[c];
        ag_scope_begin();
        xv[c] = keep + h;
        ag_tensor *plus = f(&x, 1, w);
        xv[c] = keep - h;
        ag_tensor *minus = f(&x, 1, w);
        xv[c] = keep;
        if (!plus || !minus) die();
        const double *p = ag_data(plus), *q = ag_data(minus);
        for (int64_t r = 0; r < m; r++) j[r * n + c] = (p[r] - q[r]) / (2 * h);
        ag_scope_end();
    }
    ag_no_grad_end();
    return jac;
}

typedef enum { REVERSE, FORWARD, DIFFERENCES } method;

/* One Jacobian by method into *jac (a new scope-owned tensor). */
static void jacobian(method how, net *w, ag_tensor *x, int64_t m, ag_tensor **jac) {
    if (how == DIFFERENCES) {
        *jac = finite_differences(w, x, m);
        return;
    }
    ag_functional_opts o = {.mode = how == REVERSE ? AG_JACOBIAN_REVERSE : AG_JACOBIAN_FORWARD};
    if (ag_jacobian(f, w, &x, 1, &o, jac)) die();
}

/* CPU microseconds per Jacobian: the best of `repeats` timings of enough calls to
 * take about `budget` seconds in all. */
static double timed(method how, net *w, ag_tensor *x, int64_t m, int repeats, double budget) {
    double best = INFINITY;
    int calls = 1;
    for (int r = 0; r < repeats; r++) {
        double t0 = now();
        for (int k = 0; k < calls; k++) {
            ag_scope_begin();
            ag_tensor *jac;
            jacobian(how, w, x, m, &jac);
            ag_scope_end();
        }
        double per = (now() - t0) / calls;
        best = fmin(best, per);
        if (r == 0) calls = (int)fmax(1, budget / repeats / fmax(per, 1e-7));
    }
    return best * 1e6;
}

/* max |a - b| */
static double max_diff(ag_tensor *a, ag_tensor *b) {
    ag_scope_begin();
    double d = ag_item(ag_amax(ag_abs(ag_sub(ag_contiguous(a), ag_contiguous(b))), 0, NULL, false));
    ag_scope_end();
    return d;
}

int main(int argc, char **argv) {
    int repeats = 5, largest = 256;
    double budget = 0.05;
    arg args[] = {{"largest", 'i', &largest, "largest n and m (sizes 4, 16, 64, ... up to it)"},
                  {"repeats", 'i', &repeats, "timings per cell (the best is kept)"},
                  {"budget", 'd', &budget, "seconds per cell"}};
    int rc = args_parse(argc, argv, "Forward vs reverse mode: the cost of a Jacobian of R^n -> R^m as n and m vary.",
                        args, NARGS(args));
    if (rc >= 0) return rc;
    if (largest < 4 || largest > 4096 || repeats < 1 || !(budget > 0))
        return fprintf(stderr, "need 4 <= largest <= 4096, repeats >= 1, budget > 0\n"), 2;
    int64_t sizes[MAX_SIZES];
    int ns = 0;
    for (int64_t s = 4; s <= largest && ns < MAX_SIZES; s *= 4) sizes[ns++] = s;

    printf("Jacobian of f(x) = tanh(W2 tanh(W1 x)), R^n -> R^m, hidden %d, float64; CPU µs per Jacobian (best of %d)\n",
           HIDDEN, repeats);
    printf("%6s %6s %12s %12s %12s  %-8s %-9s %s\n", "n", "m", "reverse", "forward", "differences", "faster",
           "predicted", "differences' error");
    int agree = 0, decided = 0, cells = 0;
    double worst_error = 0, crossover_sum = 0;
    ag_manual_seed(5);
    for (int a = 0; a < ns; a++) {
        for (int b = 0; b < ns; b++) {
            int64_t n = sizes[a], m = sizes[b];
            ag_scope_begin();
            net w = {ag_mul_scalar(ag_randn(AG_SHAPE(HIDDEN, n), AG_F64), 1 / sqrt((double)n)),
                     ag_mul_scalar(ag_randn(AG_SHAPE(m, HIDDEN), AG_F64), 1 / sqrt((double)HIDDEN))};
            ag_tensor *x = ag_randn(AG_SHAPE(n), AG_F64), *jr, *jf, *jd;
            if (!w.w1 || !w.w2 || !x) die();
            jacobian(REVERSE, &w, x, m, &jr);
            jacobian(FORWARD, &w, x, m, &jf);
            jacobian(DIFFERENCES, &w, x, m, &jd);
            double modes_diff = max_diff(jr, jf), fd_error = max_diff(jr, jd);
            if (!(modes_diff < 1e-12)) return fprintf(stderr, "the two modes disagree by %g\n", modes_diff), 1;
            worst_error = fmax(worst_error, fd_error);
            double tr = timed(REVERSE, &w, x, m, repeats, budget), tf = timed(FORWARD, &w, x, m, repeats, budget);
            double td = timed(DIFFERENCES, &w, x, m, repeats, budget);
            const char *faster = tf < tr ? "forward" : "reverse";
            const char *predicted = n < m ? "forward" : n > m ? "reverse" : "either";
            if (n != m) agree += (n < m) == (tf < tr), decided++;
            else crossover_sum += tf / tr, cells++;
            printf("%6lld %6lld %12.1f %12.1f %12.1f  %-8s %-9s %.1e\n", (long long)n, (long long)m, tr, tf, td, faster,
                   predicted, fd_error);
            fflush(stdout);
            ag_scope_end();
        }
    }
    printf("where n != m the faster mode is the one the theory predicts in %d of %d cells; along n = m forward/reverse "
           "averages %.2f\n", agree, decided, crossover_sum / cells);
    printf("agree=%d cells=%d agree_fraction=%.3f diagonal_ratio=%.3f fd_max_error=%.3g\n", agree, decided,
           (double)agree / decided, crossover_sum / cells, worst_error);
    return 0;
}

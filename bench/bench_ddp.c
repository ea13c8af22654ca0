/*
 * bench_ddp.c - data-parallel step time under mpirun (docs/benchmarks.md,
 * docs/distributed.md): one rank per process, 1 thread each, weak scaling (every
 * rank its own batch of B samples, so the global batch grows with the ranks).
 *
 *     mpirun -np R build/bench/bench_ddp --model allreduce|compute [--steps N]
 *
 * Models: "allreduce", an MLP 1024-4096-4096-10 (21.0M float32 parameters, 84 MB
 * of gradients) on B = 8: communication-heavy; "compute", an MLP 256-1024-1024-10
 * (1.3M parameters) on B = 1024: computation-heavy.  For each, with overlap on and
 * off (ag_ddp_options.overlap), rank 0 prints the median step time (forward,
 * backward with the gradient all-reduce, SGD step), the exposed all-reduce wait
 * per step (ag_ddp_last_wait_seconds: with overlap off, all of it), and the time
 * of one all-reduce of the whole gradient buffer on its own.
 * bench/ddp_scaling.sh runs it for 1, 2 and 4 ranks and models larger counts.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <agrad/agrad.h>
#include <agrad/mpi.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Median step time and exposed wait (seconds) over steps steps after 2 warm-up ones. */
static int run(ag_comm *comm, const char *kind, bool overlap, int steps, double *step_s, double *wait_s, int64_t *nparams,
               double *allreduce_s) {
    bool big = strcmp(kind, "allreduce") == 0;
    int64_t in = big ? 1024 : 256, hidden = big ? 4096 : 1024, batch = big ? 8 : 1024;
    ag_manual_seed(1);
    ag_module *m = AG_SEQUENTIAL(ag_nn_linear(in, hidden, true), ag_nn_relu(), ag_nn_linear(hidden, hidden, true),
                                 ag_nn_relu(), ag_nn_linear(hidden, 10, true));
    ag_ddp_options o = ag_ddp_defaults();
    o.overlap = overlap;
    ag_ddp *d = ag_ddp_new(m, comm, &o);
    ag_tensor *p[8];
    int np = ag_module_parameters(m, p, 8);
    ag_sgd_options so = ag_sgd_defaults();
    so.lr = 1e-3;
    ag_optimizer *opt = ag_sgd_new(p, np, &so);
    ag_manual_seed(100 + (uint64_t)ag_comm_rank(comm));
    ag_tensor *x = ag_randn(AG_SHAPE(batch, in), AG_F32), *y = ag_randn(AG_SHAPE(batch, 10), AG_F32);
    double *t = malloc(sizeof(double) * (size_t)steps), *w = malloc(sizeof(double) * (size_t)steps);
    int bad = !d || !opt;
    for (int s = -2; !bad && s < steps; s++) {
        double t0 = now();
        ag_scope_begin();
        ag_optimizer_zero_grad(opt);
        bad = ag_backward(ag_mse_loss(ag_ddp_forward(d, x), y, NULL)) != AG_OK || ag_optimizer_step(opt) != AG_OK;
        ag_scope_end();
        if (s >= 0) t[s] = now() - t0, w[s] = ag_ddp_last_wait_seconds(d);
    }
    *nparams = ag_module_num_parameters(m, true);
    if (!bad) *step_s = median(t, steps), *wait_s = median(w, steps);
    /* One all-reduce of a buffer the size of the gradients, alone. */
    ag_tensor *g = ag_zeros(AG_SHAPE(*nparams), AG_F32);
    for (int s = 0; !bad && s < steps; s++) {
        ag_comm_barrier(comm);
        double t0 = now();
        bad = ag_comm_all_reduce_(comm, g) != AG_OK;
        t[s] = now() - t0;
    }
    if (!bad) *allreduce_s = median(t, steps);
    if (bad) fprintf(stderr, "bench_ddp: %s\n", ag_last_error());
    free(t);
    free(w);
    ag_release(g);
    ag_release(x);
    ag_release(y);
    ag_optimizer_free(opt);
    ag_ddp_free(d);
    ag_module_free(m);
    return bad;
}

int main(int argc, char **argv) {
    ag_comm *comm = ag_mpi_world(&argc, &argv);
    if (!comm) return fprintf(stderr, "bench_ddp: %s\n", ag_last_error()), 1;
    const char *kind = "allreduce";
    int steps = 10;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--model") == 0) kind = argv[i + 1];
        else if (strcmp(argv[i], "--steps") == 0) steps = atoi(argv[i + 1]);
    }
    if (steps < 1) steps = 1;
    ag_set_num_threads(1); /* one core a rank: the scaling is the ranks' */
    int rc = 0;
    for (int overlap = 1; overlap >= 0 && !rc; overlap--) {
        double step = 0, wait = 0, ar = 0;
        int64_t n = 0;
        rc = run(comm, kind, overlap, steps, &step, &wait, &n, &ar);
        if (!rc && ag_comm_rank(comm) == 0)
            printf("model=%s ranks=%d overlap=%d params=%lld step_ms=%.2f wait_ms=%.2f allreduce_ms=%.2f\n", kind,
                   ag_comm_size(comm), overlap, (long long)n, 1e3 * step, 1e3 * wait, 1e3 * ar);
    }
    ag_comm_free(comm);
    return rc;
}

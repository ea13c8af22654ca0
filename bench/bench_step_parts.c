/*
 * bench_step_parts.c - where the time of bench_steps.c's small training steps goes
 * (mlp_512_b64, mlp_784_256_10, mlp_bn_dropout, mlp_512_b256; bench_steps.c builds the
 * models, this file includes it): each step timed part by part as model_step runs them
 * (zero_grad, forward, loss, backward, the optimizer's step, the scope's end that frees the
 * graph), and each optimizer's update alone over the step's parameters with gradients of
 * their shapes (SGD plain, with momentum, Nesterov, weight decay; Adam; AdamW), hot.
 * The step is also timed with the optimizer inside backward (ag_optimizer_register_step_hooks,
 * gradients dropped after their update: no zero_grad, no step, the updates in the backward
 * part) on a second copy of the model, blocks of the two alternating.
 *
 * µs per step: the median over blocks of steps of each block's mean, on the benchmark clock
 * (BENCH_CLOCK=cpu: CPU time of all threads).  docs/benchmarks.md ("Session 9: small-batch
 * steps") has the tables.
 * Usage: bench_step_parts [--quick] [name-filter[,name-filter...]]: step/NAME times NAME's step by
 * part, optim/NAME the optimizers over NAME's parameters (NAME alone: both).
 */
#define main bench_steps_main
#include "bench_steps.c"
#undef main

enum { P_ZERO, P_FORWARD, P_LOSS, P_BACKWARD, P_STEP, P_END, NPARTS };
static const char *const part_names[NPARTS] = {"zero_grad", "forward", "loss", "backward", "optimizer", "scope_end"};

/* One step of m as model_step runs it, each part's clock time added to acc. */
static int parts_step(model *m, double *acc) {
    double t[NPARTS + 1];
    t[0] = bench_now();
    ag_scope_begin();
    if (!m->in_backward) ag_optimizer_zero_grad(m->opt);
    t[1] = bench_now();
    ag_tensor *y = ag_module_forward(m->net, m->x);
    t[2] = bench_now();
    ag_tensor *loss = ag_cross_entropy(y, m->target, NULL);
    t[3] = bench_now();
    int bad = !loss || ag_backward(loss) != AG_OK;
    t[4] = bench_now();
    bad |= !m->in_backward && ag_optimizer_step(m->opt) != AG_OK;
    t[5] = bench_now();
    ag_scope_end();
    t[6] = bench_now();
    for (int k = 0; k < NPARTS; k++) acc[k] += t[k + 1] - t[k];
    return bad;
}

/* The median of n block means. */
static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, bench_cmp_double);
    return bench_quantile(v, n, 0.5);
}

#define BLOCKS 15

/* Times the steps of m[0] and m[1] (the same model, the second with the optimizer inside
 * backward) by part: BLOCKS blocks of steps of each after a warm-up, the two alternating
 * (which goes first swaps every block); prints µs a part. */
static void parts_run(const char *name, model *const m[2], int steps) {
    double per[2][NPARTS][BLOCKS], whole[2][BLOCKS];
    double acc[NPARTS] = {0};
    for (int v = 0; v < 2; v++)
        for (int i = 0; i < 20; i++)
            if (parts_step(m[v], acc)) return;
    for (int b = 0; b < BLOCKS; b++)
        for (int j = 0; j < 2; j++) {
            const int v = j ^ (b & 1);
            memset(acc, 0, sizeof acc);
            for (int i = 0; i < steps; i++)
                if (parts_step(m[v], acc)) return;
            whole[v][b] = 0;
            for (int k = 0; k < NPARTS; k++) {
                per[v][k][b] = 1e6 * acc[k] / steps;
                whole[v][b] += per[v][k][b];
            }
        }
    for (int v = 0; v < 2; v++) {
        char label[96];
        snprintf(label, sizeof label, "%s%s", name, v ? "_optbw" : "");
        printf("%-24s", label);
        for (int k = 0; k < NPARTS; k++) printf(" %10.1f", median(per[v][k], BLOCKS));
        printf(" %10.1f\n", median(whole[v], BLOCKS));
    }
}

/* ---- the optimizers alone over a model's parameters ---------------------------------- */
typedef struct optim_case {
    const char *name;
    ag_optim_kind kind;
    double momentum, weight_decay;
    bool nesterov;
} optim_case;

static ag_optimizer *make_optim(const optim_case *c, ag_tensor **params, int n) {
    if (c->kind == AG_OPTIM_SGD) {
        ag_sgd_options o = ag_sgd_defaults();
        o.lr = 0.01, o.momentum = c->momentum, o.weight_decay = c->weight_decay, o.nesterov = c->nesterov;
        return ag_sgd_new(params, n, &o);
    }
    ag_adam_options o = c->kind == AG_OPTIM_ADAM ? ag_adam_defaults() : ag_adamw_defaults();
    return c->kind == AG_OPTIM_ADAM ? ag_adam_new(params, n, &o) : ag_adamw_new(params, n, &o);
}

static int optim_call(void *ctx) { return ag_optimizer_step(ctx) != AG_OK; }

/* Each optimizer's step over m's parameters, gradients set to random values once. */
static void optim_run(const char *name, model *m, double scale) {
    static const optim_case cases[] = {
        {"sgd", AG_OPTIM_SGD, 0, 0, false},           {"sgd_momentum", AG_OPTIM_SGD, 0.9, 0, false},
        {"sgd_nesterov", AG_OPTIM_SGD, 0.9, 0, true}, {"sgd_mom_wd", AG_OPTIM_SGD, 0.9, 1e-4, false},
        {"adam", AG_OPTIM_ADAM, 0, 0, false},         {"adamw", AG_OPTIM_ADAMW, 0, 0, false},
    };
    ag_tensor *params[64];
    int n = ag_module_parameters(m->net, params, 64);
    int64_t numel = 0;
    for (int i = 0; i < n; i++) {
        ag_tensor *p = params[i];
        ag_zero_grad(p);
        ag_tensor *g = ag_mul_scalar(ag_randn(ag_shape_of(p), AG_F32), 1e-3);
        ag_backward_ex(ag_mul_scalar(p, 1), g, false); /* .grad = g, set through the engine as a step sets it */
        numel += ag_numel(p);
    }
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        ag_optimizer *opt = make_optim(&cases[c], params, n);
        bench_stats s;
        if (opt && bench_measure(optim_call, opt, 0.05, 0.5 * scale, 20, 100000, &s) == 0)
            printf("%-20s %-14s %8lld params %10.1f us (p10 %.1f, p90 %.1f)\n", name, cases[c].name, (long long)numel,
                   s.median, s.p10, s.p90);
        ag_optimizer_free(opt);
    }
}

int main(int argc, char **argv) {
    bench_opts o;
    if (bench_parse(argc, argv, &o, "[--quick] [name-filter]")) return 2;
    printf("agrad bench_step_parts: %d threads, load average %.2f; us a step\n", omp_get_max_threads(), bench_loadavg());
    printf("%-24s", "workload");
    for (int k = 0; k < NPARTS; k++) printf(" %10s", part_names[k]);
    printf(" %10s\n", "step");
    static const struct { const char *name; int64_t batch, in, hidden, out; int steps; } mlps[] = {
        {"mlp_512_b64", 64, 512, 512, 512, 100}, {"mlp_784_256_10", 1024, 784, 256, 10, 40},
        {"mlp_bn_dropout", 256, 0, 0, 0, 20}, {"mlp_512_b256", 256, 512, 512, 512, 40}};
    const int q = o.scale < 1 ? 5 : 1; /* --quick: a fifth of the steps */
    ag_scope_begin();
    for (size_t i = 0; i < sizeof mlps / sizeof mlps[0]; i++) {
        char step[64], optim[64];
        snprintf(step, sizeof step, "step/%s", mlps[i].name);
        snprintf(optim, sizeof optim, "optim/%s", mlps[i].name);
        if (!wanted(&o, step) && !wanted(&o, optim)) continue;
        model m[2];
        bool ok = true;
        for (int v = 0; v < 2; v++)
            ok = (mlps[i].in ? mlp_init(&m[v], mlps[i].batch, mlps[i].in, mlps[i].hidden, mlps[i].out, SGD, 0.01)
                             : bn_mlp_init(&m[v], mlps[i].batch)) && ok;
        ok = ok && in_backward(&m[1]);
        if (ok && wanted(&o, step)) parts_run(step, (model *[]){&m[0], &m[1]}, mlps[i].steps / q);
        if (ok && wanted(&o, optim)) optim_run(optim, &m[0], o.scale);
        for (int v = 0; v < 2; v++) model_free(&m[v]);
    }
    ag_scope_end();
    return 0;
}

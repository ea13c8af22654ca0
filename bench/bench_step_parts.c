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
 * gemms/NAME (the ReLU MLPs below 128 rows) times the step's products alone, hot, through the calls
 * agrad makes for them with the run's thread count (ops/matmul.c: the forward as (W·xᵀ)ᵀ by the matmul
 * primitive, linear2's dx and dW by halves of W's rows one a thread on two threads, else dx by sgemm and
 * dW by the primitive, linear1's dW by halves of its rows on two threads, else by the primitive), each
 * against the 1024³ sgemm rate measured between them: the ceiling of the step's fraction of sgemm.
 * Usage: bench_step_parts [--quick] [name-filter[,name-filter...]]: step/NAME times NAME's step by
 * part, optim/NAME the optimizers over NAME's parameters, gemms/NAME its products alone (NAME alone: all).
 */
#define main bench_steps_main
#include "bench_steps.c"
#undef main
#include "core/dnnl_cache.h"
#include "ops/matmul.h"

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

/* ---- the step's products alone -------------------------------------------------------------------- */
typedef struct gemms_ctx {
    int64_t rows, in, hidden, out;
    int threads;
    float *x, *w1, *w2, *h, *dy, *dh, *gw1, *gw2, *t, *p1;
} gemms_ctx;

/* The forward product of one layer as gemm_swapped makes it: t = W·xᵀ ([o, rows], then transposed by
 * the step's pass, not timed here). */
static int gemm_fwd(const gemms_ctx *g, const float *w, const float *x, int64_t in, int64_t o) {
    return !ag__dnnl_matmul(o, in, g->rows, w, in, 1, x, 1, in, g->t, g->rows, NULL, g->threads);
}
static int gemm_fwd1(void *c) { gemms_ctx *g = c; return gemm_fwd(g, g->w1, g->x, g->in, g->hidden); }
static int gemm_fwd2(void *c) { gemms_ctx *g = c; return gemm_fwd(g, g->w2, g->h, g->hidden, g->out); }

/* linear2's dx = dy·W2 [rows, hidden] and dW2 = dyᵀ·h [out, hidden]: by halves of W2's rows, one a
 * thread, dx = P0 + P1, where ag__linear_by_halves says the step does; else in turn, dx by sgemm and
 * dW by the primitive on the run's threads. */
static int gemm_adj2(void *c) {
    gemms_ctx *g = c;
    const int64_t R = g->rows, H = g->hidden, O = g->out;
    if (!ag__linear_by_halves(R, H, O))
        return dnnl_sgemm('N', 'N', R, H, O, 1.0f, g->dy, O, g->w2, H, 0.0f, g->dh, H) != dnnl_success ||
               !ag__dnnl_matmul(O, R, H, g->dy, 1, O, g->h, H, 1, g->gw2, H, NULL, g->threads);
    int bad[2] = {0, 0};
#pragma omp parallel num_threads(2)
    {
        const int k = omp_get_thread_num();
        const int64_t o0 = ag__share_start(O, k, 2), o1 = ag__share_start(O, k + 1, 2);
        bad[k] = !ag__sgemm_1t(false, false, R, H, o1 - o0, g->dy + o0, O, g->w2 + o0 * H, H, false, k ? g->p1 : g->dh, H) ||
                 !ag__dnnl_matmul(o1 - o0, R, H, g->dy + o0, 1, O, g->h, H, 1, g->gw2 + o0 * H, H, NULL, 1);
#pragma omp barrier
        const int64_t n = R * H, i0 = ag__share_start(n / 16, k, 2) * 16, i1 = k ? n : ag__share_start(n / 16, 1, 2) * 16;
        for (int64_t i = i0; i < i1; i++) g->dh[i] += g->p1[i];
    }
    return bad[0] | bad[1];
}

/* linear1's dW1 = dhᵀ·x [hidden, in] (x needs no gradient): by halves of its rows, one a thread, each
 * from its half of dh copied dense (ops/matmul.c dw_halves), where ag__linear_by_halves says the step
 * splits; else by the primitive on the run's threads. */
static int gemm_adj1(void *c) {
    gemms_ctx *g = c;
    const int64_t R = g->rows, H = g->hidden, I = g->in;
    if (!ag__linear_by_halves(R, I, H))
        return !ag__dnnl_matmul(H, R, I, g->dh, 1, H, g->x, I, 1, g->gw1, I, NULL, g->threads);
    int bad[2] = {0, 0};
#pragma omp parallel num_threads(2)
    {
        const int k = omp_get_thread_num();
        const int64_t o0 = ag__share_start(H, k, 2), n = ag__share_start(H, k + 1, 2) - o0;
        float *ph = g->p1 + R * o0; /* p1 holds rows x hidden floats: both halves */
        for (int64_t i = 0; i < R; i++) memcpy(ph + i * n, g->dh + i * H + o0, sizeof(float) * (size_t)n);
        bad[k] = !ag__dnnl_matmul(n, R, I, ph, 1, n, g->x, I, 1, g->gw1 + o0 * I, I, NULL, 1);
    }
    return bad[0] | bad[1];
}

/* The step's five products of an MLP in -> hidden -> out at rows rows, each alone (hot, medians) and
 * their sum, as µs, GFLOP/s and percent of the 1024³ sgemm rate measured right after each (the sum
 * against the best of those rates). */
static void gemms_run(const char *name, int64_t rows, int64_t in, int64_t hidden, int64_t out, double scale) {
    gemms_ctx g = {.rows = rows, .in = in, .hidden = hidden, .out = out, .threads = omp_get_max_threads()};
    float **bufs[] = {&g.x, &g.w1, &g.w2, &g.h, &g.dy, &g.dh, &g.gw1, &g.gw2, &g.t, &g.p1};
    const int64_t sizes[] = {rows * in,   hidden * in,  out * hidden, rows * hidden, rows * out,
                             rows * hidden, hidden * in, out * hidden, rows * (hidden > out ? hidden : out), rows * hidden};
    bool ok = true;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        *bufs[i] = malloc(sizeof(float) * (size_t)sizes[i]);
        ok = ok && *bufs[i];
        for (int64_t j = 0; ok && j < sizes[i]; j++) (*bufs[i])[j] = (float)((j * 7 + (int64_t)i) % 13 - 6) * 0.03f;
    }
    const struct { const char *part; bench_fn fn; double flops; } parts[] = {
        {"x.W1t", gemm_fwd1, 2.0 * rows * in * hidden},
        {"h.W2t", gemm_fwd2, 2.0 * rows * hidden * out},
        {"dh+dW2", gemm_adj2, 4.0 * rows * hidden * out},
        {"dW1", gemm_adj1, 2.0 * rows * in * hidden}};
    double us_sum = 0, flops_sum = 0, best = 0;
    if (ok) bench_sgemm_peak(); /* oneDNN's one-time setup and the first seconds' noise before any figure */
    for (size_t i = 0; ok && i < sizeof parts / sizeof parts[0]; i++) {
        bench_stats s;
        if (bench_measure(parts[i].fn, &g, 0.05, 0.3 * scale, 9, 101, &s)) {
            fprintf(stderr, "%s %s failed\n", name, parts[i].part);
            ok = false;
            break;
        }
        const double peak = bench_sgemm_rate(0.05, 0.2 * scale), gf = parts[i].flops / (s.median * 1e3);
        printf("%-24s %-8s %10.1f us (p10 %.1f, p90 %.1f) %7.1f GFLOP/s, %5.1f%% of sgemm (%.1f)\n", name,
               parts[i].part, s.median, s.p10, s.p90, gf, 100 * gf / peak, peak);
        us_sum += s.median, flops_sum += parts[i].flops;
        if (peak > best) best = peak;
    }
    if (ok) { /* against the best of the rates: one low reading (CPU time just after start-up) would flatter it */
        const double gf = flops_sum / (us_sum * 1e3);
        printf("%-24s %-8s %10.1f us %17s %7.1f GFLOP/s, %5.1f%% of sgemm (best %.1f): the step's ceiling\n", name,
               "all", us_sum, "", gf, 100 * gf / best, best);
    }
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) free(*bufs[i]);
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
        char step[64], optim[64], gemms[64];
        snprintf(step, sizeof step, "step/%s", mlps[i].name);
        snprintf(optim, sizeof optim, "optim/%s", mlps[i].name);
        snprintf(gemms, sizeof gemms, "gemms/%s", mlps[i].name);
        if (mlps[i].in && mlps[i].batch < 128 && wanted(&o, gemms))
            gemms_run(gemms, mlps[i].batch, mlps[i].in, mlps[i].hidden, mlps[i].out, o.scale);
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

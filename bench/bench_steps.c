/*
 * bench_steps.c - whole training steps and small chains, the workloads of the
 * PyTorch baseline (bench/compare_pytorch.py runs the same ones in PyTorch).
 *
 *   tiny_chain      (x*w + b).relu().sum() forward + backward, 8 float32 elements
 *   tanh_sum_4m     tanh(x).sum() forward + backward, 4M elements
 *   mlp_784_256_10  Linear 784->256, ReLU, Linear 256->10, MSE against one-hot
 *                   targets, batch 1024, SGD update
 *   mlp_512_b64     Linear 512->512, ReLU, Linear 512->512, MSE, batch 64, SGD
 *   mlp_4_16_3      Linear 4->16, ReLU, Linear 16->3, MSE, batch 150, Adam
 *
 * Every step runs inside ag_scope_begin/ag_scope_end and zeroes the gradients
 * with ag_zero_grad, as a user's training loop would.  GEMM-bound workloads
 * also print their rate as a fraction of the machine's sgemm rate measured at
 * startup.  Usage: bench_steps [--quick] [--json FILE] [name-filter]
 */
#include <math.h>
#include <omp.h>
#include "agrad/agrad.h"
#include "bench_util.h"
#include "ops/parallel.h"

/* ---- parameters and optimizers ---------------------------------------------------- */
#define MAX_PARAMS 8

typedef struct model {
    int nparams;
    ag_tensor *p[MAX_PARAMS];
    ag_tensor *m[MAX_PARAMS], *v[MAX_PARAMS]; /* Adam moments */
    long t;                                    /* Adam step */
    bool adam;
    double lr;
    ag_tensor *x, *target; /* a fixed batch */
    double flops;          /* GEMM flops of one step */
} model;

static ag_tensor *param(model *m, ag_shape shape, double scale) {
    ag_tensor *t = ag_mul_scalar_(ag_randn(shape, AG_F32), scale);
    ag_requires_grad_(t, true);
    m->p[m->nparams] = t;
    if (m->adam) {
        m->m[m->nparams] = ag_zeros(shape, AG_F32);
        m->v[m->nparams] = ag_zeros(shape, AG_F32);
    }
    m->nparams++;
    return t;
}

/* p -= lr * grad */
static int sgd_step(model *m) {
    ag_no_grad_begin();
    int bad = 0;
    for (int i = 0; i < m->nparams; i++)
        if (!ag_add_(m->p[i], ag_grad(m->p[i]), -m->lr)) bad = 1;
    ag_no_grad_end();
    return bad;
}

/* Adam (β = 0.9, 0.999, ε = 1e-8) written with agrad's elementwise ops. */
static int adam_step(model *m) {
    const double b1 = 0.9, b2 = 0.999, eps = 1e-8;
    m->t++;
    double bc1 = 1 - pow(b1, (double)m->t), bc2 = 1 - pow(b2, (double)m->t);
    int bad = 0;
    ag_no_grad_begin();
    for (int i = 0; i < m->nparams; i++) {
        ag_tensor *g = ag_grad(m->p[i]);
        ag_add_(ag_mul_scalar_(m->m[i], b1), g, 1 - b1);
        ag_add_(ag_mul_scalar_(m->v[i], b2), ag_mul(g, g), 1 - b2);
        ag_tensor *denom = ag_add_scalar(ag_sqrt(ag_mul_scalar(m->v[i], 1 / bc2)), eps);
        if (!ag_add_(m->p[i], ag_div(m->m[i], denom), -m->lr / bc1)) bad = 1;
    }
    ag_no_grad_end();
    return bad;
}

/* One-hot float targets of random classes. */
static ag_tensor *one_hot_targets(int64_t batch, int64_t classes) {
    ag_tensor *t = ag_zeros(AG_SHAPE(batch, classes), AG_F32);
    float *d = ag_data(t);
    for (int64_t i = 0; i < batch; i++) d[i * classes + (i * 7 + 3) % classes] = 1.0f;
    return t;
}

/* Two linear layers with ReLU between them, MSE loss, then the optimizer. */
static int mlp_step(void *ctx) {
    model *m = ctx;
    ag_scope_begin();
    for (int i = 0; i < m->nparams; i++) ag_zero_grad(m->p[i]);
    ag_tensor *h = ag_relu(ag_linear(m->x, m->p[0], m->p[1]));
    ag_tensor *y = ag_linear(h, m->p[2], m->p[3]);
    ag_tensor *loss = ag_mean(ag_square(ag_sub(y, m->target)));
    int bad = ag_backward(loss) != AG_OK;
    if (!bad) bad = m->adam ? adam_step(m) : sgd_step(m);
    ag_scope_end();
    return bad;
}

static void mlp_init(model *m, int64_t batch, int64_t in, int64_t hidden, int64_t out, bool adam, double lr) {
    memset(m, 0, sizeof *m);
    m->adam = adam;
    m->lr = lr;
    ag_manual_seed(42);
    param(m, AG_SHAPE(hidden, in), 1 / sqrt((double)in));
    param(m, AG_SHAPE(hidden), 0.01);
    param(m, AG_SHAPE(out, hidden), 1 / sqrt((double)hidden));
    param(m, AG_SHAPE(out), 0.01);
    m->x = ag_randn(AG_SHAPE(batch, in), AG_F32);
    m->target = one_hot_targets(batch, out);
    /* forward 2·B·(in·h + h·out); backward dW1, dW2, dX2 (the input needs no gradient) */
    double l1 = 2.0 * (double)(batch * in * hidden), l2 = 2.0 * (double)(batch * hidden * out);
    m->flops = 2 * l1 + 3 * l2;
}

static void model_free(model *m) {
    for (int i = 0; i < m->nparams; i++) {
        ag_release(m->p[i]);
        ag_release(m->m[i]);
        ag_release(m->v[i]);
    }
    ag_release(m->x);
    ag_release(m->target);
}

/* ---- chains ------------------------------------------------------------------------------ */
typedef struct chain {
    ag_tensor *x, *w, *b;
} chain;

static int tiny_chain(void *ctx) {
    chain *c = ctx;
    ag_scope_begin();
    ag_zero_grad(c->x);
    ag_zero_grad(c->w);
    ag_zero_grad(c->b);
    ag_tensor *loss = ag_sum(ag_relu(ag_add(ag_mul(c->x, c->w), c->b)));
    int bad = ag_backward(loss) != AG_OK;
    ag_scope_end();
    return bad;
}

static int tanh_sum(void *ctx) {
    chain *c = ctx;
    ag_scope_begin();
    ag_zero_grad(c->x);
    int bad = ag_backward(ag_sum(ag_tanh(c->x))) != AG_OK;
    ag_scope_end();
    return bad;
}

static ag_tensor *leaf(int64_t n) { return ag_requires_grad_(ag_randn(AG_SHAPE(n), AG_F32), true); }

/* ---- driver ---------------------------------------------------------------------------------- */
typedef struct report {
    FILE *json;
    double peak;   /* sgemm GFLOP/s */
    int threads;
    double scale;
} report;

static void run(report *r, const char *name, bench_fn fn, void *ctx, double flops, double bytes, double budget) {
    bench_stats st;
    if (bench_measure(fn, ctx, 0.1 * r->scale + 0.02, budget * r->scale, 7, 201, &st)) {
        printf("%-16s FAILED: %s\n", name, ag_last_error());
        return;
    }
    double gflops = flops > 0 ? flops / (st.median * 1e-6) / 1e9 : 0;
    double gbs = bytes > 0 ? bytes / (st.median * 1e-6) / 1e9 : 0;
    char extra[64] = "";
    if (gflops > 0) snprintf(extra, sizeof extra, "%7.1f GFLOP/s  %4.0f%% of sgemm", gflops, 100 * gflops / r->peak);
    else if (gbs > 0) snprintf(extra, sizeof extra, "%7.2f GB/s", gbs);
    printf("%-16s %12.3f %12.3f %12.3f %6d   %s\n", name, st.median, st.p10, st.p90, st.samples, extra);
    fflush(stdout);
    if (r->json) {
        fprintf(r->json,
                "{\"suite\":\"steps\",\"name\":\"%s\",\"backend\":\"%s\",\"threads\":%d,\"median_us\":%.4f,\"p10_us\":%.4f,\"p90_us\":%.4f,"
                "\"samples\":%d,\"calls\":%ld",
                name, ag__backend == AG_BACKEND_REFERENCE ? "reference" : "default", r->threads, st.median, st.p10,
                st.p90, st.samples, st.calls);
        if (gflops > 0) fprintf(r->json, ",\"gflops\":%.2f,\"sgemm_fraction\":%.4f", gflops, gflops / r->peak);
        if (gbs > 0) fprintf(r->json, ",\"gbytes_per_s\":%.3f", gbs);
        fprintf(r->json, "}\n");
    }
}

static bool wanted(const bench_opts *o, const char *name) { return !o->filter || strstr(name, o->filter); }

int main(int argc, char **argv) {
    bench_opts o;
    if (bench_parse(argc, argv, &o, "[--quick] [--reference] [--json FILE] [name-filter]")) return 2;
    if (o.reference) ag__backend = AG_BACKEND_REFERENCE;
    report r = {NULL, 0, omp_get_max_threads(), o.scale};
    if (o.json && !(r.json = fopen(o.json, "w"))) {
        perror(o.json);
        return 2;
    }
    r.peak = bench_sgemm_peak();
    printf("agrad bench_steps: %d threads%s, sgemm 1024^3 peak %.1f GFLOP/s\n", r.threads,
           o.reference ? " (reference loops)" : "", r.peak);
    printf("%-16s %12s %12s %12s %6s\n", "workload", "median us", "p10 us", "p90 us", "n");

    if (wanted(&o, "tiny_chain")) {
        chain c = {leaf(8), leaf(8), leaf(8)};
        run(&r, "tiny_chain", tiny_chain, &c, 0, 0, 1.0);
        ag_release(c.x), ag_release(c.w), ag_release(c.b);
    }
    if (wanted(&o, "tanh_sum_4m")) {
        int64_t n = (int64_t)1 << 22;
        chain c = {leaf(n), NULL, NULL};
        /* forward reads x, writes y; sum reads y; backward reads y, dy (broadcast), writes dx */
        run(&r, "tanh_sum_4m", tanh_sum, &c, 0, 4.0 * 5 * (double)n, 1.5);
        ag_release(c.x);
    }
    model m;
    if (wanted(&o, "mlp_784_256_10")) {
        mlp_init(&m, 1024, 784, 256, 10, false, 0.01);
        run(&r, "mlp_784_256_10", mlp_step, &m, m.flops, 0, 2.0);
        model_free(&m);
    }
    if (wanted(&o, "mlp_512_b64")) {
        mlp_init(&m, 64, 512, 512, 512, false, 0.01);
        run(&r, "mlp_512_b64", mlp_step, &m, m.flops, 0, 1.0);
        model_free(&m);
    }
    if (wanted(&o, "mlp_4_16_3")) {
        mlp_init(&m, 150, 4, 16, 3, true, 1e-3);
        run(&r, "mlp_4_16_3", mlp_step, &m, 0, 0, 1.0);
        model_free(&m);
    }
    double rss = bench_peak_rss_mib();
    printf("peak RSS %.1f MiB, live tensors at exit %ld\n", rss, ag_live_tensors());
    if (r.json) {
        fprintf(r.json, "{\"suite\":\"steps\",\"name\":\"_process\",\"threads\":%d,\"sgemm_peak_gflops\":%.2f,"
                        "\"peak_rss_mib\":%.1f}\n", r.threads, r.peak, rss);
        fclose(r.json);
    }
    return ag_live_tensors() != 0;
}

/*
 * bench_cdist_parts.c - where the time of bench_steps.c's cdist_1k step goes
 * (cdist(x1, x2).sum() forward + backward, [1024, 64] each, p = 2, the matrix form of
 * ops/distance.c): the step, its forward, and each GEMM alone at its shape through the path
 * agrad takes (the ceiling): the forward's a·bᵀ in blocks of 128 rows by ag__sgemm_1t, runs of
 * blocks a thread (dist_blocks; the whole product by ag__batched_gemm, oneDNN's matmul primitive,
 * for comparison), the adjoint's 16 blocks of 64 rows of h·b and aᵀ·h by ag__sgemm_1t, runs of
 * tasks a thread as ratio_blocks runs them (and with h's rows 4 KiB apart, as before session 20).
 * The non-GEMM parts are the differences (forward less its product; the backward, step less
 * forward, less its products).
 * µs per call: the median of bench_measure's samples on the benchmark clock (BENCH_CLOCK=cpu:
 * CPU time of all threads), with the rate of each product against the 1024³ sgemm's (bench_util.h
 * bench_sgemm_rate, the rate bench_steps and agrad-bench divide by).
 * Usage: bench_cdist_parts [--quick] [--steps=S] [threads]   (threads: ag_set_num_threads, default all;
 * --steps=S: only the step, for S seconds, for perf)
 */
#include <omp.h>
#include "agrad/agrad.h"
#include "bench_util.h"
#include "ops/matmul.h"

#define P 1024
#define R 1024
#define M 64
#define BLOCK 64 /* ops/distance.c's COL_BLOCK */
#define TASKS 4  /* ops/distance.c's GROUPS_MAX parts of P / BLOCK blocks */

typedef struct ctx {
    ag_tensor *x1, *x2, *y;
    float *h, *ga, *parts; /* a block of h per thread; da; the parts of dbᵀ */
} ctx;

static int step(void *p) {
    ctx *c = p;
    ag_scope_begin();
    ag_zero_grad(c->x1);
    ag_zero_grad(c->x2);
    int bad = ag_backward(ag_sum(ag_cdist(c->x1, c->x2, 2))) != AG_OK;
    ag_scope_end();
    return bad;
}

static int forward(void *p) {
    ctx *c = p;
    ag_scope_begin();
    int bad = !ag_sum(ag_cdist(c->x1, c->x2, 2));
    ag_scope_end();
    return bad;
}

static int forward_nograd(void *p) {
    ctx *c = p;
    ag_scope_begin();
    bool was = ag_set_grad_enabled(false);
    int bad = !ag_cdist(c->x1, c->x2, 2);
    ag_set_grad_enabled(was);
    ag_scope_end();
    return bad;
}

static int fwd_gemm(void *p) {
    ctx *c = p;
    return ag__batched_gemm(c->y, c->x1, false, c->x2, true) != AG_OK;
}

/* The adjoint's products as ratio_blocks runs them: TASKS tasks of P / BLOCK / TASKS blocks over
 * the threads, each block's h·b into da's rows and aᵀ·h added into the task's part of dbᵀ, h's
 * and the parts' rows ld_pad floats longer than R (16: ops/distance.c's block_ld; 0: rows 4 KiB
 * apart, as before session 20). */
static int ld_pad;
static int bwd_gemms(void *p) {
    ctx *c = p;
    const int nt = ag_get_num_threads();
    const int64_t ld = R + ld_pad;
    const float *a = (const float *)ag__ptr(c->x1), *b = (const float *)ag__ptr(c->x2);
    int failed = 0;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1) reduction(| : failed)
    for (int t = 0; t < TASKS; t++) {
        float *hb = c->h + (size_t)omp_get_thread_num() * BLOCK * ld;
        const int per = P / BLOCK / TASKS;
        for (int k = t * per; k < (t + 1) * per; k++) {
            const int64_t i0 = (int64_t)k * BLOCK;
            failed |= !ag__sgemm_1t(false, false, BLOCK, M, R, hb, ld, b, M, false, c->ga + i0 * M, M);
            failed |= !ag__sgemm_1t(true, false, M, R, BLOCK, a + i0 * M, M, hb, ld, k > t * per,
                                    c->parts + (size_t)t * M * ld, ld);
        }
    }
    return failed;
}

/* The forward's product in blocks of fwd_rows rows of a, runs of blocks a thread, each by
 * ag__sgemm_1t (ops/distance.c's dist_blocks without its norms and distances). */
static int fwd_rows = 128;
static int fwd_blocked(void *p) {
    ctx *c = p;
    const int nt = ag_get_num_threads(), blocks = P / fwd_rows;
    const float *a = (const float *)ag__ptr(c->x1), *b = (const float *)ag__ptr(c->x2);
    float *y = (float *)ag__ptr(c->y);
    int failed = 0;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1) reduction(| : failed)
    for (int k = 0; k < blocks; k++)
        failed |= !ag__sgemm_1t(false, true, fwd_rows, R, M, a + (size_t)k * fwd_rows * M, M, b, M, false,
                                y + (size_t)k * fwd_rows * R, R);
    return failed;
}

static double report(const char *name, bench_fn fn, ctx *c, double flops, double peak, double budget) {
    bench_stats s;
    if (bench_measure(fn, c, 0.2, budget, 5, 200, &s)) {
        printf("%-22s failed\n", name);
        return 0;
    }
    printf("%-22s %10.1f  (p10 %.1f, p90 %.1f, n %d)", name, s.median, s.p10, s.p90, s.samples);
    if (flops > 0) printf("  %6.1f GFLOP/s, %3.0f%% of sgemm", flops / s.median * 1e-3, peak > 0 ? flops / s.median * 1e-3 / peak * 100 : 0);
    printf("\n");
    return s.median;
}

int main(int argc, char **argv) {
    double budget = 2.0, steps_s = 0;
    int threads = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) budget = 0.6;
        else if (!strncmp(argv[i], "--steps=", 8)) steps_s = atof(argv[i] + 8);
        else threads = atoi(argv[i]);
    }
    if (threads > 0) ag_set_num_threads(threads);
    ag_manual_seed(7);
    ctx c = {0};
    c.x1 = ag_requires_grad_(ag_randn(AG_SHAPE(P, M), AG_F32), true);
    c.x2 = ag_requires_grad_(ag_randn(AG_SHAPE(R, M), AG_F32), true);
    c.y = ag_empty(AG_SHAPE(P, R), AG_F32);
    c.h = ag__alloc_n((int64_t)BLOCK * (R + 64) * ag_get_num_threads(), 4);
    c.ga = ag__alloc_n((int64_t)P * M, 4);
    c.parts = ag__alloc_n((int64_t)TASKS * M * (R + 64), 4);
    if (!c.x1 || !c.x2 || !c.y || !c.h || !c.ga || !c.parts) return 1;
    for (int64_t i = 0; i < (int64_t)BLOCK * (R + 64) * ag_get_num_threads(); i++) c.h[i] = (float)(i % 7) * 0.25f;
    const double mm = 2.0 * P * R * M;
    if (steps_s > 0) { /* --steps=S: the step alone for S seconds (for perf) */
        const double t0 = bench_now();
        while (bench_now() - t0 < steps_s)
            if (step(&c)) return 1;
        return 0;
    }
    printf("bench_cdist_parts: %d threads, load average %.2f\n", ag_get_num_threads(), bench_loadavg());
    const double peak = bench_sgemm_rate(0.2, budget); /* GFLOP/s */
    printf("%-22s %6.1f GFLOP/s\n", "sgemm 1024^3", peak);
    const double st = report("step", step, &c, 3 * mm, peak, budget);
    const double fw = report("forward (+ sum)", forward, &c, mm, peak, budget);
    const double fn = report("forward, no grad", forward_nograd, &c, mm, peak, budget);
    fwd_rows = 128;
    const double fg = report("  a.bT by 128-row blocks", fwd_blocked, &c, mm, peak, budget);
    report("  a.bT whole (primitive)", fwd_gemm, &c, mm, peak, budget);
    ld_pad = 16;
    const double bg = report("  bwd products alone", bwd_gemms, &c, 2 * mm, peak, budget);
    ld_pad = 0;
    report("  bwd products, rows 4 KiB apart", bwd_gemms, &c, 2 * mm, peak, budget);
    printf("forward less its product %.1f; backward (step - forward) %.1f, less its products %.1f; "
           "products %.1f = %.0f%% of the step\n",
           fn - fg, st - fw, st - fw - bg, fg + bg, (fg + bg) / st * 100);
    ag__free(c.h);
    ag__free(c.ga);
    ag__free(c.parts);
    ag_release(c.x1), ag_release(c.x2), ag_release(c.y);
    return 0;
}

/*
 * bench_ops.c - every registered op, timed from the registry.
 *
 * For each op with a test call (ag__op_at), at three sizes - its first
 * registered input shapes ("small"), and those shapes scaled up until the
 * largest input has 2^16 ("medium") and 2^22 ("large") elements - it times the
 * forward pass alone (inputs not requiring grad, so nothing is recorded) and
 * forward + backward (inputs requiring grad, a fixed upstream gradient, inside
 * a scope, gradients zeroed), float32.  It prints µs per call (median, p10,
 * p90 of repeated samples after a warm-up), GB/s of the forward's inputs and
 * output, and for matmul and linear GFLOP/s and the fraction of the machine's
 * sgemm rate measured at startup.  Adding an op to the registry adds it here.
 *
 * Usage: bench_ops [--quick] [--json FILE] [op-name-filter]
 */
#include <omp.h>
#include "agrad/agrad.h"
#include "bench_util.h"
#include "ops/parallel.h"
#include "op_cases.h"

typedef struct op_run {
    const ag_op *op;
    int n;
    ag_tensor *in[4];
    ag_tensor *gout; /* upstream gradient (fwd+bwd) */
} op_run;

static int forward(void *ctx) {
    op_run *r = ctx;
    ag_scope_begin();
    ag_tensor *y = r->op->call(r->in, r->n, (void *)r->op);
    ag_scope_end();
    return y == NULL;
}

static int forward_backward(void *ctx) {
    op_run *r = ctx;
    ag_scope_begin();
    for (int i = 0; i < r->n; i++) ag_zero_grad(r->in[i]);
    ag_tensor *y = r->op->call(r->in, r->n, (void *)r->op);
    int bad = !y || ag_backward_ex(y, r->gout, false) != AG_OK;
    ag_scope_end();
    return bad;
}

/* Floating-point operations of one forward call, for the GEMM-bound ops (0: not one). */
static double gemm_flops(const ag_op *op, const ag_op_case *c) {
    const ag_shape *a = &c->shape[0], *b = &c->shape[1];
    if (strcmp(op->name, "matmul") == 0 && a->ndim >= 2 && b->ndim >= 2) {
        double batch = 1;
        for (int d = 0; d < a->ndim - 2; d++) batch *= (double)a->dim[d];
        double bb = 1;
        for (int d = 0; d < b->ndim - 2; d++) bb *= (double)b->dim[d];
        if (bb > batch) batch = bb;
        return 2 * batch * (double)a->dim[a->ndim - 2] * (double)a->dim[a->ndim - 1] * (double)b->dim[b->ndim - 1];
    }
    if (strcmp(op->name, "linear") == 0 && b->ndim == 2)
        return 2 * (double)ag__numel(a->ndim, a->dim) / (double)b->dim[1] * (double)b->dim[0] * (double)b->dim[1];
    return 0;
}

typedef struct ctx {
    FILE *json;
    double peak, scale;
    int threads;
} ctx;

static void report(ctx *cx, const ag_op *op, const char *size, const char *shapes, const char *mode,
                   const bench_stats *st, double bytes, double flops) {
    double gbs = bytes > 0 ? bytes / (st->median * 1e-6) / 1e9 : 0;
    double gf = flops > 0 ? flops / (st->median * 1e-6) / 1e9 : 0;
    char extra[80] = "";
    if (gf > 0) snprintf(extra, sizeof extra, "%8.1f GFLOP/s %4.0f%% sgemm", gf, 100 * gf / cx->peak);
    else if (gbs > 0) snprintf(extra, sizeof extra, "%8.2f GB/s", gbs);
    printf("%-20s %-6s %-8s %11.2f %11.2f %11.2f  %-28s %s\n", op->name, size, mode, st->median, st->p10, st->p90, extra,
           shapes);
    fflush(stdout);
    if (!cx->json) return;
    fprintf(cx->json,
            "{\"suite\":\"ops\",\"op\":\"%s\",\"size\":\"%s\",\"mode\":\"%s\",\"shapes\":\"%s\",\"backend\":\"%s\","
            "\"threads\":%d,"
            "\"median_us\":%.4f,\"p10_us\":%.4f,\"p90_us\":%.4f,\"samples\":%d",
            op->name, size, mode, shapes, ag__backend == AG_BACKEND_REFERENCE ? "reference" : "default", cx->threads,
            st->median, st->p10, st->p90, st->samples);
    if (gbs > 0) fprintf(cx->json, ",\"gbytes_per_s\":%.3f", gbs);
    if (gf > 0) fprintf(cx->json, ",\"gflops\":%.2f,\"sgemm_fraction\":%.4f", gf, gf / cx->peak);
    fprintf(cx->json, "}\n");
}

static void bench_op(ctx *cx, const ag_op *op, const char *size, int64_t target) {
    ag_op_case c;
    if (!opc_case_for(op, target, &c)) return;
    char shapes[256] = "";
    for (int i = 0; i < c.n; i++) {
        char s[AG_SHAPE_STR];
        size_t len = strlen(shapes);
        snprintf(shapes + len, sizeof shapes - len, "%s%s", i ? " " : "", ag__shape_str(s, c.shape[i].ndim, c.shape[i].dim));
    }
    op_run r = {op, c.n, {NULL}, NULL};
    ag_manual_seed(1);
    double bytes = 0;
    for (int i = 0; i < c.n; i++) {
        r.in[i] = ag_keep(opc_input(&c.shape[i], op->domain, false, AG_F32));
        bytes += 4.0 * (double)ag_numel(r.in[i]);
    }
    ag_tensor *y = op->call(r.in, r.n, (void *)op);
    if (!y) {
        printf("%-20s %-6s skipped: %s\n", op->name, size, ag_last_error());
        ag_clear_error();
    } else {
        bytes += (double)ag_numel(y) * (double)ag_dtype_size(ag_dtype_of(y));
        double flops = gemm_flops(op, &c);
        /* Slow calls (large GEMMs) get fewer samples. */
        double budget = 0.25 * cx->scale, warm = 0.05 * cx->scale;
        bench_stats st;
        if (bench_measure(forward, &r, warm, budget, 3, 51, &st) == 0)
            report(cx, op, size, shapes, "fwd", &st, bytes, flops);
        if (op->backward && ag_dtype_of(y) == AG_F32) {
            ag_shape ys = ag_shape_of(y);
            r.gout = opc_input(&ys, AG_DOMAIN_ANY, false, AG_F32);
            for (int i = 0; i < c.n; i++) ag_requires_grad_(r.in[i], true);
            /* forward + backward of a GEMM op: three products when every input needs a gradient */
            if (bench_measure(forward_backward, &r, warm, budget, 3, 51, &st) == 0)
                report(cx, op, size, shapes, "fwd+bwd", &st, 0, 3 * flops);
            else {
                printf("%-20s %-6s fwd+bwd failed: %s\n", op->name, size, ag_last_error());
                ag_clear_error();
            }
        }
    }
    for (int i = 0; i < c.n; i++) ag_release(r.in[i]);
}

int main(int argc, char **argv) {
    bench_opts o;
    if (bench_parse(argc, argv, &o, "[--quick] [--reference] [--json FILE] [op-name-filter]")) return 2;
    if (o.reference) ag__backend = AG_BACKEND_REFERENCE;
    ctx cx = {NULL, 0, o.scale, omp_get_max_threads()};
    if (o.json && !(cx.json = fopen(o.json, "w"))) {
        perror(o.json);
        return 2;
    }
    cx.peak = bench_sgemm_peak();
    printf("agrad bench_ops: %d threads%s, sgemm 1024^3 peak %.1f GFLOP/s, load average %.2f, float32, µs per call\n",
           cx.threads, o.reference ? " (reference loops)" : "", cx.peak, bench_loadavg());
    printf("%-20s %-6s %-8s %11s %11s %11s  %-28s %s\n", "op", "size", "mode", "median", "p10", "p90", "rate", "input shapes");
    const ag_op *op;
    int n = 0;
    for (int i = 0; (op = ag__op_at(i)); i++) {
        if (!op->call || (o.filter && !strstr(op->name, o.filter))) continue;
        ag_scope_begin(); /* the upstream gradients and a failed call's leftovers */
        bench_op(&cx, op, "small", 1);
        bench_op(&cx, op, "medium", (int64_t)1 << 16);
        bench_op(&cx, op, "large", (int64_t)1 << 22);
        ag_scope_end();
        n++;
    }
    double rss = bench_peak_rss_mib();
    printf("%d ops, peak RSS %.1f MiB, live tensors at exit %ld\n", n, rss, ag_live_tensors());
    if (cx.json) {
        fprintf(cx.json,
                "{\"suite\":\"ops\",\"op\":\"_process\",\"threads\":%d,\"sgemm_peak_gflops\":%.2f,\"peak_rss_mib\":%.1f,"
                "\"loadavg\":%.2f}\n",
                cx.threads, cx.peak, rss, bench_loadavg());
        fclose(cx.json);
    }
    return ag_live_tensors() != 0;
}

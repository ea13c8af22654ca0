/*
 * bench_ops.c - every registered op, timed from the registry.
 *
 * For each registered op (ag__op_at), called through its test row
 * (test/cases/), at three sizes - the row's first input shapes ("small"), and
 * those shapes scaled up until the largest input has 2^16 ("medium") and 2^22
 * ("large") elements - it times the forward pass alone (inputs not requiring grad, so nothing is recorded) and
 * forward + backward (inputs requiring grad, a fixed upstream gradient, inside
 * a scope, gradients zeroed), float32; a row's index or mask (its aux) is made
 * before timing, with the inputs.  It prints µs per call (median, p10,
 * p90 of repeated samples after a warm-up), GB/s of the forward's inputs and
 * output, and for matmul and linear GFLOP/s and the fraction of the machine's
 * sgemm rate measured at startup.  Adding an op to the registry adds it here.
 *
 * At the small size, where overhead dominates, it also splits the time, all
 * measured (µs per call, blank where a part cannot be measured):
 *   - kernel: the work itself, timed by calling it directly on the op's
 *     inputs - the oneDNN primitive the forward executed (ag__dnnl_exec with
 *     the key the op looked up), or, when the forward ran no primitive, the C
 *     loop of a unary or binary op on contiguous inputs (ops/kernels.h);
 *   - lookup: a cache hit of ag__dnnl_get with that key (oneDNN only);
 *   - dispatch: forward - lookup - kernel (checks, allocation, the scope);
 *   - record: forward with inputs requiring grad (graph built, released at
 *     scope end, no backward) - forward;
 *   - backward: forward+backward - forward with recording.
 * So fwd = dispatch + lookup + kernel and fwd+bwd = fwd + record + backward.
 *
 * Usage: bench_ops [--quick] [--reference | --accel] [--json FILE] [op-name-filter]
 */
#include <math.h>
#include <omp.h>
#include "agrad/agrad.h"
#include "bench_util.h"
#include "core/dnnl_cache.h"
#include "ops/kernels.h"
#include "core/parallel.h"
#include "test/cases/op_cases.h"
#include "ops/registry.h"

typedef struct op_run {
    const ag_op *op;
    const ag_op_test *row;
    int n;
    ag_tensor *in[4];
    ag_tensor *aux;  /* the row's index or mask, made before timing (NULL for rows without one) */
    ag_tensor *gout; /* upstream gradient (fwd+bwd) */
} op_run;

static int forward(void *ctx) {
    op_run *r = ctx;
    ag_scope_begin();
    ag_tensor *y = ag_test_call_aux(r->row, r->in, r->n, r->aux);
    ag_scope_end();
    return y == NULL;
}

static int forward_backward(void *ctx) {
    op_run *r = ctx;
    ag_scope_begin();
    for (int i = 0; i < r->n; i++) ag_zero_grad(r->in[i]);
    ag_tensor *y = ag_test_call_aux(r->row, r->in, r->n, r->aux);
    int bad = !y || ag_backward_ex(y, r->gout, false) != AG_OK;
    ag_scope_end();
    return bad;
}


/* ---- the small-size split ------------------------------------------------------------------- */
/* The extra columns of a small-size row, in µs (NAN: blank). */
enum { DISPATCH, LOOKUP, KERNEL, RECORD, BACKWARD, NSPLIT };
static const char *const split_name[NSPLIT] = {"dispatch", "lookup", "kernel", "record", "backward"};
typedef struct split {
    double us[NSPLIT];
    const char *path; /* where the kernel ran: "onednn", "c", or NULL if not measured */
} split;

static const split no_split = {{NAN, NAN, NAN, NAN, NAN}, NULL};

/* A cached primitive with the key an op looked it up with, and buffers for its arguments. */
typedef struct prim_run {
    ag_dnnl_key key;
    ag_dnnl_prim *p;
    void *data[AG_DNNL_MAX_ARGS];
} prim_run;

/* A make function that makes nothing: the lookups timed here must hit (they follow the
 * op's own; a miss would leave a failure cached for the key, and the timing stops). */
static dnnl_status_t refuse_make(const ag_dnnl_key *key, dnnl_engine_t engine, ag_dnnl_prim *out) {
    (void)key, (void)engine, (void)out;
    return dnnl_unimplemented;
}

static int prim_lookup(void *ctx) {
    prim_run *q = ctx;
    return ag__dnnl_get(&q->key, refuse_make) != q->p;
}

static int prim_exec(void *ctx) {
    prim_run *q = ctx;
    return !ag__dnnl_exec(q->p, &q->key, q->data);
}

/* Times the lookup and execution of primitive p (key) into sp; its arguments get
 * buffers of their memory descriptors' sizes, filled with 0.5. */
static void time_primitive(ag_dnnl_prim *p, const ag_dnnl_key *key, double scale, split *sp) {
    prim_run q = {*key, p, {NULL}};
    bool ok = true;
    for (int i = 0; i < p->nargs && ok; i++) {
        const dnnl_memory_desc_t *md;
        size_t n = 0;
        if (dnnl_memory_get_memory_desc(p->args[i].memory, &md) == dnnl_success) n = dnnl_memory_desc_get_size(md);
        float *b = (q.data[i] = malloc(n ? n : 1));
        ok = b != NULL;
        for (size_t k = 0; ok && k < n / sizeof(float); k++) b[k] = 0.5f;
    }
    bench_stats st;
    if (ok && bench_measure(prim_lookup, &q, 0.02 * scale, 0.1 * scale, 3, 51, &st) == 0) sp->us[LOOKUP] = st.median;
    if (ok && bench_measure(prim_exec, &q, 0.02 * scale, 0.1 * scale, 3, 51, &st) == 0) sp->us[KERNEL] = st.median;
    sp->path = isnan(sp->us[KERNEL]) ? NULL : "onednn";
    for (int i = 0; i < p->nargs; i++) free(q.data[i]);
}

/* A C elementwise loop with its operands (output first). */
typedef struct loop_run {
    ag_inner_fn fn;
    void *ctx;
    char *p[3];
    int64_t s[3], n;
} loop_run;

static int loop_call(void *ctx) {
    loop_run *l = ctx;
    l->fn(l->p, l->s, l->n, l->ctx);
    return 0;
}

/* Times the C loop a float32 unary or binary op runs when its inputs are contiguous
 * with the output's shape and it stays on one thread; leaves sp alone otherwise. */
static void time_c_loop(const op_run *r, const ag_tensor *y, double scale, split *sp) {
    ag_attr attr = {.a = r->row->arg[0], .b = r->row->arg[1]};
    loop_run l = {ag__unary_kernel(r->op, AG_F32), &attr, {NULL}, {4, 4, 4}, ag_numel(y)};
    if (!l.fn) l = (loop_run){ag__binary_kernel(r->op, AG_F32), NULL, {NULL}, {4, 4, 4}, ag_numel(y)};
    if (!l.fn || ag_dtype_of(y) != AG_F32 || l.n == 0 || ag__threads_for(l.n) != 1) return;
    for (int i = 0; i < r->n; i++)
        if (!ag__contig(r->in[i]) || !ag__flat_as(r->in[i], y->ndim, y->shape)) return;
    if (!(l.p[0] = malloc(4 * (size_t)l.n))) return;
    for (int i = 0; i < r->n; i++) l.p[1 + i] = ag__ptr(r->in[i]);
    bench_stats st;
    if (bench_measure(loop_call, &l, 0.02 * scale, 0.1 * scale, 3, 51, &st) == 0) {
        sp->us[KERNEL] = st.median;
        sp->path = "c";
    }
    free(l.p[0]);
}

/* Fills the forward's columns of sp (kernel, lookup, dispatch) given the forward's
 * median: one call tells whether the op looks up a oneDNN primitive at this size. */
static void split_forward(const op_run *r, double fwd_us, double scale, split *sp) {
    ag_scope_begin();
    long before = ag__dnnl_lookups();
    ag_tensor *y = ag_test_call_aux(r->row, r->in, r->n, r->aux);
    long lookups = ag__dnnl_lookups() - before;
    ag_dnnl_key key;
    ag_dnnl_prim *p = y && lookups == 1 ? ag__dnnl_last(&key) : NULL;
    if (p) time_primitive(p, &key, scale, sp);
    else if (y && lookups == 0) time_c_loop(r, y, scale, sp);
    ag_scope_end();
    double lookup = isnan(sp->us[LOOKUP]) ? 0 : sp->us[LOOKUP];
    if (!isnan(sp->us[KERNEL])) sp->us[DISPATCH] = fwd_us - lookup - sp->us[KERNEL];
}

typedef struct ctx {
    FILE *json;
    const char *backend; /* "default", "reference" or "accel" */
    double peak, scale;
    int threads;
} ctx;

/* One row: the table line and, with --json, one JSON line; sp's columns (small size) are
 * printed where measured, blank elsewhere. */
static void report(ctx *cx, const ag_op *op, const char *size, const char *shapes, const char *mode,
                   const bench_stats *st, double bytes, double flops, const split *sp) {
    double gbs = bytes > 0 ? bytes / (st->median * 1e-6) / 1e9 : 0;
    double gf = flops > 0 ? flops / (st->median * 1e-6) / 1e9 : 0;
    char extra[80] = "";
    if (gf > 0) snprintf(extra, sizeof extra, "%8.1f GFLOP/s %4.0f%% sgemm", gf, 100 * gf / cx->peak);
    else if (gbs > 0) snprintf(extra, sizeof extra, "%8.2f GB/s", gbs);
    printf("%-20s %-6s %-8s %11.2f %11.2f %11.2f  %-28s", op->name, size, mode, st->median, st->p10, st->p90, extra);
    for (int k = 0; k < NSPLIT; k++)
        if (isnan(sp->us[k])) printf(" %8s", "");
        else printf(" %8.3f", sp->us[k]);
    printf("  %s\n", shapes);
    fflush(stdout);
    if (!cx->json) return;
    fprintf(cx->json,
            "{\"suite\":\"ops\",\"op\":\"%s\",\"size\":\"%s\",\"mode\":\"%s\",\"shapes\":\"%s\",\"backend\":\"%s\","
            "\"threads\":%d,"
            "\"median_us\":%.4f,\"p10_us\":%.4f,\"p90_us\":%.4f,\"samples\":%d",
            op->name, size, mode, shapes, cx->backend, cx->threads, st->median, st->p10, st->p90, st->samples);
    if (gbs > 0) fprintf(cx->json, ",\"gbytes_per_s\":%.3f", gbs);
    if (gf > 0) fprintf(cx->json, ",\"gflops\":%.2f,\"sgemm_fraction\":%.4f", gf, gf / cx->peak);
    for (int k = 0; k < NSPLIT; k++)
        if (!isnan(sp->us[k])) fprintf(cx->json, ",\"%s_us\":%.4f", split_name[k], sp->us[k]);
    if (sp->path) fprintf(cx->json, ",\"kernel_path\":\"%s\"", sp->path);
    fprintf(cx->json, "}\n");
}

static void bench_op(ctx *cx, const ag_op *op, const ag_op_test *row, const char *size, int64_t target) {
    ag_op_case c;
    if (!opc_case_for(row, target, &c)) return;
    bool small = target == 1; /* the registered shapes: split the time */
    char shapes[256] = "";
    for (int i = 0; i < c.n; i++) {
        char s[AG_SHAPE_STR];
        size_t len = strlen(shapes);
        snprintf(shapes + len, sizeof shapes - len, "%s%s", i ? " " : "", ag__shape_str(s, c.shape[i].ndim, c.shape[i].dim));
    }
    op_run r = {op, row, c.n, {NULL}, NULL, NULL};
    ag_manual_seed(1);
    double bytes = 0;
    for (int i = 0; i < c.n; i++) {
        r.in[i] = ag_keep(opc_input(&c.shape[i], row->domain, false, AG_F32));
        bytes += 4.0 * (double)ag_numel(r.in[i]);
    }
    if (row->aux) r.aux = ag_keep(row->aux(r.in, c.n, row)); /* made before timing, as the inputs */
    ag_tensor *y = ag_test_call(row, r.in, r.n);
    if (!y) {
        printf("%-20s %-6s skipped: %s\n", op->name, size, ag_last_error());
        ag_clear_error();
    } else {
        bytes += (double)ag_numel(y) * (double)ag_dtype_size(ag_dtype_of(y));
        double flops = c.n >= 2 ? bench_gemm_flops(op->name, &c.shape[0], &c.shape[1]) : 0;
        /* Slow calls (large GEMMs) get fewer samples. */
        double budget = 0.25 * cx->scale, warm = 0.05 * cx->scale;
        bench_stats fwd = {0}, rec = {0}, st;
        split fsp = no_split, bsp = no_split;
        bool have_fwd = bench_measure(forward, &r, warm, budget, 3, 51, &fwd) == 0;
        if (have_fwd && small) split_forward(&r, fwd.median, cx->scale, &fsp);
        if (have_fwd) report(cx, op, size, shapes, "fwd", &fwd, bytes, flops, &fsp);
        if (op->backward && ag_dtype_of(y) == AG_F32) {
            ag_shape ys = ag_shape_of(y);
            r.gout = opc_input(&ys, AG_DOMAIN_ANY, false, AG_F32);
            for (int i = 0; i < c.n; i++) ag_requires_grad_(r.in[i], true);
            /* forward alone, now recording the graph (released at scope end) */
            bool have_rec = small && have_fwd && bench_measure(forward, &r, warm, budget, 3, 51, &rec) == 0;
            /* forward + backward of a GEMM op: three products when every input needs a gradient */
            if (bench_measure(forward_backward, &r, warm, budget, 3, 51, &st) == 0) {
                if (have_rec) {
                    bsp.us[RECORD] = rec.median - fwd.median;
                    bsp.us[BACKWARD] = st.median - rec.median;
                }
                report(cx, op, size, shapes, "fwd+bwd", &st, 0, 3 * flops, &bsp);
            } else {
                printf("%-20s %-6s fwd+bwd failed: %s\n", op->name, size, ag_last_error());
                ag_clear_error();
            }
        }
    }
    for (int i = 0; i < c.n; i++) ag_release(r.in[i]);
    ag_release(r.aux);
}

int main(int argc, char **argv) {
    bench_opts o;
    if (bench_parse(argc, argv, &o, "[--quick] [--reference | --accel] [--json FILE] [op-name-filter]")) return 2;
    ag__backend = o.backend;
    ctx cx = {NULL, bench_backend_name(o.backend), 0, o.scale, omp_get_max_threads()};
    if (o.json && !(cx.json = fopen(o.json, "w"))) {
        perror(o.json);
        return 2;
    }
    cx.peak = bench_sgemm_peak();
    printf("agrad bench_ops: %d threads, %s backend, sgemm 1024^3 peak %.1f GFLOP/s, load average %.2f, float32, µs per call\n",
           cx.threads, cx.backend, cx.peak, bench_loadavg());
    printf("%-20s %-6s %-8s %11s %11s %11s  %-28s", "op", "size", "mode", "median", "p10", "p90", "rate");
    for (int k = 0; k < NSPLIT; k++) printf(" %8s", split_name[k]);
    printf("  %s\n", "input shapes");
    const ag_op *op;
    int n = 0;
    for (int i = 0; (op = ag__op_at(i)); i++) {
        const ag_op_test *row = ag_test_case_for(op);
        if (!row || (o.filter && !strstr(op->name, o.filter))) continue;
        ag_scope_begin(); /* the upstream gradients and a failed call's leftovers */
        bench_op(&cx, op, row, "small", 1);
        bench_op(&cx, op, row, "medium", (int64_t)1 << 16);
        bench_op(&cx, op, row, "large", (int64_t)1 << 22);
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

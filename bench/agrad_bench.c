/*
 * agrad_bench.c - the installed benchmark program (agrad-bench): one registered
 * op at the shapes, dim, dtype and thread count the user gives, forward and
 * forward + backward, against the machine's own limit: the sgemm rate measured at
 * start-up, or a bandwidth measured with the mode's samples at its working set.
 *
 *   agrad-bench --op NAME [--shape D,D,...]... [--shape2 D,D,...] [--dim D]
 *               [--dtype f32|f64] [--threads N] [--noncontig] [--no-limits] [--quick | --budget S]
 *               [--json FILE]
 *   agrad-bench --list
 *
 * The op is called through its test row (test/cases/: the call every test and
 * bench_ops makes), on inputs drawn from the row's domain; a row's index or mask (the
 * indexing ops', its aux) is made once before timing, not in the timed call.  The k-th --shape is
 * input k's shape (--shape2 sets input 2's); an input without one takes the first
 * --shape, so an elementwise op needs one --shape; with no --shape at all the row's
 * first registered shapes are used.  --dim calls the op along that dim instead of
 * the row's fixed dims; only the ops of dim_ops below take it (others fail).
 * --noncontig stores each input of 2+ dims with its dims reversed and permutes it
 * back (a transposed, non-contiguous view), as the tests' non-contiguous inputs.
 * --list prints one JSON object a line for every op with a test row: its name, its
 * number of inputs and their first registered shapes, the domain they are drawn from,
 * whether it has a backward and whether it takes --dim (bench/sweep_pytorch.py reads it).
 *
 * A timed call is what a user's loop pays: the op (forward + backward: the inputs' grads zeroed, the op,
 * the backward from a ready upstream gradient) inside ag_scope_begin/ag_scope_end, its output, node and
 * gradients taken from and given back to the block cache (no system call or fresh page after the
 * warm-up), its operands warm.  Its kernels are this binary's (linked statically): a small scalar loop's
 * time can move with its place against 64-byte lines (docs/benchmarks.md, "What a call costs").
 * Each mode is timed as bench_ops times it (bench_measure: warm-up, then samples of
 * about a millisecond each, for 0.5 s, 0.1 s with --quick, S seconds with --budget S) and reported with its median, min, max, p10 and p90 in
 * µs per call, and its rate against the limit:
 *   - matmul and linear: GFLOP/s over the dnnl_sgemm rate (1024³, same threads);
 *   - every other op: GB/s of the bytes the forward reads and writes (its inputs and
 *     output; forward + backward adds the upstream gradient and one gradient per
 *     input, a lower bound of the traffic) over the bandwidth of a threaded stream over
 *     those same bytes (its working set, at least STREAM_MIN_BYTES), measured with the
 *     mode (bench_measure_limited: five rounds of its samples, each followed by the
 *     stream's; the best of the five), so data that fits in a cache is held to that
 *     cache's rate, and the rate is the machine's in the mode's own seconds; the read
 *     bandwidth when at most an eighth of the bytes are written (a reduction's
 *     forward), else the copy bandwidth.
 * --no-limits skips measuring those limits (the sgemm rate, the streams): rates are
 * printed without a fraction, and the JSON's limits are 0 (a sweep of many ops runs faster).
 * Before timing it compares the 1-minute load average with the CPUs the process may
 * use (affinity mask, cgroup quota): when the load plus this run's threads exceeds
 * them, the timings are not to be trusted, and it says so on stderr and in the JSON
 * ("loaded": true).
 *
 * Wait policy: unless OMP_WAIT_POLICY is set, it runs with OMP_WAIT_POLICY=passive
 * (OpenMP threads that wait sleep instead of spinning ~3 ms): on a loaded machine a
 * spinning thread holds a CPU its descheduled partner needs, and a 2-thread linear
 * forward took 49 ms instead of 0.19 (docs/benchmarks.md, "Wait policy").  libgomp
 * reads the variable once, when it is loaded, before main runs, so the program sets
 * it and executes itself again (/proc/self/exe; if that fails it goes on with
 * OpenMP's default).  The JSON's
 * "omp_wait_policy" says which policy the run had.  With --json FILE it writes one JSON object (docs/benchmarks.md).
 * Exit status: 0 on success, 1 if the op failed, 2 on a usage error.
 */
#include <math.h>
#include <omp.h>
#include "agrad/agrad.h"
#include "bench_util.h"
#include "core/parallel.h"
#include "ops/registry.h"
#include "test/cases/op_cases.h"

/* ---- the ops that take --dim ------------------------------------------------------------------------ */
typedef ag_tensor *(*dim_call)(ag_tensor *x, int dim);

static ag_tensor *d_softmax(ag_tensor *x, int d) { return ag_softmax(x, d); }
static ag_tensor *d_log_softmax(ag_tensor *x, int d) { return ag_log_softmax(x, d); }
static ag_tensor *d_sum(ag_tensor *x, int d) { return ag_sum_dim(x, d, false); }
static ag_tensor *d_mean(ag_tensor *x, int d) { return ag_mean_dim(x, d, false); }
static ag_tensor *d_prod(ag_tensor *x, int d) { return ag_prod_dim(x, d, false); }
static ag_tensor *d_var(ag_tensor *x, int d) { return ag_var_dims(x, 1, &d, 1, false); }
static ag_tensor *d_std(ag_tensor *x, int d) { return ag_std_dims(x, 1, &d, 1, false); }
static ag_tensor *d_logsumexp(ag_tensor *x, int d) { return ag_logsumexp_dims(x, 1, &d, false); }
static ag_tensor *d_cumsum(ag_tensor *x, int d) { return ag_cumsum(x, d); }
static ag_tensor *d_cumprod(ag_tensor *x, int d) { return ag_cumprod(x, d); }
static ag_tensor *d_logcumsumexp(ag_tensor *x, int d) { return ag_logcumsumexp(x, d); }

static const struct dim_op {
    const char *name; /* the registered name */
    dim_call call;
} dim_ops[] = {
    {"softmax", d_softmax}, {"log_softmax", d_log_softmax}, {"sum", d_sum},         {"mean", d_mean},
    {"prod", d_prod},       {"var", d_var},                 {"std", d_std},         {"logsumexp", d_logsumexp},
    {"cumsum", d_cumsum},   {"cumprod", d_cumprod},         {"logcumsumexp", d_logcumsumexp},
};

static dim_call dim_call_for(const char *name) {
    for (size_t i = 0; i < sizeof dim_ops / sizeof dim_ops[0]; i++)
        if (strcmp(dim_ops[i].name, name) == 0) return dim_ops[i].call;
    return NULL;
}

/* ---- one run ------------------------------------------------------------------------------------------ */
typedef struct run {
    const ag_op_test *row;
    dim_call by_dim; /* non-NULL with --dim */
    int dim, n;
    ag_tensor *in[4];
    ag_tensor *aux; /* the row's index or mask, made before timing (NULL for rows without one) */
    ag_tensor *gout;
} run;

static ag_tensor *call(run *r) {
    return r->by_dim ? r->by_dim(r->in[0], r->dim) : ag_test_call_aux(r->row, r->in, r->n, r->aux);
}

static int forward(void *ctx) {
    run *r = ctx;
    ag_scope_begin();
    ag_tensor *y = call(r);
    ag_scope_end();
    return y == NULL;
}

static int forward_backward(void *ctx) {
    run *r = ctx;
    ag_scope_begin();
    for (int i = 0; i < r->n; i++) ag_zero_grad(r->in[i]);
    ag_tensor *y = call(r);
    int bad = !y || ag_backward_ex(y, r->gout, false) != AG_OK;
    ag_scope_end();
    return bad;
}

static bool floating(ag_tensor *t) { return ag_dtype_of(t) == AG_F32 || ag_dtype_of(t) == AG_F64; }

/* "3,4,5" into s; "" or "scalar" is 0-d.  false on a malformed list. */
static bool parse_shape(const char *text, ag_shape *s) {
    s->ndim = 0;
    if (!*text || strcmp(text, "scalar") == 0) return true;
    const char *p = text;
    for (;;) {
        char *end;
        long long v = strtoll(p, &end, 10);
        if (end == p || v < 0 || s->ndim == AG_MAX_DIMS) return false;
        s->dim[s->ndim++] = (int64_t)v;
        if (*end == 0) return true;
        if (*end != ',') return false;
        p = end + 1;
    }
}

/* The smallest working set a bandwidth limit is measured over (an L1 data cache's): below it a pass's
 * own cost (its memcpy call, the read's loop tail), not its bytes, would set the stream's rate. */
#define STREAM_MIN_BYTES ((size_t)32 << 10)

typedef struct result {
    bool ok;
    bench_stats st;
    double rate;     /* GFLOP/s or GB/s */
    double fraction; /* rate over the limit */
    const char *unit, *limit;
    bench_limit bw;  /* the bandwidth limit (GB/s modes; zeros when unmeasured) */
} result;

/* Times one mode (fn on r, warm_s of warm-up, budget_s of samples) into *res and rates it against its
 * limit (none with measure false): flops > 0 is GEMM-bound, in GFLOP/s over sgemm_gflops; else GB/s of
 * bytes (of which `written` are written) over a stream over those bytes (at least STREAM_MIN_BYTES)
 * measured with the samples (bench_measure_limited, stream_s seconds a round): a read when at most an
 * eighth of the bytes are written, else a copy.  res->ok is false if a call failed. */
static void measure_mode(result *res, bench_fn fn, run *r, double warm_s, double budget_s, double stream_s, double flops,
                         double bytes, double written, bool measure, double sgemm_gflops) {
    const bool reads = 8 * written <= bytes;
    const size_t footprint = bytes > (double)STREAM_MIN_BYTES ? (size_t)bytes : STREAM_MIN_BYTES;
    if (flops > 0 || !measure) res->ok = bench_measure(fn, r, warm_s, budget_s, 5, 201, &res->st) == 0;
    else
        res->ok = bench_measure_limited(fn, r, warm_s, budget_s, 5, 201, footprint, reads ? BENCH_READ : BENCH_COPY,
                                        stream_s, &res->st, &res->bw) == 0;
    if (!res->ok) return;
    const double s = res->st.median * 1e-6;
    const double limit = flops > 0 ? sgemm_gflops : res->bw.best_gbs;
    res->rate = (flops > 0 ? flops : bytes) / s / 1e9;
    res->unit = flops > 0 ? "GFLOP/s" : "GB/s";
    res->limit = limit <= 0 ? "unmeasured" : flops > 0 ? "sgemm" : reads ? "read_bandwidth" : "copy_bandwidth";
    res->fraction = limit > 0 ? res->rate / limit : 0;
}

static void print_result(const char *mode, const result *r) {
    if (!r->ok) return;
    printf("%-8s median %10.2f µs  min %10.2f  max %10.2f  p10 %10.2f  p90 %10.2f  %9.2f %-7s %5.1f%% of %s", mode,
           r->st.median, r->st.min, r->st.max, r->st.p10, r->st.p90, r->rate, r->unit, 100 * r->fraction, r->limit);
    if (r->bw.rounds > 0)
        printf(" (%.1f GB/s at %.2f MiB, best of %d rounds, worst %.1f; %d pass%s a call)", r->bw.best_gbs,
               (double)r->bw.bytes / (1 << 20), r->bw.rounds, r->bw.worst_gbs, r->bw.passes,
               r->bw.passes == 1 ? "" : "es");
    printf("\n");
}

static void json_result(FILE *f, const char *key, const result *r) {
    if (!r->ok) {
        fprintf(f, ",\"%s\":null", key);
        return;
    }
    fprintf(f,
            ",\"%s\":{\"median_us\":%.4f,\"min_us\":%.4f,\"max_us\":%.4f,\"p10_us\":%.4f,\"p90_us\":%.4f,"
            "\"samples\":%d,\"calls\":%ld,\"rate\":%.4f,\"unit\":\"%s\",\"limit\":\"%s\",\"limit_fraction\":%.4f",
            key, r->st.median, r->st.min, r->st.max, r->st.p10, r->st.p90, r->st.samples, r->st.calls, r->rate, r->unit,
            r->limit, r->fraction);
    if (strcmp(r->unit, "GB/s") == 0)
        fprintf(f,
                ",\"bandwidth_gbs\":%.2f,\"bandwidth_min_gbs\":%.2f,\"bandwidth_bytes\":%zu,\"bandwidth_rounds\":%d,"
                "\"bandwidth_passes\":%d",
                r->bw.best_gbs, r->bw.worst_gbs, r->bw.bytes, r->bw.rounds, r->bw.passes);
    fprintf(f, "}");
}

/* OMP_WAIT_POLICY as the run has it; "default" when unset. */
static const char *wait_policy(void) {
    const char *p = getenv("OMP_WAIT_POLICY");
    return p ? p : "default";
}

static const char usage[] = "--op NAME [--shape D,D,...]... [--shape2 D,D,...] [--dim D] [--dtype f32|f64] "
                            "[--threads N] [--noncontig] [--no-limits] [--quick | --budget S] [--json FILE]  |  --list";

static const char *domain_name(ag_domain d) {
    static const char *const names[] = {"any", "positive", "unit", "distinct", "probability", "above_one"};
    return (unsigned)d < sizeof names / sizeof names[0] ? names[d] : "any";
}

/* --list: one JSON object a line for every test row that names a registered op. */
static int list_ops(void) {
    for (int i = 0;; i++) {
        const ag_op_test *row = ag_test_case_at(i);
        if (!row) return 0;
        const ag_op *op = ag__op_find(row->name);
        if (!op) continue;
        const ag_op_case *c = &row->cases[0];
        printf("{\"op\":\"%s\",\"inputs\":%d,\"domain\":\"%s\",\"backward\":%s,\"dim\":%s,\"shapes\":[", row->name,
               c->n, domain_name(row->domain), op->backward ? "true" : "false", dim_call_for(row->name) ? "true" : "false");
        for (int k = 0; k < c->n; k++) {
            printf("%s[", k ? "," : "");
            for (int d = 0; d < c->shape[k].ndim; d++) printf("%s%lld", d ? "," : "", (long long)c->shape[k].dim[d]);
            printf("]");
        }
        printf("]}\n");
    }
}

int main(int argc, char **argv) {
    if (!getenv("OMP_WAIT_POLICY") && setenv("OMP_WAIT_POLICY", "passive", 1) == 0) {
        execv("/proc/self/exe", argv); /* returns only on failure */
        unsetenv("OMP_WAIT_POLICY");
    }
    const char *opname = NULL, *json = NULL, *shape_text[4] = {NULL};
    int nshapes = 0, threads = 0, dim = 0;
    bool have_dim = false, noncontig = false, measure_limits = true;
    double scale = 1;
    ag_dtype dtype = AG_F32;
    for (int i = 1; i < argc; i++) {
        bool more = i + 1 < argc;
        if (strcmp(argv[i], "--op") == 0 && more) opname = argv[++i];
        else if (strcmp(argv[i], "--shape") == 0 && more && nshapes < 4) shape_text[nshapes++] = argv[++i];
        else if (strcmp(argv[i], "--shape2") == 0 && more) {
            shape_text[1] = argv[++i];
            if (nshapes < 2) nshapes = 2;
        } else if (strcmp(argv[i], "--dim") == 0 && more) dim = atoi(argv[++i]), have_dim = true;
        else if (strcmp(argv[i], "--threads") == 0 && more) threads = atoi(argv[++i]);
        else if (strcmp(argv[i], "--json") == 0 && more) json = argv[++i];
        else if (strcmp(argv[i], "--quick") == 0) scale = 0.2;
        else if (strcmp(argv[i], "--budget") == 0 && more) {
            scale = atof(argv[++i]) / 0.5;
            if (!(scale > 0)) return fprintf(stderr, "%s: --budget needs a positive number of seconds\n", argv[0]), 2;
        }
        else if (strcmp(argv[i], "--noncontig") == 0) noncontig = true;
        else if (strcmp(argv[i], "--no-limits") == 0) measure_limits = false;
        else if (strcmp(argv[i], "--list") == 0) return list_ops();
        else if (strcmp(argv[i], "--dtype") == 0 && more) {
            const char *t = argv[++i];
            if (strcmp(t, "f32") == 0 || strcmp(t, "float32") == 0) dtype = AG_F32;
            else if (strcmp(t, "f64") == 0 || strcmp(t, "float64") == 0) dtype = AG_F64;
            else return fprintf(stderr, "%s: unknown --dtype %s (f32 or f64)\n", argv[0], t), 2;
        } else return fprintf(stderr, "usage: %s %s\n", argv[0], usage), 2;
    }
    if (!opname) return fprintf(stderr, "usage: %s %s\n", argv[0], usage), 2;
    const ag_op *op = ag__op_find(opname);
    const ag_op_test *row = op ? ag_test_case_for(op) : NULL;
    if (!row) return fprintf(stderr, "%s: no registered op named %s\n", argv[0], opname), 2;
    dim_call by_dim = NULL;
    if (have_dim && !(by_dim = dim_call_for(opname)))
        return fprintf(stderr, "%s: op %s takes no --dim\n", argv[0], opname), 2;

    /* Input shapes: the user's (missing ones copy the first), else the row's first case. */
    ag_op_case c = row->cases[0];
    if (by_dim) c.n = 1;
    if (nshapes > 0) {
        for (int i = 0; i < c.n; i++) {
            const char *t = i < nshapes && shape_text[i] ? shape_text[i] : shape_text[0];
            if (!parse_shape(t, &c.shape[i])) return fprintf(stderr, "%s: bad shape '%s'\n", argv[0], t), 2;
        }
    }
    if (threads > 0) ag_set_num_threads(threads);
    threads = ag_get_num_threads();

    /* The load before anything of ours runs. */
    int cpus = ag__cpus_available();
    double load = bench_loadavg();
    bool loaded = load >= 0 && load + threads > cpus + 0.5;
    if (loaded)
        fprintf(stderr, "warning: load average %.2f with %d threads on %d CPUs: the machine is busy, timings are not "
                        "to be trusted\n", load, threads, cpus);

    /* The sgemm rate at start-up (1024³, compute-bound: no working set of the op's to match); the
     * bandwidths are measured with each mode's samples (measure_mode). */
    const double sgemm_gflops = measure_limits ? bench_sgemm_peak() : 0;

    char shapes[512] = "";
    run r = {row, by_dim, dim, c.n, {NULL}, NULL, NULL};
    ag_manual_seed(1);
    ag_scope_begin();
    double in_bytes = 0;
    for (int i = 0; i < c.n; i++) {
        char s[AG_SHAPE_STR];
        size_t len = strlen(shapes);
        snprintf(shapes + len, sizeof shapes - len, "%s%s", i ? " " : "", ag__shape_str(s, c.shape[i].ndim, c.shape[i].dim));
        r.in[i] = opc_input(&c.shape[i], row->domain, noncontig, dtype);
        if (r.in[i]) in_bytes += (double)ag_numel(r.in[i]) * (double)ag_dtype_size(dtype);
    }
    /* the row's index or mask made here, untimed, as PyTorch's side gets it ready-made */
    if (!by_dim && row->aux) r.aux = row->aux(r.in, c.n, row);
    ag_tensor *y = call(&r);
    if (!y) {
        fprintf(stderr, "%s: %s failed on %s: %s\n", argv[0], opname, shapes, ag_last_error());
        ag_scope_end();
        return 1;
    }
    double out_bytes = (double)ag_numel(y) * (double)ag_dtype_size(ag_dtype_of(y));
    double flops = c.n >= 2 ? bench_gemm_flops(opname, &c.shape[0], &c.shape[1]) : 0;
    double budget = 0.5 * scale, warm = 0.1 * scale, stream = 0.01 + 0.04 * scale;
    result fwd = {0}, both = {0};
    measure_mode(&fwd, forward, &r, warm, budget, stream, flops, in_bytes + out_bytes, out_bytes, measure_limits,
                 sgemm_gflops);
    bool differentiable = op->backward && floating(y);
    if (differentiable) {
        ag_shape ys = ag_shape_of(y);
        r.gout = opc_input(&ys, AG_DOMAIN_ANY, false, ag_dtype_of(y));
        for (int i = 0; i < c.n; i++)
            if (floating(r.in[i])) ag_requires_grad_(r.in[i], true);
        /* the backward of a product is two more of its size */
        measure_mode(&both, forward_backward, &r, warm, budget, stream, 3 * flops, 2 * in_bytes + 2 * out_bytes,
                     in_bytes + out_bytes, measure_limits, sgemm_gflops);
    }
    const char *err = (!fwd.ok || (differentiable && !both.ok)) ? ag_last_error() : NULL;
    double load_end = bench_loadavg();

    char dim_text[32] = "the test row's dims";
    if (have_dim) snprintf(dim_text, sizeof dim_text, "dim %d", dim);
    printf("agrad-bench %s %s%s, %s, %s, %d threads on %d CPUs, load average %.2f -> %.2f%s\n", opname, shapes,
           noncontig ? " (non-contiguous)" : "", dim_text, dtype == AG_F64 ? "float64" : "float32", threads, cpus, load,
           load_end, loaded ? " (LOADED)" : "");
    printf("OpenMP wait policy %s\n", wait_policy());
    if (measure_limits)
        printf("limits: sgemm %.1f GFLOP/s at start-up; bandwidth: a copy or read over each mode's working set, "
               "measured with its samples (best of %d rounds)\n", sgemm_gflops, BENCH_LIMIT_ROUNDS);
    else printf("limits: not measured (--no-limits)\n");
    print_result("fwd", &fwd);
    print_result("fwd+bwd", &both);
    if (err) fprintf(stderr, "%s: %s failed while timing: %s\n", argv[0], opname, err);

    if (json) {
        FILE *f = fopen(json, "w");
        if (!f) {
            perror(json);
            ag_scope_end();
            return 2;
        }
        fprintf(f, "{\"program\":\"agrad-bench\",\"op\":\"%s\",\"dtype\":\"%s\",\"shapes\":[", opname,
                dtype == AG_F64 ? "float64" : "float32");
        for (int i = 0; i < c.n; i++) {
            fprintf(f, "%s[", i ? "," : "");
            for (int d = 0; d < c.shape[i].ndim; d++) fprintf(f, "%s%lld", d ? "," : "", (long long)c.shape[i].dim[d]);
            fprintf(f, "]");
        }
        fprintf(f, "]");
        fprintf(f, ",\"noncontig\":%s", noncontig ? "true" : "false");
        if (have_dim) fprintf(f, ",\"dim\":%d", dim);
        else fprintf(f, ",\"dim\":null");
        fprintf(f,
                ",\"threads\":%d,\"cpus\":%d,\"loadavg\":%.2f,\"loadavg_end\":%.2f,\"loaded\":%s,"
                "\"limits\":{\"sgemm_gflops\":%.2f},"
                "\"omp_wait_policy\":\"%s\",\"bytes\":%.0f,\"flops\":%.0f",
                threads, cpus, load, load_end, loaded ? "true" : "false", sgemm_gflops, wait_policy(),
                in_bytes + out_bytes, flops);
        json_result(f, "forward", &fwd);
        json_result(f, "forward_backward", &both);
        fprintf(f, "}\n");
        fclose(f);
    }
    ag_scope_end();
    return err ? 1 : 0;
}

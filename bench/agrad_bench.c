/*
 * agrad_bench.c - the installed benchmark program (agrad-bench): one registered
 * op at the shapes, dim, dtype and thread count the user gives, forward and
 * forward + backward, against the machine's own limit measured at startup.
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
 * Each mode is timed as bench_ops times it (bench_measure: warm-up, then samples of
 * about a millisecond each, for 0.5 s, 0.1 s with --quick, S seconds with --budget S) and reported with its median, min, max, p10 and p90 in
 * µs per call, and its rate against the limit:
 *   - matmul and linear: GFLOP/s over the dnnl_sgemm rate (1024³, same threads);
 *   - every other op: GB/s of the bytes the forward reads and writes (its inputs and
 *     output; forward + backward adds the upstream gradient and one gradient per
 *     input, a lower bound of the traffic) over the bandwidth measured at startup
 *     (bench_stream_gbs) - of the caches when those bytes fit in half the L2 caches of
 *     the threads, else of memory; the read bandwidth when at most an eighth of the
 *     bytes are written (a reduction's forward), else the copy bandwidth.
 * --no-limits skips measuring those limits (about a second): rates are printed
 * without a fraction, and the JSON's limits are 0 (a sweep of many ops runs faster).
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

/* The machine's limits (bench_util.h): copy bandwidths for ops that write about what they read, read
 * bandwidths for those that write at most an eighth of it (reductions). */
typedef struct limits {
    double sgemm_gflops, memory_gbs, cache_gbs, memory_read_gbs, cache_read_gbs;
    size_t cache_bytes;
} limits;

typedef struct result {
    bool ok;
    bench_stats st;
    double rate;     /* GFLOP/s or GB/s */
    double fraction; /* rate over the limit */
    const char *unit, *limit;
} result;

/* Rates of one measurement: flops > 0 is GEMM-bound, else bytes (of which written) against bandwidth:
 * the read bandwidth when at most an eighth of them are written, else the copy bandwidth. */
static void rate_of(result *res, double flops, double bytes, double written, const limits *lim) {
    double s = res->st.median * 1e-6;
    if (flops > 0) {
        res->rate = flops / s / 1e9;
        res->unit = "GFLOP/s";
        res->limit = "sgemm";
        res->fraction = lim->sgemm_gflops > 0 ? res->rate / lim->sgemm_gflops : 0;
        if (lim->sgemm_gflops <= 0) res->limit = "unmeasured";
    } else {
        bool fits = bytes <= (double)lim->cache_bytes, reads = 8 * written <= bytes;
        double bw = reads ? (fits ? lim->cache_read_gbs : lim->memory_read_gbs) : fits ? lim->cache_gbs : lim->memory_gbs;
        res->rate = bytes / s / 1e9;
        res->unit = "GB/s";
        res->limit = reads ? (fits ? "cache_read_bandwidth" : "memory_read_bandwidth")
                           : fits ? "cache_bandwidth" : "memory_bandwidth";
        res->fraction = bw > 0 ? res->rate / bw : 0;
        if (bw <= 0) res->limit = "unmeasured";
    }
}

static void print_result(const char *mode, const result *r) {
    if (!r->ok) return;
    printf("%-8s median %10.2f µs  min %10.2f  max %10.2f  p10 %10.2f  p90 %10.2f  %9.2f %-7s %5.1f%% of %s\n", mode,
           r->st.median, r->st.min, r->st.max, r->st.p10, r->st.p90, r->rate, r->unit, 100 * r->fraction, r->limit);
}

static void json_result(FILE *f, const char *key, const result *r) {
    if (!r->ok) {
        fprintf(f, ",\"%s\":null", key);
        return;
    }
    fprintf(f,
            ",\"%s\":{\"median_us\":%.4f,\"min_us\":%.4f,\"max_us\":%.4f,\"p10_us\":%.4f,\"p90_us\":%.4f,"
            "\"samples\":%d,\"calls\":%ld,\"rate\":%.4f,\"unit\":\"%s\",\"limit\":\"%s\",\"limit_fraction\":%.4f}",
            key, r->st.median, r->st.min, r->st.max, r->st.p10, r->st.p90, r->st.samples, r->st.calls, r->rate, r->unit,
            r->limit, r->fraction);
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

    limits lim = {0, 0, 0, 0, 0, bench_cache_bytes(threads)};
    if (measure_limits) {
        lim.sgemm_gflops = bench_sgemm_peak();
        lim.memory_gbs = bench_stream_gbs((size_t)256 << 20, BENCH_COPY);
        lim.cache_gbs = bench_stream_gbs(lim.cache_bytes, BENCH_COPY);
        lim.memory_read_gbs = bench_stream_gbs((size_t)256 << 20, BENCH_READ);
        lim.cache_read_gbs = bench_stream_gbs(lim.cache_bytes, BENCH_READ);
    }

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
    double budget = 0.5 * scale, warm = 0.1 * scale;
    result fwd = {0}, both = {0};
    fwd.ok = bench_measure(forward, &r, warm, budget, 5, 201, &fwd.st) == 0;
    if (fwd.ok) rate_of(&fwd, flops, in_bytes + out_bytes, out_bytes, &lim);
    bool differentiable = op->backward && floating(y);
    if (differentiable) {
        ag_shape ys = ag_shape_of(y);
        r.gout = opc_input(&ys, AG_DOMAIN_ANY, false, ag_dtype_of(y));
        for (int i = 0; i < c.n; i++)
            if (floating(r.in[i])) ag_requires_grad_(r.in[i], true);
        both.ok = bench_measure(forward_backward, &r, warm, budget, 5, 201, &both.st) == 0;
        /* the backward of a product is two more of its size */
        if (both.ok) rate_of(&both, 3 * flops, 2 * in_bytes + 2 * out_bytes, in_bytes + out_bytes, &lim);
    }
    const char *err = (!fwd.ok || (differentiable && !both.ok)) ? ag_last_error() : NULL;
    double load_end = bench_loadavg();

    char dim_text[32] = "the test row's dims";
    if (have_dim) snprintf(dim_text, sizeof dim_text, "dim %d", dim);
    printf("agrad-bench %s %s%s, %s, %s, %d threads on %d CPUs, load average %.2f -> %.2f%s\n", opname, shapes,
           noncontig ? " (non-contiguous)" : "", dim_text, dtype == AG_F64 ? "float64" : "float32", threads, cpus, load,
           load_end, loaded ? " (LOADED)" : "");
    printf("OpenMP wait policy %s\n", wait_policy());
    printf("limits: sgemm %.1f GFLOP/s, memory %.1f GB/s (read %.1f), cache %.1f GB/s (read %.1f; working sets up to "
           "%zu KiB)\n", lim.sgemm_gflops, lim.memory_gbs, lim.memory_read_gbs, lim.cache_gbs, lim.cache_read_gbs,
           lim.cache_bytes >> 10);
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
                "\"limits\":{\"sgemm_gflops\":%.2f,\"memory_gbs\":%.2f,\"cache_gbs\":%.2f,\"memory_read_gbs\":%.2f,"
                "\"cache_read_gbs\":%.2f,\"cache_bytes\":%zu},"
                "\"omp_wait_policy\":\"%s\",\"bytes\":%.0f,\"flops\":%.0f",
                threads, cpus, load, load_end, loaded ? "true" : "false", lim.sgemm_gflops, lim.memory_gbs,
                lim.cache_gbs, lim.memory_read_gbs, lim.cache_read_gbs, lim.cache_bytes, wait_policy(),
                in_bytes + out_bytes, flops);
        json_result(f, "forward", &fwd);
        json_result(f, "forward_backward", &both);
        fprintf(f, "}\n");
        fclose(f);
    }
    ag_scope_end();
    return err ? 1 : 0;
}

/*
 * bench_util.h - timing, statistics and output shared by the benchmark programs.
 *
 * A measurement warms the workload up, then takes repeated samples, each the
 * mean time of a batch of calls sized so that a sample lasts at least about a
 * millisecond, and reports the median and the 10th/90th percentiles of the
 * samples.  Results go to a human table on stdout and, with --json FILE, to
 * one JSON object per line in FILE.
 */
#ifndef AGRAD_BENCH_UTIL_H
#define AGRAD_BENCH_UTIL_H

#include <dnnl.h>
#include <omp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#include "agrad/agrad.h"
#include "core/internal.h"
#include "core/parallel.h"
#include "core/sum.h"

typedef struct bench_stats {
    double median, p10, p90; /* microseconds per call */
    double min, max;         /* the fastest and slowest sample */
    int samples;
    long calls;              /* calls timed in all */
} bench_stats;

/* One call of the workload; returns 0 on success. */
typedef int (*bench_fn)(void *ctx);

/* Seconds on the benchmark clock: wall time, or with BENCH_CLOCK=cpu in the environment
 * the CPU time of the process (all its threads), which on a machine loaded by other work
 * still measures what a one-thread run costs (time spent preempted is not counted). */
static inline double bench_now(void) {
    static int cpu = -1;
    if (cpu < 0) {
        const char *c = getenv("BENCH_CLOCK");
        cpu = c && !strcmp(c, "cpu");
    }
    struct timespec ts;
    clock_gettime(cpu ? CLOCK_PROCESS_CPUTIME_ID : CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static inline int bench_cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Quantile q in [0, 1] of n sorted values, interpolated linearly. */
static inline double bench_quantile(const double *v, int n, double q) {
    if (n == 0) return 0;
    double pos = q * (n - 1);
    int i = (int)pos;
    if (i + 1 >= n) return v[n - 1];
    return v[i] + (pos - i) * (v[i + 1] - v[i]);
}

#define BENCH_MAX_SAMPLES 201

/* Times fn into samples[*n...]: a warm-up of about warm_s seconds (at least 2 calls: after other work
 * the caches hold fn's data again), then samples (each the mean µs of a batch of calls lasting at least
 * ~1 ms) until budget_s seconds have passed or max_new were taken (at least min_new), appended at
 * samples[*n] (*n grows; the caller's array holds *n + max_new); *calls grows by the calls timed.
 * Returns -1 if a call failed, else 0. */
static inline int bench_sample(bench_fn fn, void *ctx, double warm_s, double budget_s, int min_new, int max_new,
                               double *samples, int *n, long *calls) {
    double t0 = bench_now(), one = 0;
    int warm = 0;
    while (warm < 2 || bench_now() - t0 < warm_s) {
        double a = bench_now();
        if (fn(ctx)) return -1;
        one = bench_now() - a;
        warm++;
    }
    /* Batch size: a sample lasts at least ~1 ms. */
    long batch = one > 0 ? (long)(1e-3 / one) + 1 : 1000;
    if (batch > 100000) batch = 100000;
    const int end = *n + max_new, least = *n + min_new;
    double start = bench_now();
    while (*n < end && (*n < least || bench_now() - start < budget_s)) {
        double a = bench_now();
        for (long k = 0; k < batch; k++)
            if (fn(ctx)) return -1;
        samples[(*n)++] = (bench_now() - a) / (double)batch * 1e6;
        *calls += batch;
    }
    return 0;
}

/* *out from n > 0 samples (µs, sorted here) and the calls they timed. */
static inline void bench_stats_of(double *samples, int n, long calls, bench_stats *out) {
    qsort(samples, (size_t)n, sizeof(double), bench_cmp_double);
    out->median = bench_quantile(samples, n, 0.5);
    out->p10 = bench_quantile(samples, n, 0.1);
    out->p90 = bench_quantile(samples, n, 0.9);
    out->min = samples[0];
    out->max = samples[n - 1];
    out->samples = n;
    out->calls = calls;
}

/* Times fn: warm-up of about warm_s seconds (at least 2 calls), then samples until
 * budget_s seconds have passed or max_samples were taken (at least min_samples).
 * Returns -1 if a call failed, else 0 with *out filled. */
static inline int bench_measure(bench_fn fn, void *ctx, double warm_s, double budget_s, int min_samples, int max_samples,
                         bench_stats *out) {
    if (max_samples > BENCH_MAX_SAMPLES) max_samples = BENCH_MAX_SAMPLES;
    double samples[BENCH_MAX_SAMPLES];
    int n = 0;
    long calls = 0;
    if (bench_sample(fn, ctx, warm_s, budget_s, min_samples, max_samples, samples, &n, &calls)) return -1;
    bench_stats_of(samples, n, calls, out);
    return 0;
}

/* ---- a part of a training step: its forward, and its backward by difference ------------------
 * forward(ctx) computes the part's output with recording on, after zero(ctx) (may be NULL) has
 * cleared its gradients; the backward is ag_backward_ex(y, seed) (seed NULL: y is a scalar).
 * The backward's time is that of forward + backward less the forward's, so it includes the
 * adjoint's allocations and the accumulation into .grad (bench_cnn_parts, bench_tfm_parts). */
typedef struct bench_part_fn {
    ag_tensor *(*forward)(void *ctx);
    void (*zero)(void *ctx);
    void *ctx;
    ag_tensor *seed;
} bench_part_fn;

static inline int bench_part_forward(void *c) {
    const bench_part_fn *p = c;
    ag_scope_begin();
    if (p->zero) p->zero(p->ctx);
    const int bad = p->forward(p->ctx) == NULL;
    ag_scope_end();
    return bad;
}

static inline int bench_part_forward_backward(void *c) {
    const bench_part_fn *p = c;
    ag_scope_begin();
    if (p->zero) p->zero(p->ctx);
    ag_tensor *y = p->forward(p->ctx);
    const int bad = !y || ag_backward_ex(y, p->seed, false) != AG_OK;
    ag_scope_end();
    return bad;
}

/* Times p's forward (into *f), then forward + backward, each for about budget_s seconds;
 * *b gets the backward's median, p10 and p90 as the differences of the two.  Returns -1 if
 * a call failed, else 0. */
static inline int bench_part_measure(bench_part_fn *p, double budget_s, bench_stats *f, bench_stats *b) {
    bench_stats fb;
    if (bench_measure(bench_part_forward, p, 0.1, budget_s, 5, 101, f) ||
        bench_measure(bench_part_forward_backward, p, 0.1, budget_s, 5, 101, &fb))
        return -1;
    *b = fb;
    b->median = fb.median - f->median, b->p10 = fb.p10 - f->p10, b->p90 = fb.p90 - f->p90;
    return 0;
}

/* bench_part_measure for a part whose set-up gave ready; on a failed set-up or call, prints
 * "NAME failed: " and agrad's last error to stderr and returns -1, else 0. */
static inline int bench_part_try(bool ready, bench_part_fn *p, const char *name, double budget_s, bench_stats *f,
                                 bench_stats *b) {
    if (ready && !bench_part_measure(p, budget_s, f, b)) return 0;
    fprintf(stderr, "%s failed: %s\n", name, ag_last_error());
    return -1;
}

/* Peak resident set size of this process in MiB: VmHWM from /proc/self/status
 * (ru_maxrss would also count the parent's pages when started by fork + exec). */
static inline double bench_peak_rss_mib(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %ld kB", &kib) == 1) break;
    if (f) fclose(f);
    if (kib < 0) {
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        kib = ru.ru_maxrss;
    }
    return (double)kib / 1024.0;
}

/* The 1-minute load average (-1 if unknown): timings taken on a machine busy with
 * other work are noisy, multi-threaded ones especially, so the programs print it. */
static inline double bench_loadavg(void) {
    double l = -1;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &l) != 1) l = -1;
        fclose(f);
    }
    return l;
}

typedef struct sgemm_ctx {
    float *a, *b, *c;
    int n;
} sgemm_ctx;

static inline int bench_sgemm_call(void *ctx) {
    sgemm_ctx *s = ctx;
    return dnnl_sgemm('N', 'N', s->n, s->n, s->n, 1.0f, s->a, s->n, s->b, s->n, 0.0f, s->c, s->n) != dnnl_success;
}

/* The machine's float32 GEMM rate in GFLOP/s now: median of 1024³ dnnl_sgemm calls with
 * the current thread count, after warm_s seconds of warm-up, sampled for budget_s
 * seconds (at least 5 samples).  0 if the buffers cannot be allocated. */
static inline double bench_sgemm_rate(double warm_s, double budget_s) {
    sgemm_ctx s = {NULL, NULL, NULL, 1024};
    size_t n2 = (size_t)s.n * (size_t)s.n;
    s.a = malloc(n2 * sizeof(float));
    s.b = malloc(n2 * sizeof(float));
    s.c = malloc(n2 * sizeof(float));
    double gf = 0;
    if (s.a && s.b && s.c) {
        for (size_t i = 0; i < n2; i++) {
            s.a[i] = (float)(i % 7) * 0.125f;
            s.b[i] = (float)(i % 5) * 0.25f;
        }
        bench_stats st;
        if (bench_measure(bench_sgemm_call, &s, warm_s, budget_s, 5, 21, &st) == 0)
            gf = 2.0 * s.n * s.n * s.n / (st.median * 1e-6) / 1e9;
    }
    free(s.a);
    free(s.b);
    free(s.c);
    return gf;
}

/* The sgemm rate at start-up, with a warm-up long enough for oneDNN's one-time setup. */
static inline double bench_sgemm_peak(void) { return bench_sgemm_rate(0.2, 0.3); }

/* ---- bandwidth limits -------------------------------------------------------------------------
 * Memory-bound workloads print their rate as a fraction of one of two measured limits, both taken
 * with every thread of the run, each thread streaming a contiguous share as a threaded agrad kernel
 * does:
 *   BENCH_COPY  a memcpy of bytes/2 into another bytes/2, counting the bytes read and written: the
 *               limit of an op that reads and writes about as much (elementwise ops, softmax, norms);
 *   BENCH_READ  a sum of bytes in 32 float accumulators per thread, counting the bytes read: the
 *               limit of an op that reads N bytes and writes few (sum, argmax, ... along a dim).
 * A read-only stream goes faster than a copy (no stores, no second stream), so a reduction held to
 * the copy rate read well above 100% before (sum_d1_4096 at 146% "of copy"). */
typedef enum { BENCH_COPY, BENCH_READ } bench_traffic;

typedef struct stream_ctx {
    float *a, *b;
    int64_t n;  /* floats in a (and in b for a copy) */
    int passes; /* over the working set a call, each thread over its share (BENCH_STREAM_CALL_BYTES) */
    bench_traffic kind;
    double sink;
} stream_ctx;

/* The bytes a stream call moves at least: a working set smaller than this is streamed several times a
 * call, each thread over its own share with no barrier between the passes, so that the call's own
 * cost (the parallel region's fork and join, 1.5 µs on one thread and 8 µs on two under load here)
 * does not set the rate: on one thread a single pass over 64 KiB ran at 27 GB/s, over 1 MiB at 85. */
#define BENCH_STREAM_CALL_BYTES ((size_t)2 << 20)

/* Σ a[0..n) in 32 float accumulators: loads, not the additions' latency, bound the loop (with
 * AVX2, four vectors of eight in flight). */
AG_VEC_CLONES static float bench_read_share(const float *restrict a, int64_t n) {
    float acc[32] = {0}, s = 0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32)
        for (int k = 0; k < 32; k++) acc[k] += a[i + k];
    for (; i < n; i++) s += a[i];
    for (int k = 0; k < 32; k++) s += acc[k];
    return s;
}

static inline int bench_stream_call(void *ctx) {
    stream_ctx *s = ctx;
    double total = 0;
#pragma omp parallel reduction(+ : total)
    {
        int nt = omp_get_num_threads(), t = omp_get_thread_num();
        int64_t lo = ag__share_start(s->n, t, nt), hi = ag__share_start(s->n, t + 1, nt);
        /* a copy goes a to b, and back on odd passes: no pass's stores are dead */
        for (int p = 0; p < s->passes; p++)
            if (s->kind == BENCH_READ) total += bench_read_share(s->a + lo, hi - lo);
            else if (p % 2) memcpy(s->a + lo, s->b + lo, sizeof(float) * (size_t)(hi - lo));
            else memcpy(s->b + lo, s->a + lo, sizeof(float) * (size_t)(hi - lo));
    }
    s->sink += total;
    return 0;
}

/* Opens s: a stream of a `bytes` working set as `kind` says (above), its arrays from agrad's
 * allocator, so that from 4 MiB they sit on 2 MiB huge pages as a tensor's data does, and touched.
 * (On 4 KiB pages, from malloc before session 18, one thread streamed slower: medians of five
 * alternated pairs, an 8 MiB copy 72.5 against 79.7 GB/s, a 64 MiB read 29.0 against 31.1.)  A working
 * set under BENCH_STREAM_CALL_BYTES is streamed that many bytes' worth of passes a call.  Returns -1 (s
 * holds no arrays) if they cannot be allocated, else 0. */
static inline int bench_stream_open(stream_ctx *s, size_t bytes, bench_traffic kind) {
    const int64_t n = (int64_t)(bytes / (kind == BENCH_COPY ? 2 : 1) / sizeof(float));
    const int passes = bytes < BENCH_STREAM_CALL_BYTES && bytes > 0
                           ? (int)((BENCH_STREAM_CALL_BYTES + bytes - 1) / bytes) : 1;
    *s = (stream_ctx){ag__alloc((size_t)(n > 0 ? n : 1) * sizeof(float)),
                      kind == BENCH_COPY ? ag__alloc((size_t)(n > 0 ? n : 1) * sizeof(float)) : NULL, n, passes, kind,
                      0};
    if (!s->a || (kind == BENCH_COPY && !s->b)) {
        ag__free(s->a), ag__free(s->b);
        s->a = s->b = NULL;
        return -1;
    }
    /* bytes 0x3f (floats 0.747): memset touches the pages fast in a debug build too (agrad-bench
     * measures four limits before each run; its test runs under ASan), and no value slows a copy or
     * a sum.  Not zeros: on this VM a 256 MiB read of memset-zeroed pages ran at 211 GB/s (pages of
     * zeros shared or deduplicated), against 18-26 GB/s for any other bytes. */
    memset(s->a, 0x3f, (size_t)n * sizeof(float));
    if (s->b) memset(s->b, 0x3f, (size_t)n * sizeof(float));
    return 0;
}

/* The rate in GB/s (1e9 bytes a GB) of the open stream s now, on the current thread count: the
 * median of its samples after a warm-up of warm_s seconds (at least 2 calls), sampled for budget_s
 * seconds (at least 5 samples).  0 if s holds no arrays. */
static inline double bench_stream_rate(stream_ctx *s, double warm_s, double budget_s) {
    bench_stats st;
    if (!s->a || bench_measure(bench_stream_call, s, warm_s, budget_s, 5, 41, &st)) return 0;
    return (double)(s->kind == BENCH_COPY ? 2 : 1) * (double)s->passes * (double)s->n * sizeof(float) /
           (st.median * 1e-6) / 1e9;
}

static inline void bench_stream_close(stream_ctx *s) {
    ag__free(s->a);
    ag__free(s->b);
    s->a = s->b = NULL;
}

/* Rounds of a memory-bound measurement's samples, each followed by a measurement of its limit. */
#define BENCH_LIMIT_ROUNDS 5

/* The limit a memory-bound measurement was held to (bench_measure_limited). */
typedef struct bench_limit {
    double best_gbs, worst_gbs; /* the fastest and the slowest round's stream, GB/s (0: not measured) */
    size_t bytes;               /* the stream's working set */
    int rounds;                 /* rounds whose stream was measured */
    int passes;                 /* passes over bytes a stream call (BENCH_STREAM_CALL_BYTES) */
} bench_limit;

/* Times fn as bench_measure does, and with it the limit of a memory-bound workload whose working set
 * (its distinct tensors) is `footprint` bytes: BENCH_LIMIT_ROUNDS rounds, each a share of the samples
 * (budget_s / rounds seconds, min_samples / rounds at least, max_samples / rounds at most; the first
 * after a warm-up of warm_s seconds, the others after bench_sample's two calls, which bring fn's data
 * back into the caches) followed by a stream of `kind` over `footprint` bytes (bench_stream_rate,
 * stream_s seconds): the machine's rate in the workload's own minutes, in the cache level its data sits
 * in (a start-up measurement swung 1.5x between runs and held data that fits in a cache to memory's
 * rate).  *out gets the figures of all fn's samples, *lim the best and worst round's stream (best_gbs 0
 * when its arrays cannot be allocated; fn is timed all the same).  Returns -1 if a call failed, else 0. */
static inline int bench_measure_limited(bench_fn fn, void *ctx, double warm_s, double budget_s, int min_samples,
                                        int max_samples, size_t footprint, bench_traffic kind, double stream_s,
                                        bench_stats *out, bench_limit *lim) {
    if (max_samples > BENCH_MAX_SAMPLES) max_samples = BENCH_MAX_SAMPLES;
    const int least = (min_samples + BENCH_LIMIT_ROUNDS - 1) / BENCH_LIMIT_ROUNDS;
    const int most = max_samples / BENCH_LIMIT_ROUNDS;
    double samples[BENCH_MAX_SAMPLES];
    int n = 0;
    long calls = 0;
    stream_ctx s;
    const bool stream = bench_stream_open(&s, footprint, kind) == 0;
    *lim = (bench_limit){0, 0, footprint, 0, stream ? s.passes : 0};
    for (int k = 0; k < BENCH_LIMIT_ROUNDS; k++) {
        if (bench_sample(fn, ctx, k ? 0 : warm_s, budget_s / BENCH_LIMIT_ROUNDS, least > 1 ? least : 1,
                         most > 1 ? most : 1, samples, &n, &calls)) {
            if (stream) bench_stream_close(&s);
            return -1;
        }
        const double gbs = stream ? bench_stream_rate(&s, 0, stream_s) : 0;
        if (gbs > lim->best_gbs) lim->best_gbs = gbs;
        if (lim->rounds == 0 || gbs < lim->worst_gbs) lim->worst_gbs = gbs;
        lim->rounds += gbs > 0;
    }
    if (stream) bench_stream_close(&s);
    bench_stats_of(samples, n, calls, out);
    return 0;
}

/* The rate in GB/s (1e9 bytes a GB) at which the current thread count streams a working set of
 * `bytes` as `kind` says (above): the median of repeated calls after a warm-up.  With 128 MiB
 * (well past the private caches) it is the machine's memory bandwidth, with a few hundred KiB that
 * of its caches.  0 if the arrays cannot be allocated. */
static inline double bench_stream_gbs(size_t bytes, bench_traffic kind) {
    stream_ctx s;
    if (bench_stream_open(&s, bytes, kind)) return 0;
    double gbs = bench_stream_rate(&s, 0.1, 0.3);
    bench_stream_close(&s);
    return gbs;
}

/* Floating-point operations of one forward call of the GEMM-bound ops on inputs of
 * shapes a and b (0: not one of them): matmul (batched, broadcast) and linear. */
static inline double bench_gemm_flops(const char *op, const ag_shape *a, const ag_shape *b) {
    if (strcmp(op, "matmul") == 0 && a->ndim >= 2 && b->ndim >= 2) {
        double batch = 1;
        for (int d = 0; d < a->ndim - 2; d++) batch *= (double)a->dim[d];
        double bb = 1;
        for (int d = 0; d < b->ndim - 2; d++) bb *= (double)b->dim[d];
        if (bb > batch) batch = bb;
        return 2 * batch * (double)a->dim[a->ndim - 2] * (double)a->dim[a->ndim - 1] * (double)b->dim[b->ndim - 1];
    }
    if (strcmp(op, "linear") == 0 && b->ndim == 2 && a->ndim >= 1) {
        double rows = 1;
        for (int d = 0; d < a->ndim - 1; d++) rows *= (double)a->dim[d];
        return 2 * rows * (double)b->dim[0] * (double)b->dim[1];
    }
    return 0;
}

/* Options common to the benchmark programs. */
typedef struct bench_opts {
    const char *json;   /* --json FILE */
    const char *filter; /* a substring a workload's name must contain */
    double scale;       /* --quick: budgets times 0.2 */
    ag_backend_mode backend; /* --reference: AG_BACKEND_REFERENCE - elementwise loops on one thread,
                                no oneDNN eltwise/matmul primitives (sgemm for every product);
                                --accel: AG_BACKEND_ACCEL - oneDNN wherever an op has a primitive,
                                threads at every size; else AG_BACKEND_AUTO */
} bench_opts;

/* Prints one part's row (name in width columns, mode, median, p10 and p90 in µs) and, when
 * o->json names a file, appends the row to it as a JSON line tagged "bench": bench. */
static inline void bench_part_row(const bench_opts *o, const char *bench, int width, const char *name, const char *mode,
                                  const bench_stats *s) {
    printf("%-*s %-9s %10.1f %10.1f %10.1f\n", width, name, mode, s->median, s->p10, s->p90);
    FILE *f = o->json ? fopen(o->json, "a") : NULL;
    if (!f) return;
    fprintf(f, "{\"bench\": \"%s\", \"name\": \"%s\", \"mode\": \"%s\", \"median_us\": %.2f, \"p10_us\": %.2f, "
               "\"p90_us\": %.2f, \"threads\": %d}\n", bench, name, mode, s->median, s->p10, s->p90, omp_get_max_threads());
    fclose(f);
}

/* The name the programs print and write to JSON for a backend mode. */
static inline const char *bench_backend_name(ag_backend_mode b) {
    return b == AG_BACKEND_REFERENCE ? "reference" : b == AG_BACKEND_ACCEL ? "accel" : "default";
}

static inline int bench_parse(int argc, char **argv, bench_opts *o, const char *usage) {
    o->json = NULL;
    o->filter = NULL;
    o->scale = 1.0;
    o->backend = AG_BACKEND_AUTO;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0 && i + 1 < argc) o->json = argv[++i];
        else if (strcmp(argv[i], "--quick") == 0) o->scale = 0.2;
        else if (strcmp(argv[i], "--reference") == 0) o->backend = AG_BACKEND_REFERENCE;
        else if (strcmp(argv[i], "--accel") == 0) o->backend = AG_BACKEND_ACCEL;
        else if (argv[i][0] != '-' && !o->filter) o->filter = argv[i];
        else {
            fprintf(stderr, "usage: %s %s\n", argv[0], usage);
            return -1;
        }
    }
    return 0;
}

#endif

/*
 * core/parallel.c - the thread count and OpenMP-split elementwise loops.
 *
 * Measured on the 2-core AVX-512 machine (float32, best of 9 runs, µs):
 *
 *   elements       relu 1 thr  relu 2 thr   add 1 thr   add 2 thr
 *   16 384             1.1         4.1          1.7         4.1
 *   65 536             4.5         5.8          7.0         6.7
 *   131 072            9.5         8.0         17.2        11.2
 *   1 048 576         98          50          147          92
 *
 * so cheap loops split from 2^17 elements (AG_PAR_MIN_ELEMS).
 */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include "core/parallel.h"

int ag__cgroup_cpu_limit(const char *quota, const char *period) {
    /* cgroup v2 writes "max 100000" or "150000 100000" in one file (period NULL);
     * v1 writes the quota (-1: none) and the period in two. */
    char q[32];
    long long p = 0, qv;
    if (!quota || sscanf(quota, "%31s %lld", q, &p) < 1) return 0;
    if (period && sscanf(period, "%lld", &p) != 1) return 0;
    char *end;
    qv = strtoll(q, &end, 10);
    if (end == q || *end || qv <= 0 || p <= 0) return 0; /* "max", -1 or garbage: no limit */
    long long cpus = (qv + p - 1) / p;
    return cpus > AG_MAX_THREADS ? AG_MAX_THREADS : (int)cpus;
}

/* The first line of a file, or "" when it cannot be read. */
static const char *first_line(const char *path, char *buf, size_t n) {
    FILE *f = fopen(path, "r");
    buf[0] = 0;
    if (f) {
        if (!fgets(buf, (int)n, f)) buf[0] = 0;
        fclose(f);
    }
    return buf;
}

int ag__cpus_available(void) {
    int procs = omp_get_num_procs(); /* libgomp counts the affinity mask: taskset, mpirun's binding */
    char a[64], b[64];
    int limit = ag__cgroup_cpu_limit(first_line("/sys/fs/cgroup/cpu.max", a, sizeof a), NULL);
    if (!limit)
        limit = ag__cgroup_cpu_limit(first_line("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", a, sizeof a),
                                     first_line("/sys/fs/cgroup/cpu/cpu.cfs_period_us", b, sizeof b));
    return limit && limit < procs ? limit : procs;
}

bool ag__omp_passive = false;

/* At load: whether OMP_WAIT_POLICY asks for sleeping threads (as libgomp reads it: case
 * aside, "passive"); and, unless OMP_NUM_THREADS says otherwise, no more threads than the
 * CPUs a cgroup quota grants (OpenMP's own default already follows the affinity mask), so
 * a container limited to 1 CPU does not run 2 spinning threads on it. */
__attribute__((constructor)) static void default_threads(void) {
    const char *policy = getenv("OMP_WAIT_POLICY");
    ag__omp_passive = policy && strncasecmp(policy, "passive", 7) == 0;
    if (getenv("OMP_NUM_THREADS")) return;
    int cpus = ag__cpus_available();
    if (cpus < omp_get_max_threads()) omp_set_num_threads(cpus);
}

void ag_set_num_threads(int n) {
    if (n < 1) { /* the default: OMP_NUM_THREADS, else the CPUs this process may use */
        const char *env = getenv("OMP_NUM_THREADS");
        n = env ? atoi(env) : 0;
        if (n < 1) n = ag__cpus_available();
    }
    /* Capped: more threads only oversubscribe the cores, and a team libgomp cannot
     * create makes it end the process. */
    int procs = omp_get_num_procs(), limit = omp_get_thread_limit();
    int cap = procs < AG_MAX_THREADS / AG_THREADS_PER_CORE ? procs * AG_THREADS_PER_CORE : AG_MAX_THREADS;
    if (cap > limit) cap = limit;
    omp_set_num_threads(n < cap ? n : cap);
}

int ag_get_num_threads(void) { return omp_get_max_threads(); }

ag_backend_mode ag__backend = AG_BACKEND_AUTO;

int ag__threads_for(int64_t n) {
    int64_t min = ag__backend == AG_BACKEND_AUTO ? AG_PAR_MIN_ELEMS : ag__backend == AG_BACKEND_ACCEL ? 128 : INT64_MAX;
    if (n < min || omp_in_parallel()) return 1;
    return omp_get_max_threads();
}

void ag__par_run(ag_inner_fn fn, void *ctx, int64_t n, int nops, char **p, const int64_t *s, int threads) {
    if (threads <= 1 || n < 2 * 64) {
        if (n > 0) fn(p, s, n, ctx);
        return;
    }
#pragma omp parallel num_threads(threads)
    {
        int nt = omp_get_num_threads(), t = omp_get_thread_num();
        /* Chunks of whole 64-element blocks, so threads do not share cache lines. */
        int64_t blocks = (n + 63) / 64;
        int64_t lo = ag__share_start(blocks, t, nt) * 64, hi = ag__share_start(blocks, t + 1, nt) * 64;
        if (hi > n) hi = n;
        if (lo < hi) {
            char *q[AG_ITER_MAX];
            for (int k = 0; k < nops; k++) q[k] = p[k] + lo * s[k];
            fn(q, s, hi - lo, ctx);
        }
    }
}

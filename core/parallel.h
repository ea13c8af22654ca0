/*
 * core/parallel.h - how agrad splits elementwise work over OpenMP threads.
 *
 * Forking a team costs about 3 µs on our 2-core machines, so loops stay on the
 * calling thread below a measured size (bench/bench_ops.c and the notes in
 * parallel.c give the figures) and inside a parallel region the caller opened.
 */
#ifndef AGRAD_PARALLEL_H
#define AGRAD_PARALLEL_H

#include <omp.h>
#include "core/iter.h"

#define AG__PRAGMA(x) _Pragma(#x)
/* Runs the statements (a block that reads its thread number ag__thread and the team's size
 * ag__team, both const int, in place of omp_get_thread_num() and omp_get_num_threads()) on nt
 * threads in one OpenMP region, or directly on the calling thread where nt <= 1, with ag__thread
 * 0 and ag__team 1, inside a caller's region or not.  The block must call nothing that reads
 * OpenMP's thread number: inside a caller's active region that is the caller's (session 19
 * opened a region of one there for that; a nested region of one costs 2.4 µs of CPU time inside
 * a caller's two-thread region on the AMD host, session 20).  A region whose if clause is false still ends in
 * libgomp's team barrier and its futex wake-up, a system call: 1.2 µs of CPU time a region on
 * the AMD host (session 19), about the whole of a small argmax, logsumexp or index_select. */
#define AG_PARALLEL(nt, ...)                                                                  \
    do {                                                                                      \
        if ((nt) > 1) {                                                                       \
            AG__PRAGMA(omp parallel num_threads(nt))                                          \
            {                                                                                 \
                const int ag__thread = omp_get_thread_num(), ag__team = omp_get_num_threads(); \
                (void)ag__thread, (void)ag__team;                                             \
                __VA_ARGS__                                                                   \
            }                                                                                 \
        } else {                                                                              \
            const int ag__thread = 0, ag__team = 1;                                           \
            (void)ag__thread, (void)ag__team;                                                 \
            __VA_ARGS__                                                                       \
        }                                                                                     \
    } while (0)

/* A barrier among the threads of an AG_PARALLEL block whose team is `team` (its ag__team): none
 * where the block runs directly (team 1), for an orphaned barrier there would bind to a caller's
 * region and wait for threads that never reach it. */
#define AG_BARRIER(team)                 \
    do {                                 \
        if ((team) > 1) {                \
            AG__PRAGMA(omp barrier)      \
        }                                \
    } while (0)

/* Runs the for statement (the arguments after clauses, whose iterations read no thread number) as
 * `#pragma omp parallel for num_threads(nt) clauses` where nt > 1, else directly on the calling
 * thread, inside a caller's region or not (a plain loop shares nothing out, so it is right in
 * either): no team, no barrier and no futex system call (1.2 µs of CPU time a region on the AMD
 * host, session 19).  The iterations are the same either way, so the results are too. */
#define AG_PARALLEL_FOR(nt, clauses, ...)                                  \
    do {                                                                   \
        if ((nt) > 1) {                                                    \
            AG__PRAGMA(omp parallel for num_threads(nt) clauses)           \
            __VA_ARGS__                                                    \
        } else {                                                           \
            __VA_ARGS__                                                    \
        }                                                                  \
    } while (0)

/* oneDNN's kernels split their work for the threads they ask OpenMP for, and give wrong results with a
 * smaller team, which OpenMP's dynamic adjustment (OMP_DYNAMIC=true, omp_set_dynamic(1)) grants on a
 * loaded machine (session 20: a [600, 300]·[300, 16] matmul 87 off, one thread granted of two).  Each
 * call into oneDNN turns the adjustment off on the calling thread for the call: ag__dynamic_off
 * returns the caller's setting, which ag__dynamic_restore gives back.  agrad's own regions split
 * their work over the team granted (omp_get_num_threads()). */
static inline int ag__dynamic_off(void) {
    const int on = omp_get_dynamic();
    if (on) omp_set_dynamic(0);
    return on;
}
static inline void ag__dynamic_restore(int on) {
    if (on) omp_set_dynamic(1);
}

/* Which implementations run.  Tests and benchmarks switch it to compare the
 * accelerated paths with the reference loops; it is process-wide. */
typedef enum ag_backend_mode {
    AG_BACKEND_AUTO = 0,  /* oneDNN and threads where measured faster (the default) */
    AG_BACKEND_REFERENCE, /* plain loops on the calling thread only */
    AG_BACKEND_ACCEL      /* oneDNN wherever an op has a primitive, threads at every size */
} ag_backend_mode;
AG_HIDDEN extern ag_backend_mode ag__backend;

/* ag_set_num_threads takes at most AG_THREADS_PER_CORE threads per core, and never
 * more than AG_MAX_THREADS (nor OpenMP's thread limit). */
#define AG_THREADS_PER_CORE 4
#define AG_MAX_THREADS 1024

/* The CPUs this process may use: OpenMP's count of the affinity mask, capped by a
 * cgroup CPU quota rounded up (cgroup v2 cpu.max, else v1 cpu.cfs_quota_us). */
AG_HIDDEN int ag__cpus_available(void);
/* The CPUs a cgroup quota grants, rounded up, from the text of cgroup v2's cpu.max
 * (period NULL) or of v1's cpu.cfs_quota_us and cpu.cfs_period_us; 0 when there is
 * no quota ("max", -1) or the text is not understood. */
AG_HIDDEN int ag__cgroup_cpu_limit(const char *quota, const char *period);

/* Whether waiting OpenMP threads sleep rather than spin: OMP_WAIT_POLICY=passive, which
 * libgomp reads once at load, as this is (core/parallel.c).  Then every fork wakes the
 * team with a futex (about 5 µs on the 2-core host), so work that gains from a second
 * core only when the fork is cheap stays on one thread. */
AG_HIDDEN extern bool ag__omp_passive;

/* Elements from which a cheap elementwise loop (an add, a relu, a copy) runs on
 * all threads: below it one thread is faster (measured, see parallel.c). */
#define AG_PAR_MIN_ELEMS ((int64_t)1 << 17)

/* Where thread t of nt starts its share of n items: floor(n * t / nt) for
 * 0 <= t <= nt, without the overflow of n * t (n may be near 2^62). */
static inline int64_t ag__share_start(int64_t n, int t, int nt) { return n / nt * t + n % nt * t / nt; }

/* Threads to use for a loop over n elements of cheap work: 1 below the threshold,
 * in a parallel region, or when ag_set_num_threads(1); else ag_get_num_threads().
 * AG_BACKEND_REFERENCE: always 1; AG_BACKEND_ACCEL: all threads from 128 elements. */
AG_HIDDEN int ag__threads_for(int64_t n);

/* Runs fn over n elements of nops operands (p[k] the first element, s[k] the byte
 * step), split into contiguous chunks over `threads` threads.  fn must be a pure
 * elementwise map: element i of operand 0 written from element i of the others
 * (operand 0 must not have step 0), nothing else written, ctx read only. */
AG_HIDDEN void ag__par_run(ag_inner_fn fn, void *ctx, int64_t n, int nops, char **p, const int64_t *s,
                           int threads);

/* ag__run_flat split over threads when n is large (same contract as ag__par_run). */
static inline void ag__par_run_flat(ag_inner_fn fn, void *ctx, int64_t n, int nops, char **p, int64_t esize) {
    int64_t s[AG_ITER_MAX];
    for (int k = 0; k < nops; k++) s[k] = esize;
    if (n < AG_PAR_MIN_ELEMS && ag__backend != AG_BACKEND_ACCEL) {
        if (n > 0) fn(p, s, n, ctx);
        return;
    }
    ag__par_run(fn, ctx, n, nops, p, s, ag__threads_for(n));
}

/* Threads' scratch regions carved from one block (ops/scatter.c's runs keep their tallies in
 * them): each region starts on a page, and is followed by AG_SCRATCH_APART bytes that nothing
 * touches (the next thread's region starts after them).  On the AMD EPYC (Zen 5) guest of
 * docs/benchmarks.md, two threads whose tallies lay 24-64 KiB apart in one block ran
 * scatter_reduce's amax adjoint 1.2-2.5x slower each than with them 256 KiB apart or in blocks
 * of their own; regions on pages of their own 32 KiB apart were as slow, so it is not false
 * sharing, and one thread's region followed by the gap ran the step 4% faster than a block of
 * the region's size (the cause is not known; session 18, docs/benchmarks.md). */
#define AG_SCRATCH_APART ((int64_t)256 << 10)
#define AG_SCRATCH_PAGE ((int64_t)4096)

/* The distance from one thread's region of `bytes` to the next: bytes rounded up to a page, plus
 * AG_SCRATCH_APART; -1 when that overflows. */
static inline int64_t ag__scratch_stride(int64_t bytes) {
    if (bytes < 0 || bytes > INT64_MAX - AG_SCRATCH_PAGE - AG_SCRATCH_APART) return -1;
    return (bytes + AG_SCRATCH_PAGE - 1) / AG_SCRATCH_PAGE * AG_SCRATCH_PAGE + AG_SCRATCH_APART;
}

/* The bytes of a block holding `threads` regions `stride` apart, and a page more (the first
 * region is moved up to a page boundary); -1 when that overflows. */
static inline int64_t ag__scratch_block(int64_t stride, int threads) {
    int64_t n;
    if (stride < 0 || threads < 1 || ag__mul_overflow(stride, threads, &n) || n > INT64_MAX - AG_SCRATCH_PAGE)
        return -1;
    return n + AG_SCRATCH_PAGE;
}

/* Thread t's region in a block of ag__scratch_block(stride, threads) bytes. */
static inline char *ag__scratch_at(char *block, int64_t stride, int t) {
    block += (AG_SCRATCH_PAGE - (int64_t)((uintptr_t)block % AG_SCRATCH_PAGE)) % AG_SCRATCH_PAGE;
    return block + (int64_t)t * stride;
}

/* How a loop over the lanes L (core/iter.h) splits over threads: `tasks` items, each a whole
 * contiguous lane (inner = 1: task t is lane t) or the columns [i0, i1) of one outer index's lanes
 * (a block of at most bw <= max_cols columns, see ag__lane_task): blocks as wide as they may be, so
 * that rows are read in long runs, but at least one per thread; nt the threads to use (1 when there
 * is no lane).  Each lane is computed whole by one thread, so results do not depend on nt. */
typedef struct ag_lane_split {
    int64_t blocks, bw, tasks;
    int nt;
} ag_lane_split;

static inline ag_lane_split ag__lane_split_of(ag_lanes L, int64_t max_cols) {
    ag_lane_split S;
    S.nt = ag__threads_for(L.outer * L.n * L.inner);
    S.blocks = L.inner <= 1 ? 1 : (L.inner + max_cols - 1) / max_cols;
    if (L.inner > 1 && L.outer < S.nt && S.blocks < S.nt) S.blocks = L.inner < S.nt ? L.inner : S.nt;
    S.bw = L.inner <= 1 ? 1 : (L.inner + S.blocks - 1) / S.blocks;
    S.tasks = L.outer * S.blocks;
    if (S.nt > S.tasks) S.nt = (int)(S.tasks > 0 ? S.tasks : 1);
    return S;
}

/* Task t of split S (inner > 1): outer index *o, columns [*i0, *i1). */
static inline void ag__lane_task(ag_lanes L, ag_lane_split S, int64_t t, int64_t *o, int64_t *i0, int64_t *i1) {
    *o = t / S.blocks, *i0 = t % S.blocks * S.bw;
    *i1 = *i0 + S.bw < L.inner ? *i0 + S.bw : L.inner;
}

#endif

/*
 * test_parallel_regions.c - ops on one thread open no OpenMP region
 * (core/parallel.h AG_PARALLEL), and give the same results inside a caller's
 * region: a region whose if clause is false still ends in libgomp's team barrier
 * and its futex wake-up, a system call (session 19: 1.2 µs of CPU time a region
 * on the AMD host; index_select of 5 of [444, 592]'s columns 3.3 -> 1.0 µs, a
 * small argmax 1.55 -> 0.16 µs).  libgomp's GOMP_parallel, which every
 * `#pragma omp parallel` calls, is wrapped here (the test executable's definition
 * is the one the library's objects link to; it counts, then calls libgomp's, found
 * with dlsym(RTLD_NEXT)).  Each op's forward and backward at a small and a
 * medium size on one thread: no region; gather's medium forward on 2 threads
 * (AG_BACKEND_ACCEL): a region, so the count is live.  The same ops on each
 * thread of a caller's two-thread region, where omp_get_num_threads() is the
 * caller's: the results of one thread outside it, bit for bit (cdist's blocked forward and
 * adjoint too, whose threads share their rows by omp_get_thread_num() and meet at barriers).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>
#include "agrad/agrad.h"
#include "core/internal.h"
#include "core/parallel.h"
#include "tap.h"

static long regions;

/* libgomp's entry for `#pragma omp parallel` (GCC's ABI), counted and passed on. */
void GOMP_parallel(void (*fn)(void *), void *data, unsigned num_threads, unsigned flags);
void GOMP_parallel(void (*fn)(void *), void *data, unsigned num_threads, unsigned flags) {
    static void (*real)(void (*)(void *), void *, unsigned, unsigned);
    if (!real) *(void **)&real = dlsym(RTLD_NEXT, "GOMP_parallel");
    regions++;
    real(fn, data, num_threads, flags);
}

/* [r, c] of values from x's domain (AG_F32), requiring grad. */
static ag_tensor *input(int64_t r, int64_t c) {
    ag_tensor *t = ag_rand(AG_SHAPE(r, c), AG_F32);
    ag_requires_grad_(t, true);
    return t;
}

/* An int64 [r, c] index of (7k + 2) mod m (lane-distinct for scatter when c <= m: k's step 7 is prime to m). */
static ag_tensor *index_of(int64_t r, int64_t c, int64_t m, bool distinct) {
    ag_tensor *t = ag_empty(AG_SHAPE(r, c), AG_I64);
    int64_t *v = ag_data(t);
    for (int64_t i = 0; i < r; i++)
        for (int64_t j = 0; j < c; j++) v[i * c + j] = distinct ? (i + j) % m : (7 * (i * c + j) + 2) % m;
    return t;
}

/* Runs each op's forward and backward on [r, c] inputs; returns the regions they opened. */
static long run_ops(int64_t r, int64_t c, int *failed) {
    long before = regions;
    ag_scope_begin();
    ag_tensor *x = input(r, c), *src = input(r, c);
    ag_tensor *i5 = index_of(1, 5, c, false), *row5 = ag_reshape(i5, AG_SHAPE(5));
    ag_tensor *full = index_of(r, c, c, false), *lane = index_of(r, c, c, true);
    ag_tensor *cols = index_of(1, c, c, false), *col1 = ag_reshape(cols, AG_SHAPE(c));
    ag_tensor *ys[] = {
        ag_index_select(x, 1, row5),
        ag_gather(x, 1, full),
        ag_scatter_add(x, 1, full, src),
        ag_scatter(x, 1, lane, src),
        ag_scatter_reduce(x, 1, full, src, AG_SCATTER_AMAX, true),
        ag_index_add(x, 1, col1, src, 1.5),
        ag_index_fill(x, 1, row5, 2.0),
        ag_embedding(x, index_of(r, c, r, false), -1),
    };
    for (size_t k = 0; k < sizeof ys / sizeof ys[0]; k++) {
        *failed += !ys[k] || ag_backward(ag_sum(ys[k])) != AG_OK;
        ag_clear_error();
    }
    ag_scope_end();
    return regions - before;
}

/* The other ops whose regions AG_PARALLEL skips: the lane reductions (argmax, max along a dim,
 * amax, prod and its backward, logsumexp and its backward), searchsorted, mode, exponential_
 * and randint, forward (and backward where differentiable) on [r, c]; each result is kept in
 * out[] (owned by the caller's scope) when out is given.  Returns the regions they opened. */
#define NOTHER 12
static long run_other(int64_t r, int64_t c, ag_tensor **out, int *failed) {
    long before = regions;
    ag_tensor *x = input(r, c);
    ag_tensor *sorted = ag_sort(ag_detach(x), 1, false, NULL);
    ag_tensor *ys[NOTHER] = {
        ag_argmax(x, 0, false),
        ag_argmax(x, 1, false),
        ag_max_dim(x, 1, false),
        ag_amax(x, 1, (int[]){0}, false),
        ag_prod_dim(x, 1, false),
        ag_prod_dim(x, 0, false),
        ag_logsumexp_dims(x, 1, (int[]){1}, false),
        ag_logsumexp_dims(x, 1, (int[]){0}, false),
        ag_searchsorted(sorted, ag_detach(x), false),
        ag_mode(ag_round(ag_mul_scalar(ag_detach(x), 4)), 1, false, NULL),
        ag_exponential_(ag_empty(AG_SHAPE(r, c), AG_F32), 1.5),
        ag_randint(0, 1000, AG_SHAPE(r, c)),
    };
    for (int k = 0; k < NOTHER; k++) {
        *failed += !ys[k];
        if (ys[k] && ag_requires_grad(ys[k])) *failed += ag_backward(ag_sum(ys[k])) != AG_OK;
        if (out) out[k] = ys[k];
        ag_clear_error();
    }
    return regions - before;
}

/* cdist with p = 2 by blocks (ops/distance.c: dist_blocks, ratio_blocks, one AG_PARALLEL region each):
 * forward and backward of [300, 16] x [200, 16] (float32, the adjoint's four parts) into y, da and
 * db; returns the regions they opened. */
static long run_cdist(ag_tensor **out, int *failed) {
    long before = regions;
    ag_manual_seed(5);
    ag_tensor *a = input(300, 16), *b = input(200, 16), *y = ag_cdist(a, b, 2);
    *failed += !y || ag_backward(ag_sum(ag_mul(y, ag_rand(AG_SHAPE(300, 200), AG_F32)))) != AG_OK;
    out[0] = y, out[1] = ag_grad(a), out[2] = ag_grad(b);
    return regions - before;
}

/* Whether a and b have the same shape, dtype and bytes. */
static bool same(const ag_tensor *a, const ag_tensor *b) {
    if (!a || !b || ag_dtype_of(a) != ag_dtype_of(b) || ag_numel(a) != ag_numel(b)) return false;
    ag_tensor *ca = ag_contiguous((ag_tensor *)a), *cb = ag_contiguous((ag_tensor *)b);
    return memcmp(ag_data(ca), ag_data(cb), (size_t)ag_numel(a) * ag_dtype_size(ag_dtype_of(a))) == 0;
}

/* Each thread of a caller's two-thread region runs the ops with the same seed; each result
 * must equal the one made outside any region (where the ops open no region on one thread). */
static void inside_callers_region(int *failed) {
    ag_set_num_threads(2); /* as a user's program: the ops see the caller's region and use one */
    ag_scope_begin();
    ag_tensor *ref[NOTHER];
    ag_manual_seed(7);
    run_other(57, 76, ref, failed);
    ag_tensor *ix = ag_rand(AG_SHAPE(57, 76), AG_F32), *full = index_of(57, 76, 76, false);
    ag_tensor *row5 = ag_reshape(index_of(1, 5, 76, false), AG_SHAPE(5));
    ag_tensor *g_ref = ag_gather(ix, 1, full), *s_ref = ag_index_select(ix, 1, row5);
    ag_tensor *c_ref[3];
    run_cdist(c_ref, failed);
    int differ = 0, teams = 0;
#pragma omp parallel num_threads(2) reduction(+ : differ, teams)
    {
        teams += omp_get_num_threads() == 2 && omp_get_thread_num() == 0;
        int f = 0;
        ag_tensor *mine[NOTHER];
#pragma omp critical
        { /* the generator's state is global: one thread at a time draws, from the same seed */
            ag_scope_begin();
            ag_manual_seed(7);
            run_other(57, 76, mine, &f);
            for (int k = 0; k < NOTHER; k++) differ += !same(mine[k], ref[k]);
            ag_tensor *c[3];
            run_cdist(c, &f);
            for (int k = 0; k < 3; k++) differ += !same(c[k], c_ref[k]);
            ag_scope_end();
        }
        ag_scope_begin();
        differ += !same(ag_gather(ix, 1, full), g_ref) + !same(ag_index_select(ix, 1, row5), s_ref) + f;
        ag_scope_end();
    }
    ag_scope_end();
    ag_set_num_threads(1);
    ok(teams == 1 && differ == 0, "inside a caller's two-thread region: the results made outside it (%d differ)", differ);
}

int main(void) {
    int failed = 0;
    ag_manual_seed(19);
    ag_set_num_threads(1);
    long small = run_ops(57, 76, &failed), medium = run_ops(444, 592, &failed);
    ok(small == 0 && medium == 0, "one thread: no OpenMP region in the index ops (small %ld, medium %ld)", small, medium);
    ag_scope_begin();
    long osmall = run_other(57, 76, NULL, &failed), omedium = run_other(444, 592, NULL, &failed);
    ag_scope_end();
    ok(osmall == 0 && omedium == 0, "one thread: no OpenMP region in the reductions, searchsorted, mode, exponential_, "
       "randint (small %ld, medium %ld)", osmall, omedium);
    ag_scope_begin();
    ag_tensor *c[3];
    long cd = run_cdist(c, &failed);
    ag_scope_end();
    ok(cd == 0, "one thread: no OpenMP region in cdist's forward and backward by blocks (%ld)", cd);
    inside_callers_region(&failed);
    ag_set_num_threads(2);
    ag__backend = AG_BACKEND_ACCEL;
    long before = regions;
    ag_scope_begin();
    ag_tensor *g = ag_gather(ag_rand(AG_SHAPE(444, 592), AG_F32), 1, index_of(444, 592, 592, false));
    failed += !g;
    ag_scope_end();
    ok(regions - before > 0, "two threads: gather's medium walk splits into a region (%ld)", regions - before);
    ok(failed == 0, "every op and backward ran (%d failed)", failed);
    ok(ag_live_tensors() == 0, "no tensor outlives the checks (%ld live)", ag_live_tensors());
    return tap_done();
}

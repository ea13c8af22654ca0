/*
 * test_index_regions.c - the index and scatter ops on one thread open no OpenMP
 * region (ops/index.h AG_INDEX_PARALLEL): a region whose if clause is false
 * still ends in libgomp's team barrier and its futex wake-up, a system call
 * (session 19: 1.2 µs of CPU time a region on the AMD host; index_select of 5
 * of [444, 592]'s columns 3.3 -> 1.0 µs).  libgomp's GOMP_parallel, which every
 * `#pragma omp parallel` calls, is wrapped here (the test executable's definition
 * is the one the library's objects link to; it counts, then calls libgomp's, found
 * with dlsym(RTLD_NEXT)).  Each op's forward and backward at a small and a
 * medium size on one thread: no region; gather's medium forward on 2 threads
 * (AG_BACKEND_ACCEL): a region, so the count is live.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
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

int main(void) {
    int failed = 0;
    ag_manual_seed(19);
    ag_set_num_threads(1);
    long small = run_ops(57, 76, &failed), medium = run_ops(444, 592, &failed);
    ok(small == 0 && medium == 0, "one thread: no OpenMP region in the index ops (small %ld, medium %ld)", small, medium);
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

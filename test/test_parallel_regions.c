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
 * (AG_BACKEND_ACCEL): a region, so the count is live.  The parallel for loops
 * of sort's and topk's backward, the CTC forward, bf16 autocast's strided
 * conversion and Muon (core/parallel.h AG_PARALLEL_FOR) open none either.  The same ops on each
 * thread of a caller's two-thread region, where omp_get_num_threads() is the
 * caller's: the results of one thread outside it, bit for bit (cdist's blocked forward and
 * adjoint too, whose threads share their rows by ag__thread and meet at barriers), and no nested
 * region (one of one thread there costs 2.4 µs of CPU time).  And bf16
 * autocast's conversion split over the team OpenMP grants, not the one it asked for.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <math.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>
#include "agrad/agrad.h"
#include "core/internal.h"
#include "core/parallel.h"
#include "core/autocast.h"
#include "tap.h"

static long regions;

/* libgomp's entry for `#pragma omp parallel` (GCC's ABI), counted and passed on. */
void GOMP_parallel(void (*fn)(void *), void *data, unsigned num_threads, unsigned flags);
void GOMP_parallel(void (*fn)(void *), void *data, unsigned num_threads, unsigned flags) {
    static void (*real)(void (*)(void *), void *, unsigned, unsigned);
    if (!real) *(void **)&real = dlsym(RTLD_NEXT, "GOMP_parallel");
    __atomic_fetch_add(&regions, 1, __ATOMIC_RELAXED); /* from a caller's region's threads too */
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

/* batch_norm_relu_dropout's adjoint over [256, 512] on two threads opens one region: relu's and dropout's adjoint
 * is made inside batch norm's (ops/norm.c bn_cols_fold_chunk), not in a pass and region of its own before it (two
 * regions, session 20); none under OMP_WAIT_POLICY=passive, where an adjoint that small runs on one thread.
 * Returns 1 when an op failed. */
static int bn_fold_regions(void) {
    ag_set_num_threads(2);
    ag_scope_begin();
    ag_tensor *x = input(256, 512), *w = ag_requires_grad_(ag_rand(AG_SHAPE(512), AG_F32), true);
    ag_tensor *b = ag_requires_grad_(ag_rand(AG_SHAPE(512), AG_F32), true), *g = ag_randn(AG_SHAPE(256, 512), AG_F32);
    ag_tensor *y = ag_batch_norm_relu_dropout(x, NULL, NULL, w, b, true, 0.1, 1e-5, 0.1);
    const long before = regions;
    const bool ran = y && ag_backward_ex(y, g, false) == AG_OK;
    const long opened = regions - before;
    ag_scope_end();
    ag_set_num_threads(1);
    ok(ran && opened == (ag__omp_passive ? 0 : 1), "two threads: batch_norm_relu_dropout's adjoint over [256, 512] in "
       "one region, relu's and dropout's adjoint folded into batch norm's (%ld)", opened);
    return !ran;
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

/* The parallel for loops AG_PARALLEL_FOR skips on one thread: sort's and topk's backward (the
 * picked values' copy), the CTC loss's forward over the batch (and its backward), bf16 autocast's
 * conversion of a strided operand (a matmul by a narrowed [c, 40] of [c, 50]) and Muon's
 * Newton-Schulz products (one step on a [r, c] parameter and, as the products split from
 * 2^18 multiply-adds, on a [96, 128] one).  Each forward (and backward where differentiable) on
 * [r, c]; the results kept in out[] (owned by the caller's scope) when out is given.  The regions
 * each opened are added into per[NLOOP] when given; returns their total. */
#define NLOOP 5
static long run_loops(int64_t r, int64_t c, ag_tensor **out, long *per, int *failed) {
    long total = regions;
    ag_tensor *ys[NLOOP] = {NULL};
    for (int k = 0; k < NLOOP; k++) {
        long before = regions;
        ag_tensor *x = input(r, c), *y = NULL;
        if (k == 0) y = ag_sort(x, 1, false, NULL);
        else if (k == 1) y = ag_topk(x, 5, 0, true, true, NULL);
        else if (k == 2) { /* log-probabilities [T = r, N = 3, C = c / 4], targets of 4 */
            ag_tensor *lp = ag_log_softmax(ag_reshape(ag_narrow(x, 1, 0, 3 * (c / 4)), AG_SHAPE(r, 3, c / 4)), 2);
            int64_t tg[12], il[3] = {r, r - 1, r / 2}, tl[3] = {4, 3, 4};
            for (int j = 0; j < 12; j++) tg[j] = 1 + (7 * j) % (c / 4 - 1);
            ag_loss_opts o = ag_loss_defaults();
            y = ag_ctc_loss(lp, ag_from_data(tg, AG_SHAPE(3, 4), AG_I64), ag_from_data(il, AG_SHAPE(3), AG_I64),
                            ag_from_data(tl, AG_SHAPE(3), AG_I64), &o);
        } else if (k == 3) {
            ag_tensor *w = ag_narrow(ag_rand(AG_SHAPE(c, 50), AG_F32), 1, 0, 40);
            ag_autocast_begin(AG_AUTOCAST_BF16, true);
            y = ag_matmul(ag_detach(x), w);
            ag_autocast_end();
        } else {
            ag_tensor *ps[2] = {ag_detach(x), ag_rand(AG_SHAPE(96, 128), AG_F32)};
            ag_requires_grad_(ps[0], true), ag_requires_grad_(ps[1], true);
            ag_muon_options o = ag_muon_defaults();
            ag_optimizer *opt = ag_muon_new(ps, 2, &o);
            *failed += !opt || ag_backward(ag_add(ag_sum(ag_square(ps[0])), ag_sum(ag_square(ps[1])))) != AG_OK ||
                       ag_optimizer_step(opt) != AG_OK;
            ag_optimizer_free(opt);
            y = ag_cat((ag_tensor *[]){ag_flatten(ps[0], 0, -1), ag_flatten(ps[1], 0, -1)}, 2, 0);
        }
        *failed += !y;
        if (y && ag_requires_grad(y)) *failed += ag_backward(ag_sum(y)) != AG_OK;
        if (per) per[k] += regions - before;
        ys[k] = y;
        ag_clear_error();
    }
    if (out)
        for (int k = 0; k < NLOOP; k++) out[k] = ys[k];
    return regions - total;
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
    ag_tensor *lref[NLOOP];
    ag_manual_seed(8);
    run_loops(57, 76, lref, NULL, failed);
    int differ = 0, teams = 0;
    const long before = regions;
#pragma omp parallel num_threads(2) reduction(+ : differ, teams)
    {
        teams += omp_get_num_threads() == 2 && omp_get_thread_num() == 0;
        int f = 0;
        ag_tensor *mine[NOTHER], *lmine[NLOOP];
#pragma omp critical
        { /* the generator's state is global: one thread at a time draws, from the same seed */
            ag_scope_begin();
            ag_manual_seed(7);
            run_other(57, 76, mine, &f);
            for (int k = 0; k < NOTHER; k++) differ += !same(mine[k], ref[k]);
            ag_tensor *c[3];
            run_cdist(c, &f);
            for (int k = 0; k < 3; k++) differ += !same(c[k], c_ref[k]);
            ag_manual_seed(8);
            run_loops(57, 76, lmine, NULL, &f);
            for (int k = 0; k < NLOOP; k++) differ += !same(lmine[k], lref[k]);
            ag_scope_end();
        }
        ag_scope_begin();
        differ += !same(ag_gather(ix, 1, full), g_ref) + !same(ag_index_select(ix, 1, row5), s_ref) + f;
        ag_scope_end();
    }
    const long nested = regions - before - 1; /* the caller's region itself is one */
    ag_scope_end();
    ag_set_num_threads(1);
    ok(teams == 1 && differ == 0, "inside a caller's two-thread region: the results made outside it (%d differ)", differ);
    ok(nested == 0, "inside a caller's two-thread region: no nested region (%ld)", nested);
}

/* bf16 autocast's conversion of 2^18 floats asked of 4 threads (omp_set_num_threads, as a user's
 * program may) where OMP_THREAD_LIMIT (2 in meson's environment for this test) or OMP_DYNAMIC grants
 * fewer: each thread's share must be read from the team it got (with 4 assumed and 2 granted, half
 * the elements were left unconverted).  The one-thread conversion, bit for bit. */
static void conversion_team(void) {
    enum { N = 1 << 18 };
    float *src = malloc(sizeof(float) * N);
    uint16_t *one = malloc(sizeof(uint16_t) * N), *team = calloc(N, sizeof(uint16_t));
    for (int i = 0; i < N; i++) src[i] = (float)i * 0.37f - 5000.0f;
    const int before = omp_get_max_threads();
    omp_set_num_threads(1);
    ag__f32_to_bf16(one, src, N);
    omp_set_num_threads(4);
    ag__f32_to_bf16(team, src, N);
    omp_set_num_threads(before);
    long differ = 0;
    for (int i = 0; i < N; i++) differ += one[i] != team[i];
    ok(differ == 0, "bf16 conversion asked of 4 threads, thread limit %d: the one-thread bits (%ld of %d differ)",
       omp_get_thread_limit(), differ, (int)N);
    free(src), free(one), free(team);
}

/* OpenMP's dynamic adjustment (OMP_DYNAMIC=true on a loaded machine) grants a smaller team than asked;
 * made sure here by one CPU in the calling thread's affinity mask, from which libgomp's dynamic rule
 * grants one thread.  oneDNN's kernels split their work for the team they ask for: a matmul gave wrong
 * values (87 off) until agrad turned the adjustment off around its oneDNN calls (core/parallel.h
 * ag__dynamic_off); now the bits of the same call without it.  cdist's blocked adjoint (ops/distance.c
 * ratio_blocks) sizes each thread's block for the team it asks for: a thread must not take more tasks
 * than its block holds (it wrote past its block before); it falls back to the unfused form.
 * [600, 16] x [300, 16] (2^17 distances and more: two threads asked) against one thread, within 1e-5
 * of the largest element (the unfused form's products are oneDNN's; da = rowsum(h)·a - h·b cancels).  The caller's setting is kept. */
static void dynamic_team(void) {
    cpu_set_t all, one;
    int cpu = -1;
    if (sched_getaffinity(0, sizeof all, &all) == 0)
        for (int c = 0; c < CPU_SETSIZE && cpu < 0; c++)
            if (CPU_ISSET(c, &all)) cpu = c;
    if (cpu < 0) {
        ok(true, "# SKIP no affinity mask to narrow");
        return;
    }
    ag_scope_begin();
    ag_set_num_threads(1);
    ag_manual_seed(11);
    ag_tensor *a1 = input(600, 16), *b1 = input(300, 16), *w = ag_rand(AG_SHAPE(600, 300), AG_F32);
    ag_tensor *a2 = ag_requires_grad_(ag_detach(a1), true), *b2 = ag_requires_grad_(ag_detach(b1), true);
    int failed = ag_backward(ag_sum(ag_mul(ag_cdist(a1, b1, 2), w))) != AG_OK;
    ag_set_num_threads(2);
    ag_tensor *ma = ag_rand(AG_SHAPE(600, 300), AG_F32), *mb = ag_rand(AG_SHAPE(300, 16), AG_F32);
    ag_tensor *m1 = ag_matmul(ma, mb);
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    sched_setaffinity(0, sizeof one, &one);
    omp_set_dynamic(1);
    ag_set_num_threads(2);
    int granted = 0;
#pragma omp parallel num_threads(2)
    {
#pragma omp single
        granted = omp_get_num_threads();
    }
    failed += ag_backward(ag_sum(ag_mul(ag_cdist(a2, b2, 2), w))) != AG_OK;
    ag_tensor *m2 = ag_matmul(ma, mb);
    const int kept = omp_get_dynamic();
    omp_set_dynamic(0);
    sched_setaffinity(0, sizeof all, &all);
    ag_set_num_threads(1);
    double worst = 0;
    ag_tensor *pairs[2][2] = {{ag_grad(a1), ag_grad(a2)}, {ag_grad(b1), ag_grad(b2)}};
    for (int k = 0; k < 2 && !failed; k++) {
        const float *u = ag_data(pairs[k][0]), *v = ag_data(pairs[k][1]);
        double diff = 0, big = 0;
        for (int64_t i = 0; i < ag_numel(pairs[k][0]); i++) {
            diff = fmax(diff, fabs((double)u[i] - v[i]));
            big = fmax(big, fabs((double)u[i]));
        }
        worst = fmax(worst, diff / big);
    }
    const bool mm_same = m1 && m2 && same(m1, m2);
    ag_scope_end();
    ok(granted == 1 && kept, "OMP_DYNAMIC with one CPU: one thread granted of two (%d), the setting kept", granted);
    ok(mm_same, "matmul [600, 300]·[300, 16] with one thread granted: the bits of two threads");
    ok(!failed && worst < 1e-5, "cdist's adjoint with two threads asked and one granted: the one-thread gradients "
       "(largest difference %.2g of the largest element)", worst);
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
    long per[NLOOP] = {0};
    ag_scope_begin();
    long lsmall = run_loops(57, 76, NULL, per, &failed), lmedium = run_loops(444, 592, NULL, per, &failed);
    ag_scope_end();
    ok(lsmall == 0 && lmedium == 0, "one thread: no OpenMP region in the parallel for loops (small %ld, medium %ld; "
       "sort %ld, topk %ld, ctc_loss %ld, bf16 matmul %ld, Muon %ld)", lsmall, lmedium, per[0], per[1], per[2], per[3],
       per[4]);
    inside_callers_region(&failed);
    conversion_team();
    dynamic_team();
    failed += bn_fold_regions();
    ag_set_num_threads(2);
    ag__backend = AG_BACKEND_ACCEL;
    long before = regions;
    ag_scope_begin();
    ag_tensor *g = ag_gather(ag_rand(AG_SHAPE(444, 592), AG_F32), 1, index_of(444, 592, 592, false));
    failed += !g;
    ag_scope_end();
    ok(regions - before > 0, "two threads: gather's medium walk splits into a region (%ld)", regions - before);
    long two[NLOOP] = {0};
    ag_scope_begin();
    run_loops(57, 76, NULL, two, &failed);
    ag_scope_end();
    ok(two[0] > 0 && two[1] > 0 && two[2] > 0 && two[4] > 0, "two threads: the loops of sort, topk, ctc_loss and "
       "Muon split into regions (%ld, %ld, %ld, %ld)", two[0], two[1], two[2], two[4]);
    ok(failed == 0, "every op and backward ran (%d failed)", failed);
    ok(ag_live_tensors() == 0, "no tensor outlives the checks (%ld live)", ag_live_tensors());
    return tap_done();
}

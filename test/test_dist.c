/*
 * Data-parallel training with the in-process backend (ranks as threads):
 * the collectives (sum, broadcast, started and finished all-reduces, average),
 * and ag_ddp: parameters identical on every rank after training and equal to one
 * process training on the combined batch within 1e-12 in float64, with SGD and
 * Adam, 1 to 4 ranks, buckets started during backward or after it (the same
 * bits), no_sync accumulation and find_unused_parameters.  test_mpi.c runs the
 * same training under mpirun (suite mpi).
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "agrad/agrad.h"
#include "core/internal.h"
#include "dist_train.h"
#include "tap.h"

enum { MAX_RANKS = 4, MAX_VALUES = 256 };

/* ---- the collectives ------------------------------------------------------------------------ */
typedef struct comm_job {
    ag_comm *comm;
    double sum64[5], bcast[3], started[4], avg[2];
    float sum32[3];
    int64_t sum_i64[2];
    bool polled_done;
    ag_status st, bad_root, bad_dtype, strided;
} comm_job;

static void *collectives(void *arg) {
    comm_job *j = arg;
    int r = ag_comm_rank(j->comm);
    ag_scope_begin();
    double v64[5];
    for (int i = 0; i < 5; i++) v64[i] = 0.1 * (r + 1) + i; /* sums of tenths: rounding shows the order */
    ag_tensor *a = ag_from_data(v64, AG_SHAPE(5), AG_F64);
    float v32[3] = {1.5f * r, -1.0f, 1e-8f};
    ag_tensor *b = ag_from_data(v32, AG_SHAPE(3), AG_F32);
    int64_t vi[2] = {r, INT64_C(1) << 40};
    ag_tensor *c = ag_from_data(vi, AG_SHAPE(2), AG_I64);
    double vb[3] = {r, 2.0 * r, -r};
    ag_tensor *d = ag_from_data(vb, AG_SHAPE(3), AG_F64);
    ag_tensor *e = ag_full(AG_SHAPE(4), r + 1, AG_F64);
    j->st = ag_comm_all_reduce_(j->comm, a);
    if (!j->st) j->st = ag_comm_all_reduce_(j->comm, b);
    if (!j->st) j->st = ag_comm_all_reduce_(j->comm, c);
    if (!j->st) j->st = ag_comm_broadcast_(j->comm, d, 2 % ag_comm_size(j->comm));
    ag_comm_request *q = j->st ? NULL : ag_comm_all_reduce_start(j->comm, e);
    bool done = false;
    for (int spins = 0; q && !j->st && !done && spins < 1000000; spins++) j->st = ag_comm_test(q, &done);
    j->polled_done = done;
    if (q && !done && !j->st) j->st = ag_comm_wait(q);
    j->avg[0] = r, j->avg[1] = 10.0 * r * r;
    if (!j->st) j->st = ag_comm_average(j->comm, j->avg, 2);
    if (!j->st) j->st = ag_comm_barrier(j->comm);
    ag_copy_to(a, j->sum64, 5, AG_F64);
    ag_copy_to(b, j->sum32, 3, AG_F32);
    ag_copy_to(c, j->sum_i64, 2, AG_I64);
    ag_copy_to(d, j->bcast, 3, AG_F64);
    ag_copy_to(e, j->started, 4, AG_F64);
    /* Errors come before any communication, so no rank waits for this one. */
    j->bad_root = ag_comm_broadcast_(j->comm, d, ag_comm_size(j->comm));
    j->bad_dtype = ag_comm_all_reduce_(j->comm, ag_zeros(AG_SHAPE(2), AG_BOOL));
    j->strided = ag_comm_all_reduce_(j->comm, ag_transpose(ag_zeros(AG_SHAPE(2, 3), AG_F64), 0, 1));
    ag_scope_end();
    return NULL;
}

static void run_threads(int n, void *(*fn)(void *), void *jobs, size_t job_size) {
    pthread_t t[MAX_RANKS];
    for (int r = 0; r < n; r++) pthread_create(&t[r], NULL, fn, (char *)jobs + (size_t)r * job_size);
    for (int r = 0; r < n; r++) pthread_join(t[r], NULL);
}

static void test_collectives(int n) {
    ag_comm *comms[MAX_RANKS];
    ok(ag_comm_thread_new(n, comms) == AG_OK, "%d ranks: thread communicators made", n);
    comm_job jobs[MAX_RANKS];
    for (int r = 0; r < n; r++) jobs[r] = (comm_job){.comm = comms[r]};
    run_threads(n, collectives, jobs, sizeof jobs[0]);
    bool all_ok = true, same = true, sums = true, bcast = true, started = true, avg = true, errors = true;
    double want64[5];
    for (int i = 0; i < 5; i++) {
        want64[i] = 0;
        for (int k = 0; k < n; k++) want64[i] += 0.1 * (k + 1) + i; /* rank order, as the backend */
    }
    for (int r = 0; r < n; r++) {
        comm_job *j = &jobs[r];
        all_ok &= j->st == AG_OK && ag_comm_rank(comms[r]) == r && ag_comm_size(comms[r]) == n;
        same &= memcmp(j->sum64, jobs[0].sum64, sizeof j->sum64) == 0 && memcmp(j->sum32, jobs[0].sum32, sizeof j->sum32) == 0;
        sums &= memcmp(j->sum64, want64, sizeof want64) == 0 && j->sum32[1] == -(float)n &&
                j->sum_i64[0] == (int64_t)n * (n - 1) / 2 && j->sum_i64[1] == (INT64_C(1) << 40) * n;
        int root = 2 % n;
        bcast &= j->bcast[0] == root && j->bcast[1] == 2.0 * root && j->bcast[2] == -root;
        for (int i = 0; i < 4; i++) started &= j->started[i] == n * (n + 1) / 2.0;
        double mean_sq = 0;
        for (int k = 0; k < n; k++) mean_sq += 10.0 * k * k;
        avg &= j->avg[0] == (n - 1) / 2.0 && fabs(j->avg[1] - mean_sq / n) < 1e-12;
        errors &= j->bad_root == AG_ERR_ARG && j->bad_dtype == AG_ERR_DTYPE && j->strided == AG_ERR_ARG;
    }
    ok(all_ok, "%d ranks: every collective returned AG_OK on every rank, ranks and sizes right", n);
    ok(same, "%d ranks: every rank got the same bits from all_reduce (float64, float32)", n);
    ok(sums, "%d ranks: the sums are those in rank order (float64 bit for bit, float32, int64)", n);
    ok(bcast, "%d ranks: broadcast from rank %d reached every rank", n, 2 % n);
    ok(started, "%d ranks: an all-reduce started, polled with comm_test and finished gives the sum", n);
    ok(avg, "%d ranks: comm_average gives the mean over the ranks", n);
    ok(errors, "%d ranks: a root out of range, a bool tensor and a non-contiguous tensor are refused", n);
    for (int r = 0; r < n; r++) ag_comm_free(comms[r]);
}

/* ---- training ------------------------------------------------------------------------------- */
typedef struct train_job {
    ag_comm *comm;
    dist_cfg cfg;
    double values[MAX_VALUES];
    int64_t n;
    int buckets;
    ag_status st;
    char error[256];
} train_job;

static void *train_rank(void *arg) {
    train_job *j = arg;
    j->st = dist_train(j->comm, &j->cfg, j->values, MAX_VALUES, &j->n, &j->buckets);
    if (j->st) snprintf(j->error, sizeof j->error, "%s", ag_last_error());
    return NULL;
}

/* Trains cfg on cfg.world thread ranks; jobs gets each rank's result.  True when
 * every rank succeeded. */
static bool train_threads(const dist_cfg *cfg, train_job *jobs) {
    ag_comm *comms[MAX_RANKS];
    if (ag_comm_thread_new(cfg->world, comms)) return false;
    for (int r = 0; r < cfg->world; r++) jobs[r] = (train_job){.comm = comms[r], .cfg = *cfg};
    run_threads(cfg->world, train_rank, jobs, sizeof jobs[0]);
    bool good = true;
    for (int r = 0; r < cfg->world; r++) {
        if (jobs[r].st) diag("rank %d: %s", r, jobs[r].error);
        good &= jobs[r].st == AG_OK;
        ag_comm_free(comms[r]);
    }
    return good;
}

/* Every rank ends with the same bits, and within 1e-12 of one process on the
 * combined batch. */
static void check_training(const char *what, const dist_cfg *cfg) {
    train_job jobs[MAX_RANKS], alone;
    bool good = train_threads(cfg, jobs);
    alone = (train_job){.comm = NULL, .cfg = *cfg};
    train_rank(&alone);
    bool identical = good;
    for (int r = 1; good && r < cfg->world; r++)
        identical &= jobs[r].n == jobs[0].n && memcmp(jobs[r].values, jobs[0].values, sizeof(double) * (size_t)jobs[0].n) == 0;
    ok(good && identical, "%s: %d ranks end with bit-identical parameters (%lld values, %d buckets)", what,
       cfg->world, (long long)jobs[0].n, jobs[0].buckets);
    double diff = good && alone.st == AG_OK && alone.n == jobs[0].n ? dt_max_diff(jobs[0].values, alone.values, alone.n) : INFINITY;
    ok(diff <= 1e-12, "%s: %d ranks agree with one process on the combined batch (max |diff| %.3g)", what,
       cfg->world, diff);
}

typedef struct deep_job {
    ag_comm *comm;
    double out[200];
    int buckets;
    ag_status st;
} deep_job;

/* 40 Linear(2, 2) layers, a bucket for each of their 80 parameters, 3 SGD steps. */
static void *deep_rank(void *arg) {
    deep_job *j = arg;
    ag_manual_seed(5 + (uint64_t)ag_comm_rank(j->comm));
    ag_module *layers[40];
    for (int i = 0; i < 40; i++) layers[i] = ag_nn_linear(2, 2, true);
    ag_module *m = ag_nn_sequential(40, layers);
    ag_ddp_options o = ag_ddp_defaults();
    o.bucket_cap_bytes = 1;
    ag_ddp *d = ag_ddp_new(m, j->comm, &o);
    j->buckets = ag_ddp_num_buckets(d);
    j->st = d ? AG_OK : ag_last_status();
    for (int step = 0; !j->st && step < 3; step++) {
        ag_scope_begin();
        ag_tensor *x = ag_full(AG_SHAPE(3, 2), 0.5 + ag_comm_rank(j->comm), AG_F32);
        j->st = ag_backward(ag_sum(ag_square(ag_ddp_forward(d, x))));
        ag_tensor *p[80];
        int np = ag_module_parameters(m, p, 80);
        ag_no_grad_begin();
        for (int i = 0; !j->st && i < np; i++) ag_add_(p[i], ag_grad(p[i]), -0.01);
        ag_no_grad_end();
        ag_module_zero_grad(m);
        ag_scope_end();
    }
    ag_tensor *p[80];
    int np = ag_module_parameters(m, p, 80);
    for (int i = 0; !j->st && i < np; i++) ag_copy_to(p[i], j->out + 2 * i, 2, AG_F64); /* the first 2 values */
    ag_ddp_free(d);
    ag_module_free(m);
    return NULL;
}

static bool many_buckets(void) {
    ag_comm *comms[3];
    ag_comm_thread_new(3, comms);
    deep_job jobs[3];
    for (int r = 0; r < 3; r++) jobs[r] = (deep_job){.comm = comms[r]};
    run_threads(3, deep_rank, jobs, sizeof jobs[0]);
    bool good = true;
    for (int r = 0; r < 3; r++) {
        good &= jobs[r].st == AG_OK && jobs[r].buckets == 80 && memcmp(jobs[r].out, jobs[0].out, sizeof jobs[0].out) == 0;
        ag_comm_free(comms[r]);
    }
    return good;
}

static void test_training(void) {
    for (int w = 1; w <= 4; w++)
        check_training("SGD", &(dist_cfg){.world = w, .batch = 6, .accum = 1, .steps = 8, .overlap = true});
    check_training("Adam", &(dist_cfg){.world = 3, .batch = 5, .accum = 1, .steps = 8, .adam = true, .overlap = true});
    check_training("no_sync, 3 micro-batches", &(dist_cfg){.world = 2, .batch = 4, .accum = 3, .steps = 5, .overlap = true});
    check_training("SyncBatchNorm", &(dist_cfg){.world = 3, .batch = 4, .accum = 1, .steps = 6, .overlap = true,
                                                .batch_norm = true});
    check_training("SyncBatchNorm, Adam", &(dist_cfg){.world = 4, .batch = 3, .accum = 1, .steps = 6, .adam = true,
                                                      .overlap = true, .batch_norm = true});
    check_training("find_unused_parameters", &(dist_cfg){.world = 2, .batch = 4, .accum = 1, .steps = 5, .adam = true,
                                                         .overlap = true, .unused = true});
    check_training("static_graph with an unused layer", &(dist_cfg){.world = 3, .batch = 4, .accum = 2, .steps = 5,
                                                                    .adam = true, .overlap = true, .unused = true,
                                                                    .static_graph = true});

    /* Small buckets: overlap on and off give the same bits. */
    dist_cfg cfg = {.world = 3, .batch = 4, .accum = 2, .steps = 6, .adam = true, .overlap = true, .bucket_cap = 64};
    train_job on[MAX_RANKS], off[MAX_RANKS];
    bool good = train_threads(&cfg, on);
    cfg.overlap = false;
    good &= train_threads(&cfg, off);
    /* More buckets in flight than the thread backend's 64 slots: 80 one-parameter buckets. */
    ok(many_buckets(), "80 buckets of one parameter each, more than the backend's 64 slots: 3 ranks train, the same bits");
    ok(good && on[0].buckets == 4 && memcmp(on[0].values, off[0].values, sizeof(double) * (size_t)on[0].n) == 0,
       "buckets of 64 bytes (%d of them): overlap on and off end with the same bits", on[0].buckets);
}


/* ---- bucket rebuilding and static_graph ---------------------------------------------------- */
typedef struct rebuild_job {
    ag_comm *comm;
    int world;
    dtx_cfg cfg;
    dtx_result res;
    ag_status st;
} rebuild_job;

static void *rebuild_rank(void *arg) {
    rebuild_job *j = arg;
    j->st = dtx_run(j->comm, j->world, &j->cfg, &j->res);
    if (j->st) diag("rank %d: %s", ag_comm_rank(j->comm), ag_last_error());
    return NULL;
}

/* Trains cfg on world thread ranks; true when all succeeded and every rank ended
 * with the bits of one process and the same buckets as rank 0.  jobs[0] holds
 * rank 0's result. */
static bool rebuild_threads(int world, const dtx_cfg *cfg, rebuild_job *jobs, const dtx_result *alone) {
    ag_comm *comms[MAX_RANKS];
    if (ag_comm_thread_new(world, comms)) return false;
    for (int r = 0; r < world; r++) jobs[r] = (rebuild_job){.comm = comms[r], .world = world, .cfg = *cfg};
    run_threads(world, rebuild_rank, jobs, sizeof jobs[0]);
    bool good = true;
    for (int r = 0; r < world; r++) {
        if (jobs[r].st == AG_OK && jobs[r].res.n == alone->n && memcmp(jobs[r].res.values, alone->values, sizeof(double) * (size_t)alone->n))
            diag("rank %d: max |diff| from one process %.3g", r, dt_max_diff(jobs[r].res.values, alone->values, alone->n));
        if (jobs[r].res.buckets_after != jobs[0].res.buckets_after || memcmp(jobs[r].res.after, jobs[0].res.after, sizeof jobs[0].res.after))
            diag("rank %d: other buckets than rank 0's: %d starting %d", r, jobs[r].res.buckets_after, jobs[r].res.after[0]);
        if (jobs[r].st || jobs[r].res.n != alone->n) diag("rank %d: status %d, %lld values", r, jobs[r].st, (long long)jobs[r].res.n);
        good &= jobs[r].st == AG_OK && jobs[r].res.n == alone->n &&
                memcmp(jobs[r].res.values, alone->values, sizeof(double) * (size_t)alone->n) == 0 &&
                jobs[r].res.buckets_after == jobs[0].res.buckets_after &&
                memcmp(jobs[r].res.after, jobs[0].res.after, sizeof jobs[0].res.after) == 0;
        ag_comm_free(comms[r]);
    }
    return good;
}

static void test_rebuild(void) {
    dtx_cfg cfg = {.bucket_cap = 136, .overlap = true, .steps = 2};
    dtx_result alone;
    ok(dtx_run(NULL, 1, &cfg, &alone) == AG_OK && alone.narrival == DTX_PARAMS, "one process trains the swapped model");
    for (int world = 1; world <= 4; world *= 2) {
        rebuild_job jobs[MAX_RANKS];
        bool good = rebuild_threads(world, &cfg, jobs, &alone);
        const dtx_result *r = &jobs[0].res;
        ok(good, "%d thread ranks, buckets rebuilt after step 1: the bits of one process in float64", world);
        ok(good && memcmp(r->after, r->arrival, sizeof r->arrival) == 0 && memcmp(r->before, r->arrival, sizeof r->arrival) != 0,
           "%d ranks: the buckets after step 1 hold the parameters in the order their gradients arrived "
           "(%d %d %d %d %d %d), not the first guess (%d %d %d %d %d %d)", world, r->arrival[0], r->arrival[1],
           r->arrival[2], r->arrival[3], r->arrival[4], r->arrival[5], r->before[0], r->before[1], r->before[2],
           r->before[3], r->before[4], r->before[5]);
        if (world == 2)
            ok(good && r->buckets_before == 3 && r->buckets_after == 3 && r->nafter[0] == 3 && r->nafter[1] == 2,
               "2 ranks, 136-byte buckets: [%d %d %d] [%d %d] [%d] after the rebuild (the first two staged: their "
               "parameters are not neighbours)", r->after[0], r->after[1], r->after[2], r->after[3], r->after[4],
               r->after[5]);
    }
    dtx_cfg variants[] = {{.bucket_cap = 136, .overlap = false, .steps = 2},
                          {.bucket_cap = 136, .overlap = true, .static_graph = true, .steps = 2},
                          {.bucket_cap = 1, .overlap = true, .steps = 2},
                          {.bucket_cap = 1 << 20, .overlap = true, .static_graph = true, .steps = 2}};
    for (size_t v = 0; v < sizeof variants / sizeof variants[0]; v++) {
        rebuild_job jobs[MAX_RANKS];
        ok(rebuild_threads(2, &variants[v], &jobs[0], &alone) &&
               memcmp(jobs[0].res.after, jobs[0].res.arrival, sizeof jobs[0].res.arrival) == 0,
           "2 ranks, overlap %s, static_graph %s, %lld-byte buckets (%d after the rebuild): the bits of one process, "
           "buckets in arrival order", variants[v].overlap ? "on" : "off", variants[v].static_graph ? "on" : "off",
           (long long)variants[v].bucket_cap, jobs[0].res.buckets_after);
    }
}

/* ---- exact resume ---------------------------------------------------------------------------- */
typedef struct resume_job {
    ag_comm *comm;
    const char *path;
    int save_at;
    bool resume;
    double values[MAX_VALUES];
    int64_t n;
    ag_status st;
    char error[256];
} resume_job;

static void *resume_rank(void *arg) {
    resume_job *j = arg;
    j->st = dist_resume_run(j->comm, j->path, j->save_at, j->resume, 20, j->values, MAX_VALUES, &j->n);
    if (j->st) snprintf(j->error, sizeof j->error, "%s", ag_last_error());
    return NULL;
}

/* 3 ranks train 20 steps with dropout, saving at step 9; 3 fresh ranks load that
 * checkpoint and train steps 10-20: the same bits as the run that went on. */
static void test_resume(void) {
    char path[] = "/tmp/agrad_dist_resume_XXXXXX";
    int fd = mkstemp(path);
    if (fd >= 0) close(fd);
    resume_job straight[3], resumed[3];
    for (int pass = 0; pass < 2; pass++) {
        resume_job *jobs = pass ? resumed : straight;
        ag_comm *comms[3];
        ag_comm_thread_new(3, comms);
        for (int r = 0; r < 3; r++) jobs[r] = (resume_job){.comm = comms[r], .path = path, .save_at = pass ? 0 : 9, .resume = pass};
        run_threads(3, resume_rank, jobs, sizeof jobs[0]);
        for (int r = 0; r < 3; r++) ag_comm_free(comms[r]);
    }
    bool good = true, same = true, ranks_differ_without = true;
    for (int r = 0; r < 3; r++) {
        if (straight[r].st || resumed[r].st) diag("rank %d: %s %s", r, straight[r].error, resumed[r].error);
        good &= !straight[r].st && !resumed[r].st && straight[r].n == resumed[r].n;
        same &= good && memcmp(straight[r].values, resumed[r].values, sizeof(double) * (size_t)straight[r].n) == 0 &&
                memcmp(straight[r].values, straight[0].values, sizeof(double) * (size_t)straight[r].n) == 0;
    }
    ok(good && same, "3 thread ranks with dropout: resumed at step 9 from one checkpoint, they end with the bits of "
                     "the run that went on, on every rank");
    /* The checkpoint holds the 3 generators, different streams. */
    ag_state_dict *sd = ag_load_safetensors(path);
    ag_tensor *g = ag_state_dict_get(sd, "rng.ranks");
    if (g) {
        const int64_t *w = ag_data(g);
        ranks_differ_without = memcmp(w, w + 4, 32) != 0 && memcmp(w + 4, w + 8, 32) != 0;
    }
    ok(g && ag_size(g, 0) == 3 && ranks_differ_without, "the checkpoint's rng.ranks holds the 3 ranks' own generators");
    ag_state_dict_free(sd);

    /* 2 ranks cannot take up the generators of 3. */
    resume_job two[2];
    ag_comm *comms[2];
    ag_comm_thread_new(2, comms);
    for (int r = 0; r < 2; r++) two[r] = (resume_job){.comm = comms[r], .path = path, .resume = true};
    run_threads(2, resume_rank, two, sizeof two[0]);
    for (int r = 0; r < 2; r++) ag_comm_free(comms[r]);
    ok(two[0].st == AG_ERR_SHAPE && two[1].st == AG_ERR_SHAPE && strstr(two[0].error, "rng.ranks is int64 [3, 4]; 2 ranks need int64 [2, 4]"),
       "2 ranks loading the checkpoint of 3: AG_ERR_SHAPE (%s)", two[0].error);
    remove(path);
}

/* ---- the wrapper's checks ------------------------------------------------------------------- */
typedef struct unused_job {
    ag_comm *comm;
    ag_status second_forward;
    char error[300];
    int first, last, buckets;
} unused_job;

/* A model that leaves a layer out, wrapped without find_unused_parameters: the
 * next forward reports the parameter that got no gradient. */
static void *forgets_unused(void *arg) {
    unused_job *j = arg;
    dist_cfg cfg = {.unused = true};
    ag_module *m = dt_model(7, &cfg);
    ag_ddp *d = ag_ddp_new(m, j->comm, NULL);
    j->buckets = ag_ddp_num_buckets(d);
    ag_ddp_bucket_params(d, 0, &j->first, &j->last);
    ag_scope_begin();
    ag_tensor *x = ag_ones(AG_SHAPE(2, DT_IN), AG_F64);
    ag_backward(ag_sum(ag_ddp_forward(d, x)));
    j->second_forward = ag_ddp_forward(d, x) ? AG_OK : ag_last_status();
    snprintf(j->error, sizeof j->error, "%s", ag_last_error());
    ag_scope_end();
    ag_ddp_free(d);
    ag_module_free(m);
    return NULL;
}


typedef struct changed_job {
    ag_comm *comm;
    ag_status first, second;
    char error[300];
} changed_job;

/* static_graph on the model with an unused layer: the second iteration also
 * uses the spare layer, which the first left out. */
static void *changes_graph(void *arg) {
    changed_job *j = arg;
    dist_cfg cfg = {.unused = true};
    ag_module *m = dt_model(7, &cfg);
    ag_ddp_options o = ag_ddp_defaults();
    o.static_graph = true;
    ag_ddp *d = ag_ddp_new(m, j->comm, &o);
    ag_scope_begin();
    ag_tensor *x = ag_ones(AG_SHAPE(2, DT_IN), AG_F64);
    j->first = ag_backward(ag_sum(ag_ddp_forward(d, x)));
    ag_tensor *y = ag_ddp_forward(d, x);
    j->second = ag_backward(ag_add(ag_sum(y), ag_sum(ag_module_forward(ag_module_get_child(m, "spare"), x))));
    snprintf(j->error, sizeof j->error, "%s", ag_last_error());
    ag_scope_end();
    ag_ddp_free(d);
    ag_module_free(m);
    return NULL;
}

static void test_checks(void) {
    ag_comm *comms[2];
    ag_comm_thread_new(2, comms);
    unused_job jobs[2] = {{.comm = comms[0]}, {.comm = comms[1]}};
    run_threads(2, forgets_unused, jobs, sizeof jobs[0]);
    ok(jobs[0].second_forward == AG_ERR_GRAPH && jobs[1].second_forward == AG_ERR_GRAPH &&
           strstr(jobs[0].error, "\"spare.weight\"") && strstr(jobs[0].error, "find_unused_parameters"),
       "a parameter with no gradient: the next ddp_forward fails naming it (%s)", jobs[0].error);
    ok(jobs[0].buckets == 1 && jobs[0].first == 0 && jobs[0].last == 5, "6 small parameters: one bucket [%d, %d]",
       jobs[0].first, jobs[0].last);

    ag_module *m = ag_nn_linear(2, 2, true);
    changed_job cj[2] = {{.comm = comms[0]}, {.comm = comms[1]}};
    run_threads(2, changes_graph, cj, sizeof cj[0]);
    ok(cj[0].first == AG_OK && cj[0].second == AG_ERR_GRAPH && cj[1].second == AG_ERR_GRAPH &&
           strstr(cj[0].error, "static_graph") && strstr(cj[0].error, "the graph changed"),
       "static_graph: a parameter the first iteration left out that gets a gradient later: AG_ERR_GRAPH (%s)",
       cj[0].error);
    int idx[1];
    ok(ag_ddp_bucket_indices(NULL, 0, idx, 1) == -1 && ag_last_status() == AG_ERR_ARG,
       "ddp_bucket_indices of NULL: -1, AG_ERR_ARG");
    ok(ag_ddp_new(m, NULL, NULL) == NULL && ag_last_status() == AG_ERR_ARG, "ddp_new without a communicator: AG_ERR_ARG");
    ag_ddp_options o = ag_ddp_defaults();
    o.bucket_cap_bytes = 0;
    ok(ag_ddp_new(m, comms[0], &o) == NULL && ag_last_status() == AG_ERR_ARG, "bucket_cap_bytes 0: AG_ERR_ARG");
    ag_tensor *w = ag_module_get_parameter(m, "weight");
    ag_flatten_parameters(&w, 1, NULL, NULL);
    ok(ag_ddp_new(m, comms[0], NULL) == NULL && ag_last_status() == AG_ERR_ARG && strstr(ag_last_error(), "flattened already"),
       "a parameter flattened already: AG_ERR_ARG (%s)", ag_last_error());
    ag_module_free(m);
    ok(ag_comm_new(NULL, NULL, 0, 1, 0, 1) == NULL && ag_last_status() == AG_ERR_ARG, "comm_new without a backend: AG_ERR_ARG");
    ok(ag_comm_thread_new(0, comms) == AG_ERR_ARG, "comm_thread_new(0): AG_ERR_ARG");

    /* Threads per rank: the cores shared among the local ranks, OMP_NUM_THREADS first. */
    ag_comm *four[4];
    ag_comm_thread_new(4, four);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int share = (int)(cores / 4) < 1 ? 1 : (int)(cores / 4);
    const char *env = getenv("OMP_NUM_THREADS");
    char saved[64] = "";
    if (env) snprintf(saved, sizeof saved, "%s", env);
    unsetenv("OMP_NUM_THREADS");
    int got = ag_comm_set_threads(four[0]);
    ok(got == ag_get_num_threads() && got >= 1 && got <= share,
       "4 local ranks on %ld cores: comm_set_threads gives each at most %d threads (%d)", cores, share, got);
    setenv("OMP_NUM_THREADS", "3", 1);
    ag_set_num_threads(2);
    ok(ag_comm_set_threads(four[0]) == 2, "with OMP_NUM_THREADS set it changes nothing");
    if (saved[0]) setenv("OMP_NUM_THREADS", saved, 1);
    else unsetenv("OMP_NUM_THREADS");
    ag_set_num_threads(0);
    ok(ag_comm_set_threads(NULL) == 0 && ag_last_status() == AG_ERR_ARG, "comm_set_threads(NULL): AG_ERR_ARG");
    for (int r = 0; r < 4; r++) ag_comm_free(four[r]);

    /* SyncBatchNorm: conversion in place, its checks, eval mode. */
    ag_comm *one;
    ag_comm_thread_new(1, &one);
    ag_module *bn2 = ag_nn_batch_norm2d(2, 1e-5, 0.1, true, true);
    ag_module *net = AG_SEQUENTIAL(ag_nn_batch_norm1d(3, 1e-5, 0.1, true, true), ag_nn_identity(), bn2);
    ok(ag_convert_sync_batch_norm(net, one) == 2 && strcmp(ag_module_type_name(bn2), "SyncBatchNorm") == 0 &&
           ag_module_get_buffer(bn2, "running_var") != NULL,
       "convert_sync_batch_norm turns both BatchNorms into SyncBatchNorms in place, buffers kept");
    ok(ag_convert_sync_batch_norm(NULL, one) == -1 && ag_last_status() == AG_ERR_ARG, "convert of NULL: AG_ERR_ARG");
    ok(!ag_nn_sync_batch_norm(3, 1e-5, 0.1, true, true, NULL) && ag_last_status() == AG_ERR_ARG,
       "nn_sync_batch_norm without a communicator: AG_ERR_ARG");
    ag_module *sbn = ag_nn_sync_batch_norm(3, 1e-5, 0.1, true, true, one);
    ag_scope_begin();
    ok(!ag_module_forward(sbn, ag_ones(AG_SHAPE(1, 3), AG_F32)) && ag_last_status() == AG_ERR_VALUE,
       "one value per channel in training: %s", ag_last_error());
    ok(!ag_module_forward(sbn, ag_ones(AG_SHAPE(4, 2), AG_F32)) && ag_last_status() == AG_ERR_SHAPE,
       "2 channels for 3: %s", ag_last_error());
    ok(!ag_module_forward(sbn, ag_ones(AG_SHAPE(4), AG_F32)) && ag_last_status() == AG_ERR_SHAPE,
       "a 1-D input: %s", ag_last_error());
    ag_module_eval(sbn);
    ag_tensor *y = ag_module_forward(sbn, ag_full(AG_SHAPE(2, 3), 2.0, AG_F32));
    ok(y && fabs(ag_item(ag_sum(y)) - 12.0 / sqrt(1 + 1e-5)) < 1e-5, "eval mode normalises with the running statistics");
    ag_scope_end();
    ag_module_free(sbn);
    ag_module_free(net);
    ag_comm_free(one);
    ag_comm_free(comms[0]);
    ag_comm_free(comms[1]);
}

int main(void) {
    for (int n = 1; n <= 4; n++) test_collectives(n);
    test_training();
    test_rebuild();
    test_resume();
    test_checks();
    ok(ag_live_tensors() == 0, "no tensor is alive (%ld)", ag_live_tensors());
    return tap_done();
}

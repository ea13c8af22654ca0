/*
 * Data-parallel training under mpirun (suite mpi, run as mpirun -np 1..4): the
 * MPI backend's collectives, and the training runs of test_dist.c with ranks as
 * processes: every rank ends with the same bits (rank 0's values broadcast and
 * compared on every rank), within 1e-12 of one process on the combined batch
 * (each rank trains that reference itself), with SGD and Adam, no_sync
 * accumulation, find_unused_parameters, static_graph, overlap on and off giving
 * the same bits, and the buckets rebuilt in arrival order after step 1.  Rank 0 prints the TAP lines; every check is agreed over all ranks.
 */
#include <stdlib.h>
#include <string.h>
#include "agrad/agrad.h"
#include "agrad/mpi.h"
#include "dist_train.h"
#include "tap.h"

enum { MAX_VALUES = 256 };

static ag_comm *comm;
static int rank, world;

/* True when cond holds on every rank. */
static bool everywhere(bool cond) {
    double v = cond ? 0 : 1;
    ag_comm_average(comm, &v, 1);
    return v == 0;
}

#define check(cond, ...)                                                                               \
    do {                                                                                               \
        bool all_ = everywhere(cond);                                                                  \
        if (rank == 0) ok(all_, __VA_ARGS__);                                                          \
    } while (0)

static void test_collectives(void) {
    ag_scope_begin();
    double v[3] = {0.1 * (rank + 1), rank, -1};
    ag_tensor *a = ag_from_data(v, AG_SHAPE(3), AG_F64);
    ag_status st = ag_comm_all_reduce_(comm, a);
    double s[3];
    ag_copy_to(a, s, 3, AG_F64);
    double tenths = 0;
    for (int k = 0; k < world; k++) tenths += 0.1 * (k + 1);
    check(!st && fabs(s[0] - tenths) < 1e-15 && s[1] == world * (world - 1) / 2.0 && s[2] == -world,
          "%d ranks: all_reduce_ sums float64 over the ranks", world);
    ag_tensor *b = ag_full(AG_SHAPE(2, 2), rank, AG_I64);
    st = ag_comm_broadcast_(comm, b, world - 1);
    check(!st && ag_get(b, (int64_t[]){1, 1}) == world - 1, "%d ranks: broadcast from the last rank", world);
    ag_tensor *c = ag_full(AG_SHAPE(1000), rank + 1, AG_F32);
    ag_comm_request *q = ag_comm_all_reduce_start(comm, c);
    bool done = false;
    st = q ? AG_OK : ag_last_status();
    for (long spins = 0; !st && !done && spins < 100000000; spins++) st = ag_comm_test(q, &done);
    check(!st && done && ag_get(c, (int64_t[]){999}) == world * (world + 1) / 2.0,
          "%d ranks: a started all-reduce polled with comm_test until done gives the sum", world);
    double m[1] = {rank};
    st = ag_comm_average(comm, m, 1);
    check(!st && m[0] == (world - 1) / 2.0, "%d ranks: comm_average gives the mean", world);
    check(ag_comm_barrier(comm) == AG_OK && ag_comm_local_size(comm) >= 1 && ag_comm_local_rank(comm) >= 0 &&
              strcmp(ag_comm_backend_name(comm), "mpi") == 0,
          "%d ranks: barrier, local rank %d of %d, backend mpi", world, ag_comm_local_rank(comm),
          ag_comm_local_size(comm));
    ag_scope_end();
}

/* Trains cfg on every rank; the values end in out (rank 0's broadcast: *same says
 * whether this rank's were the same bits).  Returns the status. */
static ag_status train(const dist_cfg *cfg, double *out, int64_t *n, int *buckets, bool *same) {
    double mine[MAX_VALUES];
    ag_status st = dist_train(comm, cfg, mine, MAX_VALUES, n, buckets);
    if (st && rank == 0) diag("rank %d: %s", rank, ag_last_error());
    memcpy(out, mine, sizeof mine);
    ag_scope_begin();
    ag_tensor *t = ag_from_data(out, AG_SHAPE(MAX_VALUES), AG_F64);
    ag_comm_broadcast_(comm, t, 0);
    ag_copy_to(t, out, MAX_VALUES, AG_F64);
    ag_scope_end();
    *same = memcmp(out, mine, sizeof(double) * (size_t)*n) == 0;
    return st;
}

static void check_training(const char *what, dist_cfg cfg) {
    cfg.world = world;
    double got[MAX_VALUES], want[MAX_VALUES];
    int64_t n = 0, n_alone = 0;
    int buckets = 0;
    bool same = false;
    ag_status st = train(&cfg, got, &n, &buckets, &same);
    check(!st && same, "%s: %d ranks end with bit-identical parameters (%lld values, %d buckets)", what, world,
          (long long)n, buckets);
    ag_status st2 = dist_train(NULL, &cfg, want, MAX_VALUES, &n_alone, NULL);
    double diff = !st && !st2 && n == n_alone ? dt_max_diff(got, want, n) : INFINITY;
    check(diff <= 1e-12, "%s: %d ranks agree with one process on the combined batch (max |diff| %.3g)", what, world, diff);
}


/* Bucket rebuilding in exact arithmetic (dist_train.h's swapped model, 2 steps):
 * the buckets after step 1 follow the order the gradients arrived in, and the
 * parameters are one process's bits, with overlap on and off and static_graph. */
static void check_rebuild(void) {
    if (DTX_ROWS % world) {
        if (rank == 0) ok(1, "# SKIP %d rows do not split over %d ranks", DTX_ROWS, world);
        return;
    }
    dtx_cfg cfgs[] = {{.bucket_cap = 136, .overlap = true, .steps = 2},
                      {.bucket_cap = 136, .overlap = false, .steps = 2},
                      {.bucket_cap = 1, .overlap = true, .static_graph = true, .steps = 2}};
    for (size_t k = 0; k < sizeof cfgs / sizeof cfgs[0]; k++) {
        dtx_result got, alone;
        ag_status st = dtx_run(comm, world, &cfgs[k], &got);
        if (st) diag("rank %d: %s", rank, ag_last_error());
        ag_status st2 = dtx_run(NULL, 1, &cfgs[k], &alone);
        bool same = !st && !st2 && got.n == alone.n && memcmp(got.values, alone.values, sizeof(double) * (size_t)got.n) == 0;
        bool ordered = !st && got.narrival == DTX_PARAMS && memcmp(got.after, got.arrival, sizeof got.arrival) == 0 &&
                       memcmp(got.before, got.arrival, sizeof got.arrival) != 0;
        check(same && ordered,
              "%d ranks, overlap %s, static_graph %s, %lld-byte buckets: after step 1 the buckets hold the parameters "
              "in arrival order (%d %d %d %d %d %d, %d buckets), and the parameters are one process's bits", world,
              cfgs[k].overlap ? "on" : "off", cfgs[k].static_graph ? "on" : "off", (long long)cfgs[k].bucket_cap,
              got.after[0], got.after[1], got.after[2], got.after[3], got.after[4], got.after[5], got.buckets_after);
    }
}

int main(int argc, char **argv) {
    comm = ag_mpi_world(&argc, &argv);
    if (!comm) {
        printf("Bail out! %s\n", ag_last_error());
        return 1;
    }
    rank = ag_comm_rank(comm), world = ag_comm_size(comm);
    test_collectives();
    check_training("SGD", (dist_cfg){.batch = 6, .accum = 1, .steps = 8, .overlap = true});
    check_training("Adam", (dist_cfg){.batch = 5, .accum = 1, .steps = 8, .adam = true, .overlap = true});
    check_training("no_sync, 3 micro-batches", (dist_cfg){.batch = 4, .accum = 3, .steps = 5, .overlap = true});
    check_training("SyncBatchNorm", (dist_cfg){.batch = 4, .accum = 1, .steps = 6, .adam = true, .overlap = true,
                                               .batch_norm = true});
    check_training("find_unused_parameters",
                   (dist_cfg){.batch = 4, .accum = 1, .steps = 5, .adam = true, .overlap = true, .unused = true});
    check_training("static_graph with an unused layer", (dist_cfg){.batch = 4, .accum = 2, .steps = 5, .adam = true,
                                                                   .overlap = true, .unused = true, .static_graph = true});
    check_rebuild();

    dist_cfg cfg = {.world = world, .batch = 4, .accum = 2, .steps = 6, .adam = true, .overlap = true, .bucket_cap = 64};
    double on[MAX_VALUES], off[MAX_VALUES];
    int64_t n = 0;
    int buckets = 0;
    bool same1 = false, same2 = false;
    ag_status st = train(&cfg, on, &n, &buckets, &same1);
    cfg.overlap = false;
    if (!st) st = train(&cfg, off, &n, &buckets, &same2);
    check(!st && same1 && same2 && buckets == 4 && memcmp(on, off, sizeof(double) * (size_t)n) == 0,
          "%d ranks, buckets of 64 bytes (%d of them): overlap on and off end with the same bits", world, buckets);
    /* Exact resume under MPI: a run with dropout saved at step 9 (rank 0 writes
     * every rank's generator), and fresh processes' state loaded from it, end with
     * the bits of the run that went on. */
    char path[64];
    snprintf(path, sizeof path, "test_mpi_resume_np%d.safetensors", world);
    double straight[MAX_VALUES], resumed[MAX_VALUES];
    int64_t n1 = 0, n2 = 0;
    st = dist_resume_run(comm, path, 9, false, 20, straight, MAX_VALUES, &n1);
    ag_status st2 = st ? st : dist_resume_run(comm, path, 0, true, 20, resumed, MAX_VALUES, &n2);
    if (st2 && rank == 0) diag("%s", ag_last_error());
    check(!st && !st2 && n1 == n2 && memcmp(straight, resumed, sizeof(double) * (size_t)n1) == 0,
          "%d ranks with dropout: resumed from a checkpoint at step 9, they end with the bits of the run that went on",
          world);
    ag_comm_barrier(comm);
    if (rank == 0) remove(path);
    check(ag_live_tensors() == 0, "no tensor is alive (%ld)", ag_live_tensors());
    ag_comm_free(comm);
    return rank == 0 ? tap_done() : 0;
}

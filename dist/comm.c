/*
 * dist/comm.c - the communicator: rank, size and the collectives on tensors,
 * dispatched to a backend (dist/thread_comm.c in process, libagrad-mpi's over
 * MPI).  The checks live here, so every backend sees contiguous buffers of a
 * dtype it sums.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <omp.h>

#include "dist/internal.h"

ag_comm *ag_comm_new(const ag_comm_backend *backend, void *ctx, int rank, int size, int local_rank,
                     int local_size) {
    const char *bad = !backend ? "backend is NULL"
                      : !backend->all_reduce || !backend->broadcast ? "backend lacks all_reduce or broadcast"
                      : (!backend->all_reduce_start) != (!backend->test) || (!backend->test) != (!backend->wait)
                          ? "backend has only some of all_reduce_start, test and wait"
                      : size < 1 || rank < 0 || rank >= size ? "rank out of range"
                      : local_size < 1 || local_size > size || local_rank < 0 || local_rank >= local_size
                          ? "local rank out of range"
                          : NULL;
    if (bad) {
        if (backend && backend->destroy) backend->destroy(ctx);
        return ag__fail_null(AG_ERR_ARG, "comm_new: %s (rank %d of %d, local %d of %d)", bad, rank, size,
                             local_rank, local_size);
    }
    ag_comm *c = ag__alloc(sizeof *c);
    if (!c) {
        if (backend->destroy) backend->destroy(ctx);
        return ag__fail_null(AG_ERR_NOMEM, "comm_new: out of memory");
    }
    *c = (ag_comm){backend, ctx, rank, size, local_rank, local_size};
    return c;
}

ag_status ag_comm_fail(const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt ? fmt : "communication failed", ap);
    va_end(ap);
    return ag__fail(AG_ERR_BACKEND, "%s", msg);
}

void ag_comm_free(ag_comm *c) {
    if (!c) return;
    if (c->backend->destroy) c->backend->destroy(c->ctx);
    ag__free(c);
}

int ag_comm_rank(const ag_comm *c) { return c ? c->rank : -1; }
int ag_comm_size(const ag_comm *c) { return c ? c->size : -1; }
int ag_comm_local_rank(const ag_comm *c) { return c ? c->local_rank : -1; }
int ag_comm_local_size(const ag_comm *c) { return c ? c->local_size : -1; }
const char *ag_comm_backend_name(const ag_comm *c) { return c && c->backend->name ? c->backend->name : ""; }

/* The sum over one rank is the buffer itself: no backend call. */
ag_status ag__comm_sum(ag_comm *c, void *buf, int64_t count, ag_dtype dtype) {
    if (c->size == 1 || count == 0) return AG_OK;
    return c->backend->all_reduce(c->ctx, buf, count, dtype);
}

/* A request of a backend without non-blocking calls (or of one rank) is done at
 * its start; it is represented by NULL. */
ag_status ag__comm_sum_start(ag_comm *c, void *buf, int64_t count, ag_dtype dtype, void **req) {
    *req = NULL;
    if (c->size == 1 || count == 0) return AG_OK;
    if (!c->backend->all_reduce_start) return c->backend->all_reduce(c->ctx, buf, count, dtype);
    return c->backend->all_reduce_start(c->ctx, buf, count, dtype, req);
}

ag_status ag__comm_test(ag_comm *c, void *req, bool *done) {
    *done = true;
    return req ? c->backend->test(c->ctx, req, done) : AG_OK;
}

ag_status ag__comm_finish(ag_comm *c, void *req) { return req ? c->backend->wait(c->ctx, req) : AG_OK; }

/* AG_OK when t can be summed in place by op, else the error. */
static ag_status check_buffer(const char *op, const ag_comm *c, const ag_tensor *t, bool any_dtype) {
    if (!c || !t) return ag__fail(AG_ERR_ARG, "%s: %s is NULL", op, c ? "t" : "comm");
    char s[AG_SHAPE_STR];
    if (!any_dtype && t->dtype != AG_F32 && t->dtype != AG_F64 && t->dtype != AG_I64)
        return ag__fail(AG_ERR_DTYPE, "%s: expected float32, float64 or int64, got %s %s", op,
                        ag_dtype_name(t->dtype), ag__tshape(s, t));
    if (!ag__contig(t))
        return ag__fail(AG_ERR_ARG, "%s: the tensor (%s %s) is not contiguous", op, ag_dtype_name(t->dtype),
                        ag__tshape(s, t));
    return AG_OK;
}

ag_status ag_comm_all_reduce_(ag_comm *c, ag_tensor *t) {
    AG_CHECK_HANDLES(ag_last_status(), "comm_all_reduce_", t);
    ag_status st = check_buffer("comm_all_reduce_", c, t, false);
    if (!st) st = ag__comm_sum(c, ag__ptr(t), ag_numel(t), t->dtype);
    if (!st) ag__bump_version(t);
    return st;
}

ag_status ag_comm_broadcast_(ag_comm *c, ag_tensor *t, int root) {
    AG_CHECK_HANDLES(ag_last_status(), "comm_broadcast_", t);
    ag_status st = check_buffer("comm_broadcast_", c, t, true);
    if (st) return st;
    if (root < 0 || root >= c->size)
        return ag__fail(AG_ERR_ARG, "comm_broadcast_: root %d out of range (size %d)", root, c->size);
    int64_t nbytes = ag_numel(t) * (int64_t)ag__esize(t->dtype);
    if (c->size == 1 || nbytes == 0) return AG_OK;
    st = c->backend->broadcast(c->ctx, ag__ptr(t), nbytes, root);
    if (!st && c->rank != root) ag__bump_version(t);
    return st;
}

struct ag_comm_request {
    ag_comm *comm;
    void *req;
    ag_tensor *t; /* retained until the request finishes */
};

static void request_done(ag_comm_request *r) {
    ag__bump_version(r->t);
    ag__release(r->t);
    ag__free(r);
}

ag_comm_request *ag_comm_all_reduce_start(ag_comm *c, ag_tensor *t) {
    AG_CHECK_HANDLES(NULL, "comm_all_reduce_start", t);
    if (check_buffer("comm_all_reduce_start", c, t, false)) return NULL;
    ag_comm_request *r = ag__alloc(sizeof *r);
    if (!r) return ag__fail_null(AG_ERR_NOMEM, "comm_all_reduce_start: out of memory");
    *r = (ag_comm_request){c, NULL, t};
    if (ag__comm_sum_start(c, ag__ptr(t), ag_numel(t), t->dtype, &r->req)) {
        ag__free(r);
        return NULL;
    }
    ag__retain(t);
    return r;
}

ag_status ag_comm_test(ag_comm_request *r, bool *done) {
    if (!r || !done) return ag__fail(AG_ERR_ARG, "comm_test: %s is NULL", r ? "done" : "request");
    ag_status st = ag__comm_test(r->comm, r->req, done);
    if (st || *done) request_done(r);
    return st;
}

ag_status ag_comm_wait(ag_comm_request *r) {
    if (!r) return AG_OK;
    ag_status st = ag__comm_finish(r->comm, r->req);
    request_done(r);
    return st;
}

ag_status ag_comm_barrier(ag_comm *c) {
    if (!c) return ag__fail(AG_ERR_ARG, "comm_barrier: comm is NULL");
    int64_t one = 1;
    return ag__comm_sum(c, &one, 1, AG_I64);
}

ag_status ag_comm_average(ag_comm *c, double *values, int n) {
    if (!c || (!values && n > 0) || n < 0)
        return ag__fail(AG_ERR_ARG, "comm_average: %s", !c ? "comm is NULL" : "bad values or n");
    ag_status st = ag__comm_sum(c, values, n, AG_F64);
    for (int i = 0; !st && i < n; i++) values[i] /= c->size;
    return st;
}

int ag_comm_set_threads(const ag_comm *c) {
    if (!c) return ag__fail(AG_ERR_ARG, "comm_set_threads: comm is NULL"), 0;
    const char *env = getenv("OMP_NUM_THREADS");
    if (env && *env) return ag_get_num_threads();
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    int mine = omp_get_num_procs(); /* the cores of this process's affinity mask */
    int share = online > 0 ? (int)(online / c->local_size) : mine;
    int n = mine < share ? mine : share;
    ag_set_num_threads(n < 1 ? 1 : n);
    return ag_get_num_threads();
}

/*
 * dist/internal.h - what the files of dist/ share: the communicator's layout.
 */
#ifndef AGRAD_DIST_INTERNAL_H
#define AGRAD_DIST_INTERNAL_H

#include "core/internal.h"
#include "agrad/dist.h"

struct ag_comm {
    const ag_comm_backend *backend;
    void *ctx;
    int rank, size, local_rank, local_size;
};

/* The sum over the ranks of count elements at buf, in place (no tensor checks):
 * the backend's all_reduce. */
AG_HIDDEN ag_status ag__comm_sum(ag_comm *c, void *buf, int64_t count, ag_dtype dtype);
/* Starts the same sum; *req gets the backend's request (finish it with
 * ag__comm_test / ag__comm_finish). */
AG_HIDDEN ag_status ag__comm_sum_start(ag_comm *c, void *buf, int64_t count, ag_dtype dtype, void **req);
AG_HIDDEN ag_status ag__comm_test(ag_comm *c, void *req, bool *done);
AG_HIDDEN ag_status ag__comm_finish(ag_comm *c, void *req);

#endif

/*
 * mpi/comm_mpi.c - libagrad-mpi: the ag_comm_backend over MPI.
 *
 * all_reduce is MPI_Allreduce with MPI_SUM in place, broadcast MPI_Bcast of
 * bytes, a started all-reduce MPI_Iallreduce (progressed by MPI_Test from the
 * gradient hooks).  Buffers of more than INT_MAX elements go in pieces.  The
 * local rank (ranks on this machine) comes from MPI_Comm_split_type(SHARED).
 * Only agrad's public API is used: this library sits beside libagrad, not in it.
 */
#include <limits.h>
#include <stdlib.h>

#include "agrad/mpi.h"
#include "agrad/tensor.h"

#define PIECE INT_MAX

typedef struct mpi_ctx {
    MPI_Comm comm;
} mpi_ctx;

typedef struct mpi_request {
    int n;
    MPI_Request r[]; /* one per piece */
} mpi_request;

static int made;            /* communicators of this library alive */
static bool we_initialised; /* MPI_Init_thread was ours: finalise with the last communicator */

static ag_status failed(const char *call, int code) {
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(code, msg, &len) != MPI_SUCCESS) len = 0;
    msg[len] = '\0';
    return ag_comm_fail("mpi: %s failed: %s", call, len ? msg : "unknown error");
}

static MPI_Datatype mpi_type(ag_dtype dtype) {
    return dtype == AG_F32 ? MPI_FLOAT : dtype == AG_F64 ? MPI_DOUBLE : MPI_INT64_T;
}

static ag_status all_reduce(void *ctx, void *buf, int64_t count, ag_dtype dtype) {
    mpi_ctx *c = ctx;
    size_t esize = ag_dtype_size(dtype);
    for (int64_t off = 0; off < count; off += PIECE) {
        int n = count - off < PIECE ? (int)(count - off) : PIECE;
        int rc = MPI_Allreduce(MPI_IN_PLACE, (char *)buf + (size_t)off * esize, n, mpi_type(dtype), MPI_SUM, c->comm);
        if (rc != MPI_SUCCESS) return failed("MPI_Allreduce", rc);
    }
    return AG_OK;
}

static ag_status broadcast(void *ctx, void *buf, int64_t nbytes, int root) {
    mpi_ctx *c = ctx;
    for (int64_t off = 0; off < nbytes; off += PIECE) {
        int n = nbytes - off < PIECE ? (int)(nbytes - off) : PIECE;
        int rc = MPI_Bcast((char *)buf + off, n, MPI_BYTE, root, c->comm);
        if (rc != MPI_SUCCESS) return failed("MPI_Bcast", rc);
    }
    return AG_OK;
}

static ag_status all_reduce_start(void *ctx, void *buf, int64_t count, ag_dtype dtype, void **req) {
    mpi_ctx *c = ctx;
    int pieces = (int)((count + PIECE - 1) / PIECE);
    mpi_request *q = malloc(sizeof *q + sizeof(MPI_Request) * (size_t)pieces);
    if (!q) return ag_comm_fail("mpi: out of memory for a request");
    q->n = 0;
    size_t esize = ag_dtype_size(dtype);
    for (int64_t off = 0; off < count; off += PIECE) {
        int n = count - off < PIECE ? (int)(count - off) : PIECE;
        int rc = MPI_Iallreduce(MPI_IN_PLACE, (char *)buf + (size_t)off * esize, n, mpi_type(dtype), MPI_SUM,
                                c->comm, &q->r[q->n]);
        if (rc != MPI_SUCCESS) {
            MPI_Waitall(q->n, q->r, MPI_STATUSES_IGNORE);
            free(q);
            return failed("MPI_Iallreduce", rc);
        }
        q->n++;
    }
    *req = q;
    return AG_OK;
}

static ag_status test(void *ctx, void *req, bool *done) {
    (void)ctx;
    mpi_request *q = req;
    int flag = 0, rc = MPI_Testall(q->n, q->r, &flag, MPI_STATUSES_IGNORE);
    *done = rc != MPI_SUCCESS || flag;
    if (*done) free(q);
    return rc == MPI_SUCCESS ? AG_OK : failed("MPI_Testall", rc);
}

static ag_status wait(void *ctx, void *req) {
    (void)ctx;
    mpi_request *q = req;
    int rc = MPI_Waitall(q->n, q->r, MPI_STATUSES_IGNORE);
    free(q);
    return rc == MPI_SUCCESS ? AG_OK : failed("MPI_Waitall", rc);
}

static void destroy(void *ctx) {
    mpi_ctx *c = ctx;
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Comm_free(&c->comm);
    free(c);
    if (--made == 0 && we_initialised && !finalized) {
        MPI_Finalize();
        we_initialised = false;
    }
}

static const ag_comm_backend mpi_backend = {"mpi", all_reduce, broadcast, all_reduce_start, test, wait, destroy};

ag_comm *ag_mpi_comm(MPI_Comm comm) {
    int initialized = 0, finalized = 0;
    MPI_Initialized(&initialized);
    MPI_Finalized(&finalized);
    if (!initialized || finalized) {
        ag_comm_fail("mpi_comm: MPI is %s", initialized ? "finalised already" : "not initialised");
        return NULL;
    }
    mpi_ctx *c = malloc(sizeof *c);
    if (!c) {
        ag_comm_fail("mpi_comm: out of memory");
        return NULL;
    }
    int rank = 0, size = 0, local_rank = 0, local_size = 1, rc;
    MPI_Comm local = MPI_COMM_NULL;
    if ((rc = MPI_Comm_dup(comm, &c->comm)) != MPI_SUCCESS) {
        free(c);
        failed("MPI_Comm_dup", rc);
        return NULL;
    }
    MPI_Comm_set_errhandler(c->comm, MPI_ERRORS_RETURN); /* errors come back as statuses */
    MPI_Comm_rank(c->comm, &rank);
    MPI_Comm_size(c->comm, &size);
    if ((rc = MPI_Comm_split_type(c->comm, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &local)) == MPI_SUCCESS) {
        MPI_Comm_rank(local, &local_rank);
        MPI_Comm_size(local, &local_size);
        MPI_Comm_free(&local);
    }
    made++; /* before ag_comm_new, which destroys c on failure */
    return ag_comm_new(&mpi_backend, c, rank, size, local_rank, local_size);
}

ag_comm *ag_mpi_world(int *argc, char ***argv) {
    int initialized = 0, provided = 0;
    MPI_Initialized(&initialized);
    if (!initialized) {
        int rc = MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
        if (rc != MPI_SUCCESS) {
            failed("MPI_Init_thread", rc);
            return NULL;
        }
        we_initialised = true;
    }
    ag_comm *c = ag_mpi_comm(MPI_COMM_WORLD);
    if (!c && made == 0 && we_initialised) {
        MPI_Finalize();
        we_initialised = false;
    }
    if (c) ag_comm_set_threads(c);
    return c;
}

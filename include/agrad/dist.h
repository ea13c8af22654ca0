/*
 * agrad/dist.h - data-parallel training (torch.distributed and
 * torch.nn.parallel.DistributedDataParallel): communicators and the
 * data-parallel wrapper.  docs/distributed.md is the guide.
 *
 * A communicator (ag_comm) joins `size` ranks, each running the same program on
 * its own share of the data.  It sums a buffer over the ranks (all-reduce),
 * copies one rank's buffer to the others (broadcast), and can start an
 * all-reduce and finish it later, so communication overlaps computation.  It is
 * transport-neutral: a backend (ag_comm_backend) supplies the collectives.
 * libagrad ships the in-process backend over threads (ag_comm_thread_new: each
 * rank a thread of one process, for tests and for machines without MPI);
 * libagrad-mpi (agrad/mpi.h) supplies Open MPI's, so libagrad never links MPI.
 *
 * Collectives are called by every rank of a communicator in the same order with
 * matching sizes, as in MPI; a rank that skips one makes the others wait.
 */
#ifndef AGRAD_DIST_H
#define AGRAD_DIST_H

#include "agrad/nn.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ag_comm ag_comm;
typedef struct ag_comm_request ag_comm_request;
typedef struct ag_ddp ag_ddp;

/* ---- backends ---------------------------------------------------------------------- */
/* What a transport supplies; ctx is its own state.  Every entry returns AG_OK or
 * an error status after recording a message (ag_comm_fail).  Buffers are
 * contiguous and hold count elements of dtype (float32, float64 or int64).
 *   all_reduce: buf becomes the sum over the ranks, the same bits on every rank.
 *   broadcast: root's nbytes bytes are copied into buf on every other rank.
 *   all_reduce_start: starts an all_reduce of buf and writes a request to *req;
 *     buf is not to be touched until test reports it done or wait returns.
 *   test: *done = whether req finished (then req is freed); drives progress.
 *   wait: blocks until req finished and frees it.
 *   destroy: frees ctx (called by ag_comm_free; may be NULL). */
typedef struct ag_comm_backend {
    const char *name;
    ag_status (*all_reduce)(void *ctx, void *buf, int64_t count, ag_dtype dtype);
    ag_status (*broadcast)(void *ctx, void *buf, int64_t nbytes, int root);
    ag_status (*all_reduce_start)(void *ctx, void *buf, int64_t count, ag_dtype dtype, void **req);
    ag_status (*test)(void *ctx, void *req, bool *done);
    ag_status (*wait)(void *ctx, void *req);
    void (*destroy)(void *ctx);
} ag_comm_backend;

/* A communicator over a backend: this process is rank `rank` of `size`, the
 * `local_rank`-th of `local_size` ranks on its machine.  backend is borrowed (a
 * static table); ctx is owned from now on (destroyed with the communicator, and
 * on failure).  NULL with AG_ERR_ARG (a NULL or incomplete backend, ranks out of
 * range) or AG_ERR_NOMEM. */
AG_API ag_comm *ag_comm_new(const ag_comm_backend *backend, void *ctx, int rank, int size, int local_rank,
                            int local_size);
/* Records a communication failure (AG_ERR_BACKEND) with a printf-style message, for
 * backends; returns AG_ERR_BACKEND. */
AG_API ag_status ag_comm_fail(const char *fmt, ...);
/* Frees the communicator (and its backend state).  NULL is ignored. */
AG_API void ag_comm_free(ag_comm *c);

/* The in-process backend: n communicators of one group of n ranks, written to
 * comms[0..n), comms[r] to be used by one thread as rank r (each freed with
 * ag_comm_free; the group goes with the last).  Sums run in rank order, so every
 * rank gets the same bits.  AG_OK, AG_ERR_ARG (n < 1, NULL comms), AG_ERR_NOMEM. */
AG_API ag_status ag_comm_thread_new(int n, ag_comm **comms);

/* ---- using a communicator (torch.distributed) --------------------------------------- */
AG_API int ag_comm_rank(const ag_comm *c);       /* get_rank(); -1 for NULL */
AG_API int ag_comm_size(const ag_comm *c);       /* get_world_size(); -1 for NULL */
AG_API int ag_comm_local_rank(const ag_comm *c); /* LOCAL_RANK: among the ranks of this machine */
AG_API int ag_comm_local_size(const ag_comm *c); /* LOCAL_WORLD_SIZE */
AG_API const char *ag_comm_backend_name(const ag_comm *c); /* "threads", "mpi"; "" for NULL */
/* all_reduce(t, op=SUM) in place: t (contiguous float32, float64 or int64, the
 * same shape on every rank) becomes the sum over the ranks, its version bumped.
 * AG_OK; AG_ERR_ARG (NULL, not contiguous), AG_ERR_DTYPE, AG_ERR_BACKEND. */
AG_API ag_status ag_comm_all_reduce_(ag_comm *c, ag_tensor *t);
/* broadcast(t, src=root) in place: t (contiguous, any dtype) becomes root's t. */
AG_API ag_status ag_comm_broadcast_(ag_comm *c, ag_tensor *t, int root);
/* all_reduce(t, async_op=True): starts the sum and returns its request (t retained
 * until it finishes; leave t alone until then), or NULL with an error as above. */
AG_API ag_comm_request *ag_comm_all_reduce_start(ag_comm *c, ag_tensor *t);
/* Work.is_completed(): *done = whether r finished; a finished request is freed
 * (do not use r again).  Drives the backend's progress.  AG_OK or an error (r freed). */
AG_API ag_status ag_comm_test(ag_comm_request *r, bool *done);
/* Work.wait(): blocks until r finished, then frees it.  NULL is AG_OK. */
AG_API ag_status ag_comm_wait(ag_comm_request *r);
/* barrier(): returns once every rank has called it. */
AG_API ag_status ag_comm_barrier(ag_comm *c);
/* Replaces values[0..n) by their mean over the ranks (for logging a loss or a
 * metric every rank measured on its own share).  Every rank gets the same bits. */
AG_API ag_status ag_comm_average(ag_comm *c, double *values, int n);

/* Sets this thread's agrad thread count (ag_set_num_threads) so that the ranks
 * of one machine share its cores instead of oversubscribing them: the cores this
 * process may run on (its CPU affinity: one when mpirun binds each rank to a
 * core), at most the machine's cores divided by local_size, at least 1.  When
 * OMP_NUM_THREADS is set it wins and nothing changes.  Returns the thread count
 * now in force; 0 with AG_ERR_ARG for a NULL c. */
AG_API int ag_comm_set_threads(const ag_comm *c);

/* ---- the data-parallel wrapper (DistributedDataParallel) ----------------------------- */
typedef struct ag_ddp_options {
    int64_t bucket_cap_bytes;     /* bucket_cap_mb: gradients per all-reduce (default 25 MiB;
                                     the first bucket, the last layers', 1 MiB as PyTorch) */
    bool find_unused_parameters;  /* walk each forward's graph; parameters it does not reach
                                     count as ready with the gradient they hold */
    bool broadcast_buffers;       /* rank 0's buffers to every rank at each forward (default on) */
    bool overlap;                 /* start each bucket's all-reduce during backward as soon as
                                     its gradients are ready (default on); off: all buckets
                                     after backward.  The results are the same bits. */
    bool static_graph;            /* DDP(static_graph=True): the graph is the same every iteration.
                                     The first synchronised forward walks it (as
                                     find_unused_parameters) and the parameters it leaves out
                                     count as ready in every later backward without a walk; a
                                     parameter the first iteration left out that gets a gradient
                                     later is an AG_ERR_GRAPH (the graph changed). */
} ag_ddp_options;
/* The defaults: 25 MiB buckets, find_unused_parameters off, broadcast_buffers on,
 * overlap on, static_graph off. */
AG_API ag_ddp_options ag_ddp_defaults(void);
/* Wraps model for data-parallel training over c: moves its trainable parameters
 * into one flat buffer (ag_flatten_parameters: every handle stays valid, so an
 * optimizer made before or after works), broadcasts the parameters and buffers
 * from rank 0, and registers post-accumulate-grad hooks that all-reduce
 * gradient buckets during backward.  After each backward outside no_sync, every
 * trainable parameter's .grad is the mean over the ranks of the ranks' gradients.
 * model and c are borrowed and must outlive the wrapper.  o NULL: the defaults.
 * NULL with AG_ERR_ARG (NULL model or c, no trainable parameter, parameters that
 * cannot be flattened, e.g. of two dtypes or flattened already), AG_ERR_NOMEM, or a
 * communication error. */
AG_API ag_ddp *ag_ddp_new(ag_module *model, ag_comm *c, const ag_ddp_options *o);
/* ddp(x): the model's forward, after broadcasting buffers (broadcast_buffers) and
 * checking that the previous backward's reduction finished (AG_ERR_GRAPH
 * otherwise: a parameter got no gradient; find_unused_parameters handles that);
 * with find_unused_parameters, marks the parameters the output does not depend
 * on.  Returns the output as ag_module_forward, or NULL with an error. */
AG_API ag_tensor *ag_ddp_forward(ag_ddp *d, ag_tensor *x);
/* with ddp.no_sync(): the backward passes between begin and end accumulate
 * gradients locally; the first backward after end reduces the accumulated sum. */
AG_API void ag_ddp_no_sync_begin(ag_ddp *d);
AG_API void ag_ddp_no_sync_end(ag_ddp *d);
/* The wrapped model (ddp.module), borrowed. */
AG_API ag_module *ag_ddp_module(const ag_ddp *d);
/* Number of gradient buckets (0 for NULL d).  The buckets are first cut from the
 * last parameter back; the first synchronised forward after a synchronised
 * backward rebuilds them in the order that backward's gradients arrived in on
 * rank 0 (as PyTorch's reducer after its first iteration), so the count may
 * change then. */
AG_API int ag_ddp_num_buckets(const ag_ddp *d);
/* The lowest and highest parameter (indices in ag_module_parameter order among the
 * trainable ones) of bucket b in *first, *last; a rebuilt bucket may hold fewer
 * than the range (ag_ddp_bucket_indices lists them).  AG_ERR_ARG for NULL
 * arguments, AG_ERR_INDEX for b out of range. */
AG_API ag_status ag_ddp_bucket_params(const ag_ddp *d, int b, int *first, int *last);
/* Writes the parameters of bucket b, in the order they were put in (the arrival
 * order once rebuilt), to out (at most cap of them) and returns how many it holds;
 * -1 with AG_ERR_ARG (NULL d, NULL out with cap > 0, negative cap) or AG_ERR_INDEX
 * (b out of range). */
AG_API int ag_ddp_bucket_indices(const ag_ddp *d, int b, int *out, int cap);
/* Seconds the last synchronised backward spent waiting for all-reduces that
 * computation did not hide (the exposed communication). */
AG_API double ag_ddp_last_wait_seconds(const ag_ddp *d);
/* Removes the hooks and frees the wrapper; the parameters stay in their flat
 * buffer (and keep their values and gradients).  NULL is ignored. */
AG_API void ag_ddp_free(ag_ddp *d);

/* ---- SyncBatchNorm ------------------------------------------------------------------------ */
/* nn.SyncBatchNorm(num_features, eps, momentum, affine, track_running_stats) over c:
 * BatchNorm of x [N, C, *] whose training statistics are the global batch's (every
 * rank's share: a collective in each training forward and backward, so every rank
 * runs them alike); eval mode uses the running statistics, as BatchNorm.  Its
 * parameters and buffers are BatchNorm's (weight, bias, running_mean, running_var,
 * num_batches_tracked), so state dicts load in both.  c is borrowed (it must outlive
 * the module).  NULL with AG_ERR_ARG (NULL c, num_features < 1) or AG_ERR_NOMEM. */
AG_API ag_module *ag_nn_sync_batch_norm(int64_t num_features, double eps, double momentum, bool affine,
                                        bool track_running_stats, ag_comm *c);
/* SyncBatchNorm.convert_sync_batchnorm(m): every BatchNorm1d and BatchNorm2d in m (m
 * included) becomes a SyncBatchNorm over c in place: the same handles, parameters,
 * buffers and hooks.  Call it before ag_ddp_new.  Returns how many were converted,
 * or -1 with AG_ERR_ARG (NULL m or c) or AG_ERR_NOMEM. */
AG_API int ag_convert_sync_batch_norm(ag_module *m, ag_comm *c);

#ifdef __cplusplus
}
#endif
#endif

/*
 * agrad/core.h - types, the error model, ownership (scopes) and allocation.
 *
 * Error model.  Every function that can fail either returns NULL (functions
 * returning a tensor) or a non-zero ag_status (functions returning a status).
 * The failing call records a message naming the operation and the shapes
 * involved, retrievable with ag_last_error() on the same thread.  Every op
 * accepts NULL inputs and then returns NULL without touching the recorded
 * message, so a whole forward pass needs a single check at the end and the
 * message still names the first failure.  Nothing in agrad aborts the process
 * on a user mistake.
 *
 * Ownership model.  Tensors are reference counted.  A new tensor returned by an
 * agrad function (an op's result, a view, a creation) is owned by the innermost
 * open scope (ag_scope_begin) if there is one, otherwise by the caller, who drops
 * it with ag_release(); nothing else the call made outlives it, scope or not.
 * In-place functions (named with a trailing _) return their argument and
 * accessors (ag_grad, ag_module_parameter, ...) lend a tensor: neither adds a
 * reference.  Closing a scope releases every tensor created inside it, so a
 * training step wrapped in a scope needs no free per intermediate.  ag_keep()
 * moves a tensor out of the innermost scope.  Graph nodes hold references to the
 * tensors they need, so the recorded graph lives exactly as long as its outputs.
 */
#ifndef AGRAD_CORE_H
#define AGRAD_CORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(AGRAD_BUILDING) && defined(__GNUC__)
#define AG_API __attribute__((visibility("default")))
#else
#define AG_API
#endif

/* Largest number of dimensions a tensor may have. */
#define AG_MAX_DIMS 16

typedef struct ag_tensor ag_tensor;

typedef enum ag_dtype {
    AG_F32 = 0,  /* float, the default for models */
    AG_F64 = 1,  /* double, for gradient checks and precise work */
    AG_I64 = 2,  /* int64_t, for indices and class labels (not differentiable) */
    AG_BOOL = 3, /* bool stored as one byte, for masks (not differentiable) */
    AG_U8 = 4    /* uint8_t, for raw data such as image bytes (not differentiable) */
} ag_dtype;

/* A shape, outermost dimension first as in PyTorch. */
typedef struct ag_shape {
    int ndim;
    int64_t dim[AG_MAX_DIMS];
} ag_shape;

#define AG__NARG(...) AG__NARG_(__VA_ARGS__, 16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0)
#define AG__NARG_(_1, _2, _3, _4, _5, _6, _7, _8, _9, _10, _11, _12, _13, _14, _15, _16, N, ...) N
/* AG_SHAPE(2, 3) is the shape [2, 3]; for a 0-d shape use AG_SCALAR_SHAPE. */
#define AG_SHAPE(...) ((ag_shape){AG__NARG(__VA_ARGS__), {__VA_ARGS__}})
#define AG_SCALAR_SHAPE ((ag_shape){0, {0}})

/* A function of n tensors returning one tensor (ag_gradcheck's argument); ctx is
 * passed through. */
typedef ag_tensor *(*ag_fn)(ag_tensor *const *inputs, int n, void *ctx);

typedef enum ag_status {
    AG_OK = 0,
    AG_ERR_ARG,     /* invalid argument: NULL, bad dim, bad option */
    AG_ERR_SHAPE,   /* shapes that do not fit together */
    AG_ERR_DTYPE,   /* dtypes that do not fit together */
    AG_ERR_INDEX,   /* an index out of range */
    AG_ERR_VALUE,   /* a value outside the op's domain */
    AG_ERR_GRAPH,   /* autograd misuse: backward twice, in-place change of a saved tensor */
    AG_ERR_NOMEM,   /* an allocation failed */
    AG_ERR_IO,      /* a file could not be read or written */
    AG_ERR_FORMAT,  /* a file's contents are corrupt */
    AG_ERR_BACKEND  /* oneDNN, or a communication backend (agrad/dist.h), reported a failure */
} ag_status;

/* Status of the last failing call on this thread (AG_OK if none since the last clear). */
AG_API ag_status ag_last_status(void);
/* Message of the last failing call on this thread; "" if none.  Owned by agrad, valid until the next failure. */
AG_API const char *ag_last_error(void);
/* Forgets the recorded error of this thread. */
AG_API void ag_clear_error(void);
/* Short name of a status, e.g. "shape error". Never NULL. */
AG_API const char *ag_status_name(ag_status s);

/* Opens a scope: tensors created until the matching ag_scope_end() are owned by it.
 * Scopes nest.  Returns AG_OK, or AG_ERR_NOMEM. */
AG_API ag_status ag_scope_begin(void);
/* Closes the innermost scope, releasing every tensor it owns.  Returns AG_ERR_ARG
 * if no scope is open. */
AG_API ag_status ag_scope_end(void);
/* Number of scopes open on this thread. */
AG_API int ag_scope_depth(void);
/* Moves t out of the innermost scope into the enclosing one (or to the caller when
 * there is none, who must then ag_release it).  Returns t; NULL passes through. */
AG_API ag_tensor *ag_keep(ag_tensor *t);
/* Adds a reference to t; returns t.  NULL passes through.  Reference counts are
 * atomic: threads sharing a tensor may retain and release it at the same time
 * (docs/design.md#threads). */
AG_API ag_tensor *ag_retain(ag_tensor *t);
/* Drops a reference to t, freeing it (and whatever graph only it kept alive) when
 * none is left, on whichever thread drops the last one.  NULL is ignored. */
AG_API void ag_release(ag_tensor *t);

/* Hooks (docs/hooks.md): a callback registered on a tensor (agrad/autograd.h) or a
 * module (agrad/nn.h) is named by the handle its registration writes.  The handle
 * stays valid, and harmless, after its hook's owner is freed. */
typedef struct ag_hook_handle {
    uint32_t list;   /* the owner's hook list (0: no hook) */
    uint64_t serial; /* unique over the process's life */
} ag_hook_handle;
/* Removes the hook h names (torch.utils.hooks.RemovableHandle.remove).  Returns
 * true when it removed it, false when it was already removed, its owner was
 * freed, or h is a zero handle; never fails.  A hook removed while its owner's
 * hooks run still runs in that round. */
AG_API bool ag_hook_remove(ag_hook_handle h);

/* Allocation hook, Lua style: called as f(ud, ptr, nsize).  nsize == 0 frees ptr
 * (never NULL then) and returns NULL; otherwise it allocates (ptr is always NULL)
 * and returns NULL on failure.  Passing f == NULL restores malloc/free.  Must be
 * set while no agrad object is alive and no other thread is inside agrad.  Used by
 * the tests to inject failures. */
typedef void *(*ag_alloc_fn)(void *ud, void *ptr, size_t nsize);
AG_API void ag_set_allocator(ag_alloc_fn f, void *ud);

/* Whether float32 kernels may use oneDNN (default on; the environment variable
 * AGRAD_ONEDNN=0 turns it off at start-up).  Off, every op runs its portable C
 * kernel: slower, with the same results up to float32 rounding.  The CI runs
 * valgrind this way, since valgrind cannot follow oneDNN's JIT-generated code. */
AG_API void ag_set_onednn_enabled(bool on);
AG_API bool ag_onednn_enabled(void);

/* Autocast (torch.autocast("cpu", dtype=torch.bfloat16)), per thread, nestable.
 * Inside a region opened with enabled = true, the matrix products (matmul, bmm,
 * linear, addmm, baddbmm, outer, attention's products) and the convolutions of
 * float32 tensors compute in bfloat16 with float32 accumulation and float32
 * outputs, and so do their adjoints when backward runs (inside the region or
 * not); every other op, and every tensor, stays float32.  enabled = false opens a
 * region with autocast off (nested inside an enabled one it turns it off until
 * its end).  Returns AG_OK; AG_ERR_DTYPE for a dtype other than AG_AUTOCAST_BF16
 * (float16 has no CPU kernel), which still opens a region, with autocast off, so
 * the matching ag_autocast_end stays right; AG_ERR_ARG when regions nest more
 * than 64 deep (nothing opened: call no end for it).  docs/mixed-precision.md. */
typedef enum ag_autocast_dtype { AG_AUTOCAST_BF16 = 1, AG_AUTOCAST_F16 = 2 } ag_autocast_dtype;
AG_API ag_status ag_autocast_begin(ag_autocast_dtype dtype, bool enabled);
/* Closes the innermost autocast region of this thread, restoring the state its
 * begin found.  AG_ERR_ARG (nothing changed) when no region is open. */
AG_API ag_status ag_autocast_end(void);
/* Whether products computed now on this thread run in bfloat16. */
AG_API bool ag_is_autocast_enabled(void);

/* Every public function given a freed or invalid tensor records AG_ERR_ARG
 * ("name: t is not a live tensor (freed or invalid handle)") and fails as for any
 * other error, and the property functions (ag_ndim, ag_shape_of, ...) reject NULL
 * that way.  Release builds read a magic word in the tensor header (it catches a
 * released handle until its memory is reused; reading freed memory is itself
 * undefined, so it is a check, not a guarantee).  This returns whether the build
 * has the stronger check (meson option handle_checks, on by default in debug
 * builds): a registry of live tensors that never reads through a handle.  In
 * both, a handle whose memory was reused for a newer tensor cannot be told apart. */
AG_API bool ag_handle_checks(void);

/* Number of live tensors on all threads; 0 after everything has been released. */
AG_API long ag_live_tensors(void);

/* Sets how many threads agrad uses for work started on the calling thread: its
 * parallel elementwise loops (on tensors of about 100K elements and more) and
 * oneDNN's kernels.  It is OpenMP's per-thread setting, so it also applies to the
 * caller's own OpenMP code.  n < 1 restores the default: OMP_NUM_THREADS if set,
 * else the CPUs this process may use (its affinity mask, as taskset or mpirun's
 * binding set it, capped by a cgroup CPU quota rounded up; also the default at load).  n is capped at 4 threads per core (at most 1024, and
 * at most OpenMP's thread limit): more only oversubscribes the cores, and a team
 * the system cannot create would make OpenMP end the process.  Small tensors always
 * run on the calling thread, and work started inside an OpenMP parallel region
 * runs on one thread.  Never fails. */
AG_API void ag_set_num_threads(int n);
/* The number of threads agrad uses for work started on the calling thread. */
AG_API int ag_get_num_threads(void);

/* Returns the memory this thread keeps for reuse to the system: freed tensor
 * headers and storages, kept per thread so that ops avoid malloc and the page
 * faults of fresh large buffers (at most ~512 KiB per size class up to 64 KiB,
 * and 16 larger blocks totalling at most 128 MiB), and the thread's cached
 * oneDNN primitives.  Optional: it also happens when the thread exits and at
 * process exit.  Only blocks of the default allocator are kept, so a user
 * allocator set with ag_set_allocator sees every allocation.  Never fails. */
AG_API void ag_free_caches(void);

#ifdef __cplusplus
}
#endif
#endif

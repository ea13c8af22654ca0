/*
 * core/internal.h - the private layout of tensors and graph nodes, shared by the
 * engine (autograd/) and the primitives (ops/).  Not installed.
 */
#ifndef AGRAD_INTERNAL_H
#define AGRAD_INTERNAL_H

#include <stdarg.h>
#include <stdatomic.h>
#include "agrad/agrad.h"

#define AG_HIDDEN __attribute__((visibility("hidden")))

/* ---- storage and tensor -------------------------------------------------- */
typedef struct ag_storage {
    long refcount;
    uint32_t version;  /* bumped by every in-place change of the data */
    bool borrowed;     /* data belongs to the user (ag_from_buffer) */
    struct ag_tensor *host; /* the header whose allocation holds this storage, or NULL */
    size_t nbytes;
    void *data;        /* 64-byte aligned, inside this allocation unless borrowed or aliased */
    struct ag_storage *base; /* when set, data lies inside base's data (a flattened
                                parameter, nn/flatten.c): this storage holds a
                                reference on base and shares base's version counter */
} ag_storage;

/* The version counter of t's data: a flattened parameter shares its flat buffer's. */
static inline uint32_t *ag__version_counter(const ag_storage *s) {
    return s->base ? &s->base->version : (uint32_t *)&s->version;
}
#define ag__version(t) (*ag__version_counter((t)->storage))
/* Marks an in-place change of t's data (saved-tensor checks compare versions). */
#define ag__bump_version(t) ((void)(*ag__version_counter((t)->storage))++)

typedef struct ag_op ag_op;

/* Scalar and integer attributes an op keeps for its adjoint. */
typedef struct ag_attr {
    double a, b;
    int64_t i[AG_MAX_DIMS + 2];
} ag_attr;

#define AG_NODE_INLINE 3

struct ag_tensor {
    long refcount;
    int ndim;
    ag_dtype dtype;
    bool requires_grad;
    bool retains_grad;
    bool graph_freed;   /* backward ran without retain_graph: node released */
    bool visited;       /* scratch for graph walks */
    bool grad_pinned;   /* .grad is a view into a flat gradient buffer (nn/flatten.c):
                           backward adds into it in place, zero_grad zeros it */
    int64_t offset;     /* in elements */
    int64_t shape[AG_MAX_DIMS];
    int64_t stride[AG_MAX_DIMS]; /* in elements */
    ag_storage *storage;
    ag_tensor *grad;    /* accumulated gradient (leaves, retain_grad) */

    /* The graph node: set when this tensor was produced by a recorded op. */
    const ag_op *op;
    int nin;
    ag_tensor **in;                      /* points at in_inline or a heap array */
    ag_tensor *in_inline[AG_NODE_INLINE];
    uint32_t in_version[AG_NODE_INLINE]; /* versions of the inputs when recorded */
    uint32_t out_version;                /* version of this output when recorded */
    ag_tensor *saved;                    /* an extra tensor the adjoint needs */
    ag_attr attr;
    const char *where_file; /* where the user recorded this op (anomaly mode only) */
    int where_line;

    /* Backward scratch. */
    ag_tensor *bgrad;   /* gradient flowing into this node */
    int pending;        /* consumers yet to deliver their gradient */
    ag_tensor *dead_next; /* link in the iterative free list */
};

/* ---- ops ------------------------------------------------------------------ */
/* Adjoint: given out (its node) and gout = dL/dout (contiguous, out's shape),
 * accumulate dL/d(input) into each input that requires grad with ag__accumulate. */
typedef ag_status (*ag_backward_fn)(ag_tensor *out, ag_tensor *gout);

/* What the adjoint reads, so backward can check versions. */
enum { AG_SAVES_IN0 = 1, AG_SAVES_IN1 = 2, AG_SAVES_IN2 = 4, AG_SAVES_OUT = 8 };
/* Not a save but a property of the adjoint, in the same bits: it takes gout with any
 * strides (a broadcast view such as sum's gradient), so backward need not copy it. */
enum { AG_GOUT_ANY_STRIDES = 16 };

/* How the op tests draw inputs. */
typedef enum ag_domain {
    AG_DOMAIN_ANY = 0,   /* uniform in [-2, 2], at least 0.05 away from 0 */
    AG_DOMAIN_POSITIVE,  /* uniform in [0.5, 2] */
    AG_DOMAIN_UNIT,      /* uniform in [-0.9, 0.9], away from 0 */
    AG_DOMAIN_DISTINCT,  /* a permutation of well separated values (max/min/sort) */
    AG_DOMAIN_PROBABILITY /* uniform in [0.05, 0.95] */
} ag_domain;

/* A static shape initialiser: AG_DIMS(2, 3). */
#define AG_DIMS(...) {AG__NARG(__VA_ARGS__), {__VA_ARGS__}}
#define AG_DIMS0 {0, {0}}

/* One set of input shapes an op is tested and benchmarked on. */
typedef struct ag_op_case {
    int n;
    ag_shape shape[4];
} ag_op_case;

/* The registration of one op: its runtime descriptor and how tests and
 * benchmarks call it.  Every family file in ops/ ends with a NULL-terminated
 * table of these; ops/registry.c lists the families. */
struct ag_op {
    const char *name;          /* public name without ag_, e.g. "matmul" */
    const char *grad_fn;       /* PyTorch-style node name, e.g. "MmBackward0"; NULL if not differentiable */
    ag_backward_fn backward;   /* NULL: not differentiable (nothing is recorded) */
    unsigned saves;            /* AG_SAVES_* */
    const char *math;          /* forward and adjoint, e.g. "y = a·b;  da = dy·bᵀ, db = aᵀ·dy" (docs/ops.md) */
    /* For tests and benchmarks: */
    ag_fn call;                /* calls the op on inputs with fixed extra arguments; ctx is the op */
    ag_domain domain;
    ag_op_case cases[4];       /* n == 0 ends the list */
    double arg[2];             /* fixed scalar arguments the test call passes */
    double atol, rtol;         /* gradcheck tolerances, 0 for the defaults */
};

/* ---- engine internals (autograd/) ---------------------------------------- */
AG_HIDDEN void *ag__alloc(size_t n);
AG_HIDDEN void *ag__calloc(size_t n);
AG_HIDDEN void ag__free(void *p);
/* True while a user allocator is installed (ag_set_allocator). */
AG_HIDDEN extern bool ag__alloc_hooked;
/* Allocation through this thread's cache of freed blocks (cache.c): n is rounded
 * up to a size class; free with ag__cache_free passing the same n.  Same failure
 * behaviour as ag__alloc. */
AG_HIDDEN void *ag__cache_alloc(size_t n);
AG_HIDDEN void ag__cache_free(void *p, size_t n);
/* A block of n bytes from the cache for a tensor header (and whatever shares its
 * block), counted as a live tensor; NULL on ENOMEM.  ag__tensor_dead uncounts a
 * header; its block is freed separately with ag__cache_free. */
AG_HIDDEN void *ag__tensor_alloc(size_t n);
AG_HIDDEN void ag__tensor_dead(void);
/* Size of one element of dtype, inlined. */
static inline size_t ag__esize(ag_dtype dtype) { return dtype == AG_F32 ? 4 : dtype == AG_BOOL || dtype == AG_U8 ? 1 : 8; }

/* Records an error and returns NULL / the status, for `return ag__fail(...)`. */
AG_HIDDEN ag_status ag__fail(ag_status s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
AG_HIDDEN void *ag__fail_null(ag_status s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Writes "[2, 3]" into buf (at least AG_SHAPE_STR bytes); returns buf. */
#define AG_SHAPE_STR 200
AG_HIDDEN char *ag__shape_str(char *buf, int ndim, const int64_t *shape);
AG_HIDDEN char *ag__tshape(char *buf, const ag_tensor *t);

/* A new contiguous tensor, owned by the innermost scope (or the caller); NULL on ENOMEM. */
AG_HIDDEN ag_tensor *ag__new(ag_dtype dtype, int ndim, const int64_t *shape);
AG_HIDDEN ag_tensor *ag__new_zeros(ag_dtype dtype, int ndim, const int64_t *shape);
AG_HIDDEN ag_tensor *ag__new_like(const ag_tensor *t);
/* A new tensor header viewing base's storage with the given geometry. */
AG_HIDDEN ag_tensor *ag__new_view(const ag_tensor *base, int ndim, const int64_t *shape,
                                  const int64_t *stride, int64_t offset);
/* A view of base (sharing its storage) registered in no scope (owned by the caller). */
AG_HIDDEN ag_tensor *ag__new_view_unowned(const ag_tensor *base, int ndim, const int64_t *shape,
                                          const int64_t *stride, int64_t offset);
/* A tensor not registered in any scope (refcount 1, owned by the caller). */
AG_HIDDEN ag_tensor *ag__new_unowned(ag_dtype dtype, int ndim, const int64_t *shape, bool zero);
/* Registers t with the innermost scope, if any; returns t (NULL on ENOMEM, t freed). */
AG_HIDDEN ag_tensor *ag__own(ag_tensor *t);
AG_HIDDEN void ag__contiguous_strides(int ndim, const int64_t *shape, int64_t *stride);
AG_HIDDEN int64_t ag__numel(int ndim, const int64_t *shape);
AG_HIDDEN bool ag__contig(const ag_tensor *t);
static inline char *ag__ptr(const ag_tensor *t) {
    return (char *)t->storage->data + t->offset * (int64_t)ag__esize(t->dtype);
}
/* The element at storage offset off (in elements) as a double, and its inverse
 * (converting to t's dtype; bool stores v != 0). */
AG_HIDDEN double ag__read(const ag_tensor *t, int64_t off);
AG_HIDDEN void ag__write(ag_tensor *t, int64_t off, double v);
/* Normalises a possibly negative dim for ndim dims; -1 with an error naming op if invalid. */
AG_HIDDEN int ag__dim(const char *op, int dim, int ndim);

/* Handle checks (meson option handle_checks, core/handles.c): a public entry
 * point's first line is AG_CHECK_HANDLES(ret, "name", t1, t2, ...) with its tensor
 * parameters; a freed or invalid one records AG_ERR_ARG "name: t2 is not a live
 * tensor (freed or invalid handle)" and returns ret (leave ret empty in a void
 * function).  NULL passes (the function's own NULL rule applies); the _NONNULL
 * form also rejects NULL ("name: t is NULL"), for functions that need a tensor.
 * AG_CHECK_HANDLE_ARRAY checks the n entries of an array of tensors.  Tensor
 * arguments must be plain names: the message quotes them.  With the option off
 * all three are empty. */
#if AG_HANDLE_CHECKS
AG_HIDDEN void ag__handle_born(const ag_tensor *t);
AG_HIDDEN void ag__handle_dead(const ag_tensor *t);
AG_HIDDEN bool ag__handles_ok(const char *fn, const char *names, bool null_ok, int n, const ag_tensor *const *t);
AG_HIDDEN bool ag__handle_array_ok(const char *fn, const char *name, ag_tensor *const *t, int n);
#define AG_CHECK_HANDLES(ret, fn, ...)                                                                 \
    do {                                                                                               \
        if (!ag__handles_ok(fn, #__VA_ARGS__, true, AG__NARG(__VA_ARGS__),                             \
                            (const ag_tensor *const[]){__VA_ARGS__}))                                  \
            return ret;                                                                                \
    } while (0)
#define AG_CHECK_HANDLES_NONNULL(ret, fn, ...)                                                         \
    do {                                                                                               \
        if (!ag__handles_ok(fn, #__VA_ARGS__, false, AG__NARG(__VA_ARGS__),                            \
                            (const ag_tensor *const[]){__VA_ARGS__}))                                  \
            return ret;                                                                                \
    } while (0)
#define AG_CHECK_HANDLE_ARRAY(ret, fn, arr, n)                                                         \
    do {                                                                                               \
        if (!ag__handle_array_ok(fn, #arr, arr, n)) return ret;                                        \
    } while (0)
#else
#define AG_CHECK_HANDLES(ret, fn, ...) ((void)0)
#define AG_CHECK_HANDLES_NONNULL(ret, fn, ...) ((void)0)
#define AG_CHECK_HANDLE_ARRAY(ret, fn, arr, n) ((void)0)
#endif

/* Autograd recording: true when an op with these inputs must record a node. */
AG_HIDDEN bool ag__needs_grad1(const ag_tensor *a);
AG_HIDDEN bool ag__needs_grad(ag_tensor *const *in, int n);
/* Releases the node part of t (inputs, saved) after backward; t stays usable. */
AG_HIDDEN void ag__release_graph(ag_tensor *t);
/* Drops a result an op made but will not return: released now when no scope
 * owns it, otherwise left to its scope. */
AG_HIDDEN void ag__discard(ag_tensor *t);
/* Turns out into a node of op over the n inputs (retaining them).  Returns out,
 * or NULL on ENOMEM (out discarded). */
AG_HIDDEN ag_tensor *ag__record(ag_tensor *out, const ag_op *op, ag_tensor *const *in, int n);
/* ag__record when the inputs need grad, the node then owning saved (an unowned tensor
 * its adjoint reads); otherwise, and on failure, saved is released.  Returns out
 * (out->op set when recorded), or NULL on ENOMEM (out discarded). */
AG_HIDDEN ag_tensor *ag__record_saved(ag_tensor *out, const ag_op *op, ag_tensor *const *in, int n, ag_tensor *saved);
/* Adds g (input's shape, contiguous, owned by the caller) to in's gradient:
 * sums g over broadcast dims first when g's shape is a broadcast of in's. */
AG_HIDDEN ag_status ag__accumulate(ag_tensor *in, ag_tensor *g);
/* True if input i of node out needs a gradient. */
static inline bool ag__wants(const ag_tensor *out, int i) {
    return out->in[i] && out->in[i]->requires_grad;
}
/* Anomaly check of a forward result (no-op unless anomaly mode is on); on a
 * non-finite value t is discarded and NULL returned. */
AG_HIDDEN ag_tensor *ag__check_finite(ag_tensor *t, const char *op);
AG_HIDDEN extern _Thread_local bool ag__anomaly;
AG_HIDDEN extern _Thread_local int ag__no_grad_depth;

/* Random numbers from this thread's generator. */
/* What ag_set_rng_state checks (dtype, shape, not all zeros), without setting anything. */
AG_HIDDEN ag_status ag__rng_check_state(const ag_tensor *t);

/* One step of xoshiro256** (Blackman & Vigna) on the state s: agrad's generator,
 * the per-thread one (random.c) and the data loader's own (data/random.c). */
static inline uint64_t ag__xoshiro_next(uint64_t *restrict s) {
    const uint64_t result = ((s[1] * 5) << 7 | (s[1] * 5) >> 57) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = s[3] << 45 | s[3] >> 19;
    return result;
}
AG_HIDDEN uint64_t ag__rand_u64(void);
AG_HIDDEN double ag__rand_uniform(void);
AG_HIDDEN double ag__rand_normal(void);
/* Fills n elements of dtype at out with scale where a uniform draw is below keep,
 * else 0: dropout's mask, the same draws as n calls of ag__rand_uniform. */
AG_HIDDEN void ag__rand_keep_mask(void *out, ag_dtype dtype, int64_t n, double keep, double scale);

/* Finds an op by name; NULL if unknown.  Iterate with ag__op_at(i) until NULL. */
AG_HIDDEN const ag_op *ag__op_find(const char *name);
AG_HIDDEN const ag_op *ag__op_at(int i);
/* The family of a registered op: "unary" for the table ag__unary_ops in ops/unary.c;
 * NULL if op is not registered. */
AG_HIDDEN const char *ag__op_family(const ag_op *op);

#endif

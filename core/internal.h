/*
 * core/internal.h - the private layout of tensors, storages and graph nodes
 * (struct ag_op), shared by every layer, and what core/ offers the layers above:
 * allocation, errors, tensor creation and scopes, handle checks, random numbers.
 * Recording on the tape is in autograd/tape.h, the op registry in
 * ops/registry.h.  Not installed.
 */
#ifndef AGRAD_INTERNAL_H
#define AGRAD_INTERNAL_H

#include <stdarg.h>
#include <stdatomic.h>
#include "agrad/core.h"
#include "agrad/tensor.h"

#define AG_HIDDEN __attribute__((visibility("hidden")))

/* ---- reference counts ------------------------------------------------------ */
/* Tensor headers and storages are reference counted atomically, so that threads
 * may share tensors they only read (docs/design.md#threads): taking a reference
 * is a relaxed increment (the taker already holds one, so nothing is ordered by
 * it) and dropping one an acquire-release decrement, so that the thread that
 * drops the last one, and frees, sees every other thread's last use. */
typedef atomic_long ag_refcount;
static inline void ag__ref_init(ag_refcount *r, long n) { atomic_store_explicit(r, n, memory_order_relaxed); }
static inline void ag__ref_take(ag_refcount *r) { atomic_fetch_add_explicit(r, 1, memory_order_relaxed); }
/* Drops one reference; true when it was the last.  A count of 1 is the caller's own
 * reference, which no other thread can copy (taking needs one already held), so the
 * last drop skips the atomic decrement: a locked instruction fewer for most tensors
 * (the tiny chain's step drops 33 references, 19 of them last ones). */
static inline bool ag__ref_drop(ag_refcount *r) {
    if (atomic_load_explicit(r, memory_order_acquire) == 1) return true;
    return atomic_fetch_sub_explicit(r, 1, memory_order_acq_rel) == 1;
}
/* The count now; 1 means the caller's reference is the only one (acquire: what
 * the other holders did before dropping theirs is visible). */
static inline long ag__ref_count(const ag_refcount *r) { return atomic_load_explicit(r, memory_order_acquire); }

/* ---- storage and tensor -------------------------------------------------- */
typedef struct ag_storage {
    ag_refcount refcount;
    uint32_t version;  /* bumped by every in-place change of the data */
    bool borrowed;     /* its allocation has no room for data: the data was the user's
                          (ag_from_buffer), or is now its spill */
    struct ag_tensor *host; /* the header whose allocation holds this storage, or NULL */
    size_t nbytes;     /* bytes of the data */
    size_t room;       /* bytes of data room in this storage's own allocation (frees are sized by it) */
    void *data;        /* 64-byte aligned, inside this allocation unless borrowed or aliased */
    struct ag_storage *base; /* when set, data lies inside base's data (a flattened
                                parameter, nn/flatten.c): this storage holds a
                                reference on base and shares base's version counter */
    struct ag_storage *spill; /* when set, data is spill's: a dtype conversion in place
                                 (ag__retype_commit) outgrew the room; held only here */
} ag_storage;

/* The version counter of t's data: a flattened parameter shares its flat buffer's. */
static inline uint32_t *ag__version_counter(const ag_storage *s) {
    return s->base ? &s->base->version : (uint32_t *)&s->version;
}
#define ag__version(t) (*ag__version_counter((t)->storage))
/* Marks an in-place change of t's data (saved-tensor checks compare versions).  An
 * inference tensor (made in inference mode) has no version to keep: nothing that
 * records can save it. */
#define ag__bump_version(t) ((void)((t)->inference || (*ag__version_counter((t)->storage))++))

typedef struct ag_op ag_op;

/* Scalar and integer attributes an op keeps for its adjoint. */
typedef struct ag_attr {
    double a, b;
    int64_t i[AG_MAX_DIMS + 2];
} ag_attr;

#define AG_NODE_INLINE 3

/* The header's magic word: AG_TENSOR_LIVE from creation until the header is
 * freed, then AG_TENSOR_DEAD (core/handles.c explains what it catches). */
#define AG_TENSOR_LIVE 0xa11eu
#define AG_TENSOR_DEAD 0xdeadu

struct ag_tensor {
    ag_refcount refcount;
    int16_t ndim;       /* at most AG_MAX_DIMS */
    uint16_t magic;     /* AG_TENSOR_LIVE while the header is alive */
    ag_dtype dtype;
    bool requires_grad;
    bool retains_grad;
    bool graph_freed;   /* backward ran without retain_graph: node released */
    bool visited;       /* scratch for graph walks */
    bool grad_pinned;   /* .grad is a view into a flat gradient buffer (nn/flatten.c):
                           backward adds into it in place, zero_grad zeros it */
    bool inference;     /* made in inference mode (ag_inference_mode_begin): never saved
                           for backward, written in place only in inference mode */
    bool hooked;        /* hooks were registered on it (core/hooks.h): backward looks
                           them up; false costs backward nothing (in what was padding) */
    uint8_t view_flags; /* AG_VIEW_* of a view (in what was padding) */
    int64_t offset;     /* in elements */
    int64_t shape[AG_MAX_DIMS];
    int64_t stride[AG_MAX_DIMS]; /* in elements */
    ag_storage *storage;
    ag_tensor *grad;    /* accumulated gradient (leaves, retain_grad) */
    ag_tensor *view_base; /* a view made by a view op of a floating tensor: the tensor it
                             is a view of (never itself a view), holding a reference;
                             autograd/rebase.c keeps the two graphs in step */
    ag_tensor *tangent; /* forward mode (autograd/forward.c): its tangent, holding a reference,
                           valid only while tangent_level is the thread's open dual level */
    uint32_t tangent_level;
    ag_tensor *tangent_next, **tangent_pprev; /* while tangent is set: in its thread's list of
                                                 tensors holding one (ag__tangent_set) */
    bool tangent_pending; /* recorded while an input had a tangent: tangent still to compute
                             from the node (by the op's jvp) */
    uint8_t autocast;     /* recorded inside an autocast region: its ag_autocast_dtype, which
                             the adjoint's products run in (core/autocast.h); 0 if not */

    /* The graph node: set when this tensor was produced by a recorded op. */
    const ag_op *op;
    int nin;
    uint32_t hooks;     /* its hook list (core/hooks.h), 0 if none (in what was padding) */
    ag_tensor **in;                      /* points at in_inline or a heap array */
    ag_tensor *in_inline[AG_NODE_INLINE];
    uint32_t in_version[AG_NODE_INLINE]; /* versions of the inputs when recorded (more: ag__in_versions) */
    uint32_t out_version;                /* version of this output when recorded; of a view, when
                                            its node last matched its base (autograd/rebase.c) */
    ag_tensor *saved;                    /* an extra tensor the adjoint needs */
    ag_attr attr;
    const char *where_file; /* where the user recorded this op (anomaly mode only) */
    int where_line;

    /* Backward scratch. */
    int pending;        /* consumers yet to deliver their gradient */
    ag_tensor *bgrad;   /* gradient flowing into this node */
    ag_tensor *dead_next; /* link in the iterative free list */
};

/* A view's flags: made while grad mode was off (PyTorch refuses to record an
 * in-place op on it), or one of the views a multi-output function returned
 * (ag_split, ag_chunk; refused likewise).  A view of such a view keeps them.
 * AG_VIEW_GRAD_LEAF is a base's: a view of it was made a leaf that requires grad
 * (ag_requires_grad_), which a write into the base must not take into its history.
 * AG_VIEW_GRAD_HELD: the tensor (or a view of it) was installed as some tensor's .grad
 * (ag__mark_grad_held), so a recorded write into it must not take that tensor into
 * its history (x.grad += x would make x.grad hold x, a cycle never freed). */
enum { AG_VIEW_NO_GRAD = 1, AG_VIEW_MULTI = 2, AG_VIEW_GRAD_LEAF = 4, AG_VIEW_GRAD_HELD = 8 };

/* Marks g, a tensor just installed as some tensor's .grad, and its base (AG_VIEW_GRAD_HELD). */
static inline void ag__mark_grad_held(ag_tensor *g) {
    if (!g) return;
    g->view_flags |= AG_VIEW_GRAD_HELD;
    if (g->view_base) g->view_base->view_flags |= AG_VIEW_GRAD_HELD;
}

/* The versions of t's inputs when its node was recorded: in_version while the
 * inputs are inline, else the nin words after the input pointers in their block. */
static inline uint32_t *ag__in_versions(ag_tensor *t) {
    return t->in == t->in_inline ? t->in_version : (uint32_t *)(t->in + t->nin);
}
/* Bytes of the heap block of n inputs and their versions. */
#define AG_NODE_BLOCK(n) ((sizeof(ag_tensor *) + sizeof(uint32_t)) * (size_t)(n))

/* ---- ops ------------------------------------------------------------------ */
/* Adjoint: given out (its node) and gout = dL/dout (contiguous, out's shape),
 * accumulate dL/d(input) into each input that requires grad with ag__accumulate. */
typedef ag_status (*ag_backward_fn)(ag_tensor *out, ag_tensor *gout);
/* Adjoint in differentiable ops, for create_graph (ops/grad.c runs it inside a scope
 * of its own): given out (its node) and gout = dL/dout (out's shape, any strides;
 * it may require grad), sets gin[i] (out->nin slots, NULL on entry) to
 * dL/d(input i) for each input that wants one (ag__wants), as a tensor made by agrad
 * ops, so that it is recorded and can be differentiated again.  gin[i] has input i's
 * shape or a shape that broadcasts to it (the engine sums it down with recorded ops).
 * Returns AG_OK or the failing op's status. */
typedef ag_status (*ag_backward_graph_fn)(ag_tensor *out, ag_tensor *gout, ag_tensor **gin);
/* The local derivative of an elementwise op, dy/d(in[i]), as a tensor made by agrad
 * ops from the inputs in, the output y and the op's scalar attributes attr (a shape
 * broadcasting to y's).  One function serves the reverse rule under create_graph
 * (gin[i] = gout * partial) and the tangent rule (dy = sum_i tangent_i * partial).
 * NULL on failure (recorded). */
typedef ag_tensor *(*ag_partial_fn)(ag_tensor *const *in, ag_tensor *y, const ag_attr *attr, int i);
/* Tangent rule (forward mode): given out (its node: inputs, attr, saved) and tin[i],
 * the tangent of input i (NULL: zero), returns out's tangent computed with public,
 * differentiable ag_* ops (owned by the innermost scope, as their results), or NULL
 * with an error recorded.  autograd/forward.c calls it with forward mode paused (the
 * rule's own ops carry no tangent) and at least one tin[i] set. */
typedef ag_tensor *(*ag_jvp_fn)(ag_tensor *out, ag_tensor *const *tin);

/* What the adjoint reads, so backward can check versions. */
enum { AG_SAVES_IN0 = 1, AG_SAVES_IN1 = 2, AG_SAVES_IN2 = 4, AG_SAVES_OUT = 8 };
/* Not a save but a property of the adjoint, in the same bits: it takes gout with any
 * strides (a broadcast view such as sum's gradient), so backward need not copy it. */
enum { AG_GOUT_ANY_STRIDES = 16 };
/* Not a save either: the row is the head of an ag_op_ext (below), a node made by a
 * user-defined function (autograd/function.c) that owns per-call data. */
enum { AG_OP_EXT = 32 };
/* Not a save either: the row records an in-place op (ops/inplace.c), whose node's
 * in[0] is the hidden header holding the tensor's history before the write
 * (autograd/rebase.c). */
enum { AG_OP_INPLACE = 64 };

/* The registration of one op: what the engine needs at run time and the op's
 * formula.  Every family file in ops/ ends with a NULL-terminated table of
 * these; ops/registry.c lists the families.  How tests and benchmarks call an
 * op is not here but in its test row (test/cases/).  Rows are designated
 * initialisers ({.name = "sum", .grad_fn = "SumBackward1", .backward = ..., ...}),
 * never positional ones; a field left out is NULL/0 (docs/design.md#adding-an-op). */
struct ag_op {
    const char *name;          /* public name without ag_, e.g. "matmul" */
    const char *grad_fn;       /* PyTorch-style node name, e.g. "MmBackward0"; NULL if not differentiable */
    ag_backward_fn backward;   /* NULL: not differentiable (nothing is recorded) */
    unsigned saves;            /* AG_SAVES_* */
    const char *math;          /* forward and adjoint, e.g. "y = a·b;  da = dy·bᵀ, db = aᵀ·dy" (docs/ops.md) */
    ag_backward_graph_fn backward_graph; /* the adjoint in differentiable ops (create_graph); NULL: none yet */
    ag_partial_fn partial;     /* elementwise rows: dy/d(in[i]) in differentiable ops, else NULL */
    ag_jvp_fn jvp;             /* tangent rule (forward mode); NULL: none yet (a dual input then
                                  fails the op's tangent, naming it), or not differentiable */
    const char *tangent;       /* the tangent rule in maths, a dot marking a tangent, e.g.
                                  "ẏ = ȧ·b + a·ḃ" (docs/ops.md); NULL for elementwise rows
                                  (docs/ops.md derives theirs from the adjoint) and for ops
                                  that are not differentiable */
};

/* The row of a node that owns data of its own (a user-defined function's context,
 * autograd/function.c), built per call; its op.saves has AG_OP_EXT.  The engine
 * calls release as the node part of a tensor whose op this is goes: dies is false
 * when backward frees the graph (ag__release_graph), true when the header dies
 * (the op must stay readable until then: ag_grad_fn_name reads it).  Backward calls
 * check while validating the graph (AG_OK, or a recorded AG_ERR_GRAPH). */
typedef struct ag_op_ext {
    ag_op op;
    void (*release)(ag_tensor *t, bool dies);
    ag_status (*check)(const ag_tensor *t);
} ag_op_ext;

/* ---- memory, errors, tensors, scopes (core/) ------------------------------- */
AG_HIDDEN void *ag__alloc(size_t n);
AG_HIDDEN void *ag__calloc(size_t n);
AG_HIDDEN void ag__free(void *p);
/* True while a user allocator is installed (ag_set_allocator). */
AG_HIDDEN extern bool ag__alloc_hooked;
/* The default allocator's blocks of this many bytes or more start on a 2 MiB boundary and
 * are advised as transparent huge pages (core/alloc.c). */
#define AG__HUGE_MIN ((size_t)4 << 20)
/* Makes f (NULL: malloc/free) the hook every allocation goes through; the
 * caller (ag_set_allocator, cache.c) has emptied the block caches first. */
AG_HIDDEN void ag__set_alloc_hook(ag_alloc_fn f, void *ud);
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
/* Size of one element of dtype (1 for a value that is no dtype), inlined; the
 * public ag_dtype_size returns it. */
static inline size_t ag__esize(ag_dtype dtype) {
    switch (dtype) {
    case AG_F32: return 4;
    case AG_F64: case AG_I64: return 8;
    case AG_BOOL: case AG_U8: return 1;
    }
    return 1;
}

/* Records an error and returns NULL / the status, for `return ag__fail(...)`. */
AG_HIDDEN ag_status ag__fail(ag_status s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
AG_HIDDEN void *ag__fail_null(ag_status s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* How many failures this thread has recorded: a caller that gets a status back can
 * tell whether it came with a message (the count moved) or must record one. */
AG_HIDDEN uint64_t ag__failures(void);
/* Writes "[2, 3]" into buf (at least AG_SHAPE_STR bytes); returns buf. */
#define AG_SHAPE_STR 200
AG_HIDDEN char *ag__shape_str(char *buf, int ndim, const int64_t *shape);
AG_HIDDEN char *ag__tshape(char *buf, const ag_tensor *t);

/* Inference mode on this thread (ag_inference_mode_begin, autograd/grad_mode.c):
 * every tensor made while it is on is an inference tensor (a view takes its base's
 * mark instead). */
AG_HIDDEN extern _Thread_local bool ag__inference_mode;
/* How many times a thread turned inference mode or anomaly mode on and not yet off:
 * when 0, neither is on in any thread, and the hot paths skip reading the
 * thread-local flags (a load of a global instead of a call through the TLS
 * descriptor).  ag__set_inference_mode and ag_set_detect_anomaly keep it. */
AG_HIDDEN extern atomic_int ag__rare_modes;
static inline bool ag__rare_mode_on(void) { return atomic_load_explicit(&ag__rare_modes, memory_order_relaxed) != 0; }
AG_HIDDEN void ag__set_inference_mode(bool on);
/* The check of every in-place function on its destination t: AG_ERR_GRAPH naming op
 * when t is an inference tensor and inference mode is off, else AG_OK. */
AG_HIDDEN ag_status ag__check_inference_write(const char *op, const ag_tensor *t);

/* A new contiguous tensor, owned by the innermost scope (or the caller); NULL on ENOMEM. */
AG_HIDDEN ag_tensor *ag__new(ag_dtype dtype, int ndim, const int64_t *shape);
AG_HIDDEN ag_tensor *ag__new_zeros(ag_dtype dtype, int ndim, const int64_t *shape);
/* Converting a tensor's data to another dtype in place, keeping its header and so
 * every handle to it (ag_module_to_dtype, as torch.nn.Module.to sets param.data),
 * in two steps so that a caller converting many tensors can fail before changing
 * any.  t must be float32 or float64, with dtype the other one, and its storage
 * used by nothing else (refcount 1, no base: no view of t is alive, t is not a
 * flattened parameter).  ag__retype_prepare sets *spill to NULL when the converted
 * data fits the storage's own room, or to a new storage for it (release it with
 * ag__storage_release if not committed); AG_ERR_NOMEM when that allocation fails.
 * ag__retype_commit, which cannot fail, converts every element of t's storage
 * (offset and strides stay valid), puts the result in the room or in spill (the
 * previous spill, if any, is released), sets t's dtype and bumps its version. */
AG_HIDDEN ag_status ag__retype_prepare(const ag_tensor *t, ag_dtype dtype, ag_storage **spill);
AG_HIDDEN void ag__retype_commit(ag_tensor *t, ag_dtype dtype, ag_storage *spill);
/* Drops one reference to s (NULL is ignored), freeing it with the last one. */
AG_HIDDEN void ag__storage_release(ag_storage *s);

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
/* Drops a result an op made but will not return: released now when no scope
 * owns it, otherwise left to its scope. */
AG_HIDDEN void ag__discard(ag_tensor *t);
/* Releases the node part of t (inputs, saved) after backward; t stays usable. */
AG_HIDDEN void ag__release_graph(ag_tensor *t);
/* Composites: an agrad function that builds its result from other agrad functions
 * brackets them with this pair, so that the intermediates they make are released
 * when it returns, whether or not the caller has a scope open:
 *     if (ag__composite_begin("name")) return NULL;
 *     ...
 *     return ag__composite_end(y);
 * begin opens a scope (AG_OK, or AG_ERR_NOMEM recorded as "name: out of memory").
 * end closes it, releasing everything made inside except y, whose reference moves
 * to the enclosing scope or, with none open, to the caller; a y not made inside
 * (NULL, or the argument an in-place composite returns) passes through untouched.
 * NULL on ENOMEM (y released).  A composite returning a status ends with
 * ag__composite_end(NULL).  Paths that make no intermediate need neither call. */
AG_HIDDEN ag_status ag__composite_begin(const char *op);
AG_HIDDEN ag_tensor *ag__composite_end(ag_tensor *y);
AG_HIDDEN void ag__contiguous_strides(int ndim, const int64_t *shape, int64_t *stride);
/* The element count of a valid shape (see sizes below: every tensor's is), unchecked. */
static inline int64_t ag__numel(int ndim, const int64_t *shape) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    return n;
}

/* ---- sizes ------------------------------------------------------------------
 * Every element count, byte count and stride computed from sizes goes through
 * ag__mul_overflow (one imul and a jump on overflow), so that no size wraps.  A
 * valid shape has 0..AG_MAX_DIMS sizes, none negative, whose product (zero sizes
 * counted as 1, as contiguous strides count them) is at most AG_MAX_SIZE; a tensor
 * that owns its data also takes at most AG_MAX_SIZE bytes, so counted.  Every
 * tensor's shape is valid, so its count, strides, byte offsets and a small multiple
 * of any of them stay within int64, and its header added to its bytes within size_t. */
#define AG_MAX_SIZE ((int64_t)1 << 62)
/* *r = a * b; true (and *r wrapped) when the product overflows int64. */
static inline bool ag__mul_overflow(int64_t a, int64_t b, int64_t *r) { return __builtin_mul_overflow(a, b, r); }
/* *r = a + b; true (and *r wrapped) when the sum overflows int64. */
static inline bool ag__add_overflow(int64_t a, int64_t b, int64_t *r) { return __builtin_add_overflow(a, b, r); }
/* ceil(a / b) for a >= 0, b > 0, without the overflow of (a + b - 1) / b. */
static inline int64_t ag__ceil_div(int64_t a, int64_t b) { return a / b + (a % b != 0); }
/* The element count of shape, or -1 if the shape is not valid (a negative size, or
 * sizes multiplying beyond AG_MAX_SIZE); ndim must be in 0..AG_MAX_DIMS. */
AG_HIDDEN int64_t ag__numel_checked(int ndim, const int64_t *shape);
/* The bytes of a contiguous tensor of shape and dtype (0 when a size is 0), or -1
 * when the shape is not valid or its sizes (zero counted as 1) times the element
 * size exceed AG_MAX_SIZE. */
AG_HIDDEN int64_t ag__nbytes_checked(int ndim, const int64_t *shape, ag_dtype dtype);
/* Checks a shape a view or a result will have: AG_ERR_SHAPE naming op and the
 * shape unless it is valid. */
AG_HIDDEN ag_status ag__check_shape(const char *op, int ndim, const int64_t *shape);
/* ag__check_shape, and the bytes of a tensor of shape and dtype within AG_MAX_SIZE:
 * one that may be allocated (AG_ERR_SHAPE naming op, the dtype and the shape if not). */
AG_HIDDEN ag_status ag__check_alloc(const char *op, int ndim, const int64_t *shape, ag_dtype dtype);
/* ag__alloc of n items of size bytes: NULL with AG_ERR_NOMEM when n is negative,
 * n * size exceeds AG_MAX_SIZE or the allocation fails. */
AG_HIDDEN void *ag__alloc_n(int64_t n, size_t size);
AG_HIDDEN bool ag__contig(const ag_tensor *t);
static inline char *ag__ptr(const ag_tensor *t) {
    return (char *)t->storage->data + t->offset * (int64_t)ag__esize(t->dtype);
}
/* A floating value converted to int64 as x86's truncating conversion does (and so
 * PyTorch on x86): toward zero, with NaN, ±inf and values outside int64's range
 * giving INT64_MIN, where a plain C cast is undefined.  uint8 conversions go
 * through it and then wrap modulo 256. */
static inline int64_t ag__to_i64(double v) { return v >= -0x1p63 && v < 0x1p63 ? (int64_t)v : INT64_MIN; }
/* The element at storage offset off (in elements) as a double, and its inverse
 * (converting to t's dtype as ag__to_i64 for int64 and uint8; bool stores v != 0). */
AG_HIDDEN double ag__read(const ag_tensor *t, int64_t off);
AG_HIDDEN void ag__write(ag_tensor *t, int64_t off, double v);
/* Normalises a possibly negative dim for ndim dims; -1 with an error naming op if invalid. */
AG_HIDDEN int ag__dim(const char *op, int dim, int ndim);

/* Memory overlap (core/overlap.c).  ag__has_internal_overlap: two different
 * indices of t may address one element (an expanded view).  ag__check_no_internal_overlap
 * fails with AG_ERR_ARG naming op and t's shape when it does: an in-place function
 * would write such an element more than once.  ag__overlap: whether a and b share
 * bytes, and if so whether element i of one is element i of the other (SAME). */
typedef enum { AG_OVERLAP_NONE = 0, AG_OVERLAP_SAME, AG_OVERLAP_PARTIAL } ag_overlap;
AG_HIDDEN bool ag__has_internal_overlap(const ag_tensor *t);
AG_HIDDEN ag_status ag__check_no_internal_overlap(const char *op, const ag_tensor *t);
AG_HIDDEN ag_overlap ag__overlap(const ag_tensor *a, const ag_tensor *b);

/* Handle checks (core/handles.c): a public entry point's first line is
 * AG_CHECK_HANDLES(ret, "name", t1, t2, ...) with its tensor parameters; a freed
 * or invalid one records AG_ERR_ARG "name: t2 is not a live tensor (freed or
 * invalid handle)" and returns ret (leave ret empty in a void function).  NULL
 * passes (the function's own NULL rule applies); the _NONNULL form also rejects
 * NULL ("name: t is NULL"), for functions that need a tensor.
 * AG_CHECK_HANDLE_ARRAY checks the n entries of an array of tensors.  Tensor
 * arguments must be plain names: the message quotes them.
 *
 * Two strengths.  With the meson option handle_checks (the default in debug
 * builds) every header is in a registry of live handles, and a handle is looked
 * up there without ever being read.  Otherwise the header's magic word is read:
 * one load and compare per argument, inlined (ag__handles_fast), with the
 * message formatted out of line only when a check fails. */
AG_HIDDEN bool ag__handles_ok(const char *fn, const char *names, bool null_ok, int n, const ag_tensor *const *t);
AG_HIDDEN bool ag__handle_array_ok(const char *fn, const char *name, ag_tensor *const *t, int n);
#if AG_HANDLE_CHECKS
AG_HIDDEN void ag__handle_born(const ag_tensor *t);
AG_HIDDEN void ag__handle_dead(const ag_tensor *t);
static inline bool ag__handles_fast(bool null_ok, int n, const ag_tensor *const *t) {
    (void)null_ok, (void)n, (void)t;
    return false; /* always ask the registry */
}
#else
static inline bool ag__handles_fast(bool null_ok, int n, const ag_tensor *const *t) {
    for (int i = 0; i < n; i++)
        if (t[i] ? t[i]->magic != AG_TENSOR_LIVE : !null_ok) return false;
    return true;
}
#endif
#define AG__CHECK_HANDLES(ret, fn, null_ok, ...)                                                       \
    do {                                                                                               \
        const ag_tensor *const ag__handles_[] = {__VA_ARGS__};                                         \
        if (!ag__handles_fast(null_ok, AG__NARG(__VA_ARGS__), ag__handles_) &&                         \
            !ag__handles_ok(fn, #__VA_ARGS__, null_ok, AG__NARG(__VA_ARGS__), ag__handles_))           \
            return ret;                                                                                \
    } while (0)
#define AG_CHECK_HANDLES(ret, fn, ...) AG__CHECK_HANDLES(ret, fn, true, __VA_ARGS__)
#define AG_CHECK_HANDLES_NONNULL(ret, fn, ...) AG__CHECK_HANDLES(ret, fn, false, __VA_ARGS__)
#define AG_CHECK_HANDLE_ARRAY(ret, fn, arr, n)                                                         \
    do {                                                                                               \
        if (!ag__handle_array_ok(fn, #arr, arr, n)) return ret;                                        \
    } while (0)

/* ag_retain and ag_release without the entry check, for the references the
 * library itself holds (its own handles are live): the hot paths of scopes and
 * backward take and drop several per op. */
static inline ag_tensor *ag__retain(ag_tensor *t) {
    if (t) ag__ref_take(&t->refcount);
    return t;
}
AG_HIDDEN void ag__release(ag_tensor *t);
/* Forward mode: sets t's tangent (taking over the caller's reference; NULL: none)
 * at dual level, releasing the one it had, and keeps t in its thread's list of
 * tensors holding a tangent.  ag__tangents_drop releases every tangent in that list
 * (the end of a dual level: a tangent's graph may hold its own tensor, a cycle). */
AG_HIDDEN void ag__tangent_set(ag_tensor *t, ag_tensor *tangent, uint32_t level);
/* A write that makes t's values independent of everything (the random fills): its
 * tangent, if any, becomes zero, as in PyTorch: written into the tangent when that
 * has no graph and no shared elements (the tangents of t's views follow), else
 * dropped (ag__tangent_set(t, NULL, 0): no tangent reads as zero). */
AG_HIDDEN void ag__tangent_zero(ag_tensor *t);
AG_HIDDEN void ag__tangents_drop(void);

/* Random numbers from this thread's generator. */
/* What ag_set_rng_state checks (dtype, shape, not all zeros), without setting anything. */
AG_HIDDEN ag_status ag__rng_check_state(const ag_tensor *t);

/* SplitMix64's output function (Steele, Lea & Flood): a bijective 64-bit mix of z. */
static inline uint64_t ag__mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
/* One step of SplitMix64 on *x: what seeds a xoshiro state (random.c, data/random.c). */
static inline uint64_t ag__splitmix64(uint64_t *x) { return ag__mix64(*x += 0x9e3779b97f4a7c15ULL); }

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
/* Fills n elements of dtype (float32 or float64) at out with scale where a uniform
 * draw is below keep, else 0: dropout's mask.  One draw of this thread's generator
 * keys a counter-based generator (random.c), so the mask is split over threads and
 * is the same for any thread count. */
AG_HIDDEN void ag__rand_keep_mask(void *out, ag_dtype dtype, int64_t n, double keep, double scale);
/* The mask in parts (nn/dropout.c fuses it into the loop that applies it): the key of a mask that keeps
 * with probability keep, one draw of this thread's generator as ag__rand_keep_mask takes; then elements
 * [i0, i1) (i0 even) of the n-element mask of key k into out[0 .. i1 - i0), the values ag__rand_keep_mask
 * gives them after the same draw. */
typedef struct ag_keep_key {
    uint64_t key;
    int64_t bound; /* keep·2^32 rounded up */
} ag_keep_key;
AG_HIDDEN ag_keep_key ag__rand_keep_key(double keep);
AG_HIDDEN void ag__rand_keep_part(void *out, ag_dtype dtype, int64_t n, int64_t i0, int64_t i1, ag_keep_key k,
                                  double scale);
/* Fills n elements of dtype (float32 or float64) at out (contiguous) with a + (b - a)·u, u uniform on
 * [0, 1), or with normal ? a + b·z, z standard normal.  Keyed by one draw of this thread's generator, a
 * counter-based generator (random.c) makes every element, split over threads and vectorised: the values
 * are the same for any thread count.  ag__rand_fill_keyed takes the key from the caller (a private
 * generator: data/augment.c). */
AG_HIDDEN void ag__rand_fill(void *out, ag_dtype dtype, int64_t n, bool normal, double a, double b);
AG_HIDDEN void ag__rand_fill_keyed(void *out, ag_dtype dtype, int64_t n, uint64_t key, bool normal, double a, double b);
/* Whether the fills take their explicit AVX-512 kernels where the CPU has them (true, the default) or the
 * C kernels they must match bit for bit (false: test_random compares the two).  Set it only while no fill
 * runs. */
AG_HIDDEN extern bool ag__rand_avx512;
/* out[0..n) (float32 or float64) exponential with rate lambd > 0, -ln(1 - u)/lambd of a uniform fill u: one
 * draw of this thread's stream, the same values for any thread count (core/random.c). */
AG_HIDDEN void ag__rand_exponential(void *out, ag_dtype dtype, int64_t n, double lambd);
/* out[0..n) = low + a uniform integer in [0, span) (span > 0, modulo 2^64), exactly uniform: one draw of this
 * thread's stream, the same values for any thread count (core/random.c). */
AG_HIDDEN void ag__rand_below(int64_t *out, int64_t n, uint64_t low, uint64_t span);

#endif

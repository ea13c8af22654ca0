/*
 * core/tensor.c - tensor and storage lifetime, scopes, geometry and properties.
 *
 * A tensor is a header (shape, strides, offset, graph node) over a
 * reference-counted storage.  Headers are reference counted too: the creator
 * (the innermost scope, or the caller) holds one reference and every graph node
 * that uses the tensor holds another.  Freeing is iterative, so releasing the
 * output of a very deep graph does not recurse.
 */
#include <math.h>
#include <string.h>
#include "core/internal.h"
#include "core/hooks.h"

size_t ag_dtype_size(ag_dtype dtype) { return ag__esize(dtype); }

const char *ag_dtype_name(ag_dtype dtype) {
    switch (dtype) {
    case AG_F32: return "float32";
    case AG_F64: return "float64";
    case AG_I64: return "int64";
    case AG_BOOL: return "bool";
    case AG_U8: return "uint8";
    }
    return "?";
}

/* ---- sizes ------------------------------------------------------------------- */
/* The product of the sizes with 0 counted as 1 (what contiguous strides reach), or -1
 * if a size is negative or the product exceeds AG_MAX_SIZE; *empty tells whether a
 * size is 0. */
static int64_t extent(int ndim, const int64_t *shape, bool *empty) {
    int64_t n = 1;
    *empty = false;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) return -1;
        if (shape[i] == 0) *empty = true;
        else if (ag__mul_overflow(n, shape[i], &n) || n > AG_MAX_SIZE) return -1;
    }
    return n;
}

int64_t ag__numel_checked(int ndim, const int64_t *shape) {
    bool empty;
    int64_t n = extent(ndim, shape, &empty);
    return n >= 0 && empty ? 0 : n;
}

/* One pass: the byte count grows from the element size, so a count within AG_MAX_SIZE
 * bytes is one within AG_MAX_SIZE elements (the hot path of every new tensor). */
static inline int64_t nbytes_checked(int ndim, const int64_t *shape, ag_dtype dtype) {
    int64_t n = (int64_t)ag__esize(dtype);
    bool empty = false;
    for (int i = 0; i < ndim; i++) {
        const int64_t d = shape[i];
        if (d <= 1) {
            if (d < 0) return -1;
            empty |= d == 0;
        } else if (ag__mul_overflow(n, d, &n) || n > AG_MAX_SIZE) {
            return -1;
        }
    }
    return empty ? 0 : n;
}

int64_t ag__nbytes_checked(int ndim, const int64_t *shape, ag_dtype dtype) { return nbytes_checked(ndim, shape, dtype); }

ag_status ag__check_shape(const char *op, int ndim, const int64_t *shape) {
    char s[AG_SHAPE_STR];
    if (ndim < 0 || ndim > AG_MAX_DIMS)
        return ag__fail(AG_ERR_SHAPE, "%s: %d dims requested, at most %d are supported", op, ndim, AG_MAX_DIMS);
    for (int i = 0; i < ndim; i++)
        if (shape[i] < 0)
            return ag__fail(AG_ERR_SHAPE, "%s: negative size in shape %s", op, ag__shape_str(s, ndim, shape));
    if (ag__numel_checked(ndim, shape) < 0)
        return ag__fail(AG_ERR_SHAPE, "%s: shape %s is too large: its sizes multiply beyond 2^62", op,
                        ag__shape_str(s, ndim, shape));
    return AG_OK;
}

ag_status ag__check_alloc(const char *op, int ndim, const int64_t *shape, ag_dtype dtype) {
    ag_status st = ag__check_shape(op, ndim, shape);
    if (st) return st;
    char s[AG_SHAPE_STR];
    if (ag__nbytes_checked(ndim, shape, dtype) < 0)
        return ag__fail(AG_ERR_SHAPE, "%s: shape %s of %s would take more than 2^62 bytes", op,
                        ag__shape_str(s, ndim, shape), ag_dtype_name(dtype));
    return AG_OK;
}

void ag__contiguous_strides(int ndim, const int64_t *shape, int64_t *stride) {
    int64_t s = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        stride[i] = s;
        s *= shape[i] > 1 ? shape[i] : 1;
    }
}

bool ag__contig(const ag_tensor *t) {
    int64_t s = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] != 1 && t->stride[i] != s) return false;
        s *= t->shape[i];
    }
    return true;
}

/* ---- storage ------------------------------------------------------------- */
/* A new tensor's header, storage and data share one block: [ag_tensor][ag_storage]
 * [up to 64 bytes of alignment][data].  The storage's `host` is that header.  The
 * block is freed when both are dead: by the header if the storage dies with it,
 * otherwise by the last view releasing the storage. */

/* Bytes of a storage with its data room (borrowed storages have none). */
static size_t storage_bytes(const ag_storage *s) { return sizeof(ag_storage) + (s->borrowed ? 0 : 64 + s->room); }

/* The data room of a storage that is not borrowed: 64-byte aligned, after the struct. */
static void *room_of(ag_storage *s) { return (void *)(((uintptr_t)(s + 1) + 63) & ~(uintptr_t)63); }

static void storage_init(ag_storage *s, size_t nbytes, bool zero) {
    ag__ref_init(&s->refcount, 1);
    s->version = 0;
    s->borrowed = false;
    s->host = NULL;
    s->base = NULL;
    s->spill = NULL;
    s->nbytes = s->room = nbytes;
    s->data = room_of(s);
    if (zero) memset(s->data, 0, nbytes);
}

static void storage_release(ag_storage *s);

/* Frees s, and with it its host header's block if it has one. */
static void storage_free(ag_storage *s) {
    storage_release(s->base);
    storage_release(s->spill);
    if (s->host) ag__cache_free(s->host, sizeof(ag_tensor) + storage_bytes(s));
    else ag__cache_free(s, storage_bytes(s));
}

static void storage_release(ag_storage *s) {
    if (s && ag__ref_drop(&s->refcount)) storage_free(s);
}

void ag__storage_release(ag_storage *s) { storage_release(s); }

/* ---- dtype conversion in place ----------------------------------------------- */
ag_status ag__retype_prepare(const ag_tensor *t, ag_dtype dtype, ag_storage **spill) {
    const ag_storage *s = t->storage;
    size_t bytes = s->nbytes / ag__esize(t->dtype) * ag__esize(dtype);
    *spill = NULL;
    if (!s->borrowed && bytes <= s->room) return AG_OK;
    ag_storage *n = ag__cache_alloc(sizeof(ag_storage) + 64 + bytes);
    if (!n) return AG_ERR_NOMEM;
    storage_init(n, bytes, false);
    *spill = n;
    return AG_OK;
}

/* Converts n elements between float32 and float64.  dst may overlap src when both
 * start at the same address (the room): narrowing runs forwards and widening
 * backwards, so each element is read before anything is written over it. */
static void convert(void *dst, const void *src, int64_t n, ag_dtype from) {
    if (from == AG_F64)
        for (int64_t i = 0; i < n; i++) ((float *)dst)[i] = (float)((const double *)src)[i];
    else
        for (int64_t i = n - 1; i >= 0; i--) ((double *)dst)[i] = (double)((const float *)src)[i];
}

void ag__retype_commit(ag_tensor *t, ag_dtype dtype, ag_storage *spill) {
    ag_storage *s = t->storage;
    if (dtype == t->dtype) {
        storage_release(spill);
        return;
    }
    int64_t n = (int64_t)(s->nbytes / ag__esize(t->dtype));
    void *dst = spill ? spill->data : room_of(s);
    convert(dst, s->data, n, t->dtype);
    storage_release(s->spill); /* after reading from it */
    s->spill = spill;
    s->data = dst;
    s->nbytes = (size_t)n * ag__esize(dtype);
    s->version++;
    t->dtype = dtype;
}

/* ---- scopes ---------------------------------------------------------------- */
typedef struct scope {
    ag_tensor **items;
    int len, cap;
} scope;

static _Thread_local scope *scopes;
static _Thread_local int scope_depth, scope_cap;

int ag_scope_depth(void) { return scope_depth; }

ag_status ag_scope_begin(void) {
    if (scope_depth == scope_cap) {
        int cap = scope_cap ? 2 * scope_cap : 8;
        scope *grown = ag__cache_alloc(sizeof(scope) * (size_t)cap);
        if (!grown) return AG_ERR_NOMEM;
        if (scope_depth) memcpy(grown, scopes, sizeof(scope) * (size_t)scope_depth);
        memset(grown + scope_depth, 0, sizeof(scope) * (size_t)(cap - scope_depth));
        ag__cache_free(scopes, sizeof(scope) * (size_t)scope_cap);
        scopes = grown;
        scope_cap = cap;
    }
    scopes[scope_depth].len = 0;
    scope_depth++;
    return AG_OK;
}

ag_status ag_scope_end(void) {
    if (scope_depth == 0)
        return ag__fail(AG_ERR_ARG, "ag_scope_end: no scope is open");
    scope *sc = &scopes[scope_depth - 1];
    /* Release newest first: outputs go before the inputs they hold. */
    for (int i = sc->len - 1; i >= 0; i--) ag_release(sc->items[i]); /* checked: the user may have released one */
    sc->len = 0;
    scope_depth--;
    if (scope_depth == 0) {
        for (int i = 0; i < scope_cap; i++) ag__cache_free(scopes[i].items, sizeof(ag_tensor *) * (size_t)scopes[i].cap);
        ag__cache_free(scopes, sizeof(scope) * (size_t)scope_cap);
        scopes = NULL;
        scope_cap = 0;
    }
    return AG_OK;
}

static bool scope_push(scope *sc, ag_tensor *t) {
    if (sc->len == sc->cap) {
        int cap = sc->cap ? 2 * sc->cap : 64;
        ag_tensor **grown = ag__cache_alloc(sizeof(ag_tensor *) * (size_t)cap);
        if (!grown) return false;
        if (sc->len) memcpy(grown, sc->items, sizeof(ag_tensor *) * (size_t)sc->len);
        ag__cache_free(sc->items, sizeof(ag_tensor *) * (size_t)sc->cap);
        sc->items = grown;
        sc->cap = cap;
    }
    sc->items[sc->len++] = t;
    return true;
}

ag_tensor *ag__own(ag_tensor *t) {
    if (!t || scope_depth == 0) return t;
    if (!scope_push(&scopes[scope_depth - 1], t)) {
        ag_release(t);
        return NULL;
    }
    return t;
}

void ag__discard(ag_tensor *t) {
    if (t && scope_depth == 0) ag__release(t);
}

ag_status ag__composite_begin(const char *op) {
    if (ag_scope_begin() == AG_OK) return AG_OK;
    return ag__fail(AG_ERR_NOMEM, "%s: out of memory", op);
}

ag_tensor *ag__composite_end(ag_tensor *y) {
    if (scope_depth == 0) return y; /* unbalanced: no scope of the composite's to close */
    scope *sc = &scopes[scope_depth - 1];
    bool made_here = y && sc->len && sc->items[sc->len - 1] == y;
    if (made_here) sc->len--; /* the newest, as nearly always: its reference leaves with it */
    for (int i = sc->len - 1; y && !made_here && i >= 0; i--)
        if (sc->items[i] == y) {
            sc->items[i] = NULL; /* ag_release ignores NULL */
            made_here = true;
        }
    ag_scope_end();
    if (!made_here) return y; /* NULL, or an in-place composite's argument */
    if (!ag__own(y)) return ag__fail_null(AG_ERR_NOMEM, "out of memory handing a result to its scope");
    return y;
}

ag_tensor *ag_keep(ag_tensor *t) {
    AG_CHECK_HANDLES(NULL, "keep", t);
    if (!t || scope_depth == 0) return t;
    if (scope_depth >= 2) {
        if (!scope_push(&scopes[scope_depth - 2], t)) return ag__fail_null(AG_ERR_NOMEM, "ag_keep: out of memory");
    }
    ag__ref_take(&t->refcount);
    return t;
}

/* ---- inference tensors ------------------------------------------------------- */
_Thread_local bool ag__inference_mode;
atomic_int ag__rare_modes;

void ag__set_inference_mode(bool on) {
    if (on == ag__inference_mode) return;
    atomic_fetch_add_explicit(&ag__rare_modes, on ? 1 : -1, memory_order_relaxed);
    ag__inference_mode = on;
}

ag_status ag__check_inference_write(const char *op, const ag_tensor *t) {
    if (!t->inference || ag__inference_mode) return AG_OK;
    char s[AG_SHAPE_STR];
    return ag__fail(AG_ERR_GRAPH, "%s: inplace update to an inference tensor %s outside inference mode is not allowed; "
                    "make a clone (ag_clone) to get a normal tensor before the in-place update", op, ag__tshape(s, t));
}

bool ag_is_inference(const ag_tensor *t) {
    AG_CHECK_HANDLES(false, "is_inference", t);
    return t && t->inference;
}

/* ---- tensor headers ---------------------------------------------------------- */
/* A header, with `extra` more bytes in its block. */
static inline __attribute__((always_inline)) ag_tensor *header_new(ag_dtype dtype, int ndim, const int64_t *shape,
                                                                   size_t extra) {
    ag_tensor *t = ag__tensor_alloc(sizeof(ag_tensor) + extra);
    if (!t) return NULL;
#if AG_HANDLE_CHECKS
    ag__handle_born(t);
#endif
    memset(t, 0, offsetof(ag_tensor, shape));
    t->magic = AG_TENSOR_LIVE;
    t->inference = ag__rare_mode_on() && ag__inference_mode;
    ag__ref_init(&t->refcount, 1);
    t->ndim = ndim;
    t->dtype = dtype;
    if (ndim) memcpy(t->shape, shape, sizeof(int64_t) * (size_t)ndim);
    t->storage = NULL;
    t->grad = NULL;
    t->view_base = NULL;
    t->op = NULL;
    t->nin = 0;
    t->in = t->in_inline;
    t->saved = NULL;
    t->where_file = NULL; /* read by anomaly messages, also for a node recorded before anomaly mode was on */
    t->where_line = 0;
    t->bgrad = NULL;
    t->pending = 0;
    t->hooks = 0;
    t->tangent = NULL;
    t->tangent_next = NULL;
    t->tangent_pprev = NULL;
    t->tangent_level = 0;
    t->tangent_pending = false;
    return t;
}

ag_tensor *ag__new_unowned(ag_dtype dtype, int ndim, const int64_t *shape, bool zero) {
    /* Public functions check the shapes they are given (naming themselves); this
     * catches a result too large to hold, such as a broadcast of expanded views. */
    int64_t checked = nbytes_checked(ndim, shape, dtype);
    if (checked < 0) {
        char s[AG_SHAPE_STR];
        return ag__fail_null(AG_ERR_SHAPE, "shape %s of %s would take more than 2^62 bytes",
                             ag__shape_str(s, ndim, shape), ag_dtype_name(dtype));
    }
    size_t nbytes = (size_t)checked;
    ag_tensor *t = header_new(dtype, ndim, shape, sizeof(ag_storage) + 64 + nbytes);
    if (!t) return NULL;
    ag__contiguous_strides(ndim, shape, t->stride);
    t->storage = (ag_storage *)(t + 1);
    storage_init(t->storage, nbytes, zero);
    t->storage->host = t;
    return t;
}

ag_tensor *ag__new(ag_dtype dtype, int ndim, const int64_t *shape) {
    return ag__own(ag__new_unowned(dtype, ndim, shape, false));
}

ag_tensor *ag__new_zeros(ag_dtype dtype, int ndim, const int64_t *shape) {
    return ag__own(ag__new_unowned(dtype, ndim, shape, true));
}

ag_tensor *ag__new_view_unowned(const ag_tensor *base, int ndim, const int64_t *shape, const int64_t *stride,
                                int64_t offset) {
    ag_tensor *t = header_new(base->dtype, ndim, shape, 0);
    if (!t) return NULL;
    if (ndim) memcpy(t->stride, stride, sizeof(int64_t) * (size_t)ndim);
    t->inference = base->inference; /* a view is an inference tensor when its base is */
    t->offset = offset;
    t->storage = base->storage;
    ag__ref_take(&t->storage->refcount);
    return t;
}

ag_tensor *ag__new_view(const ag_tensor *base, int ndim, const int64_t *shape,
                        const int64_t *stride, int64_t offset) {
    return ag__own(ag__new_view_unowned(base, ndim, shape, stride, offset));
}

ag_tensor *ag_from_buffer(void *data, ag_shape shape, ag_dtype dtype) {
    if (!data) return ag__fail_null(AG_ERR_ARG, "from_buffer: data is NULL");
    if ((unsigned)dtype > AG_U8) return ag__fail_null(AG_ERR_DTYPE, "from_buffer: unknown dtype %d", (int)dtype);
    if (ag__check_alloc("from_buffer", shape.ndim, shape.dim, dtype)) return NULL;
    ag_tensor *t = header_new(dtype, shape.ndim, shape.dim, 0);
    if (!t) return NULL;
    ag__contiguous_strides(shape.ndim, shape.dim, t->stride);
    t->storage = ag__cache_alloc(sizeof(ag_storage));
    if (!t->storage) {
        ag_release(t);
        return NULL;
    }
    ag__ref_init(&t->storage->refcount, 1);
    t->storage->version = 0;
    t->storage->base = NULL;
    t->storage->spill = NULL;
    t->storage->borrowed = true;
    t->storage->host = NULL;
    t->storage->nbytes = (size_t)ag__numel(shape.ndim, shape.dim) * ag_dtype_size(dtype);
    t->storage->room = 0;
    t->storage->data = data;
    return ag__own(t);
}

ag_tensor *ag_retain(ag_tensor *t) {
    AG_CHECK_HANDLES(NULL, "retain", t);
    if (t) ag__ref_take(&t->refcount);
    return t;
}

static void drop_ref(ag_tensor *t, ag_tensor **dead) {
    if (t && ag__ref_drop(&t->refcount)) {
        t->dead_next = *dead;
        *dead = t;
    }
}

/* Drops the node part of t (inputs, saved tensor, gradient in flight); children
 * whose last reference this was are pushed on *dead.  dies: t's header goes too. */
static inline __attribute__((always_inline)) void release_node(ag_tensor *t, ag_tensor **dead, bool dies) {
    if (t->op && (t->op->saves & AG_OP_EXT)) ((const ag_op_ext *)t->op)->release(t, dies);
    for (int i = 0; i < t->nin; i++) drop_ref(t->in[i], dead);
    if (t->in != t->in_inline) ag__cache_free(t->in, AG_NODE_BLOCK(t->nin));
    t->in = t->in_inline;
    t->nin = 0;
    drop_ref(t->saved, dead);
    t->saved = NULL;
    drop_ref(t->bgrad, dead);
    t->bgrad = NULL;
}

/* Forward mode: the tensors of this thread holding a tangent, so that the end of a
 * dual level can drop every tangent.  Tangents make cycles: the tangent of y =
 * tanh(x) is dx·(1 - y²), recorded with y as an input when grad mode is on. */
static _Thread_local ag_tensor *tangent_holders;

static void tangent_unlink(ag_tensor *t) {
    *t->tangent_pprev = t->tangent_next;
    if (t->tangent_next) t->tangent_next->tangent_pprev = t->tangent_pprev;
    t->tangent_next = NULL;
    t->tangent_pprev = NULL;
}

void ag__tangent_set(ag_tensor *t, ag_tensor *tangent, uint32_t level) {
    ag_tensor *old = t->tangent;
    if (old && !tangent) tangent_unlink(t);
    if (!old && tangent) {
        t->tangent_next = tangent_holders;
        if (tangent_holders) tangent_holders->tangent_pprev = &t->tangent_next;
        t->tangent_pprev = &tangent_holders;
        tangent_holders = t;
    }
    t->tangent = tangent;
    t->tangent_level = tangent ? level : 0;
    ag__release(old);
}

void ag__tangents_drop(void) {
    while (tangent_holders) /* a release may free other holders: they unlink themselves */
        ag__tangent_set(tangent_holders, NULL, 0);
}

static void free_dead(ag_tensor *dead) {
    while (dead) {
        ag_tensor *d = dead;
        dead = d->dead_next;
        release_node(d, &dead, true);
        drop_ref(d->grad, &dead);
        drop_ref(d->view_base, &dead);
        if (d->tangent) {
            tangent_unlink(d);
            drop_ref(d->tangent, &dead);
        }
        if (d->hooks) ag__hooks_free(d->hooks);
        ag_storage *s = d->storage;
        ag__tensor_dead();
        d->magic = AG_TENSOR_DEAD; /* a stale handle to it now fails AG_CHECK_HANDLES */
#if AG_HANDLE_CHECKS
        ag__handle_dead(d); /* before its memory can be handed out again */
#endif
        if (s && s->host == d) { /* the block is d's: free it unless a view still uses the storage */
            if (ag__ref_drop(&s->refcount)) storage_free(s);
        } else {
            storage_release(s);
            ag__cache_free(d, sizeof(ag_tensor));
        }
    }
}

void ag__release_graph(ag_tensor *t) {
    ag_tensor *dead = NULL;
    release_node(t, &dead, false);
    t->graph_freed = t->op != NULL;
    free_dead(dead);
}

void ag__release(ag_tensor *t) {
    if (!t || !ag__ref_drop(&t->refcount)) return;
    t->dead_next = NULL;
    free_dead(t);
}

void ag_release(ag_tensor *t) {
    AG_CHECK_HANDLES(, "release", t);
    ag__release(t);
}

/* ---- properties -------------------------------------------------------------- */
int ag__dim(const char *op, int dim, int ndim) {
    int n = ndim ? ndim : 1; /* a 0-d tensor accepts dim 0 and -1, as PyTorch */
    if (dim < -n || dim >= n)
        return ag__fail(AG_ERR_INDEX, "%s: dim %d out of range for a tensor of %d dims (expected %d to %d)", op, dim,
                        ndim, -n, n - 1),
               -1;
    return dim < 0 ? dim + n : dim;
}

/* The property functions need a tensor: with handle checks a NULL or freed t
 * records AG_ERR_ARG and gives 0 / -1 / an empty shape / NULL instead of a crash. */
int ag_ndim(const ag_tensor *t) {
    AG_CHECK_HANDLES_NONNULL(0, "ndim", t);
    return t->ndim;
}

int64_t ag_numel(const ag_tensor *t) {
    AG_CHECK_HANDLES_NONNULL(0, "numel", t);
    return ag__numel(t->ndim, t->shape);
}

ag_dtype ag_dtype_of(const ag_tensor *t) {
    AG_CHECK_HANDLES_NONNULL(AG_F32, "dtype_of", t);
    return t->dtype;
}

bool ag_is_contiguous(const ag_tensor *t) {
    AG_CHECK_HANDLES_NONNULL(false, "is_contiguous", t);
    return ag__contig(t);
}

void *ag_data(const ag_tensor *t) {
    AG_CHECK_HANDLES_NONNULL(NULL, "data", t);
    return ag__ptr(t);
}

uint32_t ag_version(const ag_tensor *t) {
    AG_CHECK_HANDLES_NONNULL(0, "version", t);
    return ag__version(t);
}

ag_status ag_increment_version(ag_tensor *t) {
    AG_CHECK_HANDLES_NONNULL(ag_last_status(), "increment_version", t);
    ag__bump_version(t);
    return AG_OK;
}

/* dim of t normalised for ag_size / ag_stride, or -1 with an error naming op: t
 * NULL (AG_ERR_ARG), dim out of range (AG_ERR_INDEX; a 0-d tensor has no dims). */
static int size_dim(const char *op, const ag_tensor *t, int dim) {
    if (!t) return ag__fail(AG_ERR_ARG, "%s: t is NULL", op), -1;
    if (t->ndim == 0) return ag__fail(AG_ERR_INDEX, "%s: dim %d out of range for a 0-d tensor (it has no dims)", op, dim), -1;
    return ag__dim(op, dim, t->ndim);
}

int64_t ag_size(const ag_tensor *t, int dim) {
    AG_CHECK_HANDLES(-1, "size", t);
    int d = size_dim("size", t, dim);
    return d < 0 ? -1 : t->shape[d];
}

int64_t ag_stride(const ag_tensor *t, int dim) {
    AG_CHECK_HANDLES(-1, "stride", t);
    int d = size_dim("stride", t, dim);
    return d < 0 ? -1 : t->stride[d];
}

ag_shape ag_shape_of(const ag_tensor *t) {
    ag_shape s;
    memset(&s, 0, sizeof s);
    AG_CHECK_HANDLES_NONNULL(s, "shape_of", t);
    s.ndim = t->ndim;
    memcpy(s.dim, t->shape, sizeof(int64_t) * (size_t)t->ndim);
    return s;
}

double ag__read(const ag_tensor *t, int64_t off) {
    const char *p = (const char *)t->storage->data + off * (int64_t)ag_dtype_size(t->dtype);
    switch (t->dtype) {
    case AG_F32: return *(const float *)p;
    case AG_F64: return *(const double *)p;
    case AG_I64: return (double)*(const int64_t *)p;
    case AG_BOOL:
    case AG_U8: return *(const uint8_t *)p;
    }
    return NAN;
}

void ag__write(ag_tensor *t, int64_t off, double v) {
    char *p = (char *)t->storage->data + off * (int64_t)ag_dtype_size(t->dtype);
    switch (t->dtype) {
    case AG_F32: *(float *)p = (float)v; break;
    case AG_F64: *(double *)p = v; break;
    case AG_I64: *(int64_t *)p = ag__to_i64(v); break;
    case AG_BOOL: *(uint8_t *)p = v != 0; break;
    case AG_U8: *(uint8_t *)p = (uint8_t)ag__to_i64(v); break; /* truncation, wrapping as PyTorch does on x86 */
    }
}

/*
 * fuzz_api.c - libFuzzer target over the public API itself.  Each input is a
 * short program: every instruction is one byte naming a call kind, followed by
 * the bytes its arguments are decoded from.  Results go to a pool of NSLOT
 * tensor slots so that later instructions chain on them: creation with any
 * shape and dtype, views with any arguments, every registered op (through its
 * test row, test/cases/), the public ops with fuzzed dims and scalars (NaN, inf
 * and huge values included), in-place updates of views, autograd and backward,
 * state dicts saved and loaded, modules, scopes, and the higher-order and
 * forward-mode API (ag_autograd_grad, the functional API on fixed callbacks, dual
 * levels, dual tensors and their tangents, which the other calls then carry).
 *
 * Hostile arguments go straight to the API (sizes of 2^62, shapes whose
 * product wraps, negative sizes, 17 dims, unknown dtypes): rejecting them
 * cleanly is the API's job.  The decoder only bounds what would be a
 * legitimate cost rather than a bug:
 *   - memory: every allocation goes through ag_set_allocator with a budget of
 *     ALLOC_LIMIT live bytes, so a huge but valid shape gives AG_ERR_NOMEM (and
 *     out-of-memory paths get exercised) instead of exhausting the machine;
 *   - time: ops that compute over their inputs are only called on inputs of at
 *     most COMPUTE_CAP elements (a view of 2^62 elements is cheap to make but
 *     not to sum), and a program runs at most MAX_STEPS instructions;
 *   - caller contracts: buffers handed to ag_from_data / ag_from_buffer /
 *     ag_copy_to are as large as the call is told they are.
 *
 * Invariants checked after every call (a failure aborts with a message):
 *   - a NULL result (or a failing status) comes with ag_last_status() != AG_OK
 *     and a non-empty ag_last_error();
 *   - a tensor result is sane: 0 <= ndim <= AG_MAX_DIMS, a known dtype, sizes
 *     >= 0 whose product fits and equals ag_numel, every element inside its
 *     storage; small results are read in full (ASan sees any stray view);
 *   - calls given NULL inputs return NULL without recording an error;
 *   - after backward every gradient has its tensor's shape and dtype; a state
 *     dict saved and loaded back holds the same names, shapes and bits;
 *   - after each program, once every slot is released and every scope closed,
 *     ag_live_tensors() is 0 (a leak is a finding; LeakSanitizer sees the rest).
 */
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "agrad/agrad.h"
#include "core/internal.h"
#include "ops/registry.h"
#include "test/cases/op_cases.h"

#define NSLOT 8
#define MAX_STEPS 48
#define COMPUTE_CAP ((int64_t)1 << 16)  /* elements an op that computes may read per input */
#define TOUCH_CAP ((int64_t)1 << 16)    /* results up to this size are read in full */
#define ALLOC_LIMIT ((size_t)48 << 20)  /* live bytes agrad may hold */

/* ---- the allocator: a budget of live bytes ------------------------------------------ */
/* Each block carries its size in a 16-byte prefix (agrad aligns its data itself). */
static size_t live_bytes;

static void *budget_alloc(void *ud, void *ptr, size_t nsize) {
    (void)ud;
    if (nsize == 0) {
        unsigned char *p = (unsigned char *)ptr - 16;
        size_t n;
        memcpy(&n, p, sizeof n);
        live_bytes -= n;
        free(p);
        return NULL;
    }
    if (nsize > ALLOC_LIMIT || live_bytes + nsize > ALLOC_LIMIT) return NULL;
    unsigned char *p = malloc(nsize + 16);
    if (!p) return NULL;
    memcpy(p, &nsize, sizeof nsize);
    live_bytes += nsize;
    return p + 16;
}

static bool trace; /* FUZZ_API_TRACE=1: print each instruction's last call and outcome */

/* ---- reading the program ------------------------------------------------------------- */
typedef struct input {
    const uint8_t *p;
    size_t n;
} input;

static uint8_t u8(input *in) {
    if (!in->n) return 0;
    in->n--;
    return *in->p++;
}

static uint16_t u16(input *in) {
    uint16_t lo = u8(in);
    return (uint16_t)(lo | (uint16_t)(u8(in) << 8));
}

static uint64_t u64(input *in) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)u8(in) << (8 * i);
    return v;
}

static bool bit(input *in) { return u8(in) & 1; }

/* Sizes that must be rejected or fail cleanly: negative, huge, products that wrap. */
static const int64_t hostile_sizes[] = {
    -1, -2, INT64_MIN, INT64_MAX, (int64_t)1 << 31, (int64_t)1 << 32, (int64_t)1 << 62,
    ((int64_t)1 << 62) + 1, 3037000500 /* its square passes INT64_MAX */, (int64_t)1 << 21,
    (int64_t)1 << 40, INT64_MAX / 3 + 1, -((int64_t)1 << 62), ((int64_t)1 << 32) + 1, (int64_t)1 << 16,
};
#define NHOSTILE (int)(sizeof hostile_sizes / sizeof hostile_sizes[0])

/* A size: mostly small, sometimes a few hundred or thousand, sometimes hostile or raw. */
static int64_t get_size(input *in) {
    uint8_t v = u8(in);
    if (v < 160) return v % 6;
    if (v < 208) return u8(in);
    if (v < 224) return u16(in);
    if (v < 224 + NHOSTILE) return hostile_sizes[v - 224];
    return (int64_t)u64(in);
}

/* A signed index or length: small of either sign, 16-bit, or hostile. */
static int64_t get_index(input *in) {
    uint8_t v = u8(in);
    if (v < 160) return (int64_t)(v % 13) - 6;
    if (v < 208) return (int16_t)u16(in);
    if (v < 224 + NHOSTILE) return hostile_sizes[v % NHOSTILE];
    return (int64_t)u64(in);
}

static const int hostile_dims[] = {INT_MIN, INT_MAX, 16, -17, 17, -16, 100, -100};

/* A dim argument: -4..4 mostly, else out of any range. */
static int get_dim(input *in) {
    uint8_t v = u8(in);
    if (v < 232) return (int)(v % 9) - 4;
    return hostile_dims[v % 8];
}

static ag_shape get_shape(input *in) {
    static const int hostile_ndim[] = {AG_MAX_DIMS, AG_MAX_DIMS + 1, -1, INT_MAX, INT_MIN, 8, 12, AG_MAX_DIMS};
    ag_shape s;
    memset(&s, 0, sizeof s);
    uint8_t v = u8(in);
    int nd = v % 6;
    if (v >= 248) nd = hostile_ndim[v - 248];
    for (int i = 0; i < nd && i < AG_MAX_DIMS; i++) s.dim[i] = get_size(in);
    s.ndim = nd;
    return s;
}

static double get_scalar(input *in) {
    static const double special[] = {
        NAN, INFINITY, -INFINITY, 1e300, -1e300, DBL_MIN, 4.9e-324, -0.0, 1e19, 9223372036854775808.0,
        1e-300, FLT_MAX, 3.5e38, 1e10, 0.1, 1 - 1e-16, 255.5, 256, -129, -1e19, 1e-8, 0.5, 1, 20,
    };
    uint8_t v = u8(in);
    if (v < 128) return ((int)(v % 17) - 8) * 0.5;
    if (v < 128 + (int)(sizeof special / sizeof special[0])) return special[v - 128];
    if (v < 240) return (double)(int16_t)u16(in) / 16;
    uint64_t bits = u64(in);
    double d;
    memcpy(&d, &bits, sizeof d);
    return d;
}

/* Mostly floating dtypes; sometimes an unknown one. */
static ag_dtype get_dtype(input *in) {
    static const ag_dtype common[8] = {AG_F32, AG_F64, AG_F32, AG_F64, AG_I64, AG_BOOL, AG_U8, AG_F32};
    static const int unknown[6] = {5, -1, 100, INT_MAX, 6, INT_MIN};
    uint8_t v = u8(in);
    if (v >= 250) return (ag_dtype)unknown[v - 250];
    return common[v % 8];
}

static ag_dtype get_float_dtype(input *in) { return bit(in) ? AG_F64 : AG_F32; }

/* ---- invariants ------------------------------------------------------------------------ */
static const char *current; /* the call being checked, for the report */

static void fail(const char *what) {
    fprintf(stderr, "fuzz_api: invariant broken after %s: %s\n  last status: %s, last error: \"%s\"\n",
            current ? current : "?", what, ag_status_name(ag_last_status()), ag_last_error());
    abort();
}

#define CHECK(cond, what) \
    do {                  \
        if (!(cond)) fail(what); \
    } while (0)

static void check_failure(void) {
    CHECK(ag_last_status() != AG_OK, "failed without a status");
    CHECK(ag_last_error()[0] != '\0', "failed without a message");
}

static void check_status(ag_status s) {
    if (s != AG_OK) {
        CHECK(ag_last_status() == s, "the returned status is not the recorded one");
        check_failure();
    }
}

/* Every element of a tensor lies in its storage; small tensors are read in full. */
static void check_tensor(const ag_tensor *t) {
    CHECK(t->refcount >= 1, "result with no reference");
    int nd = ag_ndim(t);
    CHECK(nd >= 0 && nd <= AG_MAX_DIMS, "ndim out of range");
    CHECK((unsigned)ag_dtype_of(t) <= AG_U8, "unknown dtype");
    ag_shape s = ag_shape_of(t);
    CHECK(s.ndim == nd, "ag_shape_of disagrees with ag_ndim");
    int64_t n = 1;
    for (int i = 0; i < nd; i++) {
        CHECK(s.dim[i] >= 0, "negative size");
        CHECK(s.dim[i] == ag_size(t, i), "ag_size disagrees with ag_shape_of");
        CHECK(!__builtin_mul_overflow(n, s.dim[i], &n), "numel overflows int64");
    }
    CHECK(n == ag_numel(t), "ag_numel is not the product of the sizes");
    /* No bound on n·es: a view may stand for more bytes than memory has (expand [1] to [2^62] of float64 is
     * valid, docs/design.md#tensors); what must fit is the storage it reads, checked below. */
    size_t es = ag_dtype_size(ag_dtype_of(t));
    if (n == 0) return;
    const ag_storage *st = t->storage;
    CHECK(st && st->data, "non-empty tensor without storage");
    int64_t lo = t->offset, hi = t->offset, span, end;
    for (int i = 0; i < nd; i++) {
        CHECK(!__builtin_mul_overflow(s.dim[i] - 1, t->stride[i], &span), "a view's extent overflows int64");
        CHECK(!__builtin_add_overflow(span < 0 ? lo : hi, span, span < 0 ? &lo : &hi), "a view's extent overflows int64");
    }
    CHECK(lo >= 0, "a view reaches before its storage");
    CHECK(!__builtin_mul_overflow(hi + 1, (int64_t)es, &end) && (uint64_t)end <= st->nbytes,
          "a view reaches past its storage");
    if (n > TOUCH_CAP) return;
    /* read every element through the strides */
    int64_t idx[AG_MAX_DIMS] = {0}, off = t->offset;
    volatile unsigned char sum = 0;
    for (int64_t k = 0; k < n; k++) {
        const unsigned char *p = (const unsigned char *)st->data + (size_t)off * es;
        for (size_t b = 0; b < es; b++) sum += p[b];
        for (int d = nd - 1; d >= 0; d--) {
            if (s.dim[d] <= 1) continue; /* never stepped: its stride (a slice's huge step) is not added */
            off += t->stride[d];
            if (++idx[d] < s.dim[d]) break;
            off -= t->stride[d] * s.dim[d];
            idx[d] = 0;
        }
    }
    (void)sum;
}

/* Checks a tensor result: sane if non-NULL, a recorded failure if NULL. */
static ag_tensor *checked(ag_tensor *r) {
    if (r) check_tensor(r);
    else check_failure();
    return r;
}

/* Checks an in-place call's result: t itself, or NULL with a failure. */
static void checked_inplace(ag_tensor *r, const ag_tensor *t) {
    if (r) {
        CHECK(r == t, "an in-place call returned another tensor");
        check_tensor(r);
    } else {
        check_failure();
    }
}

/* ---- the slots ---------------------------------------------------------------------------- */
/* Each slot holds one reference of its own to its tensor. */
static ag_tensor *slot[NSLOT];
static int nograd_depth;
static int autocast_depth; /* autocast regions this program opened */

static void put(int s, ag_tensor *t, bool own_ref) {
    if (t && !own_ref && ag_scope_depth() > 0) ag_retain(t); /* the scope keeps its own */
    ag_release(slot[s]);
    slot[s] = t;
}

/* Stores a checked result (owned as any op result) in the slot the next byte names. */
static void result(input *in, ag_tensor *r) {
    checked(r);
    int s = u8(in) % NSLOT;
    if (r) put(s, r, false);
}

/* A non-empty slot, starting from the one the next byte names; NULL if all are empty. */
static ag_tensor *pick(input *in) {
    int s = u8(in) % NSLOT;
    for (int k = 0; k < NSLOT; k++)
        if (slot[(s + k) % NSLOT]) return slot[(s + k) % NSLOT];
    return NULL;
}

/* A slot tensor or NULL (for optional arguments). */
static ag_tensor *pick_optional(input *in) {
    uint8_t v = u8(in);
    return v < 64 ? NULL : slot[v % NSLOT];
}

static bool small(const ag_tensor *t) { return !t || ag_numel(t) <= COMPUTE_CAP; }

static void release_all(void) {
    for (int s = 0; s < NSLOT; s++) put(s, NULL, true);
}

/* ---- gradients that hold their own tensor ------------------------------------------------- */
/* After ag_backward_opts with create_graph each reached tensor's .grad is a recorded graph,
 * which holds the tensor itself wherever its derivative does (d(x·x)/dx = 2x): a reference
 * cycle that the API documents and leaves to the caller to break with ag_zero_grad, as
 * PyTorch leaves x.grad = None to its user.  So the harness keeps a reference to every
 * tensor of such a call's graph that holds a .grad, found by walking the graph's nodes
 * (core/internal.h), and drops those gradients once the program has ended. */
#define NGRADDED 2048
static ag_tensor *gradded[NGRADDED];
static int ngradded;

/* Whether t is among a[0 .. n-1]. */
static bool holds(ag_tensor *const *a, int n, const ag_tensor *t) {
    for (int i = 0; i < n; i++)
        if (a[i] == t) return true;
    return false;
}

static void keep_gradded(ag_tensor *root) {
    static ag_tensor *stack[NGRADDED], *seen[NGRADDED];
    int nstack = 0, nseen = 0;
    if (root) stack[nstack++] = root, seen[nseen++] = root;
    while (nstack > 0) {
        ag_tensor *t = stack[--nstack];
        if (t->grad && !holds(gradded, ngradded, t)) {
            CHECK(ngradded < NGRADDED, "more gradients with a graph than the harness keeps");
            gradded[ngradded++] = ag_retain(t);
        }
        for (int i = 0; t->op && i < t->nin; i++) {
            ag_tensor *c = t->in[i];
            if (!c || holds(seen, nseen, c) || nseen == NGRADDED) continue;
            seen[nseen++] = c, stack[nstack++] = c;
        }
    }
}

static void drop_gradded(void) {
    for (; ngradded > 0; ngradded--) {
        ag_zero_grad(gradded[ngradded - 1]);
        ag_release(gradded[ngradded - 1]);
    }
}

/* ---- creation ------------------------------------------------------------------------------ */
/* The number of elements of shape, or -1 when it is invalid or overflows. */
static int64_t shape_numel(ag_shape s) {
    if (s.ndim < 0 || s.ndim > AG_MAX_DIMS) return -1;
    int64_t n = 1;
    for (int i = 0; i < s.ndim; i++)
        if (s.dim[i] < 0 || __builtin_mul_overflow(n, s.dim[i], &n)) return -1;
    return n;
}

static _Alignas(64) unsigned char user_buffer[4096];

/* Fills the user buffer from the program; bool bytes are made 0 or 1. */
static void fill_buffer(input *in, size_t bytes, ag_dtype dtype) {
    memset(user_buffer, 0, sizeof user_buffer);
    size_t take = bytes < in->n ? bytes : in->n;
    if (take > sizeof user_buffer) take = sizeof user_buffer;
    memcpy(user_buffer, in->p, take);
    in->p += take, in->n -= take;
    if (dtype == AG_BOOL)
        for (size_t i = 0; i < take; i++) user_buffer[i] &= 1;
}

/* Leaves an op function without a call: a call skipped by the decoder's own limits
 * still consumes its result slot byte, so that the rest of the program decodes the
 * same. */
#define SKIP            \
    do {                \
        (void)u8(in);   \
        return;         \
    } while (0)

static void op_create(input *in) {
    ag_tensor *r = NULL;
    uint8_t kind = u8(in) % 17;
    ag_shape s = {0, {0}};
    ag_dtype dt = AG_F32;
    if (kind <= 3 || kind == 8 || kind == 9) {
        s = get_shape(in);
        double v = kind == 3 ? get_scalar(in) : 0;
        dt = get_dtype(in);
        switch (kind) {
        case 0: current = "ag_empty", r = ag_empty(s, dt); break;
        case 1: current = "ag_zeros", r = ag_zeros(s, dt); break;
        case 2: current = "ag_ones", r = ag_ones(s, dt); break;
        case 3: current = "ag_full", r = ag_full(s, v, dt); break;
        case 8: current = "ag_rand", r = ag_rand(s, dt); break;
        case 9: current = "ag_randn", r = ag_randn(s, dt); break;
        }
        result(in, r);
        return;
    }
    switch (kind) {
    case 4: {
        double v = get_scalar(in);
        current = "ag_scalar", r = ag_scalar(v, get_dtype(in));
        break;
    }
    case 5: {
        double a = get_scalar(in), b = get_scalar(in), step = get_scalar(in);
        dt = get_dtype(in);
        current = "ag_arange", r = ag_arange(a, b, step, dt);
        break;
    }
    case 6: {
        double a = get_scalar(in), b = get_scalar(in);
        int64_t steps = get_size(in);
        dt = get_dtype(in);
        current = "ag_linspace", r = ag_linspace(a, b, steps, dt);
        break;
    }
    case 7: {
        int64_t n = get_size(in);
        dt = get_dtype(in);
        current = "ag_eye", r = ag_eye(n, dt);
        break;
    }
    case 10:
    case 11: { /* ag_from_data / ag_from_buffer: the buffer must hold what the shape says */
        bool borrow = u8(in) % 4 == 0; /* rarer: the buffer is shared by every borrower */
        s = get_shape(in);
        dt = get_dtype(in);
        int64_t n = shape_numel(s);
        bool known = (unsigned)dt <= AG_U8;
        if (n >= 0 && known && (uint64_t)n > sizeof user_buffer / ag_dtype_size(dt)) SKIP;
        if (n > 0 && known) fill_buffer(in, (size_t)n * ag_dtype_size(dt), dt);
        if (borrow) current = "ag_from_buffer", r = ag_from_buffer(user_buffer, s, dt);
        else current = "ag_from_data", r = ag_from_data(user_buffer, s, dt);
        break;
    }
    case 12:
    case 13:
    case 14: {
        ag_tensor *t = pick(in);
        double v = kind == 14 ? get_scalar(in) : 0;
        if (!t) SKIP;
        if (kind == 12) current = "ag_zeros_like", r = ag_zeros_like(t);
        else if (kind == 13) current = "ag_ones_like", r = ag_ones_like(t);
        else current = "ag_full_like", r = ag_full_like(t, v);
        break;
    }
    case 15: current = "ag_get_rng_state", r = ag_get_rng_state(); break;
    case 16: {
        ag_tensor *t = pick(in);
        if (!t) return;
        current = "ag_set_rng_state";
        check_status(ag_set_rng_state(t));
        return;
    }
    }
    result(in, r);
}

/* ---- views ---------------------------------------------------------------------------------- */
static void op_view(input *in) {
    ag_tensor *x = pick(in), *r = NULL;
    if (!x) return;
    uint8_t kind = u8(in) % 19;
    switch (kind) {
    case 0:
    case 1: {
        ag_shape s = get_shape(in);
        if (kind == 0) current = "ag_reshape", r = ag_reshape(x, s);
        else current = "ag_view", r = ag_view(x, s);
        break;
    }
    case 2: {
        int d0 = get_dim(in);
        current = "ag_transpose", r = ag_transpose(x, d0, get_dim(in));
        break;
    }
    case 3: current = "ag_t", r = ag_t(x); break;
    case 4: { /* as many entries as x has dims (the caller's contract), any values */
        int dims[AG_MAX_DIMS];
        bool identity = bit(in);
        for (int i = 0; i < AG_MAX_DIMS; i++) dims[i] = identity ? ag_ndim(x) - 1 - i : get_dim(in);
        current = "ag_permute", r = ag_permute(x, dims);
        break;
    }
    case 5: {
        int d = get_dim(in);
        int64_t start = get_index(in), length = get_index(in);
        current = "ag_narrow", r = ag_narrow(x, d, start, length);
        break;
    }
    case 6: {
        int d = get_dim(in);
        int64_t start = get_index(in), end = get_index(in);
        current = "ag_slice", r = ag_slice(x, d, start, end, get_index(in));
        break;
    }
    case 7: {
        int d = get_dim(in);
        current = "ag_select", r = ag_select(x, d, get_index(in));
        break;
    }
    case 8: {
        ag_shape s = get_shape(in);
        current = "ag_expand", r = ag_expand(x, s);
        break;
    }
    case 9: current = "ag_squeeze", r = ag_squeeze(x, get_dim(in)); break;
    case 10: current = "ag_squeeze_all", r = ag_squeeze_all(x); break;
    case 11: current = "ag_unsqueeze", r = ag_unsqueeze(x, get_dim(in)); break;
    case 12: {
        int a = get_dim(in);
        current = "ag_flatten", r = ag_flatten(x, a, get_dim(in));
        break;
    }
    case 13: { /* nn.Unflatten */
        int d = get_dim(in);
        ag_shape s = get_shape(in);
        current = "ag_nn_unflatten";
        ag_module *m = ag_nn_unflatten(d, s);
        if (!m) {
            check_failure();
            return;
        }
        current = "ag_module_forward(Unflatten)";
        r = ag_module_forward(m, x);
        ag_module_free(m);
        break;
    }
    case 14:
        if (!small(x)) SKIP;
        current = "ag_contiguous", r = ag_contiguous(x);
        break;
    case 15:
        if (!small(x)) SKIP;
        current = "ag_clone", r = ag_clone(x);
        break;
    case 16: current = "ag_detach", r = ag_detach(x); break;
    case 17: {
        ag_dtype dt = get_dtype(in);
        if (!small(x)) SKIP;
        current = "ag_to_dtype", r = ag_to_dtype(x, dt);
        break;
    }
    case 18: { /* nn.Flatten */
        int a = get_dim(in);
        current = "ag_nn_flatten";
        ag_module *m = ag_nn_flatten(a, get_dim(in));
        if (!m) {
            check_failure();
            return;
        }
        current = "ag_module_forward(Flatten)";
        r = ag_module_forward(m, x);
        ag_module_free(m);
        break;
    }
    }
    result(in, r);
}

/* split / chunk: the views written are released, two are kept. */
static void op_split(input *in) {
    ag_tensor *x = pick(in), *out[4] = {NULL};
    if (!x) return;
    int how = u8(in) % 3;
    int dim = get_dim(in), max_out = (int)(u8(in) % 6) - 1, n;
    if (how == 2) {
        current = "ag_unbind", n = ag_unbind(x, dim, out, max_out);
    } else if (how == 1) {
        int chunks = (int)get_index(in);
        current = "ag_chunk", n = ag_chunk(x, chunks, dim, out, max_out);
    } else {
        int64_t size = get_index(in);
        current = "ag_split", n = ag_split(x, size, dim, out, max_out);
    }
    if (n < 0) {
        CHECK(n == -1, "split/chunk/unbind returned a negative count other than -1");
        check_failure();
        return;
    }
    int written = n < max_out ? n : max_out < 0 ? 0 : max_out;
    for (int i = written; i < 4; i++) CHECK(!out[i], "split/chunk wrote past max_out or past its count");
    for (int i = 0; i < written; i++) {
        CHECK(out[i] != NULL, "split/chunk counted a view it did not write");
        check_tensor(out[i]);
    }
    int keep0 = u8(in) % 5, keep1 = u8(in) % 5;
    for (int i = 0; i < written; i++) {
        if (i == keep0 || i == keep1) put(u8(in) % NSLOT, out[i], false);
        else if (ag_scope_depth() == 0) ag_release(out[i]);
    }
}

static void op_join(input *in) {
    ag_tensor *xs[8];
    int n = (int)(u8(in) % 8) - 1;
    for (int i = 0; i < 8; i++) {
        xs[i] = pick(in);
        if (!xs[i] || !small(xs[i])) return;
    }
    int dim = get_dim(in);
    switch (u8(in) % 3) {
    case 0: current = "ag_cat", result(in, ag_cat(xs, n, dim)); break;
    case 1: current = "ag_stack", result(in, ag_stack(xs, n, dim)); break;
    default: {
        static const char *const indexing[] = {"ij", "xy", NULL, "yx"};
        ag_tensor *grids[8] = {NULL};
        current = "ag_meshgrid";
        int got = ag_meshgrid(xs, n, indexing[u8(in) % 4], grids);
        if (got < 0) {
            CHECK(got == -1, "meshgrid returned a negative count other than -1");
            check_failure();
            return;
        }
        CHECK(got == n, "meshgrid returned a count other than its inputs'");
        for (int i = 0; i < got; i++) CHECK(grids[i] != NULL, "meshgrid counted a grid it did not write");
        for (int i = 1; i < got; i++)
            if (ag_scope_depth() == 0) ag_release(grids[i]);
        result(in, got > 0 ? grids[0] : NULL);
    }
    }
}

/* einsum with an equation drawn from a small alphabet (letters, ',', '->', '.', junk), tensordot,
 * kron and the other contraction and distance composites; searching, counting and quantiles. */
static void op_compose(input *in) {
    ag_tensor *xs[3];
    for (int i = 0; i < 3; i++) {
        xs[i] = pick(in);
        if (!xs[i] || !small(xs[i])) return;
    }
    ag_tensor *r = NULL;
    switch (u8(in) % 17) {
    case 14: {
        int64_t lo = get_index(in), hi = get_index(in);
        ag_shape shape = get_shape(in);
        if (ag__numel_checked(shape.ndim < 0 || shape.ndim > AG_MAX_DIMS ? 0 : shape.ndim, shape.dim) > COMPUTE_CAP) return;
        switch (u8(in) % 4) {
        case 0: current = "ag_randint", r = ag_randint(lo, hi, shape); break;
        case 1:
            if (lo > COMPUTE_CAP) return; /* a valid but long call */
            current = "ag_randperm", r = ag_randperm(lo);
            break;
        case 2: current = "ag_bernoulli", r = ag_bernoulli(xs[0]); break;
        default:
            if (hi > COMPUTE_CAP) return;
            current = "ag_multinomial", r = ag_multinomial(xs[0], hi, bit(in));
            break;
        }
        break;
    }
    case 15:
        if (bit(in)) current = "ag_normal_tensor", r = ag_normal_tensor(xs[0], xs[1]);
        else current = "ag_exponential_", r = ag_exponential_(xs[0], get_scalar(in)), r = r ? ag_clone(r) : NULL;
        break;
    case 9: current = "ag_searchsorted", r = ag_searchsorted(xs[0], xs[1], bit(in)); break;
    case 10: current = "ag_bincount", r = ag_bincount(xs[0], bit(in) ? xs[1] : NULL, get_index(in)); break;
    case 11: {
        int64_t bins = get_index(in);
        double lo = get_scalar(in), hi = get_scalar(in);
        current = "ag_histc", r = ag_histc(xs[0], bins, lo, hi);
        break;
    }
    case 12: {
        ag_tensor *inverse = NULL, *counts = NULL;
        bool consecutive = bit(in);
        current = consecutive ? "ag_unique_consecutive" : "ag_unique";
        if (bit(in)) current = "ag_unique_dim", r = ag_unique_dim(xs[0], get_dim(in), &inverse, &counts);
        else r = consecutive ? ag_unique_consecutive(xs[0], &inverse, &counts) : ag_unique(xs[0], &inverse, &counts);
        CHECK(r ? inverse && counts : !inverse && !counts, "unique gave a partial result");
        if (ag_scope_depth() == 0) ag_release(inverse), ag_release(counts);
        break;
    }
    case 13: {
        int dim = get_dim(in);
        double q = get_scalar(in);
        ag_quantile_interpolation how = (ag_quantile_interpolation)(u8(in) % 6);
        bool keep = bit(in);
        if (bit(in)) current = "ag_quantile", r = ag_quantile(xs[0], q, bit(in) ? &dim : NULL, keep, how);
        else current = "ag_nanmedian_dim", r = ag_nanmedian_dim(xs[0], dim, keep, NULL);
        break;
    }
    case 0: {
        static const char alphabet[] = "ijkiabA.,->. 1";
        char eq[24];
        int len = u8(in) % 23;
        for (int i = 0; i < len; i++) eq[i] = alphabet[u8(in) % (sizeof alphabet - 1)];
        eq[len] = '\0';
        int n = (int)(u8(in) % 4);
        current = "ag_einsum", r = ag_einsum(bit(in) ? eq : "ij,jk->ik", xs, n);
        break;
    }
    case 1: {
        int n = (int)get_index(in), da[4] = {get_dim(in), get_dim(in), get_dim(in), get_dim(in)};
        int db[4] = {get_dim(in), get_dim(in), get_dim(in), get_dim(in)};
        bool lists = bit(in) && n >= 0 && n <= 4;
        current = "ag_tensordot", r = ag_tensordot(xs[0], xs[1], n, lists ? da : NULL, lists ? db : NULL);
        break;
    }
    case 2: current = "ag_kron", r = ag_kron(xs[0], xs[1]); break;
    case 3: current = "ag_rot90", r = ag_rot90(xs[0], get_index(in), (const int[]){get_dim(in), get_dim(in)}); break;
    case 4: current = "ag_narrow_copy", r = ag_narrow_copy(xs[0], get_dim(in), get_index(in), get_index(in)); break;
    case 5: current = "ag_cdist", r = ag_cdist(xs[0], xs[1], get_scalar(in)); break;
    case 6: {
        double p = get_scalar(in), eps = get_scalar(in);
        current = "ag_pairwise_distance", r = ag_pairwise_distance(xs[0], xs[1], p, eps, bit(in));
        break;
    }
    case 7: current = "ag_cosine_similarity", r = ag_cosine_similarity(xs[0], xs[1], get_dim(in), get_scalar(in)); break;
    default: {
        double p = get_scalar(in);
        current = "ag_lp_normalize", r = ag_lp_normalize(xs[0], p, get_dim(in), get_scalar(in));
        break;
    }
    }
    result(in, r);
}

/* ---- computing ops --------------------------------------------------------------------------- */
typedef ag_tensor *(*unary_fn)(ag_tensor *);
typedef ag_tensor *(*binary_fn)(ag_tensor *, ag_tensor *);
typedef ag_tensor *(*compare_fn)(const ag_tensor *, const ag_tensor *);

/* The linalg calls of two tensors with fixed extra arguments, as binary ops. */
static ag_tensor *lstsq_default(ag_tensor *a, ag_tensor *b) { return ag_linalg_lstsq(a, b, -1); }
static ag_tensor *cholesky_solve_lower(ag_tensor *b, ag_tensor *l) { return ag_cholesky_solve(b, l, false); }
static ag_tensor *solve_triangular_upper(ag_tensor *a, ag_tensor *b) { return ag_linalg_solve_triangular(a, b, true, true, false); }
static ag_tensor *solve_triangular_right(ag_tensor *a, ag_tensor *b) { return ag_linalg_solve_triangular(a, b, false, false, true); }
static ag_tensor *cholesky_solve_upper(ag_tensor *b, ag_tensor *u) { return ag_cholesky_solve(b, u, true); }

#define F(name) {#name, name}
static const struct {
    const char *name;
    unary_fn f;
} unary_ops[] = {
    F(ag_neg), F(ag_exp), F(ag_log), F(ag_log1p), F(ag_expm1), F(ag_sqrt), F(ag_rsqrt), F(ag_square),
    F(ag_reciprocal), F(ag_abs), F(ag_sign), F(ag_sin), F(ag_cos), F(ag_tan), F(ag_tanh), F(ag_sigmoid),
    F(ag_atan), F(ag_relu), F(ag_erf), F(ag_floor), F(ag_round), F(ag_trunc), F(ag_selu), F(ag_gelu),
    F(ag_gelu_tanh), F(ag_silu), F(ag_mish), F(ag_relu6), F(ag_hardsigmoid), F(ag_hardswish),
    F(ag_softsign), F(ag_binary_step), F(ag_sum), F(ag_mean), F(ag_prod), F(ag_max), F(ag_min),
    F(ag_contiguous), F(ag_clone), F(ag_squeeze_all), F(ag_asin), F(ag_acos), F(ag_sinh), F(ag_cosh),
    F(ag_asinh), F(ag_acosh), F(ag_atanh), F(ag_log2), F(ag_log10), F(ag_exp2), F(ag_erfc), F(ag_sinc),
    F(ag_ceil), F(ag_frac), F(ag_lgamma), F(ag_digamma), F(ag_erfinv), F(ag_linalg_inv), F(ag_linalg_det),
    F(ag_linalg_svdvals), F(ag_logsigmoid), F(ag_tanhshrink), F(ag_gaussian), F(ag_gelu_sigmoid),
};
static const struct {
    const char *name;
    binary_fn f;
} binary_ops[] = {
    F(ag_add), F(ag_sub), F(ag_mul), F(ag_div), F(ag_pow), F(ag_maximum), F(ag_minimum), F(ag_matmul), F(ag_prelu),
    F(ag_atan2), F(ag_hypot), F(ag_fmod), F(ag_remainder), F(ag_copysign), F(ag_logaddexp), F(ag_logaddexp2),
    F(ag_xlogy), F(ag_heaviside),
    F(ag_linalg_solve), F(lstsq_default), F(cholesky_solve_lower), F(cholesky_solve_upper),
    F(solve_triangular_upper), F(solve_triangular_right),
    F(ag_bmm), F(ag_outer), F(ag_make_dual),
};
static const struct {
    const char *name;
    compare_fn f;
} compare_ops[] = {F(ag_eq), F(ag_ne), F(ag_lt), F(ag_le), F(ag_gt), F(ag_ge)};
#define COUNT(a) (int)(sizeof(a) / sizeof((a)[0]))

static void op_unary(input *in) {
    ag_tensor *x = pick(in);
    if (!x || !small(x)) return;
    int k = u8(in) % COUNT(unary_ops);
    current = unary_ops[k].name;
    result(in, unary_ops[k].f(x));
}

static void op_unary_param(input *in) {
    ag_tensor *x = pick(in), *r = NULL;
    if (!x || !small(x)) return;
    uint8_t k = u8(in) % 36;
    double a = get_scalar(in), b = get_scalar(in);
    ag_tensor *r2 = NULL, *r3 = NULL;
    switch (k) {
    case 0: current = "ag_clamp", r = ag_clamp(x, a, b); break;
    case 1: current = "ag_add_scalar", r = ag_add_scalar(x, a); break;
    case 2: current = "ag_sub_scalar", r = ag_sub_scalar(x, a); break;
    case 3: current = "ag_rsub_scalar", r = ag_rsub_scalar(a, x); break;
    case 4: current = "ag_mul_scalar", r = ag_mul_scalar(x, a); break;
    case 5: current = "ag_div_scalar", r = ag_div_scalar(x, a); break;
    case 6: current = "ag_rdiv_scalar", r = ag_rdiv_scalar(a, x); break;
    case 7: current = "ag_pow_scalar", r = ag_pow_scalar(x, a); break;
    case 8: current = "ag_rpow_scalar", r = ag_rpow_scalar(a, x); break;
    case 9: current = "ag_leaky_relu", r = ag_leaky_relu(x, a); break;
    case 10: current = "ag_elu", r = ag_elu(x, a); break;
    case 11: current = "ag_celu", r = ag_celu(x, a); break;
    case 12: current = "ag_softplus", r = ag_softplus(x, a, b); break;
    case 13: current = "ag_hardtanh", r = ag_hardtanh(x, a, b); break;
    case 14:
        if (bit(in)) current = "ag_dropout", r = ag_dropout(x, a, b != 0);
        else current = "ag_dropout2d", r = ag_dropout2d(x, a, b != 0);
        break;
    case 15: current = "ag_gaussian_noise", r = ag_gaussian_noise(x, a, b != 0); break;
    case 16: current = "ag_masked_fill", r = ag_masked_fill(x, pick(in), a); break;
    case 17: current = "ag_logit", r = ag_logit(x, a); break;
    case 18: current = "ag_nan_to_num", r = ag_nan_to_num(x, a, b, get_scalar(in)); break;
    case 19: current = "ag_isnan", r = ag_isnan(x); break;
    case 20: current = "ag_isinf", r = ag_isinf(x); break;
    case 21: current = "ag_isfinite", r = ag_isfinite(x); break;
    case 22:
    case 23: { /* three operands: the third's elements times the others' stay within a broadcast of two */
        ag_tensor *b2 = pick(in), *c = pick(in);
        if (!small(b2) || (c && ag_numel(c) > 64)) return;
        if (k == 22 && bit(in)) current = "ag_lerp", r = ag_lerp(x, b2, c);
        else if (k == 22) /* q, k, v, a mask from the pool, dropout a, causal or not */
            current = "ag_scaled_dot_product_attention", r = ag_scaled_dot_product_attention(x, b2, c, pick(in), a, bit(in));
        else current = "ag_clamp_tensor", r = ag_clamp_tensor(x, b2, c);
        break;
    }
    /* linear algebra with scalar arguments (agrad/linalg.h); the two- and three-result
     * calls keep every result */
    case 24: current = "ag_linalg_cholesky", r = ag_linalg_cholesky(x, a != 0); break;
    case 25: /* a power of -8 .. 8 (or the one without a negative): a huge one is a legitimate cost */
        current = "ag_linalg_matrix_power", r = ag_linalg_matrix_power(x, bit(in) ? INT64_MIN : (int64_t)(u8(in) % 17) - 8);
        break;
    case 26: current = "ag_linalg_pinv", r = ag_linalg_pinv(x, a, b); break;
    case 27: current = "ag_linalg_matrix_rank", r = ag_linalg_matrix_rank(x, a, b, bit(in)); break;
    case 28: current = "ag_linalg_eigvalsh", r = ag_linalg_eigvalsh(x, bit(in) ? "U" : "L"); break;
    case 29:
    case 30: {
        ag_tensor *o = pick(in);
        if (!small(o)) return;
        current = k == 29 ? "ag_linalg_cross" : "ag_linalg_vecdot";
        r = k == 29 ? ag_linalg_cross(x, o, get_dim(in)) : ag_linalg_vecdot(x, o, get_dim(in));
        break;
    }
    case 31: current = "ag_linalg_slogdet", check_status(ag_linalg_slogdet(x, &r, &r2)); break;
    case 32: current = "ag_linalg_eigh", check_status(ag_linalg_eigh(x, bit(in) ? "U" : "L", &r, &r2)); break;
    case 33: current = "ag_linalg_qr", check_status(ag_linalg_qr(x, bit(in) ? "complete" : bit(in) ? "r" : NULL, &r, &r2)); break;
    case 34: current = "ag_linalg_svd", check_status(ag_linalg_svd(x, bit(in), &r, &r2, &r3)); break;
    case 35: current = "ag_polygamma", r = ag_polygamma((int64_t)(u8(in) % 8) - 1, x); break;
    }
    if (k >= 31 && k <= 34) { /* a failing call has set no result */
        if (r) checked(r), put(u8(in) % NSLOT, r, false);
        if (r2) checked(r2), put(u8(in) % NSLOT, r2, false);
        if (r3) checked(r3), put(u8(in) % NSLOT, r3, false);
        return;
    }
    result(in, r);
}

static void op_binary(input *in) {
    ag_tensor *a = pick(in), *b = pick(in);
    if (!a || !b || !small(a) || !small(b)) return;
    uint8_t k = u8(in) % (COUNT(binary_ops) + COUNT(compare_ops) + 2);
    if (k < COUNT(binary_ops)) {
        current = binary_ops[k].name;
        result(in, binary_ops[k].f(a, b));
    } else if ((k -= COUNT(binary_ops)) < COUNT(compare_ops)) {
        current = compare_ops[k].name;
        result(in, compare_ops[k].f(a, b));
    } else if (k == COUNT(compare_ops)) {
        ag_tensor *cond = pick(in);
        if (!small(cond)) return;
        current = "ag_where", result(in, ag_where(cond, a, b));
    } else {
        ag_tensor *bias = pick_optional(in);
        if (!small(bias)) return;
        if (bit(in)) current = "ag_linear_relu", result(in, ag_linear_relu(a, b, bias));
        else current = "ag_linear", result(in, ag_linear(a, b, bias));
    }
}

static void op_reduce(input *in) {
    ag_tensor *x = pick(in), *r = NULL;
    if (!x || !small(x)) return;
    int dims[AG_MAX_DIMS + 4];
    int nd = (int)(u8(in) % (AG_MAX_DIMS + 4)) - 1; /* -1 .. AG_MAX_DIMS + 2: never past dims */
    for (int i = 0; i < AG_MAX_DIMS + 4; i++) dims[i] = i < 4 ? get_dim(in) : i - 4;
    int dim = get_dim(in), corr = (int)get_index(in);
    bool keep = bit(in);
    uint8_t which = u8(in) % 18;
    double ord = which >= 16 ? get_scalar(in) : 0;
    switch (which) {
    case 16: current = "ag_linalg_vector_norm", r = ag_linalg_vector_norm(x, ord, nd, dims, keep); break;
    case 17: {
        static const char *const ords[] = {"fro", "nuc", "1", "-1", "2", "-2", "inf", "-inf", "3", ""};
        current = "ag_linalg_matrix_norm", r = ag_linalg_matrix_norm(x, ords[u8(in) % 10], keep);
        break;
    }
    case 0: current = "ag_sum_dims", r = ag_sum_dims(x, nd, dims, keep); break;
    case 1: current = "ag_mean_dims", r = ag_mean_dims(x, nd, dims, keep); break;
    case 2: current = "ag_logsumexp_dims", r = ag_logsumexp_dims(x, nd, dims, keep); break;
    case 3: current = "ag_var_dims", r = ag_var_dims(x, nd, dims, corr, keep); break;
    case 4: current = "ag_std_dims", r = ag_std_dims(x, nd, dims, corr, keep); break;
    case 5: current = "ag_var", r = ag_var(x, corr); break;
    case 6: current = "ag_std", r = ag_std(x, corr); break;
    case 7: current = "ag_sum_dim", r = ag_sum_dim(x, dim, keep); break;
    case 8: current = "ag_mean_dim", r = ag_mean_dim(x, dim, keep); break;
    case 9: current = "ag_prod_dim", r = ag_prod_dim(x, dim, keep); break;
    case 10: current = "ag_max_dim", r = ag_max_dim(x, dim, keep); break;
    case 11: current = "ag_min_dim", r = ag_min_dim(x, dim, keep); break;
    case 12: current = "ag_argmax", r = ag_argmax(x, dim, keep); break;
    case 13: current = "ag_argmin", r = ag_argmin(x, dim, keep); break;
    case 14: current = "ag_softmax", r = ag_softmax(x, dim); break;
    case 15: current = "ag_log_softmax", r = ag_log_softmax(x, dim); break;
    }
    result(in, r);
}

/* Scans, sorts and the rearranging ops (docs/tensor-ops.md) with fuzzed dims, counts and shifts. */
static void op_tensor_ops(input *in) {
    ag_tensor *x = pick(in), *r = NULL, *idx = NULL;
    if (!x || !small(x)) return;
    int dims[AG_MAX_DIMS + 2];
    int64_t shifts[AG_MAX_DIMS + 2];
    int nd = (int)(u8(in) % (AG_MAX_DIMS + 4)) - 1; /* -1 .. AG_MAX_DIMS + 2: never past the arrays */
    for (int i = 0; i < AG_MAX_DIMS + 2; i++) dims[i] = i < 4 ? get_dim(in) : i - 4, shifts[i] = get_index(in);
    int dim = get_dim(in);
    bool flag = bit(in), want_idx = bit(in), gives_idx = false;
    switch (u8(in) % 26) {
    case 0: current = "ag_cumsum", r = ag_cumsum(x, dim); break;
    case 1: current = "ag_cumprod", r = ag_cumprod(x, dim); break;
    case 2: current = "ag_flip", r = ag_flip(x, nd, bit(in) ? dims : NULL); break;
    case 3: current = "ag_roll", r = ag_roll(x, nd, bit(in) ? shifts : NULL, bit(in) ? dims : NULL); break;
    case 4: current = "ag_tril", r = ag_tril(x, get_index(in)); break;
    case 5: current = "ag_triu", r = ag_triu(x, get_index(in)); break;
    case 6:
    case 7: {
        ag_shape reps = get_shape(in);
        if (u8(in) & 1) current = "ag_repeat", r = ag_repeat(x, reps);
        else current = "ag_tile", r = ag_tile(x, reps);
        break;
    }
    case 8: current = "ag_sort", r = ag_sort(x, dim, flag, want_idx ? &idx : NULL), gives_idx = want_idx; break;
    case 9: current = "ag_argsort", r = ag_argsort(x, dim, flag); break;
    case 11: current = "ag_logcumsumexp", r = ag_logcumsumexp(x, dim); break;
    case 12: current = "ag_cummax", r = ag_cummax(x, dim, want_idx ? &idx : NULL), gives_idx = want_idx; break;
    case 13: current = "ag_cummin", r = ag_cummin(x, dim, want_idx ? &idx : NULL), gives_idx = want_idx; break;
    case 14:
        current = "ag_kthvalue", r = ag_kthvalue(x, get_index(in), dim, flag, want_idx ? &idx : NULL);
        gives_idx = want_idx;
        break;
    case 15:
        if (bit(in)) current = "ag_mode", r = ag_mode(x, dim, flag, want_idx ? &idx : NULL);
        else current = "ag_median_dim", r = ag_median_dim(x, dim, flag, want_idx ? &idx : NULL);
        gives_idx = want_idx;
        break;
    case 16: current = flag ? "ag_nanmedian" : "ag_median", r = flag ? ag_nanmedian(x) : ag_median(x); break;
    case 17: current = "ag_amax", r = ag_amax(x, nd, bit(in) ? dims : NULL, flag); break;
    case 18: current = "ag_amin", r = ag_amin(x, nd, bit(in) ? dims : NULL, flag); break;
    case 19: current = "ag_any", r = ag_any(x); break;
    case 20: current = "ag_all_dim", r = ag_all_dim(x, dim, flag); break;
    case 21: current = "ag_count_nonzero", r = ag_count_nonzero(x, nd, bit(in) ? dims : NULL); break;
    case 22:
    case 23: {
        ag_tensor *a = pick(in), *b = pick(in);
        double beta = get_scalar(in), alpha = get_scalar(in);
        if (!small(a) || !small(b)) return;
        if (u8(in) & 1) current = "ag_addmm", r = ag_addmm(x, a, b, beta, alpha);
        else current = "ag_baddbmm", r = ag_baddbmm(x, a, b, beta, alpha);
        break;
    }
    case 24: current = "ag_repeat_interleave", r = ag_repeat_interleave(x, get_index(in), dim); break;
    case 25: {
        ag_tensor *reps = pick(in);
        if (!small(reps)) return;
        current = "ag_repeat_interleave_tensor", r = ag_repeat_interleave_tensor(x, reps, dim);
        break;
    }
    case 10:
        current = "ag_topk", r = ag_topk(x, get_index(in), dim, flag, bit(in), want_idx ? &idx : NULL);
        gives_idx = want_idx;
        break;
    }
    if (!r) CHECK(idx == NULL, "a failed call gave indices");
    if (r && gives_idx) {
        CHECK(idx != NULL, "sort/topk gave values without the indices asked for");
        result(in, idx);
    }
    result(in, r);
}

static void op_index(input *in) {
    ag_tensor *x = pick(in), *idx = pick(in), *r = NULL;
    if (!x || !idx || !small(x) || !small(idx)) return;
    int dim = get_dim(in);
    switch (u8(in) % 17) {
    case 0: current = "ag_index_select", r = ag_index_select(x, dim, idx); break;
    case 1:
        if (bit(in)) current = "ag_take_along_dim", r = ag_take_along_dim(x, idx, bit(in) ? &dim : NULL);
        else current = "ag_gather", r = ag_gather(x, dim, idx);
        break;
    case 2: {
        ag_tensor *src = pick(in);
        if (!small(src)) return;
        current = "ag_scatter_add", r = ag_scatter_add(x, dim, idx, src);
        break;
    }
    case 3: {
        int64_t classes = get_index(in);
        current = "ag_one_hot", r = ag_one_hot(idx, classes);
        break;
    }
    case 4: {
        int64_t pad = bit(in) ? AG_NO_PADDING_IDX : get_index(in);
        current = "ag_embedding", r = ag_embedding(x, idx, pad);
        break;
    }
    case 5:
    case 6:
    case 7:
    case 8:
    case 9:
    case 10:
    case 11: {
        ag_tensor *src = pick(in);
        if (!small(src)) return;
        int which = u8(in);
        switch (which % 7) {
        case 0: current = "ag_index_add", r = ag_index_add(x, dim, idx, src, get_scalar(in)); break;
        case 1: current = "ag_index_copy", r = ag_index_copy(x, dim, idx, src); break;
        case 2: current = "ag_scatter", r = ag_scatter(x, dim, idx, src); break;
        case 3:
            current = "ag_scatter_reduce";
            r = ag_scatter_reduce(x, dim, idx, src, (ag_scatter_reduction)(u8(in) % 6), bit(in));
            break;
        case 4: current = "ag_put", r = ag_put(x, idx, src, bit(in)); break;
        case 5: current = "ag_masked_scatter", r = ag_masked_scatter(x, idx, src); break;
        default: current = "ag_masked_select", r = ag_masked_select(x, idx); break;
        }
        break;
    }
    case 12: current = "ag_index_fill", r = ag_index_fill(x, dim, idx, get_scalar(in)); break;
    case 13: current = "ag_scatter_value", r = ag_scatter_value(x, dim, idx, get_scalar(in)); break;
    case 14: current = "ag_take", r = ag_take(x, idx); break;
    case 15: current = "ag_nonzero", r = ag_nonzero(x); break;
    case 16: current = "ag_argwhere", r = ag_argwhere(x); break;
    }
    result(in, r);
}

static void op_norm(input *in) {
    ag_tensor *x = pick(in), *r = NULL;
    if (!x || !small(x)) return;
    ag_tensor *a = pick_optional(in), *b = pick_optional(in), *c = pick_optional(in), *d = pick_optional(in);
    if (!small(a) || !small(b) || !small(c) || !small(d)) return;
    double momentum = get_scalar(in), eps = get_scalar(in);
    if (bit(in)) {
        bool training = bit(in);
        if (bit(in)) current = "ag_batch_norm_relu", r = ag_batch_norm_relu(x, a, b, c, d, training, momentum, eps);
        else if (bit(in))
            current = "ag_batch_norm_relu_dropout",
            r = ag_batch_norm_relu_dropout(x, a, b, c, d, training, momentum, eps, get_scalar(in));
        else current = "ag_batch_norm", r = ag_batch_norm(x, a, b, c, d, training, momentum, eps);
    } else if (bit(in)) {
        current = "ag_group_norm", r = ag_group_norm(x, get_index(in), a, b, eps);
    } else {
        ag_shape ns = a && bit(in) ? ag_shape_of(a) : get_shape(in);
        current = "ag_layer_norm", r = ag_layer_norm(x, ns, a, b, eps);
    }
    result(in, r);
}

/* Convolution and pooling with hostile options (negative, 2^62, wrapping products, unknown
 * padding modes).  Cost bound: a convolution reads every (input, weight) pair at most once
 * per tap, so it runs only when numel(x)·numel(w) ≤ 2^22; a pooling window is read once
 * per output, so kernel area · numel(x) ≤ 2^24 (area saturated, hostile kernels pass the
 * bound only when they are rejected or x is empty). */
static ag_conv_opts get_conv_opts(input *in) {
    ag_conv_opts o;
    memset(&o, 0, sizeof o);
    for (int i = 0; i < 2; i++) o.stride[i] = get_index(in), o.padding[i] = get_index(in), o.dilation[i] = get_index(in);
    o.groups = get_index(in);
    o.padding_mode = (ag_conv_padding)(u8(in) % 4); /* 3: not a mode */
    return o;
}

static ag_pool_opts get_pool_opts(input *in) {
    ag_pool_opts o;
    memset(&o, 0, sizeof o);
    for (int i = 0; i < 2; i++)
        o.kernel[i] = get_index(in), o.stride[i] = get_index(in), o.padding[i] = get_index(in), o.dilation[i] = get_index(in);
    o.ceil_mode = bit(in), o.exclude_pad = bit(in);
    return o;
}

/* |a|·|b| saturated at 2^62. */
static int64_t sat_mul(int64_t a, int64_t b) {
    double p = fabs((double)a) * fabs((double)b);
    return p >= 0x1p62 ? (int64_t)1 << 62 : (int64_t)p;
}

/* a + b for a, b >= 0, saturated at 2^62. */
static int64_t sat_add(int64_t a, int64_t b) {
    const int64_t cap = (int64_t)1 << 62;
    return a >= cap - b ? cap : a + b;
}

static ag_conv_transpose_opts get_conv_transpose_opts(input *in) {
    ag_conv_transpose_opts o;
    memset(&o, 0, sizeof o);
    for (int i = 0; i < 2; i++)
        o.stride[i] = get_index(in), o.padding[i] = get_index(in), o.output_padding[i] = get_index(in),
        o.dilation[i] = get_index(in);
    o.groups = get_index(in);
    return o;
}

/* A bound on a transposed convolution's work: numel(x)·numel(w) times the output's spatial growth
 * Π (s + d + |output_padding|) over the last two dims (saturated; hostile options that pass it are refused). */
static int64_t transposed_cost(const ag_tensor *x, const ag_tensor *w, const ag_conv_transpose_opts *o) {
    int64_t c = sat_mul(ag_numel(x), ag_numel(w));
    for (int i = 0; o && i < 2; i++)
        c = sat_mul(c, sat_add(sat_add(sat_mul(1, o->stride[i]), sat_mul(1, o->dilation[i])),
                               sat_add(sat_mul(1, o->output_padding[i]), 1)));
    return c;
}

static void op_conv(input *in) {
    ag_tensor *x = pick(in), *r = NULL;
    if (!x || !small(x)) return;
    uint8_t k = u8(in) % 13;
    if (k >= 10) { /* padding and resampling: output elements bounded by 2^22 */
        if (k == 10) {
            int64_t pad[6], cost = ag_numel(x) ? 1 : 0;
            int npad = (int)(u8(in) % 8) - 1; /* -1: odd and negative counts too */
            for (int i = 0; i < 6; i++) pad[i] = get_index(in);
            ag_pad_mode mode = (ag_pad_mode)(u8(in) % 5); /* 4: not a mode */
            for (int d = 0; d < ag_ndim(x); d++) {
                int64_t n = ag_shape_of(x).dim[d];
                const int k2 = 2 * (ag_ndim(x) - 1 - d);
                if (k2 + 1 < npad && k2 + 1 < 6) n = sat_add(sat_add(n, pad[k2] > 0 ? pad[k2] : 0), pad[k2 + 1] > 0 ? pad[k2 + 1] : 0);
                cost = sat_mul(cost, n > 0 ? n : 1);
            }
            if (cost > ((int64_t)1 << 22)) return;
            if (bit(in)) { /* the adjoint: x as dy, the input shape x's with the pads taken off */
                ag_shape xs = ag_shape_of(x);
                int64_t size = 1;
                for (int k2 = 0; k2 + 1 < npad && k2 + 1 < 6 && k2 / 2 < xs.ndim; k2 += 2) {
                    if (pad[k2] < -(1 << 20) || pad[k2] > (1 << 20) || pad[k2 + 1] < -(1 << 20) || pad[k2 + 1] > (1 << 20)) return;
                    xs.dim[xs.ndim - 1 - k2 / 2] -= pad[k2] + pad[k2 + 1];
                }
                for (int d = 0; d < xs.ndim; d++) size = sat_mul(size, xs.dim[d] > 0 ? xs.dim[d] : 1);
                if (size > ((int64_t)1 << 22)) return;
                current = "ag_pad_backward", r = ag_pad_backward(x, xs, npad, bit(in) ? pad : NULL, mode);
            } else {
                current = "ag_pad", r = ag_pad(x, npad, bit(in) ? pad : NULL, mode, get_scalar(in));
            }
        } else if (k == 11) {
            ag_interp_opts o = {.size = {get_size(in), get_size(in)}, .mode = (ag_interp_mode)(u8(in) % 3),
                                .align_corners = bit(in)};
            if (bit(in)) o.scale_factor[0] = get_scalar(in), o.scale_factor[1] = get_scalar(in);
            const int64_t plane = ag_ndim(x) >= 2 ? ag_shape_of(x).dim[ag_ndim(x) - 1] * ag_shape_of(x).dim[ag_ndim(x) - 2] : 1;
            const double rows = (o.size[0] ? (double)o.size[0] : fabs(o.scale_factor[0]) * 64) *
                                (o.size[1] ? (double)o.size[1] : fabs(o.scale_factor[1]) * 64);
            if (!(rows * (double)(ag_numel(x) / (plane ? plane : 1) + 1) <= 0x1p22)) return;
            if (bit(in)) { /* the adjoint: x as dy, to an input shape of x's batch and a drawn plane */
                const ag_shape xs = ag_shape_of(x);
                const int64_t h = get_size(in), w = get_size(in);
                if (xs.ndim != 4 || sat_mul(sat_mul(h, w), sat_mul(xs.dim[0], xs.dim[1])) > ((int64_t)1 << 22)) return;
                current = "ag_interpolate_backward",
                r = ag_interpolate_backward(x, AG_SHAPE(xs.dim[0], xs.dim[1], h, w), bit(in) ? &o : NULL);
            } else {
                current = "ag_interpolate", r = ag_interpolate(x, bit(in) ? &o : NULL);
            }
        } else {
            ag_tensor *idx = NULL, **pidx = bit(in) ? &idx : NULL;
            int64_t oh = get_size(in), ow = get_size(in);
            if (sat_mul(sat_mul(oh, ow), ag_numel(x)) > ((int64_t)1 << 24)) return;
            current = "ag_adaptive_max_pool2d", r = ag_adaptive_max_pool2d(x, oh, ow, pidx);
            if (idx) {
                CHECK(r != NULL && ag_dtype_of(idx) == AG_I64 && ag_numel(idx) == ag_numel(r), "bad adaptive indices");
                checked(idx);
                ag_tensor *ix = bit(in) ? idx : pick(in); /* its own indices, or any tensor */
                const int64_t uh = get_size(in), uw = get_size(in);
                ag_pool_opts po = {.kernel = {get_index(in), get_index(in)}, .stride = {get_index(in), get_index(in)},
                                   .padding = {get_index(in), get_index(in)}};
                /* output elements: uh·uw per plane, or about (H + 1)·(|stride| + |kernel|) per dim by default */
                const int64_t nd = ag_ndim(r), H = nd >= 2 ? ag_shape_of(r).dim[nd - 2] : 1, W = nd >= 1 ? ag_shape_of(r).dim[nd - 1] : 1;
                const int64_t dh = uh ? uh : sat_mul(sat_add(H, 1), sat_add(sat_add(sat_mul(1, po.stride[0]), sat_mul(1, po.kernel[0])), 1));
                const int64_t dw = uw ? uw : sat_mul(sat_add(W, 1), sat_add(sat_add(sat_mul(1, po.stride[1]), sat_mul(1, po.kernel[1])), 1));
                int64_t planes = 1;
                for (int64_t d = 0; d + 2 < nd; d++) planes = sat_mul(planes, ag_shape_of(r).dim[d]);
                if (ix && small(ix) && sat_mul(sat_mul(dh, dw), planes + 1) <= ((int64_t)1 << 22)) {
                    current = "ag_max_unpool2d";
                    result(in, ag_max_unpool2d(r, ix, bit(in) ? &po : NULL, uh, uw));
                }
                put(u8(in) % NSLOT, idx, false);
            } else if (pidx) {
                CHECK(r == NULL, "adaptive max pooling gave no indices");
            }
        }
        result(in, r);
        return;
    }
    if (k >= 8) {
        ag_tensor *w = pick(in), *b = pick_optional(in);
        ag_conv_transpose_opts o = get_conv_transpose_opts(in);
        const ag_conv_transpose_opts *po = bit(in) ? &o : NULL;
        if (!w || !small(w) || !small(b) || transposed_cost(x, w, po) > ((int64_t)1 << 22)) return;
        if (k == 8) current = "ag_conv_transpose2d", r = ag_conv_transpose2d(x, w, b, po);
        else current = "ag_conv_transpose1d", r = ag_conv_transpose1d(x, w, b, po);
        result(in, r);
        return;
    }
    if (k < 2) {
        ag_tensor *w = pick(in), *b = pick_optional(in);
        ag_conv_opts o = get_conv_opts(in);
        if (!w || !small(w) || !small(b) || sat_mul(ag_numel(x), ag_numel(w)) > ((int64_t)1 << 22)) return;
        const ag_conv_opts *po = bit(in) ? &o : NULL;
        if (k == 0) current = "ag_conv2d", r = ag_conv2d(x, w, b, po);
        else current = "ag_conv1d", r = ag_conv1d(x, w, b, po);
        if (k == 0 && bit(in)) { /* the weight gradient: of r (or any tensor) for w's shape (or any) */
            ag_tensor *dy = r && bit(in) ? r : pick(in);
            ag_shape ws = bit(in) ? ag_shape_of(w) : get_shape(in);
            int64_t cost = dy ? sat_mul(ag_numel(x), ag_numel(dy) + 1) : 0;
            for (int d = 0; d < ws.ndim && d < AG_MAX_DIMS; d++) cost = sat_mul(cost, ws.dim[d] > 0 ? ws.dim[d] : 1);
            if (dy && small(dy) && cost <= ((int64_t)1 << 26))
                current = "ag_conv2d_weight", result(in, ag_conv2d_weight(x, ws, dy, po));
        }
        result(in, r);
        return;
    }
    ag_pool_opts o = get_pool_opts(in);
    const ag_pool_opts *po = u8(in) < 16 ? NULL : &o;
    if (k < 7 && sat_mul(sat_mul(o.kernel[0], o.kernel[1]), ag_numel(x)) > ((int64_t)1 << 24)) return;
    ag_tensor *idx = NULL, **pidx = bit(in) ? &idx : NULL;
    switch (k) {
    case 2: current = "ag_max_pool2d", r = ag_max_pool2d(x, po, pidx); break;
    case 3: current = "ag_max_pool1d", r = ag_max_pool1d(x, po, pidx); break;
    case 4: current = "ag_avg_pool2d", r = ag_avg_pool2d(x, po); break;
    case 5: current = "ag_avg_pool1d", r = ag_avg_pool1d(x, po); break;
    case 6: current = "ag_adaptive_avg_pool2d", r = ag_adaptive_avg_pool2d(x, o.stride[0], o.stride[1]); break;
    default: current = "ag_adaptive_avg_pool2d", r = ag_adaptive_avg_pool2d(x, o.kernel[0] % 9, o.kernel[1] % 9); break;
    }
    if ((k == 4 || k >= 6) && bit(in)) { /* the adjoint: of a gradient of r's shape or any tensor, for x's shape or any */
        ag_tensor *dy = r && bit(in) ? r : pick(in);
        ag_shape xs = bit(in) ? ag_shape_of(x) : get_shape(in);
        int64_t cost = dy ? sat_mul(sat_mul(o.kernel[0], o.kernel[1]), ag_numel(dy) + 1) : 0;
        for (int d = 0; d < xs.ndim && d < AG_MAX_DIMS; d++) cost = sat_mul(cost, xs.dim[d] > 0 ? xs.dim[d] : 1);
        if (dy && cost <= ((int64_t)1 << 24)) {
            ag_tensor *g;
            if (k == 4) current = "ag_avg_pool2d_backward", g = ag_avg_pool2d_backward(dy, xs, po);
            else current = "ag_adaptive_avg_pool2d_backward", g = ag_adaptive_avg_pool2d_backward(dy, xs);
            result(in, g);
        }
    }
    if (idx) {
        CHECK(r != NULL, "indices without a result");
        CHECK(ag_dtype_of(idx) == AG_I64 && ag_numel(idx) == ag_numel(r), "indices not int64 of the result's size");
        checked(idx);
        put(u8(in) % NSLOT, idx, false);
    } else if (pidx && k <= 3) { /* only max pooling is given pidx */
        CHECK(r == NULL, "max pooling gave no indices");
    }
    result(in, r);
}

typedef ag_tensor *(*loss_fn)(ag_tensor *, ag_tensor *, const ag_loss_opts *);
static const struct {
    const char *name;
    loss_fn f;
} loss_ops[] = {
    F(ag_mse_loss), F(ag_l1_loss), F(ag_smooth_l1_loss), F(ag_huber_loss), F(ag_binary_cross_entropy),
    F(ag_binary_cross_entropy_with_logits), F(ag_nll_loss), F(ag_cross_entropy), F(ag_kl_div),
    F(ag_poisson_nll_loss), F(ag_hinge_embedding_loss), F(ag_soft_margin_loss),
    F(ag_multilabel_soft_margin_loss), F(ag_multi_margin_loss), F(ag_multilabel_margin_loss), F(ag_log_cosh_loss),
    F(ag_mean_absolute_percentage_error), F(ag_mean_squared_logarithmic_error), F(ag_hinge_loss),
    F(ag_squared_hinge_loss), F(ag_categorical_hinge_loss), F(ag_cosine_similarity_loss),
};

static void op_loss(input *in) {
    ag_tensor *x = pick(in), *t = pick(in), *u = pick(in);
    if (!x || !t || !u || !small(x) || !small(t) || !small(u)) return;
    ag_loss_opts o = AG_LOSS_DEFAULTS;
    uint8_t v = u8(in);
    if (v & 1) o.reduction = (ag_reduction)(u8(in) % 5);
    if (v & 2) o.weight = pick_optional(in);
    if (v & 4) o.pos_weight = pick_optional(in);
    if (v & 8) o.ignore_index = get_index(in);
    if (v & 16) o.label_smoothing = get_scalar(in), o.beta = get_scalar(in), o.delta = get_scalar(in);
    if (v & 32) o.margin = get_scalar(in), o.eps = get_scalar(in), o.p = get_scalar(in);
    if (v & 64) {
        uint8_t f = u8(in);
        o.log_target = f & 1, o.log_input = f & 2, o.full = f & 4, o.swap = f & 8;
    }
    if (!small(o.weight) || !small(o.pos_weight)) return;
    const ag_loss_opts *po = v & 128 ? NULL : &o;
    int k = u8(in) % (COUNT(loss_ops) + 11);
    if (k < COUNT(loss_ops)) {
        current = loss_ops[k].name;
        result(in, loss_ops[k].f(x, t, po));
        return;
    }
    switch (k - COUNT(loss_ops)) {
    case 0: current = "ag_gaussian_nll_loss", result(in, ag_gaussian_nll_loss(x, t, u, po)); break;
    case 1: current = "ag_margin_ranking_loss", result(in, ag_margin_ranking_loss(x, t, u, po)); break;
    case 2: current = "ag_cosine_embedding_loss", result(in, ag_cosine_embedding_loss(x, t, u, po)); break;
    case 3: current = "ag_triplet_margin_loss", result(in, ag_triplet_margin_loss(x, t, u, po)); break;
    case 4: current = "ag_harmonic_loss", result(in, ag_harmonic_loss(x, t, u, get_scalar(in), po)); break;
    case 6: case 7: case 8: case 9: { /* the information measures along a dim */
        int dim = (int8_t)u8(in);
        bool log_input = u8(in) & 1;
        int which = k - COUNT(loss_ops) - 6;
        current = which == 0 ? "ag_entropy" : which == 1 ? "ag_cross_entropy_pq" : which == 2 ? "ag_kl_divergence" : "ag_perplexity";
        result(in, which == 0   ? ag_entropy(x, dim, log_input)
                   : which == 1 ? ag_cross_entropy_pq(x, t, dim, log_input)
                   : which == 2 ? ag_kl_divergence(x, t, dim, log_input)
                                : ag_perplexity(x, u8(in) & 1 ? t : NULL, dim, log_input));
        break;
    }
    case 10: { /* ctc_loss: log_probs, targets, and the two lengths */
        ag_tensor *w = pick(in);
        if (!small(w)) return;
        o.blank = get_index(in), o.zero_infinity = u8(in) & 1;
        current = "ag_ctc_loss", result(in, ag_ctc_loss(x, t, u, w, po));
        break;
    }
    case 5: { /* the loss objects: two tensors, the three-tensor losses, TripletMarginWithDistanceLoss,
               * CTCLoss; any count */
        static const char *const names[] = {"ag_nn_loss", "ag_nn_triplet_margin_with_distance_loss", "ag_nn_ctc_loss",
                                            "ag_nn_gaussian_nll_loss", "ag_nn_margin_ranking_loss",
                                            "ag_nn_cosine_embedding_loss", "ag_nn_triplet_margin_loss",
                                            "ag_nn_harmonic_loss"};
        const uint8_t kind = u8(in) % COUNT(names);
        current = names[kind];
        ag_loss *l = kind == 0   ? ag_nn_loss(loss_ops[u8(in) % COUNT(loss_ops)].f, po)
                     : kind == 1 ? ag_nn_triplet_margin_with_distance_loss(NULL, NULL, po)
                     : kind == 2 ? ag_nn_ctc_loss(po)
                     : kind == 3 ? ag_nn_gaussian_nll_loss(po)
                     : kind == 4 ? ag_nn_margin_ranking_loss(po)
                     : kind == 5 ? ag_nn_cosine_embedding_loss(po)
                     : kind == 6 ? ag_nn_triplet_margin_loss(po)
                                 : ag_nn_harmonic_loss(get_scalar(in), po);
        if (!l) {
            check_failure();
            return;
        }
        ag_tensor *w = pick(in);
        current = "ag_loss_forward_n";
        if (small(w)) result(in, ag_loss_forward_n(l, (ag_tensor *[]){x, t, u, w}, 1 + u8(in) % 4));
        ag_loss_free(l);
        break;
    }
    }
}

/* ---- registered ops through their test rows ------------------------------------------------- */
static int nops;

/* A row's call reads its scalar arguments only through public functions, which
 * must check them: unary rows (arg a, b) and masked_fill (the fill value). */
static bool row_args_public(const ag_op *op) {
    const char *family = ag__op_family(op);
    return (family && strcmp(family, "unary") == 0) || strcmp(op->name, "masked_fill") == 0;
}

static void check_grad(const ag_tensor *t) {
    const ag_tensor *g = ag_grad(t);
    if (!g) return;
    current = "ag_grad";
    check_tensor(g);
    ag_shape a = ag_shape_of(t), b = ag_shape_of(g);
    CHECK(a.ndim == b.ndim && memcmp(a.dim, b.dim, sizeof(int64_t) * (size_t)a.ndim) == 0,
          "a gradient's shape differs from its tensor's");
    CHECK(ag_dtype_of(g) == ag_dtype_of(t), "a gradient's dtype differs from its tensor's");
}

static void op_registered(input *in) {
    if (!nops) return;
    const ag_op *op = ag__op_at(u16(in) % nops);
    const ag_op_test *row = ag_test_case_for(op);
    if (!row) return;
    int ncase = 0;
    while (ncase < 4 && row->cases[ncase].n) ncase++;
    if (!ncase) return;
    ag_op_case c = row->cases[u8(in) % ncase];
    uint8_t scale = u8(in);
    if (scale & 1) {
        ag_op_case big;
        if (opc_scale(&c, 1 + (scale >> 1) * 16, &big)) c = big;
    }
    ag_dtype dt = get_float_dtype(in);
    bool noncontig = bit(in);
    uint8_t grads = u8(in), specials = u8(in) % 4;
    double arg0 = get_scalar(in), arg1 = get_scalar(in);
    uint8_t use_slot[4];
    for (int k = 0; k < 4; k++) use_slot[k] = u8(in);
    ag_op_test row_copy = *row;
    if (row_args_public(op)) row_copy.arg[0] = arg0, row_copy.arg[1] = arg1;

    if (ag_scope_begin() != AG_OK) return;
    ag_tensor *ins[4] = {NULL};
    bool ok = true;
    for (int k = 0; k < c.n; k++) {
        /* a slot tensor of the case's shape and dtype when one is asked for and fits */
        ag_tensor *s = slot[use_slot[k] % NSLOT];
        ag_shape ss = s ? ag_shape_of(s) : c.shape[k];
        if (s && ag_dtype_of(s) == dt && ss.ndim == c.shape[k].ndim &&
            memcmp(ss.dim, c.shape[k].dim, sizeof(int64_t) * (size_t)ss.ndim) == 0) {
            ins[k] = s;
            continue;
        }
        current = "opc_input";
        ins[k] = opc_input(&c.shape[k], row->domain, noncontig, dt);
        if (!ins[k]) { /* only the allocation budget can refuse */
            CHECK(ag_last_status() == AG_ERR_NOMEM, "opc_input failed other than for memory");
            ok = false;
            break;
        }
        for (int j = 0; j < specials && ag_numel(ins[k]) > 0; j++) {
            int64_t at = (int64_t)(u16(in) % (uint64_t)ag_numel(ins[k]));
            ag__write(ins[k], at, get_scalar(in)); /* storage index: any element */
        }
        if (grads >> k & 1) ag_requires_grad_(ins[k], true);
    }
    ag_tensor *r = NULL;
    if (ok) {
        current = op->name;
        ag_clear_error();
        r = checked(ag_test_call(&row_copy, ins, c.n));
        if (r && (grads & 0x80) && ag_requires_grad(r)) {
            current = "ag_sum";
            ag_tensor *loss = ag_numel(r) == 1 ? r : checked(ag_sum(r));
            if (loss) {
                current = "ag_backward";
                check_status(ag_backward(loss));
                for (int k = 0; k < c.n; k++) check_grad(ins[k]);
            }
        }
    }
    ag_keep(r); /* now owned by the enclosing scope, or by us */
    ag_scope_end();
    if (r) put(u8(in) % NSLOT, r, false);
}

/* ---- in-place updates ------------------------------------------------------------------------ */
static void op_inplace(input *in) {
    ag_tensor *t = pick(in), *o = pick(in), *r = NULL;
    if (!t || !o || !small(t) || !small(o)) return;
    uint8_t k = u8(in) % 31;
    double a = get_scalar(in), b = get_scalar(in);
    switch (k) {
    case 0: current = "ag_copy_", r = ag_copy_(t, o); break;
    case 1: current = "ag_zero_", r = ag_zero_(t); break;
    case 2: current = "ag_fill_", r = ag_fill_(t, a); break;
    case 3: current = "ag_add_", r = ag_add_(t, o, a); break;
    case 4: current = "ag_sub_", r = ag_sub_(t, o); break;
    case 5: current = "ag_mul_", r = ag_mul_(t, o); break;
    case 6: current = "ag_div_", r = ag_div_(t, o); break;
    case 7: current = "ag_add_scalar_", r = ag_add_scalar_(t, a); break;
    case 8: current = "ag_mul_scalar_", r = ag_mul_scalar_(t, a); break;
    case 9: current = "ag_clamp_", r = ag_clamp_(t, a, b); break;
    case 10: current = "ag_uniform_", r = ag_uniform_(t, a, b); break;
    case 11: current = "ag_normal_", r = ag_normal_(t, a, b); break;
    case 12: current = "ag_init_uniform_", r = ag_init_uniform_(t, a, b); break;
    case 13: current = "ag_init_normal_", r = ag_init_normal_(t, a, b); break;
    case 14: {
        double lo = get_scalar(in), hi = get_scalar(in);
        current = "ag_init_trunc_normal_", r = ag_init_trunc_normal_(t, a, b, lo, hi);
        break;
    }
    case 15: current = "ag_init_constant_", r = ag_init_constant_(t, a); break;
    case 16: current = "ag_init_zeros_", r = ag_init_zeros_(t); break;
    case 17: current = "ag_init_ones_", r = ag_init_ones_(t); break;
    case 18: current = "ag_init_eye_", r = ag_init_eye_(t); break;
    case 19: current = "ag_init_xavier_uniform_", r = ag_init_xavier_uniform_(t, a); break;
    case 20: current = "ag_init_xavier_normal_", r = ag_init_xavier_normal_(t, a); break;
    case 21:
    case 22: {
        static const char *modes[] = {"fan_in", "fan_out", "", "fan"};
        static const char *nl[] = {"relu", "leaky_relu", "linear", "tanh", "selu", "bogus", "sigmoid", "conv2d"};
        const char *mode = modes[u8(in) % 4], *nonlin = nl[u8(in) % 8];
        if (k == 21) current = "ag_init_kaiming_uniform_", r = ag_init_kaiming_uniform_(t, a, mode, nonlin);
        else current = "ag_init_kaiming_normal_", r = ag_init_kaiming_normal_(t, a, mode, nonlin);
        break;
    }
    case 23: current = "ag_init_orthogonal_", r = ag_init_orthogonal_(t, a); break;
    case 24: {
        int64_t fan_in = 0, fan_out = 0;
        current = "ag_init_calculate_fan_in_and_fan_out";
        check_status(ag_init_calculate_fan_in_and_fan_out(t, &fan_in, &fan_out));
        return;
    }
    case 25: { /* parameters_to_vector and back */
        ag_tensor *ps[3] = {t, o, pick(in)};
        int n = (int)(u8(in) % 4);
        for (int i = 0; i < n; i++)
            if (!small(ps[i])) return;
        current = "ag_parameters_to_vector";
        ag_tensor *vec = checked(ag_parameters_to_vector(ps, n));
        ag_tensor *src = bit(in) ? vec : pick(in);
        if (src && small(src)) {
            current = "ag_vector_to_parameters";
            check_status(ag_vector_to_parameters(src, ps, n));
        }
        if (vec) put(u8(in) % NSLOT, vec, false);
        return;
    }
    case 26: current = "ag_masked_fill", r = ag_masked_fill(t, o, a); result(in, r); return;
    case 27: current = "ag_relu_", r = ag_relu_(t); break;
    case 28: current = "ag_masked_fill_", r = ag_masked_fill_(t, o, a); break;
    case 29: current = "ag_init_dirac_", r = ag_init_dirac_(t, (int)(u8(in) % 5) - 1); break;
    case 30: current = "ag_init_sparse_", r = ag_init_sparse_(t, a, b); break;
    }
    checked_inplace(r, t);
}

/* ---- autograd ------------------------------------------------------------------------------- */
static void op_autograd(input *in) {
    ag_tensor *t = pick(in);
    if (!t) return;
    switch (u8(in) % 10) {
    case 0:
    case 1: current = "ag_requires_grad_", checked_inplace(ag_requires_grad_(t, true), t); break;
    case 2: current = "ag_requires_grad_(false)", checked_inplace(ag_requires_grad_(t, false), t); break;
    case 3: current = "ag_retain_grad", checked_inplace(ag_retain_grad(t), t); break;
    case 4: current = "ag_zero_grad", ag_zero_grad(t); break;
    case 5: { /* the gradient (borrowed) into a slot */
        ag_tensor *g = ag_grad(t);
        if (g) {
            check_grad(t);
            put(u8(in) % NSLOT, ag_retain(g), true);
        }
        break;
    }
    case 6:
        if (nograd_depth > 0 && bit(in)) ag_no_grad_end(), nograd_depth--;
        else ag_no_grad_begin(), nograd_depth++;
        break;
    case 7: ag_set_detect_anomaly(bit(in)); break;
    case 8: current = "ag_grad_fn_name", (void)ag_grad_fn_name(t), (void)ag_is_leaf(t); break;
    case 9: /* bf16 autocast: any dtype value (float16 and junk fail but open a region), unbalanced ends */
        if (bit(in)) {
            current = "ag_autocast_end";
            if (ag_autocast_end() == AG_OK) autocast_depth--;
        } else {
            current = "ag_autocast_begin";
            if (ag_autocast_begin((ag_autocast_dtype)(u8(in) % 4), bit(in)) != AG_ERR_ARG) autocast_depth++;
        }
        break;
    }
}

static void op_backward(input *in) {
    ag_tensor *t = pick(in);
    if (!t || !small(t)) return;
    uint8_t how = u8(in);
    ag_tensor *loss = t;
    bool own = false;
    if (how & 1) {
        current = how & 2 ? "ag_mean" : "ag_sum";
        loss = checked(how & 2 ? ag_mean(t) : ag_sum(t));
        if (!loss) return;
        own = ag_scope_depth() == 0;
    }
    if (how & 4) {
        ag_tensor *seed = pick_optional(in);
        if (!small(seed)) seed = NULL;
        current = "ag_backward_ex";
        check_status(ag_backward_ex(loss, seed, how & 8));
    } else {
        current = "ag_backward";
        check_status(ag_backward(loss));
    }
    if (own) ag_release(loss);
    for (int s = 0; s < NSLOT; s++)
        if (slot[s]) check_grad(slot[s]);
}

/* ---- higher order, forward mode, the functional API -------------------------------------------- */
static int dual_depth; /* dual levels this program opened (at most one) */

/* The callbacks (an ag_fn) the functional API is given, chosen by its ctx, an int:
 * 0 Σ of every input squared (one element), 1 tanh of input 0 (its shape), 2 input
 * 0 times the last (broadcast: may fail), 3 NULL without an error, 4 an integer
 * result, 5 a constant (independent of the inputs). */
static ag_tensor *fuzz_fn(ag_tensor *const *x, int n, void *ctx) {
    switch (n > 0 ? *(const int *)ctx : 5) { /* no inputs to read: the constant */
    case 0: {
        ag_tensor *acc = ag_sum(ag_mul(x[0], x[0]));
        for (int i = 1; i < n && acc; i++) acc = ag_add(acc, ag_sum(ag_mul(x[i], x[i])));
        return acc;
    }
    case 1: return ag_tanh(x[0]);
    case 2: return ag_mul(x[0], x[n - 1]);
    case 3: return NULL;
    case 4: return ag_argmax(x[0], 0, false);
    default: return ag_ones(AG_SHAPE(2), AG_F32);
    }
}

/* A count as the API sees it: mostly 0 .. 4, sometimes hostile (negative, past the
 * 64 inputs the functional API takes); arrays handed along hold 64 entries, so a
 * count past 64 only goes to calls that refuse it before reading. */
static int get_count(input *in) {
    static const int hostile[] = {-1, INT_MIN, 65, 64, INT_MAX, 1000};
    uint8_t v = u8(in);
    return v < 200 ? v % 5 : hostile[v % 6];
}

#define FN_ARRAY 64
/* Up to FN_ARRAY tensors from the slots (NULL entries included when hostile), tiny
 * ones only: each element of an input or output may cost a pass. */
static bool fill_tensors(input *in, ag_tensor **a, bool allow_null) {
    for (int i = 0; i < FN_ARRAY; i++) {
        a[i] = allow_null ? pick_optional(in) : pick(in);
        if (a[i] && ag_numel(a[i]) > 64) return false;
    }
    return true;
}

static void op_functional(input *in) {
    static ag_tensor *xs[FN_ARRAY], *vs[FN_ARRAY], *res[FN_ARRAY * FN_ARRAY], *outs[FN_ARRAY];
    static int kinds[6] = {0, 1, 2, 3, 4, 5};
    uint8_t k = u8(in) % 14;
    int n = get_count(in), m = get_count(in);
    bool nulls = bit(in);
    if (!fill_tensors(in, xs, nulls) || !fill_tensors(in, vs, nulls)) return;
    /* every byte read in sequence (an argument list or initializer would not order them) */
    void *ctx = &kinds[u8(in) % 6];
    ag_fn fn = bit(in) ? fuzz_fn : NULL;
    ag_tensor *const *ins = bit(in) ? xs : NULL;
    ag_functional_opts o = {0};
    o.create_graph = bit(in);
    o.strict = bit(in);
    o.mode = (ag_jacobian_mode)(u8(in) % 4);
    ag_grad_opts go = {0};
    go.retain_graph = bit(in);
    go.create_graph = bit(in);
    go.allow_unused = bit(in);
    const ag_functional_opts *opts = bit(in) ? &o : NULL;
    bool b1, b2, b3, b4;
    ag_tensor *out = NULL, *r = NULL;
    memset(res, 0, sizeof res);
    switch (k) {
    case 0: /* ag_autograd_grad: n outputs, m inputs, grad_outputs maybe (arrays past 64 are not given) */
        if (n > FN_ARRAY || m > FN_ARRAY) return;
        current = "ag_autograd_grad";
        b1 = bit(in), b2 = bit(in), b3 = bit(in);
        for (int i = 0; i < FN_ARRAY; i++) outs[i] = vs[FN_ARRAY - 1 - i]; /* grad_outputs */
        check_status(ag_autograd_grad(nulls ? NULL : xs, n, vs, m, b1 ? outs : NULL, b2 ? &go : NULL, b3 ? res : NULL));
        break;
    case 1: {
        current = "ag_backward_opts";
        ag_tensor *seed = pick_optional(in);
        b1 = bit(in);
        check_status(ag_backward_opts(xs[0], seed, b1 ? &go : NULL));
        if (b1 && go.create_graph) keep_gradded(xs[0]);
        break;
    }
    case 2: {
        current = "ag_vjp";
        ag_tensor *v = pick_optional(in);
        b1 = bit(in), b2 = bit(in);
        check_status(ag_vjp(fn, ctx, ins, n, v, opts, b1 ? &out : NULL, b2 ? res : NULL));
        break;
    }
    case 3:
        current = "ag_jacobian";
        b1 = bit(in);
        check_status(ag_jacobian(fn, ctx, ins, n, opts, b1 ? res : NULL));
        break;
    case 4:
        if (n > 8 && n <= FN_ARRAY) return; /* n·n blocks of numel² elements: a legitimate cost */
        current = "ag_hessian";
        b1 = bit(in);
        check_status(ag_hessian(fn, ctx, ins, n, opts, b1 ? res : NULL));
        break;
    case 5:
    case 6:
        current = k == 5 ? "ag_hvp" : "ag_vhp";
        b1 = bit(in), b2 = bit(in), b3 = bit(in);
        check_status((k == 5 ? ag_hvp : ag_vhp)(fn, ctx, ins, n, b1 ? vs : NULL, opts, b2 ? &out : NULL, b3 ? res : NULL));
        break;
    case 7:
        if (n > FN_ARRAY) return; /* jvp takes any count: its arrays must hold it */
        current = "ag_jvp";
        b1 = bit(in), b2 = bit(in), b3 = bit(in);
        check_status(ag_jvp(fn, ctx, ins, n, b1 ? vs : NULL, b2 ? &out : NULL, b3 ? &r : NULL));
        break;
    case 8:
        current = "ag_gradgradcheck";
        if (n > 2) return;
        (void)ag_gradgradcheck(fn, ctx, ins, n, NULL, NULL); /* a failed check is a status too */
        if (ag_last_status() != AG_OK) check_failure();
        break;
    case 9:
    case 10:
        b4 = k == 9 && bit(in);
        if (dual_depth == 0 || b4) {
            current = "ag_dual_level_begin";
            ag_status st = ag_dual_level_begin();
            if (st) check_failure();
            else dual_depth++;
        } else {
            current = "ag_dual_level_end";
            ag_status st = ag_dual_level_end();
            if (dual_depth > 0) dual_depth--;
            else CHECK(st != AG_OK, "ending no level succeeded");
            if (st) check_failure();
        }
        return;
    case 11: {
        current = "ag_make_dual";
        ag_tensor *p = pick(in), *t = pick_optional(in);
        ag_clear_error();
        ag_tensor *d = ag_make_dual(p, t);
        if (p && t) {
            result(in, d);
        } else { /* a NULL argument (a failed op's result): NULL and no new error, as every op */
            CHECK(!d, "make_dual of a NULL gave a result");
            CHECK(ag_last_status() == AG_OK, "make_dual of a NULL recorded an error");
        }
        return;
    }
    case 12: {
        current = "ag_tangent";
        ag_tensor *t = pick(in);
        ag_clear_error();
        ag_tensor *d = t ? ag_tangent(t) : NULL;
        if (d) result(in, d);
        else CHECK(ag_last_status() == AG_OK || ag_last_error()[0] != '\0', "ag_tangent failed without a message");
        return;
    }
    case 13: current = "ag_dual_level_open", (void)ag_dual_level_open(); return;
    }
    /* every result (NULL for an unused input is one) is checked, and released when no
     * scope owns it; a failed call leaves none */
    bool failed = ag_last_status() != AG_OK;
    for (int i = 0; i < FN_ARRAY * FN_ARRAY; i++) {
        if (!res[i]) continue;
        CHECK(!failed, "a failed call left a result");
        check_tensor(res[i]);
        if (ag_scope_depth() == 0) ag_release(res[i]);
    }
    CHECK(!failed || (!out && !r), "a failed call left an output");
    if (out) result(in, out);
    if (r) result(in, r);
}

/* ---- reading -------------------------------------------------------------------------------- */
static FILE *devnull;

static void op_read(input *in) {
    ag_tensor *t = pick(in);
    if (!t) return;
    ag_clear_error();
    switch (u8(in) % 9) {
    case 0:
        current = "ag_item";
        if (isnan(ag_item(t)) && ag_numel(t) != 1) check_failure();
        break;
    case 1: {
        int64_t idx[AG_MAX_DIMS];
        for (int i = 0; i < AG_MAX_DIMS; i++) idx[i] = get_index(in);
        current = "ag_get", (void)ag_get(t, idx);
        break;
    }
    case 2: { /* capacity within the buffer (the caller's contract), or hostile */
        ag_dtype dt = get_dtype(in);
        int64_t cap = get_index(in);
        size_t es = (unsigned)dt <= AG_U8 ? ag_dtype_size(dt) : 8;
        if (cap > 0 && (uint64_t)cap > sizeof user_buffer / es) cap = (int64_t)(sizeof user_buffer / es); /* no wrap */
        if (!small(t)) return;
        current = "ag_copy_to";
        check_status(ag_copy_to(t, user_buffer, cap, dt));
        break;
    }
    case 3: {
        if (!small(t)) return;
        current = "ag_to_string";
        char *s = ag_to_string(t);
        if (s) free(s);
        else check_failure();
        break;
    }
    case 4: {
        int d = get_dim(in);
        current = "ag_size", (void)ag_size(t, d), (void)ag_stride(t, d);
        (void)ag_version(t), (void)ag_is_contiguous(t), (void)ag_data(t), (void)ag_requires_grad(t);
        check_status(ag_increment_version(t));
        break;
    }
    case 5: current = "ag_graph_print", check_status(ag_graph_print(devnull, t)); break;
    case 6: current = "ag_graph_dot", check_status(ag_graph_dot(devnull, t)); break;
    case 7:
        if (!small(t)) return;
        current = "ag_fprint", check_status(ag_fprint(devnull, t));
        break;
    case 8: {
        int64_t fi, fo;
        current = "ag_init_calculate_fan_in_and_fan_out", check_status(ag_init_calculate_fan_in_and_fan_out(t, &fi, &fo));
        break;
    }
    }
}

/* ---- state dicts and files ------------------------------------------------------------------ */
static char path[64];

static void remove_file(void) { unlink(path); }

/* Whether two tensors hold the same shape, dtype and bits. */
static bool same_tensor(const ag_tensor *a, const ag_tensor *b) {
    ag_shape sa = ag_shape_of(a), sb = ag_shape_of(b);
    if (ag_dtype_of(a) != ag_dtype_of(b) || sa.ndim != sb.ndim ||
        memcmp(sa.dim, sb.dim, sizeof(int64_t) * (size_t)sa.ndim) != 0)
        return false;
    int64_t n = ag_numel(a);
    size_t es = ag_dtype_size(ag_dtype_of(a));
    for (int64_t k = 0; k < n; k++) {
        /* element k in row-major order, through the strides */
        int64_t ia = a->offset, ib = b->offset, rem = k;
        for (int d = sa.ndim - 1; d >= 0; d--) {
            int64_t i = rem % sa.dim[d];
            rem /= sa.dim[d];
            ia += i * a->stride[d], ib += i * b->stride[d];
        }
        const char *pa = (char *)a->storage->data + (size_t)ia * es, *pb = (char *)b->storage->data + (size_t)ib * es;
        if (ag_dtype_of(a) == AG_BOOL ? (*pa != 0) != (*pb != 0) : memcmp(pa, pb, es) != 0)
            return false; /* a bool is saved as 0 or 1, whatever byte stood for true */
    }
    return true;
}

static const char *const names[] = {"a", "b", "layer.weight", "a", "", "x.y.z", "bias", "\"quote\\"};

static void op_state(input *in) {
    current = "ag_state_dict_new";
    ag_state_dict *sd = ag_state_dict_new();
    if (!sd) {
        check_failure();
        return;
    }
    int n = u8(in) % 5;
    for (int i = 0; i < n; i++) {
        ag_tensor *t = pick(in);
        const char *name = names[u8(in) % 8];
        if (!t || !small(t)) continue;
        current = "ag_state_dict_set";
        if (bit(in)) check_status(ag_state_dict_set_scalar(sd, name, get_scalar(in)));
        else check_status(ag_state_dict_set(sd, name, t));
    }
    current = "ag_state_dict_get_scalar";
    (void)ag_state_dict_get_scalar(sd, names[u8(in) % 8]);
    current = "ag_save_safetensors";
    ag_status s = ag_save_safetensors(sd, path);
    check_status(s);
    if (s == AG_OK) {
        current = "ag_load_safetensors";
        ag_state_dict *back = ag_load_safetensors(path);
        if (!back) {
            CHECK(ag_last_status() == AG_ERR_NOMEM, "a saved file could not be loaded back");
            check_failure();
        } else {
            CHECK(ag_state_dict_size(back) == ag_state_dict_size(sd), "loading changed the number of entries");
            for (int i = 0; i < ag_state_dict_size(sd); i++) {
                CHECK(strcmp(ag_state_dict_name(sd, i), ag_state_dict_name(back, i)) == 0,
                      "loading changed a name or the order");
                ag_tensor *t = ag_state_dict_tensor(back, i);
                check_tensor(t);
                CHECK(same_tensor(ag_state_dict_tensor(sd, i), t), "a tensor changed in a save/load round trip");
            }
            if (ag_state_dict_size(back) > 0 && bit(in)) {
                ag_tensor *t = ag_state_dict_tensor(back, u8(in) % ag_state_dict_size(back));
                put(u8(in) % NSLOT, ag_retain(t), true);
            }
            ag_state_dict_free(back);
        }
    }
    ag_state_dict_free(sd);
}

/* A module built from fuzzed arguments, run on a slot, loaded from slots, saved and loaded. */
static void op_module(input *in) {
    ag_module *m = NULL;
    int64_t a = get_size(in), b = get_size(in);
    double x = get_scalar(in), y = get_scalar(in);
    switch (u8(in) % 16) {
    case 0: current = "ag_nn_linear", m = ag_nn_linear(a, b, bit(in)); break;
    case 1: {
        ag_shape s = get_shape(in);
        current = "ag_nn_layer_norm", m = ag_nn_layer_norm(s, x, bit(in));
        break;
    }
    case 2: {
        bool affine = bit(in), track = bit(in);
        if (bit(in)) current = "ag_nn_batch_norm1d", m = ag_nn_batch_norm1d(a, x, y, affine, track);
        else if (bit(in)) current = "ag_nn_batch_norm2d", m = ag_nn_batch_norm2d(a, x, y, affine, track);
        else if (bit(in)) current = "ag_nn_instance_norm2d", m = ag_nn_instance_norm2d(a, x, y, affine, track);
        else current = "ag_nn_group_norm", m = ag_nn_group_norm(b % 9, a, x, affine);
        break;
    }
    case 3: current = "ag_nn_prelu", m = ag_nn_prelu(a, x); break;
    case 4: current = "ag_nn_softmax", m = ag_nn_softmax(get_dim(in)); break;
    case 5: current = "ag_nn_hardtanh", m = ag_nn_hardtanh(x, y); break;
    case 6:
        if (bit(in)) current = "ag_nn_dropout", m = ag_nn_dropout(x);
        else current = "ag_nn_dropout2d", m = ag_nn_dropout2d(x);
        break;
    case 7: current = "ag_nn_celu", m = ag_nn_celu(x); break;
    case 8: current = "ag_nn_softplus", m = ag_nn_softplus(x, y); break;
    case 9: {
        ag_module *two[2] = {ag_nn_linear(a % 8, b % 8, true), ag_nn_relu()};
        static const char *const keys[2] = {"fc", "act"};
        switch (u8(in) % 3) {
        case 0: current = "ag_nn_sequential", m = ag_nn_sequential(2, two); break;
        case 1: current = "ag_nn_module_list", m = ag_nn_module_list(2, two); break;
        default: current = "ag_nn_module_dict", m = ag_nn_module_dict(2, keys, two); break;
        }
        break;
    }
    case 10: { /* hostile options; channels and kernel kept small, as the forward's cost grows with them */
        ag_conv_opts o = get_conv_opts(in);
        int64_t kh = get_size(in) % 6, kw = get_size(in) % 6;
        if (bit(in)) current = "ag_nn_conv2d", m = ag_nn_conv2d(a % 9, b % 9, kh, kw, bit(in) ? &o : NULL, bit(in));
        else current = "ag_nn_conv1d", m = ag_nn_conv1d(a % 9, b % 9, kh, bit(in) ? &o : NULL, bit(in));
        if (m || !bit(in)) break;
        ag_conv_transpose_opts t = get_conv_transpose_opts(in); /* its forward's cost grows with the stride */
        for (int i = 0; i < 2; i++) t.stride[i] %= 8, t.dilation[i] %= 8, t.output_padding[i] %= 8;
        if (bit(in)) current = "ag_nn_conv_transpose2d", m = ag_nn_conv_transpose2d(a % 9, b % 9, kh, kw, &t, bit(in));
        else current = "ag_nn_conv_transpose1d", m = ag_nn_conv_transpose1d(a % 9, b % 9, kh, bit(in) ? &t : NULL, bit(in));
        break;
    }
    case 11: {
        ag_pool_opts o = get_pool_opts(in);
        for (int i = 0; i < 2; i++) o.kernel[i] %= 8; /* the window's area bounds the forward's cost */
        const ag_pool_opts *po = bit(in) ? &o : NULL;
        switch (u8(in) % 4) {
        case 0: current = "ag_nn_max_pool2d", m = ag_nn_max_pool2d(po); break;
        case 1: current = "ag_nn_max_pool1d", m = ag_nn_max_pool1d(po); break;
        case 2: current = "ag_nn_avg_pool2d", m = ag_nn_avg_pool2d(po); break;
        default: current = "ag_nn_avg_pool1d", m = ag_nn_avg_pool1d(po); break;
        }
        break;
    }
    case 12:
        if (bit(in)) current = "ag_nn_adaptive_avg_pool2d", m = ag_nn_adaptive_avg_pool2d(a % 9 - 1, b % 9);
        else current = "ag_nn_adaptive_max_pool2d", m = ag_nn_adaptive_max_pool2d(a % 9 - 1, b % 9);
        if (m || !bit(in)) break;
        { /* padding and resampling modules: amounts kept small, as the forward's output grows with them */
            int64_t p[4];
            for (int i = 0; i < 4; i++) p[i] = get_index(in) % 5;
            switch (u8(in) % 4) {
            case 0: current = "ag_nn_zero_pad2d", m = ag_nn_zero_pad2d(p[0], p[1], p[2], p[3]); break;
            case 1: current = "ag_nn_reflection_pad2d", m = ag_nn_reflection_pad2d(p[0], p[1], p[2], p[3]); break;
            case 2: current = "ag_nn_replication_pad2d", m = ag_nn_replication_pad2d(p[0], p[1], p[2], p[3]); break;
            default: {
                ag_interp_opts o = {.size = {a % 9, b % 9}, .mode = (ag_interp_mode)(u8(in) % 3), .align_corners = bit(in)};
                if (bit(in)) o.scale_factor[0] = fmod(x, 4), o.scale_factor[1] = fmod(y, 4);
                current = "ag_nn_upsample", m = ag_nn_upsample(bit(in) ? &o : NULL);
                break;
            }
            }
        }
        break;
    case 13:
        current = "ag_nn_embedding", m = ag_nn_embedding(a % 9 - 1, b % 9, bit(in) ? AG_NO_PADDING_IDX : get_index(in));
        break;
    case 14: {
        int layers = (int)(u8(in) % 4) - 1;
        bool bias = bit(in), batch_first = bit(in), bidirectional = bit(in);
        switch (u8(in) % 3) {
        case 0:
            current = "ag_nn_lstm", m = ag_nn_lstm(a % 9 - 1, b % 9, layers, bias, batch_first, x, bidirectional);
            break;
        case 1: current = "ag_nn_gru", m = ag_nn_gru(a % 9 - 1, b % 9, layers, bias, batch_first, x, bidirectional); break;
        default:
            current = "ag_nn_rnn",
            m = ag_nn_rnn(a % 9 - 1, b % 9, layers, bit(in) ? "relu" : "tanh", bias, batch_first, x, bidirectional);
            break;
        }
        break;
    }
    case 15:
        switch (u8(in) % 3) {
        case 0: current = "ag_nn_lstm_cell", m = ag_nn_lstm_cell(a % 9 - 1, b % 9, bit(in)); break;
        case 1: current = "ag_nn_gru_cell", m = ag_nn_gru_cell(a % 9 - 1, b % 9, bit(in)); break;
        default: current = "ag_nn_rnn_cell", m = ag_nn_rnn_cell(a % 9 - 1, b % 9, bit(in), bit(in) ? "relu" : NULL); break;
        }
        break;
    case 16: /* attention and Transformer layers: sizes small, dropout from x */
        if (bit(in))
            current = "ag_nn_multihead_attention",
            m = ag_nn_multihead_attention(a % 9 - 1, b % 5 - 1, x, bit(in), get_index(in) % 7 - 1, get_index(in) % 7,
                                          bit(in));
        else if (bit(in))
            current = "ag_nn_multihead_attention_ex",
            m = ag_nn_multihead_attention_ex(a % 9 - 1, b % 5 - 1, x, bit(in), bit(in), bit(in), get_index(in) % 7 - 1,
                                             get_index(in) % 7, bit(in));
        else
            current = "ag_nn_transformer_encoder_layer",
            m = ag_nn_transformer_encoder_layer(a % 9 - 1, b % 5 - 1, get_index(in) % 9, x, bit(in) ? "gelu" : NULL, y,
                                                bit(in), bit(in));
        if (m && bit(in))
            current = "ag_nn_transformer_encoder",
            m = strcmp(ag_module_type_name(m), "MultiheadAttention") ? ag_nn_transformer_encoder(m, u8(in) % 3, NULL)
                                                                     : (ag_module_free(m), NULL);
        if (m) { /* the forward over several tensors, with tensors and masks from the pool */
            ag_tensor *args[5], *outs[2];
            int n_in = 1 + u8(in) % 5, n_out = 1 + bit(in);
            for (int i = 0; i < n_in; i++) args[i] = bit(in) ? NULL : pick(in);
            bool small_all = true;
            for (int i = 0; i < n_in; i++) small_all &= !args[i] || small(args[i]);
            if (small_all) {
                ag_mha_opts mo = {bit(in), bit(in), bit(in)};
                current = "ag_module_forward_n";
                check_status(ag_module_forward_n(m, n_in, args, &mo, n_out, outs));
                for (int i = 0; i < n_out; i++)
                    if (outs[i]) checked(outs[i]), put(u8(in) % NSLOT, outs[i], false);
            }
        }
        break;
    }
    if (!m) {
        check_failure();
        return;
    }
    if (bit(in)) ag_module_eval(m);
    ag_tensor *t = pick(in);
    if (t && small(t)) {
        current = "ag_module_forward";
        ag_tensor *r = checked(ag_module_forward(m, t));
        if (r) put(u8(in) % NSLOT, r, false);
    }
    uint8_t what = u8(in);
    if (what & 1) { /* load a dict of slot tensors under the module's names */
        current = "ag_state_dict_new";
        ag_state_dict *sd = ag_state_dict_new();
        if (!sd) {
            check_failure();
        } else {
            static const char *pnames[] = {"weight", "bias", "running_mean", "running_var", "num_batches_tracked",
                                           "0.weight", "0.bias", "other"};
            int n = u8(in) % 4;
            for (int i = 0; i < n; i++) {
                ag_tensor *v = pick(in);
                if (v && small(v)) current = "ag_state_dict_set", check_status(ag_state_dict_set(sd, pnames[u8(in) % 8], v));
            }
            current = "ag_module_load_state_dict";
            check_status(ag_module_load_state_dict(m, sd, bit(in)));
            ag_state_dict_free(sd);
        }
    }
    if (what & 2 && ag_module_num_parameters(m, false) <= COMPUTE_CAP) {
        current = "ag_module_save";
        ag_status s = ag_module_save(m, path);
        check_status(s);
        if (s == AG_OK) current = "ag_module_load", check_status(ag_module_load(m, path));
    }
    if (what & 4) current = "ag_module_print", check_status(ag_module_print(m, devnull));
    if (what & 8) current = "ag_module_to_dtype", check_status(ag_module_to_dtype(m, get_dtype(in)));
    ag_module_free(m);
}

/* ---- scopes, settings, NULL inputs ----------------------------------------------------------- */
static void op_scope(input *in) {
    if (bit(in) || ag_scope_depth() == 0) {
        current = "ag_scope_begin", check_status(ag_scope_begin());
    } else {
        current = "ag_scope_end", check_status(ag_scope_end());
    }
}

static void op_settings(input *in) {
    switch (u8(in) % 4) {
    case 0: ag_set_num_threads(1 + bit(in)); break;
    case 1: ag_set_onednn_enabled(bit(in)); break;
    case 2: ag_manual_seed(u64(in)); break;
    case 3: ag_free_caches(); break;
    }
}

/* Ops given a NULL input return NULL and record nothing. */
static void op_null(input *in) {
    ag_tensor *t = pick(in);
    ag_clear_error();
    ag_tensor *r;
    switch (u8(in) % 5) {
    case 0: {
        int k = u8(in) % COUNT(unary_ops);
        current = unary_ops[k].name, r = unary_ops[k].f(NULL);
        break;
    }
    case 1: {
        int k = u8(in) % COUNT(binary_ops);
        current = binary_ops[k].name, r = bit(in) ? binary_ops[k].f(NULL, t) : binary_ops[k].f(t, NULL);
        break;
    }
    case 2: current = "ag_reshape(NULL)", r = ag_reshape(NULL, get_shape(in)); break;
    case 3: {
        int k = u8(in) % COUNT(loss_ops);
        current = loss_ops[k].name, r = loss_ops[k].f(NULL, t, NULL);
        break;
    }
    default: current = "ag_sum_dim(NULL)", r = ag_sum_dim(NULL, get_dim(in), bit(in)); break;
    }
    CHECK(r == NULL, "a NULL input gave a result");
    CHECK(ag_last_status() == AG_OK, "a NULL input recorded an error");
}

/* ---- the program ------------------------------------------------------------------------------ */
typedef void (*op_fn)(input *);
static const op_fn ops[] = {
    op_create, op_create, op_view, op_view, op_split, op_join, op_unary, op_unary_param, op_binary,
    op_reduce, op_index, op_norm, op_loss, op_registered, op_registered, op_inplace, op_autograd,
    op_backward, op_read, op_state, op_module, op_scope, op_settings, op_null, op_conv, op_tensor_ops,
    op_compose, op_functional,
};

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    trace = getenv("FUZZ_API_TRACE") != NULL;
    snprintf(path, sizeof path, "/tmp/agrad-fuzz-api-%ld.safetensors", (long)getpid());
    atexit(remove_file);
    devnull = fopen("/dev/null", "w");
    ag_set_allocator(budget_alloc, NULL);
    ag_set_num_threads(1);
    while (ag__op_at(nops)) nops++;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    input in = {data, size};
    ag_manual_seed(u16(&in));
    for (int step = 0; step < MAX_STEPS && in.n > 0; step++) {
        ag_clear_error();
        current = NULL;
        ops[u8(&in) % COUNT(ops)](&in);
        if (trace)
            fprintf(stderr, "%2d %s: %s %s; live %ld\n", step, current ? current : "-", ag_status_name(ag_last_status()),
                    ag_last_error(), ag_live_tensors());
    }
    current = "the end of the program";
    for (; dual_depth > 0; dual_depth--) ag_dual_level_end();
    release_all();
    while (ag_scope_depth() > 0) ag_scope_end();
    drop_gradded();
    for (; nograd_depth > 0; nograd_depth--) ag_no_grad_end();
    for (; autocast_depth > 0; autocast_depth--) ag_autocast_end();
    ag_set_detect_anomaly(false);
    ag_set_onednn_enabled(true);
    ag_set_num_threads(1);
    if (ag_live_tensors() != 0) {
        fprintf(stderr, "fuzz_api: %ld tensors still alive after the program\n", ag_live_tensors());
        abort();
    }
    return 0;
}

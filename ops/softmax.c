/*
 * softmax.c - softmax and log_softmax along one dim, stable by subtracting the
 * lane max, with fused adjoints.
 *
 * The (contiguous) input is seen as [outer, n, inner] lanes of n elements a
 * stride `inner` apart, as in extrema.c.  The reference C kernels serve both
 * dtypes and follow PyTorch's CPU kernels step by step (NaN-propagating max,
 * exp(x - max), then y = e·(1/Σe) or y = (x - max) - log Σe), so logits of
 * ±1e8 and -inf next to finite values stay finite; a lane of only -inf gives
 * NaN, as in PyTorch.  Large float32 softmax along the last dim goes to
 * oneDNN's softmax_v2 primitives instead (log_softmax only when asked, see
 * use_onednn): created once per (geometry, algorithm, OpenMP thread count) and
 * kept in a small per-thread cache, whose memory objects are rebound to each
 * call's buffers.  Lanes where oneDNN produced a NaN are redone by the C kernel,
 * which makes the whole lane NaN as PyTorch does.
 */
#include <math.h>
#include <omp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <dnnl.h>
#include <dnnl_debug.h>
#include "iter.h"
#include "softmax.h"


/* ---- reference kernels ------------------------------------------------------------------------- */
/* With redo_nan a kernel only (re)computes the lanes whose output already holds a NaN (backward:
 * or whose y is NaN): oneDNN leaves 0 beside a NaN or +inf logit, where PyTorch's NaN lane max
 * makes the whole lane NaN, and its exp(NaN) is inf where PyTorch's is NaN. */
#define LANE_HAS_NAN(p, n, st, bad)                                                                 \
    bool bad = false;                                                                               \
    for (int64_t k = 0; k < (n); k++) bad |= isnan((p)[k * (st)]);

/* m = max x (NaN wins);  softmax y = exp(x - m)·(1/Σ exp(x - m)),  log_softmax y = (x - m) - log Σ exp(x - m) */
#define SOFTMAX_FWD(NAME, T, EXP)                                                                   \
    static void NAME(const char *xp, char *yp, ag_lanes L, bool is_log, bool redo_nan) {              \
        const int64_t st = L.inner;                                                                 \
        for (int64_t o = 0; o < L.outer; o++)                                                       \
            for (int64_t i = 0; i < L.inner; i++) {                                                 \
                const T *x = (const T *)xp + o * L.n * L.inner + i;                                 \
                T *y = (T *)yp + o * L.n * L.inner + i;                                             \
                if (redo_nan) {                                                                     \
                    LANE_HAS_NAN(y, L.n, st, bad)                                                   \
                    if (!bad) continue;                                                             \
                }                                                                                   \
                T m = -INFINITY;                                                                    \
                for (int64_t k = 0; k < L.n && !isnan(m); k++)                                      \
                    if (!(x[k * st] <= m)) m = x[k * st];                                           \
                double s = 0;                                                                       \
                if (is_log) {                                                                       \
                    for (int64_t k = 0; k < L.n; k++) s += EXP(x[k * st] - m);                      \
                    const T ls = (T)log(s);                                                         \
                    for (int64_t k = 0; k < L.n; k++) y[k * st] = x[k * st] - m - ls;               \
                } else {                                                                            \
                    for (int64_t k = 0; k < L.n; k++) s += y[k * st] = EXP(x[k * st] - m);          \
                    const T r = (T)(1 / s);                                                         \
                    for (int64_t k = 0; k < L.n; k++) y[k * st] *= r;                               \
                }                                                                                   \
            }                                                                                       \
    }
SOFTMAX_FWD(softmax_fwd_f32, float, expf)
SOFTMAX_FWD(softmax_fwd_f64, double, exp)

/* softmax dx = y·(dy - Σ dy·y);  log_softmax dx = dy - exp(y)·Σ dy */
#define SOFTMAX_BWD(NAME, T, EXP)                                                                   \
    static void NAME(char *gxp, const char *yp, const char *gp, ag_lanes L, bool is_log, bool redo_nan) { \
        const int64_t st = L.inner;                                                                 \
        for (int64_t o = 0; o < L.outer; o++)                                                       \
            for (int64_t i = 0; i < L.inner; i++) {                                                 \
                const int64_t base = o * L.n * L.inner + i;                                         \
                T *gx = (T *)gxp + base;                                                            \
                const T *y = (const T *)yp + base, *g = (const T *)gp + base;                       \
                if (redo_nan) { /* a forward lane is all NaN or NaN-free: y[0] tells */           \
                    LANE_HAS_NAN(gx, L.n, st, bad)                                                  \
                    if (!bad && !(L.n > 0 && isnan(y[0]))) continue;                                \
                }                                                                                   \
                double s = 0;                                                                       \
                if (is_log) {                                                                       \
                    for (int64_t k = 0; k < L.n; k++) s += g[k * st];                               \
                    for (int64_t k = 0; k < L.n; k++) gx[k * st] = g[k * st] - EXP(y[k * st]) * (T)s; \
                } else {                                                                            \
                    for (int64_t k = 0; k < L.n; k++) s += (double)(g[k * st] * y[k * st]);         \
                    for (int64_t k = 0; k < L.n; k++) gx[k * st] = y[k * st] * (g[k * st] - (T)s);  \
                }                                                                                   \
            }                                                                                       \
    }
SOFTMAX_BWD(softmax_bwd_f32, float, expf)
SOFTMAX_BWD(softmax_bwd_f64, double, exp)

/* ---- oneDNN float32 path, with a per-thread primitive cache -------------------------------------- */
#define CACHE_SLOTS 8
/* From this many elements on oneDNN wins clearly: at [8, 512] 1.9 µs against the C kernel's 23 µs
 * (one thread), while tiny inputs pay oneDNN's call and OpenMP fork/join overhead. */
#define ONEDNN_MIN_NUMEL 4096

typedef struct prim_entry {
    bool used, is_log;
    int threads;
    int64_t outer, n, inner;
    dnnl_memory_desc_t md;          /* plain layout of src, dst, diff_dst and diff_src alike */
    dnnl_primitive_desc_t fwd_pd;   /* kept as the hint for the backward primitive */
    dnnl_primitive_t fwd, bwd;      /* bwd is made on the first backward */
    dnnl_memory_t mem[4];           /* src, dst, diff_dst, diff_src without buffers */
} prim_entry;

typedef struct prim_cache {
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    int next;                       /* slot to replace next, round robin */
    long created;                   /* primitives made by this thread */
    prim_entry slot[CACHE_SLOTS];
} prim_cache;

static _Thread_local ag__softmax_backend backend;
static _Thread_local prim_cache *tcache;
static pthread_key_t cache_key;     /* frees a thread's cache when the thread exits */
static bool cache_key_ok;
static pthread_once_t cache_once = PTHREAD_ONCE_INIT;

ag__softmax_backend ag__softmax_set_backend(ag__softmax_backend b) {
    ag__softmax_backend old = backend;
    backend = b;
    return old;
}

long ag__softmax_onednn_created(void) { return tcache ? tcache->created : 0; }

static void entry_clear(prim_entry *e) {
    if (e->bwd) dnnl_primitive_destroy(e->bwd);
    if (e->fwd) dnnl_primitive_destroy(e->fwd);
    if (e->fwd_pd) dnnl_primitive_desc_destroy(e->fwd_pd);
    for (int k = 0; k < 4; k++)
        if (e->mem[k]) dnnl_memory_destroy(e->mem[k]);
    memset(e, 0, sizeof *e);
}

/* The cache lives as long as its thread, so it uses malloc/free, not agrad's allocator hook. */
static void cache_free(void *p) {
    prim_cache *c = p;
    for (int k = 0; k < CACHE_SLOTS; k++) entry_clear(&c->slot[k]);
    if (c->stream) dnnl_stream_destroy(c->stream);
    if (c->engine) dnnl_engine_destroy(c->engine);
    free(c);
}

static void make_key(void) { cache_key_ok = pthread_key_create(&cache_key, cache_free) == 0; }

/* This thread's cache (engine and stream included), made on first use; NULL with *st on failure. */
static prim_cache *get_cache(dnnl_status_t *st) {
    if (tcache) return tcache;
    prim_cache *c = calloc(1, sizeof *c);
    if (!c) {
        *st = dnnl_out_of_memory;
        return NULL;
    }
    if ((*st = dnnl_engine_create(&c->engine, dnnl_cpu, 0)) ||
        (*st = dnnl_stream_create(&c->stream, c->engine, dnnl_stream_default_flags))) {
        cache_free(c);
        return NULL;
    }
    pthread_once(&cache_once, make_key);
    if (cache_key_ok) pthread_setspecific(cache_key, c); /* else the cache stays until the process exits */
    return tcache = c;
}

/* The cached forward primitive for this geometry, made (evicting the oldest slot) if missing. */
static prim_entry *get_entry(prim_cache *c, ag_lanes L, bool is_log, dnnl_status_t *st) {
    const int threads = omp_get_max_threads();
    for (int k = 0; k < CACHE_SLOTS; k++) {
        prim_entry *e = &c->slot[k];
        if (e->used && e->is_log == is_log && e->threads == threads && e->outer == L.outer && e->n == L.n &&
            e->inner == L.inner)
            return e;
    }
    prim_entry *e = &c->slot[c->next];
    c->next = (c->next + 1) % CACHE_SLOTS;
    entry_clear(e);
    const int nd = L.inner == 1 ? 2 : 3;
    dnnl_dims_t dims = {L.outer, L.n, L.inner};
    dnnl_softmax_v2_desc_t d;
    if ((*st = dnnl_memory_desc_init_by_tag(&e->md, nd, dims, dnnl_f32, nd == 2 ? dnnl_ab : dnnl_abc)) ||
        (*st = dnnl_softmax_v2_forward_desc_init(&d, dnnl_forward_training, is_log ? dnnl_softmax_log : dnnl_softmax_accurate,
                                                 &e->md, &e->md, 1)) ||
        (*st = dnnl_primitive_desc_create(&e->fwd_pd, &d, NULL, c->engine, NULL)) ||
        (*st = dnnl_primitive_create(&e->fwd, e->fwd_pd))) {
        entry_clear(e);
        return NULL;
    }
    c->created++;
    for (int k = 0; k < 4; k++)
        if ((*st = dnnl_memory_create(&e->mem[k], &e->md, c->engine, DNNL_MEMORY_NONE))) {
            entry_clear(e);
            return NULL;
        }
    e->used = true;
    e->is_log = is_log;
    e->threads = threads;
    e->outer = L.outer, e->n = L.n, e->inner = L.inner;
    return e;
}

/* Makes e's backward primitive if it has none yet. */
static dnnl_status_t ensure_backward(prim_cache *c, prim_entry *e) {
    if (e->bwd) return dnnl_success;
    dnnl_softmax_v2_desc_t d;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_status_t st;
    if (!(st = dnnl_softmax_v2_backward_desc_init(&d, e->is_log ? dnnl_softmax_log : dnnl_softmax_accurate, &e->md, &e->md,
                                                  &e->md, 1)) &&
        !(st = dnnl_primitive_desc_create(&pd, &d, NULL, c->engine, e->fwd_pd)) &&
        !(st = dnnl_primitive_create(&e->bwd, pd)))
        c->created++;
    if (pd) dnnl_primitive_desc_destroy(pd);
    return st;
}

/* Forward: a = src, b = dst.  Backward: a = dst, b = diff_dst, c = diff_src. */
static ag_status onednn_run(const ag_tensor *x, ag_lanes L, bool is_log, bool backward, const void *a, const void *b, void *c) {
    dnnl_status_t st = dnnl_success;
    prim_cache *cache = get_cache(&st);
    prim_entry *e = cache ? get_entry(cache, L, is_log, &st) : NULL;
    if (e && backward) st = ensure_backward(cache, e);
    if (e && !st) {
        dnnl_exec_arg_t args[3];
        int nargs = 0;
        if (!backward) {
            args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_SRC, e->mem[0]};
            args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_DST, e->mem[1]};
            if (!(st = dnnl_memory_set_data_handle(e->mem[0], (void *)a)))
                st = dnnl_memory_set_data_handle(e->mem[1], (void *)b);
        } else {
            args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_DST, e->mem[1]};
            args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_DIFF_DST, e->mem[2]};
            args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_DIFF_SRC, e->mem[3]};
            if (!(st = dnnl_memory_set_data_handle(e->mem[1], (void *)a)) &&
                !(st = dnnl_memory_set_data_handle(e->mem[2], (void *)b)))
                st = dnnl_memory_set_data_handle(e->mem[3], c);
        }
        if (!st && !(st = dnnl_primitive_execute(backward ? e->bwd : e->fwd, cache->stream, nargs, args)))
            st = dnnl_stream_wait(cache->stream);
    }
    if (st == dnnl_success) return AG_OK;
    char s[AG_SHAPE_STR];
    return ag__fail(st == dnnl_out_of_memory ? AG_ERR_NOMEM : AG_ERR_BACKEND, "%s%s: oneDNN softmax_v2 failed (%s) for %s",
                    is_log ? "log_softmax" : "softmax", backward ? " backward" : "", dnnl_status2str(st), ag__tshape(s, x));
}

/* Whether any of p's n floats is NaN: one vectorisable pass, so that oneDNN's results need a
 * lane-by-lane look only when something is NaN. */
static bool any_nan_f32(const float *p, int64_t n) {
    int bad = 0;
    for (int64_t i = 0; i < n; i++) bad |= p[i] != p[i];
    return bad;
}

/* Whether this float32 computation goes to oneDNN.  Automatically only softmax: oneDNN's
 * log_softmax is ~12x faster than the C kernel but its log is off by up to ~4e-6 absolute
 * (y ≈ -0.06 from a lane sum near 1), where the C kernel and PyTorch are within an ulp. */
static bool use_onednn(const ag_tensor *x, ag_lanes L, bool is_log) {
    if (x->dtype != AG_F32 || ag_numel(x) == 0 || backend == AG__SOFTMAX_REFERENCE || !ag_onednn_enabled()) return false;
    return backend == AG__SOFTMAX_ONEDNN || (!is_log && L.inner == 1 && ag_numel(x) >= ONEDNN_MIN_NUMEL);
}

/* ---- ops --------------------------------------------------------------------------------------- */
static ag_status softmax_backward(ag_tensor *out, ag_tensor *gout);
static ag_tensor *softmax_test_call(ag_tensor *const *in, int n, void *ctx);

#define SOFTMAX_CASES {{1, {AG_DIMS(3, 4)}}, {1, {AG_DIMS(2, 3, 4)}}, {1, {AG_DIMS0}}, {1, {AG_DIMS(5)}}}
/* y = exp(x - m) / Σ_d exp(x - m), m = max_d x;  dx = y·(dy - Σ_d dy·y) */
static const ag_op op_softmax = {"softmax", "SoftmaxBackward0", softmax_backward, AG_SAVES_OUT,
                                 "y = exp(x - m) / Σ_d exp(x - m), m = max_d x;  dx = y·(dy - Σ_d dy·y)",
                                 softmax_test_call, AG_DOMAIN_ANY, SOFTMAX_CASES, {0, 0}, 0, 0};
/* y = (x - m) - log Σ_d exp(x - m), m = max_d x;  dx = dy - exp(y)·Σ_d dy */
static const ag_op op_log_softmax = {"log_softmax", "LogSoftmaxBackward0", softmax_backward, AG_SAVES_OUT,
                                     "y = (x - m) - log Σ_d exp(x - m), m = max_d x;  dx = dy - exp(y)·Σ_d dy",
                                     softmax_test_call, AG_DOMAIN_ANY, SOFTMAX_CASES, {0, 0}, 0, 0};

static ag_tensor *softmax_apply(const ag_op *op, ag_tensor *x, int dim) {
    AG_CHECK_HANDLES(NULL, op->name, x);
    if (!x) return NULL;
    if (ag__check_float(op->name, x, NULL)) return NULL;
    int d = ag__tdim(op->name, dim, x);
    if (d < 0) return NULL;
    const bool is_log = op == &op_log_softmax;
    ag_lanes L = ag__lanes_of(x, d);
    ag_tensor *xc = ag__contig_or_copy(x);
    ag_tensor *y = xc ? ag__new(x->dtype, x->ndim, x->shape) : NULL;
    if (!y) {
        ag_release(xc);
        return NULL;
    }
    ag_status st = AG_OK;
    if (use_onednn(x, L, is_log)) {
        st = onednn_run(x, L, is_log, false, ag__ptr(xc), ag__ptr(y), NULL);
        if (!st && any_nan_f32((const float *)ag__ptr(y), ag_numel(y)))
            softmax_fwd_f32(ag__ptr(xc), ag__ptr(y), L, is_log, true);
    } else if (x->dtype == AG_F64) {
        softmax_fwd_f64(ag__ptr(xc), ag__ptr(y), L, is_log, false);
    } else {
        softmax_fwd_f32(ag__ptr(xc), ag__ptr(y), L, is_log, false);
    }
    ag_release(xc);
    if (st) return NULL;
    if (ag__needs_grad1(x)) {
        if (!ag__record(y, op, &x, 1)) return NULL;
        y->attr.i[0] = d;
    }
    return ag__check_finite(y, op->name);
}

/* The fused adjoints, from the output and dy alone. */
static ag_status softmax_backward(ag_tensor *out, ag_tensor *gout) {
    ag_tensor *x = out->in[0];
    const bool is_log = out->op == &op_log_softmax;
    ag_lanes L = ag__lanes_of(x, (int)out->attr.i[0]);
    ag_tensor *gx = ag__new_unowned(x->dtype, x->ndim, x->shape, false);
    if (!gx) return AG_ERR_NOMEM;
    if (use_onednn(x, L, is_log)) {
        ag_status st = onednn_run(x, L, is_log, true, ag__ptr(out), ag__ptr(gout), ag__ptr(gx));
        if (st) {
            ag_release(gx);
            return st;
        }
        if (any_nan_f32((const float *)ag__ptr(gx), ag_numel(gx)) || any_nan_f32((const float *)ag__ptr(out), ag_numel(out)))
            softmax_bwd_f32(ag__ptr(gx), ag__ptr(out), ag__ptr(gout), L, is_log, true);
    } else if (x->dtype == AG_F64) {
        softmax_bwd_f64(ag__ptr(gx), ag__ptr(out), ag__ptr(gout), L, is_log, false);
    } else {
        softmax_bwd_f32(ag__ptr(gx), ag__ptr(out), ag__ptr(gout), L, is_log, false);
    }
    return ag__accumulate(x, gx);
}

ag_tensor *ag_softmax(ag_tensor *x, int dim) { return softmax_apply(&op_softmax, x, dim); }
ag_tensor *ag_log_softmax(ag_tensor *x, int dim) { return softmax_apply(&op_log_softmax, x, dim); }

/* dim 1 for 3-d inputs, else dim -1. */
static ag_tensor *softmax_test_call(ag_tensor *const *in, int n, void *ctx) {
    (void)n;
    return softmax_apply(ctx, in[0], in[0]->ndim == 3 ? 1 : -1);
}

const ag_op *const ag__softmax_ops[] = {&op_softmax, &op_log_softmax, NULL};

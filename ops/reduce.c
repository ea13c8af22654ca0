/*
 * reduce.c - sum, mean, var, std, logsumexp, amax and amin over all elements
 * or a set of dims, with keepdim; and the counts any, all and count_nonzero.
 *
 * A reduction iterates over the input's shape with the output given stride 0
 * along the reduced dims.  The adjoints broadcast dy back over those dims.
 * Sums accumulate in float64 for both dtypes (core/sum.h) into a buffer of the
 * output's shape and are rounded once, so a float32 reduction along any dim is
 * within a float32 rounding or two of the exact result; var/std and logsumexp
 * finish in float64 too (a float32 std of values near 1e20 stays finite).
 */
#include <math.h>
#include <omp.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "core/iter.h"
#include "core/parallel.h"
#include "autograd/tape.h"
#include "ops/jvp.h"
#include "agrad/ops.h"
#include "core/sum.h"
#include "core/sqdev.h"
#include "core/memorder.h"
#include "ops/vexpf.h"
#include "core/simd_extreme.h"
#include "ops/extreme_rows.h"

/* Turns a dim list into a bit mask over x's dims (empty list: all dims). */
static int dims_mask(const char *op, const ag_tensor *x, int ndims, const int *dims, uint64_t *mask) {
    *mask = 0;
    if (ndims < 0 || (ndims > 0 && !dims)) return ag__fail(AG_ERR_ARG, "%s: invalid dim list", op);
    if (ndims == 0) {
        *mask = x->ndim ? (~(uint64_t)0 >> (64 - x->ndim)) : 0;
        return AG_OK;
    }
    uint64_t seen = 0; /* the dims named so far: a 0-d tensor's 0 and -1 both name dim 0 */
    for (int i = 0; i < ndims; i++) {
        int d = ag__dim(op, dims[i], x->ndim);
        if (d < 0) return AG_ERR_INDEX;
        if (seen >> d & 1) return ag__fail(AG_ERR_ARG, "%s: dim %d appears twice in the dim list", op, dims[i]);
        seen |= (uint64_t)1 << d;
    }
    *mask = x->ndim ? seen : 0;
    return AG_OK;
}

/* Geometry of the reduced result: kshape keeps reduced dims as 1; oshape drops them unless keepdim. */
static int reduced_shape(const ag_tensor *x, uint64_t mask, bool keepdim, int64_t *kshape, int64_t *oshape) {
    int on = 0;
    for (int d = 0; d < x->ndim; d++) {
        bool r = mask >> d & 1;
        kshape[d] = r ? 1 : x->shape[d];
        if (!r || keepdim) oshape[on++] = kshape[d];
    }
    return on;
}

/* Number of elements each output of x's reduction over mask combines. */
static int64_t reduced_count(const ag_tensor *x, uint64_t mask) {
    int64_t n = 1;
    for (int d = 0; d < x->ndim; d++)
        if (mask >> d & 1) n *= x->shape[d];
    return n;
}

/* y[k] = a[k] / div, or its square root if root, in float64 rounded once to T (y may be a): one
 * loop per case that vectorises (no division when div is 1: x / 1 is x), cloned for AVX-512; the
 * same operations per element as the scalar loop it replaces (sum over the middle dim of
 * [64, 64, 64], one thread: the scalar division was about a sixth of the forward). */
#define FINISH_KERNEL(NAME, T)                                                                   \
    AG_VEC_CLONES_512 static void NAME(T *y, const double *a, int64_t n, double div, bool root) { \
        if (root)                                                                                \
            for (int64_t k = 0; k < n; k++) y[k] = (T)sqrt(a[k] / div);                          \
        else if (div == 1)                                                                       \
            for (int64_t k = 0; k < n; k++) y[k] = (T)a[k];                                      \
        else                                                                                     \
            for (int64_t k = 0; k < n; k++) y[k] = (T)(a[k] / div);                              \
    }
FINISH_KERNEL(finish_f32, float)
FINISH_KERNEL(finish_f64, double)

/* y = acc / div, or its square root if root, computed in float64 and rounded once to y's
 * dtype; acc is float64 with y's elements (y itself when y is float64). */
static void finish(ag_tensor *y, const ag_tensor *acc, double div, bool root) {
    const double *a = (const double *)ag__ptr(acc);
    const int64_t n = ag__numel(y->ndim, y->shape);
    if (y->dtype == AG_F64) finish_f64((double *)ag__ptr(y), a, n, div, root);
    else finish_f32((float *)ag__ptr(y), a, n, div, root);
}

/* A stack header giving out (contiguous) the keepdim geometry of x's reduction: its
 * geometry, dtype and storage, what the iterator and the sums read (the flags are
 * zeroed, the node fields left unset: it is never recorded or released). */
static void keepdim_view(ag_tensor *view, const ag_tensor *out, const ag_tensor *x, uint64_t mask) {
    memset(view, 0, offsetof(ag_tensor, shape));
    view->ndim = x->ndim;
    view->dtype = out->dtype;
    view->storage = out->storage;
    view->offset = out->offset;
    for (int d = 0; d < x->ndim; d++) view->shape[d] = (mask >> d & 1) ? 1 : x->shape[d];
    ag__contiguous_strides(view->ndim, view->shape, view->stride);
}

/* ---- sum and mean ----------------------------------------------------------------------------- */
/* out[i] = scale * in[i] (in broadcast) */
#define SCALE_KERNEL(NAME, T)                                                        \
    static void NAME(char **p, const int64_t *s, int64_t n, void *ctx) {            \
        const T scale = (T) * (const double *)ctx;                                   \
        for (int64_t i = 0; i < n; i++) *(T *)(p[0] + i * s[0]) = scale * *(const T *)(p[1] + i * s[1]); \
    }
SCALE_KERNEL(scale_f32, float)
SCALE_KERNEL(scale_f64, double)

static ag_status sum_backward(ag_tensor *out, ag_tensor *gout);
static ag_tensor *sum_jvp(ag_tensor *out, ag_tensor *const *tin);
static ag_tensor *var_jvp(ag_tensor *out, ag_tensor *const *tin);
static ag_tensor *logsumexp_jvp(ag_tensor *out, ag_tensor *const *tin);
static ag_tensor *amax_jvp(ag_tensor *out, ag_tensor *const *tin);
static ag_status var_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin);
static ag_status logsumexp_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin);
static ag_status amax_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin);
/* y = Σ x over dims;  dx = broadcast(dy) */
static ag_status sum_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin);
static const ag_op op_sum = {.name = "sum", .grad_fn = "SumBackward1", .backward = sum_backward,
                             .math = "y = Σ_dims x;  dx = expand(dy)",
                             .backward_graph = sum_backward_graph, .jvp = sum_jvp,
                             .tangent = "ẏ = Σ_dims ẋ"};
/* y = Σ x / n over dims;  dx = broadcast(dy) / n */
static const ag_op op_mean = {.name = "mean", .grad_fn = "MeanBackward1", .backward = sum_backward,
                              .math = "y = Σ_dims x / n;  dx = expand(dy) / n",
                              .backward_graph = sum_backward_graph, .jvp = sum_jvp,
                              .tangent = "ẏ = Σ_dims ẋ / n"};

/* acc (float64, zeroed, of x's shape with the summed dims 1, contiguous) = Σ x over those dims where x is
 * a permutation of a contiguous block (transposed, permuted) and acc has several elements: x and acc seen
 * in x's memory order (dims by stride, size-1 dims last), summed there by the contiguous paths into a
 * float64 scratch of that order, copied back; the additions are in the memory layout's order (as
 * prod_dim's), not the logical one's.  False (nothing done) for any other x, or out of memory. */
static bool sum_memory_order(ag_tensor *acc, const ag_tensor *x) {
    const int n = x->ndim;
    int perm[AG_MAX_DIMS];
    if (ag__numel(acc->ndim, acc->shape) <= 1 || !ag__memory_order(x, perm)) return false;
    ag_tensor xv = *x;
    int64_t tshape[AG_MAX_DIMS];
    for (int i = 0; i < n; i++) xv.shape[i] = x->shape[perm[i]], xv.stride[i] = x->stride[perm[i]], tshape[i] = acc->shape[perm[i]];
    ag_tensor *tmp = ag__new_unowned(AG_F64, n, tshape, true);
    if (!tmp) return false;
    if (!ag__sum_slabs_into(tmp, &xv)) ag__sum_into(tmp, &xv);
    ag__from_memory_order(acc, tmp, perm);
    ag_release(tmp);
    return true;
}

/* acc (as sum_memory_order's) = Σ x over those dims where x is sliced (gaps between its elements, no
 * stride 0) and keeps the dim of its smallest stride: x copied contiguous, then summed by the contiguous
 * paths (slabs, columns, rows), the additions of the copy.  The iterator walked each output's summed dim
 * a stride apart, one scalar chain an output (x[1:-1, 3:] of [1026, 1027] over dim 0, one thread, 0.7-1.1
 * ms; PyTorch 90 us); the copy reads x along its rows.  False (nothing done) for any other x (dense,
 * expanded, summed along its smallest stride: the iterator's rows are unit-step there), or out of memory. */
static bool sum_of_copy(ag_tensor *acc, const ag_tensor *x, uint64_t mask) {
    const int n = x->ndim;
    if (n < 2 || ag__numel(acc->ndim, acc->shape) <= 1 || ag__numel(n, x->shape) < 2) return false;
    int perm[AG_MAX_DIMS];
    if (ag__contig(x) || ag__memory_order(x, perm)) return false; /* dense: read in place by the other paths */
    int inner = -1;
    for (int d = 0; d < n; d++) {
        if (x->shape[d] == 1) continue;
        if (x->stride[d] == 0) return false;
        if (inner < 0 || llabs(x->stride[d]) < llabs(x->stride[inner])) inner = d;
    }
    if (inner < 0 || (mask >> inner & 1)) return false;
    ag_tensor *xc = ag__new_unowned(x->dtype, n, x->shape, false);
    if (!xc) return false;
    ag__copy_into(xc, x);
    if (!ag__sum_slabs_into(acc, xc)) ag__sum_into(acc, xc);
    ag_release(xc);
    return true;
}

/* acc[k] += L·x[i] for float32 x, in float64: exact (L < 2^29, x has 24 significant bits), so the
 * same value as AG_SUM8 of L copies of x[i] (ag__sum_run of a stride-0 run, every partial sum j·x[i]
 * exact; a zero's sign is lost either way in acc, which starts at +0).  A reduced run (s[0] == 0) is one
 * chain, its terms added in order, as the iterator's calls added them one a call. */
static void scaled_add_f32(char **p, const int64_t *s, int64_t n, void *ctx) {
    const double L = *(const double *)ctx;
    if (s[0] == 0) {
        double t = *(double *)p[0];
        for (int64_t i = 0; i < n; i++) t += L * (double)*(const float *)(p[1] + i * s[1]);
        *(double *)p[0] = t;
    } else if (s[0] == (int64_t)sizeof(double) && s[1] == (int64_t)sizeof(float)) {
        double *restrict a = (double *)p[0];
        const float *restrict x = (const float *)p[1];
        for (int64_t i = 0; i < n; i++) a[i] += L * (double)x[i];
    } else {
        for (int64_t i = 0; i < n; i++) *(double *)(p[0] + i * s[0]) += L * (double)*(const float *)(p[1] + i * s[1]);
    }
}

/* acc (as sum_memory_order's, or one element) = Σ x over the masked dims where x is float32 and expanded
 * along its last reduced dims (stride 0: a broadcast view).  ag__sum_into's walk puts the kept dims outer,
 * the reduced dims inner in their order, merged: those trailing stride-0 dims are its inner run of L
 * copies of one value v, summed by AG_SUM8 into exactly L·v (see scaled_add_f32), then added to acc one
 * call after another in the order of the other reduced dims.  Here x without those dims is walked
 * (kept dims as they come, each output's terms in the same order) adding L·v: the same additions, no
 * L-fold reads (x [1024, 1] expanded to [1024, 1024] over dim 1, one thread: the walk read each value
 * 1024 times).  False (nothing done) for any other x. */
static bool sum_expanded(ag_tensor *acc, const ag_tensor *x, uint64_t mask) {
    if (x->dtype != AG_F32 || ag__numel(x->ndim, x->shape) <= 0) return false;
    ag_tensor xv = *x;
    int64_t L = 1;
    bool more = false; /* reduced dims of size > 1 left outside the run */
    for (int d = x->ndim - 1; d >= 0; d--) {
        if (!(mask >> d & 1) || x->shape[d] == 1) continue;
        if (x->stride[d] != 0) {
            more = true;
            break;
        }
        L *= x->shape[d];
        if (L >= ((int64_t)1 << 29)) return false;
        xv.shape[d] = 1;
    }
    if (L < 2) return false;
    double Ld = (double)L;
    ag_iter it;
    ag__iter_init(&it, xv.ndim, xv.shape);
    ag__iter_add(&it, acc);
    ag__iter_add(&it, &xv);
    if (more) ag__iter_run(&it, scaled_add_f32, &Ld);
    else ag__iter_run_par(&it, scaled_add_f32, &Ld); /* a map: acc = 0 + L·v at distinct places */
    return true;
}

/* acc (as sum_memory_order's) = Σ x over the masked dims where x is expanded (stride 0) along kept dims:
 * the outputs along those dims are equal, each the iterator's walk of the same terms in the same order
 * (ag__sum_walk_into, which x's expansion sent it to), so the walk runs on x with those dims cut to one
 * into a float64 scratch, copied out along them (x [64, 1, 64, 64] expanded to [64, 64, 64, 64] summed
 * over dim 0, one thread: the walk made 64 times the same 4096 strided sums).  False (nothing done) for
 * any other x, or out of memory. */
static bool sum_kept_expanded(ag_tensor *acc, const ag_tensor *x, uint64_t mask) {
    ag_tensor xv = *x;
    int64_t ashape[AG_MAX_DIMS];
    bool any = false;
    for (int d = 0; d < x->ndim; d++) {
        ashape[d] = acc->shape[d];
        if (!(mask >> d & 1) && x->shape[d] > 1 && x->stride[d] == 0) any = true, xv.shape[d] = ashape[d] = 1;
    }
    if (!any || ag__numel(x->ndim, x->shape) <= 0) return false;
    ag_tensor *tmp = ag__new_unowned(AG_F64, x->ndim, ashape, true);
    if (!tmp) return false;
    ag__sum_walk_into(tmp, &xv);
    ag_tensor tv = *tmp; /* tmp expanded back along those dims */
    for (int d = 0; d < x->ndim; d++)
        if (tv.shape[d] != acc->shape[d]) tv.shape[d] = acc->shape[d], tv.stride[d] = 0;
    ag__copy_into(acc, &tv);
    ag_release(tmp);
    return true;
}

static ag_tensor *sum_mean(const ag_op *op, ag_tensor *x, int ndims, const int *dims, bool keepdim) {
    AG_CHECK_HANDLES(NULL, op->name, x);
    if (!x) return NULL;
    uint64_t mask;
    if (ag__check_float(op->name, x, NULL) || dims_mask(op->name, x, ndims, dims, &mask)) return NULL;
    int64_t kshape[AG_MAX_DIMS], oshape[AG_MAX_DIMS];
    int on = reduced_shape(x, mask, keepdim, kshape, oshape);
    ag_tensor *y = ag__new_zeros(x->dtype, on, oshape);
    /* A float32 result of one element (ag_sum, ag_mean) accumulates in a double on the
     * stack: no float64 tensor to make for the commonest reduction of a training step. */
    double one = 0;
    ag_storage one_storage = {.data = &one, .nbytes = sizeof one};
    ag_tensor one_acc;
    ag_tensor *acc = NULL;
    if (y && y->dtype != AG_F64 && ag__numel(y->ndim, y->shape) == 1) {
        memset(&one_acc, 0, offsetof(ag_tensor, shape)); /* read only as keepdim_view's out and by finish */
        one_acc.dtype = AG_F64;
        one_acc.storage = &one_storage;
        acc = &one_acc;
    } else if (y && !(acc = ag__accumulator_for(y))) {
        ag__discard(y);
    }
    if (!acc) return NULL;
    ag_tensor kv;
    keepdim_view(&kv, acc, x, mask);
    /* several runs of dims: slab by slab (core/sqdev.c); a permuted x: in its memory order.  A one-element
     * result is one run of every dim, which neither takes: the tiny steps' sums skip their checks. */
    if (sum_expanded(&kv, x, mask) || sum_kept_expanded(&kv, x, mask)) {
    } else if (acc == &one_acc || (!ag__sum_slabs_into(&kv, x) && !sum_memory_order(&kv, x) && !sum_of_copy(&kv, x, mask)))
        ag__sum_into(&kv, x);
    /* the mean of nothing is 0/0 = NaN, as in PyTorch */
    const int64_t count = reduced_count(x, mask);
    finish(y, acc, op == &op_mean ? (double)count : 1.0, false);
    if (acc != &one_acc) ag_release(acc);
    if (ag__needs_grad1(x)) {
        if (!ag__record(y, op, &x, 1)) return NULL;
        y->attr.i[0] = (int64_t)mask;
        y->attr.a = op == &op_mean ? 1.0 / (double)count : 1.0;
    }
    return ag__check_finite(y, op->name);
}

static ag_status sum_backward(ag_tensor *out, ag_tensor *gout) {
    ag_tensor *x = out->in[0];
    uint64_t mask = (uint64_t)out->attr.i[0];
    /* dy (scaled by 1/n first for mean, on the small side) seen through x's shape with
     * stride 0 along the summed dims: the broadcast is a view, never materialised, and
     * the consumer's adjoint reads it with stride 0 (AG_GOUT_ANY_STRIDES) */
    ag_tensor *g = ag_retain(gout);
    if (out->attr.a != 1.0) {
        ag_release(g);
        g = ag__new_unowned(gout->dtype, gout->ndim, gout->shape, false);
        if (!g) return AG_ERR_NOMEM;
        char *p[2] = {ag__ptr(g), ag__ptr(gout)};
        ag__par_run_flat(x->dtype == AG_F64 ? scale_f64 : scale_f32, &out->attr.a, ag__numel(g->ndim, g->shape), 2, p,
                         (int64_t)ag__esize(g->dtype));
    }
    ag_tensor kv;
    keepdim_view(&kv, g, x, mask);
    int64_t stride[AG_MAX_DIMS];
    for (int d = 0; d < x->ndim; d++) stride[d] = (mask >> d & 1) ? 0 : kv.stride[d];
    ag_tensor *gx = ag__new_view_unowned(g, x->ndim, x->shape, stride, g->offset);
    ag_release(g);
    if (!gx) return AG_ERR_NOMEM;
    return ag__accumulate(x, gx);
}

/* dx = expand(dy with the summed dims kept as 1) · (1 or 1/n), in agrad ops. */
static ag_status sum_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin) {
    ag_tensor *x = out->in[0];
    uint64_t mask = (uint64_t)out->attr.i[0];
    ag_shape kshape = {x->ndim, {0}}, xshape = ag_shape_of(x);
    for (int d = 0; d < x->ndim; d++) kshape.dim[d] = (mask >> d & 1) ? 1 : x->shape[d];
    ag_tensor *g = ag_expand(ag_reshape(gout, kshape), xshape);
    gin[0] = g && out->attr.a != 1.0 ? ag_mul_scalar(g, out->attr.a) : g;
    return gin[0] ? AG_OK : ag_last_status();
}

ag_tensor *ag_sum(ag_tensor *x) { return sum_mean(&op_sum, x, 0, NULL, false); }
ag_tensor *ag_mean(ag_tensor *x) { return sum_mean(&op_mean, x, 0, NULL, false); }
ag_tensor *ag_sum_dims(ag_tensor *x, int ndims, const int *dims, bool keepdim) {
    if (x && ndims == 0) return ag__fail_null(AG_ERR_ARG, "sum: empty dim list (use ag_sum for all dims)");
    return sum_mean(&op_sum, x, ndims, dims, keepdim);
}
ag_tensor *ag_mean_dims(ag_tensor *x, int ndims, const int *dims, bool keepdim) {
    if (x && ndims == 0) return ag__fail_null(AG_ERR_ARG, "mean: empty dim list (use ag_mean for all dims)");
    return sum_mean(&op_mean, x, ndims, dims, keepdim);
}
ag_tensor *ag_sum_dim(ag_tensor *x, int dim, bool keepdim) { return ag_sum_dims(x, 1, &dim, keepdim); }
ag_tensor *ag_mean_dim(ag_tensor *x, int dim, bool keepdim) { return ag_mean_dims(x, 1, &dim, keepdim); }

/* ---- var and std ------------------------------------------------------------------------------ */
static inline double sq(double d) { return d * d; }

/* p[0] += (p[1] - p[2])² with p[0] (the float64 sum) and p[2] (the float64 mean) reduced */
#define SQDEV_KERNEL(NAME, T)                                                        \
    static void NAME(char **p, const int64_t *s, int64_t n, void *ctx) {            \
        (void)ctx;                                                                   \
        if (s[0] == 0 && s[2] == 0) {                                                \
            const double m = *(const double *)p[2];                                  \
            const T *x = (const T *)p[1];                                            \
            double acc;                                                              \
            if (s[1] == (int64_t)sizeof(T)) AG_SUM8(acc, n, i, sq((double)x[i] - m)); \
            else AG_SUM8(acc, n, i, sq((double)*(const T *)(p[1] + i * s[1]) - m)); \
            *(double *)p[0] += acc;                                                  \
        } else {                                                                     \
            for (int64_t i = 0; i < n; i++) {                                        \
                const double d = (double)*(const T *)(p[1] + i * s[1]) - *(const double *)(p[2] + i * s[2]); \
                *(double *)(p[0] + i * s[0]) += d * d;                               \
            }                                                                        \
        }                                                                            \
    }
SQDEV_KERNEL(sqdev_f32, float)
SQDEV_KERNEL(sqdev_f64, double)

/* How the var/std adjoint scales: std divides dy by 2·y first (0 where y = 0); `degenerate`
 * is PyTorch's all-element case with n - correction <= 0 (dx = dy·(x = mean ? NaN : inf)). */
typedef struct var_bwd_ctx {
    double scale;
    bool is_std, degenerate;
} var_bwd_ctx;

/* p: gx, x, mean (float64), dy, y (the last three reduced): gx = scale·dy'·(x - mean) */
#define VAR_BWD_KERNEL(NAME, T)                                                      \
    static void NAME(char **p, const int64_t *s, int64_t n, void *ctx) {            \
        const var_bwd_ctx *c = ctx;                                                  \
        const T scale = (T)c->scale;                                                 \
        for (int64_t i = 0; i < n; i++) {                                            \
            const T x = *(const T *)(p[1] + i * s[1]);                               \
            const double m = *(const double *)(p[2] + i * s[2]);                     \
            const T dy = *(const T *)(p[3] + i * s[3]), y = *(const T *)(p[4] + i * s[4]); \
            const T g = c->is_std ? (y == 0 ? (T)0 : dy / (y * 2)) : dy;             \
            *(T *)(p[0] + i * s[0]) = c->degenerate ? g * (x == m ? (T)NAN : (T)INFINITY) : scale * g * (T)(x - m); \
        }                                                                            \
    }
VAR_BWD_KERNEL(var_bwd_f32, float)
VAR_BWD_KERNEL(var_bwd_f64, double)

static ag_status var_backward(ag_tensor *out, ag_tensor *gout);

/* sg[k] = scale·dy'[k] in T (dy' = dy, or dy / 2y, 0 where y = 0): VAR_BWD_KERNEL's left factor */
#define VAR_SCALE_KERNEL(NAME, T)                                                                  \
    static void NAME(T *sg, const T *dy, const T *y, int64_t n, const var_bwd_ctx *c) {            \
        const T scale = (T)c->scale;                                                               \
        for (int64_t k = 0; k < n; k++) sg[k] = scale * (c->is_std ? (y[k] == 0 ? (T)0 : dy[k] / (y[k] * 2)) : dy[k]); \
    }
VAR_SCALE_KERNEL(var_scale_f32, float)
VAR_SCALE_KERNEL(var_scale_f64, double)

/* gx = sg·(x - mean) by core/sqdev.c's row kernels where x's geometry allows (the same bits as
 * VAR_BWD_KERNEL); false (nothing done) otherwise or out of memory.  gv, yv: dy and y, keepdim. */
static bool var_grad_rows(ag_tensor *gx, const ag_tensor *x, const ag_tensor *mean, const ag_tensor *gv, const ag_tensor *yv,
                          const var_bwd_ctx *c) {
    ag_tensor *sg = ag__new_unowned(x->dtype, gv->ndim, gv->shape, false);
    if (!sg) return false;
    const int64_t k = ag__numel(gv->ndim, gv->shape);
    if (x->dtype == AG_F64) var_scale_f64((double *)ag__ptr(sg), (const double *)ag__ptr(gv), (const double *)ag__ptr(yv), k, c);
    else var_scale_f32((float *)ag__ptr(sg), (const float *)ag__ptr(gv), (const float *)ag__ptr(yv), k, c);
    const bool done = ag__var_grad_into(gx, x, mean, sg);
    ag_release(sg);
    return done;
}

/* y = Σ (x - mean)² / (n - c);  dx = dy·2(x - mean) / (n - c) */
static const ag_op op_var = {.name = "var", .grad_fn = "VarBackward0", .backward = var_backward, .saves = AG_SAVES_IN0,
                             .math = "y = Σ_dims (x - mean)² / (n - correction);  "
                                     "dx = expand(dy)·2(x - mean) / (n - correction)",
                             .backward_graph = var_backward_graph, .jvp = var_jvp,
                             .tangent = "ẏ = Σ_dims 2(x - mean)·ẋ / (n - correction)"};
/* y = √var(x);  dx = var's dx with dy / (2y) in place of dy (0 where y = 0) */
static const ag_op op_std = {.name = "std", .grad_fn = "StdBackward0", .backward = var_backward,
                             .saves = AG_SAVES_IN0 | AG_SAVES_OUT,
                             .math = "y = √(Σ_dims (x - mean)² / (n - correction));  "
                                     "dx = expand(dy / 2y)·2(x - mean) / (n - correction)",
                             .backward_graph = var_backward_graph, .jvp = var_jvp,
                             .tangent = "ẏ = Σ_dims (x - mean)·ẋ / ((n - correction)·y), 0 where y = 0"};

/* y = var (op_var) or std (op_std) of x over mask, not recorded; *meanp = the mean it used (float64, x's
 * shape with the reduced dims 1, owned by the caller).  Two passes in float64: the mean, then the
 * squared deviations from it. */
static ag_tensor *var_forward(const ag_op *op, ag_tensor *x, uint64_t mask, int correction, bool keepdim,
                              ag_tensor **meanp) {
    int64_t kshape[AG_MAX_DIMS], oshape[AG_MAX_DIMS];
    int on = reduced_shape(x, mask, keepdim, kshape, oshape);
    const int64_t count = reduced_count(x, mask);
    ag_tensor *y = ag__new_zeros(x->dtype, on, oshape);
    ag_tensor *mean = y ? ag__new_unowned(AG_F64, x->ndim, kshape, true) : NULL;
    ag_tensor *acc = mean ? ag__accumulator_for(y) : NULL;
    *meanp = NULL;
    if (!acc) {
        ag_release(mean);
        ag__discard(y);
        return NULL;
    }
    /* mean = Σ x / n (0/0 = NaN for an empty reduction, as PyTorch) */
    if (!ag__sum_slabs_into(mean, x)) ag__sum_into(mean, x); /* several runs of dims: slab by slab (core/sqdev.c) */
    finish(mean, mean, (double)count, false);
    /* y = Σ (x - mean)² / max(n - correction, 0), as PyTorch's Welford projection */
    ag_tensor kv;
    keepdim_view(&kv, acc, x, mask);
    if (!ag__sqdev_into(&kv, x, mean)) { /* x in rows where it can (core/sqdev.c), else the iterator */
        ag_iter it;
        ag__iter_init(&it, x->ndim, x->shape);
        ag__iter_add_reduced(&it, &kv, mask);
        ag__iter_add(&it, x);
        ag__iter_add_reduced(&it, mean, mask);
        ag__iter_run_sum(&it, x->dtype == AG_F64 ? sqdev_f64 : sqdev_f32, NULL);
    }
    const int64_t divisor = count > correction ? count - correction : 0;
    finish(y, acc, (double)divisor, op == &op_std);
    ag_release(acc);
    *meanp = mean;
    return y;
}

typedef struct {
    const ag_op *op;
    int correction;
    ag_tensor *mean; /* var_forward's, of the view */
} var_ctx;

/* var_forward of x's memory-order view (ag__reduce_in_memory_order's fn) */
static ag_tensor *var_of_view(ag_tensor *xv, int ndims, const int *dims, void *ctx) {
    var_ctx *c = ctx;
    uint64_t mask = 0;
    for (int i = 0; i < ndims; i++) mask |= (uint64_t)1 << dims[i];
    return var_forward(c->op, xv, mask, c->correction, true, &c->mean);
}

/* var (op_var) or std (op_std) of x over dims (all dims when ndims == 0: PyTorch's dim=None).  A
 * permuted x (transposed, permuted) in its memory order, its mean copied back for the adjoint. */
static ag_tensor *var_std(const ag_op *op, ag_tensor *x, int ndims, const int *dims, int correction, bool keepdim) {
    AG_CHECK_HANDLES(NULL, op->name, x);
    if (!x) return NULL;
    uint64_t mask;
    if (ag__check_float(op->name, x, NULL) || dims_mask(op->name, x, ndims, dims, &mask)) return NULL;
    const int64_t count = reduced_count(x, mask);
    ag_tensor *mean = NULL, *y;
    bool tried;
    var_ctx c = {op, correction, NULL};
    int perm[AG_MAX_DIMS];
    if ((y = ag__reduce_in_memory_order(x, mask, keepdim, var_of_view, &c, &tried)) != NULL) {
        if (ag__needs_grad1(x) && ag__memory_order(x, perm)) { /* the view's mean in x's dim order */
            int64_t kshape[AG_MAX_DIMS], oshape[AG_MAX_DIMS];
            reduced_shape(x, mask, true, kshape, oshape);
            if ((mean = ag__new_unowned(AG_F64, x->ndim, kshape, false)) != NULL) ag__from_memory_order(mean, c.mean, perm);
        }
        ag_release(c.mean);
        if (ag__needs_grad1(x) && !mean) {
            ag__discard(y);
            return ag__fail_null(AG_ERR_NOMEM, "%s: out of memory", op->name);
        }
    } else if (tried || !(y = var_forward(op, x, mask, correction, keepdim, &mean))) {
        return NULL;
    }
    y = ag__record_saved(y, op, &x, 1, mean); /* the node owns the mean */
    if (y && y->op) {
        y->attr.i[0] = (int64_t)mask;
        y->attr.i[1] = count - correction;      /* degrees of freedom */
        y->attr.i[2] = ndims == 0 || x->ndim == 0; /* PyTorch's all-element path */
    }
    return ag__check_finite(y, op->name);
}

/* dx = 2·dy'·(x - mean) / (n - correction), dy' = dy (var) or dy / 2y (std), as PyTorch's var_backward. */
static ag_status var_backward(ag_tensor *out, ag_tensor *gout) {
    ag_tensor *x = out->in[0], *mean = out->saved;
    uint64_t mask = (uint64_t)out->attr.i[0];
    const int64_t dof = out->attr.i[1];
    var_bwd_ctx c = {2.0 / (double)dof, out->op == &op_std, out->attr.i[2] && dof <= 0};
    ag_tensor *gx = ag__new_unowned(x->dtype, x->ndim, x->shape, false);
    if (!gx) return AG_ERR_NOMEM;
    ag_tensor gv, yv;
    keepdim_view(&gv, gout, x, mask);
    keepdim_view(&yv, out, x, mask);
    if (!c.degenerate && var_grad_rows(gx, x, mean, &gv, &yv, &c)) return ag__accumulate(x, gx);
    ag_iter it;
    ag__iter_init(&it, x->ndim, x->shape);
    ag__iter_add(&it, gx);
    ag__iter_add(&it, x);
    ag__iter_add_reduced(&it, mean, mask);
    ag__iter_add_reduced(&it, &gv, mask);
    ag__iter_add_reduced(&it, &yv, mask);
    ag__iter_run(&it, x->dtype == AG_F64 ? var_bwd_f64 : var_bwd_f32, &c);
    return ag__accumulate(x, gx);
}

ag_tensor *ag_var(ag_tensor *x, int correction) { return var_std(&op_var, x, 0, NULL, correction, false); }
ag_tensor *ag_std(ag_tensor *x, int correction) { return var_std(&op_std, x, 0, NULL, correction, false); }
ag_tensor *ag_var_dims(ag_tensor *x, int ndims, const int *dims, int correction, bool keepdim) {
    if (x && ndims == 0) return ag__fail_null(AG_ERR_ARG, "var: empty dim list (use ag_var for all dims)");
    return var_std(&op_var, x, ndims, dims, correction, keepdim);
}
ag_tensor *ag_std_dims(ag_tensor *x, int ndims, const int *dims, int correction, bool keepdim) {
    if (x && ndims == 0) return ag__fail_null(AG_ERR_ARG, "std: empty dim list (use ag_std for all dims)");
    return var_std(&op_std, x, ndims, dims, correction, keepdim);
}

/* ---- logsumexp -------------------------------------------------------------------------------- */
/* p[0] (float64) = max(p[0], p[1]) (BEATS >) or min (<) with p[0] reduced; NaN wins.  A
 * contiguous run into one output is a vectorised scan in EXTREME_LANES running extremes (lane k
 * takes the elements k mod EXTREME_LANES, several vectors of them), each a plain select (a vmaxps),
 * the NaNs caught apart in EXTREME_LANES lanes of their own (the last NaN of each; off the
 * extremes' chain: amax of [512, 512] float32, one thread, 16.6 -> 11 us, PyTorch 15.1, where the
 * NaN test in each select made the chain compare, masked compare, blend), combined at the end, a
 * NaN winning: with one vector accumulator (omp simd
 * reduction) the scan was bound by the latency of its compare and blend (amax of [512, 512]
 * float32, one thread: 57.6 us, PyTorch 25).  An extreme is exact, so the lanes change no value
 * (which of two equal zeros comes back aside).  A contiguous run into as many outputs (a column
 * reduction) is a vectorisable select: amax of [4096, 4096] float32 on one thread along dim 1
 * 13.7 -> 3.0 ms, along dim 0 14.9 -> 9.9 ms (PyTorch 3.3 and 6.6); logsumexp's max pass is this
 * kernel too.  Cloned for AVX-512 too (the lanes are four vectors instead of eight, the compare and
 * blend half the instructions): amax of [444, 592] float32 in L2, one thread, 29-50 -> 16-18 us. */
#define AG_PRAGMA(x) _Pragma(#x)
#define EXTREME_LANES 64
_Static_assert(EXTREME_LANES == 64, "EXTREME_KERNEL's tree halves 64 lanes");
/* dst[k] = the extreme of src[k] and src[k + w] (a NaN wins), dn[k] = a NaN of sn[k], sn[k + w] if any, k < w */
#define EXTREME_HALVE(T, BEATS_, dst, dn, src, sn, w)                                \
    for (int k = 0; k < (w); k++) {                                                  \
        const T a_ = (src)[k + (w)], b_ = (src)[k], q_ = (sn)[k + (w)];              \
        (dst)[k] = BEATS_(a_, b_) || a_ != a_ ? a_ : b_;                             \
        (dn)[k] = q_ != q_ ? q_ : (sn)[k];                                           \
    }
#define EXTREME_KERNEL(NAME, T, BEATS_)                                              \
    AG_VEC_CLONES_512 static void NAME(char **p, const int64_t *s, int64_t n, void *ctx) { \
        (void)ctx;                                                                   \
        if (s[0] == 0 && s[1] == (int64_t)sizeof(T) && n > 0) {                      \
            const T *restrict x = (const T *)p[1];                                   \
            T lane[EXTREME_LANES], nan[EXTREME_LANES], e = x[0];                     \
            for (int k = 0; k < EXTREME_LANES; k++) lane[k] = x[0], nan[k] = 0;      \
            int64_t i = 0;                                                           \
            for (; i + EXTREME_LANES <= n; i += EXTREME_LANES)                       \
                for (int k = 0; k < EXTREME_LANES; k++) {                            \
                    const T v = x[i + k];                                            \
                    lane[k] = BEATS_(v, lane[k]) ? v : lane[k];                      \
                    nan[k] = v != v ? v : nan[k];                                    \
                }                                                                    \
            for (; i < n; i++) e = BEATS_(x[i], e) || x[i] != x[i] ? x[i] : e;       \
            T l32[32], l16[16], l8[8], l4[4], l2[2], l1[1]; /* the lanes halved in a tree, */ \
            T n32[32], n16[16], n8[8], n4[4], n2[2], n1[1]; /* each level its own array (it vectorises) */ \
            EXTREME_HALVE(T, BEATS_, l32, n32, lane, nan, 32);                       \
            EXTREME_HALVE(T, BEATS_, l16, n16, l32, n32, 16);                        \
            EXTREME_HALVE(T, BEATS_, l8, n8, l16, n16, 8);                           \
            EXTREME_HALVE(T, BEATS_, l4, n4, l8, n8, 4);                             \
            EXTREME_HALVE(T, BEATS_, l2, n2, l4, n4, 2);                             \
            EXTREME_HALVE(T, BEATS_, l1, n1, l2, n2, 1);                             \
            e = BEATS_(l1[0], e) || l1[0] != l1[0] ? l1[0] : e;                      \
            e = n1[0] != n1[0] ? n1[0] : e;                                          \
            double *m = (double *)p[0];                                              \
            const double v = e != e ? (double)NAN : (double)e;                       \
            if (BEATS_(v, *m) || isnan(v)) *m = isnan(*m) ? *m : v;                  \
            return;                                                                  \
        }                                                                            \
        if (s[0] == (int64_t)sizeof(double) && s[1] == (int64_t)sizeof(T)) {         \
            double *restrict m = (double *)p[0];                                     \
            const T *restrict x = (const T *)p[1];                                   \
            for (int64_t i = 0; i < n; i++) {                                        \
                const double v = x[i], c = m[i];                                     \
                m[i] = (BEATS_(v, c) || v != v) && c == c ? v : c;                   \
            }                                                                        \
            return;                                                                  \
        }                                                                            \
        for (int64_t i = 0; i < n; i++) {                                            \
            double *m = (double *)(p[0] + i * s[0]);                                 \
            const double v = *(const T *)(p[1] + i * s[1]);                          \
            if (BEATS_(v, *m) || isnan(v)) *m = isnan(*m) ? *m : v;                  \
        }                                                                            \
    }
#define GREATER(a, b) ((a) > (b))
#define LESS(a, b) ((a) < (b))
#define MAX_KERNEL(NAME, T) EXTREME_KERNEL(NAME, T, GREATER)
MAX_KERNEL(max_f32, float)
MAX_KERNEL(max_f64, double)

/* p[0] += exp(p[1] - p[2]) with p[0] (the float64 sum) and p[2] (the float64 max) reduced;
 * the difference is rounded to T (exact for float32: both are float32 values) and
 * exponentiated in T. */
#define SUMEXP_KERNEL(NAME, T, EXP)                                                  \
    static void NAME(char **p, const int64_t *s, int64_t n, void *ctx) {            \
        (void)ctx;                                                                   \
        if (s[0] == 0 && s[2] == 0) {                                                \
            const double m = *(const double *)p[2];                                  \
            double acc;                                                              \
            AG_SUM8(acc, n, i, EXP((T)(*(const T *)(p[1] + i * s[1]) - m)));         \
            *(double *)p[0] += acc;                                                  \
        } else {                                                                     \
            for (int64_t i = 0; i < n; i++)                                          \
                *(double *)(p[0] + i * s[0]) +=                                      \
                    EXP((T)(*(const T *)(p[1] + i * s[1]) - *(const double *)(p[2] + i * s[2]))); \
        }                                                                            \
    }
SUMEXP_KERNEL(sumexp_f32, float, expf)
SUMEXP_KERNEL(sumexp_f64, double, exp)

/* p: gx, x, y, dy (the last two reduced): gx = dy·exp(x - y) */
#define LSE_BWD_KERNEL(NAME, T, EXP)                                                 \
    static void NAME(char **p, const int64_t *s, int64_t n, void *ctx) {            \
        (void)ctx;                                                                   \
        for (int64_t i = 0; i < n; i++)                                              \
            *(T *)(p[0] + i * s[0]) = *(const T *)(p[3] + i * s[3]) *                \
                                      EXP(*(const T *)(p[1] + i * s[1]) - *(const T *)(p[2] + i * s[2])); \
    }
LSE_BWD_KERNEL(lse_bwd_f32, float, expf)
LSE_BWD_KERNEL(lse_bwd_f64, double, exp)

/* The fast path of a contiguous x reduced over one run of consecutive dims (one dim, or all):
 * lanes (core/iter.h) split over threads, each lane computed whole by one thread (the same bits
 * on any number of threads).  A row (inner 1) is a vectorised max with a NaN flag, then
 * Σ EXP(x - m) in float64 (AG_SUM8) in one more pass; lanes a stride inner apart are taken
 * LSE_COLS columns at a time, each pass over k reading a row of the block, so that both the
 * max and the sum vectorise over the columns.  EXP is vexpf (within 1 ulp of expf) for float32,
 * libm's exp for float64.  A lane with a NaN gives NaN, an infinite max gives that infinity (all
 * -inf: log 0 = -inf), as the reference loops do.  The adjoint dx = dy·EXP(x - y) walks the same
 * lanes; a lane whose y is not finite (a NaN or an inf in it) takes libm's exp, whose NaN and inf
 * results are the reference's.  [1000, 1000] float32 forward + backward on one thread: along dim 0
 * 5.3 -> 1.5 ms, along dim 1 5.0 -> 1.4 ms (PyTorch 2.5 and 2.0).  The column kernels (lse_cols,
 * lse_bwd_cols) are bound by vexpf's arithmetic, so they have an AVX-512 clone too (AG_VEC_CLONES_512:
 * the same C, no contraction, the same bits): [64, 64, 64] along dim 1, one thread, forward 228 -> 140
 * us (PyTorch 192; docs/benchmarks.md, session 19).  So do the row kernels (lse_rows, lse_bwd_rows,
 * lse_blocks), a float32 row's exponentials made a chunk at a time (LSE_SUM8_CHUNKED: AG_SUM8's
 * loop vectorised them eight at a time), the same bits: [512, 512] along dim 1, one thread, forward
 * 220 -> 112 us, forward + backward 370 -> 190 (PyTorch 170 and 367; session 20). */
#define LSE_COLS 512
/* Rows longer than LSE_BLOCK are taken in blocks of LSE_BLOCK (lse_long_rows): logsumexp over all
 * dims of a large x is one row, which ran on one thread, reading x twice from memory. */
#define LSE_BLOCK ((int64_t)1 << 15)
/* Rows of at most LSE_SHORT take lse_short_rows, LSE_LANES at a time (at 16 and more, one row at a time
 * was faster: [16384, 16] 0.58 against 0.71 ms) */
#define LSE_SHORT 15
#define LSE_LANES 8

/* Whether mask marks a nonempty run of consecutive dims of x; then *L is x's lanes over them. */
static bool run_lanes(const ag_tensor *x, uint64_t mask, ag_lanes *L) {
    if (!mask) return false;
    int a = __builtin_ctzll(mask), b = 63 - __builtin_clzll(mask);
    if (mask >> a != (~(uint64_t)0 >> (63 - (b - a)))) return false;
    *L = (ag_lanes){1, 1, 1};
    for (int d = 0; d < x->ndim; d++) {
        if (d < a) L->outer *= x->shape[d];
        else if (d <= b) L->n *= x->shape[d];
        else L->inner *= x->shape[d];
    }
    return true;
}

/* res = AG_SUM8(res, n, I, (double)(TERM)) for a TERM of type T, the same bits (accumulator k takes
 * the terms k mod 8 of the whole 8-blocks in the same order, then the tail), with the terms made
 * LSE_CHUNK at a time into a buffer first: there the float32 exponentials vectorise on their own
 * (sixteen a vector in the x86-64-v4 clone, where AG_SUM8's loop made eight at a time to widen them
 * into its eight float64 accumulators), and the sum loop reads them back from L1. */
#define LSE_CHUNK 256
#define LSE_SUM8_CHUNKED(res, T, n, I, TERM)                                                     \
    do {                                                                                         \
        const int64_t n_ = (n), n8_ = n_ - n_ % 8;                                               \
        double acc_[8] = {0, 0, 0, 0, 0, 0, 0, 0}, tail_ = 0;                                    \
        for (int64_t c_ = 0; c_ < n8_; c_ += LSE_CHUNK) {                                        \
            const int64_t w_ = n8_ - c_ < LSE_CHUNK ? n8_ - c_ : LSE_CHUNK;                      \
            T e_[LSE_CHUNK];                                                                     \
            for (int64_t j_ = 0; j_ < w_; j_++) {                                                \
                const int64_t I = c_ + j_;                                                       \
                e_[j_] = (TERM);                                                                 \
            }                                                                                    \
            for (int64_t b_ = 0; b_ < w_; b_ += 8)                                               \
                for (int k_ = 0; k_ < 8; k_++) acc_[k_] += (double)e_[b_ + k_];                  \
        }                                                                                        \
        for (int64_t b_ = n8_; b_ < n_; b_++) {                                                  \
            const int64_t I = b_;                                                                \
            tail_ += (double)(TERM);                                                             \
        }                                                                                        \
        (res) = ((acc_[0] + acc_[4]) + (acc_[1] + acc_[5])) + ((acc_[2] + acc_[6]) + (acc_[3] + acc_[7])) + tail_; \
    } while (0)

#define LSE_FAST(SUF, T, EXP)                                                                       \
    /* y[o] = logsumexp of the rows o in [o0, o1) of [outer, n] (n > 0) */                         \
    AG_VEC_CLONES_512 static void lse_rows_##SUF(const T *restrict x, int64_t n, T *restrict y, int64_t o0, int64_t o1) { \
        for (int64_t o = o0; o < o1; o++) {                                                         \
            const T *restrict r = x + o * n;                                                        \
            T m = r[0];                                                                             \
            int bad = 0;                                                                            \
            AG_PRAGMA(omp simd reduction(max : m) reduction(| : bad))                               \
            for (int64_t k = 0; k < n; k++) {                                                       \
                m = r[k] > m ? r[k] : m;                                                            \
                bad |= r[k] != r[k];                                                                \
            }                                                                                       \
            AG_SIMD_EXTREME_FIX(T, m, n, k, r[k], AG_GREATER, -INFINITY);                           \
            if (bad || isinf(m)) {                                                                  \
                y[o] = bad ? (T)NAN : m;                                                            \
                continue;                                                                           \
            }                                                                                       \
            double s;                                                                               \
            LSE_SUM_##SUF(s, n, k, EXP(r[k] - m));                                                  \
            y[o] = (T)((double)m + log(s));                                                         \
        }                                                                                           \
    }                                                                                               \
    /* lse_rows over short rows (n <= LSE_SHORT), LSE_LANES rows at a time (lane j: row o + j), each \
     * row's max and AG_SUM8 of lse_rows made in the same order: the same bits, without a row's own \
     * vector loops and their tails ([87381, 3] float32, one thread: 6.0 -> 1.2 ms, PyTorch 1.6) */ \
    AG_VEC_CLONES static void lse_short_rows_##SUF(const T *restrict x, int64_t n, T *restrict y, int64_t o0, \
                                                   int64_t o1) {                                    \
        int64_t o = o0;                                                                             \
        for (; o + LSE_LANES <= o1; o += LSE_LANES) {                                               \
            const T *restrict r = x + o * n;                                                        \
            T m[LSE_LANES];                                                                         \
            int bad[LSE_LANES];                                                                     \
            double acc[8][LSE_LANES], tail[LSE_LANES];                                              \
            for (int j = 0; j < LSE_LANES; j++) {                                                   \
                m[j] = r[j * n], bad[j] = 0, tail[j] = 0;                                           \
                for (int k = 0; k < 8; k++) acc[k][j] = 0;                                          \
            }                                                                                       \
            for (int64_t k = 0; k < n; k++)                                                         \
                for (int j = 0; j < LSE_LANES; j++) {                                               \
                    const T v = r[j * n + k];                                                       \
                    m[j] = v > m[j] ? v : m[j];                                                     \
                    bad[j] |= v != v;                                                               \
                }                                                                                   \
            int64_t k = 0;                                                                          \
            for (; k < n - n % 8; k += 8)                                                           \
                for (int i = 0; i < 8; i++)                                                         \
                    for (int j = 0; j < LSE_LANES; j++) acc[i][j] += (double)EXP(r[j * n + k + i] - m[j]); \
            for (; k < n; k++)                                                                      \
                for (int j = 0; j < LSE_LANES; j++) tail[j] += (double)EXP(r[j * n + k] - m[j]);    \
            for (int j = 0; j < LSE_LANES; j++) {                                                   \
                const double s = ((acc[0][j] + acc[4][j]) + (acc[1][j] + acc[5][j])) +              \
                                 ((acc[2][j] + acc[6][j]) + (acc[3][j] + acc[7][j])) + tail[j];     \
                y[o + j] = bad[j] ? (T)NAN : isinf(m[j]) ? m[j] : (T)((double)m[j] + log(s));       \
            }                                                                                       \
        }                                                                                           \
        if (o < o1) lse_rows_##SUF(x, n, y, o, o1);                                                 \
    }                                                                                               \
    /* y[i] = logsumexp over k of x[k·inner + i] for i in [i0, i1), i1 - i0 <= LSE_COLS, n > 0 */  \
    AG_VEC_CLONES_512 static void lse_cols_##SUF(const T *restrict x, int64_t n, int64_t inner, T *restrict y, \
                                             int64_t i0, int64_t i1) {                              \
        T m[LSE_COLS];                                                                              \
        int bad[LSE_COLS];                                                                          \
        double s[LSE_COLS];                                                                         \
        const int64_t w = i1 - i0;                                                                  \
        x += i0;                                                                                    \
        for (int64_t i = 0; i < w; i++) m[i] = x[i], bad[i] = 0, s[i] = 0;                          \
        for (int64_t k = 0; k < n; k++) {                                                           \
            const T *restrict r = x + k * inner;                                                    \
            for (int64_t i = 0; i < w; i++) {                                                       \
                m[i] = r[i] > m[i] ? r[i] : m[i];                                                   \
                bad[i] |= r[i] != r[i];                                                             \
            }                                                                                       \
        }                                                                                           \
        T c[LSE_COLS]; /* the shift: the max where finite, else 0 (that column's sum is unused) */  \
        for (int64_t i = 0; i < w; i++) c[i] = bad[i] || isinf(m[i]) ? 0 : m[i];                    \
        for (int64_t k = 0; k < n; k++) {                                                           \
            const T *restrict r = x + k * inner;                                                    \
            for (int64_t i = 0; i < w; i++) s[i] += (double)EXP(r[i] - c[i]);                       \
        }                                                                                           \
        for (int64_t i = 0; i < w; i++)                                                             \
            y[i0 + i] = bad[i] ? (T)NAN : isinf(m[i]) ? m[i] : (T)((double)m[i] + log(s[i]));       \
    }                                                                                               \
    /* gx = dy·EXP(x - y) over the rows o in [o0, o1) of [outer, n] */                              \
    AG_VEC_CLONES_512 static void lse_bwd_rows_##SUF(const T *restrict x, int64_t n, const T *restrict y, \
                                                 const T *restrict dy, T *restrict gx, int64_t o0, int64_t o1) { \
        for (int64_t o = o0; o < o1; o++) {                                                         \
            const T *restrict r = x + o * n;                                                        \
            T *restrict g = gx + o * n;                                                             \
            const T yo = y[o], d = dy[o];                                                           \
            if (isfinite(yo))                                                                       \
                for (int64_t k = 0; k < n; k++) g[k] = d * EXP(r[k] - yo);                          \
            else                                                                                    \
                for (int64_t k = 0; k < n; k++) g[k] = d * LIBM_EXP_##SUF(r[k] - yo);               \
        }                                                                                           \
    }                                                                                               \
    /* the same over the columns [i0, i1) of one outer index's lanes a stride inner apart */        \
    AG_VEC_CLONES_512 static void lse_bwd_cols_##SUF(const T *restrict x, int64_t n, int64_t inner, const T *restrict y, \
                                                 const T *restrict dy, T *restrict gx, int64_t i0, int64_t i1) { \
        bool finite = true;                                                                         \
        for (int64_t i = i0; i < i1; i++) finite = finite && isfinite(y[i]);                        \
        for (int64_t k = 0; k < n; k++) {                                                           \
            const T *restrict r = x + k * inner;                                                    \
            T *restrict g = gx + k * inner;                                                         \
            if (finite)                                                                             \
                for (int64_t i = i0; i < i1; i++) g[i] = dy[i] * EXP(r[i] - y[i]);                  \
            else                                                                                    \
                for (int64_t i = i0; i < i1; i++) g[i] = dy[i] * LIBM_EXP_##SUF(r[i] - y[i]);       \
        }                                                                                           \
    }                                                                                               \
    /* block t of the long rows [outer, n] (blocks of LSE_BLOCK, nb a row) for t in [t0, t1): its max   \
     * m[t], NaN flag bad[t] and s[t] = Σ EXP(x - m[t]) (0 unless m[t] is finite), or with gx its  \
     * part of the adjoint */                                                                       \
    AG_VEC_CLONES_512 static void lse_blocks_##SUF(const T *restrict x, int64_t n, int64_t nb, const T *y, const T *dy, \
                                               T *gx, T *m, int *bad, double *s, int64_t t0, int64_t t1) { \
        for (int64_t t = t0; t < t1; t++) {                                                         \
            const int64_t o = t / nb, lo = t % nb * LSE_BLOCK, len = n - lo < LSE_BLOCK ? n - lo : LSE_BLOCK; \
            const T *restrict r = x + o * n + lo;                                                   \
            if (gx) {                                                                               \
                lse_bwd_rows_##SUF(r, len, y + o, dy + o, gx + o * n + lo, 0, 1);                   \
                continue;                                                                           \
            }                                                                                       \
            T mx = r[0];                                                                            \
            int nan = 0;                                                                            \
            AG_PRAGMA(omp simd reduction(max : mx) reduction(| : nan))                              \
            for (int64_t k = 0; k < len; k++) {                                                     \
                mx = r[k] > mx ? r[k] : mx;                                                         \
                nan |= r[k] != r[k];                                                                \
            }                                                                                       \
            AG_SIMD_EXTREME_FIX(T, mx, len, k, r[k], AG_GREATER, -INFINITY);                        \
            double sum = 0;                                                                         \
            if (!nan && isfinite(mx)) LSE_SUM_##SUF(sum, len, k, EXP(r[k] - mx));                   \
            m[t] = mx, bad[t] = nan, s[t] = sum;                                                    \
        }                                                                                           \
    }                                                                                               \
    /* logsumexp (or with gx its adjoint) of rows [outer, n] longer than LSE_BLOCK: the blocks       \
     * split over threads, then per row M = max m_b and y = M + log Σ_b s_b·exp(m_b - M) in float64  \
     * in block order (NaN if a block has one, M if M is infinite): the same bits on any number of   \
     * threads.  False when out of memory for the blocks' partials (nothing written). */           \
    static bool lse_long_rows_##SUF(const T *x, ag_lanes L, T *y, const T *dy, T *gx) {            \
        const int64_t nb = (L.n + LSE_BLOCK - 1) / LSE_BLOCK, tasks = L.outer * nb;                  \
        int nt = ag__threads_for(L.outer * L.n);                                                    \
        if (nt > tasks) nt = (int)tasks;                                                            \
        T *m = NULL;                                                                                \
        int *bad = NULL;                                                                            \
        double *s = NULL;                                                                           \
        if (!gx) {                                                                                  \
            m = ag__alloc(sizeof(T) * (size_t)tasks), bad = ag__alloc(sizeof(int) * (size_t)tasks); \
            s = ag__alloc(sizeof(double) * (size_t)tasks);                                          \
            if (!m || !bad || !s) {                                                                 \
                ag__free(m), ag__free(bad), ag__free(s);                                            \
                return false;                                                                       \
            }                                                                                       \
        }                                                                                           \
        if (nt <= 1) {                                                                              \
            lse_blocks_##SUF(x, L.n, nb, y, dy, gx, m, bad, s, 0, tasks);                           \
        } else {                                                                                    \
            AG_PRAGMA(omp parallel num_threads(nt))                                                 \
            {                                                                                       \
                const int n_ = omp_get_num_threads(), t_ = omp_get_thread_num();                    \
                lse_blocks_##SUF(x, L.n, nb, y, dy, gx, m, bad, s, ag__share_start(tasks, t_, n_),  \
                                 ag__share_start(tasks, t_ + 1, n_));                               \
            }                                                                                       \
        }                                                                                           \
        for (int64_t o = 0; !gx && o < L.outer; o++) {                                              \
            const int64_t b0 = o * nb;                                                              \
            T mx = m[b0];                                                                           \
            int nan = 0;                                                                            \
            for (int64_t b = b0; b < b0 + nb; b++) nan |= bad[b], mx = m[b] > mx ? m[b] : mx;       \
            if (nan || isinf(mx)) {                                                                 \
                y[o] = nan ? (T)NAN : mx;                                                           \
                continue;                                                                           \
            }                                                                                       \
            double sum = 0;                                                                         \
            for (int64_t b = b0; b < b0 + nb; b++)                                                  \
                if (isfinite(m[b])) sum += s[b] * exp((double)m[b] - (double)mx);                   \
            y[o] = (T)((double)mx + log(sum));                                                      \
        }                                                                                           \
        ag__free(m), ag__free(bad), ag__free(s);                                                    \
        return true;                                                                                \
    }                                                                                               \
    /* forward (gx NULL: y = logsumexp) or adjoint (gx = dy·EXP(x - y)) over the lanes L of x */   \
    static bool lse_lanes_##SUF(const T *x, ag_lanes L, T *y, const T *dy, T *gx) {                 \
        if (L.inner == 1 && L.n > LSE_BLOCK) return lse_long_rows_##SUF(x, L, y, dy, gx);           \
        const ag_lane_split S = ag__lane_split_of(L, LSE_COLS);                                     \
        AG_PARALLEL(S.nt, {                                                                         \
            const int n_ = ag__team, t_ = ag__thread;                                               \
            const int64_t a = ag__share_start(S.tasks, t_, n_), b = ag__share_start(S.tasks, t_ + 1, n_); \
            if (L.inner == 1 && a < b) {                                                            \
                if (gx) lse_bwd_rows_##SUF(x, L.n, y, dy, gx, a, b);                                \
                else if (L.n <= LSE_SHORT) lse_short_rows_##SUF(x, L.n, y, a, b);                    \
                else lse_rows_##SUF(x, L.n, y, a, b);                                               \
            }                                                                                       \
            for (int64_t t = a; L.inner > 1 && t < b; t++) {                                        \
                int64_t o, i0, i1;                                                                  \
                ag__lane_task(L, S, t, &o, &i0, &i1);                                               \
                const int64_t r = o * L.inner, off = r * L.n;                                       \
                if (gx) lse_bwd_cols_##SUF(x + off, L.n, L.inner, y + r, dy + r, gx + off, i0, i1); \
                else lse_cols_##SUF(x + off, L.n, L.inner, y + r, i0, i1);                          \
            }                                                                                       \
        });                                                                                         \
        return true;                                                                                \
    }
#define LIBM_EXP_f32 expf
#define LIBM_EXP_f64 exp
/* a row's Σ EXP(x - m) in float64: float32 terms made a chunk at a time (vexpf vectorised on its
 * own), float64 ones (libm's exp, a call a term) in AG_SUM8's loop; the same order either way */
#define LSE_SUM_f32(res, n, I, TERM) LSE_SUM8_CHUNKED(res, float, n, I, TERM)
#define LSE_SUM_f64(res, n, I, TERM) AG_SUM8(res, n, I, (double)(TERM))
LSE_FAST(f32, float, vexpf)
LSE_FAST(f64, double, exp)

/* Runs the fast path when it applies (see LSE_FAST); false when it does not. */
static bool lse_fast(const ag_tensor *x, uint64_t mask, ag_tensor *y, const ag_tensor *dy, ag_tensor *gx) {
    ag_lanes L;
    if (ag__backend == AG_BACKEND_REFERENCE || !ag__flat_as(x, x->ndim, x->shape) || !run_lanes(x, mask, &L) ||
        L.n == 0 || L.outer == 0 || L.inner == 0)
        return false;
    if (x->dtype == AG_F64)
        return lse_lanes_f64((const double *)ag__ptr(x), L, (double *)ag__ptr(y), dy ? (const double *)ag__ptr(dy) : NULL,
                             gx ? (double *)ag__ptr(gx) : NULL);
    return lse_lanes_f32((const float *)ag__ptr(x), L, (float *)ag__ptr(y), dy ? (const float *)ag__ptr(dy) : NULL,
                         gx ? (float *)ag__ptr(gx) : NULL);
}

static ag_status logsumexp_backward(ag_tensor *out, ag_tensor *gout);

/* y = m + log Σ exp(x - m), m = max x (0 if ±inf);  dx = dy·exp(x - y) */
static const ag_op op_logsumexp = {.name = "logsumexp", .grad_fn = "LogsumexpBackward0", .backward = logsumexp_backward,
                                   .saves = AG_SAVES_IN0 | AG_SAVES_OUT,
                                   .math = "y = m + log Σ_dims exp(x - m), m = max_dims x (0 if ±inf);  "
                                           "dx = expand(dy)·exp(x - y)",
                                   .backward_graph = logsumexp_backward_graph, .jvp = logsumexp_jvp,
                                   .tangent = "ẏ = Σ_dims exp(x - y)·ẋ"};

/* Records y = logsumexp(x) over mask when x needs a gradient; returns y (NULL on failure). */
static ag_tensor *logsumexp_done(ag_tensor *x, ag_tensor *y, uint64_t mask) {
    if (ag__needs_grad1(x)) {
        if (!ag__record(y, &op_logsumexp, &x, 1)) return NULL;
        y->attr.i[0] = (int64_t)mask;
    }
    return ag__check_finite(y, "logsumexp");
}

/* logsumexp of x's memory-order view (ag__reduce_in_memory_order's fn) */
static ag_tensor *lse_of_view(ag_tensor *xv, int ndims, const int *dims, void *ctx) {
    (void)ctx;
    return ag_logsumexp_dims(xv, ndims, dims, true);
}

ag_tensor *ag_logsumexp_dims(ag_tensor *x, int ndims, const int *dims, bool keepdim) {
    AG_CHECK_HANDLES(NULL, "logsumexp", x);
    if (!x) return NULL;
    if (ndims == 0) return ag__fail_null(AG_ERR_ARG, "logsumexp: empty dim list (list every dim to reduce all)");
    uint64_t mask;
    if (ag__check_float("logsumexp", x, NULL) || dims_mask("logsumexp", x, ndims, dims, &mask)) return NULL;
    bool tried; /* a permuted x: in its memory order */
    ag_tensor *y = ag__reduce_in_memory_order(x, mask, keepdim, lse_of_view, NULL, &tried);
    if (y || tried) return y ? logsumexp_done(x, y, mask) : NULL;
    int64_t kshape[AG_MAX_DIMS], oshape[AG_MAX_DIMS];
    int on = reduced_shape(x, mask, keepdim, kshape, oshape);
    y = ag__new_zeros(x->dtype, on, oshape);
    if (y && lse_fast(x, mask, y, NULL, NULL)) return logsumexp_done(x, y, mask);
    ag_tensor *m = y ? ag__new_unowned(AG_F64, x->ndim, kshape, false) : NULL;
    ag_tensor *acc = m ? ag__accumulator_for(y) : NULL;
    if (!acc) {
        ag_release(m);
        ag__discard(y);
        return NULL;
    }
    const bool f64 = x->dtype == AG_F64;
    double *mv = (double *)ag__ptr(m), *av = (double *)ag__ptr(acc);
    const int64_t ny = ag__numel(y->ndim, y->shape);
    for (int64_t k = 0; k < ny; k++) mv[k] = -INFINITY;
    ag_iter it;
    ag__iter_init(&it, x->ndim, x->shape);
    ag__iter_add_reduced(&it, m, mask);
    ag__iter_add(&it, x);
    ag__iter_run_any_order(&it, f64 ? max_f64 : max_f32, NULL);
    /* An infinite max is replaced by 0 (as PyTorch): all -inf gives log 0 = -inf, any +inf gives +inf. */
    for (int64_t k = 0; k < ny; k++)
        if (isinf(mv[k])) mv[k] = 0;
    ag_tensor kv;
    keepdim_view(&kv, acc, x, mask);
    ag__iter_init(&it, x->ndim, x->shape);
    ag__iter_add_reduced(&it, &kv, mask);
    ag__iter_add(&it, x);
    ag__iter_add_reduced(&it, m, mask);
    ag__iter_run_sum(&it, f64 ? sumexp_f64 : sumexp_f32, NULL);
    for (int64_t k = 0; k < ny; k++) av[k] = log(av[k]) + mv[k]; /* in float64, rounded once */
    finish(y, acc, 1.0, false);
    ag_release(acc);
    ag_release(m);
    return logsumexp_done(x, y, mask);
}

/* dx = dy·exp(x - y), dy and y broadcast over the reduced dims. */
static ag_status logsumexp_backward(ag_tensor *out, ag_tensor *gout) {
    ag_tensor *x = out->in[0];
    uint64_t mask = (uint64_t)out->attr.i[0];
    ag_tensor *gx = ag__new_unowned(x->dtype, x->ndim, x->shape, false);
    if (!gx) return AG_ERR_NOMEM;
    ag_tensor yv, gv;
    keepdim_view(&yv, out, x, mask);
    keepdim_view(&gv, gout, x, mask);
    if (lse_fast(x, mask, out, gout, gx)) return ag__accumulate(x, gx);
    ag_iter it;
    ag__iter_init(&it, x->ndim, x->shape);
    ag__iter_add(&it, gx);
    ag__iter_add(&it, x);
    ag__iter_add_reduced(&it, &yv, mask);
    ag__iter_add_reduced(&it, &gv, mask);
    ag__iter_run(&it, x->dtype == AG_F64 ? lse_bwd_f64 : lse_bwd_f32, NULL);
    return ag__accumulate(x, gx);
}

/* ---- amax and amin ------------------------------------------------------------------------------ */
/* p[0] (float64) = min(p[0], p[1]) with p[0] reduced; NaN wins */
#define MIN_KERNEL(NAME, T) EXTREME_KERNEL(NAME, T, LESS)
MIN_KERNEL(min_f32, float)
MIN_KERNEL(min_f64, double)

/* x equals the extreme y: NaN equals NaN here, as the ties of a NaN result are the NaNs. */
#define TIES(x, y) ((x) == (y) || (isnan(x) && isnan(y)))

/* p: count (float64, reduced), x, y (reduced): count += [x ties y].  A run of x into one count (a
 * reduced inner dim, as a transposed x's memory-order walk gives) counts in a local, and a run into as
 * many counts (a kept one) is a unit-step loop: both vectorise, where the loop through p[0] was bound
 * by the latency of the count's store and reload (amax of a transposed [1776, 2368] float32 over both
 * dims, forward + backward on one thread: see docs/benchmarks.md, session 15). */
#define TIE_COUNT_KERNEL(NAME, T)                                                    \
    AG_VEC_CLONES static void NAME(char **p, const int64_t *s, int64_t n, void *ctx) { \
        (void)ctx;                                                                   \
        if (s[0] == 0 && s[1] == (int64_t)sizeof(T) && s[2] == 0) {                  \
            const T *restrict x = (const T *)p[1], y = *(const T *)p[2];             \
            int64_t c = 0;                                                           \
            for (int64_t i = 0; i < n; i++) c += TIES(x[i], y);                      \
            *(double *)p[0] += (double)c;                                            \
            return;                                                                  \
        }                                                                            \
        if (s[0] == (int64_t)sizeof(double) && s[1] == (int64_t)sizeof(T) && s[2] == (int64_t)sizeof(T)) { \
            double *restrict c = (double *)p[0];                                     \
            const T *restrict x = (const T *)p[1], *restrict y = (const T *)p[2];    \
            for (int64_t i = 0; i < n; i++) c[i] += TIES(x[i], y[i]);                \
            return;                                                                  \
        }                                                                            \
        for (int64_t i = 0; i < n; i++) {                                            \
            const T x = *(const T *)(p[1] + i * s[1]), y = *(const T *)(p[2] + i * s[2]); \
            *(double *)(p[0] + i * s[0]) += TIES(x, y);                              \
        }                                                                            \
    }
TIE_COUNT_KERNEL(tie_count_f32, float)
TIE_COUNT_KERNEL(tie_count_f64, double)

/* p: gx, x, y, dy, count (the last three reduced): gx = [x ties y]·dy / count; a unit-step run
 * with the last three constant along it (a full reduction) takes its share once, a loop that
 * vectorises. */
#define TIE_SPLIT_KERNEL(NAME, T)                                                    \
    AG_VEC_CLONES static void NAME(char **p, const int64_t *s, int64_t n, void *ctx) { \
        (void)ctx;                                                                   \
        if (s[0] == (int64_t)sizeof(T) && s[1] == (int64_t)sizeof(T) && s[2] == 0 && s[3] == 0 && s[4] == 0) { \
            T *restrict g = (T *)p[0];                                               \
            const T *restrict x = (const T *)p[1], y = *(const T *)p[2];             \
            const T share = (T)(*(const T *)p[3] / *(const double *)p[4]);           \
            for (int64_t i = 0; i < n; i++) g[i] = TIES(x[i], y) ? share : 0;        \
            return;                                                                  \
        }                                                                            \
        for (int64_t i = 0; i < n; i++) {                                            \
            const T x = *(const T *)(p[1] + i * s[1]), y = *(const T *)(p[2] + i * s[2]); \
            *(T *)(p[0] + i * s[0]) =                                                \
                TIES(x, y) ? (T)(*(const T *)(p[3] + i * s[3]) / *(const double *)(p[4] + i * s[4])) : 0; \
        }                                                                            \
    }
TIE_SPLIT_KERNEL(tie_split_f32, float)
TIE_SPLIT_KERNEL(tie_split_f64, double)

/* The fast adjoint of amax/amin for a contiguous x reduced over one run of dims: its lanes split
 * over threads as logsumexp's (each lane whole on one thread), a vectorised count of the ties
 * and a vectorised select, per row or TIE_COLS columns at a time; the same bits as the two passes
 * above ((T)(dy / count) where x ties y, else 0).  [1000, 1000] float32 forward + backward on one
 * thread: along dim 0 2.7 -> 0.65 ms, along dim 1 4.4 -> 0.57 ms (PyTorch 1.8 and 2.0). */
#define TIE_COLS 512
#define TIE_FAST(SUF, T)                                                                            \
    /* rows o in [o0, o1) of [outer, n] */                                                          \
    AG_VEC_CLONES static void tie_rows_##SUF(const T *restrict x, int64_t n, const T *restrict y,  \
                                             const T *restrict dy, T *restrict gx, int64_t o0, int64_t o1) { \
        for (int64_t o = o0; o < o1; o++) {                                                         \
            const T *restrict r = x + o * n;                                                        \
            T *restrict g = gx + o * n;                                                             \
            const T yo = y[o];                                                                      \
            const int nan = yo != yo;                                                               \
            int64_t c = 0;                                                                          \
            AG_PRAGMA(omp simd reduction(+ : c))                                                    \
            for (int64_t k = 0; k < n; k++) c += nan ? r[k] != r[k] : r[k] == yo;                   \
            const T share = (T)(dy[o] / (double)c);                                                 \
            for (int64_t k = 0; k < n; k++) g[k] = (nan ? r[k] != r[k] : r[k] == yo) ? share : 0;   \
        }                                                                                           \
    }                                                                                               \
    /* columns [i0, i1) (at most TIE_COLS) of one outer index's lanes, a stride inner apart */      \
    AG_VEC_CLONES static void tie_cols_##SUF(const T *restrict x, int64_t n, int64_t inner, const T *restrict y, \
                                             const T *restrict dy, T *restrict gx, int64_t i0, int64_t i1) { \
        int64_t c[TIE_COLS];                                                                        \
        T share[TIE_COLS];                                                                          \
        const int64_t w = i1 - i0;                                                                  \
        x += i0, y += i0, dy += i0, gx += i0;                                                       \
        for (int64_t i = 0; i < w; i++) c[i] = 0;                                                   \
        for (int64_t k = 0; k < n; k++) {                                                           \
            const T *restrict r = x + k * inner;                                                    \
            for (int64_t i = 0; i < w; i++) c[i] += r[i] == y[i] || (r[i] != r[i] && y[i] != y[i]); \
        }                                                                                           \
        for (int64_t i = 0; i < w; i++) share[i] = (T)(dy[i] / (double)c[i]);                       \
        for (int64_t k = 0; k < n; k++) {                                                           \
            const T *restrict r = x + k * inner;                                                    \
            T *restrict g = gx + k * inner;                                                         \
            for (int64_t i = 0; i < w; i++) g[i] = r[i] == y[i] || (r[i] != r[i] && y[i] != y[i]) ? share[i] : 0; \
        }                                                                                           \
    }                                                                                               \
    static void tie_lanes_##SUF(const T *x, ag_lanes L, const T *y, const T *dy, T *gx) {           \
        const ag_lane_split S = ag__lane_split_of(L, TIE_COLS);                                     \
        AG_PARALLEL(S.nt, {                                                                         \
            const int n_ = ag__team, t_ = ag__thread;                                               \
            const int64_t a = ag__share_start(S.tasks, t_, n_), b = ag__share_start(S.tasks, t_ + 1, n_); \
            if (L.inner == 1 && a < b) tie_rows_##SUF(x, L.n, y, dy, gx, a, b);                     \
            for (int64_t t = a; L.inner > 1 && t < b; t++) {                                        \
                int64_t o, i0, i1;                                                                  \
                ag__lane_task(L, S, t, &o, &i0, &i1);                                               \
                const int64_t r = o * L.inner, off = r * L.n;                                       \
                tie_cols_##SUF(x + off, L.n, L.inner, y + r, dy + r, gx + off, i0, i1);             \
            }                                                                                       \
        });                                                                                         \
    }
TIE_FAST(f32, float)
TIE_FAST(f64, double)

static ag_status amax_backward(ag_tensor *out, ag_tensor *gout);
/* y = max over dims;  dx = dy·[x = y] / #{x = y} */
static const ag_op op_amax = {.name = "amax", .grad_fn = "AmaxBackward0", .backward = amax_backward,
                              .saves = AG_SAVES_IN0 | AG_SAVES_OUT,
                              .math = "y = max_dims x (NaN wins);  "
                                      "dx = expand(dy)·[x = y] / #{x = y} (even split over ties)",
                              .backward_graph = amax_backward_graph, .jvp = amax_jvp,
                              .tangent = "ẏ = Σ_dims ẋ·[x = y] / #{x = y} (the mean tangent over ties)"};
/* y = min over dims;  dx = dy·[x = y] / #{x = y} */
static const ag_op op_amin = {.name = "amin", .grad_fn = "AminBackward0", .backward = amax_backward,
                              .saves = AG_SAVES_IN0 | AG_SAVES_OUT,
                              .math = "y = min_dims x (NaN wins);  "
                                      "dx = expand(dy)·[x = y] / #{x = y} (even split over ties)",
                              .backward_graph = amax_backward_graph, .jvp = amax_jvp,
                              .tangent = "ẏ = Σ_dims ẋ·[x = y] / #{x = y} (the mean tangent over ties)"};

/* acc[o] = the extreme (kernel: max_ or min_f32/f64) of row o of a contiguous x reduced over its last
 * dims (rows of 2 or more elements), the rows shared out over threads, each through the kernel's scan
 * in lanes (float32 rows up to EXTREME_SHORT_MAX long: ops/extreme_rows.c's kernel, with AVX-512).
 * False (nothing done) for any other geometry.  The iterator took such rows (shorter than its
 * block) with the kept dim innermost, one scalar compare a load and a store: amax of [64, 64, 64, 64]
 * over dim 3, one thread, 22.6 ms, PyTorch 4.1 ms. */
static bool extreme_rows(double *acc, const ag_tensor *x, uint64_t mask, void (*kernel)(char **, const int64_t *, int64_t, void *)) {
    ag_lanes L;
    if (!ag__flat_as(x, x->ndim, x->shape) || !run_lanes(x, mask, &L) || L.inner != 1 || L.n < 2 || L.outer < 2) return false;
    const int64_t es = (int64_t)ag__esize(x->dtype), step[2] = {0, es};
    const char *xp = ag__ptr(x);
    const bool f32 = x->dtype == AG_F32;
    int nt = ag__threads_for(L.outer * L.n);
    if (nt > L.outer) nt = (int)L.outer;
    AG_PARALLEL(nt, {
        const int64_t a = ag__share_start(L.outer, ag__thread, ag__team), b = ag__share_start(L.outer, ag__thread + 1, ag__team);
        const bool short_ = f32 && a < b && ag__extreme_rows_f32(acc, (const float *)(const void *)xp, L.n, a, b, kernel == max_f32);
        for (int64_t o = a; o < b && !short_; o++) {
            char *p[2] = {(char *)(acc + o), (char *)(uintptr_t)(xp + o * L.n * es)};
            kernel(p, step, L.n, NULL);
        }
    });
    return true;
}

/* y = amax (op_amax) or amin of x over mask, not recorded: rows (extreme_rows), else the iterator in
 * any order; exact. */
static ag_tensor *extreme_forward(const ag_op *op, const ag_tensor *x, uint64_t mask, bool keepdim) {
    int64_t kshape[AG_MAX_DIMS], oshape[AG_MAX_DIMS];
    int on = reduced_shape(x, mask, keepdim, kshape, oshape);
    ag_tensor *y = ag__new(x->dtype, on, oshape);
    ag_tensor *acc = y ? ag__accumulator_for(y) : NULL;
    if (!acc) {
        ag__discard(y);
        return NULL;
    }
    const bool f64 = x->dtype == AG_F64, is_max = op == &op_amax;
    const int64_t ny = ag_numel(y);
    for (int64_t k = 0; k < ny; k++) ((double *)ag__ptr(acc))[k] = is_max ? -INFINITY : INFINITY;
    void (*kernel)(char **, const int64_t *, int64_t, void *) = is_max ? (f64 ? max_f64 : max_f32) : (f64 ? min_f64 : min_f32);
    if (!extreme_rows((double *)ag__ptr(acc), x, mask, kernel)) {
        ag_tensor kv;
        keepdim_view(&kv, acc, x, mask);
        ag_iter it;
        ag__iter_init(&it, x->ndim, x->shape);
        ag__iter_add_reduced(&it, &kv, mask);
        ag__iter_add(&it, x);
        ag__iter_run_any_order(&it, kernel, NULL);
    }
    finish(y, acc, 1.0, false); /* exact: each value is one of x's */
    ag_release(acc);
    return y;
}

/* extreme_forward of x's memory-order view (ag__reduce_in_memory_order's fn; ctx the op) */
static ag_tensor *extreme_of_view(ag_tensor *xv, int ndims, const int *dims, void *ctx) {
    uint64_t mask = 0;
    for (int i = 0; i < ndims; i++) mask |= (uint64_t)1 << dims[i];
    return extreme_forward(ctx, xv, mask, true);
}

/* amax (op_amax) or amin of x over dims (ndims 0: all); a permuted x in its memory order (the same
 * values: the iterator walked a reduced dim a stride apart) */
static ag_tensor *extreme_dims(const ag_op *op, ag_tensor *x, int ndims, const int *dims, bool keepdim) {
    AG_CHECK_HANDLES(NULL, op->name, x);
    if (!x) return NULL;
    uint64_t mask;
    if (ag__check_float(op->name, x, NULL) || dims_mask(op->name, x, ndims, dims, &mask)) return NULL;
    for (int d = 0; d < x->ndim; d++)
        if ((mask >> d & 1) && x->shape[d] == 0) {
            char s[AG_SHAPE_STR];
            return ag__fail_null(AG_ERR_SHAPE, "%s: cannot reduce the empty dim %d of a tensor of shape %s", op->name, d,
                                 ag__tshape(s, x));
        }
    bool tried;
    ag_tensor *y = ag__reduce_in_memory_order(x, mask, keepdim, extreme_of_view, (void *)(uintptr_t)op, &tried);
    if (!y && !tried) y = extreme_forward(op, x, mask, keepdim);
    if (!y) return NULL;
    if (ag__needs_grad1(x)) {
        if (!ag__record(y, op, &x, 1)) return NULL;
        y->attr.i[0] = (int64_t)mask;
    }
    return ag__check_finite(y, op->name);
}

/* Counts the ties of each output, then gives each tie dy / count. */
static ag_status amax_backward(ag_tensor *out, ag_tensor *gout) {
    ag_tensor *x = out->in[0];
    uint64_t mask = (uint64_t)out->attr.i[0];
    int64_t kshape[AG_MAX_DIMS], oshape[AG_MAX_DIMS];
    reduced_shape(x, mask, true, kshape, oshape);
    ag_tensor *count = ag__new_unowned(AG_F64, x->ndim, kshape, true);
    ag_tensor *gx = count ? ag__new_unowned(x->dtype, x->ndim, x->shape, false) : NULL;
    if (!gx) {
        ag_release(count);
        return AG_ERR_NOMEM;
    }
    const bool f64 = x->dtype == AG_F64;
    ag_tensor yv, gv;
    keepdim_view(&yv, out, x, mask);
    keepdim_view(&gv, gout, x, mask);
    ag_lanes L;
    if (ag__backend != AG_BACKEND_REFERENCE && ag__flat_as(x, x->ndim, x->shape) && run_lanes(x, mask, &L) && L.n > 0 &&
        L.outer > 0 && L.inner > 0) {
        if (f64)
            tie_lanes_f64((const double *)ag__ptr(x), L, (const double *)ag__ptr(out), (const double *)ag__ptr(gout),
                          (double *)ag__ptr(gx));
        else
            tie_lanes_f32((const float *)ag__ptr(x), L, (const float *)ag__ptr(out), (const float *)ag__ptr(gout),
                          (float *)ag__ptr(gx));
        ag_release(count);
        return ag__accumulate(x, gx);
    }
    ag_iter it;
    ag__iter_init(&it, x->ndim, x->shape);
    ag__iter_add_reduced(&it, count, mask);
    ag__iter_add(&it, x);
    ag__iter_add_reduced(&it, &yv, mask);
    ag__iter_run_any_order(&it, f64 ? tie_count_f64 : tie_count_f32, NULL);
    ag__iter_init(&it, x->ndim, x->shape);
    ag__iter_add(&it, gx);
    ag__iter_add(&it, x);
    ag__iter_add_reduced(&it, &yv, mask);
    ag__iter_add_reduced(&it, &gv, mask);
    ag__iter_add_reduced(&it, count, mask);
    ag__iter_run_par(&it, f64 ? tie_split_f64 : tie_split_f32, NULL);
    ag_release(count);
    return ag__accumulate(x, gx);
}

ag_tensor *ag_amax(ag_tensor *x, int ndims, const int *dims, bool keepdim) {
    return extreme_dims(&op_amax, x, ndims, dims, keepdim);
}
ag_tensor *ag_amin(ag_tensor *x, int ndims, const int *dims, bool keepdim) {
    return extreme_dims(&op_amin, x, ndims, dims, keepdim);
}

/* ---- any, all and count_nonzero: not differentiable --------------------------------------------- */
/* p: count (int64, reduced), x: count += [x != 0] (NaN is not 0).  A contiguous x into one count (a
 * row) or into a contiguous run of counts (columns) is a unit-step loop that vectorises: any of
 * [512, 512] float32 along dim 1, one thread, 607-708 -> 42-71 us (PyTorch 376); byte-strided runs keep
 * the scalar loop. */
#define NONZERO_KERNEL(NAME, T)                                                      \
    AG_VEC_CLONES static void NAME(char **p, const int64_t *s, int64_t n, void *ctx) { \
        (void)ctx;                                                                   \
        if (s[1] == (int64_t)sizeof(T) && s[0] == 0) {                               \
            const T *restrict x = (const T *)p[1];                                   \
            int64_t c = 0;                                                           \
            for (int64_t i = 0; i < n; i++) c += x[i] != 0;                          \
            *(int64_t *)p[0] += c;                                                   \
            return;                                                                  \
        }                                                                            \
        if (s[1] == (int64_t)sizeof(T) && s[0] == (int64_t)sizeof(int64_t)) {        \
            int64_t *restrict c = (int64_t *)p[0];                                   \
            const T *restrict x = (const T *)p[1];                                   \
            for (int64_t i = 0; i < n; i++) c[i] += x[i] != 0;                       \
            return;                                                                  \
        }                                                                            \
        for (int64_t i = 0; i < n; i++) *(int64_t *)(p[0] + i * s[0]) += *(const T *)(p[1] + i * s[1]) != 0; \
    }
NONZERO_KERNEL(nonzero_f32, float)
NONZERO_KERNEL(nonzero_f64, double)
NONZERO_KERNEL(nonzero_i64, int64_t)
NONZERO_KERNEL(nonzero_u8, uint8_t) /* bool is stored as one byte, 0 or 1 */

/* b = any x over dims;  not differentiable */
static const ag_op op_any = {.name = "any",
                             .math = "b = ∃ x ≠ 0 over dims (bool; NaN counts as true);  no gradient"};
/* b = all x over dims;  not differentiable */
static const ag_op op_all = {.name = "all",
                             .math = "b = ∀ x ≠ 0 over dims (bool; NaN counts as true);  no gradient"};
/* c = #{x != 0} over dims;  not differentiable */
static const ag_op op_count_nonzero = {.name = "count_nonzero",
                                       .math = "c = #{x ≠ 0} over dims (int64);  no gradient"};

/* The nonzero count of x over the dims in mask, then any (> 0), all (= the reduced count) or
 * the count itself; x of any dtype. */
static ag_tensor *truth(const ag_op *op, ag_tensor *x, int ndims, const int *dims, bool keepdim) {
    AG_CHECK_HANDLES(NULL, op->name, x);
    if (!x) return NULL;
    if ((unsigned)x->dtype > AG_U8) return ag__fail_null(AG_ERR_DTYPE, "%s: unknown dtype %d", op->name, (int)x->dtype);
    uint64_t mask;
    if (dims_mask(op->name, x, ndims, dims, &mask)) return NULL;
    int64_t kshape[AG_MAX_DIMS], oshape[AG_MAX_DIMS];
    int on = reduced_shape(x, mask, keepdim, kshape, oshape);
    const bool count = op == &op_count_nonzero;
    ag_tensor *c = count ? ag__new_zeros(AG_I64, on, oshape) : ag__new_unowned(AG_I64, on, oshape, true);
    ag_tensor *y = c && !count ? ag__new(AG_BOOL, on, oshape) : c;
    if (!y) {
        if (count) ag__discard(c);
        else ag_release(c);
        return NULL;
    }
    ag_tensor cv;
    keepdim_view(&cv, c, x, mask);
    ag_iter it;
    ag__iter_init(&it, x->ndim, x->shape);
    ag__iter_add_reduced(&it, &cv, mask);
    ag__iter_add(&it, x);
    static const ag_inner_fn kernel[] = {[AG_F32] = nonzero_f32, [AG_F64] = nonzero_f64, [AG_I64] = nonzero_i64,
                                         [AG_BOOL] = nonzero_u8, [AG_U8] = nonzero_u8};
    ag__iter_run_any_order(&it, kernel[x->dtype], NULL);
    if (count) return y;
    const int64_t n = reduced_count(x, mask), ny = ag_numel(y);
    const int64_t *cp = (const int64_t *)ag__ptr(c);
    bool *yp = (bool *)ag__ptr(y);
    for (int64_t k = 0; k < ny; k++) yp[k] = op == &op_any ? cp[k] > 0 : cp[k] == n;
    ag_release(c);
    return y;
}

ag_tensor *ag_any(ag_tensor *x) { return truth(&op_any, x, 0, NULL, false); }
ag_tensor *ag_all(ag_tensor *x) { return truth(&op_all, x, 0, NULL, false); }
ag_tensor *ag_any_dim(ag_tensor *x, int dim, bool keepdim) { return truth(&op_any, x, 1, &dim, keepdim); }
ag_tensor *ag_all_dim(ag_tensor *x, int dim, bool keepdim) { return truth(&op_all, x, 1, &dim, keepdim); }
ag_tensor *ag_count_nonzero(ag_tensor *x, int ndims, const int *dims) {
    return truth(&op_count_nonzero, x, ndims, dims, false);
}

/* ---- tangent rules ------------------------------------------------------------------------- */
/* dy = Σ_dims dx (·1/n for mean) */
static ag_tensor *sum_jvp(ag_tensor *out, ag_tensor *const *tin) {
    int dims[AG_MAX_DIMS];
    int nd = ag__jvp_mask_dims((uint64_t)out->attr.i[0], out->in[0]->ndim, dims);
    ag_tensor *t = ag__jvp_shaped(ag__jvp_sum_dims(tin[0], nd, dims), out);
    return t && out->attr.a != 1.0 ? ag_mul_scalar(t, out->attr.a) : t;
}

/* var: dy = Σ_dims 2(x - mean)·dx / (n - correction);  std: dy = that / 2y (0 where y = 0) */
static ag_tensor *var_jvp(ag_tensor *out, ag_tensor *const *tin) {
    ag_tensor *x = out->in[0];
    int dims[AG_MAX_DIMS];
    int nd = ag__jvp_mask_dims((uint64_t)out->attr.i[0], x->ndim, dims);
    ag_tensor *dev = ag_sub(x, nd ? ag_mean_dims(x, nd, dims, true) : x);
    ag_tensor *t = ag__jvp_shaped(ag__jvp_sum_dims(ag_mul(dev, tin[0]), nd, dims), out);
    if (!t) return NULL;
    t = ag_mul_scalar(t, 2.0 / (double)out->attr.i[1]);
    if (out->op != &op_std) return t;
    ag_tensor *zero = ag_zeros_like(out); /* 0 where y = 0, as the adjoint */
    return ag_where(ag_eq(out, zero), zero, ag_div(t, ag_mul_scalar(out, 2.0)));
}

/* dy = Σ_dims exp(x - y)·dx */
static ag_tensor *logsumexp_jvp(ag_tensor *out, ag_tensor *const *tin) {
    ag_tensor *x = out->in[0];
    int dims[AG_MAX_DIMS];
    int nd = ag__jvp_mask_dims((uint64_t)out->attr.i[0], x->ndim, dims);
    ag_tensor *yk = ag__jvp_keepdim(out, x, (uint64_t)out->attr.i[0]);
    return ag__jvp_shaped(ag__jvp_sum_dims(ag_mul(ag_exp(ag_sub(x, yk)), tin[0]), nd, dims), out);
}

/* dy = Σ_dims dx·[x = y] / #{x = y} (the mean tangent over ties, as the adjoint splits) */
static ag_tensor *amax_jvp(ag_tensor *out, ag_tensor *const *tin) {
    ag_tensor *x = out->in[0];
    int dims[AG_MAX_DIMS];
    int nd = ag__jvp_mask_dims((uint64_t)out->attr.i[0], x->ndim, dims);
    ag_tensor *hit = ag_to_dtype(ag_eq(x, ag__jvp_keepdim(out, x, (uint64_t)out->attr.i[0])), x->dtype);
    ag_tensor *t = ag_div(ag__jvp_sum_dims(ag_mul(tin[0], hit), nd, dims), ag__jvp_sum_dims(hit, nd, dims));
    return ag__jvp_shaped(t, out);
}

/* ---- adjoints in differentiable ops (create_graph) ----------------------------------------- */
/* var: dx = expand(dy)·2(x - mean) / (n - correction);  std: dy / 2y in place of dy (0 where y = 0) */
static ag_status var_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin) {
    ag_tensor *x = out->in[0];
    const uint64_t mask = (uint64_t)out->attr.i[0];
    int dims[AG_MAX_DIMS];
    int nd = ag__jvp_mask_dims(mask, x->ndim, dims);
    ag_tensor *g = gout;
    if (out->op == &op_std) {
        ag_tensor *zero = ag_zeros_like(out), *at0 = ag_eq(out, zero); /* a safe divisor there: no 0·inf upstream */
        g = ag_where(at0, zero, ag_div(gout, ag_where(at0, ag_ones_like(out), ag_mul_scalar(out, 2.0))));
    }
    ag_tensor *dev = ag_sub(x, nd ? ag_mean_dims(x, nd, dims, true) : x);
    ag_tensor *gk = g ? ag__jvp_keepdim(g, x, mask) : NULL;
    return (gin[0] = ag_mul_scalar(ag_mul(gk, dev), 2.0 / (double)out->attr.i[1])) ? AG_OK : ag_last_status();
}

/* dx = expand(dy)·exp(x - y) */
static ag_status logsumexp_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin) {
    ag_tensor *x = out->in[0];
    const uint64_t mask = (uint64_t)out->attr.i[0];
    ag_tensor *e = ag_exp(ag_sub(x, ag__jvp_keepdim(out, x, mask)));
    return (gin[0] = ag_mul(ag__jvp_keepdim(gout, x, mask), e)) ? AG_OK : ag_last_status();
}

/* dx = expand(dy)·[x = y] / #{x = y} (ties split evenly, as the adjoint) */
static ag_status amax_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin) {
    ag_tensor *x = out->in[0];
    const uint64_t mask = (uint64_t)out->attr.i[0];
    int dims[AG_MAX_DIMS];
    int nd = ag__jvp_mask_dims(mask, x->ndim, dims);
    ag_tensor *hit = ag_to_dtype(ag_eq(x, ag__jvp_keepdim(out, x, mask)), x->dtype);
    ag_tensor *share = ag_div(hit, ag__jvp_sum_dims(hit, nd, dims));
    return (gin[0] = ag_mul(ag__jvp_keepdim(gout, x, mask), share)) ? AG_OK : ag_last_status();
}

const ag_op *const ag__reduce_ops[] = {&op_sum, &op_mean, &op_var, &op_std, &op_logsumexp, &op_amax, &op_amin,
                                       &op_any, &op_all, &op_count_nonzero, NULL};

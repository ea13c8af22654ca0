/*
 * reduce.c - reductions over all elements or a set of dims, with keepdim.
 *
 * A reduction iterates over the input's shape with the output given stride 0
 * along the reduced dims.  The adjoints broadcast dy back over those dims.
 */
#include <math.h>
#include <string.h>
#include "iter.h"

/* Turns a dim list into a bit mask over x's dims (empty list: all dims). */
static int dims_mask(const char *op, const ag_tensor *x, int ndims, const int *dims, uint64_t *mask) {
    *mask = 0;
    if (ndims < 0 || (ndims > 0 && !dims)) return ag__fail(AG_ERR_ARG, "%s: invalid dim list", op);
    if (ndims == 0) {
        *mask = x->ndim ? (~(uint64_t)0 >> (64 - x->ndim)) : 0;
        return AG_OK;
    }
    for (int i = 0; i < ndims; i++) {
        int d = ag__dim(op, dims[i], x->ndim);
        if (d < 0) return AG_ERR_INDEX;
        if (x->ndim == 0) continue;
        if (*mask >> d & 1) return ag__fail(AG_ERR_ARG, "%s: dim %d appears twice in the dim list", op, dims[i]);
        *mask |= (uint64_t)1 << d;
    }
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

/* A stack header giving out (contiguous) the keepdim geometry of x's reduction. */
static void keepdim_view(ag_tensor *view, const ag_tensor *out, const ag_tensor *x, uint64_t mask) {
    memset(view, 0, sizeof *view);
    view->ndim = x->ndim;
    view->dtype = out->dtype;
    view->storage = out->storage;
    view->offset = out->offset;
    for (int d = 0; d < x->ndim; d++) view->shape[d] = (mask >> d & 1) ? 1 : x->shape[d];
    ag__contiguous_strides(view->ndim, view->shape, view->stride);
}

/* ---- sum and mean ----------------------------------------------------------------------------- */
#define SUM_KERNEL(NAME, T)                                                          \
    static void NAME(char **p, const int64_t *s, int64_t n, void *ctx) {            \
        (void)ctx;                                                                   \
        if (s[0] == 0) {                                                             \
            double acc = 0;                                                          \
            for (int64_t i = 0; i < n; i++) acc += *(const T *)(p[1] + i * s[1]);    \
            *(T *)p[0] += (T)acc;                                                    \
        } else {                                                                     \
            for (int64_t i = 0; i < n; i++) *(T *)(p[0] + i * s[0]) += *(const T *)(p[1] + i * s[1]); \
        }                                                                            \
    }
SUM_KERNEL(sum_f32, float)
SUM_KERNEL(sum_f64, double)

/* out[i] = scale * in[i] (in broadcast) */
#define SCALE_KERNEL(NAME, T)                                                        \
    static void NAME(char **p, const int64_t *s, int64_t n, void *ctx) {            \
        const T scale = (T) * (const double *)ctx;                                   \
        for (int64_t i = 0; i < n; i++) *(T *)(p[0] + i * s[0]) = scale * *(const T *)(p[1] + i * s[1]); \
    }
SCALE_KERNEL(scale_f32, float)
SCALE_KERNEL(scale_f64, double)

static ag_status sum_backward(ag_tensor *out, ag_tensor *gout);
static ag_tensor *sum_test_call(ag_tensor *const *in, int n, void *ctx);
static ag_tensor *mean_test_call(ag_tensor *const *in, int n, void *ctx);

#define REDUCE_CASES                                                                  \
    {{1, {AG_DIMS(3, 4)}}, {1, {AG_DIMS(2, 3, 4)}}, {1, {AG_DIMS0}}, {1, {AG_DIMS(5)}}}
/* y = Σ x over dims;  dx = broadcast(dy) */
static const ag_op op_sum = {"sum", "SumBackward1", sum_backward, 0, "y = Σ_dims x;  dx = expand(dy)", sum_test_call, AG_DOMAIN_ANY,
                             REDUCE_CASES, {0, 0}, 0, 0};
/* y = Σ x / n over dims;  dx = broadcast(dy) / n */
static const ag_op op_mean = {"mean", "MeanBackward1", sum_backward, 0, "y = Σ_dims x / n;  dx = expand(dy) / n", mean_test_call, AG_DOMAIN_ANY,
                              REDUCE_CASES, {0, 0}, 0, 0};

static ag_tensor *sum_mean(const ag_op *op, ag_tensor *x, int ndims, const int *dims, bool keepdim) {
    if (!x) return NULL;
    uint64_t mask;
    if (ag__check_float(op->name, x, NULL) || dims_mask(op->name, x, ndims, dims, &mask)) return NULL;
    int64_t kshape[AG_MAX_DIMS], oshape[AG_MAX_DIMS];
    int on = reduced_shape(x, mask, keepdim, kshape, oshape);
    ag_tensor *y = ag__new_zeros(x->dtype, on, oshape);
    if (!y) return NULL;
    ag_tensor kv;
    keepdim_view(&kv, y, x, mask);
    ag_iter it;
    ag__iter_init(&it, x->ndim, x->shape);
    ag__iter_add_reduced(&it, &kv, mask);
    ag__iter_add(&it, x);
    ag__iter_run(&it, x->dtype == AG_F64 ? sum_f64 : sum_f32, NULL);
    int64_t count = ag_numel(x) / (ag_numel(y) ? ag_numel(y) : 1);
    double scale = op == &op_mean ? 1.0 / (double)count : 1.0;
    if (op == &op_mean) {
        if (count == 0) { /* mean of nothing is NaN, as in PyTorch */
            int64_t n = ag_numel(y);
            for (int64_t i = 0; i < n; i++) {
                if (y->dtype == AG_F64) ((double *)ag__ptr(y))[i] = NAN;
                else ((float *)ag__ptr(y))[i] = NAN;
            }
        } else {
            ag__iter_init(&it, on, oshape);
            ag__iter_add(&it, y);
            ag__iter_add(&it, y);
            ag__iter_run(&it, y->dtype == AG_F64 ? scale_f64 : scale_f32, &scale);
        }
    }
    if (ag__needs_grad1(x)) {
        if (!ag__record(y, op, &x, 1)) return NULL;
        y->attr.i[0] = (int64_t)mask;
        y->attr.a = scale;
    }
    return y;
}

static ag_status sum_backward(ag_tensor *out, ag_tensor *gout) {
    ag_tensor *x = out->in[0];
    uint64_t mask = (uint64_t)out->attr.i[0];
    ag_tensor *gx = ag__new_unowned(x->dtype, x->ndim, x->shape, false);
    if (!gx) return AG_ERR_NOMEM;
    ag_tensor kv;
    keepdim_view(&kv, gout, x, mask);
    ag_iter it;
    ag__iter_init(&it, x->ndim, x->shape);
    ag__iter_add(&it, gx);
    ag__iter_add_reduced(&it, &kv, mask);
    ag__iter_run(&it, x->dtype == AG_F64 ? scale_f64 : scale_f32, &out->attr.a);
    return ag__accumulate(x, gx);
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

static ag_tensor *sum_test_call(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    if (in[0]->ndim < 2) return ag_sum(in[0]);
    int dims[2] = {0, -1};
    return ag_sum_dims(in[0], 2, dims, false);
}

static ag_tensor *mean_test_call(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    if (in[0]->ndim < 2) return ag_mean(in[0]);
    return ag_mean_dim(in[0], -1, true);
}

const ag_op *const ag__reduce_ops[] = {&op_sum, &op_mean, NULL};

/*
 * core/create.c - creating tensors: constant fills, ranges, identity, random, and
 * copies of caller data.
 */
#include <math.h>
#include <string.h>
#include "core/iter.h"

static ag_status check_dtype(const char *op, ag_dtype dtype) {
    if ((unsigned)dtype > AG_U8) return ag__fail(AG_ERR_DTYPE, "%s: unknown dtype %d", op, (int)dtype);
    return AG_OK;
}

static ag_tensor *fill_new(const char *op, ag_shape shape, double value, ag_dtype dtype) {
    if (check_dtype(op, dtype) || ag__check_alloc(op, shape.ndim, shape.dim, dtype)) return NULL;
    ag_tensor *t = ag__new(dtype, shape.ndim, shape.dim);
    if (!t) return NULL;
    const int64_t n = ag_numel(t);
    const size_t es = ag_dtype_size(dtype);
    char *p = ag__ptr(t);
    if (value == 0 && !signbit(value)) { /* -0.0 keeps its sign in a float fill */
        memset(p, 0, (size_t)n * es);
        return t;
    }
    if (n == 0) return t;
    ag__write(t, t->offset, value); /* element 0 in the dtype, then copies of it, doubling */
    for (int64_t done = 1; done < n;) {
        const int64_t k = done < n - done ? done : n - done;
        memcpy(p + (size_t)done * es, p, (size_t)k * es);
        done += k;
    }
    return t;
}

ag_tensor *ag_empty(ag_shape shape, ag_dtype dtype) {
    if (check_dtype("empty", dtype) || ag__check_alloc("empty", shape.ndim, shape.dim, dtype)) return NULL;
    return ag__new(dtype, shape.ndim, shape.dim);
}
ag_tensor *ag_zeros(ag_shape shape, ag_dtype dtype) { return fill_new("zeros", shape, 0, dtype); }
ag_tensor *ag_ones(ag_shape shape, ag_dtype dtype) { return fill_new("ones", shape, 1, dtype); }
ag_tensor *ag_full(ag_shape shape, double value, ag_dtype dtype) { return fill_new("full", shape, value, dtype); }
ag_tensor *ag_scalar(double value, ag_dtype dtype) { return fill_new("scalar", AG_SCALAR_SHAPE, value, dtype); }
ag_tensor *ag_zeros_like(const ag_tensor *t) {
    AG_CHECK_HANDLES(NULL, "zeros_like", t);
    return t ? fill_new("zeros_like", ag_shape_of(t), 0, t->dtype) : NULL;
}

ag_tensor *ag_ones_like(const ag_tensor *t) {
    AG_CHECK_HANDLES(NULL, "ones_like", t);
    return t ? fill_new("ones_like", ag_shape_of(t), 1, t->dtype) : NULL;
}

ag_tensor *ag_full_like(const ag_tensor *t, double value) {
    AG_CHECK_HANDLES(NULL, "full_like", t);
    return t ? fill_new("full_like", ag_shape_of(t), value, t->dtype) : NULL;
}

ag_tensor *ag_arange(double start, double end, double step, ag_dtype dtype) {
    if (step == 0 || !isfinite(start) || !isfinite(end) || !isfinite(step))
        return ag__fail_null(AG_ERR_VALUE, "arange: need finite start, end and a non-zero step (got %g, %g, %g)", start, end, step);
    double span = (end - start) / step; /* +inf when end - start overflows */
    if (span < 0) return ag__fail_null(AG_ERR_ARG, "arange: step %g moves away from end %g", step, end);
    double count = ceil(span);
    if (!(count < 0x1p63)) /* checked as a double: converting it to int64 would be undefined */
        return ag__fail_null(AG_ERR_SHAPE, "arange: %g elements from %g to %g by %g are too many for a tensor", count,
                             start, end, step);
    int64_t n = (int64_t)count;
    ag_tensor *t = fill_new("arange", AG_SHAPE(n), 0, dtype);
    if (t)
        for (int64_t i = 0; i < n; i++) ag__write(t, t->offset + i, start + (double)i * step);
    return t;
}

ag_tensor *ag_linspace(double start, double end, int64_t steps, ag_dtype dtype) {
    if (steps < 0) return ag__fail_null(AG_ERR_ARG, "linspace: steps must be non-negative, got %lld", (long long)steps);
    ag_tensor *t = fill_new("linspace", AG_SHAPE(steps), 0, dtype);
    if (!t) return NULL;
    double step = steps > 1 ? (end - start) / (double)(steps - 1) : 0;
    /* Fill symmetrically from both ends, as PyTorch does, so the last value is exactly end;
     * one step is start, as in PyTorch. */
    for (int64_t i = 0; i < steps; i++)
        ag__write(t, t->offset + i,
                  i < steps / 2 || steps == 1 ? start + step * (double)i : end - step * (double)(steps - 1 - i));
    return t;
}

ag_tensor *ag_eye(int64_t n, ag_dtype dtype) {
    if (n < 0) return ag__fail_null(AG_ERR_ARG, "eye: n must be non-negative, got %lld", (long long)n);
    ag_tensor *t = fill_new("eye", AG_SHAPE(n, n), 0, dtype);
    if (t)
        for (int64_t i = 0; i < n; i++) ag__write(t, t->offset + i * n + i, 1);
    return t;
}

void ag__tangent_zero(ag_tensor *t) {
    ag_tensor *T = t->tangent;
    if (!T) return;
    ag_tensor *z = !T->requires_grad && !ag__has_internal_overlap(T) ? ag__new_unowned(T->dtype, T->ndim, T->shape, true)
                                                                    : NULL;
    if (!z) {
        ag__tangent_set(t, NULL, 0);
        return;
    }
    ag__copy_into(T, z);
    ag__bump_version(T);
    ag__release(z);
}

static ag_tensor *random_fill(ag_tensor *t, double lo, double hi, bool normal) {
    if (!t) return NULL;
    if (t->dtype != AG_F32 && t->dtype != AG_F64)
        return ag__fail_null(AG_ERR_DTYPE, "%s: needs a floating tensor, got %s", normal ? "normal_" : "uniform_",
                             ag_dtype_name(t->dtype));
    if (ag__check_no_internal_overlap(normal ? "normal_" : "uniform_", t) ||
        ag__check_inference_write(normal ? "normal_" : "uniform_", t))
        return NULL;
    ag_tensor *c = ag__contig(t) ? t : ag__new_unowned(t->dtype, t->ndim, t->shape, false);
    if (!c) return NULL;
    ag__rand_fill(ag__ptr(c), c->dtype, ag_numel(c), normal, lo, hi); /* lo + hi·z, or lo + (hi - lo)·u */
    if (c != t) {
        ag__copy_into(t, c);
        ag_release(c);
    }
    ag__bump_version(t);
    ag__tangent_zero(t);
    return t;
}

/* A new tensor of random values; the dtype is checked before anything is made, so
 * that a failure leaves nothing behind. */
static ag_tensor *random_new(const char *op, ag_shape shape, ag_dtype dtype, bool normal) {
    if (check_dtype(op, dtype) || ag__check_alloc(op, shape.ndim, shape.dim, dtype)) return NULL;
    if (dtype != AG_F32 && dtype != AG_F64)
        return ag__fail_null(AG_ERR_DTYPE, "%s: needs a floating tensor, got %s", op, ag_dtype_name(dtype));
    return random_fill(ag__new(dtype, shape.ndim, shape.dim), 0, 1, normal);
}

ag_tensor *ag_rand(ag_shape shape, ag_dtype dtype) { return random_new("rand", shape, dtype, false); }
ag_tensor *ag_randn(ag_shape shape, ag_dtype dtype) { return random_new("randn", shape, dtype, true); }
ag_tensor *ag_uniform_(ag_tensor *t, double lo, double hi) {
    AG_CHECK_HANDLES(NULL, "uniform_", t);
    return random_fill(t, lo, hi, false);
}

ag_tensor *ag_normal_(ag_tensor *t, double mean, double std) {
    AG_CHECK_HANDLES(NULL, "normal_", t);
    return random_fill(t, mean, std, true);
}

ag_tensor *ag_from_data(const void *data, ag_shape shape, ag_dtype dtype) {
    if (check_dtype("from_data", dtype) || ag__check_alloc("from_data", shape.ndim, shape.dim, dtype)) return NULL;
    if (!data && ag__numel(shape.ndim, shape.dim) > 0) return ag__fail_null(AG_ERR_ARG, "from_data: data is NULL");
    ag_tensor *t = ag__new(dtype, shape.ndim, shape.dim);
    if (t && ag_numel(t) > 0) memcpy(ag__ptr(t), data, (size_t)ag_numel(t) * ag_dtype_size(dtype));
    return t;
}

/* ---- reading values ---------------------------------------------------------------- */
double ag_item(const ag_tensor *t) {
    AG_CHECK_HANDLES(NAN, "item", t);
    if (!t) return ag__fail(AG_ERR_ARG, "item: tensor is NULL"), NAN;
    if (ag_numel(t) != 1) {
        char s[AG_SHAPE_STR];
        return ag__fail(AG_ERR_SHAPE, "item: a tensor with %lld elements (shape %s) cannot be converted to a scalar",
                        (long long)ag_numel(t), ag__tshape(s, t)), NAN;
    }
    return ag__read(t, t->offset);
}

double ag_get(const ag_tensor *t, const int64_t *index) {
    AG_CHECK_HANDLES(NAN, "get", t);
    if (!t || (!index && t->ndim)) return ag__fail(AG_ERR_ARG, "get: NULL argument"), NAN;
    int64_t off = t->offset;
    for (int d = 0; d < t->ndim; d++) {
        if (index[d] < 0 || index[d] >= t->shape[d]) {
            char s[AG_SHAPE_STR];
            return ag__fail(AG_ERR_INDEX, "get: index %lld out of range for dim %d of a tensor of shape %s",
                            (long long)index[d], d, ag__tshape(s, t)), NAN;
        }
        off += index[d] * t->stride[d];
    }
    return ag__read(t, off);
}

ag_status ag_copy_to(const ag_tensor *t, void *dst, int64_t capacity, ag_dtype dst_dtype) {
    AG_CHECK_HANDLES(AG_ERR_ARG, "copy_to", t);
    if (!t || !dst) return ag__fail(AG_ERR_ARG, "copy_to: NULL argument");
    if (check_dtype("copy_to", dst_dtype)) return AG_ERR_DTYPE;
    if (capacity < ag_numel(t))
        return ag__fail(AG_ERR_ARG, "copy_to: destination holds %lld elements, the tensor has %lld",
                        (long long)capacity, (long long)ag_numel(t));
    /* A header on the stack viewing dst: nothing to allocate or free. */
    ag_storage storage = {.refcount = 1, .borrowed = true, .data = dst};
    ag_tensor view;
    memset(&view, 0, sizeof view);
    view.ndim = t->ndim;
    view.dtype = dst_dtype;
    memcpy(view.shape, t->shape, sizeof view.shape);
    ag__contiguous_strides(t->ndim, t->shape, view.stride);
    view.storage = &storage;
    ag__copy_into(&view, t);
    return AG_OK;
}

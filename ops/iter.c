/*
 * iter.c - the strided, broadcasting element walker every elementwise kernel
 * and reduction uses, plus broadcasting helpers.
 */
#include <string.h>
#include "iter.h"

void ag__iter_init(ag_iter *it, int ndim, const int64_t *shape) {
    it->ndim = ndim;
    it->nops = 0;
    if (ndim) memcpy(it->shape, shape, sizeof(int64_t) * (size_t)ndim);
}

void ag__iter_add_reduced(ag_iter *it, const ag_tensor *t, uint64_t reduced_mask) {
    int k = it->nops++;
    int64_t es = (int64_t)ag_dtype_size(t->dtype);
    int lead = it->ndim - t->ndim;
    it->base[k] = ag__ptr(t);
    for (int d = 0; d < it->ndim; d++) {
        int td = d - lead;
        bool zero = td < 0 || (reduced_mask >> d & 1) || (t->shape[td] == 1 && it->shape[d] != 1);
        it->stride[k][d] = zero ? 0 : t->stride[td] * es;
    }
}

void ag__iter_add(ag_iter *it, const ag_tensor *t) { ag__iter_add_reduced(it, t, 0); }

void ag__iter_run(ag_iter *it, ag_inner_fn fn, void *ctx) {
    int nops = it->nops;
    /* Drop size-1 dims and merge dim d into d+1 where every operand is contiguous across them. */
    int64_t shape[AG_MAX_DIMS], stride[AG_ITER_MAX][AG_MAX_DIMS];
    int nd = 0;
    for (int d = 0; d < it->ndim; d++) {
        if (it->shape[d] == 0) return;
        if (it->shape[d] == 1) continue;
        if (nd > 0) {
            bool merge = true;
            for (int k = 0; k < nops; k++)
                if (stride[k][nd - 1] != it->stride[k][d] * it->shape[d]) merge = false;
            if (merge) {
                shape[nd - 1] *= it->shape[d];
                for (int k = 0; k < nops; k++) stride[k][nd - 1] = it->stride[k][d];
                continue;
            }
        }
        shape[nd] = it->shape[d];
        for (int k = 0; k < nops; k++) stride[k][nd] = it->stride[k][d];
        nd++;
    }
    char *p[AG_ITER_MAX];
    int64_t step[AG_ITER_MAX];
    for (int k = 0; k < nops; k++) {
        p[k] = it->base[k];
        step[k] = nd ? stride[k][nd - 1] : 0;
    }
    if (nd <= 1) {
        fn(p, step, nd ? shape[0] : 1, ctx);
        return;
    }
    /* Odometer over the outer dims. */
    int64_t idx[AG_MAX_DIMS] = {0};
    int64_t inner = shape[nd - 1];
    for (;;) {
        fn(p, step, inner, ctx);
        int d = nd - 2;
        for (; d >= 0; d--) {
            idx[d]++;
            for (int k = 0; k < nops; k++) p[k] += stride[k][d];
            if (idx[d] < shape[d]) break;
            for (int k = 0; k < nops; k++) p[k] -= stride[k][d] * shape[d];
            idx[d] = 0;
        }
        if (d < 0) return;
    }
}

bool ag__broadcastable(int from_ndim, const int64_t *from, int ndim, const int64_t *shape) {
    if (from_ndim > ndim) return false;
    for (int i = 0; i < from_ndim; i++) {
        int64_t f = from[from_ndim - 1 - i], s = shape[ndim - 1 - i];
        if (f != s && f != 1) return false;
    }
    return true;
}

ag_status ag__broadcast_shape(const char *op, const ag_tensor *a, const ag_tensor *b,
                              int *ndim, int64_t *shape) {
    int n = a->ndim > b->ndim ? a->ndim : b->ndim;
    for (int i = 0; i < n; i++) {
        int ia = a->ndim - n + i, ib = b->ndim - n + i;
        int64_t sa = ia >= 0 ? a->shape[ia] : 1, sb = ib >= 0 ? b->shape[ib] : 1;
        if (sa != sb && sa != 1 && sb != 1) {
            char x[AG_SHAPE_STR], y[AG_SHAPE_STR];
            return ag__fail(AG_ERR_SHAPE, "%s: shapes %s and %s cannot be broadcast (dim %d: %lld vs %lld)",
                            op, ag__tshape(x, a), ag__tshape(y, b), i - n, (long long)sa, (long long)sb);
        }
        shape[i] = sa == 1 ? sb : sa;
    }
    *ndim = n;
    return AG_OK;
}

int ag__tdim(const char *op, int dim, const ag_tensor *t) {
    int n = t->ndim ? t->ndim : 1;
    if (dim < -n || dim >= n) {
        char s[AG_SHAPE_STR];
        return ag__fail(AG_ERR_INDEX, "%s: dim %d out of range for a tensor of shape %s (expected %d to %d)", op, dim,
                        ag__tshape(s, t), -n, n - 1),
               -1;
    }
    return dim < 0 ? dim + n : dim;
}

ag_status ag__check_float(const char *op, const ag_tensor *t, const ag_tensor *other) {
    if (t->dtype != AG_F32 && t->dtype != AG_F64)
        return ag__fail(AG_ERR_DTYPE, "%s: expected a float32 or float64 tensor, got %s (convert with ag_to_dtype)",
                        op, ag_dtype_name(t->dtype));
    if (other && other->dtype != t->dtype)
        return ag__fail(AG_ERR_DTYPE, "%s: dtypes %s and %s differ (convert one with ag_to_dtype)", op,
                        ag_dtype_name(t->dtype), ag_dtype_name(other->dtype));
    return AG_OK;
}

/* ---- sum over broadcast dims ------------------------------------------------------ */
static void acc_f32(char **p, const int64_t *s, int64_t n, void *ctx) {
    (void)ctx;
    if (s[0] == 0) {
        float acc = 0;
        for (int64_t i = 0; i < n; i++) acc += *(const float *)(p[1] + i * s[1]);
        *(float *)p[0] += acc;
    } else {
        for (int64_t i = 0; i < n; i++) *(float *)(p[0] + i * s[0]) += *(const float *)(p[1] + i * s[1]);
    }
}

static void acc_f64(char **p, const int64_t *s, int64_t n, void *ctx) {
    (void)ctx;
    if (s[0] == 0) {
        double acc = 0;
        for (int64_t i = 0; i < n; i++) acc += *(const double *)(p[1] + i * s[1]);
        *(double *)p[0] += acc;
    } else {
        for (int64_t i = 0; i < n; i++) *(double *)(p[0] + i * s[0]) += *(const double *)(p[1] + i * s[1]);
    }
}

void ag__acc_kernel(char **p, const int64_t *s, int64_t n, void *ctx) {
    if (*(const ag_dtype *)ctx == AG_F64) acc_f64(p, s, n, NULL);
    else acc_f32(p, s, n, NULL);
}

ag_tensor *ag__sum_to(const ag_tensor *g, int ndim, const int64_t *to) {
    ag_tensor *out = ag__new_unowned(g->dtype, ndim, to, true);
    if (!out) return NULL;
    ag_iter it;
    ag__iter_init(&it, g->ndim, g->shape);
    ag__iter_add(&it, out);
    ag__iter_add(&it, g);
    ag__iter_run(&it, g->dtype == AG_F64 ? acc_f64 : acc_f32, NULL);
    return out;
}

/* ---- copies with conversion --------------------------------------------------------- */
#define COPY_KERNEL(NAME, TD, TS)                                                      \
    static void NAME(char **p, const int64_t *s, int64_t n, void *ctx) {               \
        (void)ctx;                                                                     \
        for (int64_t i = 0; i < n; i++) *(TD *)(p[0] + i * s[0]) = (TD) * (const TS *)(p[1] + i * s[1]); \
    }
#define COPY_ROW(TD, SUF)                                                              \
    COPY_KERNEL(copy_##SUF##_f32, TD, float)                                           \
    COPY_KERNEL(copy_##SUF##_f64, TD, double)                                          \
    COPY_KERNEL(copy_##SUF##_i64, TD, int64_t)                                         \
    COPY_KERNEL(copy_##SUF##_bool, TD, uint8_t)
COPY_ROW(float, f32)
COPY_ROW(double, f64)
COPY_ROW(int64_t, i64)

static void copy_bool_any(char **p, const int64_t *s, int64_t n, void *ctx) {
    ag_dtype src = *(const ag_dtype *)ctx;
    for (int64_t i = 0; i < n; i++) {
        const char *q = p[1] + i * s[1];
        bool v = src == AG_F32 ? *(const float *)q != 0 : src == AG_F64 ? *(const double *)q != 0
               : src == AG_I64 ? *(const int64_t *)q != 0 : *(const uint8_t *)q != 0;
        *(uint8_t *)(p[0] + i * s[0]) = v;
    }
}

static const ag_inner_fn copy_table[3][4] = {
    {copy_f32_f32, copy_f32_f64, copy_f32_i64, copy_f32_bool},
    {copy_f64_f32, copy_f64_f64, copy_f64_i64, copy_f64_bool},
    {copy_i64_f32, copy_i64_f64, copy_i64_i64, copy_i64_bool},
};

void ag__copy_into(ag_tensor *dst, const ag_tensor *src) {
    ag_iter it;
    ag__iter_init(&it, dst->ndim, dst->shape);
    ag__iter_add(&it, dst);
    ag__iter_add(&it, src);
    ag_dtype sd = src->dtype;
    if (dst->dtype == AG_BOOL) ag__iter_run(&it, copy_bool_any, &sd);
    else ag__iter_run(&it, copy_table[dst->dtype][src->dtype], NULL);
}

ag_tensor *ag__contig_or_copy(ag_tensor *t) {
    if (ag__contig(t)) return ag_retain(t);
    ag_tensor *c = ag__new_unowned(t->dtype, t->ndim, t->shape, false);
    if (c) ag__copy_into(c, t);
    return c;
}

ag_lanes ag__lanes_of(const ag_tensor *x, int d) {
    ag_lanes L = {1, 1, 1};
    for (int k = 0; k < x->ndim; k++) {
        if (k < d) L.outer *= x->shape[k];
        else if (k == d) L.n = x->shape[k];
        else L.inner *= x->shape[k];
    }
    return L;
}

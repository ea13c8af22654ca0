/*
 * sort.c - sorting along one dim: sort, argsort and topk (torch.sort with
 * stable=True, torch.argsort, torch.topk).
 *
 * Each lane of n elements (a stride `inner` apart in the contiguous input, as
 * the reductions of extrema.c see it) is copied into (value, index) pairs and
 * merge-sorted, so that the sort is stable: equal values keep their order, in
 * descending sorts too.  NaN counts as larger than every number, as in
 * PyTorch: last in an ascending sort, first in a descending one, and the first
 * pick of a largest topk.  Values are compared in float64 (float32 values
 * convert exactly, so both dtypes give the same order).  The adjoint of sort
 * and topk puts dy back where each value came from: dx[idx[k]] = dy[k].
 */
#include <math.h>
#include <string.h>
#include "core/iter.h"
#include "autograd/tape.h"
#include "agrad/ops.h"

typedef struct pair {
    double v;
    int64_t i;
} pair;

/* a goes strictly before b: ascending with NaN last, or descending with NaN first. */
static inline bool before(double a, double b, bool descending) {
    if (descending) return !isnan(b) && (isnan(a) || a > b);
    return !isnan(a) && (isnan(b) || a < b);
}

/* Stable bottom-up merge sort of the n pairs p (tmp: room for n more); returns the sorted run. */
static pair *merge_sort(pair *p, pair *tmp, int64_t n, bool descending) {
    for (int64_t w = 1; w < n; w *= 2) {
        for (int64_t lo = 0; lo < n; lo += 2 * w) {
            int64_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
            int64_t a = lo, b = mid, o = lo;
            while (a < mid && b < hi) tmp[o++] = before(p[b].v, p[a].v, descending) ? p[b++] : p[a++];
            while (a < mid) tmp[o++] = p[a++];
            while (b < hi) tmp[o++] = p[b++];
        }
        pair *t = p;
        p = tmp;
        tmp = t;
    }
    return p;
}

/* Sorts each lane of the contiguous x and writes its first m (of L.n) sorted values into val
 * and their indices into idx (either may be NULL), as [outer, m, inner] arrays. */
static ag_status sort_lanes(const ag_tensor *x, ag_lanes L, int64_t m, bool descending, char *val, int64_t *idx) {
    if (L.outer == 0 || L.n == 0 || m == 0) return AG_OK;
    pair *buf = ag__alloc_n(2 * L.n, sizeof(pair));
    if (!buf) return AG_ERR_NOMEM;
    const bool f64 = x->dtype == AG_F64;
    const double *xd = (const double *)ag__ptr(x);
    const float *xf = (const float *)ag__ptr(x);
    for (int64_t o = 0; o < L.outer; o++)
        for (int64_t i = 0; i < L.inner; i++) {
            const int64_t base = o * L.n * L.inner + i, out = o * m * L.inner + i;
            for (int64_t k = 0; k < L.n; k++)
                buf[k] = (pair){f64 ? xd[base + k * L.inner] : (double)xf[base + k * L.inner], k};
            const pair *s = merge_sort(buf, buf + L.n, L.n, descending);
            for (int64_t k = 0; k < m; k++) {
                const int64_t at = out + k * L.inner;
                if (val && f64) ((double *)val)[at] = s[k].v;
                else if (val) ((float *)val)[at] = (float)s[k].v;
                if (idx) idx[at] = s[k].i;
            }
        }
    ag__free(buf);
    return AG_OK;
}

/* ---- sort, topk and their adjoint ------------------------------------------------------------- */
static ag_status pick_backward(ag_tensor *out, ag_tensor *gout);
/* y = x sorted along d (stable), idx where each came from;  dx[idx[k]] = dy[k] */
static const ag_op op_sort = {"sort", "SortBackward0", pick_backward, 0,
                              "y = x sorted along d (stable; NaN largest), y_k = x[idx_k];  dx[idx_k] = dy_k"};
/* y = the k largest (smallest) along d, sorted;  dx[idx[k]] = dy[k], 0 elsewhere */
static const ag_op op_topk = {"topk", "TopkBackward0", pick_backward, 0,
                              "y = the k largest (smallest) x along d, y_j = x[idx_j];  dx[idx_j] = dy_j, 0 elsewhere"};
/* i = the indices that sort x along d;  not differentiable */
static const ag_op op_argsort = {"argsort", NULL, NULL, 0, "i = the indices that sort x along d (stable; int64);  no gradient"};

/* The m first of each sorted lane of x along dim d: values (unless op is argsort) and, when
 * idx_out or the graph needs them, indices.  m == L.n for sort and argsort. */
static ag_tensor *pick(const ag_op *op, ag_tensor *x, int d, int64_t m, bool descending, ag_tensor **idx_out) {
    const bool values = op != &op_argsort, record = values && ag__needs_grad1(x);
    int64_t shape[AG_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    if (x->ndim) shape[d] = m;
    ag_lanes L = ag__lanes_of(x, d);
    ag_tensor *xc = ag__contig_or_copy(x);
    ag_tensor *y = xc ? ag__new(values ? x->dtype : AG_I64, x->ndim, shape) : NULL;
    /* argsort writes its result as indices; sort and topk keep them unowned (for the graph,
     * and copied for the caller, whose copy may be changed without harming backward) */
    const bool want_idx = !values || record || idx_out;
    ag_tensor *idx = !values ? y : y && want_idx ? ag__new_unowned(AG_I64, x->ndim, shape, false) : NULL;
    ag_tensor *given = idx_out && values && idx ? ag__new(AG_I64, x->ndim, shape) : NULL;
    ag_status st = !y || (want_idx && !idx) || (idx_out && values && !given) ? AG_ERR_NOMEM : AG_OK;
    if (!st)
        st = sort_lanes(xc, L, m, descending, values ? ag__ptr(y) : NULL, idx ? (int64_t *)ag__ptr(idx) : NULL);
    ag_release(xc);
    if (st) {
        if (values) ag_release(idx);
        ag__discard(y);
        ag__discard(given);
        return ag__fail_null(AG_ERR_NOMEM, "%s: out of memory", op->name);
    }
    if (!values) return y;
    if (given) memcpy(ag__ptr(given), ag__ptr(idx), sizeof(int64_t) * (size_t)ag_numel(idx));
    if (record) {
        if (!ag__record_saved(y, op, &x, 1, idx)) {
            ag__discard(given);
            return NULL;
        }
        y->attr.i[0] = d;
    } else {
        ag_release(idx); /* NULL when nobody wanted it */
    }
    if (idx_out) *idx_out = given;
    return y;
}

/* dx = 0, then dx[o, idx[o,k,i], i] += dy[o,k,i] over the m picked of each lane. */
static ag_status pick_backward(ag_tensor *out, ag_tensor *gout) {
    ag_tensor *x = out->in[0];
    const int d = (int)out->attr.i[0];
    ag_lanes L = ag__lanes_of(x, d);
    const int64_t m = out->ndim ? out->shape[d] : 1;
    ag_tensor *gx = ag__new_unowned(x->dtype, x->ndim, x->shape, true);
    if (!gx) return AG_ERR_NOMEM;
    const int64_t *idx = (const int64_t *)ag__ptr(out->saved);
    const size_t es = ag__esize(x->dtype);
    for (int64_t o = 0; o < L.outer; o++)
        for (int64_t k = 0; k < m; k++)
            for (int64_t i = 0; i < L.inner; i++) {
                const int64_t r = (o * m + k) * L.inner + i; /* each index once per lane: a copy */
                memcpy(ag__ptr(gx) + (size_t)((o * L.n + idx[r]) * L.inner + i) * es, ag__ptr(gout) + (size_t)r * es, es);
            }
    return ag__accumulate(x, gx);
}

ag_tensor *ag_sort(ag_tensor *x, int dim, bool descending, ag_tensor **indices) {
    AG_CHECK_HANDLES(NULL, "sort", x);
    if (indices) *indices = NULL;
    if (!x || ag__check_float("sort", x, NULL)) return NULL;
    int d = ag__dim("sort", dim, x->ndim);
    if (d < 0) return NULL;
    return pick(&op_sort, x, d, x->ndim ? x->shape[d] : 1, descending, indices);
}

ag_tensor *ag_argsort(ag_tensor *x, int dim, bool descending) {
    AG_CHECK_HANDLES(NULL, "argsort", x);
    if (!x || ag__check_float("argsort", x, NULL)) return NULL;
    int d = ag__dim("argsort", dim, x->ndim);
    if (d < 0) return NULL;
    return pick(&op_argsort, x, d, x->ndim ? x->shape[d] : 1, descending, NULL);
}

ag_tensor *ag_topk(ag_tensor *x, int64_t k, int dim, bool largest, bool sorted, ag_tensor **indices) {
    AG_CHECK_HANDLES(NULL, "topk", x);
    if (indices) *indices = NULL;
    (void)sorted; /* the k picked are always returned sorted, which sorted=False allows */
    if (!x || ag__check_float("topk", x, NULL)) return NULL;
    int d = ag__dim("topk", dim, x->ndim);
    if (d < 0) return NULL;
    const int64_t n = x->ndim ? x->shape[d] : 1;
    if (k < 0 || k > n) {
        char s[AG_SHAPE_STR];
        return ag__fail_null(AG_ERR_INDEX, "topk: k %lld is out of range for dim %d of size %lld (shape %s)",
                             (long long)k, dim, (long long)n, ag__tshape(s, x));
    }
    /* a 0-d x gives itself for k 0 and 1, as PyTorch */
    return pick(&op_topk, x, d, x->ndim ? k : 1, largest, indices);
}

const ag_op *const ag__sort_ops[] = {&op_sort, &op_argsort, &op_topk, NULL};

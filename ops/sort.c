/*
 * sort.c - sorting along one dim and the selections it gives: sort, argsort,
 * topk, kthvalue and median (torch.sort with stable=True, torch.argsort,
 * torch.topk, torch.kthvalue, torch.median).
 *
 * Each lane of n elements (a stride `inner` apart in the contiguous input, as
 * the reductions of extrema.c see it) is copied into (value, index) pairs and
 * merge-sorted, so that the sort is stable: equal values keep their order, in
 * descending sorts too.  NaN counts as larger than every number, as in
 * PyTorch: last in an ascending sort, first in a descending one, and the first
 * pick of a largest topk.  Values are compared in float64 (float32 values
 * convert exactly, so both dtypes give the same order).  The adjoint of the
 * ops along a dim puts dy back where each value came from: dx[idx[k]] = dy[k].
 * Among equal values kthvalue and median pick the one the stable order puts at
 * their position (PyTorch's choice among ties is unspecified); a lane holding
 * NaN has median NaN, at its first NaN, as PyTorch.  Under create_graph the
 * adjoint is scatter_add of dy into zeros at the saved indices (ops/extrema.h).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "core/iter.h"
#include "autograd/tape.h"
#include "ops/jvp.h"
#include "ops/extrema.h"
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

/* a goes after b in the stable order (values by `before`, equal values by index): a total order. */
static inline bool after(pair a, pair b, bool descending) {
    return before(b.v, a.v, descending) || (!before(a.v, b.v, descending) && a.i > b.i);
}

/* Restores the heap below h[at] (h[0] the pair that goes last of the n kept). */
static void sift_down(pair *h, int64_t n, int64_t at, bool descending) {
    for (;;) {
        int64_t c = 2 * at + 1;
        if (c >= n) return;
        if (c + 1 < n && after(h[c + 1], h[c], descending)) c++;
        if (!after(h[c], h[at], descending)) return;
        pair t = h[c];
        h[c] = h[at], h[at] = t, at = c;
    }
}

/* The first k pairs of the stable order of p[0..n), in that order, written over h[0..k)
 * (k <= n): a heap of the k best so far, whose root goes last among them, then emptied
 * from the back.  O(n log k) instead of the whole sort's O(n log n), for topk and kthvalue
 * with k small against the lane. */
static void first_k(const pair *p, int64_t n, int64_t k, bool descending, pair *h) {
    for (int64_t j = 0; j < k; j++) h[j] = p[j];
    for (int64_t j = k / 2 - 1; j >= 0; j--) sift_down(h, k, j, descending);
    for (int64_t j = k; j < n; j++)
        if (after(h[0], p[j], descending)) {
            h[0] = p[j];
            sift_down(h, k, 0, descending);
        }
    for (int64_t m = k - 1; m > 0; m--) { /* the root goes last: move it behind the heap */
        pair t = h[0];
        h[0] = h[m], h[m] = t;
        sift_down(h, m, 0, descending);
    }
}

/* What to keep of each sorted lane: m values from position first on (or, for a median, the
 * one at the lower middle, or at the first NaN), in descending order or not. */
typedef struct selection {
    int64_t m, first;
    bool descending, median;
} selection;

/* Sorts each lane of the contiguous x and writes the selected sorted values into val and
 * their indices into idx (either may be NULL), as [outer, m, inner] arrays. */
static ag_status sort_lanes(const ag_tensor *x, ag_lanes L, selection sel, char *val, int64_t *idx) {
    if (L.outer == 0 || L.n == 0 || sel.m == 0) return AG_OK;
    pair *buf = ag__alloc_n(2 * L.n, sizeof(pair));
    if (!buf) return AG_ERR_NOMEM;
    const bool f64 = x->dtype == AG_F64;
    const double *xd = (const double *)ag__ptr(x);
    const float *xf = (const float *)ag__ptr(x);
    for (int64_t o = 0; o < L.outer; o++)
        for (int64_t i = 0; i < L.inner; i++) {
            const int64_t base = o * L.n * L.inner + i, out = o * sel.m * L.inner + i;
            for (int64_t k = 0; k < L.n; k++)
                buf[k] = (pair){f64 ? xd[base + k * L.inner] : (double)xf[base + k * L.inner], k};
            const int64_t keep = sel.first + sel.m; /* the sorted prefix the selection reads */
            const pair *s;
            if (!sel.median && keep * 8 <= L.n) {
                first_k(buf, L.n, keep, sel.descending, buf + L.n);
                s = buf + L.n;
            } else {
                s = merge_sort(buf, buf + L.n, L.n, sel.descending);
            }
            int64_t first = sel.first;
            if (sel.median) { /* ascending: NaNs last; the first of them if any */
                int64_t nans = 0;
                while (nans < L.n && isnan(s[L.n - 1 - nans].v)) nans++;
                first = nans ? L.n - nans : (L.n - 1) / 2;
            }
            for (int64_t k = 0; k < sel.m; k++) {
                const int64_t at = out + k * L.inner;
                if (val && f64) ((double *)val)[at] = s[first + k].v;
                else if (val) ((float *)val)[at] = (float)s[first + k].v;
                if (idx) idx[at] = s[first + k].i;
            }
        }
    ag__free(buf);
    return AG_OK;
}

/* ---- sort, topk and their adjoint ------------------------------------------------------------- */
static ag_status pick_backward(ag_tensor *out, ag_tensor *gout);
/* y = x sorted along d (stable), idx where each came from;  dx[idx[k]] = dy[k] */
/* dy = dx at the picked indices (gather along d) */
static ag_tensor *pick_jvp(ag_tensor *out, ag_tensor *const *tin) {
    return ag__jvp_pick(out, tin[0], out->saved, (int)out->attr.i[0]);
}
/* dy = Σ dx·[x = y] / #{x = y} */
static ag_tensor *median_jvp(ag_tensor *out, ag_tensor *const *tin) { return ag__jvp_tie_split(out, tin[0]); }

static const ag_op op_sort = {"sort", "SortBackward0", pick_backward, 0,
                              "y = x sorted along d (stable; NaN largest), y_k = x[idx_k];  dx[idx_k] = dy_k", ag__pick_backward_graph, NULL, pick_jvp, "ẏ_k = ẋ[idx_k] along d"};
/* y = the k largest (smallest) along d, sorted;  dx[idx[k]] = dy[k], 0 elsewhere */
static const ag_op op_topk = {"topk", "TopkBackward0", pick_backward, 0,
                              "y = the k largest (smallest) x along d, y_j = x[idx_j];  dx[idx_j] = dy_j, 0 elsewhere", ag__pick_backward_graph, NULL, pick_jvp, "ẏ_j = ẋ[idx_j] along d"};
/* i = the indices that sort x along d;  not differentiable */
static const ag_op op_argsort = {"argsort", NULL, NULL, 0, "i = the indices that sort x along d (stable; int64);  no gradient", NULL, NULL, NULL, NULL};

static const ag_op op_kthvalue = {"kthvalue", "KthvalueBackward0", pick_backward, 0,
                                  "y = the k-th smallest x along d, at index i;  dx[i] = dy, 0 elsewhere", ag__pick_backward_graph, NULL, pick_jvp, "ẏ = ẋ[i] along d"};
static const ag_op op_median_dim = {"median_dim", "MedianBackward1", pick_backward, 0,
                                    "y = the lower median of x along d (NaN if any), at index i;  dx[i] = dy, 0 elsewhere", ag__pick_backward_graph, NULL, pick_jvp, "ẏ = ẋ[i] along d"};

/* The selection sel of each sorted lane of x along dim d: values (unless op is argsort) and,
 * when idx_out or the graph needs them, indices.  The result has x's shape with dim d of
 * size sel.m, or with d dropped when reduce (kthvalue, median) and !keepdim. */
static ag_tensor *pick(const ag_op *op, ag_tensor *x, int d, selection sel, bool reduce, bool keepdim,
                       ag_tensor **idx_out) {
    const bool values = op != &op_argsort, record = values && ag__needs_grad1(x);
    int64_t shape[AG_MAX_DIMS];
    int ndim = 0;
    for (int k = 0; k < x->ndim; k++)
        if (k != d) shape[ndim++] = x->shape[k];
        else if (!reduce || keepdim) shape[ndim++] = sel.m;
    ag_lanes L = ag__lanes_of(x, d);
    ag_tensor *xc = ag__contig_or_copy(x);
    ag_tensor *y = xc ? ag__new(values ? x->dtype : AG_I64, ndim, shape) : NULL;
    /* argsort writes its result as indices; the others keep them unowned (for the graph,
     * and copied for the caller, whose copy may be changed without harming backward) */
    const bool want_idx = !values || record || idx_out;
    ag_tensor *idx = !values ? y : y && want_idx ? ag__new_unowned(AG_I64, ndim, shape, false) : NULL;
    ag_tensor *given = idx_out && values && idx ? ag__new(AG_I64, ndim, shape) : NULL;
    ag_status st = !y || (want_idx && !idx) || (idx_out && values && !given) ? AG_ERR_NOMEM : AG_OK;
    if (!st) st = sort_lanes(xc, L, sel, values ? ag__ptr(y) : NULL, idx ? (int64_t *)ag__ptr(idx) : NULL);
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
        y->attr.i[1] = sel.m;
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
    const int64_t m = out->attr.i[1]; /* out is [outer, m, inner], whether or not it keeps dim d */
    if (m == 0) L.outer = 0; /* nothing picked: no lane to walk, however many */
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
    return pick(&op_sort, x, d, (selection){x->ndim ? x->shape[d] : 1, 0, descending, false}, false, false, indices);
}

ag_tensor *ag_argsort(ag_tensor *x, int dim, bool descending) {
    AG_CHECK_HANDLES(NULL, "argsort", x);
    if (!x || ag__check_float("argsort", x, NULL)) return NULL;
    int d = ag__dim("argsort", dim, x->ndim);
    if (d < 0) return NULL;
    return pick(&op_argsort, x, d, (selection){x->ndim ? x->shape[d] : 1, 0, descending, false}, false, false, NULL);
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
    return pick(&op_topk, x, d, (selection){x->ndim ? k : 1, 0, largest, false}, false, false, indices);
}

ag_tensor *ag_kthvalue(ag_tensor *x, int64_t k, int dim, bool keepdim, ag_tensor **indices) {
    AG_CHECK_HANDLES(NULL, "kthvalue", x);
    if (indices) *indices = NULL;
    if (!x || ag__check_float("kthvalue", x, NULL)) return NULL;
    int d = ag__dim("kthvalue", dim, x->ndim);
    if (d < 0) return NULL;
    const int64_t n = x->ndim ? x->shape[d] : 1;
    if (k < 1 || k > n) {
        char s[AG_SHAPE_STR];
        return ag__fail_null(AG_ERR_INDEX, "kthvalue: k %lld is out of range for dim %d of size %lld (shape %s)",
                             (long long)k, dim, (long long)n, ag__tshape(s, x));
    }
    return pick(&op_kthvalue, x, d, (selection){1, k - 1, false, false}, true, keepdim, indices);
}

ag_tensor *ag_median_dim(ag_tensor *x, int dim, bool keepdim, ag_tensor **indices) {
    AG_CHECK_HANDLES(NULL, "median_dim", x);
    if (indices) *indices = NULL;
    if (!x || ag__check_float("median_dim", x, NULL)) return NULL;
    int d = ag__dim("median_dim", dim, x->ndim);
    if (d < 0) return NULL;
    if (x->ndim && x->shape[d] == 0) {
        char s[AG_SHAPE_STR];
        return ag__fail_null(AG_ERR_SHAPE, "median_dim: cannot reduce the empty dim %d of a tensor of shape %s", dim,
                             ag__tshape(s, x));
    }
    return pick(&op_median_dim, x, d, (selection){1, 0, false, true}, true, keepdim, indices);
}

/* ---- median of all elements --------------------------------------------------------------------- */
/* y = the lower median of all x (NaN if any);  dx = dy split evenly over the x equal to y */
static const ag_op op_median = {"median", "MedianBackward0", ag__tie_split_backward, AG_SAVES_IN0 | AG_SAVES_OUT,
                                "y = the lower median of all x (NaN if any);  dx = dy·[x = y] / #{x = y} (even split over ties)", ag__tie_split_backward_graph, NULL, median_jvp,
                                "ẏ = Σ ẋ·[x = y] / #{x = y} (the mean tangent over ties; over the NaNs when y is NaN)"};

ag_tensor *ag_median(ag_tensor *x) {
    AG_CHECK_HANDLES(NULL, "median", x);
    if (!x || ag__check_float("median", x, NULL)) return NULL;
    ag_tensor *y = ag__new(x->dtype, 0, NULL);
    if (!y) return NULL;
    if (ag_numel(x) == 0) { /* as PyTorch: NaN */
        if (x->dtype == AG_F64) *(double *)ag__ptr(y) = NAN;
        else *(float *)ag__ptr(y) = NAN;
    } else {
        ag_tensor *xc = ag__contig_or_copy(x);
        ag_status st = xc ? sort_lanes(xc, (ag_lanes){1, ag_numel(x), 1}, (selection){1, 0, false, true}, ag__ptr(y), NULL)
                          : AG_ERR_NOMEM;
        ag_release(xc);
        if (st) {
            ag__discard(y);
            return ag__fail_null(AG_ERR_NOMEM, "median: out of memory");
        }
    }
    if (ag__needs_grad1(x) && ag_numel(x) > 0 && !ag__record(y, &op_median, &x, 1)) return NULL;
    return y;
}

/* ---- nanmedian of all elements ------------------------------------------------------------------ */
static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* y = the lower median of the x that are not NaN (NaN if all are);  dx = dy split evenly over the x equal to y */
static const ag_op op_nanmedian = {"nanmedian", "NanmedianBackward0", ag__tie_split_backward, AG_SAVES_IN0 | AG_SAVES_OUT,
                                   "y = the lower median of the x not NaN (NaN if none);  dx = dy·[x = y] / #{x = y} (even split over ties; over the NaN when y is NaN)",
                                   ag__tie_split_backward_graph, NULL, median_jvp,
                                   "ẏ = Σ ẋ·[x = y] / #{x = y} (the mean tangent over ties; over the NaNs when y is NaN)"};

ag_tensor *ag_nanmedian(ag_tensor *x) {
    AG_CHECK_HANDLES(NULL, "nanmedian", x);
    if (!x || ag__check_float("nanmedian", x, NULL)) return NULL;
    const int64_t n = ag_numel(x);
    ag_tensor *y = ag__new(x->dtype, 0, NULL), *xc = y ? ag__contig_or_copy(x) : NULL;
    double *v = xc ? ag__alloc_n(n + 1, sizeof(double)) : NULL;
    if (!v) {
        if (y) ag__discard(y);
        ag_release(xc);
        return ag__fail_null(AG_ERR_NOMEM, "nanmedian: out of memory");
    }
    int64_t k = 0; /* the values that are not NaN, sorted */
    for (int64_t i = 0; i < n; i++) {
        double e = ag__read(xc, xc->offset + i);
        if (!isnan(e)) v[k++] = e;
    }
    if (k > 1) qsort(v, (size_t)k, sizeof *v, by_value);
    ag__write(y, y->offset, k ? v[(k - 1) / 2] : NAN); /* as PyTorch: NaN for an empty x or one of NaN only */
    ag__free(v);
    ag_release(xc);
    if (ag__needs_grad1(x) && n > 0 && !ag__record(y, &op_nanmedian, &x, 1)) return NULL;
    return y;
}

const ag_op *const ag__sort_ops[] = {&op_sort, &op_argsort, &op_topk, &op_kthvalue, &op_median_dim, &op_median, &op_nanmedian, NULL};

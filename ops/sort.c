/*
 * sort.c - sorting along one dim and the selections it gives: sort, argsort,
 * topk, kthvalue and median (torch.sort with stable=True, torch.argsort,
 * torch.topk, torch.kthvalue, torch.median).
 *
 * Each lane of n elements (a stride `inner` apart in the contiguous input, as
 * the reductions of extrema.c see it) becomes (key, index) items sorted by
 * ops/lanesort.c: a stable radix sort of keys whose unsigned order is the
 * values' order, so equal values keep their order, in descending sorts too.
 * NaN counts as larger than every number, as in PyTorch: last in an ascending
 * sort, first in a descending one, and the first pick of a largest topk; -0.0
 * and 0.0 are equal.  topk and kthvalue with k at most an eighth of the lane
 * keep a bounded heap of the first k instead; one item (kthvalue, median) comes
 * from a quickselect (ops/keyselect.c: of keys alone for the medians of all
 * elements, of key and index packed for float32 lanes of 48 and more) or a
 * radix select, the stable order's item either way.  Lanes are shared out over
 * threads (one lane alone is split over them), with results independent of the
 * thread count.  The adjoint of the ops along a dim puts dy back where each
 * value came from: dx[idx[k]] = dy[k].
 * Among equal values kthvalue and median pick the one the stable order puts at
 * their position (PyTorch's choice among ties is unspecified); a lane holding
 * NaN has median NaN, at its first NaN, as PyTorch.  Under create_graph the
 * adjoint is scatter_add of dy into zeros at the saved indices (ops/extrema.h).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>
#include "core/iter.h"
#include "core/parallel.h"
#include "ops/lanesort.h"
#include "ops/keyselect.h"
#include "autograd/tape.h"
#include "ops/jvp.h"
#include "ops/extrema.h"
#include "agrad/ops.h"

/* What to keep of each sorted lane: m values from position first on (or, for a median, the
 * one at the lower middle, or at the first NaN), in descending order or not. */
typedef struct selection {
    int64_t m, first;
    bool descending, median;
} selection;

/* Whether element k of a lane starting at base (float32 or float64, as x) is NaN. */
static inline bool nan_at(const ag_tensor *x, const char *base, int64_t k) {
    return x->dtype == AG_F64 ? isnan(((const double *)base)[k]) : isnan(((const float *)base)[k]);
}

/* Lane `lane` (o * inner + i) of the contiguous x: sorted, or its first few picked by a bounded
 * heap, or its one selected item (kthvalue, median) found by a quickselect (float32 lanes of
 * AG_SELECT_LANE_MIN or more, ops/keyselect.h) or a radix select, in the scratch it, tmp (n items
 * each, one block), the selection written into val and idx (either may be NULL) at [o, k, i] of an
 * [outer, m, inner] array.  Returns false (out of memory) only if the quickselect's fallback could
 * not have its scratch. */
static bool sort_lane(const ag_tensor *x, ag_lanes L, selection sel, int64_t lane, ag_sort_item *it,
                      ag_sort_item *tmp, int threads, char *val, int64_t *idx) {
    const int64_t o = lane / L.inner, i = lane % L.inner, n = L.n;
    const size_t es = ag__esize(x->dtype);
    const char *base = ag__ptr(x) + (size_t)(o * n * L.inner + i) * es; /* element k at base + k * inner */
    int64_t first = sel.first, nan = -1;
    if (sel.median) /* ascending, NaNs last: the first NaN if any (equal keys keep index order) */
        for (int64_t k = 0; k < n && nan < 0; k++)
            if (nan_at(x, base, k * L.inner)) nan = k;
    const ag_sort_item *s = it;
    if (nan < 0) {
        if (sel.median) first = (n - 1) / 2;
        const int64_t keep = first + sel.m; /* the sorted prefix the selection reads */
        if (sel.median || (sel.m == 1 && keep * 8 > n)) { /* one item: a quickselect or a radix select */
            if (x->dtype == AG_F32 && !sel.descending && n >= AG_SELECT_LANE_MIN && n <= UINT32_MAX) /* key, index: one uint64 */
                it[0].idx = ag__select_lane_f32((const float *)(const void *)base, n, L.inner, first,
                                                (uint64_t *)(void *)it); /* it and tmp: 4n uint64 */
            else
                it[0] = ag__sort_select_lane(base, x->dtype, n, L.inner, sel.descending, first, it, tmp);
            if (it[0].idx < 0) return false;
            first = 0;
        } else if (keep * 8 <= n) {
            ag__sort_first_k_lane(base, x->dtype, n, L.inner, sel.descending, keep, it, tmp);
        } else {
            ag__sort_fill(it, base, x->dtype, n, L.inner, sel.descending);
            s = ag__sort_items_par(it, tmp, n, ag__sort_key_bytes(x->dtype), threads);
        }
    }
    const int64_t out = o * sel.m * L.inner + i;
    for (int64_t k = 0; k < sel.m; k++) {
        const int64_t at = out + k * L.inner, from = nan >= 0 ? nan : s[first + k].idx;
        if (val) memcpy(val + (size_t)at * es, base + (size_t)(from * L.inner) * es, es);
        if (idx) idx[at] = from;
    }
    return true;
}

/* Sorts each lane of the contiguous x and writes the selected sorted values into val and
 * their indices into idx (either may be NULL), as [outer, m, inner] arrays.  Lanes are
 * shared out over threads, each with its own scratch; a lane alone (or fewer lanes than
 * threads) is sorted by all threads.  Every lane is sorted alike whatever the split, so
 * the result does not depend on the thread count. */
static ag_status sort_lanes(const ag_tensor *x, ag_lanes L, selection sel, char *val, int64_t *idx) {
    if (L.outer == 0 || L.n == 0 || L.inner == 0 || sel.m == 0) return AG_OK;
    const int64_t lanes = L.outer * L.inner;
    int threads = ag__sort_threads(lanes * L.n);
    const bool by_lane = threads > 1 && lanes >= threads;
    const int teams = by_lane ? threads : 1; /* scratch sets: one per thread sharing out lanes */
    ag_sort_item *buf = ag__alloc_n(2 * L.n * teams, sizeof(ag_sort_item));
    if (!buf) return AG_ERR_NOMEM;
    bool ok = true; /* false: a lane's select could not have its fallback's scratch */
    if (!by_lane) {
        for (int64_t lane = 0; lane < lanes && ok; lane++) ok = sort_lane(x, L, sel, lane, buf, buf + L.n, threads, val, idx);
    } else {
#pragma omp parallel num_threads(threads)
        {
            const int t = omp_get_thread_num(), nt = omp_get_num_threads();
            ag_sort_item *it = buf + 2 * L.n * t;
            for (int64_t lane = ag__share_start(lanes, t, nt); lane < ag__share_start(lanes, t + 1, nt); lane++)
                if (!sort_lane(x, L, sel, lane, it, it + L.n, 1, val, idx)) {
#pragma omp atomic write
                    ok = false;
                }
        }
    }
    ag__free(buf);
    return ok ? AG_OK : AG_ERR_NOMEM;
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

static const ag_op op_sort = {.name = "sort", .grad_fn = "SortBackward0", .backward = pick_backward,
                              .math = "y = x sorted along d (stable; NaN largest), y_k = x[idx_k];  dx[idx_k] = dy_k",
                              .backward_graph = ag__pick_backward_graph, .jvp = pick_jvp,
                              .tangent = "ẏ_k = ẋ[idx_k] along d"};
/* y = the k largest (smallest) along d, sorted;  dx[idx[k]] = dy[k], 0 elsewhere */
static const ag_op op_topk = {.name = "topk", .grad_fn = "TopkBackward0", .backward = pick_backward,
                              .math = "y = the k largest (smallest) x along d, y_j = x[idx_j];  "
                                      "dx[idx_j] = dy_j, 0 elsewhere",
                              .backward_graph = ag__pick_backward_graph, .jvp = pick_jvp,
                              .tangent = "ẏ_j = ẋ[idx_j] along d"};
/* i = the indices that sort x along d;  not differentiable */
static const ag_op op_argsort = {.name = "argsort",
                                 .math = "i = the indices that sort x along d (stable; int64);  no gradient"};

static const ag_op op_kthvalue = {.name = "kthvalue", .grad_fn = "KthvalueBackward0", .backward = pick_backward,
                                  .math = "y = the k-th smallest x along d, at index i;  dx[i] = dy, 0 elsewhere",
                                  .backward_graph = ag__pick_backward_graph, .jvp = pick_jvp,
                                  .tangent = "ẏ = ẋ[i] along d"};
static const ag_op op_median_dim = {.name = "median_dim", .grad_fn = "MedianBackward1", .backward = pick_backward,
                                    .math = "y = the lower median of x along d (NaN if any), at index i;  "
                                            "dx[i] = dy, 0 elsewhere",
                                    .backward_graph = ag__pick_backward_graph, .jvp = pick_jvp,
                                    .tangent = "ẏ = ẋ[i] along d"};

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

/* Block of a lane row that one thread's share of the adjoint copies at a time. */
#define PICK_BLOCK 256

/* dx = 0, then dx[o, idx[o,k,i], i] = dy[o,k,i] over the m picked of each lane (each index once
 * per lane, so a copy; a whole sort writes every element, so dx needs no zeros first).  Split
 * over threads by (o, block of inner) units, which write disjoint parts of dx. */
static ag_status pick_backward(ag_tensor *out, ag_tensor *gout) {
    ag_tensor *x = out->in[0];
    const int d = (int)out->attr.i[0];
    ag_lanes L = ag__lanes_of(x, d);
    const int64_t m = out->attr.i[1]; /* out is [outer, m, inner], whether or not it keeps dim d */
    if (m == 0) L.outer = 0; /* nothing picked: no lane to walk, however many */
    ag_tensor *gx = ag__new_unowned(x->dtype, x->ndim, x->shape, m < L.n);
    if (!gx) return AG_ERR_NOMEM;
    const int64_t *idx = (const int64_t *)ag__ptr(out->saved);
    const bool f64 = x->dtype == AG_F64;
    char *gxp = ag__ptr(gx);
    const char *gyp = ag__ptr(gout);
    const int64_t blocks = (L.inner + PICK_BLOCK - 1) / PICK_BLOCK, units = L.outer * blocks;
    const int threads = ag__threads_for(L.outer * m * L.inner);
    AG_PARALLEL_FOR(threads, schedule(static), for (int64_t u = 0; u < units; u++) {
        const int64_t o = u / blocks, i0 = u % blocks * PICK_BLOCK;
        const int64_t i1 = i0 + PICK_BLOCK < L.inner ? i0 + PICK_BLOCK : L.inner;
        for (int64_t k = 0; k < m; k++)
            for (int64_t i = i0; i < i1; i++) {
                const int64_t r = (o * m + k) * L.inner + i, w = (o * L.n + idx[r]) * L.inner + i;
                if (f64) ((double *)gxp)[w] = ((const double *)gyp)[r];
                else ((float *)gxp)[w] = ((const float *)gyp)[r];
            }
    });
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
static const ag_op op_median = {.name = "median", .grad_fn = "MedianBackward0", .backward = ag__tie_split_backward,
                                .saves = AG_SAVES_IN0 | AG_SAVES_OUT,
                                .math = "y = the lower median of all x (NaN if any);  "
                                        "dx = dy·[x = y] / #{x = y} (even split over ties)",
                                .backward_graph = ag__tie_split_backward_graph, .jvp = median_jvp,
                                .tangent = "ẏ = Σ ẋ·[x = y] / #{x = y} (the mean tangent over ties; "
                                           "over the NaNs when y is NaN)"};

ag_tensor *ag_median(ag_tensor *x) {
    AG_CHECK_HANDLES(NULL, "median", x);
    if (!x || ag__check_float("median", x, NULL)) return NULL;
    ag_tensor *y = ag__new(x->dtype, 0, NULL);
    if (!y) return NULL;
    if (ag_numel(x) == 0) { /* as PyTorch: NaN */
        if (x->dtype == AG_F64) *(double *)ag__ptr(y) = NAN;
        else *(float *)ag__ptr(y) = NAN;
    } else {
        /* the first NaN if any (as PyTorch), else the lower middle of the stable order, by keys alone */
        ag_tensor *xc = ag__contig_or_copy(x);
        const int64_t n = ag_numel(x);
        ag_status st = xc ? AG_OK : AG_ERR_NOMEM;
        if (xc && ag__count_nan(ag__ptr(xc), x->dtype, n) > 0) {
            const size_t es = ag__esize(x->dtype);
            for (int64_t k = 0;; k++)
                if (nan_at(xc, ag__ptr(xc), k)) {
                    memcpy(ag__ptr(y), ag__ptr(xc) + (size_t)k * es, es);
                    break;
                }
        } else if (xc) {
            st = ag__select_value(ag__ptr(xc), x->dtype, n, (n - 1) / 2, AG_SELECT_BEST, ag__ptr(y));
        }
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
/* y = the lower median of the x that are not NaN (NaN if all are);  dx = dy split evenly over the x equal to y */
static const ag_op op_nanmedian = {.name = "nanmedian", .grad_fn = "NanmedianBackward0",
                                   .backward = ag__tie_split_backward, .saves = AG_SAVES_IN0 | AG_SAVES_OUT,
                                   .math = "y = the lower median of the x not NaN (NaN if none);  "
                                           "dx = dy·[x = y] / #{x = y} (even split over ties; over the NaN when y is "
                                           "NaN)",
                                   .backward_graph = ag__tie_split_backward_graph, .jvp = median_jvp,
                                   .tangent = "ẏ = Σ ẋ·[x = y] / #{x = y} (the mean tangent over ties; "
                                              "over the NaNs when y is NaN)"};

ag_tensor *ag_nanmedian(ag_tensor *x) {
    AG_CHECK_HANDLES(NULL, "nanmedian", x);
    if (!x || ag__check_float("nanmedian", x, NULL)) return NULL;
    const int64_t n = ag_numel(x);
    ag_tensor *y = ag__new(x->dtype, 0, NULL), *xc = y ? ag__contig_or_copy(x) : NULL;
    /* the values that are not NaN; NaN keys are the largest, so they rank after them */
    const int64_t k = xc ? n - ag__count_nan(ag__ptr(xc), x->dtype, n) : 0;
    ag_status st = xc ? AG_OK : AG_ERR_NOMEM;
    if (xc && k) st = ag__select_value(ag__ptr(xc), x->dtype, n, (k - 1) / 2, AG_SELECT_BEST, ag__ptr(y));
    else if (xc) ag__write(y, y->offset, NAN); /* as PyTorch: NaN for an empty x or one of NaN only */
    ag_release(xc);
    if (st) {
        if (y) ag__discard(y);
        return ag__fail_null(AG_ERR_NOMEM, "nanmedian: out of memory");
    }
    if (ag__needs_grad1(x) && n > 0 && !ag__record(y, &op_nanmedian, &x, 1)) return NULL;
    return y;
}

const ag_op *const ag__sort_ops[] = {&op_sort, &op_argsort, &op_topk, &op_kthvalue, &op_median_dim, &op_median, &op_nanmedian, NULL};

/*
 * shape.c - ops that rearrange or repeat elements into a new tensor: flip, roll,
 * tril, triu, repeat and repeat_interleave (torch.flip, torch.roll, torch.tril,
 * torch.triu, Tensor.repeat, torch.repeat_interleave; ag_tile is repeat with the
 * repeats padded, as torch.tile); and, composed of those and views, rot90,
 * narrow_copy and meshgrid.
 *
 * flip and roll are copies through a strided header over the source: flip
 * negates the strides of its dims (the walk starts at their last element), roll
 * copies each of the 2^k blocks its k shifted dims cut.  Their adjoints are the
 * same copy the other way (flip of dy, roll of dy by the opposite shifts).
 */
#include <string.h>
#include "core/iter.h"
#include "core/layout.h"
#include "autograd/tape.h"
#include "ops/jvp.h"
#include "agrad/ops.h"

/* A header on the stack viewing t's storage with t's geometry, for copies through
 * other strides (never returned, never owned). */
static ag_tensor header_of(const ag_tensor *t) {
    ag_tensor v;
    memset(&v, 0, sizeof v);
    v.ndim = t->ndim;
    v.dtype = t->dtype;
    memcpy(v.shape, t->shape, sizeof v.shape);
    memcpy(v.stride, t->stride, sizeof v.stride);
    v.offset = t->offset;
    v.storage = t->storage;
    return v;
}

/* Normalises the n dims into a bit mask of x's dims; -1 with the failure recorded for a
 * dim out of range or one given twice. */
static int64_t dim_mask(const char *op, const ag_tensor *x, int n, const int *dims) {
    if (n < 0 || n > AG_MAX_DIMS) return ag__fail(AG_ERR_ARG, "%s: %d dims given, expected 0 to %d", op, n, AG_MAX_DIMS), -1;
    if (n > 0 && !dims) return ag__fail(AG_ERR_ARG, "%s: dims is NULL", op), -1;
    int64_t mask = 0;
    for (int k = 0; k < n; k++) {
        int d = ag__dim(op, dims[k], x->ndim);
        if (d < 0) return -1;
        if (mask >> d & 1) return ag__fail(AG_ERR_ARG, "%s: dim %d appears multiple times in the list of dims", op, dims[k]), -1;
        mask |= (int64_t)1 << d;
    }
    return mask;
}

/* ---- flip -------------------------------------------------------------------------------------- */
static ag_status flip_backward(ag_tensor *out, ag_tensor *gout);
/* y = x reversed along dims;  dx = dy reversed along dims */
/* ---- tangent rules: the same op on the tangent (every op here is linear) ---------------------- */
/* dy = dx reversed along the dims */
static ag_tensor *flip_jvp(ag_tensor *out, ag_tensor *const *tin) {
    int dims[AG_MAX_DIMS], n = 0;
    for (int d = 0; d < out->ndim; d++)
        if ((uint64_t)out->attr.i[0] >> d & 1) dims[n++] = d;
    return n ? ag_flip(tin[0], n, dims) : ag_clone(tin[0]);
}
/* dy = dx rolled alike */
static ag_tensor *roll_jvp(ag_tensor *out, ag_tensor *const *tin) {
    if (out->attr.i[AG_MAX_DIMS]) return ag_roll(tin[0], 1, out->attr.i, NULL);
    int dims[AG_MAX_DIMS];
    for (int d = 0; d < out->ndim; d++) dims[d] = d;
    return out->ndim ? ag_roll(tin[0], out->ndim, out->attr.i, dims) : ag_clone(tin[0]);
}
static ag_tensor *tri_jvp(ag_tensor *out, ag_tensor *const *tin);
/* dy = dx tiled alike (the counts from y's and x's shapes) */
static ag_tensor *repeat_jvp(ag_tensor *out, ag_tensor *const *tin) {
    const ag_tensor *x = out->in[0];
    ag_shape r = {out->ndim, {0}};
    for (int d = 0, lead = out->ndim - x->ndim; d < out->ndim; d++) {
        int64_t size = d < lead ? 1 : x->shape[d - lead];
        r.dim[d] = size ? out->shape[d] / size : 1; /* an empty dim stays empty whatever the count */
    }
    return ag_repeat(tin[0], r);
}
/* dy = dx's slices repeated alike (index_select with the saved sources) */
static ag_tensor *repeat_interleave_jvp(ag_tensor *out, ag_tensor *const *tin) {
    return ag_index_select(tin[0], (int)out->attr.i[0], out->saved);
}

/* ---- adjoints in differentiable ops (create_graph): the ops are linear, each adjoint is one of them --- */
/* dx = flip(dy) along the same dims */
static ag_status flip_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin) {
    gin[0] = flip_jvp(out, &gout);
    return gin[0] ? AG_OK : ag_last_status();
}
/* dx = dy rolled by -s along each dim (or over the flattened tensor) */
static ag_status roll_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin) {
    int64_t back[AG_MAX_DIMS];
    int dims[AG_MAX_DIMS];
    const bool flat = out->attr.i[AG_MAX_DIMS] != 0;
    for (int d = 0; d < AG_MAX_DIMS; d++) back[d] = -out->attr.i[d], dims[d] = d;
    gin[0] = flat ? ag_roll(gout, 1, back, NULL) : out->ndim ? ag_roll(gout, out->ndim, back, dims) : gout;
    return gin[0] ? AG_OK : ag_last_status();
}
/* dx = tril(dy, k) (triu(dy, k)): the mask is its own adjoint */
static ag_status tri_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin) {
    gin[0] = tri_jvp(out, &gout);
    return gin[0] ? AG_OK : ag_last_status();
}
/* dx = Σ of dy over the tiles: dim by dim, dy seen as [before, r_d, s_d, after] summed over r_d */
static ag_status repeat_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin) {
    const ag_tensor *x = out->in[0];
    const int lead = out->ndim - x->ndim;
    ag_tensor *g = gout;
    ag_shape cur = ag_shape_of(gout);
    for (int d = 0; d < out->ndim && g; d++) {
        const int64_t size = d < lead ? 1 : x->shape[d - lead];
        if (cur.dim[d] == size) continue; /* one tile (or an empty dim: nothing to sum) */
        int64_t before = 1, after = 1;
        for (int k = 0; k < d; k++) before *= cur.dim[k];
        for (int k = d + 1; k < out->ndim; k++) after *= cur.dim[k];
        /* r_d tiles of size s_d; an empty x dim has no tile to sum */
        const int64_t tiles = size ? cur.dim[d] / size : 0;
        g = ag_sum_dims(ag_reshape(g, AG_SHAPE(before, tiles, size, after)), 1, (const int[]){1}, false);
        cur.dim[d] = size;
        g = g ? ag_reshape(g, cur) : NULL;
    }
    gin[0] = g ? ag_reshape(g, ag_shape_of(x)) : NULL;
    return gin[0] ? AG_OK : ag_last_status();
}
/* dx_k = Σ_{j: src_j = k} dy_j: index_add of dy's slices into zeros at the saved sources */
static ag_status repeat_interleave_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin) {
    ag_tensor *x = out->in[0];
    gin[0] = ag_numel(x) ? ag_index_add(ag_zeros_like(x), (int)out->attr.i[0], out->saved, gout, 1) : ag_zeros_like(x);
    return gin[0] ? AG_OK : ag_last_status();
}

static const ag_op op_flip = {.name = "flip", .grad_fn = "FlipBackward0", .backward = flip_backward,
                              .math = "y[i] = x[i reversed along dims];  dx = dy reversed along dims",
                              .backward_graph = flip_backward_graph, .jvp = flip_jvp,
                              .tangent = "ẏ = ẋ reversed along dims"};

/* dst = src reversed along the dims in mask (same shape). */
static void flip_into(ag_tensor *dst, const ag_tensor *src, int64_t mask) {
    ag_tensor v = header_of(src);
    for (int d = 0; d < src->ndim; d++)
        if ((mask >> d & 1) && src->shape[d] > 0) {
            v.offset += (src->shape[d] - 1) * src->stride[d];
            v.stride[d] = -src->stride[d];
        }
    ag__copy_into(dst, &v);
}

ag_tensor *ag_flip(ag_tensor *x, int ndims, const int *dims) {
    AG_CHECK_HANDLES(NULL, "flip", x);
    if (!x || ag__check_float("flip", x, NULL)) return NULL;
    int64_t mask = dim_mask("flip", x, ndims, dims);
    if (mask < 0) return NULL;
    if (x->ndim == 0) mask = 0; /* dim 0 of a 0-d tensor: one element */
    /* laid out as a dense x (PyTorch's preserve_format): a transposed x flips as rows copied in memory order */
    ag_tensor *y = ag__new_map_result(x->dtype, x->ndim, x->shape, (const ag_tensor *const[]){x}, 1);
    if (!y) return NULL;
    flip_into(y, x, mask);
    if (ag__needs_grad1(x)) {
        if (!ag__record(y, &op_flip, &x, 1)) return NULL;
        y->attr.i[0] = mask;
    }
    return y;
}

static ag_status flip_backward(ag_tensor *out, ag_tensor *gout) {
    ag_tensor *x = out->in[0];
    ag_tensor *gx = ag__new_unowned(x->dtype, x->ndim, x->shape, false);
    if (!gx) return AG_ERR_NOMEM;
    flip_into(gx, gout, out->attr.i[0]);
    return ag__accumulate(x, gx);
}

/* ---- roll -------------------------------------------------------------------------------------- */
static ag_status roll_backward(ag_tensor *out, ag_tensor *gout);
/* y[i] = x[(i - s) mod n] along each rolled dim;  dx = dy rolled by -s */
static const ag_op op_roll = {.name = "roll", .grad_fn = "RollBackward0", .backward = roll_backward,
                              .math = "y[i] = x[(i - s) mod n] along each rolled dim (or the flattened x);  "
                                      "dx = dy rolled by -s",
                              .backward_graph = roll_backward_graph, .jvp = roll_jvp,
                              .tangent = "ẏ = ẋ rolled alike"};

/* dst = src rolled by shift[d] (in [0, size)) along each dim, dst and src of one shape:
 * along a dim rolled by s, dst[s:] = src[:n-s] and dst[:s] = src[n-s:]; every choice of
 * the two halves over the rolled dims is one block copy. */
static void roll_into(ag_tensor *dst, const ag_tensor *src, const int64_t *shift) {
    int rolled[AG_MAX_DIMS], k = 0;
    for (int d = 0; d < src->ndim; d++)
        if (shift[d]) rolled[k++] = d;
    for (int64_t choice = 0; choice < (int64_t)1 << k; choice++) {
        ag_tensor a = header_of(dst), b = header_of(src);
        for (int j = 0; j < k; j++) {
            const int d = rolled[j];
            const int64_t n = src->shape[d], s = shift[d];
            const bool head = choice >> j & 1; /* dst[:s] from src[n-s:] */
            a.offset += (head ? 0 : s) * dst->stride[d];
            b.offset += (head ? n - s : 0) * src->stride[d];
            a.shape[d] = b.shape[d] = head ? s : n - s;
        }
        ag__copy_into(&a, &b);
    }
}

/* Applies roll (shift per dim, or shift[0] over the flattened data when flat) from src to dst. */
static ag_status roll_apply(ag_tensor *dst, ag_tensor *src, const int64_t *shift, bool flat) {
    if (!flat) {
        roll_into(dst, src, shift);
        return AG_OK;
    }
    ag_tensor *sc = ag__contig_or_copy(src); /* dst is contiguous: both as one flat dim */
    if (!sc) return AG_ERR_NOMEM;
    ag_tensor a = header_of(dst), b = header_of(sc);
    a.ndim = b.ndim = 1;
    a.shape[0] = b.shape[0] = ag_numel(src);
    a.stride[0] = b.stride[0] = 1;
    roll_into(&a, &b, shift);
    ag_release(sc);
    return AG_OK;
}

ag_tensor *ag_roll(ag_tensor *x, int n, const int64_t *shifts, const int *dims) {
    AG_CHECK_HANDLES(NULL, "roll", x);
    if (!x || ag__check_float("roll", x, NULL)) return NULL;
    if (n < 1 || n > AG_MAX_DIMS || !shifts)
        return ag__fail_null(AG_ERR_ARG, "roll: expects 1 to %d shifts, got %d%s", AG_MAX_DIMS, n, shifts ? "" : " (shifts is NULL)");
    if (!dims && n != 1)
        return ag__fail_null(AG_ERR_ARG, "roll: without dims, expects one shift (over the flattened tensor), got %d", n);
    const bool flat = !dims || x->ndim == 0;
    int64_t shift[AG_MAX_DIMS] = {0};
    for (int k = 0; k < n && !flat; k++) {
        int d = ag__dim("roll", dims[k], x->ndim);
        if (d < 0) return NULL;
        const int64_t size = x->shape[d];
        /* a dim given twice rolls twice, as PyTorch's roll applies its pairs in turn */
        if (size > 0) shift[d] = ((shift[d] + shifts[k] % size) % size + size) % size;
    }
    if (flat) {
        const int64_t size = ag_numel(x);
        for (int k = 0; k < n && x->ndim == 0 && dims; k++)
            if (ag__dim("roll", dims[k], 0) < 0) return NULL;
        shift[0] = 0;
        for (int k = 0; k < n && size > 0; k++) shift[0] = ((shift[0] + shifts[k] % size) % size + size) % size;
    }
    ag_tensor *y = ag__new(x->dtype, x->ndim, x->shape);
    if (!y) return NULL;
    if (roll_apply(y, x, shift, flat)) {
        ag__discard(y);
        return ag__fail_null(AG_ERR_NOMEM, "roll: out of memory");
    }
    if (ag__needs_grad1(x)) {
        if (!ag__record(y, &op_roll, &x, 1)) return NULL;
        memcpy(y->attr.i, shift, sizeof shift);
        y->attr.i[AG_MAX_DIMS] = flat;
    }
    return y;
}

/* dx = dy rolled back: by n - s along each dim. */
static ag_status roll_backward(ag_tensor *out, ag_tensor *gout) {
    ag_tensor *x = out->in[0];
    const bool flat = out->attr.i[AG_MAX_DIMS] != 0;
    int64_t back[AG_MAX_DIMS] = {0};
    for (int d = 0; d < (flat ? 1 : x->ndim); d++) {
        const int64_t n = flat ? ag_numel(x) : x->shape[d], s = out->attr.i[d];
        back[d] = s ? n - s : 0;
    }
    ag_tensor *gx = ag__new_unowned(x->dtype, x->ndim, x->shape, false);
    if (!gx) return AG_ERR_NOMEM;
    ag_status st = roll_apply(gx, gout, back, flat);
    if (st) {
        ag_release(gx);
        return st;
    }
    return ag__accumulate(x, gx);
}

/* ---- tril and triu ----------------------------------------------------------------------------- */
static ag_status tri_backward(ag_tensor *out, ag_tensor *gout);
/* y = x where j - i <= k (tril) or >= k (triu) over the last two dims, else 0;  dx = dy masked alike */
static const ag_op op_tril = {.name = "tril", .grad_fn = "TrilBackward0", .backward = tri_backward,
                              .math = "y[..., i, j] = x[..., i, j] if j - i ≤ k, else 0;  dx = dy masked alike",
                              .backward_graph = tri_backward_graph, .jvp = tri_jvp,
                              .tangent = "ẏ = tril(ẋ, k)"};
static const ag_op op_triu = {.name = "triu", .grad_fn = "TriuBackward0", .backward = tri_backward,
                              .math = "y[..., i, j] = x[..., i, j] if j - i ≥ k, else 0;  dx = dy masked alike",
                              .backward_graph = tri_backward_graph, .jvp = tri_jvp,
                              .tangent = "ẏ = triu(ẋ, k)"};

/* Zeros the elements of the contiguous t outside the triangle: above diagonal k (lower) or below it. */
static void tri_mask(ag_tensor *t, int64_t k, bool lower) {
    const int64_t rows = t->shape[t->ndim - 2], cols = t->shape[t->ndim - 1];
    const int64_t mats = rows && cols ? ag_numel(t) / (rows * cols) : 0;
    const size_t es = ag__esize(t->dtype);
    char *p = ag__ptr(t);
    const int64_t reach = rows + cols; /* a diagonal beyond either corner keeps all or nothing */
    k = k < -reach ? -reach : k > reach ? reach : k;
    for (int64_t m = 0; m < mats; m++)
        for (int64_t i = 0; i < rows; i++) {
            char *row = p + (size_t)((m * rows + i) * cols) * es;
            /* lower keeps j <= i + k: zero [max(i + k + 1, 0), cols); upper keeps j >= i + k: zero [0, min(i + k, cols)) */
            int64_t lo = lower ? i + k + 1 : 0, hi = lower ? cols : i + k;
            lo = lo < 0 ? 0 : lo > cols ? cols : lo;
            hi = hi < lo ? lo : hi > cols ? cols : hi;
            memset(row + (size_t)lo * es, 0, (size_t)(hi - lo) * es);
        }
}

static ag_tensor *tri(const ag_op *op, ag_tensor *x, int64_t k) {
    AG_CHECK_HANDLES(NULL, op->name, x);
    if (!x || ag__check_float(op->name, x, NULL)) return NULL;
    if (x->ndim < 2) {
        char s[AG_SHAPE_STR];
        return ag__fail_null(AG_ERR_SHAPE, "%s: expects a tensor of at least 2 dims, got shape %s", op->name, ag__tshape(s, x));
    }
    ag_tensor *y = ag__new(x->dtype, x->ndim, x->shape);
    if (!y) return NULL;
    ag__copy_into(y, x);
    tri_mask(y, k, op == &op_tril);
    if (ag__needs_grad1(x)) {
        if (!ag__record(y, op, &x, 1)) return NULL;
        y->attr.i[0] = k;
    }
    return y;
}

static ag_status tri_backward(ag_tensor *out, ag_tensor *gout) {
    ag_tensor *x = out->in[0];
    ag_tensor *gx = ag__new_unowned(x->dtype, x->ndim, x->shape, false);
    if (!gx) return AG_ERR_NOMEM;
    ag__copy_into(gx, gout);
    tri_mask(gx, out->attr.i[0], out->op == &op_tril);
    return ag__accumulate(x, gx);
}

ag_tensor *ag_tril(ag_tensor *x, int64_t diagonal) { return tri(&op_tril, x, diagonal); }
ag_tensor *ag_triu(ag_tensor *x, int64_t diagonal) { return tri(&op_triu, x, diagonal); }

/* ---- repeat and tile --------------------------------------------------------------------------- */
static ag_status repeat_backward(ag_tensor *out, ag_tensor *gout);
/* y = x tiled r_d times along each dim d;  dx = Σ of dy over the tiles */
static const ag_op op_repeat = {.name = "repeat", .grad_fn = "RepeatBackward0", .backward = repeat_backward,
                                .math = "y[i] = x[i mod s] (x tiled r_d times along each dim);  "
                                        "dx = Σ of dy over the tiles",
                                .backward_graph = repeat_backward_graph, .jvp = repeat_jvp,
                                .tangent = "ẏ = ẋ tiled alike"};

/* x's sizes and strides aligned to the ndim dims of a repeat's result (leading dims of size 1). */
static void aligned(const ag_tensor *x, int ndim, int64_t *size, int64_t *stride) {
    const int lead = ndim - x->ndim;
    for (int d = 0; d < ndim; d++) {
        size[d] = d < lead ? 1 : x->shape[d - lead];
        stride[d] = d < lead ? 0 : x->stride[d - lead];
    }
}

/* y (contiguous, ndim >= 1 dims of shape) = x tiled (x's aligned sizes and strides, in elements, from
 * xoff): row by row along the last dim, a row whose outer index lies in the first tile of every dim is
 * filled from x (its first size[last] elements, then doubled by copies of itself); any other row is a
 * copy of the row it repeats, already written (y[i] = y[i mod size] along the outer dims).  Bits move. */
#define REPEAT_FILL(NAME, T)                                                                        \
    static void NAME(T *y, const T *x, int ndim, const int64_t *shape, const int64_t *size,         \
                     const int64_t *stride, int64_t xoff) {                                         \
        if (ndim == 0) y[0] = x[xoff];                                                              \
        if (ndim == 0 || ag__numel(ndim, shape) == 0) return;                                       \
        const int last = ndim - 1;                                                                  \
        const int64_t cols = shape[last], xs = size[last], xst = stride[last];                      \
        int64_t idx[AG_MAX_DIMS] = {0}, ystr[AG_MAX_DIMS];                                          \
        ag__contiguous_strides(ndim, shape, ystr);                                                  \
        const int64_t rows = ag__numel(ndim, shape) / cols;                                         \
        T *row = y;                                                                                 \
        for (int64_t q = 0; q < rows; q++, row += cols) {                                           \
            int64_t off = xoff, src = 0;                                                            \
            bool first = true;                                                                      \
            for (int d = 0; d < last; d++) {                                                        \
                first &= idx[d] < size[d];                                                          \
                off += (idx[d] % size[d]) * stride[d];                                              \
                src += (idx[d] % size[d]) * ystr[d];                                                \
            }                                                                                       \
            if (!first) memcpy(row, y + src, sizeof(T) * (size_t)cols);                             \
            else {                                                                                  \
                for (int64_t c = 0; c < xs; c++) row[c] = x[off + c * xst];                         \
                for (int64_t len = xs; len < cols; len *= 2)                                        \
                    memcpy(row + len, row, sizeof(T) * (size_t)(cols - len < len ? cols - len : len)); \
            }                                                                                       \
            for (int d = last - 1; d >= 0; d--) {                                                   \
                if (++idx[d] < shape[d]) break;                                                     \
                idx[d] = 0;                                                                         \
            }                                                                                       \
        }                                                                                           \
    }
REPEAT_FILL(repeat_fwd_f32, float)
REPEAT_FILL(repeat_fwd_f64, double)

/* The adjoint: acc (x's contiguous numel, float64; xs = size[last], the outer dims' strides in elements,
 * 0 along a dim of size 1) += dy at each element's source, row after row of dy and, in a row, tile after
 * tile: each acc element takes its adds in dy's order, as an element-by-element walk would. */
#define REPEAT_SUM(NAME, T)                                                                         \
    static void NAME(const T *y, double *acc, int ndim, const int64_t *shape, const int64_t *size,  \
                     const int64_t *stride) {                                                       \
        if (ndim == 0) acc[0] += (double)y[0];                                                      \
        if (ndim == 0 || ag__numel(ndim, shape) == 0) return;                                       \
        const int last = ndim - 1;                                                                  \
        const int64_t cols = shape[last], xs = size[last];                                          \
        int64_t idx[AG_MAX_DIMS] = {0};                                                             \
        const int64_t rows = ag__numel(ndim, shape) / cols;                                         \
        for (int64_t q = 0; q < rows; q++, y += cols) {                                             \
            int64_t off = 0;                                                                        \
            for (int d = 0; d < last; d++) off += (idx[d] % size[d]) * stride[d];                  \
            double *restrict a = acc + off;                                                         \
            for (int64_t t = 0; t < cols; t += xs)                                                  \
                for (int64_t c = 0; c < xs; c++) a[c] += (double)y[t + c];                          \
            for (int d = last - 1; d >= 0; d--) {                                                   \
                if (++idx[d] < shape[d]) break;                                                     \
                idx[d] = 0;                                                                         \
            }                                                                                       \
        }                                                                                           \
    }
REPEAT_SUM(repeat_bwd_f32, float)
REPEAT_SUM(repeat_bwd_f64, double)

ag_tensor *ag_repeat(ag_tensor *x, ag_shape repeats) {
    AG_CHECK_HANDLES(NULL, "repeat", x);
    if (!x || ag__check_float("repeat", x, NULL)) return NULL;
    char s1[AG_SHAPE_STR];
    if (repeats.ndim < x->ndim || repeats.ndim > AG_MAX_DIMS)
        return ag__fail_null(AG_ERR_SHAPE, "repeat: %d repeats given for a tensor of shape %s (expected %d to %d)",
                             repeats.ndim, ag__tshape(s1, x), x->ndim, AG_MAX_DIMS);
    int64_t shape[AG_MAX_DIMS], size[AG_MAX_DIMS], stride[AG_MAX_DIMS];
    aligned(x, repeats.ndim, size, stride);
    for (int d = 0; d < repeats.ndim; d++) {
        if (repeats.dim[d] < 0)
            return ag__fail_null(AG_ERR_ARG, "repeat: repeats %s hold a negative count",
                                 ag__shape_str(s1, repeats.ndim, repeats.dim));
        if (ag__mul_overflow(size[d], repeats.dim[d], &shape[d])) shape[d] = -1; /* refused below */
    }
    if (ag__check_alloc("repeat", repeats.ndim, shape, x->dtype)) return NULL;
    ag_tensor *y = ag__new(x->dtype, repeats.ndim, shape);
    if (!y) return NULL;
    if (x->dtype == AG_F64)
        repeat_fwd_f64((double *)ag__ptr(y), (const double *)x->storage->data, y->ndim, shape, size, stride, x->offset);
    else repeat_fwd_f32((float *)ag__ptr(y), (const float *)x->storage->data, y->ndim, shape, size, stride, x->offset);
    if (ag__needs_grad1(x) && !ag__record(y, &op_repeat, &x, 1)) return NULL;
    return y;
}

/* dx[i] = Σ dy[j] over the j with j mod size = i, summed in float64. */
static ag_status repeat_backward(ag_tensor *out, ag_tensor *gout) {
    ag_tensor *x = out->in[0];
    int64_t size[AG_MAX_DIMS], stride[AG_MAX_DIMS];
    aligned(x, out->ndim, size, stride);
    ag__contiguous_strides(out->ndim, size, stride); /* into a contiguous buffer of x's shape */
    for (int d = 0; d < out->ndim; d++)
        if (size[d] == 1) stride[d] = 0;
    const int64_t n = ag_numel(x);
    double *acc = ag__alloc_n(n ? n : 1, sizeof(double));
    ag_tensor *gx = acc ? ag__new_unowned(x->dtype, x->ndim, x->shape, false) : NULL;
    if (!gx) {
        ag__free(acc);
        return AG_ERR_NOMEM;
    }
    memset(acc, 0, sizeof(double) * (size_t)n);
    if (x->dtype == AG_F64) {
        repeat_bwd_f64((const double *)ag__ptr(gout), acc, out->ndim, out->shape, size, stride);
        memcpy(ag__ptr(gx), acc, sizeof(double) * (size_t)n);
    } else {
        repeat_bwd_f32((const float *)ag__ptr(gout), acc, out->ndim, out->shape, size, stride);
        float *g = (float *)ag__ptr(gx);
        for (int64_t k = 0; k < n; k++) g[k] = (float)acc[k];
    }
    ag__free(acc);
    return ag__accumulate(x, gx);
}

ag_tensor *ag_tile(ag_tensor *x, ag_shape reps) {
    AG_CHECK_HANDLES(NULL, "tile", x);
    if (!x) return NULL;
    if (reps.ndim < 0 || reps.ndim > AG_MAX_DIMS)
        return ag__fail_null(AG_ERR_SHAPE, "tile: %d repeats given, expected 0 to %d", reps.ndim, AG_MAX_DIMS);
    if (reps.ndim < x->ndim) { /* leading repeats of 1, as torch.tile */
        const int lead = x->ndim - reps.ndim;
        memmove(reps.dim + lead, reps.dim, sizeof(int64_t) * (size_t)reps.ndim);
        for (int d = 0; d < lead; d++) reps.dim[d] = 1;
        reps.ndim = x->ndim;
    }
    return ag_repeat(x, reps);
}

/* ---- repeat_interleave ----------------------------------------------------------------------------- */
static ag_status repeat_interleave_backward(ag_tensor *out, ag_tensor *gout);
/* y[..., j, ...] = x[..., src_j, ...] along d, each x slice k repeated r_k times;  dx_k = Σ_{src_j = k} dy_j */
static const ag_op op_repeat_interleave = {.name = "repeat_interleave", .grad_fn = "IndexSelectBackward0",
                                           .backward = repeat_interleave_backward,
                                           .math = "y = each slice x_k along d repeated r_k times (y_j = x_{src_j});  "
                                                   "dx_k = Σ_{j: src_j = k} dy_j",
                                           .backward_graph = repeat_interleave_backward_graph,
                                           .jvp = repeat_interleave_jvp,
                                           .tangent = "ẏ = ẋ's slices repeated alike"};

/* dst[o, j] = src[o, from[j]] for elements of type T (gather_lanes' case of one-element rows). */
#define GATHER_ONE(T)                                                                               \
    for (int64_t o = 0; o < L.outer && m > 0; o++) { /* m 0: no lane to fill, however many */     \
        T *restrict d = (T *)dst + o * m;                                                           \
        const T *restrict s = (const T *)src + o * L.n;                                             \
        for (int64_t j = 0; j < m; j++) d[j] = s[from[j]];                                          \
    }
/* dst[o, j, i] = src[o, from[j], i] (dst [outer, m, inner], src [outer, n, inner], contiguous): rows of
 * one element (repeat_interleave along the last dim) as typed loads, no memcpy call an element. */
static void gather_lanes(char *dst, const char *src, ag_lanes L, int64_t m, const int64_t *from, size_t es) {
    if (L.inner == 1 && es == 4) {
        GATHER_ONE(uint32_t)
        return;
    }
    if (L.inner == 1 && es == 8) {
        GATHER_ONE(uint64_t)
        return;
    }
    const size_t row = (size_t)L.inner * es;
    for (int64_t o = 0; o < L.outer && m > 0; o++) /* m 0: no lane to fill, however many */
        for (int64_t j = 0; j < m; j++) memcpy(dst + (size_t)(o * m + j) * row, src + (size_t)(o * L.n + from[j]) * row, row);
}

/* The repeat count of slice k: the one count (repeat, or repeats of one element), or repeats[k]. */
static int64_t count_of(const ag_tensor *repeats, int64_t repeat, int64_t k) {
    if (!repeats) return repeat;
    return ((const int64_t *)ag__ptr(repeats))[repeats->ndim == 0 || repeats->shape[0] == 1 ? 0 : k];
}

static ag_tensor *repeat_interleave(ag_tensor *x, const ag_tensor *repeats, int64_t repeat, int dim) {
    if (!x || ag__check_float("repeat_interleave", x, NULL)) return NULL;
    char s1[AG_SHAPE_STR], s2[AG_SHAPE_STR];
    if (x->ndim == 0)
        return ag__fail_null(AG_ERR_SHAPE, "repeat_interleave: expects a tensor of at least 1 dim (flatten a 0-d one)");
    int d = ag__dim("repeat_interleave", dim, x->ndim);
    if (d < 0) return NULL;
    const int64_t n = x->shape[d];
    if (repeats) {
        if (repeats->dtype != AG_I64)
            return ag__fail_null(AG_ERR_DTYPE, "repeat_interleave: repeats must be int64, got %s", ag_dtype_name(repeats->dtype));
        if (repeats->ndim > 1 || (repeats->ndim == 1 && repeats->shape[0] != n && repeats->shape[0] != 1))
            return ag__fail_null(AG_ERR_SHAPE, "repeat_interleave: repeats %s must have one count or one per slice of "
                                 "dim %d of %s", ag__tshape(s1, repeats), dim, ag__tshape(s2, x));
    }
    ag_tensor *rc = repeats ? ag__contig_or_copy((ag_tensor *)repeats) : NULL;
    if (repeats && !rc) return NULL;
    /* the new size of dim d: n·repeat, or the sum of the counts (one per slice, or one for all) */
    const int64_t ncounts = !rc ? 1 : rc->ndim == 0 || rc->shape[0] == 1 ? 1 : n;
    int64_t m = 0;
    bool wraps = false;
    for (int64_t k = 0; k < ncounts; k++) {
        const int64_t r = count_of(rc, repeat, k);
        if (r < 0) {
            ag_release(rc);
            return ag__fail_null(AG_ERR_VALUE, "repeat_interleave: repeats must be non-negative, got %lld", (long long)r);
        }
        wraps |= ncounts == 1 ? ag__mul_overflow(n, r, &m) : ag__add_overflow(m, r, &m);
    }
    if (wraps) {
        ag_release(rc);
        return ag__fail_null(AG_ERR_SHAPE, "repeat_interleave: the repeats of %s add up beyond 2^63", ag__tshape(s2, x));
    }
    int64_t shape[AG_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[d] = m;
    if (ag__check_alloc("repeat_interleave", x->ndim, shape, x->dtype)) {
        ag_release(rc);
        return NULL;
    }
    /* src_j, kept for backward; an empty x has no lane to copy, whatever m is (a [2^40, 0] x) */
    const bool empty = ag_numel(x) == 0;
    ag_tensor *from = ag__new_unowned(AG_I64, 1, empty ? (int64_t[]){0} : &m, false);
    ag_tensor *xc = from ? ag__contig_or_copy(x) : NULL;
    ag_tensor *y = xc ? ag__new(x->dtype, x->ndim, shape) : NULL;
    if (!y) {
        ag_release(rc), ag_release(from), ag_release(xc);
        return NULL;
    }
    int64_t *src = (int64_t *)ag__ptr(from);
    for (int64_t k = 0, j = 0; k < n && !empty; k++)
        for (int64_t r = count_of(rc, repeat, k); r > 0; r--) src[j++] = k;
    ag_release(rc);
    ag_lanes L = ag__lanes_of(x, d);
    gather_lanes(ag__ptr(y), ag__ptr(xc), L, m, src, ag__esize(x->dtype));
    ag_release(xc);
    if (!ag__record_saved(y, &op_repeat_interleave, &x, 1, from)) return NULL;
    if (y->op) y->attr.i[0] = d;
    return y;
}

/* dx[o, k, i] = Σ over the j with src_j = k of dy[o, j, i]: src is sorted, so slice k's copies are one
 * run of j, summed in float64 in j's order into one row and rounded once (no lane, and no src read,
 * when x is empty). */
static ag_status repeat_interleave_backward(ag_tensor *out, ag_tensor *gout) {
    ag_tensor *x = out->in[0];
    const int d = (int)out->attr.i[0];
    const ag_lanes L = ag__lanes_of(x, d);
    const int64_t m = out->shape[d], *src = (const int64_t *)ag__ptr(out->saved), inner = L.inner;
    double *acc = ag__alloc_n(inner ? inner : 1, sizeof(double));
    ag_tensor *gx = acc ? ag__new_unowned(x->dtype, x->ndim, x->shape, false) : NULL;
    if (!gx) {
        ag__free(acc);
        return AG_ERR_NOMEM;
    }
    const bool f64 = x->dtype == AG_F64;
    const double *gd = (const double *)ag__ptr(gout);
    const float *gf = (const float *)ag__ptr(gout);
    if (inner == 1 && ag_numel(x) > 0) { /* along the last dim: one float64 sum a slice, no acc row */
        for (int64_t o = 0; o < L.outer; o++)
            for (int64_t k = 0, j = 0; k < L.n; k++) {
                double t = 0;
                if (f64)
                    for (; j < m && src[j] == k; j++) t += gd[o * m + j];
                else
                    for (; j < m && src[j] == k; j++) t += gf[o * m + j];
                if (f64) ((double *)ag__ptr(gx))[o * L.n + k] = t;
                else ((float *)ag__ptr(gx))[o * L.n + k] = (float)t;
            }
    }
    for (int64_t o = 0; o < L.outer && ag_numel(x) > 0 && inner > 1; o++)
        for (int64_t k = 0, j = 0; k < L.n; k++) {
            memset(acc, 0, sizeof(double) * (size_t)inner);
            for (; j < m && src[j] == k; j++) {
                const int64_t from = (o * m + j) * inner;
                if (f64)
                    for (int64_t i = 0; i < inner; i++) acc[i] += gd[from + i];
                else
                    for (int64_t i = 0; i < inner; i++) acc[i] += gf[from + i];
            }
            const int64_t to = (o * L.n + k) * inner;
            if (f64) memcpy((double *)ag__ptr(gx) + to, acc, sizeof(double) * (size_t)inner);
            else
                for (int64_t i = 0; i < inner; i++) ((float *)ag__ptr(gx))[to + i] = (float)acc[i];
        }
    ag__free(acc);
    return ag__accumulate(x, gx);
}

ag_tensor *ag_repeat_interleave(ag_tensor *x, int64_t repeats, int dim) {
    AG_CHECK_HANDLES(NULL, "repeat_interleave", x);
    return repeat_interleave(x, NULL, repeats, dim);
}

ag_tensor *ag_repeat_interleave_tensor(ag_tensor *x, const ag_tensor *repeats, int dim) {
    AG_CHECK_HANDLES(NULL, "repeat_interleave", x, repeats);
    if (!repeats && x) return ag__fail_null(AG_ERR_ARG, "repeat_interleave: repeats is NULL");
    return repeat_interleave(x, repeats, 0, dim);
}

/* dy = dx masked alike */
static ag_tensor *tri_jvp(ag_tensor *out, ag_tensor *const *tin) {
    return out->op == &op_tril ? ag_tril(tin[0], out->attr.i[0]) : ag_triu(tin[0], out->attr.i[0]);
}

/* ---- rot90, narrow_copy, meshgrid: compositions of flip, views and clone ------------------------ */
ag_tensor *ag_rot90(ag_tensor *x, int64_t k, const int *dims) {
    AG_CHECK_HANDLES(NULL, "rot90", x);
    if (!x) return NULL;
    const char *op = "rot90";
    if (x->ndim < 2) return ag__fail_null(AG_ERR_SHAPE, "%s: expected total dims >= 2, but got total dims = %d", op, x->ndim);
    int d0 = ag__dim(op, dims ? dims[0] : 0, x->ndim), d1 = d0 < 0 ? -1 : ag__dim(op, dims ? dims[1] : 1, x->ndim);
    if (d1 < 0) return NULL;
    if (d0 == d1)
        return ag__fail_null(AG_ERR_ARG, "%s: expected rotation dims to be different, but got dim0 = %d and dim1 = %d", op,
                             dims[0], dims[1]);
    k = ((k % 4) + 4) % 4;
    if (ag__composite_begin(op)) return NULL;
    /* k = 1: flip dim1 then swap; 2: flip both; 3: flip dim0 then swap; 0: a copy */
    ag_tensor *y = k == 0   ? ag_clone(x)
                   : k == 2 ? ag_flip(x, 2, (const int[]){d0, d1})
                            : ag_transpose(ag_flip(x, 1, (const int[]){k == 1 ? d1 : d0}), d0, d1);
    return ag__composite_end(y);
}

ag_tensor *ag_narrow_copy(ag_tensor *x, int dim, int64_t start, int64_t length) {
    AG_CHECK_HANDLES(NULL, "narrow_copy", x);
    if (!x) return NULL;
    if (ag__composite_begin("narrow_copy")) return NULL;
    return ag__composite_end(ag_clone(ag_narrow(x, dim, start, length)));
}

int ag_meshgrid(ag_tensor *const *xs, int n, const char *indexing, ag_tensor **out) {
    const char *op = "meshgrid";
    if (n < 1 || n > AG_MAX_DIMS || !xs || !out)
        return ag__fail(AG_ERR_ARG, "%s: expects 1 to %d tensors and an output array, got %d", op, AG_MAX_DIMS, n), -1;
    AG_CHECK_HANDLE_ARRAY(-1, op, xs, n);
    bool xy = indexing && strcmp(indexing, "xy") == 0;
    if (indexing && !xy && strcmp(indexing, "ij") != 0)
        return ag__fail(AG_ERR_ARG, "%s: indexing must be \"ij\" or \"xy\", got \"%s\"", op, indexing), -1;
    ag_shape grid = {n, {0}};
    for (int k = 0; k < n; k++) {
        if (!xs[k]) return -1;
        char s[AG_SHAPE_STR];
        if (xs[k]->ndim > 1)
            return ag__fail(AG_ERR_SHAPE, "%s: expects 0-d or 1-d tensors, got %s for tensor %d", op, ag__tshape(s, xs[k]), k), -1;
        if (xs[k]->dtype != xs[0]->dtype)
            return ag__fail(AG_ERR_DTYPE, "%s: tensor %d is %s but tensor 0 is %s (convert one with ag_to_dtype)", op, k,
                            ag_dtype_name(xs[k]->dtype), ag_dtype_name(xs[0]->dtype)), -1;
    }
    /* "xy" swaps the first two dims of the grid (the first input varies along dim 1) */
    for (int k = 0; k < n; k++) grid.dim[xy && n >= 2 && k < 2 ? 1 - k : k] = ag_numel(xs[k]);
    if (ag__check_shape(op, grid.ndim, grid.dim)) return -1;
    for (int k = 0; k < n; k++) {
        int at = xy && n >= 2 && k < 2 ? 1 - k : k;
        ag_shape line = {n, {0}};
        for (int d = 0; d < n; d++) line.dim[d] = d == at ? grid.dim[d] : 1;
        if (ag__composite_begin(op)) out[k] = NULL;
        else out[k] = ag__composite_end(ag_expand(ag_reshape(xs[k], line), grid)); /* a view of xs[k], as PyTorch's */
        if (!out[k]) {
            for (int j = 0; j < k && ag_scope_depth() == 0; j++) ag_release(out[j]);
            for (int j = 0; j < k; j++) out[j] = NULL;
            return -1;
        }
    }
    return n;
}

const ag_op *const ag__shape_ops[] = {&op_flip, &op_roll, &op_tril, &op_triu, &op_repeat, &op_repeat_interleave, NULL};

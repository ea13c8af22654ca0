/*
 * view.c - ops that return a view of their input (same storage, new shape,
 * strides and offset), and the copies contiguous, clone and to_dtype.
 *
 * Each view op is a geometry function: from a base tensor's geometry and the
 * op's attributes it computes the view's.  The forward applies it to x; the
 * adjoint applies the same function to a zero gradient of x's shape and adds
 * dy through that view (stride-0 expanded dims thereby sum), so one backward
 * serves every view.
 */
#include <string.h>
#include "core/iter.h"
#include "core/layout.h"
#include "core/sum.h"
#include "autograd/tape.h"
#include "agrad/ops.h"

typedef struct geom {
    int ndim;
    int64_t shape[AG_MAX_DIMS], stride[AG_MAX_DIMS], offset;
} geom;

typedef void (*geom_fn)(const ag_tensor *base, const ag_attr *at, geom *g);

typedef struct view_def {
    ag_op op;
    geom_fn geometry;
} view_def;

static void geom_of(const ag_tensor *t, geom *g) {
    g->ndim = t->ndim;
    memcpy(g->shape, t->shape, sizeof g->shape);
    memcpy(g->stride, t->stride, sizeof g->stride);
    g->offset = t->offset;
}

/* attr.i: ndim, then shape (strides computed by view_strides) */
static bool view_strides(const ag_tensor *t, int ndim, const int64_t *shape, int64_t *stride);
static void geom_view(const ag_tensor *b, const ag_attr *at, geom *g) {
    g->ndim = (int)at->i[0];
    memcpy(g->shape, at->i + 1, sizeof(int64_t) * (size_t)g->ndim);
    view_strides(b, g->ndim, g->shape, g->stride);
    g->offset = b->offset;
}
/* attr.i: permutation */
static void geom_permute(const ag_tensor *b, const ag_attr *at, geom *g) {
    g->ndim = b->ndim;
    for (int d = 0; d < b->ndim; d++) {
        g->shape[d] = b->shape[at->i[d]];
        g->stride[d] = b->stride[at->i[d]];
    }
    g->offset = b->offset;
}
/* attr.i: dim, start, length, step, keep (0: select removes dim) */
static void geom_slice(const ag_tensor *b, const ag_attr *at, geom *g) {
    int dim = (int)at->i[0];
    geom_of(b, g);
    g->offset += at->i[1] * b->stride[dim];
    if (at->i[4]) {
        g->shape[dim] = at->i[2];
        /* stride * step overflows only for a huge step, which leaves at most one
         * element: its stride is then immaterial and x's is kept. */
        if (ag__mul_overflow(b->stride[dim], at->i[3], &g->stride[dim])) g->stride[dim] = b->stride[dim];
    } else {
        for (int d = dim; d < b->ndim - 1; d++) {
            g->shape[d] = b->shape[d + 1];
            g->stride[d] = b->stride[d + 1];
        }
        g->ndim--;
    }
}
/* attr.i: ndim, then target shape */
static void geom_expand(const ag_tensor *b, const ag_attr *at, geom *g) {
    g->ndim = (int)at->i[0];
    int lead = g->ndim - b->ndim;
    for (int d = 0; d < g->ndim; d++) {
        g->shape[d] = at->i[1 + d];
        int bd = d - lead;
        g->stride[d] = bd < 0 || (b->shape[bd] == 1 && g->shape[d] != 1) ? 0 : b->stride[bd];
    }
    g->offset = b->offset;
}
/* attr.i: dim, insert (1) or remove (0) */
static void geom_unsqueeze(const ag_tensor *b, const ag_attr *at, geom *g) {
    int dim = (int)at->i[0];
    geom_of(b, g);
    if (at->i[1]) {
        for (int d = b->ndim; d > dim; d--) {
            g->shape[d] = b->shape[d - 1];
            g->stride[d] = b->stride[d - 1];
        }
        g->shape[dim] = 1;
        g->stride[dim] = dim < b->ndim ? b->stride[dim] * b->shape[dim] : 1;
        g->ndim++;
    } else {
        for (int d = dim; d < b->ndim - 1; d++) {
            g->shape[d] = b->shape[d + 1];
            g->stride[d] = b->stride[d + 1];
        }
        g->ndim--;
    }
}

/* attr.i: offset (clamped to [-size of d1, size of d2]), d1, d2: those two dims replaced by a
 * last dim walking their diagonal (stride s1 + s2), of length 0 when offset reaches a corner */
static void geom_diagonal(const ag_tensor *b, const ag_attr *at, geom *g) {
    const int64_t off = at->i[0];
    const int d1 = (int)at->i[1], d2 = (int)at->i[2];
    const int64_t n1 = b->shape[d1], n2 = b->shape[d2], s1 = b->stride[d1], s2 = b->stride[d2];
    int64_t len = off >= 0 ? (n1 < n2 - off ? n1 : n2 - off) : (n1 + off < n2 ? n1 + off : n2);
    if (len < 0) len = 0;
    g->ndim = 0;
    for (int d = 0; d < b->ndim; d++)
        if (d != d1 && d != d2) {
            g->shape[g->ndim] = b->shape[d];
            g->stride[g->ndim++] = b->stride[d];
        }
    g->shape[g->ndim] = len;
    /* with 2+ elements both dims hold 2+, so s1 + s2 fits as their extents do; else s1 serves */
    if (len < 2 || ag__add_overflow(s1, s2, &g->stride[g->ndim])) g->stride[g->ndim] = s1;
    g->ndim++;
    g->offset = b->offset + (len == 0 ? 0 : off >= 0 ? off * s2 : -off * s1);
}

/* PyTorch's rule for viewing t with a new shape without copying: each run of
 * new dims must map onto a run of old dims that is contiguous within itself. */
static bool view_strides(const ag_tensor *t, int ndim, const int64_t *shape, int64_t *stride) {
    int64_t numel = ag_numel(t);
    if (numel == 0) {
        ag__contiguous_strides(ndim, shape, stride);
        return true;
    }
    int view_d = ndim - 1;
    int64_t chunk_base_stride = t->ndim ? t->stride[t->ndim - 1] : 1;
    int64_t tensor_numel = 1, view_numel = 1;
    for (int d = t->ndim - 1; d >= 0; d--) {
        tensor_numel *= t->shape[d];
        if (d == 0 || (t->shape[d - 1] != 1 && t->stride[d - 1] != tensor_numel * chunk_base_stride)) {
            while (view_d >= 0 && (view_numel < tensor_numel || shape[view_d] == 1)) {
                stride[view_d] = view_numel * chunk_base_stride;
                view_numel *= shape[view_d];
                view_d--;
            }
            if (view_numel != tensor_numel) return false;
            if (d > 0) {
                chunk_base_stride = t->stride[d - 1];
                tensor_numel = 1;
                view_numel = 1;
            }
        }
    }
    while (view_d >= 0) stride[view_d--] = 1; /* trailing size-1 dims of a 0-d source */
    return view_d == -1;
}

static ag_status view_backward(ag_tensor *out, ag_tensor *gout);
static ag_status reshape_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin);
static ag_status pass_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin);
static ag_status permute_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin);
static ag_tensor *view_jvp(ag_tensor *out, ag_tensor *const *tin);
static ag_status slice_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin);

/* Each: y = a view of x;  dx = 0, then view(dx) = dy (expand: dx = Σ dy over its dims), or for the
 * views that keep every element (reshape, permute, unsqueeze, squeeze) dx = dy through the inverse
 * view (view_backward).  All but expand and diagonal take dy with any strides (AG_GOUT_ANY_STRIDES:
 * it is viewed, laid back or added through the view, not copied contiguous first). */
static const view_def def_view = {{.name = "reshape", .grad_fn = "ViewBackward0", .backward = view_backward,
                                   .saves = AG_GOUT_ANY_STRIDES,
                                   .math = "y = x viewed with a new shape;  dx = dy viewed with x's shape",
                                   .backward_graph = reshape_backward_graph, .jvp = view_jvp,
                                   .tangent = "ẏ = ẋ viewed with y's shape"}, geom_view};
static const view_def def_permute = {{.name = "permute", .grad_fn = "PermuteBackward0", .backward = view_backward,
                                      .saves = AG_GOUT_ANY_STRIDES,
                                      .math = "y = x with dims permuted;  dx = dy with the inverse permutation",
                                      .backward_graph = permute_backward_graph, .jvp = view_jvp,
                                      .tangent = "ẏ = ẋ with dims permuted alike"}, geom_permute};
static const view_def def_slice = {{.name = "slice", .grad_fn = "SliceBackward0", .backward = view_backward,
                                    .saves = AG_GOUT_ANY_STRIDES,
                                    .math = "y = x[..., start:end:step, ...];  dx = 0, dx[slice] = dy",
                                    .backward_graph = slice_backward_graph, .jvp = view_jvp,
                                    .tangent = "ẏ = ẋ[..., start:end:step, ...]"}, geom_slice};
static const view_def def_select = {{.name = "select", .grad_fn = "SelectBackward0", .backward = view_backward,
                                     .saves = AG_GOUT_ANY_STRIDES,
                                     .math = "y = x[..., i, ...];  dx = 0, dx[..., i, ...] = dy",
                                     .backward_graph = slice_backward_graph, .jvp = view_jvp,
                                     .tangent = "ẏ = ẋ[..., i, ...]"}, geom_slice};
static const view_def def_expand = {{.name = "expand", .grad_fn = "ExpandBackward0", .backward = view_backward,
                                     .math = "y = x broadcast to a shape (stride 0);  dx = Σ dy over expanded dims",
                                     .backward_graph = pass_backward_graph, .jvp = view_jvp,
                                     .tangent = "ẏ = ẋ broadcast to y's shape"}, geom_expand};
static const view_def def_unsqueeze = {{.name = "unsqueeze", .grad_fn = "UnsqueezeBackward0", .backward = view_backward,
                                        .saves = AG_GOUT_ANY_STRIDES,
                                        .math = "y = x with a size-1 dim inserted;  dx = dy without it",
                                        .backward_graph = reshape_backward_graph, .jvp = view_jvp,
                                        .tangent = "ẏ = ẋ with the size-1 dim inserted"}, geom_unsqueeze};
static const view_def def_diagonal = {{.name = "diagonal", .grad_fn = "DiagonalBackward0", .backward = view_backward,
                                       .math = "y[..., k] = x[..., k, k + offset, ...] (dims d1, d2);  "
                                               "dx = 0, dx's diagonal = dy",
                                       .backward_graph = slice_backward_graph, .jvp = view_jvp,
                                       .tangent = "ẏ = the same diagonal of ẋ"}, geom_diagonal};
static const view_def def_squeeze = {{.name = "squeeze", .grad_fn = "SqueezeBackward1", .backward = view_backward,
                                      .saves = AG_GOUT_ANY_STRIDES,
                                      .math = "y = x without a size-1 dim;  dx = dy with it",
                                      .backward_graph = reshape_backward_graph, .jvp = view_jvp,
                                      .tangent = "ẏ = ẋ without the size-1 dim"}, geom_unsqueeze};

/* A view of a floating tensor names its base (x's base when x is itself a view), so
 * that an in-place op on it rewrites the base's history (autograd/rebase.c); one
 * made in no-grad mode is marked so, as is a view of such a view. */
static ag_tensor *make_view(const view_def *def, ag_tensor *x, const ag_attr *at) {
    geom g;
    def->geometry(x, at, &g);
    ag_tensor *y = ag__new_view(x, g.ndim, g.shape, g.stride, g.offset);
    if (y && (x->dtype == AG_F32 || x->dtype == AG_F64)) {
        y->view_base = ag__retain(x->view_base ? x->view_base : x);
        y->view_flags = x->view_flags | (ag__no_grad_depth ? AG_VIEW_NO_GRAD : 0);
        y->out_version = ag__version(y);
    }
    if (y && ag__needs_grad1(x)) {
        if (!ag__record(y, &def->op, &x, 1)) return NULL;
        y->attr = *at;
    }
    return y;
}

/* dy = dx viewed alike (the same op on the tangent; a reshape reads it contiguous) */
static ag_tensor *view_jvp(ag_tensor *out, ag_tensor *const *tin) {
    const view_def *def = (const view_def *)out->op;
    ag_tensor *t = def == &def_view ? ag_contiguous(tin[0]) : tin[0];
    return t ? make_view(def, t, &out->attr) : NULL;
}

static ag_status view_backward(ag_tensor *out, ag_tensor *gout) {
    const view_def *def = (const view_def *)out->op;
    ag_tensor *x = out->in[0];
    if (def == &def_expand) /* dx = Σ dy over the expanded dims: ag__accumulate's ag__sum_to (float64) */
        return ag__accumulate_last(x, ag_retain(gout), gout);
    /* A view that keeps every element (permute, reshape, unsqueeze, squeeze): dx is dy seen
     * through the inverse view, no buffer filled with zeros and no copy; the engine copies it
     * only where the next adjoint wants it contiguous (a transformer's head split and merge:
     * 1 MiB zeroed and copied twice per tensor before), or where a leaf's .grad may not adopt
     * it (dy shared: a caller's grad_out, a gradient also sent elsewhere). */
    int64_t stride[AG_MAX_DIMS];
    bool bijective = false;
    if (def == &def_permute) {
        for (int d = 0; d < out->ndim; d++) stride[out->attr.i[d]] = gout->stride[d];
        bijective = true;
    } else if (def == &def_view || def == &def_unsqueeze || def == &def_squeeze)
        bijective = view_strides(gout, x->ndim, x->shape, stride);
    if (bijective) {
        ag_tensor *gx = ag__new_view_unowned(gout, x->ndim, x->shape, stride, gout->offset);
        return gx ? ag__accumulate_last(x, gx, gout) : AG_ERR_NOMEM;
    }
    /* Else (reshape, permute, unsqueeze and squeeze view every element of x: dy laid back covers
     * dx, so no zero fill); slice, select and diagonal view some, dx is zero elsewhere.  None
     * views an element twice (expand, which does, returned above), so dy is copied, not
     * added to zeros (which also turned a -0 of dy into +0, where PyTorch keeps it).  An
     * LSTM's packed output [64, 32, 256] through reshape and narrow, backward: 0.7 ms of
     * zero fills and additions before. */
    const bool covers = def == &def_view || def == &def_permute || def == &def_unsqueeze || def == &def_squeeze;
    /* A slice of x whose gradient another view of x began (the heads q, k, v read from one
     * packed projection): dy added into that gradient through the view, in place, instead of a
     * zeroed gradient of x's shape added to it (a transformer layer's q, k, v: two 3 MiB
     * buffers zeroed, filled and added per step). */
    ag_tensor *so_far = covers ? NULL : ag__grad_so_far(x);
    ag_tensor *gx = so_far ? so_far : ag__new_unowned(x->dtype, x->ndim, x->shape, !covers);
    if (!gx) return AG_ERR_NOMEM;
    geom g;
    def->geometry(gx, &out->attr, &g);
    ag_tensor v; /* a stack header: the same view of gx */
    memset(&v, 0, sizeof v);
    v.ndim = g.ndim;
    v.dtype = gx->dtype;
    memcpy(v.shape, g.shape, sizeof v.shape);
    memcpy(v.stride, g.stride, sizeof v.stride);
    v.offset = g.offset;
    v.storage = gx->storage;
    if (so_far) {
        ag__add_through(&v, gout);
        return AG_OK;
    }
    ag__copy_into(&v, gout);
    return ag__accumulate(x, gx);
}

/* dx = dy reshaped to x's shape (reshape, unsqueeze, squeeze), in agrad ops. */
static ag_status reshape_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin) {
    return (gin[0] = ag_reshape(gout, ag_shape_of(out->in[0]))) ? AG_OK : ag_last_status();
}

/* dx = dy with the inverse permutation (y's dim d is x's dim attr.i[d]), in agrad ops. */
static ag_status permute_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin) {
    int inverse[AG_MAX_DIMS];
    for (int d = 0; d < out->ndim; d++) inverse[out->attr.i[d]] = d;
    return (gin[0] = ag_permute(gout, inverse)) ? AG_OK : ag_last_status();
}

/* dx = dy as it is (clone; expand, whose broadcast dims the engine sums down);
 * converted to x's dtype (to_dtype). */
static ag_status pass_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin) {
    ag_tensor *x = out->in[0];
    gin[0] = x->dtype == gout->dtype ? gout : ag_to_dtype(gout, x->dtype);
    return gin[0] ? AG_OK : ag_last_status();
}

/* ---- put: the adjoint of slice, select and diagonal as a differentiable op ------------------ */
/* A put op writes g into a view (of the geometry of a view op) of zeros of a given shape; its
 * adjoint is that view again, so slice and put close under differentiation. */
typedef struct put_def {
    ag_op op;
    const view_def *view;
} put_def;

static ag_status put_backward(ag_tensor *out, ag_tensor *gout);
static ag_status put_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin);
static ag_tensor *put_jvp(ag_tensor *out, ag_tensor *const *tin);
/* Each: y = 0, view(y) = g;  dg = view(dy) (internal, unregistered: the adjoints of the views) */
static const put_def put_slice = {{.name = "slice_put", .grad_fn = "SliceBackwardBackward0", .backward = put_backward,
                                   .math = "y = 0, y[slice] = g;  dg = dy[slice]",
                                   .backward_graph = put_backward_graph, .jvp = put_jvp,
                                   .tangent = "ẏ = 0, ẏ[slice] = ġ"}, &def_slice};
static const put_def put_select = {{.name = "select_put", .grad_fn = "SelectBackwardBackward0",
                                    .backward = put_backward,
                                    .math = "y = 0, y[..., i, ...] = g;  dg = dy[..., i, ...]",
                                    .backward_graph = put_backward_graph, .jvp = put_jvp,
                                    .tangent = "ẏ = 0, ẏ[..., i, ...] = ġ"}, &def_select};
static const put_def put_diagonal = {{.name = "diagonal_put", .grad_fn = "DiagonalBackwardBackward0",
                                      .backward = put_backward,
                                      .math = "y = 0, y's diagonal = g;  dg = dy's diagonal",
                                      .backward_graph = put_backward_graph, .jvp = put_jvp,
                                      .tangent = "ẏ = 0, ẏ's diagonal = ġ"}, &def_diagonal};

/* A stack header viewing t through the geometry of def with attributes at. */
static ag_tensor view_header(const view_def *def, const ag_tensor *t, const ag_attr *at) {
    geom g;
    def->geometry(t, at, &g);
    ag_tensor v;
    memset(&v, 0, sizeof v);
    v.ndim = g.ndim;
    v.dtype = t->dtype;
    memcpy(v.shape, g.shape, sizeof v.shape);
    memcpy(v.stride, g.stride, sizeof v.stride);
    v.offset = g.offset;
    v.storage = t->storage;
    return v;
}

/* y = zeros of shape (ndim, shape) with g written through the view (def, at); g has the view's shape. */
static ag_tensor *put(const put_def *def, ag_tensor *g, int ndim, const int64_t *shape, const ag_attr *at) {
    if (!g) return NULL;
    ag_tensor *y = ag__new_zeros(g->dtype, ndim, shape);
    if (!y) return NULL;
    ag_tensor v = view_header(def->view, y, at);
    ag__copy_into(&v, g);
    if (ag__needs_grad1(g)) {
        if (!ag__record(y, &def->op, &g, 1)) return NULL;
        y->attr = *at;
    }
    return y;
}

/* dg = a contiguous copy of dy's view. */
static ag_status put_backward(ag_tensor *out, ag_tensor *gout) {
    const put_def *def = (const put_def *)out->op;
    ag_tensor *g = out->in[0];
    ag_tensor *gg = ag__new_unowned(g->dtype, g->ndim, g->shape, false);
    if (!gg) return AG_ERR_NOMEM;
    ag_tensor v = view_header(def->view, gout, &out->attr);
    ag__copy_into(gg, &v);
    return ag__accumulate(g, gg);
}

/* dg = view(dy), the view op itself. */
static ag_status put_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin) {
    const put_def *def = (const put_def *)out->op;
    return (gin[0] = make_view(def->view, gout, &out->attr)) ? AG_OK : ag_last_status();
}

/* dy = put(dg) */
static ag_tensor *put_jvp(ag_tensor *out, ag_tensor *const *tin) {
    return put((const put_def *)out->op, tin[0], out->ndim, out->shape, &out->attr);
}

/* dx = put(dy): zeros of x's shape with dy written through the view (slice, select, diagonal). */
static ag_status slice_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin) {
    const view_def *def = (const view_def *)out->op;
    const put_def *p = def == &def_slice ? &put_slice : def == &def_select ? &put_select : &put_diagonal;
    ag_tensor *x = out->in[0];
    return (gin[0] = put(p, gout, x->ndim, x->shape, &out->attr)) ? AG_OK : ag_last_status();
}

/* ---- public view functions ------------------------------------------------------------ */
static int64_t infer_shape(const char *op, const ag_tensor *x, ag_shape *shape) {
    int infer = -1;
    char s1[AG_SHAPE_STR], s2[AG_SHAPE_STR];
    if (shape->ndim < 0 || shape->ndim > AG_MAX_DIMS)
        return ag__fail(AG_ERR_SHAPE, "%s: %d dims requested, at most %d supported", op, shape->ndim, AG_MAX_DIMS);
    for (int d = 0; d < shape->ndim; d++) {
        if (shape->dim[d] == -1) {
            if (infer >= 0) return ag__fail(AG_ERR_SHAPE, "%s: only one dimension can be inferred", op);
            infer = d;
        } else if (shape->dim[d] < 0) {
            return ag__fail(AG_ERR_SHAPE, "%s: invalid shape dimension %lld", op, (long long)shape->dim[d]);
        }
    }
    int64_t numel = ag_numel(x);
    if (infer >= 0) { /* from the product of the other sizes (-1 beyond 2^62); left -1 if none fits */
        shape->dim[infer] = 1;
        int64_t known = ag__numel_checked(shape->ndim, shape->dim);
        shape->dim[infer] = known > 0 && numel % known == 0 ? numel / known : -1;
    }
    /* A size left -1, or sizes multiplying beyond 2^62 (numel_checked -1), never match. */
    if (ag__numel_checked(shape->ndim, shape->dim) != numel)
        return ag__fail(AG_ERR_SHAPE, "%s: shape %s is invalid for input of size %lld (shape %s)", op,
                        ag__shape_str(s1, shape->ndim, shape->dim), (long long)numel, ag__tshape(s2, x));
    return AG_OK;
}

ag_tensor *ag_view(ag_tensor *x, ag_shape shape) {
    AG_CHECK_HANDLES(NULL, "view", x);
    if (!x || infer_shape("view", x, &shape)) return NULL;
    int64_t stride[AG_MAX_DIMS];
    if (!view_strides(x, shape.ndim, shape.dim, stride)) {
        char s1[AG_SHAPE_STR], s2[AG_SHAPE_STR];
        return ag__fail_null(AG_ERR_SHAPE, "view: size %s is not compatible with the input's size %s and strides "
                             "(at least one dimension spans two contiguous subspaces); use ag_reshape",
                             ag__shape_str(s1, shape.ndim, shape.dim), ag__tshape(s2, x));
    }
    ag_attr at = {.i = {shape.ndim}};
    memcpy(at.i + 1, shape.dim, sizeof(int64_t) * (size_t)shape.ndim);
    return make_view(&def_view, x, &at);
}

ag_tensor *ag_reshape(ag_tensor *x, ag_shape shape) {
    AG_CHECK_HANDLES(NULL, "reshape", x);
    if (!x || infer_shape("reshape", x, &shape)) return NULL;
    int64_t stride[AG_MAX_DIMS];
    if (view_strides(x, shape.ndim, shape.dim, stride)) return ag_view(x, shape);
    if (ag__composite_begin("reshape")) return NULL; /* a view of a contiguous copy */
    return ag__composite_end(ag_view(ag_contiguous(x), shape));
}

ag_tensor *ag_permute(ag_tensor *x, const int *dims) {
    AG_CHECK_HANDLES(NULL, "permute", x);
    if (!x) return NULL;
    if (!dims && x->ndim) return ag__fail_null(AG_ERR_ARG, "permute: dims is NULL");
    ag_attr at = {0};
    uint64_t seen = 0;
    for (int d = 0; d < x->ndim; d++) {
        int v = ag__dim("permute", dims[d], x->ndim);
        if (v < 0) return NULL;
        if (seen >> v & 1) return ag__fail_null(AG_ERR_ARG, "permute: dim %d repeated", dims[d]);
        seen |= (uint64_t)1 << v;
        at.i[d] = v;
    }
    return make_view(&def_permute, x, &at);
}

ag_tensor *ag_transpose(ag_tensor *x, int dim0, int dim1) {
    AG_CHECK_HANDLES(NULL, "transpose", x);
    if (!x) return NULL;
    int a = ag__dim("transpose", dim0, x->ndim), b = ag__dim("transpose", dim1, x->ndim);
    if (a < 0 || b < 0) return NULL;
    int perm[AG_MAX_DIMS];
    for (int d = 0; d < x->ndim; d++) perm[d] = d;
    if (x->ndim) {
        perm[a] = b;
        perm[b] = a;
    }
    return ag_permute(x, perm);
}

ag_tensor *ag_t(ag_tensor *x) {
    AG_CHECK_HANDLES(NULL, "t", x);
    if (!x) return NULL;
    if (x->ndim > 2) return ag__fail_null(AG_ERR_SHAPE, "t: expects a tensor with <= 2 dims, got %d", x->ndim);
    return x->ndim < 2 ? ag_transpose(x, 0, 0) : ag_transpose(x, 0, 1);
}

ag_tensor *ag_slice(ag_tensor *x, int dim, int64_t start, int64_t end, int64_t step) {
    AG_CHECK_HANDLES(NULL, "slice", x);
    if (!x) return NULL;
    if (x->ndim == 0) return ag__fail_null(AG_ERR_SHAPE, "slice: cannot slice a 0-d tensor");
    int d = ag__dim("slice", dim, x->ndim);
    if (d < 0) return NULL;
    if (step <= 0) return ag__fail_null(AG_ERR_ARG, "slice: step must be positive, got %lld", (long long)step);
    int64_t n = x->shape[d];
    if (start < 0) start += n;
    if (end < 0) end += n;
    start = start < 0 ? 0 : start > n ? n : start;
    end = end < start ? start : end > n ? n : end;
    ag_attr at = {.i = {d, start, ag__ceil_div(end - start, step), step, 1}};
    return make_view(&def_slice, x, &at);
}

ag_tensor *ag_narrow(ag_tensor *x, int dim, int64_t start, int64_t length) {
    AG_CHECK_HANDLES(NULL, "narrow", x);
    if (!x) return NULL;
    if (x->ndim == 0) return ag__fail_null(AG_ERR_SHAPE, "narrow: cannot narrow a 0-d tensor");
    int d = ag__dim("narrow", dim, x->ndim);
    if (d < 0) return NULL;
    int64_t n = x->shape[d];
    if (start < 0) start += n;
    if (start < 0 || start > n || length < 0 || length > n - start) { /* no start + length: it may overflow */
        char s[AG_SHAPE_STR];
        return ag__fail_null(AG_ERR_INDEX, "narrow: start %lld + length %lld exceeds dim %d of size %lld (shape %s)",
                             (long long)start, (long long)length, dim, (long long)x->shape[d], ag__tshape(s, x));
    }
    ag_attr at = {.i = {d, start, length, 1, 1}};
    return make_view(&def_slice, x, &at);
}

ag_tensor *ag_select(ag_tensor *x, int dim, int64_t index) {
    AG_CHECK_HANDLES(NULL, "select", x);
    if (!x) return NULL;
    if (x->ndim == 0) return ag__fail_null(AG_ERR_SHAPE, "select: cannot select from a 0-d tensor");
    int d = ag__dim("select", dim, x->ndim);
    if (d < 0) return NULL;
    int64_t i = index < 0 ? index + x->shape[d] : index;
    if (i < 0 || i >= x->shape[d]) {
        char s[AG_SHAPE_STR];
        return ag__fail_null(AG_ERR_INDEX, "select: index %lld out of range for dim %d of size %lld (shape %s)",
                             (long long)index, dim, (long long)x->shape[d], ag__tshape(s, x));
    }
    ag_attr at = {.i = {d, i, 1, 1, 0}};
    return make_view(&def_select, x, &at);
}

ag_tensor *ag_expand(ag_tensor *x, ag_shape shape) {
    AG_CHECK_HANDLES(NULL, "expand", x);
    if (!x) return NULL;
    char s1[AG_SHAPE_STR], s2[AG_SHAPE_STR];
    if (shape.ndim < x->ndim || shape.ndim > AG_MAX_DIMS)
        return ag__fail_null(AG_ERR_SHAPE, "expand: cannot expand %s to %d dims", ag__tshape(s1, x), shape.ndim);
    int lead = shape.ndim - x->ndim;
    for (int d = 0; d < shape.ndim; d++) {
        int xd = d - lead;
        if (shape.dim[d] == -1) {
            if (xd < 0) return ag__fail_null(AG_ERR_SHAPE, "expand: -1 is not allowed for a new leading dim");
            shape.dim[d] = x->shape[xd];
        }
        if (shape.dim[d] < 0 || (xd >= 0 && x->shape[xd] != 1 && x->shape[xd] != shape.dim[d]))
            return ag__fail_null(AG_ERR_SHAPE, "expand: the size of %s cannot be expanded to %s", ag__tshape(s1, x),
                                 ag__shape_str(s2, shape.ndim, shape.dim));
    }
    if (ag__check_shape("expand", shape.ndim, shape.dim)) return NULL; /* a count beyond 2^62 */
    ag_attr at = {.i = {shape.ndim}};
    memcpy(at.i + 1, shape.dim, sizeof(int64_t) * (size_t)shape.ndim);
    return make_view(&def_expand, x, &at);
}

ag_tensor *ag_unsqueeze(ag_tensor *x, int dim) {
    AG_CHECK_HANDLES(NULL, "unsqueeze", x);
    if (!x) return NULL;
    if (x->ndim == AG_MAX_DIMS) return ag__fail_null(AG_ERR_SHAPE, "unsqueeze: already %d dims", AG_MAX_DIMS);
    int d = ag__dim("unsqueeze", dim, x->ndim + 1);
    if (d < 0) return NULL;
    ag_attr at = {.i = {d, 1}};
    return make_view(&def_unsqueeze, x, &at);
}

ag_tensor *ag_squeeze(ag_tensor *x, int dim) {
    AG_CHECK_HANDLES(NULL, "squeeze", x);
    if (!x) return NULL;
    int d = ag__dim("squeeze", dim, x->ndim);
    if (d < 0) return NULL;
    if (x->ndim == 0 || x->shape[d] != 1) {
        ag_attr at = {.i = {0}};
        for (int k = 0; k < x->ndim; k++) at.i[k] = k;
        return make_view(&def_permute, x, &at); /* same geometry */
    }
    ag_attr at = {.i = {d, 0}};
    return make_view(&def_squeeze, x, &at);
}

ag_tensor *ag_squeeze_all(ag_tensor *x) {
    AG_CHECK_HANDLES(NULL, "squeeze_all", x);
    if (!x) return NULL;
    ag_shape s = {0, {0}};
    for (int d = 0; d < x->ndim; d++)
        if (x->shape[d] != 1) s.dim[s.ndim++] = x->shape[d];
    return ag_reshape(x, s);
}

ag_tensor *ag_flatten(ag_tensor *x, int start_dim, int end_dim) {
    AG_CHECK_HANDLES(NULL, "flatten", x);
    if (!x) return NULL;
    int a = ag__dim("flatten", start_dim, x->ndim), b = ag__dim("flatten", end_dim, x->ndim);
    if (a < 0 || b < 0) return NULL;
    if (x->ndim == 0) return ag_reshape(x, AG_SHAPE(1)); /* dims 0 and -1 only, as PyTorch */
    if (a > b) return ag__fail_null(AG_ERR_ARG, "flatten: start_dim %d comes after end_dim %d", start_dim, end_dim);
    ag_shape s = {0, {0}};
    for (int d = 0; d < x->ndim; d++) { /* a product of x's sizes: it fits, as x's does */
        if (d > a && d <= b) s.dim[s.ndim - 1] *= x->shape[d];
        else s.dim[s.ndim++] = x->shape[d];
    }
    return ag_reshape(x, s);
}

/* The attributes of the diagonal (offset, d1, d2) of a tensor of ndim dims and shape; AG_OK
 * or the failure recorded (a dim out of range, the two dims equal, fewer than 2 dims). */
static ag_status diagonal_attr(const char *op, int ndim, const int64_t *shape, int64_t offset, int dim1, int dim2,
                               ag_attr *at) {
    if (ndim < 2) return ag__fail(AG_ERR_SHAPE, "%s: expects at least 2 dims, got %d", op, ndim);
    int d1 = ag__dim(op, dim1, ndim), d2 = ag__dim(op, dim2, ndim);
    if (d1 < 0 || d2 < 0) return AG_ERR_INDEX;
    if (d1 == d2) return ag__fail(AG_ERR_ARG, "%s: diagonal dimensions cannot be identical %d, %d", op, dim1, dim2);
    /* beyond either corner the diagonal is empty: clamp, so that no offset arithmetic wraps */
    offset = offset > shape[d2] ? shape[d2] : offset < -shape[d1] ? -shape[d1] : offset;
    *at = (ag_attr){.i = {offset, d1, d2}};
    return AG_OK;
}

ag_tensor *ag_diagonal(ag_tensor *x, int64_t offset, int dim1, int dim2) {
    AG_CHECK_HANDLES(NULL, "diagonal", x);
    if (!x) return NULL;
    ag_attr at;
    if (diagonal_attr("diagonal", x->ndim, x->shape, offset, dim1, dim2, &at)) return NULL;
    return make_view(&def_diagonal, x, &at);
}

ag_tensor *ag_movedim(ag_tensor *x, int n, const int *source, const int *destination) {
    AG_CHECK_HANDLES(NULL, "movedim", x);
    if (!x) return NULL;
    if (n < 0 || n > x->ndim || (n > 0 && (!source || !destination)))
        return ag__fail_null(AG_ERR_ARG, "movedim: %d dims to move (source %s, destination %s) for a tensor of %d dims",
                             n, source ? "given" : "NULL", destination ? "given" : "NULL", x->ndim);
    /* perm[dest] = src for the moved dims; the others keep their order in the free places */
    int perm[AG_MAX_DIMS];
    uint32_t src_used = 0, dst_used = 0;
    for (int k = 0; k < n; k++) {
        int s = ag__dim("movedim", source[k], x->ndim), d = ag__dim("movedim", destination[k], x->ndim);
        if (s < 0 || d < 0) return NULL;
        if (src_used >> s & 1) return ag__fail_null(AG_ERR_ARG, "movedim: repeated dim in source (%d)", source[k]);
        if (dst_used >> d & 1) return ag__fail_null(AG_ERR_ARG, "movedim: repeated dim in destination (%d)", destination[k]);
        src_used |= 1u << s;
        dst_used |= 1u << d;
        perm[d] = s;
    }
    for (int d = 0, s = 0; d < x->ndim; d++) {
        if (dst_used >> d & 1) continue;
        while (src_used >> s & 1) s++;
        perm[d] = s++;
    }
    return ag_permute(x, perm);
}

/* ---- diag_embed: a new tensor with x on a diagonal ------------------------------------------- */
static ag_status diag_embed_backward(ag_tensor *out, ag_tensor *gout);
/* dx = diagonal(dy) (offset, d1, d2), the view op */
static ag_status diag_embed_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin) {
    return (gin[0] = make_view(&def_diagonal, gout, &out->attr)) ? AG_OK : ag_last_status();
}
/* dy = diag_embed(dx) */
static ag_tensor *diag_embed_jvp(ag_tensor *out, ag_tensor *const *tin) {
    return ag_diag_embed(tin[0], out->attr.i[0], (int)out->attr.i[1], (int)out->attr.i[2]);
}
/* y = 0 with y's diagonal (offset, d1, d2) = x;  dx = the diagonal of dy */
static const ag_op op_diag_embed = {.name = "diag_embed", .grad_fn = "DiagEmbedBackward0",
                                    .backward = diag_embed_backward,
                                    .math = "y = 0, y[..., k, k + offset, ...] = x[..., k] (dims d1, d2);  "
                                            "dx = the diagonal of dy",
                                    .backward_graph = diag_embed_backward_graph, .jvp = diag_embed_jvp,
                                    .tangent = "ẏ = diag_embed(ẋ)"};

ag_tensor *ag_diag_embed(ag_tensor *x, int64_t offset, int dim1, int dim2) {
    AG_CHECK_HANDLES(NULL, "diag_embed", x);
    if (!x || ag__check_float("diag_embed", x, NULL)) return NULL;
    if (x->ndim < 1 || x->ndim >= AG_MAX_DIMS) {
        char s[AG_SHAPE_STR];
        return ag__fail_null(AG_ERR_SHAPE, "diag_embed: expects 1 to %d dims, got shape %s", AG_MAX_DIMS - 1, ag__tshape(s, x));
    }
    const int ndim = x->ndim + 1;
    int d1 = ag__dim("diag_embed", dim1, ndim), d2 = ag__dim("diag_embed", dim2, ndim);
    if (d1 < 0 || d2 < 0) return NULL;
    if (d1 == d2) return ag__fail_null(AG_ERR_ARG, "diag_embed: diagonal dimensions cannot be identical %d, %d", dim1, dim2);
    const int64_t n = x->shape[x->ndim - 1];
    int64_t side, shape[AG_MAX_DIMS];
    if (offset < -AG_MAX_SIZE || offset > AG_MAX_SIZE || ag__add_overflow(n, offset < 0 ? -offset : offset, &side))
        side = -1; /* refused by the shape check */
    for (int d = 0, k = 0; d < ndim; d++) shape[d] = d == d1 || d == d2 ? side : x->shape[k++];
    if (ag__check_alloc("diag_embed", ndim, shape, x->dtype)) return NULL;
    ag_tensor *y = ag__new_zeros(x->dtype, ndim, shape);
    if (!y) return NULL;
    ag_attr at = {.i = {offset, d1, d2}};
    ag_tensor v = view_header(&def_diagonal, y, &at);
    ag__copy_into(&v, x);
    if (ag__needs_grad1(x)) {
        if (!ag__record(y, &op_diag_embed, &x, 1)) return NULL;
        y->attr = at;
    }
    return y;
}

/* dx = a contiguous copy of dy's diagonal. */
static ag_status diag_embed_backward(ag_tensor *out, ag_tensor *gout) {
    ag_tensor *x = out->in[0];
    ag_tensor *gx = ag__new_unowned(x->dtype, x->ndim, x->shape, false);
    if (!gx) return AG_ERR_NOMEM;
    ag_tensor v = view_header(&def_diagonal, gout, &out->attr);
    ag__copy_into(gx, &v);
    return ag__accumulate(x, gx);
}

ag_tensor *ag_diag(ag_tensor *x, int64_t diagonal) {
    AG_CHECK_HANDLES(NULL, "diag", x);
    if (!x) return NULL;
    if (x->ndim != 1 && x->ndim != 2) {
        char s[AG_SHAPE_STR];
        return ag__fail_null(AG_ERR_SHAPE, "diag: expects a 1-D or 2-D tensor, got shape %s", ag__tshape(s, x));
    }
    if (x->ndim == 1) return ag_diag_embed(x, diagonal, 0, 1);
    if (ag__composite_begin("diag")) return NULL; /* a copy of the diagonal view, as torch.diag */
    return ag__composite_end(ag_clone(ag_diagonal(x, diagonal, 0, 1)));
}

/* ---- copies ---------------------------------------------------------------------------------- */
static ag_status copy_backward(ag_tensor *out, ag_tensor *gout);
/* dy = dx copied (converted to y's dtype) */
static ag_tensor *copy_jvp(ag_tensor *out, ag_tensor *const *tin) { return ag_to_dtype(tin[0], out->dtype); }
/* y = x (a new copy, possibly converted: row-major, a clone laid out as a dense x);  dx = dy converted to x's dtype */
static const ag_op op_clone = {.name = "clone", .grad_fn = "CloneBackward0", .backward = copy_backward,
                               .math = "y = copy of x;  dx = dy",
                               .backward_graph = pass_backward_graph, .jvp = copy_jvp,
                               .tangent = "ẏ = ẋ"};
static const ag_op op_to_dtype = {.name = "to_dtype", .grad_fn = "ToCopyBackward0", .backward = copy_backward,
                                  .math = "y = x converted to another dtype;  dx = dy converted back",
                                  .backward_graph = pass_backward_graph, .jvp = copy_jvp,
                                  .tangent = "ẏ = ẋ converted to y's dtype"};

/* y = x converted to dtype (y_i = x_i), row-major, or laid out as a dense x when keep_layout (clone,
 * to_dtype). */
static ag_tensor *copy_op(const ag_op *op, ag_tensor *x, ag_dtype dtype, bool keep_layout) {
    AG_CHECK_HANDLES(NULL, op->name, x);
    if (!x) return NULL;
    if (ag__check_alloc(op->name, x->ndim, x->shape, dtype)) return NULL; /* an expanded view may be too large */
    ag_tensor *y = keep_layout ? ag__new_map_result(dtype, x->ndim, x->shape, (const ag_tensor *const[]){x}, 1)
                               : ag__new(dtype, x->ndim, x->shape);
    if (!y) return NULL;
    ag__copy_into(y, x);
    if (ag__needs_grad1(x) && (dtype == AG_F32 || dtype == AG_F64) && !ag__record(y, op, &x, 1)) return NULL;
    /* float64 to float32 overflows beyond ±3.4e38 */
    return x->dtype == AG_F64 && dtype == AG_F32 ? ag__check_finite(y, op->name) : y;
}

static ag_status copy_backward(ag_tensor *out, ag_tensor *gout) {
    ag_tensor *x = out->in[0];
    if (x->dtype == gout->dtype) return ag__accumulate_last(x, ag_retain(gout), gout);
    ag_tensor *g = ag__new_unowned(x->dtype, x->ndim, x->shape, false);
    if (!g) return AG_ERR_NOMEM;
    ag__copy_into(g, gout);
    return ag__accumulate(x, g);
}

ag_tensor *ag_clone(ag_tensor *x) {
    AG_CHECK_HANDLES(NULL, "clone", x);
    return x ? copy_op(&op_clone, x, x->dtype, true) : NULL;
}

ag_tensor *ag_contiguous(ag_tensor *x) {
    AG_CHECK_HANDLES(NULL, "contiguous", x);
    if (!x) return NULL;
    if (ag__contig(x)) return ag__own(ag_retain(x));
    return copy_op(&op_clone, x, x->dtype, false); /* a row-major clone */
}
ag_tensor *ag_to_dtype(ag_tensor *x, ag_dtype dtype) {
    AG_CHECK_HANDLES(NULL, "to_dtype", x);
    if (!x) return NULL;
    if ((unsigned)dtype > AG_U8) return ag__fail_null(AG_ERR_DTYPE, "to_dtype: unknown dtype %d", (int)dtype);
    return copy_op(&op_to_dtype, x, dtype, true); /* laid out as a dense x, as PyTorch's .to(dtype) */
}

const ag_op *const ag__view_ops[] = {&def_view.op, &def_permute.op, &def_slice.op, &def_select.op, &def_expand.op,
                                     &def_unsqueeze.op, &def_squeeze.op, &def_diagonal.op, &op_diag_embed, &op_clone,
                                     &op_to_dtype, NULL};

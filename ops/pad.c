/*
 * pad.c - F.pad: constant, reflect, replicate and circular padding of the
 * trailing dims, with PyTorch's pad list (left, right of the last dim, then of
 * the dim before, ...); a negative entry crops.
 *
 * Every mode is a gather: output position o of a padded dim of size n with left
 * pad l reads input position i = o - l when 0 ≤ i < n, and otherwise the mode's
 * source (reflect: the mirror without repeating the edge, replicate: the edge,
 * circular: i mod n) or, for constant, no element (the fill value).  The per-dim
 * source maps are built once per call; the forward gathers through x's own strides
 * (no copy) and the adjoint scatter-adds dy back through the same maps.
 *
 * A row's inside run at unit stride is copied 128 bytes at a time, a block's four
 * loads before its four stores (copy_run), not by memcpy: glibc's memmove of rows of
 * 1 KiB into rows of 1 040 bytes (circular [4, 16, 256, 256] padded by (1, 3, 2, 0))
 * took 1.4-1.8x the time on the AMD EPYC measured (the copies' relative offset drifts
 * by 16 bytes a row; loads and stores interleaved one for one ran as slowly).
 */
#include <string.h>
#include "core/iter.h"
#include "core/sum.h"
#include "autograd/tape.h"
#include "agrad/ops.h"

/* The source positions of each output position, per dim: map[d] NULL is the identity. */
typedef struct pad_plan {
    int ndim;
    int64_t out[AG_MAX_DIMS];
    int64_t *map[AG_MAX_DIMS]; /* -1: the fill value (constant mode) */
    int64_t stride[AG_MAX_DIMS]; /* of the tensor read (forward) or written (adjoint), in elements */
    int64_t lo, hi, shift;       /* last dim: output positions [lo, hi) read input position o + shift */
} pad_plan;

/* The input position that output position o of a dim of size n with left pad l reads (-1: none). */
static int64_t source(ag_pad_mode m, int64_t o, int64_t l, int64_t n) {
    const int64_t i = o - l;
    if (i >= 0 && i < n) return i;
    switch (m) {
    case AG_PAD_REFLECT: return i < 0 ? -i : 2 * (n - 1) - i;
    case AG_PAD_REPLICATE: return i < 0 ? 0 : n - 1;
    case AG_PAD_CIRCULAR: return (i % n + n) % n;
    default: return -1;
    }
}

static void plan_free(pad_plan *p) {
    for (int d = 0; d < p->ndim; d++) ag__free(p->map[d]);
}

/* Builds the plan of x's shape (ndim dims, 0-d seen as [1]) padded by left[d] to out[d] in mode m, with the
 * strides of the tensor the kernel indexes.  AG_ERR_NOMEM (recorded) when a map cannot be allocated. */
static ag_status plan_build(pad_plan *p, int ndim, const int64_t *shape, const int64_t *out, const int64_t *left,
                            const int64_t *stride, ag_pad_mode m) {
    memset(p, 0, sizeof *p);
    p->ndim = ndim ? ndim : 1;
    p->out[0] = 1;
    for (int d = 0; d < ndim; d++) {
        p->out[d] = out[d], p->stride[d] = stride[d];
        if (left[d] == 0 && out[d] == shape[d]) continue;
        if (!(p->map[d] = ag__alloc_n(out[d] ? out[d] : 1, sizeof(int64_t)))) {
            plan_free(p);
            return AG_ERR_NOMEM;
        }
        for (int64_t o = 0; o < out[d]; o++) p->map[d][o] = source(m, o, left[d], shape[d]);
    }
    const int last = p->ndim - 1;
    p->lo = 0, p->hi = p->out[last], p->shift = 0;
    if (p->map[last]) { /* the inside run: o - left in [0, n) */
        const int64_t l = left[last], n = shape[last], W = out[last];
        p->lo = l < 0 ? 0 : l > W ? W : l;
        p->hi = l + n < p->lo ? p->lo : l + n > W ? W : l + n;
        p->shift = -l;
    }
    return AG_OK;
}

/* Walks the output rows (all dims but the last) in order: *base gets the row's source offset, or -1 when
 * an outer dim reads the fill value.  idx holds the row's index; returns false after the last row. */
static bool next_row(const pad_plan *p, int64_t *idx, int64_t *base, bool first) {
    const int last = p->ndim - 1;
    if (!first) {
        int d = last - 1;
        for (; d >= 0; d--) {
            if (++idx[d] < p->out[d]) break;
            idx[d] = 0;
        }
        if (d < 0) return false;
    }
    *base = 0;
    for (int d = 0; d < last; d++) {
        const int64_t s = p->map[d] ? p->map[d][idx[d]] : idx[d];
        if (s < 0) {
            *base = -1;
            return true;
        }
        *base += s * p->stride[d];
    }
    return true;
}

#ifdef AG_X86_INTRINSICS
#include <immintrin.h>
/* d[0, n) = s[0, n) for n ≥ 128 (no overlap): blocks of four 32-byte loads, then their four stores; the
 * last block ends at n (it may overlap the one before: the same bytes written twice). */
__attribute__((target("avx2"))) static void copy_run_avx2(char *restrict d, const char *restrict s, size_t n) {
    for (size_t i = 0;; i += 128) {
        if (i + 128 > n) i = n - 128;
        const __m256i a = _mm256_loadu_si256((const __m256i *)(s + i)), b = _mm256_loadu_si256((const __m256i *)(s + i + 32)),
                      c = _mm256_loadu_si256((const __m256i *)(s + i + 64)), e = _mm256_loadu_si256((const __m256i *)(s + i + 96));
        _mm256_storeu_si256((__m256i *)(d + i), a), _mm256_storeu_si256((__m256i *)(d + i + 32), b);
        _mm256_storeu_si256((__m256i *)(d + i + 64), c), _mm256_storeu_si256((__m256i *)(d + i + 96), e);
        if (i + 128 == n) return;
    }
}
#endif

/* d[0, n) = s[0, n) (n bytes, no overlap): y[o] = x[o] */
static void copy_run(void *d, const void *s, size_t n) {
#ifdef AG_X86_INTRINSICS
    if (n >= 128 && AG_VEC_WIDE()) {
        copy_run_avx2(d, s, n);
        return;
    }
#endif
    memcpy(d, s, n);
}

static bool empty_output(const pad_plan *p) {
    for (int d = 0; d < p->ndim; d++)
        if (p->out[d] == 0) return true;
    return false;
}

#define PAD_KERNELS(SUF, T)                                                                                   \
    /* y[o] = x[source(o)], or value where a dim has no source */                                             \
    static void pad_fwd_##SUF(const pad_plan *p, const T *x, T *y, T value) {                                 \
        if (empty_output(p)) return;                                                                          \
        const int last = p->ndim - 1;                                                                         \
        const int64_t W = p->out[last], s = p->stride[last], *map = p->map[last];                            \
        int64_t idx[AG_MAX_DIMS] = {0}, base;                                                                 \
        for (bool first = true; next_row(p, idx, &base, first); first = false, y += W) {                     \
            if (base < 0) {                                                                                   \
                for (int64_t j = 0; j < W; j++) y[j] = value;                                                 \
                continue;                                                                                     \
            }                                                                                                 \
            for (int64_t j = 0; j < p->lo; j++) y[j] = map[j] < 0 ? value : x[base + map[j] * s];            \
            const T *xr = x + base + (p->hi > p->lo ? p->lo + p->shift : 0) * s; /* the inside: a copy at unit stride */ \
            if (s == 1) copy_run(y + p->lo, xr, sizeof(T) * (size_t)(p->hi - p->lo));                         \
            else                                                                                              \
                for (int64_t j = 0; j < p->hi - p->lo; j++) y[p->lo + j] = xr[j * s];                         \
            for (int64_t j = p->hi; j < W; j++) y[j] = map[j] < 0 ? value : x[base + map[j] * s];            \
        }                                                                                                     \
    }                                                                                                         \
    /* dx[source(o)] += dy[o] (dx zeroed, strides of dx in the plan) */                                       \
    static void pad_bwd_##SUF(const pad_plan *p, const T *dy, T *dx) {                                        \
        if (empty_output(p)) return;                                                                          \
        const int last = p->ndim - 1;                                                                         \
        const int64_t W = p->out[last], s = p->stride[last], *map = p->map[last];                            \
        int64_t idx[AG_MAX_DIMS] = {0}, base;                                                                 \
        for (bool first = true; next_row(p, idx, &base, first); first = false, dy += W) {                    \
            if (base < 0) continue;                                                                           \
            for (int64_t j = 0; j < p->lo; j++) /* in the order of j, as the sums always were */              \
                if (map[j] >= 0) dx[base + map[j] * s] += dy[j];                                              \
            T *dr = dx + base + (p->hi > p->lo ? p->lo + p->shift : 0) * s; /* the inside run: each place once */ \
            for (int64_t j = 0; j < p->hi - p->lo; j++) dr[j * s] += dy[p->lo + j];                           \
            for (int64_t j = p->hi; j < W; j++)                                                               \
                if (map[j] >= 0) dx[base + map[j] * s] += dy[j];                                              \
        }                                                                                                     \
    }
PAD_KERNELS(f32, float)
PAD_KERNELS(f64, double)

static ag_status pad_backward(ag_tensor *out, ag_tensor *gout);
static ag_status pad_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin);
static ag_tensor *pad_jvp(ag_tensor *out, ag_tensor *const *tin);
static ag_status unpad_backward(ag_tensor *out, ag_tensor *gout);
static ag_status unpad_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin);
static ag_tensor *unpad_jvp(ag_tensor *out, ag_tensor *const *tin);
/* y[o] = x[source(o)] (or the fill);  dx[source(o)] += dy[o].  One row per mode for its grad_fn
 * (PyTorch's names; its circular padding records slices and a copy, CopySlices); the registry lists
 * the constant one, and the test row reaches the four modes. */
#define PAD_MATH "y[…, o] = x[…, src(o)] with src(o) = o - left inside x, else the mode's source (reflect: the mirror, " \
                 "replicate: the edge, circular: mod n) or the constant;  dx[…, src(o)] += dy[…, o]"
static const ag_op op_pad[4] = {
    {.name = "pad", .grad_fn = "ConstantPadNdBackward0", .backward = pad_backward,
     .math = PAD_MATH,
     .backward_graph = pad_backward_graph, .jvp = pad_jvp,
     .tangent = "ẏ = pad(ẋ) with the same mode, the constant 0"},
    {.name = "pad", .grad_fn = "ReflectionPad2DBackward0", .backward = pad_backward,
     .math = PAD_MATH,
     .backward_graph = pad_backward_graph, .jvp = pad_jvp,
     .tangent = "ẏ = pad(ẋ) with the same mode, the constant 0"},
    {.name = "pad", .grad_fn = "ReplicationPad2DBackward0", .backward = pad_backward,
     .math = PAD_MATH,
     .backward_graph = pad_backward_graph, .jvp = pad_jvp,
     .tangent = "ẏ = pad(ẋ) with the same mode, the constant 0"},
    {.name = "pad", .grad_fn = "CopySlices", .backward = pad_backward,
     .math = PAD_MATH,
     .backward_graph = pad_backward_graph, .jvp = pad_jvp,
     .tangent = "ẏ = pad(ẋ) with the same mode, the constant 0"},
};
/* pad's adjoint as an op (PyTorch's reflection_pad2d_backward, ...): y[src(o)] += g[o];  dg = pad(dy)
 * with the fill 0.  One row per mode, as pad's. */
#define UNPAD_MATH "y = 0, y[…, src(o)] += g[…, o] (the adjoint of pad: dy of the padded shape summed back to x's);  " \
                   "dg = pad(dy) with the constant 0"
static const ag_op op_pad_backward[4] = {
    {.name = "pad_backward", .grad_fn = "ConstantPadNdBackward0", .backward = unpad_backward,
     .math = UNPAD_MATH,
     .backward_graph = unpad_backward_graph, .jvp = unpad_jvp,
     .tangent = "ẏ = pad_backward(ġ)"},
    {.name = "pad_backward", .grad_fn = "ReflectionPad2DBackwardBackward0", .backward = unpad_backward,
     .math = UNPAD_MATH,
     .backward_graph = unpad_backward_graph, .jvp = unpad_jvp,
     .tangent = "ẏ = pad_backward(ġ)"},
    {.name = "pad_backward", .grad_fn = "ReplicationPad2DBackwardBackward0", .backward = unpad_backward,
     .math = UNPAD_MATH,
     .backward_graph = unpad_backward_graph, .jvp = unpad_jvp,
     .tangent = "ẏ = pad_backward(ġ)"},
    {.name = "pad_backward", .grad_fn = "CopySlices", .backward = unpad_backward,
     .math = UNPAD_MATH,
     .backward_graph = unpad_backward_graph, .jvp = unpad_jvp,
     .tangent = "ẏ = pad_backward(ġ)"},
};

static const char *mode_name(ag_pad_mode m) {
    static const char *const names[] = {"constant", "reflect", "replicate", "circular"};
    return names[m];
}

/* Checks the pad list of op for an input of ndim dims and sizes shape (named s in messages, dtype) and
 * writes the padded sizes to out and the left pads to left (zeros for the dims not padded).
 * AG_OK, or the failure recorded. */
static ag_status pad_geometry(const char *op, int ndim, const int64_t *shape, const char *s, ag_dtype dtype, int npad,
                              const int64_t *pad, ag_pad_mode mode, int64_t *out, int64_t *left) {
    if (mode < AG_PAD_CONSTANT || mode > AG_PAD_CIRCULAR) return ag__fail(AG_ERR_ARG, "%s: unknown mode %d", op, (int)mode);
    if (npad < 0 || npad % 2 || (npad && !pad))
        return ag__fail(AG_ERR_ARG, "%s: the pad list must have an even length (got %d)", op, npad);
    if (npad / 2 > ndim)
        return ag__fail(AG_ERR_SHAPE, "%s: %d pad entries pad %d dims, but input %s has %d", op, npad, npad / 2, s, ndim);
    memcpy(out, shape, sizeof(int64_t) * (size_t)ndim);
    memset(left, 0, sizeof(int64_t) * AG_MAX_DIMS);
    for (int k = 0; k < npad / 2; k++) {
        const int d = ndim - 1 - k;
        const int64_t n = shape[d], l = pad[2 * k], r = pad[2 * k + 1];
        if (ag__add_overflow(n, l, &out[d]) || ag__add_overflow(out[d], r, &out[d]) || out[d] < 0)
            return ag__fail(AG_ERR_SHAPE, "%s: padding (%lld, %lld) of dim %d of input %s gives a negative or "
                            "overflowing size", op, (long long)l, (long long)r, d, s);
        left[d] = l;
        if (mode == AG_PAD_CONSTANT || (l <= 0 && r <= 0)) continue;
        if ((mode == AG_PAD_REFLECT && (l >= n || r >= n)) || (mode != AG_PAD_REFLECT && n == 0) ||
            (mode == AG_PAD_CIRCULAR && (l > n || r > n)))
            return ag__fail(AG_ERR_SHAPE, "%s: %s padding (%lld, %lld) of dim %d does not fit input %s (expected "
                            "%s %lld)", op, mode_name(mode), (long long)l, (long long)r, d, s,
                            mode == AG_PAD_REFLECT ? "each below the dim's size" : mode == AG_PAD_REPLICATE
                            ? "a non-empty dim of size" : "each at most the dim's size", (long long)n);
    }
    return ag__check_alloc(op, ndim, out, dtype) ? ag_last_status() : AG_OK;
}

/* y = x (of ndim dims) padded to the sizes out with the left pads left in mode m (fill value),
 * recorded as pad. */
static ag_tensor *pad_apply(ag_tensor *x, const int64_t *out, const int64_t *left, ag_pad_mode m, double value) {
    pad_plan p;
    if (plan_build(&p, x->ndim, x->shape, out, left, x->stride, m)) return NULL;
    ag_tensor *y = ag__new(x->dtype, x->ndim, out);
    if (!y) {
        plan_free(&p);
        return NULL;
    }
    if (x->dtype == AG_F64) pad_fwd_f64(&p, (const double *)ag__ptr(x), (double *)ag__ptr(y), value);
    else pad_fwd_f32(&p, (const float *)ag__ptr(x), (float *)ag__ptr(y), (float)value);
    plan_free(&p);
    if (ag__needs_grad1(x)) {
        if (!ag__record(y, &op_pad[m], &x, 1)) return NULL;
        y->attr.i[0] = m;
        memcpy(y->attr.i + 1, left, sizeof(int64_t) * (size_t)x->ndim); /* ndim ≤ 16 < 18 entries */
    }
    return ag__check_finite(y, "pad");
}

/* F.pad */
ag_tensor *ag_pad(ag_tensor *x, int npad, const int64_t *pad, ag_pad_mode mode, double value) {
    AG_CHECK_HANDLES(NULL, "pad", x);
    if (!x || ag__check_float("pad", x, NULL)) return NULL;
    char s[AG_SHAPE_STR];
    int64_t out[AG_MAX_DIMS], left[AG_MAX_DIMS];
    if (pad_geometry("pad", x->ndim, x->shape, ag__tshape(s, x), x->dtype, npad, pad, mode, out, left)) return NULL;
    return pad_apply(x, out, left, mode, value);
}

/* dx = the sums of dy at each source: a contiguous [ndim, shape] tensor (dy's dtype) written from
 * g (the padded sizes, any strides) through the plan of the left pads and mode m. */
static ag_tensor *unpad_run(ag_tensor *g, int ndim, const int64_t *shape, const int64_t *left, ag_pad_mode m,
                            bool owned) {
    ag_tensor *gc = ag__contig_or_copy(g);
    if (!gc) return NULL;
    int64_t stride[AG_MAX_DIMS], acc = 1;
    for (int d = ndim - 1; d >= 0; d--) stride[d] = acc, acc *= shape[d] ? shape[d] : 1;
    pad_plan p;
    ag_tensor *gx = NULL;
    if (!plan_build(&p, ndim, shape, g->shape, left, stride, m)) {
        gx = owned ? ag__new_zeros(g->dtype, ndim, shape) : ag__new_unowned(g->dtype, ndim, shape, true);
        if (gx && g->dtype == AG_F64) pad_bwd_f64(&p, (const double *)ag__ptr(gc), (double *)ag__ptr(gx));
        else if (gx) pad_bwd_f32(&p, (const float *)ag__ptr(gc), (float *)ag__ptr(gx));
        plan_free(&p);
    }
    ag_release(gc);
    return gx;
}

/* The adjoint of a pad of an input of ndim dims and sizes shape as an op: sums g back, recorded
 * as pad_backward (attr as pad's). */
static ag_tensor *unpad_apply(ag_tensor *g, int ndim, const int64_t *shape, const int64_t *left, ag_pad_mode m) {
    ag_tensor *y = unpad_run(g, ndim, shape, left, m, true);
    if (y && ag__needs_grad1(g)) {
        if (!ag__record(y, &op_pad_backward[m], &g, 1)) return NULL;
        y->attr.i[0] = m;
        memcpy(y->attr.i + 1, left, sizeof(int64_t) * (size_t)ndim);
    }
    return y;
}

/* torch.ops.aten.*_pad*d_backward */
ag_tensor *ag_pad_backward(ag_tensor *dy, ag_shape input_shape, int npad, const int64_t *pad, ag_pad_mode mode) {
    AG_CHECK_HANDLES(NULL, "pad_backward", dy);
    if (!dy || ag__check_float("pad_backward", dy, NULL)) return NULL;
    char s[AG_SHAPE_STR], s2[AG_SHAPE_STR], s3[AG_SHAPE_STR];
    if (input_shape.ndim < 0 || input_shape.ndim > AG_MAX_DIMS)
        return ag__fail_null(AG_ERR_SHAPE, "pad_backward: input_shape has %d dims, expected 0 to %d", input_shape.ndim,
                             AG_MAX_DIMS);
    if (ag__check_shape("pad_backward", input_shape.ndim, input_shape.dim)) return NULL;
    int64_t out[AG_MAX_DIMS], left[AG_MAX_DIMS];
    const char *in = ag__shape_str(s, input_shape.ndim, input_shape.dim);
    if (pad_geometry("pad_backward", input_shape.ndim, input_shape.dim, in, dy->dtype, npad, pad, mode, out, left))
        return NULL;
    if (dy->ndim != input_shape.ndim || memcmp(dy->shape, out, sizeof(int64_t) * (size_t)dy->ndim) != 0)
        return ag__fail_null(AG_ERR_SHAPE, "pad_backward: dy has shape %s, but input %s padded has shape %s",
                             ag__tshape(s2, dy), in, ag__shape_str(s3, input_shape.ndim, out));
    return unpad_apply(dy, input_shape.ndim, input_shape.dim, left, mode);
}

/* dx[source(o)] += dy[o] */
static ag_status pad_backward(ag_tensor *out, ag_tensor *gout) {
    ag_tensor *x = out->in[0];
    ag_tensor *gx = unpad_run(gout, x->ndim, x->shape, out->attr.i + 1, (ag_pad_mode)out->attr.i[0], false);
    return gx ? ag__accumulate(x, gx) : AG_ERR_NOMEM;
}
/* dx = pad_backward(dy): the adjoint as a recorded op */
static ag_status pad_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin) {
    ag_tensor *x = out->in[0];
    gin[0] = unpad_apply(gout, x->ndim, x->shape, out->attr.i + 1, (ag_pad_mode)out->attr.i[0]);
    return gin[0] ? AG_OK : ag_last_status();
}
/* dy = pad(dx) with the fill 0 (the value is a constant) */
static ag_tensor *pad_jvp(ag_tensor *out, ag_tensor *const *tin) {
    return pad_apply(tin[0], out->shape, out->attr.i + 1, (ag_pad_mode)out->attr.i[0], 0);
}

/* dg = pad(dy) with the fill 0: the forward kernel over dy */
static ag_status unpad_backward(ag_tensor *out, ag_tensor *gout) {
    ag_tensor *g = out->in[0];
    pad_plan p;
    if (plan_build(&p, g->ndim, out->shape, g->shape, out->attr.i + 1, gout->stride, (ag_pad_mode)out->attr.i[0]))
        return AG_ERR_NOMEM;
    ag_tensor *gg = ag__new_unowned(g->dtype, g->ndim, g->shape, false);
    if (!gg) {
        plan_free(&p);
        return AG_ERR_NOMEM;
    }
    if (g->dtype == AG_F64) pad_fwd_f64(&p, (const double *)ag__ptr(gout), (double *)ag__ptr(gg), 0);
    else pad_fwd_f32(&p, (const float *)ag__ptr(gout), (float *)ag__ptr(gg), 0);
    plan_free(&p);
    return ag__accumulate(g, gg);
}
/* dg = pad(dy) as a recorded op */
static ag_status unpad_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin) {
    gin[0] = pad_apply(gout, out->in[0]->shape, out->attr.i + 1, (ag_pad_mode)out->attr.i[0], 0);
    return gin[0] ? AG_OK : ag_last_status();
}
/* dy = pad_backward(dg) */
static ag_tensor *unpad_jvp(ag_tensor *out, ag_tensor *const *tin) {
    return unpad_apply(tin[0], out->ndim, out->shape, out->attr.i + 1, (ag_pad_mode)out->attr.i[0]);
}

const ag_op *const ag__pad_ops[] = {&op_pad[0], &op_pad_backward[0], NULL};

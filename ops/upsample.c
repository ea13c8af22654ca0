/*
 * upsample.c - F.interpolate of [N, C, H, W] in the modes "nearest" and
 * "bilinear" (align_corners either way), to a size or by a scale factor.
 *
 * Each output row (and column alike) reads input rows i0 and i1 with weights
 * 1 - λ and λ, computed once per call as PyTorch 1.13's CPU kernels compute them
 * (UpSample.h: nearest_idx in float, area_pixel_compute_source_index and
 * guard_index_and_lambda in the dtype), so that the same output positions read
 * the same input positions.  The adjoint scatters dy back with the same weights.
 */
#include <math.h>
#include <string.h>
#include "core/iter.h"
#include "autograd/tape.h"
#include "ops/resample.h"
#include "agrad/ops.h"

/* One output position's source: rows i0, i1 (i1 = i0 for nearest) and the weight λ of i1. */
typedef struct tap {
    int64_t i0, i1;
    double lambda; /* exact in the dtype: computed in it */
} tap;

/* PyTorch's compute_scales_value: 1/scale when a scale factor was given, else in/out, in double or float. */
static double scale_value(double scale, int64_t in, int64_t out) { return scale > 0 ? 1.0 / scale : (double)in / (double)out; }
static float scale_value_f(double scale, int64_t in, int64_t out) {
    return scale > 0 ? (float)(1.0 / scale) : (float)in / (float)out;
}

/* The taps of the out positions of a dim of size in.  f32: λ computed in float, as PyTorch's float kernel. */
static void taps(tap *t, int64_t in, int64_t out, double scale, ag_interp_mode mode, bool align, bool f32) {
    for (int64_t o = 0; o < out; o++) {
        if (mode == AG_INTERP_NEAREST) { /* nearest_idx: float arithmetic for both dtypes */
            int64_t i = o;
            if (out == 2 * in) i = o >> 1;
            else if (out != in) i = (int64_t)floorf((float)o * scale_value_f(scale, in, out));
            t[o].i0 = t[o].i1 = i < in - 1 ? i : in - 1;
            t[o].lambda = 0;
            continue;
        }
        double real;
        if (f32) {
            const float s = align ? (out > 1 ? (float)(in - 1) / (float)(out - 1) : 0.0f)
                                  : scale_value_f(scale, in, out);
            const float r = align ? s * (float)o : s * ((float)o + 0.5f) - 0.5f;
            real = !align && r < 0 ? 0.0 : (double)r;
        } else {
            const double s = align ? (out > 1 ? (double)(in - 1) / (double)(out - 1) : 0.0) : scale_value(scale, in, out);
            const double r = align ? s * (double)o : s * ((double)o + 0.5) - 0.5;
            real = !align && r < 0 ? 0.0 : r;
        }
        int64_t i = (int64_t)floor(real);
        if (i > in - 1) i = in - 1;
        double l = f32 ? (double)((float)real - (float)i) : real - (double)i;
        t[o].i0 = i;
        t[o].i1 = i + (i < in - 1 ? 1 : 0);
        t[o].lambda = l < 0 ? 0 : l > 1 ? 1 : l;
    }
}

#define UPSAMPLE_KERNELS(SUF, T)                                                                              \
    /* y[p, i, j] = Σ over the row and column taps of x, weighted (1 - λ, λ) */                               \
    static void up_fwd_##SUF(int64_t P, int64_t H, int64_t W, int64_t OH, int64_t OW, const tap *th,        \
                             const tap *tw, bool nearest, const T *x, T *y) {                                 \
        for (int64_t p = 0; p < P; p++) {                                                                     \
            const T *xp = x + p * H * W;                                                                      \
            for (int64_t i = 0; i < OH; i++) {                                                                \
                const T *r0 = xp + th[i].i0 * W, *r1 = xp + th[i].i1 * W;                                     \
                const T h1 = (T)th[i].lambda, h0 = 1 - h1;                                                    \
                T *yr = y + (p * OH + i) * OW;                                                                \
                for (int64_t j = 0; j < OW; j++) {                                                            \
                    const int64_t a = tw[j].i0, b = tw[j].i1;                                                 \
                    const T w1 = (T)tw[j].lambda, w0 = 1 - w1;                                                \
                    yr[j] = nearest ? r0[a] : h0 * (w0 * r0[a] + w1 * r0[b]) + h1 * (w0 * r1[a] + w1 * r1[b]); \
                }                                                                                             \
            }                                                                                                 \
        }                                                                                                     \
    }                                                                                                         \
    /* dx[taps of (i, j)] += weight · dy[i, j] (dx zeroed) */                                                 \
    static void up_bwd_##SUF(int64_t P, int64_t H, int64_t W, int64_t OH, int64_t OW, const tap *th,        \
                             const tap *tw, bool nearest, const T *dy, T *dx) {                               \
        for (int64_t p = 0; p < P; p++) {                                                                     \
            T *xp = dx + p * H * W;                                                                           \
            for (int64_t i = 0; i < OH; i++) {                                                                \
                T *r0 = xp + th[i].i0 * W, *r1 = xp + th[i].i1 * W;                                           \
                const T h1 = (T)th[i].lambda, h0 = 1 - h1;                                                    \
                const T *dr = dy + (p * OH + i) * OW;                                                         \
                for (int64_t j = 0; j < OW; j++) {                                                            \
                    const int64_t a = tw[j].i0, b = tw[j].i1;                                                 \
                    if (nearest) {                                                                            \
                        r0[a] += dr[j];                                                                       \
                        continue;                                                                             \
                    }                                                                                         \
                    const T w1 = (T)tw[j].lambda, w0 = 1 - w1;                                                \
                    r0[a] += h0 * w0 * dr[j], r0[b] += h0 * w1 * dr[j];                                       \
                    r1[a] += h1 * w0 * dr[j], r1[b] += h1 * w1 * dr[j];                                       \
                }                                                                                             \
            }                                                                                                 \
        }                                                                                                     \
    }
UPSAMPLE_KERNELS(f32, float)
UPSAMPLE_KERNELS(f64, double)

static ag_status interpolate_backward(ag_tensor *out, ag_tensor *gout);
static ag_status interpolate_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin);
static ag_tensor *interpolate_jvp(ag_tensor *out, ag_tensor *const *tin);
static ag_status uninterpolate_backward(ag_tensor *out, ag_tensor *gout);
static ag_status uninterpolate_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin);
static ag_tensor *uninterpolate_jvp(ag_tensor *out, ag_tensor *const *tin);
/* y = Σ taps of x;  dx[taps] += weights·dy.  One row per mode for its grad_fn; the registry lists the first. */
#define INTERP_MATH "y[p,i,j] = Σ_{a ∈ {i0,i1}, b ∈ {j0,j1}} w_a·w_b·x[p,a,b] (nearest: x[p,i0,j0]; bilinear: " \
                    "weights 1-λ, λ of PyTorch's source index);  dx[p,a,b] += w_a·w_b·dy[p,i,j]"
static const ag_op op_interpolate[2] = {
    {.name = "interpolate", .grad_fn = "UpsampleNearest2DBackward1", .backward = interpolate_backward,
     .math = INTERP_MATH,
     .backward_graph = interpolate_backward_graph, .jvp = interpolate_jvp,
     .tangent = "ẏ = interpolate(ẋ) with the same options"},
    {.name = "interpolate", .grad_fn = "UpsampleBilinear2DBackward1", .backward = interpolate_backward,
     .math = INTERP_MATH,
     .backward_graph = interpolate_backward_graph, .jvp = interpolate_jvp,
     .tangent = "ẏ = interpolate(ẋ) with the same options"},
};
/* interpolate's adjoint as an op (PyTorch's upsample_*2d_backward): y[p,a,b] += w_a·w_b·g[p,i,j];
 * dg = interpolate(dy).  One row per mode. */
#define UNINTERP_MATH "y = 0, y[p,a,b] += w_a·w_b·g[p,i,j] over the taps (a, b) of each (i, j) (the adjoint of " \
                      "interpolate);  dg[p,i,j] = Σ_{a,b} w_a·w_b·dy[p,a,b] (interpolate of dy)"
static const ag_op op_interpolate_backward[2] = {
    {.name = "interpolate_backward", .grad_fn = "UpsampleNearest2DBackwardBackward1",
     .backward = uninterpolate_backward,
     .math = UNINTERP_MATH,
     .backward_graph = uninterpolate_backward_graph, .jvp = uninterpolate_jvp,
     .tangent = "ẏ = interpolate_backward(ġ)"},
    {.name = "interpolate_backward", .grad_fn = "UpsampleBilinear2DBackwardBackward1",
     .backward = uninterpolate_backward,
     .math = UNINTERP_MATH,
     .backward_graph = uninterpolate_backward_graph, .jvp = uninterpolate_jvp,
     .tangent = "ẏ = interpolate_backward(ġ)"},
};

/* Runs the forward (src [N, C, H, W] of shape xs, dst [N, C, OH, OW] of shape ys) or the adjoint
 * (src dy of shape ys, dst dx of shape xs, zeroed) in dtype with the options saved in attr; src and
 * dst contiguous.  AG_ERR_NOMEM when the taps cannot be allocated. */
static ag_status run(bool forward, const int64_t *xs, const int64_t *ys, ag_dtype dtype, const ag_attr *attr,
                     const void *src, void *dst) {
    const int64_t P = xs[0] * xs[1], H = xs[2], W = xs[3], OH = ys[2], OW = ys[3];
    const ag_interp_mode mode = (ag_interp_mode)attr->i[0];
    const bool align = attr->i[1], f32 = dtype == AG_F32, nearest = mode == AG_INTERP_NEAREST;
    tap *t = ag__alloc_n(OH + OW + 1, sizeof(tap));
    if (!t) return AG_ERR_NOMEM;
    taps(t, H, OH, attr->a, mode, align, f32);
    taps(t + OH, W, OW, attr->b, mode, align, f32);
    if (P && OH && OW) {
        if (f32 && forward) up_fwd_f32(P, H, W, OH, OW, t, t + OH, nearest, src, dst);
        else if (f32) up_bwd_f32(P, H, W, OH, OW, t, t + OH, nearest, src, dst);
        else if (forward) up_fwd_f64(P, H, W, OH, OW, t, t + OH, nearest, src, dst);
        else up_bwd_f64(P, H, W, OH, OW, t, t + OH, nearest, src, dst);
    }
    ag__free(t);
    return AG_OK;
}

ag_status ag__resample_f32(int64_t P, int64_t H, int64_t W, int64_t OH, int64_t OW, bool nearest, const float *x,
                           float *y) {
    ag_attr attr = {0};
    attr.i[0] = nearest ? AG_INTERP_NEAREST : AG_INTERP_BILINEAR;
    return run(true, (int64_t[]){1, P, H, W}, (int64_t[]){1, P, OH, OW}, AG_F32, &attr, x, y);
}

/* Checks the options of op for an input of shape xs (4 dims, named s in messages) and writes the
 * output shape to ys and the options to attr.  AG_OK, or the failure recorded. */
static ag_status interp_geometry(const char *op, const int64_t *xs, const char *s, ag_dtype dtype,
                                 const ag_interp_opts *o, int64_t *ys, ag_attr *attr) {
    if (!o) return ag__fail(AG_ERR_ARG, "%s: options with a size or a scale factor are required", op);
    if (o->mode != AG_INTERP_NEAREST && o->mode != AG_INTERP_BILINEAR)
        return ag__fail(AG_ERR_ARG, "%s: unknown mode %d", op, (int)o->mode);
    if (o->align_corners && o->mode == AG_INTERP_NEAREST)
        return ag__fail(AG_ERR_ARG, "%s: align_corners applies to bilinear mode only", op);
    const bool by_size = o->size[0] || o->size[1], by_scale = o->scale_factor[0] != 0 || o->scale_factor[1] != 0;
    if (by_size == by_scale)
        return ag__fail(AG_ERR_ARG, "%s: give either size (%lld x %lld) or scale_factor (%g x %g), not %s", op,
                        (long long)o->size[0], (long long)o->size[1], o->scale_factor[0], o->scale_factor[1],
                        by_size ? "both" : "neither");
    int64_t out[2];
    for (int i = 0; i < 2; i++) {
        const double v = by_scale ? (double)xs[2 + i] * o->scale_factor[i] : 0;
        if (by_scale && !(o->scale_factor[i] > 0 && v < 0x1p62))
            return ag__fail(AG_ERR_ARG, "%s: scale_factor %g x %g must be positive and keep input %s's size within 2^62",
                            op, o->scale_factor[0], o->scale_factor[1], s);
        out[i] = by_size ? o->size[i] : (int64_t)v;
    }
    if (xs[2] < 1 || xs[3] < 1 || out[0] < 1 || out[1] < 1)
        return ag__fail(AG_ERR_SHAPE, "%s: input %s and output size %lld x %lld must have positive heights and widths",
                        op, s, (long long)out[0], (long long)out[1]);
    ys[0] = xs[0], ys[1] = xs[1], ys[2] = out[0], ys[3] = out[1];
    *attr = (ag_attr){.a = by_scale ? o->scale_factor[0] : 0, .b = by_scale ? o->scale_factor[1] : 0,
                      .i = {o->mode, o->align_corners}};
    return ag__check_alloc(op, 4, ys, dtype) ? ag_last_status() : AG_OK;
}

/* y = x resampled to the shape ys with the options attr, recorded as interpolate. */
static ag_tensor *interp_apply(ag_tensor *x, const int64_t *ys, const ag_attr *attr) {
    ag_tensor *y = ag__new(x->dtype, 4, ys), *xc = y ? ag__contig_or_copy(x) : NULL;
    if (!xc || run(true, x->shape, ys, x->dtype, attr, ag__ptr(xc), ag__ptr(y))) {
        ag_release(xc);
        ag__discard(y);
        return NULL;
    }
    ag_release(xc);
    if (ag__needs_grad1(x)) {
        if (!ag__record(y, &op_interpolate[attr->i[0]], &x, 1)) return NULL;
        y->attr = *attr;
    }
    return ag__check_finite(y, "interpolate");
}

/* F.interpolate */
ag_tensor *ag_interpolate(ag_tensor *x, const ag_interp_opts *o) {
    AG_CHECK_HANDLES(NULL, "interpolate", x);
    if (!x || ag__check_float("interpolate", x, NULL)) return NULL;
    char s[AG_SHAPE_STR];
    if (x->ndim != 4)
        return ag__fail_null(AG_ERR_SHAPE, "interpolate: input %s must have 4 dims [N, C, H, W]", ag__tshape(s, x));
    int64_t ys[4];
    ag_attr attr;
    if (interp_geometry("interpolate", x->shape, ag__tshape(s, x), x->dtype, o, ys, &attr)) return NULL;
    return interp_apply(x, ys, &attr);
}

/* dx of shape xs (contiguous; owned by the scope, or unowned for an adjoint) from g, through the
 * adjoint kernel with the options attr. */
static ag_tensor *uninterp_run(ag_tensor *g, const int64_t *xs, const ag_attr *attr, bool owned) {
    ag_tensor *gc = ag__contig_or_copy(g);
    ag_tensor *gx = !gc ? NULL : owned ? ag__new_zeros(g->dtype, 4, xs) : ag__new_unowned(g->dtype, 4, xs, true);
    if (gx && run(false, xs, g->shape, g->dtype, attr, ag__ptr(gc), ag__ptr(gx))) {
        if (owned) ag__discard(gx);
        else ag_release(gx);
        gx = NULL;
    }
    ag_release(gc);
    return gx;
}

/* The adjoint of interpolate from the shape xs as an op, recorded as interpolate_backward. */
static ag_tensor *uninterp_apply(ag_tensor *g, const int64_t *xs, const ag_attr *attr) {
    ag_tensor *y = uninterp_run(g, xs, attr, true);
    if (y && ag__needs_grad1(g)) {
        if (!ag__record(y, &op_interpolate_backward[attr->i[0]], &g, 1)) return NULL;
        y->attr = *attr;
    }
    return y;
}

/* torch.ops.aten.upsample_*2d_backward */
ag_tensor *ag_interpolate_backward(ag_tensor *dy, ag_shape input_shape, const ag_interp_opts *o) {
    AG_CHECK_HANDLES(NULL, "interpolate_backward", dy);
    if (!dy || ag__check_float("interpolate_backward", dy, NULL)) return NULL;
    char s[AG_SHAPE_STR], s2[AG_SHAPE_STR], s3[AG_SHAPE_STR];
    if (input_shape.ndim != 4 || ag__check_shape("interpolate_backward", 4, input_shape.dim))
        return input_shape.ndim != 4 ? ag__fail_null(AG_ERR_SHAPE, "interpolate_backward: input_shape has %d dims, "
                                                     "expected 4 [N, C, H, W]", input_shape.ndim) : NULL;
    const char *in = ag__shape_str(s, 4, input_shape.dim);
    int64_t ys[4];
    ag_attr attr;
    if (interp_geometry("interpolate_backward", input_shape.dim, in, dy->dtype, o, ys, &attr)) return NULL;
    if (dy->ndim != 4 || memcmp(dy->shape, ys, sizeof ys) != 0)
        return ag__fail_null(AG_ERR_SHAPE, "interpolate_backward: dy has shape %s, but input %s resampled has shape %s",
                             ag__tshape(s2, dy), in, ag__shape_str(s3, 4, ys));
    return uninterp_apply(dy, input_shape.dim, &attr);
}

/* dx[taps] += weights·dy */
static ag_status interpolate_backward(ag_tensor *out, ag_tensor *gout) {
    ag_tensor *x = out->in[0];
    ag_tensor *gx = uninterp_run(gout, x->shape, &out->attr, false);
    return gx ? ag__accumulate(x, gx) : ag_last_status();
}
/* dx = interpolate_backward(dy): the adjoint as a recorded op */
static ag_status interpolate_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin) {
    gin[0] = uninterp_apply(gout, out->in[0]->shape, &out->attr);
    return gin[0] ? AG_OK : ag_last_status();
}
/* dy = interpolate(dx) (linear) */
static ag_tensor *interpolate_jvp(ag_tensor *out, ag_tensor *const *tin) { return interp_apply(tin[0], out->shape, &out->attr); }

/* dg = interpolate(dy): the forward kernel over dy */
static ag_status uninterpolate_backward(ag_tensor *out, ag_tensor *gout) {
    ag_tensor *g = out->in[0];
    ag_tensor *gc = ag__contig_or_copy(gout);
    ag_tensor *gg = gc ? ag__new_unowned(g->dtype, 4, g->shape, false) : NULL;
    ag_status st = !gg ? AG_ERR_NOMEM : run(true, out->shape, g->shape, g->dtype, &out->attr, ag__ptr(gc), ag__ptr(gg));
    ag_release(gc);
    if (st) {
        ag_release(gg);
        return st;
    }
    return ag__accumulate(g, gg);
}
/* dg = interpolate(dy) as a recorded op */
static ag_status uninterpolate_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin) {
    gin[0] = interp_apply(gout, out->in[0]->shape, &out->attr);
    return gin[0] ? AG_OK : ag_last_status();
}
/* dy = interpolate_backward(dg) (linear) */
static ag_tensor *uninterpolate_jvp(ag_tensor *out, ag_tensor *const *tin) {
    return uninterp_apply(tin[0], out->shape, &out->attr);
}

const ag_op *const ag__upsample_ops[] = {&op_interpolate[0], &op_interpolate_backward[0], NULL};

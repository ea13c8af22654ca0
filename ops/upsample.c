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
/* y = Σ taps of x;  dx[taps] += weights·dy.  One row per mode for its grad_fn; the registry lists the first. */
#define INTERP_MATH "y[p,i,j] = Σ_{a ∈ {i0,i1}, b ∈ {j0,j1}} w_a·w_b·x[p,a,b] (nearest: x[p,i0,j0]; bilinear: " \
                    "weights 1-λ, λ of PyTorch's source index);  dx[p,a,b] += w_a·w_b·dy[p,i,j]"
static const ag_op op_interpolate[2] = {
    {"interpolate", "UpsampleNearest2DBackward1", interpolate_backward, 0, INTERP_MATH, NULL, NULL, NULL},
    {"interpolate", "UpsampleBilinear2DBackward1", interpolate_backward, 0, INTERP_MATH, NULL, NULL, NULL},
};

/* Runs the forward (src x, dst y) or the adjoint (src dy, dst dx, zeroed) of the geometry of x [N, C, H, W]
 * and y [.., OH, OW] with the options saved in attr.  AG_ERR_NOMEM when the taps cannot be allocated. */
static ag_status run(bool forward, const ag_tensor *x, const ag_tensor *y, const ag_attr *attr, const void *src,
                     void *dst) {
    const int64_t P = x->shape[0] * x->shape[1], H = x->shape[2], W = x->shape[3], OH = y->shape[2], OW = y->shape[3];
    const ag_interp_mode mode = (ag_interp_mode)attr->i[0];
    const bool align = attr->i[1], f32 = x->dtype == AG_F32, nearest = mode == AG_INTERP_NEAREST;
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

/* F.interpolate */
ag_tensor *ag_interpolate(ag_tensor *x, const ag_interp_opts *o) {
    AG_CHECK_HANDLES(NULL, "interpolate", x);
    if (!x || ag__check_float("interpolate", x, NULL)) return NULL;
    char s[AG_SHAPE_STR];
    if (!o) return ag__fail_null(AG_ERR_ARG, "interpolate: options with a size or a scale factor are required");
    if (o->mode != AG_INTERP_NEAREST && o->mode != AG_INTERP_BILINEAR)
        return ag__fail_null(AG_ERR_ARG, "interpolate: unknown mode %d", (int)o->mode);
    if (o->align_corners && o->mode == AG_INTERP_NEAREST)
        return ag__fail_null(AG_ERR_ARG, "interpolate: align_corners applies to bilinear mode only");
    if (x->ndim != 4)
        return ag__fail_null(AG_ERR_SHAPE, "interpolate: input %s must have 4 dims [N, C, H, W]", ag__tshape(s, x));
    const bool by_size = o->size[0] || o->size[1], by_scale = o->scale_factor[0] != 0 || o->scale_factor[1] != 0;
    if (by_size == by_scale)
        return ag__fail_null(AG_ERR_ARG, "interpolate: give either size (%lld x %lld) or scale_factor (%g x %g), not %s",
                             (long long)o->size[0], (long long)o->size[1], o->scale_factor[0], o->scale_factor[1],
                             by_size ? "both" : "neither");
    int64_t out[2];
    for (int i = 0; i < 2; i++) {
        const double v = by_scale ? (double)x->shape[2 + i] * o->scale_factor[i] : 0;
        if (by_scale && !(o->scale_factor[i] > 0 && v < 0x1p62))
            return ag__fail_null(AG_ERR_ARG, "interpolate: scale_factor %g x %g must be positive and keep input %s's "
                                 "size within 2^62", o->scale_factor[0], o->scale_factor[1], ag__tshape(s, x));
        out[i] = by_size ? o->size[i] : (int64_t)v;
    }
    if (x->shape[2] < 1 || x->shape[3] < 1 || out[0] < 1 || out[1] < 1)
        return ag__fail_null(AG_ERR_SHAPE, "interpolate: input %s and output size %lld x %lld must have positive "
                             "heights and widths", ag__tshape(s, x), (long long)out[0], (long long)out[1]);
    const int64_t shape[4] = {x->shape[0], x->shape[1], out[0], out[1]};
    if (ag__check_alloc("interpolate", 4, shape, x->dtype)) return NULL;
    ag_tensor *y = ag__new(x->dtype, 4, shape), *xc = y ? ag__contig_or_copy(x) : NULL;
    ag_attr attr = {.a = by_scale ? o->scale_factor[0] : 0, .b = by_scale ? o->scale_factor[1] : 0,
                    .i = {o->mode, o->align_corners}};
    if (!xc || run(true, xc, y, &attr, ag__ptr(xc), ag__ptr(y))) {
        ag_release(xc);
        ag__discard(y);
        return NULL;
    }
    ag_release(xc);
    if (ag__needs_grad1(x)) {
        if (!ag__record(y, &op_interpolate[o->mode], &x, 1)) return NULL;
        y->attr = attr;
    }
    return ag__check_finite(y, "interpolate");
}

/* dx[taps] += weights·dy */
static ag_status interpolate_backward(ag_tensor *out, ag_tensor *gout) {
    ag_tensor *x = out->in[0];
    ag_tensor *gx = ag__new_unowned(x->dtype, x->ndim, x->shape, true);
    if (!gx) return AG_ERR_NOMEM;
    ag_status st = run(false, x, out, &out->attr, ag__ptr(gout), ag__ptr(gx));
    if (st) {
        ag_release(gx);
        return st;
    }
    return ag__accumulate(x, gx);
}

const ag_op *const ag__upsample_ops[] = {&op_interpolate[0], NULL};

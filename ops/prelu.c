/*
 * prelu.c - the parametric ReLU, y = max(0, x) + w·min(0, x), with one learnt
 * slope per channel (dim 1) or a single slope shared by every element.
 *
 * Fused: one pass for y, and one for dx and the per-channel sums of dw.  x is
 * seen as [N, C, L] (L = product of the dims after 1); inputs of fewer than two
 * dims have one channel, as in PyTorch.
 */
#include <string.h>
#include "core/iter.h"
#include "core/sum.h"
#include "autograd/tape.h"
#include "agrad/ops.h"

#define PRELU_KERNELS(SUF, T)                                                                                 \
    /* y = x > 0 ? x : w[c]·x */                                                                              \
    AG_VEC_CLONES static void prelu_fwd_##SUF(void *yv, const void *xv, const void *wv, int64_t N, int64_t C, int64_t L,   \
                                bool shared) {                                                                \
        T *y = yv;                                                                                            \
        const T *x = xv, *w = wv;                                                                             \
        if (shared) L *= C, C = 1;                                                                            \
        if (L == 1) /* [N, C]: a row at a time, vectorised over the channels */                              \
            for (int64_t n = 0; n < N; n++)                                                                   \
                for (int64_t c = 0; c < C; c++) y[n * C + c] = x[n * C + c] > 0 ? x[n * C + c] : w[c] * x[n * C + c]; \
        else                                                                                                  \
            for (int64_t n = 0; n < N; n++)                                                                   \
                for (int64_t c = 0; c < C; c++) {                                                             \
                    const T s = w[c];                                                                         \
                    const int64_t o = (n * C + c) * L;                                                        \
                    for (int64_t l = 0; l < L; l++) y[o + l] = x[o + l] > 0 ? x[o + l] : s * x[o + l];         \
                }                                                                                             \
    }                                                                                                         \
    /* dx = x > 0 ? dy : w[c]·dy;  dw[c] += x > 0 ? 0 : x·dy */                                               \
    AG_VEC_CLONES static void prelu_bwd_##SUF(void *dxv, double *dw, const void *dyv, const void *xv, const void *wv,       \
                                int64_t N, int64_t C, int64_t L, bool shared) {                               \
        T *dx = dxv;                                                                                          \
        const T *dy = dyv, *x = xv, *w = wv;                                                                  \
        if (shared) L *= C, C = 1;                                                                            \
        if (L == 1) { /* [N, C]: a row at a time, vectorised over the channels */                             \
            for (int64_t n = 0; n < N; n++) {                                                                 \
                const T *xr = x + n * C, *gr = dy + n * C;                                                    \
                if (dx)                                                                                       \
                    for (int64_t c = 0; c < C; c++) dx[n * C + c] = xr[c] > 0 ? gr[c] : w[c] * gr[c];         \
                if (dw)                                                                                       \
                    for (int64_t c = 0; c < C; c++) dw[c] += xr[c] <= 0 ? (double)xr[c] * (double)gr[c] : 0.0; \
            }                                                                                                 \
            return;                                                                                           \
        }                                                                                                     \
        for (int64_t n = 0; n < N; n++)                                                                       \
            for (int64_t c = 0; c < C; c++) {                                                                 \
                const T s = w[c];                                                                             \
                const int64_t o = (n * C + c) * L;                                                            \
                double acc = 0;                                                                               \
                if (dx)                                                                                       \
                    for (int64_t l = 0; l < L; l++) dx[o + l] = x[o + l] > 0 ? dy[o + l] : s * dy[o + l];     \
                if (dw) {                                                                                     \
                    for (int64_t l = 0; l < L; l++) acc += x[o + l] <= 0 ? (double)x[o + l] * (double)dy[o + l] : 0.0; \
                    dw[c] += acc;                                                                             \
                }                                                                                             \
            }                                                                                                 \
    }
PRELU_KERNELS(f32, float)
PRELU_KERNELS(f64, double)

/* x as [N, C, L]: the channel dim is 1 when x has two dims or more. */
static void geometry(const ag_tensor *x, int64_t *N, int64_t *C, int64_t *L) {
    *N = x->ndim >= 1 ? x->shape[0] : 1;
    *C = x->ndim >= 2 ? x->shape[1] : 1;
    *L = x->ndim >= 2 ? ag__numel(x->ndim - 2, x->shape + 2) : 1;
    if (*C == 0 || *L == 0) *N = 0; /* no element: none of the N·C lanes is walked (there may be 2^60) */
}

static ag_status prelu_backward(ag_tensor *out, ag_tensor *gout);
static ag_status prelu_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin);
static ag_tensor *prelu_jvp(ag_tensor *out, ag_tensor *const *tin);
/* y = x > 0 ? x : w_c·x;  dx = x > 0 ? dy : w_c·dy, dw_c = Σ_{x ≤ 0} x·dy */
static const ag_op op_prelu = {.name = "prelu", .grad_fn = "PreluBackward0", .backward = prelu_backward,
                               .saves = AG_SAVES_IN0 | AG_SAVES_IN1,
                               .math = "y = x > 0 ? x : w_c·x (c = dim 1);  "
                                       "dx = x > 0 ? dy : w_c·dy, dw_c = Σ_c (x ≤ 0 ? x·dy : 0)",
                               .backward_graph = prelu_backward_graph, .jvp = prelu_jvp,
                               .tangent = "ẏ = x > 0 ? ẋ : w_c·ẋ + ẇ_c·x"};

/* y = x > 0 ? x : w_c·x */
ag_tensor *ag_prelu(ag_tensor *x, ag_tensor *weight) {
    AG_CHECK_HANDLES(NULL, "prelu", x, weight);
    if (!x || !weight) return NULL;
    char s1[AG_SHAPE_STR], s2[AG_SHAPE_STR];
    if (ag__check_float("prelu", x, weight)) return NULL;
    if (weight->ndim > 1)
        return ag__fail_null(AG_ERR_SHAPE, "prelu: weight %s must be a scalar or a 1-D tensor", ag__tshape(s1, weight));
    int64_t N, C, L, nw = ag_numel(weight);
    geometry(x, &N, &C, &L);
    if (nw != 1 && (x->ndim == 0 || nw != C))
        return ag__fail_null(AG_ERR_SHAPE, "prelu: weight %s has %lld slopes but the input %s has %lld channels (dim 1); "
                             "use 1 slope or one per channel", ag__tshape(s1, weight), (long long)nw, ag__tshape(s2, x),
                             (long long)C);
    ag_tensor *y = ag__new(x->dtype, x->ndim, x->shape);
    ag_tensor *xc = y ? ag__contig_or_copy(x) : NULL;
    ag_tensor *wc = xc ? ag__contig_or_copy(weight) : NULL;
    if (!wc) {
        ag_release(xc);
        ag__discard(y);
        return NULL;
    }
    if (x->dtype == AG_F64) prelu_fwd_f64(ag__ptr(y), ag__ptr(xc), ag__ptr(wc), N, C, L, nw == 1);
    else prelu_fwd_f32(ag__ptr(y), ag__ptr(xc), ag__ptr(wc), N, C, L, nw == 1);
    ag_release(xc);
    ag_release(wc);
    ag_tensor *in[2] = {x, weight};
    if (ag__needs_grad(in, 2) && !ag__record(y, &op_prelu, in, 2)) return NULL;
    return ag__check_finite(y, "prelu");
}

/* dx = x > 0 ? dy : w_c·dy;  dw_c = Σ_{x ≤ 0} x·dy */
static ag_status prelu_backward(ag_tensor *out, ag_tensor *gout) {
    ag_tensor *x = out->in[0], *w = out->in[1];
    int64_t N, C, L, nw = ag_numel(w);
    geometry(x, &N, &C, &L);
    bool want_x = ag__wants(out, 0), want_w = ag__wants(out, 1);
    ag_tensor *xc = ag__contig_or_copy(x);
    ag_tensor *wc = xc ? ag__contig_or_copy(w) : NULL;
    ag_tensor *gx = wc && want_x ? ag__new_unowned(x->dtype, x->ndim, x->shape, false) : NULL;
    double *dw = wc && want_w ? ag__alloc_n(nw, sizeof(double)) : NULL;
    if (dw) memset(dw, 0, sizeof(double) * (size_t)nw);
    ag_status st = AG_OK;
    if (!wc || (want_x && !gx) || (want_w && !dw)) {
        st = AG_ERR_NOMEM;
    } else {
        if (x->dtype == AG_F64)
            prelu_bwd_f64(gx ? ag__ptr(gx) : NULL, dw, ag__ptr(gout), ag__ptr(xc), ag__ptr(wc), N, C, L, nw == 1);
        else prelu_bwd_f32(gx ? ag__ptr(gx) : NULL, dw, ag__ptr(gout), ag__ptr(xc), ag__ptr(wc), N, C, L, nw == 1);
        if (gx) {
            st = ag__accumulate(x, gx);
            gx = NULL;
        }
        if (!st && dw) {
            ag_tensor *gw = ag__new_unowned(w->dtype, w->ndim, w->shape, false);
            for (int64_t i = 0; gw && i < nw; i++) {
                if (w->dtype == AG_F64) ((double *)ag__ptr(gw))[i] = dw[i];
                else ((float *)ag__ptr(gw))[i] = (float)dw[i];
            }
            st = ag__accumulate(w, gw);
        }
    }
    ag_release(gx);
    ag__free(dw);
    ag_release(xc);
    ag_release(wc);
    return st;
}

/* ---- the rules in differentiable ops (create_graph, forward mode) ---------------------------------- */
/* w seen against x: [1, C, 1, ...] (one slope per channel) or 0-d (shared). */
static ag_tensor *slopes(ag_tensor *w, const ag_tensor *x) {
    ag_shape s = {0, {0}};
    if (ag_numel(w) != 1) {
        s.ndim = x->ndim;
        for (int d = 0; d < x->ndim; d++) s.dim[d] = d == 1 ? x->shape[1] : 1;
    }
    return ag_reshape(w, s);
}

/* [x ≤ 0] as x's dtype */
static ag_tensor *nonpositive(ag_tensor *x) {
    return ag_rsub_scalar(1, ag_to_dtype(ag_gt(x, ag_scalar(0, x->dtype)), x->dtype));
}

/* dy/dx = [x > 0] + w_c·[x ≤ 0] */
static ag_tensor *prelu_dx(ag_tensor *x, ag_tensor *w, ag_tensor *neg) {
    return ag_add(ag_rsub_scalar(1, neg), ag_mul(neg, slopes(w, x)));
}

/* Σ over every dim of x but the channel's, shaped as w. */
static ag_tensor *per_slope(ag_tensor *t, ag_tensor *w) {
    int dims[AG_MAX_DIMS], n = 0;
    bool per_channel = ag_numel(w) != 1;
    for (int d = 0; d < t->ndim; d++)
        if (!(per_channel && d == 1)) dims[n++] = d;
    ag_tensor *s = n ? ag_sum_dims(t, n, dims, false) : t;
    ag_shape ws = {w->ndim, {0}};
    for (int d = 0; d < w->ndim; d++) ws.dim[d] = w->shape[d];
    return ag_reshape(s, ws);
}

/* dx = dy·([x > 0] + w_c·[x ≤ 0]), dw_c = Σ_c dy·x·[x ≤ 0] */
static ag_status prelu_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin) {
    ag_tensor *x = out->in[0], *w = out->in[1], *neg = nonpositive(x);
    if (!neg) return ag_last_status();
    if (ag__wants(out, 0) && !(gin[0] = ag_mul(gout, prelu_dx(x, w, neg)))) return ag_last_status();
    if (ag__wants(out, 1) && !(gin[1] = per_slope(ag_mul(ag_mul(gout, x), neg), w))) return ag_last_status();
    return AG_OK;
}

/* dy = dx·([x > 0] + w_c·[x ≤ 0]) + dw_c·x·[x ≤ 0] */
static ag_tensor *prelu_jvp(ag_tensor *out, ag_tensor *const *tin) {
    ag_tensor *x = out->in[0], *w = out->in[1], *neg = nonpositive(x), *dy = NULL;
    if (!neg) return NULL;
    if (tin[0] && !(dy = ag_mul(tin[0], prelu_dx(x, w, neg)))) return NULL;
    if (tin[1]) {
        ag_tensor *term = ag_mul(ag_mul(slopes(tin[1], x), x), neg);
        if (!term || !(dy = dy ? ag_add(dy, term) : term)) return NULL;
    }
    return dy;
}

const ag_op *const ag__prelu_ops[] = {&op_prelu, NULL};

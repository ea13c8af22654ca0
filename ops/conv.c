/*
 * conv.c - 2-d convolution (F.conv2d) with stride, padding ("same", "valid" or
 * explicit), dilation and groups, and conv1d as a conv2d over a height of 1; its
 * adjoints: the transposed convolution (F.conv_transpose2d, conv_transpose1d) and
 * the weight gradient (torch.nn.grad.conv2d_weight), each an op whose adjoints are
 * the other two.
 *
 * float32 goes to cached oneDNN primitives (core/dnnl_conv.c, declared in
 * core/dnnl_cache.h: forward, backward data, backward weights with the bias
 * gradient) on plain NCHW/OIHW buffers;
 * float64, a geometry the primitive cache cannot key, and any oneDNN failure run
 * the reference loops below, written once for both dtypes.  The loops walk one
 * kernel tap (p, q) at a time over the output rows whose tap falls inside x, so
 * no inner loop tests bounds.
 */
#include <string.h>
#include "core/dnnl_cache.h"
#include "core/iter.h"
#include "core/parallel.h"
#include "autograd/tape.h"
#include "agrad/ops.h"
#include "ops/jvp.h"

/* The outputs o in [*lo, *hi) whose input position o·s + off lies in [0, n_in); o < n_out. */
static void tap_range(int64_t off, int64_t s, int64_t n_in, int64_t n_out, int64_t *lo, int64_t *hi) {
    *lo = off >= 0 ? 0 : ag__ceil_div(-off, s);
    *hi = off > n_in - 1 ? 0 : (n_in - 1 - off) / s + 1;
    if (*hi > n_out) *hi = n_out;
    if (*lo > *hi) *lo = *hi;
}

#define CONV_KERNELS(SUF, T)                                                                                   \
    /* y[n, c] += b[c] over each of the N·C planes of HW elements */                                           \
    static void bias_add_##SUF(int64_t N, int64_t C, int64_t HW, const T *b, T *y) {                           \
        for (int64_t n = 0; n < N; n++)                                                                        \
            for (int64_t c = 0; c < C; c++)                                                                    \
                for (int64_t i = 0; i < HW; i++) y[(n * C + c) * HW + i] += b[c];                              \
    }                                                                                                          \
    /* db[c] = Σ_{n, i} dy[n, c, i] */                                                                         \
    static void bias_grad_##SUF(int64_t N, int64_t C, int64_t HW, const T *dy, T *db) {                        \
        for (int64_t c = 0; c < C; c++) {                                                                      \
            double acc = 0;                                                                                    \
            for (int64_t n = 0; n < N; n++)                                                                    \
                for (int64_t i = 0; i < HW; i++) acc += (double)dy[(n * C + c) * HW + i];                      \
            db[c] = (T)acc;                                                                                    \
        }                                                                                                      \
    }                                                                                                          \
    /* y[n, o] = b[o] + Σ_{c, p, q} w[o, c, p, q]·x[n, g·Cg + c] shifted by tap (p, q) */                      \
    static void conv_fwd_##SUF(const ag_conv_geom *g, const T *x, const T *w, const T *b, T *y) {            \
        const int64_t Cg = g->C / g->groups, Og = g->O / g->groups, HW = g->H * g->W, OHW = g->OH * g->OW;    \
        for (int64_t n = 0; n < g->N; n++)                                                                     \
            for (int64_t o = 0; o < g->O; o++) {                                                               \
                T *yp = y + (n * g->O + o) * OHW;                                                              \
                for (int64_t i = 0; i < OHW; i++) yp[i] = b ? b[o] : 0;                                        \
                for (int64_t c = 0; c < Cg; c++) {                                                             \
                    const T *xp = x + (n * g->C + o / Og * Cg + c) * HW;                                       \
                    const T *wp = w + (o * Cg + c) * g->KH * g->KW;                                            \
                    for (int64_t p = 0; p < g->KH; p++) {                                                      \
                        int64_t i0, i1;                                                                        \
                        tap_range(p * g->dh - g->pt, g->sh, g->H, g->OH, &i0, &i1);                            \
                        for (int64_t q = 0; q < g->KW; q++) {                                                  \
                            int64_t j0, j1;                                                                    \
                            tap_range(q * g->dw - g->pl, g->sw, g->W, g->OW, &j0, &j1);                        \
                            const T wv = wp[p * g->KW + q];                                                    \
                            for (int64_t i = i0; i < i1; i++) {                                                \
                                const T *xr = xp + (i * g->sh + p * g->dh - g->pt) * g->W + q * g->dw - g->pl; \
                                T *yr = yp + i * g->OW;                                                        \
                                for (int64_t j = j0; j < j1; j++) yr[j] += wv * xr[j * g->sw];                 \
                            }                                                                                  \
                        }                                                                                      \
                    }                                                                                          \
                }                                                                                              \
            }                                                                                                  \
    }                                                                                                          \
    /* dx[n, g·Cg + c] = Σ_{o in g, p, q} w[o, c, p, q]·dy[n, o] placed back at tap (p, q) */                  \
    static void conv_bwd_data_##SUF(const ag_conv_geom *g, const T *w, const T *dy, T *dx) {                  \
        const int64_t Cg = g->C / g->groups, Og = g->O / g->groups, HW = g->H * g->W, OHW = g->OH * g->OW;    \
        memset(dx, 0, sizeof(T) * (size_t)(g->N * g->C * HW));                                                 \
        for (int64_t n = 0; n < g->N; n++)                                                                     \
            for (int64_t o = 0; o < g->O; o++) {                                                               \
                const T *dyp = dy + (n * g->O + o) * OHW;                                                      \
                for (int64_t c = 0; c < Cg; c++) {                                                             \
                    T *dxp = dx + (n * g->C + o / Og * Cg + c) * HW;                                           \
                    const T *wp = w + (o * Cg + c) * g->KH * g->KW;                                            \
                    for (int64_t p = 0; p < g->KH; p++) {                                                      \
                        int64_t i0, i1;                                                                        \
                        tap_range(p * g->dh - g->pt, g->sh, g->H, g->OH, &i0, &i1);                            \
                        for (int64_t q = 0; q < g->KW; q++) {                                                  \
                            int64_t j0, j1;                                                                    \
                            tap_range(q * g->dw - g->pl, g->sw, g->W, g->OW, &j0, &j1);                        \
                            const T wv = wp[p * g->KW + q];                                                    \
                            for (int64_t i = i0; i < i1; i++) {                                                \
                                T *xr = dxp + (i * g->sh + p * g->dh - g->pt) * g->W + q * g->dw - g->pl;      \
                                const T *yr = dyp + i * g->OW;                                                 \
                                for (int64_t j = j0; j < j1; j++) xr[j * g->sw] += wv * yr[j];                 \
                            }                                                                                  \
                        }                                                                                      \
                    }                                                                                          \
                }                                                                                              \
            }                                                                                                  \
    }                                                                                                          \
    /* dw[o, c, p, q] = Σ_{n, i, j} dy[n, o, i, j]·x[n, g·Cg + c] at tap (p, q); db[o] = Σ_{n, i, j} dy */     \
    static void conv_bwd_weights_##SUF(const ag_conv_geom *g, const T *x, const T *dy, T *dw, T *db) {        \
        const int64_t Cg = g->C / g->groups, Og = g->O / g->groups, HW = g->H * g->W, OHW = g->OH * g->OW;    \
        for (int64_t o = 0; dw && o < g->O; o++)                                                               \
            for (int64_t c = 0; c < Cg; c++)                                                                   \
                for (int64_t p = 0; p < g->KH; p++) {                                                          \
                    int64_t i0, i1;                                                                            \
                    tap_range(p * g->dh - g->pt, g->sh, g->H, g->OH, &i0, &i1);                                \
                    for (int64_t q = 0; q < g->KW; q++) {                                                      \
                        int64_t j0, j1;                                                                        \
                        tap_range(q * g->dw - g->pl, g->sw, g->W, g->OW, &j0, &j1);                            \
                        double acc = 0;                                                                        \
                        for (int64_t n = 0; n < g->N; n++) {                                                   \
                            const T *xp = x + (n * g->C + o / Og * Cg + c) * HW;                               \
                            const T *dyp = dy + (n * g->O + o) * OHW;                                          \
                            for (int64_t i = i0; i < i1; i++) {                                                \
                                const T *xr = xp + (i * g->sh + p * g->dh - g->pt) * g->W + q * g->dw - g->pl; \
                                const T *yr = dyp + i * g->OW;                                                 \
                                for (int64_t j = j0; j < j1; j++) acc += (double)yr[j] * (double)xr[j * g->sw];   \
                            }                                                                                  \
                        }                                                                                      \
                        dw[((o * Cg + c) * g->KH + p) * g->KW + q] = (T)acc;                                   \
                    }                                                                                          \
                }                                                                                              \
        if (db) bias_grad_##SUF(g->N, g->O, OHW, dy, db);                                                    \
    }
CONV_KERNELS(f32, float)
CONV_KERNELS(f64, double)

/* ---- geometry and checks ------------------------------------------------------------------------------ */
/* Reads option entry k of a (0 meaning dflt) into *v; false when negative. */
static bool option(const int64_t *a, int k, int64_t dflt, int64_t *v) {
    *v = a[k] ? a[k] : dflt;
    return a[k] >= 0;
}

/* Checks x, w, b and the options of op (nsp spatial dims: 1 for conv1d, 2 for conv2d)
 * and fills g, seeing a 1-d convolution as a 2-d one of height 1.  Returns AG_OK or
 * the recorded failure. */
static ag_status conv_geometry(const char *op, const ag_tensor *x, const ag_tensor *w, const ag_tensor *b,
                               const ag_conv_opts *opts, int nsp, ag_conv_geom *g) {
    static const ag_conv_opts defaults = {{1, 1}, {0, 0}, {1, 1}, 1, AG_PADDING_EXPLICIT};
    const ag_conv_opts *o = opts ? opts : &defaults;
    char s1[AG_SHAPE_STR], s2[AG_SHAPE_STR];
    if (x->ndim != nsp + 1 && x->ndim != nsp + 2)
        return ag__fail(AG_ERR_SHAPE, "%s: input %s must have %d dims (batched) or %d (unbatched)", op,
                        ag__tshape(s1, x), nsp + 2, nsp + 1);
    if (w->ndim != nsp + 2)
        return ag__fail(AG_ERR_SHAPE, "%s: weight %s must have %d dims [out_channels, in_channels/groups, %s]", op,
                        ag__tshape(s1, w), nsp + 2, nsp == 2 ? "kH, kW" : "kW");
    int64_t stride[2], pad[2], dil[2], groups;
    for (int k = 0; k < nsp; k++)
        if (!option(o->stride, k, 1, &stride[k]) || !option(o->dilation, k, 1, &dil[k]) ||
            !option(o->padding, k, 0, &pad[k]))
            return ag__fail(AG_ERR_ARG, "%s: negative stride, padding or dilation (entry %d: %lld, %lld, %lld)", op, k,
                            (long long)o->stride[k], (long long)o->padding[k], (long long)o->dilation[k]);
    if (o->groups < 0) return ag__fail(AG_ERR_ARG, "%s: groups=%lld must be positive", op, (long long)o->groups);
    groups = o->groups ? o->groups : 1;
    if (o->padding_mode != AG_PADDING_EXPLICIT && o->padding_mode != AG_PADDING_SAME &&
        o->padding_mode != AG_PADDING_VALID)
        return ag__fail(AG_ERR_ARG, "%s: unknown padding mode %d", op, (int)o->padding_mode);
    if (o->padding_mode == AG_PADDING_SAME && (stride[0] != 1 || (nsp == 2 && stride[1] != 1)))
        return ag__fail(AG_ERR_ARG, "%s: padding=\"same\" is not supported for strided convolutions", op);
    const int sp = x->ndim - nsp; /* the first spatial dim of x */
    const int64_t C = x->shape[sp - 1], O = w->shape[0];
    if (C % groups)
        return ag__fail(AG_ERR_SHAPE, "%s: input %s has %lld channels, not divisible by groups=%lld", op,
                        ag__tshape(s1, x), (long long)C, (long long)groups);
    if (O % groups)
        return ag__fail(AG_ERR_SHAPE, "%s: weight %s has %lld out channels, not divisible by groups=%lld", op,
                        ag__tshape(s1, w), (long long)O, (long long)groups);
    if (w->shape[1] != C / groups)
        return ag__fail(AG_ERR_SHAPE, "%s: weight %s expects %lld input channels per group, input %s has %lld / groups=%lld",
                        op, ag__tshape(s1, w), (long long)w->shape[1], ag__tshape(s2, x), (long long)C,
                        (long long)groups);
    if (b && (b->ndim != 1 || b->shape[0] != O))
        return ag__fail(AG_ERR_SHAPE, "%s: bias %s does not match weight %s (expected [%lld])", op, ag__tshape(s1, b),
                        ag__tshape(s2, w), (long long)O);
    /* Height then width; a 1-d convolution has height 1, a 1-tap kernel and no padding there. */
    int64_t in[2] = {1, 1}, k[2] = {1, 1}, lo[2] = {0, 0}, hi[2] = {0, 0}, out[2], s[2] = {1, 1}, d[2] = {1, 1};
    for (int i = 0; i < nsp; i++) {
        const int t = 2 - nsp + i;
        in[t] = x->shape[sp + i], k[t] = w->shape[2 + i], s[t] = stride[i], d[t] = dil[i];
        int64_t span, padded, total;
        if (ag__mul_overflow(d[t], k[t] ? k[t] - 1 : 0, &span) || ag__add_overflow(span, 1, &span))
            return ag__fail(AG_ERR_ARG, "%s: dilation %lld times kernel %s overflows", op, (long long)d[t],
                            ag__tshape(s1, w));
        if (o->padding_mode == AG_PADDING_SAME) {
            total = span - 1; /* PyTorch: the extra element of an odd total goes at the end */
            lo[t] = total / 2, hi[t] = total - lo[t];
        } else if (o->padding_mode == AG_PADDING_EXPLICIT) {
            lo[t] = hi[t] = pad[i];
        }
        if (ag__add_overflow(in[t], lo[t], &padded) || ag__add_overflow(padded, hi[t], &padded))
            return ag__fail(AG_ERR_ARG, "%s: padding %lld overflows the input %s", op, (long long)lo[t],
                            ag__tshape(s1, x));
        if (k[t] == 0 || span > padded)
            return ag__fail(AG_ERR_SHAPE, "%s: kernel %s (%lld wide with dilation %lld) does not fit the padded input "
                            "(%lld wide) of %s", op, ag__tshape(s1, w), (long long)span, (long long)d[t],
                            (long long)padded, ag__tshape(s2, x));
        out[t] = (padded - span) / s[t] + 1; /* ≥ 1 here */
    }
    if (nsp == 1) out[0] = 1;
    *g = (ag_conv_geom){.N = x->ndim == nsp + 2 ? x->shape[0] : 1, .C = C, .H = in[0], .W = in[1], .O = O,
                        .KH = k[0], .KW = k[1], .OH = out[0], .OW = out[1], .sh = s[0], .sw = s[1], .dh = d[0],
                        .dw = d[1], .pt = lo[0], .pb = hi[0], .pl = lo[1], .pr = hi[1], .groups = groups};
    return AG_OK;
}

/* True when float32 data of geometry g goes to oneDNN. */
static bool use_dnnl(ag_dtype dtype, const ag_conv_geom *g) {
    return dtype == AG_F32 && ag__backend != AG_BACKEND_REFERENCE && ag_onednn_enabled() && ag__dnnl_conv_fits(g);
}

/* The three products of geometry g on contiguous buffers of dtype dt: oneDNN for float32 where it
 * serves, else the reference loops.  A transposed convolution runs them with its roles swapped. */
/* y = conv(x, w) + b (b may be NULL) */
static void run_fwd(ag_dtype dt, const ag_conv_geom *g, const void *x, const void *w, const void *b, void *y) {
    if (dt == AG_F64) conv_fwd_f64(g, x, w, b, y);
    else if (!use_dnnl(dt, g) || !ag__dnnl_conv_fwd(g, x, w, b, y)) conv_fwd_f32(g, x, w, b, y);
}

/* dx = convᵀ(dy, w), overwritten */
static void run_bwd_data(ag_dtype dt, const ag_conv_geom *g, const void *w, const void *dy, void *dx) {
    if (dt == AG_F64) conv_bwd_data_f64(g, w, dy, dx);
    else if (!use_dnnl(dt, g) || !ag__dnnl_conv_bwd_data(g, w, dy, dx)) conv_bwd_data_f32(g, w, dy, dx);
}

/* dw = Σ dy ⊗ x windows (dw may be NULL: only db), db = Σ dy per channel (may be NULL) */
static void run_bwd_weights(ag_dtype dt, const ag_conv_geom *g, const void *x, const void *dy, void *dw, void *db) {
    if (dt == AG_F64) conv_bwd_weights_f64(g, x, dy, dw, db);
    else if (!use_dnnl(dt, g) || !dw || !ag__dnnl_conv_bwd_weights(g, x, dy, dw, db))
        conv_bwd_weights_f32(g, x, dy, dw, db);
}

/* ---- the three products and the nodes that record them -------------------------------------------------
 * A geometry g relates three tensors: a [N, C, H, W] (a convolution's input), w [O, C/groups, KH, KW] and
 * b [N, O, OH, OW] (its output).  T(a, w, b) = <b, conv(a, w)> is linear in each, and each product above is
 * T's gradient in one of them: b = conv(a, w) (run_fwd), a = convᵀ(w, b) (run_bwd_data), w = Σ b ⋆ a
 * (run_bwd_weights).  An op computes one of them (its role) from the other two (its inputs 0 and 1), so the
 * gradient of its result with respect to input i is the product of input i's role from the other input
 * and dy: one adjoint serves every op.  conv2d computes b from (a, w), conv_transpose2d a from (b, w). */
typedef enum conv_role { ROLE_A, ROLE_W, ROLE_B } conv_role;

/* An op of the family: its row, the role of its result and those of its inputs 0 and 1. */
typedef struct conv_op {
    ag_op op;
    conv_role role, in[2];
} conv_op;

/* The product of role from the tensors of the other two roles (buf[role] unused), into out; db (may be NULL)
 * gets the bias gradient fused with the weight gradient (b's channel sums).  Contiguous buffers of dtype dt. */
static void run_role(conv_role role, ag_dtype dt, const ag_conv_geom *g, const void *const buf[3], void *out, void *db) {
    if (role == ROLE_B) run_fwd(dt, g, buf[ROLE_A], buf[ROLE_W], NULL, out);
    else if (role == ROLE_A) run_bwd_data(dt, g, buf[ROLE_W], buf[ROLE_B], out);
    else run_bwd_weights(dt, g, buf[ROLE_A], buf[ROLE_B], out, db);
}

/* The geometry a recorded node keeps: attr.i = sh, sw, pt, pb, pl, pr, dh, dw, groups. */
static void save_geometry(ag_tensor *y, const ag_conv_geom *g) {
    const int64_t v[9] = {g->sh, g->sw, g->pt, g->pb, g->pl, g->pr, g->dh, g->dw, g->groups};
    memcpy(y->attr.i, v, sizeof v);
}

/* The tensors of node out by role (out itself is its role's) and their geometry. */
static ag_conv_geom node_geometry(const ag_tensor *out, const ag_tensor *t[3]) {
    const conv_op *op = (const conv_op *)out->op;
    t[op->role] = out, t[op->in[0]] = out->in[0], t[op->in[1]] = out->in[1];
    const ag_tensor *a = t[ROLE_A], *w = t[ROLE_W], *b = t[ROLE_B];
    const int64_t *v = out->attr.i;
    const int sa = a->ndim - 2, sb = b->ndim - 2;
    return (ag_conv_geom){.N = a->ndim == 4 ? a->shape[0] : 1, .C = a->shape[sa - 1], .H = a->shape[sa],
                          .W = a->shape[sa + 1], .O = b->shape[sb - 1], .KH = w->shape[2], .KW = w->shape[3],
                          .OH = b->shape[sb], .OW = b->shape[sb + 1], .sh = v[0], .sw = v[1], .pt = v[2], .pb = v[3],
                          .pl = v[4], .pr = v[5], .dh = v[6], .dw = v[7], .groups = v[8]};
}

/* Contiguous copies (or references) of x, w and b (b may be NULL); false, releasing any, when one fails. */
static bool contiguous3(ag_tensor *x, ag_tensor *w, ag_tensor *b, ag_tensor **xc, ag_tensor **wc, ag_tensor **bc) {
    *xc = ag__contig_or_copy(x);
    *wc = *xc ? ag__contig_or_copy(w) : NULL;
    *bc = *wc && b ? ag__contig_or_copy(b) : NULL;
    if (*wc && (!b || *bc)) return true;
    ag_release(*xc);
    ag_release(*wc);
    *xc = *wc = NULL;
    return false;
}

/* The shape of role's tensor in geometry g (a and b without their batch dim unless batched); its ndim. */
static int role_shape(conv_role role, const ag_conv_geom *g, bool batched, int64_t *shape) {
    const int64_t v[3][4] = {{g->N, g->C, g->H, g->W}, {g->O, g->C / g->groups, g->KH, g->KW}, {g->N, g->O, g->OH, g->OW}};
    const int off = role != ROLE_W && !batched;
    memcpy(shape, v[role] + off, sizeof(int64_t) * (size_t)(4 - off));
    return 4 - off;
}

/* The product of op's role from in0, in1 (its input roles) of geometry g, plus bias[c] on each channel c of the
 * result (NULL: none), into a new tensor (scope-owned), recorded as op.  batched: a and b have their batch dim. */
static ag_tensor *conv_product(const conv_op *op, ag_tensor *in0, ag_tensor *in1, ag_tensor *bias, const ag_conv_geom *g,
                               bool batched) {
    const char *name = op->op.name;
    int64_t shape[4];
    const int nd = role_shape(op->role, g, batched, shape);
    if (ag__check_alloc(name, nd, shape, in0->dtype)) return NULL;
    ag_tensor *y = ag__new(in0->dtype, nd, shape), *c0, *c1, *cb;
    if (!y || !contiguous3(in0, in1, bias, &c0, &c1, &cb)) {
        ag__discard(y);
        return NULL;
    }
    const void *buf[3] = {NULL, NULL, NULL};
    buf[op->in[0]] = ag__ptr(c0), buf[op->in[1]] = ag__ptr(c1);
    if (op->role == ROLE_B) { /* the bias fused into the forward */
        run_fwd(y->dtype, g, buf[ROLE_A], buf[ROLE_W], cb ? ag__ptr(cb) : NULL, ag__ptr(y));
    } else {
        run_role(op->role, y->dtype, g, buf, ag__ptr(y), NULL);
        if (cb && y->dtype == AG_F64) bias_add_f64(g->N, g->C, g->H * g->W, (const double *)ag__ptr(cb), (double *)ag__ptr(y));
        else if (cb) bias_add_f32(g->N, g->C, g->H * g->W, (const float *)ag__ptr(cb), (float *)ag__ptr(y));
    }
    ag_release(c0);
    ag_release(c1);
    ag_release(cb);
    ag_tensor *in[3] = {in0, in1, bias};
    if (ag__needs_grad(in, bias ? 3 : 2)) {
        if (!ag__record(y, &op->op, in, bias ? 3 : 2)) return NULL;
        save_geometry(y, g);
    }
    return ag__check_finite(y, name);
}

/* d in_i = the product of in_i's role from the other input and dy;  db = Σ dy over each channel of y
 * (fused with the weight gradient where oneDNN computes both) */
static ag_status conv_backward(ag_tensor *out, ag_tensor *gout) {
    const conv_op *op = (const conv_op *)out->op;
    const ag_tensor *t[3];
    const ag_conv_geom g = node_geometry(out, t);
    ag_tensor *b = out->nin > 2 ? out->in[2] : NULL, *c[2] = {NULL, NULL}, *gin[3] = {NULL, NULL, NULL};
    ag_status st = AG_ERR_NOMEM;
    for (int i = 0; i < 2; i++) /* input i is read for the gradient of the other */
        if (ag__wants(out, 1 - i) && !(c[i] = ag__contig_or_copy(out->in[i]))) goto done;
    for (int i = 0; i < 2; i++)
        if (ag__wants(out, i) && !(gin[i] = ag__new_unowned(out->dtype, out->in[i]->ndim, out->in[i]->shape, false))) goto done;
    if (b && ag__wants(out, 2) && !(gin[2] = ag__new_unowned(b->dtype, 1, b->shape, false))) goto done;
    bool bias_done = false, both_done = false;
    if (op->role == ROLE_B && gin[0] && gin[1] && use_dnnl(out->dtype, &g)) /* conv2d: dy reordered once for both */
        both_done = bias_done = ag__dnnl_conv_bwd(&g, (const float *)ag__ptr(c[0]), (const float *)ag__ptr(c[1]),
                                                  (const float *)ag__ptr(gout), (float *)ag__ptr(gin[0]),
                                                  (float *)ag__ptr(gin[1]), gin[2] ? (float *)ag__ptr(gin[2]) : NULL);
    for (int i = 0; i < 2 && !both_done; i++) {
        if (!gin[i]) continue;
        const void *buf[3] = {NULL, NULL, NULL};
        buf[op->role] = ag__ptr(gout), buf[op->in[1 - i]] = ag__ptr(c[1 - i]);
        const bool fuse = op->in[i] == ROLE_W && op->role == ROLE_B && gin[2];
        run_role(op->in[i], out->dtype, &g, buf, ag__ptr(gin[i]), fuse ? ag__ptr(gin[2]) : NULL);
        bias_done |= fuse;
    }
    if (gin[2] && !bias_done) { /* y's channels: O of b, or C of a */
        const int64_t C = op->role == ROLE_B ? g.O : g.C, HW = op->role == ROLE_B ? g.OH * g.OW : g.H * g.W;
        if (out->dtype == AG_F64) bias_grad_f64(g.N, C, HW, (const double *)ag__ptr(gout), (double *)ag__ptr(gin[2]));
        else bias_grad_f32(g.N, C, HW, (const float *)ag__ptr(gout), (float *)ag__ptr(gin[2]));
    }
    st = AG_OK;
    for (int i = 0; i < 3; i++)
        if (gin[i] && !st) st = ag__accumulate(out->in[i], gin[i]), gin[i] = NULL;
done:
    for (int i = 0; i < 3; i++) ag_release(gin[i]);
    ag_release(c[0]);
    ag_release(c[1]);
    return st;
}

static const conv_op op_conv2d, op_conv_transpose2d, op_conv2d_weight;

/* The op whose result plays role. */
static const conv_op *op_of(conv_role role) {
    return role == ROLE_B ? &op_conv2d : role == ROLE_A ? &op_conv_transpose2d : &op_conv2d_weight;
}

/* role's product (recorded) from the tensors t of the other two roles. */
static ag_tensor *product_of(conv_role role, ag_tensor *const t[3], const ag_conv_geom *g, bool batched) {
    const conv_op *p = op_of(role);
    return conv_product(p, t[p->in[0]], t[p->in[1]], NULL, g, batched);
}

/* Σ of dy over every dim but its channel dim (1, or 0 unbatched): the bias gradient. */
static ag_tensor *channel_sums(ag_tensor *dy) {
    int dims[3], n = 0;
    for (int d = 0; d < dy->ndim; d++)
        if (d != dy->ndim - 3) dims[n++] = d;
    return ag_sum_dims(dy, n, dims, false);
}

/* d in_i = the product of in_i's role from the other input and dy, recorded;  db = Σ dy per channel */
static ag_status conv_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin) {
    const conv_op *op = (const conv_op *)out->op;
    const ag_tensor *t[3];
    const ag_conv_geom g = node_geometry(out, t);
    const bool batched = t[ROLE_A]->ndim == 4;
    for (int i = 0; i < 2; i++) {
        if (!ag__wants(out, i)) continue;
        ag_tensor *src[3] = {NULL, NULL, NULL};
        src[op->role] = gout, src[op->in[1 - i]] = out->in[1 - i];
        if (!(gin[i] = product_of(op->in[i], src, &g, batched))) return ag_last_status();
    }
    if (out->nin > 2 && ag__wants(out, 2) && !(gin[2] = channel_sums(gout))) return ag_last_status();
    return AG_OK;
}

/* dy = P(d in0, in1) + P(in0, d in1) + db, P the op's product (bilinear) */
static ag_tensor *conv_jvp(ag_tensor *out, ag_tensor *const *tin) {
    const conv_op *op = (const conv_op *)out->op;
    const ag_tensor *t[3];
    const ag_conv_geom g = node_geometry(out, t);
    const bool batched = t[ROLE_A]->ndim == 4;
    ag_tensor *dy = NULL;
    if (tin[0] && !(dy = conv_product(op, tin[0], out->in[1], NULL, &g, batched))) return NULL;
    if (tin[1] && !(dy = ag__jvp_add(dy, conv_product(op, out->in[0], tin[1], NULL, &g, batched)))) return NULL;
    if (out->nin > 2 && tin[2]) { /* db[c] on each channel c of y: [C, 1, 1] broadcasts over either layout */
        ag_tensor *db = ag_reshape(tin[2], AG_SHAPE(tin[2]->shape[0], 1, 1));
        dy = dy ? ag_add(dy, db) : ag_add(ag_zeros_like(out), db);
    }
    return dy;
}

/* ---- conv2d ---------------------------------------------------------------------------------------- */
/* y = b + Σ w ⋆ x (cross-correlation);  dx = wᵀ ⋆ dy (transposed), dw = Σ_n dy ⋆ x, db = Σ_{n,i,j} dy */
static const conv_op op_conv2d = {
    {.name = "conv2d", .grad_fn = "ConvolutionBackward0", .backward = conv_backward,
     .saves = AG_SAVES_IN0 | AG_SAVES_IN1,
     .math = "y[n,o] = b[o] + Σ_{c,p,q} w[o,c,p,q]·x[n,c, i·s-pad+p·d, j·s-pad+q·d];  "
             "dx = transposed convolution of dy with w, dw[o,c,p,q] = Σ_{n,i,j} dy[n,o,i,j]·x[n,c,…], "
             "db[o] = Σ_{n,i,j} dy[n,o,i,j]",
     .backward_graph = conv_backward_graph, .jvp = conv_jvp,
     .tangent = "ẏ = conv2d(ẋ, w) + conv2d(x, ẇ) + ḃ[o] (bilinear in x, w)"},
    ROLE_B, {ROLE_A, ROLE_W}};

/* y = b + Σ w ⋆ x */
ag_tensor *ag_conv2d(ag_tensor *x, ag_tensor *w, ag_tensor *b, const ag_conv_opts *o) {
    AG_CHECK_HANDLES(NULL, "conv2d", x, w, b);
    if (!x || !w) return NULL;
    if (ag__check_float("conv2d", x, w) || (b && ag__check_float("conv2d", b, x))) return NULL;
    ag_conv_geom g;
    if (conv_geometry("conv2d", x, w, b, o, 2, &g)) return NULL;
    return conv_product(&op_conv2d, x, w, b, &g, x->ndim == 4);
}

/* ---- conv1d ---------------------------------------------------------------------------------------- */
/* conv2d of x [N, C, 1, L] with w [O, C/groups, 1, K]: the checks name conv1d and its shapes. */
ag_tensor *ag_conv1d(ag_tensor *x, ag_tensor *w, ag_tensor *b, const ag_conv_opts *o) {
    AG_CHECK_HANDLES(NULL, "conv1d", x, w, b);
    if (!x || !w) return NULL;
    if (ag__check_float("conv1d", x, w) || (b && ag__check_float("conv1d", b, x))) return NULL;
    ag_conv_geom g;
    if (conv_geometry("conv1d", x, w, b, o, 1, &g)) return NULL;
    ag_conv_opts o2 = {.stride = {1, g.sw}, .padding = {0, g.pl}, .dilation = {1, g.dw}, .groups = g.groups};
    if (o && o->padding_mode == AG_PADDING_SAME) o2.padding_mode = AG_PADDING_SAME; /* its odd total is not two equal sides */
    if (ag__composite_begin("conv1d")) return NULL;
    ag_tensor *y = ag_conv2d(ag_unsqueeze(x, -2), ag_unsqueeze(w, 2), b, &o2);
    return ag__composite_end(y ? ag_squeeze(y, -2) : NULL);
}

/* ---- conv2d_weight ------------------------------------------------------------------------------- */
/* y = Σ_n dy ⋆ x (conv2d's weight gradient);  dx = convᵀ(dy_w, gy), d gy = conv(x, dy_w) */
static const conv_op op_conv2d_weight = {
    {.name = "conv2d_weight", .grad_fn = "ConvolutionBackwardBackward0", .backward = conv_backward,
     .saves = AG_SAVES_IN0 | AG_SAVES_IN1,
     .math = "y[o,c,p,q] = Σ_{n,i,j} g[n,o,i,j]·x[n,c, i·s-pad+p·d, j·s-pad+q·d] (conv2d's weight gradient for output "
             "gradient g);  dx = conv_transpose2d(g, dy), dg = conv2d(x, dy) with the same options",
     .backward_graph = conv_backward_graph, .jvp = conv_jvp,
     .tangent = "ẏ = conv2d_weight(ẋ, g) + conv2d_weight(x, ġ) (bilinear in x, g)"},
    ROLE_W, {ROLE_A, ROLE_B}};

/* y = Σ_n gy ⋆ x: the weight gradient of conv2d(x, w of weight_shape) for its output gradient gy */
ag_tensor *ag_conv2d_weight(ag_tensor *x, ag_shape weight_shape, ag_tensor *grad_output, const ag_conv_opts *o) {
    const char *op = "conv2d_weight";
    AG_CHECK_HANDLES(NULL, op, x, grad_output);
    if (!x || !grad_output) return NULL;
    if (ag__check_float(op, x, grad_output) || ag__check_shape(op, weight_shape.ndim, weight_shape.dim)) return NULL;
    ag_tensor w;
    memset(&w, 0, sizeof w);
    w.ndim = weight_shape.ndim;
    memcpy(w.shape, weight_shape.dim, sizeof(int64_t) * (size_t)w.ndim);
    ag_conv_geom g;
    if (conv_geometry(op, x, &w, NULL, o, 2, &g)) return NULL;
    int64_t shape[4];
    const int nd = role_shape(ROLE_B, &g, x->ndim == 4, shape);
    if (grad_output->ndim != nd || memcmp(grad_output->shape, shape, sizeof(int64_t) * (size_t)nd)) {
        char s1[AG_SHAPE_STR], s2[AG_SHAPE_STR], s3[AG_SHAPE_STR], s4[AG_SHAPE_STR];
        return ag__fail_null(AG_ERR_SHAPE, "%s: grad_output %s is not the output %s of conv2d of input %s with a weight "
                             "of shape %s", op, ag__tshape(s1, grad_output), ag__shape_str(s2, nd, shape),
                             ag__tshape(s3, x), ag__shape_str(s4, w.ndim, w.shape));
    }
    return conv_product(&op_conv2d_weight, x, grad_output, NULL, &g, x->ndim == 4);
}

/* ---- conv_transpose2d ------------------------------------------------------------------------------- */
/* A transposed convolution is the adjoint of a convolution with respect to its input: with that
 * convolution's geometry g (its input is y [N, Cout, OH, OW], its output x [N, Cin, H, W], its weight
 * w [Cin, Cout/groups, KH, KW] read as [O = Cin, C/groups = Cout/groups, KH, KW]), the forward is
 * g's backward data, the gradient of x is g's forward and the gradient of w is g's backward weights
 * with x and dy swapped: the same primitives and loops as conv2d. */

/* Checks x, w, b and the options of transposed op (nsp spatial dims) and fills g as above.  The output
 * size per dim is (in - 1)·s - 2·pad + d·(k - 1) + output_padding + 1; g pads the top/left by pad and
 * the bottom/right by pad - output_padding (negative: more rows than the convolution reads; the
 * reference loops serve it, oneDNN is not asked). */
static ag_status transposed_geometry(const char *op, const ag_tensor *x, const ag_tensor *w, const ag_tensor *b,
                                     const ag_conv_transpose_opts *opts, int nsp, ag_conv_geom *g) {
    static const ag_conv_transpose_opts defaults = {{1, 1}, {0, 0}, {0, 0}, {1, 1}, 1};
    const ag_conv_transpose_opts *o = opts ? opts : &defaults;
    char s1[AG_SHAPE_STR], s2[AG_SHAPE_STR];
    if (x->ndim != nsp + 1 && x->ndim != nsp + 2)
        return ag__fail(AG_ERR_SHAPE, "%s: input %s must have %d dims (batched) or %d (unbatched)", op,
                        ag__tshape(s1, x), nsp + 2, nsp + 1);
    if (w->ndim != nsp + 2)
        return ag__fail(AG_ERR_SHAPE, "%s: weight %s must have %d dims [in_channels, out_channels/groups, %s]", op,
                        ag__tshape(s1, w), nsp + 2, nsp == 2 ? "kH, kW" : "kW");
    int64_t stride[2], pad[2], outpad[2], dil[2], groups;
    for (int k = 0; k < nsp; k++)
        if (!option(o->stride, k, 1, &stride[k]) || !option(o->dilation, k, 1, &dil[k]) ||
            !option(o->padding, k, 0, &pad[k]) || !option(o->output_padding, k, 0, &outpad[k]))
            return ag__fail(AG_ERR_ARG, "%s: negative stride, padding, output_padding or dilation (entry %d: %lld, "
                            "%lld, %lld, %lld)", op, k, (long long)o->stride[k], (long long)o->padding[k],
                            (long long)o->output_padding[k], (long long)o->dilation[k]);
    if (o->groups < 0) return ag__fail(AG_ERR_ARG, "%s: groups=%lld must be positive", op, (long long)o->groups);
    groups = o->groups ? o->groups : 1;
    for (int k = 0; k < nsp; k++)
        if (outpad[k] >= stride[k] && outpad[k] >= dil[k])
            return ag__fail(AG_ERR_ARG, "%s: output_padding %lld must be smaller than the stride %lld or the dilation "
                            "%lld (entry %d)", op, (long long)outpad[k], (long long)stride[k], (long long)dil[k], k);
    const int sp = x->ndim - nsp;
    const int64_t Cin = x->shape[sp - 1];
    int64_t Cout;
    if (Cin % groups)
        return ag__fail(AG_ERR_SHAPE, "%s: input %s has %lld channels, not divisible by groups=%lld", op,
                        ag__tshape(s1, x), (long long)Cin, (long long)groups);
    if (w->shape[0] != Cin)
        return ag__fail(AG_ERR_SHAPE, "%s: weight %s expects %lld input channels, input %s has %lld", op,
                        ag__tshape(s1, w), (long long)w->shape[0], ag__tshape(s2, x), (long long)Cin);
    if (ag__mul_overflow(w->shape[1], groups, &Cout))
        return ag__fail(AG_ERR_ARG, "%s: weight %s times groups=%lld overflows", op, ag__tshape(s1, w),
                        (long long)groups);
    if (b && (b->ndim != 1 || b->shape[0] != Cout))
        return ag__fail(AG_ERR_SHAPE, "%s: bias %s does not match weight %s with groups=%lld (expected [%lld])", op,
                        ag__tshape(s1, b), ag__tshape(s2, w), (long long)groups, (long long)Cout);
    int64_t in[2] = {1, 1}, k[2] = {1, 1}, p[2] = {0, 0}, op_[2] = {0, 0}, out[2] = {1, 1}, s[2] = {1, 1}, d[2] = {1, 1};
    for (int i = 0; i < nsp; i++) {
        const int t = 2 - nsp + i;
        in[t] = x->shape[sp + i], k[t] = w->shape[2 + i], s[t] = stride[i], d[t] = dil[i], p[t] = pad[i];
        op_[t] = outpad[i];
        if (k[t] == 0)
            return ag__fail(AG_ERR_SHAPE, "%s: weight %s has an empty kernel", op, ag__tshape(s1, w));
        int64_t n; /* (in - 1)·s - 2·pad + d·(k - 1) + output_padding + 1 */
        if (ag__mul_overflow(in[t] - 1, s[t], &n) || ag__mul_overflow(d[t], k[t] - 1, &out[t]) ||
            ag__add_overflow(n, out[t], &n) || ag__add_overflow(n, op_[t] + 1, &n) ||
            ag__add_overflow(n, -p[t], &n) || ag__add_overflow(n, -p[t], &n))
            return ag__fail(AG_ERR_ARG, "%s: the output size of input %s with weight %s overflows", op,
                            ag__tshape(s1, x), ag__tshape(s2, w));
        if (n <= 0)
            return ag__fail(AG_ERR_SHAPE, "%s: input %s with weight %s, stride %lld, padding %lld, dilation %lld and "
                            "output_padding %lld gives an output size of %lld (expected at least 1)", op,
                            ag__tshape(s1, x), ag__tshape(s2, w), (long long)s[t], (long long)p[t], (long long)d[t],
                            (long long)op_[t], (long long)n);
        out[t] = n;
    }
    *g = (ag_conv_geom){.N = x->ndim == nsp + 2 ? x->shape[0] : 1, .C = Cout, .H = out[0], .W = out[1], .O = Cin,
                        .KH = k[0], .KW = k[1], .OH = in[0], .OW = in[1], .sh = s[0], .sw = s[1], .dh = d[0],
                        .dw = d[1], .pt = p[0], .pb = p[0] - op_[0], .pl = p[1], .pr = p[1] - op_[1], .groups = groups};
    return AG_OK;
}

/* y = b + convᵀ(x, w);  dx = conv(dy, w), dw = Σ_n x ⋆ dy, db = Σ dy */
static const conv_op op_conv_transpose2d = {
    {.name = "conv_transpose2d", .grad_fn = "ConvolutionBackward0", .backward = conv_backward,
     .saves = AG_SAVES_IN0 | AG_SAVES_IN1,
     .math = "y[n,o, i·s-pad+p·d, j·s-pad+q·d] += Σ_c x[n,c,i,j]·w[c,o,p,q], y += b[o] (the adjoint of conv2d's "
             "input);  dx = conv2d(dy, w) with the same stride, padding, dilation, groups, dw[c,o,p,q] = Σ_{n,i,j} "
             "x[n,c,i,j]·dy[n,o,…], db[o] = Σ_{n,i,j} dy[n,o,i,j]",
     .backward_graph = conv_backward_graph, .jvp = conv_jvp,
     .tangent = "ẏ = conv_transpose2d(ẋ, w) + conv_transpose2d(x, ẇ) + ḃ[o] (bilinear in x, w)"},
    ROLE_A, {ROLE_B, ROLE_W}};

/* y = b + convᵀ(x, w) */
ag_tensor *ag_conv_transpose2d(ag_tensor *x, ag_tensor *w, ag_tensor *b, const ag_conv_transpose_opts *o) {
    AG_CHECK_HANDLES(NULL, "conv_transpose2d", x, w, b);
    if (!x || !w) return NULL;
    if (ag__check_float("conv_transpose2d", x, w) || (b && ag__check_float("conv_transpose2d", b, x))) return NULL;
    ag_conv_geom g;
    if (transposed_geometry("conv_transpose2d", x, w, b, o, 2, &g)) return NULL;
    return conv_product(&op_conv_transpose2d, x, w, b, &g, x->ndim == 4);
}

/* conv_transpose2d of x [N, C, 1, L] with w [C, O/groups, 1, K]: the checks name conv_transpose1d. */
ag_tensor *ag_conv_transpose1d(ag_tensor *x, ag_tensor *w, ag_tensor *b, const ag_conv_transpose_opts *o) {
    AG_CHECK_HANDLES(NULL, "conv_transpose1d", x, w, b);
    if (!x || !w) return NULL;
    if (ag__check_float("conv_transpose1d", x, w) || (b && ag__check_float("conv_transpose1d", b, x))) return NULL;
    ag_conv_geom g;
    if (transposed_geometry("conv_transpose1d", x, w, b, o, 1, &g)) return NULL;
    const ag_conv_transpose_opts o2 = {.stride = {1, g.sw}, .padding = {0, g.pl}, .output_padding = {0, g.pl - g.pr},
                                       .dilation = {1, g.dw}, .groups = g.groups};
    if (ag__composite_begin("conv_transpose1d")) return NULL;
    ag_tensor *y = ag_conv_transpose2d(ag_unsqueeze(x, -2), ag_unsqueeze(w, 2), b, &o2);
    return ag__composite_end(y ? ag_squeeze(y, -2) : NULL);
}

const ag_op *const ag__conv_ops[] = {&op_conv2d.op, &op_conv_transpose2d.op, &op_conv2d_weight.op, NULL};

/*
 * loss.c - the fused loss primitives: binary_cross_entropy (elementwise) and
 * cross_entropy over [N, C] logits with class indices, and the element access
 * the losses share.  The functional losses in nn/ check their arguments and
 * call these; everything else about a loss (options, reductions of the
 * composed losses) stays in nn/.
 *
 * binary_cross_entropy_with_logits's term (with and without pos_weight), poisson_nll_loss's
 * (log-rates and rates, Stirling's term inside when full), kl_div's (target probabilities and
 * log_target) and huber's (of input and target) are others: one node and one pass each way.
 *
 * binary_cross_entropy is one fused elementwise op: PyTorch clamps each log at
 * -100 and guards its adjoint's denominator with 1e-12, which keeps loss and
 * gradient finite for predictions of exactly 0 and 1; composed from log and
 * clamp, the chain rule would multiply a zero clamp gradient by 1/0.
 */
#include <string.h>
#include <tgmath.h>
#include "core/iter.h"
#include "core/layout.h"
#include "core/parallel.h"
#include "core/simd_extreme.h"
#include "core/sum.h"
#include "core/sum_pairs.h"
#include "autograd/tape.h"
#include "ops/adjoint_run.h"
#include "ops/loss.h"
#include "ops/partial.h"
#include "ops/softmax.h"
#include "ops/vexpf.h"
#include "ops/vmathf.h"

/* ---- element access -------------------------------------------------------------------------------- */
int64_t ag__loss_offset(const ag_tensor *t, int64_t k) {
    int64_t off = t->offset;
    for (int d = t->ndim - 1; d >= 0; d--) {
        off += (k % t->shape[d]) * t->stride[d];
        k /= t->shape[d];
    }
    return off;
}

double ag__loss_at(const ag_tensor *t, int64_t k) { return ag__read(t, ag__loss_offset(t, k)); }

int64_t ag__loss_index_at(const ag_tensor *t, int64_t k) {
    return ((const int64_t *)t->storage->data)[ag__loss_offset(t, k)];
}

/* ---- binary_cross_entropy ----------------------------------------------------------------------- */
#define BCE_EPS 1e-12
/* max(log v, -100), PyTorch's clamped log (NaN gives -100, as fmax) */
#define CLOG(v) fmax(log(v), (T)-100)

/* max(log v, -100) in float32 without a libm call, so that the loops over it vectorise:
 * log v = k·ln 2 + L (ops/vmathf.h's vmathf_log_parts, Cephes' logf, within 1 ulp; libm's
 * logf is within 0.5), ln 2 split in two as Cephes' logf.  v <= 0 and NaN give -100 (log is
 * -inf or NaN, fmax drops it), inf gives inf. */
static inline float clogf_v(float v) {
    float l;
    const float k = vmathf_log_parts(v, &l), y = k * 0.693359375f + (l + k * -2.12194440e-4f);
    return v > 0 ? (v < INFINITY ? (y > -100.0f ? y : -100.0f) : v) : -100.0f;
}

/* The forward's and adjoint's value at one element, in T: y = -(t·clog x + (1 - t)·clog(1 - x)),
 * dx = dy·(x - t)/max(x(1 - x), ε) (NaN gives ε, as fmax), dt = dy·(clog(1 - x) - clog x). */
#define BCE_Y(CL, x, t) (-((t) * CL(x) + (1 - (t)) * CL(1 - (x))))
#define BCE_DX(x, t, dy) ((dy) * ((x) - (t)) / BCE_DENOM((1 - (x)) * (x)))
/* max(d, ε) as a select (vectorises; NaN gives ε, as fmax) */
#define BCE_DENOM(d) ((d) > (T)BCE_EPS ? (d) : (T)BCE_EPS)
#define BCE_DT(CL, x, dy) ((dy) * (CL(1 - (x)) - CL(x)))
#define CLOG_F(v) clogf_v(v)

/* What a term kernel reads besides its operands: the input whose adjoint it writes (bwd) and
 * the op's scalar attrs a and b (poisson_nll_loss's eps; huber's k and c), which the kernels
 * hold in T as ka and kb. */
typedef struct term_ctx {
    int which;
    double a, b;
} term_ctx;

/* The term kernels: AVX-512 clones, and flatten: the maths (vlogf, vexpf, clogf_v, ...) inlined
 * into every loop, which then vectorises.  With the kernels of eight ops in this file gcc's unit
 * growth limit left some of them calls, and their loops scalar (poisson's full adjoint ran 4x
 * slower). */
#define TERM_KERNEL AG_VEC_CLONES_512 __attribute__((flatten))

/* The kernels of the two-input elementwise terms (bce, bce_with_logits, poisson, kl_div): the
 * forward y = Y(x, t) and the adjoint g = DX(x, t, dy) resp. DT(x, t, dy), each a macro of the
 * term in T (ka, kb in scope).  Their float32 logs and exps are arithmetic-bound: AVX-512 clones
 * (the same bits).  fwd operands: y, x, t.  Unit strides run a loop of their own (vectorised). */
#define PAIR_FWD(NAME, TYPE, Y)                                                         \
    TERM_KERNEL static void NAME(char **p, const int64_t *s, int64_t n, void *ctx) {    \
        typedef TYPE T;                                                                 \
        const T ka = (T)((const term_ctx *)ctx)->a, kb = (T)((const term_ctx *)ctx)->b; \
        (void)ka, (void)kb;                                                             \
        const int64_t u = (int64_t)sizeof(T);                                           \
        if (s[0] == u && s[1] == u && s[2] == u) {                                      \
            T *restrict y = (T *)p[0];                                                  \
            const T *restrict x = (const T *)p[1], *restrict t = (const T *)p[2];      \
            for (int64_t i = 0; i < n; i++) y[i] = Y(x[i], t[i]);                       \
            return;                                                                     \
        }                                                                               \
        for (int64_t i = 0; i < n; i++) {                                               \
            const T x = *(const T *)(p[1] + i * s[1]), t = *(const T *)(p[2] + i * s[2]); \
            *(T *)(p[0] + i * s[0]) = Y(x, t);                                          \
        }                                                                               \
    }

/* The unit-stride loops of PAIR_BWD with dy's element as DYI (dy[i], or d0 for one value); with BLOCKS, runs of
 * AG_ADJ_PREFETCH_MIN bytes and more in ops/adjoint_run.h's blocks that prefetch dy (the same loop in each) */
#define PAIR_BWD_RUN(DX, DT, DYI, BLOCKS)                                               \
    do {                                                                                \
        if (which == 0) AG_ADJ_RUN(T, n, dy, BLOCKS, i, g[i] = DX(x[i], t[i], DYI););   \
        else AG_ADJ_RUN(T, n, dy, BLOCKS, i, g[i] = DT(x[i], t[i], DYI););              \
    } while (0)

/* bwd operands: g, x, t, dy; ctx's which selects the input (0: x, 1: t).  dy may have any strides
 * (the ops take gout as it comes, AG_GOUT_ANY_STRIDES): stride 0, a reduction's dy seen through
 * out's shape, runs the unit-stride loops with that one value d0 (no [N, N] copy of it to make).
 * PAIR_BWD_BLOCKS: a unit-stride dy in AG_ADJ_RUN's prefetching blocks (PAIR_BWD_RUN), for the terms whose
 * AVX-512 clone loads dy under a mask (kl_div's `t == 0 ? 0 : ...`). */
#define PAIR_BWD(NAME, TYPE, DX, DT) PAIR_BWD_B(NAME, TYPE, DX, DT, false)
#define PAIR_BWD_BLOCKS(NAME, TYPE, DX, DT) PAIR_BWD_B(NAME, TYPE, DX, DT, true)
#define PAIR_BWD_B(NAME, TYPE, DX, DT, BLOCKS)                                          \
    TERM_KERNEL static void NAME(char **p, const int64_t *s, int64_t n, void *ctx) {    \
        typedef TYPE T;                                                                 \
        const int which = ((const term_ctx *)ctx)->which;                               \
        const T ka = (T)((const term_ctx *)ctx)->a, kb = (T)((const term_ctx *)ctx)->b; \
        (void)ka, (void)kb;                                                             \
        const int64_t u = (int64_t)sizeof(T);                                           \
        if (s[0] == u && s[1] == u && s[2] == u && (s[3] == u || s[3] == 0)) {          \
            T *restrict g = (T *)p[0];                                                  \
            const T *restrict x = (const T *)p[1], *restrict t = (const T *)p[2];      \
            const T *restrict dy = (const T *)p[3];                                     \
            const T d0 = n > 0 ? *dy : (T)0;                                            \
            if (s[3] == 0) PAIR_BWD_RUN(DX, DT, d0, false);                             \
            else PAIR_BWD_RUN(DX, DT, dy[i], BLOCKS);                                   \
            return;                                                                     \
        }                                                                               \
        for (int64_t i = 0; i < n; i++) {                                               \
            const T x = *(const T *)(p[1] + i * s[1]), t = *(const T *)(p[2] + i * s[2]); \
            const T dy = *(const T *)(p[3] + i * s[3]);                                 \
            *(T *)(p[0] + i * s[0]) = which == 0 ? DX(x, t, dy) : DT(x, t, dy);         \
        }                                                                               \
    }

/* The three-input terms (bce_with_logits with pos_weight w): y = Y(x, t, w); fwd operands
 * y, x, t, w (w broadcasts over the last dim).  Unit strides, with w at unit stride or one value
 * along the run (a 0-d or [1] pos_weight), run loops of their own (vectorised; the same bits). */
#define TRIPLE_FWD(NAME, TYPE, Y)                                                       \
    TERM_KERNEL static void NAME(char **p, const int64_t *s, int64_t n, void *ctx) {    \
        typedef TYPE T;                                                                 \
        (void)ctx;                                                                      \
        const int64_t u = (int64_t)sizeof(T);                                           \
        if (s[0] == u && s[1] == u && s[2] == u && (s[3] == u || s[3] == 0)) {          \
            T *restrict y = (T *)p[0];                                                  \
            const T *restrict x = (const T *)p[1], *restrict t = (const T *)p[2];      \
            const T *restrict w = (const T *)p[3];                                      \
            const T w0 = n > 0 ? *w : (T)0;                                             \
            if (s[3] == 0)                                                              \
                for (int64_t i = 0; i < n; i++) y[i] = Y(x[i], t[i], w0);               \
            else                                                                        \
                for (int64_t i = 0; i < n; i++) y[i] = Y(x[i], t[i], w[i]);             \
            return;                                                                     \
        }                                                                               \
        for (int64_t i = 0; i < n; i++) {                                               \
            const T x = *(const T *)(p[1] + i * s[1]), t = *(const T *)(p[2] + i * s[2]); \
            const T w = *(const T *)(p[3] + i * s[3]);                                  \
            *(T *)(p[0] + i * s[0]) = Y(x, t, w);                                       \
        }                                                                               \
    }

/* The unit-stride loops of TRIPLE_BWD with w's element as WI (w[i], or w0) and dy's as DYI */
#define TRIPLE_BWD_RUN(DX, DT, DW, WI, DYI)                                             \
    do {                                                                                \
        if (which == 0)                                                                 \
            for (int64_t i = 0; i < n; i++) g[i] = DX(x[i], t[i], WI, DYI);             \
        else if (which == 1)                                                            \
            for (int64_t i = 0; i < n; i++) g[i] = DT(x[i], t[i], WI, DYI);             \
        else                                                                            \
            for (int64_t i = 0; i < n; i++) g[i] = DW(x[i], t[i], WI, DYI);             \
    } while (0)

/* bwd operands: g, x, t, w, dy; ctx's which selects the input (0: x, 1: t, 2: w).  Unit strides
 * (w and dy also one value along the run) run TRIPLE_BWD_RUN's loops. */
#define TRIPLE_BWD(NAME, TYPE, DX, DT, DW)                                              \
    TERM_KERNEL static void NAME(char **p, const int64_t *s, int64_t n, void *ctx) {    \
        typedef TYPE T;                                                                 \
        const int which = ((const term_ctx *)ctx)->which;                               \
        const int64_t u = (int64_t)sizeof(T);                                           \
        if (s[0] == u && s[1] == u && s[2] == u && (s[3] == u || s[3] == 0) && (s[4] == u || s[4] == 0)) { \
            T *restrict g = (T *)p[0];                                                  \
            const T *restrict x = (const T *)p[1], *restrict t = (const T *)p[2];      \
            const T *restrict w = (const T *)p[3], *restrict dy = (const T *)p[4];     \
            const T w0 = n > 0 ? *w : (T)0, d0 = n > 0 ? *dy : (T)0;                    \
            if (s[3] == 0 && s[4] == 0) TRIPLE_BWD_RUN(DX, DT, DW, w0, d0);             \
            else if (s[3] == 0) TRIPLE_BWD_RUN(DX, DT, DW, w0, dy[i]);                  \
            else if (s[4] == 0) TRIPLE_BWD_RUN(DX, DT, DW, w[i], d0);                   \
            else TRIPLE_BWD_RUN(DX, DT, DW, w[i], dy[i]);                               \
            return;                                                                     \
        }                                                                               \
        for (int64_t i = 0; i < n; i++) {                                               \
            const T x = *(const T *)(p[1] + i * s[1]), t = *(const T *)(p[2] + i * s[2]); \
            const T w = *(const T *)(p[3] + i * s[3]), dy = *(const T *)(p[4] + i * s[4]); \
            *(T *)(p[0] + i * s[0]) = which == 0 ? DX(x, t, w, dy) : which == 1 ? DT(x, t, w, dy) : DW(x, t, w, dy); \
        }                                                                               \
    }

/* The adjoint of a term of out->nin inputs: for each input that wants a gradient, g = kernel(inputs,
 * dy) over out's shape (f64 / f32 by out's dtype, with out's attrs a, b), summed down to the input's shape. */
static ag_status terms_backward(ag_tensor *out, ag_tensor *gout, ag_inner_fn f64, ag_inner_fn f32) {
    for (int which = 0; which < out->nin; which++) {
        if (!ag__wants(out, which)) continue;
        ag_tensor *g = ag__new_unowned(out->dtype, out->ndim, out->shape, false);
        if (!g) return AG_ERR_NOMEM;
        term_ctx c = {which, out->attr.a, out->attr.b};
        ag_iter it;
        ag__iter_init(&it, out->ndim, out->shape);
        ag__iter_add(&it, g);
        for (int i = 0; i < out->nin; i++) ag__iter_add(&it, out->in[i]);
        ag__iter_add(&it, gout);
        ag__iter_run_par(&it, out->dtype == AG_F64 ? f64 : f32, &c);
        ag_status st = ag__accumulate(out->in[which], g);
        if (st) return st;
    }
    return AG_OK;
}

/* The forward of a term of nin (2 or 3) inputs over their broadcast shape (of in[0]'s float dtype),
 * recording op with attr when any needs grad; laid out as the inputs when follow (ag__map_result's
 * rule), else row-major. */
static ag_tensor *terms_forward(ag_tensor *const *in, int nin, const ag_op *op, ag_attr attr, ag_inner_fn f64,
                                ag_inner_fn f32, bool follow) {
    ag_tensor sh; /* a header carrying only the broadcast shape of the inputs so far */
    sh.ndim = in[0]->ndim;
    memcpy(sh.shape, in[0]->shape, sizeof(int64_t) * (size_t)sh.ndim);
    for (int i = 1; i < nin; i++) {
        int ndim;
        int64_t shape[AG_MAX_DIMS];
        if (ag__broadcast_shape(op->name, i == 1 ? in[0] : &sh, in[i], &ndim, shape)) return NULL;
        sh.ndim = ndim;
        memcpy(sh.shape, shape, sizeof shape);
    }
    /* y is laid out as the inputs read in full when those are dense in one permuted layout (transposed
     * input and target: PyTorch's preserve_format) and follow, else row-major; alike-laid-out operands
     * are then one flat pass over memory (the same kernel on the same elements: the same bits) */
    ag_tensor *y = follow ? ag__new_map_result(in[0]->dtype, sh.ndim, sh.shape, (const ag_tensor *const *)in, nin)
                          : ag__new(in[0]->dtype, sh.ndim, sh.shape);
    if (!y) return NULL;
    term_ctx c = {0, attr.a, attr.b};
    ag_inner_fn fn = in[0]->dtype == AG_F64 ? f64 : f32;
    bool flat = !ag__contig(y);
    for (int i = 0; i < nin && flat; i++) flat = ag__same_dense(y, in[i]);
    if (flat) {
        char *p[AG_ITER_MAX] = {ag__ptr(y)};
        for (int i = 0; i < nin; i++) p[1 + i] = ag__ptr(in[i]);
        ag__par_run_flat(fn, &c, ag__numel(y->ndim, y->shape), 1 + nin, p, (int64_t)ag__esize(y->dtype));
    } else {
        ag_iter it;
        ag__iter_init(&it, sh.ndim, sh.shape);
        ag__iter_add(&it, y);
        for (int i = 0; i < nin; i++) ag__iter_add(&it, in[i]);
        ag__iter_run_par(&it, fn, &c);
    }
    if (ag__needs_grad(in, nin)) {
        ag_tensor *node = ag__record(y, op, in, nin);
        if (!node) return NULL;
        node->attr = attr;
    }
    return ag__check_finite(y, op->name);
}

/* The forward of a two-input term without attrs */
static ag_tensor *pair_forward(ag_tensor *x, ag_tensor *t, const ag_op *op, ag_inner_fn f64, ag_inner_fn f32,
                               bool follow) {
    ag_tensor *in[2] = {x, t};
    return terms_forward(in, 2, op, (ag_attr){0}, f64, f32, follow);
}

/* dt = -dy·x: the target's adjoint of the terms linear in t as -t·x (bce_with_logits, poisson) */
#define NEG_X_DT(x, t, dy) (-((dy) * (x)))
/* The terms f(x) - t·x (poisson: f = exp; bce_with_logits: f = softplus): y = f(x) - t·x and
 * dx = dy·(f'(x) - t) given f and f' (DF); dt is NEG_X_DT */
#define F_MINUS_TX_Y(F, x, t) (F(x) - (t) * (x))
#define F_MINUS_TX_DX(DF, x, t, dy) ((dy) * (DF(x) - (t)))

#define BCE_Y_F(x, t) BCE_Y(CLOG_F, x, t)
#define BCE_Y_D(x, t) BCE_Y(CLOG, x, t)
#define BCE_DT_F(x, t, dy) BCE_DT(CLOG_F, x, dy)
#define BCE_DT_D(x, t, dy) BCE_DT(CLOG, x, dy)
PAIR_FWD(bce_fwd_f32, float, BCE_Y_F)
PAIR_FWD(bce_fwd_f64, double, BCE_Y_D)
PAIR_BWD(bce_bwd_f32, float, BCE_DX, BCE_DT_F)
PAIR_BWD(bce_bwd_f64, double, BCE_DX, BCE_DT_D)

static ag_status bce_backward(ag_tensor *out, ag_tensor *gout) {
    return terms_backward(out, gout, bce_bwd_f64, bce_bwd_f32);
}

/* dy/dx = (x - t) / max(x·(1 - x), 1e-12),  dy/dt = max(log(1 - x), -100) - max(log x, -100), in agrad ops:
 * the rows' partial, from which ops/partial.h makes the backward_graph and the tangent rule. */
static ag_tensor *bce_partial(ag_tensor *const *in, ag_tensor *y, const ag_attr *attr, int i) {
    (void)attr;
    ag_tensor *x = in[0], *t = in[1];
    if (i == 0) return ag_div(ag_sub(x, t), ag_maximum(ag_mul(x, ag_rsub_scalar(1, x)), K(BCE_EPS)));
    return ag_sub(ag_maximum(ag_log(ag_rsub_scalar(1, x)), K(-100)), ag_maximum(ag_log(x), K(-100)));
}

/* y = -(t max(log x, -100) + (1 - t) max(log(1 - x), -100));
 * dx = dy (x - t) / max(x (1 - x), 1e-12),  dt = dy (max(log(1 - x), -100) - max(log x, -100)) */
static const ag_op op_bce = {
    .name = "binary_cross_entropy", .grad_fn = "BinaryCrossEntropyBackward0", .backward = bce_backward,
    .saves = AG_SAVES_IN0 | AG_SAVES_IN1 | AG_GOUT_ANY_STRIDES,
    .math = "y = -(t·max(log x, -100) + (1 - t)·max(log(1 - x), -100));  "
            "dx = dy·(x - t) / max(x·(1 - x), 1e-12),  dt = dy·(max(log(1 - x), -100) - max(log x, -100))",
    .backward_graph = ag__elementwise_backward_graph, .partial = bce_partial, .jvp = ag__elementwise_jvp};

ag_tensor *ag__bce_terms(ag_tensor *x, ag_tensor *t, bool follow) {
    return pair_forward(x, t, &op_bce, bce_fwd_f64, bce_fwd_f32, follow);
}

/* ---- poisson_nll_loss (log_input) ---------------------------------------------------------------- */
/* poisson_nll_loss's term of log-rates x and counts t as one elementwise op: y = e^x - t·x (three
 * nodes composed: exp, mul, sub).  float32 e^x by vexpf_any, as ag_exp's, so the same values. */
#define EXP_F(v) vexpf_any(v)
/* y = e^x - t·x, dx = dy·(e^x - t) */
#define POIS_Y_F(x, t) F_MINUS_TX_Y(EXP_F, x, t)
#define POIS_Y_D(x, t) F_MINUS_TX_Y(exp, x, t)
#define POIS_DX_F(x, t, dy) F_MINUS_TX_DX(EXP_F, x, t, dy)
#define POIS_DX_D(x, t, dy) F_MINUS_TX_DX(exp, x, t, dy)
PAIR_FWD(pois_fwd_f32, float, POIS_Y_F)
PAIR_FWD(pois_fwd_f64, double, POIS_Y_D)
PAIR_BWD(pois_bwd_f32, float, POIS_DX_F, NEG_X_DT)
PAIR_BWD(pois_bwd_f64, double, POIS_DX_D, NEG_X_DT)

/* poisson_nll_loss's term of rates x (log_input false) with ka = eps, as one op (five nodes
 * composed: add, log, mul, sub; then the Stirling term's): y = x - t·log(x + eps),
 * dx = dy·(1 - t/(x + eps)), dt = -dy·log(x + eps).  float32 log by vlogf (within 1 ulp). */
#define LOG_F(v) vlogf(v)
#define RATE_Y(LG, x, t) ((x) - (t) * LG((x) + ka))
#define RATE_DX(x, t, dy) ((dy) * (1 - (t) / ((x) + ka)))
#define RATE_DT(LG, x, t, dy) (-((dy) * LG((x) + ka)))
#define RATE_Y_F(x, t) RATE_Y(LOG_F, x, t)
#define RATE_Y_D(x, t) RATE_Y(log, x, t)
#define RATE_DT_F(x, t, dy) RATE_DT(LOG_F, x, t, dy)
#define RATE_DT_D(x, t, dy) RATE_DT(log, x, t, dy)
PAIR_FWD(rate_fwd_f32, float, RATE_Y_F)
PAIR_FWD(rate_fwd_f64, double, RATE_Y_D)
PAIR_BWD(rate_bwd_f32, float, RATE_DX, RATE_DT_F)
PAIR_BWD(rate_bwd_f64, double, RATE_DX, RATE_DT_D)

/* full: Stirling's approximation of log t! added to either term, 0 where t <= 1 (NaN t gives NaN,
 * as PyTorch's masked_fill(t <= 1, 0)): S = t·log t - t + ½·(log t + log 2π), dS/dt = log t + 1/(2t).
 * The same order of operations as the composition (mul, log, sub; add, scale; add). */
#define LOG_2PI 1.8378770664093453 /* log(2π) */
#define STIRLING(LG, t) ((t) <= 1 ? (T)0 : ((t) * LG(t) - (t)) + (LG(t) + (T)LOG_2PI) * (T)0.5)
#define STIRLING_DT(LG, t) ((t) <= 1 ? (T)0 : LG(t) + (T)0.5 / (t))
#define POIS_FULL_Y_F(x, t) (POIS_Y_F(x, t) + STIRLING(LOG_F, t))
#define POIS_FULL_Y_D(x, t) (POIS_Y_D(x, t) + STIRLING(log, t))
#define RATE_FULL_Y_F(x, t) (RATE_Y_F(x, t) + STIRLING(LOG_F, t))
#define RATE_FULL_Y_D(x, t) (RATE_Y_D(x, t) + STIRLING(log, t))
#define POIS_FULL_DT_F(x, t, dy) (NEG_X_DT(x, t, dy) + (dy) * STIRLING_DT(LOG_F, t))
#define POIS_FULL_DT_D(x, t, dy) (NEG_X_DT(x, t, dy) + (dy) * STIRLING_DT(log, t))
#define RATE_FULL_DT_F(x, t, dy) (RATE_DT_F(x, t, dy) + (dy) * STIRLING_DT(LOG_F, t))
#define RATE_FULL_DT_D(x, t, dy) (RATE_DT_D(x, t, dy) + (dy) * STIRLING_DT(log, t))
PAIR_FWD(pois_full_fwd_f32, float, POIS_FULL_Y_F)
PAIR_FWD(pois_full_fwd_f64, double, POIS_FULL_Y_D)
PAIR_BWD(pois_full_bwd_f32, float, POIS_DX_F, POIS_FULL_DT_F)
PAIR_BWD(pois_full_bwd_f64, double, POIS_DX_D, POIS_FULL_DT_D)
PAIR_FWD(rate_full_fwd_f32, float, RATE_FULL_Y_F)
PAIR_FWD(rate_full_fwd_f64, double, RATE_FULL_Y_D)
PAIR_BWD(rate_full_bwd_f32, float, RATE_DX, RATE_FULL_DT_F)
PAIR_BWD(rate_full_bwd_f64, double, RATE_DX, RATE_FULL_DT_D)

/* The kernels by [rate][full][f64] */
static const ag_inner_fn pois_fwd[2][2][2] = {{{pois_fwd_f32, pois_fwd_f64}, {pois_full_fwd_f32, pois_full_fwd_f64}},
                                              {{rate_fwd_f32, rate_fwd_f64}, {rate_full_fwd_f32, rate_full_fwd_f64}}};
static const ag_inner_fn pois_bwd[2][2][2] = {{{pois_bwd_f32, pois_bwd_f64}, {pois_full_bwd_f32, pois_full_bwd_f64}},
                                              {{rate_bwd_f32, rate_bwd_f64}, {rate_full_bwd_f32, rate_full_bwd_f64}}};

/* attr: a = eps (rates), i[0] = full, i[1] = rates (log_input false) */
static ag_status pois_backward(ag_tensor *out, ag_tensor *gout) {
    const ag_inner_fn *k = pois_bwd[out->attr.i[1] != 0][out->attr.i[0] != 0];
    return terms_backward(out, gout, k[1], k[0]);
}

/* dS/dt = log t + 1/(2t) where t > 1, else 0, in agrad ops (log of 1 where masked: no log of t <= 1) */
static ag_tensor *stirling_dt(ag_tensor *t) {
    ag_tensor *small = ag_le(t, ag_scalar(1, t->dtype)), *u = ag_masked_fill(t, small, 1);
    return ag_masked_fill(ag_add(ag_log(u), ag_rdiv_scalar(0.5, u)), small, 0);
}

/* dy/dx = e^x - t resp. 1 - t/(x + eps),  dy/dt = -x resp. -log(x + eps), plus dS/dt when full, in agrad ops */
static ag_tensor *pois_partial(ag_tensor *const *in, ag_tensor *y, const ag_attr *attr, int i) {
    (void)y;
    ag_tensor *x = in[0], *t = in[1];
    const bool rate = attr->i[1] != 0;
    if (i == 0) return rate ? ag_rsub_scalar(1, ag_div(t, ag_add_scalar(x, attr->a))) : ag_sub(ag_exp(x), t);
    ag_tensor *d = rate ? ag_neg(ag_log(ag_add_scalar(x, attr->a))) : ag_neg(x);
    return attr->i[0] ? ag_add(d, stirling_dt(t)) : d;
}

/* y = e^x - t·x (+ S(t) when full);  dx = dy·(e^x - t),  dt = dy·(-x + S'(t)) */
static const ag_op op_poisson = {
    .name = "poisson_nll_loss", .grad_fn = "PoissonNllLossBackward0", .backward = pois_backward,
    .saves = AG_SAVES_IN0 | AG_SAVES_IN1 | AG_GOUT_ANY_STRIDES,
    .math = "y = e^x - t·x (+ S(t) when full: S = t·log t - t + ½·log(2πt) where t > 1, else 0);  "
            "dx = dy·(e^x - t),  dt = dy·(-x + S'(t)), S' = log t + 1/(2t) where t > 1",
    .backward_graph = ag__elementwise_backward_graph, .partial = pois_partial, .jvp = ag__elementwise_jvp};

/* y = x - t·log(x + eps) (+ S(t) when full);  dx = dy·(1 - t/(x + eps)),  dt = dy·(-log(x + eps) + S'(t)) */
static const ag_op op_poisson_rate = {
    .name = "poisson_nll_loss_rate", .grad_fn = "PoissonNllLossBackward0", .backward = pois_backward,
    .saves = AG_SAVES_IN0 | AG_SAVES_IN1 | AG_GOUT_ANY_STRIDES,
    .math = "y = x - t·log(x + eps) (+ S(t) when full, as poisson_nll_loss);  "
            "dx = dy·(1 - t/(x + eps)),  dt = dy·(-log(x + eps) + S'(t))",
    .backward_graph = ag__elementwise_backward_graph, .partial = pois_partial, .jvp = ag__elementwise_jvp};

ag_tensor *ag__poisson_terms(ag_tensor *x, ag_tensor *t, bool log_input, double eps, bool full, bool follow) {
    ag_tensor *in[2] = {x, t};
    ag_attr attr = {.a = log_input ? 0 : eps};
    attr.i[0] = full;
    attr.i[1] = !log_input;
    const ag_inner_fn *k = pois_fwd[!log_input][full];
    return terms_forward(in, 2, log_input ? &op_poisson : &op_poisson_rate, attr, k[1], k[0], follow);
}

/* ---- kl_div (target probabilities) ------------------------------------------------------------- */
/* kl_div's pointwise term of log-probabilities x and target probabilities t as one elementwise op:
 * y = t·(log t - x), 0 at t = 0 (so no log 0, and no 0·∞ where x = -∞ there).  Composed from eq,
 * two wheres, masked_fill, log, sub and mul, a step recorded seven nodes; this is one.  The
 * gradients are PyTorch 1.x's (kl_div_backward, kl_div_target_backward): 0 at t = 0. */
/* y = t·(log t - x), 0 at t = 0 */
#define KL_Y(LG, x, t) ((t) == 0 ? (T)0 : (t) * (LG(t) - (x)))
/* dx = -dy·t, 0 at t = 0 */
#define KL_DX(x, t, dy) ((t) == 0 ? (T)0 : -((dy) * (t)))
/* dt = dy·(log t - x + 1), 0 at t = 0 */
#define KL_DT(LG, x, t, dy) ((t) == 0 ? (T)0 : (dy) * ((LG(t) - (x)) + 1))
#define KL_Y_F(x, t) KL_Y(LOG_F, x, t)
#define KL_Y_D(x, t) KL_Y(log, x, t)
#define KL_DT_F(x, t, dy) KL_DT(LOG_F, x, t, dy)
#define KL_DT_D(x, t, dy) KL_DT(log, x, t, dy)
PAIR_FWD(kl_fwd_f32, float, KL_Y_F)
PAIR_FWD(kl_fwd_f64, double, KL_Y_D)
/* dy loaded under t's mask in the AVX-512 clone (`vmovups (dy){k}`, mask22): prefetched in blocks.  agrad-bench kl_div
 * [2048, 2048] forward + backward (dy whole), six alternated runs: one thread (CPU) 10 574 -> 9 413 µs, two threads
 * (wall) 5 359 -> 4 858 (session 23).  The same loop in each block: the same bits. */
PAIR_BWD_BLOCKS(kl_bwd_f32, float, KL_DX, KL_DT_F)
PAIR_BWD_BLOCKS(kl_bwd_f64, double, KL_DX, KL_DT_D)

static ag_status kl_backward(ag_tensor *out, ag_tensor *gout) {
    return terms_backward(out, gout, kl_bwd_f64, kl_bwd_f32);
}

/* dy/dx = -t,  dy/dt = log t - x + 1 (both 0 at t = 0), in agrad ops */
static ag_tensor *kl_partial(ag_tensor *const *in, ag_tensor *y, const ag_attr *attr, int i) {
    (void)attr;
    ag_tensor *x = in[0], *t = in[1], *is0 = ag_eq(t, K(0));
    if (i == 0) return ag_where(is0, K(0), ag_neg(t));
    return ag_where(is0, K(0), ag_add_scalar(ag_sub(ag_log(ag_masked_fill(t, is0, 1)), x), 1));
}

/* y = t·(log t - x) (0 at t = 0);  dx = -dy·t,  dt = dy·(log t - x + 1) (both 0 at t = 0) */
static const ag_op op_kl_div = {
    .name = "kl_div", .grad_fn = "KlDivBackward0", .backward = kl_backward,
    .saves = AG_SAVES_IN0 | AG_SAVES_IN1 | AG_GOUT_ANY_STRIDES,
    .math = "y = t·(log t - x), 0 at t = 0;  dx = -dy·t,  dt = dy·(log t - x + 1) (both 0 at t = 0)",
    .backward_graph = ag__elementwise_backward_graph, .partial = kl_partial, .jvp = ag__elementwise_jvp};

ag_tensor *ag__kl_div_terms(ag_tensor *x, ag_tensor *t, bool follow) {
    return pair_forward(x, t, &op_kl_div, kl_fwd_f64, kl_fwd_f32, follow);
}

/* ---- kl_div (log_target) ------------------------------------------------------------------------- */
/* kl_div's term with log-probability targets t as one op (three nodes composed: exp, sub, mul):
 * y = e^t·(t - x), dx = -dy·e^t, dt = dy·e^t·(t - x + 1).  float32 e^t by vexpf_any, as ag_exp's. */
#define KLL_Y(EX, x, t) (EX(t) * ((t) - (x)))
#define KLL_DX(EX, x, t, dy) (-((dy) * EX(t)))
#define KLL_DT(EX, x, t, dy) ((dy) * (EX(t) * (((t) - (x)) + 1)))
#define KLL_Y_F(x, t) KLL_Y(EXP_F, x, t)
#define KLL_Y_D(x, t) KLL_Y(exp, x, t)
#define KLL_DX_F(x, t, dy) KLL_DX(EXP_F, x, t, dy)
#define KLL_DX_D(x, t, dy) KLL_DX(exp, x, t, dy)
#define KLL_DT_F(x, t, dy) KLL_DT(EXP_F, x, t, dy)
#define KLL_DT_D(x, t, dy) KLL_DT(exp, x, t, dy)
PAIR_FWD(kll_fwd_f32, float, KLL_Y_F)
PAIR_FWD(kll_fwd_f64, double, KLL_Y_D)
PAIR_BWD(kll_bwd_f32, float, KLL_DX_F, KLL_DT_F)
PAIR_BWD(kll_bwd_f64, double, KLL_DX_D, KLL_DT_D)

static ag_status kll_backward(ag_tensor *out, ag_tensor *gout) {
    return terms_backward(out, gout, kll_bwd_f64, kll_bwd_f32);
}

/* dy/dx = -e^t,  dy/dt = e^t·(t - x + 1), in agrad ops */
static ag_tensor *kll_partial(ag_tensor *const *in, ag_tensor *y, const ag_attr *attr, int i) {
    (void)attr, (void)y;
    ag_tensor *e = ag_exp(in[1]);
    return i == 0 ? ag_neg(e) : ag_mul(e, ag_add_scalar(ag_sub(in[1], in[0]), 1));
}

/* y = e^t·(t - x);  dx = -dy·e^t,  dt = dy·e^t·(t - x + 1) */
static const ag_op op_kl_div_log = {
    .name = "kl_div_log_target", .grad_fn = "KlDivBackward0", .backward = kll_backward,
    .saves = AG_SAVES_IN0 | AG_SAVES_IN1 | AG_GOUT_ANY_STRIDES,
    .math = "y = e^t·(t - x);  dx = -dy·e^t,  dt = dy·e^t·(t - x + 1)",
    .backward_graph = ag__elementwise_backward_graph, .partial = kll_partial, .jvp = ag__elementwise_jvp};

ag_tensor *ag__kl_div_log_terms(ag_tensor *x, ag_tensor *t, bool follow) {
    return pair_forward(x, t, &op_kl_div_log, kll_fwd_f64, kll_fwd_f32, follow);
}

/* ---- binary_cross_entropy_with_logits (no pos_weight) ----------------------------------------- */
/* binary_cross_entropy_with_logits's term of logits x and targets t as one elementwise op:
 * y = softplus(x) - t·x, softplus(x) = max(x, 0) + log1p(e^-|x|) (no overflow).  Composed from
 * maximum, abs, neg, exp, log1p, add, mul and sub, a step recorded eight nodes; this is one, with
 * the same float32 functions (vexpf, vlog1pf) and so the same values. */
#define SOFTPLUS_F(z) vsoftplusf(z)
#define SOFTPLUS_D(z) (((z) > 0 ? (z) : (T)0) + log1p(exp(-fabs(z))))
#define SIGMOID_F(z) vsigmoidf(z)
/* σ(z) from e^-|z|: 1/(1 + e) or e/(1 + e) */
#define SIGMOID_D(z) ((z) >= 0 ? 1 / (1 + exp(-fabs(z))) : exp(-fabs(z)) / (1 + exp(-fabs(z))))
/* y = softplus(x) - t·x, dx = dy·(σ(x) - t) */
#define BCEL_Y_F(x, t) F_MINUS_TX_Y(SOFTPLUS_F, x, t)
#define BCEL_Y_D(x, t) F_MINUS_TX_Y(SOFTPLUS_D, x, t)
#define BCEL_DX_F(x, t, dy) F_MINUS_TX_DX(SIGMOID_F, x, t, dy)
#define BCEL_DX_D(x, t, dy) F_MINUS_TX_DX(SIGMOID_D, x, t, dy)
PAIR_FWD(bcel_fwd_f32, float, BCEL_Y_F)
PAIR_FWD(bcel_fwd_f64, double, BCEL_Y_D)
PAIR_BWD(bcel_bwd_f32, float, BCEL_DX_F, NEG_X_DT)
PAIR_BWD(bcel_bwd_f64, double, BCEL_DX_D, NEG_X_DT)

static ag_status bcel_backward(ag_tensor *out, ag_tensor *gout) {
    return terms_backward(out, gout, bcel_bwd_f64, bcel_bwd_f32);
}

/* dy/dx = σ(x) - t,  dy/dt = -x, in agrad ops */
static ag_tensor *bcel_partial(ag_tensor *const *in, ag_tensor *y, const ag_attr *attr, int i) {
    (void)attr, (void)y;
    return i == 0 ? ag_sub(ag_sigmoid(in[0]), in[1]) : ag_neg(in[0]);
}

/* y = softplus(x) - t·x;  dx = dy·(σ(x) - t),  dt = -dy·x */
static const ag_op op_bce_logits = {
    .name = "binary_cross_entropy_with_logits", .grad_fn = "BinaryCrossEntropyWithLogitsBackward0",
    .backward = bcel_backward, .saves = AG_SAVES_IN0 | AG_SAVES_IN1 | AG_GOUT_ANY_STRIDES,
    .math = "y = softplus(x) - t·x;  dx = dy·(σ(x) - t),  dt = -dy·x",
    .backward_graph = ag__elementwise_backward_graph, .partial = bcel_partial, .jvp = ag__elementwise_jvp};

ag_tensor *ag__bce_logits_terms(ag_tensor *x, ag_tensor *t, bool follow) {
    return pair_forward(x, t, &op_bce_logits, bcel_fwd_f64, bcel_fwd_f32, follow);
}

/* ---- binary_cross_entropy_with_logits (pos_weight) -------------------------------------------- */
/* With pos_weight p (broadcast, usually over the last dim), PyTorch's formula as one op (nine nodes
 * composed): y = (1 - t)·x + w·softplus(-x), w = 1 + (p - 1)·t;  dx = dy·(w·σ(x) - p·t) (PyTorch's
 * form of (1 - t) - w·σ(-x)), dt = dy·((p - 1)·softplus(-x) - x), dp = dy·t·softplus(-x). */
#define PW_W(t, p) (1 + ((p) - 1) * (t))
#define PW_Y(SP, x, t, p) ((1 - (t)) * (x) + PW_W(t, p) * SP(-(x)))
#define PW_DX(SG, x, t, p, dy) ((dy) * (PW_W(t, p) * SG(x) - (p) * (t)))
#define PW_DT(SP, x, t, p, dy) ((dy) * (((p) - 1) * SP(-(x)) - (x)))
#define PW_DP(SP, x, t, p, dy) ((dy) * ((t) * SP(-(x))))
#define PW_Y_F(x, t, p) PW_Y(SOFTPLUS_F, x, t, p)
#define PW_Y_D(x, t, p) PW_Y(SOFTPLUS_D, x, t, p)
#define PW_DX_F(x, t, p, dy) PW_DX(SIGMOID_F, x, t, p, dy)
#define PW_DX_D(x, t, p, dy) PW_DX(SIGMOID_D, x, t, p, dy)
#define PW_DT_F(x, t, p, dy) PW_DT(SOFTPLUS_F, x, t, p, dy)
#define PW_DT_D(x, t, p, dy) PW_DT(SOFTPLUS_D, x, t, p, dy)
#define PW_DP_F(x, t, p, dy) PW_DP(SOFTPLUS_F, x, t, p, dy)
#define PW_DP_D(x, t, p, dy) PW_DP(SOFTPLUS_D, x, t, p, dy)
TRIPLE_FWD(pw_fwd_f32, float, PW_Y_F)
TRIPLE_FWD(pw_fwd_f64, double, PW_Y_D)
TRIPLE_BWD(pw_bwd_f32, float, PW_DX_F, PW_DT_F, PW_DP_F)
TRIPLE_BWD(pw_bwd_f64, double, PW_DX_D, PW_DT_D, PW_DP_D)

static ag_status pw_backward(ag_tensor *out, ag_tensor *gout) {
    return terms_backward(out, gout, pw_bwd_f64, pw_bwd_f32);
}

/* dy/dx = w·σ(x) - p·t,  dy/dt = (p - 1)·softplus(-x) - x,  dy/dp = t·softplus(-x), in agrad ops
 * (softplus(-x) = max(-x, 0) + log1p(e^-|x|), exact at any x) */
static ag_tensor *pw_partial(ag_tensor *const *in, ag_tensor *y, const ag_attr *attr, int i) {
    (void)attr, (void)y;
    ag_tensor *x = in[0], *t = in[1], *p = in[2];
    if (i == 0) return ag_sub(ag_mul(ag_add_scalar(ag_mul(ag_sub_scalar(p, 1), t), 1), ag_sigmoid(x)), ag_mul(p, t));
    ag_tensor *sp = ag_add(ag_relu(ag_neg(x)), ag_log1p(ag_exp(ag_neg(ag_abs(x)))));
    return i == 1 ? ag_sub(ag_mul(ag_sub_scalar(p, 1), sp), x) : ag_mul(t, sp);
}

/* y = (1 - t)·x + w·softplus(-x), w = 1 + (p - 1)·t;  dx = dy·(w·σ(x) - p·t),
 * dt = dy·((p - 1)·softplus(-x) - x),  dp = dy·t·softplus(-x) */
static const ag_op op_bce_logits_pw = {
    .name = "binary_cross_entropy_with_logits_pos_weight", .grad_fn = "BinaryCrossEntropyWithLogitsBackward0",
    .backward = pw_backward, .saves = AG_SAVES_IN0 | AG_SAVES_IN1 | AG_SAVES_IN2 | AG_GOUT_ANY_STRIDES,
    .math = "y = (1 - t)·x + w·softplus(-x), w = 1 + (p - 1)·t;  dx = dy·(w·σ(x) - p·t),  "
            "dt = dy·((p - 1)·softplus(-x) - x),  dp = dy·t·softplus(-x)",
    .backward_graph = ag__elementwise_backward_graph, .partial = pw_partial, .jvp = ag__elementwise_jvp};

ag_tensor *ag__bce_logits_pw_terms(ag_tensor *x, ag_tensor *t, ag_tensor *p, bool follow) {
    ag_tensor *in[3] = {x, t, p};
    return terms_forward(in, 3, &op_bce_logits_pw, (ag_attr){0}, pw_fwd_f64, pw_fwd_f32, follow);
}

/* ---- huber (smooth_l1 scaled) --------------------------------------------------------------------- */
/* huber_loss and smooth_l1_loss of d = x - t (input - target, broadcast) as one elementwise op: with
 * m = clamp(d, -k, k), y = c·m·(2d - m) is c·d² where |d| <= k and c·k·(2|d| - k) beyond (huber:
 * c = 1/2, k = δ; smooth_l1: k = β, c = 1/(2β)), and dy/dd = 2c·m.  Composed from abs, clamp, square,
 * sub, add and two scalings a step recorded seven nodes and ran about five times PyTorch's time;
 * session 13 made it one node on d, this one node on x and t (PyTorch's kernels are one pass each
 * way over input and target: d is no longer written and read back).  A NaN d gives NaN (the
 * clamp's comparisons fail, m = d).  attr: a = k, b = c (in the kernels ka, kb). */
#define HUBER_M(d, k) ((d) < -(k) ? -(k) : (d) > (k) ? (k) : (d))
/* m·(2d - m) as m·d + m·(d - m): d·d exactly rounded once where |d| <= k (m = d), and no 2d to
 * overflow where the loss itself does not */
#define HUBER_Y(d, k, c) ((c) * (HUBER_M(d, k) * (d) + HUBER_M(d, k) * ((d) - HUBER_M(d, k))))
/* y = c·m·(2d - m), d = x - t */
#define HUB_Y(x, t) HUBER_Y((x) - (t), ka, kb)
/* dx = dy·2c·m, dt = -dx */
#define HUB_DX(x, t, dy) ((dy) * ((2 * kb) * HUBER_M((x) - (t), ka)))
#define HUB_DT(x, t, dy) (-HUB_DX(x, t, dy))
PAIR_FWD(huber_fwd_f32, float, HUB_Y)
PAIR_FWD(huber_fwd_f64, double, HUB_Y)
PAIR_BWD(huber_bwd_f32, float, HUB_DX, HUB_DT)
PAIR_BWD(huber_bwd_f64, double, HUB_DX, HUB_DT)

static ag_status huber_backward(ag_tensor *out, ag_tensor *gout) {
    return terms_backward(out, gout, huber_bwd_f64, huber_bwd_f32);
}

/* dy/dx = 2c·clamp(x - t, -k, k) = -dy/dt, in agrad ops (the clamp passes the gradient at ±k, as
 * PyTorch's). */
static ag_tensor *huber_partial(ag_tensor *const *in, ag_tensor *y, const ag_attr *attr, int i) {
    (void)y;
    ag_tensor *g = ag_mul_scalar(ag_clamp(ag_sub(in[0], in[1]), -attr->a, attr->a), 2 * attr->b);
    return i == 0 ? g : ag_neg(g);
}

/* y = c·m·(2d - m), m = clamp(d, -k, k), d = x - t;  dx = dy·2c·m,  dt = -dy·2c·m */
static const ag_op op_huber = {
    .name = "huber", .grad_fn = "HuberLossBackward0", .backward = huber_backward,
    .saves = AG_SAVES_IN0 | AG_SAVES_IN1 | AG_GOUT_ANY_STRIDES,
    .math = "y = c·m·(2d - m), m = clamp(d, -k, k), d = x - t;  dx = dy·2c·m,  dt = -dy·2c·m",
    .backward_graph = ag__elementwise_backward_graph, .partial = huber_partial, .jvp = ag__elementwise_jvp};

ag_tensor *ag__huber_terms(ag_tensor *x, ag_tensor *t, double k, double c, bool follow) {
    ag_tensor *in[2] = {x, t};
    return terms_forward(in, 2, &op_huber, (ag_attr){.a = k, .b = c}, huber_fwd_f64, huber_fwd_f32, follow);
}

/* ---- the fused op: class-index targets over [N, C] ------------------------------------------------ */
/* Rows of [N, C] logits with class-index targets, the common case, run as one op:
 * the forward makes p = softmax(x) and each row's log-sum-exp once (ops/softmax.c's
 * row kernel) and the row's loss while the row is in cache, the adjoint is p minus the
 * (smoothed, weighted) target distribution in one pass, so a training step records one
 * node instead of about ten.  Both run over chunks of rows handed to threads as they
 * come free (ce_for_rows).
 * attr: a = ε (label_smoothing), b = the reduction's scale (1 / Σ w_y for mean,
 * else 1), i[0] = reduction, i[1] = ignore_index, i[2] = what is saved: CE_SAVED_P
 * (p) or CE_SAVED_GRAD (dl/dx for dl = 1).
 *
 * Mean and sum (a scalar loss) whose x wants a gradient save dl/dx for dl = 1 instead of p:
 * the forward turns each chunk's p into it while the chunk is in cache (the adjoint's row
 * rule, ce_grad), so that loss.backward() (dl = 1) hands the saved tensor over as x's
 * gradient without a pass when the engine frees the node after the adjoint
 * (ag__adjoint_frees_node: no retain_graph), and otherwise scales (or copies) it in one pass.
 * A step over [4096, 1000] float32 then reads x and writes dx once (32 MB) where saving p
 * moved 64 MB (x, p written, p read, dx).  The same bits as from p for dl = 1 (and any power
 * of two); another dl rounds twice (dl times the float32 dl/dx for dl = 1),
 * within a float32 ulp.
 * reduction 'none' keeps p: its dl is a vector.
 *
 * Why p (or dl/dx) is saved rather than recomputed from x and the rows' log-sum-exp: exp is
 * the bound, not memory.  On [4096, 1000] float32, one thread, recomputing p in the adjoint
 * (read x, write dx: 48 MB moved in all instead of 64) took 6.1 ms (3.5 forward, 2.6 adjoint;
 * about 5.0 with the forward's sum in sixteen accumulators)
 * against 4.1-4.3 with p saved. */
enum { CE_SAVED_P, CE_SAVED_GRAD };

/* Rows per chunk: about CE_CHUNK elements (128 KiB of float32) or more, so that a thread holding
 * up the others (preempted on a busy machine) leaves them whole chunks to take, but no more than
 * CE_CHUNKS_PER_THREAD chunks a thread: each chunk's first row costs the fused kernel an extra read
 * for its max (the later rows' maxima come with the exp pass).  [4096, 1000] float32 on two threads
 * (both CPUs under chrt), six alternated pairs: 128 chunks of 32 rows 1 481 us, 32 of 128 rows 1 414. */
#define CE_CHUNK 32768
#define CE_CHUNKS_PER_THREAD 16
/* From this many elements the rows go to every thread, though below the elementwise threshold
 * (AG_PAR_MIN_ELEMS, 2^17): a row costs an exp an element and more (~0.6 ns an element on one
 * thread), so a fork of spinning threads pays from ~20 µs of work; 4x more when waiting threads
 * sleep (OMP_WAIT_POLICY=passive: each fork wakes them), as ops/matmul.c's thresholds.  Then the
 * rows are cut in one chunk a thread (ce_rows_per_chunk).  bench_steps' mlp_512_b64 loss ([64, 512],
 * float32, forward with its saved gradient; bench_step_parts), 2 threads, wall, chrt -f 10, AMD
 * Zen 5 host, two series of six alternated pairs: 34.8 -> 21.3 µs, 33.9 -> 25.2.  At 2^14 it did
 * not pay (agrad-bench cross_entropy [32, 512] fwd+bwd, three pairs, 15.6-16.3 -> 16.0-21.1 µs). */
#define CE_PAR_MIN_ELEMS ((int64_t)1 << (ag__omp_passive ? 17 : 15))

typedef void (*ce_rows_fn)(void *ctx, int64_t lo, int64_t hi);

/* The rows per chunk of fn over [N, C] on nt threads: at least one, at least CE_CHUNK elements
 * unless that would leave a thread without a chunk (then N / nt rounded up: one chunk a thread),
 * and at least N / (CE_CHUNKS_PER_THREAD·nt) rows */
static int64_t ce_rows_per_chunk(int64_t N, int64_t C, int nt) {
    int64_t per = C >= CE_CHUNK ? 1 : CE_CHUNK / (C > 0 ? C : 1);
    const int64_t few = N / ((int64_t)CE_CHUNKS_PER_THREAD * nt);
    if (per > (N + nt - 1) / nt) per = (N + nt - 1) / nt; /* few rows (CE_PAR_MIN_ELEMS): one chunk a thread */
    if (per < 1) per = 1;
    return per > few ? per : few;
}

/* fn over the rows [0, N) of [N, C], in chunks taken by the threads as they come free (each
 * row's result depends on the row alone: the same bits on any thread count), on every thread
 * from CE_PAR_MIN_ELEMS elements; one thread calls fn once. */
static void ce_for_rows(int64_t N, int64_t C, ce_rows_fn fn, void *ctx) {
    const int64_t n = N * (C > 0 ? C : 1);
    int nt = N > 0 ? ag__threads_for(n >= CE_PAR_MIN_ELEMS && n < AG_PAR_MIN_ELEMS ? AG_PAR_MIN_ELEMS : n) : 1;
    const int64_t per = ce_rows_per_chunk(N, C, nt > 1 ? nt : 1);
    const int64_t chunks = N / per + (N % per != 0);
    if (nt > chunks) nt = (int)chunks;
    if (nt <= 1) { /* no parallel region: even a one-thread team costs a microsecond */
        if (N > 0) fn(ctx, 0, N);
        return;
    }
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
    for (int64_t c = 0; c < chunks; c++) fn(ctx, c * per, c + 1 == chunks ? N : (c + 1) * per);
}

/* The class weights as doubles (1 without weights) in a scratch array of C entries, and their
 * sum; NULL on ENOMEM.  Free with free_weights. */
static double *class_weights(const ag_tensor *w, int64_t C, double *W) {
    double *wv = ag__cache_alloc(sizeof(double) * (size_t)(C ? C : 1));
    if (!wv) return NULL;
    *W = 0;
    for (int64_t k = 0; k < C; k++) *W += wv[k] = w ? ag__loss_at(w, k) : 1.0;
    return wv;
}
static void free_weights(double *wv, int64_t C) { ag__cache_free(wv, sizeof(double) * (size_t)(C ? C : 1)); }

/* What the gradient's rows read: gx [N, C] written from p (gx may be p) and the targets t */
typedef struct ce_grad_args {
    void *gx;
    const void *p;
    const int64_t *t;
    const ag_tensor *gout; /* dl; NULL: dl = 1 */
    int64_t C;
    const double *wv;
    double W;
    const ag_attr *at;
} ce_grad_args;

/* One row of the gradient: gr[k] = a (pr[k]·rr - [k = y]) + β (W pr[k]·rr - w_k) with a = coef (1 - ε) w_y,
 * β = coef ε / C (rr = 1: pr is p; gr may be pr) */
#define CE_GRAD_ROW(T, gr, pr, rr, C, y, coef, eps, W, wv)                                                  \
    do {                                                                                                    \
        const double a_ = (coef) * (1 - (eps)) * (wv)[y], b_ = (coef) * (eps) / (double)(C);                \
        if ((eps) == 0)                                                                                     \
            for (int64_t k_ = 0; k_ < (C); k_++) (gr)[k_] = (T)(a_ * ((pr)[k_] * (rr)));                    \
        else                                                                                                \
            for (int64_t k_ = 0; k_ < (C); k_++)                                                            \
                (gr)[k_] = (T)(a_ * ((pr)[k_] * (rr)) + b_ * ((W) * ((pr)[k_] * (rr)) - (wv)[k_]));         \
        (gr)[y] = (T)((gr)[y] - a_);                                                                        \
    } while (0)

/* g[n, k] = coef_n ((1 - ε) w_y (p_k - [k = y]) + (ε / C)(W p_k - w_k)), 0 for ignored rows, coef_n = dl_n·b */
#define CE_GRAD(NAME, T, CLONES)                                                                            \
    CLONES static void NAME##_rows(T *gx, const T *p, const int64_t *t, const ag_tensor *gout, int64_t C, \
                                   const double *wv, double W, const ag_attr *at, int64_t lo, int64_t hi) { \
        const bool per_row = gout && at->i[0] == AG_REDUCTION_NONE;                                         \
        const double g0 = per_row ? 0 : (gout ? ag__read(gout, 0) : 1.0) * at->b;                          \
        for (int64_t n = lo; n < hi; n++) {                                                                 \
            const int64_t y = t[n];                                                                         \
            T *gr = gx + n * C;                                                                             \
            if (y == at->i[1]) {                                                                            \
                for (int64_t k = 0; k < C; k++) gr[k] = 0;                                                  \
                continue;                                                                                   \
            }                                                                                               \
            CE_GRAD_ROW(T, gr, p + n * C, (T)1, C, y, per_row ? ag__read(gout, n) * at->b : g0, at->a, W, wv); \
        }                                                                                                   \
    }                                                                                                       \
    static void NAME(void *ctx, int64_t lo, int64_t hi) {                                                   \
        const ce_grad_args *g = ctx;                                                                        \
        NAME##_rows(g->gx, g->p, g->t, g->gout, g->C, g->wv, g->W, g->at, lo, hi);                          \
    }
CE_GRAD(ce_grad_f32, float, AG_VEC_CLONES)
CE_GRAD(ce_grad_f64, double, AG_VEC_CLONES)
/* rows of CE_WIDE_ROW classes and more: the AVX-512 clone too ([4096, 1000], one thread: the
 * float64 products twice as fast in L1; shorter rows would leave more to the scalar tails) */
CE_GRAD(ce_grad_f32_wide, float, AG_VEC_CLONES_512)
CE_GRAD(ce_grad_f64_wide, double, AG_VEC_CLONES_512)
#define CE_WIDE_ROW AG__SOFTMAX_WIDE_ROW /* where ce_wide_rows_f32 repeats the softmax _wide kernel's bits */

/* the gradient's row kernel for x */
static ce_rows_fn ce_grad_fn(const ag_tensor *x) {
    const bool wide = x->shape[1] >= CE_WIDE_ROW;
    return x->dtype == AG_F64 ? (wide ? ce_grad_f64_wide : ce_grad_f64) : wide ? ce_grad_f32_wide : ce_grad_f32;
}

/* What the scaling's rows read: gx [N, C] = dl·d, d the saved dl/dx for dl = 1 (gx may be d) */
typedef struct ce_scale_args {
    void *gx;
    const void *d;
    int64_t C;
    double dl;
} ce_scale_args;

/* gx = dl·d (one loop over the chunk's elements: the AVX-512 clone too) */
#define CE_SCALE(NAME, T)                                                                                   \
    AG_VEC_CLONES_512 static void NAME##_rows(T *gx, const T *d, int64_t C, double dl, int64_t lo, int64_t hi) { \
        for (int64_t i = lo * C; i < hi * C; i++) gx[i] = (T)(dl * d[i]);                                   \
    }                                                                                                       \
    static void NAME(void *ctx, int64_t lo, int64_t hi) {                                                   \
        const ce_scale_args *s = ctx;                                                                       \
        NAME##_rows(s->gx, s->d, s->C, s->dl, lo, hi);                                                      \
    }
CE_SCALE(ce_scale_f32, float)
CE_SCALE(ce_scale_f64, double)

/* gx's rows whose target is `ignore` set to 0: an ignored row's gradient is 0 for any dl, as
 * PyTorch's, where dl·0 would be NaN for an infinite or NaN dl.  AG_OK or AG_ERR_NOMEM. */
static ag_status zero_ignored_rows(ag_tensor *gx, ag_tensor *t, int64_t ignore) {
    ag_tensor *tc = ag__contig_or_copy(t);
    if (!tc) return AG_ERR_NOMEM;
    const int64_t N = gx->shape[0], C = gx->shape[1], *tv = (const int64_t *)ag__ptr(tc);
    const size_t row = (size_t)C * ag__esize(gx->dtype);
    for (int64_t n = 0; n < N; n++)
        if (tv[n] == ignore) memset((char *)ag__ptr(gx) + (size_t)n * row, 0, row);
    ag_release(tc);
    return AG_OK;
}

/* dx = dl·(the saved dl/dx for dl = 1), a scalar dl: the saved tensor itself when dl = 1 and the
 * node goes after this adjoint, scaled in place when only the latter, else written anew. */
static ag_status ce_backward_saved_grad(ag_tensor *out, ag_tensor *gout) {
    ag_tensor *x = out->in[0], *d = out->saved;
    const double dl = ag__read(gout, 0);
    ag_tensor *gx = d;
    if (ag__adjoint_frees_node) out->saved = NULL; /* the node's last use of d: it becomes dx */
    else if (!(gx = ag__new_unowned(x->dtype, 2, x->shape, false))) return AG_ERR_NOMEM;
    if (gx != d || dl != 1) {
        ce_scale_args args = {ag__ptr(gx), ag__ptr(d), x->shape[1], dl};
        ce_for_rows(x->shape[0], x->shape[1], x->dtype == AG_F64 ? ce_scale_f64 : ce_scale_f32, &args);
    }
    if (!isfinite(dl) && zero_ignored_rows(gx, out->in[1], out->attr.i[1]) != AG_OK) {
        ag__release(gx);
        return AG_ERR_NOMEM;
    }
    return ag__accumulate(x, gx);
}

static ag_status ce_backward(ag_tensor *out, ag_tensor *gout) {
    ag_tensor *x = out->in[0], *t = out->in[1], *w = out->nin > 2 ? out->in[2] : NULL;
    if (!ag__wants(out, 0)) return AG_OK;
    if (out->attr.i[2] == CE_SAVED_GRAD) return ce_backward_saved_grad(out, gout);
    const int64_t N = x->shape[0], C = x->shape[1];
    double W;
    double *wv = class_weights(w, C, &W);
    ag_tensor *tc = wv ? ag__contig_or_copy(t) : NULL;
    ag_tensor *gx = tc ? ag__new_unowned(x->dtype, 2, x->shape, false) : NULL;
    if (!gx) {
        ag_release(tc);
        free_weights(wv, C);
        return AG_ERR_NOMEM;
    }
    ce_grad_args args = {ag__ptr(gx), ag__ptr(out->saved), (const int64_t *)ag__ptr(tc), gout, C, wv, W, &out->attr};
    ce_for_rows(N, C, ce_grad_fn(x), &args);
    ag_release(tc);
    free_weights(wv, C);
    return ag__accumulate(x, gx);
}

/* What the forward's rows read and write: p and l (lse first, then the rows' losses) from x,
 * then with grad p turned into dl/dx for dl = 1 (grad's gx and p are p's data) */
typedef struct ce_fwd_args {
    const ag_tensor *x;
    ag_tensor *p;
    const int64_t *t;
    const double *wv;
    double eps;
    int64_t ignore;
    double *l;
    ce_grad_args *grad; /* NULL: p stays */
    bool fused;         /* float32 rows of CE_WIDE_ROW and more with grad, not the reference mode: ce_wide_rows_f32 */
} ce_fwd_args;

/* ce_wide_rows_f32's exp pass runs as ce_exp_sum_avx512 where AVX-512 runs; 0 turns it off */
#define CE_EXP_SUM_AVX512 1
/* ce_exp_sum_avx512 prefetches the next row's x CE_PREFETCH_AHEAD bytes past its loads (the row after it) and its
 * output d CE_PREFETCH_OUT_AHEAD bytes past its stores (prefetcht0 both; 0: off).  [4096, 1000] float32, one thread, CPU time,
 * bench_steps xent: both 1 614 -> 1 368 µs (five runs' medians), the read's alone 1 548, the write's alone no gain;
 * 7 alternated pairs 1 630 -> 1 419 (session 21).  A prefetch never faults: past the last row it reads nothing the
 * results depend on.  No value changes. */
#define CE_PREFETCH_AHEAD 4096
#define CE_PREFETCH_OUT_AHEAD 4096
/* ce_wide_rows_f32's gradient rows without smoothing whose a_ = coef·w_y (CE_GRAD_ROW) is a float32 (no weights and a
 * 'sum', or a 'mean' over a power of two of rows: a training batch) take (float)(a_·(double)(p·rr)) as the float32
 * product (p·rr)·a_, the same bits: both round the exact product once (two float32 significands make at most 48
 * bits, exact in a float64), without the widening and narrowing conversions.  0 turns it off. */
#define CE_GRAD_F32_PRODUCT 1
/* With AVX-512, ce_wide_rows_f32 makes those products of a row in the next row's exp loop (ce_exp_sum_avx512's g; the
 * chunk's last row in a pass of its own), the same products in the same order: no value changes.  bench_steps
 * xent_4096x1000, six alternated runs (session 23): one thread (CPU) 1 406 -> 1 312 µs, two 740 -> 723 (a standalone
 * copy of the loop 1 158 -> 1 000).  0: each row's products in a pass after its sum. */
#define CE_GRAD_IN_NEXT_ROW 1
/* ce_wide_rows_f32's Σ e over a row adds the four exponentials 16 apart in each block of 64 in float32 first
 * (core/sum_pairs.h's AG_SUM16_QUADS_THEN16): a quarter of the conversions to float64 and of the float64 additions, which bounded the exp loop
 * (bench_steps xent_4096x1000, six alternated runs: one thread (CPU) 1 312 -> 1 077 µs, two threads (wall) 723 -> 606;
 * 16 apart in pairs, core/sum_pairs.h's order, took a standalone copy of the loop 1 000 -> 863, quads 788, eights
 * 797).  Each term is rounded at most
 * twice in float32 (a tree of two levels), so Σ is within 2^-23·Σ plus float64's rounding of the exact sum of the
 * float32 exponentials (within (n/64 + 16)·2^-53·Σ): lse = m + log Σ moves by at most 2^-23 (+ 2^-52) and 1/Σ by
 * 2^-23 relative of AG_SUM16's (test_losses' test_wide_rows_fused: the bound).  The per-row path (ops/softmax.c's
 * fast_row_lse_f32_wide) sums in the same order since session 23 (smq23), so the fused rows give its bits
 * (test_wide_rows_fused, test_saved_gradient).  0: AG_SUM16's order (those tests then fail). */
#define CE_SUM_QUADS 1

#ifdef AG_X86_INTRINSICS
/* Sixteen terms of ce_exp_sum_body at k: e = vexpf_fma16(x - m) stored to d, the next row's max and NaN flag from xn,
 * and with scale the previous row's g = (g·gr)·ga; returns e */
__attribute__((target("avx512f"), always_inline)) static inline __m512 ce_exp_step(const float *x, __m512 mv, float *d,
                                                                                  const float *xn, __m512 *mx,
                                                                                  __mmask16 *bad, float *g, __m512 grv,
                                                                                  __m512 gav, bool scale, int64_t k) {
    const __m512 e = vexpf_fma16(_mm512_sub_ps(_mm512_loadu_ps(x + k), mv)), v = _mm512_loadu_ps(xn + k);
    if (CE_PREFETCH_AHEAD) _mm_prefetch((const char *)(xn + k) + CE_PREFETCH_AHEAD, _MM_HINT_T0);
    if (CE_PREFETCH_OUT_AHEAD) _mm_prefetch((const char *)(d + k) + CE_PREFETCH_OUT_AHEAD, _MM_HINT_T0);
    _mm512_storeu_ps(d + k, e);
    if (scale) _mm512_storeu_ps(g + k, _mm512_mul_ps(_mm512_mul_ps(_mm512_loadu_ps(g + k), grv), gav));
    *mx = _mm512_max_ps(*mx, v);
    *bad |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    return e;
}

/* lo and hi (float64, eight lanes each) += the low and high eight floats of e */
#define CE_WIDEN_ADD(lo, hi, e)                                                                                     \
    do {                                                                                                            \
        lo = _mm512_add_pd(lo, _mm512_cvtps_pd(_mm512_castps512_ps256(e)));                                         \
        hi = _mm512_add_pd(hi, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(e), 1))));  \
    } while (0)

/* ce_wide_rows_f32's exp pass and its sum in one AVX-512 loop over a row of n floats, the same bits as its C loop:
 * d = vexpf_fma16(x - m) (vexpf_fma's bits), s = Σ d in float64 in AG_SUM16_QUADS_THEN16's order (AG_SUM16's with
 * CE_SUM_QUADS 0: lane k of two float64 vectors takes the terms k mod 16, the low eight of each sixteen in the first;
 * the last n mod 16 into the tail in order; the accumulators added 8, 4, 2 and 1 apart, then the tail), and the next
 * row xn's max *mn (any sign of a zero max: x - m and m + log s do not tell them apart) with *nan set where xn holds a
 * NaN.  Returns s.  The C loop's sum re-read d in a second pass, and its scalar epilogue took a row's last n mod 16
 * exponentials one at a time.
 * With g (the previous row's dl/dx, n floats; scale true) the same loop scales it, g = (g·gr)·ga in float32 (the
 * gradient's pass of CE_GRAD_F32_PRODUCT, the same products in the same order): its loads, products and stores fill
 * the exp's idle slots, where a pass of its own after the row's sum cost 14% of the row ([4096, 1000], one thread). */
__attribute__((target("avx512f"), always_inline)) static inline double ce_exp_sum_body(const float *x, float m, float *d,
                                                                                      int64_t n, const float *xn,
                                                                                      float *mn, int *nan, float *g,
                                                                                      float gr, float ga, bool scale) {
    const __m512 mv = _mm512_set1_ps(m), grv = _mm512_set1_ps(gr), gav = _mm512_set1_ps(ga);
    __m512d lo = _mm512_setzero_pd(), hi = _mm512_setzero_pd();
    __m512 mx = _mm512_set1_ps(-INFINITY);
    __mmask16 bad = 0;
    int64_t k = 0;
    for (; CE_SUM_QUADS && k + 64 <= n; k += 64) {
        const __m512 e0 = ce_exp_step(x, mv, d, xn, &mx, &bad, g, grv, gav, scale, k),
                     e1 = ce_exp_step(x, mv, d, xn, &mx, &bad, g, grv, gav, scale, k + 16),
                     e2 = ce_exp_step(x, mv, d, xn, &mx, &bad, g, grv, gav, scale, k + 32),
                     e3 = ce_exp_step(x, mv, d, xn, &mx, &bad, g, grv, gav, scale, k + 48);
        const __m512 q = _mm512_add_ps(_mm512_add_ps(e0, e1), _mm512_add_ps(e2, e3));
        CE_WIDEN_ADD(lo, hi, q);
    }
    for (; k + 16 <= n; k += 16) {
        const __m512 e = ce_exp_step(x, mv, d, xn, &mx, &bad, g, grv, gav, scale, k);
        CE_WIDEN_ADD(lo, hi, e);
    }
    double tail = 0;
    if (k < n) {
        const __mmask16 mk = (__mmask16)((1u << (n - k)) - 1);
        const __m512 v = _mm512_maskz_loadu_ps(mk, xn + k);
        _mm512_mask_storeu_ps(d + k, mk, vexpf_fma16(_mm512_sub_ps(_mm512_maskz_loadu_ps(mk, x + k), mv)));
        if (scale)
            _mm512_mask_storeu_ps(g + k, mk, _mm512_mul_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(mk, g + k), grv), gav));
        mx = _mm512_mask_max_ps(mx, mk, mx, v);
        bad |= _mm512_mask_cmp_ps_mask(mk, v, v, _CMP_UNORD_Q);
        for (; k < n; k++) tail += (double)d[k];
    }
    double a[8];
    _mm512_storeu_pd(a, _mm512_add_pd(lo, hi));
    for (int w = 4; w; w /= 2)
        for (int j = 0; j < w; j++) a[j] += a[j + w];
    *mn = _mm512_reduce_max_ps(mx);
    *nan = bad != 0;
    return a[0] + tail;
}
__attribute__((target("avx512f"))) static double ce_exp_sum_avx512(const float *x, float m, float *d, int64_t n,
                                                                   const float *xn, float *mn, int *nan, float *g,
                                                                   float gr, float ga) {
    return g ? ce_exp_sum_body(x, m, d, n, xn, mn, nan, g, gr, ga, true)
             : ce_exp_sum_body(x, m, d, n, xn, mn, nan, NULL, 0, 0, false);
}
#endif

/* A row of ce_wide_rows_f32's gradient waiting for its float32 products (CE_GRAD_F32_PRODUCT): g = (g·rr)·af, then
 * g[y] = (float)(g[y] - a).  g NULL: none. */
typedef struct ce_pending {
    float *g;
    float rr, af;
    int64_t y;
    double a;
} ce_pending;

/* q's row finished: its products over C classes unless scaled (by the exp pass of the row after it), then its target */
static inline void ce_pending_finish(ce_pending *q, int64_t C, bool scaled) {
    if (!q->g) return;
    if (!scaled)
        for (int64_t k = 0; k < C; k++) q->g[k] = q->g[k] * q->rr * q->af;
    q->g[q->y] = (float)(q->g[q->y] - q->a);
    q->g = NULL;
}

/* The forward of float32 rows [lo, hi) of C >= CE_WIDE_ROW classes when dl/dx is saved: ops/softmax.c's
 * row kernel for the fused cross-entropy (fast_row_lse_f32_wide: e = vexpf_fma(x - m), its Σ in
 * AG_SUM16_QUADS_THEN16's order (CE_SUM_QUADS), p = e·(float)(1/Σ), lse = m + log Σ; the same bits), but the exp
 * loop also takes the next row's max,
 * whose loads from memory then overlap the exp's arithmetic, and p goes straight into dl/dx (CE_GRAD_ROW
 * with rr = 1/Σ: the same bits as from p) in the pass that scaled it; with AVX-512 and the float32
 * products that pass is the next row's exp loop (ce_pending, ce_exp_sum_avx512's g).  A row with a NaN or
 * an infinity takes ag__softmax_rows_lse (the reference kernel) and ce_grad.  [4096, 1000] forward +
 * backward, one thread: 6.7 ms -> 4.5 against the two kernels one after the other over each chunk; with
 * AVX-512 the exp and the sum in one loop of vexpf_fma16 (ce_exp_sum_avx512) and float32 gradient products
 * where they give the same bits (CE_GRAD_F32_PRODUCT): 2.46 ms -> 1.56 (session 19; vexpf's separate
 * roundings before). */
AG_VEC_CLONES_512 static void ce_wide_rows_f32(const ce_fwd_args *f, int64_t lo, int64_t hi) {
    const ce_grad_args *g = f->grad;
    const int64_t C = g->C;
    const float *x = (const float *)ag__ptr(f->x);
    float *d = g->gx;
    const double coef = g->at->b, eps = g->at->a;
    int bad;
    float m = ag__softmax_row_max_f32(x + lo * C, C, &bad);
    ce_pending q = {NULL, 0, 0, 0, 0};
#ifdef AG_X86_INTRINSICS
    const bool v512 = CE_EXP_SUM_AVX512 && AG_VEC_512();
#else
    const bool v512 = false;
#endif
    for (int64_t r = lo; r < hi; r++) {
        const float *restrict xr = x + r * C, *restrict xn = r + 1 < hi ? xr + C : xr;
        float *restrict dr = d + r * C;
        float mn = -INFINITY;
        int nan_n = 0;
        if (bad || !isfinite(m)) {
            ce_pending_finish(&q, C, false);
            ag__softmax_rows_lse(f->x, f->p, f->l, r, r + 1);
            ce_grad_fn(f->x)(f->grad, r, r + 1);
            mn = ag__softmax_row_max_f32(xn, C, &nan_n);
        } else {
            double s;
            bool scaled = false;
#ifdef AG_X86_INTRINSICS
            if (v512) {
                s = ce_exp_sum_avx512(xr, m, dr, C, xn, &mn, &nan_n, q.g, q.rr, q.af);
                scaled = q.g != NULL;
            } else
#endif
            {
#pragma omp simd reduction(max : mn) reduction(| : nan_n)
                for (int64_t k = 0; k < C; k++) {
                    dr[k] = vexpf_fma(xr[k] - m);
                    mn = xn[k] > mn ? xn[k] : mn;
                    nan_n |= xn[k] != xn[k];
                }
                AG_SIMD_EXTREME_FIX(float, mn, C, k, xn[k], AG_GREATER, -INFINITY);
                if (CE_SUM_QUADS) AG_SUM16_QUADS_THEN16(s, C, k, float, dr[k]);
                else AG_SUM16(s, C, k, (double)dr[k]);
            }
            ce_pending_finish(&q, C, scaled);
            const float rr = (float)(1 / s);
            const int64_t y = g->t[r];
            const double a = coef * (1 - eps) * g->wv[y != g->at->i[1] ? y : 0];
            if (y == g->at->i[1])
                for (int64_t k = 0; k < C; k++) dr[k] = 0;
            else if (CE_GRAD_F32_PRODUCT && eps == 0 && (double)(float)a == a) {
                /* CE_GRAD_ROW's a_ as a float32: its product in float32, the same bits */
                q = (ce_pending){dr, rr, (float)a, y, a};
                if (!v512 || CE_GRAD_IN_NEXT_ROW == 0) ce_pending_finish(&q, C, false);
            } else
                CE_GRAD_ROW(float, dr, dr, rr, C, y, coef, eps, g->W, g->wv);
            f->l[r] = (double)m + log(s);
        }
        m = mn, bad = nan_n;
    }
    ce_pending_finish(&q, C, false);
}

/* l_n = (1 - ε) w_y (lse_n - x_ny) + (ε / C) Σ_k w_k (lse_n - x_nk), 0 where ignored, over l_n = lse_n */
#define CE_LOSS(NAME, T)                                                                                    \
    AG_VEC_CLONES static void NAME(const T *x, const int64_t *t, double *l, int64_t C, const double *wv,    \
                                   double eps, int64_t ignore, int64_t lo, int64_t hi) {                    \
        for (int64_t n = lo; n < hi; n++) {                                                                 \
            const int64_t y = t[n];                                                                         \
            const T *xr = x + n * C;                                                                        \
            const double lse = l[n];                                                                        \
            double ln = 0;                                                                                  \
            if (y != ignore) {                                                                              \
                ln = (1 - eps) * wv[y] * (lse - (double)xr[y]);                                             \
                if (eps > 0) {                                                                              \
                    double smooth;                                                                          \
                    AG_SUM8(smooth, C, k, wv[k] * (lse - (double)xr[k]));                                   \
                    ln += eps / (double)C * smooth;                                                         \
                }                                                                                           \
            }                                                                                               \
            l[n] = ln;                                                                                      \
        }                                                                                                   \
    }
CE_LOSS(ce_loss_f32, float)
CE_LOSS(ce_loss_f64, double)

/* rows [lo, hi): p and lse, then the losses and with grad dl/dx, the rows still in cache */
static void ce_fwd_rows(void *ctx, int64_t lo, int64_t hi) {
    const ce_fwd_args *f = ctx;
    const int64_t C = f->x->shape[1];
    if (f->fused) ce_wide_rows_f32(f, lo, hi);
    else ag__softmax_rows_lse(f->x, f->p, f->l, lo, hi);
    if (f->x->dtype == AG_F64) ce_loss_f64((const double *)ag__ptr(f->x), f->t, f->l, C, f->wv, f->eps, f->ignore, lo, hi);
    else ce_loss_f32((const float *)ag__ptr(f->x), f->t, f->l, C, f->wv, f->eps, f->ignore, lo, hi);
    if (f->grad && !f->fused) ce_grad_fn(f->x)(f->grad, lo, hi);
}

static ag_status ce_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin);
static ag_tensor *ce_jvp(ag_tensor *out, ag_tensor *const *tin);

/* l_n = (1 - ε) w_y (lse_n - x_ny) + (ε / C) Σ_k w_k (lse_n - x_nk), lse_n = log Σ_k exp x_nk, reduced;
 * dx_nk = dl_n ((1 - ε) w_y (p_nk - [k = y]) + (ε / C)(W p_nk - w_k)), p = softmax(x), W = Σ_k w_k */
static const ag_op op_cross_entropy = {
    .name = "cross_entropy", .grad_fn = "CrossEntropyLossBackward0", .backward = ce_backward,
    .saves = AG_SAVES_IN1 | AG_SAVES_IN2,
    .math = "l_n = (1 - ε)·w_y·(lse_n - x_ny) + (ε/C)·Σ_k w_k·(lse_n - x_nk), lse_n = log Σ_k exp x_nk, "
            "then reduced;  dx_nk = dl_n·((1 - ε)·w_y·(p_nk - [k = y]) + (ε/C)·(W·p_nk - w_k)), p = softmax(x), "
            "W = Σ_k w_k",
    .backward_graph = ce_backward_graph, .jvp = ce_jvp,
    .tangent = "l̇_n = Σ_k ((1 - ε)·w_y·(p_nk - [k = y]) + (ε/C)·(W·p_nk - w_k))·ẋ_nk, then reduced as l (no tangent "
               "through w)"};

/* Checks every target (ignore_index or in [0, C)), then l as above for x [N, C] and t [N]. */
ag_tensor *ag__cross_entropy_rows(const char *loss, ag_tensor *x, ag_tensor *t, ag_tensor *w, ag_reduction reduction,
                                  int64_t ignore_index, double label_smoothing) {
    const int64_t N = x->shape[0], C = x->shape[1];
    /* p below takes x's size: x (maybe an expanded view) must be one that can be allocated,
     * which also keeps the C weights and N sums below within size_t. */
    if (ag__check_alloc(loss, 2, x->shape, x->dtype)) return NULL;
    double W;
    double *wv = class_weights(w, C, &W);
    if (!wv) return NULL;
    double total = 0; /* Σ w_y over the targets not ignored */
    for (int64_t n = 0; n < N; n++) {
        int64_t v = ag__loss_index_at(t, n);
        if (v == ignore_index) continue;
        if (v < 0 || v >= C) {
            free_weights(wv, C);
            return ag__fail_null(AG_ERR_INDEX, "%s: target %lld is out of bounds for %lld classes (at flat index %lld)",
                                 loss, (long long)v, (long long)C, (long long)n);
        }
        total += wv[v];
    }
    const bool per_row = reduction == AG_REDUCTION_NONE;
    const size_t l_bytes = sizeof(double) * (size_t)(N ? N : 1);
    ag_tensor *xc = ag__contig_or_copy(x), *tc = xc ? ag__contig_or_copy(t) : NULL;
    ag_tensor *p = tc ? ag__new_unowned(x->dtype, 2, x->shape, false) : NULL;
    double *l = p ? ag__cache_alloc(l_bytes) : NULL;
    ag_tensor *y = l ? ag__new(x->dtype, per_row ? 1 : 0, &N) : NULL;
    if (!y) {
        ag_release(xc);
        ag_release(tc);
        ag_release(p);
        ag__cache_free(l, l_bytes);
        free_weights(wv, C);
        return NULL;
    }
    const double eps = label_smoothing;
    const double scale = reduction == AG_REDUCTION_MEAN ? 1 / total : 1;
    /* the node's attributes; a scalar loss whose x wants a gradient saves dl/dx for dl = 1 */
    const ag_attr at = {.a = eps, .b = scale, .i = {reduction, ignore_index,
                                                    !per_row && ag__needs_grad1(x) ? CE_SAVED_GRAD : CE_SAVED_P}};
    ce_grad_args grad = {ag__ptr(p), ag__ptr(p), (const int64_t *)ag__ptr(tc), NULL, C, wv, W, &at};
    const bool fast = ag__softmax_fast(); /* the reference modes: the softmax's kernels alone */
    ce_fwd_args args = {xc, p, (const int64_t *)ag__ptr(tc), wv, eps, ignore_index, l,
                        at.i[2] == CE_SAVED_GRAD ? &grad : NULL,
                        at.i[2] == CE_SAVED_GRAD && fast && x->dtype == AG_F32 && C >= CE_WIDE_ROW};
    ce_for_rows(N, C, ce_fwd_rows, &args);
    double sum = 0; /* in row order: the same bits on any thread count */
    for (int64_t n = 0; n < N; n++) sum += l[n];
    if (per_row && x->dtype == AG_F64) memcpy(ag__ptr(y), l, sizeof(double) * (size_t)N);
    else if (per_row)
        for (int64_t n = 0; n < N; n++) ((float *)ag__ptr(y))[n] = (float)l[n];
    ag__cache_free(l, l_bytes);
    free_weights(wv, C);
    ag_release(xc);
    ag_release(tc);
    if (!per_row) ag__write(y, 0, sum * scale); /* mean over no target: 0 / 0 = NaN, as PyTorch */
    ag_tensor *in[3] = {x, t, w};
    y = ag__record_saved(y, &op_cross_entropy, in, w ? 3 : 2, p);
    if (y && y->op) y->attr = at;
    return ag__check_finite(y, op_cross_entropy.name);
}

/* ---- cross_entropy's rules in differentiable ops (create_graph, forward mode) ------------------------ */
/* dl/dx as [N, C] in agrad ops, each row n scaled by coef (a shape broadcasting to [N, 1]):
 * coef_n·[y_n ≠ ignore]·((1 - ε)·w_y·(p_nk - [k = y]) + (ε/C)·(W·p_nk - w_k)), p = softmax(x). */
static ag_tensor *ce_dx(ag_tensor *out, ag_tensor *coef) {
    ag_tensor *x = out->in[0], *t = out->in[1], *w = out->nin > 2 ? out->in[2] : NULL;
    const int64_t C = x->shape[1];
    const double eps = out->attr.a;
    ag_tensor *ty = ag_unsqueeze(t, 1); /* [N, 1] */
    ag_tensor *onehot = ag_to_dtype(ag_eq(ag_reshape(ag_arange(0, (double)C, 1, AG_I64), AG_SHAPE(1, C)), ty), x->dtype);
    ag_tensor *kept = ag_to_dtype(ag_ne(ty, ag_scalar((double)out->attr.i[1], AG_I64)), x->dtype);
    ag_tensor *p = ag_softmax(x, 1);
    ag_tensor *wr = w ? ag_reshape(ag_to_dtype(w, x->dtype), AG_SHAPE(1, C)) : NULL;
    ag_tensor *wy = w ? ag_sum_dims(ag_mul(onehot, wr), 1, (int[]){1}, true) : ag_scalar(1, x->dtype);
    ag_tensor *g = ag_mul(ag_mul_scalar(wy, 1 - eps), ag_sub(p, onehot));
    if (eps != 0) {
        ag_tensor *W = w ? ag_sum(ag_to_dtype(w, x->dtype)) : ag_scalar((double)C, x->dtype);
        ag_tensor *smooth = w ? ag_sub(ag_mul(W, p), wr) : ag_sub(ag_mul(W, p), ag_scalar(1, x->dtype));
        g = ag_add(g, ag_mul_scalar(smooth, eps / (double)C));
    }
    return ag_mul(g, ag_mul(kept, coef));
}

/* dx = ce_dx with coef = dl_n times the reduction's scale b */
static ag_status ce_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin) {
    if (!ag__wants(out, 0)) return AG_OK;
    ag_tensor *coef = ag_mul_scalar(out->ndim ? ag_unsqueeze(gout, 1) : gout, out->attr.b);
    return (gin[0] = ce_dx(out, coef)) ? AG_OK : ag_last_status();
}

/* dl_n = Σ_k (dl_n/dx_nk)·dx_nk, then reduced as l (b: the mean's scale) */
static ag_tensor *ce_jvp(ag_tensor *out, ag_tensor *const *tin) {
    if (!tin[0]) return ag_zeros_like(out); /* the weights' tangent: not differentiable, as the adjoint */
    ag_tensor *d = ag_mul(ce_dx(out, ag_scalar(out->attr.b, out->dtype)), tin[0]);
    return out->ndim ? ag_sum_dims(d, 1, (int[]){1}, false) : ag_sum(d);
}

const ag_op *const ag__loss_ops[] = {&op_bce,     &op_bce_logits, &op_bce_logits_pw, &op_poisson,       &op_poisson_rate,
                                     &op_kl_div, &op_kl_div_log, &op_huber,         &op_cross_entropy, NULL};

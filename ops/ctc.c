/*
 * ctc.c - the connectionist temporal classification loss (Graves et al., 2006)
 * as one op, ctc_loss: the negative log-likelihood of each sample's target
 * sequence summed over every alignment of it to the sample's time steps, from
 * log-probabilities [T, N, C].  The forward runs the alpha recursion in log
 * space, the adjoint the beta recursion and PyTorch's ctc_loss_backward_cpu
 * formula; both are threaded over the batch.  The reductions and the unbatched
 * form are nn/loss_ctc.c's.
 *
 * Notation: for sample n with target l (length S) the extended target l' has
 * L = 2S + 1 states, the blank at even s and l_{(s-1)/2} at odd s; a path moves
 * from state s at t - 1 to s, s + 1, or s + 2 when l'(s + 2) is no blank and
 * differs from l'(s).  y_t(s) = lp[t, n, l'(s)].
 *   α_0(0) = y_0(0), α_0(1) = y_0(1), α_t(s) = y_t(s) + lse(α_{t-1}(s), α_{t-1}(s-1), α_{t-1}(s-2) if allowed)
 *   β_{T'-1}(L-1) = y(L-1), β_{T'-1}(L-2) = y(L-2), β_t(s) = y_t(s) + lse(β_{t+1}(s), β_{t+1}(s+1), β_{t+1}(s+2) if allowed)
 *   nll = -lse(α_{T'-1}(L-1), α_{T'-1}(L-2)),  T' the sample's input length
 * (α and β both include y_t(s), as PyTorch's).  The adjoint is PyTorch's
 *   dlp[t, n, c] = dl_n (exp(lp[t, n, c]) - exp(lse_{s: l'(s) = c}(α_t(s) + β_t(s)) + nll - lp[t, n, c])), t < T'
 * (0 for t >= T'): the derivative of nll is its second term alone, minus the
 * occupancy of class c at t; the first, exp(lp), sums to 1 over c as the
 * occupancies do, so it vanishes through log_softmax's adjoint (g - softmax·Σ_c g)
 * and the gradient of the logits is the true one.  For log-probabilities that are
 * not normalised it differs from the derivative of the loss, as PyTorch's.
 */
#include <math.h>
#include <omp.h>
#include <string.h>
#include "core/iter.h"
#include "core/parallel.h"
#include "autograd/tape.h"
#include "ops/ctc.h"
#include "ops/loss.h"

/* The log of "no path": a finite stand-in for -inf in the recursions written in differentiable
 * ops (ctc_grad_graph), where exp(-inf - -inf) would put NaN into gradients multiplied by 0. */
#define CTC_NEG (-1e30)

/* log(e^a + e^b), -inf when both are */
static inline double lae(double a, double b) {
    double m = a > b ? a : b;
    if (m == -INFINITY) return -INFINITY;
    return m + log1p(exp(-fabs(a - b)));
}

/* log(e^a + e^b + e^c), -inf when all are */
static inline double lae3(double a, double b, double c) {
    double m = a > b ? a : b;
    m = m > c ? m : c;
    if (m == -INFINITY) return -INFINITY;
    return m + log(exp(a - m) + exp(b - m) + exp(c - m));
}

/* The problem as the kernels read it: lp contiguous [T, N, C] (float or double, as dtype);
 * per sample n its input length il[n], target length tl[n] and target labels at
 * tg + off[n]; alpha [N, T, Lmax] in double (the node's saved tensor).  lab [N, Lmax] holds
 * each sample's l'(s) (the blank beyond its states), skip [N, Lmax] whether a path may move
 * from s - 2 to s (l'(s) no blank and unlike l'(s - 2)); ctc_states fills both. */
typedef struct ctc_geom {
    int64_t T, N, C, Lmax, blank;
    const int64_t *tg, *off, *il, *tl;
    int64_t *lab;
    bool *skip;
} ctc_geom;

static inline int64_t ext_label(const ctc_geom *g, int64_t n, int64_t s) { return g->lab[n * g->Lmax + s]; }
static inline bool can_skip(const ctc_geom *g, int64_t n, int64_t s) { return g->skip[n * g->Lmax + s]; }

/* Fills g's per-sample tables (off, lab, skip) for T, N, C, Lmax, blank and the int64 contiguous
 * targets (padded [N, S] when 2-d, else concatenated) and lengths, in one scratch block
 * (geom_free).  false on ENOMEM (recorded). */
static bool geom_init(ctc_geom *g, int64_t T, int64_t N, int64_t C, int64_t Lmax, int64_t blank, const ag_tensor *tg,
                      const ag_tensor *il, const ag_tensor *tl) {
    *g = (ctc_geom){T, N, C, Lmax, blank, (const int64_t *)ag__ptr(tg), NULL, (const int64_t *)ag__ptr(il),
                    (const int64_t *)ag__ptr(tl), NULL, NULL};
    const size_t k = (size_t)(N * Lmax), bytes = sizeof(int64_t) * ((size_t)N + k) + k + 1;
    char *m = ag__cache_alloc(bytes);
    if (!m) return false;
    int64_t *off = (int64_t *)m;
    g->off = off, g->lab = off + N, g->skip = (bool *)(g->lab + k);
    for (int64_t n = 0, pos = 0; n < N; n++) {
        off[n] = tg->ndim == 2 ? n * tg->shape[1] : pos;
        pos += g->tl[n];
        int64_t *l = g->lab + n * Lmax;
        for (int64_t s = 0; s < Lmax; s++) {
            const bool label = s % 2 == 1 && s < 2 * g->tl[n] + 1;
            l[s] = label ? g->tg[off[n] + s / 2] : blank;
            g->skip[n * Lmax + s] = label && s >= 2 && l[s] != l[s - 2];
        }
    }
    return true;
}
static void geom_free(ctc_geom *g) {
    const size_t k = (size_t)(g->N * g->Lmax);
    ag__cache_free((void *)g->off, sizeof(int64_t) * ((size_t)g->N + k) + k + 1);
}

#define LP(t, c) ((double)lp[((t) * g->N + n) * g->C + (c)])

/* α of sample n into a [T, Lmax] (-inf beyond the sample's states and steps); returns nll_n
 * (0 for an empty input and target, +inf when no alignment exists). */
#define CTC_ALPHA(NAME, TYPE)                                                                        \
    static double NAME(const ctc_geom *g, const TYPE *lp, int64_t n, double *a) {                   \
        const int64_t Tn = g->il[n], L = 2 * g->tl[n] + 1, W = g->Lmax;                              \
        for (int64_t k = 0; k < g->T * W; k++) a[k] = -INFINITY;                                     \
        if (Tn == 0) return L == 1 ? 0 : INFINITY;                                                   \
        a[0] = LP(0, g->blank);                                                                      \
        if (L > 1) a[1] = LP(0, ext_label(g, n, 1));                                                 \
        const int64_t *lab = g->lab + n * W;                                                         \
        const bool *skip = g->skip + n * W;                                                          \
        for (int64_t t = 1; t < Tn; t++) {                                                           \
            const double *p = a + (t - 1) * W;                                                       \
            double *q = a + t * W;                                                                   \
            const TYPE *y = lp + (t * g->N + n) * g->C;                                              \
            q[0] = p[0] + (double)y[lab[0]];                                                         \
            for (int64_t s = 1; s < L; s++)                                                          \
                q[s] = (skip[s] ? lae3(p[s], p[s - 1], p[s - 2]) : lae(p[s], p[s - 1])) + (double)y[lab[s]]; \
        }                                                                                            \
        const double *last = a + (Tn - 1) * W;                                                       \
        return -(L > 1 ? lae(last[L - 1], last[L - 2]) : last[0]);                                   \
    }
CTC_ALPHA(alpha_f32, float)
CTC_ALPHA(alpha_f64, double)

/* The gradient of sample n into column n of gx [T, N, C], scaled by gn: β into b [T, Lmax], the
 * log-occupancy of each class into lcab [C] (scratch). */
#define CTC_GRAD(NAME, TYPE)                                                                         \
    static void NAME(const ctc_geom *g, const TYPE *lp, const double *a, double nll, double gn,     \
                     bool zero_infinity, int64_t n, double *b, double *lcab, TYPE *gx) {             \
        const int64_t Tn = g->il[n], L = 2 * g->tl[n] + 1, W = g->Lmax;                              \
        const bool zero = zero_infinity && isinf(nll);                                               \
        for (int64_t t = 0; t < g->T; t++)                                                           \
            for (int64_t c = 0; c < g->C; c++) gx[(t * g->N + n) * g->C + c] = 0;                    \
        if (Tn == 0 || zero) return;                                                                 \
        for (int64_t s = 0; s < L; s++) b[(Tn - 1) * W + s] = -INFINITY;                             \
        b[(Tn - 1) * W + L - 1] = LP(Tn - 1, g->blank);                                              \
        if (L > 1) b[(Tn - 1) * W + L - 2] = LP(Tn - 1, ext_label(g, n, L - 2));                     \
        const int64_t *lab = g->lab + n * W;                                                         \
        const bool *skip = g->skip + n * W;                                                          \
        for (int64_t t = Tn - 2; t >= 0; t--) {                                                      \
            const double *p = b + (t + 1) * W;                                                       \
            double *q = b + t * W;                                                                   \
            const TYPE *y = lp + (t * g->N + n) * g->C;                                              \
            for (int64_t s = 0; s + 1 < L; s++)                                                      \
                q[s] = (s + 2 < L && skip[s + 2] ? lae3(p[s], p[s + 1], p[s + 2]) : lae(p[s], p[s + 1])) \
                       + (double)y[lab[s]];                                                          \
            q[L - 1] = p[L - 1] + (double)y[lab[L - 1]];                                             \
        }                                                                                            \
        for (int64_t t = 0; t < Tn; t++) {                                                           \
            for (int64_t c = 0; c < g->C; c++) lcab[c] = -INFINITY;                                  \
            for (int64_t s = 0; s < L; s++) lcab[lab[s]] = lae(lcab[lab[s]], a[t * W + s] + b[t * W + s]); \
            TYPE *gr = gx + (t * g->N + n) * g->C;                                                   \
            for (int64_t c = 0; c < g->C; c++) {                                                     \
                const double l = LP(t, c);                                                           \
                gr[c] = (TYPE)((exp(l) - exp(lcab[c] + nll - l)) * gn);                              \
            }                                                                                        \
        }                                                                                            \
    }
CTC_GRAD(grad_f32, float)
CTC_GRAD(grad_f64, double)
#undef LP

/* Threads for the batch: one sample is T·Lmax recursion steps, each (two exps and a log) costing
 * about as much as 16 elements of a cheap elementwise loop. */
static int batch_threads(const ctc_geom *g) {
    int64_t work;
    if (ag__mul_overflow(g->T, g->Lmax, &work) || ag__mul_overflow(work, g->N, &work) ||
        ag__mul_overflow(work, 16, &work))
        work = INT64_MAX;
    int nt = ag__threads_for(work);
    return nt > g->N ? (int)(g->N ? g->N : 1) : nt;
}

/* nll of sample n from its saved α */
static double saved_nll(const ctc_geom *g, const double *a, int64_t n) {
    const int64_t Tn = g->il[n], L = 2 * g->tl[n] + 1;
    if (Tn == 0) return L == 1 ? 0 : INFINITY;
    const double *last = a + (n * g->T + Tn - 1) * g->Lmax;
    return -(L > 1 ? lae(last[L - 1], last[L - 2]) : last[0]);
}

/* The geometry of node out (inputs: lp, then contiguous copies of the targets and the lengths
 * that the forward made); geom_free it.  false on ENOMEM. */
static bool node_geom(const ag_tensor *out, ctc_geom *g) {
    const ag_tensor *lp = out->in[0];
    return geom_init(g, lp->shape[0], lp->shape[1], lp->shape[2], out->attr.i[2], out->attr.i[0], out->in[1],
                     out->in[2], out->in[3]);
}

/* dlp as above into a new [T, N, C] tensor (unowned); NULL on ENOMEM.  gout: dl [N], any strides. */
static ag_tensor *first_order_grad(ag_tensor *out, const ag_tensor *gout) {
    ctc_geom g;
    if (!node_geom(out, &g)) return NULL;
    const int nt = batch_threads(&g);
    const size_t per = sizeof(double) * (size_t)(g.T * g.Lmax + g.C + 1);
    ag_tensor *lp = ag__contig_or_copy(out->in[0]);
    ag_tensor *gx = lp ? ag__new_unowned(lp->dtype, 3, lp->shape, false) : NULL;
    double *scratch = gx ? ag__alloc_n(nt, per) : NULL;
    if (!scratch) {
        ag_release(gx);
        gx = NULL;
    } else {
        const double *alpha = (const double *)ag__ptr(out->saved);
        const bool zinf = out->attr.i[1] != 0;
AG_PARALLEL(nt, {
            const int id = ag__thread, k = ag__team;
            double *b = (double *)((char *)scratch + per * (size_t)id), *lcab = b + g.T * g.Lmax;
            for (int64_t n = ag__share_start(g.N, id, k); n < ag__share_start(g.N, id + 1, k); n++) {
                const double *a = alpha + n * g.T * g.Lmax;
                const double nll = saved_nll(&g, alpha, n), gn = ag__loss_at(gout, n);
                if (lp->dtype == AG_F64)
                    grad_f64(&g, (const double *)ag__ptr(lp), a, nll, gn, zinf, n, b, lcab, (double *)ag__ptr(gx));
                else
                    grad_f32(&g, (const float *)ag__ptr(lp), a, nll, gn, zinf, n, b, lcab, (float *)ag__ptr(gx));
            }
});
        ag__free(scratch);
    }
    geom_free(&g);
    ag_release(lp);
    return gx;
}

static ag_status ctc_backward(ag_tensor *out, ag_tensor *gout) {
    if (!ag__wants(out, 0)) return AG_OK;
    ag_tensor *gx = first_order_grad(out, gout);
    return gx ? ag__accumulate(out->in[0], gx) : AG_ERR_NOMEM;
}

/* ---- the adjoint in differentiable ops (create_graph, forward mode) ------------------------------- */
/* A bool tensor of shape (scope-owned) with element k set to f(k); NULL on ENOMEM. */
#define BOOL_TENSOR(var, nd, shp, expr)                                                               \
    do {                                                                                              \
        var = ag__new(AG_BOOL, nd, shp);                                                              \
        if (!var) break;                                                                              \
        bool *v_ = (bool *)ag__ptr(var);                                                              \
        for (int64_t k = 0; k < ag__numel(nd, shp); k++) v_[k] = (expr);                              \
    } while (0)

/* x shifted by k states along dim 1 of [N, L] (k > 0: towards higher s), CTC_NEG shifted in */
static ag_tensor *shift(ag_tensor *x, int64_t k) {
    const int64_t L = x->shape[1];
    const int64_t pad[2] = {k > 0 ? k : 0, k > 0 ? 0 : -k};
    return ag_narrow(ag_pad(x, 2, pad, AG_PAD_CONSTANT, CTC_NEG), 1, k > 0 ? 0 : -k, L);
}

/* dlp of node out as above, each sample's scaled by coef (broadcasting to [1, N, 1]), in agrad ops:
 * the α and β recursions step by step over [N, Lmax] (CTC_NEG for "no path"), the occupancies
 * γ_t(s) = exp(α_t(s) + β_t(s) - y_t(s) - log p) scattered onto their classes.  Samples without an
 * alignment take the first-order values (NaN at t < T', or 0 with zero_infinity). */
static ag_tensor *ctc_grad_graph(ag_tensor *out, ag_tensor *coef) {
    ag_tensor *lp = out->in[0];
    ctc_geom g;
    if (!node_geom(out, &g)) return NULL;
    const int64_t T = g.T, N = g.N, C = g.C, W = g.Lmax;
    const ag_dtype dt = lp->dtype;
    const double *alpha = (const double *)ag__ptr(out->saved);
    const bool zinf = out->attr.i[1] != 0;
    /* the constants: the classes of the states, and masks */
    const int64_t sh_tnw[3] = {T, N, W}, sh_nw[2] = {N, W}, sh_tn1[3] = {T, N, 1}, sh_n1[2] = {N, 1};
    ag_tensor *idx = ag__new(AG_I64, 3, sh_tnw), *ok = ag__new(AG_BOOL, 3, (int64_t[]){1, N, 1});
    ag_tensor *fill = ag__new(dt, 3, sh_tn1);
    ag_tensor *valid, *skip, *skip_r, *init_a, *init_b, *mask, *tmask;
    BOOL_TENSOR(valid, 2, sh_nw, k % W < 2 * g.tl[k / W] + 1);
    BOOL_TENSOR(skip, 2, sh_nw, k % W < 2 * g.tl[k / W] + 1 && can_skip(&g, k / W, k % W));
    BOOL_TENSOR(skip_r, 2, sh_nw, k % W + 2 < 2 * g.tl[k / W] + 1 && can_skip(&g, k / W, k % W + 2));
    BOOL_TENSOR(init_a, 2, sh_nw, k % W < 2 && k % W < 2 * g.tl[k / W] + 1);
    BOOL_TENSOR(init_b, 2, sh_nw, k % W + 2 >= 2 * g.tl[k / W] + 1 && k % W < 2 * g.tl[k / W] + 1);
    BOOL_TENSOR(tmask, 3, sh_tn1, k / N < g.il[k % N]);
    if (!idx || !ok || !fill || !valid || !skip || !skip_r || !init_a || !init_b || !tmask) {
        geom_free(&g);
        return NULL;
    }
    bool any_bad = false;
    for (int64_t n = 0; n < N; n++) {
        const bool good = isfinite(saved_nll(&g, alpha, n));
        ((bool *)ag__ptr(ok))[n] = good;
        any_bad |= !good;
        for (int64_t s = 0; s < W; s++) {
            const int64_t c = s < 2 * g.tl[n] + 1 ? ext_label(&g, n, s) : g.blank;
            for (int64_t t = 0; t < T; t++) ((int64_t *)ag__ptr(idx))[(t * N + n) * W + s] = c;
        }
    }
    for (int64_t k = 0; k < T * N; k++) ag__write(fill, k, k / N < g.il[k % N] && !zinf ? NAN : 0);
    BOOL_TENSOR(mask, 3, sh_tnw, k / (N * W) < g.il[k / W % N] && k % W < 2 * g.tl[k / W % N] + 1 &&
                                      ((bool *)ag__ptr(ok))[k / W % N]);
    geom_free(&g);
    if (!mask) return NULL;
    ag_tensor **as = ag__alloc_n(2 * (T ? T : 1), sizeof *as);
    if (!as) return NULL;
    ag_tensor **bs = as + (T ? T : 1);
    ag_tensor *neg = ag_scalar(CTC_NEG, dt);
    ag_tensor *E = ag_gather(lp, 2, idx); /* y_t(s): [T, N, W] */
    ag_tensor *r = NULL;
    bool failed = !E;
    for (int64_t t = 0; t < T && !failed; t++) {
        ag_tensor *y = ag_select(E, 0, t);
        if (t == 0) as[0] = ag_where(init_a, y, neg);
        else {
            ag_tensor *p = as[t - 1];
            as[t] = ag_add(y, ag_logaddexp(ag_logaddexp(p, shift(p, 1)), ag_where(skip, shift(p, 2), neg)));
        }
        failed = !as[t];
    }
    ag_tensor *next = failed ? NULL : ag_full(AG_SHAPE(N, W), CTC_NEG, dt);
    for (int64_t t = T - 1; t >= 0 && !failed; t--) {
        ag_tensor *y = ag_select(E, 0, t), *p = ag_where(valid, next, neg);
        ag_tensor *rec = ag_add(y, ag_logaddexp(ag_logaddexp(p, shift(p, -1)), ag_where(skip_r, shift(p, -2), neg)));
        ag_tensor *last, *before;
        BOOL_TENSOR(last, 2, sh_n1, t == g.il[k] - 1);
        BOOL_TENSOR(before, 2, sh_n1, t < g.il[k] - 1);
        next = bs[t] = last && before ? ag_where(last, ag_where(init_b, y, neg), ag_where(before, rec, neg)) : NULL;
        failed = !bs[t];
    }
    if (!failed && T > 0) {
        ag_tensor *A = ag_stack(as, (int)T, 0), *B = ag_stack(bs, (int)T, 0);
        ag_tensor *lab = ag_sub(ag_add(A, B), E);                        /* log(α β / y) */
        ag_tensor *logp = ag_logsumexp_dims(ag_where(valid, ag_select(lab, 0, 0), neg), 1, (int[]){1}, true);
        ag_tensor *gamma = ag_exp(ag_where(mask, ag_sub(lab, ag_unsqueeze(logp, 0)), neg));
        ag_tensor *occ = ag_scatter_add(ag_zeros(AG_SHAPE(T, N, C), dt), 2, idx, gamma);
        ag_tensor *zero = ag_scalar(0, dt);
        r = ag_mul(ag_sub(ag_where(tmask, ag_exp(lp), zero), occ), coef);
        if (r && any_bad) r = ag_where(ok, r, fill);
    } else if (!failed) {
        r = ag_zeros(AG_SHAPE(0, N, C), dt);
    }
    ag__free(as);
    return r;
}

/* dlp = ctc_grad_graph with coef = dl_n */
static ag_status ctc_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin) {
    if (!ag__wants(out, 0)) return AG_OK;
    const int64_t N = out->shape[0];
    return (gin[0] = ctc_grad_graph(out, ag_reshape(gout, AG_SHAPE(1, N, 1)))) ? AG_OK : ag_last_status();
}

/* dl_n = Σ_{t, c} (dl_n/dlp[t, n, c])·dlp[t, n, c] */
static ag_tensor *ctc_jvp(ag_tensor *out, ag_tensor *const *tin) {
    if (!tin[0]) return ag_zeros_like(out);
    return ag_sum_dims(ag_mul(ctc_grad_graph(out, ag_scalar(1, out->dtype)), tin[0]), 2, (int[]){0, 2}, false);
}

/* l_n = -log Σ_{alignments π of l_n} Π_t lp[t, n, π_t] by the α recursion;
 * dlp = dl_n (exp(lp) - exp(lse_{s: l'(s) = c}(α + β) + nll - lp)) for t < T_n (PyTorch's) */
static const ag_op op_ctc_loss = {
    .name = "ctc_loss", .grad_fn = "CtcLossBackward0", .backward = ctc_backward, .saves = AG_SAVES_IN0,
    .math = "l_n = -log Σ_{π ∈ B⁻¹(target_n)} Π_{t < T_n} exp(lp[t, n, π_t]) by the α recursion;  "
            "dlp[t, n, c] = dl_n·(exp(lp[t, n, c]) - exp(lse_{s: l'(s) = c}(α_t(s) + β_t(s)) + l_n - lp[t, n, "
            "c])) for t < T_n, 0 after (PyTorch's: the true gradient after log_softmax)",
    .backward_graph = ctc_backward_graph, .jvp = ctc_jvp,
    .tangent = "l̇_n = Σ_{t, c} (dl_n/dlp[t, n, c])·l̇p[t, n, c] (dl/dlp as the adjoint)"};

/* ---- the forward ----------------------------------------------------------------------------------- */
/* A contiguous int64 copy of t (owned by the scope: the node holds its own reference). */
static ag_tensor *index_copy(ag_tensor *t) {
    ag_tensor *c = ag__new(AG_I64, t->ndim, t->shape);
    if (c) ag__copy_into(c, t);
    return c;
}

static ag_status check_index(const char *loss, const char *what, const ag_tensor *t) {
    if (t->dtype != AG_I64)
        return ag__fail(AG_ERR_DTYPE, "%s: %s must be int64, got %s", loss, what, ag_dtype_name(t->dtype));
    return AG_OK;
}

ag_tensor *ag__ctc_loss(const char *loss, ag_tensor *lp, ag_tensor *targets, ag_tensor *input_lengths,
                        ag_tensor *target_lengths, int64_t blank, bool zero_infinity) {
    char s1[AG_SHAPE_STR], s2[AG_SHAPE_STR];
    if (!lp || !targets || !input_lengths || !target_lengths) return NULL;
    if (ag__check_float(loss, lp, NULL) || check_index(loss, "targets", targets) ||
        check_index(loss, "input_lengths", input_lengths) || check_index(loss, "target_lengths", target_lengths))
        return NULL;
    if (lp->ndim != 3)
        return ag__fail_null(AG_ERR_SHAPE, "%s: log_probs %s must be [T, N, C]", loss, ag__tshape(s1, lp));
    const int64_t T = lp->shape[0], N = lp->shape[1], C = lp->shape[2];
    if (blank < 0 || blank >= C)
        return ag__fail_null(AG_ERR_INDEX, "%s: blank %lld is out of range for %lld classes", loss, (long long)blank,
                             (long long)C);
    if (input_lengths->ndim != 1 || input_lengths->shape[0] != N || target_lengths->ndim != 1 ||
        target_lengths->shape[0] != N)
        return ag__fail_null(AG_ERR_SHAPE, "%s: input_lengths %s and target_lengths %s must hold one length per sample (%lld)",
                             loss, ag__tshape(s1, input_lengths), ag__tshape(s2, target_lengths), (long long)N);
    const bool padded = targets->ndim == 2;
    if ((padded && targets->shape[0] != N) || (!padded && targets->ndim != 1))
        return ag__fail_null(AG_ERR_SHAPE, "%s: targets %s must be [N, S] (padded) or 1-d (concatenated) for %lld samples",
                             loss, ag__tshape(s1, targets), (long long)N);
    /* the lengths, then every label used */
    int64_t total = 0, Smax = 0;
    for (int64_t n = 0; n < N; n++) {
        const int64_t il = ag__loss_index_at(input_lengths, n), tl = ag__loss_index_at(target_lengths, n);
        if (il < 0 || il > T)
            return ag__fail_null(AG_ERR_VALUE, "%s: input_lengths[%lld] = %lld must be in [0, %lld] (log_probs %s)", loss,
                                 (long long)n, (long long)il, (long long)T, ag__tshape(s1, lp));
        if (tl < 0 || (padded && tl > targets->shape[1]))
            return ag__fail_null(AG_ERR_VALUE, "%s: target_lengths[%lld] = %lld must be in [0, %lld] (targets %s)", loss,
                                 (long long)n, (long long)tl, (long long)(padded ? targets->shape[1] : INT64_MAX),
                                 ag__tshape(s1, targets));
        if (ag__add_overflow(total, tl, &total) || total > AG_MAX_SIZE)
            return ag__fail_null(AG_ERR_VALUE, "%s: target_lengths sum beyond %lld", loss, (long long)AG_MAX_SIZE);
        if (tl > Smax) Smax = tl;
    }
    if (!padded && total != targets->shape[0])
        return ag__fail_null(AG_ERR_SHAPE, "%s: concatenated targets %s must hold the sum of target_lengths, %lld labels",
                             loss, ag__tshape(s1, targets), (long long)total);
    for (int64_t n = 0, pos = 0; n < N; n++) {
        const int64_t tl = ag__loss_index_at(target_lengths, n);
        for (int64_t k = 0; k < tl; k++) {
            const int64_t at = padded ? n * targets->shape[1] + k : pos + k, v = ag__loss_index_at(targets, at);
            if (v < 0 || v >= C || v == blank)
                return ag__fail_null(AG_ERR_INDEX, "%s: target %lld of sample %lld is %lld: labels must be in [0, %lld) "
                                     "and not the blank (%lld)", loss, (long long)k, (long long)n, (long long)v,
                                     (long long)C, (long long)blank);
        }
        pos += tl;
    }
    int64_t W; /* the states of the longest target */
    if (ag__mul_overflow(Smax, 2, &W)) W = INT64_MAX;
    int64_t ashape[3] = {N, T, W < INT64_MAX ? W + 1 : W};
    W = ashape[2];
    if (ag__check_alloc(loss, 3, ashape, AG_F64) || ag__check_alloc(loss, 2, (int64_t[]){N, W}, AG_I64)) return NULL;
    if (ag__composite_begin(loss)) return NULL;
    ag_tensor *tg = index_copy(targets), *il = tg ? index_copy(input_lengths) : NULL;
    ag_tensor *tl = il ? index_copy(target_lengths) : NULL, *lpc = tl ? ag__contig_or_copy(lp) : NULL;
    ctc_geom g;
    const bool have_geom = lpc && geom_init(&g, T, N, C, W, blank, tg, il, tl);
    ag_tensor *alpha = have_geom ? ag__new_unowned(AG_F64, 3, ashape, false) : NULL;
    ag_tensor *y = alpha ? ag__new(lp->dtype, 1, &N) : NULL;
    if (!y) {
        if (have_geom) geom_free(&g);
        ag_release(alpha);
        ag_release(lpc);
        return ag__composite_end(NULL);
    }
    const int nt = batch_threads(&g);
    AG_PARALLEL_FOR(nt, schedule(dynamic), for (int64_t n = 0; n < N; n++) {
        double *a = (double *)ag__ptr(alpha) + n * T * W;
        double nll = lp->dtype == AG_F64 ? alpha_f64(&g, (const double *)ag__ptr(lpc), n, a)
                                         : alpha_f32(&g, (const float *)ag__ptr(lpc), n, a);
        if (zero_infinity && isinf(nll)) nll = 0;
        ag__write(y, n, nll);
    });
    geom_free(&g);
    ag_release(lpc);
    ag_tensor *in[4] = {lp, tg, il, tl};
    y = ag__record_saved(y, &op_ctc_loss, in, 4, alpha);
    if (y && y->op) {
        y->attr.i[0] = blank;
        y->attr.i[1] = zero_infinity;
        y->attr.i[2] = W;
    }
    return ag__composite_end(ag__check_finite(y, op_ctc_loss.name));
}

const ag_op *const ag__ctc_ops[] = {&op_ctc_loss, NULL};

/*
 * loss_class.c - losses over class scores: nll_loss (and, built on it,
 * cross_entropy and the harmonic loss).
 *
 * Scores are [C], [N, C] or [N, C, d1, ...] with the classes along dim 1 (a
 * [C] input is treated as [1, C]); int64 class-index targets have the shape
 * without the class dim.  The loss picks each target's score with ag_gather,
 * so -inf scores of other classes never meet a zero weight (no 0·inf), and
 * masks ignored targets with ag_where, which sends them no gradient.
 */
#include "nn/loss_internal.h"
#include "ops/softmax.h"

/* Checks scores x against class-index target t; writes the number of classes to *c. */
static ag_status check_class_target(const char *loss, const ag_tensor *x, const ag_tensor *t, int64_t *c) {
    char a[AG_SHAPE_STR], b[AG_SHAPE_STR], e[AG_SHAPE_STR];
    if (x->ndim == 0) return ag__fail(AG_ERR_SHAPE, "%s: input must have a class dim, got a 0-d tensor", loss);
    *c = x->shape[x->ndim == 1 ? 0 : 1];
    if (t->dtype != AG_I64)
        return ag__fail(AG_ERR_DTYPE, "%s: target must be int64 class indices, got %s", loss, ag_dtype_name(t->dtype));
    int64_t want[AG_MAX_DIMS];
    int nw = 0;
    for (int d = 0; d < x->ndim; d++)
        if (d != (x->ndim == 1 ? 0 : 1)) want[nw++] = x->shape[d];
    bool fits = t->ndim == nw;
    for (int d = 0; fits && d < nw; d++) fits = t->shape[d] == want[d];
    if (!fits)
        return ag__fail(AG_ERR_SHAPE, "%s: expected target shape %s for input %s, got %s", loss,
                        ag__shape_str(e, nw, want), ag__tshape(a, x), ag__tshape(b, t));
    return AG_OK;
}

/* A per-class weight must be float of x's dtype with exactly c entries in one dim. */
static ag_status check_class_weight(const char *loss, const ag_tensor *w, const ag_tensor *x, int64_t c) {
    if (!w) return AG_OK;
    if (ag__loss_check_float(loss, "weight", w, x)) return ag_last_status();
    if (w->ndim != 1 || w->shape[0] != c) {
        char a[AG_SHAPE_STR];
        return ag__fail(AG_ERR_SHAPE,
                        "%s: weight should be defined either for all %lld classes or no classes, got weight of shape %s",
                        loss, (long long)c, ag__tshape(a, w));
    }
    return AG_OK;
}

/* The targets of one batch, ready for gathering. */
typedef struct class_targets {
    ag_tensor *valid;  /* bool, target's shape: target != ignore_index */
    ag_tensor *index;  /* int64 [N, 1, d...]: the target with ignored entries 0, for ag_gather along dim 1 */
    ag_tensor *w;      /* weight[target], 0 where ignored (NULL without weight) */
    int64_t count;     /* number of targets not ignored */
} class_targets;

/* Validates every target not equal to ignore_index (AG_ERR_INDEX for one outside [0, c)) and
 * builds class_targets for target t (shape [N, d...] after the [C] -> [1, C] promotion). */
static ag_status prepare_targets(const char *loss, ag_tensor *t, int64_t c, const ag_loss_opts *o, class_targets *ct) {
    int64_t n = ag_numel(t);
    ag_shape s = ag_shape_of(t);
    ag_tensor *idx = ag_empty(s, AG_I64);
    if (!idx) return ag_last_status();
    int64_t *ip = ag_data(idx);
    ct->count = 0;
    for (int64_t k = 0; k < n; k++) {
        int64_t v = ag__loss_index_at(t, k);
        if (v == o->ignore_index) {
            ip[k] = 0;
            continue;
        }
        if (v < 0 || v >= c)
            return ag__fail(AG_ERR_INDEX, "%s: target %lld is out of bounds for %lld classes (at flat index %lld)", loss,
                            (long long)v, (long long)c, (long long)k);
        ip[k] = v;
        ct->count++;
    }
    ct->valid = ag_ne(t, ag_scalar((double)o->ignore_index, AG_I64));
    ct->index = ag_unsqueeze(idx, 1);
    ct->w = NULL;
    if (o->weight) {
        ag_tensor *w = ag_reshape(ag_index_select(o->weight, 0, ag_reshape(idx, AG_SHAPE(n))), s);
        ct->w = ag_where(ct->valid, w, ag__loss_const(o->weight, 0));
    }
    return ct->valid && ct->index && (!o->weight || ct->w) ? AG_OK : ag_last_status();
}

/* Reduces per-target losses l (0 where ignored): mean divides by the total weight of the
 * targets not ignored (their number without weights), NaN when there are none. */
static ag_tensor *reduce_targets(ag_tensor *l, const class_targets *ct, ag_reduction r) {
    if (r != AG_REDUCTION_MEAN) return ag__loss_reduce(l, r);
    return ct->w ? ag_div(ag_sum(l), ag_sum(ct->w)) : ag_div_scalar(ag_sum(l), (double)ct->count);
}

/* -w[y] x[n, y] per target, 0 where ignored (x [N, C, d...]). */
static ag_tensor *nll_terms(ag_tensor *x, const class_targets *ct) {
    ag_tensor *l = ag_neg(ag_squeeze(ag_gather(x, 1, ct->index), 1));
    if (ct->w) l = ag_mul(l, ct->w);
    return ag_where(ct->valid, l, ag__loss_const(x, 0));
}

/* The [C] -> [1, C] promotion of an unbatched input and its 0-d target. */
static void promote(ag_tensor **x, ag_tensor **t) {
    if ((*x)->ndim != 1) return;
    *x = ag_unsqueeze(*x, 0);
    *t = ag_reshape(*t, AG_SHAPE(1));
}

/* Unreduced results of an unbatched call are 0-d again. */
static ag_tensor *demote(ag_tensor *l, const ag_tensor *target) {
    return l && target->ndim == 0 ? ag_reshape(l, AG_SCALAR_SHAPE) : l;
}

/* l = -w[y] x[n, y] (0 where y == ignore_index);  dx[n, y] = -w[y] dl (scaled by 1 / Σ w for mean) */
ag_tensor *ag_nll_loss(ag_tensor *input, ag_tensor *target, const ag_loss_opts *o) {
    AG_CHECK_HANDLES(NULL, "nll_loss", input, target);
    static const char *const L = "nll_loss";
    ag_loss_opts buf;
    int64_t c = 0;
    if (!input || !target || !(o = ag__loss_opts(L, o, &buf, false))) return NULL;
    if (ag__loss_check_float(L, "input", input, NULL) || check_class_target(L, input, target, &c) ||
        check_class_weight(L, o->weight, input, c))
        return NULL;
    if (AG__LOSS_BEGIN()) return NULL;
    ag_tensor *x = input, *t = target, *l = NULL;
    promote(&x, &t);
    class_targets ct = {0};
    if (x && t && prepare_targets(L, t, c, o, &ct) == AG_OK)
        l = reduce_targets(demote(nll_terms(x, &ct), target), &ct, o->reduction);
    return ag__loss_end(l);
}

/* weight [C] shaped to broadcast along dim 1 of an ndim-dim input. */
static ag_tensor *class_dim_view(ag_tensor *w, int ndim) {
    ag_shape s = {ndim, {0}};
    for (int d = 0; d < ndim; d++) s.dim[d] = d == 1 ? w->shape[0] : 1;
    return ag_reshape(w, s);
}

/* Cross-entropy with class-probability target y of x's shape (x promoted to [N, C, d...]):
 * l = -Σ_c w_c y'_c log_softmax(x)_c with y' = (1 - ε) y + ε / C; mean divides by N·d... */
static ag_tensor *cross_entropy_probs(ag_tensor *x, ag_tensor *y, const ag_loss_opts *o, int64_t c) {
    ag_tensor *logp = ag_log_softmax(x, 1);
    if (o->label_smoothing > 0) y = ag_add_scalar(ag_mul_scalar(y, 1 - o->label_smoothing), o->label_smoothing / (double)c);
    if (o->weight) logp = ag_mul(logp, class_dim_view(o->weight, x->ndim));
    ag_tensor *l = ag_neg(ag_sum_dim(ag_mul(logp, y), 1, false));
    if (o->reduction == AG_REDUCTION_MEAN) return ag_div_scalar(ag_sum(l), (double)(ag_numel(x) / (c ? c : 1)));
    return ag__loss_reduce(l, o->reduction);
}

/* Cross-entropy with class-index target t (x promoted to [N, C, d...]):
 * (1 - ε) nll(logp, t) + ε / C · (-Σ_c w_c logp_c), both 0 where ignored and divided by the
 * same total weight for mean. */
static ag_tensor *cross_entropy_indices(const char *loss, ag_tensor *x, ag_tensor *t, const ag_loss_opts *o, int64_t c) {
    class_targets ct = {0};
    if (prepare_targets(loss, t, c, o, &ct)) return NULL;
    ag_tensor *logp = ag_log_softmax(x, 1);
    ag_tensor *l = nll_terms(logp, &ct);
    double eps = o->label_smoothing;
    if (eps > 0) {
        ag_tensor *lw = o->weight ? ag_mul(logp, class_dim_view(o->weight, x->ndim)) : logp;
        ag_tensor *smooth = ag_where(ct.valid, ag_neg(ag_sum_dim(lw, 1, false)), ag__loss_const(x, 0));
        l = ag_add(ag_mul_scalar(l, 1 - eps), ag_mul_scalar(smooth, eps / (double)c));
    }
    return reduce_targets(l, &ct, o->reduction);
}

/* ---- the fused op: class-index targets over [N, C] ------------------------------------------------ */
/* Rows of [N, C] logits with class-index targets, the common case, run as one op:
 * the forward makes p = softmax(x) and each row's log-sum-exp once (ops/softmax.c,
 * with log_softmax's fast paths), the adjoint is p minus the (smoothed, weighted)
 * target distribution, so a training step records one node instead of about ten.
 * attr: a = ε (label_smoothing), b = the reduction's scale (1 / Σ w_y for mean,
 * else 1), i[0] = reduction, i[1] = ignore_index; saved = p. */

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

/* g[n, k] = coef_n ((1 - ε) w_y (p_k - [k = y]) + (ε / C)(W p_k - w_k)), 0 for ignored rows */
#define CE_GRAD(NAME, T)                                                                                    \
    static void NAME(T *gx, const T *p, const int64_t *t, const ag_tensor *gout, int64_t N, int64_t C,      \
                     const double *wv, double W, const ag_attr *at) {                                       \
        const double eps = at->a;                                                                           \
        const bool per_row = at->i[0] == AG_REDUCTION_NONE;                                                 \
        const double g0 = per_row ? 0 : ag__read(gout, 0) * at->b;                                          \
        for (int64_t n = 0; n < N; n++) {                                                                   \
            const int64_t y = t[n];                                                                         \
            const T *pr = p + n * C;                                                                        \
            T *gr = gx + n * C;                                                                             \
            if (y == at->i[1]) {                                                                            \
                for (int64_t k = 0; k < C; k++) gr[k] = 0;                                                  \
                continue;                                                                                   \
            }                                                                                               \
            const double g = per_row ? ag__read(gout, n) * at->b : g0;                                      \
            const double a = g * (1 - eps) * wv[y], b = g * eps / (double)C;                                \
            if (eps == 0)                                                                                   \
                for (int64_t k = 0; k < C; k++) gr[k] = (T)(a * pr[k]);                                     \
            else                                                                                            \
                for (int64_t k = 0; k < C; k++) gr[k] = (T)(a * pr[k] + b * (W * pr[k] - wv[k]));           \
            gr[y] = (T)(gr[y] - a);                                                                         \
        }                                                                                                   \
    }
CE_GRAD(ce_grad_f32, float)
CE_GRAD(ce_grad_f64, double)

static ag_status ce_backward(ag_tensor *out, ag_tensor *gout) {
    ag_tensor *x = out->in[0], *t = out->in[1], *w = out->nin > 2 ? out->in[2] : NULL;
    if (!ag__wants(out, 0)) return AG_OK;
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
    const int64_t *tv = (const int64_t *)ag__ptr(tc);
    if (x->dtype == AG_F64) ce_grad_f64((double *)ag__ptr(gx), (const double *)ag__ptr(out->saved), tv, gout, N, C, wv, W, &out->attr);
    else ce_grad_f32((float *)ag__ptr(gx), (const float *)ag__ptr(out->saved), tv, gout, N, C, wv, W, &out->attr);
    ag_release(tc);
    free_weights(wv, C);
    return ag__accumulate(x, gx);
}

/* l_n = (1 - ε) w_y (lse_n - x_ny) + (ε / C) Σ_k w_k (lse_n - x_nk) (0 where ignored) into l (per_row)
 * and their sum */
#define CE_LOSS(NAME, T)                                                                                    \
    static double NAME(const T *x, const int64_t *t, const double *lse, int64_t N, int64_t C,              \
                       const double *wv, double eps, int64_t ignore, T *l) {                                \
        double sum = 0;                                                                                     \
        for (int64_t n = 0; n < N; n++) {                                                                   \
            const int64_t y = t[n];                                                                         \
            const T *xr = x + n * C;                                                                        \
            double ln = 0;                                                                                  \
            if (y != ignore) {                                                                              \
                ln = (1 - eps) * wv[y] * (lse[n] - (double)xr[y]);                                          \
                if (eps > 0) {                                                                              \
                    double smooth = 0;                                                                      \
                    for (int64_t k = 0; k < C; k++) smooth += wv[k] * (lse[n] - (double)xr[k]);             \
                    ln += eps / (double)C * smooth;                                                         \
                }                                                                                           \
            }                                                                                               \
            if (l) l[n] = (T)ln;                                                                            \
            sum += ln;                                                                                      \
        }                                                                                                   \
        return sum;                                                                                         \
    }
CE_LOSS(ce_loss_f32, float)
CE_LOSS(ce_loss_f64, double)

static ag_tensor *ce_test_call(ag_tensor *const *in, int n, void *ctx);

/* l_n = (1 - ε) w_y (lse_n - x_ny) + (ε / C) Σ_k w_k (lse_n - x_nk), lse_n = log Σ_k exp x_nk, reduced;
 * dx_nk = dl_n ((1 - ε) w_y (p_nk - [k = y]) + (ε / C)(W p_nk - w_k)), p = softmax(x), W = Σ_k w_k */
const ag_op ag__op_cross_entropy = {
    "cross_entropy", "CrossEntropyLossBackward0", ce_backward, AG_SAVES_IN1 | AG_SAVES_IN2,
    "l_n = (1 - ε)·w_y·(lse_n - x_ny) + (ε/C)·Σ_k w_k·(lse_n - x_nk), lse_n = log Σ_k exp x_nk, then reduced;  "
    "dx_nk = dl_n·((1 - ε)·w_y·(p_nk - [k = y]) + (ε/C)·(W·p_nk - w_k)), p = softmax(x), W = Σ_k w_k",
    ce_test_call, AG_DOMAIN_ANY, {{1, {AG_DIMS(4, 5)}}, {1, {AG_DIMS(1, 3)}}, {1, {AG_DIMS(6, 2)}}}, {0.1, 0}, 0, 0};

/* Checks every target (ignore_index or in [0, C)), then l as above for x [N, C] and t [N]. */
static ag_tensor *cross_entropy_fused(const char *loss, ag_tensor *x, ag_tensor *t, const ag_loss_opts *o) {
    const int64_t N = x->shape[0], C = x->shape[1];
    /* p below takes x's size: x (maybe an expanded view) must be one that can be allocated,
     * which also keeps the C weights and N sums below within size_t. */
    if (ag__check_alloc(loss, 2, x->shape, x->dtype)) return NULL;
    const ag_tensor *w = o->weight;
    double W;
    double *wv = class_weights(w, C, &W);
    if (!wv) return NULL;
    double total = 0; /* Σ w_y over the targets not ignored */
    for (int64_t n = 0; n < N; n++) {
        int64_t v = ag__loss_index_at(t, n);
        if (v == o->ignore_index) continue;
        if (v < 0 || v >= C) {
            free_weights(wv, C);
            return ag__fail_null(AG_ERR_INDEX, "%s: target %lld is out of bounds for %lld classes (at flat index %lld)",
                                 loss, (long long)v, (long long)C, (long long)n);
        }
        total += wv[v];
    }
    const bool per_row = o->reduction == AG_REDUCTION_NONE;
    const size_t lse_bytes = sizeof(double) * (size_t)(N ? N : 1);
    ag_tensor *xc = ag__contig_or_copy(x), *tc = xc ? ag__contig_or_copy(t) : NULL;
    ag_tensor *p = tc ? ag__new_unowned(x->dtype, 2, x->shape, false) : NULL;
    double *lse = p ? ag__cache_alloc(lse_bytes) : NULL;
    ag_tensor *y = lse ? ag__new(x->dtype, per_row ? 1 : 0, &N) : NULL;
    if (!y) {
        ag_release(xc);
        ag_release(tc);
        ag_release(p);
        ag__cache_free(lse, lse_bytes);
        free_weights(wv, C);
        return NULL;
    }
    ag__softmax_rows_lse(xc, p, lse);
    const double eps = o->label_smoothing;
    double sum = x->dtype == AG_F64
                     ? ce_loss_f64((const double *)ag__ptr(xc), (const int64_t *)ag__ptr(tc), lse, N, C, wv, eps, o->ignore_index, per_row ? (double *)ag__ptr(y) : NULL)
                     : ce_loss_f32((const float *)ag__ptr(xc), (const int64_t *)ag__ptr(tc), lse, N, C, wv, eps, o->ignore_index, per_row ? (float *)ag__ptr(y) : NULL);
    ag__cache_free(lse, lse_bytes);
    free_weights(wv, C);
    ag_release(xc);
    ag_release(tc);
    const double scale = o->reduction == AG_REDUCTION_MEAN ? 1 / total : 1;
    if (!per_row) ag__write(y, 0, sum * scale); /* mean over no target: 0 / 0 = NaN, as PyTorch */
    ag_tensor *in[3] = {x, t, (ag_tensor *)w};
    y = ag__record_saved(y, &ag__op_cross_entropy, in, w ? 3 : 2, p);
    if (y && y->op) {
        y->attr.a = eps;
        y->attr.b = scale;
        y->attr.i[0] = o->reduction;
        y->attr.i[1] = o->ignore_index;
    }
    return ag__check_finite(y, ag__op_cross_entropy.name);
}

/* Registry call: targets n mod C with the second one ignored, weights 0.5 + k/4, ε = arg[0], mean. */
static ag_tensor *ce_test_call(ag_tensor *const *in, int n, void *ctx) {
    (void)n;
    const ag_op *op = ctx;
    ag_tensor *x = in[0];
    const int64_t N = x->shape[0], C = x->shape[1];
    ag_tensor *t = ag_empty(AG_SHAPE(N), AG_I64), *w = ag_empty(AG_SHAPE(C), x->dtype);
    if (!t || !w) return NULL;
    for (int64_t k = 0; k < N; k++) ((int64_t *)ag__ptr(t))[k] = k == 1 ? -100 : k % C;
    for (int64_t k = 0; k < C; k++) ag__write(w, k, 0.5 + (double)k / 4);
    ag_loss_opts o = ag_loss_defaults();
    o.weight = w;
    o.label_smoothing = op->arg[0];
    return cross_entropy_fused("cross_entropy", x, t, &o);
}

/* cross_entropy under the name loss (harmonic_loss reuses it on its logits). */
static ag_tensor *cross_entropy(const char *loss, ag_tensor *input, ag_tensor *target, const ag_loss_opts *o) {
    int64_t c = 0;
    if (ag__loss_check_float(loss, "input", input, NULL)) return NULL;
    if (!(o->label_smoothing >= 0 && o->label_smoothing <= 1))
        return ag__fail_null(AG_ERR_ARG, "%s: label_smoothing must be between 0.0 and 1.0, got %g", loss,
                             o->label_smoothing);
    bool probs = target->dtype == AG_F32 || target->dtype == AG_F64;
    if (probs) {
        if (ag__loss_check_float(loss, "target", target, input) ||
            ag__loss_check_same_shape(loss, "target", target, "input", input))
            return NULL;
        if (o->ignore_index >= 0)
            return ag__fail_null(AG_ERR_ARG, "%s: ignore_index (%lld) is not supported for class-probability targets",
                                 loss, (long long)o->ignore_index);
        if (input->ndim == 0) return ag__fail_null(AG_ERR_SHAPE, "%s: input must have a class dim, got a 0-d tensor", loss);
        c = input->shape[input->ndim == 1 ? 0 : 1];
    } else if (check_class_target(loss, input, target, &c)) {
        return NULL;
    }
    if (check_class_weight(loss, o->weight, input, c)) return NULL;
    if (AG__LOSS_BEGIN()) return NULL;
    ag_tensor *x = input, *t = target, *l;
    if (probs) {
        if (x->ndim == 1) { /* [C] -> [1, C] */
            x = ag_unsqueeze(x, 0);
            t = ag_unsqueeze(t, 0);
        }
        l = x && t ? cross_entropy_probs(x, t, o, c) : NULL;
    } else {
        promote(&x, &t);
        bool fused = x && t && x->ndim == 2 && !(o->weight && o->weight->requires_grad);
        l = !x || !t ? NULL : fused ? cross_entropy_fused(loss, x, t, o) : cross_entropy_indices(loss, x, t, o, c);
    }
    if (o->reduction == AG_REDUCTION_NONE && input->ndim == 1) l = ag_reshape(l, AG_SCALAR_SHAPE);
    return ag__loss_end(l);
}

/* l = -w[y] log_softmax(x)[y] (+ label smoothing);  dx = w[y] (softmax(x) - onehot(y)) for one target */
ag_tensor *ag_cross_entropy(ag_tensor *input, ag_tensor *target, const ag_loss_opts *o) {
    AG_CHECK_HANDLES(NULL, "cross_entropy", input, target);
    ag_loss_opts buf;
    if (!input || !target || !(o = ag__loss_opts("cross_entropy", o, &buf, false))) return NULL;
    return cross_entropy("cross_entropy", input, target, o);
}

/* logits_nc = -n log ||x_n - w_c|| = -(n / 2) log Σ_d (x_nd - w_cd)²;  l = cross_entropy(logits, y), i.e.
 * -log p_y with p_c = d_c^-n / Σ_j d_j^-n;  dx_n = Σ_c (p_c - [c = y]) (-n (x_n - w_c) / d_c²) for one target */
ag_tensor *ag_harmonic_loss(ag_tensor *x, ag_tensor *centres, ag_tensor *target, double n, const ag_loss_opts *o) {
    AG_CHECK_HANDLES(NULL, "harmonic_loss", x, centres, target);
    static const char *const L = "harmonic_loss";
    ag_loss_opts buf;
    if (!x || !centres || !target || !(o = ag__loss_opts(L, o, &buf, false))) return NULL;
    if (ag__loss_check_float(L, "x", x, NULL) || ag__loss_check_float(L, "centres", centres, x)) return NULL;
    char a[AG_SHAPE_STR], b[AG_SHAPE_STR], c[AG_SHAPE_STR];
    if (x->ndim != 2 || centres->ndim != 2 || x->shape[1] != centres->shape[1])
        return ag__fail_null(AG_ERR_SHAPE, "harmonic_loss: expected x [N, D] and centres [C, D], got %s and %s",
                             ag__tshape(a, x), ag__tshape(b, centres));
    if (target->dtype != AG_I64)
        return ag__fail_null(AG_ERR_DTYPE, "%s: target must be int64 class indices, got %s", L,
                             ag_dtype_name(target->dtype));
    if (target->ndim != 1 || target->shape[0] != x->shape[0])
        return ag__fail_null(AG_ERR_SHAPE, "harmonic_loss: expected target [%lld] for x %s, got %s",
                             (long long)x->shape[0], ag__tshape(a, x), ag__tshape(c, target));
    if (!(n > 0) || isinf(n))
        return ag__fail_null(AG_ERR_ARG, "harmonic_loss: the harmonic exponent n must be positive and finite, got %g", n);
    if (AG__LOSS_BEGIN()) return NULL;
    ag_tensor *diff = ag_sub(ag_unsqueeze(x, 1), ag_unsqueeze(centres, 0)); /* [N, C, D] */
    ag_tensor *logits = ag_mul_scalar(ag_log(ag_sum_dim(ag_square(diff), 2, false)), -n / 2);
    return ag__loss_end(logits ? cross_entropy(L, logits, target, o) : NULL);
}

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
#include "loss_internal.h"

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
        int64_t v = (int64_t)ag__loss_at(t, k);
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

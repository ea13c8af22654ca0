/*
 * loss.c - the loss options and what every loss shares: defaults, checks with
 * messages naming the loss, reduction.  Every loss is a composite: its body runs
 * between ag__composite_begin and ag__composite_end (core/internal.h).
 */
#include "nn/loss_internal.h"
#include "agrad/ops.h"

ag_loss_opts ag_loss_defaults(void) {
    ag_loss_opts o = AG_LOSS_DEFAULTS;
    return o;
}

const ag_loss_opts *ag__loss_opts(const char *loss, const ag_loss_opts *o, ag_loss_opts *buf, bool batchmean_ok) {
    if (o) *buf = *o;
    else *buf = ag_loss_defaults();
    const ag_tensor *weight = buf->weight, *pos_weight = buf->pos_weight;
    AG_CHECK_HANDLES(NULL, loss, weight, pos_weight);
    switch (buf->reduction) {
    case AG_REDUCTION_MEAN:
    case AG_REDUCTION_SUM:
    case AG_REDUCTION_NONE: return buf;
    case AG_REDUCTION_BATCHMEAN:
        if (batchmean_ok) return buf;
        return ag__fail_null(AG_ERR_ARG, "%s: reduction batchmean is only valid for kl_div", loss);
    }
    return ag__fail_null(AG_ERR_ARG, "%s: invalid reduction %d (use AG_REDUCTION_MEAN, _SUM or _NONE)", loss,
                         (int)buf->reduction);
}

ag_status ag__loss_check_float(const char *loss, const char *what, const ag_tensor *t, const ag_tensor *like) {
    if (t->dtype != AG_F32 && t->dtype != AG_F64)
        return ag__fail(AG_ERR_DTYPE, "%s: %s must be float32 or float64, got %s", loss, what, ag_dtype_name(t->dtype));
    if (like && like->dtype != t->dtype)
        return ag__fail(AG_ERR_DTYPE, "%s: %s is %s but the input is %s (convert with ag_to_dtype)", loss, what,
                        ag_dtype_name(t->dtype), ag_dtype_name(like->dtype));
    return AG_OK;
}

ag_status ag__loss_check_broadcast(const char *loss, const char *wa, const ag_tensor *a, const char *wb,
                                   const ag_tensor *b) {
    int ndim;
    int64_t shape[AG_MAX_DIMS];
    if (ag__broadcast_dims(a->ndim, a->shape, b->ndim, b->shape, &ndim, shape)) {
        char x[AG_SHAPE_STR], y[AG_SHAPE_STR];
        return ag__fail(AG_ERR_SHAPE, "%s: %s %s and %s %s cannot be broadcast together", loss, wa,
                        ag__tshape(x, a), wb, ag__tshape(y, b));
    }
    return AG_OK;
}

ag_status ag__loss_check_broadcast_to(const char *loss, const char *wfrom, const ag_tensor *from, const char *wto,
                                      const ag_tensor *to) {
    if (!ag__broadcastable(from->ndim, from->shape, to->ndim, to->shape)) {
        char x[AG_SHAPE_STR], y[AG_SHAPE_STR];
        return ag__fail(AG_ERR_SHAPE, "%s: %s %s does not broadcast to the %s's shape %s", loss, wfrom,
                        ag__tshape(x, from), wto, ag__tshape(y, to));
    }
    return AG_OK;
}

ag_status ag__loss_check_same_shape(const char *loss, const char *wa, const ag_tensor *a, const char *wb,
                                    const ag_tensor *b) {
    bool same = a->ndim == b->ndim;
    for (int d = 0; same && d < a->ndim; d++) same = a->shape[d] == b->shape[d];
    if (!same) {
        char x[AG_SHAPE_STR], y[AG_SHAPE_STR];
        return ag__fail(AG_ERR_SHAPE, "%s: %s size %s must be the same as %s size %s", loss, wa, ag__tshape(x, a),
                        wb, ag__tshape(y, b));
    }
    return AG_OK;
}

ag_tensor *ag__loss_reduce(ag_tensor *l, ag_reduction r) {
    if (!l) return NULL;
    switch (r) {
    case AG_REDUCTION_MEAN: return ag_mean(l);
    case AG_REDUCTION_SUM: return ag_sum(l);
    case AG_REDUCTION_BATCHMEAN: return l->ndim ? ag_div_scalar(ag_sum(l), (double)l->shape[0]) : ag_sum(l);
    case AG_REDUCTION_NONE: break;
    }
    return l;
}

ag_tensor *ag__loss_const(const ag_tensor *t, double v) { return t ? ag_scalar(v, t->dtype) : NULL; }

/* log(1 + e^z) = max(z, 0) + log1p(e^-|z|);  dz = σ(z) */
ag_tensor *ag__loss_softplus(ag_tensor *z) {
    if (!z) return NULL;
    return ag_add(ag_maximum(z, ag__loss_const(z, 0)), ag_log1p(ag_exp(ag_neg(ag_abs(z)))));
}

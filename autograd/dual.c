/*
 * autograd/dual.c - dual tensors (torch.autograd.forward_ad.make_dual, unpack_dual)
 * on top of the forward-mode engine of autograd/forward.c (docs/forward-mode.md).
 */
#include <string.h>
#include "autograd/tape.h"
#include "agrad/autograd.h"

/* y = primal (an alias carrying a tangent);  dprimal = dy */
static ag_status alias_backward(ag_tensor *out, ag_tensor *gout) {
    return ag__wants(out, 0) ? ag__accumulate_last(out->in[0], ag_retain(gout), gout) : AG_OK;
}

/* dprimal = dy, as a tensor that create_graph can differentiate again (gout itself) */
static ag_status alias_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin) {
    (void)out;
    gin[0] = gout;
    return AG_OK;
}

static const ag_op row_make_dual = {.name = "make_dual", .grad_fn = "AliasBackward0", .backward = alias_backward,
                                    .math = "y = primal, carrying a tangent;  dprimal = dy",
                                    .backward_graph = alias_backward_graph};

ag_tensor *ag_make_dual(ag_tensor *primal, ag_tensor *tangent) {
    AG_CHECK_HANDLES(NULL, "make_dual", primal, tangent);
    if (!primal || !tangent) return NULL; /* a failed op's NULL passes through, its error kept (design.md#errors) */
    if (!ag__fw_open_level()) return ag__fail_null(AG_ERR_GRAPH, "make_dual: no dual level is open (ag_dual_level_begin)");
    char a[AG_SHAPE_STR], b[AG_SHAPE_STR];
    if (primal->ndim != tangent->ndim || memcmp(primal->shape, tangent->shape, sizeof(int64_t) * (size_t)primal->ndim))
        return ag__fail_null(AG_ERR_SHAPE, "make_dual: tangent %s must have the primal's shape %s",
                             ag__tshape(a, tangent), ag__tshape(b, primal));
    if (primal->dtype != AG_F32 && primal->dtype != AG_F64)
        return ag__fail_null(AG_ERR_DTYPE, "make_dual: the primal is %s; only floating tensors carry a tangent",
                             ag_dtype_name(primal->dtype));
    if (tangent->dtype != primal->dtype)
        return ag__fail_null(AG_ERR_DTYPE, "make_dual: tangent is %s, the primal %s", ag_dtype_name(tangent->dtype),
                             ag_dtype_name(primal->dtype));
    if (ag__fw_flush()) return NULL;
    /* a view of the primal, differentiable in reverse mode as the primal, recorded
     * with forward mode paused so that a tangent the primal has is not carried over */
    ag_tensor *y = ag__new_view(primal, primal->ndim, primal->shape, primal->stride, primal->offset);
    if (!y) return NULL;
    ag__fw_level = 0;
    bool ok = !ag__needs_grad1(primal) || ag__record(y, &row_make_dual, &primal, 1);
    ag__fw_level = ag__fw_open_level();
    if (!ok) return NULL;
    ag__ref_take(&tangent->refcount);
    ag__tangent_set(y, tangent, ag__fw_open_level());
    return y;
}

ag_tensor *ag_tangent(ag_tensor *t) {
    AG_CHECK_HANDLES(NULL, "tangent", t);
    if (!t || !ag__fw_open_level()) return NULL;
    if (t->tangent_pending) {
        if (ag__fw_flush()) return NULL;
    }
    if (t->tangent_level != ag__fw_open_level() || !t->tangent) return NULL;
    ag__ref_take(&t->tangent->refcount);
    return ag__own(t->tangent);
}

ag_status ag_jvp(ag_fn fn, void *ctx, ag_tensor *const *inputs, int n, ag_tensor *const *tangents, ag_tensor **out,
                 ag_tensor **jvp) {
    if (out) *out = NULL;
    if (jvp) *jvp = NULL;
    if (!fn || !inputs || !tangents || n < 1 || !out || !jvp)
        return ag__fail(AG_ERR_ARG, "jvp: fn, inputs, tangents, out and jvp must be given, with n >= 1 (got n = %d)", n);
    AG_CHECK_HANDLE_ARRAY(AG_ERR_ARG, "jvp", inputs, n);
    for (int i = 0; i < n; i++)
        if (!inputs[i]) return ag__fail(AG_ERR_ARG, "jvp: input %d is NULL", i);
    if (ag__fw_open_level())
        return ag__fail(AG_ERR_GRAPH, "jvp: a dual level is open on this thread already (jvp opens its own)");
    ag_tensor *inl[8], **dual = n <= 8 ? inl : ag__alloc(sizeof(ag_tensor *) * (size_t)n);
    if (!dual) return ag__fail(AG_ERR_NOMEM, "jvp: out of memory");
    ag_status s = ag_scope_begin();
    if (s) {
        if (dual != inl) ag__free(dual);
        return ag__fail(AG_ERR_NOMEM, "jvp: out of memory");
    }
    ag_dual_level_begin();
    ag_tensor *y = NULL, *t = NULL;
    for (int i = 0; i < n && !s; i++) /* make_dual names what is wrong with a tangent */
        if (!(dual[i] = tangents[i] ? ag_make_dual(inputs[i], tangents[i]) : inputs[i])) s = ag_last_status();
    if (!s && !(y = fn(dual, n, ctx))) s = ag_last_status() ? ag_last_status() : ag__fail(AG_ERR_ARG, "jvp: fn returned NULL");
    if (!s) s = ag__fw_flush(); /* a failed tangent rule reports here */
    if (!s && !(t = ag_tangent(y)) && (y->dtype == AG_F32 || y->dtype == AG_F64))
        t = ag_zeros_like(y); /* y does not depend on the inputs */
    ag_status e = ag_dual_level_end();
    if (!s) s = e;
    if (!s) {
        *out = ag_keep(y);
        *jvp = t ? ag_keep(t) : NULL;
    }
    ag_scope_end();
    if (dual != inl) ag__free(dual);
    return s;
}

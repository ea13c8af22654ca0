/*
 * inplace.c - in-place updates (suffix _) for optimizers and initialisation.
 *
 * They are not recorded on the tape.  Each bumps the storage version so that
 * backward detects a saved tensor changed after it was recorded.  In grad mode
 * they refuse a tensor that requires grad (as PyTorch refuses a leaf), since
 * the change would not be differentiated; wrap optimizer updates in
 * ag_no_grad_begin/end.  A destination whose elements share memory (an expanded
 * view) is refused, as PyTorch refuses it; a source that overlaps the destination
 * other than element for element is read from a copy, so x += x.T and
 * x[1:] = x[:-1] give what they would with separate tensors.
 */
#include <tgmath.h>
#include "core/parallel.h"
#include "autograd/tape.h"

typedef enum { IP_ADD, IP_MUL, IP_DIV, IP_COPY, IP_CLAMP, IP_FILL } ip_kind;

typedef struct ip_ctx {
    ip_kind kind;
    double alpha, lo, hi;
} ip_ctx;

/* One loop per kind, with a contiguous case the compiler vectorises. */
#define IP_LOOP(T, EXPR)                                                               \
    if (s[0] == sizeof(T) && (s[1] == sizeof(T) || s[1] == 0)) {                      \
        T *d = (T *)p[0]; /* no restrict: other may be t itself or overlap it */       \
        const T *o = (const T *)p[1];                                                  \
        const int64_t os = s[1] / (int64_t)sizeof(T);                                  \
        (void)o, (void)os;                                                             \
        for (int64_t i = 0; i < n; i++) d[i] = (EXPR(d[i], o[i * os]));                \
    } else {                                                                           \
        for (int64_t i = 0; i < n; i++) {                                              \
            T *d = (T *)(p[0] + i * s[0]);                                             \
            *d = (EXPR(*d, *(const T *)(p[1] + i * s[1])));                            \
        }                                                                              \
    }
#define IP_ADD_E(d, o) d + alpha * o
#define IP_MUL_E(d, o) d * o
#define IP_DIV_E(d, o) d / o
#define IP_CLAMP_E(d, o) d < lo ? lo : (d > hi ? hi : d)
#define IP_FILL_E(d, o) alpha

/* p[0] is the tensor changed in place, p[1] the other operand (clamp and fill get
 * the tensor itself there, unused). */
#define IP_KERNEL(NAME, T)                                                             \
    static void NAME(char **p, const int64_t *s, int64_t n, void *vctx) {             \
        const ip_ctx *c = vctx;                                                        \
        const T alpha = (T)c->alpha, lo = (T)c->lo, hi = (T)c->hi;                     \
        (void)lo, (void)hi;                                                            \
        switch (c->kind) {                                                             \
        case IP_ADD: IP_LOOP(T, IP_ADD_E) break;                                       \
        case IP_MUL: IP_LOOP(T, IP_MUL_E) break;                                       \
        case IP_DIV: IP_LOOP(T, IP_DIV_E) break;                                       \
        case IP_COPY: break;                                                           \
        case IP_CLAMP: IP_LOOP(T, IP_CLAMP_E) break;                                   \
        case IP_FILL: IP_LOOP(T, IP_FILL_E) break;                                     \
        }                                                                              \
    }
IP_KERNEL(ip_f32, float)
IP_KERNEL(ip_f64, double)

static bool writable(const char *op, ag_tensor *t) {
    AG_CHECK_HANDLES(false, op, t);
    if (!t) return false;
    if (ag__no_grad_depth == 0 && t->requires_grad) {
        char s[AG_SHAPE_STR];
        ag__fail(AG_ERR_GRAPH, "%s: a tensor %s that requires grad is being used in an in-place operation; "
                               "do it under ag_no_grad_begin()/ag_no_grad_end()", op, ag__tshape(s, t));
        return false;
    }
    return ag__check_no_internal_overlap(op, t) == AG_OK && ag__check_inference_write(op, t) == AG_OK;
}

/* The operand an in-place update of t reads: other itself, or a copy of it (*copy, owned by
 * the caller) when it shares bytes with t other than element for element, so that no
 * element is read after the update wrote it (x += x.T, x[1:] = x[:-1]).  NULL on ENOMEM. */
static const ag_tensor *unaliased(ag_tensor *t, const ag_tensor *other, ag_tensor **copy) {
    *copy = NULL;
    if (ag__overlap(t, other) != AG_OVERLAP_PARTIAL) return other;
    *copy = ag__new_unowned(other->dtype, other->ndim, other->shape, false);
    if (*copy) ag__copy_into(*copy, other);
    return *copy;
}

static ag_tensor *apply(const char *op, ag_tensor *t, const ag_tensor *other, ip_ctx c) {
    if (!writable(op, t)) return NULL;
    if (t->dtype != AG_F32 && t->dtype != AG_F64 && c.kind != IP_FILL)
        return ag__fail_null(AG_ERR_DTYPE, "%s: needs a floating tensor, got %s", op, ag_dtype_name(t->dtype));
    const ag_tensor *o = other;
    ag_tensor *converted = NULL;
    if (other) {
        char s1[AG_SHAPE_STR], s2[AG_SHAPE_STR];
        if (!ag__broadcastable(other->ndim, other->shape, t->ndim, t->shape))
            return ag__fail_null(AG_ERR_SHAPE, "%s: other %s cannot be broadcast to %s", op, ag__tshape(s1, other),
                                 ag__tshape(s2, t));
        if (other->dtype != t->dtype) { /* convert first (a copy, so no longer overlapping t) */
            o = converted = ag__new_unowned(t->dtype, other->ndim, other->shape, false);
            if (!converted) return NULL;
            ag__copy_into(converted, other);
        } else if (!(o = unaliased(t, other, &converted))) {
            return NULL;
        }
    }
    ag_iter it;
    ag__iter_init(&it, t->ndim, t->shape);
    ag__iter_add(&it, t);
    ag__iter_add(&it, o ? o : t);
    if (c.kind == IP_FILL && t->dtype != AG_F32 && t->dtype != AG_F64) {
        /* integer fills go through a converting copy of a scalar */
        ag_tensor *v = ag__new_unowned(AG_F64, 0, NULL, false);
        if (!v) return NULL;
        *(double *)ag__ptr(v) = c.alpha;
        ag__copy_into(t, v);
        ag_release(v);
    } else {
        ag__iter_run_par(&it, t->dtype == AG_F64 ? ip_f64 : ip_f32, &c);
    }
    ag_release(converted);
    ag__bump_version(t);
    return t;
}

ag_tensor *ag_add_(ag_tensor *t, const ag_tensor *other, double alpha) {
    AG_CHECK_HANDLES(NULL, "add_", t, other);
    return other ? apply("add_", t, other, (ip_ctx){IP_ADD, alpha, 0, 0}) : NULL;
}
ag_tensor *ag_sub_(ag_tensor *t, const ag_tensor *other) {
    AG_CHECK_HANDLES(NULL, "sub_", t, other);
    return other ? apply("sub_", t, other, (ip_ctx){IP_ADD, -1, 0, 0}) : NULL;
}
ag_tensor *ag_mul_(ag_tensor *t, const ag_tensor *other) {
    AG_CHECK_HANDLES(NULL, "mul_", t, other);
    return other ? apply("mul_", t, other, (ip_ctx){IP_MUL, 0, 0, 0}) : NULL;
}
ag_tensor *ag_div_(ag_tensor *t, const ag_tensor *other) {
    AG_CHECK_HANDLES(NULL, "div_", t, other);
    return other ? apply("div_", t, other, (ip_ctx){IP_DIV, 0, 0, 0}) : NULL;
}
ag_tensor *ag_fill_(ag_tensor *t, double value) { return apply("fill_", t, NULL, (ip_ctx){IP_FILL, value, 0, 0}); }
ag_tensor *ag_zero_(ag_tensor *t) { return ag_fill_(t, 0); }
ag_tensor *ag_clamp_(ag_tensor *t, double lo, double hi) {
    AG_CHECK_HANDLES(NULL, "clamp_", t);
    if (lo > hi) return ag__fail_null(AG_ERR_ARG, "clamp_: min %g is greater than max %g", lo, hi);
    return apply("clamp_", t, NULL, (ip_ctx){IP_CLAMP, 0, lo, hi});
}

ag_tensor *ag_add_scalar_(ag_tensor *t, double s) {
    if (!writable("add_scalar_", t)) return NULL;
    ag_tensor v = {0};
    ag_storage st = {.refcount = 1, .data = &s};
    v.dtype = AG_F64;
    v.storage = &st;
    return apply("add_scalar_", t, &v, (ip_ctx){IP_ADD, 1, 0, 0});
}

ag_tensor *ag_mul_scalar_(ag_tensor *t, double s) {
    if (!writable("mul_scalar_", t)) return NULL;
    ag_tensor v = {0};
    ag_storage st = {.refcount = 1, .data = &s};
    v.dtype = AG_F64;
    v.storage = &st;
    return apply("mul_scalar_", t, &v, (ip_ctx){IP_MUL, 0, 0, 0});
}

ag_tensor *ag_copy_(ag_tensor *dst, const ag_tensor *src) {
    AG_CHECK_HANDLES(NULL, "copy_", dst, src);
    if (!dst || !src || !writable("copy_", dst)) return NULL;
    char s1[AG_SHAPE_STR], s2[AG_SHAPE_STR];
    if (!ag__broadcastable(src->ndim, src->shape, dst->ndim, dst->shape))
        return ag__fail_null(AG_ERR_SHAPE, "copy_: source %s cannot be broadcast to %s", ag__tshape(s1, src),
                             ag__tshape(s2, dst));
    ag_tensor *copy;
    const ag_tensor *from = unaliased(dst, src, &copy);
    if (!from) return NULL;
    ag__copy_into(dst, from);
    ag_release(copy);
    ag__bump_version(dst);
    return dst;
}

/*
 * inplace.c - in-place updates (suffix _): optimizer steps, initialisation, and
 * in-place arithmetic inside a graph.
 *
 * Each bumps the storage version so that backward detects a saved tensor changed
 * after it was recorded.  When grad mode is on and the tensor or the other operand
 * requires grad, the update is recorded on the tape as PyTorch records it: the
 * tensor's history becomes "old tensor, then the op" (autograd/rebase.c moves its
 * node into a hidden header), and the adjoint reads a copy of the old values taken
 * before the write when it needs them.  A leaf that requires grad is refused in
 * grad mode, as PyTorch refuses it (wrap optimizer updates in
 * ag_no_grad_begin/end), and so is a view of such a leaf.  An update of a view is
 * recorded on its base, as PyTorch's CopySlices: the base's history becomes "old
 * base, then the op applied to the view's elements" (autograd/rebase.c).
 * A destination whose elements share memory (an expanded view) is refused, as
 * PyTorch refuses it; a source that overlaps the destination other than element
 * for element is read from a copy, so x += x.T and x[1:] = x[:-1] give what they
 * would with separate tensors.
 *
 * Forward mode (docs/forward-mode.md): while a dual level is open, an update of a
 * tensor that carries a tangent, or by an operand that does, updates the tangent as
 * PyTorch's forward AD does: the op's tangent rule gives the new tangent, written in
 * place into the old one (so that the tangents of views, views of it, follow), or
 * set as the tensor's first tangent.
 */
#include <tgmath.h>
#include "core/parallel.h"
#include "autograd/tape.h"
#include "agrad/ops.h"

typedef enum { IP_ADD, IP_MUL, IP_DIV, IP_COPY, IP_CLAMP, IP_FILL, IP_RELU, IP_MASK } ip_kind;

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
#define IP_RELU_E(d, o) d < 0 ? 0 : d
#define IP_MASK_E(d, o) o != 0 ? alpha : d

/* p[0] is the tensor changed in place, p[1] the other operand (clamp, fill and relu
 * get the tensor itself there, unused; masked_fill its mask converted to 0 and 1). */
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
        case IP_RELU: IP_LOOP(T, IP_RELU_E) break;                                     \
        case IP_MASK: IP_LOOP(T, IP_MASK_E) break;                                     \
        }                                                                              \
    }
IP_KERNEL(ip_f32, float)
IP_KERNEL(ip_f64, double)

/* Whether an in-place update of t by other (NULL: a scalar or none) is recorded: t,
 * its view base or other requires grad.  A stale view is refreshed first (false, with
 * an error recorded, on ENOMEM: *failed set). */
static bool recording(ag_tensor *t, const ag_tensor *other, bool *failed) {
    *failed = false;
    if (ag__no_grad_depth) return false;
    if (t->view_base && ag__view_stale(t) && ag__refresh_view(t)) return !(*failed = true);
    return t->requires_grad || (t->view_base && t->view_base->requires_grad) || (other && other->requires_grad);
}

/* The checks of every in-place update of t (other: the operand tensor recorded as
 * an input, or NULL); false with an error recorded.  *rec: whether it is recorded. */
static bool writable(const char *op, ag_tensor *t, const ag_tensor *other, bool *rec) {
    AG_CHECK_HANDLES(false, op, t);
    if (!t) return false;
    if (ag__check_no_internal_overlap(op, t) || ag__check_inference_write(op, t)) return false;
    bool failed;
    if (!(*rec = recording(t, other, &failed))) return !failed;
    return ag__write_check(op, t) == AG_OK && ag__write_check_operand(op, t, other) == AG_OK;
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

/* ---- recording ------------------------------------------------------------------------------ */
/* A node of an in-place op: in[0] the hidden header holding the tensor's history before
 * the write, in[1] the other operand (none for scalars); attr.i[0] the ip_kind, attr.i[1]
 * set when the other operand was the tensor itself, attr.a alpha or the scalar, attr.a
 * and attr.b clamp's bounds; saved, when the adjoint reads them, the values before the
 * write (t0 below).  A write through a view records the same on the view's base as a
 * CopySlices node (in[1] the operand, NULL for none; in[2] the view's history, whose
 * geometry picks the elements the op changed). */
static ag_status inplace_backward(ag_tensor *out, ag_tensor *gout);
static ag_status inplace_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin);
static ag_status copyslices_backward(ag_tensor *out, ag_tensor *gout);

#define INPLACE_ROW(NAME, GRAD_FN, SAVES, MATH)                                                   \
    static const ag_op row_##NAME = {.name = #NAME, .grad_fn = GRAD_FN, .backward = inplace_backward, \
                                     .saves = AG_OP_INPLACE | (SAVES),                            \
                                     .math = MATH,                                                \
                                     .backward_graph = inplace_backward_graph};                   \
    static const ag_op cs_##NAME = {.name = #NAME, .grad_fn = "CopySlices", .backward = copyslices_backward, \
                                    .saves = AG_OP_INPLACE | (SAVES),                             \
                                    .math = "b[v] = (" MATH ") on b's elements v;  db = dy outside v"}
INPLACE_ROW(add_, "AddBackward0", 0, "t += α·o;  dt = dy,  do = α·dy");
INPLACE_ROW(sub_, "SubBackward0", 0, "t -= o;  dt = dy,  do = -dy");
INPLACE_ROW(mul_, "MulBackward0", AG_SAVES_IN1, "t *= o;  dt = dy·o,  do = dy·t0");
INPLACE_ROW(div_, "DivBackward0", AG_SAVES_IN1, "t /= o;  dt = dy/o,  do = -dy·t0/o²");
/* The tensor times or over itself: the adjoint reads other's values from t0. */
INPLACE_ROW(mul_self, "MulBackward0", 0, "t *= t;  dt = 2·dy·t0");
INPLACE_ROW(div_self, "DivBackward0", 0, "t /= t;  dt = 0");
INPLACE_ROW(add_scalar_, "AddBackward0", 0, "t += s;  dt = dy");
INPLACE_ROW(mul_scalar_, "MulBackward0", 0, "t *= s;  dt = s·dy");
INPLACE_ROW(clamp_, "ClampBackward1", 0, "t = min(max(t, lo), hi);  dt = dy where lo <= t0 <= hi, else 0");
INPLACE_ROW(copy_, "CopyBackwards", 0, "t = o;  dt = 0,  do = dy");
INPLACE_ROW(fill_, "FillBackward0", 0, "t = v;  dt = 0");
INPLACE_ROW(zero_, "ZeroBackward0", 0, "t = 0;  dt = 0");
/* relu_ declares its result read, as PyTorch's saves it: a later write fails backward. */
INPLACE_ROW(relu_, "ReluBackward0", AG_SAVES_OUT, "t = max(t, 0);  dt = dy where t0 > 0, else 0");
INPLACE_ROW(masked_fill_, "MaskedFillBackward0", AG_SAVES_IN1, "t = v where m;  dt = dy where not m, else 0");

/* What an adjoint computes, elementwise from g = dy, o (the other operand's values,
 * broadcast) and t0 (the values before the write). */
typedef enum { B_SCALE, B_MUL_O, B_DIV_O, B_MUL_T0, B_DIV_OTHER, B_CLAMP, B_RELU, B_UNMASKED } bwd_kind;

typedef struct bwd_ctx {
    bwd_kind kind;
    double alpha, lo, hi;
} bwd_ctx;

/* operands: result, g, o, t0 (g standing in for an operand not read) */
#define BWD_KERNEL(NAME, T)                                                                 \
    static void NAME(char **p, const int64_t *s, int64_t n, void *vctx) {                  \
        const bwd_ctx *c = vctx;                                                            \
        for (int64_t i = 0; i < n; i++) {                                                   \
            const T g = *(const T *)(p[1] + i * s[1]), o = *(const T *)(p[2] + i * s[2]);   \
            const T t0 = *(const T *)(p[3] + i * s[3]);                                     \
            T r = 0;                                                                        \
            switch (c->kind) {                                                              \
            case B_SCALE: r = (T)c->alpha * g; break;                                       \
            case B_MUL_O: r = g * o; break;                                                 \
            case B_DIV_O: r = g / o; break;                                                 \
            case B_MUL_T0: r = g * t0; break;                                               \
            case B_DIV_OTHER: r = -g * t0 / (o * o); break;                                 \
            case B_CLAMP: r = t0 >= (T)c->lo && t0 <= (T)c->hi ? g : 0; break;              \
            case B_RELU: r = t0 > 0 ? g : 0; break;                                         \
            case B_UNMASKED: r = o != 0 ? 0 : g; break;                                     \
            }                                                                               \
            *(T *)(p[0] + i * s[0]) = r;                                                    \
        }                                                                                   \
    }
BWD_KERNEL(bwd_f32, float)
BWD_KERNEL(bwd_f64, double)

/* A gradient of g's shape computed by kind (NULL operands are not read); owned by the
 * caller, NULL on ENOMEM. */
static ag_tensor *bwd_map(bwd_kind kind, double alpha, double lo, double hi, const ag_tensor *g, const ag_tensor *o,
                          const ag_tensor *t0) {
    ag_tensor *r = ag__new_unowned(g->dtype, g->ndim, g->shape, false);
    if (!r) return NULL;
    bwd_ctx c = {kind, alpha, lo, hi};
    ag_iter it;
    ag__iter_init(&it, g->ndim, g->shape);
    ag__iter_add(&it, r);
    ag__iter_add(&it, g);
    ag__iter_add(&it, o ? o : g);
    ag__iter_add(&it, t0 ? t0 : g);
    ag__iter_run_par(&it, g->dtype == AG_F64 ? bwd_f64 : bwd_f32, &c);
    return r;
}

/* t itself (retained) when of dtype, else a converted copy; owned by the caller. */
static ag_tensor *as_dtype(ag_tensor *t, ag_dtype dtype) {
    if (!t || t->dtype == dtype) return ag__retain(t);
    ag_tensor *c = ag__new_unowned(dtype, t->ndim, t->shape, false);
    if (c) ag__copy_into(c, t);
    return c;
}

/* The gradients of node n's in-place op from g = dL/d(new value): *gt = dL/d(old
 * value) when want_t, *go = dL/d(other) (other's dtype) when want_o; owned by the
 * caller, NULL when not wanted.  AG_ERR_NOMEM with neither on failure. */
static ag_status inplace_grads(const ag_tensor *n, ag_tensor *gout, bool want_t, bool want_o, ag_tensor **gt,
                               ag_tensor **go) {
    const ip_kind kind = (ip_kind)n->attr.i[0];
    const double a = n->attr.a, b = n->attr.b;
    ag_tensor *t0 = n->saved, *other = n->nin > 1 ? n->in[1] : NULL;
    *gt = *go = NULL;
    ag_tensor *o = as_dtype(n->attr.i[1] ? t0 : other, gout->dtype); /* other's values */
    if (other && !o) return AG_ERR_NOMEM;
    bool failed = false;
    if (want_t) {
        ag_tensor *g = NULL;
        switch (kind) {
        case IP_ADD: g = other ? ag__retain(gout) : bwd_map(B_SCALE, 1, 0, 0, gout, NULL, NULL); break; /* dt = dy */
        case IP_MUL: g = other ? bwd_map(B_MUL_O, 0, 0, 0, gout, o, NULL) : bwd_map(B_SCALE, a, 0, 0, gout, NULL, NULL); break;
        case IP_DIV: g = bwd_map(B_DIV_O, 0, 0, 0, gout, o, NULL); break;          /* dt = dy/o */
        case IP_CLAMP: g = bwd_map(B_CLAMP, 0, a, b, gout, NULL, t0); break;        /* dt = dy where lo <= t0 <= hi */
        case IP_COPY: case IP_FILL: g = ag__new_unowned(gout->dtype, gout->ndim, gout->shape, true); break; /* dt = 0 */
        case IP_RELU: g = bwd_map(B_RELU, 0, 0, 0, gout, NULL, t0); break;          /* dt = dy where t0 > 0 */
        case IP_MASK: g = bwd_map(B_UNMASKED, 0, 0, 0, gout, o, NULL); break;       /* dt = dy where not m */
        }
        failed = !(*gt = g);
    }
    if (!failed && other && want_o) {
        ag_tensor *g = NULL;
        switch (kind) {
        case IP_ADD: g = a == 1 ? ag__retain(gout) : bwd_map(B_SCALE, a, 0, 0, gout, NULL, NULL); break; /* do = α·dy */
        case IP_MUL: g = bwd_map(B_MUL_T0, 0, 0, 0, gout, NULL, t0); break;                        /* do = dy·t0 */
        case IP_DIV: g = bwd_map(B_DIV_OTHER, 0, 0, 0, gout, o, t0); break;                        /* do = -dy·t0/o² */
        case IP_COPY: g = ag__retain(gout); break;                                                 /* do = dy */
        case IP_CLAMP: case IP_FILL: case IP_RELU: case IP_MASK: break;
        }
        *go = g ? as_dtype(g, other->dtype) : NULL; /* copy_ converts: so does its gradient */
        failed = g && !*go;
        ag__release(g);
    }
    ag__release(o);
    if (!failed) return AG_OK;
    ag__release(*gt), ag__release(*go);
    *gt = *go = NULL;
    return AG_ERR_NOMEM;
}

static ag_status inplace_backward(ag_tensor *out, ag_tensor *gout) {
    ag_tensor *other = out->nin > 1 ? out->in[1] : NULL, *gt, *go;
    bool want_t = ag__wants(out, 0), want_o = other && ag__wants(out, 1);
    ag_status st = inplace_grads(out, gout, want_t, want_o, &gt, &go);
    if (st == AG_OK && want_t) st = ag__accumulate(out->in[0], gt), gt = NULL;
    if (st == AG_OK && go) st = ag__accumulate(other, go), go = NULL;
    ag__release(gt), ag__release(go);
    return st;
}

/* ---- the adjoint in differentiable ops (create_graph) ----------------------------------------- */
/* The values t had before the write as a tensor of the graph: the saved copy t0, carrying the
 * derivative of the old history h = in[0] (whose storage now holds the new values):
 * t0 + (h - detach(h)).  NULL with AG_ERR_VALUE where h is not finite (the sum would be NaN). */
static ag_tensor *old_values(ag_tensor *n, const char *op) {
    ag_tensor *h = n->in[0];
    ag_tensor *finite = ag_all(ag_isfinite(h));
    if (!finite) return NULL;
    if (ag_item(finite) == 0)
        return ag__fail_null(AG_ERR_VALUE,
                             "%s: create_graph through this in-place update needs its result finite (it holds inf "
                             "or NaN); use the out-of-place op",
                             op);
    return ag_add(ag_detach(n->saved), ag_sub(h, ag_detach(h)));
}

/* dt, do of inplace_grads in agrad ops, so that they are recorded (o: the other operand's
 * values, t0 when it was t itself, whose history is then in[1] too):
 * add_: dt = dy, do = α·dy;  mul_: dt = dy·o (s·dy), do = dy·t0;  div_: dt = dy/o,
 * do = -dy·t0/o²;  clamp_, relu_: dt = dy where t0 passes (a constant mask);
 * masked_fill_: dt = dy where not m;  copy_: dt = 0, do = dy;  fill_, zero_: dt = 0 */
static ag_status inplace_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin) {
    const ip_kind kind = (ip_kind)out->attr.i[0];
    const double a = out->attr.a, b = out->attr.b;
    const bool self = out->attr.i[1] != 0;
    ag_tensor *other = out->nin > 1 ? out->in[1] : NULL, *t0 = NULL;
    const bool want_t = ag__wants(out, 0), want_o = other && ag__wants(out, 1);
    ag_tensor *zero = ag_scalar(0, gout->dtype);
    if (!zero) return ag_last_status();
    if ((kind == IP_MUL || kind == IP_DIV) && other && (want_o || self))
        if (!(t0 = old_values(out, out->op->name))) return ag_last_status();
    ag_tensor *o = self ? t0 : other;
    if (want_t) {
        ag_tensor *s = out->saved; /* the values before the write, for the masks */
        switch (kind) {
        case IP_ADD: gin[0] = gout; break;
        case IP_MUL: gin[0] = o ? ag_mul(gout, o) : ag_mul_scalar(gout, a); break;
        case IP_DIV: gin[0] = ag_div(gout, o); break;
        case IP_CLAMP: /* lo <= t0 <= hi (NaN: 0) */
            gin[0] = ag_where(ag_ge(s, ag_scalar(a, s->dtype)), ag_where(ag_le(s, ag_scalar(b, s->dtype)), gout, zero),
                              zero);
            break;
        case IP_RELU: gin[0] = ag_where(ag_gt(s, ag_scalar(0, s->dtype)), gout, zero); break;
        case IP_MASK: gin[0] = ag_where(other, zero, gout); break;
        case IP_COPY: case IP_FILL: gin[0] = ag_zeros_like(gout); break;
        }
        if (!gin[0]) return ag_last_status();
    }
    if (want_o && kind != IP_CLAMP && kind != IP_FILL && kind != IP_RELU && kind != IP_MASK) {
        switch (kind) {
        case IP_ADD: gin[1] = a == 1 ? gout : ag_mul_scalar(gout, a); break;
        case IP_MUL: gin[1] = ag_mul(gout, t0); break;
        case IP_DIV: gin[1] = ag_neg(ag_div(ag_mul(gout, t0), ag_square(o))); break;
        default: gin[1] = ag_to_dtype(gout, other->dtype); break; /* copy_ */
        }
        if (!gin[1]) return ag_last_status();
    }
    return AG_OK;
}

/* p[0] += p[1] */
static void add_kernel(char **p, const int64_t *s, int64_t n, void *vctx) {
    const bool f64 = *(const bool *)vctx;
    for (int64_t i = 0; i < n; i++) {
        if (f64) *(double *)(p[0] + i * s[0]) += *(const double *)(p[1] + i * s[1]);
        else *(float *)(p[0] + i * s[0]) += *(const float *)(p[1] + i * s[1]);
    }
}

/* b[v] = f(b[v], o): gv = dy[v];  d(old b) = dy with dy[v] replaced by dt(gv);  do = do(gv).
 * When the operand was the view itself (v.mul_(v)) both gradients are the old view's. */
static ag_status copyslices_backward(ag_tensor *out, ag_tensor *gout) {
    ag_tensor *other = out->in[1], *hv = out->in[2], *gt, *go;
    const bool self = out->attr.i[1] != 0;
    bool want_t = ag__wants(out, 0), want_o = other && (self ? want_t : ag__wants(out, 1));
    if (!want_t && !want_o) return AG_OK;
    ag_tensor *gv = ag__view_grad(out, hv, gout);
    if (!gv) return AG_ERR_NOMEM;
    ag_status st = inplace_grads(out, gv, want_t, want_o, &gt, &go);
    ag__release(gv);
    if (st == AG_OK && self && go && gt) { /* dt += do */
        bool f64 = gt->dtype == AG_F64;
        ag_iter it;
        ag__iter_init(&it, gt->ndim, gt->shape);
        ag__iter_add(&it, gt);
        ag__iter_add(&it, go);
        ag__iter_run(&it, add_kernel, &f64);
    }
    if (st == AG_OK && want_t) {
        st = ag__accumulate(out->in[0], ag__base_grad(out, hv, gout, gt, false));
    }
    if (st == AG_OK && go && !self) st = ag__accumulate(other, go), go = NULL;
    ag__release(gt), ag__release(go);
    return st;
}

/* A recorded in-place update of t by other (NULL for a scalar), prepared before the write:
 * the hidden headers that will hold the histories, and in *t0 a copy of t's values when
 * the adjoint reads them.  AG_OK, or an error (recorded, nothing changed). */
static ag_status record_prepare(const ag_op *row, ag_write *w, ag_tensor *t, ag_tensor *other, ip_kind kind,
                                ag_tensor **t0) {
    *t0 = NULL;
    ag_tensor *in[2] = {t, other};
    if (ag__check_saveable(row, in, other ? 2 : 1)) return AG_ERR_GRAPH;
    if (ag__write_begin(w, t)) return AG_ERR_NOMEM;
    bool reads_t0 = kind == IP_CLAMP || kind == IP_RELU || ((kind == IP_MUL || kind == IP_DIV) && other &&
                                         (other->requires_grad || other == t));
    if (reads_t0) {
        *t0 = ag__new_unowned(t->dtype, t->ndim, t->shape, false);
        if (!*t0) {
            ag__write_cancel(w);
            return AG_ERR_NOMEM;
        }
        ag__copy_into(*t0, t);
    }
    return AG_OK;
}

/* The CopySlices twin of an in-place row. */
static const ag_op *copyslices_of(const ag_op *row) {
    static const ag_op *const twins[][2] = {
        {&row_add_, &cs_add_},       {&row_sub_, &cs_sub_},           {&row_mul_, &cs_mul_},
        {&row_div_, &cs_div_},       {&row_mul_self, &cs_mul_self},   {&row_div_self, &cs_div_self},
        {&row_add_scalar_, &cs_add_scalar_}, {&row_mul_scalar_, &cs_mul_scalar_}, {&row_clamp_, &cs_clamp_},
        {&row_copy_, &cs_copy_},     {&row_fill_, &cs_fill_},         {&row_zero_, &cs_zero_},
        {&row_relu_, &cs_relu_},     {&row_masked_fill_, &cs_masked_fill_},
    };
    for (size_t k = 0; k < sizeof twins / sizeof twins[0]; k++)
        if (twins[k][0] == row) return twins[k][1];
    return row;
}

/* After the write: t (or, for a view, its base) becomes the node of row over the history
 * before and other. */
static void record_commit(const ag_op *row, ag_write *w, ag_tensor *other, ag_tensor *t0, ip_ctx c) {
    const bool self = other == w->t;
    if (self) row = row == &row_mul_ ? &row_mul_self : row == &row_div_ ? &row_div_self : row;
    if (w->base) row = copyslices_of(row);
    ag_attr attr = {.a = c.kind == IP_CLAMP ? c.lo : c.alpha, .b = c.hi};
    attr.i[0] = c.kind;
    attr.i[1] = self;
    ag__write_commit(w, row, other, t0, &attr);
}

/* ---- forward mode ---------------------------------------------------------------------------- */
/* What an update of t by other (NULL for a scalar or none) does to tangents, prepared
 * before the write: fw->on when a dual level is open and t or other carries a
 * tangent; fw->t0 a copy of t's values when the tangent rule reads them.  AG_OK, or
 * an error recorded with nothing changed: a view of a tensor that is given its first
 * tangent (its base would need one too), or a tangent that cannot be written in place
 * (a leaf that requires grad, as a tensor's own update). */
typedef struct fw_update {
    bool on;
    ag_tensor *t0; /* unowned */
} fw_update;

/* t carries a tangent of the open level (read while forward mode is paused too). */
static bool has_tangent(const ag_tensor *t) { return t->tangent && t->tangent_level == ag__fw_open_level(); }

static ag_status fw_prepare(const char *op, ag_tensor *t, const ag_tensor *other, ip_kind kind, fw_update *fw) {
    *fw = (fw_update){0};
    if (!ag__fw_level || !(ag__fw_dual(t) || (other && ag__fw_dual(other)))) return AG_OK;
    ag_status st = ag__fw_flush(); /* pending tangents first: they read t's values before the write */
    if (st) return st;
    bool dual_other = other && has_tangent(other);
    if (!has_tangent(t) && !dual_other) return AG_OK;
    char s[AG_SHAPE_STR];
    if (!has_tangent(t) && t->view_base)
        return ag__fail(AG_ERR_GRAPH, "%s: forward-mode AD: the view %s carries no tangent and would get one from "
                        "the operand, which its base (no dual) cannot follow; make the base dual first", op,
                        ag__tshape(s, t));
    ag_tensor *T = has_tangent(t) ? t->tangent : NULL;
    if (T && !ag__no_grad_depth && !ag__has_internal_overlap(T) &&
        (T->requires_grad || (T->view_base && T->view_base->requires_grad)) && ag__write_check(op, T)) {
        char why[512];
        snprintf(why, sizeof why, "%s", ag_last_error());
        return ag__fail(AG_ERR_GRAPH, "%s: forward-mode AD: the tangent %s is updated in place with the tensor, which "
                        "is refused (%s)", op, ag__tshape(s, T), why);
    }
    bool reads_t0 = kind == IP_CLAMP || kind == IP_RELU || ((kind == IP_MUL || kind == IP_DIV) && other &&
                                                            (dual_other || other == t));
    if (reads_t0) {
        if (!(fw->t0 = ag__new_unowned(t->dtype, t->ndim, t->shape, false)))
            return ag__fail(AG_ERR_NOMEM, "%s: out of memory", op);
        ag__copy_into(fw->t0, t);
    }
    fw->on = true;
    return AG_OK;
}

/* 1 where the rule kind passes the tangent through at t0 (o: masked_fill_'s mask),
 * 0 elsewhere, of t0's dtype (piecewise constant: nothing to record); owned by the
 * scope. */
static ag_tensor *pass_mask(bwd_kind kind, double lo, double hi, const ag_tensor *t0, const ag_tensor *o) {
    ag_tensor *ones = ag_ones_like(t0);
    return ones ? ag__own(bwd_map(kind, 0, lo, hi, ones, o, t0)) : NULL;
}

/* The new tangent of t after t = f(t0, other) (ip_ctx c; other NULL for a scalar),
 * computed with ops in the caller's scope, forward mode paused (the rule's ops carry
 * no tangent), recorded when grad mode is on:
 *   add_ dt + α·do;  mul_ dt·o + t0·do (scalar: s·dt);  div_ dt/o - t0·do/o²;
 *   clamp_, relu_, masked_fill_ dt where the op passes t0 through, else 0;
 *   copy_ do (broadcast, converted);  fill_, zero_ 0.
 * With t itself as other (x.mul_(x)) o and do are t0 and dt.  NULL with *failed
 * false: the tangent does not change. */
static ag_tensor *new_tangent(ag_tensor *t, ag_tensor *other, const ag_tensor *t0, ip_ctx c, bool *failed) {
    ag_tensor *dt = has_tangent(t) ? t->tangent : NULL, *r = NULL;
    const bool self = other == t;
    ag_tensor *T0 = t0 ? ag__own(ag__retain((ag_tensor *)t0)) : NULL; /* the scope's, for the ops */
    ag_tensor *o = self ? T0 : other;
    ag_tensor *dO = self ? dt : other && has_tangent(other) ? other->tangent : NULL;
    if (o && o->dtype != t->dtype && c.kind != IP_MASK) o = ag_to_dtype(o, t->dtype);
    if (dO && dO->dtype != t->dtype) dO = ag_to_dtype(dO, t->dtype);
    *failed = false;
    switch (c.kind) {
    case IP_ADD: /* add_, sub_ (α = -1); add_scalar_ has no operand tangent: unchanged */
        if (!dO) return NULL;
        r = ag_add(dt ? dt : ag_zeros_like(t), c.alpha == 1 ? dO : ag_mul_scalar(dO, c.alpha));
        break;
    case IP_MUL:
        if (!other) { /* mul_scalar_ */
            if (!dt) return NULL;
            r = ag_mul_scalar(dt, c.alpha);
            break;
        }
        r = dt ? ag_mul(dt, o) : NULL;
        if (dO) r = ag_add(r ? r : ag_zeros_like(t), ag_mul(T0, dO));
        break;
    case IP_DIV:
        r = dt ? ag_div(dt, o) : NULL;
        if (dO) r = ag_sub(r ? r : ag_zeros_like(t), ag_div(ag_mul(T0, dO), ag_square(o)));
        break;
    case IP_CLAMP: r = dt ? ag_mul(dt, pass_mask(B_CLAMP, c.lo, c.hi, t0, NULL)) : NULL; break;
    case IP_RELU: r = dt ? ag_mul(dt, pass_mask(B_RELU, 0, 0, t0, NULL)) : NULL; break;
    case IP_MASK: {
        ag_tensor *m = dt ? ag_to_dtype(other, t->dtype) : NULL;
        r = m ? ag_mul(dt, pass_mask(B_UNMASKED, 0, 0, dt, m)) : NULL;
        break;
    }
    case IP_FILL: r = ag_zeros_like(t); break;
    case IP_COPY: r = dO ? ag_add(ag_zeros_like(t), dO) : ag_zeros_like(t); break;
    }
    *failed = !r;
    return r;
}

/* After the write: t's new tangent written into its tangent (in place, recorded when
 * grad mode is on, so that the tangents of t's views, views of it, follow), or set
 * as t's first one; a tangent whose elements share memory (expanded) is replaced.
 * On failure t is left without a tangent (never a wrong one) and the error returned. */
static ag_status fw_commit(const char *op, ag_tensor *t, ag_tensor *other, fw_update *fw, ip_ctx c) {
    uint32_t level = ag__fw_level;
    ag__fw_level = 0;
    ag_status st = ag_scope_begin();
    if (!st) {
        bool failed = false;
        ag_tensor *r = new_tangent(t, other, fw->t0, c, &failed), *T = has_tangent(t) ? t->tangent : NULL;
        if (failed) st = ag_last_status() ? ag_last_status() : AG_ERR_NOMEM;
        else if (r && T && !ag__has_internal_overlap(T)) st = ag_copy_(T, r) ? AG_OK : ag_last_status();
        else if (r) ag__ref_take(&r->refcount), ag__tangent_set(t, r, level);
        ag_scope_end();
    }
    ag__fw_level = level;
    ag__release(fw->t0);
    fw->t0 = NULL;
    if (st) {
        ag__tangent_set(t, NULL, 0);
        char msg[512];
        snprintf(msg, sizeof msg, "%s", ag_last_error());
        return ag__fail(st, "%s: forward-mode AD: updating the tangent failed: %s", op, msg);
    }
    return AG_OK;
}

/* record_commit with forward mode paused: the node is for reverse mode, the tangent
 * fw_commit's. */
static void record_commit_fw(const ag_op *row, ag_write *w, ag_tensor *other, ag_tensor *t0, ip_ctx c) {
    uint32_t level = ag__fw_level;
    ag__fw_level = 0;
    record_commit(row, w, other, t0, c);
    ag__fw_level = level;
}

/* t = f(t, other), other broadcast to t's shape (NULL: clamp, fill); rec_other is the
 * operand recorded as the node's input (other, or NULL when other stands for a scalar). */
static ag_tensor *apply(const char *op, const ag_op *row, ag_tensor *t, const ag_tensor *other, ag_tensor *rec_other,
                        ip_ctx c) {
    bool rec;
    if (!writable(op, t, rec_other, &rec)) return NULL;
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
    ag_write w;
    ag_tensor *t0 = NULL;
    fw_update fw;
    if (fw_prepare(op, t, rec_other, c.kind, &fw) || (rec && record_prepare(row, &w, t, rec_other, c.kind, &t0))) {
        ag__release(fw.t0);
        ag_release(converted);
        return NULL;
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
    if (rec) record_commit_fw(row, &w, rec_other, t0, c);
    return fw.on && fw_commit(op, t, rec_other, &fw, c) ? NULL : t;
}

ag_tensor *ag_add_(ag_tensor *t, const ag_tensor *other, double alpha) {
    AG_CHECK_HANDLES(NULL, "add_", t, other);
    return other ? apply("add_", &row_add_, t, other, (ag_tensor *)other, (ip_ctx){IP_ADD, alpha, 0, 0}) : NULL;
}
ag_tensor *ag_sub_(ag_tensor *t, const ag_tensor *other) {
    AG_CHECK_HANDLES(NULL, "sub_", t, other);
    return other ? apply("sub_", &row_sub_, t, other, (ag_tensor *)other, (ip_ctx){IP_ADD, -1, 0, 0}) : NULL;
}
ag_tensor *ag_mul_(ag_tensor *t, const ag_tensor *other) {
    AG_CHECK_HANDLES(NULL, "mul_", t, other);
    return other ? apply("mul_", &row_mul_, t, other, (ag_tensor *)other, (ip_ctx){IP_MUL, 0, 0, 0}) : NULL;
}
ag_tensor *ag_div_(ag_tensor *t, const ag_tensor *other) {
    AG_CHECK_HANDLES(NULL, "div_", t, other);
    return other ? apply("div_", &row_div_, t, other, (ag_tensor *)other, (ip_ctx){IP_DIV, 0, 0, 0}) : NULL;
}
ag_tensor *ag_fill_(ag_tensor *t, double value) {
    return apply("fill_", &row_fill_, t, NULL, NULL, (ip_ctx){IP_FILL, value, 0, 0});
}
ag_tensor *ag_zero_(ag_tensor *t) { return apply("zero_", &row_zero_, t, NULL, NULL, (ip_ctx){IP_FILL, 0, 0, 0}); }
ag_tensor *ag_clamp_(ag_tensor *t, double lo, double hi) {
    AG_CHECK_HANDLES(NULL, "clamp_", t);
    if (lo > hi) return ag__fail_null(AG_ERR_ARG, "clamp_: min %g is greater than max %g", lo, hi);
    return apply("clamp_", &row_clamp_, t, NULL, NULL, (ip_ctx){IP_CLAMP, 0, lo, hi});
}
ag_tensor *ag_relu_(ag_tensor *t) { return apply("relu_", &row_relu_, t, NULL, NULL, (ip_ctx){IP_RELU, 0, 0, 0}); }
ag_tensor *ag_masked_fill_(ag_tensor *t, const ag_tensor *mask, double value) {
    AG_CHECK_HANDLES(NULL, "masked_fill_", t, mask);
    if (!mask) return NULL;
    if (mask->dtype != AG_BOOL)
        return ag__fail_null(AG_ERR_DTYPE, "masked_fill_: the mask must be bool, got %s", ag_dtype_name(mask->dtype));
    return apply("masked_fill_", &row_masked_fill_, t, mask, (ag_tensor *)mask, (ip_ctx){IP_MASK, value, 0, 0});
}

/* A 0-d float64 tensor header over s, on the stack: the operand of the scalar updates. */
#define SCALAR_OPERAND(v, st, s)                        \
    ag_tensor v = {0};                                  \
    ag_storage st = {.refcount = 1, .data = &(s)};      \
    v.dtype = AG_F64;                                   \
    v.storage = &st

ag_tensor *ag_add_scalar_(ag_tensor *t, double s) {
    AG_CHECK_HANDLES(NULL, "add_scalar_", t);
    SCALAR_OPERAND(v, st, s);
    return apply("add_scalar_", &row_add_scalar_, t, &v, NULL, (ip_ctx){IP_ADD, 1, 0, 0});
}

ag_tensor *ag_mul_scalar_(ag_tensor *t, double s) {
    AG_CHECK_HANDLES(NULL, "mul_scalar_", t);
    SCALAR_OPERAND(v, st, s);
    return apply("mul_scalar_", &row_mul_scalar_, t, &v, NULL, (ip_ctx){IP_MUL, s, 0, 0});
}

ag_tensor *ag_copy_(ag_tensor *dst, const ag_tensor *src) {
    AG_CHECK_HANDLES(NULL, "copy_", dst, src);
    ag_tensor *from_user = (ag_tensor *)src;
    bool rec;
    if (!dst || !src || !writable("copy_", dst, from_user, &rec)) return NULL;
    char s1[AG_SHAPE_STR], s2[AG_SHAPE_STR];
    if (!ag__broadcastable(src->ndim, src->shape, dst->ndim, dst->shape))
        return ag__fail_null(AG_ERR_SHAPE, "copy_: source %s cannot be broadcast to %s", ag__tshape(s1, src),
                             ag__tshape(s2, dst));
    ag_tensor *copy;
    const ag_tensor *from = unaliased(dst, src, &copy);
    if (!from) return NULL;
    ag_write w;
    ag_tensor *t0 = NULL;
    fw_update fw;
    if (fw_prepare("copy_", dst, from_user, IP_COPY, &fw) ||
        (rec && record_prepare(&row_copy_, &w, dst, from_user, IP_COPY, &t0))) {
        ag__release(fw.t0);
        ag_release(copy);
        return NULL;
    }
    ag__copy_into(dst, from);
    ag_release(copy);
    ag__bump_version(dst);
    ip_ctx c = {IP_COPY, 0, 0, 0};
    if (rec) record_commit_fw(&row_copy_, &w, from_user, t0, c);
    return fw.on && fw_commit("copy_", dst, from_user, &fw, c) ? NULL : dst;
}

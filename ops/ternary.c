/*
 * ternary.c - elementwise ops of three tensors with NumPy broadcasting: lerp
 * and clamp with tensor bounds.
 *
 * Each op is one row of TERNARY_OPS: forward y = f(a, b, c) and the adjoints
 * da, db, dc as expressions in a, b, c, dy, as PyTorch's derivatives.yaml
 * has them.  The three operands have one floating dtype; gradients of broadcast
 * inputs are summed back to the input's shape by ag__accumulate.
 */
#include <math.h>
#include <string.h>
#include "core/iter.h"
#include "core/layout.h"
#include "core/parallel.h"
#include "core/sum.h"
#include "autograd/tape.h"
#include "ops/partial.h"
#include "agrad/ops.h"

#define SAVES_ALL (AG_SAVES_IN0 | AG_SAVES_IN1 | AG_SAVES_IN2)

/* X(name, grad_fn, y =, da =, db =, dc =, local derivatives D(dy/da, dy/db, dy/dc) in
 * agrad ops on the tensors a, b, c, y (ops/partial.h))
 * lerp(a, b, c): a + c·(b - a), from b where c >= 1/2, as PyTorch 1.13 computes it.
 * clamp_tensor(a, b, c): a clamped to [b, c] (c where b > c), NaN if any is NaN; the
 * gradient goes to a inside [b, c], to b where a < b < c, to c where a > c or c < b. */
#define TERNARY_OPS(X) \
    X(lerp, "LerpBackward1", c < (T)0.5 ? a + c * (b - a) : b - (b - a) * (1 - c), dy * (1 - c), dy * c, dy * (b - a), D(ag_rsub_scalar(1, c), c, ag_sub(b, a))) \
    X(clamp_tensor, "ClampBackward0", a != a || b != b || c != c ? (T)NAN : (a < b ? b : a) > c ? c : (a < b ? b : a), a >= b && a <= c ? dy : 0, a < b && b < c ? dy : 0, a > c || c < b ? dy : 0, D(ag_mul(MASK(ag_ge(a, b)), MASK(ag_le(a, c))), ag_mul(MASK(ag_lt(a, b)), MASK(ag_lt(b, c))), ag_sub(ag_add(MASK(ag_gt(a, c)), MASK(ag_lt(c, b))), ag_mul(MASK(ag_gt(a, c)), MASK(ag_lt(c, b))))))

typedef struct ternary_def {
    ag_op op;
    ag_inner_fn fwd[2], bwd[3][2]; /* bwd[input][dtype] */
} ternary_def;

/* fwd operands: y, a, b, c.  AVX2 clones (core/sum.h) with a loop over restrict pointers where every
 * step is one element, so that the rows' selects vectorise (clamp_tensor [512, 512] forward, one
 * thread: see docs/benchmarks.md, "Session 10: float32 tan, exp2, ..."). */
#define FWD_KERNEL(NAME, TYPE, FWD)                                                    \
    AG_VEC_CLONES static void NAME(char **p, const int64_t *s, int64_t n, void *ctx) { \
        typedef TYPE T;                                                                \
        (void)ctx;                                                                     \
        if (s[0] == sizeof(T) && s[1] == sizeof(T) && s[2] == sizeof(T) && s[3] == sizeof(T)) { \
            T *restrict yp = (T *)p[0];                                                \
            const T *restrict ap = (const T *)p[1], *restrict bp = (const T *)p[2];    \
            const T *restrict cp = (const T *)p[3];                                    \
            for (int64_t i = 0; i < n; i++) {                                          \
                const T a = ap[i], b = bp[i], c = cp[i];                               \
                yp[i] = (T)(FWD);                                                      \
            }                                                                          \
            return;                                                                    \
        }                                                                              \
        for (int64_t i = 0; i < n; i++) {                                              \
            const T a = *(const T *)(p[1] + i * s[1]);                                 \
            const T b = *(const T *)(p[2] + i * s[2]);                                 \
            const T c = *(const T *)(p[3] + i * s[3]);                                 \
            *(T *)(p[0] + i * s[0]) = (T)(FWD);                                        \
        }                                                                              \
    }

/* bwd operands: g (out's shape), a, b, c, dy; AVX2 clones with a unit-step loop, as the forward */
#define BWD_KERNEL(NAME, TYPE, BWD)                                                    \
    AG_VEC_CLONES static void NAME(char **p, const int64_t *s, int64_t n, void *ctx) { \
        typedef TYPE T;                                                                \
        (void)ctx;                                                                     \
        if (s[0] == sizeof(T) && s[1] == sizeof(T) && s[2] == sizeof(T) && s[3] == sizeof(T) && s[4] == sizeof(T)) { \
            T *restrict gp = (T *)p[0];                                                \
            const T *restrict ap = (const T *)p[1], *restrict bp = (const T *)p[2];    \
            const T *restrict cp = (const T *)p[3], *restrict dyp = (const T *)p[4];   \
            for (int64_t i = 0; i < n; i++) {                                          \
                const T a = ap[i], b = bp[i], c = cp[i], dy = dyp[i];                  \
                (void)a, (void)b, (void)c;                                             \
                gp[i] = (T)(BWD);                                                      \
            }                                                                          \
            return;                                                                    \
        }                                                                              \
        for (int64_t i = 0; i < n; i++) {                                              \
            const T a = *(const T *)(p[1] + i * s[1]);                                 \
            const T b = *(const T *)(p[2] + i * s[2]);                                 \
            const T c = *(const T *)(p[3] + i * s[3]);                                 \
            const T dy = *(const T *)(p[4] + i * s[4]);                                \
            (void)a, (void)b, (void)c;                                                 \
            *(T *)(p[0] + i * s[0]) = (T)(BWD);                                        \
        }                                                                              \
    }

static ag_status ternary_backward(ag_tensor *out, ag_tensor *gout);

/* dy/d(in[i]) of a row: its D(...) column over a, b, c = in[0..2] and y. */
#define PARTIAL_FN(NAME, DERIV)                                                                       \
    static ag_tensor *NAME##_partial(ag_tensor *const *in, ag_tensor *y, const ag_attr *attr, int i) { \
        ag_tensor *a = in[0], *b = in[1], *c = in[2];                                                 \
        (void)a, (void)b, (void)c, (void)y, (void)attr;                                               \
        return PARTIAL_##DERIV;                                                                       \
    }

#define DEFINE_TERNARY(NAME, GRAD_FN, FWD, DA, DB, DC, DERIV)                                       \
    FWD_KERNEL(NAME##_fwd_f32, float, FWD)                                                          \
    FWD_KERNEL(NAME##_fwd_f64, double, FWD)                                                         \
    BWD_KERNEL(NAME##_da_f32, float, DA)                                                            \
    BWD_KERNEL(NAME##_da_f64, double, DA)                                                           \
    BWD_KERNEL(NAME##_db_f32, float, DB)                                                            \
    BWD_KERNEL(NAME##_db_f64, double, DB)                                                           \
    BWD_KERNEL(NAME##_dc_f32, float, DC)                                                            \
    BWD_KERNEL(NAME##_dc_f64, double, DC)                                                           \
    PARTIAL_FN(NAME, DERIV)                                                                         \
    static const ternary_def NAME##_def = {                                                         \
        {.name = #NAME, .grad_fn = GRAD_FN, .backward = ternary_backward, .saves = SAVES_ALL,       \
         .math = "y = " #FWD ";  da = " #DA ",  db = " #DB ",  dc = " #DC,                          \
         .backward_graph = SELECT_##DERIV(ag__elementwise_backward_graph), .partial = SELECT_##DERIV(NAME##_partial), \
         .jvp = SELECT_##DERIV(ag__elementwise_jvp)},                                               \
        {NAME##_fwd_f32, NAME##_fwd_f64},                                                           \
        {{NAME##_da_f32, NAME##_da_f64}, {NAME##_db_f32, NAME##_db_f64}, {NAME##_dc_f32, NAME##_dc_f64}}};
TERNARY_OPS(DEFINE_TERNARY)

/* y = f(a, b, c) over the broadcast shape of the three, laid out as those read in full when they are
 * dense in one permuted layout (PyTorch's preserve_format: core/layout.c), else row-major. */
static ag_tensor *ternary_apply(const ternary_def *def, ag_tensor *a, ag_tensor *b, ag_tensor *c) {
    const char *op = def->op.name;
    AG_CHECK_HANDLES(NULL, op, a, b, c);
    if (!a || !b || !c) return NULL;
    if (ag__check_float(op, a, b) || ag__check_float(op, a, c)) return NULL;
    ag_tensor ab; /* a header carrying only the broadcast shape of a and b */
    memset(&ab, 0, sizeof ab);
    int ndim, abdim;
    int64_t shape[AG_MAX_DIMS];
    if (ag__broadcast_shape(op, a, b, &abdim, ab.shape)) return NULL;
    ab.ndim = (int16_t)abdim;
    if (ag__broadcast_shape(op, &ab, c, &ndim, shape)) return NULL;
    ag_tensor *y = ag__new_map_result(a->dtype, ndim, shape, (const ag_tensor *const[]){a, b, c}, 3);
    if (!y) return NULL;
    ag_inner_fn fn = def->fwd[AG_DTYPE_INDEX(a->dtype)];
    if ((ag__flat_as(a, ndim, shape) && ag__flat_as(b, ndim, shape) && ag__flat_as(c, ndim, shape) && ag__contig(y)) ||
        (ag__same_dense(y, a) && ag__same_dense(y, b) && ag__same_dense(y, c))) {
        char *p[4] = {ag__ptr(y), ag__ptr(a), ag__ptr(b), ag__ptr(c)};
        ag__par_run_flat(fn, NULL, ag_numel(y), 4, p, (int64_t)ag__esize(a->dtype));
    } else {
        ag_iter it;
        ag__iter_init(&it, ndim, shape);
        ag__iter_add(&it, y);
        ag__iter_add(&it, a);
        ag__iter_add(&it, b);
        ag__iter_add(&it, c);
        ag__iter_run_par(&it, fn, NULL);
    }
    ag_tensor *in[3] = {a, b, c};
    if (ag__needs_grad(in, 3) && !ag__record(y, &def->op, in, 3)) return NULL;
    return ag__check_finite(y, op);
}

/* The gradient of input `which` over the output's shape; ag__accumulate sums it down. */
static ag_status input_grad(ag_tensor *out, ag_tensor *gout, int which, ag_inner_fn fn) {
    ag_tensor *g = ag__new_unowned(out->dtype, out->ndim, out->shape, false);
    if (!g) return AG_ERR_NOMEM;
    ag_iter it;
    ag__iter_init(&it, out->ndim, out->shape);
    ag__iter_add(&it, g);
    for (int k = 0; k < 3; k++) ag__iter_add(&it, out->in[k]);
    ag__iter_add(&it, gout);
    ag__iter_run_par(&it, fn, NULL);
    return ag__accumulate(out->in[which], g);
}

static ag_status ternary_backward(ag_tensor *out, ag_tensor *gout) {
    const ternary_def *def = (const ternary_def *)out->op;
    int k = AG_DTYPE_INDEX(out->dtype);
    ag_status st = AG_OK;
    for (int which = 0; which < 3 && st == AG_OK; which++)
        if (ag__wants(out, which)) st = input_grad(out, gout, which, def->bwd[which][k]);
    return st;
}

ag_tensor *ag_lerp(ag_tensor *start, ag_tensor *end, ag_tensor *weight) {
    return ternary_apply(&lerp_def, start, end, weight);
}
ag_tensor *ag_clamp_tensor(ag_tensor *x, ag_tensor *min, ag_tensor *max) {
    return ternary_apply(&clamp_tensor_def, x, min, max);
}

#define REGISTER(NAME, ...) &NAME##_def.op,
const ag_op *const ag__ternary_ops[] = {TERNARY_OPS(REGISTER) NULL};

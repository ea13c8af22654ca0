/*
 * compare.c - elementwise comparisons with broadcasting, giving bool masks.
 *
 * Each op is one row of COMPARE_OPS: y = (a OP b).  Both operands have the
 * same dtype, float32, float64 or int64.  A comparison has no gradient (its
 * result is piecewise constant), so nothing is recorded and the rows carry no
 * adjoint; NaN compares unequal to everything, as in IEEE and PyTorch.
 * The tests of one tensor (isnan, isinf, isfinite) follow, with the same rules.
 */
#include <math.h>
#include "core/layout.h"
#include "core/sum.h"
#include "agrad/ops.h"

/* X(name, operator, words for the docs) */
#define COMPARE_OPS(X)              \
    X(eq, ==, "a == b")             \
    X(ne, !=, "a != b")             \
    X(lt, <, "a < b")               \
    X(le, <=, "a <= b")             \
    X(gt, >, "a > b")               \
    X(ge, >=, "a >= b")

typedef struct compare_def {
    ag_op op;
    ag_inner_fn fwd[3]; /* by dtype: float32, float64, int64 */
} compare_def;

/* operands: y (bool), a, b; unit-step runs vectorise (AVX2 clones, core/sum.h): ge of [512, 512]
 * float32, one thread, 278 -> 30 µs (the byte-strided scalar loop before) */
#define COMPARE_KERNEL(NAME, T, OP)                                                             \
    AG_VEC_CLONES static void NAME(char **p, const int64_t *s, int64_t n, void *ctx) {         \
        (void)ctx;                                                                              \
        AG_MAP2_LOOPS(uint8_t, T, a OP b);                                                      \
    }

/* y = (a OP b) as bool;  not differentiable */
#define DEFINE_COMPARE(NAME, OP, MATH)                                                           \
    COMPARE_KERNEL(NAME##_f32, float, OP)                                                        \
    COMPARE_KERNEL(NAME##_f64, double, OP)                                                       \
    COMPARE_KERNEL(NAME##_i64, int64_t, OP)                                                      \
    static const compare_def NAME##_def = {                                                      \
        {.name = #NAME,                                                                          \
         .math = "y = (" MATH ") as bool;  not differentiable"},                                 \
        {NAME##_f32, NAME##_f64, NAME##_i64}};                                                   \
    ag_tensor *ag_##NAME(const ag_tensor *a, const ag_tensor *b) { return compare_apply(&NAME##_def, a, b); }

/* y = (a OP b) over the broadcast shape of a and b, laid out as a and b when those read in full are
 * dense in one permuted layout (PyTorch's preserve_format: core/layout.c), else row-major. */
static ag_tensor *compare_apply(const compare_def *def, const ag_tensor *a, const ag_tensor *b) {
    AG_CHECK_HANDLES(NULL, def->op.name, a, b);
    if (!a || !b) return NULL;
    const char *op = def->op.name;
    if (a->dtype != AG_F32 && a->dtype != AG_F64 && a->dtype != AG_I64)
        return ag__fail_null(AG_ERR_DTYPE, "%s: expected float32, float64 or int64 operands, got %s (convert with ag_to_dtype)",
                             op, ag_dtype_name(a->dtype));
    if (a->dtype != b->dtype)
        return ag__fail_null(AG_ERR_DTYPE, "%s: dtypes %s and %s differ (convert one with ag_to_dtype)", op,
                             ag_dtype_name(a->dtype), ag_dtype_name(b->dtype));
    int ndim;
    int64_t shape[AG_MAX_DIMS];
    if (ag__broadcast_shape(op, a, b, &ndim, shape)) return NULL;
    ag_tensor *y = ag__new_map_result(AG_BOOL, ndim, shape, (const ag_tensor *const[]){a, b}, 2);
    if (!y) return NULL;
    ag_iter it; /* walks in y's memory order: one flat run where a and b are laid out as y */
    ag__iter_init(&it, ndim, shape);
    ag__iter_add(&it, y);
    ag__iter_add(&it, a);
    ag__iter_add(&it, b);
    ag__iter_run_par(&it, def->fwd[a->dtype], NULL);
    return y;
}

COMPARE_OPS(DEFINE_COMPARE)

/* ---- tests of one tensor: isnan, isinf, isfinite ---------------------------------------------- */
/* X(name, test of x, words for the docs); on int64 isnan and isinf are false, isfinite true. */
#define TEST_OPS(X)                                                                  \
    X(isnan, x != x, "x is NaN")                                                     \
    X(isinf, x == (double)INFINITY || x == -(double)INFINITY, "x is +inf or -inf")   \
    X(isfinite, x == x && x != (double)INFINITY && x != -(double)INFINITY, "x is neither NaN nor ±inf")

/* operands: y (bool), x; the unit-step run vectorises */
#define TEST_KERNEL(NAME, T, TEST)                                                   \
    AG_VEC_CLONES static void NAME(char **p, const int64_t *s, int64_t n, void *ctx) { \
        (void)ctx;                                                                   \
        if (s[0] == 1 && s[1] == (int64_t)sizeof(T)) {                               \
            uint8_t *restrict yp = (uint8_t *)p[0];                                  \
            const T *restrict xp = (const T *)p[1];                                  \
            for (int64_t i = 0; i < n; i++) {                                        \
                const T x = xp[i];                                                   \
                yp[i] = (TEST);                                                      \
            }                                                                        \
        } else {                                                                     \
            AG_MAP_STRIDED(uint8_t, 0, TEST, const T x = AG_AT(T, 1));               \
        }                                                                            \
    }

/* y = test(x) over x's shape, laid out as a dense x (core/layout.c), else row-major. */
static ag_tensor *test_apply(const compare_def *def, const ag_tensor *x) {
    AG_CHECK_HANDLES(NULL, def->op.name, x);
    if (!x) return NULL;
    if (x->dtype != AG_F32 && x->dtype != AG_F64 && x->dtype != AG_I64)
        return ag__fail_null(AG_ERR_DTYPE, "%s: expected a float32, float64 or int64 tensor, got %s", def->op.name,
                             ag_dtype_name(x->dtype));
    ag_tensor *y = ag__new_map_result(AG_BOOL, x->ndim, x->shape, (const ag_tensor *const[]){x}, 1);
    if (!y) return NULL;
    ag_iter it;
    ag__iter_init(&it, x->ndim, x->shape);
    ag__iter_add(&it, y);
    ag__iter_add(&it, x);
    ag__iter_run_par(&it, def->fwd[x->dtype], NULL);
    return y;
}

/* y = test(x) as bool;  not differentiable */
#define DEFINE_TEST(NAME, TEST, MATH)                                                            \
    TEST_KERNEL(NAME##_f32, float, TEST)                                                         \
    TEST_KERNEL(NAME##_f64, double, TEST)                                                        \
    TEST_KERNEL(NAME##_i64, int64_t, TEST)                                                       \
    static const compare_def NAME##_def = {                                                      \
        {.name = #NAME,                                                                          \
         .math = "y = (" MATH ") as bool;  not differentiable"},                                 \
        {NAME##_f32, NAME##_f64, NAME##_i64}};                                                   \
    ag_tensor *ag_##NAME(const ag_tensor *x) { return test_apply(&NAME##_def, x); }
TEST_OPS(DEFINE_TEST)

#define REGISTER(NAME, ...) &NAME##_def.op,
const ag_op *const ag__compare_ops[] = {COMPARE_OPS(REGISTER) TEST_OPS(REGISTER) NULL};

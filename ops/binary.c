/*
 * binary.c - elementwise ops of two tensors with NumPy broadcasting.
 *
 * Each op is one row of BINARY_OPS: forward y = f(a, b), the adjoints da and db
 * as expressions in a, b, y, dy, and whether an adjoint is dy itself (then the
 * gradient is passed on without a kernel).  Gradients of broadcast inputs are
 * summed back to the input's shape by ag__accumulate.  The adjoints group as
 * PyTorch's derivatives.yaml does: pow's dy·(b·a^(b-1)) stays 0 where a^(b-1)
 * underflows even if dy·b would overflow; maximum/minimum mask only the side that
 * lost (a < b, a > b), so at a NaN both sides get dy, and ties split it.
 */
#include "ops/vmathf.h" /* before tgmath.h: its inline functions call the float functions by name */
#include <tgmath.h>
#include "core/layout.h"
#include "ops/adjoint_run.h"
#include "ops/kernels.h"
#include "ops/partial.h"
#include "ops/vmathf.h"
#include "core/parallel.h"
#include "core/sum.h"
#include "autograd/tape.h"
#include "agrad/ops.h"

#define IN0 AG_SAVES_IN0
#define IN1 AG_SAVES_IN1
#define OUT AG_SAVES_OUT

/* X(name, grad_fn, y =, da =, db =, local derivatives, pass, saves); pass: which
 * adjoints are dy itself (A, B, A|B), handed on without a kernel, and R where the
 * float32 forward has a fast form that is NaN where it cannot vouch for its bits (the
 * kernel then redoes those elements exactly: see FMOD), P where the adjoints read dy by masked loads
 * (BWD_UNIT).  The local
 * derivatives are D(dy/da, dy/db) in agrad ops on the tensors a, b, y (ops/partial.h). */
#define BINARY_OPS(X) \
    X(add, "AddBackward0", a + b, dy, dy, D(K(1), K(1)), A | B, 0) \
    X(sub, "SubBackward0", a - b, dy, -dy, D(K(1), K(-1)), A, 0) \
    X(mul, "MulBackward0", a * b, dy * b, dy * a, D(b, a), 0, IN0 | IN1) \
    X(div, "DivBackward0", a / b, dy / b, -dy * a / (b * b), D(ag_reciprocal(b), ag_neg(ag_div(y, b))), 0, IN0 | IN1) \
    X(pow, "PowBackward1", POW_V(a, b), b == 0 ? 0 : dy * (b * POW_V(a, b - 1)), a == 0 && b >= 0 ? 0 : dy * (y * LOG_V(a)), D(ag_mul(b, ag_pow(a, ag_sub_scalar(b, 1))), ag_mul(y, ag_log(a))), P, IN0 | IN1 | OUT) \
    X(maximum, "MaximumBackward0", a > b || a != a ? a : b, a < b ? 0 : a == b ? dy / 2 : dy, a > b ? 0 : a == b ? dy / 2 : dy, D(WON(ag_lt(a, b)), WON(ag_gt(a, b))), P, IN0 | IN1) \
    X(minimum, "MinimumBackward0", a < b || a != a ? a : b, a > b ? 0 : a == b ? dy / 2 : dy, a < b ? 0 : a == b ? dy / 2 : dy, D(WON(ag_gt(a, b)), WON(ag_lt(a, b))), P, IN0 | IN1) \
    X(atan2, "Atan2Backward0", ATAN2_V(a, b), dy * b * (1 / (a * a + b * b)), dy * -a * (1 / (a * a + b * b)), D(ag_div(b, ag_add(ag_square(a), ag_square(b))), ag_neg(ag_div(a, ag_add(ag_square(a), ag_square(b))))), 0, IN0 | IN1) \
    X(hypot, "HypotBackward0", HYPOT(a, b), dy * a / y, dy * b / y, D(ag_div(a, y), ag_div(b, y)), 0, IN0 | IN1 | OUT) \
    X(fmod, "FmodBackward1", FMOD(a, b), dy, -dy * trunc(a / b), D(K(1), ag_neg(ag_trunc(ag_div(a, b)))), A | R, IN0 | IN1) \
    X(remainder, "RemainderBackward1", REM_FLOOR(a, b), dy, -dy * DIV_FLOOR(a, b), D(K(1), ag_neg(ag_floor(ag_div(a, b)))), A | R, IN0 | IN1) \
    X(copysign, "CopysignBackward0", copysign(a, b), a == 0 ? 0 : dy * (y / a), 0, D(ag_where(ag_eq(a, K(0)), K(0), ag_div(y, a)), ZERO), 0, IN0 | OUT) \
    X(logaddexp, "LogaddexpBackward0", isinf(a) && a == b ? a : MAX(a, b) + LOG1P_EXP(-fabs(a - b)), DIV_1P_EXP(dy, b - a), DIV_1P_EXP(dy, a - b), D(ag_sigmoid(ag_sub(a, b)), ag_sigmoid(ag_sub(b, a))), 0, IN0 | IN1) \
    X(logaddexp2, "Logaddexp2Backward0", isinf(a) && a == b ? a : MAX(a, b) + LOG1P_EXP2(-fabs(a - b)) * (1 / LN2), DIV_1P_EXP2(dy, b - a), DIV_1P_EXP2(dy, a - b), D(ag_sigmoid(ag_mul_scalar(ag_sub(a, b), LN2_F64)), ag_sigmoid(ag_mul_scalar(ag_sub(b, a), LN2_F64))), 0, IN0 | IN1) \
    X(xlogy, "XlogyBackward0", b != b ? b : a == 0 ? 0 : a * LOG_V(b), a == 0 && b <= 0 ? 0 : (b != b ? b : dy == 0 ? 0 : dy * LOG_V(b)), dy * a / b, D(ag_log(b), ag_div(a, b)), 0, IN0 | IN1) \
    X(heaviside, "HeavisideBackward0", a == 0 ? b : (T)(a > 0), 0, a == 0 ? dy : 0, D(ZERO, MASK(ag_eq(a, K(0)))), P, IN0)

/* pass: da, db is dy; R: float32 NaNs are redone exactly; P: the adjoints' runs beyond L2 go in blocks that
 * prefetch dy (ops/adjoint_run.h) */
enum { A = 1, B = 2, R = 4, P = 8 };

#define LN2 ((T)0.69314718055994530942)
/* float32 atan2 without a libm call, so that its loops vectorise (ops/vmathf.h; libm's atan2f held atan2 at a tenth of
 * PyTorch's speed); float64 keeps libm. */
#define ATAN2_V(a, b) _Generic((a), float: vatan2f, default: atan2)(a, b)
#define LN2_F64 0.69314718055994530942
/* float32 pow without a libm call, so that its loops vectorise: ops/vmathf.h's vpowf (2^(b·log2|a|)
 * in double lanes, rounded once: 0.50 ulps, powf's special values), as pow_scalar's; libm's powf
 * held the broadcast forward at 0.8x PyTorch's.  float64: libm's pow. */
#define POW_V(a, b) _Generic((a), float: vpowf, default: pow)(a, b)
/* pow's db = dy·y·log a, xlogy's y = a·log b and da = dy·log b: float32 log by vlogf (ops/vmathf.h,
 * within 1 ulp, libm's special values, not logf's bits), so that the loops vectorise (xlogy's libm
 * logf held it at 0.68-0.77x PyTorch's); float64: libm's log, the same bits. */
#define LOG_V(a) _Generic((a), float: vlogf, default: log)(a)
/* std::max as PyTorch's logaddexp uses it: b only when a < b (a NaN a stays). */
#define MAX(a, b) ((a) < (b) ? (b) : (a))
/* float32 hypot as glibc's hypotf computes it (glibc 2.35 and later): the squares and their sum in
 * double (the squares exact, the sum rounded once), the square root rounded to float; inf where either
 * is infinite, a NaN with it included.  The same bits as hypotf (checked on 2e8 random pairs, half of
 * them of close magnitudes), in a loop that vectorises: [512, 512] 1 300 -> 335 µs on one thread (the
 * double square roots bound it).  float64: libm's. */
static inline float hypot_f32(float a, float b) {
    const float y = (float)sqrt((double)a * a + (double)b * b);
    return isinf(a) || isinf(b) ? INFINITY : y;
}
#define HYPOT(a, b) _Generic((a), float: hypot_f32(a, b), default: hypot(a, b))
/* log1p(e^x) for x <= 0 (logaddexp's correction to max(a, b), x = -|a - b|) and u / (1 + e^x) (its
 * adjoints).  float32 through ops/vmathf.h's vectorising vlog1pf(vexpf(x)) and u·vsigmoidf(-x) (not
 * libm's bits: test/test_elementwise.c bounds them; a NaN x stays NaN): logaddexp [512, 512] 6 500 ->
 * 1 190 µs forward, 8 200 -> 1 850 forward + backward, one thread; float64 through libm. */
static inline float log1p_exp_f32(float x) {
    const float t = vlog1pf(vexpf(x));
    return x != x ? x : t;
}
#define LOG1P_EXP(x) _Generic((x), float: log1p_exp_f32(x), default: log1p(exp(x)))
#define DIV_1P_EXP(u, x) _Generic((x), float: (u) * vsigmoidf(-(x)), default: (u) / (1 + exp(x)))
/* u / (1 + 2^x) for float32: with e = 2^-|x| (vexp2f), u·e/(1 + e) for x > 0 (2^-x, not 0, where 2^x
 * overflows), u/(1 + e) otherwise; NaN stays NaN. */
static inline float div_1p_exp2_f32(float u, float x) {
    const float e = vexp2f(-fabsf(x));
    return x > 0 ? u * (e / (1.0f + e)) : u / (1.0f + e);
}
/* logaddexp2's log1p(2^x), x <= 0, and u / (1 + 2^x): float32 through vlog1pf(vexp2f(x)) and u / (1 +
 * vexp2f(x)) (ops/vmathf.h; vexp2f keeps NaN), float64 through libm's log1p(exp2(x)) and pow(2, x) as
 * before. */
#define LOG1P_EXP2(x) _Generic((x), float: vlog1pf(vexp2f(x)), default: log1p(exp2(x)))
#define DIV_1P_EXP2(u, x) _Generic((x), float: div_1p_exp2_f32(u, x), default: (u) / (1 + pow((T)2, x)))
/* fmodf(a, b) exactly, vectorisably, or NaN where it cannot vouch for the result (the
 * kernel redoes a NaN with libm).  In double, q = a / b is within 2^-25 of a / b when
 * |q| < 2^29, while a non-integer a / b of floats is more than 2^-24 from any integer
 * (a - k·b is a nonzero multiple of the finer ulp of a and b, |b| < 2^24 ulp(b)), so
 * n = trunc(q) is trunc(a / b); n·b has at most 29 + 24 bits and is exact, and a - n·b,
 * fmodf's exact result, is representable, so it is exact too.  Its sign is a's, also at
 * 0.  Huge quotients, inf, NaN and zero divisors give NaN here (b = inf: 0·inf). */
static inline float fmod_fast_f32(float a, float b) {
    double x = a, y = b, q = x / y, n = trunc(q);
    return fabs(q) < 0x1p29 ? copysignf((float)(x - n * y), a) : NAN;
}
/* FMOD: in a kernel with exact = 0 the fast float32 form, with exact = 1 libm's. */
#define FMOD(a, b) _Generic((a), float: exact ? fmod(a, b) : fmod_fast_f32(a, b), default: fmod(a, b))
/* m != 0 with the sign of b not m's; in float32 as a product in double, which cannot
 * underflow (gcc vectorises it, not the float32 form). */
#define SIGNS_DIFFER_f32(m, b) ((double)(m) * (b) < 0)
#define SIGNS_DIFFER_f64(m, b) ((m) != 0 && ((b) < 0) != ((m) < 0))
/* Python's a mod b (the sign of b), PyTorch's remainder; and floor(a / b) as PyTorch's
 * div(rounding_mode="floor") computes it, from the same fmod so the two agree. */
#define DEFINE_FLOOR_MOD(SUF, T)                                                              \
    static inline T rem_floor_##SUF(T a, T b, int exact) {                                    \
        T m = FMOD(a, b);                                                                     \
        return SIGNS_DIFFER_##SUF(m, b) ? m + b : m;                                          \
    }                                                                                         \
    static inline T div_floor_##SUF(T a, T b, int exact) { /* selects, to vectorise */      \
        T m = FMOD(a, b), d = (a - m) / b;                                                    \
        d = SIGNS_DIFFER_##SUF(m, b) ? d - 1 : d;                                             \
        T f = floor(d), r = d - f > (T)0.5 ? f + 1 : f;                                       \
        return b == 0 ? a / b : d == 0 ? copysign((T)0, a / b) : r;                           \
    }
DEFINE_FLOOR_MOD(f32, float)
DEFINE_FLOOR_MOD(f64, double)
#define REM_FLOOR(a, b) _Generic((a), float: rem_floor_f32, default: rem_floor_f64)(a, b, exact)
#define DIV_FLOOR(a, b) _Generic((a), float: div_floor_f32, default: div_floor_f64)(a, b, exact)

typedef struct binary_def {
    ag_op op;
    int pass;
    ag_inner_fn fwd[2], bwd_a[2], bwd_b[2];
} binary_def;

/* vzeroupper where the CPU has AVX: gcc 12 leaves it out of the fmod and remainder kernels'
 * AVX2 clones (they realign the stack), and libm's SSE fmodf, called after them (the redo,
 * remainder's backward), then ran 60x slower (remainder [64, 64] backward 8 -> 680 µs). */
static inline void clean_upper(void) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (__builtin_cpu_supports("avx")) __asm__ volatile("vzeroupper");
#endif
}

/* Whether any of the n floats at y, stride s bytes, is NaN. */
AG_VEC_CLONES static bool any_nan_f32(const char *y, int64_t s, int64_t n) {
    int any = 0; /* an int: gcc vectorises |= into it, not into a bool */
    if (s == sizeof(float)) {
        const float *restrict yp = (const float *)y;
        for (int64_t i = 0; i < n; i++) any |= yp[i] != yp[i];
    } else {
        for (int64_t i = 0; i < n; i++) any |= *(const float *)(y + i * s) != *(const float *)(y + i * s);
    }
    return any;
}

/* fwd operands: y, a, b.  The kernels are AVX2 and AVX-512 clones (core/sum.h: the same bits, ISO C
 * contracts no FMA): mul [222, 296] forward 9.1 -> 7.7 µs with AVX2, one thread, L2-resident; the
 * AVX-512 clone for the arithmetic-bound float32 maths (pow's double lanes, logaddexp's exp and
 * log1p, atan2), as unary.c's kernels.  REDO (an R row, float32):
 * the loops run the fast form (exact = 0), then the NaNs it left are redone with exact = 1. */
#define FWD_KERNEL(NAME, TYPE, FWD, REDO)                                              \
    AG_VEC_CLONES_512 static void NAME(char **p, const int64_t *s, int64_t n, void *ctx) { \
        typedef TYPE T;                                                                \
        (void)ctx;                                                                     \
        {                                                                              \
            enum { exact = 0 };                                                        \
            AG_MAP2_LOOPS(T, T, FWD);                                                  \
        }                                                                              \
        clean_upper();                                                                 \
        if (REDO && any_nan_f32(p[0], s[0], n)) {                                      \
            enum { exact = 1 };                                                        \
            AG_MAP_STRIDED(T, *o_ == *o_, FWD, const T a = AG_AT(T, 1); const T b = AG_AT(T, 2)); \
        }                                                                              \
    }

/* bwd operands: g (out's shape), a, b, y, dy: the loads of element i at any steps. */
#define BWD_LOADS                                                                      \
    const T a = AG_AT(T, 1), b = AG_AT(T, 2), y = AG_AT(T, 3), dy = AG_AT(T, 4);       \
    (void)a, (void)b, (void)y, (void)dy
/* The rows marked P (maximum, minimum, heaviside, pow: adjoints that take dy in some lanes only) run their
 * unit-step loops in ops/adjoint_run.h's blocks beyond L2; copysign's da and xlogy's, masked too but bound by
 * their division and logarithm, ran 3-4% slower in blocks and keep one loop (session 22, mask22). */
/* One unit-step loop of g = BWD, a read at i·KA and b at i·KB (1, or 0: constant along the run, as
 * a [N, 1] operand of a [N, N] result is); PF: a run beyond L2 in blocks, dy prefetched (AG_ADJ_RUN). */
#define BWD_UNIT(BWD, KA, KB, PF)                                                      \
    do {                                                                               \
        T *restrict gp = (T *)p[0];                                                    \
        const T *restrict ap = (const T *)p[1], *restrict bp = (const T *)p[2];        \
        const T *restrict yp = (const T *)p[3], *restrict dyp = (const T *)p[4];       \
        AG_ADJ_RUN(T, n, dyp, PF, i, const T a = ap[i * (KA)], b = bp[i * (KB)], y = yp[i], dy = dyp[i]; \
                   (void)a, (void)b, (void)y, (void)dy; gp[i] = (T)(BWD););            \
    } while (0)
/* REDO as FWD_KERNEL's; PF: BWD_UNIT's blocks beyond L2 (a P row). */
#define BWD_KERNEL(NAME, TYPE, BWD, REDO, PF)                                          \
    AG_VEC_CLONES_512 static void NAME(char **p, const int64_t *s, int64_t n, void *ctx) { \
        typedef TYPE T;                                                                \
        const int64_t t_ = (int64_t)sizeof(T);                                         \
        (void)ctx;                                                                     \
        {                                                                              \
            enum { exact = 0 };                                                        \
            if (s[0] == t_ && s[3] == t_ && s[4] == t_ && s[1] == t_ && s[2] == t_) BWD_UNIT(BWD, 1, 1, PF); \
            else if (s[0] == t_ && s[3] == t_ && s[4] == t_ && s[1] == t_ && s[2] == 0) BWD_UNIT(BWD, 1, 0, PF); \
            else if (s[0] == t_ && s[3] == t_ && s[4] == t_ && s[1] == 0 && s[2] == t_) BWD_UNIT(BWD, 0, 1, PF); \
            else AG_MAP_STRIDED(T, 0, BWD, BWD_LOADS);                                 \
        }                                                                              \
        clean_upper();                                                                 \
        if (REDO && any_nan_f32(p[0], s[0], n)) {                                      \
            enum { exact = 1 };                                                        \
            AG_MAP_STRIDED(T, *o_ == *o_, BWD, BWD_LOADS);                             \
        }                                                                              \
    }

static ag_status binary_backward(ag_tensor *out, ag_tensor *gout);

/* dy/da where a lost to b (lost: a bool tensor): 0 there, 1/2 at a tie, else 1. */
#define WON(lost) ag_sub(ag_rsub_scalar(1, MASK(lost)), ag_mul_scalar(MASK(ag_eq(a, b)), 0.5))

/* dy/d(in[i]) of a row: its D(...) column over a = in[0], b = in[1] and y. */
#define PARTIAL_FN(NAME, DERIV)                                                                       \
    static ag_tensor *NAME##_partial(ag_tensor *const *in, ag_tensor *y, const ag_attr *attr, int i) { \
        ag_tensor *a = in[0], *b = in[1];                                                             \
        (void)a, (void)b, (void)y, (void)attr;                                                        \
        return PARTIAL_##DERIV;                                                                       \
    }

#define DEFINE_BINARY(NAME, GRAD_FN, FWD, DA, DB, DERIV, PASS, SAVES)                                \
    FWD_KERNEL(NAME##_fwd_f32, float, FWD, (PASS) & R)                                               \
    FWD_KERNEL(NAME##_fwd_f64, double, FWD, 0)                                                       \
    BWD_KERNEL(NAME##_da_f32, float, DA, (PASS) & R, (PASS) & P)                                     \
    BWD_KERNEL(NAME##_da_f64, double, DA, 0, (PASS) & P)                                             \
    BWD_KERNEL(NAME##_db_f32, float, DB, (PASS) & R, (PASS) & P)                                     \
    BWD_KERNEL(NAME##_db_f64, double, DB, 0, (PASS) & P)                                             \
    PARTIAL_FN(NAME, DERIV)                                                                          \
    static const binary_def NAME##_def = {                                                           \
        {.name = #NAME, .grad_fn = GRAD_FN, .backward = binary_backward, .saves = SAVES,             \
         .math = "y = " #FWD ";  da = " #DA ",  db = " #DB,                                          \
         .backward_graph = SELECT_##DERIV(ag__elementwise_backward_graph), .partial = SELECT_##DERIV(NAME##_partial), \
         .jvp = SELECT_##DERIV(ag__elementwise_jvp)},                                                \
        PASS,                                                                                        \
        {NAME##_fwd_f32, NAME##_fwd_f64},                                                            \
        {NAME##_da_f32, NAME##_da_f64},                                                              \
        {NAME##_db_f32, NAME##_db_f64}};                                                             \
    ag_tensor *ag_##NAME(ag_tensor *a, ag_tensor *b) { return binary_apply(&NAME##_def, a, b); }

static ag_tensor *binary_apply(const binary_def *def, ag_tensor *a, ag_tensor *b);

/* The rows PyTorch computes in floating point when both operands are integer or bool,
 * giving float32 (torch.atan2 of two int64 tensors is float32); an integer with a
 * floating operand is refused, as agrad does not mix dtypes. */
static bool promotes_integers(const binary_def *def);

/* f(a, b) of integer or bool a and b: f of both converted to float32. */
static ag_tensor *binary_promoted(const binary_def *def, ag_tensor *a, ag_tensor *b) {
    if (ag__composite_begin(def->op.name)) return NULL;
    ag_tensor *af = ag_to_dtype(a, AG_F32), *bf = ag_to_dtype(b, AG_F32);
    return ag__composite_end(af && bf ? binary_apply(def, af, bf) : NULL);
}

static bool is_float(const ag_tensor *t) { return t->dtype == AG_F32 || t->dtype == AG_F64; }

/* y = f(a, b) over the broadcast shape of a and b. */
static ag_tensor *binary_apply(const binary_def *def, ag_tensor *a, ag_tensor *b) {
    AG_CHECK_HANDLES(NULL, def->op.name, a, b);
    if (!a || !b) return NULL;
    if (!is_float(a) && !is_float(b) && promotes_integers(def)) return binary_promoted(def, a, b);
    if (ag__check_float(def->op.name, a, b)) return NULL;
    int ndim;
    int64_t shape[AG_MAX_DIMS];
    if (ag__broadcast_shape(def->op.name, a, b, &ndim, shape)) return NULL;
    /* y is laid out as a and b when those read in full are dense in one permuted layout (two transposed
     * operands, or one and a broadcast one: PyTorch's preserve_format), else row-major */
    ag_tensor *y = ag__new_map_result(a->dtype, ndim, shape, (const ag_tensor *const[]){a, b}, 2);
    if (!y) return NULL;
    ag_inner_fn fn = def->fwd[AG_DTYPE_INDEX(a->dtype)];
    if ((ag__flat_as(a, ndim, shape) && ag__flat_as(b, ndim, shape) && ag__contig(y)) ||
        (ag__same_dense(y, a) && ag__same_dense(y, b))) {
        char *p[3] = {ag__ptr(y), ag__ptr(a), ag__ptr(b)};
        ag__par_run_flat(fn, NULL, ag__numel(y->ndim, y->shape), 3, p, (int64_t)ag__esize(a->dtype));
    } else {
        ag_iter it;
        ag__iter_init(&it, ndim, shape);
        ag__iter_add(&it, y);
        ag__iter_add(&it, a);
        ag__iter_add(&it, b);
        ag__iter_run_par(&it, fn, NULL);
    }
    ag_tensor *in[2] = {a, b};
    if (ag__needs_grad(in, 2) && !ag__record(y, &def->op, in, 2)) return NULL;
    return ag__check_finite(y, def->op.name);
}

/* The gradient of one input over the output's shape; ag__accumulate sums it down. */
static ag_status input_grad(ag_tensor *out, ag_tensor *gout, int which, ag_inner_fn fn) {
    ag_tensor *g = ag__new_unowned(out->dtype, out->ndim, out->shape, false);
    if (!g) return AG_ERR_NOMEM;
    ag_tensor *a = out->in[0], *b = out->in[1];
    if (ag__flat_as(a, out->ndim, out->shape) && ag__flat_as(b, out->ndim, out->shape) && ag__contig(out) && ag__contig(gout)) {
        char *p[5] = {ag__ptr(g), ag__ptr(a), ag__ptr(b), ag__ptr(out), ag__ptr(gout)};
        ag__par_run_flat(fn, NULL, ag__numel(out->ndim, out->shape), 5, p, (int64_t)ag__esize(out->dtype));
    } else {
        /* a, b or y that the row's adjoints do not read (its saves) is walked as g, which the kernel only
         * writes: a y laid out as transposed inputs is then no extra strided operand (mul's) */
        const unsigned saves = out->op->saves;
        ag_iter it;
        ag__iter_init(&it, out->ndim, out->shape);
        ag__iter_add(&it, g);
        ag__iter_add(&it, saves & AG_SAVES_IN0 ? a : g);
        ag__iter_add(&it, saves & AG_SAVES_IN1 ? b : g);
        ag__iter_add(&it, saves & AG_SAVES_OUT ? out : g);
        ag__iter_add(&it, gout);
        ag__iter_run_par(&it, fn, NULL);
    }
    return ag__accumulate(out->in[which], g);
}

static ag_status binary_backward(ag_tensor *out, ag_tensor *gout) {
    const binary_def *def = (const binary_def *)out->op;
    int k = AG_DTYPE_INDEX(out->dtype);
    ag_status st = AG_OK;
    /* dy passed on as it is: a's is its last use unless b gets dy too (b's always is), so a leaf's .grad
     * may adopt it (ag__accumulate_last); input_grad only reads dy */
    const bool b_too = ag__wants(out, 1) && (def->pass & B);
    if (ag__wants(out, 0))
        st = def->pass & A ? ag__accumulate_last(out->in[0], ag_retain(gout), b_too ? NULL : gout)
                           : input_grad(out, gout, 0, def->bwd_a[k]);
    if (st == AG_OK && ag__wants(out, 1))
        st = def->pass & B ? ag__accumulate_last(out->in[1], ag_retain(gout), gout) : input_grad(out, gout, 1, def->bwd_b[k]);
    return st;
}

BINARY_OPS(DEFINE_BINARY)

static bool promotes_integers(const binary_def *def) {
    return def == &atan2_def || def == &copysign_def || def == &xlogy_def;
}

#define REGISTER(NAME, ...) &NAME##_def.op,
const ag_op *const ag__binary_ops[] = {BINARY_OPS(REGISTER) NULL};

ag_tensor *ag__mul_record(ag_tensor *y, ag_tensor *a, ag_tensor *b) {
    ag_tensor *in[2] = {a, b};
    if (ag__needs_grad(in, 2) && !ag__record(y, &mul_def.op, in, 2)) return NULL;
    return ag__check_finite(y, mul_def.op.name);
}

ag_inner_fn ag__binary_kernel(const ag_op *op, ag_dtype dtype) {
    for (int i = 0; ag__binary_ops[i]; i++)
        if (ag__binary_ops[i] == op) return ((const binary_def *)op)->fwd[AG_DTYPE_INDEX(dtype)];
    return NULL;
}

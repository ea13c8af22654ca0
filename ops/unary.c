/*
 * unary.c - elementwise ops of one tensor (and optional scalar parameters a, b).
 *
 * Each op is one row of UNARY_OPS: its forward expression in x (and a, b), its
 * adjoint dx as an expression in x, y = f(x), dy, and what the adjoint reads.
 * The row generates the float and double kernels, the op's registration and
 * its public function.  <tgmath.h> makes exp(x) call expf for float.
 */
#include <float.h>
#include <string.h>
#include <tgmath.h>
#include "core/dnnl_cache.h"
#include "core/layout.h"
#include "ops/adjoint_run.h"
#include "ops/kernels.h"
#include "ops/special.h"
#include "ops/vmathf.h"
#include "ops/partial.h"
#include "core/parallel.h"
#include "core/sum.h"
#include "autograd/tape.h"
#include "agrad/ops.h"

#define SGN(x) ((T)(((x) > 0) - ((x) < 0)))
/* Sigmoid without overflow for large |x|. */
#define SIGMOID(x) ((x) >= 0 ? (T)1 / ((T)1 + exp(-(x))) : exp(x) / ((T)1 + exp(x)))

/* float32 exp, expm1, log1p, sigmoid, softplus, sinh, cosh, tanh, atan, asin, acos, asinh, acosh, atanh, erf,
 * erfc, mish (and mish'), log2, log10, exp2, tan, sin and cos, sinc (and sinc'), logit's log, pow_scalar's and rpow_scalar's pow, lgamma, digamma (and trigamma) and erfinv without a libm call, so that the loops over them vectorise (libm's float functions,
 * ~10 ns an element, held these ops at a tenth of PyTorch's speed): the polynomials of ops/vmathf.h and
 * ops/vexpf.h, within 4 float32 ulps of the exact result (libm's 0.5; lgamma, digamma and trigamma within 9,
 * absolute near their zeros; each one's bound is in vmathf.h); float64 keeps libm (and ops/special.c). */
#define EXPM1_V(x) _Generic((x), float: vexpm1f, default: expm1)(x)
/* expm1(x) for x <= 20 (elu's and selu's x <= 0): float32 vexpm1f's bits without its e^x branch above 20 */
#define EXPM1_LE20(x) _Generic((x), float: vexpm1f_le20, default: expm1)(x)
#define LOG1P_V(x) _Generic((x), float: vlog1pf, default: log1p)(x)
#define EXP_NEG(x) _Generic((x), float: vexpf, default: exp)(x)
#define SIGMOID_V(x) _Generic((x), float: vsigmoidf(x), default: SIGMOID(x))
#define SOFTPLUS_V(x) _Generic((x), float: vsoftplusf(x), default: SOFTPLUS(x))
#define SINH_V(x) _Generic((x), float: vsinhf, default: sinh)(x)
#define COSH_V(x) _Generic((x), float: vcoshf, default: cosh)(x)
#define ATAN_V(x) _Generic((x), float: vatanf, default: atan)(x)
#define ASIN_V(x) _Generic((x), float: vasinf, default: asin)(x)
#define ACOS_V(x) _Generic((x), float: vacosf, default: acos)(x)
#define ASINH_V(x) _Generic((x), float: vasinhf, default: asinh)(x)
#define ACOSH_V(x) _Generic((x), float: vacoshf, default: acosh)(x)
#define ATANH_V(x) _Generic((x), float: vatanhf, default: atanh)(x)
#define TANH_V(x) _Generic((x), float: vtanhf, default: tanh)(x)
#define LOG2_V(x) _Generic((x), float: vlog2f, default: log2)(x)
#define LOG10_V(x) _Generic((x), float: vlog10f, default: log10)(x)
#define EXP2_V(x) _Generic((x), float: vexp2f, default: exp2)(x)
#define TAN_V(x) _Generic((x), float: vtanf, default: tan)(x)
#define SIN_V(x) _Generic((x), float: vsinf, default: sin)(x)
#define COS_V(x) _Generic((x), float: vcosf, default: cos)(x)
#define EXP_V(x) _Generic((x), float: vexpf_any, default: exp)(x)
#define LOG_V(x) _Generic((x), float: vlogf, default: log)(x)
#define POW_V(x, e) _Generic((x), float: vpowf, default: pow)(x, e)
/* a^x for a loop-invariant a: log2|a| once, in double */
#define RPOW_V(a, x) _Generic((x), float: vmathf_pow_at(a, x, log2(fabs((double)(a)))), default: pow(a, x))
#define ERF_V(x) _Generic((x), float: verff, default: erf)(x)
#define ERFC_V(x) _Generic((x), float: verfcf, default: erfc)(x)
/* e^(-x²): NaN for NaN (vexpf alone may give 0 there). */
#define EXP_NEG_SQ(x) _Generic((x), float: vmathf_exp_negsq(x), default: exp(-(x) * (x)))
#define TWO_OVER_SQRT_PI ((T)1.1283791670955126)
/* sinc x = sin(πx)/(πx) (1 at 0) and dy·sinc'(x) = dy·(πx·cos πx - sin πx)/(πx²) (0 at 0): float32 by
 * vmathf.h's vsincf and vsinc_gradf (an exact reduction of x mod 1/2, in double lanes: within 0.51 ulps,
 * the adjoint within 1 ulp of its larger term), float64 by libm on π·x. */
#define SINC_V(x) _Generic((x), float: vsincf(x), default: (x) == 0 ? 1 : sin(PI * (x)) / (PI * (x)))
#define SINC_D(x, dy) \
    _Generic((x), float: vsinc_gradf(x, dy), \
             default: (x) * (x) * PI == 0 ? 0 : (dy) * (PI * (x) * cos(PI * (x)) - sin(PI * (x))) / ((x) * (x) * PI))
/* Activations.  softplus(z) = log(1 + e^z) without overflow: max(z, 0) + log1p(e^-|z|). */
#define SOFTPLUS(z) (((z) > 0 ? (z) : (T)0) + log1p(exp(-fabs(z))))
/* The standard normal CDF Φ (via erfc, accurate in both tails) and density φ. */
#define PHI(x) ((T)0.5 * erfc(-(x) * (T)0.70710678118654752))
#define PDF(x) ((T)0.39894228040143268 * exp(-(x) * (x) / 2))
/* tanh-GELU: 1 + tanh(u) = 2·σ(2u) with u = √(2/π)·(x + 0.044715·x³); GELU_DU = du/dx. */
#define GELU_U(x) ((T)0.79788456080286536 * ((x) + (T)0.044715 * (x) * (x) * (x)))
#define GELU_DU(x) ((T)0.79788456080286536 * (1 + 3 * (T)0.044715 * (x) * (x)))
/* mish: tanh(softplus(x)); mish(x) = x·t and mish'(x) = t + x·σ(x)·(1 - t²) (float32: vmathf.h's). */
#define MISH_T(x) tanh(SOFTPLUS(x))
#define MISH_V(x) _Generic((x), float: vmishf(x), default: (x) * MISH_T(x))
#define MISH_D(x) _Generic((x), float: vmish_gradf(x), default: MISH_T(x) + (x) * SIGMOID(x) * (1 - MISH_T(x) * MISH_T(x)))
/* SELU's fixed constants λ and λ·α (PyTorch's scale and alpha). */
#define SELU_SCALE ((T)1.0507009873554804934193349852946)
#define SELU_NEG ((T)1.6732632423543772848170429916717 * SELU_SCALE)

#define PI ((T)3.14159265358979323846)
#define LN2 ((T)0.69314718055994530942)
#define LN10 ((T)2.30258509299404568402)
/* logit's input clamped to [LO, HI] = [eps, 1 - eps] (eps = a), or to [-inf, inf] (as it is) when
 * eps < 0 (PyTorch's None): one clamp whose bounds are loop invariants, so that the loops over it
 * vectorise (gcc 12 vectorised no loop over the clamp under a select on a < 0). */
#define LOGIT_LO (a < 0 ? -(T)INFINITY : a)
#define LOGIT_HI (a < 0 ? (T)INFINITY : 1 - a)
#define LOGIT_Z(x) ((x) < LOGIT_LO ? LOGIT_LO : (x) > LOGIT_HI ? LOGIT_HI : (x))

/* The special functions: float64 those of ops/special.c (lgamma without C's global signgam, so
 * the parallel loops do not race on it), float32 ops/vmathf.h's polynomials that vectorise
 * (polygamma keeps ops/special.c's, rounded to T, for every n). */
#undef lgamma
#define lgamma(x) _Generic((x), float: vlgammaf, default: ag__lgamma)(x)
#define digamma(x) _Generic((x), float: vdigammaf, default: ag__digamma)(x)
#define trigamma(x) _Generic((x), float: vtrigammaf, default: ag__trigamma)(x)
#define polygamma(n, x) ((T)ag__polygamma((int64_t)(n), x))
#define erfinv(x) _Generic((x), float: verfinvf, default: ag__erfinv)(x)
/* e^(y²), erfinv's derivative over √π/2: float32 by vexpf (inf from y² = 88.8; NaN for NaN). */
#define EXP_SQ(y) _Generic((y), float: vmathf_exp_sq(y), default: exp((y) * (y)))
#define HALF_SQRT_PI ((T)0.88622692545275801365)

#define NEVER INT64_MAX
/* only in AG_BACKEND_ACCEL (tanh: vtanhf's loop beats oneDNN 2.6's tanh at every size, 4M floats on one
 * thread 2.7 -> 1.2 ms on Zen 5; docs/benchmarks.md, session 17) */
#define ACCEL_ONLY (INT64_MAX - 1)
#define DNNL(ALG, FWD_MIN, BWD_MIN) {dnnl_eltwise_##ALG, FWD_MIN, BWD_MIN, false}
#define DNNL_FIX(ALG, FWD_MIN, BWD_MIN) {dnnl_eltwise_##ALG, FWD_MIN, BWD_MIN, true}
#define NO_DNNL {0, 0, 0, false}

#define IN0 AG_SAVES_IN0
#define OUT AG_SAVES_OUT

/* X(name, grad_fn, forward y =, adjoint dx =, local derivative dy/dx, saves, oneDNN)
 * The local derivative is D(agrad ops on the tensors x, y and the scalars a, b), or
 * NONE while the op has none (no create_graph; ops/partial.h). 
 * Rows with parameters (a, b: clamp, *_scalar, leaky_relu, elu, celu, softplus,
 * hardtanh) have their public function written below; relu6 is hardtanh(x, 0, 6).
 * oneDNN: DNNL(eltwise algorithm, forward from n elements, backward from n elements)
 * for a float32 contiguous input of n elements, or NO_DNNL.  The algorithm computes
 * the same formula as the row (a *_use_dst_for_bwd one when the adjoint reads y);
 * the sizes are where it beats the C loop (measured, single thread; NEVER: never; ACCEL_ONLY: in AG_BACKEND_ACCEL alone;
 * relu never does: the C loop is one pass, oneDNN's primitive plus the special-value scan
 * two: [128, 32, 28, 28] forward 0.8 ms against 2.0, backward 2.9 against 3.5; nor exp since
 * session 13, whose C loop is vexpf_any, one pass: [2048, 2048] forward + backward 10.5-11.8 ->
 * 6.3-6.4 ms, [512, 512] 292-347 -> 205-252 µs; nor log since session 21, whose C loop is vlogf (within 1 ulp):
 * [512, 512] forward 291 -> 107 µs, [2048, 2048] 6.3 -> 2.1 ms, one thread).
 * Results agree with the C loop to float32 rounding, except that oneDNN flushes
 * denormal results to zero.  DNNL_FIX: oneDNN 2.6 gets some special inputs wrong
 * (exp(NaN) = inf, log(1e-40) = -88.0 instead of -92.1, relu(NaN) = 0 and relu'(NaN)
 * = 0 where the row keeps NaN and dy as PyTorch, mish'(1e30) = inf), so elements whose
 * input is NaN, infinite, denormal or beyond ±1e4 are recomputed by the C kernel
 * after it, forward and backward.  abs and square have none: their C loops are one
 * vectorised pass that oneDNN does not beat (a [2048, 2048] abs 3.0-3.5 ms either way),
 * and a strided input runs through the iterator's packed tiles in one pass (a transposed
 * [2048, 2048] abs 11.3 -> 7.5 ms in session 10, 3.8-4.5 ms with session 11's prefetched
 * tiles; one thread), with no denormal flushed to zero.  A strided input of a row that
 * oneDNN serves is copied into y block by block and served there in place
 * (dnnl_fwd_strided).  test_backend checks these special values for every oneDNN row.
 * Activations: gelu_erf and gelu_tanh are what PyTorch's float32 GELU runs (oneDNN), with
 * the same values; hardswish's backward stays in C (oneDNN's derivative at -3 is 0, PyTorch's
 * -1/2); softplus has none: soft_relu in 2.6 has no beta and loses the left tail (1% off at
 * x = -10, 0 from x = -30 where the C loop gives 9.4e-14, so log(softplus) would be -inf);
 * elu, celu, selu, silu (swish), leaky_relu (relu) and hardtanh/relu6 (clip) need the
 * algorithm's alpha/beta, which ag__dnnl_eltwise_fwd/bwd do not pass (always 0). */
#define UNARY_OPS(X) \
    X(neg, "NegBackward0", -x, -dy, D(K(-1)), 0, NO_DNNL) \
    X(exp, "ExpBackward0", EXP_V(x), dy * y, D(y), OUT, DNNL_FIX(exp_use_dst_for_bwd, NEVER, NEVER)) \
    X(log, "LogBackward0", LOG_V(x), dy / x, D(ag_reciprocal(x)), IN0, NO_DNNL) \
    X(log1p, "Log1PBackward0", LOG1P_V(x), dy / (1 + x), D(ag_reciprocal(ag_add_scalar(x, 1))), IN0, NO_DNNL) \
    X(expm1, "Expm1Backward0", EXPM1_V(x), dy * (y + 1), D(ag_add_scalar(y, 1)), OUT, NO_DNNL) \
    X(sqrt, "SqrtBackward0", sqrt(x), dy / (2 * y), D(ag_div_scalar(ag_reciprocal(y), 2)), OUT, DNNL(sqrt_use_dst_for_bwd, 256, NEVER)) \
    X(rsqrt, "RsqrtBackward0", 1 / sqrt(x), -dy * y * y * y / 2, D(ag_mul_scalar(ag_pow_scalar(y, 3), -0.5)), OUT, NO_DNNL) \
    X(square, "PowBackward0", x * x, 2 * dy * x, D(ag_mul_scalar(x, 2)), IN0, NO_DNNL) \
    X(reciprocal, "ReciprocalBackward0", 1 / x, -dy * y * y, D(ag_neg(ag_square(y))), OUT, NO_DNNL) \
    X(abs, "AbsBackward0", fabs(x), dy * SGN(x), D(ag_sign(x)), IN0, NO_DNNL) \
    X(sign, "SignBackward0", SGN(x), 0, D(ZERO), 0, NO_DNNL) \
    X(sin, "SinBackward0", SIN_V(x), dy * COS_V(x), D(ag_cos(x)), IN0, NO_DNNL) \
    X(cos, "CosBackward0", COS_V(x), -dy * SIN_V(x), D(ag_neg(ag_sin(x))), IN0, NO_DNNL) \
    X(tan, "TanBackward0", TAN_V(x), dy * (1 + y * y), D(ag_add_scalar(ag_square(y), 1)), OUT, NO_DNNL) \
    X(tanh, "TanhBackward0", TANH_V(x), dy * (1 - y * y), D(ag_rsub_scalar(1, ag_square(y))), OUT, DNNL(tanh_use_dst_for_bwd, ACCEL_ONLY, NEVER)) \
    X(sigmoid, "SigmoidBackward0", SIGMOID(x), dy * y * (1 - y), D(ag_mul(y, ag_rsub_scalar(1, y))), OUT, DNNL(logistic_use_dst_for_bwd, 256, NEVER)) \
    X(atan, "AtanBackward0", ATAN_V(x), dy / (1 + x * x), D(ag_reciprocal(ag_add_scalar(ag_square(x), 1))), IN0, NO_DNNL) \
    X(relu, "ReluBackward0", x <= 0 ? 0 : x, y <= 0 ? 0 : dy, D(MASK(ag_gt(y, K(0)))), OUT, DNNL_FIX(relu_use_dst_for_bwd, NEVER, NEVER)) \
    X(erf, "ErfBackward0", ERF_V(x), dy * TWO_OVER_SQRT_PI * EXP_NEG_SQ(x), D(ag_mul_scalar(ag_exp(ag_neg(ag_square(x))), 1.1283791670955126)), IN0, NO_DNNL) \
    X(floor, "FloorBackward0", floor(x), 0, D(ZERO), 0, NO_DNNL) \
    X(round, "RoundBackward0", nearbyint(x), 0, D(ZERO), 0, NO_DNNL) \
    X(trunc, "TruncBackward0", trunc(x), 0, D(ZERO), 0, NO_DNNL) \
    X(clamp, "ClampBackward1", x < a ? a : (x > b ? b : x), x >= a && x <= b ? dy : 0, D(ag_mul(MASK(ag_ge(x, K(a))), MASK(ag_le(x, K(b))))), IN0, NO_DNNL) \
    X(add_scalar, "AddBackward1", x + a, dy, D(K(1)), 0, NO_DNNL) \
    X(sub_scalar, "SubBackward1", x - a, dy, D(K(1)), 0, NO_DNNL) \
    X(rsub_scalar, "RsubBackward1", a - x, -dy, D(K(-1)), 0, NO_DNNL) \
    X(mul_scalar, "MulBackward1", x * a, dy * a, D(K(a)), 0, NO_DNNL) \
    X(div_scalar, "DivBackward1", x / a, dy / a, D(K(1 / a)), 0, NO_DNNL) \
    X(rdiv_scalar, "DivBackward2", a / x, -dy * y / x, D(ag_neg(ag_div(y, x))), IN0 | OUT, NO_DNNL) \
    X(pow_scalar, "PowBackward0", POW_V(x, a), a == 0 ? 0 : dy * (a * POW_V(x, a - 1)), D(a == 0 ? ZERO : ag_mul_scalar(ag_pow_scalar(x, a - 1), a)), IN0, NO_DNNL) \
    X(rpow_scalar, "PowBackward1", RPOW_V(a, x), a == 0 && x >= 0 ? 0 : dy * (y * log(a)), D(a == 0 ? ZERO : ag_mul_scalar(y, log(a))), IN0 | OUT, NO_DNNL) \
    X(leaky_relu, "LeakyReluBackward0", x > 0 ? x : x * a, x > 0 ? dy : dy * a, D(ag_where(ag_gt(x, K(0)), K(1), K(a))), IN0, NO_DNNL) \
    X(elu, "EluBackward0", x <= 0 ? EXPM1_LE20(x) * a : x, x <= 0 ? dy * a * EXP_NEG(x) : dy, D(ag_where(ag_le(x, K(0)), ag_mul_scalar(ag_exp(x), a), K(1))), IN0, NO_DNNL) \
    X(selu, "EluBackward0", x <= 0 ? EXPM1_LE20(x) * SELU_NEG : x * SELU_SCALE, x <= 0 ? dy * SELU_NEG * EXP_NEG(x) : dy * SELU_SCALE, D(ag_where(ag_le(x, K(0)), ag_mul_scalar(ag_exp(x), SELU_NEG), K(SELU_SCALE))), IN0, NO_DNNL) \
    X(celu, "CeluBackward0", x <= 0 ? EXPM1_V(x / a) * a : x, x <= 0 ? dy * EXP_NEG(x / a) : dy, D(ag_where(ag_le(x, K(0)), ag_exp(ag_div_scalar(x, a)), K(1))), IN0, NO_DNNL) \
    X(softplus, "SoftplusBackward0", x * a > b ? x : SOFTPLUS_V(x * a) / a, x * a > b ? dy : dy * SIGMOID_V(x * a), D(ag_where(ag_gt(ag_mul_scalar(x, a), K(b)), K(1), ag_sigmoid(ag_mul_scalar(x, a)))), IN0, NO_DNNL) \
    X(gelu, "GeluBackward0", x * PHI(x), dy * (PHI(x) + x * PDF(x)), D(ag_add(gelu_cdf(x), ag_mul(x, gelu_pdf(x)))), IN0, DNNL(gelu_erf, 64, 64)) \
    X(gelu_tanh, "GeluBackward0", x * SIGMOID(2 * GELU_U(x)), dy * (SIGMOID(2 * GELU_U(x)) + 2 * x * SIGMOID(2 * GELU_U(x)) * SIGMOID(-2 * GELU_U(x)) * GELU_DU(x)), D(gelu_tanh_deriv(x)), IN0, DNNL(gelu_tanh, 256, 64)) \
    X(silu, "SiluBackward0", x * SIGMOID_V(x), dy * SIGMOID_V(x) * (1 + x * (1 - SIGMOID_V(x))), D(ag_mul(ag_sigmoid(x), ag_add_scalar(ag_mul(x, ag_rsub_scalar(1, ag_sigmoid(x))), 1))), IN0, NO_DNNL) \
    X(mish, "MishBackward0", MISH_V(x), dy * MISH_D(x), D(mish_deriv(x)), IN0, DNNL_FIX(mish, 64, 64)) \
    X(hardtanh, "HardtanhBackward0", x < a ? a : (x > b ? b : x), x <= a || x >= b ? 0 : dy, D(ag_mul(MASK(ag_gt(x, K(a))), MASK(ag_lt(x, K(b))))), IN0, NO_DNNL) \
    X(hardsigmoid, "HardsigmoidBackward0", x <= -3 ? 0 : (x >= 3 ? 1 : (x + 3) / 6), x > -3 && x < 3 ? dy * ((T)1 / 6) : 0, D(ag_mul_scalar(ag_mul(MASK(ag_gt(x, K(-3))), MASK(ag_lt(x, K(3)))), 1.0 / 6)), IN0, NO_DNNL) \
    X(hardswish, "HardswishBackward0", x * (x <= -3 ? 0 : (x >= 3 ? 6 : x + 3)) / 6, x < -3 ? 0 : (x < 3 ? dy * (x / 3 + (T)0.5) : dy), D(ag_where(ag_lt(x, K(-3)), K(0), ag_where(ag_lt(x, K(3)), ag_add_scalar(ag_div_scalar(x, 3), 0.5), K(1)))), IN0, DNNL(hardswish, 1024, NEVER)) \
    X(softsign, "DivBackward0", x / (fabs(x) + 1), dy / ((fabs(x) + 1) * (fabs(x) + 1)), D(ag_reciprocal(ag_square(ag_add_scalar(ag_abs(x), 1)))), IN0, NO_DNNL) \
    X(binary_step, "BinaryStepBackward0", x > 0 ? 1 : 0, 0, D(ZERO), 0, NO_DNNL) \
    X(asin, "AsinBackward0", ASIN_V(x), dy / sqrt(1 - x * x), D(ag_rsqrt(ag_rsub_scalar(1, ag_square(x)))), IN0, NO_DNNL) \
    X(acos, "AcosBackward0", ACOS_V(x), -dy / sqrt(1 - x * x), D(ag_neg(ag_rsqrt(ag_rsub_scalar(1, ag_square(x))))), IN0, NO_DNNL) \
    X(sinh, "SinhBackward0", SINH_V(x), dy * COSH_V(x), D(ag_cosh(x)), IN0, NO_DNNL) \
    X(cosh, "CoshBackward0", COSH_V(x), dy * SINH_V(x), D(ag_sinh(x)), IN0, NO_DNNL) \
    X(asinh, "AsinhBackward0", ASINH_V(x), dy / sqrt(x * x + 1), D(ag_rsqrt(ag_add_scalar(ag_square(x), 1))), IN0, NO_DNNL) \
    X(acosh, "AcoshBackward0", ACOSH_V(x), dy / sqrt(x * x - 1), D(ag_rsqrt(ag_sub_scalar(ag_square(x), 1))), IN0, NO_DNNL) \
    X(atanh, "AtanhBackward0", ATANH_V(x), dy / (1 - x * x), D(ag_reciprocal(ag_rsub_scalar(1, ag_square(x)))), IN0, NO_DNNL) \
    X(log2, "Log2Backward0", LOG2_V(x), dy / (x * LN2), D(ag_reciprocal(ag_mul_scalar(x, LN2))), IN0, NO_DNNL) \
    X(log10, "Log10Backward0", LOG10_V(x), dy / (x * LN10), D(ag_reciprocal(ag_mul_scalar(x, LN10))), IN0, NO_DNNL) \
    X(exp2, "Exp2Backward0", EXP2_V(x), dy * y * LN2, D(ag_mul_scalar(y, LN2)), OUT, NO_DNNL) \
    X(logit, "LogitBackward0", LOG_V(LOGIT_Z(x) / (1 - LOGIT_Z(x))), a < 0 ? (x < 0 || x > 1 ? (T)NAN : dy / (x * (1 - x))) : (x < a || x > 1 - a ? 0 : dy / (x * (1 - x))), D(logit_deriv(x, a)), IN0, NO_DNNL) \
    X(erfc, "ErfcBackward0", ERFC_V(x), -dy * TWO_OVER_SQRT_PI * EXP_NEG_SQ(x), D(ag_mul_scalar(ag_exp(ag_neg(ag_square(x))), -1.1283791670955126)), IN0, NO_DNNL) \
    X(sinc, "SincBackward0", SINC_V(x), SINC_D(x, dy), D(sinc_deriv(x)), IN0, NO_DNNL) \
    X(ceil, "CeilBackward0", ceil(x), 0, D(ZERO), 0, NO_DNNL) \
    X(frac, "FracBackward0", x - trunc(x), dy, D(K(1)), 0, NO_DNNL) \
    X(lgamma, "LgammaBackward0", lgamma(x), dy * digamma(x), D(ag_digamma(x)), IN0, NO_DNNL) \
    X(digamma, "DigammaBackward0", digamma(x), dy * trigamma(x), D(ag_polygamma(1, x)), IN0, NO_DNNL) \
    X(polygamma, "PolygammaBackward0", polygamma(a, x), dy * polygamma(a + 1, x), D(ag_polygamma((int64_t)a + 1, x)), IN0, NO_DNNL) \
    X(erfinv, "ErfinvBackward0", erfinv(x), dy * HALF_SQRT_PI * EXP_SQ(y), D(ag_mul_scalar(ag_exp(ag_square(y)), HALF_SQRT_PI)), OUT, NO_DNNL) \
    X(nan_to_num, "NanToNumBackward0", x != x ? a : (x == (T)INFINITY ? b : (x == -(T)INFINITY ? c : x)), isfinite(x) ? dy : 0, D(MASK(ag_isfinite(x))), IN0, NO_DNNL)

/* The oneDNN eltwise algorithm of an op (0: none) and the sizes from which it is used. */
typedef struct dnnl_use {
    int alg;
    int64_t fwd_min, bwd_min;
    bool fixup; /* recompute the elements with an UNTRUSTED input with the C kernel */
} dnnl_use;

/* A unary op: its registration followed by its kernels (fwd: y, x; bwd: dx, x, y, dy). */
typedef struct unary_def {
    ag_op op;
    ag_inner_fn fwd[2], bwd[2];
    dnnl_use dnnl;
} unary_def;

/* A third parameter c (nan_to_num's neginf) rides in the bits of attr.i[0]: ag_attr has two doubles. */
static double attr_c(const ag_attr *at) {
    double c;
    memcpy(&c, &at->i[0], sizeof c);
    return c;
}

/* The elementwise kernels are AVX2 clones (core/sum.h: the same bits, ISO C contracts no FMA): relu
 * [222, 296] forward 5.7 -> 4.7 µs, one thread, L2-resident.  They have an AVX-512 clone too
 * (AG_VEC_CLONES_512), for the float32 maths computed in double lanes (vtanf's gathers and double
 * arithmetic: tan [512, 512] forward, see docs/benchmarks.md "Session 10: float32 tan..."; the
 * adjoints' since session 13: pow_scalar's a·x^(a-1), see "Session 13: float32 unary maths"). */
#define FWD_KERNEL(NAME, TYPE, FWD)                                                       \
    AG_VEC_CLONES_512 static void NAME(char **p, const int64_t *s, int64_t n, void *ctx) {    \
        typedef TYPE T;                                                                   \
        const ag_attr *at = ctx;                                                          \
        const T a = (T)at->a, b = (T)at->b, c = (T)attr_c(at);                            \
        (void)a, (void)b, (void)c;                                                        \
        if (s[0] == sizeof(T) && s[1] == sizeof(T)) {                                     \
            T *restrict yp = (T *)p[0];                                                   \
            const T *restrict xp = (const T *)p[1];                                       \
            for (int64_t i = 0; i < n; i++) {                                             \
                const T x = xp[i];                                                        \
                yp[i] = (T)(FWD);                                                         \
            }                                                                             \
        } else {                                                                          \
            for (int64_t i = 0; i < n; i++) {                                             \
                const T x = *(const T *)(p[1] + i * s[1]);                                \
                *(T *)(p[0] + i * s[0]) = (T)(FWD);                                       \
            }                                                                             \
        }                                                                                 \
    }

/* The adjoint kernels are flattened (every helper inlined): gcc 12 left vsinhf a call in cosh's
 * (dy·sinh x) and vdigammaf in lgamma's (dy·ψ(x)), so that neither loop vectorised (cosh [2048, 2048]
 * forward + backward ran at 0.29x PyTorch's speed, one thread; see docs/benchmarks.md, session 15). */
#define BWD_KERNEL(NAME, TYPE, BWD)                                                       \
    AG_VEC_CLONES_512 __attribute__((flatten)) static void NAME(char **p, const int64_t *s, int64_t n, void *ctx) {    \
        typedef TYPE T;                                                                   \
        const ag_attr *at = ctx;                                                          \
        const T a = (T)at->a, b = (T)at->b;                                               \
        (void)a, (void)b;                                                                 \
        if (s[0] == sizeof(T) && s[1] == sizeof(T) && s[2] == sizeof(T) && s[3] == sizeof(T)) { \
            T *restrict gp = (T *)p[0];                                                   \
            const T *restrict xp = (const T *)p[1], *restrict yp = (const T *)p[2];       \
            const T *restrict dyp = (const T *)p[3];                                      \
            /* a run beyond L2: blocks, dy prefetched (ops/adjoint_run.h) */             \
            AG_ADJ_RUN(T, n, dyp, true, i, const T x = xp[i], y = yp[i], dy = dyp[i];     \
                       (void)x, (void)y, (void)dy; gp[i] = (T)(BWD););                    \
            return;                                                                       \
        }                                                                                 \
        if (s[0] == sizeof(T) && s[1] == sizeof(T) && s[2] == sizeof(T) && s[3] == 0) {  \
            /* dy broadcast along the run (the gradient of a sum) */                      \
            T *restrict gp = (T *)p[0];                                                   \
            const T *restrict xp = (const T *)p[1], *restrict yp = (const T *)p[2];       \
            const T dy = *(const T *)p[3];                                                \
            for (int64_t i = 0; i < n; i++) {                                             \
                const T x = xp[i], y = yp[i];                                             \
                (void)x, (void)y, (void)dy;                                               \
                gp[i] = (T)(BWD);                                                         \
            }                                                                             \
            return;                                                                       \
        }                                                                                 \
        for (int64_t i = 0; i < n; i++) {                                                 \
            const T x = *(const T *)(p[1] + i * s[1]);                                    \
            const T y = *(const T *)(p[2] + i * s[2]);                                    \
            const T dy = *(const T *)(p[3] + i * s[3]);                                   \
            (void)x, (void)y, (void)dy;                                                   \
            *(T *)(p[0] + i * s[0]) = (T)(BWD);                                           \
        }                                                                                 \
    }

static ag_status unary_backward(ag_tensor *out, ag_tensor *gout);

/* The derivatives the rows' D(...) columns share, built from agrad ops. */
/* Φ(x) = erfc(-x/√2)/2 and φ(x) = e^(-x²/2)/√(2π): gelu' = Φ + x·φ. */
static ag_tensor *gelu_cdf(ag_tensor *x) { return ag_mul_scalar(ag_erfc(ag_mul_scalar(x, -0.70710678118654752)), 0.5); }
static ag_tensor *gelu_pdf(ag_tensor *x) {
    return ag_mul_scalar(ag_exp(ag_mul_scalar(ag_square(x), -0.5)), 0.39894228040143268);
}
/* s = σ(2u), u = √(2/π)(x + 0.044715x³):  gelu_tanh' = s + 2x·s(1 - s)·u'. */
static ag_tensor *gelu_tanh_deriv(ag_tensor *x) {
    ag_tensor *x2 = ag_square(x);
    ag_tensor *u = ag_mul_scalar(ag_add(x, ag_mul_scalar(ag_mul(x2, x), 0.044715)), 0.79788456080286536);
    ag_tensor *du = ag_mul_scalar(ag_add_scalar(ag_mul_scalar(x2, 3 * 0.044715), 1), 0.79788456080286536);
    ag_tensor *s = ag_sigmoid(ag_mul_scalar(u, 2));
    return ag_add(s, ag_mul(ag_mul_scalar(ag_mul(x, ag_mul(s, ag_rsub_scalar(1, s))), 2), du));
}
/* t = tanh(softplus(x)):  mish' = t + x·σ(x)·(1 - t²). */
static ag_tensor *mish_deriv(ag_tensor *x) {
    ag_tensor *t = ag_tanh(ag_softplus(x, 1, INFINITY));
    return ag_add(t, ag_mul(ag_mul(x, ag_sigmoid(x)), ag_rsub_scalar(1, ag_square(t))));
}
/* logit' = 1/(x(1 - x)), 0 outside [eps, 1 - eps] when eps >= 0. */
static ag_tensor *logit_deriv(ag_tensor *x, double eps) {
    ag_tensor *y = x, *d = ag_reciprocal(ag_mul(x, ag_rsub_scalar(1, x)));
    return eps < 0 ? d : ag_mul(d, ag_mul(MASK(ag_ge(x, K(eps))), MASK(ag_le(x, K(1 - eps)))));
}
/* sinc' = (πx·cos πx - sin πx)/(πx²), 0 at x = 0. */
static ag_tensor *sinc_deriv(ag_tensor *x) {
    ag_tensor *y = x, *px = ag_mul_scalar(x, 3.14159265358979323846);
    ag_tensor *d = ag_div(ag_sub(ag_mul(px, ag_cos(px)), ag_sin(px)), ag_mul(px, x));
    return ag_where(ag_eq(x, K(0)), K(0), d);
}

/* dy/dx of a row: its D(...) column over x = in[0], y, a and b. */
#define PARTIAL_FN(NAME, DERIV)                                                                               \
    static __attribute__((unused)) ag_tensor *NAME##_partial(ag_tensor *const *in, ag_tensor *y,              \
                                                             const ag_attr *attr, int i) {                    \
        typedef double T;                                                                                     \
        ag_tensor *x = in[0];                                                                                 \
        const double a = attr->a, b = attr->b;                                                                \
        (void)x, (void)y, (void)a, (void)b, (void)i, (void)(T)0;                                              \
        return PARTIAL_##DERIV;                                                                               \
    }

#define DEFINE_UNARY(NAME, GRAD_FN, FWD, BWD, DERIV, SAVES, DNNL_USE)                     \
    FWD_KERNEL(NAME##_fwd_f32, float, FWD)                                                \
    FWD_KERNEL(NAME##_fwd_f64, double, FWD)                                               \
    BWD_KERNEL(NAME##_bwd_f32, float, BWD)                                                \
    BWD_KERNEL(NAME##_bwd_f64, double, BWD)                                               \
    PARTIAL_FN(NAME, DERIV)                                                               \
    static const unary_def NAME##_def = {                                                 \
        {.name = #NAME, .grad_fn = GRAD_FN, .backward = unary_backward, .saves = (SAVES) | AG_GOUT_ANY_STRIDES, \
         .math = "y = " #FWD ";  dx = " #BWD,                                             \
         .backward_graph = SELECT_##DERIV(ag__elementwise_backward_graph), .partial = SELECT_##DERIV(NAME##_partial), \
         .jvp = SELECT_##DERIV(ag__elementwise_jvp)},                                     \
        {NAME##_fwd_f32, NAME##_fwd_f64},                                                 \
        {NAME##_bwd_f32, NAME##_bwd_f64},                                                 \
        DNNL_USE};
UNARY_OPS(DEFINE_UNARY)

/* Whether every |x[i]| of x[0..m) is below VMATHF_TRIG_SMALL, 512 (the bits test is false for NaN and
 * infinities): a branch-free scan that vectorises. */
static inline bool trig_all_small(const float *x, int64_t m) {
    uint32_t big = 0;
    for (int64_t i = 0; i < m; i++) {
        uint32_t b;
        memcpy(&b, &x[i], sizeof b);
        big |= (b & 0x7FFFFFFFu) >= 0x44000000u; /* 512.0f */
    }
    return !big;
}

/* tan's, sin's and cos's float32 forward over a contiguous run, and sin's and cos's adjoints (dx =
 * dy·cos x, -dy·sin x) over a contiguous run with dy contiguous or one value: blocks of TRIG_BLOCK
 * whose |x| are all below 512 (trig_all_small) take vtanf_small (vsinf_small, vcosf_small), whose
 * reduction is Cody-Waite's alone, the others vtanf (vsinf, vcosf), which select it or Payne-Hanek's
 * element by element: the same bits as the row's kernels (NAME_fwd_f32 and NAME_bwd_f32, which
 * strided runs keep), about 40% less time (sin [512, 512] below 2); AVX-512 clones as the forward
 * kernels'. */
#define TRIG_BLOCK 256
#define TRIG_BLOCKS(NAME, FULL, SMALL)                                                        \
    AG_VEC_CLONES_512 static void NAME##_fwd_f32_blocks(char **p, const int64_t *s, int64_t n, void *ctx) { \
        if (s[0] != (int64_t)sizeof(float) || s[1] != (int64_t)sizeof(float)) {               \
            NAME##_fwd_f32(p, s, n, ctx);                                                     \
            return;                                                                           \
        }                                                                                     \
        for (int64_t i0 = 0; i0 < n; i0 += TRIG_BLOCK) {                                      \
            const int64_t m = n - i0 < TRIG_BLOCK ? n - i0 : TRIG_BLOCK;                      \
            float *restrict y = (float *)p[0] + i0;                                           \
            const float *restrict x = (const float *)p[1] + i0;                               \
            if (trig_all_small(x, m))                                                         \
                for (int64_t i = 0; i < m; i++) y[i] = SMALL(x[i]);                           \
            else                                                                              \
                for (int64_t i = 0; i < m; i++) y[i] = FULL(x[i]);                            \
        }                                                                                     \
    }
/* The adjoint's blocks: g = DY·F(x) for g, x, dy at p[0], p[1], p[3] (DY an expression of i). */
#define TRIG_BWD_LOOP(F, DY)                                                                  \
    for (int64_t i0 = 0; i0 < n; i0 += TRIG_BLOCK) {                                          \
        const int64_t m = n - i0 < TRIG_BLOCK ? n - i0 : TRIG_BLOCK;                          \
        float *restrict g = (float *)p[0] + i0;                                               \
        const float *restrict x = (const float *)p[1] + i0;                                   \
        const float *restrict dyp = (const float *)p[3] + (s[3] ? i0 : 0);                    \
        (void)dyp;                                                                            \
        if (trig_all_small(x, m))                                                             \
            for (int64_t i = 0; i < m; i++) g[i] = (DY) * F##_small(x[i]);                    \
        else                                                                                  \
            for (int64_t i = 0; i < m; i++) g[i] = (DY) * F(x[i]);                            \
    }
#define TRIG_BWD_BLOCKS(NAME, F, SIGN)                                                        \
    AG_VEC_CLONES_512 static void NAME##_bwd_f32_blocks(char **p, const int64_t *s, int64_t n, void *ctx) { \
        if (s[0] != (int64_t)sizeof(float) || s[1] != (int64_t)sizeof(float) ||               \
            (s[3] != (int64_t)sizeof(float) && s[3] != 0)) {                                  \
            NAME##_bwd_f32(p, s, n, ctx);                                                     \
            return;                                                                           \
        }                                                                                     \
        if (s[3]) {                                                                           \
            TRIG_BWD_LOOP(F, SIGN dyp[i])                                                     \
        } else {                                                                              \
            const float dy = SIGN *(const float *)p[3];                                       \
            TRIG_BWD_LOOP(F, dy)                                                              \
        }                                                                                     \
    }
TRIG_BLOCKS(tan, vtanf, vtanf_small)
TRIG_BLOCKS(sin, vsinf, vsinf_small)
TRIG_BLOCKS(cos, vcosf, vcosf_small)
TRIG_BWD_BLOCKS(sin, vcosf, +)
TRIG_BWD_BLOCKS(cos, vsinf, -)

/* celu's float32 forward for α > 0: x/α <= 0 where x <= 0, so its expm1 needs no e^x branch above 20
 * (vexpm1f_le20, vexpm1f's bits there; for α < 0 x/α may pass 20 and the row's kernel runs): the row's bits,
 * [512, 512] forward 201 -> 143 µs on one thread (docs/benchmarks.md, session 21). */
FWD_KERNEL(celu_pos_fwd_f32, float, x <= 0 ? EXPM1_LE20(x / a) * a : x)

/* The forward kernel of def for dtype and the parameters attr (NULL: any): the row's, or one with the
 * same bits that runs faster. */
static ag_inner_fn fwd_kernel(const unary_def *def, ag_dtype dtype, const ag_attr *attr) {
    if (dtype == AG_F32 && def == &celu_def && attr && attr->a > 0) return celu_pos_fwd_f32;
    if (dtype == AG_F32 && def == &tan_def) return tan_fwd_f32_blocks;
    if (dtype == AG_F32 && def == &sin_def) return sin_fwd_f32_blocks;
    if (dtype == AG_F32 && def == &cos_def) return cos_fwd_f32_blocks;
    return def->fwd[AG_DTYPE_INDEX(dtype)];
}

/* The backward kernel of def for dtype: the row's, or one with the same bits that runs faster. */
static ag_inner_fn bwd_kernel(const unary_def *def, ag_dtype dtype) {
    if (dtype == AG_F32 && def == &sin_def) return sin_bwd_f32_blocks;
    if (dtype == AG_F32 && def == &cos_def) return cos_bwd_f32_blocks;
    return def->bwd[AG_DTYPE_INDEX(dtype)];
}

/* Whether the oneDNN primitive serves a float32 contiguous run of n elements. */
static bool use_dnnl(const dnnl_use *u, const ag_tensor *x, int64_t n, int64_t min) {
    if (!u->alg || min == NEVER || x->dtype != AG_F32 || ag__backend == AG_BACKEND_REFERENCE || !ag_onednn_enabled())
        return false;
    return ag__backend == AG_BACKEND_ACCEL || n >= min;
}

/* The inputs oneDNN's result is not trusted for on DNNL_FIX rows: NaN, infinities,
 * denormals, and |x| > 1e4 (outside the range the primitives were checked on). */
#define UNTRUSTED(v) (!(fabsf(v) >= FLT_MIN && fabsf(v) <= 1e4f) && (v) != 0)

/* Whether any of x[0..n) is UNTRUSTED: a branch-free scan (usually there is nothing to fix). */
static bool any_untrusted(const float *x, int64_t n) {
    int any = 0;
    for (int64_t i = 0; i < n; i++) any |= UNTRUSTED(x[i]);
    return any != 0;
}

/* Recomputes element i of the nops float operands p (operand 0 the result, x the
 * op's input among them) with the C kernel fn wherever x[i] is UNTRUSTED. */
static void fix_specials(ag_inner_fn fn, void *ctx, int nops, char *const *p, const float *x, int64_t n) {
    if (!any_untrusted(x, n)) return;
    const int64_t s[4] = {4, 4, 4, 4};
    for (int64_t i = 0; i < n; i++)
        if (UNTRUSTED(x[i])) {
            char *q[4];
            for (int k = 0; k < nops; k++) q[k] = p[k] + 4 * i;
            fn(q, s, 1, ctx);
        }
}

/* The rows PyTorch computes in floating point for integer and bool inputs too, giving
 * float32 (torch.sin(torch.tensor([1, 2])) is float32); the others refuse such inputs. */
static const unary_def *const promoting[] = {
    &exp_def,   &log_def,   &log1p_def, &expm1_def, &sqrt_def,  &rsqrt_def, &reciprocal_def, &sin_def,
    &cos_def,   &tan_def,   &tanh_def,  &sigmoid_def, &atan_def, &erf_def,  &asin_def,  &acos_def,
    &sinh_def,  &cosh_def,  &asinh_def, &acosh_def, &atanh_def, &log2_def,  &log10_def, &exp2_def,
    &logit_def, &erfc_def,  &erfinv_def, &lgamma_def, &digamma_def, &polygamma_def, &sinc_def};

static bool promotes_integers(const unary_def *def) {
    for (size_t i = 0; i < sizeof promoting / sizeof promoting[0]; i++)
        if (promoting[i] == def) return true;
    return false;
}

static ag_tensor *unary_apply_attr(const unary_def *def, ag_tensor *x, ag_attr attr);

/* y = f(x) through the oneDNN primitive for a strided float32 x (y new and contiguous, n elements):
 * x's values are copied into y (the iterator's packed tiles: the same bits), a block of dim-0 rows at a
 * time, and each block, still in cache (128 Ki elements a thread), goes through the primitive in place;
 * on DNNL_FIX rows a block holding an input oneDNN is not trusted with keeps a copy of its inputs, from
 * which fix_specials recomputes those elements.  The same bits as for a contiguous x, in one pass over
 * y instead of a contiguous copy of x and a pass from it (a transposed [2048, 2048] exp, one thread:
 * see docs/benchmarks.md, session 11).  false if oneDNN or an allocation failed (y is then partly
 * written; the caller recomputes all of it). */
static bool dnnl_fwd_strided(const unary_def *def, ag_tensor *x, ag_tensor *y, int64_t n, ag_attr *attr) {
    const int64_t rows = x->ndim ? x->shape[0] : 1, inner = rows ? n / rows : 0;
    int64_t step = AG_PAR_MIN_ELEMS * ag__threads_for(n) / (inner ? inner : 1);
    if (step < 1) step = 1;
    float *keep = NULL;
    bool ok = true;
    for (int64_t r = 0; r < rows && ok; r += step) {
        int64_t shape[AG_MAX_DIMS];
        memcpy(shape, x->shape, sizeof shape);
        shape[0] = rows - r < step ? rows - r : step;
        const int64_t nb = shape[0] * inner;
        ag_tensor *xb = ag__new_view_unowned(x, x->ndim, shape, x->stride, x->offset + r * x->stride[0]);
        ag_tensor *yb = xb ? ag__new_view_unowned(y, y->ndim, shape, y->stride, y->offset + r * y->stride[0]) : NULL;
        if (!yb) {
            ag_release(xb);
            return false;
        }
        ag__copy_into(yb, xb);
        float *yp = (float *)ag__ptr(yb);
        const bool any = def->dnnl.fixup && any_untrusted(yp, nb);
        if (any && !keep) keep = ag__alloc_n(nb, sizeof *keep); /* no later block is larger */
        if (any && keep) memcpy(keep, yp, (size_t)nb * sizeof *keep);
        ok = (!any || keep) && ag__dnnl_eltwise_fwd(def->dnnl.alg, yp, yp, nb);
        if (ok && any) fix_specials(def->fwd[0], attr, 2, (char *[2]){(char *)yp, (char *)keep}, keep, nb);
        ag_release(xb), ag_release(yb);
    }
    ag__free(keep);
    return ok;
}

/* f(x) of an integer or bool x: f of x converted to float32. */
static ag_tensor *unary_promoted(const unary_def *def, ag_tensor *x, ag_attr attr) {
    if (ag__composite_begin(def->op.name)) return NULL;
    ag_tensor *xf = ag_to_dtype(x, AG_F32);
    return ag__composite_end(xf ? unary_apply_attr(def, xf, attr) : NULL);
}

/* y = f(x) elementwise; the node keeps the parameters attr in its attributes. */
static ag_tensor *unary_apply_attr(const unary_def *def, ag_tensor *x, ag_attr attr) {
    AG_CHECK_HANDLES(NULL, def->op.name, x);
    if (!x) return NULL;
    if (x->dtype != AG_F32 && x->dtype != AG_F64 && promotes_integers(def)) return unary_promoted(def, x, attr);
    if (ag__check_float(def->op.name, x, NULL)) return NULL;
    /* y is laid out as x when x is dense (a transposed or permuted x: PyTorch's preserve_format), and
     * the map is then one flat pass over both */
    ag_tensor *y = ag__new_map_result(x->dtype, x->ndim, x->shape, (const ag_tensor *const[]){x}, 1);
    if (!y) return NULL;
    ag_inner_fn fn = fwd_kernel(def, x->dtype, &attr);
    int64_t n = ag__numel(x->ndim, x->shape);
    const bool flat = (ag__contig(x) && ag__contig(y)) || ag__same_dense(y, x);
    /* a strided x that oneDNN would serve contiguous is copied into y (row-major: x is not dense) and
     * served there, block by block */
    bool strided_dnnl = !flat && ag__contig(y) && use_dnnl(&def->dnnl, x, n, def->dnnl.fwd_min);
    if (strided_dnnl && dnnl_fwd_strided(def, x, y, n, &attr)) {
        /* done */
    } else if (flat) {
        char *p[2] = {ag__ptr(y), ag__ptr(x)};
        if (use_dnnl(&def->dnnl, x, n, def->dnnl.fwd_min) &&
            ag__dnnl_eltwise_fwd(def->dnnl.alg, (const float *)p[1], (float *)p[0], n)) {
            if (def->dnnl.fixup) fix_specials(fn, &attr, 2, p, (const float *)p[1], n);
        } else {
            ag__par_run_flat(fn, &attr, n, 2, p, (int64_t)ag__esize(x->dtype));
        }
    } else {
        ag_iter it;
        ag__iter_init(&it, x->ndim, x->shape);
        ag__iter_add(&it, y);
        ag__iter_add(&it, x);
        ag__iter_run_par(&it, fn, &attr);
    }
    if (ag__needs_grad1(x)) {
        if (!ag__record(y, &def->op, &x, 1)) return NULL;
        y->attr = attr;
    }
    return ag__check_finite(y, def->op.name);
}

static ag_tensor *unary_apply(const unary_def *def, ag_tensor *x, double a, double b) {
    return unary_apply_attr(def, x, (ag_attr){.a = a, .b = b});
}

/* dx = adjoint(x, y, dy) elementwise. */
static ag_status unary_backward(ag_tensor *out, ag_tensor *gout) {
    const unary_def *def = (const unary_def *)out->op;
    ag_tensor *x = out->in[0];
    ag_tensor *gx = ag__new_unowned(x->dtype, x->ndim, x->shape, false);
    if (!gx) return AG_ERR_NOMEM;
    ag_inner_fn fn = bwd_kernel(def, x->dtype);
    int64_t n = ag__numel(x->ndim, x->shape);
    /* oneDNN's adjoint of a row that reads y needs y row-major: a y laid out as a dense x (none of today's
     * rows: those that read y are never served backward) takes the C kernels through the iterator */
    const bool dnnl_bwd = use_dnnl(&def->dnnl, x, n, def->dnnl.bwd_min) && (ag__contig(out) || !(def->op.saves & AG_SAVES_OUT));
    ag_tensor *xc = NULL, *gc = NULL; /* strided x or gout copied for oneDNN, as in the forward */
    if (!(ag__contig(x) && ag__contig(gout)) && dnnl_bwd) {
        xc = ag__contig_or_copy(x);
        gc = xc ? ag__contig_or_copy(gout) : NULL;
        if (!gc) {
            ag_release(xc), ag_release(gx);
            return AG_ERR_NOMEM;
        }
    }
    /* gx, x (or xc), gout (or gc) row-major; out too, or unread (p[2]: a row that does not read y) */
    if (gc || (ag__contig(x) && ag__contig(gout) && ag__contig(out))) {
        char *p[4] = {ag__ptr(gx), ag__ptr(xc ? xc : x), ag__ptr(out), ag__ptr(gc ? gc : gout)};
        const char *src = def->op.saves & AG_SAVES_OUT ? p[2] : p[1]; /* y for *_use_dst_for_bwd */
        if (dnnl_bwd && ag__dnnl_eltwise_bwd(def->dnnl.alg, (const float *)src, (const float *)p[3], (float *)p[0], n)) {
            if (def->dnnl.fixup) fix_specials(fn, &out->attr, 4, p, (const float *)p[1], n);
        } else {
            ag__par_run_flat(fn, &out->attr, n, 4, p, (int64_t)ag__esize(x->dtype));
        }
    } else {
        /* x or y that the row's adjoint does not read (its saves) is walked as gx, which the kernel only
         * writes: a y laid out as a transposed x is then no second strided operand (abs, neg: x alone;
         * relu: y alone) */
        ag_iter it;
        ag__iter_init(&it, x->ndim, x->shape);
        ag__iter_add(&it, gx);
        ag__iter_add(&it, def->op.saves & AG_SAVES_IN0 ? x : gx);
        ag__iter_add(&it, def->op.saves & AG_SAVES_OUT ? out : gx);
        ag__iter_add(&it, gout);
        ag__iter_run_par(&it, fn, &out->attr);
    }
    ag_release(xc), ag_release(gc);
    return ag__accumulate(x, gx);
}

/* ---- public functions ------------------------------------------------------------------- */
#define PUBLIC_PLAIN(NAME) \
    ag_tensor *ag_##NAME(ag_tensor *x) { return unary_apply(&NAME##_def, x, 0, 0); }
PUBLIC_PLAIN(neg) PUBLIC_PLAIN(exp) PUBLIC_PLAIN(log) PUBLIC_PLAIN(log1p) PUBLIC_PLAIN(expm1)
PUBLIC_PLAIN(sqrt) PUBLIC_PLAIN(rsqrt) PUBLIC_PLAIN(square) PUBLIC_PLAIN(reciprocal)
PUBLIC_PLAIN(abs) PUBLIC_PLAIN(sign) PUBLIC_PLAIN(sin) PUBLIC_PLAIN(cos) PUBLIC_PLAIN(tan)
PUBLIC_PLAIN(tanh) PUBLIC_PLAIN(sigmoid) PUBLIC_PLAIN(atan) PUBLIC_PLAIN(relu) PUBLIC_PLAIN(erf)
PUBLIC_PLAIN(floor) PUBLIC_PLAIN(round) PUBLIC_PLAIN(trunc)
PUBLIC_PLAIN(selu) PUBLIC_PLAIN(gelu) PUBLIC_PLAIN(gelu_tanh) PUBLIC_PLAIN(silu) PUBLIC_PLAIN(mish)
PUBLIC_PLAIN(hardsigmoid) PUBLIC_PLAIN(hardswish) PUBLIC_PLAIN(softsign) PUBLIC_PLAIN(binary_step)
PUBLIC_PLAIN(asin) PUBLIC_PLAIN(acos) PUBLIC_PLAIN(sinh) PUBLIC_PLAIN(cosh) PUBLIC_PLAIN(asinh)
PUBLIC_PLAIN(acosh) PUBLIC_PLAIN(atanh) PUBLIC_PLAIN(log2) PUBLIC_PLAIN(log10) PUBLIC_PLAIN(exp2)
PUBLIC_PLAIN(erfc) PUBLIC_PLAIN(sinc) PUBLIC_PLAIN(ceil) PUBLIC_PLAIN(frac)
PUBLIC_PLAIN(lgamma) PUBLIC_PLAIN(digamma) PUBLIC_PLAIN(erfinv)

ag_tensor *ag_polygamma(int64_t n, ag_tensor *x) {
    if (x && n < 0) return ag__fail_null(AG_ERR_ARG, "polygamma: n must be non-negative, got %lld", (long long)n);
    if (x && n > INT32_MAX) /* n! overflows float64 from n = 171: beyond 2^31 n only risks its conversions */
        return ag__fail_null(AG_ERR_ARG, "polygamma: n %lld is past the largest order supported (2^31 - 1)", (long long)n);
    return unary_apply(&polygamma_def, x, (double)n, 0);
}
ag_tensor *ag_logit(ag_tensor *x, double eps) {
    if (x && !(eps <= 0.5)) return ag__fail_null(AG_ERR_ARG, "logit: eps %g is not at most 0.5 (a negative eps clamps nothing)", eps);
    return unary_apply(&logit_def, x, eps, 0);
}
ag_tensor *ag_nan_to_num(ag_tensor *x, double nan, double posinf, double neginf) {
    AG_CHECK_HANDLES(NULL, "nan_to_num", x);
    if (!x) return NULL;
    bool f32 = x->dtype == AG_F32; /* PyTorch's None: the dtype's greatest and lowest finite values */
    if (posinf != posinf) posinf = f32 ? FLT_MAX : DBL_MAX;
    if (neginf != neginf) neginf = f32 ? -FLT_MAX : -DBL_MAX;
    ag_attr attr = {.a = nan, .b = posinf};
    memcpy(&attr.i[0], &neginf, sizeof neginf);
    return unary_apply_attr(&nan_to_num_def, x, attr);
}

ag_tensor *ag_clamp(ag_tensor *x, double lo, double hi) {
    if (x && lo > hi) return ag__fail_null(AG_ERR_ARG, "clamp: min %g is greater than max %g", lo, hi);
    return unary_apply(&clamp_def, x, lo, hi);
}
ag_tensor *ag_add_scalar(ag_tensor *x, double s) { return unary_apply(&add_scalar_def, x, s, 0); }
ag_tensor *ag_sub_scalar(ag_tensor *x, double s) { return unary_apply(&sub_scalar_def, x, s, 0); }
ag_tensor *ag_rsub_scalar(double s, ag_tensor *x) { return unary_apply(&rsub_scalar_def, x, s, 0); }
ag_tensor *ag_mul_scalar(ag_tensor *x, double s) { return unary_apply(&mul_scalar_def, x, s, 0); }
ag_tensor *ag_div_scalar(ag_tensor *x, double s) { return unary_apply(&div_scalar_def, x, s, 0); }
ag_tensor *ag_rdiv_scalar(double s, ag_tensor *x) { return unary_apply(&rdiv_scalar_def, x, s, 0); }
ag_tensor *ag_pow_scalar(ag_tensor *x, double e) { return unary_apply(&pow_scalar_def, x, e, 0); }
ag_tensor *ag_rpow_scalar(double s, ag_tensor *x) { return unary_apply(&rpow_scalar_def, x, s, 0); }

ag_tensor *ag_leaky_relu(ag_tensor *x, double negative_slope) { return unary_apply(&leaky_relu_def, x, negative_slope, 0); }
ag_tensor *ag_elu(ag_tensor *x, double alpha) { return unary_apply(&elu_def, x, alpha, 0); }
ag_tensor *ag_celu(ag_tensor *x, double alpha) {
    if (x && alpha == 0) return ag__fail_null(AG_ERR_ARG, "celu: alpha cannot be 0");
    return unary_apply(&celu_def, x, alpha, 0);
}
ag_tensor *ag_softplus(ag_tensor *x, double beta, double threshold) {
    return unary_apply(&softplus_def, x, beta, threshold);
}
ag_tensor *ag_hardtanh(ag_tensor *x, double min_val, double max_val) {
    if (x && min_val > max_val)
        return ag__fail_null(AG_ERR_ARG, "hardtanh: min_val %g is greater than max_val %g", min_val, max_val);
    return unary_apply(&hardtanh_def, x, min_val, max_val);
}
ag_tensor *ag_relu6(ag_tensor *x) { return unary_apply(&hardtanh_def, x, 0, 6); }

/* ---- registration ---------------------------------------------------------------------------- */
#define REGISTER(NAME, ...) &NAME##_def.op,
const ag_op *const ag__unary_ops[] = {UNARY_OPS(REGISTER) NULL};

int ag__unary_dnnl_alg(const ag_op *op) {
    for (int i = 0; ag__unary_ops[i]; i++)
        if (ag__unary_ops[i] == op) return ((const unary_def *)op)->dnnl.alg;
    return 0;
}

ag_inner_fn ag__unary_kernel(const ag_op *op, ag_dtype dtype) {
    for (int i = 0; ag__unary_ops[i]; i++)
        if (ag__unary_ops[i] == op) return fwd_kernel((const unary_def *)op, dtype, NULL);
    return NULL;
}

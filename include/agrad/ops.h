/*
 * agrad/ops.h - differentiable primitives.
 *
 * Each op returns a new tensor (owned by the innermost scope, see core.h) or
 * NULL on error with a message naming the op and shapes.  NULL inputs give NULL
 * without a new message.  Binary ops broadcast as NumPy/PyTorch do; both
 * operands must have the same floating dtype.  docs/ops.md lists every op with
 * its forward formula and adjoint rule.
 *
 * Integer and bool inputs: the functions PyTorch computes in floating point (exp,
 * log, log1p, expm1, sqrt, rsqrt, reciprocal, sin, cos, tan, tanh, sigmoid, atan,
 * erf, asin ... sinc, logit; atan2, copysign and xlogy when both operands are
 * integer or bool) convert them to float32 and give float32, as PyTorch; every
 * other op refuses them with AG_ERR_DTYPE, and so does an integer operand beside
 * a floating one.
 *
 * Layout: the result of an element-wise op (the unary ones below, the binary ones
 * of this section, their *_scalar forms, clamp and the activations; lerp,
 * clamp_tensor, where, the comparisons and isnan/isinf/isfinite) is laid out as
 * its inputs when those read in full (not broadcast) are all dense in one and the
 * same permuted layout (a transposed or permuted tensor: PyTorch's preserve_format);
 * otherwise, and for every other op, it is row-major.  ag_data of such a result is
 * in memory order: call ag_contiguous first to read it row-major (docs/design.md).
 */
#ifndef AGRAD_OPS_H
#define AGRAD_OPS_H

#include "core.h"

typedef enum ag_reduction {
    AG_REDUCTION_MEAN = 0, /* mean over elements (class losses: weighted mean over targets) */
    AG_REDUCTION_SUM,      /* sum */
    AG_REDUCTION_NONE,     /* per-element (or per-sample) losses, unreduced */
    AG_REDUCTION_BATCHMEAN /* sum / batch size: kl_div only, as PyTorch */
} ag_reduction;

#ifdef __cplusplus
extern "C" {
#endif

/* ---- binary, broadcasting ------------------------------------------------ */
AG_API ag_tensor *ag_add(ag_tensor *a, ag_tensor *b);
AG_API ag_tensor *ag_sub(ag_tensor *a, ag_tensor *b);
AG_API ag_tensor *ag_mul(ag_tensor *a, ag_tensor *b);
AG_API ag_tensor *ag_div(ag_tensor *a, ag_tensor *b);
AG_API ag_tensor *ag_pow(ag_tensor *a, ag_tensor *b);
AG_API ag_tensor *ag_maximum(ag_tensor *a, ag_tensor *b);
AG_API ag_tensor *ag_minimum(ag_tensor *a, ag_tensor *b);
/* torch.atan2(a, b): the angle of the point (b, a), in [-π, π]. */
AG_API ag_tensor *ag_atan2(ag_tensor *a, ag_tensor *b);
/* torch.hypot: sqrt(a² + b²) without overflow; the gradient a/y, b/y is NaN at the origin. */
AG_API ag_tensor *ag_hypot(ag_tensor *a, ag_tensor *b);
/* torch.fmod: a - trunc(a/b)·b, the sign of a (C's fmod); torch.remainder: a - floor(a/b)·b,
 * the sign of b (Python's %).  NaN where b is 0.  Gradients dy and -dy·trunc(a/b)
 * (-dy·floor(a/b)), as PyTorch. */
AG_API ag_tensor *ag_fmod(ag_tensor *a, ag_tensor *b);
AG_API ag_tensor *ag_remainder(ag_tensor *a, ag_tensor *b);
/* torch.copysign: |a| with the sign of b (also of a -0.0 or a NaN's sign bit); the gradient
 * in a is dy·sign change (0 where a is 0), in b 0. */
AG_API ag_tensor *ag_copysign(ag_tensor *a, ag_tensor *b);
/* torch.logaddexp: log(eᵃ + eᵇ); torch.logaddexp2: log2(2ᵃ + 2ᵇ); stable for any inputs,
 * and inf (-inf) where both are inf (-inf). */
AG_API ag_tensor *ag_logaddexp(ag_tensor *a, ag_tensor *b);
AG_API ag_tensor *ag_logaddexp2(ag_tensor *a, ag_tensor *b);
/* torch.xlogy: a·log(b), 0 where a is 0 (unless b is NaN).  The gradient in a is
 * dy·log(b), 0 where a is 0 and b <= 0; in b dy·a/b. */
AG_API ag_tensor *ag_xlogy(ag_tensor *a, ag_tensor *b);
/* torch.heaviside(a, values): 0 where a < 0 (or NaN), values where a == 0, 1 where a > 0.
 * PyTorch has no derivative; agrad's is 0 in a and dy where a == 0 in values. */
AG_API ag_tensor *ag_heaviside(ag_tensor *a, ag_tensor *values);

/* ---- ternary, broadcasting (all three of one floating dtype) -------------- */
/* torch.lerp(start, end, weight): start + weight·(end - start), computed as
 * end - (end - start)·(1 - weight) where weight >= 1/2, as PyTorch 1.13.  Differentiable
 * in all three; a scalar weight is a 0-d tensor. */
AG_API ag_tensor *ag_lerp(ag_tensor *start, ag_tensor *end, ag_tensor *weight);
/* torch.clamp(x, min, max) with tensor bounds: min(max(x, min), max), so max where
 * min > max, and NaN where any of the three is NaN.  The gradient goes to x where
 * min <= x <= max, to min where x < min < max, to max where x > max or max < min
 * (PyTorch's rule).  For one bound pass an infinite tensor, or use ag_maximum /
 * ag_minimum. */
AG_API ag_tensor *ag_clamp_tensor(ag_tensor *x, ag_tensor *min, ag_tensor *max);

/* ---- with a scalar ------------------------------------------------------- */
AG_API ag_tensor *ag_add_scalar(ag_tensor *a, double s);  /* a + s */
AG_API ag_tensor *ag_sub_scalar(ag_tensor *a, double s);  /* a - s */
AG_API ag_tensor *ag_rsub_scalar(double s, ag_tensor *a); /* s - a */
AG_API ag_tensor *ag_mul_scalar(ag_tensor *a, double s);  /* a * s */
AG_API ag_tensor *ag_div_scalar(ag_tensor *a, double s);  /* a / s */
AG_API ag_tensor *ag_rdiv_scalar(double s, ag_tensor *a); /* s / a */
AG_API ag_tensor *ag_pow_scalar(ag_tensor *a, double e);  /* a ^ e */
AG_API ag_tensor *ag_rpow_scalar(double s, ag_tensor *a); /* s ^ a */

/* ---- unary ---------------------------------------------------------------- */
AG_API ag_tensor *ag_neg(ag_tensor *x);
AG_API ag_tensor *ag_exp(ag_tensor *x);
AG_API ag_tensor *ag_log(ag_tensor *x);
AG_API ag_tensor *ag_log1p(ag_tensor *x);
AG_API ag_tensor *ag_expm1(ag_tensor *x);
AG_API ag_tensor *ag_sqrt(ag_tensor *x);
AG_API ag_tensor *ag_rsqrt(ag_tensor *x);
AG_API ag_tensor *ag_square(ag_tensor *x);
AG_API ag_tensor *ag_reciprocal(ag_tensor *x);
AG_API ag_tensor *ag_abs(ag_tensor *x);
AG_API ag_tensor *ag_sign(ag_tensor *x);
AG_API ag_tensor *ag_sin(ag_tensor *x);
AG_API ag_tensor *ag_cos(ag_tensor *x);
AG_API ag_tensor *ag_tan(ag_tensor *x);
AG_API ag_tensor *ag_tanh(ag_tensor *x);
AG_API ag_tensor *ag_sigmoid(ag_tensor *x);
AG_API ag_tensor *ag_atan(ag_tensor *x);
AG_API ag_tensor *ag_relu(ag_tensor *x);
AG_API ag_tensor *ag_erf(ag_tensor *x);
AG_API ag_tensor *ag_floor(ag_tensor *x);
AG_API ag_tensor *ag_round(ag_tensor *x);
AG_API ag_tensor *ag_trunc(ag_tensor *x);
/* Clamps to [lo, hi]; -INFINITY / INFINITY for no bound.  Gradient passes where lo <= x <= hi. */
AG_API ag_tensor *ag_clamp(ag_tensor *x, double lo, double hi);
/* Inverse trigonometric and hyperbolic functions (torch.asin, ...).  Outside the domain
 * (|x| > 1 for asin, acos, atanh; x < 1 for acosh) the value is NaN, at its edges ±inf
 * (atanh(±1)) and the derivative there inf or NaN, as PyTorch. */
AG_API ag_tensor *ag_asin(ag_tensor *x);
AG_API ag_tensor *ag_acos(ag_tensor *x);
AG_API ag_tensor *ag_sinh(ag_tensor *x);
AG_API ag_tensor *ag_cosh(ag_tensor *x);
AG_API ag_tensor *ag_asinh(ag_tensor *x);
AG_API ag_tensor *ag_acosh(ag_tensor *x);
AG_API ag_tensor *ag_atanh(ag_tensor *x);
AG_API ag_tensor *ag_log2(ag_tensor *x);
AG_API ag_tensor *ag_log10(ag_tensor *x);
AG_API ag_tensor *ag_exp2(ag_tensor *x); /* 2^x */
/* torch.logit(x, eps): log(z/(1 - z)) with z = x clamped to [eps, 1 - eps]; eps < 0 is
 * PyTorch's None (no clamping: NaN outside [0, 1], ±inf at 1 and 0).  The derivative is
 * 1/(x(1 - x)), and 0 where x was clamped.  AG_ERR_ARG if eps is above 0.5 or NaN. */
AG_API ag_tensor *ag_logit(ag_tensor *x, double eps);
AG_API ag_tensor *ag_erfc(ag_tensor *x); /* 1 - erf(x), accurate where erf(x) is near 1 */
/* torch.sinc: sin(πx)/(πx), 1 at 0 (normalised sinc). */
AG_API ag_tensor *ag_sinc(ag_tensor *x);
AG_API ag_tensor *ag_ceil(ag_tensor *x); /* gradient 0 */
/* torch.frac: x - trunc(x), keeping x's sign; gradient 1 (NaN for ±inf). */
AG_API ag_tensor *ag_frac(ag_tensor *x);
/* torch.lgamma: log|Γ(x)| (inf at 0 and the negative integers); derivative digamma(x). */
AG_API ag_tensor *ag_lgamma(ag_tensor *x);
/* torch.digamma: ψ(x) = Γ'(x)/Γ(x); -inf at +0, inf at -0, NaN at negative integers;
 * derivative the trigamma function ψ₁(x) (PyTorch's polygamma(1, x)). */
AG_API ag_tensor *ag_digamma(ag_tensor *x);
/* torch.polygamma: ψ⁽ⁿ⁾(x), the n-th derivative of digamma (n 0: digamma, n 1: trigamma; n >= 2
 * through the Hurwitz zeta function, inf at 0 and the negative integers); derivative
 * polygamma(n + 1, x).  Fails (AG_ERR_ARG) for a negative n. */
AG_API ag_tensor *ag_polygamma(int64_t n, ag_tensor *x);
/* torch.erfinv: the inverse of erf on [-1, 1] (±inf at ±1, NaN outside); derivative
 * √π/2·exp(erfinv(x)²). */
AG_API ag_tensor *ag_erfinv(ag_tensor *x);
/* torch.nan_to_num: NaN replaced by nan, +inf by posinf, -inf by neginf; posinf or neginf
 * NAN means PyTorch's None, the dtype's greatest (lowest) finite value.  The gradient is
 * dy where x is finite, else 0. */
AG_API ag_tensor *ag_nan_to_num(ag_tensor *x, double nan, double posinf, double neginf);

/* ---- activations (torch.nn.functional; formulas, derivatives and defaults in docs/nn-activations.md) ----
 * Elementwise, float32/float64, stable for any finite input (no inf or NaN from large |x|).
 * At a kink the derivative is PyTorch's (stated per function).  C has no default arguments:
 * PyTorch's defaults are given in brackets. */
/* F.leaky_relu(x, negative_slope [0.01]): x > 0 ? x : slope·x; derivative at 0: slope. */
AG_API ag_tensor *ag_leaky_relu(ag_tensor *x, double negative_slope);
/* F.elu(x, alpha [1.0]): x > 0 ? x : alpha·(eˣ - 1); derivative at 0: alpha. */
AG_API ag_tensor *ag_elu(ag_tensor *x, double alpha);
/* F.selu: λ·elu(x, α) with PyTorch's fixed λ = 1.0507009873554805, α = 1.6732632423543772. */
AG_API ag_tensor *ag_selu(ag_tensor *x);
/* F.celu(x, alpha [1.0]): x > 0 ? x : alpha·(e^(x/alpha) - 1); derivative at 0: 1.
 * AG_ERR_ARG if alpha is 0. */
AG_API ag_tensor *ag_celu(ag_tensor *x, double alpha);
/* F.softplus(x, beta [1], threshold [20]): log(1 + e^(beta·x))/beta, and x itself where
 * beta·x > threshold (as PyTorch; the gradient there is 1). */
AG_API ag_tensor *ag_softplus(ag_tensor *x, double beta, double threshold);
/* F.gelu(x) (approximate='none'): x·Φ(x), Φ the standard normal CDF. */
AG_API ag_tensor *ag_gelu(ag_tensor *x);
/* F.gelu(x, approximate='tanh'): x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))/2. */
AG_API ag_tensor *ag_gelu_tanh(ag_tensor *x);
/* F.silu: x·σ(x). */
AG_API ag_tensor *ag_silu(ag_tensor *x);
/* F.mish: x·tanh(softplus(x)). */
AG_API ag_tensor *ag_mish(ag_tensor *x);
/* F.hardtanh(x, min_val [-1.0], max_val [1.0]): x clamped to [min_val, max_val]; the
 * derivative is 0 at and beyond the bounds (unlike ag_clamp).  AG_ERR_ARG if min_val > max_val. */
AG_API ag_tensor *ag_hardtanh(ag_tensor *x, double min_val, double max_val);
/* F.relu6: hardtanh(x, 0, 6) (derivative 0 at 0 and at 6). */
AG_API ag_tensor *ag_relu6(ag_tensor *x);
/* F.hardsigmoid: clamp((x + 3)/6, 0, 1); derivative 1/6 on the open interval (-3, 3), else 0. */
AG_API ag_tensor *ag_hardsigmoid(ag_tensor *x);
/* F.hardswish: x·clamp(x + 3, 0, 6)/6; derivative x/3 + 1/2 on [-3, 3], 0 below, 1 above. */
AG_API ag_tensor *ag_hardswish(ag_tensor *x);
/* F.softsign: x/(1 + |x|). */
AG_API ag_tensor *ag_softsign(ag_tensor *x);
/* Binary step (Heaviside, not in PyTorch): 1 where x > 0, else 0 (also at 0 and for NaN);
 * its gradient is 0 everywhere. */
AG_API ag_tensor *ag_binary_step(ag_tensor *x);

/* ---- reductions ----------------------------------------------------------- */
/* Sums, products and statistics accumulate in float64 for float32 tensors too and are
 * rounded once, so a float32 result along any dim is within a rounding of the exact one. */
/* Over all elements, giving a 0-d tensor.  ag_max/ag_min fail on an empty tensor; a NaN
 * anywhere makes the result NaN; the gradient is split evenly over all elements equal to the
 * result (torch.max(x) / amax semantics).  ag_prod of an empty tensor is 1; its gradient is
 * exact with zeros: one zero gets the product of the others, the rest 0. */
AG_API ag_tensor *ag_sum(ag_tensor *x);
AG_API ag_tensor *ag_mean(ag_tensor *x);
AG_API ag_tensor *ag_prod(ag_tensor *x);
AG_API ag_tensor *ag_max(ag_tensor *x);
AG_API ag_tensor *ag_min(ag_tensor *x);
/* Over the ndims dims listed (negative allowed, ndims >= 1), keeping them as size 1 if keepdim. */
AG_API ag_tensor *ag_sum_dims(ag_tensor *x, int ndims, const int *dims, bool keepdim);
AG_API ag_tensor *ag_mean_dims(ag_tensor *x, int ndims, const int *dims, bool keepdim);
/* log Σ exp(x), stable: an all -inf slice gives -inf, a +inf gives +inf, as torch.logsumexp. */
AG_API ag_tensor *ag_logsumexp_dims(ag_tensor *x, int ndims, const int *dims, bool keepdim);
/* var/std with correction (PyTorch's `correction`: 1 = unbiased, Bessel; 0 = population), over
 * all elements or the listed dims (ndims >= 1): Σ(x - mean)² / max(n - correction, 0), so
 * n <= correction gives NaN (or inf), as PyTorch.  Where std is 0 its gradient is 0. */
AG_API ag_tensor *ag_var(ag_tensor *x, int correction);
AG_API ag_tensor *ag_std(ag_tensor *x, int correction);
AG_API ag_tensor *ag_var_dims(ag_tensor *x, int ndims, const int *dims, int correction, bool keepdim);
AG_API ag_tensor *ag_std_dims(ag_tensor *x, int ndims, const int *dims, int correction, bool keepdim);
/* torch.amax / torch.amin over the ndims dims listed (ndims 0: all dims), keepdim as above:
 * NaN wins; the gradient is split evenly over the elements equal to each result (unlike
 * ag_max_dim, which gives it all to the first).  A listed dim of size 0 fails (AG_ERR_SHAPE). */
AG_API ag_tensor *ag_amax(ag_tensor *x, int ndims, const int *dims, bool keepdim);
AG_API ag_tensor *ag_amin(ag_tensor *x, int ndims, const int *dims, bool keepdim);
/* torch.any / torch.all: whether any (every) element is nonzero (NaN counts as nonzero), over
 * all elements (a 0-d bool tensor; any of an empty tensor is false, all true) or along dim;
 * x of any dtype.  torch.count_nonzero: the int64 count of nonzero elements over the ndims
 * dims listed (ndims 0: all dims), which are dropped.  Not differentiable. */
AG_API ag_tensor *ag_any(ag_tensor *x);
AG_API ag_tensor *ag_all(ag_tensor *x);
AG_API ag_tensor *ag_any_dim(ag_tensor *x, int dim, bool keepdim);
AG_API ag_tensor *ag_all_dim(ag_tensor *x, int dim, bool keepdim);
AG_API ag_tensor *ag_count_nonzero(ag_tensor *x, int ndims, const int *dims);
/* Single-dim forms. */
AG_API ag_tensor *ag_sum_dim(ag_tensor *x, int dim, bool keepdim);
AG_API ag_tensor *ag_mean_dim(ag_tensor *x, int dim, bool keepdim);
AG_API ag_tensor *ag_prod_dim(ag_tensor *x, int dim, bool keepdim);
/* Values of the max/min along dim (fails if that dim is empty; NaN counts as the extreme);
 * the gradient goes to the first extreme element, the one ag_argmax/ag_argmin name. */
AG_API ag_tensor *ag_max_dim(ag_tensor *x, int dim, bool keepdim);
AG_API ag_tensor *ag_min_dim(ag_tensor *x, int dim, bool keepdim);
/* int64 indices of the first max/min along dim (the first NaN if any) of a float tensor;
 * not differentiable. */
AG_API ag_tensor *ag_argmax(ag_tensor *x, int dim, bool keepdim);
AG_API ag_tensor *ag_argmin(ag_tensor *x, int dim, bool keepdim);

/* ---- scans (torch.cumsum, torch.cumprod, ...) ---------------------------------- */
/* The running sum / product along dim (negative allowed; a 0-d x takes dim 0 or -1), with
 * x's shape; an empty x gives an empty result.  float32 accumulates in float64, as PyTorch.
 * The gradient of cumprod is exact where x holds zeros (PyTorch's cumprod_backward).
 * Returns a new tensor owned by the innermost scope; NULL with AG_ERR_DTYPE (not a float
 * tensor) or AG_ERR_INDEX (dim out of range). */
AG_API ag_tensor *ag_cumsum(ag_tensor *x, int dim);
AG_API ag_tensor *ag_cumprod(ag_tensor *x, int dim);
/* torch.logcumsumexp: y_k = log Σ_{j<=k} exp x_j along dim, without overflow (-inf inputs add
 * nothing; NaN propagates).  Returns and fails as ag_cumsum. */
AG_API ag_tensor *ag_logcumsumexp(ag_tensor *x, int dim);
/* torch.cummax / torch.cummin: the running max (min) along dim and, in indices if not NULL,
 * the int64 index of the element it came from (scope-owned, a copy of the graph's; NULL on
 * failure).  NaN wins, and a later element equal to the running value (or a later NaN) takes
 * over the index, as PyTorch.  Differentiable: dy_k goes to x at index k's element. */
AG_API ag_tensor *ag_cummax(ag_tensor *x, int dim, ag_tensor **indices);
AG_API ag_tensor *ag_cummin(ag_tensor *x, int dim, ag_tensor **indices);

/* ---- rearranging and repeating (new tensors, not views) ---------------------- */
/* These return a new tensor owned by the innermost scope, differentiable in x; NULL with
 * AG_ERR_DTYPE for a tensor that is not float32/float64, AG_ERR_INDEX for a dim out of
 * range, AG_ERR_ARG or AG_ERR_SHAPE for the other bad arguments named below. */
/* torch.flip: x reversed along the ndims dims listed (none: a copy); a dim listed twice
 * fails (AG_ERR_ARG). */
AG_API ag_tensor *ag_flip(ag_tensor *x, int ndims, const int *dims);
/* torch.roll: x shifted by shifts[k] along dims[k] (k < n), elements leaving one end coming
 * back at the other; negative shifts roll backwards, a dim listed twice rolls by the sum.
 * dims NULL (then n must be 1): rolls the flattened x and restores its shape. */
AG_API ag_tensor *ag_roll(ag_tensor *x, int n, const int64_t *shifts, const int *dims);
/* torch.tril / torch.triu over the last two dims (x has at least 2 dims, else AG_ERR_SHAPE):
 * the elements with j - i <= diagonal (tril) or j - i >= diagonal (triu) kept, the rest 0. */
AG_API ag_tensor *ag_tril(ag_tensor *x, int64_t diagonal);
AG_API ag_tensor *ag_triu(ag_tensor *x, int64_t diagonal);
/* Tensor.repeat: x tiled repeats.dim[d] times along each dim; repeats has at least x's
 * number of dims (x gains leading dims of 1), none negative (0 gives an empty dim).
 * The gradient sums dy over the tiles. */
AG_API ag_tensor *ag_repeat(ag_tensor *x, ag_shape repeats);
/* torch.tile: ag_repeat with reps padded with leading 1s to x's number of dims. */
AG_API ag_tensor *ag_tile(ag_tensor *x, ag_shape reps);
/* torch.repeat_interleave(x, repeats, dim): each slice of x along dim repeated `repeats` times
 * in place ([a, b] → [a, a, b, b]); the _tensor form takes an int64 tensor of one count per
 * slice (or a single one).  x has at least 1 dim (for PyTorch's dim=None, flatten x first);
 * a negative count fails (AG_ERR_VALUE).  Differentiable in x (the copies' gradients add). */
AG_API ag_tensor *ag_repeat_interleave(ag_tensor *x, int64_t repeats, int dim);
AG_API ag_tensor *ag_repeat_interleave_tensor(ag_tensor *x, const ag_tensor *repeats, int dim);

/* ---- sorting (torch.sort, torch.argsort, torch.topk, torch.kthvalue, torch.median) */
/* Stable sorts along dim (negative allowed; a 0-d x takes dim 0 or -1): equal values keep
 * their order, in descending sorts too (torch.sort with stable=True).  NaN counts as larger
 * than every number: last ascending, first descending, as PyTorch.  The values are a new
 * tensor owned by the innermost scope, differentiable in x (dx[idx] = dy); indices, when
 * not NULL, receives the int64 indices into x along dim (also scope-owned; changing them
 * does not change the gradient), or NULL on failure.  NULL with AG_ERR_DTYPE (not a float
 * tensor) or AG_ERR_INDEX (dim out of range). */
AG_API ag_tensor *ag_sort(ag_tensor *x, int dim, bool descending, ag_tensor **indices);
/* The int64 indices ag_sort would give; not differentiable. */
AG_API ag_tensor *ag_argsort(ag_tensor *x, int dim, bool descending);
/* The k largest (smallest when !largest) values along dim and, in indices if not NULL,
 * where they are; k in [0, size of dim] (else AG_ERR_INDEX).  They come back sorted
 * (descending for largest) whatever sorted says, and equal values in index order (PyTorch
 * leaves the order of ties unspecified); a 0-d x gives itself for k 0 and 1, as PyTorch.
 * Differentiable in x: dy goes to the picked elements, 0 elsewhere. */
AG_API ag_tensor *ag_topk(ag_tensor *x, int64_t k, int dim, bool largest, bool sorted, ag_tensor **indices);
/* torch.kthvalue: the k-th smallest value along dim (k from 1; NaN counts as the largest) and,
 * in indices if not NULL, its index; the dim is kept as 1 when keepdim, else dropped.  k
 * outside [1, size of dim] fails (AG_ERR_INDEX).  Among equal values the one the stable
 * order puts k-th.  Differentiable: dy goes to that element. */
AG_API ag_tensor *ag_kthvalue(ag_tensor *x, int64_t k, int dim, bool keepdim, ag_tensor **indices);
/* torch.median over all elements: the lower median (the ((n + 1)/2)-th smallest, not a mean
 * of the two middle ones), NaN when x holds NaN or is empty, a 0-d tensor; the gradient is
 * split evenly over the elements equal to it, as PyTorch's. */
AG_API ag_tensor *ag_median(ag_tensor *x);
/* torch.nanmedian over all elements: the lower median of the values that are not NaN (the
 * ((k + 1)/2)-th smallest of k), NaN when all are NaN or x is empty, a 0-d tensor; the gradient
 * is split evenly over the elements equal to it (over the NaN when it is NaN), as PyTorch's. */
AG_API ag_tensor *ag_nanmedian(ag_tensor *x);
/* torch.median(x, dim): the lower median along dim (NaN, at the lane's first NaN, when the lane
 * holds one) and its index as ag_kthvalue; an empty dim fails (AG_ERR_SHAPE). */
AG_API ag_tensor *ag_median_dim(ag_tensor *x, int dim, bool keepdim, ag_tensor **indices);

/* ---- linear algebra -------------------------------------------------------- */
/* torch.matmul: 1-D·1-D dot, 2-D products, batched with broadcast batch dims. */
AG_API ag_tensor *ag_matmul(ag_tensor *a, ag_tensor *b);
/* torch.bmm: a [B, n, m] · b [B, m, p] → [B, n, p], one product per batch (no broadcasting).
 * torch.addmm: beta·input + alpha·(a·b) for matrices a [n, m], b [m, p], input broadcast to
 * [n, p]; torch.baddbmm: the same over a batch (a [B, n, m], b [B, m, p], input broadcast to
 * [B, n, p]).  With beta 0 input is not read (NaN in it do not propagate), as PyTorch.
 * torch.outer: a [m] and b [n] give y[i][j] = a[i]·b[j].  All run on matmul's oneDNN paths and
 * are differentiable in every tensor; AG_ERR_SHAPE names the op and shapes that do not fit. */
AG_API ag_tensor *ag_bmm(ag_tensor *a, ag_tensor *b);
AG_API ag_tensor *ag_addmm(ag_tensor *input, ag_tensor *a, ag_tensor *b, double beta, double alpha);
AG_API ag_tensor *ag_baddbmm(ag_tensor *input, ag_tensor *a, ag_tensor *b, double beta, double alpha);
AG_API ag_tensor *ag_outer(ag_tensor *a, ag_tensor *b);
/* torch.einsum: the operands (1 to 17, one dtype) contracted as the equation says: one
 * subscript string per operand, comma-separated (letters a-z, A-Z; "..." for broadcast dims,
 * aligned from the right), then optionally "->" and the output's subscripts; without "->" the
 * output is the ellipsis dims then the letters used once, in ASCII order.  A letter repeated
 * within an operand takes its diagonal; letters missing from the output are summed; size-1
 * dims broadcast.  Built from diagonal, sum, permute, reshape and batched matmul, contracting
 * the cheapest pair first; differentiable through them.  A bad equation gives AG_ERR_ARG
 * naming the problem, sizes that disagree AG_ERR_SHAPE. */
AG_API ag_tensor *ag_einsum(const char *equation, ag_tensor *const *operands, int n);
/* torch.tensordot: contracts dims_a[k] of a with dims_b[k] of b (k < ndims, sizes equal); both
 * NULL: the last ndims dims of a with the first ndims of b (tensordot(a, b, dims=ndims)).  The
 * result has a's free dims then b's. */
AG_API ag_tensor *ag_tensordot(ag_tensor *a, ag_tensor *b, int ndims, const int *dims_a, const int *dims_b);
/* torch.kron: the Kronecker product; the shorter shape is padded with leading 1s, and
 * y[i·b.shape + j] = a[i]·b[j] (result shape a.shape·b.shape dim by dim; 8 dims at most). */
AG_API ag_tensor *ag_kron(ag_tensor *a, ag_tensor *b);
/* torch.cdist: the p-norm distances between the rows of x1 [..., P, M] and x2 [..., R, M]
 * (batch dims broadcast): [..., P, R].  p >= 0 (0 counts the differing entries, INFINITY the
 * largest difference).  For p = 2 and more than 25 rows on either side, PyTorch's matmul form
 * sqrt(max(‖a‖² + ‖b‖² - 2a·b, 1e-30)); else the norms of the differences, whose gradient is 0
 * where a distance is 0. */
AG_API ag_tensor *ag_cdist(ag_tensor *x1, ag_tensor *x2, double p);
/* F.pairwise_distance: ‖x1 - x2 + eps‖_p over the last dim (x1 and x2 broadcast). */
AG_API ag_tensor *ag_pairwise_distance(ag_tensor *x1, ag_tensor *x2, double p, double eps, bool keepdim);
/* F.cosine_similarity: Σ x1·x2 / (max(‖x1‖, eps)·max(‖x2‖, eps)) along dim (x1 and x2
 * broadcast; dim counted in the broadcast shape). */
AG_API ag_tensor *ag_cosine_similarity(ag_tensor *x1, ag_tensor *x2, int dim, double eps);
/* F.normalize: x / max(‖x‖_p along dim, eps) (ag_normalize is the data transform (x - mean) / std). */
AG_API ag_tensor *ag_lp_normalize(ag_tensor *x, double p, int dim, double eps);
/* y = x·Wᵀ + b with x [*, in], W [out, in], b [out] or NULL. */
AG_API ag_tensor *ag_linear(ag_tensor *x, ag_tensor *w, ag_tensor *b);
/* y = relu(x·Wᵀ + b) as one op (what nn.Sequential runs for Linear then ReLU): the values of
 * ag_relu(ag_linear(x, w, b)), one node (ReluBackward0) whose adjoint masks dy and sums the
 * bias gradient in one pass (that sum's last bit may differ from the unfused one's). */
AG_API ag_tensor *ag_linear_relu(ag_tensor *x, ag_tensor *w, ag_tensor *b);

/* ---- normalisation and parametric activations ------------------------------- */
/* F.batch_norm over the channel dim 1 of x [N, C, *]: y = (x - μ_c)/√(σ²_c + eps)·w_c + b_c.
 * training: μ, σ² are the batch statistics (biased variance) over every dim but 1,
 * and running_mean / running_var (each [C], or NULL) are updated in place:
 * r ← (1 - momentum)·r + momentum·s, with the unbiased variance for running_var.
 * Fails if a channel has only one value.  Eval (training false): both running
 * statistics are required and used.  weight, bias [C] or NULL (1 and 0).  All
 * tensors share x's dtype.  PyTorch's defaults: momentum 0.1, eps 1e-5.
 * Differentiable in x, weight and bias (not in the running statistics). */
AG_API ag_tensor *ag_batch_norm(ag_tensor *x, ag_tensor *running_mean, ag_tensor *running_var, ag_tensor *weight,
                                ag_tensor *bias, bool training, double momentum, double eps);
/* relu(ag_batch_norm(...)) as one op (what nn.Sequential runs for BatchNorm then ReLU over planes):
 * the same values, running statistics, errors and gradients, bit for bit, as one node
 * (ReluBackward0).  Over [N, C, L] (L > 1) y is written once, relu applied as each value is
 * made (over [N, C] relu is a pass of its own); the adjoint is relu's, into a scratch tensor,
 * then batch norm's. */
AG_API ag_tensor *ag_batch_norm_relu(ag_tensor *x, ag_tensor *running_mean, ag_tensor *running_var,
                                     ag_tensor *weight, ag_tensor *bias, bool training, double momentum, double eps);
/* ag_dropout(ag_batch_norm_relu(...), p, training) as one op where dropout draws a mask (training and
 * 0 < p < 1; what nn.Sequential runs for BatchNorm1d, ReLU, Dropout over [N, C] in training): the same
 * values, running statistics, errors, random draws and gradients, bit for bit, as one node (MulBackward0),
 * except that where batch norm's output is NaN the adjoint passes dy/(1 - p) whether or not the mask kept
 * the value.  Over [N, C] relu and the mask are applied as y is made; neither batch norm's output nor the
 * mask is stored (the adjoint reads them off y: y > 0 where both kept the value).  Otherwise (eval, p = 0,
 * p = 1) the two calls.  p outside [0, 1]: AG_ERR_ARG, before any statistic is touched. */
AG_API ag_tensor *ag_batch_norm_relu_dropout(ag_tensor *x, ag_tensor *running_mean, ag_tensor *running_var,
                                             ag_tensor *weight, ag_tensor *bias, bool training, double momentum,
                                             double eps, double p);
/* F.layer_norm: normalises over the trailing dims of x, which must equal
 * normalized_shape, with the biased variance: y = (x - μ)/√(σ² + eps)·w + b;
 * weight, bias have shape normalized_shape, or NULL.  PyTorch's eps: 1e-5. */
AG_API ag_tensor *ag_layer_norm(ag_tensor *x, ag_shape normalized_shape, ag_tensor *weight, ag_tensor *bias, double eps);
/* F.group_norm: splits the C channels of x [N, C, *] into num_groups groups of C/num_groups
 * consecutive channels and normalises each sample's group with its own biased statistics:
 * y = (x - μ)/√(σ² + eps)·w_c + b_c; weight, bias [C] or NULL.  AG_ERR_SHAPE for fewer than 2
 * dims or C not divisible by num_groups (num_groups < 1 included).  PyTorch's eps: 1e-5. */
AG_API ag_tensor *ag_group_norm(ag_tensor *x, int64_t num_groups, ag_tensor *weight, ag_tensor *bias, double eps);
/* F.prelu: y = x > 0 ? x : w·x, with weight holding one slope (0-d or [1]) or one
 * per channel (dim 1 of x, [C]).  Differentiable in x and weight. */
AG_API ag_tensor *ag_prelu(ag_tensor *x, ag_tensor *weight);
/* F.scaled_dot_product_attention (torch 2.x, without scale): y = dropout(softmax(q·kᵀ/√E + mask))·v
 * as one op, for q [..., L, E], k [..., S, E], v [..., S, Ev] with the same leading dims; y is
 * [..., L, Ev], owned by the innermost scope.  attn_mask (NULL for none) broadcasts to
 * [..., L, S]: bool (false = masked out) or of q's dtype (added to the scores; a constant, no
 * gradient flows into it).  is_causal masks key j > query i without building a mask; it and
 * attn_mask exclude each other.  dropout_p in [0, 1) drops probabilities (rescaled by
 * 1/(1-p)) from the generator of ag_manual_seed; pass 0 outside training.  A row with every
 * key masked gives zeros (PyTorch: NaN).  Differentiable in q, k, v (the adjoint reuses the
 * saved probabilities).  NULL with AG_ERR_SHAPE, AG_ERR_DTYPE, AG_ERR_VALUE (dropout_p,
 * both masks). */
AG_API ag_tensor *ag_scaled_dot_product_attention(ag_tensor *q, ag_tensor *k, ag_tensor *v, ag_tensor *attn_mask,
                                                  double dropout_p, bool is_causal);

/* ---- convolution and pooling (docs/conv.md) ---------------------------------- */
/* How a convolution pads its input: by ag_conv_opts.padding, or as PyTorch's
 * padding="same" (the output keeps the input's size; stride 1 only; an odd total
 * puts the extra element at the end) or "valid" (no padding). */
typedef enum ag_conv_padding {
    AG_PADDING_EXPLICIT = 0,
    AG_PADDING_SAME,
    AG_PADDING_VALID
} ag_conv_padding;

/* Options of ag_conv1d / ag_conv2d, per spatial dim (height, width; conv1d reads
 * entry 0).  Zero-initialised options are PyTorch's defaults: a stride, dilation
 * or groups of 0 means 1, so `ag_conv_opts o = {.padding = {1, 1}}` is padding=1. */
typedef struct ag_conv_opts {
    int64_t stride[2];        /* 1 */
    int64_t padding[2];       /* 0: zeros added on both sides of each dim (AG_PADDING_EXPLICIT) */
    int64_t dilation[2];      /* 1: spacing between kernel elements */
    int64_t groups;           /* 1: in and out channels split into this many groups */
    ag_conv_padding padding_mode; /* AG_PADDING_EXPLICIT */
} ag_conv_opts;

/* F.conv2d: y[n, o, i, j] = b[o] + Σ_{c in o's group, p, q} x[n, c, i·s₀ - pad₀ + p·d₀,
 * j·s₁ - pad₁ + q·d₁]·w[o, c', p, q], zeros outside x.  x [N, C, H, W] (or unbatched
 * [C, H, W]), w [O, C/groups, KH, KW], b [O] or NULL; o NULL means the defaults.
 * Returns [N, O, OH, OW] (OH = (H + 2·pad₀ - d₀·(KH - 1) - 1)/s₀ + 1).  Fails with
 * AG_ERR_ARG for a negative option or "same" with a stride, AG_ERR_SHAPE naming the
 * shapes when C or O is not divisible by groups, w or b do not fit, or the dilated
 * kernel is larger than the padded input.  Differentiable in x, w and b. */
AG_API ag_tensor *ag_conv2d(ag_tensor *x, ag_tensor *w, ag_tensor *b, const ag_conv_opts *o);
/* F.conv1d: x [N, C, L] (or [C, L]), w [O, C/groups, K], b [O] or NULL; the options'
 * entry 0.  Computed as ag_conv2d over a height of 1; fails as it does. */
AG_API ag_tensor *ag_conv1d(ag_tensor *x, ag_tensor *w, ag_tensor *b, const ag_conv_opts *o);
/* torch.nn.grad.conv2d_weight: the gradient of ag_conv2d(x, w, b, o) with respect to a
 * weight w of weight_shape, for the output gradient grad_output:
 * dw[o, c, p, q] = Σ_{n, i, j} grad_output[n, o, i, j]·x[n, c, i·s₀ - pad₀ + p·d₀, ...].
 * Returns a new tensor of weight_shape.  Fails as ag_conv2d for x and a weight of that
 * shape, and with AG_ERR_SHAPE when grad_output's shape is not conv2d's output shape.
 * Differentiable in x and grad_output, to any order (ag_conv2d's create_graph adjoint
 * records it). */
AG_API ag_tensor *ag_conv2d_weight(ag_tensor *x, ag_shape weight_shape, ag_tensor *grad_output, const ag_conv_opts *o);

/* Options of ag_conv_transpose1d / ag_conv_transpose2d, per spatial dim (height, width;
 * the 1-d function reads entry 0).  Zero-initialised options are PyTorch's defaults:
 * a stride, dilation or groups of 0 means 1. */
typedef struct ag_conv_transpose_opts {
    int64_t stride[2];         /* 1 */
    int64_t padding[2];        /* 0: rows/columns removed from both sides of the full output */
    int64_t output_padding[2]; /* 0: rows/columns added at the bottom/right (each < stride or < dilation) */
    int64_t dilation[2];       /* 1 */
    int64_t groups;            /* 1 */
} ag_conv_transpose_opts;

/* F.conv_transpose2d, the adjoint of ag_conv2d with respect to its input ("deconvolution"):
 * y[n, o, i·s₀ - pad₀ + p·d₀, j·s₁ - pad₁ + q·d₁] += Σ_{c in o's group} x[n, c, i, j]·w[c, o', p, q],
 * plus b[o].  x [N, Cin, H, W] (or unbatched [Cin, H, W]), w [Cin, Cout/groups, KH, KW],
 * b [Cout] or NULL; o NULL means the defaults.  Returns [N, Cout, OH, OW] with
 * OH = (H - 1)·s₀ - 2·pad₀ + d₀·(KH - 1) + output_padding₀ + 1.  Fails with AG_ERR_ARG
 * for a negative option or an output_padding not below the stride or the dilation,
 * AG_ERR_SHAPE naming the shapes when Cin is not divisible by groups, w or b do not fit,
 * or an output size would be zero or negative.  Differentiable in x, w and b. */
AG_API ag_tensor *ag_conv_transpose2d(ag_tensor *x, ag_tensor *w, ag_tensor *b, const ag_conv_transpose_opts *o);
/* F.conv_transpose1d: x [N, Cin, L] (or [Cin, L]), w [Cin, Cout/groups, K], b [Cout] or
 * NULL; the options' entry 0.  Computed as ag_conv_transpose2d over a height of 1. */
AG_API ag_tensor *ag_conv_transpose1d(ag_tensor *x, ag_tensor *w, ag_tensor *b, const ag_conv_transpose_opts *o);

/* Options of the pooling functions, per spatial dim (1-d variants read entry 0).
 * kernel is required (each ≥ 1); a stride of 0 means the kernel size (PyTorch's
 * stride=None), a dilation of 0 means 1.  padding (each at most half the kernel)
 * adds -inf (max) or zeros (avg) on both sides. */
typedef struct ag_pool_opts {
    int64_t kernel[2];
    int64_t stride[2];        /* 0: kernel */
    int64_t padding[2];       /* 0 */
    int64_t dilation[2];      /* 0: 1 (max pooling only; avg pooling refuses > 1) */
    bool ceil_mode;           /* false: true rounds the output size up (a last window must start inside x or its left padding) */
    bool exclude_pad;         /* false: avg pooling counts padding in the divisor (PyTorch's count_include_pad=True) */
} ag_pool_opts;

/* F.max_pool2d: the max of each window of x [N, C, H, W] or [C, H, W] (NaN wins).
 * When indices is not NULL, *indices gets a new int64 tensor of y's shape (owned
 * as y is) holding each max's flat position h·W + w in its plane
 * (return_indices=True); on failure *indices is NULL.  Fails with AG_ERR_ARG for a
 * bad option (padding more than half the kernel included), AG_ERR_SHAPE when x is not
 * 3-D/4-D or an output size would be ≤ 0.
 * Differentiable in x: the gradient goes to each window's max. */
AG_API ag_tensor *ag_max_pool2d(ag_tensor *x, const ag_pool_opts *o, ag_tensor **indices);
/* F.avg_pool2d: the mean of each window (divisor: the window clipped to the padded
 * input, or to x itself when exclude_pad).  Fails as ag_max_pool2d. */
AG_API ag_tensor *ag_avg_pool2d(ag_tensor *x, const ag_pool_opts *o);
/* F.adaptive_avg_pool2d: the mean over window [⌊i·H/OH⌋, ⌈(i+1)·H/OH⌉) of each output
 * row i (and the same for columns); out_h, out_w ≥ 0 (0: an empty output, as PyTorch).
 * AG_ERR_ARG for a negative size, AG_ERR_SHAPE for x not 3-D/4-D or with an empty
 * plane.  Differentiable in x. */
AG_API ag_tensor *ag_adaptive_avg_pool2d(ag_tensor *x, int64_t out_h, int64_t out_w);
/* F.adaptive_max_pool2d: the max over the adaptive windows of ag_adaptive_avg_pool2d (a NaN
 * wins, as in ag_max_pool2d); *indices (when not NULL) gets each max's position h·W + w in
 * its plane (return_indices=True), as ag_max_pool2d's.  Fails as ag_adaptive_avg_pool2d.
 * Differentiable in x: the gradient goes to each window's max. */
AG_API ag_tensor *ag_adaptive_max_pool2d(ag_tensor *x, int64_t out_h, int64_t out_w, ag_tensor **indices);
/* F.max_unpool2d(x, indices, kernel_size, stride, padding, output_size): a zero tensor of
 * x's shape with the last two dims out_h x out_w (both 0: PyTorch's default size
 * (H - 1)·stride - 2·padding + kernel from o, which then is required), where each plane
 * gets x's elements at the positions h·W + w that indices (int64, x's shape: what
 * ag_max_pool2d or ag_adaptive_max_pool2d returned) name; a position named twice keeps
 * the last.  AG_ERR_SHAPE for indices not int64 of x's shape or an output size < 1,
 * AG_ERR_INDEX naming the index outside the output plane, AG_ERR_ARG for bad options.
 * Differentiable in x: dx = dy at the indices. */
AG_API ag_tensor *ag_max_unpool2d(ag_tensor *x, ag_tensor *indices, const ag_pool_opts *o, int64_t out_h, int64_t out_w);
/* F.max_pool1d / F.avg_pool1d over the last dim of x [N, C, L] or [C, L] (options'
 * entry 0), as the 2-d functions over a height of 1. */
AG_API ag_tensor *ag_max_pool1d(ag_tensor *x, const ag_pool_opts *o, ag_tensor **indices);
AG_API ag_tensor *ag_avg_pool1d(ag_tensor *x, const ag_pool_opts *o);
/* The adjoints of average pooling as functions (PyTorch's aten avg_pool2d_backward and
 * _adaptive_avg_pool2d_backward): a new tensor of input_shape, zeros with each element
 * of grad_output spread evenly over its window (ag_avg_pool2d's windows and divisor
 * with options o; the adaptive windows of an output of grad_output's last two dims),
 * which is the gradient of ag_avg_pool2d (ag_adaptive_avg_pool2d) at any input of
 * that shape.  Differentiable in grad_output, to any order (their adjoint is the
 * pooling again).  Fail as the pooling for an input of input_shape, and with
 * AG_ERR_SHAPE when grad_output's shape is not the pooling's output shape. */
AG_API ag_tensor *ag_avg_pool2d_backward(ag_tensor *grad_output, ag_shape input_shape, const ag_pool_opts *o);
AG_API ag_tensor *ag_adaptive_avg_pool2d_backward(ag_tensor *grad_output, ag_shape input_shape);

/* ---- padding and resampling (docs/conv.md) ------------------------------------ */
/* How ag_pad fills positions outside x (F.pad's mode). */
typedef enum ag_pad_mode {
    AG_PAD_CONSTANT = 0, /* the value */
    AG_PAD_REFLECT,      /* the mirror image, the edge not repeated: [a b c] pads to b a b c b a */
    AG_PAD_REPLICATE,    /* the edge: a a b c c */
    AG_PAD_CIRCULAR      /* wraps around: b c a b c a */
} ag_pad_mode;

/* F.pad(x, pad, mode, value): pad holds npad (even) entries, left and right of x's last
 * dim, then of the dim before, and so on (at most 2·ndim entries); a negative entry
 * crops.  value fills constant padding (other modes ignore it).  Reflect padding of a
 * dim must be below its size, circular padding at most its size, and replicate and
 * circular padding need a non-empty dim; any number of trailing dims may be padded in
 * every mode (PyTorch 1.13 takes 1 to 3 dims with a batch or channel dim before for the
 * non-constant modes).  AG_ERR_ARG for an odd npad or an unknown mode, AG_ERR_SHAPE
 * naming the shapes for more entries than dims, a padding that does not fit, or a
 * negative size.  Differentiable in x. */
AG_API ag_tensor *ag_pad(ag_tensor *x, int npad, const int64_t *pad, ag_pad_mode mode, double value);
/* The adjoint of ag_pad as an op (PyTorch's reflection_pad2d_backward and the like, for every
 * mode): dx of input_shape from dy of the padded shape, each element of dy added to the input
 * position it was read from (the fill positions of constant padding dropped).  The pad list and
 * mode are ag_pad's, with its errors (naming pad_backward), and AG_ERR_SHAPE naming the shapes
 * when dy's is not input_shape padded.  Differentiable in dy: its adjoint is ag_pad with the
 * fill 0, so ag_pad differentiates to any order. */
AG_API ag_tensor *ag_pad_backward(ag_tensor *dy, ag_shape input_shape, int npad, const int64_t *pad, ag_pad_mode mode);

/* How ag_interpolate computes each output element (F.interpolate's mode). */
typedef enum ag_interp_mode {
    AG_INTERP_NEAREST = 0, /* "nearest": the input element at ⌊o·scale⌋ */
    AG_INTERP_BILINEAR     /* "bilinear": the four nearest input elements, weighted */
} ag_interp_mode;

/* Options of ag_interpolate: exactly one of size and scale_factor (the other all zeros). */
typedef struct ag_interp_opts {
    int64_t size[2];        /* output (height, width), each ≥ 1 */
    double scale_factor[2]; /* output = ⌊in·scale⌋; the index mapping then uses 1/scale, as PyTorch */
    ag_interp_mode mode;    /* AG_INTERP_NEAREST */
    bool align_corners;     /* bilinear only: corners of input and output coincide */
} ag_interp_opts;

/* F.interpolate(x, size or scale_factor, mode, align_corners) of x [N, C, H, W]: nearest or
 * bilinear resampling to [N, C, OH, OW], each output position reading the input positions
 * PyTorch 1.13 reads (its float arithmetic for nearest's index and float32's weights).
 * AG_ERR_ARG for NULL options, both or neither of size and scale_factor, a scale factor ≤ 0,
 * align_corners with nearest, an unknown mode; AG_ERR_SHAPE naming the shapes for x not 4-D
 * or an empty input plane or output size.  Differentiable in x. */
AG_API ag_tensor *ag_interpolate(ag_tensor *x, const ag_interp_opts *o);
/* The adjoint of ag_interpolate as an op (PyTorch's upsample_nearest2d_backward and
 * upsample_bilinear2d_backward): dx of input_shape [N, C, H, W] from dy of the resampled shape,
 * each element of dy added to the input positions it was read from with its weights.  The
 * options and their errors are ag_interpolate's (naming interpolate_backward); AG_ERR_SHAPE
 * naming the shapes when input_shape is not 4-D or dy's shape is not input_shape resampled.
 * Differentiable in dy: its adjoint is ag_interpolate, so ag_interpolate differentiates to any
 * order. */
AG_API ag_tensor *ag_interpolate_backward(ag_tensor *dy, ag_shape input_shape, const ag_interp_opts *o);

/* ---- softmax ----------------------------------------------------------------- */
/* exp(x) / Σ exp(x) and its log along dim, stable for any finite logits (±1e8 included) and
 * -inf beside finite values; a slice of only -inf, or holding NaN or +inf, gives NaN, as PyTorch. */
AG_API ag_tensor *ag_softmax(ag_tensor *x, int dim);
AG_API ag_tensor *ag_log_softmax(ag_tensor *x, int dim);

/* ---- views (share storage with x) -------------------------------------------- */
/* shape may hold one -1, inferred.  reshape copies when a view is impossible; view fails. */
AG_API ag_tensor *ag_reshape(ag_tensor *x, ag_shape shape);
AG_API ag_tensor *ag_view(ag_tensor *x, ag_shape shape);
AG_API ag_tensor *ag_transpose(ag_tensor *x, int dim0, int dim1);
/* Transpose of a tensor of at most 2 dims. */
AG_API ag_tensor *ag_t(ag_tensor *x);
/* dims is a permutation of 0..ndim-1 (ndim entries). */
AG_API ag_tensor *ag_permute(ag_tensor *x, const int *dims);
AG_API ag_tensor *ag_narrow(ag_tensor *x, int dim, int64_t start, int64_t length);
/* Elements start, start+step, ... < end along dim (Python slicing, negatives allowed, step > 0). */
AG_API ag_tensor *ag_slice(ag_tensor *x, int dim, int64_t start, int64_t end, int64_t step);
/* Removes dim by taking index (negatives allowed). */
AG_API ag_tensor *ag_select(ag_tensor *x, int dim, int64_t index);
/* Broadcasts size-1 dims (and new leading dims) to shape; -1 keeps a size. */
AG_API ag_tensor *ag_expand(ag_tensor *x, ag_shape shape);
/* Removes dim if its size is 1 (otherwise returns a view of x unchanged). */
AG_API ag_tensor *ag_squeeze(ag_tensor *x, int dim);
/* Removes every size-1 dim. */
AG_API ag_tensor *ag_squeeze_all(ag_tensor *x);
AG_API ag_tensor *ag_unsqueeze(ag_tensor *x, int dim);
/* Merges dims start_dim..end_dim into one (a 0-d x becomes [1]; its only dims are 0 and -1). */
AG_API ag_tensor *ag_flatten(ag_tensor *x, int start_dim, int end_dim);
/* torch.diagonal: a view of the diagonal of dims dim1 and dim2 (distinct, else AG_ERR_ARG),
 * above the main one for offset > 0, below for offset < 0; those two dims go and the diagonal
 * becomes the last dim (length 0 when offset passes a corner).  x needs 2+ dims (AG_ERR_SHAPE). */
AG_API ag_tensor *ag_diagonal(ag_tensor *x, int64_t offset, int dim1, int dim2);
/* torch.movedim: a view with dims source[k] moved to destination[k] (k < n; each list without
 * repeats, else AG_ERR_ARG), the other dims keeping their order. */
AG_API ag_tensor *ag_movedim(ag_tensor *x, int n, const int *source, const int *destination);
/* torch.diag_embed: a new tensor of one more dim, zero but for the diagonal (offset) of dims
 * dim1 and dim2 (of the result), which holds x's last dim; x has 1 to 15 dims.  Differentiable
 * (dx = the diagonal of dy). */
AG_API ag_tensor *ag_diag_embed(ag_tensor *x, int64_t offset, int dim1, int dim2);
/* torch.diag: of a 1-D x, the square matrix with x on its diagonal (ag_diag_embed); of a
 * 2-D x, a copy of its diagonal (ag_diagonal, copied).  Other ranks: AG_ERR_SHAPE. */
AG_API ag_tensor *ag_diag(ag_tensor *x, int64_t diagonal);
/* torch.rot90: x rotated by k quarter turns (any sign) in the plane of dims[0] and dims[1]
 * (NULL: 0 and 1), from the first towards the second; x needs 2+ dims.  A new tensor (for k
 * odd, a transposed view of a flipped copy).  Differentiable through flip and transpose. */
AG_API ag_tensor *ag_rot90(ag_tensor *x, int64_t k, const int *dims);
/* torch.narrow_copy: a contiguous copy of ag_narrow(x, dim, start, length). */
AG_API ag_tensor *ag_narrow_copy(ag_tensor *x, int dim, int64_t start, int64_t length);

/* ---- joining, splitting, indexing ------------------------------------------------ */
/* Joins the n tensors xs along dim, as torch.cat: same dtype, at least 1 dim, shapes
 * equal except along dim (1-D empty tensors are not skipped).  Differentiable: each
 * input gets its slab of dy.  Fails with AG_ERR_ARG (n < 1), AG_ERR_DTYPE (mixed
 * dtypes), AG_ERR_SHAPE (a 0-d input, or shapes that differ outside dim). */
AG_API ag_tensor *ag_cat(ag_tensor *const *xs, int n, int dim);
/* Joins n tensors of one shape and dtype along a new dim (0..ndim, negatives count
 * from ndim), as torch.stack.  Differentiable; fails as ag_cat. */
AG_API ag_tensor *ag_stack(ag_tensor *const *xs, int n, int dim);
/* Splits into pieces of split_size along dim (the last may be smaller), as torch.split.
 * The pieces are views (ag_narrow), owned like any op result, through which gradients
 * flow to x.  split_size must be positive (0 only for an empty dim, which gives one
 * empty piece).  Writes at most max_out views into out and returns how many there are
 * in all, or -1 on error. */
AG_API int ag_split(ag_tensor *x, int64_t split_size, int dim, ag_tensor **out, int max_out);
/* Splits into pieces of ceil(size / chunks) as torch.chunk, so fewer than `chunks`
 * pieces may come back (size 6 in 4 chunks gives 3 pieces of 2; 5 in 3 gives 2, 2, 1);
 * an empty dim gives `chunks` empty pieces.  Same return convention as ag_split. */
AG_API int ag_chunk(ag_tensor *x, int chunks, int dim, ag_tensor **out, int max_out);
/* torch.unbind: the x->shape[dim] slices along dim, as views (ag_select) through which
 * gradients flow to x.  Same return convention as ag_split. */
AG_API int ag_unbind(ag_tensor *x, int dim, ag_tensor **out, int max_out);
/* torch.meshgrid: n (1 to 16) 0-d or 1-d tensors of one dtype give n grids, written to out,
 * each the expanded view of one input over the grid [numel(xs[0]), ..., numel(xs[n-1])];
 * indexing "ij" (or NULL) as above, "xy" with the first two grid dims swapped.  Returns n, or
 * -1 on error (out then untouched past what it set to NULL). */
AG_API int ag_meshgrid(ag_tensor *const *xs, int n, const char *indexing, ag_tensor **out);
/* Index tensors (below) must be int64 (else AG_ERR_DTYPE) and every index must lie in
 * [0, size of the indexed dim): negative indices are rejected as by PyTorch's
 * index_select/gather/scatter_add, with AG_ERR_INDEX and a message naming the op, the
 * bad index, the dim and the shape.  Masks must be bool (else AG_ERR_DTYPE).  Index
 * tensors and masks are recorded with the node, so modifying one in place before
 * backward fails backward with AG_ERR_GRAPH. */
/* x with dim's entries picked by a 1-D (or 0-d: one value) index: the result has x's
 * shape with that dim's size replaced by numel(index).  Differentiable in x
 * (duplicate indices accumulate). */
AG_API ag_tensor *ag_index_select(ag_tensor *x, int dim, const ag_tensor *index);
/* out[i][j] = x[index[i][j]][j] for dim 0 (torch.gather): index has x's number of dims
 * and is no larger than x along the other dims; out has index's shape.
 * Differentiable in x (dx = scatter_add of dy into zeros). */
AG_API ag_tensor *ag_gather(ag_tensor *x, int dim, const ag_tensor *index);
/* torch.take_along_dim(x, index, dim): gather along *dim after broadcasting x and index (same
 * number of dims) over every other dim; with dim NULL, x and index are read as 1-D and the
 * result is 1-D.  Indices as ag_gather's (no negatives; AG_ERR_INDEX); AG_ERR_SHAPE for
 * different numbers of dims or shapes that do not broadcast.  A composite of expand and gather:
 * differentiable in x at every order and in forward mode (dx = scatter_add of dy, summed over
 * the broadcast dims). */
AG_API ag_tensor *ag_take_along_dim(ag_tensor *x, const ag_tensor *index, const int *dim);
/* A copy of x with src[i][j] added at [index[i][j]][j] for dim 0 (torch.scatter_add);
 * duplicate indices accumulate.  index has the number of dims of x and src and is no
 * larger than src along every dim and than x along the others (only index's region
 * of src is read).  x and src: one dtype, float32, float64 or int64.  Differentiable
 * in x (dy) and src (gather of dy; 0 outside index's region). */
AG_API ag_tensor *ag_scatter_add(ag_tensor *x, int dim, const ag_tensor *index, ag_tensor *src);
/* torch.index_add: a copy of x with alpha·src's slices added at index (1-D or 0-d int64, values
 * in [0, size)) along dim; src has x's shape with dim's size replaced by numel(index); repeated
 * indices accumulate.  x and src: one float dtype.  Differentiable in x (dy) and src
 * (alpha·index_select of dy). */
AG_API ag_tensor *ag_index_add(ag_tensor *x, int dim, const ag_tensor *index, ag_tensor *src, double alpha);
/* torch.index_copy: a copy of x with src's slices written at index along dim (shapes as
 * ag_index_add; any dtype, src's the same).  With repeated indices the last slice wins (PyTorch
 * leaves it unspecified).  Differentiable in x (dy, 0 at the written slices) and src. */
AG_API ag_tensor *ag_index_copy(ag_tensor *x, int dim, const ag_tensor *index, ag_tensor *src);
/* torch.index_fill: a copy of x (any dtype) with the slices at index along dim set to value
 * (converted as ag_to_dtype).  As PyTorch's, index values may be negative (counted from the
 * end: [-size, size)).  Differentiable in x (dy, 0 at the filled slices). */
AG_API ag_tensor *ag_index_fill(ag_tensor *x, int dim, const ag_tensor *index, double value);
/* torch.scatter (src form): a copy of x with src[pos] written at pos with pos[dim] replaced by
 * index[pos] (shapes as ag_scatter_add; any dtype, src's the same).  With repeated targets the
 * last in index's row-major order wins (PyTorch: unspecified).  Differentiable in x (dy, 0
 * where written) and src (gather of dy over index's region). */
AG_API ag_tensor *ag_scatter(ag_tensor *x, int dim, const ag_tensor *index, ag_tensor *src);
/* torch.scatter (value form): the same with every target set to value (converted as
 * ag_to_dtype).  Differentiable in x. */
AG_API ag_tensor *ag_scatter_value(ag_tensor *x, int dim, const ag_tensor *index, double value);
/* How ag_scatter_reduce combines the values sent to one place. */
typedef enum ag_scatter_reduction {
    AG_SCATTER_SUM = 0,
    AG_SCATTER_PROD,
    AG_SCATTER_MEAN,
    AG_SCATTER_AMAX,
    AG_SCATTER_AMIN
} ag_scatter_reduction;
/* torch.scatter_reduce: a copy of x where each place that index sends src values to becomes
 * their sum, product, mean, max or min, x's own value taking part when include_self (places
 * nothing is sent to keep x's value).  Shapes as ag_scatter_add; float32 or float64 (a float32
 * sum, product or mean is accumulated in float64).  NaN wins in amax/amin.  Differentiable in x
 * and src: sum as scatter_add; mean divides by the count; prod gives each contributor dy times
 * the product of the others (exact with zeros); amax/amin split dy evenly among the
 * contributors equal to the result. */
AG_API ag_tensor *ag_scatter_reduce(ag_tensor *x, int dim, const ag_tensor *index, ag_tensor *src,
                                    ag_scatter_reduction reduce, bool include_self);
/* torch.take: x read as 1-D (row-major) at int64 indices of any shape; the result has index's
 * shape.  As PyTorch's, indices may be negative (from the end: [-numel, numel)); AG_ERR_INDEX
 * outside.  Differentiable in x (repeated indices accumulate). */
AG_API ag_tensor *ag_take(ag_tensor *x, const ag_tensor *index);
/* torch.put: a copy of x (read as 1-D) with source's values (one per index, any shape of that
 * count) written (or added, when accumulate) at index (negative from the end, as ag_take).
 * x and source: one float dtype.  Without accumulate, the last of repeated indices wins.
 * Differentiable in x (dy, 0 where written unless accumulate) and source (take of dy). */
AG_API ag_tensor *ag_put(ag_tensor *x, const ag_tensor *index, ag_tensor *source, bool accumulate);
/* torch.masked_select: the 1-D tensor of x's elements where mask (bool) is true, x and mask
 * broadcast together, in row-major order.  Differentiable in x. */
AG_API ag_tensor *ag_masked_select(ag_tensor *x, const ag_tensor *mask);
/* torch.masked_scatter: x and mask broadcast together, with the places where mask is true
 * taking source's elements (row-major, source read as 1-D) in order; source must hold at least
 * as many elements as mask selects (else AG_ERR_SHAPE).  x and source: one dtype.
 * Differentiable in x (0 where masked) and source (its first count elements get dy there). */
AG_API ag_tensor *ag_masked_scatter(ag_tensor *x, const ag_tensor *mask, ag_tensor *source);
/* torch.nonzero / torch.argwhere: the int64 [count, ndim] indices of x's nonzero elements (NaN
 * is nonzero; any dtype), row-major.  A 0-d x gives [1, 0] or [0, 0].  Not differentiable. */
AG_API ag_tensor *ag_nonzero(const ag_tensor *x);
AG_API ag_tensor *ag_argwhere(const ag_tensor *x);
/* cond ? a : b elementwise, all three broadcast; cond is a bool tensor, a and b have
 * one dtype.  Laid out as cond, a and b when those not broadcast share one dense
 * permuted layout, else row-major (see Layout above).  Differentiable in a and b (each
 * gets dy where it was chosen). */
AG_API ag_tensor *ag_where(const ag_tensor *cond, ag_tensor *a, ag_tensor *b);
/* x with value where mask (bool, broadcast to x's shape; AG_ERR_SHAPE if it does not)
 * is true.  Differentiable in x (gradient 0 where masked). */
AG_API ag_tensor *ag_masked_fill(ag_tensor *x, const ag_tensor *mask, double value);
/* int64 one-hot encoding of int64 class indices: shape [*, num_classes]; num_classes -1
 * means max+1 (AG_ERR_VALUE for an empty tensor then).  A class outside
 * [0, num_classes) fails with AG_ERR_INDEX.  Not differentiable. */
AG_API ag_tensor *ag_one_hot(const ag_tensor *indices, int64_t num_classes);

/* No padding row for ag_embedding (PyTorch's padding_idx=None). */
#define AG_NO_PADDING_IDX INT64_MIN
/* F.embedding: rows of weight [num_embeddings, embedding_dim] (float32 or float64) picked by
 * int64 indices of any shape: the result is [*indices.shape, embedding_dim], y[pos] =
 * weight[indices[pos]].  Every index must lie in [0, num_embeddings), else AG_ERR_INDEX naming
 * the op, the index and num_embeddings.  padding_idx: a row in [-num_embeddings,
 * num_embeddings) (negative counts from the end) that gets no gradient, or
 * AG_NO_PADDING_IDX; out of range is AG_ERR_INDEX.  Differentiable in weight (a
 * scatter-add of dy into its rows, repeated indices accumulating). */
AG_API ag_tensor *ag_embedding(ag_tensor *weight, const ag_tensor *indices, int64_t padding_idx);

/* ---- searching, counting, quantiles ----------------------------------------------- */
/* torch.searchsorted: for each value, the index at which inserting it keeps the sorted
 * sequence's last dim sorted: the first i with seq[i] >= v (seq[i] > v when right), by plain
 * comparisons as PyTorch's binary search (NaN compares false).  A 1-D sequence serves every
 * value; one of 2+ dims holds a row per leading position of values (same leading dims).  Float
 * sequence and values, or int64 both.  int64, values' shape.  Not differentiable. */
AG_API ag_tensor *ag_searchsorted(const ag_tensor *sorted_sequence, const ag_tensor *values, bool right);
/* torch.bucketize: ag_searchsorted(boundaries, x, right) for 1-D boundaries. */
AG_API ag_tensor *ag_bucketize(const ag_tensor *x, const ag_tensor *boundaries, bool right);
/* torch.bincount: counts of each value of a 1-D int64 x (non-negative, else AG_ERR_VALUE), of
 * length max(max(x) + 1, minlength); with weights (1-D float, one per element) their sums
 * there, in weights' dtype.  Not differentiable. */
AG_API ag_tensor *ag_bincount(const ag_tensor *x, const ag_tensor *weights, int64_t minlength);
/* torch.histc: a histogram of x (float) in `bins` equal bins over [min, max] (max falls in the
 * last bin; values outside and NaN are not counted); min == max takes x's own range (widened by
 * 1 both ways when flat; AG_ERR_VALUE when it is not finite).  x's dtype.  Not differentiable. */
AG_API ag_tensor *ag_histc(const ag_tensor *x, int64_t bins, double min, double max);
/* torch.unique (sorted, dim=None): the distinct values of x, ascending (NaN last, each NaN
 * distinct, where PyTorch 1.13 gives a garbled order); inverse (if not NULL) the int64 index of
 * each element's value (x's shape), counts (if not NULL) each value's count.  Any dtype.  All
 * are new tensors owned like a result; on failure all NULL.  Not differentiable. */
AG_API ag_tensor *ag_unique(const ag_tensor *x, ag_tensor **inverse, ag_tensor **counts);
/* torch.unique_consecutive (dim=None): x flattened, each run of equal values kept once;
 * inverse and counts as ag_unique. */
AG_API ag_tensor *ag_unique_consecutive(const ag_tensor *x, ag_tensor **inverse, ag_tensor **counts);
/* torch.unique(x, dim=dim) (sorted): the distinct slices of x along dim (negative allowed),
 * ascending in row-major lexicographic order (NaN last, a slice holding NaN distinct from every
 * other); x's shape with dim's size the number of distinct slices.  inverse (if not NULL): the
 * int64 [size of dim] group of each slice; counts (if not NULL): each group's size.  Any dtype.
 * AG_ERR_INDEX for a 0-d x or a dim out of range, AG_ERR_SHAPE for an empty dim other than dim
 * (with a non-empty dim), as PyTorch.  All new tensors owned like a result; on failure all NULL.
 * Not differentiable. */
AG_API ag_tensor *ag_unique_dim(const ag_tensor *x, int dim, ag_tensor **inverse, ag_tensor **counts);
/* torch.mode(x, dim, keepdim): the most frequent value along dim (negative allowed; a 0-d x
 * takes dim 0 or -1), the smallest of equally frequent ones (as PyTorch 1.13), and in indices
 * (if not NULL) an int64 index of it in x: its LAST occurrence along dim, as PyTorch's CPU
 * kernel.  NaN count as one value, larger than all (PyTorch 1.13's result with NaN depends on
 * its unstable sort).  An empty dim fails (AG_ERR_SHAPE).  A composite of gather:
 * differentiable in the values at every order and in forward mode (dy goes to that index). */
AG_API ag_tensor *ag_mode(ag_tensor *x, int dim, bool keepdim, ag_tensor **indices);
/* How ag_quantile picks between the two values around the rank q·(n - 1). */
typedef enum ag_quantile_interpolation {
    AG_QUANTILE_LINEAR = 0,
    AG_QUANTILE_LOWER,
    AG_QUANTILE_HIGHER,
    AG_QUANTILE_NEAREST, /* the rank rounded half to even, as torch.round */
    AG_QUANTILE_MIDPOINT
} ag_quantile_interpolation;
/* torch.quantile(x, q, dim, keepdim, interpolation) for a scalar q in [0, 1] (else
 * AG_ERR_VALUE): along *dim, or over all of x when dim is NULL; a lane holding NaN gives NaN.
 * An empty lane fails (AG_ERR_SHAPE).  Composed of sort and gather: differentiable, dy going to
 * the one or two sorted places interpolated. */
AG_API ag_tensor *ag_quantile(ag_tensor *x, double q, const int *dim, bool keepdim, ag_quantile_interpolation how);
/* torch.nanquantile: the same ignoring NaN (a lane of NaN only gives NaN). */
AG_API ag_tensor *ag_nanquantile(ag_tensor *x, double q, const int *dim, bool keepdim, ag_quantile_interpolation how);
/* torch.nanmedian(x, dim, keepdim): the lower median ignoring NaN (NaN for a lane of NaN only),
 * and in indices (if not NULL) its int64 index in x (among equal values, the one the stable
 * sort puts at the median's place; PyTorch leaves the choice unspecified).
 * Differentiable: dy goes to that element. */
AG_API ag_tensor *ag_nanmedian_dim(ag_tensor *x, int dim, bool keepdim, ag_tensor **indices);

/* ---- comparisons: bool masks, not differentiable ------------------------------------ */
/* Elementwise a OP b with broadcasting, giving a bool tensor (laid out as a and b when
 * those not broadcast share one dense permuted layout, else row-major: see Layout above);
 * a and b have one dtype, float32, float64 or int64 (else AG_ERR_DTYPE).  Nothing is
 * recorded for autograd.
 * NaN compares unequal to everything (ag_ne is true for it). */
AG_API ag_tensor *ag_eq(const ag_tensor *a, const ag_tensor *b);
AG_API ag_tensor *ag_ne(const ag_tensor *a, const ag_tensor *b);
AG_API ag_tensor *ag_lt(const ag_tensor *a, const ag_tensor *b);
AG_API ag_tensor *ag_le(const ag_tensor *a, const ag_tensor *b);
AG_API ag_tensor *ag_gt(const ag_tensor *a, const ag_tensor *b);
AG_API ag_tensor *ag_ge(const ag_tensor *a, const ag_tensor *b);
/* torch.isnan, torch.isinf, torch.isfinite: bool masks of x (float32, float64 or int64,
 * else AG_ERR_DTYPE; an int64 tensor is finite everywhere), laid out as a dense x, else
 * row-major.  Not differentiable. */
AG_API ag_tensor *ag_isnan(const ag_tensor *x);
AG_API ag_tensor *ag_isinf(const ag_tensor *x);
AG_API ag_tensor *ag_isfinite(const ag_tensor *x);

#ifdef __cplusplus
}
#endif
#endif

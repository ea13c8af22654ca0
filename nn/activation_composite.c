/*
 * activation_composite.c - the activations of torch.nn.functional (and two of the
 * course material's) that are composites of existing ops: logsigmoid, softmin, glu,
 * threshold, rrelu, softshrink, hardshrink, tanhshrink, the Gaussian exp(-x²) and
 * GELU's sigmoid approximation.  Being composites, they are differentiable to any
 * order and have forward-mode tangents through their parts.
 */
#include <math.h>
#include "agrad/nn.h"
#include "agrad/ops.h"
#include "core/internal.h"
#include "nn/loss_internal.h"

/* A float tensor, else AG_ERR_DTYPE naming op. */
static bool check_float(const char *op, const ag_tensor *x) { return ag__loss_check_float(op, "input", x, NULL) == AG_OK; }

/* The bool mask x OP c for the scalar c (not differentiable). */
static ag_tensor *compare_scalar(ag_tensor *(*cmp)(const ag_tensor *, const ag_tensor *), ag_tensor *x, double c) {
    return cmp(x, ag_full_like(x, c));
}

/* log σ(x) = -softplus(-x), computed stably as min(x, 0) - log1p(e^-|x|);  dx = σ(-x) */
ag_tensor *ag_logsigmoid(ag_tensor *x) {
    AG_CHECK_HANDLES(NULL, "logsigmoid", x);
    if (!x || !check_float("logsigmoid", x)) return NULL;
    if (ag__composite_begin("logsigmoid")) return NULL;
    return ag__composite_end(ag_neg(ag__loss_softplus(ag_neg(x))));
}

/* softmin(x)_i = e^(-x_i) / Σ_j e^(-x_j) along dim = softmax(-x, dim) */
ag_tensor *ag_softmin(ag_tensor *x, int dim) {
    AG_CHECK_HANDLES(NULL, "softmin", x);
    if (!x || !check_float("softmin", x)) return NULL;
    if (ag__composite_begin("softmin")) return NULL;
    return ag__composite_end(ag_softmax(ag_neg(x), dim));
}

/* glu(x) = a ⊙ σ(b), a and b the first and second halves of x along dim */
ag_tensor *ag_glu(ag_tensor *x, int dim) {
    AG_CHECK_HANDLES(NULL, "glu", x);
    if (!x || !check_float("glu", x)) return NULL;
    int nd = ag_ndim(x);
    if (nd == 0) return ag__fail_null(AG_ERR_SHAPE, "glu: halving input only works on a tensor of at least one dim, got a 0-d tensor");
    int d = dim < 0 ? dim + nd : dim;
    if (d < 0 || d >= nd) return ag__fail_null(AG_ERR_INDEX, "glu: dim %d out of range for a %d-d input", dim, nd);
    int64_t n = ag_size(x, d);
    if (n % 2) return ag__fail_null(AG_ERR_SHAPE, "glu: halving dim %d needs an even size, got %lld", dim, (long long)n);
    if (ag__composite_begin("glu")) return NULL;
    ag_tensor *a = ag_narrow(x, d, 0, n / 2), *b = ag_narrow(x, d, n / 2, n / 2);
    return ag__composite_end(ag_mul(a, ag_sigmoid(b)));
}

/* threshold(x) = x <= th ? value : x (NaN stays NaN);  dx = x <= th ? 0 : 1 */
ag_tensor *ag_threshold(ag_tensor *x, double threshold, double value) {
    AG_CHECK_HANDLES(NULL, "threshold", x);
    if (!x || !check_float("threshold", x)) return NULL;
    if (ag__composite_begin("threshold")) return NULL;
    ag_tensor *below = compare_scalar(ag_le, x, threshold);
    return ag__composite_end(ag_where(below, ag_full_like(x, value), x));
}

/* hardshrink(x) = -λ <= x <= λ ? 0 : x;  dx = 0 on [-λ, λ], else 1 */
ag_tensor *ag_hardshrink(ag_tensor *x, double lambd) {
    AG_CHECK_HANDLES(NULL, "hardshrink", x);
    if (!x || !check_float("hardshrink", x)) return NULL;
    if (ag__composite_begin("hardshrink")) return NULL;
    ag_tensor *inside = compare_scalar(ag_le, ag_abs(x), lambd);
    return ag__composite_end(ag_where(inside, ag_zeros_like(x), x));
}

/* softshrink(x) = x > λ ? x - λ : x < -λ ? x + λ : 0 (NaN gives 0, as PyTorch);  dx = 1 outside [-λ, λ] */
ag_tensor *ag_softshrink(ag_tensor *x, double lambd) {
    AG_CHECK_HANDLES(NULL, "softshrink", x);
    if (!x || !check_float("softshrink", x)) return NULL;
    if (lambd < 0) return ag__fail_null(AG_ERR_ARG, "softshrink: lambd must be >= 0, got %g", lambd);
    if (ag__composite_begin("softshrink")) return NULL;
    ag_tensor *low = ag_where(compare_scalar(ag_lt, x, -lambd), ag_add_scalar(x, lambd), ag_zeros_like(x));
    return ag__composite_end(ag_where(compare_scalar(ag_gt, x, lambd), ag_sub_scalar(x, lambd), low));
}

/* tanhshrink(x) = x - tanh(x);  dx = tanh²(x) */
ag_tensor *ag_tanhshrink(ag_tensor *x) {
    AG_CHECK_HANDLES(NULL, "tanhshrink", x);
    if (!x || !check_float("tanhshrink", x)) return NULL;
    if (ag__composite_begin("tanhshrink")) return NULL;
    return ag__composite_end(ag_sub(x, ag_tanh(x)));
}

/* gaussian(x) = e^(-x²);  dx = -2x e^(-x²) */
ag_tensor *ag_gaussian(ag_tensor *x) {
    AG_CHECK_HANDLES(NULL, "gaussian", x);
    if (!x || !check_float("gaussian", x)) return NULL;
    if (ag__composite_begin("gaussian")) return NULL;
    return ag__composite_end(ag_exp(ag_neg(ag_square(x))));
}

/* gelu_sigmoid(x) = x σ(1.702 x);  dx = σ(1.702x) + 1.702 x σ(1.702x)(1 - σ(1.702x)) */
ag_tensor *ag_gelu_sigmoid(ag_tensor *x) {
    AG_CHECK_HANDLES(NULL, "gelu_sigmoid", x);
    if (!x || !check_float("gelu_sigmoid", x)) return NULL;
    if (ag__composite_begin("gelu_sigmoid")) return NULL;
    return ag__composite_end(ag_mul(x, ag_sigmoid(ag_mul_scalar(x, 1.702))));
}

/* rrelu(x) = x >= 0 ? x : a x, with a ~ U(lower, upper) drawn per element (from the global
 * generator) when training, a = (lower + upper)/2 otherwise;  dx = x > 0 ? 1 : a */
ag_tensor *ag_rrelu(ag_tensor *x, double lower, double upper, bool training) {
    AG_CHECK_HANDLES(NULL, "rrelu", x);
    if (!x || !check_float("rrelu", x)) return NULL;
    if (!(lower <= upper) || !isfinite(lower) || !isfinite(upper))
        return ag__fail_null(AG_ERR_ARG, "rrelu: needs finite lower <= upper, got lower %g, upper %g", lower, upper);
    if (!training) return ag_leaky_relu(x, (lower + upper) / 2);
    if (ag__composite_begin("rrelu")) return NULL;
    ag_tensor *u = ag_uniform_(ag_zeros_like(x), lower, upper);
    return ag__composite_end(ag_where(compare_scalar(ag_gt, x, 0), x, ag_mul(x, u)));
}

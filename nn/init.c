/*
 * init.c - torch.nn.init: in-place initialisation of parameters.
 *
 * Each function computes the new values in a float64 scratch tensor shaped as
 * t (uniform_ and normal_, and so the xavier and kaiming ones: in t's dtype),
 * from this thread's generator (the random values through its counter-based
 * fill, ag__rand_fill), then copies them into t (any strides, its dtype) and
 * bumps t's version.  Writing the data directly is what PyTorch's
 * torch.no_grad() block achieves: parameters that require grad may be passed.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "agrad/nn.h"
#include "core/iter.h"
#include "nn/qr.h"

/* A scratch tensor of dtype shaped as t, owned by the caller; NULL (with a message) when t is unusable. */
static ag_tensor *scratch_as(const char *op, const ag_tensor *t, bool need_float, ag_dtype dtype) {
    if (!t) return NULL;
    if (need_float && t->dtype != AG_F32 && t->dtype != AG_F64)
        return ag__fail_null(AG_ERR_DTYPE, "init.%s: needs a floating tensor, got %s", op, ag_dtype_name(t->dtype));
    char name[64];
    snprintf(name, sizeof name, "init.%s", op);
    if (ag__check_no_internal_overlap(name, t)) return NULL;
    return ag__new_unowned(dtype, t->ndim, t->shape, false);
}

/* A float64 scratch tensor shaped as t (scratch_as). */
static ag_tensor *scratch(const char *op, const ag_tensor *t, bool need_float) { return scratch_as(op, t, need_float, AG_F64); }

/* A scratch tensor in t's floating dtype: the random fills draw float32 values for a float32 t (as PyTorch). */
static ag_tensor *scratch_of(const char *op, const ag_tensor *t) {
    return scratch_as(op, t, true, t && t->dtype == AG_F32 ? AG_F32 : AG_F64);
}

/* t = s (converted to t's dtype); releases s; returns t. */
static ag_tensor *commit(ag_tensor *t, ag_tensor *s) {
    ag__copy_into(t, s);
    ag__bump_version(t);
    ag_release(s);
    return t;
}

static double *values(ag_tensor *s) { return (double *)ag__ptr(s); }

ag_status ag_init_calculate_fan_in_and_fan_out(const ag_tensor *t, int64_t *fan_in, int64_t *fan_out) {
    AG_CHECK_HANDLES(AG_ERR_ARG, "init.calculate_fan_in_and_fan_out", t);
    if (!t) return ag_last_status() ? ag_last_status() : ag__fail(AG_ERR_ARG, "init: tensor is NULL");
    if (t->ndim < 2)
        return ag__fail(AG_ERR_SHAPE, "init: fan in and fan out can not be computed for tensor with fewer than 2 dimensions "
                        "(got %d)", t->ndim);
    int64_t receptive = ag__numel(t->ndim - 2, t->shape + 2);
    if (fan_in) *fan_in = t->shape[1] * receptive;
    if (fan_out) *fan_out = t->shape[0] * receptive;
    return AG_OK;
}

double ag_init_calculate_gain(const char *nonlinearity, double param) {
    static const char *const unit[] = {"linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
                                       "conv_transpose3d", "sigmoid"};
    if (!nonlinearity) {
        ag__fail(AG_ERR_ARG, "init.calculate_gain: nonlinearity is NULL");
        return NAN;
    }
    for (size_t i = 0; i < sizeof unit / sizeof *unit; i++)
        if (strcmp(nonlinearity, unit[i]) == 0) return 1;
    if (strcmp(nonlinearity, "tanh") == 0) return 5.0 / 3;
    if (strcmp(nonlinearity, "relu") == 0) return sqrt(2.0);
    if (strcmp(nonlinearity, "leaky_relu") == 0) {
        double slope = isnan(param) ? 0.01 : param; /* NAN: PyTorch's None */
        if (isinf(slope)) {
            ag__fail(AG_ERR_ARG, "init.calculate_gain: negative_slope %g not a valid number", slope);
            return NAN;
        }
        return sqrt(2.0 / (1 + slope * slope));
    }
    if (strcmp(nonlinearity, "selu") == 0) return 3.0 / 4;
    ag__fail(AG_ERR_ARG, "init.calculate_gain: unsupported nonlinearity %s", nonlinearity);
    return NAN;
}

/* ---- plain fills ------------------------------------------------------------------------------------------------ */
ag_tensor *ag_init_uniform_(ag_tensor *t, double a, double b) {
    AG_CHECK_HANDLES(NULL, "init.uniform_", t);
    if (t && !(a <= b)) return ag__fail_null(AG_ERR_ARG, "init.uniform_: expects a <= b, got a=%g, b=%g", a, b);
    ag_tensor *s = scratch_of("uniform_", t);
    if (!s) return NULL;
    ag__rand_fill(ag__ptr(s), s->dtype, ag_numel(s), false, a, b); /* a + (b - a)·u */
    return commit(t, s);
}

ag_tensor *ag_init_normal_(ag_tensor *t, double mean, double std) {
    AG_CHECK_HANDLES(NULL, "init.normal_", t);
    if (t && !(std >= 0)) return ag__fail_null(AG_ERR_ARG, "init.normal_: expects std >= 0, got %g", std);
    ag_tensor *s = scratch_of("normal_", t);
    if (!s) return NULL;
    ag__rand_fill(ag__ptr(s), s->dtype, ag_numel(s), true, mean, std); /* mean + std·z */
    return commit(t, s);
}

/* erf⁻¹(y): Giles' approximation (2010) refined by two Newton steps on erf. */
static double erfinv(double y) {
    if (y <= -1) return y == -1 ? -INFINITY : NAN;
    if (y >= 1) return y == 1 ? INFINITY : NAN;
    double w = -log((1 - y) * (1 + y)), x;
    if (w < 5) {
        w -= 2.5;
        x = 2.81022636e-08;
        x = 3.43273939e-07 + x * w;
        x = -3.5233877e-06 + x * w;
        x = -4.39150654e-06 + x * w;
        x = 0.00021858087 + x * w;
        x = -0.00125372503 + x * w;
        x = -0.00417768164 + x * w;
        x = 0.246640727 + x * w;
        x = 1.50140941 + x * w;
    } else {
        w = sqrt(w) - 3;
        x = -0.000200214257;
        x = 0.000100950558 + x * w;
        x = 0.00134934322 + x * w;
        x = -0.00367342844 + x * w;
        x = 0.00573950773 + x * w;
        x = -0.0076224613 + x * w;
        x = 0.00943887047 + x * w;
        x = 1.00167406 + x * w;
        x = 2.83297682 + x * w;
    }
    x *= y;
    for (int i = 0; i < 2; i++) x -= (erf(x) - y) / (1.1283791670955126 * exp(-x * x));
    return x;
}

static double norm_cdf(double x) { return (1 + erf(x / sqrt(2.0))) / 2; }

/* As PyTorch: u ~ U(2·Φ(α) - 1, 2·Φ(β) - 1), x = mean + std·√2·erf⁻¹(u), clamped to [a, b]. */
ag_tensor *ag_init_trunc_normal_(ag_tensor *t, double mean, double std, double a, double b) {
    AG_CHECK_HANDLES(NULL, "init.trunc_normal_", t);
    if (t && !(std > 0)) return ag__fail_null(AG_ERR_ARG, "init.trunc_normal_: expects std > 0, got %g", std);
    if (t && !(a < b)) return ag__fail_null(AG_ERR_ARG, "init.trunc_normal_: expects a < b, got a=%g, b=%g", a, b);
    ag_tensor *s = scratch("trunc_normal_", t, true);
    if (!s) return NULL;
    double lo = 2 * norm_cdf((a - mean) / std) - 1, hi = 2 * norm_cdf((b - mean) / std) - 1;
    ag__rand_fill(values(s), AG_F64, ag_numel(s), false, lo, hi);
    for (int64_t i = 0; i < ag_numel(s); i++) {
        double v = mean + std * sqrt(2.0) * erfinv(values(s)[i]);
        values(s)[i] = v < a ? a : v > b ? b : v;
    }
    return commit(t, s);
}

ag_tensor *ag_init_constant_(ag_tensor *t, double val) {
    AG_CHECK_HANDLES(NULL, "init.constant_", t);
    ag_tensor *s = scratch("constant_", t, false);
    if (!s) return NULL;
    for (int64_t i = 0; i < ag_numel(s); i++) values(s)[i] = val;
    return commit(t, s);
}
ag_tensor *ag_init_zeros_(ag_tensor *t) { return ag_init_constant_(t, 0); }
ag_tensor *ag_init_ones_(ag_tensor *t) { return ag_init_constant_(t, 1); }

ag_tensor *ag_init_eye_(ag_tensor *t) {
    AG_CHECK_HANDLES(NULL, "init.eye_", t);
    if (t && t->ndim != 2) return ag__fail_null(AG_ERR_SHAPE, "init.eye_: only tensors with 2 dimensions are supported, got %d", t->ndim);
    ag_tensor *s = scratch("eye_", t, false);
    if (!s) return NULL;
    for (int64_t i = 0; i < t->shape[0] && t->shape[1] > 0; i++) /* no rows to walk when empty (fuzz_api) */
        for (int64_t j = 0; j < t->shape[1]; j++) values(s)[i * t->shape[1] + j] = i == j;
    return commit(t, s);
}

/* Dirac delta per group: w[g·(O/groups) + d, d, centre] = 1 for d < min(O/groups, I), else 0 */
ag_tensor *ag_init_dirac_(ag_tensor *t, int groups) {
    AG_CHECK_HANDLES(NULL, "init.dirac_", t);
    if (t && (t->ndim < 3 || t->ndim > 5))
        return ag__fail_null(AG_ERR_SHAPE, "init.dirac_: only tensors with 3, 4, or 5 dimensions are supported, got %d",
                             t->ndim);
    if (t && (groups < 1 || t->shape[0] % groups != 0))
        return ag__fail_null(AG_ERR_ARG, "init.dirac_: dim 0 (%lld) must be divisible by groups (%d)",
                             (long long)t->shape[0], groups);
    ag_tensor *s = scratch("dirac_", t, false);
    if (!s) return NULL;
    int64_t n = ag_numel(s), per = t->shape[0] / groups, min_dim = per < t->shape[1] ? per : t->shape[1];
    int64_t centre = 0, inner = 1; /* the centre of the kernel's spatial dims, row-major */
    for (int d = 2; d < t->ndim; d++) centre = centre * t->shape[d] + t->shape[d] / 2, inner *= t->shape[d];
    for (int64_t i = 0; i < n; i++) values(s)[i] = 0;
    for (int64_t g = 0; n > 0 && g < groups; g++)
        for (int64_t d = 0; d < min_dim; d++) values(s)[((g * per + d) * t->shape[1] + d) * inner + centre] = 1;
    return commit(t, s);
}

/* N(0, std²), then in each column ⌈sparsity·rows⌉ rows picked at random set to 0 */
ag_tensor *ag_init_sparse_(ag_tensor *t, double sparsity, double std) {
    AG_CHECK_HANDLES(NULL, "init.sparse_", t);
    if (t && t->ndim != 2)
        return ag__fail_null(AG_ERR_SHAPE, "init.sparse_: only tensors with 2 dimensions are supported, got %d", t->ndim);
    if (t && (!(sparsity >= 0 && sparsity <= 1) || !(std >= 0) || isinf(std)))
        return ag__fail_null(AG_ERR_ARG, "init.sparse_: expects sparsity in [0, 1] and a finite std >= 0, got %g, %g",
                             sparsity, std);
    ag_tensor *s = scratch("sparse_", t, true);
    if (!s) return NULL;
    int64_t rows = t->shape[0], cols = t->shape[1], zeros = (int64_t)ceil(sparsity * (double)rows);
    int64_t *perm = ag__alloc(sizeof(int64_t) * (size_t)(rows ? rows : 1));
    if (!perm) {
        ag_release(s);
        return NULL;
    }
    ag__rand_fill(values(s), AG_F64, rows * cols, true, 0, std);
    for (int64_t c = 0; c < cols; c++) {
        for (int64_t i = 0; i < rows; i++) perm[i] = i;
        for (int64_t i = 0; i < zeros; i++) { /* the first `zeros` of a Fisher–Yates shuffle */
            int64_t j = i + (int64_t)(ag__rand_uniform() * (double)(rows - i));
            if (j >= rows) j = rows - 1;
            int64_t tmp = perm[i];
            perm[i] = perm[j], perm[j] = tmp;
            values(s)[perm[i] * cols + c] = 0;
        }
    }
    ag__free(perm);
    return commit(t, s);
}

/* ---- scaled by the fans ------------------------------------------------------------------------------------------ */
/* std = gain·√(2/(fan_in + fan_out)); uniform on ±√3·std */
static ag_tensor *xavier(ag_tensor *t, double gain, bool normal) {
    int64_t fi, fo;
    AG_CHECK_HANDLES(NULL, normal ? "init.xavier_normal_" : "init.xavier_uniform_", t);
    if (!t || ag_init_calculate_fan_in_and_fan_out(t, &fi, &fo)) return NULL;
    if (ag_numel(t) == 0) return t;
    double std = gain * sqrt(2.0 / (double)(fi + fo));
    return normal ? ag_init_normal_(t, 0, std) : ag_init_uniform_(t, -sqrt(3.0) * std, sqrt(3.0) * std);
}
ag_tensor *ag_init_xavier_uniform_(ag_tensor *t, double gain) { return xavier(t, gain, false); }
ag_tensor *ag_init_xavier_normal_(ag_tensor *t, double gain) { return xavier(t, gain, true); }

/* std = gain(nonlinearity, a)/√fan; uniform on ±√3·std */
static ag_tensor *kaiming(ag_tensor *t, double a, const char *mode, const char *nonlinearity, bool normal) {
    int64_t fi, fo;
    AG_CHECK_HANDLES(NULL, normal ? "init.kaiming_normal_" : "init.kaiming_uniform_", t);
    if (!t || ag_init_calculate_fan_in_and_fan_out(t, &fi, &fo)) return NULL;
    if (!mode) mode = "fan_in";
    if (!nonlinearity) nonlinearity = "leaky_relu";
    if (strcmp(mode, "fan_in") != 0 && strcmp(mode, "fan_out") != 0)
        return ag__fail_null(AG_ERR_ARG, "init.kaiming: mode %s not supported, please use one of fan_in, fan_out", mode);
    double gain = ag_init_calculate_gain(nonlinearity, a);
    if (isnan(gain)) return NULL;
    if (ag_numel(t) == 0) return t; /* PyTorch: initializing zero-element tensors is a no-op */
    double std = gain / sqrt((double)(strcmp(mode, "fan_in") == 0 ? fi : fo));
    return normal ? ag_init_normal_(t, 0, std) : ag_init_uniform_(t, -sqrt(3.0) * std, sqrt(3.0) * std);
}
ag_tensor *ag_init_kaiming_uniform_(ag_tensor *t, double a, const char *mode, const char *nonlinearity) {
    return kaiming(t, a, mode, nonlinearity, false);
}
ag_tensor *ag_init_kaiming_normal_(ag_tensor *t, double a, const char *mode, const char *nonlinearity) {
    return kaiming(t, a, mode, nonlinearity, true);
}

/* ---- orthogonal --------------------------------------------------------------------------------------------------- */
/* t viewed as rows x cols = [size(0), numel/size(0)] gets Q of the QR of a normal matrix (of its transpose when
 * rows < cols, then transposed back), each column signed by R's diagonal, times gain. */
ag_tensor *ag_init_orthogonal_(ag_tensor *t, double gain) {
    AG_CHECK_HANDLES(NULL, "init.orthogonal_", t);
    if (!t) return NULL;
    if (t->ndim < 2)
        return ag__fail_null(AG_ERR_SHAPE, "init.orthogonal_: only tensors with 2 or more dimensions are supported, got %d",
                             t->ndim);
    ag_tensor *s = scratch("orthogonal_", t, true);
    if (!s) return NULL;
    int64_t rows = t->shape[0], n = ag_numel(t), cols = rows ? n / rows : 0;
    if (n == 0) {
        ag_release(s);
        return t;
    }
    bool tr = rows < cols;
    int64_t m = tr ? cols : rows, k = tr ? rows : cols; /* QR of an m x k matrix, m >= k */
    double *a = ag__alloc_n(n, 2 * sizeof(double)), *q = a ? a + n : NULL, *out = values(s);
    if (!a) {
        ag_release(s);
        return NULL;
    }
    ag__rand_fill(a, AG_F64, n, true, 0, 1); /* the normal matrix, m x k */
    ag_status st = ag__qr_signed_q(a, m, k, q);
    for (int64_t i = 0; !st && i < rows; i++)
        for (int64_t j = 0; j < cols; j++) out[i * cols + j] = gain * (tr ? q[j * k + i] : q[i * k + j]);
    ag__free(a);
    if (st) {
        ag_release(s);
        return NULL;
    }
    return commit(t, s);
}

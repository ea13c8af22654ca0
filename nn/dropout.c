/*
 * dropout.c - regularisers active in training mode only: nn.Dropout (inverted
 * dropout), nn.Dropout2d (whole channels) and GaussianNoise (additive noise,
 * not in PyTorch), and their functional forms.  Both draw from this thread's generator (ag_manual_seed)
 * and build y from differentiable ops, so gradients flow through the mask.
 */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <string.h>
#include "agrad/nn.h"
#include "core/iter.h"
#include "core/parallel.h"
#include "core/sum.h"
#include "nn/module.h"
#include "nn/repr.h"
#include "ops/kernels.h"
#include "agrad/ops.h"

/* A contiguous tensor shaped as x, owned by the caller, each element drawn as f(arg). */
static ag_tensor *random_like(const ag_tensor *x, double (*f)(double), double arg) {
    ag_tensor *t = ag__new_unowned(x->dtype, x->ndim, x->shape, false);
    if (!t) return NULL;
    int64_t n = ag_numel(t);
    for (int64_t i = 0; i < n; i++) {
        double v = f(arg);
        if (t->dtype == AG_F64) ((double *)ag__ptr(t))[i] = v;
        else ((float *)ag__ptr(t))[i] = (float)v;
    }
    return t;
}

static double gaussian(double std) { return std * ag__rand_normal(); }

/* y = x (the same tensor, retained for the caller's scope) */
static ag_tensor *pass_through(ag_tensor *x) { return ag__own(ag_retain(x)); }

/* y = x·m, m_i = Bernoulli(1 - p)/(1 - p);  dx = dy·m (through ag_mul) */
ag_tensor *ag_dropout(ag_tensor *x, double p, bool training) {
    AG_CHECK_HANDLES(NULL, "dropout", x);
    if (!x) return NULL;
    if (!(p >= 0 && p <= 1))
        return ag__fail_null(AG_ERR_ARG, "dropout: probability has to be between 0 and 1, but got %g", p);
    if (ag__check_float("dropout", x, NULL)) return NULL;
    if (!training || p == 0 || ag_numel(x) == 0) return pass_through(x);
    ag_tensor *mask = ag__new_unowned(x->dtype, p == 1 ? 0 : x->ndim, x->shape, p == 1); /* p = 1: x·0, as PyTorch */
    if (mask && p < 1) /* kept with probability 1 - p and scaled by 1/(1 - p), else 0 */
        ag__rand_keep_mask(ag__ptr(mask), mask->dtype, ag_numel(mask), 1 - p, 1 / (1 - p));
    ag_tensor *y = mask ? ag_mul(x, mask) : NULL;
    ag_release(mask);
    return y;
}

typedef struct noise_layer {
    double p; /* Dropout: drop probability; GaussianNoise: std */
} noise_layer;

/* ---- ReLU then Dropout in one pass ---------------------------------------------------------------------
 * y = relu(x)·m with the mask m drawn as ag_dropout draws it (the same key from the generator, so the same
 * bits for a seed), and m' = [x > 0]·m (x NaN: m, since relu passes NaN and its adjoint dy): y is x·m' except
 * for the sign of zeros, and is recorded as mul(x, m'), whose adjoint dx = dy·m' is ReLU's adjoint of
 * dropout's (ReLU's second derivative is 0, so every order and the tangent ẏ = ẋ·m' hold).  The mask is made
 * a block at a time into a buffer that stays in L1 and only m' is stored: the pass reads x and writes y and
 * m', three streams of x's size (the unfused path moves twelve forward and backward; writing m, then reading
 * it back, five: [256, 512] float32, one thread, CPU time: 84 -> 52 µs; docs/nn-layers.md#dropout). */
#define RELU_MASK(SUF, T)                                                                               \
    AG_VEC_CLONES static void relu_mask_##SUF(T *restrict y, T *restrict m, const T *restrict x,        \
                                              const T *restrict keep, int64_t n) {                      \
        for (int64_t i = 0; i < n; i++) {                                                               \
            const T r = x[i] <= 0 ? 0 : x[i]; /* relu, as ops/unary.c computes it */                    \
            y[i] = r * keep[i];                                                                         \
            m[i] = x[i] <= 0 ? 0 : keep[i];                                                             \
        }                                                                                               \
    }
RELU_MASK(f32, float)
RELU_MASK(f64, double)

/* Elements a block of the fused pass: its mask, 8 KiB of float64 at most, stays in L1. */
#define RELU_DROP_BLOCK 1024

/* Blocks [b0, b1) of the fused pass over n elements of y, m' and x (contiguous, of dtype). */
static void relu_drop_blocks(char *y, char *m, const char *x, ag_dtype dtype, int64_t n, int64_t b0, int64_t b1,
                             ag_keep_key k, double scale) {
    double keep[RELU_DROP_BLOCK]; /* RELU_DROP_BLOCK values of dtype */
    const size_t es = ag_dtype_size(dtype);
    for (int64_t b = b0; b < b1; b++) {
        const int64_t i0 = b * RELU_DROP_BLOCK, i1 = i0 + RELU_DROP_BLOCK < n ? i0 + RELU_DROP_BLOCK : n;
        const size_t off = (size_t)i0 * es;
        ag__rand_keep_part(keep, dtype, n, i0, i1, k, scale);
        if (dtype == AG_F64)
            relu_mask_f64((double *)(y + off), (double *)(m + off), (const double *)(x + off), keep, i1 - i0);
        else
            relu_mask_f32((float *)(y + off), (float *)(m + off), (const float *)(x + off), (const float *)keep, i1 - i0);
    }
}

/* dropout(relu(x), p, training): the pass above where it applies (training, 0 < p < 1, a contiguous
 * non-empty float32/float64 x), else the two calls. */
static ag_tensor *relu_dropout(ag_tensor *x, double p, bool training) {
    if (!training || p == 0 || p >= 1 || (x->dtype != AG_F32 && x->dtype != AG_F64) || !ag__contig(x) ||
        ag_numel(x) == 0) {
        ag_tensor *r = ag_relu(x); /* dropout's checks and its eval, p = 0 and p = 1 cases as they are */
        return r ? ag_dropout(r, p, training) : NULL;
    }
    const int64_t n = ag_numel(x), blocks = (n + RELU_DROP_BLOCK - 1) / RELU_DROP_BLOCK;
    ag_tensor *mask = ag__new_unowned(x->dtype, x->ndim, x->shape, false);
    ag_tensor *y = mask ? ag__new(x->dtype, x->ndim, x->shape) : NULL;
    if (!y) {
        ag_release(mask);
        return NULL;
    }
    const ag_keep_key k = ag__rand_keep_key(1 - p);
    char *py = ag__ptr(y), *pm = ag__ptr(mask);
    const char *px = ag__ptr(x);
    const int nt = ag__threads_for(n) < blocks ? ag__threads_for(n) : (int)blocks;
    if (nt <= 1) { /* no parallel region at all: even a one-thread team costs ~1 µs */
        relu_drop_blocks(py, pm, px, x->dtype, n, 0, blocks, k, 1 / (1 - p));
    } else {
#pragma omp parallel num_threads(nt)
        {
            const int t = omp_get_thread_num(), used = omp_get_num_threads();
            relu_drop_blocks(py, pm, px, x->dtype, n, ag__share_start(blocks, t, used),
                             ag__share_start(blocks, t + 1, used), k, 1 / (1 - p));
        }
    }
    y = ag__mul_record(y, x, mask);
    ag_release(mask);
    return y;
}

bool ag__nn_relu_dropout_pair(ag_module *a, ag_module *b, ag_tensor *x, ag_tensor **y) {
    if (!x || !ag__module_plain(a) || !ag__module_plain(b) || strcmp(ag_module_type_name(a), "ReLU") != 0 ||
        strcmp(ag_module_type_name(b), "Dropout") != 0)
        return false;
    AG_CHECK_HANDLES(false, "module_forward", x);
    const noise_layer *d = ag_module_data(b);
    *y = relu_dropout(x, d->p, ag_module_is_training(b));
    return true;
}

double ag__nn_dropout_p(const ag_module *m) { return ((const noise_layer *)ag_module_data(m))->p; }

/* y = x·m, m[n, c] = Bernoulli(1 - p)/(1 - p) for each channel, broadcast over the dims after C;  dx = dy·m */
ag_tensor *ag_dropout2d(ag_tensor *x, double p, bool training) {
    AG_CHECK_HANDLES(NULL, "dropout2d", x);
    if (!x) return NULL;
    char s[AG_SHAPE_STR];
    if (!(p >= 0 && p <= 1))
        return ag__fail_null(AG_ERR_ARG, "dropout2d: probability has to be between 0 and 1, but got %g", p);
    if (ag__check_float("dropout2d", x, NULL)) return NULL;
    if (x->ndim < 2)
        return ag__fail_null(AG_ERR_SHAPE, "dropout2d: input %s needs at least 2 dims (N, C, *)", ag__tshape(s, x));
    if (!training || p == 0 || ag_numel(x) == 0) return pass_through(x);
    int64_t shape[AG_MAX_DIMS]; /* [N, C, 1, ...]: one draw per channel of each sample */
    for (int d = 0; d < x->ndim; d++) shape[d] = d < 2 ? x->shape[d] : 1;
    ag_tensor *mask = ag__new_unowned(x->dtype, p == 1 ? 0 : x->ndim, shape, p == 1); /* p = 1: x·0, as PyTorch */
    if (mask && p < 1) ag__rand_keep_mask(ag__ptr(mask), mask->dtype, ag_numel(mask), 1 - p, 1 / (1 - p));
    ag_tensor *y = mask ? ag_mul(x, mask) : NULL;
    ag_release(mask);
    return y;
}

/* y = x + n, n_i ~ N(0, std²);  dx = dy (through ag_add) */
ag_tensor *ag_gaussian_noise(ag_tensor *x, double std, bool training) {
    AG_CHECK_HANDLES(NULL, "gaussian_noise", x);
    if (!x) return NULL;
    if (!(std >= 0) || isinf(std))
        return ag__fail_null(AG_ERR_ARG, "gaussian_noise: std must be finite and non-negative, got %g", std);
    if (ag__check_float("gaussian_noise", x, NULL)) return NULL;
    if (!training || std == 0 || ag_numel(x) == 0) return pass_through(x);
    ag_tensor *noise = random_like(x, gaussian, std);
    ag_tensor *y = noise ? ag_add(x, noise) : NULL;
    ag_release(noise);
    return y;
}

/* ---- modules ---------------------------------------------------------------------------------------------- */
/* y = dropout(x, p) in training, x in eval */
static ag_tensor *dropout_forward(ag_module *m, ag_tensor *x) {
    const noise_layer *d = ag_module_data(m);
    return ag_dropout(x, d->p, ag_module_is_training(m));
}

static void dropout_describe(const ag_module *m, char *buf, size_t size) {
    const noise_layer *d = ag_module_data(m);
    char p[40];
    snprintf(buf, size, "p=%s, inplace=False", ag__py_float(p, sizeof p, d->p));
}

static const ag_module_type dropout_type = {"Dropout", dropout_forward, dropout_describe, NULL};

/* y = dropout2d(x, p) in training, x in eval */
static ag_tensor *dropout2d_forward(ag_module *m, ag_tensor *x) {
    const noise_layer *d = ag_module_data(m);
    return ag_dropout2d(x, d->p, ag_module_is_training(m));
}

static const ag_module_type dropout2d_type = {"Dropout2d", dropout2d_forward, dropout_describe, NULL};

/* y = x + N(0, std²) in training, x in eval */
static ag_tensor *gaussian_noise_forward(ag_module *m, ag_tensor *x) {
    const noise_layer *d = ag_module_data(m);
    return ag_gaussian_noise(x, d->p, ag_module_is_training(m));
}

static void gaussian_noise_describe(const ag_module *m, char *buf, size_t size) {
    const noise_layer *d = ag_module_data(m);
    char s[40];
    snprintf(buf, size, "std=%s", ag__py_float(s, sizeof s, d->p));
}

static const ag_module_type gaussian_noise_type = {"GaussianNoise", gaussian_noise_forward, gaussian_noise_describe, NULL};

static ag_module *noise_module(const ag_module_type *type, double v) {
    noise_layer *d = ag__alloc(sizeof *d);
    if (!d) return NULL;
    d->p = v;
    return ag_module_new(type, d);
}

ag_module *ag_nn_dropout(double p) {
    if (!(p >= 0 && p <= 1))
        return ag__fail_null(AG_ERR_ARG, "nn.Dropout: dropout probability has to be between 0 and 1, but got %g", p);
    return noise_module(&dropout_type, p);
}

ag_module *ag_nn_dropout2d(double p) {
    if (!(p >= 0 && p <= 1))
        return ag__fail_null(AG_ERR_ARG, "nn.Dropout2d: dropout probability has to be between 0 and 1, but got %g", p);
    return noise_module(&dropout2d_type, p);
}

ag_module *ag_nn_gaussian_noise(double std) {
    if (!(std >= 0) || isinf(std))
        return ag__fail_null(AG_ERR_ARG, "nn.GaussianNoise: std must be finite and non-negative, got %g", std);
    return noise_module(&gaussian_noise_type, std);
}

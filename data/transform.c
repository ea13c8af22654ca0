/*
 * data/transform.c - input transforms: fitted statistics (mean/std, min/max, per
 * feature or global) and the affine maps that use them.  They prepare data,
 * so nothing here is recorded by autograd.  uint8 data (image bytes) is read
 * as it is: its statistics are float32, and the out-of-place maps return
 * float32, as torchvision's ToTensor + Normalize do per batch.
 */
#include <math.h>
#include <string.h>
#include "data/internal.h"
#include "core/iter.h"
#include "agrad/autograd.h"
#include "agrad/ops.h"

/* x may be float32, float64, or uint8 where the result is a new tensor (not in place). */
static ag_status check_data(const char *op, const ag_tensor *x, bool inplace) {
    if (!x) return ag__fail(AG_ERR_ARG, "%s: x is NULL", op);
    if (x->dtype == AG_U8 && inplace)
        return ag__fail(AG_ERR_DTYPE, "%s: uint8 data cannot hold the float result in place; use the out-of-place "
                                      "version, which returns float32", op);
    if (x->dtype != AG_F32 && x->dtype != AG_F64 && x->dtype != AG_U8)
        return ag__fail(AG_ERR_DTYPE, "%s: needs float32, float64 or uint8 data, got %s", op, ag_dtype_name(x->dtype));
    return AG_OK;
}

/* The dtype of statistics of x and of maps of x: float32 for uint8 data. */
static ag_dtype float_of(const ag_tensor *x) { return x->dtype == AG_U8 ? AG_F32 : x->dtype; }

/* Fills a[f], b[f] (F features) with mean/std or min/max over n samples of x's contiguous values. */
static void statistics(const ag_tensor *c, int64_t n, int64_t nf, bool minmax, double *a, double *b) {
    const float *pf = c->dtype == AG_F32 ? (const float *)ag__ptr(c) : NULL;
    const uint8_t *pu = c->dtype == AG_U8 ? (const uint8_t *)ag__ptr(c) : NULL;
    const double *pd = (const double *)ag__ptr(c);
#define AT(i) (pf ? (double)pf[i] : pu ? (double)pu[i] : pd[i])
    if (minmax) {
        for (int64_t f = 0; f < nf; f++) a[f] = b[f] = AT(f);
        for (int64_t i = 1; i < n; i++)
            for (int64_t f = 0; f < nf; f++) {
                double v = AT(i * nf + f);
                if (v < a[f]) a[f] = v;
                if (v > b[f]) b[f] = v;
            }
        return;
    }
    /* Two passes: the mean, then the mean squared deviation from it. */
    for (int64_t f = 0; f < nf; f++) a[f] = b[f] = 0;
    for (int64_t i = 0; i < n; i++)
        for (int64_t f = 0; f < nf; f++) a[f] += AT(i * nf + f);
    for (int64_t f = 0; f < nf; f++) a[f] /= (double)n;
    for (int64_t i = 0; i < n; i++)
        for (int64_t f = 0; f < nf; f++) {
            double d = AT(i * nf + f) - a[f];
            b[f] += d * d;
        }
    for (int64_t f = 0; f < nf; f++) {
        b[f] = sqrt(b[f] / (double)n);
        if (b[f] == 0) b[f] = 1; /* a constant feature maps to 0 */
    }
#undef AT
}

static ag_tensor *stat_tensor(const ag_tensor *x, bool per_feature, const double *v) {
    ag_dtype dt = float_of(x);
    ag_tensor *t = per_feature ? ag__new(dt, x->ndim - 1, x->shape + 1) : ag__new(dt, 0, NULL);
    if (!t) return NULL;
    int64_t nf = ag_numel(t);
    for (int64_t f = 0; f < nf; f++) {
        if (dt == AG_F32) ((float *)ag__ptr(t))[f] = (float)v[f];
        else ((double *)ag__ptr(t))[f] = v[f];
    }
    return t;
}

static ag_status fit(const char *op, ag_tensor *x, bool per_feature, bool minmax, ag_tensor **a, ag_tensor **b) {
    if (a) *a = NULL;
    if (b) *b = NULL;
    AG_CHECK_HANDLES(AG_ERR_ARG, op, x);
    ag_status st = check_data(op, x, false);
    if (st) return st;
    if (!a || !b) return ag__fail(AG_ERR_ARG, "%s: NULL output", op);
    char s[AG_SHAPE_STR];
    if (per_feature && x->ndim == 0) return ag__fail(AG_ERR_SHAPE, "%s: per-feature statistics need a dim 0 of samples, x is 0-d", op);
    int64_t numel = ag_numel(x), n = per_feature ? x->shape[0] : numel;
    if (n == 0) return ag__fail(AG_ERR_VALUE, "%s: x %s has no samples", op, ag__tshape(s, x));
    int64_t nf = numel / n;
    double *va = ag__alloc_n(nf ? nf : 1, 2 * sizeof(double)); /* x may be an expanded view */
    if (!va) return ag__fail(AG_ERR_NOMEM, "%s: out of memory", op);
    double *vb = va + (nf ? nf : 1);
    if ((st = ag_scope_begin())) {
        ag__free(va);
        return st;
    }
    ag_no_grad_begin();
    ag_tensor *c = ag_contiguous(x);
    ag_no_grad_end();
    if (c) statistics(c, n, nf, minmax, va, vb);
    else st = ag_last_status();
    ag_scope_end();
    if (!st) {
        *a = stat_tensor(x, per_feature, va);
        *b = *a ? stat_tensor(x, per_feature, vb) : NULL;
        if (!*b) {
            if (*a && ag_scope_depth() == 0) ag_release(*a);
            *a = NULL;
            st = ag__fail(AG_ERR_NOMEM, "%s: out of memory", op);
        }
    }
    ag__free(va);
    return st;
}

ag_status ag_zscore_fit(ag_tensor *x, bool per_feature, ag_tensor **mean, ag_tensor **std) {
    return fit("zscore_fit", x, per_feature, false, mean, std);
}

ag_status ag_minmax_fit(ag_tensor *x, bool per_feature, ag_tensor **lo, ag_tensor **hi) {
    return fit("minmax_fit", x, per_feature, true, lo, hi);
}

/* s in the dtype of maps of x (s itself when it already is), owned by the current scope. */
static ag_tensor *as_dtype_of(const ag_tensor *x, const ag_tensor *s) {
    return s->dtype == float_of(x) ? (ag_tensor *)s : ag_to_dtype((ag_tensor *)s, float_of(x));
}

/* Runs an affine map y = (x - shift) / div * mul + add with tensor shift and div,
 * on x itself (inplace) or on a new tensor (float32 for uint8 x).  Returns the
 * result, NULL on error. */
static ag_tensor *affine(const char *op, ag_tensor *x, const ag_tensor *shift, const ag_tensor *div, double mul,
                         double add, bool inplace) {
    AG_CHECK_HANDLES(NULL, op, x, shift, div);
    if (!x || !shift || !div) return NULL;
    if (check_data(op, x, inplace) || ag__composite_begin(op)) return NULL;
    ag_no_grad_begin();
    ag_tensor *sh = as_dtype_of(x, shift), *dv = as_dtype_of(x, div), *y = NULL;
    if (sh && dv) {
        if (inplace) y = ag_sub_(x, sh);
        else if (x->dtype == AG_U8) y = ag_sub_(ag_to_dtype(x, AG_F32), sh);
        else y = ag_sub(x, sh);
        y = ag_div_(y, dv);
        if (y && mul != 1) y = ag_mul_scalar_(y, mul);
        if (y && add != 0) y = ag_add_scalar_(y, add);
    }
    ag_no_grad_end();
    ag_tensor *r = ag__composite_end(inplace ? NULL : y); /* in place, y is x: it stays the caller's */
    if (inplace) r = y;
    if (!r && ag_last_status() == AG_OK) ag__fail(AG_ERR_ARG, "%s: failed", op);
    return r;
}

ag_tensor *ag_normalize(ag_tensor *x, ag_tensor *mean, ag_tensor *std) {
    return affine("normalize", x, mean, std, 1, 0, false);
}

ag_tensor *ag_normalize_(ag_tensor *x, const ag_tensor *mean, const ag_tensor *std) {
    return affine("normalize_", x, mean, std, 1, 0, true);
}

/* hi - lo with zeros replaced by ones, in x's dtype, owned by the current scope. */
static ag_tensor *safe_range(const ag_tensor *x, const ag_tensor *lo, const ag_tensor *hi) {
    ag_tensor *r = ag_sub(as_dtype_of(x, hi), as_dtype_of(x, lo));
    return r ? ag_masked_fill(r, ag_eq(r, ag_scalar(0, r->dtype)), 1.0) : NULL;
}

static ag_tensor *minmax(const char *op, ag_tensor *x, const ag_tensor *lo, const ag_tensor *hi, double out_lo,
                         double out_hi, bool inplace) {
    AG_CHECK_HANDLES(NULL, op, x, lo, hi);
    if (!x || !lo || !hi) return NULL;
    if (check_data(op, x, inplace) || ag__composite_begin(op)) return NULL;
    ag_no_grad_begin();
    ag_tensor *range = safe_range(x, lo, hi);
    ag_no_grad_end();
    ag_tensor *y = range ? affine(op, x, lo, range, out_hi - out_lo, out_lo, inplace) : NULL;
    ag_tensor *r = ag__composite_end(inplace ? NULL : y); /* in place, y is x: it stays the caller's */
    return inplace ? y : r;
}

ag_tensor *ag_minmax_scale(ag_tensor *x, ag_tensor *lo, ag_tensor *hi, double out_lo, double out_hi) {
    return minmax("minmax_scale", x, lo, hi, out_lo, out_hi, false);
}

ag_tensor *ag_minmax_scale_(ag_tensor *x, const ag_tensor *lo, const ag_tensor *hi, double out_lo, double out_hi) {
    return minmax("minmax_scale_", x, lo, hi, out_lo, out_hi, true);
}

/* y = (x - in_lo) / (in_hi - in_lo) * (out_hi - out_lo) + out_lo on contiguous t, in double. */
static void rescale_contig(ag_tensor *t, double in_lo, double in_hi, double out_lo, double out_hi) {
    int64_t n = ag_numel(t);
    double span = in_hi - in_lo, out = out_hi - out_lo;
    if (t->dtype == AG_F32) {
        float *p = (float *)ag__ptr(t);
        for (int64_t i = 0; i < n; i++) p[i] = (float)(((double)p[i] - in_lo) / span * out + out_lo);
    } else {
        double *p = (double *)ag__ptr(t);
        for (int64_t i = 0; i < n; i++) p[i] = (p[i] - in_lo) / span * out + out_lo;
    }
}

/* y = lut[x]: uint8 (operand 1) to float32 (operand 0) through a table of the 256 values. */
static void lut_kernel(char **p, const int64_t *s, int64_t n, void *ctx) {
    const float *lut = ctx;
    if (s[0] == 4 && s[1] == 1) {
        float *y = (float *)p[0];
        const uint8_t *x = (const uint8_t *)p[1];
        for (int64_t i = 0; i < n; i++) y[i] = lut[x[i]];
        return;
    }
    for (int64_t i = 0; i < n; i++) *(float *)(p[0] + i * s[0]) = lut[*(const uint8_t *)(p[1] + i * s[1])];
}

/* ag_rescale of uint8 x into a new float32 tensor in one pass: each of the 256 byte
 * values is mapped once, in double, exactly as rescale_contig maps a float32 copy. */
static ag_tensor *rescale_u8(const ag_tensor *x, double in_lo, double in_hi, double out_lo, double out_hi) {
    float lut[256];
    for (int v = 0; v < 256; v++) lut[v] = (float)(((double)v - in_lo) / (in_hi - in_lo) * (out_hi - out_lo) + out_lo);
    ag_tensor *y = ag__new(AG_F32, x->ndim, x->shape);
    if (!y) return NULL;
    ag_iter it;
    ag__iter_init(&it, x->ndim, x->shape);
    ag__iter_add(&it, y);
    ag__iter_add(&it, x);
    ag__iter_run_par(&it, lut_kernel, lut);
    return y;
}

static ag_status check_range(const char *op, double in_lo, double in_hi) {
    if (!(in_hi != in_lo) || !isfinite(in_lo) || !isfinite(in_hi))
        return ag__fail(AG_ERR_ARG, "%s: the input range [%g, %g] must be finite and not empty", op, in_lo, in_hi);
    return AG_OK;
}

ag_tensor *ag_rescale(ag_tensor *x, double in_lo, double in_hi, double out_lo, double out_hi) {
    AG_CHECK_HANDLES(NULL, "rescale", x);
    if (!x) return NULL;
    if (check_data("rescale", x, false) || check_range("rescale", in_lo, in_hi)) return NULL;
    if (x->dtype == AG_U8) return rescale_u8(x, in_lo, in_hi, out_lo, out_hi);
    ag_no_grad_begin();
    ag_tensor *y = ag_clone(x);
    ag_no_grad_end();
    if (y) rescale_contig(y, in_lo, in_hi, out_lo, out_hi);
    return y;
}

ag_tensor *ag_rescale_(ag_tensor *x, double in_lo, double in_hi, double out_lo, double out_hi) {
    AG_CHECK_HANDLES(NULL, "rescale_", x);
    if (!x) return NULL;
    if (check_data("rescale_", x, true) || check_range("rescale_", in_lo, in_hi)) return NULL;
    if (x->requires_grad && ag_is_grad_enabled())
        return ag__fail_null(AG_ERR_GRAPH, "rescale_: x requires grad; rescale it under ag_no_grad_begin()/ag_no_grad_end()");
    if (ag__contig(x)) {
        rescale_contig(x, in_lo, in_hi, out_lo, out_hi);
        ag__bump_version(x);
        return x;
    }
    if (ag__composite_begin("rescale_")) return NULL;
    ag_tensor *y = ag_rescale(x, in_lo, in_hi, out_lo, out_hi);
    ag_no_grad_begin();
    ag_tensor *r = y ? ag_copy_(x, y) : NULL; /* x itself: it stays the caller's */
    ag_no_grad_end();
    ag__composite_end(NULL);
    return r;
}

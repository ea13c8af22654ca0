/*
 * core/draw.c - random tensors from this thread's seeded generator (core/random.c):
 * randint, randperm, bernoulli, normal with tensor mean and std, exponential_
 * (multinomial is in core/sample.c).  The same seed gives the same values; the values are not
 * PyTorch's (another generator), only their distributions are.  None records a
 * gradient (PyTorch's normal gives mean and std zero gradients; bernoulli's and
 * multinomial's are undefined or zero).
 */
#include <math.h>
#include <string.h>
#include "core/iter.h"

/* A uniform integer in [0, n), n > 0, without modulo bias (Lemire's rejection). */
static uint64_t below(uint64_t n) {
    uint64_t limit = -n % n; /* 2^64 mod n */
    for (;;) {
        uint64_t r = ag__rand_u64();
        if (r >= limit) return r % n;
    }
}

ag_tensor *ag_randint(int64_t low, int64_t high, ag_shape shape) {
    const char *op = "randint";
    if (low >= high)
        return ag__fail_null(AG_ERR_VALUE, "%s: expects low < high, got low %lld and high %lld", op, (long long)low,
                             (long long)high);
    if (ag__check_alloc(op, shape.ndim, shape.dim, AG_I64)) return NULL;
    ag_tensor *t = ag__new(AG_I64, shape.ndim, shape.dim);
    if (!t) return NULL;
    /* high - low without signed overflow; the counter-based generator (core/random.c), threads */
    ag__rand_below((int64_t *)ag__ptr(t), ag_numel(t), (uint64_t)low, (uint64_t)high - (uint64_t)low);
    return t;
}

ag_tensor *ag_randperm(int64_t n) {
    const char *op = "randperm";
    if (n < 0) return ag__fail_null(AG_ERR_VALUE, "%s: n must be non-negative, got %lld", op, (long long)n);
    if (ag__check_alloc(op, 1, &n, AG_I64)) return NULL;
    ag_tensor *t = ag__new(AG_I64, 1, &n);
    if (!t) return NULL;
    int64_t *v = (int64_t *)ag__ptr(t);
    for (int64_t k = 0; k < n; k++) v[k] = k;
    for (int64_t k = n - 1; k > 0; k--) { /* Fisher-Yates */
        int64_t j = (int64_t)below((uint64_t)k + 1), s = v[k];
        v[k] = v[j], v[j] = s;
    }
    return t;
}

/* A contiguous float copy of p whose every value lies in [lo, hi] (AG_ERR_VALUE naming op and
 * the first one outside, NaN included); NULL on failure. */
static ag_tensor *checked_values(const char *op, const char *what, const ag_tensor *p, double lo, double hi) {
    if (ag__check_float(op, p, NULL)) return NULL;
    ag_tensor *c = ag__contig_or_copy((ag_tensor *)p);
    if (!c) return NULL;
    int64_t n = ag_numel(c);
    for (int64_t k = 0; k < n; k++) {
        double v = ag__read(c, c->offset + k);
        if (!(v >= lo && v <= hi)) {
            ag__fail(AG_ERR_VALUE, "%s: %s must lie in [%g, %g], got %g", op, what, lo, hi, v);
            ag_release(c);
            return NULL;
        }
    }
    return c;
}

ag_tensor *ag_bernoulli(const ag_tensor *p) {
    AG_CHECK_HANDLES(NULL, "bernoulli", p);
    if (!p) return NULL;
    ag_tensor *c = checked_values("bernoulli", "probabilities", p, 0, 1);
    ag_tensor *y = c ? ag__new(p->dtype, p->ndim, p->shape) : NULL;
    if (y) { /* y = u < p, u uniform on [0, 1) in p's dtype (24 bits in float32, 53 in float64) */
        const int64_t n = ag_numel(y);
        ag__rand_fill(ag__ptr(y), y->dtype, n, false, 0, 1);
        if (y->dtype == AG_F64) {
            double *v = (double *)ag__ptr(y);
            const double *q = (const double *)ag__ptr(c);
            for (int64_t k = 0; k < n; k++) v[k] = v[k] < q[k];
        } else {
            float *v = (float *)ag__ptr(y);
            const float *q = (const float *)ag__ptr(c);
            for (int64_t k = 0; k < n; k++) v[k] = v[k] < q[k];
        }
    }
    ag_release(c);
    return y;
}

ag_tensor *ag_normal_tensor(const ag_tensor *mean, const ag_tensor *std) {
    AG_CHECK_HANDLES(NULL, "normal", mean, std);
    if (!mean || !std) return NULL;
    const char *op = "normal";
    if (ag__check_float(op, mean, std)) return NULL;
    ag_tensor *sc = checked_values(op, "std", std, 0, INFINITY);
    if (!sc) return NULL;
    ag_release(sc);
    int ndim;
    int64_t shape[AG_MAX_DIMS];
    if (ag__broadcast_shape(op, mean, std, &ndim, shape)) return NULL;
    ag_tensor *m = ag__new_unowned(mean->dtype, ndim, shape, false), *s = m ? ag__new_unowned(mean->dtype, ndim, shape, false) : NULL;
    ag_tensor *y = s ? ag__new(mean->dtype, ndim, shape) : NULL;
    if (y) {
        ag__copy_into(m, mean);
        ag__copy_into(s, std);
        const int64_t n = ag_numel(y);
        ag__rand_fill(ag__ptr(y), y->dtype, n, true, 0, 1); /* y = mean + std·z */
        for (int64_t k = 0; k < n; k++)
            ag__write(y, y->offset + k, ag__read(m, m->offset + k) + ag__read(s, s->offset + k) * ag__read(y, y->offset + k));
    }
    ag_release(m), ag_release(s);
    return y;
}

ag_tensor *ag_exponential_(ag_tensor *t, double lambd) {
    AG_CHECK_HANDLES(NULL, "exponential_", t);
    if (!t) return NULL;
    const char *op = "exponential_";
    if (ag__check_float(op, t, NULL)) return NULL;
    if (!(lambd > 0)) return ag__fail_null(AG_ERR_VALUE, "%s: lambd must be positive, got %g", op, lambd);
    if (ag__check_no_internal_overlap(op, t) || ag__check_inference_write(op, t)) return NULL;
    ag_tensor *c = ag__contig(t) ? ag_retain(t) : ag__new_unowned(t->dtype, t->ndim, t->shape, false);
    if (!c) return NULL;
    ag__rand_exponential(ag__ptr(c), c->dtype, ag_numel(c), lambd); /* -ln(1 - u)/λ, u in [0, 1) */
    if (c != t) ag__copy_into(t, c);
    ag_release(c);
    ag__bump_version(t);
    ag__tangent_zero(t);
    return t;
}

/*
 * sample.c - drawing categories from a distribution (torch.multinomial) and
 * the helper text generation uses: one token per row of logits at a
 * temperature, from the top k.  Both draw from this thread's generator
 * (ag_manual_seed), so a seed gives the same samples.  Not differentiable.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "core/internal.h"
#include "agrad/tensor.h"

/* The rows of x (1-D: one row) copied into a new double array [rows·n]; NULL with the error. */
static double *rows_of(const char *op, const ag_tensor *x, int64_t *rows, int64_t *n) {
    int nd = ag_ndim(x);
    if (nd != 1 && nd != 2) {
        char s[AG_SHAPE_STR];
        return ag__fail_null(AG_ERR_SHAPE, "%s: expected a 1-D or 2-D tensor, got shape %s", op,
                             ag__shape_str(s, nd, ag_shape_of(x).dim));
    }
    if (x->dtype != AG_F32 && x->dtype != AG_F64)
        return ag__fail_null(AG_ERR_DTYPE, "%s: expected float32 or float64, got %s", op, ag_dtype_name(x->dtype));
    *n = ag_size(x, -1);
    *rows = nd == 2 ? ag_size(x, 0) : 1;
    if (*n == 0) return ag__fail_null(AG_ERR_SHAPE, "%s: there is no category to draw from (size 0)", op);
    double *v = ag__alloc_n(*rows * *n + 1, sizeof *v);
    if (v && ag_copy_to(x, v, *rows * *n, AG_F64)) {
        ag__free(v);
        return NULL;
    }
    return v;
}

/* The index i with cum[i-1] <= u < cum[i] among the n weights w (sum total > 0), skipping zero weights. */
static int64_t draw(const double *w, int64_t n, double total) {
    double u = ag__rand_uniform() * total, acc = 0;
    int64_t last = -1;
    for (int64_t i = 0; i < n; i++) {
        if (w[i] <= 0) continue;
        acc += w[i];
        last = i;
        if (u < acc) return i;
    }
    return last; /* rounding left u at the very top: the last category with weight */
}

ag_tensor *ag_multinomial(const ag_tensor *probs, int64_t num_samples, bool replacement) {
    AG_CHECK_HANDLES(NULL, "multinomial", probs);
    if (!probs) return NULL;
    if (num_samples <= 0) return ag__fail_null(AG_ERR_ARG, "multinomial: num_samples must be positive, got %lld", (long long)num_samples);
    int64_t rows, n;
    double *w = rows_of("multinomial", probs, &rows, &n);
    if (!w) return NULL;
    if (!replacement && num_samples > n) {
        ag__free(w);
        return ag__fail_null(AG_ERR_ARG, "multinomial: cannot sample n_sample > prob_dist.size(-1) samples without replacement (%lld > %lld)",
                             (long long)num_samples, (long long)n);
    }
    if (ag__numel_checked(2, (int64_t[]){rows, num_samples}) < 0) {
        ag__free(w);
        return ag__fail_null(AG_ERR_SHAPE, "multinomial: %lld x %lld samples are too many", (long long)rows, (long long)num_samples);
    }
    ag_tensor *out = ag_ndim(probs) == 2 ? ag_empty(AG_SHAPE(rows, num_samples), AG_I64) : ag_empty(AG_SHAPE(num_samples), AG_I64);
    if (!out) {
        ag__free(w);
        return NULL;
    }
    int64_t *o = ag_data(out);
    for (int64_t r = 0; r < rows; r++) {
        double *p = w + r * n, total = 0;
        int64_t positive = 0;
        for (int64_t i = 0; i < n; i++) {
            if (!(p[i] >= 0) || isinf(p[i])) {
                ag__free(w);
                ag__discard(out);
                return ag__fail_null(AG_ERR_VALUE, "multinomial: probability tensor contains either inf, nan or element < 0 (row %lld, index %lld)",
                                     (long long)r, (long long)i);
            }
            total += p[i];
            positive += p[i] > 0;
        }
        if (!(total > 0) || (!replacement && positive < num_samples)) {
            ag__free(w);
            ag__discard(out);
            if (!(total > 0))
                return ag__fail_null(AG_ERR_VALUE, "multinomial: invalid multinomial distribution (sum of probabilities <= 0) in row %lld",
                                     (long long)r);
            return ag__fail_null(AG_ERR_VALUE, "multinomial: row %lld has %lld categories of positive probability, fewer than the %lld samples drawn without replacement",
                                 (long long)r, (long long)positive, (long long)num_samples);
        }
        for (int64_t s = 0; s < num_samples; s++) {
            int64_t i = draw(p, n, total);
            o[r * num_samples + s] = i;
            if (!replacement) { /* take the drawn category out */
                total -= p[i];
                p[i] = 0;
                if (!(total > 0)) { /* rounding: recompute from what is left */
                    total = 0;
                    for (int64_t j = 0; j < n; j++) total += p[j];
                }
            }
        }
    }
    ag__free(w);
    return out;
}

/* Sorts doubles descending (for the k-th largest). */
static int descending(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x < y) - (x > y);
}

ag_tensor *ag_sample_logits(const ag_tensor *logits, double temperature, int64_t top_k) {
    AG_CHECK_HANDLES(NULL, "sample_logits", logits);
    if (!logits) return NULL;
    if (!(temperature >= 0) || isinf(temperature))
        return ag__fail_null(AG_ERR_ARG, "sample_logits: temperature must be finite and >= 0, got %g", temperature);
    int64_t rows, n;
    double *v = rows_of("sample_logits", logits, &rows, &n);
    if (!v) return NULL;
    double *sorted = ag__alloc_n(n, sizeof *sorted);
    ag_tensor *out = ag_ndim(logits) == 2 ? ag_empty(AG_SHAPE(rows), AG_I64) : ag_empty(AG_SCALAR_SHAPE, AG_I64);
    if (!sorted || !out) {
        ag__free(v);
        ag__free(sorted);
        ag__discard(out);
        return NULL;
    }
    int64_t *o = ag_data(out), k = top_k > 0 && top_k < n ? top_k : n;
    for (int64_t r = 0; r < rows; r++) {
        double *x = v + r * n, max = -INFINITY;
        int64_t arg = -1;
        for (int64_t i = 0; i < n; i++)
            if (x[i] > max || (arg < 0 && !isnan(x[i]))) max = x[i], arg = i;
        if (arg < 0 || isnan(max) || max == -INFINITY) {
            ag__free(v);
            ag__free(sorted);
            ag__discard(out);
            return ag__fail_null(AG_ERR_VALUE, "sample_logits: row %lld has no finite largest logit", (long long)r);
        }
        if (temperature == 0 || k == 1) { /* greedy: the first largest */
            o[r] = arg;
            continue;
        }
        double cut = -INFINITY;
        if (k < n) { /* keep the logits >= the k-th largest (ties kept, as a top-k mask with >=) */
            memcpy(sorted, x, sizeof *x * (size_t)n);
            qsort(sorted, (size_t)n, sizeof *sorted, descending);
            cut = sorted[k - 1];
        }
        double total = 0;
        for (int64_t i = 0; i < n; i++) {
            x[i] = x[i] >= cut && !isnan(x[i]) ? exp((x[i] - max) / temperature) : 0;
            total += x[i];
        }
        o[r] = draw(x, n, total);
    }
    ag__free(v);
    ag__free(sorted);
    return out;
}

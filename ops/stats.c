/*
 * stats.c - counting and bucketing, not differentiable: searchsorted,
 * bucketize, bincount, histc, unique, unique_consecutive and unique_dim.  Each reads a
 * contiguous copy of its input(s) element by element (as double, or int64 for
 * integer data, so that no int64 loses digits) and writes a new tensor;
 * searchsorted's values are searched over all threads, and unique sorts with the
 * stable (key, index) sort of ops/lanesort.c, one long lane split over threads.  And,
 * composed of sort and gather (so differentiable through them), quantile,
 * nanquantile and nanmedian along a dim; mode (counted here, its values
 * gathered).
 */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include "core/iter.h"
#include "agrad/ops.h"
#include "ops/index.h"
#include "ops/lanesort.h"
#include "core/parallel.h"
#include "core/sum.h"

/* ---- searchsorted, bucketize ------------------------------------------------------------------ */
/* The place of v in seq[0..n) as PyTorch's binary search finds it: the first i with seq[i] >= v
 * (seq[i] > v when right), by plain comparisons (so NaN, which compares false, goes last).
 * BOUNDS(name, T) defines it for the count values v[0..count) against one row seq, all of type
 * T (compared exactly in their own type), written to r.  When the row is sorted without NaN,
 * "seq[i] goes before v" is true for a prefix of the row, whose length every binary search
 * finds alike: then a search of fixed steps without branches (conditional moves); else
 * PyTorch's own probes, whose answer on an unsorted row is the one PyTorch gives.  bound reads
 * any dtypes as double, one value, with PyTorch's probes. */
/* Values searched together in the sorted path, their fixed steps in lockstep: independent chains
 * of loads that overlap (one search is a chain of log2(n) dependent loads and compares), each step
 * a conditional move (gcc 12 emits cmov for 8 and 16; one value at a time it branched: bucketize
 * of [444, 592] over 1036 boundaries, one thread, 17.0 -> 1.7 ms with 8, 1.4 with 16; 32 branched
 * again, 18 ms).  The same comparisons: the same places (session 22). */
#define BOUNDS_GROUP 16
/* "s goes before v" (right: s <= v, else s < v), written as the negation of PyTorch's comparison so that
 * a NaN v goes after every s; `right` is the caller's */
#define GOES_BEFORE(s, v) (right ? !((s) > (v)) : !((s) >= (v)))
#define BOUNDS(name, T)                                                                                  \
    static void name(const T *seq, int64_t n, const T *v, int64_t count, bool right, int64_t *r) {       \
        bool sorted = n == 0 || seq[0] == seq[0];                                                        \
        for (int64_t i = 0; sorted && i + 1 < n; i++) sorted = seq[i] <= seq[i + 1];                     \
        int64_t k = 0;                                                                                   \
        if (sorted && n > 0) /* BOUNDS_GROUP values at a time, their fixed steps in lockstep */        \
            for (; k + BOUNDS_GROUP <= count; k += BOUNDS_GROUP) {                                       \
                int64_t at[BOUNDS_GROUP];                                                                \
                T xs[BOUNDS_GROUP];                                                                      \
                for (int j = 0; j < BOUNDS_GROUP; j++) at[j] = 0, xs[j] = v[k + j];                      \
                for (int64_t len = n; len > 1;) {                                                        \
                    const int64_t half = len / 2;                                                        \
                    for (int j = 0; j < BOUNDS_GROUP; j++)                                               \
                        at[j] += GOES_BEFORE(seq[at[j] + half - 1], xs[j]) ? half : 0; \
                    len -= half;                                                                         \
                }                                                                                        \
                for (int j = 0; j < BOUNDS_GROUP; j++)                                                   \
                    r[k + j] = at[j] + GOES_BEFORE(seq[at[j]], xs[j]);         \
            }                                                                                            \
        for (; k < count; k++) {                                                                         \
            const T x = v[k];                                                                            \
            if (sorted && n > 0) {                                                                       \
                const T *b = seq;                                                                        \
                for (int64_t len = n; len > 1;) {                                                        \
                    const int64_t half = len / 2;                                                        \
                    b += GOES_BEFORE(b[half - 1], x) ? half : 0;                  \
                    len -= half;                                                                         \
                }                                                                                        \
                r[k] = (b - seq) + GOES_BEFORE(b[0], x);                                 \
                continue;                                                                                \
            }                                                                                            \
            int64_t lo = 0, hi = n;                                                                      \
            while (lo < hi) {                                                                            \
                const int64_t mid = lo + (hi - lo) / 2;                                                  \
                if (GOES_BEFORE(seq[mid], x)) lo = mid + 1;                            \
                else hi = mid;                                                                           \
            }                                                                                            \
            r[k] = lo;                                                                                   \
        }                                                                                                \
    }
BOUNDS(bounds_f32, float)
BOUNDS(bounds_f64, double)
BOUNDS(bounds_i64, int64_t)
#undef BOUNDS

static int64_t bound(const ag_tensor *seq, int64_t base, int64_t n, double v, bool right) {
    int64_t lo = 0, hi = n;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        double s = ag__read(seq, base + mid);
        if (GOES_BEFORE(s, v)) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

static ag_tensor *searchsorted_impl(const char *op, const ag_tensor *seq, const ag_tensor *values, bool right) {
    char s1[AG_SHAPE_STR], s2[AG_SHAPE_STR];
    if (seq->dtype == AG_BOOL || values->dtype == AG_BOOL || (seq->dtype == AG_I64) != (values->dtype == AG_I64))
        return ag__fail_null(AG_ERR_DTYPE, "%s: expects float or int64 boundaries and values of the same kind, got %s and %s",
                             op, ag_dtype_name(seq->dtype), ag_dtype_name(values->dtype));
    if (seq->ndim == 0)
        return ag__fail_null(AG_ERR_SHAPE, "%s: the sorted sequence must have at least 1 dim, got shape %s", op,
                             ag__tshape(s1, seq));
    bool lanes = seq->ndim > 1; /* one sorted row per leading position of values */
    bool fits = !lanes || seq->ndim == values->ndim;
    for (int d = 0; fits && lanes && d < seq->ndim - 1; d++) fits = seq->shape[d] == values->shape[d];
    if (!fits)
        return ag__fail_null(AG_ERR_SHAPE, "%s: a sorted sequence %s of 2+ dims needs values with the same leading dims, got %s",
                             op, ag__tshape(s1, seq), ag__tshape(s2, values));
    ag_tensor *sc = ag__contig_or_copy((ag_tensor *)seq), *vc = sc ? ag__contig_or_copy((ag_tensor *)values) : NULL;
    ag_tensor *y = vc ? ag__new(AG_I64, values->ndim, values->shape) : NULL;
    if (y) {
        const int64_t n = seq->shape[seq->ndim - 1], inner = values->ndim ? values->shape[values->ndim - 1] : 1;
        int64_t *r = (int64_t *)ag__ptr(y), count = ag_numel(values);
        const ag_dtype dt = seq->dtype == values->dtype ? seq->dtype : AG_BOOL; /* AG_BOOL: mixed floats */
        const char *sp = ag__ptr(sc), *vp = ag__ptr(vc);
        const int threads = ag__sort_threads(count); /* each value searched alone: split over threads */
AG_PARALLEL(threads, {
            const int t = ag__thread, nt = ag__team;
            const int64_t end = ag__share_start(count, t + 1, nt);
            for (int64_t k = ag__share_start(count, t, nt); k < end;) { /* one row of seq at a time */
                const int64_t row = lanes ? k / inner : 0, stop = lanes && (row + 1) * inner < end ? (row + 1) * inner : end;
                const int64_t base = row * n;
                switch (dt) {
                case AG_F32: bounds_f32((const float *)sp + base, n, (const float *)vp + k, stop - k, right, r + k); break;
                case AG_F64: bounds_f64((const double *)sp + base, n, (const double *)vp + k, stop - k, right, r + k); break;
                case AG_I64: bounds_i64((const int64_t *)sp + base, n, (const int64_t *)vp + k, stop - k, right, r + k); break;
                default:
                    for (int64_t j = k; j < stop; j++) r[j] = bound(sc, sc->offset + base, n, ag__read(vc, vc->offset + j), right);
                    break;
                }
                k = stop;
            }
});
    }
    ag_release(sc), ag_release(vc);
    return y;
}

/* y = the index where each value would be inserted to keep each row sorted;  not differentiable */
static const ag_op op_searchsorted = {.name = "searchsorted",
                                      .math = "y = first i with seq[i] >= v (> v when right);  not differentiable"};
static const ag_op op_bucketize = {.name = "bucketize",
                                   .math = "y = first i with boundaries[i] >= x (> x when right);  not differentiable"};

ag_tensor *ag_searchsorted(const ag_tensor *sorted_sequence, const ag_tensor *values, bool right) {
    AG_CHECK_HANDLES(NULL, "searchsorted", sorted_sequence, values);
    if (!sorted_sequence || !values) return NULL;
    return searchsorted_impl("searchsorted", sorted_sequence, values, right);
}

ag_tensor *ag_bucketize(const ag_tensor *x, const ag_tensor *boundaries, bool right) {
    AG_CHECK_HANDLES(NULL, "bucketize", x, boundaries);
    if (!x || !boundaries) return NULL;
    if (boundaries->ndim != 1) {
        char s[AG_SHAPE_STR];
        return ag__fail_null(AG_ERR_SHAPE, "bucketize: boundaries must be 1-D, got shape %s", ag__tshape(s, boundaries));
    }
    return searchsorted_impl("bucketize", boundaries, x, right);
}

/* ---- bincount, histc -------------------------------------------------------------------------- */
/* y[v] = the number of times v occurs in x (or the sum of weights there);  not differentiable */
static const ag_op op_bincount = {.name = "bincount",
                                  .math = "y[v] = #{k: x[k] = v} (Σ weights[k] there);  not differentiable"};

ag_tensor *ag_bincount(const ag_tensor *x, const ag_tensor *weights, int64_t minlength) {
    AG_CHECK_HANDLES(NULL, "bincount", x, weights);
    if (!x) return NULL;
    const char *op = "bincount";
    char s1[AG_SHAPE_STR], s2[AG_SHAPE_STR];
    if (ag__check_index_dtype(op, x)) return NULL;
    if (x->ndim != 1) return ag__fail_null(AG_ERR_SHAPE, "%s: expects a 1-D input, got shape %s", op, ag__tshape(s1, x));
    if (minlength < 0) return ag__fail_null(AG_ERR_VALUE, "%s: minlength must be non-negative, got %lld", op, (long long)minlength);
    if (weights && ag__check_float(op, weights, NULL)) return NULL;
    if (weights && (weights->ndim != 1 || weights->shape[0] != x->shape[0]))
        return ag__fail_null(AG_ERR_SHAPE, "%s: weights %s must be 1-D with one weight per element of the input %s", op,
                             ag__tshape(s1, weights), ag__tshape(s2, x));
    ag_tensor *xc = ag__contig_or_copy((ag_tensor *)x), *wc = xc && weights ? ag__contig_or_copy((ag_tensor *)weights) : NULL;
    ag_tensor *y = NULL;
    if (xc && (!weights || wc)) {
        const int64_t *v = (const int64_t *)ag__ptr(xc), n = x->shape[0];
        int64_t len = minlength, bad = 0;
        bool negative = false;
        for (int64_t k = 0; k < n; k++) {
            if (v[k] < 0) negative = true, bad = v[k];
            else if (v[k] >= len) len = v[k] == INT64_MAX ? v[k] : v[k] + 1; /* INT64_MAX: too large, refused below */
        }
        if (negative) ag__fail(AG_ERR_VALUE, "%s: the input must hold non-negative values, got %lld", op, (long long)bad);
        else if (!ag__check_alloc(op, 1, &len, weights ? weights->dtype : AG_I64) &&
                 (y = ag__new_zeros(weights ? weights->dtype : AG_I64, 1, &len)))
            for (int64_t k = 0; k < n; k++) {
                if (!weights) ((int64_t *)ag__ptr(y))[v[k]]++;
                else ag__write(y, y->offset + v[k], ag__read(y, y->offset + v[k]) + ag__read(wc, wc->offset + k));
            }
    }
    ag_release(xc), ag_release(wc);
    return y;
}

/* y[b] = the number of x in [min + b·w, min + (b+1)·w), w = (max - min)/bins, max in the last bin;  not differentiable */
static const ag_op op_histc = {.name = "histc",
                               .math = "y[b] = #{x in bin b of [min, max]};  not differentiable"};

/* histc's bins over n values of T at x (contiguous) into cnt[0..bins] (int64, zeroed; cnt[bins]
 * takes the values outside [min, max] and NaN): each block's bins computed first, branch-free (a
 * loop that vectorises: AVX-512 clones, for the float-to-int64 conversions), then counted into four
 * interleaved copies of the counts when they are small (so that a run of one bin is not one chain of
 * increments through memory), summed at the end.  v is in [min, max] (compared in double) when it is
 * in [lo_in, hi_in], the floats of T there.  The bin of v is (int64_t)((v - min) / (max - min) · bins)
 * in T as PyTorch's (float32 for float32), bins - 1 from bins up; a NaN quotient (max - min rounded
 * to 0 or inf in T) counts in bin 0, and no float converts to int out of range. */
#define HISTC_BLOCK 512
#define HISTC_COUNT(T, NEXT)                                                                               \
    AG_VEC_CLONES_512 static void histc_count_##T(const T *x, int64_t n, double min, double max, int64_t bins, \
                                                  int64_t *cnt, int64_t *copies, int ncopies) {            \
        const T lo = (T)min, width = (T)max - (T)min, fbins = (T)bins;                                     \
        const T lo_in = (double)lo < min ? NEXT(lo, (T)INFINITY) : lo;                                     \
        const T hi_in = (double)(T)max > max ? NEXT((T)max, -(T)INFINITY) : (T)max;                        \
        int64_t b[HISTC_BLOCK];                                                                            \
        for (int64_t k0 = 0; k0 < n; k0 += HISTC_BLOCK) {                                                  \
            const int64_t m = n - k0 < HISTC_BLOCK ? n - k0 : HISTC_BLOCK;                                 \
            for (int64_t k = 0; k < m; k++) {                                                              \
                const T v = x[k0 + k], f = (v - lo) / width * fbins;                                       \
                int64_t i = (int64_t)(f >= 0 && f < (T)0x1p63 ? f : 0);                                    \
                i = f >= (T)0x1p63 ? bins - 1 : i;                                                         \
                i = i < bins ? i : bins - 1;                                                               \
                b[k] = v >= lo_in && v <= hi_in ? i : bins;                                                \
            }                                                                                              \
            int64_t k = 0;                                                                                 \
            for (; ncopies == 4 && k + 4 <= m; k += 4) {                                                   \
                copies[b[k]]++;                                                                            \
                copies[(bins + 1) + b[k + 1]]++;                                                           \
                copies[2 * (bins + 1) + b[k + 2]]++;                                                       \
                copies[3 * (bins + 1) + b[k + 3]]++;                                                       \
            }                                                                                              \
            for (; k < m; k++) cnt[b[k]]++;                                                                \
        }                                                                                                  \
        for (int c = 0; c < ncopies; c++)                                                                  \
            for (int64_t i = 0; i <= bins; i++) cnt[i] += copies[c * (bins + 1) + i];                      \
    }
HISTC_COUNT(float, nextafterf)
HISTC_COUNT(double, nextafter)

/* The copies of the counts histc_count keeps apart: four while they are small (4 · 4096 counts). */
#define HISTC_COPIES_MAX_BINS 4096

ag_tensor *ag_histc(const ag_tensor *x, int64_t bins, double min, double max) {
    AG_CHECK_HANDLES(NULL, "histc", x);
    if (!x) return NULL;
    const char *op = "histc";
    if (ag__check_float(op, x, NULL)) return NULL;
    if (bins <= 0) return ag__fail_null(AG_ERR_VALUE, "%s: bins must be > 0, got %lld", op, (long long)bins);
    if (min > max) return ag__fail_null(AG_ERR_VALUE, "%s: max must be larger than min, got min %g and max %g", op, min, max);
    ag_tensor *xc = ag__contig_or_copy((ag_tensor *)x);
    if (!xc) return NULL;
    const int64_t n = ag_numel(x);
    if (min == max && n > 0) { /* the data's range; NaN in it makes the range NaN */
        min = INFINITY, max = -INFINITY;
        for (int64_t k = 0; k < n; k++) {
            double v = ag__read(xc, xc->offset + k);
            if (isnan(v)) {
                min = max = NAN;
                break;
            }
            min = v < min ? v : min;
            max = v > max ? v : max;
        }
    }
    ag_tensor *y = NULL;
    int64_t *cnt = NULL;
    const int ncopies = bins <= HISTC_COPIES_MAX_BINS ? 4 : 0;
    if (!isfinite(min) || !isfinite(max))
        ag__fail(AG_ERR_VALUE, "%s: range of [%g, %g] is not finite", op, min, max);
    else if (!ag__check_alloc(op, 1, &bins, x->dtype) && (y = ag__new_zeros(x->dtype, 1, &bins)) &&
             (cnt = ag__calloc((size_t)(bins + 1) * (1 + ncopies) * sizeof *cnt))) {
        if (min == max) min -= 1, max += 1;
        int64_t *copies = cnt + bins + 1;
        if (x->dtype == AG_F32) histc_count_float((const float *)ag__ptr(xc), n, min, max, bins, cnt, copies, ncopies);
        else histc_count_double((const double *)ag__ptr(xc), n, min, max, bins, cnt, copies, ncopies);
        for (int64_t b = 0; b < bins; b++) ag__write(y, y->offset + b, (double)cnt[b]);
    } else if (y) { /* out of memory */
        ag__discard(y);
        y = NULL;
    }
    ag__free(cnt);
    ag_release(xc);
    return y;
}

/* ---- unique, unique_consecutive --------------------------------------------------------------- */
/* Whether the element at byte address p (dtype) is NaN (integers never are). */
static inline bool nan_at(const char *p, ag_dtype dtype) {
    return dtype == AG_F32 ? isnan(*(const float *)p) : dtype == AG_F64 ? isnan(*(const double *)p) : false;
}

/* Items a and b (of the lane at base) hold equal values as unique groups them: equal keys (one
 * key for -0.0 and 0.0, exact for integers), but each NaN apart. */
static bool same(ag_sort_item a, ag_sort_item b, const char *base, ag_dtype dtype) {
    return a.key == b.key && !nan_at(base + (size_t)a.idx * ag__esize(dtype), dtype);
}

/* y with inv and cnt handed to *inverse and *counts (where asked for) when every one asked for was
 * made; else NULL, what was made discarded (out of memory). */
static ag_tensor *unique_results(ag_tensor *y, ag_tensor *inv, ag_tensor *cnt, ag_tensor **inverse, ag_tensor **counts) {
    if (y && (!counts || cnt) && (!inverse || inv)) {
        if (inverse) *inverse = inv;
        if (counts) *counts = cnt;
        return y;
    }
    if (y) ag__discard(y);
    if (inv) ag__discard(inv);
    if (cnt) ag__discard(cnt);
    return NULL;
}

/* unique's body: the elements of x (row-major) sorted (the stable sort of ops/lanesort.c, NaN last,
 * over all threads for a large x), grouped into runs of equal values; writes the values, and when
 * asked the inverse (x's shape) and the counts. */
static ag_tensor *unique_sorted(const ag_tensor *x, ag_tensor **inverse, ag_tensor **counts) {
    if (inverse) *inverse = NULL;
    if (counts) *counts = NULL;
    const int64_t n = ag_numel(x);
    ag_tensor *xc = ag__contig_or_copy((ag_tensor *)x);
    ag_sort_item *e = xc ? ag__alloc_n(2 * n + 1, sizeof(ag_sort_item)) : NULL;
    int64_t *group = e ? ag__alloc_n(n + 1, sizeof(int64_t)) : NULL;
    ag_tensor *y = NULL, *inv = NULL, *cnt = NULL;
    if (group) {
        const char *base = ag__ptr(xc);
        ag__sort_fill(e, base, x->dtype, n, 1, false);
        const ag_sort_item *s = ag__sort_items_par(e, e + n, n, ag__sort_key_bytes(x->dtype), ag__sort_threads(n));
        int64_t m = 0;
        for (int64_t k = 0; k < n; k++) {
            if (k == 0 || !same(s[k], s[k - 1], base, x->dtype)) m++;
            group[k] = m - 1;
        }
        y = ag__new(x->dtype, 1, &m);
        if (y && counts) cnt = ag__new_zeros(AG_I64, 1, &m);
        if (y && inverse) inv = ag__new(AG_I64, x->ndim, x->shape);
        if (y && (!counts || cnt) && (!inverse || inv)) {
            const size_t es = ag_dtype_size(x->dtype);
            for (int64_t k = 0; k < n; k++) {
                if (k == 0 || group[k] != group[k - 1]) memcpy(ag__ptr(y) + (size_t)group[k] * es, base + (size_t)s[k].idx * es, es);
                if (cnt) ((int64_t *)ag__ptr(cnt))[group[k]]++;
                if (inv) ((int64_t *)ag__ptr(inv))[s[k].idx] = group[k];
            }
        }
        y = unique_results(y, inv, cnt, inverse, counts);
    }
    ag_release(xc);
    ag__free(e), ag__free(group);
    return y;
}

/* unique_consecutive over n values of T at x (contiguous, n >= 1): a value starts a run unless it
 * equals (==) the one before it (so -0.0 joins a run of 0.0, each NaN stands apart, as unique's
 * keys group them).  Pass one counts the runs (a loop that vectorises); pass two, branch-free, writes
 * each run's first value to y, the run of each element to inv and each run's start to cnt, turned
 * into lengths at the end (inv and cnt when not NULL).  Before the last run, an element inside a run
 * writes the slot of the next run, which that run's start then overwrites. */
#define CONSECUTIVE_RUNS(T)                                                                                \
    static int64_t runs_count_##T(const T *x, int64_t n) {                                                 \
        int64_t m = 1;                                                                                     \
        for (int64_t k = 1; k < n; k++) m += !(x[k] == x[k - 1]);                                          \
        return m;                                                                                          \
    }                                                                                                      \
    static void runs_write_##T(const T *x, int64_t n, int64_t m, T *y, int64_t *inv, int64_t *cnt) {        \
        int64_t last = n - 1; /* the start of the last run */                                              \
        while (last > 0 && x[last] == x[last - 1]) last--;                                                 \
        int64_t g = 0;                                                                                     \
        for (int64_t k = 0; k < last; k++) {                                                               \
            const int64_t start = k == 0 || !(x[k] == x[k - 1]);                                           \
            y[g] = x[k];                                                                                   \
            if (cnt) cnt[g] = k;                                                                           \
            g += start;                                                                                    \
            if (inv) inv[k] = g - 1;                                                                       \
        }                                                                                                  \
        y[m - 1] = x[last];                                                                                \
        if (inv)                                                                                           \
            for (int64_t k = last; k < n; k++) inv[k] = m - 1;                                             \
        if (cnt) {                                                                                         \
            cnt[m - 1] = last;                                                                             \
            for (int64_t r = 0; r + 1 < m; r++) cnt[r] = cnt[r + 1] - cnt[r];                              \
            cnt[m - 1] = n - last;                                                                         \
        }                                                                                                  \
    }
CONSECUTIVE_RUNS(float)
CONSECUTIVE_RUNS(double)
CONSECUTIVE_RUNS(int64_t)
CONSECUTIVE_RUNS(uint8_t)

/* unique_consecutive's body: the runs of x's elements (row-major) in one pass of x's dtype (bool and
 * uint8 as bytes). */
static ag_tensor *unique_runs(const ag_tensor *x, ag_tensor **inverse, ag_tensor **counts) {
    const int64_t n = ag_numel(x);
    ag_tensor *xc = ag__contig_or_copy((ag_tensor *)x);
    if (!xc) return NULL;
    const char *base = ag__ptr(xc);
    const ag_dtype dt = x->dtype;
    int64_t m = n == 0       ? 0
              : dt == AG_F32 ? runs_count_float((const float *)base, n)
              : dt == AG_F64 ? runs_count_double((const double *)base, n)
              : dt == AG_I64 ? runs_count_int64_t((const int64_t *)base, n)
                             : runs_count_uint8_t((const uint8_t *)base, n);
    ag_tensor *y = ag__new(dt, 1, &m), *inv = NULL, *cnt = NULL;
    if (y && counts) cnt = ag__new(AG_I64, 1, &m);
    if (y && inverse) inv = ag__new(AG_I64, x->ndim, x->shape);
    if (y && (!counts || cnt) && (!inverse || inv)) {
        int64_t *iv = inv ? (int64_t *)ag__ptr(inv) : NULL, *cv = cnt ? (int64_t *)ag__ptr(cnt) : NULL;
        if (n == 0) {
            /* nothing to write */
        } else if (dt == AG_F32) runs_write_float((const float *)base, n, m, (float *)ag__ptr(y), iv, cv);
        else if (dt == AG_F64) runs_write_double((const double *)base, n, m, (double *)ag__ptr(y), iv, cv);
        else if (dt == AG_I64) runs_write_int64_t((const int64_t *)base, n, m, (int64_t *)ag__ptr(y), iv, cv);
        else runs_write_uint8_t((const uint8_t *)base, n, m, (uint8_t *)ag__ptr(y), iv, cv);
    }
    ag_release(xc);
    return unique_results(y, inv, cnt, inverse, counts);
}

/* y = the distinct values of x, sorted;  not differentiable */
static const ag_op op_unique = {.name = "unique",
                                .math = "y = the distinct values of x, ascending;  not differentiable"};
/* y = x without repeats of a value in a row;  not differentiable */
static const ag_op op_unique_consecutive = {.name = "unique_consecutive",
                                            .math = "y = x with each run of equal values kept once;  "
                                                    "not differentiable"};

ag_tensor *ag_unique(const ag_tensor *x, ag_tensor **inverse, ag_tensor **counts) {
    if (inverse) *inverse = NULL;
    if (counts) *counts = NULL;
    AG_CHECK_HANDLES(NULL, "unique", x);
    if (!x) return NULL;
    return unique_sorted(x, inverse, counts);
}

ag_tensor *ag_unique_consecutive(const ag_tensor *x, ag_tensor **inverse, ag_tensor **counts) {
    if (inverse) *inverse = NULL;
    if (counts) *counts = NULL;
    AG_CHECK_HANDLES(NULL, "unique_consecutive", x);
    if (!x) return NULL;
    return unique_runs(x, inverse, counts);
}

/* ---- unique along a dim: the distinct slices, sorted ----------------------------------------- */
/* The slices of x (contiguous, [outer, n, inner]) along its middle axis, compared element by element
 * in row-major order: by value, NaN last (NaN equal to NaN for the order, unequal for grouping). */
typedef struct slices {
    const ag_tensor *x;
    int64_t outer, n, inner;
    bool integer;
} slices;

/* Element e (row-major over outer and inner) of slice k: as double, or in *iv for integer data. */
static double slice_at(const slices *S, int64_t k, int64_t e, int64_t *iv) {
    const int64_t off = (e / S->inner * S->n + k) * S->inner + e % S->inner;
    if (S->integer) {
        *iv = S->x->dtype == AG_I64 ? ((const int64_t *)ag__ptr(S->x))[off] : ((const uint8_t *)ag__ptr(S->x))[off];
        return 0;
    }
    return ag__read(S->x, S->x->offset + off);
}

/* <0, 0, >0 as slice a orders before, with, after slice b; *equal: whether they group together. */
static int slice_cmp(const slices *S, int64_t a, int64_t b, bool *equal) {
    *equal = true;
    for (int64_t e = 0; e < S->outer * S->inner; e++) {
        int64_t ia = 0, ib = 0;
        double da = slice_at(S, a, e, &ia), db = slice_at(S, b, e, &ib);
        if (S->integer) {
            if (ia != ib) return *equal = false, ia < ib ? -1 : 1;
            continue;
        }
        bool na = isnan(da), nb = isnan(db);
        if (na || nb) *equal = false;
        if (na != nb) return na ? 1 : -1;
        if (!na && da != db) return *equal = false, da < db ? -1 : 1;
    }
    return 0;
}

/* A stable merge sort of the slice numbers p[0..m) by slice_cmp (tmp: m more). */
static void sort_slices(const slices *S, int64_t *p, int64_t *tmp, int64_t m) {
    if (m < 2) return;
    const int64_t h = m / 2;
    sort_slices(S, p, tmp, h), sort_slices(S, p + h, tmp, m - h);
    int64_t i = 0, j = h, o = 0;
    bool eq;
    while (i < h && j < m) tmp[o++] = slice_cmp(S, p[j], p[i], &eq) < 0 ? p[j++] : p[i++];
    while (i < h) tmp[o++] = p[i++];
    while (j < m) tmp[o++] = p[j++];
    memcpy(p, tmp, (size_t)m * sizeof *p);
}

/* y = the distinct slices of x along dim, sorted;  not differentiable */
static const ag_op op_unique_dim = {.name = "unique_dim",
                                    .math = "y = the distinct slices of x along dim, ascending;  not differentiable"};

ag_tensor *ag_unique_dim(const ag_tensor *x, int dim, ag_tensor **inverse, ag_tensor **counts) {
    if (inverse) *inverse = NULL;
    if (counts) *counts = NULL;
    AG_CHECK_HANDLES(NULL, "unique_dim", x);
    if (!x) return NULL;
    const char *op = "unique_dim";
    char s[AG_SHAPE_STR];
    if (x->ndim == 0) return ag__fail_null(AG_ERR_INDEX, "%s: dim %d is out of range for a 0-d tensor", op, dim);
    const int d = ag__dim(op, dim, x->ndim);
    if (d < 0) return NULL;
    slices S = {NULL, 1, x->shape[d], 1, x->dtype == AG_I64 || x->dtype == AG_BOOL || x->dtype == AG_U8};
    for (int k = 0; k < x->ndim; k++) {
        if (k == d) continue;
        if (x->shape[k] == 0 && S.n > 0)
            return ag__fail_null(AG_ERR_SHAPE, "%s: x of shape %s has an empty dim other than dim %d", op, ag__tshape(s, x), dim);
        if (k < d) S.outer *= x->shape[k];
        else S.inner *= x->shape[k];
    }
    ag_tensor *xc = ag__contig_or_copy((ag_tensor *)x);
    int64_t *p = xc ? ag__alloc_n(2 * S.n + 1, sizeof(int64_t)) : NULL, *group = p ? p + S.n : NULL;
    ag_tensor *y = NULL, *inv = NULL, *cnt = NULL;
    if (p) {
        S.x = xc;
        for (int64_t k = 0; k < S.n; k++) p[k] = k;
        sort_slices(&S, p, group, S.n);
        int64_t m = 0;
        bool eq = false;
        for (int64_t k = 0; k < S.n; k++) { /* group[k]: the group of the k-th sorted slice */
            if (k > 0) slice_cmp(&S, p[k], p[k - 1], &eq);
            if (k == 0 || !eq) m++;
            group[k] = m - 1;
        }
        ag_shape ys = ag_shape_of(x);
        ys.dim[d] = m;
        y = ag__new(x->dtype, ys.ndim, ys.dim);
        if (y && counts) cnt = ag__new_zeros(AG_I64, 1, &m);
        if (y && inverse) inv = ag__new(AG_I64, 1, &S.n);
        if (y && (!counts || cnt) && (!inverse || inv)) {
            const size_t row = (size_t)S.inner * ag_dtype_size(x->dtype);
            for (int64_t k = 0; k < S.n; k++) {
                if (k == 0 || group[k] != group[k - 1])
                    for (int64_t o = 0; o < S.outer; o++)
                        memcpy(ag__ptr(y) + (size_t)(o * m + group[k]) * row, ag__ptr(xc) + (size_t)(o * S.n + p[k]) * row, row);
                if (cnt) ((int64_t *)ag__ptr(cnt))[group[k]]++;
                if (inv) ((int64_t *)ag__ptr(inv))[p[k]] = group[k];
            }
            if (inverse) *inverse = inv;
            if (counts) *counts = cnt;
        } else { /* out of memory: drop what was made */
            if (y) ag__discard(y);
            if (inv) ag__discard(inv);
            if (cnt) ag__discard(cnt);
            y = NULL;
        }
    } else if (xc) {
        ag__fail(AG_ERR_NOMEM, "%s: out of memory", op);
    }
    ag_release(xc);
    ag__free(p);
    return y;
}

/* ---- mode: counted in C, its values gathered (a composite: gather's rules differentiate it) ---- */
ag_tensor *ag_mode(ag_tensor *x, int dim, bool keepdim, ag_tensor **indices) {
    if (indices) *indices = NULL;
    AG_CHECK_HANDLES(NULL, "mode", x);
    if (!x) return NULL;
    const char *op = "mode";
    if (ag__check_float(op, x, NULL)) return NULL;
    const int d = ag__dim(op, dim, x->ndim);
    if (d < 0) return NULL;
    char s[AG_SHAPE_STR];
    const int64_t n = x->ndim ? x->shape[d] : 1;
    if (n == 0)
        return ag__fail_null(AG_ERR_SHAPE, "%s: cannot reduce the empty dim %d of a tensor of shape %s", op, dim, ag__tshape(s, x));
    int64_t inner = 1;
    for (int k = d + 1; k < x->ndim; k++) inner *= x->shape[k];
    const int64_t lanes = ag_numel(x) / n;
    ag_shape ps = ag_shape_of(x);
    if (x->ndim) ps.dim[d] = 1;
    if (ag__composite_begin(op)) return NULL;
    ag_tensor *xc = ag__contig_or_copy(x), *idx = xc ? ag_empty(ps, AG_I64) : NULL, *y = NULL;
    /* lanes shared out over threads, each with its own scratch of 2n items */
    int threads = ag__sort_threads(ag_numel(x));
    if (threads > lanes) threads = lanes > 0 ? (int)lanes : 1;
    ag_sort_item *e = idx ? ag__alloc_n(2 * n * threads, sizeof(ag_sort_item)) : NULL;
    if (e) {
        const size_t es = ag__esize(x->dtype);
AG_PARALLEL(threads, {
            const int t = ag__thread, nt = ag__team;
            ag_sort_item *it = e + 2 * n * t;
            for (int64_t lane = ag__share_start(lanes, t, nt); lane < ag__share_start(lanes, t + 1, nt); lane++) {
                const char *base = ag__ptr(xc) + (size_t)(lane / inner * n * inner + lane % inner) * es;
                ag__sort_fill(it, base, x->dtype, n, inner, false);
                /* by value (NaN last, together: one key), then place */
                const ag_sort_item *s = ag__sort_items(it, it + n, n, ag__sort_key_bytes(x->dtype));
                int64_t best = 0, best_count = 0;
                for (int64_t k = 0, run = 0; k < n; k++) { /* a run's place is its last element's */
                    run = k > 0 && s[k].key == s[k - 1].key ? run + 1 : 1;
                    bool ends = k == n - 1 || s[k + 1].key != s[k].key;
                    if (ends && run > best_count) best = s[k].idx, best_count = run; /* the smallest value wins ties */
                }
                ((int64_t *)ag__ptr(idx))[lane] = best;
            }
});
        y = ag_gather(x, d, idx);
        if (y && x->ndim && !keepdim) y = ag_squeeze(y, d), idx = ag_squeeze(idx, d);
        if (y && indices) *indices = ag_keep(idx); /* out of the composite's scope, as its result */
    } else if (idx) {
        ag__fail(AG_ERR_NOMEM, "%s: out of memory", op);
    }
    ag__free(e);
    ag_release(xc);
    return ag__composite_end(y);
}

/* ---- quantile, nanquantile, nanmedian: sort, then gather ---------------------------------------- */
/* Per lane of the sorted tensor s (contiguous, lanes of n along d): the count k of values before
 * the first NaN (all n for quantile, whose lanes holding NaN give NaN), and from it the two
 * places to interpolate between and the weight of the upper one, written into lo, hi (int64)
 * and w (s's dtype), all of s's shape with dim d of size 1. */
static void quantile_places(const ag_tensor *s, int d, double q, ag_quantile_interpolation how, bool ignore_nan,
                            ag_tensor *lo, ag_tensor *hi, ag_tensor *w) {
    const int64_t n = s->shape[d], lanes = n ? ag_numel(s) / n : 0;
    int64_t inner = 1;
    for (int k = d + 1; k < s->ndim; k++) inner *= s->shape[k];
    for (int64_t lane = 0; lane < lanes; lane++) {
        const int64_t outer = lane / inner, in = lane % inner, first = outer * n * inner + in;
        int64_t k = 0; /* values before the first NaN */
        while (k < n && !isnan(ag__read(s, s->offset + first + k * inner))) k++;
        int64_t a, b;
        double weight = 0;
        if (k == 0 || (!ignore_nan && k < n)) {
            a = b = ignore_nan ? (n - 1) / 2 : k; /* a NaN (the middle one when all are, as PyTorch's nanmedian) */
        } else {
            const double rank = q * (double)(k - 1);
            a = (int64_t)floor(rank), b = (int64_t)ceil(rank);
            switch (how) {
            case AG_QUANTILE_LOWER: b = a; break;
            case AG_QUANTILE_HIGHER: a = b; break;
            case AG_QUANTILE_NEAREST: a = b = (int64_t)nearbyint(rank); break; /* half to even, as torch.round */
            case AG_QUANTILE_MIDPOINT: weight = a == b ? 0 : 0.5; break;
            default: weight = rank - (double)a; break;
            }
        }
        ((int64_t *)ag__ptr(lo))[lane] = a;
        ((int64_t *)ag__ptr(hi))[lane] = b;
        ag__write(w, w->offset + lane, weight);
    }
}

/* The shared composite: x's lanes along dim (all of x when dim is NULL) sorted, the q-th quantile
 * interpolated between two gathered places; *indices (if asked) the place of the lower one in x. */
static ag_tensor *quantile_impl(const char *op, ag_tensor *x, double q, const int *dim, bool keepdim,
                                ag_quantile_interpolation how, bool ignore_nan, ag_tensor **indices) {
    if (indices) *indices = NULL;
    if (ag__check_float(op, x, NULL)) return NULL;
    if (!(q >= 0 && q <= 1)) return ag__fail_null(AG_ERR_VALUE, "%s: q must be in the range [0, 1] but got %g", op, q);
    if ((unsigned)how > AG_QUANTILE_MIDPOINT)
        return ag__fail_null(AG_ERR_ARG, "%s: unknown interpolation %d", op, (int)how);
    int d = dim ? ag__dim(op, *dim, x->ndim) : 0;
    if (d < 0) return NULL;
    char s[AG_SHAPE_STR];
    if (dim ? x->ndim && x->shape[d] == 0 : ag_numel(x) == 0)
        return ag__fail_null(AG_ERR_SHAPE, "%s: cannot reduce over an empty %s of a tensor of shape %s", op,
                             dim ? "dim" : "input", ag__tshape(s, x));
    if (ag__composite_begin(op)) return NULL;
    ag_tensor *flat = dim && x->ndim ? x : ag_reshape(x, AG_SHAPE(-1)), *order = NULL;
    ag_tensor *sorted = flat ? ag_sort(flat, d, false, indices ? &order : NULL) : NULL;
    ag_tensor *y = NULL;
    if (sorted) {
        ag_shape ps = ag_shape_of(sorted);
        ps.dim[d] = 1;
        ag_tensor *lo = ag_empty(ps, AG_I64), *hi = ag_empty(ps, AG_I64), *w = ag_empty(ps, x->dtype);
        if (lo && hi && w) {
            quantile_places(sorted, d, q, how, ignore_nan, lo, hi, w);
            ag_tensor *below = ag_gather(sorted, d, lo), *above = ag_gather(sorted, d, hi);
            y = ag_add(below, ag_mul(w, ag_sub(above, below)));
            if (indices && y) *indices = ag_gather(order, d, lo);
        }
    }
    if (y && dim && x->ndim && !keepdim) {
        y = ag_squeeze(y, d);
        if (indices && *indices) *indices = ag_squeeze(*indices, d);
    } else if (y && (!dim || !x->ndim)) { /* one value: 0-d, or x's ndim of ones when keepdim */
        ag_shape one = {keepdim ? x->ndim : 0, {0}};
        for (int k = 0; k < one.ndim; k++) one.dim[k] = 1;
        y = ag_reshape(y, one);
        if (indices && *indices) *indices = ag_reshape(*indices, one);
    }
    if (indices && *indices) *indices = ag_keep(*indices); /* out of the composite's scope, as its result */
    return ag__composite_end(y);
}

ag_tensor *ag_quantile(ag_tensor *x, double q, const int *dim, bool keepdim, ag_quantile_interpolation how) {
    AG_CHECK_HANDLES(NULL, "quantile", x);
    if (!x) return NULL;
    return quantile_impl("quantile", x, q, dim, keepdim, how, false, NULL);
}

ag_tensor *ag_nanquantile(ag_tensor *x, double q, const int *dim, bool keepdim, ag_quantile_interpolation how) {
    AG_CHECK_HANDLES(NULL, "nanquantile", x);
    if (!x) return NULL;
    return quantile_impl("nanquantile", x, q, dim, keepdim, how, true, NULL);
}

ag_tensor *ag_nanmedian_dim(ag_tensor *x, int dim, bool keepdim, ag_tensor **indices) {
    if (indices) *indices = NULL;
    AG_CHECK_HANDLES(NULL, "nanmedian_dim", x);
    if (!x) return NULL;
    return quantile_impl("nanmedian_dim", x, 0.5, &dim, keepdim, AG_QUANTILE_LOWER, true, indices);
}

const ag_op *const ag__stats_ops[] = {&op_searchsorted, &op_bucketize, &op_bincount, &op_histc, &op_unique,
                                      &op_unique_consecutive, &op_unique_dim, NULL};

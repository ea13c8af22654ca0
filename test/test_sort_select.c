#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include "agrad/agrad.h"
#include "ops/lanesort.h"
#include "ops/keyselect.h"
#include "tap.h"
/*
 * test_sort_select.c - the sorting ops against a reference, and against themselves.
 *
 * ops/sort.c selects the first k of a lane with a bounded heap when k is at most an
 * eighth of the lane (O(n log k)) and sorts the whole lane otherwise; both must give
 * the stable sort's values and indices, ties (to the lower index) and NaN included.
 * The sort itself (ops/lanesort.c: an insertion sort for short lanes, a radix sort of
 * sign-folded keys for longer ones, a long lane split over threads) must give the
 * order of a plain comparison sort with ties broken by index, for every length,
 * dtype, direction and stride (the short-lane sorts' switch lengths, 48 without AVX-512, 128 and
 * 160 for the rank sort with it, each side included); so must ag__sort_items for the int64, uint8
 * and bool keys of unique and mode; and every sorting op must give bit-identical results
 * (values, indices, gradients) for any thread count (1, 2 and 3 here), as must unique, mode and
 * searchsorted, which share the sort or split their values over threads.
 */

/* ---- the reference: qsort by (value, index), NaN largest, -0.0 equal to 0.0 ---------------- */
typedef struct ref_item {
    double v;
    int64_t i;
    int descending;
} ref_item;

static int ref_cmp(const void *pa, const void *pb) {
    const ref_item *a = pa, *b = pb;
    int c = 0; /* ascending value order, NaN last */
    if (isnan(a->v) || isnan(b->v)) c = isnan(a->v) - isnan(b->v);
    else c = (a->v > b->v) - (a->v < b->v);
    if (a->descending) c = -c;
    return c ? c : (a->i > b->i) - (a->i < b->i);
}

/* n values with many ties, NaN, ±0 and ±inf (each kind in some of the seeds). */
static void hostile_values(double *v, int64_t n, unsigned seed) {
    srand(seed);
    for (int64_t k = 0; k < n; k++) {
        int r = rand() % 20;
        v[k] = r == 0 ? NAN : r == 1 ? -0.0 : r == 2 ? 0.0 : r == 3 ? INFINITY : r == 4 ? -INFINITY
             : r < 12 ? (double)(rand() % 7 - 3) : (double)rand() / RAND_MAX * 200 - 100;
    }
}

/* Sorts the lane v (n values) by ag_sort of x, whose lane along dim holds them; checks the
 * indices against the reference and the values bitwise against x at those indices. */
static int check_lane(ag_tensor *x, int dim, const double *v, int64_t n, int descending, int64_t lane_at,
                      int64_t lane_step) {
    ag_tensor *idx;
    ag_tensor *y = ag_sort(x, dim, descending, &idx);
    if (!y || !idx) return 1;
    ag_tensor *yc = ag_contiguous(y), *ic = ag_contiguous(idx);
    ref_item *r = malloc(sizeof *r * (size_t)(n + 1));
    for (int64_t k = 0; k < n; k++) r[k] = (ref_item){v[k], k, descending};
    qsort(r, (size_t)n, sizeof *r, ref_cmp);
    const bool f64 = ag_dtype_of(x) == AG_F64;
    int bad = 0;
    for (int64_t k = 0; k < n && !bad; k++) {
        const int64_t at = lane_at + k * lane_step, got = ((const int64_t *)ag_data(ic))[at];
        if (got < 0 || got >= n) {
            bad = 1;
            break;
        }
        double want = f64 ? v[got] : (double)(float)v[got];
        double have = f64 ? ((const double *)ag_data(yc))[at] : ((const float *)ag_data(yc))[at];
        bad = got != r[k].i || (memcmp(&want, &have, sizeof want) && !(isnan(want) && isnan(have)));
    }
    free(r);
    return bad;
}

/* Every length 0..5000 of a set (the insertion/radix switch, one radix digit and more, the
 * thread split), both dtypes and directions, contiguous, along dim 0 of [n, 3] (a stride) and
 * along a transposed view (not contiguous). */
static void test_against_reference(void) {
    static const int64_t lengths[] = {0,   1,   2,   3,   7,   16,  23,  24,   25,   26,   31,   32,   33,  47,
                                      48,  49,  64,  76,  100, 127, 128, 129,  159,  160,  161,  255,  256, 257,
                                      1000, 1024, 4095, 4096, 4097, 5000};
    const int nl = (int)(sizeof lengths / sizeof *lengths);
    int bad = 0, cases = 0;
    double *v = malloc(sizeof *v * 3 * 5000), *col = malloc(sizeof *col * 5000);
    for (int li = 0; li < nl; li++)
        for (int dt = 0; dt < 2; dt++)
            for (int desc = 0; desc < 2; desc++) {
                ag_scope_begin();
                const int64_t n = lengths[li];
                const ag_dtype dtype = dt ? AG_F64 : AG_F32;
                hostile_values(v, 3 * n, (unsigned)(li * 4 + dt * 2 + desc));
                if (dtype == AG_F32)
                    for (int64_t k = 0; k < 3 * n; k++) v[k] = (float)v[k];
                ag_tensor *all = ag_to_dtype(ag_from_data(v, AG_SHAPE(n, 3), AG_F64), dtype);
                for (int64_t k = 0; k < n; k++) col[k] = v[k * 3 + 1];
                /* one lane: column 1 of [n, 3] along dim 0 (stride 3) */
                cases++, bad += check_lane(all, 0, col, n, desc, 1, 3);
                /* contiguous lanes: the same column copied out */
                cases++, bad += check_lane(ag_contiguous(ag_narrow(all, 1, 1, 1)), 0, col, n, desc, 0, 1);
                /* a transposed view [3, n] sorted along dim 1: row 1 is the column */
                cases++, bad += check_lane(ag_transpose(all, 0, 1), 1, col, n, desc, n, 1);
                ag_scope_end();
            }
    free(v), free(col);
    ok(bad == 0, "sort equals a comparison sort with ties by index (NaN, ±0, ±inf, ties; lengths 0..5000, "
                 "float32 and float64, ascending and descending, strided): %d of %d cases differ", bad, cases);
}

/* ---- the item sort for integer keys (unique, mode) ------------------------------------------- */
/* Whether a goes after b: by value (descending: reversed), equal values by index. */
static int int_ref_cmp(const void *pa, const void *pb) {
    const int64_t *a = pa, *b = pb; /* {value, index, descending} */
    int c = (a[0] > b[0]) - (a[0] < b[0]);
    if (a[2]) c = -c;
    return c ? c : (a[1] > b[1]) - (a[1] < b[1]);
}

/* ag__sort_fill and ag__sort_items of int64, uint8 and bool lanes of every length 1..300 (the
 * insertion, rank and radix sorts' switches; uint8 and bool keys, one byte, go to the radix sort
 * after the rank sort's first read), ascending and descending, many ties and int64's extremes,
 * random, in order already (kept as they are) and of one value, against qsort by (value, index);
 * and float32 and float64 lanes of whole numbers with ties (every length of the rank sort's
 * blocks of 16 and 8 keys, session 21). */
static void test_integer_items(void) {
    enum { MAXN = 300 };
    static int64_t v[MAXN], ref[MAXN][3];
    static uint8_t b[MAXN];
    static float f[MAXN];
    static double g[MAXN];
    static ag_sort_item it[2 * MAXN];
    int bad = 0, cases = 0;
    for (int dt = 0; dt < 5; dt++)
        for (int64_t n = 1; n <= MAXN; n++)
            for (int desc = 0; desc < 2; desc++)
                for (int kind = 0; kind < 3; kind++) { /* random, in order already, one value */
                    const ag_dtype dtype = dt == 0 ? AG_I64 : dt == 1 ? AG_U8 : dt == 2 ? AG_BOOL : dt == 3 ? AG_F32 : AG_F64;
                    srand((unsigned)(n * 6 + dt * 2 + desc));
                    for (int64_t k = 0; k < n; k++) {
                        const int r = rand() % 10;
                        v[k] = dt >= 3 ? (r < 6 ? rand() % 5 - 2 : rand() % 2001 - 1000) /* floats: exact */
                             : dt == 2 ? rand() % 2 : dt == 1 ? rand() % (r < 5 ? 4 : 256)
                             : r == 0 ? INT64_MIN : r == 1 ? INT64_MAX : r < 6 ? rand() % 5 - 2
                             : (int64_t)(((uint64_t)rand() << 40 ^ (uint64_t)rand() << 20 ^ (uint64_t)rand()) >> 1) * (rand() % 2 ? 1 : -1);
                        if (kind == 2) v[k] = v[0];
                    }
                    if (kind == 1) { /* the values in their sorted order, ties in index order */
                        for (int64_t k = 0; k < n; k++) ref[k][0] = v[k], ref[k][1] = k, ref[k][2] = desc;
                        qsort(ref, (size_t)n, sizeof *ref, int_ref_cmp);
                        for (int64_t k = 0; k < n; k++) v[k] = ref[k][0];
                    }
                    for (int64_t k = 0; k < n; k++) {
                        b[k] = (uint8_t)v[k], f[k] = (float)v[k], g[k] = (double)v[k];
                        ref[k][0] = v[k], ref[k][1] = k, ref[k][2] = desc;
                    }
                    qsort(ref, (size_t)n, sizeof *ref, int_ref_cmp);
                    const void *src = dt == 0 ? (const void *)v : dt <= 2 ? (const void *)b : dt == 3 ? (const void *)f : (const void *)g;
                    ag__sort_fill(it, src, dtype, n, 1, desc);
                    const ag_sort_item *s = ag__sort_items(it, it + n, n, ag__sort_key_bytes(dtype));
                    int diff = 0;
                    for (int64_t k = 0; k < n; k++) diff |= s[k].idx != ref[k][1];
                    cases++, bad += diff;
                    if (diff && bad < 5)
                        diag("%s n %lld descending %d kind %d: order differs",
                             dt == 0 ? "int64" : dt == 1 ? "uint8" : dt == 2 ? "bool" : dt == 3 ? "float32" : "float64",
                             (long long)n, desc, kind);
                }
    ok(bad == 0, "the item sort of int64, uint8, bool, float32 and float64 keys (lengths 1..300, ascending and descending, ties, "
                 "int64's extremes; random, sorted and constant lanes) equals qsort by (value, index): %d of %d cases differ",
       bad, cases);
}

/* ---- the same results for any thread count -------------------------------------------------- */
/* The bytes of t's values (row-major), appended to buf at *len (a growing malloc'ed buffer). */
static void append(char **buf, size_t *len, ag_tensor *t) {
    if (!t) return;
    size_t bytes = (size_t)ag_numel(t) * ag_dtype_size(ag_dtype_of(t)), at = (*len + 7) / 8 * 8; /* aligned for int64 */
    *buf = realloc(*buf, at + bytes + 1);
    memset(*buf + *len, 0, at - *len);
    ag_copy_to(t, *buf + at, ag_numel(t), ag_dtype_of(t));
    *len = at + bytes;
}

/* Every sorting op's results and sort's gradient on inputs that take every path: many short
 * lanes, a few long ones, one long lane (split over threads), a strided dim, ties and NaN. */
static void run_all(char **buf, size_t *len, ag_dtype dtype) {
    static const int64_t shapes[][2] = {{64, 300}, {3, 9000}, {1, 20000}, {2000, 5}};
    for (int s = 0; s < 4; s++)
        for (int dim = 0; dim < 2; dim++) {
            ag_scope_begin();
            ag_manual_seed(7 + (uint64_t)s);
            ag_tensor *x = ag_floor(ag_mul_scalar(ag_randn(AG_SHAPE(shapes[s][0], shapes[s][1]), dtype), 20));
            x = ag_where(ag_gt(ag_randn(ag_shape_of(x), dtype), ag_scalar(2.5, dtype)), ag_full(AG_SHAPE(1), NAN, dtype), x);
            x = ag_requires_grad_(ag_detach(x), true);
            const int64_t n = shapes[s][dim];
            ag_tensor *i1, *i2, *i3, *i4, *i5, *i6, *inv, *cnt;
            ag_tensor *w = ag_randn(ag_shape_of(x), dtype);
            ag_tensor *sorted = ag_sort(x, dim, dim == 1, &i1);
            ag_backward(ag_sum(ag_mul(sorted, w)));
            append(buf, len, sorted), append(buf, len, i1), append(buf, len, ag_grad(x));
            append(buf, len, ag_argsort(x, dim, dim == 0));
            append(buf, len, ag_topk(x, n / 16 + 1, dim, true, true, &i2)), append(buf, len, i2);
            append(buf, len, ag_topk(x, n / 2 + 1, dim, false, true, &i3)), append(buf, len, i3);
            append(buf, len, ag_kthvalue(x, n / 3 + 1, dim, false, &i4)), append(buf, len, i4);
            append(buf, len, ag_median_dim(x, dim, true, &i5)), append(buf, len, i5);
            append(buf, len, ag_mode(x, dim, false, &i6)), append(buf, len, i6);
            append(buf, len, ag_median(x));
            append(buf, len, ag_unique(x, &inv, &cnt)), append(buf, len, inv), append(buf, len, cnt);
            ag_tensor *seq = ag_sort(ag_reshape(x, AG_SHAPE(-1)), 0, false, NULL);
            append(buf, len, ag_searchsorted(seq, x, dim == 1));
            ag_scope_end();
        }
}

static void test_thread_counts(void) {
    for (int dt = 0; dt < 2; dt++) {
        const ag_dtype dtype = dt ? AG_F64 : AG_F32;
        char *ref = NULL;
        size_t ref_len = 0;
        ag_set_num_threads(1);
        run_all(&ref, &ref_len, dtype);
        int differ = 0;
        static const int counts[] = {2, 3}; /* 3: an odd run out, and two rounds of merges */
        for (int c = 0; c < 2; c++) {
            char *got = NULL;
            size_t got_len = 0;
            ag_set_num_threads(counts[c]);
            run_all(&got, &got_len, dtype);
            if (got_len != ref_len || memcmp(got, ref, ref_len)) differ++, diag("%s, %d threads: results differ", ag_dtype_name(dtype), counts[c]);
            free(got);
        }
        ag_set_num_threads(0);
        ok(ref_len > 0 && differ == 0, "%s: sort, argsort, topk, kthvalue, median, mode, unique, searchsorted and sort's gradient "
                                       "bit-identical with 1, 2 and 3 threads (%zu bytes)", ag_dtype_name(dtype), ref_len);
        free(ref);
    }
}

static int by_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* ---- unique of integer data: the keys of int64 (sign flipped) and of bytes ------------------- */
static int by_int64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static void test_unique_integers(void) {
    enum { N = 6000 };
    static int64_t v[N], sorted[N];
    static uint8_t bytes[N];
    srand(11);
    for (int k = 0; k < N; k++) {
        int r = rand() % 10;
        v[k] = r == 0 ? INT64_MIN : r == 1 ? INT64_MAX : r == 2 ? -1 : (int64_t)(rand() % 2001) - 1000;
        if (r == 3) v[k] *= (int64_t)1 << 40;
        bytes[k] = (uint8_t)(rand() % 256);
    }
    ag_scope_begin();
    int bad = 0;
    for (int kind = 0; kind < 3; kind++) { /* int64, uint8, bool */
        int64_t m = 0;
        for (int k = 0; k < N; k++) sorted[k] = kind == 0 ? v[k] : kind == 1 ? bytes[k] : bytes[k] & 1;
        qsort(sorted, N, sizeof *sorted, by_int64);
        for (int k = 0; k < N; k++)
            if (k == 0 || sorted[k] != sorted[m - 1]) sorted[m++] = sorted[k];
        static uint8_t small[N];
        for (int k = 0; k < N; k++) small[k] = kind == 1 ? bytes[k] : bytes[k] & 1;
        ag_tensor *x = kind == 0 ? ag_from_data(v, AG_SHAPE(N), AG_I64) : ag_from_data(small, AG_SHAPE(N), kind == 1 ? AG_U8 : AG_BOOL);
        ag_tensor *inv, *u = ag_unique(x, &inv, NULL);
        ag_tensor *u64 = u ? ag_to_dtype(u, AG_I64) : NULL, *x64 = ag_to_dtype(x, AG_I64);
        bool fine = u64 && x64 && ag_numel(u64) == m && !memcmp(ag_data(u64), sorted, sizeof *sorted * (size_t)m);
        for (int k = 0; fine && k < N; k++) { /* values[inverse] is x */
            int64_t g = ((const int64_t *)ag_data(inv))[k];
            fine = g >= 0 && g < m && ((const int64_t *)ag_data(u64))[g] == ((const int64_t *)ag_data(x64))[k];
        }
        bad += !fine;
    }
    ag_scope_end();
    ok(bad == 0, "unique of int64 (INT64_MIN, INT64_MAX, ±2^40 multiples), uint8 and bool: ascending distinct values, "
                 "and values[inverse] gives x back (%d of 3 dtypes differ)", bad);
}

/* searchsorted compares int64 exactly: 2^53 + 1 is not 2^53 (as it would be in double). */
static void test_searchsorted_int64(void) {
    ag_scope_begin();
    const int64_t big = (int64_t)1 << 53;
    ag_tensor *seq = ag_from_data((int64_t[]){big, big + 1, big + 2}, AG_SHAPE(3), AG_I64);
    ag_tensor *v = ag_from_data((int64_t[]){big + 1}, AG_SHAPE(1), AG_I64);
    ag_tensor *l = ag_searchsorted(seq, v, false), *r = ag_searchsorted(seq, v, true);
    ok(l && r && ag_item(l) == 1 && ag_item(r) == 2, "searchsorted of int64 2^53 + 1 in [2^53, 2^53 + 1, 2^53 + 2]: "
                                                     "left 1, right 2 (compared as int64, not double)");
    ag_scope_end();
}

/* PyTorch's binary search (the probes of its CPU kernel): the answer on any row, sorted or not. */
static int64_t torch_bound(const double *seq, int64_t n, double v, int right) {
    int64_t lo = 0, hi = n;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (right ? !(seq[mid] > v) : !(seq[mid] >= v)) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

/* searchsorted on sorted rows with ties (its branch-free search) and on rows with NaN at the end
 * or unsorted (PyTorch's probes) equals PyTorch's search, lengths 0..70, float32, float64 and
 * int64, left and right, values between, on and outside the boundaries, and NaN values. */
static void test_searchsorted_rows(void) {
    int bad = 0, cases = 0;
    double seq[70], v[200];
    for (int n = 0; n < 70; n++)
        for (int kind = 0; kind < 3; kind++) /* sorted, NaN at the end, unsorted */
            for (int dt = 0; dt < 3; dt++) {
                ag_scope_begin();
                srand((unsigned)(n * 9 + kind * 3 + dt));
                for (int k = 0; k < n; k++) seq[k] = (double)(rand() % 40) / 2;
                if (kind < 2) qsort(seq, (size_t)n, sizeof *seq, by_double);
                if (kind == 1 && n > 0) seq[n - 1] = NAN;
                for (int k = 0; k < 200; k++) v[k] = k == 0 && dt < 2 ? NAN : (double)(rand() % 90 - 20) / 4;
                const ag_dtype dtype = dt == 0 ? AG_F32 : dt == 1 ? AG_F64 : AG_I64;
                if (dtype == AG_I64) /* whole values only, and no NaN */
                    for (int k = 0; k < n; k++) seq[k] = isnan(seq[k]) ? 99 : floor(seq[k]);
                if (dtype == AG_I64)
                    for (int k = 0; k < 200; k++) v[k] = floor(v[k]);
                ag_tensor *ts = ag_to_dtype(ag_from_data(seq, AG_SHAPE(n), AG_F64), dtype);
                ag_tensor *tv = ag_to_dtype(ag_from_data(v, AG_SHAPE(200), AG_F64), dtype);
                for (int right = 0; right < 2; right++) {
                    ag_tensor *got = ag_contiguous(ag_searchsorted(ts, tv, right));
                    cases++;
                    for (int k = 0; k < 200; k++)
                        if (!got || ((const int64_t *)ag_data(got))[k] != torch_bound(seq, n, v[k], right)) {
                            bad++;
                            break;
                        }
                }
                ag_scope_end();
            }
    ok(bad == 0, "searchsorted equals PyTorch's binary search on sorted rows with ties, rows ending in NaN and "
                 "unsorted rows (lengths 0..69, float32, float64, int64, left and right): %d of %d cases differ", bad, cases);
}

/* ---- one value of all, by keys alone (ops/keyselect.c: median, nanmedian) --------------------- */
/* n values of pattern p: hostile (NaN, ±0, ±inf, ties), ascending, descending, all equal, ±0 only,
 * an organ pipe, three values. */
static void pattern_values(double *v, int64_t n, int p, unsigned seed) {
    if (p == 0) hostile_values(v, n, seed);
    for (int64_t k = 0; k < n && p; k++)
        v[k] = p == 1 ? (double)k * 0.25 - 3 : p == 2 ? 1e3 - (double)k : p == 3 ? -1.5 : p == 4 ? (k * 7 % 3 ? 0.0 : -0.0)
             : p == 5 ? (double)(k < n / 2 ? k : n - k) : (double)(k * 5 % 3);
}

/* ag__select_value (each way: AVX-512 where it runs, the scalar partition, the radix select at
 * once) against the comparison sort by (value, index): the element at rank k, bitwise (±0 as the
 * stable order places them), and ag__select_lane_f32's index (float32 lanes of 48 and more), for lengths around the insertion-sort switch (24) to 70 000, both
 * dtypes, seven patterns, ranks first, last, lower middle, a quarter and one at random. */
static void test_select_value(void) {
    static const int64_t lengths[] = {1, 2, 3, 7, 23, 24, 25, 26, 31, 47, 100, 257, 1000, 4332, 5001, 70001};
    const int nl = (int)(sizeof lengths / sizeof *lengths);
    double *v = malloc(sizeof *v * 70001);
    ref_item *r = malloc(sizeof *r * 70001);
    int bad = 0, cases = 0;
    srand(7);
    for (int li = 0; li < nl; li++)
        for (int dt = 0; dt < 2; dt++)
            for (int p = 0; p < 7; p++) {
                const int64_t n = lengths[li];
                pattern_values(v, n, p, (unsigned)(li * 14 + dt * 7 + p));
                float *f = malloc(sizeof *f * (size_t)n);
                for (int64_t k = 0; k < n; k++) {
                    if (!dt) v[k] = f[k] = (float)v[k];
                    r[k] = (ref_item){v[k], k, 0};
                }
                qsort(r, (size_t)n, sizeof *r, ref_cmp);
                const int64_t ranks[] = {0, n - 1, (n - 1) / 2, n / 4, rand() % n};
                for (int ri = 0; ri < 5; ri++)
                    for (int how = 0; how < 3; how++) {
                        const int64_t k = ranks[ri];
                        double want = v[r[k].i], have = 0;
                        float have32 = 0;
                        ag_status st = ag__select_value(dt ? (const void *)v : f, dt ? AG_F64 : AG_F32, n, k,
                                                        (ag_select_how)how, dt ? (void *)&have : &have32);
                        if (!dt) have = have32;
                        if (!dt && n >= AG_SELECT_LANE_MIN && !bad) { /* a float32 lane's index, key and index packed */
                            uint64_t *buf = malloc(sizeof *buf * (size_t)(3 * (n + 16)));
                            const int64_t i = ag__select_lane_f32(f, n, 1, k, buf);
                            free(buf);
                            if (i != r[k].i) st = AG_ERR_SHAPE, diag("lane select: index %lld, want %lld", (long long)i, (long long)r[k].i);
                        }
                        cases++;
                        if (st || (isnan(want) ? !isnan(have) : memcmp(&want, &have, sizeof want))) {
                            if (bad++ < 5) diag("select n %lld f%d pattern %d rank %lld way %d: %g, want %g", (long long)n,
                                                dt ? 64 : 32, p, (long long)k, how, have, want);
                        }
                    }
                free(f);
            }
    free(v), free(r);
    ok(bad == 0 && cases == 16 * 2 * 7 * 5 * 3, "the value at a rank by keys alone (vector, scalar, radix) and a float32 lane's index equal a comparison sort's by (value, index), bitwise with ±0 "
       "(lengths 1..70001, float32 and float64, ties, NaN, sorted, equal): %d of %d cases differ", bad, cases);
}

/* topk of float32 rows (lengths 8..200: every tail of the heap scan's vectors of 16; k up to an
 * eighth of the row, the bounded heap's case), largest and smallest, against the first k of the
 * stable sort, indices and value bits: rows of -0.0, 0.0, ±1, ±inf and NaN (ties of ±0 and of NaN),
 * rows of positive values only (a zero read past the row's end would win the smallest), rows of
 * random values with ±0 among them (session 21: the AVX-512 scan of contiguous rows). */
static void test_topk_heap_f32(void) {
    static const double pick[] = {-0.0, 0.0, 1, -1, INFINITY, -INFINITY, NAN};
    double v[3 * 200];
    int bad = 0, cases = 0;
    srand(21);
    for (int64_t n = 8; n <= 200; n++)
        for (int p = 0; p < 3; p++) {
            ag_scope_begin();
            for (int64_t j = 0; j < 3 * n; j++)
                v[j] = p == 0 ? pick[rand() % 7] : p == 1 ? 1 + rand() % 5 : rand() % 8 == 0 ? (rand() % 2 ? -0.0 : 0.0)
                                                                          : (double)rand() / RAND_MAX * 20 - 10;
            ag_tensor *x = ag_to_dtype(ag_from_data(v, AG_SHAPE(3, n), AG_F64), AG_F32);
            for (int64_t k = 1; k * 8 <= n; k += 1 + k / 4)
                for (int largest = 0; largest < 2; largest++) {
                    ag_tensor *si, *ti;
                    ag_tensor *sv = ag_sort(x, 1, largest, &si), *tv = ag_topk(x, k, 1, largest, true, &ti);
                    ag_tensor *svk = ag_contiguous(ag_narrow(sv, 1, 0, k)), *sik = ag_contiguous(ag_narrow(si, 1, 0, k));
                    cases++;
                    if (!tv || !ti || !svk || !sik || memcmp(ag_data(svk), ag_data(tv), sizeof(float) * (size_t)(3 * k)) ||
                        memcmp(ag_data(sik), ag_data(ti), sizeof(int64_t) * (size_t)(3 * k))) {
                        if (bad++ < 5) diag("topk n %lld pattern %d k %lld largest %d differs", (long long)n, p, (long long)k, largest);
                    }
                }
            ag_scope_end();
        }
    ok(bad == 0 && cases > 0, "topk of float32 rows (lengths 8..200, k up to n/8, largest and smallest; ±0, ±inf and NaN ties, "
       "positive rows, random) equals the stable sort's first k, indices and value bits: %d of %d cases differ", bad, cases);
}

int main(void) {
    test_against_reference();
    test_select_value();
    test_topk_heap_f32();
    test_integer_items();
    test_searchsorted_rows();
    test_searchsorted_int64();
    test_unique_integers();
    test_thread_counts();
    int bad = 0, cases = 0;
    ag_manual_seed(1);
    for (int trial = 0; trial < 300; trial++) {
        ag_scope_begin();
        int64_t n = trial % 10 ? 8 + trial % 97 : 1000 + trial * 7, rows = 1 + trial % 5;
        ag_tensor *x = ag_floor(ag_mul_scalar(ag_randn(AG_SHAPE(rows, n), trial % 2 ? AG_F64 : AG_F32), 3));
        if (trial % 3 == 0) /* a sixth of the elements NaN */
            x = ag_where(ag_gt(ag_randn(AG_SHAPE(rows, n), ag_dtype_of(x)), ag_scalar(1.5, ag_dtype_of(x))), ag_full(AG_SHAPE(1), NAN, ag_dtype_of(x)), x);
        if (trial % 5 == 4) /* about half the signs flipped: -0.0 among the 0.0s (equal keys) */
            x = ag_where(ag_gt(ag_randn(AG_SHAPE(rows, n), ag_dtype_of(x)), ag_scalar(0, ag_dtype_of(x))), ag_neg(x), x);
        int64_t k = 1 + trial % (n / 8);
        const int d = trial % 4 < 2 ? 1 : 0; /* along dim 0 of the transpose: lanes with a stride */
        if (d == 0) x = ag_contiguous(ag_transpose(x, 0, 1));
        for (int largest = 0; largest < 2; largest++) {
            ag_tensor *si, *ti;
            ag_tensor *sv = ag_sort(x, d, largest, &si);
            ag_tensor *tv = ag_topk(x, k, d, largest, true, &ti);
            ag_tensor *sv_k = ag_narrow(sv, d, 0, k), *si_k = ag_narrow(si, d, 0, k);
            double dv = ag_item(ag_sum(ag_to_dtype(ag_ne(ag_nan_to_num(sv_k, 1e9, 0, 0), ag_nan_to_num(tv, 1e9, 0, 0)), AG_F64)));
            double di = ag_item(ag_sum(ag_to_dtype(ag_ne(si_k, ti), AG_F64)));
            cases++;
            if (dv || di) {
                bad++;
                if (bad < 5) diag("trial %d n %lld k %lld largest %d: %g values, %g indices differ", trial, (long long)n, (long long)k, largest, dv, di);
            }
        }
        ag_tensor *si; ag_tensor *sv = ag_sort(x, d, false, &si);
        /* k small (the heap), any k (a radix select), the median (a radix select, or the first NaN) */
        int64_t nans = (int64_t)ag_item(ag_sum(ag_to_dtype(ag_isnan(ag_select(x, 1 - d, 0)), AG_F64)));
        const int64_t at[3] = {k, 1 + (trial * 37) % n, nans ? n - nans + 1 : (n + 1) / 2};
        for (int c = 0; c < 3; c++) {
            ag_tensor *ki, *kv = c < 2 ? ag_kthvalue(x, at[c], d, false, &ki) : ag_median_dim(ag_narrow(x, 1 - d, 0, 1), d, false, &ki);
            ag_tensor *sp = ag_select(c < 2 ? sv : ag_narrow(sv, 1 - d, 0, 1), d, at[c] - 1), *ip = ag_select(c < 2 ? si : ag_narrow(si, 1 - d, 0, 1), d, at[c] - 1);
            double dv = ag_item(ag_sum(ag_to_dtype(ag_ne(ag_nan_to_num(sp, 1e9, 0, 0), ag_nan_to_num(kv, 1e9, 0, 0)), AG_F64)));
            double di = ag_item(ag_sum(ag_to_dtype(ag_ne(ip, ki), AG_F64)));
            cases++;
            if (dv || di) {
                bad++;
                if (bad < 5) diag("kthvalue/median %d trial %d: %g values, %g indices differ", c, trial, dv, di);
            }
        }
        /* nanmedian of all (a radix select) against nanmedian along the flattened dim (a sort) */
        ag_tensor *all = ag_nanmedian(x), *by_sort = ag_nanmedian_dim(ag_reshape(x, AG_SHAPE(-1)), 0, false, NULL);
        cases++;
        if (!all || !by_sort || !(ag_item(all) == ag_item(by_sort) || (isnan(ag_item(all)) && isnan(ag_item(by_sort))))) {
            bad++;
            if (bad < 5) diag("nanmedian trial %d: %g against %g", trial, ag_item(all), ag_item(by_sort));
        }
        ag_scope_end();
    }
    ok(cases == 1800 && bad == 0, "topk (largest and smallest), kthvalue (small and any k), median along a dim and nanmedian equal the "
                                  "stable sort's values and indices (ties, NaN, ±0, along dim 1 and, strided, dim 0): %d of %d cases differ",
       bad, cases);
    return tap_done();
}

/*
 * var and std along a leading or middle run of dims (core/sqdev.c: x read in rows, the squared
 * deviations of four or eight rows added as a float64 tree into column accumulators) and along the
 * last dims (each row AG_SUM8's sum, eight rows at a time on AVX-512):
 * - ag__sqdev_into into a non-zero acc, against the documented order bit for bit (NaN where the
 *   reference is NaN), float32 and float64, odd sizes, 1 to 3 threads;
 * - their adjoint (ag__var_grad_into) against the iterator kernel's formula, bit for bit;
 * - ag_var_dims / ag_std_dims against a long double two-pass reference within the bound
 *   core/sqdev.c states, rows 1..2049, constant columns exactly 0, NaN and inf columns NaN,
 *   correction 0 and 1, keepdim, the same bits on 1, 2 and 3 threads.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "agrad/agrad.h"
#include "core/internal.h"
#include "core/sqdev.h"
#include "core/sum.h"
#include "tap.h"

static double elem(const void *x, ag_dtype dt, int64_t i) { return dt == AG_F64 ? ((const double *)x)[i] : (double)((const float *)x)[i]; }
static void set_elem(void *x, ag_dtype dt, int64_t i, double v) {
    if (dt == AG_F64) ((double *)x)[i] = v;
    else ((float *)x)[i] = (float)v;
}
static double sqd(double v, double m) { return (v - m) * (v - m); }

/* Same bits, or both NaN (the NaN's sign and payload depend on the operands' order in the vector code) */
static bool same_or_nan(double a, double b) { return (isnan(a) && isnan(b)) || memcmp(&a, &b, sizeof a) == 0; }

/* The documented order of a column (x as [R, C], column c, mean m): from acc0, where C >= 256 eight rows
 * at a time as ((d0² + d1²) + (d2² + d3²)) + ((d4² + d5²) + (d6² + d7²)), then four rows at a time as
 * ((d0² + d1²) + (d2² + d3²)), the rows past the last four one by one. */
static double ref_column(const void *x, ag_dtype dt, int64_t R, int64_t C, int64_t c, double m, double acc0) {
    double acc = acc0;
    int64_t r = 0;
    for (; C >= 256 && r + 8 <= R; r += 8)
        acc += ((sqd(elem(x, dt, r * C + c), m) + sqd(elem(x, dt, (r + 1) * C + c), m)) +
                (sqd(elem(x, dt, (r + 2) * C + c), m) + sqd(elem(x, dt, (r + 3) * C + c), m))) +
               ((sqd(elem(x, dt, (r + 4) * C + c), m) + sqd(elem(x, dt, (r + 5) * C + c), m)) +
                (sqd(elem(x, dt, (r + 6) * C + c), m) + sqd(elem(x, dt, (r + 7) * C + c), m)));
    for (; r + 4 <= R; r += 4)
        acc += (sqd(elem(x, dt, r * C + c), m) + sqd(elem(x, dt, (r + 1) * C + c), m)) +
               (sqd(elem(x, dt, (r + 2) * C + c), m) + sqd(elem(x, dt, (r + 3) * C + c), m));
    for (; r < R; r++) acc += sqd(elem(x, dt, r * C + c), m);
    return acc;
}

/* The documented order of a row (R values at x + off, mean m): AG_SUM8's */
static double ref_row(const void *x, ag_dtype dt, int64_t off, int64_t R, double m) {
    double s;
    AG_SUM8(s, R, i, sqd(elem(x, dt, off + i), m));
    return s;
}

/* The documented order of a narrow column (x as [R, C], C < 8, column c, mean m): from acc0, chunks of
 * 32·⌊1024 / C⌋ rows, each chunk's sum added in turn: 0 + s[c] + s[c + C] + ... over the positions p = c
 * mod C of a block of eight rows (8·C elements), s[p] the sum of its four-block trees ((d0² + d1²) + (d2² +
 * d3²)) over the chunk's groups of 32 rows, then the chunk's rows past its last group one by one. */
static double ref_narrow(const void *x, ag_dtype dt, int64_t off, int64_t R, int64_t C, int64_t c, double m, double acc0) {
    const int64_t CH = 32 * (1024 / C), P = 8 * C;
    double acc = acc0;
    for (int64_t r0 = 0; r0 < R; r0 += CH) {
        const int64_t rows = R - r0 < CH ? R - r0 : CH, groups = rows / 32 * 32;
        double part = 0;
        for (int64_t p = c; p < P; p += C) {
            double sp = 0;
            for (int64_t g = 0; g < groups; g += 32) {
                const int64_t b = off + (r0 + g) * C + p;
                sp += (sqd(elem(x, dt, b), m) + sqd(elem(x, dt, b + P), m)) + (sqd(elem(x, dt, b + 2 * P), m) + sqd(elem(x, dt, b + 3 * P), m));
            }
            part += sp;
        }
        for (int64_t r = r0 + groups; r < r0 + rows; r++) part += sqd(elem(x, dt, off + r * C + c), m);
        acc += part;
    }
    return acc;
}

/* Column c of the [R, C] slab at element off in the order of its kernel: rows (C = 1, and not a full sum),
 * columns (C >= 8) or narrow, from acc0 */
static double ref_slab(const void *x, ag_dtype dt, int64_t off, int64_t R, int64_t C, int64_t c, double m, double acc0, bool full) {
    if (C >= 8) return ref_column((const char *)x + off * (dt == AG_F64 ? 8 : 4), dt, R, C, c, m, acc0);
    if (C == 1 && !full) return acc0 + ref_row(x, dt, off, R, m);
    return ref_narrow(x, dt, off, R, C, c, m, acc0);
}

/* Fills x (n values) with normal values of exponents -20..20, some NaN and inf at fixed places */
static void fill(void *x, ag_dtype dt, int64_t n, bool specials) {
    for (int64_t i = 0; i < n; i++) {
        const int e = (int)(i * 7919 % 41) - 20;
        set_elem(x, dt, i, ldexp(elem(x, dt, i), e));
        if (specials && i % 211 == 5) set_elem(x, dt, i, NAN);
        if (specials && i % 307 == 11) set_elem(x, dt, i, i % 2 ? INFINITY : -INFINITY);
    }
}

static void test_sqdev_bits(void) {
    ag_scope_begin();
    ag_manual_seed(2222);
    const int saved = ag_get_num_threads();
    static const int64_t rows[] = {1, 2, 3, 4, 5, 7, 8, 9, 64, 67, 257, 1049};
    static const int64_t cols[] = {8, 9, 17, 100, 256, 300};
    static const int64_t lens[] = {1, 7, 8, 9, 15, 16, 17, 64, 1001};
    static const int64_t nrows_of[] = {2, 3, 5, 8, 9, 13, 17};
    bool taken = true, same = true;
    long long calls = 0, outs = 0;
    for (int dt = 0; dt < 2; dt++) {
        const ag_dtype dtype = dt ? AG_F64 : AG_F32;
        /* columns: x [A, R, C] over R */
        for (int ri = 0; ri < 12; ri++)
            for (int ci = 0; ci < 6; ci++)
                for (int64_t A = 1; A <= 3; A += 2) {
                    const int64_t R = rows[ri], C = cols[ci];
                    ag_scope_begin();
                    ag_tensor *x = ag_randn(AG_SHAPE(A, R, C), dtype);
                    void *xp = x ? ag_data(x) : NULL;
                    if (xp) fill(xp, dtype, A * R * C, ri % 2 == 1);
                    ag_tensor *mean = ag_zeros(AG_SHAPE(A, 1, C), AG_F64);
                    double *mp = mean ? ag_data(mean) : NULL;
                    for (int64_t k = 0; mp && xp && k < A * C; k++)
                        mp[k] = elem(xp, dtype, (k / C) * R * C + k % C) * 0.75 + 0.125;
                    for (int threads = 1; mp && xp && threads <= 3; threads++) {
                        ag_set_num_threads(threads);
                        ag_tensor *acc = ag_zeros(AG_SHAPE(A, 1, C), AG_F64);
                        double *ap = acc ? ag_data(acc) : NULL;
                        for (int64_t k = 0; ap && k < A * C; k++) ap[k] = 1e3 * (double)(k % 7 + 1) / 3;
                        if (!ap || !ag__sqdev_into(acc, x, mean)) {
                            taken = false;
                            continue;
                        }
                        calls++;
                        for (int64_t a = 0; a < A; a++)
                            for (int64_t c = 0; c < C; c++, outs++) {
                                const double want = ref_column((const char *)xp + a * R * C * (dt ? 8 : 4), dtype, R, C, c, mp[a * C + c],
                                                               1e3 * (double)((a * C + c) % 7 + 1) / 3);
                                same &= same_or_nan(ap[a * C + c], want);
                            }
                    }
                    ag_scope_end();
                }
        /* rows: x [A, R] over R */
        for (int li = 0; li < 9; li++)
            for (int ai = 0; ai < 7; ai++) {
                const int64_t R = lens[li], A = nrows_of[ai];
                ag_scope_begin();
                ag_tensor *x = ag_randn(AG_SHAPE(A, R), dtype);
                void *xp = x ? ag_data(x) : NULL;
                if (xp) fill(xp, dtype, A * R, li % 2 == 1);
                ag_tensor *mean = ag_zeros(AG_SHAPE(A, 1), AG_F64);
                double *mp = mean ? ag_data(mean) : NULL;
                for (int64_t a = 0; mp && xp && a < A; a++) mp[a] = elem(xp, dtype, a * R) * 0.75 - 0.25;
                for (int threads = 1; mp && xp && threads <= 3; threads++) {
                    ag_set_num_threads(threads);
                    ag_tensor *acc = ag_zeros(AG_SHAPE(A, 1), AG_F64);
                    double *ap = acc ? ag_data(acc) : NULL;
                    for (int64_t a = 0; ap && a < A; a++) ap[a] = 1e3 * (double)(a % 5 + 1) / 7;
                    if (!ap || !ag__sqdev_into(acc, x, mean)) {
                        taken = false;
                        continue;
                    }
                    calls++;
                    for (int64_t a = 0; a < A; a++, outs++)
                        same &= same_or_nan(ap[a], 1e3 * (double)(a % 5 + 1) / 7 + ref_row(xp, dtype, a * R, R, mp[a]));
                }
                ag_scope_end();
            }
    }
    ag_set_num_threads(saved);
    ok(taken && calls == 2 * 3 * (12 * 6 * 2 + 9 * 7), "ag__sqdev_into takes every [A, R, C] (C >= 8) and [A, R] (A > 1) geometry (%lld calls)", calls);
    ok(same, "squared deviations into a non-zero acc, %lld outputs, columns of 1-1049 rows and rows of 1-1001, float32 and "
       "float64, NaN and inf among them, 1-3 threads: the documented order's bits", outs);
    ag_scope_end();
}

/* ag__sqdev_into's narrow columns (C < 8), full sums and several runs of dims, into a non-zero acc, against
 * the documented order: x [K, S, A, R, C] summed over S and R (each output's S slabs in order, each slab by
 * its kernel), or a full sum of x [R] (full); 1 to 3 threads (chunks shared out where there are few outputs). */
static void test_sqdev_slabs(void) {
    ag_scope_begin();
    ag_manual_seed(2225);
    const int saved = ag_get_num_threads();
    static const int64_t cases[][5] = {
        /* narrow: K = S = 1 */
        {1, 1, 1, 1, 2}, {1, 1, 1, 31, 3}, {1, 1, 3, 32, 5}, {1, 1, 1, 33, 7}, {1, 1, 3, 100, 2}, {1, 1, 1, 10913, 3},
        {1, 1, 2, 25000, 7}, {1, 1, 1, 4700, 7}, {1, 1, 5, 64, 6}, {1, 1, 2, 16385, 4},
        /* several runs (A >= 2) */
        {1, 3, 4, 9, 1}, {2, 3, 5, 17, 1}, {1, 4, 3, 33, 3}, {3, 2, 2, 40, 7}, {1, 3, 2, 9, 16}, {2, 2, 3, 10, 300},
        {2, 5, 9, 64, 1}, {3, 1, 2, 7, 1}, {2, 3, 2, 11000, 2}};
    static const int64_t full[] = {1, 7, 32, 33, 1000, 32768, 32769, 100003};
    const int ncases = (int)(sizeof cases / sizeof cases[0]), nfull = (int)(sizeof full / sizeof full[0]);
    bool taken = true, same = true;
    long long outs = 0;
    for (int dt = 0; dt < 2; dt++)
        for (int ci = 0; ci < ncases + nfull; ci++) {
            const ag_dtype dtype = dt ? AG_F64 : AG_F32;
            const bool is_full = ci >= ncases;
            const int64_t K = is_full ? 1 : cases[ci][0], S = is_full ? 1 : cases[ci][1], A = is_full ? 1 : cases[ci][2];
            const int64_t R = is_full ? full[ci - ncases] : cases[ci][3], C = is_full ? 1 : cases[ci][4], n = K * S * A * R * C;
            ag_scope_begin();
            ag_tensor *x = is_full ? ag_randn(AG_SHAPE(R), dtype) : ag_randn(AG_SHAPE(K, S, A, R, C), dtype);
            void *xp = x ? ag_data(x) : NULL;
            if (xp) fill(xp, dtype, n, ci % 2 == 1);
            const ag_shape oshape = is_full ? AG_SHAPE(1) : AG_SHAPE(K, 1, A, 1, C);
            ag_tensor *mean = ag_zeros(oshape, AG_F64);
            double *mp = mean ? ag_data(mean) : NULL;
            for (int64_t u = 0; mp && xp && u < K * A * C; u++) mp[u] = elem(xp, dtype, u * 7 % n) * 0.75 + 0.125;
            for (int threads = 1; mp && xp && threads <= 3; threads++) {
                ag_set_num_threads(threads);
                ag_tensor *acc = ag_zeros(oshape, AG_F64);
                double *ap = acc ? ag_data(acc) : NULL;
                for (int64_t u = 0; ap && u < K * A * C; u++) ap[u] = 1e3 * (double)(u % 7 + 1) / 3;
                if (!ap || !ag__sqdev_into(acc, x, mean)) {
                    taken = false;
                    continue;
                }
                for (int64_t k = 0; k < K; k++)
                    for (int64_t a = 0; a < A; a++)
                        for (int64_t c = 0; c < C; c++, outs++) {
                            const int64_t u = (k * A + a) * C + c;
                            double want = 1e3 * (double)(u % 7 + 1) / 3;
                            for (int64_t sl = 0; sl < S; sl++)
                                want = ref_slab(xp, dtype, ((k * S + sl) * A + a) * R * C, R, C, c, mp[u], want, is_full);
                            same &= same_or_nan(ap[u], want);
                        }
            }
            ag_scope_end();
        }
    ag_set_num_threads(saved);
    ok(taken, "ag__sqdev_into takes narrow columns, full sums and several runs of dims");
    ok(same, "squared deviations of narrow columns (2-7, chunks of 32·⌊1024/C⌋ rows), full sums of 1-100003 and "
       "[K, S, A, R, C] over S and R (rows, narrow and wide columns), %lld outputs, float32 and float64, NaN and inf "
       "among them, 1-3 threads: the documented order's bits", outs);
    ag_scope_end();
}

/* var (or std) of each column of x [A, R, C] over R in long double, two passes, divided by
 * max(R - correction, 0) (0/0 NaN); bound[k]: the allowed |y - ref| of the float64 result before
 * its rounding (see core/sqdev.c): ((R + 4)·2^-53 relative, for the sum and the terms' roundings)
 * + R·δ²/divisor for the mean's error δ (float32 columns of 64 rows or more: float32 trees, 3·2^-24
 * of Σ|x|/R; otherwise (R + 4)·2^-53 of it). */
static void ref_var(const void *x, ag_dtype dt, int64_t A, int64_t R, int64_t C, int corr, long double *ref, double *bound) {
    for (int64_t a = 0; a < A; a++)
        for (int64_t c = 0; c < C; c++) {
            long double s = 0, sabs = 0, q = 0;
            for (int64_t r = 0; r < R; r++) {
                const long double v = elem(x, dt, (a * R + r) * C + c);
                s += v;
                sabs += fabsl(v);
            }
            const long double m = s / (long double)R;
            for (int64_t r = 0; r < R; r++) {
                const long double d = (long double)elem(x, dt, (a * R + r) * C + c) - m;
                q += d * d;
            }
            const int64_t div = R > corr ? R - corr : 0;
            ref[a * C + c] = q / (long double)div;
            const double delta = (dt == AG_F32 && R >= 64 ? 3 * 0x1p-24 : (double)(R + 4) * 0x1p-53) * (double)(sabs / (long double)R);
            bound[a * C + c] = ((double)(R + 4) * 0x1p-53 * (double)q + (double)R * delta * delta) / (double)div;
        }
}

/* Whether got (var, or std when is_std) is within its bound of the long double reference want: bound is the
 * float64 bound on Σ(x - mean)²/div (halved by std's square root, plus its rounding), plus the result's own rounding
 * in the element type; *worst keeps the largest error / tolerance seen. */
static bool within_bound(double got, long double want, double bound, bool is_std, bool f64, double *worst) {
    const double b64 = is_std ? (want > 0 ? bound / (2 * (double)want) : sqrt(bound)) + 0x1p-53 * (double)want : bound;
    const double tol = (f64 ? 0x1p-53 : 0x1p-24) * (double)want * (1 + 0x1p-20) + b64 * (1 + 0x1p-20);
    const double err = fabs((double)((long double)got - want));
    if (tol > 0 && err / tol > *worst) *worst = err / tol;
    return err <= tol;
}

static void test_var_bound(void) {
    ag_scope_begin();
    ag_manual_seed(2223);
    const int saved = ag_get_num_threads();
    static const int64_t rows[] = {1, 2, 3, 5, 8, 63, 64, 65, 257, 1000, 2049};
    static const int64_t cols[] = {1, 3, 17, 129};
    bool within = true, special = true, threads_same = true, shapes = true;
    long long outs = 0;
    double worst = 0;
    long double ref[3 * 2049];
    double bound[3 * 2049];
    for (int dt = 0; dt < 2; dt++)
        for (int ri = 0; ri < 11; ri++)
            for (int ci = 0; ci < 4; ci++)
                for (int64_t A = 1; A <= 3; A += 2) {
                    const ag_dtype dtype = dt ? AG_F64 : AG_F32;
                    const int64_t R = rows[ri], C = cols[ci];
                    if (C == 1 && A == 1) continue;
                    ag_scope_begin();
                    /* C == 1: x [A, R] over its last dim (rows); else [A, R, C] (or [R, C]) over R */
                    ag_tensor *x = ag_randn(C == 1 ? AG_SHAPE(A, R) : A == 1 ? AG_SHAPE(R, C) : AG_SHAPE(A, R, C), dtype);
                    void *xp = x ? ag_data(x) : NULL;
                    for (int64_t a = 0; xp && a < A; a++)
                        for (int64_t r = 0; r < R; r++)
                            for (int64_t c = 0; c < C; c++) {
                                const int64_t i = (a * R + r) * C + c, col = a * C + c;
                                double v = elem(xp, dtype, i) * ldexp(1, (int)(col % 9) - 4) + (col % 3 == 1 ? 1000.0 : 0.0);
                                if (col % 5 == 2) v = (double)3.7f; /* a constant column whose sum is exact: exactly 0 */
                                if (col % 7 == 3 && r == R / 2) v = NAN;
                                if (col % 11 == 4 && r == R - 1) v = INFINITY;
                                set_elem(xp, dtype, i, v);
                            }
                    const int dim = C == 1 ? 1 : A == 1 ? 0 : 1;
                    for (int corr = 0; xp && corr <= 1; corr++) {
                        ref_var(xp, dtype, A, R, C, corr, ref, bound);
                        for (int is_std = 0; is_std <= 1; is_std++)
                            for (int keep = 0; keep <= 1; keep++) {
                                ag_tensor *y[3] = {NULL, NULL, NULL};
                                for (int t = 0; t < 3; t++) {
                                    ag_set_num_threads(t + 1);
                                    y[t] = is_std ? ag_std_dims(x, 1, &dim, corr, keep) : ag_var_dims(x, 1, &dim, corr, keep);
                                }
                                if (!y[0] || !y[1] || !y[2]) {
                                    shapes = false;
                                    continue;
                                }
                                const int want_ndim = (C == 1 || A == 1 ? 2 : 3) - !keep;
                                shapes &= ag_ndim(y[0]) == want_ndim && ag_numel(y[0]) == A * C;
                                const void *yp[3] = {ag_data(y[0]), ag_data(y[1]), ag_data(y[2])};
                                for (int t = 1; t < 3; t++) threads_same &= memcmp(yp[0], yp[t], (size_t)(A * C) * (dt ? 8 : 4)) == 0;
                                for (int64_t k = 0; k < A * C; k++, outs++) {
                                    const double got = elem(yp[0], dtype, k);
                                    const long double want = is_std ? sqrtl(ref[k]) : ref[k];
                                    if (isnan((double)want) || isinf((double)want)) {
                                        special &= isnan((double)want) ? isnan(got) : got == (double)want;
                                        continue;
                                    }
                                    if (k % 5 == 2) special &= got == 0; /* constant column */
                                    within &= within_bound(got, want, bound[k], is_std, dt, &worst);
                                }
                            }
                    }
                    ag_scope_end();
                }
    ag_set_num_threads(saved);
    ok(shapes, "var_dims / std_dims give their shapes, keepdim or not");
    ok(within, "var and std over a leading or middle dim and over the last dim, %lld outputs (float32 and float64, rows 1-2049, "
       "correction 0/1, offsets of 1000, 1/16 to 16 scales): within the two-pass long double reference's bound (worst %.3g of it)", outs, worst);
    ok(special, "constant columns give exactly 0, NaN and inf columns NaN (n <= correction: NaN or inf, as the reference)");
    ok(threads_same, "the same bits on 1, 2 and 3 threads");
    ag_scope_end();
}

/* var and std over several runs of dims (x [K, S, A, R, C] over S and R: the mean slab by slab,
 * ag__sum_slabs_into, and the deviations by ag__sqdev_into) and over all elements (x [R]), against a
 * long double two-pass reference within the bound above with N = S·R terms (the mean's error δ: float32
 * 3·2^-24 of Σ|x|/N, its sums' float32 pairs; float64 (N + 4)·2^-53 of it), the same bits on 1-3 threads */
static void test_var_bound_slabs(void) {
    ag_scope_begin();
    ag_manual_seed(2226);
    const int saved = ag_get_num_threads();
    static const int64_t cases[][5] = {{2, 3, 4, 9, 1}, {1, 4, 3, 33, 3}, {3, 2, 2, 40, 7}, {2, 3, 2, 9, 16}, {1, 5, 3, 70, 2},
                                       {2, 2, 2, 300, 1}, {1, 1, 1, 2, 1}, {1, 1, 1, 33, 1}, {1, 1, 1, 1000, 1}, {1, 1, 1, 40000, 1}};
    const int ncases = (int)(sizeof cases / sizeof cases[0]);
    static const int dims[2] = {1, 3};
    bool within = true, special = true, threads_same = true, shapes = true;
    long long outs = 0;
    double worst = 0;
    for (int dt = 0; dt < 2; dt++)
        for (int ci = 0; ci < ncases; ci++) {
            const ag_dtype dtype = dt ? AG_F64 : AG_F32;
            const int64_t K = cases[ci][0], S = cases[ci][1], A = cases[ci][2], R = cases[ci][3], C = cases[ci][4];
            const bool is_full = K * S * A * C == 1;
            const int64_t terms = S * R, outn = K * A * C;
            ag_scope_begin();
            ag_tensor *x = is_full ? ag_randn(AG_SHAPE(R), dtype) : ag_randn(AG_SHAPE(K, S, A, R, C), dtype);
            void *xp = x ? ag_data(x) : NULL;
            for (int64_t k = 0; xp && k < K; k++)
                for (int64_t sl = 0; sl < S; sl++)
                    for (int64_t a = 0; a < A; a++)
                        for (int64_t r = 0; r < R; r++)
                            for (int64_t c = 0; c < C; c++) {
                                const int64_t i = (((k * S + sl) * A + a) * R + r) * C + c, u = (k * A + a) * C + c;
                                double v = elem(xp, dtype, i) * ldexp(1, (int)(u % 9) - 4) + (u % 3 == 1 ? 1000.0 : 0.0);
                                if (u % 5 == 2) v = (double)3.7f;
                                if (u % 7 == 3 && r == R / 2 && sl == S - 1) v = NAN;
                                if (u % 11 == 4 && r == R - 1 && sl == 0) v = INFINITY;
                                set_elem(xp, dtype, i, v);
                            }
            for (int corr = 0; xp && corr <= 1; corr++)
                for (int is_std = 0; is_std <= 1; is_std++)
                    for (int keep = 0; keep <= 1; keep++) {
                        if (is_full && keep) continue;
                        ag_tensor *y[3] = {NULL, NULL, NULL};
                        for (int t = 0; t < 3; t++) {
                            ag_set_num_threads(t + 1);
                            y[t] = is_full ? (is_std ? ag_std(x, corr) : ag_var(x, corr))
                                           : (is_std ? ag_std_dims(x, 2, dims, corr, keep) : ag_var_dims(x, 2, dims, corr, keep));
                        }
                        if (!y[0] || !y[1] || !y[2]) {
                            shapes = false;
                            continue;
                        }
                        shapes &= ag_numel(y[0]) == outn && ag_ndim(y[0]) == (is_full ? 0 : keep ? 5 : 3);
                        for (int t = 1; t < 3; t++) threads_same &= memcmp(ag_data(y[0]), ag_data(y[t]), (size_t)outn * (dt ? 8 : 4)) == 0;
                        for (int64_t k = 0; k < K; k++)
                            for (int64_t a = 0; a < A; a++)
                                for (int64_t c = 0; c < C; c++, outs++) {
                                    const int64_t u = (k * A + a) * C + c;
                                    long double sum = 0, sabs = 0, q = 0;
                                    for (int pass = 0; pass < 2; pass++)
                                        for (int64_t sl = 0; sl < S; sl++)
                                            for (int64_t r = 0; r < R; r++) {
                                                const long double v = elem(xp, dtype, (((k * S + sl) * A + a) * R + r) * C + c);
                                                if (pass == 0) sum += v, sabs += fabsl(v);
                                                else q += (v - sum / (long double)terms) * (v - sum / (long double)terms);
                                            }
                                    const int64_t div = terms > corr ? terms - corr : 0;
                                    const long double ref = q / (long double)div, want = is_std ? sqrtl(ref) : ref;
                                    const double got = elem(ag_data(y[0]), dtype, u);
                                    if (isnan((double)want) || isinf((double)want)) {
                                        special &= isnan((double)want) ? isnan(got) : got == (double)want;
                                        continue;
                                    }
                                    if (u % 5 == 2) special &= got == 0;
                                    const double delta = (dt ? (double)(terms + 4) * 0x1p-53 : 3 * 0x1p-24) * (double)(sabs / (long double)terms);
                                    const double bound = ((double)(terms + 4) * 0x1p-53 * (double)q + (double)terms * delta * delta) / (double)div;
                                    within &= within_bound(got, want, bound, is_std, dt, &worst);
                                }
                    }
            ag_scope_end();
        }
    ag_set_num_threads(saved);
    ok(shapes, "var/std over several runs of dims and over all elements give their shapes");
    ok(within, "var and std over [K, S, A, R, C]'s dims 1 and 3 (rows, narrow and wide columns) and over all of 2-40000 "
       "elements, %lld outputs, float32 and float64, correction 0/1: within the two-pass long double reference's bound "
       "(worst %.3g of it)", outs, worst);
    ok(special, "over several runs and all elements: constant outputs exactly 0, NaN and inf ones NaN");
    ok(threads_same, "over several runs and all elements: the same bits on 1, 2 and 3 threads");
    ag_scope_end();
}

/* var/std's adjoint along a leading, middle or last run of dims (core/sqdev.c's ag__var_grad_into):
 * the bits of VAR_BWD_KERNEL's formula, gx = ((T)(2/(n - c))·dy')·(T)(x - mean) with dy' = dy or
 * dy / 2y (0 where y = 0) and the node's saved float64 mean, on 1 to 3 threads; and the path taken. */
static void test_var_grad_bits(void) {
    ag_scope_begin();
    ag_manual_seed(2224);
    const int saved = ag_get_num_threads();
    static const int64_t shapes[][3] = {{1, 67, 9}, {1, 1049, 100}, {3, 5, 33}, {3, 64, 17}, {2, 300, 200}, {7, 1001, 1}, {13, 9, 1}, {5, 4096, 1}};
    bool same = true, taken = true;
    long long elems = 0;
    for (int dt = 0; dt < 2; dt++)
        for (int si = 0; si < 8; si++)
            for (int is_std = 0; is_std <= 1; is_std++)
                for (int corr = 0; corr <= 1; corr++) {
                    const ag_dtype dtype = dt ? AG_F64 : AG_F32;
                    const int64_t A = shapes[si][0], R = shapes[si][1], C = shapes[si][2];
                    const int dim = C == 1 ? 1 : A == 1 ? 0 : 1;
                    ag_scope_begin();
                    ag_tensor *x = ag_randn(C == 1 ? AG_SHAPE(A, R) : A == 1 ? AG_SHAPE(R, C) : AG_SHAPE(A, R, C), dtype);
                    void *xp = x ? ag_data(x) : NULL;
                    for (int64_t i = 0; xp && i < A * R * C; i++) {
                        const int64_t col = (i / (R * C)) * C + i % C;
                        if (col % 4 == 1) set_elem(xp, dtype, i, 2.5); /* a constant column: y = 0 */
                        else set_elem(xp, dtype, i, elem(xp, dtype, i) * 3 + 10);
                    }
                    ag_tensor *dy = ag_randn(C == 1 ? AG_SHAPE(A) : A == 1 ? AG_SHAPE(C) : AG_SHAPE(A, C), dtype);
                    if (!xp || !dy || !ag_requires_grad_(x, true)) {
                        same = false;
                        ag_scope_end();
                        continue;
                    }
                    ag_tensor *gx[3] = {NULL, NULL, NULL}, *y = NULL;
                    for (int t = 0; t < 3; t++) {
                        ag_set_num_threads(t + 1);
                        ag_zero_grad(x);
                        y = is_std ? ag_std_dims(x, 1, &dim, corr, false) : ag_var_dims(x, 1, &dim, corr, false);
                        if (!y || ag_backward_ex(y, dy, true) != AG_OK) break;
                        gx[t] = ag_clone(ag_grad(x));
                    }
                    if (!gx[0] || !gx[1] || !gx[2] || !y->saved) {
                        same = false;
                        ag_scope_end();
                        continue;
                    }
                    const double *m = ag_data(y->saved);
                    const void *g = ag_data(gx[0]), *dyp = ag_data(dy), *yp = ag_data(y);
                    for (int t = 1; t < 3; t++) same &= memcmp(g, ag_data(gx[t]), (size_t)(A * R * C) * (dt ? 8 : 4)) == 0;
                    const double scale = 2.0 / (double)(R - corr);
                    for (int64_t i = 0; i < A * R * C; i++, elems++) {
                        const int64_t k = (i / (R * C)) * C + i % C;
                        double want;
                        if (dt) {
                            const double d = ((const double *)dyp)[k], yy = ((const double *)yp)[k];
                            want = (scale * (is_std ? (yy == 0 ? 0 : d / (yy * 2)) : d)) * (((const double *)xp)[i] - m[k]);
                        } else {
                            const float d = ((const float *)dyp)[k], yy = ((const float *)yp)[k];
                            want = (double)(((float)scale * (is_std ? (yy == 0 ? 0.0f : d / (yy * 2)) : d)) * (float)((double)((const float *)xp)[i] - m[k]));
                        }
                        same &= same_or_nan(elem(g, dtype, i), want);
                    }
                    /* the path: ag__var_grad_into takes this geometry */
                    ag_tensor *sg = ag_zeros(C == 1 ? AG_SHAPE(A, 1) : A == 1 ? AG_SHAPE(1, C) : AG_SHAPE(A, 1, C), dtype);
                    ag_tensor *out = ag_zeros(C == 1 ? AG_SHAPE(A, R) : A == 1 ? AG_SHAPE(R, C) : AG_SHAPE(A, R, C), dtype);
                    taken &= sg && out && ag__var_grad_into(out, x, y->saved, sg);
                    ag_scope_end();
                }
    ag_set_num_threads(saved);
    ok(taken, "ag__var_grad_into takes var's leading, middle and last-dim geometries");
    ok(same, "var/std's adjoint, %lld elements, float32 and float64, correction 0/1, constant columns (std: y = 0), 1-3 threads: "
       "VAR_BWD_KERNEL's formula bit for bit", elems);
    ag_scope_end();
}

/* var/std's adjoint over several runs of dims and over all elements (ag__var_grad_into's slabs, narrow rows
 * and pieces of long rows): VAR_BWD_KERNEL's formula bit for bit on 1 to 3 threads, and the path taken */
static void test_var_grad_slabs(void) {
    ag_scope_begin();
    ag_manual_seed(2227);
    const int saved = ag_get_num_threads();
    static const int64_t cases[][5] = {{2, 3, 4, 9, 1}, {1, 4, 3, 33, 3}, {3, 2, 2, 40, 7}, {2, 3, 2, 9, 16}, {1, 5, 3, 70, 2},
                                       {1, 1, 5, 101, 3}, {1, 1, 1, 1003, 6}, {1, 1, 1, 77, 1}, {1, 1, 1, 70001, 1}};
    const int ncases = (int)(sizeof cases / sizeof cases[0]);
    static const int dims[2] = {1, 3};
    bool same = true, taken = true;
    long long elems = 0;
    for (int dt = 0; dt < 2; dt++)
        for (int ci = 0; ci < ncases; ci++)
            for (int is_std = 0; is_std <= 1; is_std++) {
                const ag_dtype dtype = dt ? AG_F64 : AG_F32;
                const int64_t K = cases[ci][0], S = cases[ci][1], A = cases[ci][2], R = cases[ci][3], C = cases[ci][4];
                const bool is_full = K * S * A * C == 1;
                const int64_t n = K * S * A * R * C, terms = S * R;
                const int corr = ci % 2;
                ag_scope_begin();
                ag_tensor *x = is_full ? ag_randn(AG_SHAPE(R), dtype) : ag_randn(AG_SHAPE(K, S, A, R, C), dtype);
                ag_tensor *dy = is_full ? ag_randn(AG_SCALAR_SHAPE, dtype) : ag_randn(AG_SHAPE(K, A, C), dtype);
                void *xp = x ? ag_data(x) : NULL;
                if (!xp || !dy || !ag_requires_grad_(x, true)) {
                    same = false;
                    ag_scope_end();
                    continue;
                }
                /* output u of element i: i = (((k·S + s)·A + a)·R + r)·C + c -> (k·A + a)·C + c */
                #define OUT_OF(i) ((((i) / (C * R * A * S)) * A + (i) / (C * R) % A) * C + (i) % C)
                for (int64_t i = 0; i < n; i++) set_elem(xp, dtype, i, OUT_OF(i) % 4 == 1 ? 2.5 : elem(xp, dtype, i) * 3 + 10);
                ag_tensor *gx[3] = {NULL, NULL, NULL}, *y = NULL;
                for (int t = 0; t < 3; t++) {
                    ag_set_num_threads(t + 1);
                    ag_zero_grad(x);
                    y = is_full ? (is_std ? ag_std(x, corr) : ag_var(x, corr))
                                : (is_std ? ag_std_dims(x, 2, dims, corr, false) : ag_var_dims(x, 2, dims, corr, false));
                    if (!y || ag_backward_ex(y, dy, true) != AG_OK) break;
                    gx[t] = ag_clone(ag_grad(x));
                }
                if (!gx[0] || !gx[1] || !gx[2] || !y->saved) {
                    same = false;
                    ag_scope_end();
                    continue;
                }
                const double *m = ag_data(y->saved);
                const void *g = ag_data(gx[0]), *dyp = ag_data(dy), *yp = ag_data(y);
                for (int t = 1; t < 3; t++) same &= memcmp(g, ag_data(gx[t]), (size_t)n * (dt ? 8 : 4)) == 0;
                const double scale = 2.0 / (double)(terms - corr);
                for (int64_t i = 0; i < n; i++, elems++) {
                    const int64_t k = OUT_OF(i);
                    double want;
                    if (dt) {
                        const double d = ((const double *)dyp)[k], yy = ((const double *)yp)[k];
                        want = (scale * (is_std ? (yy == 0 ? 0 : d / (yy * 2)) : d)) * (((const double *)xp)[i] - m[k]);
                    } else {
                        const float d = ((const float *)dyp)[k], yy = ((const float *)yp)[k];
                        want = (double)(((float)scale * (is_std ? (yy == 0 ? 0.0f : d / (yy * 2)) : d)) * (float)((double)((const float *)xp)[i] - m[k]));
                    }
                    same &= same_or_nan(elem(g, dtype, i), want);
                }
                #undef OUT_OF
                ag_tensor *sg = ag_zeros(is_full ? AG_SHAPE(1) : AG_SHAPE(K, 1, A, 1, C), dtype);
                ag_tensor *out = ag_zeros(is_full ? AG_SHAPE(R) : AG_SHAPE(K, S, A, R, C), dtype);
                taken &= sg && out && ag__var_grad_into(out, x, y->saved, sg);
                ag_scope_end();
            }
    ag_set_num_threads(saved);
    ok(taken, "ag__var_grad_into takes several runs of dims, narrow columns and full sums");
    ok(same, "var/std's adjoint over several runs of dims, narrow columns (2-7) and all of 77-70001 elements, %lld elements, "
       "float32 and float64, 1-3 threads: VAR_BWD_KERNEL's formula bit for bit", elems);
    ag_scope_end();
}

int main(void) {
    test_sqdev_bits();
    test_sqdev_slabs();
    test_var_bound();
    test_var_bound_slabs();
    test_var_grad_bits();
    test_var_grad_slabs();
    ok(ag_live_tensors() == 0, "no tensor outlives the tests (%ld live)", ag_live_tensors());
    return tap_done();
}

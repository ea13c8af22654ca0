/*
 * test_random.c - the random fills (rand, randn, uniform_, normal_, bernoulli, normal with tensors, the
 * nn.init fills): every value against the documented counter-based generator (core/random.c) computed
 * here with libm, the same bits for 1 and 2 threads, seeding, and the distributions (mean, variance,
 * Kolmogorov-Smirnov, correlation of neighbours) with fixed seeds.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "agrad/agrad.h"
#include "core/internal.h"
#include "tap.h"

/* More than 2^17 elements (the threaded path), odd (the lone last element) */
#define BIG (((int64_t)1 << 17) * 3 + 1)
#define PI 3.14159265358979323846

static uint64_t mix_at(uint64_t key, uint64_t j) {
    uint64_t z = key + (j + 1) * 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Element i of a standard fill keyed by key, as core/random.c documents it, in libm's double maths. */
static double reference(ag_dtype dt, bool normal, uint64_t key, int64_t i) {
    if (dt == AG_F64) {
        const uint64_t j = (uint64_t)i / 2;
        if (!normal) return (double)(mix_at(key, (uint64_t)i) >> 11) * 0x1.0p-53;
        const double u1 = 1.0 - (double)(mix_at(key, 2 * j) >> 11) * 0x1.0p-53;
        const uint64_t h = mix_at(key, 2 * j + 1);
        const double f = (double)((h >> 11) & 0x7ffffffffffffULL) * 0x1.0p-51;
        const double theta = ((double)(h >> 62) + f - 0.5) * (PI / 2), r = sqrt(-2 * log(u1));
        return i % 2 ? r * sin(theta) : r * cos(theta);
    }
    const uint64_t h = mix_at(key, (uint64_t)i / 2);
    const uint32_t lo = (uint32_t)h, hi = (uint32_t)(h >> 32);
    if (!normal) return (double)((i % 2 ? hi : lo) >> 8) * 0x1.0p-24;
    const float u1 = ((float)(int32_t)(lo >> 1) + 0.5f) * 0x1.0p-31f; /* the float32 rounding, as the fill */
    const double theta = ((double)(hi >> 30) + (double)((hi >> 8) & 0x3fffffu) * 0x1.0p-22 - 0.5) * (PI / 2);
    const double r = sqrt(-2 * log((double)u1));
    return i % 2 ? r * sin(theta) : r * cos(theta);
}

static ag_tensor *standard(ag_dtype dt, bool normal, int64_t n) {
    return normal ? ag_randn(AG_SHAPE(n), dt) : ag_rand(AG_SHAPE(n), dt);
}

/* rand and randn: every element as documented (uniforms exactly; normals within the polynomials' error),
 * and the same bits for 1 and 2 threads */
static void test_values(ag_dtype dt, bool normal) {
    const char *what = normal ? "randn" : "rand", *dn = ag_dtype_name(dt);
    const int threads = ag_get_num_threads();
    ag_scope_begin();
    ag_manual_seed(2024);
    const uint64_t key = ag__rand_u64();
    ag_set_num_threads(1);
    ag_manual_seed(2024);
    ag_tensor *y1 = standard(dt, normal, BIG);
    ag_set_num_threads(2);
    ag_manual_seed(2024);
    ag_tensor *y2 = standard(dt, normal, BIG);
    ag_set_num_threads(threads);
    ok(memcmp(ag_data(y1), ag_data(y2), (size_t)BIG * ag_dtype_size(dt)) == 0,
       "%s %s: the same bits for 1 and 2 threads (%lld elements)", what, dn, (long long)BIG);
    double *v = malloc(sizeof(double) * BIG), worst = 0;
    ag_copy_to(y1, v, BIG, AG_F64);
    int64_t at = 0;
    for (int64_t i = 0; i < BIG; i++) {
        const double want = reference(dt, normal, key, i), err = fabs(v[i] - want) / fmax(1, fabs(want));
        if (!(err <= worst)) worst = err, at = i;
    }
    /* float32 normals: float32 polynomials (a few ulps of 2^-23); float64: within a few ulps of libm */
    const double tol = !normal ? 0 : dt == AG_F32 ? 8e-7 : 8e-15;
    ok(worst <= tol, "%s %s: every element is the counter-based generator's (largest relative error %.3g at %lld, "
       "allowed %.3g)", what, dn, worst, (long long)at, tol);
    free(v);
    ag_scope_end();
}

/* A fill draws once from the stream (its key): seeding repeats it, the next fill differs, and the
 * stream after it is where one draw leaves it */
static void test_seeding(void) {
    ag_scope_begin();
    ag_manual_seed(7);
    ag_tensor *a = ag_randn(AG_SHAPE(1001), AG_F32), *b = ag_randn(AG_SHAPE(1001), AG_F32);
    const uint64_t after = ag__rand_u64();
    ag_manual_seed(7);
    ag_tensor *c = ag_randn(AG_SHAPE(1001), AG_F32);
    ag__rand_u64();
    ok(memcmp(ag_data(a), ag_data(c), 1001 * 4) == 0, "manual_seed repeats a fill");
    ok(memcmp(ag_data(a), ag_data(b), 1001 * 4) != 0, "the next fill differs");
    ag_manual_seed(7);
    for (int k = 0; k < 2; k++) ag__rand_u64();
    ok(after == ag__rand_u64(), "a fill takes exactly one draw of the stream, whatever its size");
    ag_tensor *e0 = ag_rand(AG_SHAPE(0), AG_F32), *e1 = ag_randn(AG_SHAPE(3, 0), AG_F64);
    ok(e0 && e1 && ag_numel(e0) == 0 && ag_numel(e1) == 0 && ag_normal_(e1, 1, 2) == e1,
       "empty fills: rand [0], randn [3, 0], normal_ of an empty tensor");
    ag_scope_end();
}

static int ascending(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct law {
    bool normal;
    double a, b; /* uniform on [a, b), or normal of mean a and std b */
} law;

static double cdf(law l, double x) {
    if (l.normal) return 0.5 * erfc(-(x - l.a) / (l.b * sqrt(2.0)));
    return x <= l.a ? 0 : x >= l.b ? 1 : (x - l.a) / (l.b - l.a);
}

/* The n values of t against their law: mean and variance within 5 standard errors, the KS distance
 * below 1.95/√n (level 0.001), and the correlation of neighbours (i, i + 1) and of their squares within
 * 5/√n of 0.  Releases nothing (t belongs to the scope). */
static void check_law(const char *what, ag_dtype dt, ag_tensor *t, law l) {
    const int64_t n = t ? ag_numel(t) : 0;
    if (!ok(n > 1000, "%s %s: %lld values%s%s", what, ag_dtype_name(dt), (long long)n, n ? "" : ": ", n ? "" : ag_last_error())) return;
    double *v = malloc(sizeof(double) * (size_t)n), mean = 0, var = 0;
    ag_copy_to(t, v, n, AG_F64);
    for (int64_t i = 0; i < n; i++) mean += v[i];
    mean /= (double)n;
    for (int64_t i = 0; i < n; i++) var += (v[i] - mean) * (v[i] - mean);
    var /= (double)(n - 1);
    const double m0 = l.normal ? l.a : (l.a + l.b) / 2, v0 = l.normal ? l.b * l.b : (l.b - l.a) * (l.b - l.a) / 12;
    const double vse = v0 * (l.normal ? sqrt(2.0 / (double)n) : sqrt(0.8 / (double)n)); /* var of s²: (μ4 - σ⁴)/n */
    ok(fabs(mean - m0) <= 5 * sqrt(v0 / (double)n) && fabs(var - v0) <= 5 * vse,
       "%s %s: mean %.5f (want %.5f), variance %.5f (want %.5f)", what, ag_dtype_name(dt), mean, m0, var, v0);
    double c1 = 0, c2 = 0;
    for (int64_t i = 0; i + 1 < n; i++) {
        const double x = (v[i] - m0) / sqrt(v0), y = (v[i + 1] - m0) / sqrt(v0);
        c1 += x * y;
        c2 += (x * x - 1) * (y * y - 1) / (l.normal ? 2 : 0.8);
    }
    c1 /= (double)(n - 1), c2 /= (double)(n - 1);
    ok(fabs(c1) < 5 / sqrt((double)n) && fabs(c2) < 5 / sqrt((double)n),
       "%s %s: neighbours uncorrelated (%.4f), their squares too (%.4f)", what, ag_dtype_name(dt), c1, c2);
    qsort(v, (size_t)n, sizeof *v, ascending);
    double d = 0;
    for (int64_t i = 0; i < n; i++) {
        const double f = cdf(l, v[i]);
        d = fmax(d, fmax(f - (double)i / (double)n, (double)(i + 1) / (double)n - f));
    }
    ok(d < 1.95 / sqrt((double)n), "%s %s: Kolmogorov-Smirnov distance %.5f < %.5f", what, ag_dtype_name(dt), d,
       1.95 / sqrt((double)n));
    free(v);
}

static void test_laws(ag_dtype dt) {
    const int64_t n = 200001;
    const law unit = {false, 0, 1}, gauss = {true, 0, 1};
    ag_scope_begin();
    ag_manual_seed(31);
    check_law("rand", dt, ag_rand(AG_SHAPE(n), dt), unit);
    check_law("randn", dt, ag_randn(AG_SHAPE(n), dt), gauss);
    check_law("rand (threaded)", dt, ag_rand(AG_SHAPE(BIG), dt), unit);
    check_law("randn (threaded)", dt, ag_randn(AG_SHAPE(BIG), dt), gauss);
    /* in place, on a transposed (non-contiguous) view */
    ag_tensor *t = ag_transpose(ag_zeros(AG_SHAPE(401, 499), dt), 0, 1);
    check_law("uniform_(-2, 3)", dt, ag_uniform_(t, -2, 3), (law){false, -2, 3});
    check_law("normal_(1.5, 0.5)", dt, ag_normal_(t, 1.5, 0.5), (law){true, 1.5, 0.5});
    check_law("normal(mean, std tensors)", dt,
              ag_normal_tensor(ag_full(AG_SHAPE(n), -1, dt), ag_full(AG_SHAPE(1), 2, dt)), (law){true, -1, 2});
    ag_tensor *w = ag_zeros(AG_SHAPE(500, 400), dt);
    check_law("init.uniform_(-1, 2)", dt, ag_init_uniform_(w, -1, 2), (law){false, -1, 2});
    check_law("init.normal_(0.5, 2)", dt, ag_init_normal_(w, 0.5, 2), (law){true, 0.5, 2});
    const double bound = sqrt(2.0) * sqrt(3.0 / 400), std = sqrt(2.0 / 900); /* gain √2, fan_in 400; gain 1 */
    check_law("init.kaiming_uniform_", dt, ag_init_kaiming_uniform_(w, 0, "fan_in", "relu"), (law){false, -bound, bound});
    check_law("init.kaiming_normal_", dt, ag_init_kaiming_normal_(w, 0, "fan_in", "relu"), (law){true, 0, sqrt(2.0 / 400)});
    check_law("init.xavier_uniform_", dt, ag_init_xavier_uniform_(w, 1), (law){false, -sqrt(3.0) * std, sqrt(3.0) * std});
    check_law("init.xavier_normal_", dt, ag_init_xavier_normal_(w, 1), (law){true, 0, std});
    /* bernoulli(p): a count within 5 standard deviations of n·p, only 0s and 1s */
    ag_tensor *b = ag_bernoulli(ag_full(AG_SHAPE(n), 0.3, dt));
    double *v = malloc(sizeof(double) * (size_t)n), ones = 0;
    int64_t other = 0;
    ag_copy_to(b, v, n, AG_F64);
    for (int64_t i = 0; i < n; i++) ones += v[i], other += v[i] != 0 && v[i] != 1;
    ok(other == 0 && fabs(ones - 0.3 * (double)n) < 5 * sqrt(0.21 * (double)n),
       "bernoulli(0.3) %s: %.0f ones of %lld (want %.0f), %lld other values", ag_dtype_name(dt), ones, (long long)n,
       0.3 * (double)n, (long long)other);
    /* bernoulli compares with each element's own p: 0 and 1 give 0 and 1 everywhere */
    ag_tensor *p01 = ag_from_data((double[]){0, 1, 0, 1, 1}, AG_SHAPE(5), AG_F64);
    ag_tensor *b01 = ag_bernoulli(dt == AG_F64 ? p01 : ag_to_dtype(p01, dt));
    ag_copy_to(b01, v, 5, AG_F64);
    ok(v[0] == 0 && v[1] == 1 && v[2] == 0 && v[3] == 1 && v[4] == 1, "bernoulli of p in {0, 1} %s", ag_dtype_name(dt));
    free(v);
    ag_scope_end();
}

int main(void) {
    const ag_dtype dts[] = {AG_F32, AG_F64};
    for (int d = 0; d < 2; d++) {
        test_values(dts[d], false);
        test_values(dts[d], true);
        test_laws(dts[d]);
    }
    test_seeding();
    return tap_done();
}

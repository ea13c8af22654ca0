/*
 * Sampling (core/sample.c): reproducible from the seed, and right in
 * distribution - checked by statistics with bounds several standard errors
 * wide (fixed seeds, so a run is deterministic), not by PyTorch's values,
 * which come from another generator.  And the errors by their messages.
 */
#include <math.h>
#include <string.h>
#include "agrad/agrad.h"
#include "tap.h"

static bool same_values(ag_tensor *a, ag_tensor *b) {
    int64_t n = ag_numel(a);
    if (n != ag_numel(b)) return false;
    double x[4096], y[4096];
    if (n > 4096) return false;
    ag_copy_to(a, x, n, AG_F64);
    ag_copy_to(b, y, n, AG_F64);
    return memcmp(x, y, sizeof(double) * (size_t)n) == 0;
}

static void test_reproducible(void) {
    ag_scope_begin();
    ag_tensor *p = ag_full(AG_SHAPE(50), 0.3, AG_F64), *w = ag_from_data((double[]){1, 2, 3, 4}, AG_SHAPE(4), AG_F64);
    ag_tensor *m = ag_zeros(AG_SHAPE(20), AG_F32), *s = ag_ones(AG_SHAPE(20), AG_F32);
    ag_tensor *runs[2][6];
    for (int r = 0; r < 2; r++) {
        ag_manual_seed(123);
        runs[r][0] = ag_randint(-5, 7, AG_SHAPE(40));
        runs[r][1] = ag_randperm(30);
        runs[r][2] = ag_bernoulli(p);
        runs[r][3] = ag_multinomial(w, 3, false);
        runs[r][4] = ag_normal_tensor(m, s);
        runs[r][5] = ag_exponential_(ag_zeros(AG_SHAPE(25), AG_F64), 2);
    }
    bool same = true;
    for (int k = 0; k < 6; k++) same = same && runs[0][k] && runs[1][k] && same_values(runs[0][k], runs[1][k]);
    ok(same, "randint, randperm, bernoulli, multinomial, normal and exponential_ repeat their values under one seed");
    ag_manual_seed(124);
    ok(!same_values(runs[0][0], ag_randint(-5, 7, AG_SHAPE(40))), "another seed gives other values");
    ag_scope_end();
}

static void test_distributions(void) {
    ag_scope_begin();
    ag_manual_seed(7);
    enum { N = 200000 };
    /* randint: every value of [-3, 4) about N/7 times, none outside */
    int64_t *r = ag_data(ag_randint(-3, 4, AG_SHAPE(N)));
    int64_t hist[7] = {0}, outside = 0;
    for (int k = 0; k < N; k++) r[k] >= -3 && r[k] < 4 ? (void)hist[r[k] + 3]++ : (void)outside++;
    double worst = 0; /* in standard errors */
    for (int v = 0; v < 7; v++) worst = fmax(worst, fabs(hist[v] - N / 7.0) / sqrt(N * (1 / 7.0) * (6 / 7.0)));
    ok(outside == 0 && worst < 5, "randint(-3, 4) is uniform on its 7 values (worst %.1f standard errors)", worst);
    ag_tensor *big = ag_randint(INT64_MIN, INT64_MAX, AG_SHAPE(1000));
    int64_t *b = ag_data(big), negative = 0;
    for (int k = 0; k < 1000; k++) negative += b[k] < 0;
    ok(negative > 400 && negative < 600, "randint over all of int64 draws both signs (%lld of 1000 negative)", (long long)negative);
    /* randperm: a permutation; position 0 uniform over the values */
    int64_t first[5] = {0};
    bool perm = true;
    for (int t = 0; t < 20000; t++) {
        ag_scope_begin();
        int64_t *v = ag_data(ag_randperm(5));
        bool seen[5] = {false};
        for (int k = 0; k < 5; k++) perm = perm && v[k] >= 0 && v[k] < 5 && !seen[v[k]] && (seen[v[k]] = true);
        first[v[0]]++;
        ag_scope_end();
    }
    worst = 0;
    for (int v = 0; v < 5; v++) worst = fmax(worst, fabs(first[v] - 4000.0) / sqrt(20000 * 0.2 * 0.8));
    ok(perm && worst < 5, "randperm(5) gives permutations with a uniform first element (worst %.1f standard errors)", worst);
    ok(ag_numel(ag_randperm(0)) == 0, "randperm(0) is empty");
    /* bernoulli: the mean of each probability */
    const float ps[3] = {0.1f, 0.5f, 0.97f};
    ag_tensor *p = ag_expand(ag_from_data(ps, AG_SHAPE(1, 3), AG_F32), AG_SHAPE(N / 3, 3));
    float *bv = ag_data(ag_bernoulli(p));
    double mean[3] = {0};
    bool binary = true;
    for (int k = 0; k < N / 3 * 3; k++) mean[k % 3] += bv[k], binary = binary && (bv[k] == 0 || bv[k] == 1);
    worst = 0;
    for (int j = 0; j < 3; j++) worst = fmax(worst, fabs(mean[j] / (N / 3) - ps[j]) / sqrt(ps[j] * (1 - ps[j]) / (N / 3)));
    ok(binary && worst < 5, "bernoulli draws 0/1 with each probability (worst %.1f standard errors)", worst);
    /* multinomial with replacement: frequencies proportional to the weights */
    int64_t *mv = ag_data(ag_multinomial(ag_from_data((double[]){1, 0, 3, 6}, AG_SHAPE(4), AG_F64), N, true));
    int64_t freq[4] = {0};
    for (int k = 0; k < N; k++) freq[mv[k]]++;
    double pw[4] = {0.1, 0, 0.3, 0.6};
    worst = 0;
    for (int j = 0; j < 4; j++)
        if (pw[j] > 0) worst = fmax(worst, fabs(freq[j] - N * pw[j]) / sqrt(N * pw[j] * (1 - pw[j])));
    ok(freq[1] == 0 && worst < 5, "multinomial with replacement follows the weights, never a zero one (worst %.1f)", worst);
    /* without replacement: distinct, and the first draw follows the weights */
    int64_t firsts[3] = {0};
    bool distinct = true;
    ag_tensor *w2 = ag_from_data((double[]){2, 1, 1, 2, 1, 1}, AG_SHAPE(2, 3), AG_F64);
    for (int t = 0; t < 20000; t++) {
        ag_scope_begin();
        int64_t *v = ag_data(ag_multinomial(w2, 3, false));
        for (int row = 0; row < 2; row++)
            distinct = distinct && v[3 * row] != v[3 * row + 1] && v[3 * row] != v[3 * row + 2] && v[3 * row + 1] != v[3 * row + 2];
        firsts[v[0]]++;
        ag_scope_end();
    }
    worst = fabs(firsts[0] - 10000.0) / sqrt(20000 * 0.25);
    ok(distinct && worst < 5, "multinomial without replacement draws each category once, the first by weight (%.1f)", worst);
    /* normal with tensor mean and std: per-element moments */
    ag_tensor *mu = ag_expand(ag_from_data((double[]){-2, 5}, AG_SHAPE(1, 2), AG_F64), AG_SHAPE(N / 2, 2));
    ag_tensor *sd = ag_from_data((double[]){0.5, 3}, AG_SHAPE(2), AG_F64);
    double *nv = ag_data(ag_normal_tensor(mu, sd));
    double m[2] = {0}, v2[2] = {0};
    for (int k = 0; k < N; k++) m[k % 2] += nv[k];
    for (int j = 0; j < 2; j++) m[j] /= N / 2;
    for (int k = 0; k < N; k++) v2[k % 2] += (nv[k] - m[k % 2]) * (nv[k] - m[k % 2]);
    double sds[2] = {0.5, 3}, means[2] = {-2, 5};
    worst = 0;
    for (int j = 0; j < 2; j++) {
        worst = fmax(worst, fabs(m[j] - means[j]) / (sds[j] / sqrt(N / 2)));
        worst = fmax(worst, fabs(sqrt(v2[j] / (N / 2)) - sds[j]) / (sds[j] / sqrt(N)));
    }
    ok(worst < 5, "normal(mean, std) has each element's mean and std (worst %.1f standard errors)", worst);
    /* exponential_: mean 1/λ, P(x > 1/λ) = e^-1 */
    double *ev = ag_data(ag_exponential_(ag_zeros(AG_SHAPE(N), AG_F64), 4));
    double em = 0, above = 0;
    bool positive = true;
    for (int k = 0; k < N; k++) em += ev[k], above += ev[k] > 0.25, positive = positive && ev[k] >= 0;
    em /= N;
    double z1 = fabs(em - 0.25) / (0.25 / sqrt(N)), z2 = fabs(above / N - exp(-1)) / sqrt(exp(-1) * (1 - exp(-1)) / N);
    ok(positive && z1 < 5 && z2 < 5, "exponential_(4) has mean 1/4 and the tail e^-1 (%.1f, %.1f standard errors)", z1, z2);
    /* float32, into a transposed view: the same law */
    ag_tensor *ef = ag_exponential_(ag_t(ag_zeros(AG_SHAPE(400, N / 400), AG_F32)), 0.5);
    ag_tensor *efc = ag_contiguous(ef);
    const float *fv = ag_data(efc);
    em = 0, above = 0, positive = true;
    for (int k = 0; k < N; k++) em += fv[k], above += fv[k] > 2, positive = positive && fv[k] >= 0 && isfinite(fv[k]);
    em /= N;
    z1 = fabs(em - 2) / (2 / sqrt(N)), z2 = fabs(above / N - exp(-1)) / sqrt(exp(-1) * (1 - exp(-1)) / N);
    ok(positive && z1 < 5 && z2 < 5, "float32 exponential_(0.5) of a view has mean 2 and the tail e^-1 (%.1f, %.1f)", z1, z2);
    /* randint with a span just above 2^63: about half the draws fall below 2^64 mod span and are drawn again
     * (the rejection path), and the values stay in range and uniform */
    const int64_t span_hi = INT64_MAX; /* [-2, INT64_MAX): span 2^63 + 1 */
    int64_t *w = ag_data(ag_randint(-2, span_hi, AG_SHAPE(N))), low_half = 0;
    bool inside = true;
    for (int k = 0; k < N; k++) inside = inside && w[k] >= -2, low_half += w[k] < INT64_MAX / 2 - 1;
    double zh = fabs(low_half - N / 2.0) / sqrt(N / 4.0);
    ok(inside && zh < 5, "randint(-2, INT64_MAX) is uniform: half below the middle (%.1f standard errors)", zh);
    ag_scope_end();
}

/* randint and exponential_ give the same values on one thread and two (the counter-based generator). */
static void test_thread_independence(void) {
    ag_scope_begin();
    ag_tensor *r[2], *e[2], *f[2];
    for (int t = 0; t < 2; t++) {
        ag_set_num_threads(t + 1);
        ag_manual_seed(11);
        r[t] = ag_randint(-1000, 1000003, AG_SHAPE(300001));
        e[t] = ag_exponential_(ag_zeros(AG_SHAPE(300001), AG_F64), 3);
        f[t] = ag_exponential_(ag_zeros(AG_SHAPE(300001), AG_F32), 3);
    }
    ag_set_num_threads(0);
    ok(memcmp(ag_data(r[0]), ag_data(r[1]), 300001 * sizeof(int64_t)) == 0, "randint: the same values on 1 and 2 threads");
    ok(memcmp(ag_data(e[0]), ag_data(e[1]), 300001 * sizeof(double)) == 0 &&
           memcmp(ag_data(f[0]), ag_data(f[1]), 300001 * sizeof(float)) == 0,
       "exponential_: the same values on 1 and 2 threads, float64 and float32");
    ag_scope_end();
}

static bool failed_with(ag_tensor *r, ag_status st, const char *msg) {
    bool good = !r && ag_last_status() == st && strcmp(ag_last_error(), msg) == 0;
    if (!good) diag("got status %d: %s", ag_last_status(), ag_last_error());
    ag_clear_error();
    return good;
}

static void test_errors(void) {
    ag_scope_begin();
    ok(failed_with(ag_randint(3, 3, AG_SHAPE(2)), AG_ERR_VALUE, "randint: expects low < high, got low 3 and high 3"),
       "randint with an empty range fails");
    ok(failed_with(ag_randperm(-1), AG_ERR_VALUE, "randperm: n must be non-negative, got -1"), "randperm(-1) fails");
    ok(failed_with(ag_bernoulli(ag_full(AG_SHAPE(2), 1.5, AG_F64)), AG_ERR_VALUE,
                   "bernoulli: probabilities must lie in [0, 1], got 1.5"),
       "bernoulli of a probability above 1 fails");
    ag_tensor *w = ag_from_data((double[]){1, 0, 2}, AG_SHAPE(3), AG_F64);
    /* multinomial's messages are checked in test_rnn (core/sample.c); here that each misuse fails */
    ag_tensor *bad[] = {ag_multinomial(w, 3, false), ag_multinomial(w, 4, false),
                        ag_multinomial(ag_zeros(AG_SHAPE(3), AG_F64), 1, true),
                        ag_multinomial(ag_full(AG_SHAPE(2), -1, AG_F64), 1, true),
                        ag_multinomial(ag_zeros(AG_SHAPE(1, 1, 1), AG_F64), 1, true),
                        ag_multinomial(ag_zeros(AG_SHAPE(0), AG_F64), 1, true)};
    const char *what[] = {"too few positive weights without replacement", "more samples than categories without replacement",
                          "zero weights", "a negative weight", "3-D weights", "no categories"};
    for (int k = 0; k < 6; k++) ok(!bad[k], "multinomial of %s fails", what[k]);
    ag_clear_error();
    ok(failed_with(ag_normal_tensor(ag_zeros(AG_SHAPE(2), AG_F64), ag_full(AG_SHAPE(2), -1, AG_F64)), AG_ERR_VALUE,
                   "normal: std must lie in [0, inf], got -1"),
       "normal with a negative std fails");
    ok(failed_with(ag_exponential_(ag_zeros(AG_SHAPE(2), AG_F64), 0), AG_ERR_VALUE, "exponential_: lambd must be positive, got 0"),
       "exponential_ with rate 0 fails");
    ok(!ag_exponential_(ag_zeros(AG_SHAPE(2), AG_I64), 1) && ag_last_status() == AG_ERR_DTYPE,
       "exponential_ of an int64 tensor fails with AG_ERR_DTYPE");
    ag_clear_error();
    ag_scope_end();
}

int main(void) {
    test_reproducible();
    test_distributions();
    test_thread_independence();
    test_errors();
    ok(ag_live_tensors() == 0, "no tensors leaked");
    return tap_done();
}

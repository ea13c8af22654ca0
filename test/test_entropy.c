/*
 * Information measures (agrad/loss.h: ag_entropy, ag_cross_entropy_pq,
 * ag_kl_divergence, ag_perplexity) against values worked by hand from the
 * "Training neural networks" deck's definitions, in probabilities and in
 * log-probabilities, along either dim; their gradients against the hand-derived
 * -(log p + 1) and by ag_gradcheck (float64); the zero-probability convention;
 * and every error case.
 */
#include <math.h>
#include "agrad/agrad.h"
#include "tap.h"

#define LN2 0.6931471805599453

static ag_tensor *vec(const double *v, int64_t n) { return ag_from_data(v, AG_SHAPE(n), AG_F64); }

/* one lane's value */
static double at(const ag_tensor *t, int64_t i) { return ag_get(t, &i); }

static void test_values(void) {
    ag_scope_begin();
    const double half_quarter[] = {0.5, 0.25, 0.25}, uniform[] = {0.25, 0.25, 0.25, 0.25}, delta[] = {1, 0, 0};
    ag_tensor *p = vec(half_quarter, 3);
    close_to(ag_item(ag_entropy(p, 0, false)), 1.5 * LN2, 1e-15, "H(1/2, 1/4, 1/4) = 1.5 bits");
    close_to(ag_item(ag_entropy(p, -1, false)) / LN2, 1.5, 1e-15, "dim -1 is the last dim");
    close_to(ag_item(ag_entropy(vec(uniform, 4), 0, false)), log(4.0), 1e-15, "uniform over 4: log 4 (the maximum)");
    close_to(ag_item(ag_perplexity(vec(uniform, 4), NULL, 0, false)), 4, 1e-14, "uniform over 4: perplexity 4");
    ok(ag_item(ag_entropy(vec(delta, 3), 0, false)) == 0, "a delta has entropy 0 (0 log 0 = 0)");
    close_to(ag_item(ag_perplexity(vec(delta, 3), NULL, 0, false)), 1, 1e-15, "a delta has perplexity 1");

    /* binary entropy H(θ) = -[θ log θ + (1 - θ) log(1 - θ)]: 1 bit at θ = 1/2 */
    const double coins[] = {0.5, 0.5, 0.1, 0.9};
    ag_tensor *hb = ag_entropy(ag_from_data(coins, AG_SHAPE(2, 2), AG_F64), 1, false);
    ok(hb && ag_ndim(hb) == 1 && ag_shape_of(hb).dim[0] == 2, "rows of [2, 2] give a [2] result");
    close_to(at(hb, 0) / LN2, 1, 1e-15, "binary entropy at 1/2: 1 bit");
    close_to(at(hb, 1), -(0.1 * log(0.1) + 0.9 * log(0.9)), 1e-15, "binary entropy at 0.1: 0.325 nats");
    /* the same distributions as columns, reduced along dim 0 */
    const double coins_t[] = {0.5, 0.1, 0.5, 0.9};
    ag_tensor *hc = ag_entropy(ag_from_data(coins_t, AG_SHAPE(2, 2), AG_F64), 0, false);
    ok(fabs(at(hc, 0) - at(hb, 0)) < 1e-15 && fabs(at(hc, 1) - at(hb, 1)) < 1e-15, "along dim 0 as along dim 1");

    /* p = (1/2, 1/2), q = (1/4, 3/4): H(p, q) = (log 4 + log 4/3) / 2, KL = (log 2 + log 2/3) / 2 */
    const double pv[] = {0.5, 0.5}, qv[] = {0.25, 0.75};
    ag_tensor *pp = vec(pv, 2), *qq = vec(qv, 2);
    double hpq = 0.5 * (log(4.0) + log(4.0 / 3)), kl = 0.5 * (LN2 + log(2.0 / 3));
    close_to(ag_item(ag_cross_entropy_pq(pp, qq, 0, false)), hpq, 1e-15, "H(p, q) = 0.837 nats");
    close_to(ag_item(ag_kl_divergence(pp, qq, 0, false)), kl, 1e-15, "KL(p, q) = 0.1438 nats");
    close_to(ag_item(ag_kl_divergence(pp, qq, 0, false)), hpq - LN2, 1e-15, "KL(p, q) = H(p, q) - H(p)");
    ok(ag_item(ag_kl_divergence(qq, qq, 0, false)) == 0, "KL(q, q) = 0");
    close_to(ag_item(ag_perplexity(pp, qq, 0, false)), sqrt(16.0 / 3), 1e-14, "PPL(p, q) = e^H(p, q) = sqrt(16/3)");

    /* the same from log-probabilities, a zero probability given as log 0 = -inf */
    ag_tensor *lp = ag_log(p), *ld = ag_log(vec(delta, 3));
    close_to(ag_item(ag_entropy(lp, 0, true)), 1.5 * LN2, 1e-15, "log_input: H = 1.5 bits");
    ok(ag_item(ag_entropy(ld, 0, true)) == 0, "log_input: a delta (two -inf) has entropy 0, not NaN");
    close_to(ag_item(ag_kl_divergence(ag_log(pp), ag_log(qq), 0, true)), kl, 1e-15, "log_input: KL");
    close_to(ag_item(ag_cross_entropy_pq(ag_log(pp), ag_log(qq), 0, true)), hpq, 1e-15, "log_input: H(p, q)");
    close_to(ag_item(ag_perplexity(ag_log(pp), ag_log(qq), 0, true)), sqrt(16.0 / 3), 1e-14, "log_input: PPL");

    /* zero probabilities: p = 0 beside q = 0 counts 0; q = 0 beside p > 0 is infinite */
    const double p0[] = {0.5, 0.5, 0}, q0[] = {0.5, 0.5, 0}, q1[] = {1, 0, 0};
    ok(ag_item(ag_kl_divergence(vec(p0, 3), vec(q0, 3), 0, false)) == 0, "KL with p = q = 0 in a state is finite");
    ok(isinf(ag_item(ag_kl_divergence(vec(p0, 3), vec(q1, 3), 0, false))), "KL is +inf where q = 0 < p");

    /* a batch of p against one q: [2, 2] with [2] broadcast */
    ag_tensor *pb = ag_from_data(coins, AG_SHAPE(2, 2), AG_F64);
    ag_tensor *klb = ag_kl_divergence(pb, qq, 1, false);
    ok(klb && ag_ndim(klb) == 1, "p [2, 2] against q [2] gives [2]");
    if (klb) close_to(at(klb, 0), kl, 1e-15, "the first row's KL as alone");
    ag_tensor *qb = ag_from_data(coins, AG_SHAPE(2, 2), AG_F64), *klq = ag_kl_divergence(qq, qb, -1, false);
    ok(klq && ag_ndim(klq) == 1, "p [2] against q [2, 2] gives [2]");
    if (klq) close_to(at(klq, 1), 0.25 * log(0.25 / 0.1) + 0.75 * log(0.75 / 0.9), 1e-15, "KL(q, (0.1, 0.9))");
    ag_tensor *f32 = ag_entropy(ag_to_dtype(p, AG_F32), 0, false);
    ok(f32 && ag_dtype_of(f32) == AG_F32, "float32 in, float32 out");
    if (f32) close_to(ag_item(f32), 1.5 * LN2, 1e-6, "float32: H = 1.5 bits");
    ag_scope_end();
}

static void test_gradients(void) {
    ag_scope_begin();
    const double half_quarter[] = {0.5, 0.25, 0.25}, p0[] = {0.5, 0.5, 0};
    ag_tensor *p = ag_requires_grad_(vec(half_quarter, 3), true);
    ok(ag_backward(ag_entropy(p, 0, false)) == AG_OK, "backward through entropy");
    ag_tensor *g = ag_grad(p);
    double worst = 0;
    for (int k = 0; k < 3; k++) worst = fmax(worst, fabs(at(g, k) + log(half_quarter[k]) + 1));
    ok(worst < 1e-15, "dH/dp = -(log p + 1) (worst error %g)", worst);
    ag_tensor *z = ag_requires_grad_(vec(p0, 3), true);
    ok(ag_backward(ag_entropy(z, 0, false)) == AG_OK, "backward with a zero probability");
    g = ag_grad(z);
    ok(g && at(g, 2) == 0 && isfinite(at(g, 0)), "the zero probability's gradient is 0, the others finite");
    ag_tensor *lz = ag_requires_grad_(ag_log(vec(p0, 3)), true);
    ok(ag_backward(ag_kl_divergence(lz, lz, 0, true)) == AG_OK, "backward of KL of log-probabilities with -inf");
    g = ag_grad(lz);
    ok(g && isfinite(at(g, 0)) && at(g, 2) == 0, "log_input: finite gradients, 0 at log 0");
    ag_scope_end();
}

typedef struct which {
    int fn; /* 0 entropy, 1 cross entropy, 2 KL, 3 perplexity of p and q, 4 perplexity of p */
    int dim;
    bool log_input;
} which;

static ag_tensor *measure(ag_tensor *const *in, int n, void *ctx) {
    const which *w = ctx;
    (void)n;
    switch (w->fn) {
    case 0: return ag_entropy(in[0], w->dim, w->log_input);
    case 1: return ag_cross_entropy_pq(in[0], in[1], w->dim, w->log_input);
    case 2: return ag_kl_divergence(in[0], in[1], w->dim, w->log_input);
    case 3: return ag_perplexity(in[0], in[1], w->dim, w->log_input);
    default: return ag_perplexity(in[0], NULL, w->dim, w->log_input);
    }
}

static void test_gradcheck(void) {
    static const char *const names[] = {"entropy", "cross_entropy_pq", "kl_divergence", "perplexity(p, q)",
                                        "perplexity(p)"};
    ag_manual_seed(20);
    for (int log_input = 0; log_input < 2; log_input++)
        for (int fn = 0; fn < 5; fn++)
            for (int dim = 0; dim < 2; dim++) {
                ag_scope_begin();
                /* distributions along dim: softmax of random logits, or their log_softmax */
                ag_tensor *a = ag_randn(AG_SHAPE(3, 4), AG_F64), *b = ag_randn(AG_SHAPE(3, 4), AG_F64);
                ag_tensor *in[2] = {log_input ? ag_log_softmax(a, dim) : ag_softmax(a, dim),
                                    log_input ? ag_log_softmax(b, dim) : ag_softmax(b, dim)};
                in[0] = ag_requires_grad_(ag_detach(in[0]), true);
                in[1] = ag_requires_grad_(ag_detach(in[1]), true);
                which w = {fn, dim, log_input};
                ag_gradcheck_opts go = {.eps = 1e-6, .atol = 1e-7, .rtol = 1e-5, .quiet = true};
                ag_status st = ag_gradcheck(measure, &w, in, fn == 0 || fn == 4 ? 1 : 2, &go, NULL);
                ok(st == AG_OK, "gradcheck %s dim %d%s%s%s", names[fn], dim, log_input ? " log_input" : "",
                   st ? ": " : "", st ? ag_last_error() : "");
                ag_scope_end();
            }
}

static void test_errors(void) {
    ag_scope_begin();
    ag_tensor *p = ag_full(AG_SHAPE(2, 3), 1.0 / 3, AG_F64);
    ok(!ag_entropy(ag_zeros(AG_SHAPE(3), AG_I64), 0, false) && ag_last_status() == AG_ERR_DTYPE,
       "an int64 p: %s", ag_last_error());
    ok(!ag_entropy(p, 2, false) && ag_last_status() == AG_ERR_INDEX, "dim 2 of [2, 3]: %s", ag_last_error());
    ok(!ag_kl_divergence(p, ag_full(AG_SHAPE(4), 0.25, AG_F64), 1, false) && ag_last_status() == AG_ERR_SHAPE,
       "p [2, 3] against q [4]: %s", ag_last_error());
    ok(!ag_cross_entropy_pq(p, ag_full(AG_SHAPE(3), 1.0 / 3, AG_F32), 1, false) && ag_last_status() == AG_ERR_DTYPE,
       "float64 p against float32 q: %s", ag_last_error());
    ok(!ag_perplexity(p, NULL, -3, false) && ag_last_status() == AG_ERR_INDEX, "dim -3 of [2, 3]: %s",
       ag_last_error());
    ag_clear_error();
    ag_scope_end();
}

int main(void) {
    test_values();
    test_gradients();
    test_gradcheck();
    test_errors();
    ok(ag_live_tensors() == 0, "no tensor leaked (%ld live)", ag_live_tensors());
    return tap_done();
}

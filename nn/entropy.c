/*
 * entropy.c - information measures of discrete distributions along a dim, as
 * the "Training neural networks" deck defines them (in nats; divide by log 2
 * for bits): the entropy H(p) = -Σ p log p, the cross entropy
 * H(p, q) = -Σ p log q, the KL divergence KL(p, q) = Σ p log(p / q) and the
 * perplexity e^H.  Composed from primitives, so they are differentiable.
 *
 * A term with p = 0 is 0 (0·log 0 = 0·log q = 0): its argument is replaced
 * under a mask before the log, so neither the value nor a gradient sees
 * log 0, and the gradient of such a term is 0.
 */
#include <math.h>
#include "nn/loss_internal.h"
#include "agrad/loss.h"
#include "agrad/ops.h"

/* p's checks: float; with q, q of p's dtype, broadcasting with p; dim within their
 * broadcast rank.  Returns the wrapped dim, or -1 with the error recorded. */
static int check_args(const char *op, const ag_tensor *p, const ag_tensor *q, int dim) {
    if (ag__loss_check_float(op, "p", p, NULL)) return -1;
    if (q && (ag__loss_check_float(op, "q", q, p) || ag__loss_check_broadcast(op, "p", p, "q", q))) return -1;
    int ndim = q && q->ndim > p->ndim ? q->ndim : p->ndim;
    return ag__dim(op, dim, ndim);
}

/* Where p_k = 0: p given as probabilities, or as log-probabilities equal to -∞. */
static ag_tensor *zero_mass(ag_tensor *p, bool log_input) {
    ag_tensor *edge = ag__loss_const(p, log_input ? -INFINITY : 0);
    return ag_eq(p, edge);
}

/* Σ_k p_k·f_k along dim, 0 for the terms where p_k = 0; f is computed from the masked inputs. */
static ag_tensor *masked_sum(ag_tensor *terms, ag_tensor *none, int dim) {
    ag_tensor *s = ag_masked_fill(terms, none, 0);
    return s && s->ndim ? ag_sum_dim(s, dim, false) : s;
}

/* p as probabilities and its log, both with p_k = 0 replaced so that p·log p is 0·0 there. */
static void prob_and_log(ag_tensor *p, ag_tensor *none, bool log_input, ag_tensor **prob, ag_tensor **logp) {
    if (log_input) {
        *logp = ag_masked_fill(p, none, 0); /* log p = -∞ → 0, so e^0·0 = 0 */
        *prob = ag_exp(*logp);
    } else {
        *prob = p;
        *logp = ag_log(ag_masked_fill(p, none, 1)); /* log 1 = 0 */
    }
}

/* H(p) = -Σ p log p; dp = -(log p + 1) (0 where p = 0); with log_input,
 * d(log p) = -p (log p + 1) */
ag_tensor *ag_entropy(ag_tensor *p, int dim, bool log_input) {
    AG_CHECK_HANDLES(NULL, "entropy", p);
    if (!p || (dim = check_args("entropy", p, NULL, dim)) < 0) return NULL;
    if (ag__composite_begin("entropy")) return NULL;
    ag_tensor *none = zero_mass(p, log_input), *prob, *logp;
    prob_and_log(p, none, log_input, &prob, &logp);
    return ag__composite_end(ag_neg(masked_sum(ag_mul(prob, logp), none, dim)));
}

/* The lanes of Σ p log q (kl false) or Σ p log(p / q) (kl true) in the broadcast shape of p
 * and q, reduced along dim; a lane where p = 0 counts 0 (q masked to 1 there, so q = 0 beside
 * p = 0 gives no ∞). */
static ag_tensor *pq_sum(ag_tensor *p, ag_tensor *q, int dim, bool log_input, bool kl) {
    ag_tensor *none = zero_mass(p, log_input), *prob, *logp;
    prob_and_log(p, none, log_input, &prob, &logp);
    ag_tensor *logq = log_input ? ag_where(none, ag__loss_const(q, 0), q)
                                : ag_log(ag_where(none, ag__loss_const(q, 1), q));
    return masked_sum(ag_mul(prob, kl ? ag_sub(logp, logq) : logq), none, dim);
}

/* H(p, q) = -Σ p log q; dp = -log q, dq = -p / q (with log_input: d(log q) = -p) */
ag_tensor *ag_cross_entropy_pq(ag_tensor *p, ag_tensor *q, int dim, bool log_input) {
    AG_CHECK_HANDLES(NULL, "cross_entropy_pq", p, q);
    if (!p || !q || (dim = check_args("cross_entropy_pq", p, q, dim)) < 0) return NULL;
    if (ag__composite_begin("cross_entropy_pq")) return NULL;
    return ag__composite_end(ag_neg(pq_sum(p, q, dim, log_input, false)));
}

/* KL(p, q) = Σ p log(p / q) = H(p, q) - H(p); dp = log(p / q) + 1, dq = -p / q */
ag_tensor *ag_kl_divergence(ag_tensor *p, ag_tensor *q, int dim, bool log_input) {
    AG_CHECK_HANDLES(NULL, "kl_divergence", p, q);
    if (!p || !q || (dim = check_args("kl_divergence", p, q, dim)) < 0) return NULL;
    if (ag__composite_begin("kl_divergence")) return NULL;
    return ag__composite_end(pq_sum(p, q, dim, log_input, true));
}

/* PPL = e^H(p, q), or e^H(p) when q is NULL; dPPL = PPL·dH */
ag_tensor *ag_perplexity(ag_tensor *p, ag_tensor *q, int dim, bool log_input) {
    AG_CHECK_HANDLES(NULL, "perplexity", p, q);
    if (!p || (dim = check_args("perplexity", p, q, dim)) < 0) return NULL;
    if (ag__composite_begin("perplexity")) return NULL;
    ag_tensor *h = q ? ag_neg(pq_sum(p, q, dim, log_input, false)) : ag_entropy(p, dim, log_input);
    return ag__composite_end(ag_exp(h));
}

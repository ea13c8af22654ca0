/*
 * data/sampler.c - samplers (torch.utils.data.Sampler): which samples an epoch
 * visits, in which order.  Each kind fills one epoch's indices from a generator
 * the loader owns, so the epochs follow from the loader's seed; a custom sampler
 * (a distributed one, say) gets a seed drawn from that generator.  The
 * distributed kind (DistributedSampler) draws the one order every rank draws and
 * keeps this rank's positions of it.
 */
#include <math.h>
#include <string.h>
#include "data/internal.h"

typedef enum kind { SEQUENTIAL, RANDOM, WEIGHTED, SUBSET, DISTRIBUTED, CUSTOM } kind;

struct ag_sampler {
    kind kind;
    int64_t n;           /* indices are below n (SEQUENTIAL, RANDOM, WEIGHTED, DISTRIBUTED); SUBSET: how many */
    int64_t num_samples; /* per epoch (DISTRIBUTED: this rank's share) */
    bool replacement;
    bool shuffle;              /* DISTRIBUTED: the order is a permutation drawn from the generator */
    int64_t replicas, rank;    /* DISTRIBUTED */
    int64_t *order;            /* DISTRIBUTED: this epoch's order of all n, before sharding */
    double *cum;         /* WEIGHTED: cumulative weights */
    int64_t *indices;    /* SUBSET */
    ag_sampler_callbacks cb;
};

static ag_sampler *sampler_new(kind k, int64_t n, int64_t num_samples) {
    ag_sampler *s = ag__calloc(sizeof *s);
    if (!s) return ag__fail_null(AG_ERR_NOMEM, "sampler: out of memory");
    s->kind = k;
    s->n = n;
    s->num_samples = num_samples;
    return s;
}

ag_sampler *ag_sequential_sampler(int64_t n) {
    if (n < 0) return ag__fail_null(AG_ERR_ARG, "sequential_sampler: n %lld < 0", (long long)n);
    return sampler_new(SEQUENTIAL, n, n);
}

ag_sampler *ag_random_sampler(int64_t n, bool replacement, int64_t num_samples) {
    if (n < 0 || num_samples < 0 || (!replacement && num_samples > n) || (replacement && n == 0 && num_samples > 0))
        return ag__fail_null(AG_ERR_ARG, "random_sampler: %lld samples of %lld %s replacement", (long long)num_samples,
                             (long long)n, replacement ? "with" : "without");
    ag_sampler *s = sampler_new(RANDOM, n, num_samples ? num_samples : n);
    if (s) s->replacement = replacement;
    return s;
}

ag_sampler *ag_weighted_random_sampler(const double *weights, int64_t n, int64_t num_samples, bool replacement) {
    static const char *op = "weighted_random_sampler";
    if (!weights || n < 1 || num_samples < 0) return ag__fail_null(AG_ERR_ARG, "%s: no weights or num_samples < 0", op);
    int64_t positive = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!(weights[i] >= 0) || !isfinite(weights[i]))
            return ag__fail_null(AG_ERR_VALUE, "%s: weight %lld is %g; weights must be finite and >= 0", op, (long long)i, weights[i]);
        positive += weights[i] > 0;
    }
    if (positive == 0) return ag__fail_null(AG_ERR_VALUE, "%s: every weight is 0", op);
    if (!replacement && num_samples > positive)
        return ag__fail_null(AG_ERR_VALUE, "%s: %lld samples without replacement, but only %lld weights are positive", op,
                             (long long)num_samples, (long long)positive);
    ag_sampler *s = sampler_new(WEIGHTED, n, num_samples);
    if (s && !(s->cum = ag__alloc_n(n, sizeof(double)))) {
        ag_sampler_free(s);
        return ag__fail_null(AG_ERR_NOMEM, "%s: out of memory", op);
    }
    if (!s) return NULL;
    s->replacement = replacement;
    memcpy(s->cum, weights, (size_t)n * sizeof(double));
    return s;
}

ag_sampler *ag_subset_random_sampler(const int64_t *indices, int64_t n) {
    if (n < 0 || (n > 0 && !indices)) return ag__fail_null(AG_ERR_ARG, "subset_random_sampler: %lld indices at %p", (long long)n, (const void *)indices);
    for (int64_t i = 0; i < n; i++)
        if (indices[i] < 0) return ag__fail_null(AG_ERR_INDEX, "subset_random_sampler: index %lld is negative", (long long)indices[i]);
    ag_sampler *s = sampler_new(SUBSET, n, n);
    if (s && !(s->indices = ag__alloc_n(n ? n : 1, sizeof(int64_t)))) {
        ag_sampler_free(s);
        return ag__fail_null(AG_ERR_NOMEM, "subset_random_sampler: out of memory");
    }
    if (s && n) memcpy(s->indices, indices, (size_t)n * sizeof(int64_t));
    return s;
}

ag_sampler *ag_distributed_sampler(int64_t n, int64_t num_replicas, int64_t rank, bool shuffle, bool drop_last) {
    if (n < 0 || num_replicas < 1 || rank < 0 || rank >= num_replicas)
        return ag__fail_null(AG_ERR_ARG, "distributed_sampler: n %lld, rank %lld of num_replicas %lld", (long long)n,
                             (long long)rank, (long long)num_replicas);
    /* ceil(n / W) per rank, padded cyclically, or floor(n / W) with drop_last */
    int64_t share = drop_last ? n / num_replicas : n / num_replicas + (n % num_replicas != 0);
    ag_sampler *s = sampler_new(DISTRIBUTED, n, share);
    if (s && !(s->order = ag__alloc_n(n ? n : 1, sizeof(int64_t)))) {
        ag_sampler_free(s);
        return ag__fail_null(AG_ERR_NOMEM, "distributed_sampler: out of memory");
    }
    if (!s) return NULL;
    for (int64_t i = 0; i < n; i++) s->order[i] = i;
    s->shuffle = shuffle;
    s->replicas = num_replicas;
    s->rank = rank;
    return s;
}

ag_sampler *ag_custom_sampler(const ag_sampler_callbacks *cb) {
    if (!cb || !cb->len || !cb->fill) {
        if (cb && cb->free) cb->free(cb->ctx);
        return ag__fail_null(AG_ERR_ARG, "custom_sampler: len and fill are needed");
    }
    ag_sampler *s = sampler_new(CUSTOM, -1, 0);
    if (!s) {
        if (cb->free) cb->free(cb->ctx);
        return NULL;
    }
    s->cb = *cb;
    return s;
}

void ag_sampler_free(ag_sampler *s) {
    if (!s) return;
    if (s->kind == CUSTOM && s->cb.free) s->cb.free(s->cb.ctx);
    ag__free(s->cum);
    ag__free(s->indices);
    ag__free(s->order);
    ag__free(s);
}

int64_t ag_sampler_len(const ag_sampler *s) {
    if (!s) return -1;
    return s->kind == CUSTOM ? s->cb.len(s->cb.ctx) : s->num_samples;
}

bool ag__sampler_is_permutation(const ag_sampler *s) {
    return s->kind == SEQUENTIAL || s->kind == SUBSET || (s->kind == RANDOM && !s->replacement && s->num_samples == s->n);
}

int64_t ag__sampler_range(const ag_sampler *s) {
    if (s->kind == CUSTOM) return -1;
    if (s->kind != SUBSET) return s->n;
    int64_t m = 0;
    for (int64_t i = 0; i < s->n; i++)
        if (s->indices[i] + 1 > m) m = s->indices[i] + 1;
    return m;
}

const int64_t *ag__sampler_shared_order(const ag_sampler *s) { return s && s->kind == DISTRIBUTED ? s->order : NULL; }

/* out[k] = all[(rank + k·W) mod n], k < share: the order padded cyclically or cut. */
void ag__sampler_take_shared(ag_sampler *s, const int64_t *all, int64_t *out) {
    if (s->order != all) memcpy(s->order, all, (size_t)s->n * sizeof(int64_t));
    for (int64_t k = 0; k < s->num_samples; k++) out[k] = s->order[(s->rank + k * s->replicas) % s->n];
}

/* One draw of i with probability w[i] / total among w (weights, zeroed once drawn). */
static int64_t draw_weighted(ag__gen *g, const double *w, int64_t n, double total) {
    double u = ag__gen_uniform(g) * total, acc = 0;
    int64_t last = 0;
    for (int64_t i = 0; i < n; i++) {
        if (w[i] <= 0) continue;
        acc += w[i];
        last = i;
        if (u < acc) return i;
    }
    return last; /* u rounded up to total */
}

ag_status ag__sampler_fill(ag_sampler *s, ag__gen *g, int64_t epoch, int64_t *out) {
    int64_t m = s->num_samples;
    switch (s->kind) {
    case SEQUENTIAL:
        for (int64_t i = 0; i < m; i++) out[i] = i;
        return AG_OK;
    case RANDOM:
        if (s->replacement) {
            for (int64_t i = 0; i < m; i++) out[i] = (int64_t)ag__gen_below(g, (uint64_t)s->n);
            return AG_OK;
        }
        if (m == s->n) { /* the loader's shuffle: a Fisher-Yates permutation of 0 .. n-1 */
            for (int64_t i = 0; i < m; i++) out[i] = i;
            ag__gen_shuffle(g, out, m);
            return AG_OK;
        } else {
            int64_t *all = ag__alloc_n(s->n ? s->n : 1, sizeof(int64_t));
            if (!all) return ag__fail(AG_ERR_NOMEM, "sampler: out of memory");
            for (int64_t i = 0; i < s->n; i++) all[i] = i;
            ag__gen_shuffle(g, all, s->n);
            memcpy(out, all, (size_t)m * sizeof(int64_t));
            ag__free(all);
            return AG_OK;
        }
    case SUBSET:
        memcpy(out, s->indices, (size_t)m * sizeof(int64_t));
        ag__gen_shuffle(g, out, m);
        return AG_OK;
    case WEIGHTED: {
        double total = 0;
        for (int64_t i = 0; i < s->n; i++) total += s->cum[i];
        if (s->replacement) { /* inverse of the cumulative weights, by bisection */
            double *c = ag__alloc_n(s->n, sizeof(double));
            if (!c) return ag__fail(AG_ERR_NOMEM, "sampler: out of memory");
            double acc = 0;
            for (int64_t i = 0; i < s->n; i++) c[i] = acc += s->cum[i];
            for (int64_t k = 0; k < m; k++) {
                double u = ag__gen_uniform(g) * acc;
                int64_t lo = 0, hi = s->n - 1;
                while (lo < hi) {
                    int64_t mid = lo + (hi - lo) / 2;
                    if (c[mid] > u) hi = mid;
                    else lo = mid + 1;
                }
                while (s->cum[lo] <= 0) lo--; /* u == acc exactly: the last positive weight */
                out[k] = lo;
            }
            ag__free(c);
            return AG_OK;
        }
        double *w = ag__alloc_n(s->n, sizeof(double));
        if (!w) return ag__fail(AG_ERR_NOMEM, "sampler: out of memory");
        memcpy(w, s->cum, (size_t)s->n * sizeof(double));
        for (int64_t k = 0; k < m; k++) {
            out[k] = draw_weighted(g, w, s->n, total);
            total -= w[out[k]];
            w[out[k]] = 0;
        }
        ag__free(w);
        return AG_OK;
    }
    case DISTRIBUTED: /* the order every rank draws, then this rank's share of it */
        for (int64_t i = 0; i < s->n; i++) s->order[i] = i;
        if (s->shuffle) ag__gen_shuffle(g, s->order, s->n); /* the same draws as the loader's shuffle */
        ag__sampler_take_shared(s, s->order, out);
        return AG_OK;
    case CUSTOM: {
        ag_clear_error();
        ag_status st = s->cb.fill(s->cb.ctx, epoch, ag__gen_next(g), out);
        if (st && !ag_last_status()) ag__fail(st, "sampler: fill returned %s without a message", ag_status_name(st));
        return st;
    }
    }
    return AG_OK;
}

ag_status ag_sampler_sample(ag_sampler *s, uint64_t seed, int64_t *out) {
    if (!s || !out) return ag__fail(AG_ERR_ARG, "sampler_sample: NULL argument");
    ag__gen g;
    ag__gen_seed(&g, seed);
    return ag__sampler_fill(s, &g, 0, out);
}

ag_status ag_batch_sampler(int64_t len, int64_t batch_size, bool drop_last, int64_t *starts, int64_t *nbatches) {
    if (len < 0 || batch_size < 1 || !starts || !nbatches)
        return ag__fail(AG_ERR_ARG, "batch_sampler: length %lld, batch size %lld", (long long)len, (long long)batch_size);
    int64_t nb = drop_last ? len / batch_size : len / batch_size + (len % batch_size != 0);
    for (int64_t k = 0; k < nb; k++) starts[k] = k * batch_size;
    starts[nb] = nb * batch_size < len ? nb * batch_size : len;
    *nbatches = nb;
    return AG_OK;
}

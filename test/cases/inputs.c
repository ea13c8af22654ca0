/*
 * inputs.c - inputs for calling registered ops at any size: the test rows'
 * input shapes scaled up, filled from the row's domain.
 */
#include <math.h>
#include "test/cases/op_cases.h"
#include "agrad/agrad.h"
#include "core/internal.h"

double opc_draw(ag_domain domain, int64_t k, int64_t n) {
    double u = 0;
    switch (domain) {
    case AG_DOMAIN_ANY:
        u = -2 + 4 * ag__rand_uniform();
        if (fabs(u) < 0.05) u = u < 0 ? -0.05 - u : 0.05 + u;
        return u;
    case AG_DOMAIN_POSITIVE: return 0.5 + 1.5 * ag__rand_uniform();
    case AG_DOMAIN_UNIT:
        u = -0.9 + 1.8 * ag__rand_uniform();
        if (fabs(u) < 0.05) u = u < 0 ? -0.05 - u : 0.05 + u;
        return u;
    case AG_DOMAIN_PROBABILITY: return 0.05 + 0.9 * ag__rand_uniform();
    case AG_DOMAIN_ABOVE_ONE: return 1.2 + 1.8 * ag__rand_uniform();
    case AG_DOMAIN_DISTINCT: /* distinct values, scrambled; kept within [-2, 2] */
        return -2 + 4 * (double)((k * 7919) % (n ? n : 1)) / (double)(n ? n : 1);
    }
    return u;
}

ag_tensor *opc_input(const ag_shape *shape, ag_domain domain, bool noncontig, ag_dtype dtype) {
    int64_t n = ag__numel(shape->ndim, shape->dim);
    ag_tensor *t;
    if (noncontig && shape->ndim >= 2) {
        ag_shape rev = *shape;
        int perm[AG_MAX_DIMS];
        for (int d = 0; d < shape->ndim; d++) {
            rev.dim[d] = shape->dim[shape->ndim - 1 - d];
            perm[d] = shape->ndim - 1 - d;
        }
        t = ag_permute(ag_empty(rev, dtype), perm);
    } else {
        t = ag_empty(*shape, dtype);
    }
    if (!t) return NULL;
    int64_t idx[AG_MAX_DIMS] = {0}, off = t->offset;
    for (int64_t k = 0; k < n; k++) { /* row-major over the logical shape */
        double v = opc_draw(domain, k, n);
        if (dtype == AG_F64) ((double *)t->storage->data)[off] = v;
        else ((float *)t->storage->data)[off] = (float)v;
        for (int d = t->ndim - 1; d >= 0; d--) {
            off += t->stride[d];
            if (++idx[d] < t->shape[d]) break;
            off -= t->stride[d] * t->shape[d];
            idx[d] = 0;
        }
    }
    return t;
}

ag_tensor *opc_index(int ndim, const int64_t *shape, int64_t a, int64_t b, int64_t m) {
    ag_shape sh = {ndim, {0}};
    for (int d = 0; d < ndim; d++) sh.dim[d] = shape[d];
    ag_tensor *t = ag_empty(sh, AG_I64);
    if (!t) return NULL;
    int64_t *v = ag_data(t), n = ag_numel(t), step = a % m, x = b % m, k = 0;
    /* (a·k + b) mod m, stepped without a division (the benchmarks time the op, not this):
     * OPC_LANES independent lanes k = j (mod OPC_LANES), each stepped by OPC_LANES·a mod m, a
     * loop gcc vectorises (one chain of adds and compares took about 1 ns a value, more than
     * the gather it fed: session 18), then the tail from where the lanes stopped */
    enum { OPC_LANES = 8 };
    if (n >= OPC_LANES) {
        int64_t lane[OPC_LANES], wide = 0;
        for (int j = 0; j < OPC_LANES; j++) {
            lane[j] = x;
            x += step;
            if (x >= m) x -= m;
            wide += step;
            if (wide >= m) wide -= m;
        }
        for (; k + OPC_LANES <= n; k += OPC_LANES)
            for (int j = 0; j < OPC_LANES; j++) {
                v[k + j] = lane[j];
                lane[j] += wide;
                lane[j] -= lane[j] >= m ? m : 0;
            }
        x = lane[0];
    }
    for (; k < n; k++) {
        v[k] = x;
        x += step;
        if (x >= m) x -= m;
    }
    return t;
}

ag_tensor *opc_lane_index(int ndim, const int64_t *shape, int64_t m) {
    ag_shape sh = {ndim, {0}};
    for (int d = 0; d < ndim; d++) sh.dim[d] = shape[d];
    ag_tensor *t = ag_empty(sh, AG_I64);
    if (!t) return NULL;
    int64_t *v = ag_data(t), n = ag_numel(t), last = ndim ? shape[ndim - 1] : 1, pos[AG_MAX_DIMS] = {0}, start = 0;
    if (n == 0) return t;
    /* row by row: start is the outer coordinates' sum mod m, stepped without a division (the
     * benchmarks time the op, not this) but where a dim wraps */
    for (int64_t r = 0; r < n / last; r++, v += last) {
        for (int64_t j = 0, x = start; j < last; j++) {
            v[j] = x;
            if (++x == m) x = 0;
        }
        for (int d = ndim - 2; d >= 0; d--) {
            if (++pos[d] < shape[d]) {
                if (++start == m) start = 0;
                break;
            }
            pos[d] = 0;
            start = ((start - (shape[d] - 1)) % m + m) % m;
        }
    }
    return t;
}

ag_tensor *opc_call_with_aux(ag_tensor *const *in, int n, void *ctx) {
    const ag_op_test *row = ctx;
    if (ag__composite_begin(row->name)) return NULL; /* owns the index or mask made here */
    return ag__composite_end(row->call_aux(in, n, row->aux(in, n, row), row));
}

int64_t opc_max_numel(const ag_op_case *c) {
    int64_t m = 0;
    for (int i = 0; i < c->n; i++) {
        int64_t e = ag__numel(c->shape[i].ndim, c->shape[i].dim);
        if (e > m) m = e;
    }
    return m;
}

bool opc_scale(const ag_op_case *c, int64_t target, ag_op_case *out) {
    *out = *c;
    if (opc_max_numel(c) >= target) return true;
    bool scalable = false; /* some input grows: it has a dim above 1 and none of 0 (an empty one never grows) */
    for (int i = 0; i < c->n; i++)
        if (ag__numel(c->shape[i].ndim, c->shape[i].dim) > 0)
            for (int d = 0; d < c->shape[i].ndim; d++) scalable |= c->shape[i].dim[d] > 1;
    if (!scalable) return false;
    for (int64_t k = 2;; k++) {
        for (int i = 0; i < c->n; i++)
            for (int d = 0; d < c->shape[i].ndim; d++)
                out->shape[i].dim[d] = c->shape[i].dim[d] > 1 ? c->shape[i].dim[d] * k : c->shape[i].dim[d];
        if (opc_max_numel(out) >= target) return true;
    }
}

bool opc_case_for(const ag_op_test *row, int64_t target, ag_op_case *out) {
    for (int c = 0; c < 4 && row->cases[c].n > 0; c++)
        if (opc_scale(&row->cases[c], target, out)) return true;
    return false;
}

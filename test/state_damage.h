/*
 * state_damage.h - damaging saved state for the tests of what a load_state_dict
 * accepts: a dict with one entry replaced or left out, a tensor with one bad
 * element, and the comparison that shows a refused load changed nothing.
 */
#ifndef AGRAD_STATE_DAMAGE_H
#define AGRAD_STATE_DAMAGE_H

#include <string.h>
#include "core/iter.h"

/* A new dict sharing sd's tensors, with the entry name replaced by t (left out when t is NULL). */
static ag_state_dict *dict_with(const ag_state_dict *sd, const char *name, ag_tensor *t) {
    ag_state_dict *out = ag_state_dict_new();
    for (int i = 0; i < ag_state_dict_size(sd); i++) {
        const char *n = ag_state_dict_name(sd, i);
        ag_tensor *v = strcmp(n, name) == 0 ? t : ag_state_dict_tensor(sd, i);
        if (v) ag_state_dict_set(out, n, v);
    }
    return out;
}

/* A copy of t (no scope, released by the caller) whose last element is v. */
static ag_tensor *damaged(const ag_tensor *t, double v) {
    ag_tensor *c = ag__new_unowned(t->dtype, t->ndim, t->shape, false);
    ag__copy_into(c, t);
    int64_t last = ag_numel(c) - 1;
    char *p = ag__ptr(c);
    switch (c->dtype) {
    case AG_F32: ((float *)p)[last] = (float)v; break;
    case AG_F64: ((double *)p)[last] = v; break;
    case AG_I64: ((int64_t *)p)[last] = (int64_t)v; break;
    default: ((uint8_t *)p)[last] = (uint8_t)v; break;
    }
    return c;
}

/* The element i of a tensor as a double (any layout). */
static double element_at(const ag_tensor *t, int64_t i) {
    int64_t off = t->offset;
    for (int d = t->ndim - 1; d >= 0; d--) {
        off += i % t->shape[d] * t->stride[d];
        i /= t->shape[d];
    }
    return ag__read(t, off);
}

/* Whether two dicts hold the same names and bit-identical values (NaN equal to NaN). */
static bool same_dicts(const ag_state_dict *a, const ag_state_dict *b) {
    if (ag_state_dict_size(a) != ag_state_dict_size(b)) return false;
    for (int i = 0; i < ag_state_dict_size(a); i++) {
        const ag_tensor *x = ag_state_dict_tensor(a, i), *y = ag_state_dict_get(b, ag_state_dict_name(a, i));
        if (!y || ag_numel(x) != ag_numel(y)) return false;
        for (int64_t k = 0; k < ag_numel(x); k++) {
            double u = element_at(x, k), v = element_at(y, k);
            if (memcmp(&u, &v, sizeof u) != 0) return false;
        }
    }
    return true;
}

#endif

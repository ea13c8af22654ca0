/*
 * core/random.c - one seeded generator per thread (xoshiro256**), so that every
 * random result is reproducible from ag_manual_seed and threads do not share state.
 */
#include <math.h>
#include "core/internal.h"

#define DEFAULT_SEED 0x5eed5eedULL

static _Thread_local uint64_t state[4];
static _Thread_local bool seeded;

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void ag_manual_seed(uint64_t seed) {
    for (int i = 0; i < 4; i++) state[i] = splitmix64(&seed);
    seeded = true;
}

ag_tensor *ag_get_rng_state(void) {
    if (!seeded) ag_manual_seed(DEFAULT_SEED);
    ag_tensor *t = ag__new(AG_I64, 1, (int64_t[]){4});
    if (!t) return ag__fail_null(AG_ERR_NOMEM, "get_rng_state: out of memory");
    for (int i = 0; i < 4; i++) ((int64_t *)ag__ptr(t))[i] = (int64_t)state[i]; /* the bits, unchanged */
    return t;
}

ag_status ag__rng_check_state(const ag_tensor *t) {
    if (!t) return ag__fail(AG_ERR_ARG, "set_rng_state: state is NULL");
    char s[AG_SHAPE_STR];
    if (t->dtype != AG_I64) return ag__fail(AG_ERR_DTYPE, "set_rng_state: the state is int64, got %s", ag_dtype_name(t->dtype));
    if (t->ndim != 1 || t->shape[0] != 4)
        return ag__fail(AG_ERR_SHAPE, "set_rng_state: the state has shape [4], got %s", ag__tshape(s, t));
    uint64_t w[4];
    for (int i = 0; i < 4; i++) w[i] = (uint64_t)((const int64_t *)ag__ptr(t))[i * t->stride[0]];
    if (!(w[0] | w[1] | w[2] | w[3]))
        return ag__fail(AG_ERR_VALUE, "set_rng_state: an all-zero state would make the generator return only zeros");
    return AG_OK;
}

ag_status ag_set_rng_state(const ag_tensor *t) {
    AG_CHECK_HANDLES(AG_ERR_ARG, "set_rng_state", t);
    ag_status st = ag__rng_check_state(t);
    if (st) return st;
    for (int i = 0; i < 4; i++) state[i] = (uint64_t)((const int64_t *)ag__ptr(t))[i * t->stride[0]];
    seeded = true;
    return AG_OK;
}

uint64_t ag__rand_u64(void) {
    if (!seeded) ag_manual_seed(DEFAULT_SEED);
    return ag__xoshiro_next(state);
}

/* out[i] = scale if uniform_i < keep else 0, drawing the same values as n calls of
 * ag__rand_uniform (so results do not depend on which path drew them), with the
 * state in registers rather than thread-local memory. */
void ag__rand_keep_mask(void *out, ag_dtype dtype, int64_t n, double keep, double scale) {
    if (!seeded) ag_manual_seed(DEFAULT_SEED);
    uint64_t s[4] = {state[0], state[1], state[2], state[3]};
    const double bound = keep * 0x1.0p53; /* u·2^-53 < keep  <=>  u < keep·2^53, exactly */
    if (dtype == AG_F64) {
        double *o = out;
        for (int64_t i = 0; i < n; i++) o[i] = (double)(ag__xoshiro_next(s) >> 11) < bound ? scale : 0.0;
    } else {
        float *o = out;
        const float fs = (float)scale;
        for (int64_t i = 0; i < n; i++) o[i] = (double)(ag__xoshiro_next(s) >> 11) < bound ? fs : 0.0f;
    }
    for (int i = 0; i < 4; i++) state[i] = s[i];
}

/* Uniform on [0, 1) with 53 random bits. */
double ag__rand_uniform(void) { return (double)(ag__rand_u64() >> 11) * 0x1.0p-53; }

/* Standard normal by Box-Muller (one value per call, so results do not depend on call parity). */
double ag__rand_normal(void) {
    double u1 = 1.0 - ag__rand_uniform(); /* (0, 1] */
    double u2 = ag__rand_uniform();
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

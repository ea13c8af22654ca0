/*
 * data/random.c - the private generators of random_split and the loader
 * (xoshiro256** seeded through splitmix64, as the global one), so that data
 * order is reproducible from its own seed and leaves the global stream alone.
 */
#include <math.h>
#include "data/internal.h"

void ag__gen_seed(ag__gen *g, uint64_t seed) {
    for (int i = 0; i < 4; i++) g->s[i] = ag__splitmix64(&seed);
}

uint64_t ag__gen_next(ag__gen *g) { return ag__xoshiro_next(g->s); }

/* Rejection sampling: draws below the largest multiple of n are uniform mod n. */
uint64_t ag__gen_below(ag__gen *g, uint64_t n) {
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t r;
    do r = ag__gen_next(g);
    while (r >= limit);
    return r % n;
}

/* a[i] <-> a[j], j uniform on [0, i], for i from the end: every permutation equally likely. */
void ag__gen_shuffle(ag__gen *g, int64_t *a, int64_t n) {
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)ag__gen_below(g, (uint64_t)i + 1);
        int64_t t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}

/* 53 random bits as a double in [0, 1). */
double ag__gen_uniform(ag__gen *g) { return (double)(ag__gen_next(g) >> 11) * 0x1.0p-53; }

/* Box-Muller: sqrt(-2 ln u1) cos(2 pi u2), u1 in (0, 1]. */
double ag__gen_normal(ag__gen *g) {
    double u1 = 1.0 - ag__gen_uniform(g), u2 = ag__gen_uniform(g);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

uint64_t ag__mix_seed(uint64_t a, uint64_t b) {
    uint64_t x = a ^ (b * 0xd1342543de82ef95ULL);
    return ag__splitmix64(&x);
}

uint64_t ag_item_seed(uint64_t seed, int64_t epoch, int64_t position) {
    return ag__mix_seed(ag__mix_seed(seed, (uint64_t)epoch), (uint64_t)position);
}

/*
 * data/random.c - the private generators of random_split and the loader
 * (xoshiro256** seeded through splitmix64, as the global one), so that data
 * order is reproducible from its own seed and leaves the global stream alone.
 */
#include "data/internal.h"

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void ag__gen_seed(ag__gen *g, uint64_t seed) {
    for (int i = 0; i < 4; i++) g->s[i] = splitmix64(&seed);
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

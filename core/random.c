/*
 * core/random.c - one seeded generator per thread (xoshiro256**), so that every
 * random result is reproducible from ag_manual_seed and threads do not share state;
 * keep masks (dropout) add a counter-based generator keyed by one draw of it.
 */
#include <math.h>
#include <omp.h>
#include "core/internal.h"
#include "core/parallel.h"
#include "core/sum.h"

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

/* ---- keep masks: a counter-based generator ------------------------------------------------------------
 * A mask takes one draw from the caller's stream as its key k.  Pair j of elements (2j, 2j + 1) then
 * takes the 64 bits h(k, j) = mix(k + (j + 1)·γ), where mix and γ are SplitMix64's (Steele, Lea and Flood
 * 2014: SplitMix64 is exactly this map of a counter, and passes BigCrush); element 2j is kept when the low
 * 32 bits are below keep·2^32, element 2j + 1 when the high 32 bits are (a resolution of 2^-32 in keep;
 * PyTorch's float dropout draws 24 bits).  Any thread computes any element, so the mask is split over
 * threads and vectorised (the 64-bit products, AVX2 clone) and is the same for every thread count;
 * ag_manual_seed still fixes every key. */
static inline uint64_t counter_mix(uint64_t key, uint64_t j) {
    uint64_t z = key + (j + 1) * 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* The mask kernel is cloned for x86-64-v4 too: AVX2 has no 64-bit multiply, AVX-512's vpmullq vectorises
 * counter_mix's two ([131 072] float32, one thread, CPU time: 85 -> 27 µs).  Integer arithmetic and a
 * select: every clone gives the same bits. */
#ifdef AG_X86_INTRINSICS
#define KEEP_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define KEEP_CLONES
#endif

/* Elements [2·j0, 2·j1) of the mask (bound = keep·2^32 rounded up, at most 2^32: compared in int64) */
#define KEEP_PAIRS(SUF, T)                                                                                      \
    KEEP_CLONES static void keep_pairs_##SUF(T *restrict o, int64_t j0, int64_t j1, uint64_t key, int64_t bound, \
                                               T scale) {                                                     \
        for (int64_t j = j0; j < j1; j++) {                                                                   \
            const uint64_t h = counter_mix(key, (uint64_t)j);                                                 \
            o[2 * j] = (int64_t)(h & 0xffffffffu) < bound ? scale : 0;                                        \
            o[2 * j + 1] = (int64_t)(h >> 32) < bound ? scale : 0;                                            \
        }                                                                                                     \
    }                                                                                                         \
    /* The whole mask of n elements: pairs [j0, j1) of it, and the last element alone when n is odd */        \
    static void keep_run_##SUF(T *o, int64_t n, int64_t j0, int64_t j1, uint64_t key, int64_t bound, T scale) { \
        keep_pairs_##SUF(o, j0, j1, key, bound, scale);                                                       \
        if (n % 2 && j1 == n / 2) o[n - 1] = (int64_t)(counter_mix(key, (uint64_t)j1) & 0xffffffffu) < bound ? scale : 0; \
    }
KEEP_PAIRS(f32, float)
KEEP_PAIRS(f64, double)

void ag__rand_keep_mask(void *out, ag_dtype dtype, int64_t n, double keep, double scale) {
    const uint64_t key = ag__rand_u64();
    /* u < keep·2^32 exactly <=> u < ceil(keep·2^32) for an integer u (keep in [0, 1]) */
    const int64_t bound = (int64_t)ceil(keep * 0x1.0p32), pairs = n / 2;
    const int nt = ag__threads_for(n);
    if (nt <= 1) { /* no parallel region at all (docs/design.md: one-thread teams) */
        if (dtype == AG_F64) keep_run_f64(out, n, 0, pairs, key, bound, scale);
        else keep_run_f32(out, n, 0, pairs, key, bound, (float)scale);
        return;
    }
#pragma omp parallel num_threads(nt)
    {
        const int t = omp_get_thread_num(), used = omp_get_num_threads();
        const int64_t j0 = ag__share_start(pairs, t, used), j1 = ag__share_start(pairs, t + 1, used);
        if (dtype == AG_F64) keep_run_f64(out, n, j0, j1, key, bound, scale);
        else keep_run_f32(out, n, j0, j1, key, bound, (float)scale);
    }
}

/* Uniform on [0, 1) with 53 random bits. */
double ag__rand_uniform(void) { return (double)(ag__rand_u64() >> 11) * 0x1.0p-53; }

/* Standard normal by Box-Muller (one value per call, so results do not depend on call parity). */
double ag__rand_normal(void) {
    double u1 = 1.0 - ag__rand_uniform(); /* (0, 1] */
    double u2 = ag__rand_uniform();
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/*
 * test_random_paths.c - the random fills' explicit AVX-512 kernels (core/random.c, where the CPU has
 * x86-64-v4) against the C kernels (ag__rand_avx512 = false), bit for bit: rand and randn, float32 and
 * float64, standard and affine, over sizes around the vector widths (8 and 16 pairs), the 512-pair
 * blocks and the thread split, written at element offsets that are not multiples of the vector width,
 * on 1 and 2 threads, and neither path writes outside its n elements.
 */
#include <stdlib.h>
#include <string.h>
#include "agrad/agrad.h"
#include "core/internal.h"
#include "core/sum.h"
#include "tap.h"

/* Sizes: the lone last element (odd n), whole and partial vectors of pairs, the block of 512 pairs, and
 * two past the threaded threshold whose second thread starts at an odd pair (196623 and 196618 pairs) */
static const int64_t sizes[] = {1,  2,  3,  5,  15, 16,  17,  31,   32,   33,   47,    63,    64,
                                65, 97, 255, 1023, 1024, 1025, 1027, 2049, 4099, 393245, 393236};
#define OFFSETS 3 /* the fill starts at element 0, 1 or 5 of the buffer */
static const int offsets[OFFSETS] = {0, 1, 5};
#define GUARD 8 /* elements before and after the fill that neither path may touch */

/* One fill of n elements at element off of buf (GUARD + off + n + GUARD elements, all bytes 0xa5 first) */
static void fill(unsigned char *buf, ag_dtype dt, int64_t n, int off, uint64_t key, bool normal, double a, double b,
                 bool wide) {
    const size_t es = ag_dtype_size(dt);
    memset(buf, 0xa5, (size_t)(2 * GUARD + off + n) * es);
    ag__rand_avx512 = wide;
    ag__rand_fill_keyed(buf + (size_t)(GUARD + off) * es, dt, n, key, normal, a, b);
    ag__rand_avx512 = true;
}

/* Whether the guards around the n elements at off still hold 0xa5 */
static bool guards_intact(const unsigned char *buf, size_t es, int64_t n, int off) {
    const size_t head = (size_t)(GUARD + off) * es, tail = (size_t)(GUARD + off + n) * es;
    for (size_t i = 0; i < head; i++)
        if (buf[i] != 0xa5) return false;
    for (size_t i = tail; i < tail + GUARD * es; i++)
        if (buf[i] != 0xa5) return false;
    return true;
}

static void test_paths(ag_dtype dt, bool normal, bool affine, int threads) {
    const size_t es = ag_dtype_size(dt);
    const int64_t most = sizes[sizeof sizes / sizeof *sizes - 2];
    unsigned char *w = malloc((size_t)(2 * GUARD + 5 + most) * es), *c = malloc((size_t)(2 * GUARD + 5 + most) * es);
    const double a = affine ? (normal ? 0.25 : -3) : 0, b = affine ? (normal ? 1.5 : 7) : 1;
    const int saved = ag_get_num_threads();
    ag_set_num_threads(threads);
    int64_t bad = 0, unguarded = 0, first = -1;
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++)
        for (int o = 0; o < OFFSETS; o++) {
            const int64_t n = sizes[s];
            const uint64_t key = 0x9e3779b97f4a7c15ULL * (uint64_t)(7 * s + (size_t)o + 1);
            fill(w, dt, n, offsets[o], key, normal, a, b, true);
            fill(c, dt, n, offsets[o], key, normal, a, b, false);
            const size_t at = (size_t)(GUARD + offsets[o]) * es;
            if (memcmp(w + at, c + at, (size_t)n * es) != 0) {
                bad++;
                if (first < 0) first = n;
            }
            unguarded += !guards_intact(w, es, n, offsets[o]) || !guards_intact(c, es, n, offsets[o]);
        }
    ag_set_num_threads(saved);
    ok(bad == 0 && unguarded == 0,
       "%s%s %s, %d thread%s: the %s kernels give the C kernels' bits at %zu sizes x %d offsets (%lld differ, "
       "first at n = %lld; %lld wrote outside their elements)",
       normal ? "randn" : "rand", affine ? " (affine)" : "", ag_dtype_name(dt), threads, threads > 1 ? "s" : "",
       AG_VEC_512() ? "AVX-512" : "C (no AVX-512 here)", sizeof sizes / sizeof *sizes, OFFSETS, (long long)bad,
       (long long)first, (long long)unguarded);
    free(w);
    free(c);
}

int main(void) {
    const ag_dtype dts[] = {AG_F32, AG_F64};
    for (int d = 0; d < 2; d++)
        for (int normal = 0; normal < 2; normal++)
            for (int threads = 1; threads <= 2; threads++) test_paths(dts[d], normal, false, threads);
    test_paths(AG_F32, false, true, 2);
    test_paths(AG_F32, true, true, 1);
    test_paths(AG_F64, false, true, 1);
    test_paths(AG_F64, true, true, 2);
    return tap_done();
}

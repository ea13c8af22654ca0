/*
 * ops/lanesort.c - the stable sort of (key, index) items that the sorting ops
 * share (see ops/lanesort.h).
 *
 * Keys: a float's bits, sign-folded so that unsigned order is numeric order
 * (negative values have all bits flipped, the others the sign bit set), -0.0
 * mapped to 0.0's key and every NaN to the largest key; int64 with the sign bit
 * flipped; bytes as they are.  A descending sort inverts the key bits (NaN first),
 * so that the sort itself only ever runs ascending and stays stable.
 *
 * Lanes up to SHORT_LANE items: an insertion sort; longer: an LSD radix sort over
 * the key's bytes, 8 bits a pass, with all histograms counted in one read and
 * passes skipped where every item has the same digit.  On CPUs with AVX-512 lanes up
 * to RANK_LANE_4 (4-byte keys) or RANK_LANE_8 (8-byte) items take a rank sort instead
 * (below).  Measured on the 2-core
 * AVX-512 machine, 2^20 uniform float32 in lanes of n, one thread, CPU time, ns
 * per element (fill included; load 18):
 *
 *   n            4    16    32    48    64   128   256  1024
 *   insertion  6.5   9.8  11.6  13.3  14.8  21.6  36.2   112
 *   radix       91    28  17.4  14.0  12.5   9.9   8.6   8.3
 *
 * so the switch is at 48.
 *
 * Rank sort (session 18): item i goes to place #{j < i: key_j <= key_i} + #{j > i:
 * key_j < key_i}, its place in the stable order, counted by compares that AVX-512
 * runs 16 (uint32) or 8 (uint64) keys at a time: O(n^2) work without a branch on
 * the data and no histogram to clear and sum.  The same places as the stable sorts
 * above, so the same bits.  One read first finds lanes in order already (kept as
 * they are: a lane of one value, a sorted lane) and the bytes that differ between
 * keys: a lane longer than RANK_PER_PASS per such byte takes the radix sort (few
 * passes: cheap).  Measured (same host, 2^15 elements in lanes of n, one thread,
 * CPU time, ns per element, fill included, median of 5 alternated runs of main's
 * build and this one, each the median of 31 rounds; load 10-12; "uniform": float
 * in [-1000, 1000) with 3 decimals, int64 over its whole range; "0..2": values 0, 1
 * and 2, ties everywhere):
 *
 *   n                    8    16    32    48    64    76    96   112   128   160   192
 *   f32 uniform before 8.5  10.6  12.1  13.5  12.4  11.1   9.6   9.0   8.5   7.8   7.4
 *   f32 uniform rank   5.0   5.3   5.9   6.2   6.7   6.6   7.3   7.5   8.3*  7.6*  7.0*
 *   f32 0..2 before    6.8   8.9  10.1  11.0   9.2   8.4   8.2   7.4   7.4   6.8   6.7
 *   f32 0..2 rank      5.0   5.2   5.9   6.3   6.8   6.6   7.2   7.3   7.2*  6.7*  6.5*
 *   f64 uniform before 8.9  10.9  12.7  14.4  24.1  21.8  18.7  18.0  17.0  15.8  15.4
 *   f64 uniform rank   7.1   7.3   7.4   8.1   8.9   9.1   9.8  10.5  11.0  12.6  15.7*
 *   i64 uniform before 8.1  10.2  12.3  13.1  21.1  19.8  16.8  16.2  15.4  14.5  13.0
 *   i64 uniform rank   6.2   6.3   6.6   7.1   8.4   8.6   8.6   9.2  10.4  12.9  13.1*
 *   i64 0..2 before    6.4   8.8   9.9  10.7   6.3   5.8   5.2   5.0   4.7   4.6   4.5
 *   i64 0..2 after     5.9   6.4   6.6   7.4   6.9*  6.3*  6.0*  5.6*  5.4*  5.1*  4.4*
 *
 * (* the radix sort; the last row was measured with one-pass lanes from 49 items
 * to the radix sort, now from 41).  So the rank sort takes 4-byte keys up
 * to 112 items, 8-byte ones up to 160.  Dropped: a stable merge sort of
 * insertion-sorted runs of 8 or 16 (25-40 ns, the merges' branches); uint32 ranks
 * over keys padded to whole vectors, counting < and == in one loop (6.3 against 6.8
 * ns for float32 lanes of 76, but twice the time in lanes full of ties); ranks of
 * 16 keys at a time against each key broadcast, or with the key's own block
 * masked (no faster, or not vectorised by gcc 12).  Float32 [1024, 1024] sorted along dim 1, forward and
 * backward (bench_steps sort_1k, one thread, CPU time): the stable merge sort of
 * (double, int64) pairs this replaced took 65.7 ms, the radix sort 11.1 ms.
 *
 * One item of a lane (kthvalue, the medians) comes from a radix select, which keeps
 * only the items of the wanted digit, byte after byte; the first k of a lane (topk,
 * kthvalue with k small) from a bounded heap, whose float32 items are the key and
 * the index packed in one uint64.  A single long lane is cut into runs sorted on
 * all threads, then merged pairwise, each merge cut by merge path into one part
 * per thread.
 */
#include <omp.h>
#include <string.h>
#include "core/parallel.h"
#include "core/sum.h"
#include "ops/lanesort.h"

/* Lanes this long or shorter are insertion-sorted (measured: see the comment above). */
#define SHORT_LANE 48
/* Lanes this long or shorter take the rank sort where AVX-512 runs (4- and 8-byte keys; measured:
 * see the comment above), and 1-byte keys up to RANK_LANE_4 as well. */
#define RANK_LANE_4 112
#define RANK_LANE_8 160
/* A lane whose keys differ in p bytes only (p radix passes) and that is longer than RANK_PER_PASS * p
 * takes the radix sort all the same (measured: float64 lanes of 0, 1 and 2, two passes, of 96 and
 * more; int64 lanes of 0, 1 and 2, one pass, of 64 and more). */
#define RANK_PER_PASS 40
/* Longest run one radix sort takes (its counts are 32-bit); longer ones are merged halves. */
#define RADIX_MAX ((int64_t)1 << 31)
/* At most this many runs in a parallel sort of one lane. */
#define MAX_RUNS 64

int ag__sort_threads(int64_t n) { return ag__threads_for(n >= AG_SORT_PAR_MIN ? AG_PAR_MIN_ELEMS : n); }

int ag__sort_key_bytes(ag_dtype dtype) {
    switch (dtype) {
    case AG_F32: return 4;
    case AG_F64:
    case AG_I64: return 8;
    default: return 1;
    }
}

/* Sign-folded keys: unsigned order = numeric order, one key for ±0, NaN largest. */
static inline uint64_t key_f32(float v) {
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    uint32_t key = u ^ ((0u - (u >> 31)) | 0x80000000u);
    key = v == 0 ? 0x80000000u : key; /* selects, not branches: loops of keys vectorise */
    return v != v ? 0xFFFFFFFFu : key;
}
static inline uint64_t key_f64(double v) {
    uint64_t u;
    memcpy(&u, &v, sizeof u);
    if (v == 0) return (uint64_t)1 << 63;
    if (v != v) return UINT64_MAX;
    return u ^ ((0u - (u >> 63)) | (uint64_t)1 << 63);
}

/* The ascending key of element j of x (dtype as ag__sort_fill takes). */
static inline uint64_t key_of(const void *x, ag_dtype dtype, int64_t j) {
    switch (dtype) {
    case AG_F32: return key_f32(((const float *)x)[j]);
    case AG_F64: return key_f64(((const double *)x)[j]);
    case AG_I64: return (uint64_t)((const int64_t *)x)[j] ^ (uint64_t)1 << 63;
    default: return ((const uint8_t *)x)[j];
    }
}

/* All ones in the key bytes of dtype: xor'ed into a key, it inverts the order. */
static uint64_t key_mask(ag_dtype dtype) {
    const int b = ag__sort_key_bytes(dtype);
    return b == 8 ? UINT64_MAX : ((uint64_t)1 << (8 * b)) - 1;
}

void ag__sort_fill(ag_sort_item *it, const void *x, ag_dtype dtype, int64_t n, int64_t stride, bool descending) {
    const uint64_t flip = descending ? key_mask(dtype) : 0;
    switch (dtype) { /* one loop per dtype, so that each is a tight loop */
    case AG_F32:
        for (int64_t k = 0; k < n; k++) it[k] = (ag_sort_item){key_of(x, AG_F32, k * stride) ^ flip, k};
        break;
    case AG_F64:
        for (int64_t k = 0; k < n; k++) it[k] = (ag_sort_item){key_of(x, AG_F64, k * stride) ^ flip, k};
        break;
    case AG_I64:
        for (int64_t k = 0; k < n; k++) it[k] = (ag_sort_item){key_of(x, AG_I64, k * stride) ^ flip, k};
        break;
    default:
        for (int64_t k = 0; k < n; k++) it[k] = (ag_sort_item){key_of(x, dtype, k * stride) ^ flip, k};
        break;
    }
}

/* Stable insertion sort by key. */
static void insertion_sort(ag_sort_item *it, int64_t n) {
    for (int64_t k = 1; k < n; k++) {
        ag_sort_item v = it[k];
        int64_t j = k;
        for (; j > 0 && it[j - 1].key > v.key; j--) it[j] = it[j - 1];
        it[j] = v;
    }
}

/* The longest lane the short-lane sorts (rank or insertion) take for keys of key_bytes bytes. */
static int64_t short_lane(int key_bytes) {
    if (!AG_VEC_512()) return SHORT_LANE;
    return key_bytes <= 4 ? RANK_LANE_4 : RANK_LANE_8;
}

/* rank[i] = the place of item i of it[0..n) (n <= RANK_LANE_8) in the stable order: #{j < i:
 * key_j <= key_i} + #{j > i: key_j < key_i}, over the keys as T copied out contiguous (each loop
 * a vector of compares in the AVX-512 clone: 16 uint32 or 8 uint64 keys a vector; ties cost
 * nothing more). */
#define RANKS_OF(NAME, T)                                                                      \
    AG_VEC_CLONES_512 static void NAME(const ag_sort_item *it, int64_t n, int32_t *restrict rank) { \
        T key[RANK_LANE_8];                                                                    \
        for (int64_t i = 0; i < n; i++) key[i] = (T)it[i].key;                                 \
        for (int64_t i = 0; i < n; i++) {                                                      \
            const T v = key[i];                                                                \
            int32_t r = 0;                                                                     \
            for (int64_t j = 0; j < i; j++) r += key[j] <= v;                                  \
            for (int64_t j = i + 1; j < n; j++) r += key[j] < v;                               \
            rank[i] = r;                                                                       \
        }                                                                                      \
    }
RANKS_OF(ranks_u64, uint64_t)
#ifndef AG_X86_INTRINSICS
RANKS_OF(ranks_u32, uint32_t)
#endif

#ifdef AG_X86_INTRINSICS
#include <immintrin.h>
/* ranks_u32 by AVX-512 with the loops the other way round (session 21): the ranks of 16 items at
 * a time in one vector r, each other key k_j broadcast and compared with the 16 keys k_i at once,
 * r_i += [k_j < k_i], or [k_j <= k_i] for j < i (the block's own keys: [k_j < k_i] or
 * [k_j == k_i and j < i]); no horizontal sum and no scalar tail (the last block's lanes past n
 * compare zeros, and are not stored).  The same ranks as ranks_u32. */
__attribute__((target("avx512f"))) static void ranks_u32_512(const ag_sort_item *it, int64_t n,
                                                             int32_t *restrict rank) {
    uint32_t key[RANK_LANE_8 + 16];
    for (int64_t i = 0; i < n; i++) key[i] = (uint32_t)it[i].key;
    for (int64_t i = n; i < (n + 15) / 16 * 16; i++) key[i] = 0;
    const __m512i one = _mm512_set1_epi32(1);
    for (int64_t i0 = 0; i0 < n; i0 += 16) {
        const __m512i ki = _mm512_loadu_si512((const void *)(key + i0));
        const int64_t i1 = i0 + 16 < n ? i0 + 16 : n;
        __m512i r0 = _mm512_setzero_si512(), r1 = _mm512_setzero_si512(); /* two chains of adds */
        int64_t j = 0;
        for (; j + 1 < i0; j += 2) { /* j before the block: k_j <= k_i */
            r0 = _mm512_mask_add_epi32(r0, _mm512_cmple_epu32_mask(_mm512_set1_epi32((int)key[j]), ki), r0, one);
            r1 = _mm512_mask_add_epi32(r1, _mm512_cmple_epu32_mask(_mm512_set1_epi32((int)key[j + 1]), ki), r1, one);
        }
        if (j < i0) r0 = _mm512_mask_add_epi32(r0, _mm512_cmple_epu32_mask(_mm512_set1_epi32((int)key[j]), ki), r0, one);
        for (j = i0; j < i1; j++) { /* the block: lanes i > j count ties as well */
            const __m512i kj = _mm512_set1_epi32((int)key[j]);
            const __mmask16 after = (__mmask16)(0xFFFFu << (j - i0 + 1) & 0xFFFFu);
            const __mmask16 m = _mm512_cmplt_epu32_mask(kj, ki) | (_mm512_cmpeq_epu32_mask(kj, ki) & after);
            r0 = _mm512_mask_add_epi32(r0, m, r0, one);
        }
        for (j = i1; j + 1 < n; j += 2) { /* after the block: k_j < k_i */
            r0 = _mm512_mask_add_epi32(r0, _mm512_cmplt_epu32_mask(_mm512_set1_epi32((int)key[j]), ki), r0, one);
            r1 = _mm512_mask_add_epi32(r1, _mm512_cmplt_epu32_mask(_mm512_set1_epi32((int)key[j + 1]), ki), r1, one);
        }
        if (j < n) r0 = _mm512_mask_add_epi32(r0, _mm512_cmplt_epu32_mask(_mm512_set1_epi32((int)key[j]), ki), r0, one);
        _mm512_mask_storeu_epi32(rank + i0, (__mmask16)((1u << (i1 - i0)) - 1), _mm512_add_epi32(r0, r1));
    }
}
#endif

/* Rank sort: it[0..n) (n <= RANK_LANE_8) placed
 * stably into tmp at the places ranks_u32 (ranks_u64) count; returns tmp. */
static ag_sort_item *rank_sort(const ag_sort_item *it, ag_sort_item *tmp, int64_t n, int key_bytes) {
    int32_t rank[RANK_LANE_8];
#ifdef AG_X86_INTRINSICS
    if (key_bytes <= 4) ranks_u32_512(it, n, rank); /* the keys fit 32 bits (rank_sort runs where AVX-512 does) */
#else
    if (key_bytes <= 4) ranks_u32(it, n, rank); /* the keys fit 32 bits */
#endif
    else ranks_u64(it, n, rank);
    for (int64_t i = 0; i < n; i++) tmp[rank[i]] = it[i];
    return tmp;
}

/* The first `count` items of the stable merge of a[0..na) and b[0..nb) (b's items come
 * after a's in the lane, so a wins ties), written to out. */
static void merge_n(const ag_sort_item *a, int64_t na, const ag_sort_item *b, int64_t nb, ag_sort_item *out,
                    int64_t count) {
    int64_t i = 0, j = 0;
    for (int64_t o = 0; o < count; o++)
        out[o] = j >= nb || (i < na && a[i].key <= b[j].key) ? a[i++] : b[j++];
}

/* How many of the first pos items of that merge come from a (merge path co-rank). */
static int64_t co_rank(const ag_sort_item *a, int64_t na, const ag_sort_item *b, int64_t nb, int64_t pos) {
    int64_t lo = pos > nb ? pos - nb : 0, hi = pos < na ? pos : na;
    while (lo < hi) { /* a[mid] goes before b[pos - mid - 1]: more than mid come from a */
        int64_t mid = lo + (hi - lo) / 2;
        if (a[mid].key <= b[pos - mid - 1].key) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

/* LSD radix sort by the low key_bytes bytes of the keys, n <= RADIX_MAX. */
static ag_sort_item *radix_sort(ag_sort_item *it, ag_sort_item *tmp, int64_t n, int key_bytes) {
    uint32_t count[8][256];
    memset(count, 0, sizeof count[0] * (size_t)key_bytes);
    for (int64_t k = 0; k < n; k++) {
        uint64_t key = it[k].key;
        for (int b = 0; b < key_bytes; b++) count[b][(key >> (8 * b)) & 255]++;
    }
    ag_sort_item *src = it, *dst = tmp;
    for (int b = 0; b < key_bytes; b++) {
        const int shift = 8 * b;
        if (count[b][(src[0].key >> shift) & 255] == (uint32_t)n) continue; /* one digit: the order stands */
        uint32_t at[256], sum = 0;
        for (int d = 0; d < 256; d++) at[d] = sum, sum += count[b][d];
        for (int64_t k = 0; k < n; k++) dst[at[(src[k].key >> shift) & 255]++] = src[k];
        ag_sort_item *t = src;
        src = dst, dst = t;
    }
    return src;
}

ag_sort_item *ag__sort_items(ag_sort_item *it, ag_sort_item *tmp, int64_t n, int key_bytes) {
    if (n <= short_lane(key_bytes)) {
        if (AG_VEC_512()) {
            uint64_t all = 0, any = 0, out_of_order = 0; /* bits set in every key, in some; descents */
            for (int64_t k = 0; k < n; k++) {
                all = k ? all & it[k].key : it[k].key, any |= it[k].key;
                out_of_order += k && it[k - 1].key > it[k].key;
            }
            if (!out_of_order) return it; /* sorted already (one key, a sorted lane): stays */
            const uint64_t vary = all ^ any; /* the bits that differ between keys */
            int passes = 0; /* the radix sort's: the bytes that differ */
            for (int b = 0; b < key_bytes; b++) passes += (vary >> (8 * b) & 255) != 0;
            if (n > RANK_PER_PASS * passes) return radix_sort(it, tmp, n, key_bytes); /* few passes: cheaper */
            return rank_sort(it, tmp, n, key_bytes);
        }
        insertion_sort(it, n);
        return it;
    }
    if (n <= RADIX_MAX) return radix_sort(it, tmp, n, key_bytes);
    const int64_t h = n / 2; /* too long for 32-bit counts: two halves, merged */
    ag_sort_item *a = ag__sort_items(it, tmp, h, key_bytes), *b = ag__sort_items(it + h, tmp + h, n - h, key_bytes);
    if (a != it) memcpy(it, a, sizeof *it * (size_t)h);
    if (b != it + h) memcpy(it + h, b, sizeof *it * (size_t)(n - h));
    merge_n(it, h, it + h, n - h, tmp, n);
    return tmp;
}

ag_sort_item *ag__sort_items_par(ag_sort_item *it, ag_sort_item *tmp, int64_t n, int key_bytes, int threads) {
    int64_t runs = n / AG_SORT_PAR_MIN < threads ? n / AG_SORT_PAR_MIN : threads; /* runs of at least PAR_MIN */
    if (runs > MAX_RUNS) runs = MAX_RUNS;
    if (runs < 2) return ag__sort_items(it, tmp, n, key_bytes);
    int64_t at[MAX_RUNS + 1]; /* run r is [at[r], at[r + 1]) */
    for (int r = 0; r <= runs; r++) at[r] = ag__share_start(n, r, (int)runs);
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int r = 0; r < (int)runs; r++) {
        const int64_t lo = at[r], len = at[r + 1] - lo;
        ag_sort_item *s = ag__sort_items(it + lo, tmp + lo, len, key_bytes);
        if (s != it + lo) memcpy(it + lo, s, sizeof *it * (size_t)len);
    }
    ag_sort_item *src = it, *dst = tmp;
    while (runs > 1) { /* merge runs 2j and 2j + 1, each merge cut into `threads` parts of its output */
        const int64_t pairs = runs / 2, parts = pairs * threads;
#pragma omp parallel for num_threads(threads) schedule(static)
        for (int64_t u = 0; u < parts; u++) {
            const int64_t j = u / threads, part = u % threads;
            const int64_t lo = at[2 * j], mid = at[2 * j + 1], hi = at[2 * j + 2], len = hi - lo;
            const int64_t p0 = ag__share_start(len, (int)part, threads), p1 = ag__share_start(len, (int)part + 1, threads);
            const ag_sort_item *a = src + lo, *b = src + mid;
            const int64_t na = mid - lo, nb = hi - mid, i = co_rank(a, na, b, nb, p0);
            merge_n(a + i, na - i, b + (p0 - i), nb - (p0 - i), dst + lo + p0, p1 - p0);
        }
        if (runs % 2) /* the odd run out moves as it is */
            memcpy(dst + at[runs - 1], src + at[runs - 1], sizeof *it * (size_t)(at[runs] - at[runs - 1]));
        for (int64_t j = 0; j <= pairs; j++) at[j] = at[j * 2 < runs ? 2 * j : runs];
        runs = (runs + 1) / 2;
        at[runs] = n;
        ag_sort_item *t = src;
        src = dst, dst = t;
    }
    return src;
}

/* a goes after b in the stable order: by key, equal keys by index (a total order). */
static inline bool after(ag_sort_item a, ag_sort_item b) { return a.key > b.key || (a.key == b.key && a.idx > b.idx); }

/* Restores the heap below h[at] (h[0] the item that goes last of the n kept). */
static void sift_down(ag_sort_item *h, int64_t n, int64_t at) {
    for (;;) {
        int64_t c = 2 * at + 1;
        if (c >= n) return;
        if (c + 1 < n && after(h[c + 1], h[c])) c++;
        if (!after(h[c], h[at])) return;
        ag_sort_item t = h[c];
        h[c] = h[at], h[at] = t, at = c;
    }
}

/* ag__sort_first_k_lane's body, inlined for each dtype so that key_of folds to one case. */
static inline __attribute__((always_inline)) void first_k_as(const void *x, const ag_dtype dtype, int64_t n,
                                                             int64_t stride, bool descending, int64_t k,
                                                             ag_sort_item *h) {
    const uint64_t flip = descending ? key_mask(dtype) : 0;
    for (int64_t j = 0; j < k; j++) h[j] = (ag_sort_item){key_of(x, dtype, j * stride) ^ flip, j};
    for (int64_t j = k / 2 - 1; j >= 0; j--) sift_down(h, k, j);
    for (int64_t j = k; j < n; j++) {
        /* every kept item came before j: item j goes before the root iff its key is smaller */
        const uint64_t key = key_of(x, dtype, j * stride) ^ flip;
        if (key < h[0].key) {
            h[0] = (ag_sort_item){key, j};
            sift_down(h, k, 0);
        }
    }
    for (int64_t m = k - 1; m > 0; m--) { /* the root goes last: move it behind the heap */
        ag_sort_item t = h[0];
        h[0] = h[m], h[m] = t;
        sift_down(h, m, 0);
    }
}

/* Restores the heap of packed items (key << 32 | index, a total order in one compare) below
 * h[at], the largest at the root. */
static void sift_down_packed(uint64_t *h, int64_t n, int64_t at) {
    const uint64_t v = h[at];
    for (;;) {
        int64_t c = 2 * at + 1;
        if (c >= n) break;
        c += c + 1 < n && h[c + 1] > h[c];
        if (h[c] <= v) break;
        h[at] = h[c], at = c;
    }
    h[at] = v;
}

/* Items first_k_packed makes and checks against the heap's root at a time. */
#define SCAN_BLOCK 32

#ifdef AG_X86_INTRINSICS
/* first_k_packed's scan of a contiguous lane (stride 1) by AVX-512 (session 21): the keys of 16
 * values at a time (key_f32's sign fold, ±0 and NaN by compares), compared with the root's key;
 * only the lanes below it go to the heap, one by one in index order as in first_k_packed.  An
 * item j after every kept one beats the root iff its key is smaller (the index breaks ties), so
 * the heap sees the same items in the same order: the same bits.  From j0 on. */
__attribute__((target("avx512f"))) static void first_k_scan_512(const float *x, int64_t j0, int64_t n,
                                                                uint32_t flip, int64_t k, uint64_t *p) {
    const __m512i sign = _mm512_set1_epi32(INT32_MIN), vflip = _mm512_set1_epi32((int)flip);
    const __m512i nan_key = _mm512_set1_epi32(-1);
    for (int64_t j = j0; j < n; j += 16) {
        const __mmask16 in = n - j >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - j)) - 1);
        const __m512 v = _mm512_maskz_loadu_ps(in, x + j);
        const __m512i u = _mm512_castps_si512(v);
        __m512i key = _mm512_xor_si512(u, _mm512_or_si512(_mm512_srai_epi32(u, 31), sign));
        key = _mm512_mask_mov_epi32(key, _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_EQ_OQ), sign);
        key = _mm512_mask_mov_epi32(key, _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), nan_key);
        key = _mm512_xor_si512(key, vflip);
        uint32_t m = _mm512_mask_cmplt_epu32_mask(in, key, _mm512_set1_epi32((int)(uint32_t)(p[0] >> 32)));
        if (!m) continue;
        uint32_t kk[16];
        _mm512_storeu_si512((void *)kk, key);
        for (; m; m &= m - 1) {
            const int b = __builtin_ctz(m);
            const uint64_t item = (uint64_t)kk[b] << 32 | (uint64_t)(j + b);
            if (item < p[0]) {
                p[0] = item;
                sift_down_packed(p, k, 0);
            }
        }
    }
}
#endif

/* first_k_as for 32-bit keys and n <= 2^32: the heap holds packed items in scratch. */
static void first_k_packed(const float *x, int64_t n, int64_t stride, bool descending, int64_t k, ag_sort_item *h,
                           uint64_t *p) {
    const uint64_t flip = descending ? 0xFFFFFFFFu : 0;
    for (int64_t j = 0; j < k; j++) p[j] = (key_f32(x[j * stride]) ^ flip) << 32 | (uint64_t)j;
    for (int64_t j = k / 2 - 1; j >= 0; j--) sift_down_packed(p, k, j);
#ifdef AG_X86_INTRINSICS
    if (stride == 1 && AG_VEC_512()) {
        first_k_scan_512(x, k, n, (uint32_t)flip, k, p);
        n = k; /* scanned: the loop below has nothing left */
    }
#endif
    for (int64_t j0 = k; j0 < n; j0 += SCAN_BLOCK) { /* a block of items made at once, */
        const int w = n - j0 < SCAN_BLOCK ? (int)(n - j0) : SCAN_BLOCK;
        uint64_t item[SCAN_BLOCK], least = UINT64_MAX;
        for (int b = 0; b < w; b++) item[b] = (key_f32(x[(j0 + b) * stride]) ^ flip) << 32 | (uint64_t)(j0 + b);
        for (int b = 0; b < w; b++) least = item[b] < least ? item[b] : least;
        if (least >= p[0]) continue; /* then one by one only where one of them beats the root */
        for (int b = 0; b < w; b++)
            if (item[b] < p[0]) {
                p[0] = item[b];
                sift_down_packed(p, k, 0);
            }
    }
    for (int64_t m = k - 1; m > 0; m--) {
        const uint64_t t = p[0];
        p[0] = p[m], p[m] = t;
        sift_down_packed(p, m, 0);
    }
    for (int64_t j = 0; j < k; j++) h[j] = (ag_sort_item){p[j] >> 32, (int64_t)(p[j] & 0xFFFFFFFFu)};
}

void ag__sort_first_k_lane(const void *x, ag_dtype dtype, int64_t n, int64_t stride, bool descending, int64_t k,
                           ag_sort_item *h, void *scratch) {
    if (k == 0) return;
    switch (dtype) {
    case AG_F32:
        if (n <= (int64_t)UINT32_MAX + 1) first_k_packed(x, n, stride, descending, k, h, scratch);
        else first_k_as(x, AG_F32, n, stride, descending, k, h);
        break;
    case AG_F64: first_k_as(x, AG_F64, n, stride, descending, k, h); break;
    default: first_k_as(x, dtype, n, stride, descending, k, h); break;
    }
}

ag_sort_item ag__sort_select(ag_sort_item *it, ag_sort_item *tmp, int64_t n, int64_t k, int key_bytes) {
    ag_sort_item *src = it;
    for (int b = key_bytes - 1; b >= 0 && n > SHORT_LANE; b--) { /* most significant byte first */
        const int shift = 8 * b;
        int64_t count[256] = {0}, before = 0;
        for (int64_t j = 0; j < n; j++) count[(src[j].key >> shift) & 255]++;
        int d = 0;
        while (before + count[d] <= k) before += count[d++];
        if (count[d] == n) continue; /* every item has digit d */
        ag_sort_item *dst = src == it ? tmp : it;
        int64_t m = 0;
        for (int64_t j = 0; j < n; j++) /* the items of digit d, in their order */
            if ((int)((src[j].key >> shift) & 255) == d) dst[m++] = src[j];
        src = dst, n = m, k -= before;
    }
    insertion_sort(src, n); /* stable: equal keys stay in index order */
    return src[k];
}

/* ag__sort_select_lane's body, inlined for each dtype so that key_of folds to one case. */
static inline __attribute__((always_inline)) ag_sort_item select_lane_as(const void *x, const ag_dtype dtype, int64_t n,
                                                                         int64_t stride, bool descending, int64_t k,
                                                                         ag_sort_item *it, ag_sort_item *tmp) {
    const int key_bytes = ag__sort_key_bytes(dtype), shift = 8 * (key_bytes - 1);
    const uint64_t flip = descending ? key_mask(dtype) : 0;
    if (n <= SHORT_LANE) {
        ag__sort_fill(it, x, dtype, n, stride, descending);
        return ag__sort_select(it, tmp, n, k, key_bytes);
    }
    /* the top byte's digit of rank k straight from the values, then only its items filled */
    int64_t count[256] = {0}, before = 0, m = 0;
    for (int64_t j = 0; j < n; j++) count[((key_of(x, dtype, j * stride) ^ flip) >> shift) & 255]++;
    int d = 0;
    while (before + count[d] <= k) before += count[d++];
    for (int64_t j = 0; j < n; j++) {
        const uint64_t key = key_of(x, dtype, j * stride) ^ flip;
        if ((int)((key >> shift) & 255) == d) it[m++] = (ag_sort_item){key, j};
    }
    return ag__sort_select(it, tmp, m, k - before, key_bytes - 1);
}

ag_sort_item ag__sort_select_lane(const void *x, ag_dtype dtype, int64_t n, int64_t stride, bool descending,
                                  int64_t k, ag_sort_item *it, ag_sort_item *tmp) {
    switch (dtype) {
    case AG_F32: return select_lane_as(x, AG_F32, n, stride, descending, k, it, tmp);
    case AG_F64: return select_lane_as(x, AG_F64, n, stride, descending, k, it, tmp);
    default: return select_lane_as(x, dtype, n, stride, descending, k, it, tmp);
    }
}

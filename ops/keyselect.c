/*
 * keyselect.c - one order statistic of all the values of a float tensor, by keys alone.
 *
 * The median of all n elements needs one value, not its index (its adjoint splits dy over the
 * elements equal to it): the values become 4-byte (float32) or 8-byte (float64) sort keys in
 * one pass, and a quickselect keeps, round after round, the side of a pivot that holds rank k:
 * each round partitions the keys three ways (< p, == p, > p) into two other buffers, out of
 * place, 16 or 8 keys a vector by AVX-512 compress (a compress into a register and a full
 * store: the compress to memory is slow on AMD), or by a branch-free scalar loop elsewhere.
 * The pivot is the median of three keys (first, middle, last of the side).  A side of at most
 * SMALL_SIDE keys is insertion-sorted.  If the rounds have read more than BAD_WORK times n keys
 * (pivots chosen badly, as an adversarial input can make them), the rest goes to lanesort.c's
 * radix select, O(n), so the worst case stays linear (bad < 0: at once, for tests).
 *
 * A key is the value's bits folded so that unsigned order is the values' order, and every
 * value but ±0 has its own key (NaN's payload is not kept, but the median of a tensor holding
 * NaN is its first NaN, found by ops/sort.c, and nanmedian never selects one): the element is
 * read back from the key, except the zero key, where the stable order (key, then index) picks
 * the (k - #negatives)-th zero in index order, so -0.0 and 0.0 come back as the radix select
 * of all (key, index) items gave them.  The result is exact: the same bits on every path.
 *
 * A float32 lane of a median or kthvalue along a dim wants the index too: there the key and the
 * index are packed in one uint64 (key above), whose unsigned order is the stable order itself,
 * and the same quickselect of 8-byte keys picks the item; its index is the low half.
 *
 * float32 [57, 76] (4332 values), median of all, one thread: the radix select of 16-byte
 * (key, index) items this replaced took about 8 µs of the op's 10.7 (figures in
 * docs/benchmarks.md, session 20, median20).
 */
#include <string.h>
#include "core/sum.h"
#include "ops/keyselect.h"
#include "ops/lanesort.h"
#ifdef AG_X86_INTRINSICS
#include <immintrin.h>
#endif

/* Sides this short are insertion-sorted. */
#define SMALL_SIDE 24
/* Keys the rounds may read, in multiples of n, before the radix select takes the rest (a good
 * quickselect reads about 2-3.5 n). */
#define BAD_WORK 8
/* Room past the end of each buffer for the full vectors a compressed store writes. */
#define SLACK 16

/* Sign-folded keys as ops/lanesort.c makes them: unsigned order = numeric order, one key for
 * ±0, NaN largest. */
static inline uint32_t key32(float v) {
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    uint32_t key = u ^ ((0u - (u >> 31)) | 0x80000000u);
    key = v == 0 ? 0x80000000u : key;
    return v != v ? 0xFFFFFFFFu : key;
}
static inline uint64_t key64(double v) {
    uint64_t u;
    memcpy(&u, &v, sizeof u);
    uint64_t key = u ^ ((0u - (u >> 63)) | (uint64_t)1 << 63);
    key = v == 0 ? (uint64_t)1 << 63 : key;
    return v != v ? UINT64_MAX : key;
}

/* keys[j] = key32(x[j]), j < n. */
AG_VEC_CLONES_512 static void fill32(uint32_t *restrict keys, const float *restrict x, int64_t n) {
    for (int64_t j = 0; j < n; j++) keys[j] = key32(x[j]);
}
/* keys[j] = key64(x[j]), j < n. */
AG_VEC_CLONES_512 static void fill64(uint64_t *restrict keys, const double *restrict x, int64_t n) {
    for (int64_t j = 0; j < n; j++) keys[j] = key64(x[j]);
}

/* The number of NaNs among x[0..n). */
AG_VEC_CLONES_512 static int64_t nan32(const float *x, int64_t n) {
    int64_t c = 0;
    for (int64_t j = 0; j < n; j++) c += x[j] != x[j];
    return c;
}
/* The number of NaNs among x[0..n). */
AG_VEC_CLONES_512 static int64_t nan64(const double *x, int64_t n) {
    int64_t c = 0;
    for (int64_t j = 0; j < n; j++) c += x[j] != x[j];
    return c;
}

int64_t ag__count_nan(const void *x, ag_dtype dtype, int64_t n) {
    return dtype == AG_F64 ? nan64(x, n) : nan32(x, n);
}

#ifdef AG_X86_INTRINSICS
/* The keys of src[0..n) below p into lo, those above into hi (in their order; each with SLACK
 * keys of room past the end); their numbers into *a, *b. */
__attribute__((target("avx512f,popcnt"))) static void part32_avx512(const uint32_t *src, int64_t n, uint32_t p,
                                                                  uint32_t *lo, uint32_t *hi, int64_t *a, int64_t *b) {
    const __m512i vp = _mm512_set1_epi32((int)p);
    int64_t na = 0, nb = 0, j = 0;
    for (; j + 16 <= n; j += 16) {
        const __m512i v = _mm512_loadu_si512(src + j);
        const __mmask16 ml = _mm512_cmplt_epu32_mask(v, vp), mh = _mm512_cmpgt_epu32_mask(v, vp);
        _mm512_storeu_si512(lo + na, _mm512_maskz_compress_epi32(ml, v));
        _mm512_storeu_si512(hi + nb, _mm512_maskz_compress_epi32(mh, v));
        na += _mm_popcnt_u32(ml), nb += _mm_popcnt_u32(mh);
    }
    if (j < n) {
        const __mmask16 t = (__mmask16)((1u << (n - j)) - 1);
        const __m512i v = _mm512_maskz_loadu_epi32(t, src + j);
        const __mmask16 ml = _mm512_mask_cmplt_epu32_mask(t, v, vp), mh = _mm512_mask_cmpgt_epu32_mask(t, v, vp);
        _mm512_storeu_si512(lo + na, _mm512_maskz_compress_epi32(ml, v));
        _mm512_storeu_si512(hi + nb, _mm512_maskz_compress_epi32(mh, v));
        na += _mm_popcnt_u32(ml), nb += _mm_popcnt_u32(mh);
    }
    *a = na, *b = nb;
}
/* part32_avx512 for 8-byte keys. */
__attribute__((target("avx512f,popcnt"))) static void part64_avx512(const uint64_t *src, int64_t n, uint64_t p,
                                                                  uint64_t *lo, uint64_t *hi, int64_t *a, int64_t *b) {
    const __m512i vp = _mm512_set1_epi64((long long)p);
    int64_t na = 0, nb = 0, j = 0;
    for (; j + 8 <= n; j += 8) {
        const __m512i v = _mm512_loadu_si512(src + j);
        const __mmask8 ml = _mm512_cmplt_epu64_mask(v, vp), mh = _mm512_cmpgt_epu64_mask(v, vp);
        _mm512_storeu_si512(lo + na, _mm512_maskz_compress_epi64(ml, v));
        _mm512_storeu_si512(hi + nb, _mm512_maskz_compress_epi64(mh, v));
        na += _mm_popcnt_u32(ml), nb += _mm_popcnt_u32(mh);
    }
    if (j < n) {
        const __mmask8 t = (__mmask8)((1u << (n - j)) - 1);
        const __m512i v = _mm512_maskz_loadu_epi64(t, src + j);
        const __mmask8 ml = _mm512_mask_cmplt_epu64_mask(t, v, vp), mh = _mm512_mask_cmpgt_epu64_mask(t, v, vp);
        _mm512_storeu_si512(lo + na, _mm512_maskz_compress_epi64(ml, v));
        _mm512_storeu_si512(hi + nb, _mm512_maskz_compress_epi64(mh, v));
        na += _mm_popcnt_u32(ml), nb += _mm_popcnt_u32(mh);
    }
    *a = na, *b = nb;
}
#endif

/* The quickselect for one key width T (uint32_t or uint64_t): part_avx512 its vector partition
 * (NULL: the scalar loop), key_bytes its width for the radix select.  buf holds 3 (n + SLACK)
 * keys, the first n of them the keys; vec: the vector partition; once the rounds have read more
 * than bad keys, the radix select.  Writes the key of rank k into *key_out. */
#define DEFINE_SELECT(NAME, T, PART, KEY_BYTES)                                                                         \
    static ag_status NAME(T *buf, int64_t n, int64_t k, bool vec, int64_t bad, T *key_out) {                            \
        T *side[3] = {buf, buf + (n + SLACK), buf + 2 * (n + SLACK)};                                                   \
        int src = 0;                                                                                                    \
        int64_t m = n, work = 0;                                                                                        \
        while (m > SMALL_SIDE) {                                                                                        \
            const T *s = side[src];                                                                                     \
            if (work > bad) {                   /* pivots chose badly: a radix select of the rest */                    \
                ag_sort_item *it = ag__alloc_n(2 * m, sizeof(ag_sort_item));                                            \
                if (!it) return AG_ERR_NOMEM;                                                                           \
                for (int64_t j = 0; j < m; j++) it[j] = (ag_sort_item){s[j], j};                                        \
                *key_out = (T)ag__sort_select(it, it + m, m, k, KEY_BYTES).key;                                         \
                ag__free(it);                                                                                           \
                return AG_OK;                                                                                           \
            }                                                                                                           \
            const T f = s[0], c = s[m / 2], l = s[m - 1]; /* the median of three */                                     \
            const T p = f < c ? (c < l ? c : f < l ? l : f) : (f < l ? f : c < l ? l : c);                              \
            T *lo = side[(src + 1) % 3], *hi = side[(src + 2) % 3];                                                     \
            int64_t a = 0, b = 0;                                                                                       \
            if (vec) PART(s, m, p, lo, hi, &a, &b);                                                                     \
            else                                                                                                        \
                for (int64_t j = 0; j < m; j++) {                                                                       \
                    const T v = s[j];                                                                                   \
                    lo[a] = v, hi[b] = v;                                                                               \
                    a += v < p, b += v > p;                                                                             \
                }                                                                                                       \
            work += m;                                                                                                  \
            if (k < a) src = (src + 1) % 3, m = a;                                                                      \
            else if (k < m - b) {                                                                                       \
                *key_out = p;                                                                                           \
                return AG_OK;                                                                                           \
            } else                                                                                                      \
                k -= m - b, src = (src + 2) % 3, m = b;                                                                 \
        }                                                                                                               \
        T *s = side[src];                                                                                               \
        for (int64_t j = 1; j < m; j++) {                                                                               \
            const T v = s[j];                                                                                           \
            int64_t i = j;                                                                                              \
            for (; i > 0 && s[i - 1] > v; i--) s[i] = s[i - 1];                                                         \
            s[i] = v;                                                                                                   \
        }                                                                                                               \
        *key_out = s[k];                                                                                                \
        return AG_OK;                                                                                                   \
    }

#ifdef AG_X86_INTRINSICS
DEFINE_SELECT(select32, uint32_t, part32_avx512, 4)
DEFINE_SELECT(select64, uint64_t, part64_avx512, 8)
#define VEC_OK() AG_VEC_512()
#else
/* No vector partition here: the name is never called (vec is false). */
#define part_none(s, m, p, lo, hi, a, b) ((void)0)
DEFINE_SELECT(select32, uint32_t, part_none, 4)
DEFINE_SELECT(select64, uint64_t, part_none, 8)
#define VEC_OK() false
#endif

/* buf[j] = the key of x[j * stride] above j, j < n. */
AG_VEC_CLONES_512 static void fill_packed(uint64_t *restrict buf, const float *restrict x, int64_t n, int64_t stride) {
    for (int64_t j = 0; j < n; j++) buf[j] = (uint64_t)key32(x[j * stride]) << 32 | (uint64_t)j;
}

int64_t ag__select_lane_f32(const float *x, int64_t n, int64_t stride, int64_t k, uint64_t *buf) {
    uint64_t packed = 0;
    fill_packed(buf, x, n, stride);
    if (select64(buf, n, k, VEC_OK(), (int64_t)BAD_WORK * n, &packed)) /* only the radix select's scratch can fail */
        return -1;
    return (int64_t)(packed & 0xFFFFFFFFu);
}

ag_status ag__select_value(const void *x, ag_dtype dtype, int64_t n, int64_t k, ag_select_how how, void *out) {
    const bool f64 = dtype == AG_F64, vec = how == AG_SELECT_BEST && VEC_OK();
    const int64_t bad = how == AG_SELECT_RADIX ? -1 : (int64_t)BAD_WORK * n;
    const size_t es = f64 ? 8 : 4;
    char *buf = ag__alloc_n(3 * (n + SLACK), es);
    if (!buf) return AG_ERR_NOMEM;
    uint64_t key, zero = f64 ? (uint64_t)1 << 63 : 0x80000000u;
    ag_status st;
    if (f64) {
        fill64((uint64_t *)(void *)buf, x, n);
        st = select64((uint64_t *)(void *)buf, n, k, vec, bad, &key);
    } else {
        uint32_t k32 = 0;
        fill32((uint32_t *)(void *)buf, x, n);
        st = select32((uint32_t *)(void *)buf, n, k, vec, bad, &k32);
        key = k32;
    }
    ag__free(buf);
    if (st) return st;
    if (key == zero) { /* ±0: the (k - #negatives)-th zero in index order, as the stable order has it */
        int64_t before = 0, j = 0;
        for (int64_t i = 0; i < n; i++) before += f64 ? ((const double *)x)[i] < 0 : ((const float *)x)[i] < 0;
        for (int64_t r = k - before;; j++)
            if ((f64 ? ((const double *)x)[j] == 0 : ((const float *)x)[j] == 0) && r-- == 0) break;
        memcpy(out, (const char *)x + (size_t)j * es, es);
        return AG_OK;
    }
    /* other keys: unfold the sign (a key at or above the zero key is a positive value's bits with the top bit set) */
    if (f64) {
        const uint64_t u = key > zero ? key ^ zero : ~key;
        memcpy(out, &u, 8);
    } else {
        const uint32_t u = key > zero ? (uint32_t)key ^ 0x80000000u : ~(uint32_t)key;
        memcpy(out, &u, 4);
    }
    return AG_OK;
}

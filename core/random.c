/*
 * core/random.c - one seeded generator per thread (xoshiro256**), so that every
 * random result is reproducible from ag_manual_seed and threads do not share state;
 * keep masks (dropout) add a counter-based generator keyed by one draw of it.
 */
#include <math.h>
#include <omp.h>
#include <string.h>
#include "core/internal.h"
#include "core/logf_poly.h"
#include "core/mix512.h"
#include "core/parallel.h"
#include "core/sum.h"

#define DEFAULT_SEED 0x5eed5eedULL

static _Thread_local uint64_t state[4];
static _Thread_local bool seeded;

void ag_manual_seed(uint64_t seed) {
    for (int i = 0; i < 4; i++) state[i] = ag__splitmix64(&seed);
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
    return ag__mix64(key + (j + 1) * 0x9e3779b97f4a7c15ULL);
}

/* The mask kernel is cloned for x86-64-v4 too: AVX2 has no 64-bit multiply, AVX-512's vpmullq vectorises
 * counter_mix's two ([131 072] float32, one thread, CPU time: 85 -> 27 µs).  Integer arithmetic and a
 * select: every clone gives the same bits. */
#ifdef AG_X86_INTRINSICS
#define KEEP_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define KEEP_CLONES
#endif

/* Pairs [j0, j1) of the mask, element 2·j0 at o[0] (bound = keep·2^32 rounded up, at most 2^32).  The
 * counter k + (j + 1)·γ is an induction variable (one add a pair, not a 64-bit product: AVX2 and AVX-512 have
 * no cheap one) and each half compared as a uint32 against the bound (2^32: every value kept), the same
 * values as counter_mix and an int64 compare: [131 072] float32 on AVX-512, 43.6 -> 31.5 µs. */
#define KEEP_PAIRS(SUF, T)                                                                                      \
    KEEP_CLONES static void keep_pairs_##SUF(T *restrict o, int64_t j0, int64_t j1, uint64_t key, int64_t bound, \
                                               T scale) {                                                     \
        const bool all = bound > 0xffffffff;                                                                  \
        const uint32_t b = all ? 0xffffffffu : (uint32_t)bound;                                               \
        uint64_t c = key + ((uint64_t)j0 + 1) * 0x9e3779b97f4a7c15ULL; /* counter_mix's argument */           \
        for (int64_t j = j0; j < j1; j++, c += 0x9e3779b97f4a7c15ULL) {                                       \
            const uint64_t h = ag__mix64(c);                                                                  \
            o[2 * (j - j0)] = (uint32_t)h < b || all ? scale : 0;                                             \
            o[2 * (j - j0) + 1] = (uint32_t)(h >> 32) < b || all ? scale : 0;                                 \
        }                                                                                                     \
    }                                                                                                         \
    /* Elements [i0, i1) of a mask of n elements (i0 even) at o: their pairs, and the last element alone when \
     * it is among them and n is odd */                                                                      \
    static void keep_run_##SUF(T *o, int64_t n, int64_t i0, int64_t i1, ag_keep_key k, T scale) {              \
        keep_pairs_##SUF(o, i0 / 2, i1 / 2, k.key, k.bound, scale);                                           \
        if (n % 2 && i1 == n) o[n - 1 - i0] = (int64_t)(counter_mix(k.key, (uint64_t)(n / 2)) & 0xffffffffu) < k.bound ? scale : 0; \
    }
KEEP_PAIRS(f32, float)
KEEP_PAIRS(f64, double)

ag_keep_key ag__rand_keep_key(double keep) {
    /* u < keep·2^32 exactly <=> u < ceil(keep·2^32) for an integer u (keep in [0, 1]) */
    return (ag_keep_key){ag__rand_u64(), (int64_t)ceil(keep * 0x1.0p32)};
}

void ag__rand_keep_part(void *out, ag_dtype dtype, int64_t n, int64_t i0, int64_t i1, ag_keep_key k, double scale) {
    if (dtype == AG_F64) keep_run_f64(out, n, i0, i1, k, scale);
    else keep_run_f32(out, n, i0, i1, k, (float)scale);
}

void ag__rand_keep_mask(void *out, ag_dtype dtype, int64_t n, double keep, double scale) {
    const ag_keep_key k = ag__rand_keep_key(keep);
    const int64_t pairs = n / 2;
    const size_t es = ag_dtype_size(dtype);
    const int nt = ag__threads_for(n);
    if (nt <= 1) { /* no parallel region at all (docs/design.md: one-thread teams) */
        ag__rand_keep_part(out, dtype, n, 0, n, k, scale);
        return;
    }
#pragma omp parallel num_threads(nt)
    {
        const int t = omp_get_thread_num(), used = omp_get_num_threads();
        const int64_t i0 = 2 * ag__share_start(pairs, t, used), i1 = t == used - 1 ? n : 2 * ag__share_start(pairs, t + 1, used);
        ag__rand_keep_part((char *)out + (size_t)i0 * es, dtype, n, i0, i1, k, scale);
    }
}

/* ---- fills: the same counter-based generator ---------------------------------------------------------
 * A fill takes one draw of the caller's stream as its key k, as a mask does, and pair j of elements
 * (2j, 2j + 1) is a function of h(k, ·) alone, so fills are split over threads, vectorised (the AVX2
 * clone, or the explicit AVX-512 kernels below) and the same for any thread count.
 *   float64: element i takes the 53 high bits of h(k, i): u = ⌊h/2^11⌋·2^-53 in [0, 1), every double of
 *     that grid (as before); a normal pair is Box-Muller on u1 = 1 - u(2j) in (0, 1], u2 = u(2j + 1):
 *     z = √(-2 ln u1)·(cos θ, sin θ), θ = 2πu2 - π/4 (a turn, as 2πu2: the quadrant is u2's top 2 bits),
 *     in double polynomials (vlog, quarter_sincos64: fdlibm's, within 1 ulp) that vectorise.
 *   float32: pair j takes h(k, j), 32 bits an element (as the mask); a uniform is the top 24 bits
 *     (u = ⌊b/2^8⌋·2^-24 in [0, 1), every float of that grid, as torch.rand); a normal pair is
 *     Box-Muller with u1 = (⌊lo/2⌋ + ½)·2^-31 in (0, 1] (31 bits: |z| up to 6.7, torch.randn's 24 bits
 *     stop at 5.8) and θ = 2πv - π/4, v the top 24 bits of hi, in float32 polynomials (vlogf,
 *     quarter_sincos) that vectorise, within a few float32 ulps of libm's. */
#define SQRT_HALF_F 0.70710678118654752f

/* ln x for float32 x in [2^-32, 1] (Cephes' logf: x = m·2^e, m in [√½, √2), a degree-8 polynomial in m - 1;
 * within 2 ulps), written without a branch or a libm call so that its loop vectorises. */
static inline float vlogf(float x) {
    uint32_t b;
    memcpy(&b, &x, sizeof b);
    float e = (float)((int32_t)(b >> 23) - 126);
    b = (b & 0x807fffffu) | 0x3f000000u; /* m in [0.5, 1) */
    float m;
    memcpy(&m, &b, sizeof m);
    const bool low = m < SQRT_HALF_F;
    e = low ? e - 1.0f : e;
    m = low ? m + m - 1.0f : m - 1.0f;
    const float z = m * m;
    float y = ag__logf_poly(m);
    y = y * m * z + e * -2.12194440e-4f - 0.5f * z;
    return m + y + e * 0.693359375f;
}

/* (cos θ, sin θ) for θ = q·π/2 + φ, |φ| <= π/4 (Cephes' sinf and cosf polynomials on the quarter, then
 * the quadrant q in [0, 4) by swapping and negating). */
static inline void quarter_sincos(uint32_t q, float phi, float *c, float *s) {
    const float z = phi * phi;
    const float sn = phi + phi * z * ((-1.9515295891e-4f * z + 8.3321608736e-3f) * z - 1.6666654611e-1f);
    const float cs = 1.0f - 0.5f * z + z * z * ((2.443315711809948e-5f * z - 1.388731625493765e-3f) * z + 4.166664568298827e-2f);
    const float x = q & 1 ? sn : cs, y = q & 1 ? cs : sn;
    *c = (q + 1) & 2 ? -x : x; /* quadrants 1, 2: cos < 0 */
    *s = q & 2 ? -y : y;       /* quadrants 2, 3: sin < 0 */
}


/* x as a double, exactly, for an integer x < 2^52 (through the 2^52 offset: vectorises without AVX-512) */
static inline double exact52(uint64_t x) {
    const uint64_t b = x | 0x4330000000000000ULL;
    double d;
    memcpy(&d, &b, sizeof d);
    return d - 0x1.0p52;
}

/* ln x for double x in [2^-53, 1] (fdlibm's __ieee754_log: x = m·2^e, m in [√½, √2), f = m - 1,
 * s = f/(2 + f) and a degree-14 polynomial in s; within 1 ulp), without a branch or a libm call. */
static inline double vlog(double x) {
    uint64_t b;
    memcpy(&b, &x, sizeof b);
    double e = exact52(b >> 52) - 1022;
    b = (b & 0x000fffffffffffffULL) | 0x3fe0000000000000ULL; /* m in [0.5, 1) */
    double m;
    memcpy(&m, &b, sizeof m);
    const bool low = m < 0.70710678118654752;
    e = low ? e - 1 : e;
    const double f = (low ? m + m : m) - 1, s = f / (2 + f), z = s * s, w = z * z;
    const double t1 = w * (3.999999999940941908e-01 + w * (2.222219843214978396e-01 + w * 1.531383769920937332e-01));
    const double t2 = z * (6.666666666666735130e-01 +
                           w * (2.857142874366239149e-01 + w * (1.818357216161805012e-01 + w * 1.479819860511658591e-01)));
    const double hfsq = 0.5 * f * f, R = t1 + t2;
    return e * 6.93147180369123816490e-01 - ((hfsq - (s * (hfsq + R) + e * 1.90821492927058770002e-10)) - f);
}

/* (cos θ, sin θ) for θ = q·π/2 + φ, |φ| <= π/4, in double: fdlibm's __kernel_sin and __kernel_cos
 * (within 1 ulp), then the quadrant as quarter_sincos. */
static inline void quarter_sincos64(uint64_t q, double phi, double *c, double *s) {
    const double z = phi * phi, v = z * phi;
    const double rs = 8.33333333332248946124e-03 +
                      z * (-1.98412698298579493134e-04 + z * (2.75573137070700676789e-06 +
                                                               z * (-2.50507602534068634195e-08 + z * 1.58969099521155010221e-10)));
    const double sn = phi + v * (-1.66666666666666324348e-01 + z * rs);
    const double rc = z * (4.16666666666666019037e-02 +
                           z * (-1.38888888888741095749e-03 +
                                z * (2.48015872894767294178e-05 +
                                     z * (-2.75573143513906633035e-07 + z * (2.08757232129817482790e-09 +
                                                                             z * -1.13596475577881948265e-11)))));
    const double hz = 0.5 * z, w = 1 - hz, cs = w + (((1 - w) - hz) + z * rc);
    const double x = q & 1 ? sn : cs, y = q & 1 ? cs : sn;
    *c = (q + 1) & 2 ? -x : x;
    *s = q & 2 ? -y : y;
}

/* The 53 high bits of h as a double, exactly (double)(h >> 11), in two exact conversions */
static inline double high53(uint64_t h) { return exact52(h >> 43) * 0x1.0p32 + exact52((h >> 11) & 0xffffffffu); }

/* Pairs j0 .. j0 + count - 1 at o (o[0] is element 2·j0), each kind's values before any affine map */
AG_VEC_CLONES static void uniform_pairs_f32(float *restrict o, int64_t j0, int64_t count, uint64_t key) {
    for (int64_t k = 0; k < count; k++) {
        const uint64_t h = counter_mix(key, (uint64_t)(j0 + k));
        o[2 * k] = (float)(int32_t)((uint32_t)h >> 8) * 0x1.0p-24f;
        o[2 * k + 1] = (float)(int32_t)((uint32_t)(h >> 32) >> 8) * 0x1.0p-24f;
    }
}

AG_VEC_CLONES static void uniform_pairs_f64(double *restrict o, int64_t j0, int64_t count, uint64_t key) {
    for (int64_t k = 0; k < count; k++) {
        o[2 * k] = high53(counter_mix(key, (uint64_t)(2 * (j0 + k)))) * 0x1.0p-53;
        o[2 * k + 1] = high53(counter_mix(key, (uint64_t)(2 * (j0 + k) + 1))) * 0x1.0p-53;
    }
}

AG_VEC_CLONES static void normal_pairs_f32(float *restrict o, int64_t j0, int64_t count, uint64_t key) {
    for (int64_t k = 0; k < count; k++) {
        const uint64_t h = counter_mix(key, (uint64_t)(j0 + k));
        const uint32_t lo = (uint32_t)h, hi = (uint32_t)(h >> 32);
        const float u1 = ((float)(int32_t)(lo >> 1) + 0.5f) * 0x1.0p-31f, t = -2.0f * vlogf(u1);
        const float r = sqrtf(t > 0 ? t : 0);
        /* the angle (q + f)·π/2 - π/4, f in [0, 1) of 22 bits: uniform on a whole turn */
        const float phi = ((float)(int32_t)((hi >> 8) & 0x3fffffu) * 0x1.0p-22f - 0.5f) * 1.57079632679489662f;
        float c, s;
        quarter_sincos(hi >> 30, phi, &c, &s);
        o[2 * k] = r * c;
        o[2 * k + 1] = r * s;
    }
}

AG_VEC_CLONES static void normal_pairs_f64(double *restrict o, int64_t j0, int64_t count, uint64_t key) {
    for (int64_t k = 0; k < count; k++) {
        const double u1 = 1.0 - high53(counter_mix(key, (uint64_t)(2 * (j0 + k)))) * 0x1.0p-53, t = -2.0 * vlog(u1);
        const double r = sqrt(t > 0 ? t : 0);
        /* the angle (q + f)·π/2 - π/4, f in [0, 1) of 51 bits: uniform on a whole turn, 53 bits in all */
        const uint64_t h = counter_mix(key, (uint64_t)(2 * (j0 + k) + 1));
        const double phi = (exact52((h >> 11) & 0x7ffffffffffffULL) * 0x1.0p-51 - 0.5) * 1.57079632679489662;
        double c, s;
        quarter_sincos64(h >> 62, phi, &c, &s);
        o[2 * k] = r * c;
        o[2 * k + 1] = r * s;
    }
}

/* v = lo + w·v over n elements: uniform on [a, b) (lo = a, w = b - a) or normal (lo = mean, w = std),
 * in double precision */
AG_VEC_CLONES static void affine_f32(float *restrict o, int64_t n, double lo, double w) {
    for (int64_t i = 0; i < n; i++) o[i] = (float)(lo + w * (double)o[i]);
}
AG_VEC_CLONES static void affine_f64(double *restrict o, int64_t n, double lo, double w) {
    for (int64_t i = 0; i < n; i++) o[i] = lo + w * o[i];
}

/* ---- the same kernels in explicit AVX-512 lanes (CPUs with x86-64-v4) ------------------------------------
 * The C kernels above, vectorised by GCC for AVX2, spend most of their time on the hash's 64-bit products
 * (three 32-bit products each without AVX-512) and on moving the two halves of each hash into separate
 * vectors and back.  These take eight hashes a vector (vpmullq), the counter as an induction variable, and
 * for float32 read a vector of eight hashes as the sixteen 32-bit halves in element order.  Every step is
 * the C kernel's operation in its order (no contraction, correctly rounded products, quotients and square
 * roots, exact conversions), so they give the same bits, which test_random_paths checks against the C
 * kernels; the affine map has its own kernels likewise
 * ([1000, 1000] float32 on one thread, CPU time: rand 0.68 -> 0.086 ns an element, randn 1.87 -> 0.56;
 * float64 rand 1.49 -> 0.16, randn 4.7 -> 1.3: docs/benchmarks.md, session 17). */
#ifdef AG_X86_INTRINSICS
#include <immintrin.h>

bool ag__rand_avx512 = true;

#define AVX512 __attribute__((target("avx512f,avx512dq,avx512vl")))
#define GAMMA 0x9e3779b97f4a7c15ULL

/* The mask of the first n of 16 lanes (n may be <= 0 or >= 16) */
static inline __mmask16 first16(int64_t n) { return n <= 0 ? 0 : n >= 16 ? 0xffff : (__mmask16)((1u << n) - 1); }
static inline __mmask8 first8(int64_t n) { return n <= 0 ? 0 : n >= 8 ? 0xff : (__mmask8)((1u << n) - 1); }

/* uniform_pairs_f32: a vector of eight hashes is the sixteen elements' 32-bit halves in order */
AVX512 static void uniform_pairs_f32_512(float *restrict o, int64_t j0, int64_t count, uint64_t key) {
    __m512i c = ag__counters8_512(key, (uint64_t)j0, 1);
    const __m512i step = _mm512_set1_epi64((long long)(8 * GAMMA));
    const __m512 scale = _mm512_set1_ps(0x1.0p-24f);
    for (int64_t k = 0; k < count; k += 8, c = _mm512_add_epi64(c, step)) {
        const __m512 u = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_srli_epi32(ag__mix8_512(c), 8)), scale);
        if (count - k >= 8) _mm512_storeu_ps(o + 2 * k, u);
        else _mm512_mask_storeu_ps(o + 2 * k, first16(2 * (count - k)), u);
    }
}

/* uniform_pairs_f64: element i of the fill takes hash i */
AVX512 static void uniform_pairs_f64_512(double *restrict o, int64_t j0, int64_t count, uint64_t key) {
    __m512i c = ag__counters8_512(key, (uint64_t)(2 * j0), 1);
    const __m512i step = _mm512_set1_epi64((long long)(8 * GAMMA));
    const __m512d scale = _mm512_set1_pd(0x1.0p-53);
    const int64_t n = 2 * count;
    for (int64_t i = 0; i < n; i += 8, c = _mm512_add_epi64(c, step)) {
        /* h >> 11 < 2^53 converts exactly, as high53 */
        const __m512d u = _mm512_mul_pd(_mm512_cvtepu64_pd(_mm512_srli_epi64(ag__mix8_512(c), 11)), scale);
        if (n - i >= 8) _mm512_storeu_pd(o + i, u);
        else _mm512_mask_storeu_pd(o + i, first8(n - i), u);
    }
}

/* vlogf in sixteen lanes, its steps in its order */
AVX512 static inline __m512 vlogf16(__m512 x) {
    __m512i b = _mm512_castps_si512(x);
    __m512 e = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_srli_epi32(b, 23), _mm512_set1_epi32(126)));
    b = _mm512_or_si512(_mm512_and_si512(b, _mm512_set1_epi32((int)0x807fffffu)), _mm512_set1_epi32(0x3f000000));
    __m512 m = _mm512_castsi512_ps(b);
    const __mmask16 low = _mm512_cmp_ps_mask(m, _mm512_set1_ps(SQRT_HALF_F), _CMP_LT_OQ);
    const __m512 one = _mm512_set1_ps(1.0f);
    e = _mm512_mask_sub_ps(e, low, e, one);
    m = _mm512_sub_ps(_mm512_mask_add_ps(m, low, m, m), one);
    const __m512 z = _mm512_mul_ps(m, m);
    __m512 p = _mm512_set1_ps(7.0376836292e-2f); /* ag__logf_poly */
    p = _mm512_sub_ps(_mm512_mul_ps(p, m), _mm512_set1_ps(1.1514610310e-1f));
    p = _mm512_add_ps(_mm512_mul_ps(p, m), _mm512_set1_ps(1.1676998740e-1f));
    p = _mm512_sub_ps(_mm512_mul_ps(p, m), _mm512_set1_ps(1.2420140846e-1f));
    p = _mm512_add_ps(_mm512_mul_ps(p, m), _mm512_set1_ps(1.4249322787e-1f));
    p = _mm512_sub_ps(_mm512_mul_ps(p, m), _mm512_set1_ps(1.6668057665e-1f));
    p = _mm512_add_ps(_mm512_mul_ps(p, m), _mm512_set1_ps(2.0000714765e-1f));
    p = _mm512_sub_ps(_mm512_mul_ps(p, m), _mm512_set1_ps(2.4999993993e-1f));
    p = _mm512_add_ps(_mm512_mul_ps(p, m), _mm512_set1_ps(3.3333331174e-1f));
    /* y = y·m·z + e·(-2.12194440e-4) - 0.5·z */
    __m512 y = _mm512_add_ps(_mm512_mul_ps(_mm512_mul_ps(p, m), z), _mm512_mul_ps(e, _mm512_set1_ps(-2.12194440e-4f)));
    y = _mm512_sub_ps(y, _mm512_mul_ps(_mm512_set1_ps(0.5f), z));
    return _mm512_add_ps(_mm512_add_ps(m, y), _mm512_mul_ps(e, _mm512_set1_ps(0.693359375f)));
}

/* quarter_sincos in sixteen lanes: the quadrant's swap a blend, its negations the sign bit */
AVX512 static inline void quarter_sincos16(__m512i q, __m512 phi, __m512 *c, __m512 *s) {
    const __m512 z = _mm512_mul_ps(phi, phi);
    /* sn = φ + φ·z·((-1.9515295891e-4·z + 8.3321608736e-3)·z - 1.6666654611e-1) */
    __m512 ps = _mm512_add_ps(_mm512_mul_ps(_mm512_set1_ps(-1.9515295891e-4f), z), _mm512_set1_ps(8.3321608736e-3f));
    ps = _mm512_sub_ps(_mm512_mul_ps(ps, z), _mm512_set1_ps(1.6666654611e-1f));
    const __m512 sn = _mm512_add_ps(phi, _mm512_mul_ps(_mm512_mul_ps(phi, z), ps));
    /* cs = 1 - 0.5·z + z·z·((2.443315711809948e-5·z - 1.388731625493765e-3)·z + 4.166664568298827e-2) */
    __m512 pc = _mm512_sub_ps(_mm512_mul_ps(_mm512_set1_ps(2.443315711809948e-5f), z), _mm512_set1_ps(1.388731625493765e-3f));
    pc = _mm512_add_ps(_mm512_mul_ps(pc, z), _mm512_set1_ps(4.166664568298827e-2f));
    const __m512 cs = _mm512_add_ps(_mm512_sub_ps(_mm512_set1_ps(1.0f), _mm512_mul_ps(_mm512_set1_ps(0.5f), z)),
                                    _mm512_mul_ps(_mm512_mul_ps(z, z), pc));
    const __mmask16 odd = _mm512_test_epi32_mask(q, _mm512_set1_epi32(1));
    const __m512 x = _mm512_mask_blend_ps(odd, cs, sn), y = _mm512_mask_blend_ps(odd, sn, cs);
    const __m512i two = _mm512_set1_epi32(2);
    const __m512i cneg = _mm512_slli_epi32(_mm512_and_si512(_mm512_add_epi32(q, _mm512_set1_epi32(1)), two), 30);
    const __m512i sneg = _mm512_slli_epi32(_mm512_and_si512(q, two), 30);
    *c = _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(x), cneg));
    *s = _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(y), sneg));
}

/* normal_pairs_f32, sixteen pairs a step: the low and high halves of sixteen hashes, then the pairs
 * interleaved back */
AVX512 static void normal_pairs_f32_512(float *restrict o, int64_t j0, int64_t count, uint64_t key) {
    __m512i c = ag__counters8_512(key, (uint64_t)j0, 1);
    const __m512i step = _mm512_set1_epi64((long long)(8 * GAMMA));
    const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    const __m512i odd = _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
    const __m512i first = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    const __m512i second = _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8);
    for (int64_t k = 0; k < count; k += 16) {
        const __m512i h0 = ag__mix8_512(c);
        c = _mm512_add_epi64(c, step);
        const __m512i h1 = ag__mix8_512(c);
        c = _mm512_add_epi64(c, step);
        const __m512i lo = _mm512_permutex2var_epi32(h0, even, h1), hi = _mm512_permutex2var_epi32(h0, odd, h1);
        const __m512 u1 = _mm512_mul_ps(_mm512_add_ps(_mm512_cvtepi32_ps(_mm512_srli_epi32(lo, 1)), _mm512_set1_ps(0.5f)),
                                        _mm512_set1_ps(0x1.0p-31f));
        const __m512 t = _mm512_mul_ps(_mm512_set1_ps(-2.0f), vlogf16(u1));
        const __m512 r = _mm512_maskz_sqrt_ps(_mm512_cmp_ps_mask(t, _mm512_setzero_ps(), _CMP_GT_OQ), t);
        const __m512i f = _mm512_and_si512(_mm512_srli_epi32(hi, 8), _mm512_set1_epi32(0x3fffff));
        const __m512 phi = _mm512_mul_ps(_mm512_sub_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(f), _mm512_set1_ps(0x1.0p-22f)),
                                                       _mm512_set1_ps(0.5f)),
                                         _mm512_set1_ps(1.57079632679489662f));
        __m512 cv, sv;
        quarter_sincos16(_mm512_srli_epi32(hi, 30), phi, &cv, &sv);
        const __m512 a = _mm512_mul_ps(r, cv), b = _mm512_mul_ps(r, sv);
        const __m512 v0 = _mm512_permutex2var_ps(a, first, b), v1 = _mm512_permutex2var_ps(a, second, b);
        if (count - k >= 16) {
            _mm512_storeu_ps(o + 2 * k, v0);
            _mm512_storeu_ps(o + 2 * k + 16, v1);
        } else {
            _mm512_mask_storeu_ps(o + 2 * k, first16(2 * (count - k)), v0);
            _mm512_mask_storeu_ps(o + 2 * k + 16, first16(2 * (count - k) - 16), v1);
        }
    }
}

/* a + x·y in eight double lanes (a a constant): the Horner steps of vlog and quarter_sincos64 */
#define MA(a, x, y) _mm512_add_pd(_mm512_set1_pd(a), _mm512_mul_pd(x, y))

/* vlog in eight lanes, its steps in its order */
AVX512 static inline __m512d vlog8(__m512d x) {
    __m512i b = _mm512_castpd_si512(x);
    __m512d e = _mm512_sub_pd(_mm512_cvtepu64_pd(_mm512_srli_epi64(b, 52)), _mm512_set1_pd(1022));
    b = _mm512_or_si512(_mm512_and_si512(b, _mm512_set1_epi64(0x000fffffffffffffLL)), _mm512_set1_epi64(0x3fe0000000000000LL));
    const __m512d m = _mm512_castsi512_pd(b), one = _mm512_set1_pd(1);
    const __mmask8 low = _mm512_cmp_pd_mask(m, _mm512_set1_pd(0.70710678118654752), _CMP_LT_OQ);
    e = _mm512_mask_sub_pd(e, low, e, one);
    const __m512d f = _mm512_sub_pd(_mm512_mask_add_pd(m, low, m, m), one);
    const __m512d s = _mm512_div_pd(f, _mm512_add_pd(_mm512_set1_pd(2), f)), z = _mm512_mul_pd(s, s);
    const __m512d w = _mm512_mul_pd(z, z);
    const __m512d t1 = _mm512_mul_pd(w, MA(3.999999999940941908e-01, w,
                                           MA(2.222219843214978396e-01, w, _mm512_set1_pd(1.531383769920937332e-01))));
    const __m512d t2 = _mm512_mul_pd(z, MA(6.666666666666735130e-01, w, MA(2.857142874366239149e-01, w,
                                           MA(1.818357216161805012e-01, w, _mm512_set1_pd(1.479819860511658591e-01)))));
    const __m512d hfsq = _mm512_mul_pd(_mm512_mul_pd(_mm512_set1_pd(0.5), f), f), R = _mm512_add_pd(t1, t2);
    /* e·ln2_hi - ((hfsq - (s·(hfsq + R) + e·ln2_lo)) - f) */
    const __m512d in = _mm512_add_pd(_mm512_mul_pd(s, _mm512_add_pd(hfsq, R)),
                                     _mm512_mul_pd(e, _mm512_set1_pd(1.90821492927058770002e-10)));
    return _mm512_sub_pd(_mm512_mul_pd(e, _mm512_set1_pd(6.93147180369123816490e-01)),
                         _mm512_sub_pd(_mm512_sub_pd(hfsq, in), f));
}

/* quarter_sincos64 in eight lanes */
AVX512 static inline void quarter_sincos8(__m512i q, __m512d phi, __m512d *c, __m512d *s) {
    const __m512d z = _mm512_mul_pd(phi, phi), v = _mm512_mul_pd(z, phi);
    const __m512d rs = MA(8.33333333332248946124e-03, z, MA(-1.98412698298579493134e-04, z, MA(2.75573137070700676789e-06, z,
                          MA(-2.50507602534068634195e-08, z, _mm512_set1_pd(1.58969099521155010221e-10)))));
    const __m512d sn = _mm512_add_pd(phi, _mm512_mul_pd(v, MA(-1.66666666666666324348e-01, z, rs)));
    const __m512d rc = _mm512_mul_pd(z, MA(4.16666666666666019037e-02, z, MA(-1.38888888888741095749e-03, z,
                          MA(2.48015872894767294178e-05, z, MA(-2.75573143513906633035e-07, z,
                          MA(2.08757232129817482790e-09, z, _mm512_set1_pd(-1.13596475577881948265e-11)))))));
#undef MA
    const __m512d hz = _mm512_mul_pd(_mm512_set1_pd(0.5), z), one = _mm512_set1_pd(1), w = _mm512_sub_pd(one, hz);
    const __m512d cs = _mm512_add_pd(w, _mm512_add_pd(_mm512_sub_pd(_mm512_sub_pd(one, w), hz), _mm512_mul_pd(z, rc)));
    const __mmask8 odd = _mm512_test_epi64_mask(q, _mm512_set1_epi64(1));
    const __m512d x = _mm512_mask_blend_pd(odd, cs, sn), y = _mm512_mask_blend_pd(odd, sn, cs);
    const __m512i two = _mm512_set1_epi64(2);
    const __m512i cneg = _mm512_slli_epi64(_mm512_and_si512(_mm512_add_epi64(q, _mm512_set1_epi64(1)), two), 62);
    const __m512i sneg = _mm512_slli_epi64(_mm512_and_si512(q, two), 62);
    *c = _mm512_castsi512_pd(_mm512_xor_si512(_mm512_castpd_si512(x), cneg));
    *s = _mm512_castsi512_pd(_mm512_xor_si512(_mm512_castpd_si512(y), sneg));
}

/* normal_pairs_f64, eight pairs a step: pair j's hashes 2j (the radius) and 2j + 1 (the angle) in two
 * vectors of counters two apart */
AVX512 static void normal_pairs_f64_512(double *restrict o, int64_t j0, int64_t count, uint64_t key) {
    __m512i cr = ag__counters8_512(key, (uint64_t)(2 * j0), 2);
    const __m512i step = _mm512_set1_epi64((long long)(16 * GAMMA)), next = _mm512_set1_epi64((long long)GAMMA);
    const __m512i first = _mm512_set_epi64(11, 3, 10, 2, 9, 1, 8, 0), second = _mm512_set_epi64(15, 7, 14, 6, 13, 5, 12, 4);
    for (int64_t k = 0; k < count; k += 8, cr = _mm512_add_epi64(cr, step)) {
        const __m512d u1 = _mm512_sub_pd(_mm512_set1_pd(1), _mm512_mul_pd(_mm512_cvtepu64_pd(_mm512_srli_epi64(ag__mix8_512(cr), 11)),
                                                                       _mm512_set1_pd(0x1.0p-53)));
        const __m512d t = _mm512_mul_pd(_mm512_set1_pd(-2), vlog8(u1));
        const __m512d r = _mm512_maskz_sqrt_pd(_mm512_cmp_pd_mask(t, _mm512_setzero_pd(), _CMP_GT_OQ), t);
        const __m512i h = ag__mix8_512(_mm512_add_epi64(cr, next));
        const __m512i f = _mm512_and_si512(_mm512_srli_epi64(h, 11), _mm512_set1_epi64(0x7ffffffffffffLL));
        const __m512d phi = _mm512_mul_pd(_mm512_sub_pd(_mm512_mul_pd(_mm512_cvtepu64_pd(f), _mm512_set1_pd(0x1.0p-51)),
                                                        _mm512_set1_pd(0.5)),
                                          _mm512_set1_pd(1.57079632679489662));
        __m512d cv, sv;
        quarter_sincos8(_mm512_srli_epi64(h, 62), phi, &cv, &sv);
        const __m512d a = _mm512_mul_pd(r, cv), b = _mm512_mul_pd(r, sv);
        const __m512d v0 = _mm512_permutex2var_pd(a, first, b), v1 = _mm512_permutex2var_pd(a, second, b);
        if (count - k >= 8) {
            _mm512_storeu_pd(o + 2 * k, v0);
            _mm512_storeu_pd(o + 2 * k + 8, v1);
        } else {
            _mm512_mask_storeu_pd(o + 2 * k, first8(2 * (count - k)), v0);
            _mm512_mask_storeu_pd(o + 2 * k + 8, first8(2 * (count - k) - 8), v1);
        }
    }
}
/* affine_f32 and affine_f64 in lanes: v = lo + w·v in double, then rounded to the dtype (the float32
 * values widened exactly, one product and one sum rounded as the C loop's) */
AVX512 static void affine_f32_512(float *restrict o, int64_t n, double lo, double w) {
    const __m512d l = _mm512_set1_pd(lo), s = _mm512_set1_pd(w);
    for (int64_t i = 0; i < n; i += 8) {
        const __mmask8 m = first8(n - i);
        const __m512d v = _mm512_cvtps_pd(_mm256_maskz_loadu_ps(m, o + i));
        _mm256_mask_storeu_ps(o + i, m, _mm512_cvtpd_ps(_mm512_add_pd(l, _mm512_mul_pd(s, v))));
    }
}
AVX512 static void affine_f64_512(double *restrict o, int64_t n, double lo, double w) {
    const __m512d l = _mm512_set1_pd(lo), s = _mm512_set1_pd(w);
    for (int64_t i = 0; i < n; i += 8) {
        const __mmask8 m = first8(n - i);
        _mm512_mask_storeu_pd(o + i, m, _mm512_add_pd(l, _mm512_mul_pd(s, _mm512_maskz_loadu_pd(m, o + i))));
    }
}
#undef AVX512
#undef GAMMA
#else
bool ag__rand_avx512 = true;
#endif

typedef struct fill_job {
    void *out;
    ag_dtype dtype;
    int64_t n;
    bool normal, affine;
    double lo, w;
    uint64_t key;
    bool wide; /* the AVX-512 kernels (AG_VEC_512() and ag__rand_avx512) */
} fill_job;

/* Pairs j0 .. j0 + count - 1 of the fill f at o, mapped by its affine map */
static void pairs_of(const fill_job *f, void *o, int64_t j0, int64_t count) {
#ifdef AG_X86_INTRINSICS
    const bool wide = f->wide;
#else
    const bool wide = false;
#endif
    if (f->dtype == AG_F64) {
#ifdef AG_X86_INTRINSICS
        if (wide) (f->normal ? normal_pairs_f64_512 : uniform_pairs_f64_512)(o, j0, count, f->key);
#endif
        if (!wide) (f->normal ? normal_pairs_f64 : uniform_pairs_f64)(o, j0, count, f->key);
#ifdef AG_X86_INTRINSICS
        if (wide && f->affine) affine_f64_512(o, 2 * count, f->lo, f->w);
#endif
        if (!wide && f->affine) affine_f64(o, 2 * count, f->lo, f->w);
    } else {
#ifdef AG_X86_INTRINSICS
        if (wide) (f->normal ? normal_pairs_f32_512 : uniform_pairs_f32_512)(o, j0, count, f->key);
#endif
        if (!wide) (f->normal ? normal_pairs_f32 : uniform_pairs_f32)(o, j0, count, f->key);
#ifdef AG_X86_INTRINSICS
        if (wide && f->affine) affine_f32_512(o, 2 * count, f->lo, f->w);
#endif
        if (!wide && f->affine) affine_f32(o, 2 * count, f->lo, f->w);
    }
}

/* Pairs [j0, j1) of the fill, in blocks that stay in the L1 cache for the affine pass; the pair that holds
 * the last element of an odd n goes through a buffer. */
static void fill_pairs(const fill_job *f, int64_t j0, int64_t j1) {
    enum { BLOCK = 512 };
    const size_t size = f->dtype == AG_F64 ? sizeof(double) : sizeof(float);
    const int64_t full = f->n / 2, end = j1 < full ? j1 : full;
    for (int64_t j = j0; j < end; j += BLOCK)
        pairs_of(f, (char *)f->out + (size_t)(2 * j) * size, j, end - j < BLOCK ? end - j : BLOCK);
    if (j0 <= full && full < j1) { /* n is odd */
        double buf[2];
        pairs_of(f, buf, full, 1);
        memcpy((char *)f->out + (size_t)(f->n - 1) * size, buf, size);
    }
}

void ag__rand_fill_keyed(void *out, ag_dtype dtype, int64_t n, uint64_t key, bool normal, double a, double b) {
    if (n <= 0) return; /* an empty tensor's data may be NULL */
    const fill_job f = {out, dtype, n, normal, !(a == 0 && b == 1), a, normal ? b : b - a, key, ag__rand_avx512 && AG_VEC_512()};
    const int64_t pairs = (n + 1) / 2;
    const int nt = ag__threads_for(n);
    if (nt <= 1) { /* no parallel region at all (docs/design.md: one-thread teams) */
        fill_pairs(&f, 0, pairs);
        return;
    }
#pragma omp parallel num_threads(nt)
    {
        const int t = omp_get_thread_num(), used = omp_get_num_threads();
        fill_pairs(&f, ag__share_start(pairs, t, used), ag__share_start(pairs, t + 1, used));
    }
}

void ag__rand_fill(void *out, ag_dtype dtype, int64_t n, bool normal, double a, double b) {
    ag__rand_fill_keyed(out, dtype, n, ag__rand_u64(), normal, a, b);
}

/* ---- exponential fills and bounded integers: the same counter-based generator --------------------------
 * exponential_ maps a uniform fill u (one key, as above) to -ln(1 - u)/λ: 1 - u is exact on u's grid and
 * lies in [2^-24, 1] (float32) or [2^-53, 1] (float64), where vlogf and vlog hold (a few float32 ulps; 1 ulp).
 * randint takes one key k and gives element i low + ⌊h·span/2^64⌋ for h = h(k, i) (Lemire's multiply-shift),
 * drawn again from h(k_a, i), k_a = mix(k + a), for attempt a = 1, 2, ... while the product's low half
 * falls below 2^64 mod span (those h would make some values likelier): exactly uniform, any element on
 * any thread, the same values for every thread count. */
AG_VEC_CLONES static void exp_map_f32(float *restrict o, int64_t n, float lambd) {
    for (int64_t i = 0; i < n; i++) o[i] = -vlogf(1.0f - o[i]) / lambd;
}
AG_VEC_CLONES static void exp_map_f64(double *restrict o, int64_t n, double lambd) {
    for (int64_t i = 0; i < n; i++) o[i] = -vlog(1.0 - o[i]) / lambd;
}

void ag__rand_exponential(void *out, ag_dtype dtype, int64_t n, double lambd) {
    if (n <= 0) return;
    ag__rand_fill(out, dtype, n, false, 0, 1);
    const int nt = ag__threads_for(n);
AG_PARALLEL(nt, {
        const int t = ag__thread, used = ag__team;
        const int64_t i0 = ag__share_start(n, t, used), i1 = ag__share_start(n, t + 1, used);
        if (dtype == AG_F64) exp_map_f64((double *)out + i0, i1 - i0, lambd);
        else exp_map_f32((float *)out + i0, i1 - i0, (float)lambd);
});
}

#ifdef __SIZEOF_INT128__
__extension__ typedef unsigned __int128 u128;
/* a·b: the high 64 bits, the low ones into *lo */
static inline uint64_t mul_64x64(uint64_t a, uint64_t b, uint64_t *lo) {
    const u128 m = (u128)a * b;
    *lo = (uint64_t)m;
    return (uint64_t)(m >> 64);
}
#else
static inline uint64_t mul_64x64(uint64_t a, uint64_t b, uint64_t *lo) {
    const uint64_t al = a & 0xffffffffu, ah = a >> 32, bl = b & 0xffffffffu, bh = b >> 32;
    const uint64_t ll = al * bl, lh = al * bh, hl = ah * bl, hh = ah * bh;
    const uint64_t mid = (ll >> 32) + (lh & 0xffffffffu) + (hl & 0xffffffffu);
    *lo = (mid << 32) | (ll & 0xffffffffu);
    return hh + (lh >> 32) + (hl >> 32) + (mid >> 32);
}
#endif

static void below_run(int64_t *o, int64_t i0, int64_t i1, uint64_t key, uint64_t low, uint64_t span) {
    const uint64_t biased = -span % span; /* 2^64 mod span */
    for (int64_t i = i0; i < i1; i++) {
        uint64_t lo, hi = mul_64x64(counter_mix(key, (uint64_t)i), span, &lo);
        for (uint64_t a = 1; lo < biased; a++) hi = mul_64x64(counter_mix(ag__mix64(key + a), (uint64_t)i), span, &lo);
        o[i] = (int64_t)(low + hi);
    }
}

void ag__rand_below(int64_t *out, int64_t n, uint64_t low, uint64_t span) {
    if (n <= 0) return;
    const uint64_t key = ag__rand_u64();
    const int nt = ag__threads_for(n);
AG_PARALLEL(nt, {
        const int t = ag__thread, used = ag__team;
        below_run(out, ag__share_start(n, t, used), ag__share_start(n, t + 1, used), key, low, span);
});
}

/* Uniform on [0, 1) with 53 random bits. */
double ag__rand_uniform(void) { return (double)(ag__rand_u64() >> 11) * 0x1.0p-53; }

/* Standard normal by Box-Muller (one value per call, so results do not depend on call parity). */
double ag__rand_normal(void) {
    double u1 = 1.0 - ag__rand_uniform(); /* (0, 1] */
    double u2 = ag__rand_uniform();
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/*
 * ops/vlogsum.h - (float)log(s) of a float64 sum s >= 1 without a libm call, so that a
 * loop over the rows of a softmax (whose Σ exp(x - max) is at least 1) vectorises,
 * with the same bits as (float)log(s) through libm.
 *
 * How the bits stay libm's: vlogsum computes log(s) in float64 to within a few ulps
 * (s = 2^e·m, m in [√½, √2), log m = 2 atanh(u), u = (m - 1)/(m + 1), eleven terms of
 * the series, whose first omitted one is below 2^-60 of the sum; e·ln 2 with ln 2 in
 * two parts), and says whether the float32 rounding of every float64 within 2^-36 of
 * its result (far more than its error and libm's, each a few ulps) is one value: then
 * that value is (float)log(s) whatever libm's last bits are.  Otherwise (about one sum
 * in 2^12: a result within 2^-36 of the midpoint of two floats) the caller takes libm's
 * log.  test_vmathf checks vlogsum_fix against (float)log over many sums.
 * Only integer operations on the bits, selects, float64 arithmetic and conversions
 * between float64 and float32: no float to integer conversion, so no input (NaN,
 * ±inf, s < 1, which the caller never keeps) is undefined behaviour.
 */
#ifndef AGRAD_VLOGSUM_H
#define AGRAD_VLOGSUM_H

#include <math.h>
#include <stdint.h>
#include <string.h>

/* log(s) in float64 for 1 <= s < inf, within a few ulps (not libm's bits); anything for other s. */
static inline double vlog_ge1(double s) {
    uint64_t b;
    memcpy(&b, &s, sizeof b);
    /* m in [1, 2) from the mantissa; the exponent field as a float64 without an int conversion:
     * the bits of 2^52 + field, less 2^52 + 1023 */
    const uint64_t mb = (b & 0x000FFFFFFFFFFFFFull) | 0x3FF0000000000000ull, eb = (b >> 52 & 0x7FF) | 0x4330000000000000ull;
    double m, e;
    memcpy(&m, &mb, sizeof m);
    memcpy(&e, &eb, sizeof e);
    e -= 4503599627371519.0; /* 2^52 + 1023 */
    const int big = m > 1.4142135623730951;
    m = big ? m * 0.5 : m; /* in [√½, √2) */
    e = big ? e + 1 : e;
    const double f = m - 1, u = f / (2 + f), u2 = u * u; /* f exact (Sterbenz) */
    double p = 2.0 / 23;                                 /* log m = 2u + u·u2·Σ_k 2/(2k + 1)·u2^(k-1) */
    p = p * u2 + 2.0 / 21;
    p = p * u2 + 2.0 / 19;
    p = p * u2 + 2.0 / 17;
    p = p * u2 + 2.0 / 15;
    p = p * u2 + 2.0 / 13;
    p = p * u2 + 2.0 / 11;
    p = p * u2 + 2.0 / 9;
    p = p * u2 + 2.0 / 7;
    p = p * u2 + 2.0 / 5;
    p = p * u2 + 2.0 / 3;
    const double lm = 2 * u + u * u2 * p;
    /* ln 2 = LN2_HI + LN2_LO, LN2_HI with 32 trailing zero bits: e·LN2_HI exact */
    return e * 6.93147180369123816490e-01 + (lm + e * 1.90821492927058770002e-10);
}

/* log(s) rounded to float32 for 1 <= s < inf; *ok = 0 where the result may differ from
 * (float)log(s) (then, and for s outside [1, inf), call vlogsum_fix or libm). */
static inline float vlogsum(double s, int *ok) {
    const double y = vlog_ge1(s), d = y * 0x1p-36;
    *ok = (float)(y - d) == (float)(y + d) && s >= 1 && s < INFINITY;
    return (float)y;
}

/* f[i] = (float)log(s[i]) for the n sums, vlogsum where it is sure of libm's bits and libm
 * elsewhere: the loop over vlogsum vectorises, the second loop rarely calls log. */
static inline void vlogsum_fix(const double *s, float *f, int64_t n) {
    int ok[64];
    for (int64_t i0 = 0; i0 < n; i0 += 64) {
        const int64_t w = n - i0 < 64 ? n - i0 : 64;
        for (int64_t i = 0; i < w; i++) f[i0 + i] = vlogsum(s[i0 + i], &ok[i]);
        for (int64_t i = 0; i < w; i++)
            if (!ok[i]) f[i0 + i] = (float)log(s[i0 + i]);
    }
}

#endif

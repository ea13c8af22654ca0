/*
 * core/simd_extreme.h - a max or min made by `omp simd reduction(max | min : m)`, made right
 * where every element is the infinity the scan starts from.
 *
 * OpenMP starts each SIMD lane's partial max at the type's "least representable value": GCC
 * takes -inf, clang the lowest finite value (-FLT_MAX, -DBL_MAX; +FLT_MAX, +DBL_MAX for min).
 * With clang a scan over elements that are all -inf (max) or all +inf (min) then ends at that
 * finite value instead of the infinity: amax of a row of -inf gave -3.4e38, and a softmax row of
 * -inf was taken for a finite one (the fused cross-entropy's loss inf where it is NaN).  Where the
 * result is exactly that value, AG_SIMD_EXTREME_FIX scans the elements again without the pragma
 * (a row whose true max is -FLT_MAX is the only other case, and gets the same value back): no
 * cost on any other row, the same result as GCC's.
 */
#ifndef AGRAD_SIMD_EXTREME_H
#define AGRAD_SIMD_EXTREME_H

#include <float.h>
#include <math.h>
#include <stdint.h>

/* m (of type T, float or double) = the extreme of ELEM (an expression of the int64_t index I)
 * over I in [0, n) if m is the finite value clang's reduction starts from; BEATS(a, b) is
 * a > b for max, a < b for min; START is -INFINITY for max, INFINITY for min. */
#define AG_SIMD_EXTREME_FIX(T, m, n, I, ELEM, BEATS, START)                                     \
    do {                                                                                        \
        const double tmax_ = sizeof(T) == sizeof(float) ? FLT_MAX : DBL_MAX;                    \
        if ((m) == ((START) < 0 ? -tmax_ : tmax_)) {                                            \
            T m_ = (T)(START);                                                                  \
            for (int64_t I = 0; I < (n); I++) {                                                 \
                const T e_ = (ELEM);                                                            \
                m_ = BEATS(e_, m_) ? e_ : m_;                                                   \
            }                                                                                   \
            (m) = m_;                                                                           \
        }                                                                                       \
    } while (0)
/* a > b: AG_SIMD_EXTREME_FIX's BEATS for max */
#define AG_GREATER(a, b) ((a) > (b))
/* a < b: AG_SIMD_EXTREME_FIX's BEATS for min */
#define AG_LESS(a, b) ((a) < (b))

#endif

/* core/logf_poly.h - Cephes' logf polynomial, shared by the float32 log kernels that vectorise
 * (core/random.c's vlogf for the normal fills, ops/vmathf.h's vlog1pf). */
#ifndef AG_CORE_LOGF_POLY_H
#define AG_CORE_LOGF_POLY_H

/* P(f) of Cephes' logf, in Horner form: ln(1 + f) = f - f²/2 + f³·P(f) for f in [√½ - 1, √2 - 1). */
static inline float ag__logf_poly(float f) {
    float p = 7.0376836292e-2f;
    p = p * f - 1.1514610310e-1f;
    p = p * f + 1.1676998740e-1f;
    p = p * f - 1.2420140846e-1f;
    p = p * f + 1.4249322787e-1f;
    p = p * f - 1.6668057665e-1f;
    p = p * f + 2.0000714765e-1f;
    p = p * f - 2.4999993993e-1f;
    p = p * f + 3.3333331174e-1f;
    return p;
}

#endif

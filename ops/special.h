/*
 * special.h - special functions libm lacks (or has only with global state):
 * the digamma and trigamma functions, the inverse error function, and a
 * thread-safe log-gamma.  float64 throughout; float32 kernels round the result.
 */
#ifndef AGRAD_OPS_SPECIAL_H
#define AGRAD_OPS_SPECIAL_H

#include "core/internal.h"

/* log|Γ(x)|, as C's lgamma but without writing signgam (so safe in parallel loops). */
AG_HIDDEN double ag__lgamma(double x);
/* ψ(x) = d/dx log Γ(x): -inf at +0, inf at -0, NaN at negative integers and -inf. */
AG_HIDDEN double ag__digamma(double x);
/* ψ₁(x) = ψ'(x), the trigamma function. */
AG_HIDDEN double ag__trigamma(double x);
/* erf⁻¹(y): NaN outside [-1, 1], ±inf at ±1. */
AG_HIDDEN double ag__erfinv(double y);

#endif

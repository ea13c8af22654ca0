/*
 * special.h - special functions libm lacks (or has only with global state):
 * the digamma, trigamma and polygamma functions, the inverse error function, and a
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
/* ψ⁽ⁿ⁾(x), the n-th derivative of ψ (n >= 0; n 0 is ψ, n 1 is ψ₁): inf at 0 and the negative
 * integers for n >= 2. */
AG_HIDDEN double ag__polygamma(int64_t n, double x);
/* erf⁻¹(y): NaN outside [-1, 1], ±inf at ±1. */
AG_HIDDEN double ag__erfinv(double y);

#endif

/*
 * special.c - special functions for the unary rows lgamma, digamma and erfinv
 * (ops/unary.c), computed as PyTorch 1.13 computes them (ATen's Math.h), so that
 * values and derivatives agree with it at the edges: digamma by reflection,
 * recurrence up to 10 and the asymptotic series; trigamma (digamma's derivative,
 * PyTorch's polygamma(1, x)) likewise; polygamma(n, x) for n >= 2 through the
 * Hurwitz zeta function (Cephes' Euler-Maclaurin summation); erfinv by a rational
 * first guess and two Newton steps.
 */
#define _DEFAULT_SOURCE /* lgamma_r: C's lgamma writes the global signgam */
#include <math.h>
#include "ops/special.h"

#define PI 3.14159265358979323846

double ag__lgamma(double x) {
    int sign;
    return lgamma_r(x, &sign);
}

/* A[0]·z^n + A[1]·z^(n-1) + ... + A[n] (Cephes' polevl). */
static double polevl(double z, const double *A, int n) {
    double r = A[0];
    for (int i = 1; i <= n; i++) r = r * z + A[i];
    return r;
}

/* ψ(x) = ψ(1 - x) - π/tan(πx) for x < 0;  ψ(x) = ψ(x + 1) - 1/x;  ψ(x) ~ log x - 1/(2x) - Σ B₂ₖ/(2k x²ᵏ) */
double ag__digamma(double x) {
    static const double PSI_10 = 2.25175258906672110764;
    if (x == 0) return copysign(INFINITY, -x);
    if (x < 0) {
        if (x == trunc(x)) return NAN;
        double q, r = modf(x, &q); /* tan(πr) is more accurate than tan(πx) */
        return ag__digamma(1 - x) - PI / tan(PI * r);
    }
    double result = 0;
    while (x < 10) {
        result -= 1 / x;
        x += 1;
    }
    if (x == 10) return result + PSI_10;
    static const double A[] = {8.33333333333333333333E-2,  -2.10927960927960927961E-2, 7.57575757575757575758E-3,
                               -4.16666666666666666667E-3, 3.96825396825396825397E-3,  -8.33333333333333333333E-3,
                               8.33333333333333333333E-2};
    double y = 0;
    if (x < 1.0e17) {
        double z = 1.0 / (x * x);
        y = z * polevl(z, A, 6);
    }
    return result + log(x) - 0.5 / x - y;
}

/* ψ₁(x) = π²/sin²(πx) - ψ₁(1 - x) for x < 1/2;  ψ₁(x) = ψ₁(x + 1) + 1/x²;  asymptotic series from x + 6 */
double ag__trigamma(double x) {
    double sign = 1, result = 0;
    if (x < 0.5) {
        sign = -1;
        const double s = sin(PI * x);
        result -= PI * PI / (s * s);
        x = 1 - x;
    }
    for (int i = 0; i < 6; i++) {
        result += 1 / (x * x);
        x += 1;
    }
    const double ixx = 1 / (x * x);
    result += (1 + 1 / (2 * x) + ixx * (1. / 6 - ixx * (1. / 30 - ixx * (1. / 42)))) / x;
    return sign * result;
}

/* ζ(s, q) = Σ_{k≥0} (k + q)^-s, the Hurwitz zeta function (Cephes' zeta, as ATen's Math.h): the
 * first terms summed directly, the rest by Euler-Maclaurin with the Bernoulli coefficients A. */
static double hurwitz_zeta(double s, double q) {
    static const double MACHEP = 1.11022302462515654042E-16;
    static const double A[] = {12.0, -720.0, 30240.0, -1209600.0, 47900160.0, -1.8924375803183791606e9, 7.47242496e10,
                               -2.950130727918164224e12, 1.1646782814350067249e14, -4.5979787224074726105e15,
                               1.8152105401943546773e17, -7.1661652561756670113e18};
    if (s == 1) return INFINITY;
    if (s < 1) return NAN;
    if (q <= 0) {
        if (q == floor(q)) return INFINITY;
        if (s != floor(s)) return NAN; /* q^-s is not defined */
    }
    if (q < -1024) {
        /* the terms from q up to 0 directly would be |q| of them: with m = ceil(-q) and f = q + m in
         * (0, 1), Σ_{k<m} (q + k)^-s = (-1)^s Σ_{j=1..m} (j - f)^-s = (-1)^s (ζ(s, 1 - f) - ζ(s, m + 1 - f))
         * for the integer s this branch has, and the rest is ζ(s, f) */
        const double m = ceil(-q), f = q + m;
        return (fmod(s, 2) == 0 ? 1 : -1) * (hurwitz_zeta(s, 1 - f) - hurwitz_zeta(s, m + 1 - f)) + hurwitz_zeta(s, f);
    }
    double sum = pow(q, -s), a = q, b = 0;
    int i = 0;
    while (i < 9 || a <= 9.0) {
        i += 1;
        a += 1;
        b = pow(a, -s);
        sum += b;
        if (-MACHEP * sum < b && b < MACHEP * sum) return sum;
    }
    const double w = a;
    sum += b * w / (s - 1);
    sum -= 0.5 * b;
    double fac = 1, k = 0;
    for (i = 0; i < 12; i++) {
        fac *= s + k;
        b /= w;
        double t = fac * b / A[i];
        sum += t;
        if (fabs(t / sum) < MACHEP) return sum;
        k += 1;
        fac *= s + k;
        b /= w;
        k += 1;
    }
    return sum;
}

/* ψ⁽ⁿ⁾(x) = (-1)^(n+1)·n!·ζ(n + 1, x) for n >= 2 (ATen's calc_polygamma); ψ and ψ₁ below that. */
double ag__polygamma(int64_t n, double x) {
    if (n == 0) return ag__digamma(x);
    if (n == 1) return ag__trigamma(x);
    return (n % 2 ? 1.0 : -1.0) * exp(ag__lgamma((double)n + 1)) * hurwitz_zeta((double)(n + 1), x);
}

/* x = erf⁻¹(y): a rational approximation (Pavlis's Matlab erfinv), then two Newton steps on erf(x) = y */
double ag__erfinv(double y) {
    static const double a[4] = {0.886226899, -1.645349621, 0.914624893, -0.140543331};
    static const double b[4] = {-2.118377725, 1.442710462, -0.329097515, 0.012229801};
    static const double c[4] = {-1.970840454, -1.624906493, 3.429567803, 1.641345311};
    static const double d[2] = {3.543889200, 1.637067800};
    const double y_abs = fabs(y);
    if (y_abs > 1) return NAN;
    if (y_abs == 1) return copysign(INFINITY, y);
    double x;
    if (y_abs <= 0.7) {
        const double z = y * y;
        const double num = ((a[3] * z + a[2]) * z + a[1]) * z + a[0];
        const double dem = (((b[3] * z + b[2]) * z + b[1]) * z + b[0]) * z + 1;
        x = y * num / dem;
    } else {
        const double z = sqrt(-log((1 - y_abs) / 2));
        const double num = ((c[3] * z + c[2]) * z + c[1]) * z + c[0];
        const double dem = (d[1] * z + d[0]) * z + 1;
        x = copysign(num, y) / dem;
    }
    const double two_over_sqrt_pi = 1.12837916709551257390;
    x = x - (erf(x) - y) / (two_over_sqrt_pi * exp(-x * x));
    x = x - (erf(x) - y) / (two_over_sqrt_pi * exp(-x * x));
    return x;
}

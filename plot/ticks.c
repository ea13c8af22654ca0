/*
 * plot/ticks.c - where the ticks of a plot's axes go and what they say:
 * Heckbert's "nice numbers" (1, 2 or 5 times a power of ten) on linear axes;
 * on log axes powers of ten with minor ticks at their multiples, or 1, 2 and 5
 * times powers of ten when the axis spans less than three decades.  Labels
 * carry as many decimals as the spacing needs, or a short exponent
 * ("1e6", "2.5e-5") for very large or small values.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "plot/internal.h"

/* Heckbert's nice number: 1, 2, 5 or 10 times a power of ten, the nearest to x. */
static double nice_number(double x) {
    double e = floor(log10(x)), f = x / pow(10, e);
    return (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * pow(10, e);
}

int ag__nice_ticks(double lo, double hi, int target, double *ticks, int max, double *step) {
    *step = 0;
    if (!(hi > lo) || !isfinite(hi - lo) || max < 1) return 0;
    if (target < 2) target = 2;
    double d = nice_number((hi - lo) / target);
    double first = ceil(lo / d - 1e-9) * d;
    int n = 0;
    for (int k = 0; n < max; k++) {
        double v = first + k * d;
        if (v > hi + d * 1e-9) break;
        ticks[n++] = fabs(v) < d * 1e-9 ? 0 : v;
    }
    *step = d;
    return n;
}

/* Writes v as printf would with %.<p>g / %.<d>f, exponent tidied: 1e+06 -> 1e6, 2.5e-05 -> 2.5e-5. */
static void format_number(char *buf, size_t size, double v, double step, double span_abs) {
    if (fabs(v) < step * 1e-9) v = 0;
    if (span_abs >= 1e5 || step < 1e-4) {
        int p = (int)(floor(log10(fmax(span_abs, step))) - floor(log10(step))) + 1;
        snprintf(buf, size, "%.*g", p < 1 ? 1 : p > 15 ? 15 : p, v);
        char *e = strchr(buf, 'e');
        if (e) { /* drop the '+' and the leading zeros of the exponent */
            char *r = e + 1, *w = e + 1;
            if (*r == '+') r++;
            else if (*r == '-') *w++ = *r++;
            while (*r == '0' && r[1]) r++;
            memmove(w, r, strlen(r) + 1);
        }
    } else {
        int d = (int)fmax(0, -floor(log10(step) + 1e-9));
        snprintf(buf, size, "%.*f", d, v);
    }
}

double ag__label_width(const ag__tick *t, double fs) {
    if (t->pow10) {
        char e[16];
        snprintf(e, sizeof e, "%d", t->exp);
        return fs * 0.6 * (2 + 0.75 * (double)strlen(e));
    }
    return fs * 0.6 * (double)strlen(t->label);
}

int ag__axis_ticks(double lo, double hi, bool lg, int target, ag__tick *t) {
    double v[AG__MAX_TICKS], step;
    int n = 0;
    if (lg) {
        int e0 = (int)ceil(lo - 1e-9), e1 = (int)floor(hi + 1e-9);
        int ndec = e1 - e0 + 1;
        if (ndec >= 3) {
            int k = (ndec + target - 1) / target;
            if (k < 1) k = 1;
            for (int e = e0; e <= e1 && n < AG__MAX_TICKS; e++) {
                if (((e % k) + k) % k == 0) {
                    t[n] = (ag__tick){.at = e, .exp = e, .pow10 = true};
                    snprintf(t[n].label, sizeof t[n].label, "1e%d", e);
                    n++;
                }
                if (k == 1 && hi - lo <= 8)
                    for (int m = 2; m <= 9 && n < AG__MAX_TICKS; m++) {
                        double at = e + log10(m);
                        if (at <= hi) t[n++] = (ag__tick){.at = at};
                    }
            }
            for (int m = 2; m <= 9 && k == 1 && hi - lo <= 8 && n < AG__MAX_TICKS; m++) { /* below the first decade */
                double at = e0 - 1 + log10(m);
                if (at >= lo) t[n++] = (ag__tick){.at = at};
            }
            return n;
        }
        /* Less than three decades: 1, 2 and 5 times powers of ten labelled, the
         * other multiples as minor ticks; else nice values. */
        int labelled = 0;
        for (int e = e0 - 1; e <= e1 && n < AG__MAX_TICKS; e++)
            for (int m = 1; m <= 9 && n < AG__MAX_TICKS; m++) {
                double at = e + log10(m);
                if (at < lo - 1e-9 || at > hi + 1e-9) continue;
                t[n] = (ag__tick){.at = at};
                if (m == 1 || m == 2 || m == 5) {
                    snprintf(t[n].label, sizeof t[n].label, "%g", m * pow(10, e));
                    labelled++;
                }
                n++;
            }
        if (labelled >= 2) return n;
        n = 0;
        double a = pow(10, lo), b = pow(10, hi);
        int m = ag__nice_ticks(a, b, target, v, AG__MAX_TICKS, &step);
        for (int i = 0; i < m; i++) {
            t[i] = (ag__tick){.at = log10(v[i])};
            format_number(t[i].label, sizeof t[i].label, v[i], step, fmax(fabs(a), fabs(b)));
        }
        return m;
    }
    n = ag__nice_ticks(lo, hi, target, v, AG__MAX_TICKS, &step);
    for (int i = 0; i < n; i++) {
        t[i] = (ag__tick){.at = v[i]};
        format_number(t[i].label, sizeof t[i].label, v[i], step, fmax(fabs(lo), fabs(hi)));
    }
    return n;
}

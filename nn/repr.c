/*
 * repr.c - Python's repr of floats and tuples, for module descriptions.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "nn/repr.h"

char *ag__py_float(char *buf, size_t size, double v) {
    if (isnan(v)) {
        snprintf(buf, size, "nan");
        return buf;
    }
    if (isinf(v)) {
        snprintf(buf, size, v < 0 ? "-inf" : "inf");
        return buf;
    }
    /* The fewest significant digits that round-trip, as "d.ddde±X". */
    char sci[40];
    for (int p = 1; p <= 17; p++) {
        snprintf(sci, sizeof sci, "%.*e", p - 1, v);
        if (strtod(sci, NULL) == v) break;
    }
    char digits[24];
    int nd = 0;
    const char *s = sci;
    bool neg = *s == '-';
    if (neg) s++;
    for (; *s && *s != 'e'; s++)
        if (*s >= '0' && *s <= '9') digits[nd++] = *s;
    int exp10 = atoi(s + 1);
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    digits[nd] = '\0';
    char out[64];
    int n = 0;
    if (neg) out[n++] = '-';
    if (exp10 >= -4 && exp10 < 16) { /* positional, always with a fractional part */
        if (exp10 < 0) {
            n += snprintf(out + n, sizeof out - (size_t)n, "0.%.*s%s", -exp10 - 1, "0000", digits);
        } else {
            for (int i = 0; i <= exp10; i++) out[n++] = i < nd ? digits[i] : '0';
            out[n++] = '.';
            if (nd > exp10 + 1) n += snprintf(out + n, sizeof out - (size_t)n, "%s", digits + exp10 + 1);
            else out[n++] = '0';
            out[n] = '\0';
        }
    } else { /* d[.ddd]e±XX */
        out[n++] = digits[0];
        if (nd > 1) n += snprintf(out + n, sizeof out - (size_t)n, ".%s", digits + 1);
        snprintf(out + n, sizeof out - (size_t)n, "e%c%02d", exp10 < 0 ? '-' : '+', abs(exp10));
    }
    snprintf(buf, size, "%s", out);
    return buf;
}

char *ag__py_tuple(char *buf, size_t size, int ndim, const int64_t *dims) {
    size_t n = 0;
    n += (size_t)snprintf(buf, size, "(");
    for (int i = 0; i < ndim && n < size; i++)
        n += (size_t)snprintf(buf + n, size - n, "%s%lld", i ? ", " : "", (long long)dims[i]);
    if (n < size) snprintf(buf + n, size - n, ndim == 1 ? ",)" : ")");
    return buf;
}

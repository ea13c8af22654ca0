/*
 * tap.h - a minimal Test Anything Protocol emitter for meson's `protocol: 'tap'`.
 * Each check prints "ok N - name" or "not ok N - name" with the place it failed.
 */
#ifndef AGRAD_TAP_H
#define AGRAD_TAP_H

#include <math.h>
#include <stdarg.h>
#include <stdio.h>

static int tap_count, tap_failures;

__attribute__((format(printf, 4, 5), unused)) static int tap_ok(int cond, const char *file, int line, const char *fmt, ...) {
    va_list ap;
    printf("%s %d - ", cond ? "ok" : "not ok", ++tap_count);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    if (!cond) {
        tap_failures++;
        printf("#   failed at %s:%d\n", file, line);
    }
    fflush(stdout);
    return cond;
}

#define ok(cond, ...) tap_ok(!!(cond), __FILE__, __LINE__, __VA_ARGS__)
/* |a - b| <= tol * max(1, |b|) */
#define close_to(a, b, tol, ...) ok(fabs((double)(a) - (double)(b)) <= (tol) * fmax(1.0, fabs((double)(b))), __VA_ARGS__)
#define diag(...) (printf("# "), printf(__VA_ARGS__), printf("\n"))

__attribute__((unused)) static int tap_done(void) {
    printf("1..%d\n", tap_count);
    return tap_failures ? 1 : 0;
}

#endif

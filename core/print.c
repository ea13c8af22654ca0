/*
 * core/print.c - text form of a tensor in PyTorch's style:
 *   tensor([[ 1.0000, -2.5000],
 *           [ 3.0000,  4.0000]], shape=[2, 2], dtype=float32, grad_fn=<MulBackward0>)
 * Large tensors are summarised with "..." (3 items at each edge), as PyTorch does
 * past 1000 elements.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "core/internal.h"

typedef struct sbuf {
    char *p;
    size_t len, cap;
    bool failed;
} sbuf;

static void put(sbuf *b, const char *s, size_t n) {
    if (b->failed) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = (b->cap ? b->cap : 256);
        while (cap < b->len + n + 1) cap *= 2;
        char *g = realloc(b->p, cap);
        if (!g) {
            b->failed = true;
            return;
        }
        b->p = g;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void puts_(sbuf *b, const char *s) { put(b, s, strlen(s)); }

enum { EDGE = 3, THRESHOLD = 1000 };

typedef struct fmt {
    bool integral, sci, is_int, is_bool, summarise;
    int width;
} fmt;

static int format_value(char *s, size_t n, double v, const fmt *f) {
    if (f->is_bool) return snprintf(s, n, "%s", v != 0 ? "True" : "False");
    if (f->is_int) return snprintf(s, n, "%lld", (long long)v);
    if (isnan(v)) return snprintf(s, n, "nan");
    if (isinf(v)) return snprintf(s, n, v > 0 ? "inf" : "-inf");
    if (f->sci) return snprintf(s, n, "%.4e", v);
    if (f->integral) return snprintf(s, n, "%.0f.", v);
    return snprintf(s, n, "%.4f", v);
}

/* Visits the printed elements (skipping the summarised middle) to choose the format. */
static void scan(const ag_tensor *t, int d, int64_t off, fmt *f, double *maxabs, double *minabs) {
    if (d == t->ndim) {
        double v = ag__read(t, off);
        if (!isfinite(v)) return;
        if (v != floor(v)) f->integral = false;
        double a = fabs(v);
        if (a > *maxabs) *maxabs = a;
        if (a > 0 && a < *minabs) *minabs = a;
        return;
    }
    for (int64_t i = 0; i < t->shape[d]; i++) {
        if (f->summarise && t->shape[d] > 2 * EDGE && i == EDGE) i = t->shape[d] - EDGE;
        scan(t, d + 1, off + i * t->stride[d], f, maxabs, minabs);
    }
}

static void measure(const ag_tensor *t, int d, int64_t off, fmt *f) {
    char s[64];
    if (d == t->ndim) {
        int w = format_value(s, sizeof s, ag__read(t, off), f);
        if (w > f->width) f->width = w;
        return;
    }
    for (int64_t i = 0; i < t->shape[d]; i++) {
        if (f->summarise && t->shape[d] > 2 * EDGE && i == EDGE) i = t->shape[d] - EDGE;
        measure(t, d + 1, off + i * t->stride[d], f);
    }
}

static void emit(sbuf *b, const ag_tensor *t, int d, int64_t off, const fmt *f, int indent) {
    char s[64];
    if (d == t->ndim) {
        int w = format_value(s, sizeof s, ag__read(t, off), f);
        for (int k = w; k < f->width; k++) puts_(b, " ");
        puts_(b, s);
        return;
    }
    puts_(b, "[");
    for (int64_t i = 0; i < t->shape[d]; i++) {
        if (i > 0) {
            if (d == t->ndim - 1) puts_(b, ", ");
            else {
                puts_(b, ",");
                for (int k = d; k < t->ndim - 1; k++) puts_(b, "\n");
                for (int k = 0; k < indent + d + 1; k++) puts_(b, " ");
            }
        }
        if (f->summarise && t->shape[d] > 2 * EDGE && i == EDGE) {
            puts_(b, "...");
            i = t->shape[d] - EDGE - 1;
            continue;
        }
        emit(b, t, d + 1, off + i * t->stride[d], f, indent);
    }
    puts_(b, "]");
}

char *ag_to_string(const ag_tensor *t) {
    AG_CHECK_HANDLES(NULL, "to_string", t);
    if (!t) return ag__fail_null(AG_ERR_ARG, "to_string: tensor is NULL");
    sbuf b = {0};
    fmt f = {true, false, t->dtype == AG_I64 || t->dtype == AG_U8, t->dtype == AG_BOOL, ag_numel(t) > THRESHOLD, 0};
    double maxabs = 0, minabs = INFINITY;
    const bool empty = ag_numel(t) == 0 && t->ndim > 0; /* printed as [], however large its other dims */
    if (!empty) {
        scan(t, 0, t->offset, &f, &maxabs, &minabs);
        if (!f.integral && (maxabs >= 1e8 || (minabs < 1e-4 && minabs > 0) || (maxabs / minabs > 1e3 && minabs < 1)))
            f.sci = true;
        if (f.integral && maxabs >= 1e8) f.sci = true;
        measure(t, 0, t->offset, &f);
    }
    puts_(&b, "tensor(");
    if (empty) puts_(&b, "[]");
    else emit(&b, t, 0, t->offset, &f, 7);
    char s[AG_SHAPE_STR + 32], shape[AG_SHAPE_STR];
    snprintf(s, sizeof s, ", shape=%s, dtype=%s", ag__tshape(shape, t), ag_dtype_name(t->dtype));
    puts_(&b, s);
    if (t->op) {
        puts_(&b, ", grad_fn=<");
        puts_(&b, t->op->grad_fn);
        puts_(&b, ">");
    } else if (t->requires_grad) {
        puts_(&b, ", requires_grad=True");
    }
    puts_(&b, ")");
    if (b.failed) {
        free(b.p);
        return ag__fail_null(AG_ERR_NOMEM, "to_string: out of memory");
    }
    return b.p;
}

ag_status ag_fprint(FILE *f, const ag_tensor *t) {
    AG_CHECK_HANDLES(AG_ERR_ARG, "print", t);
    char *s = ag_to_string(t);
    if (!s) return ag_last_status();
    int r = fprintf(f, "%s\n", s);
    free(s);
    return r < 0 ? ag__fail(AG_ERR_IO, "print: write failed") : AG_OK;
}

ag_status ag_print(const ag_tensor *t) { return ag_fprint(stdout, t); }

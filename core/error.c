/*
 * core/error.c - the per-thread record of the last failure (see agrad/core.h).
 */
#include <stdio.h>
#include "core/internal.h"

static _Thread_local ag_status last_status;
static _Thread_local char last_message[1024];
static _Thread_local uint64_t failures; /* ag__fail calls on this thread */

uint64_t ag__failures(void) { return failures; }

ag_status ag_last_status(void) { return last_status; }
const char *ag_last_error(void) { return last_message; }

void ag_clear_error(void) {
    last_status = AG_OK;
    last_message[0] = '\0';
}

const char *ag_status_name(ag_status s) {
    switch (s) {
    case AG_OK: return "ok";
    case AG_ERR_ARG: return "invalid argument";
    case AG_ERR_SHAPE: return "shape error";
    case AG_ERR_DTYPE: return "dtype error";
    case AG_ERR_INDEX: return "index error";
    case AG_ERR_VALUE: return "value error";
    case AG_ERR_GRAPH: return "autograd error";
    case AG_ERR_NOMEM: return "out of memory";
    case AG_ERR_IO: return "i/o error";
    case AG_ERR_FORMAT: return "format error";
    case AG_ERR_BACKEND: return "oneDNN error";
    }
    return "unknown error";
}

static void record(ag_status s, const char *fmt, va_list ap) {
    failures++;
    last_status = s;
    vsnprintf(last_message, sizeof last_message, fmt, ap);
}

ag_status ag__fail(ag_status s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    record(s, fmt, ap);
    va_end(ap);
    return s;
}

void *ag__fail_null(ag_status s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    record(s, fmt, ap);
    va_end(ap);
    return NULL;
}

char *ag__shape_str(char *buf, int ndim, const int64_t *shape) {
    size_t len = 0;
    buf[len++] = '[';
    for (int i = 0; i < ndim && len < AG_SHAPE_STR - 24; i++)
        len += (size_t)snprintf(buf + len, AG_SHAPE_STR - len, i ? ", %lld" : "%lld",
                                (long long)shape[i]);
    buf[len++] = ']';
    buf[len] = '\0';
    return buf;
}

char *ag__tshape(char *buf, const ag_tensor *t) { return ag__shape_str(buf, t->ndim, t->shape); }

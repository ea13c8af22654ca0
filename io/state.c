/*
 * io/state.c - named tensor collections and the safetensors file format:
 *   8 bytes little-endian header length N | N bytes of JSON | raw tensor data
 * where the JSON maps each name to {"dtype", "shape", "data_offsets": [begin, end]}
 * (offsets relative to the data section).  The JSON is read and written with
 * jansson.  Saving is atomic (temporary file, fsync, rename).
 */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "core/iter.h"
#include "io/state.h"

typedef struct entry {
    char *name;
    ag_tensor *t;
} entry;

struct ag_state_dict {
    entry *v;
    int n, cap;
};

ag_state_dict *ag_state_dict_new(void) { return ag__calloc(sizeof(ag_state_dict)); }

void ag_state_dict_free(ag_state_dict *sd) {
    if (!sd) return;
    for (int i = 0; i < sd->n; i++) {
        ag__free(sd->v[i].name);
        ag_release(sd->v[i].t);
    }
    ag__free(sd->v);
    ag__free(sd);
}

static int find(const ag_state_dict *sd, const char *name) {
    for (int i = 0; i < sd->n; i++)
        if (strcmp(sd->v[i].name, name) == 0) return i;
    return -1;
}

ag_status ag_state_dict_set(ag_state_dict *sd, const char *name, ag_tensor *t) {
    AG_CHECK_HANDLES(AG_ERR_ARG, "state_dict_set", t);
    if (!sd || !name || !*name || !t) return ag__fail(AG_ERR_ARG, "state_dict_set: NULL dict, tensor or empty name");
    int i = find(sd, name);
    if (i >= 0) {
        ag_retain(t);
        ag_release(sd->v[i].t);
        sd->v[i].t = t;
        return AG_OK;
    }
    if (sd->n == sd->cap) {
        int cap = sd->cap ? 2 * sd->cap : 16;
        entry *g = ag__alloc(sizeof(entry) * (size_t)cap);
        if (!g) return AG_ERR_NOMEM;
        if (sd->n) memcpy(g, sd->v, sizeof(entry) * (size_t)sd->n);
        ag__free(sd->v);
        sd->v = g;
        sd->cap = cap;
    }
    size_t len = strlen(name);
    char *copy = ag__alloc(len + 1);
    if (!copy) return AG_ERR_NOMEM;
    memcpy(copy, name, len + 1);
    sd->v[sd->n++] = (entry){copy, ag_retain(t)};
    return AG_OK;
}

ag_status ag_state_dict_set_scalar(ag_state_dict *sd, const char *name, double value) {
    ag_tensor *t = ag__new_unowned(AG_F64, 0, NULL, false);
    if (!t) return AG_ERR_NOMEM;
    *(double *)ag__ptr(t) = value;
    ag_status st = ag_state_dict_set(sd, name, t);
    ag_release(t);
    return st;
}

ag_tensor *ag_state_dict_get(const ag_state_dict *sd, const char *name) {
    if (!sd || !name) return ag__fail_null(AG_ERR_ARG, "state_dict_get: NULL argument");
    int i = find(sd, name);
    if (i < 0) return ag__fail_null(AG_ERR_ARG, "state_dict_get: no entry named \"%s\"", name);
    return sd->v[i].t;
}

double ag_state_dict_get_scalar(const ag_state_dict *sd, const char *name) {
    ag_tensor *t = ag_state_dict_get(sd, name);
    return t ? ag_item(t) : NAN;
}

int ag_state_dict_size(const ag_state_dict *sd) { return sd ? sd->n : 0; }
const char *ag_state_dict_name(const ag_state_dict *sd, int i) { return sd && i >= 0 && i < sd->n ? sd->v[i].name : NULL; }
ag_tensor *ag_state_dict_tensor(const ag_state_dict *sd, int i) { return sd && i >= 0 && i < sd->n ? sd->v[i].t : NULL; }

ag_state_dict *ag__state_dict_copy(const char *op, const ag_state_dict *src) {
    ag_state_dict *sd = ag_state_dict_new();
    for (int i = 0; sd && i < ag_state_dict_size(src); i++) {
        const ag_tensor *t = ag_state_dict_tensor(src, i);
        ag_tensor *c = ag__new_unowned(t->dtype, t->ndim, t->shape, false);
        if (c) ag__copy_into(c, t);
        ag_status st = c ? ag_state_dict_set(sd, ag_state_dict_name(src, i), c) : AG_ERR_NOMEM;
        ag_release(c);
        if (st) {
            ag_state_dict_free(sd);
            sd = NULL;
        }
    }
    return sd ? sd : ag__fail_null(AG_ERR_NOMEM, "%s: out of memory copying a state dict", op);
}

/* ---- safetensors ------------------------------------------------------------------------------ */
static const char *dtype_tag(ag_dtype d) {
    switch (d) {
    case AG_F32: return "F32";
    case AG_F64: return "F64";
    case AG_I64: return "I64";
    case AG_BOOL: return "BOOL";
    case AG_U8: return "U8";
    }
    return "?";
}

static int dtype_from_tag(const char *s) {
    if (!strcmp(s, "F32")) return AG_F32;
    if (!strcmp(s, "F64")) return AG_F64;
    if (!strcmp(s, "I64")) return AG_I64;
    if (!strcmp(s, "BOOL")) return AG_BOOL;
    if (!strcmp(s, "U8")) return AG_U8;
    return -1;
}

static ag_status io_fail(const char *what, const char *path) {
    return ag__fail(AG_ERR_IO, "%s: %s: %s", what, path, strerror(errno));
}

ag_status ag_save_safetensors(const ag_state_dict *sd, const char *path) {
    if (!sd || !path) return ag__fail(AG_ERR_ARG, "save_safetensors: NULL argument");
    json_t *hdr = json_object();
    if (!hdr) return ag__fail(AG_ERR_NOMEM, "save_safetensors: out of memory");
    int64_t off = 0;
    for (int i = 0; i < sd->n; i++) {
        const ag_tensor *t = sd->v[i].t;
        /* An expanded view may stand for more bytes than can be written. */
        int64_t bytes = ag__nbytes_checked(t->ndim, t->shape, t->dtype), end;
        if (bytes < 0 || ag__add_overflow(off, bytes, &end) || end > AG_MAX_SIZE) {
            json_decref(hdr);
            char s[AG_SHAPE_STR];
            return ag__fail(AG_ERR_SHAPE,
                            "save_safetensors: the data would exceed 2^62 bytes at tensor \"%s\" of shape %s",
                            sd->v[i].name, ag__tshape(s, t));
        }
        json_t *shape = json_array();
        for (int d = 0; d < t->ndim; d++) json_array_append_new(shape, json_integer(t->shape[d]));
        json_t *e = json_pack("{s:s, s:o, s:[I, I]}", "dtype", dtype_tag(t->dtype), "shape", shape, "data_offsets",
                              (json_int_t)off, (json_int_t)end);
        if (!e || json_object_set_new(hdr, sd->v[i].name, e)) {
            json_decref(hdr);
            return ag__fail(AG_ERR_NOMEM, "save_safetensors: out of memory");
        }
        off = end;
    }
    char *text = json_dumps(hdr, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(hdr);
    if (!text) return ag__fail(AG_ERR_NOMEM, "save_safetensors: out of memory");
    size_t len = strlen(text), padded = (len + 7) & ~(size_t)7; /* data starts 8-byte aligned */

    size_t plen = strlen(path);
    char *tmp = ag__alloc(plen + 16);
    if (!tmp) {
        free(text);
        return AG_ERR_NOMEM;
    }
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp.XXXXXX", 12);
    ag_status st = AG_OK;
    int fd = mkstemp(tmp);
    FILE *f = fd >= 0 ? fdopen(fd, "wb") : NULL;
    if (!f) {
        st = io_fail("save_safetensors: cannot create a temporary file beside", path);
        if (fd >= 0) close(fd);
        goto out;
    }
    unsigned char n8[8];
    for (int i = 0; i < 8; i++) n8[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    bool ok = fwrite(n8, 1, 8, f) == 8 && fwrite(text, 1, len, f) == len;
    for (size_t i = len; ok && i < padded; i++) ok = fputc(' ', f) != EOF;
    for (int i = 0; ok && i < sd->n; i++) {
        ag_tensor *c = ag__contig_or_copy(sd->v[i].t);
        if (!c) {
            st = AG_ERR_NOMEM;
            ok = false;
            break;
        }
        size_t bytes = (size_t)ag_numel(c) * ag_dtype_size(c->dtype);
        ok = fwrite(ag__ptr(c), 1, bytes, f) == bytes;
        ag_release(c);
    }
    ok = ok && fflush(f) == 0 && fsync(fileno(f)) == 0;
    if (fclose(f) != 0) ok = false;
    if (ok && rename(tmp, path) != 0) ok = false;
    if (!ok) {
        if (st == AG_OK) st = io_fail("save_safetensors: writing failed for", path);
        unlink(tmp);
    }
out:
    free(text);
    ag__free(tmp);
    return st;
}

static ag_state_dict *format_fail(ag_state_dict *sd, const char *path, const char *why, const char *name) {
    ag_state_dict_free(sd);
    if (name) return ag__fail_null(AG_ERR_FORMAT, "load_safetensors: %s: tensor \"%s\": %s", path, name, why);
    return ag__fail_null(AG_ERR_FORMAT, "load_safetensors: %s: %s", path, why);
}

typedef struct span {
    uint64_t begin, end;
} span;

static int by_begin(const void *a, const void *b) {
    uint64_t x = ((const span *)a)->begin, y = ((const span *)b)->begin;
    return x < y ? -1 : x > y;
}

ag_state_dict *ag_load_safetensors(const char *path) {
    if (!path) return ag__fail_null(AG_ERR_ARG, "load_safetensors: path is NULL");
    FILE *f = fopen(path, "rb");
    if (!f) return io_fail("load_safetensors: cannot open", path), NULL;
    ag_state_dict *sd = NULL;
    char *text = NULL;
    json_t *hdr = NULL;
    span *spans = NULL;
    if (fseek(f, 0, SEEK_END) != 0) goto io;
    long fsize = ftell(f);
    if (fsize < 0 || fseek(f, 0, SEEK_SET) != 0) goto io;
    unsigned char n8[8];
    if (fsize < 8 || fread(n8, 1, 8, f) != 8) {
        sd = format_fail(sd, path, "file is shorter than the 8-byte header length", NULL);
        goto finish;
    }
    uint64_t hlen = 0;
    for (int i = 0; i < 8; i++) hlen |= (uint64_t)n8[i] << (8 * i);
    if (hlen > (uint64_t)fsize - 8 || hlen > 100u << 20) {
        sd = format_fail(sd, path, "header length exceeds the file size (truncated or not a safetensors file)", NULL);
        goto finish;
    }
    uint64_t data_size = (uint64_t)fsize - 8 - hlen;
    text = ag__alloc((size_t)hlen + 1);
    if (!text) goto nomem;
    if (fread(text, 1, (size_t)hlen, f) != hlen) goto io;
    text[hlen] = '\0';
    json_error_t jerr;
    hdr = json_loadb(text, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!hdr || !json_is_object(hdr)) {
        char why[256];
        snprintf(why, sizeof why, "header is not a JSON object (%s at byte %d)", hdr ? "not an object" : jerr.text,
                 hdr ? 0 : jerr.position);
        sd = format_fail(sd, path, why, NULL);
        goto finish;
    }
    sd = ag_state_dict_new();
    size_t count = json_object_size(hdr);
    spans = ag__alloc(sizeof(span) * (count + 1));
    if (!sd || !spans) goto nomem;
    size_t ns = 0;
    const char *name;
    json_t *e;
    json_object_foreach(hdr, name, e) {
        if (!strcmp(name, "__metadata__")) continue;
        if (!name[0]) { /* a state dict names every tensor */
            sd = format_fail(sd, path, "a tensor has an empty name", NULL);
            goto finish;
        }
        json_t *jd = json_object_get(e, "dtype"), *js = json_object_get(e, "shape"),
               *jo = json_object_get(e, "data_offsets");
        if (!json_is_object(e) || !json_is_string(jd) || !json_is_array(js) || !json_is_array(jo) ||
            json_array_size(jo) != 2) {
            sd = format_fail(sd, path, "entry needs dtype, shape and two data_offsets", name);
            goto finish;
        }
        int dt = dtype_from_tag(json_string_value(jd));
        if (dt < 0) {
            sd = format_fail(sd, path, "unsupported dtype (agrad reads F32, F64, I64, BOOL, U8)", name);
            goto finish;
        }
        int ndim = (int)json_array_size(js);
        if (ndim > AG_MAX_DIMS) {
            sd = format_fail(sd, path, "too many dimensions", name);
            goto finish;
        }
        int64_t shape[AG_MAX_DIMS];
        for (int d = 0; d < ndim; d++) {
            json_t *v = json_array_get(js, (size_t)d);
            if (!json_is_integer(v) || json_integer_value(v) < 0) {
                sd = format_fail(sd, path, "shape holds a negative or non-integer size", name);
                goto finish;
            }
            shape[d] = (int64_t)json_integer_value(v);
        }
        int64_t nbytes = ag__nbytes_checked(ndim, shape, (ag_dtype)dt); /* zero sizes too: strides multiply them */
        if (nbytes < 0) {
            sd = format_fail(sd, path, "shape is impossibly large", name);
            goto finish;
        }
        json_t *b = json_array_get(jo, 0), *en = json_array_get(jo, 1);
        if (!json_is_integer(b) || !json_is_integer(en) || json_integer_value(b) < 0 ||
            json_integer_value(en) < json_integer_value(b) || (uint64_t)json_integer_value(en) > data_size) {
            sd = format_fail(sd, path, "data_offsets lie outside the data section", name);
            goto finish;
        }
        uint64_t begin = (uint64_t)json_integer_value(b), end = (uint64_t)json_integer_value(en);
        if (end - begin != (uint64_t)nbytes) {
            sd = format_fail(sd, path, "data_offsets do not match dtype and shape", name);
            goto finish;
        }
        spans[ns++] = (span){begin, end};
        ag_tensor *t = ag__new_unowned((ag_dtype)dt, ndim, shape, false);
        if (!t) goto nomem;
        if (fseek(f, (long)(8 + hlen + begin), SEEK_SET) != 0 || fread(ag__ptr(t), 1, end - begin, f) != end - begin) {
            ag_release(t);
            goto io;
        }
        ag_status st = ag_state_dict_set(sd, name, t);
        ag_release(t);
        if (st) goto nomem;
    }
    qsort(spans, ns, sizeof(span), by_begin);
    for (size_t i = 1; i < ns; i++)
        if (spans[i].begin < spans[i - 1].end) {
            sd = format_fail(sd, path, "two tensors' data overlap", NULL);
            goto finish;
        }
    goto finish;
io:
    ag_state_dict_free(sd);
    sd = NULL;
    io_fail("load_safetensors: reading failed for", path);
    goto finish;
nomem:
    ag_state_dict_free(sd);
    sd = NULL;
finish:
    json_decref(hdr);
    ag__free(text);
    ag__free(spans);
    fclose(f);
    return sd;
}

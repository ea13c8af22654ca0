/*
 * io/state.c - named tensor collections and the safetensors file format:
 *   8 bytes little-endian header length N | N bytes of JSON | raw tensor data
 * where the JSON maps each name to {"dtype", "shape", "data_offsets": [begin, end]}
 * (offsets relative to the data section).  Saving is atomic
 * (ag__write_atomic).  Loading validates the whole header (its JSON, each
 * entry, duplicate names, overlaps, coverage of the data section) before it
 * allocates a single tensor, and takes O(n log n) in the number of entries.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include "core/iter.h"
#include "io/file.h"
#include "io/state.h"

typedef struct entry {
    char *name;
    ag_tensor *t;
} entry;

/* Entries in insertion order, and an open-addressing index of them by name (slot
 * values are entry numbers, -1 for empty; nslots is 0 or a power of two above 2n). */
struct ag_state_dict {
    entry *v;
    int n, cap;
    int *slots;
    size_t nslots;
};

ag_state_dict *ag_state_dict_new(void) { return ag__calloc(sizeof(ag_state_dict)); }

void ag_state_dict_free(ag_state_dict *sd) {
    if (!sd) return;
    for (int i = 0; i < sd->n; i++) {
        ag__free(sd->v[i].name);
        ag_release(sd->v[i].t);
    }
    ag__free(sd->v);
    ag__free(sd->slots);
    ag__free(sd);
}

/* FNV-1a. */
static uint64_t name_hash(const char *s) {
    uint64_t h = 0xcbf29ce484222325u;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001b3u;
    return h;
}

/* The slot holding name, or the empty slot where it would go. */
static size_t slot_of(const int *slots, size_t nslots, const entry *v, const char *name) {
    size_t i = (size_t)name_hash(name) & (nslots - 1);
    while (slots[i] >= 0 && strcmp(v[slots[i]].name, name) != 0) i = (i + 1) & (nslots - 1);
    return i;
}

static int find(const ag_state_dict *sd, const char *name) {
    if (!sd->nslots) return -1;
    return sd->slots[slot_of(sd->slots, sd->nslots, sd->v, name)];
}

ag_tensor *ag__state_dict_find(const ag_state_dict *sd, const char *name) {
    int i = sd && name ? find(sd, name) : -1;
    return i >= 0 ? sd->v[i].t : NULL;
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
    if (sd->n == INT32_MAX) return ag__fail(AG_ERR_ARG, "state_dict_set: the dict is full");
    /* Everything that can fail first, so that a failure leaves the dict as it was. */
    size_t len = strlen(name);
    char *copy = ag__alloc(len + 1);
    if (!copy) return ag__fail(AG_ERR_NOMEM, "state_dict_set: out of memory");
    memcpy(copy, name, len + 1);
    if (sd->n == sd->cap) {
        int cap = sd->cap ? (sd->cap > INT32_MAX / 2 ? INT32_MAX : 2 * sd->cap) : 16;
        entry *g = ag__alloc(sizeof(entry) * (size_t)cap);
        if (!g) {
            ag__free(copy);
            return ag__fail(AG_ERR_NOMEM, "state_dict_set: out of memory");
        }
        if (sd->n) memcpy(g, sd->v, sizeof(entry) * (size_t)sd->n);
        ag__free(sd->v);
        sd->v = g;
        sd->cap = cap;
    }
    if (2 * ((size_t)sd->n + 1) >= sd->nslots) {
        size_t nslots = sd->nslots ? 2 * sd->nslots : 32;
        int *slots = ag__alloc(sizeof(int) * nslots);
        if (!slots) {
            ag__free(copy);
            return ag__fail(AG_ERR_NOMEM, "state_dict_set: out of memory");
        }
        memset(slots, 0xff, sizeof(int) * nslots); /* all -1 */
        for (int k = 0; k < sd->n; k++) slots[slot_of(slots, nslots, sd->v, sd->v[k].name)] = k;
        ag__free(sd->slots);
        sd->slots = slots;
        sd->nslots = nslots;
    }
    sd->v[sd->n] = (entry){copy, ag_retain(t)};
    sd->slots[slot_of(sd->slots, sd->nslots, sd->v, name)] = sd->n;
    sd->n++;
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

/* ---- checking what is read back ------------------------------------------------------------- */
/* r in words, for messages. */
static const char *range_words(char *buf, size_t cap, ag__range r) {
    if (r.whole && r.lo == 0 && r.hi == 1) snprintf(buf, cap, "0 or 1");
    else if (r.whole && r.hi >= 0x1p53) snprintf(buf, cap, "a whole number >= %.0f", r.lo);
    else if (r.whole) snprintf(buf, cap, "a whole number in [%.0f, %.0f]", r.lo, r.hi);
    else if (r.lo == -DBL_MAX && r.hi == DBL_MAX) snprintf(buf, cap, "a finite number");
    else if (r.lo == -INFINITY && r.hi == INFINITY) snprintf(buf, cap, "a number (not NaN)");
    else if (r.hi == DBL_MAX) snprintf(buf, cap, "a finite number >= %g", r.lo);
    else if (r.hi == INFINITY) snprintf(buf, cap, "a number >= %g", r.lo);
    else snprintf(buf, cap, "a number in [%g, %g]", r.lo, r.hi);
    return buf;
}

static bool in_range(double v, ag__range r) { return v >= r.lo && v <= r.hi && (!r.whole || v == floor(v)); }

ag_status ag__check_value(const char *op, const char *name, double v, ag__range r) {
    if (in_range(v, r)) return AG_OK;
    char words[96];
    return ag__fail(AG_ERR_VALUE, "%s: %s is %.10g, expected %s", op, name, v, range_words(words, sizeof words, r));
}

ag_status ag__sd_number(const char *op, const ag_state_dict *sd, const char *name, ag__range r, double *v) {
    const ag_tensor *t = ag__state_dict_find(sd, name);
    if (!t || ag_numel(t) != 1 || (t->dtype != AG_F32 && t->dtype != AG_F64 && t->dtype != AG_I64))
        return ag__fail(AG_ERR_ARG, "%s: no number \"%s\"", op, name);
    *v = ag__read(t, t->offset);
    return ag__check_value(op, name, *v, r);
}

typedef struct values_walk {
    ag_dtype dtype;
    ag__range r;
    int64_t seen, bad; /* elements before this run; the first failing one's index, or -1 */
    double v;
} values_walk;

static void check_run(char **p, const int64_t *s, int64_t n, void *ctx) {
    values_walk *w = ctx;
    for (int64_t i = 0; w->bad < 0 && i < n; i++) {
        const char *e = p[0] + i * s[0];
        double v;
        switch (w->dtype) {
        case AG_F32: v = *(const float *)e; break;
        case AG_F64: v = *(const double *)e; break;
        case AG_I64: v = (double)*(const int64_t *)e; break;
        default: v = *(const uint8_t *)e; break;
        }
        if (!in_range(v, w->r)) w->bad = w->seen + i, w->v = v;
    }
    w->seen += n;
}

ag_status ag__check_values(const char *op, const char *name, const ag_tensor *t, ag__range r) {
    if (ag_numel(t) == 0) return AG_OK;
    values_walk w = {t->dtype, r, 0, -1, 0};
    ag_iter it;
    ag__iter_init(&it, t->ndim, t->shape);
    ag__iter_add(&it, t);
    ag__iter_run(&it, check_run, &w);
    if (w.bad < 0) return AG_OK;
    if (t->ndim == 0) return ag__check_value(op, name, w.v, r);
    char words[96];
    return ag__fail(AG_ERR_VALUE, "%s: %s[%lld] is %.10g, expected %s", op, name, (long long)w.bad, w.v,
                    range_words(words, sizeof words, r));
}

/* ---- safetensors ------------------------------------------------------------------------------ */
/* The header is written and read here rather than with a JSON library: its grammar is
 * small, a streaming reader needs no tree (a 100 MB header can hold ~1.8 million
 * entries), and every allocation either succeeds or is reported.  jansson 2.14 (as
 * Debian ships it), used before, is not safe when an allocation fails: its lexer drops
 * the failure and reads past its buffer (akheron/jansson#362), and json_dumps can
 * return a shortened document, which a save would then have written as a good file. */

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

/* The name safetensors reserves for the file's own metadata (a map of strings). */
#define METADATA "__metadata__"

/* The length of the valid UTF-8 sequence at s (at most n bytes: no overlong forms,
 * surrogates or code points past U+10FFFF), or 0. */
static int utf8_char(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    int len = c < 0x80 ? 1 : c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
    if (!len || (size_t)len > n) return 0;
    unsigned cp = len == 1 ? c : c & (0x7Fu >> len);
    for (int k = 1; k < len; k++) {
        if ((s[k] & 0xC0) != 0x80) return 0;
        cp = cp << 6 | (s[k] & 0x3Fu);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
        return 0;
    return len;
}

/* The offset of the first byte of s that does not belong to valid UTF-8, or -1. */
static ptrdiff_t utf8_error(const char *str) {
    const unsigned char *s = (const unsigned char *)str;
    size_t n = strlen(str);
    for (size_t i = 0; i < n;) {
        int len = utf8_char(s + i, n - i);
        if (!len) return (ptrdiff_t)i;
        i += (size_t)len;
    }
    return -1;
}

/* The names a safetensors file cannot hold: AG_ERR_FORMAT naming the entry and why. */
static ag_status check_name(const char *path, int i, const char *name) {
    if (strcmp(name, METADATA) == 0)
        return ag__fail(AG_ERR_FORMAT, "save_safetensors: %s: entry %d is named \"__metadata__\", the name safetensors "
                                       "reserves for the file's metadata", path, i);
    ptrdiff_t bad = utf8_error(name);
    if (bad >= 0)
        return ag__fail(AG_ERR_FORMAT, "save_safetensors: %s: the name of entry %d is not valid UTF-8 (byte 0x%02x at "
                                       "offset %td, after \"%.*s\"); safetensors names are JSON strings",
                        path, i, (unsigned char)name[bad], bad, (int)(bad < 60 ? bad : 60), name);
    return AG_OK;
}

/* ---- writing -------------------------------------------------------------------------------- */
/* Text goes to f, or is only counted when f is NULL (the header's length comes first). */
typedef struct sink {
    FILE *f;
    uint64_t len;
} sink;

static void put(sink *k, const char *s, size_t n) {
    if (k->f) fwrite(s, 1, n, k->f);
    k->len += n;
}
static void puts_(sink *k, const char *s) { put(k, s, strlen(s)); }

/* s as a JSON string: quotes, backslashes and control characters escaped, UTF-8 as is. */
static void put_string(sink *k, const char *s) {
    put(k, "\"", 1);
    for (const char *run = s;; s++) {
        unsigned char c = (unsigned char)*s;
        if (c && c >= 0x20 && c != '"' && c != '\\') continue;
        put(k, run, (size_t)(s - run));
        if (!c) break;
        char esc[8];
        if (c == '"' || c == '\\') snprintf(esc, sizeof esc, "\\%c", c);
        else snprintf(esc, sizeof esc, "\\u%04x", c);
        puts_(k, esc);
        run = s + 1;
    }
    put(k, "\"", 1);
}

/* The JSON header: {"<name>":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},...}. */
static void put_header(sink *k, const ag_state_dict *sd) {
    char num[64];
    uint64_t off = 0;
    put(k, "{", 1);
    for (int i = 0; i < sd->n; i++) {
        const ag_tensor *t = sd->v[i].t;
        if (i) put(k, ",", 1);
        put_string(k, sd->v[i].name);
        puts_(k, ":{\"dtype\":\"");
        puts_(k, dtype_tag(t->dtype));
        puts_(k, "\",\"shape\":[");
        for (int d = 0; d < t->ndim; d++) {
            snprintf(num, sizeof num, "%s%lld", d ? "," : "", (long long)t->shape[d]);
            puts_(k, num);
        }
        uint64_t bytes = (uint64_t)ag_numel(t) * ag_dtype_size(t->dtype);
        snprintf(num, sizeof num, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
                 (unsigned long long)(off + bytes));
        puts_(k, num);
        off += bytes;
    }
    put(k, "}", 1);
}

typedef struct st_writer {
    const ag_state_dict *sd;
    uint64_t len, padded;
} st_writer;

static ag_status write_st(FILE *f, void *ctx) {
    const st_writer *w = ctx;
    unsigned char n8[8];
    for (int i = 0; i < 8; i++) n8[i] = (unsigned char)(w->padded >> (8 * i));
    fwrite(n8, 1, 8, f);
    sink k = {f, 0};
    put_header(&k, w->sd);
    for (uint64_t i = w->len; i < w->padded; i++) fputc(' ', f);
    for (int i = 0; i < w->sd->n && !ferror(f); i++) {
        ag_tensor *c = ag__contig_or_copy(w->sd->v[i].t);
        if (!c) return ag__fail(AG_ERR_NOMEM, "save_safetensors: out of memory");
        size_t bytes = (size_t)ag_numel(c) * ag_dtype_size(c->dtype);
        if (c->dtype == AG_BOOL) { /* safetensors' BOOL is the byte 0 or 1: any other byte is written as 1 */
            const unsigned char *b = (const unsigned char *)ag__ptr(c);
            for (size_t k = 0; k < bytes; k++) fputc(b[k] != 0, f);
        } else {
            fwrite(ag__ptr(c), 1, bytes, f);
        }
        ag_release(c);
    }
    return AG_OK;
}

ag_status ag_save_safetensors(const ag_state_dict *sd, const char *path) {
    if (!sd || !path) return ag__fail(AG_ERR_ARG, "save_safetensors: NULL argument");
    int64_t off = 0;
    for (int i = 0; i < sd->n; i++) {
        ag_status st = check_name(path, i, sd->v[i].name);
        if (st) return st;
        const ag_tensor *t = sd->v[i].t;
        /* An expanded view may stand for more bytes than can be written. */
        int64_t bytes = ag__nbytes_checked(t->ndim, t->shape, t->dtype), end;
        if (bytes < 0 || ag__add_overflow(off, bytes, &end) || end > AG_MAX_SIZE) {
            char s[AG_SHAPE_STR];
            return ag__fail(AG_ERR_SHAPE,
                            "save_safetensors: the data would exceed 2^62 bytes at tensor \"%s\" of shape %s",
                            sd->v[i].name, ag__tshape(s, t));
        }
        off = end;
    }
    sink count = {NULL, 0};
    put_header(&count, sd);
    st_writer w = {sd, count.len, (count.len + 7) & ~(uint64_t)7}; /* data start 8-byte aligned */
    return ag__write_atomic("save_safetensors", path, write_st, &w);
}

/* ---- reading the header ------------------------------------------------------------------------- */
/* One header entry, validated; its name and shape live in the reader's pools. */
typedef struct st_entry {
    size_t name;  /* offset in the name pool */
    size_t shape; /* index in the shape pool */
    int dtype, ndim;
    uint64_t begin, end;
} st_entry;

typedef struct reader {
    const unsigned char *text, *p, *end;
    uint64_t data_size;
    char *names; /* the entries' names, each NUL-terminated */
    size_t nlen, ncap;
    int64_t *shapes;
    size_t slen, scap;
    st_entry *v;
    size_t n, cap;
    bool nomem;
    char *why; /* the first problem, written here */
    size_t why_cap;
} reader;

/* Records the first problem (a JSON syntax error names the byte of the header). */
static bool syntax(reader *r, const char *what) {
    if (!r->why[0] && !r->nomem)
        snprintf(r->why, r->why_cap, "header is not valid JSON (%s at byte %td)", what, r->p - r->text);
    return false;
}
static bool entry_error(reader *r, const char *name, const char *what) {
    if (!r->why[0] && !r->nomem) {
        if (name[0]) snprintf(r->why, r->why_cap, "tensor \"%.300s\": %s", name, what);
        else snprintf(r->why, r->why_cap, "%s", what);
    }
    return false;
}

static bool grow_pool(reader *r, void **pool, size_t *cap, size_t len, size_t need, size_t size) {
    if (len + need <= *cap) return true;
    size_t ncap = *cap ? *cap : 64;
    while (ncap < len + need) ncap *= 2;
    void *g = ag__alloc(ncap * size);
    if (!g) return r->nomem = true, false;
    if (len) memcpy(g, *pool, len * size);
    ag__free(*pool);
    *pool = g;
    *cap = ncap;
    return true;
}

static void skip_ws(reader *r) {
    while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r')) r->p++;
}

/* Consumes c after white space. */
static bool expect(reader *r, char c) {
    skip_ws(r);
    if (r->p < r->end && *r->p == (unsigned char)c) return r->p++, true;
    char what[32];
    snprintf(what, sizeof what, "'%c' expected", c);
    return syntax(r, what);
}

static int hex4(const unsigned char *p) {
    int v = 0;
    for (int i = 0; i < 4; i++) {
        int c = p[i], d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) return -1;
        v = v << 4 | d;
    }
    return v;
}

/* Reads a JSON string into the name pool at *at (NUL-terminated, UTF-8 checked; \u0000 is
 * refused, as a name could not hold it). */
static bool read_string(reader *r, size_t *at) {
    skip_ws(r);
    if (r->p >= r->end || *r->p != '"') return syntax(r, "string expected");
    r->p++;
    *at = r->nlen;
    for (;;) {
        if (!grow_pool(r, (void **)&r->names, &r->ncap, r->nlen, 5, 1)) return false;
        if (r->p >= r->end) return syntax(r, "unterminated string");
        unsigned c = *r->p;
        if (c == '"') {
            r->p++;
            r->names[r->nlen++] = '\0';
            return true;
        }
        if (c < 0x20) return syntax(r, "control character in a string");
        if (c != '\\') {
            int len = utf8_char(r->p, (size_t)(r->end - r->p));
            if (!len) return syntax(r, "a string is not valid UTF-8");
            memcpy(r->names + r->nlen, r->p, (size_t)len);
            r->nlen += (size_t)len;
            r->p += len;
            continue;
        }
        if (r->end - r->p < 2) return syntax(r, "unterminated string");
        unsigned e = r->p[1];
        r->p += 2;
        const char *simple = strchr("\"\\/bfnrt", (int)e);
        if (e && simple) {
            r->names[r->nlen++] = "\"\\/\b\f\n\r\t"[simple - "\"\\/bfnrt"];
            continue;
        }
        if (e != 'u' || r->end - r->p < 4 || hex4(r->p) < 0) return syntax(r, "invalid escape in a string");
        unsigned cp = (unsigned)hex4(r->p);
        r->p += 4;
        if (cp >= 0xD800 && cp <= 0xDBFF) { /* a surrogate pair */
            int lo = r->end - r->p >= 6 && r->p[0] == '\\' && r->p[1] == 'u' ? hex4(r->p + 2) : -1;
            if (lo < 0xDC00 || lo > 0xDFFF) return syntax(r, "invalid \\u escape in a string (a lone surrogate)");
            cp = 0x10000 + ((cp - 0xD800) << 10) + ((unsigned)lo - 0xDC00);
            r->p += 6;
        } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            return syntax(r, "invalid \\u escape in a string (a lone surrogate)");
        }
        if (cp == 0) return syntax(r, "\\u0000 in a string");
        char *o = r->names + r->nlen;
        if (cp < 0x80) o[0] = (char)cp, r->nlen += 1;
        else if (cp < 0x800) o[0] = (char)(0xC0 | cp >> 6), o[1] = (char)(0x80 | (cp & 0x3F)), r->nlen += 2;
        else if (cp < 0x10000)
            o[0] = (char)(0xE0 | cp >> 12), o[1] = (char)(0x80 | (cp >> 6 & 0x3F)), o[2] = (char)(0x80 | (cp & 0x3F)), r->nlen += 3;
        else
            o[0] = (char)(0xF0 | cp >> 18), o[1] = (char)(0x80 | (cp >> 12 & 0x3F)), o[2] = (char)(0x80 | (cp >> 6 & 0x3F)),
            o[3] = (char)(0x80 | (cp & 0x3F)), r->nlen += 4;
    }
}

/* Skips a JSON number; *whole is set when it is a plain non-negative integer that fits
 * *v (no sign, fraction or exponent). */
static bool read_number(reader *r, uint64_t *v, bool *whole) {
    skip_ws(r);
    const unsigned char *p = r->p;
    bool neg = p < r->end && *p == '-', big = false;
    if (neg) p++;
    if (p >= r->end || *p < '0' || *p > '9') return syntax(r, "value expected");
    uint64_t x = 0;
    if (*p == '0') p++;
    else
        for (; p < r->end && *p >= '0' && *p <= '9'; p++) {
            if (x > (UINT64_MAX - 9) / 10) big = true;
            x = x * 10 + (uint64_t)(*p - '0');
        }
    bool frac = false;
    if (p < r->end && *p == '.') {
        frac = true;
        if (++p >= r->end || *p < '0' || *p > '9') return r->p = p, syntax(r, "digit expected");
        while (p < r->end && *p >= '0' && *p <= '9') p++;
    }
    if (p < r->end && (*p == 'e' || *p == 'E')) {
        frac = true;
        if (++p < r->end && (*p == '+' || *p == '-')) p++;
        if (p >= r->end || *p < '0' || *p > '9') return r->p = p, syntax(r, "digit expected");
        while (p < r->end && *p >= '0' && *p <= '9') p++;
    }
    r->p = p;
    *v = x;
    *whole = !neg && !frac && !big;
    return true;
}

/* Skips any JSON value (metadata, keys agrad does not read), nested at most 64 deep. */
static bool skip_value(reader *r, int depth) {
    if (depth > 64) return syntax(r, "nested too deeply");
    skip_ws(r);
    if (r->p >= r->end) return syntax(r, "value expected");
    unsigned char c = *r->p;
    if (c == '"') {
        size_t at;
        bool ok = read_string(r, &at);
        r->nlen = at; /* not kept */
        return ok;
    }
    if (c == '{' || c == '[') {
        r->p++;
        skip_ws(r);
        char close = c == '{' ? '}' : ']';
        if (r->p < r->end && *r->p == (unsigned char)close) return r->p++, true;
        do {
            if (c == '{') {
                size_t at;
                bool ok = read_string(r, &at);
                r->nlen = at;
                if (!ok || !expect(r, ':')) return false;
            }
            if (!skip_value(r, depth + 1)) return false;
            skip_ws(r);
        } while (r->p < r->end && *r->p == ',' && r->p++);
        return expect(r, close);
    }
    static const char *const words[] = {"true", "false", "null"};
    for (int i = 0; i < 3; i++) {
        size_t len = strlen(words[i]);
        if ((size_t)(r->end - r->p) >= len && memcmp(r->p, words[i], len) == 0) return r->p += len, true;
    }
    uint64_t v;
    bool whole;
    return read_number(r, &v, &whole);
}

/* Reads [n0, n1, ...] of whole numbers <= hi into the shape pool (any above INT64_MAX
 * kept as INT64_MAX); *count of them. */
static bool read_sizes(reader *r, const char *name, int max, uint64_t hi, const char *bad, int *count) {
    if (!expect(r, '[')) return false;
    *count = 0;
    skip_ws(r);
    if (r->p < r->end && *r->p == ']') return r->p++, true;
    do {
        uint64_t v;
        bool whole;
        if (!read_number(r, &v, &whole)) return false;
        if (!whole || v > hi) return entry_error(r, name, bad);
        if (*count == max) return entry_error(r, name, max == 2 ? "entry needs dtype, shape and two data_offsets" : "too many dimensions");
        if (!grow_pool(r, (void **)&r->shapes, &r->scap, r->slen, 1, sizeof(int64_t))) return false;
        r->shapes[r->slen++] = v > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)v;
        ++*count;
        skip_ws(r);
    } while (r->p < r->end && *r->p == ',' && r->p++);
    return expect(r, ']');
}

/* Reads {"dtype": ..., "shape": [...], "data_offsets": [b, e]} (keys in any order, others
 * skipped) for the entry whose name is at r->names + e->name, and checks it. */
static bool read_entry(reader *r, st_entry *e) {
    /* the name is re-read as r->names + e->name: the pool moves as it grows */
    if (!expect(r, '{')) return false;
    bool seen[3] = {false, false, false};
    int noff = 0;
    uint64_t off[2] = {0, 0};
    skip_ws(r);
    if (r->p < r->end && *r->p == '}') {
        r->p++;
        return entry_error(r, r->names + e->name, "entry needs dtype, shape and two data_offsets");
    }
    do {
        size_t at;
        if (!read_string(r, &at) || !expect(r, ':')) return false;
        static const char *const keys[] = {"dtype", "shape", "data_offsets"};
        int k = 0;
        while (k < 3 && strcmp(r->names + at, keys[k]) != 0) k++;
        r->nlen = at;
        if (k < 3 && seen[k]) return entry_error(r, r->names + e->name, "an entry names a field twice");
        if (k < 3) seen[k] = true;
        if (k == 0) {
            skip_ws(r);
            if (r->p >= r->end || *r->p != '"') return entry_error(r, r->names + e->name, "entry needs dtype, shape and two data_offsets");
            if (!read_string(r, &at)) return false;
            e->dtype = dtype_from_tag(r->names + at);
            r->nlen = at;
            if (e->dtype < 0) return entry_error(r, r->names + e->name, "unsupported dtype (agrad reads F32, F64, I64, BOOL, U8)");
        } else if (k == 1) {
            e->shape = r->slen;
            if (!read_sizes(r, r->names + e->name, AG_MAX_DIMS, UINT64_MAX, "shape holds a negative or non-integer size",
                            &e->ndim))
                return false;
        } else if (k == 2) {
            size_t keep = r->slen;
            if (!read_sizes(r, r->names + e->name, 2, UINT64_MAX, "data_offsets lie outside the data section", &noff))
                return false;
            for (int i = 0; i < noff; i++) off[i] = (uint64_t)r->shapes[keep + (size_t)i];
            r->slen = keep;
        } else if (!skip_value(r, 1)) {
            return false;
        }
        skip_ws(r);
    } while (r->p < r->end && *r->p == ',' && r->p++);
    if (!expect(r, '}')) return false;
    const char *name = r->names + e->name;
    if (!seen[0] || !seen[1] || !seen[2] || noff != 2) return entry_error(r, name, "entry needs dtype, shape and two data_offsets");
    /* zero sizes too: strides multiply them */
    int64_t nbytes = ag__nbytes_checked(e->ndim, r->shapes + e->shape, (ag_dtype)e->dtype);
    if (nbytes < 0) return entry_error(r, name, "shape is impossibly large");
    if (off[1] < off[0] || off[1] > r->data_size) return entry_error(r, name, "data_offsets lie outside the data section");
    e->begin = off[0];
    e->end = off[1];
    if (e->end - e->begin != (uint64_t)nbytes)
        return entry_error(r, name, "data_offsets do not match dtype and shape");
    return true;
}

/* Reads the whole header: every entry into r->v, in order.  False with r->why or r->nomem. */
static bool read_header(reader *r) {
    if (!expect(r, '{')) return false;
    skip_ws(r);
    if (r->p >= r->end || *r->p != '}') /* an empty object, {}, has no entries */
        do {
            size_t at;
            if (!read_string(r, &at) || !expect(r, ':')) return false;
            if (strcmp(r->names + at, METADATA) == 0) {
                r->nlen = at;
                if (!skip_value(r, 1)) return false;
            } else {
                if (!r->names[at]) return entry_error(r, "", "a tensor has an empty name"); /* a state dict names every tensor */
                if (!grow_pool(r, (void **)&r->v, &r->cap, r->n, 1, sizeof(st_entry))) return false;
                st_entry *e = &r->v[r->n];
                *e = (st_entry){.name = at};
                if (!read_entry(r, e)) return false;
                r->n++;
            }
            skip_ws(r);
        } while (r->p < r->end && *r->p == ',' && r->p++);
    if (!expect(r, '}')) return false;
    skip_ws(r);
    if (r->p != r->end) return syntax(r, "text after the header's object");
    return true;
}

/* ---- checking the entries together -------------------------------------------------------------- */
typedef struct span {
    uint64_t begin, end;
    const char *name;
} span;

static int by_begin(const void *a, const void *b) {
    const span *x = a, *y = b;
    return x->begin != y->begin ? (x->begin < y->begin ? -1 : 1) : (x->end > y->end) - (x->end < y->end);
}

static int by_name(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

/* Checks that no two entries share a name and that the data spans tile [0, data_size)
 * exactly, as safetensors requires: no overlap (empty spans overlap nothing), no gap,
 * nothing after the last.  O(n log n).  False with r->why or r->nomem. */
static bool check_entries(reader *r) {
    size_t n = r->n;
    span *spans = ag__alloc(sizeof(span) * (n ? n : 1));
    const char **names = ag__alloc(sizeof(char *) * (n ? n : 1));
    bool ok = spans && names;
    if (!ok) r->nomem = true;
    for (size_t i = 0; ok && i < n; i++) {
        spans[i] = (span){r->v[i].begin, r->v[i].end, r->names + r->v[i].name};
        names[i] = spans[i].name;
    }
    if (ok) qsort(names, n, sizeof(char *), by_name);
    for (size_t i = 1; ok && i < n; i++)
        if (strcmp(names[i - 1], names[i]) == 0) ok = entry_error(r, names[i], "two entries have this name");
    if (ok) qsort(spans, n, sizeof(span), by_begin);
    uint64_t at = 0; /* where the data so far end */
    const char *last = NULL;
    for (size_t i = 0; ok && i < n; i++) {
        if (spans[i].begin == spans[i].end) continue;
        if (spans[i].begin < at)
            snprintf(r->why, r->why_cap, "the data of tensors \"%.200s\" and \"%.200s\" overlap (bytes %llu..%llu)", last,
                     spans[i].name, (unsigned long long)spans[i].begin, (unsigned long long)at), ok = false;
        else if (spans[i].begin > at)
            snprintf(r->why, r->why_cap, "bytes %llu..%llu of the data section belong to no tensor (before \"%.200s\")",
                     (unsigned long long)at, (unsigned long long)spans[i].begin, spans[i].name), ok = false;
        at = spans[i].end;
        last = spans[i].name;
    }
    if (ok && at != r->data_size)
        snprintf(r->why, r->why_cap, "bytes %llu..%llu of the data section belong to no tensor (after the last)",
                 (unsigned long long)at, (unsigned long long)r->data_size), ok = false;
    ag__free(spans);
    ag__free(names);
    return ok;
}

/* ---- loading ---------------------------------------------------------------------------------------- */
/* Reads the data of each entry (validated) into a new dict. */
static ag_state_dict *read_tensors(FILE *f, const char *path, const reader *r, uint64_t data_start) {
    ag_state_dict *sd = ag_state_dict_new();
    if (!sd) return ag__fail_null(AG_ERR_NOMEM, "load_safetensors: %s: out of memory", path);
    for (size_t i = 0; i < r->n; i++) {
        const st_entry *e = &r->v[i];
        const char *name = r->names + e->name;
        ag_tensor *t = ag__new_unowned((ag_dtype)e->dtype, e->ndim, r->shapes + e->shape, false);
        ag_status st = t ? AG_OK : ag__fail(AG_ERR_NOMEM, "load_safetensors: %s: out of memory", path);
        size_t n = (size_t)(e->end - e->begin);
        if (!st && n && (fseeko(f, (off_t)(data_start + e->begin), SEEK_SET) != 0 || fread(ag__ptr(t), 1, n, f) != n))
            st = ag__fail(AG_ERR_IO, "load_safetensors: %s: read error: %s", path,
                          ferror(f) ? strerror(errno) : "the file is shorter than its header says");
        for (size_t k = 0; !st && e->dtype == AG_BOOL && k < n; k++)
            if (((const uint8_t *)ag__ptr(t))[k] > 1)
                st = ag__fail(AG_ERR_FORMAT, "load_safetensors: %s: tensor \"%s\": BOOL element %zu is the byte %u "
                                             "(a BOOL is 0 or 1)", path, name, k, ((const uint8_t *)ag__ptr(t))[k]);
        if (!st) st = ag_state_dict_set(sd, name, t);
        ag_release(t);
        if (st) {
            ag_state_dict_free(sd);
            return NULL;
        }
    }
    return sd;
}

ag_state_dict *ag_load_safetensors(const char *path) {
    if (!path) return ag__fail_null(AG_ERR_ARG, "load_safetensors: path is NULL");
    FILE *f = fopen(path, "rb");
    if (!f) return ag__fail_null(AG_ERR_IO, "load_safetensors: %s: %s", path, strerror(errno));
    ag_state_dict *sd = NULL;
    unsigned char *text = NULL;
    char why[600] = "";
    reader r = {.why = why, .why_cap = sizeof why};
    ag_status st = AG_OK;
    off_t fsize = fseeko(f, 0, SEEK_END) == 0 ? ftello(f) : -1;
    unsigned char n8[8];
    uint64_t hlen = 0;
    if (fsize < 0 || fseeko(f, 0, SEEK_SET) != 0) {
        st = ag__fail(AG_ERR_IO, "load_safetensors: %s: read error: %s", path, strerror(errno));
        goto finish;
    }
    if (fsize < 8 || fread(n8, 1, 8, f) != 8) {
        snprintf(why, sizeof why, "file is shorter than the 8-byte header length");
        goto finish;
    }
    for (int i = 0; i < 8; i++) hlen |= (uint64_t)n8[i] << (8 * i);
    if (hlen > (uint64_t)fsize - 8 || hlen > 100u << 20) {
        snprintf(why, sizeof why, "header length exceeds the file size (truncated or not a safetensors file)");
        goto finish;
    }
    text = ag__alloc((size_t)hlen + 1);
    if (!text) {
        st = AG_ERR_NOMEM;
        goto finish;
    }
    if (fread(text, 1, (size_t)hlen, f) != hlen) {
        st = ag__fail(AG_ERR_IO, "load_safetensors: %s: read error: %s", path, strerror(errno));
        goto finish;
    }
    /* The whole header is read and checked before any tensor is allocated. */
    r.text = r.p = text;
    r.end = text + hlen;
    r.data_size = (uint64_t)fsize - 8 - hlen;
    if (read_header(&r) && check_entries(&r)) {
        ag__free(text);
        text = NULL;
        sd = read_tensors(f, path, &r, 8 + hlen);
        if (!sd) st = ag_last_status();
    } else if (r.nomem) {
        st = AG_ERR_NOMEM;
    }
finish:
    if (st == AG_ERR_NOMEM) ag__fail(st, "load_safetensors: %s: out of memory", path);
    else if (!st && why[0]) ag__fail(AG_ERR_FORMAT, "load_safetensors: %s: %s", path, why);
    ag__free(text);
    ag__free(r.names);
    ag__free(r.shapes);
    ag__free(r.v);
    fclose(f);
    return sd;
}

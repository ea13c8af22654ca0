/*
 * data/idx.c - the IDX format of MNIST and Fashion-MNIST: magic 00 00 <type> <ndim>,
 * ndim big-endian uint32 sizes, then the big-endian elements row-major.  Files
 * may be gzip-compressed (recognised by content, not by name), and are then
 * decompressed only as far as the header says the data go.  Every length is
 * checked against the bytes present before anything is read or allocated.
 */
#include <math.h>
#include <string.h>
#include "data/internal.h"

typedef struct idx_type_info {
    ag_idx_type type;
    const char *name;
    size_t size;
    double lo, hi; /* range of the integer types (0, 0 for floats) */
} idx_type_info;

static const idx_type_info idx_types[] = {
    {AG_IDX_U8, "ubyte", 1, 0, 255},
    {AG_IDX_I8, "sbyte", 1, -128, 127},
    {AG_IDX_I16, "short", 2, -32768, 32767},
    {AG_IDX_I32, "int", 4, -2147483648.0, 2147483647.0},
    {AG_IDX_F32, "float", 4, 0, 0},
    {AG_IDX_F64, "double", 8, 0, 0},
};

static const idx_type_info *type_info(unsigned code) {
    for (size_t i = 0; i < sizeof idx_types / sizeof idx_types[0]; i++)
        if ((unsigned)idx_types[i].type == code) return &idx_types[i];
    return NULL;
}

static uint64_t be(const unsigned char *p, size_t n) {
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) v = v << 8 | p[i];
    return v;
}

/* The element at p as a double (exact for every type but float64 -> itself). */
static inline double element(const unsigned char *p, ag_idx_type t) {
    switch (t) {
    case AG_IDX_U8: return p[0];
    case AG_IDX_I8: return (int8_t)p[0];
    case AG_IDX_I16: return (int16_t)(uint16_t)be(p, 2);
    case AG_IDX_I32: return (int32_t)(uint32_t)be(p, 4);
    case AG_IDX_F32: {
        uint32_t u = (uint32_t)be(p, 4);
        float f;
        memcpy(&f, &u, 4);
        return f;
    }
    case AG_IDX_F64: {
        uint64_t u = be(p, 8);
        double d;
        memcpy(&d, &u, 8);
        return d;
    }
    }
    return 0;
}

/* What an IDX header says. */
typedef struct idx_header {
    const idx_type_info *ti;
    int ndim;
    int64_t shape[AG_MAX_DIMS];
    size_t header; /* bytes of the header */
    size_t numel, data; /* elements and data bytes the shape needs, unless overflow */
    bool overflow;  /* they exceed int64 (or the element count 2^62) */
} idx_header;

/* Reads the header at p[0 .. n-1], n being every byte there is (a whole file, or all a
 * gzip stream holds when it ends inside the header); `at` words the offsets ("byte" or
 * "decompressed byte").  False with the error recorded. */
static bool read_header(const unsigned char *p, size_t n, const char *name, const char *at, ag_dtype dtype,
                        idx_header *h) {
    if (n < 4)
        return ag__fail(AG_ERR_FORMAT, "load_idx: %s: truncated at %s %zu: the file ends inside the 4-byte magic number",
                        name, at, n), false;
    if (p[0] != 0 || p[1] != 0)
        return ag__fail(AG_ERR_FORMAT,
                        "load_idx: %s: bad magic number %02x %02x %02x %02x at %s 0 (an IDX file starts with 00 00 <type> <ndim>)",
                        name, p[0], p[1], p[2], p[3], at), false;
    const idx_type_info *ti = h->ti = type_info(p[2]);
    if (!ti)
        return ag__fail(AG_ERR_FORMAT,
                        "load_idx: %s: bad magic number: unknown element type 0x%02x at %s 2 (known: 08 09 0b 0c 0d 0e)",
                        name, p[2], at), false;
    int ndim = h->ndim = p[3];
    if (ndim > AG_MAX_DIMS)
        return ag__fail(AG_ERR_FORMAT, "load_idx: %s: %d dimensions (%s 3), at most %d are supported", name, ndim, at,
                        AG_MAX_DIMS), false;
    size_t header = h->header = 4 + 4 * (size_t)ndim;
    if (n < header)
        return ag__fail(AG_ERR_FORMAT, "load_idx: %s: truncated at %s %zu: a header of %d dimensions needs %zu bytes",
                        name, at, n, ndim, header), false;
    if (dtype == AG_I64 && (ti->type == AG_IDX_F32 || ti->type == AG_IDX_F64))
        return ag__fail(AG_ERR_DTYPE, "load_idx: %s: cannot load %s elements as int64 (use float32 or float64)", name,
                        ti->name), false;
    if (dtype == AG_U8 && ti->type != AG_IDX_U8) /* no lossy loads, as torch refuses such casts of data */
        return ag__fail(AG_ERR_DTYPE, "load_idx: %s: cannot load %s elements as uint8 (only ubyte files; use int64, float32 or float64)",
                        name, ti->name), false;
    bool empty = false;
    for (int d = 0; d < ndim; d++) {
        h->shape[d] = (int64_t)be(p + 4 + 4 * d, 4);
        empty |= h->shape[d] == 0;
    }
    /* Without elements the file size bounds no size, yet the strides multiply them. */
    char s[AG_SHAPE_STR];
    if (empty && ag__nbytes_checked(ndim, h->shape, dtype) < 0)
        return ag__fail(AG_ERR_FORMAT, "load_idx: %s: shape %s at %s 4 is too large: as %s it would span more than 2^62 bytes",
                        name, ag__shape_str(s, ndim, h->shape), at, ag_dtype_name(dtype)), false;
    int64_t numel = ag__numel_checked(ndim, h->shape), need = 0; /* need: data bytes in the file */
    h->overflow = numel < 0 || ag__mul_overflow(numel, (int64_t)ti->size, &need);
    h->numel = h->overflow ? 0 : (size_t)numel;
    h->data = h->overflow ? SIZE_MAX : (size_t)need;
    return true;
}

/* The error for data that end after have of the h->data bytes the shape needs; n bytes in all. */
static ag_tensor *truncated(const idx_header *h, const char *name, const char *at, size_t n, size_t have) {
    char need[48], s[AG_SHAPE_STR];
    if (h->overflow) snprintf(need, sizeof need, "more than %lld", (long long)INT64_MAX);
    else snprintf(need, sizeof need, "%zu", h->data);
    return ag__fail_null(AG_ERR_FORMAT,
                         "load_idx: %s: truncated at %s %zu: shape %s of %s needs %s data bytes after the %zu-byte header, only %zu are there",
                         name, at, n, ag__shape_str(s, h->ndim, h->shape), h->ti->name, need, h->header, have);
}

/* Parses the decompressed image p[0 .. n-1]; `at` words the offsets ("byte" or "decompressed byte").
 * When base is a uint8 tensor whose data p is, a uint8 result is a view of it (no copy). */
static ag_tensor *parse(const unsigned char *p, size_t n, const char *name, const char *at, ag_dtype dtype,
                        ag_tensor *base) {
    idx_header h;
    if (!read_header(p, n, name, at, dtype, &h)) return NULL;
    size_t have = n - h.header, numel = h.numel, header = h.header;
    int ndim = h.ndim;
    const int64_t *shape = h.shape;
    const idx_type_info *ti = h.ti;
    char s[AG_SHAPE_STR];
    if (h.overflow || h.data > have) return truncated(&h, name, at, n, have);
    if (h.data < have)
        return ag__fail_null(AG_ERR_FORMAT,
                             "load_idx: %s: size mismatch: shape %s of %s needs %lld data bytes after the %zu-byte header, but %zu follow it (%zu extra from %s %zu)",
                             name, ag__shape_str(s, ndim, shape), ti->name, (long long)h.data, header, have, have - h.data,
                             at, header + h.data);
    ag_tensor *t;
    if (base && dtype == AG_U8) { /* the bytes in place: a view of base past the header */
        int64_t stride[AG_MAX_DIMS];
        ag__contiguous_strides(ndim, shape, stride);
        t = ag__own(ag__new_view_unowned(base, ndim, shape, stride, (int64_t)header));
        if (!t) return ag__fail_null(AG_ERR_NOMEM, "load_idx: %s: out of memory for shape %s", name, ag__shape_str(s, ndim, shape));
        return t;
    }
    t = ag__new(dtype, ndim, shape);
    if (!t) return ag__fail_null(AG_ERR_NOMEM, "load_idx: %s: out of memory for shape %s", name, ag__shape_str(s, ndim, shape));
    const unsigned char *src = p + header;
    size_t es = ti->size, count = numel;
    if (dtype == AG_F32) {
        float *o = (float *)ag__ptr(t);
        if (ti->type == AG_IDX_U8)
            for (size_t i = 0; i < count; i++) o[i] = src[i];
        else
            for (size_t i = 0; i < count; i++) o[i] = (float)element(src + i * es, ti->type);
    } else if (dtype == AG_F64) {
        double *o = (double *)ag__ptr(t);
        for (size_t i = 0; i < count; i++) o[i] = element(src + i * es, ti->type);
    } else if (dtype == AG_U8) {
        memcpy(ag__ptr(t), src, count); /* ubyte only: the bytes as they are */
    } else {
        int64_t *o = (int64_t *)ag__ptr(t);
        for (size_t i = 0; i < count; i++) o[i] = (int64_t)element(src + i * es, ti->type);
    }
    return t;
}

#define AT_GZ "decompressed byte"

/* Decompresses the gzip data buf[0 .. n-1] only as far as their IDX header says they go:
 * the header first, then exactly the bytes its shape needs, into one buffer (a uint8
 * tensor for a uint8 load, which the result then views: no second copy), and fails if
 * more data follow.  So memory stays bounded by the header's claim, whatever the data
 * would expand to, and a claim the compressed bytes cannot hold (deflate expands at
 * most ~1032 times) allocates nothing.  When *owned, buf is freed as soon as it has
 * been read (*owned then cleared). */
static ag_tensor *decode_gzip(unsigned char *buf, size_t n, bool *owned, const char *name, ag_dtype dtype) {
    ag__gz g;
    unsigned char head[4 + 4 * AG_MAX_DIMS], *raw = NULL;
    ag_tensor *t = NULL, *base = NULL;
    size_t got = 0, more = 0;
    idx_header h;
    bool good = false;
    ag_status st = ag__gz_open(&g, "load_idx", name, buf, n);
    if (!st) st = ag__gz_read(&g, head, 4, &got);
    size_t hsize = got == 4 && head[3] <= AG_MAX_DIMS ? 4 + 4 * (size_t)head[3] : got;
    if (!st && hsize > got) st = ag__gz_read(&g, head + got, hsize - got, &more), got += more;
    if (st || !read_header(head, got, name, AT_GZ, dtype, &h)) {
        /* recorded */
    } else if (h.overflow || h.data > (n < SIZE_MAX / 1100 ? n * 1100 + 4096 : SIZE_MAX) - h.header) {
        /* More than the data can hold: count what they do hold, for the message. */
        unsigned char scratch[16384];
        size_t have = 0;
        do {
            st = ag__gz_read(&g, scratch, sizeof scratch, &more);
            have += more;
        } while (!st && more == sizeof scratch);
        if (!st) truncated(&h, name, AT_GZ, h.header + have, have);
    } else {
        size_t total = h.header + h.data;
        if (dtype == AG_U8) {
            base = ag__new_unowned(AG_U8, 1, (int64_t[]){(int64_t)total}, false);
            raw = base ? (unsigned char *)ag__ptr(base) : NULL;
        } else {
            raw = ag__alloc(total);
        }
        char s[AG_SHAPE_STR];
        if (!raw) {
            ag__fail(AG_ERR_NOMEM, "load_idx: %s: out of memory for shape %s", name, ag__shape_str(s, h.ndim, h.shape));
        } else {
            memcpy(raw, head, h.header);
            st = ag__gz_read(&g, raw + h.header, h.data, &more);
            unsigned char probe;
            size_t extra = 0;
            if (!st && more == h.data) st = ag__gz_read(&g, &probe, 1, &extra);
            if (st) {
                /* recorded */
            } else if (more < h.data) {
                truncated(&h, name, AT_GZ, h.header + more, more);
            } else if (extra) {
                ag__fail(AG_ERR_FORMAT,
                         "load_idx: %s: size mismatch: shape %s of %s needs %lld data bytes after the %zu-byte header, but more data follow them (from %s %zu)",
                         name, ag__shape_str(s, h.ndim, h.shape), h.ti->name, (long long)h.data, h.header, AT_GZ, total);
            } else {
                good = true;
            }
        }
    }
    ag__gz_close(&g);
    if (*owned) ag__free(buf), *owned = false;
    if (good) t = parse(raw, h.header + h.data, name, AT_GZ, dtype, base);
    if (base) ag_release(base);
    else ag__free(raw);
    return t;
}

/* Decodes buf[0 .. n-1] as ag__idx_decode does; when `owned`, buf is freed here, as
 * early as possible (the compressed bytes go before the tensor is made: a smaller peak). */
static ag_tensor *decode(unsigned char *buf, size_t n, bool owned, const char *name, ag_dtype dtype) {
    ag_tensor *t = NULL;
    if (dtype != AG_F32 && dtype != AG_F64 && dtype != AG_I64 && dtype != AG_U8)
        ag__fail_null(AG_ERR_DTYPE, "load_idx: %s: cannot load as dtype %d (use float32, float64, int64 or uint8)", name, (int)dtype);
    else if (!ag__is_gzip(buf, n))
        t = parse(buf, n, name, "byte", dtype, NULL);
    else
        t = decode_gzip(buf, n, &owned, name, dtype);
    if (owned) ag__free(buf);
    return t;
}

ag_tensor *ag__idx_decode(const unsigned char *buf, size_t n, const char *name, ag_dtype dtype) {
    return decode((unsigned char *)buf, n, false, name, dtype);
}

ag_tensor *ag_load_idx(const char *path, ag_dtype dtype) {
    unsigned char *buf;
    size_t n;
    if (ag__read_file("load_idx", path, &buf, &n)) return NULL;
    return decode(buf, n, true, path, dtype);
}

/* ---- writing ---------------------------------------------------------------------------- */
static double value_at(const ag_tensor *c, size_t i) {
    const char *p = ag__ptr(c);
    switch (c->dtype) {
    case AG_F32: return ((const float *)p)[i];
    case AG_F64: return ((const double *)p)[i];
    case AG_I64: return (double)((const int64_t *)p)[i];
    case AG_BOOL:
    case AG_U8: return ((const uint8_t *)p)[i];
    }
    return 0;
}

static void put_be(unsigned char *p, uint64_t v, size_t n) {
    for (size_t i = 0; i < n; i++) p[n - 1 - i] = (unsigned char)(v >> (8 * i));
}

/* Encodes the contiguous tensor c after a header into a new buffer. */
static ag_status encode(const ag_tensor *c, const idx_type_info *ti, const char *path, unsigned char **out, size_t *outn) {
    size_t numel = (size_t)ag__numel(c->ndim, c->shape), header = 4 + 4 * (size_t)c->ndim;
    int64_t bytes; /* c holds at most 2^62 bytes, but as 8-byte IDX elements they may be more */
    if (ag__mul_overflow((int64_t)numel, (int64_t)ti->size, &bytes) || bytes > AG_MAX_SIZE)
        return ag__fail(AG_ERR_NOMEM, "save_idx: %s: out of memory", path);
    for (int d = 0; d < c->ndim; d++)
        if (c->shape[d] > (int64_t)UINT32_MAX)
            return ag__fail(AG_ERR_ARG, "save_idx: %s: dimension %d has %lld elements, more than IDX allows", path, d,
                            (long long)c->shape[d]);
    unsigned char *buf = ag__alloc(header + (size_t)bytes);
    if (!buf) return ag__fail(AG_ERR_NOMEM, "save_idx: %s: out of memory", path);
    buf[0] = buf[1] = 0;
    buf[2] = (unsigned char)ti->type;
    buf[3] = (unsigned char)c->ndim;
    for (int d = 0; d < c->ndim; d++) put_be(buf + 4 + 4 * d, (uint64_t)c->shape[d], 4);
    unsigned char *q = buf + header;
    bool integer = ti->hi > ti->lo;
    for (size_t i = 0; i < numel; i++, q += ti->size) {
        double v = value_at(c, i);
        if (integer && !(v >= ti->lo && v <= ti->hi && v == floor(v))) {
            ag__free(buf);
            return ag__fail(AG_ERR_VALUE, "save_idx: %s: element %zu is %g, which does not fit %s (whole numbers %.0f .. %.0f)",
                            path, i, v, ti->name, ti->lo, ti->hi);
        }
        if (ti->type == AG_IDX_F32) {
            float f = (float)v;
            uint32_t u;
            memcpy(&u, &f, 4);
            put_be(q, u, 4);
        } else if (ti->type == AG_IDX_F64) {
            uint64_t u;
            memcpy(&u, &v, 8);
            put_be(q, u, 8);
        } else {
            put_be(q, (uint64_t)(int64_t)v, ti->size);
        }
    }
    *out = buf;
    *outn = header + (size_t)bytes;
    return AG_OK;
}

ag_status ag_save_idx(const ag_tensor *t, const char *path, ag_idx_type type, bool gzip) {
    AG_CHECK_HANDLES(AG_ERR_ARG, "save_idx", t);
    if (!t || !path) return ag__fail(AG_ERR_ARG, "save_idx: NULL tensor or path");
    const idx_type_info *ti = type_info((unsigned)type);
    if (!ti) return ag__fail(AG_ERR_ARG, "save_idx: %s: unknown IDX element type 0x%02x", path, (unsigned)type);
    ag_status st = ag_scope_begin();
    if (st) return st;
    ag_tensor *c = ag_contiguous((ag_tensor *)t);
    unsigned char *buf = NULL, *gz = NULL;
    size_t n = 0, gzn = 0;
    if (!c) st = ag_last_status();
    else st = encode(c, ti, path, &buf, &n);
    if (!st && gzip) st = ag__gzip("save_idx", buf, n, &gz, &gzn);
    if (!st) st = gzip ? ag__write_file("save_idx", path, gz, gzn) : ag__write_file("save_idx", path, buf, n);
    ag__free(gz);
    ag__free(buf);
    ag_scope_end();
    return st;
}

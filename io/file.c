/*
 * io/file.c - whole-file reads, atomic whole-file writes and gzip through
 * zlib, for the data readers and writers.  Every buffer comes from agrad's
 * allocator, zlib's included, so allocation-failure tests reach them.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>
#include "io/file.h"

/* Grows *buf (capacity *cap, *len bytes used) to hold at least need bytes plus a spare NUL. */
static bool grow(unsigned char **buf, size_t *cap, size_t len, size_t need) {
    if (need + 1 <= *cap) return true;
    size_t ncap = *cap ? *cap : 4096;
    while (ncap < need + 1) {
        if (ncap > SIZE_MAX / 2) return false;
        ncap *= 2;
    }
    unsigned char *nb = ag__alloc(ncap);
    if (!nb) return false;
    if (len) memcpy(nb, *buf, len);
    ag__free(*buf);
    *buf = nb;
    *cap = ncap;
    return true;
}

ag_status ag__read_file(const char *op, const char *path, unsigned char **buf, size_t *n) {
    *buf = NULL;
    *n = 0;
    if (!path) return ag__fail(AG_ERR_ARG, "%s: path is NULL", op);
    FILE *f = fopen(path, "rb");
    if (!f) return ag__fail(AG_ERR_IO, "%s: %s: %s", op, path, strerror(errno));
    struct stat st;
    size_t cap = 0, len = 0;
    unsigned char *b = NULL;
    /* A regular file is read in one go; pipes and devices by growing. */
    size_t hint = fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0 ? (size_t)st.st_size : 0;
    ag_status status = AG_OK;
    for (;;) {
        if (!grow(&b, &cap, len, len + (hint && len < hint ? hint - len : 65536))) {
            status = ag__fail(AG_ERR_NOMEM, "%s: %s: out of memory reading the file", op, path);
            break;
        }
        size_t want = cap - 1 - len;
        size_t got = fread(b + len, 1, want, f);
        len += got;
        if (got < want) {
            if (ferror(f)) status = ag__fail(AG_ERR_IO, "%s: %s: read error: %s", op, path, strerror(errno));
            break;
        }
    }
    fclose(f);
    if (status) {
        ag__free(b);
        return status;
    }
    b[len] = '\0';
    *buf = b;
    *n = len;
    return AG_OK;
}

ag_status ag__write_file(const char *op, const char *path, const void *buf, size_t n) {
    if (!path) return ag__fail(AG_ERR_ARG, "%s: path is NULL", op);
    size_t plen = strlen(path);
    char *tmp = ag__alloc(plen + 16);
    if (!tmp) return ag__fail(AG_ERR_NOMEM, "%s: out of memory", op);
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp.XXXXXX", 12);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        ag_status s = ag__fail(AG_ERR_IO, "%s: %s: %s", op, path, strerror(errno));
        ag__free(tmp);
        return s;
    }
    (void)fchmod(fd, 0644); /* mkstemp made it 0600; the file is for others to read */
    FILE *f = fdopen(fd, "wb");
    bool good = f && fwrite(buf, 1, n, f) == n && fflush(f) == 0 && fsync(fd) == 0;
    int err = errno;
    if (f ? fclose(f) != 0 : close(fd) != 0) good = false;
    if (good && rename(tmp, path) != 0) {
        err = errno;
        good = false;
    }
    if (!good) {
        unlink(tmp);
        ag__free(tmp);
        return ag__fail(AG_ERR_IO, "%s: %s: %s", op, path, strerror(err ? err : EIO));
    }
    ag__free(tmp);
    return AG_OK;
}

bool ag__is_gzip(const unsigned char *buf, size_t n) { return n >= 2 && buf[0] == 0x1f && buf[1] == 0x8b; }

/* zlib allocates through agrad's allocator (so that failure injection reaches it). */
static voidpf z_alloc(voidpf opaque, uInt items, uInt size) {
    (void)opaque;
    return ag__alloc_n((int64_t)items, size);
}
static void z_free(voidpf opaque, voidpf p) {
    (void)opaque;
    ag__free(p);
}

void ag__zstream_init(z_stream *zs) {
    memset(zs, 0, sizeof *zs);
    zs->zalloc = z_alloc;
    zs->zfree = z_free;
}

size_t ag__gzip_size_hint(const unsigned char *in, size_t n) {
    return n >= 18 ? (size_t)in[n - 4] | (size_t)in[n - 3] << 8 | (size_t)in[n - 2] << 16 | (size_t)in[n - 1] << 24 : 0;
}

/* Feeds the next piece of input (zlib counts in uInt). */
static void feed(z_stream *zs, const unsigned char *in, size_t n) {
    size_t done = (size_t)(zs->next_in - in);
    if (zs->avail_in == 0 && done < n) {
        size_t piece = n - done < (size_t)UINT_MAX ? n - done : (size_t)UINT_MAX;
        zs->avail_in = (uInt)piece;
    }
}

/* Inflates every gzip member of in[0 .. n-1] into *buf (*cap bytes, the last kept for a
 * NUL), *len bytes so far.  When it fills: fixed, *full is set and AG_OK returned with no
 * message; else the buffer grows (starting at hint bytes).  Errors as ag__gunzip's. */
static ag_status inflate_members(const char *op, const char *name, const unsigned char *in, size_t n,
                                 unsigned char **buf, size_t *cap, size_t *len, size_t hint, bool *full) {
    z_stream zs;
    ag__zstream_init(&zs);
    if (inflateInit2(&zs, 15 + 16) != Z_OK) return ag__fail(AG_ERR_NOMEM, "%s: %s: out of memory for zlib", op, name);
    zs.next_in = (z_const Bytef *)in;
    ag_status status = AG_OK;
    for (;;) {
        if (*cap == 0 || *len == *cap - 1) {
            if (full) {
                *full = true;
                break;
            }
            if (!grow(buf, cap, *len, *cap == 0 ? (hint ? hint : 4096) : *cap)) {
                status = ag__fail(AG_ERR_NOMEM, "%s: %s: out of memory decompressing", op, name);
                break;
            }
        }
        size_t room = *cap - 1 - *len;
        zs.next_out = *buf + *len;
        zs.avail_out = room < (size_t)UINT_MAX ? (uInt)room : UINT_MAX;
        uInt before_out = zs.avail_out;
        feed(&zs, in, n);
        int ret = inflate(&zs, Z_NO_FLUSH);
        *len += before_out - zs.avail_out;
        size_t at = (size_t)(zs.next_in - in);
        if (ret == Z_STREAM_END) {
            if (at == n) break;
            if (!ag__is_gzip(in + at, n - at)) {
                status = ag__fail(AG_ERR_FORMAT, "%s: %s: %zu bytes of trailing garbage after the gzip data at compressed byte %zu",
                                  op, name, n - at, at);
                break;
            }
            inflateReset(&zs); /* another gzip member follows */
        } else if (ret == Z_OK) {
            continue;
        } else if (ret == Z_BUF_ERROR && zs.avail_out > 0 && at == n && zs.avail_in == 0) {
            status = ag__fail(AG_ERR_FORMAT, "%s: %s: truncated gzip data: the stream ends early at compressed byte %zu",
                              op, name, at);
            break;
        } else if (ret == Z_BUF_ERROR) {
            continue; /* needs more output room: grow on the next turn */
        } else if (ret == Z_MEM_ERROR) {
            status = ag__fail(AG_ERR_NOMEM, "%s: %s: out of memory decompressing", op, name);
            break;
        } else {
            status = ag__fail(AG_ERR_FORMAT, "%s: %s: corrupt gzip data at compressed byte %zu: %s", op, name, at,
                              zs.msg ? zs.msg : "invalid data");
            break;
        }
    }
    inflateEnd(&zs);
    return status;
}

ag_status ag__gunzip(const char *op, const char *name, const unsigned char *in, size_t n, unsigned char **out,
                     size_t *outn) {
    *out = NULL;
    *outn = 0;
    /* The trailer's size field is a good first guess for one member; deflate never
     * expands more than about 1032 times. */
    size_t hint = ag__gzip_size_hint(in, n);
    if (n < SIZE_MAX / 1100 && hint > n * 1100 + 4096) hint = n * 1100 + 4096;
    unsigned char *buf = NULL;
    size_t cap = 0, len = 0;
    ag_status status = inflate_members(op, name, in, n, &buf, &cap, &len, hint, NULL);
    if (status) {
        ag__free(buf);
        return status;
    }
    buf[len] = '\0';
    *out = buf;
    *outn = len;
    return AG_OK;
}

ag_status ag__gunzip_into(const char *op, const char *name, const unsigned char *in, size_t n, unsigned char *out,
                          size_t cap, size_t *len, bool *full) {
    *len = 0;
    *full = false;
    return inflate_members(op, name, in, n, &out, &cap, len, 0, full);
}

ag_status ag__gzip(const char *op, const void *data, size_t n, unsigned char **out, size_t *outn) {
    const unsigned char *in = data;
    *out = NULL;
    *outn = 0;
    z_stream zs;
    ag__zstream_init(&zs);
    if (deflateInit2(&zs, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return ag__fail(AG_ERR_NOMEM, "%s: out of memory for zlib", op);
    size_t cap = (size_t)deflateBound(&zs, (uLong)n) + 64;
    unsigned char *buf = ag__alloc(cap);
    if (!buf) {
        deflateEnd(&zs);
        return ag__fail(AG_ERR_NOMEM, "%s: out of memory compressing", op);
    }
    zs.next_in = (z_const Bytef *)in;
    size_t len = 0;
    int ret;
    do {
        feed(&zs, in, n);
        size_t room = cap - len;
        zs.next_out = buf + len;
        zs.avail_out = room < (size_t)UINT_MAX ? (uInt)room : UINT_MAX;
        uInt before = zs.avail_out;
        bool last = (size_t)(zs.next_in - in) + zs.avail_in == n;
        ret = deflate(&zs, last ? Z_FINISH : Z_NO_FLUSH);
        len += before - zs.avail_out;
    } while (ret == Z_OK);
    deflateEnd(&zs);
    if (ret != Z_STREAM_END) {
        ag__free(buf);
        return ag__fail(AG_ERR_NOMEM, "%s: zlib could not compress (error %d)", op, ret);
    }
    *out = buf;
    *outn = len;
    return AG_OK;
}

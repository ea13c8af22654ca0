/*
 * io/file.c - whole-file reads, atomic whole-file writes and gzip through
 * zlib, for the data readers and writers.  Every buffer comes from agrad's
 * allocator, zlib's included, so allocation-failure tests reach them.
 *
 * Every file agrad writes goes through ag__write_atomic: a new temporary file
 * beside the target, created as fopen would create the target (0666 less the
 * umask, or the mode of the file it replaces), filled, flushed and fsynced,
 * renamed over the target, and the directory fsynced so that the rename
 * survives a power loss.  Readers see the old file or the new one, never a
 * part.  A save killed half-way leaves its <path>.tmp.XXXXXX behind; the next
 * successful save of that path removes such files once they are ten minutes
 * old (a live save keeps touching its own).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
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

/* ---- atomic writes ------------------------------------------------------------------------------ */
/* A temporary file left by a save that was killed (<path>.tmp.XXXXXX) is removed by the
 * next successful save of the same path once it is this old: a live save keeps its file's
 * modification time fresh, so only a dead one's can age. */
#define STALE_TMP_SECONDS (10 * 60)
#define TMP_SUFFIX ".tmp."
#define TMP_RANDOM 6

static bool tmp_char(char c) { return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'); }

/* Writes TMP_RANDOM random letters and digits at out (no NUL). */
static void tmp_letters(char *out) {
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    static _Atomic uint64_t calls;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t x = atomic_fetch_add(&calls, 1) * 0x9E3779B97F4A7C15u ^ (uint64_t)getpid() << 40 ^
                 (uint64_t)ts.tv_sec << 20 ^ (uint64_t)ts.tv_nsec ^ (uint64_t)(uintptr_t)&ts;
    x ^= x >> 31, x *= 0xBF58476D1CE4E5B9u, x ^= x >> 27, x *= 0x94D049BB133111EBu, x ^= x >> 31; /* splitmix64 */
    for (int i = 0; i < TMP_RANDOM; i++, x /= 62) out[i] = alphabet[x % 62];
}

/* Creates the temporary file tmp (path + TMP_SUFFIX + TMP_RANDOM letters) as fopen would
 * create path: mode 0666 less the umask, or the mode of the file it will replace. */
static int create_tmp(const char *path, char *tmp, size_t plen) {
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, TMP_SUFFIX, sizeof TMP_SUFFIX - 1);
    tmp[plen + sizeof TMP_SUFFIX - 1 + TMP_RANDOM] = '\0';
    int fd = -1;
    for (int tries = 0; fd < 0 && tries < 100; tries++) {
        tmp_letters(tmp + plen + sizeof TMP_SUFFIX - 1);
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd < 0 && errno != EEXIST) return -1;
    }
    struct stat st;
    if (fd >= 0 && stat(path, &st) == 0 && S_ISREG(st.st_mode)) (void)fchmod(fd, st.st_mode & 0777);
    return fd;
}

/* Removes base's temporary files in the directory d that are older than STALE_TMP_SECONDS. */
static void remove_stale_tmp(DIR *d, const char *base) {
    size_t blen = strlen(base), want = blen + sizeof TMP_SUFFIX - 1 + TMP_RANDOM;
    time_t now = time(NULL);
    for (struct dirent *e; (e = readdir(d));) {
        const char *name = e->d_name;
        if (strlen(name) != want || strncmp(name, base, blen) != 0 ||
            strncmp(name + blen, TMP_SUFFIX, sizeof TMP_SUFFIX - 1) != 0)
            continue;
        bool letters = true;
        for (int i = 0; i < TMP_RANDOM; i++) letters &= tmp_char(name[want - TMP_RANDOM + i]);
        struct stat st;
        if (letters && fstatat(dirfd(d), name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) &&
            now - st.st_mtime > STALE_TMP_SECONDS)
            (void)unlinkat(dirfd(d), name, 0);
    }
}

ag_status ag__write_atomic(const char *op, const char *path, ag__write_fn fill, void *ctx) {
    if (!path) return ag__fail(AG_ERR_ARG, "%s: path is NULL", op);
    size_t plen = strlen(path);
    if (plen == 0) return ag__fail(AG_ERR_ARG, "%s: path is empty", op);
    /* Every allocation comes before the rename, so that nothing can fail after it. */
    char *tmp = ag__alloc(2 * plen + 2 + sizeof TMP_SUFFIX + TMP_RANDOM);
    if (!tmp) return ag__fail(AG_ERR_NOMEM, "%s: %s: out of memory", op, path);
    char *dir = tmp + plen + sizeof TMP_SUFFIX + TMP_RANDOM;
    const char *slash = strrchr(path, '/'), *base = slash ? slash + 1 : path;
    if (!slash) strcpy(dir, ".");
    else if (slash == path) strcpy(dir, "/");
    else memcpy(dir, path, (size_t)(slash - path)), dir[slash - path] = '\0';

    int fd = create_tmp(path, tmp, plen);
    if (fd < 0) {
        ag_status s = ag__fail(AG_ERR_IO, "%s: %s: %s", op, path, strerror(errno));
        ag__free(tmp);
        return s;
    }
    FILE *f = fdopen(fd, "wb");
    ag_status st = f ? fill(f, ctx) : AG_ERR_IO;
    int err = errno;
    bool wrote = st == AG_OK && !ferror(f) && fflush(f) == 0 && fsync(fd) == 0;
    if (st == AG_OK && !wrote) err = errno, st = AG_ERR_IO;
    if (f ? fclose(f) != 0 : close(fd) != 0) {
        if (st == AG_OK) err = errno, st = AG_ERR_IO;
    }
    if (st == AG_OK && rename(tmp, path) != 0) err = errno, st = AG_ERR_IO;
    if (st) {
        unlink(tmp);
        if (st == AG_ERR_IO) ag__fail(st, "%s: %s: %s", op, path, strerror(err ? err : EIO));
        ag__free(tmp);
        return st;
    }
    /* The rename is durable once the directory is synced (as SQLite and git do); both
     * that and removing stale temporary files are best effort: the file is in place. */
    DIR *d = opendir(dir);
    if (d) {
        remove_stale_tmp(d, base);
        (void)fsync(dirfd(d));
        closedir(d);
    }
    ag__free(tmp);
    return AG_OK;
}

typedef struct bytes {
    const void *buf;
    size_t n;
} bytes;

static ag_status write_bytes(FILE *f, void *ctx) {
    const bytes *b = ctx;
    return fwrite(b->buf, 1, b->n, f) == b->n ? AG_OK : AG_ERR_IO;
}

ag_status ag__write_file(const char *op, const char *path, const void *buf, size_t n) {
    bytes b = {buf, n};
    return ag__write_atomic(op, path, write_bytes, &b);
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

/* The decompressed size the gzip trailer gives for the last member (mod 2^32), 0 when
 * n is too short to hold one. */
static size_t gzip_size_hint(const unsigned char *in, size_t n) {
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

ag_status ag__gz_open(ag__gz *g, const char *op, const char *name, const unsigned char *in, size_t n) {
    memset(g, 0, sizeof *g);
    ag__zstream_init(&g->zs);
    if (inflateInit2(&g->zs, 15 + 16) != Z_OK) return ag__fail(AG_ERR_NOMEM, "%s: %s: out of memory for zlib", op, name);
    g->zs.next_in = (z_const Bytef *)in;
    g->in = in;
    g->n = n;
    g->op = op;
    g->name = name;
    g->open = true;
    return AG_OK;
}

void ag__gz_close(ag__gz *g) {
    if (g->open) inflateEnd(&g->zs);
    g->open = false;
}

ag_status ag__gz_read(ag__gz *g, void *out, size_t want, size_t *got) {
    z_stream *zs = &g->zs;
    const char *op = g->op, *name = g->name;
    *got = 0;
    while (*got < want && !g->end) {
        size_t room = want - *got;
        zs->next_out = (Bytef *)out + *got;
        zs->avail_out = room < (size_t)UINT_MAX ? (uInt)room : UINT_MAX;
        uInt before_out = zs->avail_out;
        feed(zs, g->in, g->n);
        int ret = inflate(zs, Z_NO_FLUSH);
        *got += before_out - zs->avail_out;
        size_t at = (size_t)(zs->next_in - g->in);
        if (ret == Z_STREAM_END) {
            if (at == g->n) {
                g->end = true;
            } else if (!ag__is_gzip(g->in + at, g->n - at)) {
                return ag__fail(AG_ERR_FORMAT, "%s: %s: %zu bytes of trailing garbage after the gzip data at compressed byte %zu",
                                op, name, g->n - at, at);
            } else {
                inflateReset(zs); /* another gzip member follows */
            }
        } else if (ret == Z_OK || (ret == Z_BUF_ERROR && (zs->avail_out == 0 || at < g->n))) {
            continue;
        } else if (ret == Z_BUF_ERROR) { /* room left, and no input left to fill it */
            return ag__fail(AG_ERR_FORMAT, "%s: %s: truncated gzip data: the stream ends early at compressed byte %zu",
                            op, name, at);
        } else if (ret == Z_MEM_ERROR) {
            return ag__fail(AG_ERR_NOMEM, "%s: %s: out of memory decompressing", op, name);
        } else {
            return ag__fail(AG_ERR_FORMAT, "%s: %s: corrupt gzip data at compressed byte %zu: %s", op, name, at,
                            zs->msg ? zs->msg : "invalid data");
        }
    }
    return AG_OK;
}

ag_status ag__gunzip(const char *op, const char *name, const unsigned char *in, size_t n, unsigned char **out,
                     size_t *outn) {
    *out = NULL;
    *outn = 0;
    /* The trailer's size field is a good first guess for one member; deflate never
     * expands more than about 1032 times. */
    size_t hint = gzip_size_hint(in, n);
    if (n < SIZE_MAX / 1100 && hint > n * 1100 + 4096) hint = n * 1100 + 4096;
    ag__gz g;
    ag_status status = ag__gz_open(&g, op, name, in, n);
    unsigned char *buf = NULL;
    size_t cap = 0, len = 0;
    while (!status && !g.end) {
        if (!grow(&buf, &cap, len, cap == 0 ? (hint ? hint : 4096) : cap)) {
            status = ag__fail(AG_ERR_NOMEM, "%s: %s: out of memory decompressing", op, name);
            break;
        }
        size_t got;
        status = ag__gz_read(&g, buf + len, cap - 1 - len, &got);
        len += got;
    }
    ag__gz_close(&g);
    if (status) {
        ag__free(buf);
        return status;
    }
    if (!buf && !grow(&buf, &cap, 0, 0)) return ag__fail(AG_ERR_NOMEM, "%s: %s: out of memory decompressing", op, name);
    buf[len] = '\0';
    *out = buf;
    *outn = len;
    return AG_OK;
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

/*
 * data_internal.h - what the data files (nn/idx.c, nn/csv.c, nn/dataset.c,
 * nn/loader.c, nn/transform.c) share, and the in-memory entry points of the
 * readers that the fuzz targets call.  Not installed.
 */
#ifndef AGRAD_DATA_INTERNAL_H
#define AGRAD_DATA_INTERNAL_H

#include <zlib.h>
#include "autograd/internal.h"
#include "agrad/data.h"

/* ---- whole files (nn/data_io.c) ----------------------------------------------------- */
/* Reads all of path into a new buffer (ag__free it; one spare NUL byte after
 * the n bytes).  AG_ERR_IO "<op>: <path>: <reason>" on failure. */
AG_HIDDEN ag_status ag__read_file(const char *op, const char *path, unsigned char **buf, size_t *n);
/* Writes n bytes to path atomically: a temporary file beside it, flushed, renamed over path
 * (mode 0644, not mkstemp's 0600). */
AG_HIDDEN ag_status ag__write_file(const char *op, const char *path, const void *buf, size_t n);
/* True if the n bytes start with the gzip magic 1f 8b. */
AG_HIDDEN bool ag__is_gzip(const unsigned char *buf, size_t n);
/* Decompresses gzip data (one or more members) into a new buffer (ag__free it;
 * one spare NUL byte after the *outn bytes).  AG_ERR_FORMAT naming op, name and
 * the compressed byte offset for corrupt or truncated data; AG_ERR_NOMEM. */
AG_HIDDEN ag_status ag__gunzip(const char *op, const char *name, const unsigned char *in, size_t n,
                               unsigned char **out, size_t *outn);
/* The same into out, of which cap - 1 bytes may be filled: *len bytes.  When the data
 * do not fit, *full is set and AG_OK returned without a message (the caller then takes
 * ag__gunzip); errors as ag__gunzip's. */
AG_HIDDEN ag_status ag__gunzip_into(const char *op, const char *name, const unsigned char *in, size_t n,
                                    unsigned char *out, size_t cap, size_t *len, bool *full);
/* The decompressed size the gzip trailer gives for the last member (mod 2^32), 0 when
 * n is too short to hold one. */
AG_HIDDEN size_t ag__gzip_size_hint(const unsigned char *in, size_t n);
/* A z_stream cleared and set to allocate through agrad's allocator. */
AG_HIDDEN void ag__zstream_init(z_stream *zs);
/* Compresses n bytes into a new gzip buffer (ag__free it). */
AG_HIDDEN ag_status ag__gzip(const char *op, const void *in, size_t n, unsigned char **out, size_t *outn);

/* ---- readers on bytes in memory (the file functions read, then call these) ---------- */
/* An IDX image, plain or gzip; name is used in messages. */
AG_HIDDEN ag_tensor *ag__idx_decode(const unsigned char *buf, size_t n, const char *name, ag_dtype dtype);
/* A CSV text, plain or gzip; name is used in messages. */
AG_HIDDEN ag_csv *ag__csv_decode(const unsigned char *buf, size_t n, const char *name, const ag_csv_options *opt);

/* ---- a private random generator (xoshiro256**), independent of the global one ------- */
typedef struct ag__gen {
    uint64_t s[4];
} ag__gen;
AG_HIDDEN void ag__gen_seed(ag__gen *g, uint64_t seed);
AG_HIDDEN uint64_t ag__gen_next(ag__gen *g);
/* Uniform on [0, n), without modulo bias; n > 0. */
AG_HIDDEN uint64_t ag__gen_below(ag__gen *g, uint64_t n);
/* Fisher-Yates shuffle of a[0 .. n-1]. */
AG_HIDDEN void ag__gen_shuffle(ag__gen *g, int64_t *a, int64_t n);

/* ---- datasets (nn/dataset.c) --------------------------------------------------------- */
struct ag_dataset {
    ag_tensor *x, *y; /* contiguous references held by the dataset */
    int64_t n;        /* number of samples */
    int64_t *index;   /* rows of x and y, or NULL for 0 .. n-1 */
};
/* New tensor [n, x.shape[1:]...] owned by the current scope holding rows
 * rows[0 .. n-1] of the contiguous tensor t (rows NULL: 0 .. n-1). */
AG_HIDDEN ag_tensor *ag__gather_rows(const char *op, const ag_tensor *t, const int64_t *rows, int64_t n);

#endif

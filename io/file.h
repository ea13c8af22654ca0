/*
 * io/file.h - whole-file reads, atomic whole-file writes and gzip through zlib
 * (io/file.c), for every reader and writer above: data sets, plots, curves.
 * Not installed.
 */
#ifndef AGRAD_IO_FILE_H
#define AGRAD_IO_FILE_H

#include <stdio.h>
#include <zlib.h>
#include "core/internal.h"

/* Reads all of path into a new buffer (ag__free it; one spare NUL byte after
 * the n bytes).  AG_ERR_IO "<op>: <path>: <reason>" on failure. */
AG_HIDDEN ag_status ag__read_file(const char *op, const char *path, unsigned char **buf, size_t *n);
/* Fills the file for ag__write_atomic through f.  Returns AG_OK, or a failure with its
 * message recorded; failed writes need no check (ferror(f) is checked afterwards), a
 * bare AG_ERR_IO stops early and is worded from errno. */
typedef ag_status (*ag__write_fn)(FILE *f, void *ctx);
/* Writes path atomically (see io/file.c): fill(f, ctx) writes a temporary file beside
 * it, which is fsynced, renamed over path, and the directory fsynced.  On failure path
 * is untouched and the temporary file removed.  AG_ERR_ARG (NULL path), AG_ERR_IO
 * "<op>: <path>: <reason>", AG_ERR_NOMEM, or fill's status. */
AG_HIDDEN ag_status ag__write_atomic(const char *op, const char *path, ag__write_fn fill, void *ctx);
/* ag__write_atomic of the n bytes at buf. */
AG_HIDDEN ag_status ag__write_file(const char *op, const char *path, const void *buf, size_t n);
/* True if the n bytes start with the gzip magic 1f 8b. */
AG_HIDDEN bool ag__is_gzip(const unsigned char *buf, size_t n);
/* Decompresses gzip data (one or more members) into a new buffer (ag__free it;
 * one spare NUL byte after the *outn bytes).  AG_ERR_FORMAT naming op, name and
 * the compressed byte offset for corrupt or truncated data; AG_ERR_NOMEM. */
AG_HIDDEN ag_status ag__gunzip(const char *op, const char *name, const unsigned char *in, size_t n,
                               unsigned char **out, size_t *outn);
/* A gzip stream read piece by piece, so that a reader can stop where the data it
 * expects end (the header of an IDX file says how many bytes follow it): memory
 * then stays bounded whatever the data would expand to. */
typedef struct ag__gz {
    z_stream zs;
    const unsigned char *in;
    size_t n;
    const char *op, *name;
    bool open, end; /* end: every member has been inflated */
} ag__gz;
/* Starts reading the gzip data in[0 .. n-1] (one or more members).  AG_OK or AG_ERR_NOMEM;
 * close it with ag__gz_close either way. */
AG_HIDDEN ag_status ag__gz_open(ag__gz *g, const char *op, const char *name, const unsigned char *in, size_t n);
/* Inflates the next want bytes into out: *got of them, fewer only where the data end.
 * Errors as ag__gunzip's. */
AG_HIDDEN ag_status ag__gz_read(ag__gz *g, void *out, size_t want, size_t *got);
AG_HIDDEN void ag__gz_close(ag__gz *g);
/* A z_stream cleared and set to allocate through agrad's allocator. */
AG_HIDDEN void ag__zstream_init(z_stream *zs);
/* Compresses n bytes into a new gzip buffer (ag__free it). */
AG_HIDDEN ag_status ag__gzip(const char *op, const void *in, size_t n, unsigned char **out, size_t *outn);

#endif

/*
 * data/internal.h - what the data files (data/idx.c, data/csv.c, data/dataset.c,
 * data/loader.c, data/transform.c) share, and the in-memory entry points of the
 * readers that the fuzz targets call.  Not installed.
 */
#ifndef AGRAD_DATA_INTERNAL_H
#define AGRAD_DATA_INTERNAL_H

#include "io/file.h"
#include "agrad/data.h"

/* ---- readers on bytes in memory (the file functions read, then call these) ---------- */
/* An IDX image, plain or gzip; name is used in messages. */
AG_HIDDEN ag_tensor *ag__idx_decode(const unsigned char *buf, size_t n, const char *name, ag_dtype dtype);
/* A CSV text, plain or gzip; name is used in messages. */
AG_HIDDEN ag_csv *ag__csv_decode(const unsigned char *buf, size_t n, const char *name, const ag_csv_options *opt);

/* What ag_loader_load_state_dict checks, without changing l. */
AG_HIDDEN ag_status ag__loader_check_state_dict(ag_loader *l, const ag_state_dict *sd);

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

/* ---- datasets (data/dataset.c) --------------------------------------------------------- */
struct ag_dataset {
    ag_tensor *x, *y; /* contiguous references held by the dataset */
    int64_t n;        /* number of samples */
    int64_t *index;   /* rows of x and y, or NULL for 0 .. n-1 */
};
/* New tensor [n, x.shape[1:]...] owned by the current scope holding rows
 * rows[0 .. n-1] of the contiguous tensor t (rows NULL: 0 .. n-1). */
AG_HIDDEN ag_tensor *ag__gather_rows(const char *op, const ag_tensor *t, const int64_t *rows, int64_t n);

#endif

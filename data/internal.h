/*
 * data/internal.h - what the data files (data/idx.c, data/csv.c, data/dataset.c,
 * data/loader.c, data/transform.c) share, and the in-memory entry points of the
 * readers that the fuzz targets call.  Not installed.
 */
#ifndef AGRAD_DATA_INTERNAL_H
#define AGRAD_DATA_INTERNAL_H

#include "io/file.h"
#include "agrad/data.h"
#include <stdatomic.h>

/* ---- readers on bytes in memory (the file functions read, then call these) ---------- */
/* An IDX image, plain or gzip; name is used in messages. */
AG_HIDDEN ag_tensor *ag__idx_decode(const unsigned char *buf, size_t n, const char *name, ag_dtype dtype);
/* A CSV text, plain or gzip; name is used in messages. */
AG_HIDDEN ag_csv *ag__csv_decode(const unsigned char *buf, size_t n, const char *name, const ag_csv_options *opt);

/* The most pixels an image file may claim (PIL's limit, where it raises
 * DecompressionBombError): a few bytes of a forged header cannot ask for gigabytes. */
#define AG__MAX_IMAGE_PIXELS ((int64_t)2 * 89478485)
/* A PNG image into a new unowned uint8 tensor [C, H, W] (channels as ag_load_png);
 * more than max_pixels pixels (the fuzz target's lower limit, else
 * AG__MAX_IMAGE_PIXELS) fail with AG_ERR_FORMAT. */
AG_HIDDEN ag_tensor *ag__png_decode(const unsigned char *buf, size_t n, const char *name, int channels, int64_t max_pixels);
/* The same for a JPEG image (data/jpeg.c); AG_ERR_FORMAT in a build without libjpeg. */
AG_HIDDEN ag_tensor *ag__jpeg_decode(const unsigned char *buf, size_t n, const char *name, int channels, int64_t max_pixels);

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

/* ---- datasets (data/dataset.c, data/source.c) ---------------------------------------- */
typedef enum ag__dataset_kind {
    AG__DS_TENSORS,   /* rows of x and y (index: which rows, or NULL) */
    AG__DS_SUBSET,    /* items index[i] of base */
    AG__DS_CALLBACKS, /* cb */
    AG__DS_CONCAT,    /* parts one after the other */
    AG__DS_TRANSFORM, /* base's items through tf */
    AG__DS_ITERABLE   /* it (n is -1) */
} ag__dataset_kind;

struct ag_dataset {
    ag__dataset_kind kind;
    atomic_int refs;
    int64_t n;                 /* number of samples; -1 for a stream */
    ag_item_spec xs, ys;       /* one item's x and y */
    int64_t num_classes;       /* > 0: y is checked to be a class id below it */
    ag_tensor *x, *y;          /* AG__DS_TENSORS: contiguous references held by the dataset */
    int64_t *index;            /* TENSORS: rows of x and y, or NULL for 0 .. n-1; SUBSET: items of base */
    ag_dataset *base;          /* SUBSET, TRANSFORM */
    ag_dataset_callbacks cb;   /* CALLBACKS */
    ag_iterable_callbacks it;  /* ITERABLE */
    ag_dataset **parts;        /* CONCAT: the parts, and ends[k] = their lengths up to part k */
    int64_t *ends;
    int nparts;
    ag_compose *tf;            /* TRANSFORM */
    char **class_names;        /* an image folder's class folders (num_classes of them), or NULL */
};
/* Takes a reference to ds (the loader, a concatenation, a subset hold theirs); returns ds. */
AG_HIDDEN ag_dataset *ag__dataset_hold(ag_dataset *ds);
/* The bytes of one item of spec s. */
AG_HIDDEN size_t ag__item_bytes(const ag_item_spec *s);
/* Writes item i of a map-style ds into the contiguous buffers xd and yd (yd NULL:
 * no target) laid out as ds->xs and ds->ys, its randomness from seed.  On failure
 * the message names the item (op: the caller's name).  Safe on several threads
 * at once when ds's callbacks are. */
AG_HIDDEN ag_status ag__dataset_fetch(const char *op, const ag_dataset *ds, int64_t i, void *xd, void *yd, uint64_t seed);
/* The stream under ds (ds itself or the base of a transformed stream), or NULL for a map-style ds. */
AG_HIDDEN const ag_dataset *ag__dataset_stream(const ag_dataset *ds);
/* Reads the next item of a stream ds (ag__dataset_stream) into xd, yd laid out as
 * the stream's specs; 1, 0 at the end, -1 on failure (position: its number). */
AG_HIDDEN int ag__stream_next(const char *op, const ag_dataset *stream, int64_t position, void *xd, void *yd);
/* Turns a stream's raw item (laid out as the stream's x spec) into ds's x (transformed). */
AG_HIDDEN ag_status ag__stream_finish(const char *op, const ag_dataset *ds, int64_t position, const void *raw, void *xd,
                                      uint64_t seed);
/* Converts n elements from src (dtype from) to dst (dtype to). */
AG_HIDDEN void ag__convert(void *dst, ag_dtype to, const void *src, ag_dtype from, int64_t n);

/* ---- transforms (data/augment.c) ---------------------------------------------------- */
/* Applies c to one float image src [C, H, W] with the stream of seed, writing
 * dst [C, oh, ow] (ag__compose_out_size); dst may be src.  AG_OK, or AG_ERR_NOMEM
 * (not recorded) with dst undefined. */
AG_HIDDEN ag_status ag__compose_run(const ag_compose *c, const float *src, float *dst, int64_t C, int64_t H, int64_t W,
                                    uint64_t seed);
/* The size oh x ow that c makes of C x H x W images; AG_ERR_SHAPE (recorded, naming
 * op) when a transform would resize an empty image or make one too large. */
AG_HIDDEN ag_status ag__compose_out_size(const char *op, const ag_compose *c, int64_t C, int64_t H, int64_t W, int64_t *oh,
                                         int64_t *ow);
/* Checks that c fits images of C channels (its Normalize). */
AG_HIDDEN ag_status ag__compose_check(const char *op, const ag_compose *c, int64_t C);
AG_HIDDEN ag_compose *ag__compose_hold(ag_compose *c);
/* A normal draw (Box-Muller) and a uniform one on [0, 1) from g. */
AG_HIDDEN double ag__gen_normal(ag__gen *g);
AG_HIDDEN double ag__gen_uniform(ag__gen *g);
AG_HIDDEN uint64_t ag__mix_seed(uint64_t a, uint64_t b);

/* ---- samplers (data/sampler.c) ------------------------------------------------------ */
/* One epoch's indices into out (ag_sampler_len of them) drawn from g. */
AG_HIDDEN ag_status ag__sampler_fill(ag_sampler *s, ag__gen *g, int64_t epoch, int64_t *out);
/* Whether every epoch is a permutation of the same indices (what a saved order is checked against). */
AG_HIDDEN bool ag__sampler_is_permutation(const ag_sampler *s);
/* The largest index s can give + 1 (n of the sampler), or -1 when unknown (a custom sampler). */
AG_HIDDEN int64_t ag__sampler_range(const ag_sampler *s);
/* A distributed sampler's order of all its n indices this epoch, before sharding:
 * the same on every rank, so the loader saves it instead of this rank's share (any
 * rank resumes from rank 0's checkpoint); NULL for other kinds. */
AG_HIDDEN const int64_t *ag__sampler_shared_order(const ag_sampler *s);
/* A distributed sampler takes all (n indices) as this epoch's order and writes this
 * rank's share of it (ag_sampler_len entries) to out. */
AG_HIDDEN void ag__sampler_take_shared(ag_sampler *s, const int64_t *all, int64_t *out);

/* New tensor [n, x.shape[1:]...] owned by the current scope holding rows
 * rows[0 .. n-1] of the contiguous tensor t (rows NULL: 0 .. n-1). */
AG_HIDDEN ag_tensor *ag__gather_rows(const char *op, const ag_tensor *t, const int64_t *rows, int64_t n);

#endif

/*
 * agrad/data.h - data for training (torch.utils.data and friends): file readers
 * (IDX as used by MNIST and Fashion-MNIST, numeric CSV), in-memory datasets,
 * random splits, a batching loader with its own seeded shuffle, and the usual
 * input transforms (rescaling, z-score normalisation).
 *
 * Errors follow agrad/core.h: NULL or a non-zero status, with a message in
 * ag_last_error().  A reader never crashes on a bad file: it fails with
 * AG_ERR_IO (the file cannot be read) or AG_ERR_FORMAT (its contents are
 * wrong), and the message names the file and the place: a byte offset for
 * IDX files (counted in the decompressed stream for gzip files), a line and
 * column for CSV files (both 1-based; the column is the CSV field number).
 *
 * Ownership: tensors returned by functions here belong to the innermost scope
 * (or the caller), as everywhere in agrad.  Objects (ag_csv, ag_dataset,
 * ag_loader) are freed with their own _free function; a dataset or loader
 * holds its own references to the tensors it was built from, so it can
 * outlive them, and a loader can outlive its dataset.
 */
#ifndef AGRAD_DATA_H
#define AGRAD_DATA_H

#include "core.h"
#include "state.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- IDX files (MNIST, Fashion-MNIST) ------------------------------------------------ */
/* The element types of the IDX format: the third byte of the magic number. */
typedef enum ag_idx_type {
    AG_IDX_U8 = 0x08,  /* unsigned byte (images, labels) */
    AG_IDX_I8 = 0x09,  /* signed byte */
    AG_IDX_I16 = 0x0B, /* big-endian int16 */
    AG_IDX_I32 = 0x0C, /* big-endian int32 */
    AG_IDX_F32 = 0x0D, /* big-endian IEEE float */
    AG_IDX_F64 = 0x0E  /* big-endian IEEE double */
} ag_idx_type;

/* Reads an IDX file: magic 00 00 <type> <ndim>, ndim big-endian uint32 sizes,
 * then the elements in row-major order and nothing after them.  A gzip file
 * (recognised by its magic 1f 8b, whatever its name) is decompressed on the
 * fly, so the official train-images-idx3-ubyte.gz etc. load unchanged.
 * Returns a new tensor of the file's shape (at most AG_MAX_DIMS dims) holding
 * the values converted to dtype, NOT rescaled:
 *   AG_F32 / AG_F64 - any element type; ubyte pixels become 0.0 .. 255.0
 *                     (images: load as AG_F32, then ag_rescale to [0, 1]);
 *   AG_I64          - integer element types only (labels: load as AG_I64);
 *   AG_U8           - ubyte files only, the bytes as they are: a quarter of the
 *                     memory of float32 (as torchvision keeps MNIST); convert
 *                     batches with ag_rescale or ag_to_dtype.
 * NULL with AG_ERR_IO (cannot open or read), AG_ERR_FORMAT (truncated file,
 * bad magic, unknown type, too many dims, sizes that do not match the length,
 * corrupt gzip data - with the byte offset), AG_ERR_DTYPE (AG_BOOL, AG_I64
 * from a float file, AG_U8 from anything but ubyte), AG_ERR_NOMEM. */
AG_API ag_tensor *ag_load_idx(const char *path, ag_dtype dtype);

/* Writes t (any dtype, any layout) to path as an IDX file of element type
 * `type`, gzip-compressed when gzip is true.  The file is written atomically
 * (a temporary file beside it, then renamed).  Integer types need integral
 * values in their range (AG_ERR_VALUE naming the first bad element).  Returns
 * AG_OK, AG_ERR_ARG, AG_ERR_VALUE, AG_ERR_IO (with the path and the reason). */
AG_API ag_status ag_save_idx(const ag_tensor *t, const char *path, ag_idx_type type, bool gzip);

/* ---- CSV files ---------------------------------------------------------------------- */
/* How to read a CSV file.  A zeroed struct (or NULL) means: no header, no
 * label column, ',' separated, float32 features. */
typedef struct ag_csv_options {
    bool header;      /* the first non-blank line names the columns */
    bool has_labels;  /* one column holds class labels (see ag_load_csv) */
    int label_column; /* which one: 0-based, negative counts from the end (-1: last) */
    char delimiter;   /* field separator; 0 means ',' */
    ag_dtype dtype;   /* of the features: AG_F32 (the default) or AG_F64 */
} ag_csv_options;

typedef struct ag_csv ag_csv;

/* Reads a numeric CSV file into features [N, D] (every column but the label
 * column) and, with has_labels, int64 labels [N].  Labels are the integers
 * themselves when every label cell is an integer ("0", "1", "-1"); otherwise
 * each distinct string gets an id in order of first appearance ("setosa" 0,
 * "versicolor" 1, ...), with the names kept (ag_csv_class_name).  Accepts
 * LF or CRLF line ends, a UTF-8 byte order mark, blank lines (skipped, still
 * counted), spaces around cells, double-quoted cells ("a,b", "say ""hi""")
 * and gzip-compressed files (recognised by their magic).
 * Cells are parsed with strtod (C locale: '.' decimal point; nan and inf are
 * accepted).  NULL with AG_ERR_IO, AG_ERR_FORMAT ("line 7, column 3: \"abc\" is
 * not a number", empty cell, a row with the wrong number of columns, an
 * unterminated quote, a NUL byte, an empty file), AG_ERR_ARG (bad options,
 * label column out of range), AG_ERR_NOMEM.  Free the result with ag_csv_free. */
AG_API ag_csv *ag_load_csv(const char *path, const ag_csv_options *opt);
/* Frees csv and drops its tensors (retain them first to keep them).  NULL is ignored. */
AG_API void ag_csv_free(ag_csv *csv);
/* The features [N, D], borrowed from csv. */
AG_API ag_tensor *ag_csv_features(const ag_csv *csv);
/* The int64 labels [N], borrowed from csv; NULL when read without labels. */
AG_API ag_tensor *ag_csv_labels(const ag_csv *csv);
/* Number of classes: of distinct names for string labels, max label + 1 for
 * integer labels (0 if none is positive), 0 without labels. */
AG_API int64_t ag_csv_num_classes(const ag_csv *csv);
/* The name of class id for string labels; NULL for integer labels or an id out of range. */
AG_API const char *ag_csv_class_name(const ag_csv *csv, int64_t id);
/* The header name of feature column j (0 .. D-1, the label column left out);
 * NULL without a header or out of range. */
AG_API const char *ag_csv_column_name(const ag_csv *csv, int64_t j);

/* ---- datasets (torch.utils.data.TensorDataset, Subset, random_split) ------------------ */
typedef struct ag_dataset ag_dataset;

/* A dataset of samples (x[i], y[i]) over the first dim of x and y, like
 * TensorDataset(x, y): y.size(0) must equal x.size(0); any dtypes and trailing
 * shapes (int64 class ids, float targets; pass x as y for unlabelled data, as
 * an autoencoder does).  The dataset keeps references to x and y (contiguous
 * copies of non-contiguous ones).  NULL x or y returns NULL, keeping the
 * message of the call that failed to make it; else NULL with AG_ERR_SHAPE
 * (0-d tensors, different lengths) or AG_ERR_NOMEM. */
AG_API ag_dataset *ag_tensor_dataset(ag_tensor *x, ag_tensor *y);
/* The samples indices[0 .. n-1] of ds, in that order (repeats allowed), like
 * Subset(ds, indices).  NULL with AG_ERR_INDEX for an index out of range. */
AG_API ag_dataset *ag_subset(const ag_dataset *ds, const int64_t *indices, int64_t n);
/* Frees the dataset and drops its references.  NULL is ignored. */
AG_API void ag_dataset_free(ag_dataset *ds);
/* Number of samples; 0 for NULL. */
AG_API int64_t ag_dataset_len(const ag_dataset *ds);
/* The row of the underlying x and y that sample i is (i itself unless ds is a
 * subset); -1 with AG_ERR_INDEX if i is out of range. */
AG_API int64_t ag_dataset_index(const ag_dataset *ds, int64_t i);
/* Sample i (negative counts from the end): *x gets a copy of x[i] and *y of
 * y[i] (y may be NULL to skip it), owned by the current scope.  Returns AG_OK, AG_ERR_ARG, AG_ERR_INDEX, AG_ERR_NOMEM. */
AG_API ag_status ag_dataset_get(const ag_dataset *ds, int64_t i, ag_tensor **x, ag_tensor **y);
/* All samples stacked: x [len, ...] and y [len, ...] (y may be NULL to skip
 * it), new tensors owned by the current scope.  This is
 * how the training split's features are reached to fit a transform. */
AG_API ag_status ag_dataset_tensors(const ag_dataset *ds, ag_tensor **x, ag_tensor **y);
/* Splits ds at random into n disjoint subsets that cover it, like
 * torch.utils.data.random_split.  sizes[0 .. n-1] are either fractions (each in
 * [0, 1], summing to 1: part i gets floor(len * f_i) samples, and the samples
 * left over go one each to parts 0, 1, ... in turn) or lengths (whole numbers
 * summing to len).  The permutation comes from a generator seeded with seed
 * (the global generator is not used), so the split is reproducible.  Fills
 * out[0 .. n-1] with new datasets (free each); on failure none is left and it
 * returns AG_ERR_ARG (sizes that are neither) or AG_ERR_NOMEM. */
AG_API ag_status ag_random_split(const ag_dataset *ds, const double *sizes, int n, uint64_t seed,
                                 ag_dataset **out);

/* ---- loader (torch.utils.data.DataLoader) --------------------------------------------- */
typedef struct ag_loader ag_loader;

/* A zeroed struct (or NULL) means batch_size 1, in order, keep the last batch. */
typedef struct ag_loader_options {
    int64_t batch_size; /* samples per batch; 0 means 1 */
    bool shuffle;       /* a new random order every epoch */
    bool drop_last;     /* leave out a last batch smaller than batch_size */
    uint64_t seed;      /* seeds the loader's own generator: the same seed gives the same
                           sequence of epoch orders, whatever the global generator does */
    /* Sharding for data-parallel training (DistributedSampler(num_replicas, rank,
     * drop_last)): with num_replicas > 1 the loader hands out only share `rank` of
     * each epoch's order: its positions rank, rank + num_replicas, ... of the order
     * padded at the end with its own first samples to a multiple of num_replicas
     * (ceil(len / num_replicas) samples per rank), or, with shard_drop_last, cut to
     * one (floor).  Every rank gives the same seed, so shuffles agree and the
     * shares are disjoint (but for padding).  0 or 1: the whole dataset. */
    int64_t num_replicas, rank;
    bool shard_drop_last;
} ag_loader_options;

/* A loader over ds.  It copies what it needs (ds may be freed after).  NULL
 * with AG_ERR_ARG (negative batch size, num_replicas < 0, rank outside
 * [0, num_replicas)) or AG_ERR_NOMEM. */
AG_API ag_loader *ag_loader_new(const ag_dataset *ds, const ag_loader_options *opt);
/* Frees the loader.  NULL is ignored. */
AG_API void ag_loader_free(ag_loader *l);
/* Batches per epoch, len(loader): ceil(len / batch_size), or floor with drop_last
 * (len: this rank's share when sharding). */
AG_API int64_t ag_loader_num_batches(const ag_loader *l);
/* The next batch of the current epoch: *x gets the stacked inputs [B, ...] and
 * *y the stacked targets [B, ...] (y may be NULL to skip them), new tensors
 * owned by the current scope.  Returns 1 for a batch, 0
 * when the epoch is over (then *x = *y = NULL, and the next call starts a new
 * epoch, with a new order when shuffling), -1 on error (AG_ERR_ARG, AG_ERR_NOMEM).
 *     while (ag_loader_next(loader, &x, &y) > 0) { ... }  // one epoch */
AG_API int ag_loader_next(ag_loader *l, ag_tensor **x, ag_tensor **y);
/* Abandons the current epoch: the next ag_loader_next starts a new one. */
AG_API void ag_loader_reset(ag_loader *l);
/* Number of epochs started so far (1 during the first). */
AG_API int64_t ag_loader_epoch(const ag_loader *l);
/* Saves where the loader is, to resume exactly: its generator ("loader.generator",
 * int64 [4]), the current epoch's order ("loader.order", int64 [len]) and the
 * scalars "loader.epoch", "loader.position" (samples given out this epoch) and
 * "loader.active".  Returns AG_OK, AG_ERR_ARG (NULL), AG_ERR_NOMEM. */
AG_API ag_status ag_loader_state_dict(const ag_loader *l, ag_state_dict *sd);
/* Restores what ag_loader_state_dict saved into a loader over the same samples:
 * the batches that follow are those that followed the save, mid-epoch included.
 * Nothing changes unless everything fits.  Returns AG_OK, AG_ERR_ARG (NULL, a
 * missing entry), AG_ERR_VALUE (an entry of the wrong type or range, an order
 * that is not a permutation of this loader's samples), AG_ERR_NOMEM. */
AG_API ag_status ag_loader_load_state_dict(ag_loader *l, const ag_state_dict *sd);

/* ---- transforms ----------------------------------------------------------------------- */
/* Statistics are computed in double precision and returned with x's dtype:
 * per_feature - over dim 0, shape x.shape[1:] (tabular [N, D] -> [D], images
 *               [N, 28, 28] -> per pixel [28, 28]);
 * otherwise   - over all elements, a 0-d tensor (images: one global value).
 * Fit them on the training split and apply them to every split.  x must be
 * float32, float64 or uint8 with at least one sample (AG_ERR_DTYPE /
 * AG_ERR_VALUE).  uint8 data (image bytes, ag_load_idx(path, AG_U8)) gives
 * float32 statistics, and the out-of-place maps below (ag_normalize,
 * ag_minmax_scale, ag_rescale) turn it into a new float32 tensor, as
 * torchvision's ToTensor + Normalize do per batch; their in-place forms
 * cannot write floats into bytes and fail with AG_ERR_DTYPE. */

/* mean and population standard deviation (ddof 0, as sklearn's StandardScaler);
 * a zero standard deviation is returned as 1 so that the feature maps to 0.
 * Outputs owned by the current scope.  Returns AG_OK or an error. */
AG_API ag_status ag_zscore_fit(ag_tensor *x, bool per_feature, ag_tensor **mean, ag_tensor **std);
/* (x - mean) / std, broadcasting (torchvision's Normalize); a new tensor. */
AG_API ag_tensor *ag_normalize(ag_tensor *x, ag_tensor *mean, ag_tensor *std);
/* The same in place; returns x (NULL on error). */
AG_API ag_tensor *ag_normalize_(ag_tensor *x, const ag_tensor *mean, const ag_tensor *std);

/* Per-feature or global minimum and maximum, owned by the current scope. */
AG_API ag_status ag_minmax_fit(ag_tensor *x, bool per_feature, ag_tensor **lo, ag_tensor **hi);
/* Maps [lo, hi] (tensors, broadcasting) linearly onto [out_lo, out_hi]; where
 * hi == lo everything maps to out_lo.  A new tensor / in place (returns x). */
AG_API ag_tensor *ag_minmax_scale(ag_tensor *x, ag_tensor *lo, ag_tensor *hi, double out_lo, double out_hi);
AG_API ag_tensor *ag_minmax_scale_(ag_tensor *x, const ag_tensor *lo, const ag_tensor *hi, double out_lo,
                                   double out_hi);

/* Maps a known range [in_lo, in_hi] linearly onto [out_lo, out_hi]: pixels
 * 0..255 to [0, 1] with (x, 0, 255, 0, 1), or to [-1, 1] with (x, 0, 255, -1, 1).
 * Needs in_hi != in_lo.  A new tensor (float32 for uint8 x: a batch of bytes to
 * model inputs in one call) / in place (returns x; float x only). */
AG_API ag_tensor *ag_rescale(ag_tensor *x, double in_lo, double in_hi, double out_lo, double out_hi);
AG_API ag_tensor *ag_rescale_(ag_tensor *x, double in_lo, double in_hi, double out_lo, double out_hi);

#ifdef __cplusplus
}
#endif
#endif

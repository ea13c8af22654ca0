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
/* Drops the caller's reference to ds: it is freed (with its references to
 * tensors, parts and callbacks' free) when no loader, subset, concatenation or
 * transformed dataset holds it any more.  NULL is ignored. */
AG_API void ag_dataset_free(ag_dataset *ds);
/* Number of samples; 0 for NULL, -1 for a stream (ag_iterable_dataset). */
AG_API int64_t ag_dataset_len(const ag_dataset *ds);
/* The row of the underlying x and y that sample i is (i itself unless ds is a
 * subset of a tensor dataset; i for datasets that are not tensors); -1 with
 * AG_ERR_INDEX if i is out of range. */
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

/* ---- datasets of any kind (torch.utils.data.Dataset, ConcatDataset, IterableDataset) -- */
/* What one item's x or y is: every item of a dataset has these (the loader stacks
 * them into [B, shape...] batches).  A y of ndim 0 and dtype AG_I64 is a class id. */
typedef struct ag_item_spec {
    ag_dtype dtype;
    ag_shape shape;
} ag_item_spec;

/* Records an error for ag_last_error(), as agrad's own functions do, and returns s:
 * dataset, sampler and collate callbacks report a failure with
 *     return ag_data_error(AG_ERR_FORMAT, "%s: bad record", path);
 * A callback that returns a failing status without a message gets one naming it. */
AG_API ag_status ag_data_error(ag_status s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* A map-style dataset defined by C functions (a Dataset with __len__ and __getitem__).
 * get(ctx, i, x, y, seed) writes item i: on entry *x and *y are zeroed contiguous
 * tensors of the specs x and y (y NULL when the loader does not want targets);
 * fill them in place, or point *x (*y) at a tensor of your own of the same shape
 * (any dtype: it is converted), made in the scope that is open during the call
 * (it is released after).  seed is this item's random stream (ag_item_seed): draw
 * from it, not from the global generator, so that augmentation is reproducible
 * whatever thread runs the call.  With num_workers > 0 get runs on worker threads,
 * several at a time: it must only read ctx.  Return AG_OK, or a status with a
 * message (ag_data_error); the loader adds the item's number and name.
 * name(ctx, i, buf, size), optional, names item i in error messages (its file).
 * free(ctx), optional, is called when the last reference to the dataset goes.
 * num_classes > 0: y must be an int64 class id in [0, num_classes); an item out
 * of range fails with AG_ERR_VALUE naming the item. */
typedef struct ag_dataset_callbacks {
    void *ctx;
    int64_t len;
    ag_item_spec x, y;
    int64_t num_classes;
    ag_status (*get)(void *ctx, int64_t i, ag_tensor **x, ag_tensor **y, uint64_t seed);
    void (*name)(void *ctx, int64_t i, char *buf, size_t size);
    void (*free)(void *ctx);
} ag_dataset_callbacks;

/* A dataset calling cb (copied).  NULL with AG_ERR_ARG (no get, negative len,
 * a bad spec: bool dtype, a negative size, too many dims; num_classes with a y
 * that is not int64 0-d) or AG_ERR_NOMEM; on failure cb->free is called. */
AG_API ag_dataset *ag_callback_dataset(const ag_dataset_callbacks *cb);

/* The datasets parts[0 .. n-1] one after the other (ConcatDataset): item i is
 * item i - (lengths before) of the part it falls in.  Parts must have the same
 * item specs (AG_ERR_SHAPE / AG_ERR_DTYPE naming the part) and be map-style
 * (AG_ERR_ARG for an iterable one).  The result holds references to the parts,
 * which may be freed after. */
AG_API ag_dataset *ag_concat_dataset(ag_dataset *const *parts, int n);

/* A streaming dataset (IterableDataset) for data that does not fit in memory:
 * next(ctx, x, y) writes the next item of the stream into the zeroed contiguous
 * tensors *x, *y (as get above) and returns 1, or returns 0 at the end of the
 * stream, or -1 with ag_data_error.  reset(ctx), optional, rewinds the stream
 * for the next epoch (it is called before every epoch but the first).  The loader
 * reads items one at a time, in order, on whichever thread holds the stream: next
 * is never called twice at once; transforms of the items then run in parallel on
 * the workers.  name, free as for ag_dataset_callbacks (name gets the item's
 * number in the stream).  ag_dataset_len is -1; ag_dataset_get, ag_subset and
 * ag_concat_dataset refuse it; the loader's samplers do not apply. */
typedef struct ag_iterable_callbacks {
    void *ctx;
    ag_item_spec x, y;
    int64_t num_classes;
    int (*next)(void *ctx, ag_tensor **x, ag_tensor **y);
    ag_status (*reset)(void *ctx);
    void (*name)(void *ctx, int64_t i, char *buf, size_t size);
    void (*free)(void *ctx);
} ag_iterable_callbacks;
AG_API ag_dataset *ag_iterable_dataset(const ag_iterable_callbacks *cb);

/* The specs of ds's items (a tensor dataset: x.shape[1:] and y.shape[1:]). */
AG_API ag_status ag_dataset_spec(const ag_dataset *ds, ag_item_spec *x, ag_item_spec *y);
/* Makes ds check that its targets are int64 class ids in [0, num_classes): a
 * sample outside fails ag_dataset_get and ag_loader_next with AG_ERR_VALUE naming
 * it.  Returns AG_OK, AG_ERR_ARG (num_classes < 1), AG_ERR_DTYPE (y not int64 0-d). */
AG_API ag_status ag_dataset_set_num_classes(ag_dataset *ds, int64_t num_classes);
/* The number of classes set or found (ImageFolder: one per folder); 0 if none. */
AG_API int64_t ag_dataset_num_classes(const ag_dataset *ds);
/* The seed of item number `position` of epoch `epoch` of a loader seeded with
 * seed (a splitmix64 hash of the three): the stream an item's randomness comes
 * from, whichever worker prepares it, so that batches do not depend on
 * num_workers.  ag_dataset_get uses ag_item_seed(0, 0, i). */
AG_API uint64_t ag_item_seed(uint64_t seed, int64_t epoch, int64_t position);

/* ---- samplers (torch.utils.data.Sampler and its kinds) ---------------------------------- */
typedef struct ag_sampler ag_sampler;

/* 0, 1, ..., n-1 (SequentialSampler). */
AG_API ag_sampler *ag_sequential_sampler(int64_t n);
/* A random order of 0 .. n-1 (RandomSampler): without replacement, a permutation
 * (num_samples 0 or n; fewer takes its first num_samples); with replacement,
 * num_samples (0 means n) independent uniform draws. */
AG_API ag_sampler *ag_random_sampler(int64_t n, bool replacement, int64_t num_samples);
/* num_samples draws of i with probability weights[i] / sum (WeightedRandomSampler);
 * without replacement, each draw among the indices not drawn yet (num_samples <= the
 * number of positive weights).  Weights must be finite, >= 0, not all 0 (AG_ERR_VALUE). */
AG_API ag_sampler *ag_weighted_random_sampler(const double *weights, int64_t n, int64_t num_samples, bool replacement);
/* A random order of indices[0 .. n-1] (SubsetRandomSampler); indices are copied. */
AG_API ag_sampler *ag_subset_random_sampler(const int64_t *indices, int64_t n);
/* This rank's share of 0 .. n-1 (DistributedSampler(num_replicas, rank, shuffle,
 * drop_last)): each epoch the order every rank draws alike (a permutation from the
 * loader's generator with shuffle, else 0 .. n-1), padded cyclically with its own
 * first samples to a multiple of num_replicas (ceil(n / num_replicas) per rank) or,
 * with drop_last, cut to one (floor); this rank gets its positions rank,
 * rank + num_replicas, ...  Loaders seeded alike on every rank give disjoint shares
 * (but for padding) and a new order each epoch (set_epoch is the loader's epoch).
 * NULL with AG_ERR_ARG (n < 0, num_replicas < 1, rank outside [0, num_replicas))
 * or AG_ERR_NOMEM. */
AG_API ag_sampler *ag_distributed_sampler(int64_t n, int64_t num_replicas, int64_t rank, bool shuffle, bool drop_last);
/* A sampler of your own: len(ctx) samples per epoch,
 * fill(ctx, epoch, seed, out) writes them; seed is drawn from the loader's
 * generator for each epoch, so every process seeded alike draws the same. */
typedef struct ag_sampler_callbacks {
    void *ctx;
    int64_t (*len)(void *ctx);
    ag_status (*fill)(void *ctx, int64_t epoch, uint64_t seed, int64_t *out);
    void (*free)(void *ctx);
} ag_sampler_callbacks;
AG_API ag_sampler *ag_custom_sampler(const ag_sampler_callbacks *cb);
/* Samples per epoch; -1 for NULL. */
AG_API int64_t ag_sampler_len(const ag_sampler *s);
/* Draws one epoch's indices into out[0 .. len-1] from a generator seeded with seed
 * (the loader draws from its own).  Returns AG_OK or the callback's failure. */
AG_API ag_status ag_sampler_sample(ag_sampler *s, uint64_t seed, int64_t *out);
/* Frees s (a sampler given to a loader belongs to it).  NULL is ignored. */
AG_API void ag_sampler_free(ag_sampler *s);
/* The batches of a sampler (BatchSampler): cuts out[0 .. len-1] into batches of
 * batch_size, the last one shorter or, with drop_last, left out; writes the
 * batch count to *nbatches and the start of batch k to starts[k] (starts holds
 * len / batch_size + 2 entries; starts[nbatches] is the end).  The loader batches
 * its sampler so; this is the same cut for a caller's own loop. */
AG_API ag_status ag_batch_sampler(int64_t len, int64_t batch_size, bool drop_last, int64_t *starts, int64_t *nbatches);

/* A collate function (collate_fn): makes the batch *x, *y (new tensors, owned by
 * the scope open during the call) from n items xs[0 .. n-1], ys[0 .. n-1] (ys
 * NULL when the loader wants no targets).  It runs on worker threads with
 * num_workers > 0.  Returns AG_OK or a failure (ag_data_error). */
typedef ag_status (*ag_collate_fn)(void *ctx, int64_t n, ag_tensor *const *xs, ag_tensor *const *ys, ag_tensor **x,
                                   ag_tensor **y);

/* ---- loader (torch.utils.data.DataLoader) --------------------------------------------- */
typedef struct ag_loader ag_loader;

/* A zeroed struct (or NULL) means batch_size 1, in order, keep the last batch. */
typedef struct ag_loader_options {
    int64_t batch_size; /* samples per batch; 0 means 1 */
    bool shuffle;       /* a new random order every epoch */
    bool drop_last;     /* leave out a last batch smaller than batch_size */
    uint64_t seed;      /* seeds the loader's own generator: the same seed gives the same
                           sequence of epoch orders, whatever the global generator does,
                           and every item's random stream (see ag_item_seed) */
    int num_workers;    /* threads preparing batches ahead; 0: the calling thread does it.
                           Workers run agrad's ops on one thread each, and while the caller
                           waits for data its own thread count is lowered to the CPUs the
                           busy workers leave (docs/data.md#workers) */
    int prefetch_factor; /* batches each worker prepares ahead; 0 means 2 */
    ag_sampler *sampler; /* the order of samples (NULL: sequential, or random without
                            replacement with shuffle); the loader takes it over and frees
                            it, also when ag_loader_new fails; not with an iterable dataset */
    ag_collate_fn collate; /* NULL: stack the items (default_collate) */
    void *collate_ctx;     /* passed to collate */
    /* Sharding for data-parallel training (DistributedSampler(num_replicas, rank,
     * shuffle, drop_last)): with num_replicas > 1 and no sampler the loader's sampler
     * is ag_distributed_sampler(len, num_replicas, rank, shuffle, shard_drop_last),
     * so each epoch hands out only share `rank` of the one order every rank draws.
     * Every rank gives the same seed, so shuffles agree and the shares are disjoint
     * (but for padding).  0 or 1: the whole dataset. */
    int64_t num_replicas, rank;
    bool shard_drop_last;
} ag_loader_options;

/* A loader over ds.  It holds a reference to ds (ds may be freed after) and,
 * with num_workers > 0, starts its worker threads (see docs/data.md#workers).
 * NULL with AG_ERR_ARG (negative batch size, num_workers outside [0, 256],
 * prefetch_factor outside [0, 1024], a sampler or shuffle for a stream,
 * num_replicas < 0, rank outside [0, num_replicas), num_replicas > 1 with a
 * sampler or a stream), AG_ERR_INDEX (a sampler of indices beyond ds) or
 * AG_ERR_NOMEM. */
AG_API ag_loader *ag_loader_new(const ag_dataset *ds, const ag_loader_options *opt);
/* Stops the workers (waiting for the batches they are preparing) and frees the
 * loader.  NULL is ignored. */
AG_API void ag_loader_free(ag_loader *l);
/* Batches per epoch, len(loader): ceil(samples / batch_size), or floor with
 * drop_last (samples: the sampler's count, this rank's share when sharding); -1
 * for a stream. */
AG_API int64_t ag_loader_num_batches(const ag_loader *l);
/* The next batch of the current epoch: *x gets the stacked inputs [B, ...] and
 * *y the stacked targets [B, ...] (y may be NULL to skip them), new tensors
 * owned by the current scope.  Returns 1 for a batch, 0
 * when the epoch is over (then *x = *y = NULL, and the next call starts a new
 * epoch, with a new order when shuffling), -1 on error (AG_ERR_ARG, AG_ERR_NOMEM,
 * or a sample's failure: its status, and a message naming the sample and its
 * file; then the epoch is stopped and every call repeats the error until
 * ag_loader_reset).  Batches come in order whatever num_workers is.  With
 * workers, while the data is the bottleneck it sets the calling thread's
 * ag_set_num_threads to the CPUs the busy workers leave (at least 1, at most the
 * caller's count), and puts the caller's count back at the epoch's end, on a
 * failure, ag_loader_reset and ag_loader_free (docs/data.md#workers).
 *     while (ag_loader_next(loader, &x, &y) > 0) { ... }  // one epoch */
AG_API int ag_loader_next(ag_loader *l, ag_tensor **x, ag_tensor **y);
/* Abandons the current epoch (waiting for batches in flight, forgetting a
 * failure): the next ag_loader_next starts a new one. */
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

/* ---- image augmentation (torchvision.transforms.v2) --------------------------------------- */
/* A list of image transforms applied in order (Compose).  Images are float32
 * [C, H, W] or [H, W] (one channel).  Every random choice is drawn from a
 * generator seeded with the seed given to ag_compose_apply (a loader passes
 * each item's ag_item_seed), so the same seed gives the same picture. */
typedef struct ag_compose ag_compose;

/* An empty list (the identity).  NULL with AG_ERR_NOMEM. */
AG_API ag_compose *ag_compose_new(void);
/* Drops a reference to c (a transformed dataset holds its own).  NULL is ignored. */
AG_API void ag_compose_free(ag_compose *c);
/* Each adder appends one transform and returns AG_OK, or AG_ERR_ARG for NULL
 * c or a parameter out of range (named in the message).  All draw from the stream
 * in the order listed.
 * RandomCrop(size=(H, W), padding): pads every side with `padding` zeros and cuts
 * an H x W window at a uniform offset (top, then left, each in [0, 2 padding]):
 *   out[c, y, x] = in[c, y + top - padding, x + left - padding]  (0 outside). */
AG_API ag_status ag_compose_random_crop(ag_compose *c, int padding);
/* RandomHorizontalFlip(p): with probability p, out[c, y, x] = in[c, y, W-1-x]. */
AG_API ag_status ag_compose_hflip(ag_compose *c, double p);
/* RandomAffine: an angle uniform in [deg_lo, deg_hi] degrees (positive turns the
 * picture anticlockwise as displayed), shifts tx, ty = round(uniform(-f W, f W)),
 * round(uniform(-f H, f H)) for f = translate, and a zoom s uniform in [s_lo, s_hi],
 * about the image centre; each output pixel takes the nearest input pixel (0 outside):
 *   (u, v) = (x + 0.5 - W/2 - tx, y + 0.5 - H/2 - ty) / s,
 *   src = (u cos a - v sin a + W/2 - 0.5, u sin a + v cos a + H/2 - 0.5), rounded. */
AG_API ag_status ag_compose_random_affine(ag_compose *c, double deg_lo, double deg_hi, double translate, double s_lo,
                                          double s_hi);
/* GaussianNoise: out = in + std * N(0, 1), an independent draw per element. */
AG_API ag_status ag_compose_gaussian_noise(ag_compose *c, double std);
/* RandomErasing(p, scale, ratio, value), torchvision's rule: with probability p,
 * up to 10 tries of an area A = H W uniform(scale_lo, scale_hi) and an aspect r =
 * exp(uniform(log ratio_lo, log ratio_hi)), h = round(sqrt(A r)), w = round(sqrt(A / r));
 * the first with h < H and w < W sets an h x w box at a uniform place to value in
 * every channel. */
AG_API ag_status ag_compose_random_erasing(ag_compose *c, double p, double scale_lo, double scale_hi, double ratio_lo,
                                           double ratio_hi, double value);
/* Normalize(mean, std): out[c] = (in[c] - mean[c]) / std[c] for channels
 * c < channels (1: the same for every channel); std must be > 0. */
AG_API ag_status ag_compose_normalize(ag_compose *c, const double *mean, const double *std, int channels);
/* Resize((height, width)) and Resize(size) (the shorter side made size, the other
 * int(size * longer / shorter), as torchvision): F.interpolate's bilinear
 * (align_corners false, antialias false: what torchvision 0.14's Resize does to
 * tensors) or nearest resampling, the very input positions and float32 weights of
 * ag_interpolate.  Sides in [1, 2^20]. */
AG_API ag_status ag_compose_resize(ag_compose *c, int64_t height, int64_t width, bool nearest);
AG_API ag_status ag_compose_resize_shorter(ag_compose *c, int64_t size, bool nearest);
/* CenterCrop((height, width)), torchvision's rule: the window at top = round((H -
 * height) / 2), left = round((W - width) / 2) (halves to even, as Python's round);
 * a side larger than the image's is padded with zeros, (d // 2) before and the rest
 * after.  Draws nothing. */
AG_API ag_status ag_compose_center_crop(ag_compose *c, int64_t height, int64_t width);
/* RandomResizedCrop((height, width), scale, ratio), torchvision's get_params: up
 * to 10 tries of an area A = H W uniform(scale_lo, scale_hi) and an aspect r =
 * exp(uniform(log ratio_lo, log ratio_hi)), w = round(sqrt(A r)), h = round(sqrt(A / r));
 * the first with 0 < w <= W and 0 < h <= H is cut at top uniform in [0, H - h],
 * left in [0, W - w]; otherwise the centred crop of the whole image narrowed to
 * the nearest aspect in [ratio_lo, ratio_hi].  The cut is then resized to height x
 * width as ag_compose_resize.  torchvision's defaults: scale [0.08, 1], ratio [3/4, 4/3]. */
AG_API ag_status ag_compose_random_resized_crop(ag_compose *c, int64_t height, int64_t width, double scale_lo, double scale_hi,
                                                double ratio_lo, double ratio_hi, bool nearest);
/* ColorJitter(brightness, contrast) for images in [0, 1]: factors b, c uniform in
 * [max(0, 1 - x), 1 + x] for x = brightness, contrast (0: left out), applied in an
 * order drawn per image (a coin, then b, then c):
 *   brightness: out = clamp(b in, 0, 1);
 *   contrast:   out = clamp(c in + (1 - c) m, 0, 1), m the mean of the grey image
 *               (0.2989 r + 0.587 g + 0.114 b for 3 channels; for other counts the
 *               mean of every value, as torchvision's for 1 channel). */
AG_API ag_status ag_compose_color_jitter(ag_compose *c, double brightness, double contrast);
/* Applies c to img in place (float32 [C, H, W] or [H, W], contiguous) with the
 * stream of seed.  Returns AG_OK, AG_ERR_ARG, AG_ERR_DTYPE, AG_ERR_SHAPE (also for
 * a Normalize of more channels than img has, and for transforms that change the
 * image's size: use ag_compose_call), AG_ERR_NOMEM. */
AG_API ag_status ag_compose_apply(const ag_compose *c, ag_tensor *img, uint64_t seed);
/* c applied to img (float32 [C, H, W] or [H, W], contiguous; left unchanged) as
 * a new float32 tensor of the size the transforms make, owned by the current
 * scope.  NULL with the errors of ag_compose_apply. */
AG_API ag_tensor *ag_compose_call(const ag_compose *c, const ag_tensor *img, uint64_t seed);

/* The dataset ds with c applied to every item's x (as a torchvision dataset's
 * transform=): items become float32 (other dtypes are converted by value, so
 * uint8 pixels stay 0 .. 255: rescale with a Normalize of mean 0, std 255), of
 * the same rank (C, H, W or H, W) and the size the transforms make of ds's
 * (AG_ERR_SHAPE when one would resize an empty image).  Each item's stream is its ag_item_seed.
 * Holds references to ds and c; NULL with AG_ERR_SHAPE for items of another
 * rank, AG_ERR_DTYPE for bool items, AG_ERR_NOMEM.  An iterable ds gives an
 * iterable result. */
AG_API ag_dataset *ag_transformed_dataset(ag_dataset *ds, ag_compose *c);

/* ---- image files (PNG, torchvision.datasets.ImageFolder) ----------------------------------- */
/* Reads a PNG file (libpng: any bit depth, palette, grey, alpha, interlaced) into
 * a new uint8 tensor [C, H, W]: channels 1 (grey: colour is converted by
 * libpng's weights), 3 (RGB) or 4 (RGBA), or 0 for the file's own (1, 2 for grey
 * + alpha, 3 or 4).  16-bit samples are reduced to 8.  NULL with AG_ERR_IO
 * (cannot read), AG_ERR_FORMAT (not a PNG, corrupt or truncated data: libpng's
 * reason and the file's name), AG_ERR_ARG, AG_ERR_NOMEM. */
AG_API ag_tensor *ag_load_png(const char *path, int channels);
/* Reads a JPEG file (libjpeg-turbo: baseline or progressive, grey or colour) into
 * a new uint8 tensor [C, H, W], channels as ag_load_png (0: 1 for grey files, 3
 * otherwise; 4 adds alpha 255).  Colour is converted by libjpeg (YCbCr to RGB, as
 * PIL does; values can differ from another decoder's by 1 or 2 levels).  NULL with
 * AG_ERR_IO, AG_ERR_FORMAT (not a JPEG, corrupt or truncated data: libjpeg's reason
 * and the file's name; also every file when agrad was built without libjpeg, see
 * ag_has_jpeg), AG_ERR_ARG, AG_ERR_NOMEM.  PNG and JPEG readers both refuse a
 * header claiming more than 178,956,970 pixels (PIL's decompression-bomb limit). */
AG_API ag_tensor *ag_load_jpeg(const char *path, int channels);
/* Reads a PNG or a JPEG file (told apart by their first bytes, whatever the name)
 * as ag_load_png / ag_load_jpeg do (torchvision.io.read_image). */
AG_API ag_tensor *ag_load_image(const char *path, int channels);
/* Whether this build reads JPEG files (meson found libjpeg; -Djpeg). */
AG_API bool ag_has_jpeg(void);

/* How ag_image_folder reads images.  Zeroed: one channel, the size of the first image. */
typedef struct ag_image_folder_options {
    int channels;           /* 1 (grey, the default), 3 or 4 */
    int64_t height, width;  /* 0: those of the first image (by name order) */
    bool resize;            /* images of another size are resized to height x width (as
                               ag_compose_resize, bilinear) instead of failing */
} ag_image_folder_options;
/* A dataset of the PNG and JPEG files in root/<class>/ (ImageFolder): classes are
 * the sub-folders in byte order of their names (class ids 0, 1, ...), files those
 * ending in .png, .jpg or .jpeg (any case; read by content, as ag_load_image) in
 * name order, hidden ones (a leading dot) and what is not a regular file once
 * symbolic links are followed (a dangling link, a loop of links) left out.
 * Items are x float32 [C, H, W] in [0, 1] (pixels / 255, ToTensor) and y the class
 * id (int64 0-d).  Files are read when an item is fetched; an image of another
 * size fails then with AG_ERR_SHAPE naming the file, or with the option resize
 * is resized (bilinear, after the scaling to [0, 1]).  NULL
 * with AG_ERR_IO (root unreadable), AG_ERR_VALUE (no class folder, or no image
 * at all), AG_ERR_FORMAT (the first image unreadable, when its size is needed),
 * AG_ERR_ARG, AG_ERR_NOMEM. */
AG_API ag_dataset *ag_image_folder(const char *root, const ag_image_folder_options *opt);
/* The name of class id (the folder) of an image folder; NULL otherwise or out of range. */
AG_API const char *ag_dataset_class_name(const ag_dataset *ds, int64_t id);
/* Writes the name of sample i into buf (an image folder: its path; else "sample i"). */
AG_API ag_status ag_dataset_item_name(const ag_dataset *ds, int64_t i, char *buf, size_t size);

#ifdef __cplusplus
}
#endif
#endif

/*
 * data/dataset.c - in-memory datasets (TensorDataset), subsets of them and random
 * splits.  A dataset is two contiguous tensors and, for a subset, the list of
 * their rows it consists of; samples and batches are gathered row copies.
 */
#include <math.h>
#include <string.h>
#include "data/internal.h"
#include "agrad/autograd.h"

/* An unowned reference to t, or to a contiguous copy (not recorded by autograd). */
static ag_tensor *hold_contiguous(ag_tensor *t) {
    if (ag__contig(t)) return ag_retain(t);
    if (ag_scope_begin()) return NULL;
    ag_no_grad_begin();
    ag_tensor *c = ag_retain(ag_contiguous(t));
    ag_no_grad_end();
    ag_scope_end();
    return c;
}

ag_tensor *ag__gather_rows(const char *op, const ag_tensor *t, const int64_t *rows, int64_t n) {
    int64_t shape[AG_MAX_DIMS];
    memcpy(shape, t->shape, sizeof shape);
    shape[0] = n;
    ag_tensor *out = ag__new(t->dtype, t->ndim, shape);
    if (!out) {
        char s[AG_SHAPE_STR];
        return ag__fail_null(AG_ERR_NOMEM, "%s: out of memory for a batch of shape %s", op, ag__shape_str(s, t->ndim, shape));
    }
    size_t row = (size_t)ag__numel(t->ndim - 1, t->shape + 1) * ag_dtype_size(t->dtype);
    const char *src = ag__ptr(t);
    char *dst = ag__ptr(out);
    if (!rows) {
        if (n) memcpy(dst, src, (size_t)n * row);
    } else {
        for (int64_t i = 0; i < n; i++) memcpy(dst + (size_t)i * row, src + (size_t)rows[i] * row, row);
    }
    return out;
}

static ag_dataset *dataset_new(ag_tensor *x, ag_tensor *y, int64_t n) {
    ag_dataset *ds = ag__calloc(sizeof *ds);
    if (!ds) return NULL;
    ds->x = ag_retain(x);
    ds->y = ag_retain(y);
    ds->n = n;
    return ds;
}

ag_dataset *ag_tensor_dataset(ag_tensor *x, ag_tensor *y) {
    AG_CHECK_HANDLES(NULL, "tensor_dataset", x, y);
    if (!x || !y) return NULL;
    char s1[AG_SHAPE_STR], s2[AG_SHAPE_STR];
    if (x->ndim == 0 || y->ndim == 0 || x->shape[0] != y->shape[0])
        return ag__fail_null(AG_ERR_SHAPE,
                             "tensor_dataset: x %s and y %s need at least one dim and the same size along dim 0",
                             ag__tshape(s1, x), ag__tshape(s2, y));
    ag_tensor *xc = hold_contiguous(x), *yc = xc ? hold_contiguous(y) : NULL;
    ag_dataset *ds = yc ? dataset_new(xc, yc, x->shape[0]) : NULL;
    ag_release(xc);
    ag_release(yc);
    if (!ds) return ag__fail_null(AG_ERR_NOMEM, "tensor_dataset: out of memory");
    return ds;
}

void ag_dataset_free(ag_dataset *ds) {
    if (!ds) return;
    ag_release(ds->x);
    ag_release(ds->y);
    ag__free(ds->index);
    ag__free(ds);
}

int64_t ag_dataset_len(const ag_dataset *ds) { return ds ? ds->n : 0; }

static int64_t row_of(const ag_dataset *ds, int64_t i) { return ds->index ? ds->index[i] : i; }

int64_t ag_dataset_index(const ag_dataset *ds, int64_t i) {
    if (!ds) return ag__fail(AG_ERR_ARG, "dataset_index: dataset is NULL"), -1;
    if (i < 0 || i >= ds->n)
        return ag__fail(AG_ERR_INDEX, "dataset_index: sample %lld is out of range for a dataset of %lld samples",
                        (long long)i, (long long)ds->n), -1;
    return row_of(ds, i);
}

ag_dataset *ag_subset(const ag_dataset *ds, const int64_t *indices, int64_t n) {
    if (!ds) return NULL;
    if (n < 0 || (n > 0 && !indices)) return ag__fail_null(AG_ERR_ARG, "subset: %lld indices at %p", (long long)n, (const void *)indices);
    for (int64_t i = 0; i < n; i++)
        if (indices[i] < 0 || indices[i] >= ds->n)
            return ag__fail_null(AG_ERR_INDEX, "subset: index %lld (position %lld) is out of range for a dataset of %lld samples",
                                 (long long)indices[i], (long long)i, (long long)ds->n);
    ag_dataset *sub = dataset_new(ds->x, ds->y, n);
    if (sub) sub->index = ag__alloc_n(n ? n : 1, sizeof(int64_t));
    if (!sub || !sub->index) {
        ag_dataset_free(sub);
        return ag__fail_null(AG_ERR_NOMEM, "subset: out of memory");
    }
    for (int64_t i = 0; i < n; i++) sub->index[i] = row_of(ds, indices[i]);
    return sub;
}

/* A copy of row r of t without its first dim, owned by the current scope. */
static ag_tensor *one_row(const ag_tensor *t, int64_t r) {
    ag_tensor *s = ag__new(t->dtype, t->ndim - 1, t->shape + 1);
    if (!s) return ag__fail_null(AG_ERR_NOMEM, "dataset_get: out of memory");
    size_t row = (size_t)ag_numel(s) * ag_dtype_size(t->dtype);
    if (row) memcpy(ag__ptr(s), ag__ptr(t) + (size_t)r * row, row);
    return s;
}

/* Undoes a first output when the second fails; returns the recorded status. */
static ag_status drop(ag_tensor **x) {
    if (ag_scope_depth() == 0) ag_release(*x); /* no scope owns it */
    *x = NULL;
    return ag_last_status();
}

ag_status ag_dataset_get(const ag_dataset *ds, int64_t i, ag_tensor **x, ag_tensor **y) {
    if (x) *x = NULL;
    if (y) *y = NULL;
    if (!ds || !x) return ag__fail(AG_ERR_ARG, "dataset_get: NULL dataset or x");
    if (i < 0) i += ds->n;
    if (i < 0 || i >= ds->n)
        return ag__fail(AG_ERR_INDEX, "dataset_get: sample %lld is out of range for a dataset of %lld samples",
                        (long long)i, (long long)ds->n);
    int64_t r = row_of(ds, i);
    if (!(*x = one_row(ds->x, r))) return ag_last_status();
    if (y && !(*y = one_row(ds->y, r))) return drop(x);
    return AG_OK;
}

ag_status ag_dataset_tensors(const ag_dataset *ds, ag_tensor **x, ag_tensor **y) {
    if (x) *x = NULL;
    if (y) *y = NULL;
    if (!ds || !x) return ag__fail(AG_ERR_ARG, "dataset_tensors: NULL dataset or x");
    if (!(*x = ag__gather_rows("dataset_tensors", ds->x, ds->index, ds->n))) return ag_last_status();
    if (y && !(*y = ag__gather_rows("dataset_tensors", ds->y, ds->index, ds->n))) return drop(x);
    return AG_OK;
}

/* Lengths of the parts from fractions (PyTorch's rule) or whole-number lengths. */
static ag_status split_lengths(const double *sizes, int n, int64_t len, int64_t *out) {
    double sum = 0;
    bool fractions = true;
    for (int i = 0; i < n; i++) {
        if (!(sizes[i] >= 0)) return ag__fail(AG_ERR_ARG, "random_split: size %d is %g, sizes must be >= 0", i, sizes[i]);
        fractions = fractions && sizes[i] <= 1;
        sum += sizes[i];
    }
    if (fractions && fabs(sum - 1) < 1e-9) {
        int64_t used = 0;
        for (int i = 0; i < n; i++) used += out[i] = (int64_t)floor((double)len * sizes[i]);
        for (int64_t k = 0; used < len; k++, used++) out[k % n]++;
        if (used == len) return AG_OK;
    } else {
        int64_t total = 0;
        bool whole = true;
        for (int i = 0; i < n; i++) {
            whole = whole && sizes[i] == floor(sizes[i]) && sizes[i] <= 9.0e15;
            out[i] = whole ? (int64_t)sizes[i] : 0;
            whole = whole && !ag__add_overflow(total, out[i], &total); /* many huge sizes */
        }
        if (whole && total == len) return AG_OK;
    }
    return ag__fail(AG_ERR_ARG,
                    "random_split: sizes must be fractions summing to 1 or whole lengths summing to %lld (the dataset's "
                    "length); they sum to %g",
                    (long long)len, sum);
}

ag_status ag_random_split(const ag_dataset *ds, const double *sizes, int n, uint64_t seed, ag_dataset **out) {
    if (!ds || !sizes || !out || n < 1) return ag__fail(AG_ERR_ARG, "random_split: NULL argument or n < 1");
    for (int i = 0; i < n; i++) out[i] = NULL;
    int64_t *lengths = ag__alloc_n(n, sizeof(int64_t));
    int64_t *perm = lengths ? ag__alloc_n(ds->n ? ds->n : 1, sizeof(int64_t)) : NULL; /* [2^62, 0] uint8 rows exist */
    if (!perm) {
        ag__free(lengths);
        return ag__fail(AG_ERR_NOMEM, "random_split: out of memory");
    }
    ag_status st = split_lengths(sizes, n, ds->n, lengths);
    if (!st) {
        ag__gen g;
        ag__gen_seed(&g, seed);
        for (int64_t i = 0; i < ds->n; i++) perm[i] = i;
        ag__gen_shuffle(&g, perm, ds->n);
        int64_t at = 0;
        for (int i = 0; i < n && !st; i++) {
            if (!(out[i] = ag_subset(ds, perm + at, lengths[i]))) st = ag_last_status();
            at += lengths[i];
        }
    }
    if (st)
        for (int i = 0; i < n; i++) {
            ag_dataset_free(out[i]);
            out[i] = NULL;
        }
    ag__free(perm);
    ag__free(lengths);
    return st;
}

/*
 * data/dataset.c - datasets and what every kind shares: in-memory datasets
 * (TensorDataset: two contiguous tensors and, for a subset, the list of their
 * rows), subsets of any dataset, random splits, and the fetch of one item that
 * the loader calls for every kind (the kinds defined by callbacks, concatenations,
 * streams and transformed datasets are made in data/source.c).
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
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

ag_status ag_data_error(ag_status s, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    if (fmt) vsnprintf(msg, sizeof msg, fmt, ap);
    else msg[0] = 0;
    va_end(ap);
    return ag__fail(s, "%s", msg);
}

size_t ag__item_bytes(const ag_item_spec *s) {
    return (size_t)ag__numel(s->shape.ndim, s->shape.dim) * ag_dtype_size(s->dtype);
}

static ag_item_spec spec_of_rows(const ag_tensor *t) {
    ag_item_spec s = {.dtype = t->dtype, .shape = {.ndim = t->ndim - 1}};
    for (int d = 1; d < t->ndim; d++) s.shape.dim[d - 1] = t->shape[d];
    return s;
}

static ag_dataset *dataset_new(ag_tensor *x, ag_tensor *y, int64_t n) {
    ag_dataset *ds = ag__calloc(sizeof *ds);
    if (!ds) return NULL;
    atomic_init(&ds->refs, 1);
    ds->kind = AG__DS_TENSORS;
    ds->x = ag_retain(x);
    ds->y = ag_retain(y);
    ds->n = n;
    ds->xs = spec_of_rows(x);
    ds->ys = spec_of_rows(y);
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

ag_dataset *ag__dataset_hold(ag_dataset *ds) {
    if (ds) atomic_fetch_add(&ds->refs, 1);
    return ds;
}

void ag_dataset_free(ag_dataset *ds) {
    if (!ds || atomic_fetch_sub(&ds->refs, 1) != 1) return;
    ag_release(ds->x);
    ag_release(ds->y);
    ag__free(ds->index);
    ag_dataset_free(ds->base);
    for (int k = 0; k < ds->nparts; k++) ag_dataset_free(ds->parts[k]);
    ag__free(ds->parts);
    ag__free(ds->ends);
    ag_compose_free(ds->tf);
    if (ds->class_names)
        for (int64_t k = 0; k < ds->num_classes; k++) ag__free(ds->class_names[k]);
    ag__free(ds->class_names);
    if (ds->kind == AG__DS_CALLBACKS && ds->cb.free) ds->cb.free(ds->cb.ctx);
    if (ds->kind == AG__DS_ITERABLE && ds->it.free) ds->it.free(ds->it.ctx);
    ag__free(ds);
}

int64_t ag_dataset_len(const ag_dataset *ds) { return ds ? ds->n : 0; }

static int64_t row_of(const ag_dataset *ds, int64_t i) { return ds->index ? ds->index[i] : i; }

int64_t ag_dataset_index(const ag_dataset *ds, int64_t i) {
    if (!ds) return ag__fail(AG_ERR_ARG, "dataset_index: dataset is NULL"), -1;
    if (i < 0 || i >= ds->n)
        return ag__fail(AG_ERR_INDEX, "dataset_index: sample %lld is out of range for a dataset of %lld samples",
                        (long long)i, (long long)ds->n), -1;
    return ds->kind == AG__DS_TENSORS ? row_of(ds, i) : i;
}

ag_dataset *ag_subset(const ag_dataset *ds, const int64_t *indices, int64_t n) {
    if (!ds) return NULL;
    if (ds->kind == AG__DS_ITERABLE || ds->n < 0) return ag__fail_null(AG_ERR_ARG, "subset: an iterable dataset has no random access");
    if (n < 0 || (n > 0 && !indices)) return ag__fail_null(AG_ERR_ARG, "subset: %lld indices at %p", (long long)n, (const void *)indices);
    for (int64_t i = 0; i < n; i++)
        if (indices[i] < 0 || indices[i] >= ds->n)
            return ag__fail_null(AG_ERR_INDEX, "subset: index %lld (position %lld) is out of range for a dataset of %lld samples",
                                 (long long)indices[i], (long long)i, (long long)ds->n);
    ag_dataset *sub;
    if (ds->kind == AG__DS_TENSORS) {
        sub = dataset_new(ds->x, ds->y, n);
    } else {
        sub = ag__calloc(sizeof *sub);
        if (sub) {
            *sub = (ag_dataset){.kind = AG__DS_SUBSET, .n = n, .xs = ds->xs, .ys = ds->ys, .num_classes = ds->num_classes};
            atomic_init(&sub->refs, 1);
            sub->base = ag__dataset_hold((ag_dataset *)ds);
        }
    }
    if (sub) {
        sub->num_classes = ds->num_classes;
        sub->index = ag__alloc_n(n ? n : 1, sizeof(int64_t));
    }
    if (!sub || !sub->index) {
        ag_dataset_free(sub);
        return ag__fail_null(AG_ERR_NOMEM, "subset: out of memory");
    }
    for (int64_t i = 0; i < n; i++) sub->index[i] = ds->kind == AG__DS_TENSORS ? row_of(ds, indices[i]) : indices[i];
    return sub;
}

ag_status ag_dataset_spec(const ag_dataset *ds, ag_item_spec *x, ag_item_spec *y) {
    if (!ds) return ag__fail(AG_ERR_ARG, "dataset_spec: dataset is NULL");
    if (x) *x = ds->xs;
    if (y) *y = ds->ys;
    return AG_OK;
}

ag_status ag_dataset_set_num_classes(ag_dataset *ds, int64_t num_classes) {
    if (!ds || num_classes < 1) return ag__fail(AG_ERR_ARG, "dataset_set_num_classes: NULL dataset or %lld classes", (long long)num_classes);
    if (ds->ys.dtype != AG_I64 || ds->ys.shape.ndim != 0)
        return ag__fail(AG_ERR_DTYPE, "dataset_set_num_classes: the targets are %s of %d dims, class ids are int64 0-d",
                        ag_dtype_name(ds->ys.dtype), ds->ys.shape.ndim);
    ds->num_classes = num_classes;
    return AG_OK;
}

int64_t ag_dataset_num_classes(const ag_dataset *ds) { return ds ? ds->num_classes : 0; }

const char *ag_dataset_class_name(const ag_dataset *ds, int64_t id) {
    if (!ds) return NULL;
    while (ds->kind == AG__DS_SUBSET || ds->kind == AG__DS_TRANSFORM) ds = ds->base;
    if (!ds->class_names || id < 0 || id >= ds->num_classes) return NULL;
    return ds->class_names[id];
}

/* Names item i of ds into buf: the callbacks' name when there is one, else "sample i". */
static void item_name(const ag_dataset *ds, int64_t i, char *buf, size_t size) {
    for (;;) {
        if ((ds->kind == AG__DS_SUBSET) && i >= 0 && i < ds->n) {
            i = ds->index[i];
            ds = ds->base;
        } else if (ds->kind == AG__DS_TRANSFORM) {
            ds = ds->base;
        } else if (ds->kind == AG__DS_CONCAT && i >= 0 && i < ds->n) {
            int k = 0;
            while (i >= ds->ends[k]) k++;
            i -= k ? ds->ends[k - 1] : 0;
            ds = ds->parts[k];
        } else {
            break;
        }
    }
    buf[0] = 0;
    if (ds->kind == AG__DS_CALLBACKS && ds->cb.name) ds->cb.name(ds->cb.ctx, i, buf, size);
    if (ds->kind == AG__DS_ITERABLE && ds->it.name) ds->it.name(ds->it.ctx, i, buf, size);
    if (!buf[0]) snprintf(buf, size, "sample %lld", (long long)i);
}

ag_status ag_dataset_item_name(const ag_dataset *ds, int64_t i, char *buf, size_t size) {
    if (!ds || !buf || size == 0) return ag__fail(AG_ERR_ARG, "dataset_item_name: NULL argument");
    item_name(ds, i, buf, size);
    return AG_OK;
}

/* ---- one item -------------------------------------------------------------------------- */
void ag__convert(void *dst, ag_dtype to, const void *src, ag_dtype from, int64_t n) {
    for (int64_t k = 0; k < n; k++) {
        double v;
        switch (from) {
        case AG_F32: v = ((const float *)src)[k]; break;
        case AG_F64: v = ((const double *)src)[k]; break;
        case AG_I64: v = (double)((const int64_t *)src)[k]; break;
        default: v = ((const uint8_t *)src)[k]; break; /* AG_U8, AG_BOOL */
        }
        switch (to) {
        case AG_F32: ((float *)dst)[k] = (float)v; break;
        case AG_F64: ((double *)dst)[k] = v; break;
        case AG_I64: ((int64_t *)dst)[k] = from == AG_I64 ? ((const int64_t *)src)[k] : (int64_t)v; break;
        default: ((uint8_t *)dst)[k] = (uint8_t)v; break;
        }
    }
}

/* Checks that a callback's tensor t (what *x points at after the call) has the
 * item shape of spec, then copies it (converted) into d. */
static ag_status take_item(const char *op, const char *what, const ag_tensor *t, const ag_item_spec *spec, void *d) {
    char s1[AG_SHAPE_STR], s2[AG_SHAPE_STR];
    (void)op;
    if (!t) return ag__fail(AG_ERR_ARG, "the callback set %s to NULL", what);
    if (t->ndim != spec->shape.ndim || memcmp(t->shape, spec->shape.dim, (size_t)t->ndim * sizeof(int64_t)) != 0)
        return ag__fail(AG_ERR_SHAPE, "the callback's %s has shape %s, the dataset's items are %s", what, ag__tshape(s1, t),
                        ag__shape_str(s2, spec->shape.ndim, spec->shape.dim));
    if (t->dtype == AG_BOOL && spec->dtype != AG_BOOL)
        return ag__fail(AG_ERR_DTYPE, "the callback's %s is bool, the dataset's items are %s", what, ag_dtype_name(spec->dtype));
    if (ag_scope_begin()) return ag_last_status();
    ag_no_grad_begin();
    const ag_tensor *c = ag__contig(t) ? t : ag_contiguous((ag_tensor *)t);
    ag_no_grad_end();
    if (c) ag__convert(d, spec->dtype, ag__ptr(c), t->dtype, ag__numel(spec->shape.ndim, spec->shape.dim));
    ag_scope_end();
    return c ? AG_OK : ag_last_status();
}

/* Runs a get or next callback on fresh zeroed tensors and copies what it made into xd, yd. */
typedef struct call {
    const ag_dataset *ds; /* the CALLBACKS or ITERABLE dataset */
    int64_t i;
    uint64_t seed;
} call;

static int run_callback(const char *op, call c, void *xd, void *yd) {
    const ag_dataset *ds = c.ds;
    if (ag_scope_begin()) return -1;
    ag_tensor *x0 = ag__new_zeros(ds->xs.dtype, ds->xs.shape.ndim, ds->xs.shape.dim);
    ag_tensor *y0 = yd ? ag__new_zeros(ds->ys.dtype, ds->ys.shape.ndim, ds->ys.shape.dim) : NULL;
    int rc = -1;
    if (x0 && (y0 || !yd)) {
        ag_tensor *x = x0, *y = y0;
        ag_clear_error();
        if (ds->kind == AG__DS_CALLBACKS) {
            ag_status st = ds->cb.get(ds->cb.ctx, c.i, &x, yd ? &y : NULL, c.seed);
            rc = st ? -1 : 1;
            if (st && !ag_last_status()) ag__fail(st, "get returned %s without a message", ag_status_name(st));
        } else {
            rc = ds->it.next(ds->it.ctx, &x, yd ? &y : NULL);
            if (rc < 0 && !ag_last_status()) ag__fail(AG_ERR_ARG, "next returned %d without a message", rc);
            if (rc > 1) rc = 1;
        }
        if (rc == 1 && take_item(op, "x", x, &ds->xs, xd)) rc = -1;
        if (rc == 1 && yd && take_item(op, "y", y, &ds->ys, yd)) rc = -1;
    } else {
        ag__fail(AG_ERR_NOMEM, "%s: out of memory", op);
    }
    ag_scope_end();
    return rc;
}

/* A class id out of range fails naming it. */
static ag_status check_label(const ag_dataset *ds, const void *yd) {
    if (ds->num_classes <= 0 || !yd) return AG_OK;
    int64_t label = *(const int64_t *)yd;
    if (label < 0 || label >= ds->num_classes)
        return ag__fail(AG_ERR_VALUE, "label %lld is out of range for %lld classes", (long long)label, (long long)ds->num_classes);
    return AG_OK;
}

/* Prefixes the recorded message with the item's number and name. */
static ag_status name_failure(const char *op, const ag_dataset *ds, int64_t i) {
    char name[512], msg[1024];
    item_name(ds, i, name, sizeof name);
    snprintf(msg, sizeof msg, "%s", ag_last_error());
    ag_status st = ag_last_status() ? ag_last_status() : AG_ERR_ARG;
    char num[40];
    snprintf(num, sizeof num, "sample %lld", (long long)i);
    if (strcmp(name, num) == 0) return ag__fail(st, "%s: sample %lld: %s", op, (long long)i, msg);
    return ag__fail(st, "%s: sample %lld (%s): %s", op, (long long)i, name, msg);
}

/* Applies ds's transform to a raw item of base spec bs at raw into xd (float32, of
 * ds's shape).  raw may be xd when the transform keeps the size. */
static ag_status transform_item(const char *op, const ag_dataset *ds, const ag_item_spec *bs, const void *raw, void *xd,
                                uint64_t seed) {
    int64_t n = ag__numel(bs->shape.ndim, bs->shape.dim);
    const ag_shape *s = &bs->shape;
    int64_t C = s->ndim == 3 ? s->dim[0] : 1, H = s->dim[s->ndim - 2], W = s->dim[s->ndim - 1];
    const float *src = raw;
    float *conv = NULL;
    if (bs->dtype != AG_F32) { /* by value into float32: in xd when it has room, else a buffer */
        bool room = ag__item_bytes(&ds->xs) >= (size_t)n * sizeof(float);
        conv = room ? xd : ag__alloc_n(n ? n : 1, sizeof(float));
        if (!conv) return ag__fail(AG_ERR_NOMEM, "%s: out of memory", op);
        ag__convert(conv, AG_F32, raw, bs->dtype, n);
        src = conv;
    }
    ag_status st = ag__compose_run(ds->tf, src, xd, C, H, W, seed);
    if (conv != xd) ag__free(conv);
    return st ? ag__fail(AG_ERR_NOMEM, "%s: out of memory", op) : AG_OK;
}

static ag_status fetch(const char *op, const ag_dataset *ds, int64_t i, void *xd, void *yd, uint64_t seed) {
    switch (ds->kind) {
    case AG__DS_TENSORS: {
        int64_t r = row_of(ds, i);
        size_t xb = ag__item_bytes(&ds->xs), yb = ag__item_bytes(&ds->ys);
        if (xb) memcpy(xd, ag__ptr(ds->x) + (size_t)r * xb, xb);
        if (yd && yb) memcpy(yd, ag__ptr(ds->y) + (size_t)r * yb, yb);
        return AG_OK;
    }
    case AG__DS_SUBSET: return fetch(op, ds->base, ds->index[i], xd, yd, seed);
    case AG__DS_CONCAT: {
        int lo = 0, hi = ds->nparts - 1; /* the first part whose end is past i */
        while (lo < hi) {
            int mid = (lo + hi) / 2;
            if (ds->ends[mid] > i) hi = mid;
            else lo = mid + 1;
        }
        return fetch(op, ds->parts[lo], i - (lo ? ds->ends[lo - 1] : 0), xd, yd, seed);
    }
    case AG__DS_TRANSFORM: {
        const ag_item_spec *bs = &ds->base->xs;
        void *raw = xd; /* the base item straight into xd when it is float32 of the same shape */
        bool in_xd = bs->dtype == AG_F32 && ag__item_bytes(bs) == ag__item_bytes(&ds->xs);
        if (!in_xd && !(raw = ag__alloc_n(ag__item_bytes(bs) ? ag__item_bytes(bs) : 1, 1)))
            return ag__fail(AG_ERR_NOMEM, "%s: out of memory", op);
        ag_status st = fetch(op, ds->base, i, raw, yd, seed);
        if (!st) st = transform_item(op, ds, bs, raw, xd, seed);
        if (raw != xd) ag__free(raw);
        return st;
    }
    case AG__DS_CALLBACKS: return run_callback(op, (call){ds, i, seed}, xd, yd) == 1 ? AG_OK : ag_last_status();
    case AG__DS_ITERABLE: break;
    }
    return ag__fail(AG_ERR_ARG, "%s: an iterable dataset has no random access", op);
}

ag_status ag__dataset_fetch(const char *op, const ag_dataset *ds, int64_t i, void *xd, void *yd, uint64_t seed) {
    ag_status st = fetch(op, ds, i, xd, yd, seed);
    if (!st) st = check_label(ds, yd);
    return st ? name_failure(op, ds, i) : AG_OK;
}

const ag_dataset *ag__dataset_stream(const ag_dataset *ds) {
    if (ds->kind == AG__DS_ITERABLE) return ds;
    if (ds->kind == AG__DS_TRANSFORM) return ag__dataset_stream(ds->base);
    return NULL;
}

int ag__stream_next(const char *op, const ag_dataset *stream, int64_t position, void *xd, void *yd) {
    int rc = run_callback(op, (call){stream, position, 0}, xd, yd);
    if (rc == 1 && check_label(stream, yd)) rc = -1;
    if (rc < 0) name_failure(op, stream, position);
    return rc;
}

ag_status ag__stream_finish(const char *op, const ag_dataset *ds, int64_t position, const void *raw, void *xd, uint64_t seed) {
    if (ds->kind != AG__DS_TRANSFORM) {
        memcpy(xd, raw, ag__item_bytes(&ds->xs));
        return AG_OK;
    }
    (void)position;
    return transform_item(op, ds, &ds->base->xs, raw, xd, seed);
}

/* New tensors for one item of ds, owned by the current scope. */
ag_status ag_dataset_get(const ag_dataset *ds, int64_t i, ag_tensor **x, ag_tensor **y) {
    if (x) *x = NULL;
    if (y) *y = NULL;
    if (!ds || !x) return ag__fail(AG_ERR_ARG, "dataset_get: NULL dataset or x");
    if (ds->n < 0) return ag__fail(AG_ERR_ARG, "dataset_get: an iterable dataset has no random access");
    if (i < 0) i += ds->n;
    if (i < 0 || i >= ds->n)
        return ag__fail(AG_ERR_INDEX, "dataset_get: sample %lld is out of range for a dataset of %lld samples",
                        (long long)i, (long long)ds->n);
    ag_tensor *xt = ag__new_unowned(ds->xs.dtype, ds->xs.shape.ndim, ds->xs.shape.dim, false);
    ag_tensor *yt = y ? ag__new_unowned(ds->ys.dtype, ds->ys.shape.ndim, ds->ys.shape.dim, false) : NULL;
    ag_status st = !xt || (y && !yt) ? ag__fail(AG_ERR_NOMEM, "dataset_get: out of memory")
                                     : ag__dataset_fetch("dataset_get", ds, i, ag__ptr(xt), yt ? ag__ptr(yt) : NULL,
                                                         ag_item_seed(0, 0, i));
    if (st) {
        ag_release(xt);
        ag_release(yt);
        return st;
    }
    if (!(*x = ag__own(xt))) {
        ag_release(yt);
        return ag__fail(AG_ERR_NOMEM, "dataset_get: out of memory");
    }
    if (y && !(*y = ag__own(yt))) {
        if (ag_scope_depth() == 0) ag_release(*x);
        *x = NULL;
        return ag__fail(AG_ERR_NOMEM, "dataset_get: out of memory");
    }
    return AG_OK;
}

/* Undoes a first output when the second fails; returns the recorded status. */
static ag_status drop(ag_tensor **x) {
    if (ag_scope_depth() == 0) ag_release(*x); /* no scope owns it */
    *x = NULL;
    return ag_last_status();
}

/* Every item of ds stacked along a new dim 0, of spec s (x or y). */
static ag_tensor *stack_all(const ag_dataset *ds, bool want_y) {
    const ag_item_spec *s = want_y ? &ds->ys : &ds->xs, *o = want_y ? &ds->xs : &ds->ys;
    int64_t shape[AG_MAX_DIMS + 1] = {ds->n};
    memcpy(shape + 1, s->shape.dim, (size_t)s->shape.ndim * sizeof(int64_t));
    ag_tensor *out = ag__new(s->dtype, s->shape.ndim + 1, shape);
    void *other = ag__alloc_n(ag__item_bytes(o) ? ag__item_bytes(o) : 1, 1);
    if (!out || !other) {
        ag__free(other);
        if (out) ag__discard(out);
        return ag__fail_null(AG_ERR_NOMEM, "dataset_tensors: out of memory");
    }
    size_t b = ag__item_bytes(s);
    for (int64_t i = 0; i < ds->n; i++) {
        char *mine = ag__ptr(out) + (size_t)i * b;
        if (ag__dataset_fetch("dataset_tensors", ds, i, want_y ? other : mine, want_y ? mine : other, ag_item_seed(0, 0, i))) {
            ag__free(other);
            ag__discard(out);
            return NULL;
        }
    }
    ag__free(other);
    return out;
}

ag_status ag_dataset_tensors(const ag_dataset *ds, ag_tensor **x, ag_tensor **y) {
    if (x) *x = NULL;
    if (y) *y = NULL;
    if (!ds || !x) return ag__fail(AG_ERR_ARG, "dataset_tensors: NULL dataset or x");
    if (ds->n < 0) return ag__fail(AG_ERR_ARG, "dataset_tensors: an iterable dataset has no random access");
    if (ds->kind != AG__DS_TENSORS) {
        if (!(*x = stack_all(ds, false))) return ag_last_status();
        if (y && !(*y = stack_all(ds, true))) return drop(x);
        return AG_OK;
    }
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
    if (ds->n < 0) return ag__fail(AG_ERR_ARG, "random_split: an iterable dataset has no random access");
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

/*
 * data/source.c - the datasets that are not tensors: defined by C callbacks
 * (map-style and streaming), concatenations, and datasets whose items go
 * through an image transform.  Their items are fetched by data/dataset.c.
 */
#include <string.h>
#include "data/internal.h"

/* A valid item spec: a tensor dtype, 0 .. AG_MAX_DIMS sizes, none negative, not too many elements. */
static ag_status check_spec(const char *op, const char *what, const ag_item_spec *s) {
    if (s->dtype != AG_F32 && s->dtype != AG_F64 && s->dtype != AG_I64 && s->dtype != AG_U8)
        return ag__fail(AG_ERR_ARG, "%s: %s's dtype %d is not float32, float64, int64 or uint8", op, what, (int)s->dtype);
    if (s->shape.ndim < 0 || s->shape.ndim > AG_MAX_DIMS - 1)
        return ag__fail(AG_ERR_ARG, "%s: %s has %d dims (0 .. %d: the batch adds one)", op, what, s->shape.ndim, AG_MAX_DIMS - 1);
    int64_t n = 1;
    for (int d = 0; d < s->shape.ndim; d++)
        if (s->shape.dim[d] < 0 || ag__mul_overflow(n, s->shape.dim[d] ? s->shape.dim[d] : 1, &n) || n > ((int64_t)1 << 40))
            return ag__fail(AG_ERR_ARG, "%s: %s has a negative or too large size %lld in dim %d", op, what,
                            (long long)s->shape.dim[d], d);
    return AG_OK;
}

static ag_status check_classes(const char *op, int64_t num_classes, const ag_item_spec *y) {
    if (num_classes < 0) return ag__fail(AG_ERR_ARG, "%s: num_classes %lld < 0", op, (long long)num_classes);
    if (num_classes > 0 && (y->dtype != AG_I64 || y->shape.ndim != 0))
        return ag__fail(AG_ERR_ARG, "%s: num_classes needs int64 0-d targets, y is %s of %d dims", op,
                        ag_dtype_name(y->dtype), y->shape.ndim);
    return AG_OK;
}

static ag_dataset *new_dataset(ag__dataset_kind kind) {
    ag_dataset *ds = ag__calloc(sizeof *ds);
    if (!ds) return NULL;
    ds->kind = kind;
    atomic_init(&ds->refs, 1);
    return ds;
}

ag_dataset *ag_callback_dataset(const ag_dataset_callbacks *cb) {
    static const char *op = "callback_dataset";
    if (!cb) return ag__fail_null(AG_ERR_ARG, "%s: callbacks are NULL", op);
    ag_status st = !cb->get ? ag__fail(AG_ERR_ARG, "%s: get is NULL", op)
                   : cb->len < 0 ? ag__fail(AG_ERR_ARG, "%s: len %lld < 0", op, (long long)cb->len)
                                 : AG_OK;
    if (!st) st = check_spec(op, "x", &cb->x);
    if (!st) st = check_spec(op, "y", &cb->y);
    if (!st) st = check_classes(op, cb->num_classes, &cb->y);
    ag_dataset *ds = st ? NULL : new_dataset(AG__DS_CALLBACKS);
    if (!ds) {
        if (!st) ag__fail(AG_ERR_NOMEM, "%s: out of memory", op);
        if (cb->free) cb->free(cb->ctx);
        return NULL;
    }
    ds->cb = *cb;
    ds->n = cb->len;
    ds->xs = cb->x;
    ds->ys = cb->y;
    ds->num_classes = cb->num_classes;
    return ds;
}

ag_dataset *ag_iterable_dataset(const ag_iterable_callbacks *cb) {
    static const char *op = "iterable_dataset";
    if (!cb) return ag__fail_null(AG_ERR_ARG, "%s: callbacks are NULL", op);
    ag_status st = !cb->next ? ag__fail(AG_ERR_ARG, "%s: next is NULL", op) : AG_OK;
    if (!st) st = check_spec(op, "x", &cb->x);
    if (!st) st = check_spec(op, "y", &cb->y);
    if (!st) st = check_classes(op, cb->num_classes, &cb->y);
    ag_dataset *ds = st ? NULL : new_dataset(AG__DS_ITERABLE);
    if (!ds) {
        if (!st) ag__fail(AG_ERR_NOMEM, "%s: out of memory", op);
        if (cb->free) cb->free(cb->ctx);
        return NULL;
    }
    ds->it = *cb;
    ds->n = -1;
    ds->xs = cb->x;
    ds->ys = cb->y;
    ds->num_classes = cb->num_classes;
    return ds;
}

static bool same_shape(const ag_shape *a, const ag_shape *b) {
    return a->ndim == b->ndim && memcmp(a->dim, b->dim, (size_t)a->ndim * sizeof(int64_t)) == 0;
}

ag_dataset *ag_concat_dataset(ag_dataset *const *parts, int n) {
    static const char *op = "concat_dataset";
    if (!parts || n < 1) return ag__fail_null(AG_ERR_ARG, "%s: no parts", op);
    char s1[AG_SHAPE_STR], s2[AG_SHAPE_STR];
    int64_t total = 0;
    for (int k = 0; k < n; k++) {
        const ag_dataset *p = parts[k];
        if (!p) return ag__fail_null(AG_ERR_ARG, "%s: part %d is NULL", op, k);
        if (p->n < 0) return ag__fail_null(AG_ERR_ARG, "%s: part %d is an iterable dataset", op, k);
        for (int w = 0; w < 2; w++) {
            const ag_item_spec *a = w ? &p->ys : &p->xs, *b = w ? &parts[0]->ys : &parts[0]->xs;
            if (!same_shape(&a->shape, &b->shape))
                return ag__fail_null(AG_ERR_SHAPE, "%s: part %d's %s items are %s, part 0's are %s", op, k, w ? "y" : "x",
                                     ag__shape_str(s1, a->shape.ndim, a->shape.dim), ag__shape_str(s2, b->shape.ndim, b->shape.dim));
            if (a->dtype != b->dtype)
                return ag__fail_null(AG_ERR_DTYPE, "%s: part %d's %s items are %s, part 0's are %s", op, k, w ? "y" : "x",
                                     ag_dtype_name(a->dtype), ag_dtype_name(b->dtype));
        }
        if (ag__add_overflow(total, p->n, &total)) return ag__fail_null(AG_ERR_ARG, "%s: too many samples", op);
    }
    ag_dataset *ds = new_dataset(AG__DS_CONCAT);
    if (ds) {
        ds->parts = ag__alloc_n(n, sizeof *ds->parts);
        ds->ends = ag__alloc_n(n, sizeof *ds->ends);
    }
    if (!ds || !ds->parts || !ds->ends) {
        if (ds) ag__free(ds->parts), ag__free(ds->ends), ag__free(ds);
        return ag__fail_null(AG_ERR_NOMEM, "%s: out of memory", op);
    }
    ds->n = 0;
    ds->num_classes = parts[0]->num_classes;
    for (int k = 0; k < n; k++) {
        ds->parts[k] = ag__dataset_hold(parts[k]);
        ds->ends[k] = ds->n += parts[k]->n;
        if (parts[k]->num_classes != ds->num_classes) ds->num_classes = 0; /* each part checks its own */
    }
    ds->nparts = n;
    ds->xs = parts[0]->xs;
    ds->ys = parts[0]->ys;
    return ds;
}

ag_dataset *ag_transformed_dataset(ag_dataset *ds, ag_compose *c) {
    static const char *op = "transformed_dataset";
    if (!ds || !c) return ag__fail_null(AG_ERR_ARG, "%s: NULL dataset or transform", op);
    char s[AG_SHAPE_STR];
    const ag_shape *sh = &ds->xs.shape;
    if (sh->ndim != 2 && sh->ndim != 3)
        return ag__fail_null(AG_ERR_SHAPE, "%s: image transforms need items [C, H, W] or [H, W], these are %s", op,
                             ag__shape_str(s, sh->ndim, sh->dim));
    if (ds->xs.dtype == AG_BOOL) return ag__fail_null(AG_ERR_DTYPE, "%s: bool items", op);
    int64_t C = sh->ndim == 3 ? sh->dim[0] : 1, oh, ow;
    if (ag__compose_check(op, c, C) || ag__compose_out_size(op, c, C, sh->dim[sh->ndim - 2], sh->dim[sh->ndim - 1], &oh, &ow))
        return NULL;
    ag_dataset *t = new_dataset(AG__DS_TRANSFORM);
    if (!t) return ag__fail_null(AG_ERR_NOMEM, "%s: out of memory", op);
    t->base = ag__dataset_hold(ds);
    t->tf = ag__compose_hold(c);
    t->n = ds->n;
    t->xs = ds->xs;
    t->xs.dtype = AG_F32;
    t->xs.shape.dim[t->xs.shape.ndim - 2] = oh; /* Resize and the crops change the size */
    t->xs.shape.dim[t->xs.shape.ndim - 1] = ow;
    t->ys = ds->ys;
    t->num_classes = ds->num_classes;
    return t;
}

/*
 * loader.c - batches over a dataset (DataLoader): a sample order per epoch,
 * shuffled by the loader's own generator when asked, cut into batches whose
 * rows are gathered into new tensors.
 */
#include <string.h>
#include "data_internal.h"

struct ag_loader {
    ag_tensor *x, *y;   /* the dataset's tensors (references) */
    int64_t n;          /* samples */
    int64_t *rows;      /* rows of x and y of samples 0 .. n-1 (the dataset's order) */
    int64_t *order;     /* this epoch's rows */
    int64_t batch, pos, epoch;
    bool shuffle, drop_last, active;
    ag__gen gen;
};

ag_loader *ag_loader_new(const ag_dataset *ds, const ag_loader_options *opt) {
    if (!ds) return NULL;
    ag_loader_options o = opt ? *opt : (ag_loader_options){0};
    if (o.batch_size < 0) return ag__fail_null(AG_ERR_ARG, "loader_new: batch_size %lld < 0", (long long)o.batch_size);
    ag_loader *l = ag__calloc(sizeof *l);
    size_t bytes = (size_t)(ds->n ? ds->n : 1) * sizeof(int64_t);
    if (l) {
        l->rows = ag__alloc(bytes);
        l->order = l->rows ? ag__alloc(bytes) : NULL;
    }
    if (!l || !l->order) {
        if (l) ag__free(l->rows);
        ag__free(l);
        return ag__fail_null(AG_ERR_NOMEM, "loader_new: out of memory");
    }
    for (int64_t i = 0; i < ds->n; i++) l->rows[i] = ds->index ? ds->index[i] : i;
    l->x = ag_retain(ds->x);
    l->y = ag_retain(ds->y);
    l->n = ds->n;
    l->batch = o.batch_size ? o.batch_size : 1;
    l->shuffle = o.shuffle;
    l->drop_last = o.drop_last;
    ag__gen_seed(&l->gen, o.seed);
    return l;
}

void ag_loader_free(ag_loader *l) {
    if (!l) return;
    ag_release(l->x);
    ag_release(l->y);
    ag__free(l->rows);
    ag__free(l->order);
    ag__free(l);
}

int64_t ag_loader_num_batches(const ag_loader *l) {
    if (!l) return 0;
    return l->drop_last ? l->n / l->batch : l->n / l->batch + (l->n % l->batch != 0);
}

int64_t ag_loader_epoch(const ag_loader *l) { return l ? l->epoch : 0; }

void ag_loader_reset(ag_loader *l) {
    if (l) l->active = false;
}

/* A fresh order: the dataset's, shuffled by the k-th permutation of the loader's stream. */
static void start_epoch(ag_loader *l) {
    memcpy(l->order, l->rows, (size_t)l->n * sizeof(int64_t));
    if (l->shuffle) ag__gen_shuffle(&l->gen, l->order, l->n);
    l->pos = 0;
    l->epoch++;
    l->active = true;
}

int ag_loader_next(ag_loader *l, ag_tensor **x, ag_tensor **y) {
    if (x) *x = NULL;
    if (y) *y = NULL;
    if (!l || !x) return ag__fail(AG_ERR_ARG, "loader_next: NULL loader or x"), -1;
    if (!l->active) start_epoch(l);
    int64_t left = l->n - l->pos;
    if (left == 0 || (l->drop_last && left < l->batch)) {
        l->active = false;
        return 0;
    }
    int64_t b = left < l->batch ? left : l->batch;
    const int64_t *rows = l->order + l->pos;
    if (!(*x = ag__gather_rows("loader_next", l->x, rows, b))) return -1;
    if (y && !(*y = ag__gather_rows("loader_next", l->y, rows, b))) {
        if (ag_scope_depth() == 0) ag_release(*x); /* no scope owns it */
        *x = NULL;
        return -1;
    }
    l->pos += b;
    return 1;
}

/*
 * data/loader.c - batches over a dataset (DataLoader): a sample order per epoch,
 * shuffled by the loader's own generator when asked, cut into batches whose
 * rows are gathered into new tensors.  With num_replicas > 1 each epoch hands
 * out one rank's share of the order, as DistributedSampler: the order padded
 * cyclically (or cut) to a multiple of the replicas, every num_replicas-th
 * sample from position rank.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "data/internal.h"
#include "io/state.h"

struct ag_loader {
    ag_tensor *x, *y;   /* the dataset's tensors (references) */
    int64_t n;          /* samples */
    int64_t *rows;      /* rows of x and y of samples 0 .. n-1 (the dataset's order) */
    int64_t *order;     /* this epoch's rows */
    int64_t *mine;      /* this rank's share of order: order[(rank + k·replicas) mod n], k < share */
    int64_t replicas, rank, share;
    int64_t batch, pos, epoch; /* pos: in mine */
    bool shuffle, drop_last, active;
    ag__gen gen;
};

ag_loader *ag_loader_new(const ag_dataset *ds, const ag_loader_options *opt) {
    if (!ds) return NULL;
    ag_loader_options o = opt ? *opt : (ag_loader_options){0};
    if (o.batch_size < 0) return ag__fail_null(AG_ERR_ARG, "loader_new: batch_size %lld < 0", (long long)o.batch_size);
    int64_t replicas = o.num_replicas > 1 ? o.num_replicas : 1;
    if (o.num_replicas < 0 || o.rank < 0 || o.rank >= replicas)
        return ag__fail_null(AG_ERR_ARG, "loader_new: rank %lld of num_replicas %lld", (long long)o.rank,
                             (long long)o.num_replicas);
    int64_t share = o.shard_drop_last ? ds->n / replicas : ds->n / replicas + (ds->n % replicas != 0);
    ag_loader *l = ag__calloc(sizeof *l);
    if (l) { /* ds->n may be huge: x [2^62, 0] holds no bytes */
        l->rows = ag__alloc_n(ds->n ? ds->n : 1, sizeof(int64_t));
        l->order = l->rows ? ag__alloc_n(ds->n ? ds->n : 1, sizeof(int64_t)) : NULL;
        l->mine = l->order ? ag__alloc_n(share ? share : 1, sizeof(int64_t)) : NULL;
    }
    if (!l || !l->mine) {
        if (l) ag__free(l->rows), ag__free(l->order);
        ag__free(l);
        return ag__fail_null(AG_ERR_NOMEM, "loader_new: out of memory");
    }
    for (int64_t i = 0; i < ds->n; i++) l->rows[i] = ds->index ? ds->index[i] : i;
    l->x = ag_retain(ds->x);
    l->y = ag_retain(ds->y);
    l->n = ds->n;
    l->replicas = replicas, l->rank = o.rank, l->share = share;
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
    ag__free(l->mine);
    ag__free(l);
}

int64_t ag_loader_num_batches(const ag_loader *l) {
    if (!l) return 0;
    return l->drop_last ? l->share / l->batch : l->share / l->batch + (l->share % l->batch != 0);
}

int64_t ag_loader_epoch(const ag_loader *l) { return l ? l->epoch : 0; }

void ag_loader_reset(ag_loader *l) {
    if (l) l->active = false;
}

/* This rank's share of the order: positions rank, rank + replicas, ... of the
 * order repeated (padding) or cut (share·replicas <= n). */
static void take_share(ag_loader *l) {
    for (int64_t k = 0; k < l->share; k++) l->mine[k] = l->order[(l->rank + k * l->replicas) % l->n];
}

/* A fresh order: the dataset's, shuffled by the k-th permutation of the loader's stream. */
static void start_epoch(ag_loader *l) {
    memcpy(l->order, l->rows, (size_t)l->n * sizeof(int64_t));
    if (l->shuffle) ag__gen_shuffle(&l->gen, l->order, l->n);
    take_share(l);
    l->pos = 0;
    l->epoch++;
    l->active = true;
}

int ag_loader_next(ag_loader *l, ag_tensor **x, ag_tensor **y) {
    if (x) *x = NULL;
    if (y) *y = NULL;
    if (!l || !x) return ag__fail(AG_ERR_ARG, "loader_next: NULL loader or x"), -1;
    if (!l->active) start_epoch(l);
    int64_t left = l->share - l->pos;
    if (left == 0 || (l->drop_last && left < l->batch)) {
        l->active = false;
        return 0;
    }
    int64_t b = left < l->batch ? left : l->batch;
    const int64_t *rows = l->mine + l->pos;
    if (!(*x = ag__gather_rows("loader_next", l->x, rows, b))) return -1;
    if (y && !(*y = ag__gather_rows("loader_next", l->y, rows, b))) {
        if (ag_scope_depth() == 0) ag_release(*x); /* no scope owns it */
        *x = NULL;
        return -1;
    }
    l->pos += b;
    return 1;
}

/* ---- saving and resuming ------------------------------------------------------------- */
ag_status ag_loader_state_dict(const ag_loader *l, ag_state_dict *sd) {
    if (!l || !sd) return ag__fail(AG_ERR_ARG, "loader_state_dict: NULL argument");
    ag_status st = ag_scope_begin();
    if (st) return st;
    ag_tensor *gen = ag__new(AG_I64, 1, (int64_t[]){4}), *order = ag__new(AG_I64, 1, (int64_t[]){l->n});
    if (gen && order) {
        for (int i = 0; i < 4; i++) ((int64_t *)ag__ptr(gen))[i] = (int64_t)l->gen.s[i]; /* the bits */
        memcpy(ag__ptr(order), l->order, (size_t)l->n * sizeof(int64_t));
        st = ag_state_dict_set(sd, "loader.generator", gen);
        if (!st) st = ag_state_dict_set(sd, "loader.order", order);
        if (!st) st = ag_state_dict_set_scalar(sd, "loader.epoch", (double)l->epoch);
        if (!st) st = ag_state_dict_set_scalar(sd, "loader.position", (double)l->pos);
        if (!st) st = ag_state_dict_set_scalar(sd, "loader.active", l->active);
    } else {
        st = ag__fail(AG_ERR_NOMEM, "loader_state_dict: out of memory");
    }
    ag_scope_end();
    return st;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

#define LOAD_OP "loader_load_state_dict"

/* Checks everything sd holds for l, then (apply) puts it in place; changes nothing on failure. */
static ag_status loader_load(ag_loader *l, const ag_state_dict *sd, bool apply) {
    if (!l || !sd) return ag__fail(AG_ERR_ARG, LOAD_OP ": NULL argument");
    const ag_tensor *gen = ag_state_dict_get(sd, "loader.generator"), *order = ag_state_dict_get(sd, "loader.order");
    if (!gen || !order) return AG_ERR_ARG;
    char s[AG_SHAPE_STR];
    if (gen->dtype != AG_I64 || gen->ndim != 1 || gen->shape[0] != 4 || !ag__contig(gen))
        return ag__fail(AG_ERR_VALUE, "loader_load_state_dict: loader.generator must be int64 [4], got %s %s",
                        ag_dtype_name(gen->dtype), ag__tshape(s, gen));
    if (order->dtype != AG_I64 || order->ndim != 1 || order->shape[0] != l->n || !ag__contig(order))
        return ag__fail(AG_ERR_VALUE, "loader_load_state_dict: loader.order must be int64 [%lld] for this loader, got %s %s",
                        (long long)l->n, ag_dtype_name(order->dtype), ag__tshape(s, order));
    double epoch, pos, active;
    ag_status st = ag__sd_number(LOAD_OP, sd, "loader.epoch", (ag__range)AG__COUNT, &epoch);
    if (!st) st = ag__sd_number(LOAD_OP, sd, "loader.position", (ag__range){0, (double)l->share, true}, &pos);
    if (!st) st = ag__sd_number(LOAD_OP, sd, "loader.active", (ag__range)AG__FLAG, &active);
    if (st) return st;
    const uint64_t *w = (const uint64_t *)ag__ptr(gen);
    if (!(w[0] | w[1] | w[2] | w[3]))
        return ag__fail(AG_ERR_VALUE, "loader_load_state_dict: loader.generator is all zeros");
    /* The saved order must be a permutation of this loader's samples. */
    int64_t *a = ag__alloc_n(l->n ? l->n : 1, 2 * sizeof(int64_t));
    if (!a) return ag__fail(AG_ERR_NOMEM, "loader_load_state_dict: out of memory");
    int64_t *b = a + (l->n ? l->n : 1);
    memcpy(a, ag__ptr(order), (size_t)l->n * sizeof(int64_t));
    memcpy(b, l->rows, (size_t)l->n * sizeof(int64_t));
    qsort(a, (size_t)l->n, sizeof(int64_t), cmp_i64);
    qsort(b, (size_t)l->n, sizeof(int64_t), cmp_i64);
    bool same = memcmp(a, b, (size_t)l->n * sizeof(int64_t)) == 0;
    ag__free(a);
    if (!same)
        return ag__fail(AG_ERR_VALUE, "loader_load_state_dict: loader.order is not a permutation of this loader's %lld samples",
                        (long long)l->n);
    if (!apply) return AG_OK;
    for (int i = 0; i < 4; i++) l->gen.s[i] = w[i];
    memcpy(l->order, ag__ptr(order), (size_t)l->n * sizeof(int64_t));
    take_share(l);
    l->epoch = (int64_t)epoch;
    l->pos = (int64_t)pos;
    l->active = active == 1;
    return AG_OK;
}

ag_status ag_loader_load_state_dict(ag_loader *l, const ag_state_dict *sd) { return loader_load(l, sd, true); }
ag_status ag__loader_check_state_dict(ag_loader *l, const ag_state_dict *sd) { return loader_load(l, sd, false); }

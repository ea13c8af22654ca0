/*
 * dist/ddp.c - the data-parallel wrapper (DistributedDataParallel).
 *
 * The trainable parameters move into one flat buffer (nn/flatten.c), so their
 * gradients are views of one flat gradient buffer G.  G is cut into buckets:
 * contiguous slices holding whole parameters, taken from the end (the last
 * layers' parameters, whose gradients backward finishes first), the first
 * bucket at most 1 MiB and the others at most bucket_cap_bytes, as PyTorch's
 * reducer.  A post-accumulate-grad hook on each parameter counts it ready; when
 * a bucket's last parameter is ready its all-reduce starts (overlap) while
 * backward goes on to the earlier layers.  Buckets start in bucket order on
 * every rank (a ready bucket waits for the ones before it), so the ranks call
 * their collectives in the same order.  When the last bucket has started, the
 * hook waits for them all and divides by the number of ranks: backward returns
 * with the mean gradient.  With overlap off the same buckets are summed the same
 * way after the last hook, so both give the same bits.
 *
 * The first buckets follow parameter order backwards, a guess at the order
 * backward produces the gradients.  The first synchronised backward records the
 * order they really arrive in, and the next synchronised forward rebuilds the
 * buckets in that order (rank 0's order, broadcast, so that every rank's buckets
 * match), as PyTorch's reducer rebuilds its buckets after the first iteration.
 * A rebuilt bucket may hold parameters that are not neighbours in the flat
 * buffer: it then reduces a staging copy of their gradients and copies the mean
 * back.  The sums are element by element, so the bucketing changes no bit.
 *
 * static_graph: the first synchronised forward walks the graph (as with
 * find_unused_parameters) and the parameters it does not reach are taken to be
 * unused in every later iteration, without walking again.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dist/internal.h"
#include "agrad/autograd.h"
#include "agrad/state.h"

typedef struct bucket {
    int *idx, np;          /* its trainable parameters, in the order they were put in */
    int first, last;       /* the lowest and highest of them */
    int64_t offset, count; /* its slice of the flat gradient buffer (contiguous), or its elements */
    void *stage;           /* NULL when its parameters are neighbours in the flat buffer; else the
                              staging buffer [count] its all-reduce runs on */
    int pending;           /* its parameters not ready yet in this backward */
    void *req;             /* the backend's request while its all-reduce runs */
} bucket;

typedef struct param_ref {
    ag_ddp *d;
    int index, bucket;
    int64_t offset;     /* of its gradient in the flat gradient buffer, in elements */
    bool ready;
    ag_hook_handle hook;
} param_ref;

struct ag_ddp {
    ag_module *model;
    ag_comm *comm;
    ag_ddp_options o;
    int n;              /* trainable parameters */
    ag_tensor **params; /* [n], borrowed from the model */
    param_ref *refs;    /* [n] */
    ag_tensor *flat_params, *flat_grads; /* held */
    int nb;
    bucket *buckets;    /* [nb] */
    int *bucket_idx;    /* [n]: the buckets' parameter lists, one after the other */
    int *order;         /* [n]: the order the first synchronised backward's gradients arrived in */
    int order_n;        /* how many of them have arrived */
    bool rebuilt;       /* the buckets follow that order */
    bool graph_known;   /* static_graph: used[] holds the first synchronised forward's reach */
    int next_launch;    /* buckets started so far in this backward */
    int ready;          /* parameters ready so far in this backward */
    bool unused_pending; /* find_unused_parameters: the forward's unused parameters are to be marked */
    bool *used;         /* [n]: whether the last forward reached each parameter */
    bool no_sync;
    double wait_seconds;
};

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

ag_ddp_options ag_ddp_defaults(void) {
    return (ag_ddp_options){.bucket_cap_bytes = 25 << 20, .find_unused_parameters = false,
                            .broadcast_buffers = true, .overlap = true, .static_graph = false};
}

/* Ready for the next backward: every bucket waits for all its parameters. */
static void reset_round(ag_ddp *d) {
    for (int b = 0; b < d->nb; b++) d->buckets[b].pending = d->buckets[b].np;
    for (int i = 0; i < d->n; i++) d->refs[i].ready = false;
    d->next_launch = 0;
    d->ready = 0;
    d->unused_pending = false;
}

/* What bucket b's all-reduce runs on: its slice of the flat gradient buffer, or
 * its staging buffer. */
static void *bucket_ptr(const ag_ddp *d, const bucket *b) {
    return b->stage ? b->stage : ag__ptr(d->flat_grads) + b->offset * (int64_t)ag__esize(d->flat_grads->dtype);
}

/* Copies bucket b's parameters' gradients into its staging buffer (to_stage) or
 * back from it; nothing for a bucket without one. */
static void stage_copy(ag_ddp *d, const bucket *b, bool to_stage) {
    if (!b->stage) return;
    size_t esize = ag__esize(d->flat_grads->dtype);
    char *grads = ag__ptr(d->flat_grads), *stage = b->stage;
    for (int k = 0; k < b->np; k++) {
        int i = b->idx[k];
        size_t bytes = (size_t)ag_numel(d->params[i]) * esize;
        char *g = grads + d->refs[i].offset * (int64_t)esize;
        if (to_stage) memcpy(stage, g, bytes);
        else memcpy(g, stage, bytes);
        stage += bytes;
    }
}

/* Divides bucket b's summed gradients by the number of ranks: the mean. */
static void average(ag_ddp *d, const bucket *b) {
    double w = d->comm->size;
    char *base = bucket_ptr(d, b);
    if (d->flat_grads->dtype == AG_F32)
        for (float *g = (float *)base, *e = g + b->count; g < e; g++) *g = (float)(*g / w);
    else
        for (double *g = (double *)base, *e = g + b->count; g < e; g++) *g /= w;
}

/* Starts bucket b's all-reduce (its gradients staged first when it has a stage). */
static ag_status launch(ag_ddp *d, bucket *b) {
    stage_copy(d, b, true);
    return ag__comm_sum_start(d->comm, bucket_ptr(d, b), b->count, d->flat_grads->dtype, &b->req);
}

/* Every bucket has started (overlap) or is ready (no overlap): finish them all in
 * order, average, and get ready for the next backward. */
static ag_status finish_round(ag_ddp *d) {
    ag_status st = AG_OK;
    d->wait_seconds = 0;
    for (int i = 0; i < d->nb; i++) {
        bucket *b = &d->buckets[i];
        double t0 = now();
        if (!d->o.overlap && !st) st = launch(d, b);
        ag_status s2 = ag__comm_finish(d->comm, b->req);
        d->wait_seconds += now() - t0;
        b->req = NULL;
        if (!st) st = s2;
        if (!st && d->comm->size > 1) average(d, b);
        if (!st) stage_copy(d, b, false);
    }
    ag__bump_version(d->flat_grads);
    reset_round(d);
    return st;
}

/* Starts, in bucket order, the buckets whose parameters are all ready; polls the
 * ones in flight; finishes the round once the last has started. */
static ag_status advance(ag_ddp *d) {
    ag_status st = AG_OK;
    while (!st && d->next_launch < d->nb && d->buckets[d->next_launch].pending == 0) {
        bucket *b = &d->buckets[d->next_launch++];
        if (d->o.overlap) st = launch(d, b);
    }
    for (int i = 0; !st && i < d->next_launch; i++) {
        bucket *b = &d->buckets[i];
        bool done = false;
        if (b->req && !(st = ag__comm_test(d->comm, b->req, &done)) && done) b->req = NULL;
    }
    if (!st && d->next_launch == d->nb) st = finish_round(d);
    return st;
}

static ag_status mark_ready(ag_ddp *d, int i) {
    param_ref *r = &d->refs[i];
    if (r->ready && d->graph_known && !d->used[i])
        return ag__fail(AG_ERR_GRAPH, "ddp: static_graph: parameter %d got a gradient, but the first iteration "
                                      "did not use it: the graph changed (static_graph needs the same graph "
                                      "every iteration)", i);
    if (r->ready)
        return ag__fail(AG_ERR_GRAPH, "ddp: parameter %d got a gradient twice in one backward (a second backward "
                                      "through the same forward: run ddp_forward again, or use no_sync)", i);
    r->ready = true;
    d->ready++;
    if (!d->rebuilt && d->order_n < d->n) d->order[d->order_n++] = i;
    d->buckets[r->bucket].pending--;
    return AG_OK;
}

/* The post-accumulate-grad hook of each trainable parameter. */
static ag_status grad_ready(ag_tensor *p, void *user) {
    (void)p;
    param_ref *r = user;
    ag_ddp *d = r->d;
    if (d->no_sync) return AG_OK;
    ag_status st = AG_OK;
    if (d->unused_pending) { /* as PyTorch, the forward's unused parameters count at the first hook */
        d->unused_pending = false;
        for (int i = 0; !st && i < d->n; i++)
            if (!d->used[i]) st = mark_ready(d, i);
    }
    if (!st) st = mark_ready(d, r->index);
    if (!st) st = advance(d);
    return st;
}

/* Cuts the parameters, taken in the given order (a permutation of 0..n-1), into
 * buckets: at least one parameter each, then while they fit in the cap, the first
 * bucket's cap at most 1 MiB (PyTorch's compute_bucket_assignment_by_size).  A
 * bucket whose parameters are neighbours in the flat buffer reduces its slice in
 * place; another gets a staging buffer.  Replaces the buckets only on success. */
static ag_status make_buckets(ag_ddp *d, const int *order) {
    size_t esize = ag__esize(d->flat_grads->dtype);
    bucket *bs = ag__calloc(sizeof(bucket) * (size_t)d->n);
    int *idx = ag__calloc(sizeof(int) * (size_t)d->n), nb = 0;
    ag_status st = bs && idx ? AG_OK : ag__fail(AG_ERR_NOMEM, "ddp: out of memory for the buckets");
    int64_t first_cap = d->o.bucket_cap_bytes < (1 << 20) ? d->o.bucket_cap_bytes : (1 << 20);
    for (int k = 0; !st && k < d->n;) {
        int64_t cap = nb == 0 ? first_cap : d->o.bucket_cap_bytes, bytes = 0;
        bucket *b = &bs[nb++];
        *b = (bucket){.idx = idx + k, .first = order[k], .last = order[k]};
        do { /* at least one parameter, then while they fit */
            int i = order[k++];
            b->idx[b->np++] = i;
            b->count += ag_numel(d->params[i]);
            bytes += ag_numel(d->params[i]) * (int64_t)esize;
            if (i < b->first) b->first = i;
            if (i > b->last) b->last = i;
        } while (k < d->n && bytes + ag_numel(d->params[order[k]]) * (int64_t)esize <= cap);
        b->offset = d->refs[b->first].offset;
        if (b->last - b->first + 1 != b->np && !(b->stage = ag__calloc((size_t)b->count * esize)))
            st = ag__fail(AG_ERR_NOMEM, "ddp: out of memory for a staging buffer of %lld elements", (long long)b->count);
    }
    if (st) {
        for (int b = 0; bs && b < nb; b++) ag__free(bs[b].stage);
        ag__free(bs);
        ag__free(idx);
        return st;
    }
    for (int b = 0; b < d->nb; b++) ag__free(d->buckets[b].stage);
    ag__free(d->buckets);
    ag__free(d->bucket_idx);
    d->buckets = bs, d->bucket_idx = idx, d->nb = nb;
    for (int b = 0; b < nb; b++)
        for (int k = 0; k < bs[b].np; k++) d->refs[bs[b].idx[k]].bucket = b;
    return AG_OK;
}

/* Rebuilds the buckets in the order the first synchronised backward's gradients
 * arrived in on rank 0 (broadcast, so every rank's buckets match). */
static ag_status rebuild_buckets(ag_ddp *d) {
    if (ag_scope_begin()) return ag_last_status();
    ag_tensor *order = ag_empty(AG_SHAPE(d->n), AG_I64);
    ag_status st = order ? AG_OK : ag_last_status();
    if (!st) {
        int64_t *o = (int64_t *)ag__ptr(order);
        for (int i = 0; i < d->n; i++) o[i] = d->order[i];
        st = ag_comm_broadcast_(d->comm, order, 0);
        for (int i = 0; !st && i < d->n; i++) d->order[i] = (int)o[i];
    }
    ag_scope_end();
    if (!st) st = make_buckets(d, d->order);
    if (!st) d->rebuilt = true;
    reset_round(d);
    return st;
}

/* Broadcasts rank 0's buffers (with frozen parameters when params is true). */
static ag_status broadcast_state(ag_ddp *d, bool frozen_params) {
    ag_state_dict *sd = ag_state_dict_new();
    if (!sd) return ag__fail(AG_ERR_NOMEM, "ddp: out of memory");
    ag_status st = ag_module_state_dict(d->model, sd);
    int np = ag_module_num_parameter_tensors(d->model);
    for (int i = 0; !st && i < ag_state_dict_size(sd); i++) {
        ag_tensor *t = ag_state_dict_tensor(sd, i);
        bool param = false;
        for (int k = 0; k < np && !param; k++) param = ag_module_parameter(d->model, k, NULL, 0) == t;
        if (param ? frozen_params && !t->requires_grad : true) st = ag_comm_broadcast_(d->comm, t, 0);
    }
    ag_state_dict_free(sd);
    return st;
}

ag_ddp *ag_ddp_new(ag_module *model, ag_comm *c, const ag_ddp_options *o) {
    if (!model || !c) return ag__fail_null(AG_ERR_ARG, "ddp_new: %s is NULL", model ? "comm" : "model");
    ag_ddp_options opt = o ? *o : ag_ddp_defaults();
    if (opt.bucket_cap_bytes < 1)
        return ag__fail_null(AG_ERR_ARG, "ddp_new: bucket_cap_bytes must be positive, got %lld",
                             (long long)opt.bucket_cap_bytes);
    ag_ddp *d = ag__calloc(sizeof *d);
    if (!d) return ag__fail_null(AG_ERR_NOMEM, "ddp_new: out of memory");
    d->model = model, d->comm = c, d->o = opt;
    int np = ag_module_num_parameter_tensors(model);
    d->params = ag__calloc(sizeof(ag_tensor *) * (size_t)(np > 0 ? np : 1));
    d->refs = ag__calloc(sizeof(param_ref) * (size_t)(np > 0 ? np : 1));
    d->used = ag__calloc(sizeof(bool) * (size_t)(np > 0 ? np : 1));
    d->order = ag__calloc(sizeof(int) * (size_t)(np > 0 ? np : 1));
    ag_status st = d->params && d->refs && d->used && d->order ? AG_OK : ag__fail(AG_ERR_NOMEM, "ddp_new: out of memory");
    for (int i = 0; !st && i < np; i++) {
        ag_tensor *p = ag_module_parameter(model, i, NULL, 0);
        if (p->requires_grad) d->params[d->n++] = p;
    }
    if (!st && d->n == 0) st = ag__fail(AG_ERR_ARG, "ddp_new: the model has no trainable parameter");
    if (!st && !(st = ag_scope_begin())) {
        st = ag_flatten_parameters(d->params, d->n, &d->flat_params, &d->flat_grads);
        ag__retain(d->flat_params);
        ag__retain(d->flat_grads);
        ag_scope_end();
        if (st) {
            char why[400];
            snprintf(why, sizeof why, "%s", ag_last_error());
            ag__fail(st, "ddp_new: the model's parameters cannot share one flat buffer: %s", why);
        }
    }
    int64_t offset = 0;
    for (int i = 0; !st && i < d->n; i++) {
        d->refs[i] = (param_ref){d, i, 0, offset, false, {0, 0}};
        offset += ag_numel(d->params[i]);
        d->order[i] = d->n - 1 - i; /* the first guess: backward runs from the last parameter back */
    }
    if (!st) st = make_buckets(d, d->order);
    if (!st) st = ag_comm_broadcast_(c, d->flat_params, 0);
    if (!st) st = broadcast_state(d, true);
    for (int i = 0; !st && i < d->n; i++)
        st = ag_register_post_accumulate_grad_hook(d->params[i], grad_ready, &d->refs[i], &d->refs[i].hook);
    if (st) {
        ag_ddp_free(d);
        return NULL;
    }
    reset_round(d);
    return d;
}

/* Marks used[i] for the parameters the graph of out reaches. */
static ag_status find_used(ag_ddp *d, ag_tensor *out) {
    memset(d->used, 0, sizeof(bool) * (size_t)d->n);
    size_t cap = 64, n = 0, seen_n = 0;
    ag_tensor **stack = malloc(sizeof *stack * cap), **seen = malloc(sizeof *seen * cap);
    ag_status st = stack && seen ? AG_OK : ag__fail(AG_ERR_NOMEM, "ddp_forward: out of memory");
    if (!st) {
        stack[n++] = out;
        seen[seen_n++] = out;
        out->visited = true;
    }
    while (!st && n) {
        ag_tensor *t = stack[--n];
        for (int k = 0; k < t->nin && !st; k++) {
            ag_tensor *in = t->in[k];
            if (!in || in->visited) continue;
            if (seen_n == cap) {
                cap *= 2;
                ag_tensor **s2 = realloc(stack, sizeof *stack * cap), **v2 = s2 ? realloc(seen, sizeof *seen * cap) : NULL;
                if (s2) stack = s2;
                if (v2) seen = v2;
                if (!s2 || !v2) {
                    st = ag__fail(AG_ERR_NOMEM, "ddp_forward: out of memory");
                    break;
                }
            }
            in->visited = true;
            seen[seen_n++] = in;
            stack[n++] = in;
        }
    }
    for (int i = 0; i < d->n; i++) d->used[i] = d->params[i]->visited;
    for (size_t i = 0; seen && i < seen_n; i++) seen[i]->visited = false;
    free(stack);
    free(seen);
    return st;
}

ag_tensor *ag_ddp_forward(ag_ddp *d, ag_tensor *x) {
    AG_CHECK_HANDLES(NULL, "ddp_forward", x);
    if (!d) return ag__fail_null(AG_ERR_ARG, "ddp_forward: ddp is NULL");
    bool prepare = ag_is_grad_enabled() && !d->no_sync;
    if (prepare && d->ready > 0) {
        int missing = -1;
        for (int i = 0; i < d->n && missing < 0; i++)
            if (!d->refs[i].ready) missing = i;
        char name[256] = "?";
        int k = 0;
        for (int i = 0; i < ag_module_num_parameter_tensors(d->model); i++) {
            ag_tensor *p = ag_module_parameter(d->model, i, name, sizeof name);
            if (p == d->params[missing]) break;
            k++;
        }
        return ag__fail_null(AG_ERR_GRAPH, "ddp_forward: the previous backward did not finish reducing gradients: "
                                           "parameter \"%s\" (trainable parameter %d) got no gradient; set "
                                           "find_unused_parameters if the model leaves parameters out",
                             name, missing);
    }
    if (prepare && !d->rebuilt && d->order_n == d->n && rebuild_buckets(d)) return NULL;
    if (d->o.broadcast_buffers && d->comm->size > 1 && broadcast_state(d, false)) return NULL;
    ag_tensor *y = ag_module_forward(d->model, x);
    if (!y) return NULL;
    if (prepare && d->o.static_graph && d->graph_known) {
        d->unused_pending = true; /* the first iteration's unused parameters, without a walk */
    } else if (prepare && (d->o.find_unused_parameters || d->o.static_graph)) {
        if (find_used(d, y)) return NULL;
        d->unused_pending = true;
        d->graph_known = d->o.static_graph;
    }
    return y;
}

void ag_ddp_no_sync_begin(ag_ddp *d) {
    if (d) d->no_sync = true;
}
void ag_ddp_no_sync_end(ag_ddp *d) {
    if (d) d->no_sync = false;
}
ag_module *ag_ddp_module(const ag_ddp *d) { return d ? d->model : NULL; }
int ag_ddp_num_buckets(const ag_ddp *d) { return d ? d->nb : 0; }
double ag_ddp_last_wait_seconds(const ag_ddp *d) { return d ? d->wait_seconds : 0; }

int ag_ddp_bucket_indices(const ag_ddp *d, int b, int *out, int cap) {
    if (!d || (!out && cap > 0) || cap < 0) {
        ag__fail(AG_ERR_ARG, "ddp_bucket_indices: NULL argument or negative cap %d", cap);
        return -1;
    }
    if (b < 0 || b >= d->nb) {
        ag__fail(AG_ERR_INDEX, "ddp_bucket_indices: bucket %d of %d", b, d->nb);
        return -1;
    }
    for (int k = 0; k < d->buckets[b].np && k < cap; k++) out[k] = d->buckets[b].idx[k];
    return d->buckets[b].np;
}

ag_status ag_ddp_bucket_params(const ag_ddp *d, int b, int *first, int *last) {
    if (!d || !first || !last) return ag__fail(AG_ERR_ARG, "ddp_bucket_params: NULL argument");
    if (b < 0 || b >= d->nb) return ag__fail(AG_ERR_INDEX, "ddp_bucket_params: bucket %d of %d", b, d->nb);
    *first = d->buckets[b].first;
    *last = d->buckets[b].last;
    return AG_OK;
}

void ag_ddp_free(ag_ddp *d) {
    if (!d) return;
    for (int i = 0; d->refs && i < d->n; i++) ag_hook_remove(d->refs[i].hook);
    for (int b = 0; d->buckets && b < d->nb; b++) {
        ag__comm_finish(d->comm, d->buckets[b].req);
        ag__free(d->buckets[b].stage);
    }
    ag__free(d->bucket_idx);
    ag__free(d->order);
    ag__release(d->flat_params);
    ag__release(d->flat_grads);
    ag__free(d->buckets);
    ag__free(d->used);
    ag__free(d->refs);
    ag__free(d->params);
    ag__free(d);
}

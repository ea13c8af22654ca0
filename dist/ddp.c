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
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dist/internal.h"
#include "agrad/autograd.h"
#include "agrad/state.h"

typedef struct bucket {
    int first, last;       /* trainable parameters [first, last] */
    int64_t offset, count; /* its slice of the flat gradient buffer */
    int pending;           /* its parameters not ready yet in this backward */
    void *req;             /* the backend's request while its all-reduce runs */
} bucket;

typedef struct param_ref {
    ag_ddp *d;
    int index, bucket;
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
                            .broadcast_buffers = true, .overlap = true};
}

/* Ready for the next backward: every bucket waits for all its parameters. */
static void reset_round(ag_ddp *d) {
    for (int b = 0; b < d->nb; b++) d->buckets[b].pending = d->buckets[b].last - d->buckets[b].first + 1;
    for (int i = 0; i < d->n; i++) d->refs[i].ready = false;
    d->next_launch = 0;
    d->ready = 0;
    d->unused_pending = false;
}

/* Divides bucket b's summed gradients by the number of ranks: the mean. */
static void average(ag_ddp *d, const bucket *b) {
    double w = d->comm->size;
    char *base = ag__ptr(d->flat_grads);
    if (d->flat_grads->dtype == AG_F32)
        for (float *g = (float *)base + b->offset, *e = g + b->count; g < e; g++) *g = (float)(*g / w);
    else
        for (double *g = (double *)base + b->offset, *e = g + b->count; g < e; g++) *g /= w;
}

static void *bucket_ptr(const ag_ddp *d, const bucket *b) {
    return ag__ptr(d->flat_grads) + b->offset * (int64_t)ag__esize(d->flat_grads->dtype);
}

/* Every bucket has started (overlap) or is ready (no overlap): finish them all in
 * order, average, and get ready for the next backward. */
static ag_status finish_round(ag_ddp *d) {
    ag_status st = AG_OK;
    d->wait_seconds = 0;
    for (int i = 0; i < d->nb; i++) {
        bucket *b = &d->buckets[i];
        double t0 = now();
        if (!d->o.overlap && !st) st = ag__comm_sum_start(d->comm, bucket_ptr(d, b), b->count, d->flat_grads->dtype, &b->req);
        ag_status s2 = ag__comm_finish(d->comm, b->req);
        d->wait_seconds += now() - t0;
        b->req = NULL;
        if (!st) st = s2;
        if (!st && d->comm->size > 1) average(d, b);
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
        if (d->o.overlap) st = ag__comm_sum_start(d->comm, bucket_ptr(d, b), b->count, d->flat_grads->dtype, &b->req);
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
    if (r->ready)
        return ag__fail(AG_ERR_GRAPH, "ddp: parameter %d got a gradient twice in one backward (a second backward "
                                      "through the same forward: run ddp_forward again, or use no_sync)", i);
    r->ready = true;
    d->ready++;
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

/* Cuts the flat gradient buffer into buckets, from the last parameter back. */
static ag_status make_buckets(ag_ddp *d) {
    d->buckets = ag__calloc(sizeof(bucket) * (size_t)d->n);
    if (!d->buckets) return ag__fail(AG_ERR_NOMEM, "ddp_new: out of memory");
    size_t esize = ag__esize(d->flat_grads->dtype);
    int64_t first_cap = d->o.bucket_cap_bytes < (1 << 20) ? d->o.bucket_cap_bytes : (1 << 20);
    int64_t end = ag_numel(d->flat_grads);
    int last = d->n - 1;
    while (last >= 0) {
        int64_t cap = d->nb == 0 ? first_cap : d->o.bucket_cap_bytes, bytes = 0, off = end;
        int first = last + 1;
        do { /* at least one parameter, then while they fit */
            first--;
            off -= ag_numel(d->params[first]);
            bytes += ag_numel(d->params[first]) * (int64_t)esize;
        } while (first > 0 && bytes + ag_numel(d->params[first - 1]) * (int64_t)esize <= cap);
        d->buckets[d->nb++] = (bucket){first, last, off, end - off, 0, NULL};
        for (int i = first; i <= last; i++) d->refs[i].bucket = d->nb - 1;
        end = off;
        last = first - 1;
    }
    return AG_OK;
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
    ag_status st = d->params && d->refs && d->used ? AG_OK : ag__fail(AG_ERR_NOMEM, "ddp_new: out of memory");
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
    for (int i = 0; !st && i < d->n; i++) d->refs[i] = (param_ref){d, i, 0, false, {0, 0}};
    if (!st) st = make_buckets(d);
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
    if (d->o.broadcast_buffers && d->comm->size > 1 && broadcast_state(d, false)) return NULL;
    ag_tensor *y = ag_module_forward(d->model, x);
    if (!y) return NULL;
    if (prepare && d->o.find_unused_parameters) {
        if (find_used(d, y)) return NULL;
        d->unused_pending = true;
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
    for (int b = 0; d->buckets && b < d->nb; b++) ag__comm_finish(d->comm, d->buckets[b].req);
    ag__release(d->flat_params);
    ag__release(d->flat_grads);
    ag__free(d->buckets);
    ag__free(d->used);
    ag__free(d->refs);
    ag__free(d->params);
    ag__free(d);
}

/*
 * data/loader.c - batches over a dataset (DataLoader): a sampler gives each
 * epoch's order, which is cut into batches (BatchSampler); a batch is its items
 * fetched into one tensor per field (default_collate) or given to a collate
 * callback.  With num_workers > 0, worker threads prepare the next
 * num_workers * prefetch_factor batches while the caller trains; batch k always
 * holds the same items, whose random streams come from their position in the
 * epoch (ag_item_seed), so the batches do not depend on the number of workers.
 * Batches are handed out in order; a failed one stops the epoch with its error.
 * Workers run agrad's ops on one thread each (PyTorch's workers do the same), and
 * while the caller waits for batches, the training thread's own parallel work
 * is held to the CPUs the busy workers leave (pace_caller).
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "data/internal.h"
#include "core/parallel.h"
#include "io/state.h"

#define MSG 1024

/* One batch being prepared or ready. */
typedef struct slot {
    int64_t batch;  /* its number in the epoch, -1 when free */
    int state;      /* 0 free, 1 being prepared, 2 ready */
    int rc;         /* 1 a batch, 0 the stream ended before it, -1 failure */
    ag_tensor *x, *y; /* unowned */
    int64_t count;    /* samples in it */
    ag_status st;
    char msg[MSG];
} slot;

struct ag_loader {
    ag_dataset *ds;      /* a reference */
    const ag_dataset *stream; /* the stream under ds, or NULL */
    ag_sampler *sampler; /* owned; NULL for a stream */
    int64_t n;           /* samples per epoch (-1 for a stream) */
    int64_t *order;      /* this epoch's samples */
    int64_t batch, pos, epoch;
    int64_t start;       /* pos when the batches of this epoch were numbered (0, or where a resume put it) */
    bool drop_last, active, want_y;
    uint64_t seed;
    ag__gen gen;
    ag_collate_fn collate;
    void *collate_ctx;
    /* a failure that stopped the epoch, repeated until the next one */
    ag_status fail_st;
    char fail_msg[MSG];
    /* workers */
    int workers;
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t work, done;
    slot *slots;
    int nslots;
    int64_t next_job, jobs, next_out; /* batch numbers: to prepare next, to prepare in all, to hand out next */
    int busy;                         /* jobs being prepared */
    bool quit;
    /* the caller's thread count while the data is the bottleneck (pace_caller) */
    int cpus;           /* the CPUs this process may use */
    bool data_bound;    /* the caller waited for a batch, and the workers have not got ahead since */
    int user_threads;   /* the caller's count that the loader lowered, 0 when it has not */
    int set_threads;    /* the count it set instead */
    pthread_t set_on;   /* on this thread */
    /* the stream: read batch by batch in order */
    pthread_mutex_t stream_mu;
    pthread_cond_t stream_cv;
    int64_t stream_turn, stream_read; /* the batch whose items are read next; items read so far */
    bool stream_over;
};

/* Batches of this epoch with numbers from the current start (a stream: unknown, INT64_MAX). */
static int64_t epoch_batches(const ag_loader *l) {
    if (l->stream) return INT64_MAX;
    int64_t left = l->n - l->start;
    return l->drop_last ? left / l->batch : left / l->batch + (left % l->batch != 0);
}

/* ---- preparing one batch (on a worker or on the caller's thread) ------------------------ */
static ag_tensor *new_batch(const ag_item_spec *s, int64_t b) {
    int64_t shape[AG_MAX_DIMS] = {b};
    memcpy(shape + 1, s->shape.dim, (size_t)s->shape.ndim * sizeof(int64_t));
    return ag__new_unowned(s->dtype, s->shape.ndim + 1, shape, false);
}

/* Items of a stream for batch k, read in turn: into raw x rows and y rows of b items; returns how many. */
static int64_t read_stream(ag_loader *l, int64_t k, char *raw, char *yd, int64_t *first, bool *failed) {
    const ag_dataset *st = l->stream;
    size_t xb = ag__item_bytes(&st->xs), yb = ag__item_bytes(&st->ys);
    int64_t got = 0;
    pthread_mutex_lock(&l->stream_mu);
    while (l->stream_turn != k && !l->quit) pthread_cond_wait(&l->stream_cv, &l->stream_mu);
    *first = l->stream_read;
    *failed = false;
    if (!l->quit)
        while (!l->stream_over && got < l->batch) {
            int rc = ag__stream_next("loader_next", st, l->stream_read, raw + (size_t)got * xb, yd ? yd + (size_t)got * yb : NULL);
            if (rc <= 0) {
                l->stream_over = true;
                *failed = rc < 0;
                break;
            }
            l->stream_read++;
            got++;
        }
    l->stream_turn = k + 1;
    pthread_cond_broadcast(&l->stream_cv);
    pthread_mutex_unlock(&l->stream_mu);
    return got;
}

/* Batch k of this epoch into *x, *y (unowned) and its number of samples into
 * *count; 1, 0 when there is none (a stream ended), -1 with the error recorded
 * on this thread. */
static int prepare(ag_loader *l, int64_t k, ag_tensor **x, ag_tensor **y, int64_t *count) {
    *x = *y = NULL;
    *count = 0;
    const ag_dataset *ds = l->ds;
    int64_t from = l->start + k * l->batch, b = l->batch;
    if (!l->stream && l->n - from < b) b = l->n - from;
    size_t xb = ag__item_bytes(&ds->xs), yb = ag__item_bytes(&ds->ys);
    ag_tensor *bx = new_batch(&ds->xs, b), *by = l->want_y ? new_batch(&ds->ys, b) : NULL;
    if (!bx || (l->want_y && !by)) {
        ag_release(bx);
        ag_release(by);
        return ag__fail(AG_ERR_NOMEM, "loader_next: out of memory for batch %lld", (long long)k), -1;
    }
    char *xd = ag__ptr(bx), *yd = by ? ag__ptr(by) : NULL;
    ag_status st = AG_OK;
    if (l->stream) {
        size_t rb = ag__item_bytes(&l->stream->xs);
        char *raw = l->stream == ds ? xd : ag__alloc_n(b ? b : 1, rb ? rb : 1);
        if (!raw) st = ag__fail(AG_ERR_NOMEM, "loader_next: out of memory");
        int64_t first = 0, got = 0;
        bool failed = false;
        if (!st) got = read_stream(l, k, raw, yd, &first, &failed);
        if (failed) st = ag_last_status();
        for (int64_t j = 0; !st && j < got && l->stream != ds; j++)
            st = ag__stream_finish("loader_next", ds, first + j, raw + (size_t)j * rb, xd + (size_t)j * xb,
                                   ag_item_seed(l->seed, l->epoch, first + j));
        if (raw && raw != xd) ag__free(raw);
        if (!st && (got == 0 || (got < l->batch && l->drop_last))) {
            ag_release(bx);
            ag_release(by);
            return 0;
        }
        if (!st && got < b) { /* the last, shorter batch: its rows copied */
            ag_tensor *sx = new_batch(&ds->xs, got), *sy = by ? new_batch(&ds->ys, got) : NULL;
            if (!sx || (by && !sy)) st = ag__fail(AG_ERR_NOMEM, "loader_next: out of memory");
            else {
                memcpy(ag__ptr(sx), xd, (size_t)got * xb);
                if (sy) memcpy(ag__ptr(sy), yd, (size_t)got * yb);
            }
            ag_release(bx);
            ag_release(by);
            bx = sx;
            by = sy;
        }
    } else if (!l->collate) {
        for (int64_t j = 0; !st && j < b; j++)
            st = ag__dataset_fetch("loader_next", ds, l->order[from + j], xd + (size_t)j * xb, yd ? yd + (size_t)j * yb : NULL,
                                   ag_item_seed(l->seed, l->epoch, from + j));
    } else { /* the items one by one, then the collate function */
        ag_tensor **items = ag__alloc_n(b ? 2 * b : 1, sizeof(ag_tensor *));
        if (!items) st = ag__fail(AG_ERR_NOMEM, "loader_next: out of memory");
        for (int64_t j = 0; !st && j < b; j++) {
            items[j] = ag__new_unowned(ds->xs.dtype, ds->xs.shape.ndim, ds->xs.shape.dim, false);
            items[b + j] = l->want_y ? ag__new_unowned(ds->ys.dtype, ds->ys.shape.ndim, ds->ys.shape.dim, false) : NULL;
            if (!items[j] || (l->want_y && !items[b + j])) st = ag__fail(AG_ERR_NOMEM, "loader_next: out of memory");
            else st = ag__dataset_fetch("loader_next", ds, l->order[from + j], ag__ptr(items[j]),
                                        l->want_y ? ag__ptr(items[b + j]) : NULL, ag_item_seed(l->seed, l->epoch, from + j));
        }
        ag_release(bx);
        ag_release(by);
        bx = by = NULL;
        if (!st && !(st = ag_scope_begin())) {
            ag_tensor *cx = NULL, *cy = NULL;
            ag_clear_error();
            st = l->collate(l->collate_ctx, b, items, l->want_y ? items + b : NULL, &cx, l->want_y ? &cy : NULL);
            if (st && !ag_last_status()) ag__fail(st, "loader_next: collate returned %s without a message", ag_status_name(st));
            if (!st && (!cx || (l->want_y && !cy)))
                st = ag__fail(AG_ERR_ARG, "loader_next: collate of batch %lld gave no %s", (long long)k, cx ? "y" : "x");
            if (!st) {
                bx = ag_retain(cx);
                by = ag_retain(cy);
            }
            ag_scope_end();
        }
        if (items)
            for (int64_t j = 0; j < 2 * b; j++)
                if (j < b || l->want_y) ag_release(items[j]);
        ag__free(items);
    }
    if (st) {
        ag_release(bx);
        ag_release(by);
        return -1;
    }
    *x = bx;
    *y = by;
    *count = l->stream ? bx->shape[0] : b; /* a collate function's batch need not have a dim 0 */
    return 1;
}

/* ---- workers ------------------------------------------------------------------------------ */
static void *worker(void *arg) {
    ag_loader *l = arg;
    /* Items run their ops here one at a time: the workers themselves are the
     * parallelism, and teams of their own would only multiply the threads. */
    ag_set_num_threads(1);
    pthread_mutex_lock(&l->mu);
    for (;;) {
        while (!l->quit && !(l->next_job < l->jobs && l->next_job < l->next_out + l->nslots))
            pthread_cond_wait(&l->work, &l->mu);
        if (l->quit) break;
        int64_t k = l->next_job++;
        slot *s = &l->slots[k % l->nslots];
        s->batch = k;
        s->state = 1;
        l->busy++;
        pthread_mutex_unlock(&l->mu);
        ag_tensor *x, *y;
        int64_t count;
        int rc = prepare(l, k, &x, &y, &count);
        pthread_mutex_lock(&l->mu);
        s->rc = rc;
        s->count = count;
        s->x = x;
        s->y = y;
        s->st = rc < 0 ? ag_last_status() : AG_OK;
        snprintf(s->msg, MSG, "%s", rc < 0 ? ag_last_error() : "");
        s->state = 2;
        if (rc <= 0 && k + 1 < l->jobs) l->jobs = k + 1; /* nothing after an end or a failure */
        l->busy--;
        pthread_cond_broadcast(&l->done);
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

/* Stops handing out jobs, waits for those being prepared, drops every prepared batch. */
static void drain(ag_loader *l) {
    if (!l->workers) return;
    pthread_mutex_lock(&l->mu);
    l->jobs = l->next_job;
    pthread_mutex_lock(&l->stream_mu);
    l->stream_over = true; /* a worker waiting for its turn reads nothing */
    pthread_cond_broadcast(&l->stream_cv);
    pthread_mutex_unlock(&l->stream_mu);
    while (l->busy) pthread_cond_wait(&l->done, &l->mu);
    for (int i = 0; i < l->nslots; i++) {
        ag_release(l->slots[i].x);
        ag_release(l->slots[i].y);
        l->slots[i] = (slot){.batch = -1};
    }
    pthread_mutex_unlock(&l->mu);
}

/* Numbers the batches from pos on (a new epoch or a resume) and lets the workers start. */
static void launch(ag_loader *l) {
    l->start = l->pos;
    if (l->workers) pthread_mutex_lock(&l->mu);
    l->next_job = l->next_out = 0;
    l->jobs = epoch_batches(l);
    l->stream_turn = 0;
    l->stream_over = false;
    if (l->workers) {
        pthread_cond_broadcast(&l->work);
        pthread_mutex_unlock(&l->mu);
    }
}

static void stop_workers(ag_loader *l) {
    pthread_mutex_lock(&l->mu);
    l->quit = true;
    pthread_cond_broadcast(&l->work);
    pthread_mutex_unlock(&l->mu);
    pthread_mutex_lock(&l->stream_mu);
    pthread_cond_broadcast(&l->stream_cv);
    pthread_mutex_unlock(&l->stream_mu);
}

static ag_status start_workers(ag_loader *l, int prefetch) {
    l->nslots = l->workers * prefetch;
    l->slots = ag__alloc_n(l->nslots, sizeof(slot));
    l->threads = l->slots ? ag__alloc_n(l->workers, sizeof(pthread_t)) : NULL;
    if (!l->threads) return ag__fail(AG_ERR_NOMEM, "loader_new: out of memory");
    for (int i = 0; i < l->nslots; i++) l->slots[i] = (slot){.batch = -1};
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->work, NULL);
    pthread_cond_init(&l->done, NULL);
    for (int i = 0; i < l->workers; i++)
        if (pthread_create(&l->threads[i], NULL, worker, l) != 0) {
            int started = i;
            stop_workers(l);
            for (int j = 0; j < started; j++) pthread_join(l->threads[j], NULL);
            l->workers = 0;
            return ag__fail(AG_ERR_NOMEM, "loader_new: cannot start worker thread %d", i);
        }
    return AG_OK;
}

/* Whether the calling thread's count (now) is still the one pace_caller lowered it to: not
 * another thread, and not a count the caller set since. */
static bool count_is_paced(const ag_loader *l, int now) {
    return l->user_threads && pthread_equal(l->set_on, pthread_self()) && now == l->set_threads;
}

/* The caller's thread count for the step that follows a batch.  Once the caller has
 * had to wait for a batch (waited), the data is the bottleneck: until the workers
 * get ahead (one of them idle at a hand-off, the places ahead all prepared), the
 * steps run on the CPUs that the `busy` workers leave (cpus - busy, at least one,
 * at most the caller's own count).  The caller's OpenMP team would otherwise take
 * a core from a worker, and spin at barriers while a worker holds its partner's
 * core.  When the workers are ahead, the training is the bottleneck: the caller's
 * own count.  It is put back at the end of the epoch, on a failure, a reset and
 * ag_loader_free (when called on the same thread); a count the caller set in
 * between becomes its own. */
static void pace_caller(ag_loader *l, bool waited, bool ahead, int busy) {
    if (waited) l->data_bound = true;
    else if (ahead) l->data_bound = false;
    int now = ag_get_num_threads();
    int user = count_is_paced(l, now) ? l->user_threads : now;
    int want = user;
    if (l->data_bound && l->cpus - busy < want) want = l->cpus - busy > 1 ? l->cpus - busy : 1;
    if (want != now) ag_set_num_threads(want);
    l->user_threads = want != user ? user : 0;
    l->set_threads = want;
    l->set_on = pthread_self();
}

/* Gives the caller back the thread count pace_caller lowered. */
static void restore_caller(ag_loader *l) {
    if (count_is_paced(l, ag_get_num_threads())) ag_set_num_threads(l->user_threads);
    l->user_threads = 0;
}

/* ---- the loader ------------------------------------------------------------------------- */
ag_loader *ag_loader_new(const ag_dataset *ds, const ag_loader_options *opt) {
    ag_loader_options o = opt ? *opt : (ag_loader_options){0};
    if (!ds) {
        ag_sampler_free(o.sampler);
        return NULL;
    }
    const char *bad = o.batch_size < 0 ? "batch_size" : o.num_workers < 0 || o.num_workers > 256 ? "num_workers"
                      : o.prefetch_factor < 0 || o.prefetch_factor > 1024 ? "prefetch_factor" : NULL;
    if (!bad && ds->n < 0 && o.sampler) bad = "sampler (an iterable dataset takes none)";
    if (!bad && ds->n < 0 && o.shuffle) bad = "shuffle (an iterable dataset cannot be shuffled)";
    if (!bad && o.num_replicas > 1 && (ds->n < 0 || o.sampler))
        bad = "num_replicas (sharding is the loader's own distributed sampler: not with a sampler or a stream)";
    if (bad) {
        ag_sampler_free(o.sampler);
        return ag__fail_null(AG_ERR_ARG, "loader_new: bad %s (batch_size %lld, num_workers %d, prefetch_factor %d)", bad,
                             (long long)o.batch_size, o.num_workers, o.prefetch_factor);
    }
    if (o.num_replicas < 0 || o.rank < 0 || o.rank >= (o.num_replicas > 1 ? o.num_replicas : 1)) {
        ag_sampler_free(o.sampler);
        return ag__fail_null(AG_ERR_ARG, "loader_new: rank %lld of num_replicas %lld", (long long)o.rank,
                             (long long)o.num_replicas);
    }
    int64_t range = o.sampler ? ag__sampler_range(o.sampler) : 0;
    if (o.sampler && range > ds->n) {
        ag_sampler_free(o.sampler);
        return ag__fail_null(AG_ERR_INDEX, "loader_new: the sampler draws indices up to %lld, the dataset has %lld samples",
                             (long long)range - 1, (long long)ds->n);
    }
    ag_loader *l = ag__calloc(sizeof *l);
    if (!l) {
        ag_sampler_free(o.sampler);
        return ag__fail_null(AG_ERR_NOMEM, "loader_new: out of memory");
    }
    l->sampler = o.sampler;
    l->stream = ag__dataset_stream(ds);
    if (!l->stream && !l->sampler)
        l->sampler = o.num_replicas > 1 ? ag_distributed_sampler(ds->n, o.num_replicas, o.rank, o.shuffle, o.shard_drop_last)
                     : o.shuffle         ? ag_random_sampler(ds->n, false, 0)
                                         : ag_sequential_sampler(ds->n);
    l->n = l->stream ? -1 : l->sampler ? ag_sampler_len(l->sampler) : -1;
    /* ds->n may be huge: x [2^62, 0] holds no bytes */
    if ((!l->stream && (!l->sampler || l->n < 0)) || (l->n >= 0 && !(l->order = ag__alloc_n(l->n ? l->n : 1, sizeof(int64_t))))) {
        ag_sampler_free(l->sampler);
        ag__free(l);
        return ag__fail_null(AG_ERR_NOMEM, "loader_new: out of memory");
    }
    l->ds = ag__dataset_hold((ag_dataset *)ds);
    l->batch = o.batch_size ? o.batch_size : 1;
    l->drop_last = o.drop_last;
    l->seed = o.seed;
    l->collate = o.collate;
    l->collate_ctx = o.collate_ctx;
    l->want_y = true;
    ag__gen_seed(&l->gen, o.seed);
    pthread_mutex_init(&l->stream_mu, NULL);
    pthread_cond_init(&l->stream_cv, NULL);
    l->workers = o.num_workers;
    l->cpus = ag__cpus_available();
    if (l->workers && start_workers(l, o.prefetch_factor ? o.prefetch_factor : 2)) {
        ag_loader_free(l);
        return NULL;
    }
    return l;
}

void ag_loader_free(ag_loader *l) {
    if (!l) return;
    restore_caller(l);
    if (l->workers) {
        drain(l);
        stop_workers(l);
        for (int i = 0; i < l->workers; i++) pthread_join(l->threads[i], NULL);
        pthread_mutex_destroy(&l->mu);
        pthread_cond_destroy(&l->work);
        pthread_cond_destroy(&l->done);
    }
    ag__free(l->threads);
    ag__free(l->slots);
    pthread_mutex_destroy(&l->stream_mu);
    pthread_cond_destroy(&l->stream_cv);
    ag_dataset_free(l->ds);
    ag_sampler_free(l->sampler);
    ag__free(l->order);
    ag__free(l);
}

int64_t ag_loader_num_batches(const ag_loader *l) {
    if (!l) return 0;
    if (l->stream) return -1;
    return l->drop_last ? l->n / l->batch : l->n / l->batch + (l->n % l->batch != 0);
}

int64_t ag_loader_epoch(const ag_loader *l) { return l ? l->epoch : 0; }

void ag_loader_reset(ag_loader *l) {
    if (!l) return;
    drain(l);
    restore_caller(l);
    l->active = false;
    l->fail_st = AG_OK;
}

/* A fresh order from the sampler (the stream rewound), numbered batches, workers started. */
static ag_status start_epoch(ag_loader *l) {
    drain(l);
    l->fail_st = AG_OK;
    if (l->stream && l->epoch > 0 && l->stream->it.reset) {
        ag_clear_error();
        ag_status st = l->stream->it.reset(l->stream->it.ctx);
        if (st) return ag_last_status() ? st : ag__fail(st, "loader_next: the stream's reset returned %s", ag_status_name(st));
    }
    if (l->sampler) {
        ag_status st = ag__sampler_fill(l->sampler, &l->gen, l->epoch, l->order);
        if (st) return st;
        for (int64_t i = 0; i < l->n; i++)
            if (l->order[i] < 0 || l->order[i] >= l->ds->n)
                return ag__fail(AG_ERR_INDEX, "loader_next: the sampler gave index %lld for a dataset of %lld samples",
                                (long long)l->order[i], (long long)l->ds->n);
    }
    l->pos = 0;
    l->stream_read = 0;
    l->epoch++;
    l->active = true;
    launch(l);
    return AG_OK;
}

/* Takes batch next_out: prepared here, or waited for from the workers. */
static int take(ag_loader *l, ag_tensor **x, ag_tensor **y, int64_t *count, ag_status *st, char *msg) {
    int64_t k = l->next_out;
    if (!l->workers) {
        int rc = prepare(l, k, x, y, count);
        if (rc < 0) {
            *st = ag_last_status();
            snprintf(msg, MSG, "%s", ag_last_error());
        }
        return rc;
    }
    pthread_mutex_lock(&l->mu);
    if (k >= l->jobs && l->busy == 0 && l->slots[k % l->nslots].batch != k) { /* the workers were stopped before it */
        pthread_mutex_unlock(&l->mu);
        return 0;
    }
    slot *s = &l->slots[k % l->nslots];
    bool waited = false;
    while (!(s->batch == k && s->state == 2)) {
        waited = true;
        pthread_cond_wait(&l->done, &l->mu);
    }
    int rc = s->rc;
    *count = s->count;
    *x = s->x;
    *y = s->y;
    *st = s->st;
    snprintf(msg, MSG, "%s", s->msg);
    *s = (slot){.batch = -1};
    /* a worker idle while jobs remain: the places ahead were all prepared */
    bool ahead = l->busy < l->workers && l->next_job < l->jobs;
    l->next_out++; /* frees a place: a worker may start a job */
    /* the workers busy from now on: those preparing, and idle ones with a job they may start */
    int64_t open = (l->jobs < l->next_out + l->nslots ? l->jobs : l->next_out + l->nslots) - l->next_job;
    if (open < 0) open = 0; /* a failure cut the jobs below those started */
    int busy = l->busy + (int)(open < l->workers - l->busy ? open : l->workers - l->busy);
    pthread_cond_broadcast(&l->work);
    pthread_mutex_unlock(&l->mu);
    if (rc > 0) pace_caller(l, waited, ahead, busy);
    return rc;
}

int ag_loader_next(ag_loader *l, ag_tensor **x, ag_tensor **y) {
    if (x) *x = NULL;
    if (y) *y = NULL;
    if (!l || !x) return ag__fail(AG_ERR_ARG, "loader_next: NULL loader or x"), -1;
    if (l->fail_st) return ag__fail(l->fail_st, "%s", l->fail_msg), -1;
    if (!l->active && start_epoch(l)) return -1;
    if (!l->stream && l->next_out >= epoch_batches(l)) {
        l->active = false;
        restore_caller(l);
        return 0;
    }
    ag_tensor *bx = NULL, *by = NULL;
    ag_status st = AG_OK;
    char msg[MSG] = "";
    int64_t count = 0;
    int rc = take(l, &bx, &by, &count, &st, msg);
    if (!l->workers) l->next_out++;
    if (rc <= 0) {
        drain(l);
        restore_caller(l);
        l->active = false;
        if (rc == 0) return 0;
        l->fail_st = st ? st : AG_ERR_ARG; /* stopped: the same error until the next epoch (ag_loader_reset) */
        snprintf(l->fail_msg, MSG, "%s", msg);
        return ag__fail(l->fail_st, "%s", msg), -1;
    }
    l->pos += count;
    if (!(*x = ag__own(bx))) {
        ag_release(by);
        return ag__fail(AG_ERR_NOMEM, "loader_next: out of memory"), -1;
    }
    if (y) {
        if (!(*y = ag__own(by))) {
            if (ag_scope_depth() == 0) ag_release(*x);
            *x = NULL;
            return ag__fail(AG_ERR_NOMEM, "loader_next: out of memory"), -1;
        }
    } else {
        ag_release(by);
    }
    return 1;
}

/* ---- saving and resuming ------------------------------------------------------------- */
ag_status ag_loader_state_dict(const ag_loader *l, ag_state_dict *sd) {
    if (!l || !sd) return ag__fail(AG_ERR_ARG, "loader_state_dict: NULL argument");
    if (l->stream) return ag__fail(AG_ERR_ARG, "loader_state_dict: a loader over a stream cannot be saved mid-stream");
    ag_status st = ag_scope_begin();
    if (st) return st;
    /* a distributed sampler's order before sharding: the same in every rank's state */
    const int64_t *shared = ag__sampler_shared_order(l->sampler);
    int64_t len = shared ? l->ds->n : l->n;
    ag_tensor *gen = ag__new(AG_I64, 1, (int64_t[]){4}), *order = ag__new(AG_I64, 1, (int64_t[]){len});
    if (gen && order) {
        for (int i = 0; i < 4; i++) ((int64_t *)ag__ptr(gen))[i] = (int64_t)l->gen.s[i]; /* the bits */
        memcpy(ag__ptr(order), shared ? shared : l->order, (size_t)len * sizeof(int64_t));
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
    if (l->stream) return ag__fail(AG_ERR_ARG, LOAD_OP ": a loader over a stream cannot be resumed");
    const ag_tensor *gen = ag_state_dict_get(sd, "loader.generator"), *order = ag_state_dict_get(sd, "loader.order");
    if (!gen || !order) return AG_ERR_ARG;
    char s[AG_SHAPE_STR];
    if (gen->dtype != AG_I64 || gen->ndim != 1 || gen->shape[0] != 4 || !ag__contig(gen))
        return ag__fail(AG_ERR_VALUE, "loader_load_state_dict: loader.generator must be int64 [4], got %s %s",
                        ag_dtype_name(gen->dtype), ag__tshape(s, gen));
    bool shared = ag__sampler_shared_order(l->sampler) != NULL; /* the order of all samples, before sharding */
    int64_t len = shared ? l->ds->n : l->n;
    if (order->dtype != AG_I64 || order->ndim != 1 || order->shape[0] != len || !ag__contig(order))
        return ag__fail(AG_ERR_VALUE, "loader_load_state_dict: loader.order must be int64 [%lld] for this loader, got %s %s",
                        (long long)len, ag_dtype_name(order->dtype), ag__tshape(s, order));
    double epoch, pos, active;
    ag_status st = ag__sd_number(LOAD_OP, sd, "loader.epoch", (ag__range)AG__COUNT, &epoch);
    if (!st) st = ag__sd_number(LOAD_OP, sd, "loader.position", (ag__range){0, (double)l->n, true}, &pos);
    if (!st) st = ag__sd_number(LOAD_OP, sd, "loader.active", (ag__range)AG__FLAG, &active);
    if (st) return st;
    const uint64_t *w = (const uint64_t *)ag__ptr(gen);
    if (!(w[0] | w[1] | w[2] | w[3]))
        return ag__fail(AG_ERR_VALUE, "loader_load_state_dict: loader.generator is all zeros");
    /* The saved order must be what this loader's sampler can give: a permutation of
     * the same indices when it gives those, indices of the dataset otherwise. */
    const int64_t *saved = (const int64_t *)ag__ptr(order);
    for (int64_t i = 0; i < len; i++)
        if (saved[i] < 0 || saved[i] >= l->ds->n)
            return ag__fail(AG_ERR_VALUE, "loader_load_state_dict: loader.order holds %lld, not a sample of this loader's %lld",
                            (long long)saved[i], (long long)l->ds->n);
    if (shared || ag__sampler_is_permutation(l->sampler)) {
        int64_t *a = ag__alloc_n(len ? len : 1, 2 * sizeof(int64_t));
        if (!a) return ag__fail(AG_ERR_NOMEM, "loader_load_state_dict: out of memory");
        int64_t *b = a + (len ? len : 1);
        ag__gen g = l->gen;
        ag_status fst = AG_OK;
        if (shared)
            for (int64_t i = 0; i < len; i++) b[i] = i; /* all samples: a permutation of 0 .. n-1 */
        else
            fst = ag__sampler_fill(l->sampler, &g, 0, b);
        memcpy(a, saved, (size_t)len * sizeof(int64_t));
        qsort(a, (size_t)len, sizeof(int64_t), cmp_i64);
        qsort(b, (size_t)len, sizeof(int64_t), cmp_i64);
        bool same = !fst && memcmp(a, b, (size_t)len * sizeof(int64_t)) == 0;
        ag__free(a);
        if (fst) return fst;
        if (!same)
            return ag__fail(AG_ERR_VALUE, "loader_load_state_dict: loader.order is not a permutation of this loader's %lld samples",
                            (long long)len);
    }
    if (!apply) return AG_OK;
    drain(l);
    l->fail_st = AG_OK;
    for (int i = 0; i < 4; i++) l->gen.s[i] = w[i];
    if (shared)
        ag__sampler_take_shared(l->sampler, saved, l->order); /* this rank's share of the saved order */
    else
        memcpy(l->order, saved, (size_t)l->n * sizeof(int64_t));
    l->epoch = (int64_t)epoch;
    l->pos = (int64_t)pos;
    l->active = active == 1;
    if (l->active) launch(l); /* the batches from pos on */
    return AG_OK;
}

ag_status ag_loader_load_state_dict(ag_loader *l, const ag_state_dict *sd) { return loader_load(l, sd, true); }
ag_status ag__loader_check_state_dict(ag_loader *l, const ag_state_dict *sd) { return loader_load(l, sd, false); }

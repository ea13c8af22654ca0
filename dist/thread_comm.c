/*
 * dist/thread_comm.c - the in-process backend: the ranks are threads of one
 * process, each with its own communicator over one shared group.
 *
 * Each collective a rank starts has a sequence number (the ranks call them in the
 * same order, so the k-th call is the same collective everywhere) and takes the
 * slot k mod SLOTS of the group.  A rank posts its buffer there; once all have
 * posted, each rank does its part: for an all-reduce, rank r sums chunk r of the
 * buffers in rank order and writes the sum into every rank's buffer (the chunks
 * are disjoint, so nothing races, and every rank gets the same bits); for a
 * broadcast, it copies root's buffer into its own.  The collective is done, and
 * its slot free, once every part is done; a request whose slot has moved on to
 * another collective is done.  Parts are done in test or wait, so a started
 * all-reduce progresses while its rank polls it, as MPI's do; a rank waiting for
 * a slot (more than SLOTS collectives in flight) does its part of the one there.
 */
#include <pthread.h>
#include <string.h>

#include "dist/internal.h"

#define SLOTS 64

enum { KIND_SUM, KIND_BROADCAST };

typedef struct slot {
    int64_t seq; /* the collective it holds, -1 when free */
    int kind, root;
    ag_dtype dtype;
    int64_t count; /* elements (bytes for a broadcast) */
    int posted, parts_done;
    void **bufs; /* [size] */
    bool *did;   /* [size]: rank r's part is done */
} slot;

typedef struct group {
    pthread_mutex_t mu;
    pthread_cond_t changed;
    int size, members; /* members: communicators not yet freed */
    slot slots[SLOTS];
} group;

typedef struct member {
    group *g;
    int rank;
    int64_t next_seq;
} member;

typedef struct request {
    int64_t seq;
} request;

/* Rank r's part of the collective in s (all buffers posted); runs unlocked. */
static void do_part(const slot *s, int r, int size) {
    if (s->kind == KIND_BROADCAST) {
        if (r != s->root) memcpy(s->bufs[r], s->bufs[s->root], (size_t)s->count);
        return;
    }
    int64_t lo = s->count * r / size, hi = s->count * (r + 1) / size;
#define SUM_CHUNK(T)                                                                                   \
    for (int64_t j = lo; j < hi; j++) {                                                                \
        T v = ((T *)s->bufs[0])[j];                                                                    \
        for (int k = 1; k < size; k++) v += ((T *)s->bufs[k])[j]; /* rank order: the same bits */     \
        for (int k = 0; k < size; k++) ((T *)s->bufs[k])[j] = v;                                       \
    }
    switch (s->dtype) {
    case AG_F32: SUM_CHUNK(float) break;
    case AG_F64: SUM_CHUNK(double) break;
    default: /* int64, summed wrapping as two's complement (MPI's overflow is undefined) */
        for (int64_t j = lo; j < hi; j++) {
            uint64_t v = 0;
            for (int k = 0; k < size; k++) v += (uint64_t)((int64_t *)s->bufs[k])[j];
            for (int k = 0; k < size; k++) memcpy((int64_t *)s->bufs[k] + j, &v, sizeof v);
        }
    }
#undef SUM_CHUNK
}

/* With g->mu held: does rank r's part of the collective in s when every rank has
 * posted and r has not (unlocking while it works); frees the slot after the last
 * part.  True when it did. */
static bool part_if_ready(group *g, slot *s, int r) {
    if (s->posted < g->size || s->did[r]) return false;
    s->did[r] = true;
    pthread_mutex_unlock(&g->mu);
    do_part(s, r, g->size);
    pthread_mutex_lock(&g->mu);
    if (++s->parts_done == g->size) s->seq = -1;
    pthread_cond_broadcast(&g->changed);
    return true;
}

/* Posts buf for this rank's next collective; writes its sequence number. */
static ag_status post(member *m, int kind, void *buf, int64_t count, ag_dtype dtype, int root, int64_t *seq) {
    group *g = m->g;
    *seq = m->next_seq++;
    slot *s = &g->slots[*seq % SLOTS];
    pthread_mutex_lock(&g->mu);
    while (s->seq != -1 && s->seq != *seq) /* an older collective of this rank's is there */
        if (!part_if_ready(g, s, m->rank)) pthread_cond_wait(&g->changed, &g->mu);
    if (s->seq == -1) {
        s->seq = *seq;
        s->kind = kind, s->count = count, s->dtype = dtype, s->root = root;
        s->posted = s->parts_done = 0;
        memset(s->did, 0, sizeof(bool) * (size_t)g->size);
    } else if (s->kind != kind || s->count != count || s->dtype != dtype || s->root != root) {
        pthread_mutex_unlock(&g->mu);
        return ag_comm_fail("threads backend: rank %d's collective %lld (%s of %lld) does not match the "
                            "other ranks' (%s of %lld)", m->rank, (long long)*seq,
                            kind == KIND_SUM ? "all_reduce" : "broadcast", (long long)count,
                            s->kind == KIND_SUM ? "all_reduce" : "broadcast", (long long)s->count);
    }
    s->bufs[m->rank] = buf;
    s->posted++;
    pthread_cond_broadcast(&g->changed);
    pthread_mutex_unlock(&g->mu);
    return AG_OK;
}

/* Looks at collective seq (block: until it is done); *done when it is: its slot
 * holds another collective, or none. */
static void progress(member *m, const request *q, bool block, bool *done) {
    group *g = m->g;
    slot *s = &g->slots[q->seq % SLOTS];
    pthread_mutex_lock(&g->mu);
    for (;;) {
        if ((*done = s->seq != q->seq)) break;
        if (part_if_ready(g, s, m->rank)) continue; /* perhaps the last part: look again */
        if (!block) break;
        pthread_cond_wait(&g->changed, &g->mu);
    }
    pthread_mutex_unlock(&g->mu);
}

static ag_status run(member *m, int kind, void *buf, int64_t count, ag_dtype dtype, int root) {
    request q = {0};
    ag_status st = post(m, kind, buf, count, dtype, root, &q.seq);
    bool done;
    if (!st) progress(m, &q, true, &done);
    return st;
}

static ag_status all_reduce(void *ctx, void *buf, int64_t count, ag_dtype dtype) {
    return run(ctx, KIND_SUM, buf, count, dtype, 0);
}

static ag_status broadcast(void *ctx, void *buf, int64_t nbytes, int root) {
    return run(ctx, KIND_BROADCAST, buf, nbytes, AG_U8, root);
}

static ag_status all_reduce_start(void *ctx, void *buf, int64_t count, ag_dtype dtype, void **req) {
    request *q = ag__alloc(sizeof *q);
    if (!q) return ag__fail(AG_ERR_NOMEM, "threads backend: out of memory");
    *q = (request){0};
    ag_status st = post(ctx, KIND_SUM, buf, count, dtype, 0, &q->seq);
    if (st) ag__free(q);
    else *req = q;
    return st;
}

static ag_status test(void *ctx, void *req, bool *done) {
    progress(ctx, req, false, done);
    if (*done) ag__free(req);
    return AG_OK;
}

static ag_status wait(void *ctx, void *req) {
    bool done;
    progress(ctx, req, true, &done);
    ag__free(req);
    return AG_OK;
}

/* Drops one reference to g (a member's, or ag_comm_thread_new's while it builds). */
static void group_unref(group *g) {
    pthread_mutex_lock(&g->mu);
    bool last = --g->members == 0;
    pthread_mutex_unlock(&g->mu);
    if (!last) return;
    for (int i = 0; i < SLOTS; i++) ag__free(g->slots[i].bufs), ag__free(g->slots[i].did);
    pthread_mutex_destroy(&g->mu);
    pthread_cond_destroy(&g->changed);
    ag__free(g);
}

static void destroy(void *ctx) {
    member *m = ctx;
    group_unref(m->g);
    ag__free(m);
}

static const ag_comm_backend threads_backend = {"threads", all_reduce, broadcast, all_reduce_start, test, wait, destroy};

ag_status ag_comm_thread_new(int n, ag_comm **comms) {
    if (n < 1 || !comms) return ag__fail(AG_ERR_ARG, "comm_thread_new: %s", comms ? "n < 1" : "comms is NULL");
    for (int r = 0; r < n; r++) comms[r] = NULL;
    group *g = ag__calloc(sizeof *g);
    bool ok = g != NULL;
    for (int i = 0; ok && i < SLOTS; i++) {
        g->slots[i].seq = -1;
        ok = (g->slots[i].bufs = ag__calloc(sizeof(void *) * (size_t)n)) != NULL &&
             (g->slots[i].did = ag__calloc(sizeof(bool) * (size_t)n)) != NULL;
    }
    if (!ok) {
        for (int i = 0; g && i < SLOTS; i++) ag__free(g->slots[i].bufs), ag__free(g->slots[i].did);
        ag__free(g);
        return ag__fail(AG_ERR_NOMEM, "comm_thread_new: out of memory for %d ranks", n);
    }
    g->size = n;
    g->members = 1; /* this builder's reference, dropped at the end */
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->changed, NULL);
    ag_status st = AG_OK;
    for (int r = 0; !st && r < n; r++) {
        member *m = ag__alloc(sizeof *m);
        if (!m) {
            st = ag__fail(AG_ERR_NOMEM, "comm_thread_new: out of memory for %d ranks", n);
            break;
        }
        *m = (member){g, r, 0};
        g->members++;
        comms[r] = ag_comm_new(&threads_backend, m, r, n, r, n); /* destroys m on failure */
        if (!comms[r]) st = ag_last_status();
    }
    if (st)
        for (int r = 0; r < n; r++) ag_comm_free(comms[r]), comms[r] = NULL;
    group_unref(g);
    return st;
}

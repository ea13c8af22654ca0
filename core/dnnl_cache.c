/*
 * core/dnnl_cache.c - the per-thread map of cached oneDNN primitives (dnnl_cache.h).
 *
 * The map is a small array searched by hash then key, least recently used
 * entry evicted when full.  Entries are destroyed when the thread exits (a
 * pthread key destructor), at process exit for the exiting thread, and by
 * ag__dnnl_cache_clear; the engine and stream go at process exit once no
 * thread holds primitives.
 */
#include <omp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include "core/autocast.h"
#include "core/dnnl_cache.h"
#include "core/parallel.h"

#define MAP_SIZE 64

typedef struct entry {
    uint64_t hash, used; /* used: 0 = empty slot, else a tick of the last use */
    ag_dnnl_key key;
    ag_dnnl_prim prim;
} entry;

typedef struct thread_map {
    entry e[MAP_SIZE];
    uint64_t tick;
} thread_map;

static _Thread_local thread_map *map;
static _Thread_local long lookups; /* ag__dnnl_get calls, for ag__dnnl_lookups */
static _Thread_local entry *last;  /* what the last one found or made, for ag__dnnl_last */

static pthread_once_t once = PTHREAD_ONCE_INIT;
static pthread_key_t exit_key;
static dnnl_engine_t engine;
static dnnl_stream_t stream;
static atomic_long created, maps_alive;

/* Destroys p's primitive, reorders and memory objects and zeroes it. */
static void destroy_prim(ag_dnnl_prim *p) {
    for (int i = 0; i < AG_DNNL_MAX_ARGS; i++) {
        if (p->args[i].memory) dnnl_memory_destroy(p->args[i].memory);
        if (p->user[i]) dnnl_memory_destroy(p->user[i]);
        if (p->reorder[i]) dnnl_primitive_destroy(p->reorder[i]);
    }
    if (p->prim) dnnl_primitive_destroy(p->prim);
    memset(p, 0, sizeof *p);
}

static void destroy_entry(entry *e) {
    destroy_prim(&e->prim);
    memset(e, 0, sizeof *e);
}

static void destroy_map(thread_map *m) {
    if (!m) return;
    for (int i = 0; i < MAP_SIZE; i++)
        if (m->e[i].used) destroy_entry(&m->e[i]);
    free(m);
    atomic_fetch_sub(&maps_alive, 1);
}

static void at_thread_exit(void *p) { destroy_map(p); }

static void at_process_exit(void) {
    if (map) pthread_setspecific(exit_key, NULL);
    destroy_map(map);
    map = NULL;
    last = NULL;
    if (atomic_load(&maps_alive) == 0) {
        if (stream) dnnl_stream_destroy(stream);
        if (engine) dnnl_engine_destroy(engine);
        stream = NULL;
        engine = NULL;
    }
}

static void init_once(void) {
    pthread_key_create(&exit_key, at_thread_exit);
    if (dnnl_engine_create(&engine, dnnl_cpu, 0) != dnnl_success) engine = NULL;
    else if (dnnl_stream_create(&stream, engine, dnnl_stream_default_flags) != dnnl_success) {
        dnnl_engine_destroy(engine);
        engine = NULL;
        stream = NULL;
    }
    atexit(at_process_exit);
}

void ag__dnnl_cache_clear(void) {
    last = NULL;
    if (!map) return;
    for (int i = 0; i < MAP_SIZE; i++)
        if (map->e[i].used) destroy_entry(&map->e[i]);
}

long ag__dnnl_primitives_created(void) { return atomic_load(&created); }

long ag__dnnl_lookups(void) { return lookups; }

ag_dnnl_prim *ag__dnnl_last(ag_dnnl_key *key) {
    if (!last || !last->prim.prim) return NULL;
    *key = last->key;
    return &last->prim;
}

static uint64_t key_hash(const ag_dnnl_key *k) {
    const unsigned char *b = (const unsigned char *)k;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < sizeof *k; i++) h = (h ^ b[i]) * 1099511628211ull;
    return h | 1;
}

ag_dnnl_prim *ag__dnnl_get(const ag_dnnl_key *key, ag_dnnl_make_fn make) {
    pthread_once(&once, init_once);
    lookups++;
    last = NULL;
    if (!engine) return NULL;
    if (!map) {
        /* Not through ag__alloc: the map is the backend's, like oneDNN's own memory,
         * and an injected allocation failure only costs the fast path. */
        map = calloc(1, sizeof *map);
        if (!map) return NULL;
        pthread_setspecific(exit_key, map);
        atomic_fetch_add(&maps_alive, 1);
    }
    uint64_t h = key_hash(key);
    entry *victim = &map->e[0];
    for (int i = 0; i < MAP_SIZE; i++) {
        entry *e = &map->e[i];
        if (e->used && e->hash == h && memcmp(&e->key, key, sizeof *key) == 0) {
            e->used = ++map->tick;
            last = e;
            return e->prim.prim ? &e->prim : NULL; /* NULL: oneDNN could not make it before */
        }
        if (e->used < victim->used) victim = e;
    }
    if (victim->used) destroy_entry(victim);
    victim->hash = h;
    victim->used = ++map->tick;
    victim->key = *key;
    last = victim;
    if (make(key, engine, &victim->prim) != dnnl_success) {
        /* Remember the failure (an entry without a primitive), so that the next call
         * with this key falls back at once instead of trying again. */
        destroy_prim(&victim->prim);
        return NULL;
    }
    atomic_fetch_add(&created, 1);
    return &victim->prim;
}

dnnl_status_t ag__dnnl_bind_arg(ag_dnnl_prim *p, int i, int arg, const dnnl_memory_desc_t *md,
                                const dnnl_memory_desc_t *user_md, bool is_output, dnnl_engine_t eng) {
    p->args[i].arg = arg;
    p->is_output[i] = is_output;
    dnnl_status_t st = dnnl_memory_create(&p->args[i].memory, md, eng, DNNL_MEMORY_NONE);
    if (st || dnnl_memory_desc_equal(md, user_md)) return st;
    p->bytes[i] = dnnl_memory_desc_get_size(md); /* blocked layouts pad (gotcha 3) */
    if ((st = dnnl_memory_create(&p->user[i], user_md, eng, DNNL_MEMORY_NONE))) return st;
    dnnl_memory_desc_t plain, blocked;
    if (!is_output && md->ndims == 4 && ag__bf16_nchw16c_available() &&
        !dnnl_memory_desc_init_by_tag(&plain, 4, md->dims, dnnl_f32, dnnl_nchw) &&
        !dnnl_memory_desc_init_by_tag(&blocked, 4, md->dims, dnnl_bf16, dnnl_nChw16c) &&
        dnnl_memory_desc_equal(user_md, &plain) && dnnl_memory_desc_equal(md, &blocked))
        p->to_nchw16c |= 1u << i;
    dnnl_primitive_desc_t pd;
    if ((st = is_output ? dnnl_reorder_primitive_desc_create(&pd, md, eng, user_md, eng, NULL)
                        : dnnl_reorder_primitive_desc_create(&pd, user_md, eng, md, eng, NULL)))
        return st;
    st = dnnl_primitive_create(&p->reorder[i], pd);
    dnnl_primitive_desc_destroy(pd);
    return st;
}

void *ag__dnnl_scratch(size_t bytes) {
    const size_t size = (bytes + 63) / 64 * 64; /* aligned_alloc wants a multiple of the alignment */
    return size >= bytes ? aligned_alloc(64, size ? size : 64) : NULL;
}

/* Runs argument i's reorder of p (bound to its memory objects): user -> primitive's
 * layout for an input, back for an output; float32 NCHW to bf16 nChw16c by agrad's kernel,
 * on the threads OpenMP grants this call (the key's). */
static dnnl_status_t run_reorder(ag_dnnl_prim *p, int i) {
    if (p->to_nchw16c >> i & 1) {
        const dnnl_memory_desc_t *md;
        void *from, *to;
        dnnl_status_t st;
        if ((st = dnnl_memory_get_memory_desc(p->args[i].memory, &md)) ||
            (st = dnnl_memory_get_data_handle(p->user[i], &from)) ||
            (st = dnnl_memory_get_data_handle(p->args[i].memory, &to)))
            return st;
        ag__f32_to_bf16_nchw16c(to, from, md->dims[0], md->dims[1], md->dims[2] * md->dims[3], omp_get_max_threads());
        return dnnl_success;
    }
    dnnl_exec_arg_t a[2] = {{DNNL_ARG_FROM, p->is_output[i] ? p->args[i].memory : p->user[i]},
                            {DNNL_ARG_TO, p->is_output[i] ? p->user[i] : p->args[i].memory}};
    dnnl_status_t st = dnnl_primitive_execute(p->reorder[i], stream, 2, a);
    return st ? st : dnnl_stream_wait(stream);
}

bool ag__dnnl_reorder_out(ag_dnnl_prim *p, const ag_dnnl_key *key, int i, const void *buf, void *data) {
    return ag__dnnl_reorder_in(p, key, i, data, (void *)buf); /* run_reorder's direction is the argument's */
}

bool ag__dnnl_reorder_in(ag_dnnl_prim *p, const ag_dnnl_key *key, int i, const void *data, void *buf) {
    if (dnnl_memory_set_data_handle(p->user[i], (void *)data) || dnnl_memory_set_data_handle(p->args[i].memory, buf))
        return false;
    const int before = omp_get_max_threads(), dynamic = ag__dynamic_off();
    if (key->threads != before) omp_set_num_threads(key->threads);
    dnnl_status_t st = run_reorder(p, i);
    if (key->threads != before) omp_set_num_threads(before);
    ag__dynamic_restore(dynamic);
    return st == dnnl_success;
}

bool ag__dnnl_exec(ag_dnnl_prim *p, const ag_dnnl_key *key, void *const *data) {
    return ag__dnnl_exec_ready(p, key, data, NULL);
}

bool ag__dnnl_exec_ready(ag_dnnl_prim *p, const ag_dnnl_key *key, void *const *data, const bool *ready) {
    void *scratch[AG_DNNL_MAX_ARGS] = {NULL};
    bool ok = true, skip[AG_DNNL_MAX_ARGS] = {false}; /* skip: data[i] is in the primitive's layout */
    for (int i = 0; i < p->nargs && ok; i++) {
        skip[i] = ready && ready[i];
        if (p->reorder[i] && !skip[i]) {
            ok = (scratch[i] = ag__dnnl_scratch(p->bytes[i])) != NULL &&
                 dnnl_memory_set_data_handle(p->user[i], data[i]) == dnnl_success;
        }
        ok = ok && dnnl_memory_set_data_handle(p->args[i].memory, scratch[i] ? scratch[i] : data[i]) == dnnl_success;
    }
    const int before = omp_get_max_threads(), dynamic = ag__dynamic_off();
    if (key->threads != before) omp_set_num_threads(key->threads);
    dnnl_status_t st = ok ? dnnl_success : dnnl_out_of_memory;
    for (int i = 0; i < p->nargs && !st; i++)
        if (p->reorder[i] && !p->is_output[i] && !skip[i]) st = run_reorder(p, i);
    if (!st) st = dnnl_primitive_execute(p->prim, stream, p->nargs, p->args);
    if (!st) st = dnnl_stream_wait(stream);
    for (int i = 0; i < p->nargs && !st; i++)
        if (p->reorder[i] && p->is_output[i] && !skip[i]) st = run_reorder(p, i);
    if (key->threads != before) omp_set_num_threads(before);
    ag__dynamic_restore(dynamic);
    for (int i = 0; i < p->nargs; i++) free(scratch[i]);
    return st == dnnl_success;
}

/* ---- eltwise ------------------------------------------------------------------------------- */
/* Elements from which an eltwise primitive runs on all threads (below: one thread,
 * avoiding the ~3 µs fork).  tanh, 1 vs 2 threads: 65 536 elements 16.4 vs 15.5 µs
 * (even), 131 072: 33.7 vs 26.8 µs - the same threshold as the C loops. */
#define ELTWISE_PAR_MIN AG_PAR_MIN_ELEMS

int ag__dnnl_eltwise_threads(int64_t n) {
    if (omp_in_parallel() || ag__backend == AG_BACKEND_REFERENCE) return 1;
    if (n < ELTWISE_PAR_MIN && ag__backend == AG_BACKEND_AUTO) return 1;
    return omp_get_max_threads();
}

/* The primitive of the forward descriptor fd, or, when bd is not NULL (its init status
 * bd_st), of the backward descriptor bd made with fd's primitive descriptor as its hint. */
static dnnl_status_t create_primitive(const_dnnl_op_desc_t fd, const_dnnl_op_desc_t bd, dnnl_status_t bd_st,
                                      dnnl_engine_t eng, dnnl_primitive_t *prim) {
    dnnl_primitive_desc_t fpd, pd;
    dnnl_status_t st = dnnl_primitive_desc_create(&fpd, fd, NULL, eng, NULL);
    if (st) return st;
    if (!bd) {
        pd = fpd;
    } else {
        st = bd_st ? bd_st : dnnl_primitive_desc_create(&pd, bd, NULL, eng, fpd);
        dnnl_primitive_desc_destroy(fpd);
        if (st) return st;
    }
    st = dnnl_primitive_create(prim, pd);
    dnnl_primitive_desc_destroy(pd);
    return st;
}

static dnnl_status_t make_eltwise(const ag_dnnl_key *k, dnnl_engine_t eng, ag_dnnl_prim *out) {
    dnnl_memory_desc_t md;
    dnnl_dims_t dims = {k->dims[0]};
    dnnl_status_t st = dnnl_memory_desc_init_by_tag(&md, 1, dims, dnnl_f32, dnnl_a);
    if (st) return st;
    dnnl_eltwise_desc_t fd;
    if ((st = dnnl_eltwise_forward_desc_init(&fd, dnnl_forward_training, (dnnl_alg_kind_t)k->alg, &md, k->alpha, k->beta)))
        return st;
    dnnl_eltwise_desc_t bd;
    const bool fwd = k->kind == AG_DNNL_ELTWISE_FWD;
    dnnl_status_t bst = fwd ? dnnl_success : dnnl_eltwise_backward_desc_init(&bd, (dnnl_alg_kind_t)k->alg, &md, &md, k->alpha, k->beta);
    if ((st = create_primitive(&fd, fwd ? NULL : &bd, bst, eng, &out->prim))) return st;
    bool use_dst = k->alg >= dnnl_eltwise_relu_use_dst_for_bwd && k->alg <= dnnl_eltwise_clip_v2_use_dst_for_bwd;
    int ids_fwd[2] = {DNNL_ARG_SRC, DNNL_ARG_DST};
    int ids_bwd[3] = {use_dst ? DNNL_ARG_DST : DNNL_ARG_SRC, DNNL_ARG_DIFF_DST, DNNL_ARG_DIFF_SRC};
    out->nargs = k->kind == AG_DNNL_ELTWISE_FWD ? 2 : 3;
    for (int i = 0; i < out->nargs; i++) {
        out->args[i].arg = k->kind == AG_DNNL_ELTWISE_FWD ? ids_fwd[i] : ids_bwd[i];
        if ((st = dnnl_memory_create(&out->args[i].memory, &md, eng, DNNL_MEMORY_NONE))) return st;
    }
    return dnnl_success;
}

static bool eltwise(int kind, int alg, void *const *data, int64_t n) {
    ag_dnnl_key key;
    memset(&key, 0, sizeof key);
    key.kind = kind;
    key.alg = alg;
    key.dtype = dnnl_f32;
    key.threads = ag__dnnl_eltwise_threads(n);
    key.dims[0] = n;
    ag_dnnl_prim *p = ag__dnnl_get(&key, make_eltwise);
    return p && ag__dnnl_exec(p, &key, data);
}

bool ag__dnnl_eltwise_fwd(int alg, const float *x, float *y, int64_t n) {
    void *data[2] = {(void *)x, y};
    return eltwise(AG_DNNL_ELTWISE_FWD, alg, data, n);
}

bool ag__dnnl_eltwise_bwd(int alg, const float *src, const float *dy, float *dx, int64_t n) {
    void *data[3] = {(void *)src, (void *)dy, dx};
    return eltwise(AG_DNNL_ELTWISE_BWD, alg, data, n);
}

/* ---- matmul ----------------------------------------------------------------------------------- */
/* dims: M, K, N, A's row and column strides, B's, C's row stride, has bias. */
static dnnl_status_t make_matmul(const ag_dnnl_key *k, dnnl_engine_t eng, ag_dnnl_prim *out) {
    const int64_t *d = k->dims;
    dnnl_memory_desc_t ma, mb, mc, mbias;
    dnnl_dims_t da = {d[0], d[1]}, db = {d[1], d[2]}, dc = {d[0], d[2]}, dbias = {1, d[2]};
    dnnl_dims_t sa = {d[3], d[4]}, sb = {d[5], d[6]}, sc = {d[7], 1}, sbias = {d[2], 1};
    dnnl_status_t st;
    const dnnl_data_type_t src = (dnnl_data_type_t)k->dtype; /* f32, or bf16 (f32 result and bias) */
    if ((st = dnnl_memory_desc_init_by_strides(&ma, 2, da, src, sa)) ||
        (st = dnnl_memory_desc_init_by_strides(&mb, 2, db, src, sb)) ||
        (st = dnnl_memory_desc_init_by_strides(&mc, 2, dc, dnnl_f32, sc)) ||
        (st = dnnl_memory_desc_init_by_strides(&mbias, 2, dbias, dnnl_f32, sbias)))
        return st;
    dnnl_matmul_desc_t md;
    if ((st = dnnl_matmul_desc_init(&md, &ma, &mb, d[8] ? &mbias : NULL, &mc))) return st;
    dnnl_primitive_desc_t pd;
    if ((st = dnnl_primitive_desc_create(&pd, &md, NULL, eng, NULL))) return st;
    st = dnnl_primitive_create(&out->prim, pd);
    dnnl_primitive_desc_destroy(pd);
    if (st) return st;
    const dnnl_memory_desc_t *mds[4] = {&ma, &mb, &mc, &mbias};
    const int ids[4] = {DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_DST, DNNL_ARG_BIAS};
    out->nargs = d[8] ? 4 : 3;
    for (int i = 0; i < out->nargs; i++) {
        out->args[i].arg = ids[i];
        if ((st = dnnl_memory_create(&out->args[i].memory, mds[i], eng, DNNL_MEMORY_NONE))) return st;
    }
    return dnnl_success;
}

static bool matmul(int dtype, int64_t m, int64_t k, int64_t n, const void *a, int64_t a_rs, int64_t a_cs,
                   const void *b, int64_t b_rs, int64_t b_cs, float *c, int64_t ldc, const float *bias, int threads) {
    ag_dnnl_key key;
    memset(&key, 0, sizeof key);
    key.kind = AG_DNNL_MATMUL;
    key.dtype = dtype;
    key.threads = threads;
    int64_t dims[9] = {m, k, n, a_rs, a_cs, b_rs, b_cs, ldc, bias != NULL};
    memcpy(key.dims, dims, sizeof dims);
    ag_dnnl_prim *p = ag__dnnl_get(&key, make_matmul);
    void *data[4] = {(void *)a, (void *)b, c, (void *)bias};
    return p && ag__dnnl_exec(p, &key, data);
}

bool ag__dnnl_matmul(int64_t m, int64_t k, int64_t n, const float *a, int64_t a_rs, int64_t a_cs, const float *b,
                     int64_t b_rs, int64_t b_cs, float *c, int64_t ldc, const float *bias, int threads) {
    return matmul(dnnl_f32, m, k, n, a, a_rs, a_cs, b, b_rs, b_cs, c, ldc, bias, threads);
}

bool ag__dnnl_matmul_bf16(int64_t m, int64_t k, int64_t n, const uint16_t *a, int64_t a_rs, int64_t a_cs,
                          const uint16_t *b, int64_t b_rs, int64_t b_cs, float *c, int64_t ldc, const float *bias,
                          int threads) {
    return matmul(dnnl_bf16, m, k, n, a, a_rs, a_cs, b, b_rs, b_cs, c, ldc, bias, threads);
}

/* ---- softmax -------------------------------------------------------------------------------- */
/* Elements from which softmax runs on all threads: 1 vs 2 threads, forward, [64, 100] 3.8 vs
 * 6.6 µs, [1024, 10] 18.9 vs 13.8, [222, 296] 29.7 vs 22.7. */
#define SOFTMAX_PAR_MIN 8192

static int softmax_threads(int64_t n) {
    if (omp_in_parallel() || ag__backend == AG_BACKEND_REFERENCE) return 1;
    if (n < SOFTMAX_PAR_MIN && ag__backend == AG_BACKEND_AUTO) return 1;
    return omp_get_max_threads();
}

/* dims: outer, n, inner.  One plain layout serves src, dst, diff_dst and diff_src; the backward
 * primitive is made with the forward one as its hint. */
static dnnl_status_t make_softmax(const ag_dnnl_key *k, dnnl_engine_t eng, ag_dnnl_prim *out) {
    const int nd = k->dims[2] == 1 ? 2 : 3;
    dnnl_dims_t dims = {k->dims[0], k->dims[1], k->dims[2]};
    dnnl_memory_desc_t md;
    dnnl_status_t st = dnnl_memory_desc_init_by_tag(&md, nd, dims, dnnl_f32, nd == 2 ? dnnl_ab : dnnl_abc);
    if (st) return st;
    dnnl_softmax_v2_desc_t fd, bd;
    if ((st = dnnl_softmax_v2_forward_desc_init(&fd, dnnl_forward_training, (dnnl_alg_kind_t)k->alg, &md, &md, 1)))
        return st;
    const bool fwd = k->kind == AG_DNNL_SOFTMAX_FWD;
    dnnl_status_t bst = fwd ? dnnl_success : dnnl_softmax_v2_backward_desc_init(&bd, (dnnl_alg_kind_t)k->alg, &md, &md, &md, 1);
    if ((st = create_primitive(&fd, fwd ? NULL : &bd, bst, eng, &out->prim))) return st;
    int ids_fwd[2] = {DNNL_ARG_SRC, DNNL_ARG_DST};
    int ids_bwd[3] = {DNNL_ARG_DST, DNNL_ARG_DIFF_DST, DNNL_ARG_DIFF_SRC};
    out->nargs = k->kind == AG_DNNL_SOFTMAX_FWD ? 2 : 3;
    for (int i = 0; i < out->nargs; i++) {
        out->args[i].arg = k->kind == AG_DNNL_SOFTMAX_FWD ? ids_fwd[i] : ids_bwd[i];
        if ((st = dnnl_memory_create(&out->args[i].memory, &md, eng, DNNL_MEMORY_NONE))) return st;
    }
    return dnnl_success;
}

static bool softmax(int kind, int alg, int64_t outer, int64_t n, int64_t inner, void *const *data) {
    ag_dnnl_key key;
    memset(&key, 0, sizeof key);
    key.kind = kind;
    key.alg = alg;
    key.dtype = dnnl_f32;
    key.threads = softmax_threads(outer * n * inner);
    key.dims[0] = outer, key.dims[1] = n, key.dims[2] = inner;
    ag_dnnl_prim *p = ag__dnnl_get(&key, make_softmax);
    return p && ag__dnnl_exec(p, &key, data);
}

bool ag__dnnl_softmax_fwd(int alg, int64_t outer, int64_t n, int64_t inner, const float *x, float *y) {
    void *data[2] = {(void *)x, y};
    return softmax(AG_DNNL_SOFTMAX_FWD, alg, outer, n, inner, data);
}

bool ag__dnnl_softmax_bwd(int alg, int64_t outer, int64_t n, int64_t inner, const float *y, const float *dy, float *dx) {
    void *data[3] = {(void *)y, (void *)dy, dx};
    return softmax(AG_DNNL_SOFTMAX_BWD, alg, outer, n, inner, data);
}

/* ---- batched matmul ---------------------------------------------------------------------------
 * A 4-D matmul primitive over two batch dims, the operands described by their strides, so that
 * a batch of small products (attention's heads) is one call: oneDNN walks the batch itself
 * (gemm:jit or brgemm), without a lookup and an execute per product. */
#define BATCHED_MAX ((int64_t)1 << 31) /* each size below: two are packed into one key dim */

bool ag__dnnl_matmul_batched_fits(const int64_t batch[2], int64_t m, int64_t k, int64_t n) {
    return batch[0] > 0 && batch[0] < BATCHED_MAX && batch[1] > 0 && batch[1] < BATCHED_MAX && m > 0 &&
           m < BATCHED_MAX && k > 0 && k < BATCHED_MAX && n > 0 && n < BATCHED_MAX;
}

/* dims: the two batch sizes (packed), M and K (packed), N, A's 4 strides, B's 4; alpha: the
 * output scale (an attribute when not 1). */
static dnnl_status_t make_matmul_batched(const ag_dnnl_key *k, dnnl_engine_t eng, ag_dnnl_prim *out) {
    const int64_t *d = k->dims, b0 = d[0] >> 32, b1 = d[0] & 0xffffffff, M = d[1] >> 32, K = d[1] & 0xffffffff, N = d[2];
    dnnl_dims_t da = {b0, b1, M, K}, db = {b0, b1, K, N}, dc = {b0, b1, M, N};
    dnnl_dims_t sa = {d[3], d[4], d[5], d[6]}, sb = {d[7], d[8], d[9], d[10]}, sc = {b1 * M * N, M * N, N, 1};
    dnnl_memory_desc_t ma, mb, mc;
    dnnl_status_t st;
    if ((st = dnnl_memory_desc_init_by_strides(&ma, 4, da, dnnl_f32, sa)) ||
        (st = dnnl_memory_desc_init_by_strides(&mb, 4, db, dnnl_f32, sb)) ||
        (st = dnnl_memory_desc_init_by_strides(&mc, 4, dc, dnnl_f32, sc)))
        return st;
    dnnl_matmul_desc_t md;
    if ((st = dnnl_matmul_desc_init(&md, &ma, &mb, NULL, &mc))) return st;
    dnnl_primitive_attr_t attr = NULL;
    if (k->alpha != 1.0f && ((st = dnnl_primitive_attr_create(&attr)) ||
                             (st = dnnl_primitive_attr_set_output_scales(attr, 1, 0, &k->alpha)))) {
        if (attr) dnnl_primitive_attr_destroy(attr);
        return st;
    }
    dnnl_primitive_desc_t pd;
    st = dnnl_primitive_desc_create(&pd, &md, attr, eng, NULL);
    if (attr) dnnl_primitive_attr_destroy(attr);
    if (st) return st;
    const char *impl = NULL; /* strides no JIT kernel reads: the caller's product by product is faster */
    if (dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) || !impl || !strncmp(impl, "ref", 3)) {
        dnnl_primitive_desc_destroy(pd);
        return dnnl_unimplemented;
    }
    st = dnnl_primitive_create(&out->prim, pd);
    dnnl_primitive_desc_destroy(pd);
    if (st) return st;
    const dnnl_memory_desc_t *mds[3] = {&ma, &mb, &mc};
    const int ids[3] = {DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_DST};
    out->nargs = 3;
    for (int i = 0; i < 3; i++) {
        out->args[i].arg = ids[i];
        if ((st = dnnl_memory_create(&out->args[i].memory, mds[i], eng, DNNL_MEMORY_NONE))) return st;
    }
    return dnnl_success;
}

bool ag__dnnl_matmul_batched(const int64_t batch[2], int64_t m, int64_t k, int64_t n, const float *a,
                             const int64_t sa[4], const float *b, const int64_t sb[4], float *c, float scale,
                             int threads) {
    if (!ag__dnnl_matmul_batched_fits(batch, m, k, n)) return false;
    ag_dnnl_key key;
    memset(&key, 0, sizeof key);
    key.kind = AG_DNNL_MATMUL_BATCHED;
    key.dtype = dnnl_f32;
    key.threads = threads;
    key.alpha = scale;
    int64_t dims[11] = {batch[0] << 32 | batch[1], m << 32 | k, n, sa[0], sa[1], sa[2], sa[3], sb[0], sb[1], sb[2], sb[3]};
    memcpy(key.dims, dims, sizeof dims);
    ag_dnnl_prim *p = ag__dnnl_get(&key, make_matmul_batched);
    void *data[3] = {(void *)a, (void *)b, c};
    return p && ag__dnnl_exec(p, &key, data);
}

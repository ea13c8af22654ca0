/*
 * core/cache.c - per-thread caches of freed blocks and per-thread live-tensor counts.
 *
 * Tensor headers, storages and the engine's scratch arrays are allocated and
 * freed at a high rate (a few per op), so each thread keeps the blocks it frees
 * in size classes (four per power of two) and hands them out again without
 * calling the allocator.  Small classes (up to 64 KiB) are intrusive free lists
 * of bounded length; larger blocks sit in a short list bounded in bytes, which
 * also spares the page faults of mapping a large buffer afresh every step.
 *
 * Only blocks of the default allocator (malloc) are cached: while a user
 * allocator is installed every request goes through the hook, so allocation-
 * failure injection sees every allocation.  Under AddressSanitizer the cache is
 * off so that use-after-free stays detectable.  A thread's cache is emptied
 * when it exits (a pthread key destructor), at process exit (atexit, for the
 * thread calling exit) and by ag_free_caches(), so leak checkers see nothing;
 * ag_set_allocator empties this thread's cache before it changes the hook.
 *
 * Live tensors are counted per thread without atomic read-modify-write: each
 * thread only ever stores into its own counter, ag_live_tensors() sums them
 * under a lock, and an exiting thread folds its count into a global total.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include "core/internal.h"
#include "core/dnnl_cache.h"

#if defined(__SANITIZE_ADDRESS__)
#define CACHE_ENABLED 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CACHE_ENABLED 0
#endif
#endif
#ifndef CACHE_ENABLED
#define CACHE_ENABLED 1
#endif

#define SMALL_MAX ((size_t)64 << 10)  /* classes up to 64 KiB are free lists */
#define NSMALL 41                     /* classes 0..40 cover 64 B .. 64 KiB */
#define CLASS_BYTES ((size_t)512 << 10) /* each small list holds at most ~512 KiB */
/* A transformer layer's step (bench_steps transformer_128x8x256) frees more than 16 large
 * blocks at its end: with 16 kept, 10 a step (28 MB) were allocated and mapped afresh, 2841
 * page faults a step, 51 -> 46 ms on one thread with 64 kept. */
#define NBIG 64                       /* large blocks kept */
#define BIG_BYTES ((size_t)128 << 20) /* and at most 128 MiB of them */

typedef struct free_block {
    struct free_block *next;
} free_block;

typedef struct thread_state {
    free_block *head[NSMALL];
    int count[NSMALL];
    struct {
        void *p;
        size_t size;
    } big[NBIG];
    int nbig;
    size_t big_bytes;
    _Atomic long live;          /* tensors created minus freed on this thread */
    bool registered;
    struct thread_state *prev, *next; /* registry of live threads */
} thread_state;

static _Thread_local thread_state ts;

static pthread_once_t once = PTHREAD_ONCE_INIT;
static pthread_key_t exit_key;
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static thread_state *registry;
static atomic_long exited_live; /* counts of threads that have exited */

/* Rounds n up to its class size; returns the class index (small classes < NSMALL). */
static inline __attribute__((always_inline)) int size_class(size_t n, size_t *csize) {
    if (n <= 64) {
        *csize = 64;
        return 0;
    }
    int k = 63 - __builtin_clzll((unsigned long long)(n - 1)); /* 2^k < n <= 2^(k+1) */
    size_t q = (size_t)1 << (k - 2);
    size_t j = (n - ((size_t)1 << k) + q - 1) / q;              /* 1..4 quarters */
    *csize = ((size_t)1 << k) + j * q;
    return (k - 6) * 4 + (int)j;
}

static void drain(thread_state *s) {
    for (int c = 0; c < NSMALL; c++) {
        while (s->head[c]) {
            free_block *b = s->head[c];
            s->head[c] = b->next;
            free(b);
        }
        s->count[c] = 0;
    }
    for (int i = 0; i < s->nbig; i++) free(s->big[i].p);
    s->nbig = 0;
    s->big_bytes = 0;
}

static void unregister(thread_state *s) {
    if (!s->registered) return;
    pthread_mutex_lock(&registry_lock);
    atomic_fetch_add(&exited_live, atomic_load_explicit(&s->live, memory_order_relaxed));
    atomic_store_explicit(&s->live, 0, memory_order_relaxed);
    if (s->prev) s->prev->next = s->next;
    else registry = s->next;
    if (s->next) s->next->prev = s->prev;
    s->prev = s->next = NULL;
    s->registered = false;
    pthread_mutex_unlock(&registry_lock);
}

static void at_thread_exit(void *p) {
    thread_state *s = p;
    drain(s);
    unregister(s);
}

static void at_process_exit(void) { drain(&ts); }

static void init_once(void) {
    pthread_key_create(&exit_key, at_thread_exit);
    atexit(at_process_exit);
}

/* Links this thread's state into the registry and arms its exit destructor. */
static thread_state *state(void) {
    thread_state *s = &ts;
    if (__builtin_expect(!s->registered, 0)) {
        pthread_once(&once, init_once);
        pthread_setspecific(exit_key, s);
        pthread_mutex_lock(&registry_lock);
        s->prev = NULL;
        s->next = registry;
        if (registry) registry->prev = s;
        registry = s;
        s->registered = true;
        pthread_mutex_unlock(&registry_lock);
    }
    return s;
}

/* The slow paths: registering the thread, large blocks, full lists, user allocators. */
__attribute__((noinline)) static void *alloc_slow(size_t n) {
    if (n > SIZE_MAX / 2) /* no such block exists, and its class size would overflow */
        return ag__fail_null(AG_ERR_NOMEM, "out of memory allocating %zu bytes", n);
    size_t csize;
    size_class(n, &csize);
    if (!CACHE_ENABLED || ag__alloc_hooked) return ag__alloc(csize);
    thread_state *s = state();
    if (csize > SMALL_MAX)
        for (int i = s->nbig - 1; i >= 0; i--)
            if (s->big[i].size == csize) {
                void *p = s->big[i].p;
                s->big_bytes -= csize;
                s->big[i] = s->big[--s->nbig];
                return p;
            }
    return ag__alloc(csize);
}

__attribute__((noinline)) static void free_slow(void *p, size_t n) {
    if (!CACHE_ENABLED || ag__alloc_hooked) {
        ag__free(p);
        return;
    }
    size_t csize;
    int c = size_class(n, &csize);
    thread_state *s = state();
    if (csize <= SMALL_MAX) {
        if ((size_t)s->count[c] * csize < CLASS_BYTES || s->count[c] < 8) {
            free_block *b = p;
            b->next = s->head[c];
            s->head[c] = b;
            s->count[c]++;
            return;
        }
    } else if (csize <= BIG_BYTES) {
        /* Make room by dropping the oldest blocks. */
        while (s->nbig && (s->nbig == NBIG || s->big_bytes + csize > BIG_BYTES)) {
            free(s->big[0].p);
            s->big_bytes -= s->big[0].size;
            for (int i = 1; i < s->nbig; i++) s->big[i - 1] = s->big[i];
            s->nbig--;
        }
        s->big[s->nbig].p = p;
        s->big[s->nbig].size = csize;
        s->nbig++;
        s->big_bytes += csize;
        return;
    }
    ag__free(p);
}

/* Fast paths: pop or push a small class of a registered thread.  Always the class
 * size is allocated, whichever allocator serves it, so that any block freed later
 * can go back to its class. */
void *ag__cache_alloc(size_t n) {
    if (CACHE_ENABLED && n <= SMALL_MAX && !ag__alloc_hooked) {
        size_t csize;
        int c = size_class(n, &csize);
        free_block *b = ts.head[c];
        if (__builtin_expect(b != NULL, 1)) {
            ts.head[c] = b->next;
            ts.count[c]--;
            return b;
        }
    }
    return alloc_slow(n);
}

void ag__cache_free(void *p, size_t n) {
    if (!p) return;
    if (CACHE_ENABLED && n <= SMALL_MAX && !ag__alloc_hooked && ts.registered) {
        size_t csize;
        int c = size_class(n, &csize);
        if (ts.count[c] < 8 || (size_t)ts.count[c] * csize < CLASS_BYTES) {
            free_block *b = p;
            b->next = ts.head[c];
            ts.head[c] = b;
            ts.count[c]++;
            return;
        }
    }
    free_slow(p, n);
}

/* Tensor headers: the same, plus the live count. */
void *ag__tensor_alloc(size_t n) {
    void *t = ag__cache_alloc(n);
    if (t) {
        thread_state *s = state();
        atomic_store_explicit(&s->live, atomic_load_explicit(&s->live, memory_order_relaxed) + 1, memory_order_relaxed);
    }
    return t;
}

void ag__tensor_dead(void) {
    thread_state *s = state();
    atomic_store_explicit(&s->live, atomic_load_explicit(&s->live, memory_order_relaxed) - 1, memory_order_relaxed);
}

void ag_free_caches(void) {
    drain(&ts);
    ag__dnnl_cache_clear();
}

void ag_set_allocator(ag_alloc_fn f, void *ud) {
    ag_free_caches(); /* cached blocks belong to malloc */
    ag__set_alloc_hook(f, ud);
}

long ag_live_tensors(void) {
    pthread_mutex_lock(&registry_lock);
    long n = atomic_load(&exited_live);
    for (thread_state *s = registry; s; s = s->next) n += atomic_load_explicit(&s->live, memory_order_relaxed);
    pthread_mutex_unlock(&registry_lock);
    return n;
}

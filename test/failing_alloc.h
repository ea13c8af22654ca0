/*
 * failing_alloc.h - allocator hooks for tests.  failing_alloc counts calls,
 * fails the fail_at-th one (never while fail_at is -1), and counts the blocks
 * still allocated so a test can check that every failure leaks nothing.
 * peak_alloc counts the bytes alive, keeps their peak and refuses to go past
 * cap_bytes, so a test can bound the memory a call takes without timing it.
 * Install with ag_set_allocator(failing_alloc, NULL) (or peak_alloc).
 */
#ifndef AGRAD_FAILING_ALLOC_H
#define AGRAD_FAILING_ALLOC_H

#include <stdint.h>
#include <stdlib.h>

static long fail_at = -1, alloc_calls, live_blocks;

__attribute__((unused)) static void *failing_alloc(void *ud, void *ptr, size_t nsize) {
    (void)ud;
    if (nsize == 0) {
        live_blocks--;
        free(ptr);
        return NULL;
    }
    if (++alloc_calls == fail_at) return NULL;
    void *p = malloc(nsize);
    if (p) live_blocks++;
    return p;
}

static size_t live_bytes, peak_bytes, cap_bytes = SIZE_MAX;

__attribute__((unused)) static void *peak_alloc(void *ud, void *ptr, size_t nsize) {
    (void)ud;
    if (nsize == 0) { /* the size is kept in front of the block: a free gets none */
        size_t *h = (size_t *)ptr - 2;
        live_bytes -= h[0];
        free(h);
        return NULL;
    }
    if (nsize > cap_bytes - live_bytes) return NULL;
    size_t *h = (size_t *)malloc(nsize + 2 * sizeof(size_t));
    if (!h) return NULL;
    h[0] = nsize;
    live_bytes += nsize;
    if (live_bytes > peak_bytes) peak_bytes = live_bytes;
    return h + 2;
}

#endif

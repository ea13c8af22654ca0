/*
 * failing_alloc.h - an allocator hook for out-of-memory tests: counts calls,
 * fails the fail_at-th one (never while fail_at is -1), and counts the blocks
 * still allocated so a test can check that every failure leaks nothing.
 * Install with ag_set_allocator(failing_alloc, NULL).
 */
#ifndef AGRAD_FAILING_ALLOC_H
#define AGRAD_FAILING_ALLOC_H

#include <stdlib.h>

static long fail_at = -1, alloc_calls, live_blocks;

static void *failing_alloc(void *ud, void *ptr, size_t nsize) {
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

#endif

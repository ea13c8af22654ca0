/*
 * core/alloc.c - every allocation agrad makes goes through one hook (Lua style), so
 * that tests can make the k-th allocation fail.  The block caches (cache.c) sit
 * on top of it; ag_set_allocator, which must empty them first, lives there.
 */
#include <stdlib.h>
#include <string.h>
#include "core/internal.h"

static void *default_alloc(void *ud, void *ptr, size_t nsize) {
    (void)ud;
    if (nsize == 0) {
        free(ptr);
        return NULL;
    }
    return malloc(nsize);
}

static ag_alloc_fn alloc_fn = default_alloc;
static void *alloc_ud;

bool ag__alloc_hooked;

void ag__set_alloc_hook(ag_alloc_fn f, void *ud) {
    alloc_fn = f ? f : default_alloc;
    ag__alloc_hooked = f != NULL;
    alloc_ud = f ? ud : NULL;
}

void *ag__alloc(size_t n) {
    void *p = alloc_fn(alloc_ud, NULL, n ? n : 1);
    if (!p) ag__fail(AG_ERR_NOMEM, "out of memory allocating %zu bytes", n);
    return p;
}

void *ag__alloc_n(int64_t n, size_t size) {
    int64_t bytes;
    if (n < 0 || ag__mul_overflow(n, (int64_t)size, &bytes) || bytes > AG_MAX_SIZE)
        return ag__fail_null(AG_ERR_NOMEM, "out of memory allocating %lld items of %zu bytes", (long long)n, size);
    return ag__alloc((size_t)bytes);
}

void *ag__calloc(size_t n) {
    void *p = ag__alloc(n);
    if (p) memset(p, 0, n);
    return p;
}

void ag__free(void *p) {
    if (p) alloc_fn(alloc_ud, p, 0);
}

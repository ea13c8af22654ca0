/*
 * core/alloc.c - every allocation agrad makes goes through one hook (Lua style), so
 * that tests can make the k-th allocation fail.  The block caches (cache.c) sit
 * on top of it; ag_set_allocator, which must empty them first, lives there.
 *
 * The default hook is malloc/free, but a block of AG__HUGE_MIN bytes or more starts on
 * a 2 MiB boundary and its whole 2 MiB pages are advised as transparent huge pages
 * (madvise MADV_HUGEPAGE; PyTorch's THP_MEM_ALLOC_ENABLE=1 does the same from 2 MiB).
 * Mapping fresh memory a 4 KiB page at a time is one page fault each; on the
 * virtual machine this was measured on a fault costs about 12 µs, so a fresh 40 MiB
 * block took 124 ms to touch, 8.5 ms with the advice (glibc maps every block above
 * 32 MiB afresh, whatever was freed before).  The advice changes no data; pages
 * of the block that are never touched stay unmapped except within a touched 2 MiB
 * page, so a block maps at most 2 MiB more than its touched bytes.
 */
#define _DEFAULT_SOURCE /* madvise */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include "core/internal.h"

#define HUGE_PAGE ((size_t)2 << 20)

/* A block of n >= AG__HUGE_MIN bytes on a 2 MiB boundary, its whole huge pages advised
 * (where the system knows the advice; an advice refused is ignored); NULL when out of memory. */
static void *huge_alloc(size_t n) {
    void *p = aligned_alloc(HUGE_PAGE, (n + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE);
#ifdef MADV_HUGEPAGE
    if (p) (void)madvise(p, n / HUGE_PAGE * HUGE_PAGE, MADV_HUGEPAGE);
#endif
    return p;
}

static void *default_alloc(void *ud, void *ptr, size_t nsize) {
    (void)ud;
    if (nsize == 0) {
        free(ptr);
        return NULL;
    }
    return nsize >= AG__HUGE_MIN && nsize <= SIZE_MAX - HUGE_PAGE ? huge_alloc(nsize) : malloc(nsize);
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

/*
 * core/handles.c - checking the tensor handles passed to the public API
 * (AG_CHECK_HANDLES in core/internal.h), in two strengths.
 *
 * Every build: each tensor header carries a magic word, AG_TENSOR_LIVE from its
 * creation until it is freed, when core/tensor.c overwrites it with
 * AG_TENSOR_DEAD.  An entry point reads the word of each tensor argument (one
 * load and compare, inlined; its cost on the tiny-chain benchmark is in
 * docs/design.md#errors).  It catches a released handle used again as long as
 * its block has not been handed out for a new tensor header (freed headers go
 * to a per-thread cache first, so the common bug, release then use, is caught),
 * and a pointer to memory that never held a tensor.  It cannot catch a stale
 * handle whose block was reused for a new tensor (it is live again), and
 * reading a block that was given back to the system allocator is itself
 * undefined: it is a check, not a guarantee.
 *
 * With the meson option handle_checks (the default in debug builds, and so in
 * CI's sanitizer run) the word is not read: every header is entered in a
 * process-wide set of pointers when it is made and removed just before its
 * memory is given back, and the set only compares pointer values, so a freed
 * handle is never dereferenced and the check also holds under
 * AddressSanitizer and valgrind.  The set stores each pointer complemented
 * (~p), so that LeakSanitizer, which scans memory for pointers to find what is
 * still reachable, does not take a leaked tensor as referenced by the set.  It
 * is an open-addressing hash set (linear probing, deletion by backward shift)
 * behind one mutex, as tensors may be made on one thread and freed on another.
 * Its table comes from malloc, not the agrad allocator, so that
 * allocation-failure tests see the same allocations with and without it; if
 * the table cannot grow, unknown pointers are from then on taken as live (the
 * check never reports a live tensor as freed).  Here too a stale handle whose
 * memory has since been reused for a new tensor header looks live.
 */
#include "core/internal.h"

#if AG_HANDLE_CHECKS
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static uintptr_t *slots; /* 0 = empty */
static size_t cap, count;
static bool lost; /* the table once failed to grow: some live tensors are not in it */

static size_t hash(uintptr_t p, size_t mask) {
    uint64_t h = (uint64_t)p * 0x9E3779B97F4A7C15ull;
    return (size_t)(h >> 32) & mask;
}

static void put(uintptr_t *tab, size_t mask, uintptr_t p) {
    size_t i = hash(p, mask);
    while (tab[i]) i = (i + 1) & mask;
    tab[i] = p;
}

/* Doubles the table (cap 0 -> 1024); false when malloc fails. */
static bool grow(void) {
    size_t ncap = cap ? 2 * cap : 1024;
    uintptr_t *tab = calloc(ncap, sizeof *tab);
    if (!tab) return false;
    for (size_t i = 0; i < cap; i++)
        if (slots[i]) put(tab, ncap - 1, slots[i]);
    free(slots);
    slots = tab;
    cap = ncap;
    return true;
}

/* Index of p in the table, or cap if absent.  Call with the lock held. */
static size_t find(uintptr_t p) {
    if (!cap) return 0;
    size_t mask = cap - 1;
    for (size_t i = hash(p, mask); slots[i]; i = (i + 1) & mask)
        if (slots[i] == p) return i;
    return cap;
}

/* The value the set stores for t: its address complemented, hidden from LeakSanitizer. */
static uintptr_t key(const ag_tensor *t) { return ~(uintptr_t)t; }

void ag__handle_born(const ag_tensor *t) {
    pthread_mutex_lock(&lock);
    if (2 * (count + 1) > cap && !grow()) lost = true;
    else {
        put(slots, cap - 1, key(t));
        count++;
    }
    pthread_mutex_unlock(&lock);
}

void ag__handle_dead(const ag_tensor *t) {
    pthread_mutex_lock(&lock);
    size_t i = find(key(t));
    if (i < cap) {
        /* Backward-shift deletion: move later members of the probe run up. */
        size_t mask = cap - 1, j = i;
        slots[i] = 0;
        for (;;) {
            j = (j + 1) & mask;
            if (!slots[j]) break;
            size_t home = hash(slots[j], mask);
            /* slots[j] may move to i unless its home lies cyclically in (i, j]. */
            if ((j > i && (home <= i || home > j)) || (j < i && home <= i && home > j)) {
                slots[i] = slots[j];
                slots[j] = 0;
                i = j;
            }
        }
        count--;
    }
    pthread_mutex_unlock(&lock);
}

static bool live(const ag_tensor *t) {
    pthread_mutex_lock(&lock);
    bool ok = lost || find(key(t)) < cap;
    pthread_mutex_unlock(&lock);
    return ok;
}

bool ag_handle_checks(void) { return true; }
#else
#include <string.h>
/* Release builds: the header's magic word. */
static bool live(const ag_tensor *t) { return t->magic == AG_TENSOR_LIVE; }

bool ag_handle_checks(void) { return false; }
#endif

/* The k-th (0-based) comma-separated name of names, trimmed, into buf. */
static const char *nth_name(const char *names, int k, char *buf, size_t size) {
    while (k > 0 && *names)
        if (*names++ == ',') k--;
    while (*names == ' ') names++;
    size_t len = strcspn(names, ",");
    while (len && names[len - 1] == ' ') len--;
    if (len >= size) len = size - 1;
    memcpy(buf, names, len);
    buf[len] = '\0';
    return buf;
}

bool ag__handles_ok(const char *fn, const char *names, bool null_ok, int n, const ag_tensor *const *t) {
    char name[64];
    for (int i = 0; i < n; i++) {
        if (!t[i]) {
            if (null_ok) continue;
            ag__fail(AG_ERR_ARG, "%s: %s is NULL", fn, nth_name(names, i, name, sizeof name));
            return false;
        }
        if (!live(t[i])) {
            ag__fail(AG_ERR_ARG, "%s: %s is not a live tensor (freed or invalid handle)", fn,
                     nth_name(names, i, name, sizeof name));
            return false;
        }
    }
    return true;
}

bool ag__handle_array_ok(const char *fn, const char *name, ag_tensor *const *t, int n) {
    for (int i = 0; t && i < n; i++)
        if (t[i] && !live(t[i])) {
            ag__fail(AG_ERR_ARG, "%s: %s[%d] is not a live tensor (freed or invalid handle)", fn, name, i);
            return false;
        }
    return true;
}

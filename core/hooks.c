/*
 * core/hooks.c - the hook registry (core/hooks.h): numbered lists of callbacks,
 * one per tensor or module that has hooks, so that a tensor header holds four
 * bytes (in what was padding) instead of a pointer.  The table is shared by all
 * threads and guarded by a spin lock; callbacks never run under it.
 */
#include <string.h>
#include "core/hooks.h"

typedef struct hook {
    uint64_t serial;
    ag_hook_kind kind;
    ag__hook_fn fn;
    void *user;
    void (*free_user)(void *);
    struct hook *next;
} hook;

typedef struct list_slot {
    hook *head;      /* in registration order */
    bool used;
    uint32_t next_free;
} list_slot;

static list_slot *slots; /* slots[0] is never used: list 0 means none */
static uint32_t nslots, first_free;
static uint64_t next_serial = 1;
static atomic_flag lock = ATOMIC_FLAG_INIT;

static void take(void) {
    while (atomic_flag_test_and_set_explicit(&lock, memory_order_acquire)) {
    }
}
static void give(void) { atomic_flag_clear_explicit(&lock, memory_order_release); }

static void hook_free(hook *h) {
    if (h->free_user) h->free_user(h->user);
    ag__free(h);
}

/* A free list number, growing the table when none is free; 0 on ENOMEM.  Locked. */
static uint32_t new_list(void) {
    if (!first_free) {
        uint32_t cap = nslots ? 2 * nslots : 16;
        list_slot *g = ag__calloc(sizeof(list_slot) * cap);
        if (!g) return 0;
        if (nslots) memcpy(g, slots, sizeof(list_slot) * nslots);
        ag__free(slots);
        slots = g;
        for (uint32_t i = cap - 1; i >= (nslots ? nslots : 1); i--) {
            slots[i].next_free = first_free;
            first_free = i;
        }
        nslots = cap;
    }
    uint32_t i = first_free;
    first_free = slots[i].next_free;
    slots[i] = (list_slot){.used = true};
    return i;
}

ag_status ag__hook_add(const char *op, uint32_t *list, ag_hook_kind kind, ag__hook_fn fn, void *user,
                       void (*free_user)(void *), ag_hook_handle *handle) {
    hook *h = ag__alloc(sizeof(hook));
    take();
    uint32_t l = *list ? *list : h ? new_list() : 0;
    if (!h || !l) {
        give();
        if (h) ag__free(h);
        if (free_user) free_user(user);
        return ag__fail(AG_ERR_NOMEM, "%s: out of memory", op);
    }
    *list = l;
    *h = (hook){next_serial++, kind, fn, user, free_user, NULL};
    hook **end = &slots[l].head;
    while (*end) end = &(*end)->next;
    *end = h;
    if (handle) *handle = (ag_hook_handle){l, h->serial};
    give();
    return AG_OK;
}

ag_hook_entry *ag__hook_entries(const char *op, uint32_t list, ag_hook_kind kind, int *n) {
    *n = 0;
    take();
    int count = 0;
    for (hook *h = list < nslots ? slots[list].head : NULL; h; h = h->next) count += h->kind == kind;
    ag_hook_entry *e = count ? ag__alloc(sizeof(ag_hook_entry) * (size_t)count) : NULL;
    if (count && !e) {
        give();
        *n = -1;
        ag__fail(AG_ERR_NOMEM, "%s: out of memory", op);
        return NULL;
    }
    for (hook *h = count ? slots[list].head : NULL; h; h = h->next)
        if (h->kind == kind) e[(*n)++] = (ag_hook_entry){h->fn, h->user};
    give();
    return e;
}

void ag__hook_entries_free(ag_hook_entry *entries, int n) {
    (void)n;
    ag__free(entries);
}

void ag__hooks_free(uint32_t list) {
    take();
    if (!list || list >= nslots || !slots[list].used) {
        give();
        return;
    }
    hook *h = slots[list].head;
    slots[list] = (list_slot){.next_free = first_free};
    first_free = list;
    give();
    while (h) { /* outside the lock: free_user may release tensors, whose hooks go too */
        hook *next = h->next;
        hook_free(h);
        h = next;
    }
}

bool ag_hook_remove(ag_hook_handle handle) {
    take();
    hook *found = NULL;
    if (handle.list && handle.list < nslots && slots[handle.list].used)
        for (hook **p = &slots[handle.list].head; *p; p = &(*p)->next)
            if ((*p)->serial == handle.serial) {
                found = *p;
                *p = found->next;
                break;
            }
    give();
    if (found) hook_free(found);
    return found != NULL;
}

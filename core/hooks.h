/*
 * core/hooks.h - the hook registry: the lists of callbacks registered on tensors
 * (autograd/hooks.c) and modules (nn/module.c).  An owner holds the number of its
 * list (0: none yet); the registry keeps the callbacks and frees them, and the
 * state an internal hook owns, with the owner (ag__hooks_free).  Running them is
 * the owner's layer's business.  Not installed.
 */
#ifndef AGRAD_CORE_HOOKS_H
#define AGRAD_CORE_HOOKS_H

#include "core/internal.h"

/* What a hook is for; its fn is cast back to that kind's callback type. */
typedef enum {
    AG_HOOK_GRAD,            /* ag_tensor_hook: a tensor's gradient (ag_register_hook) */
    AG_HOOK_GRAD_INTERNAL,   /* ag_tensor_hook the library set (a module's backward hooks) */
    AG_HOOK_POST_ACCUMULATE, /* ag_post_accumulate_hook: a leaf's .grad is complete */
    AG_HOOK_FORWARD_PRE,     /* ag_forward_pre_hook */
    AG_HOOK_FORWARD,         /* ag_forward_hook */
    AG_HOOK_BACKWARD,        /* ag_backward_hook (a module's full backward hook) */
} ag_hook_kind;

typedef void (*ag__hook_fn)(void);

/* One callback, as the runner sees it: a copy taken before the first one runs, so
 * that a hook may register or remove hooks (which then apply from the next run). */
typedef struct ag_hook_entry {
    ag__hook_fn fn;
    void *user;
} ag_hook_entry;

/* Adds fn (kind) with user to the list *list, creating the list when *list is 0;
 * free_user (may be NULL) is called on user when the hook goes (removed, or its
 * owner freed).  Writes its handle to *handle when not NULL.  AG_OK, or
 * AG_ERR_NOMEM naming op (free_user is then called on user). */
AG_HIDDEN ag_status ag__hook_add(const char *op, uint32_t *list, ag_hook_kind kind, ag__hook_fn fn, void *user,
                                 void (*free_user)(void *), ag_hook_handle *handle);
/* The hooks of kind in list, in registration order: *n of them in a new array the
 * caller frees with ag__hook_entries_free(entries, n).  NULL with *n = 0 when there
 * are none; NULL with *n = -1 and AG_ERR_NOMEM recorded naming op on ENOMEM. */
AG_HIDDEN ag_hook_entry *ag__hook_entries(const char *op, uint32_t list, ag_hook_kind kind, int *n);
AG_HIDDEN void ag__hook_entries_free(ag_hook_entry *entries, int n);
/* Frees every hook of list and the list itself (an owner going). */
AG_HIDDEN void ag__hooks_free(uint32_t list);

#endif

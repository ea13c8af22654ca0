/*
 * hooks.c - tensor hooks (torch.Tensor.register_hook and
 * register_post_accumulate_grad_hook): registering them, and running them for
 * the reverse pass (autograd/backward.c calls the runners, in no-grad mode, where
 * a gradient is complete; docs/design.md#hooks-in-the-backward-walk).  The callbacks live in
 * core's hook registry (core/hooks.h), freed with the tensor.
 */
#include <string.h>
#include "core/hooks.h"
#include "autograd/tape.h"
#include "agrad/autograd.h"

/* "a leaf float32 [2, 3]" or "the output of MulBackward0 (float32 [2, 3])". */
static const char *describe(const ag_tensor *t, char *buf, size_t n) {
    char s[AG_SHAPE_STR];
    if (t->op) snprintf(buf, n, "the output of %s (%s %s)", t->op->grad_fn, ag_dtype_name(t->dtype), ag__tshape(s, t));
    else snprintf(buf, n, "a leaf %s %s", ag_dtype_name(t->dtype), ag__tshape(s, t));
    return buf;
}

static ag_status add(const char *op, ag_tensor *t, ag_hook_kind kind, ag__hook_fn fn, void *user,
                     void (*free_user)(void *), ag_hook_handle *handle) {
    if (handle) *handle = (ag_hook_handle){0, 0};
    ag_status st = ag__hook_add(op, &t->hooks, kind, fn, user, free_user, handle);
    if (st == AG_OK) t->hooked = true;
    return st;
}

ag_status ag_register_hook(ag_tensor *t, ag_tensor_hook fn, void *user, ag_hook_handle *handle) {
    AG_CHECK_HANDLES_NONNULL(AG_ERR_ARG, "register_hook", t);
    if (!fn) return ag__fail(AG_ERR_ARG, "register_hook: the hook function is NULL");
    if (!t->requires_grad)
        return ag__fail(AG_ERR_GRAPH, "register_hook: cannot register a hook on a tensor that doesn't require gradient");
    return add("register_hook", t, AG_HOOK_GRAD, (ag__hook_fn)fn, user, NULL, handle);
}

ag_status ag_register_post_accumulate_grad_hook(ag_tensor *t, ag_post_accumulate_hook fn, void *user,
                                                ag_hook_handle *handle) {
    AG_CHECK_HANDLES_NONNULL(AG_ERR_ARG, "register_post_accumulate_grad_hook", t);
    if (!fn) return ag__fail(AG_ERR_ARG, "register_post_accumulate_grad_hook: the hook function is NULL");
    if (t->op || t->graph_freed)
        return ag__fail(AG_ERR_GRAPH, "register_post_accumulate_grad_hook: post accumulate grad hooks cannot be "
                                      "registered on non-leaf tensors");
    if (!t->requires_grad)
        return ag__fail(AG_ERR_GRAPH, "register_post_accumulate_grad_hook: cannot register a hook on a tensor that "
                                      "doesn't require gradient");
    return add("register_post_accumulate_grad_hook", t, AG_HOOK_POST_ACCUMULATE, (ag__hook_fn)fn, user, NULL, handle);
}

ag_status ag__register_grad_hook_owned(ag_tensor *t, ag_tensor_hook fn, void *user, void (*free_user)(void *)) {
    return add("register_hook", t, AG_HOOK_GRAD_INTERNAL, (ag__hook_fn)fn, user, free_user, NULL);
}

/* Re-records the callback's failure st after a prefix naming the hook and t. */
static ag_status wrap_failure(ag_status st, const char *what, int i, int n, const ag_tensor *t) {
    char msg[1024], d[AG_SHAPE_STR + 64];
    snprintf(msg, sizeof msg, "%s", ag_last_status() ? ag_last_error() : "no message recorded");
    return ag__fail(st, "backward: %s %d of %d on %s failed (%s): %s", what, i + 1, n, describe(t, d, sizeof d),
                    ag_status_name(st), msg);
}

/* Runs one tensor hook on g inside a scope of its own; *out gets
 * its replacement (a reference of ours) or NULL. */
static ag_status call_grad_hook(const ag_hook_entry *e, ag_tensor *g, ag_tensor **out) {
    *out = NULL;
    ag_clear_error();
    if (ag_scope_begin()) return AG_ERR_NOMEM;
    ag_tensor *r = NULL;
    ag_status st = ((ag_tensor_hook)e->fn)(g, &r, e->user);
    if (st == AG_OK && r) *out = ag__retain(r);
    ag_scope_end();
    return st;
}

static ag_status run_kind(ag_tensor *t, ag_tensor **g, ag_hook_kind kind) {
    int n;
    ag_hook_entry *e = ag__hook_entries("backward", t->hooks, kind, &n);
    if (n < 0) return AG_ERR_NOMEM;
    ag_status st = AG_OK;
    for (int i = 0; i < n && st == AG_OK; i++) {
        ag_tensor *r;
        st = call_grad_hook(&e[i], *g, &r);
        if (st != AG_OK) {
            ag__release(r);
            if (kind == AG_HOOK_GRAD) st = wrap_failure(st, "hook", i, n, t); /* an internal hook names its module */
            break;
        }
        if (!r || r == *g) {
            ag__release(r);
            continue;
        }
        if (r->dtype != t->dtype || r->ndim != t->ndim ||
            memcmp(r->shape, t->shape, sizeof(int64_t) * (size_t)t->ndim) != 0) {
            char s1[AG_SHAPE_STR], s2[AG_SHAPE_STR], d[AG_SHAPE_STR + 64];
            st = ag__fail(AG_ERR_SHAPE, "backward: hook %d of %d on %s returned a %s %s gradient; expected %s %s",
                          i + 1, n, describe(t, d, sizeof d), ag_dtype_name(r->dtype), ag__tshape(s1, r),
                          ag_dtype_name(t->dtype), ag__tshape(s2, t));
            ag__release(r);
            break;
        }
        ag__release(*g);
        *g = r;
    }
    ag__hook_entries_free(e, n);
    return st;
}

ag_status ag__run_grad_hooks(ag_tensor *t, ag_tensor **g) {
    ag_status st = run_kind(t, g, AG_HOOK_GRAD_INTERNAL);
    return st == AG_OK ? run_kind(t, g, AG_HOOK_GRAD) : st;
}

ag_status ag__run_post_accumulate_hooks(ag_tensor *t) {
    int n;
    ag_hook_entry *e = ag__hook_entries("backward", t->hooks, AG_HOOK_POST_ACCUMULATE, &n);
    if (n < 0) return AG_ERR_NOMEM;
    ag_status st = AG_OK;
    for (int i = 0; i < n && st == AG_OK; i++) {
        ag_clear_error();
        if (ag_scope_begin()) {
            st = AG_ERR_NOMEM;
            break;
        }
        st = ((ag_post_accumulate_hook)e[i].fn)(t, e[i].user);
        ag_scope_end();
        if (st != AG_OK) st = wrap_failure(st, "post-accumulate-grad hook", i, n, t);
    }
    ag__hook_entries_free(e, n);
    return st;
}

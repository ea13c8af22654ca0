/*
 * module.c - the module object: parameters, buffers and children by name,
 * train/eval mode, traversal in PyTorch's order, printing, summary and state.
 */
#include <math.h>
#include <string.h>
#include "core/iter.h"
#include "io/state.h"
#include "nn/internal.h"
#include "core/hooks.h"
#include "autograd/tape.h"
#include "nn/module.h"
#include "agrad/nn.h"
#include "agrad/autograd.h"
#include "agrad/ops.h"

/* SLOT_COMPUTED: a tensor the module's forward reads by a parameter's name but that is
 * computed from parameters (weight_norm, spectral_norm): not a parameter, not saved. */
typedef enum { SLOT_PARAM, SLOT_BUFFER, SLOT_CHILD, SLOT_COMPUTED } slot_kind;

typedef struct slot {
    char *name;
    slot_kind kind;
    ag_tensor *t;  /* parameter or buffer */
    ag_module *m;  /* child */
} slot;

struct ag_module {
    const ag_module_type *type;
    void *data;
    ag_module *parent; /* the module that owns this one as a child (one at most), or NULL */
    bool training;
    slot *slots;
    int nslots, cap;
    /* Set by ag_module_forward while a summary runs. */
    bool has_shape;
    ag_shape last_shape;
    uint32_t hooks; /* its hook list (core/hooks.h), 0 if none */
    ag_module_forward_n_fn forward_n; /* ag_module_set_forward_n, or NULL */
};

static _Thread_local bool summary_active;

ag_module *ag_module_new(const ag_module_type *type, void *data) {
    if (!type || !type->forward) {
        if (type && type->destroy) type->destroy(data);
        else ag__free(data);
        return ag__fail_null(AG_ERR_ARG, "module_new: a type with a forward function is required");
    }
    ag_module *m = ag__calloc(sizeof(ag_module));
    if (!m) {
        if (type->destroy) type->destroy(data);
        else ag__free(data);
        return NULL;
    }
    m->type = type;
    m->data = data;
    m->training = true;
    return m;
}

void *ag_module_data(const ag_module *m) { return m ? m->data : NULL; }
const char *ag_module_type_name(const ag_module *m) { return m ? m->type->name : NULL; }

ag_module *ag__module_parent(const ag_module *m) { return m ? m->parent : NULL; }

const ag_module_type *ag__module_type(const ag_module *m) { return m ? m->type : NULL; }

/* Writes m's type, and for a child where it sits: `Linear (child "0" of Sequential)`. */
static char *describe(const ag_module *m, char *buf, size_t size) {
    const char *name = NULL;
    for (int i = 0; m->parent && i < m->parent->nslots; i++)
        if (m->parent->slots[i].m == m) name = m->parent->slots[i].name;
    if (name) snprintf(buf, size, "%s (child \"%s\" of %s)", m->type->name, name, m->parent->type->name);
    else snprintf(buf, size, "%s", m->type->name);
    return buf;
}

static void free_tree(ag_module *m) {
    for (int i = 0; i < m->nslots; i++) {
        ag__free(m->slots[i].name);
        ag_release(m->slots[i].t);
        if (m->slots[i].m) free_tree(m->slots[i].m);
    }
    ag__free(m->slots);
    ag__hooks_free(m->hooks);
    if (m->type->destroy) m->type->destroy(m->data);
    else ag__free(m->data);
    ag__free(m);
}

void ag__module_retype(ag_module *m, const ag_module_type *type, void *data) {
    if (m->type->destroy) m->type->destroy(m->data);
    else ag__free(m->data);
    m->type = type;
    m->data = data;
}

void ag_module_free(ag_module *m) {
    if (!m) return;
    if (m->parent) { /* its parent frees it: freeing it now would leave the parent a dangling child */
        char d[256];
        ag__fail(AG_ERR_ARG, "module_free: %s belongs to its parent, which frees it; free the root module instead",
                 describe(m, d, sizeof d));
        return;
    }
    free_tree(m);
}

/* Refuses, without freeing child, a child that can't be m's: m itself, an ancestor of
 * m (a cycle), or a module that already has a parent (it would be freed twice). */
static ag_status check_adoption(const char *fn, const ag_module *m, const char *name, const ag_module *child) {
    const char *why = NULL;
    if (child == m) why = "a module can't be its own child";
    for (const ag_module *a = m->parent; !why && a; a = a->parent)
        if (a == child) why = "it contains the parent, which would make a cycle";
    if (!why && child->parent) why = "it already has a parent, and a module has one (make a second module)";
    if (!why) return AG_OK;
    char c[256], p[256];
    return ag__fail(AG_ERR_ARG, "%s: can't add %s as child \"%s\" of %s: %s", fn, describe(child, c, sizeof c), name,
                    describe(m, p, sizeof p), why);
}

static slot *find_slot(const ag_module *m, const char *name) {
    for (int i = 0; i < m->nslots; i++)
        if (strcmp(m->slots[i].name, name) == 0) return &m->slots[i];
    return NULL;
}

static ag_status add_slot(ag_module *m, const char *name, slot_kind kind, ag_tensor *t, ag_module *child) {
    static const char *what[] = {"register_parameter", "register_buffer", "add_child"};
    if (kind != SLOT_CHILD) AG_CHECK_HANDLES(AG_ERR_ARG, kind == SLOT_PARAM ? "module_register_parameter" : "module_register_buffer", t);
    if (!m || !name || !*name || strchr(name, '.') || (kind != SLOT_CHILD && !t) || (kind == SLOT_CHILD && !child)) {
        ag_module_free(child);
        return ag__fail(AG_ERR_ARG, "module %s: invalid argument (NULL, or a name that is empty or contains '.')",
                        what[kind]);
    }
    if (find_slot(m, name)) {
        ag_module_free(child);
        return ag__fail(AG_ERR_ARG, "module %s: %s already has an attribute named \"%s\"", what[kind], m->type->name, name);
    }
    if (kind != SLOT_CHILD && t->dtype != AG_F32 && t->dtype != AG_F64 && kind == SLOT_PARAM) {
        return ag__fail(AG_ERR_DTYPE, "module register_parameter: \"%s\" must be float32 or float64, got %s", name,
                        ag_dtype_name(t->dtype));
    }
    if (m->nslots == m->cap) {
        int cap = m->cap ? 2 * m->cap : 4;
        slot *g = ag__alloc(sizeof(slot) * (size_t)cap);
        if (!g) {
            ag_module_free(child);
            return AG_ERR_NOMEM;
        }
        if (m->nslots) memcpy(g, m->slots, sizeof(slot) * (size_t)m->nslots);
        ag__free(m->slots);
        m->slots = g;
        m->cap = cap;
    }
    size_t len = strlen(name);
    char *copy = ag__alloc(len + 1);
    if (!copy) {
        ag_module_free(child);
        return AG_ERR_NOMEM;
    }
    memcpy(copy, name, len + 1);
    if (kind == SLOT_PARAM && t->op) {
        ag__free(copy);
        return ag__fail(AG_ERR_ARG, "module register_parameter: \"%s\" must be a leaf tensor (use ag_detach)", name);
    }
    if (kind == SLOT_PARAM) t->requires_grad = true;
    m->slots[m->nslots++] = (slot){copy, kind, ag_retain(t), child};
    if (child) child->parent = m;
    return AG_OK;
}

ag_status ag_module_register_parameter(ag_module *m, const char *name, ag_tensor *t) {
    return add_slot(m, name, SLOT_PARAM, t, NULL);
}
ag_status ag_module_register_buffer(ag_module *m, const char *name, ag_tensor *t) {
    return add_slot(m, name, SLOT_BUFFER, t, NULL);
}
ag_status ag__module_add_child(const char *fn, ag_module *m, const char *name, ag_module *child) {
    if (m && child) {
        ag_status st = check_adoption(fn, m, name ? name : "(null)", child);
        if (st) return st;
    }
    return add_slot(m, name, SLOT_CHILD, NULL, child);
}
ag_status ag_module_add_child(ag_module *m, const char *name, ag_module *child) {
    return ag__module_add_child("module add_child", m, name, child);
}

static ag_tensor *get_tensor(const ag_module *m, const char *name, slot_kind kind) {
    slot *s = m && name ? find_slot(m, name) : NULL;
    return s && (s->kind == kind || (kind == SLOT_PARAM && s->kind == SLOT_COMPUTED)) ? s->t : NULL;
}

ag_tensor *ag__module_take_tensor(ag_module *m, const char *name) {
    slot *s = find_slot(m, name);
    if (!s || s->kind == SLOT_CHILD) return NULL;
    ag_tensor *t = s->t;
    ag__free(s->name);
    int i = (int)(s - m->slots);
    memmove(m->slots + i, m->slots + i + 1, sizeof(slot) * (size_t)(m->nslots - i - 1));
    m->nslots--;
    return t;
}

ag_status ag__module_set_computed(ag_module *m, const char *name, ag_tensor *t) {
    slot *s = find_slot(m, name);
    if (!s) {
        ag_status st = add_slot(m, name, SLOT_BUFFER, t, NULL);
        if (st) return st;
        s = &m->slots[m->nslots - 1];
        s->kind = SLOT_COMPUTED;
        return AG_OK;
    }
    if (s->kind != SLOT_COMPUTED)
        return ag__fail(AG_ERR_ARG, "module: \"%s\" is already a parameter, buffer or child of %s", name, m->type->name);
    ag_retain(t);
    ag_release(s->t);
    s->t = t;
    return AG_OK;
}

bool ag__module_is_parameter(const ag_module *m, const char *name) {
    slot *s = m && name ? find_slot(m, name) : NULL;
    return s && s->kind == SLOT_PARAM;
}
ag_tensor *ag_module_get_parameter(const ag_module *m, const char *name) { return get_tensor(m, name, SLOT_PARAM); }
ag_tensor *ag_module_get_buffer(const ag_module *m, const char *name) { return get_tensor(m, name, SLOT_BUFFER); }
ag_module *ag_module_get_child(const ag_module *m, const char *name) {
    slot *s = m && name ? find_slot(m, name) : NULL;
    return s && s->kind == SLOT_CHILD ? s->m : NULL;
}

ag_status ag_module_set_tensor(ag_module *m, const char *name, ag_tensor *t) {
    AG_CHECK_HANDLES(AG_ERR_ARG, "module_set_tensor", t);
    slot *s = m && name ? find_slot(m, name) : NULL;
    if (!s || s->kind == SLOT_CHILD || !t)
        return ag__fail(AG_ERR_ARG, "module set_tensor: no parameter or buffer named \"%s\"", name ? name : "(null)");
    if (s->t != t && s->t->storage->base)
        return ag__fail(AG_ERR_ARG, "module set_tensor: \"%s\" lives in a flat parameter buffer (ag_flatten_parameters, "
                                    "ag_ddp_new); a new tensor would leave it, unseen by the buffer's all-reduce: "
                                    "copy the values in with ag_copy_ instead", name);
    if (s->kind == SLOT_PARAM) t->requires_grad = true;
    ag_retain(t);
    ag_release(s->t);
    s->t = t;
    return AG_OK;
}

/* ---- hooks ------------------------------------------------------------------------------------ */
static ag_status add_hook(const char *op, ag_module *m, ag_hook_kind kind, ag__hook_fn fn, void *user,
                          ag_hook_handle *handle) {
    if (handle) *handle = (ag_hook_handle){0, 0};
    if (!m || !fn) return ag__fail(AG_ERR_ARG, "%s: the module or the hook function is NULL", op);
    return ag__hook_add(op, &m->hooks, kind, fn, user, NULL, handle);
}

ag_status ag__module_add_pre_hook(const char *op, ag_module *m, ag_forward_pre_hook fn, void *user,
                                  void (*free_user)(void *), ag_hook_handle *handle) {
    return ag__hook_add(op, &m->hooks, AG_HOOK_FORWARD_PRE, (ag__hook_fn)fn, user, free_user, handle);
}

void *ag__module_find_pre_hook(const ag_module *m, ag_forward_pre_hook fn, bool (*match)(const void *user, const void *key),
                               const void *key) {
    int n = 0;
    ag_hook_entry *e = m->hooks ? ag__hook_entries("module", m->hooks, AG_HOOK_FORWARD_PRE, &n) : NULL;
    void *found = NULL;
    for (int i = 0; i < n && !found; i++)
        if (e[i].fn == (ag__hook_fn)fn && match(e[i].user, key)) found = e[i].user;
    if (e) ag__hook_entries_free(e, n);
    return found;
}
ag_status ag_module_register_forward_pre_hook(ag_module *m, ag_forward_pre_hook fn, void *user, ag_hook_handle *handle) {
    return add_hook("module_register_forward_pre_hook", m, AG_HOOK_FORWARD_PRE, (ag__hook_fn)fn, user, handle);
}
ag_status ag_module_register_forward_hook(ag_module *m, ag_forward_hook fn, void *user, ag_hook_handle *handle) {
    return add_hook("module_register_forward_hook", m, AG_HOOK_FORWARD, (ag__hook_fn)fn, user, handle);
}
ag_status ag_module_register_full_backward_hook(ag_module *m, ag_backward_hook fn, void *user, ag_hook_handle *handle) {
    return add_hook("module_register_full_backward_hook", m, AG_HOOK_BACKWARD, (ag__hook_fn)fn, user, handle);
}

/* Re-records a hook's failure st after a prefix naming it and the module. */
static ag_status hook_failed(ag_status st, const char *fn, const char *what, int i, int n, const char *module) {
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", ag_last_status() ? ag_last_error() : "no message recorded");
    return ag__fail(st, "%s: %s %d of %d of %s failed (%s): %s", fn, what, i + 1, n, module, ag_status_name(st), msg);
}

/* What one forward's backward hooks need in backward: shared by the hooks on the
 * views of its input and output, freed with the last of them. */
typedef struct backward_state {
    int refs;
    ag_module *m;       /* handed to the hooks, never read */
    ag_hook_entry *hooks; /* the module's backward hooks when forward ran */
    int n;
    bool input_hooked;  /* the input required grad: the input view's hook calls them */
    ag_tensor *grad_output; /* dL/dy, from the output view's hook until the input's */
    char name[256];     /* the module, for messages */
} backward_state;

static void state_free(void *p) {
    backward_state *b = p;
    if (--b->refs > 0) return;
    ag__hook_entries_free(b->hooks, b->n);
    ag__release(b->grad_output);
    ag__free(b);
}

/* Calls the backward hooks with dL/dx = *gin (NULL: none) and dL/dy, inside the
 * scope the tensor-hook runner opened (so that ag_keep in a hook reaches the
 * caller's); a replacement of a non-NULL *gin (x's shape and dtype) replaces it
 * (a reference of ours). */
static ag_status call_backward_hooks(backward_state *b, ag_tensor **gin) {
    for (int i = 0; i < b->n; i++) {
        ag_tensor *r = NULL;
        ag_clear_error();
        ag_status st = ((ag_backward_hook)b->hooks[i].fn)(b->m, *gin, b->grad_output, &r, b->hooks[i].user);
        r = st == AG_OK && *gin && r != *gin ? ag__retain(r) : NULL;
        if (st != AG_OK) return hook_failed(st, "backward", "backward hook", i, b->n, b->name);
        if (!r) continue;
        if (r->dtype != (*gin)->dtype || r->ndim != (*gin)->ndim ||
            memcmp(r->shape, (*gin)->shape, sizeof(int64_t) * (size_t)r->ndim) != 0) {
            char s1[AG_SHAPE_STR], s2[AG_SHAPE_STR];
            st = ag__fail(AG_ERR_SHAPE, "backward: backward hook %d of %d of %s returned a %s %s grad_input; expected %s %s",
                          i + 1, b->n, b->name, ag_dtype_name(r->dtype), ag__tshape(s1, r),
                          ag_dtype_name((*gin)->dtype), ag__tshape(s2, *gin));
            ag__release(r);
            return st;
        }
        ag__release(*gin);
        *gin = r;
    }
    return AG_OK;
}

/* The hook on the output view: keeps dL/dy; calls the hooks now when no dL/dx will come. */
static ag_status output_grad(ag_tensor *grad, ag_tensor **replace, void *user) {
    (void)replace;
    backward_state *b = user;
    ag__release(b->grad_output);
    b->grad_output = ag__retain(grad);
    if (b->input_hooked) return AG_OK;
    ag_tensor *none = NULL;
    return call_backward_hooks(b, &none);
}

/* The hook on the input view: dL/dx is complete. */
static ag_status input_grad(ag_tensor *grad, ag_tensor **replace, void *user) {
    backward_state *b = user;
    ag_tensor *g = ag__retain(grad);
    ag_status st = call_backward_hooks(b, &g);
    ag__release(b->grad_output);
    b->grad_output = NULL;
    if (st != AG_OK || g == grad) {
        ag__release(g);
        return st;
    }
    *replace = ag__own(g); /* our reference goes to the runner's scope, which takes its own */
    return *replace ? AG_OK : AG_ERR_NOMEM;
}

/* An identity view of t recorded on the tape, carrying a hook of b. */
static ag_tensor *hooked_view(ag_tensor *t, ag_tensor_hook fn, backward_state *b) {
    ag_tensor *v = ag_view(t, ag_shape_of(t));
    if (!v) return NULL;
    b->refs++;
    if (ag__register_grad_hook_owned(v, fn, b, state_free)) return NULL;
    return v;
}

/* ag_module_forward's body when m has hooks (inside its composite scope). */
static ag_tensor *hooked_forward(ag_module *m, ag_tensor *x) {
    int n;
    ag_hook_entry *pre = ag__hook_entries("module_forward", m->hooks, AG_HOOK_FORWARD_PRE, &n);
    if (n < 0) return NULL;
    char name[256];
    describe(m, name, sizeof name);
    for (int i = 0; i < n; i++) {
        ag_tensor *r = NULL;
        ag_clear_error();
        ag_status st = ((ag_forward_pre_hook)pre[i].fn)(m, x, &r, pre[i].user);
        if (st != AG_OK) {
            ag__hook_entries_free(pre, n);
            return (void)hook_failed(st, "module_forward", "forward pre-hook", i, n, name), NULL;
        }
        if (r) x = r;
    }
    ag__hook_entries_free(pre, n);

    backward_state *b = NULL;
    int nb;
    ag_hook_entry *bh = ag__hook_entries("module_forward", m->hooks, AG_HOOK_BACKWARD, &nb);
    if (nb < 0) return NULL;
    if (nb && ag_is_grad_enabled() && ag_requires_grad(x)) {
        b = ag__calloc(sizeof *b);
        if (!b) {
            ag__hook_entries_free(bh, nb);
            return NULL;
        }
        *b = (backward_state){.refs = 1, .m = m, .hooks = bh, .n = nb, .input_hooked = true};
        snprintf(b->name, sizeof b->name, "%s", name);
        x = hooked_view(x, input_grad, b);
        if (!x) {
            state_free(b);
            return NULL;
        }
    } else if (nb && ag_is_grad_enabled()) {
        b = ag__calloc(sizeof *b);
        if (!b) {
            ag__hook_entries_free(bh, nb);
            return NULL;
        }
        *b = (backward_state){.refs = 1, .m = m, .hooks = bh, .n = nb};
        snprintf(b->name, sizeof b->name, "%s", name);
    } else {
        ag__hook_entries_free(bh, nb);
    }

    ag_tensor *y = m->type->forward(m, x);
    ag_hook_entry *fh = y ? ag__hook_entries("module_forward", m->hooks, AG_HOOK_FORWARD, &n) : NULL;
    if (!y || n < 0) y = NULL, n = 0;
    for (int i = 0; i < n && y; i++) {
        ag_tensor *r = NULL;
        ag_clear_error();
        ag_status st = ((ag_forward_hook)fh[i].fn)(m, x, y, &r, fh[i].user);
        if (st != AG_OK) {
            hook_failed(st, "module_forward", "forward hook", i, n, name);
            y = NULL;
        } else if (r) y = ag_view(r, ag_shape_of(r)); /* made here, so the composite hands it out */
    }
    ag__hook_entries_free(fh, n);
    if (b && y && ag_requires_grad(y)) y = hooked_view(y, output_grad, b);
    if (b) state_free(b); /* forward's own reference */
    return y;
}

/* ---- forward and modes ------------------------------------------------------------------- */
ag_tensor *ag_module_forward(ag_module *m, ag_tensor *x) {
    AG_CHECK_HANDLES(NULL, "module_forward", x);
    if (!x) return NULL;
    if (!m) return ag__fail_null(AG_ERR_ARG, "module_forward: module is NULL");
    /* A forward is a composite: what it makes besides y goes with its scope. */
    if (ag__composite_begin("module_forward")) return NULL;
    ag_tensor *y = ag__composite_end(m->hooks ? hooked_forward(m, x) : m->type->forward(m, x));
    if (y && summary_active) {
        m->has_shape = true;
        m->last_shape = ag_shape_of(y);
    }
    return y;
}

bool ag__module_plain(const ag_module *m) { return m && !m->hooks && !summary_active; }

void ag_module_set_forward_n(ag_module *m, ag_module_forward_n_fn fn) {
    if (m) m->forward_n = fn;
}

ag_status ag_module_forward_n(ag_module *m, int n_in, ag_tensor *const *in, const void *opts, int n_out,
                              ag_tensor **out) {
    for (int i = 0; out && i < n_out; i++) out[i] = NULL;
    if (!m) return ag__fail(AG_ERR_ARG, "module_forward_n: module is NULL");
    if (!m->forward_n)
        return ag__fail(AG_ERR_ARG, "module_forward_n: %s has no forward over several tensors (ag_module_set_forward_n)",
                        m->type->name);
    if (n_in < 1 || n_in > AG_MODULE_MAX_IO || n_out < 1 || n_out > AG_MODULE_MAX_IO || !in || !out)
        return ag__fail(AG_ERR_ARG, "module_forward_n: %s takes 1 to %d inputs and outputs, got %d in and %d out",
                        m->type->name, AG_MODULE_MAX_IO, n_in, n_out);
    for (int i = 0; i < n_in; i++) AG_CHECK_HANDLES(AG_ERR_ARG, "module_forward_n", in[i]);
    /* As ag_module_forward: the forward's intermediates go with a scope of its own. */
    if (ag_scope_begin()) return ag_last_status();
    ag_tensor *got[AG_MODULE_MAX_IO] = {NULL};
    ag_status st = m->forward_n(m, n_in, in, opts, n_out, got);
    /* Out of the forward's scope into the caller's (ag_keep fails only when an enclosing
     * scope takes what it kept, so nothing is lost on failure). */
    for (int i = 0; i < n_out && !st; i++)
        if (got[i] && !ag_keep(got[i])) st = ag_last_status();
    for (int i = 0; i < n_out && !st; i++) out[i] = got[i];
    ag_scope_end();
    return st;
}

void ag_module_train(ag_module *m, bool training) {
    if (!m) return;
    m->training = training;
    for (int i = 0; i < m->nslots; i++)
        if (m->slots[i].kind == SLOT_CHILD) ag_module_train(m->slots[i].m, training);
}
void ag_module_eval(ag_module *m) { ag_module_train(m, false); }
bool ag_module_is_training(const ag_module *m) { return m && m->training; }

/* ---- traversal -------------------------------------------------------------------------- */
typedef bool (*tensor_visit)(const char *name, ag_tensor *t, slot_kind kind, void *ud);

/* Visits parameters and buffers in PyTorch's order; stops early if visit returns false. */
static bool walk(const ag_module *m, char *prefix, size_t cap, size_t len, tensor_visit visit, void *ud) {
    for (int pass = 0; pass < 2; pass++) /* own tensors first, then children */
        for (int i = 0; i < m->nslots; i++) {
            const slot *s = &m->slots[i];
            if ((pass == 0) == (s->kind == SLOT_CHILD) || s->kind == SLOT_COMPUTED) continue;
            int w = snprintf(prefix + len, cap - len, "%s%s", s->name, s->kind == SLOT_CHILD ? "." : "");
            size_t nlen = len + (size_t)(w > 0 ? w : 0);
            if (nlen >= cap) nlen = cap - 1;
            bool go = s->kind == SLOT_CHILD ? walk(s->m, prefix, cap, nlen, visit, ud) : visit(prefix, s->t, s->kind, ud);
            prefix[len] = '\0';
            if (!go) return false;
        }
    return true;
}

typedef struct nth {
    int want, seen;
    ag_tensor *found;
    char *name;
    size_t name_size;
    ag_tensor **out;
    int max;
    int64_t elems;
    bool trainable_only;
} nth;

static bool visit_nth(const char *name, ag_tensor *t, slot_kind kind, void *ud) {
    nth *n = ud;
    if (kind != SLOT_PARAM) return true;
    if (n->seen++ == n->want) {
        n->found = t;
        if (n->name) snprintf(n->name, n->name_size, "%s", name);
        return false;
    }
    return true;
}

static bool visit_collect(const char *name, ag_tensor *t, slot_kind kind, void *ud) {
    nth *n = ud;
    (void)name;
    if (kind != SLOT_PARAM) return true;
    if (n->out && n->seen < n->max) n->out[n->seen] = t;
    n->seen++;
    if (!n->trainable_only || t->requires_grad) n->elems += ag_numel(t);
    return true;
}

int ag_module_num_parameter_tensors(const ag_module *m) { return m ? ag_module_parameters(m, NULL, 0) : 0; }

ag_tensor *ag_module_parameter(const ag_module *m, int i, char *name, size_t name_size) {
    if (!m || i < 0) return NULL;
    char prefix[1024] = "";
    nth n = {.want = i, .name = name, .name_size = name_size};
    walk(m, prefix, sizeof prefix, 0, visit_nth, &n);
    return n.found;
}

int ag_module_parameters(const ag_module *m, ag_tensor **out, int max) {
    if (!m) return ag__fail(AG_ERR_ARG, "module_parameters: module is NULL"), -1;
    char prefix[1024] = "";
    nth n = {.out = out, .max = max};
    walk(m, prefix, sizeof prefix, 0, visit_collect, &n);
    return n.seen;
}

int64_t ag_module_num_parameters(const ag_module *m, bool trainable_only) {
    if (!m) return 0;
    char prefix[1024] = "";
    nth n = {.trainable_only = trainable_only};
    walk(m, prefix, sizeof prefix, 0, visit_collect, &n);
    return n.elems;
}

static bool visit_zero_grad(const char *name, ag_tensor *t, slot_kind kind, void *ud) {
    (void)name, (void)kind, (void)ud;
    ag_zero_grad(t);
    return true;
}

void ag_module_zero_grad(ag_module *m) {
    if (!m) return;
    char prefix[1024] = "";
    walk(m, prefix, sizeof prefix, 0, visit_zero_grad, NULL);
}

int ag_module_num_children(const ag_module *m) {
    int n = 0;
    for (int i = 0; m && i < m->nslots; i++) n += m->slots[i].kind == SLOT_CHILD;
    return n;
}

ag_module *ag_module_child(const ag_module *m, int i, const char **name) {
    for (int k = 0; m && k < m->nslots; k++)
        if (m->slots[k].kind == SLOT_CHILD && i-- == 0) {
            if (name) *name = m->slots[k].name;
            return m->slots[k].m;
        }
    return NULL;
}

/* ---- dtype conversion ------------------------------------------------------------------ */
/* ag_module_to_dtype converts each tensor in place (core/tensor.c, ag__retype_*): the
 * header stays, so every handle (the module's, an optimizer's, the user's) sees the
 * new dtype, as torch.nn.Module.to sets param.data and param.grad.data.  It first
 * lists every tensor to convert and checks each, then allocates what the new data
 * needs, and only then converts: a refusal or a failed allocation changes nothing. */
typedef struct retype_entry {
    ag_tensor *t;
    ag_storage *spill; /* its new data, when it outgrows its room */
} retype_entry;

typedef struct retype_plan {
    const ag_module *root;
    ag_dtype dtype;
    retype_entry *v;
    int n, cap;
    ag_status st;
} retype_plan;

/* Adds t (what "name", e.g. parameter "0.weight") to the plan if it needs converting;
 * false with p->st set when it can't be converted or the list can't grow. */
static bool plan_add(retype_plan *p, const char *what, const char *name, ag_tensor *t) {
    if (!t || t->dtype == p->dtype || (t->dtype != AG_F32 && t->dtype != AG_F64)) return true;
    for (int i = 0; i < p->n; i++)
        if (p->v[i].t == t) return true; /* one tensor registered under two names */
    char why[160] = "";
    if (t->op) snprintf(why, sizeof why, "it is not a leaf (it comes from %s); register a detached copy", t->op->grad_fn);
    else if (t->storage->base)
        snprintf(why, sizeof why, "it lives in a flat buffer (ag_flatten_parameters); convert the model before flattening it");
    else if (ag__ref_count(&t->storage->refcount) > 1)
        snprintf(why, sizeof why, "a view of its data is alive; release the views (close the scope of the forward pass) first");
    if (*why) {
        char s[AG_SHAPE_STR];
        p->st = ag__fail(AG_ERR_ARG, "module_to_dtype: can't convert %s \"%s\" (%s %s) of %s to %s: %s", what, name,
                         ag_dtype_name(t->dtype), ag__tshape(s, t), p->root->type->name, ag_dtype_name(p->dtype), why);
        return false;
    }
    if (p->n == p->cap) {
        int cap = p->cap ? 2 * p->cap : 16;
        retype_entry *g = ag__alloc(sizeof(retype_entry) * (size_t)cap);
        if (!g) {
            p->st = AG_ERR_NOMEM;
            return false;
        }
        if (p->n) memcpy(g, p->v, sizeof(retype_entry) * (size_t)p->n);
        ag__free(p->v);
        p->v = g;
        p->cap = cap;
    }
    p->v[p->n++] = (retype_entry){t, NULL};
    return true;
}

static bool visit_retype(const char *name, ag_tensor *t, slot_kind kind, void *ud) {
    retype_plan *p = ud;
    return plan_add(p, kind == SLOT_PARAM ? "parameter" : "buffer", name, t) &&
           plan_add(p, kind == SLOT_PARAM ? "the gradient of parameter" : "the gradient of buffer", name, t->grad);
}

ag_status ag_module_to_dtype(ag_module *m, ag_dtype dtype) {
    if (!m) return ag__fail(AG_ERR_ARG, "module_to_dtype: module is NULL");
    if (dtype != AG_F32 && dtype != AG_F64) return ag__fail(AG_ERR_DTYPE, "module_to_dtype: float32 or float64 only");
    char prefix[1024] = "";
    retype_plan p = {m, dtype, NULL, 0, 0, AG_OK};
    walk(m, prefix, sizeof prefix, 0, visit_retype, &p);
    for (int i = 0; p.st == AG_OK && i < p.n; i++) p.st = ag__retype_prepare(p.v[i].t, dtype, &p.v[i].spill);
    for (int i = 0; i < p.n; i++) {
        if (p.st == AG_OK) ag__retype_commit(p.v[i].t, dtype, p.v[i].spill);
        else ag__storage_release(p.v[i].spill);
    }
    ag__free(p.v);
    return p.st;
}

/* ---- printing ------------------------------------------------------------------------------ */
static void print_tree(const ag_module *m, FILE *f, int indent) {
    char desc[512] = "";
    if (m->type->describe) m->type->describe(m, desc, sizeof desc);
    int nchild = ag_module_num_children(m);
    fprintf(f, "%s(%s", m->type->name, desc);
    if (nchild) {
        fprintf(f, "\n");
        for (int i = 0; i < m->nslots; i++) {
            if (m->slots[i].kind != SLOT_CHILD) continue;
            fprintf(f, "%*s(%s): ", indent + 2, "", m->slots[i].name);
            print_tree(m->slots[i].m, f, indent + 2);
            fprintf(f, "\n");
        }
        fprintf(f, "%*s", indent, "");
    }
    fprintf(f, ")");
}

ag_status ag_module_print(const ag_module *m, FILE *f) {
    if (!m || !f) return ag__fail(AG_ERR_ARG, "module_print: NULL argument");
    print_tree(m, f, 0);
    fprintf(f, "\n");
    return AG_OK;
}

static void clear_shapes(ag_module *m) {
    m->has_shape = false;
    for (int i = 0; i < m->nslots; i++)
        if (m->slots[i].kind == SLOT_CHILD) clear_shapes(m->slots[i].m);
}

static int64_t own_params(const ag_module *m) {
    int64_t n = 0;
    for (int i = 0; i < m->nslots; i++)
        if (m->slots[i].kind == SLOT_PARAM) n += ag_numel(m->slots[i].t);
    return n;
}

static void summary_rows(const ag_module *m, const char *name, int depth, FILE *f) {
    char label[160], shape[AG_SHAPE_STR] = "-";
    snprintf(label, sizeof label, "%*s%s%s%s", 2 * depth, "", m->type->name, *name ? " " : "", name);
    if (m->has_shape) ag__shape_str(shape, m->last_shape.ndim, m->last_shape.dim);
    fprintf(f, "%-40s %-24s %12lld\n", label, shape, (long long)(depth == 0 ? ag_module_num_parameters(m, false) : own_params(m)));
    for (int i = 0; i < m->nslots; i++)
        if (m->slots[i].kind == SLOT_CHILD) summary_rows(m->slots[i].m, m->slots[i].name, depth + 1, f);
}

ag_status ag_module_summary(ag_module *m, ag_shape input_shape, ag_dtype dtype, FILE *f) {
    if (!m || !f) return ag__fail(AG_ERR_ARG, "module_summary: NULL argument");
    ag_status st = ag_scope_begin();
    if (st) return st;
    clear_shapes(m);
    summary_active = true;
    ag_no_grad_begin();
    ag_tensor *y = ag_module_forward(m, ag_zeros(input_shape, dtype));
    ag_no_grad_end();
    summary_active = false;
    if (!y) st = ag_last_status();
    if (st == AG_OK) {
        fprintf(f, "%-40s %-24s %12s\n", "Layer (type)", "Output shape", "Params");
        for (int i = 0; i < 78; i++) fputc('-', f);
        fputc('\n', f);
        summary_rows(m, "", 0, f);
        for (int i = 0; i < 78; i++) fputc('-', f);
        fprintf(f, "\nTotal params: %lld\nTrainable params: %lld\n", (long long)ag_module_num_parameters(m, false),
                (long long)ag_module_num_parameters(m, true));
    }
    ag_scope_end();
    return st;
}

/* ---- state ------------------------------------------------------------------------------------ */
typedef struct sd_ctx {
    ag_state_dict *sd;
    ag_status st;
} sd_ctx;

static bool visit_state(const char *name, ag_tensor *t, slot_kind kind, void *ud) {
    sd_ctx *c = ud;
    (void)kind;
    c->st = ag_state_dict_set(c->sd, name, t);
    return c->st == AG_OK;
}

/* Bytes the longest dotted name under m takes, with its NUL. */
static size_t name_room(const ag_module *m) {
    size_t most = 1;
    for (int i = 0; i < m->nslots; i++) {
        const slot *s = &m->slots[i];
        size_t n = strlen(s->name) + (s->kind == SLOT_CHILD ? 1 + name_room(s->m) : 1);
        if (n > most) most = n;
    }
    return most;
}

/* A buffer for m's dotted names: stack (of *cap bytes) when they fit, else a new one of
 * *cap bytes (ag__free it), so that no name is ever cut; NULL with AG_ERR_NOMEM. */
static char *names_buffer(const ag_module *m, char *stack, size_t *cap, const char *op) {
    size_t need = name_room(m);
    char *buf = stack;
    if (need > *cap && !(buf = ag__alloc(need))) return ag__fail_null(AG_ERR_NOMEM, "%s: out of memory", op);
    if (need > *cap) *cap = need;
    buf[0] = '\0';
    return buf;
}

ag_status ag_module_state_dict(const ag_module *m, ag_state_dict *sd) {
    if (!m || !sd) return ag__fail(AG_ERR_ARG, "module_state_dict: NULL argument");
    char stack[1024];
    size_t cap = sizeof stack;
    char *prefix = names_buffer(m, stack, &cap, "module_state_dict");
    if (!prefix) return AG_ERR_NOMEM;
    sd_ctx c = {sd, AG_OK};
    walk(m, prefix, cap, 0, visit_state, &c);
    if (prefix != stack) ag__free(prefix);
    return c.st;
}

typedef struct load_ctx {
    const ag_state_dict *sd;
    bool apply, strict;
    int matched;
    ag_status st;
} load_ctx;


/* Validates (apply false) or copies (apply true) one parameter or buffer. */
static bool visit_load(const char *name, ag_tensor *t, slot_kind kind, void *ud) {
    load_ctx *c = ud;
    (void)kind;
    ag_tensor *src = ag__state_dict_find(c->sd, name);
    if (!src) {
        if (!c->strict) return true;
        c->st = ag__fail(AG_ERR_ARG, "load_state_dict: missing key \"%s\"", name);
        return false;
    }
    char s1[AG_SHAPE_STR], s2[AG_SHAPE_STR];
    if (src->ndim != t->ndim || memcmp(src->shape, t->shape, sizeof(int64_t) * (size_t)t->ndim)) {
        c->st = ag__fail(AG_ERR_SHAPE, "load_state_dict: size mismatch for \"%s\": copying a tensor of shape %s, the "
                         "shape in the current model is %s", name, ag__tshape(s1, src), ag__tshape(s2, t));
        return false;
    }
    bool tf = t->dtype == AG_F32 || t->dtype == AG_F64, sf = src->dtype == AG_F32 || src->dtype == AG_F64;
    if (tf != sf) {
        c->st = ag__fail(AG_ERR_DTYPE, "load_state_dict: dtype mismatch for \"%s\": %s in the state dict, %s in the model",
                         name, ag_dtype_name(src->dtype), ag_dtype_name(t->dtype));
        return false;
    }
    c->matched++;
    if (c->apply) {
        ag__copy_into(t, src);
        ag__bump_version(t);
    }
    return true;
}

ag_status ag__module_check_state_dict(const ag_module *m, const ag_state_dict *sd, bool strict) {
    if (!m || !sd) return ag__fail(AG_ERR_ARG, "module_load_state_dict: NULL argument");
    char stack[1024];
    size_t cap = sizeof stack;
    char *prefix = names_buffer(m, stack, &cap, "module_load_state_dict");
    if (!prefix) return AG_ERR_NOMEM;
    load_ctx c = {sd, false, strict, 0, AG_OK};
    walk(m, prefix, cap, 0, visit_load, &c);
    if (prefix != stack) ag__free(prefix);
    if (c.st) return c.st;
    if (strict && c.matched != ag_state_dict_size(sd)) {
        ag_state_dict *mine = ag_state_dict_new();
        ag_status st = mine ? ag_module_state_dict(m, mine) : AG_ERR_NOMEM;
        for (int i = 0; st == AG_OK && i < ag_state_dict_size(sd); i++)
            if (!ag__state_dict_find(mine, ag_state_dict_name(sd, i)))
                st = ag__fail(AG_ERR_ARG, "load_state_dict: unexpected key \"%s\"", ag_state_dict_name(sd, i));
        ag_state_dict_free(mine);
        return st;
    }
    return AG_OK;
}

ag_status ag_module_load_state_dict(ag_module *m, const ag_state_dict *sd, bool strict) {
    ag_status st = ag__module_check_state_dict(m, sd, strict); /* everything before changing anything */
    if (st) return st;
    char stack[1024];
    size_t cap = sizeof stack;
    char *prefix = names_buffer(m, stack, &cap, "module_load_state_dict");
    if (!prefix) return AG_ERR_NOMEM;
    load_ctx c = (load_ctx){sd, true, strict, 0, AG_OK};
    walk(m, prefix, cap, 0, visit_load, &c);
    if (prefix != stack) ag__free(prefix);
    return c.st;
}

ag_status ag_module_save(const ag_module *m, const char *path) {
    ag_state_dict *sd = ag_state_dict_new();
    if (!sd) return AG_ERR_NOMEM;
    ag_status st = ag_module_state_dict(m, sd);
    if (st == AG_OK) st = ag_save_safetensors(sd, path);
    ag_state_dict_free(sd);
    return st;
}

ag_status ag_module_load(ag_module *m, const char *path) {
    ag_state_dict *sd = ag_load_safetensors(path);
    if (!sd) return ag_last_status();
    ag_status st = ag_module_load_state_dict(m, sd, true);
    ag_state_dict_free(sd);
    return st;
}

/*
 * container.c - the containers nn.Sequential, nn.ModuleList and nn.ModuleDict, and
 * the shape layers Flatten, Unflatten and Identity.
 */
#include <stdio.h>
#include <string.h>
#include "core/internal.h"
#include "nn/module.h"
#include "agrad/nn.h"
#include "agrad/ops.h"

/* y = child_n(... child_1(child_0(x))).  ag_module_forward's scope owns the outputs
 * passed between children; with no children the result is x itself, retained, since
 * a forward's result is a new reference (agrad/nn.h).  A ReLU followed by a Dropout,
 * neither hooked, runs as one pass (ag__nn_relu_dropout_pair), and a Linear followed by a
 * ReLU as one op (ag__nn_linear_relu_pair), and a BatchNorm over planes followed by a ReLU
 * (ag__nn_batch_norm_relu_pair), unless a Dropout follows the ReLU; a BatchNorm1d over [N, C], a ReLU and
 * a Dropout in training as one op (ag__nn_batch_norm_relu_dropout). */
static ag_tensor *sequential_forward(ag_module *m, ag_tensor *x) {
    int n = ag_module_num_children(m);
    if (n == 0) return ag_retain(x);
    for (int i = 0; i < n && x; i++) {
        ag_module *c = ag_module_child(m, i, NULL), *next = i + 1 < n ? ag_module_child(m, i + 1, NULL) : NULL;
        ag_module *after = i + 2 < n ? ag_module_child(m, i + 2, NULL) : NULL;
        if (next && ag__nn_batch_norm_relu_dropout(c, next, after, x, &x)) i += 2;
        else if (next && ag__nn_relu_dropout_pair(c, next, x, &x)) i++;
        else if (next && ag__nn_linear_relu_pair(c, next, after, x, &x)) i++;
        else if (next && ag__nn_batch_norm_relu_pair(c, next, after, x, &x)) i++;
        else x = ag_module_forward(c, x);
    }
    return x;
}

static const ag_module_type sequential_type = {"Sequential", sequential_forward, NULL, NULL};

ag_status ag_nn_sequential_append(ag_module *seq, ag_module *m) {
    if (!seq || strcmp(ag_module_type_name(seq), sequential_type.name) != 0) {
        if (m != seq) ag_module_free(m);
        return ag__fail(AG_ERR_ARG, "sequential_append: not a Sequential");
    }
    if (!m) return ag__fail(AG_ERR_ARG, "sequential_append: module is NULL");
    char name[16];
    snprintf(name, sizeof name, "%d", ag_module_num_children(seq));
    return ag__module_add_child("sequential_append", seq, name, m);
}

/* Frees modules[i] after a failure, unless it is owned already: listed before (appended,
 * freed or refused then) or a child of another module. */
static void free_unowned(ag_module *const *modules, int i) {
    for (int k = 0; k < i; k++)
        if (modules[k] == modules[i]) return;
    if (!ag__module_parent(modules[i])) ag_module_free(modules[i]);
}

ag_module *ag_nn_sequential(int n, ag_module *const *modules) {
    ag_module *seq = ag_module_new(&sequential_type, NULL);
    bool bad = !seq || n < 0 || (n > 0 && !modules);
    for (int i = 0; i < n && modules; i++) {
        if (!modules[i]) bad = true;
        if (bad) free_unowned(modules, i);
        else if (ag_nn_sequential_append(seq, modules[i])) bad = true;
    }
    if (bad) {
        ag_module_free(seq);
        if (ag_last_status() == AG_OK) ag__fail(AG_ERR_ARG, "nn.Sequential: a module is NULL");
        return NULL;
    }
    return seq;
}

/* ---- ModuleList, ModuleDict ----------------------------------------------------------------------- */
/* Holders of modules, with no forward of their own: PyTorch's raise NotImplementedError; the
 * user's module calls the children (ag_module_child, ag_module_get_child). */
static ag_tensor *holder_forward(ag_module *m, ag_tensor *x) {
    (void)x;
    return ag__fail_null(AG_ERR_ARG, "%s: has no forward; call its modules (ag_module_child, ag_module_get_child)",
                         ag_module_type_name(m));
}

static const ag_module_type module_list_type = {"ModuleList", holder_forward, NULL, NULL};
static const ag_module_type module_dict_type = {"ModuleDict", holder_forward, NULL, NULL};

/* Is m a container of type t?  Else fails, naming fn, and frees child (not m itself) unless it has a parent. */
static bool is_container(const char *fn, ag_module *m, const ag_module_type *t, ag_module *child) {
    if (m && strcmp(ag_module_type_name(m), t->name) == 0) return true;
    if (child && child != m && !ag__module_parent(child)) ag_module_free(child);
    ag__fail(AG_ERR_ARG, "%s: not a %s", fn, t->name);
    return false;
}

ag_status ag_nn_module_list_append(ag_module *list, ag_module *m) {
    if (!is_container("module_list_append", list, &module_list_type, m)) return AG_ERR_ARG;
    if (!m) return ag__fail(AG_ERR_ARG, "module_list_append: module is NULL");
    char name[16];
    snprintf(name, sizeof name, "%d", ag_module_num_children(list));
    return ag__module_add_child("module_list_append", list, name, m);
}

ag_module *ag_nn_module_list(int n, ag_module *const *modules) {
    ag_module *list = ag_module_new(&module_list_type, NULL);
    bool bad = !list || n < 0 || (n > 0 && !modules);
    for (int i = 0; i < n && modules; i++) {
        if (!modules[i]) bad = true;
        if (bad) free_unowned(modules, i);
        else if (ag_nn_module_list_append(list, modules[i])) bad = true;
    }
    if (bad) {
        ag_module_free(list);
        if (ag_last_status() == AG_OK) ag__fail(AG_ERR_ARG, "nn.ModuleList: a module is NULL");
        return NULL;
    }
    return list;
}

ag_status ag_nn_module_dict_add(ag_module *dict, const char *name, ag_module *m) {
    if (!is_container("module_dict_add", dict, &module_dict_type, m)) return AG_ERR_ARG;
    if (!m) return ag__fail(AG_ERR_ARG, "module_dict_add: module is NULL");
    return ag__module_add_child("module_dict_add", dict, name, m);
}

ag_module *ag_nn_module_dict(int n, const char *const *names, ag_module *const *modules) {
    ag_module *dict = ag_module_new(&module_dict_type, NULL);
    bool bad = !dict || n < 0 || (n > 0 && (!modules || !names));
    for (int i = 0; i < n && modules; i++) {
        if (!modules[i]) bad = true;
        if (bad) free_unowned(modules, i);
        else if (ag_nn_module_dict_add(dict, names[i], modules[i])) bad = true;
    }
    if (bad) {
        ag_module_free(dict);
        if (ag_last_status() == AG_OK) ag__fail(AG_ERR_ARG, "nn.ModuleDict: a module or the names are NULL");
        return NULL;
    }
    return dict;
}

/* ---- Flatten, Unflatten, Identity ---------------------------------------------------------------- */
typedef struct flatten {
    int start_dim, end_dim;
} flatten;

static ag_tensor *flatten_forward(ag_module *m, ag_tensor *x) {
    const flatten *f = ag_module_data(m);
    return ag_flatten(x, f->start_dim, f->end_dim);
}

static void flatten_describe(const ag_module *m, char *buf, size_t size) {
    const flatten *f = ag_module_data(m);
    snprintf(buf, size, "start_dim=%d, end_dim=%d", f->start_dim, f->end_dim);
}

static const ag_module_type flatten_type = {"Flatten", flatten_forward, flatten_describe, NULL};

ag_module *ag_nn_flatten(int start_dim, int end_dim) {
    flatten *f = ag__alloc(sizeof *f);
    if (!f) return NULL;
    *f = (flatten){start_dim, end_dim};
    return ag_module_new(&flatten_type, f);
}

typedef struct unflatten {
    int dim;
    ag_shape sizes;
} unflatten;

/* [.., n, ..] -> [.., sizes..., ..] at dim */
static ag_tensor *unflatten_forward(ag_module *m, ag_tensor *x) {
    const unflatten *u = ag_module_data(m);
    int d = ag__dim("Unflatten", u->dim, x->ndim);
    if (d < 0) return NULL;
    if (x->ndim - 1 + u->sizes.ndim > AG_MAX_DIMS) return ag__fail_null(AG_ERR_SHAPE, "Unflatten: too many dims");
    ag_shape s = {0, {0}};
    for (int i = 0; i < x->ndim; i++) {
        if (i == d)
            for (int k = 0; k < u->sizes.ndim; k++) s.dim[s.ndim++] = u->sizes.dim[k];
        else s.dim[s.ndim++] = x->shape[i];
    }
    return ag_reshape(x, s);
}

static void unflatten_describe(const ag_module *m, char *buf, size_t size) {
    const unflatten *u = ag_module_data(m);
    char s[AG_SHAPE_STR];
    ag__shape_str(s, u->sizes.ndim, u->sizes.dim);
    s[0] = '(';
    s[strlen(s) - 1] = ')';
    snprintf(buf, size, "dim=%d, unflattened_size=%s", u->dim, s);
}

static const ag_module_type unflatten_type = {"Unflatten", unflatten_forward, unflatten_describe, NULL};

ag_module *ag_nn_unflatten(int dim, ag_shape sizes) {
    if (sizes.ndim < 1 || sizes.ndim > AG_MAX_DIMS) return ag__fail_null(AG_ERR_ARG, "nn.Unflatten: sizes needs 1 or more dims");
    unflatten *u = ag__alloc(sizeof *u);
    if (!u) return NULL;
    *u = (unflatten){dim, sizes};
    return ag_module_new(&unflatten_type, u);
}

/* y = x (the same tensor, retained for the caller's scope) */
static ag_tensor *identity_forward(ag_module *m, ag_tensor *x) {
    (void)m;
    return ag__own(ag_retain(x));
}

static const ag_module_type identity_type = {"Identity", identity_forward, NULL, NULL};

ag_module *ag_nn_identity(void) { return ag_module_new(&identity_type, NULL); }

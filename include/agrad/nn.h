/*
 * agrad/nn.h - modules (torch.nn): objects that hold parameters, buffers,
 * child modules and configuration, with a common interface.
 *
 * A module owns its parameters and buffers (tensors created outside any
 * scope, freed with the module) and the children added to it.  Forward
 * results follow the usual rules: owned by the innermost scope.  Parameter
 * names follow PyTorch: a child's parameters are prefixed with the child's
 * name, e.g. "0.weight", "2.bias", so state dicts load in both libraries.
 *
 * Defining a module type: fill an ag_module_type (name, forward, optional
 * describe and destroy), create instances with ag_module_new, and register
 * parameters, buffers and children.  Built-in layers are made the same way.
 */
#ifndef AGRAD_NN_H
#define AGRAD_NN_H

#include <stdio.h>
#include "core.h"
#include "state.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ag_module ag_module;

typedef struct ag_module_type {
    const char *name; /* shown when printing, e.g. "Linear" */
    /* y = module(x); NULL on error (with a message).  Required. */
    ag_tensor *(*forward)(ag_module *m, ag_tensor *x);
    /* Writes the configuration shown inside the parentheses, e.g.
     * "in_features=3, out_features=2, bias=True".  Optional. */
    void (*describe)(const ag_module *m, char *buf, size_t size);
    /* Frees what ag_module_data points at.  Optional (NULL: ag__free it). */
    void (*destroy)(void *data);
} ag_module_type;

/* ---- defining modules --------------------------------------------------------------- */
/* A new module of type with its private data (owned by the module from now on,
 * even on failure); training mode on.  NULL on ENOMEM. */
AG_API ag_module *ag_module_new(const ag_module_type *type, void *data);
/* The data passed to ag_module_new. */
AG_API void *ag_module_data(const ag_module *m);
/* Registers a parameter (retained; its requires_grad is set).  Names are unique
 * among the module's parameters, buffers and children.  Returns AG_OK or an error. */
AG_API ag_status ag_module_register_parameter(ag_module *m, const char *name, ag_tensor *t);
/* Registers a buffer: state saved with the module but not trained (e.g. running mean). */
AG_API ag_status ag_module_register_buffer(ag_module *m, const char *name, ag_tensor *t);
/* Adds child as a submodule named name; m owns it from now on (even on failure). */
AG_API ag_status ag_module_add_child(ag_module *m, const char *name, ag_module *child);
/* The module's own parameter / buffer / child named name, or NULL. */
AG_API ag_tensor *ag_module_get_parameter(const ag_module *m, const char *name);
AG_API ag_tensor *ag_module_get_buffer(const ag_module *m, const char *name);
AG_API ag_module *ag_module_get_child(const ag_module *m, const char *name);
/* Replaces the tensor of an existing parameter or buffer (e.g. after a dtype change). */
AG_API ag_status ag_module_set_tensor(ag_module *m, const char *name, ag_tensor *t);

/* ---- using modules ---------------------------------------------------------------------- */
/* y = m(x).  NULL x passes through.  Not thread-safe for one module. */
AG_API ag_tensor *ag_module_forward(ag_module *m, ag_tensor *x);
/* Frees m, its children, parameters and buffers.  NULL is ignored. */
AG_API void ag_module_free(ag_module *m);
AG_API const char *ag_module_type_name(const ag_module *m);
/* Train / eval mode, recursively (Dropout, BatchNorm behave differently). */
AG_API void ag_module_train(ag_module *m, bool training);
AG_API void ag_module_eval(ag_module *m);
AG_API bool ag_module_is_training(const ag_module *m);
/* Drops the gradients of every parameter (set_to_none, as PyTorch 2). */
AG_API void ag_module_zero_grad(ag_module *m);
/* Number of parameter tensors, recursively, and the i-th in PyTorch's order
 * (own parameters first, then each child's).  The full dotted name is written
 * into name (if not NULL).  Borrowed; NULL if i is out of range. */
AG_API int ag_module_num_parameter_tensors(const ag_module *m);
AG_API ag_tensor *ag_module_parameter(const ag_module *m, int i, char *name, size_t name_size);
/* Writes every parameter into out (up to max); returns how many there are in all. */
AG_API int ag_module_parameters(const ag_module *m, ag_tensor **out, int max);
/* Total number of parameter elements (trainable only if trainable_only). */
AG_API int64_t ag_module_num_parameters(const ag_module *m, bool trainable_only);
/* Number of direct children, and the i-th child (borrowed) and its name. */
AG_API int ag_module_num_children(const ag_module *m);
AG_API ag_module *ag_module_child(const ag_module *m, int i, const char **name);
/* Converts every parameter and buffer of floating dtype to dtype (float32/float64). */
AG_API ag_status ag_module_to_dtype(ag_module *m, ag_dtype dtype);

/* Prints the module tree as print(model) does in PyTorch. */
AG_API ag_status ag_module_print(const ag_module *m, FILE *f);
/* Runs one forward pass on zeros of input_shape (no grad, eval mode kept as is)
 * and prints a table of each layer's type, output shape and parameter count. */
AG_API ag_status ag_module_summary(ag_module *m, ag_shape input_shape, ag_dtype dtype, FILE *f);

/* ---- state ------------------------------------------------------------------------------- */
/* Adds every parameter and buffer under its dotted name to sd (sharing the tensors). */
AG_API ag_status ag_module_state_dict(const ag_module *m, ag_state_dict *sd);
/* Copies values from sd into the module's parameters and buffers.  Names, shapes
 * must match (dtypes are converted); strict also fails on missing or unexpected
 * entries.  Nothing is changed unless everything validates. */
AG_API ag_status ag_module_load_state_dict(ag_module *m, const ag_state_dict *sd, bool strict);
/* ag_module_state_dict + ag_save_safetensors (atomic), and the reverse (strict). */
AG_API ag_status ag_module_save(const ag_module *m, const char *path);
AG_API ag_status ag_module_load(ag_module *m, const char *path);

/* ---- containers and basic layers ---------------------------------------------------------------- */
/* nn.Sequential: children named "0", "1", ...; takes ownership of all n modules
 * (even on failure).  A NULL among them makes the result NULL. */
AG_API ag_module *ag_nn_sequential(int n, ag_module *const *modules);
#define AG_SEQUENTIAL(...) \
    ag_nn_sequential((int)(sizeof((ag_module *[]){__VA_ARGS__}) / sizeof(ag_module *)), (ag_module *[]){__VA_ARGS__})
/* Appends a module to a Sequential (takes ownership). */
AG_API ag_status ag_nn_sequential_append(ag_module *seq, ag_module *m);
/* nn.Linear(in_features, out_features, bias): weight [out, in] and bias [out]
 * initialised U(-1/sqrt(in), 1/sqrt(in)) as PyTorch, from this thread's generator. */
AG_API ag_module *ag_nn_linear(int64_t in_features, int64_t out_features, bool bias);
/* nn.Flatten(start_dim=1, end_dim=-1) and nn.Unflatten(dim, sizes). */
AG_API ag_module *ag_nn_flatten(int start_dim, int end_dim);
AG_API ag_module *ag_nn_unflatten(int dim, ag_shape sizes);
/* nn.Identity. */
AG_API ag_module *ag_nn_identity(void);

#ifdef __cplusplus
}
#endif
#endif

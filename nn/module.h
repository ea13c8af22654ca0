/*
 * module.h - what nn/ files other than module.c need of the module object.
 * Private to nn/.
 */
#ifndef AGRAD_NN_MODULE_H
#define AGRAD_NN_MODULE_H

#include "core/internal.h"
#include "agrad/nn.h"

/* ag_module_add_child, its messages naming fn (the public function called). */
AG_HIDDEN ag_status ag__module_add_child(const char *fn, ag_module *m, const char *name, ag_module *child);
/* The module m is a child of, or NULL (a root, or NULL m). */
AG_HIDDEN ag_module *ag__module_parent(const ag_module *m);
/* m's type (to tell a module of one's own type from another), or NULL for NULL m. */
AG_HIDDEN const ag_module_type *ag__module_type(const ag_module *m);

/* Whether m's forward is its type's forward alone: no hooks, and no ag_module_summary recording
 * output shapes.  A container may then run it fused with its neighbour (nn/dropout.c). */
AG_HIDDEN bool ag__module_plain(const ag_module *m);

/* If a is a ReLU and b a Dropout, both plain (ag__module_plain), runs b(a(x)) as one pass (nn/dropout.c:
 * the same mask bits and gradients) into *y (NULL with the error recorded on failure; owned as a module's
 * forward result) and returns true; else runs nothing and returns false.  nn.Sequential calls it. */
AG_HIDDEN bool ag__nn_relu_dropout_pair(ag_module *a, ag_module *b, ag_tensor *x, ag_tensor **y);

/* If lin is a plain nn.Linear (ag__module_plain) and bf16 autocast is off, runs relu(lin(x)) as the
 * one op ag_linear_relu into *y (NULL with the error recorded on failure; owned as a
 * module's forward result) and returns true; else runs nothing and returns false (nn/linear.c). */
AG_HIDDEN bool ag__nn_linear_relu(ag_module *lin, ag_tensor *x, ag_tensor **y);
/* ag__nn_linear_relu(a, x, y) when b is a plain ReLU and after (the module after b, or NULL) is not a
 * plain Dropout, which ag__nn_relu_dropout_pair fuses with the ReLU instead.  nn.Sequential calls it. */
AG_HIDDEN bool ag__nn_linear_relu_pair(ag_module *a, ag_module *b, ag_module *after, ag_tensor *x, ag_tensor **y);
/* When a is a BatchNorm1d or BatchNorm2d over planes (x [N, C, L] or [N, C, H, W]) and b a ReLU, neither
 * hooked, and after (the module after b, or NULL) is not a Dropout: relu(a(x)) as the one op
 * ag_batch_norm_relu into *y (NULL with the error recorded on failure) and true; else false, nothing done. */
AG_HIDDEN bool ag__nn_batch_norm_relu_pair(ag_module *a, ag_module *b, ag_module *after, ag_tensor *x, ag_tensor **y);
/* When a is a BatchNorm1d and x is [N, C], b a ReLU and c a Dropout, none hooked, a and c in training and c's
 * p in (0, 1): c(b(a(x))) as the one op ag_batch_norm_relu_dropout into *y (NULL with the error recorded on
 * failure) and true; else false, nothing done (nn/norm.c).  nn.Sequential calls it. */
AG_HIDDEN bool ag__nn_batch_norm_relu_dropout(ag_module *a, ag_module *b, ag_module *c, ag_tensor *x, ag_tensor **y);
/* The drop probability p of a Dropout module m (nn/dropout.c). */
AG_HIDDEN double ag__nn_dropout_p(const ag_module *m);

/* Removes m's parameter, buffer or computed tensor called name and returns it (the
 * module's reference moves to the caller), or NULL when there is none. */
AG_HIDDEN ag_tensor *ag__module_take_tensor(ag_module *m, const char *name);
/* Sets m's computed tensor name (created, or replaced; t is retained): a tensor that
 * ag_module_get_parameter(m, name), and so the module's forward, finds, computed from
 * parameters (weight_norm's weight), that is neither a parameter nor saved.  AG_ERR_ARG
 * when name is a parameter, buffer or child. */
AG_HIDDEN ag_status ag__module_set_computed(ag_module *m, const char *name, ag_tensor *t);
/* Whether name is a registered parameter of m (not a computed tensor). */
AG_HIDDEN bool ag__module_is_parameter(const ag_module *m, const char *name);
/* A forward pre-hook the library sets, owning user (free_user frees it with the hook). */
AG_HIDDEN ag_status ag__module_add_pre_hook(const char *op, ag_module *m, ag_forward_pre_hook fn, void *user,
                                            void (*free_user)(void *), ag_hook_handle *handle);
/* The user of m's forward pre-hook fn for which match(user, key) holds, or NULL. */
AG_HIDDEN void *ag__module_find_pre_hook(const ag_module *m, ag_forward_pre_hook fn,
                                         bool (*match)(const void *user, const void *key), const void *key);

#endif

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

#endif

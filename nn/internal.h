/*
 * nn/internal.h - what nn/ offers the layers above besides agrad/nn.h.  Not installed.
 */
#ifndef AGRAD_NN_INTERNAL_H
#define AGRAD_NN_INTERNAL_H

#include "core/internal.h"
#include "agrad/nn.h"

/* What ag_module_load_state_dict checks (names, shapes, dtypes), without changing m. */
AG_HIDDEN ag_status ag__module_check_state_dict(const ag_module *m, const ag_state_dict *sd, bool strict);

#endif

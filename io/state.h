/*
 * io/state.h - what io/state.c offers the layers above besides agrad/state.h.
 * Not installed.
 */
#ifndef AGRAD_IO_STATE_H
#define AGRAD_IO_STATE_H

#include "core/internal.h"

/* The tensor stored under name (borrowed), or NULL without recording an error.  O(1). */
AG_HIDDEN ag_tensor *ag__state_dict_find(const ag_state_dict *sd, const char *name);

#endif

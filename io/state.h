/*
 * io/state.h - state dicts as the library's other layers use them.  Not installed.
 */
#ifndef AGRAD_IO_STATE_H
#define AGRAD_IO_STATE_H

#include "core/internal.h"
#include "agrad/state.h"

/* A new dict holding copies (in no scope, recording nothing) of src's tensors under
 * the same names; NULL with AG_ERR_NOMEM naming op, the caller's function. */
AG_HIDDEN ag_state_dict *ag__state_dict_copy(const char *op, const ag_state_dict *src);

#endif

/*
 * train/internal.h - what the training utilities (the files in train/) share.  Not installed.
 */
#ifndef AGRAD_TRAIN_INTERNAL_H
#define AGRAD_TRAIN_INTERNAL_H

#include "core/iter.h"
#include "agrad/train.h"

/* A new dict holding copies (in no scope, recording nothing) of src's tensors under
 * the same names; NULL with AG_ERR_NOMEM naming op. */
AG_HIDDEN ag_state_dict *ag__state_dict_copy(const char *op, const ag_state_dict *src);

#endif

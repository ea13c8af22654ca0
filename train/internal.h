/*
 * train/internal.h - what the training utilities of train/ share.  Not installed.
 */
#ifndef AGRAD_TRAIN_INTERNAL_H
#define AGRAD_TRAIN_INTERNAL_H

#include "core/iter.h"
#include "io/state.h"
#include "agrad/train.h"

/* A new dict holding copies (in no scope, recording nothing) of src's tensors under
 * the same names; NULL with AG_ERR_NOMEM naming op. */
AG_HIDDEN ag_state_dict *ag__state_dict_copy(const char *op, const ag_state_dict *src);

/* What ag_early_stopping_load_state_dict and ag_history_load_state_dict check,
 * without changing es or h. */
AG_HIDDEN ag_status ag__early_stopping_check_state_dict(ag_early_stopping *es, const ag_state_dict *sd);
AG_HIDDEN ag_status ag__history_check_state_dict(ag_history *h, const ag_state_dict *sd);

#endif

/*
 * train/internal.h - what the training utilities of train/ share.  Not installed.
 */
#ifndef AGRAD_TRAIN_INTERNAL_H
#define AGRAD_TRAIN_INTERNAL_H

#include "core/internal.h"
#include "agrad/train.h"

/* What ag_early_stopping_load_state_dict and ag_history_load_state_dict check,
 * without changing es or h (ag_checkpoint_load checks every part before applying any). */
AG_HIDDEN ag_status ag__early_stopping_check_state_dict(ag_early_stopping *es, const ag_state_dict *sd);
AG_HIDDEN ag_status ag__history_check_state_dict(ag_history *h, const ag_state_dict *sd);

#endif

/*
 * io/state.h - what io/state.c offers the layers above besides agrad/state.h:
 * copying a dict, finding an entry without recording an error, and the checks
 * every load_state_dict applies to the numbers it reads back.  Not installed.
 */
#ifndef AGRAD_IO_STATE_H
#define AGRAD_IO_STATE_H

#include <float.h>
#include <math.h>
#include "core/internal.h"
#include "agrad/state.h"

/* A new dict holding copies (in no scope, recording nothing) of src's tensors under
 * the same names; NULL with AG_ERR_NOMEM naming op, the caller's function. */
AG_HIDDEN ag_state_dict *ag__state_dict_copy(const char *op, const ag_state_dict *src);

/* The tensor stored under name (borrowed), or NULL without recording an error.  O(1). */
AG_HIDDEN ag_tensor *ag__state_dict_find(const ag_state_dict *sd, const char *name);

/* What a number read back from a state dict may be: lo <= v <= hi (NaN never is)
 * and, when whole, an integer.  Rules are data, so that each loader keeps a table
 * of (entry, rule) rows rather than a hand-written check per field. */
typedef struct ag__range {
    double lo, hi;
    bool whole;
} ag__range;

/* The common rules, as initialisers: {"step", AG__COUNT} in a table, (ag__range)AG__COUNT
 * in an expression.  Counts stop at 2^53, where doubles stop counting exactly. */
#define AG__COUNT {0, 0x1p53, true}             /* a whole number >= 0 */
#define AG__FINITE {-DBL_MAX, DBL_MAX, false}   /* any finite number */
#define AG__NONNEG {0, DBL_MAX, false}          /* a finite number >= 0 */
#define AG__UNIT {0, 1, false}                  /* a number in [0, 1] */
#define AG__NOT_NAN {-INFINITY, INFINITY, false} /* anything but NaN (±inf allowed) */
#define AG__FLAG {0, 1, true}                   /* 0 or 1 */

/* AG_OK if v follows r, else AG_ERR_VALUE "<op>: <name> is <v>, expected <r in words>". */
AG_HIDDEN ag_status ag__check_value(const char *op, const char *name, double v, ag__range r);
/* Reads the one-number entry name (float or int64) of sd into *v and checks it against r:
 * AG_ERR_ARG "<op>: no number "<name>"" when it is absent or not one number, else as
 * ag__check_value. */
AG_HIDDEN ag_status ag__sd_number(const char *op, const ag_state_dict *sd, const char *name, ag__range r, double *v);
/* Checks every element of t (any dtype, any layout) against r: AG_ERR_VALUE
 * "<op>: <name>[<flat index>] is <v>, expected <r in words>" for the first that fails. */
AG_HIDDEN ag_status ag__check_values(const char *op, const char *name, const ag_tensor *t, ag__range r);

#endif

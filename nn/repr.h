/*
 * repr.h - writing numbers and shapes as Python prints them, so that modules
 * describe themselves exactly as PyTorch's repr does.  Private to nn/.
 */
#ifndef AGRAD_NN_REPR_H
#define AGRAD_NN_REPR_H

#include "core/internal.h"

/* Writes v as Python's repr(float) does: the shortest text that reads back as v,
 * e.g. "0.1", "1e-05", "1.0", "nan", "inf".  Returns buf. */
AG_HIDDEN char *ag__py_float(char *buf, size_t size, double v);
/* Writes a shape as a Python tuple: "(4,)", "(3, 4)", "()".  Returns buf. */
AG_HIDDEN char *ag__py_tuple(char *buf, size_t size, int ndim, const int64_t *dims);

#endif

/*
 * agrad.h - reverse-mode automatic differentiation in C with a PyTorch-like API.
 *
 * Include this one header.  See docs/tutorial.md for a first model and
 * docs/design.md for the tape, the ownership model and the error model.
 */
#ifndef AGRAD_H
#define AGRAD_H

#include "core.h"
#include "tensor.h"
#include "autograd.h"
#include "ops.h"
#include "linalg.h"
#include "state.h"
#include "nn.h"
#include "loss.h"
#include "data.h"
#include "dist.h"
#include "optim.h"
#include "plot.h"
#include "train.h"
#include "trace.h" /* last: it wraps the functions declared above */

#endif

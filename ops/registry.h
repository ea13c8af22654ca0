/*
 * ops/registry.h - the registered ops (ops/registry.c walks each family's table):
 * for the tests, the benchmarks and the generator of docs/ops.md.  Not installed.
 */
#ifndef AGRAD_REGISTRY_H
#define AGRAD_REGISTRY_H

#include "core/internal.h"

/* Finds an op by name; NULL if unknown.  Iterate with ag__op_at(i) until NULL. */
AG_HIDDEN const ag_op *ag__op_find(const char *name);
AG_HIDDEN const ag_op *ag__op_at(int i);
/* The family of a registered op: "unary" for the table ag__unary_ops in ops/unary.c;
 * NULL if op is not registered. */
AG_HIDDEN const char *ag__op_family(const ag_op *op);

#endif

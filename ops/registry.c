/*
 * registry.c - the list of op families.  Each family file ends with a
 * NULL-terminated table of its ops' registrations (ag_op); tests and
 * benchmarks iterate over all of them through ag__op_at.
 */
#include <string.h>
#include "../autograd/internal.h"

extern const ag_op *const ag__unary_ops[];
extern const ag_op *const ag__binary_ops[];
extern const ag_op *const ag__reduce_ops[];
extern const ag_op *const ag__matmul_ops[];
extern const ag_op *const ag__view_ops[];
extern const ag_op *const ag__norm_ops[];
extern const ag_op *const ag__prelu_ops[];

static const ag_op *const *const families[] = {
    ag__unary_ops, ag__binary_ops, ag__reduce_ops, ag__matmul_ops, ag__view_ops, ag__norm_ops, ag__prelu_ops, NULL,
};

const ag_op *ag__op_at(int i) {
    if (i < 0) return NULL;
    for (int f = 0; families[f]; f++)
        for (int k = 0; families[f][k]; k++)
            if (i-- == 0) return families[f][k];
    return NULL;
}

const ag_op *ag__op_find(const char *name) {
    const ag_op *op;
    for (int i = 0; (op = ag__op_at(i)); i++)
        if (strcmp(op->name, name) == 0) return op;
    return NULL;
}

/*
 * registry.c - the list of op families.  Each family file ops/<family>.c ends
 * with a NULL-terminated table ag__<family>_ops of its ops' registrations
 * (ag_op); tests, benchmarks and the docs generator iterate over all of them
 * through ag__op_at.  A family is listed once, in FAMILIES.
 */
#include <string.h>
#include "ops/registry.h"

#define FAMILIES(X) \
    X(unary) X(binary) X(ternary) X(reduce) X(extrema) X(softmax) X(matmul) X(view) X(join) X(index) X(compare) \
    X(norm) X(prelu) X(loss) X(conv) X(pool) X(pad) X(upsample) X(linalg) X(scan) X(shape) X(sort) X(scatter) X(stats) \
    X(attention) X(ctc) X(distance)

#define DECLARE_FAMILY(F) extern const ag_op *const ag__##F##_ops[];
FAMILIES(DECLARE_FAMILY)

static const struct family {
    const char *name;
    const ag_op *const *ops;
} families[] = {
#define FAMILY_ROW(F) {#F, ag__##F##_ops},
    FAMILIES(FAMILY_ROW)
    {NULL, NULL},
};

const ag_op *ag__op_at(int i) {
    if (i < 0) return NULL;
    for (int f = 0; families[f].ops; f++)
        for (int k = 0; families[f].ops[k]; k++)
            if (i-- == 0) return families[f].ops[k];
    return NULL;
}

const ag_op *ag__op_find(const char *name) {
    const ag_op *op;
    for (int i = 0; (op = ag__op_at(i)); i++)
        if (strcmp(op->name, name) == 0) return op;
    return NULL;
}

const char *ag__op_family(const ag_op *op) {
    for (int f = 0; families[f].ops; f++)
        for (int k = 0; families[f].ops[k]; k++)
            if (families[f].ops[k] == op) return families[f].name;
    return NULL;
}

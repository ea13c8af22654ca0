/*
 * registry.c - the test rows of every family, and their match with the op
 * registry.  Each file test/cases/<family>.c ends with a table
 * ag_test_<family>_cases of rows, ended by a row without a name; a family is
 * listed once, in FAMILIES.  The rows are matched to the registered ops by
 * name once, on the first lookup.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "test/cases/op_cases.h"

#define FAMILIES(X) \
    X(unary) X(binary) X(ternary) X(reduce) X(extrema) X(softmax) X(matmul) X(view) X(join) X(index) X(compare) \
    X(norm) X(prelu) X(loss) X(conv) X(pool) X(pad) X(upsample) X(linalg) X(scan) X(shape) X(sort) X(scatter) X(stats) \
    X(attention) X(ctc) X(distance)

#define DECLARE_FAMILY(F) extern const ag_op_test ag_test_##F##_cases[];
FAMILIES(DECLARE_FAMILY)

static const ag_op_test *const families[] = {
#define FAMILY_ROW(F) ag_test_##F##_cases,
    FAMILIES(FAMILY_ROW)
    NULL,
};

const ag_op_test *ag_test_case_at(int i) {
    if (i < 0) return NULL;
    for (int f = 0; families[f]; f++)
        for (int k = 0; families[f][k].name; k++)
            if (i-- == 0) return &families[f][k];
    return NULL;
}

/* The registered op named name; NULL if none. */
static const ag_op *registered(const char *name) {
    const ag_op *op;
    for (int i = 0; (op = ag__op_at(i)); i++)
        if (strcmp(op->name, name) == 0) return op;
    return NULL;
}

/* row_op[i]: the registered op that test row i names (NULL: none), set on first use. */
static const ag_op **row_op;
static int nrows;

static bool match(void) {
    if (row_op) return true;
    int n = 0;
    while (ag_test_case_at(n)) n++;
    const ag_op **m = malloc(sizeof *m * (size_t)(n ? n : 1));
    if (!m) return false;
    for (int i = 0; i < n; i++) m[i] = registered(ag_test_case_at(i)->name);
    nrows = n;
    row_op = m;
    return true;
}

const ag_op_test *ag_test_case_for(const ag_op *op) {
    if (!op || !match()) return NULL;
    for (int i = 0; i < nrows; i++)
        if (row_op[i] == op) return ag_test_case_at(i);
    return NULL;
}

/* Appends one formatted line to report (cap bytes), cutting it when full. */
__attribute__((format(printf, 3, 4))) static void note(char *report, size_t cap, const char *fmt, ...) {
    size_t len = cap ? strlen(report) : 0;
    if (len + 1 >= cap) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(report + len, cap - len, fmt, ap);
    va_end(ap);
    len = strlen(report);
    if (len + 1 < cap) strcat(report, "\n");
}

int ag_test_table_problems(const ag_op_test *const *rows, int n, char *report, size_t cap) {
    int problems = 0;
    if (cap) report[0] = '\0';
    const ag_op *op;
    for (int i = 0; (op = ag__op_at(i)); i++) {
        int naming = 0;
        for (int k = 0; k < n; k++) naming += strcmp(rows[k]->name, op->name) == 0;
        if (naming == 0) note(report, cap, "no test row for op %s", op->name);
        if (naming > 1) note(report, cap, "%s test rows for op %s", naming == 2 ? "two" : "several", op->name);
        problems += naming != 1;
    }
    for (int k = 0; k < n; k++)
        if (!registered(rows[k]->name)) {
            note(report, cap, "test row %s names no registered op", rows[k]->name);
            problems++;
        }
    return problems;
}

/*
 * op_cases.h - how tests, benchmarks and the docs generator call each
 * registered op: one test row per op (ag_op_test), kept out of the library.
 *
 * The rows live in test/cases/<family>.c, mirroring ops/<family>.c; each names
 * its op as registered and holds a call wrapper (public API or the op's
 * internal entry point), the domain its inputs are drawn from, the input
 * shapes it is checked on, fixed scalar arguments and gradcheck tolerances.
 * The rows are matched to the registry (ag__op_at) by name once, on first
 * use; ag_test_table_problems reports a registered op without a row, a row
 * naming no registered op and two rows naming one op, and test_ops_gradcheck
 * fails on any of them.
 *
 * Also here: inputs for calling an op at any size (the registered shapes
 * scaled up, filled from the row's domain), shared by test_ops_gradcheck,
 * test_backend and bench_ops.
 */
#ifndef AGRAD_TEST_OP_CASES_H
#define AGRAD_TEST_OP_CASES_H

#include <stddef.h>
#include "agrad/agrad.h"
#include "core/internal.h"
#include "ops/registry.h"

/* How the op tests draw inputs. */
typedef enum ag_domain {
    AG_DOMAIN_ANY = 0,   /* uniform in [-2, 2], at least 0.05 away from 0 */
    AG_DOMAIN_POSITIVE,  /* uniform in [0.5, 2] */
    AG_DOMAIN_UNIT,      /* uniform in [-0.9, 0.9], away from 0 */
    AG_DOMAIN_DISTINCT,  /* a permutation of well separated values (max/min/sort) */
    AG_DOMAIN_PROBABILITY, /* uniform in [0.05, 0.95] */
    AG_DOMAIN_ABOVE_ONE   /* uniform in [1.2, 3] (acosh) */
} ag_domain;

/* A static shape initialiser: AG_DIMS(2, 3). */
#define AG_DIMS(...) {AG__NARG(__VA_ARGS__), {__VA_ARGS__}}
#define AG_DIMS0 {0, {0}}

/* One set of input shapes an op is tested and benchmarked on. */
typedef struct ag_op_case {
    int n;
    ag_shape shape[4];
} ag_op_case;

/* The test row of one registered op. */
typedef struct ag_op_test {
    const char *name;          /* the op's registered name (ag_op.name) */
    ag_fn call;                /* calls the op on inputs with fixed extra arguments; ctx is this row */
    ag_domain domain;
    ag_op_case cases[4];       /* n == 0 ends the list */
    double arg[2];             /* fixed scalar arguments the call passes */
    double atol, rtol;         /* gradcheck tolerances, 0 for the defaults */
    /* Rows whose op takes an index or mask (the indexing ops), NULL on the others: aux makes it
     * from the n inputs (a scope-owned tensor; NULL with the error set on failure) and call_aux
     * calls the op on the inputs and it.  Such a row's call is opc_call_with_aux (aux, then
     * call_aux, in one composite); the benchmarks make aux once before timing and time
     * ag_test_call_aux, as PyTorch's side gets its index ready-made. */
    ag_tensor *(*aux)(ag_tensor *const *in, int n, const struct ag_op_test *row);
    ag_tensor *(*call_aux)(ag_tensor *const *in, int n, ag_tensor *aux, const struct ag_op_test *row);
} ag_op_test;

/* Calls row's op on the n inputs in (row->call with row as ctx). */
static inline ag_tensor *ag_test_call(const ag_op_test *row, ag_tensor *const *in, int n) {
    return row->call(in, n, (void *)row);
}

/* The call of a row with aux (ctx is the row): makes the index or mask from the n inputs
 * (row->aux) and calls row->call_aux on them and it, in one composite, so the index goes with
 * the composite's scope.  Returns the op's result, or NULL with the error set. */
ag_tensor *opc_call_with_aux(ag_tensor *const *in, int n, void *ctx);

/* The benchmarks' call: with aux (made by row->aux from these inputs) row->call_aux on in and
 * aux, in a composite (its intermediates released with it); with aux NULL, or for a row without
 * call_aux, row's call.  The same result as ag_test_call when aux is what row->aux makes. */
static inline ag_tensor *ag_test_call_aux(const ag_op_test *row, ag_tensor *const *in, int n, ag_tensor *aux) {
    if (!aux || !row->call_aux) return ag_test_call(row, in, n);
    if (ag__composite_begin(row->name)) return NULL;
    return ag__composite_end(row->call_aux(in, n, aux, row));
}

/* The test row of a registered op; NULL if it has none. */
const ag_op_test *ag_test_case_for(const ag_op *op);
/* Iterates over every test row, family by family, until NULL. */
const ag_op_test *ag_test_case_at(int i);

/* Checks the n rows against the registry: writes one line per problem into report
 * (cap bytes, terminated when cap > 0, cut when full) - "no test row for op NAME",
 * "test row NAME names no registered op", "two test rows for op NAME" - and
 * returns the number of problems. */
int ag_test_table_problems(const ag_op_test *const *rows, int n, char *report, size_t cap);

/* ---- inputs ---------------------------------------------------------------------------------------- */
/* A value for element k of n drawn from domain. */
double opc_draw(ag_domain domain, int64_t k, int64_t n);
/* A tensor of shape with values from domain (scope-owned); non-contiguous when
 * asked and shape has 2+ dims (stored with its dims reversed, permuted back). */
ag_tensor *opc_input(const ag_shape *shape, ag_domain domain, bool noncontig, ag_dtype dtype);
/* Index tensors for the calls of the indexing ops (scope-owned int64 tensors of shape):
 * opc_index: value k (row-major) is (a·k + b) mod m, so values repeat;
 * opc_lane_index: the value at pos is (the sum of its coordinates) mod m, so values along any
 * dim differ in every lane no longer than m (scatter's targets stay distinct). */
ag_tensor *opc_index(int ndim, const int64_t *shape, int64_t a, int64_t b, int64_t m);
ag_tensor *opc_lane_index(int ndim, const int64_t *shape, int64_t m);
/* The largest number of elements among c's inputs. */
int64_t opc_max_numel(const ag_op_case *c);
/* c with every dim larger than 1 multiplied by the smallest k >= 1 that gives its
 * largest input at least target elements (dims of 1 stay, so broadcasting still
 * fits).  Returns false if c is below target and no input can grow (every input
 * is empty or has no dim above 1). */
bool opc_scale(const ag_op_case *c, int64_t target, ag_op_case *out);
/* The row's first case that can be scaled to target elements. */
bool opc_case_for(const ag_op_test *row, int64_t target, ag_op_case *out);

#endif

/*
 * ternary.c - the test rows of the ternary family (ops/ternary.c): each op on
 * equal shapes, a broadcast of all three, a 0-d operand and an empty one,
 * through its public function.
 */
#include "test/cases/op_cases.h"

#define TERNARY_CASES                                    \
    {{3, {AG_DIMS(3, 4), AG_DIMS(3, 4), AG_DIMS(3, 4)}}, \
     {3, {AG_DIMS(2, 3, 4), AG_DIMS(4), AG_DIMS(3, 1)}}, \
     {3, {AG_DIMS0, AG_DIMS(2, 3), AG_DIMS(3)}},         \
     {3, {AG_DIMS(0, 3), AG_DIMS(3), AG_DIMS(1)}}}

/* X(name, domain) */
#define CASES(X) X(lerp, AG_DOMAIN_ANY) X(clamp_tensor, AG_DOMAIN_ANY)

#define DEFINE_CALL(NAME, DOMAIN)                                           \
    static ag_tensor *call_##NAME(ag_tensor *const *in, int n, void *ctx) { \
        (void)n, (void)ctx;                                                 \
        return ag_##NAME(in[0], in[1], in[2]);                              \
    }
CASES(DEFINE_CALL)

#define ROW(NAME, DOMAIN) {.name = #NAME, .call = call_##NAME, .domain = DOMAIN, .cases = TERNARY_CASES},
const ag_op_test ag_test_ternary_cases[] = {CASES(ROW){.name = NULL}};

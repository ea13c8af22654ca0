/*
 * binary.c - the test rows of the binary family (ops/binary.c): each op on
 * equal shapes and three broadcasts, through its public function.
 */
#include "test/cases/op_cases.h"

#define BROADCAST_CASES                   \
    {{2, {AG_DIMS(3, 4), AG_DIMS(3, 4)}}, \
     {2, {AG_DIMS(2, 3, 4), AG_DIMS(4)}}, \
     {2, {AG_DIMS(3, 1), AG_DIMS(1, 4)}}, \
     {2, {AG_DIMS0, AG_DIMS(2, 3)}}}

/* X(name, domain) */
#define BINARY_CASES(X)          \
    X(add, AG_DOMAIN_ANY)        \
    X(sub, AG_DOMAIN_ANY)        \
    X(mul, AG_DOMAIN_ANY)        \
    X(div, AG_DOMAIN_ANY)        \
    X(pow, AG_DOMAIN_POSITIVE)   \
    X(maximum, AG_DOMAIN_ANY)    \
    X(minimum, AG_DOMAIN_ANY)    \
    X(atan2, AG_DOMAIN_ANY)      \
    X(hypot, AG_DOMAIN_ANY)      \
    X(fmod, AG_DOMAIN_ANY)       \
    X(remainder, AG_DOMAIN_ANY)  \
    X(copysign, AG_DOMAIN_ANY)   \
    X(logaddexp, AG_DOMAIN_ANY)  \
    X(logaddexp2, AG_DOMAIN_ANY) \
    X(xlogy, AG_DOMAIN_POSITIVE) \
    X(heaviside, AG_DOMAIN_ANY)

#define DEFINE_CALL(NAME, DOMAIN)                                           \
    static ag_tensor *call_##NAME(ag_tensor *const *in, int n, void *ctx) { \
        (void)n, (void)ctx;                                                 \
        return ag_##NAME(in[0], in[1]);                                     \
    }
BINARY_CASES(DEFINE_CALL)

#define ROW(NAME, DOMAIN) {.name = #NAME, .call = call_##NAME, .domain = DOMAIN, .cases = BROADCAST_CASES},
const ag_op_test ag_test_binary_cases[] = {BINARY_CASES(ROW){.name = NULL}};

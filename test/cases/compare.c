/*
 * compare.c - the test rows of the comparisons (ops/compare.c): each on equal
 * shapes and three broadcasts, through its public function.  They record
 * nothing; test_backend compares their results across backends.
 */
#include "test/cases/op_cases.h"

#define COMPARE_CASES(X) X(eq) X(ne) X(lt) X(le) X(gt) X(ge)

#define DEFINE_CALL(NAME)                                                   \
    static ag_tensor *call_##NAME(ag_tensor *const *in, int n, void *ctx) { \
        (void)n, (void)ctx;                                                 \
        return ag_##NAME(in[0], in[1]);                                     \
    }
COMPARE_CASES(DEFINE_CALL)

#define ROW(NAME)                                                                      \
    {.name = #NAME, .call = call_##NAME, .domain = AG_DOMAIN_ANY,                      \
     .cases = {{2, {AG_DIMS(3, 4), AG_DIMS(3, 4)}},                                    \
               {2, {AG_DIMS(2, 3, 4), AG_DIMS(4)}},                                    \
               {2, {AG_DIMS(3, 1), AG_DIMS(1, 4)}},                                    \
               {2, {AG_DIMS0, AG_DIMS(2, 3)}}}},
#define TEST_CASES(X) X(isnan) X(isinf) X(isfinite)

#define DEFINE_TEST_CALL(NAME)                                              \
    static ag_tensor *call_##NAME(ag_tensor *const *in, int n, void *ctx) { \
        (void)n, (void)ctx;                                                 \
        return ag_##NAME(in[0]);                                            \
    }
TEST_CASES(DEFINE_TEST_CALL)

#define TEST_ROW(NAME)                                                                        \
    {.name = #NAME, .call = call_##NAME, .domain = AG_DOMAIN_ANY,                             \
     .cases = {{1, {AG_DIMS(3, 4)}}, {1, {AG_DIMS0}}, {1, {AG_DIMS(2, 3, 2)}}, {1, {AG_DIMS(0, 3)}}}},
const ag_op_test ag_test_compare_cases[] = {COMPARE_CASES(ROW) TEST_CASES(TEST_ROW){.name = NULL}};

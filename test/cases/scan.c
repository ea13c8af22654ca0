/*
 * scan.c - the test rows of the scans (ops/scan.c): each on a [3, 4] input
 * along dim -1, a [2, 3, 4] along dim 1, a 0-d along dim 0 and an empty
 * [2, 0, 3] along its empty dim 1.
 */
#include "test/cases/op_cases.h"

#define SCAN_CASES {{1, {AG_DIMS(3, 4)}}, {1, {AG_DIMS(2, 3, 4)}}, {1, {AG_DIMS0}}, {1, {AG_DIMS(2, 0, 3)}}}

/* The dim a scan's call runs along for x. */
#define DIM(x) ((x)->ndim == 3 ? 1 : (x)->ndim == 0 ? 0 : -1)

#define SCAN_CALL(NAME)                                                     \
    static ag_tensor *call_##NAME(ag_tensor *const *in, int n, void *ctx) { \
        (void)n, (void)ctx;                                                 \
        return ag_##NAME(in[0], DIM(in[0]));                                \
    }
SCAN_CALL(cumsum) SCAN_CALL(cumprod) SCAN_CALL(logcumsumexp)
static ag_tensor *call_cummax(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    return ag_cummax(in[0], DIM(in[0]), NULL);
}
static ag_tensor *call_cummin(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    return ag_cummin(in[0], DIM(in[0]), NULL);
}

#define ROW(NAME, DOMAIN) {.name = #NAME, .call = call_##NAME, .domain = DOMAIN, .cases = SCAN_CASES}
const ag_op_test ag_test_scan_cases[] = {
    ROW(cumsum, AG_DOMAIN_ANY),
    ROW(cumprod, AG_DOMAIN_ANY),
    ROW(logcumsumexp, AG_DOMAIN_ANY),
    ROW(cummax, AG_DOMAIN_DISTINCT), /* distinct: no ties for the finite differences to straddle */
    ROW(cummin, AG_DOMAIN_DISTINCT),
    {.name = NULL},
};

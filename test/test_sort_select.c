#include <stdio.h>
#include <math.h>
#include "agrad/agrad.h"
#include "tap.h"
/*
 * test_sort_select.c - topk and kthvalue against the prefix of the stable sort.
 *
 * ops/sort.c selects the first k of a lane with a bounded heap when k is at most an
 * eighth of the lane (O(n log k)) and sorts the whole lane otherwise; both must give
 * the stable sort's values and indices, ties (to the lower index) and NaN included.
 */
int main(void) {
    int bad = 0, cases = 0;
    ag_manual_seed(1);
    for (int trial = 0; trial < 300; trial++) {
        ag_scope_begin();
        int64_t n = 8 + trial % 97, rows = 1 + trial % 5;
        ag_tensor *x = ag_floor(ag_mul_scalar(ag_randn(AG_SHAPE(rows, n), trial % 2 ? AG_F64 : AG_F32), 3));
        if (trial % 3 == 0) /* a sixth of the elements NaN */
            x = ag_where(ag_gt(ag_randn(AG_SHAPE(rows, n), ag_dtype_of(x)), ag_scalar(1.5, ag_dtype_of(x))), ag_full(AG_SHAPE(1), NAN, ag_dtype_of(x)), x);
        int64_t k = 1 + trial % (n / 8);
        for (int largest = 0; largest < 2; largest++) {
            ag_tensor *si, *ti;
            ag_tensor *sv = ag_sort(x, 1, largest, &si);
            ag_tensor *tv = ag_topk(x, k, 1, largest, true, &ti);
            ag_tensor *sv_k = ag_narrow(sv, 1, 0, k), *si_k = ag_narrow(si, 1, 0, k);
            double dv = ag_item(ag_sum(ag_to_dtype(ag_ne(ag_nan_to_num(sv_k, 1e9, 0, 0), ag_nan_to_num(tv, 1e9, 0, 0)), AG_F64)));
            double di = ag_item(ag_sum(ag_to_dtype(ag_ne(si_k, ti), AG_F64)));
            cases++;
            if (dv || di) {
                bad++;
                if (bad < 5) diag("trial %d n %lld k %lld largest %d: %g values, %g indices differ", trial, (long long)n, (long long)k, largest, dv, di);
            }
        }
        ag_tensor *ki; ag_tensor *kv = ag_kthvalue(x, k, 1, false, &ki);
        ag_tensor *si; ag_tensor *sv = ag_sort(x, 1, false, &si);
        double dv = ag_item(ag_sum(ag_to_dtype(ag_ne(ag_nan_to_num(ag_select(sv, 1, k - 1), 1e9, 0, 0), ag_nan_to_num(kv, 1e9, 0, 0)), AG_F64)));
        double di = ag_item(ag_sum(ag_to_dtype(ag_ne(ag_select(si, 1, k - 1), ki), AG_F64)));
        cases++;
        if (dv || di) {
            bad++;
            if (bad < 5) diag("kthvalue trial %d: %g values, %g indices differ", trial, dv, di);
        }
        ag_scope_end();
    }
    ok(cases == 900 && bad == 0, "topk (largest and smallest) and kthvalue equal the stable sort's prefix: %d of %d cases differ",
       bad, cases);
    return tap_done();
}

/*
 * train/runs.c - the same training repeated over seeds, summarised as the mean
 * and sample standard deviation of its final figures.
 */
#include <math.h>
#include "core/internal.h"
#include "agrad/train.h"

ag_status ag_repeat_runs(ag_run_fn fn, void *ctx, int runs, uint64_t first_seed, int nmetrics, double *mean,
                         double *std, double *values) {
    if (!fn || !mean || !std || runs < 1 || nmetrics < 1)
        return ag__fail(AG_ERR_ARG, "repeat_runs: need fn, mean and std, and runs %d and nmetrics %d >= 1", runs, nmetrics);
    double *all = ag__alloc((size_t)runs * (size_t)nmetrics * sizeof(double));
    if (!all) return ag__fail(AG_ERR_NOMEM, "repeat_runs: out of memory");
    ag_status st = AG_OK;
    for (int r = 0; !st && r < runs; r++) {
        ag_manual_seed(first_seed + (uint64_t)r);
        st = fn(ctx, first_seed + (uint64_t)r, all + (size_t)r * (size_t)nmetrics);
    }
    for (int m = 0; !st && m < nmetrics; m++) {
        /* mean, then Σ(x - mean)² / (n - 1): two passes, as numpy's std(ddof=1) */
        double s = 0, ss = 0;
        for (int r = 0; r < runs; r++) s += all[r * nmetrics + m];
        mean[m] = s / runs;
        for (int r = 0; r < runs; r++) ss += (all[r * nmetrics + m] - mean[m]) * (all[r * nmetrics + m] - mean[m]);
        std[m] = runs > 1 ? sqrt(ss / (runs - 1)) : 0.0;
    }
    if (!st && values) for (int i = 0; i < runs * nmetrics; i++) values[i] = all[i];
    ag__free(all);
    return st;
}

/*
 * test/fixture.h - comparing a result with a PyTorch fixture tensor, shared by the
 * tests that read the safetensors fixtures in test/fixtures/ (conv, embedding, nn_layers, rnn).
 */
#ifndef AGRAD_TEST_FIXTURE_H
#define AGRAD_TEST_FIXTURE_H

#include <math.h>
#include <stdlib.h>
#include "agrad/agrad.h"

/* max |a - b| / max(1, |b|) over the elements; INFINITY when the shapes differ, either
 * is NULL, or an error is NaN. */
static double worst(const ag_tensor *a, const ag_tensor *b) {
    if (!a || !b || ag_numel(a) != ag_numel(b) || ag_ndim(a) != ag_ndim(b)) return INFINITY;
    for (int d = 0; d < ag_ndim(a); d++)
        if (ag_shape_of(a).dim[d] != ag_shape_of(b).dim[d]) return INFINITY;
    int64_t n = ag_numel(a);
    double *x = malloc(sizeof(double) * (size_t)(n + 1)), *y = malloc(sizeof(double) * (size_t)(n + 1)), w = 0;
    ag_copy_to(a, x, n, AG_F64);
    ag_copy_to(b, y, n, AG_F64);
    for (int64_t i = 0; i < n; i++) {
        double e = fabs(x[i] - y[i]) / fmax(1, fabs(y[i]));
        if (!(e <= w)) w = isnan(e) ? INFINITY : e;
    }
    free(x);
    free(y);
    return w;
}

#endif

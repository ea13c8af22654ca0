/*
 * qr.c - Householder QR with the sign correction of nn.init.orthogonal_.
 *
 * Column k's reflector H_k = I - 2·v·vᵀ/(vᵀv) maps a[k:, k] to α·e_1 with
 * α = -sign(a[k][k])·‖a[k:, k]‖ (no cancellation in v_0 = a[k][k] - α).
 * Q = H_0·H_1···H_{n-1} applied to the first n columns of I; R's diagonal is α.
 */
#include <math.h>
#include <string.h>
#include "nn/qr.h"

ag_status ag__qr_signed_q(double *a, int64_t m, int64_t n, double *q) {
    double *v = ag__alloc_n(m * n, sizeof(double)); /* reflector k in column k, rows k.. (m * n: a's count) */
    double *vv = ag__alloc_n(n, sizeof(double));     /* vᵀv of each reflector, 0: none */
    double *rdiag = ag__alloc_n(n, sizeof(double));
    if (!v || !vv || !rdiag) {
        ag__free(v);
        ag__free(vv);
        ag__free(rdiag);
        return AG_ERR_NOMEM;
    }
    for (int64_t k = 0; k < n; k++) {
        double norm = 0;
        for (int64_t i = k; i < m; i++) norm += a[i * n + k] * a[i * n + k];
        norm = sqrt(norm);
        double alpha = a[k * n + k] > 0 ? -norm : norm;
        double s = 0;
        for (int64_t i = k; i < m; i++) {
            v[i * n + k] = a[i * n + k] - (i == k ? alpha : 0);
            s += v[i * n + k] * v[i * n + k];
        }
        vv[k] = s;
        rdiag[k] = s > 0 ? alpha : a[k * n + k];
        if (s == 0) continue;
        for (int64_t j = k; j < n; j++) { /* a[k:, j] -= 2·v·(vᵀ a[k:, j])/(vᵀv) */
            double d = 0;
            for (int64_t i = k; i < m; i++) d += v[i * n + k] * a[i * n + j];
            d *= 2 / s;
            for (int64_t i = k; i < m; i++) a[i * n + j] -= d * v[i * n + k];
        }
    }
    memset(q, 0, sizeof(double) * (size_t)(m * n));
    for (int64_t j = 0; j < n; j++) q[j * n + j] = 1;
    for (int64_t k = n - 1; k >= 0; k--) { /* q = H_k·q, rows k.. */
        if (vv[k] == 0) continue;
        for (int64_t j = 0; j < n; j++) {
            double d = 0;
            for (int64_t i = k; i < m; i++) d += v[i * n + k] * q[i * n + j];
            d *= 2 / vv[k];
            for (int64_t i = k; i < m; i++) q[i * n + j] -= d * v[i * n + k];
        }
    }
    for (int64_t j = 0; j < n; j++) { /* q[:, j] *= sign(R[j][j]) */
        double sg = (rdiag[j] > 0) - (rdiag[j] < 0);
        for (int64_t i = 0; i < m; i++) q[i * n + j] *= sg;
    }
    ag__free(v);
    ag__free(vv);
    ag__free(rdiag);
    return AG_OK;
}

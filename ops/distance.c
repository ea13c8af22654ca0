/*
 * distance.c - distances and normalisation built from registered ops: cdist,
 * pairwise_distance, cosine_similarity and F.normalize (ag_lp_normalize).
 * Nothing here has an adjoint of its own; the norms go through
 * ag_linalg_vector_norm, whose gradient is 0 where a norm is 0 (PyTorch's
 * cdist and pairwise_distance give 0 there too).
 */
#include <math.h>
#include "agrad/linalg.h"
#include "agrad/ops.h"
#include "core/autocast.h"
#include "core/iter.h"

/* p of a norm: not negative and not NaN. */
static ag_status check_p(const char *op, double p) {
    if (!(p >= 0)) return ag__fail(AG_ERR_VALUE, "%s: p must be a non-negative number, got %g", op, p);
    return AG_OK;
}

ag_tensor *ag_cdist(ag_tensor *x1, ag_tensor *x2, double p) {
    AG_CHECK_HANDLES(NULL, "cdist", x1, x2);
    if (!x1 || !x2) return NULL;
    const char *op = "cdist";
    char s1[AG_SHAPE_STR], s2[AG_SHAPE_STR];
    if (ag__check_float(op, x1, x2) || check_p(op, p)) return NULL;
    if (x1->ndim < 2 || x2->ndim < 2 || x1->shape[x1->ndim - 1] != x2->shape[x2->ndim - 1])
        return ag__fail_null(AG_ERR_SHAPE, "%s: expects [..., P, M] and [..., R, M] with one M, got %s and %s", op,
                             ag__tshape(s1, x1), ag__tshape(s2, x2));
    if (x1->ndim == AG_MAX_DIMS || x2->ndim == AG_MAX_DIMS)
        return ag__fail_null(AG_ERR_SHAPE, "%s: inputs of %d dims leave no room for the pair dim", op, AG_MAX_DIMS);
    if (ag__composite_begin(op)) return NULL;
    const int64_t P = x1->shape[x1->ndim - 2], R = x2->shape[x2->ndim - 2];
    if (p == 2 && (P > 25 || R > 25)) {
        /* PyTorch's default compute mode (its _euclidean_dist): y = sqrt(max(‖a‖² + ‖b‖² - 2a·b, 1e-30)) with the
         * norms inside one matmul, [-2a, ‖a‖², 1]·[b, 1, ‖b‖²]ᵀ, so that no pass over the [P, R] result adds them
         * and their gradients come out of the matmul's backward */
        ag_tensor *n1 = ag_sum_dim(ag_square(x1), -1, true), *n2 = ag_sum_dim(ag_square(x2), -1, true);
        ag_tensor *a = ag_cat((ag_tensor *[]){ag_mul_scalar(x1, -2), n1, ag_ones_like(n1)}, 3, -1);
        ag_tensor *b = ag_cat((ag_tensor *[]){x2, ag_ones_like(n2), n2}, 3, -1);
        const uint8_t autocast = ag__autocast; /* float32 under autocast too, as PyTorch's cdist: */
        ag__autocast = 0;                      /* in bf16 the difference would cancel to noise */
        ag_tensor *d2 = ag_matmul(a, ag_transpose(b, -1, -2));
        ag__autocast = autocast;
        return ag__composite_end(ag_sqrt(ag_clamp(d2, 1e-30, INFINITY)));
    }
    /* y[..., i, j] = ‖x1[..., i, :] - x2[..., j, :]‖_p, through [..., P, 1, M] - [..., 1, R, M] */
    ag_tensor *diff = ag_sub(ag_unsqueeze(x1, -2), ag_unsqueeze(x2, -3));
    return ag__composite_end(ag_linalg_vector_norm(diff, p, 1, (const int[]){-1}, false));
}

ag_tensor *ag_pairwise_distance(ag_tensor *x1, ag_tensor *x2, double p, double eps, bool keepdim) {
    AG_CHECK_HANDLES(NULL, "pairwise_distance", x1, x2);
    if (!x1 || !x2) return NULL;
    const char *op = "pairwise_distance";
    if (ag__check_float(op, x1, x2) || check_p(op, p)) return NULL;
    if (ag__composite_begin(op)) return NULL;
    /* y = ‖x1 - x2 + eps‖_p over the last dim (x1 and x2 broadcast) */
    ag_tensor *diff = ag_add_scalar(ag_sub(x1, x2), eps);
    if (diff && diff->ndim == 0) diff = ag_unsqueeze(diff, 0); /* two 0-d inputs: a norm over one element */
    return ag__composite_end(ag_linalg_vector_norm(diff, p, 1, (const int[]){-1}, keepdim));
}

ag_tensor *ag_cosine_similarity(ag_tensor *x1, ag_tensor *x2, int dim, double eps) {
    AG_CHECK_HANDLES(NULL, "cosine_similarity", x1, x2);
    if (!x1 || !x2) return NULL;
    const char *op = "cosine_similarity";
    if (ag__check_float(op, x1, x2)) return NULL;
    int ndim;
    int64_t shape[AG_MAX_DIMS];
    if (ag__broadcast_shape(op, x1, x2, &ndim, shape)) return NULL;
    if (ag__dim(op, dim, ndim) < 0) return NULL;
    if (ag__composite_begin(op)) return NULL;
    /* y = Σ x1·x2 / (max(‖x1‖, eps)·max(‖x2‖, eps)) along dim, x1 and x2 broadcast */
    ag_shape s = {ndim, {0}};
    for (int d = 0; d < ndim; d++) s.dim[d] = shape[d];
    ag_tensor *a = ag_expand(x1, s), *b = ag_expand(x2, s);
    ag_tensor *na = ag_clamp(ag_linalg_vector_norm(a, 2, 1, &dim, false), eps, INFINITY);
    ag_tensor *nb = ag_clamp(ag_linalg_vector_norm(b, 2, 1, &dim, false), eps, INFINITY);
    return ag__composite_end(ag_div(ag_sum_dim(ag_mul(a, b), dim, false), ag_mul(na, nb)));
}

ag_tensor *ag_lp_normalize(ag_tensor *x, double p, int dim, double eps) {
    AG_CHECK_HANDLES(NULL, "normalize", x);
    if (!x) return NULL;
    const char *op = "normalize";
    if (ag__check_float(op, x, NULL) || check_p(op, p) || ag__dim(op, dim, x->ndim) < 0) return NULL;
    if (ag__composite_begin(op)) return NULL;
    /* y = x / max(‖x‖_p along dim, eps) */
    ag_tensor *norm = ag_clamp(ag_linalg_vector_norm(x, p, 1, &dim, true), eps, INFINITY);
    return ag__composite_end(ag_div(x, norm));
}

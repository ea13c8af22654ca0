/*
 * loss_margin.c - the margin losses: hinge_embedding_loss, margin_ranking_loss,
 * multi_margin_loss, cosine_embedding_loss and triplet_margin_loss, composed
 * from primitives as PyTorch's ATen composes them.
 *
 * max(0, u) is ag_clamp(u, 0, inf), whose gradient passes at u = 0 as
 * PyTorch's clamp_min does; multi_margin_loss uses ag_relu instead because
 * PyTorch's kernel counts only terms with u > 0.
 */
#include <stdlib.h>
#include "nn/loss_internal.h"
#include "agrad/ops.h"

/* l = max(0, margin - x) where y != 1, plus x where y != -1;  dx = -[margin - x >= 0] resp. 1 */
ag_tensor *ag_hinge_embedding_loss(ag_tensor *input, ag_tensor *target, const ag_loss_opts *o) {
    AG_CHECK_HANDLES(NULL, "hinge_embedding_loss", input, target);
    static const char *const L = "hinge_embedding_loss";
    ag_loss_opts buf;
    if (!input || !target || !(o = ag__loss_opts(L, o, &buf, false))) return NULL;
    if (ag__loss_check_float(L, "input", input, NULL) || ag__loss_check_float(L, "target", target, input) ||
        ag__loss_check_broadcast(L, "input", input, "target", target))
        return NULL;
    double margin = ag__loss_or(o->margin, 1.0);
    if (ag__composite_begin(L)) return NULL;
    ag_tensor *zero = ag__loss_const(input, 0);
    ag_tensor *hinge = ag_clamp(ag_rsub_scalar(margin, input), 0, INFINITY);
    ag_tensor *l = ag_add(ag_where(ag_ne(target, ag__loss_const(target, 1)), hinge, zero),
                          ag_where(ag_ne(target, ag__loss_const(target, -1)), input, zero));
    return ag__composite_end(ag__loss_reduce(l, o->reduction));
}

/* l = max(0, -y (x1 - x2) + margin);  dx1 = -y, dx2 = y where the argument is >= 0 */
ag_tensor *ag_margin_ranking_loss(ag_tensor *input1, ag_tensor *input2, ag_tensor *target, const ag_loss_opts *o) {
    AG_CHECK_HANDLES(NULL, "margin_ranking_loss", input1, input2, target);
    static const char *const L = "margin_ranking_loss";
    ag_loss_opts buf;
    if (!input1 || !input2 || !target || !(o = ag__loss_opts(L, o, &buf, false))) return NULL;
    if (ag__loss_check_float(L, "input1", input1, NULL) || ag__loss_check_float(L, "input2", input2, input1) ||
        ag__loss_check_float(L, "target", target, input1))
        return NULL;
    if (input1->ndim != input2->ndim || input1->ndim != target->ndim) {
        char a[AG_SHAPE_STR], b[AG_SHAPE_STR], c[AG_SHAPE_STR];
        return ag__fail_null(AG_ERR_SHAPE,
                             "margin_ranking_loss: all input tensors should have the same number of dims, got input1 %s, "
                             "input2 %s, target %s",
                             ag__tshape(a, input1), ag__tshape(b, input2), ag__tshape(c, target));
    }
    if (ag__loss_check_broadcast(L, "input1", input1, "input2", input2) ||
        ag__loss_check_broadcast(L, "input1", input1, "target", target) ||
        ag__loss_check_broadcast(L, "input2", input2, "target", target))
        return NULL;
    double margin = ag__loss_or(o->margin, 0.0);
    if (ag__composite_begin(L)) return NULL;
    ag_tensor *u = ag_add_scalar(ag_neg(ag_mul(target, ag_sub(input1, input2))), margin);
    return ag__composite_end(ag__loss_reduce(ag_clamp(u, 0, INFINITY), o->reduction));
}

/* An int64 target's element k must be a class in [0, c). */
static ag_status check_classes(const char *loss, const ag_tensor *target, int64_t c) {
    int64_t n = ag_numel(target);
    for (int64_t k = 0; k < n; k++) {
        int64_t t = ag__loss_index_at(target, k);
        if (t < 0 || t >= c)
            return ag__fail(AG_ERR_INDEX, "%s: target %lld is out of bounds for %lld classes (at flat index %lld)", loss,
                            (long long)t, (long long)c, (long long)k);
    }
    return AG_OK;
}

/* l_n = Σ_{j != y} w_y max(0, margin - x_y + x_j)^p / C  (p = 1, 2);
 * dx_j = w_y p u_j^(p-1) / C for u_j = margin - x_y + x_j > 0, dx_y = -Σ_{j != y} of those */
ag_tensor *ag_multi_margin_loss(ag_tensor *input, ag_tensor *target, const ag_loss_opts *o) {
    AG_CHECK_HANDLES(NULL, "multi_margin_loss", input, target);
    static const char *const L = "multi_margin_loss";
    ag_loss_opts buf;
    if (!input || !target || !(o = ag__loss_opts(L, o, &buf, false))) return NULL;
    if (ag__loss_check_float(L, "input", input, NULL)) return NULL;
    double p = ag__loss_or(o->p, 1.0), margin = ag__loss_or(o->margin, 1.0);
    if (p != 1 && p != 2) return ag__fail_null(AG_ERR_ARG, "multi_margin_loss: only p == 1 and p == 2 are supported, got %g", p);
    char a[AG_SHAPE_STR], b[AG_SHAPE_STR];
    if (input->ndim > 2 || ag_numel(input) == 0 || (input->ndim == 2 && input->shape[1] == 0))
        return ag__fail_null(AG_ERR_SHAPE, "multi_margin_loss: expected a non-empty vector or matrix input, got %s",
                             ag__tshape(a, input));
    int64_t nframe = input->ndim == 2 ? input->shape[0] : 1, c = input->ndim == 0 ? 1 : input->shape[input->ndim - 1];
    if (target->dtype != AG_I64)
        return ag__fail_null(AG_ERR_DTYPE, "%s: target must be int64 class indices, got %s", L,
                             ag_dtype_name(target->dtype));
    if (target->ndim > 1 || ag_numel(target) != nframe)
        return ag__fail_null(AG_ERR_SHAPE, "multi_margin_loss: inconsistent target size %s for input %s (expected %lld)",
                             ag__tshape(a, target), ag__tshape(b, input), (long long)nframe);
    if (o->weight && (ag__loss_check_float(L, "weight", o->weight, input) || o->weight->ndim != 1 ||
                      o->weight->shape[0] != c)) {
        if (ag_last_status() == AG_ERR_DTYPE && o->weight->ndim == 1 && o->weight->shape[0] == c) return NULL;
        return ag__fail_null(AG_ERR_SHAPE, "multi_margin_loss: weight must be one-dimensional with %lld entries, got %s",
                             (long long)c, ag__tshape(a, o->weight));
    }
    if (check_classes(L, target, c)) return NULL;
    if (ag__composite_begin(L)) return NULL;
    ag_tensor *x = ag_reshape(input, AG_SHAPE(nframe, c));
    ag_tensor *t = ag_reshape(target, AG_SHAPE(nframe, 1));
    ag_tensor *u = ag_relu(ag_add(ag_rsub_scalar(margin, ag_gather(x, 1, t)), x)); /* [N, C] */
    if (p == 2) u = ag_square(u);
    if (o->weight) u = ag_mul(u, ag_unsqueeze(ag_index_select(o->weight, 0, ag_reshape(target, AG_SHAPE(nframe))), 1));
    ag_tensor *is_y = ag_eq(ag_arange(0, (double)c, 1, AG_I64), t);
    ag_tensor *l = ag_div_scalar(ag_sum_dim(ag_where(is_y, ag__loss_const(input, 0), u), 1, false), (double)c);
    if (o->reduction == AG_REDUCTION_NONE) l = ag_reshape(l, ag_shape_of(target));
    return ag__composite_end(ag__loss_reduce(l, o->reduction));
}

/* The masks of multilabel_margin_loss from the int64 target [n, c]: valid[r, j] = 1 for the
 * target slots before row r's first -1, member[r, i] = 1 for the classes they name, and index
 * the slots' classes (0 for the unused ones).  AG_ERR_INDEX for a class outside [-1, c). */
static ag_status multilabel_masks(const ag_tensor *target, int64_t n, int64_t c, double *valid, double *member,
                                  int64_t *index) {
    for (int64_t r = 0; r < n; r++) {
        bool ended = false;
        for (int64_t j = 0; j < c; j++) {
            int64_t k = r * c + j, y = ag__loss_index_at(target, k);
            ended = ended || y == -1;
            index[k] = 0;
            if (ended) continue;
            if (y < 0 || y >= c)
                return ag__fail(AG_ERR_INDEX, "%s: target %lld is out of bounds for %lld classes (at flat index %lld)",
                                "multilabel_margin_loss", (long long)y, (long long)c, (long long)k);
            valid[k] = 1, member[r * c + y] = 1, index[k] = y;
        }
    }
    return AG_OK;
}

/* l_n = Σ_{j valid} Σ_{i not a target} max(0, 1 - (x_{y_j} - x_i)) / C;
 * dx_i = +1/C and dx_{y_j} = -1/C for each pair with a positive hinge */
ag_tensor *ag_multilabel_margin_loss(ag_tensor *input, ag_tensor *target, const ag_loss_opts *o) {
    AG_CHECK_HANDLES(NULL, "multilabel_margin_loss", input, target);
    static const char *const L = "multilabel_margin_loss";
    ag_loss_opts buf;
    if (!input || !target || !(o = ag__loss_opts(L, o, &buf, false))) return NULL;
    if (ag__loss_check_float(L, "input", input, NULL)) return NULL;
    if (target->dtype != AG_I64)
        return ag__fail_null(AG_ERR_DTYPE, "%s: target must be int64 class indices, got %s", L,
                             ag_dtype_name(target->dtype));
    char a[AG_SHAPE_STR], b[AG_SHAPE_STR];
    bool same = target->ndim == input->ndim;
    for (int d = 0; same && d < input->ndim; d++) same = target->shape[d] == input->shape[d];
    if (input->ndim < 1 || input->ndim > 2 || input->shape[input->ndim - 1] == 0 || !same)
        return ag__fail_null(AG_ERR_SHAPE,
                             "multilabel_margin_loss: expected a non-empty input [C] or [N, C] and a target of its "
                             "shape, got input %s and target %s",
                             ag__tshape(a, input), ag__tshape(b, target));
    int64_t n = input->ndim == 2 ? input->shape[0] : 1, c = input->shape[input->ndim - 1], cells = n * c;
    double *valid = calloc((size_t)(cells ? cells : 1), sizeof *valid), *member = calloc((size_t)(cells ? cells : 1), sizeof *member);
    int64_t *index = malloc((size_t)(cells ? cells : 1) * sizeof *index);
    ag_tensor *l = NULL;
    if (!valid || !member || !index) {
        ag__fail(AG_ERR_NOMEM, "%s: out of memory", L);
    } else if (!multilabel_masks(target, n, c, valid, member, index) && !ag__composite_begin(L)) {
        ag_tensor *x = ag_reshape(input, AG_SHAPE(n, c));
        ag_tensor *xt = ag_gather(x, 1, ag_from_data(index, AG_SHAPE(n, c), AG_I64)); /* x_{y_j} [n, c] */
        ag_tensor *v = ag_to_dtype(ag_from_data(valid, AG_SHAPE(n, c, 1), AG_F64), input->dtype);
        ag_tensor *m = ag_to_dtype(ag_from_data(member, AG_SHAPE(n, 1, c), AG_F64), input->dtype);
        ag_tensor *pairs = ag_mul(v, ag_rsub_scalar(1, m)); /* [n, j, i]: j a valid slot, i not a target */
        ag_tensor *h = ag_relu(ag_rsub_scalar(1, ag_sub(ag_unsqueeze(xt, 2), ag_unsqueeze(x, 1))));
        const int dims[2] = {1, 2};
        l = ag_div_scalar(ag_sum_dims(ag_mul(h, pairs), 2, dims, false), (double)c);
        if (o->reduction == AG_REDUCTION_NONE && input->ndim == 1) l = ag_reshape(l, AG_SCALAR_SHAPE);
        l = ag__composite_end(ag__loss_reduce(l, o->reduction));
    }
    free(valid), free(member), free(index);
    return l;
}

/* cos = x1·x2 / sqrt((|x1|² + 1e-12)(|x2|² + 1e-12)) over the last dim;
 * l = 1 - cos where y == 1, max(0, cos - margin) where y == -1, 0 otherwise */
ag_tensor *ag_cosine_embedding_loss(ag_tensor *input1, ag_tensor *input2, ag_tensor *target, const ag_loss_opts *o) {
    AG_CHECK_HANDLES(NULL, "cosine_embedding_loss", input1, input2, target);
    static const char *const L = "cosine_embedding_loss";
    ag_loss_opts buf;
    if (!input1 || !input2 || !target || !(o = ag__loss_opts(L, o, &buf, false))) return NULL;
    if (ag__loss_check_float(L, "input1", input1, NULL) || ag__loss_check_float(L, "input2", input2, input1) ||
        ag__loss_check_float(L, "target", target, input1))
        return NULL;
    char a[AG_SHAPE_STR], b[AG_SHAPE_STR], c[AG_SHAPE_STR];
    if (target->ndim > 1 || input1->ndim != target->ndim + 1 || input2->ndim != target->ndim + 1)
        return ag__fail_null(AG_ERR_SHAPE,
                             "cosine_embedding_loss: expected inputs [N, D] with target [N], or [D] with a 0-d target; "
                             "got input1 %s, input2 %s, target %s",
                             ag__tshape(a, input1), ag__tshape(b, input2), ag__tshape(c, target));
    if (ag__loss_check_broadcast(L, "input1", input1, "input2", input2)) return NULL;
    double margin = ag__loss_or(o->margin, 0.0);
    if (ag__composite_begin(L)) return NULL;
    ag_tensor *prod = ag_sum_dim(ag_mul(input1, input2), -1, false);
    ag_tensor *m1 = ag_add_scalar(ag_sum_dim(ag_square(input1), -1, false), 1e-12);
    ag_tensor *m2 = ag_add_scalar(ag_sum_dim(ag_square(input2), -1, false), 1e-12);
    ag_tensor *cos = ag_div(prod, ag_sqrt(ag_mul(m1, m2)));
    ag_tensor *zero = ag__loss_const(cos, 0);
    ag_tensor *pos = ag_where(ag_eq(target, ag__loss_const(target, 1)), ag_rsub_scalar(1, cos), zero);
    ag_tensor *neg = ag_where(ag_eq(target, ag__loss_const(target, -1)),
                              ag_clamp(ag_sub_scalar(cos, margin), 0, INFINITY), zero);
    return ag__composite_end(ag__loss_reduce(ag_add(pos, neg), o->reduction));
}

/* ||u - v + eps||_p over the last dim (PyTorch's pairwise_distance). */
static ag_tensor *pairwise_distance(ag_tensor *u, ag_tensor *v, double p, double eps) {
    ag_tensor *d = ag_add_scalar(ag_sub(u, v), eps);
    if (p == 2) return ag_sqrt(ag_sum_dim(ag_square(d), -1, false));
    if (p == 1) return ag_sum_dim(ag_abs(d), -1, false);
    if (isinf(p)) return ag_max_dim(ag_abs(d), -1, false);
    return ag_pow_scalar(ag_sum_dim(ag_pow_scalar(ag_abs(d), p), -1, false), 1 / p);
}

/* The checks both triplet losses make: three floating tensors of one dtype and one number of
 * dims (at least 1).  True (error recorded, naming the loss L) when they fail. */
static bool check_triplet(const char *L, const ag_tensor *anchor, const ag_tensor *positive, const ag_tensor *negative) {
    if (ag__loss_check_float(L, "anchor", anchor, NULL) || ag__loss_check_float(L, "positive", positive, anchor) ||
        ag__loss_check_float(L, "negative", negative, anchor))
        return true;
    char a[AG_SHAPE_STR], b[AG_SHAPE_STR], c[AG_SHAPE_STR];
    if (anchor->ndim != positive->ndim || anchor->ndim != negative->ndim || anchor->ndim < 1) {
        ag__fail(AG_ERR_SHAPE,
                 "%s: anchor, positive and negative must have one number of dims (at least 1), got %s, %s and %s", L,
                 ag__tshape(a, anchor), ag__tshape(b, positive), ag__tshape(c, negative));
        return true;
    }
    return false;
}

/* l = max(0, margin + d(a, p) - d(a, n)), d(a, n) replaced by min(d(a, n), d(p, n)) with swap */
ag_tensor *ag_triplet_margin_loss(ag_tensor *anchor, ag_tensor *positive, ag_tensor *negative, const ag_loss_opts *o) {
    AG_CHECK_HANDLES(NULL, "triplet_margin_loss", anchor, positive, negative);
    static const char *const L = "triplet_margin_loss";
    ag_loss_opts buf;
    if (!anchor || !positive || !negative || !(o = ag__loss_opts(L, o, &buf, false))) return NULL;
    if (check_triplet(L, anchor, positive, negative)) return NULL;
    if (ag__loss_check_broadcast(L, "anchor", anchor, "positive", positive) ||
        ag__loss_check_broadcast(L, "anchor", anchor, "negative", negative) ||
        ag__loss_check_broadcast(L, "positive", positive, "negative", negative))
        return NULL;
    double margin = ag__loss_or(o->margin, 1.0), p = ag__loss_or(o->p, 2.0), eps = ag__loss_or(o->eps, 1e-6);
    if (!(p > 0))
        return ag__fail_null(AG_ERR_ARG, "triplet_margin_loss: the norm degree p must be positive, got %g", p);
    if (ag__composite_begin(L)) return NULL;
    ag_tensor *dpos = pairwise_distance(anchor, positive, p, eps);
    ag_tensor *dneg = pairwise_distance(anchor, negative, p, eps);
    if (o->swap) dneg = ag_minimum(dneg, pairwise_distance(positive, negative, p, eps));
    ag_tensor *l = ag_clamp(ag_sub(ag_add_scalar(dpos, margin), dneg), 0, INFINITY);
    return ag__composite_end(ag__loss_reduce(l, o->reduction));
}

/* The distance of the result: a tensor of the inputs' dtype; NULL (and the callback's error, or
 * one naming the loss) otherwise. */
static ag_tensor *call_distance(ag_distance_fn f, void *ctx, ag_tensor *u, ag_tensor *v, const ag_tensor *like) {
    if (!f) return pairwise_distance(u, v, 2, 1e-6);
    ag_tensor *d = f(u, v, ctx);
    if (!d && ag_last_status() == AG_OK)
        ag__fail(AG_ERR_VALUE, "triplet_margin_with_distance_loss: the distance function returned NULL");
    else if (d && d->dtype != like->dtype)
        return ag__fail_null(AG_ERR_DTYPE, "triplet_margin_with_distance_loss: the distance function returned %s for %s inputs",
                             ag_dtype_name(d->dtype), ag_dtype_name(like->dtype));
    return d;
}

/* l = max(0, margin + d(a, p) - d(a, n)) for any distance d (default: the L2 pairwise distance),
 * d(a, n) replaced by min(d(a, n), d(p, n)) with swap; the gradient flows through d */
ag_tensor *ag_triplet_margin_with_distance_loss(ag_tensor *anchor, ag_tensor *positive, ag_tensor *negative,
                                                ag_distance_fn distance, void *ctx, const ag_loss_opts *o) {
    AG_CHECK_HANDLES(NULL, "triplet_margin_with_distance_loss", anchor, positive, negative);
    static const char *const L = "triplet_margin_with_distance_loss";
    ag_loss_opts buf;
    if (!anchor || !positive || !negative || !(o = ag__loss_opts(L, o, &buf, false))) return NULL;
    if (check_triplet(L, anchor, positive, negative)) return NULL;
    double margin = ag__loss_or(o->margin, 1.0);
    if (!(margin > 0))
        return ag__fail_null(AG_ERR_ARG, "triplet_margin_with_distance_loss: margin must be greater than 0, got %g", margin);
    if (ag__composite_begin(L)) return NULL;
    ag_tensor *dpos = call_distance(distance, ctx, anchor, positive, anchor);
    ag_tensor *dneg = dpos ? call_distance(distance, ctx, anchor, negative, anchor) : NULL;
    if (o->swap && dneg) {
        ag_tensor *dswap = call_distance(distance, ctx, positive, negative, anchor);
        dneg = dswap ? ag_minimum(dneg, dswap) : NULL;
    }
    ag_tensor *l = dneg ? ag_clamp(ag_sub(ag_add_scalar(dpos, margin), dneg), 0, INFINITY) : NULL;
    return ag__composite_end(ag__loss_reduce(l, o->reduction));
}

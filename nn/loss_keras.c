/*
 * loss_keras.c - the Keras losses the ME 536 deck lists that PyTorch lacks:
 * LogCosh, MeanAbsolutePercentageError, MeanSquaredLogarithmicError, Hinge,
 * SquaredHinge, CategoricalHinge and CosineSimilarity, as Keras 2 defines them
 * (https://keras.io/api/losses/, tf.keras.losses), composed from primitives.
 *
 * As in Keras, each gives one value per sample, reducing the last dim (the
 * mean, or for CategoricalHinge and CosineSimilarity the expression over the
 * last dim), and the reduction then acts on those values: none gives the
 * per-sample values (input's shape without its last dim), mean their mean
 * (Keras's SUM_OVER_BATCH_SIZE), sum their sum.  input is y_pred and target
 * y_true; they broadcast together.  A 0-d pair is one sample of one value.
 */
#include <math.h>
#include "nn/loss_internal.h"
#include "agrad/ops.h"

#define KERAS_EPSILON 1e-7 /* keras.backend.epsilon() */
#define LOG2 0.6931471805599453

/* Checks the pair and the reduction; returns the options or NULL. */
static const ag_loss_opts *check(const char *loss, ag_tensor *x, ag_tensor *y, const ag_loss_opts *o,
                                 ag_loss_opts *buf) {
    if (!x || !y || !(o = ag__loss_opts(loss, o, buf, false))) return NULL;
    if (ag__loss_check_float(loss, "input", x, NULL) || ag__loss_check_float(loss, "target", y, x) ||
        ag__loss_check_broadcast(loss, "input", x, "target", y))
        return NULL;
    return o;
}

/* mean over the last dim (the value itself for 0-d), then the reduction */
static ag_tensor *per_sample_mean(ag_tensor *l, ag_reduction r) {
    if (l && ag_ndim(l) > 0) l = ag_mean_dim(l, -1, false);
    return ag__loss_reduce(l, r);
}
static ag_tensor *sum_last(ag_tensor *l) { return l && ag_ndim(l) > 0 ? ag_sum_dim(l, -1, false) : l; }

/* log cosh(d), d = y_pred - y_true: log(cosh(d)) for |d| < 15 (its gradient sinh/cosh = tanh(d)
 * is then accurate near 0), else |d| + log1p(e^-2|d|) - log 2 (finite for any finite d; cosh is
 * evaluated at d clamped to ±15 so neither branch overflows);  dd = tanh(d) */
ag_tensor *ag_log_cosh_loss(ag_tensor *input, ag_tensor *target, const ag_loss_opts *o) {
    AG_CHECK_HANDLES(NULL, "log_cosh_loss", input, target);
    ag_loss_opts buf;
    if (!(o = check("log_cosh_loss", input, target, o, &buf))) return NULL;
    if (ag__composite_begin("log_cosh_loss")) return NULL;
    ag_tensor *d = ag_sub(input, target);
    ag_tensor *a = ag_abs(d);
    ag_tensor *near = ag_log(ag_cosh(ag_clamp(d, -15, 15)));
    ag_tensor *far = ag_sub_scalar(ag_add(a, ag_log1p(ag_exp(ag_mul_scalar(a, -2)))), LOG2);
    ag_tensor *l = ag_where(ag_lt(a, ag__loss_const(a, 15)), near, far);
    return ag__composite_end(per_sample_mean(l, o->reduction));
}

/* 100 |y_true - y_pred| / max(|y_true|, 1e-7); dy_pred = 100 sign(y_pred - y_true) / max(|y_true|, 1e-7) */
ag_tensor *ag_mean_absolute_percentage_error(ag_tensor *input, ag_tensor *target, const ag_loss_opts *o) {
    AG_CHECK_HANDLES(NULL, "mean_absolute_percentage_error", input, target);
    ag_loss_opts buf;
    if (!(o = check("mean_absolute_percentage_error", input, target, o, &buf))) return NULL;
    if (ag__composite_begin("mean_absolute_percentage_error")) return NULL;
    ag_tensor *scale = ag_clamp(ag_abs(target), KERAS_EPSILON, INFINITY);
    ag_tensor *l = ag_mul_scalar(ag_abs(ag_div(ag_sub(target, input), scale)), 100);
    return ag__composite_end(per_sample_mean(l, o->reduction));
}

/* (log(max(y_pred, 1e-7) + 1) - log(max(y_true, 1e-7) + 1))²; dy_pred = 2 (difference) / (y_pred + 1)
 * where y_pred > 1e-7, else 0 */
ag_tensor *ag_mean_squared_logarithmic_error(ag_tensor *input, ag_tensor *target, const ag_loss_opts *o) {
    AG_CHECK_HANDLES(NULL, "mean_squared_logarithmic_error", input, target);
    ag_loss_opts buf;
    if (!(o = check("mean_squared_logarithmic_error", input, target, o, &buf))) return NULL;
    if (ag__composite_begin("mean_squared_logarithmic_error")) return NULL;
    ag_tensor *lp = ag_log1p(ag_clamp(input, KERAS_EPSILON, INFINITY));
    ag_tensor *lt = ag_log1p(ag_clamp(target, KERAS_EPSILON, INFINITY));
    return ag__composite_end(per_sample_mean(ag_square(ag_sub(lp, lt)), o->reduction));
}

/* Keras's labels: -1/1, or 0/1 turned into -1/1 when every target is 0 or 1 (as its
 * _maybe_convert_labels). */
static ag_tensor *signed_labels(ag_tensor *y) {
    ag_tensor *binary = ag_all(ag_eq(ag_mul(y, ag_sub_scalar(y, 1)), ag__loss_const(y, 0))); /* y (y - 1) = 0 */
    if (!binary) return NULL;
    return ag_item(binary) != 0 ? ag_sub_scalar(ag_mul_scalar(y, 2), 1) : y;
}

/* max(1 - y_true y_pred, 0), squared for the squared hinge; dy_pred = -y_true resp.
 * -2 y_true max(1 - y_true y_pred, 0) where the margin is positive */
static ag_tensor *hinge(const char *name, ag_tensor *input, ag_tensor *target, const ag_loss_opts *o, bool squared) {
    ag_loss_opts buf;
    if (!(o = check(name, input, target, o, &buf))) return NULL;
    if (ag__composite_begin(name)) return NULL;
    ag_tensor *m = ag_relu(ag_rsub_scalar(1, ag_mul(signed_labels(target), input)));
    return ag__composite_end(per_sample_mean(squared ? ag_square(m) : m, o->reduction));
}
ag_tensor *ag_hinge_loss(ag_tensor *input, ag_tensor *target, const ag_loss_opts *o) {
    AG_CHECK_HANDLES(NULL, "hinge_loss", input, target);
    return hinge("hinge_loss", input, target, o, false);
}
ag_tensor *ag_squared_hinge_loss(ag_tensor *input, ag_tensor *target, const ag_loss_opts *o) {
    AG_CHECK_HANDLES(NULL, "squared_hinge_loss", input, target);
    return hinge("squared_hinge_loss", input, target, o, true);
}

/* pos = Σ y_true y_pred, neg = max((1 - y_true) y_pred) over the last dim; max(neg - pos + 1, 0);
 * the max's gradient is split over ties */
ag_tensor *ag_categorical_hinge_loss(ag_tensor *input, ag_tensor *target, const ag_loss_opts *o) {
    AG_CHECK_HANDLES(NULL, "categorical_hinge_loss", input, target);
    ag_loss_opts buf;
    if (!(o = check("categorical_hinge_loss", input, target, o, &buf))) return NULL;
    if (ag__composite_begin("categorical_hinge_loss")) return NULL;
    ag_tensor *pos = sum_last(ag_mul(target, input));
    ag_tensor *others = ag_mul(ag_rsub_scalar(1, target), input);
    const int last = -1;
    ag_tensor *neg = others && ag_ndim(others) > 0 ? ag_amax(others, 1, &last, false) : others;
    ag_tensor *l = ag_relu(ag_add_scalar(ag_sub(neg, pos), 1));
    return ag__composite_end(ag__loss_reduce(l, o->reduction));
}

/* -Σ (y_true / ‖y_true‖) (y_pred / ‖y_pred‖) over the last dim, each norm at least 1e-6
 * (l2_normalize's max(Σ x², 1e-12)): -1 for aligned vectors, 1 for opposite ones */
ag_tensor *ag_cosine_similarity_loss(ag_tensor *input, ag_tensor *target, const ag_loss_opts *o) {
    AG_CHECK_HANDLES(NULL, "cosine_similarity_loss", input, target);
    ag_loss_opts buf;
    if (!(o = check("cosine_similarity_loss", input, target, o, &buf))) return NULL;
    if (ag__composite_begin("cosine_similarity_loss")) return NULL;
    int last = -1, n = ag_ndim(input) > 0 || ag_ndim(target) > 0;
    ag_tensor *np = ag_rsqrt(ag_clamp(ag_sum_dims(ag_square(input), n, &last, true), 1e-12, INFINITY));
    ag_tensor *nt = ag_rsqrt(ag_clamp(ag_sum_dims(ag_square(target), n, &last, true), 1e-12, INFINITY));
    ag_tensor *l = ag_neg(sum_last(ag_mul(ag_mul(input, np), ag_mul(target, nt))));
    return ag__composite_end(ag__loss_reduce(l, o->reduction));
}

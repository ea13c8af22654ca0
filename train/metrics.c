/*
 * train/metrics.c - classification and regression metrics as sklearn.metrics
 * computes them: values are copied out of the tensors (any layout), counted in
 * int64 and summed in double; nothing is recorded by autograd.
 */
#include <math.h>
#include <string.h>
#include "core/internal.h"
#include "agrad/train.h"

/* ---- reading tensors ------------------------------------------------------------------- */
/* A new buffer (ag__free it) holding t's values in row-major order as doubles. */
static double *values_of(const char *op, const ag_tensor *t) {
    int64_t n = ag_numel(t);
    double *v = ag__alloc_n(n ? n : 1, sizeof(double)); /* t may be an expanded view of any count */
    if (!v) return ag__fail_null(AG_ERR_NOMEM, "%s: out of memory", op);
    if (ag_copy_to(t, v, n, AG_F64)) {
        ag__free(v);
        return NULL;
    }
    return v;
}

/* An int64 class id read back from a double: 2^63 (INT64_MAX rounded up) saturates
 * rather than overflow the conversion. */
static int64_t id_of(double v) { return v >= 0x1p63 ? INT64_MAX : (int64_t)v; }

static bool is_float(const ag_tensor *t) { return t->dtype == AG_F32 || t->dtype == AG_F64; }

/* A NULL tensor argument: the status of the failure that made it NULL, whose
 * message stays, as ops pass NULL through; AG_ERR_ARG if nothing failed before. */
static ag_status null_arg(const char *op) {
    ag_status s = ag_last_status();
    return s ? s : ag__fail(AG_ERR_ARG, "%s: NULL argument", op);
}

/* The predicted and true class ids of n samples (one buffer, *p then *t; ag__free(*p)), and
 * the number of classes the scores have (0 for ids). */
static ag_status class_pairs(const char *op, const ag_tensor *pred, const ag_tensor *target, int64_t **p,
                             int64_t **t, int64_t *n, int64_t *ncls) {
    *p = *t = NULL;
    AG_CHECK_HANDLES(AG_ERR_ARG, op, pred, target);
    if (!pred || !target) return null_arg(op);
    char s1[AG_SHAPE_STR], s2[AG_SHAPE_STR];
    if (target->dtype != AG_I64)
        return ag__fail(AG_ERR_DTYPE, "%s: targets must be int64 class ids, got %s", op, ag_dtype_name(target->dtype));
    bool scores = is_float(pred) && pred->ndim == 2;
    if (!scores && !(pred->dtype == AG_I64 && pred->ndim == 1))
        return ag__fail(AG_ERR_DTYPE,
                        "%s: predictions must be int64 class ids [N] or float scores [N, C], got %s %s "
                        "(one score per sample: use ag_binarize)",
                        op, ag_dtype_name(pred->dtype), ag__tshape(s1, pred));
    if (target->ndim != 1 || target->shape[0] != pred->shape[0])
        return ag__fail(AG_ERR_SHAPE, "%s: predictions %s and targets %s do not pair up: targets must be [%lld]", op,
                        ag__tshape(s1, pred), ag__tshape(s2, target), (long long)pred->shape[0]);
    *n = pred->shape[0];
    *ncls = scores ? pred->shape[1] : 0;
    if (*n == 0) return ag__fail(AG_ERR_VALUE, "%s: no samples", op);
    if (scores && *ncls == 0) return ag__fail(AG_ERR_SHAPE, "%s: scores %s have no classes", op, ag__tshape(s1, pred));
    int64_t *buf = ag__alloc_n(*n, 2 * sizeof(int64_t));
    if (!buf) return ag__fail(AG_ERR_NOMEM, "%s: out of memory", op);
    double *tv = values_of(op, target), *pv = tv ? values_of(op, pred) : NULL;
    if (!pv) {
        ag__free(tv);
        ag__free(buf);
        return ag_last_status();
    }
    for (int64_t i = 0; i < *n; i++) {
        buf[*n + i] = id_of(tv[i]);
        if (!scores) {
            buf[i] = id_of(pv[i]);
            continue;
        }
        const double *row = pv + i * *ncls; /* the first maximum, or the first NaN, as ag_argmax */
        int64_t best = 0;
        for (int64_t j = 0; j < *ncls && !isnan(row[best]); j++)
            if (isnan(row[j]) || row[j] > row[best]) best = j;
        buf[i] = best;
    }
    ag__free(tv);
    ag__free(pv);
    *p = buf;
    *t = buf + *n;
    return AG_OK;
}

ag_tensor *ag_binarize(const ag_tensor *scores, double threshold) {
    AG_CHECK_HANDLES(NULL, "binarize", scores);
    if (!scores) return null_arg("binarize"), NULL;
    if (!is_float(scores))
        return ag__fail_null(AG_ERR_DTYPE, "binarize: scores must be float32 or float64, got %s", ag_dtype_name(scores->dtype));
    double *v = values_of("binarize", scores);
    if (!v) return NULL;
    ag_tensor *out = ag__new(AG_I64, scores->ndim, scores->shape);
    if (out) {
        int64_t *o = (int64_t *)ag__ptr(out);
        for (int64_t i = 0, n = ag_numel(out); i < n; i++) o[i] = v[i] > threshold;
    }
    ag__free(v);
    return out ? out : ag__fail_null(AG_ERR_NOMEM, "binarize: out of memory");
}

double ag_accuracy(const ag_tensor *pred, const ag_tensor *target) {
    int64_t *p, *t, n, c;
    if (class_pairs("accuracy", pred, target, &p, &t, &n, &c)) return NAN;
    int64_t right = 0;
    for (int64_t i = 0; i < n; i++) right += p[i] == t[i];
    ag__free(p);
    return (double)right / (double)n;
}

ag_tensor *ag_confusion_matrix(const ag_tensor *pred, const ag_tensor *target, int64_t num_classes) {
    int64_t *p, *t, n, c;
    if (class_pairs("confusion_matrix", pred, target, &p, &t, &n, &c)) return NULL;
    if (num_classes < -1 || num_classes == 0) {
        ag__free(p);
        return ag__fail_null(AG_ERR_ARG, "confusion_matrix: num_classes is %lld, expected -1 or a positive count",
                             (long long)num_classes);
    }
    if (num_classes == -1) {
        num_classes = c;
        for (int64_t i = 0; i < n; i++) { /* an id of INT64_MAX then fails the range check below */
            if (p[i] >= num_classes) num_classes = p[i] == INT64_MAX ? INT64_MAX : p[i] + 1;
            if (t[i] >= num_classes) num_classes = t[i] == INT64_MAX ? INT64_MAX : t[i] + 1;
        }
    }
    for (int64_t i = 0; i < n; i++)
        if (p[i] < 0 || p[i] >= num_classes || t[i] < 0 || t[i] >= num_classes) {
            bool bad_pred = p[i] < 0 || p[i] >= num_classes;
            long long id = bad_pred ? (long long)p[i] : (long long)t[i];
            ag__free(p);
            return ag__fail_null(AG_ERR_INDEX, "confusion_matrix: %s %lld of sample %lld is outside [0, %lld)",
                                 bad_pred ? "predicted class" : "target", id, (long long)i, (long long)num_classes);
        }
    int64_t shape[2] = {num_classes, num_classes};
    if (ag__check_alloc("confusion_matrix", 2, shape, AG_I64)) {
        ag__free(p);
        return NULL;
    }
    ag_tensor *cm = ag__new_zeros(AG_I64, 2, shape);
    if (cm) {
        int64_t *m = (int64_t *)ag__ptr(cm);
        for (int64_t i = 0; i < n; i++) m[t[i] * num_classes + p[i]]++;
    }
    ag__free(p);
    return cm ? cm : ag__fail_null(AG_ERR_NOMEM, "confusion_matrix: out of memory");
}

/* ---- from a confusion matrix ------------------------------------------------------------ */
/* The counts of a square matrix (ag__free); *c gets its size. */
static double *counts_of(const char *op, const ag_tensor *cm, int64_t *c) {
    AG_CHECK_HANDLES(NULL, op, cm);
    if (!cm) return null_arg(op), NULL;
    char s[AG_SHAPE_STR];
    if (cm->ndim != 2 || cm->shape[0] != cm->shape[1] || cm->shape[0] == 0)
        return ag__fail_null(AG_ERR_SHAPE, "%s: a confusion matrix is square [C, C] with C >= 1, got %s", op,
                             ag__tshape(s, cm));
    *c = cm->shape[0];
    double *v = values_of(op, cm);
    for (int64_t i = 0; v && i < *c * *c; i++)
        if (!(v[i] >= 0)) {
            ag__fail(AG_ERR_VALUE, "%s: entry [%lld, %lld] of the confusion matrix is %g, counts are >= 0", op,
                     (long long)(i / *c), (long long)(i % *c), v[i]);
            ag__free(v);
            return NULL;
        }
    return v;
}

static double ratio(double a, double b) { return b > 0 ? a / b : 0.0; }

ag_status ag_per_class_accuracy(const ag_tensor *cm, double *acc) {
    int64_t c;
    if (!acc) return ag__fail(AG_ERR_ARG, "per_class_accuracy: NULL argument");
    double *v = counts_of("per_class_accuracy", cm, &c);
    if (!v) return ag_last_status();
    for (int64_t i = 0; i < c; i++) {
        double row = 0;
        for (int64_t j = 0; j < c; j++) row += v[i * c + j];
        acc[i] = ratio(v[i * c + i], row);
    }
    ag__free(v);
    return AG_OK;
}

/* p, r, F1 of tp, fp, fn. */
static ag_prf prf_of(double tp, double fp, double fn) {
    ag_prf r = {ratio(tp, tp + fp), ratio(tp, tp + fn), 0, (int64_t)(tp + fn)};
    r.f1 = ratio(2 * r.precision * r.recall, r.precision + r.recall);
    return r;
}

/* Averages k per-class figures (tp, fp, fn in counts[3·k]) into *avg and per-class ones into out. */
static ag_status average_prf(const char *op, const double *counts, int64_t k, ag_average average, ag_prf *out,
                             ag_prf *avg) {
    if (average != AG_AVERAGE_MACRO && average != AG_AVERAGE_WEIGHTED && average != AG_AVERAGE_MICRO)
        return ag__fail(AG_ERR_ARG, "%s: unknown average %d", op, (int)average);
    double stp = 0, sfp = 0, sfn = 0, support = 0;
    ag_prf mean = {0, 0, 0, 0};
    for (int64_t i = 0; i < k; i++) {
        const double *q = counts + 3 * i;
        ag_prf r = prf_of(q[0], q[1], q[2]);
        if (out) out[i] = r;
        double w = average == AG_AVERAGE_WEIGHTED ? (double)r.support : 1.0;
        mean.precision += w * r.precision;
        mean.recall += w * r.recall;
        mean.f1 += w * r.f1;
        stp += q[0], sfp += q[1], sfn += q[2];
        support += (double)r.support;
    }
    if (!avg) return AG_OK;
    if (average == AG_AVERAGE_MICRO) {
        *avg = prf_of(stp, sfp, sfn);
        return AG_OK;
    }
    double total = average == AG_AVERAGE_WEIGHTED ? support : (double)k;
    *avg = (ag_prf){ratio(mean.precision, total), ratio(mean.recall, total), ratio(mean.f1, total), (int64_t)support};
    return AG_OK;
}

ag_status ag_precision_recall_f1(const ag_tensor *cm, ag_average average, ag_prf *per_class, ag_prf *avg) {
    int64_t c;
    double *v = counts_of("precision_recall_f1", cm, &c);
    if (!v) return ag_last_status();
    double *counts = ag__alloc_n(c, 3 * sizeof(double));
    if (!counts) {
        ag__free(v);
        return ag__fail(AG_ERR_NOMEM, "precision_recall_f1: out of memory");
    }
    for (int64_t i = 0; i < c; i++) {
        double row = 0, col = 0;
        for (int64_t j = 0; j < c; j++) row += v[i * c + j], col += v[j * c + i];
        counts[3 * i] = v[i * c + i];                 /* tp */
        counts[3 * i + 1] = col - v[i * c + i];       /* fp: predicted i, another class */
        counts[3 * i + 2] = row - v[i * c + i];       /* fn: class i, predicted another */
    }
    ag_status st = average_prf("precision_recall_f1", counts, c, average, per_class, avg);
    ag__free(counts);
    ag__free(v);
    return st;
}

/* ---- multi-label ------------------------------------------------------------------------- */
/* Decisions (s > threshold) and targets of [N, L] (one buffer: *d then *t; ag__free(*d)). */
static ag_status label_pairs(const char *op, const ag_tensor *scores, const ag_tensor *target, double threshold,
                             double **d, double **t, int64_t *n, int64_t *l) {
    *d = *t = NULL;
    AG_CHECK_HANDLES(AG_ERR_ARG, op, scores, target);
    if (!scores || !target) return null_arg(op);
    char s1[AG_SHAPE_STR], s2[AG_SHAPE_STR];
    if (!is_float(scores))
        return ag__fail(AG_ERR_DTYPE, "%s: scores must be float32 or float64, got %s", op, ag_dtype_name(scores->dtype));
    if (scores->ndim != 2 || target->ndim != 2 || scores->shape[0] != target->shape[0] ||
        scores->shape[1] != target->shape[1])
        return ag__fail(AG_ERR_SHAPE, "%s: scores %s and targets %s must both be [N, L]", op, ag__tshape(s1, scores),
                        ag__tshape(s2, target));
    *n = scores->shape[0];
    *l = scores->shape[1];
    if (*n == 0 || *l == 0) return ag__fail(AG_ERR_VALUE, "%s: no samples or no labels (%s)", op, ag__tshape(s1, scores));
    double *sv = values_of(op, scores), *tv = sv ? values_of(op, target) : NULL;
    if (!tv) {
        ag__free(sv);
        return ag_last_status();
    }
    for (int64_t i = 0; i < *n * *l; i++) {
        if (tv[i] != 0 && tv[i] != 1) {
            ag__fail(AG_ERR_VALUE, "%s: target [%lld, %lld] is %g, multi-label targets are 0 or 1", op,
                     (long long)(i / *l), (long long)(i % *l), tv[i]);
            ag__free(sv);
            ag__free(tv);
            return AG_ERR_VALUE;
        }
        sv[i] = sv[i] > threshold;
    }
    *d = sv;
    *t = tv;
    return AG_OK;
}

double ag_multilabel_accuracy(const ag_tensor *scores, const ag_tensor *target, double threshold, bool exact_match) {
    double *d, *t;
    int64_t n, l, right = 0;
    if (label_pairs("multilabel_accuracy", scores, target, threshold, &d, &t, &n, &l)) return NAN;
    for (int64_t i = 0; i < n; i++) {
        int64_t row = 0;
        for (int64_t j = 0; j < l; j++) row += d[i * l + j] == t[i * l + j];
        right += exact_match ? row == l : row;
    }
    ag__free(d);
    ag__free(t);
    return (double)right / (double)(exact_match ? n : n * l);
}

ag_status ag_multilabel_precision_recall_f1(const ag_tensor *scores, const ag_tensor *target, double threshold,
                                            ag_average average, ag_prf *per_label, ag_prf *avg) {
    double *d, *t;
    int64_t n, l;
    ag_status st = label_pairs("multilabel_precision_recall_f1", scores, target, threshold, &d, &t, &n, &l);
    if (st) return st;
    double *counts = ag__alloc_n(l, 3 * sizeof(double));
    if (counts) {
        memset(counts, 0, 3 * sizeof(double) * (size_t)l);
        for (int64_t i = 0; i < n * l; i++) {
            double *q = counts + 3 * (i % l); /* tp, fp, fn of label i % l */
            if (d[i] && t[i]) q[0]++;
            else if (d[i]) q[1]++;
            else if (t[i]) q[2]++;
        }
        st = average_prf("multilabel_precision_recall_f1", counts, l, average, per_label, avg);
    } else {
        st = ag__fail(AG_ERR_NOMEM, "multilabel_precision_recall_f1: out of memory");
    }
    ag__free(counts);
    ag__free(d);
    ag__free(t);
    return st;
}

/* ---- regression --------------------------------------------------------------------------- */
enum { MSE, MAE, R2 };

/* One regression score of pred against target, per output column then averaged. */
static double regression(const char *op, int kind, const ag_tensor *pred, const ag_tensor *target) {
    AG_CHECK_HANDLES(NAN, op, pred, target);
    if (!pred || !target) return null_arg(op), NAN;
    char s1[AG_SHAPE_STR], s2[AG_SHAPE_STR];
    if (!is_float(pred) || !is_float(target))
        return ag__fail(AG_ERR_DTYPE, "%s: predictions and targets must be float, got %s and %s", op,
                        ag_dtype_name(pred->dtype), ag_dtype_name(target->dtype)), NAN;
    bool same = pred->ndim == target->ndim && memcmp(pred->shape, target->shape, (size_t)pred->ndim * sizeof(int64_t)) == 0;
    const ag_tensor *two = pred->ndim == 2 ? pred : target, *one = pred->ndim == 2 ? target : pred;
    bool column = one->ndim == 1 && two->ndim == 2 && two->shape[1] == 1 && two->shape[0] == one->shape[0];
    if (!same && !column)
        return ag__fail(AG_ERR_SHAPE, "%s: predictions %s and targets %s must have one shape", op,
                        ag__tshape(s1, pred), ag__tshape(s2, target)), NAN;
    int64_t numel = ag_numel(pred);
    int64_t k = pred->ndim >= 2 ? numel / (pred->shape[0] ? pred->shape[0] : 1) : 1;
    int64_t n = k ? numel / k : 0;
    if (numel == 0) return ag__fail(AG_ERR_VALUE, "%s: no samples", op), NAN;
    double *p = values_of(op, pred), *t = p ? values_of(op, target) : NULL;
    if (!t) {
        ag__free(p);
        return NAN;
    }
    double total = 0;
    for (int64_t j = 0; j < k; j++) {
        double err = 0, mean = 0, var = 0;
        for (int64_t i = 0; i < n; i++) {
            double d = p[i * k + j] - t[i * k + j];
            err += kind == MAE ? fabs(d) : d * d;
            mean += t[i * k + j];
        }
        mean /= (double)n;
        for (int64_t i = 0; i < n; i++) var += (t[i * k + j] - mean) * (t[i * k + j] - mean);
        if (kind != R2) total += err / (double)n;
        else total += var > 0 ? 1 - err / var : (err == 0 ? 1.0 : 0.0);
    }
    ag__free(p);
    ag__free(t);
    return total / (double)k;
}

double ag_mse(const ag_tensor *pred, const ag_tensor *target) { return regression("mse", MSE, pred, target); }
double ag_mae(const ag_tensor *pred, const ag_tensor *target) { return regression("mae", MAE, pred, target); }
double ag_r2_score(const ag_tensor *pred, const ag_tensor *target) { return regression("r2_score", R2, pred, target); }

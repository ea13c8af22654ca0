/*
 * sparse_adam.c - torch.optim.SparseAdam, the "lazy" Adam for embeddings:
 * only the rows (slices along dim 0) present in the gradient have their
 * moments and values updated; the moments of the other rows are not decayed.
 * PyTorch feeds it sparse COO gradients (nn.Embedding(sparse=True)); agrad's
 * gradients are dense, so a row counts as present when its gradient row has a
 * nonzero element, which for an embedding is a row some index looked up
 * (unless that row's gradient happens to cancel to exactly zero).
 */
#include <math.h>
#include "optim/internal.h"

ag_sparse_adam_options ag_sparse_adam_defaults(void) {
    return (ag_sparse_adam_options){.kind = AG_OPTIM_SPARSE_ADAM, .lr = 1e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8};
}

static ag_status sparse_adam_check(const void *vo) {
    const ag_sparse_adam_options *o = vo;
    if (ag__optim_check_range("SparseAdam", "learning rate", o->lr, 0x1p-1074, INFINITY) ||
        ag__optim_check_range("SparseAdam", "epsilon value", o->eps, 0x1p-1074, INFINITY) ||
        ag__optim_check_range("SparseAdam", "beta parameter at index 0", o->beta1, 0, nextafter(1.0, 0)) ||
        ag__optim_check_range("SparseAdam", "beta parameter at index 1", o->beta2, 0, nextafter(1.0, 0)))
        return AG_ERR_ARG;
    return AG_OK;
}

static ag_status sparse_adam_prepare(ag_optimizer *opt, ag__pstate *ps, const void *vo) {
    (void)opt, (void)vo;
    ag_status st = ag__optim_buf(ps, 0, 0);
    return st ? st : ag__optim_buf(ps, 1, 0);
}

/* For each row with a nonzero gradient, elementwise:  g ← ±g;  m ← m + (g − m)(1 − β₁);
 * v ← v + (g² − v)(1 − β₂);  θ ← θ − γ√(1 − β₂ᵗ)/(1 − β₁ᵗ) · m/(√v + ε) */
static void sparse_adam_update(ag_optimizer *opt, ag__pstate *ps, const ag_tensor *g, const void *vo) {
    (void)opt;
    const ag_sparse_adam_options *o = vo;
    ag_tensor *p = ps->param, *m = ps->buf[0], *v = ps->buf[1];
    int64_t n = ag_numel(p), rows = p->ndim ? p->shape[0] : 1, width = rows ? n / rows : 0;
    double t = (double)ps->step, sgn = o->maximize ? -1 : 1;
    double step_size = o->lr * sqrt(1 - pow(o->beta2, t)) / (1 - pow(o->beta1, t));
    for (int64_t r = 0; r < rows; r++) {
        int64_t lo = r * width, hi = lo + width;
        bool present = false;
        for (int64_t i = lo; i < hi && !present; i++) present = ag__optim_get(g, i) != 0;
        if (!present) continue;
        for (int64_t i = lo; i < hi; i++) {
            double gi = sgn * ag__optim_get(g, i), mi = ag__optim_get(m, i), vi = ag__optim_get(v, i);
            ag__optim_put(m, i, mi + (gi - mi) * (1 - o->beta1));
            ag__optim_put(v, i, vi + (gi * gi - vi) * (1 - o->beta2));
            mi = ag__optim_get(m, i), vi = ag__optim_get(v, i);
            ag__optim_put(p, i, ag__optim_get(p, i) + -step_size * (mi / (sqrt(vi) + o->eps)));
        }
    }
}

static const ag__optim_field sparse_adam_fields[] = {
    AG__FD(ag_sparse_adam_options, lr), AG__FD(ag_sparse_adam_options, beta1), AG__FD(ag_sparse_adam_options, beta2),
    AG__FD(ag_sparse_adam_options, eps), AG__FB(ag_sparse_adam_options, maximize), {NULL, 0, 0}};

const ag__optim_algo ag__sparse_adam_algo = {
    .kind = AG_OPTIM_SPARSE_ADAM, .name = "SparseAdam", .c_name = "sparse_adam",
    .opts_size = sizeof(ag_sparse_adam_options), .fields = sparse_adam_fields, .buf_names = {"exp_avg", "exp_avg_sq"},
    .check = sparse_adam_check, .prepare = sparse_adam_prepare, .update_param = sparse_adam_update,
};

ag_optimizer *ag_sparse_adam_new(ag_tensor *const *params, int n, const ag_sparse_adam_options *o) {
    ag_sparse_adam_options d = ag_sparse_adam_defaults();
    return ag__optim_new(&ag__sparse_adam_algo, params, n, o ? (const void *)o : &d);
}

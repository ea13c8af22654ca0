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
#include "core/sum.h"

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

/* The step size γ√(1 − β₂ᵗ)/(1 − β₁ᵗ) every row of a parameter shares in a step. */
static void sparse_adam_coef(const void *vo, ag__pstate *ps, void *out) {
    const ag_sparse_adam_options *o = vo;
    double t = (double)ps->step;
    *(double *)out = o->lr * sqrt(1 - pow(o->beta2, t)) / (1 - pow(o->beta1, t));
}

/* g ← ±g;  m ← m + (g − m)(1 − β₁);  v ← v + (g² − v)(1 − β₂);  θ ← θ − step·m/(√v + ε), in float64
 * on the stored values (m and v rounded to T before θ uses them), over n elements of present rows. */
#define SPARSE_ADAM_KERNEL(NAME, T)                                                                        \
    AG_VEC_CLONES static void NAME(T *restrict p, const T *restrict g, T *restrict m, T *restrict v, int64_t n, \
                                   const ag_sparse_adam_options *o, double step) {                        \
        const double sgn = o->maximize ? -1 : 1, omb1 = 1 - o->beta1, omb2 = 1 - o->beta2, eps = o->eps;   \
        for (int64_t i = 0; i < n; i++) {                                                                  \
            const double gi = sgn * g[i], mi = m[i], vi = v[i];                                            \
            const T m1 = (T)(mi + (gi - mi) * omb1), v1 = (T)(vi + (gi * gi - vi) * omb2);                 \
            m[i] = m1;                                                                                     \
            v[i] = v1;                                                                                     \
            p[i] = (T)(p[i] + -step * (m1 / (sqrt((double)v1) + eps)));                                    \
        }                                                                                                  \
    }
SPARSE_ADAM_KERNEL(sparse_adam_f32, float)
SPARSE_ADAM_KERNEL(sparse_adam_f64, double)

/* Whether g[0..n) has a nonzero (or NaN) element: an OR over blocks of 64, which vectorises. */
#define ANY_NONZERO(NAME, T)                                                                               \
    static bool NAME(const T *g, int64_t n) {                                                              \
        int64_t i = 0;                                                                                     \
        for (; i + 64 <= n; i += 64) {                                                                     \
            int any = 0;                                                                                   \
            for (int k = 0; k < 64; k++) any |= g[i + k] != 0;                                             \
            if (any) return true;                                                                          \
        }                                                                                                  \
        for (; i < n; i++)                                                                                 \
            if (g[i] != 0) return true;                                                                    \
        return false;                                                                                      \
    }
ANY_NONZERO(any_nonzero_f32, float)
ANY_NONZERO(any_nonzero_f64, double)

static bool row_present(const ag_tensor *g, int64_t at, int64_t width) {
    return g->dtype == AG_F32 ? any_nonzero_f32(ag__f32(g) + at, width) : any_nonzero_f64(ag__f64(g) + at, width);
}

static void sparse_adam_run(const ag_sparse_adam_options *o, const ag__pstate *ps, const ag_tensor *g, double step,
                            int64_t lo, int64_t hi) {
    const ag_tensor *p = ps->param, *m = ps->buf[0], *v = ps->buf[1];
    if (p->dtype == AG_F32)
        sparse_adam_f32(ag__f32(p) + lo, ag__f32(g) + lo, ag__f32(m) + lo, ag__f32(v) + lo, hi - lo, o, step);
    else
        sparse_adam_f64(ag__f64(p) + lo, ag__f64(g) + lo, ag__f64(m) + lo, ag__f64(v) + lo, hi - lo, o, step);
}

/* Elements [lo, hi) of the rows (slices along dim 0) whose whole gradient row has a nonzero
 * element, consecutive present rows in one run of the kernel.  A row cut by a chunk's edge is
 * tested whole (read only) by both chunks, so each element's fate is that of its row. */
static void sparse_adam_update(const void *vo, const ag__pstate *ps, const ag_tensor *g, const void *coef, int64_t lo,
                               int64_t hi) {
    const ag_tensor *p = ps->param;
    if (lo >= hi) return;
    const int64_t n = ag__numel(p->ndim, p->shape), width = n / (p->ndim ? p->shape[0] : 1);
    int64_t run = -1; /* start of the current run of present elements, or -1 */
    for (int64_t r = lo / width; r * width < hi; r++) {
        const int64_t a = r * width > lo ? r * width : lo;
        if (row_present(g, r * width, width)) {
            if (run < 0) run = a;
        } else if (run >= 0) {
            sparse_adam_run(vo, ps, g, *(const double *)coef, run, a);
            run = -1;
        }
    }
    if (run >= 0) sparse_adam_run(vo, ps, g, *(const double *)coef, run, hi);
}

static const ag__optim_field sparse_adam_fields[] = {
    AG__FD(ag_sparse_adam_options, lr), AG__FD(ag_sparse_adam_options, beta1), AG__FD(ag_sparse_adam_options, beta2),
    AG__FD(ag_sparse_adam_options, eps), AG__FB(ag_sparse_adam_options, maximize), {NULL, 0, 0}};

const ag__optim_algo ag__sparse_adam_algo = {
    .kind = AG_OPTIM_SPARSE_ADAM, .name = "SparseAdam", .c_name = "sparse_adam",
    .opts_size = sizeof(ag_sparse_adam_options), .fields = sparse_adam_fields, .buf_names = {"exp_avg", "exp_avg_sq"},
    .check = sparse_adam_check, .prepare = sparse_adam_prepare, .coef = sparse_adam_coef, .update = sparse_adam_update,
};

ag_optimizer *ag_sparse_adam_new(ag_tensor *const *params, int n, const ag_sparse_adam_options *o) {
    ag_sparse_adam_options d = ag_sparse_adam_defaults();
    return ag__optim_new(&ag__sparse_adam_algo, params, n, o ? (const void *)o : &d);
}

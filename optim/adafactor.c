/*
 * adafactor.c - Adafactor (Shazeer & Stern, "Adafactor: Adaptive Learning
 * Rates with Sublinear Memory Cost", ICML 2018) as Hugging Face transformers
 * implements it (transformers.optimization.Adafactor; torch 1.13 has none).
 * For a parameter of two or more dims, viewed as [B, R, C] over its last two
 * dims, the second moment is kept as row means R[B, R] and column means
 * C[B, C] of the squared gradient and rebuilt as the rank-1 estimate
 * V ≈ R·Cᵀ / mean(R): O(R + C) memory instead of O(R·C).  The update is
 * clipped to RMS clip_threshold, and its step size is relative to the
 * parameter's RMS and the step count unless a fixed lr is asked for.
 * The arithmetic runs in float64, in a workspace owned by the optimizer.
 */
#include <math.h>
#include "optim/internal.h"

ag_adafactor_options ag_adafactor_defaults(void) {
    return (ag_adafactor_options){.kind = AG_OPTIM_ADAFACTOR, .eps1 = 1e-30, .eps2 = 1e-3, .clip_threshold = 1,
                                  .decay_rate = -0.8, .scale_parameter = true, .relative_step = true};
}

static ag_status adafactor_check(const void *vo) {
    const ag_adafactor_options *o = vo;
    if (ag__optim_check_range("Adafactor", "learning rate", o->lr, 0, INFINITY) ||
        ag__optim_check_range("Adafactor", "eps1", o->eps1, 0, INFINITY) ||
        ag__optim_check_range("Adafactor", "eps2", o->eps2, 0, INFINITY) ||
        ag__optim_check_range("Adafactor", "clip_threshold", o->clip_threshold, 0x1p-1074, INFINITY) ||
        ag__optim_check_range("Adafactor", "decay_rate (must be <= 0)", o->decay_rate, -INFINITY, 0) ||
        ag__optim_check_range("Adafactor", "beta1", o->beta1, 0, nextafter(1.0, 0)) ||
        ag__optim_check_range("Adafactor", "weight_decay value", o->weight_decay, 0, INFINITY))
        return AG_ERR_ARG;
    if (o->relative_step && o->lr != 0)
        return ag__fail(AG_ERR_ARG, "Adafactor: a manual lr (%g) cannot be combined with relative_step; set "
                                    "relative_step = false or leave lr 0", o->lr);
    if (o->warmup_init && !o->relative_step)
        return ag__fail(AG_ERR_ARG, "Adafactor: warmup_init requires relative_step");
    return AG_OK;
}

/* Buffers: 0 exp_avg (beta1 > 0); 1 exp_avg_sq (fewer than 2 dims); 2 exp_avg_sq_row = shape[:-1],
 * 3 exp_avg_sq_col = shape[:-2] + shape[-1:] (2 dims or more). */
static bool factored(const ag_tensor *p) { return p->ndim >= 2; }

static int adafactor_buf_shape(const ag_tensor *p, int k, int64_t *shape) {
    int n = p->ndim;
    for (int d = 0; d < n; d++) shape[d] = p->shape[d];
    if (k == 2) return n - 1;
    if (k == 3) {
        shape[n - 2] = p->shape[n - 1];
        return n - 1;
    }
    return n;
}

/* The optimizer-wide float64 workspace: the update [numel] and column sums [C]. */
typedef struct adafactor_work {
    int64_t cap;
    double *mem;
} adafactor_work;

static void adafactor_free(void *g) {
    adafactor_work *w = g;
    ag__free(w->mem);
    ag__free(w);
}

static ag_status adafactor_prepare(ag_optimizer *opt, ag__pstate *ps, const void *vo) {
    const ag_adafactor_options *o = vo;
    const ag_tensor *p = ps->param;
    int64_t n = ag_numel(p), need = factored(p) ? n + p->shape[p->ndim - 1] : n;
    adafactor_work *w = opt->global;
    if (!w && !(w = opt->global = ag__calloc(sizeof *w))) return AG_ERR_NOMEM;
    if (w->cap < need) {
        double *mem = ag__alloc(sizeof(double) * (size_t)need);
        if (!mem) return AG_ERR_NOMEM;
        ag__free(w->mem);
        w->mem = mem;
        w->cap = need;
    }
    ag_status st = o->beta1 > 0 ? ag__optim_buf(ps, 0, 0) : AG_OK;
    if (st || !factored(p)) return st ? st : ag__optim_buf(ps, 1, 0);
    int64_t shape[AG_MAX_DIMS];
    int nd = adafactor_buf_shape(p, 2, shape);
    st = ag__optim_buf_shaped(ps, 2, 0, nd, shape);
    nd = adafactor_buf_shape(p, 3, shape);
    return st ? st : ag__optim_buf_shaped(ps, 3, 0, nd, shape);
}

/* RMS(x) = ‖x‖₂/√n */
static double rms(const double *x, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += x[i] * x[i];
    return sqrt(s) / sqrt((double)n);
}

/* Factored: R ← β̂R + (1 − β̂)·mean_c(g² + ε₁),  C ← β̂C + (1 − β̂)·mean_r(g² + ε₁),
 * u = (R/mean(R))^−½ · C^−½ · g, per [R, C] block. */
static void factored_update(const ag__pstate *ps, const ag_tensor *g, double b2, double eps1, double *u,
                            double *colsum) {
    const ag_tensor *p = ps->param;
    int64_t C = p->shape[p->ndim - 1], R = p->shape[p->ndim - 2], B = ag_numel(p) / (R * C);
    ag_tensor *row = ps->buf[2], *col = ps->buf[3];
    for (int64_t b = 0; b < B; b++) {
        int64_t base = b * R * C;
        for (int64_t c = 0; c < C; c++) colsum[c] = 0;
        for (int64_t r = 0; r < R; r++) {
            double s = 0;
            for (int64_t c = 0; c < C; c++) {
                double gi = ag__optim_get(g, base + r * C + c), sq = gi * gi + eps1;
                s += sq;
                colsum[c] += sq;
            }
            ag__optim_put(row, b * R + r, ag__optim_get(row, b * R + r) * b2 + (1 - b2) * (s / (double)C));
        }
        double mean_row = 0;
        for (int64_t r = 0; r < R; r++) mean_row += ag__optim_get(row, b * R + r);
        mean_row /= (double)R;
        for (int64_t c = 0; c < C; c++)
            ag__optim_put(col, b * C + c, ag__optim_get(col, b * C + c) * b2 + (1 - b2) * (colsum[c] / (double)R));
        for (int64_t r = 0; r < R; r++) {
            double rf = 1 / sqrt(ag__optim_get(row, b * R + r) / mean_row);
            for (int64_t c = 0; c < C; c++) {
                int64_t i = base + r * C + c;
                u[i] = rf * (1 / sqrt(ag__optim_get(col, b * C + c))) * ag__optim_get(g, i);
            }
        }
    }
}

/* t ← t + 1;  ρ = min(1e-2, 1/√t) (warmup_init: min(1e-6·t, 1/√t)) or lr;  α = ρ·max(ε₂, RMS(θ)) (scale_parameter) or ρ;
 * β̂ = 1 − t^decay_rate;  u = g/√V̂ (V̂ factored or v ← β̂v + (1 − β̂)(g² + ε₁));
 * u ← α·u/max(1, RMS(u)/d);  m ← β₁m + (1 − β₁)u, u = m (β₁ > 0);  θ ← θ − αλθ − u */
static void adafactor_update(ag_optimizer *opt, ag__pstate *ps, const ag_tensor *g, const void *vo) {
    const ag_adafactor_options *o = vo;
    ag_tensor *p = ps->param;
    int64_t n = ag_numel(p);
    if (n == 0) return;
    double *u = ((adafactor_work *)opt->global)->mem, t = (double)ps->step;
    double rho = o->lr;
    if (o->relative_step) rho = fmin(o->warmup_init ? 1e-6 * t : 1e-2, 1.0 / sqrt(t));
    double alpha = rho;
    if (o->scale_parameter) {
        double s = 0;
        for (int64_t i = 0; i < n; i++) s += ag__optim_get(p, i) * ag__optim_get(p, i);
        alpha = fmax(o->eps2, sqrt(s) / sqrt((double)n)) * rho;
    }
    double b2 = 1.0 - pow(t, o->decay_rate);
    if (factored(p)) {
        factored_update(ps, g, b2, o->eps1, u, u + n);
    } else {
        ag_tensor *v = ps->buf[1];
        for (int64_t i = 0; i < n; i++) {
            double gi = ag__optim_get(g, i), vi = ag__optim_get(v, i) * b2 + (1 - b2) * (gi * gi + o->eps1);
            ag__optim_put(v, i, vi);
            u[i] = 1 / sqrt(ag__optim_get(v, i)) * gi;
        }
    }
    double clip = fmax(rms(u, n) / o->clip_threshold, 1.0);
    for (int64_t i = 0; i < n; i++) {
        double ui = u[i] / clip * alpha;
        if (o->beta1 > 0) {
            ag_tensor *m = ps->buf[0];
            ag__optim_put(m, i, ag__optim_get(m, i) * o->beta1 + (1 - o->beta1) * ui);
            ui = ag__optim_get(m, i);
        }
        double pi = ag__optim_get(p, i);
        if (o->weight_decay != 0) pi = pi + (-o->weight_decay * alpha) * pi;
        ag__optim_put(p, i, pi - ui);
    }
}

static const ag__optim_field adafactor_fields[] = {
    AG__FD(ag_adafactor_options, lr), AG__FD(ag_adafactor_options, eps1), AG__FD(ag_adafactor_options, eps2),
    AG__FD(ag_adafactor_options, clip_threshold), AG__FD(ag_adafactor_options, decay_rate),
    AG__FD(ag_adafactor_options, beta1), AG__FD(ag_adafactor_options, weight_decay),
    AG__FB(ag_adafactor_options, scale_parameter), AG__FB(ag_adafactor_options, relative_step),
    AG__FB(ag_adafactor_options, warmup_init), {NULL, 0, 0}};

const ag__optim_algo ag__adafactor_algo = {
    .kind = AG_OPTIM_ADAFACTOR, .name = "Adafactor", .c_name = "adafactor", .opts_size = sizeof(ag_adafactor_options),
    .fields = adafactor_fields, .buf_names = {"exp_avg", "exp_avg_sq", "exp_avg_sq_row", "exp_avg_sq_col"},
    .buf_shape = adafactor_buf_shape, .check = adafactor_check, .prepare = adafactor_prepare,
    .update_param = adafactor_update, .free_global = adafactor_free,
};

ag_optimizer *ag_adafactor_new(ag_tensor *const *params, int n, const ag_adafactor_options *o) {
    ag_adafactor_options d = ag_adafactor_defaults();
    return ag__optim_new(&ag__adafactor_algo, params, n, o ? (const void *)o : &d);
}

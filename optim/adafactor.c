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
#include "core/sum.h"

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

/* The loops below run in float64 on T data, in the order of one scalar loop (their sums are
 * serial, so the bits do not depend on the vector width); typed, so that what is elementwise
 * vectorises and the chunks of ag__optim_chunks split it over threads. */

/* Σ θ² in float64, serially */
#define SUM_SQ(NAME, T)                                                                                    \
    static double NAME(const T *p, int64_t n) {                                                            \
        double s = 0;                                                                                      \
        for (int64_t i = 0; i < n; i++) s += (double)p[i] * p[i];                                          \
        return s;                                                                                          \
    }
SUM_SQ(sum_sq_f32, float)
SUM_SQ(sum_sq_f64, double)

/* Factored, one [R, C] block: R ← β̂R + (1 − β̂)·mean_c(g² + ε₁),  C ← β̂C + (1 − β̂)·mean_r(g² + ε₁),
 * u = (R/mean(R))^−½ · C^−½ · g;  colsum [C] is scratch. */
#define FACTORED_BLOCK(NAME, T)                                                                            \
    AG_VEC_CLONES static void NAME(const T *restrict g, T *restrict row, T *restrict col, int64_t R, int64_t C, \
                                   double b2, double eps1, double *restrict u, double *restrict colsum) {  \
        for (int64_t c = 0; c < C; c++) colsum[c] = 0;                                                     \
        for (int64_t r = 0; r < R; r++) {                                                                  \
            double s = 0;                                                                                  \
            for (int64_t c = 0; c < C; c++) {                                                              \
                const double gi = g[r * C + c], sq = gi * gi + eps1;                                       \
                s += sq;                                                                                   \
                colsum[c] += sq;                                                                           \
            }                                                                                              \
            row[r] = (T)(row[r] * b2 + (1 - b2) * (s / (double)C));                                        \
        }                                                                                                  \
        double mean_row = 0;                                                                               \
        for (int64_t r = 0; r < R; r++) mean_row += row[r];                                                \
        mean_row /= (double)R;                                                                             \
        for (int64_t c = 0; c < C; c++) {                                                                  \
            const T cc = (T)(col[c] * b2 + (1 - b2) * (colsum[c] / (double)R));                            \
            col[c] = cc;                                                                                   \
            colsum[c] = 1 / sqrt((double)cc); /* C^−½, once per column */                                  \
        }                                                                                                  \
        for (int64_t r = 0; r < R; r++) {                                                                  \
            const double rf = 1 / sqrt(row[r] / mean_row);                                                 \
            for (int64_t c = 0; c < C; c++) u[r * C + c] = rf * colsum[c] * g[r * C + c];                  \
        }                                                                                                  \
    }
FACTORED_BLOCK(factored_f32, float)
FACTORED_BLOCK(factored_f64, double)

static void factored_update(const ag__pstate *ps, const ag_tensor *g, double b2, double eps1, double *u,
                            double *colsum) {
    const ag_tensor *p = ps->param, *row = ps->buf[2], *col = ps->buf[3];
    int64_t C = p->shape[p->ndim - 1], R = p->shape[p->ndim - 2], B = ag_numel(p) / (R * C);
    for (int64_t b = 0; b < B; b++) {
        if (p->dtype == AG_F32)
            factored_f32(ag__f32(g) + b * R * C, ag__f32(row) + b * R, ag__f32(col) + b * C, R, C, b2, eps1,
                         u + b * R * C, colsum);
        else
            factored_f64(ag__f64(g) + b * R * C, ag__f64(row) + b * R, ag__f64(col) + b * C, R, C, b2, eps1,
                         u + b * R * C, colsum);
    }
}

/* What the elementwise loops of one parameter's update share. */
typedef struct adafactor_coef {
    double *u;
    double b2, clip, alpha;
} adafactor_coef;

/* Not factored: v ← β̂v + (1 − β̂)(g² + ε₁);  u = v^−½·g */
#define SECOND_MOMENT(NAME, T)                                                                             \
    AG_VEC_CLONES static void NAME(const T *restrict g, T *restrict v, double *restrict u, int64_t n, double b2, \
                                   double eps1) {                                                          \
        for (int64_t i = 0; i < n; i++) {                                                                  \
            const double gi = g[i];                                                                        \
            const T vi = (T)(v[i] * b2 + (1 - b2) * (gi * gi + eps1));                                     \
            v[i] = vi;                                                                                     \
            u[i] = 1 / sqrt((double)vi) * gi;                                                              \
        }                                                                                                  \
    }
SECOND_MOMENT(second_moment_f32, float)
SECOND_MOMENT(second_moment_f64, double)

static void second_moment(const void *vo, const ag__pstate *ps, const ag_tensor *g, const void *coef, int64_t lo,
                          int64_t hi) {
    const ag_adafactor_options *o = vo;
    const adafactor_coef *c = coef;
    const ag_tensor *v = ps->buf[1];
    if (g->dtype == AG_F32) second_moment_f32(ag__f32(g) + lo, ag__f32(v) + lo, c->u + lo, hi - lo, c->b2, o->eps1);
    else second_moment_f64(ag__f64(g) + lo, ag__f64(v) + lo, c->u + lo, hi - lo, c->b2, o->eps1);
}

/* u ← α·u/clip;  m ← β₁m + (1 − β₁)u, u = m (β₁ > 0);  θ ← θ − αλθ − u */
#define APPLY(NAME, T)                                                                                     \
    AG_VEC_CLONES static void NAME(T *restrict p, T *restrict m, const double *restrict u, int64_t n,      \
                                   const ag_adafactor_options *o, double clip, double alpha) {             \
        const double b1 = o->beta1, omb1 = 1 - o->beta1, wd = -o->weight_decay * alpha;                   \
        const bool decay = o->weight_decay != 0;                                                           \
        for (int64_t i = 0; i < n; i++) {                                                                  \
            double ui = u[i] / clip * alpha;                                                               \
            if (m) {                                                                                       \
                const T mi = (T)(m[i] * b1 + omb1 * ui);                                                   \
                m[i] = mi;                                                                                 \
                ui = mi;                                                                                   \
            }                                                                                              \
            double pi = p[i];                                                                              \
            if (decay) pi = pi + wd * pi;                                                                  \
            p[i] = (T)(pi - ui);                                                                           \
        }                                                                                                  \
    }
APPLY(apply_f32, float)
APPLY(apply_f64, double)

static void apply(const void *vo, const ag__pstate *ps, const ag_tensor *g, const void *coef, int64_t lo, int64_t hi) {
    (void)g;
    const ag_adafactor_options *o = vo;
    const adafactor_coef *c = coef;
    const ag_tensor *p = ps->param, *m = o->beta1 > 0 ? ps->buf[0] : NULL;
    if (p->dtype == AG_F32)
        apply_f32(ag__f32(p) + lo, m ? ag__f32(m) + lo : NULL, c->u + lo, hi - lo, o, c->clip, c->alpha);
    else
        apply_f64(ag__f64(p) + lo, m ? ag__f64(m) + lo : NULL, c->u + lo, hi - lo, o, c->clip, c->alpha);
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
        double s = p->dtype == AG_F32 ? sum_sq_f32(ag__f32(p), n) : sum_sq_f64(ag__f64(p), n);
        alpha = fmax(o->eps2, sqrt(s) / sqrt((double)n)) * rho;
    }
    adafactor_coef c = {.u = u, .b2 = 1.0 - pow(t, o->decay_rate), .alpha = alpha};
    if (factored(p)) factored_update(ps, g, c.b2, o->eps1, u, u + n);
    else ag__optim_chunks(second_moment, o, ps, g, &c);
    c.clip = fmax(rms(u, n) / o->clip_threshold, 1.0);
    ag__optim_chunks(apply, o, ps, g, &c);
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

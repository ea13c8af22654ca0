/*
 * muon.c - Muon, "MomentUm Orthogonalized by Newton–Schulz" (Keller Jordan et
 * al., 2024, https://kellerjordan.github.io/posts/muon/), following the
 * authors' muon.py: SGD with Nesterov momentum whose update, for each
 * parameter of two or more dims viewed as a matrix [size(0), numel/size(0)],
 * is replaced by an approximately orthogonal matrix with the same singular
 * vectors, from 5 iterations of a quintic Newton–Schulz map, then scaled by
 * √max(1, rows/cols).  Parameters of fewer dims get AdamW, as in the authors'
 * MuonWithAuxAdam.  The iteration runs in float64 here (bfloat16 on the
 * authors' GPUs) in a workspace owned by the optimizer.
 */
#include <math.h>
#include <string.h>
#include "optim/internal.h"
#include "core/sum.h"

ag_muon_options ag_muon_defaults(void) {
    return (ag_muon_options){.kind = AG_OPTIM_MUON, .lr = 0.02, .momentum = 0.95, .nesterov = true, .ns_steps = 5,
                             .adamw_lr = 3e-4, .adamw_beta1 = 0.9, .adamw_beta2 = 0.95, .adamw_eps = 1e-10};
}

static ag_status muon_check(const void *vo) {
    const ag_muon_options *o = vo;
    if (ag__optim_check_range("Muon", "learning rate", o->lr, 0, INFINITY) ||
        ag__optim_check_range("Muon", "momentum value", o->momentum, 0, nextafter(1.0, 0)) ||
        ag__optim_check_range("Muon", "weight_decay value", o->weight_decay, 0, INFINITY) ||
        ag__optim_check_range("Muon", "adamw_lr", o->adamw_lr, 0, INFINITY) ||
        ag__optim_check_range("Muon", "adamw_beta1", o->adamw_beta1, 0, nextafter(1.0, 0)) ||
        ag__optim_check_range("Muon", "adamw_beta2", o->adamw_beta2, 0, nextafter(1.0, 0)) ||
        ag__optim_check_range("Muon", "adamw_eps", o->adamw_eps, 0, INFINITY) ||
        ag__optim_check_range("Muon", "adamw_weight_decay", o->adamw_weight_decay, 0, INFINITY))
        return AG_ERR_ARG;
    if (o->ns_steps < 0 || o->ns_steps > 100)
        return ag__fail(AG_ERR_ARG, "Muon: ns_steps must be in [0, 100], got %d", o->ns_steps);
    return AG_OK;
}

/* ---- Newton–Schulz ---------------------------------------------------------------------------- */
/* C[r×c] = A[r×k]·B[k×c], row-major: each element summed over l ascending from 0 (the bits of the
 * scalar triple loop, whatever the blocking or the threads), rows of C vectorised, four at a time
 * so that each row of B read from cache serves four (c0..c3 stay in L1). */
AG_VEC_CLONES static void matmul_rows(const double *restrict A, const double *restrict B, double *restrict C, int64_t i0,
                                      int64_t i1, int64_t k, int64_t c) {
    memset(C + i0 * c, 0, sizeof(double) * (size_t)((i1 - i0) * c));
    int64_t i = i0;
    for (; i + 4 <= i1; i += 4) {
        double *restrict c0 = C + i * c, *restrict c1 = c0 + c, *restrict c2 = c1 + c, *restrict c3 = c2 + c;
        for (int64_t l = 0; l < k; l++) {
            const double a0 = A[i * k + l], a1 = A[(i + 1) * k + l], a2 = A[(i + 2) * k + l], a3 = A[(i + 3) * k + l];
            const double *restrict bl = B + l * c;
            for (int64_t j = 0; j < c; j++) {
                const double b = bl[j];
                c0[j] += a0 * b;
                c1[j] += a1 * b;
                c2[j] += a2 * b;
                c3[j] += a3 * b;
            }
        }
    }
    for (; i < i1; i++) {
        double *restrict ci = C + i * c;
        for (int64_t l = 0; l < k; l++) {
            const double a = A[i * k + l], *restrict bl = B + l * c;
            for (int64_t j = 0; j < c; j++) ci[j] += a * bl[j];
        }
    }
}

static void matmul(const double *A, const double *B, double *C, int64_t r, int64_t k, int64_t c) {
    const int64_t blocks = (r + 3) / 4;
    const int nt = r * k * c > (1 << 18) && !omp_in_parallel() ? omp_get_max_threads() : 1;
    AG_PARALLEL_FOR(nt, schedule(static), for (int64_t b = 0; b < blocks; b++) {
        matmul_rows(A, B, C, 4 * b, 4 * b + 4 < r ? 4 * b + 4 : r, k, c);
    });
}

/* A[r×r] = X·Xᵀ for X[r×c], as matmul(X, Xᵀ) with Xᵀ written to T [c×r]: each element the same
 * ascending sum of X_il·X_jl as a dot product, which was a serial chain of additions per element (the
 * latency of one addition each), now rows of A vectorised: 256×512 Muon step, one thread, see docs/optim.md. */
static void gram(const double *X, double *A, double *T, int64_t r, int64_t c) {
    for (int64_t i = 0; i < r; i++)
        for (int64_t l = 0; l < c; l++) T[l * r + i] = X[i * c + l];
    matmul(X, T, A, r, c, r);
}

int64_t ag__newton_schulz_work(int64_t rows, int64_t cols) {
    int64_t r = rows < cols ? rows : cols, c = rows < cols ? cols : rows;
    return 3 * r * c + 2 * r * r;
}

/* X ← X/(‖X‖_F + 10⁻⁷);  steps × { A = XXᵀ;  B = bA + cA²;  X ← aX + BX }, (a, b, c) = (3.4445, −4.7750, 2.0315),
 * on the wide orientation (rows ≤ cols, transposing a tall G). */
void ag__newton_schulz(const double *G, double *out, int64_t rows, int64_t cols, int steps, double *work) {
    const double ca = 3.4445, cb = -4.7750, cc = 2.0315;
    bool tall = rows > cols;
    int64_t r = tall ? cols : rows, c = tall ? rows : cols;
    double *X = work, *BX = X + r * c, *A = BX + r * c, *B = A + r * r, *T = B + r * r;
    double norm = 0;
    for (int64_t i = 0; i < rows * cols; i++) norm += G[i] * G[i];
    norm = sqrt(norm) + 1e-7;
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++) X[tall ? j * c + i : i * c + j] = G[i * cols + j] / norm;
    for (int s = 0; s < steps; s++) {
        gram(X, A, T, r, c);
        matmul(A, A, B, r, r, r);
        for (int64_t i = 0; i < r * r; i++) B[i] = cb * A[i] + cc * B[i];
        matmul(B, X, BX, r, r, c);
        for (int64_t i = 0; i < r * c; i++) X[i] = ca * X[i] + BX[i];
    }
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++) out[i * cols + j] = X[tall ? j * c + i : i * c + j];
}

/* ---- state ------------------------------------------------------------------------------------- */
/* The optimizer-wide workspace: the update as float64 [rows×cols], its orthogonalisation, scratch. */
typedef struct muon_work {
    int64_t cap;
    double *mem;
} muon_work;

static void muon_free(void *g) {
    muon_work *w = g;
    ag__free(w->mem);
    ag__free(w);
}

static bool is_matrix(const ag_tensor *p) { return p->ndim >= 2 && ag_numel(p) > 0; }

/* Buffers: 0 momentum_buffer (matrices); 1 exp_avg, 2 exp_avg_sq (the rest, AdamW). */
static ag_status muon_prepare(ag_optimizer *opt, ag__pstate *ps, const void *vo) {
    (void)vo;
    const ag_tensor *p = ps->param;
    if (!is_matrix(p)) {
        ag_status st = ag__optim_buf(ps, 1, 0);
        return st ? st : ag__optim_buf(ps, 2, 0);
    }
    int64_t rows = p->shape[0], n = ag_numel(p), need = 2 * n + ag__newton_schulz_work(rows, rows ? n / rows : 0);
    muon_work *w = opt->global;
    if (!w) {
        if (!(w = opt->global = ag__calloc(sizeof *w))) return AG_ERR_NOMEM;
    }
    if (w->cap < need) {
        double *mem = ag__alloc(sizeof(double) * (size_t)need);
        if (!mem) return AG_ERR_NOMEM;
        ag__free(w->mem);
        w->mem = mem;
        w->cap = need;
    }
    return ag__optim_buf(ps, 0, 0);
}

/* torch.lerp: a + w(b − a) for w < 0.5, else b − (b − a)(1 − w) */
static double lerp(double a, double b, double w) { return w < 0.5 ? a + w * (b - a) : b - (b - a) * (1 - w); }


/* What the elementwise loops of one parameter's update share: the float64 update u and
 * its orthogonalisation (matrices), the step's constants. */
typedef struct muon_coef {
    double *u, *orth;
    double scale, decay, bc1, bc2;
} muon_coef;

/* m ← lerp(m, g, 1 − μ);  u = lerp(g, m, μ) (Nesterov) or m, in float64 on the stored m (rounded to T).
 * Typed loops (no dtype test per element), so that they vectorise: the same bits. */
#define MUON_MOMENTUM(NAME, T)                                                                             \
    AG_VEC_CLONES static void NAME(const T *restrict g, T *restrict m, double *restrict u, int64_t n, double mu,  \
                                   bool nesterov) {                                                        \
        for (int64_t i = 0; i < n; i++) {                                                                  \
            const double gi = g[i];                                                                        \
            const T mi = (T)lerp(m[i], gi, 1 - mu);                                                        \
            m[i] = mi;                                                                                     \
            u[i] = nesterov ? lerp(gi, mi, mu) : mi;                                                       \
        }                                                                                                  \
    }
MUON_MOMENTUM(muon_momentum_f32, float)
MUON_MOMENTUM(muon_momentum_f64, double)

static void muon_momentum(const void *vo, const ag__pstate *ps, const ag_tensor *g, const void *coef, int64_t lo,
                          int64_t hi) {
    const ag_muon_options *o = vo;
    const ag_tensor *m = ps->buf[0];
    double *u = ((const muon_coef *)coef)->u + lo;
    if (g->dtype == AG_F32) muon_momentum_f32(ag__f32(g) + lo, ag__f32(m) + lo, u, hi - lo, o->momentum, o->nesterov);
    else muon_momentum_f64(ag__f64(g) + lo, ag__f64(m) + lo, u, hi - lo, o->momentum, o->nesterov);
}

/* θ ← θ(1 − γλ) − γ·√max(1, rows/cols)·O, in float64 (ls = γ·√max(1, rows/cols)) */
#define MUON_APPLY(NAME, T)                                                                                \
    AG_VEC_CLONES static void NAME(T *restrict p, const double *restrict orth, int64_t n, double decay, double ls) { \
        for (int64_t i = 0; i < n; i++) p[i] = (T)(p[i] * decay - ls * orth[i]);                           \
    }
MUON_APPLY(muon_apply_f32, float)
MUON_APPLY(muon_apply_f64, double)

static void muon_apply(const void *vo, const ag__pstate *ps, const ag_tensor *g, const void *coef, int64_t lo,
                       int64_t hi) {
    (void)g;
    const ag_muon_options *o = vo;
    const muon_coef *c = coef;
    const ag_tensor *p = ps->param;
    if (p->dtype == AG_F32) muon_apply_f32(ag__f32(p) + lo, c->orth + lo, hi - lo, c->decay, o->lr * c->scale);
    else muon_apply_f64(ag__f64(p) + lo, c->orth + lo, hi - lo, c->decay, o->lr * c->scale);
}

/* m ← lerp(m, g, 1 − μ);  u = lerp(g, m, μ) (Nesterov) or m;  O = NS(u);
 * θ ← θ(1 − γλ) − γ·√max(1, rows/cols)·O */
static void muon_matrix(ag_optimizer *opt, ag__pstate *ps, const ag_tensor *g, const ag_muon_options *o) {
    const ag_tensor *p = ps->param;
    int64_t rows = p->shape[0], n = ag_numel(p), cols = n / rows;
    double *u = ((muon_work *)opt->global)->mem, *orth = u + n, *work = orth + n;
    muon_coef c = {.u = u, .orth = orth, .scale = sqrt(fmax(1, (double)rows / (double)cols)),
                   .decay = 1 - o->lr * o->weight_decay};
    ag__optim_chunks(muon_momentum, o, ps, g, &c);
    ag__newton_schulz(u, orth, rows, cols, o->ns_steps, work);
    ag__optim_chunks(muon_apply, o, ps, g, &c);
}

/* m ← lerp(m, g, 1 − β₁);  v ← lerp(v, g², 1 − β₂);  θ ← θ(1 − γλ) − γ·(m/(1 − β₁ᵗ))/(√(v/(1 − β₂ᵗ)) + ε),
 * in float64 on the stored m and v (rounded to T) */
#define MUON_ADAMW(NAME, T)                                                                                \
    AG_VEC_CLONES static void NAME(T *restrict p, const T *restrict g, T *restrict m, T *restrict v, int64_t n, \
                                   const ag_muon_options *o, const muon_coef *c) {                         \
        const double w1 = 1 - o->adamw_beta1, w2 = 1 - o->adamw_beta2, bc1 = c->bc1, bc2 = c->bc2;         \
        const double eps = o->adamw_eps, lr = o->adamw_lr, decay = c->decay;                               \
        for (int64_t i = 0; i < n; i++) {                                                                  \
            const double gi = g[i];                                                                        \
            const T mi = (T)lerp(m[i], gi, w1), vi = (T)lerp(v[i], gi * gi, w2);                           \
            m[i] = mi;                                                                                     \
            v[i] = vi;                                                                                     \
            const double upd = (mi / bc1) / (sqrt(vi / bc2) + eps);                                        \
            p[i] = (T)(p[i] * decay - lr * upd);                                                           \
        }                                                                                                  \
    }
MUON_ADAMW(muon_adamw_f32, float)
MUON_ADAMW(muon_adamw_f64, double)

static void muon_adamw(const void *vo, const ag__pstate *ps, const ag_tensor *g, const void *coef, int64_t lo,
                       int64_t hi) {
    const ag_tensor *p = ps->param, *m = ps->buf[1], *v = ps->buf[2];
    if (p->dtype == AG_F32)
        muon_adamw_f32(ag__f32(p) + lo, ag__f32(g) + lo, ag__f32(m) + lo, ag__f32(v) + lo, hi - lo, vo, coef);
    else
        muon_adamw_f64(ag__f64(p) + lo, ag__f64(g) + lo, ag__f64(m) + lo, ag__f64(v) + lo, hi - lo, vo, coef);
}

static void muon_update(ag_optimizer *opt, ag__pstate *ps, const ag_tensor *g, const void *vo) {
    const ag_muon_options *o = vo;
    if (is_matrix(ps->param)) {
        muon_matrix(opt, ps, g, o);
        return;
    }
    double t = (double)ps->step;
    muon_coef c = {.bc1 = 1 - pow(o->adamw_beta1, t), .bc2 = 1 - pow(o->adamw_beta2, t),
                   .decay = 1 - o->adamw_lr * o->adamw_weight_decay};
    ag__optim_chunks(muon_adamw, o, ps, g, &c);
}

static const ag__optim_field muon_fields[] = {
    AG__FD(ag_muon_options, lr), AG__FD(ag_muon_options, momentum), AG__FD(ag_muon_options, weight_decay),
    AG__FB(ag_muon_options, nesterov), AG__FI(ag_muon_options, ns_steps), AG__FD(ag_muon_options, adamw_lr),
    AG__FD(ag_muon_options, adamw_beta1), AG__FD(ag_muon_options, adamw_beta2), AG__FD(ag_muon_options, adamw_eps),
    AG__FD(ag_muon_options, adamw_weight_decay), {NULL, 0, 0}};

const ag__optim_algo ag__muon_algo = {
    .kind = AG_OPTIM_MUON, .name = "Muon", .c_name = "muon", .opts_size = sizeof(ag_muon_options),
    .fields = muon_fields, .buf_names = {"momentum_buffer", "exp_avg", "exp_avg_sq"},
    .check = muon_check, .prepare = muon_prepare, .update_param = muon_update, .free_global = muon_free,
};

ag_optimizer *ag_muon_new(ag_tensor *const *params, int n, const ag_muon_options *o) {
    ag_muon_options d = ag_muon_defaults();
    return ag__optim_new(&ag__muon_algo, params, n, o ? (const void *)o : &d);
}

/*
 * lbfgs.c - torch.optim.LBFGS: limited-memory BFGS (Nocedal, 1980; Liu &
 * Nocedal, 1989) in minFunc's form, optionally with a strong-Wolfe line
 * search by cubic interpolation (Nocedal & Wright, algorithms 3.5 and 3.6).
 *
 * The parameters are handled as one flat float64 vector; the gradient,
 * search direction and the (s, y) history live in flat buffers owned by the
 * optimizer.  The work buffers are made on the first step; each history pair
 * when first needed (at most history_size of them), then reused as a ring.
 */
#include <math.h>
#include <string.h>
#include "optim/internal.h"

ag_lbfgs_options ag_lbfgs_defaults(void) {
    return (ag_lbfgs_options){.kind = AG_OPTIM_LBFGS, .lr = 1, .max_iter = 20, .max_eval = 0,
                              .tolerance_grad = 1e-7, .tolerance_change = 1e-9, .history_size = 100,
                              .line_search = AG_LINE_SEARCH_NONE};
}

static ag_status lbfgs_check(const void *vo) {
    const ag_lbfgs_options *o = vo;
    if (ag__optim_check_range("LBFGS", "learning rate", o->lr, 0, INFINITY) ||
        ag__optim_check_range("LBFGS", "tolerance_grad", o->tolerance_grad, 0, INFINITY) ||
        ag__optim_check_range("LBFGS", "tolerance_change", o->tolerance_change, 0, INFINITY))
        return AG_ERR_ARG;
    if (o->max_iter < 1 || o->max_eval < 0 || o->history_size < 1)
        return ag__fail(AG_ERR_ARG, "LBFGS: need max_iter >= 1, max_eval >= 0 (0: max_iter*5/4) and history_size >= 1 "
                                    "(got %d, %d, %d)", o->max_iter, o->max_eval, o->history_size);
    if (o->line_search != AG_LINE_SEARCH_NONE && o->line_search != AG_LINE_SEARCH_STRONG_WOLFE)
        return ag__fail(AG_ERR_ARG, "LBFGS: only AG_LINE_SEARCH_NONE and AG_LINE_SEARCH_STRONG_WOLFE are supported");
    return AG_OK;
}

/* Work buffers of numel doubles each. */
enum { FLAT_GRAD, PREV_GRAD, DIR, Q, TMP_Y, TMP_S, X0, LS_G, LS_GPREV, LS_GNEW, LS_B0, LS_B1, NBUF };

typedef struct lbfgs_state {
    int64_t n;             /* numel of all parameters */
    double *buf[NBUF];
    int cap;               /* history_size when made */
    double **dirs, **stps; /* history slots (y and s), allocated when first used */
    double *ro, *al;       /* 1/(yᵀs) per history entry, and the loop's α */
    int head, num_old;     /* oldest entry's slot, number of entries */
    double t, H_diag, prev_loss;
    int64_t n_iter, func_evals;
} lbfgs_state;

static void lbfgs_free(void *g) {
    lbfgs_state *st = g;
    for (int k = 0; k < NBUF; k++) ag__free(st->buf[k]);
    for (int i = 0; st->dirs && i < st->cap; i++) {
        ag__free(st->dirs[i]);
        ag__free(st->stps[i]);
    }
    ag__free(st->dirs);
    ag__free(st->stps);
    ag__free(st->ro);
    ag__free(st->al);
    ag__free(st);
}

static lbfgs_state *lbfgs_state_new(const ag_optimizer *opt, int cap) {
    lbfgs_state *st = ag__calloc(sizeof *st);
    if (!st) return NULL;
    st->n = ag_optimizer_numel(opt);
    st->cap = cap;
    size_t bytes = sizeof(double) * (size_t)(st->n ? st->n : 1);
    bool good = true;
    for (int k = 0; k < NBUF; k++) good &= (st->buf[k] = ag__alloc(bytes)) != NULL;
    good = good && (st->dirs = ag__calloc(sizeof(double *) * (size_t)cap)) && (st->stps = ag__calloc(sizeof(double *) * (size_t)cap)) &&
           (st->ro = ag__calloc(sizeof(double) * (size_t)cap)) && (st->al = ag__calloc(sizeof(double) * (size_t)cap));
    if (!good) {
        lbfgs_free(st);
        return NULL;
    }
    st->H_diag = 1;
    return st;
}

/* ---- flat vectors -------------------------------------------------------------------------- */
static double dot(const double *a, const double *b, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

static double abs_max(const double *a, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) m = fabs(a[i]) > m || isnan(a[i]) ? fabs(a[i]) : m;
    return m;
}

/* Python's min and max: the first argument unless the second compares smaller / larger. */
static double pymin(double a, double b) { return b < a ? b : a; }
static double pymax(double a, double b) { return b > a ? b : a; }

/* out ← every parameter's gradient (zeros where there is none). */
static void gather_grad(const ag_optimizer *opt, double *out) {
    for (int i = 0; i < opt->nparams; i++) {
        const ag_tensor *p = opt->ps[i].param, *g = p->grad;
        int64_t n = ag_numel(p);
        for (int64_t j = 0; j < n; j++) out[j] = !g ? 0 : g->dtype == AG_F32 ? ag__f32(g)[j] : ag__f64(g)[j];
        out += n;
    }
}

/* θ ← θ + t·d, or θ ← x when x is given (t and d unused). */
static void move_params(ag_optimizer *opt, double t, const double *d, const double *x) {
    for (int i = 0; i < opt->nparams; i++) {
        ag_tensor *p = opt->ps[i].param;
        int64_t n = ag_numel(p);
        if (p->dtype == AG_F32)
            for (int64_t j = 0; j < n; j++) ag__f32(p)[j] = (float)(x ? x[j] : ag__f32(p)[j] + t * d[j]);
        else
            for (int64_t j = 0; j < n; j++) ag__f64(p)[j] = x ? x[j] : ag__f64(p)[j] + t * d[j];
        ag__bump_version(p);
        if (x) x += n;
        else d += n;
    }
}

static void copy_params(const ag_optimizer *opt, double *out) {
    for (int i = 0; i < opt->nparams; i++) {
        const ag_tensor *p = opt->ps[i].param;
        int64_t n = ag_numel(p);
        for (int64_t j = 0; j < n; j++) out[j] = p->dtype == AG_F32 ? ag__f32(p)[j] : ag__f64(p)[j];
        out += n;
    }
}

typedef struct closure_call {
    ag_closure_fn fn;
    void *ctx;
} closure_call;

/* Loss and gradient at x + t·d, then back to x (torch's _directional_evaluate). */
static ag_status directional_evaluate(ag_optimizer *opt, const closure_call *c, const double *x, double t,
                                      const double *d, double *f, double *g) {
    move_params(opt, t, d, NULL);
    ag_status st = ag__optim_call(c->fn, c->ctx, f);
    gather_grad(opt, g);
    move_params(opt, 0, NULL, x);
    return st;
}

/* ---- the strong-Wolfe line search ------------------------------------------------------------ */
/* Minimiser of the cubic through (x1, f1, g1) and (x2, f2, g2), clamped to the bounds
 * (by default the interval between the points); the midpoint if it has none. */
static double cubic_interpolate(double x1, double f1, double g1, double x2, double f2, double g2, const double *bounds) {
    double lo = bounds ? bounds[0] : x1 <= x2 ? x1 : x2, hi = bounds ? bounds[1] : x1 <= x2 ? x2 : x1;
    double d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2);
    double d2_square = d1 * d1 - g1 * g2;
    if (d2_square >= 0) {
        double d2 = sqrt(d2_square);
        double min_pos = x1 <= x2 ? x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
                                  : x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2));
        return pymin(pymax(min_pos, lo), hi);
    }
    return (lo + hi) / 2.;
}

typedef struct ls_result {
    double f, t;
    const double *g;
    int evals;
} ls_result;

/* Finds t along d from x (loss f, gradient g, slope gtd) satisfying the strong
 * Wolfe conditions with c1 = 1e-4, c2 = 0.9 in at most 25 evaluations. */
static ag_status strong_wolfe(ag_optimizer *opt, lbfgs_state *st, const closure_call *c, double t, const double *d,
                              double f, const double *g_in, double gtd, double tolerance_change, ls_result *out) {
    const double c1 = 1e-4, c2 = 0.9;
    const int max_ls = 25;
    int64_t n = st->n;
    size_t bytes = sizeof(double) * (size_t)n;
    const double *x = st->buf[X0];
    double *g = st->buf[LS_G], *g_prev = st->buf[LS_GPREV], *g_new = st->buf[LS_GNEW];
    double *bg[2] = {st->buf[LS_B0], st->buf[LS_B1]};
    double d_norm = abs_max(d, n);
    memcpy(g, g_in, bytes);
    double f_new;
    ag_status s = directional_evaluate(opt, c, x, t, d, &f_new, g_new);
    if (s) return s;
    int evals = 1;
    double gtd_new = dot(g_new, d, n);

    /* Bracket an interval containing a point satisfying the Wolfe criteria. */
    double t_prev = 0, f_prev = f, gtd_prev = gtd;
    memcpy(g_prev, g, bytes);
    double br[2] = {0, 0}, bf[2] = {0, 0}, bgtd[2] = {0, 0};
    int nbr = 2;
    bool done = false;
    int ls_iter = 0;
    while (ls_iter < max_ls) {
        /* Armijo fails or no decrease: bracketed; curvature holds: done; slope up: bracketed. */
        int found = f_new > f + c1 * t * gtd || (ls_iter > 1 && f_new >= f_prev) ? 2
                    : fabs(gtd_new) <= -c2 * gtd                                 ? 1
                    : gtd_new >= 0                                               ? 2
                                                                                 : 0;
        if (found == 2) {
            br[0] = t_prev, br[1] = t;
            bf[0] = f_prev, bf[1] = f_new;
            memcpy(bg[0], g_prev, bytes);
            memcpy(bg[1], g_new, bytes);
            bgtd[0] = gtd_prev, bgtd[1] = gtd_new;
            break;
        }
        if (found == 1) {
            nbr = 1;
            br[0] = t;
            bf[0] = f_new;
            memcpy(bg[0], g_new, bytes);
            done = true;
            break;
        }
        /* Extrapolate by cubic interpolation within [t + 0.01(t − t_prev), 10t]. */
        double bounds[2] = {t + 0.01 * (t - t_prev), t * 10}, tmp = t;
        t = cubic_interpolate(t_prev, f_prev, gtd_prev, t, f_new, gtd_new, bounds);
        t_prev = tmp;
        f_prev = f_new;
        memcpy(g_prev, g_new, bytes);
        gtd_prev = gtd_new;
        if ((s = directional_evaluate(opt, c, x, t, d, &f_new, g_new))) return s;
        evals++;
        gtd_new = dot(g_new, d, n);
        ls_iter++;
    }
    if (ls_iter == max_ls) {
        nbr = 2;
        br[0] = 0, br[1] = t;
        bf[0] = f, bf[1] = f_new;
        memcpy(bg[0], g, bytes);
        memcpy(bg[1], g_new, bytes);
    }

    /* Zoom: shrink the bracket until a point satisfies the criteria. */
    bool insuf_progress = false;
    int low = bf[0] <= bf[nbr - 1] ? 0 : 1, high = 1 - low;
    while (!done && ls_iter < max_ls) {
        if (fabs(br[1] - br[0]) * d_norm < tolerance_change) break;
        t = cubic_interpolate(br[0], bf[0], bgtd[0], br[1], bf[1], bgtd[1], NULL);
        /* Too close to an end of the bracket (twice, or outside it): move 10% in. */
        double bmax = pymax(br[0], br[1]), bmin = pymin(br[0], br[1]), eps = 0.1 * (bmax - bmin);
        if (pymin(bmax - t, t - bmin) < eps) {
            if (insuf_progress || t >= bmax || t <= bmin) {
                t = fabs(t - bmax) < fabs(t - bmin) ? bmax - eps : bmin + eps;
                insuf_progress = false;
            } else {
                insuf_progress = true;
            }
        } else {
            insuf_progress = false;
        }
        if ((s = directional_evaluate(opt, c, x, t, d, &f_new, g_new))) return s;
        evals++;
        gtd_new = dot(g_new, d, n);
        ls_iter++;
        if (f_new > f + c1 * t * gtd || f_new >= bf[low]) { /* Armijo fails or no lower than the low end */
            br[high] = t;
            bf[high] = f_new;
            memcpy(bg[high], g_new, bytes);
            bgtd[high] = gtd_new;
            low = bf[0] <= bf[1] ? 0 : 1;
            high = 1 - low;
        } else {
            if (fabs(gtd_new) <= -c2 * gtd) {
                done = true;
            } else if (gtd_new * (br[high] - br[low]) >= 0) { /* the old low end becomes the high end */
                br[high] = br[low];
                bf[high] = bf[low];
                memcpy(bg[high], bg[low], bytes);
                bgtd[high] = bgtd[low];
            }
            br[low] = t;
            bf[low] = f_new;
            memcpy(bg[low], g_new, bytes);
            bgtd[low] = gtd_new;
        }
    }
    *out = (ls_result){bf[low], br[low], bg[low], evals};
    return AG_OK;
}

/* ---- the step ------------------------------------------------------------------------------------- */
/* Adds (y, s) as the newest history pair (dropping the oldest when full); y and s
 * are the TMP_Y / TMP_S buffers, swapped into the ring. */
static ag_status push_history(lbfgs_state *st, double ys) {
    int slot;
    if (st->num_old == st->cap) {
        slot = st->head;
        st->head = (st->head + 1) % st->cap;
    } else {
        slot = (st->head + st->num_old++) % st->cap;
    }
    if (!st->dirs[slot]) {
        st->dirs[slot] = ag__alloc(sizeof(double) * (size_t)(st->n ? st->n : 1));
        st->stps[slot] = ag__alloc(sizeof(double) * (size_t)(st->n ? st->n : 1));
        if (!st->dirs[slot] || !st->stps[slot]) {
            st->num_old--;
            return AG_ERR_NOMEM;
        }
    }
    double *y = st->buf[TMP_Y], *s = st->buf[TMP_S];
    st->buf[TMP_Y] = st->dirs[slot], st->dirs[slot] = y;
    st->buf[TMP_S] = st->stps[slot], st->stps[slot] = s;
    st->ro[slot] = 1. / ys;
    return AG_OK;
}

/* d ← −H·g by the two-loop recursion over the history, H₀ = H_diag·I. */
static void two_loop(lbfgs_state *st, const double *g, double *d) {
    int64_t n = st->n;
    double *q = st->buf[Q];
    for (int64_t j = 0; j < n; j++) q[j] = -g[j];
    for (int i = st->num_old - 1; i >= 0; i--) {
        int k = (st->head + i) % st->cap;
        st->al[i] = dot(st->stps[k], q, n) * st->ro[k];
        for (int64_t j = 0; j < n; j++) q[j] += -st->al[i] * st->dirs[k][j];
    }
    for (int64_t j = 0; j < n; j++) d[j] = q[j] * st->H_diag;
    for (int i = 0; i < st->num_old; i++) {
        int k = (st->head + i) % st->cap;
        double be_i = dot(st->dirs[k], d, n) * st->ro[k];
        for (int64_t j = 0; j < n; j++) d[j] += (st->al[i] - be_i) * st->stps[k][j];
    }
}

static ag_status lbfgs_step(ag_optimizer *opt, ag_closure_fn closure, void *ctx, double *loss_out) {
    if (!closure)
        return ag__fail(AG_ERR_ARG, "LBFGS: step needs a closure that re-evaluates the loss; use ag_optimizer_step_closure");
    const ag_lbfgs_options *o = opt->groups[0].opts;
    if (!opt->global && !(opt->global = lbfgs_state_new(opt, o->history_size))) return AG_ERR_NOMEM;
    lbfgs_state *st = opt->global;
    if (st->cap != o->history_size)
        return ag__fail(AG_ERR_ARG, "LBFGS: history_size cannot change after the first step (was %d, now %d)", st->cap,
                        o->history_size);
    int max_eval = o->max_eval ? o->max_eval : o->max_iter * 5 / 4;
    closure_call c = {closure, ctx};
    int64_t n = st->n;
    double *flat_grad = st->buf[FLAT_GRAD], *prev = st->buf[PREV_GRAD], *d = st->buf[DIR];

    double orig_loss;
    ag_status s = ag__optim_call(closure, ctx, &orig_loss);
    if (s) return s;
    if (loss_out) *loss_out = orig_loss;
    double loss = orig_loss;
    int current_evals = 1;
    st->func_evals++;
    gather_grad(opt, flat_grad);
    if (abs_max(flat_grad, n) <= o->tolerance_grad) return AG_OK; /* already optimal */

    bool opt_cond = false;
    for (int n_iter = 1; n_iter <= o->max_iter; n_iter++) {
        st->n_iter++;
        /* The descent direction. */
        if (st->n_iter == 1) {
            for (int64_t j = 0; j < n; j++) d[j] = -flat_grad[j];
            st->num_old = st->head = 0;
            st->H_diag = 1;
        } else {
            double *y = st->buf[TMP_Y], *sv = st->buf[TMP_S];
            for (int64_t j = 0; j < n; j++) y[j] = flat_grad[j] - prev[j];
            for (int64_t j = 0; j < n; j++) sv[j] = d[j] * st->t;
            double ys = dot(y, sv, n);
            if (ys > 1e-10) {
                double yy = dot(y, y, n);
                if ((s = push_history(st, ys))) return s;
                st->H_diag = ys / yy;
            }
            two_loop(st, flat_grad, d);
        }
        memcpy(prev, flat_grad, sizeof(double) * (size_t)n);
        double prev_loss = st->prev_loss = loss;

        /* The step length: 1/Σ|g| (at most 1) times lr on the very first iteration, lr after. */
        if (st->n_iter == 1) {
            double sum = 0;
            for (int64_t j = 0; j < n; j++) sum += fabs(flat_grad[j]);
            st->t = pymin(1., 1. / sum) * o->lr;
        } else {
            st->t = o->lr;
        }
        double gtd = dot(flat_grad, d, n);
        if (gtd > -o->tolerance_change) break; /* not a descent direction any more */

        int ls_evals = 0;
        if (o->line_search == AG_LINE_SEARCH_STRONG_WOLFE) {
            copy_params(opt, st->buf[X0]);
            ls_result r;
            if ((s = strong_wolfe(opt, st, &c, st->t, d, loss, flat_grad, gtd, o->tolerance_change, &r))) return s;
            loss = r.f;
            st->t = r.t;
            memcpy(flat_grad, r.g, sizeof(double) * (size_t)n);
            ls_evals = r.evals;
            move_params(opt, st->t, d, NULL);
            opt_cond = abs_max(flat_grad, n) <= o->tolerance_grad;
        } else {
            move_params(opt, st->t, d, NULL);
            if (n_iter != o->max_iter) { /* re-evaluate, except after the last iteration */
                if ((s = ag__optim_call(closure, ctx, &loss))) return s;
                gather_grad(opt, flat_grad);
                opt_cond = abs_max(flat_grad, n) <= o->tolerance_grad;
                ls_evals = 1;
            }
        }
        current_evals += ls_evals;
        st->func_evals += ls_evals;

        /* Stop: iterations or evaluations used up, optimal, or no progress. */
        if (n_iter == o->max_iter || current_evals >= max_eval || opt_cond) break;
        if (abs_max(d, n) * fabs(st->t) <= o->tolerance_change) break;
        if (fabs(loss - prev_loss) < o->tolerance_change) break;
    }
    return AG_OK;
}

/* ---- saving and resuming ------------------------------------------------------------------------ */
/* The history as [num_old, n] in order, oldest first. */
static ag_status save_history(ag_state_dict *sd, const lbfgs_state *st, double *const *rows, const char *name) {
    int64_t shape[2] = {st->num_old, st->n};
    ag_tensor *t = ag__new_unowned(AG_F64, 2, shape, false);
    if (!t) return AG_ERR_NOMEM;
    for (int i = 0; i < st->num_old; i++)
        memcpy(ag__f64(t) + i * st->n, rows[(st->head + i) % st->cap], sizeof(double) * (size_t)st->n);
    ag_status s = ag_state_dict_set(sd, name, t);
    ag_release(t);
    return s;
}

static ag_status lbfgs_save(const ag_optimizer *opt, ag_state_dict *sd) {
    const lbfgs_state *st = opt->global;
    const struct {
        const char *name;
        double v;
    } nums[] = {{"n_iter", (double)st->n_iter}, {"func_evals", (double)st->func_evals}, {"t", st->t},
                {"H_diag", st->H_diag}, {"prev_loss", st->prev_loss}};
    ag_status s = AG_OK;
    for (size_t i = 0; s == AG_OK && i < sizeof nums / sizeof *nums; i++)
        s = ag__sd_put_scalar(sd, nums[i].v, "state.0.%s", nums[i].name);
    int64_t n = st->n;
    if (s == AG_OK) s = ag__sd_put_f64(sd, st->buf[DIR], 1, &n, "state.0.d");
    if (s == AG_OK) s = ag__sd_put_f64(sd, st->buf[PREV_GRAD], 1, &n, "state.0.prev_flat_grad");
    if (s == AG_OK) s = save_history(sd, st, st->dirs, "state.0.old_dirs");
    if (s == AG_OK) s = save_history(sd, st, st->stps, "state.0.old_stps");
    int64_t k = st->num_old;
    ag_tensor *ro = s == AG_OK ? ag__new_unowned(AG_F64, 1, &k, false) : NULL;
    for (int i = 0; ro && i < st->num_old; i++) ag__f64(ro)[i] = st->ro[(st->head + i) % st->cap];
    if (s == AG_OK) s = ro ? ag_state_dict_set(sd, "state.0.ro", ro) : AG_ERR_NOMEM;
    ag_release(ro);
    return s;
}

/* A float64 entry of exactly the given shape, or NULL. */
static const double *entry(const ag_state_dict *sd, const char *name, int ndim, int64_t d0, int64_t d1) {
    const ag_tensor *t = ag__sd_find(sd, "%s", name);
    if (!t || t->dtype != AG_F64 || t->ndim != ndim || t->shape[0] != d0 || (ndim == 2 && t->shape[1] != d1) ||
        !ag__contig(t))
        return NULL;
    return ag__f64(t);
}

static ag_status lbfgs_load(const ag_optimizer *opt, const ag_state_dict *sd, const void *vo, void **out) {
    const ag_lbfgs_options *o = vo;
    double n_iter, evals, t, H, prev_loss;
    *out = NULL;
    if (!ag__sd_scalar(sd, &n_iter, "state.0.n_iter")) return AG_OK; /* saved before the first step */
    lbfgs_state *st = lbfgs_state_new(opt, o->history_size);
    if (!st) return AG_ERR_NOMEM;
    int64_t n = st->n;
    const ag_tensor *dirs = ag__sd_find(sd, "state.0.old_dirs");
    int64_t k = dirs && dirs->ndim == 2 ? dirs->shape[0] : -1;
    const double *d = entry(sd, "state.0.d", 1, n, 0), *prev = entry(sd, "state.0.prev_flat_grad", 1, n, 0);
    const double *y = entry(sd, "state.0.old_dirs", 2, k, n), *s = entry(sd, "state.0.old_stps", 2, k, n);
    const double *ro = entry(sd, "state.0.ro", 1, k, 0);
    if (!ag__sd_scalar(sd, &evals, "state.0.func_evals") || !ag__sd_scalar(sd, &t, "state.0.t") ||
        !ag__sd_scalar(sd, &H, "state.0.H_diag") || !ag__sd_scalar(sd, &prev_loss, "state.0.prev_loss") || !d ||
        !prev || !y || !s || !ro || k > st->cap) {
        lbfgs_free(st);
        return ag__fail(AG_ERR_ARG, "LBFGS load_state_dict: the \"state.0.*\" entries are missing or do not fit %lld "
                                    "parameters and history_size %d", (long long)n, o->history_size);
    }
    static const char *const names[] = {"n_iter", "func_evals", "t", "H_diag", "prev_loss", "d", "prev_flat_grad",
                                        "old_dirs", "old_stps", "ro"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) { /* each value against its rule (optim/state_dict.c) */
        char name[64];
        snprintf(name, sizeof name, "state.0.%s", names[i]);
        ag_status bad = ag__optim_check_state(&ag__lbfgs_algo, name, names[i], ag__sd_find(sd, "%s", name));
        if (bad) {
            lbfgs_free(st);
            return bad;
        }
    }
    memcpy(st->buf[DIR], d, sizeof(double) * (size_t)n);
    memcpy(st->buf[PREV_GRAD], prev, sizeof(double) * (size_t)n);
    for (int i = 0; i < (int)k; i++) {
        st->dirs[i] = ag__alloc(sizeof(double) * (size_t)(n ? n : 1));
        st->stps[i] = ag__alloc(sizeof(double) * (size_t)(n ? n : 1));
        if (!st->dirs[i] || !st->stps[i]) {
            lbfgs_free(st);
            return AG_ERR_NOMEM;
        }
        memcpy(st->dirs[i], y + i * n, sizeof(double) * (size_t)n);
        memcpy(st->stps[i], s + i * n, sizeof(double) * (size_t)n);
        st->ro[i] = ro[i];
    }
    st->num_old = (int)k;
    st->head = 0;
    st->n_iter = (int64_t)n_iter;
    st->func_evals = (int64_t)evals;
    st->t = t;
    st->H_diag = H;
    st->prev_loss = prev_loss;
    *out = st;
    return AG_OK;
}

static const ag__optim_field lbfgs_fields[] = {
    AG__FD(ag_lbfgs_options, lr), AG__FI(ag_lbfgs_options, max_iter), AG__FI(ag_lbfgs_options, max_eval),
    AG__FD(ag_lbfgs_options, tolerance_grad), AG__FD(ag_lbfgs_options, tolerance_change),
    AG__FI(ag_lbfgs_options, history_size), AG__FI(ag_lbfgs_options, line_search), {NULL, 0, 0}};

const ag__optim_algo ag__lbfgs_algo = {
    .kind = AG_OPTIM_LBFGS, .name = "LBFGS", .c_name = "lbfgs", .opts_size = sizeof(ag_lbfgs_options),
    .fields = lbfgs_fields, .check = lbfgs_check, .step = lbfgs_step, .free_global = lbfgs_free,
    .save_global = lbfgs_save, .load_global = lbfgs_load, .one_group = true,
};

ag_optimizer *ag_lbfgs_new(ag_tensor *const *params, int n, const ag_lbfgs_options *o) {
    ag_lbfgs_options d = ag_lbfgs_defaults();
    return ag__optim_new(&ag__lbfgs_algo, params, n, o ? (const void *)o : &d);
}

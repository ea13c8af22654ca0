/*
 * Loss functions (agrad/loss.h): values and input gradients against PyTorch
 * (test/fixtures/losses.txt, from scripts/gen_loss_fixtures.py) in float64 and
 * float32, ag_gradcheck (float64) of every fixture case, stability at extreme
 * logits and probabilities, every error case by its message, and the harmonic
 * loss against a direct float64 computation from its definition.
 */
#include <stdlib.h>
#include <string.h>
#include "agrad/agrad.h"
#include "core/internal.h"
#include "core/sum.h"
#include "nn/loss_internal.h"
#include "ops/vexpf.h"
#include "quads_ref.h"
#include "tap.h"
#include "test/fixture.h"
#include "failing_alloc.h"

#ifndef FIXTURES
#define FIXTURES "test/fixtures"
#endif

#define TOL_F64 1e-6
#define TOL_F32 1e-5

/* ---- the fixture file ------------------------------------------------------------------------ */
#define FX_MAX_T 16
#define FX_MAX_OPT 16

typedef struct fx_case {
    char name[96], fn[48];
    int nopt, nt;
    char optk[FX_MAX_OPT][32], optv[FX_MAX_OPT][32];
    bool nogradcheck, nof32;
    fixture_tensor t[FX_MAX_T];
} fx_case;

static fx_case *cases;
static int ncases;

static bool parse_tensor(char *s, fixture_tensor *t) {
    char kind[8];
    int used = 0;
    if (sscanf(s, "%31s %7s%n", t->name, kind, &used) != 2) return false;
    t->dtype = strcmp(kind, "i64") == 0 ? AG_I64 : AG_F64;
    return fixture_parse_shaped(s + used, t);
}

/* One line of losses.txt into the case c (fixture_read_cases). */
static bool take_line(void *cv, char *line, void *ctx) {
    fx_case *c = cv;
    (void)ctx;
    if (!c) return false;
    if (strncmp(line, "case ", 5) == 0) return sscanf(line + 5, "%95s %47s", c->name, c->fn) == 2;
    if (strncmp(line, "opt ", 4) == 0 && c->nopt < FX_MAX_OPT) {
        c->nopt++;
        return sscanf(line + 4, "%31s %31s", c->optk[c->nopt - 1], c->optv[c->nopt - 1]) == 2;
    }
    if (strncmp(line, "flag ", 5) == 0) {
        if (strstr(line, "nogradcheck")) c->nogradcheck = true;
        if (strstr(line, "nof32")) c->nof32 = true;
        return true;
    }
    if (strncmp(line, "tensor ", 7) == 0 && c->nt < FX_MAX_T) return parse_tensor(line + 7, &c->t[c->nt++]);
    return strcmp(line, "end") == 0;
}

static void free_fixtures(void) {
    for (int i = 0; i < ncases; i++)
        for (int k = 0; k < cases[i].nt; k++) free(cases[i].t[k].v);
    free(cases);
}

static const fixture_tensor *fx_get(const fx_case *c, const char *name) {
    for (int k = 0; k < c->nt; k++)
        if (strcmp(c->t[k].name, name) == 0) return &c->t[k];
    return NULL;
}

/* The tensors that are the function's arguments, in order (everything but options and results). */
static bool is_arg(const fixture_tensor *t) {
    return strcmp(t->name, "weight") != 0 && strcmp(t->name, "pos_weight") != 0 && strcmp(t->name, "out") != 0 &&
           strcmp(t->name, "grad_out") != 0 && strncmp(t->name, "grad.", 5) != 0;
}

/* triplet_margin_with_distance_loss with its default distance, and with 1 - cosine similarity
 * (the fixture's distance_function cosine) */
static ag_tensor *cosine_distance(ag_tensor *u, ag_tensor *v, void *ctx) {
    (void)ctx;
    return ag_rsub_scalar(1, ag_cosine_similarity(u, v, -1, 1e-8));
}
static ag_tensor *triplet_wd(ag_tensor *a, ag_tensor *p, ag_tensor *n, const ag_loss_opts *o) {
    return ag_triplet_margin_with_distance_loss(a, p, n, NULL, NULL, o);
}
static ag_tensor *triplet_wd_cosine(ag_tensor *a, ag_tensor *p, ag_tensor *n, const ag_loss_opts *o) {
    return ag_triplet_margin_with_distance_loss(a, p, n, cosine_distance, NULL, o);
}

/* ---- calling a loss by name ---------------------------------------------------------------- */
typedef ag_tensor *(*loss2_fn)(ag_tensor *, ag_tensor *, const ag_loss_opts *);
typedef ag_tensor *(*loss3_fn)(ag_tensor *, ag_tensor *, ag_tensor *, const ag_loss_opts *);
typedef ag_tensor *(*loss4_fn)(ag_tensor *, ag_tensor *, ag_tensor *, ag_tensor *, const ag_loss_opts *);
static const struct {
    const char *name;
    loss2_fn f2;
    loss3_fn f3;
} LOSSES[] = {
    {"mse_loss", ag_mse_loss, NULL},
    {"l1_loss", ag_l1_loss, NULL},
    {"smooth_l1_loss", ag_smooth_l1_loss, NULL},
    {"huber_loss", ag_huber_loss, NULL},
    {"binary_cross_entropy", ag_binary_cross_entropy, NULL},
    {"binary_cross_entropy_with_logits", ag_binary_cross_entropy_with_logits, NULL},
    {"soft_margin_loss", ag_soft_margin_loss, NULL},
    {"multilabel_soft_margin_loss", ag_multilabel_soft_margin_loss, NULL},
    {"nll_loss", ag_nll_loss, NULL},
    {"cross_entropy", ag_cross_entropy, NULL},
    {"kl_div", ag_kl_div, NULL},
    {"poisson_nll_loss", ag_poisson_nll_loss, NULL},
    {"gaussian_nll_loss", NULL, ag_gaussian_nll_loss},
    {"hinge_embedding_loss", ag_hinge_embedding_loss, NULL},
    {"margin_ranking_loss", NULL, ag_margin_ranking_loss},
    {"multi_margin_loss", ag_multi_margin_loss, NULL},
    {"cosine_embedding_loss", NULL, ag_cosine_embedding_loss},
    {"triplet_margin_loss", NULL, ag_triplet_margin_loss},
    {"multilabel_margin_loss", ag_multilabel_margin_loss, NULL},
    {"triplet_margin_with_distance_loss", NULL, triplet_wd},
    {"log_cosh_loss", ag_log_cosh_loss, NULL},
    {"mean_absolute_percentage_error", ag_mean_absolute_percentage_error, NULL},
    {"mean_squared_logarithmic_error", ag_mean_squared_logarithmic_error, NULL},
    {"hinge_loss", ag_hinge_loss, NULL},
    {"squared_hinge_loss", ag_squared_hinge_loss, NULL},
    {"categorical_hinge_loss", ag_categorical_hinge_loss, NULL},
    {"cosine_similarity_loss", ag_cosine_similarity_loss, NULL},
};

/* One fixture case prepared in one dtype: arguments and options. */
typedef struct prepared {
    const fx_case *c;
    int nargs;
    ag_tensor *args[4];
    const char *argname[4];
    ag_loss_opts o;
    loss2_fn f2;
    loss3_fn f3;
    loss4_fn f4; /* ctc_loss, the one loss of four tensors */
} prepared;

static ag_reduction parse_reduction(const char *s) {
    if (strcmp(s, "sum") == 0) return AG_REDUCTION_SUM;
    if (strcmp(s, "none") == 0) return AG_REDUCTION_NONE;
    if (strcmp(s, "batchmean") == 0) return AG_REDUCTION_BATCHMEAN;
    return AG_REDUCTION_MEAN;
}

/* Builds arguments (requiring grad where the fixture has their gradient) and options
 * in the current scope.  false if the case names an unknown function. */
static bool prepare(const fx_case *c, ag_dtype dtype, prepared *p) {
    memset(p, 0, sizeof *p);
    p->c = c;
    for (size_t i = 0; i < sizeof LOSSES / sizeof LOSSES[0]; i++)
        if (strcmp(LOSSES[i].name, c->fn) == 0) p->f2 = LOSSES[i].f2, p->f3 = LOSSES[i].f3;
    if (strcmp(c->fn, "ctc_loss") == 0) p->f4 = ag_ctc_loss;
    if (!p->f2 && !p->f3 && !p->f4) return false;
    for (int k = 0; k < c->nt && p->nargs < 4; k++) {
        if (!is_arg(&c->t[k])) continue;
        char gname[40];
        snprintf(gname, sizeof gname, "grad.%s", c->t[k].name);
        ag_tensor *a = fixture_tensor_make(&c->t[k], dtype);
        if (fx_get(c, gname)) ag_requires_grad_(a, true);
        p->argname[p->nargs] = c->t[k].name;
        p->args[p->nargs++] = a;
    }
    p->o = ag_loss_defaults();
    for (int i = 0; i < c->nopt; i++) {
        const char *k = c->optk[i], *v = c->optv[i];
        if (strcmp(k, "reduction") == 0) p->o.reduction = parse_reduction(v);
        else if (strcmp(k, "weight") == 0) p->o.weight = fixture_tensor_make(fx_get(c, "weight"), dtype);
        else if (strcmp(k, "pos_weight") == 0) p->o.pos_weight = fixture_tensor_make(fx_get(c, "pos_weight"), dtype);
        else if (strcmp(k, "ignore_index") == 0) p->o.ignore_index = strtoll(v, NULL, 10);
        else if (strcmp(k, "label_smoothing") == 0) p->o.label_smoothing = strtod(v, NULL);
        else if (strcmp(k, "beta") == 0) p->o.beta = strtod(v, NULL);
        else if (strcmp(k, "delta") == 0) p->o.delta = strtod(v, NULL);
        else if (strcmp(k, "margin") == 0) p->o.margin = strtod(v, NULL);
        else if (strcmp(k, "eps") == 0) p->o.eps = strtod(v, NULL);
        else if (strcmp(k, "p") == 0) p->o.p = strtod(v, NULL);
        else if (strcmp(k, "log_target") == 0) p->o.log_target = atoi(v);
        else if (strcmp(k, "log_input") == 0) p->o.log_input = atoi(v);
        else if (strcmp(k, "full") == 0) p->o.full = atoi(v);
        else if (strcmp(k, "swap") == 0) p->o.swap = atoi(v);
        else if (strcmp(k, "blank") == 0) p->o.blank = strtoll(v, NULL, 10);
        else if (strcmp(k, "zero_infinity") == 0) p->o.zero_infinity = atoi(v);
        else if (strcmp(k, "distance_function") == 0 && strcmp(v, "cosine") == 0) p->f3 = triplet_wd_cosine;
        else return false;
    }
    return true;
}

static ag_tensor *call_prepared(const prepared *p, ag_tensor *const *args) {
    if (p->f4) return p->f4(args[0], args[1], args[2], args[3], &p->o);
    return p->f3 ? p->f3(args[0], args[1], args[2], &p->o) : p->f2(args[0], args[1], &p->o);
}

/* ag_fn for gradcheck: ctx is the prepared case. */
static ag_tensor *gradcheck_fn(ag_tensor *const *in, int n, void *ctx) {
    (void)n;
    return call_prepared(ctx, in);
}

/* Largest error of got against want, relative to max(|want|, floor · max|want|, 1e-12) where
 * floor is 0.1% in float64 and 1% in float32 (so elements that are small by cancellation
 * are judged against the tensor's scale); equal infinities and NaN against NaN count as
 * exact.  A NULL gradient counts as zeros (a target that reaches the loss only through
 * comparisons gets none). */
static double compare(const ag_tensor *got, const fixture_tensor *want, bool null_is_zero) {
    if (!got && !null_is_zero) return INFINITY;
    if (got && ag_numel(got) != want->n) return INFINITY;
    double floor = got && got->dtype == AG_F32 ? 1e-2 : 1e-3;
    double scale = 0;
    for (int64_t k = 0; k < want->n; k++)
        if (isfinite(want->v[k])) scale = fmax(scale, fabs(want->v[k]));
    double worst = 0;
    for (int64_t k = 0; k < want->n; k++) {
        double a = got ? ag__loss_at(got, k) : 0, b = want->v[k];
        if (a == b || (isnan(a) && isnan(b))) continue;
        double e = fabs(a - b) / fmax(fmax(fabs(b), floor * scale), 1e-12);
        if (!(e <= worst)) worst = isnan(e) ? INFINITY : e;
    }
    return worst;
}

/* Forward and backward of one case in dtype against PyTorch. */
static void check_case(const fx_case *c, ag_dtype dtype) {
    double tol = dtype == AG_F64 ? TOL_F64 : TOL_F32;
    ag_scope_begin();
    prepared p;
    if (!prepare(c, dtype, &p)) {
        ok(0, "%s: unknown function or option", c->name);
        ag_scope_end();
        return;
    }
    ag_tensor *out = call_prepared(&p, p.args);
    double worst = compare(out, fx_get(c, "out"), false);
    const char *where = "value";
    bool any_grad = false;
    for (int i = 0; i < p.nargs; i++) any_grad |= ag_requires_grad(p.args[i]);
    if (out && any_grad) {
        const fixture_tensor *seed = fx_get(c, "grad_out");
        ag_tensor *s = seed ? fixture_tensor_make(seed, dtype) : NULL;
        if (ag_backward_ex(out, s, false) != AG_OK) {
            worst = INFINITY;
            where = ag_last_error();
        }
        for (int i = 0; i < p.nargs && isfinite(worst); i++) {
            char gname[40];
            snprintf(gname, sizeof gname, "grad.%s", p.argname[i]);
            const fixture_tensor *g = fx_get(c, gname);
            if (!g) continue;
            double e = compare(ag_grad(p.args[i]), g, true);
            if (e > worst) {
                worst = e;
                where = p.argname[i];
            }
        }
    }
    ok(worst <= tol, "%s %s: agrees with PyTorch (worst relative error %.2g in %s)%s%s", c->name,
       ag_dtype_name(dtype), worst, where, out ? "" : ": ", out ? "" : ag_last_error());
    ag_scope_end();
}

static void check_gradcheck(const fx_case *c) {
    ag_scope_begin();
    prepared p;
    if (prepare(c, AG_F64, &p)) {
        ag_gradcheck_opts go = {.eps = 1e-6, .atol = 1e-5, .rtol = 1e-4, .quiet = true};
        ag_gradcheck_report rep;
        ag_status st = ag_gradcheck(gradcheck_fn, &p, p.args, p.nargs, &go, &rep);
        ok(st == AG_OK, "%s: gradcheck float64 (%lld Jacobian entries)%s%s", c->name, (long long)rep.checked,
           st ? ": " : "", st ? ag_last_error() : "");
    }
    ag_scope_end();
}

/* The object form of a prepared case (ag_nn_loss, ag_nn_gaussian_nll_loss, ...,
 * ag_nn_triplet_margin_with_distance_loss, ag_nn_ctc_loss with the case's options); NULL for a
 * loss without one. */
static ag_loss *object_of(const prepared *p) {
    if (p->f4) return ag_nn_ctc_loss(&p->o);
    if (p->f3 == triplet_wd) return ag_nn_triplet_margin_with_distance_loss(NULL, NULL, &p->o);
    if (p->f3 == triplet_wd_cosine) return ag_nn_triplet_margin_with_distance_loss(cosine_distance, NULL, &p->o);
    if (p->f3 == ag_gaussian_nll_loss) return ag_nn_gaussian_nll_loss(&p->o);
    if (p->f3 == ag_margin_ranking_loss) return ag_nn_margin_ranking_loss(&p->o);
    if (p->f3 == ag_cosine_embedding_loss) return ag_nn_cosine_embedding_loss(&p->o);
    if (p->f3 == ag_triplet_margin_loss) return ag_nn_triplet_margin_loss(&p->o);
    return p->f2 ? ag_nn_loss(p->f2, &p->o) : NULL;
}

/* max |a - b| over elements, equal infinities and NaN against NaN counting as 0; 0 when both are
 * NULL (no gradient), INFINITY when one is or their sizes differ */
static double max_diff(const ag_tensor *a, const ag_tensor *b) {
    if (!a && !b) return 0;
    if (!a || !b || ag_numel(a) != ag_numel(b)) return INFINITY;
    double w = 0;
    for (int64_t k = 0; k < ag_numel(a); k++) {
        double x = ag__loss_at(a, k), y = ag__loss_at(b, k);
        if (x == y || (isnan(x) && isnan(y))) continue;
        w = fmax(w, isnan(x - y) ? INFINITY : fabs(x - y));
    }
    return w;
}

/* A fixture case through its loss object (float64): the value and input gradients the functional
 * form gives, bit for bit, and PyTorch's. */
static void check_object_case(const fx_case *c) {
    ag_scope_begin();
    prepared p;
    ag_loss *obj = prepare(c, AG_F64, &p) ? object_of(&p) : NULL;
    if (!obj) ok(0, "%s: no loss object for %s", c->name, c->fn);
    else {
        ag_tensor *out = ag_loss_forward_n(obj, p.args, p.nargs);
        ag_tensor *want = call_prepared(&p, p.args);
        double same = max_diff(out, want), fixture = compare(out, fx_get(c, "out"), false);
        const fixture_tensor *seed = fx_get(c, "grad_out");
        ag_tensor *s = seed ? fixture_tensor_make(seed, AG_F64) : NULL;
        for (int i = 0; i < p.nargs && out; i++) {
            char gname[40];
            snprintf(gname, sizeof gname, "grad.%s", p.argname[i]);
            const fixture_tensor *g = fx_get(c, gname);
            if (!g) continue;
            ag_tensor *go = NULL, *gf = NULL;
            ag_grad_opts keep = {.retain_graph = true, .allow_unused = true};
            ag_autograd_grad(&out, 1, &p.args[i], 1, &s, &keep, &go);
            ag_autograd_grad(&want, 1, &p.args[i], 1, &s, &keep, &gf);
            same = fmax(same, max_diff(go, gf));
            fixture = fmax(fixture, compare(go, g, true));
        }
        ok(same == 0 && fixture <= TOL_F64, "%s: the loss object gives the functional's value and gradients "
           "(difference %.2g) and PyTorch's (worst relative error %.2g)", c->name, same, fixture);
        ag_loss_free(obj);
    }
    ag_scope_end();
}

static void test_fixtures(void) {
    char path[512];
    snprintf(path, sizeof path, "%s/losses.txt", FIXTURES);
    cases = fixture_read_cases(path, sizeof *cases, take_line, NULL, &ncases);
    if (!ok(cases, "read %s (%d cases)", path, ncases)) return;
    for (int i = 0; i < ncases; i++) {
        check_case(&cases[i], AG_F64);
        if (!cases[i].nof32) check_case(&cases[i], AG_F32);
        if (!cases[i].nogradcheck) check_gradcheck(&cases[i]);
        check_object_case(&cases[i]);
    }
    free_fixtures();
}

/* ---- options -------------------------------------------------------------------------------- */
static void test_defaults(void) {
    ag_loss_opts d = AG_LOSS_DEFAULTS, f = ag_loss_defaults();
    ok(d.reduction == AG_REDUCTION_MEAN && d.ignore_index == -100 && d.label_smoothing == 0 && d.beta == 1 &&
           d.delta == 1 && isnan(d.margin) && isnan(d.eps) && isnan(d.p) && !d.log_target && d.log_input && !d.full &&
           !d.swap && !d.weight && !d.pos_weight,
       "AG_LOSS_DEFAULTS holds PyTorch's defaults");
    ok(f.reduction == d.reduction && f.ignore_index == d.ignore_index && f.label_smoothing == d.label_smoothing &&
           f.beta == d.beta && f.delta == d.delta && isnan(f.margin) && isnan(f.eps) && isnan(f.p) &&
           f.log_target == d.log_target && f.log_input == d.log_input && f.full == d.full && f.swap == d.swap &&
           !f.weight && !f.pos_weight,
       "ag_loss_defaults() equals AG_LOSS_DEFAULTS");
    ag_scope_begin();
    ag_tensor *x = ag_from_data((double[]){1, 2, 3}, AG_SHAPE(3), AG_F64);
    ag_tensor *y = ag_from_data((double[]){0, 2, 5}, AG_SHAPE(3), AG_F64);
    ok(ag_item(ag_mse_loss(x, y, NULL)) == ag_item(ag_mse_loss(x, y, &d)), "NULL options mean the defaults");
    ok(ag_mse_loss(NULL, y, NULL) == NULL && ag_mse_loss(x, NULL, NULL) == NULL, "NULL inputs give NULL");
    ag_scope_end();
}


/* bce_with_logits with pos_weight: its kernels' unit-stride loops (pos_weight [C] or [1] along the run,
 * dy per element or one value) give the bits of their strided loop (x and t in a transposed layout):
 * the loss and the gradients of x, t and pos_weight, float32 and float64, reduction none (dy per
 * element, by a random weighting) and mean (dy one value). */
static void test_pos_weight_paths(void) {
    enum { R = 37, C = 53 };
    int64_t bad = 0;
    for (int d = 0; d < 2; d++)
        for (int pc = 0; pc < 2; pc++)
            for (int mean = 0; mean < 2; mean++) {
                ag_scope_begin();
                ag_dtype dt = d ? AG_F64 : AG_F32;
                ag_tensor *x = ag_mul_scalar(ag_randn(AG_SHAPE(R, C), dt), 4), *t = ag_rand(AG_SHAPE(R, C), dt);
                ag_tensor *pw = ag_add_scalar(ag_rand(pc ? AG_SHAPE(1) : AG_SHAPE(C), dt), 0.5);
                ag_tensor *r = ag_randn(AG_SHAPE(R, C), dt);
                ag_tensor *got[2][4];
                for (int strided = 0; strided < 2; strided++) {
                    /* leaves: x and t as they are, or their transposes [C, R] seen transposed */
                    ag_tensor *lx = ag_requires_grad_(ag_detach(ag_contiguous(strided ? ag_transpose(x, 0, 1) : x)), true);
                    ag_tensor *lt = ag_requires_grad_(ag_detach(ag_contiguous(strided ? ag_transpose(t, 0, 1) : t)), true);
                    ag_tensor *lp = ag_requires_grad_(ag_detach(pw), true);
                    ag_tensor *vx = strided ? ag_transpose(lx, 0, 1) : lx, *vt = strided ? ag_transpose(lt, 0, 1) : lt;
                    ag_loss_opts o = ag_loss_defaults();
                    o.pos_weight = lp, o.reduction = mean ? AG_REDUCTION_MEAN : AG_REDUCTION_NONE;
                    ag_tensor *y = ag_binary_cross_entropy_with_logits(vx, vt, &o);
                    if (!y || ag_backward(mean ? y : ag_sum(ag_mul(y, r)))) {
                        diag("strided %d: %s", strided, ag_last_error());
                        bad++;
                        got[strided][0] = NULL;
                        continue;
                    }
                    ag_tensor *gx = ag_grad(lx), *gt = ag_grad(lt);
                    got[strided][0] = ag_contiguous(y), got[strided][3] = ag_contiguous(ag_grad(lp));
                    got[strided][1] = ag_contiguous(strided ? ag_transpose(gx, 0, 1) : gx);
                    got[strided][2] = ag_contiguous(strided ? ag_transpose(gt, 0, 1) : gt);
                }
                for (int k = 0; k < 4 && got[0][0] && got[1][0]; k++) {
                    const ag_tensor *u = got[0][k], *v = got[1][k];
                    size_t bytes = (size_t)ag_numel(u) * (d ? 8 : 4);
                    bool differ = !u || !v || ag_numel(u) != ag_numel(v) || memcmp(ag_data(u), ag_data(v), bytes) != 0;
                    if (differ) diag("float%d, pos_weight [%s], reduction %s: %s differs", d ? 64 : 32, pc ? "1" : "C",
                                     mean ? "mean" : "none", (const char *[]){"the loss", "dx", "dt", "dp"}[k]);
                    bad += differ;
                }
                ag_scope_end();
            }
    ok(bad == 0, "binary_cross_entropy_with_logits with pos_weight [C] and [1]: the unit-stride loops give the "
       "strided loop's bits (loss, dx, dt, dp; float32 and float64; reductions none and mean; %lld differ)", (long long)bad);
}

/* ---- errors: NULL, the status and a message naming the loss, no scope left open ---------------- */
#define ERR(call, st, text)                                                                                \
    do {                                                                                                   \
        ag_clear_error();                                                                                  \
        int depth_ = ag_scope_depth();                                                                     \
        ag_tensor *r_ = (call);                                                                            \
        ok(r_ == NULL && ag_last_status() == (st) && strstr(ag_last_error(), text) && ag_scope_depth() == depth_, \
           "error: %s -> [%s] %s", #call, ag_status_name(ag_last_status()), ag_last_error());             \
    } while (0)

static ag_tensor *vec(int n, const double *v) { return ag_from_data(v, AG_SHAPE(n), AG_F64); }
static ag_tensor *ivec(int n, const int64_t *v) { return ag_from_data(v, AG_SHAPE(n), AG_I64); }

static void test_errors_elementwise(void) {
    ag_scope_begin();
    ag_tensor *x = ag_full(AG_SHAPE(3, 4), 0.5, AG_F64), *y = ag_full(AG_SHAPE(3, 4), 0.25, AG_F64);
    ag_tensor *x32 = ag_full(AG_SHAPE(3, 4), 0.5, AG_F32), *i = ag_zeros(AG_SHAPE(3, 4), AG_I64);
    ag_loss_opts o = AG_LOSS_DEFAULTS;

    o.reduction = (ag_reduction)7;
    ERR(ag_mse_loss(x, y, &o), AG_ERR_ARG, "mse_loss: invalid reduction 7");
    o.reduction = AG_REDUCTION_BATCHMEAN;
    ERR(ag_l1_loss(x, y, &o), AG_ERR_ARG, "l1_loss: reduction batchmean is only valid for kl_div");
    ERR(ag_mse_loss(x, x32, NULL), AG_ERR_DTYPE, "mse_loss: target is float32 but the input is float64");
    ERR(ag_mse_loss(i, y, NULL), AG_ERR_DTYPE, "mse_loss: input must be float32 or float64, got int64");
    ERR(ag_mse_loss(x, ag_zeros(AG_SHAPE(3), AG_F64), NULL), AG_ERR_SHAPE,
        "mse_loss: input [3, 4] and target [3] cannot be broadcast together");
    o = ag_loss_defaults();
    o.beta = -1;
    ERR(ag_smooth_l1_loss(x, y, &o), AG_ERR_ARG, "smooth_l1_loss: beta must be >= 0, got -1");
    o = ag_loss_defaults();
    o.delta = 0;
    ERR(ag_huber_loss(x, y, &o), AG_ERR_ARG, "huber_loss: delta must be > 0, got 0");

    ERR(ag_binary_cross_entropy(x, ag_zeros(AG_SHAPE(4), AG_F64), NULL), AG_ERR_SHAPE,
        "binary_cross_entropy: target size [4] must be the same as input size [3, 4]");
    ERR(ag_binary_cross_entropy(vec(3, (double[]){0.5, 1.5, 0.2}), vec(3, (double[]){0, 1, 0}), NULL), AG_ERR_VALUE,
        "binary_cross_entropy: all elements of input should be between 0 and 1, got 1.5 at flat index 1");
    ERR(ag_binary_cross_entropy(vec(2, (double[]){0.5, NAN}), vec(2, (double[]){0, 1}), NULL), AG_ERR_VALUE,
        "elements of input should be between 0 and 1, got nan");
    ERR(ag_binary_cross_entropy(vec(3, (double[]){0.5, 0.5, 0.2}), vec(3, (double[]){0, -0.5, 0}), NULL),
        AG_ERR_VALUE, "binary_cross_entropy: all elements of target should be between 0 and 1, got -0.5 at flat index 1");
    o = ag_loss_defaults();
    o.weight = ag_ones(AG_SHAPE(5), AG_F64);
    ERR(ag_binary_cross_entropy(x, y, &o), AG_ERR_SHAPE,
        "binary_cross_entropy: weight [5] does not broadcast to the input's shape [3, 4]");
    o.weight = ag_ones(AG_SHAPE(4), AG_F32);
    ERR(ag_binary_cross_entropy(x, y, &o), AG_ERR_DTYPE, "binary_cross_entropy: weight is float32 but the input is float64");
    ERR(ag_binary_cross_entropy_with_logits(x, ag_zeros(AG_SHAPE(4, 3), AG_F64), NULL), AG_ERR_SHAPE,
        "binary_cross_entropy_with_logits: target size [4, 3] must be the same as input size [3, 4]");
    o = ag_loss_defaults();
    o.pos_weight = ag_ones(AG_SHAPE(3), AG_F64);
    ERR(ag_binary_cross_entropy_with_logits(x, y, &o), AG_ERR_SHAPE,
        "binary_cross_entropy_with_logits: pos_weight [3] does not broadcast to the input's shape [3, 4]");
    ERR(ag_multilabel_soft_margin_loss(ag_scalar(1, AG_F64), ag_scalar(1, AG_F64), NULL), AG_ERR_SHAPE,
        "multilabel_soft_margin_loss: input must have a class dim, got a 0-d tensor");
    ERR(ag_soft_margin_loss(x, ag_zeros(AG_SHAPE(2), AG_F64), NULL), AG_ERR_SHAPE,
        "soft_margin_loss: input [3, 4] and target [2] cannot be broadcast together");

    ERR(ag_kl_div(x, ag_zeros(AG_SHAPE(5), AG_F64), NULL), AG_ERR_SHAPE,
        "kl_div: input [3, 4] and target [5] cannot be broadcast together");
    ERR(ag_poisson_nll_loss(x, i, NULL), AG_ERR_DTYPE, "poisson_nll_loss: target must be float32 or float64, got int64");
    ERR(ag_gaussian_nll_loss(x, y, ag_ones(AG_SHAPE(4), AG_F64), NULL), AG_ERR_SHAPE,
        "gaussian_nll_loss: var is of incorrect size [4] for input [3, 4]");
    ERR(ag_gaussian_nll_loss(x, y, ag_ones(AG_SHAPE(3, 2), AG_F64), NULL), AG_ERR_SHAPE,
        "gaussian_nll_loss: var is of incorrect size [3, 2]");
    ERR(ag_gaussian_nll_loss(x, y, ag_full(AG_SHAPE(3, 1), -0.5, AG_F64), NULL), AG_ERR_VALUE,
        "gaussian_nll_loss: var has a negative entry -0.5 at flat index 0");

    ERR(ag_hinge_embedding_loss(x, x32, NULL), AG_ERR_DTYPE, "hinge_embedding_loss: target is float32");
    ERR(ag_margin_ranking_loss(x, y, ag_ones(AG_SHAPE(4), AG_F64), NULL), AG_ERR_SHAPE,
        "margin_ranking_loss: all input tensors should have the same number of dims, got input1 [3, 4], input2 [3, 4], "
        "target [4]");
    ERR(ag_margin_ranking_loss(x, ag_zeros(AG_SHAPE(3, 5), AG_F64), y, NULL), AG_ERR_SHAPE,
        "margin_ranking_loss: input1 [3, 4] and input2 [3, 5] cannot be broadcast together");
    ERR(ag_cosine_embedding_loss(x, y, ag_ones(AG_SHAPE(3, 4), AG_F64), NULL), AG_ERR_SHAPE,
        "cosine_embedding_loss: expected inputs [N, D] with target [N], or [D] with a 0-d target; got input1 [3, 4], "
        "input2 [3, 4], target [3, 4]");
    ERR(ag_cosine_embedding_loss(x, ag_zeros(AG_SHAPE(3, 5), AG_F64), ag_ones(AG_SHAPE(3), AG_F64), NULL), AG_ERR_SHAPE,
        "cosine_embedding_loss: input1 [3, 4] and input2 [3, 5] cannot be broadcast together");
    ERR(ag_triplet_margin_loss(x, y, ag_zeros(AG_SHAPE(4), AG_F64), NULL), AG_ERR_SHAPE,
        "triplet_margin_loss: anchor, positive and negative must have one number of dims (at least 1), got [3, 4], "
        "[3, 4] and [4]");
    o = ag_loss_defaults();
    o.p = 0;
    ERR(ag_triplet_margin_loss(x, y, y, &o), AG_ERR_ARG, "triplet_margin_loss: the norm degree p must be positive");

    ag_clear_error();
    ok(ag_mse_loss(NULL, y, NULL) == NULL && ag_cross_entropy(x, NULL, NULL) == NULL &&
           ag_gaussian_nll_loss(x, y, NULL, NULL) == NULL && ag_harmonic_loss(x, NULL, i, 2, NULL) == NULL &&
           ag_last_status() == AG_OK,
       "NULL inputs give NULL without a new error");
    ag_scope_end();
}

static void test_errors_classes(void) {
    ag_scope_begin();
    ag_tensor *x = ag_zeros(AG_SHAPE(3, 4), AG_F64), *t = ivec(3, (int64_t[]){0, 3, 1});
    ag_loss_opts o = AG_LOSS_DEFAULTS;
    ERR(ag_nll_loss(x, ag_zeros(AG_SHAPE(3), AG_F64), NULL), AG_ERR_DTYPE,
        "nll_loss: target must be int64 class indices, got float64");
    ERR(ag_nll_loss(x, ivec(2, (int64_t[]){0, 1}), NULL), AG_ERR_SHAPE,
        "nll_loss: expected target shape [3] for input [3, 4], got [2]");
    ERR(ag_nll_loss(ag_zeros(AG_SHAPE(2, 4, 5), AG_F64), ag_zeros(AG_SHAPE(2, 4), AG_I64), NULL), AG_ERR_SHAPE,
        "nll_loss: expected target shape [2, 5] for input [2, 4, 5], got [2, 4]");
    ERR(ag_nll_loss(ag_zeros(AG_SHAPE(4), AG_F64), ivec(1, (int64_t[]){0}), NULL), AG_ERR_SHAPE,
        "nll_loss: expected target shape [] for input [4], got [1]");
    ERR(ag_nll_loss(ag_scalar(0, AG_F64), ag_scalar(0, AG_I64), NULL), AG_ERR_SHAPE,
        "nll_loss: input must have a class dim, got a 0-d tensor");
    ERR(ag_nll_loss(x, ivec(3, (int64_t[]){0, 4, 1}), NULL), AG_ERR_INDEX,
        "nll_loss: target 4 is out of bounds for 4 classes (at flat index 1)");
    ERR(ag_nll_loss(x, ivec(3, (int64_t[]){0, 1, -1}), NULL), AG_ERR_INDEX,
        "nll_loss: target -1 is out of bounds for 4 classes (at flat index 2)");
    o.weight = ag_ones(AG_SHAPE(3), AG_F64);
    ERR(ag_nll_loss(x, t, &o), AG_ERR_SHAPE,
        "nll_loss: weight should be defined either for all 4 classes or no classes, got weight of shape [3]");

    o = ag_loss_defaults();
    o.label_smoothing = 1.5;
    ERR(ag_cross_entropy(x, t, &o), AG_ERR_ARG, "cross_entropy: label_smoothing must be between 0.0 and 1.0, got 1.5");
    o = ag_loss_defaults();
    o.ignore_index = 2;
    ERR(ag_cross_entropy(x, ag_zeros(AG_SHAPE(3, 4), AG_F64), &o), AG_ERR_ARG,
        "cross_entropy: ignore_index (2) is not supported for class-probability targets");
    ERR(ag_cross_entropy(x, ag_zeros(AG_SHAPE(3, 2), AG_F64), NULL), AG_ERR_SHAPE,
        "cross_entropy: target size [3, 2] must be the same as input size [3, 4]");
    ERR(ag_cross_entropy(x, ag_zeros(AG_SHAPE(3, 4), AG_F32), NULL), AG_ERR_DTYPE,
        "cross_entropy: target is float32 but the input is float64");
    ERR(ag_cross_entropy(x, ag_zeros(AG_SHAPE(3), AG_BOOL), NULL), AG_ERR_DTYPE,
        "cross_entropy: target must be int64 class indices, got bool");
    ERR(ag_cross_entropy(x, ivec(3, (int64_t[]){0, 1, 5}), NULL), AG_ERR_INDEX,
        "cross_entropy: target 5 is out of bounds for 4 classes (at flat index 2)");
    ERR(ag_cross_entropy(x, ivec(4, (int64_t[]){0, 1, 2, 3}), NULL), AG_ERR_SHAPE,
        "cross_entropy: expected target shape [3] for input [3, 4], got [4]");
    o = ag_loss_defaults();
    o.weight = ag_ones(AG_SHAPE(4), AG_F32);
    ERR(ag_cross_entropy(x, t, &o), AG_ERR_DTYPE, "cross_entropy: weight is float32 but the input is float64");

    o = ag_loss_defaults();
    o.p = 3;
    ERR(ag_multi_margin_loss(x, t, &o), AG_ERR_ARG, "multi_margin_loss: only p == 1 and p == 2 are supported, got 3");
    ERR(ag_multi_margin_loss(x, ivec(3, (int64_t[]){0, 1, 9}), NULL), AG_ERR_INDEX,
        "multi_margin_loss: target 9 is out of bounds for 4 classes");
    ERR(ag_multi_margin_loss(x, ivec(2, (int64_t[]){0, 1}), NULL), AG_ERR_SHAPE,
        "multi_margin_loss: inconsistent target size [2] for input [3, 4] (expected 3)");
    ERR(ag_multi_margin_loss(ag_zeros(AG_SHAPE(2, 3, 4), AG_F64), t, NULL), AG_ERR_SHAPE,
        "multi_margin_loss: expected a non-empty vector or matrix input, got [2, 3, 4]");
    ERR(ag_multi_margin_loss(x, ag_zeros(AG_SHAPE(3), AG_F64), NULL), AG_ERR_DTYPE,
        "multi_margin_loss: target must be int64 class indices, got float64");
    o = ag_loss_defaults();
    o.weight = ag_ones(AG_SHAPE(2, 2), AG_F64);
    ERR(ag_multi_margin_loss(x, t, &o), AG_ERR_SHAPE,
        "multi_margin_loss: weight must be one-dimensional with 4 entries, got [2, 2]");
    ag_scope_end();
}

/* ---- stability ----------------------------------------------------------------------------------------- */
/* Every element of t (and of the gradient of leaf g, if given) is finite. */
static bool all_finite(const ag_tensor *t) {
    if (!t) return false;
    for (int64_t k = 0; k < ag_numel(t); k++)
        if (!isfinite(ag__loss_at(t, k))) return false;
    return true;
}

static void test_stability(ag_dtype dt) {
    const char *dn = ag_dtype_name(dt);
    ag_scope_begin();
    /* cross_entropy: logits of ±1e4, ±1e8 and -inf beside finite ones */
    static const double big[] = {1e4, -1e4, 0, 5, -1e8, 1e8, 1e8, -3, -INFINITY, 2, -INFINITY, 1, 3, -INFINITY, 1e4, -1e8};
    ag_tensor *x = ag_requires_grad_(ag_to_dtype(ag_from_data(big, AG_SHAPE(4, 4), AG_F64), dt), true);
    ag_tensor *t = ivec(4, (int64_t[]){0, 2, 1, 2});
    ag_loss_opts o = AG_LOSS_DEFAULTS;
    o.reduction = AG_REDUCTION_NONE;
    ag_tensor *l = ag_cross_entropy(x, t, &o);
    ok(all_finite(l) && fabs(ag__loss_at(l, 0)) < 1e-30 && fabs(ag__loss_at(l, 1) - log(2.0)) < 1e-6 &&
           fabs(ag__loss_at(l, 3)) < 1e-30,
       "cross_entropy %s: finite per-sample losses at logits ±1e4, ±1e8, -inf (0, log 2, ..., 0)", dn);
    ok(ag_backward(ag_sum(l)) == AG_OK && all_finite(ag_grad(x)), "cross_entropy %s: finite gradient there", dn);
    ag_tensor *row = ag_select(ag_grad(x), 0, 2); /* softmax([-inf, 2, -inf, 1]) - onehot(1) */
    double e1 = exp(1.0) / (exp(1.0) + exp(2.0));
    ok(ag__loss_at(row, 0) == 0 && fabs(ag__loss_at(row, 1) + e1) < 1e-6 && fabs(ag__loss_at(row, 3) - e1) < 1e-6,
       "cross_entropy %s: -inf logits get exactly 0 gradient, the others softmax - onehot", dn);
    ag_zero_grad(x);
    o = ag_loss_defaults();
    o.label_smoothing = 0.1;
    ag_tensor *xs = ag_requires_grad_(ag_to_dtype(ag_from_data(big, AG_SHAPE(2, 4), AG_F64), dt), true);
    l = ag_cross_entropy(xs, ivec(2, (int64_t[]){0, 3}), &o);
    ok(all_finite(l) && ag_backward(l) == AG_OK && all_finite(ag_grad(xs)),
       "cross_entropy %s: label smoothing stays finite at ±1e4, ±1e8", dn);

    /* binary_cross_entropy at predictions exactly 0 and 1 */
    ag_tensor *p = ag_requires_grad_(ag_to_dtype(vec(4, (double[]){0, 1, 0, 1}), dt), true);
    ag_tensor *y = ag_to_dtype(vec(4, (double[]){0, 1, 1, 0}), dt);
    o = ag_loss_defaults();
    o.reduction = AG_REDUCTION_NONE;
    l = ag_binary_cross_entropy(p, y, &o);
    ok(all_finite(l) && ag__loss_at(l, 0) == 0 && ag__loss_at(l, 1) == 0 && ag__loss_at(l, 2) == 100 &&
           ag__loss_at(l, 3) == 100,
       "binary_cross_entropy %s: p in {0, 1} gives 0 or the clamp 100", dn);
    ok(ag_backward(ag_sum(l)) == AG_OK && all_finite(ag_grad(p)) && ag__loss_at(ag_grad(p), 0) == 0 &&
           fabs(ag__loss_at(ag_grad(p), 2) + 1e12) < 1e6,
       "binary_cross_entropy %s: finite gradient there, (p - y) / 1e-12 as PyTorch", dn);

    /* binary_cross_entropy_with_logits at ±100 and ±1e4 */
    ag_tensor *z = ag_requires_grad_(ag_to_dtype(vec(6, (double[]){100, -100, 1e4, -1e4, 1e4, -1e4}), dt), true);
    ag_tensor *zt = ag_to_dtype(vec(6, (double[]){0, 1, 1, 0, 0, 1}), dt);
    l = ag_binary_cross_entropy_with_logits(z, zt, &o);
    ok(all_finite(l) && fabs(ag__loss_at(l, 0) - 100) < 1e-4 && ag__loss_at(l, 2) == 0 && fabs(ag__loss_at(l, 4) - 1e4) < 1e-2,
       "binary_cross_entropy_with_logits %s: finite at ±100, ±1e4 (100, ..., 0, ..., 1e4)", dn);
    ok(ag_backward(ag_sum(l)) == AG_OK && all_finite(ag_grad(z)) && fabs(ag__loss_at(ag_grad(z), 4) - 1) < 1e-6,
       "binary_cross_entropy_with_logits %s: gradient σ(x) - y finite there", dn);

    /* kl_div at y = 0: the term is 0 and both gradients are 0 (PyTorch 1.x's kl_div_target_backward
     * masks the target's; the unmasked sum of the composition's parts gave -x there) */
    ag_tensor *kx = ag_requires_grad_(ag_to_dtype(vec(3, (double[]){-1, -2, -INFINITY}), dt), true);
    ag_tensor *ky = ag_requires_grad_(ag_to_dtype(vec(3, (double[]){0, 0.5, 0}), dt), true);
    o = ag_loss_defaults();
    o.reduction = AG_REDUCTION_SUM;
    l = ag_kl_div(kx, ky, &o);
    const double k1 = 0.5 * (log(0.5) + 2), tol = dt == AG_F64 ? 1e-12 : 1e-6;
    ok(l && fabs(ag_item(l) - k1) < tol, "kl_div %s: y = 0 terms are 0, even beside x = -inf (%.9g)", dn, l ? ag_item(l) : NAN);
    double gy[3] = {NAN, NAN, NAN}, gx[3] = {NAN, NAN, NAN};
    if (l && ag_backward(l) == AG_OK) {
        ag_copy_to(ag_grad(ky), gy, 3, AG_F64);
        ag_copy_to(ag_grad(kx), gx, 3, AG_F64);
    }
    ok(gy[0] == 0 && gy[2] == 0 && fabs(gy[1] - (log(0.5) + 1 + 2)) < tol,
       "kl_div %s: target gradient log y + 1 - x, and 0 at y = 0 (got %g, %g, %g)", dn, gy[0], gy[1], gy[2]);
    ok(gx[0] == 0 && gx[2] == 0 && fabs(gx[1] + 0.5) < tol, "kl_div %s: input gradient -y, 0 at y = 0 (got %g, %g, %g)", dn,
       gx[0], gx[1], gx[2]);
    ag_scope_end();
}

/* ---- harmonic loss ---------------------------------------------------------------------------------- */
/* -log p_y with p_c = d_c^-n / Σ_j d_j^-n, straight from the definition (float64), per sample. */
static double harmonic_direct(const double *x, const double *w, int64_t y, int nc, int d, double n) {
    double num = 0, den = 0;
    for (int c = 0; c < nc; c++) {
        double s = 0;
        for (int k = 0; k < d; k++) s += (x[k] - w[c * d + k]) * (x[k] - w[c * d + k]);
        double pc = pow(sqrt(s), -n);
        den += pc;
        if (c == y) num = pc;
    }
    return -log(num / den);
}

typedef struct harmonic_ctx {
    double n;
    ag_loss_opts o;
} harmonic_ctx;

static ag_tensor *harmonic_fn(ag_tensor *const *in, int n, void *ctx) {
    (void)n;
    const harmonic_ctx *h = ctx;
    return ag_harmonic_loss(in[0], in[1], in[2], h->n, &h->o);
}

/* distance callbacks of the error tests: one that fails silently, one of the wrong dtype, L1 */
static ag_tensor *null_distance(ag_tensor *u, ag_tensor *v, void *ctx) { return (void)u, (void)v, (void)ctx, NULL; }
static ag_tensor *f32_distance(ag_tensor *u, ag_tensor *v, void *ctx) {
    return (void)ctx, ag_to_dtype(ag_sum_dim(ag_sub(u, v), -1, false), AG_F32);
}
static ag_tensor *l1_distance(ag_tensor *u, ag_tensor *v, void *ctx) {
    return (void)ctx, ag_sum_dim(ag_abs(ag_sub(u, v)), -1, false);
}

/* Keras's losses at points worked by hand: the per-sample shape of reduction none, log cosh far
 * out (no overflow), the cosine similarity of aligned, orthogonal and opposite vectors, the hinge
 * of 0/1 labels, the categorical hinge of a confident right answer. */
static void test_keras_by_hand(void) {
    ag_scope_begin();
    ag_loss_opts none = ag_loss_defaults();
    none.reduction = AG_REDUCTION_NONE;
    const double a[] = {1, 2, 2, 0, 3, 0}, b[] = {2, 4, 4, 0, -3, 0}, far[] = {1000, -2000}, zero2[] = {0, 0};
    ag_tensor *x = ag_from_data(a, AG_SHAPE(2, 3), AG_F64), *y = ag_from_data(b, AG_SHAPE(2, 3), AG_F64);
    ag_tensor *cs = ag_cosine_similarity_loss(x, y, &none);
    ok(cs && ag_ndim(cs) == 1 && ag_shape_of(cs).dim[0] == 2, "reduction none: one value per sample [2]");
    close_to(ag_get(cs, (int64_t[]){0}), -1, 1e-15, "cosine similarity loss of aligned vectors: -1");
    close_to(ag_get(cs, (int64_t[]){1}), 1, 1e-15, "of opposite vectors: 1");
    const double e1[] = {1, 0}, e2[] = {0, 1};
    ok(fabs(ag_item(ag_cosine_similarity_loss(ag_from_data(e1, AG_SHAPE(2), AG_F64), ag_from_data(e2, AG_SHAPE(2), AG_F64), NULL))) < 1e-15,
       "of orthogonal vectors: 0");
    ag_tensor *lc = ag_log_cosh_loss(ag_from_data(far, AG_SHAPE(2), AG_F64), ag_from_data(zero2, AG_SHAPE(2), AG_F64), NULL);
    close_to(ag_item(lc), (1000 + 2000 - 2 * log(2.0)) / 2, 1e-12, "log cosh at 1000 and -2000: |d| - log 2, no overflow");
    /* hinge of 0/1 labels: y = (1, 0) → (1, -1); margins 1 - 0.5 = 0.5 and 1 - 2 = -1 → mean(0.5, 0) */
    const double hp[] = {0.5, -2}, hy[] = {1, 0};
    close_to(ag_item(ag_hinge_loss(ag_from_data(hp, AG_SHAPE(2), AG_F64), ag_from_data(hy, AG_SHAPE(2), AG_F64), NULL)),
             0.25, 1e-15, "hinge of 0/1 labels: 0/1 read as -1/1");
    close_to(ag_item(ag_squared_hinge_loss(ag_from_data(hp, AG_SHAPE(2), AG_F64), ag_from_data(hy, AG_SHAPE(2), AG_F64), NULL)),
             0.125, 1e-15, "squared hinge: mean(0.5², 0)");
    /* categorical hinge: pos 3, neg max(1, -1) = 1: max(1 - 3 + 1, 0) = 0; a wrong answer: 3 - 1 + 1 = 3 */
    const double cp[] = {3, 1, -1, 1, 3, -1}, cy[] = {1, 0, 0, 1, 0, 0};
    ag_tensor *ch = ag_categorical_hinge_loss(ag_from_data(cp, AG_SHAPE(2, 3), AG_F64), ag_from_data(cy, AG_SHAPE(2, 3), AG_F64), &none);
    ok(ch && ag_get(ch, (int64_t[]){0}) == 0 && ag_get(ch, (int64_t[]){1}) == 3, "categorical hinge: 0 when right by 2, 3 when wrong");
    /* MAPE: |1 - 1.1| / 1 and |2 - 1| / 2 → 100·mean(0.1, 0.5) = 30 */
    const double mp[] = {1.1, 1}, mt[] = {1, 2};
    close_to(ag_item(ag_mean_absolute_percentage_error(ag_from_data(mp, AG_SHAPE(2), AG_F64), ag_from_data(mt, AG_SHAPE(2), AG_F64), NULL)),
             30, 1e-12, "MAPE of (1.1, 1) against (1, 2): 30%%");
    /* MSLE: (log 2 - log(1 + 1e-7))² at (1, 0) and 0 at (-5, 0): values below 1e-7 are clamped to it */
    const double sp[] = {1, -5}, st[] = {0, 0};
    close_to(ag_item(ag_mean_squared_logarithmic_error(ag_from_data(sp, AG_SHAPE(2), AG_F64), ag_from_data(st, AG_SHAPE(2), AG_F64), NULL)),
             pow(log(2.0) - log1p(1e-7), 2) / 2, 1e-15, "MSLE: targets 0 and the negative prediction clamped to 1e-7");
    ag_tensor *lab = ag_zeros(AG_SHAPE(2, 3), AG_I64);
    ERR(ag_multilabel_margin_loss(x, ag_zeros(AG_SHAPE(2, 3), AG_F64), NULL), AG_ERR_DTYPE,
        "multilabel_margin_loss: target must be int64 class indices, got float64");
    ERR(ag_multilabel_margin_loss(x, ag_zeros(AG_SHAPE(2), AG_I64), NULL), AG_ERR_SHAPE,
        "multilabel_margin_loss: expected a non-empty input [C] or [N, C] and a target of its shape, got input [2, 3] and target [2]");
    ((int64_t *)ag_data(lab))[4] = 3;
    ERR(ag_multilabel_margin_loss(x, lab, NULL), AG_ERR_INDEX,
        "multilabel_margin_loss: target 3 is out of bounds for 3 classes (at flat index 4)");
    ((int64_t *)ag_data(lab))[3] = -1; /* the 3 is now after row 1's end: ignored */
    ok(ag_multilabel_margin_loss(x, lab, NULL) != NULL, "multilabel_margin_loss: classes after a -1 are not read");
    ag_loss_opts m0 = ag_loss_defaults();
    m0.margin = 0;
    ERR(ag_triplet_margin_with_distance_loss(x, y, x, NULL, NULL, &m0), AG_ERR_ARG,
        "triplet_margin_with_distance_loss: margin must be greater than 0, got 0");
    ERR(ag_triplet_margin_with_distance_loss(x, y, ag_zeros(AG_SHAPE(3), AG_F64), NULL, NULL, NULL), AG_ERR_SHAPE,
        "triplet_margin_with_distance_loss: anchor, positive and negative must have one number of dims");
    ERR(ag_triplet_margin_with_distance_loss(x, y, x, null_distance, NULL, NULL), AG_ERR_VALUE,
        "triplet_margin_with_distance_loss: the distance function returned NULL");
    ERR(ag_triplet_margin_with_distance_loss(x, y, x, f32_distance, NULL, NULL), AG_ERR_DTYPE,
        "triplet_margin_with_distance_loss: the distance function returned float32 for float64 inputs");
    /* a distance of one's own: d(a, p) = 0 and d(a, n) = 4 with margin 1 give 0; swapped in, 1 */
    const double ta[] = {0, 0}, tn[] = {4, 0};
    ag_tensor *tva = ag_from_data(ta, AG_SHAPE(1, 2), AG_F64), *tvn = ag_from_data(tn, AG_SHAPE(1, 2), AG_F64);
    ok(ag_item(ag_triplet_margin_with_distance_loss(tva, tva, tvn, l1_distance, NULL, NULL)) == 0,
       "triplet with an L1 distance callback: max(0, 0 - 4 + 1) = 0");
    ok(ag_item(ag_triplet_margin_with_distance_loss(tva, tvn, tva, l1_distance, NULL, NULL)) == 5,
       "and max(0, 4 - 0 + 1) = 5");
    ag_loss_opts bm = ag_loss_defaults();
    bm.reduction = AG_REDUCTION_BATCHMEAN;
    ERR(ag_hinge_loss(x, y, &bm), AG_ERR_ARG, "hinge_loss: reduction batchmean is only valid for kl_div");
    ERR(ag_log_cosh_loss(x, ag_zeros(AG_SHAPE(4), AG_F64), NULL), AG_ERR_SHAPE,
        "log_cosh_loss: input [2, 3] and target [4] cannot be broadcast together");
    ag_scope_end();
}

static void test_harmonic(void) {
    enum { N = 5, C = 3, D = 4 };
    double xv[N * D], wv[C * D];
    ag_manual_seed(7);
    ag_scope_begin();
    ag_tensor *xr = ag_randn(AG_SHAPE(N, D), AG_F64), *wr = ag_randn(AG_SHAPE(C, D), AG_F64);
    ag_copy_to(xr, xv, N * D, AG_F64);
    ag_copy_to(wr, wv, C * D, AG_F64);
    int64_t yv[N] = {0, 2, 1, 1, 0};
    ag_tensor *x = ag_requires_grad_(ag_from_data(xv, AG_SHAPE(N, D), AG_F64), true);
    ag_tensor *w = ag_requires_grad_(ag_from_data(wv, AG_SHAPE(C, D), AG_F64), true);
    ag_tensor *y = ivec(N, yv);
    const double exps[] = {1, 2, 7.5};
    for (int e = 0; e < 3; e++) {
        double n = exps[e], want[N], mean = 0, worst = 0;
        for (int i = 0; i < N; i++) mean += (want[i] = harmonic_direct(xv + i * D, wv, yv[i], C, D, n)) / N;
        ag_loss_opts o = AG_LOSS_DEFAULTS;
        o.reduction = AG_REDUCTION_NONE;
        ag_tensor *per = ag_harmonic_loss(x, w, y, n, &o);
        for (int i = 0; i < N; i++) worst = fmax(worst, fabs(ag__loss_at(per, i) - want[i]) / fabs(want[i]));
        ok(per && ag_ndim(per) == 1 && worst < 1e-12, "harmonic_loss n=%g: per-sample values = -log(d_y^-n / Σ d^-n) (worst %.1e)",
           n, worst);
        close_to(ag_item(ag_harmonic_loss(x, w, y, n, NULL)), mean, 1e-12, "harmonic_loss n=%g: mean", n);
        ag_tensor *x32 = ag_to_dtype(ag_detach(x), AG_F32), *w32 = ag_to_dtype(ag_detach(w), AG_F32);
        close_to(ag_item(ag_harmonic_loss(x32, w32, y, n, NULL)), mean, 1e-5, "harmonic_loss n=%g: float32", n);
        harmonic_ctx h = {n, AG_LOSS_DEFAULTS};
        ag_gradcheck_opts go = {.eps = 1e-6, .atol = 1e-6, .rtol = 1e-5, .quiet = true};
        ag_tensor *in[3] = {x, w, y};
        ag_status st = ag_gradcheck(harmonic_fn, &h, in, 3, &go, NULL);
        ok(st == AG_OK, "harmonic_loss n=%g: gradcheck float64 (x and centres)%s%s", n, st ? ": " : "",
           st ? ag_last_error() : "");
    }
    /* options pass through to cross_entropy: weight, ignore_index, sum */
    harmonic_ctx h = {3, AG_LOSS_DEFAULTS};
    h.o.weight = vec(C, (double[]){0.5, 2, 1});
    h.o.ignore_index = 1;
    double num = 0, den = 0;
    for (int i = 0; i < N; i++) {
        if (yv[i] == 1) continue;
        double wt = yv[i] == 0 ? 0.5 : 1;
        num += wt * harmonic_direct(xv + i * D, wv, yv[i], C, D, 3);
        den += wt;
    }
    close_to(ag_item(harmonic_fn((ag_tensor *[]){x, w, y}, 3, &h)), num / den, 1e-12,
             "harmonic_loss: class weights and ignore_index as cross_entropy");
    h.o.label_smoothing = 0.2;
    ok(ag_gradcheck(harmonic_fn, &h, (ag_tensor *[]){x, w, y}, 3,
                    &(ag_gradcheck_opts){.eps = 1e-6, .atol = 1e-6, .rtol = 1e-5, .quiet = true}, NULL) == AG_OK,
       "harmonic_loss: gradcheck with weight, ignore_index, label smoothing");
    /* the object binds n and the options: the functional's value and gradients bit for bit */
    ag_loss *hl = ag_nn_harmonic_loss(3, &h.o);
    ag_tensor *lo = ag_loss_forward_n(hl, (ag_tensor *[]){x, w, y}, 3), *lf3 = harmonic_fn((ag_tensor *[]){x, w, y}, 3, &h);
    ag_tensor *go[2] = {NULL, NULL}, *gf[2] = {NULL, NULL};
    ag_grad_opts keep = {.retain_graph = true};
    ag_autograd_grad(&lo, 1, (ag_tensor *[]){x, w}, 2, NULL, &keep, go);
    ag_autograd_grad(&lf3, 1, (ag_tensor *[]){x, w}, 2, NULL, &keep, gf);
    ok(lo && go[0] && go[1] && max_diff(lo, lf3) == 0 && max_diff(go[0], gf[0]) == 0 && max_diff(go[1], gf[1]) == 0,
       "nn_harmonic_loss(3, opts): the functional's value and gradients of x and centres, bit for bit");
    ag_loss_free(hl);
    hl = ag_nn_harmonic_loss(0, NULL);
    ERR(ag_loss_forward_n(hl, (ag_tensor *[]){x, w, y}, 3), AG_ERR_ARG,
        "harmonic_loss: the harmonic exponent n must be positive and finite, got 0");
    ag_loss_free(hl);
    /* A large exponent at distances where d^-n is out of double's range: log space stays finite.
     * Scaling x and the centres together leaves every ratio d_i / d_j, so the loss, unchanged;
     * far from all centres the distances are nearly equal and p tends to 1/C. */
    double at1 = 0;
    for (int i = 0; i < N; i++) at1 += harmonic_direct(xv + i * D, wv, yv[i], C, D, 200) / N;
    double ln = ag_item(ag_harmonic_loss(ag_mul_scalar(ag_detach(x), 1e-4), ag_mul_scalar(ag_detach(w), 1e-4), y, 200, NULL));
    double lf = ag_item(ag_harmonic_loss(ag_mul_scalar(ag_detach(x), 1e6), w, y, 200, NULL));
    ok(isfinite(at1) && fabs(ln - at1) <= 1e-9 * at1,
       "harmonic_loss n=200 at distances ~1e-4 (d^-n ~ 1e800): %.12g = the value at scale 1 (%.12g)", ln, at1);
    ok(fabs(lf - log(3.0)) < 1e-2, "harmonic_loss n=200 at distances ~1e6 (d^-n ~ 1e-1200): %.6g ~ log 3", lf);
    ERR(ag_harmonic_loss(x, ag_zeros(AG_SHAPE(C, D + 1), AG_F64), y, 2, NULL), AG_ERR_SHAPE,
        "harmonic_loss: expected x [N, D] and centres [C, D], got [5, 4] and [3, 5]");
    ERR(ag_harmonic_loss(x, w, ivec(2, (int64_t[]){0, 1}), 2, NULL), AG_ERR_SHAPE,
        "harmonic_loss: expected target [5] for x [5, 4], got [2]");
    ERR(ag_harmonic_loss(x, w, ag_zeros(AG_SHAPE(N), AG_F64), 2, NULL), AG_ERR_DTYPE,
        "harmonic_loss: target must be int64 class indices, got float64");
    ERR(ag_harmonic_loss(x, w, y, 0, NULL), AG_ERR_ARG, "harmonic_loss: the harmonic exponent n must be positive and finite, got 0");
    ERR(ag_harmonic_loss(x, w, ivec(N, (int64_t[]){0, 1, 2, 3, 0}), 2, NULL), AG_ERR_INDEX,
        "harmonic_loss: target 3 is out of bounds for 3 classes (at flat index 3)");
    ag_scope_end();
}

/* ---- out of memory: every allocation of a loss step may fail --------------------------------------- */

/* Several losses and their backward in one scope; the first failure's status. */
static ag_status loss_step(ag_tensor *x, ag_tensor *t, ag_tensor *t2, ag_tensor *w, ag_tensor *c) {
    ag_status st = ag_scope_begin();
    if (st) return st;
    ag_loss_opts o = AG_LOSS_DEFAULTS;
    o.weight = w;
    o.label_smoothing = 0.1;
    ag_tensor *l = ag_cross_entropy(x, t, &o);
    l = ag_add(l, ag_binary_cross_entropy_with_logits(x, ag_sigmoid(ag_detach(x)), NULL));
    l = ag_add(l, ag_multi_margin_loss(x, t2, NULL));
    l = ag_add(l, ag_harmonic_loss(x, c, t, 2, &o));
    l = ag_add(l, ag_binary_cross_entropy(ag_sigmoid(x), ag_sigmoid(ag_detach(x)), NULL));
    st = l ? ag_backward(l) : (ag_last_status() ? ag_last_status() : AG_ERR_ARG);
    ag_zero_grad(x);
    ag_zero_grad(c);
    ag_scope_end();
    return st;
}

static void test_alloc_failures(void) {
    ag_set_allocator(failing_alloc, NULL);
    fail_at = -1;
    ag_tensor *x = ag_requires_grad_(ag_randn(AG_SHAPE(4, 5), AG_F64), true);
    ag_tensor *c = ag_requires_grad_(ag_randn(AG_SHAPE(5, 5), AG_F64), true);
    ag_tensor *w = ag_rand(AG_SHAPE(5), AG_F64);
    ag_tensor *t = ivec(4, (int64_t[]){0, 4, -100, 2}), *t2 = ivec(4, (int64_t[]){0, 4, 1, 2});
    long live = ag_live_tensors();
    alloc_calls = 0;
    ok(loss_step(x, t, t2, w, c) == AG_OK, "a step of five losses succeeds with a counting allocator");
    long needed = alloc_calls, wrong = 0, nomem = 0;
    for (long k = 1; k <= needed; k++) {
        fail_at = k;
        alloc_calls = 0;
        long blocks = live_blocks;
        ag_clear_error();
        ag_status st = loss_step(x, t, t2, w, c);
        if (st == AG_ERR_NOMEM) nomem++;
        else if (wrong++ < 5) diag("failing allocation %ld of %ld gave status %d: %s", k, needed, st, ag_last_error());
        if (ag_live_tensors() != live || live_blocks != blocks) {
            if (wrong++ < 5) diag("failing allocation %ld leaked %ld tensors, %ld blocks", k, ag_live_tensors() - live,
                                  live_blocks - blocks);
        }
    }
    ok(wrong == 0 && nomem == needed, "each of the %ld allocations of the step may fail: AG_ERR_NOMEM, nothing leaked (%ld wrong)",
       needed, wrong);
    fail_at = -1;
    ag_release(x);
    ag_release(c);
    ag_release(w);
    ag_release(t);
    ag_release(t2);
    ag_set_allocator(NULL, NULL);
}

static void test_loss_objects(void) {
    ag_scope_begin();
    ag_tensor *w = ag_from_data((double[]){1, 2, 0.5}, AG_SHAPE(3), AG_F64);
    ag_loss_opts o = ag_loss_defaults();
    o.weight = w;
    o.label_smoothing = 0.1;
    ag_loss *ce = ag_nn_loss(ag_cross_entropy, &o);
    ag_scope_end(); /* the loss object keeps its own reference to w */
    ag_scope_begin();
    ag_tensor *x = ag_requires_grad_(ag_randn(AG_SHAPE(4, 3), AG_F64), true);
    ag_tensor *t = ag_from_data((int64_t[]){0, 2, 1, 1}, AG_SHAPE(4), AG_I64);
    ag_tensor *w2 = ag_from_data((double[]){1, 2, 0.5}, AG_SHAPE(3), AG_F64);
    ag_loss_opts o2 = ag_loss_defaults();
    o2.weight = w2;
    o2.label_smoothing = 0.1;
    ag_tensor *a = ag_loss_forward(ce, x, t), *b = ag_cross_entropy(x, t, &o2);
    ok(a && b && ag_item(a) == ag_item(b), "nn_loss(cross_entropy, opts) equals the functional with the same options");
    ag_loss *mse = ag_nn_loss(ag_mse_loss, NULL);
    ag_tensor *m = ag_loss_forward(mse, x, ag_zeros(AG_SHAPE(4, 3), AG_F64));
    ok(m && fabs(ag_item(m) - ag_item(ag_mean(ag_square(x)))) < 1e-15, "nn_loss(mse_loss, NULL) uses the defaults");
    ok(ag_nn_loss(NULL, NULL) == NULL && ag_last_status() == AG_ERR_ARG, "a NULL loss function: %s", ag_last_error());
    ag_loss_free(mse);
    ag_scope_end();
    ag_loss_free(ce);
}

/* What print(loss) shows for each loss object: PyTorch's repr (checked against PyTorch 1.13), Keras's
 * class for its losses, "Loss()" for a function of the caller's. */
static bool prints_as(const ag_loss *loss, const char *want) {
    FILE *f = tmpfile();
    char got[256] = "";
    if (!f) return false;
    ag_status st = ag_loss_print(loss, f);
    rewind(f);
    size_t n = fread(got, 1, sizeof got - 1, f);
    got[n] = 0;
    fclose(f);
    if (st || strcmp(got, want) != 0) diag("printed %s", got);
    return st == AG_OK && strcmp(got, want) == 0;
}

static ag_tensor *my_loss(ag_tensor *x, ag_tensor *y, const ag_loss_opts *o) { return ag_l1_loss(x, y, o); }

static void test_loss_object_print(void) {
    static const struct {
        ag_loss_fn fn;
        const char *repr;
    } two[] = {
        {ag_mse_loss, "MSELoss()"}, {ag_l1_loss, "L1Loss()"}, {ag_smooth_l1_loss, "SmoothL1Loss()"},
        {ag_huber_loss, "HuberLoss()"}, {ag_binary_cross_entropy, "BCELoss()"},
        {ag_binary_cross_entropy_with_logits, "BCEWithLogitsLoss()"}, {ag_nll_loss, "NLLLoss()"},
        {ag_cross_entropy, "CrossEntropyLoss()"}, {ag_kl_div, "KLDivLoss()"}, {ag_poisson_nll_loss, "PoissonNLLLoss()"},
        {ag_hinge_embedding_loss, "HingeEmbeddingLoss()"}, {ag_soft_margin_loss, "SoftMarginLoss()"},
        {ag_multilabel_soft_margin_loss, "MultiLabelSoftMarginLoss()"}, {ag_multi_margin_loss, "MultiMarginLoss()"},
        {ag_multilabel_margin_loss, "MultiLabelMarginLoss()"}, {ag_log_cosh_loss, "LogCosh()"},
        {ag_mean_absolute_percentage_error, "MeanAbsolutePercentageError()"},
        {ag_mean_squared_logarithmic_error, "MeanSquaredLogarithmicError()"}, {ag_hinge_loss, "Hinge()"},
        {ag_squared_hinge_loss, "SquaredHinge()"}, {ag_categorical_hinge_loss, "CategoricalHinge()"},
        {ag_cosine_similarity_loss, "CosineSimilarity()"}, {my_loss, "Loss()"},
    };
    ag_loss_opts o = ag_loss_defaults();
    o.label_smoothing = 0.1; /* options do not show, as in PyTorch */
    int good = 0;
    for (size_t i = 0; i < sizeof two / sizeof two[0]; i++) {
        ag_loss *l = ag_nn_loss(two[i].fn, &o);
        char line[64];
        snprintf(line, sizeof line, "%s\n", two[i].repr);
        good += prints_as(l, line) ? 1 : (diag("want %s", two[i].repr), 0);
        ag_loss_free(l);
    }
    ok(good == (int)(sizeof two / sizeof two[0]), "the %d two-tensor loss objects print as PyTorch's (Keras's) class",
       good);
    ag_loss *t = ag_nn_triplet_margin_with_distance_loss(NULL, NULL, NULL);
    ag_loss *tc = ag_nn_triplet_margin_with_distance_loss(cosine_distance, NULL, NULL);
    o = ag_loss_defaults();
    o.blank = 3, o.zero_infinity = true, o.reduction = AG_REDUCTION_SUM;
    ag_loss *ctc = ag_nn_ctc_loss(&o);
    ok(prints_as(t, "TripletMarginWithDistanceLoss(\n  (distance_function): PairwiseDistance()\n)\n") &&
           prints_as(tc, "TripletMarginWithDistanceLoss()\n") && prints_as(ctc, "CTCLoss()\n"),
       "TripletMarginWithDistanceLoss shows its default distance module and not a function; CTCLoss()");
    o = ag_loss_defaults();
    o.margin = 2, o.eps = 1e-3, o.p = 3, o.swap = true, o.full = true; /* options do not show */
    ag_loss *three[] = {ag_nn_gaussian_nll_loss(&o), ag_nn_margin_ranking_loss(&o), ag_nn_cosine_embedding_loss(&o),
                        ag_nn_triplet_margin_loss(&o), ag_nn_harmonic_loss(2, &o)};
    ok(prints_as(three[0], "GaussianNLLLoss()\n") && prints_as(three[1], "MarginRankingLoss()\n") &&
           prints_as(three[2], "CosineEmbeddingLoss()\n") && prints_as(three[3], "TripletMarginLoss()\n") &&
           prints_as(three[4], "HarmonicLoss()\n"),
       "the three-tensor loss objects print as PyTorch's class (HarmonicLoss())");
    ag_clear_error();
    ok(ag_loss_print(NULL, stdout) == AG_ERR_ARG && ag_loss_print(ctc, NULL) == AG_ERR_ARG, "printing NULL: %s",
       ag_last_error());

    /* forward with the wrong number of tensors */
    ag_scope_begin();
    ag_tensor *x = ag_ones(AG_SHAPE(2, 3), AG_F64);
    ag_clear_error();
    ok(!ag_loss_forward(ctc, x, x) && ag_last_status() == AG_ERR_ARG &&
           strstr(ag_last_error(), "loss_forward: CTCLoss takes 4 tensors: call ag_loss_forward_n"),
       "ag_loss_forward of CTCLoss: %s", ag_last_error());
    ok(!ag_loss_forward_n(t, (ag_tensor *[]){x, x}, 2) && ag_last_status() == AG_ERR_ARG &&
           strstr(ag_last_error(), "loss_forward: TripletMarginWithDistanceLoss takes 3 tensors, got 2"),
       "ag_loss_forward_n with 2 of 3 tensors: %s", ag_last_error());
    static const char *const three_names[] = {"GaussianNLLLoss", "MarginRankingLoss", "CosineEmbeddingLoss",
                                              "TripletMarginLoss", "HarmonicLoss"};
    int counted = 0;
    for (int i = 0; i < 5; i++) {
        char want2[96], want4[96], want_fwd[96];
        snprintf(want2, sizeof want2, "loss_forward: %s takes 3 tensors, got 2", three_names[i]);
        snprintf(want4, sizeof want4, "loss_forward: %s takes 3 tensors, got 4", three_names[i]);
        snprintf(want_fwd, sizeof want_fwd, "loss_forward: %s takes 3 tensors: call ag_loss_forward_n", three_names[i]);
        ag_clear_error();
        bool two = !ag_loss_forward_n(three[i], (ag_tensor *[]){x, x}, 2) && ag_last_status() == AG_ERR_ARG &&
                   strstr(ag_last_error(), want2);
        ag_clear_error();
        bool four = !ag_loss_forward_n(three[i], (ag_tensor *[]){x, x, x, x}, 4) && ag_last_status() == AG_ERR_ARG &&
                    strstr(ag_last_error(), want4);
        ag_clear_error();
        bool fwd = !ag_loss_forward(three[i], x, x) && ag_last_status() == AG_ERR_ARG && strstr(ag_last_error(), want_fwd);
        counted += two && four && fwd ? 1 : (diag("%s: %s", three_names[i], ag_last_error()), 0);
    }
    ok(counted == 5, "the 5 three-tensor loss objects refuse 2 and 4 tensors naming their class (%d right)", counted);
    ok(!ag_loss_forward_n(NULL, (ag_tensor *[]){x, x}, 2) && ag_last_status() == AG_ERR_ARG,
       "a NULL loss object: %s", ag_last_error());
    ag_loss *mse = ag_nn_loss(ag_mse_loss, NULL);
    ag_clear_error();
    ok(!ag_loss_forward_n(mse, (ag_tensor *[]){x, NULL}, 2) && ag_last_status() == AG_OK,
       "a NULL input gives NULL without a new message");
    ok(ag_item(ag_loss_forward_n(tc, (ag_tensor *[]){x, x, ag_neg(x)}, 3)) ==
           ag_item(ag_triplet_margin_with_distance_loss(x, x, ag_neg(x), cosine_distance, NULL, NULL)),
       "TripletMarginWithDistanceLoss calls its callback");
    ag_loss_free(mse);
    ag_scope_end();
    ag_loss_free(t);
    ag_loss_free(tc);
    ag_loss_free(ctc);
    for (int i = 0; i < 5; i++) ag_loss_free(three[i]);
}

/* The fused [N, C] cross-entropy against the composed one (log_softmax, gather, where, ...)
 * that [N, C, 1] inputs take: every reduction, weights, ignore_index, label smoothing,
 * logits of ±1e4 and -inf; and one recorded node per call. */
static void test_fused_cross_entropy(ag_dtype dt) {
    const double tol = dt == AG_F64 ? 1e-12 : 2e-6;
    double worst_l = 0, worst_g = 0;
    int cases = 0;
    for (int big = 0; big < 2; big++) /* 7 rows, and 1000 (the oneDNN route for float32) */
    for (int r = 0; r < 3; r++)
        for (int variant = 0; variant < 4; variant++) {
            ag_scope_begin();
            ag_manual_seed((uint64_t)(10 * r + variant));
            const int64_t N = big ? 1000 : 7;
            ag_tensor *x = ag_mul_scalar(ag_randn(AG_SHAPE(N, 5), dt), variant == 3 ? 1e4 : 2.0);
            if (variant == 3) ((dt == AG_F64) ? (void)(((double *)ag_data(x))[3] = -INFINITY)
                                              : (void)(((float *)ag_data(x))[3] = -INFINITY));
            ag_requires_grad_(x, true);
            ag_tensor *x3 = ag_requires_grad_(ag_unsqueeze(ag_detach(x), 2), true);
            ag_tensor *t = ag_empty(AG_SHAPE(N), AG_I64);
            for (int64_t k = 0; k < N; k++) ((int64_t *)ag_data(t))[k] = (3 * k + r) % 5;
            ag_loss_opts o = ag_loss_defaults();
            o.reduction = (ag_reduction)r;
            if (variant >= 1) o.weight = ag_from_data(dt == AG_F64 ? (void *)(double[]){0.5, 1, 2, 0.25, 1.5}
                                                                   : (void *)(float[]){0.5f, 1, 2, 0.25f, 1.5f},
                                                      AG_SHAPE(5), dt);
            if (variant >= 2) o.ignore_index = 2;
            if (variant == 2) o.label_smoothing = 0.2;
            ag_tensor *l = ag_cross_entropy(x, t, &o), *l3 = ag_cross_entropy(x3, ag_unsqueeze(t, 1), &o);
            if (r == 2) l3 = ag_squeeze(l3, 1);
            ok(l && strcmp(ag_grad_fn_name(l), "CrossEntropyLossBackward0") == 0, "fused node for reduction %d variant %d", r, variant);
            ag_backward(ag_sum(l));
            ag_backward(ag_sum(l3));
            double dl = ag_item(ag_max(ag_abs(ag_sub(l, l3))));
            double dg = ag_item(ag_max(ag_abs(ag_sub(ag_grad(x), ag_squeeze(ag_grad(x3), 2)))));
            double scale = 1 + ag_item(ag_max(ag_abs(l3)));
            if (dl / scale > worst_l) worst_l = dl / scale;
            if (dg > worst_g) worst_g = dg;
            cases++;
            ag_scope_end();
        }
    ok(worst_l <= tol && worst_g <= tol, "%s: fused and composed cross-entropy agree over %d cases (loss %.2g, grad %.2g)",
       ag_dtype_name(dt), cases, worst_l, worst_g);
}

/* k·a[i] == b[i] for every element, or both NaN (float32 products by 2 and 4: exact) */
static bool scaled_same(const ag_tensor *a, double k, const ag_tensor *b) {
    if (!a || !b || ag_numel(a) != ag_numel(b)) return false;
    for (int64_t i = 0; i < ag_numel(a); i++) {
        const double u = k * ag__loss_at(a, i), v = ag__loss_at(b, i);
        if (u != v && !(isnan(u) && isnan(v))) return false;
    }
    return true;
}

/* The fused kernel's dl/dx for one row of C float32 logits with a finite max and no NaN, written out from its
 * contract (ops/loss.c's ce_wide_rows_f32, no smoothing): e = vexpf_fma(x - m), s = quads_then16_ref(e), rr = (float)(1/s),
 * g = (e·rr)·a in float32 where a is a float32, else (float)(a·(double)(e·rr)), then g[y] = (float)(g[y] - a).
 * Returns lse = m + log s. */
static double fused_row_ref(const float *xr, int64_t C, int64_t y, double a, float *g) {
    float m = -INFINITY;
    for (int64_t k = 0; k < C; k++) m = xr[k] > m ? xr[k] : m;
    for (int64_t k = 0; k < C; k++) g[k] = vexpf_fma(xr[k] - m);
    const double s = quads_then16_ref(g, C);
    const float rr = (float)(1 / s), af = (float)a;
    for (int64_t k = 0; k < C; k++) g[k] = (double)af == a ? g[k] * rr * af : (float)(a * (double)(g[k] * rr));
    g[y] = (float)(g[y] - a);
    return (double)m + log(s);
}

/* The fused float32 cross-entropy of rows of 256 classes and more (ops/loss.c's ce_wide_rows_f32: with AVX-512 its
 * exp and sum in one loop, ce_exp_sum_avx512, the row's sum with float32 quads first, CE_SUM_QUADS, the float32
 * gradient products where a_ = coef·w_y is a float32, CE_GRAD_F32_PRODUCT, made in the next row's exp loop,
 * CE_GRAD_IN_NEXT_ROW): C = 256, 257, 264, 271, 1000 and 3001 (n mod 64 = 0, 1, 8, 15, 40, 57: blocks of 16 after the
 * quads, the masked tail), 'sum' (a_ = 1), 'mean' over 32 rows (1/32), 'sum' with weights 0.5, 0.6 and 0.7 (a_ a float32
 * too), 'mean' over 37 rows (1/37, no float32: the float64 products), rows with a NaN, a +inf, only -inf and one -inf,
 * each before a finite row (the next row's max and NaN flag).  The saved dl/dx of every row is the per-row path's bit
 * for bit (reduction 'none', p saved: ops/softmax.c's fast_row_lse_f32_wide, whose Σ takes the same order since
 * session 23, or the reference kernels for the rows with a NaN or an infinite max; dl_n the reduction's scale; for
 * 1/37, off the target, (float)(a_·(double)g) of the per-row gradient for dl = 1), and that of the finite rows
 * fused_row_ref's (the kernel's documented order).  The gradient of the finite rows within 2^-24·(p·(m - x + 10)·a_ + |g|) of
 * float64's (x - m rounded in float32, vexpf_fma within 0.87 ulp, the quads' Σ within 2^-23·Σ, 1/Σ and the products
 * rounded).  And the loss of finite logits ('sum', 'mean', weights) fused_row_ref's lse summed in row order bit for
 * bit, and within 2^-24·(scale·Σ_n w_y·(4 + Σ_k p_k·(m - x_k)) + |l|) of float64's. */
static void test_wide_rows_fused(void) {
    static const int64_t classes[] = {256, 257, 264, 271, 1000, 3001};
    int bad = 0, cases = 0, lbad = 0, lcases = 0;
    double worst = 0, lworst = 0;
    for (int c = 0; c < 6; c++)
        for (int variant = 0; variant < 4; variant++) {
            ag_scope_begin();
            const int64_t N = variant == 2 ? 37 : 32, C = classes[c];
            ag_manual_seed((uint64_t)(300 + 10 * c + variant));
            ag_tensor *x0 = ag_mul_scalar(ag_randn(AG_SHAPE(N, C), AG_F32), 3.0);
            float *xv = ag_data(x0);
            ag_tensor *t = ag_empty(AG_SHAPE(N), AG_I64);
            for (int64_t n = 0; n < N; n++) ((int64_t *)ag_data(t))[n] = (n * 7919 + c) % C;
            ag_tensor *w = ag_empty(AG_SHAPE(C), AG_F32);
            for (int64_t k = 0; k < C; k++) ((float *)ag_data(w))[k] = 0.5f + 0.1f * (float)(k % 3);
            ag_loss_opts o = ag_loss_defaults();
            o.reduction = variant == 1 || variant == 2 ? AG_REDUCTION_MEAN : AG_REDUCTION_SUM;
            if (variant == 3) o.weight = w;
            const double scale = o.reduction == AG_REDUCTION_MEAN ? 1.0 / (double)N : 1.0;
            const int64_t *tv = ag_data(t);
            /* the loss of these finite logits, before the non-finite rows go in */
            float *gref = malloc(sizeof(float) * (size_t)C);
            double lsum = 0, lexact = 0, lbound = 0;
            for (int64_t n = 0; n < N && gref; n++) {
                const float *xr = xv + n * C;
                const double wy = variant == 3 ? (double)((float *)ag_data(w))[tv[n]] : 1.0;
                lsum += wy * (fused_row_ref(xr, C, tv[n], scale * wy, gref) - (double)xr[tv[n]]);
                double m = -INFINITY, s = 0, spread = 0;
                for (int64_t k = 0; k < C; k++) m = fmax(m, (double)xr[k]);
                for (int64_t k = 0; k < C; k++) s += exp((double)xr[k] - m);
                for (int64_t k = 0; k < C; k++) spread += exp((double)xr[k] - m) / s * (m - (double)xr[k]);
                lexact += wy * (m + log(s) - (double)xr[tv[n]]);
                lbound += wy * (4 + spread);
            }
            {
                const float want = (float)(lsum * scale);
                ag_tensor *lf = ag_cross_entropy(ag_requires_grad_(ag_clone(x0), true), t, &o);
                const float got = lf ? *(const float *)ag_data(lf) : NAN;
                lbad += memcmp(&got, &want, sizeof got) != 0;
                lworst = fmax(lworst, fabs((double)got - lexact * scale) / (0x1p-24 * (scale * lbound + fabs(lexact * scale))));
                lcases++;
            }
            xv[3 * C + C / 2] = NAN, xv[5 * C + C - 1] = INFINITY, xv[9 * C + 1] = -INFINITY;
            for (int64_t k = 0; k < C; k++) xv[7 * C + k] = -INFINITY;
            ag_tensor *x1 = ag_requires_grad_(ag_clone(x0), true), *x2 = ag_requires_grad_(ag_clone(x0), true);
            ag_tensor *l = ag_cross_entropy(x1, t, &o);
            ag_backward(l);
            ag_loss_opts none = o;
            none.reduction = AG_REDUCTION_NONE;
            /* 1/37 is no float32 dl_n: dl_n = 1, then (float)(a_·(double)g) for k != y, the float64 products' bits */
            ag_backward_ex(ag_cross_entropy(x2, t, &none), ag_full(AG_SHAPE(N), variant == 2 ? 1 : scale, AG_F32), false);
            const float *g = l && ag_grad(x1) ? ag_data(ag_grad(x1)) : NULL;
            const float *g2 = ag_grad(x2) ? ag_data(ag_grad(x2)) : NULL;
            int rowbad = !g || !g2 || !gref;
            for (int64_t n = 0; n < N && !rowbad; n++) {
                const float *g1r = g + n * C, *g2r = g2 + n * C;
                const int64_t y = tv[n];
                const double wy = variant == 3 ? (double)((float *)ag_data(w))[y] : 1.0;
                for (int64_t k = 0; k < C && !rowbad; k++) { /* every row: the per-row path's bits */
                    const float want = variant == 2 ? (float)(scale * (double)g2r[k]) : g2r[k];
                    if (variant == 2 && k == y) continue;
                    rowbad = memcmp(&g1r[k], &want, sizeof want) != 0 && !(isnan(g1r[k]) && isnan(want));
                }
                if (!rowbad && n != 3 && n != 5 && n != 7) { /* finite rows: the documented order's bits */
                    fused_row_ref(xv + n * C, C, y, scale * wy, gref);
                    rowbad = memcmp(g1r, gref, sizeof(float) * (size_t)C) != 0;
                }
            }
            bad += rowbad;
            cases++;
            for (int64_t n = 0; n < N && g; n++) {
                const float *xr = xv + n * C;
                const int64_t y = tv[n];
                const double wy = variant == 3 ? (double)((float *)ag_data(w))[y] : 1.0, a = scale * wy;
                double m = -INFINITY, s = 0;
                for (int64_t k = 0; k < C; k++) m = fmax(m, (double)xr[k]);
                for (int64_t k = 0; k < C; k++) s += exp((double)xr[k] - m);
                if (n == 3 || n == 5 || n == 7) continue; /* NaN, +inf, only -inf: the bits check above */
                for (int64_t k = 0; k < C; k++) {
                    const double p = exp((double)xr[k] - m) / s, want = a * (p - (k == y));
                    const double bound = 0x1p-24 * (p * (m - (double)xr[k] + 10) * a + fabs(want)) + 0x1p-149;
                    worst = fmax(worst, fabs((double)g[n * C + k] - want) / bound);
                }
            }
            free(gref);
            ag_scope_end();
        }
    ok(bad == 0, "cross_entropy float32 rows of 256-3001 classes (%s): the saved dl/dx is the per-row path's bit for "
       "bit, and the documented order's in the finite rows (%d of %d cases differ)",
       AG_VEC_512() ? "AVX-512: the fused exp and sum" : "no AVX-512 here: the C loop", bad, cases);
    ok(worst <= 1, "cross_entropy float32 wide rows: the gradient of the finite rows within %.3g of its bound from "
       "float64's", worst);
    ok(lbad == 0 && lworst <= 1, "cross_entropy float32 wide rows: the loss is the documented order's bit for bit (%d of "
       "%d cases differ) and within %.3g of its bound from float64's", lbad, lcases, lworst);
}

/* A scalar cross-entropy saves dl/dx for dl = 1 (ops/loss.c): backward() hands it over as the
 * gradient, retain_graph copies it (a second backward adds it again: exactly twice), dl = 4 scales
 * it (exactly), and all of it the same bits as the per-row path (reduction 'none', p saved) summed;
 * float32 rows of 10, 100 and 300 classes (the three row kernels), with weights, ignore_index and
 * label smoothing, sum and mean, rows with a NaN, a +inf, a -inf and only -inf among them (rows of 300:
 * the fused wide-row kernel, whose Σ with float32 quads first, core/sum_pairs.h's AG_SUM16_QUADS_THEN16,
 * is the per-row path's since session 23). */
static void test_saved_gradient(void) {
    static const int64_t classes[] = {10, 100, 300};
    int bad = 0, cases = 0, inf_bad = 0, inf_cases = 0;
    int64_t inf_ignored = 0; /* ignored rows' elements checked (C = 100 has no target 3 among its 67 rows) */
    for (int c = 0; c < 3; c++)
        for (int variant = 0; variant < 3; variant++)
            for (int mean = 0; mean < 2; mean++) {
                ag_scope_begin();
                ag_manual_seed((uint64_t)(100 + 10 * c + variant));
                const int64_t N = 67, C = classes[c];
                ag_tensor *x0 = ag_mul_scalar(ag_randn(AG_SHAPE(N, C), AG_F32), 3.0);
                float *xv = ag_data(x0); /* rows with a NaN, a +inf, a -inf, only -inf */
                xv[5 * C + 2] = NAN, xv[9 * C + 1] = INFINITY, xv[11 * C] = -INFINITY;
                for (int64_t k = 0; k < C; k++) xv[13 * C + k] = -INFINITY;
                ag_tensor *t = ag_empty(AG_SHAPE(N), AG_I64);
                for (int64_t k = 0; k < N; k++) ((int64_t *)ag_data(t))[k] = (7 * k + c) % C;
                ag_tensor *w = ag_empty(AG_SHAPE(C), AG_F32);
                for (int64_t k = 0; k < C; k++) ((float *)ag_data(w))[k] = 0.5f + 0.25f * (float)(k % 4);
                ag_loss_opts o = ag_loss_defaults();
                o.reduction = mean ? AG_REDUCTION_MEAN : AG_REDUCTION_SUM;
                if (variant >= 1) o.weight = w, o.ignore_index = 3;
                if (variant == 2) o.label_smoothing = 0.1;
                ag_tensor *x[4];
                for (int i = 0; i < 4; i++) x[i] = ag_requires_grad_(ag_clone(x0), true);
                ag_backward(ag_cross_entropy(x[0], t, &o)); /* handed over */
                ag_tensor *l = ag_cross_entropy(x[1], t, &o);
                ag_backward_ex(l, NULL, true); /* copied, twice */
                ag_backward_ex(l, NULL, true);
                ag_backward_ex(ag_cross_entropy(x[2], t, &o), ag_scalar(4, AG_F32), false);
                ok(ag_grad(x[0]) && scaled_same(ag_grad(x[0]), 2, ag_grad(x[1])) &&
                       scaled_same(ag_grad(x[0]), 4, ag_grad(x[2])),
                   "cross_entropy [%lld, %lld] variant %d %s: backward() = retain_graph's / 2 = dl 4's / 4, bit for bit",
                   (long long)N, (long long)C, variant, mean ? "mean" : "sum");
                if (variant >= 1) { /* an ignored row's gradient is 0 for an infinite or NaN dl too, as PyTorch's */
                    for (int k = 0; k < 2; k++) {
                        ag_tensor *xi = ag_requires_grad_(ag_clone(x0), true);
                        ag_backward_ex(ag_cross_entropy(xi, t, &o), ag_scalar(k ? NAN : INFINITY, AG_F32), false);
                        const float *g = ag_grad(xi) ? ag_data(ag_grad(xi)) : NULL;
                        int64_t ignored = 0, nonzero = 0;
                        for (int64_t n = 0; n < N && g; n++)
                            if (((int64_t *)ag_data(t))[n] == 3)
                                for (int64_t j = 0; j < C; j++) ignored++, nonzero += g[n * C + j] != 0;
                        inf_bad += !g || nonzero != 0;
                        inf_ignored += ignored;
                        inf_cases++;
                    }
                }
                if (!mean) {
                    ag_loss_opts none = o;
                    none.reduction = AG_REDUCTION_NONE;
                    ag_backward(ag_sum(ag_cross_entropy(x[3], t, &none)));
                    bad += !scaled_same(ag_grad(x[0]), 1, ag_grad(x[3]));
                    cases++;
                }
                ag_scope_end();
            }
    ok(bad == 0, "cross_entropy: the saved dl/dx of 'sum' is the per-row path's gradient bit for bit (%d of %d cases "
       "differ)", bad, cases);
    ok(inf_bad == 0 && inf_cases == 24 && inf_ignored > 0,
       "cross_entropy: ignored rows' gradients are 0 for dl = inf and NaN (%d of %d cases not; %lld elements checked)",
       inf_bad, inf_cases, (long long)inf_ignored);
}

/* Cross-entropy's rows split over threads (ops/loss.c's ce_for_rows: at least CE_CHUNK elements
 * and at least N / (16 threads) rows a chunk, the last chunk part-full; below 2^17 elements, from
 * CE_PAR_MIN_ELEMS, one chunk a thread) give the one-thread bits: the loss ('sum' and 'none') and dx
 * on 2 and 3 threads against 1, float32 (the fused wide-row kernel) and float64, [2051, 1000] (chunks
 * of 64 rows on 2 threads, 42 on 3), [1000, 1000] (chunks of 32 rows), [64, 512] (bench_steps'
 * mlp_512_b64: 32 rows a chunk on 2 threads, 22 on 3) and [65, 512] (33 and 22); the caches freed
 * before each run, so that no row left unwritten can hold the earlier run's bits. */
static bool same_bits(const ag_tensor *a, const ag_tensor *b) {
    return a && b && ag_numel(a) == ag_numel(b) &&
           memcmp(ag_data((ag_tensor *)a), ag_data((ag_tensor *)b), (size_t)ag_numel(a) * ag__esize(a->dtype)) == 0;
}

static void test_row_chunks(void) {
    static const int64_t rows[][2] = {{2051, 1000}, {1000, 1000}, {64, 512}, {65, 512}};
    const int saved = ag_get_num_threads();
    int bad = 0, cases = 0;
    for (int d = 0; d < 2; d++)
        for (int s = 0; s < 4; s++)
            for (int none = 0; none < 2; none++) {
                ag_scope_begin();
                const ag_dtype dt = d ? AG_F64 : AG_F32;
                const int64_t N = rows[s][0], C = rows[s][1];
                ag_manual_seed((uint64_t)(300 + 10 * d + s));
                ag_tensor *x0 = ag_mul_scalar(ag_randn(AG_SHAPE(N, C), dt), 3.0);
                ag_tensor *t = ag_empty(AG_SHAPE(N), AG_I64);
                for (int64_t k = 0; k < N; k++) ((int64_t *)ag_data(t))[k] = (7 * k + 1) % C;
                ag_loss_opts o = ag_loss_defaults();
                o.reduction = none ? AG_REDUCTION_NONE : AG_REDUCTION_SUM;
                ag_tensor *l[3], *g[3];
                for (int nt = 1; nt <= 3; nt++) {
                    ag_free_caches(); /* no block still holding an earlier run's rows */
                    ag_set_num_threads(nt);
                    ag_tensor *x = ag_requires_grad_(ag_clone(x0), true);
                    l[nt - 1] = ag_cross_entropy(x, t, &o);
                    ag_backward(none ? ag_sum(l[nt - 1]) : l[nt - 1]);
                    g[nt - 1] = ag_grad(x);
                }
                ag_set_num_threads(saved);
                for (int k = 1; k < 3; k++) bad += !same_bits(l[0], l[k]) || !same_bits(g[0], g[k]), cases++;
                ag_scope_end();
            }
    ok(bad == 0, "cross_entropy over threads: loss and dx on 2 and 3 threads are 1 thread's bits (%d of %d cases differ)",
       bad, cases);
}

/* kl_div's adjoint loads dy under t's mask in its AVX-512 clone, so its unit-stride runs of 2 MiB and more go in
 * ops/adjoint_run.h's blocks that prefetch dy (ops/loss.c, PAIR_BWD_BLOCKS): on one thread (one run) of 2^19 + 37
 * floats or 2^18 + 37 doubles (reduction 'none', dy whole), dx and dt bit for bit those of the same values in pieces
 * of 4096 (runs that keep one loop), with t 0 in places (where dy is NaN or -inf in some: the select's 0) and x NaN
 * and infinite in places. */
static void test_kl_div_long_runs(void) {
    static const double xedges[] = {NAN, INFINITY, -INFINITY, 0, -0.0};
    const int threads = ag_get_num_threads();
    ag_set_num_threads(1);
    for (int d = 0; d < 2; d++) {
        const ag_dtype dt = d ? AG_F64 : AG_F32;
        const size_t es = d ? sizeof(double) : sizeof(float);
        const int64_t n = ((int64_t)1 << (d ? 18 : 19)) + 37, piece = 4096;
        char *xb = malloc((size_t)n * es), *tb = malloc((size_t)n * es), *db = malloc((size_t)n * es);
        char *wx = malloc((size_t)n * es), *wt = malloc((size_t)n * es);
        uint64_t r = 88172645463325252u;
        for (int64_t i = 0; xb && tb && db && i < n; i++) {
            r ^= r << 13, r ^= r >> 7, r ^= r << 17;
            const double xv = i % 13 == 0 ? xedges[(i / 13) % 5] : (double)(r % 80001) / 10000 - 4;
            const double tv = i % 3 == 0 ? 0 : (double)((r >> 20) % 10000 + 1) / 10001;
            const double dv = i % 101 == 6 ? NAN : i % 103 == 9 ? -INFINITY : (double)(r >> 40) / (1 << 24) - 0.5;
            if (d) ((double *)xb)[i] = xv, ((double *)tb)[i] = tv, ((double *)db)[i] = dv;
            else ((float *)xb)[i] = (float)xv, ((float *)tb)[i] = (float)tv, ((float *)db)[i] = (float)dv;
        }
        ag_loss_opts o = ag_loss_defaults();
        o.reduction = AG_REDUCTION_NONE;
        ag_scope_begin();
        bool run = xb && tb && db && wx && wt;
        for (int64_t i0 = 0; i0 < n && run; i0 += piece) {
            const int64_t m = n - i0 < piece ? n - i0 : piece;
            ag_tensor *x = ag_requires_grad_(ag_from_data(xb + i0 * es, AG_SHAPE(m), dt), true);
            ag_tensor *t = ag_requires_grad_(ag_from_data(tb + i0 * es, AG_SHAPE(m), dt), true);
            run = ag_backward_ex(ag_kl_div(x, t, &o), ag_from_data(db + i0 * es, AG_SHAPE(m), dt), false) == AG_OK;
            if (run) memcpy(wx + i0 * es, ag_data(ag_grad(x)), (size_t)m * es), memcpy(wt + i0 * es, ag_data(ag_grad(t)), (size_t)m * es);
        }
        ag_tensor *x = run ? ag_requires_grad_(ag_from_data(xb, AG_SHAPE(n), dt), true) : NULL;
        ag_tensor *t = run ? ag_requires_grad_(ag_from_data(tb, AG_SHAPE(n), dt), true) : NULL;
        run = run && ag_backward_ex(ag_kl_div(x, t, &o), ag_from_data(db, AG_SHAPE(n), dt), false) == AG_OK;
        int64_t bad = -1;
        for (int64_t i = 0; run && i < n && bad < 0; i++)
            if (memcmp((char *)ag_data(ag_grad(x)) + i * es, wx + i * es, es) ||
                memcmp((char *)ag_data(ag_grad(t)) + i * es, wt + i * es, es))
                bad = i;
        ok(run && bad < 0, "kl_div's adjoints over one run of %lld %s: the bits of pieces of 4096 (first differing at %lld)",
           (long long)n, d ? "doubles" : "floats", (long long)bad);
        ag_scope_end();
        free(xb), free(tb), free(db), free(wx), free(wt);
    }
    ag_set_num_threads(threads);
}

int main(void) {
    test_loss_objects();
    test_loss_object_print();
    test_alloc_failures();
    test_defaults();
    test_fixtures();
    test_errors_elementwise();
    test_errors_classes();
    test_pos_weight_paths();
    test_stability(AG_F64);
    test_stability(AG_F32);
    test_harmonic();
    test_keras_by_hand();
    test_fused_cross_entropy(AG_F64);
    test_fused_cross_entropy(AG_F32);
    test_saved_gradient();
    test_row_chunks();
    test_wide_rows_fused();
    test_kl_div_long_runs();
    ok(ag_live_tensors() == 0, "no tensor leaked (%ld live)", ag_live_tensors());
    return tap_done();
}

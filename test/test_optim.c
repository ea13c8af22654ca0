/*
 * Optimizers: every algorithm and its main options replayed against PyTorch
 * runs (test/fixtures/optim_trajectories.txt, written by
 * scripts/gen_optim_fixtures.py) in float64 and float32; the driver's
 * contract (groups, skipping, zero_grad, named hyperparameters, errors, no
 * allocation after the first step).
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "agrad/agrad.h"
#include "optim/internal.h"
#include "tap.h"
#include "failing_alloc.h"
#include "state_damage.h"

#ifndef FIXTURES
#define FIXTURES "test/fixtures"
#endif

/* ---- counting allocator: steps after the first must not allocate -------------------- */

/* ---- the algorithms by name ------------------------------------------------------------ */
#define ALGO_FNS(N, T)                                                                                         \
    static ag_optimizer *N##_make(ag_tensor *const *p, int n, const void *o) { return ag_##N##_new(p, n, o); } \
    static void N##_defs(void *o) { *(T *)o = ag_##N##_defaults(); }
ALGO_FNS(sgd, ag_sgd_options)
ALGO_FNS(adam, ag_adam_options)
ALGO_FNS(adamw, ag_adamw_options)
ALGO_FNS(adagrad, ag_adagrad_options)
ALGO_FNS(rmsprop, ag_rmsprop_options)
ALGO_FNS(adamax, ag_adamax_options)
ALGO_FNS(nadam, ag_nadam_options)
ALGO_FNS(radam, ag_radam_options)
ALGO_FNS(adadelta, ag_adadelta_options)
ALGO_FNS(rprop, ag_rprop_options)
ALGO_FNS(asgd, ag_asgd_options)
ALGO_FNS(lbfgs, ag_lbfgs_options)
ALGO_FNS(muon, ag_muon_options)
ALGO_FNS(adafactor, ag_adafactor_options)
ALGO_FNS(sparse_adam, ag_sparse_adam_options)

typedef struct algo_entry {
    const char *name;
    const ag__optim_algo *algo;
    ag_optimizer *(*make)(ag_tensor *const *p, int n, const void *o);
    void (*defaults)(void *o);
} algo_entry;
#define ALGO(N) {#N, &ag__##N##_algo, N##_make, N##_defs}
static const algo_entry algos[] = {ALGO(sgd), ALGO(adam), ALGO(adamw), ALGO(adagrad), ALGO(rmsprop),
                                   ALGO(adamax), ALGO(nadam), ALGO(radam), ALGO(adadelta), ALGO(rprop),
                                   ALGO(asgd), ALGO(lbfgs), ALGO(muon), ALGO(adafactor), ALGO(sparse_adam)};

static const algo_entry *find_algo(const char *name) {
    for (size_t i = 0; i < sizeof algos / sizeof *algos; i++)
        if (strcmp(algos[i].name, name) == 0) return &algos[i];
    return NULL;
}

/* Sets "key=value" on options of algorithm a; false if the key is unknown. */
static bool set_option(const algo_entry *a, void *opts, const char *kv) {
    char key[64];
    const char *eq = strchr(kv, '=');
    if (!eq || eq - kv >= (long)sizeof key) return false;
    memcpy(key, kv, (size_t)(eq - kv));
    key[eq - kv] = 0;
    const ag__optim_field *f = ag__optim_find_field(a->algo, key);
    return f && ag__optim_field_set(a->algo->name, opts, f, strtod(eq + 1, NULL)) == AG_OK;
}

/* ---- the fixed problem ------------------------------------------------------------------- */
typedef struct problem {
    double W[6], b[2], X[12], Y[8];
} problem;

typedef struct model {
    ag_tensor *W, *b, *X, *Y;
} model;

static model model_new(const problem *pr, ag_dtype dt) {
    ag_tensor *W = ag_to_dtype(ag_from_data(pr->W, AG_SHAPE(3, 2), AG_F64), dt);
    ag_tensor *b = ag_to_dtype(ag_from_data(pr->b, AG_SHAPE(2), AG_F64), dt);
    ag_tensor *X = ag_to_dtype(ag_from_data(pr->X, AG_SHAPE(4, 3), AG_F64), dt);
    ag_tensor *Y = ag_to_dtype(ag_from_data(pr->Y, AG_SHAPE(4, 2), AG_F64), dt);
    return (model){ag_requires_grad_(W, true), ag_requires_grad_(b, true), X, Y};
}

/* L = mean((tanh(X·W + b) − Y)²) + 0.1·ΣW² + 0.1·Σsin(3b) */
static ag_tensor *model_loss(const model *m) {
    ag_tensor *fit = ag_mean(ag_square(ag_sub(ag_tanh(ag_add(ag_matmul(m->X, m->W), m->b)), m->Y)));
    ag_tensor *reg = ag_mul_scalar(ag_sum(ag_square(m->W)), 0.1);
    ag_tensor *per = ag_mul_scalar(ag_sum(ag_sin(ag_mul_scalar(m->b, 3))), 0.1);
    return ag_add(ag_add(fit, reg), per);
}

/* Closure: zero the gradients, loss, backward. */
static ag_status model_closure(void *ctx, double *loss) {
    model *m = ctx;
    ag_zero_grad(m->W);
    ag_zero_grad(m->b);
    ag_status st = ag_scope_begin();
    if (st) return st;
    ag_tensor *l = model_loss(m);
    st = l ? ag_backward(l) : ag_last_status();
    if (st == AG_OK) *loss = ag_item(l);
    ag_scope_end();
    return st;
}

/* One training step the usual way (or through the closure for LBFGS). */
static ag_status model_step(ag_optimizer *opt, model *m) {
    double loss;
    if (ag_optimizer_kind(opt) == AG_OPTIM_LBFGS) return ag_optimizer_step_closure(opt, model_closure, m, &loss);
    ag_optimizer_zero_grad(opt);
    ag_status st = model_closure(m, &loss);
    return st ? st : ag_optimizer_step(opt);
}

static void model_values(const model *m, double *out) {
    ag_copy_to(m->W, out, 6, AG_F64);
    ag_copy_to(m->b, out + 6, 2, AG_F64);
}

/* ---- fixture replay ------------------------------------------------------------------------ */
#define MAX_CASES 64
#define MAX_STEPS 64
typedef struct fixture_case {
    char name[64], algo[16];
    int steps, ngroups;
    char params[2][8];
    char opts[2][512];
    double traj[MAX_STEPS][8];
} fixture_case;

static problem prob;
static fixture_case cases[MAX_CASES];
static int ncases;

static void read_values(char *s, double *out, int n) {
    for (int i = 0; i < n; i++) out[i] = strtod(s, &s);
}

static bool load_fixtures(void) {
    FILE *f = fopen(FIXTURES "/optim_trajectories.txt", "r");
    if (!f) return false;
    static char line[8192];
    fixture_case *c = NULL;
    int group = 0, step = 0;
    while (fgets(line, sizeof line, f)) {
        char name[16];
        int r, cols, used = 0;
        if (line[0] == '#') continue;
        if (sscanf(line, "problem %15s %d %d %n", name, &r, &cols, &used) == 3) {
            double *dst = !strcmp(name, "W") ? prob.W : !strcmp(name, "b") ? prob.b : !strcmp(name, "X") ? prob.X : prob.Y;
            read_values(line + used, dst, r * cols);
        } else if (strncmp(line, "case ", 5) == 0 && ncases < MAX_CASES) {
            c = &cases[ncases++];
            sscanf(line, "case %63s %15s %d %d", c->name, c->algo, &c->steps, &c->ngroups);
            group = step = 0;
        } else if (c && strncmp(line, "group ", 6) == 0 && group < 2) {
            sscanf(line, "group %7s %n", c->params[group], &used);
            snprintf(c->opts[group], sizeof c->opts[group], "%s", line + used);
            group++;
        } else if (c && strncmp(line, "end", 3) == 0) {
            c = NULL;
        } else if (c && step < MAX_STEPS) {
            read_values(line, c->traj[step++], 8);
        }
    }
    fclose(f);
    return ncases > 0;
}

/* Builds the options of group g of case c. */
static bool case_options(const fixture_case *c, const algo_entry *a, int g, void *opts) {
    a->defaults(opts);
    char buf[512];
    snprintf(buf, sizeof buf, "%s", c->opts[g]);
    for (char *tok = strtok(buf, " \n"); tok; tok = strtok(NULL, " \n"))
        if (!set_option(a, opts, tok)) return false;
    return true;
}

static void group_params(const model *m, const char *spec, ag_tensor **out, int *n) {
    *n = 0;
    if (strchr(spec, 'W')) out[(*n)++] = m->W;
    if (strchr(spec, 'b')) out[(*n)++] = m->b;
}

/* Replays case c in dtype dt for `steps` steps; returns the largest relative
 * error |a − b| / max(|b|, 1e-3) over every parameter value of every step, or
 * INFINITY if something failed. */
static double replay(const fixture_case *c, ag_dtype dt, int steps) {
    const algo_entry *a = find_algo(c->algo);
    if (!a) return INFINITY;
    _Alignas(max_align_t) unsigned char opts[2][AG__OPTS_MAX];
    for (int g = 0; g < c->ngroups; g++)
        if (!case_options(c, a, g, opts[g])) return INFINITY;
    ag_scope_begin();
    model m = model_new(&prob, dt);
    ag_tensor *ps[2];
    int n;
    group_params(&m, c->params[0], ps, &n);
    ag_optimizer *opt = a->make(ps, n, opts[0]);
    if (opt && c->ngroups > 1) {
        group_params(&m, c->params[1], ps, &n);
        if (ag_optimizer_add_param_group(opt, ps, n, opts[1])) ag_optimizer_free(opt), opt = NULL;
    }
    double worst = opt ? 0 : INFINITY;
    for (int s = 0; opt && s < steps; s++) {
        if (model_step(opt, &m)) {
            worst = INFINITY;
            break;
        }
        double v[8];
        model_values(&m, v);
        for (int i = 0; i < 8; i++) {
            double e = fabs(v[i] - c->traj[s][i]) / fmax(fabs(c->traj[s][i]), 1e-3);
            if (!(e <= worst)) worst = e;
        }
    }
    if (!opt) diag("%s: %s", c->name, ag_last_error());
    ag_optimizer_free(opt);
    ag_scope_end();
    return worst;
}

static void test_fixtures(void) {
    bool loaded = load_fixtures();
    ok(loaded, "read %d PyTorch runs from optim_trajectories.txt", ncases);
    double worst64 = 0, worst32 = 0;
    for (int i = 0; i < ncases; i++) {
        const fixture_case *c = &cases[i];
        if (!find_algo(c->algo)) continue;
        double e64 = replay(c, AG_F64, c->steps);
        ok(e64 <= 1e-5, "%s (%s, %d steps, float64) follows PyTorch: max relative error %.2e", c->name, c->algo,
           c->steps, e64);
        /* An LBFGS step runs up to max_iter iterations towards the minimum, where float32's
         * rounding of the loss and gradient moves the point found by ~1e-3. */
        bool lbfgs = !strcmp(c->algo, "lbfgs");
        int s32 = lbfgs ? 2 : 10;
        double e32 = replay(c, AG_F32, s32), tol32 = lbfgs ? 1e-2 : 1e-3;
        ok(e32 <= tol32, "%s in float32, first %d steps: max relative error %.2e (tolerance %g)", c->name, s32, e32, tol32);
        worst64 = fmax(worst64, e64);
        worst32 = fmax(worst32, e32);
    }
    diag("worst relative error over all runs: float64 %.2e, float32 %.2e", worst64, worst32);
}

/* ---- SparseAdam on an embedding, Adafactor on a 3-d parameter ---------------------------------
 * test/fixtures/optim_sparse_factored.txt: SparseAdam on nn.Embedding(10, 3, sparse=True), 5
 * lookups a step (rows 7-9 never), and Adafactor on P [2, 3, 4] (two factored [3, 4] blocks). */
#define SF_STEPS 30
typedef struct sf_tensor {
    char name[8];
    ag_shape shape;
    double v[64];
} sf_tensor;
typedef struct sf_case {
    char name[64], opts[256];
    int steps;
    double traj[SF_STEPS][30];
} sf_case;
static sf_tensor sf_tensors[4];
static int64_t sf_idx[SF_STEPS][5];
static sf_case sf_cases[4];
static int sf_ntensors, sf_ncases;

static bool sf_load(void) {
    FILE *f = fopen(FIXTURES "/optim_sparse_factored.txt", "r");
    if (!f) return false;
    static char line[8192];
    sf_case *c = NULL;
    int step = 0;
    while (fgets(line, sizeof line, f)) {
        int used = 0, k;
        char *q = line;
        if (line[0] == '#') continue;
        if (!strncmp(line, "tensor ", 7) && sf_ntensors < 4) {
            sf_tensor *t = &sf_tensors[sf_ntensors++];
            sscanf(line, "tensor %7s %d %n", t->name, &t->shape.ndim, &used);
            q += used;
            int64_t n = 1;
            for (int d = 0; d < t->shape.ndim; d++) n *= t->shape.dim[d] = strtoll(q, &q, 10);
            read_values(q, t->v, (int)n);
        } else if (sscanf(line, "idx %d %n", &k, &used) == 1 && k >= 0 && k < SF_STEPS) {
            q += used;
            for (int j = 0; j < 5; j++) sf_idx[k][j] = strtoll(q, &q, 10);
        } else if (!strncmp(line, "case ", 5) && sf_ncases < 4) {
            c = &sf_cases[sf_ncases++];
            sscanf(line, "case %63s %d %n", c->name, &c->steps, &used);
            snprintf(c->opts, sizeof c->opts, "%s", line + used);
            step = 0;
        } else if (c && !strncmp(line, "end", 3)) {
            c = NULL;
        } else if (c && step < SF_STEPS) {
            read_values(line, c->traj[step++], 30);
        }
    }
    fclose(f);
    return sf_ntensors == 4 && sf_ncases == 4;
}

static ag_tensor *sf_get(const char *name) {
    for (int i = 0; i < sf_ntensors; i++)
        if (!strcmp(sf_tensors[i].name, name)) return ag_from_data(sf_tensors[i].v, sf_tensors[i].shape, AG_F64);
    return NULL;
}

/* Replays case c; the largest relative error over all steps (INFINITY on failure). */
static double sf_replay(const sf_case *c) {
    bool embedding = strstr(c->name, "sparse_adam") != NULL;
    const algo_entry *a = find_algo(embedding ? "sparse_adam" : "adafactor");
    _Alignas(max_align_t) unsigned char opts[AG__OPTS_MAX];
    a->defaults(opts);
    char buf[256];
    snprintf(buf, sizeof buf, "%s", c->opts);
    for (char *tok = strtok(buf, " \n"); tok; tok = strtok(NULL, " \n"))
        if (!set_option(a, opts, tok)) return INFINITY;
    ag_scope_begin();
    ag_tensor *p = ag_requires_grad_(sf_get(embedding ? "E" : "P"), true), *target = sf_get(embedding ? "T" : "Q");
    ag_optimizer *opt = a->make(&p, 1, opts);
    double worst = opt ? 0 : INFINITY, got[30];
    for (int s = 0; opt && s < c->steps; s++) {
        ag_optimizer_zero_grad(opt);
        ag_scope_begin();
        ag_tensor *loss;
        if (embedding) { /* mean((E[idx] − T)²) + 0.1·Σ sin(E[idx]) */
            ag_tensor *e = ag_embedding(p, ag_from_data(sf_idx[s], AG_SHAPE(5), AG_I64), AG_NO_PADDING_IDX);
            loss = ag_add(ag_mean(ag_square(ag_sub(e, target))), ag_mul_scalar(ag_sum(ag_sin(e)), 0.1));
        } else { /* mean((tanh(P) − Q)²) */
            loss = ag_mean(ag_square(ag_sub(ag_tanh(p), target)));
        }
        ag_status st = loss ? ag_backward(loss) : ag_last_status();
        ag_scope_end();
        if (st || ag_optimizer_step(opt)) {
            worst = INFINITY;
            break;
        }
        int64_t n = ag_numel(p);
        ag_copy_to(p, got, n, AG_F64);
        for (int64_t i = 0; i < n; i++) worst = fmax(worst, fabs(got[i] - c->traj[s][i]) / fmax(fabs(c->traj[s][i]), 1e-3));
    }
    if (!opt || isinf(worst)) diag("%s: %s", c->name, ag_last_error());
    ag_optimizer_free(opt);
    ag_scope_end();
    return worst;
}

static bool error_is(ag_status want, const char *needle);

static void test_sparse_and_factored(void) {
    bool loaded = sf_load();
    ok(loaded, "read %d runs of optim_sparse_factored.txt", sf_ncases);
    for (int i = 0; i < sf_ncases; i++) {
        double e = sf_replay(&sf_cases[i]);
        ok(e <= 1e-12, "%s (%d steps, float64) follows PyTorch%s: max relative error %.2e", sf_cases[i].name,
           sf_cases[i].steps, strstr(sf_cases[i].name, "sparse") ? "'s SparseAdam on Embedding(sparse=True)"
                                                                   : " (HF Adafactor, factored over 2 blocks)", e);
    }
    /* SparseAdam leaves rows without a gradient, and their moments, alone (Adam would decay them). */
    ag_scope_begin();
    ag_tensor *w = ag_requires_grad_(ag_ones(AG_SHAPE(3, 2), AG_F64), true);
    ag_optimizer *opt = ag_sparse_adam_new(&w, 1, NULL);
    double grads[2][6] = {{1, 2, 3, 4, 5, 6}, {0, 0, 1, 0, 0, 0}}, v[2][6], m[2][6];
    for (int s = 0; s < 2; s++) {
        ag_optimizer_zero_grad(opt);
        ag_backward(ag_sum(ag_mul(w, ag_from_data(grads[s], AG_SHAPE(3, 2), AG_F64)))); /* ∇ = grads[s] */
        ag_optimizer_step(opt);
        ag_copy_to(w, v[s], 6, AG_F64);
        ag_state_dict *sd = ag_state_dict_new();
        ag_optimizer_state_dict(opt, sd);
        ag_copy_to(ag_state_dict_get(sd, "state.0.exp_avg"), m[s], 6, AG_F64);
        ag_state_dict_free(sd);
    }
    bool rows_kept = true;
    for (int i = 0; i < 6; i++)
        if (i / 2 != 1) rows_kept &= v[1][i] == v[0][i] && m[1][i] == m[0][i];
    ok(rows_kept && v[1][2] != v[0][2] && fabs(m[1][3] - 0.9 * m[0][3]) < 1e-15,
       "SparseAdam: a step whose gradient has row 1 only leaves rows 0 and 2 and their moments unchanged");
    ag_optimizer_free(opt);

    ag_adafactor_options ao = ag_adafactor_defaults();
    ao.lr = 0.01;
    ok(!ag_adafactor_new(&w, 1, &ao) && error_is(AG_ERR_ARG, "Adafactor: a manual lr (0.01) cannot be combined with relative_step"),
       "Adafactor with an lr and relative_step: AG_ERR_ARG");
    ao = ag_adafactor_defaults();
    ao.relative_step = false, ao.warmup_init = true;
    ok(!ag_adafactor_new(&w, 1, &ao) && error_is(AG_ERR_ARG, "Adafactor: warmup_init requires relative_step"),
       "Adafactor warmup_init without relative_step: AG_ERR_ARG");
    ao = ag_adafactor_defaults();
    ao.decay_rate = 0.5;
    ok(!ag_adafactor_new(&w, 1, &ao) && error_is(AG_ERR_ARG, "Adafactor: invalid decay_rate (must be <= 0): 0.5"),
       "Adafactor decay_rate 0.5: AG_ERR_ARG");
    ag_sparse_adam_options so = ag_sparse_adam_defaults();
    so.lr = 0;
    ok(!ag_sparse_adam_new(&w, 1, &so) && error_is(AG_ERR_ARG, "SparseAdam: invalid learning rate: 0"),
       "SparseAdam lr 0: AG_ERR_ARG (PyTorch wants lr > 0)");
    ag_scope_end();
}

/* ---- the driver's contract ----------------------------------------------------------------- */
static bool error_is(ag_status want, const char *needle) {
    bool r = ag_last_status() == want && strstr(ag_last_error(), needle) != NULL;
    if (!r) diag("got %s: %s", ag_status_name(ag_last_status()), ag_last_error());
    ag_clear_error();
    return r;
}

static void test_errors(void) {
    ag_scope_begin();
    ag_tensor *w = ag_requires_grad_(ag_ones(AG_SHAPE(2, 2), AG_F32), true);
    ag_tensor *c = ag_ones(AG_SHAPE(2), AG_F32);
    ag_sgd_options o = ag_sgd_defaults();
    ok(!ag_sgd_new(NULL, 0, NULL) && error_is(AG_ERR_ARG, "empty parameter list"), "no parameters: AG_ERR_ARG");
    ok(!ag_sgd_new(&c, 1, NULL) && error_is(AG_ERR_ARG, "does not require grad"),
       "a parameter that does not require grad: AG_ERR_ARG naming it");
    o.lr = NAN;
    ok(!ag_sgd_new(&w, 1, &o) && error_is(AG_ERR_ARG, "SGD: invalid learning rate: nan"), "NaN lr: AG_ERR_ARG");
    o.lr = -1;
    ok(!ag_sgd_new(&w, 1, &o) && error_is(AG_ERR_ARG, "invalid learning rate: -1"), "negative lr: AG_ERR_ARG");
    o = ag_sgd_defaults();
    o.nesterov = true;
    ok(!ag_sgd_new(&w, 1, &o) && error_is(AG_ERR_ARG, "Nesterov momentum requires a momentum"),
       "Nesterov without momentum: AG_ERR_ARG");
    ag_adam_options zero = {0};
    ok(!ag_adam_new(&w, 1, &zero) && error_is(AG_ERR_ARG, "not made by ag_adam_defaults()"),
       "options not from the defaults function: AG_ERR_ARG");
    ag_adam_options bad_beta = ag_adam_defaults();
    bad_beta.beta2 = 1.0;
    ok(!ag_adam_new(&w, 1, &bad_beta) && error_is(AG_ERR_ARG, "beta parameter at index 1"), "beta2 = 1: AG_ERR_ARG");
    ok(!ag_sgd_new((ag_tensor *[]){w, w}, 2, NULL) && error_is(AG_ERR_ARG, "appears more than once"),
       "a parameter listed twice: AG_ERR_ARG");
    ag_tensor *h = ag_mul_scalar(w, 2);
    ok(!ag_sgd_new(&h, 1, NULL) && error_is(AG_ERR_ARG, "non-leaf"), "a non-leaf parameter: AG_ERR_ARG");
    ag_tensor *wt = ag_requires_grad_(ag_detach(ag_t(ag_ones(AG_SHAPE(2, 3), AG_F64))), true);
    ok(!ag_sgd_new(&wt, 1, NULL) && error_is(AG_ERR_ARG, "not contiguous"), "a non-contiguous parameter: AG_ERR_ARG");
    ag_tensor *ix = ag_zeros(AG_SHAPE(2), AG_I64);
    ok(!ag_sgd_new(&ix, 1, NULL) && error_is(AG_ERR_DTYPE, "int64"), "an int64 parameter: AG_ERR_DTYPE");
    ag_tensor *failed = ag_reshape(w, AG_SHAPE(5)); /* fails: records a shape error */
    ag_status st = ag_last_status();
    ok(!ag_sgd_new(&failed, 1, NULL) && ag_last_status() == st && st == AG_ERR_SHAPE,
       "a NULL parameter from a failed op passes that failure on");
    ag_clear_error();

    ag_optimizer *opt = ag_sgd_new(&w, 1, NULL);
    ag_adam_options ao = ag_adam_defaults();
    ok(ag_optimizer_add_param_group(opt, &c, 1, &ao) == AG_ERR_ARG && error_is(AG_ERR_ARG, "ag_sgd_defaults()"),
       "a group with another algorithm's options: AG_ERR_ARG");
    ok(ag_optimizer_add_param_group(opt, &w, 1, NULL) == AG_ERR_ARG && error_is(AG_ERR_ARG, "more than once"),
       "a parameter already in a group: AG_ERR_ARG");
    ok(isnan(ag_optimizer_get_lr(opt, 1)) && error_is(AG_ERR_INDEX, "group 1 out of range"), "lr of a missing group");
    ok(ag_optimizer_set_lr(opt, 0, INFINITY) == AG_ERR_ARG && error_is(AG_ERR_ARG, "learning rate: inf"),
       "set_lr(inf): AG_ERR_ARG");
    ok(ag_optimizer_set(opt, 0, "nesterov", 1) == AG_ERR_ARG && error_is(AG_ERR_ARG, "Nesterov"),
       "set nesterov without momentum: AG_ERR_ARG");
    double v = -1;
    ok(ag_optimizer_get(opt, 0, "nesterov", &v) == AG_OK && v == 0, "and the group is unchanged");
    ok(ag_optimizer_set(opt, 0, "betas", 1) == AG_ERR_ARG && error_is(AG_ERR_ARG, "no hyperparameter \"betas\""),
       "an unknown hyperparameter: AG_ERR_ARG");
    ag_optimizer_free(opt);
    ok(ag_optimizer_step(NULL) == AG_ERR_ARG, "step(NULL): AG_ERR_ARG");
    ag_clear_error();
    ag_scope_end();
}

static void test_groups_and_skipping(void) {
    ag_scope_begin();
    ag_tensor *a = ag_requires_grad_(ag_full(AG_SHAPE(3), 1, AG_F64), true);
    ag_tensor *b = ag_requires_grad_(ag_full(AG_SHAPE(2, 2), 1, AG_F32), true);
    ag_tensor *u = ag_requires_grad_(ag_full(AG_SHAPE(2), 5, AG_F64), true);
    ag_sgd_options o = ag_sgd_defaults();
    o.lr = 0.5;
    o.momentum = 0.9;
    ag_optimizer *opt = ag_sgd_new((ag_tensor *[]){a, u}, 2, &o);
    o.lr = 0.25;
    o.momentum = 0;
    ok(ag_optimizer_add_param_group(opt, &b, 1, &o) == AG_OK, "add a float32 group with its own lr and momentum");
    ok(ag_optimizer_num_groups(opt) == 2 && ag_optimizer_num_params(opt) == 3 && ag_optimizer_numel(opt) == 9,
       "2 groups, 3 parameters, 9 elements");
    ok(ag_optimizer_param(opt, 2) == b && ag_optimizer_param(opt, 3) == NULL, "parameters in order, NULL past the end");
    ok(ag_optimizer_get_lr(opt, 0) == 0.5 && ag_optimizer_get_lr(opt, 1) == 0.25, "per-group lr");
    double m;
    ok(ag_optimizer_get(opt, 1, "momentum", &m) == AG_OK && m == 0, "per-group momentum");
    ok(strcmp(ag_optimizer_name(opt), "SGD") == 0 && ag_optimizer_kind(opt) == AG_OPTIM_SGD, "name and kind");

    ok(ag_backward(ag_add(ag_sum(ag_square(a)), ag_to_dtype(ag_sum(b), AG_F64))) == AG_OK, "backward into both dtypes");
    uint32_t va = ag_version(a), vu = ag_version(u);
    double loss = 0;
    ok(ag_optimizer_step_closure(opt, NULL, NULL, &loss) == AG_OK && isnan(loss), "step without a closure gives NaN loss");
    ok(ag_get(a, (int64_t[]){0}) == 1 - 0.5 * 2 && ag_get(b, (int64_t[]){1, 1}) == 1 - 0.25,
       "each group moved with its own lr");
    ok(ag_get(u, (int64_t[]){0}) == 5 && ag_version(u) == vu && opt->ps[1].buf[0] == NULL,
       "a parameter without a gradient is skipped and gets no state");
    ok(ag_version(a) == va + 1, "a step bumps the version of what it changes");
    ok(opt->ps[0].buf[0] && !opt->ps[2].buf[0], "momentum state only where momentum is on");
    ag_optimizer_zero_grad(opt);
    ok(!ag_grad(a) && !ag_grad(b), "zero_grad sets gradients to none");
    ok(ag_optimizer_set_lr(opt, 1, 0.125) == AG_OK && ag_optimizer_get_lr(opt, 1) == 0.125, "set_lr on one group");
    ag_optimizer_free(opt);
    ag_scope_end();
}

/* maximize on L is minimising −L; decoupled decay with a zero gradient is θ(1 − γλ). */
static ag_status quad_closure(void *ctx, double *loss) {
    ag_tensor **t = ctx; /* w, sign */
    ag_zero_grad(t[0]);
    ag_scope_begin();
    ag_tensor *l = ag_mul_scalar(ag_sum(ag_add(ag_square(t[0]), ag_sin(t[0]))), ag_item(t[1]));
    ag_status st = ag_backward(l);
    *loss = ag_item(l);
    ag_scope_end();
    return st;
}

static void test_maximize_and_decoupled(void) {
    const char *names[] = {"nadam", "radam"};
    for (int k = 0; k < 2; k++) {
        const algo_entry *a = find_algo(names[k]);
        double res[2][3];
        for (int maximize = 0; maximize < 2; maximize++) {
            ag_scope_begin();
            ag_tensor *w = ag_requires_grad_(ag_linspace(-1, 2, 3, AG_F64), true);
            ag_tensor *sgn = ag_scalar(maximize ? -1 : 1, AG_F64);
            _Alignas(max_align_t) unsigned char opts[AG__OPTS_MAX];
            a->defaults(opts);
            set_option(a, opts, maximize ? "maximize=1" : "maximize=0");
            set_option(a, opts, "lr=0.05");
            ag_optimizer *opt = a->make(&w, 1, opts);
            for (int s = 0; s < 8; s++) ag_optimizer_step_closure(opt, quad_closure, (ag_tensor *[]){w, sgn}, NULL);
            ag_copy_to(w, res[maximize], 3, AG_F64);
            ag_optimizer_free(opt);
            ag_scope_end();
        }
        ok(memcmp(res[0], res[1], sizeof res[0]) == 0, "%s: maximize on -L steps exactly as minimising L", names[k]);

        ag_scope_begin();
        ag_tensor *w = ag_requires_grad_(ag_full(AG_SHAPE(2), 2, AG_F64), true);
        _Alignas(max_align_t) unsigned char opts[AG__OPTS_MAX];
        a->defaults(opts);
        set_option(a, opts, "decoupled_weight_decay=1");
        set_option(a, opts, "weight_decay=0.1");
        set_option(a, opts, "lr=0.5");
        ag_optimizer *opt = a->make(&w, 1, opts);
        ag_backward(ag_mul_scalar(ag_sum(w), 0));
        ag_optimizer_step(opt);
        ok(ag_get(w, (int64_t[]){0}) == 2 * (1 - 0.5 * 0.1), "%s: decoupled weight decay is θ(1 − γλ)", names[k]);
        ag_optimizer_free(opt);
        ag_scope_end();
    }
}

/* After the first step creates the state, steps allocate nothing. */
static void test_no_allocation(void) {
    for (size_t k = 0; k < sizeof algos / sizeof *algos; k++) {
        const algo_entry *a = &algos[k];
        if (a->algo->step) continue; /* closure-driven (LBFGS) */
        ag_scope_begin();
        model m = model_new(&prob, AG_F32);
        _Alignas(max_align_t) unsigned char opts[AG__OPTS_MAX];
        a->defaults(opts);
        set_option(a, opts, "momentum=0.5"); /* where there is one */
        set_option(a, opts, "amsgrad=1");
        set_option(a, opts, "centered=1");
        ag_optimizer *opt = a->make((ag_tensor *[]){m.W, m.b}, 2, opts);
        long during = 0;
        for (int s = 0; s < 4; s++) {
            double l;
            model_closure(&m, &l);
            long before = alloc_calls;
            ag_optimizer_step(opt);
            if (s > 0) during += alloc_calls - before;
        }
        ok(during == 0, "%s: steps 2-4 allocate nothing (%ld allocations)", a->algo->name, during);
        ag_optimizer_free(opt);
        ag_scope_end();
    }
}

/* A first step whose k-th allocation fails reports AG_ERR_NOMEM and changes no
 * parameter; retried, it steps exactly as a step that never failed. */
static void test_allocation_failure(void) {
    for (size_t k = 0; k < sizeof algos / sizeof *algos; k++) {
        const algo_entry *a = &algos[k];
        if (a->algo->step) continue;
        double want[2][8], got[8];
        int failures = 0;
        bool clean = true;
        for (int inject = 0; inject < 2; inject++) {
            ag_scope_begin();
            model m = model_new(&prob, AG_F64);
            _Alignas(max_align_t) unsigned char opts[AG__OPTS_MAX];
            a->defaults(opts);
            set_option(a, opts, "momentum=0.5");
            set_option(a, opts, "dampening=0.25");
            set_option(a, opts, "amsgrad=1");
            ag_optimizer *opt = a->make((ag_tensor *[]){m.W, m.b}, 2, opts);
            double l;
            for (int s = 0; s < 2; s++) {
                model_closure(&m, &l);
                double before[8];
                model_values(&m, before);
                ag_status st = AG_ERR_NOMEM;
                for (long f = 1; inject && s == 0 && st == AG_ERR_NOMEM; f++, failures++) {
                    fail_at = alloc_calls + f;
                    st = ag_optimizer_step(opt);
                    fail_at = -1;
                    model_values(&m, got);
                    if (st == AG_ERR_NOMEM) clean &= memcmp(before, got, sizeof got) == 0;
                    else clean &= st == AG_OK;
                }
                if (!inject || s > 0) ag_optimizer_step(opt);
                model_values(&m, want[inject]);
            }
            ag_optimizer_free(opt);
            ag_scope_end();
        }
        ag_clear_error();
        ok(clean && failures > 1 && memcmp(want[0], want[1], sizeof want[0]) == 0,
           "%s: each of %d failing allocations in the first step is AG_ERR_NOMEM and leaves the parameters; "
           "the retried steps match", a->algo->name, failures - 1);
    }
}

/* ---- LBFGS ------------------------------------------------------------------------------------- */
/* Rosenbrock in n dims: Σ 100(x_{i+1} − x_i²)² + (1 − x_i)², minimum 0 at (1, ..., 1). */
typedef struct rosen {
    ag_tensor *x;
    long closure_allocs;
} rosen;

static ag_status rosenbrock(void *ctx, double *loss) {
    rosen *r = ctx;
    long before = alloc_calls;
    ag_zero_grad(r->x);
    ag_scope_begin();
    int64_t n = ag_size(r->x, 0);
    ag_tensor *head = ag_narrow(r->x, 0, 0, n - 1), *tail = ag_narrow(r->x, 0, 1, n - 1);
    ag_tensor *l = ag_sum(ag_add(ag_mul_scalar(ag_square(ag_sub(tail, ag_square(head))), 100),
                                 ag_square(ag_rsub_scalar(1, head))));
    ag_status st = l ? ag_backward(l) : ag_last_status();
    if (!st) *loss = ag_item(l);
    ag_scope_end();
    r->closure_allocs += alloc_calls - before;
    return st;
}

static void test_lbfgs(void) {
    int dims[2] = {2, 10};
    for (int k = 0; k < 2; k++) {
        int n = dims[k];
        ag_scope_begin();
        ag_tensor *x = ag_zeros(AG_SHAPE(n), AG_F64);
        for (int i = 0; i < n; i++) ((double *)ag_data(x))[i] = i % 2 ? 1.0 : -1.2;
        rosen r = {ag_requires_grad_(x, true), 0};
        ag_lbfgs_options o = ag_lbfgs_defaults();
        o.line_search = AG_LINE_SEARCH_STRONG_WOLFE;
        o.history_size = 10;
        o.max_iter = 50;
        o.tolerance_grad = 1e-12;
        o.tolerance_change = 1e-15;
        ag_optimizer *opt = ag_lbfgs_new(&r.x, 1, &o);
        double loss = 1, first = 0;
        int steps = 0;
        for (; steps < 20 && loss > 1e-14; steps++) {
            ag_optimizer_step_closure(opt, rosenbrock, &r, &loss);
            if (steps == 0) first = loss;
        }
        rosenbrock(&r, &loss);
        double err = 0;
        for (int i = 0; i < n; i++) err = fmax(err, fabs(((double *)ag_data(x))[i] - 1));
        ok(err < 1e-6 && loss < 1e-12, "LBFGS (strong Wolfe) minimises the %d-d Rosenbrock from %.1f to %.1e in %d steps; "
           "max |x − 1| = %.1e", n, first, loss, steps, err);
        if (k == 1) {
            long before = alloc_calls, inside = r.closure_allocs;
            ag_optimizer_step_closure(opt, rosenbrock, &r, &loss);
            ok(alloc_calls - before - (r.closure_allocs - inside) == 0,
               "once its history is full, an LBFGS step allocates nothing outside the closure");
        }
        ag_optimizer_free(opt);
        ag_scope_end();
    }

    ag_scope_begin();
    ag_tensor *w = ag_requires_grad_(ag_ones(AG_SHAPE(2), AG_F64), true);
    ag_optimizer *opt = ag_lbfgs_new(&w, 1, NULL);
    ok(ag_optimizer_step(opt) == AG_ERR_ARG && error_is(AG_ERR_ARG, "needs a closure"), "LBFGS without a closure: AG_ERR_ARG");
    ok(ag_optimizer_add_param_group(opt, (ag_tensor *[]){ag_requires_grad_(ag_ones(AG_SHAPE(1), AG_F64), true)}, 1, NULL) ==
           AG_ERR_ARG && error_is(AG_ERR_ARG, "parameter groups"), "LBFGS with a second group: AG_ERR_ARG");
    ag_lbfgs_options o = ag_lbfgs_defaults();
    o.line_search = 7;
    ok(!ag_lbfgs_new(&w, 1, &o) && error_is(AG_ERR_ARG, "AG_LINE_SEARCH_STRONG_WOLFE"), "an unknown line search: AG_ERR_ARG");
    ag_optimizer_free(opt);
    ag_scope_end();
}

/* ---- save, load, resume --------------------------------------------------------------------------- */
#define RESUME_STEPS 6
static char tmpdir[] = "/tmp/agrad-optim-XXXXXX";

/* An optimizer of algorithm a over m with stateful options, two groups where allowed, and a StepLR. */
static ag_optimizer *resume_optimizer(const algo_entry *a, model *m, ag_scheduler **sched) {
    _Alignas(max_align_t) unsigned char opts[AG__OPTS_MAX];
    a->defaults(opts);
    const char *sets[] = {"lr=0.01", "momentum=0.8", "amsgrad=1", "centered=1", "weight_decay=0.01", "history_size=3",
                          "line_search=1", "max_iter=4", "t0=2", "adamw_lr=0.01", "relative_step=0", "beta1=0.9"};
    for (size_t i = 0; i < sizeof sets / sizeof *sets; i++) set_option(a, opts, sets[i]);
    bool one = a->algo->one_group;
    ag_optimizer *opt = one ? a->make((ag_tensor *[]){m->W, m->b}, 2, opts) : a->make(&m->W, 1, opts);
    set_option(a, opts, "lr=0.005");
    if (opt && !one && ag_optimizer_add_param_group(opt, &m->b, 1, opts)) return NULL;
    *sched = ag_step_lr_new(opt, 3, 0.7);
    return opt;
}

static ag_status resume_step(ag_optimizer *opt, ag_scheduler *s, model *m) {
    ag_status st = model_step(opt, m);
    return st ? st : ag_scheduler_step(s);
}

static void test_resume(void) {
    ok(mkdtemp(tmpdir) != NULL, "a temporary directory for the saved state");
    char path[256];
    for (size_t k = 0; k < sizeof algos / sizeof *algos; k++) {
        const algo_entry *a = &algos[k];
        snprintf(path, sizeof path, "%s/%s.safetensors", tmpdir, a->name);
        double traj[RESUME_STEPS][8], again[RESUME_STEPS][8];
        bool good = true;
        /* Run 7 steps, save, run 6 more. */
        ag_scope_begin();
        model m = model_new(&prob, AG_F64);
        ag_scheduler *s = NULL;
        ag_optimizer *opt = resume_optimizer(a, &m, &s);
        for (int i = 0; good && i < 7; i++) good = resume_step(opt, s, &m) == AG_OK;
        ag_state_dict *sd = ag_state_dict_new();
        good = good && ag_state_dict_set(sd, "model.W", m.W) == AG_OK && ag_state_dict_set(sd, "model.b", m.b) == AG_OK &&
               ag_optimizer_state_dict(opt, sd) == AG_OK && ag_scheduler_state_dict(s, sd) == AG_OK &&
               ag_save_safetensors(sd, path) == AG_OK;
        ag_state_dict_free(sd);
        for (int i = 0; good && i < RESUME_STEPS; i++) {
            good = resume_step(opt, s, &m) == AG_OK;
            model_values(&m, traj[i]);
        }
        ag_scheduler_free(s);
        ag_optimizer_free(opt);
        ag_scope_end();

        /* A fresh model, optimizer and scheduler loaded from the file run the same 6 steps. */
        ag_scope_begin();
        ag_state_dict *loaded = ag_load_safetensors(path);
        model m2 = model_new(&prob, AG_F64);
        ag_no_grad_begin();
        good = good && loaded && ag_copy_(m2.W, ag_state_dict_get(loaded, "model.W")) &&
               ag_copy_(m2.b, ag_state_dict_get(loaded, "model.b"));
        ag_no_grad_end();
        ag_scheduler *s2 = NULL;
        ag_optimizer *opt2 = resume_optimizer(a, &m2, &s2);
        good = good && ag_optimizer_load_state_dict(opt2, loaded) == AG_OK &&
               ag_scheduler_load_state_dict(s2, loaded) == AG_OK;
        for (int i = 0; good && i < RESUME_STEPS; i++) {
            good = resume_step(opt2, s2, &m2) == AG_OK;
            model_values(&m2, again[i]);
        }
        if (!good) diag("%s: %s", a->name, ag_last_error());
        ok(good && memcmp(traj, again, sizeof traj) == 0,
           "%s: save after 7 steps, load into a fresh optimizer and scheduler, the next %d steps are identical",
           a->algo->name, RESUME_STEPS);
        ag_state_dict_free(loaded);
        ag_scheduler_free(s2);
        ag_optimizer_free(opt2);
        remove(path);
        ag_scope_end();
    }

    /* What does not fit is refused and changes nothing. */
    ag_scope_begin();
    model m = model_new(&prob, AG_F64);
    ag_scheduler *s = NULL;
    ag_optimizer *adam = resume_optimizer(find_algo("adam"), &m, &s);
    model_step(adam, &m);
    ag_state_dict *sd = ag_state_dict_new();
    ag_optimizer_state_dict(adam, sd);
    ag_optimizer *sgd = ag_sgd_new(&m.W, 1, NULL);
    ok(ag_optimizer_load_state_dict(sgd, sd) == AG_ERR_ARG && error_is(AG_ERR_ARG, "another algorithm"),
       "an Adam state into SGD: AG_ERR_ARG");
    ag_optimizer *adam1 = ag_adam_new(&m.W, 1, NULL);
    ok(ag_optimizer_load_state_dict(adam1, sd) == AG_ERR_ARG && error_is(AG_ERR_ARG, "more parameter groups"),
       "two groups into one: AG_ERR_ARG");
    ag_state_dict_set(sd, "state.0.exp_avg", ag_zeros(AG_SHAPE(2, 3), AG_F64));
    double lr = ag_optimizer_get_lr(adam, 0);
    ag_optimizer_set_lr(adam, 0, 0.5);
    ok(ag_optimizer_load_state_dict(adam, sd) == AG_ERR_SHAPE && error_is(AG_ERR_SHAPE, "state.0.exp_avg") &&
           ag_optimizer_get_lr(adam, 0) == 0.5,
       "a state tensor of the wrong shape: AG_ERR_SHAPE, and nothing changed");
    (void)lr;
    ag_scheduler *other = ag_exponential_lr_new(adam, 0.5);
    ag_scheduler_state_dict(s, sd);
    ok(ag_scheduler_load_state_dict(other, sd) == AG_ERR_ARG && error_is(AG_ERR_ARG, "another kind"),
       "a StepLR state into ExponentialLR: AG_ERR_ARG");
    ag_scheduler_free(other);
    ag_scheduler_free(s);
    ag_state_dict_free(sd);
    ag_optimizer_free(adam1);
    ag_optimizer_free(sgd);
    ag_optimizer_free(adam);
    ag_scope_end();
    rmdir(tmpdir);
}

/* Values that break rule r: NaN always; below, above, between whole numbers, infinite. */
static int breaking_values(ag__range r, double *v) {
    int n = 0;
    v[n++] = NAN;
    if (r.lo > -DBL_MAX) v[n++] = r.lo - 1;
    if (r.whole) v[n++] = r.lo + 0.5;
    if (r.hi < DBL_MAX) v[n++] = r.hi * 2 + 1;
    if (r.hi == DBL_MAX) v[n++] = INFINITY;
    return n;
}

/* Every saved number and state tensor of every algorithm, damaged in every way its rule
 * forbids, is refused by name, and the refused load changes nothing. */
static void test_damaged_state(void) {
    int loads = 0, refused = 0, kept = 0, entries = 0;
    for (size_t k = 0; k < sizeof algos / sizeof *algos; k++) {
        const algo_entry *a = &algos[k];
        ag_scope_begin();
        model m = model_new(&prob, AG_F64);
        ag_scheduler *s = NULL;
        ag_optimizer *opt = resume_optimizer(a, &m, &s);
        for (int i = 0; i < 7; i++) resume_step(opt, s, &m);
        ag_state_dict *sd = ag_state_dict_new();
        ag_optimizer_state_dict(opt, sd);
        for (int e = 0; e < ag_state_dict_size(sd); e++) {
            const char *name = ag_state_dict_name(sd, e);
            ag_tensor *t = ag_state_dict_tensor(sd, e);
            int g;
            char field[64];
            ag__range rule;
            bool hyper = false;
            if (strcmp(name, "algorithm") == 0 || strstr(name, ".params")) continue;
            if (sscanf(name, "state.%d.%63s", &g, field) == 2) rule = ag__optim_state_rule(field);
            else if (strstr(name, ".initial_lr")) rule = (ag__range)AG__NONNEG;
            else hyper = true, rule = (ag__range){-INFINITY, INFINITY, false}; /* the algorithm's check does the rest */
            entries++;
            double bad[4];
            int nbad = breaking_values(rule, bad);
            for (int b = 0; b < nbad; b++) {
                ag_tensor *d = damaged(t, bad[b]);
                ag_state_dict *dmg = dict_with(sd, name, d), *after = ag_state_dict_new();
                ag_clear_error();
                ag_status st = ag_optimizer_load_state_dict(opt, dmg);
                ag_optimizer_state_dict(opt, after);
                loads++;
                bool good = hyper ? st != AG_OK : st == AG_ERR_VALUE && strstr(ag_last_error(), name) && strstr(ag_last_error(), "expected");
                refused += good;
                kept += same_dicts(sd, after);
                if (!good) diag("%s: %s = %g: status %d: %s", a->algo->name, name, bad[b], st, ag_last_error());
                ag_state_dict_free(after);
                ag_state_dict_free(dmg);
                ag_release(d);
            }
        }
        ag_state_dict_free(sd);
        ag_scheduler_free(s);
        ag_optimizer_free(opt);
        ag_scope_end();
    }
    ok(refused == loads, "%d damaged values in %d saved entries of %zu algorithms are refused by name (%d)", loads, entries,
       sizeof algos / sizeof *algos, refused);
    ok(kept == loads, "and each refused load leaves the optimizer as it was (%d of %d)", kept, loads);

    /* The cases of the report: Adam's step of NaN or -7, exp_avg_sq of -1, a missing step. */
    ag_scope_begin();
    model m = model_new(&prob, AG_F64);
    ag_optimizer *adam = ag_adam_new(&m.W, 1, NULL);
    model_step(adam, &m);
    ag_state_dict *sd = ag_state_dict_new();
    ag_optimizer_state_dict(adam, sd);
    ag_tensor *step = damaged(ag_state_dict_get(sd, "state.0.step"), -7);
    ag_state_dict *dmg = dict_with(sd, "state.0.step", step);
    ok(ag_optimizer_load_state_dict(adam, dmg) == AG_ERR_VALUE &&
           strcmp(ag_last_error(), "Adam load_state_dict: state.0.step is -7, expected a whole number >= 0") == 0,
       "%s", ag_last_error());
    ag_state_dict_free(dmg);
    ag_tensor *sq = damaged(ag_state_dict_get(sd, "state.0.exp_avg_sq"), -1);
    dmg = dict_with(sd, "state.0.exp_avg_sq", sq);
    ok(ag_optimizer_load_state_dict(adam, dmg) == AG_ERR_VALUE &&
           strcmp(ag_last_error(), "Adam load_state_dict: state.0.exp_avg_sq[5] is -1, expected a finite number >= 0") == 0,
       "%s", ag_last_error());
    ag_state_dict_free(dmg);
    dmg = dict_with(sd, "state.0.step", NULL);
    ok(ag_optimizer_load_state_dict(adam, dmg) == AG_ERR_ARG &&
           strcmp(ag_last_error(), "Adam load_state_dict: no number \"state.0.step\"") == 0,
       "a parameter with state but no step: %s", ag_last_error());
    ag_state_dict_free(dmg);
    ag_release(step);
    ag_release(sq);
    ag_state_dict_free(sd);
    ag_optimizer_free(adam);
    ag_scope_end();
}

/* ---- clipping and penalties ------------------------------------------------------------------ */
static void set_grads(ag_tensor *a, ag_tensor *b) { /* a.grad = [3, -4], b.grad = [12], as float64 and float32 */
    ag_zero_grad(a);
    ag_zero_grad(b);
    ag_scope_begin();
    ag_backward(ag_add(ag_sum(ag_mul(a, ag_from_data((double[]){3, -4}, AG_SHAPE(2), AG_F64))),
                       ag_to_dtype(ag_mul_scalar(ag_sum(b), 12), AG_F64)));
    ag_scope_end();
}

static void test_clipping(void) {
    ag_scope_begin();
    ag_tensor *a = ag_requires_grad_(ag_ones(AG_SHAPE(2), AG_F64), true);
    ag_tensor *b = ag_requires_grad_(ag_ones(AG_SHAPE(1), AG_F32), true);
    ag_tensor *none = ag_requires_grad_(ag_ones(AG_SHAPE(3), AG_F64), true);
    ag_tensor *ps[3] = {a, b, none};
    double norm = 0;
    set_grads(a, b);
    ok(ag_clip_grad_norm(ps, 3, 100, 2, true, &norm) == AG_OK && norm == 13, "L2 norm of [3, -4] and [12] is 13");
    ok(ag_get(ag_grad(b), (int64_t[]){0}) == 12, "below max_norm nothing changes");
    ok(ag_clip_grad_norm(ps, 3, 6.5, 2, false, &norm) == AG_OK, "clip to 6.5");
    double c = 6.5 / (13 + 1e-6);
    close_to(ag_get(ag_grad(a), (int64_t[]){1}), -4 * c, 1e-15, "grads scaled by max_norm/(norm + 1e-6)");
    close_to(ag_get(ag_grad(b), (int64_t[]){0}), 12 * c, 1e-6, "float32 grads too");
    set_grads(a, b);
    ag_clip_grad_norm(ps, 3, 100, 1, false, &norm);
    ok(norm == 19, "L1 norm 19");
    ag_clip_grad_norm(ps, 3, 100, INFINITY, false, &norm);
    ok(norm == 12, "infinity norm 12");
    ag_clip_grad_norm(ps, 3, 100, 3, false, &norm);
    close_to(norm, cbrt(27 + 64 + 1728), 1e-15, "L3 norm");
    ok(ag_clip_grad_norm(ps, 3, 1, 0.5, false, NULL) == AG_ERR_ARG, "norm_type 0.5: AG_ERR_ARG");
    ag_no_grad_begin();
    ag_fill_(ag_grad(a), NAN);
    ag_no_grad_end();
    ok(ag_clip_grad_norm(ps, 3, 1, 2, true, &norm) == AG_ERR_VALUE && isnan(norm) &&
           ag_get(ag_grad(b), (int64_t[]){0}) == 12 && strstr(ag_last_error(), "non-finite"),
       "error_if_nonfinite: AG_ERR_VALUE and the gradients stay as they were");
    ag_clear_error();
    set_grads(a, b);
    ok(ag_clip_grad_value(ps, 3, 3.5) == AG_OK && ag_get(ag_grad(a), (int64_t[]){0}) == 3 &&
           ag_get(ag_grad(a), (int64_t[]){1}) == -3.5 && ag_get(ag_grad(b), (int64_t[]){0}) == 3.5,
       "clip_grad_value clamps to [-3.5, 3.5]");
    ok(ag_clip_grad_value(ps, 3, -1) == AG_ERR_ARG, "negative clip_value: AG_ERR_ARG");
    ag_clear_error();
    ag_scope_end();
}

static ag_tensor *penalty_fn(ag_tensor *const *in, int n, void *ctx) {
    int which = *(int *)ctx;
    return which == 0 ? ag_l1_penalty(in, n, 0.3) : which == 1 ? ag_l2_penalty(in, n, 0.3)
                                                             : ag_elastic_net_penalty(in, n, 0.3, 0.25);
}

static void test_penalties(void) {
    ag_scope_begin();
    ag_tensor *w = ag_requires_grad_(ag_from_data((double[]){0.5, -1.5, 2}, AG_SHAPE(3), AG_F64), true);
    ag_tensor *v = ag_requires_grad_(ag_from_data((double[]){-0.25, 1}, AG_SHAPE(2, 1), AG_F64), true);
    ag_tensor *ps[2] = {w, v};
    close_to(ag_item(ag_l1_penalty(ps, 2, 0.3)), 0.3 * 5.25, 1e-15, "l1 = λΣ|w|");
    close_to(ag_item(ag_l2_penalty(ps, 2, 0.3)), 0.3 * (0.25 + 2.25 + 4 + 0.0625 + 1), 1e-15, "l2 = λΣw²");
    close_to(ag_item(ag_elastic_net_penalty(ps, 2, 0.3, 0.25)), 0.3 * (0.25 * 5.25 + 0.75 / 2 * 7.5625), 1e-15,
             "elastic net = λ(ρΣ|w| + (1 − ρ)/2·Σw²)");
    const char *names[] = {"l1", "l2", "elastic net"};
    for (int k = 0; k < 3; k++)
        ok(ag_gradcheck(penalty_fn, &k, ps, 2, NULL, NULL) == AG_OK, "%s penalty passes gradcheck", names[k]);
    ag_tensor *f = ag_ones(AG_SHAPE(2), AG_F32);
    ok(!ag_l2_penalty((ag_tensor *[]){w, f}, 2, 1) && error_is(AG_ERR_DTYPE, "parameter 1 is float32"),
       "mixed dtypes: AG_ERR_DTYPE");
    ok(!ag_l1_penalty(ps, 2, -1) && error_is(AG_ERR_ARG, "lambda"), "negative lambda: AG_ERR_ARG");
    ok(!ag_elastic_net_penalty(ps, 2, 1, 1.5) && error_is(AG_ERR_ARG, "l1_ratio"), "l1_ratio 1.5: AG_ERR_ARG");

    /* SGD's weight_decay λ is the L2 penalty λ/2·Σw² added to the loss. */
    double res[2][3];
    for (int k = 0; k < 2; k++) {
        ag_tensor *u = ag_requires_grad_(ag_from_data((double[]){0.5, -1.5, 2}, AG_SHAPE(3), AG_F64), true);
        ag_sgd_options o = ag_sgd_defaults();
        o.lr = 0.1;
        o.momentum = 0.9;
        o.weight_decay = k == 0 ? 0.2 : 0;
        ag_optimizer *opt = ag_sgd_new(&u, 1, &o);
        for (int s = 0; s < 5; s++) {
            ag_optimizer_zero_grad(opt);
            ag_scope_begin();
            ag_tensor *loss = ag_sum(ag_sin(u));
            if (k == 1) loss = ag_add(loss, ag_l2_penalty(&u, 1, 0.1));
            ag_backward(loss);
            ag_scope_end();
            ag_optimizer_step(opt);
        }
        ag_copy_to(u, res[k], 3, AG_F64);
        ag_optimizer_free(opt);
    }
    double e = 0;
    for (int i = 0; i < 3; i++) e = fmax(e, fabs(res[0][i] - res[1][i]));
    ok(e < 1e-15, "SGD weight_decay 0.2 steps as the loss plus l2_penalty(0.1) (difference %.1e)", e);
    ag_scope_end();
}

/* ---- threads: a parameter's update split over threads ------------------------------------ */
/* 8 steps of algorithm a (with the "key=value" options) on one random parameter of
 * shape [rows, n / rows] (rows 1: a vector), each from its own gradient, split over
 * two threads (split: AG_BACKEND_ACCEL, which splits from 128 elements) or on one
 * (AG_BACKEND_REFERENCE); the parameter, state buffers and per-parameter numbers into out. */
typedef struct run_state {
    ag_tensor *param, *buf[AG__OPT_BUFS];
    double scalar[AG__OPT_SCALARS];
} run_state;

static bool run_split(const algo_entry *a, const char *const *opts, ag_dtype dt, int64_t rows, int64_t n,
                      bool split, run_state *out) {
    ag_set_num_threads(2);
    ag__backend = split ? AG_BACKEND_ACCEL : AG_BACKEND_REFERENCE;
    ag_manual_seed(7);
    ag_scope_begin();
    ag_tensor *p = ag_keep(ag_requires_grad_(ag_to_dtype(ag_randn(AG_SHAPE(rows, n / rows), AG_F64), dt), true));
    ag_scope_end();
    _Alignas(max_align_t) unsigned char o[AG__OPTS_MAX];
    a->defaults(o);
    bool good = p != NULL;
    for (int i = 0; good && opts[i]; i++) good = set_option(a, o, opts[i]);
    ag_optimizer *opt = good ? a->make(&p, 1, o) : NULL;
    for (int k = 0; opt && good && k < 8; k++) { /* ∇_i = c·θ_i + k/100, c in {−1, −½, 0, ½, 1}: signs change */
        ag_tensor *g = ag__new_unowned(dt, p->ndim, p->shape, false);
        for (int64_t i = 0; g && i < n; i++) {
            double c = (double)((i * 7 + k) % 5 - 2) / 2;
            if (dt == AG_F32) ag__f32(g)[i] = (float)(c * ag__f32(p)[i] + k / 100.0);
            else ag__f64(g)[i] = c * ag__f64(p)[i] + k / 100.0;
        }
        ag_release(p->grad);
        p->grad = g;
        good = g && ag_optimizer_step(opt) == AG_OK;
    }
    good = good && opt;
    if (good) {
        out->param = ag_retain(p);
        for (int k = 0; k < AG__OPT_BUFS; k++) out->buf[k] = opt->ps[0].buf[k] ? ag_retain(opt->ps[0].buf[k]) : NULL;
        memcpy(out->scalar, opt->ps[0].scalar, sizeof out->scalar);
    }
    ag_optimizer_free(opt);
    ag_release(p);
    ag_set_num_threads(0);
    ag__backend = AG_BACKEND_AUTO;
    return good;
}

static bool same_bits(const ag_tensor *x, const ag_tensor *y) {
    if (!x || !y) return x == y;
    return ag_numel(x) == ag_numel(y) && x->dtype == y->dtype &&
           memcmp(ag_data(x), ag_data(y), (size_t)ag_numel(x) * ag_dtype_size(x->dtype)) == 0;
}

static void run_state_free(run_state *r) {
    ag_release(r->param);
    for (int k = 0; k < AG__OPT_BUFS; k++) ag_release(r->buf[k]);
}

static void test_threads(void) {
    const int64_t n = 1001; /* no multiple of the 16-element chunk grain */
    ag_set_num_threads(2);
    ag__backend = AG_BACKEND_ACCEL;
    ok(ag__threads_for(n) == 2, "AG_BACKEND_ACCEL splits a parameter of %lld elements over 2 threads", (long long)n);
    ag__backend = AG_BACKEND_AUTO;
    ag_set_num_threads(0);
    static const struct {
        const char *algo;
        const char *opts[4];
        int64_t rows;
    } runs[] = {
        {"sgd", {"momentum=0.9", "nesterov=1", "weight_decay=0.01"}, 1}, {"sgd", {"lr=0.01"}, 1},
        {"adam", {"amsgrad=1", "weight_decay=0.01"}, 1}, {"adamw", {NULL}, 1},
        {"adagrad", {"lr_decay=0.01", "weight_decay=0.01"}, 1}, {"rmsprop", {"momentum=0.5", "centered=1"}, 1},
        {"adamax", {"weight_decay=0.01"}, 1}, {"nadam", {"decoupled_weight_decay=1", "weight_decay=0.01"}, 1},
        {"radam", {NULL}, 1}, {"adadelta", {"weight_decay=0.01"}, 1}, {"rprop", {NULL}, 1},
        {"asgd", {"t0=3"}, 1}, {"muon", {NULL}, 1}, {"muon", {"weight_decay=0.01"}, 2},
        {"adafactor", {NULL}, 1}, {"adafactor", {"beta1=0.9", "weight_decay=0.01"}, 2},
        /* rows of 78: the chunks' edge (element 496) cuts row 6, which both chunks test whole */
        {"sparse_adam", {NULL}, 13}, {"sparse_adam", {"maximize=1"}, 1},
    };
    for (size_t r = 0; r < sizeof runs / sizeof *runs; r++)
        for (int d = 0; d < 2; d++) {
            ag_dtype dt = d ? AG_F64 : AG_F32;
            int64_t size = runs[r].rows == 1 ? n : (n / runs[r].rows + 1) * runs[r].rows;
            run_state one = {0}, two = {0};
            bool good = run_split(find_algo(runs[r].algo), runs[r].opts, dt, runs[r].rows, size, false, &one) &&
                        run_split(find_algo(runs[r].algo), runs[r].opts, dt, runs[r].rows, size, true, &two);
            good = good && same_bits(one.param, two.param) && memcmp(one.scalar, two.scalar, sizeof one.scalar) == 0;
            for (int k = 0; good && k < AG__OPT_BUFS; k++) good = same_bits(one.buf[k], two.buf[k]);
            ok(good, "%s %s (%s%s): 8 steps on 2 threads give the same bits as on 1 (parameter, state)",
               runs[r].algo, runs[r].opts[0] ? runs[r].opts[0] : "defaults", ag_dtype_name(dt),
               runs[r].rows > 1 ? ", a matrix" : "");
            run_state_free(&one);
            run_state_free(&two);
        }
}

/* ---- the flat update: all parameters as one buffer split over the threads ---------------------- */
/* The previous one-parameter-at-a-time scalar loops, float32, in the documented order of operations
 * (the optimizer's kernels are vectorised and split, and must give these bits). */
static void sgd_reference(float *p, const float *g, float *b, int64_t n, const ag_sgd_options *o, bool fresh) {
    const float lr = (float)o->lr, wd = (float)o->weight_decay, mu = (float)o->momentum, damp = (float)(1 - o->dampening);
    for (int64_t i = 0; i < n; i++) {
        float d = g[i];
        if (wd != 0) d += wd * p[i];
        if (b) {
            b[i] = fresh ? d : mu * b[i] + damp * d;
            d = o->nesterov ? d + mu * b[i] : b[i];
        }
        p[i] -= lr * d;
    }
}

static void adam_reference(float *p, const float *g, float *m, float *v, float *vmax, int64_t n,
                           const ag_adam_options *o, bool decoupled, int t) {
    const float b1 = (float)o->beta1, b2 = (float)o->beta2, omb1 = (float)(1 - o->beta1), omb2 = (float)(1 - o->beta2);
    const float l2 = decoupled ? 0 : (float)o->weight_decay;
    const float decay = decoupled ? (float)(1 - o->lr * o->weight_decay) : 1;
    const float step = (float)-(o->lr / (1 - pow(o->beta1, t)) * sqrt(1 - pow(o->beta2, t)));
    const float eps_bc2 = (float)(o->eps * sqrt(1 - pow(o->beta2, t)));
    for (int64_t i = 0; i < n; i++) {
        float gi = g[i];
        if (l2 != 0) gi += l2 * p[i];
        if (decay != 1) p[i] *= decay;
        m[i] = m[i] * b1 + omb1 * gi;
        v[i] = v[i] * b2 + omb2 * gi * gi;
        float vi = v[i];
        if (vmax) vi = vmax[i] = vmax[i] > vi ? vmax[i] : vi;
        p[i] += step * (m[i] / (sqrtf(vi) + eps_bc2));
    }
}

/* 5 steps of SGD (kind 0) or Adam/AdamW (kind 1, 2) with options o on parameters of 1, 17, 1001, 3000
 * and 140000 elements (the flat split's chunks start and end inside parameters) on two threads, with
 * AG_BACKEND_ACCEL (which splits from 128 elements) or the default backend (the batch is past the
 * threading threshold), against the scalar reference: the same bits. */
static bool flat_matches(int kind, const void *o, ag_backend_mode mode) {
    enum { NP = 5 };
    static const int64_t sizes[NP] = {1, 17, 1001, 3000, 140000}; /* 144019: past AG_PAR_MIN_ELEMS */
    ag_set_num_threads(2);
    ag__backend = mode;
    ag_manual_seed(11);
    ag_tensor *p[NP], *ref[NP], *st[NP][3];
    for (int k = 0; k < NP; k++) {
        p[k] = ag_requires_grad_(ag_randn(AG_SHAPE(sizes[k]), AG_F32), true);
        ref[k] = ag_clone(p[k]);
        for (int j = 0; j < 3; j++) st[k][j] = ag_zeros(AG_SHAPE(sizes[k]), AG_F32);
    }
    ag_optimizer *opt = kind == 0 ? ag_sgd_new(p, NP, o) : kind == 1 ? ag_adam_new(p, NP, o) : ag_adamw_new(p, NP, o);
    bool good = opt != NULL;
    for (int t = 1; good && t <= 5; t++) {
        for (int k = 0; k < NP; k++) {
            ag_tensor *g = ag__new_unowned(AG_F32, 1, &sizes[k], false);
            if (!g) return false;
            for (int64_t i = 0; i < sizes[k]; i++) /* ∇_i = c·θ_i + t/100, c in {−1, −½, 0, ½, 1} */
                ag__f32(g)[i] = (float)((i * 7 + t) % 5 - 2) / 2 * ag__f32(p[k])[i] + (float)t / 100;
            ag_release(p[k]->grad);
            p[k]->grad = g;
            if (kind == 0) sgd_reference(ag__f32(ref[k]), ag__f32(g), ((const ag_sgd_options *)o)->momentum ? ag__f32(st[k][0]) : NULL,
                                         sizes[k], o, t == 1);
            else {
                const ag_adam_options *ao = o;
                adam_reference(ag__f32(ref[k]), ag__f32(g), ag__f32(st[k][0]), ag__f32(st[k][1]),
                               ao->amsgrad ? ag__f32(st[k][2]) : NULL, sizes[k], ao, kind == 2, t);
            }
        }
        good = ag_optimizer_step(opt) == AG_OK;
    }
    for (int k = 0; k < NP; k++) {
        good = good && same_bits(p[k], ref[k]);
        ag_release(p[k]), ag_release(ref[k]);
        for (int j = 0; j < 3; j++) ag_release(st[k][j]);
    }
    ag_optimizer_free(opt);
    ag_set_num_threads(0);
    ag__backend = AG_BACKEND_AUTO;
    return good;
}

static void test_flat_update(void) {
    ag_sgd_options plain = ag_sgd_defaults(), wd = plain, mom = plain, nest = plain, damp = plain;
    plain.lr = 0.1, wd.weight_decay = 0.01, mom.momentum = 0.9, nest.momentum = 0.9, nest.nesterov = true;
    damp.momentum = 0.8, damp.dampening = 0.3, damp.weight_decay = 0.02;
    ag_adam_options adam = ag_adam_defaults(), adam_l2 = adam, ams = adam;
    adam_l2.weight_decay = 0.01, ams.amsgrad = true;
    ag_adamw_options adamw = ag_adamw_defaults();
    const struct { const char *name; int kind; const void *o; } runs[] = {
        {"SGD", 0, &plain}, {"SGD weight_decay", 0, &wd}, {"SGD momentum", 0, &mom}, {"SGD Nesterov", 0, &nest},
        {"SGD dampening", 0, &damp}, {"Adam", 1, &adam}, {"Adam L2", 1, &adam_l2}, {"Adam amsgrad", 1, &ams},
        {"AdamW", 2, &adamw}};
    for (size_t r = 0; r < sizeof runs / sizeof *runs; r++) {
        ok(flat_matches(runs[r].kind, runs[r].o, AG_BACKEND_ACCEL),
           "%s: 5 parameters as one flat buffer over 2 threads give the bits of the scalar loop", runs[r].name);
        ok(flat_matches(runs[r].kind, runs[r].o, AG_BACKEND_AUTO),
           "%s: 5 parameters on the default path give the bits of the scalar loop", runs[r].name);
    }
}

int main(void) {
    ag_set_allocator(failing_alloc, NULL);
    test_fixtures();
    test_sparse_and_factored();
    test_errors();
    test_groups_and_skipping();
    test_maximize_and_decoupled();
    test_no_allocation();
    test_allocation_failure();
    test_lbfgs();
    test_resume();
    test_damaged_state();
    test_clipping();
    test_penalties();
    test_threads();
    test_flat_update();
    ok(ag_live_tensors() == 0, "no tensor left alive");
    return tap_done();
}

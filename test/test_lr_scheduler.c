/*
 * Learning-rate schedulers: 31 PyTorch runs of 100 steps each
 * (test/fixtures/lr_schedules.txt, from scripts/gen_optim_fixtures.py) replayed
 * on agrad optimizers with two parameter groups, including chained schedulers
 * (stepped in a loop and as ChainedScheduler), SequentialLR, OneCycleLR's and
 * CyclicLR's momentum cycling, SWALR and ReduceLROnPlateau; then the argument errors.
 */
#include <stdlib.h>
#include <string.h>
#include "agrad/agrad.h"
#include "optim/internal.h"
#include "tap.h"
#include "state_damage.h"

#ifndef FIXTURES
#define FIXTURES "test/fixtures"
#endif

#define EPOCHS 100
#define MAX_MAKES 4

typedef struct schedule {
    char name[64], opt[8], how[16];
    int nmakes;
    char makes[MAX_MAKES][256];
    int milestones[4], nmilestones;
    double metric[EPOCHS];
    double rec[EPOCHS + 1][4]; /* lr0 lr1 momentum0 momentum1 */
    int nrec;
} schedule;

static schedule scheds[48];
static int nscheds;

static bool load(void) {
    FILE *f = fopen(FIXTURES "/lr_schedules.txt", "r");
    if (!f) return false;
    static char line[8192];
    schedule *s = NULL;
    while (fgets(line, sizeof line, f)) {
        int used = 0;
        if (line[0] == '#') continue;
        if (strncmp(line, "sched ", 6) == 0 && nscheds < 48) {
            s = &scheds[nscheds++];
            sscanf(line, "sched %63s %7s %15s", s->name, s->opt, s->how);
        } else if (s && strncmp(line, "make ", 5) == 0 && s->nmakes < MAX_MAKES) {
            snprintf(s->makes[s->nmakes++], 256, "%.250s", line + 5);
        } else if (s && strncmp(line, "milestones ", 11) == 0) {
            char *p = line + 11;
            while (s->nmilestones < 4 && sscanf(p, "%d%n", &s->milestones[s->nmilestones], &used) == 1) {
                s->nmilestones++;
                p += used;
            }
        } else if (s && strncmp(line, "metric ", 7) == 0) {
            char *p = line + 7;
            for (int k = 0; k < EPOCHS; k++) s->metric[k] = strtod(p, &p);
        } else if (s && strncmp(line, "end", 3) == 0) {
            s = NULL;
        } else if (s && s->nrec <= EPOCHS) {
            char *p = line;
            for (int k = 0; k < 4; k++) s->rec[s->nrec][k] = strtod(p, &p);
            s->nrec++;
        }
    }
    fclose(f);
    return nscheds > 0;
}

/* The number after key= in "k=v k=v" text (0 if absent). */
static double arg(const char *text, const char *key) {
    char pat[64];
    snprintf(pat, sizeof pat, " %s=", key);
    char buf[300];
    snprintf(buf, sizeof buf, " %s", text);
    const char *p = strstr(buf, pat);
    return p ? strtod(p + strlen(pat), NULL) : 0;
}

/* The text value of key (at most 31 characters) in out[32]. */
static const char *arg_str(const char *text, const char *key, char *out) {
    char pat[64];
    snprintf(pat, sizeof pat, "%s=", key);
    const char *p = strstr(text, pat);
    out[0] = 0;
    if (p) sscanf(p + strlen(pat), "%31[^ \n]", out);
    return out;
}

static double lambda_fn(int64_t epoch, int group, void *ctx) {
    (void)ctx;
    return group == 0 ? 1 / (1 + 0.05 * (double)epoch) : pow(0.97, (double)epoch);
}

static double multiplicative_fn(int64_t epoch, int group, void *ctx) {
    (void)ctx;
    return group == 0 ? 0.95 : 1 - 0.002 * (double)(epoch % 5);
}

static ag_scheduler *make(ag_optimizer *opt, const char *line) {
    char kind[64], s[32];
    sscanf(line, "%63s", kind);
    const char *a = line + strlen(kind);
    if (!strcmp(kind, "step_lr")) return ag_step_lr_new(opt, (int)arg(a, "step_size"), arg(a, "gamma"));
    if (!strcmp(kind, "multistep_lr")) {
        int ms[8], n = 0, used;
        const char *p = strstr(a, "milestones=") + 11;
        while (n < 8 && sscanf(p, "%d%n", &ms[n], &used) == 1) {
            n++;
            p += used;
            if (*p != ',') break;
            p++;
        }
        return ag_multistep_lr_new(opt, ms, n, arg(a, "gamma"));
    }
    if (!strcmp(kind, "exponential_lr")) return ag_exponential_lr_new(opt, arg(a, "gamma"));
    if (!strcmp(kind, "cosine_annealing_lr")) return ag_cosine_annealing_lr_new(opt, (int)arg(a, "T_max"), arg(a, "eta_min"));
    if (!strcmp(kind, "cosine_annealing_warm_restarts"))
        return ag_cosine_annealing_warm_restarts_new(opt, (int)arg(a, "T_0"), (int)arg(a, "T_mult"), arg(a, "eta_min"));
    if (!strcmp(kind, "linear_lr"))
        return ag_linear_lr_new(opt, arg(a, "start_factor"), arg(a, "end_factor"), (int)arg(a, "total_iters"));
    if (!strcmp(kind, "polynomial_lr")) return ag_polynomial_lr_new(opt, (int)arg(a, "total_iters"), arg(a, "power"));
    if (!strcmp(kind, "lambda_lr")) return ag_lambda_lr_new(opt, lambda_fn, NULL);
    if (!strcmp(kind, "one_cycle_lr")) {
        ag_one_cycle_options o = ag_one_cycle_defaults();
        o.max_lr = arg(a, "max_lr");
        o.total_steps = (int)arg(a, "total_steps");
        o.pct_start = arg(a, "pct_start");
        o.anneal_strategy = !strcmp(arg_str(a, "anneal", s), "linear") ? AG_ANNEAL_LINEAR : AG_ANNEAL_COS;
        o.div_factor = arg(a, "div_factor");
        o.final_div_factor = arg(a, "final_div_factor");
        o.three_phase = arg(a, "three_phase") != 0;
        return ag_one_cycle_lr_new(opt, &o);
    }
    if (!strcmp(kind, "constant_lr")) return ag_constant_lr_new(opt, arg(a, "factor"), (int)arg(a, "total_iters"));
    if (!strcmp(kind, "multiplicative_lr")) return ag_multiplicative_lr_new(opt, multiplicative_fn, NULL);
    if (!strcmp(kind, "power_lr")) return ag_power_lr_new(opt, arg(a, "s"), arg(a, "c"));
    if (!strcmp(kind, "noam_lr")) return ag_noam_lr_new(opt, (int)arg(a, "d_model"), (int)arg(a, "warmup_steps"));
    if (!strcmp(kind, "cyclic_lr")) {
        ag_cyclic_options o = ag_cyclic_defaults();
        o.base_lr = arg(a, "base_lr");
        o.max_lr = arg(a, "max_lr");
        o.step_size_up = (int)arg(a, "step_size_up");
        o.step_size_down = (int)arg(a, "step_size_down");
        arg_str(a, "mode", s);
        o.mode = !strcmp(s, "triangular2") ? AG_CYCLIC_TRIANGULAR2 : !strcmp(s, "exp_range") ? AG_CYCLIC_EXP_RANGE
                                                                                             : AG_CYCLIC_TRIANGULAR;
        o.gamma = arg(a, "gamma");
        o.cycle_momentum = arg(a, "cycle_momentum") != 0;
        o.base_momentum = arg(a, "base_momentum");
        o.max_momentum = arg(a, "max_momentum");
        return ag_cyclic_lr_new(opt, &o);
    }
    if (!strcmp(kind, "swa_lr"))
        return ag_swa_lr_new(opt, arg(a, "swa_lr"), (int)arg(a, "anneal_epochs"),
                             !strcmp(arg_str(a, "anneal", s), "linear") ? AG_ANNEAL_LINEAR : AG_ANNEAL_COS);
    if (!strcmp(kind, "reduce_lr_on_plateau")) {
        ag_plateau_options o = ag_plateau_defaults();
        o.mode = !strcmp(arg_str(a, "mode", s), "max") ? AG_PLATEAU_MAX : AG_PLATEAU_MIN;
        o.factor = arg(a, "factor");
        o.patience = (int)arg(a, "patience");
        o.threshold = arg(a, "threshold");
        o.threshold_mode = !strcmp(arg_str(a, "threshold_mode", s), "abs") ? AG_THRESHOLD_ABS : AG_THRESHOLD_REL;
        o.cooldown = (int)arg(a, "cooldown");
        o.min_lr = arg(a, "min_lr");
        return ag_reduce_lr_on_plateau_new(opt, &o);
    }
    return NULL;
}

/* Two groups as in the generator: SGD lr 0.1 / 0.05 with momentum 0.9, or Adam lr 0.01 / 0.002. */
static ag_optimizer *make_optimizer(const char *kind, ag_tensor *W, ag_tensor *b) {
    if (!strcmp(kind, "sgd")) {
        ag_sgd_options o = ag_sgd_defaults();
        o.lr = 0.1;
        o.momentum = 0.9;
        ag_optimizer *opt = ag_sgd_new(&W, 1, &o);
        o.lr = 0.05;
        ag_optimizer_add_param_group(opt, &b, 1, &o);
        return opt;
    }
    ag_adam_options o = ag_adam_defaults();
    o.lr = 0.01;
    ag_optimizer *opt = ag_adam_new(&W, 1, &o);
    o.lr = 0.002;
    ag_optimizer_add_param_group(opt, &b, 1, &o);
    return opt;
}

static double rel_err(double a, double b) { return fabs(a - b) / fmax(fabs(b), 1e-300); }

/* The optimizer and schedulers of a schedule, as the generator made them. */
typedef struct setup {
    ag_optimizer *opt;
    ag_scheduler *s[MAX_MAKES];
    int n;
} setup;

static bool setup_new(const schedule *sc, ag_tensor *W, ag_tensor *b, setup *u) {
    memset(u, 0, sizeof *u);
    u->opt = make_optimizer(sc->opt, W, b);
    bool good = u->opt != NULL;
    for (int i = 0; good && i < sc->nmakes; i++) good = (u->s[u->n++] = make(u->opt, sc->makes[i])) != NULL;
    if (good && !strcmp(sc->how, "sequential")) {
        ag_scheduler *seq = ag_sequential_lr_new(u->opt, u->s, u->n, sc->milestones);
        memset(u->s, 0, sizeof u->s);
        good = (u->s[0] = seq) != NULL;
        u->n = 1;
    }
    if (good && !strcmp(sc->how, "chained")) {
        ag_scheduler *chain = ag_chained_scheduler_new(u->s, u->n);
        memset(u->s, 0, sizeof u->s);
        good = (u->s[0] = chain) != NULL;
        u->n = 1;
    }
    return good;
}

static void setup_free(setup *u) {
    for (int i = 0; i < u->n; i++) ag_scheduler_free(u->s[i]);
    ag_optimizer_free(u->opt);
}

/* Saves optimizer and schedulers, makes them again and loads the saved state. */
static bool setup_resume(const schedule *sc, ag_tensor *W, ag_tensor *b, setup *u) {
    ag_state_dict *sd[MAX_MAKES + 1] = {0};
    bool good = true;
    for (int i = 0; i <= u->n; i++) {
        sd[i] = ag_state_dict_new();
        good &= i == u->n ? ag_optimizer_state_dict(u->opt, sd[i]) == AG_OK : ag_scheduler_state_dict(u->s[i], sd[i]) == AG_OK;
    }
    int n = u->n;
    setup_free(u);
    good = good && setup_new(sc, W, b, u) && u->n == n && ag_optimizer_load_state_dict(u->opt, sd[n]) == AG_OK;
    for (int i = 0; good && i < n; i++) good = ag_scheduler_load_state_dict(u->s[i], sd[i]) == AG_OK;
    for (int i = 0; i <= n; i++) ag_state_dict_free(sd[i]);
    return good;
}

/* Replays one schedule, saving and resuming after epoch resume_at (-1: never); the
 * largest relative error over lrs and momenta. */
static double replay(const schedule *sc, int resume_at) {
    ag_scope_begin();
    ag_tensor *W = ag_requires_grad_(ag_zeros(AG_SHAPE(3, 2), AG_F64), true);
    ag_tensor *b = ag_requires_grad_(ag_zeros(AG_SHAPE(2), AG_F64), true);
    setup u;
    bool good = setup_new(sc, W, b, &u);
    const char *mom = !strcmp(sc->opt, "sgd") ? "momentum" : "beta1";
    double worst = 0;
    for (int k = 0; good && k <= EPOCHS; k++) {
        if (k > 0) {
            ag_optimizer_step(u.opt);
            for (int i = 0; i < u.n; i++)
                good &= (!strcmp(sc->how, "plateau") ? ag_scheduler_step_metric(u.s[i], sc->metric[k - 1])
                                                     : ag_scheduler_step(u.s[i])) == AG_OK;
        }
        double v[4] = {ag_optimizer_get_lr(u.opt, 0), ag_optimizer_get_lr(u.opt, 1)};
        ag_optimizer_get(u.opt, 0, mom, &v[2]);
        ag_optimizer_get(u.opt, 1, mom, &v[3]);
        for (int j = 0; j < 4; j++) worst = fmax(worst, rel_err(v[j], sc->rec[k][j]));
        for (int j = 0; j < 2; j++) worst = fmax(worst, rel_err(ag_scheduler_get_last_lr(u.s[u.n - 1], j), sc->rec[k][j]));
        if (k == resume_at) good = setup_resume(sc, W, b, &u);
    }
    if (!good) {
        diag("%s: %s", sc->name, ag_last_error());
        worst = INFINITY;
    }
    setup_free(&u);
    ag_scope_end();
    return worst;
}

static void test_fixtures(void) {
    bool loaded = load();
    ok(loaded, "read %d PyTorch schedules from lr_schedules.txt", nscheds);
    double worst = 0;
    for (int i = 0; i < nscheds; i++) {
        double e = replay(&scheds[i], -1);
        ok(e <= 1e-5 && scheds[i].nrec == EPOCHS + 1, "%s (%s, %s): %d steps of lr%s match PyTorch, max relative error %.2e",
           scheds[i].name, scheds[i].opt, scheds[i].how, EPOCHS,
           strstr(scheds[i].name, "one_cycle") || strstr(scheds[i].name, "cyclic_tri") ? " and momentum" : "", e);
        worst = fmax(worst, e);
    }
    diag("worst relative error over all schedules: %.2e", worst);
    for (int i = 0; i < nscheds; i++) {
        double e = replay(&scheds[i], 37);
        ok(e == 0, "%s: saved after epoch 37 and loaded into a fresh optimizer and schedulers, the remaining "
                   "steps are unchanged (max relative error %.1e)", scheds[i].name, e);
    }
}

/* ---- checkpoints written before schedulers were descriptor rows ------------------------------------
 * test/fixtures/sched_sequential_v1.safetensors and sched_plateau_v1.safetensors were
 * written by agrad at commit 706482a, whose scheduler state saved every counter (T_i,
 * T_cur, best, num_bad_epochs, cooldown_counter) for every kind: the optimizer and
 * scheduler state of the two runs below, after 14 steps and 9 metrics. */
#define OLD_STEPS 14
#define OLD_METRICS 9
#define MORE 25

static double old_metric(int k) { return k < 4 ? 1.0 - 0.1 * k : 0.7 + 0.01 * (k % 3); }

/* SequentialLR over StepLR(3, 0.5), CosineAnnealingWarmRestarts(4, 2, 0.001) and
 * LinearLR(0.5, 1, 5) at milestones 5 and 30 on two SGD groups (lr 0.1 / 0.05), or
 * ReduceLROnPlateau (patience 2, cooldown 1, factor 0.5) on two Adam groups (0.01 / 0.002). */
static ag_scheduler *old_run_new(bool plateau, ag_tensor *W, ag_tensor *b, ag_optimizer **opt) {
    *opt = make_optimizer(plateau ? "adam" : "sgd", W, b);
    if (plateau) {
        ag_plateau_options po = ag_plateau_defaults();
        po.patience = 2, po.cooldown = 1, po.factor = 0.5;
        return ag_reduce_lr_on_plateau_new(*opt, &po);
    }
    ag_scheduler *kids[3] = {ag_step_lr_new(*opt, 3, 0.5), ag_cosine_annealing_warm_restarts_new(*opt, 4, 2, 0.001),
                             ag_linear_lr_new(*opt, 0.5, 1.0, 5)};
    return ag_sequential_lr_new(*opt, kids, 3, (int[]){5, 30});
}

static bool old_step(ag_scheduler *s, bool plateau, int k) {
    return (plateau ? ag_scheduler_step_metric(s, old_metric(k)) : ag_scheduler_step(s)) == AG_OK;
}

/* The lrs of both groups and the epoch counter after each of the MORE steps that follow
 * `done` steps: from a run that did them all (sd NULL), or from a fresh one loaded from sd. */
static bool old_run_more(bool plateau, const ag_state_dict *sd, double lrs[MORE][3]) {
    ag_scope_begin();
    ag_tensor *W = ag_requires_grad_(ag_zeros(AG_SHAPE(3, 2), AG_F64), true);
    ag_tensor *b = ag_requires_grad_(ag_zeros(AG_SHAPE(2), AG_F64), true);
    ag_optimizer *opt;
    ag_scheduler *s = old_run_new(plateau, W, b, &opt);
    int done = plateau ? OLD_METRICS : OLD_STEPS;
    bool good = s != NULL;
    if (sd) good = good && ag_optimizer_load_state_dict(opt, sd) == AG_OK && ag_scheduler_load_state_dict(s, sd) == AG_OK;
    for (int k = 0; !sd && good && k < done; k++) good = old_step(s, plateau, k);
    for (int k = 0; good && k < MORE; k++) {
        good = old_step(s, plateau, done + k);
        lrs[k][0] = ag_optimizer_get_lr(opt, 0);
        lrs[k][1] = ag_optimizer_get_lr(opt, 1);
        lrs[k][2] = (double)ag_scheduler_last_epoch(s);
    }
    if (!good) diag("%s", ag_last_error());
    ag_scheduler_free(s);
    ag_optimizer_free(opt);
    ag_scope_end();
    return good;
}

static void test_old_checkpoints(void) {
    const char *files[2] = {FIXTURES "/sched_sequential_v1.safetensors", FIXTURES "/sched_plateau_v1.safetensors"};
    for (int plateau = 0; plateau < 2; plateau++) {
        ag_state_dict *sd = ag_load_safetensors(files[plateau]);
        ok(sd && ag__sd_find(sd, plateau ? "scheduler.T_i" : "scheduler.schedulers.0.best"),
           "%s holds the old format (every counter for every kind)", files[plateau]);
        double want[MORE][3], got[MORE][3];
        bool good = sd && old_run_more(plateau, NULL, want) && old_run_more(plateau, sd, got);
        ok(good && memcmp(want, got, sizeof want) == 0,
           "%s loads into a fresh optimizer and scheduler whose next %d steps are those of the run that wrote it",
           plateau ? "ReduceLROnPlateau" : "SequentialLR(StepLR, CosineAnnealingWarmRestarts, LinearLR)", MORE);
        ag_state_dict_free(sd);
    }
}

/* Loads dict into s: true when refused with AG_ERR_VALUE naming name and s is unchanged. */
static bool refused(ag_scheduler *s, const ag_state_dict *sd, const char *name, ag_tensor *bad) {
    ag_state_dict *dmg = dict_with(sd, name, bad), *after = ag_state_dict_new();
    ag_clear_error();
    ag_status st = ag_scheduler_load_state_dict(s, dmg);
    ag_scheduler_state_dict(s, after);
    bool good = st == AG_ERR_VALUE && strstr(ag_last_error(), name) && same_dicts(sd, after);
    if (!good) diag("%s: status %d: %s", name, st, ag_last_error());
    ag_state_dict_free(after);
    ag_state_dict_free(dmg);
    ag_release(bad);
    return good;
}

/* Every saved counter and lr of every schedule, set to NaN, is refused by name and changes
 * nothing; so are the values of the report (last_epoch -1e18, ...). */
static void test_damaged_state(void) {
    int loads = 0, good = 0;
    char last[160] = "";
    for (int k = 0; k < nscheds; k++) {
        const schedule *sc = &scheds[k];
        ag_scope_begin();
        ag_tensor *W = ag_requires_grad_(ag_zeros(AG_SHAPE(3, 2), AG_F64), true);
        ag_tensor *b = ag_requires_grad_(ag_zeros(AG_SHAPE(2), AG_F64), true);
        setup u;
        if (setup_new(sc, W, b, &u))
            for (int e = 0; e < 37; e++)
                for (int i = 0; i < u.n; i++)
                    !strcmp(sc->how, "plateau") ? ag_scheduler_step_metric(u.s[i], sc->metric[e]) : ag_scheduler_step(u.s[i]);
        for (int i = 0; i < u.n; i++) {
            ag_state_dict *sd = ag_state_dict_new();
            ag_scheduler_state_dict(u.s[i], sd);
            for (int j = 0; j < ag_state_dict_size(sd); j++) {
                const char *name = ag_state_dict_name(sd, j);
                size_t len = strlen(name);
                if ((len >= 4 && !strcmp(name + len - 4, "kind")) || strstr(name, "ngroups") || strstr(name, "nchildren"))
                    continue;
                loads++;
                good += refused(u.s[i], sd, name, damaged(ag_state_dict_tensor(sd, j), NAN));
                snprintf(last, sizeof last, "%s", name);
            }
            ag_state_dict_free(sd);
        }
        setup_free(&u);
        ag_scope_end();
    }
    ok(loads > 100 && good == loads, "NaN in each of %d saved numbers of %d schedules (the last %s) is refused by name, "
                                     "changing nothing (%d)", loads, nscheds, last, good);

    static const struct {
        const char *make, *name, *message;
        double value;
    } cases[] = {
        {"step_lr step_size=3 gamma=0.5", "scheduler.last_epoch", "StepLR load_state_dict: scheduler.last_epoch is -1e+18, expected a whole number >= -1", -1e18},
        {"step_lr step_size=3 gamma=0.5", "scheduler.step_count", "StepLR load_state_dict: scheduler.step_count is 2.5, expected a whole number >= 0", 2.5},
        {"step_lr step_size=3 gamma=0.5", "scheduler.base_lrs.1", "StepLR load_state_dict: scheduler.base_lrs.1 is -0.01, expected a finite number >= 0", -0.01},
        {"step_lr step_size=3 gamma=0.5", "scheduler.last_lr.0", "StepLR load_state_dict: scheduler.last_lr.0 is inf, expected a finite number >= 0", INFINITY},
        {"cosine_annealing_warm_restarts T_0=5 T_mult=2 eta_min=0.001", "scheduler.T_i", "CosineAnnealingWarmRestarts load_state_dict: scheduler.T_i is 0, expected a finite number >= 1", 0},
        {"reduce_lr_on_plateau mode=min factor=0.5 patience=3 threshold=0.0001 threshold_mode=rel cooldown=2 min_lr=0.01", "scheduler.num_bad_epochs", "ReduceLROnPlateau load_state_dict: scheduler.num_bad_epochs is -1, expected a whole number in [0, 2147483647]", -1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        ag_scope_begin();
        ag_tensor *W = ag_requires_grad_(ag_zeros(AG_SHAPE(3, 2), AG_F64), true);
        ag_tensor *b = ag_requires_grad_(ag_zeros(AG_SHAPE(2), AG_F64), true);
        ag_optimizer *opt = make_optimizer("adam", W, b);
        ag_scheduler *s = make(opt, cases[i].make);
        ag_state_dict *sd = ag_state_dict_new();
        ag_scheduler_state_dict(s, sd);
        ok(s && refused(s, sd, cases[i].name, damaged(ag_state_dict_get(sd, cases[i].name), cases[i].value)) &&
               strcmp(ag_last_error(), cases[i].message) == 0,
           "%s", ag_last_error());
        ag_state_dict_free(sd);
        ag_scheduler_free(s);
        ag_optimizer_free(opt);
        ag_scope_end();
    }
}

static bool error_is(ag_status want, const char *needle) {
    bool r = ag_last_status() == want && strstr(ag_last_error(), needle) != NULL;
    if (!r) diag("got %s: %s", ag_status_name(ag_last_status()), ag_last_error());
    ag_clear_error();
    return r;
}

static void test_errors(void) {
    ag_scope_begin();
    ag_tensor *w = ag_requires_grad_(ag_zeros(AG_SHAPE(2), AG_F32), true);
    ag_optimizer *opt = ag_sgd_new(&w, 1, NULL);
    ag_optimizer *other = ag_sgd_new(&w, 1, NULL);
    ok(!ag_step_lr_new(NULL, 3, 0.1) && error_is(AG_ERR_ARG, "StepLR: optimizer is NULL"), "no optimizer: AG_ERR_ARG");
    ok(!ag_step_lr_new(opt, 0, 0.1) && error_is(AG_ERR_ARG, "step_size must be at least 1"), "step_size 0: AG_ERR_ARG");
    ok(!ag_exponential_lr_new(opt, NAN) && error_is(AG_ERR_ARG, "ExponentialLR: invalid gamma: nan"), "NaN gamma: AG_ERR_ARG");
    ok(!ag_linear_lr_new(opt, 0, 1, 5) && error_is(AG_ERR_ARG, "start_factor"), "start_factor 0: AG_ERR_ARG");
    ok(!ag_lambda_lr_new(opt, NULL, NULL) && error_is(AG_ERR_ARG, "lambda is NULL"), "no lambda: AG_ERR_ARG");
    ag_one_cycle_options oc = ag_one_cycle_defaults();
    oc.max_lr = 0.1;
    ok(!ag_one_cycle_lr_new(opt, &oc) && error_is(AG_ERR_ARG, "total_steps"), "OneCycleLR without total_steps: AG_ERR_ARG");
    oc.total_steps = 10;
    ag_adagrad_options ao = ag_adagrad_defaults();
    ag_optimizer *ada = ag_adagrad_new(&w, 1, &ao);
    ok(!ag_one_cycle_lr_new(ada, &oc) && error_is(AG_ERR_ARG, "no momentum or beta1"),
       "OneCycleLR cycling momentum on Adagrad: AG_ERR_ARG");
    ag_scheduler *one = ag_one_cycle_lr_new(opt, &oc);
    for (int i = 0; i < 10; i++) ag_scheduler_step(one);
    ok(ag_scheduler_step(one) == AG_ERR_VALUE && error_is(AG_ERR_VALUE, "tried to step 12 times"),
       "OneCycleLR past total_steps: AG_ERR_VALUE");
    ag_scheduler_free(one);
    ag_plateau_options po = ag_plateau_defaults();
    po.factor = 1;
    ok(!ag_reduce_lr_on_plateau_new(opt, &po) && error_is(AG_ERR_ARG, "factor"), "plateau factor 1: AG_ERR_ARG");
    po = ag_plateau_defaults();
    po.cooldown = -1;
    ok(!ag_reduce_lr_on_plateau_new(opt, &po) &&
           error_is(AG_ERR_ARG, "ReduceLROnPlateau: cooldown must be at least 0, got -1"),
       "plateau cooldown -1: AG_ERR_ARG");
    ok(!ag_cosine_annealing_warm_restarts_new(opt, 2, 0, 0) &&
           error_is(AG_ERR_ARG, "CosineAnnealingWarmRestarts: T_mult must be at least 1, got 0"),
       "warm restarts with T_mult 0: AG_ERR_ARG");
    oc.max_lr = -1;
    ok(!ag_one_cycle_lr_new(opt, &oc) && error_is(AG_ERR_ARG, "OneCycleLR: invalid max_lr: -1"),
       "OneCycleLR with a negative max_lr: AG_ERR_ARG");
    po = ag_plateau_defaults();
    ag_scheduler *pl = ag_reduce_lr_on_plateau_new(opt, &po);
    ok(ag_scheduler_step(pl) == AG_ERR_ARG && error_is(AG_ERR_ARG, "needs the metric"), "plateau step without metric");
    ag_state_dict *pd = ag_state_dict_new();
    ok(ag_scheduler_step_metric(pl, NAN) == AG_OK && ag_scheduler_state_dict(pl, pd) == AG_OK &&
           ag_state_dict_get_scalar(pd, "scheduler.num_bad_epochs") == 1,
       "a NaN metric counts as no improvement");
    ag_state_dict_set_scalar(pd, "scheduler.num_bad_epochs", 2.5);
    ag_state_dict_set_scalar(pd, "scheduler.last_epoch", 7);
    ok(ag_scheduler_load_state_dict(pl, pd) == AG_ERR_VALUE &&
           error_is(AG_ERR_VALUE, "ReduceLROnPlateau load_state_dict: scheduler.num_bad_epochs is 2.5, expected a whole "
                                  "number in [0, 2147483647]") &&
           ag_scheduler_last_epoch(pl) == 1,
       "a fractional counter in a scheduler state: AG_ERR_VALUE naming it, and nothing loaded");
    ag_state_dict_free(pd);
    ag_scheduler *a = ag_step_lr_new(opt, 2, 0.5), *b = ag_exponential_lr_new(other, 0.5);
    ok(!ag_sequential_lr_new(opt, (ag_scheduler *[]){a, b}, 2, (int[]){3}) && error_is(AG_ERR_ARG, "another optimizer"),
       "SequentialLR over two optimizers: AG_ERR_ARG (and it frees them)");
    ag_scheduler *c = ag_step_lr_new(opt, 2, 0.5), *d = ag_exponential_lr_new(opt, 0.5);
    ok(!ag_sequential_lr_new(opt, (ag_scheduler *[]){c, d}, 2, (int[]){0}) && error_is(AG_ERR_ARG, "milestones"),
       "SequentialLR with milestone 0: AG_ERR_ARG");
    ok(!ag_constant_lr_new(opt, 0, 5) && error_is(AG_ERR_ARG, "ConstantLR: invalid factor (must be in (0, 1]): 0"),
       "ConstantLR factor 0: AG_ERR_ARG");
    ok(!ag_multiplicative_lr_new(opt, NULL, NULL) && error_is(AG_ERR_ARG, "MultiplicativeLR: the lr lambda is NULL"),
       "MultiplicativeLR without a lambda: AG_ERR_ARG");
    ok(!ag_power_lr_new(opt, 0, -0.5) && error_is(AG_ERR_ARG, "PowerLR: invalid s (must be > 0): 0"), "power s 0: AG_ERR_ARG");
    ok(!ag_noam_lr_new(opt, 512, 0) && error_is(AG_ERR_ARG, "NoamLR: warmup_steps must be at least 1, got 0"),
       "Noam warmup 0: AG_ERR_ARG");
    ok(!ag_swa_lr_new(opt, 0.1, 5, (ag_anneal)7) && error_is(AG_ERR_ARG, "SWALR: anneal_strategy"),
       "SWALR with an unknown anneal strategy: AG_ERR_ARG");
    ok(!ag_swa_lr_new(opt, 0.1, -1, AG_ANNEAL_COS) && error_is(AG_ERR_ARG, "SWALR: anneal_epochs must be at least 0, got -1"),
       "SWALR anneal_epochs -1: AG_ERR_ARG");
    ag_cyclic_options co = ag_cyclic_defaults();
    co.base_lr = 0.01, co.max_lr = 0.1;
    ok(!ag_cyclic_lr_new(ada, &co) && error_is(AG_ERR_ARG, "CyclicLR: Adagrad has no momentum or beta1 to cycle"),
       "CyclicLR cycling momentum on Adagrad: AG_ERR_ARG");
    co.mode = (ag_cyclic_mode)9;
    ok(!ag_cyclic_lr_new(opt, &co) && error_is(AG_ERR_ARG, "CyclicLR: mode must be"), "CyclicLR unknown mode: AG_ERR_ARG");
    co = ag_cyclic_defaults();
    co.base_lr = 0.01, co.max_lr = 0.1, co.step_size_up = 0;
    ok(!ag_cyclic_lr_new(opt, &co) && error_is(AG_ERR_ARG, "CyclicLR: step_size_up must be at least 1, got 0"),
       "CyclicLR step_size_up 0: AG_ERR_ARG");
    ag_scheduler *e1 = ag_step_lr_new(opt, 2, 0.5), *e2 = ag_exponential_lr_new(other, 0.5);
    ok(!ag_chained_scheduler_new((ag_scheduler *[]){e1, e2}, 2) && error_is(AG_ERR_ARG, "another optimizer"),
       "ChainedScheduler over two optimizers: AG_ERR_ARG (and it frees them)");
    ok(!ag_chained_scheduler_new(NULL, 0) && error_is(AG_ERR_ARG, "ChainedScheduler: needs at least one scheduler"),
       "ChainedScheduler of nothing: AG_ERR_ARG");
    ag_scheduler *e3 = ag_step_lr_new(opt, 2, 0.5);
    ok(!ag_chained_scheduler_new((ag_scheduler *[]){e3, e3}, 2) && error_is(AG_ERR_ARG, "listed twice"),
       "ChainedScheduler with one scheduler twice: AG_ERR_ARG (freed once)");
    ag_scheduler *pc = ag_reduce_lr_on_plateau_new(opt, &po);
    ag_scheduler *chained_pl = ag_chained_scheduler_new((ag_scheduler *[]){ag_exponential_lr_new(opt, 0.5), pc}, 2);
    double lr_before = ag_optimizer_get_lr(opt, 0);
    ok(chained_pl && ag_scheduler_step_metric(chained_pl, 1.0) == AG_OK &&
           ag_scheduler_get_last_lr(chained_pl, 0) == lr_before * 0.5 && ag_scheduler_last_epoch(chained_pl) == 1,
       "ChainedScheduler passes a metric step to each (ExponentialLR, ReduceLROnPlateau)");
    ag_scheduler_free(chained_pl);
    ok(isnan(ag_scheduler_get_last_lr(pl, 1)) && error_is(AG_ERR_INDEX, "group 1"), "last lr of a missing group");
    ag_scheduler_free(pl);
    ok(ag_scheduler_step(NULL) == AG_ERR_ARG, "step(NULL): AG_ERR_ARG");
    ag_clear_error();
    ag_optimizer_free(ada);
    ag_optimizer_free(other);
    ag_optimizer_free(opt);
    ag_scope_end();
}

int main(void) {
    test_fixtures();
    test_old_checkpoints();
    test_errors();
    test_damaged_state();
    ok(ag_live_tensors() == 0, "no tensor left alive");
    return tap_done();
}

/*
 * state_dict.c - saving and restoring optimizers and schedulers for an exact
 * resume, in an ag_state_dict (and so in a safetensors file).
 *
 * Optimizer entries, PyTorch style: "algorithm" (the ag_optim_kind);
 * "param_groups.<g>.<hyperparameter>", ".initial_lr" and ".params" (int64
 * indices of the group's parameters); "state.<i>.step", "state.<i>.<buffer>"
 * (float copies of the parameter's shape) and "state.<i>.<number>"; plus what
 * the algorithm keeps globally (LBFGS: "state.0.d", ".old_dirs"...).  Loading
 * checks everything and builds the new state aside before changing anything.
 * Scheduler entries start with "scheduler.".
 */
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include "core/iter.h"
#include "io/state.h"
#include "optim/scheduler.h"

#define NAME_MAX_LEN 160

static void vname(char *buf, const char *fmt, va_list ap) { vsnprintf(buf, NAME_MAX_LEN, fmt, ap); }

ag_tensor *ag__sd_find(const ag_state_dict *sd, const char *fmt, ...) {
    char name[NAME_MAX_LEN];
    va_list ap;
    va_start(ap, fmt);
    vname(name, fmt, ap);
    va_end(ap);
    return ag__state_dict_find(sd, name);
}

bool ag__sd_scalar(const ag_state_dict *sd, double *v, const char *fmt, ...) {
    char name[NAME_MAX_LEN];
    va_list ap;
    va_start(ap, fmt);
    vname(name, fmt, ap);
    va_end(ap);
    ag_tensor *t = ag__sd_find(sd, "%s", name);
    if (!t || ag_numel(t) != 1 || (t->dtype != AG_F32 && t->dtype != AG_F64 && t->dtype != AG_I64)) return false;
    *v = ag_item(t);
    return true;
}

ag_status ag__sd_put_scalar(ag_state_dict *sd, double v, const char *fmt, ...) {
    char name[NAME_MAX_LEN];
    va_list ap;
    va_start(ap, fmt);
    vname(name, fmt, ap);
    va_end(ap);
    return ag_state_dict_set_scalar(sd, name, v);
}

/* Stores t (a new tensor owned by the caller) under name, dropping the caller's reference. */
static ag_status put_owned(ag_state_dict *sd, const char *name, ag_tensor *t) {
    if (!t) return AG_ERR_NOMEM;
    ag_status st = ag_state_dict_set(sd, name, t);
    ag_release(t);
    return st;
}

ag_status ag__sd_put_f64(ag_state_dict *sd, const double *data, int ndim, const int64_t *shape, const char *fmt, ...) {
    char name[NAME_MAX_LEN];
    va_list ap;
    va_start(ap, fmt);
    vname(name, fmt, ap);
    va_end(ap);
    ag_tensor *t = ag__new_unowned(AG_F64, ndim, shape, false);
    if (t) memcpy(ag__ptr(t), data, sizeof(double) * (size_t)ag_numel(t));
    return put_owned(sd, name, t);
}

/* ---- optimizers ------------------------------------------------------------------------------------ */
static ag_status put_copy(ag_state_dict *sd, const ag_tensor *t, const char *name) {
    ag_tensor *c = ag__new_unowned(t->dtype, t->ndim, t->shape, false);
    if (c) memcpy(ag__ptr(c), ag__ptr(t), (size_t)ag_numel(t) * ag_dtype_size(t->dtype));
    return put_owned(sd, name, c);
}

ag_status ag_optimizer_state_dict(const ag_optimizer *opt, ag_state_dict *sd) {
    if (!opt || !sd) return ag__fail(AG_ERR_ARG, "optimizer_state_dict: NULL optimizer or dict");
    const ag__optim_algo *a = opt->algo;
    ag_status st = ag__sd_put_scalar(sd, a->kind, "algorithm");
    char name[NAME_MAX_LEN];
    int first = 0;
    for (int g = 0; st == AG_OK && g < opt->ngroups; g++) {
        for (const ag__optim_field *f = a->fields; st == AG_OK && f->name; f++)
            st = ag__sd_put_scalar(sd, ag__optim_field_get(opt->groups[g].opts, f), "param_groups.%d.%s", g, f->name);
        if (st == AG_OK && !isnan(opt->groups[g].initial_lr))
            st = ag__sd_put_scalar(sd, opt->groups[g].initial_lr, "param_groups.%d.initial_lr", g);
        int count = 0;
        while (first + count < opt->nparams && opt->ps[first + count].group == g) count++;
        ag_tensor *idx = ag__new_unowned(AG_I64, 1, (int64_t[]){count}, false);
        for (int i = 0; idx && i < count; i++) ((int64_t *)ag__ptr(idx))[i] = first + i;
        snprintf(name, sizeof name, "param_groups.%d.params", g);
        if (st == AG_OK) st = put_owned(sd, name, idx);
        else ag_release(idx);
        first += count;
    }
    for (int i = 0; st == AG_OK && i < opt->nparams; i++) {
        const ag__pstate *ps = &opt->ps[i];
        bool any = ps->step > 0;
        for (int k = 0; k < AG__OPT_BUFS; k++) any |= ps->buf[k] != NULL;
        if (!any) continue;
        st = ag__sd_put_scalar(sd, (double)ps->step, "state.%d.step", i);
        for (int k = 0; st == AG_OK && k < AG__OPT_BUFS; k++)
            if (ps->buf[k]) {
                snprintf(name, sizeof name, "state.%d.%s", i, a->buf_names[k]);
                st = put_copy(sd, ps->buf[k], name);
            }
        for (int k = 0; st == AG_OK && k < AG__OPT_SCALARS; k++)
            if (a->scalar_names[k]) st = ag__sd_put_scalar(sd, ps->scalar[k], "state.%d.%s", i, a->scalar_names[k]);
    }
    if (st == AG_OK && a->save_global && opt->global) st = a->save_global(opt, sd);
    return st;
}

/* Checks the group layout: same number of groups holding the same parameter indices. */
static ag_status check_layout(const ag_optimizer *opt, const ag_state_dict *sd) {
    const char *name = opt->algo->name;
    double kind;
    if (!ag__sd_scalar(sd, &kind, "algorithm"))
        return ag__fail(AG_ERR_ARG, "%s load_state_dict: no \"algorithm\" entry; not an optimizer state", name);
    if (kind != opt->algo->kind)
        return ag__fail(AG_ERR_ARG, "%s load_state_dict: the dict holds the state of another algorithm (kind %g, this "
                                    "is %d)", name, kind, (int)opt->algo->kind);
    if (ag__sd_find(sd, "param_groups.%d.params", opt->ngroups))
        return ag__fail(AG_ERR_ARG, "%s load_state_dict: the dict has more parameter groups than the optimizer (%d)",
                        name, opt->ngroups);
    for (int g = 0, first = 0; g < opt->ngroups; g++) {
        const ag_tensor *idx = ag__sd_find(sd, "param_groups.%d.params", g);
        int count = 0;
        while (first + count < opt->nparams && opt->ps[first + count].group == g) count++;
        bool same = idx && idx->dtype == AG_I64 && idx->ndim == 1 && idx->shape[0] == count && ag__contig(idx);
        for (int i = 0; same && i < count; i++) same = ((const int64_t *)ag__ptr(idx))[i] == first + i;
        if (!same)
            return ag__fail(AG_ERR_ARG, "%s load_state_dict: parameter group %d of the dict does not hold the "
                                        "optimizer's parameters %d..%d", name, g, first, first + count - 1);
        first += count;
    }
    return AG_OK;
}

/* What each saved number and state tensor of an optimizer may hold, by name (the
 * <name> of "state.<i>.<name>", LBFGS's "state.0.<name>").  A tensor is checked
 * element by element.  Names not listed must be finite. */
static const struct {
    const char *name;
    ag__range rule;
} state_rules[] = {
    {"step", AG__COUNT},         {"n_iter", AG__COUNT},          {"func_evals", AG__COUNT},
    /* squares and their averages, accumulators, step sizes */
    {"exp_avg_sq", AG__NONNEG},  {"max_exp_avg_sq", AG__NONNEG}, {"square_avg", AG__NONNEG},
    {"acc_delta", AG__NONNEG},   {"sum", AG__NONNEG},            {"exp_inf", AG__NONNEG},
    {"step_size", AG__NONNEG},   {"eta", AG__NONNEG},            {"t", AG__NONNEG},
    {"H_diag", AG__NONNEG},      {"ro", AG__NONNEG},
    {"exp_avg_sq_row", AG__NONNEG}, {"exp_avg_sq_col", AG__NONNEG}, /* Adafactor's factored second moments */
    /* products of momentum factors (NAdam), averaging weights (ASGD) */
    {"mu_product", AG__UNIT},    {"mu", AG__UNIT},
    /* a loss value: infinite is possible, NaN is not */
    {"prev_loss", AG__NOT_NAN},
};

ag__range ag__optim_state_rule(const char *name) {
    for (size_t i = 0; i < sizeof state_rules / sizeof *state_rules; i++)
        if (strcmp(state_rules[i].name, name) == 0) return state_rules[i].rule;
    return (ag__range)AG__FINITE; /* moments, momenta, gradients, averages, directions */
}

ag_status ag__optim_check_state(const ag__optim_algo *a, const char *entry, const char *name, const ag_tensor *t) {
    char op[64];
    snprintf(op, sizeof op, "%s load_state_dict", a->name);
    return ag__check_values(op, entry, t, ag__optim_state_rule(name));
}

/* Whether the dict holds any state of parameter i. */
static bool has_state(const ag__optim_algo *a, const ag_state_dict *sd, int i) {
    bool any = ag__sd_find(sd, "state.%d.step", i) != NULL;
    for (int k = 0; !any && k < AG__OPT_BUFS; k++) any = a->buf_names[k] && ag__sd_find(sd, "state.%d.%s", i, a->buf_names[k]);
    for (int k = 0; !any && k < AG__OPT_SCALARS; k++)
        any = a->scalar_names[k] && ag__sd_find(sd, "state.%d.%s", i, a->scalar_names[k]);
    return any;
}

/* Checks everything sd holds for opt (apply false), or also builds the new state aside
 * and then puts it in place (apply true): a load changes nothing unless all of it fits.
 * Per parameter: "step" and the algorithm's numbers are required once it has any
 * state; state tensors are optional (they start afresh); every value follows its
 * rule in state_rules. */
static ag_status optim_load(ag_optimizer *opt, const ag_state_dict *sd, bool apply) {
    const ag__optim_algo *a = opt->algo;
    ag_status st = check_layout(opt, sd);
    if (st) return st;
    char op[64], name[NAME_MAX_LEN];
    snprintf(op, sizeof op, "%s load_state_dict", a->name);
    unsigned char *opts = ag__alloc(a->opts_size * (size_t)opt->ngroups);
    double *initial = ag__alloc(sizeof(double) * (size_t)opt->ngroups);
    ag_tensor **bufs = ag__calloc(sizeof(ag_tensor *) * AG__OPT_BUFS * (size_t)(opt->nparams ? opt->nparams : 1));
    double *nums = ag__alloc(sizeof(double) * (AG__OPT_SCALARS + 1) * (size_t)(opt->nparams ? opt->nparams : 1));
    void *global = NULL;
    if (!opts || !initial || !bufs || !nums) st = ag__fail(AG_ERR_NOMEM, "%s: out of memory", op);
    for (int g = 0; st == AG_OK && g < opt->ngroups; g++) {
        void *o = opts + a->opts_size * (size_t)g;
        memcpy(o, opt->groups[g].opts, a->opts_size);
        for (const ag__optim_field *f = a->fields; st == AG_OK && f->name; f++) {
            double v;
            snprintf(name, sizeof name, "param_groups.%d.%s", g, f->name);
            st = ag__sd_number(op, sd, name, (ag__range){-INFINITY, INFINITY, false}, &v);
            if (st == AG_OK) st = ag__optim_field_set(a->name, o, f, v);
        }
        if (st == AG_OK) st = a->check(o); /* the algorithm's own ranges, as its constructor's */
        snprintf(name, sizeof name, "param_groups.%d.initial_lr", g);
        initial[g] = NAN; /* none before a scheduler took it */
        if (st == AG_OK && ag__state_dict_find(sd, name)) st = ag__sd_number(op, sd, name, (ag__range)AG__NONNEG, &initial[g]);
    }
    for (int i = 0; st == AG_OK && i < opt->nparams; i++) {
        const ag_tensor *p = opt->ps[i].param;
        double *num = nums + (AG__OPT_SCALARS + 1) * (size_t)i;
        for (int k = 0; k < AG__OPT_SCALARS; k++) num[1 + k] = opt->ps[i].scalar[k];
        num[0] = 0;
        if (!has_state(a, sd, i)) continue; /* a parameter not stepped yet starts afresh */
        snprintf(name, sizeof name, "state.%d.step", i);
        st = ag__sd_number(op, sd, name, ag__optim_state_rule("step"), &num[0]);
        for (int k = 0; st == AG_OK && k < AG__OPT_SCALARS; k++)
            if (a->scalar_names[k]) {
                snprintf(name, sizeof name, "state.%d.%s", i, a->scalar_names[k]);
                st = ag__sd_number(op, sd, name, ag__optim_state_rule(a->scalar_names[k]), &num[1 + k]);
            }
        for (int k = 0; st == AG_OK && k < AG__OPT_BUFS; k++) {
            if (!a->buf_names[k]) continue;
            snprintf(name, sizeof name, "state.%d.%s", i, a->buf_names[k]);
            const ag_tensor *t = ag__state_dict_find(sd, name);
            if (!t) continue;
            int64_t shape[AG_MAX_DIMS];
            int ndim = a->buf_shape ? a->buf_shape(p, k, shape) : p->ndim;
            if (!a->buf_shape) memcpy(shape, p->shape, sizeof(int64_t) * (size_t)p->ndim);
            if (t->ndim != ndim || memcmp(t->shape, shape, sizeof(int64_t) * (size_t)ndim) != 0 ||
                (t->dtype != AG_F32 && t->dtype != AG_F64)) {
                char s1[AG_SHAPE_STR], s2[AG_SHAPE_STR];
                st = ag__fail(AG_ERR_SHAPE, "%s load_state_dict: \"state.%d.%s\" is %s %s but parameter %d is %s",
                              a->name, i, a->buf_names[k], ag_dtype_name(t->dtype), ag__tshape(s1, t), i,
                              ag__tshape(s2, p));
                break;
            }
            st = ag__optim_check_state(a, name, a->buf_names[k], t);
            if (st == AG_OK && apply) {
                ag_tensor *b = bufs[AG__OPT_BUFS * i + k] = ag__new_unowned(p->dtype, ndim, shape, false);
                if (!b) st = ag__fail(AG_ERR_NOMEM, "%s: out of memory", op);
                else ag__copy_into(b, t);
            }
        }
    }
    if (st == AG_OK && a->load_global) st = a->load_global(opt, sd, opts, &global);

    if (st == AG_OK && apply) { /* commit: nothing below can fail */
        for (int g = 0; g < opt->ngroups; g++) {
            memcpy(opt->groups[g].opts, opts + a->opts_size * (size_t)g, a->opts_size);
            opt->groups[g].initial_lr = initial[g];
        }
        for (int i = 0; i < opt->nparams; i++) {
            ag__pstate *ps = &opt->ps[i];
            const double *num = nums + (AG__OPT_SCALARS + 1) * (size_t)i;
            ps->step = (int64_t)num[0];
            for (int k = 0; k < AG__OPT_SCALARS; k++) ps->scalar[k] = num[1 + k];
            for (int k = 0; k < AG__OPT_BUFS; k++) {
                ag_release(ps->buf[k]);
                ps->buf[k] = bufs[AG__OPT_BUFS * i + k];
                bufs[AG__OPT_BUFS * i + k] = NULL;
            }
            ps->fresh = 0;
        }
        if (a->load_global) {
            if (opt->global) a->free_global(opt->global);
            opt->global = global;
            global = NULL;
        }
    }
    if (global) a->free_global(global);
    for (int i = 0; bufs && i < AG__OPT_BUFS * opt->nparams; i++) ag_release(bufs[i]);
    ag__free(bufs);
    ag__free(nums);
    ag__free(initial);
    ag__free(opts);
    return st;
}

ag_status ag_optimizer_load_state_dict(ag_optimizer *opt, const ag_state_dict *sd) {
    if (!opt || !sd) return ag__fail(AG_ERR_ARG, "optimizer_load_state_dict: NULL optimizer or dict");
    return optim_load(opt, sd, true);
}

ag_status ag__optimizer_check_state_dict(ag_optimizer *opt, const ag_state_dict *sd) {
    if (!opt || !sd) return ag__fail(AG_ERR_ARG, "optimizer_load_state_dict: NULL optimizer or dict");
    return optim_load(opt, sd, false);
}

/* ---- schedulers --------------------------------------------------------------------------------------
 * Each scheduler saves "kind" (its row's number), "last_epoch", "step_count", the
 * counters its row lists (T_i, T_cur; best, num_bad_epochs, cooldown_counter),
 * "ngroups", "nchildren", "base_lrs.<g>", "last_lr.<g>" and its schedulers under
 * "schedulers.<i>.".  Checkpoints written before the rows hold every counter for
 * every kind; a load reads those its kind has.  A load first checks every number
 * against its rule (the shared counters below, the row's counters with theirs, the
 * lrs), then puts them in place. */

/* The counters every scheduler saves (int64 fields of ag_scheduler) and what a load accepts. */
static const struct {
    const char *name;
    size_t offset;
    ag__range rule;
} shared_counters[] = {
    {"last_epoch", offsetof(ag_scheduler, last_epoch), {-1, 0x1p53, true}}, /* -1: a SequentialLR's children before their turn */
    {"step_count", offsetof(ag_scheduler, step_count), AG__COUNT},
};
#define NSHARED (sizeof shared_counters / sizeof *shared_counters)
/* base_lrs.<g> and last_lr.<g>: learning rates. */
static const ag__range lr_rule = AG__NONNEG;

static int64_t shared_get(const ag_scheduler *s, size_t i) {
    return *(const int64_t *)((const char *)s + shared_counters[i].offset);
}
static void shared_set(ag_scheduler *s, size_t i, int64_t v) { *(int64_t *)((char *)s + shared_counters[i].offset) = v; }

static ag_status sched_save(const ag_scheduler *s, ag_state_dict *sd, const char *prefix) {
    const ag__sched_rule *r = s->rule;
    ag_status st = ag__sd_put_scalar(sd, r->kind, "%skind", prefix);
    for (size_t i = 0; st == AG_OK && i < NSHARED; i++)
        st = ag__sd_put_scalar(sd, (double)shared_get(s, i), "%s%s", prefix, shared_counters[i].name);
    for (const ag__sched_field *f = r->state; st == AG_OK && f && f->f.name; f++)
        st = ag__sd_put_scalar(sd, ag__optim_field_get(ag__sched_params(s), &f->f), "%s%s", prefix, f->f.name);
    if (st == AG_OK) st = ag__sd_put_scalar(sd, s->ngroups, "%sngroups", prefix);
    if (st == AG_OK) st = ag__sd_put_scalar(sd, s->nchildren, "%snchildren", prefix);
    for (int g = 0; st == AG_OK && g < s->ngroups; g++) {
        st = ag__sd_put_scalar(sd, s->base_lrs[g], "%sbase_lrs.%d", prefix, g);
        if (st == AG_OK) st = ag__sd_put_scalar(sd, s->last_lr[g], "%slast_lr.%d", prefix, g);
    }
    for (int i = 0; st == AG_OK && i < s->nchildren; i++) {
        char child[NAME_MAX_LEN];
        snprintf(child, sizeof child, "%sschedulers.%d.", prefix, i);
        st = sched_save(s->children[i], sd, child);
    }
    return st;
}

ag_status ag_scheduler_state_dict(const ag_scheduler *s, ag_state_dict *sd) {
    if (!s || !sd) return ag__fail(AG_ERR_ARG, "scheduler_state_dict: NULL scheduler or dict");
    return sched_save(s, sd, "scheduler.");
}

/* Checks that sd holds a scheduler made like s (recursively), every number following its rule:
 * AG_ERR_VALUE "<Schedule> load_state_dict: <entry> is <v>, expected ..." for one that does not. */
static ag_status sched_check(const ag_scheduler *s, const ag_state_dict *sd, const char *prefix) {
    const char *name = s->rule->name;
    double kind, ng, nc, v;
    if (!ag__sd_scalar(sd, &kind, "%skind", prefix) || !ag__sd_scalar(sd, &ng, "%sngroups", prefix) ||
        !ag__sd_scalar(sd, &nc, "%snchildren", prefix))
        return ag__fail(AG_ERR_ARG, "%s load_state_dict: no scheduler entries \"%s...\"", name, prefix);
    if (kind != s->rule->kind || ng != s->ngroups || nc != s->nchildren)
        return ag__fail(AG_ERR_ARG, "%s load_state_dict: \"%s...\" holds another kind of scheduler or group count",
                        name, prefix);
    char op[64], entry[NAME_MAX_LEN];
    snprintf(op, sizeof op, "%s load_state_dict", name);
    ag_status st = AG_OK;
    for (size_t i = 0; st == AG_OK && i < NSHARED; i++) {
        snprintf(entry, sizeof entry, "%s%s", prefix, shared_counters[i].name);
        st = ag__sd_number(op, sd, entry, shared_counters[i].rule, &v);
    }
    for (const ag__sched_field *f = s->rule->state; st == AG_OK && f && f->f.name; f++) {
        snprintf(entry, sizeof entry, "%s%s", prefix, f->f.name);
        st = ag__sd_number(op, sd, entry, f->rule, &v);
    }
    for (int g = 0; st == AG_OK && g < s->ngroups; g++) {
        snprintf(entry, sizeof entry, "%sbase_lrs.%d", prefix, g);
        st = ag__sd_number(op, sd, entry, lr_rule, &v);
        snprintf(entry, sizeof entry, "%slast_lr.%d", prefix, g);
        if (st == AG_OK) st = ag__sd_number(op, sd, entry, lr_rule, &v);
    }
    for (int i = 0; st == AG_OK && i < s->nchildren; i++) {
        char child[NAME_MAX_LEN];
        snprintf(child, sizeof child, "%sschedulers.%d.", prefix, i);
        st = sched_check(s->children[i], sd, child);
    }
    return st;
}

/* Puts what sched_check accepted in place; cannot fail (every value was checked against
 * its rule, so an int counter's is whole and within int). */
static void sched_load(ag_scheduler *s, const ag_state_dict *sd, const char *prefix) {
    double v;
    for (size_t i = 0; i < NSHARED; i++)
        if (ag__sd_scalar(sd, &v, "%s%s", prefix, shared_counters[i].name)) shared_set(s, i, (int64_t)v);
    for (const ag__sched_field *f = s->rule->state; f && f->f.name; f++) {
        char *p = (char *)ag__sched_params(s) + f->f.offset;
        if (!ag__sd_scalar(sd, &v, "%s%s", prefix, f->f.name)) continue;
        if (f->f.type == AG__FIELD_INT) *(int *)p = (int)v;
        else *(double *)p = v;
    }
    for (int g = 0; g < s->ngroups; g++) {
        ag__sd_scalar(sd, &s->base_lrs[g], "%sbase_lrs.%d", prefix, g);
        ag__sd_scalar(sd, &s->last_lr[g], "%slast_lr.%d", prefix, g);
    }
    for (int i = 0; i < s->nchildren; i++) {
        char child[NAME_MAX_LEN];
        snprintf(child, sizeof child, "%sschedulers.%d.", prefix, i);
        sched_load(s->children[i], sd, child);
    }
}

ag_status ag__scheduler_check_state_dict(const ag_scheduler *s, const ag_state_dict *sd) {
    if (!s || !sd) return ag__fail(AG_ERR_ARG, "scheduler_load_state_dict: NULL scheduler or dict");
    return sched_check(s, sd, "scheduler.");
}

ag_status ag_scheduler_load_state_dict(ag_scheduler *s, const ag_state_dict *sd) {
    ag_status st = ag__scheduler_check_state_dict(s, sd);
    if (st == AG_OK) sched_load(s, sd, "scheduler.");
    return st;
}

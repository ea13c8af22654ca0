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
#include <string.h>
#include "core/iter.h"
#include "optim/scheduler.h"

#define NAME_MAX_LEN 160

static void vname(char *buf, const char *fmt, va_list ap) { vsnprintf(buf, NAME_MAX_LEN, fmt, ap); }

ag_tensor *ag__sd_find(const ag_state_dict *sd, const char *fmt, ...) {
    char name[NAME_MAX_LEN];
    va_list ap;
    va_start(ap, fmt);
    vname(name, fmt, ap);
    va_end(ap);
    for (int i = 0; i < ag_state_dict_size(sd); i++)
        if (strcmp(ag_state_dict_name(sd, i), name) == 0) return ag_state_dict_tensor(sd, i);
    return NULL;
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

ag_status ag_optimizer_load_state_dict(ag_optimizer *opt, const ag_state_dict *sd) {
    if (!opt || !sd) return ag__fail(AG_ERR_ARG, "optimizer_load_state_dict: NULL optimizer or dict");
    const ag__optim_algo *a = opt->algo;
    ag_status st = check_layout(opt, sd);
    if (st) return st;
    /* Build everything aside: group options, initial lrs, state tensors, the global state. */
    unsigned char *opts = ag__alloc(a->opts_size * (size_t)opt->ngroups);
    double *initial = ag__alloc(sizeof(double) * (size_t)opt->ngroups);
    ag_tensor **bufs = ag__calloc(sizeof(ag_tensor *) * AG__OPT_BUFS * (size_t)opt->nparams);
    double *nums = ag__alloc(sizeof(double) * (AG__OPT_SCALARS + 1) * (size_t)(opt->nparams ? opt->nparams : 1));
    void *global = NULL;
    if (!opts || !initial || !bufs || !nums) st = AG_ERR_NOMEM;
    for (int g = 0; st == AG_OK && g < opt->ngroups; g++) {
        void *o = opts + a->opts_size * (size_t)g;
        memcpy(o, opt->groups[g].opts, a->opts_size);
        for (const ag__optim_field *f = a->fields; st == AG_OK && f->name; f++) {
            double v;
            if (!ag__sd_scalar(sd, &v, "param_groups.%d.%s", g, f->name)) {
                st = ag__fail(AG_ERR_ARG, "%s load_state_dict: no number \"param_groups.%d.%s\"", a->name, g, f->name);
            } else {
                st = ag__optim_field_set(a->name, o, f, v);
            }
        }
        if (st == AG_OK) st = a->check(o);
        if (!ag__sd_scalar(sd, &initial[g], "param_groups.%d.initial_lr", g)) initial[g] = NAN;
    }
    for (int i = 0; st == AG_OK && i < opt->nparams; i++) {
        const ag_tensor *p = opt->ps[i].param;
        double *num = nums + (AG__OPT_SCALARS + 1) * (size_t)i;
        if (!ag__sd_scalar(sd, &num[0], "state.%d.step", i)) num[0] = 0;
        for (int k = 0; k < AG__OPT_SCALARS; k++)
            if (!a->scalar_names[k] || !ag__sd_scalar(sd, &num[1 + k], "state.%d.%s", i, a->scalar_names[k]))
                num[1 + k] = opt->ps[i].scalar[k];
        for (int k = 0; st == AG_OK && k < AG__OPT_BUFS; k++) {
            const ag_tensor *t = a->buf_names[k] ? ag__sd_find(sd, "state.%d.%s", i, a->buf_names[k]) : NULL;
            if (!t) continue;
            if (ag__numel(t->ndim, t->shape) != ag_numel(p) || t->ndim != p->ndim ||
                memcmp(t->shape, p->shape, sizeof(int64_t) * (size_t)p->ndim) != 0 ||
                (t->dtype != AG_F32 && t->dtype != AG_F64)) {
                char s1[AG_SHAPE_STR], s2[AG_SHAPE_STR];
                st = ag__fail(AG_ERR_SHAPE, "%s load_state_dict: \"state.%d.%s\" is %s %s but parameter %d is %s",
                              a->name, i, a->buf_names[k], ag_dtype_name(t->dtype), ag__tshape(s1, t), i,
                              ag__tshape(s2, p));
                break;
            }
            ag_tensor *b = bufs[AG__OPT_BUFS * i + k] = ag__new_unowned(p->dtype, p->ndim, p->shape, false);
            if (!b) st = AG_ERR_NOMEM;
            else ag__copy_into(b, t);
        }
    }
    if (st == AG_OK && a->load_global) st = a->load_global(opt, sd, opts, &global);

    if (st == AG_OK) { /* commit */
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
        }
    }
    for (int i = 0; bufs && i < AG__OPT_BUFS * opt->nparams; i++) ag_release(bufs[i]);
    ag__free(bufs);
    ag__free(nums);
    ag__free(initial);
    ag__free(opts);
    return st;
}

/* ---- schedulers --------------------------------------------------------------------------------------
 * Each scheduler saves "kind" (its row's number), "last_epoch", "step_count", the
 * counters its row lists (T_i, T_cur; best, num_bad_epochs, cooldown_counter),
 * "ngroups", "nchildren", "base_lrs.<g>", "last_lr.<g>" and its schedulers under
 * "schedulers.<i>.".  Checkpoints written before the rows hold every counter for
 * every kind; a load reads those its kind has. */
static ag_status sched_save(const ag_scheduler *s, ag_state_dict *sd, const char *prefix) {
    const ag__sched_rule *r = s->rule;
    ag_status st = ag__sd_put_scalar(sd, r->kind, "%skind", prefix);
    if (st == AG_OK) st = ag__sd_put_scalar(sd, (double)s->last_epoch, "%slast_epoch", prefix);
    if (st == AG_OK) st = ag__sd_put_scalar(sd, (double)s->step_count, "%sstep_count", prefix);
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

/* Checks the row's counters in sd by setting them on a copy of s's parameters. */
static ag_status sched_check_state(const ag_scheduler *s, const ag_state_dict *sd, const char *prefix) {
    const ag__sched_rule *r = s->rule;
    if (!r->state) return AG_OK;
    unsigned char *copy = ag__alloc(r->params_size);
    if (!copy) return AG_ERR_NOMEM;
    memcpy(copy, s->params, r->params_size);
    ag_status st = AG_OK;
    for (const ag__sched_field *f = r->state; st == AG_OK && f->f.name; f++) {
        double v;
        st = ag__sd_scalar(sd, &v, "%s%s", prefix, f->f.name)
                 ? ag__optim_field_set(r->name, copy, &f->f, v)
                 : ag__fail(AG_ERR_ARG, "%s load_state_dict: no number \"%s%s\"", r->name, prefix, f->f.name);
    }
    ag__free(copy);
    return st;
}

/* Checks that sd holds a scheduler made like s (recursively). */
static ag_status sched_check(const ag_scheduler *s, const ag_state_dict *sd, const char *prefix) {
    const char *name = s->rule->name;
    double kind, ng, nc, v;
    if (!ag__sd_scalar(sd, &kind, "%skind", prefix) || !ag__sd_scalar(sd, &ng, "%sngroups", prefix) ||
        !ag__sd_scalar(sd, &nc, "%snchildren", prefix))
        return ag__fail(AG_ERR_ARG, "%s load_state_dict: no scheduler entries \"%s...\"", name, prefix);
    if (kind != s->rule->kind || ng != s->ngroups || nc != s->nchildren)
        return ag__fail(AG_ERR_ARG, "%s load_state_dict: \"%s...\" holds another kind of scheduler or group count",
                        name, prefix);
    const char *names[] = {"last_epoch", "step_count"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (!ag__sd_scalar(sd, &v, "%s%s", prefix, names[i]))
            return ag__fail(AG_ERR_ARG, "%s load_state_dict: no number \"%s%s\"", name, prefix, names[i]);
    ag_status st = sched_check_state(s, sd, prefix);
    if (st) return st;
    for (int g = 0; g < s->ngroups; g++)
        if (!ag__sd_scalar(sd, &v, "%sbase_lrs.%d", prefix, g) || !ag__sd_scalar(sd, &v, "%slast_lr.%d", prefix, g))
            return ag__fail(AG_ERR_ARG, "%s load_state_dict: no lrs for group %d under \"%s\"", name, g, prefix);
    for (int i = 0; i < s->nchildren; i++) {
        char child[NAME_MAX_LEN];
        snprintf(child, sizeof child, "%sschedulers.%d.", prefix, i);
        st = sched_check(s->children[i], sd, child);
        if (st) return st;
    }
    return AG_OK;
}

/* Loads what sched_check found there. */
static void sched_load(ag_scheduler *s, const ag_state_dict *sd, const char *prefix) {
    double v;
    ag__sd_scalar(sd, &v, "%slast_epoch", prefix), s->last_epoch = (int64_t)v;
    ag__sd_scalar(sd, &v, "%sstep_count", prefix), s->step_count = (int64_t)v;
    for (const ag__sched_field *f = s->rule->state; f && f->f.name; f++)
        if (ag__sd_scalar(sd, &v, "%s%s", prefix, f->f.name))
            ag__optim_field_set(s->rule->name, ag__sched_params(s), &f->f, v);
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

ag_status ag_scheduler_load_state_dict(ag_scheduler *s, const ag_state_dict *sd) {
    if (!s || !sd) return ag__fail(AG_ERR_ARG, "scheduler_load_state_dict: NULL scheduler or dict");
    ag_status st = sched_check(s, sd, "scheduler.");
    if (st == AG_OK) sched_load(s, sd, "scheduler.");
    return st;
}

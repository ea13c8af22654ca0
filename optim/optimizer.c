/*
 * optimizer.c - what every optimizer shares: parameters and groups, the step
 * driver, named hyperparameters, the (param, grad) walk.
 *
 * A step first makes sure every parameter with a gradient has its state (the
 * only allocations, on the first step), then runs the algorithm's fused
 * per-parameter update under no-grad, so a failed allocation leaves every
 * parameter untouched.  An algorithm's elementwise update runs over all parameters
 * in one parallel region, each parameter split over the threads (update_batch); a whole-parameter update
 * runs its elementwise loops through ag__optim_chunks, which splits a large
 * parameter over threads.  ag_optimizer_step_param updates one parameter alone the
 * same way (the step inside backward, step_hooks.c): every update being per
 * parameter and elementwise, the bits are those of the whole step.
 */
#include <math.h>
#include <omp.h>
#include <string.h>
#include "optim/internal.h"
#include "core/iter.h"
#include "core/parallel.h"
#include "agrad/autograd.h"
#include "autograd/tape.h"

ag_status ag__optim_check_range(const char *algo, const char *what, double v, double lo, double hi) {
    if (isfinite(v) && v >= lo && v <= hi) return AG_OK;
    return ag__fail(AG_ERR_ARG, "%s: invalid %s: %g", algo, what, v);
}

static ag_status check_opts(const ag__optim_algo *a, const void *o) {
    if (!o) return ag__fail(AG_ERR_ARG, "%s: options are NULL", a->name);
    ag_optim_kind k = *(const ag_optim_kind *)o;
    if (k != a->kind)
        return ag__fail(AG_ERR_ARG, "%s: these options were not made by ag_%s_defaults() (their kind is %d, expected %d)",
                        a->name, a->c_name, (int)k, (int)a->kind);
    return a->check(o);
}

/* ---- parameters and groups ----------------------------------------------------------- */
static bool listed(const ag_optimizer *opt, ag_tensor *const *params, int upto, const ag_tensor *p) {
    for (int i = 0; i < opt->nparams; i++)
        if (opt->ps[i].param == p) return true;
    for (int i = 0; i < upto; i++)
        if (params[i] == p) return true;
    return false;
}

static ag_status check_param(const ag_optimizer *opt, ag_tensor *const *params, int i) {
    const char *name = opt->algo->name;
    ag_tensor *p = params[i];
    char s[AG_SHAPE_STR];
    if (!p) {
        ag_status last = ag_last_status();
        return last ? last : ag__fail(AG_ERR_ARG, "%s: parameter %d is NULL", name, i);
    }
    if (p->dtype != AG_F32 && p->dtype != AG_F64)
        return ag__fail(AG_ERR_DTYPE, "%s: parameter %d (%s) is %s; only float32 and float64 tensors can be optimized",
                        name, i, ag__tshape(s, p), ag_dtype_name(p->dtype));
    if (!p->requires_grad)
        return ag__fail(AG_ERR_ARG, "%s: parameter %d (%s) does not require grad; call ag_requires_grad_(p, true) "
                                    "or leave it out", name, i, ag__tshape(s, p));
    if (p->op || p->graph_freed)
        return ag__fail(AG_ERR_ARG, "%s: can't optimize a non-leaf tensor: parameter %d (%s) comes from %s",
                        name, i, ag__tshape(s, p), p->op ? p->op->grad_fn : "an op");
    if (!ag__contig(p))
        return ag__fail(AG_ERR_ARG, "%s: parameter %d (%s) is not contiguous; optimize a contiguous leaf copy instead",
                        name, i, ag__tshape(s, p));
    if (listed(opt, params, i, p))
        return ag__fail(AG_ERR_ARG, "%s: parameter %d (%s) appears more than once (in this or another parameter group)",
                        name, i, ag__tshape(s, p));
    return AG_OK;
}

static ag_status add_group(ag_optimizer *opt, ag_tensor *const *params, int n, const void *o) {
    const ag__optim_algo *a = opt->algo;
    if (a->one_group && opt->ngroups > 0)
        return ag__fail(AG_ERR_ARG, "%s doesn't support per-parameter options (parameter groups)", a->name);
    if (opt->hooks)
        return ag__fail(AG_ERR_ARG, "%s: can't add a parameter group while it steps inside backward; call "
                                    "ag_optimizer_remove_step_hooks first, then register them again", a->name);
    if (!params || n < 1) return ag__fail(AG_ERR_ARG, "%s: got an empty parameter list", a->name);
    AG_CHECK_HANDLE_ARRAY(AG_ERR_ARG, a->name, params, n);
    ag_status st = check_opts(a, o);
    for (int i = 0; st == AG_OK && i < n; i++) st = check_param(opt, params, i);
    if (st) return st;

    void *copy = ag__alloc(a->opts_size);
    ag__group *groups = ag__alloc(sizeof(ag__group) * (size_t)(opt->ngroups + 1));
    ag__pstate *ps = opt->nparams + n > opt->cap ? ag__alloc(sizeof(ag__pstate) * (size_t)(opt->nparams + n)) : opt->ps;
    if (!copy || !groups || !ps) {
        ag__free(copy);
        ag__free(groups);
        if (ps != opt->ps) ag__free(ps);
        return AG_ERR_NOMEM;
    }
    memcpy(copy, o, a->opts_size);
    if (opt->ngroups) memcpy(groups, opt->groups, sizeof(ag__group) * (size_t)opt->ngroups);
    groups[opt->ngroups] = (ag__group){copy, NAN};
    ag__free(opt->groups);
    opt->groups = groups;
    if (ps != opt->ps) {
        if (opt->nparams) memcpy(ps, opt->ps, sizeof(ag__pstate) * (size_t)opt->nparams);
        ag__free(opt->ps);
        opt->ps = ps;
        opt->cap = opt->nparams + n;
    }
    for (int i = 0; i < n; i++) {
        ag__pstate *s = &opt->ps[opt->nparams++];
        memset(s, 0, sizeof *s);
        s->param = ag_retain(params[i]);
        s->group = opt->ngroups;
    }
    opt->ngroups++;
    return AG_OK;
}

ag_optimizer *ag__optim_new(const ag__optim_algo *algo, ag_tensor *const *params, int n, const void *opts) {
    ag_optimizer *opt = ag__calloc(sizeof *opt);
    if (!opt) return NULL;
    opt->algo = algo;
    ag_status st = add_group(opt, params, n, opts);
    if (st == AG_OK) {
        opt->defaults = ag__alloc(algo->opts_size);
        if (opt->defaults) memcpy(opt->defaults, opts, algo->opts_size);
        else st = AG_ERR_NOMEM;
    }
    if (st) {
        ag_optimizer_free(opt);
        return NULL;
    }
    return opt;
}

ag_status ag_optimizer_add_param_group(ag_optimizer *opt, ag_tensor *const *params, int n, const void *o) {
    if (!opt) return ag__fail(AG_ERR_ARG, "optimizer_add_param_group: optimizer is NULL");
    return add_group(opt, params, n, o ? o : opt->defaults);
}

void ag_optimizer_free(ag_optimizer *opt) {
    if (!opt) return;
    ag_optimizer_remove_step_hooks(opt);
    for (int i = 0; i < opt->nparams; i++) {
        for (int k = 0; k < AG__OPT_BUFS; k++) ag_release(opt->ps[i].buf[k]);
        ag_release(opt->ps[i].param);
    }
    for (int g = 0; g < opt->ngroups; g++) ag__free(opt->groups[g].opts);
    if (opt->global) opt->algo->free_global(opt->global);
    ag__free(opt->groups);
    ag__free(opt->ps);
    ag__free(opt->defaults);
    ag__free(opt);
}

bool ag_optimizer_remove_step_hooks(ag_optimizer *opt) {
    if (!opt || !opt->hooks) return false;
    for (int i = 0; i < opt->nparams; i++) ag_hook_remove(opt->hooks[i].handle);
    ag__free(opt->hooks);
    opt->hooks = NULL;
    opt->free_grad = false;
    return true;
}

/* ---- state ------------------------------------------------------------------------------ */
ag_status ag__optim_buf(ag__pstate *ps, int k, double value) {
    return ag__optim_buf_shaped(ps, k, value, ps->param->ndim, ps->param->shape);
}

ag_status ag__optim_buf_shaped(ag__pstate *ps, int k, double value, int ndim, const int64_t *shape) {
    if (ps->buf[k]) return AG_OK;
    const ag_tensor *p = ps->param;
    ag_tensor *b = ag__new_unowned(p->dtype, ndim, shape, value == 0);
    if (!b) return AG_ERR_NOMEM;
    int64_t n = ag_numel(b);
    if (value != 0) {
        if (b->dtype == AG_F32)
            for (int64_t i = 0; i < n; i++) ag__f32(b)[i] = (float)value;
        else
            for (int64_t i = 0; i < n; i++) ag__f64(b)[i] = value;
    }
    ps->buf[k] = b;
    ps->fresh |= 1u << k;
    return AG_OK;
}

/* Converts ps's state tensors to its parameter's dtype where they differ (the parameter
 * was converted in place by ag_module_to_dtype since they were made), as PyTorch's
 * Optimizer.load_state_dict casts state to the parameter's dtype.  Checks the
 * gradient's dtype first: a mismatch there is an error. */
static ag_status follow_dtype(const ag_optimizer *opt, ag__pstate *ps, int i) {
    const ag_tensor *p = ps->param;
    if (p->grad->dtype != p->dtype) {
        char s[AG_SHAPE_STR];
        return ag__fail(AG_ERR_DTYPE, "%s: parameter %d (%s %s) has a %s gradient", opt->algo->name, i,
                        ag_dtype_name(p->dtype), ag__tshape(s, p), ag_dtype_name(p->grad->dtype));
    }
    for (int k = 0; k < AG__OPT_BUFS; k++) {
        ag_tensor *b = ps->buf[k];
        if (!b || b->dtype == p->dtype || (b->dtype != AG_F32 && b->dtype != AG_F64)) continue;
        ag_tensor *c = ag__new_unowned(p->dtype, b->ndim, b->shape, false);
        if (!c) return AG_ERR_NOMEM;
        ag__copy_into(c, b);
        ag_release(b);
        ps->buf[k] = c;
    }
    return AG_OK;
}

/* ---- stepping --------------------------------------------------------------------------------- */
/* Where part t of nt of a parameter's n elements begins (t = nt: n): equal contiguous parts, each
 * on a multiple of 16 (whole vectors) but the end. */
static int64_t part_start(int64_t n, int t, int nt) { return t >= nt ? n : ag__share_start(n, t, nt) / 16 * 16; }

void ag__optim_chunks(ag__update_fn fn, const void *opts, const ag__pstate *ps, const ag_tensor *grad,
                      const void *coef) {
    const int64_t n = ag__numel(ps->param->ndim, ps->param->shape);
    const int nt = ag__threads_for(n);
    if (nt <= 1) { /* no parallel region at all: even a one-thread team costs ~1 µs */
        fn(opts, ps, grad, coef, 0, n);
        return;
    }
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int b = 0; b < nt; b++) {
        fn(opts, ps, grad, coef, part_start(n, b, nt), part_start(n, b + 1, nt));
    }
}

/* Parameters updated together in one parallel region (their coefficients live on the stack). */
#define FLAT_BATCH 64

/* The elementwise update of the parameters with a gradient among i, i + 1, ... (at most
 * FLAT_BATCH of them) in one parallel region (a team per parameter would cost a fork each,
 * and parameters below the threading threshold would run on one thread), as many threads as
 * their total asks for, each parameter split into equal contiguous parts, one per thread
 * (part_start), rather than their concatenation in equal parts (which gave one core the first
 * weights whole and the other the last): each core then updates a share of every weight, as the
 * threaded GEMMs of the step share out a weight's rows (likely why it gains; not measured: no
 * hardware counters on the VM).  SGD in `mlp_512_b64`'s step on two threads, wall, chrt -f 10,
 * alternated runs, medians of two series: 98 -> 78 and 121 -> 99 µs (docs/benchmarks.md,
 * "Session 14: the optimizer's split").  The same result as one parameter at a time, each update
 * being elementwise.  Returns the index after the last parameter taken. */
static int update_batch(ag_optimizer *opt, int i) {
    const ag__optim_algo *a = opt->algo;
    _Alignas(max_align_t) unsigned char coef[FLAT_BATCH][AG__COEF_BYTES];
    ag__pstate *batch[FLAT_BATCH];
    int64_t start[FLAT_BATCH + 1] = {0}; /* the concatenation's offsets, for the total */
    int nb = 0;
    for (; i < opt->nparams && nb < FLAT_BATCH; i++) {
        ag__pstate *ps = &opt->ps[i];
        if (!ps->param->grad) continue;
        ps->step++;
        if (a->coef) a->coef(opt->groups[ps->group].opts, ps, coef[nb]);
        batch[nb] = ps;
        start[nb + 1] = start[nb] + ag__numel(ps->param->ndim, ps->param->shape); /* parameters fit in memory */
        nb++;
    }
    const int64_t total = start[nb];
    const int nt = ag__threads_for(total);
    if (nt <= 1) { /* no parallel region at all: even a one-thread team costs ~1 µs */
        for (int k = 0; k < nb; k++)
            a->update(opt->groups[batch[k]->group].opts, batch[k], batch[k]->param->grad, coef[k], 0,
                      start[k + 1] - start[k]);
    } else {
#pragma omp parallel num_threads(nt)
        {
            const int t = omp_get_thread_num(), used = omp_get_num_threads();
            for (int k = 0; k < nb; k++) {
                const int64_t n = start[k + 1] - start[k], lo = part_start(n, t, used), hi = part_start(n, t + 1, used);
                if (lo < hi) a->update(opt->groups[batch[k]->group].opts, batch[k], batch[k]->param->grad, coef[k], lo, hi);
            }
        }
    }
    for (int k = 0; k < nb; k++) {
        batch[k]->fresh = 0;
        ag__bump_version(batch[k]->param);
    }
    return i;
}

ag_status ag__optim_call(ag_closure_fn closure, void *ctx, double *loss) {
    int saved = ag__no_grad_depth;
    ag__no_grad_depth = 0;
    *loss = NAN;
    ag_status st = closure(ctx, loss);
    ag__no_grad_depth = saved;
    return st;
}

/* Makes ps's state ready for an update: its dtype following the parameter's, then what
 * the algorithm creates before its first update. */
static ag_status ready(ag_optimizer *opt, ag__pstate *ps, int i) {
    ag_status st = follow_dtype(opt, ps, i);
    return st ? st : opt->algo->prepare(opt, ps, opt->groups[ps->group].opts);
}

/* One parameter's whole update (its state ready, under no-grad): the step count, the
 * coefficients, then the update in chunks over the threads, or the algorithm's own. */
static void update_one(ag_optimizer *opt, ag__pstate *ps) {
    const ag__optim_algo *a = opt->algo;
    const void *o = opt->groups[ps->group].opts;
    ps->step++;
    if (a->update_param) {
        a->update_param(opt, ps, ps->param->grad, o);
    } else {
        _Alignas(max_align_t) unsigned char coef[AG__COEF_BYTES];
        if (a->coef) a->coef(o, ps, coef);
        ag__optim_chunks(a->update, o, ps, ps->param->grad, coef);
    }
    ps->fresh = 0;
    ag__bump_version(ps->param);
}

ag_status ag_optimizer_step_closure(ag_optimizer *opt, ag_closure_fn closure, void *ctx, double *loss) {
    if (!opt) return ag__fail(AG_ERR_ARG, "optimizer_step: optimizer is NULL");
    const ag__optim_algo *a = opt->algo;
    if (opt->hooks)
        return ag__fail(AG_ERR_ARG, "optimizer_step: this %s steps inside backward (ag_optimizer_register_step_hooks); "
                                    "a step after backward would update its parameters twice", a->name);
    if (a->step) return a->step(opt, closure, ctx, loss);
    double l = NAN;
    if (closure) {
        ag_status st = ag__optim_call(closure, ctx, &l);
        if (st) return st;
    }
    for (int i = 0; i < opt->nparams; i++) {
        ag__pstate *ps = &opt->ps[i];
        ag_status st = ps->param->grad ? ready(opt, ps, i) : AG_OK;
        if (st) return st;
    }
    ag_no_grad_begin();
    if (a->update_param) {
        for (int i = 0; i < opt->nparams; i++)
            if (opt->ps[i].param->grad) update_one(opt, &opt->ps[i]);
    } else {
        for (int i = 0; i < opt->nparams;) i = update_batch(opt, i);
    }
    ag_no_grad_end();
    if (loss) *loss = l;
    return AG_OK;
}

ag_status ag_optimizer_step_param(ag_optimizer *opt, int i) {
    if (!opt) return ag__fail(AG_ERR_ARG, "optimizer_step_param: optimizer is NULL");
    if (opt->algo->step)
        return ag__fail(AG_ERR_ARG, "optimizer_step_param: %s steps all its parameters together; it can't update "
                                    "one alone", opt->algo->name);
    if (i < 0 || i >= opt->nparams)
        return ag__fail(AG_ERR_INDEX, "optimizer_step_param: parameter %d out of range (%s has %d parameters)", i,
                        opt->algo->name, opt->nparams);
    ag__pstate *ps = &opt->ps[i];
    if (!ps->param->grad) return AG_OK;
    ag_status st = ready(opt, ps, i);
    if (st) return st;
    ag_no_grad_begin();
    update_one(opt, ps);
    ag_no_grad_end();
    return AG_OK;
}

ag_status ag_optimizer_step(ag_optimizer *opt) { return ag_optimizer_step_closure(opt, NULL, NULL, NULL); }

void ag_optimizer_zero_grad(ag_optimizer *opt) {
    if (!opt) return;
    for (int i = 0; i < opt->nparams; i++) ag_zero_grad(opt->ps[i].param);
}

/* ---- hyperparameters by name --------------------------------------------------------------------- */
int ag_optimizer_num_groups(const ag_optimizer *opt) { return opt ? opt->ngroups : 0; }
ag_optim_kind ag_optimizer_kind(const ag_optimizer *opt) { return opt ? opt->algo->kind : (ag_optim_kind)0; }
const char *ag_optimizer_name(const ag_optimizer *opt) { return opt ? opt->algo->name : "(null)"; }

const ag__optim_field *ag__optim_find_field(const ag__optim_algo *a, const char *name) {
    for (const ag__optim_field *f = a->fields; name && f->name; f++)
        if (strcmp(f->name, name) == 0) return f;
    return NULL;
}

double ag__optim_field_get(const void *opts, const ag__optim_field *f) {
    const char *p = (const char *)opts + f->offset;
    switch (f->type) {
    case AG__FIELD_DOUBLE: return *(const double *)p;
    case AG__FIELD_BOOL: return *(const bool *)p;
    case AG__FIELD_INT: return *(const int *)p;
    }
    return NAN;
}

ag_status ag__optim_field_set(const char *owner, void *opts, const ag__optim_field *f, double v) {
    if (f->type != AG__FIELD_DOUBLE && (!isfinite(v) || v != floor(v) || fabs(v) > 1e9))
        return ag__fail(AG_ERR_ARG, "%s: %s takes an integer, got %g", owner, f->name, v);
    char *p = (char *)opts + f->offset;
    switch (f->type) {
    case AG__FIELD_DOUBLE: *(double *)p = v; break;
    case AG__FIELD_BOOL: *(bool *)p = v != 0; break;
    case AG__FIELD_INT: *(int *)p = (int)v; break;
    }
    return AG_OK;
}

/* Group g's options, or NULL with an error naming op. */
static void *group_opts(const ag_optimizer *opt, int g, const char *op) {
    if (!opt) return ag__fail_null(AG_ERR_ARG, "%s: optimizer is NULL", op);
    if (g < 0 || g >= opt->ngroups)
        return ag__fail_null(AG_ERR_INDEX, "%s: group %d out of range (%s has %d parameter groups)", op, g,
                             opt->algo->name, opt->ngroups);
    return opt->groups[g].opts;
}

ag_status ag_optimizer_get(const ag_optimizer *opt, int group, const char *name, double *value) {
    const void *o = group_opts(opt, group, "optimizer_get");
    if (!o) return ag_last_status();
    const ag__optim_field *f = ag__optim_find_field(opt->algo, name);
    if (!f) return ag__fail(AG_ERR_ARG, "optimizer_get: %s has no hyperparameter \"%s\"", opt->algo->name, name ? name : "(null)");
    if (value) *value = ag__optim_field_get(o, f);
    return AG_OK;
}

ag_status ag_optimizer_set(ag_optimizer *opt, int group, const char *name, double value) {
    void *o = group_opts(opt, group, "optimizer_set");
    if (!o) return ag_last_status();
    const ag__optim_field *f = ag__optim_find_field(opt->algo, name);
    if (!f) return ag__fail(AG_ERR_ARG, "optimizer_set: %s has no hyperparameter \"%s\"", opt->algo->name, name ? name : "(null)");
    _Alignas(max_align_t) unsigned char tmp[AG__OPTS_MAX];
    memcpy(tmp, o, opt->algo->opts_size);
    ag_status st = ag__optim_field_set(opt->algo->name, tmp, f, value);
    if (st == AG_OK) st = opt->algo->check(tmp);
    if (st == AG_OK) memcpy(o, tmp, opt->algo->opts_size);
    return st;
}

double ag_optimizer_get_lr(const ag_optimizer *opt, int group) {
    double lr = NAN;
    ag_optimizer_get(opt, group, "lr", &lr);
    return lr;
}

ag_status ag_optimizer_set_lr(ag_optimizer *opt, int group, double lr) {
    return ag_optimizer_set(opt, group, "lr", lr);
}

/* ---- the parameters ------------------------------------------------------------------------------- */
int ag_optimizer_num_params(const ag_optimizer *opt) { return opt ? opt->nparams : 0; }

ag_tensor *ag_optimizer_param(const ag_optimizer *opt, int i) {
    return opt && i >= 0 && i < opt->nparams ? opt->ps[i].param : NULL;
}

int ag_optimizer_param_index(const ag_optimizer *opt, const ag_tensor *p) {
    for (int i = 0; opt && p && i < opt->nparams; i++)
        if (opt->ps[i].param == p) return i;
    return -1;
}

int64_t ag_optimizer_numel(const ag_optimizer *opt) {
    int64_t n = 0;
    for (int i = 0; opt && i < opt->nparams; i++) n += ag_numel(opt->ps[i].param);
    return n;
}

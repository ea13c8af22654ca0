/*
 * train/early_stop.c - early stopping on a validation metric (Keras'
 * EarlyStopping): patience, min_delta, and a copy of the best weights that can
 * be put back into the model.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "core/iter.h"
#include "io/state.h"
#include "train/internal.h"

#define WEIGHTS "early_stopping.weights."

struct ag_early_stopping {
    ag_module *model;
    ag_early_stopping_options o;
    double best;
    int64_t best_epoch, epoch, wait;
    bool improved;
    ag_state_dict *weights; /* copies of the best parameters and buffers, or NULL */
};

ag_early_stopping_options ag_early_stopping_defaults(void) {
    return (ag_early_stopping_options){.mode = AG_MONITOR_MIN, .patience = 5, .min_delta = 0, .restore_best = true};
}

ag_early_stopping *ag_early_stopping_new(ag_module *model, const ag_early_stopping_options *o) {
    ag_early_stopping_options opt = o ? *o : ag_early_stopping_defaults();
    if (!model) return ag__fail_null(AG_ERR_ARG, "early_stopping_new: model is NULL");
    if (opt.mode != AG_MONITOR_MIN && opt.mode != AG_MONITOR_MAX)
        return ag__fail_null(AG_ERR_ARG, "early_stopping_new: unknown mode %d", (int)opt.mode);
    if (opt.patience < 0 || !(opt.min_delta >= 0))
        return ag__fail_null(AG_ERR_ARG, "early_stopping_new: patience %d and min_delta %g must be >= 0", opt.patience,
                             opt.min_delta);
    ag_early_stopping *es = ag__calloc(sizeof *es);
    if (!es) return ag__fail_null(AG_ERR_NOMEM, "early_stopping_new: out of memory");
    es->model = model;
    es->o = opt;
    es->best = opt.mode == AG_MONITOR_MIN ? INFINITY : -INFINITY;
    return es;
}

void ag_early_stopping_free(ag_early_stopping *es) {
    if (!es) return;
    ag_state_dict_free(es->weights);
    ag__free(es);
}

/* Copies the model's current weights into es->weights (allocated the first time). */
static ag_status keep_weights(ag_early_stopping *es) {
    ag_state_dict *live = ag_state_dict_new();
    ag_status st = live ? ag_module_state_dict(es->model, live) : ag__fail(AG_ERR_NOMEM, "early_stopping_step: out of memory");
    if (!st && !es->weights) {
        es->weights = ag__state_dict_copy("early_stopping_step", live);
        if (!es->weights) st = ag_last_status();
    } else if (!st) {
        for (int i = 0; i < ag_state_dict_size(live); i++) {
            ag_tensor *dst = ag_state_dict_tensor(es->weights, i);
            ag__copy_into(dst, ag_state_dict_tensor(live, i));
            ag__bump_version(dst);
        }
    }
    ag_state_dict_free(live);
    return st;
}

int ag_early_stopping_step(ag_early_stopping *es, double metric) {
    if (!es) return ag__fail(AG_ERR_ARG, "early_stopping_step: NULL argument"), -1;
    es->epoch++;
    double d = es->o.mode == AG_MONITOR_MIN ? es->best - metric : metric - es->best;
    es->improved = !isnan(metric) && (es->best_epoch == 0 || d > es->o.min_delta); /* the first number always does */
    if (es->improved) {
        if (es->o.restore_best && keep_weights(es)) {
            es->epoch--;
            es->improved = false;
            return -1;
        }
        es->best = metric;
        es->best_epoch = es->epoch;
        es->wait = 0;
        return 0;
    }
    es->wait++;
    return es->wait >= es->o.patience;
}

bool ag_early_stopping_improved(const ag_early_stopping *es) { return es && es->improved; }
double ag_early_stopping_best(const ag_early_stopping *es) { return es ? es->best : NAN; }
int64_t ag_early_stopping_best_epoch(const ag_early_stopping *es) { return es ? es->best_epoch : 0; }

ag_status ag_early_stopping_restore(ag_early_stopping *es) {
    if (!es) return ag__fail(AG_ERR_ARG, "early_stopping_restore: NULL argument");
    if (!es->weights)
        return ag__fail(AG_ERR_ARG, "early_stopping_restore: no best weights are kept (%s)",
                        es->o.restore_best ? "no epoch improved yet" : "restore_best is off");
    return ag_module_load_state_dict(es->model, es->weights, true);
}

/* ---- saving and resuming ------------------------------------------------------------------ */
ag_status ag_early_stopping_state_dict(const ag_early_stopping *es, ag_state_dict *sd) {
    if (!es || !sd) return ag__fail(AG_ERR_ARG, "early_stopping_state_dict: NULL argument");
    ag_status st = ag_state_dict_set_scalar(sd, "early_stopping.best", es->best);
    if (!st) st = ag_state_dict_set_scalar(sd, "early_stopping.best_epoch", (double)es->best_epoch);
    if (!st) st = ag_state_dict_set_scalar(sd, "early_stopping.epoch", (double)es->epoch);
    if (!st) st = ag_state_dict_set_scalar(sd, "early_stopping.wait", (double)es->wait);
    if (!st) st = ag_state_dict_set_scalar(sd, "early_stopping.improved", es->improved);
    for (int i = 0; !st && i < ag_state_dict_size(es->weights); i++) {
        const char *mine = ag_state_dict_name(es->weights, i);
        char *name = ag__alloc(sizeof WEIGHTS + strlen(mine)); /* names of any length, never cut */
        if (!name) return ag__fail(AG_ERR_NOMEM, "early_stopping_state_dict: out of memory");
        strcpy(name, WEIGHTS);
        strcat(name, mine);
        st = ag_state_dict_set(sd, name, ag_state_dict_tensor(es->weights, i)); /* copied on saving */
        ag__free(name);
    }
    return st;
}

#define LOAD_OP "early_stopping_load_state_dict"

/* Checks everything sd holds for es, then (apply) puts it in place; changes nothing on failure. */
static ag_status es_load(ag_early_stopping *es, const ag_state_dict *sd, bool apply) {
    if (!es || !sd) return ag__fail(AG_ERR_ARG, LOAD_OP ": NULL argument");
    static const struct {
        const char *name;
        ag__range rule;
    } fields[] = {{"early_stopping.best", AG__NOT_NAN}, /* ±inf before the first metric */
                  {"early_stopping.best_epoch", AG__COUNT},
                  {"early_stopping.epoch", AG__COUNT},
                  {"early_stopping.wait", AG__COUNT},
                  {"early_stopping.improved", AG__FLAG}};
    double v[5];
    ag_status st = AG_OK;
    for (int i = 0; !st && i < 5; i++) st = ag__sd_number(LOAD_OP, sd, fields[i].name, fields[i].rule, &v[i]);
    if (st) return st;
    double best = v[0];
    int64_t best_epoch = (int64_t)v[1], epoch = (int64_t)v[2], wait = (int64_t)v[3];
    if (best_epoch > epoch || wait > epoch)
        return ag__fail(AG_ERR_VALUE, "early_stopping_load_state_dict: inconsistent counters (best epoch %lld, %lld "
                                      "epochs without improvement, of %lld)", (long long)best_epoch, (long long)wait,
                        (long long)epoch);
    /* The kept weights, checked against the model as a load into it would be. */
    ag_state_dict *w = NULL;
    if (es->o.restore_best && best_epoch > 0) {
        ag_state_dict *saved = ag_state_dict_new(), *live = ag_state_dict_new();
        st = saved && live ? ag_module_state_dict(es->model, live) : AG_ERR_NOMEM;
        if (st == AG_ERR_NOMEM) ag__fail(st, "early_stopping_load_state_dict: out of memory");
        char *name = NULL;
        for (int i = 0; !st && i < ag_state_dict_size(live); i++) {
            const char *mine = ag_state_dict_name(live, i);
            ag__free(name);
            if (!(name = ag__alloc(sizeof WEIGHTS + strlen(mine)))) {
                st = ag__fail(AG_ERR_NOMEM, "early_stopping_load_state_dict: out of memory");
                break;
            }
            strcpy(name, WEIGHTS);
            strcat(name, mine);
            ag_tensor *t = ag_state_dict_get(sd, name), *m = ag_state_dict_tensor(live, i);
            char s1[AG_SHAPE_STR], s2[AG_SHAPE_STR];
            if (!t) st = AG_ERR_ARG;
            else if (t->dtype != m->dtype || t->ndim != m->ndim ||
                     memcmp(t->shape, m->shape, (size_t)t->ndim * sizeof(int64_t)))
                st = ag__fail(AG_ERR_SHAPE, "early_stopping_load_state_dict: %s is %s %s, the model's is %s %s", name,
                              ag_dtype_name(t->dtype), ag__tshape(s1, t), ag_dtype_name(m->dtype), ag__tshape(s2, m));
            else st = ag_state_dict_set(saved, mine, t);
        }
        ag__free(name);
        if (!st && apply && !(w = ag__state_dict_copy("early_stopping_load_state_dict", saved))) st = ag_last_status();
        ag_state_dict_free(saved);
        ag_state_dict_free(live);
        if (st) return st;
    }
    if (!apply) return AG_OK;
    ag_state_dict_free(es->weights);
    es->weights = w;
    es->best = best;
    es->best_epoch = best_epoch;
    es->epoch = epoch;
    es->wait = wait;
    es->improved = v[4] == 1;
    return AG_OK;
}

ag_status ag_early_stopping_load_state_dict(ag_early_stopping *es, const ag_state_dict *sd) { return es_load(es, sd, true); }
ag_status ag__early_stopping_check_state_dict(ag_early_stopping *es, const ag_state_dict *sd) { return es_load(es, sd, false); }

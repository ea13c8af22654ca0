/*
 * swa.c - torch.optim.swa_utils.AveragedModel and update_bn: a running
 * average of a model's weights (stochastic weight averaging, Izmailov et al.
 * 2018: the equal average of the weights along the tail of training; or an
 * exponential moving average, or any rule the caller gives), kept in a second
 * module of the same architecture; and the recomputation of BatchNorm running
 * statistics for the averaged weights with one pass over the data.
 */
#include <math.h>
#include <string.h>
#include "agrad/autograd.h"
#include "nn/internal.h"
#include "train/internal.h"

struct ag_averaged_model {
    ag_module *module; /* the average (owned) */
    ag_averaged_model_options o;
    int64_t n_averaged;
};

ag_averaged_model_options ag_averaged_model_defaults(void) { return (ag_averaged_model_options){0}; }

ag_averaged_model *ag_averaged_model_new(ag_module *model, ag_module *average, const ag_averaged_model_options *o) {
    ag_averaged_model_options d = ag_averaged_model_defaults();
    if (!o) o = &d;
    ag_status st = AG_OK;
    if (!model || !average || model == average)
        st = ag__fail(AG_ERR_ARG, "averaged_model_new: needs a model and a separate module of its architecture");
    else if (o->avg_fn == NULL && (!(o->ema_decay >= 0 && o->ema_decay < 1)))
        st = ag__fail(AG_ERR_ARG, "averaged_model_new: ema_decay must be in [0, 1) (0: the SWA equal average), got %g",
                      o->ema_decay);
    ag_averaged_model *am = st ? NULL : ag__calloc(sizeof *am);
    if (!st && !am) st = AG_ERR_NOMEM;
    if (!st) { /* PyTorch deep-copies the model: here the twin takes its parameters and buffers */
        ag_state_dict *sd = ag_state_dict_new();
        st = sd ? ag_module_state_dict(model, sd) : AG_ERR_NOMEM;
        if (!st) st = ag_module_load_state_dict(average, sd, true);
        ag_state_dict_free(sd);
    }
    if (st) {
        ag__free(am);
        ag_module_free(average);
        return NULL;
    }
    *am = (ag_averaged_model){average, *o, 0};
    return am;
}

void ag_averaged_model_free(ag_averaged_model *am) {
    if (!am) return;
    ag_module_free(am->module);
    ag__free(am);
}

ag_module *ag_averaged_model_module(const ag_averaged_model *am) { return am ? am->module : NULL; }
int64_t ag_averaged_model_n_averaged(const ag_averaged_model *am) { return am ? am->n_averaged : 0; }

/* The new average of one tensor: avg_fn's, or SWA's avg + (cur − avg)/(n + 1), or EMA's
 * decay·avg + (1 − decay)·cur, in float64. */
static ag_tensor *average_of(const ag_averaged_model *am, ag_tensor *avg, ag_tensor *cur) {
    const ag_averaged_model_options *o = &am->o;
    ag_tensor *a = ag_to_dtype(avg, AG_F64), *c = ag_to_dtype(cur, AG_F64);
    if (o->avg_fn) return a && c ? o->avg_fn(a, c, am->n_averaged, o->ctx) : NULL;
    if (o->ema_decay > 0) return ag_add(ag_mul_scalar(a, o->ema_decay), ag_mul_scalar(c, 1 - o->ema_decay));
    return ag_add(a, ag_div_scalar(ag_sub(c, a), (double)(am->n_averaged + 1)));
}

/* The tensors averaged, pairwise: parameters (and with use_buffers, buffers), each the
 * entries of the two modules' state dicts, which list them in the same order. */
ag_status ag_averaged_model_update(ag_averaged_model *am, ag_module *model) {
    if (!am || !model) return ag__fail(AG_ERR_ARG, "averaged_model_update: NULL argument");
    ag_state_dict *mine = ag_state_dict_new(), *theirs = ag_state_dict_new();
    ag_status st = mine && theirs ? AG_OK : AG_ERR_NOMEM;
    if (!st) st = ag_module_state_dict(am->module, mine);
    if (!st) st = ag_module_state_dict(model, theirs);
    int n = st ? 0 : ag_state_dict_size(mine);
    if (!st && n != ag_state_dict_size(theirs))
        st = ag__fail(AG_ERR_ARG, "averaged_model_update: the model has %d parameters and buffers, the average %d",
                      ag_state_dict_size(theirs), n);
    for (int i = 0; !st && i < n; i++) {
        ag_tensor *a = ag_state_dict_tensor(mine, i), *c = ag_state_dict_tensor(theirs, i);
        if (strcmp(ag_state_dict_name(mine, i), ag_state_dict_name(theirs, i)) || ag_numel(a) != ag_numel(c) ||
            ag_ndim(a) != ag_ndim(c) || memcmp(ag_shape_of(a).dim, ag_shape_of(c).dim, sizeof(int64_t) * (size_t)ag_ndim(a)))
            st = ag__fail(AG_ERR_SHAPE, "averaged_model_update: the model's \"%s\" does not match the average's \"%s\"",
                          ag_state_dict_name(theirs, i), ag_state_dict_name(mine, i));
    }
    ag_tensor *params[1024];
    int np = st ? 0 : ag_module_parameters(am->module, params, 1024);
    if (np > 1024) st = ag__fail(AG_ERR_ARG, "averaged_model_update: more than 1024 parameter tensors");
    ag_no_grad_begin();
    for (int i = 0; !st && i < n; i++) {
        ag_tensor *a = ag_state_dict_tensor(mine, i), *c = ag_state_dict_tensor(theirs, i);
        bool param = false;
        for (int k = 0; k < np && !param; k++) param = params[k] == a;
        if (!param && !am->o.use_buffers) continue;
        if (ag_scope_begin()) {
            st = ag_last_status();
            break;
        }
        ag_tensor *v = am->n_averaged == 0 ? c : average_of(am, a, c);
        if (!v || !ag_copy_(a, v)) st = ag_last_status() ? ag_last_status() : AG_ERR_ARG;
        ag_scope_end();
    }
    ag_no_grad_end();
    ag_state_dict_free(mine);
    ag_state_dict_free(theirs);
    if (!st) am->n_averaged++;
    return st;
}

ag_status ag_averaged_model_state_dict(const ag_averaged_model *am, ag_state_dict *sd) {
    if (!am || !sd) return ag__fail(AG_ERR_ARG, "averaged_model_state_dict: NULL argument");
    ag_state_dict *m = ag_state_dict_new();
    ag_status st = m ? ag_module_state_dict(am->module, m) : AG_ERR_NOMEM;
    for (int i = 0; !st && i < ag_state_dict_size(m); i++) {
        char name[512];
        snprintf(name, sizeof name, "module.%s", ag_state_dict_name(m, i));
        st = ag_state_dict_set(sd, name, ag_state_dict_tensor(m, i));
    }
    if (!st) st = ag_state_dict_set_scalar(sd, "n_averaged", (double)am->n_averaged);
    ag_state_dict_free(m);
    return st;
}

ag_status ag_averaged_model_load_state_dict(ag_averaged_model *am, const ag_state_dict *sd) {
    if (!am || !sd) return ag__fail(AG_ERR_ARG, "averaged_model_load_state_dict: NULL argument");
    ag_tensor *n = ag_state_dict_get(sd, "n_averaged");
    double v = n && ag_numel(n) == 1 ? ag_item(n) : NAN;
    if (!(v >= 0 && v <= 0x1p53 && v == floor(v)))
        return ag__fail(AG_ERR_VALUE, "averaged_model_load_state_dict: \"n_averaged\" is %g, expected a whole number >= 0", v);
    ag_state_dict *m = ag_state_dict_new();
    ag_status st = m ? AG_OK : AG_ERR_NOMEM;
    for (int i = 0; !st && i < ag_state_dict_size(sd); i++)
        if (!strncmp(ag_state_dict_name(sd, i), "module.", 7))
            st = ag_state_dict_set(m, ag_state_dict_name(sd, i) + 7, ag_state_dict_tensor(sd, i));
    if (!st) st = ag_module_load_state_dict(am->module, m, true);
    ag_state_dict_free(m);
    if (!st) am->n_averaged = (int64_t)v;
    return st;
}

/* ---- update_bn -------------------------------------------------------------------------------- */
#define MAX_BN 256

static int collect_bn(ag_module *m, ag_module **out, int n) {
    if (ag__batch_norm_config(m, NULL, NULL, NULL, NULL, NULL) && ag_module_get_buffer(m, "running_mean")) {
        if (n < MAX_BN) out[n] = m;
        n++;
    }
    for (int i = 0; i < ag_module_num_children(m); i++) n = collect_bn(ag_module_child(m, i, NULL), out, n);
    return n;
}

ag_status ag_update_bn(ag_loader *loader, ag_module *model) {
    if (!loader || !model) return ag__fail(AG_ERR_ARG, "update_bn: NULL loader or model");
    ag_module *bn[MAX_BN];
    double momenta[MAX_BN];
    int n = collect_bn(model, bn, 0);
    if (n > MAX_BN) return ag__fail(AG_ERR_ARG, "update_bn: more than %d BatchNorm modules", MAX_BN);
    if (n == 0) return AG_OK;
    /* running statistics from scratch, as a cumulative average (momentum None) over one pass */
    for (int i = 0; i < n; i++) {
        ag__batch_norm_config(bn[i], NULL, NULL, &momenta[i], NULL, NULL);
        ag__batch_norm_set_momentum(bn[i], NAN);
        ag_init_zeros_(ag_module_get_buffer(bn[i], "running_mean"));
        ag_init_ones_(ag_module_get_buffer(bn[i], "running_var"));
        ag_tensor *nbt = ag_module_get_buffer(bn[i], "num_batches_tracked");
        if (nbt) ag_init_zeros_(nbt);
    }
    bool was_training = ag_module_is_training(model);
    ag_module_train(model, true);
    ag_loader_reset(loader);
    ag_no_grad_begin();
    ag_status st = AG_OK;
    int got = 1;
    while (!st && got > 0) {
        st = ag_scope_begin();
        if (st) break;
        ag_tensor *x = NULL;
        got = ag_loader_next(loader, &x, NULL);
        if (got < 0) st = ag_last_status() ? ag_last_status() : AG_ERR_ARG;
        if (got > 0 && !ag_module_forward(model, x)) st = ag_last_status() ? ag_last_status() : AG_ERR_ARG;
        ag_scope_end();
    }
    ag_no_grad_end();
    for (int i = 0; i < n; i++) ag__batch_norm_set_momentum(bn[i], momenta[i]);
    ag_module_train(model, was_training);
    return st;
}

/*
 * The optimizer step inside backward (ag_optimizer_step_param,
 * ag_optimizer_register_step_hooks): every algorithm that can update one parameter
 * alone gives, stepping inside backward, the bits of backward then
 * ag_optimizer_step on an MLP (parameters, state, step counts), on one thread and
 * on two with parameters split over them; schedulers; gradients kept or dropped;
 * removing the hooks; the errors.
 */
#include <string.h>
#include "agrad/agrad.h"
#include "optim/internal.h"
#include "tap.h"
#include "failing_alloc.h"

static bool same_bits(const ag_tensor *x, const ag_tensor *y) {
    if (!x || !y) return x == y;
    return ag_numel(x) == ag_numel(y) && x->dtype == y->dtype &&
           memcmp(ag_data(x), ag_data(y), (size_t)ag_numel(x) * ag_dtype_size(x->dtype)) == 0;
}

/* ---- an MLP and its batch ------------------------------------------------------------------- */
enum { BATCH = 8, IN = 6, HIDDEN = 32, CLASSES = 4 };

typedef struct net {
    ag_module *mlp;
    ag_tensor *params[4];
    int n;
    ag_optimizer *opt;
    ag_scheduler *sched;
} net;

/* Linear IN->HIDDEN, ReLU, Linear HIDDEN->CLASSES in dtype dt, from seed 5 (so two nets match). */
static bool net_init(net *m, ag_dtype dt) {
    memset(m, 0, sizeof *m);
    ag_manual_seed(5);
    m->mlp = AG_SEQUENTIAL(ag_nn_linear(IN, HIDDEN, true), ag_nn_relu(), ag_nn_linear(HIDDEN, CLASSES, true));
    if (!m->mlp || ag_module_to_dtype(m->mlp, dt) != AG_OK) return false;
    m->n = ag_module_parameters(m->mlp, m->params, 4);
    return m->n == 4;
}

static void net_free(net *m) {
    ag_scheduler_free(m->sched);
    ag_optimizer_free(m->opt);
    ag_module_free(m->mlp);
}

/* The loss of batch t (inputs and targets that change with t). */
static ag_tensor *loss_of(net *m, int t, ag_dtype dt) {
    ag_tensor *x = ag_empty(AG_SHAPE(BATCH, IN), dt), *y = ag_empty(AG_SHAPE(BATCH), AG_I64);
    if (!x || !y) return NULL;
    for (int64_t i = 0; i < BATCH * IN; i++) {
        double v = (double)((i * 37 + t * 11) % 23) / 7 - 1.5;
        if (dt == AG_F32) ((float *)ag_data(x))[i] = (float)v;
        else ((double *)ag_data(x))[i] = v;
    }
    for (int64_t i = 0; i < BATCH; i++) ((int64_t *)ag_data(y))[i] = (i * 3 + t) % CLASSES;
    return ag_cross_entropy(ag_module_forward(m->mlp, x), y, NULL);
}

/* One training step: the ordinary one (zero_grad, backward, step), or with the step
 * inside backward (zero_grad only when the hooks keep the gradients). */
static bool train_step(net *m, int t, ag_dtype dt, bool inside, bool keep_grad) {
    ag_scope_begin();
    if (!inside || keep_grad) ag_optimizer_zero_grad(m->opt);
    ag_tensor *loss = loss_of(m, t, dt);
    bool good = loss && ag_backward(loss) == AG_OK && (inside || ag_optimizer_step(m->opt) == AG_OK);
    if (good && m->sched) good = ag_scheduler_step(m->sched) == AG_OK;
    ag_scope_end();
    return good;
}

/* Whether the two optimizers hold the same bits: parameters, state tensors, step counts, numbers. */
static bool same_state(const ag_optimizer *a, const ag_optimizer *b) {
    if (a->nparams != b->nparams) return false;
    for (int i = 0; i < a->nparams; i++) {
        const ag__pstate *x = &a->ps[i], *y = &b->ps[i];
        if (!same_bits(x->param, y->param) || x->step != y->step ||
            memcmp(x->scalar, y->scalar, sizeof x->scalar) != 0)
            return false;
        for (int k = 0; k < AG__OPT_BUFS; k++)
            if (!same_bits(x->buf[k], y->buf[k])) return false;
    }
    return true;
}

/* ---- every algorithm: inside backward against after it ------------------------------------------- */
typedef ag_optimizer *(*make_fn)(ag_tensor *const *p, int n);
#define MAKER(NAME, N, ...)                                                                                    \
    static ag_optimizer *NAME(ag_tensor *const *p, int n) {                                                 \
        ag_##N##_options o = ag_##N##_defaults();                                                           \
        __VA_ARGS__;                                                                                        \
        return ag_##N##_new(p, n, &o);                                                                      \
    }
MAKER(sgd_plain, sgd, o.lr = 0.1)
MAKER(sgd_nesterov, sgd, o.lr = 0.05, o.momentum = 0.9, o.nesterov = true, o.weight_decay = 0.01)
MAKER(adam_plain, adam, o.lr = 0.01)
MAKER(adam_amsgrad, adam, o.lr = 0.01, o.amsgrad = true, o.weight_decay = 0.01)
MAKER(adamw_plain, adamw, o.lr = 0.01)
MAKER(adagrad_plain, adagrad, o.lr_decay = 0.01, o.weight_decay = 0.01)
MAKER(rmsprop_centered, rmsprop, o.momentum = 0.5, o.centered = true)
MAKER(adamax_plain, adamax, o.weight_decay = 0.01)
MAKER(nadam_plain, nadam, o.decoupled_weight_decay = true, o.weight_decay = 0.01)
MAKER(radam_plain, radam, (void)0)
MAKER(adadelta_plain, adadelta, o.weight_decay = 0.01)
MAKER(rprop_plain, rprop, (void)0)
MAKER(asgd_plain, asgd, o.t0 = 2)
MAKER(muon_plain, muon, o.weight_decay = 0.01)
MAKER(adafactor_plain, adafactor, o.beta1 = 0.9)
MAKER(sparse_adam_plain, sparse_adam, (void)0)

static const struct {
    const char *name;
    make_fn make;
} algos[] = {
    {"SGD", sgd_plain}, {"SGD Nesterov, weight decay", sgd_nesterov}, {"Adam", adam_plain},
    {"Adam amsgrad, L2", adam_amsgrad}, {"AdamW", adamw_plain}, {"Adagrad", adagrad_plain},
    {"RMSprop centered, momentum", rmsprop_centered}, {"Adamax", adamax_plain}, {"NAdam decoupled", nadam_plain},
    {"RAdam", radam_plain}, {"Adadelta", adadelta_plain}, {"Rprop", rprop_plain}, {"ASGD", asgd_plain},
    {"Muon", muon_plain}, {"Adafactor", adafactor_plain}, {"SparseAdam", sparse_adam_plain},
};

/* 6 steps of each way on two nets made alike, with a StepLR when sched; the same bits after each. */
static bool runs_match(make_fn make, ag_dtype dt, bool sched, bool keep_grad) {
    net a, b;
    bool good = net_init(&a, dt) && net_init(&b, dt);
    if (good) {
        a.opt = make(a.params, a.n);
        b.opt = make(b.params, b.n);
        good = a.opt && b.opt && ag_optimizer_register_step_hooks(b.opt, !keep_grad) == AG_OK;
    }
    if (good && sched) {
        a.sched = ag_step_lr_new(a.opt, 2, 0.5);
        b.sched = ag_step_lr_new(b.opt, 2, 0.5);
        good = a.sched && b.sched;
    }
    for (int t = 0; good && t < 6; t++) {
        good = train_step(&a, t, dt, false, false) && train_step(&b, t, dt, true, keep_grad) && same_state(a.opt, b.opt);
        for (int i = 0; good && i < b.n; i++) /* kept: the same gradients; dropped: none */
            good = keep_grad ? same_bits(ag_grad(a.params[i]), ag_grad(b.params[i])) : ag_grad(b.params[i]) == NULL;
    }
    net_free(&a);
    net_free(&b);
    return good;
}

static void test_same_bits(void) {
    for (size_t k = 0; k < sizeof algos / sizeof *algos; k++)
        for (int d = 0; d < 2; d++) {
            ag_dtype dt = d ? AG_F64 : AG_F32;
            ok(runs_match(algos[k].make, dt, false, false),
               "%s %s: 6 steps inside backward give the bits of backward then step (parameters, state)", algos[k].name,
               ag_dtype_name(dt));
        }
    /* two threads, parameters from 128 elements split over them (AG_BACKEND_ACCEL): the flat
     * update of a step cuts them elsewhere than one parameter's chunks */
    ag_set_num_threads(2);
    ag__backend = AG_BACKEND_ACCEL;
    ok(ag__threads_for(IN * HIDDEN) == 2, "a %d-element weight splits over 2 threads", IN * HIDDEN);
    for (size_t k = 0; k < sizeof algos / sizeof *algos; k++)
        ok(runs_match(algos[k].make, AG_F32, false, false), "%s on 2 threads: the same bits inside backward",
           algos[k].name);
    ag__backend = AG_BACKEND_AUTO;
    ag_set_num_threads(0);
    ok(runs_match(adam_plain, AG_F32, true, false) && runs_match(sgd_nesterov, AG_F64, true, false),
       "a StepLR scheduler: the same bits inside backward (each update reads its group's lr)");
    ok(runs_match(adamw_plain, AG_F32, false, true) && runs_match(sgd_nesterov, AG_F32, true, true),
       "gradients kept (free_grad false, zero_grad each step): the same bits and the same gradients");
}

/* ---- the contract --------------------------------------------------------------------------------- */
static void test_contract(void) {
    net m;
    ok(net_init(&m, AG_F32) && (m.opt = sgd_plain(m.params, m.n)) != NULL, "an SGD over an MLP");
    ag_tensor *w = m.params[0];
    ok(ag_optimizer_param_index(m.opt, w) == 0 && ag_optimizer_param_index(m.opt, m.params[3]) == 3 &&
           ag_optimizer_param_index(m.opt, NULL) == -1 && ag_optimizer_param_index(NULL, w) == -1,
       "param_index finds each parameter, -1 for NULL");

    /* step_param alone: no gradient, nothing; with one, that parameter only */
    ag_tensor *w0 = ag_clone(w), *b0 = ag_clone(m.params[1]);
    ok(ag_optimizer_step_param(m.opt, 0) == AG_OK && same_bits(w, w0), "step_param without a gradient changes nothing");
    ag_scope_begin();
    ok(ag_backward(loss_of(&m, 0, AG_F32)) == AG_OK && ag_optimizer_step_param(m.opt, 0) == AG_OK &&
           !same_bits(w, w0) && same_bits(m.params[1], b0) && m.opt->ps[0].step == 1 && m.opt->ps[1].step == 0,
       "step_param updates its parameter alone and counts its step");
    ag_scope_end();
    ag_optimizer_zero_grad(m.opt);
    ok(ag_optimizer_step_param(m.opt, 4) == AG_ERR_INDEX && strstr(ag_last_error(), "out of range") &&
           ag_optimizer_step_param(m.opt, -1) == AG_ERR_INDEX && ag_optimizer_step_param(NULL, 0) == AG_ERR_ARG,
       "step_param: AG_ERR_INDEX out of range, AG_ERR_ARG for NULL");

    /* hooks on: the step is refused, so is a second registration and a new group */
    ok(ag_optimizer_register_step_hooks(m.opt, true) == AG_OK, "register_step_hooks");
    ok(ag_optimizer_register_step_hooks(m.opt, true) == AG_ERR_ARG && strstr(ag_last_error(), "already"),
       "a second registration is refused");
    ok(ag_optimizer_step(m.opt) == AG_ERR_ARG && strstr(ag_last_error(), "twice"),
       "ag_optimizer_step is refused while the optimizer steps inside backward");
    ag_tensor *extra = ag_requires_grad_(ag_zeros(AG_SHAPE(3), AG_F32), true);
    ok(ag_optimizer_add_param_group(m.opt, &extra, 1, NULL) == AG_ERR_ARG && strstr(ag_last_error(), "remove"),
       "add_param_group is refused while the hooks are on");
    ag_release(w0);
    w0 = ag_clone(w);
    ag_scope_begin();
    ok(ag_backward(loss_of(&m, 1, AG_F32)) == AG_OK && !same_bits(w, w0) && ag_grad(w) == NULL &&
           m.opt->ps[0].step == 2 && m.opt->ps[3].step == 1,
       "backward updates every parameter and drops its gradient");
    ag_scope_end();

    /* hooks off: backward leaves the parameters alone, the step works again */
    ok(ag_optimizer_remove_step_hooks(m.opt) && !ag_optimizer_remove_step_hooks(m.opt) &&
           !ag_optimizer_remove_step_hooks(NULL),
       "remove_step_hooks: true once, then false");
    ag_release(w0);
    w0 = ag_clone(w);
    ag_scope_begin();
    ok(ag_backward(loss_of(&m, 2, AG_F32)) == AG_OK && same_bits(w, w0) && ag_grad(w) != NULL &&
           ag_optimizer_step(m.opt) == AG_OK && !same_bits(w, w0) && m.opt->ps[0].step == 3,
       "after remove, backward only accumulates and ag_optimizer_step updates");
    ag_scope_end();
    ok(ag_optimizer_add_param_group(m.opt, &extra, 1, NULL) == AG_OK, "and add_param_group works again");

    /* freed with its hooks on: backward on the parameters runs no hook of it */
    ok(ag_optimizer_register_step_hooks(m.opt, false) == AG_OK, "hooks on again");
    ag_optimizer_free(m.opt);
    m.opt = NULL;
    ag_release(w0);
    w0 = ag_clone(w);
    ag_scope_begin();
    ok(ag_backward(loss_of(&m, 3, AG_F32)) == AG_OK && same_bits(w, w0) && ag_grad(w) != NULL,
       "an optimizer freed with its hooks on leaves none behind");
    ag_scope_end();
    ag_zero_grad(w);

    /* LBFGS updates every parameter at once */
    ag_optimizer *lb = ag_lbfgs_new(m.params, m.n, NULL);
    ok(ag_optimizer_register_step_hooks(lb, true) == AG_ERR_ARG && strstr(ag_last_error(), "LBFGS") &&
           ag_optimizer_step_param(lb, 0) == AG_ERR_ARG && ag_optimizer_register_step_hooks(NULL, true) == AG_ERR_ARG,
       "LBFGS can't step inside backward or one parameter alone; NULL is refused");
    ag_optimizer_free(lb);
    for (int i = 0; i < m.n; i++) ag_zero_grad(m.params[i]);
    ag_release(w0), ag_release(b0), ag_release(extra);
    net_free(&m);
}

/* A failing update (its state can't be made) stops backward with its error; nothing leaks. */
static void test_failure(void) {
    net m;
    bool good = net_init(&m, AG_F32) && (m.opt = adam_plain(m.params, m.n)) != NULL &&
                ag_optimizer_register_step_hooks(m.opt, true) == AG_OK;
    bool stopped = false;
    for (long k = 1; good && !stopped && k < 400; k++) {
        ag_scope_begin();
        ag_tensor *loss = loss_of(&m, 0, AG_F32);
        fail_at = alloc_calls + k;
        ag_status st = loss ? ag_backward(loss) : AG_ERR_NOMEM;
        fail_at = -1;
        /* the first failure inside a hook: Adam's moments of the last layer's bias, the first parameter done */
        stopped = st == AG_ERR_NOMEM && strstr(ag_last_error(), "post-accumulate-grad hook") != NULL;
        ag_scope_end();
        for (int i = 0; i < m.n; i++) ag_zero_grad(m.params[i]);
        good = st == AG_OK || st == AG_ERR_NOMEM;
    }
    ok(good && stopped, "an update that runs out of memory stops backward with AG_ERR_NOMEM from its hook");
    net_free(&m);
}

int main(void) {
    ag_set_allocator(failing_alloc, NULL);
    test_same_bits();
    test_contract();
    test_failure();
    ok(ag_live_tensors() == 0, "no tensor left alive");
    return tap_done();
}

/*
 * The thread contract (docs/design.md#threads), under ThreadSanitizer in CI
 * (.ci/run):
 *
 * - independent models trained in separate threads at the same time give
 *   bit-identical results to the same models trained alone: scopes, the random
 *   generator, grad mode and errors are per thread;
 * - one model served from several threads at once (no-grad forwards in eval mode
 *   of every module type, and every loss with shared weights; then gradients
 *   with respect to each thread's inputs through the frozen model) gives each
 *   thread bit-identical results to a single-threaded run, and leaves the shared
 *   tensors' reference counts and versions as they were.
 */
#include <pthread.h>
#include <string.h>
#include "agrad/agrad.h"
#include "core/internal.h"
#include "tap.h"

enum { N = 4 };

/* ---- independent models ------------------------------------------------------------------- */
typedef struct job {
    uint64_t seed;
    float result[8];
    ag_status status;
} job;

/* 30 SGD steps of a small MLP on random data, all from one seed. */
static void *train(void *arg) {
    job *j = arg;
    ag_manual_seed(j->seed);
    ag_module *m = AG_SEQUENTIAL(ag_nn_linear(6, 16, true), ag_nn_linear(16, 8, true));
    ag_tensor *x = ag_randn(AG_SHAPE(32, 6), AG_F32), *y = ag_randn(AG_SHAPE(32, 8), AG_F32);
    ag_tensor *params[4];
    int np = ag_module_parameters(m, params, 4);
    j->status = AG_OK;
    for (int step = 0; step < 30 && j->status == AG_OK; step++) {
        ag_scope_begin();
        ag_tensor *loss = ag_mean(ag_square(ag_sub(ag_tanh(ag_module_forward(m, x)), y)));
        j->status = loss ? ag_backward(loss) : ag_last_status();
        ag_no_grad_begin();
        for (int i = 0; i < np && j->status == AG_OK; i++) ag_add_(params[i], ag_grad(params[i]), -0.1);
        ag_no_grad_end();
        ag_module_zero_grad(m);
        ag_scope_end();
    }
    ag_scope_begin();
    ag_copy_to(ag_module_forward(m, ag_ones(AG_SHAPE(1, 6), AG_F32)), j->result, 8, AG_F32);
    ag_scope_end();
    ag_release(x);
    ag_release(y);
    ag_module_free(m);
    return NULL;
}

static void independent_models(void) {
    job alone[N], together[N];
    for (int i = 0; i < N; i++) {
        alone[i] = (job){.seed = 100 + (uint64_t)i};
        together[i] = alone[i];
        train(&alone[i]);
    }
    pthread_t th[N];
    for (int i = 0; i < N; i++) pthread_create(&th[i], NULL, train, &together[i]);
    for (int i = 0; i < N; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < N; i++) {
        ok(alone[i].status == AG_OK && together[i].status == AG_OK, "model %d trains in both runs", i);
        ok(memcmp(alone[i].result, together[i].result, sizeof alone[i].result) == 0,
           "model %d: concurrent training gives bit-identical outputs to training alone", i);
    }
    ok(memcmp(alone[0].result, alone[1].result, sizeof alone[0].result) != 0, "different seeds give different models");
}

/* ---- one model served from several threads ------------------------------------------------ */
enum { BATCH = 16, HIDDEN = 64, CLASSES = 10, FORWARDS = 200 };

/* What the threads share, read-only: the model, one module of every activation
 * type applied to its hidden features, loss objects holding class weights, and
 * the class centres of the harmonic loss. */
enum { LOGITS, LOG_PROBS, PROBS };                      /* what a loss takes as input */
enum { CLASS, UNIT, NORMAL, DISTRIBUTION, POSITIVE, SIGN }; /* and as target */

typedef struct served_loss {
    ag_loss *loss;
    int input, target;
} served_loss;

typedef struct served {
    ag_module *body, *classifier;
    ag_module *acts[24];
    int nacts;
    served_loss losses[16];
    int nlosses;
    ag_tensor *class_weight, *pos_weight, *centres;
    ag_state_dict *shared; /* every shared tensor, by name */
} served;

static served model;

static void add_act(ag_module *m) { model.acts[model.nacts++] = m; }

static void add_loss(ag_loss_fn fn, bool weighted, int input, int target) {
    ag_loss_opts o = ag_loss_defaults();
    if (weighted) o.weight = model.class_weight;
    if (fn == ag_binary_cross_entropy_with_logits) o.pos_weight = model.pos_weight;
    if (fn == ag_cross_entropy) o.label_smoothing = 0.1;
    model.losses[model.nlosses++] = (served_loss){ag_nn_loss(fn, &o), input, target};
}

static void model_new(void) {
    ag_manual_seed(7);
    model.body = AG_SEQUENTIAL(ag_nn_flatten(1, -1), ag_nn_linear(24, HIDDEN, true),
                               ag_nn_batch_norm1d(HIDDEN, 1e-5, 0.1, true, true), ag_nn_prelu(HIDDEN, 0.25), ag_nn_dropout(0.5), ag_nn_linear(HIDDEN, HIDDEN, true),
                               ag_nn_layer_norm(AG_SHAPE(HIDDEN), 1e-5, true), ag_nn_gelu(false), ag_nn_identity(),
                               ag_nn_unflatten(1, AG_SHAPE(8, 8)), ag_nn_flatten(1, 2), ag_nn_gaussian_noise(0.3),
                               ag_nn_linear(HIDDEN, HIDDEN, false), ag_nn_tanh());
    model.classifier = ag_nn_linear(HIDDEN, CLASSES, true);
    /* A few training-mode batches give BatchNorm running statistics worth reading. */
    ag_no_grad_begin();
    for (int i = 0; i < 3; i++) {
        ag_scope_begin();
        ag_module_forward(model.body, ag_randn(AG_SHAPE(BATCH, 4, 6), AG_F32));
        ag_scope_end();
    }
    ag_no_grad_end();
    ag_module_eval(model.body);

    add_act(ag_nn_relu()), add_act(ag_nn_sigmoid()), add_act(ag_nn_tanh()), add_act(ag_nn_selu());
    add_act(ag_nn_silu()), add_act(ag_nn_mish()), add_act(ag_nn_relu6()), add_act(ag_nn_hardsigmoid());
    add_act(ag_nn_hardswish()), add_act(ag_nn_softsign()), add_act(ag_nn_binary_step());
    add_act(ag_nn_softmax(1)), add_act(ag_nn_log_softmax(1)), add_act(ag_nn_leaky_relu(0.1));
    add_act(ag_nn_elu(1.0)), add_act(ag_nn_celu(0.5)), add_act(ag_nn_softplus(2.0, 20.0));
    add_act(ag_nn_gelu(true)), add_act(ag_nn_hardtanh(-0.5, 0.5)), add_act(ag_nn_prelu(1, 0.2));
    add_act(ag_nn_dropout(0.3)), add_act(ag_nn_gaussian_noise(1.0));
    add_act(ag_nn_batch_norm1d(HIDDEN, 1e-5, 0.1, false, false)); /* no running statistics: batch statistics in eval */
    add_act(ag_nn_layer_norm(AG_SHAPE(HIDDEN), 1e-5, false));
    for (int i = 0; i < model.nacts; i++) ag_module_eval(model.acts[i]);

    model.class_weight = ag_rand(AG_SHAPE(CLASSES), AG_F32);
    ag_scope_begin();
    model.pos_weight = ag_keep(ag_add_scalar(ag_rand(AG_SHAPE(CLASSES), AG_F32), 0.5));
    ag_scope_end();
    model.centres = ag_requires_grad_(ag_randn(AG_SHAPE(CLASSES, HIDDEN), AG_F32), true);
    add_loss(ag_cross_entropy, true, LOGITS, CLASS);
    add_loss(ag_nll_loss, true, LOG_PROBS, CLASS);
    add_loss(ag_multi_margin_loss, true, LOGITS, CLASS);
    add_loss(ag_binary_cross_entropy_with_logits, true, LOGITS, UNIT);
    add_loss(ag_binary_cross_entropy, true, PROBS, UNIT);
    add_loss(ag_multilabel_soft_margin_loss, true, LOGITS, UNIT);
    add_loss(ag_mse_loss, false, LOGITS, NORMAL);
    add_loss(ag_l1_loss, false, LOGITS, NORMAL);
    add_loss(ag_smooth_l1_loss, false, LOGITS, NORMAL);
    add_loss(ag_huber_loss, false, LOGITS, NORMAL);
    add_loss(ag_kl_div, false, LOG_PROBS, DISTRIBUTION);
    add_loss(ag_poisson_nll_loss, false, LOGITS, POSITIVE);
    add_loss(ag_hinge_embedding_loss, false, LOGITS, SIGN);
    add_loss(ag_soft_margin_loss, false, LOGITS, SIGN);

    model.shared = ag_state_dict_new();
    ag_module_state_dict(model.body, model.shared);
    ag_state_dict *sd = ag_state_dict_new();
    char name[32];
    ag_module_state_dict(model.classifier, sd);
    for (int i = 0; i < ag_state_dict_size(sd); i++) {
        snprintf(name, sizeof name, "classifier.%s", ag_state_dict_name(sd, i));
        ag_state_dict_set(model.shared, name, ag_state_dict_tensor(sd, i));
    }
    for (int i = 0; i < model.nacts; i++) {
        ag_state_dict_free(sd);
        sd = ag_state_dict_new();
        ag_module_state_dict(model.acts[i], sd);
        for (int k = 0; k < ag_state_dict_size(sd); k++) {
            snprintf(name, sizeof name, "act%d.%s", i, ag_state_dict_name(sd, k));
            ag_state_dict_set(model.shared, name, ag_state_dict_tensor(sd, k));
        }
    }
    ag_state_dict_free(sd);
    ag_state_dict_set(model.shared, "class_weight", model.class_weight);
    ag_state_dict_set(model.shared, "pos_weight", model.pos_weight);
    ag_state_dict_set(model.shared, "centres", model.centres);
}

static void model_free(void) {
    ag_state_dict_free(model.shared);
    ag_module_free(model.body);
    ag_module_free(model.classifier);
    for (int i = 0; i < model.nacts; i++) ag_module_free(model.acts[i]);
    for (int i = 0; i < model.nlosses; i++) ag_loss_free(model.losses[i].loss);
    ag_release(model.class_weight);
    ag_release(model.pos_weight);
    ag_release(model.centres);
}

/* What a shared tensor's header and storage say about its users and changes. */
typedef struct tensor_state {
    long refcount, storage_refcount;
    uint32_t version;
} tensor_state;

static int snapshot(tensor_state *out, int max) {
    int n = ag_state_dict_size(model.shared);
    for (int i = 0; i < n && i < max; i++) {
        const ag_tensor *t = ag_state_dict_tensor(model.shared, i);
        out[i] = (tensor_state){ag__ref_count(&t->refcount), ag__ref_count(&t->storage->refcount), ag_version(t)};
    }
    return n;
}

typedef struct client {
    uint64_t seed;
    uint64_t digest[FORWARDS]; /* of every result of each forward */
    ag_status status;
} client;

/* FNV-1a over the bytes of t's elements (contiguous results). */
static uint64_t digest(uint64_t h, const ag_tensor *t) {
    if (!t) return h * 31 + 1;
    const unsigned char *p = ag_data(t);
    size_t n = (size_t)ag_numel(t) * ag_dtype_size(ag_dtype_of(t));
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

/* FORWARDS no-grad passes of the shared model over this client's own random
 * batches, each followed by every activation module and every loss. */
static void *serve(void *arg) {
    client *c = arg;
    ag_manual_seed(c->seed);
    c->status = AG_OK;
    ag_no_grad_begin();
    for (int f = 0; f < FORWARDS && c->status == AG_OK; f++) {
        ag_scope_begin();
        ag_tensor *x = ag_randn(AG_SHAPE(BATCH, 4, 6), AG_F32);
        ag_tensor *t = ag_randn(AG_SHAPE(BATCH, CLASSES), AG_F32), *t2 = ag_randn(AG_SHAPE(BATCH, CLASSES), AG_F32);
        ag_tensor *cls = ag_argmax(t, 1, false), *t01 = ag_rand(AG_SHAPE(BATCH, CLASSES), AG_F32);
        ag_tensor *pm1 = ag_sign(t2), *y1 = ag_sign(ag_select(t2, 1, 0));
        ag_tensor *h = ag_module_forward(model.body, x);
        ag_tensor *logits = ag_module_forward(model.classifier, h);
        uint64_t d = digest(digest(1469598103934665603ull, h), logits);
        for (int i = 0; i < model.nacts; i++) d = digest(d, ag_module_forward(model.acts[i], h));
        ag_tensor *input[] = {[LOGITS] = logits, [LOG_PROBS] = ag_log_softmax(logits, 1), [PROBS] = ag_sigmoid(logits)};
        ag_tensor *target[] = {[CLASS] = cls, [UNIT] = t01, [NORMAL] = t, [DISTRIBUTION] = ag_softmax(t, 1),
                               [POSITIVE] = ag_abs(t), [SIGN] = pm1};
        for (int i = 0; i < model.nlosses; i++) {
            const served_loss *l = &model.losses[i];
            d = digest(d, ag_loss_forward(l->loss, input[l->input], target[l->target]));
        }
        d = digest(d, ag_gaussian_nll_loss(logits, t, ag_softplus(t2, 1, 20), NULL));
        d = digest(d, ag_margin_ranking_loss(logits, t, pm1, NULL));
        d = digest(d, ag_cosine_embedding_loss(logits, t, y1, NULL));
        d = digest(d, ag_triplet_margin_loss(logits, t, t2, NULL));
        d = digest(d, ag_harmonic_loss(h, model.centres, cls, 2.0, NULL));
        if (!h || !logits || ag_last_status()) c->status = ag_last_status() ? ag_last_status() : AG_ERR_ARG;
        c->digest[f] = d;
        ag_scope_end();
    }
    ag_no_grad_end();
    return NULL;
}

/* Gradients with respect to this client's own inputs through the shared model,
 * its parameters frozen: the graph holds references to the shared tensors and
 * backward reads them, but writes only the client's own tensors. */
static void *saliency(void *arg) {
    client *c = arg;
    ag_manual_seed(c->seed);
    c->status = AG_OK;
    for (int f = 0; f < FORWARDS / 8 && c->status == AG_OK; f++) {
        ag_scope_begin();
        ag_tensor *x = ag_requires_grad_(ag_randn(AG_SHAPE(BATCH, 4, 6), AG_F32), true);
        ag_tensor *cls = ag_argmax(ag_randn(AG_SHAPE(BATCH, CLASSES), AG_F32), 1, false);
        ag_tensor *h = ag_module_forward(model.body, x);
        ag_tensor *loss = ag_add(ag_loss_forward(model.losses[0].loss, ag_module_forward(model.classifier, h), cls),
                                 ag_harmonic_loss(h, model.centres, cls, 2.0, NULL));
        c->status = loss ? ag_backward(loss) : ag_last_status();
        if (c->status == AG_OK && !ag_grad(x)) c->status = AG_ERR_GRAPH;
        c->digest[f] = digest(digest(1469598103934665603ull, loss), ag_grad(x));
        ag_scope_end();
    }
    return NULL;
}

/* Runs fn for N clients alone, then for N clients at once; checks each client's
 * digests agree. */
static void alone_and_together(void *(*fn)(void *), int runs, const char *what) {
    static client alone[N], together[N];
    for (int i = 0; i < N; i++) {
        memset(&alone[i], 0, sizeof alone[i]);
        memset(&together[i], 0, sizeof together[i]);
        alone[i].seed = together[i].seed = 500 + (uint64_t)i;
        fn(&alone[i]);
    }
    pthread_t th[N];
    for (int i = 0; i < N; i++) pthread_create(&th[i], NULL, fn, &together[i]);
    for (int i = 0; i < N; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < N; i++) {
        ok(alone[i].status == AG_OK && together[i].status == AG_OK, "%s, client %d: every call succeeds", what, i);
        ok(memcmp(alone[i].digest, together[i].digest, sizeof alone[i].digest) == 0,
           "%s, client %d: %d runs on %d threads at once bit-identical to a single-threaded run", what, i, runs, N);
    }
    ok(alone[0].digest[0] != alone[1].digest[0], "%s: clients' inputs differ", what);
}

static void shared_model(void) {
    model_new();
    enum { MAX = 128 };
    tensor_state before[MAX], after[MAX];
    int n = snapshot(before, MAX);
    ok(n == 19, "19 shared tensors (%d)", n);
    alone_and_together(serve, FORWARDS, "no-grad forwards and losses");
    int np = ag_module_num_parameter_tensors(model.body);
    for (int i = 0; i < np; i++) ag_requires_grad_(ag_module_parameter(model.body, i, NULL, 0), false);
    for (int i = 0; i < ag_module_num_parameter_tensors(model.classifier); i++)
        ag_requires_grad_(ag_module_parameter(model.classifier, i, NULL, 0), false);
    ag_requires_grad_(model.centres, false);
    alone_and_together(saliency, FORWARDS / 8, "input gradients through the frozen model");
    snapshot(after, MAX);
    int changed = 0;
    for (int i = 0; i < n && i < MAX; i++)
        if (before[i].refcount != after[i].refcount || before[i].storage_refcount != after[i].storage_refcount ||
            before[i].version != after[i].version) {
            if (changed++ < 5)
                diag("%s: refcount %ld -> %ld, storage %ld -> %ld, version %u -> %u", ag_state_dict_name(model.shared, i),
                     before[i].refcount, after[i].refcount, before[i].storage_refcount, after[i].storage_refcount,
                     before[i].version, after[i].version);
        }
    ok(changed == 0, "shared tensors' reference counts and versions unchanged (%d changed)", changed);
    model_free();
}

int main(void) {
    independent_models();
    shared_model();
    ok(ag_live_tensors() == 0, "nothing leaked (%ld live tensors)", ag_live_tensors());
    return tap_done();
}

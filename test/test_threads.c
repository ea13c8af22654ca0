/*
 * Independent models trained in separate threads at the same time give
 * bit-identical results to the same models trained alone: scopes, the random
 * generator, grad mode and errors are per thread.
 */
#include <pthread.h>
#include <string.h>
#include "agrad/agrad.h"
#include "core/internal.h"
#include "tap.h"

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

int main(void) {
    enum { N = 4 };
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
    ok(ag_live_tensors() == 0, "nothing leaked (%ld live tensors)", ag_live_tensors());
    return tap_done();
}

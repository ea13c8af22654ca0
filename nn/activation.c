/*
 * activation.c - activation modules (nn.ReLU(), nn.Softmax(dim), ...), each a
 * thin module over its functional op.  A row of PLAIN_ACTIVATIONS makes the
 * module of a one-argument function; activations with options have a row of
 * DIM_ACTIVATIONS or are written out below.
 */
#include <stdio.h>
#include "../autograd/internal.h"
#include "agrad/nn.h"

/* X(constructor suffix, PyTorch class name, functional) */
#define PLAIN_ACTIVATIONS(X)           \
    X(relu, "ReLU", ag_relu)           \
    X(sigmoid, "Sigmoid", ag_sigmoid)  \
    X(tanh, "Tanh", ag_tanh)

#define DEFINE_PLAIN(NAME, CLASS, FN)                                                      \
    static ag_tensor *NAME##_forward(ag_module *m, ag_tensor *x) {                         \
        (void)m;                                                                           \
        return FN(x);                                                                      \
    }                                                                                      \
    static const ag_module_type NAME##_type = {CLASS, NAME##_forward, NULL, NULL};         \
    ag_module *ag_nn_##NAME(void) { return ag_module_new(&NAME##_type, NULL); }
PLAIN_ACTIVATIONS(DEFINE_PLAIN)

/* Activations over one dim: X(constructor suffix, class name, functional) */
#define DIM_ACTIVATIONS(X)                       \
    X(softmax, "Softmax", ag_softmax)            \
    X(log_softmax, "LogSoftmax", ag_log_softmax)

static void dim_describe(const ag_module *m, char *buf, size_t size) {
    snprintf(buf, size, "dim=%d", *(const int *)ag_module_data(m));
}

#define DEFINE_DIM(NAME, CLASS, FN)                                                        \
    static ag_tensor *NAME##_forward(ag_module *m, ag_tensor *x) {                         \
        return FN(x, *(const int *)ag_module_data(m));                                     \
    }                                                                                      \
    static const ag_module_type NAME##_type = {CLASS, NAME##_forward, dim_describe, NULL}; \
    ag_module *ag_nn_##NAME(int dim) {                                                     \
        int *d = ag__alloc(sizeof *d);                                                     \
        if (!d) return NULL;                                                               \
        *d = dim;                                                                          \
        return ag_module_new(&NAME##_type, d);                                             \
    }
DIM_ACTIVATIONS(DEFINE_DIM)

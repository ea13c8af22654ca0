/*
 * prelu.c - nn.PReLU: y = max(0, x) + w·min(0, x) with num_parameters learnt
 * slopes (1, or one per channel of dim 1) through the fused ag_prelu op.
 */
#include <stdio.h>
#include "agrad/nn.h"
#include "nn/repr.h"
#include "agrad/ops.h"

typedef struct prelu {
    int64_t num_parameters;
    double init;
} prelu;

/* y = prelu(x, weight) */
static ag_tensor *prelu_forward(ag_module *m, ag_tensor *x) { return ag_prelu(x, ag_module_get_parameter(m, "weight")); }

static void prelu_describe(const ag_module *m, char *buf, size_t size) {
    const prelu *p = ag_module_data(m);
    snprintf(buf, size, "num_parameters=%lld", (long long)p->num_parameters);
}

static const ag_module_type prelu_type = {"PReLU", prelu_forward, prelu_describe, NULL};

ag_module *ag_nn_prelu(int64_t num_parameters, double init) {
    if (num_parameters < 1)
        return ag__fail_null(AG_ERR_ARG, "nn.PReLU: num_parameters must be at least 1, got %lld", (long long)num_parameters);
    prelu *p = ag__alloc(sizeof *p);
    if (!p) return NULL;
    *p = (prelu){num_parameters, init};
    ag_module *m = ag_module_new(&prelu_type, p);
    if (!m || ag_scope_begin()) {
        ag_module_free(m);
        return NULL;
    }
    ag_tensor *w = ag_full(AG_SHAPE(num_parameters), init, AG_F32); /* every slope = init */
    ag_status st = w ? ag_module_register_parameter(m, "weight", w) : ag_last_status();
    ag_scope_end();
    if (st) {
        ag_module_free(m);
        return NULL;
    }
    return m;
}

/*
 * linear.c - nn.Linear: y = x·Wᵀ + b through the fused ag_linear op, and a Linear
 * followed by ReLU as the one op ag_linear_relu.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "core/autocast.h"
#include "core/internal.h"
#include "agrad/nn.h"
#include "agrad/ops.h"
#include "nn/internal.h"
#include "nn/module.h"

typedef struct linear {
    int64_t in_features, out_features;
    bool bias;
} linear;

static ag_tensor *linear_forward(ag_module *m, ag_tensor *x) {
    return ag_linear(x, ag_module_get_parameter(m, "weight"), ag_module_get_parameter(m, "bias"));
}

static void linear_describe(const ag_module *m, char *buf, size_t size) {
    const linear *l = ag_module_data(m);
    snprintf(buf, size, "in_features=%lld, out_features=%lld, bias=%s", (long long)l->in_features,
             (long long)l->out_features, l->bias ? "True" : "False");
}

static const ag_module_type linear_type = {"Linear", linear_forward, linear_describe, NULL};
/* MultiheadAttention's out_proj: a Linear that PyTorch names apart (it keeps quantization off it). */
static const ag_module_type out_proj_type = {"NonDynamicallyQuantizableLinear", linear_forward, linear_describe, NULL};

static ag_module *new_linear(const ag_module_type *type, int64_t in_features, int64_t out_features, bool bias);

/* Not under bf16 autocast, where ag_linear rounds its operands once for both directions and
 * the fused op would round them per product. */
bool ag__nn_linear_relu(ag_module *lin, ag_tensor *x, ag_tensor **y) {
    if (!x || !lin || ag__module_type(lin) != &linear_type || !ag__module_plain(lin) ||
        ag__autocast == AG_AUTOCAST_BF16)
        return false;
    AG_CHECK_HANDLES(false, "module_forward", x);
    *y = ag_linear_relu(x, ag_module_get_parameter(lin, "weight"), ag_module_get_parameter(lin, "bias"));
    return true;
}

bool ag__nn_linear_relu_pair(ag_module *a, ag_module *b, ag_module *after, ag_tensor *x, ag_tensor **y) {
    if (!b || !ag__module_plain(b) || strcmp(ag_module_type_name(b), "ReLU") != 0) return false;
    if (after && ag__module_plain(after) && strcmp(ag_module_type_name(after), "Dropout") == 0) return false;
    return ag__nn_linear_relu(a, x, y);
}

ag_module *ag_nn_linear(int64_t in_features, int64_t out_features, bool bias) {
    return new_linear(&linear_type, in_features, out_features, bias);
}

ag_module *ag__nn_out_proj_linear(int64_t in_features, int64_t out_features, bool bias) {
    return new_linear(&out_proj_type, in_features, out_features, bias);
}

static ag_module *new_linear(const ag_module_type *type, int64_t in_features, int64_t out_features, bool bias) {
    if (in_features < 0 || out_features < 0)
        return ag__fail_null(AG_ERR_ARG, "nn.Linear: negative size (in_features=%lld, out_features=%lld)",
                             (long long)in_features, (long long)out_features);
    linear *l = ag__alloc(sizeof *l);
    if (!l) return NULL;
    *l = (linear){in_features, out_features, bias};
    ag_module *m = ag_module_new(type, l);
    if (!m || ag_scope_begin()) {
        ag_module_free(m);
        return NULL;
    }
    /* PyTorch's default: kaiming_uniform(a=√5) for W, i.e. U(-1/√in, 1/√in), and the same bound for b. */
    double bound = in_features > 0 ? 1.0 / sqrt((double)in_features) : 0;
    ag_tensor *w = ag_uniform_(ag_empty(AG_SHAPE(out_features, in_features), AG_F32), -bound, bound);
    ag_status st = w ? ag_module_register_parameter(m, "weight", w) : ag_last_status();
    if (st == AG_OK && bias) {
        ag_tensor *b = ag_uniform_(ag_empty(AG_SHAPE(out_features), AG_F32), -bound, bound);
        st = b ? ag_module_register_parameter(m, "bias", b) : ag_last_status();
    }
    ag_scope_end();
    if (st) {
        ag_module_free(m);
        return NULL;
    }
    return m;
}

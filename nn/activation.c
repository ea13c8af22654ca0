/*
 * activation.c - activation modules (nn.ReLU(), nn.Softmax(dim), ...), each a
 * thin module over its functional op.  A row of PLAIN_ACTIVATIONS makes the
 * module of a one-argument function; activations over a dim have a row of
 * DIM_ACTIVATIONS, those with scalar options a row of OPTION_ACTIVATIONS.
 */
#include <math.h>
#include <stdio.h>
#include "agrad/nn.h"
#include "agrad/ops.h"
#include "nn/repr.h"

/* X(constructor suffix, PyTorch class name, functional) */
#define PLAIN_ACTIVATIONS(X)           \
    X(relu, "ReLU", ag_relu)                         \
    X(sigmoid, "Sigmoid", ag_sigmoid)                \
    X(tanh, "Tanh", ag_tanh)                         \
    X(selu, "SELU", ag_selu)                         \
    X(silu, "SiLU", ag_silu)                         \
    X(mish, "Mish", ag_mish)                         \
    X(relu6, "ReLU6", ag_relu6)                      \
    X(hardsigmoid, "Hardsigmoid", ag_hardsigmoid)    \
    X(hardswish, "Hardswish", ag_hardswish)          \
    X(softsign, "Softsign", ag_softsign)             \
    X(binary_step, "BinaryStep", ag_binary_step)     \
    X(logsigmoid, "LogSigmoid", ag_logsigmoid)       \
    X(tanhshrink, "Tanhshrink", ag_tanhshrink)       \
    X(gaussian, "Gaussian", ag_gaussian)             \
    X(gelu_sigmoid, "GELUSigmoid", ag_gelu_sigmoid)

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
    X(log_softmax, "LogSoftmax", ag_log_softmax) \
    X(softmin, "Softmin", ag_softmin)            \
    X(glu, "GLU", ag_glu)

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

/* ---- activations with scalar options ------------------------------------------------------- */
/* The options a module keeps (b unused by one-option classes). */
typedef struct act_opts {
    double a, b;
} act_opts;

/* How describe prints an option, as PyTorch's repr of the class's default type:
 * FLOAT a Python float ("1.0", "0.01"); NUMBER a whole number as a Python int ("20"),
 * anything else as a float (Softplus's beta=1, threshold=20 are ints in PyTorch);
 * APPROXIMATE GELU's string ('tanh' when the option is non-zero, else 'none'). */
enum { FLOAT, NUMBER, APPROXIMATE };

/* X(constructor suffix, class name, forward of x with options o, (name, kind) of option a,
 *   (name, kind) of option b or (NULL, 0)) */
#define OPTION_ACTIVATIONS(X)                                                                          \
    X(leaky_relu, "LeakyReLU", ag_leaky_relu(x, o->a), "negative_slope", FLOAT, NULL, 0)                 \
    X(elu, "ELU", ag_elu(x, o->a), "alpha", FLOAT, NULL, 0)                                            \
    X(celu, "CELU", ag_celu(x, o->a), "alpha", FLOAT, NULL, 0)                                         \
    X(softplus, "Softplus", ag_softplus(x, o->a, o->b), "beta", NUMBER, "threshold", NUMBER)          \
    X(gelu, "GELU", o->a != 0 ? ag_gelu_tanh(x) : ag_gelu(x), "approximate", APPROXIMATE, NULL, 0)     \
    X(hardtanh, "Hardtanh", ag_hardtanh(x, o->a, o->b), "min_val", FLOAT, "max_val", FLOAT)            \
    X(threshold, "Threshold", ag_threshold(x, o->a, o->b), "threshold", FLOAT, "value", FLOAT)         \
    X(softshrink, "Softshrink", ag_softshrink(x, o->a), "", FLOAT, NULL, 0)                              \
    X(hardshrink, "Hardshrink", ag_hardshrink(x, o->a), "", FLOAT, NULL, 0)                              \
    X(rrelu, "RReLU", ag_rrelu(x, o->a, o->b, ag_module_is_training(m)), "lower", FLOAT, "upper", FLOAT)

/* Appends "name=value" (after ", " unless first; the bare value for the name "", as
 * Softshrink's repr) to buf of size size at *len. */
static void describe_option(char *buf, size_t size, size_t *len, const char *name, int kind, double v) {
    char val[64];
    if (kind == APPROXIMATE) snprintf(val, sizeof val, "'%s'", v != 0 ? "tanh" : "none");
    else if (kind == NUMBER && v == floor(v) && fabs(v) < 1e16) snprintf(val, sizeof val, "%.0f", v == 0 ? 0.0 : v);
    else ag__py_float(val, sizeof val, v);
    if (*len < size)
        *len += (size_t)snprintf(buf + *len, size - *len, "%s%s%s%s", *len ? ", " : "", name, *name ? "=" : "", val);
}

#define DEFINE_OPTION(NAME, CLASS, CALL, NAME_A, KIND_A, NAME_B, KIND_B)                  \
    static ag_tensor *NAME##_forward(ag_module *m, ag_tensor *x) {                        \
        const act_opts *o = ag_module_data(m);                                            \
        return CALL;                                                                      \
    }                                                                                     \
    static void NAME##_describe(const ag_module *m, char *buf, size_t size) {             \
        const act_opts *o = ag_module_data(m);                                            \
        const char *name_b = NAME_B;                                                      \
        size_t len = 0;                                                                   \
        buf[0] = '\0';                                                                    \
        describe_option(buf, size, &len, NAME_A, KIND_A, o->a);                           \
        if (name_b) describe_option(buf, size, &len, name_b, KIND_B, o->b);               \
    }                                                                                     \
    static const ag_module_type NAME##_type = {CLASS, NAME##_forward, NAME##_describe, NULL};
OPTION_ACTIVATIONS(DEFINE_OPTION)

/* A module of type keeping the options a, b. */
static ag_module *option_module(const ag_module_type *type, double a, double b) {
    act_opts *o = ag__alloc(sizeof *o);
    if (!o) return NULL;
    o->a = a;
    o->b = b;
    return ag_module_new(type, o);
}

ag_module *ag_nn_leaky_relu(double negative_slope) { return option_module(&leaky_relu_type, negative_slope, 0); }
ag_module *ag_nn_elu(double alpha) { return option_module(&elu_type, alpha, 0); }
ag_module *ag_nn_celu(double alpha) { return option_module(&celu_type, alpha, 0); }
ag_module *ag_nn_softplus(double beta, double threshold) { return option_module(&softplus_type, beta, threshold); }
ag_module *ag_nn_gelu(bool tanh_approx) { return option_module(&gelu_type, tanh_approx, 0); }
ag_module *ag_nn_threshold(double threshold, double value) { return option_module(&threshold_type, threshold, value); }
ag_module *ag_nn_softshrink(double lambd) {
    if (lambd < 0) return ag__fail_null(AG_ERR_ARG, "nn.Softshrink: lambd must be >= 0, got %g", lambd);
    return option_module(&softshrink_type, lambd, 0);
}
ag_module *ag_nn_hardshrink(double lambd) { return option_module(&hardshrink_type, lambd, 0); }
ag_module *ag_nn_rrelu(double lower, double upper) {
    if (!(lower <= upper) || !isfinite(lower) || !isfinite(upper))
        return ag__fail_null(AG_ERR_ARG, "nn.RReLU: needs finite lower <= upper, got lower %g, upper %g", lower, upper);
    return option_module(&rrelu_type, lower, upper);
}
ag_module *ag_nn_hardtanh(double min_val, double max_val) {
    if (!(max_val > min_val))
        return ag__fail_null(AG_ERR_ARG, "nn.Hardtanh: max_val %g must be greater than min_val %g", max_val, min_val);
    return option_module(&hardtanh_type, min_val, max_val);
}

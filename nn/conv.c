/*
 * conv.c - nn.Conv1d, nn.Conv2d, nn.ConvTranspose1d/2d and the pooling modules (MaxPool1d/2d,
 * AvgPool1d/2d, AdaptiveAvgPool2d, AdaptiveMaxPool2d) over the ops of ops/conv.c and ops/pool.c,
 * with PyTorch's parameter names, initialisation and repr.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "core/internal.h"
#include "agrad/nn.h"
#include "nn/repr.h"

/* ---- Conv1d, Conv2d ----------------------------------------------------------------------------------- */
typedef struct conv {
    int nsp; /* spatial dims: 1 or 2 */
    int64_t in_channels, out_channels, kernel[2];
    ag_conv_opts o; /* resolved: every stride, dilation and groups ≥ 1 */
    bool bias;
    bool transposed;           /* ConvTranspose1d/2d */
    int64_t output_padding[2]; /* transposed only */
} conv;

static ag_tensor *conv_forward(ag_module *m, ag_tensor *x) {
    const conv *c = ag_module_data(m);
    ag_tensor *w = ag_module_get_parameter(m, "weight"), *b = ag_module_get_parameter(m, "bias");
    if (c->transposed) {
        const ag_conv_transpose_opts t = {{c->o.stride[0], c->o.stride[1]}, {c->o.padding[0], c->o.padding[1]},
                                          {c->output_padding[0], c->output_padding[1]},
                                          {c->o.dilation[0], c->o.dilation[1]}, c->o.groups};
        return c->nsp == 2 ? ag_conv_transpose2d(x, w, b, &t) : ag_conv_transpose1d(x, w, b, &t);
    }
    return c->nsp == 2 ? ag_conv2d(x, w, b, &c->o) : ag_conv1d(x, w, b, &c->o);
}

/* Appends ", name=<tuple>" to buf when v (n entries) differs from dflt in any entry. */
static void tuple_field(char *buf, size_t size, const char *name, int n, const int64_t *v, int64_t dflt, bool always) {
    bool differs = always;
    for (int i = 0; i < n; i++) differs |= v[i] != dflt;
    if (!differs) return;
    char t[96];
    size_t len = strlen(buf);
    if (len < size) snprintf(buf + len, size - len, ", %s=%s", name, ag__py_tuple(t, sizeof t, n, v));
}

/* PyTorch's _ConvNd.extra_repr: kernel_size and stride always, the rest when not the default. */
static void conv_describe(const ag_module *m, char *buf, size_t size) {
    const conv *c = ag_module_data(m);
    snprintf(buf, size, "%lld, %lld", (long long)c->in_channels, (long long)c->out_channels);
    tuple_field(buf, size, "kernel_size", c->nsp, c->kernel, 0, true);
    tuple_field(buf, size, "stride", c->nsp, c->o.stride, 1, true);
    size_t len = strlen(buf);
    if (c->o.padding_mode != AG_PADDING_EXPLICIT && len < size)
        snprintf(buf + len, size - len, ", padding=%s", c->o.padding_mode == AG_PADDING_SAME ? "same" : "valid");
    else tuple_field(buf, size, "padding", c->nsp, c->o.padding, 0, false);
    tuple_field(buf, size, "dilation", c->nsp, c->o.dilation, 1, false);
    if (c->transposed) tuple_field(buf, size, "output_padding", c->nsp, c->output_padding, 0, false);
    len = strlen(buf);
    if (c->o.groups != 1 && len < size) snprintf(buf + len, size - len, ", groups=%lld", (long long)c->o.groups);
    len = strlen(buf);
    if (!c->bias && len < size) snprintf(buf + len, size - len, ", bias=False");
}

static const ag_module_type conv1d_type = {"Conv1d", conv_forward, conv_describe, NULL};
static const ag_module_type conv2d_type = {"Conv2d", conv_forward, conv_describe, NULL};
static const ag_module_type conv_transpose1d_type = {"ConvTranspose1d", conv_forward, conv_describe, NULL};
static const ag_module_type conv_transpose2d_type = {"ConvTranspose2d", conv_forward, conv_describe, NULL};

/* Checks the options as PyTorch's constructor does and builds the module; output_padding not NULL:
 * a transposed convolution (its weight [in, out/groups, kernel]). */
static ag_module *conv_new(const char *name, int nsp, int64_t in, int64_t out, const int64_t *kernel,
                           const ag_conv_opts *opts, const int64_t *output_padding, bool bias) {
    ag_conv_opts o = opts ? *opts : (ag_conv_opts){0};
    if (in < 1 || out < 1)
        return ag__fail_null(AG_ERR_ARG, "nn.%s: in_channels=%lld and out_channels=%lld must be positive", name,
                             (long long)in, (long long)out);
    for (int i = 0; i < nsp; i++) {
        if (kernel[i] < 1 || o.stride[i] < 0 || o.padding[i] < 0 || o.dilation[i] < 0)
            return ag__fail_null(AG_ERR_ARG, "nn.%s: kernel_size %lld must be positive and stride %lld, padding %lld, "
                                 "dilation %lld not negative (entry %d)", name, (long long)kernel[i],
                                 (long long)o.stride[i], (long long)o.padding[i], (long long)o.dilation[i], i);
        if (!o.stride[i]) o.stride[i] = 1;
        if (!o.dilation[i]) o.dilation[i] = 1;
    }
    if (o.groups < 0) return ag__fail_null(AG_ERR_ARG, "nn.%s: groups must be a positive integer (got %lld)", name,
                                           (long long)o.groups);
    if (!o.groups) o.groups = 1;
    if (in % o.groups || out % o.groups)
        return ag__fail_null(AG_ERR_ARG, "nn.%s: in_channels=%lld and out_channels=%lld must be divisible by groups=%lld",
                             name, (long long)in, (long long)out, (long long)o.groups);
    if (o.padding_mode != AG_PADDING_EXPLICIT && o.padding_mode != AG_PADDING_SAME && o.padding_mode != AG_PADDING_VALID)
        return ag__fail_null(AG_ERR_ARG, "nn.%s: unknown padding mode %d", name, (int)o.padding_mode);
    if (o.padding_mode == AG_PADDING_SAME && (o.stride[0] != 1 || (nsp == 2 && o.stride[1] != 1)))
        return ag__fail_null(AG_ERR_ARG, "nn.%s: padding=\"same\" is not supported for strided convolutions", name);
    if (o.padding_mode != AG_PADDING_EXPLICIT) o.padding[0] = o.padding[1] = 0;
    if (nsp == 1) o.stride[1] = o.dilation[1] = 1, o.padding[1] = 0;
    int64_t outpad[2] = {0, 0};
    for (int i = 0; output_padding && i < nsp; i++) {
        outpad[i] = output_padding[i];
        if (outpad[i] < 0 || (outpad[i] >= o.stride[i] && outpad[i] >= o.dilation[i]))
            return ag__fail_null(AG_ERR_ARG, "nn.%s: output_padding %lld must be non-negative and smaller than the "
                                 "stride %lld or the dilation %lld (entry %d)", name, (long long)outpad[i],
                                 (long long)o.stride[i], (long long)o.dilation[i], i);
    }
    /* PyTorch's fan_in is the weight's dim 1 times the kernel: in/groups, or out/groups when transposed. */
    int64_t shape[4] = {output_padding ? in : out, (output_padding ? out : in) / o.groups, kernel[0],
                        nsp == 2 ? kernel[1] : 1}, fan_in;
    if (ag__numel_checked(2 + nsp, shape) < 0 || ag__mul_overflow(shape[1], shape[2], &fan_in) ||
        ag__mul_overflow(fan_in, shape[3], &fan_in))
        return ag__fail_null(AG_ERR_ARG, "nn.%s: a weight of %lld x %lld x %lld x %lld is too large", name,
                             (long long)shape[0], (long long)shape[1], (long long)shape[2], (long long)shape[3]);
    conv *c = ag__alloc(sizeof *c);
    if (!c) return NULL;
    *c = (conv){nsp, in, out, {kernel[0], nsp == 2 ? kernel[1] : 0}, o, bias, output_padding != NULL,
                {outpad[0], outpad[1]}};
    const ag_module_type *type = output_padding ? (nsp == 2 ? &conv_transpose2d_type : &conv_transpose1d_type)
                                                : (nsp == 2 ? &conv2d_type : &conv1d_type);
    ag_module *m = ag_module_new(type, c);
    if (!m || ag_scope_begin()) {
        ag_module_free(m);
        return NULL;
    }
    /* PyTorch's reset_parameters: kaiming_uniform(a=√5) for the weight, U(-1/√fan_in, 1/√fan_in),
     * fan_in = in/groups · kernel elements, and the same bound for the bias. */
    ag_tensor *w = ag_empty((ag_shape){2 + nsp, {shape[0], shape[1], shape[2], shape[3]}}, AG_F32);
    ag_status st = w && ag_init_kaiming_uniform_(w, sqrt(5.0), "fan_in", "leaky_relu")
                       ? ag_module_register_parameter(m, "weight", w)
                       : ag_last_status();
    if (st == AG_OK && bias) {
        double bound = 1.0 / sqrt((double)fan_in);
        ag_tensor *b = ag_uniform_(ag_empty(AG_SHAPE(out), AG_F32), -bound, bound);
        st = b ? ag_module_register_parameter(m, "bias", b) : ag_last_status();
    }
    ag_scope_end();
    if (st) {
        ag_module_free(m);
        return NULL;
    }
    return m;
}

ag_module *ag_nn_conv2d(int64_t in_channels, int64_t out_channels, int64_t kernel_h, int64_t kernel_w,
                        const ag_conv_opts *o, bool bias) {
    const int64_t k[2] = {kernel_h, kernel_w};
    return conv_new("Conv2d", 2, in_channels, out_channels, k, o, NULL, bias);
}

ag_module *ag_nn_conv1d(int64_t in_channels, int64_t out_channels, int64_t kernel, const ag_conv_opts *o, bool bias) {
    const int64_t k[2] = {kernel, 0};
    return conv_new("Conv1d", 1, in_channels, out_channels, k, o, NULL, bias);
}

/* The options of conv_new for a transposed convolution: t's (NULL: the defaults), explicit padding. */
static ag_conv_opts transpose_opts(const ag_conv_transpose_opts *t) {
    if (!t) return (ag_conv_opts){0};
    return (ag_conv_opts){{t->stride[0], t->stride[1]}, {t->padding[0], t->padding[1]}, {t->dilation[0], t->dilation[1]},
                          t->groups, AG_PADDING_EXPLICIT};
}

ag_module *ag_nn_conv_transpose2d(int64_t in_channels, int64_t out_channels, int64_t kernel_h, int64_t kernel_w,
                                  const ag_conv_transpose_opts *o, bool bias) {
    const int64_t k[2] = {kernel_h, kernel_w}, none[2] = {0, 0};
    const ag_conv_opts co = transpose_opts(o);
    return conv_new("ConvTranspose2d", 2, in_channels, out_channels, k, &co, o ? o->output_padding : none, bias);
}

ag_module *ag_nn_conv_transpose1d(int64_t in_channels, int64_t out_channels, int64_t kernel,
                                  const ag_conv_transpose_opts *o, bool bias) {
    const int64_t k[2] = {kernel, 0}, none[2] = {0, 0};
    const ag_conv_opts co = transpose_opts(o);
    return conv_new("ConvTranspose1d", 1, in_channels, out_channels, k, &co, o ? o->output_padding : none, bias);
}

/* ---- pooling ------------------------------------------------------------------------------------------ */
typedef enum pool_kind { MAX_POOL, AVG_POOL, ADAPTIVE_AVG_POOL, ADAPTIVE_MAX_POOL } pool_kind;

typedef struct pool {
    pool_kind kind;
    int nsp;
    ag_pool_opts o;  /* resolved: stride and dilation ≥ 1 */
    int64_t out[2];  /* adaptive: the output size */
} pool;

static ag_tensor *pool_forward(ag_module *m, ag_tensor *x) {
    const pool *p = ag_module_data(m);
    switch (p->kind) {
    case MAX_POOL: return p->nsp == 2 ? ag_max_pool2d(x, &p->o, NULL) : ag_max_pool1d(x, &p->o, NULL);
    case AVG_POOL: return p->nsp == 2 ? ag_avg_pool2d(x, &p->o) : ag_avg_pool1d(x, &p->o);
    case ADAPTIVE_MAX_POOL: return ag_adaptive_max_pool2d(x, p->out[0], p->out[1], NULL);
    default: return ag_adaptive_avg_pool2d(x, p->out[0], p->out[1]);
    }
}

/* ", name=v": an int when both entries agree (as PyTorch prints an int argument), else a tuple;
 * as_tuple: always a tuple (AvgPool1d's _single). */
static void pool_field(char *buf, size_t size, const char *name, int n, const int64_t *v, bool as_tuple) {
    char t[96];
    size_t len = strlen(buf);
    const char *sep = len ? ", " : "";
    if (len >= size) return;
    if (!as_tuple && (n == 1 || v[0] == v[1])) snprintf(buf + len, size - len, "%s%s=%lld", sep, name, (long long)v[0]);
    else snprintf(buf + len, size - len, "%s%s=%s", sep, name, ag__py_tuple(t, sizeof t, n, v));
}

/* PyTorch's extra_repr of each pooling module. */
static void pool_describe(const ag_module *m, char *buf, size_t size) {
    const pool *p = ag_module_data(m);
    buf[0] = '\0';
    if (p->kind == ADAPTIVE_AVG_POOL || p->kind == ADAPTIVE_MAX_POOL) {
        pool_field(buf, size, "output_size", 2, p->out, false);
        return;
    }
    const bool tuple = p->kind == AVG_POOL && p->nsp == 1;
    pool_field(buf, size, "kernel_size", p->nsp, p->o.kernel, tuple);
    pool_field(buf, size, "stride", p->nsp, p->o.stride, tuple);
    pool_field(buf, size, "padding", p->nsp, p->o.padding, tuple);
    if (p->kind == MAX_POOL) {
        pool_field(buf, size, "dilation", p->nsp, p->o.dilation, false);
        size_t len = strlen(buf);
        if (len < size) snprintf(buf + len, size - len, ", ceil_mode=%s", p->o.ceil_mode ? "True" : "False");
    }
}

static const ag_module_type max_pool1d_type = {"MaxPool1d", pool_forward, pool_describe, NULL};
static const ag_module_type max_pool2d_type = {"MaxPool2d", pool_forward, pool_describe, NULL};
static const ag_module_type avg_pool1d_type = {"AvgPool1d", pool_forward, pool_describe, NULL};
static const ag_module_type avg_pool2d_type = {"AvgPool2d", pool_forward, pool_describe, NULL};
static const ag_module_type adaptive_avg_pool2d_type = {"AdaptiveAvgPool2d", pool_forward, pool_describe, NULL};
static const ag_module_type adaptive_max_pool2d_type = {"AdaptiveMaxPool2d", pool_forward, pool_describe, NULL};

static ag_module *pool_new(const ag_module_type *type, pool p) {
    pool *d = ag__alloc(sizeof *d);
    if (!d) return NULL;
    *d = p;
    return ag_module_new(type, d);
}

/* Checks o as the pooling functions will (kernel given, nothing negative, avg without dilation) and resolves
 * the defaults: stride 0 → kernel, dilation 0 → 1. */
static ag_module *pool_checked(const ag_module_type *type, pool_kind kind, int nsp, const ag_pool_opts *opts) {
    if (!opts) return ag__fail_null(AG_ERR_ARG, "nn.%s: options with the kernel size are required", type->name);
    ag_pool_opts o = *opts;
    for (int i = 0; i < nsp; i++) {
        if (o.kernel[i] < 1 || o.stride[i] < 0 || o.padding[i] < 0 || o.dilation[i] < 0)
            return ag__fail_null(AG_ERR_ARG, "nn.%s: kernel_size %lld must be positive and stride %lld, padding %lld, "
                                 "dilation %lld not negative (entry %d)", type->name, (long long)o.kernel[i],
                                 (long long)o.stride[i], (long long)o.padding[i], (long long)o.dilation[i], i);
        if (!o.stride[i]) o.stride[i] = o.kernel[i];
        if (!o.dilation[i]) o.dilation[i] = 1;
        if (kind == AVG_POOL && o.dilation[i] != 1)
            return ag__fail_null(AG_ERR_ARG, "nn.%s: average pooling has no dilation (got %lld)", type->name,
                                 (long long)o.dilation[i]);
    }
    if (nsp == 1) o.kernel[1] = o.stride[1] = o.dilation[1] = 1, o.padding[1] = 0;
    return pool_new(type, (pool){kind, nsp, o, {0, 0}});
}

ag_module *ag_nn_max_pool2d(const ag_pool_opts *o) { return pool_checked(&max_pool2d_type, MAX_POOL, 2, o); }
ag_module *ag_nn_max_pool1d(const ag_pool_opts *o) { return pool_checked(&max_pool1d_type, MAX_POOL, 1, o); }
ag_module *ag_nn_avg_pool2d(const ag_pool_opts *o) { return pool_checked(&avg_pool2d_type, AVG_POOL, 2, o); }
ag_module *ag_nn_avg_pool1d(const ag_pool_opts *o) { return pool_checked(&avg_pool1d_type, AVG_POOL, 1, o); }

ag_module *ag_nn_adaptive_avg_pool2d(int64_t out_h, int64_t out_w) {
    if (out_h < 0 || out_w < 0)
        return ag__fail_null(AG_ERR_ARG, "nn.AdaptiveAvgPool2d: negative output size %lld x %lld", (long long)out_h,
                             (long long)out_w);
    const ag_pool_opts none = {.kernel = {0, 0}};
    return pool_new(&adaptive_avg_pool2d_type, (pool){ADAPTIVE_AVG_POOL, 2, none, {out_h, out_w}});
}

ag_module *ag_nn_adaptive_max_pool2d(int64_t out_h, int64_t out_w) {
    if (out_h < 0 || out_w < 0)
        return ag__fail_null(AG_ERR_ARG, "nn.AdaptiveMaxPool2d: negative output size %lld x %lld", (long long)out_h,
                             (long long)out_w);
    const ag_pool_opts none = {.kernel = {0, 0}};
    return pool_new(&adaptive_max_pool2d_type, (pool){ADAPTIVE_MAX_POOL, 2, none, {out_h, out_w}});
}

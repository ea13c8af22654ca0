/*
 * norm.c - nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm and
 * nn.InstanceNorm2d over the fused ag_batch_norm, ag_layer_norm and
 * ag_group_norm ops, with PyTorch's parameter and buffer names.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "agrad/autograd.h"
#include "agrad/nn.h"
#include "nn/repr.h"
#include "nn/internal.h"
#include "nn/module.h"
#include "agrad/ops.h"

/* ---- BatchNorm1d, BatchNorm2d --------------------------------------------------------------------------- */
typedef struct batch_norm {
    int64_t num_features;
    double eps, momentum; /* momentum NAN: None, a cumulative moving average */
    bool affine, track_running_stats;
} batch_norm;

/* What batch_norm_apply runs: the module alone, followed by a ReLU, or by a ReLU and a Dropout */
typedef enum { BN_ALONE, BN_RELU, BN_RELU_DROPOUT } batch_norm_then;

/* Training: batch statistics, running ones updated (when tracked); eval: running statistics.  then:
 * ag_batch_norm (BN_ALONE), ag_batch_norm_relu for the module followed by a ReLU (BN_RELU),
 * ag_batch_norm_relu_dropout (of drop probability p) for a ReLU then a Dropout (BN_RELU_DROPOUT). */
static ag_tensor *batch_norm_apply(ag_module *m, ag_tensor *x, batch_norm_then then, double p) {
    const batch_norm *b = ag_module_data(m);
    ag_tensor *rm = ag_module_get_buffer(m, "running_mean"), *rv = ag_module_get_buffer(m, "running_var");
    ag_tensor *nbt = ag_module_get_buffer(m, "num_batches_tracked");
    bool training = ag_module_is_training(m);
    double factor = isnan(b->momentum) ? 0 : b->momentum;
    bool count = training && b->track_running_stats && nbt;
    if (count && isnan(b->momentum)) factor = 1.0 / (double)(*(int64_t *)ag_data(nbt) + 1);
    /* Batch statistics in training, and in eval when no running statistics are tracked. */
    bool use_batch = training || (!rm && !rv);
    bool pass_running = !training || b->track_running_stats;
    ag_tensor *r_mean = pass_running ? rm : NULL, *r_var = pass_running ? rv : NULL;
    ag_tensor *w = ag_module_get_parameter(m, "weight"), *bias = ag_module_get_parameter(m, "bias"), *y;
    if (then == BN_RELU_DROPOUT) y = ag_batch_norm_relu_dropout(x, r_mean, r_var, w, bias, use_batch, factor, b->eps, p);
    else if (then == BN_RELU) y = ag_batch_norm_relu(x, r_mean, r_var, w, bias, use_batch, factor, b->eps);
    else y = ag_batch_norm(x, r_mean, r_var, w, bias, use_batch, factor, b->eps);
    if (y && count) { /* num_batches_tracked += 1 */
        *(int64_t *)ag_data(nbt) += 1;
        ag__bump_version(nbt);
    }
    return y;
}

static ag_tensor *batch_norm_forward(ag_module *m, ag_tensor *x) { return batch_norm_apply(m, x, BN_ALONE, 0); }

/* BatchNorm1d takes [N, C] or [N, C, L], as PyTorch's _check_input_dim. */
static ag_tensor *batch_norm1d_forward(ag_module *m, ag_tensor *x) {
    if (x && x->ndim != 2 && x->ndim != 3)
        return ag__fail_null(AG_ERR_SHAPE, "BatchNorm1d: expected 2D or 3D input (got %dD input)", x->ndim);
    return batch_norm_forward(m, x);
}

/* BatchNorm2d takes [N, C, H, W], as PyTorch's _check_input_dim. */
static ag_tensor *batch_norm2d_forward(ag_module *m, ag_tensor *x) {
    if (x && x->ndim != 4)
        return ag__fail_null(AG_ERR_SHAPE, "BatchNorm2d: expected 4D input (got %dD input)", x->ndim);
    return batch_norm_forward(m, x);
}

static void batch_norm_describe(const ag_module *m, char *buf, size_t size) {
    const batch_norm *b = ag_module_data(m);
    char eps[40], mom[40];
    ag__py_float(eps, sizeof eps, b->eps);
    if (isnan(b->momentum)) snprintf(mom, sizeof mom, "None");
    else ag__py_float(mom, sizeof mom, b->momentum);
    snprintf(buf, size, "%lld, eps=%s, momentum=%s, affine=%s, track_running_stats=%s", (long long)b->num_features, eps,
             mom, b->affine ? "True" : "False", b->track_running_stats ? "True" : "False");
}

static const ag_module_type batch_norm1d_type = {"BatchNorm1d", batch_norm1d_forward, batch_norm_describe, NULL};
static const ag_module_type batch_norm2d_type = {"BatchNorm2d", batch_norm2d_forward, batch_norm_describe, NULL};

/* Over planes only ([N, C, L] for BatchNorm1d, [N, C, H, W] for BatchNorm2d: the inputs they take with
 * L > 1, where the fused op has no pass of its own for the ReLU); a Dropout after the ReLU keeps the
 * ReLU with it (ag__nn_relu_dropout_pair). */
bool ag__nn_batch_norm_relu_pair(ag_module *a, ag_module *b, ag_module *after, ag_tensor *x, ag_tensor **y) {
    if (!x || !a || !b || !ag__module_plain(a) || !ag__module_plain(b) || strcmp(ag_module_type_name(b), "ReLU") != 0)
        return false;
    const ag_module_type *t = ag__module_type(a);
    if (!((t == &batch_norm2d_type && x->ndim == 4) || (t == &batch_norm1d_type && x->ndim == 3))) return false;
    if (after && ag__module_plain(after) && strcmp(ag_module_type_name(after), "Dropout") == 0) return false;
    AG_CHECK_HANDLES(false, "module_forward", x);
    *y = batch_norm_apply(a, x, BN_RELU, 0);
    return true;
}

bool ag__nn_batch_norm_relu_dropout(ag_module *a, ag_module *b, ag_module *c, ag_tensor *x, ag_tensor **y) {
    if (!x || !a || !b || !c || ag__module_type(a) != &batch_norm1d_type || x->ndim != 2 || !ag__module_plain(a) ||
        !ag__module_plain(b) || !ag__module_plain(c) || strcmp(ag_module_type_name(b), "ReLU") != 0 ||
        strcmp(ag_module_type_name(c), "Dropout") != 0 || !ag_module_is_training(a) || !ag_module_is_training(c))
        return false;
    const double p = ag__nn_dropout_p(c);
    if (!(p > 0 && p < 1)) return false;
    AG_CHECK_HANDLES(false, "module_forward", x);
    *y = batch_norm_apply(a, x, BN_RELU_DROPOUT, p);
    return true;
}

bool ag__batch_norm_config(const ag_module *m, int64_t *num_features, double *eps, double *momentum, bool *affine,
                           bool *track_running_stats) {
    if (!m || (ag_module_type_name(m) != batch_norm1d_type.name && ag_module_type_name(m) != batch_norm2d_type.name))
        return false;
    const batch_norm *b = ag_module_data(m);
    if (num_features) *num_features = b->num_features;
    if (eps) *eps = b->eps;
    if (momentum) *momentum = b->momentum;
    if (affine) *affine = b->affine;
    if (track_running_stats) *track_running_stats = b->track_running_stats;
    return true;
}

bool ag__batch_norm_set_momentum(ag_module *m, double momentum) {
    if (!ag__batch_norm_config(m, NULL, NULL, NULL, NULL, NULL)) return false;
    ((batch_norm *)ag_module_data(m))->momentum = momentum;
    return true;
}

/* Registers t (created in the caller's scope) as a parameter or buffer of m. */
static ag_status add(ag_module *m, const char *name, ag_tensor *t, bool param) {
    if (!t) return ag_last_status() ? ag_last_status() : AG_ERR_NOMEM;
    return param ? ag_module_register_parameter(m, name, t) : ag_module_register_buffer(m, name, t);
}

/* Wraps data in a module of the given type and registers what every normalisation module has:
 * weight = 1 and bias = 0 of shape `affine_shape` when affine, and running_mean = 0, running_var = 1
 * and num_batches_tracked = 0 over `running` features when running > 0.  Returns the module, owned by
 * the caller; on failure NULL with the error set, and data freed with the half-built module. */
static ag_module *norm_module_new(const ag_module_type *type, void *data, bool affine, ag_shape affine_shape,
                                  int64_t running) {
    ag_module *m = ag_module_new(type, data);
    if (!m || ag_scope_begin()) {
        ag_module_free(m);
        return NULL;
    }
    ag_status st = AG_OK;
    if (affine) { /* weight = 1, bias = 0 */
        st = add(m, "weight", ag_ones(affine_shape, AG_F32), true);
        if (!st) st = add(m, "bias", ag_zeros(affine_shape, AG_F32), true);
    }
    if (!st && running > 0) {
        ag_shape c = AG_SHAPE(running);
        st = add(m, "running_mean", ag_zeros(c, AG_F32), false);
        if (!st) st = add(m, "running_var", ag_ones(c, AG_F32), false);
        if (!st) st = add(m, "num_batches_tracked", ag_zeros(AG_SCALAR_SHAPE, AG_I64), false);
    }
    ag_scope_end();
    if (st) {
        ag_module_free(m);
        return NULL;
    }
    return m;
}

static ag_module *batch_norm_new(const ag_module_type *type, int64_t num_features, double eps, double momentum,
                                 bool affine, bool track_running_stats) {
    if (num_features <= 0)
        return ag__fail_null(AG_ERR_ARG, "nn.%s: num_features must be positive, got %lld", type->name,
                             (long long)num_features);
    batch_norm *b = ag__alloc(sizeof *b);
    if (!b) return NULL;
    *b = (batch_norm){num_features, eps, momentum, affine, track_running_stats};
    return norm_module_new(type, b, affine, AG_SHAPE(num_features), track_running_stats ? num_features : 0);
}

ag_module *ag_nn_batch_norm1d(int64_t num_features, double eps, double momentum, bool affine, bool track_running_stats) {
    return batch_norm_new(&batch_norm1d_type, num_features, eps, momentum, affine, track_running_stats);
}

ag_module *ag_nn_batch_norm2d(int64_t num_features, double eps, double momentum, bool affine, bool track_running_stats) {
    return batch_norm_new(&batch_norm2d_type, num_features, eps, momentum, affine, track_running_stats);
}

/* ---- LayerNorm ------------------------------------------------------------------------------------------------ */
typedef struct layer_norm {
    ag_shape normalized_shape;
    double eps;
    bool elementwise_affine;
} layer_norm;

/* y = layer_norm(x, normalized_shape, weight, bias, eps) */
static ag_tensor *layer_norm_forward(ag_module *m, ag_tensor *x) {
    const layer_norm *l = ag_module_data(m);
    return ag_layer_norm(x, l->normalized_shape, ag_module_get_parameter(m, "weight"), ag_module_get_parameter(m, "bias"),
                         l->eps);
}

static void layer_norm_describe(const ag_module *m, char *buf, size_t size) {
    const layer_norm *l = ag_module_data(m);
    char shape[AG_SHAPE_STR], eps[40];
    snprintf(buf, size, "%s, eps=%s, elementwise_affine=%s",
             ag__py_tuple(shape, sizeof shape, l->normalized_shape.ndim, l->normalized_shape.dim),
             ag__py_float(eps, sizeof eps, l->eps), l->elementwise_affine ? "True" : "False");
}

static const ag_module_type layer_norm_type = {"LayerNorm", layer_norm_forward, layer_norm_describe, NULL};

ag_module *ag_nn_layer_norm(ag_shape normalized_shape, double eps, bool elementwise_affine) {
    if (normalized_shape.ndim < 1 || normalized_shape.ndim > AG_MAX_DIMS)
        return ag__fail_null(AG_ERR_ARG, "nn.LayerNorm: normalized_shape needs at least 1 dim, got %d", normalized_shape.ndim);
    for (int d = 0; d < normalized_shape.ndim; d++)
        if (normalized_shape.dim[d] < 0)
            return ag__fail_null(AG_ERR_ARG, "nn.LayerNorm: negative size in normalized_shape");
    layer_norm *l = ag__alloc(sizeof *l);
    if (!l) return NULL;
    *l = (layer_norm){normalized_shape, eps, elementwise_affine};
    return norm_module_new(&layer_norm_type, l, elementwise_affine, normalized_shape, 0);
}

/* ---- GroupNorm ------------------------------------------------------------------------------------------------ */
typedef struct group_norm {
    int64_t num_groups, num_channels;
    double eps;
    bool affine;
} group_norm;

/* y = group_norm(x, num_groups, weight, bias, eps) */
static ag_tensor *group_norm_forward(ag_module *m, ag_tensor *x) {
    const group_norm *g = ag_module_data(m);
    return ag_group_norm(x, g->num_groups, ag_module_get_parameter(m, "weight"), ag_module_get_parameter(m, "bias"),
                         g->eps);
}

static void group_norm_describe(const ag_module *m, char *buf, size_t size) {
    const group_norm *g = ag_module_data(m);
    char eps[40];
    snprintf(buf, size, "%lld, %lld, eps=%s, affine=%s", (long long)g->num_groups, (long long)g->num_channels,
             ag__py_float(eps, sizeof eps, g->eps), g->affine ? "True" : "False");
}

static const ag_module_type group_norm_type = {"GroupNorm", group_norm_forward, group_norm_describe, NULL};

ag_module *ag_nn_group_norm(int64_t num_groups, int64_t num_channels, double eps, bool affine) {
    if (num_groups < 1 || num_channels < 0 || num_channels % num_groups)
        return ag__fail_null(AG_ERR_ARG, "nn.GroupNorm: num_channels=%lld must be divisible by num_groups=%lld (positive)",
                             (long long)num_channels, (long long)num_groups);
    group_norm *g = ag__alloc(sizeof *g);
    if (!g) return NULL;
    *g = (group_norm){num_groups, num_channels, eps, affine};
    return norm_module_new(&group_norm_type, g, affine, AG_SHAPE(num_channels), 0);
}

/* ---- InstanceNorm2d ------------------------------------------------------------------------------------------- */
typedef struct instance_norm {
    int64_t num_features;
    double eps, momentum;
    bool affine, track_running_stats;
} instance_norm;

/* running ← (1 - m)·running + m·v, in place (no grad; running may be float32 under a float64 v) */
static ag_tensor *blend_into(ag_tensor *running, ag_tensor *v, double m) {
    ag_tensor *mixed = ag_add(ag_mul_scalar(running, 1 - m), ag_mul_scalar(v, m));
    return mixed ? ag_copy_(running, mixed) : NULL;
}

/* x [N, C, H, W].  Training, or no running statistics: each (n, c) plane normalised with its own statistics
 * (group_norm with one channel a group); the running ones, when tracked, move towards the planes' mean
 * statistics averaged over N (the unbiased variance), as PyTorch's instance_norm.  Eval with running
 * statistics: batch_norm in eval mode. */
static ag_tensor *instance_norm_planes(ag_module *m, ag_tensor *x) {
    const instance_norm *in = ag_module_data(m);
    ag_tensor *w = ag_module_get_parameter(m, "weight"), *b = ag_module_get_parameter(m, "bias");
    ag_tensor *rm = ag_module_get_buffer(m, "running_mean"), *rv = ag_module_get_buffer(m, "running_var");
    bool training = ag_module_is_training(m);
    if (!training && rm && rv) return ag_batch_norm(x, rm, rv, w, b, false, 0, in->eps);
    ag_tensor *y = ag_group_norm(x, x->shape[1], w, b, in->eps);
    if (!y || !training || !rm || !rv) return y;
    static const int plane[2] = {2, 3}, batch[1] = {0};
    ag_no_grad_begin();
    ag_tensor *xd = ag_detach(x);
    ag_tensor *mean = ag_mean_dims(ag_mean_dims(xd, 2, plane, false), 1, batch, false);
    ag_tensor *var = ag_mean_dims(ag_var_dims(xd, 2, plane, 1, false), 1, batch, false);
    bool updated = mean && var && blend_into(rm, mean, in->momentum) && blend_into(rv, var, in->momentum);
    ag_no_grad_end();
    return updated ? y : NULL;
}

/* [N, C, H, W], or one sample [C, H, W] (PyTorch's unbatched input) */
static ag_tensor *instance_norm_forward(ag_module *m, ag_tensor *x) {
    if (x && x->ndim != 3 && x->ndim != 4)
        return ag__fail_null(AG_ERR_SHAPE, "InstanceNorm2d: expected 3D or 4D input (got %dD input)", x->ndim);
    if (x && x->ndim == 4) return instance_norm_planes(m, x);
    ag_tensor *y = x ? instance_norm_planes(m, ag_unsqueeze(x, 0)) : NULL;
    return y ? ag_squeeze(y, 0) : NULL;
}

static void instance_norm_describe(const ag_module *m, char *buf, size_t size) {
    const instance_norm *in = ag_module_data(m);
    char eps[40], mom[40];
    snprintf(buf, size, "%lld, eps=%s, momentum=%s, affine=%s, track_running_stats=%s", (long long)in->num_features,
             ag__py_float(eps, sizeof eps, in->eps), ag__py_float(mom, sizeof mom, in->momentum),
             in->affine ? "True" : "False", in->track_running_stats ? "True" : "False");
}

static const ag_module_type instance_norm2d_type = {"InstanceNorm2d", instance_norm_forward, instance_norm_describe,
                                                    NULL};

ag_module *ag_nn_instance_norm2d(int64_t num_features, double eps, double momentum, bool affine,
                                 bool track_running_stats) {
    if (num_features <= 0)
        return ag__fail_null(AG_ERR_ARG, "nn.InstanceNorm2d: num_features must be positive, got %lld",
                             (long long)num_features);
    if (isnan(momentum))
        return ag__fail_null(AG_ERR_ARG, "nn.InstanceNorm2d: momentum must be a number (PyTorch's None is not supported)");
    instance_norm *in = ag__alloc(sizeof *in);
    if (!in) return NULL;
    *in = (instance_norm){num_features, eps, momentum, affine, track_running_stats};
    /* num_batches_tracked: in the state dict, never counted, as PyTorch's */
    return norm_module_new(&instance_norm2d_type, in, affine, AG_SHAPE(num_features),
                           track_running_stats ? num_features : 0);
}

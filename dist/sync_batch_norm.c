/*
 * dist/sync_batch_norm.c - nn.SyncBatchNorm: batch normalisation whose training
 * statistics are those of the global batch, every rank's share together.
 *
 * Forward, per channel c over every dim but 1: the count N, the mean
 * μ = Σx / N and the biased variance σ² = Σ(x - μ)² / N, each sum all-reduced
 * (two collectives: the deviations are summed about the global mean, as one
 * process would); x̂ = (x - μ)/√(σ² + eps), y = x̂·w + b.  Backward, with
 * ḡ = Σdy / N and h̄ = Σdy·x̂ / N all-reduced (one collective):
 * dx = (dy - ḡ - x̂·h̄)·w/√(σ² + eps), dw = Σ dy·x̂ and db = Σ dy over this rank's
 * share (the data-parallel wrapper averages them, as every parameter's).  So
 * each rank's dx is the derivative of its own loss through the global
 * statistics; averaged over the ranks by the wrapper, the gradients are those of
 * one process on the global batch.  The running statistics move towards μ and
 * the unbiased N/(N - 1)·σ² on every rank alike.  Eval mode: ag_batch_norm with
 * the running statistics, no communication.
 */
#include <math.h>
#include <string.h>

#include "dist/internal.h"
#include "agrad/autograd.h"
#include "agrad/ops.h"
#include "nn/internal.h"

typedef struct sync_bn {
    int64_t num_features;
    double eps, momentum; /* momentum NAN: None, a cumulative moving average */
    bool affine, track_running_stats;
    ag_comm *comm;
} sync_bn;

/* The dims a channel's statistics run over: all but 1. */
static int stat_dims(const ag_tensor *x, int *dims) {
    int n = 0;
    for (int d = 0; d < x->ndim; d++)
        if (d != 1) dims[n++] = d;
    return n;
}

/* [C] viewed as [1, C, 1, ...] to broadcast against x. */
static ag_tensor *per_channel(ag_tensor *v, const ag_tensor *x) {
    ag_shape shape = {.ndim = x->ndim};
    for (int d = 0; d < x->ndim; d++) shape.dim[d] = d == 1 ? x->shape[1] : 1;
    return ag_reshape(v, shape);
}

/* The sum over every rank of a per-channel tensor (made here, contiguous). */
static ag_tensor *sum_over_ranks(ag_comm *c, ag_tensor *v) {
    v = ag_contiguous(v);
    return v && !ag_comm_all_reduce_(c, v) ? v : NULL;
}

/* in: x, weight, bias; out: y, mean, biased variance (the last two not differentiable). */
static ag_status sync_forward(ag_ctx *ctx, ag_tensor *const *in, int nin, ag_tensor **out, int nout) {
    (void)nin, (void)nout;
    const sync_bn *s = ag_ctx_user(ctx);
    ag_tensor *x = in[0];
    int dims[AG_MAX_DIMS], nd = stat_dims(x, dims);
    ag_tensor *n = ag_full(AG_SHAPE(1), (double)(ag_numel(x) / x->shape[1]), AG_F64);
    if (!n || ag_comm_all_reduce_(s->comm, n)) return ag_last_status();
    double count = *(double *)ag_data(n);
    if (count <= 1)
        return ag__fail(AG_ERR_VALUE, "SyncBatchNorm: expected more than 1 value per channel over the ranks, got %g", count);
    ag_tensor *mean = ag_div_scalar(sum_over_ranks(s->comm, ag_sum_dims(x, nd, dims, false)), count);
    ag_tensor *centred = mean ? ag_sub(x, per_channel(mean, x)) : NULL;
    ag_tensor *var = centred ? ag_div_scalar(sum_over_ranks(s->comm, ag_sum_dims(ag_square(centred), nd, dims, false)), count) : NULL;
    ag_tensor *invstd = var ? ag_rsqrt(ag_add_scalar(var, s->eps)) : NULL;
    ag_tensor *xhat = invstd ? ag_mul(centred, per_channel(invstd, x)) : NULL;
    out[0] = xhat ? ag_add(ag_mul(xhat, per_channel(in[1], x)), per_channel(in[2], x)) : NULL;
    out[1] = mean, out[2] = var;
    if (!out[0]) return ag_last_status();
    ag_ctx_mark_non_differentiable(ctx, 1);
    ag_ctx_mark_non_differentiable(ctx, 2);
    ag_ctx_set_scalar(ctx, 0, count);
    return ag_ctx_save_for_backward(ctx, (ag_tensor *[]){xhat, in[1], invstd}, 3);
}

static ag_status sync_backward(ag_ctx *ctx, ag_tensor *const *grad_out, int nout, ag_tensor **grad_in, int nin) {
    (void)nout, (void)nin;
    const sync_bn *s = ag_ctx_user(ctx);
    ag_tensor *dy = grad_out[0], *xhat = ag_ctx_saved(ctx, 0), *w = ag_ctx_saved(ctx, 1), *invstd = ag_ctx_saved(ctx, 2);
    double count = ag_ctx_scalar(ctx, 0);
    int dims[AG_MAX_DIMS], nd = stat_dims(dy, dims);
    ag_tensor *db = ag_sum_dims(dy, nd, dims, false), *dw = ag_sum_dims(ag_mul(dy, xhat), nd, dims, false);
    if (!db || !dw) return ag_last_status();
    if (ag_ctx_needs_input_grad(ctx, 0)) {
        int64_t c = dy->shape[1];
        ag_tensor *both = sum_over_ranks(s->comm, ag_cat((ag_tensor *[]){db, dw}, 2, 0));
        ag_tensor *gbar = both ? per_channel(ag_div_scalar(ag_narrow(both, 0, 0, c), count), dy) : NULL;
        ag_tensor *hbar = both ? per_channel(ag_div_scalar(ag_narrow(both, 0, c, c), count), dy) : NULL;
        ag_tensor *scale = per_channel(ag_mul(w, invstd), dy);
        grad_in[0] = gbar && hbar ? ag_mul(ag_sub(ag_sub(dy, gbar), ag_mul(xhat, hbar)), scale) : NULL;
        if (!grad_in[0]) return ag_last_status();
    }
    if (ag_ctx_needs_input_grad(ctx, 1)) grad_in[1] = dw;
    if (ag_ctx_needs_input_grad(ctx, 2)) grad_in[2] = db;
    return AG_OK;
}

static const ag_function_type sync_function = {.name = "SyncBatchNorm", .forward = sync_forward, .backward = sync_backward};

/* r ← (1 - f)·r + f·v, in place and unrecorded. */
static ag_status move_towards(ag_tensor *r, ag_tensor *v, double f) {
    ag_tensor *cast = ag_to_dtype(v, r->dtype);
    return cast && ag_mul_scalar_(r, 1 - f) && ag_add_(r, cast, f) ? AG_OK : ag_last_status();
}

static ag_tensor *sync_bn_forward(ag_module *m, ag_tensor *x) {
    const sync_bn *s = ag_module_data(m);
    if (x && x->ndim < 2)
        return ag__fail_null(AG_ERR_SHAPE, "SyncBatchNorm: expected at least 2D input (got %dD input)", x->ndim);
    ag_tensor *rm = ag_module_get_buffer(m, "running_mean"), *rv = ag_module_get_buffer(m, "running_var");
    ag_tensor *nbt = ag_module_get_buffer(m, "num_batches_tracked");
    ag_tensor *w = ag_module_get_parameter(m, "weight"), *b = ag_module_get_parameter(m, "bias");
    bool training = ag_module_is_training(m);
    if (!training && rm && rv) return ag_batch_norm(x, rm, rv, w, b, false, 0, s->eps);
    if (!x) return NULL;
    if (x->shape[1] != s->num_features)
        return ag__fail_null(AG_ERR_SHAPE, "SyncBatchNorm: expected %lld channels, got %lld", (long long)s->num_features,
                             (long long)x->shape[1]);
    ag_tensor *ones = w ? NULL : ag_ones(AG_SHAPE(x->shape[1]), x->dtype);
    ag_tensor *zeros = b ? NULL : ag_zeros(AG_SHAPE(x->shape[1]), x->dtype);
    ag_tensor *out[3];
    if (ag_function_apply(&sync_function, (ag_tensor *[]){x, w ? w : ones, b ? b : zeros}, 3, out, 3, (void *)s))
        return NULL;
    if (training && s->track_running_stats && rm && rv && nbt) {
        int64_t tracked = *(int64_t *)ag_data(nbt);
        double f = isnan(s->momentum) ? 1.0 / (double)(tracked + 1) : s->momentum;
        double count = (double)(ag_numel(x) / x->shape[1]);
        ag_tensor *total = ag_full(AG_SHAPE(1), count, AG_F64);
        if (!total || ag_comm_all_reduce_(s->comm, total)) return NULL;
        double n = *(double *)ag_data(total);
        ag_no_grad_begin();
        ag_status st = move_towards(rm, out[1], f);
        if (!st) st = move_towards(rv, ag_mul_scalar(out[2], n / (n - 1)), f);
        ag_no_grad_end();
        if (st) return NULL;
        *(int64_t *)ag_data(nbt) += 1;
        ag_increment_version(nbt);
    }
    return out[0];
}

static void sync_bn_describe(const ag_module *m, char *buf, size_t size) {
    const sync_bn *s = ag_module_data(m);
    char mom[40];
    if (isnan(s->momentum)) snprintf(mom, sizeof mom, "None");
    else snprintf(mom, sizeof mom, "%g", s->momentum);
    snprintf(buf, size, "%lld, eps=%g, momentum=%s, affine=%s, track_running_stats=%s", (long long)s->num_features,
             s->eps, mom, s->affine ? "True" : "False", s->track_running_stats ? "True" : "False");
}

static const ag_module_type sync_bn_type = {"SyncBatchNorm", sync_bn_forward, sync_bn_describe, NULL};

/* Makes the BatchNorm m a SyncBatchNorm over c, in place. */
static ag_status convert_one(ag_module *m, ag_comm *c) {
    sync_bn *s = ag__alloc(sizeof *s);
    if (!s) return ag__fail(AG_ERR_NOMEM, "convert_sync_batch_norm: out of memory");
    ag__batch_norm_config(m, &s->num_features, &s->eps, &s->momentum, &s->affine, &s->track_running_stats);
    s->comm = c;
    ag__module_retype(m, &sync_bn_type, s);
    return AG_OK;
}

static int convert(ag_module *m, ag_comm *c) {
    int n = 0;
    if (ag__batch_norm_config(m, NULL, NULL, NULL, NULL, NULL)) {
        if (convert_one(m, c)) return -1;
        n++;
    }
    for (int i = 0; i < ag_module_num_children(m); i++) {
        int k = convert(ag_module_child(m, i, NULL), c);
        if (k < 0) return -1;
        n += k;
    }
    return n;
}

int ag_convert_sync_batch_norm(ag_module *m, ag_comm *c) {
    if (!m || !c) return ag__fail(AG_ERR_ARG, "convert_sync_batch_norm: %s is NULL", m ? "comm" : "module"), -1;
    return convert(m, c);
}

ag_module *ag_nn_sync_batch_norm(int64_t num_features, double eps, double momentum, bool affine,
                                 bool track_running_stats, ag_comm *c) {
    if (!c) return ag__fail_null(AG_ERR_ARG, "nn.SyncBatchNorm: comm is NULL");
    ag_module *m = ag_nn_batch_norm1d(num_features, eps, momentum, affine, track_running_stats);
    if (m && convert_one(m, c)) {
        ag_module_free(m);
        return NULL;
    }
    return m;
}

/*
 * Ownership without a scope: a tensor an agrad function returns is the caller's
 * when no scope is open, and nothing else the call made may outlive it.  With no
 * scope open, each registered op (forward and backward, contiguous and transposed
 * inputs), each module (forward and backward, training and eval mode), each loss
 * (functional and loss object), each optimizer's step, each scheduler's step and
 * the other composites (penalties, clipping, init, flat parameters, dropout, data
 * transforms, metrics), user-defined functions, in-place ops recorded on
 * non-leaves and hooks run; the test then releases what it was handed and checks
 * that ag_live_tensors() is back where it started.  One check per item names it
 * and the number of tensors left behind.  Each op also runs with each allocation
 * of its call and backward failing in turn, with no scope open and inside one.
 */
#include <math.h>
#include <string.h>
#include "agrad/agrad.h"
#include "core/internal.h"
#include "test/cases/op_cases.h"
#include "failing_alloc.h"
#include "tap.h"

/* ---- helpers ------------------------------------------------------------------------------------- */
/* Checks that item left nothing behind since `before` and that it ran (failed
 * names the first call that returned an error). */
static void verdict(const char *kind, const char *name, long before, const char *failed) {
    long leaked = ag_live_tensors() - before;
    if (failed) ok(false, "%s %s without a scope: %ld tensors left behind; %s failed: %s", kind, name, leaked, failed,
                   ag_last_error());
    else ok(leaked == 0 && ag_scope_depth() == 0, "%s %s without a scope: %ld tensors left behind", kind, name, leaked);
}

/* A tensor of shape s with values uniform in [lo, hi], owned by the caller; stored
 * with its dims reversed and permuted back (non-contiguous) when nc and s has 2+ dims. */
static ag_tensor *input(ag_shape s, ag_dtype dt, double lo, double hi, bool nc) {
    ag_scope_begin();
    ag_shape rev = s;
    int perm[AG_MAX_DIMS];
    for (int d = 0; d < s.ndim; d++) rev.dim[d] = s.dim[s.ndim - 1 - d], perm[d] = s.ndim - 1 - d;
    ag_tensor *t = nc && s.ndim >= 2 ? ag_permute(ag_uniform_(ag_empty(rev, dt), lo, hi), perm)
                                     : ag_uniform_(ag_empty(s, dt), lo, hi);
    t = ag_keep(t);
    ag_scope_end();
    return t;
}

/* int64 values (a*k + b) % m, k = 0, 1, ..., shaped s; owned by the caller. */
static ag_tensor *ints(ag_shape s, int64_t a, int64_t b, int64_t m) {
    ag_tensor *t = ag_empty(s, AG_I64);
    int64_t *v = ag_data(t);
    for (int64_t k = 0; k < ag_numel(t); k++) v[k] = (a * k + b) % m;
    return t;
}

/* Sums y (when it is a float tensor that requires grad) and runs backward. */
static ag_status backward_of(ag_tensor *y) {
    if (!y || !ag_requires_grad(y) || (ag_dtype_of(y) != AG_F32 && ag_dtype_of(y) != AG_F64)) return AG_OK;
    ag_tensor *s = ag_sum(y);
    ag_status st = s ? ag_backward(s) : ag_last_status();
    if (ag_scope_depth() == 0) ag_release(s); /* else the scope's */
    return st;
}

/* ---- ops ------------------------------------------------------------------------------------------- */
/* The one place this test reads the registry's test fields (cases, domain, call):
 * runs case c of op on float64 inputs that require grad (views of transposed data
 * when nc), made inside a scope of their own and handed to the caller in in[].  Then
 * opens a scope for the call when scoped (the caller closes it), arms the counting
 * allocator (failing_alloc.h) to fail allocation number fail of the call (-1: none)
 * and calls the op.  Returns the number of inputs, 0 past the last case. */
static int run_case(const ag_op *op, int c, bool nc, bool scoped, long fail, ag_tensor **in, ag_tensor **y) {
    const ag_op_test *row = ag_test_case_for(op);
    if (!row || !row->call || c >= 4 || row->cases[c].n == 0) return 0;
    const ag_op_case *cs = &row->cases[c];
    ag_scope_begin();
    for (int i = 0; i < cs->n; i++) in[i] = ag_requires_grad_(ag_keep(opc_input(&cs->shape[i], row->domain, nc, AG_F64)), true);
    ag_scope_end();
    if (scoped) ag_scope_begin();
    alloc_calls = 0;
    fail_at = fail;
    *y = row->call(in, cs->n, (void *)row);
    return cs->n;
}

static void test_ops(void) {
    const ag_op *op;
    int checked = 0;
    for (int i = 0; (op = ag__op_at(i)); i++) {
        long before = ag_live_tensors();
        const char *failed = NULL;
        int ran = 0;
        for (int c = 0; c < 4; c++)
            for (int nc = 0; nc < 2; nc++) {
                ag_tensor *in[4] = {NULL}, *y = NULL;
                int n = run_case(op, c, nc, false, -1, in, &y);
                if (!n) continue;
                ran++;
                if (!y && !failed) failed = "forward";
                if (y && backward_of(y) && !failed) failed = "backward";
                ag_release(y);
                for (int k = 0; k < n; k++) ag_release(in[k]);
            }
        if (!ran) continue;
        verdict("op", op->name, before, failed);
        checked++;
    }
    ok(checked > 0, "%d registered ops ran without a scope", checked);
}

/* Runs case c of op and the backward of its result with allocation number fail
 * failing (-1: none), inside a scope when scoped, and releases everything.  Returns
 * the status, and in *calls the allocations the call and backward made. */
static ag_status run_failing(const ag_op *op, int c, bool nc, long fail, bool scoped, long *calls) {
    ag_tensor *in[4] = {NULL}, *y = NULL;
    ag_clear_error();
    int n = run_case(op, c, nc, scoped, fail, in, &y);
    ag_status st = !n ? AG_ERR_ARG : y ? backward_of(y) : ag_last_status();
    *calls = alloc_calls;
    fail_at = -1;
    if (scoped && n) ag_scope_end(); /* owns y */
    else ag_release(y);
    for (int j = 0; j < n; j++) ag_release(in[j]);
    return st;
}

/* The same with each allocation of the call and its backward failing in turn, with
 * no scope open and inside one: each run fails cleanly (AG_ERR_NOMEM) or succeeds,
 * and leaves no tensor and no allocated block behind. */
static void test_ops_out_of_memory(void) {
    const ag_op *op;
    ag_set_allocator(failing_alloc, NULL);
    for (int i = 0; (op = ag__op_at(i)); i++) {
        long runs = 0, leaks = 0, wrong = 0, calls;
        for (int c = 0; c < 4; c++)
            for (int v = 0; v < 4; v++) {
                bool nc = v & 1, scoped = v & 2;
                if (run_failing(op, c, nc, -1, scoped, &calls)) continue; /* no such case */
                for (long k = 1; k <= calls; k++) {
                    long live = ag_live_tensors(), blocks = live_blocks, ignored;
                    ag_status st = run_failing(op, c, nc, k, scoped, &ignored);
                    runs++;
                    /* a failure is recorded: the status returned is the one reported (fuzz_api
                     * found backward returning out of memory with no record) */
                    if (st != AG_OK && (st != AG_ERR_NOMEM || ag_last_status() != st)) wrong++;
                    if (ag_live_tensors() != live || live_blocks != blocks) leaks++;
                }
            }
        if (runs)
            ok(leaks == 0 && wrong == 0, "op %s with each allocation failing in turn (%ld runs): %ld leaked, %ld not a recorded out of memory",
               op->name, runs, leaks, wrong);
    }
    ag_set_allocator(NULL, NULL);
}

/* ---- modules --------------------------------------------------------------------------------------- */
typedef struct module_case {
    const char *name;
    ag_module *(*make)(void);
    ag_shape in;
} module_case;

#define MAKER(NAME, EXPR) \
    static ag_module *make_##NAME(void) { return EXPR; }
MAKER(linear, ag_nn_linear(4, 3, true))
MAKER(linear_nobias, ag_nn_linear(4, 3, false))
MAKER(sequential, AG_SEQUENTIAL(ag_nn_linear(4, 6, true), ag_nn_relu(), ag_nn_flatten(1, -1), ag_nn_linear(6, 3, true)))
MAKER(flatten, ag_nn_flatten(1, -1))
MAKER(unflatten, ag_nn_unflatten(1, AG_SHAPE(2, 2)))
MAKER(identity, ag_nn_identity())
MAKER(batch_norm1d, ag_nn_batch_norm1d(4, 1e-5, 0.1, true, true))
MAKER(batch_norm1d_cumulative, ag_nn_batch_norm1d(4, 1e-5, NAN, false, true))
MAKER(batch_norm1d_untracked, ag_nn_batch_norm1d(4, 1e-5, 0.1, true, false))
MAKER(batch_norm2d, ag_nn_batch_norm2d(3, 1e-5, 0.1, true, true))
MAKER(group_norm, ag_nn_group_norm(3, 3, 1e-5, true))
MAKER(instance_norm2d, ag_nn_instance_norm2d(3, 1e-5, 0.1, true, true))
MAKER(layer_norm, ag_nn_layer_norm(AG_SHAPE(4), 1e-5, true))
MAKER(prelu, ag_nn_prelu(1, 0.25))
MAKER(prelu4, ag_nn_prelu(4, 0.25))
MAKER(dropout, ag_nn_dropout(0.5))
MAKER(dropout2d, ag_nn_dropout2d(0.5))
MAKER(gaussian_noise, ag_nn_gaussian_noise(0.1))
MAKER(relu, ag_nn_relu())
MAKER(sigmoid, ag_nn_sigmoid())
MAKER(tanh, ag_nn_tanh())
MAKER(softmax, ag_nn_softmax(1))
MAKER(log_softmax, ag_nn_log_softmax(1))
MAKER(leaky_relu, ag_nn_leaky_relu(0.01))
MAKER(elu, ag_nn_elu(1.0))
MAKER(selu, ag_nn_selu())
MAKER(celu, ag_nn_celu(1.0))
MAKER(softplus, ag_nn_softplus(1, 20))
MAKER(gelu, ag_nn_gelu(false))
MAKER(gelu_tanh, ag_nn_gelu(true))
MAKER(silu, ag_nn_silu())
MAKER(mish, ag_nn_mish())
MAKER(hardtanh, ag_nn_hardtanh(-1, 1))
MAKER(relu6, ag_nn_relu6())
MAKER(hardsigmoid, ag_nn_hardsigmoid())
MAKER(hardswish, ag_nn_hardswish())
MAKER(softsign, ag_nn_softsign())
MAKER(binary_step, ag_nn_binary_step())
MAKER(logsigmoid, ag_nn_logsigmoid())
MAKER(tanhshrink, ag_nn_tanhshrink())
MAKER(gaussian, ag_nn_gaussian())
MAKER(gelu_sigmoid, ag_nn_gelu_sigmoid())
MAKER(softmin, ag_nn_softmin(1))
MAKER(glu, ag_nn_glu(-1))
MAKER(threshold, ag_nn_threshold(0.1, 2))
MAKER(softshrink, ag_nn_softshrink(0.5))
MAKER(hardshrink, ag_nn_hardshrink(0.5))
MAKER(rrelu, ag_nn_rrelu(0.125, 1.0 / 3))
MAKER(conv2d, ag_nn_conv2d(3, 4, 3, 2, &(ag_conv_opts){.padding = {1, 0}}, true))
MAKER(conv1d_same, ag_nn_conv1d(3, 4, 2, &(ag_conv_opts){.padding_mode = AG_PADDING_SAME}, true))
MAKER(max_pool2d, ag_nn_max_pool2d(&(ag_pool_opts){.kernel = {2, 2}}))
MAKER(max_pool1d, ag_nn_max_pool1d(&(ag_pool_opts){.kernel = {2}}))
MAKER(avg_pool2d, ag_nn_avg_pool2d(&(ag_pool_opts){.kernel = {2, 2}, .ceil_mode = true}))
MAKER(avg_pool1d, ag_nn_avg_pool1d(&(ag_pool_opts){.kernel = {2}}))
MAKER(adaptive_avg_pool2d, ag_nn_adaptive_avg_pool2d(2, 3))
MAKER(lstm, ag_nn_lstm(4, 3, 2, true, true, 0.5, true))
MAKER(gru, ag_nn_gru(4, 3, 1, true, false, 0, false))
MAKER(rnn, ag_nn_rnn(4, 3, 2, "relu", false, false, 0, true))
MAKER(lstm_cell, ag_nn_lstm_cell(4, 3, true))
MAKER(gru_cell, ag_nn_gru_cell(4, 3, true))
MAKER(rnn_cell, ag_nn_rnn_cell(4, 3, true, "tanh"))
MAKER(multihead_attention, ag_nn_multihead_attention(4, 2, 0.5, true, 0, 0, false))
MAKER(transformer_encoder_layer, ag_nn_transformer_encoder_layer(4, 2, 6, 0.5, "gelu", 1e-5, true, true))
MAKER(transformer_encoder, ag_nn_transformer_encoder(ag_nn_transformer_encoder_layer(4, 2, 6, 0.1, NULL, 1e-5, false, false),
                                                     2, ag_nn_layer_norm(AG_SHAPE(4), 1e-5, true)))

#define MODULE(NAME, ...) {#NAME, make_##NAME, AG_DIMS(__VA_ARGS__)}
static const module_case modules[] = {
    MODULE(linear, 5, 4),         MODULE(linear_nobias, 2, 5, 4), MODULE(sequential, 5, 4),
    MODULE(flatten, 2, 3, 4),     MODULE(unflatten, 3, 4),        MODULE(identity, 3, 4),
    MODULE(batch_norm1d, 5, 4),   MODULE(batch_norm1d_cumulative, 5, 4, 3), MODULE(batch_norm1d_untracked, 5, 4),
    MODULE(batch_norm2d, 2, 3, 4, 5), MODULE(group_norm, 2, 3, 4), MODULE(dropout2d, 2, 3, 4, 5),
    MODULE(instance_norm2d, 2, 3, 4, 5),
    MODULE(layer_norm, 3, 4),     MODULE(prelu, 3, 4),            MODULE(prelu4, 3, 4),
    MODULE(dropout, 3, 4),        MODULE(gaussian_noise, 3, 4),   MODULE(relu, 3, 4),
    MODULE(sigmoid, 3, 4),        MODULE(tanh, 3, 4),             MODULE(softmax, 3, 4),
    MODULE(log_softmax, 3, 4),    MODULE(leaky_relu, 3, 4),       MODULE(elu, 3, 4),
    MODULE(selu, 3, 4),           MODULE(celu, 3, 4),             MODULE(softplus, 3, 4),
    MODULE(gelu, 3, 4),           MODULE(gelu_tanh, 3, 4),        MODULE(silu, 3, 4),
    MODULE(mish, 3, 4),           MODULE(hardtanh, 3, 4),         MODULE(relu6, 3, 4),
    MODULE(hardsigmoid, 3, 4),    MODULE(hardswish, 3, 4),        MODULE(softsign, 3, 4),
    MODULE(binary_step, 3, 4),    MODULE(logsigmoid, 3, 4),       MODULE(tanhshrink, 3, 4),
    MODULE(gaussian, 3, 4),       MODULE(gelu_sigmoid, 3, 4),     MODULE(softmin, 3, 4),
    MODULE(glu, 3, 4),            MODULE(threshold, 3, 4),        MODULE(softshrink, 3, 4),
    MODULE(hardshrink, 3, 4),     MODULE(rrelu, 3, 4),            MODULE(conv2d, 2, 3, 5, 4),     MODULE(conv1d_same, 2, 3, 5),
    MODULE(max_pool2d, 2, 3, 5, 4), MODULE(max_pool1d, 3, 5),     MODULE(avg_pool2d, 2, 3, 5, 4),
    MODULE(avg_pool1d, 2, 3, 5),  MODULE(adaptive_avg_pool2d, 3, 5, 4),
    MODULE(lstm, 2, 5, 4),        MODULE(gru, 5, 2, 4),           MODULE(rnn, 5, 4),
    MODULE(lstm_cell, 2, 4),      MODULE(gru_cell, 2, 4),         MODULE(rnn_cell, 4),
    MODULE(multihead_attention, 3, 2, 4), MODULE(transformer_encoder_layer, 2, 3, 4), MODULE(transformer_encoder, 3, 2, 4),
};

static void test_modules(void) {
    for (size_t i = 0; i < sizeof modules / sizeof *modules; i++) {
        const module_case *mc = &modules[i];
        long before = ag_live_tensors();
        const char *failed = NULL;
        ag_module *m = mc->make();
        if (!m) failed = "construction";
        for (int mode = 0; m && mode < 2; mode++) {
            ag_module_train(m, mode == 0);
            for (int nc = 0; nc < 2; nc++) {
                ag_module_zero_grad(m);
                ag_tensor *x = ag_requires_grad_(input(mc->in, AG_F32, -2, 2, nc), true);
                ag_tensor *y = ag_module_forward(m, x);
                if (!y && !failed) failed = "forward";
                if (y && backward_of(y) && !failed) failed = "backward";
                ag_release(y);
                ag_release(x);
            }
        }
        ag_module_free(m);
        verdict("module", mc->name, before, failed);
    }
}

/* ---- losses ---------------------------------------------------------------------------------------- */
/* The inputs every loss draws from: N = 4 samples, C = 3 classes; float64. */
typedef struct loss_data {
    ag_tensor *x, *x2, *x3;     /* [4, 3] in [-2, 2], requiring grad */
    ag_tensor *p;               /* [4, 3] in (0, 1), requiring grad */
    ag_tensor *v1, *v2;         /* [4], requiring grad */
    ag_tensor *real, *prob, *pos, *sign, *binary, *sign_n; /* targets: [4, 3] reals, (0, 1), > 0, ±1, 0/1; [4] ±1 */
    ag_tensor *cls;             /* [4] class ids */
    ag_tensor *w_class, *w_elem; /* weights [3] */
    ag_tensor *centres;         /* [3, 3], requiring grad */
    ag_tensor *row, *cls0;      /* [3] logits of one sample, requiring grad; its 0-d class id */
} loss_data;

static ag_tensor *signs(ag_shape s) {
    ag_tensor *t = input(s, AG_F64, -1, 1, false);
    double *v = ag_data(t);
    for (int64_t k = 0; k < ag_numel(t); k++) v[k] = k % 3 == 1 ? -1 : 1;
    return t;
}

/* 0/1 floats shaped s. */
static ag_tensor *zero_one(ag_shape s) {
    ag_tensor *t = input(s, AG_F64, 0, 1, false);
    double *v = ag_data(t);
    for (int64_t k = 0; k < ag_numel(t); k++) v[k] = k % 2;
    return t;
}

static loss_data loss_data_new(void) {
    ag_shape nc = AG_SHAPE(4, 3), n = AG_SHAPE(4);
    loss_data d = {
        ag_requires_grad_(input(nc, AG_F64, -2, 2, true), true), ag_requires_grad_(input(nc, AG_F64, -2, 2, false), true),
        ag_requires_grad_(input(nc, AG_F64, -2, 2, false), true), ag_requires_grad_(input(nc, AG_F64, 0.1, 0.9, true), true),
        ag_requires_grad_(input(n, AG_F64, -2, 2, false), true), ag_requires_grad_(input(n, AG_F64, -2, 2, false), true),
        input(nc, AG_F64, -2, 2, true), input(nc, AG_F64, 0.1, 0.9, false), input(nc, AG_F64, 0.5, 2, false),
        signs(nc), zero_one(nc), signs(n), ints(n, 2, 1, 3), input(AG_SHAPE(3), AG_F64, 0.5, 2, false),
        input(AG_SHAPE(3), AG_F64, 0.5, 2, false), ag_requires_grad_(input(AG_SHAPE(3, 3), AG_F64, -2, 2, false), true),
        ag_requires_grad_(input(AG_SHAPE(3), AG_F64, -2, 2, false), true), ints(AG_SCALAR_SHAPE, 1, 2, 3),
    };
    return d;
}

static void loss_data_free(loss_data *d) {
    ag_tensor **t = (ag_tensor **)d;
    for (size_t i = 0; i < sizeof *d / sizeof *t; i++) ag_release(t[i]);
}

/* Each call runs one loss on the data with options o; the object form (ag_nn_loss)
 * exists for the two-argument losses: fn and the input and target it takes. */
typedef struct loss_case {
    const char *name;
    ag_tensor *(*call)(const loss_data *d, const ag_loss_opts *o);
    ag_loss_fn fn;
    size_t input, target; /* offsets in loss_data, for fn */
    void (*vary)(int k, ag_loss_opts *o, const loss_data *d); /* option set k (0, 1, 2), may be NULL */
} loss_case;

static void vary_class(int k, ag_loss_opts *o, const loss_data *d) {
    if (k == 1) o->weight = d->w_class;
    if (k == 2) o->label_smoothing = 0.1, o->ignore_index = 1;
}
static void vary_elem(int k, ag_loss_opts *o, const loss_data *d) {
    if (k == 1) o->weight = d->w_elem;
    if (k == 2) o->pos_weight = d->w_elem;
}
static void vary_regression(int k, ag_loss_opts *o, const loss_data *d) {
    (void)d;
    o->beta = k == 2 ? 0 : 0.5;
    o->delta = 0.5;
}
static void vary_flags(int k, ag_loss_opts *o, const loss_data *d) {
    (void)d;
    o->log_target = o->full = o->swap = k >= 1;
    o->log_input = k != 2;
    o->p = k == 2 ? 2 : NAN;
}

static ag_tensor *call_mse(const loss_data *d, const ag_loss_opts *o) { return ag_mse_loss(d->x, d->real, o); }
/* every slot names class 0: one target class per sample, listed three times */
static ag_tensor *call_multilabel_margin_loss(const loss_data *d, const ag_loss_opts *o) {
    ag_tensor *y = ag_zeros(AG_SHAPE(4, 3), AG_I64), *l = ag_multilabel_margin_loss(d->x, y, o);
    ag_release(y);
    return l;
}
static ag_tensor *call_triplet_wd(const loss_data *d, const ag_loss_opts *o) {
    return ag_triplet_margin_with_distance_loss(d->x, d->x2, d->x3, NULL, NULL, o);
}
/* x [4, 3] as unbatched log-probabilities [T, C] of the target (1, 2); option set 1: zero_infinity */
static ag_tensor *call_ctc_loss(const loss_data *d, const ag_loss_opts *o) {
    ag_tensor *t = ag_from_data((int64_t[]){1, 2}, AG_SHAPE(2), AG_I64), *il = ag_scalar(4, AG_I64);
    ag_tensor *tl = ag_scalar(2, AG_I64), *l = ag_ctc_loss(d->x, t, il, tl, o);
    ag_release(t);
    ag_release(il);
    ag_release(tl);
    return l;
}
static void vary_ctc(int k, ag_loss_opts *o, const loss_data *d) {
    (void)d;
    o->zero_infinity = k == 1;
}
#define KERAS_CALL(N, T) \
    static ag_tensor *call_##N(const loss_data *d, const ag_loss_opts *o) { return ag_##N(d->x, d->T, o); }
KERAS_CALL(log_cosh_loss, real)
KERAS_CALL(mean_absolute_percentage_error, real)
KERAS_CALL(mean_squared_logarithmic_error, pos)
KERAS_CALL(hinge_loss, sign)
KERAS_CALL(squared_hinge_loss, binary)
KERAS_CALL(categorical_hinge_loss, binary)
KERAS_CALL(cosine_similarity_loss, real)
static ag_tensor *call_l1(const loss_data *d, const ag_loss_opts *o) { return ag_l1_loss(d->x, d->real, o); }
static ag_tensor *call_smooth_l1(const loss_data *d, const ag_loss_opts *o) { return ag_smooth_l1_loss(d->x, d->real, o); }
static ag_tensor *call_huber(const loss_data *d, const ag_loss_opts *o) { return ag_huber_loss(d->x, d->real, o); }
static ag_tensor *call_bce(const loss_data *d, const ag_loss_opts *o) { return ag_binary_cross_entropy(d->p, d->prob, o); }
static ag_tensor *call_bce_logits(const loss_data *d, const ag_loss_opts *o) {
    return ag_binary_cross_entropy_with_logits(d->x, d->binary, o);
}
static ag_tensor *call_nll(const loss_data *d, const ag_loss_opts *o) { return ag_nll_loss(d->x, d->cls, o); }
static ag_tensor *call_cross_entropy(const loss_data *d, const ag_loss_opts *o) { return ag_cross_entropy(d->x, d->cls, o); }
static ag_tensor *call_cross_entropy_probs(const loss_data *d, const ag_loss_opts *o) {
    ag_loss_opts q = *o;
    q.weight = NULL, q.ignore_index = -100;
    return ag_cross_entropy(d->x, d->prob, &q);
}
static ag_tensor *call_cross_entropy_one(const loss_data *d, const ag_loss_opts *o) {
    return ag_cross_entropy(d->row, d->cls0, o);
}
static ag_tensor *call_kl_div(const loss_data *d, const ag_loss_opts *o) { return ag_kl_div(d->x, d->prob, o); }
static ag_tensor *call_poisson_nll(const loss_data *d, const ag_loss_opts *o) { return ag_poisson_nll_loss(d->p, d->pos, o); }
static ag_tensor *call_gaussian_nll(const loss_data *d, const ag_loss_opts *o) {
    return ag_gaussian_nll_loss(d->x, d->real, d->pos, o);
}
static ag_tensor *call_hinge_embedding(const loss_data *d, const ag_loss_opts *o) {
    return ag_hinge_embedding_loss(d->x, d->sign, o);
}
static ag_tensor *call_margin_ranking(const loss_data *d, const ag_loss_opts *o) {
    return ag_margin_ranking_loss(d->v1, d->v2, d->sign_n, o);
}
static ag_tensor *call_soft_margin(const loss_data *d, const ag_loss_opts *o) { return ag_soft_margin_loss(d->x, d->sign, o); }
static ag_tensor *call_multilabel_soft_margin(const loss_data *d, const ag_loss_opts *o) {
    return ag_multilabel_soft_margin_loss(d->x, d->binary, o);
}
static ag_tensor *call_multi_margin(const loss_data *d, const ag_loss_opts *o) {
    return ag_multi_margin_loss(d->x, d->cls, o);
}
static ag_tensor *call_cosine_embedding(const loss_data *d, const ag_loss_opts *o) {
    return ag_cosine_embedding_loss(d->x, d->x2, d->sign_n, o);
}
static ag_tensor *call_triplet_margin(const loss_data *d, const ag_loss_opts *o) {
    return ag_triplet_margin_loss(d->x, d->x2, d->x3, o);
}
/* the information measures take no options: o is unused */
static ag_tensor *call_entropy(const loss_data *d, const ag_loss_opts *o) { return (void)o, ag_entropy(d->prob, -1, false); }
static ag_tensor *call_cross_entropy_pq(const loss_data *d, const ag_loss_opts *o) {
    return (void)o, ag_cross_entropy_pq(d->prob, d->p, -1, false);
}
static ag_tensor *call_kl_divergence(const loss_data *d, const ag_loss_opts *o) {
    return (void)o, ag_kl_divergence(d->prob, d->p, -1, false);
}
static ag_tensor *call_perplexity(const loss_data *d, const ag_loss_opts *o) {
    return (void)o, ag_perplexity(d->prob, d->p, -1, false);
}
static ag_tensor *call_harmonic(const loss_data *d, const ag_loss_opts *o) {
    return ag_harmonic_loss(d->x, d->centres, d->cls, 2, o);
}

#define AT(F) offsetof(loss_data, F)
static const loss_case losses[] = {
    {"mse_loss", call_mse, ag_mse_loss, AT(x), AT(real), NULL},
    {"l1_loss", call_l1, ag_l1_loss, AT(x), AT(real), NULL},
    {"smooth_l1_loss", call_smooth_l1, ag_smooth_l1_loss, AT(x), AT(real), vary_regression},
    {"huber_loss", call_huber, ag_huber_loss, AT(x), AT(real), vary_regression},
    {"binary_cross_entropy", call_bce, ag_binary_cross_entropy, AT(p), AT(prob), vary_elem},
    {"binary_cross_entropy_with_logits", call_bce_logits, ag_binary_cross_entropy_with_logits, AT(x), AT(binary), vary_elem},
    {"nll_loss", call_nll, ag_nll_loss, AT(x), AT(cls), vary_class},
    {"cross_entropy", call_cross_entropy, ag_cross_entropy, AT(x), AT(cls), vary_class},
    {"cross_entropy (probability targets)", call_cross_entropy_probs, NULL, 0, 0, vary_class},
    {"cross_entropy (one sample)", call_cross_entropy_one, ag_cross_entropy, AT(row), AT(cls0), vary_class},
    {"kl_div", call_kl_div, ag_kl_div, AT(x), AT(prob), vary_flags},
    {"poisson_nll_loss", call_poisson_nll, ag_poisson_nll_loss, AT(p), AT(pos), vary_flags},
    {"gaussian_nll_loss", call_gaussian_nll, NULL, 0, 0, vary_flags},
    {"hinge_embedding_loss", call_hinge_embedding, ag_hinge_embedding_loss, AT(x), AT(sign), NULL},
    {"margin_ranking_loss", call_margin_ranking, NULL, 0, 0, NULL},
    {"soft_margin_loss", call_soft_margin, ag_soft_margin_loss, AT(x), AT(sign), NULL},
    {"multilabel_soft_margin_loss", call_multilabel_soft_margin, ag_multilabel_soft_margin_loss, AT(x), AT(binary), vary_elem},
    {"multi_margin_loss", call_multi_margin, ag_multi_margin_loss, AT(x), AT(cls), vary_flags},
    {"cosine_embedding_loss", call_cosine_embedding, NULL, 0, 0, NULL},
    {"triplet_margin_loss", call_triplet_margin, NULL, 0, 0, vary_flags},
    {"harmonic_loss", call_harmonic, NULL, 0, 0, vary_class},
    {"multilabel_margin_loss", call_multilabel_margin_loss, NULL, 0, 0, NULL},
    {"triplet_margin_with_distance_loss", call_triplet_wd, NULL, 0, 0, vary_flags},
    {"ctc_loss", call_ctc_loss, NULL, 0, 0, vary_ctc},
    {"log_cosh_loss", call_log_cosh_loss, ag_log_cosh_loss, AT(x), AT(real), NULL},
    {"mean_absolute_percentage_error", call_mean_absolute_percentage_error, ag_mean_absolute_percentage_error, AT(x), AT(real), NULL},
    {"mean_squared_logarithmic_error", call_mean_squared_logarithmic_error, ag_mean_squared_logarithmic_error, AT(x), AT(pos), NULL},
    {"hinge_loss", call_hinge_loss, ag_hinge_loss, AT(x), AT(sign), NULL},
    {"squared_hinge_loss", call_squared_hinge_loss, ag_squared_hinge_loss, AT(x), AT(binary), NULL},
    {"categorical_hinge_loss", call_categorical_hinge_loss, ag_categorical_hinge_loss, AT(x), AT(binary), NULL},
    {"cosine_similarity_loss", call_cosine_similarity_loss, ag_cosine_similarity_loss, AT(x), AT(real), NULL},
    {"entropy", call_entropy, NULL, 0, 0, NULL},
    {"cross_entropy_pq", call_cross_entropy_pq, NULL, 0, 0, NULL},
    {"kl_divergence", call_kl_divergence, NULL, 0, 0, NULL},
    {"perplexity", call_perplexity, NULL, 0, 0, NULL},
};

static ag_tensor *field(const loss_data *d, size_t off) { return *(ag_tensor *const *)((const char *)d + off); }

static void test_losses(void) {
    static const ag_reduction reductions[] = {AG_REDUCTION_MEAN, AG_REDUCTION_SUM, AG_REDUCTION_NONE};
    for (size_t i = 0; i < sizeof losses / sizeof *losses; i++) {
        const loss_case *lc = &losses[i];
        long before = ag_live_tensors();
        const char *failed = NULL;
        loss_data d = loss_data_new();
        for (int k = 0; k < (lc->vary ? 3 : 1); k++)
            for (int r = 0; r < 3; r++)
                for (int form = 0; form < (lc->fn ? 2 : 1); form++) {
                    ag_loss_opts o = ag_loss_defaults();
                    o.reduction = reductions[r];
                    if (lc->vary) lc->vary(k, &o, &d);
                    ag_tensor *y;
                    if (form == 0) {
                        y = lc->call(&d, &o);
                    } else {
                        ag_loss *l = ag_nn_loss(lc->fn, &o);
                        y = ag_loss_forward(l, field(&d, lc->input), field(&d, lc->target));
                        ag_loss_free(l);
                    }
                    if (!y && !failed) failed = form ? "loss_forward" : "forward";
                    if (y && backward_of(y) && !failed) failed = "backward";
                    ag_release(y);
                }
        loss_data_free(&d);
        verdict("loss", lc->name, before, failed);
    }
    /* kl_div's own reduction */
    long before = ag_live_tensors();
    loss_data d = loss_data_new();
    ag_loss_opts o = ag_loss_defaults();
    o.reduction = AG_REDUCTION_BATCHMEAN;
    ag_tensor *y = ag_kl_div(d.x, d.prob, &o);
    const char *failed = !y ? "forward" : backward_of(y) ? "backward" : NULL;
    ag_release(y);
    loss_data_free(&d);
    verdict("loss", "kl_div (batchmean)", before, failed);
}

/* ---- optimizers -------------------------------------------------------------------------------------- */
/* L = mse(X·W + b, Y) with W [3, 2], b [2] (the parameters), X [4, 3], Y [4, 2]. */
typedef struct problem {
    ag_tensor *W, *b, *X, *Y;
} problem;

static problem problem_new(void) {
    return (problem){ag_requires_grad_(input(AG_SHAPE(3, 2), AG_F64, -1, 1, false), true),
                     ag_requires_grad_(input(AG_SHAPE(2), AG_F64, -1, 1, false), true),
                     input(AG_SHAPE(4, 3), AG_F64, -1, 1, false), input(AG_SHAPE(4, 2), AG_F64, -1, 1, false)};
}

static void problem_free(problem *p) {
    ag_release(p->W), ag_release(p->b), ag_release(p->X), ag_release(p->Y);
}

/* Closure: zero the gradients, then L and its backward, releasing every tensor made. */
static ag_status problem_closure(void *ctx, double *loss) {
    problem *p = ctx;
    ag_zero_grad(p->W);
    ag_zero_grad(p->b);
    ag_tensor *xw = ag_matmul(p->X, p->W), *z = ag_add(xw, p->b), *l = ag_mse_loss(z, p->Y, NULL);
    ag_status st = l ? ag_backward(l) : ag_last_status();
    if (!st && loss) *loss = ag_item(l);
    ag_release(l), ag_release(z), ag_release(xw);
    return st;
}

typedef struct optim_case {
    const char *name;
    ag_optimizer *(*make)(ag_tensor *const *p, int n);
} optim_case;

#define OPTIM(N)                                                                                      \
    static ag_optimizer *make_##N(ag_tensor *const *p, int n) { return ag_##N##_new(p, n, NULL); }
OPTIM(sgd)
OPTIM(adam)
OPTIM(adamw)
OPTIM(adagrad)
OPTIM(rmsprop)
OPTIM(adamax)
OPTIM(nadam)
OPTIM(radam)
OPTIM(adadelta)
OPTIM(rprop)
OPTIM(asgd)
OPTIM(lbfgs)
OPTIM(muon)
#define OPT(N) {#N, make_##N}
static const optim_case optims[] = {OPT(sgd),  OPT(adam),     OPT(adamw), OPT(adagrad), OPT(rmsprop),
                                    OPT(adamax), OPT(nadam),  OPT(radam), OPT(adadelta), OPT(rprop),
                                    OPT(asgd), OPT(lbfgs),    OPT(muon)};

/* Turns on what an algorithm has of these options (the others fail and are ignored). */
static void options_on(ag_optimizer *opt) {
    static const struct {
        const char *name;
        double v;
    } set[] = {{"momentum", 0.9},  {"nesterov", 1},  {"weight_decay", 0.01}, {"amsgrad", 1},
               {"centered", 1},    {"maximize", 1},  {"decoupled_weight_decay", 1}, {"line_search", 1}};
    for (size_t i = 0; i < sizeof set / sizeof *set; i++) ag_optimizer_set(opt, 0, set[i].name, set[i].v);
    ag_clear_error();
}

static void test_optimizers(void) {
    for (size_t i = 0; i < sizeof optims / sizeof *optims; i++) {
        long before = ag_live_tensors();
        const char *failed = NULL;
        for (int variant = 0; variant < 2; variant++) {
            problem p = problem_new();
            ag_optimizer *opt = optims[i].make((ag_tensor *[]){p.W, p.b}, 2);
            if (!opt && !failed) failed = "construction";
            if (opt && variant) options_on(opt);
            for (int s = 0; opt && s < 3; s++) {
                double loss;
                ag_status st = ag_optimizer_kind(opt) == AG_OPTIM_LBFGS
                                   ? ag_optimizer_step_closure(opt, problem_closure, &p, &loss)
                                   : problem_closure(&p, &loss) ? ag_last_status() : ag_optimizer_step(opt);
                if (st && !failed) failed = "step";
            }
            ag_optimizer_free(opt);
            problem_free(&p);
        }
        verdict("optimizer", optims[i].name, before, failed);
    }
}

/* ---- schedulers --------------------------------------------------------------------------------------- */
static double half(int64_t epoch, int group, void *ctx) {
    (void)group, (void)ctx;
    return 1.0 / (double)(1 + epoch);
}

static ag_scheduler *make_scheduler(int k, ag_optimizer *opt, const char **name) {
    static const int milestones[] = {2, 4};
    ag_one_cycle_options oc = ag_one_cycle_defaults();
    oc.max_lr = 0.1, oc.total_steps = 10;
    ag_plateau_options po = ag_plateau_defaults();
    po.patience = 0;
    switch (k) {
    case 0: return *name = "StepLR", ag_step_lr_new(opt, 2, 0.5);
    case 1: return *name = "MultiStepLR", ag_multistep_lr_new(opt, milestones, 2, 0.5);
    case 2: return *name = "ExponentialLR", ag_exponential_lr_new(opt, 0.9);
    case 3: return *name = "CosineAnnealingLR", ag_cosine_annealing_lr_new(opt, 4, 0.001);
    case 4: return *name = "CosineAnnealingWarmRestarts", ag_cosine_annealing_warm_restarts_new(opt, 2, 2, 0.001);
    case 5: return *name = "LinearLR", ag_linear_lr_new(opt, 0.5, 1, 3);
    case 6: return *name = "PolynomialLR", ag_polynomial_lr_new(opt, 4, 2);
    case 7: return *name = "LambdaLR", ag_lambda_lr_new(opt, half, NULL);
    case 8:
        *name = "SequentialLR";
        return ag_sequential_lr_new(opt, (ag_scheduler *[]){ag_linear_lr_new(opt, 0.5, 1, 2), ag_exponential_lr_new(opt, 0.9)},
                                    2, milestones);
    case 9: return *name = "OneCycleLR", ag_one_cycle_lr_new(opt, &oc);
    case 10: return *name = "ReduceLROnPlateau", ag_reduce_lr_on_plateau_new(opt, &po);
    }
    return NULL;
}

static void test_schedulers(void) {
    for (int k = 0; k <= 10; k++) {
        long before = ag_live_tensors();
        const char *failed = NULL, *name = "?";
        problem p = problem_new();
        ag_sgd_options so = ag_sgd_defaults();
        so.momentum = 0.9;
        ag_optimizer *opt = ag_sgd_new((ag_tensor *[]){p.W, p.b}, 2, &so);
        ag_scheduler *s = make_scheduler(k, opt, &name);
        if (!s) failed = "construction";
        for (int e = 0; s && e < 6; e++) {
            double loss = 0;
            ag_status st = problem_closure(&p, &loss);
            if (!st) st = ag_optimizer_step(opt);
            if (!st) st = k == 10 ? ag_scheduler_step_metric(s, 1.0) : ag_scheduler_step(s);
            if (st && !failed) failed = "step";
        }
        ag_scheduler_free(s);
        ag_optimizer_free(opt);
        problem_free(&p);
        verdict("scheduler", name, before, failed);
    }
}

/* ---- other composites ------------------------------------------------------------------------------------ */
static void test_penalties_and_clipping(void) {
    for (int k = 0; k < 5; k++) {
        static const char *const names[] = {"l1_penalty", "l2_penalty", "elastic_net_penalty", "clip_grad_norm",
                                            "clip_grad_value"};
        long before = ag_live_tensors();
        const char *failed = NULL;
        problem p = problem_new();
        ag_tensor *params[2] = {p.W, p.b}, *y = NULL;
        if (k < 3) {
            y = k == 0 ? ag_l1_penalty(params, 2, 0.1) : k == 1 ? ag_l2_penalty(params, 2, 0.1)
                                                                : ag_elastic_net_penalty(params, 2, 0.1, 0.3);
            if (!y) failed = "forward";
            else if (backward_of(y)) failed = "backward";
        } else {
            double norm;
            if (problem_closure(&p, NULL)) failed = "backward";
            else if (k == 3 ? ag_clip_grad_norm(params, 2, 0.1, 2, true, &norm) : ag_clip_grad_value(params, 2, 0.01))
                failed = "clip";
        }
        ag_release(y);
        problem_free(&p);
        verdict("function", names[k], before, failed);
    }
}

/* In-place ops recorded on non-leaves: the hidden headers holding the old histories
 * and the copies of old values the adjoints read go with the graph. */
static void test_inplace_in_graph(void) {
    for (int k = 0; k < 5; k++) {
        static const char *const names[] = {"mul_ on a non-leaf", "clamp_ then add_scalar_", "div_ by itself",
                                            "copy_ into a buffer", "mul_ after an earlier consumer"};
        long before = ag_live_tensors();
        const char *failed = NULL;
        ag_tensor *x = input(AG_SHAPE(2, 3), AG_F64, 0.5, 2, false), *w = input(AG_SHAPE(3), AG_F64, 0.5, 2, false);
        ag_requires_grad_(x, true), ag_requires_grad_(w, true);
        ag_tensor *y = k == 3 ? ag_zeros(AG_SHAPE(2, 3), AG_F64) : ag_mul_scalar(x, 2), *z = NULL, *r = NULL;
        ag_tensor *done = k == 0 ? ag_mul_(y, w) : k == 1 ? ag_add_scalar_(ag_clamp_(y, 1, 3), 1)
                        : k == 2 ? ag_div_(y, y) : k == 3 ? ag_mul_(ag_copy_(y, w), x) : (z = ag_add(y, x), ag_mul_(y, w));
        if (done != y) failed = "in-place op";
        else if (k == 4 && !(r = ag_add(y, z))) failed = "add";
        else if (backward_of(k == 4 ? r : y)) failed = "backward";
        ag_release(r), ag_release(z), ag_release(y), ag_release(x), ag_release(w);
        verdict("in-place op", names[k], before, failed);
    }
}

static void test_init(void) {
    for (int k = 0; k < 15; k++) {
        static const char *const names[] = {"init_uniform_", "init_normal_", "init_trunc_normal_", "init_constant_",
                                            "init_zeros_", "init_ones_", "init_eye_", "init_xavier_uniform_",
                                            "init_xavier_normal_", "init_kaiming_uniform_", "init_kaiming_normal_",
                                            "init_orthogonal_", "init_orthogonal_ (wide)", "init_sparse_", "init_dirac_"};
        long before = ag_live_tensors();
        ag_tensor *t = input(k == 12 ? AG_SHAPE(3, 5) : k == 14 ? AG_SHAPE(4, 2, 3) : AG_SHAPE(5, 3), AG_F32, 0, 1, false);
        ag_tensor *r = NULL;
        switch (k) {
        case 0: r = ag_init_uniform_(t, -1, 1); break;
        case 1: r = ag_init_normal_(t, 0, 1); break;
        case 2: r = ag_init_trunc_normal_(t, 0, 1, -2, 2); break;
        case 3: r = ag_init_constant_(t, 0.5); break;
        case 4: r = ag_init_zeros_(t); break;
        case 5: r = ag_init_ones_(t); break;
        case 6: r = ag_init_eye_(t); break;
        case 7: r = ag_init_xavier_uniform_(t, 1); break;
        case 8: r = ag_init_xavier_normal_(t, 1); break;
        case 9: r = ag_init_kaiming_uniform_(t, 0, NULL, NULL); break;
        case 10: r = ag_init_kaiming_normal_(t, 0, "fan_out", "relu"); break;
        case 13: r = ag_init_sparse_(t, 0.4, 0.01); break;
        case 14: r = ag_init_dirac_(t, 2); break;
        default: r = ag_init_orthogonal_(t, 1); break;
        }
        ag_release(t); /* r is t: in-place initialisers hand back their argument */
        verdict("function", names[k], before, r == t ? NULL : "init");
    }
}

static void test_flat_parameters(void) {
    for (int k = 0; k < 3; k++) {
        static const char *const names[] = {"parameters_to_vector", "vector_to_parameters", "flatten_parameters"};
        long before = ag_live_tensors();
        const char *failed = NULL;
        problem p = problem_new();
        ag_tensor *params[2] = {p.W, p.b}, *v = NULL, *fg = NULL;
        if (k == 0 && !(v = ag_parameters_to_vector(params, 2))) failed = "forward";
        if (k == 0 && !failed && backward_of(v)) failed = "backward";
        if (k == 1) {
            v = input(AG_SHAPE(8), AG_F64, -1, 1, false);
            if (ag_vector_to_parameters(v, params, 2)) failed = "copy";
        }
        if (k == 2 && (ag_flatten_parameters(params, 2, &v, &fg) || problem_closure(&p, NULL))) failed = "flatten";
        ag_release(v), ag_release(fg);
        problem_free(&p);
        verdict("function", names[k], before, failed);
    }
}

static void test_functional_noise(void) {
    for (int k = 0; k < 7; k++) {
        static const char *const names[] = {"dropout", "dropout (p = 1)", "gaussian_noise", "dropout (eval)",
                                            "dropout2d", "batch_norm_relu_dropout", "batch_norm_relu_dropout (p = 1)"};
        long before = ag_live_tensors();
        ag_tensor *x = ag_requires_grad_(input(AG_SHAPE(3, 4), AG_F32, -1, 1, true), true);
        ag_tensor *y = k == 0 ? ag_dropout(x, 0.5, true) : k == 1 ? ag_dropout(x, 1, true)
                     : k == 2 ? ag_gaussian_noise(x, 0.1, true) : k == 3 ? ag_dropout(x, 0.5, false)
                     : k == 4 ? ag_dropout2d(x, 0.5, true)
                     : ag_batch_norm_relu_dropout(x, NULL, NULL, NULL, NULL, true, 0.1, 1e-5, k == 5 ? 0.5 : 1);
        const char *failed = !y ? "forward" : backward_of(y) ? "backward" : NULL;
        ag_release(y);
        ag_release(x);
        verdict("function", names[k], before, failed);
    }
}

/* User-defined functions (ag_function_type): softplus log(1 + exp x) built of ops
 * that make intermediates, saving its input; (sin x, cos x) through a context node;
 * a forward and a backward that make intermediates and then fail. */
static ag_status softplus_forward(ag_ctx *ctx, ag_tensor *const *in, int nin, ag_tensor **out, int nout) {
    (void)nin, (void)nout;
    out[0] = ag_log(ag_add_scalar(ag_exp(in[0]), 1));
    return out[0] ? ag_ctx_save_for_backward(ctx, in, 1) : ag_last_status();
}
static ag_status softplus_backward(ag_ctx *ctx, ag_tensor *const *gout, int nout, ag_tensor **gin, int nin) {
    (void)nout, (void)nin;
    gin[0] = ag_mul(gout[0], ag_sigmoid(ag_ctx_saved(ctx, 0))); /* dx = dy·σ(x) */
    return gin[0] ? AG_OK : ag_last_status();
}
static ag_status sincos_forward(ag_ctx *ctx, ag_tensor *const *in, int nin, ag_tensor **out, int nout) {
    (void)nin, (void)nout;
    out[0] = ag_sin(in[0]);
    out[1] = ag_cos(in[0]);
    return ag_ctx_save_for_backward(ctx, in, 1);
}
static ag_status sincos_backward(ag_ctx *ctx, ag_tensor *const *gout, int nout, ag_tensor **gin, int nin) {
    (void)nout, (void)nin;
    ag_tensor *x = ag_ctx_saved(ctx, 0); /* dx = d(sin)·cos x - d(cos)·sin x */
    gin[0] = ag_sub(ag_mul(gout[0], ag_cos(x)), ag_mul(gout[1], ag_sin(x)));
    return gin[0] ? AG_OK : ag_last_status();
}
static ag_status failing_forward(ag_ctx *ctx, ag_tensor *const *in, int nin, ag_tensor **out, int nout) {
    (void)ctx, (void)nin, (void)nout;
    out[0] = ag_reshape(ag_exp(in[0]), AG_SHAPE(5)); /* 12 elements: fails */
    return out[0] ? AG_OK : ag_last_status();
}
static ag_status failing_backward(ag_ctx *ctx, ag_tensor *const *gout, int nout, ag_tensor **gin, int nin) {
    (void)ctx, (void)nout, (void)nin;
    gin[0] = ag_reshape(ag_exp(gout[0]), AG_SHAPE(5));
    return gin[0] ? AG_OK : ag_last_status();
}

static void test_user_functions(void) {
    static const ag_function_type softplus = {.name = "MySoftplus", .forward = softplus_forward, .backward = softplus_backward};
    static const ag_function_type sincos = {.name = "SinCos", .forward = sincos_forward, .backward = sincos_backward};
    static const ag_function_type fails_forward = {.name = "FailsForward", .forward = failing_forward, .backward = failing_backward};
    static const ag_function_type fails_backward = {.name = "FailsBackward", .forward = softplus_forward, .backward = failing_backward};
    static const char *const names[] = {"user function (one output)", "user function (one output, no-grad mode)",
                                        "user function (two outputs, both used)", "user function (two outputs, one used)",
                                        "user function (failing forward)", "user function (failing backward)"};
    for (int k = 0; k < 6; k++) {
        long before = ag_live_tensors();
        ag_tensor *x = ag_requires_grad_(input(AG_SHAPE(3, 4), AG_F64, -1, 1, true), true), *y[2] = {NULL, NULL};
        const char *failed = NULL;
        if (k < 2 || k == 5) {
            if (k == 1) ag_no_grad_begin();
            y[0] = ag_function_apply1(k == 5 ? &fails_backward : &softplus, &x, 1, NULL);
            if (k == 1) ag_no_grad_end();
            failed = !y[0] ? "forward" : (backward_of(y[0]) != AG_OK) != (k == 5) ? "backward" : NULL;
        } else if (k < 4) {
            if (ag_function_apply(&sincos, &x, 1, y, 2, NULL)) failed = "forward";
            ag_tensor *s0 = ag_sum(y[0]), *s1 = k == 2 ? ag_sum(y[1]) : NULL, *l = k == 2 ? ag_add(s0, s1) : NULL;
            if (!failed && ag_backward(k == 2 ? l : s0)) failed = "backward";
            ag_release(s0), ag_release(s1), ag_release(l);
        } else if (ag_function_apply1(&fails_forward, &x, 1, NULL) || ag_last_status() != AG_ERR_SHAPE) {
            failed = "forward (should fail)";
        }
        ag_release(y[0]), ag_release(y[1]), ag_release(x);
        verdict("function", names[k], before, failed);
    }
}

static void test_data_and_metrics(void) {
    for (int k = 0; k < 9; k++) {
        static const char *const names[] = {"zscore_fit + normalize", "normalize_", "minmax_fit + minmax_scale",
                                            "minmax_scale_", "rescale", "rescale_ (non-contiguous)", "binarize",
                                            "confusion_matrix", "accuracy"};
        long before = ag_live_tensors();
        ag_tensor *x = input(AG_SHAPE(6, 3), AG_F32, -1, 1, k == 1 || k == 3 || k == 5), *a = NULL, *b = NULL, *y = NULL;
        ag_tensor *cls = ints(AG_SHAPE(6), 1, 0, 3);
        const char *failed = NULL;
        bool inplace = k == 1 || k == 3 || k == 5;
        if (k < 2 && ag_zscore_fit(x, true, &a, &b)) failed = "fit";
        if (k >= 2 && k < 4 && ag_minmax_fit(x, false, &a, &b)) failed = "fit";
        if (!failed) switch (k) {
            case 0: y = ag_normalize(x, a, b); break;
            case 1: y = ag_normalize_(x, a, b); break;
            case 2: y = ag_minmax_scale(x, a, b, -1, 1); break;
            case 3: y = ag_minmax_scale_(x, a, b, -1, 1); break;
            case 4: y = ag_rescale(x, -1, 1, 0, 1); break;
            case 5: y = ag_rescale_(x, -1, 1, 0, 1); break;
            case 6: y = ag_binarize(x, 0); break;
            case 7: y = ag_confusion_matrix(x, cls, -1); break;
            default: y = isnan(ag_accuracy(x, cls)) ? NULL : x; inplace = true; break;
            }
        if (!y && !failed) failed = names[k];
        if (!inplace) ag_release(y);
        ag_release(a), ag_release(b), ag_release(x), ag_release(cls);
        verdict("function", names[k], before, failed);
    }
}

static void test_dataset_and_early_stopping(void) {
    long before = ag_live_tensors();
    const char *failed = NULL;
    ag_tensor *x = input(AG_SHAPE(6, 3), AG_F32, -1, 1, true), *y = ints(AG_SHAPE(6), 1, 0, 3), *a = NULL, *b = NULL;
    ag_dataset *ds = ag_tensor_dataset(x, y); /* x is not contiguous: the dataset copies it */
    ag_dataset *sub = ds ? ag_subset(ds, (const int64_t[]){4, 1, 2}, 3) : NULL;
    if (!sub) failed = "tensor_dataset";
    if (!failed && ag_dataset_get(sub, 1, &a, &b)) failed = "dataset_get";
    ag_release(a), ag_release(b), a = b = NULL;
    if (!failed && ag_dataset_tensors(sub, &a, &b)) failed = "dataset_tensors";
    ag_release(a), ag_release(b), a = b = NULL;
    ag_loader *l = failed ? NULL : ag_loader_new(ds, &(ag_loader_options){.batch_size = 4, .shuffle = true, .seed = 3});
    for (int r; l && (r = ag_loader_next(l, &a, &b)) != 0; a = b = NULL) {
        if (r < 0 && !failed) failed = "loader_next";
        ag_release(a), ag_release(b);
        if (r < 0) break;
    }
    ag_loader_free(l);
    ag_dataset_free(sub), ag_dataset_free(ds);
    ag_release(x), ag_release(y);
    verdict("function", "tensor_dataset, dataset_get, dataset_tensors, loader_next", before, failed);

    before = ag_live_tensors();
    failed = NULL;
    ag_module *m = ag_nn_linear(3, 2, true);
    ag_early_stopping *es = ag_early_stopping_new(m, NULL);
    if (!es || ag_early_stopping_step(es, 1.0) < 0 || ag_early_stopping_step(es, 0.5) < 0 ||
        ag_early_stopping_step(es, 0.7) < 0 || ag_early_stopping_restore(es))
        failed = "early_stopping";
    ag_early_stopping_free(es);
    ag_module_free(m);
    verdict("function", "early_stopping", before, failed);
}

/* ---- hooks ----------------------------------------------------------------------------------------------- */
static ag_status hook_double(ag_tensor *grad, ag_tensor **replace, void *user) {
    (void)user;
    *replace = ag_mul_scalar(ag_add(grad, grad), 1); /* an intermediate and a replacement */
    return *replace ? AG_OK : ag_last_status();
}
static ag_status hook_fails(ag_tensor *grad, ag_tensor **replace, void *user) {
    (void)user, (void)replace;
    ag_exp(grad); /* left to the hook's scope */
    return AG_ERR_VALUE;
}
static ag_status hook_post(ag_tensor *t, void *user) {
    (void)user;
    ag_tensor *n = ag_sum(ag_mul(ag_grad(t), ag_grad(t)));
    return n ? AG_OK : ag_last_status();
}
static ag_status hook_pre(ag_module *m, ag_tensor *x, ag_tensor **replace, void *user) {
    (void)m, (void)user;
    *replace = ag_mul_scalar(x, 0.5);
    return *replace ? AG_OK : ag_last_status();
}
static ag_status hook_fwd(ag_module *m, ag_tensor *x, ag_tensor *y, ag_tensor **replace, void *user) {
    (void)m, (void)x, (void)user;
    *replace = ag_tanh(y);
    return *replace ? AG_OK : ag_last_status();
}
static ag_status hook_bwd(ag_module *m, ag_tensor *gin, ag_tensor *gout, ag_tensor **replace, void *user) {
    (void)m, (void)user;
    ag_sum(gout);
    if (gin) *replace = ag_mul_scalar(gin, 2);
    return AG_OK;
}

/* Tensor hooks (replacing, failing, post-accumulate) and module hooks (all three,
 * replacing, input with and without grad) with no scope open. */
static void test_hooks(void) {
    static const char *const names[] = {"tensor hooks (leaf and non-leaf, replacing)", "tensor hook (failing)",
                                        "module hooks (input requires grad)", "module hooks (input without grad)"};
    for (int k = 0; k < 4; k++) {
        long before = ag_live_tensors();
        const char *failed = NULL;
        ag_tensor *x = ag_requires_grad_(input(AG_SHAPE(3, 4), AG_F64, -1, 1, true), k != 3);
        if (k < 2) {
            ag_tensor *h = ag_exp(x);
            if (ag_register_hook(x, k ? hook_fails : hook_double, NULL, NULL) ||
                ag_register_hook(h, hook_double, NULL, NULL) || ag_register_post_accumulate_grad_hook(x, hook_post, NULL, NULL))
                failed = "register";
            else if ((backward_of(h) == AG_OK) != (k == 0)) failed = k ? "backward (should fail)" : "backward";
            ag_release(h);
        } else {
            ag_module *lin = ag_nn_linear(4, 2, true);
            ag_module_to_dtype(lin, AG_F64);
            if (ag_module_register_forward_pre_hook(lin, hook_pre, NULL, NULL) ||
                ag_module_register_forward_hook(lin, hook_fwd, NULL, NULL) ||
                ag_module_register_full_backward_hook(lin, hook_bwd, NULL, NULL))
                failed = "register";
            ag_tensor *y = failed ? NULL : ag_module_forward(lin, x);
            if (!failed && !y) failed = "forward";
            else if (!failed && backward_of(y)) failed = "backward";
            ag_release(y);
            ag_module_free(lin);
        }
        ag_release(x);
        verdict("hooks", names[k], before, failed);
    }
}

/* weight_norm and spectral_norm with no scope: the hooks compute the weight in scopes of
 * their own, and removing them leaves a plain parameter. */
static void test_reparametrisations(void) {
    static const char *const names[] = {"weight_norm", "spectral_norm"};
    for (int k = 0; k < 2; k++) {
        long before = ag_live_tensors();
        const char *failed = NULL;
        ag_tensor *x = input(AG_SHAPE(3, 4), AG_F64, -1, 1, true);
        ag_module *lin = ag_nn_linear(4, 2, true);
        ag_module_to_dtype(lin, AG_F64);
        if ((k ? ag_spectral_norm(lin, "weight", 1, 1e-12, -1) : ag_weight_norm(lin, "weight", 0))) failed = "apply";
        for (int s = 0; !failed && s < 2; s++) {
            ag_tensor *y = ag_module_forward(lin, x);
            if (!y) failed = "forward";
            else if (backward_of(y)) failed = "backward";
            ag_release(y);
        }
        if (!failed && (k ? ag_remove_spectral_norm(lin, "weight") : ag_remove_weight_norm(lin, "weight"))) failed = "remove";
        ag_module_free(lin);
        ag_release(x);
        verdict("function", names[k], before, failed);
    }
}

/* Forward mode with no scope: dual tensors, ops carrying tangents (their rules run in
 * scopes of their own; the tensors waiting for their tangent are held until computed),
 * ag_tangent and ag_jvp hand the caller what they return. */
static ag_tensor *jvp_fn(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    ag_tensor *y = ag_matmul(in[0], in[1]), *s = ag_softmax(y, 1), *r = ag_sum_dim(s, 0, false);
    if (ag_scope_depth() == 0) ag_release(y), ag_release(s); /* under ag_jvp its scope owns them */
    return r;
}

static void test_forward_mode(void) {
    long before = ag_live_tensors();
    const char *failed = NULL;
    ag_tensor *a = input(AG_SHAPE(3, 4), AG_F64, -1, 1, false), *b = input(AG_SHAPE(4, 2), AG_F64, -1, 1, false);
    ag_tensor *va = input(AG_SHAPE(3, 4), AG_F64, -1, 1, false), *vb = input(AG_SHAPE(4, 2), AG_F64, -1, 1, true);
    if (ag_dual_level_begin()) failed = "dual_level_begin";
    ag_tensor *da = ag_make_dual(a, va), *db = ag_make_dual(b, vb);
    ag_tensor *in[2] = {da, db};
    ag_tensor *y = da && db ? jvp_fn(in, 2, NULL) : NULL, *t = y ? ag_tangent(y) : NULL;
    if (!failed && !t) failed = "a tangent through matmul, softmax and sum";
    ag_release(t), ag_release(y), ag_release(da), ag_release(db);
    if (!failed && ag_dual_level_end()) failed = "dual_level_end";
    ag_tensor *plain[2] = {a, b}, *v[2] = {va, vb}, *out = NULL, *jv = NULL;
    if (!failed && ag_jvp(jvp_fn, NULL, plain, 2, v, &out, &jv)) failed = "ag_jvp";
    ag_release(out), ag_release(jv), ag_release(a), ag_release(b), ag_release(va), ag_release(vb);
    verdict("forward mode", "(make_dual, tangent, jvp)", before, failed);
}

int main(void) {
    ag_manual_seed(11);
    ok(ag_scope_depth() == 0 && ag_live_tensors() == 0, "no scope is open and no tensor is alive at the start");
    test_ops();
    test_reparametrisations();
    test_ops_out_of_memory();
    test_modules();
    test_losses();
    test_optimizers();
    test_schedulers();
    test_penalties_and_clipping();
    test_inplace_in_graph();
    test_init();
    test_flat_parameters();
    test_functional_noise();
    test_user_functions();
    test_forward_mode();
    test_hooks();
    test_data_and_metrics();
    test_dataset_and_early_stopping();
    ok(ag_live_tensors() == 0, "no tensor outlives the checks (%ld live)", ag_live_tensors());
    return tap_done();
}

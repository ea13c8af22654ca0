/*
 * bench_steps.c - whole training steps and small chains, the workloads of the
 * PyTorch baseline (bench/compare_pytorch.py runs the same ones in PyTorch).
 *
 *   tiny_chain      (x*w + b).relu().sum() forward + backward, 8 float32 elements
 *   tanh_sum_4m     tanh(x).sum() forward + backward, 4M elements
 *   mlp_784_256_10  Linear 784->256, ReLU, Linear 256->10, cross-entropy,
 *                   batch 1024, SGD
 *   mlp_bn_dropout  784->512->512->512->10, each hidden layer Linear,
 *                   BatchNorm1d, ReLU, Dropout(0.1); cross-entropy, batch 256, AdamW
 *   mlp_512_b64     Linear 512->512, ReLU, Linear 512->512, cross-entropy,
 *                   batch 64, SGD (a small-batch GEMM shape)
 *   mlp_4_16_3      Linear 4->16, ReLU, Linear 16->3, cross-entropy, batch 150, Adam
 *   mlp_784_256_10_optbw, mlp_bn_dropout_optbw, mlp_512_b64_optbw  those steps with the optimizer
 *                   inside backward (ag_optimizer_register_step_hooks, gradients dropped after their
 *                   update): forward and backward alone, each parameter updated as its gradient is final
 *   mlp_infer_b1, mlp_infer_b8  the model of mlp_784_256_10, forward alone in inference mode
 *                   (torch.inference_mode()), batch 1 and 8: small-batch inference
 *   mlp_512_b256, mlp_1024_b256  Linear W->W, ReLU, Linear W->W (W = 512, 1024), cross-entropy,
 *                   batch 256, SGD; with _bf16 the forward and loss run inside
 *                   ag_autocast_begin(AG_AUTOCAST_BF16) (docs/mixed-precision.md)
 *   conv2d_cnn      conv2d(x, w, b, padding=1).sum() forward + backward (dx, dw, db), x [64, 32, 14, 14],
 *                   w [64, 32, 3, 3]: the second convolution of a small Fashion-MNIST CNN;
 *                   conv2d_cnn_bf16: the same inside a bf16 autocast region
 *   lstm_64x32x256  nn.LSTM(256, 256) on x [64, 32, 256] (seq 64, batch 32): output.sum() forward +
 *                   backward (dx and the four parameters' gradients)
 *   transformer_128x8x256  nn.TransformerEncoderLayer(256, 4, 1024, dropout=0) on x [128, 8, 256]
 *                   (seq 128, batch 8), training mode: output.sum() forward + backward (dx and the 12
 *                   parameters' gradients)
 *   index_add_1m    index_add(x, 0, index, src).sum() forward + backward, x and src [4096, 256],
 *                   index 4096 rows with repeats
 *   scatter_reduce_1m  scatter_reduce(x, 1, index, src, "amax").sum() forward + backward, all
 *                   [1024, 1024] (each row's 1024 values sent to hashed places of that row)
 *   einsum_bmm      einsum("bij,bjk->bik", a, b).sum() forward + backward, [64, 128, 128] each
 *   cdist_1k        cdist(x1, x2).sum() forward + backward, [1024, 64] each (p = 2, matmul form)
 *   sort_1k         (sort(x, dim 1).values · w).sum() forward + backward, x and w [1024, 1024]
 *   topk_1k         (topk(x, 32, dim 1).values · w).sum() forward + backward, x [1024, 1024], w [1024, 32]
 *   cumsum_1k       (cumsum(x, dim 1) · w).sum() forward + backward, x and w [1024, 1024]
 *   cnn_fashion     the CNN of examples/fashion_cnn.c, one training step: two blocks of Conv2d 3x3
 *                   (padding 1), BatchNorm2d, ReLU, MaxPool2d(2) with 32 then 64 channels, Flatten,
 *                   Dropout(0.25), Linear 3136->10; cross-entropy, batch 128 of [1, 28, 28], Adam
 *   rand_1k, randn_1k, rand_4k, randn_4k  a new float32 [1000, 1000] or [4096, 4096] tensor of rand or randn
 *                   (bytes: the values written, against the copy bandwidth)
 *   sum_d0_4096     x.sum(0) forward, x [4096, 4096] (no gradient)
 *   sum_d1_4096     x.sum(1) forward, x [4096, 4096]
 *   sum_mid_64x1k   x.sum(1) forward, x [64, 1024, 64] (a middle dim)
 *   softmax_d0_1k   softmax(x, 0).backward(g) (forward + backward), x [1000, 1000]
 *   softmax_d1_1k   softmax(x, 1).backward(g), x [1000, 1000]
 *   layer_norm_512  layer_norm(x, [1024], w, b).backward(g), x [512, 1024]
 *   xent_4096x1000  cross_entropy(x, target).backward(), x [4096, 1000] (ImageNet-like classes)
 *   argmax_d0_4096, argmax_d1_4096  x.argmax(0), x.argmax(1), x [4096, 4096] (no gradient)
 *   prod_d0_1k, prod_d1_1k  prod(x, 0).backward(g), prod(x, 1).backward(g), x = 1 + randn/100 [1000, 1000]
 *
 * Every step runs inside ag_scope_begin/ag_scope_end and drops the gradients
 * first (ag_zero_grad, ag_optimizer_zero_grad), as a user's training loop
 * would.  GEMM-bound workloads also print their rate as a fraction of the
 * machine's 1024³ sgemm rate measured right after the row, memory-bound ones their
 * GB/s (the bytes their kernels must move at least) as a fraction of a bandwidth
 * measured with the row (run_bandwidth): a threaded stream (bench_util.h) over the
 * row's own working set (its distinct tensors' bytes, so a row whose data fits in a
 * cache is held to that cache's rate), a copy, or for the reductions that read N
 * bytes and write few (sum_*, argmax_*) a read; taken after each fifth of the row's
 * samples, the best of the five.  The bandwidths measured at startup (a 128 MiB copy,
 * a 64 MiB read) are printed for reference only.
 * Usage: bench_steps [--quick] [--reference | --accel] [--json FILE] [name-filter[,name-filter...]]
 */
#include <math.h>
#include <omp.h>
#include "agrad/agrad.h"
#include "bench_util.h"
#include "core/parallel.h"

/* ---- a sequence layer (LSTM, Transformer encoder layer) ------------------------------------ */
typedef struct recurrent {
    ag_module *layer;
    ag_tensor *x;
} recurrent;

/* layer(x).sum() forward and backward */
static int layer_step(void *ctx) {
    recurrent *l = ctx;
    ag_scope_begin();
    ag_module_zero_grad(l->layer);
    ag_zero_grad(l->x);
    int bad = ag_backward(ag_sum(ag_module_forward(l->layer, l->x))) != AG_OK;
    ag_scope_end();
    return bad;
}

/* ---- models: nn modules, cross-entropy, an optimizer --------------------------------- */
typedef struct model {
    ag_module *net;
    ag_optimizer *opt;
    ag_tensor *x, *target; /* a fixed batch; class indices (int64) */
    double flops;          /* GEMM flops of one step */
    bool bf16;             /* forward and loss inside a bf16 autocast region */
    bool in_backward;      /* the optimizer steps inside backward (no zero_grad, no step) */
} model;

/* One training step, as a user writes it. */
static int model_step(void *ctx) {
    model *m = ctx;
    ag_scope_begin();
    if (!m->in_backward) ag_optimizer_zero_grad(m->opt); /* else each hook drops its gradient */
    if (m->bf16) ag_autocast_begin(AG_AUTOCAST_BF16, true);
    ag_tensor *loss = ag_cross_entropy(ag_module_forward(m->net, m->x), m->target, NULL);
    if (m->bf16) ag_autocast_end(); /* backward outside, as PyTorch recommends: it follows the forward */
    int bad = !loss || ag_backward(loss) != AG_OK || (!m->in_backward && ag_optimizer_step(m->opt) != AG_OK);
    ag_scope_end();
    return bad;
}

/* Makes m's optimizer step inside backward, dropping each gradient after its update. */
static bool in_backward(model *m) {
    m->in_backward = true;
    return ag_optimizer_register_step_hooks(m->opt, true) == AG_OK;
}

typedef enum { SGD, ADAM, ADAMW } optim;

/* A linear layer's flops in a step: forward, dW, and dX unless it is the first. */
static double linear_flops(int64_t batch, int64_t in, int64_t out, bool first) {
    return (first ? 2 : 3) * 2.0 * (double)batch * (double)in * (double)out;
}

/* m->net built by the caller; adds the batch, the targets and the optimizer. */
static bool model_finish(model *m, int64_t batch, int64_t in, int64_t classes, optim o, double lr) {
    m->x = ag_randn(AG_SHAPE(batch, in), AG_F32);
    m->target = ag_empty(AG_SHAPE(batch), AG_I64);
    if (!m->net || !m->x || !m->target) return false;
    int64_t *t = ag_data(m->target);
    for (int64_t i = 0; i < batch; i++) t[i] = (i * 7 + 3) % classes;
    ag_tensor *params[64];
    int n = ag_module_parameters(m->net, params, 64);
    if (o == SGD) {
        ag_sgd_options so = ag_sgd_defaults();
        so.lr = lr;
        m->opt = ag_sgd_new(params, n, &so);
    } else {
        ag_adam_options ao = o == ADAM ? ag_adam_defaults() : ag_adamw_defaults();
        ao.lr = lr;
        m->opt = o == ADAM ? ag_adam_new(params, n, &ao) : ag_adamw_new(params, n, &ao);
    }
    return m->opt != NULL;
}

/* The model's forward alone in inference mode. */
static int model_infer(void *ctx) {
    model *m = ctx;
    ag_scope_begin();
    ag_inference_mode_begin();
    int bad = ag_module_forward(m->net, m->x) == NULL;
    ag_inference_mode_end();
    ag_scope_end();
    return bad;
}

/* Linear in->hidden, ReLU, Linear hidden->out. */
static bool mlp_init(model *m, int64_t batch, int64_t in, int64_t hidden, int64_t out, optim o, double lr) {
    memset(m, 0, sizeof *m);
    ag_manual_seed(42);
    m->net = AG_SEQUENTIAL(ag_nn_linear(in, hidden, true), ag_nn_relu(), ag_nn_linear(hidden, out, true));
    m->flops = linear_flops(batch, in, hidden, true) + linear_flops(batch, hidden, out, false);
    return model_finish(m, batch, in, out, o, lr);
}

/* 784 -> 512 -> 512 -> 512 -> 10, each hidden layer Linear, BatchNorm1d, ReLU, Dropout(0.1). */
static bool bn_mlp_init(model *m, int64_t batch) {
    memset(m, 0, sizeof *m);
    ag_manual_seed(42);
    m->net = ag_nn_sequential(0, NULL);
    int64_t in = 784;
    for (int l = 0; l < 3; l++) {
        ag_nn_sequential_append(m->net, ag_nn_linear(in, 512, true));
        ag_nn_sequential_append(m->net, ag_nn_batch_norm1d(512, 1e-5, 0.1, true, true));
        ag_nn_sequential_append(m->net, ag_nn_relu());
        ag_nn_sequential_append(m->net, ag_nn_dropout(0.1));
        m->flops += linear_flops(batch, in, 512, l == 0);
        in = 512;
    }
    ag_nn_sequential_append(m->net, ag_nn_linear(512, 10, true));
    m->flops += linear_flops(batch, 512, 10, false);
    return model_finish(m, batch, 784, 10, ADAMW, 1e-3);
}

/* Conv2d(in, out, 3, padding=1), BatchNorm2d, ReLU, MaxPool2d(2) appended to m->net, on size x size inputs. */
static void cnn_block(model *m, int64_t batch, int64_t in, int64_t out, int64_t size, bool first) {
    ag_nn_sequential_append(m->net, ag_nn_conv2d(in, out, 3, 3, &(ag_conv_opts){.padding = {1, 1}}, true));
    ag_nn_sequential_append(m->net, ag_nn_batch_norm2d(out, 1e-5, 0.1, true, true));
    ag_nn_sequential_append(m->net, ag_nn_relu());
    ag_nn_sequential_append(m->net, ag_nn_max_pool2d(&(ag_pool_opts){.kernel = {2, 2}}));
    /* forward, dW, and dX unless first: each 2·N·out·size²·in·9 flops (a direct convolution's) */
    m->flops += (first ? 2 : 3) * 2.0 * (double)batch * (double)out * (double)(size * size) * (double)in * 9;
}

/* The CNN of examples/fashion_cnn.c (width 32) on a batch of [1, 28, 28] images, Adam. */
static bool cnn_init(model *m, int64_t batch) {
    memset(m, 0, sizeof *m);
    ag_manual_seed(42);
    m->net = ag_nn_sequential(0, NULL);
    cnn_block(m, batch, 1, 32, 28, true);
    cnn_block(m, batch, 32, 64, 14, false);
    ag_nn_sequential_append(m->net, ag_nn_flatten(1, -1));
    ag_nn_sequential_append(m->net, ag_nn_dropout(0.25));
    ag_nn_sequential_append(m->net, ag_nn_linear(64 * 7 * 7, 10, true));
    m->flops += linear_flops(batch, 64 * 7 * 7, 10, false);
    if (!model_finish(m, batch, 28 * 28, 10, ADAM, 1e-3)) return false;
    ag_tensor *images = ag_reshape(m->x, AG_SHAPE(batch, 1, 28, 28)); /* a view: the caller owns it */
    ag_release(m->x);
    m->x = images;
    return images != NULL;
}

static void model_free(model *m) {
    ag_optimizer_free(m->opt);
    ag_module_free(m->net);
    ag_release(m->x);
    ag_release(m->target);
}

/* ---- chains ------------------------------------------------------------------------------ */
typedef struct chain {
    ag_tensor *x, *w, *b;
} chain;

static int tiny_chain(void *ctx) {
    chain *c = ctx;
    ag_scope_begin();
    ag_zero_grad(c->x);
    ag_zero_grad(c->w);
    ag_zero_grad(c->b);
    ag_tensor *loss = ag_sum(ag_relu(ag_add(ag_mul(c->x, c->w), c->b)));
    int bad = ag_backward(loss) != AG_OK;
    ag_scope_end();
    return bad;
}

static int tanh_sum(void *ctx) {
    chain *c = ctx;
    ag_scope_begin();
    ag_zero_grad(c->x);
    int bad = ag_backward(ag_sum(ag_tanh(c->x))) != AG_OK;
    ag_scope_end();
    return bad;
}

/* conv2d(x, w, b, padding=1).sum() forward + backward. */
static int conv_step(void *ctx) {
    chain *c = ctx;
    ag_scope_begin();
    ag_zero_grad(c->x);
    ag_zero_grad(c->w);
    ag_zero_grad(c->b);
    ag_conv_opts o = {.padding = {1, 1}};
    int bad = ag_backward(ag_sum(ag_conv2d(c->x, c->w, c->b, &o))) != AG_OK;
    ag_scope_end();
    return bad;
}

/* conv_step with the convolution inside a bf16 autocast region (its adjoints follow it). */
static int conv_step_bf16(void *ctx) {
    chain *c = ctx;
    ag_scope_begin();
    ag_zero_grad(c->x);
    ag_zero_grad(c->w);
    ag_zero_grad(c->b);
    ag_conv_opts o = {.padding = {1, 1}};
    ag_autocast_begin(AG_AUTOCAST_BF16, true);
    ag_tensor *loss = ag_sum(ag_conv2d(c->x, c->w, c->b, &o));
    ag_autocast_end();
    int bad = ag_backward(loss) != AG_OK;
    ag_scope_end();
    return bad;
}

/* ---- indexing and contractions ---------------------------------------------------------------- */
typedef struct indexed {
    ag_tensor *x, *src, *index;
} indexed;

static int index_add_step(void *ctx) {
    indexed *c = ctx;
    ag_scope_begin();
    ag_zero_grad(c->x);
    ag_zero_grad(c->src);
    int bad = ag_backward(ag_sum(ag_index_add(c->x, 0, c->index, c->src, 1))) != AG_OK;
    ag_scope_end();
    return bad;
}

static int scatter_reduce_step(void *ctx) {
    indexed *c = ctx;
    ag_scope_begin();
    ag_zero_grad(c->x);
    ag_zero_grad(c->src);
    int bad = ag_backward(ag_sum(ag_scatter_reduce(c->x, 1, c->index, c->src, AG_SCATTER_AMAX, true))) != AG_OK;
    ag_scope_end();
    return bad;
}

static int einsum_step(void *ctx) {
    indexed *c = ctx;
    ag_scope_begin();
    ag_zero_grad(c->x);
    ag_zero_grad(c->src);
    int bad = ag_backward(ag_sum(ag_einsum("bij,bjk->bik", (ag_tensor *[]){c->x, c->src}, 2))) != AG_OK;
    ag_scope_end();
    return bad;
}

/* c->src weighs the result so that the gradient is not all ones. */
static int sort_step(void *ctx) {
    indexed *c = ctx;
    ag_scope_begin();
    ag_zero_grad(c->x);
    int bad = ag_backward(ag_sum(ag_mul(ag_sort(c->x, 1, false, NULL), c->src))) != AG_OK;
    ag_scope_end();
    return bad;
}

static int topk_step(void *ctx) {
    indexed *c = ctx;
    ag_scope_begin();
    ag_zero_grad(c->x);
    int bad = ag_backward(ag_sum(ag_mul(ag_topk(c->x, 32, 1, true, true, NULL), c->src))) != AG_OK;
    ag_scope_end();
    return bad;
}

static int cumsum_step(void *ctx) {
    indexed *c = ctx;
    ag_scope_begin();
    ag_zero_grad(c->x);
    int bad = ag_backward(ag_sum(ag_mul(ag_cumsum(c->x, 1), c->src))) != AG_OK;
    ag_scope_end();
    return bad;
}

static int cdist_step(void *ctx) {
    indexed *c = ctx;
    ag_scope_begin();
    ag_zero_grad(c->x);
    ag_zero_grad(c->src);
    int bad = ag_backward(ag_sum(ag_cdist(c->x, c->src, 2))) != AG_OK;
    ag_scope_end();
    return bad;
}

/* A new random tensor (rand or randn, float32) of the shape in ctx, released at once */
typedef struct fill {
    ag_shape shape;
    bool normal;
} fill;

static int fill_step(void *ctx) {
    const fill *f = ctx;
    ag_scope_begin();
    int bad = !(f->normal ? ag_randn(f->shape, AG_F32) : ag_rand(f->shape, AG_F32));
    ag_scope_end();
    return bad;
}

/* An int64 tensor of shape with hashed values in [0, m): k·2654435761 mod 2^32 mod m. */
static ag_tensor *hashed_index(ag_shape shape, int64_t m) {
    ag_tensor *t = ag_empty(shape, AG_I64);
    int64_t *v = ag_data(t), n = ag_numel(t);
    for (int64_t k = 0; k < n; k++) v[k] = (int64_t)(((uint64_t)k * 2654435761u) % 4294967296u % (uint64_t)m);
    return t;
}

static ag_tensor *leaf_of(ag_shape shape) { return ag_requires_grad_(ag_randn(shape, AG_F32), true); }

static ag_tensor *leaf(int64_t n) { return ag_requires_grad_(ag_randn(AG_SHAPE(n), AG_F32), true); }

/* ---- reductions and normalisations ----------------------------------------------------------- */
typedef enum { RED_SUM0, RED_SUM1, RED_ARGMAX0, RED_ARGMAX1, RED_SOFTMAX0, RED_SOFTMAX1, RED_LAYER_NORM, RED_XENT,
               RED_PROD0, RED_PROD1 } red_kind;
typedef struct reduction {
    red_kind kind;
    ag_tensor *x, *g, *w, *b, *target;
} reduction;

static int reduction_step(void *ctx) {
    reduction *c = ctx;
    ag_scope_begin();
    int bad = 0;
    switch (c->kind) {
    case RED_SUM0: bad = !ag_sum_dim(c->x, c->x->ndim == 3 ? 1 : 0, false); break;
    case RED_SUM1: bad = !ag_sum_dim(c->x, 1, false); break;
    case RED_ARGMAX0:
    case RED_ARGMAX1: bad = !ag_argmax(c->x, c->kind == RED_ARGMAX0 ? 0 : 1, false); break;
    case RED_PROD0:
    case RED_PROD1:
        ag_zero_grad(c->x);
        bad = ag_backward_ex(ag_prod_dim(c->x, c->kind == RED_PROD0 ? 0 : 1, false), c->g, false) != AG_OK;
        break;
    case RED_SOFTMAX0:
    case RED_SOFTMAX1:
        ag_zero_grad(c->x);
        bad = ag_backward_ex(ag_softmax(c->x, c->kind == RED_SOFTMAX0 ? 0 : 1), c->g, false) != AG_OK;
        break;
    case RED_LAYER_NORM:
        ag_zero_grad(c->x), ag_zero_grad(c->w), ag_zero_grad(c->b);
        bad = ag_backward_ex(ag_layer_norm(c->x, AG_SHAPE(1024), c->w, c->b, 1e-5), c->g, false) != AG_OK;
        break;
    case RED_XENT:
        ag_zero_grad(c->x);
        bad = ag_backward(ag_cross_entropy(c->x, c->target, NULL)) != AG_OK;
        break;
    }
    ag_scope_end();
    return bad;
}

static void reduction_free(reduction *c) {
    ag_release(c->x), ag_release(c->g), ag_release(c->w), ag_release(c->b), ag_release(c->target);
}

/* ---- driver ---------------------------------------------------------------------------------- */
typedef struct report {
    FILE *json;
    double peak;   /* sgemm GFLOP/s */
    double bandwidth, read_bandwidth; /* GB/s at start of a threaded 128 MiB copy, 64 MiB read (for reference) */
    int threads;
    double scale;
} report;

/* Times one workload: flops > 0 is GEMM-bound (held to the sgemm rate), else a row without a limit. */
static void run(report *r, const char *name, bench_fn fn, void *ctx, double flops, double budget) {
    bench_stats st;
    if (bench_measure(fn, ctx, 0.1 * r->scale + 0.02, budget * r->scale, 7, 201, &st)) {
        printf("%-16s FAILED: %s\n", name, ag_last_error());
        return;
    }
    double gflops = flops > 0 ? flops / (st.median * 1e-6) / 1e9 : 0;
    /* A GEMM-bound row is held to the sgemm rate measured right after it, on the same threads:
     * the host's rate moves by up to 1.5x over minutes (shared machines), and a start-up peak
     * taken in one state would misjudge a row timed in the other. */
    double peak = gflops > 0 ? bench_sgemm_rate(0.02, 0.15 * r->scale + 0.05) : 0;
    if (peak <= 0) peak = r->peak;
    char extra[96] = "";
    if (gflops > 0)
        snprintf(extra, sizeof extra, "%7.1f GFLOP/s  %4.0f%% of sgemm (%.0f)", gflops, 100 * gflops / peak, peak);
    printf("%-16s %12.3f %12.3f %12.3f %6d   %s\n", name, st.median, st.p10, st.p90, st.samples, extra);
    fflush(stdout);
    if (r->json) {
        fprintf(r->json,
                "{\"suite\":\"steps\",\"name\":\"%s\",\"backend\":\"%s\",\"threads\":%d,\"median_us\":%.4f,\"p10_us\":%.4f,\"p90_us\":%.4f,"
                "\"samples\":%d,\"calls\":%ld",
                name, bench_backend_name(ag__backend), r->threads, st.median, st.p10,
                st.p90, st.samples, st.calls);
        if (gflops > 0)
            fprintf(r->json, ",\"gflops\":%.2f,\"sgemm_fraction\":%.4f,\"sgemm_gflops\":%.2f", gflops, gflops / peak,
                    peak);
        fprintf(r->json, "}\n");
    }
}

/* Times a memory-bound workload that moves at least `bytes` (read plus written) within a working set
 * of `footprint` bytes (its distinct tensors), and holds its rate to the bandwidth of a stream of
 * `limit` kind over the same working set, measured with the row (bench_measure_limited: rounds of the
 * row's samples, each followed by the stream's; the best of the rounds).  The row's figures are of all
 * its samples. */
static void run_bandwidth(report *r, const char *name, bench_fn fn, void *ctx, double bytes, size_t footprint,
                          bench_traffic limit, double budget) {
    bench_stats st;
    bench_limit lim;
    if (bench_measure_limited(fn, ctx, 0.1 * r->scale + 0.02, budget * r->scale, 2 * BENCH_LIMIT_ROUNDS,
                              BENCH_MAX_SAMPLES, footprint, limit, 0.01 + 0.04 * r->scale, &st, &lim) ||
        lim.best_gbs <= 0) {
        printf("%-16s FAILED: %s\n", name, ag_last_error());
        return;
    }
    const double best = lim.best_gbs, worst = lim.worst_gbs;
    const double gbs = bytes / (st.median * 1e-6) / 1e9;
    const char *bw_name = limit == BENCH_READ ? "read" : "copy";
    printf("%-16s %12.3f %12.3f %12.3f %6d   %7.2f GB/s  %4.0f%% of %s (%.1f GB/s at %.1f MiB)\n", name, st.median,
           st.p10, st.p90, st.samples, gbs, 100 * gbs / best, bw_name, best, (double)footprint / (1 << 20));
    fflush(stdout);
    if (r->json)
        fprintf(r->json,
                "{\"suite\":\"steps\",\"name\":\"%s\",\"backend\":\"%s\",\"threads\":%d,\"median_us\":%.4f,\"p10_us\":%.4f,\"p90_us\":%.4f,"
                "\"samples\":%d,\"calls\":%ld,\"gbytes_per_s\":%.3f,\"bandwidth_fraction\":%.4f,\"bandwidth_limit\":\"%s\","
                "\"bandwidth_gbs\":%.2f,\"bandwidth_min_gbs\":%.2f,\"bandwidth_bytes\":%zu,\"bandwidth_rounds\":%d}\n",
                name, bench_backend_name(ag__backend), r->threads, st.median, st.p10, st.p90, st.samples, st.calls, gbs,
                gbs / best, bw_name, best, worst, footprint, lim.rounds);
}

/* Whether name contains the filter, or one of its comma-separated parts. */
static bool wanted(const bench_opts *o, const char *name) {
    if (!o->filter) return true;
    for (const char *f = o->filter; *f;) {
        size_t len = strcspn(f, ",");
        for (const char *n = name; len && *n; n++)
            if (!strncmp(n, f, len)) return true;
        f += len + (f[len] == ',');
    }
    return false;
}

int main(int argc, char **argv) {
    bench_opts o;
    if (bench_parse(argc, argv, &o, "[--quick] [--reference | --accel] [--json FILE] [name-filter]")) return 2;
    ag__backend = o.backend;
    report r = {NULL, 0, 0, 0, omp_get_max_threads(), o.scale};
    if (o.json && !(r.json = fopen(o.json, "w"))) {
        perror(o.json);
        return 2;
    }
    r.peak = bench_sgemm_peak();
    r.bandwidth = bench_stream_gbs((size_t)128 << 20, BENCH_COPY);
    r.read_bandwidth = bench_stream_gbs((size_t)64 << 20, BENCH_READ);
    printf("agrad bench_steps: %d threads, %s backend, at start: sgemm 1024^3 %.1f GFLOP/s, memory copy %.1f GB/s, "
           "read %.1f GB/s; load average %.2f\n", r.threads, bench_backend_name(o.backend), r.peak, r.bandwidth,
           r.read_bandwidth, bench_loadavg());
    printf("%-16s %12s %12s %12s %6s\n", "workload", "median us", "p10 us", "p90 us", "n");

    if (wanted(&o, "tiny_chain")) {
        chain c = {leaf(8), leaf(8), leaf(8)};
        run(&r, "tiny_chain", tiny_chain, &c, 0, 1.0);
        ag_release(c.x), ag_release(c.w), ag_release(c.b);
    }
    if (wanted(&o, "tanh_sum_4m")) {
        int64_t n = (int64_t)1 << 22;
        chain c = {leaf(n), NULL, NULL};
        /* forward reads x, writes y; sum reads y; backward reads y, dy (broadcast), writes dx */
        /* working set: x, y and dx */
        run_bandwidth(&r, "tanh_sum_4m", tanh_sum, &c, 4.0 * 5 * (double)n, 3 * sizeof(float) * (size_t)n, BENCH_COPY, 1.5);
        ag_release(c.x);
    }
    model m;
    if (wanted(&o, "mlp_784_256_10")) {
        if (mlp_init(&m, 1024, 784, 256, 10, SGD, 0.01)) run(&r, "mlp_784_256_10", model_step, &m, m.flops, 2.0);
        model_free(&m);
    }
    if (wanted(&o, "mlp_784_256_10_optbw")) {
        if (mlp_init(&m, 1024, 784, 256, 10, SGD, 0.01) && in_backward(&m))
            run(&r, "mlp_784_256_10_optbw", model_step, &m, m.flops, 2.0);
        model_free(&m);
    }
    const struct { const char *name; int64_t batch; } infer[] = {{"mlp_infer_b1", 1}, {"mlp_infer_b8", 8}};
    for (int i = 0; i < 2; i++) { /* flops: the two products of the forward */
        if (!wanted(&o, infer[i].name)) continue;
        if (mlp_init(&m, infer[i].batch, 784, 256, 10, SGD, 0.01))
            run(&r, infer[i].name, model_infer, &m, 2.0 * (double)infer[i].batch * (784 * 256 + 256 * 10), 1.0);
        model_free(&m);
    }
    if (wanted(&o, "mlp_bn_dropout")) {
        if (bn_mlp_init(&m, 256)) run(&r, "mlp_bn_dropout", model_step, &m, m.flops, 2.0);
        model_free(&m);
    }
    if (wanted(&o, "mlp_bn_dropout_optbw")) {
        if (bn_mlp_init(&m, 256) && in_backward(&m)) run(&r, "mlp_bn_dropout_optbw", model_step, &m, m.flops, 2.0);
        model_free(&m);
    }
    if (wanted(&o, "mlp_512_b64")) {
        if (mlp_init(&m, 64, 512, 512, 512, SGD, 0.01)) run(&r, "mlp_512_b64", model_step, &m, m.flops, 1.0);
        model_free(&m);
    }
    if (wanted(&o, "mlp_512_b64_optbw")) {
        if (mlp_init(&m, 64, 512, 512, 512, SGD, 0.01) && in_backward(&m))
            run(&r, "mlp_512_b64_optbw", model_step, &m, m.flops, 1.0);
        model_free(&m);
    }
    static const struct { const char *name; int64_t width; bool bf16; } wide[] = {
        {"mlp_512_b256", 512, false}, {"mlp_512_b256_bf16", 512, true},
        {"mlp_1024_b256", 1024, false}, {"mlp_1024_b256_bf16", 1024, true}};
    for (size_t i = 0; i < sizeof wide / sizeof wide[0]; i++) {
        if (!wanted(&o, wide[i].name)) continue;
        if (mlp_init(&m, 256, wide[i].width, wide[i].width, wide[i].width, SGD, 0.01)) {
            m.bf16 = wide[i].bf16;
            run(&r, wide[i].name, model_step, &m, m.flops, 2.0);
        }
        model_free(&m);
    }
    if (wanted(&o, "mlp_4_16_3")) {
        if (mlp_init(&m, 150, 4, 16, 3, ADAM, 1e-3)) run(&r, "mlp_4_16_3", model_step, &m, 0, 1.0);
        model_free(&m);
    }
    for (int bf = 0; bf < 2; bf++) {
        if (!wanted(&o, bf ? "conv2d_cnn_bf16" : "conv2d_cnn")) continue;
        chain c = {ag_requires_grad_(ag_randn(AG_SHAPE(64, 32, 14, 14), AG_F32), true),
                   ag_requires_grad_(ag_randn(AG_SHAPE(64, 32, 3, 3), AG_F32), true), leaf(64)};
        /* forward, dx and dw: three products of 2·N·O·H·W·C·9 flops, a direct convolution's; the float32
         * one runs oneDNN's Winograd kernels (fewer products), so its "fraction of sgemm" can pass 100% */
        run(&r, bf ? "conv2d_cnn_bf16" : "conv2d_cnn", bf ? conv_step_bf16 : conv_step, &c,
            3 * 2.0 * 64 * 64 * 14 * 14 * 32 * 9, 2.0);
        ag_release(c.x), ag_release(c.w), ag_release(c.b);
    }
    if (wanted(&o, "lstm_64x32x256")) {
        recurrent l = {ag_nn_lstm(256, 256, 1, true, false, 0, false),
                       ag_requires_grad_(ag_randn(AG_SHAPE(64, 32, 256), AG_F32), true)};
        /* forward: x·W_ihᵀ and h·W_hhᵀ, 2·T·B·256·1024 flops each; backward twice that */
        if (l.layer && l.x) run(&r, "lstm_64x32x256", layer_step, &l, 3 * 2 * 2.0 * 64 * 32 * 256 * 1024, 3.0);
        ag_module_free(l.layer);
        ag_release(l.x);
    }
    if (wanted(&o, "transformer_128x8x256")) {
        recurrent l = {ag_nn_transformer_encoder_layer(256, 4, 1024, 0, "relu", 1e-5, false, false),
                       ag_requires_grad_(ag_randn(AG_SHAPE(128, 8, 256), AG_F32), true)};
        /* forward: the q, k, v and out projections 4·2·N·E², the feedforward 2·2·N·E·F (N = T·B), q·kᵀ
         * and P·v 2·2·B·T²·E; backward twice that */
        double fwd = 4 * 2.0 * 1024 * 256 * 256 + 2 * 2.0 * 1024 * 256 * 1024 + 2 * 2.0 * 8 * 128 * 128 * 256;
        if (l.layer && l.x) run(&r, "transformer_128x8x256", layer_step, &l, 3 * fwd, 3.0);
        ag_module_free(l.layer);
        ag_release(l.x);
    }
    if (wanted(&o, "index_add_1m")) {
        indexed c = {leaf_of(AG_SHAPE(4096, 256)), leaf_of(AG_SHAPE(4096, 256)), hashed_index(AG_SHAPE(4096), 4096)};
        run(&r, "index_add_1m", index_add_step, &c, 0, 1.0);
        ag_release(c.x), ag_release(c.src), ag_release(c.index);
    }
    if (wanted(&o, "scatter_reduce_1m")) {
        indexed c = {leaf_of(AG_SHAPE(1024, 1024)), leaf_of(AG_SHAPE(1024, 1024)), hashed_index(AG_SHAPE(1024, 1024), 1024)};
        run(&r, "scatter_reduce_1m", scatter_reduce_step, &c, 0, 1.0);
        ag_release(c.x), ag_release(c.src), ag_release(c.index);
    }
    if (wanted(&o, "einsum_bmm")) {
        indexed c = {leaf_of(AG_SHAPE(64, 128, 128)), leaf_of(AG_SHAPE(64, 128, 128)), NULL};
        run(&r, "einsum_bmm", einsum_step, &c, 3 * 2.0 * 64 * 128 * 128 * 128, 1.0);
        ag_release(c.x), ag_release(c.src);
    }
    if (wanted(&o, "sort_1k")) {
        indexed c = {leaf_of(AG_SHAPE(1024, 1024)), ag_randn(AG_SHAPE(1024, 1024), AG_F32), NULL};
        run(&r, "sort_1k", sort_step, &c, 0, 1.0);
        ag_release(c.x), ag_release(c.src);
    }
    if (wanted(&o, "topk_1k")) {
        indexed c = {leaf_of(AG_SHAPE(1024, 1024)), ag_randn(AG_SHAPE(1024, 32), AG_F32), NULL};
        run(&r, "topk_1k", topk_step, &c, 0, 1.0);
        ag_release(c.x), ag_release(c.src);
    }
    if (wanted(&o, "cumsum_1k")) {
        indexed c = {leaf_of(AG_SHAPE(1024, 1024)), ag_randn(AG_SHAPE(1024, 1024), AG_F32), NULL};
        run(&r, "cumsum_1k", cumsum_step, &c, 0, 1.0);
        ag_release(c.x), ag_release(c.src);
    }
    if (wanted(&o, "cdist_1k")) {
        indexed c = {leaf_of(AG_SHAPE(1024, 64)), leaf_of(AG_SHAPE(1024, 64)), NULL};
        run(&r, "cdist_1k", cdist_step, &c, 3 * 2.0 * 1024 * 1024 * 64, 1.0);
        ag_release(c.x), ag_release(c.src);
    }
    for (int k = 0; k < 4; k++) {
        static const char *const names[] = {"rand_1k", "randn_1k", "rand_4k", "randn_4k"};
        const int64_t side = k < 2 ? 1000 : 4096;
        fill f = {AG_SHAPE(side, side), k % 2 == 1};
        if (wanted(&o, names[k]))
            run_bandwidth(&r, names[k], fill_step, &f, 4.0 * (double)(side * side), sizeof(float) * (size_t)(side * side),
                          BENCH_COPY, 1.0);
    }
    if (wanted(&o, "cnn_fashion")) {
        if (cnn_init(&m, 128)) run(&r, "cnn_fashion", model_step, &m, m.flops, 3.0);
        model_free(&m);
    }
    /* reductions: bytes are what the kernels must move at least (4 per float32 read or written), footprint
     * the bytes of the distinct tensors they touch (the working set the limit streams); those that read N
     * bytes and write few are held to the read bandwidth, the others to the copy bandwidth */
    const struct {
        const char *name;
        red_kind kind;
        ag_shape shape;
        double bytes;
        size_t footprint;
    } reds[] = {
        {"sum_d0_4096", RED_SUM0, AG_SHAPE(4096, 4096), 4.0 * 4096 * 4097, 4 * 4096 * 4097},
        {"sum_d1_4096", RED_SUM1, AG_SHAPE(4096, 4096), 4.0 * 4096 * 4097, 4 * 4096 * 4097},
        {"sum_mid_64x1k", RED_SUM0, AG_SHAPE(64, 1024, 64), 4.0 * 64 * 64 * 1025, 4 * 64 * 64 * 1025},
        /* forward reads x, writes y; backward reads y, g, writes dx (x, y, g, dx) */
        {"softmax_d0_1k", RED_SOFTMAX0, AG_SHAPE(1000, 1000), 4.0 * 5e6, 4 * 4000000},
        {"softmax_d1_1k", RED_SOFTMAX1, AG_SHAPE(1000, 1000), 4.0 * 5e6, 4 * 4000000},
        /* forward reads x, writes y; backward reads x (or the normalised x), g, writes dx */
        {"layer_norm_512", RED_LAYER_NORM, AG_SHAPE(512, 1024), 4.0 * 5 * 512 * 1024, 4 * 4 * 512 * 1024},
        /* forward reads x; backward writes dx (the softmax recomputed or read back: one more read); x, dx */
        {"xent_4096x1000", RED_XENT, AG_SHAPE(4096, 1000), 4.0 * 3 * 4096 * 1000, 4 * 2 * 4096 * 1000},
        /* argmax reads x, writes int64 indices */
        {"argmax_d0_4096", RED_ARGMAX0, AG_SHAPE(4096, 4096), 4.0 * 4096 * 4096 + 8.0 * 4096, 4 * 4096 * 4096 + 8 * 4096},
        {"argmax_d1_4096", RED_ARGMAX1, AG_SHAPE(4096, 4096), 4.0 * 4096 * 4096 + 8.0 * 4096, 4 * 4096 * 4096 + 8 * 4096},
        /* forward reads x; backward reads x, writes dx (x, dx) */
        {"prod_d0_1k", RED_PROD0, AG_SHAPE(1000, 1000), 4.0 * 3e6, 4 * 2000000},
        {"prod_d1_1k", RED_PROD1, AG_SHAPE(1000, 1000), 4.0 * 3e6, 4 * 2000000},
    };
    for (size_t k = 0; k < sizeof reds / sizeof reds[0]; k++) {
        if (!wanted(&o, reds[k].name)) continue;
        reduction c = {reds[k].kind, NULL, NULL, NULL, NULL, NULL};
        bool grad = reds[k].kind >= RED_SOFTMAX0;
        c.x = grad ? leaf_of(reds[k].shape) : ag_randn(reds[k].shape, AG_F32);
        if (reds[k].kind == RED_SOFTMAX0 || reds[k].kind == RED_SOFTMAX1 || reds[k].kind == RED_LAYER_NORM)
            c.g = ag_randn(reds[k].shape, AG_F32);
        if (reds[k].kind == RED_PROD0 || reds[k].kind == RED_PROD1) { /* factors near 1: a finite product */
            ag_release(c.x);
            c.x = ag_requires_grad_(ag_add_scalar_(ag_mul_scalar_(ag_randn(reds[k].shape, AG_F32), 0.01), 1), true);
            c.g = ag_randn(AG_SHAPE(1000), AG_F32);
        }
        if (reds[k].kind == RED_LAYER_NORM) c.w = leaf(1024), c.b = leaf(1024);
        if (reds[k].kind == RED_XENT) c.target = hashed_index(AG_SHAPE(4096), 1000);
        const bool reads = reds[k].kind == RED_SUM0 || reds[k].kind == RED_SUM1 || reds[k].kind == RED_ARGMAX0 ||
                           reds[k].kind == RED_ARGMAX1;
        run_bandwidth(&r, reds[k].name, reduction_step, &c, reds[k].bytes, reds[k].footprint,
                      reads ? BENCH_READ : BENCH_COPY, 1.0);
        reduction_free(&c);
    }
    double rss = bench_peak_rss_mib();
    printf("peak RSS %.1f MiB, live tensors at exit %ld\n", rss, ag_live_tensors());
    if (r.json) {
        fprintf(r.json, "{\"suite\":\"steps\",\"name\":\"_process\",\"threads\":%d,\"sgemm_peak_gflops\":%.2f,"
                        "\"copy_bandwidth_gbs\":%.2f,\"read_bandwidth_gbs\":%.2f,\"peak_rss_mib\":%.1f,\"loadavg\":%.2f}\n",
                r.threads, r.peak, r.bandwidth, r.read_bandwidth, rss, bench_loadavg());
        fclose(r.json);
    }
    return ag_live_tensors() != 0;
}

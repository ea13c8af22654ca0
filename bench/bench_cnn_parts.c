/*
 * bench_cnn_parts.c - where the time of the cnn_fashion training step goes
 * (bench_steps.c: the CNN of examples/fashion_cnn.c, batch 128, Adam): each
 * layer's forward and backward timed on its own at the step's shapes, and the
 * optimizer's step and zero_grad.  bench/cnn_parts.py times the same parts in
 * PyTorch; docs/benchmarks.md ("Where a CNN step's time goes") has the table.
 *
 * A part's forward is the op called with recording on (as in training); its
 * backward is the time of forward + ag_backward_ex(y, g) less the forward
 * (bench_part_measure in bench_util.h), so it includes the adjoint's allocations,
 * the accumulation into .grad and a copy of g (ag_backward_ex copies its seed;
 * PyTorch's y.backward(g) does not).  The bn+relu parts are ag_batch_norm_relu, the one op
 * nn.Sequential runs for the step's BatchNorm2d then ReLU (the bn and relu parts are them apart).
 * Usage: bench_cnn_parts [--quick] [--json FILE] [name-filter]
 */
#include <omp.h>
#include "agrad/agrad.h"
#include "bench_util.h"

#define BATCH 128

typedef enum kind { CONV, BN, BN_RELU, RELU, POOL, DROPOUT, LINEAR, XENT } kind;

typedef struct part {
    const char *name;
    kind k;
    int64_t shape[4]; /* the input's */
    int64_t out;      /* conv: output channels; linear: output features */
    bool x_grad;      /* the input requires grad (false for the first layer's images) */
    /* filled by part_init */
    ag_tensor *x, *w, *b, *rm, *rv, *g, *target;
} part;

static ag_tensor *leaf(ag_shape s) { return ag_requires_grad_(ag_randn(s, AG_F32), true); }

static ag_tensor *part_forward(void *ctx) {
    part *p = ctx;
    switch (p->k) {
    case CONV: return ag_conv2d(p->x, p->w, p->b, &(ag_conv_opts){.padding = {1, 1}});
    case BN: return ag_batch_norm(p->x, p->rm, p->rv, p->w, p->b, true, 0.1, 1e-5);
    case BN_RELU: return ag_batch_norm_relu(p->x, p->rm, p->rv, p->w, p->b, true, 0.1, 1e-5);
    case RELU: return ag_relu(p->x);
    case POOL: return ag_max_pool2d(p->x, &(ag_pool_opts){.kernel = {2, 2}}, NULL);
    case DROPOUT: return ag_dropout(p->x, 0.25, true);
    case LINEAR: return ag_linear(p->x, p->w, p->b);
    case XENT: return ag_cross_entropy(p->x, p->target, NULL);
    }
    return NULL;
}

static bool part_init(part *p) {
    const int64_t *s = p->shape;
    p->x = p->k == LINEAR || p->k == DROPOUT || p->k == XENT ? ag_randn(AG_SHAPE(s[0], s[1]), AG_F32)
                                                             : ag_randn(AG_SHAPE(s[0], s[1], s[2], s[3]), AG_F32);
    if (p->x_grad) ag_requires_grad_(p->x, true);
    if (p->k == CONV) {
        p->w = leaf(AG_SHAPE(p->out, s[1], 3, 3));
        p->b = leaf(AG_SHAPE(p->out));
    } else if (p->k == BN || p->k == BN_RELU) {
        p->w = leaf(AG_SHAPE(s[1]));
        p->b = leaf(AG_SHAPE(s[1]));
        p->rm = ag_zeros(AG_SHAPE(s[1]), AG_F32);
        p->rv = ag_ones(AG_SHAPE(s[1]), AG_F32);
    } else if (p->k == LINEAR) {
        p->w = leaf(AG_SHAPE(p->out, s[1]));
        p->b = leaf(AG_SHAPE(p->out));
    } else if (p->k == XENT) {
        p->target = ag_zeros(AG_SHAPE(s[0]), AG_I64);
    }
    ag_tensor *y = part_forward(p);
    if (!y) return false;
    p->g = p->k == XENT ? NULL : ag_randn(ag_shape_of(y), AG_F32);
    ag_release(y);
    return true;
}

static void part_free(part *p) {
    ag_tensor *t[] = {p->x, p->w, p->b, p->rm, p->rv, p->g, p->target};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) ag_release(t[i]);
}

static void zero_grads(void *ctx) {
    part *p = ctx;
    ag_tensor *t[] = {p->x, p->w, p->b};
    for (size_t i = 0; i < 3; i++)
        if (t[i] && ag_requires_grad(t[i])) ag_zero_grad(t[i]);
}

/* ---- the optimizer over the CNN's parameters ------------------------------------------------------- */
typedef struct optim {
    ag_tensor *params[10];
    ag_optimizer *opt;
} optim;

static bool optim_init(optim *o) {
    const ag_shape s[10] = {AG_SHAPE(32, 1, 3, 3), AG_SHAPE(32), AG_SHAPE(32), AG_SHAPE(32), AG_SHAPE(64, 32, 3, 3),
                            AG_SHAPE(64),          AG_SHAPE(64), AG_SHAPE(64), AG_SHAPE(10, 3136), AG_SHAPE(10)};
    for (int i = 0; i < 10; i++) {
        o->params[i] = leaf(s[i]);
        ag_scope_begin(); /* a gradient for every parameter */
        ag_tensor *g = ag_randn(s[i], AG_F32);
        const bool ok = o->params[i] && g && ag_backward_ex(ag_mul(o->params[i], g), g, false) == AG_OK;
        ag_scope_end();
        if (!ok) return false;
    }
    ag_adam_options ao = ag_adam_defaults();
    ao.lr = 1e-3;
    o->opt = ag_adam_new(o->params, 10, &ao);
    return o->opt != NULL;
}

static int optim_step(void *ctx) { return ag_optimizer_step(((optim *)ctx)->opt) != AG_OK; }

int main(int argc, char **argv) {
    bench_opts o;
    if (bench_parse(argc, argv, &o, "[--quick] [--json FILE] [name-filter]")) return 2;
    ag_manual_seed(42);
    part parts[] = {
        {.name = "conv1 1->32 28x28", .k = CONV, .shape = {BATCH, 1, 28, 28}, .out = 32, .x_grad = false},
        {.name = "bn1 32x28x28", .k = BN, .shape = {BATCH, 32, 28, 28}, .out = 0, .x_grad = true},
        {.name = "bn1+relu1 32x28x28", .k = BN_RELU, .shape = {BATCH, 32, 28, 28}, .out = 0, .x_grad = true},
        {.name = "relu1 32x28x28", .k = RELU, .shape = {BATCH, 32, 28, 28}, .out = 0, .x_grad = true},
        {.name = "pool1 32x28x28", .k = POOL, .shape = {BATCH, 32, 28, 28}, .out = 0, .x_grad = true},
        {.name = "conv2 32->64 14x14", .k = CONV, .shape = {BATCH, 32, 14, 14}, .out = 64, .x_grad = true},
        {.name = "bn2 64x14x14", .k = BN, .shape = {BATCH, 64, 14, 14}, .out = 0, .x_grad = true},
        {.name = "bn2+relu2 64x14x14", .k = BN_RELU, .shape = {BATCH, 64, 14, 14}, .out = 0, .x_grad = true},
        {.name = "relu2 64x14x14", .k = RELU, .shape = {BATCH, 64, 14, 14}, .out = 0, .x_grad = true},
        {.name = "pool2 64x14x14", .k = POOL, .shape = {BATCH, 64, 14, 14}, .out = 0, .x_grad = true},
        {.name = "dropout 3136", .k = DROPOUT, .shape = {BATCH, 3136}, .out = 0, .x_grad = true},
        {.name = "linear 3136->10", .k = LINEAR, .shape = {BATCH, 3136}, .out = 10, .x_grad = true},
        {.name = "cross_entropy 10", .k = XENT, .shape = {BATCH, 10}, .out = 0, .x_grad = true},
    };
    printf("cnn_fashion step by part, batch %d, %d threads, %s clock, load average %.2f; µs per call\n", BATCH,
           omp_get_max_threads(), getenv("BENCH_CLOCK") ? getenv("BENCH_CLOCK") : "wall", bench_loadavg());
    printf("%-22s %-9s %10s %10s %10s\n", "part", "mode", "median", "p10", "p90");
    const double budget = 1.0 * o.scale;
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        part *p = &parts[i];
        if (o.filter && !strstr(p->name, o.filter)) continue;
        bench_stats f, b;
        const bool ready = part_init(p);
        bench_part_fn fn = {part_forward, zero_grads, p, p->g};
        if (bench_part_try(ready, &fn, p->name, budget, &f, &b)) return 1;
        bench_part_row(&o, "cnn_parts", 22, p->name, "forward", &f);
        bench_part_row(&o, "cnn_parts", 22, p->name, "backward", &b);
        part_free(p);
    }
    if (!o.filter || strstr("adam step", o.filter)) {
        optim opt;
        bench_stats s;
        if (!optim_init(&opt) || bench_measure(optim_step, &opt, 0.1, budget, 5, 101, &s)) {
            fprintf(stderr, "adam failed: %s\n", ag_last_error());
            return 1;
        }
        bench_part_row(&o, "cnn_parts", 22, "adam step", "step", &s);
        ag_optimizer_free(opt.opt);
        for (int i = 0; i < 10; i++) ag_release(opt.params[i]);
    }
    return 0;
}

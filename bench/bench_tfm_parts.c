/*
 * bench_tfm_parts.c - where the time of the transformer_128x8x256 step goes
 * (bench_steps.c: nn.TransformerEncoderLayer(256, 4, 1024, dropout=0) on x [128, 8, 256],
 * sequence first): each part of the layer timed on its own at the step's shapes, as
 * nn/attention.c and nn/transformer.c call it, and the whole layer.  docs/benchmarks.md
 * ("Where a transformer step's time goes") has the table.
 *
 * A part's forward is its ops called with recording on; its backward is the time of
 * forward + ag_backward_ex(y, g) less the forward (bench_part_measure in bench_util.h: the
 * adjoint's allocations and the accumulation into .grad included).  GEMM parts print their rate against the 1024³
 * sgemm rate of the same thread count.
 * Usage: bench_tfm_parts [--quick] [name-filter]
 */
#include <omp.h>
#include "agrad/agrad.h"
#include "bench_util.h"

#define T 128
#define B 8
#define E 256
#define H 4
#define F 1024

typedef struct part part;
struct part {
    const char *name;
    ag_tensor *(*forward)(part *p);
    double flops; /* of the forward's GEMMs (the backward's are twice that) */
    ag_tensor *x, *w, *b, *g, *q;
    ag_module *layer;
};

static ag_tensor *leaf(ag_shape s) { return ag_requires_grad_(ag_randn(s, AG_F32), true); }

/* [T, B, 3E] -> q, k or v as [B, H, T, D] views (the split of nn/attention.c) */
static ag_tensor *head_view(ag_tensor *qkv, int which) {
    const int perm[4] = {1, 2, 0, 3};
    return ag_permute(ag_reshape(ag_narrow(qkv, 2, which * E, E), AG_SHAPE(T, B, H, E / H)), perm);
}

/* the in-projection: x [T, B, E] -> [T, B, 3E] */
static ag_tensor *in_proj(part *p) { return ag_linear(p->x, p->w, p->b); }

/* q·kᵀ, softmax, P·v on the heads read in place from qkv [T, B, 3E] */
static ag_tensor *attention(part *p) {
    return ag_scaled_dot_product_attention(head_view(p->x, 0), head_view(p->x, 1), head_view(p->x, 2), NULL, 0, false);
}

/* the same on dense heads: q, k, v the thirds of x [B, 3, H, T, D] (the layout an in-projection
 * writing dense heads would give) */
static ag_tensor *attention_dense(part *p) {
    return ag_scaled_dot_product_attention(ag_select(p->x, 1, 0), ag_select(p->x, 1, 1), ag_select(p->x, 1, 2), NULL, 0,
                                           false);
}

/* the same on heads read from a batch-major projection x [B, T, 3E] (rows 3E apart rather than
 * the sequence-first B·3E) */
static ag_tensor *attention_batch_major(part *p) {
    const int perm[4] = {0, 2, 1, 3};
    ag_tensor *h[3];
    for (int i = 0; i < 3; i++)
        h[i] = ag_permute(ag_reshape(ag_narrow(p->x, 2, i * E, E), AG_SHAPE(B, T, H, E / H)), perm);
    return ag_scaled_dot_product_attention(h[0], h[1], h[2], NULL, 0, false);
}

/* the in-projection and the attention on x [T, B, E] as nn/attention.c does them (the heads
 * read in place from [T, B, 3E]), or with x first copied into batch order [B, T, E] so that the
 * heads are read from [B, T, 3E], rows 3E apart (one 1 MiB copy each way) */
static ag_tensor *in_proj_sdpa(part *p) { return attention(&(part){.x = ag_linear(p->x, p->w, p->b)}); }
static ag_tensor *in_proj_sdpa_batch_major(part *p) {
    ag_tensor *xb = ag_contiguous(ag_transpose(p->x, 0, 1));
    return attention_batch_major(&(part){.x = ag_linear(xb, p->w, p->b)});
}

/* attention then the heads merged into [T, B, E] (a copy), as nn/attention.c: the backward's dy
 * is read through the merge's strides; on the heads read in place or on dense heads */
static ag_tensor *merged(ag_tensor *o) {
    const int perm[4] = {2, 0, 1, 3};
    return ag_reshape(ag_permute(o, perm), AG_SHAPE(T, B, E));
}
static ag_tensor *attention_merge(part *p) { return merged(attention(p)); }
static ag_tensor *attention_dense_merge(part *p) { return merged(attention_dense(p)); }

/* the heads merged: o [B, H, T, D] -> [T, B, E] (a copy) and the out-projection */
static ag_tensor *merge_out_proj(part *p) {
    const int perm[4] = {2, 0, 1, 3};
    return ag_linear(ag_reshape(ag_permute(p->x, perm), AG_SHAPE(T, B, E)), p->w, p->b);
}

static ag_tensor *merge_only(part *p) {
    const int perm[4] = {2, 0, 1, 3};
    return ag_reshape(ag_permute(p->x, perm), AG_SHAPE(T, B, E));
}

static ag_tensor *linear_part(part *p) { return ag_linear(p->x, p->w, p->b); }
static ag_tensor *relu_part(part *p) { return ag_relu(p->x); }
static ag_tensor *add_norm(part *p) { return ag_layer_norm(ag_add(p->x, p->q), AG_SHAPE(E), p->w, p->b, 1e-5); }
static ag_tensor *layer(part *p) { return ag_module_forward(p->layer, p->x); }

static bool part_init(part *p) {
    if (p->forward == in_proj) {
        p->x = leaf(AG_SHAPE(T, B, E)), p->w = leaf(AG_SHAPE(3 * E, E)), p->b = leaf(AG_SHAPE(3 * E));
        p->flops = 2.0 * T * B * E * 3 * E;
    } else if (p->forward == attention) {
        p->x = leaf(AG_SHAPE(T, B, 3 * E));
        p->flops = 2 * 2.0 * B * H * T * T * (E / H);
    } else if (p->forward == attention_merge) {
        p->x = leaf(AG_SHAPE(T, B, 3 * E));
        p->flops = 2 * 2.0 * B * H * T * T * (E / H);
    } else if (p->forward == in_proj_sdpa || p->forward == in_proj_sdpa_batch_major) {
        p->x = leaf(AG_SHAPE(T, B, E)), p->w = leaf(AG_SHAPE(3 * E, E)), p->b = leaf(AG_SHAPE(3 * E));
        p->flops = 2.0 * T * B * E * 3 * E + 2 * 2.0 * B * H * T * T * (E / H);
    } else if (p->forward == attention_batch_major) {
        p->x = leaf(AG_SHAPE(B, T, 3 * E));
        p->flops = 2 * 2.0 * B * H * T * T * (E / H);
    } else if (p->forward == attention_dense || p->forward == attention_dense_merge) {
        p->x = leaf(AG_SHAPE(B, 3, H, T, E / H));
        p->flops = 2 * 2.0 * B * H * T * T * (E / H);
    } else if (p->forward == merge_out_proj || p->forward == merge_only) {
        p->x = leaf(AG_SHAPE(B, H, T, E / H)), p->w = leaf(AG_SHAPE(E, E)), p->b = leaf(AG_SHAPE(E));
        p->flops = p->forward == merge_only ? 0 : 2.0 * T * B * E * E;
    } else if (p->forward == linear_part) {
        int64_t in = p->name[6] == '1' ? E : F, out = p->name[6] == '1' ? F : E;
        p->x = leaf(AG_SHAPE(T, B, in)), p->w = leaf(AG_SHAPE(out, in)), p->b = leaf(AG_SHAPE(out));
        p->flops = 2.0 * T * B * in * out;
    } else if (p->forward == relu_part) {
        p->x = leaf(AG_SHAPE(T, B, F));
    } else if (p->forward == add_norm) {
        p->x = leaf(AG_SHAPE(T, B, E)), p->q = leaf(AG_SHAPE(T, B, E)), p->w = leaf(AG_SHAPE(E)), p->b = leaf(AG_SHAPE(E));
    } else {
        p->layer = ag_nn_transformer_encoder_layer(E, H, F, 0, "relu", 1e-5, false, false);
        p->x = leaf(AG_SHAPE(T, B, E));
        p->flops = 4 * 2.0 * T * B * E * E + 2 * 2.0 * T * B * E * F + 2 * 2.0 * B * T * T * E;
    }
    ag_tensor *y = p->forward(p);
    if (!y) return false;
    p->g = ag_randn(ag_shape_of(y), AG_F32);
    ag_release(y);
    return p->g != NULL;
}

static void zero_grads(void *ctx) {
    part *p = ctx;
    ag_tensor *t[] = {p->x, p->w, p->b, p->q};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (t[i] && ag_requires_grad(t[i])) ag_zero_grad(t[i]);
    if (p->layer) ag_module_zero_grad(p->layer);
}

static ag_tensor *part_forward(void *ctx) {
    part *p = ctx;
    return p->forward(p);
}

static void part_free(part *p) {
    ag_tensor *t[] = {p->x, p->w, p->b, p->g, p->q};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) ag_release(t[i]);
    ag_module_free(p->layer);
}

static void row(const char *name, const char *mode, double us, double flops, double peak) {
    printf("%-30s %-9s %10.1f", name, mode, us);
    if (flops > 0 && us > 0) printf(" %8.1f GFLOP/s %4.0f%%", flops / us * 1e-3, 100 * flops / us * 1e-3 / peak);
    printf("\n");
}

int main(int argc, char **argv) {
    bench_opts o;
    if (bench_parse(argc, argv, &o, "[--quick] [name-filter]")) return 2;
    ag_manual_seed(42);
    part parts[] = {
        {.name = "in_proj 256->768 (qkv)", .forward = in_proj},
        {.name = "sdpa 8x4 heads 128x64", .forward = attention},
        {.name = "sdpa dense 8x4 heads 128x64", .forward = attention_dense},
        {.name = "sdpa bmajor 8x4 heads 128x64", .forward = attention_batch_major},
        {.name = "in_proj + sdpa", .forward = in_proj_sdpa},
        {.name = "in_proj + sdpa, x batch-major", .forward = in_proj_sdpa_batch_major},
        {.name = "sdpa + merge 8x4 heads 128x64", .forward = attention_merge},
        {.name = "sdpa dense + merge", .forward = attention_dense_merge},
        {.name = "head merge (copy)", .forward = merge_only},
        {.name = "head merge + out_proj", .forward = merge_out_proj},
        {.name = "linear1 256->1024", .forward = linear_part},
        {.name = "relu 1024", .forward = relu_part},
        {.name = "linear2 1024->256", .forward = linear_part},
        {.name = "add + layer_norm 256", .forward = add_norm},
        {.name = "whole layer", .forward = layer},
    };
    const double peak = bench_sgemm_peak();
    printf("transformer_128x8x256 step by part, %d threads, %s clock, load average %.2f, sgemm %.1f GFLOP/s; "
           "µs per call (median)\n", omp_get_max_threads(), getenv("BENCH_CLOCK") ? getenv("BENCH_CLOCK") : "wall",
           bench_loadavg(), peak);
    const double budget = 1.0 * o.scale;
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        part *p = &parts[i];
        if (o.filter && !strstr(p->name, o.filter)) continue;
        bench_stats f, b;
        const bool ready = part_init(p);
        bench_part_fn fn = {part_forward, zero_grads, p, p->g};
        if (bench_part_try(ready, &fn, p->name, budget, &f, &b)) return 1;
        row(p->name, "forward", f.median, p->flops, peak);
        row(p->name, "backward", b.median, 2 * p->flops, peak);
        part_free(p);
    }
    return 0;
}

/*
 * bench_index_parts.c - the index and scatter ops one by one, forward and backward, along
 * dim 0 and dim 1 of [1024, 1024] float32 operands: scatter_reduce for every reduction with
 * and without include_self, scatter, scatter_add, gather, index_select, index_add, put with
 * accumulate (PyTorch's index_put_ with accumulate on a flat index), and embedding.
 * bench/index_parts.py times the same calls in PyTorch; docs/benchmarks.md ("Session 9:
 * scatter and index ops") has the table.
 *
 * Index values are a multiply-shift hash of the element's row-major number k,
 * ((k·2654435761) mod 2^32)·m >> 32 in [0, m), so targets repeat as a random map's would;
 * scatter's index is a permutation of every lane ((p·2654435761 + 7c) mod m, p the place
 * along dim, c the lane's number), its targets distinct as scatter needs.  A part's backward
 * is forward + ag_backward_ex(y, g) less the forward (bench_part_measure), g a fixed randn.
 * Usage: bench_index_parts [--quick] [--json FILE] [name-filter]
 */
#include <omp.h>
#include "agrad/agrad.h"
#include "bench_util.h"

#define N 1024

typedef enum kind { SREDUCE, SCATTER, SCATTER_ADD, GATHER, INDEX_SELECT, INDEX_ADD, PUT, EMBEDDING } kind;

typedef struct part {
    kind k;
    int dim;
    ag_scatter_reduction red;
    bool self;
    char name[48];
    ag_tensor *x, *src, *index, *g;
} part;

/* ((k·2654435761) mod 2^32)·m >> 32 for k < numel(shape). */
static ag_tensor *hashed(ag_shape shape, int64_t m) {
    ag_tensor *t = ag_empty(shape, AG_I64);
    int64_t *v = t ? ag_data(t) : NULL, n = ag_numel(t);
    for (int64_t k = 0; v && k < n; k++) v[k] = (int64_t)((((uint64_t)k * 2654435761u) % 4294967296u * (uint64_t)m) >> 32);
    return t;
}

/* [N, N], each lane along dim a permutation of [0, N): (p·2654435761 + 7c) mod N. */
static ag_tensor *lane_perm(int dim) {
    ag_tensor *t = ag_empty(AG_SHAPE(N, N), AG_I64);
    int64_t *v = t ? ag_data(t) : NULL;
    for (int64_t i = 0; v && i < N; i++)
        for (int64_t j = 0; j < N; j++) {
            const uint64_t p = (uint64_t)(dim == 0 ? i : j), c = (uint64_t)(dim == 0 ? j : i);
            v[i * N + j] = (int64_t)((p * 2654435761u + 7 * c) % N);
        }
    return t;
}

static ag_tensor *leaf(ag_shape s) { return ag_requires_grad_(ag_randn(s, AG_F32), true); }

static ag_tensor *part_forward(void *ctx) {
    part *p = ctx;
    switch (p->k) {
    case SREDUCE: return ag_scatter_reduce(p->x, p->dim, p->index, p->src, p->red, p->self);
    case SCATTER: return ag_scatter(p->x, p->dim, p->index, p->src);
    case SCATTER_ADD: return ag_scatter_add(p->x, p->dim, p->index, p->src);
    case GATHER: return ag_gather(p->x, p->dim, p->index);
    case INDEX_SELECT: return ag_index_select(p->x, p->dim, p->index);
    case INDEX_ADD: return ag_index_add(p->x, p->dim, p->index, p->src, 1.0);
    case PUT: return ag_put(p->x, p->index, p->src, true);
    case EMBEDDING: return ag_embedding(p->x, p->index, AG_NO_PADDING_IDX);
    }
    return NULL;
}

static bool part_init(part *p) {
    switch (p->k) {
    case SREDUCE:
    case SCATTER_ADD:
    case GATHER:
        p->index = hashed(AG_SHAPE(N, N), N);
        break;
    case SCATTER: p->index = lane_perm(p->dim); break;
    case INDEX_SELECT:
    case INDEX_ADD: p->index = hashed(AG_SHAPE(N), N); break;
    case PUT: p->index = hashed(AG_SHAPE(N * N), N * N); break;
    case EMBEDDING: p->index = hashed(AG_SHAPE(4096), 8192); break;
    }
    p->x = p->k == EMBEDDING ? leaf(AG_SHAPE(8192, 256)) : leaf(AG_SHAPE(N, N));
    if (p->k == SREDUCE || p->k == SCATTER || p->k == SCATTER_ADD || p->k == INDEX_ADD || p->k == PUT)
        p->src = p->k == PUT ? leaf(AG_SHAPE(N * N)) : leaf(AG_SHAPE(N, N));
    ag_tensor *y = part_forward(p);
    if (!y) return false;
    p->g = ag_randn(ag_shape_of(y), AG_F32);
    ag_release(y);
    return p->g != NULL;
}

static void part_free(part *p) {
    ag_release(p->x), ag_release(p->src), ag_release(p->index), ag_release(p->g);
}

static void zero_grads(void *ctx) {
    part *p = ctx;
    ag_zero_grad(p->x);
    if (p->src) ag_zero_grad(p->src);
}

int main(int argc, char **argv) {
    bench_opts o;
    if (bench_parse(argc, argv, &o, "[--quick] [--json FILE] [name-filter]")) return 2;
    ag_manual_seed(42);
    static const char *reds[] = {"sum", "prod", "mean", "amax", "amin"};
    static const char *names[] = {"", "scatter", "scatter_add", "gather", "index_select", "index_add", "put_acc",
                                  "embedding"};
    part parts[64];
    int np = 0;
    for (int dim = 0; dim < 2; dim++)
        for (int r = 0; r < 5; r++)
            for (int self = 1; self >= 0; self--) {
                part *p = &parts[np++];
                *p = (part){.k = SREDUCE, .dim = dim, .red = (ag_scatter_reduction)r, .self = self};
                snprintf(p->name, sizeof p->name, "scatter_reduce %s%s d%d", reds[r], self ? "" : " noself", dim);
            }
    for (int k = SCATTER; k <= EMBEDDING; k++)
        for (int dim = 0; dim < (k == PUT || k == EMBEDDING ? 1 : 2); dim++) {
            part *p = &parts[np++];
            *p = (part){.k = (kind)k, .dim = dim};
            if (k == PUT || k == EMBEDDING) snprintf(p->name, sizeof p->name, "%s", names[k]);
            else snprintf(p->name, sizeof p->name, "%s d%d", names[k], dim);
        }
    printf("index and scatter ops, [%d, %d] float32, %d threads, %s clock, load average %.2f; µs per call\n", N, N,
           omp_get_max_threads(), getenv("BENCH_CLOCK") ? getenv("BENCH_CLOCK") : "wall", bench_loadavg());
    printf("%-30s %-9s %10s %10s %10s\n", "part", "mode", "median", "p10", "p90");
    const double budget = 1.0 * o.scale;
    for (int i = 0; i < np; i++) {
        part *p = &parts[i];
        if (o.filter && !strstr(p->name, o.filter)) continue;
        bench_stats f, b;
        const bool ready = part_init(p);
        bench_part_fn fn = {part_forward, zero_grads, p, p->g};
        if (bench_part_try(ready, &fn, p->name, budget, &f, &b)) return 1;
        bench_part_row(&o, "index_parts", 30, p->name, "forward", &f);
        bench_part_row(&o, "index_parts", 30, p->name, "backward", &b);
        part_free(p);
    }
    return 0;
}

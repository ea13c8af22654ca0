/*
 * bench_index_parts.c - the index and scatter ops one by one, forward and backward, along
 * dim 0 and dim 1 of [1024, 1024] float32 operands: scatter_reduce for every reduction with
 * and without include_self, scatter, scatter_add, gather, index_select, index_add, put with
 * accumulate (PyTorch's index_put_ with accumulate on a flat index), and embedding; (session 12)
 * index_copy and index_fill along dims 0 and 1, gather and scatter_add along the middle dim of
 * [16, 256, 256], take, masked_fill, where, masked_select, masked_scatter and nonzero on a hashed
 * mask about half true, and repeat_interleave (2 along dim 0).
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

typedef enum kind {
    SREDUCE, SCATTER, SCATTER_ADD, GATHER, INDEX_SELECT, INDEX_ADD, PUT, EMBEDDING, /* dims 0, 1 (put, embedding: one) */
    INDEX_COPY, INDEX_FILL, GATHER_MID, SCATTER_ADD_MID,                            /* dims 0, 1 (_MID: dim 1 of 3-d) */
    TAKE, MASKED_FILL, WHERE, MASKED_SELECT, MASKED_SCATTER, NONZERO, REPEAT_INTERLEAVE /* one each */
} kind;

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

/* [n], a permutation of [0, n) for n a power of two: (k·2654435761) mod n (an odd multiplier). */
static ag_tensor *perm(int64_t n) {
    ag_tensor *t = ag_empty(AG_SHAPE(n), AG_I64);
    int64_t *v = t ? ag_data(t) : NULL;
    for (int64_t k = 0; v && k < n; k++) v[k] = (int64_t)(((uint64_t)k * 2654435761u) % (uint64_t)n);
    return t;
}

/* [N, N] bool, about half true: bit 31 of (k·2654435761) mod 2^32. */
static ag_tensor *hashed_mask(void) {
    ag_tensor *t = ag_empty(AG_SHAPE(N, N), AG_BOOL);
    uint8_t *v = t ? ag_data(t) : NULL;
    for (int64_t k = 0; v && k < N * N; k++) v[k] = (uint8_t)((((uint64_t)k * 2654435761u) % 4294967296u) >> 31);
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
    case INDEX_COPY: return ag_index_copy(p->x, p->dim, p->index, p->src);
    case INDEX_FILL: return ag_index_fill(p->x, p->dim, p->index, -2.5);
    case GATHER_MID: return ag_gather(p->x, 1, p->index);
    case SCATTER_ADD_MID: return ag_scatter_add(p->x, 1, p->index, p->src);
    case TAKE: return ag_take(p->x, p->index);
    case MASKED_FILL: return ag_masked_fill(p->x, p->index, -2.5);
    case WHERE: return ag_where(p->index, p->x, p->src);
    case MASKED_SELECT: return ag_masked_select(p->x, p->index);
    case MASKED_SCATTER: return ag_masked_scatter(p->x, p->index, p->src);
    case NONZERO: return ag_nonzero(p->index);
    case REPEAT_INTERLEAVE: return ag_repeat_interleave(p->x, 2, p->dim);
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
    case INDEX_COPY: p->index = perm(N); break;
    case INDEX_FILL: p->index = hashed(AG_SHAPE(N / 4), N); break;
    case GATHER_MID:
    case SCATTER_ADD_MID: p->index = hashed(AG_SHAPE(16, 256, 256), 256); break;
    case TAKE: p->index = hashed(AG_SHAPE(N * N), N * N); break;
    case MASKED_FILL:
    case WHERE:
    case MASKED_SELECT:
    case MASKED_SCATTER:
    case NONZERO: p->index = hashed_mask(); break;
    case REPEAT_INTERLEAVE: break;
    }
    const bool mid = p->k == GATHER_MID || p->k == SCATTER_ADD_MID;
    p->x = p->k == EMBEDDING ? leaf(AG_SHAPE(8192, 256)) : mid ? leaf(AG_SHAPE(16, 256, 256)) : leaf(AG_SHAPE(N, N));
    if (p->k == SREDUCE || p->k == SCATTER || p->k == SCATTER_ADD || p->k == INDEX_ADD || p->k == PUT ||
        p->k == INDEX_COPY || p->k == SCATTER_ADD_MID || p->k == WHERE || p->k == MASKED_SCATTER)
        p->src = p->k == PUT ? leaf(AG_SHAPE(N * N)) : mid ? leaf(AG_SHAPE(16, 256, 256)) : leaf(AG_SHAPE(N, N));
    ag_tensor *y = part_forward(p);
    if (!y) return false;
    p->g = ag_randn(ag_shape_of(y), y->dtype == AG_I64 ? AG_F32 : y->dtype); /* nonzero: not used */
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
                                  "embedding", "index_copy", "index_fill", "gather mid", "scatter_add mid", "take",
                                  "masked_fill", "where", "masked_select", "masked_scatter", "nonzero",
                                  "repeat_interleave"};
    part parts[64];
    int np = 0;
    for (int dim = 0; dim < 2; dim++)
        for (int r = 0; r < 5; r++)
            for (int self = 1; self >= 0; self--) {
                part *p = &parts[np++];
                *p = (part){.k = SREDUCE, .dim = dim, .red = (ag_scatter_reduction)r, .self = self};
                snprintf(p->name, sizeof p->name, "scatter_reduce %s%s d%d", reds[r], self ? "" : " noself", dim);
            }
    for (int k = SCATTER; k <= REPEAT_INTERLEAVE; k++)
        for (int dim = 0; dim < (k == PUT || k == EMBEDDING || k >= GATHER_MID ? 1 : 2); dim++) {
            part *p = &parts[np++];
            *p = (part){.k = (kind)k, .dim = dim};
            if (k == PUT || k == EMBEDDING || k >= GATHER_MID) snprintf(p->name, sizeof p->name, "%s", names[k]);
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
        if (p->k == NONZERO) { /* not differentiable: the forward alone */
            if (!ready || bench_measure(bench_part_forward, &fn, 0.1, budget, 5, 101, &f)) return 1;
            bench_part_row(&o, "index_parts", 30, p->name, "forward", &f);
            part_free(p);
            continue;
        }
        if (bench_part_try(ready, &fn, p->name, budget, &f, &b)) return 1;
        bench_part_row(&o, "index_parts", 30, p->name, "forward", &f);
        bench_part_row(&o, "index_parts", 30, p->name, "backward", &b);
        part_free(p);
    }
    return 0;
}

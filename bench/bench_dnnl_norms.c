/*
 * bench_dnnl_norms.c - oneDNN 2.6's softmax_v2 and layer_normalization primitives
 * against agrad's own softmax and layer_norm, forward and backward, at the shapes of
 * the transformer step (the attention's [8·4·128, 128] score rows, layer norm over
 * [1024, 256]) and at [1000, 1000] (softmax along dims 0 and 1, layer norm over the
 * last dim) and [512, 1024].  float32, same run, same thread count.
 *
 * oneDNN's side is the primitive created once, each call an execute into an output (dst,
 * diff_src) allocated by ag_empty as an op's would be (the inputs and statistics allocated
 * once: its best case, no autograd).  agrad's side is the
 * public op with recording on (forward) and forward + ag_backward_ex less the forward
 * (backward), allocations included, as bench_tfm_parts times a part.
 * docs/benchmarks.md ("oneDNN's softmax and layer norm primitives") has the table.
 * Usage: bench_dnnl_norms [--quick] [name-filter]
 */
#include <dnnl.h>
#include <omp.h>
#include "agrad/agrad.h"
#include "bench_util.h"

typedef struct job {
    const char *name;
    bool norm;           /* layer norm over the last dim; else softmax along dim */
    int64_t rows, cols;  /* [rows, cols] */
    int dim;             /* softmax: 0 or 1 */
    /* oneDNN */
    dnnl_engine_t eng;
    dnnl_stream_t stream;
    dnnl_primitive_t fwd, bwd;
    dnnl_exec_arg_t fa[8], ba[10];
    int nfa, nba;
    float *buf[9];
    /* agrad */
    ag_tensor *x, *w, *b, *g;
} job;

static dnnl_memory_t mem(job *j, const dnnl_memory_desc_t *md, int slot, size_t n) {
    j->buf[slot] = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) j->buf[slot][i] = (float)((i * 2654435761u) % 1000) / 500.0f - 1.0f;
    dnnl_memory_t m;
    return dnnl_memory_create(&m, md, j->eng, j->buf[slot]) == dnnl_success ? m : NULL;
}

/* Builds the primitives and their arguments; false if oneDNN refuses. */
static bool dnnl_init(job *j) {
    const size_t n = (size_t)(j->rows * j->cols);
    dnnl_dims_t dims = {j->rows, j->cols}, sdims = {j->rows};
    dnnl_memory_desc_t md, sd, ssd;
    dnnl_dims_t ssdims = {2, j->cols};
    if (dnnl_engine_create(&j->eng, dnnl_cpu, 0) || dnnl_stream_create(&j->stream, j->eng, dnnl_stream_default_flags) ||
        dnnl_memory_desc_init_by_tag(&md, 2, dims, dnnl_f32, dnnl_ab) ||
        dnnl_memory_desc_init_by_tag(&sd, 1, sdims, dnnl_f32, dnnl_a) ||
        dnnl_memory_desc_init_by_tag(&ssd, 2, ssdims, dnnl_f32, dnnl_ab))
        return false;
    dnnl_primitive_desc_t fpd, bpd;
    if (j->norm) {
        dnnl_layer_normalization_desc_t fd, bd;
        const unsigned flags = dnnl_use_scaleshift;
        if (dnnl_layer_normalization_forward_desc_init(&fd, dnnl_forward_training, &md, &sd, 1e-5f, flags) ||
            dnnl_primitive_desc_create(&fpd, &fd, NULL, j->eng, NULL) ||
            dnnl_layer_normalization_backward_desc_init(&bd, dnnl_backward, &md, &md, &sd, 1e-5f, flags) ||
            dnnl_primitive_desc_create(&bpd, &bd, NULL, j->eng, fpd))
            return false;
        dnnl_memory_t src = mem(j, &md, 0, n), dst = mem(j, &md, 1, n), mean = mem(j, &sd, 2, (size_t)j->rows),
                      var = mem(j, &sd, 3, (size_t)j->rows), ss = mem(j, &ssd, 4, 2 * (size_t)j->cols),
                      ddst = mem(j, &md, 5, n), dsrc = mem(j, &md, 6, n), dss = mem(j, &ssd, 7, 2 * (size_t)j->cols);
        dnnl_exec_arg_t fa[] = {{DNNL_ARG_SRC, src}, {DNNL_ARG_DST, dst}, {DNNL_ARG_MEAN, mean},
                                {DNNL_ARG_VARIANCE, var}, {DNNL_ARG_SCALE_SHIFT, ss}};
        dnnl_exec_arg_t ba[] = {{DNNL_ARG_SRC, src}, {DNNL_ARG_MEAN, mean}, {DNNL_ARG_VARIANCE, var},
                                {DNNL_ARG_SCALE_SHIFT, ss}, {DNNL_ARG_DIFF_DST, ddst}, {DNNL_ARG_DIFF_SRC, dsrc},
                                {DNNL_ARG_DIFF_SCALE_SHIFT, dss}};
        memcpy(j->fa, fa, sizeof fa), memcpy(j->ba, ba, sizeof ba);
        j->nfa = 5, j->nba = 7;
    } else {
        dnnl_softmax_v2_desc_t fd, bd;
        if (dnnl_softmax_v2_forward_desc_init(&fd, dnnl_forward_training, dnnl_softmax_accurate, &md, &md, j->dim) ||
            dnnl_primitive_desc_create(&fpd, &fd, NULL, j->eng, NULL) ||
            dnnl_softmax_v2_backward_desc_init(&bd, dnnl_softmax_accurate, &md, &md, &md, j->dim) ||
            dnnl_primitive_desc_create(&bpd, &bd, NULL, j->eng, fpd))
            return false;
        dnnl_memory_t src = mem(j, &md, 0, n), dst = mem(j, &md, 1, n), ddst = mem(j, &md, 2, n),
                      dsrc = mem(j, &md, 3, n);
        dnnl_exec_arg_t fa[] = {{DNNL_ARG_SRC, src}, {DNNL_ARG_DST, dst}};
        dnnl_exec_arg_t ba[] = {{DNNL_ARG_DST, dst}, {DNNL_ARG_DIFF_DST, ddst}, {DNNL_ARG_DIFF_SRC, dsrc}};
        memcpy(j->fa, fa, sizeof fa), memcpy(j->ba, ba, sizeof ba);
        j->nfa = 2, j->nba = 3;
    }
    bool ok = !dnnl_primitive_create(&j->fwd, fpd) && !dnnl_primitive_create(&j->bwd, bpd);
    dnnl_primitive_desc_destroy(fpd);
    dnnl_primitive_desc_destroy(bpd);
    return ok;
}

/* Executes p with argument `out` of args bound to a new agrad tensor's data. */
static int execute_into_new(job *j, dnnl_primitive_t p, int n, dnnl_exec_arg_t *args, int out) {
    ag_scope_begin();
    ag_tensor *t = ag_empty(AG_SHAPE(j->rows, j->cols), AG_F32);
    int bad = !t || dnnl_memory_set_data_handle(args[out].memory, ag_data(t)) != dnnl_success ||
              dnnl_primitive_execute(p, j->stream, n, args) != dnnl_success;
    ag_scope_end();
    return bad;
}

static int dnnl_fwd(void *ctx) {
    job *j = ctx;
    return execute_into_new(j, j->fwd, j->nfa, j->fa, 1);
}

static int dnnl_bwd(void *ctx) {
    job *j = ctx;
    return execute_into_new(j, j->bwd, j->nba, j->ba, j->norm ? 5 : 2);
}

static ag_tensor *agrad_op(job *j) {
    return j->norm ? ag_layer_norm(j->x, AG_SHAPE(j->cols), j->w, j->b, 1e-5) : ag_softmax(j->x, j->dim);
}

static int agrad_fwd(void *ctx) {
    job *j = ctx;
    ag_scope_begin();
    int bad = agrad_op(j) == NULL;
    ag_scope_end();
    return bad;
}

static int agrad_fwd_bwd(void *ctx) {
    job *j = ctx;
    ag_scope_begin();
    ag_tensor *t[3] = {j->x, j->w, j->b};
    for (int i = 0; i < 3; i++)
        if (t[i]) ag_zero_grad(t[i]);
    ag_tensor *y = agrad_op(j);
    int bad = !y || ag_backward_ex(y, j->g, false) != AG_OK;
    ag_scope_end();
    return bad;
}

int main(int argc, char **argv) {
    bench_opts o;
    if (bench_parse(argc, argv, &o, "[--quick] [name-filter]")) return 2;
    ag_manual_seed(1);
    job jobs[] = {
        {.name = "softmax [4096, 128] dim 1 (attention rows)", .rows = 4096, .cols = 128, .dim = 1},
        {.name = "softmax [1000, 1000] dim 0", .rows = 1000, .cols = 1000, .dim = 0},
        {.name = "softmax [1000, 1000] dim 1", .rows = 1000, .cols = 1000, .dim = 1},
        {.name = "softmax [512, 1024] dim 1", .rows = 512, .cols = 1024, .dim = 1},
        {.name = "layer_norm [1024, 256] (transformer)", .norm = true, .rows = 1024, .cols = 256},
        {.name = "layer_norm [1000, 1000]", .norm = true, .rows = 1000, .cols = 1000},
        {.name = "layer_norm [512, 1024]", .norm = true, .rows = 512, .cols = 1024},
    };
    printf("oneDNN primitives vs agrad, float32, %d threads, %s clock, load average %.2f; µs per call (median)\n",
           omp_get_max_threads(), getenv("BENCH_CLOCK") ? getenv("BENCH_CLOCK") : "wall", bench_loadavg());
    printf("%-42s %12s %12s %12s %12s\n", "", "oneDNN fwd", "agrad fwd", "oneDNN bwd", "agrad bwd");
    const double budget = 0.5 * o.scale;
    for (size_t i = 0; i < sizeof jobs / sizeof jobs[0]; i++) {
        job *j = &jobs[i];
        if (o.filter && !strstr(j->name, o.filter)) continue;
        j->x = ag_requires_grad_(ag_randn(AG_SHAPE(j->rows, j->cols), AG_F32), true);
        if (j->norm) {
            j->w = ag_requires_grad_(ag_randn(AG_SHAPE(j->cols), AG_F32), true);
            j->b = ag_requires_grad_(ag_randn(AG_SHAPE(j->cols), AG_F32), true);
        }
        j->g = ag_randn(AG_SHAPE(j->rows, j->cols), AG_F32);
        bench_stats df, db, af, afb;
        if (!dnnl_init(j) || bench_measure(dnnl_fwd, j, 0.1, budget, 5, 101, &df) ||
            bench_measure(dnnl_bwd, j, 0.1, budget, 5, 101, &db) || bench_measure(agrad_fwd, j, 0.1, budget, 5, 101, &af) ||
            bench_measure(agrad_fwd_bwd, j, 0.1, budget, 5, 101, &afb)) {
            fprintf(stderr, "%s failed: %s\n", j->name, ag_last_error());
            return 1;
        }
        printf("%-42s %12.1f %12.1f %12.1f %12.1f\n", j->name, df.median, af.median, db.median, afb.median - af.median);
        dnnl_primitive_destroy(j->fwd);
        dnnl_primitive_destroy(j->bwd);
        for (int k = 0; k < 9; k++) free(j->buf[k]);
        ag_tensor *t[4] = {j->x, j->w, j->b, j->g};
        for (int k = 0; k < 4; k++) ag_release(t[k]);
        dnnl_stream_destroy(j->stream);
        dnnl_engine_destroy(j->eng);
    }
    return 0;
}

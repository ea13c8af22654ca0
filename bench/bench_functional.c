/*
 * bench_functional.c - the functional API (ag_hvp, ag_jacobian) timed on the
 * workloads bench/compare_functional.py times in torch.autograd.functional:
 *
 *   hvp_mlp        ag_hvp of an MLP loss, Linear(32, 64)-tanh-Linear(64, 10) then the
 *                  mean squared error on a batch of 64, over its four parameters (float32):
 *                  H·v forward-over-reverse (docs/higher-order.md);
 *   vhp_mlp        ag_vhp of the same: vᵀH reverse-over-reverse;
 *   hvp_1k, vhp_1k the two on Linear(16, 40)-tanh-Linear(40, 8), 1008 parameters, float64;
 *   jac_rev_NxM    ag_jacobian, reverse mode, of f(x) = tanh(W x) from R^N to R^M;
 *   jac_fwd_NxM    the same in forward mode (one ag_jvp per input element).
 *
 * Usage: bench_functional [--quick] [--json FILE] [name-filter]
 */
#include <math.h>
#include <omp.h>
#include "agrad/agrad.h"
#include "bench_util.h"

/* ---- hvp of an MLP loss ---------------------------------------------------------------- */
typedef struct mlp {
    ag_tensor *x, *target, *p[4], *v[4];
    bool vhp; /* time ag_vhp instead of ag_hvp */
} mlp;

static ag_tensor *mlp_loss(ag_tensor *const *p, int n, void *ctx) {
    const mlp *m = ctx;
    (void)n;
    ag_tensor *out = ag_linear(ag_tanh(ag_linear(m->x, p[0], p[1])), p[2], p[3]);
    return ag_mse_loss(out, m->target, NULL);
}

static int hvp_call(void *ctx) {
    mlp *m = ctx;
    ag_scope_begin();
    ag_tensor *hv[4];
    ag_status st = (m->vhp ? ag_vhp : ag_hvp)(mlp_loss, m, m->p, 4, m->v, NULL, NULL, hv);
    ag_scope_end();
    return st != AG_OK;
}

/* ---- Jacobians of tanh(W x) ------------------------------------------------------------ */
typedef struct map {
    ag_tensor *w, *x;
    ag_jacobian_mode mode;
} map;

static ag_tensor *tanh_map(ag_tensor *const *in, int n, void *ctx) {
    const map *f = ctx;
    (void)n;
    return ag_tanh(ag_matmul(f->w, in[0]));
}

static int jacobian_call(void *ctx) {
    map *f = ctx;
    ag_scope_begin();
    ag_tensor *jac;
    ag_functional_opts o = {.mode = f->mode};
    ag_status st = ag_jacobian(tanh_map, f, &f->x, 1, &o, &jac);
    ag_scope_end();
    return st != AG_OK;
}

static void run(FILE *json, double scale, const char *name, bench_fn fn, void *ctx, double budget) {
    bench_stats st;
    if (bench_measure(fn, ctx, 0.1 * scale + 0.02, budget * scale, 7, 201, &st)) {
        printf("%-16s FAILED: %s\n", name, ag_last_error());
        return;
    }
    printf("%-16s %12.2f %12.2f %12.2f %6d\n", name, st.median, st.p10, st.p90, st.samples);
    fflush(stdout);
    if (json)
        fprintf(json, "{\"suite\":\"functional\",\"name\":\"%s\",\"median_us\":%.4f,\"p10_us\":%.4f,\"p90_us\":%.4f}\n",
                name, st.median, st.p10, st.p90);
}

/* The Jacobian sizes (N inputs, M outputs) timed both ways. */
static const int SIZES[][2] = {{8, 128}, {128, 8}, {32, 32}};

int main(int argc, char **argv) {
    bench_opts o;
    if (bench_parse(argc, argv, &o, "[--quick] [--json FILE] [name-filter]")) return 2;
    FILE *json = NULL;
    if (o.json && !(json = fopen(o.json, "w"))) {
        perror(o.json);
        return 2;
    }
    printf("agrad bench_functional: %d threads, sgemm 1024^3 peak %.1f GFLOP/s, load average %.2f\n",
           omp_get_max_threads(), bench_sgemm_peak(), bench_loadavg());
    printf("%-16s %12s %12s %12s %6s\n", "workload", "median us", "p10 us", "p90 us", "n");
    ag_manual_seed(42);
    /* {input, hidden, output} of the MLPs, their dtype and names */
    static const struct {
        int in, hidden, out;
        ag_dtype dt;
        const char *name[2];
    } MLPS[] = {{32, 64, 10, AG_F32, {"hvp_mlp", "vhp_mlp"}}, {16, 40, 8, AG_F64, {"hvp_1k", "vhp_1k"}}};
    for (size_t k = 0; k < sizeof MLPS / sizeof MLPS[0]; k++) {
        int a = MLPS[k].in, h = MLPS[k].hidden, b = MLPS[k].out;
        ag_dtype dt = MLPS[k].dt;
        mlp m = {ag_randn(AG_SHAPE(64, a), dt), ag_randn(AG_SHAPE(64, b), dt),
                 {ag_randn(AG_SHAPE(h, a), dt), ag_randn(AG_SHAPE(h), dt), ag_randn(AG_SHAPE(b, h), dt),
                  ag_randn(AG_SHAPE(b), dt)},
                 {NULL}, false};
        for (int i = 0; i < 4; i++) m.v[i] = ag_randn(ag_shape_of(m.p[i]), dt);
        for (int way = 0; way < 2; way++) {
            m.vhp = way == 1;
            if (!o.filter || strstr(MLPS[k].name[way], o.filter)) run(json, o.scale, MLPS[k].name[way], hvp_call, &m, 1.0);
        }
        ag_release(m.x), ag_release(m.target);
        for (int i = 0; i < 4; i++) ag_release(m.p[i]), ag_release(m.v[i]);
    }
    for (size_t k = 0; k < sizeof SIZES / sizeof SIZES[0]; k++) {
        int n = SIZES[k][0], m = SIZES[k][1];
        ag_scope_begin();
        map f = {ag_keep(ag_mul_scalar(ag_randn(AG_SHAPE(m, n), AG_F32), 1 / sqrt(n))),
                 ag_keep(ag_randn(AG_SHAPE(n), AG_F32)), AG_JACOBIAN_REVERSE};
        ag_scope_end();
        for (int way = 0; way < 2; way++) {
            char name[32];
            snprintf(name, sizeof name, "jac_%s_%dx%d", way ? "fwd" : "rev", n, m);
            f.mode = way ? AG_JACOBIAN_FORWARD : AG_JACOBIAN_REVERSE;
            if (!o.filter || strstr(name, o.filter)) run(json, o.scale, name, jacobian_call, &f, 1.0);
        }
        ag_release(f.w), ag_release(f.x);
    }
    printf("peak RSS %.1f MiB, live tensors at exit %ld\n", bench_peak_rss_mib(), ag_live_tensors());
    if (json) {
        fprintf(json, "{\"suite\":\"functional\",\"name\":\"_process\",\"threads\":%d,\"peak_rss_mib\":%.1f,"
                      "\"loadavg\":%.2f}\n", omp_get_max_threads(), bench_peak_rss_mib(), bench_loadavg());
        fclose(json);
    }
    return ag_live_tensors() != 0;
}

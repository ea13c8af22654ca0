/*
 * The accelerated paths agree with the reference loops.  Every registered op
 * runs forward and backward (float32, with a random upstream gradient) in
 * AG_BACKEND_REFERENCE (plain loops, one thread) and again with the fast paths
 * on: AG_BACKEND_ACCEL (oneDNN wherever an op has a primitive, threads at every
 * size) on small and medium inputs, contiguous and not, and AG_BACKEND_AUTO on
 * inputs above the thread and oneDNN thresholds.  Outputs and input gradients
 * must agree to float32 accuracy.  Also: cached primitives are reused, keyed on
 * the thread count; the split loops write every element once; the per-thread
 * block cache never hides an allocation from a user allocator.  No check here
 * depends on time.
 */
#include <stdlib.h>
#include <string.h>
#include "test/cases/op_cases.h"
#include "agrad/agrad.h"
#include "core/dnnl_cache.h"
#include "core/parallel.h"
#include "ops/kernels.h"
#include "ops/registry.h"
#include "core/sum.h"
#include "tap.h"

/* One run of an op: its output and the gradients of its inputs, as doubles. */
typedef struct result {
    bool ok;
    int64_t n[5];   /* [0]: output elements, [1..]: gradient elements (-1: none) */
    double *v[5];
} result;

static void result_free(result *r) {
    for (int i = 0; i < 5; i++) free(r->v[i]);
    memset(r, 0, sizeof *r);
}

static double *values(const ag_tensor *t, int64_t *n) {
    *n = ag_numel(t);
    double *v = malloc(sizeof(double) * (size_t)(*n + 1));
    if (v) ag_copy_to(t, v, *n, AG_F64);
    return v;
}

/* Calls op through its test row on case c in the given mode, inputs from seed. */
static result run_op(const ag_op *op, const ag_op_test *row, const ag_op_case *c, bool noncontig, ag_backend_mode mode,
                     uint64_t seed) {
    result r;
    memset(&r, 0, sizeof r);
    ag_backend_mode saved = ag__backend;
    ag__backend = mode;
    ag_scope_begin();
    ag_manual_seed(seed);
    ag_tensor *in[4];
    for (int i = 0; i < c->n; i++) {
        in[i] = opc_input(&c->shape[i], row->domain, noncontig, AG_F32);
        if (op->backward) ag_requires_grad_(in[i], true);
    }
    ag_tensor *y = ag_test_call(row, in, c->n);
    if (y) {
        r.ok = true;
        r.v[0] = values(y, &r.n[0]);
        for (int i = 0; i < c->n; i++) r.n[i + 1] = -1;
        if (op->backward && ag_requires_grad(y) && (ag_dtype_of(y) == AG_F32)) {
            ag_shape ys = ag_shape_of(y);
            ag_tensor *gout = opc_input(&ys, AG_DOMAIN_ANY, false, AG_F32);
            r.ok = ag_backward_ex(y, gout, false) == AG_OK;
            for (int i = 0; i < c->n && r.ok; i++)
                if (ag_grad(in[i])) r.v[i + 1] = values(ag_grad(in[i]), &r.n[i + 1]);
        }
    }
    ag_clear_error();
    ag_scope_end();
    ag__backend = saved;
    return r;
}

/* Largest |a - b| of two runs' values, relative to max(1, the largest |a| of the
 * same tensor) - float32 accuracy for sums of many terms too; INFINITY if they
 * differ in shape or in where they are NaN. */
static double worst_error(const result *a, const result *b) {
    double worst = 0;
    for (int k = 0; k < 5; k++) {
        if ((a->v[k] == NULL) != (b->v[k] == NULL) || a->n[k] != b->n[k]) return INFINITY;
        double scale = 1;
        for (int64_t i = 0; a->v[k] && i < a->n[k]; i++)
            if (isfinite(a->v[k][i])) scale = fmax(scale, fabs(a->v[k][i]));
        for (int64_t i = 0; a->v[k] && i < a->n[k]; i++) {
            double ra = a->v[k][i], rb = b->v[k][i];
            if ((isnan(ra) && isnan(rb)) || (isinf(ra) && ra == rb)) continue;
            double e = fabs(ra - rb) / scale;
            if (!(e <= worst)) worst = isnan(e) ? INFINITY : e;
        }
    }
    return worst;
}

static void shapes_str(const ag_op_case *c, char *buf, size_t n) {
    buf[0] = '\0';
    for (int i = 0; i < c->n; i++) {
        char s[AG_SHAPE_STR];
        size_t len = strlen(buf);
        snprintf(buf + len, n - len, "%s%s", i ? " " : "", ag__shape_str(s, c->shape[i].ndim, c->shape[i].dim));
    }
}

/* Reference vs fast paths for one op at one size; returns 1 if compared. */
static int compare_op(const ag_op *op, const ag_op_test *row, int64_t target, ag_backend_mode fast, bool noncontig) {
    ag_op_case c;
    if (!opc_case_for(row, target, &c)) return 0;
    bool any2d = false;
    for (int i = 0; i < c.n; i++) any2d |= c.shape[i].ndim >= 2;
    if (noncontig && !any2d) return 0;
    result ref = run_op(op, row, &c, noncontig, AG_BACKEND_REFERENCE, 99);
    if (!ref.ok) { /* the op's test call does not accept these shapes */
        result_free(&ref);
        return 0;
    }
    result acc = run_op(op, row, &c, noncontig, fast, 99);
    char shapes[256];
    shapes_str(&c, shapes, sizeof shapes);
    double e = acc.ok ? worst_error(&ref, &acc) : INFINITY;
    ok(e <= 2e-5, "%s %s%s: %s forward and gradients match the reference loops (worst relative error %.2g)", op->name,
       shapes, noncontig ? " non-contiguous" : "", fast == AG_BACKEND_ACCEL ? "accelerated" : "default", e);
    result_free(&ref);
    result_free(&acc);
    return 1;
}

/* ---- cached primitives ------------------------------------------------------------------------------ */
static void check_primitive_reuse(void) {
    ag_backend_mode saved = ag__backend;
    ag__backend = AG_BACKEND_ACCEL;
    ag_scope_begin();
    ag_tensor *x = ag_requires_grad_(ag_rand(AG_SHAPE(3001), AG_F32), true);
    ag_tensor *g = ag_rand(AG_SHAPE(3001), AG_F32);
    long c0 = ag__dnnl_primitives_created();
    ag_tensor *y = ag_tanh(x);
    long c1 = ag__dnnl_primitives_created();
    ag_tanh(x);
    ag_tanh(x);
    long c2 = ag__dnnl_primitives_created();
    ok(y && c1 == c0 + 1, "the first tanh on 3001 floats creates one primitive (%ld)", c1 - c0);
    ok(c2 == c1, "two more tanh calls reuse it (%ld created)", c2 - c1);
    ag_gelu(x); /* gelu's forward and backward both run as primitives */
    long c2e = ag__dnnl_primitives_created();
    ag_backward_ex(ag_gelu(x), g, false);
    long c3 = ag__dnnl_primitives_created();
    ag_backward_ex(ag_gelu(x), g, false);
    long c4 = ag__dnnl_primitives_created();
    ok(c2e == c2 + 1 && c3 == c2e + 1 && c4 == c3,
       "gelu's forward and backward create one primitive each, then reuse them (%ld, %ld, %ld)", c2e - c2, c3 - c2e,
       c4 - c3);
    int threads = ag_get_num_threads();
    ag_set_num_threads(threads == 1 ? 2 : 1);
    ag_tanh(x);
    long c5 = ag__dnnl_primitives_created();
    ag_set_num_threads(threads);
    ag_tanh(x);
    long c6 = ag__dnnl_primitives_created();
    ok(c5 == c4 + 1, "another thread count is another primitive (%ld)", c5 - c4);
    ok(c6 == c5, "and the original one is still cached (%ld)", c6 - c5);
    ag_tanh(ag_rand(AG_SHAPE(3002), AG_F32));
    ok(ag__dnnl_primitives_created() == c6 + 1, "another size is another primitive");
    ag__backend = AG_BACKEND_REFERENCE;
    ag_tanh(ag_rand(AG_SHAPE(5003), AG_F32));
    ok(ag__dnnl_primitives_created() == c6 + 1, "the reference mode creates none");

    /* linear's x·Wᵀ (a transposed operand) runs as a cached matmul primitive by default */
    ag__backend = AG_BACKEND_AUTO;
    ag_tensor *in = ag_rand(AG_SHAPE(64, 96), AG_F32), *w = ag_rand(AG_SHAPE(80, 96), AG_F32);
    ag_tensor *b = ag_rand(AG_SHAPE(80), AG_F32);
    long m0 = ag__dnnl_primitives_created();
    ag_tensor *y1 = ag_linear(in, w, b);
    long m1 = ag__dnnl_primitives_created();
    ag_tensor *y2 = ag_linear(in, w, b);
    ok(y1 && y2 && m1 == m0 + 1 && ag__dnnl_primitives_created() == m1,
       "linear [64, 96] x [80, 96]ᵀ creates one matmul primitive, then reuses it (%ld, %ld)", m1 - m0,
       ag__dnnl_primitives_created() - m1);
    ag_scope_end();
    ag__backend = saved;
}

/* ---- special values ---------------------------------------------------------------------------------- */
/* NaN, infinities, signed zeros, denormals and large values give the same results
 * (NaN where NaN, the same infinities) through oneDNN as through the C loops, forward
 * and backward; results below 1e-30 may be flushed to zero. */
static void check_special_values(void) {
    const float v[] = {NAN, INFINITY, -INFINITY, 0.0f, -0.0f, 1e-40f, -1e-40f, 88.9f, -88.9f,
                       100.0f, -100.0f, 1e30f, -1e30f, 0.5f, -0.5f, 20.0f};
    enum { N = sizeof v / sizeof *v };
    ag_backend_mode saved = ag__backend;
    const ag_op *op;
    for (int i = 0; (op = ag__op_at(i)); i++) {
        const ag_op_test *row = ag_test_case_for(op);
        if (!ag__unary_dnnl_alg(op) || !row) continue;
        float y[2][N], g[2][N];
        for (int m = 0; m < 2; m++) {
            ag__backend = m ? AG_BACKEND_ACCEL : AG_BACKEND_REFERENCE;
            ag_scope_begin();
            ag_tensor *x = ag_requires_grad_(ag_from_data(v, AG_SHAPE(N), AG_F32), true);
            ag_tensor *out = ag_test_call(row, &x, 1);
            ag_backward_ex(out, ag_ones(AG_SHAPE(N), AG_F32), false);
            ag_copy_to(out, y[m], N, AG_F32);
            ag_copy_to(ag_grad(x), g[m], N, AG_F32);
            ag_scope_end();
        }
        int bad = 0;
        for (int k = 0; k < N; k++)
            for (int w = 0; w < 2; w++) {
                float a = w ? g[0][k] : y[0][k], b = w ? g[1][k] : y[1][k];
                bool same = (isnan(a) && isnan(b)) || a == b || fabsf(a - b) <= 1e-5f * fabsf(a) ||
                            fabsf(a - b) < 1e-30f; /* tiny results flushed to zero */
                if (!same) {
                    bad++;
                    diag("%s(%g): %s %g by the C loop, %g by oneDNN", op->name, v[k], w ? "gradient" : "value", a, b);
                }
            }
        ok(bad == 0, "%s: NaN, infinities, zeros, denormals and large inputs agree with the C loop (%d differ)", op->name,
           bad);
    }
    ag__backend = saved;
}

/* ---- split loops ------------------------------------------------------------------------------------- */
static void count_kernel(char **p, const int64_t *s, int64_t n, void *ctx) {
    (void)ctx;
    for (int64_t i = 0; i < n; i++) *(int32_t *)(p[0] + i * s[0]) += 1 + *(const int32_t *)(p[1] + i * s[1]);
}

static void check_par_run(void) {
    const int64_t sizes[] = {0, 1, 63, 64, 127, 128, 129, 1000, 100003};
    for (int t = 2; t <= 3; t++)
        for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
            int64_t n = sizes[k];
            int32_t *a = calloc((size_t)n + 1, sizeof *a), *b = calloc((size_t)n + 1, sizeof *b);
            for (int64_t i = 0; i < n; i++) b[i] = (int32_t)i;
            char *p[2] = {(char *)a, (char *)b};
            int64_t s[2] = {4, 4};
            ag__par_run(count_kernel, NULL, n, 2, p, s, t);
            int64_t bad = 0;
            for (int64_t i = 0; i < n; i++) bad += a[i] != b[i] + 1;
            ok(bad == 0 && a[n] == 0, "a loop over %lld elements split over %d threads writes each once (%lld wrong)",
               (long long)n, t, (long long)bad);
            free(a);
            free(b);
        }
}

static void check_iter_run_sum(void) {
    ag_backend_mode saved = ag__backend;
    ag__backend = AG_BACKEND_ACCEL;
    /* ag__sum_kernel: float64 sums of float32 terms, a contiguous run's pairs 16 apart added in float32
     * first (core/sum_pairs.h): within 2^-24·Σ|x| (x >= 0 here: of the sum); a part dropped or counted
     * twice by a split is off by far more */
    ag_dtype f32 = AG_F32;
    const int64_t sizes[] = {1, 100, 4099, 300001};
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        ag_tensor *x = ag_rand(AG_SHAPE(sizes[k]), AG_F32), *y = ag_zeros(AG_SCALAR_SHAPE, AG_F64);
        ag_iter it;
        ag__iter_init(&it, 1, &sizes[k]);
        ag__iter_add_reduced(&it, y, 1);
        ag__iter_add(&it, x);
        ag__iter_run_sum(&it, ag__sum_kernel, &f32);
        double ref = 0;
        for (int64_t i = 0; i < sizes[k]; i++) ref += ((const float *)ag_data(x))[i];
        close_to(ag_item(y), ref, 0x1p-24, "a full sum of %lld floats split over threads: %.6f vs %.6f", (long long)sizes[k],
                 ag_item(y), ref);
        ag_release(x);
        ag_release(y);
    }
    /* column sums (operand 0 differs along dim 1 only): split safely or not at all */
    ag_tensor *x = ag_rand(AG_SHAPE(513, 300), AG_F32), *y = ag_zeros(AG_SHAPE(1, 300), AG_F64);
    ag_iter it;
    ag__iter_init(&it, 2, (int64_t[]){513, 300});
    ag__iter_add(&it, y);
    ag__iter_add(&it, x);
    ag__iter_run_sum(&it, ag__sum_kernel, &f32);
    double worst = 0;
    for (int j = 0; j < 300; j++) {
        double ref = 0;
        for (int i = 0; i < 513; i++) ref += ((const float *)ag_data(x))[i * 300 + j];
        worst = fmax(worst, fabs(((const double *)ag_data(y))[j] - ref));
    }
    ok(worst < 1e-10, "column sums of [513, 300] through ag__iter_run_sum (worst error %.2g)", worst);
    ag_release(y);
    /* row sums: operand 0 differs along dim 0, which is split over threads */
    y = ag_zeros(AG_SHAPE(513, 1), AG_F64);
    ag__iter_init(&it, 2, (int64_t[]){513, 300});
    ag__iter_add(&it, y);
    ag__iter_add(&it, x);
    ag__iter_run_sum(&it, ag__sum_kernel, &f32);
    worst = 0;
    for (int i = 0; i < 513; i++) {
        double ref = 0;
        for (int j = 0; j < 300; j++) ref += ((const float *)ag_data(x))[i * 300 + j];
        worst = fmax(worst, fabs(((const double *)ag_data(y))[i] - ref));
    }
    ok(worst < 0x1p-24 * 300, "row sums of [513, 300] through ag__iter_run_sum (worst error %.2g)", worst);
    ag_release(x);
    ag_release(y);
    ag__backend = saved;
}

/* ---- the block cache and user allocators ----------------------------------------------------------------- */
static long hook_calls;
static bool hook_fails;

static void *hook(void *ud, void *ptr, size_t nsize) {
    (void)ud;
    if (nsize == 0) {
        free(ptr);
        return NULL;
    }
    hook_calls++;
    return hook_fails ? NULL : malloc(nsize);
}

static void check_allocator_sees_everything(void) {
    /* Warm this thread's cache with blocks of the sizes the ops below need. */
    ag_tensor *x = ag_rand(AG_SHAPE(16), AG_F32);
    for (int i = 0; i < 10; i++) ag_release(ag_exp(x));
    ag_release(x);
    ag_set_allocator(hook, NULL);
    x = ag_rand(AG_SHAPE(16), AG_F32);
    hook_calls = 0;
    ag_tensor *y = ag_exp(x);
    ok(y && hook_calls >= 1, "with a user allocator, a new tensor is allocated through it (%ld calls)", hook_calls);
    ag_release(y);
    hook_fails = true;
    ag_clear_error();
    y = ag_exp(x);
    ok(!y && ag_last_status() == AG_ERR_NOMEM, "and when it fails, the op fails with AG_ERR_NOMEM: %s", ag_last_error());
    hook_fails = false;
    ag_release(x);
    ok(ag_live_tensors() == 0, "nothing is left after the failure");
    ag_set_allocator(NULL, NULL);
    ag_clear_error();
}

int main(void) {
    bool onednn = ag_onednn_enabled();
    ag_set_onednn_enabled(true); /* these checks are about the oneDNN paths, whatever AGRAD_ONEDNN says */
    check_par_run();
    check_iter_run_sum();
    check_primitive_reuse();
    check_special_values();
    check_allocator_sees_everything();

    int threads = ag_get_num_threads();
    ag_set_num_threads(3);
    ok(ag_get_num_threads() == 3, "ag_set_num_threads(3) is read back");
    ag_set_num_threads(0);
    ok(ag_get_num_threads() >= 1, "ag_set_num_threads(0) restores a default (%d)", ag_get_num_threads());
    ok(ag_get_num_threads() <= ag__cpus_available() || getenv("OMP_NUM_THREADS"),
       "the default is at most the CPUs this process may use (%d)", ag__cpus_available());
    ok(ag__cgroup_cpu_limit("max 100000\n", NULL) == 0, "cgroup v2 'max': no quota");
    ok(ag__cgroup_cpu_limit("150000 100000\n", NULL) == 2, "cgroup v2 1.5 CPUs: 2 threads");
    ok(ag__cgroup_cpu_limit("50000 100000", NULL) == 1, "cgroup v2 half a CPU: 1 thread");
    ok(ag__cgroup_cpu_limit("-1\n", "100000\n") == 0, "cgroup v1 quota -1: no quota");
    ok(ag__cgroup_cpu_limit("400000\n", "100000\n") == 4, "cgroup v1 4 CPUs");
    ok(ag__cgroup_cpu_limit("", NULL) == 0 && ag__cgroup_cpu_limit("12x 100", NULL) == 0 &&
           ag__cgroup_cpu_limit("100 0", NULL) == 0 && ag__cgroup_cpu_limit(NULL, NULL) == 0,
       "unreadable or malformed quota files mean no quota");
    ag_set_num_threads(threads < 2 ? 2 : threads); /* split loops need a second thread */

    const ag_op *op;
    int compared = 0, accelerated = 0;
    for (int i = 0; (op = ag__op_at(i)); i++) {
        const ag_op_test *row = ag_test_case_for(op);
        if (!row) continue; /* test_ops_gradcheck fails on an op without a test row */
        /* Small and medium inputs with every fast path forced on. */
        compared += compare_op(op, row, 1, AG_BACKEND_ACCEL, false);
        compared += compare_op(op, row, 3000, AG_BACKEND_ACCEL, false);
        compared += compare_op(op, row, 3000, AG_BACKEND_ACCEL, true);
        /* Above the thread threshold, with the default choices. */
        compared += compare_op(op, row, AG_PAR_MIN_ELEMS + 1000, AG_BACKEND_AUTO, false);
        accelerated += ag__unary_dnnl_alg(op) != 0;
    }
    diag("%d comparisons, %d ops with a oneDNN eltwise primitive", compared, accelerated);
    ok(accelerated >= 8, "the unary table routes oneDNN eltwise algorithms to at least 8 rows (%d)",
       accelerated);
    ag_set_num_threads(threads);
    ag_set_onednn_enabled(onednn);
    ag_free_caches();
    ok(ag_live_tensors() == 0, "no tensor outlives the checks (%ld live)", ag_live_tensors());
    return tap_done();
}

/*
 * bf16 autocast (docs/mixed-precision.md): regions nest per thread with an
 * enabled flag, clear errors for an unsupported dtype and an unbalanced end;
 * matmul, linear and the convolutions computed in bf16 agree with float32 within
 * bf16 rounding (relative to the outputs' rms, which grows as sqrt(K) with the
 * contraction length K), forward and gradients, and differ from float32 (the bf16
 * kernel ran), with float32 tensors throughout; backward follows each node's own
 * precision wherever it is called; float64 and the gradcheck path are untouched;
 * agrad's float32 NCHW -> bf16 nChw16c conversion writes the bits of oneDNN's reorder.
 */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include "agrad/agrad.h"
#include "core/autocast.h"
#include <dnnl.h>
#include "tap.h"

static bool has(const char *text, const char *part) { return text && strstr(text, part) != NULL; }

static void regions(void) {
    ok(!ag_is_autocast_enabled(), "autocast is off at start");
    ok(ag_autocast_begin(AG_AUTOCAST_BF16, true) == AG_OK && ag_is_autocast_enabled(), "begin(bf16) turns it on");
    ok(ag_autocast_begin(AG_AUTOCAST_BF16, false) == AG_OK && !ag_is_autocast_enabled(),
       "a nested region with enabled = false turns it off");
    ok(ag_autocast_begin(AG_AUTOCAST_BF16, true) == AG_OK && ag_is_autocast_enabled(), "and one nested in that, on");
    ok(ag_autocast_end() == AG_OK && !ag_is_autocast_enabled(), "its end restores off");
    ok(ag_autocast_end() == AG_OK && ag_is_autocast_enabled(), "the next end restores on");
    ok(ag_autocast_end() == AG_OK && !ag_is_autocast_enabled(), "the outer end restores off");
    ok(ag_autocast_end() == AG_ERR_ARG && has(ag_last_error(), "no autocast region is open"),
       "an unbalanced end fails with AG_ERR_ARG: %s", ag_last_error());
    ok(!ag_is_autocast_enabled(), "and changes nothing");

    ag_autocast_begin(AG_AUTOCAST_BF16, true);
    ok(ag_autocast_begin(AG_AUTOCAST_F16, true) == AG_ERR_DTYPE && has(ag_last_error(), "not supported on the CPU"),
       "float16 fails with AG_ERR_DTYPE: %s", ag_last_error());
    ok(!ag_is_autocast_enabled(), "and opens a region with autocast off");
    ok(ag_autocast_begin((ag_autocast_dtype)77, true) == AG_ERR_DTYPE, "an unknown dtype fails too");
    ag_autocast_end();
    ok(ag_autocast_end() == AG_OK && ag_is_autocast_enabled(), "whose ends restore the enclosing region");
    ag_autocast_end();

    int opened = 0;
    while (ag_autocast_begin(AG_AUTOCAST_BF16, true) == AG_OK) opened++;
    ok(opened == 64 && has(ag_last_error(), "nested more than 64 deep"), "regions nest 64 deep, then fail (%d): %s",
       opened, ag_last_error());
    while (opened--) ag_autocast_end();
    ok(!ag_is_autocast_enabled() && ag_autocast_end() == AG_ERR_ARG, "64 ends close them all");
}

static void *other_thread(void *arg) {
    bool *seen = arg;
    seen[0] = ag_is_autocast_enabled();
    ag_autocast_begin(AG_AUTOCAST_BF16, true);
    seen[1] = ag_is_autocast_enabled();
    ag_autocast_end();
    return NULL;
}

static void thread_local_state(void) {
    ag_autocast_begin(AG_AUTOCAST_BF16, true);
    bool seen[2] = {true, false};
    pthread_t th;
    ok(pthread_create(&th, NULL, other_thread, seen) == 0 && pthread_join(th, NULL) == 0, "a second thread ran");
    ok(!seen[0] && seen[1], "another thread starts with autocast off and opens its own region");
    ok(ag_is_autocast_enabled(), "which leaves this thread's on");
    ag_autocast_end();
}

/* ---- bf16 against float32 ------------------------------------------------------------ */
typedef ag_tensor *(*case_fn)(ag_tensor *const *in);

static ag_tensor *f_matmul(ag_tensor *const *in) { return ag_matmul(in[0], in[1]); }
static ag_tensor *f_matmul_t(ag_tensor *const *in) { return ag_matmul(in[0], ag_transpose(in[1], 0, 1)); }
static ag_tensor *f_bmm(ag_tensor *const *in) { return ag_bmm(in[0], in[1]); }
static ag_tensor *f_linear(ag_tensor *const *in) { return ag_linear(in[0], in[1], in[2]); }
static ag_tensor *f_conv2d(ag_tensor *const *in) {
    ag_conv_opts o = {.stride = {1, 2}, .padding = {1, 1}, .groups = 1};
    return ag_conv2d(in[0], in[1], in[2], &o);
}
static ag_tensor *f_conv1d(ag_tensor *const *in) { return ag_conv1d(in[0], in[1], in[2], NULL); }
static ag_tensor *f_conv_t2d(ag_tensor *const *in) { return ag_conv_transpose2d(in[0], in[1], in[2], NULL); }

typedef struct bf16_case {
    const char *name;
    case_fn f;
    int n;
    ag_shape shape[3];
} bf16_case;

/* rms(a - b) / rms(b) and max|a - b| / rms(b) over float32 tensors of one size. */
static void rel_err(const ag_tensor *a, const ag_tensor *b, double *rms, double *max) {
    const float *x = ag_data(a), *y = ag_data(b);
    double d2 = 0, r2 = 0, m = 0;
    for (int64_t i = 0; i < ag_numel(b); i++) {
        double d = fabs((double)x[i] - y[i]);
        d2 += d * d, r2 += (double)y[i] * y[i], m = fmax(m, d);
    }
    *rms = sqrt(d2 / fmax(r2, 1e-300));
    *max = m / sqrt(fmax(r2 / (double)ag_numel(b), 1e-300));
}

/* Output and input gradients of sum(f(in)·r), the graph recorded with autocast on or
 * off and backward called outside any region. */
static void run_case(const bf16_case *c, ag_tensor *const *in, ag_tensor **r, bool autocast, ag_tensor **out) {
    for (int i = 0; i < c->n; i++) ag_zero_grad(in[i]);
    if (autocast) ag_autocast_begin(AG_AUTOCAST_BF16, true);
    ag_tensor *y = c->f(in);
    if (!*r) *r = ag_randn(ag_shape_of(y), AG_F32);
    ag_tensor *loss = ag_sum(ag_mul(y, *r));
    if (autocast) ag_autocast_end();
    ag_backward(loss);
    out[0] = ag_detach(y);
    for (int i = 0; i < c->n; i++) out[i + 1] = ag_detach(ag_grad(in[i]));
}

/* Whether oneDNN has bf16 kernels on this CPU: AVX-512 at least (native bf16 or emulated).
 * Under valgrind, whose virtual CPU has no AVX-512, autocast falls back to float32. */
static bool bf16_kernels(void) {
    const dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
    return ((unsigned)isa & (unsigned)dnnl_cpu_isa_avx512_core) == (unsigned)dnnl_cpu_isa_avx512_core;
}

static void against_f32(const bf16_case *c) {
    if (!bf16_kernels()) {
        ok(1, "%s: bf16 against float32 # SKIP oneDNN reports no AVX-512 (bf16) kernels on this CPU", c->name);
        return;
    }
    ag_scope_begin();
    ag_manual_seed(7);
    ag_tensor *in[3], *r = NULL, *ref[4], *bf[4];
    for (int i = 0; i < c->n; i++) in[i] = ag_requires_grad_(ag_randn(c->shape[i], AG_F32), true);
    run_case(c, in, &r, false, ref);
    run_case(c, in, &r, true, bf);
    static const char *what[4] = {"forward", "gradient of input 0", "gradient of input 1", "gradient of bias"};
    for (int i = 0; i <= c->n; i++) {
        double rms, max;
        rel_err(bf[i], ref[i], &rms, &max);
        ok(ag_dtype_of(bf[i]) == AG_F32 && rms <= 1e-2 && max <= 4e-2 && (rms >= 1e-4 || i == 3),
           "%s %s: bf16 within bf16 rounding of float32 (rms %.2e, max %.2e of the rms), float32 result", c->name,
           what[i], rms, max);
    }
    ag_scope_end();
}

/* ag__f32_to_bf16_nchw16c (core/bf16_blocked.c), which the bf16 convolutions' inputs go
 * through in place of oneDNN's reorder, writes that reorder's bits, the zero channels of the
 * last block's padding included: full blocks of 16 positions and partial ones, fewer than 16
 * positions, channels past a multiple of 16, one and two threads, and the values where
 * rounding differs (ties to even, NaN, subnormals, overflow to infinity). */
static void nchw16c_matches_onednn(void) {
    if (!ag__bf16_nchw16c_available()) {
        ok(1, "float32 NCHW -> bf16 nChw16c # SKIP the CPU has no AVX-512 BF16 (oneDNN's reorder runs)");
        return;
    }
    static const int64_t shapes[][4] = {{6, 32, 14, 14}, {3, 20, 5, 7}, {1, 16, 4, 4}, {2, 48, 1, 3},
                                        {1, 5, 9, 9},    {2, 64, 7, 7}, {1, 17, 16, 3}};
    static const uint32_t special[] = {0x7fc00000u, 0xffc00001u, 0x7f800001u, 0x7f800000u, 0xff800000u, 0x80000000u,
                                       0x00000001u, 0x807fffffu, 0x00800000u, 0x3f808000u, 0x3f818000u, 0x3f808001u,
                                       0x7f7fffffu, 0xff7f8000u, 0x3f7fffffu, 0x0000ffffu};
    dnnl_engine_t eng;
    dnnl_stream_t stream;
    bool made = !dnnl_engine_create(&eng, dnnl_cpu, 0) && !dnnl_stream_create(&stream, eng, dnnl_stream_default_flags);
    ok(made, "oneDNN engine for the reference reorder");
    if (!made) return;
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++)
        for (int threads = 1; threads <= 2; threads++) {
            const int64_t *d = shapes[k], n = d[0] * d[1] * d[2] * d[3];
            dnnl_dims_t dims = {d[0], d[1], d[2], d[3]};
            dnnl_memory_desc_t plain, blocked;
            dnnl_primitive_desc_t pd = NULL;
            dnnl_primitive_t reorder = NULL;
            dnnl_memory_t from = NULL, to = NULL;
            bool fine = !dnnl_memory_desc_init_by_tag(&plain, 4, dims, dnnl_f32, dnnl_nchw) &&
                        !dnnl_memory_desc_init_by_tag(&blocked, 4, dims, dnnl_bf16, dnnl_nChw16c) &&
                        !dnnl_reorder_primitive_desc_create(&pd, &plain, eng, &blocked, eng, NULL) &&
                        !dnnl_primitive_create(&reorder, pd);
            const size_t bytes = dnnl_memory_desc_get_size(&blocked);
            float *x = malloc(sizeof(float) * (size_t)n);
            uint16_t *want = malloc(bytes), *got = malloc(bytes);
            ag_manual_seed(11);
            ag_tensor *r = ag_randn(AG_SHAPE(n), AG_F32);
            memcpy(x, ag_data(r), sizeof(float) * (size_t)n);
            ag_release(r);
            for (size_t i = 0; i < sizeof special / sizeof special[0]; i++) /* spread over channels and positions */
                memcpy(x + i * 7919 % (size_t)n, &special[i], 4);
            memset(want, 0xa5, bytes);
            memset(got, 0x5a, bytes); /* the padding must be written, not left */
            fine = fine && !dnnl_memory_create(&from, &plain, eng, x) && !dnnl_memory_create(&to, &blocked, eng, want);
            dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}};
            fine = fine && !dnnl_primitive_execute(reorder, stream, 2, args) && !dnnl_stream_wait(stream);
            ag__f32_to_bf16_nchw16c(got, x, d[0], d[1], d[2] * d[3], threads);
            size_t diff = 0;
            for (size_t i = 0; fine && i < bytes / 2; i++) diff += want[i] != got[i];
            ok(fine && diff == 0, "float32 NCHW [%ld, %ld, %ld, %ld] -> bf16 nChw16c on %d thread%s: oneDNN's bits "
               "(%zu of %zu differ)", (long)d[0], (long)d[1], (long)d[2], (long)d[3], threads, threads > 1 ? "s" : "",
               diff, bytes / 2);
            free(x), free(want), free(got);
            dnnl_memory_destroy(from), dnnl_memory_destroy(to);
            dnnl_primitive_destroy(reorder), dnnl_primitive_desc_destroy(pd);
        }
    dnnl_stream_destroy(stream);
    dnnl_engine_destroy(eng);
}

/* Backward follows each node: a graph recorded outside autocast differentiates in
 * float32 even when backward runs inside a region. */
static void backward_follows_node(void) {
    ag_scope_begin();
    ag_manual_seed(3);
    ag_tensor *a = ag_requires_grad_(ag_randn(AG_SHAPE(64, 256), AG_F32), true), *b = ag_randn(AG_SHAPE(256, 64), AG_F32);
    ag_backward(ag_sum(ag_matmul(a, b)));
    ag_tensor *g32 = ag_detach(ag_grad(a));
    ag_zero_grad(a);
    ag_tensor *loss = ag_sum(ag_matmul(a, b));
    ag_autocast_begin(AG_AUTOCAST_BF16, true);
    ag_backward(loss);
    ag_autocast_end();
    ok(memcmp(ag_data(g32), ag_data(ag_grad(a)), 64 * 256 * 4) == 0,
       "a float32 graph differentiated inside a region gives the float32 gradient exactly");
    ag_scope_end();
}

/* cdist's matrix form (‖a‖² + ‖b‖² - 2a·b) stays float32 inside a region, forward and
 * gradient, as PyTorch's cdist: in bf16 close points would cancel to noise. */
static void cdist_stays_f32(void) {
    ag_scope_begin();
    ag_manual_seed(9);
    ag_tensor *a = ag_requires_grad_(ag_randn(AG_SHAPE(40, 16), AG_F32), true), *b = ag_randn(AG_SHAPE(30, 16), AG_F32);
    ag_tensor *y = ag_cdist(a, b, 2);
    ag_backward(ag_sum(y));
    ag_tensor *g = ag_detach(ag_grad(a));
    ag_zero_grad(a);
    ag_autocast_begin(AG_AUTOCAST_BF16, true);
    ag_tensor *yc = ag_cdist(a, b, 2);
    ag_backward(ag_sum(yc));
    ag_autocast_end();
    ok(memcmp(ag_data(y), ag_data(yc), 40 * 30 * 4) == 0 && memcmp(ag_data(g), ag_data(ag_grad(a)), 40 * 16 * 4) == 0,
       "cdist (matrix form) is float32 inside a region, forward and gradient");
    ag_scope_end();
}

/* float64 ignores autocast; gradcheck of the master path passes inside a region. */
static ag_tensor *lin64(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    return ag_linear(in[0], in[1], in[2]);
}

static void float64_untouched(void) {
    ag_scope_begin();
    ag_manual_seed(5);
    ag_tensor *a = ag_randn(AG_SHAPE(40, 70), AG_F64), *b = ag_randn(AG_SHAPE(70, 30), AG_F64);
    ag_tensor *y = ag_matmul(a, b);
    ag_autocast_begin(AG_AUTOCAST_BF16, true);
    ag_tensor *yc = ag_matmul(a, b);
    ag_tensor *in[3] = {ag_requires_grad_(ag_randn(AG_SHAPE(5, 7), AG_F64), true),
                        ag_requires_grad_(ag_randn(AG_SHAPE(4, 7), AG_F64), true),
                        ag_requires_grad_(ag_randn(AG_SHAPE(4), AG_F64), true)};
    ag_status st = ag_gradcheck(lin64, NULL, in, 3, NULL, NULL);
    ag_autocast_end();
    ok(memcmp(ag_data(y), ag_data(yc), 40 * 30 * 8) == 0, "float64 matmul is exact inside a region");
    ok(st == AG_OK, "gradcheck of linear in float64 passes inside a region: %s", st ? ag_last_error() : "ok");
    ag_scope_end();
}

/* linear under autocast rounds x and W once in its forward and dy once in its adjoint, and reads
 * them from there: its gradients are the bits of the products autocast's matmul computes from the
 * same numbers (dx = dy·W, dW = dyᵀ·x), with the gradient of x wanted or not. */
static void linear_reuses_roundings(void) {
    if (!bf16_kernels()) {
        ok(1, "linear's bf16 adjoint # SKIP oneDNN reports no AVX-512 (bf16) kernels on this CPU");
        return;
    }
    for (int want_x = 0; want_x < 2; want_x++) {
        ag_scope_begin();
        ag_manual_seed(5);
        ag_tensor *x = ag_requires_grad_(ag_randn(AG_SHAPE(128, 256), AG_F32), want_x == 1);
        ag_tensor *w = ag_requires_grad_(ag_randn(AG_SHAPE(96, 256), AG_F32), true);
        ag_tensor *b = ag_requires_grad_(ag_randn(AG_SHAPE(96), AG_F32), true), *r = ag_randn(AG_SHAPE(128, 96), AG_F32);
        ag_autocast_begin(AG_AUTOCAST_BF16, true);
        ag_tensor *y = ag_linear(x, w, b), *loss = ag_sum(ag_mul(y, r));
        ag_autocast_end();
        bool fine = ag_backward(loss) == AG_OK;
        ag_no_grad_begin();
        ag_autocast_begin(AG_AUTOCAST_BF16, true);
        ag_tensor *y_ref = ag_add(ag_matmul(x, ag_transpose(w, 0, 1)), b);
        ag_tensor *dx_ref = ag_matmul(r, w), *dw_ref = ag_matmul(ag_transpose(r, 0, 1), x);
        ag_autocast_end();
        ag_no_grad_end();
        double rms, max;
        rel_err(y, y_ref, &rms, &max);
        ok(fine && rms < 1e-6, "linear in bf16 (x %s grad): the forward is autocast's matmul plus the bias (rms %.1e)",
           want_x ? "with" : "without", rms);
        ok(fine && (want_x ? memcmp(ag_data(ag_grad(x)), ag_data(dx_ref), 128 * 256 * 4) == 0 : ag_grad(x) == NULL),
           "linear in bf16 (x %s grad): dx %s", want_x ? "with" : "without",
           want_x ? "has the bits of autocast's dy·W" : "is not computed");
        ok(fine && memcmp(ag_data(ag_grad(w)), ag_data(dw_ref), 96 * 256 * 4) == 0,
           "linear in bf16 (x %s grad): dW has the bits of autocast's dyᵀ·x", want_x ? "with" : "without");
        ag_scope_end();
    }
}

int main(void) {
    regions();
    thread_local_state();
    const bf16_case cases[] = { /* automatic: AG_SHAPE is not a constant */
        {"matmul", f_matmul, 2, {AG_SHAPE(64, 300), AG_SHAPE(300, 48)}},
        {"matmul (x·Wᵀ)", f_matmul_t, 2, {AG_SHAPE(33, 200), AG_SHAPE(70, 200)}},
        {"bmm", f_bmm, 2, {AG_SHAPE(3, 40, 64), AG_SHAPE(3, 64, 50)}},
        {"linear", f_linear, 3, {AG_SHAPE(4, 32, 256), AG_SHAPE(96, 256), AG_SHAPE(96)}},
        {"conv2d", f_conv2d, 3, {AG_SHAPE(4, 8, 14, 14), AG_SHAPE(16, 8, 3, 3), AG_SHAPE(16)}},
        {"conv1d", f_conv1d, 3, {AG_SHAPE(4, 16, 40), AG_SHAPE(12, 16, 5), AG_SHAPE(12)}},
        {"conv_transpose2d", f_conv_t2d, 3, {AG_SHAPE(2, 12, 9, 9), AG_SHAPE(12, 8, 3, 3), AG_SHAPE(8)}},
        /* nChw16c activations, converted by core/bf16_blocked.c: 32 channels, and 20 (a padded block) */
        {"conv2d (32 channels)", f_conv2d, 3, {AG_SHAPE(8, 32, 14, 14), AG_SHAPE(32, 32, 3, 3), AG_SHAPE(32)}},
        {"conv2d (20 channels)", f_conv2d, 3, {AG_SHAPE(4, 20, 9, 9), AG_SHAPE(24, 20, 3, 3), AG_SHAPE(24)}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) against_f32(&cases[i]);
    nchw16c_matches_onednn();
    backward_follows_node();
    linear_reuses_roundings();
    float64_untouched();
    cdist_stays_f32();
    ok(ag_live_tensors() == 0, "no tensor left alive (%ld)", ag_live_tensors());
    return tap_done();
}

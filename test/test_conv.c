/*
 * Convolution and pooling against PyTorch (test/fixtures/conv.safetensors, written by
 * scripts/gen_conv_fixtures.py): outputs and the gradients of sum(y·dy) in float64 and
 * float32, the float32 cases both through oneDNN and through the reference loops.
 * Then what the fixture does not show: gradchecks of the options the op table's row
 * does not take ("same", "valid", conv1d), the oneDNN primitives being cached, empty
 * inputs, and the error messages.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "agrad/agrad.h"
#include "core/dnnl_cache.h"
#include "core/parallel.h"
#include "tap.h"
#include "test/fixture.h"

#ifndef FIXTURES
#define FIXTURES "test/fixtures"
#endif

static ag_state_dict *fx;

/* The fixture "<key>.<name>" (borrowed); NULL if absent. */
static ag_tensor *F(const char *key, const char *name) { return fixture_get(fx, key, name); }

static double worst_seen[2]; /* against PyTorch: float32, float64 */

static void agree(const char *key, const char *path, const char *what, const ag_tensor *got, const ag_tensor *want,
                  ag_dtype dt) {
    double e = fixture_error(worst_seen, got, want, dt), tol = dt == AG_F64 ? 1e-12 : 2e-5;
    ok(e <= tol, "%s %s (%s): %s matches PyTorch (worst relative error %.2g)", key, ag_dtype_name(dt), path, what, e);
}

/* A function under test: y from the case's inputs and its int64 options; *indices
 * may be set (max pooling). */
typedef ag_tensor *(*case_fn)(ag_tensor *x, ag_tensor *w, ag_tensor *b, const int64_t *o, ag_tensor **indices);

static ag_conv_padding padding_mode(int64_t m) {
    return m == 1 ? AG_PADDING_SAME : m == 2 ? AG_PADDING_VALID : AG_PADDING_EXPLICIT;
}

/* o: sh sw ph pw dh dw groups mode bias */
static ag_tensor *run_conv2d(ag_tensor *x, ag_tensor *w, ag_tensor *b, const int64_t *o, ag_tensor **indices) {
    (void)indices;
    ag_conv_opts c = {.stride = {o[0], o[1]}, .padding = {o[2], o[3]}, .dilation = {o[4], o[5]}, .groups = o[6],
                      .padding_mode = padding_mode(o[7])};
    return ag_conv2d(x, w, b, &c);
}

/* o: s p d groups mode bias */
static ag_tensor *run_conv1d(ag_tensor *x, ag_tensor *w, ag_tensor *b, const int64_t *o, ag_tensor **indices) {
    (void)indices;
    ag_conv_opts c = {.stride = {o[0]}, .padding = {o[1]}, .dilation = {o[2]}, .groups = o[3],
                      .padding_mode = padding_mode(o[4])};
    return ag_conv1d(x, w, b, &c);
}

/* o: kh kw sh sw ph pw dh dw ceil */
static ag_tensor *run_max_pool2d(ag_tensor *x, ag_tensor *w, ag_tensor *b, const int64_t *o, ag_tensor **indices) {
    (void)w, (void)b;
    ag_pool_opts p = {.kernel = {o[0], o[1]}, .stride = {o[2], o[3]}, .padding = {o[4], o[5]}, .dilation = {o[6], o[7]},
                      .ceil_mode = o[8]};
    return ag_max_pool2d(x, &p, indices);
}

/* o: kh kw sh sw ph pw ceil include_pad */
static ag_tensor *run_avg_pool2d(ag_tensor *x, ag_tensor *w, ag_tensor *b, const int64_t *o, ag_tensor **indices) {
    (void)w, (void)b, (void)indices;
    ag_pool_opts p = {.kernel = {o[0], o[1]}, .stride = {o[2], o[3]}, .padding = {o[4], o[5]}, .ceil_mode = o[6],
                      .exclude_pad = !o[7]};
    return ag_avg_pool2d(x, &p);
}

/* o: oh ow */
static ag_tensor *run_adaptive(ag_tensor *x, ag_tensor *w, ag_tensor *b, const int64_t *o, ag_tensor **indices) {
    (void)w, (void)b, (void)indices;
    return ag_adaptive_avg_pool2d(x, o[0], o[1]);
}

/* o: k s p d ceil */
static ag_tensor *run_max_pool1d(ag_tensor *x, ag_tensor *w, ag_tensor *b, const int64_t *o, ag_tensor **indices) {
    (void)w, (void)b;
    ag_pool_opts p = {.kernel = {o[0]}, .stride = {o[1]}, .padding = {o[2]}, .dilation = {o[3]}, .ceil_mode = o[4]};
    return ag_max_pool1d(x, &p, indices);
}

/* o: k s p ceil include_pad */
static ag_tensor *run_avg_pool1d(ag_tensor *x, ag_tensor *w, ag_tensor *b, const int64_t *o, ag_tensor **indices) {
    (void)w, (void)b, (void)indices;
    ag_pool_opts p = {.kernel = {o[0]}, .stride = {o[1]}, .padding = {o[2]}, .ceil_mode = o[3], .exclude_pad = !o[4]};
    return ag_avg_pool1d(x, &p);
}

/* o: sh sw ph pw oph opw dh dw groups bias */
static ag_tensor *run_conv_transpose2d(ag_tensor *x, ag_tensor *w, ag_tensor *b, const int64_t *o, ag_tensor **indices) {
    (void)indices;
    ag_conv_transpose_opts c = {.stride = {o[0], o[1]}, .padding = {o[2], o[3]}, .output_padding = {o[4], o[5]},
                                .dilation = {o[6], o[7]}, .groups = o[8]};
    return ag_conv_transpose2d(x, w, b, &c);
}

/* o: s p op d groups bias */
static ag_tensor *run_conv_transpose1d(ag_tensor *x, ag_tensor *w, ag_tensor *b, const int64_t *o, ag_tensor **indices) {
    (void)indices;
    ag_conv_transpose_opts c = {.stride = {o[0]}, .padding = {o[1]}, .output_padding = {o[2]}, .dilation = {o[3]},
                                .groups = o[4]};
    return ag_conv_transpose1d(x, w, b, &c);
}

/* o: oh ow */
static ag_tensor *run_adaptive_max(ag_tensor *x, ag_tensor *w, ag_tensor *b, const int64_t *o, ag_tensor **indices) {
    (void)w, (void)b;
    return ag_adaptive_max_pool2d(x, o[0], o[1], indices);
}

/* o: mode value*4 npad pad... */
static ag_tensor *run_pad(ag_tensor *x, ag_tensor *w, ag_tensor *b, const int64_t *o, ag_tensor **indices) {
    (void)w, (void)b, (void)indices;
    return ag_pad(x, (int)o[2], o + 3, (ag_pad_mode)o[0], (double)o[1] / 4);
}

/* o: mode align_corners oh ow sh*1000 sw*1000 */
static ag_tensor *run_interpolate(ag_tensor *x, ag_tensor *w, ag_tensor *b, const int64_t *o, ag_tensor **indices) {
    (void)w, (void)b, (void)indices;
    ag_interp_opts p = {.size = {o[2], o[3]}, .scale_factor = {(double)o[4] / 1000, (double)o[5] / 1000},
                        .mode = (ag_interp_mode)o[0], .align_corners = o[1]};
    return ag_interpolate(x, &p);
}

static char case_key[128]; /* "<key>.<dt>" of the case running: runners read extra inputs under it */

/* o: kh kw sh sw ph pw oh ow; the indices under "<key>.<dt>.ind" */
static ag_tensor *run_max_unpool2d(ag_tensor *x, ag_tensor *w, ag_tensor *b, const int64_t *o, ag_tensor **indices) {
    (void)w, (void)b, (void)indices;
    ag_pool_opts p = {.kernel = {o[0], o[1]}, .stride = {o[2], o[3]}, .padding = {o[4], o[5]}};
    return ag_max_unpool2d(x, F(case_key, "ind"), &p, o[6], o[7]);
}

/* Runs case key in dtype dt: compares y and every gradient the fixture holds. */
static void check_case(const char *key, ag_dtype dt, case_fn fn, const char *path) {
    ag_scope_begin();
    char k[128];
    snprintf(k, sizeof k, "%s.%s", key, dt == AG_F64 ? "f64" : "f32");
    snprintf(case_key, sizeof case_key, "%s", k);
    const char *names[3] = {"x", "w", "b"};
    ag_tensor *in[3] = {NULL, NULL, NULL};
    for (int i = 0; i < 3; i++) {
        ag_tensor *t = F(k, names[i]);
        if (t) in[i] = ag_requires_grad_(ag_clone(t), true);
    }
    ag_tensor *opts = F(key, "opts");
    int64_t o[16] = {0};
    ag_copy_to(opts, o, ag_numel(opts), AG_I64);
    ag_tensor *idx = NULL;
    ag_tensor *y = fn(in[0], in[1], in[2], o, F(k, "indices") ? &idx : NULL);
    if (!y) diag("%s", ag_last_error());
    agree(key, path, "y", y, F(k, "y"), dt);
    if (F(k, "indices")) ok(idx && worst(idx, F(k, "indices")) == 0, "%s %s (%s): indices match PyTorch's", key,
                            ag_dtype_name(dt), path);
    ag_status st = y ? ag_backward(ag_sum(ag_mul(y, F(k, "dy")))) : AG_ERR_ARG;
    ok(st == AG_OK, "%s %s: backward", key, ag_dtype_name(dt));
    const char *grads[3] = {"dx", "dw", "db"};
    for (int i = 0; i < 3; i++)
        if (in[i]) agree(key, path, grads[i], ag_grad(in[i]), F(k, grads[i]), dt);
    ag_scope_end();
}

/* Every case "<fn>.<i>" of the fixture, float64 on the default path, float32 through
 * oneDNN (the default) and through the reference loops. */
static void check_fixture(const char *name, case_fn fn) {
    int n = 0;
    for (;; n++) {
        char key[64];
        snprintf(key, sizeof key, "%s.%d", name, n);
        if (!F(key, "opts")) break;
        check_case(key, AG_F64, fn, "default");
        check_case(key, AG_F32, fn, "default");
        ag__backend = AG_BACKEND_REFERENCE;
        check_case(key, AG_F32, fn, "reference loops");
        ag__backend = AG_BACKEND_AUTO;
    }
    ok(n >= 2, "the fixture has %d %s cases", n, name);
}

/* pad_backward and interpolate_backward, the adjoints of pad and interpolate as ops, against the
 * gradients PyTorch gave pad and interpolate: dx = the adjoint op of the fixture's dy. */
static void check_adjoint_ops(const char *name) {
    const bool pad = strcmp(name, "pad") == 0;
    for (int n = 0;; n++) {
        char key[64], k[128];
        snprintf(key, sizeof key, "%s.%d", name, n);
        ag_tensor *opts = F(key, "opts");
        if (!opts) break;
        int64_t o[16] = {0};
        ag_copy_to(opts, o, ag_numel(opts), AG_I64);
        for (int d = 0; d < 2; d++) {
            const ag_dtype dt = d ? AG_F32 : AG_F64;
            snprintf(k, sizeof k, "%s.%s", key, d ? "f32" : "f64");
            ag_scope_begin();
            ag_tensor *dy = F(k, "dy");
            const ag_shape xs = ag_shape_of(F(k, "x"));
            ag_interp_opts p = {.size = {o[2], o[3]}, .scale_factor = {(double)o[4] / 1000, (double)o[5] / 1000},
                                .mode = (ag_interp_mode)o[0], .align_corners = o[1]};
            ag_tensor *dx = pad ? ag_pad_backward(dy, xs, (int)o[2], o + 3, (ag_pad_mode)o[0])
                                : ag_interpolate_backward(dy, xs, &p);
            agree(key, "default", pad ? "pad_backward(dy)" : "interpolate_backward(dy)", dx, F(k, "dx"), dt);
            ag_scope_end();
        }
    }
}

/* Third derivatives through pad and interpolate: gradgradcheck of x -> d Σ f(x)³ / dx, whose
 * second pass runs each op's backward_graph (the *_backward op) and then that op's own (the
 * forward op again), so the chain closes. */
static ag_tensor *cubed_grad(ag_tensor *const *in, int n, void *ctx) {
    (void)n;
    const int which = *(const int *)ctx;
    /* gradgradcheck's finite differences call this with inputs that do not require grad, in
     * no-grad mode: the gradient is then taken at a leaf copy (only its values are used) */
    ag_tensor *x = ag_requires_grad(in[0]) ? in[0] : ag_requires_grad_(ag_clone(in[0]), true), *g = NULL;
    ag_enable_grad_begin();
    ag_tensor *y = which == 0   ? ag_pad(x, 4, (int64_t[]){2, 1, 1, 2}, AG_PAD_REFLECT, 0)
                   : which == 1 ? ag_pad(x, 4, (int64_t[]){1, 2, 0, 3}, AG_PAD_CIRCULAR, 0)
                   : which == 2 ? ag_interpolate(x, &(ag_interp_opts){.scale_factor = {1.7, 0.8}, .mode = AG_INTERP_BILINEAR})
                                : ag_interpolate(x, &(ag_interp_opts){.size = {5, 7}});
    ag_tensor *s = ag_sum(ag_pow_scalar(y, 3));
    ag_grad_opts create = {.create_graph = true};
    const bool got = s && ag_autograd_grad(&s, 1, &x, 1, NULL, &create, &g) == AG_OK;
    ag_enable_grad_end();
    return got ? g : NULL;
}

static void test_third_order(void) {
    const char *what[4] = {"pad (reflect)", "pad (circular)", "interpolate (bilinear by 1.7 x 0.8)", "interpolate (nearest to 5 x 7)"};
    for (int which = 0; which < 4; which++) {
        ag_scope_begin();
        ag_tensor *x = ag_requires_grad_(ag_randn(AG_SHAPE(1, 2, 3, 4), AG_F64), true);
        ag_gradcheck_report rep;
        ag_status st = ag_gradgradcheck(cubed_grad, &which, &x, 1, NULL, &rep);
        ok(st == AG_OK, "third derivatives of Σ %s³ (%lld entries)%s%s", what[which], (long long)rep.checked,
           st ? ": " : "", st ? ag_last_error() : "");
        ag_scope_end();
    }
}

/* ---- gradchecks of the options the op table's row does not take ------------------------------------ */
typedef struct conv_call {
    ag_conv_opts o;
    bool one_d;
} conv_call;

static ag_tensor *call_conv(ag_tensor *const *in, int n, void *ctx) {
    const conv_call *c = ctx;
    return (c->one_d ? ag_conv1d : ag_conv2d)(in[0], in[1], n > 2 ? in[2] : NULL, &c->o);
}

static void gradcheck_conv(const char *what, conv_call c, ag_shape xs, ag_shape ws, bool bias) {
    ag_scope_begin();
    ag_tensor *in[3] = {ag_requires_grad_(ag_randn(xs, AG_F64), true), ag_requires_grad_(ag_randn(ws, AG_F64), true),
                        ag_requires_grad_(ag_randn(AG_SHAPE(ws.dim[0]), AG_F64), true)};
    ag_gradcheck_report r;
    ag_status st = ag_gradcheck(call_conv, &c, in, bias ? 3 : 2, NULL, &r);
    ok(st == AG_OK, "gradcheck %s (%lld entries, worst error %.2g)", what, (long long)r.checked, r.error);
    ag_scope_end();
}

static void test_gradchecks(void) {
    gradcheck_conv("conv2d padding=\"same\", even kernel, dilation 2",
                   (conv_call){{.padding_mode = AG_PADDING_SAME, .dilation = {2, 1}}, false}, AG_SHAPE(2, 2, 5, 6),
                   AG_SHAPE(3, 2, 2, 4), true);
    gradcheck_conv("conv2d padding=\"valid\", stride 2, groups 2", (conv_call){{.padding_mode = AG_PADDING_VALID,
                   .stride = {2, 2}, .groups = 2}, false}, AG_SHAPE(1, 4, 5, 5), AG_SHAPE(4, 2, 3, 2), false);
    gradcheck_conv("conv1d stride 2, padding 1, dilation 2", (conv_call){{.stride = {2}, .padding = {1}, .dilation = {2}},
                   true}, AG_SHAPE(2, 3, 9), AG_SHAPE(2, 3, 3), true);
    gradcheck_conv("conv1d padding=\"same\", groups 3", (conv_call){{.padding_mode = AG_PADDING_SAME, .groups = 3}, true},
                   AG_SHAPE(2, 3, 7), AG_SHAPE(6, 1, 4), true);
}

/* ---- the oneDNN path ----------------------------------------------------------------------------------- */
static void test_primitives_cached(void) {
    ag_scope_begin();
    ag_conv_opts o = {.stride = {2, 1}, .padding = {1, 1}, .groups = 2};
    ag_tensor *x = ag_requires_grad_(ag_randn(AG_SHAPE(4, 6, 13, 11), AG_F32), true);
    ag_tensor *w = ag_requires_grad_(ag_randn(AG_SHAPE(8, 3, 3, 3), AG_F32), true);
    ag_tensor *b = ag_requires_grad_(ag_randn(AG_SHAPE(8), AG_F32), true);
    long before = ag__dnnl_primitives_created();
    if (!ag_onednn_enabled()) { /* AGRAD_ONEDNN=0 (the valgrind run): the reference loops, and no primitive */
        ag_backward(ag_sum(ag_conv2d(x, w, b, &o)));
        ok(ag__dnnl_primitives_created() == before && ag_grad(w),
           "with oneDNN off (AGRAD_ONEDNN=0) conv2d and its backward make no oneDNN primitive");
        ag_scope_end();
        return;
    }
    ag_backward(ag_sum(ag_conv2d(x, w, b, &o)));
    long made = ag__dnnl_primitives_created() - before;
    ok(made == 3, "a float32 conv2d forward and backward made %ld oneDNN primitives (forward, data, weights)", made);
    ag_zero_grad(x), ag_zero_grad(w), ag_zero_grad(b);
    before = ag__dnnl_primitives_created();
    long lookups = ag__dnnl_lookups();
    ag_backward(ag_sum(ag_conv2d(x, w, b, &o)));
    ok(ag__dnnl_primitives_created() == before && ag__dnnl_lookups() - lookups == 3,
       "the second call reuses the three cached primitives (%ld made, %ld lookups)",
       ag__dnnl_primitives_created() - before, ag__dnnl_lookups() - lookups);
    /* The same values through the reference loops. */
    ag_tensor *gx = ag_clone(ag_grad(x)), *gw = ag_clone(ag_grad(w)), *y = ag_conv2d(x, w, b, &o);
    ag_zero_grad(x), ag_zero_grad(w);
    ag__backend = AG_BACKEND_REFERENCE;
    ag_tensor *yr = ag_conv2d(x, w, b, &o);
    ag_backward(ag_sum(yr));
    ag__backend = AG_BACKEND_AUTO;
    ok(worst(y, yr) < 1e-5 && worst(gx, ag_grad(x)) < 1e-5 && worst(gw, ag_grad(w)) < 1e-4,
       "oneDNN and the reference loops agree (y %.2g, dx %.2g, dw %.2g)", worst(y, yr), worst(gx, ag_grad(x)),
       worst(gw, ag_grad(w)));
    ag_scope_end();
}

/* max |a - b| over the elements over max |b| (b float64): the error of a float32 sum of products
 * measured against the size of the result, as the rounding of its terms bounds it; INFINITY when
 * the shapes differ, either is NULL or an error is NaN. */
static double scaled_error(const ag_tensor *a, const ag_tensor *b) {
    if (!a || !b || ag_numel(a) != ag_numel(b)) return INFINITY;
    int64_t n = ag_numel(a);
    double *x = malloc(sizeof(double) * (size_t)(n + 1)), *y = malloc(sizeof(double) * (size_t)(n + 1)), e = 0, m = 0;
    ag_copy_to(a, x, n, AG_F64);
    ag_copy_to(b, y, n, AG_F64);
    for (int64_t i = 0; i < n; i++) {
        const double d = fabs(x[i] - y[i]);
        if (!(d <= e)) e = isnan(d) ? INFINITY : d;
        m = fmax(m, fabs(y[i]));
    }
    free(x);
    free(y);
    return m > 0 ? e / m : e;
}

/* The implementation name of the primitive this thread's last oneDNN lookup gave ("none" if none)
 * and its kind in *kind. */
static const char *last_impl(int *kind) {
    ag_dnnl_key key;
    ag_dnnl_prim *p = ag__dnnl_last(&key);
    const_dnnl_primitive_desc_t pd = NULL;
    const char *impl = "none";
    if (p && !dnnl_primitive_get_primitive_desc(p->prim, &pd)) dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
    *kind = p ? key.kind : 0;
    return impl ? impl : "none";
}

/* Whether oneDNN has its AVX-512 kernels (the blocked direct and Winograd convolutions) on this
 * CPU; valgrind's virtual CPU has not. */
static bool avx512_kernels(void) {
    const dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
    return ((unsigned)isa & (unsigned)dnnl_cpu_isa_avx512_core) == (unsigned)dnnl_cpu_isa_avx512_core;
}

/* At the shape of a small CNN's second convolution the primitives work in the blocked layouts oneDNN
 * prefers (its JIT kernels, not im2col + GEMM on plain NCHW), reordering the caller's plain buffers in
 * and out, and agree with float64 within 1e-5 of each result's largest magnitude (float32's rounding
 * over 288-term sums; Winograd's transforms, which this shape runs where oneDNN has them, make the
 * error of y and dx 2-5 times the direct kernel's, still below 3e-6). */
static void test_blocked_layouts(void) {
    if (!ag_onednn_enabled()) return;
    ag_scope_begin();
    ag_conv_opts o = {.padding = {1, 1}};
    ag_tensor *v[3] = {ag_randn(AG_SHAPE(8, 32, 14, 14), AG_F64), ag_mul_scalar(ag_randn(AG_SHAPE(64, 32, 3, 3), AG_F64), 0.06),
                       ag_randn(AG_SHAPE(64), AG_F64)};
    ag_tensor *in[2][3], *y[2];
    for (int k = 0; k < 2; k++) { /* k = 0: float32 through oneDNN; 1: float64, the reference loops */
        for (int i = 0; i < 3; i++) in[k][i] = ag_requires_grad_(k ? ag_clone(v[i]) : ag_to_dtype(v[i], AG_F32), true);
        y[k] = ag_conv2d(in[k][0], in[k][1], in[k][2], &o);
        if (k == 0) {
            int kind;
            const char *impl = last_impl(&kind);
            ag_dnnl_key key;
            ag_dnnl_prim *p = ag__dnnl_last(&key);
            ok(p && kind == AG_DNNL_CONV_FWD && p->reorder[0] && p->reorder[2] && !strstr(impl, "gemm"),
               "conv2d of [8, 32, 14, 14] by [64, 32, 3, 3] runs %s with x and y reordered to its layout", impl);
        }
        ag_backward(ag_sum(ag_mul(y[k], y[k])));
    }
    const double e[4] = {scaled_error(y[0], y[1]), scaled_error(ag_grad(in[0][0]), ag_grad(in[1][0])),
                         scaled_error(ag_grad(in[0][1]), ag_grad(in[1][1])), scaled_error(ag_grad(in[0][2]), ag_grad(in[1][2]))};
    ok(e[0] < 1e-5 && e[1] < 1e-5 && e[2] < 1e-5 && e[3] < 1e-5,
       "blocked float32 and float64 agree (y %.2g, dx %.2g, dw %.2g, db %.2g of their largest magnitude)", e[0], e[1],
       e[2], e[3]);
    ag_scope_end();
}

/* A batch whose activations exceed the cache runs in chunks of images (core/dnnl_conv.c,
 * chunk_images): [25, 3, 28, 28] by [32, 3, 3, 3] (2.7 MB of float32 activations) in chunks of
 * equal size but the last (a primitive of fewer images), the weights reordered once, each
 * chunk's dy once for both backward primitives,
 * the chunks' weight and bias gradients summed.  y, dx, dw and db agree with float64 within 1e-5 of
 * their largest magnitude, as one call does; conv_transpose2d and conv2d_weight (one backward
 * primitive each) likewise.  Under bf16 autocast the chunks run the bf16 primitives (bf16's
 * rounding: 1e-2).  On 1, 2 and 3 threads: on several, each thread runs its share of the batch
 * (12 and 13 images; 8, 8 and 9) chunk by chunk on primitives of its own (split_threads), the
 * threads' weight and bias gradients summed. */
static void test_batch_chunks(void) {
    if (!ag_onednn_enabled()) return;
    ag_scope_begin();
    ag_conv_opts o = {.padding = {1, 1}};
    ag_tensor *v[4] = {ag_randn(AG_SHAPE(25, 3, 28, 28), AG_F64), ag_mul_scalar(ag_randn(AG_SHAPE(32, 3, 3, 3), AG_F64), 0.2),
                       ag_randn(AG_SHAPE(32), AG_F64), ag_randn(AG_SHAPE(25, 32, 28, 28), AG_F64)};
    const int threads = ag_get_num_threads();
    for (int run = 0; run < 6; run++) {
        const int bf = run % 2, nt = run / 2 + 1;
        ag_set_num_threads(nt);
        ag_tensor *in[2][3], *y[2], *t[2], *gw[2];
        ag_dnnl_key key = {0};
        for (int k = 0; k < 2; k++) { /* k = 0: float32 through oneDNN; 1: float64, the reference loops */
            for (int i = 0; i < 3; i++) in[k][i] = ag_requires_grad_(k ? ag_clone(v[i]) : ag_to_dtype(v[i], AG_F32), true);
            ag_tensor *g = k ? v[3] : ag_to_dtype(v[3], AG_F32);
            if (bf && !k) ag_autocast_begin(AG_AUTOCAST_BF16, true);
            y[k] = ag_conv2d(in[k][0], in[k][1], in[k][2], &o);
            if (!k && !ag__dnnl_last(&key)) key.dims[0] = -1; /* the last chunk's primitive */
            ag_backward_ex(y[k], g, false);
            t[k] = ag_conv_transpose2d(g, in[k][1], NULL, &(ag_conv_transpose_opts){.padding = {1, 1}});
            gw[k] = ag_conv2d_weight(in[k][0], AG_SHAPE(32, 3, 3, 3), g, &o);
            if (bf && !k) ag_autocast_end();
        }
        const double tol = bf ? 1e-2 : 1e-5;
        const double e[6] = {scaled_error(y[0], y[1]), scaled_error(ag_grad(in[0][0]), ag_grad(in[1][0])),
                             scaled_error(ag_grad(in[0][1]), ag_grad(in[1][1])),
                             scaled_error(ag_grad(in[0][2]), ag_grad(in[1][2])), scaled_error(t[0], t[1]),
                             scaled_error(gw[0], gw[1])};
        ok(key.dims[0] > 0 && key.dims[0] < 25 && e[0] < tol && e[1] < tol && e[2] < tol && e[3] < tol && e[4] < tol && e[5] < tol,
           "%s conv2d of [25, 3, 28, 28] in chunks on %d threads (the last: %lld images) agrees with float64 (y %.2g, "
           "dx %.2g, dw %.2g, db %.2g, conv_transpose2d %.2g, conv2d_weight %.2g)", bf ? "bf16" : "float32",
           ag_get_num_threads(), (long long)key.dims[0], e[0], e[1], e[2], e[3], e[4], e[5]);
    }
    ag_set_num_threads(threads);
    ag_scope_end();
}

/* The oneDNN algorithm per shape (core/dnnl_conv.c, winograd_pays): Winograd for the forward and both
 * backward primitives of a 3x3, stride-1 convolution with at least 16 input and output channels and
 * 2^24 multiply-adds; direct with one input channel (a first layer, where Winograd was 8x slower),
 * below 2^24 multiply-adds, or with a stride.  Then a Winograd convolution of 256 channels, whose
 * kernels write their scratch buffers with aligned streaming stores (they faulted on malloc's
 * 16-byte alignment before ag__dnnl_scratch), and the scratch buffers' alignment itself. */
static void test_winograd(void) {
    for (size_t bytes = 1; bytes < ((size_t)1 << 24); bytes = bytes * 3 + 1) {
        void *p = ag__dnnl_scratch(bytes);
        const bool aligned = p && (uintptr_t)p % 64 == 0;
        if (p) memset(p, 1, bytes);
        free(p);
        if (!aligned) {
            ok(0, "ag__dnnl_scratch(%zu) is 64-byte aligned", bytes);
            return;
        }
    }
    ok(1, "ag__dnnl_scratch gives 64-byte aligned buffers (1 B to 16 MiB)");
    if (!ag_onednn_enabled() || !avx512_kernels()) {
        ok(1, "Winograd convolutions # SKIP oneDNN off or no AVX-512 kernels on this CPU");
        return;
    }
    ag_scope_begin();
    const struct {
        int64_t n, c, h, o, stride;
        bool wino;
    } cases[] = {{8, 32, 14, 64, 1, true}, {8, 1, 28, 32, 1, false}, {2, 16, 8, 16, 1, false}, {8, 32, 28, 64, 2, false}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ag_conv_opts o = {.padding = {1, 1}, .stride = {cases[i].stride, cases[i].stride}};
        ag_tensor *x = ag_requires_grad_(ag_randn(AG_SHAPE(cases[i].n, cases[i].c, cases[i].h, cases[i].h), AG_F32), true);
        ag_tensor *w = ag_requires_grad_(ag_randn(AG_SHAPE(cases[i].o, cases[i].c, 3, 3), AG_F32), true);
        ag_tensor *y = ag_conv2d(x, w, NULL, &o);
        int kind[3];
        const char *impl[3];
        impl[0] = last_impl(&kind[0]);
        ag_tensor *dy = ag_ones_like(y);
        ag_conv_transpose_opts t = {.padding = {1, 1}, .stride = {cases[i].stride, cases[i].stride},
                                    .output_padding = {cases[i].stride - 1, cases[i].stride - 1}};
        ag_tensor *dx = ag_conv_transpose2d(dy, w, NULL, &t); /* conv2d's backward-data primitive */
        impl[1] = last_impl(&kind[1]);
        ag_backward_ex(y, dy, false); /* backward data, then backward weights */
        impl[2] = last_impl(&kind[2]);
        bool right = dx && kind[0] == AG_DNNL_CONV_FWD && kind[1] == AG_DNNL_CONV_BWD_DATA &&
                     kind[2] == AG_DNNL_CONV_BWD_WEIGHTS;
        for (int k = 0; k < 3; k++) right = right && (strstr(impl[k], "wino") != NULL) == cases[i].wino;
        ok(right, "conv2d of [%lld, %lld, %lld, %lld] by [%lld, %lld, 3, 3] stride %lld runs %s: %s, %s, %s",
           (long long)cases[i].n, (long long)cases[i].c, (long long)cases[i].h, (long long)cases[i].h,
           (long long)cases[i].o, (long long)cases[i].c, (long long)cases[i].stride,
           cases[i].wino ? "Winograd" : "direct", impl[0], impl[1], impl[2]);
    }
    ag_tensor *x = ag_randn(AG_SHAPE(8, 256, 14, 14), AG_F32), *w = ag_mul_scalar(ag_randn(AG_SHAPE(256, 256, 3, 3), AG_F32), 0.02);
    ag_tensor *y = ag_conv2d(x, w, NULL, &(ag_conv_opts){.padding = {1, 1}});
    int kind;
    const char *impl = last_impl(&kind);
    ok(y && isfinite(ag_item(ag_sum(ag_abs(y)))) && strstr(impl, "wino"), "conv2d of [8, 256, 14, 14] by [256, 256, 3, 3] runs %s", impl);
    ag_scope_end();
}

/* Each input alone requiring grad gets the gradient it gets when all do (the adjoint computes only what
 * is wanted: bias alone runs the reference sum, weights alone skip dx). */
static void test_partial_grads(ag_dtype dt) {
    ag_scope_begin();
    ag_conv_opts o = {.stride = {1, 2}, .padding = {2, 1}, .dilation = {2, 1}, .groups = 3};
    ag_tensor *v[3] = {ag_randn(AG_SHAPE(2, 6, 7, 8), dt), ag_randn(AG_SHAPE(9, 2, 3, 3), dt), ag_randn(AG_SHAPE(9), dt)};
    ag_tensor *all[3], *dy = NULL;
    for (int i = 0; i < 3; i++) all[i] = ag_requires_grad_(ag_clone(v[i]), true);
    ag_tensor *y = ag_conv2d(all[0], all[1], all[2], &o);
    dy = y ? ag_randn(ag_shape_of(y), dt) : NULL;
    ag_backward(ag_sum(ag_mul(y, dy)));
    const char *names[3] = {"x", "w", "b"};
    for (int k = 0; k < 3; k++) {
        ag_tensor *in[3];
        for (int i = 0; i < 3; i++) in[i] = i == k ? ag_requires_grad_(ag_clone(v[i]), true) : v[i];
        ag_backward(ag_sum(ag_mul(ag_conv2d(in[0], in[1], in[2], &o), dy)));
        double e = worst(ag_grad(in[k]), ag_grad(all[k]));
        ok(e < (dt == AG_F64 ? 1e-12 : 1e-5), "%s: %s alone requiring grad gets the same gradient (%.2g)", ag_dtype_name(dt),
           names[k], e);
    }
    ag_scope_end();
}

/* ---- empty inputs --------------------------------------------------------------------------------------- */
static void test_empty(void) {
    ag_scope_begin();
    ag_tensor *x = ag_requires_grad_(ag_randn(AG_SHAPE(0, 3, 5, 5), AG_F32), true);
    ag_tensor *w = ag_requires_grad_(ag_randn(AG_SHAPE(4, 3, 3, 3), AG_F32), true);
    ag_tensor *b = ag_requires_grad_(ag_randn(AG_SHAPE(4), AG_F32), true);
    ag_tensor *y = ag_conv2d(x, w, b, NULL);
    ok(y && ag_ndim(y) == 4 && ag_shape_of(y).dim[0] == 0 && ag_shape_of(y).dim[2] == 3, "an empty batch gives [0, 4, 3, 3]");
    ok(y && ag_backward(ag_sum(y)) == AG_OK && ag_grad(w) && ag_item(ag_sum(ag_grad(w))) == 0 &&
       ag_item(ag_sum(ag_grad(b))) == 0, "its weight and bias gradients are zeros");
    /* No input channel: y is the bias. */
    ag_tensor *x0 = ag_randn(AG_SHAPE(2, 0, 4, 4), AG_F64), *w0 = ag_randn(AG_SHAPE(3, 0, 2, 2), AG_F64);
    ag_tensor *b0 = ag_from_data((double[]){1, 2, 3}, AG_SHAPE(3), AG_F64);
    ag_tensor *y0 = ag_conv2d(x0, w0, b0, NULL);
    ok(y0 && ag_numel(y0) == 2 * 3 * 3 * 3 && ag_item(ag_sum(y0)) == 2 * 9 * 6.0, "no input channel: y is the bias");
    ag_scope_end();
}

/* ---- errors ---------------------------------------------------------------------------------------------- */
static void fails(ag_tensor *y, ag_status want, const char *needle, const char *what) {
    const char *msg = ag_last_error();
    ok(!y && ag_last_status() == want && msg && strstr(msg, needle), "%s: %s", what, msg ? msg : "(no message)");
}

static void test_errors(void) {
    ag_scope_begin();
    ag_tensor *x = ag_randn(AG_SHAPE(2, 6, 5, 5), AG_F64), *w = ag_randn(AG_SHAPE(4, 3, 3, 3), AG_F64);
    fails(ag_conv2d(x, w, NULL, &(ag_conv_opts){.groups = 4}), AG_ERR_SHAPE,
          "conv2d: input [2, 6, 5, 5] has 6 channels, not divisible by groups=4", "channels not divisible by groups");
    fails(ag_conv2d(x, ag_randn(AG_SHAPE(4, 2, 3, 3), AG_F64), NULL, &(ag_conv_opts){.groups = 3}), AG_ERR_SHAPE,
          "conv2d: weight [4, 2, 3, 3] has 4 out channels, not divisible by groups=3", "out channels not divisible");
    fails(ag_conv2d(x, w, NULL, NULL), AG_ERR_SHAPE, "weight [4, 3, 3, 3] expects 3 input channels per group, input "
          "[2, 6, 5, 5] has 6 / groups=1", "weight channels differ from the input's");
    fails(ag_conv2d(x, ag_randn(AG_SHAPE(4, 6, 6, 3), AG_F64), NULL, NULL), AG_ERR_SHAPE,
          "conv2d: kernel [4, 6, 6, 3] (6 wide with dilation 1) does not fit the padded input (5 wide) of [2, 6, 5, 5]",
          "kernel larger than the input");
    fails(ag_conv2d(x, ag_randn(AG_SHAPE(4, 6, 3, 3), AG_F64), NULL, &(ag_conv_opts){.dilation = {1, 3}}), AG_ERR_SHAPE,
          "(7 wide with dilation 3) does not fit the padded input (5 wide)", "dilated kernel larger than the input");
    ok(ag_conv2d(x, ag_randn(AG_SHAPE(4, 6, 6, 3), AG_F64), NULL, &(ag_conv_opts){.padding = {1, 0}}) != NULL,
       "a kernel that fits the padded input is accepted");
    fails(ag_conv2d(x, ag_randn(AG_SHAPE(4, 6, 3, 3), AG_F64), ag_randn(AG_SHAPE(5), AG_F64), NULL), AG_ERR_SHAPE,
          "conv2d: bias [5] does not match weight [4, 6, 3, 3] (expected [4])", "bias of the wrong size");
    fails(ag_conv2d(x, ag_randn(AG_SHAPE(4, 6, 3), AG_F64), NULL, NULL), AG_ERR_SHAPE,
          "conv2d: weight [4, 6, 3] must have 4 dims", "weight of 3 dims");
    fails(ag_conv2d(ag_randn(AG_SHAPE(6, 5), AG_F64), w, NULL, NULL), AG_ERR_SHAPE,
          "conv2d: input [6, 5] must have 4 dims (batched) or 3 (unbatched)", "input of 2 dims");
    fails(ag_conv2d(x, w, NULL, &(ag_conv_opts){.stride = {-1, 1}}), AG_ERR_ARG, "conv2d: negative stride",
          "negative stride");
    fails(ag_conv2d(x, w, NULL, &(ag_conv_opts){.groups = -2}), AG_ERR_ARG, "conv2d: groups=-2 must be positive",
          "negative groups");
    fails(ag_conv2d(x, ag_randn(AG_SHAPE(4, 6, 3, 3), AG_F64), NULL,
                    &(ag_conv_opts){.stride = {2, 2}, .padding_mode = AG_PADDING_SAME}),
          AG_ERR_ARG, "conv2d: padding=\"same\" is not supported for strided convolutions", "\"same\" with a stride");
    fails(ag_conv2d(x, ag_randn(AG_SHAPE(4, 6, 3, 3), AG_F64), NULL, &(ag_conv_opts){.padding = {INT64_MAX, 0}}),
          AG_ERR_ARG, "conv2d: padding", "a padding that overflows");
    fails(ag_conv1d(ag_randn(AG_SHAPE(2, 4, 3), AG_F64), ag_randn(AG_SHAPE(2, 4, 5), AG_F64), NULL, NULL), AG_ERR_SHAPE,
          "conv1d: kernel [2, 4, 5] (5 wide with dilation 1) does not fit the padded input (3 wide) of [2, 4, 3]",
          "conv1d names itself and its shapes");
    fails(ag_conv2d(x, ag_randn(AG_SHAPE(4, 6, 3, 3), AG_F32), NULL, NULL), AG_ERR_DTYPE, "conv2d", "mixed dtypes");
    ag_scope_end();
}

static void test_transpose_errors(void) {
    ag_scope_begin();
    ag_tensor *x = ag_randn(AG_SHAPE(2, 6, 4, 4), AG_F64), *w = ag_randn(AG_SHAPE(6, 2, 3, 3), AG_F64);
    fails(ag_conv_transpose2d(x, w, NULL, &(ag_conv_transpose_opts){.groups = 4}), AG_ERR_SHAPE,
          "conv_transpose2d: input [2, 6, 4, 4] has 6 channels, not divisible by groups=4", "channels not divisible by groups");
    fails(ag_conv_transpose2d(x, ag_randn(AG_SHAPE(4, 2, 3, 3), AG_F64), NULL, NULL), AG_ERR_SHAPE,
          "conv_transpose2d: weight [4, 2, 3, 3] expects 4 input channels, input [2, 6, 4, 4] has 6",
          "weight's input channels differ from the input's");
    fails(ag_conv_transpose2d(x, w, ag_randn(AG_SHAPE(2), AG_F64), &(ag_conv_transpose_opts){.groups = 3}), AG_ERR_SHAPE,
          "conv_transpose2d: bias [2] does not match weight [6, 2, 3, 3] with groups=3 (expected [6])", "bias of the wrong size");
    fails(ag_conv_transpose2d(x, w, NULL, &(ag_conv_transpose_opts){.stride = {2, 2}, .output_padding = {0, 2}}),
          AG_ERR_ARG, "conv_transpose2d: output_padding 2 must be smaller than the stride 2 or the dilation 1 (entry 1)",
          "output_padding not below the stride");
    fails(ag_conv_transpose2d(x, w, NULL, &(ag_conv_transpose_opts){.padding = {3, 0}}), AG_ERR_SHAPE,
          "conv_transpose2d: input [2, 6, 4, 4] with weight [6, 2, 3, 3], stride 1, padding 3, dilation 1 and "
          "output_padding 0 gives an output size of 0 (expected at least 1)", "an output size of zero");
    fails(ag_conv_transpose2d(x, w, NULL, &(ag_conv_transpose_opts){.padding = {0, -1}}), AG_ERR_ARG,
          "conv_transpose2d: negative stride, padding, output_padding or dilation (entry 1", "a negative padding");
    fails(ag_conv_transpose2d(x, ag_randn(AG_SHAPE(6, 2, 3), AG_F64), NULL, NULL), AG_ERR_SHAPE,
          "conv_transpose2d: weight [6, 2, 3] must have 4 dims [in_channels, out_channels/groups, kH, kW]", "weight of 3 dims");
    fails(ag_conv_transpose1d(ag_randn(AG_SHAPE(2, 3, 2), AG_F64), ag_randn(AG_SHAPE(3, 1, 2), AG_F64), NULL,
                              &(ag_conv_transpose_opts){.padding = {2}}), AG_ERR_SHAPE,
          "conv_transpose1d: input [2, 3, 2] with weight [3, 1, 2], stride 1, padding 2", "conv_transpose1d names itself");
    fails(ag_conv_transpose2d(ag_randn(AG_SHAPE(6, 5), AG_F64), w, NULL, NULL), AG_ERR_SHAPE,
          "conv_transpose2d: input [6, 5] must have 4 dims (batched) or 3 (unbatched)", "input of 2 dims");
    ag_scope_end();
}

/* conv_transpose2d is conv2d's adjoint: <conv2d(a, w), y> = <a, conv_transpose2d(y, w)> for every a, y
 * (float32: oneDNN's conv primitives with their roles swapped; float64: the reference loops), and
 * its float32 forward and backward make the three conv primitives once, then reuse them. */
static void test_transpose_adjoint(ag_dtype dt) {
    ag_scope_begin();
    ag_conv_opts co = {.stride = {2, 3}, .padding = {1, 2}, .dilation = {2, 1}, .groups = 2};
    ag_conv_transpose_opts to = {.stride = {2, 3}, .padding = {1, 2}, .dilation = {2, 1}, .groups = 2,
                                 .output_padding = {1, 2}};
    ag_tensor *a = ag_randn(AG_SHAPE(3, 4, 12, 14), dt), *w = ag_randn(AG_SHAPE(6, 2, 3, 4), dt);
    ag_tensor *ya = ag_conv2d(a, w, NULL, &co);
    ag_tensor *y = ya ? ag_randn(ag_shape_of(ya), dt) : NULL;
    ag_tensor *ty = ag_conv_transpose2d(y, w, NULL, &to);
    ok(ty && ag_shape_of(ty).dim[2] == 12 && ag_shape_of(ty).dim[3] == 14,
       "%s: output_padding (1, 2) gives back conv2d's input size 12 x 14", ag_dtype_name(dt));
    double l = ty ? ag_item(ag_sum(ag_mul(ya, y))) : 0, r = ty ? ag_item(ag_sum(ag_mul(a, ty))) : 1;
    ok(fabs(l - r) <= (dt == AG_F64 ? 1e-10 : 1e-3) * fmax(1, fabs(l)), "%s: <conv2d(a, w), y> = <a, conv_transpose2d(y, w)> "
       "(%.10g, %.10g)", ag_dtype_name(dt), l, r);
    if (dt == AG_F32 && ag_onednn_enabled()) {
        ag_tensor *x = ag_requires_grad_(ag_clone(y), true), *wg = ag_requires_grad_(ag_clone(w), true);
        ag_tensor *b = ag_requires_grad_(ag_randn(AG_SHAPE(4), dt), true);
        long before = ag__dnnl_primitives_created();
        ag_backward(ag_sum(ag_conv_transpose2d(x, wg, b, &to)));
        long mid = ag__dnnl_primitives_created();
        ag_backward(ag_sum(ag_conv_transpose2d(x, wg, b, &to)));
        ok(mid - before <= 3 && ag__dnnl_primitives_created() == mid && ag_grad(wg),
           "conv_transpose2d forward and backward made %ld oneDNN primitives (at most conv2d's three), a second call none",
           mid - before);
    }
    ag_scope_end();
}

static void test_pool_errors(void) {
    ag_scope_begin();
    ag_tensor *x = ag_randn(AG_SHAPE(2, 3, 4, 5), AG_F64), *idx = x;
    fails(ag_max_pool2d(x, &(ag_pool_opts){.kernel = {5, 2}}, &idx), AG_ERR_SHAPE,
          "max_pool2d: input [2, 3, 4, 5] is too small for the kernel: output size 0 x 2", "a kernel larger than the input");
    ok(idx == NULL, "a failed max_pool2d sets *indices to NULL");
    fails(ag_avg_pool2d(x, &(ag_pool_opts){.kernel = {3, 3}, .dilation = {2, 1}}), AG_ERR_ARG,
          "avg_pool2d: average pooling has no dilation (got 2)", "avg_pool2d with a dilation");
    fails(ag_max_pool2d(x, &(ag_pool_opts){.kernel = {2, 2}, .padding = {2, 0}}, NULL), AG_ERR_ARG,
          "max_pool2d: padding 2 must be at most half the kernel size 2", "padding more than half the kernel");
    fails(ag_max_pool2d(x, &(ag_pool_opts){.kernel = {0, 2}}, NULL), AG_ERR_ARG, "max_pool2d: kernel 0 must be positive",
          "a kernel of 0");
    fails(ag_max_pool2d(x, NULL, NULL), AG_ERR_ARG, "max_pool2d: options with the kernel size are required",
          "no options");
    fails(ag_avg_pool2d(ag_randn(AG_SHAPE(4, 5), AG_F64), &(ag_pool_opts){.kernel = {2, 2}}), AG_ERR_SHAPE,
          "avg_pool2d: input [4, 5] must have 4 dims (batched) or 3 (unbatched)", "avg_pool2d of a matrix");
    fails(ag_max_pool1d(ag_randn(AG_SHAPE(2, 3, 4), AG_F64), &(ag_pool_opts){.kernel = {5}}, NULL), AG_ERR_SHAPE,
          "max_pool1d: input [2, 3, 4] is too small for the kernel: output size 1 x 0", "max_pool1d names itself");
    fails(ag_adaptive_avg_pool2d(x, -1, 2), AG_ERR_ARG, "adaptive_avg_pool2d: negative output size -1 x 2",
          "a negative adaptive size");
    fails(ag_adaptive_avg_pool2d(ag_randn(AG_SHAPE(2, 3, 0, 5), AG_F64), 2, 2), AG_ERR_SHAPE,
          "adaptive_avg_pool2d: input [2, 3, 0, 5] has an empty plane", "adaptive pooling of an empty plane");
    fails(ag_max_pool2d(ag_from_data((int64_t[]){1, 2, 3, 4}, AG_SHAPE(1, 1, 2, 2), AG_I64),
                        &(ag_pool_opts){.kernel = {2, 2}}, NULL), AG_ERR_DTYPE, "max_pool2d", "an int64 input");
    ag_scope_end();
}

static void test_resample_errors(void) {
    ag_scope_begin();
    ag_tensor *x = ag_randn(AG_SHAPE(2, 3, 4, 5), AG_F64), *idx = x;
    fails(ag_adaptive_max_pool2d(x, -1, 2, &idx), AG_ERR_ARG, "adaptive_max_pool2d: negative output size -1 x 2",
          "a negative adaptive max size");
    ok(idx == NULL, "a failed adaptive_max_pool2d sets *indices to NULL");
    fails(ag_adaptive_max_pool2d(ag_randn(AG_SHAPE(2, 0, 5), AG_F64), 2, 2, NULL), AG_ERR_SHAPE,
          "adaptive_max_pool2d: input [2, 0, 5] has an empty plane", "adaptive max pooling of an empty plane");
    fails(ag_pad(x, 3, (int64_t[]){1, 1, 1}, AG_PAD_CONSTANT, 0), AG_ERR_ARG,
          "pad: the pad list must have an even length (got 3)", "an odd pad list");
    fails(ag_pad(x, 10, (int64_t[]){1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, AG_PAD_CONSTANT, 0), AG_ERR_SHAPE,
          "pad: 10 pad entries pad 5 dims, but input [2, 3, 4, 5] has 4", "more pad entries than dims");
    fails(ag_pad(x, 2, (int64_t[]){5, 1}, AG_PAD_REFLECT, 0), AG_ERR_SHAPE,
          "pad: reflect padding (5, 1) of dim 3 does not fit input [2, 3, 4, 5] (expected each below the dim's size 5)",
          "reflect padding as large as the dim");
    fails(ag_pad(x, 2, (int64_t[]){6, 1}, AG_PAD_CIRCULAR, 0), AG_ERR_SHAPE,
          "pad: circular padding (6, 1) of dim 3 does not fit input [2, 3, 4, 5] (expected each at most the dim's size 5)",
          "circular padding wrapping twice");
    fails(ag_pad(ag_randn(AG_SHAPE(2, 0), AG_F64), 2, (int64_t[]){1, 0}, AG_PAD_REPLICATE, 0), AG_ERR_SHAPE,
          "pad: replicate padding (1, 0) of dim 1 does not fit input [2, 0] (expected a non-empty dim of size 0)",
          "replicate padding of an empty dim");
    fails(ag_pad(x, 2, (int64_t[]){-4, -2}, AG_PAD_CONSTANT, 0), AG_ERR_SHAPE,
          "pad: padding (-4, -2) of dim 3 of input [2, 3, 4, 5] gives a negative or overflowing size", "a crop below zero");
    fails(ag_pad(x, 2, (int64_t[]){1, 1}, (ag_pad_mode)7, 0), AG_ERR_ARG, "pad: unknown mode 7", "an unknown pad mode");
    fails(ag_pad_backward(x, AG_SHAPE(2, 3, 4, 4), 2, (int64_t[]){1, 1}, AG_PAD_REFLECT), AG_ERR_SHAPE,
          "pad_backward: dy has shape [2, 3, 4, 5], but input [2, 3, 4, 4] padded has shape [2, 3, 4, 6]",
          "pad_backward of a dy of another shape");
    fails(ag_pad_backward(x, AG_SHAPE(2, 3, 4, 3), 2, (int64_t[]){3, -1}, AG_PAD_REFLECT), AG_ERR_SHAPE,
          "pad_backward: reflect padding (3, -1) of dim 3 does not fit input [2, 3, 4, 3]", "pad_backward checks the pads");
    fails(ag_pad_backward(x, (ag_shape){-1, {0}}, 0, NULL, AG_PAD_CONSTANT), AG_ERR_SHAPE,
          "pad_backward: input_shape has -1 dims, expected 0 to 16", "pad_backward of a negative number of dims");
    fails(ag_interpolate_backward(x, AG_SHAPE(2, 3, 3, 5), &(ag_interp_opts){.scale_factor = {2, 1}}), AG_ERR_SHAPE,
          "interpolate_backward: dy has shape [2, 3, 4, 5], but input [2, 3, 3, 5] resampled has shape [2, 3, 6, 5]",
          "interpolate_backward of a dy of another shape");
    fails(ag_interpolate_backward(x, AG_SHAPE(3, 4, 5), &(ag_interp_opts){.size = {4, 5}}), AG_ERR_SHAPE,
          "interpolate_backward: input_shape has 3 dims, expected 4 [N, C, H, W]", "interpolate_backward of a 3-d input shape");
    fails(ag_interpolate_backward(x, AG_SHAPE(2, 3, 2, 5), NULL), AG_ERR_ARG,
          "interpolate_backward: options with a size or a scale factor are required", "interpolate_backward without options");
    ok(ag_interpolate_backward(x, AG_SHAPE(2, 3, 2, 5), &(ag_interp_opts){.scale_factor = {2, 1}}) != NULL,
       "interpolate_backward of a dy of the resampled shape");
    ag_tensor *c = ag_pad(x, 2, (int64_t[]){-3, -2}, AG_PAD_CONSTANT, 0);
    ok(c && ag_shape_of(c).dim[3] == 0, "cropping a dim to nothing gives an empty tensor, as PyTorch");
    ag_tensor *pi, *pooled = ag_max_pool2d(ag_exp(x), &(ag_pool_opts){.kernel = {2, 2}}, &pi); /* positive maxima */
    fails(ag_max_unpool2d(pooled, pi, &(ag_pool_opts){.kernel = {2, 2}}, 1, 1), AG_ERR_INDEX,
          "is outside the output plane of 1 x 1", "an index outside the output");
    fails(ag_max_unpool2d(pooled, ag_to_dtype(pi, AG_F64), &(ag_pool_opts){.kernel = {2, 2}}, 0, 0), AG_ERR_SHAPE,
          "max_unpool2d: indices [2, 3, 2, 2] (float64) must be int64 of the input's shape [2, 3, 2, 2]", "float indices");
    fails(ag_max_unpool2d(pooled, pi, NULL, 0, 0), AG_ERR_ARG, "max_unpool2d: options with the kernel size are required",
          "unpooling without a size or options");
    fails(ag_max_unpool2d(pooled, pi, &(ag_pool_opts){.kernel = {1, 1}, .padding = {1, 0}}, 0, 0), AG_ERR_SHAPE,
          "max_unpool2d: input [2, 3, 2, 2] with kernel 1, stride 1, padding 1 gives an output size of 0 (expected at least 1)",
          "an unpooled size of 0");
    fails(ag_max_unpool2d(pooled, pi, NULL, 3, 0), AG_ERR_ARG, "max_unpool2d: output size 3 x 0 must be positive",
          "half an output size");
    ag_tensor *un = ag_max_unpool2d(pooled, pi, NULL, 4, 5);
    ag_tensor *re = un ? ag_max_pool2d(un, &(ag_pool_opts){.kernel = {2, 2}}, NULL) : NULL;
    /* the sums: the same values with zeros between them, added in another order (within rounding) */
    const double su = un ? ag_item(ag_sum(un)) : 0, sp = ag_item(ag_sum(pooled));
    ok(re && ag_item(ag_sum(ag_abs(ag_sub(re, pooled)))) == 0 && fabs(su - sp) <= 1e-6 * fabs(sp),
       "max_unpool2d puts max_pool2d's maxima back where they were (pooling them again gives them back; sums %.9g, %.9g)",
       su, sp);
    fails(ag_interpolate(x, NULL), AG_ERR_ARG, "interpolate: options with a size or a scale factor are required",
          "interpolate without options");
    fails(ag_interpolate(x, &(ag_interp_opts){.size = {3, 3}, .scale_factor = {2, 2}}), AG_ERR_ARG,
          "interpolate: give either size (3 x 3) or scale_factor (2 x 2), not both", "both size and scale");
    fails(ag_interpolate(x, &(ag_interp_opts){.mode = AG_INTERP_BILINEAR}), AG_ERR_ARG, "not neither",
          "neither size nor scale");
    fails(ag_interpolate(x, &(ag_interp_opts){.scale_factor = {2, -1}}), AG_ERR_ARG,
          "interpolate: scale_factor 2 x -1 must be positive", "a negative scale factor");
    fails(ag_interpolate(x, &(ag_interp_opts){.scale_factor = {0.1, 1}}), AG_ERR_SHAPE,
          "interpolate: input [2, 3, 4, 5] and output size 0 x 5 must have positive heights and widths",
          "a scale factor that gives an empty output");
    fails(ag_interpolate(x, &(ag_interp_opts){.size = {3, 3}, .align_corners = true}), AG_ERR_ARG,
          "interpolate: align_corners applies to bilinear mode only", "align_corners with nearest");
    fails(ag_interpolate(ag_randn(AG_SHAPE(3, 4, 5), AG_F64), &(ag_interp_opts){.size = {3, 3}}), AG_ERR_SHAPE,
          "interpolate: input [3, 4, 5] must have 4 dims [N, C, H, W]", "interpolate of 3 dims");
    ag_scope_end();
}

/* What PyTorch does that the fixture's random values do not reach. */
static void test_pool_details(void) {
    ag_scope_begin();
    /* NaN wins the max, its index is reported, and it gets the gradient. */
    ag_tensor *x = ag_requires_grad_(ag_from_data((double[]){1, NAN, 3, 2}, AG_SHAPE(1, 1, 2, 2), AG_F64), true), *idx;
    ag_tensor *y = ag_max_pool2d(x, &(ag_pool_opts){.kernel = {2, 2}}, &idx);
    ok(y && isnan(ag_item(y)) && ag_item(idx) == 1, "a NaN is the max of its window, at index 1");
    ok(y && ag_backward(ag_sum(y)) == AG_OK && ag_get(ag_grad(x), (int64_t[]){0, 0, 0, 1}) == 1 &&
       ag_item(ag_sum(ag_grad(x))) == 1, "its gradient goes to the NaN");
    /* Overlapping windows add their gradients. */
    ag_tensor *z = ag_requires_grad_(ag_from_data((double[]){0, 0, 0, 0, 9, 0, 0, 0, 0}, AG_SHAPE(1, 3, 3), AG_F64), true);
    ag_backward(ag_sum(ag_max_pool2d(z, &(ag_pool_opts){.kernel = {2, 2}, .stride = {1, 1}}, NULL)));
    ok(ag_get(ag_grad(z), (int64_t[]){0, 1, 1}) == 4, "the centre, max of four windows, gets 4 (got %g)",
       ag_get(ag_grad(z), (int64_t[]){0, 1, 1}));
    /* Empty batch. */
    ag_tensor *e = ag_max_pool2d(ag_randn(AG_SHAPE(0, 3, 4, 4), AG_F32), &(ag_pool_opts){.kernel = {2, 2}}, NULL);
    ok(e && ag_numel(e) == 0 && ag_shape_of(e).dim[2] == 2, "an empty batch pools to [0, 3, 2, 2]");
    /* adaptive max pooling: a NaN wins too, and the gradient goes to it. */
    ag_tensor *xn = ag_requires_grad_(ag_from_data((double[]){1, 5, NAN, 2, 3, 4}, AG_SHAPE(1, 1, 2, 3), AG_F64), true);
    ag_tensor *yn = ag_adaptive_max_pool2d(xn, 1, 2, &idx);
    ok(yn && ag_get(yn, (int64_t[]){0, 0, 0, 0}) == 5 && isnan(ag_get(yn, (int64_t[]){0, 0, 0, 1})) &&
       ag_get(idx, (int64_t[]){0, 0, 0, 1}) == 2, "adaptive max: windows [1 5 | 2 3] and [5 NaN | 3 4] give 5 and NaN (at 2)");
    ok(yn && ag_backward(ag_sum(yn)) == AG_OK && ag_get(ag_grad(xn), (int64_t[]){0, 0, 0, 1}) == 1 &&
       ag_get(ag_grad(xn), (int64_t[]){0, 0, 0, 2}) == 1 && ag_item(ag_sum(ag_grad(xn))) == 2,
       "its gradient goes to the 5 and to the NaN");
    /* A non-contiguous input pads through its strides. */
    ag_tensor *base = ag_randn(AG_SHAPE(3, 4), AG_F64), *tr = ag_transpose(base, 0, 1);
    ag_tensor *pt = ag_pad(tr, 2, (int64_t[]){1, 2}, AG_PAD_REFLECT, 0), *pc = ag_pad(ag_contiguous(tr), 2, (int64_t[]){1, 2},
                                                                                     AG_PAD_REFLECT, 0);
    ok(pt && pc && ag_item(ag_sum(ag_abs(ag_sub(pt, pc)))) == 0, "padding a transposed view equals padding its copy");
    ag_tensor *z0 = ag_pad(ag_scalar(3.0, AG_F64), 0, NULL, AG_PAD_CONSTANT, 0);
    ok(z0 && ag_ndim(z0) == 0 && ag_item(z0) == 3, "an empty pad list copies, a 0-d input included");
    ag_tensor *a0 = ag_adaptive_avg_pool2d(ag_randn(AG_SHAPE(2, 3, 4, 4), AG_F32), 0, 3);
    ok(a0 && ag_numel(a0) == 0, "adaptive pooling to 0 rows is empty, as PyTorch");
    ag_scope_end();
}

/* How many elements of a and b differ. */
static double differing(ag_tensor *a, ag_tensor *b) { return ag_item(ag_sum(ag_to_dtype(ag_ne(a, b), AG_F64))); }

/* t's element at flat offset i (contiguous, float32 or float64) set to v. */
static void set_at(ag_tensor *t, int64_t i, double v) {
    if (ag_dtype_of(t) == AG_F64) ((double *)ag_data(t))[i] = v;
    else ((float *)ag_data(t))[i] = (float)v;
}

/* The 2 x 2, stride 2 max pooling's adjoint (the vectorised forward's indices, ops/pool.c) against dy scattered
 * into zeros at the returned indices, on planes with an odd last row and column (left out of every window),
 * in both dtypes, with ties (the first place wins), a NaN, -0 gradients (0 + -0 is +0, as the generic
 * adjoint adds them) and a second backward accumulating into .grad. */
static void test_max_pool_2x2_adjoint(void) {
    for (int d = 0; d < 2; d++) {
        ag_scope_begin();
        const ag_dtype dt = d ? AG_F64 : AG_F32;
        ag_tensor *x0 = ag_round(ag_mul_scalar(ag_randn(AG_SHAPE(3, 5, 7, 9), dt), 2)); /* integers: many ties */
        set_at(x0, ((1 * 5 + 2) * 7 + 3) * 9 + 4, NAN);
        ag_tensor *x = ag_requires_grad_(x0, true), *idx;
        ag_tensor *y = ag_max_pool2d(x, &(ag_pool_opts){.kernel = {2, 2}}, &idx);
        ag_tensor *g = ag_randn(ag_shape_of(y), dt);
        set_at(g, 0, -0.0);
        ok(y && ag_backward_ex(y, g, false) == AG_OK, "2x2 max pooling's backward runs (%s)", d ? "f64" : "f32");
        ag_tensor *want = ag_reshape(ag_scatter_add(ag_zeros(AG_SHAPE(15, 63), dt), 1, ag_reshape(idx, AG_SHAPE(15, 12)),
                                                    ag_reshape(g, AG_SHAPE(15, 12))), AG_SHAPE(3, 5, 7, 9));
        ag_tensor *got = ag_grad(x);
        ok(got && want && differing(got, want) == 0, "its dx is dy scattered at the indices (%s, %g differing)",
           d ? "f64" : "f32", got && want ? differing(got, want) : -1);
        ok(got && ag_item(ag_sum(ag_abs(ag_narrow(got, 2, 6, 1)))) == 0 && ag_item(ag_sum(ag_abs(ag_narrow(got, 3, 8, 1)))) == 0,
           "the odd last row and column get no gradient (%s)", d ? "f64" : "f32");
        const int64_t i0 = got ? (int64_t)ag_item(ag_narrow(ag_flatten(idx, 0, -1), 0, 0, 1)) : 0;
        ok(got && !signbit(ag_get(got, (int64_t[]){0, 0, i0 / 9, i0 % 9})), "a -0 gradient lands as +0 (%s)",
           d ? "f64" : "f32");
        ok(ag_backward_ex(ag_max_pool2d(x, &(ag_pool_opts){.kernel = {2, 2}}, NULL), g, false) == AG_OK &&
               differing(ag_grad(x), ag_mul_scalar(want, 2)) == 0,
           "a second backward adds to .grad (%s)", d ? "f64" : "f32");
        ag_scope_end();
    }
}

static ag_tensor *pool_2x2(ag_tensor *const *in, int n, void *ctx) {
    (void)n, (void)ctx;
    return ag_max_pool2d(in[0], &(ag_pool_opts){.kernel = {2, 2}}, NULL);
}

/* The 2 x 2, stride 2 max pooling asked for no indices keeps each window's choice in a byte (ops/pool.c,
 * max_windows): its adjoint (rows narrower than 16 outputs and wider ones), the adjoint's own adjoint and its
 * tangent, which make the int64 indices from those bytes, against finite differences and against each
 * other in float64, on planes with an odd last row and column; and the float32 adjoint equals the one of
 * the returned indices (test_max_pool_2x2_adjoint), -0 landing as +0. */
static void test_max_pool_2x2_codes(void) {
    const int64_t widths[2] = {15, 41}; /* 7 and 20 outputs a row */
    for (int k = 0; k < 2; k++) {
        ag_scope_begin();
        ag_tensor *x = ag_requires_grad_(ag_randn(AG_SHAPE(2, 3, 5, widths[k]), AG_F64), true);
        ok(ag_gradcheck(pool_2x2, NULL, &x, 1, NULL, NULL) == AG_OK, "2x2 max pooling of width %lld: gradcheck",
           (long long)widths[k]);
        ok(ag_gradgradcheck(pool_2x2, NULL, &x, 1, NULL, NULL) == AG_OK, "2x2 max pooling of width %lld: gradgradcheck",
           (long long)widths[k]);
        ag_tensor *jr = NULL, *jf = NULL;
        ok(ag_jacobian(pool_2x2, NULL, &x, 1, &(ag_functional_opts){.mode = AG_JACOBIAN_REVERSE}, &jr) == AG_OK &&
               ag_jacobian(pool_2x2, NULL, &x, 1, &(ag_functional_opts){.mode = AG_JACOBIAN_FORWARD}, &jf) == AG_OK &&
               differing(jr, jf) == 0,
           "2x2 max pooling of width %lld: the tangents give the adjoint's Jacobian", (long long)widths[k]);
        ag_tensor *x32 = ag_round(ag_mul_scalar(ag_randn(AG_SHAPE(3, 4, 7, widths[k]), AG_F32), 2)), *idx;
        ag_tensor *a = ag_requires_grad_(ag_clone(x32), true), *b = ag_requires_grad_(ag_clone(x32), true);
        ag_tensor *ya = ag_max_pool2d(a, &(ag_pool_opts){.kernel = {2, 2}}, &idx);
        ag_tensor *yb = ag_max_pool2d(b, &(ag_pool_opts){.kernel = {2, 2}}, NULL);
        ag_tensor *g = ag_randn(ag_shape_of(ya), AG_F32);
        ag_fill_(ag_narrow(g, 0, 0, 1), -0.0);
        ok(ya && yb && ag_backward_ex(ya, g, false) == AG_OK && ag_backward_ex(yb, g, false) == AG_OK &&
               differing(ag_grad(a), ag_grad(b)) == 0 && differing(ya, yb) == 0 &&
               ag_item(ag_min(ag_reciprocal(ag_grad(b)))) > -INFINITY,
           "2x2 max pooling of width %lld, float32: the bytes' adjoint is the indices' (-0 as +0)", (long long)widths[k]);
        ag_scope_end();
    }
}

/* The 2 x 2, stride 2 max pooling (a path of its own, selects over deinterleaved rows) gives what the
 * generic window loop of adaptive max pooling gives for the same windows: values, indices (the first of
 * tied maxima, the last NaN) and gradients, at float32 and float64, rows of odd and even widths. */
static void test_pool_2x2(void) {
    const ag_dtype dts[2] = {AG_F32, AG_F64};
    const int64_t widths[3] = {7, 12, 33};
    for (int t = 0; t < 2; t++)
        for (int k = 0; k < 3; k++) {
            ag_scope_begin();
            /* an odd width leaves a column out, an odd height a row; 36 planes of 5 output rows pass the
             * 2 x 2 kernel's chunks of 1024 outputs (146 rows of 7) inside a plane */
            const int64_t W = 2 * widths[k] + (k == 2), H = 10 + (k == 0);
            /* values in {0, 1, 2, 3}: many ties; every 17th a NaN */
            ag_tensor *x = ag_contiguous(ag_floor(ag_mul_scalar(ag_rand(AG_SHAPE(3, 12, H, W), dts[t]), 4)));
            for (int64_t i = 0; i < ag_numel(x); i += 17) {
                if (dts[t] == AG_F32) ((float *)ag_data(x))[i] = NAN;
                else ((double *)ag_data(x))[i] = NAN;
            }
            ag_requires_grad_(x, true);
            ag_tensor *i1, *i2;
            ag_tensor *y1 = ag_max_pool2d(x, &(ag_pool_opts){.kernel = {2, 2}}, &i1);
            ag_tensor *y2 = ag_adaptive_max_pool2d(ag_narrow(ag_narrow(x, 3, 0, W - (k == 2)), 2, 0, 10), 5, widths[k], &i2);
            ag_tensor *g = ag_randn(ag_shape_of(y1), dts[t]);
            ag_backward_ex(y1, g, false);
            ag_tensor *gx = ag_clone(ag_grad(x));
            ag_zero_grad(x);
            ag_backward_ex(y2, g, false);
            /* NaN as -7 (the values are 0..3); the odd width's indices count the narrowed plane's columns,
             * so there the gradient alone shows the positions */
            ok(y1 && y2 && differing(ag_nan_to_num(y1, -7, 0, 0), ag_nan_to_num(y2, -7, 0, 0)) == 0 &&
               (k == 2 || differing(i1, i2) == 0) && differing(gx, ag_grad(x)) == 0,
               "max_pool2d 2 x 2 of [3, 12, %lld, %lld] %s with ties and NaNs equals the generic windows' values, "
               "indices and gradient", (long long)H, (long long)W, ag_dtype_name(dts[t]));
            ag_scope_end();
        }
}

/* The scan adaptive max pooling defines, written here: over rows [⌊iH/OH⌋, ⌈(i+1)H/OH⌉) and the columns
 * alike in row order, m = v and best = its place where v > m or v is NaN, from m = -inf and the first
 * place.  Returns how many outputs of y (float32) and idx (P planes) differ from it: y's bits, idx's value. */
static int64_t adaptive_max_misses(const float *x, int64_t P, int64_t H, int64_t W, int64_t OH, int64_t OW,
                                   const float *y, const int64_t *idx) {
    int64_t misses = 0;
    for (int64_t p = 0; p < P; p++)
        for (int64_t oh = 0; oh < OH; oh++)
            for (int64_t ow = 0; ow < OW; ow++) {
                const int64_t h0 = oh * H / OH, h1 = ((oh + 1) * H + OH - 1) / OH;
                const int64_t w0 = ow * W / OW, w1 = ((ow + 1) * W + OW - 1) / OW;
                const float *xp = x + p * H * W;
                int64_t best = h0 * W + w0;
                float m = -INFINITY;
                for (int64_t ih = h0; ih < h1; ih++)
                    for (int64_t iw = w0; iw < w1; iw++)
                        if (xp[ih * W + iw] > m || isnan(xp[ih * W + iw])) m = xp[ih * W + iw], best = ih * W + iw;
                const int64_t o = (p * OH + oh) * OW + ow;
                misses += memcmp(&y[o], &m, sizeof m) != 0 || idx[o] != best;
            }
    return misses;
}

/* Adaptive max pooling's float32 windows of 16 columns or more (ops/pool.c's argmax_lanes_f32 on AVX-512:
 * sixteen lanes, each its own scan, merged) give the scan's values and indices: windows 16, 17, 18, 32,
 * 33 and 100 wide (a masked last block of a row or none), 1 to 11 rows, overlapping; values with many
 * ties (the first place wins, a later lane's or an earlier one's), NaNs every 11th (the last wins, two in one
 * block of 16 too, and in the tail's lanes), planes of -inf only and of ±0 only (the first element's bits). */
static void test_adaptive_max_lanes(void) {
    const int64_t shapes[][4] = {{11, 50, 3, 3}, {11, 64, 4, 2}, {7, 33, 2, 1}, {5, 16, 5, 1}, {3, 100, 1, 1}, {12, 35, 3, 2}};
    for (int c = 0; c < 6; c++)
        for (int fill = 0; fill < 4; fill++) {
            ag_scope_begin();
            const int64_t H = shapes[c][0], W = shapes[c][1], OH = shapes[c][2], OW = shapes[c][3], P = 6;
            ag_manual_seed(31 + (uint64_t)c);
            ag_tensor *x = ag_contiguous(ag_floor(ag_mul_scalar(ag_rand(AG_SHAPE(2, 3, H, W), AG_F32), 4)));
            float *xv = ag_data(x);
            for (int64_t i = 0; i < ag_numel(x); i++) {
                if (fill == 1 && i % 11 == 5) xv[i] = i % 2 ? NAN : -NAN;
                if (fill == 2) xv[i] = i < H * W ? -INFINITY : xv[i] - 2;
                if (fill == 3) xv[i] = i % 3 == 0 ? 0.0f : -0.0f;
            }
            ag_tensor *idx = NULL, *y = ag_adaptive_max_pool2d(x, OH, OW, &idx);
            ok(y && idx && adaptive_max_misses(xv, P, H, W, OH, OW, ag_data(y), ag_data(idx)) == 0,
               "adaptive max pooling of [2, 3, %lld, %lld] to (%lld, %lld), fill %d: the scan's values and indices",
               (long long)H, (long long)W, (long long)OH, (long long)OW, fill);
            ag_scope_end();
        }
}

/* The scan max pooling defines, written here: each window's elements inside x in row order (rows h0 + i·dh,
 * columns w0 + j·dw, padding left out), m = v and best = its place where v > m or v is NaN, from m = -inf
 * and the first place inside.  Returns how many outputs of y (float32) and idx differ: y's bits, idx's value. */
static int64_t max_pool_misses(const float *x, int64_t P, int64_t H, int64_t W, const ag_pool_opts *o, int64_t OH,
                               int64_t OW, const float *y, const int64_t *idx) {
    int64_t misses = 0;
    for (int64_t p = 0; p < P; p++)
        for (int64_t oh = 0; oh < OH; oh++)
            for (int64_t ow = 0; ow < OW; ow++) {
                int64_t h0 = oh * o->stride[0] - o->padding[0], w0 = ow * o->stride[1] - o->padding[1];
                const int64_t h1 = h0 + (o->kernel[0] - 1) * o->dilation[0] + 1;
                const int64_t w1 = w0 + (o->kernel[1] - 1) * o->dilation[1] + 1;
                while (h0 < 0) h0 += o->dilation[0];
                while (w0 < 0) w0 += o->dilation[1];
                int64_t best = h0 * W + w0;
                float m = -INFINITY;
                for (int64_t ih = h0; ih < h1 && ih < H; ih += o->dilation[0])
                    for (int64_t iw = w0; iw < w1 && iw < W; iw += o->dilation[1]) {
                        const float v = x[(p * H + ih) * W + iw];
                        if (v > m || isnan(v)) m = v, best = ih * W + iw;
                    }
                const int64_t k = (p * OH + oh) * OW + ow;
                misses += memcmp(&y[k], &m, sizeof m) != 0 || idx[k] != best;
            }
    return misses;
}

/* Max pooling at a stride of 1 along the rows (ops/pool.c's max_rows: a row of outputs at a time, each tap
 * as selects over the row) gives the scan's values and indices: kernels 1 to 3 wide, dilations 1 to 3,
 * padding up to half the kernel, ceil_mode, rows of 7 to 600 outputs (past the 256-output chunks), on values
 * with many ties (the first place wins), NaNs every 11th (the last wins), a plane of -inf, a plane of ±0,
 * in float32 and (values only checked by the float32 run's indices) float64. */
static void test_max_pool_rows(void) {
    const ag_pool_opts opts[] = {
        {.kernel = {3, 2}, .stride = {2, 1}, .padding = {1, 1}, .dilation = {1, 2}, .ceil_mode = true},
        {.kernel = {3, 3}, .stride = {1, 1}, .padding = {1, 1}, .dilation = {1, 1}},
        {.kernel = {2, 3}, .stride = {3, 1}, .padding = {1, 1}, .dilation = {2, 3}, .ceil_mode = true},
        {.kernel = {1, 1}, .stride = {1, 1}, .padding = {0, 0}, .dilation = {1, 1}},
        {.kernel = {2, 2}, .stride = {2, 1}, .padding = {0, 0}, .dilation = {1, 1}},
    };
    const int64_t widths[3] = {7, 33, 600};
    for (int c = 0; c < 5; c++)
        for (int k = 0; k < 3; k++)
            for (int fill = 0; fill < 3; fill++) {
                ag_scope_begin();
                const int64_t H = 9, W = widths[k], P = 6;
                ag_manual_seed(41 + (uint64_t)c);
                ag_tensor *x = ag_contiguous(ag_floor(ag_mul_scalar(ag_rand(AG_SHAPE(2, 3, H, W), AG_F32), 4)));
                float *xv = ag_data(x);
                for (int64_t i = 0; i < ag_numel(x); i++) {
                    if (fill == 1 && i % 11 == 5) xv[i] = i % 2 ? NAN : -NAN;
                    if (fill == 2) xv[i] = i < H * W ? -INFINITY : i < 2 * H * W ? (i % 3 ? -0.0f : 0.0f) : xv[i];
                }
                ag_tensor *idx = NULL, *y = ag_max_pool2d(x, &opts[c], &idx);
                ag_tensor *idx64 = NULL, *y64 = ag_max_pool2d(ag_to_dtype(x, AG_F64), &opts[c], &idx64);
                ok(y && idx && y64 && idx64 &&
                       max_pool_misses(xv, P, H, W, &opts[c], ag_size(y, 2), ag_size(y, 3), ag_data(y), ag_data(idx)) == 0 &&
                       differing(idx, idx64) == 0,
                   "max_pool2d of [2, 3, %lld, %lld], geometry %d, fill %d: the scan's values and indices (float64's too)",
                   (long long)H, (long long)W, c, fill);
                ag_scope_end();
            }
}

/* Max pooling over many planes splits them over threads: the outputs, indices (a NaN's included)
 * and gradient are those of one thread, at an odd geometry (kernel 3, stride 2, padding 1,
 * ceil_mode; 21 planes of 65 x 63) with enough elements to split. */
static void test_pool_threads(void) {
    int threads = ag_get_num_threads();
    ag_scope_begin();
    ag_manual_seed(11);
    ag_tensor *x = ag_randn(AG_SHAPE(3, 7, 65, 63), AG_F32);
    ((float *)ag_data(x))[ag_numel(x) - 1] = NAN; /* the last element: window (32, 31) of plane (2, 6) */
    ag_requires_grad_(x, true);
    ag_tensor *y[2], *idx[2], *dx[2];
    for (int t = 0; t < 2; t++) {
        ag_set_num_threads(t + 1);
        ag_pool_opts o = {.kernel = {3, 3}, .stride = {2, 2}, .padding = {1, 1}, .ceil_mode = true};
        y[t] = ag_max_pool2d(x, &o, &idx[t]);
        ag_manual_seed(12); /* the same weights for both */
        ag_tensor *w = ag_randn(ag_shape_of(y[t]), AG_F32);
        ag_zero_grad(x);
        dx[t] = y[t] && ag_backward(ag_sum(ag_mul(ag_nan_to_num(y[t], 0, 0, 0), w))) == AG_OK ? ag_clone(ag_grad(x)) : NULL;
    }
    ag_set_num_threads(threads);
    ok(y[0] && y[1] && differing(ag_nan_to_num(y[0], 7, 7, 7), ag_nan_to_num(y[1], 7, 7, 7)) == 0 &&
           differing(idx[0], idx[1]) == 0 && isnan(ag_get(y[1], (int64_t[]){2, 6, 32, 31})),
       "max_pool2d on 2 threads gives the outputs and indices of 1 (a NaN winning its window)");
    ok(dx[0] && dx[1] && differing(dx[0], dx[1]) == 0 && ag_item(ag_sum(ag_abs(dx[1]))) > 0,
       "and the same gradient");
    ag_scope_end();
}

/* ---- modules --------------------------------------------------------------------------------------------- */
static void test_module_repr(void) {
    fixture_prints(ag_nn_conv2d(3, 4, 3, 3, NULL, true), "Conv2d(3, 4, kernel_size=(3, 3), stride=(1, 1))");
    fixture_prints(ag_nn_conv2d(3, 4, 3, 2, &(ag_conv_opts){.stride = {2, 2}, .padding = {1, 1}, .dilation = {2, 2}}, false),
           "Conv2d(3, 4, kernel_size=(3, 2), stride=(2, 2), padding=(1, 1), dilation=(2, 2), bias=False)");
    fixture_prints(ag_nn_conv2d(4, 4, 3, 3, &(ag_conv_opts){.padding_mode = AG_PADDING_SAME, .groups = 2}, true),
           "Conv2d(4, 4, kernel_size=(3, 3), stride=(1, 1), padding=same, groups=2)");
    fixture_prints(ag_nn_conv2d(3, 4, 3, 3, &(ag_conv_opts){.padding_mode = AG_PADDING_VALID}, true),
           "Conv2d(3, 4, kernel_size=(3, 3), stride=(1, 1), padding=valid)");
    fixture_prints(ag_nn_conv1d(3, 4, 3, NULL, true), "Conv1d(3, 4, kernel_size=(3,), stride=(1,))");
    fixture_prints(ag_nn_conv1d(4, 4, 2, &(ag_conv_opts){.stride = {2}, .padding = {1}, .dilation = {2}, .groups = 2}, false),
           "Conv1d(4, 4, kernel_size=(2,), stride=(2,), padding=(1,), dilation=(2,), groups=2, bias=False)");
    fixture_prints(ag_nn_conv_transpose2d(3, 4, 3, 3, &(ag_conv_transpose_opts){.stride = {2, 2}, .padding = {1, 1},
                                  .output_padding = {1, 1}, .dilation = {2, 2}}, false),
           "ConvTranspose2d(3, 4, kernel_size=(3, 3), stride=(2, 2), padding=(1, 1), dilation=(2, 2), "
           "output_padding=(1, 1), bias=False)");
    fixture_prints(ag_nn_conv_transpose2d(4, 6, 2, 3, &(ag_conv_transpose_opts){.groups = 2}, true),
           "ConvTranspose2d(4, 6, kernel_size=(2, 3), stride=(1, 1), groups=2)");
    fixture_prints(ag_nn_conv_transpose1d(3, 4, 3, NULL, true), "ConvTranspose1d(3, 4, kernel_size=(3,), stride=(1,))");
    fixture_prints(ag_nn_max_pool2d(&(ag_pool_opts){.kernel = {2, 2}}),
           "MaxPool2d(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=False)");
    fixture_prints(ag_nn_max_pool2d(&(ag_pool_opts){.kernel = {3, 2}}),
           "MaxPool2d(kernel_size=(3, 2), stride=(3, 2), padding=0, dilation=1, ceil_mode=False)");
    fixture_prints(ag_nn_max_pool2d(&(ag_pool_opts){.kernel = {3, 2}, .stride = {1, 1}, .padding = {1, 1}, .dilation = {2, 2},
                                            .ceil_mode = true}),
           "MaxPool2d(kernel_size=(3, 2), stride=1, padding=1, dilation=2, ceil_mode=True)");
    fixture_prints(ag_nn_max_pool1d(&(ag_pool_opts){.kernel = {3}}),
           "MaxPool1d(kernel_size=3, stride=3, padding=0, dilation=1, ceil_mode=False)");
    fixture_prints(ag_nn_avg_pool2d(&(ag_pool_opts){.kernel = {2, 2}}), "AvgPool2d(kernel_size=2, stride=2, padding=0)");
    fixture_prints(ag_nn_avg_pool2d(&(ag_pool_opts){.kernel = {3, 2}}), "AvgPool2d(kernel_size=(3, 2), stride=(3, 2), padding=0)");
    fixture_prints(ag_nn_avg_pool2d(&(ag_pool_opts){.kernel = {3, 3}, .stride = {2, 2}, .padding = {1, 1}, .ceil_mode = true,
                                            .exclude_pad = true}),
           "AvgPool2d(kernel_size=3, stride=2, padding=1)");
    fixture_prints(ag_nn_avg_pool1d(&(ag_pool_opts){.kernel = {3}}), "AvgPool1d(kernel_size=(3,), stride=(3,), padding=(0,))");
    fixture_prints(ag_nn_adaptive_max_pool2d(3, 4), "AdaptiveMaxPool2d(output_size=(3, 4))");
    fixture_prints(ag_nn_adaptive_max_pool2d(2, 2), "AdaptiveMaxPool2d(output_size=2)");
    fixture_prints(ag_nn_zero_pad2d(1, 2, 3, 4), "ZeroPad2d((1, 2, 3, 4))");
    fixture_prints(ag_nn_reflection_pad2d(1, 1, 1, 1), "ReflectionPad2d((1, 1, 1, 1))");
    fixture_prints(ag_nn_replication_pad2d(1, 0, 2, 3), "ReplicationPad2d((1, 0, 2, 3))");
    fixture_prints(ag_nn_upsample(&(ag_interp_opts){.scale_factor = {2, 2}}), "Upsample(scale_factor=2.0, mode=nearest)");
    fixture_prints(ag_nn_upsample(&(ag_interp_opts){.size = {3, 4}, .mode = AG_INTERP_BILINEAR, .align_corners = true}),
           "Upsample(size=(3, 4), mode=bilinear)");
    fixture_prints(ag_nn_upsample(&(ag_interp_opts){.scale_factor = {2, 1.5}, .mode = AG_INTERP_BILINEAR}),
           "Upsample(scale_factor=(2.0, 1.5), mode=bilinear)");
    fixture_prints(ag_nn_adaptive_avg_pool2d(5, 5), "AdaptiveAvgPool2d(output_size=5)");
    fixture_prints(ag_nn_adaptive_avg_pool2d(3, 4), "AdaptiveAvgPool2d(output_size=(3, 4))");
}

/* Names, shapes and PyTorch's initialisation bounds: U(-1/√fan_in, 1/√fan_in) for weight and bias. */
static void test_module_init(void) {
    ag_manual_seed(11);
    ag_module *m = ag_nn_conv2d(16, 32, 5, 3, &(ag_conv_opts){.groups = 4}, true);
    ag_tensor *w = ag_module_get_parameter(m, "weight"), *b = ag_module_get_parameter(m, "bias");
    ok(w && ag_ndim(w) == 4 && ag_shape_of(w).dim[0] == 32 && ag_shape_of(w).dim[1] == 4 && ag_shape_of(w).dim[2] == 5 &&
       ag_shape_of(w).dim[3] == 3 && ag_dtype_of(w) == AG_F32, "Conv2d(16, 32, (5, 3), groups=4): weight [32, 4, 5, 3] float32");
    ok(b && ag_numel(b) == 32, "bias [32]");
    double bound = 1 / sqrt(4.0 * 5 * 3), wmax = 0, bmax = 0, sq = 0;
    float wv[32 * 60], bv[32];
    ag_copy_to(w, wv, 32 * 60, AG_F32);
    ag_copy_to(b, bv, 32, AG_F32);
    for (int i = 0; i < 32 * 60; i++) wmax = fmax(wmax, fabs(wv[i])), sq += (double)wv[i] * wv[i];
    for (int i = 0; i < 32; i++) bmax = fmax(bmax, fabs(bv[i]));
    ok(wmax <= bound && wmax > 0.95 * bound, "weights fill U(-1/√60, 1/√60) (max |w| %.4f, bound %.4f)", wmax, bound);
    close_to(sq / (32 * 60), bound * bound / 3, 0.1 * bound * bound / 3, "their variance is bound²/3 (%.5f)", sq / (32 * 60));
    ok(bmax <= bound && bmax > 0.5 * bound, "biases fill U(-1/√60, 1/√60) too (max |b| %.4f)", bmax);
    ag_state_dict *sd = ag_state_dict_new();
    ag_module_state_dict(m, sd);
    ok(ag_state_dict_size(sd) == 2 && !strcmp(ag_state_dict_name(sd, 0), "weight") && !strcmp(ag_state_dict_name(sd, 1), "bias"),
       "the state dict holds weight and bias, PyTorch's names");
    ag_state_dict_free(sd);
    ag_module_free(m);
    ag_module *c1 = ag_nn_conv1d(3, 5, 4, NULL, false);
    ag_tensor *w1 = c1 ? ag_module_get_parameter(c1, "weight") : NULL;
    ok(w1 && ag_ndim(w1) == 3 && ag_shape_of(w1).dim[2] == 4 && !ag_module_get_parameter(c1, "bias"),
       "Conv1d(3, 5, 4, bias=False): weight [5, 3, 4], no bias");
    ag_module_free(c1);
    ok(!ag_nn_conv2d(6, 4, 3, 3, &(ag_conv_opts){.groups = 4}, true) &&
       strstr(ag_last_error(), "nn.Conv2d: in_channels=6 and out_channels=4 must be divisible by groups=4"),
       "channels not divisible by groups are refused: %s", ag_last_error());
    ok(!ag_nn_conv2d(3, 4, 3, 3, &(ag_conv_opts){.stride = {2, 2}, .padding_mode = AG_PADDING_SAME}, true) &&
       ag_last_status() == AG_ERR_ARG, "\"same\" with a stride is refused: %s", ag_last_error());
    ok(!ag_nn_conv2d(3, 4, 0, 3, NULL, true) && ag_last_status() == AG_ERR_ARG, "a kernel of 0 is refused: %s",
       ag_last_error());
    ag_manual_seed(12);
    ag_module *t = ag_nn_conv_transpose2d(6, 8, 3, 2, &(ag_conv_transpose_opts){.groups = 2}, true);
    ag_tensor *tw = t ? ag_module_get_parameter(t, "weight") : NULL, *tb = t ? ag_module_get_parameter(t, "bias") : NULL;
    ok(tw && ag_shape_of(tw).dim[0] == 6 && ag_shape_of(tw).dim[1] == 4 && ag_shape_of(tw).dim[2] == 3 &&
       ag_shape_of(tw).dim[3] == 2 && tb && ag_numel(tb) == 8, "ConvTranspose2d(6, 8, (3, 2), groups=2): weight [6, 4, 3, 2], bias [8]");
    double tbound = 1 / sqrt(4.0 * 3 * 2), tmax = 0;
    float tv[6 * 24];
    if (tw) ag_copy_to(tw, tv, 6 * 24, AG_F32);
    for (int i = 0; tw && i < 6 * 24; i++) tmax = fmax(tmax, fabs(tv[i]));
    ok(tmax <= tbound && tmax > 0.8 * tbound, "its weights fill U(-1/√24, 1/√24), fan_in = out/groups·kernel (max %.4f)",
       tmax);
    ag_module_free(t);
    ok(!ag_nn_conv_transpose2d(3, 4, 3, 3, &(ag_conv_transpose_opts){.stride = {2, 2}, .output_padding = {2, 0}}, true) &&
       strstr(ag_last_error(), "nn.ConvTranspose2d: output_padding 2 must be non-negative and smaller than the stride 2"),
       "ConvTranspose2d refuses output_padding >= stride: %s", ag_last_error());
    ok(!ag_nn_max_pool2d(NULL) && ag_last_status() == AG_ERR_ARG, "a pooling module needs options: %s", ag_last_error());
    ok(!ag_nn_avg_pool2d(&(ag_pool_opts){.kernel = {2, 2}, .dilation = {2, 2}}) && ag_last_status() == AG_ERR_ARG,
       "AvgPool2d refuses a dilation: %s", ag_last_error());
}

/* PyTorch's model, its state dict loaded into the same agrad model: the same output and input gradient. */
static void test_model(void) {
    ag_module *m = AG_SEQUENTIAL(ag_nn_conv2d(3, 8, 3, 3, &(ag_conv_opts){.padding = {1, 1}}, true), ag_nn_relu(),
                                 ag_nn_max_pool2d(&(ag_pool_opts){.kernel = {2, 2}}),
                                 ag_nn_conv2d(8, 6, 3, 2, &(ag_conv_opts){.stride = {2, 1}, .groups = 2}, false),
                                 ag_nn_avg_pool2d(&(ag_pool_opts){.kernel = {2, 2}, .ceil_mode = true}),
                                 ag_nn_adaptive_avg_pool2d(2, 3));
    ag_state_dict *sd = ag_state_dict_new();
    const char *names[] = {"0.weight", "0.bias", "3.weight"};
    for (int i = 0; i < 3; i++) {
        char k[64];
        snprintf(k, sizeof k, "model.%s", names[i]);
        ag_state_dict_set(sd, names[i], F("model", names[i]) ? ag_state_dict_get(fx, k) : NULL);
    }
    ok(m && ag_module_load_state_dict(m, sd, true) == AG_OK, "PyTorch's state dict loads strictly (names and shapes match)");
    ag_state_dict_free(sd);
    ag_scope_begin();
    ag_tensor *x = ag_requires_grad_(ag_clone(F("model", "x")), true);
    ag_tensor *y = ag_module_forward(m, x);
    agree("model", "default", "y", y, F("model", "y"), AG_F32);
    ok(y && ag_backward(ag_sum(ag_mul(y, F("model", "dy")))) == AG_OK, "model backward");
    agree("model", "default", "dx", ag_grad(x), F("model", "dx"), AG_F32);
    ag_scope_end();
    ag_module_free(m);
}

/* The second model: transposed convolution, padding and resampling modules, PyTorch's state dict loaded. */
static void test_model2(void) {
    ag_module *m = AG_SEQUENTIAL(ag_nn_reflection_pad2d(1, 1, 1, 1), ag_nn_conv2d(3, 4, 3, 3, NULL, true), ag_nn_relu(),
                                 ag_nn_conv_transpose2d(4, 3, 3, 3, &(ag_conv_transpose_opts){.stride = {2, 2},
                                                        .padding = {1, 1}, .output_padding = {1, 1}}, true),
                                 ag_nn_upsample(&(ag_interp_opts){.scale_factor = {1.5, 1.5}, .mode = AG_INTERP_BILINEAR}),
                                 ag_nn_replication_pad2d(1, 0, 2, 1), ag_nn_zero_pad2d(1, 1, 1, 1),
                                 ag_nn_upsample(&(ag_interp_opts){.size = {9, 8}}), ag_nn_adaptive_max_pool2d(3, 4));
    ag_state_dict *sd = ag_state_dict_new();
    const char *names[] = {"1.weight", "1.bias", "3.weight", "3.bias"};
    for (int i = 0; i < 4; i++) {
        char k[64];
        snprintf(k, sizeof k, "model2.%s", names[i]);
        ag_state_dict_set(sd, names[i], ag_state_dict_get(fx, k));
    }
    ok(m && ag_module_load_state_dict(m, sd, true) == AG_OK, "model2: PyTorch's state dict loads strictly");
    ag_state_dict_free(sd);
    ag_scope_begin();
    ag_tensor *x = ag_requires_grad_(ag_clone(F("model2", "x")), true);
    ag_tensor *y = ag_module_forward(m, x);
    agree("model2", "default", "y", y, F("model2", "y"), AG_F32);
    ok(y && ag_backward(ag_sum(ag_mul(y, F("model2", "dy")))) == AG_OK, "model2 backward");
    agree("model2", "default", "dx", ag_grad(x), F("model2", "dx"), AG_F32);
    ag_scope_end();
    ag_module_free(m);
}

/* The adaptive average's forward sums windows of 8 columns or more in eight float64 partial sums (ops/pool.c,
 * session 18): against a plain float64 sum of each window, on planes whose windows are 4 to 43 columns wide
 * (whole blocks of 8, blocks and a rest, narrower ones summed directly) and 3 rows high: float32 within
 * one ulp of the float64 mean rounded (another order of the float64 sum), float64 within n·2⁻⁵² of Σ|x|/n. */
static void test_adaptive_avg_wide_windows(void) {
    int bad[2] = {0, 0}, windows = 0;
    for (int d = 0; d < 2; d++)
        for (int64_t W = 8; W <= 43; W += 5)
            for (int64_t OW = 1; OW <= 2; OW++) {
                ag_scope_begin();
                const ag_dtype dt = d ? AG_F64 : AG_F32;
                const int64_t H = 7, OH = 3;
                ag_tensor *x = ag_randn(AG_SHAPE(2, 3, H, W), dt), *y = ag_adaptive_avg_pool2d(x, OH, OW);
                for (int64_t p = 0; y && p < 6; p++)
                    for (int64_t oh = 0; oh < OH; oh++)
                        for (int64_t ow = 0; ow < OW; ow++) {
                            const int64_t h0 = oh * H / OH, h1 = ((oh + 1) * H + OH - 1) / OH;
                            const int64_t w0 = ow * W / OW, w1 = ((ow + 1) * W + OW - 1) / OW;
                            double s = 0, mag = 0, n = (double)((h1 - h0) * (w1 - w0));
                            for (int64_t ih = h0; ih < h1; ih++)
                                for (int64_t iw = w0; iw < w1; iw++) {
                                    const double v = ag_get(x, (int64_t[]){p / 3, p % 3, ih, iw});
                                    s += v, mag += fabs(v);
                                }
                            const double got = ag_get(y, (int64_t[]){p / 3, p % 3, oh, ow});
                            const float want32 = (float)(s / n);
                            bad[d] += d ? fabs(got - s / n) > n * 0x1p-52 * mag / n
                                        : (float)got != want32 && (float)got != nextafterf(want32, INFINITY) &&
                                              (float)got != nextafterf(want32, -INFINITY);
                            windows++;
                        }
                bad[d] += !y;
                ag_scope_end();
            }
    ok(bad[0] == 0 && bad[1] == 0,
       "adaptive average of windows 4 to 43 columns wide: float32 within an ulp, float64 within n·2⁻⁵²·Σ|x|/n of a plain "
       "float64 sum (%d windows; %d and %d off)", windows, bad[0], bad[1]);
}

/* The input position of output position o of a dim of size n with left pad l in mode m (-1: the fill). */
static int64_t pad_source(int m, int64_t o, int64_t l, int64_t n) {
    const int64_t i = o - l;
    if (i >= 0 && i < n) return i;
    return m == 1 ? (i < 0 ? -i : 2 * (n - 1) - i) : m == 2 ? (i < 0 ? 0 : n - 1) : m == 3 ? (i % n + n) % n : -1;
}

/* pad's rows copied in blocks (ops/pad.c's copy_run: 128 bytes, the last block ending at the row's end):
 * every mode, float32 and float64, rows 1 to 261 elements wide around the block sizes (32 floats, 16
 * doubles), left and right pads from a crop to the whole dim, a transposed input (a strided row) and
 * empty ones, each element against the mode's source read with ag_get. */
static void test_pad_rows(void) {
    static const int64_t widths[] = {1, 5, 15, 16, 17, 31, 32, 33, 47, 63, 64, 65, 100, 129, 261};
    int bad = 0, calls = 0;
    for (int d = 0; d < 2; d++)
        for (size_t k = 0; k < sizeof widths / sizeof *widths; k++)
            for (int m = 0; m < 4; m++)
                for (int v = 0; v < 5; v++) {
                    ag_scope_begin();
                    const int64_t W = widths[k], H = 3;
                    /* (left, right) of the last dim, then of dim -2; v 4: the input transposed */
                    const int64_t lr[5][2] = {{1, 3}, {0, 2}, {W, W}, {3, 0}, {2, 1}};
                    int64_t l = lr[v][0], r = lr[v][1];
                    if (m == 1 && l >= W) l = W - 1;
                    if (m == 1 && r >= W) r = W - 1;
                    if (m == 3 && l > W) l = W;
                    if (m == 3 && r > W) r = W;
                    if (m == 0 && v == 3) l = -(W / 2), r = 2; /* a crop */
                    const int64_t pad[4] = {l, r, 2, 1};
                    ag_tensor *x = v == 4 ? ag_transpose(ag_randn(AG_SHAPE(2, W, H), d ? AG_F64 : AG_F32), 1, 2)
                                          : ag_randn(AG_SHAPE(2, H, W), d ? AG_F64 : AG_F32);
                    ag_tensor *y = ag_pad(x, 4, pad, (ag_pad_mode)m, 0.25);
                    calls++;
                    const int64_t OH = H + 3, OW = W + l + r;
                    bad += !y || ag_shape_of(y).dim[2] != OW || ag_shape_of(y).dim[1] != OH;
                    for (int64_t b = 0; y && !bad && b < 2; b++)
                        for (int64_t i = 0; i < OH; i++)
                            for (int64_t j = 0; j < OW; j++) {
                                const int64_t si = pad_source(m, i, 2, H), sj = pad_source(m, j, l, W);
                                const double want = si < 0 || sj < 0 ? 0.25 : ag_get(x, (int64_t[]){b, si, sj});
                                bad += ag_get(y, (int64_t[]){b, i, j}) != want;
                            }
                    ag_scope_end();
                }
    for (int d = 0; d < 2; d++) { /* empty: no row, or rows of no element */
        ag_scope_begin();
        ag_tensor *y = ag_pad(ag_zeros(AG_SHAPE(0, 3, 40), d ? AG_F64 : AG_F32), 4, (int64_t[]){1, 3, 2, 0},
                              AG_PAD_CIRCULAR, 0);
        ag_tensor *z = ag_pad(ag_zeros(AG_SHAPE(2, 3, 0), d ? AG_F64 : AG_F32), 4, (int64_t[]){1, 3, 2, 0},
                              AG_PAD_CONSTANT, 0.5);
        bad += !y || ag_numel(y) != 0 || !z || ag_numel(z) != 2 * 5 * 4 || ag_item(ag_sum(z)) != 20;
        calls += 2;
        ag_scope_end();
    }
    ok(bad == 0, "pad's rows 1 to 261 elements wide, every mode, float32 and float64, pads up to the dim, a transposed "
       "input and empty ones: each element its source's (%d calls, %d off)", calls, bad);
}

int main(void) {
    ag_manual_seed(7);
    fx = ag_load_safetensors(FIXTURES "/conv.safetensors");
    ok(fx != NULL, "the fixture loads");
    if (fx) {
        check_fixture("conv2d", run_conv2d);
        check_fixture("conv1d", run_conv1d);
        check_fixture("max_pool2d", run_max_pool2d);
        check_fixture("avg_pool2d", run_avg_pool2d);
        check_fixture("adaptive_avg_pool2d", run_adaptive);
        check_fixture("max_pool1d", run_max_pool1d);
        check_fixture("avg_pool1d", run_avg_pool1d);
        check_fixture("conv_transpose2d", run_conv_transpose2d);
        check_fixture("conv_transpose1d", run_conv_transpose1d);
        check_fixture("adaptive_max_pool2d", run_adaptive_max);
        check_fixture("pad", run_pad);
        check_fixture("interpolate", run_interpolate);
        check_fixture("max_unpool2d", run_max_unpool2d);
        check_adjoint_ops("pad");
        check_adjoint_ops("interpolate");
        diag("worst relative error against PyTorch: float32 %.2g, float64 %.2g", worst_seen[0], worst_seen[1]);
    }
    test_gradchecks();
    test_adaptive_avg_wide_windows();
    test_pad_rows();
    test_primitives_cached();
    test_blocked_layouts();
    test_winograd();
    test_batch_chunks();
    test_partial_grads(AG_F32);
    test_partial_grads(AG_F64);
    test_empty();
    test_errors();
    test_transpose_errors();
    test_transpose_adjoint(AG_F32);
    test_transpose_adjoint(AG_F64);
    test_pool_errors();
    test_resample_errors();
    test_third_order();
    test_pool_details();
    test_max_pool_2x2_adjoint();
    test_max_pool_2x2_codes();
    test_pool_2x2();
    test_adaptive_max_lanes();
    test_max_pool_rows();
    test_pool_threads();
    test_module_repr();
    test_module_init();
    if (fx) test_model();
    if (fx) test_model2();
    ag_state_dict_free(fx);
    return tap_done();
}

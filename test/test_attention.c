/*
 * test_attention.c - scaled_dot_product_attention (ops/attention.c) against the
 * same computation in separate agrad ops (matmul, softmax, masked_fill), in
 * float32 and float64: no mask, causal, a bool mask broadcast over the heads, an
 * additive float mask; a row with every key masked; dropout by statistics and
 * seeded reproducibility; a strided dy; the rules in differentiable ops (create_graph, forward
 * mode) under dropout and with fully masked rows; the argument errors; attention on a packed
 * projection (ag__sdpa_packed) against the heads as views, bit for bit.  (The
 * gradients are gradchecked in float64 by test_ops_gradcheck over the op's test row.)
 */
#include <math.h>
#include <string.h>
#include "agrad/agrad.h"
#include "ops/attention.h"
#include "tap.h"

/* The largest |a - b| over two tensors of one shape. */
static double max_diff(ag_tensor *a, ag_tensor *b) {
    ag_tensor *ac = ag_to_dtype(ag_contiguous(a), AG_F64), *bc = ag_to_dtype(ag_contiguous(b), AG_F64);
    double m = 0;
    for (int64_t i = 0; i < ag_numel(ac); i++) m = fmax(m, fabs(((double *)ag_data(ac))[i] - ((double *)ag_data(bc))[i]));
    return m;
}

/* The negation of a contiguous bool tensor. */
static ag_tensor *negate(ag_tensor *b) {
    ag_tensor *r = ag_contiguous(ag_clone(b));
    for (int64_t i = 0; i < ag_numel(r); i++) ((bool *)ag_data(r))[i] = !((bool *)ag_data(b))[i];
    return r;
}

/* softmax(q·kᵀ/√E masked)·v in separate ops; masked (bool, NULL for none) true = masked out, add (float) added. */
static ag_tensor *reference(ag_tensor *q, ag_tensor *k, ag_tensor *v, ag_tensor *masked, ag_tensor *add) {
    const int n = ag_ndim(q);
    ag_tensor *s = ag_mul_scalar(ag_matmul(q, ag_transpose(k, n - 2, n - 1)), 1 / sqrt((double)ag_shape_of(q).dim[n - 1]));
    if (masked) s = ag_masked_fill(s, masked, -INFINITY);
    if (add) s = ag_add(s, add);
    return ag_matmul(ag_softmax(s, n - 1), v);
}

static void test_against_ops(ag_dtype dt) {
    const double tol = dt == AG_F64 ? 1e-12 : 2e-6;
    const char *name = ag_dtype_name(dt);
    ag_scope_begin();
    ag_manual_seed(7);
    ag_tensor *q = ag_randn(AG_SHAPE(2, 3, 5, 4), dt), *k = ag_randn(AG_SHAPE(2, 3, 6, 4), dt);
    ag_tensor *v = ag_randn(AG_SHAPE(2, 3, 6, 3), dt);
    ok(max_diff(ag_scaled_dot_product_attention(q, k, v, NULL, 0, false), reference(q, k, v, NULL, NULL)) < tol,
       "%s: no mask, as matmul/softmax/matmul", name);
    ag_tensor *causal = ag_zeros(AG_SHAPE(5, 6), AG_BOOL); /* tril of ones */
    for (int i = 0; i < 5; i++)
        for (int j = 0; j <= i; j++) ((bool *)ag_data(causal))[i * 6 + j] = true;
    ok(max_diff(ag_scaled_dot_product_attention(q, k, v, NULL, 0, true), reference(q, k, v, negate(causal), NULL)) < tol,
       "%s: is_causal keeps key j <= query i (tril of ones [L, S])", name);
    ag_tensor *keep = ag_contiguous(ag_gt(ag_randn(AG_SHAPE(2, 1, 5, 6), AG_F64), ag_scalar(-0.8, AG_F64)));
    for (int i = 0; i < 2 * 5; i++) ((bool *)ag_data(keep))[i * 6] = true; /* no row left empty */
    ok(max_diff(ag_scaled_dot_product_attention(q, k, v, keep, 0, false), reference(q, k, v, negate(keep), NULL)) < tol,
       "%s: a bool mask [2, 1, L, S] broadcast over the heads", name);
    ag_tensor *add = ag_randn(AG_SHAPE(5, 6), dt);
    ok(max_diff(ag_scaled_dot_product_attention(q, k, v, add, 0, false), reference(q, k, v, NULL, add)) < tol,
       "%s: an additive float mask [L, S]", name);
    ag_tensor *wide = ag_randn(AG_SHAPE(7, 6), dt), *view = ag_narrow(wide, 0, 2, 5); /* offset 12 */
    ok(max_diff(ag_scaled_dot_product_attention(q, k, v, view, 0, false), reference(q, k, v, NULL, view)) < tol,
       "%s: an additive float mask that is a view with an offset (rows 2..6 of [7, S])", name);
    ag_tensor *wkeep = ag_ones(AG_SHAPE(7, 6), AG_BOOL), *kview = ag_narrow(wkeep, 0, 2, 5);
    for (int j = 1; j < 6; j++) ((bool *)ag_data(wkeep))[j] = false; /* row 0 of the storage, not of the view */
    for (int i = 2; i < 7; i++) ((bool *)ag_data(wkeep))[i * 6 + 5] = false; /* the view's last key */
    ok(max_diff(ag_scaled_dot_product_attention(q, k, v, kview, 0, false), reference(q, k, v, negate(kview), NULL)) < tol,
       "%s: a bool mask that is a view with an offset", name);
    ag_tensor *none = ag_zeros(AG_SHAPE(5, 6), AG_BOOL);
    ((bool *)ag_data(none))[0] = true; /* row 0 keeps key 0, rows 1.. keep nothing */
    ag_tensor *y = ag_contiguous(ag_scaled_dot_product_attention(q, k, v, none, 0, false));
    double row1 = 0; /* rows 1..4 of every batch and head */
    for (int64_t bh = 0; bh < 6; bh++)
        for (int64_t i = 1; i < 5; i++)
            for (int64_t c = 0; c < 3; c++)
                row1 += fabs(dt == AG_F64 ? ((double *)ag_data(y))[(bh * 5 + i) * 3 + c]
                                          : ((float *)ag_data(y))[(bh * 5 + i) * 3 + c]);
    ok(row1 == 0, "%s: a row with every key masked gives zeros", name);
    ag_scope_end();
}

/* y and the gradients of q, k, v for the seed u, as one float64 tensor (flattened, concatenated). */
static ag_tensor *outputs_of(ag_tensor *q, ag_tensor *k, ag_tensor *v, ag_tensor *mask, bool causal, ag_tensor *u) {
    ag_tensor *in[3] = {q, k, v}, *g[3];
    ag_tensor *y = ag_scaled_dot_product_attention(q, k, v, mask, 0, causal);
    if (!y || ag_autograd_grad(&y, 1, in, 3, &u, NULL, g) != AG_OK) return NULL;
    ag_tensor *all[4] = {ag_flatten(y, 0, -1), ag_flatten(g[0], 0, -1), ag_flatten(g[1], 0, -1), ag_flatten(g[2], 0, -1)};
    return ag_to_dtype(ag_cat(all, 4, 0), AG_F64);
}

/* float32 rows of 131 keys (the vectorised kernels' tails), enough of them to be split over the
 * threads, and products large enough (2 x 4 heads of 131x131x32, 4.4M multiply-adds) that the one
 * batched matmul call of each runs on two threads: the output and gradients match float64 to
 * float32 rounding, with each mask, and are the same bits on one thread and on two; q, k and v
 * are heads read through strides from one [L, B, 3E] tensor, as nn.MultiheadAttention passes them. */
static void test_long_rows(void) {
    ag_scope_begin();
    ag_manual_seed(5);
    const int64_t L = 131, B = 2, Hd = 4, D = 32;
    ag_tensor *qkv = ag_randn(AG_SHAPE(L, B, 3, Hd, D), AG_F32), *u = ag_randn(AG_SHAPE(B, Hd, L, D), AG_F32);
    const int perm[4] = {1, 2, 0, 3};
    ag_tensor *in[3];
    for (int i = 0; i < 3; i++) in[i] = ag_requires_grad_(ag_permute(ag_select(qkv, 2, i), perm), true);
    ag_tensor *add = ag_randn(AG_SHAPE(L, L), AG_F32);
    ag_tensor *keep = ag_contiguous(ag_gt(ag_randn(AG_SHAPE(B, 1, L, L), AG_F32), ag_scalar(-0.8, AG_F32)));
    for (int64_t i = 0; i < B * L; i++) ((bool *)ag_data(keep))[i * L] = true;
    struct { const char *what; ag_tensor *mask; bool causal; } cases[4] = {
        {"no mask", NULL, false}, {"is_causal", NULL, true}, {"a float mask", add, false}, {"a bool mask", keep, false}};
    const int threads = ag_get_num_threads();
    for (int c = 0; c < 4; c++) {
        ag_tensor *in64[3];
        for (int i = 0; i < 3; i++) in64[i] = ag_requires_grad_(ag_to_dtype(ag_detach(in[i]), AG_F64), true);
        ag_tensor *m64 = cases[c].mask == add ? ag_to_dtype(add, AG_F64) : cases[c].mask;
        ag_tensor *ref = outputs_of(in64[0], in64[1], in64[2], m64, cases[c].causal, ag_to_dtype(u, AG_F64));
        ag_set_num_threads(1);
        ag_tensor *one = outputs_of(in[0], in[1], in[2], cases[c].mask, cases[c].causal, u);
        ag_set_num_threads(2);
        ag_tensor *two = outputs_of(in[0], in[1], in[2], cases[c].mask, cases[c].causal, u);
        ag_set_num_threads(threads);
        ok(ref && one && two && max_diff(one, ref) < 2e-5 && max_diff(one, two) == 0,
           "float32, 131 keys, %s: output and gradients within %.2g of float64, 1 and 2 threads differ by %.2g",
           cases[c].what, one && ref ? max_diff(one, ref) : INFINITY, one && two ? max_diff(one, two) : INFINITY);
    }
    ag_scope_end();
}

/* The adjoint reads dy through its strides (no copy first): a dy broadcast along the queries
 * (stride 0 there) gives the gradients of its contiguous copy, as do the heads' dy of a sum. */
static void test_strided_dy(void) {
    ag_scope_begin();
    ag_manual_seed(9);
    const int64_t B = 2, H = 3, L = 40, S = 36, D = 16;
    ag_tensor *in[3] = {ag_requires_grad_(ag_randn(AG_SHAPE(B, H, L, D), AG_F32), true),
                        ag_requires_grad_(ag_randn(AG_SHAPE(B, H, S, D), AG_F32), true),
                        ag_requires_grad_(ag_randn(AG_SHAPE(B, H, S, D), AG_F32), true)};
    ag_tensor *row = ag_randn(AG_SHAPE(B, H, 1, D), AG_F32);
    ag_tensor *seeds[3] = {ag_expand(row, AG_SHAPE(B, H, L, D)), ag_contiguous(ag_expand(row, AG_SHAPE(B, H, L, D))),
                           ag_ones(AG_SHAPE(B, H, L, D), AG_F32)};
    ag_tensor *g[3][3];
    bool ran = true;
    for (int i = 0; i < 3; i++) { /* i = 2: sum's dy, stride 0 everywhere */
        ag_tensor *y = ag_scaled_dot_product_attention(in[0], in[1], in[2], NULL, 0, false);
        ag_tensor *out = i == 2 ? ag_sum(y) : y;
        ran = ran && ag_autograd_grad(&out, 1, in, 3, i == 2 ? NULL : &seeds[i], NULL, g[i]) == AG_OK;
    }
    ag_tensor *ref[3]; /* the sum's gradients against an explicit seed of ones */
    ag_tensor *y = ag_scaled_dot_product_attention(in[0], in[1], in[2], NULL, 0, false);
    ran = ran && ag_autograd_grad(&y, 1, in, 3, &seeds[2], NULL, ref) == AG_OK;
    double worst = 0, worst_sum = 0;
    for (int j = 0; ran && j < 3; j++) {
        worst = fmax(worst, max_diff(g[0][j], g[1][j]));
        worst_sum = fmax(worst_sum, max_diff(g[2][j], ref[j]));
    }
    ok(ran && worst < 1e-5 && worst_sum < 1e-5,
       "a broadcast dy [B, H, 1, D] -> [B, H, L, D] gives its contiguous copy's gradients (worst %.2g); sum's dy too (%.2g)",
       worst, worst_sum);
    ag_scope_end();
}

/* With v the identity, y is the dropped probabilities P' itself. */
static void test_dropout(void) {
    ag_scope_begin();
    ag_manual_seed(3);
    const int64_t L = 64, S = 64;
    ag_tensor *q = ag_randn(AG_SHAPE(4, L, 8), AG_F64), *k = ag_randn(AG_SHAPE(4, S, 8), AG_F64);
    ag_tensor *v = ag_eye(S, AG_F64);
    ag_tensor *v3 = ag_contiguous(ag_expand(v, AG_SHAPE(4, S, S)));
    ag_tensor *p = ag_scaled_dot_product_attention(q, k, v3, NULL, 0, false);
    ag_manual_seed(11);
    ag_tensor *d1 = ag_contiguous(ag_scaled_dot_product_attention(q, k, v3, NULL, 0.25, false));
    ag_manual_seed(11);
    ag_tensor *d2 = ag_scaled_dot_product_attention(q, k, v3, NULL, 0.25, false);
    ok(max_diff(d1, d2) == 0, "dropout: the same seed gives the same output");
    int64_t zeros = 0, n = ag_numel(d1), bad = 0;
    const double *a = ag_data(d1), *b = ag_data(ag_contiguous(p));
    for (int64_t i = 0; i < n; i++) {
        if (a[i] == 0) zeros++;
        else if (fabs(a[i] - b[i] / 0.75) > 1e-12) bad++;
    }
    double frac = (double)zeros / (double)n; /* 16384 draws: sd 0.0034 */
    ok(fabs(frac - 0.25) < 0.02, "dropout 0.25 drops %.4f of the probabilities", frac);
    ok(bad == 0, "dropout: the kept probabilities are scaled by 1/(1-p) (%lld wrong)", (long long)bad);
    ag_scope_end();
}

/* The attention of in[0..2] with the mask and dropout of ctx; under dropout the generator is
 * seeded at every call, so that every evaluation drops the same probabilities. */
typedef struct attn_case {
    const char *what;
    ag_tensor *mask;
    double dropout;
} attn_case;

static ag_tensor *attention_of(ag_tensor *const *in, int n, void *ctx) {
    const attn_case *c = ctx;
    (void)n;
    if (c->dropout > 0) ag_manual_seed(5);
    return ag_scaled_dot_product_attention(in[0], in[1], in[2], c->mask, c->dropout, false);
}

/* The rules in differentiable ops where the op's test row does not reach (test_ops_gradgradcheck
 * and test_ops_jvp check them there): dropout, and rows every key is masked out of, by a float
 * mask (-inf) and by a bool one.  The create_graph gradients equal backward's, gradgradcheck
 * passes, and the tangent matches central differences. */
static void test_higher_order(void) {
    ag_scope_begin();
    ag_manual_seed(17);
    ag_tensor *in[3] = {ag_randn(AG_SHAPE(2, 3, 4), AG_F64), ag_randn(AG_SHAPE(2, 5, 4), AG_F64),
                        ag_randn(AG_SHAPE(2, 5, 2), AG_F64)};
    ag_tensor *t[3] = {ag_randn(AG_SHAPE(2, 3, 4), AG_F64), ag_randn(AG_SHAPE(2, 5, 4), AG_F64),
                       ag_randn(AG_SHAPE(2, 5, 2), AG_F64)};
    ag_tensor *add = ag_contiguous(ag_randn(AG_SHAPE(3, 5), AG_F64)), *keep = ag_ones(AG_SHAPE(3, 5), AG_BOOL);
    for (int j = 0; j < 5; j++) {
        ((double *)ag_data(add))[5 + j] = -INFINITY; /* row 1: every key masked out */
        ((bool *)ag_data(keep))[10 + j] = false;     /* row 2 */
        ((bool *)ag_data(keep))[j] = j % 2 == 0;
    }
    const attn_case cases[3] = {{"dropout 0.3", NULL, 0.3}, {"a float mask with a row of -inf", add, 0},
                                {"a bool mask with a row of false", keep, 0}};
    for (int c = 0; c < 3; c++) {
        const attn_case *k = &cases[c];
        for (int i = 0; i < 3; i++) ag_requires_grad_(in[i], true);
        ag_tensor *y = attention_of(in, 3, (void *)k), *u = ag_randn(ag_shape_of(y), AG_F64), *plain[3], *recorded[3];
        ag_grad_opts keep_graph = {.retain_graph = true}, create = {.create_graph = true};
        ag_status st = ag_autograd_grad(&y, 1, in, 3, &u, &keep_graph, plain);
        if (st == AG_OK) st = ag_autograd_grad(&y, 1, in, 3, &u, &create, recorded);
        double worst = 0;
        for (int i = 0; i < 3 && st == AG_OK; i++) worst = fmax(worst, max_diff(plain[i], recorded[i]));
        ok(st == AG_OK && worst < 1e-12, "%s: the create_graph gradients are backward's (worst difference %.2g)", k->what,
           worst);
        ag_gradcheck_opts quiet = {0, 0, 0, true};
        ag_gradcheck_report rep;
        st = ag_gradgradcheck(attention_of, (void *)k, in, 3, &quiet, &rep);
        ok(st == AG_OK, "%s: gradgradcheck (%lld entries)", k->what, (long long)rep.checked);
        for (int i = 0; i < 3; i++) ag_requires_grad_(in[i], false);
        ag_tensor *out, *jv, *xp[3], *xm[3];
        st = ag_jvp(attention_of, (void *)k, in, 3, t, &out, &jv);
        for (int i = 0; i < 3; i++) {
            xp[i] = ag_add(in[i], ag_mul_scalar(t[i], 1e-6));
            xm[i] = ag_sub(in[i], ag_mul_scalar(t[i], 1e-6));
        }
        ag_tensor *fd = ag_div_scalar(ag_sub(attention_of(xp, 3, (void *)k), attention_of(xm, 3, (void *)k)), 2e-6);
        ok(st == AG_OK && max_diff(jv, fd) < 1e-7, "%s: the tangent matches central differences (%.2g)", k->what,
           st == AG_OK ? max_diff(jv, fd) : INFINITY);
    }
    ag_scope_end();
}

static void test_errors(void) {
    ag_scope_begin();
    ag_tensor *q = ag_zeros(AG_SHAPE(2, 3, 4), AG_F32), *k = ag_zeros(AG_SHAPE(2, 5, 4), AG_F32);
    ag_tensor *v = ag_zeros(AG_SHAPE(2, 5, 6), AG_F32);
    ag_tensor *mask = ag_ones(AG_SHAPE(3, 5), AG_BOOL);
    ok(!ag_scaled_dot_product_attention(q, k, v, mask, 0, true) && ag_last_status() == AG_ERR_VALUE,
       "attn_mask and is_causal together: AG_ERR_VALUE");
    ok(!ag_scaled_dot_product_attention(q, k, v, NULL, 1, false) && ag_last_status() == AG_ERR_VALUE,
       "dropout_p 1: AG_ERR_VALUE");
    ok(!ag_scaled_dot_product_attention(q, v, v, NULL, 0, false) && ag_last_status() == AG_ERR_SHAPE,
       "key of another E: AG_ERR_SHAPE");
    ok(!ag_scaled_dot_product_attention(q, k, v, ag_ones(AG_SHAPE(4, 5), AG_BOOL), 0, false) &&
           ag_last_status() == AG_ERR_SHAPE, "a mask [4, 5] for scores [2, 3, 5]: AG_ERR_SHAPE");
    ok(!ag_scaled_dot_product_attention(q, k, v, ag_ones(AG_SHAPE(3, 5), AG_F64), 0, false) &&
           ag_last_status() == AG_ERR_DTYPE, "a float64 mask for float32 inputs: AG_ERR_DTYPE");
    ag_scope_end();
}


/* Whether a and b (one shape) hold the same values element for element, bit for bit but for the
 * sign of a zero (the views' path adds dq and dk into a zeroed gradient: -0 became +0 there). */
static bool same_values(ag_tensor *a, ag_tensor *b) {
    ag_tensor *ac = ag_contiguous(a), *bc = ag_contiguous(b);
    if (!ac || !bc || ag_numel(ac) != ag_numel(bc) || ag_dtype_of(ac) != ag_dtype_of(bc)) return false;
    const size_t es = ag_dtype_of(ac) == AG_F64 ? 8 : 4;
    const char *p = ag_data(ac), *q = ag_data(bc);
    for (int64_t i = 0; i < ag_numel(ac); i++) {
        const double x = es == 8 ? ((const double *)p)[i] : ((const float *)p)[i];
        const double y = es == 8 ? ((const double *)q)[i] : ((const float *)q)[i];
        if (memcmp(p + (size_t)i * es, q + (size_t)i * es, es) != 0 && !(x == 0 && y == 0)) return false;
    }
    return true;
}

/* The heads of qkv [T, B, 3E] (seq_first) or [B, T, 3E] as nn.MultiheadAttention made them before
 * the packed op: reshape, select, permute. */
static ag_tensor *view_heads(ag_tensor *qkv, int64_t H, bool seq_first, int w) {
    const ag_shape s = ag_shape_of(qkv);
    const int perm[4] = {seq_first ? 1 : 0, 2, seq_first ? 0 : 1, 3};
    ag_tensor *split = ag_reshape(qkv, AG_SHAPE(s.dim[0], s.dim[1], 3, H, s.dim[2] / 3 / H));
    return ag_permute(ag_select(split, 2, w), perm);
}

/* ag__sdpa_packed against ag_scaled_dot_product_attention on the heads as views, merged as
 * nn.MultiheadAttention merges them: y and the gradient of qkv (which the packed op writes third by
 * third, its float32 products by dnnl_sgemm head by head into place, y's too) the same bits, at the
 * transformer step's [128, 8, 768] with 4 heads sequence first and [8, 128, 768] batch first on 1 and
 * 2 threads, in float64 and with a dy whose columns are not adjacent (the products into a buffer,
 * then copied into place). */
static void test_packed(void) {
    const int threads = ag_get_num_threads();
    const struct {
        const char *what;
        int64_t d0, d1, E, H;
        bool seq_first, strided_dy;
        ag_dtype dt;
        int threads;
    } cases[] = {
        {"float32 [128, 8, 768] 4 heads, sequence first, 1 thread", 128, 8, 256, 4, true, false, AG_F32, 1},
        {"float32 [128, 8, 768] 4 heads, sequence first, 2 threads", 128, 8, 256, 4, true, false, AG_F32, 2},
        {"float32 [8, 128, 768] 4 heads, batch first, 2 threads", 8, 128, 256, 4, false, false, AG_F32, 2},
        {"float32 [40, 3, 96] 2 heads, sequence first, dy's columns apart", 40, 3, 32, 2, true, true, AG_F32, 1},
        {"float64 [6, 2, 36] 3 heads, batch first", 6, 2, 12, 3, false, false, AG_F64, 1},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        ag_scope_begin();
        ag_set_num_threads(cases[c].threads);
        ag_manual_seed(31 + (uint64_t)c);
        const int64_t d0 = cases[c].d0, d1 = cases[c].d1, E = cases[c].E, H = cases[c].H;
        const bool sf = cases[c].seq_first;
        ag_tensor *x = ag_requires_grad_(ag_randn(AG_SHAPE(d0, d1, 3 * E), cases[c].dt), true);
        const bool tr = cases[c].strided_dy; /* y seen as [d0, E, d1]: dy's heads with no unit step */
        ag_tensor *u = ag_randn(tr ? AG_SHAPE(d0, E, d1) : AG_SHAPE(d0, d1, E), cases[c].dt);
        ag_tensor *yp = ag__sdpa_packed(x, H, sf), *gp = NULL, *gv = NULL, *yv = NULL;
        if (yp && ag_backward_ex(tr ? ag_transpose(yp, 1, 2) : yp, u, false) == AG_OK) gp = ag_clone(ag_grad(x));
        ag_zero_grad(x);
        yv = ag_scaled_dot_product_attention(view_heads(x, H, sf, 0), view_heads(x, H, sf, 1), view_heads(x, H, sf, 2),
                                             NULL, 0, false);
        const int merge[4] = {sf ? 2 : 0, sf ? 0 : 2, 1, 3}; /* as nn.MultiheadAttention merges them */
        yv = ag_reshape(ag_permute(yv, merge), AG_SHAPE(d0, d1, E));
        if (yv && ag_backward_ex(tr ? ag_transpose(yv, 1, 2) : yv, u, false) == AG_OK) gv = ag_grad(x);
        ok(yp && yv && gp && gv && same_values(yp, yv) && same_values(gp, gv),
           "packed attention, %s: y and dqkv are the views' path's bits", cases[c].what);
        ag_scope_end();
    }
    ag_set_num_threads(threads);
    ag_scope_begin();
    ok(!ag__sdpa_packed(ag_zeros(AG_SHAPE(4, 2, 30), AG_F32), 4, true) && ag_last_status() == AG_ERR_SHAPE,
       "packed attention: 3E = 30 with 4 heads: AG_ERR_SHAPE");
    ok(!ag__sdpa_packed(ag_zeros(AG_SHAPE(2, 24), AG_F32), 2, true) && ag_last_status() == AG_ERR_SHAPE,
       "packed attention: a 2-D qkv: AG_ERR_SHAPE");
    ag_scope_end();
}

int main(void) {
    test_against_ops(AG_F32);
    test_against_ops(AG_F64);
    test_long_rows();
    test_strided_dy();
    test_dropout();
    test_higher_order();
    test_errors();
    test_packed();
    return tap_done();
}

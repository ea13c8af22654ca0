/*
 * Tensors: creation, geometry of views, reading values, printing, scopes and
 * in-place updates.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "agrad/agrad.h"
#include "core/internal.h"
#include "tap.h"

static void test_creation(void) {
    ag_scope_begin();
    ag_tensor *z = ag_zeros(AG_SHAPE(2, 3), AG_F32);
    ok(z && ag_ndim(z) == 2 && ag_size(z, 0) == 2 && ag_size(z, -1) == 3 && ag_numel(z) == 6, "zeros [2, 3]");
    ok(ag_dtype_of(z) == AG_F32 && ag_is_contiguous(z) && ag_stride(z, 0) == 3, "zeros is contiguous float32");
    ag_tensor *f = ag_full(AG_SHAPE(4), 2.5, AG_F64);
    ok(ag_get(f, (int64_t[]){3}) == 2.5, "full");
    /* full copies its first element in doubling blocks: every element of every size and dtype,
     * and -0.0 keeps its sign (a zero fill by memset would give +0.0) */
    bool every = true;
    const ag_dtype fill_dtypes[] = {AG_F32, AG_F64, AG_I64, AG_BOOL, AG_U8};
    for (int d = 0; d < 5; d++)
        for (int64_t n = 0; n <= 67; n++) {
            ag_tensor *t = ag_full(AG_SHAPE(n), 3, fill_dtypes[d]);
            for (int64_t i = 0; t && i < n; i++)
                if (ag_get(t, (int64_t[]){i}) != (fill_dtypes[d] == AG_BOOL ? 1 : 3)) every = false;
            if (!t || ag_numel(t) != n) every = false;
        }
    ok(every, "full fills every element for sizes 0-67 in each dtype");
    ag_tensor *nz = ag_full(AG_SHAPE(5), -0.0, AG_F32);
    ok(signbit(ag_get(nz, (int64_t[]){4})) && ag_get(nz, (int64_t[]){4}) == 0, "full(-0.0) keeps the sign, as torch.full");
    ag_tensor *a = ag_arange(0, 5, 1, AG_F32);
    ok(ag_numel(a) == 5 && ag_get(a, (int64_t[]){4}) == 4, "arange(0, 5)");
    ag_tensor *a2 = ag_arange(1, 2, 0.3, AG_F64);
    ok(ag_numel(a2) == 4, "arange(1, 2, 0.3) has 4 elements");
    ag_tensor *l = ag_linspace(0, 1, 5, AG_F64);
    ok(ag_numel(l) == 5 && ag_get(l, (int64_t[]){4}) == 1.0 && ag_get(l, (int64_t[]){1}) == 0.25, "linspace(0, 1, 5)");
    ag_tensor *l1 = ag_linspace(3, 7, 1, AG_F32);
    ok(l1 && ag_numel(l1) == 1 && ag_get(l1, (int64_t[]){0}) == 3, "linspace(3, 7, 1) is [3], the start, as torch.linspace");
    ag_tensor *e = ag_eye(3, AG_F32);
    ok(ag_get(e, (int64_t[]){1, 1}) == 1 && ag_get(e, (int64_t[]){1, 2}) == 0, "eye(3)");
    ag_tensor *s = ag_scalar(7, AG_F64);
    ok(ag_ndim(s) == 0 && ag_item(s) == 7, "0-d scalar");
    double data[6] = {1, 2, 3, 4, 5, 6};
    ag_tensor *d = ag_from_data(data, AG_SHAPE(2, 3), AG_F64);
    data[0] = 100;
    ok(ag_get(d, (int64_t[]){0, 0}) == 1 && ag_get(d, (int64_t[]){1, 2}) == 6, "from_data copies");
    ag_tensor *b = ag_from_buffer(data, AG_SHAPE(6), AG_F64);
    ok(ag_get(b, (int64_t[]){0}) == 100, "from_buffer borrows");
    ok(!ag_from_buffer(data, AG_SHAPE(6), (ag_dtype)5) && ag_last_status() == AG_ERR_DTYPE &&
           strstr(ag_last_error(), "from_buffer: unknown dtype 5"),
       "from_buffer rejects an unknown dtype: %s", ag_last_error());
    ok(ag_item(d) != ag_item(d) && ag_last_status() == AG_ERR_SHAPE, "item of a 6-element tensor fails: %s", ag_last_error());
    ok(ag_zeros(AG_SHAPE(2, -1), AG_F32) == NULL && strstr(ag_last_error(), "negative"), "negative size rejected: %s",
       ag_last_error());
    ag_scope_end();
}

static void test_random(void) {
    ag_scope_begin();
    ag_manual_seed(42);
    ag_tensor *r1 = ag_randn(AG_SHAPE(100), AG_F64);
    ag_manual_seed(42);
    ag_tensor *r2 = ag_randn(AG_SHAPE(100), AG_F64);
    ok(memcmp(ag_data(r1), ag_data(r2), 800) == 0, "manual_seed makes randn reproducible");
    ag_tensor *u = ag_rand(AG_SHAPE(10000), AG_F64);
    double mean = ag_item(ag_mean(u)), var = ag_item(ag_var(u, 1));
    ok(fabs(mean - 0.5) < 0.02, "rand mean %.4f ~ 0.5", mean);
    ok(fabs(var - 1.0 / 12) < 0.01, "rand variance %.4f ~ 1/12", var);
    ag_tensor *n = ag_randn(AG_SHAPE(10000), AG_F64);
    ok(fabs(ag_item(ag_mean(n))) < 0.05, "randn mean ~ 0");
    ag_clear_error();
    ag_scope_end();
    /* a non-floating dtype fails before anything is made: outside a scope nothing leaks */
    long before = ag_live_tensors();
    ag_tensor *bad = ag_rand(AG_SHAPE(3), AG_I64), *badn = ag_randn(AG_SHAPE(2, 2), AG_BOOL);
    ok(!bad && !badn && ag_last_status() == AG_ERR_DTYPE && strstr(ag_last_error(), "randn: needs a floating tensor"),
       "rand/randn of int64/bool fail with a dtype error (%s)", ag_last_error());
    ok(ag_live_tensors() == before, "a failed rand/randn leaves no tensor behind (%ld live, %ld before)",
       ag_live_tensors(), before);
    ag_clear_error();
}

static void test_views(void) {
    ag_scope_begin();
    ag_tensor *x = ag_arange(0, 24, 1, AG_F64);
    ag_tensor *v = ag_view(x, AG_SHAPE(2, 3, 4));
    ok(v && ag_get(v, (int64_t[]){1, 2, 3}) == 23, "view [2,3,4]");
    ag_tensor *t = ag_transpose(v, 0, 2);
    ok(ag_size(t, 0) == 4 && ag_size(t, 2) == 2 && !ag_is_contiguous(t) && ag_get(t, (int64_t[]){3, 2, 1}) == 23,
       "transpose shares storage");
    ok(ag_view(t, AG_SHAPE(24)) == NULL && ag_last_status() == AG_ERR_SHAPE, "view of a transpose fails: %s",
       ag_last_error());
    ag_tensor *r = ag_reshape(t, AG_SHAPE(-1));
    ok(r && ag_numel(r) == 24 && ag_get(r, (int64_t[]){1}) == 12, "reshape copies when needed");
    ag_tensor *n = ag_narrow(v, 2, 1, 2);
    ok(ag_size(n, 2) == 2 && ag_get(n, (int64_t[]){0, 0, 0}) == 1, "narrow");
    ag_tensor *s = ag_slice(x, 0, 1, 10, 3);
    ok(ag_numel(s) == 3 && ag_get(s, (int64_t[]){2}) == 7, "slice 1:10:3");
    ag_tensor *sel = ag_select(v, 1, -1);
    ok(ag_ndim(sel) == 2 && ag_get(sel, (int64_t[]){1, 0}) == 20, "select");
    ag_tensor *u = ag_unsqueeze(x, 0);
    ok(ag_ndim(u) == 2 && ag_size(u, 0) == 1, "unsqueeze");
    ok(ag_ndim(ag_squeeze(u, 0)) == 1, "squeeze");
    ag_tensor *e = ag_expand(ag_view(ag_arange(0, 3, 1, AG_F64), AG_SHAPE(3, 1)), AG_SHAPE(2, 3, 4));
    ok(e && ag_size(e, 0) == 2 && ag_stride(e, 2) == 0 && ag_get(e, (int64_t[]){1, 2, 3}) == 2, "expand");
    ok(ag_expand(x, AG_SHAPE(3, 5)) == NULL, "bad expand fails: %s", ag_last_error());
    ag_tensor *fl = ag_flatten(v, 1, -1);
    ok(ag_ndim(fl) == 2 && ag_size(fl, 1) == 12, "flatten(1, -1)");
    ag_tensor *s0 = ag_scalar(5, AG_F64), *f0 = ag_flatten(s0, 0, -1);
    ok(f0 && ag_ndim(f0) == 1 && ag_size(f0, 0) == 1 && ag_item(f0) == 5, "flatten of a 0-d tensor (dims 0, -1) is [1]");
    ok(!ag_flatten(s0, 0, 1) && ag_last_status() == AG_ERR_INDEX && strstr(ag_last_error(), "dim 1"),
       "flatten of a 0-d tensor rejects dim 1: %s", ag_last_error());
    ok(!ag_flatten(s0, -2, 0) && ag_last_status() == AG_ERR_INDEX, "and dim -2: %s", ag_last_error());
    ag_tensor *p = ag_permute(v, (int[]){2, 0, 1});
    ok(ag_size(p, 0) == 4 && ag_get(p, (int64_t[]){3, 1, 2}) == 23, "permute");
    ag_tensor *c = ag_contiguous(p);
    ok(ag_is_contiguous(c) && ag_get(c, (int64_t[]){3, 1, 2}) == 23, "contiguous");
    ok(ag_select(v, 0, 5) == NULL && ag_last_status() == AG_ERR_INDEX, "select out of range: %s", ag_last_error());
    ok(ag_transpose(v, 0, 3) == NULL && strstr(ag_last_error(), "dim 3"), "bad dim: %s", ag_last_error());
    ag_clear_error();
    ok(ag_size(v, 3) == -1 && ag_last_status() == AG_ERR_INDEX &&
           !strcmp(ag_last_error(), "size: dim 3 out of range for a tensor of 3 dims (expected -3 to 2)"),
       "size of a missing dim: -1 and %s", ag_last_error());
    ag_clear_error();
    ok(ag_stride(v, -4) == -1 && ag_last_status() == AG_ERR_INDEX && strstr(ag_last_error(), "stride: dim -4"),
       "stride of a missing dim: -1 and %s", ag_last_error());
    ag_clear_error();
    ok(ag_size(ag_scalar(1, AG_F32), 0) == -1 && ag_last_status() == AG_ERR_INDEX && strstr(ag_last_error(), "0-d"),
       "size of a 0-d tensor: -1 and %s", ag_last_error());
    ag_clear_error();
    ok(ag_stride(NULL, 0) == -1 && ag_last_status() == AG_ERR_ARG && !strcmp(ag_last_error(), "stride: t is NULL"),
       "stride of NULL: -1 and %s", ag_last_error());
    ag_clear_error();
    ok(ag_size(v, -1) == 4 && ag_stride(v, -3) == 12 && ag_last_status() == AG_OK, "negative dims count from the end");
    ag_scope_end();
}

static void test_inplace(void) {
    ag_scope_begin();
    ag_tensor *x = ag_ones(AG_SHAPE(2, 3), AG_F32);
    uint32_t v0 = ag_version(x);
    ag_add_(x, ag_full(AG_SHAPE(3), 2, AG_F32), 0.5);
    ok(ag_get(x, (int64_t[]){1, 2}) == 2 && ag_version(x) == v0 + 1, "add_ with alpha and broadcasting bumps version");
    ag_mul_scalar_(x, 3);
    ok(ag_get(x, (int64_t[]){0, 0}) == 6, "mul_scalar_");
    ag_clamp_(x, -1, 4);
    ok(ag_get(x, (int64_t[]){0, 0}) == 4, "clamp_");
    ag_zero_(x);
    ok(ag_item(ag_sum(x)) == 0, "zero_");
    ag_tensor *col = ag_select(x, 1, 1);
    ag_fill_(col, 5);
    ok(ag_get(x, (int64_t[]){1, 1}) == 5 && ag_get(x, (int64_t[]){1, 0}) == 0, "fill_ through a view writes the base");
    ag_tensor *w = ag_requires_grad_(ag_ones(AG_SHAPE(2), AG_F32), true);
    ok(ag_add_scalar_(w, 1) == NULL && ag_last_status() == AG_ERR_GRAPH, "in-place on a tensor requiring grad fails: %s",
       ag_last_error());
    ag_no_grad_begin();
    ok(ag_add_scalar_(w, 1) != NULL && ag_get(w, (int64_t[]){0}) == 2, "allowed under no_grad");
    ag_no_grad_end();
    ag_scope_end();
}

static void test_print(void) {
    ag_scope_begin();
    double d[4] = {1, -2.5, 3, 4};
    ag_tensor *x = ag_from_data(d, AG_SHAPE(2, 2), AG_F64);
    char *s = ag_to_string(x);
    ok(s && strcmp(s, "tensor([[ 1.0000, -2.5000],\n        [ 3.0000,  4.0000]], shape=[2, 2], dtype=float64)") == 0,
       "print 2x2 in PyTorch style");
    free(s);
    ag_tensor *w = ag_requires_grad_(ag_ones(AG_SHAPE(3), AG_F32), true);
    s = ag_to_string(ag_sum(w));
    ok(s && strcmp(s, "tensor(3., shape=[], dtype=float32, grad_fn=<SumBackward1>)") == 0, "print with grad_fn: %s", s);
    free(s);
    s = ag_to_string(ag_zeros(AG_SHAPE(2000), AG_F32));
    ok(s && strstr(s, "...") && strlen(s) < 200, "large tensors are summarised");
    free(s);
    ag_scope_end();
}

/* uint8 (torch.uint8): raw data such as image bytes, not differentiable. */
static void test_uint8(void) {
    ag_scope_begin();
    ok(ag_dtype_size(AG_U8) == 1 && strcmp(ag_dtype_name(AG_U8), "uint8") == 0, "uint8: 1 byte, named \"uint8\"");
    ag_tensor *z = ag_zeros(AG_SHAPE(2, 3), AG_U8), *f = ag_full(AG_SHAPE(2), 200, AG_U8);
    ag_tensor *a = ag_arange(250, 256, 1, AG_U8), *e = ag_eye(2, AG_U8);
    ok(z && ag_dtype_of(z) == AG_U8 && ag_get(z, (int64_t[]){1, 2}) == 0 && ag_get(f, (int64_t[]){1}) == 200 &&
           ag_get(a, (int64_t[]){5}) == 255 && ag_get(e, (int64_t[]){1, 1}) == 1 && ag_get(e, (int64_t[]){0, 1}) == 0,
       "zeros, full(200), arange(250, 256), eye of uint8");
    uint8_t bytes[6] = {0, 1, 127, 128, 254, 255};
    ag_tensor *b = ag_from_data(bytes, AG_SHAPE(2, 3), AG_U8);
    ok(b && ag_get(b, (int64_t[]){1, 2}) == 255 && ag_get(b, (int64_t[]){1, 0}) == 128, "from_data of uint8_t bytes");

    /* conversions to and from every dtype */
    ag_tensor *bf = ag_to_dtype(b, AG_F32), *bd = ag_to_dtype(b, AG_F64), *bi = ag_to_dtype(b, AG_I64);
    ag_tensor *bb = ag_to_dtype(b, AG_BOOL);
    bool same = bf && bd && bi && bb;
    for (int i = 0; same && i < 6; i++) {
        int64_t at[2] = {i / 3, i % 3};
        same = ag_get(bf, at) == bytes[i] && ag_get(bd, at) == bytes[i] && ag_get(bi, at) == bytes[i] &&
               ag_get(bb, at) == (bytes[i] != 0);
    }
    ok(same, "uint8 -> float32, float64, int64 keep the values 0 .. 255; -> bool is v != 0");
    ag_tensor *back = ag_to_dtype(bf, AG_U8), *back2 = ag_to_dtype(bi, AG_U8), *back3 = ag_to_dtype(bd, AG_U8);
    uint8_t got[6] = {0}, got2[6] = {0}, got3[6] = {0};
    ok(back && back2 && back3 && ag_copy_to(back, got, 6, AG_U8) == AG_OK && ag_copy_to(back2, got2, 6, AG_U8) == AG_OK &&
           ag_copy_to(back3, got3, 6, AG_U8) == AG_OK && memcmp(got, bytes, 6) == 0 && memcmp(got2, bytes, 6) == 0 &&
           memcmp(got3, bytes, 6) == 0,
       "float32, int64, float64 -> uint8 round trip exactly");
    ag_tensor *fr = ag_from_data((float[]){0.9f, 1.5f, 2.99f, 254.7f}, AG_SHAPE(4), AG_F32);
    ag_tensor *tr = ag_to_dtype(fr, AG_U8);
    ok(tr && ag_get(tr, (int64_t[]){0}) == 0 && ag_get(tr, (int64_t[]){1}) == 1 && ag_get(tr, (int64_t[]){2}) == 2 &&
           ag_get(tr, (int64_t[]){3}) == 254,
       "float -> uint8 truncates toward zero, as PyTorch (0.9 -> 0, 2.99 -> 2, 254.7 -> 254)");
    ag_tensor *wrap = ag_to_dtype(ag_from_data((int64_t[]){256, 300, -1}, AG_SHAPE(3), AG_I64), AG_U8);
    ok(wrap && ag_get(wrap, (int64_t[]){0}) == 0 && ag_get(wrap, (int64_t[]){1}) == 44 && ag_get(wrap, (int64_t[]){2}) == 255,
       "int64 -> uint8 wraps modulo 256 as PyTorch (256 -> 0, 300 -> 44, -1 -> 255)");
    ag_tensor *fromb = ag_to_dtype(ag_from_data((bool[]){true, false}, AG_SHAPE(2), AG_BOOL), AG_U8);
    ok(fromb && ag_get(fromb, (int64_t[]){0}) == 1 && ag_get(fromb, (int64_t[]){1}) == 0, "bool -> uint8: 1 and 0");
    ag_tensor *w = ag_requires_grad_(ag_ones(AG_SHAPE(2), AG_F32), true);
    ag_tensor *wu = ag_to_dtype(w, AG_U8);
    ok(wu && !ag_requires_grad(wu) && ag_grad_fn_name(wu) == NULL, "to uint8 records no graph (not differentiable)");

    /* views and copies move bytes */
    ag_tensor *t = ag_t(b);
    ag_tensor *c = ag_contiguous(t), *cl = ag_clone(t), *n = ag_narrow(b, 1, 1, 2);
    ok(c && ag_is_contiguous(c) && ag_get(c, (int64_t[]){2, 1}) == 255 && ag_get(cl, (int64_t[]){0, 1}) == 128 &&
           ag_get(n, (int64_t[]){1, 1}) == 255 && ag_size(n, 1) == 2,
       "transpose, contiguous, clone, narrow of uint8");
    ag_tensor *sel = ag_index_select(b, 0, ag_from_data((int64_t[]){1, 1, 0}, AG_SHAPE(3), AG_I64));
    ok(sel && ag_dtype_of(sel) == AG_U8 && ag_get(sel, (int64_t[]){1, 2}) == 255 && ag_get(sel, (int64_t[]){2, 2}) == 127,
       "index_select of uint8 rows");
    ag_tensor *cat = ag_cat((ag_tensor *[]){b, b}, 2, 0);
    ok(cat && ag_dtype_of(cat) == AG_U8 && ag_size(cat, 0) == 4 && ag_get(cat, (int64_t[]){3, 2}) == 255, "cat of uint8");
    ag_tensor *dst = ag_zeros(AG_SHAPE(3, 2), AG_U8);
    ok(ag_copy_(dst, t) == dst && ag_get(dst, (int64_t[]){2, 1}) == 255, "copy_ of a transposed uint8 view");
    ok(ag_copy_(dst, ag_full(AG_SHAPE(2), 7.8, AG_F32)) == dst && ag_get(dst, (int64_t[]){1, 0}) == 7,
       "copy_ of float32 into uint8 converts (truncating)");
    ok(ag_fill_(dst, 9) == dst && ag_get(dst, (int64_t[]){2, 1}) == 9, "fill_ of uint8");
    ag_tensor *m = ag_masked_fill(b, ag_from_data((bool[]){true, false, false, false, false, true}, AG_SHAPE(2, 3), AG_BOOL), 42);
    ok(m && ag_dtype_of(m) == AG_U8 && ag_get(m, (int64_t[]){0, 0}) == 42 && ag_get(m, (int64_t[]){0, 1}) == 1 &&
           ag_get(m, (int64_t[]){1, 2}) == 42,
       "masked_fill of uint8");

    /* printing: integers, like torch.uint8 */
    char *s = ag_to_string(b);
    ok(s && strcmp(s, "tensor([[  0,   1, 127],\n        [128, 254, 255]], shape=[2, 3], dtype=uint8)") == 0,
       "a [2, 3] uint8 tensor prints as PyTorch's, columns aligned (%s)", s && strchr(s, '\n') ? "two lines" : "?");
    free(s);

    /* not differentiable: arithmetic refuses it as for int64 */
    ag_clear_error();
    ok(!ag_add(b, b) && ag_last_status() == AG_ERR_DTYPE &&
           strcmp(ag_last_error(), "add: expected a float32 or float64 tensor, got uint8 (convert with ag_to_dtype)") == 0,
       "add of uint8: %s", ag_last_error());
    ok(!ag_relu(b) && ag_last_status() == AG_ERR_DTYPE, "relu of uint8: %s", ag_last_error());
    ok(!ag_sum(b) && ag_last_status() == AG_ERR_DTYPE, "sum of uint8: %s", ag_last_error());
    ok(!ag_matmul(b, ag_t(b)) && ag_last_status() == AG_ERR_DTYPE, "matmul of uint8: %s", ag_last_error());
    ok(!ag_requires_grad_(ag_zeros(AG_SHAPE(2), AG_U8), true) && ag_last_status() == AG_ERR_DTYPE,
       "requires_grad_ on uint8: %s", ag_last_error());
    ok(!ag_lt(b, b) && ag_last_status() == AG_ERR_DTYPE &&
           strcmp(ag_last_error(), "lt: expected float32, float64 or int64 operands, got uint8 (convert with ag_to_dtype)") == 0,
       "lt of uint8: %s", ag_last_error());
    ok(!ag_add_(ag_zeros(AG_SHAPE(2), AG_U8), ag_zeros(AG_SHAPE(2), AG_U8), 1) && ag_last_status() == AG_ERR_DTYPE,
       "add_ into uint8: %s", ag_last_error());
    ok(!ag_to_dtype(b, (ag_dtype)5) && ag_last_status() == AG_ERR_DTYPE, "dtype 5 is unknown: %s", ag_last_error());
    ag_scope_end();
}

static void test_scopes(void) {
    long before = ag_live_tensors();
    ag_tensor *kept;
    ag_scope_begin();
    ag_tensor *a = ag_ones(AG_SHAPE(3), AG_F32);
    ag_scope_begin();
    ag_tensor *b = ag_mul_scalar(a, 2);
    kept = ag_keep(ag_add_scalar(b, 1));
    ag_scope_end();
    ok(ag_get(kept, (int64_t[]){0}) == 3, "ag_keep moves a tensor to the enclosing scope");
    ag_scope_end();
    ok(ag_live_tensors() == before, "closing scopes frees everything (%ld live)", ag_live_tensors());
    ok(ag_scope_end() == AG_ERR_ARG, "closing a scope that is not open is an error");
    ag_tensor *mine = ag_ones(AG_SHAPE(2), AG_F32);
    ok(ag_live_tensors() == before + 1, "outside scopes the caller owns tensors");
    ag_release(mine);
    ok(ag_live_tensors() == before, "ag_release frees it");
}

/* Outside any scope, an op composed of others leaves only its result alive. */
static void test_composites_outside_scope(void) {
    long before = ag_live_tensors();
    const double av[3] = {1, 2, 3}, mv[6] = {1, 0, 2, 1, 0, 3};
    ag_tensor *v = ag_from_data(av, AG_SHAPE(3), AG_F64);
    ag_tensor *m = ag_from_data(mv, AG_SHAPE(3, 2), AG_F64), *mt = ag_t(m);
    ag_tensor *dot = ag_matmul(v, v), *vm = ag_matmul(v, m), *mvv = ag_matmul(mt, v);
    ok(dot && ag_ndim(dot) == 0 && ag_item(dot) == 14, "matmul of two 1-D tensors is their dot product (14)");
    ok(vm && ag_ndim(vm) == 1 && ag_get(vm, (int64_t[]){1}) == 11 && mvv && ag_get(mvv, (int64_t[]){0}) == 5,
       "matmul of [3] by [3, 2] and of [2, 3] by [3]");
    /* Each 1-D result is a view (a squeeze) of the matrix product, which it keeps as
     * its base, as a PyTorch view keeps ._base: 6 handles and 3 bases. */
    ok(ag_live_tensors() == before + 9, "outside a scope 1-D matmuls leave only their results and bases (%ld new tensors, 9 expected)",
       ag_live_tensors() - before);
    ag_release(dot), ag_release(vm), ag_release(mvv);
    ag_requires_grad_(v, true);
    dot = ag_matmul(v, v);
    ok(ag_backward(dot) == AG_OK && ag_get(ag_grad(v), (int64_t[]){2}) == 6, "the dot product's gradient is 2v");
    ag_release(dot), ag_release(mt), ag_release(m), ag_release(v);
    ok(ag_live_tensors() == before, "and releasing them frees everything (%ld left)", ag_live_tensors() - before);
}

static void test_backend_switch(void) {
    ag_scope_begin();
    bool was = ag_onednn_enabled();
    ag_manual_seed(5);
    ag_tensor *a = ag_randn(AG_SHAPE(33, 70), AG_F32), *b = ag_randn(AG_SHAPE(70, 21), AG_F32);
    ag_set_onednn_enabled(true);
    ag_tensor *fast = ag_matmul(a, ag_t(ag_contiguous(ag_t(b))));
    ag_set_onednn_enabled(false);
    ok(!ag_onednn_enabled(), "oneDNN can be switched off");
    ag_tensor *slow = ag_matmul(a, b);
    double worst = ag_item(ag_max(ag_abs(ag_sub(fast, slow))));
    ok(worst < 1e-4, "float32 matmul agrees with and without oneDNN (worst %.2g)", worst);
    ag_set_onednn_enabled(was);
    ag_scope_end();
}

/* NaN, ±inf and values beyond int64 convert to INT64_MIN (x86's result, which C
 * leaves undefined; the clang UBSan build of fuzz/ flags a plain cast), on every
 * path that writes a float into an int64 or uint8 tensor. */
static void test_unrepresentable_to_int(void) {
    ag_scope_begin();
    const double vals[6] = {NAN, INFINITY, -INFINITY, 1e300, -3.7, 300.9};
    const int64_t want[6] = {INT64_MIN, INT64_MIN, INT64_MIN, INT64_MIN, -3, 300};
    bool conv64 = true, conv32 = true, conv8 = true, full = true, fill = true;
    for (int f = 0; f < 2; f++) {
        ag_tensor *x = ag_to_dtype(ag_from_data(vals, AG_SHAPE(6), AG_F64), f ? AG_F32 : AG_F64);
        ag_tensor *i = ag_to_dtype(x, AG_I64), *u = ag_to_dtype(x, AG_U8);
        for (int k = 0; k < 6; k++) {
            int64_t at[1] = {k};
            if (ag_get(i, at) != (double)want[k]) *(f ? &conv32 : &conv64) = false;
            if (ag_get(u, at) != (double)(uint8_t)want[k]) conv8 = false;
        }
    }
    ok(conv64 && conv32, "to_dtype int64 of float64/float32 NaN, inf, -inf, 1e300, -3.7, 300.9 gives INT64_MIN x4, -3, 300");
    ok(conv8, "to_dtype uint8 of the same goes through int64 and wraps (0 x4, 253, 44)");
    for (int k = 0; k < 4; k++) {
        if (ag_item(ag_full(AG_SHAPE(1), vals[k], AG_I64)) != (double)INT64_MIN) full = false;
        ag_tensor *t = ag_zeros(AG_SHAPE(2), AG_I64);
        ag_tensor *m = ag_masked_fill(t, ag_full(AG_SHAPE(2), 1, AG_BOOL), vals[k]);
        if (!m || ag_get(m, (int64_t[]){1}) != (double)INT64_MIN) fill = false;
    }
    ok(full, "full of int64 with NaN, inf, -inf, 1e300 holds INT64_MIN");
    ok(fill, "masked_fill of an int64 tensor with NaN, inf, -inf, 1e300 writes INT64_MIN");
    ag_scope_end();
}

/* The adjoints of permute and reshape hand dy on as a view (no zeroed buffer, no copy): the
 * gradients through a chain of them, a stride-0 dy (sum's) through permute, and a retained
 * gradient that shares dy's storage, which x's .grad must not alias. */
static void test_view_adjoints(void) {
    ag_scope_begin();
    ag_tensor *x = ag_requires_grad_(ag_arange(0, 24, 1, AG_F64), true), *w = ag_arange(0, 24, 1, AG_F64);
    const int perm[3] = {2, 0, 1};
    ag_tensor *y = ag_reshape(ag_permute(ag_reshape(x, AG_SHAPE(2, 3, 4)), perm), AG_SHAPE(4, 6));
    ag_tensor *wy = ag_reshape(ag_permute(ag_reshape(w, AG_SHAPE(2, 3, 4)), perm), AG_SHAPE(4, 6));
    bool right = ag_backward(ag_sum(ag_mul(y, ag_contiguous(wy)))) == AG_OK;
    for (int i = 0; right && i < 24; i++) right = ((double *)ag_data(ag_grad(x)))[i] == i;
    ok(right, "reshape, permute, reshape: dx is dy through the inverse views");
    ag_zero_grad(x);
    right = ag_backward(ag_sum(ag_permute(ag_reshape(x, AG_SHAPE(2, 3, 4)), perm))) == AG_OK;
    for (int i = 0; right && i < 24; i++) right = ((double *)ag_data(ag_grad(x)))[i] == 1;
    ok(right && ag_is_contiguous(ag_grad(x)), "permute of sum's stride-0 dy: a contiguous .grad of ones");
    ag_zero_grad(x);
    const int same[1] = {0};
    ag_tensor *p = ag_retain_grad(ag_permute(x, same));
    right = ag_backward(ag_sum(ag_mul(p, w))) == AG_OK;
    ((double *)ag_data(ag_grad(p)))[0] = 99; /* the retained dy of p */
    right = right && ((double *)ag_data(ag_grad(x)))[0] == 0 && ((double *)ag_data(ag_grad(x)))[1] == 1;
    ok(right, "an identity permute's dx is not the retained dy's storage");
    ag_scope_end();
}

int main(void) {
    test_backend_switch();
    test_creation();
    test_random();
    test_views();
    test_view_adjoints();
    test_inplace();
    test_print();
    test_uint8();
    test_unrepresentable_to_int();
    test_scopes();
    test_composites_outside_scope();
    ok(ag_live_tensors() == 0, "nothing leaked (%ld live tensors)", ag_live_tensors());
    return tap_done();
}

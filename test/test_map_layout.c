/*
 * The layout of element-wise results (core/layout.c, PyTorch's preserve_format): a unary or binary map,
 * or clone, of inputs that are dense in one permuted layout writes its result in that layout (the strides
 * PyTorch 1.13 gives, checked with torch's .stride()), any other mix of inputs a row-major result; the
 * values are the bits of the row-major path's (the map over contiguous copies), forward and backward, on
 * one thread and two; gradients and ag_contiguous stay row-major.
 */
#include <string.h>
#include "agrad/agrad.h"
#include "core/internal.h"
#include "strided_copy.h"
#include "tap.h"

/* Whether t's strides (elements) are s[0..ndim). */
static bool strides_are(const ag_tensor *t, int ndim, const int64_t *s) {
    if (!t || t->ndim != ndim) return false;
    for (int d = 0; d < ndim; d++)
        if (t->shape[d] > 1 && t->stride[d] != s[d]) return false;
    return true;
}
#define STRIDES(t, ...) strides_are(t, (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (int64_t[]){__VA_ARGS__})

/* The strides torch 1.13 gives for the same calls (N = 4 there; here 150 x 70 and the like). */
static void strides_cases(ag_dtype dt) {
    ag_tensor *a = ag_t(ag_randn(AG_SHAPE(70, 150), dt)), *b = ag_t(ag_randn(AG_SHAPE(70, 150), dt)); /* [150, 70] */
    ag_tensor *c = ag_randn(AG_SHAPE(150, 70), dt), *v = ag_randn(AG_SHAPE(70), dt), *col = ag_randn(AG_SHAPE(150, 1), dt);
    ok(STRIDES(ag_abs(a), 1, 150), "abs of a transposed [150, 70]: transposed strides (1, 150), as torch");
    ok(STRIDES(ag_mul_scalar(a, 2), 1, 150), "mul_scalar of a transposed input: transposed, as torch");
    ok(STRIDES(ag_add(a, b), 1, 150), "add of two transposed: transposed, as torch");
    ok(STRIDES(ag_add(a, v), 1, 150), "a transposed plus a broadcast [70]: transposed, as torch");
    ok(STRIDES(ag_add(col, a), 1, 150), "a broadcast [150, 1] plus a transposed: transposed, as torch");
    ok(STRIDES(ag_add(c, a), 70, 1), "row-major plus transposed: row-major, as torch");
    ok(STRIDES(ag_add(a, c), 70, 1), "transposed plus row-major: row-major (torch follows the first: (1, 150))");
    ok(STRIDES(ag_clone(a), 1, 150), "clone of a transposed input: transposed, as torch");
    ok(STRIDES(ag_contiguous(a), 70, 1) && ag_is_contiguous(ag_contiguous(a)), "contiguous of a transposed input: row-major");
    ok(STRIDES(ag_to_dtype(a, dt == AG_F32 ? AG_F64 : AG_F32), 70, 1), "to_dtype of a transposed input: row-major");
    ok(STRIDES(ag_abs(ag_slice(a, 1, 0, 70, 2)), 35, 1), "abs of a transposed input with a step (not dense): row-major");
    ok(STRIDES(ag_abs(ag_flip(c, 1, (int[]){1})), 70, 1), "abs of a flip: row-major, as torch");
    ok(STRIDES(ag_abs(c), 70, 1), "abs of a row-major input: row-major");
    ag_tensor *p = ag_permute(ag_randn(AG_SHAPE(20, 30, 50), dt), (int[]){2, 0, 1}); /* [50, 20, 30] */
    ag_tensor *q = ag_permute(ag_randn(AG_SHAPE(20, 30, 50), dt), (int[]){2, 0, 1});
    ag_tensor *r = ag_permute(ag_randn(AG_SHAPE(50, 30, 20), dt), (int[]){0, 2, 1});
    ok(STRIDES(ag_neg(p), 1, 1500, 50), "neg of a permuted [50, 20, 30]: (1, 1500, 50), as torch");
    ok(STRIDES(ag_mul(p, q), 1, 1500, 50), "mul of two alike permuted: permuted, as torch");
    ok(STRIDES(ag_mul(p, r), 600, 30, 1), "mul of two permuted differently: row-major (torch follows the first)");
    ag_tensor *u = ag_permute(ag_randn(AG_SHAPE(3, 1, 5), dt), (int[]){2, 1, 0}); /* [5, 1, 3], a dim of one */
    ok(STRIDES(ag_relu(u), 1, 0, 5) && same_bits(ag_relu(u), ag_relu(plain(u))), "relu of a permuted [5, 1, 3]: (1, ., 5)");
    ag_tensor *e = ag_t(ag_randn(AG_SHAPE(0, 4), dt));
    ag_tensor *ea = ag_abs(e), *ez = ag_zeros(AG_SHAPE(4, 0), dt);
    ok(ea && ag_numel(ea) == 0 && ea->stride[0] == ez->stride[0] && ea->stride[1] == ez->stride[1],
       "abs of an empty transposed [4, 0]: a new tensor's strides (row-major)");
}

/* The values: every path's result against the row-major path's, bit for bit. */
static void value_cases(ag_dtype dt, const char *dn) {
    ag_tensor *a = ag_t(ag_randn(AG_SHAPE(70, 150), dt)), *b = ag_t(ag_randn(AG_SHAPE(70, 150), dt));
    ag_tensor *ac = plain(a), *bc = plain(b), *v = ag_randn(AG_SHAPE(70), dt);
    ok(same_bits(ag_abs(a), ag_abs(ac)) && same_bits(ag_relu(a), ag_relu(ac)) && same_bits(ag_neg(a), ag_neg(ac)),
       "%s abs, relu, neg of a transposed input: the row-major bits", dn);
    ok(same_bits(ag_exp(a), ag_exp(ac)) && same_bits(ag_tanh(a), ag_tanh(ac)) && same_bits(ag_gelu(a), ag_gelu(ac)),
       "%s exp, tanh, gelu (oneDNN for float32) of a transposed input: the row-major bits", dn);
    ag_tensor *pos = ag_abs(a);
    ok(same_bits(ag_sqrt(pos), ag_sqrt(plain(pos))), "%s sqrt of a transposed input: the row-major bits", dn);
    ok(same_bits(ag_add(a, b), ag_add(ac, bc)) && same_bits(ag_hypot(a, b), ag_hypot(ac, bc)),
       "%s add, hypot of two transposed: the row-major bits", dn);
    ok(same_bits(ag_sub(a, v), ag_sub(ac, v)) && same_bits(ag_fmod(a, b), ag_fmod(ac, bc)),
       "%s sub with a broadcast [70], fmod of two transposed: the row-major bits", dn);
    ok(same_bits(ag_clone(a), ac), "%s clone of a transposed input: its values", dn);
    ag_tensor *p = ag_permute(ag_randn(AG_SHAPE(20, 30, 50), dt), (int[]){2, 0, 1});
    ag_tensor *q = ag_permute(ag_randn(AG_SHAPE(20, 30, 50), dt), (int[]){2, 0, 1});
    ok(same_bits(ag_div(p, q), ag_div(plain(p), plain(q))), "%s div of two permuted [50, 20, 30]: the row-major bits", dn);
    /* a chain of maps keeps the layout: relu(2·a + b) */
    ag_tensor *y = ag_relu(ag_add(ag_mul_scalar(a, 2), b));
    ok(STRIDES(y, 1, 150) && same_bits(y, ag_relu(ag_add(ag_mul_scalar(ac, 2), bc))), "%s relu(2a + b), transposed: the row-major bits", dn);
    /* ag_data of a result is in memory order; of its ag_contiguous, row-major */
    ag_tensor *n = ag_neg(a);
    const size_t es = ag_dtype_size(dt);
    ok(memcmp(ag_data(ag_contiguous(n)), ag_data(ag_neg(ac)), 150 * 70 * es) == 0 &&
           memcmp(ag_data(n), ag_data(ag_neg(ag_contiguous(ag_t(a)))), 150 * 70 * es) == 0,
       "%s ag_data of neg(a) is in memory order (a's), of its ag_contiguous row-major", dn);
}

/* Gradients: the same bits, and row-major in .grad. */
static void grad_cases(ag_dtype dt, const char *dn) {
    ag_tensor *w = ag_randn(AG_SHAPE(150, 70), dt);
    ag_tensor *leaf = ag_requires_grad_(ag_randn(AG_SHAPE(70, 150), dt), true), *x = ag_t(leaf);
    ag_tensor *xc = ag_requires_grad_(plain(x), true), *lb = ag_requires_grad_(ag_randn(AG_SHAPE(70, 150), dt), true);
    ag_tensor *bc = ag_requires_grad_(plain(ag_t(lb)), true);
    ag_backward(ag_sum(ag_mul(ag_hypot(ag_gelu(x), ag_t(lb)), w)));
    ag_backward(ag_sum(ag_mul(ag_hypot(ag_gelu(xc), bc), w)));
    ok(same_bits(ag_grad(leaf), ag_t(ag_grad(xc))) && same_bits(ag_grad(lb), ag_t(ag_grad(bc))),
       "%s gradients through gelu and hypot of transposed inputs: the row-major bits", dn);
    ok(ag_is_contiguous(ag_grad(leaf)) && ag_is_contiguous(ag_grad(lb)), "%s the leaves' .grad are row-major", dn);
    ag_tensor *z = ag_requires_grad_(ag_randn(AG_SHAPE(70, 150), dt), true), *zc = ag_requires_grad_(plain(z), true);
    ag_tensor *t = ag_clone(ag_t(z)), *tc = ag_clone(ag_t(zc));
    ag_tensor *rs = ag_requires_grad_(ag_randn(AG_SHAPE(150, 70), dt), true), *rsc = ag_requires_grad_(plain(rs), true);
    ag_backward(ag_sum(ag_mul(ag_exp(ag_sub(t, rs)), w)));
    ag_backward(ag_sum(ag_mul(ag_exp(ag_sub(ag_contiguous(tc), rsc)), w)));
    ok(same_bits(ag_grad(z), ag_grad(zc)) && same_bits(ag_grad(rs), ag_grad(rsc)) && ag_is_contiguous(ag_grad(rs)),
       "%s gradients through clone, sub with a row-major input and exp: the row-major bits, .grad row-major", dn);
}

int main(void) {
    for (int threads = 1; threads <= 2; threads++) {
        ag_set_num_threads(threads);
        diag("%d thread(s)", threads);
        ag_manual_seed(17);
        ag_scope_begin();
        strides_cases(AG_F32);
        strides_cases(AG_F64);
        value_cases(AG_F32, "float32");
        value_cases(AG_F64, "float64");
        grad_cases(AG_F32, "float32");
        grad_cases(AG_F64, "float64");
        ag_scope_end();
    }
    return tap_done();
}

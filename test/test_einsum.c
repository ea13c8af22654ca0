/*
 * test_einsum.c - how ops/einsum.c lays out its contractions: an einsum that is one
 * batched matmul records the matmul alone (no permute or reshape node between it
 * and the operands), with the same values and gradients as ag_matmul; the batch
 * dims are kept as they are (several of them, or flattened past AG_MAX_DIMS);
 * transposed and non-contiguous operands and empty ones.
 */
#include <string.h>
#include "agrad/agrad.h"
#include "core/internal.h"
#include "tap.h"

/* max |a - b| over all elements (both the same shape and dtype); INFINITY if either is NULL. */
static double max_diff(ag_tensor *a, ag_tensor *b) {
    if (!a || !b) return INFINITY;
    if (ag_numel(a) == 0) return ag_numel(b) == 0 ? 0 : INFINITY;
    return ag_item(ag_max(ag_abs(ag_sub(ag_to_dtype(a, AG_F64), ag_to_dtype(b, AG_F64)))));
}

static ag_tensor *leaf(ag_shape s, ag_dtype dt) { return ag_requires_grad_(ag_randn(s, dt), true); }

/* einsum(eq, a, b) against want (the same product written with other ops): values and both
 * gradients (for the same output gradient) within tol (0: to the last bit); grad_fn, if not
 * NULL, the node einsum's result records. */
static void check_same_as(const char *eq, ag_tensor *a, ag_tensor *b, ag_tensor *(*want)(ag_tensor *, ag_tensor *),
                          const char *grad_fn, double tol) {
    ag_scope_begin();
    ag_tensor *y = ag_einsum(eq, (ag_tensor *[]){a, b}, 2);
    ag_tensor *g = y ? ag_randn(ag_shape_of(y), y->dtype) : NULL;
    bool ran = y && ag_backward_ex(y, g, false) == AG_OK;
    ag_tensor *ga = ran ? ag_clone(ag_grad(a)) : NULL, *gb = ran ? ag_clone(ag_grad(b)) : NULL;
    const char *fn = y ? ag_grad_fn_name(y) : "";
    ag_zero_grad(a), ag_zero_grad(b);
    ag_tensor *w = want(a, b);
    ran = ran && w && ag_backward_ex(w, g, false) == AG_OK;
    ok(ran && max_diff(y, w) <= tol && max_diff(ga, ag_grad(a)) <= tol && max_diff(gb, ag_grad(b)) <= tol &&
           (!grad_fn || !strcmp(fn, grad_fn)),
       "einsum \"%s\" %s: the values and gradients of the same product in other ops within %g%s%s (grad_fn %s)", eq, ag_dtype_name(a->dtype), tol,
       grad_fn ? ", recorded as " : "", grad_fn ? grad_fn : "", fn);
    ag_zero_grad(a), ag_zero_grad(b);
    ag_scope_end();
}

static ag_tensor *mm(ag_tensor *a, ag_tensor *b) { return ag_matmul(a, b); }
static ag_tensor *mm_bt(ag_tensor *a, ag_tensor *b) { return ag_matmul(a, ag_transpose(b, -1, -2)); }
/* "...i,...i->..." of 7 batch dims: Σ_i a·b */
static ag_tensor *dot_last(ag_tensor *a, ag_tensor *b) { return ag_sum_dim(ag_mul(a, b), -1, false); }

static void test_matmul_layouts(void) {
    for (int f = 0; f < 2; f++) {
        ag_dtype dt = f ? AG_F64 : AG_F32;
        ag_scope_begin();
        ag_tensor *a = leaf(AG_SHAPE(4, 9, 7), dt), *b = leaf(AG_SHAPE(4, 7, 5), dt), *bt = leaf(AG_SHAPE(4, 5, 7), dt);
        check_same_as("bij,bjk->bik", a, b, mm, "MmBackward0", 0);
        check_same_as("bij,bkj->bik", a, bt, mm_bt, NULL, 0); /* b read through a transposed view */
        ag_tensor *a4 = leaf(AG_SHAPE(2, 3, 6, 5), dt), *b4 = leaf(AG_SHAPE(2, 3, 5, 4), dt);
        check_same_as("xyij,xyjk->xyik", a4, b4, mm, "MmBackward0", 0); /* two batch dims, kept */
        ag_tensor *e = leaf(AG_SHAPE(0, 3, 4), dt), *e2 = leaf(AG_SHAPE(0, 4, 2), dt);
        check_same_as("bij,bjk->bik", e, e2, mm, "MmBackward0", 0);
        ag_tensor *k0 = leaf(AG_SHAPE(2, 3, 0), dt), *k1 = leaf(AG_SHAPE(2, 0, 2), dt);
        check_same_as("bij,bjk->bik", k0, k1, mm, "MmBackward0", 0);
        ag_scope_end();
    }
    /* non-contiguous operands: a transposed view and a strided slice */
    ag_scope_begin();
    ag_tensor *base = leaf(AG_SHAPE(3, 6, 8), AG_F64), *nb = leaf(AG_SHAPE(3, 6, 10), AG_F64);
    ag_tensor *at = ag_transpose(base, 1, 2); /* [3, 8, 6] */
    ag_tensor *bs = ag_slice(nb, 2, 0, 10, 2); /* [3, 6, 5], stride 2 */
    ag_tensor *ya = ag_einsum("bij,bjk->bik", (ag_tensor *[]){at, bs}, 2), *wa = ag_matmul(at, bs);
    ok(max_diff(ya, wa) == 0, "einsum of a transposed view and a strided slice: the matmul's values");
    ag_scope_end();
    /* 15 batch dims and a summed one: [batch..., 1, K] x [batch..., K, 1] would have more than
     * AG_MAX_DIMS dims, so the batch dims flatten into one */
    ag_scope_begin();
    ag_shape s = {AG_MAX_DIMS, {0}};
    for (int d = 0; d < AG_MAX_DIMS; d++) s.dim[d] = d == AG_MAX_DIMS - 1 ? 3 : d % 5 == 0 ? 2 : 1;
    ag_tensor *p = leaf(s, AG_F64), *q = leaf(s, AG_F64);
    char eq[3 * AG_MAX_DIMS + 8] = {0}, *c = eq;
    for (int k = 0; k < 2; k++) {
        for (int d = 0; d < AG_MAX_DIMS; d++) *c++ = (char)('a' + d);
        *c++ = k ? '-' : ',';
    }
    *c++ = '>';
    for (int d = 0; d < AG_MAX_DIMS - 1; d++) *c++ = (char)('a' + d);
    check_same_as(eq, p, q, dot_last, NULL, 1e-12);
    ag_scope_end();
}

int main(void) {
    ag_manual_seed(15);
    test_matmul_layouts();
    ok(ag_live_tensors() == 0, "no tensor leaked");
    return tap_done();
}

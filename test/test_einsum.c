/*
 * test_einsum.c - how ops/einsum.c lays out its contractions: an einsum that is one
 * batched matmul records the matmul alone (no permute or reshape node between it
 * and the operands), with the same values and gradients as ag_matmul; the batch
 * dims are kept as they are (several of them, or flattened past AG_MAX_DIMS);
 * transposed and non-contiguous operands and empty ones.  With three or more
 * operands the order of the contractions has the fewest multiply-adds (checked
 * against every order, on a chain where the greedy order costs twice as much),
 * with the left-to-right product's values and gradients.
 */
#include <string.h>
#include "agrad/agrad.h"
#include "core/internal.h"
#include "ops/einsum.h"
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


/* ---- the contraction order ---------------------------------------------------------------------- */
/* Terms as sets of letters (bit l: 'a' + l). */
static double letters_size(uint32_t s, const double *size) {
    double p = 1;
    for (int l = 0; l < 26; l++)
        if (s >> l & 1) p *= size[l];
    return p;
}

/* The fewest multiply-adds of any order of contracting the n terms (each contraction: the
 * product of the sizes of all letters of the two; its result keeps the letters another term
 * or the output has), by trying every pair at every step. */
static double cheapest(const uint32_t *terms, int n, uint32_t out, const double *size) {
    if (n == 1) return 0;
    double best = INFINITY;
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++) {
            uint32_t rest[26], others = out;
            int m = 0;
            for (int k = 0; k < n; k++)
                if (k != i && k != j) rest[m++] = terms[k], others |= terms[k];
            rest[m++] = (terms[i] | terms[j]) & others;
            double c = letters_size(terms[i] | terms[j], size) + cheapest(rest, m, out, size);
            if (c < best) best = c;
        }
    return best;
}

static void test_contraction_order(void) {
    ag_scope_begin();
    /* a chain A[a,b]·B[b,c]·C[c,d]·D[d,e] with a 5, b 3, c 16, d 32, e 8: the smallest
     * intermediate first takes A·B (a,c: 80 elements) and C·D, 4976 multiply-adds; the best
     * order B·C, then D, then A: 2424 */
    const double size[26] = {5, 3, 16, 32, 8};
    const uint32_t terms[4] = {0x3, 0x6, 0xC, 0x18};
    ag_tensor *a = leaf(AG_SHAPE(5, 3), AG_F64), *b = leaf(AG_SHAPE(3, 16), AG_F64);
    ag_tensor *c = leaf(AG_SHAPE(16, 32), AG_F64), *d = leaf(AG_SHAPE(32, 8), AG_F64);
    ag_tensor *ops[4] = {a, b, c, d};
    ag_einsum_plan best, greedy;
    ag_tensor *y = ag__einsum_planned("ab,bc,cd,de->ae", ops, 4, false, &best);
    ag_tensor *yg = ag__einsum_planned("ab,bc,cd,de->ae", ops, 4, true, &greedy);
    double want = cheapest(terms, 4, 0x11, size);
    ok(best.optimal && best.steps == 3 && best.flops == want && greedy.flops > best.flops,
       "einsum \"ab,bc,cd,de->ae\": %g multiply-adds, the fewest of any order (%g); greedy %g", best.flops, want,
       greedy.flops);
    ok(best.steps == 3 && ((best.pair[0][0] == 1 && best.pair[0][1] == 2) || (best.pair[0][0] == 2 && best.pair[0][1] == 1)),
       "... its first contraction is B·C (operands %d and %d)", best.pair[0][0], best.pair[0][1]);
    /* values and gradients: the left-to-right product's */
    ag_tensor *chain = ag_matmul(ag_matmul(ag_matmul(a, b), c), d);
    ag_tensor *g = ag_randn(AG_SHAPE(5, 8), AG_F64);
    ag_tensor *grads[2][4];
    for (int k = 0; k < 2; k++) {
        ag_backward_ex(k ? chain : y, g, false);
        for (int i = 0; i < 4; i++) grads[k][i] = ag_clone(ag_grad(ops[i])), ag_zero_grad(ops[i]);
    }
    double scale = ag_item(ag_max(ag_abs(chain))), e = max_diff(y, chain), eg = max_diff(yg, chain), egrad = 0;
    for (int i = 0; i < 4; i++) {
        double gi = max_diff(grads[0][i], grads[1][i]) / (1 + ag_item(ag_max(ag_abs(grads[1][i]))));
        if (gi > egrad) egrad = gi;
    }
    ok(e <= 1e-12 * scale && eg <= 1e-12 * scale && egrad <= 1e-12,
       "... the values of ((A·B)·C)·D (%.1e, greedy %.1e) and its gradients (%.1e)", e, eg, egrad);
    /* every order over 3 operands: a batch label, a label the output keeps, a size-1 broadcast */
    ag_tensor *p = leaf(AG_SHAPE(2, 4, 1), AG_F64), *q = leaf(AG_SHAPE(2, 6, 3), AG_F64), *r = leaf(AG_SHAPE(2, 6, 5), AG_F64);
    ag_tensor *y3 = ag__einsum_planned("zij,zjk,zkl->zil", (ag_tensor *[]){p, ag_transpose(q, 1, 2), r}, 3, false, &best);
    ag_tensor *w3 = ag_matmul(ag_matmul(ag_expand(p, AG_SHAPE(2, 4, 3)), ag_transpose(q, 1, 2)), r);
    ok(best.optimal && max_diff(y3, w3) <= 1e-12 * (1 + ag_item(ag_max(ag_abs(w3)))),
       "einsum \"zij,zjk,zkl->zil\" (j broadcast from size 1, a transposed operand): the matmuls' values");
    ag_scope_end();
    /* beyond EINSUM_DP_MAX operands: the greedy order, the same values */
    ag_scope_begin();
    enum { N = EINSUM_DP_MAX + 1 };
    ag_tensor *m[N], *prod = NULL;
    char eq[4 * N + 8] = {0}, *e9 = eq;
    for (int k = 0; k < N; k++) {
        m[k] = leaf(AG_SHAPE(3 + k % 2, 3 + (k + 1) % 2), AG_F64);
        prod = prod ? ag_matmul(prod, m[k]) : m[k];
        *e9++ = (char)('a' + k), *e9++ = (char)('a' + k + 1), *e9++ = k + 1 < N ? ',' : '-';
    }
    *e9++ = '>', *e9++ = 'a', *e9++ = (char)('a' + N);
    ag_tensor *y9 = ag__einsum_planned(eq, m, N, false, &best);
    ok(!best.optimal && best.steps == N - 1 && max_diff(y9, prod) <= 1e-12 * (1 + ag_item(ag_max(ag_abs(prod)))),
       "einsum of a chain of %d matrices: the greedy order (%d steps), the left-to-right product's values", N, best.steps);
    ag_scope_end();
}

int main(void) {
    ag_manual_seed(15);
    test_matmul_layouts();
    test_contraction_order();
    ok(ag_live_tensors() == 0, "no tensor leaked");
    return tap_done();
}

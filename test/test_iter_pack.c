/*
 * The iterator's packed tiles (core/iter.c): an elementwise op over strided operands large enough to
 * be packed (transposed, permuted, sliced with a step; float32, float64, int64, bool) gives the same
 * bits as over contiguous copies of them, forward and backward, in place too, on one thread and two,
 * and so do the unary ops that copy a strided input for oneDNN (block by block, special values
 * included); a [N, 1] with a [1, N] as well, outputs large enough to be streamed, walks large enough to
 * prefetch, a same-dtype copy of a transposed input (its tiles straight into the output), contiguous
 * copies of 1 MiB and more (rep movsb), and
 * flip, whose copy reads runs backwards.
 */
#include <string.h>
#include "agrad/agrad.h"
#include "core/internal.h"
#include "core/iter.h"
#include "strided_copy.h"
#include "tap.h"

/* x [rows, cols] stored transposed: a [cols, rows] tensor's ag_t. */
static ag_tensor *transposed(int64_t rows, int64_t cols, ag_dtype dt) {
    return ag_t(ag_randn(AG_SHAPE(cols, rows), dt));
}

static void binary_cases(ag_dtype dt, const char *dn) {
    /* 150 x 70: edges of the 8 x 8 and 16 x 128 tiles on both dims */
    ag_tensor *a = transposed(150, 70, dt), *b = transposed(150, 70, dt), *c = ag_randn(AG_SHAPE(150, 70), dt);
    ag_tensor *ac = plain(a), *bc = plain(b);
    ok(same_bits(ag_add(a, b), ag_add(ac, bc)), "%s add, both transposed", dn);
    /* operands of one layout: walked in their order, the output's tiles transposed into it */
    ag_tensor *wt = transposed(150, 70, dt);
    ok(same_bits(ag_lerp(a, b, wt), ag_lerp(ac, bc, plain(wt))), "%s lerp, all three transposed", dn);
    ok(same_bits(ag_lerp(a, b, c), ag_lerp(ac, bc, c)), "%s lerp, two of three transposed", dn);
    ok(same_bits(ag_gt(a, b), ag_gt(ac, bc)), "%s gt (a bool result), both transposed", dn);
    ag_tensor *u = ag_permute(ag_randn(AG_SHAPE(9, 40, 30), dt), (int[]){2, 0, 1});
    ag_tensor *v = ag_permute(ag_randn(AG_SHAPE(9, 40, 30), dt), (int[]){2, 0, 1});
    ok(same_bits(ag_mul(u, v), ag_mul(plain(u), plain(v))), "%s mul, both permuted [30, 9, 40]", dn);
    ag_tensor *e = ag_slice(ag_t(ag_randn(AG_SHAPE(70, 300), dt)), 0, 0, 300, 2); /* [150, 70], a step */
    ag_tensor *f = ag_slice(ag_t(ag_randn(AG_SHAPE(70, 300), dt)), 0, 1, 300, 2);
    ok(same_bits(ag_sub(e, f), ag_sub(plain(e), plain(f))), "%s sub, both transposed with a step", dn);
    ok(same_bits(ag_atan2(a, c), ag_atan2(ac, c)), "%s atan2, one transposed", dn);
    ok(same_bits(ag_mul(c, b), ag_mul(c, bc)), "%s mul, the second transposed", dn);
    ag_tensor *col = ag_randn(AG_SHAPE(150, 1), dt), *row = ag_randn(AG_SHAPE(1, 70), dt);
    ag_tensor *outer = ag_sub(col, row), *want = ag_sub(plain(ag_expand(col, AG_SHAPE(150, 70))), row);
    ok(same_bits(outer, want), "%s sub of a [150, 1] and a [1, 70]", dn);
    /* a 3-d permutation and a step */
    ag_tensor *p = ag_permute(ag_randn(AG_SHAPE(9, 40, 30), dt), (int[]){2, 0, 1}); /* [30, 9, 40] */
    ag_tensor *q = ag_randn(AG_SHAPE(30, 9, 40), dt);
    ok(same_bits(ag_div(p, q), ag_div(plain(p), q)), "%s div, a permuted [30, 9, 40]", dn);
    ag_tensor *s = ag_slice(ag_randn(AG_SHAPE(100, 120), dt), 1, 0, 120, 2); /* [100, 60], step 2 */
    ag_tensor *s2 = ag_randn(AG_SHAPE(100, 60), dt);
    ok(same_bits(ag_maximum(s, s2), ag_maximum(plain(s), s2)), "%s maximum, a sliced operand", dn);
    /* backward: the gradients of a transposed input */
    ag_tensor *x = transposed(96, 80, dt), *xc = plain(x), *w = ag_randn(AG_SHAPE(96, 80), dt);
    ag_requires_grad_(x, true), ag_requires_grad_(xc, true);
    ag_backward(ag_sum(ag_mul(ag_hypot(x, w), w)));
    ag_backward(ag_sum(ag_mul(ag_hypot(xc, w), w)));
    ok(same_bits(ag_grad(x), ag_grad(xc)), "%s hypot's gradient of a transposed input", dn);
    /* in place into a transposed tensor */
    ag_tensor *base = ag_randn(AG_SHAPE(70, 150), dt), *expect = plain(ag_t(base));
    ag_add_(ag_t(base), c, 2);
    ag_add_(expect, c, 2);
    ok(same_bits(ag_t(base), expect), "%s add_ into a transposed view", dn);
}

static void unary_cases(ag_dtype dt, const char *dn) {
    ag_tensor *x = transposed(150, 70, dt), *xc = plain(x);
    ok(same_bits(ag_exp(x), ag_exp(xc)), "%s exp of a transposed input", dn);
    ok(same_bits(ag_tanh(x), ag_tanh(xc)), "%s tanh of a transposed input", dn);
    ok(same_bits(ag_sin(x), ag_sin(xc)), "%s sin of a transposed input", dn);
    ok(same_bits(ag_gelu(x), ag_gelu(xc)), "%s gelu of a transposed input", dn);
    ag_tensor *g = ag_randn(AG_SHAPE(150, 70), dt);
    ag_requires_grad_(x, true), ag_requires_grad_(xc, true);
    ag_backward(ag_sum(ag_mul(ag_sigmoid(x), g)));
    ag_backward(ag_sum(ag_mul(ag_sigmoid(xc), g)));
    ok(same_bits(ag_grad(x), ag_grad(xc)), "%s sigmoid's gradient of a transposed input", dn);
}

/* Outputs of more than 8 MiB written by a transposed walk are streamed (core/iter.c stream_row), rows of
 * 6000 and 8240 bytes starting at every alignment: the same bits. */
static void streamed_cases(void) {
    ag_tensor *x = transposed(1500, 1500, AG_F32), *xc = plain(x);
    ok(same_bits(ag_neg(x), ag_neg(xc)), "float32 neg of a transposed [1500, 1500] (a streamed output)");
    ag_tensor *y = transposed(1500, 1500, AG_F32);
    ok(same_bits(ag_mul(x, y), ag_mul(xc, plain(y))), "float32 mul, both transposed [1500, 1500] (streamed)");
    ag_tensor *d = transposed(1030, 1030, AG_F64);
    ok(same_bits(ag_relu(d), ag_relu(plain(d))), "float64 relu of a transposed [1030, 1030] (streamed)");
}

/* Transposed walks over 8 MiB or more of operands prefetch their runs (core/iter.c PREFETCH_MIN); the
 * ones below it (every case above but the streamed ones) do not: both give the same bits.  Two transposed
 * float32 [1000, 1001] (a 4 MB output, written through transposed tiles; 12 MB in all), a float64 one with
 * a contiguous one, a permuted 3-d float32 of 3 MB with another (9 MB), and odd sizes. */
static void prefetched_cases(void) {
    ag_tensor *x = transposed(1000, 1001, AG_F32), *y = transposed(1000, 1001, AG_F32);
    ok(same_bits(ag_minimum(x, y), ag_minimum(plain(x), plain(y))), "float32 minimum, both transposed [1000, 1001] (prefetched)");
    ag_tensor *d = transposed(777, 901, AG_F64), *e = ag_randn(AG_SHAPE(777, 901), AG_F64);
    ok(same_bits(ag_add(d, e), ag_add(plain(d), e)), "float64 add, one transposed [777, 901] (prefetched)");
    ag_tensor *p = ag_permute(ag_randn(AG_SHAPE(91, 97, 93), AG_F32), (int[]){2, 0, 1}); /* [93, 91, 97] */
    ag_tensor *q = ag_permute(ag_randn(AG_SHAPE(91, 97, 93), AG_F32), (int[]){2, 0, 1});
    ok(same_bits(ag_mul(p, q), ag_mul(plain(p), plain(q))), "float32 mul, both permuted [93, 91, 97] (prefetched)");
}

/* oneDNN-served ops of a strided input large enough to run block by block (ops/unary.c dnnl_fwd_strided:
 * 128 Ki elements a thread a block), with special values (NaN, infinities, a denormal, beyond ±1e4) in
 * some blocks and not others, which the C kernel recomputes: the same bits as of a contiguous copy. */
static void dnnl_block_cases(void) {
    ag_tensor *base = ag_randn(AG_SHAPE(100, 3001), AG_F32);
    float *b = ag_data(base);
    const float special[] = {NAN, INFINITY, -INFINITY, 1e-40f, -2e4f, 3e4f, 0.0f, -0.0f};
    for (int k = 0; k < 8; k++) b[k * 7 * 3001 + 1500 + k] = special[k]; /* rows 1500-1507 of the transposed view */
    b[99 * 3001 + 3000] = NAN;                                          /* its last element, in the last block */
    ag_tensor *x = ag_t(base), *xc = plain(x);                          /* [3001, 100] */
    ag_tensor *pos = ag_t(ag_contiguous(ag_abs(x)));                    /* [100, 3001], transposed */
    ok(same_bits(ag_exp(x), ag_exp(xc)), "exp of a transposed [3001, 100] with special values, in blocks");
    ok(same_bits(ag_log(pos), ag_log(plain(pos))), "log of a transposed [100, 3001] with special values, in blocks");
    ok(same_bits(ag_mish(x), ag_mish(xc)), "mish of a transposed [3001, 100] with special values, in blocks");
    ok(same_bits(ag_tanh(x), ag_tanh(xc)), "tanh of a transposed [3001, 100], in blocks");
    ag_tensor *s = ag_slice(ag_randn(AG_SHAPE(1200, 600), AG_F32), 1, 1, 600, 2); /* [1200, 300], step 2 */
    ok(same_bits(ag_sigmoid(s), ag_sigmoid(plain(s))), "sigmoid of a sliced [1200, 300], in blocks");
    ag_tensor *p = ag_permute(ag_randn(AG_SHAPE(60, 50, 70), AG_F32), (int[]){2, 0, 1}); /* [70, 60, 50] */
    ok(same_bits(ag_gelu(p), ag_gelu(plain(p))), "gelu of a permuted [70, 60, 50]");
}

static void copy_cases(void) {
    ag_tensor *f = transposed(150, 70, AG_F32);
    ag_tensor *i = ag_to_dtype(ag_mul_scalar(f, 100), AG_I64); /* int64 from a transposed float */
    ok(same_bits(i, ag_to_dtype(ag_mul_scalar(plain(f), 100), AG_I64)), "int64 from a transposed float32");
    ag_tensor *it = ag_t(ag_to_dtype(ag_randn(AG_SHAPE(70, 150), AG_F64), AG_I64));
    ok(same_bits(ag_clone(it), plain(it)) && same_bits(ag_to_dtype(it, AG_F64), ag_to_dtype(plain(it), AG_F64)),
       "a transposed int64 copied and converted");
    ag_tensor *m = ag_t(ag_gt(ag_randn(AG_SHAPE(70, 150), AG_F32), ag_zeros(AG_SHAPE(1), AG_F32)));
    ok(same_bits(ag_clone(m), plain(m)) && same_bits(ag_to_dtype(m, AG_F32), ag_to_dtype(plain(m), AG_F32)),
       "a transposed bool copied and converted");
}

/* Contiguous same-dtype copies of 1 MiB and more a thread take `rep movsb` (core/copy_bytes.h
 * ag__move_bytes), below it memmove: the same bytes either side of the threshold, and a tensor copied
 * into itself (overlapping: memmove) unchanged. */
static void large_copy_cases(void) {
    const int64_t sizes[] = {262143, 262144, 262147, 655361}; /* float32: 1 MiB - 4 bytes to 2.5 MiB */
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        ag_tensor *x = ag_randn(AG_SHAPE(sizes[k]), AG_F32), *c = ag_clone(x);
        ok(c && ag_data(c) != ag_data(x) && memcmp(ag_data(c), ag_data(x), (size_t)sizes[k] * 4) == 0,
           "float32 [%lld] cloned byte for byte", (long long)sizes[k]);
    }
    ag_tensor *d = ag_randn(AG_SHAPE(131073), AG_F64), *before = plain(d);
    ok(ag_copy_(d, d) == d && same_bits(d, before), "float64 [131073] (1 MiB + 8 bytes) copied into itself, unchanged");
}

/* A same-dtype copy of a transposed input goes from the input's tiles straight into the output
 * (core/iter.c direct_copy): ag__direct_copy_walks counts the walks that took that path, and the
 * values are the element-by-element copy's.  Edges of the 8 x 8 (4 x 4) blocks and of the 64 x 128
 * tiles on both dims; a 3-d permutation; an output large enough to prefetch (not to stream); the
 * .grad a permute's adjoint passes to a transposed leaf. */
static void direct_copy_cases(void) {
    const long before = atomic_load(&ag__direct_copy_walks);
    ag_tensor *f = transposed(150, 70, AG_F32), *g = transposed(444, 592, AG_F32), *d = transposed(131, 67, AG_F64);
    ag_tensor *i = ag_t(ag_to_dtype(ag_mul_scalar(ag_randn(AG_SHAPE(70, 150), AG_F64), 1000), AG_I64));
    ag_tensor *p = ag_permute(ag_randn(AG_SHAPE(9, 40, 30), AG_F32), (int[]){0, 2, 1}); /* [9, 30, 40] */
    ag_tensor *big = transposed(1100, 1001, AG_F32); /* 4.2 MiB out, 8.4 in all: prefetched, not streamed */
    ok(same_bits(ag_contiguous(f), plain(f)) && same_bits(ag_contiguous(g), plain(g)), "float32 transposed [150, 70], [444, 592] copied");
    ok(same_bits(ag_contiguous(d), plain(d)) && same_bits(ag_contiguous(i), plain(i)), "float64 [131, 67], int64 [150, 70] transposed, copied");
    ok(same_bits(ag_contiguous(p), plain(p)), "float32 [9, 30, 40] with its last two dims swapped, copied");
    ok(same_bits(ag_contiguous(big), plain(big)), "float32 transposed [1100, 1001] copied (prefetched)");
    ag_tensor *x = ag_requires_grad_(ag_detach(transposed(444, 592, AG_F32)), true), *dy = ag_randn(AG_SHAPE(592, 444), AG_F32);
    ok(ag_backward_ex(ag_t(x), dy, false) == AG_OK && ag_is_contiguous(ag_grad(x)) && same_bits(ag_grad(x), ag_t(dy)),
       "the .grad of a transposed leaf from t's adjoint: dy transposed, contiguous");
    const long walks = atomic_load(&ag__direct_copy_walks) - before;
    ok(walks >= 6, "the copies took the direct path (%ld walks)", walks);
}

/* t reversed along the dims in mask, element by element here (flip's reference). */
static ag_tensor *reversed(ag_tensor *t, unsigned mask) {
    ag_tensor *c = plain(t), *r = ag_empty(ag_shape_of(t), ag_dtype_of(t));
    const size_t es = ag_dtype_size(ag_dtype_of(t));
    int64_t idx[AG_MAX_DIMS] = {0}, n = ag_numel(t);
    for (int64_t k = 0; k < n; k++) {
        int64_t from = 0;
        for (int d = 0; d < t->ndim; d++) from = from * t->shape[d] + (mask >> d & 1 ? t->shape[d] - 1 - idx[d] : idx[d]);
        memcpy((char *)ag_data(r) + (size_t)k * es, (const char *)ag_data(c) + (size_t)from * es, es);
        for (int d = t->ndim - 1; d >= 0 && ++idx[d] == t->shape[d]; d--) idx[d] = 0;
    }
    return r;
}

/* flip copies through reversed runs, which the tiles read backwards (and transposed ones too). */
static void flip_cases(ag_dtype dt, const char *dn) {
    ag_tensor *x = ag_randn(AG_SHAPE(150, 70), dt), *t = transposed(150, 70, dt);
    ag_tensor *c = ag_randn(AG_SHAPE(9, 40, 300), dt);
    ok(same_bits(ag_flip(x, 1, (int[]){-1}), reversed(x, 2)), "%s flip of a [150, 70] along its last dim", dn);
    ok(same_bits(ag_flip(x, 1, (int[]){0}), reversed(x, 1)), "%s flip of a [150, 70] along dim 0", dn);
    ok(same_bits(ag_flip(t, 1, (int[]){-1}), reversed(t, 2)), "%s flip of a transposed [150, 70] along its last dim", dn);
    ok(same_bits(ag_flip(c, 2, (int[]){0, -1}), reversed(c, 5)), "%s flip of a [9, 40, 300] along dims 0 and 2", dn);
}

int main(void) {
    for (int threads = 1; threads <= 2; threads++) {
        ag_set_num_threads(threads);
        diag("%d thread(s)", threads);
        ag_manual_seed(7);
        ag_scope_begin();
        binary_cases(AG_F32, "float32");
        binary_cases(AG_F64, "float64");
        unary_cases(AG_F32, "float32");
        unary_cases(AG_F64, "float64");
        copy_cases();
        direct_copy_cases();
        large_copy_cases();
        dnnl_block_cases();
        streamed_cases();
        prefetched_cases();
        flip_cases(AG_F32, "float32");
        flip_cases(AG_F64, "float64");
        ag_scope_end();
    }
    return tap_done();
}

/*
 * A strided view's contiguous copy by short rows (core/iter.c, ag__contig_or_copy: views whose last dim
 * has unit stride and rows of at most 1 KiB, copied row by row into the fresh tensor): the bytes of an
 * element-by-element gather through the view's strides, for float32, float64, int64 and uint8, on
 * broadcast (stride 0 along a middle dim, sum's gradient), sliced, stepped and permuted views of 3 and
 * 5 dims, rows of 1 to 257 elements (the 1 KiB limit on both sides), on 1, 2 and 3 threads; and sum's
 * backward along a middle dim, whose broadcast gradient takes this copy into x.grad: dy's bits repeated.
 */
#include <stdlib.h>
#include <string.h>
#include "agrad/agrad.h"
#include "core/internal.h"
#include "core/iter.h"
#include "tap.h"

/* The bytes of view v gathered element by element through its strides, row-major, into a new buffer. */
static char *gather(const ag_tensor *v) {
    const int64_t n = ag__numel(v->ndim, v->shape), es = (int64_t)ag__esize(v->dtype);
    char *out = malloc((size_t)(n * es) + 1);
    for (int64_t i = 0; i < n; i++) {
        int64_t rem = i, off = 0;
        for (int d = v->ndim - 1; d >= 0; d--) {
            off += rem % v->shape[d] * v->stride[d];
            rem /= v->shape[d];
        }
        memcpy(out + i * es, ag__ptr(v) + off * es, (size_t)es);
    }
    return out;
}

/* Whether ag__contig_or_copy(v) is a new contiguous tensor holding gather(v)'s bytes. */
static bool copy_matches(ag_tensor *v) {
    ag_tensor *c = ag__contig_or_copy(v);
    char *want = gather(v);
    const int64_t n = ag__numel(v->ndim, v->shape), es = (int64_t)ag__esize(v->dtype);
    const bool same = c && c != v && ag__contig(c) && c->dtype == v->dtype && c->ndim == v->ndim &&
                      memcmp(c->shape, v->shape, sizeof(int64_t) * (size_t)v->ndim) == 0 &&
                      memcmp(ag__ptr(c), want, (size_t)(n * es)) == 0;
    free(want);
    ag_release(c);
    return same;
}

/* A [d0, d1, w] tensor of dtype dt with distinct values (an arange, as float32 / float64 / int64 / uint8) */
static ag_tensor *values(int64_t d0, int64_t d1, int64_t w, ag_dtype dt) {
    ag_tensor *a = ag_arange(0, (double)(d0 * d1 * w), 1, AG_F64);
    a = ag_add_scalar(ag_mul_scalar(a, 1.0 / 3.0), 0.25); /* not integers: float bits beyond an integer's */
    if (dt == AG_U8 || dt == AG_I64) a = ag_arange(0, (double)(d0 * d1 * w), 1, AG_I64);
    return ag_reshape(ag_to_dtype(a, dt), AG_SHAPE(d0, d1, w));
}

static void test_views(void) {
    static const ag_dtype dts[] = {AG_F32, AG_F64, AG_I64, AG_U8};
    static const char *const dn[] = {"float32", "float64", "int64", "uint8"};
    static const int64_t widths[] = {1, 3, 16, 17, 64, 127, 128, 129, 255, 256, 257};
    const int saved = ag_get_num_threads();
    for (int k = 0; k < 4; k++) {
        const int64_t es = (int64_t)ag_dtype_size(dts[k]);
        int bad = 0, cases = 0, short_rows = 0;
        for (size_t wi = 0; wi < sizeof widths / sizeof *widths; wi++)
            for (int nt = 1; nt <= 3; nt++) {
                ag_scope_begin();
                ag_set_num_threads(nt);
                const int64_t w = widths[wi];
                short_rows += nt == 1 && w * es <= 1024;
                /* broadcast along a middle dim (sum's gradient): [A, 1, w] -> [A, R, w], large enough
                 * to split over threads (A·R·w >= 2^17 from w = 64) */
                ag_tensor *b = values(40, 1, w, dts[k]);
                bad += !copy_matches(ag_expand(b, AG_SHAPE(40, 60, w)));
                /* broadcast along the leading dim, and along two dims of a 5-d view */
                bad += !copy_matches(ag_expand(ag_reshape(b, AG_SHAPE(1, 40, w)), AG_SHAPE(7, 40, w)));
                bad += !copy_matches(ag_expand(ag_reshape(b, AG_SHAPE(2, 1, 20, 1, w)), AG_SHAPE(2, 3, 20, 5, w)));
                /* columns [2, 2 + w) of wider rows, every third row, and a permutation of the leading dims */
                ag_tensor *x = values(9, 31, w + 5, dts[k]);
                bad += !copy_matches(ag_narrow(x, 2, 2, w));
                bad += !copy_matches(ag_slice(ag_narrow(x, 2, 1, w), 1, 1, 31, 3));
                static const int perm[] = {1, 0, 2};
                bad += !copy_matches(ag_permute(ag_narrow(x, 2, 3, w), perm));
                cases += 6;
                ag_scope_end();
            }
        ag_set_num_threads(saved);
        ok(bad == 0 && short_rows > 0,
           "%s: %d strided views (broadcast, sliced, stepped, permuted; rows of 1-257 elements, 1-3 threads) copied "
           "contiguous as an element-by-element gather (%d differ)", dn[k], cases, bad);
    }
}

/* x.grad of x.sum(1) for x [A, R, C] float32 is dy [A, C] repeated R times along dim 1, bit for bit. */
static void test_sum_backward(void) {
    static const int64_t shapes[][3] = {{5, 7, 64}, {64, 64, 64}, {3, 4, 300}, {2, 3, 1}, {40, 60, 17}};
    const int saved = ag_get_num_threads();
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
        for (int nt = 1; nt <= 2; nt++) {
            ag_scope_begin();
            ag_set_num_threads(nt);
            const int64_t A = shapes[s][0], R = shapes[s][1], C = shapes[s][2];
            ag_tensor *x = ag_requires_grad_(ag_randn(AG_SHAPE(A, R, C), AG_F32), true);
            ag_tensor *dy = ag_randn(AG_SHAPE(A, C), AG_F32);
            const int one = 1;
            const bool run = ag_backward_ex(ag_sum_dims(x, 1, &one, false), dy, false) == AG_OK;
            const float *g = ag_grad(x) ? (const float *)ag_data(ag_grad(x)) : NULL, *d = (const float *)ag_data(dy);
            bool same = run && g && ag__contig(ag_grad(x));
            for (int64_t a = 0; same && a < A; a++)
                for (int64_t r = 0; r < R; r++) same = same && memcmp(g + (a * R + r) * C, d + a * C, sizeof(float) * (size_t)C) == 0;
            ok(same, "sum along dim 1 of [%lld, %lld, %lld] on %d thread(s): x.grad is dy repeated, bit for bit",
               (long long)A, (long long)R, (long long)C, nt);
            ag_set_num_threads(saved);
            ag_scope_end();
        }
}

int main(void) {
    test_views();
    test_sum_backward();
    ok(ag_live_tensors() == 0, "no tensor outlives the tests (%ld live)", ag_live_tensors());
    return tap_done();
}

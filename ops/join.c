/*
 * join.c - joining tensors along a dim (cat, stack) and splitting one tensor
 * into views (split, chunk, unbind).
 *
 * cat and stack copy each input into its slab of a new tensor; the adjoint
 * hands each input the matching slab of dy.  The slabs follow from the
 * inputs' shapes, so the node saves no values.  split and chunk return views
 * made with ag_narrow (unbind's with ag_select): their gradients flow through
 * the slice and select ops.
 *
 * stack of two transposed [R, C] inputs of 4-byte elements along the new last dim
 * (y[i, j, k] = x_k[i, j], x_k's elements down its columns) goes through 8 x 8
 * tiles: each input's tile transposed in registers (core/tr8x8.h), the two rows
 * interleaved and stored as 16 contiguous elements of y (stack2_tiles); the
 * general copy walks it element by element, 2 elements of y apart.
 */
#include <limits.h>
#include <omp.h>
#include <string.h>
#include "core/iter.h"
#include "core/parallel.h"
#include "core/tr8x8.h"
#include "autograd/tape.h"
#include "ops/jvp.h"
#include "agrad/ops.h"

/* A header (on the stack, no reference taken) viewing t's elements start ..
 * start+len-1 along dim; len < 0 takes the single index start and drops dim. */
static void slab(ag_tensor *v, const ag_tensor *t, int dim, int64_t start, int64_t len) {
    memset(v, 0, sizeof *v);
    v->dtype = t->dtype;
    v->storage = t->storage;
    v->offset = t->offset + start * t->stride[dim];
    int k = 0;
    for (int d = 0; d < t->ndim; d++) {
        if (d == dim && len < 0) continue;
        v->shape[k] = d == dim ? len : t->shape[d];
        v->stride[k++] = t->stride[d];
    }
    v->ndim = k;
}

/* The checks cat and stack share: a non-empty list of tensors of one dtype. */
static bool check_list(const char *op, ag_tensor *const *xs, int n) {
    if (n <= 0 || !xs) {
        ag__fail(AG_ERR_ARG, "%s: expected a non-empty list of tensors, got %d", op, n);
        return false;
    }
    for (int i = 0; i < n; i++)
        if (!xs[i]) return false;
    AG_CHECK_HANDLE_ARRAY(false, op, xs, n);
    for (int i = 1; i < n; i++)
        if (xs[i]->dtype != xs[0]->dtype) {
            ag__fail(AG_ERR_DTYPE, "%s: expected all tensors to have the same dtype, got %s (tensor 0) and %s (tensor %d)",
                     op, ag_dtype_name(xs[0]->dtype), ag_dtype_name(xs[i]->dtype), i);
            return false;
        }
    return true;
}

#ifdef AG_X86_INTRINSICS
/* y[i, j, k] = x_k[i, j] for rows [i0, i1) of y [R, C, 2] (4-byte elements, row-major), x_k at a[k] with
 * element (i, j) at i + j·ld[k]: 8 x 8 tiles transposed in registers, each pair of rows interleaved into
 * 16 elements of y; the rows and columns past the last whole tile one by one. */
__attribute__((target("avx2"))) static void stack2_rows(const char *const a[2], const int64_t ld[2], float *y, int64_t R,
                                                         int64_t C, int64_t i0, int64_t i1) {
    const int64_t C8 = C / 8 * 8, R8 = R / 8 * 8;
    int64_t i = i0;
    for (; i + 8 <= i1 && i < R8; i += 8) {
        for (int64_t j = 0; j < C8; j += 8) {
            __m256 r0[8], r1[8];
            tr8x8_rows(a[0] + 4 * (i + j * ld[0]), 4 * ld[0], r0);
            tr8x8_rows(a[1] + 4 * (i + j * ld[1]), 4 * ld[1], r1);
            for (int k = 0; k < 8; k++) {
                const __m256 lo = _mm256_unpacklo_ps(r0[k], r1[k]), hi = _mm256_unpackhi_ps(r0[k], r1[k]);
                float *o = y + 2 * ((i + k) * C + j);
                _mm256_storeu_ps(o, _mm256_permute2f128_ps(lo, hi, 0x20));
                _mm256_storeu_ps(o + 8, _mm256_permute2f128_ps(lo, hi, 0x31));
            }
        }
        for (int64_t k = i; k < i + 8; k++)
            for (int64_t j = C8; j < C; j++)
                for (int q = 0; q < 2; q++) memcpy(y + 2 * (k * C + j) + q, a[q] + 4 * (k + j * ld[q]), 4);
    }
    for (; i < i1; i++)
        for (int64_t j = 0; j < C; j++)
            for (int q = 0; q < 2; q++) memcpy(y + 2 * (i * C + j) + q, a[q] + 4 * (i + j * ld[q]), 4);
}
#endif

/* y = stack(xs, 2) along the new last dim through stack2_rows, when xs are two [R, C] of 4-byte elements
 * both transposed (stride (1, ld ≥ R)) with R, C ≥ 8, on a CPU with AVX2; rows split over the threads in
 * blocks of 8.  Returns whether it wrote y (else nothing is written). */
static bool stack2_tiles(ag_tensor *y, ag_tensor *const *xs, int n, int d) {
#ifdef AG_X86_INTRINSICS
    if (n != 2 || d != 2 || xs[0]->ndim != 2 || ag__esize(y->dtype) != 4 || !AG_VEC_WIDE()) return false;
    const int64_t R = xs[0]->shape[0], C = xs[0]->shape[1];
    if (R < 8 || C < 8) return false;
    for (int k = 0; k < 2; k++)
        if (xs[k]->stride[0] != 1 || xs[k]->stride[1] < R) return false;
    const char *a[2] = {ag__ptr(xs[0]), ag__ptr(xs[1])};
    const int64_t ld[2] = {xs[0]->stride[1], xs[1]->stride[1]}, blocks = (R + 7) / 8;
    float *out = (float *)ag__ptr(y);
    int threads = ag__threads_for(2 * R * C);
    if (threads > blocks) threads = (int)blocks;
    if (threads <= 1) {
        stack2_rows(a, ld, out, R, C, 0, R);
        return true;
    }
#pragma omp parallel num_threads(threads)
    {
        const int nt = omp_get_num_threads(), t = omp_get_thread_num();
        const int64_t lo = 8 * ag__share_start(blocks, t, nt), hi = 8 * ag__share_start(blocks, t + 1, nt);
        if (lo < hi) stack2_rows(a, ld, out, R, C, lo, hi < R ? hi : R);
    }
    return true;
#else
    (void)y, (void)xs, (void)n, (void)d;
    return false;
#endif
}

/* Copies each input into its slab of y and records the node (attr.i: dim, stack). */
static ag_tensor *join_fill(const ag_op *op, ag_tensor *y, ag_tensor *const *xs, int n, int d, bool stack) {
    int64_t start = 0;
    const bool tiled = stack && stack2_tiles(y, xs, n, d);
    for (int i = 0; i < n && !tiled; i++) {
        ag_tensor v;
        int64_t len = stack ? -1 : xs[i]->shape[d];
        slab(&v, y, d, start, len);
        ag__copy_into(&v, xs[i]);
        start += stack ? 1 : len;
    }
    if (ag__needs_grad(xs, n)) {
        if (!ag__record(y, op, xs, n)) return NULL;
        y->attr.i[0] = d;
        y->attr.i[1] = stack;
    }
    return y;
}

/* dx_i = the slab of dy that x_i was copied to. */
static ag_status join_backward(ag_tensor *out, ag_tensor *gout) {
    int d = (int)out->attr.i[0];
    bool stack = out->attr.i[1] != 0;
    int64_t start = 0;
    for (int i = 0; i < out->nin; i++) {
        ag_tensor *x = out->in[i];
        int64_t len = stack ? -1 : x->shape[d];
        if (ag__wants(out, i)) {
            ag_tensor v;
            slab(&v, gout, d, start, len);
            ag_tensor *g = ag__new_unowned(x->dtype, x->ndim, x->shape, false);
            if (!g) return AG_ERR_NOMEM;
            ag__copy_into(g, &v);
            ag_status st = ag__accumulate(x, g);
            if (st) return st;
        }
        start += stack ? 1 : len;
    }
    return AG_OK;
}

/* ---- cat ------------------------------------------------------------------------------------ */
/* y = [x0, x1, ...] along dim;  dxi = dy[..., o_i : o_i + size_i, ...] with o_i = Σ_{j<i} size_j */
/* dy = the same join of the tangents (zeros for an input without one) */
static ag_tensor *join_jvp(ag_tensor *out, ag_tensor *const *tin) {
    ag_tensor *inl[8], **t = out->nin <= 8 ? inl : ag__alloc(sizeof(ag_tensor *) * (size_t)out->nin);
    if (!t) return ag__fail_null(AG_ERR_NOMEM, "%s: out of memory", out->op->name);
    bool ok = true;
    for (int i = 0; i < out->nin; i++) ok = ok && (t[i] = tin[i] ? tin[i] : ag_zeros_like(out->in[i]));
    const int d = (int)out->attr.i[0];
    ag_tensor *y = !ok ? NULL : out->attr.i[1] ? ag_stack(t, out->nin, d) : ag_cat(t, out->nin, d);
    if (t != inl) ag__free(t);
    return y;
}

/* dxi = narrow(dy, dim, o_i, size_i) (cat) or select(dy, dim, i) (stack): views of dy */
static ag_status join_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin) {
    const int d = (int)out->attr.i[0];
    const bool stack = out->attr.i[1] != 0;
    int64_t start = 0;
    for (int i = 0; i < out->nin; i++) {
        const int64_t len = stack ? 1 : out->in[i]->shape[d];
        if (ag__wants(out, i) && !(gin[i] = stack ? ag_select(gout, d, start) : ag_narrow(gout, d, start, len)))
            return ag_last_status();
        start += len;
    }
    return AG_OK;
}

static const ag_op op_cat = {.name = "cat", .grad_fn = "CatBackward0", .backward = join_backward,
                             .math = "y = [x0, x1, ...] joined along dim;  dxi = dy[..., o_i : o_i + size_i(dim), ...]",
                             .backward_graph = join_backward_graph, .jvp = join_jvp,
                             .tangent = "ẏ = [ẋ0, ẋ1, ...] joined along dim (0 for an input without a tangent)"};

ag_tensor *ag_cat(ag_tensor *const *xs, int n, int dim) {
    if (!check_list("cat", xs, n)) return NULL;
    char s1[AG_SHAPE_STR], s2[AG_SHAPE_STR];
    const ag_tensor *x0 = xs[0];
    for (int i = 0; i < n; i++)
        if (xs[i]->ndim == 0)
            return ag__fail_null(AG_ERR_SHAPE, "cat: zero-dimensional tensor (at position %d) cannot be concatenated", i);
    int d = ag__dim("cat", dim, x0->ndim);
    if (d < 0) return NULL;
    int64_t shape[AG_MAX_DIMS];
    memcpy(shape, x0->shape, sizeof(int64_t) * (size_t)x0->ndim);
    shape[d] = 0;
    for (int i = 0; i < n; i++) {
        const ag_tensor *x = xs[i];
        bool fits = x->ndim == x0->ndim;
        for (int k = 0; fits && k < x->ndim; k++) fits = k == d || x->shape[k] == x0->shape[k];
        if (!fits)
            return ag__fail_null(AG_ERR_SHAPE, "cat: sizes of tensors must match except in dim %d: tensor 0 has shape %s "
                                 "but tensor %d has shape %s", dim, ag__tshape(s1, x0), i, ag__tshape(s2, x));
        if (ag__add_overflow(shape[d], x->shape[d], &shape[d]) || shape[d] > AG_MAX_SIZE) /* expanded inputs */
            return ag__fail_null(AG_ERR_SHAPE,
                                 "cat: the sizes along dim %d add up beyond 2^62 (at tensor %d of shape %s)", dim, i,
                                 ag__tshape(s1, x));
    }
    if (ag__check_alloc("cat", x0->ndim, shape, x0->dtype)) return NULL;
    ag_tensor *y = ag__new(x0->dtype, x0->ndim, shape);
    if (!y) return NULL;
    return join_fill(&op_cat, y, xs, n, d, false);
}

/* ---- stack ---------------------------------------------------------------------------------- */
/* y[..., i, ...] = xi along a new dim;  dxi = dy[..., i, ...] */
static const ag_op op_stack = {.name = "stack", .grad_fn = "StackBackward0", .backward = join_backward,
                               .math = "y[..., i, ...] = xi along a new dim;  dxi = dy[..., i, ...]",
                               .backward_graph = join_backward_graph, .jvp = join_jvp,
                               .tangent = "ẏ[..., i, ...] = ẋi along the new dim (0 for an input without a tangent)"};

ag_tensor *ag_stack(ag_tensor *const *xs, int n, int dim) {
    if (!check_list("stack", xs, n)) return NULL;
    char s1[AG_SHAPE_STR], s2[AG_SHAPE_STR];
    const ag_tensor *x0 = xs[0];
    for (int i = 1; i < n; i++)
        if (xs[i]->ndim != x0->ndim || memcmp(xs[i]->shape, x0->shape, sizeof(int64_t) * (size_t)x0->ndim) != 0)
            return ag__fail_null(AG_ERR_SHAPE, "stack: expects each tensor to be equal size, but got %s at entry 0 and %s "
                                 "at entry %d", ag__tshape(s1, x0), ag__tshape(s2, xs[i]), i);
    if (x0->ndim == AG_MAX_DIMS)
        return ag__fail_null(AG_ERR_SHAPE, "stack: inputs already have %d dims, the most supported", AG_MAX_DIMS);
    int d = ag__dim("stack", dim, x0->ndim + 1);
    if (d < 0) return NULL;
    int64_t shape[AG_MAX_DIMS];
    for (int k = 0, j = 0; k <= x0->ndim; k++) shape[k] = k == d ? n : x0->shape[j++];
    if (ag__check_alloc("stack", x0->ndim + 1, shape, x0->dtype)) return NULL;
    ag_tensor *y = ag__new(x0->dtype, x0->ndim + 1, shape);
    if (!y) return NULL;
    return join_fill(&op_stack, y, xs, n, d, true);
}

/* ---- split and chunk: views ---------------------------------------------------------------- */
/* Writes the first max_out of `count` narrowed views (piece i: start i*size, the last clipped),
 * each marked as one of several views (an in-place op on one is refused when recorded, as
 * PyTorch refuses it). */
static int pieces(const char *op, ag_tensor *x, int d, int64_t size, int64_t count, ag_tensor **out, int max_out) {
    if (count > INT_MAX) return ag__fail(AG_ERR_ARG, "%s: %lld pieces are too many", op, (long long)count), -1;
    int64_t dim_size = x->shape[d];
    for (int64_t i = 0; i < count && i < max_out; i++) {
        int64_t start = i * size < dim_size ? i * size : dim_size;
        int64_t len = dim_size - start < size ? dim_size - start : size;
        out[i] = ag_narrow(x, d, start, len);
        if (!out[i]) { /* only on ENOMEM; without a scope the caller would own what we made */
            for (int64_t k = 0; k < i && ag_scope_depth() == 0; k++) ag_release(out[k]);
            for (int64_t k = 0; k < i; k++) out[k] = NULL;
            return -1;
        }
        out[i]->view_flags |= AG_VIEW_MULTI;
    }
    return (int)count;
}

/* Checks shared by split and chunk; returns the normalised dim or -1. */
static int split_args(const char *op, ag_tensor *x, int dim, ag_tensor **out, int max_out) {
    AG_CHECK_HANDLES(-1, op, x);
    if (!x) return -1;
    if (max_out < 0 || (max_out > 0 && !out))
        return ag__fail(AG_ERR_ARG, "%s: invalid output array (max_out %d%s)", op, max_out, out ? "" : ", out NULL"), -1;
    if (x->ndim == 0) return ag__fail(AG_ERR_SHAPE, "%s: expects at least a 1-dimensional tensor", op), -1;
    return ag__dim(op, dim, x->ndim);
}

int ag_split(ag_tensor *x, int64_t split_size, int dim, ag_tensor **out, int max_out) {
    int d = split_args("split", x, dim, out, max_out);
    if (d < 0) return -1;
    int64_t n = x->shape[d];
    char s[AG_SHAPE_STR];
    if (split_size < 0)
        return ag__fail(AG_ERR_ARG, "split: split_size must be non-negative, got %lld", (long long)split_size), -1;
    if (split_size == 0 && n > 0)
        return ag__fail(AG_ERR_ARG, "split: split_size can only be 0 if dim %d is empty, but it has size %lld (shape %s)",
                        dim, (long long)n, ag__tshape(s, x)), -1;
    int64_t count = n == 0 ? 1 : ag__ceil_div(n, split_size);
    return pieces("split", x, d, split_size, count, out, max_out);
}

int ag_chunk(ag_tensor *x, int chunks, int dim, ag_tensor **out, int max_out) {
    int d = split_args("chunk", x, dim, out, max_out);
    if (d < 0) return -1;
    if (chunks <= 0) return ag__fail(AG_ERR_ARG, "chunk: number of chunks must be greater than 0, got %d", chunks), -1;
    int64_t n = x->shape[d];
    if (n == 0) return pieces("chunk", x, d, 0, chunks, out, max_out); /* torch.chunk: `chunks` empty pieces */
    int64_t size = ag__ceil_div(n, chunks);
    return pieces("chunk", x, d, size, ag__ceil_div(n, size), out, max_out);
}

int ag_unbind(ag_tensor *x, int dim, ag_tensor **out, int max_out) {
    int d = split_args("unbind", x, dim, out, max_out);
    if (d < 0) return -1;
    if (x->shape[d] > INT_MAX) return ag__fail(AG_ERR_ARG, "unbind: %lld pieces are too many", (long long)x->shape[d]), -1;
    for (int64_t i = 0; i < x->shape[d] && i < max_out; i++) {
        out[i] = ag_select(x, d, i);
        if (!out[i]) { /* only on ENOMEM; without a scope the caller would own what we made */
            for (int64_t k = 0; k < i && ag_scope_depth() == 0; k++) ag_release(out[k]);
            for (int64_t k = 0; k < i; k++) out[k] = NULL;
            return -1;
        }
        out[i]->view_flags |= AG_VIEW_MULTI;
    }
    return (int)x->shape[d];
}

const ag_op *const ag__join_ops[] = {&op_cat, &op_stack, NULL};

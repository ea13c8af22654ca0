/*
 * Joining, splitting, indexing and comparison ops: hand-checked values (as
 * PyTorch gives them), gradients through cat/split round trips and duplicate
 * indices, and every error case with its message.  The generic gradcheck of
 * these ops is in test_ops_gradcheck.c.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "agrad/agrad.h"
#include "core/internal.h"
#include "tap.h"

/* t has shape s and, in row-major order, the n values v. */
static bool is(const ag_tensor *t, ag_shape s, const double *v, int64_t n) {
    if (!t || t->ndim != s.ndim || ag_numel(t) != n) return false;
    for (int d = 0; d < s.ndim; d++)
        if (t->shape[d] != s.dim[d]) return false;
    if (n == 0) return true;
    double *got = malloc(sizeof(double) * (size_t)(n + 1));
    bool same = ag_copy_to(t, got, n, AG_F64) == AG_OK;
    for (int64_t k = 0; same && k < n; k++) same = got[k] == v[k];
    free(got);
    return same;
}
#define IS(t, shape, ...) is((t), shape, (const double[]){__VA_ARGS__}, sizeof((double[]){__VA_ARGS__}) / sizeof(double))

static ag_tensor *f64(ag_shape s, const double *v) { return ag_from_data(v, s, AG_F64); }
static ag_tensor *i64(ag_shape s, const int64_t *v) { return ag_from_data(v, s, AG_I64); }
static ag_tensor *mask(ag_shape s, const bool *v) { return ag_from_data(v, s, AG_BOOL); }
static ag_tensor *leaf(ag_shape s, const double *v) { return ag_requires_grad_(f64(s, v), true); }

/* The last error is status st with exactly the message msg. */
static bool fails(ag_status st, const char *msg) { return ag_last_status() == st && strcmp(ag_last_error(), msg) == 0; }

/* ---- cat and stack --------------------------------------------------------------------------- */
static void test_cat_stack(void) {
    ag_scope_begin();
    ag_tensor *a = f64(AG_SHAPE(2, 2), (double[]){1, 2, 3, 4});
    ag_tensor *b = f64(AG_SHAPE(1, 2), (double[]){5, 6});
    ag_tensor *c = f64(AG_SHAPE(2, 3), (double[]){7, 8, 9, 10, 11, 12});
    ok(IS(ag_cat((ag_tensor *[]){a, b}, 2, 0), AG_SHAPE(3, 2), 1, 2, 3, 4, 5, 6), "cat along dim 0");
    ok(IS(ag_cat((ag_tensor *[]){a, c, a}, 3, -1), AG_SHAPE(2, 7), 1, 2, 7, 8, 9, 1, 2, 3, 4, 10, 11, 12, 3, 4),
       "cat of three along dim -1");
    ok(IS(ag_cat((ag_tensor *[]){ag_t(a)}, 1, 1), AG_SHAPE(2, 2), 1, 3, 2, 4), "cat of one transposed tensor copies it");
    ag_tensor *x3 = ag_reshape(ag_arange(0, 12, 1, AG_F64), AG_SHAPE(2, 3, 2));
    ag_tensor *y3 = ag_reshape(ag_arange(100, 104, 1, AG_F64), AG_SHAPE(2, 1, 2));
    ok(IS(ag_cat((ag_tensor *[]){x3, y3}, 2, 1), AG_SHAPE(2, 4, 2), 0, 1, 2, 3, 4, 5, 100, 101, 6, 7, 8, 9, 10, 11, 102,
          103),
       "cat of 3-d tensors along the middle dim");
    ag_tensor *e = ag_zeros(AG_SHAPE(0, 2), AG_F64);
    ok(IS(ag_cat((ag_tensor *[]){e, b, e}, 3, 0), AG_SHAPE(1, 2), 5, 6), "empty pieces add nothing");
    ag_tensor *ia = i64(AG_SHAPE(2), (int64_t[]){1, 2}), *ib = i64(AG_SHAPE(1), (int64_t[]){-3});
    ag_tensor *ic = ag_cat((ag_tensor *[]){ia, ib}, 2, 0);
    ok(ic && ic->dtype == AG_I64 && IS(ic, AG_SHAPE(3), 1, 2, -3), "cat of int64 tensors stays int64");

    ag_tensor *p = f64(AG_SHAPE(2), (double[]){1, 2}), *q = f64(AG_SHAPE(2), (double[]){3, 4});
    ok(IS(ag_stack((ag_tensor *[]){p, q}, 2, 0), AG_SHAPE(2, 2), 1, 2, 3, 4), "stack along a new dim 0");
    ok(IS(ag_stack((ag_tensor *[]){p, q}, 2, 1), AG_SHAPE(2, 2), 1, 3, 2, 4), "stack along a new dim 1");
    ok(IS(ag_stack((ag_tensor *[]){p, q, p}, 3, -1), AG_SHAPE(2, 3), 1, 3, 1, 2, 4, 2), "stack along dim -1");
    ok(IS(ag_stack((ag_tensor *[]){ag_scalar(7, AG_F64), ag_scalar(8, AG_F64)}, 2, 0), AG_SHAPE(2), 7, 8),
       "stack of 0-d tensors gives a vector");
    ok(IS(ag_stack((ag_tensor *[]){a, a}, 2, 1), AG_SHAPE(2, 2, 2), 1, 2, 1, 2, 3, 4, 3, 4), "stack of matrices along dim 1");
    ag_scope_end();
}

/* ---- split and chunk ------------------------------------------------------------------------- */
static bool sizes_are(ag_tensor **v, int n, int dim, const int64_t *sizes) {
    for (int i = 0; i < n; i++)
        if (!v[i] || v[i]->shape[dim] != sizes[i]) return false;
    return true;
}

static void test_split_chunk(void) {
    ag_scope_begin();
    ag_tensor *x = ag_reshape(ag_arange(0, 10, 1, AG_F64), AG_SHAPE(5, 2));
    ag_tensor *v[8] = {0};
    ok(ag_split(x, 2, 0, v, 8) == 3 && sizes_are(v, 3, 0, (int64_t[]){2, 2, 1}), "split 5 rows by 2: 2, 2, 1");
    ok(IS(v[1], AG_SHAPE(2, 2), 4, 5, 6, 7) && IS(v[2], AG_SHAPE(1, 2), 8, 9), "split pieces hold the right rows");
    ok(v[2]->storage == x->storage && ag_data(v[2]) == (double *)ag_data(x) + 8, "split pieces are views of x");
    ag_tensor *w[2] = {0};
    ok(ag_split(x, 1, 1, w, 2) == 2 && IS(w[1], AG_SHAPE(5, 1), 1, 3, 5, 7, 9), "split along dim 1");
    ag_tensor *first = NULL;
    ok(ag_split(x, 2, -2, &first, 1) == 3 && IS(first, AG_SHAPE(2, 2), 0, 1, 2, 3),
       "split writes at most max_out views but counts all");
    ok(ag_split(x, 2, 0, NULL, 0) == 3, "split with max_out 0 only counts");
    ok(ag_split(x, 7, 0, v, 8) == 1 && sizes_are(v, 1, 0, (int64_t[]){5}), "split_size above the size: one piece");
    ag_tensor *e = ag_zeros(AG_SHAPE(0, 3), AG_F64);
    ok(ag_split(e, 0, 0, v, 8) == 1 && sizes_are(v, 1, 0, (int64_t[]){0}), "split of an empty dim by 0: one empty piece");

    ag_tensor *r = ag_arange(0, 5, 1, AG_F64);
    ok(ag_chunk(r, 3, 0, v, 8) == 3 && sizes_are(v, 3, 0, (int64_t[]){2, 2, 1}), "chunk 5 into 3: 2, 2, 1");
    ok(IS(v[2], AG_SHAPE(1), 4), "the last chunk holds the remainder");
    ok(ag_chunk(ag_arange(0, 6, 1, AG_F64), 4, 0, v, 8) == 3 && sizes_are(v, 3, 0, (int64_t[]){2, 2, 2}),
       "chunk 6 into 4 gives 3 chunks of 2, as torch.chunk");
    ok(ag_chunk(r, 5, 0, v, 8) == 5 && sizes_are(v, 5, 0, (int64_t[]){1, 1, 1, 1, 1}), "chunk 5 into 5: ones");
    ok(ag_chunk(r, 8, 0, v, 8) == 5, "chunk 5 into 8: 5 chunks of 1");
    ok(ag_chunk(r, 1, 0, v, 8) == 1 && v[0]->shape[0] == 5, "chunk into 1: the whole tensor");
    ok(ag_chunk(e, 3, 0, v, 8) == 3 && sizes_are(v, 3, 0, (int64_t[]){0, 0, 0}), "chunk of an empty dim: 3 empty chunks");
    ok(ag_chunk(x, 2, 1, v, 8) == 2 && IS(v[0], AG_SHAPE(5, 1), 0, 2, 4, 6, 8), "chunk along dim 1");
    ag_scope_end();
}

/* ---- gradients through cat / stack / split ---------------------------------------------------- */
static void test_join_grads(void) {
    ag_scope_begin();
    /* x -> split -> cat in another order -> weighted sum: dx is the weights, permuted back */
    ag_tensor *x = leaf(AG_SHAPE(5), (double[]){1, 2, 3, 4, 5});
    ag_tensor *pieces[3];
    ok(ag_split(x, 2, 0, pieces, 3) == 3, "split of a tensor requiring grad");
    ag_tensor *y = ag_cat((ag_tensor *[]){pieces[2], pieces[0], pieces[1]}, 3, 0);
    ok(IS(y, AG_SHAPE(5), 5, 1, 2, 3, 4), "cat of the pieces reordered");
    ok(strcmp(ag_grad_fn_name(y), "CatBackward0") == 0, "cat's grad_fn is CatBackward0");
    ag_tensor *wts = f64(AG_SHAPE(5), (double[]){10, 20, 30, 40, 50});
    ok(ag_backward(ag_sum(ag_mul(y, wts))) == AG_OK, "backward through split and cat");
    ok(IS(ag_grad(x), AG_SHAPE(5), 20, 30, 40, 50, 10), "dx routes each weight back to its element");

    /* a, b -> cat -> chunk -> use the chunks differently */
    ag_tensor *a = leaf(AG_SHAPE(2, 2), (double[]){1, 2, 3, 4});
    ag_tensor *b = leaf(AG_SHAPE(2, 1), (double[]){5, 6});
    ag_tensor *c = ag_cat((ag_tensor *[]){a, b}, 2, 1); /* [[1, 2, 5], [3, 4, 6]] */
    ag_tensor *ch[3];
    ok(ag_chunk(c, 3, 1, ch, 3) == 3, "chunk the joined tensor back into columns");
    ag_tensor *loss = ag_add(ag_sum(ag_mul_scalar(ch[0], 2)), ag_sum(ag_square(ch[2])));
    ok(ag_backward(loss) == AG_OK, "backward through cat and chunk");
    ok(IS(ag_grad(a), AG_SHAPE(2, 2), 2, 0, 2, 0), "da: 2 on the first column, 0 on the unused one");
    ok(IS(ag_grad(b), AG_SHAPE(2, 1), 10, 12), "db = 2b");

    /* stack: each input gets its slice of dy; one input not requiring grad */
    ag_tensor *p = leaf(AG_SHAPE(3), (double[]){1, 2, 3});
    ag_tensor *q = f64(AG_SHAPE(3), (double[]){4, 5, 6});
    ag_tensor *s = ag_stack((ag_tensor *[]){q, p, q}, 3, 1); /* [3, 3] */
    ok(strcmp(ag_grad_fn_name(s), "StackBackward0") == 0, "stack's grad_fn is StackBackward0");
    ag_tensor *m = f64(AG_SHAPE(3, 3), (double[]){1, 2, 3, 4, 5, 6, 7, 8, 9});
    ok(ag_backward(ag_sum(ag_mul(s, m))) == AG_OK, "backward through stack");
    ok(IS(ag_grad(p), AG_SHAPE(3), 2, 5, 8), "dp is column 1 of the weights");
    ok(ag_grad(q) == NULL, "an input not requiring grad gets none");

    /* more than three inputs: the node keeps them on the heap */
    ag_tensor *ins[5];
    for (int i = 0; i < 5; i++) ins[i] = leaf(AG_SHAPE(1), (double[]){(double)i});
    ag_tensor *big = ag_cat(ins, 5, 0);
    ok(ag_backward(ag_sum(ag_mul(big, big))) == AG_OK, "backward through a cat of five inputs");
    bool all = true;
    for (int i = 0; i < 5; i++) all = all && IS(ag_grad(ins[i]), AG_SHAPE(1), 2.0 * i);
    ok(all, "each of the five inputs gets 2x");
    ag_scope_end();
}

/* ---- index_select, gather, scatter_add -------------------------------------------------------- */
static void test_index_ops(void) {
    ag_scope_begin();
    ag_tensor *x = leaf(AG_SHAPE(3, 4), (double[]){0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11});
    ag_tensor *rows = i64(AG_SHAPE(3), (int64_t[]){2, 0, 2});
    ag_tensor *y = ag_index_select(x, 0, rows);
    ok(IS(y, AG_SHAPE(3, 4), 8, 9, 10, 11, 0, 1, 2, 3, 8, 9, 10, 11), "index_select rows 2, 0, 2");
    ok(strcmp(ag_grad_fn_name(y), "IndexSelectBackward0") == 0, "index_select's grad_fn");
    ok(IS(ag_index_select(x, -1, i64(AG_SHAPE(2), (int64_t[]){3, 1})), AG_SHAPE(3, 2), 3, 1, 7, 5, 11, 9),
       "index_select columns along dim -1");
    ok(IS(ag_index_select(ag_t(x), 1, i64(AG_SCALAR_SHAPE, (int64_t[]){1})), AG_SHAPE(4, 1), 4, 5, 6, 7),
       "index_select of a transposed view with a 0-d index");
    ok(is(ag_index_select(x, 0, i64(AG_SHAPE(0), NULL)), AG_SHAPE(0, 4), NULL, 0), "index_select with an empty index");
    ok(ag_backward(ag_sum(y)) == AG_OK, "backward through index_select");
    ok(IS(ag_grad(x), AG_SHAPE(3, 4), 1, 1, 1, 1, 0, 0, 0, 0, 2, 2, 2, 2), "duplicate rows accumulate: row 2 gets 2");

    /* torch.gather docs: gather([[1, 2], [3, 4]], 1, [[0, 0], [1, 0]]) = [[1, 1], [4, 3]] */
    ag_tensor *t = leaf(AG_SHAPE(2, 2), (double[]){1, 2, 3, 4});
    ag_tensor *g = ag_gather(t, 1, i64(AG_SHAPE(2, 2), (int64_t[]){0, 0, 1, 0}));
    ok(IS(g, AG_SHAPE(2, 2), 1, 1, 4, 3), "gather along dim 1");
    ok(strcmp(ag_grad_fn_name(g), "GatherBackward0") == 0, "gather's grad_fn");
    ok(ag_backward(ag_sum(ag_mul(g, f64(AG_SHAPE(2, 2), (double[]){1, 10, 100, 1000})))) == AG_OK,
       "backward through gather");
    ok(IS(ag_grad(t), AG_SHAPE(2, 2), 11, 0, 1000, 100), "gather's gradient scatters dy, duplicates summed");
    ok(IS(ag_gather(t, 0, ag_t(i64(AG_SHAPE(2, 2), (int64_t[]){1, 0, 1, 1}))), AG_SHAPE(2, 2), 3, 4, 1, 4),
       "gather with a transposed (non-contiguous) index");
    ok(IS(ag_index_select(ag_scalar(5, AG_F64), 0, i64(AG_SCALAR_SHAPE, (int64_t[]){0})), AG_SCALAR_SHAPE, 5) &&
           IS(ag_gather(ag_scalar(6, AG_F64), -1, i64(AG_SCALAR_SHAPE, (int64_t[]){0})), AG_SCALAR_SHAPE, 6),
       "index_select and gather of a 0-d tensor");
    ag_tensor *x3 = ag_reshape(ag_arange(0, 24, 1, AG_F64), AG_SHAPE(2, 3, 4));
    ok(IS(ag_gather(x3, 0, i64(AG_SHAPE(1, 2, 2), (int64_t[]){1, 0, 0, 1})), AG_SHAPE(1, 2, 2), 12, 1, 4, 17),
       "gather along dim 0 of a 3-d tensor with a smaller index");
    ok(IS(ag_gather(x3, 2, i64(AG_SHAPE(2, 1, 3), (int64_t[]){3, 3, 0, 1, 2, 1})), AG_SHAPE(2, 1, 3), 3, 3, 0, 13, 14, 13),
       "gather along the last dim");

    /* torch.scatter_add_ docs: zeros(3, 5).scatter_add_(0, [[0,1,2,0,0],[0,1,2,2,2]], ones(2, 5)) */
    ag_tensor *z = ag_zeros(AG_SHAPE(3, 5), AG_F64);
    ag_tensor *sidx = i64(AG_SHAPE(2, 5), (int64_t[]){0, 1, 2, 0, 0, 0, 1, 2, 2, 2});
    ok(IS(ag_scatter_add(z, 0, sidx, ag_ones(AG_SHAPE(2, 5), AG_F64)), AG_SHAPE(3, 5), 2, 0, 0, 1, 1, 0, 2, 0, 0, 0, 0,
          0, 2, 1, 1),
       "scatter_add as in the PyTorch docs");
    ok(IS(z, AG_SHAPE(3, 5), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), "scatter_add leaves x unchanged");
    ag_tensor *v = leaf(AG_SHAPE(3), (double[]){1, 2, 3});
    ag_tensor *src = leaf(AG_SHAPE(5), (double[]){10, 20, 30, 40, 50});
    ag_tensor *vi = i64(AG_SHAPE(4), (int64_t[]){0, 0, 2, 0});
    ag_tensor *sa = ag_scatter_add(v, 0, vi, src);
    ok(IS(sa, AG_SHAPE(3), 71, 2, 33), "duplicate indices accumulate; src beyond the index is ignored");
    ok(strcmp(ag_grad_fn_name(sa), "ScatterAddBackward0") == 0, "scatter_add's grad_fn");
    ok(ag_backward(ag_sum(ag_mul(sa, f64(AG_SHAPE(3), (double[]){1, 2, 3})))) == AG_OK, "backward through scatter_add");
    ok(IS(ag_grad(v), AG_SHAPE(3), 1, 2, 3), "dx = dy");
    ok(IS(ag_grad(src), AG_SHAPE(5), 1, 1, 3, 1, 0), "dsrc = gather(dy), 0 where no index");
    ag_tensor *ii = ag_scatter_add(i64(AG_SHAPE(2), (int64_t[]){1, 1}), 0, i64(AG_SHAPE(3), (int64_t[]){1, 1, 0}),
                                   i64(AG_SHAPE(3), (int64_t[]){5, 6, 7}));
    ok(ii && ii->dtype == AG_I64 && IS(ii, AG_SHAPE(2), 8, 12), "scatter_add of int64 tensors");
    /* int64 sums wrap modulo 2^64 as PyTorch's (found by fuzz_api: a signed overflow under UBSan) */
    ag_tensor *iw2 = ag_scatter_add(i64(AG_SHAPE(1), (int64_t[]){INT64_MAX}), 0, i64(AG_SHAPE(2), (int64_t[]){0, 0}),
                                    i64(AG_SHAPE(2), (int64_t[]){1, 1}));
    ok(iw2 && ((const int64_t *)ag_data(iw2))[0] == INT64_MIN + 1, "scatter_add of int64 wraps: INT64_MAX + 1 + 1 = INT64_MIN + 1");
    ag_scope_end();
}

/* ---- where, masked_fill, one_hot -------------------------------------------------------------- */
static void test_mask_ops(void) {
    ag_scope_begin();
    ag_tensor *cond = mask(AG_SHAPE(2, 3), (bool[]){1, 0, 1, 0, 0, 1});
    ag_tensor *a = leaf(AG_SCALAR_SHAPE, (double[]){7});
    ag_tensor *b = leaf(AG_SHAPE(3), (double[]){1, 2, 3});
    ag_tensor *y = ag_where(cond, a, b);
    ok(IS(y, AG_SHAPE(2, 3), 7, 2, 7, 1, 2, 7), "where broadcasts cond [2, 3], a [] and b [3]");
    ok(strcmp(ag_grad_fn_name(y), "WhereBackward0") == 0, "where's grad_fn");
    ok(ag_backward(ag_sum(ag_mul(y, f64(AG_SHAPE(2, 3), (double[]){1, 2, 3, 4, 5, 6})))) == AG_OK,
       "backward through where");
    ok(IS(ag_grad(a), AG_SCALAR_SHAPE, 1 + 3 + 6), "da = where(cond, dy, 0) summed to a's shape");
    ok(IS(ag_grad(b), AG_SHAPE(3), 4, 2 + 5, 0), "db = where(cond, 0, dy) summed to b's shape");
    ag_tensor *c1 = mask(AG_SHAPE(2, 1), (bool[]){0, 1});
    ok(IS(ag_where(c1, ag_ones(AG_SHAPE(3), AG_F64), ag_zeros(AG_SHAPE(1), AG_F64)), AG_SHAPE(2, 3), 0, 0, 0, 1, 1, 1),
       "where with only cond carrying the leading dim");
    ag_tensor *iw = ag_where(c1, i64(AG_SHAPE(1), (int64_t[]){5}), i64(AG_SHAPE(1), (int64_t[]){-5}));
    ok(iw && iw->dtype == AG_I64 && IS(iw, AG_SHAPE(2, 1), -5, 5), "where on int64 values");

    ag_tensor *x = leaf(AG_SHAPE(2, 3), (double[]){1, 2, 3, 4, 5, 6});
    ag_tensor *m = ag_masked_fill(x, mask(AG_SHAPE(3), (bool[]){0, 1, 0}), -1e9);
    ok(IS(m, AG_SHAPE(2, 3), 1, -1e9, 3, 4, -1e9, 6), "masked_fill with a mask broadcast over rows");
    ok(strcmp(ag_grad_fn_name(m), "MaskedFillBackward0") == 0, "masked_fill's grad_fn");
    ok(ag_backward(ag_sum(ag_mul(m, f64(AG_SHAPE(2, 3), (double[]){1, 2, 3, 4, 5, 6})))) == AG_OK,
       "backward through masked_fill");
    ok(IS(ag_grad(x), AG_SHAPE(2, 3), 1, 0, 3, 4, 0, 6), "dx = dy with 0 where masked");
    ok(IS(ag_masked_fill(i64(AG_SHAPE(2), (int64_t[]){3, 4}), mask(AG_SCALAR_SHAPE, (bool[]){1}), 9), AG_SHAPE(2), 9, 9),
       "masked_fill of int64 with a 0-d mask");

    ag_tensor *oh = ag_one_hot(i64(AG_SHAPE(3), (int64_t[]){0, 2, 1}), -1);
    ok(oh && oh->dtype == AG_I64 && IS(oh, AG_SHAPE(3, 3), 1, 0, 0, 0, 0, 1, 0, 1, 0), "one_hot infers 3 classes");
    ok(IS(ag_one_hot(i64(AG_SHAPE(2, 1), (int64_t[]){3, 0}), 5), AG_SHAPE(2, 1, 5), 0, 0, 0, 1, 0, 1, 0, 0, 0, 0),
       "one_hot of a 2-d tensor with 5 classes");
    ok(IS(ag_one_hot(i64(AG_SCALAR_SHAPE, (int64_t[]){1}), 2), AG_SHAPE(2), 0, 1), "one_hot of a 0-d index");
    ok(is(ag_one_hot(i64(AG_SHAPE(0), NULL), 4), AG_SHAPE(0, 4), NULL, 0), "one_hot of an empty tensor with known classes");
    ag_scope_end();
}

/* a and b have one dtype and shape and the same bits in row-major order. */
static bool same_bits(ag_tensor *a, ag_tensor *b) {
    if (!a || !b || a->dtype != b->dtype || a->ndim != b->ndim) return false;
    for (int d = 0; d < a->ndim; d++)
        if (a->shape[d] != b->shape[d]) return false;
    ag_tensor *ca = ag_contiguous(a), *cb = ag_contiguous(b);
    return ca && cb && !memcmp(ag_data(ca), ag_data(cb), (size_t)ag_numel(a) * ag_dtype_size(a->dtype));
}

/* The one-pass mask ops and nonzero on contiguous operands (ops/scatter.c) against plain loops, for
 * float32, float64 and int64 (select and scatter) and masks random, all false, all true, true only
 * at the first or at the last place (where the branch-free writes past the end land), with the
 * gradients; and against the same ops on transposed operands (their lists of offsets). */
static void test_mask_runs(void) {
    ag_scope_begin();
    const int64_t R = 37, C = 45, n = R * C;
    static const ag_dtype dts[] = {AG_F32, AG_F64, AG_I64};
    for (int kind = 0; kind < 5; kind++)
        for (int t = 0; t < 3; t++) {
            ag_tensor *mk = ag_empty(AG_SHAPE(R, C), AG_BOOL), *xv = ag_empty(AG_SHAPE(R, C), AG_F64);
            bool *m = ag_data(mk);
            double *xd = ag_data(xv);
            int64_t count = 0;
            for (int64_t k = 0; k < n; k++) {
                m[k] = kind == 0 ? (k * 2654435761u >> 7) % 3 == 0 : kind == 2 ? true : kind == 3 ? k == 0 : kind == 4 && k == n - 1;
                count += m[k];
                xd[k] = (double)((k * 7919) % 101) - 50; /* zeros among them */
            }
            ag_tensor *x = ag_to_dtype(xv, dts[t]), *src = ag_to_dtype(ag_mul_scalar(xv, -2), dts[t]);
            ag_tensor *sel = ag_masked_select(x, mk), *sc = ag_masked_scatter(x, mk, src);
            bool fine = sel && sc && ag_numel(sel) == count;
            const double *sv = fine ? ag_data(ag_to_dtype(sel, AG_F64)) : NULL, *cv = fine ? ag_data(ag_to_dtype(sc, AG_F64)) : NULL;
            for (int64_t k = 0, c = 0; fine && k < n; k++) {
                if (m[k]) fine = sv[c] == xd[k] && cv[k] == -2 * xd[c];
                else fine = cv[k] == xd[k];
                c += m[k];
            }
            /* transposed x and mask: the lists of offsets, the same elements */
            ag_tensor *xt = ag_transpose(ag_contiguous(ag_transpose(x, 0, 1)), 0, 1);
            ag_tensor *mt = ag_transpose(ag_contiguous(ag_transpose(mk, 0, 1)), 0, 1);
            fine = fine && same_bits(sel, ag_masked_select(xt, mt)) && same_bits(sc, ag_masked_scatter(xt, mt, src));
            ok(fine, "masked_select and masked_scatter of a [37, 45] %s by mask %d: the plain loop's elements, and "
               "those of transposed operands", ag_dtype_name(dts[t]), kind);
            if (dts[t] == AG_I64) continue;
            /* gradients: dx = dy at the selected places, 0 elsewhere; masked_scatter's dx = dy, 0 where
             * masked, dsource[c] = dy at the c-th selected place, 0 past count (source has n) */
            ag_tensor *xl = ag_requires_grad_(ag_detach(x), true), *sl = ag_requires_grad_(ag_detach(src), true);
            ag_tensor *dy1 = ag_to_dtype(ag_arange(1, (double)count + 1, 1, AG_F64), dts[t]);
            ag_tensor *dy2 = ag_to_dtype(ag_add_scalar(ag_mul_scalar(xv, 3), 1), dts[t]);
            fine = ag_backward_ex(ag_masked_select(xl, mk), dy1, false) == AG_OK;
            ag_tensor *xl2 = ag_requires_grad_(ag_detach(x), true);
            fine = fine && ag_backward_ex(ag_masked_scatter(xl2, mk, sl), dy2, false) == AG_OK;
            const double *g1 = fine ? ag_data(ag_to_dtype(ag_grad(xl), AG_F64)) : NULL;
            const double *g2 = fine ? ag_data(ag_to_dtype(ag_grad(xl2), AG_F64)) : NULL;
            const double *g3 = fine ? ag_data(ag_to_dtype(ag_grad(sl), AG_F64)) : NULL;
            for (int64_t k = 0, c = 0; fine && k < n; k++) {
                const double d2 = 3 * xd[k] + 1;
                fine = g1[k] == (m[k] ? (double)(c + 1) : 0) && g2[k] == (m[k] ? 0 : d2) && (!m[k] || g3[c] == d2);
                c += m[k];
            }
            for (int64_t c = count; fine && c < n; c++) fine = g3[c] == 0;
            ok(fine, "... their gradients, %s: the plain loop's", ag_dtype_name(dts[t]));
        }
    /* nonzero: -0.0 is zero, NaN is not; 1-, 2- and 3-d, every dtype; the list path (transposed) agrees */
    static const ag_dtype all[] = {AG_F32, AG_F64, AG_I64, AG_BOOL, AG_U8};
    static const int64_t shapes[3][3] = {{0, 0, 77}, {0, 7, 11}, {3, 5, 7}};
    for (int t = 0; t < 5; t++)
        for (int sh = 0; sh < 3; sh++) {
            const int nd = sh + 1;
            int64_t dims[3], m = 1;
            for (int q = 0; q < nd; q++) m *= dims[q] = shapes[sh][3 - nd + q];
            ag_tensor *v = ag_empty(AG_SHAPE(m), AG_F64);
            double *vd = ag_data(v);
            for (int64_t k = 0; k < m; k++) vd[k] = k % 5 == 0 ? 0 : k % 7 == 0 ? -0.0 : k % 11 == 0 ? NAN : (double)(k % 3);
            ag_tensor *x = ag_reshape(ag_to_dtype(v, all[t]), nd == 1 ? AG_SHAPE(m) : nd == 2 ? AG_SHAPE(dims[0], dims[1])
                                                                                   : AG_SHAPE(dims[0], dims[1], dims[2]));
            ag_tensor *y = ag_nonzero(x), *back = ag_to_dtype(x, AG_F64);
            bool fine = y && y->ndim == 2 && y->shape[1] == nd;
            const int64_t *yv = fine ? ag_data(y) : NULL;
            const double *xd = fine ? ag_data(back) : NULL;
            int64_t c = 0;
            for (int64_t k = 0; fine && k < m; k++) {
                if (xd[k] == 0) continue;
                int64_t rest = k;
                for (int q = nd - 1; q >= 0; q--) fine = fine && yv[c * nd + q] == rest % dims[q], rest /= dims[q];
                c++;
            }
            fine = fine && y->shape[0] == c;
            if (nd > 1) {
                ag_tensor *xt = ag_transpose(ag_contiguous(ag_transpose(x, 0, nd - 1)), 0, nd - 1);
                fine = fine && same_bits(y, ag_nonzero(xt));
            }
            ok(fine, "nonzero of a %d-d %s tensor of %lld elements: the plain loop's places", nd, ag_dtype_name(all[t]),
               (long long)m);
        }
    ag_scope_end();
}

/* ---- comparisons ------------------------------------------------------------------------------ */
static void test_compare(void) {
    ag_scope_begin();
    ag_tensor *a = ag_requires_grad_(f64(AG_SHAPE(2, 3), (double[]){1, 2, 3, 4, 5, NAN}), true);
    ag_tensor *b = f64(AG_SHAPE(3), (double[]){2, 2, 2});
    ag_tensor *e = ag_eq(a, b);
    ok(e && e->dtype == AG_BOOL && IS(e, AG_SHAPE(2, 3), 0, 1, 0, 0, 0, 0), "eq broadcasts and gives bool");
    ok(!ag_requires_grad(e) && ag_grad_fn_name(e) == NULL, "comparisons record nothing");
    ok(IS(ag_ne(a, b), AG_SHAPE(2, 3), 1, 0, 1, 1, 1, 1), "ne (NaN is unequal)");
    ok(IS(ag_lt(a, b), AG_SHAPE(2, 3), 1, 0, 0, 0, 0, 0), "lt");
    ok(IS(ag_le(a, b), AG_SHAPE(2, 3), 1, 1, 0, 0, 0, 0), "le");
    ok(IS(ag_gt(a, b), AG_SHAPE(2, 3), 0, 0, 1, 1, 1, 0), "gt");
    ok(IS(ag_ge(a, b), AG_SHAPE(2, 3), 0, 1, 1, 1, 1, 0), "ge");
    ag_tensor *i = i64(AG_SHAPE(3, 1), (int64_t[]){-1, 0, 1}), *j = i64(AG_SHAPE(2), (int64_t[]){0, 1});
    ok(IS(ag_ge(i, j), AG_SHAPE(3, 2), 0, 0, 1, 0, 1, 1), "ge of int64 tensors broadcast to [3, 2]");
    ag_tensor *f = ag_to_dtype(b, AG_F32);
    ok(IS(ag_lt(f, ag_scalar(2.5, AG_F32)), AG_SHAPE(3), 1, 1, 1), "lt of float32 with a 0-d tensor");
    ok(IS(ag_where(ag_gt(a, b), a, b), AG_SHAPE(2, 3), 2, 2, 3, 4, 5, 2), "a comparison feeds where");
    ag_scope_end();
}

/* ---- errors --------------------------------------------------------------------------------- */
static void test_errors(void) {
    ag_scope_begin();
    ag_tensor *x = ag_zeros(AG_SHAPE(3, 5), AG_F64);
    ag_tensor *bad = i64(AG_SHAPE(3, 1), (int64_t[]){0, 7, 1});
    ok(!ag_gather(x, 1, bad) && fails(AG_ERR_INDEX, "gather: index 7 is out of bounds for dim 1 with size 5 (input shape [3, 5])"),
       "gather out of range: %s", ag_last_error());
    ok(!ag_gather(x, -1, i64(AG_SHAPE(3, 1), (int64_t[]){0, -1, 1})) &&
           fails(AG_ERR_INDEX, "gather: index -1 is out of bounds for dim 1 with size 5 (input shape [3, 5]; negative "
                               "indices are not supported)"),
       "gather rejects a negative index: %s", ag_last_error());
    /* the bounds check inside the pick: runs of 8 values (hardware gathers where the CPU has them)
     * and their tails, along dim 1 and across dim 0, both element sizes, a strided index; values
     * whose products with the stride wrap are not followed either */
    {
        static const int64_t far[] = {16, -1, INT64_MAX, INT64_MIN, (int64_t)1 << 62};
        ag_tensor *wide = ag_zeros(AG_SHAPE(2, 16), AG_F32), *sq = ag_zeros(AG_SHAPE(16, 16), AG_F64);
        for (int f = 0; f < 5; f++)
            for (int at = 0; at < 32; at += 5) {
                ag_tensor *row = ag_zeros(AG_SHAPE(2, 16), AG_I64);
                ((int64_t *)ag_data(row))[at] = far[f];
                char w0[160], w1[160];
                snprintf(w0, sizeof w0, "index %lld is out of bounds for dim 0 with size 16", (long long)far[f]);
                snprintf(w1, sizeof w1, "index %lld is out of bounds for dim 1 with size 16", (long long)far[f]);
                ok(!ag_gather(wide, 1, row) && ag_last_status() == AG_ERR_INDEX && strstr(ag_last_error(), w1),
                   "gather along dim 1, %lld at %d: %s", (long long)far[f], at, ag_last_error());
                ok(!ag_gather(sq, 0, row) && ag_last_status() == AG_ERR_INDEX && strstr(ag_last_error(), w0),
                   "gather across dim 0 (float64), %lld at %d: %s", (long long)far[f], at, ag_last_error());
                ok(!ag_gather(ag_t(sq), 1, ag_t(row)) && ag_last_status() == AG_ERR_INDEX && strstr(ag_last_error(), w1),
                   "gather through a transposed index, %lld at %d: %s", (long long)far[f], at, ag_last_error());
                ok(!ag_scatter_add(sq, 0, row, ag_ones(AG_SHAPE(2, 16), AG_F64)) && ag_last_status() == AG_ERR_INDEX &&
                       strstr(ag_last_error(), w0),
                   "scatter_add, %lld at %d: %s", (long long)far[f], at, ag_last_error());
            }
        ok(!ag_gather(ag_zeros(AG_SHAPE(3, 0), AG_F32), 1, ag_zeros(AG_SHAPE(3, 2), AG_I64)) &&
               fails(AG_ERR_INDEX, "gather: index 0 is out of bounds for dim 1 with size 0 (input shape [3, 0])"),
           "gather from an empty dim: %s", ag_last_error());
    }
    ok(!ag_gather(x, 1, ag_zeros(AG_SHAPE(3, 1), AG_F32)) && fails(AG_ERR_DTYPE, "gather: index must be an int64 tensor, got float32"),
       "gather with a float index: %s", ag_last_error());
    ok(!ag_gather(x, 1, i64(AG_SHAPE(3), (int64_t[]){0, 1, 2})) &&
           fails(AG_ERR_SHAPE, "gather: index [3] must have as many dims as input [3, 5]"),
       "gather with an index of fewer dims: %s", ag_last_error());
    ok(!ag_gather(x, 1, ag_zeros(AG_SHAPE(4, 1), AG_I64)) &&
           fails(AG_ERR_SHAPE, "gather: index [4, 1] is larger than input [3, 5] at dim 0"),
       "gather with an index larger than x off dim: %s", ag_last_error());
    ok(!ag_gather(x, 2, ag_zeros(AG_SHAPE(3, 1), AG_I64)) && fails(AG_ERR_INDEX, "gather: dim 2 out of range for a tensor of 2 dims (expected -2 to 1)"),
       "gather with a bad dim: %s", ag_last_error());

    ag_tensor *src = ag_ones(AG_SHAPE(3, 1), AG_F64);
    ok(!ag_scatter_add(x, 0, i64(AG_SHAPE(3, 1), (int64_t[]){0, 3, 1}), src) &&
           fails(AG_ERR_INDEX, "scatter_add: index 3 is out of bounds for dim 0 with size 3 (input shape [3, 5])"),
       "scatter_add out of range: %s", ag_last_error());
    ok(!ag_scatter_add(x, 0, i64(AG_SHAPE(3, 1), (int64_t[]){0, -2, 1}), src) && ag_last_status() == AG_ERR_INDEX &&
           strstr(ag_last_error(), "index -2 is out of bounds"),
       "scatter_add rejects a negative index: %s", ag_last_error());
    ok(!ag_scatter_add(x, 0, mask(AG_SHAPE(3, 1), (bool[]){0, 0, 0}), src) &&
           fails(AG_ERR_DTYPE, "scatter_add: index must be an int64 tensor, got bool"),
       "scatter_add with a bool index: %s", ag_last_error());
    ok(!ag_scatter_add(x, 0, ag_zeros(AG_SHAPE(3, 1), AG_I64), ag_ones(AG_SHAPE(3, 1), AG_F32)) &&
           fails(AG_ERR_DTYPE, "scatter_add: src is float32 but the input is float64 (convert one with ag_to_dtype)"),
       "scatter_add with src of another dtype: %s", ag_last_error());
    ok(!ag_scatter_add(x, 0, ag_zeros(AG_SHAPE(3, 2), AG_I64), src) &&
           fails(AG_ERR_SHAPE, "scatter_add: index [3, 2] is larger than src [3, 1] at dim 1"),
       "scatter_add with an index larger than src: %s", ag_last_error());

    ok(!ag_index_select(x, 0, i64(AG_SHAPE(2), (int64_t[]){1, 3})) &&
           fails(AG_ERR_INDEX, "index_select: index 3 is out of bounds for dim 0 with size 3 (input shape [3, 5])"),
       "index_select out of range: %s", ag_last_error());
    ok(!ag_index_select(x, 1, i64(AG_SHAPE(1), (int64_t[]){-1})) && ag_last_status() == AG_ERR_INDEX &&
           strstr(ag_last_error(), "index_select: index -1 is out of bounds for dim 1 with size 5"),
       "index_select rejects a negative index: %s", ag_last_error());
    ok(!ag_index_select(x, 0, ag_zeros(AG_SHAPE(2, 1), AG_I64)) &&
           fails(AG_ERR_SHAPE, "index_select: index must be 1-D (or 0-d), got shape [2, 1]"),
       "index_select with a 2-d index: %s", ag_last_error());
    ok(!ag_index_select(x, 0, ag_zeros(AG_SHAPE(2), AG_F64)) &&
           fails(AG_ERR_DTYPE, "index_select: index must be an int64 tensor, got float64"),
       "index_select with a float index: %s", ag_last_error());

    ag_tensor *a = ag_zeros(AG_SHAPE(2, 3), AG_F64), *b = ag_zeros(AG_SHAPE(3, 3), AG_F64);
    ok(!ag_cat((ag_tensor *[]){a, b}, 2, 1) &&
           fails(AG_ERR_SHAPE, "cat: sizes of tensors must match except in dim 1: tensor 0 has shape [2, 3] but tensor 1 "
                               "has shape [3, 3]"),
       "cat shape mismatch: %s", ag_last_error());
    ok(!ag_cat((ag_tensor *[]){a, ag_zeros(AG_SHAPE(6), AG_F64)}, 2, 0) && ag_last_status() == AG_ERR_SHAPE &&
           strstr(ag_last_error(), "tensor 1 has shape [6]"),
       "cat of different ranks: %s", ag_last_error());
    ok(!ag_cat((ag_tensor *[]){a, ag_zeros(AG_SHAPE(2, 3), AG_F32)}, 2, 0) &&
           fails(AG_ERR_DTYPE, "cat: expected all tensors to have the same dtype, got float64 (tensor 0) and float32 (tensor 1)"),
       "cat dtype mismatch: %s", ag_last_error());
    ok(!ag_cat((ag_tensor *[]){a, ag_scalar(1, AG_F64)}, 2, 0) &&
           fails(AG_ERR_SHAPE, "cat: zero-dimensional tensor (at position 1) cannot be concatenated"),
       "cat of a 0-d tensor: %s", ag_last_error());
    ok(!ag_cat(NULL, 0, 0) && fails(AG_ERR_ARG, "cat: expected a non-empty list of tensors, got 0"), "cat of nothing: %s",
       ag_last_error());
    ok(!ag_cat((ag_tensor *[]){a, b}, 2, 2) && fails(AG_ERR_INDEX, "cat: dim 2 out of range for a tensor of 2 dims (expected -2 to 1)"),
       "cat with a bad dim: %s", ag_last_error());
    ok(!ag_stack((ag_tensor *[]){a, b}, 2, 0) &&
           fails(AG_ERR_SHAPE, "stack: expects each tensor to be equal size, but got [2, 3] at entry 0 and [3, 3] at entry 1"),
       "stack shape mismatch: %s", ag_last_error());
    ok(!ag_stack((ag_tensor *[]){a, a}, 2, 3) && fails(AG_ERR_INDEX, "stack: dim 3 out of range for a tensor of 3 dims (expected -3 to 2)"),
       "stack with a bad dim: %s", ag_last_error());

    ag_tensor *v[4];
    ok(ag_split(a, 0, 0, v, 4) == -1 &&
           fails(AG_ERR_ARG, "split: split_size can only be 0 if dim 0 is empty, but it has size 2 (shape [2, 3])"),
       "split by 0 fails: %s", ag_last_error());
    ok(ag_split(a, -1, 0, v, 4) == -1 && fails(AG_ERR_ARG, "split: split_size must be non-negative, got -1"),
       "split by a negative size: %s", ag_last_error());
    ok(ag_split(ag_scalar(1, AG_F64), 1, 0, v, 4) == -1 && fails(AG_ERR_SHAPE, "split: expects at least a 1-dimensional tensor"),
       "split of a 0-d tensor: %s", ag_last_error());
    ok(ag_split(a, 1, 0, NULL, 2) == -1 && ag_last_status() == AG_ERR_ARG, "split into a NULL array fails");
    ok(ag_chunk(a, 0, 0, v, 4) == -1 && fails(AG_ERR_ARG, "chunk: number of chunks must be greater than 0, got 0"),
       "chunk into 0: %s", ag_last_error());
    ok(ag_chunk(a, 2, 5, v, 4) == -1 && fails(AG_ERR_INDEX, "chunk: dim 5 out of range for a tensor of 2 dims (expected -2 to 1)"),
       "chunk with a bad dim: %s", ag_last_error());
    ok(!ag_argmax(a, -3, false) && fails(AG_ERR_INDEX, "argmax: dim -3 out of range for a tensor of 2 dims (expected -2 to 1)"),
       "a reduction with a bad dim gives the same message as the views: %s", ag_last_error());

    ok(!ag_where(ag_zeros(AG_SHAPE(2, 3), AG_F64), a, a) && fails(AG_ERR_DTYPE, "where: condition must be a bool tensor, got float64"),
       "where with a float condition: %s", ag_last_error());
    ag_tensor *c = mask(AG_SHAPE(2), (bool[]){1, 0});
    ok(!ag_where(c, a, a) && ag_last_status() == AG_ERR_SHAPE && strstr(ag_last_error(), "where: shapes [2] and [2, 3]"),
       "where with a condition that does not broadcast: %s", ag_last_error());
    ok(!ag_where(ag_zeros(AG_SHAPE(1), AG_BOOL), a, ag_zeros(AG_SHAPE(3), AG_F32)) &&
           fails(AG_ERR_DTYPE, "where: a is float64 but b is float32 (convert one with ag_to_dtype)"),
       "where with a and b of different dtypes: %s", ag_last_error());
    ok(!ag_masked_fill(a, ag_zeros(AG_SHAPE(3), AG_I64), 0) && fails(AG_ERR_DTYPE, "masked_fill: mask must be a bool tensor, got int64"),
       "masked_fill with an int64 mask: %s", ag_last_error());
    ok(!ag_masked_fill(a, c, 0) && fails(AG_ERR_SHAPE, "masked_fill: mask of shape [2] does not broadcast to the input's shape [2, 3]"),
       "masked_fill with a mask that does not broadcast: %s", ag_last_error());

    ok(!ag_one_hot(i64(AG_SHAPE(2), (int64_t[]){1, 4}), 3) &&
           fails(AG_ERR_INDEX, "one_hot: class value 4 is out of bounds for num_classes 3 (indices shape [2])"),
       "one_hot class too large: %s", ag_last_error());
    ok(!ag_one_hot(i64(AG_SHAPE(2), (int64_t[]){1, -1}), -1) && fails(AG_ERR_INDEX, "one_hot: class values must be non-negative, got -1"),
       "one_hot negative class: %s", ag_last_error());
    ok(!ag_one_hot(i64(AG_SHAPE(0), NULL), -1) && ag_last_status() == AG_ERR_VALUE, "one_hot of nothing cannot infer classes: %s",
       ag_last_error());
    ok(!ag_one_hot(ag_zeros(AG_SHAPE(2), AG_F32), 3) && fails(AG_ERR_DTYPE, "one_hot: indices must be an int64 tensor, got float32"),
       "one_hot of floats: %s", ag_last_error());
    ok(!ag_one_hot(ag_zeros(AG_SHAPE(2), AG_I64), -2) && ag_last_status() == AG_ERR_ARG, "one_hot with num_classes -2 fails");

    ok(!ag_eq(a, ag_zeros(AG_SHAPE(3), AG_F32)) && fails(AG_ERR_DTYPE, "eq: dtypes float64 and float32 differ (convert one with ag_to_dtype)"),
       "eq of different dtypes: %s", ag_last_error());
    ok(!ag_lt(c, c) && fails(AG_ERR_DTYPE, "lt: expected float32, float64 or int64 operands, got bool (convert with ag_to_dtype)"),
       "lt of bool tensors: %s", ag_last_error());
    ok(!ag_gt(a, b) && ag_last_status() == AG_ERR_SHAPE && strstr(ag_last_error(), "gt: shapes [2, 3] and [3, 3]"),
       "gt of shapes that do not broadcast: %s", ag_last_error());

    /* NULL inputs pass through without a new message */
    ag_clear_error();
    ag_gather(x, 1, bad);
    bool nulls = !ag_cat((ag_tensor *[]){a, NULL}, 2, 0) && !ag_stack((ag_tensor *[]){NULL}, 1, 0) &&
                 ag_split(NULL, 1, 0, v, 4) == -1 && ag_chunk(NULL, 2, 0, v, 4) == -1 && !ag_index_select(NULL, 0, bad) &&
                 !ag_gather(x, 1, NULL) && !ag_scatter_add(x, 0, bad, NULL) && !ag_where(NULL, a, a) &&
                 !ag_masked_fill(NULL, c, 1) && !ag_one_hot(NULL, 2) && !ag_eq(a, NULL) && !ag_ge(NULL, a);
    ok(nulls && ag_last_status() == AG_ERR_INDEX && strstr(ag_last_error(), "gather: index 7"),
       "NULL inputs give NULL and keep the first message: %s", ag_last_error());

    /* an index modified in place before backward is caught */
    ag_tensor *w = ag_requires_grad_(ag_ones(AG_SHAPE(3, 5), AG_F64), true);
    ag_tensor *idx = i64(AG_SHAPE(3, 1), (int64_t[]){0, 4, 1});
    ag_tensor *gy = ag_sum(ag_gather(w, 1, idx));
    ag_fill_(idx, 2);
    ok(ag_backward(gy) == AG_ERR_GRAPH && strstr(ag_last_error(), "GatherBackward0") && strstr(ag_last_error(), "in-place"),
       "an index modified in place fails backward: %s", ag_last_error());
    ag_tensor *mk = mask(AG_SHAPE(5), (bool[]){1, 0, 1, 0, 1});
    ag_tensor *my = ag_sum(ag_masked_fill(w, mk, 0));
    ag_fill_(mk, 0);
    ok(ag_backward(my) == AG_ERR_GRAPH && strstr(ag_last_error(), "MaskedFillBackward0"),
       "a mask modified in place fails backward: %s", ag_last_error());
    ag_scope_end();
}

/* scatter_reduce prod of in[1] into in[0] along dim 0 at the targets ctx (int64), with
 * include_self: the reduction with zeros, whose partial derivatives are special cases. */
static ag_tensor *prod_self(ag_tensor *const *in, int n, void *ctx) {
    (void)n;
    return ag_scatter_reduce(in[0], 0, ctx, in[1], AG_SCATTER_PROD, true);
}
static ag_tensor *prod_noself(ag_tensor *const *in, int n, void *ctx) {
    (void)n;
    return ag_scatter_reduce(in[0], 0, ctx, in[1], AG_SCATTER_PROD, false);
}

/* Second derivatives of scatter_reduce prod where zeros are sent (one, two or three to a
 * target) and where x is 0: the product of the other contributors, the first derivative,
 * is 0 there in value but not in its derivatives (two zeros at one target: d²y/dz1dz2 is
 * the product of the rest, which PyTorch refuses to compute). */
static void test_scatter_reduce_zeros(void) {
    ag_scope_begin();
    /* targets 0: 1.5, 0, 0, 2 (two zeros);  1: 0, -3 (one zero);  2: 0, 0, 0, 0.5 (three);  3: none */
    static const int64_t targets[10] = {0, 0, 1, 0, 2, 1, 2, 0, 2, 2};
    static const double src[10] = {1.5, 0, 0, 0, 0, -3, 0, 2, 0.5, 0};
    static const double x[4] = {0.7, 0, -1.25, 2};
    ag_tensor *index = i64(AG_SHAPE(10), targets);
    const ag_fn fns[2] = {prod_self, prod_noself};
    for (int k = 0; k < 2; k++) {
        ag_tensor *in[2] = {leaf(AG_SHAPE(4), x), leaf(AG_SHAPE(10), src)};
        ag_gradcheck_opts quiet = {0, 0, 0, true};
        ag_status st = ag_gradgradcheck(fns[k], index, in, 2, &quiet, NULL);
        ok(st == AG_OK, "scatter_reduce prod %s include_self at zeros: gradgradcheck%s%s", k ? "without" : "with",
           st ? ": " : "", st ? ag_last_error() : "");
    }
    ag_scope_end();
}

/* gather and index_select along each dim of a [37, 45] matrix of each element size against a
 * plain loop: runs of 37 and 45 (eight-element hardware gathers and a scalar tail where AVX-512
 * runs), a row of index along the last dim and across it. */
static void test_gather_runs(void) {
    ag_scope_begin();
    static const ag_dtype dts[] = {AG_F32, AG_F64, AG_I64};
    for (int t = 0; t < 3; t++)
        for (int d = 0; d < 2; d++) {
            const int64_t R = 37, C = 45, m = d ? C : R;
            ag_tensor *x = ag_to_dtype(ag_arange(0, R * C, 1, AG_F64), dts[t]);
            x = ag_reshape(x, AG_SHAPE(R, C));
            ag_tensor *index = ag_empty(AG_SHAPE(R, C), AG_I64), *row = ag_empty(AG_SHAPE(C), AG_I64);
            int64_t *iv = ag_data(index), *rv = ag_data(row);
            for (int64_t k = 0; k < R * C; k++) iv[k] = (k * 7919 + 13) % m;
            for (int64_t k = 0; k < C; k++) rv[k] = (k * 31 + 5) % m;
            ag_tensor *g = ag_to_dtype(ag_gather(x, d, index), AG_F64);
            ag_tensor *s = ag_to_dtype(ag_index_select(x, d, row), AG_F64);
            bool fine = g && s;
            const double *gv = fine ? ag_data(g) : NULL, *sv = fine ? ag_data(s) : NULL;
            for (int64_t i = 0; fine && i < R; i++)
                for (int64_t j = 0; j < C; j++) {
                    const int64_t k = iv[i * C + j];
                    fine = fine && gv[i * C + j] == (double)(d ? i * C + k : k * C + j);
                    if (d) fine = fine && sv[i * C + j] == (double)(i * C + rv[j]);
                }
            if (fine && !d) /* index_select along dim 0: C rows of x picked, each whole */
                for (int64_t i = 0; fine && i < C; i++)
                    for (int64_t j = 0; j < C; j++) fine = sv[i * C + j] == (double)(rv[i] * C + j);
            ok(fine, "gather and index_select along dim %d of a [37, 45] %s matrix: the plain loop's elements", d,
               ag_dtype_name(dts[t]));
        }
    ag_scope_end();
}

/* index_select along the last dim of [3000, 3, 45] with 1, 5, 16 and 17 indices (16 and fewer: a
 * row at a time; 17: the iterator's walk), the index a strided slice, each element size, on one
 * and two threads (threaded from 16 indices), against a plain loop. */
static void test_pick_rows(void) {
    ag_scope_begin();
    static const ag_dtype dts[] = {AG_F32, AG_F64, AG_I64, AG_U8, AG_BOOL};
    const int64_t R = 3000 * 3, C = 45;
    const int threads = ag_get_num_threads();
    for (int t = 0; t < 5; t++)
        for (int nt = 1; nt <= 2; nt++)
            for (int64_t len = 1; len <= 17; len += len == 1 ? 4 : len == 5 ? 11 : 1) {
                ag_set_num_threads(nt);
                ag_tensor *x = ag_reshape(ag_to_dtype(ag_arange(0, R * C, 1, AG_F64), dts[t]), AG_SHAPE(3000, 3, C));
                ag_tensor *wide = ag_empty(AG_SHAPE(2 * len), AG_I64);
                int64_t *wv = ag_data(wide);
                for (int64_t k = 0; k < 2 * len; k++) wv[k] = (k * 31 + 7) % C;
                ag_tensor *index = ag_slice(wide, 0, 1, 2 * len, 2); /* wv[1], wv[3], ... */
                ag_tensor *y = ag_to_dtype(ag_index_select(x, 2, index), AG_F64);
                bool fine = y && ag_numel(y) == R * len;
                const double *yv = fine ? ag_data(y) : NULL;
                for (int64_t r = 0; fine && r < R; r++)
                    for (int64_t i = 0; fine && i < len; i++) {
                        const int64_t v = r * C + wv[2 * i + 1];
                        const double want = dts[t] == AG_U8 ? (double)(v % 256) : dts[t] == AG_BOOL ? (v != 0) : (double)v;
                        fine = yv[r * len + i] == want;
                    }
                ok(fine, "index_select of %lld strided indices along the last dim of [3000, 3, 45] %s, %d thread(s)",
                   (long long)len, ag_dtype_name(dts[t]), nt);
            }
    ag_set_num_threads(threads);
    ag_scope_end();
}

/* The plain loop's scatter_add along dim 1 of an [R, C] e (y = x on entry), typed as T. */
#define PLAIN_SCATTER_ADD(T, e, sv, iv, R, C, n)                                             \
    for (int64_t r = 0; r < (R); r++)                                                       \
        for (int64_t i = 0; i < (n); i++) ((T *)(e))[r * (C) + (iv)[r * (n) + i]] += ((const T *)(sv))[r * (n) + i];

/* scatter_add along the last dim of [40, 3] (contiguous src and index: the put's rows, four places a
 * bounds test, ops/index.c) and from a transposed src (read from a row-major copy), float32, float64
 * and int64, rows of 1 to 13 places (groups of four and their tails) and of 45, on one and two
 * threads, against a plain loop in the same order, bit for bit: with 3 places every group of four
 * adds to a place twice, and the values' magnitudes differ, so an add out of order changes bits.  A
 * value out of bounds (3, -1, INT64_MIN) at each place of a 13-place row fails the op. */
static void test_scatter_add_rows(void) {
    ag_scope_begin();
    static const ag_dtype dts[] = {AG_F32, AG_F64, AG_I64};
    const int threads = ag_get_num_threads();
    const int64_t R = 40, C = 3;
    for (int t = 0; t < 3; t++)
        for (int nt = 1; nt <= 2; nt++)
            for (int64_t n = 1; n <= 45; n += n == 13 ? 32 : 1) {
                ag_set_num_threads(nt);
                double *xd = malloc(sizeof(double) * (size_t)(R * C)), *sd = malloc(sizeof(double) * (size_t)(R * n));
                int64_t *iv = malloc(sizeof(int64_t) * (size_t)(R * n));
                for (int64_t k = 0; k < R * C; k++) xd[k] = sin((double)k * 1.3 + 0.1) * ldexp(1, (int)(k % 11) - 5);
                for (int64_t k = 0; k < R * n; k++) {
                    sd[k] = cos((double)k * 0.9 + 0.2) * ldexp(1, (int)(k % 13) - 6);
                    iv[k] = (k * 5 + k / 7) % C;
                }
                ag_tensor *x = ag_to_dtype(f64(AG_SHAPE(R, C), xd), dts[t]);
                ag_tensor *src = ag_to_dtype(f64(AG_SHAPE(R, n), sd), dts[t]), *index = i64(AG_SHAPE(R, n), iv);
                ag_tensor *srct = ag_t(ag_contiguous(ag_t(src))); /* src's values, laid out transposed */
                ag_tensor *y = ag_scatter_add(x, 1, index, src), *yt = ag_scatter_add(x, 1, index, srct);
                const size_t es = ag_dtype_size(dts[t]), bytes = (size_t)(R * C) * es;
                char *e = malloc(bytes);
                memcpy(e, ag_data(x), bytes);
                if (dts[t] == AG_F32) {
                    PLAIN_SCATTER_ADD(float, e, ag_data(src), iv, R, C, n)
                } else if (dts[t] == AG_F64) {
                    PLAIN_SCATTER_ADD(double, e, ag_data(src), iv, R, C, n)
                } else {
                    PLAIN_SCATTER_ADD(int64_t, e, ag_data(src), iv, R, C, n)
                }
                ok(y && yt && (n == 1 || srct->stride[1] == R) && !memcmp(ag_data(y), e, bytes) &&
                       !memcmp(ag_data(ag_contiguous(yt)), e, bytes),
                   "scatter_add of rows of %lld places along dim 1 of [40, 3] %s, src contiguous and transposed, "
                   "%d thread(s): the plain loop's bits",
                   (long long)n, ag_dtype_name(dts[t]), nt);
                free(e), free(xd), free(sd), free(iv);
            }
    ag_set_num_threads(threads);
    static const int64_t far[] = {3, -1, INT64_MIN};
    for (int f = 0; f < 3; f++)
        for (int64_t at = 0; at < 13; at++) {
            ag_tensor *index = ag_zeros(AG_SHAPE(40, 13), AG_I64);
            int64_t *iv = ag_data(index);
            for (int64_t k = 0; k < 40 * 13; k++) iv[k] = k % 3;
            iv[5 * 13 + at] = far[f];
            char want[96];
            snprintf(want, sizeof want, "index %lld is out of bounds for dim 1 with size 3", (long long)far[f]);
            ok(!ag_scatter_add(ag_zeros(AG_SHAPE(40, 3), AG_F32), 1, index, ag_ones(AG_SHAPE(40, 13), AG_F32)) &&
                   ag_last_status() == AG_ERR_INDEX && strstr(ag_last_error(), want),
               "scatter_add along the last dim, %lld at place %lld of a row: %s", (long long)far[f], (long long)at,
               ag_last_error());
        }
    ag_scope_end();
}

int main(void) {
    test_gather_runs();
    test_pick_rows();
    test_scatter_add_rows();
    test_cat_stack();
    test_split_chunk();
    test_join_grads();
    test_index_ops();
    test_mask_ops();
    test_mask_runs();
    test_scatter_reduce_zeros();
    test_compare();
    test_errors();
    ok(ag_live_tensors() == 0, "no tensor outlives the tests (%ld live)", ag_live_tensors());
    return tap_done();
}

/*
 * Scans, sorting, shape and indexing ops (include/agrad/ops.h) against PyTorch
 * (test/fixtures/tensor_ops.txt, from scripts/gen_tensor_op_fixtures.py): values,
 * int64 indices and the gradient of sum(w·y), in float64 and float32, on inputs with
 * ties, NaN, zeros, odd sizes, non-contiguous layouts, empty and 0-d tensors; the same
 * gradient through the ops' backward_graph (create_graph) and their tangent rules
 * (<w, J·v> = <dx, v>), for the ops that have them; and the errors by their messages.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "agrad/agrad.h"
#include "tap.h"
#include "fixture.h"

#ifndef FIXTURES
#define FIXTURES "test/fixtures"
#endif

/* A value matches PyTorch's when |got - want| <= RTOL·max(1, |want|) (NaN matches NaN). */
#define RTOL_F64 1e-12
#define RTOL_F32 2e-6

/* Cases whose float32 results are compared with a looser tolerance, and why. */
static const struct loose {
    const char *label;
    double rtol;
    const char *why;
} loose[] = {
    {"logcumsumexp/large", 1e-4,
     "float32 outputs near 1e3 carry an error up to 6e-5, which exp(x_k - y_j) in the gradient inherits"},
};

static double f32_rtol(const char *label) {
    for (size_t i = 0; i < sizeof loose / sizeof loose[0]; i++)
        if (strcmp(loose[i].label, label) == 0) return loose[i].rtol;
    return RTOL_F32;
}

/* ---- calling an op by name with the fixture's integer arguments --------------------------------- */
typedef ag_tensor *(*op_fn)(ag_tensor *x, const int64_t *a, int na, ag_tensor **idx);

/* The case's inputs after the first (x), for the ops that take several. */
static ag_tensor *operand[3];

static ag_tensor *call_cumsum(ag_tensor *x, const int64_t *a, int na, ag_tensor **idx) {
    (void)na, (void)idx;
    return ag_cumsum(x, (int)a[0]);
}
static ag_tensor *call_cumprod(ag_tensor *x, const int64_t *a, int na, ag_tensor **idx) {
    (void)na, (void)idx;
    return ag_cumprod(x, (int)a[0]);
}

/* a: n, then n dims */
static ag_tensor *call_flip(ag_tensor *x, const int64_t *a, int na, ag_tensor **idx) {
    int dims[AG_MAX_DIMS];
    (void)na, (void)idx;
    for (int k = 0; k < a[0]; k++) dims[k] = (int)a[1 + k];
    return ag_flip(x, (int)a[0], dims);
}
/* a: n, n shifts, n dims */
static ag_tensor *call_roll(ag_tensor *x, const int64_t *a, int na, ag_tensor **idx) {
    int dims[AG_MAX_DIMS];
    (void)na, (void)idx;
    for (int k = 0; k < a[0]; k++) dims[k] = (int)a[1 + a[0] + k];
    return ag_roll(x, (int)a[0], a + 1, dims);
}
/* a: the one shift of the flattened x */
static ag_tensor *call_roll_flat(ag_tensor *x, const int64_t *a, int na, ag_tensor **idx) {
    (void)na, (void)idx;
    return ag_roll(x, 1, a, NULL);
}
static ag_tensor *call_tril(ag_tensor *x, const int64_t *a, int na, ag_tensor **idx) {
    (void)na, (void)idx;
    return ag_tril(x, a[0]);
}
static ag_tensor *call_triu(ag_tensor *x, const int64_t *a, int na, ag_tensor **idx) {
    (void)na, (void)idx;
    return ag_triu(x, a[0]);
}
/* a: n, then n repeats */
static ag_shape shape_arg(const int64_t *a) {
    ag_shape s = {(int)a[0], {0}};
    for (int k = 0; k < a[0]; k++) s.dim[k] = a[1 + k];
    return s;
}
static ag_tensor *call_repeat(ag_tensor *x, const int64_t *a, int na, ag_tensor **idx) {
    (void)na, (void)idx;
    return ag_repeat(x, shape_arg(a));
}
static ag_tensor *call_tile(ag_tensor *x, const int64_t *a, int na, ag_tensor **idx) {
    (void)na, (void)idx;
    return ag_tile(x, shape_arg(a));
}

/* a: dim, descending */
static ag_tensor *call_sort(ag_tensor *x, const int64_t *a, int na, ag_tensor **idx) {
    (void)na;
    return ag_sort(x, (int)a[0], a[1] != 0, idx);
}
/* a: dim, descending; the indices are both the result and the indices */
static ag_tensor *call_argsort(ag_tensor *x, const int64_t *a, int na, ag_tensor **idx) {
    (void)na;
    ag_tensor *i = ag_argsort(x, (int)a[0], a[1] != 0);
    if (idx) *idx = i;
    return i;
}
/* a: k, dim, largest */
static ag_tensor *call_topk(ag_tensor *x, const int64_t *a, int na, ag_tensor **idx) {
    (void)na;
    return ag_topk(x, a[0], (int)a[1], a[2] != 0, true, idx);
}

/* a: offset, dim1, dim2 */
static ag_tensor *call_diagonal(ag_tensor *x, const int64_t *a, int na, ag_tensor **idx) {
    (void)na, (void)idx;
    return ag_diagonal(x, a[0], (int)a[1], (int)a[2]);
}
static ag_tensor *call_diag_embed(ag_tensor *x, const int64_t *a, int na, ag_tensor **idx) {
    (void)na, (void)idx;
    return ag_diag_embed(x, a[0], (int)a[1], (int)a[2]);
}
static ag_tensor *call_diag(ag_tensor *x, const int64_t *a, int na, ag_tensor **idx) {
    (void)na, (void)idx;
    return ag_diag(x, a[0]);
}
/* a: n, n sources, n destinations */
static ag_tensor *call_movedim(ag_tensor *x, const int64_t *a, int na, ag_tensor **idx) {
    int src[AG_MAX_DIMS], dst[AG_MAX_DIMS];
    (void)na, (void)idx;
    for (int k = 0; k < a[0]; k++) src[k] = (int)a[1 + k], dst[k] = (int)a[1 + a[0] + k];
    return ag_movedim(x, (int)a[0], src, dst);
}

static ag_tensor *call_logcumsumexp(ag_tensor *x, const int64_t *a, int na, ag_tensor **idx) {
    (void)na, (void)idx;
    return ag_logcumsumexp(x, (int)a[0]);
}
static ag_tensor *call_cummax(ag_tensor *x, const int64_t *a, int na, ag_tensor **idx) {
    (void)na;
    return ag_cummax(x, (int)a[0], idx);
}
static ag_tensor *call_cummin(ag_tensor *x, const int64_t *a, int na, ag_tensor **idx) {
    (void)na;
    return ag_cummin(x, (int)a[0], idx);
}

/* a: k, dim, keepdim */
static ag_tensor *call_kthvalue(ag_tensor *x, const int64_t *a, int na, ag_tensor **idx) {
    (void)na;
    return ag_kthvalue(x, a[0], (int)a[1], a[2] != 0, idx);
}
/* a: dim, keepdim */
static ag_tensor *call_median_dim(ag_tensor *x, const int64_t *a, int na, ag_tensor **idx) {
    (void)na;
    return ag_median_dim(x, (int)a[0], a[1] != 0, idx);
}
static ag_tensor *call_median(ag_tensor *x, const int64_t *a, int na, ag_tensor **idx) {
    (void)a, (void)na, (void)idx;
    return ag_median(x);
}

/* a: keepdim, n, then n dims */
static ag_tensor *call_amax(ag_tensor *x, const int64_t *a, int na, ag_tensor **idx) {
    int dims[AG_MAX_DIMS];
    (void)na, (void)idx;
    for (int k = 0; k < a[1]; k++) dims[k] = (int)a[2 + k];
    return ag_amax(x, (int)a[1], dims, a[0] != 0);
}
static ag_tensor *call_amin(ag_tensor *x, const int64_t *a, int na, ag_tensor **idx) {
    int dims[AG_MAX_DIMS];
    (void)na, (void)idx;
    for (int k = 0; k < a[1]; k++) dims[k] = (int)a[2 + k];
    return ag_amin(x, (int)a[1], dims, a[0] != 0);
}

static ag_tensor *call_any(ag_tensor *x, const int64_t *a, int na, ag_tensor **idx) {
    (void)a, (void)na, (void)idx;
    return ag_any(x);
}
static ag_tensor *call_all(ag_tensor *x, const int64_t *a, int na, ag_tensor **idx) {
    (void)a, (void)na, (void)idx;
    return ag_all(x);
}
/* a: dim, keepdim */
static ag_tensor *call_any_dim(ag_tensor *x, const int64_t *a, int na, ag_tensor **idx) {
    (void)na, (void)idx;
    return ag_any_dim(x, (int)a[0], a[1] != 0);
}
static ag_tensor *call_all_dim(ag_tensor *x, const int64_t *a, int na, ag_tensor **idx) {
    (void)na, (void)idx;
    return ag_all_dim(x, (int)a[0], a[1] != 0);
}
/* a: n, then n dims */
static ag_tensor *call_count_nonzero(ag_tensor *x, const int64_t *a, int na, ag_tensor **idx) {
    int dims[AG_MAX_DIMS];
    (void)na, (void)idx;
    for (int k = 0; k < a[0]; k++) dims[k] = (int)a[1 + k];
    return ag_count_nonzero(x, (int)a[0], dims);
}

static ag_tensor *call_bmm(ag_tensor *x, const int64_t *a, int na, ag_tensor **idx) {
    (void)a, (void)na, (void)idx;
    return ag_bmm(x, operand[0]);
}
static ag_tensor *call_outer(ag_tensor *x, const int64_t *a, int na, ag_tensor **idx) {
    (void)a, (void)na, (void)idx;
    return ag_outer(x, operand[0]);
}
/* a: beta·4, alpha·4 */
static ag_tensor *call_addmm(ag_tensor *x, const int64_t *a, int na, ag_tensor **idx) {
    (void)na, (void)idx;
    return ag_addmm(x, operand[0], operand[1], (double)a[0] / 4, (double)a[1] / 4);
}
static ag_tensor *call_baddbmm(ag_tensor *x, const int64_t *a, int na, ag_tensor **idx) {
    (void)na, (void)idx;
    return ag_baddbmm(x, operand[0], operand[1], (double)a[0] / 4, (double)a[1] / 4);
}

/* a: repeats, dim */
static ag_tensor *call_repeat_interleave(ag_tensor *x, const int64_t *a, int na, ag_tensor **idx) {
    (void)na, (void)idx;
    return ag_repeat_interleave(x, a[0], (int)a[1]);
}
/* a: dim, n, n counts */
static ag_tensor *call_repeat_interleave_tensor(ag_tensor *x, const int64_t *a, int na, ag_tensor **idx) {
    (void)na, (void)idx;
    return ag_repeat_interleave_tensor(x, ag_from_data(a + 2, AG_SHAPE(a[1]), AG_I64), (int)a[0]);
}

/* An int64 tensor from fixture arguments "<ndim> <shape> <values>"; *used: how many they take. */
static ag_tensor *index_arg(const int64_t *a, int *used) {
    ag_shape s = {(int)a[0], {0}};
    int64_t n = 1;
    for (int k = 0; k < s.ndim; k++) n *= s.dim[k] = a[1 + k];
    if (used) *used = 1 + s.ndim + (int)n;
    return ag_from_data(a + 1 + s.ndim, s, AG_I64);
}
/* A bool mask from "<ndim> <shape> <0/1 values>". */
static ag_tensor *mask_arg(const int64_t *a) { return ag_to_dtype(index_arg(a, NULL), AG_BOOL); }

/* a: dim, alpha·4, n, n indices */
static ag_tensor *call_index_add(ag_tensor *x, const int64_t *a, int na, ag_tensor **idx) {
    (void)na, (void)idx;
    return ag_index_add(x, (int)a[0], ag_from_data(a + 3, AG_SHAPE(a[2]), AG_I64), operand[0], (double)a[1] / 4);
}
/* a: dim, n, n indices */
static ag_tensor *call_index_copy(ag_tensor *x, const int64_t *a, int na, ag_tensor **idx) {
    (void)na, (void)idx;
    return ag_index_copy(x, (int)a[0], ag_from_data(a + 2, AG_SHAPE(a[1]), AG_I64), operand[0]);
}
/* a: dim, value·4, n, n indices */
static ag_tensor *call_index_fill(ag_tensor *x, const int64_t *a, int na, ag_tensor **idx) {
    (void)na, (void)idx;
    return ag_index_fill(x, (int)a[0], ag_from_data(a + 3, AG_SHAPE(a[2]), AG_I64), (double)a[1] / 4);
}
/* a: dim, index */
static ag_tensor *call_scatter(ag_tensor *x, const int64_t *a, int na, ag_tensor **idx) {
    (void)na, (void)idx;
    return ag_scatter(x, (int)a[0], index_arg(a + 1, NULL), operand[0]);
}
/* a: dim, value·4, index */
static ag_tensor *call_scatter_value(ag_tensor *x, const int64_t *a, int na, ag_tensor **idx) {
    (void)na, (void)idx;
    return ag_scatter_value(x, (int)a[0], index_arg(a + 2, NULL), (double)a[1] / 4);
}
/* a: dim, reduction, include_self, index */
static ag_tensor *call_scatter_reduce(ag_tensor *x, const int64_t *a, int na, ag_tensor **idx) {
    (void)na, (void)idx;
    return ag_scatter_reduce(x, (int)a[0], index_arg(a + 3, NULL), operand[0], (ag_scatter_reduction)a[1], a[2] != 0);
}
/* a: index */
static ag_tensor *call_take(ag_tensor *x, const int64_t *a, int na, ag_tensor **idx) {
    (void)na, (void)idx;
    return ag_take(x, index_arg(a, NULL));
}
/* a: accumulate, index */
static ag_tensor *call_put(ag_tensor *x, const int64_t *a, int na, ag_tensor **idx) {
    (void)na, (void)idx;
    return ag_put(x, index_arg(a + 1, NULL), operand[0], a[0] != 0);
}
/* a: mask */
static ag_tensor *call_masked_select(ag_tensor *x, const int64_t *a, int na, ag_tensor **idx) {
    (void)na, (void)idx;
    return ag_masked_select(x, mask_arg(a));
}
static ag_tensor *call_masked_scatter(ag_tensor *x, const int64_t *a, int na, ag_tensor **idx) {
    (void)na, (void)idx;
    return ag_masked_scatter(x, mask_arg(a), operand[0]);
}
/* the indices are both the result and the indices */
static ag_tensor *call_nonzero(ag_tensor *x, const int64_t *a, int na, ag_tensor **idx) {
    (void)a, (void)na;
    ag_tensor *i = ag_nonzero(x);
    if (idx) *idx = i;
    return i;
}
static ag_tensor *call_argwhere(ag_tensor *x, const int64_t *a, int na, ag_tensor **idx) {
    (void)a, (void)na;
    ag_tensor *i = ag_argwhere(x);
    if (idx) *idx = i;
    return i;
}

/* The case's inputs as one array (x first). */
static int gather_inputs(ag_tensor *x, ag_tensor **all) {
    int n = 1;
    all[0] = x;
    while (n < 4 && operand[n - 1]) all[n] = operand[n - 1], n++;
    return n;
}
/* a: n, then the equation's n character codes */
static ag_tensor *call_einsum(ag_tensor *x, const int64_t *a, int na, ag_tensor **idx) {
    char eq[64] = {0};
    ag_tensor *all[4];
    (void)na, (void)idx;
    for (int k = 0; k < a[0] && k < 63; k++) eq[k] = (char)a[1 + k];
    return ag_einsum(eq, all, gather_inputs(x, all));
}
/* a: ndims, lists given, then ndims dims of a and ndims of b */
static ag_tensor *call_tensordot(ag_tensor *x, const int64_t *a, int na, ag_tensor **idx) {
    int da[AG_MAX_DIMS], db[AG_MAX_DIMS];
    (void)na, (void)idx;
    for (int k = 0; k < a[0] && a[1]; k++) da[k] = (int)a[2 + k], db[k] = (int)a[2 + a[0] + k];
    return ag_tensordot(x, operand[0], (int)a[0], a[1] ? da : NULL, a[1] ? db : NULL);
}
static ag_tensor *call_kron(ag_tensor *x, const int64_t *a, int na, ag_tensor **idx) {
    (void)a, (void)na, (void)idx;
    return ag_kron(x, operand[0]);
}
/* a: k, dim0, dim1 */
static ag_tensor *call_rot90(ag_tensor *x, const int64_t *a, int na, ag_tensor **idx) {
    (void)na, (void)idx;
    return ag_rot90(x, a[0], (const int[]){(int)a[1], (int)a[2]});
}
/* a: dim; the pieces joined along dim 0 */
static ag_tensor *call_unbind(ag_tensor *x, const int64_t *a, int na, ag_tensor **idx) {
    ag_tensor *pieces[16];
    (void)na, (void)idx;
    int n = ag_unbind(x, (int)a[0], pieces, 16);
    return n > 0 && n <= 16 ? ag_cat(pieces, n, 0) : NULL;
}
/* a: xy; the grids stacked along a new dim 0 */
static ag_tensor *call_meshgrid(ag_tensor *x, const int64_t *a, int na, ag_tensor **idx) {
    ag_tensor *all[4], *grids[4];
    (void)na, (void)idx;
    int n = ag_meshgrid(all, gather_inputs(x, all), a[0] ? "xy" : "ij", grids);
    return n > 0 ? ag_stack(grids, n, 0) : NULL;
}
/* a: dim, start, length */
static ag_tensor *call_narrow_copy(ag_tensor *x, const int64_t *a, int na, ag_tensor **idx) {
    (void)na, (void)idx;
    return ag_narrow_copy(x, (int)a[0], a[1], a[2]);
}
/* p·4, -4 for infinity */
static double p_arg(int64_t code) { return code == -4 ? INFINITY : (double)code / 4; }
static ag_tensor *call_cdist(ag_tensor *x, const int64_t *a, int na, ag_tensor **idx) {
    (void)na, (void)idx;
    return ag_cdist(x, operand[0], p_arg(a[0]));
}
/* a: p·4, keepdim */
static ag_tensor *call_pairwise_distance(ag_tensor *x, const int64_t *a, int na, ag_tensor **idx) {
    (void)na, (void)idx;
    return ag_pairwise_distance(x, operand[0], p_arg(a[0]), 1e-6, a[1] != 0);
}
/* a: dim */
static ag_tensor *call_cosine_similarity(ag_tensor *x, const int64_t *a, int na, ag_tensor **idx) {
    (void)na, (void)idx;
    return ag_cosine_similarity(x, operand[0], (int)a[0], 1e-8);
}
/* a: p·4, dim */
static ag_tensor *call_normalize(ag_tensor *x, const int64_t *a, int na, ag_tensor **idx) {
    (void)na, (void)idx;
    return ag_lp_normalize(x, p_arg(a[0]), (int)a[1], 1e-12);
}

/* a: right; the indices are both the result and the indices */
static ag_tensor *call_searchsorted(ag_tensor *x, const int64_t *a, int na, ag_tensor **idx) {
    (void)na;
    ag_tensor *i = ag_searchsorted(x, operand[0], a[0] != 0);
    if (idx) *idx = i;
    return i;
}
static ag_tensor *call_bucketize(ag_tensor *x, const int64_t *a, int na, ag_tensor **idx) {
    (void)na;
    ag_tensor *i = ag_bucketize(x, operand[0], a[0] != 0);
    if (idx) *idx = i;
    return i;
}
/* a: minlength, weighted, n, n values; x: the weights */
static ag_tensor *call_bincount(ag_tensor *x, const int64_t *a, int na, ag_tensor **idx) {
    (void)na, (void)idx;
    return ag_bincount(ag_from_data(a + 3, AG_SHAPE(a[2]), AG_I64), a[1] ? x : NULL, a[0]);
}
/* a: bins, min·4, max·4 */
static ag_tensor *call_histc(ag_tensor *x, const int64_t *a, int na, ag_tensor **idx) {
    (void)na, (void)idx;
    return ag_histc(x, a[0], (double)a[1] / 4, (double)a[2] / 4);
}
/* the values, with the inverse as the indices */
static ag_tensor *call_unique(ag_tensor *x, const int64_t *a, int na, ag_tensor **idx) {
    (void)a, (void)na;
    return ag_unique(x, idx, NULL);
}
static ag_tensor *call_unique_consecutive(ag_tensor *x, const int64_t *a, int na, ag_tensor **idx) {
    (void)a, (void)na;
    return ag_unique_consecutive(x, idx, NULL);
}
/* the counts, as both the result and the indices */
static ag_tensor *call_unique_counts(ag_tensor *x, const int64_t *a, int na, ag_tensor **idx) {
    ag_tensor *counts;
    (void)a, (void)na;
    ag_unique(x, NULL, &counts);
    if (idx) *idx = counts;
    return counts;
}
static ag_tensor *call_unique_consecutive_counts(ag_tensor *x, const int64_t *a, int na, ag_tensor **idx) {
    ag_tensor *counts;
    (void)a, (void)na;
    ag_unique_consecutive(x, NULL, &counts);
    if (idx) *idx = counts;
    return counts;
}
/* a: q·100, dim (99: all), keepdim, interpolation */
static ag_tensor *call_quantile(ag_tensor *x, const int64_t *a, int na, ag_tensor **idx) {
    int dim = (int)a[1];
    (void)na, (void)idx;
    return ag_quantile(x, (double)a[0] / 100, a[1] == 99 ? NULL : &dim, a[2] != 0, (ag_quantile_interpolation)a[3]);
}
static ag_tensor *call_nanquantile(ag_tensor *x, const int64_t *a, int na, ag_tensor **idx) {
    int dim = (int)a[1];
    (void)na, (void)idx;
    return ag_nanquantile(x, (double)a[0] / 100, a[1] == 99 ? NULL : &dim, a[2] != 0, (ag_quantile_interpolation)a[3]);
}
/* a: dim, keepdim */
static ag_tensor *call_nanmedian_dim(ag_tensor *x, const int64_t *a, int na, ag_tensor **idx) {
    (void)na;
    return ag_nanmedian_dim(x, (int)a[0], a[1] != 0, idx);
}

/* the lower median of all non-NaN elements */
static ag_tensor *call_nanmedian(ag_tensor *x, const int64_t *a, int na, ag_tensor **idx) {
    (void)a, (void)na, (void)idx;
    return ag_nanmedian(x);
}
/* a: dim (99: None), index */
static ag_tensor *call_take_along_dim(ag_tensor *x, const int64_t *a, int na, ag_tensor **idx) {
    int dim = (int)a[0];
    (void)na, (void)idx;
    return ag_take_along_dim(x, index_arg(a + 1, NULL), a[0] == 99 ? NULL : &dim);
}
/* a: dim, keepdim */
static ag_tensor *call_mode(ag_tensor *x, const int64_t *a, int na, ag_tensor **idx) {
    (void)na;
    return ag_mode(x, (int)a[0], a[1] != 0, idx);
}
/* a: dim; the slices, with the inverse as the indices */
static ag_tensor *call_unique_dim(ag_tensor *x, const int64_t *a, int na, ag_tensor **idx) {
    (void)na;
    return ag_unique_dim(x, (int)a[0], idx, NULL);
}
/* a: dim; the counts, as both the result and the indices */
static ag_tensor *call_unique_dim_counts(ag_tensor *x, const int64_t *a, int na, ag_tensor **idx) {
    ag_tensor *counts;
    (void)na;
    ag_unique_dim(x, (int)a[0], NULL, &counts);
    if (idx) *idx = counts;
    return counts;
}

static ag_tensor *call_solve_right(ag_tensor *x, const int64_t *a, int na, ag_tensor **idx) {
    (void)a, (void)na, (void)idx;
    return ag_linalg_solve_ex(x, operand[0], false);
}

static const struct named_op {
    const char *name;
    op_fn fn;
} ops[] = {
    {"cumsum", call_cumsum},
    {"cumprod", call_cumprod},
    {"logcumsumexp", call_logcumsumexp},
    {"cummax", call_cummax},
    {"cummin", call_cummin},
    {"flip", call_flip},
    {"roll", call_roll},
    {"roll_flat", call_roll_flat},
    {"tril", call_tril},
    {"triu", call_triu},
    {"repeat", call_repeat},
    {"tile", call_tile},
    {"sort", call_sort},
    {"argsort", call_argsort},
    {"topk", call_topk},
    {"kthvalue", call_kthvalue},
    {"median_dim", call_median_dim},
    {"median", call_median},
    {"amax", call_amax},
    {"amin", call_amin},
    {"any", call_any},
    {"all", call_all},
    {"any_dim", call_any_dim},
    {"all_dim", call_all_dim},
    {"count_nonzero", call_count_nonzero},
    {"bmm", call_bmm},
    {"repeat_interleave", call_repeat_interleave},
    {"repeat_interleave_tensor", call_repeat_interleave_tensor},
    {"outer", call_outer},
    {"addmm", call_addmm},
    {"baddbmm", call_baddbmm},
    {"diagonal", call_diagonal},
    {"diag_embed", call_diag_embed},
    {"diag", call_diag},
    {"movedim", call_movedim},
    {"index_add", call_index_add},
    {"index_copy", call_index_copy},
    {"index_fill", call_index_fill},
    {"scatter", call_scatter},
    {"scatter_value", call_scatter_value},
    {"scatter_reduce", call_scatter_reduce},
    {"take", call_take},
    {"put", call_put},
    {"masked_select", call_masked_select},
    {"masked_scatter", call_masked_scatter},
    {"nonzero", call_nonzero},
    {"argwhere", call_argwhere},
    {"einsum", call_einsum},
    {"tensordot", call_tensordot},
    {"kron", call_kron},
    {"rot90", call_rot90},
    {"unbind", call_unbind},
    {"meshgrid", call_meshgrid},
    {"narrow_copy", call_narrow_copy},
    {"cdist", call_cdist},
    {"pairwise_distance", call_pairwise_distance},
    {"cosine_similarity", call_cosine_similarity},
    {"normalize", call_normalize},
    {"searchsorted", call_searchsorted},
    {"bucketize", call_bucketize},
    {"bincount", call_bincount},
    {"histc", call_histc},
    {"unique", call_unique},
    {"unique_consecutive", call_unique_consecutive},
    {"unique_counts", call_unique_counts},
    {"unique_consecutive_counts", call_unique_consecutive_counts},
    {"quantile", call_quantile},
    {"nanquantile", call_nanquantile},
    {"nanmedian_dim", call_nanmedian_dim},
    {"nanmedian", call_nanmedian},
    {"take_along_dim", call_take_along_dim},
    {"mode", call_mode},
    {"unique_dim", call_unique_dim},
    {"unique_dim_counts", call_unique_dim_counts},
    {"solve_right", call_solve_right},
};

static op_fn op_named(const char *name) {
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
        if (strcmp(ops[i].name, name) == 0) return ops[i].fn;
    return NULL;
}

/* ---- the fixture file ------------------------------------------------------------------------ */
typedef struct fx_array {
    ag_shape shape;
    int64_t n;
    double *v;
} fx_array;

typedef struct fx_case {
    char label[48], op[32];
    int64_t arg[64];
    int nargs;
    bool noncontig, has_idx;
    int nx, ndx;         /* inputs, and gradients given (0: the op has none) */
    fx_array x[3], y, idx;
    double *w, *dx[3];
} fx_case;

static fx_case *cases;
static int ncases;

/* "<ndim> <sizes> <values>" into a. */
static bool parse_array(const char *s, fx_array *a) {
    char *end;
    long nd = strtol(s, &end, 10);
    if (end == s || nd < 0 || nd > AG_MAX_DIMS) return false;
    a->shape.ndim = (int)nd;
    a->n = 1;
    for (int d = 0; d < nd; d++) {
        s = end;
        a->shape.dim[d] = strtoll(s, &end, 10);
        if (end == s || a->shape.dim[d] < 0) return false;
        a->n *= a->shape.dim[d];
    }
    return (a->v = fixture_parse_values(end, a->n)) != NULL;
}

/* One line of tensor_ops.txt into the case c (fixture_read_cases). */
static bool take_line(void *cv, char *line, void *ctx) {
    fx_case *c = cv;
    (void)ctx;
    if (!c) return false;
    if (strncmp(line, "case ", 5) == 0) {
        int used = 0;
        bool good = sscanf(line + 5, "%47s %31s%n", c->label, c->op, &used) == 2;
        char *s = line + 5 + used, *end;
        while (good && c->nargs < 64) {
            long long v = strtoll(s, &end, 10);
            if (end == s) break;
            c->arg[c->nargs++] = v;
            s = end;
        }
        return good;
    }
    if (strncmp(line, "x ", 2) == 0) {
        c->noncontig = line[2] == '1';
        return c->nx < 3 && parse_array(line + 4, &c->x[c->nx++]);
    }
    if (strncmp(line, "y ", 2) == 0) return parse_array(line + 2, &c->y);
    if (strncmp(line, "i ", 2) == 0) {
        c->has_idx = true;
        return parse_array(line + 2, &c->idx);
    }
    if (strncmp(line, "w", 1) == 0) return c->y.v && (c->w = fixture_parse_values(line + 1, c->y.n)) != NULL;
    if (strncmp(line, "dx", 2) == 0) {
        c->ndx++;
        return c->ndx <= c->nx && (c->dx[c->ndx - 1] = fixture_parse_values(line + 2, c->x[c->ndx - 1].n)) != NULL;
    }
    return strcmp(line, "end") == 0 && c->nx > 0 && c->y.v && c->w && (c->ndx == 0 || c->ndx == c->nx) &&
           op_named(c->op);
}

static void free_fixtures(void) {
    for (int i = 0; i < ncases; i++) {
        for (int k = 0; k < 3; k++) free(cases[i].x[k].v), free(cases[i].dx[k]);
        free(cases[i].y.v), free(cases[i].idx.v), free(cases[i].w);
    }
    free(cases);
}

/* ---- comparing ---------------------------------------------------------------------------------- */
/* A tensor of shape holding v (row-major) in dtype; laid out with its dims reversed and
 * permuted back when noncontig and it has 2+ dims. */
static ag_tensor *tensor_of(const fx_array *a, ag_dtype dtype, bool noncontig) {
    ag_tensor *t = ag_from_data(a->v, a->shape, AG_F64);
    if (noncontig && a->shape.ndim >= 2) {
        int perm[AG_MAX_DIMS];
        for (int d = 0; d < a->shape.ndim; d++) perm[d] = a->shape.ndim - 1 - d;
        t = ag_permute(ag_contiguous(ag_permute(t, perm)), perm);
    }
    return ag_to_dtype(t, dtype);
}

static bool same_shape(const ag_tensor *t, ag_shape s) {
    ag_shape ts = ag_shape_of(t);
    if (ts.ndim != s.ndim) return false;
    for (int d = 0; d < s.ndim; d++)
        if (ts.dim[d] != s.dim[d]) return false;
    return true;
}

/* The worst relative difference of t's values from want's n (INFINITY on a NaN mismatch). */
static double worst_error(ag_tensor *t, const double *want, int64_t n) {
    double *got = malloc(sizeof(double) * (size_t)(n + 1)), worst = 0;
    ag_copy_to(t, got, n, AG_F64);
    for (int64_t k = 0; k < n; k++) {
        double e = isnan(want[k]) || isnan(got[k]) ? (isnan(want[k]) && isnan(got[k]) ? 0 : INFINITY)
                                                   : fabs(got[k] - want[k]) / fmax(1, fabs(want[k]));
        if (e > worst) worst = e;
    }
    free(got);
    return worst;
}

/* The case's op on in[0..n-1] (an ag_fn, for ag_jvp): the operands are in[1..]. */
static ag_tensor *call_case(ag_tensor *const *in, int n, void *ctx) {
    const fx_case *c = ctx;
    for (int k = 1; k < n; k++) operand[k - 1] = in[k];
    return op_named(c->op)(in[0], c->arg, c->nargs, NULL);
}

/* Σ a·b over two tensors of one shape (in float64), and Σ |a·b| into *scale. */
static double dot(ag_tensor *a, const double *b, int64_t n, double *scale) {
    double *v = malloc(sizeof(double) * (size_t)(n + 1)), s = 0;
    ag_copy_to(a, v, n, AG_F64);
    for (int64_t k = 0; k < n; k++) {
        s += v[k] * b[k];
        *scale += fabs(v[k] * b[k]);
    }
    free(v);
    return s;
}

/* Cases whose tangent check below is not run (the identity does not hold), and why. */
static const struct tangent_exempt {
    const char *label;
    const char *why;
} tangent_exempt[] = {
    {"put/set/nc", "repeated indices without accumulate: the last write wins in the value and in the tangent "
                   "(PyTorch's rule too), while the gradient (PyTorch's) reaches every repeat"},
};

/* Cases whose tangent is known to be wrong: printed as TAP TODO while they fail (none now;
 * the NULL entry keeps the array well-formed). */
static const struct tangent_exempt tangent_todo[] = {
    {NULL, NULL},
};

static const char *listed(const struct tangent_exempt *list, size_t n, const char *label) {
    for (size_t i = 0; i < n; i++)
        if (list[i].label && strcmp(list[i].label, label) == 0) return list[i].why;
    return NULL;
}

/* The op's tangent rule, where it has one, agrees with PyTorch's gradient dx of sum(w·y):
 * <w, J·v> = <dx, v> for a random v (NaN on one side only fails). */
static void check_tangent(const fx_case *c, ag_dtype dtype, const char *dn, ag_tensor *const *in) {
    if (listed(tangent_exempt, sizeof tangent_exempt / sizeof *tangent_exempt, c->label)) return;
    const char *todo = listed(tangent_todo, sizeof tangent_todo / sizeof *tangent_todo, c->label);
    ag_tensor *x[3], *v[3], *out, *jv;
    double *vv[3] = {NULL, NULL, NULL};
    ag_manual_seed(99);
    for (int k = 0; k < c->nx; k++) {
        x[k] = ag_detach(in[k]);
        v[k] = ag_to_dtype(ag_randn(c->x[k].shape, AG_F64), dtype);
        vv[k] = malloc(sizeof(double) * (size_t)(c->x[k].n + 1));
        ag_copy_to(v[k], vv[k], c->x[k].n, AG_F64);
    }
    ag_status st = ag_jvp(call_case, (void *)c, x, c->nx, v, &out, &jv);
    if (st == AG_OK) {
        double scale = 0, lhs = dot(jv, c->w, c->y.n, &scale), rhs = 0;
        for (int k = 0; k < c->nx; k++) rhs += dot(v[k], c->dx[k], c->x[k].n, &scale);
        const double tol = dtype == AG_F64 ? 1e-10 : 1e-4;
        bool good = isnan(lhs) || isnan(rhs) ? isnan(lhs) && isnan(rhs) : fabs(lhs - rhs) <= tol * fmax(1, scale);
        if (todo && !good)
            printf("not ok %d - %s %s: <w, J v> = %.10g by the tangent rule, <dx, v> = %.10g # TODO %s\n", ++tap_count,
                   c->label, dn, lhs, rhs, todo);
        else
            ok(good, "%s %s: <w, J v> = %.10g by the tangent rule, <dx, v> = %.10g by PyTorch's gradient%s", c->label,
               dn, lhs, rhs, todo ? " (fixed: take it off tangent_todo)" : "");
    } else if (ag_last_status() != AG_ERR_GRAPH) { /* AG_ERR_GRAPH: no tangent rule yet (pending) */
        ok(false, "%s %s: the tangent: %s", c->label, dn, ag_last_error());
    }
    ag_clear_error();
    for (int k = 0; k < c->nx; k++) free(vv[k]);
}

static void check_case(const fx_case *c, ag_dtype dtype) {
    const char *dn = dtype == AG_F64 ? "f64" : "f32";
    const double rtol = dtype == AG_F64 ? RTOL_F64 : f32_rtol(c->label);
    ag_scope_begin();
    ag_tensor *in[3];
    operand[0] = operand[1] = operand[2] = NULL;
    for (int k = 0; k < c->nx; k++) {
        in[k] = tensor_of(&c->x[k], dtype, c->noncontig);
        if (c->ndx) ag_requires_grad_(in[k], true);
        if (k) operand[k - 1] = in[k];
    }
    ag_tensor *idx = NULL;
    ag_tensor *y = op_named(c->op)(in[0], c->arg, c->nargs, c->has_idx ? &idx : NULL);
    if (!ok(y && same_shape(y, c->y.shape), "%s %s: a result of PyTorch's shape%s%s", c->label, dn,
            y ? "" : ": ", y ? "" : ag_last_error())) {
        ag_scope_end();
        return;
    }
    double e = worst_error(y, c->y.v, c->y.n);
    ok(e <= rtol, "%s %s: values match PyTorch (worst relative error %.2g)", c->label, dn, e);
    if (c->has_idx) {
        bool same = idx && ag_dtype_of(idx) == AG_I64 && same_shape(idx, c->idx.shape);
        if (same) {
            int64_t *got = malloc(sizeof(int64_t) * (size_t)(c->idx.n + 1));
            ag_copy_to(idx, got, c->idx.n, AG_I64);
            for (int64_t k = 0; k < c->idx.n; k++) same = same && got[k] == (int64_t)c->idx.v[k];
            free(got);
        }
        ok(same, "%s %s: indices equal PyTorch's", c->label, dn);
    }
    if (c->ndx) {
        ag_tensor *w = ag_to_dtype(ag_from_data(c->w, c->y.shape, AG_F64), dtype), *loss = ag_sum(ag_mul(y, w));
        /* the same gradient through the op's backward_graph (create_graph), where it has one */
        ag_tensor *recorded[3] = {NULL, NULL, NULL};
        ag_grad_opts create = {.create_graph = true, .allow_unused = true};
        if (ag_autograd_grad(&loss, 1, in, c->nx, NULL, &create, recorded) == AG_OK) {
            for (int k = 0; k < c->nx; k++) {
                ag_tensor *g = recorded[k] ? recorded[k] : ag_zeros(c->x[k].shape, dtype);
                e = same_shape(g, c->x[k].shape) ? worst_error(g, c->dx[k], c->x[k].n) : INFINITY;
                ok(e <= rtol * 4, "%s %s: create_graph gradient of input %d matches PyTorch (worst relative error %.2g)",
                   c->label, dn, k, e);
            }
        } else if (ag_last_status() != AG_ERR_GRAPH) { /* AG_ERR_GRAPH: no backward_graph yet (PENDING) */
            ok(false, "%s %s: create_graph gradients: %s", c->label, dn, ag_last_error());
        }
        ag_clear_error();
        ag_status st = ag_backward(loss);
        for (int k = 0; k < c->nx; k++) {
            ag_tensor *g = ag_grad(in[k]);
            if (st == AG_OK && !g) g = ag_zeros(c->x[k].shape, dtype); /* an empty input gets no gradient */
            bool shaped = st == AG_OK && g && same_shape(g, c->x[k].shape);
            e = shaped ? worst_error(g, c->dx[k], c->x[k].n) : INFINITY;
            ok(e <= rtol * 4, "%s %s: gradient of input %d matches PyTorch (worst relative error %.2g)%s%s", c->label,
               dn, k, e, st ? ": " : "", st ? ag_last_error() : "");
        }
        check_tangent(c, dtype, dn, in);
    }
    ag_scope_end();
}

/* ---- errors -------------------------------------------------------------------------------------- */
static bool failed_with(ag_tensor *r, ag_status st, const char *msg) {
    bool good = !r && ag_last_status() == st && strcmp(ag_last_error(), msg) == 0;
    if (!good) diag("got status %d: %s", ag_last_status(), ag_last_error());
    ag_clear_error();
    return good;
}

static void test_errors(void) {
    ag_scope_begin();
    ag_tensor *x = ag_zeros(AG_SHAPE(2, 3), AG_F64), *i = ag_zeros(AG_SHAPE(3), AG_I64);
    ok(failed_with(ag_cumsum(x, 2), AG_ERR_INDEX,
                   "cumsum: dim 2 out of range for a tensor of 2 dims (expected -2 to 1)"),
       "cumsum with a dim out of range fails");
    ok(failed_with(ag_cumprod(x, -3), AG_ERR_INDEX,
                   "cumprod: dim -3 out of range for a tensor of 2 dims (expected -2 to 1)"),
       "cumprod with a dim out of range fails");
    ok(!ag_cumsum(i, 0) && ag_last_status() == AG_ERR_DTYPE, "cumsum of an int64 tensor fails with AG_ERR_DTYPE");
    ag_clear_error();
    ok(failed_with(ag_logcumsumexp(x, 3), AG_ERR_INDEX,
                   "logcumsumexp: dim 3 out of range for a tensor of 2 dims (expected -2 to 1)"),
       "logcumsumexp with a dim out of range fails");
    ag_tensor *ci = x;
    ok(!ag_cummax(x, -3, &ci) && ci == NULL && ag_last_status() == AG_ERR_INDEX,
       "cummax with a dim out of range fails and sets the indices to NULL");
    ag_clear_error();
    ok(failed_with(ag_flip(x, 2, (int[]){1, -1}), AG_ERR_ARG, "flip: dim -1 appears multiple times in the list of dims"),
       "flip with a dim given twice fails");
    ok(failed_with(ag_flip(x, 1, (int[]){2}), AG_ERR_INDEX,
                   "flip: dim 2 out of range for a tensor of 2 dims (expected -2 to 1)"),
       "flip with a dim out of range fails");
    ok(failed_with(ag_roll(x, 2, (int64_t[]){1, 1}, NULL), AG_ERR_ARG,
                   "roll: without dims, expects one shift (over the flattened tensor), got 2"),
       "roll without dims and two shifts fails");
    ok(failed_with(ag_roll(x, 0, (int64_t[]){1}, (int[]){0}), AG_ERR_ARG, "roll: expects 1 to 16 shifts, got 0"),
       "roll without shifts fails");
    ok(failed_with(ag_tril(ag_zeros(AG_SHAPE(3), AG_F32), 0), AG_ERR_SHAPE,
                   "tril: expects a tensor of at least 2 dims, got shape [3]"),
       "tril of a 1-D tensor fails");
    ok(ag_triu(x, INT64_MAX) && ag_tril(x, INT64_MIN), "tril and triu take any diagonal");
    ok(failed_with(ag_repeat(x, AG_SHAPE(2)), AG_ERR_SHAPE,
                   "repeat: 1 repeats given for a tensor of shape [2, 3] (expected 2 to 16)"),
       "repeat with fewer repeats than dims fails");
    ok(failed_with(ag_repeat(x, AG_SHAPE(1, -2)), AG_ERR_ARG, "repeat: repeats [1, -2] hold a negative count"),
       "repeat with a negative count fails");
    ok(!ag_repeat(x, AG_SHAPE((int64_t)1 << 61, 4)) && ag_last_status() == AG_ERR_SHAPE,
       "repeat to a size beyond 2^62 fails with AG_ERR_SHAPE");
    ag_clear_error();
    ok(failed_with(ag_topk(x, 4, 1, true, true, NULL), AG_ERR_INDEX,
                   "topk: k 4 is out of range for dim 1 of size 3 (shape [2, 3])"),
       "topk with k beyond the dim fails");
    ok(failed_with(ag_topk(x, -1, 0, true, true, NULL), AG_ERR_INDEX,
                   "topk: k -1 is out of range for dim 0 of size 2 (shape [2, 3])"),
       "topk with a negative k fails");
    ag_tensor *idx = x;
    ok(!ag_sort(i, 0, false, &idx) && ag_last_status() == AG_ERR_DTYPE && idx == NULL,
       "sort of an int64 tensor fails with AG_ERR_DTYPE and sets the indices to NULL");
    ag_clear_error();
    ok(failed_with(ag_argsort(x, 5, false), AG_ERR_INDEX,
                   "argsort: dim 5 out of range for a tensor of 2 dims (expected -2 to 1)"),
       "argsort with a dim out of range fails");
    ok(failed_with(ag_diagonal(x, 0, 1, -1), AG_ERR_ARG, "diagonal: diagonal dimensions cannot be identical 1, -1"),
       "diagonal of one dim twice fails");
    ok(failed_with(ag_diagonal(i, 0, 0, 1), AG_ERR_SHAPE, "diagonal: expects at least 2 dims, got 1"),
       "diagonal of a 1-D tensor fails");
    ok(ag_diagonal(x, INT64_MAX, 0, 1) && ag_diagonal(x, INT64_MIN, 0, 1), "diagonal takes any offset (empty past a corner)");
    ok(failed_with(ag_diag_embed(ag_scalar(1, AG_F64), 0, 0, 1), AG_ERR_SHAPE, "diag_embed: expects 1 to 15 dims, got shape []"),
       "diag_embed of a 0-d tensor fails");
    ok(!ag_diag_embed(x, INT64_MAX, 0, 1) && ag_last_status() == AG_ERR_SHAPE, "diag_embed too large to allocate fails");
    ag_clear_error();
    ok(failed_with(ag_diag(ag_zeros(AG_SHAPE(2, 2, 2), AG_F64), 0), AG_ERR_SHAPE, "diag: expects a 1-D or 2-D tensor, got shape [2, 2, 2]"),
       "diag of a 3-D tensor fails");
    ok(failed_with(ag_movedim(x, 2, (int[]){0, 0}, (int[]){0, 1}), AG_ERR_ARG, "movedim: repeated dim in source (0)"),
       "movedim with a repeated source fails");
    ok(failed_with(ag_movedim(x, 2, (int[]){0, 1}, (int[]){1, -1}), AG_ERR_ARG, "movedim: repeated dim in destination (-1)"),
       "movedim with a repeated destination fails");
    ok(failed_with(ag_kthvalue(x, 0, 1, false, NULL), AG_ERR_INDEX,
                   "kthvalue: k 0 is out of range for dim 1 of size 3 (shape [2, 3])"),
       "kthvalue with k 0 fails (k counts from 1)");
    ok(failed_with(ag_median_dim(ag_zeros(AG_SHAPE(2, 0), AG_F64), 1, false, NULL), AG_ERR_SHAPE,
                   "median_dim: cannot reduce the empty dim 1 of a tensor of shape [2, 0]"),
       "median along an empty dim fails");
    ok(failed_with(ag_amax(ag_zeros(AG_SHAPE(0, 3), AG_F64), 1, (int[]){0}, false), AG_ERR_SHAPE,
                   "amax: cannot reduce the empty dim 0 of a tensor of shape [0, 3]"),
       "amax over an empty dim fails");
    ok(failed_with(ag_amin(x, 2, (int[]){1, -1}, false), AG_ERR_ARG, "amin: dim -1 appears twice in the dim list"),
       "amin naming a dim twice fails");
    ag_tensor *m = ag_zeros(AG_SHAPE(3, 4), AG_F64), *b3 = ag_zeros(AG_SHAPE(2, 3, 4), AG_F64);
    ok(failed_with(ag_bmm(x, m), AG_ERR_SHAPE, "bmm: expects two 3-D tensors, got [2, 3] and [3, 4]"),
       "bmm of matrices fails");
    ok(failed_with(ag_bmm(b3, ag_zeros(AG_SHAPE(3, 4, 2), AG_F64)), AG_ERR_SHAPE,
                   "bmm: [2, 3, 4] x [3, 4, 2]: batch sizes differ (2 vs 3)"),
       "bmm with different batch sizes fails (no broadcasting)");
    ok(failed_with(ag_addmm(m, x, x, 1, 1), AG_ERR_SHAPE, "addmm: [2, 3] x [2, 3]: inner dimensions differ (3 vs 2)"),
       "addmm with inner dims that differ fails");
    ok(failed_with(ag_addmm(m, x, m, 1, 1), AG_ERR_SHAPE,
                   "addmm: input [3, 4] cannot be broadcast to the product's shape [2, 4]"),
       "addmm with an input that does not broadcast fails");
    ok(failed_with(ag_baddbmm(x, b3, ag_zeros(AG_SHAPE(2, 4, 2), AG_F32), 1, 1), AG_ERR_DTYPE,
                   "baddbmm: dtypes float64 and float32 differ (convert one with ag_to_dtype)"),
       "baddbmm with mixed dtypes fails");
    ok(failed_with(ag_outer(x, ag_zeros(AG_SHAPE(3), AG_F64)), AG_ERR_SHAPE,
                   "outer: expects two 1-D tensors, got [2, 3] and [3]"),
       "outer of a matrix fails");
    ok(failed_with(ag_repeat_interleave(x, -1, 0), AG_ERR_VALUE, "repeat_interleave: repeats must be non-negative, got -1"),
       "repeat_interleave with a negative count fails");
    ok(failed_with(ag_repeat_interleave_tensor(x, ag_ones(AG_SHAPE(3), AG_I64), 0), AG_ERR_SHAPE,
                   "repeat_interleave: repeats [3] must have one count or one per slice of dim 0 of [2, 3]"),
       "repeat_interleave with a count per slice of another dim fails");
    ok(failed_with(ag_repeat_interleave_tensor(x, ag_ones(AG_SHAPE(2), AG_F64), 0), AG_ERR_DTYPE,
                   "repeat_interleave: repeats must be int64, got float64"),
       "repeat_interleave with float counts fails");
    ok(failed_with(ag_repeat_interleave(ag_scalar(1, AG_F64), 2, 0), AG_ERR_SHAPE,
                   "repeat_interleave: expects a tensor of at least 1 dim (flatten a 0-d one)"),
       "repeat_interleave of a 0-d tensor fails, as PyTorch");
    ag_tensor *i2 = ag_from_data((int64_t[]){0, 2}, AG_SHAPE(2), AG_I64), *s22 = ag_zeros(AG_SHAPE(2, 2), AG_F64);
    ok(failed_with(ag_index_add(x, 1, i2, x, 1), AG_ERR_SHAPE,
                   "index_add: source [2, 3] must have the input's shape [2, 3] with dim 1 of size 2 (the index's length)"),
       "index_add with src not shaped by the index fails");
    ok(failed_with(ag_index_copy(x, 1, ag_from_data((int64_t[]){0, 3}, AG_SHAPE(2), AG_I64), s22), AG_ERR_INDEX,
                   "index_copy: index 3 is out of bounds for dim 1 with size 3 (input shape [2, 3])"),
       "index_copy with an index out of range fails");
    ok(failed_with(ag_index_fill(x, 0, ag_from_data((int64_t[]){-3}, AG_SHAPE(1), AG_I64), 1), AG_ERR_INDEX,
                   "index_fill: index -3 is out of bounds for dim 0 with size 2 (input shape [2, 3])"),
       "index_fill with an index below -size fails");
    ok(failed_with(ag_index_fill(x, 0, ag_zeros(AG_SHAPE(1, 1), AG_I64), 1), AG_ERR_SHAPE,
                   "index_fill: index must be 1-D (or 0-d), got shape [1, 1]"),
       "index_fill with a 2-D index fails");
    ok(failed_with(ag_scatter(x, 1, ag_from_data((int64_t[]){0, -1}, AG_SHAPE(1, 2), AG_I64), x), AG_ERR_INDEX,
                   "scatter: index -1 is out of bounds for dim 1 with size 3 (input shape [2, 3]; negative indices are not supported)"),
       "scatter with a negative index fails, as PyTorch's");
    ok(failed_with(ag_scatter_reduce(x, 1, ag_zeros(AG_SHAPE(2, 2), AG_I64), x, (ag_scatter_reduction)7, true), AG_ERR_ARG,
                   "scatter_reduce: unknown reduction 7 (expected AG_SCATTER_SUM, _PROD, _MEAN, _AMAX or _AMIN)"),
       "scatter_reduce with an unknown reduction fails");
    ok(!ag_scatter_reduce(i, 0, ag_zeros(AG_SHAPE(1), AG_I64), i, AG_SCATTER_SUM, true) && ag_last_status() == AG_ERR_DTYPE,
       "scatter_reduce of int64 tensors fails with AG_ERR_DTYPE");
    ag_clear_error();
    ok(failed_with(ag_take(x, ag_from_data((int64_t[]){6}, AG_SHAPE(1), AG_I64)), AG_ERR_INDEX,
                   "take: index 6 is out of range for a tensor of 6 elements (shape [2, 3])"),
       "take beyond the last element fails");
    ok(failed_with(ag_put(x, i2, x, false), AG_ERR_SHAPE,
                   "put: source [2, 3] and index [2] must have the same number of elements"),
       "put with one source value per index only");
    ag_tensor *s2 = ag_from_data((double[]){1, 2}, AG_SHAPE(2), AG_F64);
    ok(failed_with(ag_put(x, ag_from_data((int64_t[]){-6, -7}, AG_SHAPE(2), AG_I64), s2, true), AG_ERR_INDEX,
                   "put: index -7 is out of range for a tensor of 6 elements (shape [2, 3])"),
       "put with accumulate below -numel fails, naming the first value outside");
    ok(failed_with(ag_put(x, ag_from_data((int64_t[]){INT64_MAX, 0}, AG_SHAPE(2), AG_I64), s2, false), AG_ERR_INDEX,
                   "put: index 9223372036854775807 is out of range for a tensor of 6 elements (shape [2, 3])"),
       "put with a huge index fails");
    ag_tensor *all = ag_ones(AG_SHAPE(2, 3), AG_BOOL);
    ok(failed_with(ag_masked_scatter(x, all, s22), AG_ERR_SHAPE,
                   "masked_scatter: the mask selects 6 elements but source [2, 2] has only 4"),
       "masked_scatter with too small a source fails");
    ok(failed_with(ag_masked_select(x, i), AG_ERR_DTYPE, "masked_select: mask must be a bool tensor, got int64"),
       "masked_select with an int64 mask fails");
    ok(failed_with(ag_masked_scatter(x, all, ag_zeros(AG_SHAPE(6), AG_F32)), AG_ERR_DTYPE,
                   "masked_scatter: source is float32 but the input is float64 (convert one with ag_to_dtype)"),
       "masked_scatter with a source of another dtype fails");
    ok(!ag_scatter(NULL, 0, i, x) && !ag_take(NULL, i) && !ag_nonzero(NULL) && !ag_masked_select(x, NULL) &&
           ag_last_status() == AG_OK,
       "NULL passes through the indexing ops without a message");
    /* along an empty dim of a tensor with 2^40 lanes: nothing to walk, forward or backward */
    ag_tensor *lanes = ag_requires_grad_(ag_clone(ag_expand(ag_zeros(AG_SHAPE(1, 0), AG_F64), AG_SHAPE((int64_t)1 << 40, 0))), true);
    ag_tensor *outs[8] = {ag_cumsum(lanes, 1), ag_cumprod(lanes, 1), ag_logcumsumexp(lanes, 1), ag_cummax(lanes, 1, NULL),
                          ag_sort(lanes, 1, false, NULL), ag_topk(lanes, 0, 1, true, true, NULL),
                          ag_repeat_interleave(lanes, 2, 1), ag_flip(lanes, 1, (int[]){1})};
    bool walked = true;
    for (int k = 0; k < 8; k++) walked = walked && outs[k] && ag_backward(ag_sum(outs[k])) == AG_OK;
    ok(walked, "scans, sort, topk, repeat_interleave and flip along the empty dim of [2^40, 0] return at once, "
               "forward and backward");
    ag_clear_error();
    ag_tensor *wide = ag_expand(ag_zeros(AG_SHAPE(1, 0), AG_F64), AG_SHAPE((int64_t)1 << 40, 0));
    ag_tensor *ri = ag_repeat_interleave(wide, 3, 0);
    ok(ri && ag_size(ri, 0) == (int64_t)3 << 40 && ag_size(ri, 1) == 0,
       "repeat_interleave of an empty [2^40, 0] tensor is [3·2^40, 0] at once (no lane walked)");
    ok(!ag_repeat_interleave(x, INT64_MAX, 1) && ag_last_status() == AG_ERR_SHAPE,
       "repeat_interleave beyond 2^62 elements fails with AG_ERR_SHAPE");
    ag_clear_error();
    ok(!ag_cumprod(NULL, 0) && !ag_flip(NULL, 0, NULL) && !ag_roll(NULL, 1, (int64_t[]){1}, NULL) &&
           !ag_tril(NULL, 0) && !ag_repeat(NULL, AG_SHAPE(1)) && !ag_tile(NULL, AG_SHAPE(1)) && ag_last_status() == AG_OK,
       "NULL passes through without a message");
    ag_scope_end();
}

/* Where agrad's gradient knowingly differs from PyTorch 1.13's (docs/tensor-ops.md). */
static void test_deviations(void) {
    ag_scope_begin();
    /* amax of a lane holding NaN: dy goes to the NaNs, split evenly (PyTorch: NaN everywhere) */
    ag_tensor *x = ag_requires_grad_(ag_from_data((double[]){1, NAN, 2, NAN}, AG_SHAPE(4), AG_F64), true);
    ag_status st = ag_backward(ag_amax(x, 0, NULL, false));
    double g[4];
    ag_copy_to(ag_grad(x), g, 4, AG_F64);
    ok(st == AG_OK && g[0] == 0 && g[1] == 0.5 && g[2] == 0 && g[3] == 0.5,
       "amax's gradient of a NaN result is split over the NaNs (%g %g %g %g)", g[0], g[1], g[2], g[3]);
    /* logcumsumexp at an input of -inf: gradient 0 (PyTorch: NaN) */
    ag_tensor *z = ag_requires_grad_(ag_from_data((double[]){-INFINITY, 1, 3}, AG_SHAPE(3), AG_F64), true);
    st = ag_backward(ag_sum(ag_logcumsumexp(z, 0)));
    ag_copy_to(ag_grad(z), g, 3, AG_F64);
    ok(st == AG_OK && g[0] == 0 && isfinite(g[1]) && isfinite(g[2]),
       "logcumsumexp's gradient at -inf is 0 (%g %g %g)", g[0], g[1], g[2]);
    /* scatter_reduce amax without include_self, x tying the result: x takes no part, so the one
     * src value gets all of dy (PyTorch 1.13 counts the tie with x and gives it half) */
    ag_tensor *sx = ag_requires_grad_(ag_from_data((double[]){5, 1}, AG_SHAPE(2), AG_F64), true);
    ag_tensor *ss = ag_requires_grad_(ag_from_data((double[]){5}, AG_SHAPE(1), AG_F64), true);
    st = ag_backward(ag_sum(ag_scatter_reduce(sx, 0, ag_zeros(AG_SHAPE(1), AG_I64), ss, AG_SCATTER_AMAX, false)));
    ok(st == AG_OK && ag_item(ag_grad(ss)) == 1 && ag_item(ag_select(ag_grad(sx), 0, 0)) == 0,
       "scatter_reduce amax without self gives src all of dy on a tie with x (%g)", ag_item(ag_grad(ss)));
    /* scatter_reduce amax with a NaN sent: dy goes to the NaN (PyTorch: NaN) */
    ag_tensor *sn = ag_requires_grad_(ag_from_data((double[]){NAN, 2}, AG_SHAPE(2), AG_F64), true);
    st = ag_backward(ag_sum(ag_scatter_reduce(sx, 0, ag_zeros(AG_SHAPE(2), AG_I64), sn, AG_SCATTER_AMAX, true)));
    ag_copy_to(ag_grad(sn), g, 2, AG_F64);
    ok(st == AG_OK && g[0] == 1 && g[1] == 0, "scatter_reduce amax's gradient of a NaN result goes to the NaN (%g %g)",
       g[0], g[1]);
    /* histc does not count NaN (PyTorch 1.13 puts it in bin 0) */
    ag_tensor *h = ag_histc(ag_from_data((double[]){1, NAN, 5}, AG_SHAPE(3), AG_F64), 2, 0, 8);
    double hv[2] = {0};
    ag_copy_to(h, hv, 2, AG_F64);
    ok(h && hv[0] == 1 && hv[1] == 1, "histc leaves NaN out (%g %g)", hv[0], hv[1]);
    /* histc of float32 against its formula counted here, with few bins (counted in copies) and many */
    float hx[1000];
    for (int k = 0; k < 1000; k++) hx[k] = (float)((k * 7919 % 1000) / 250.0 - 2.0);
    hx[0] = NAN, hx[1] = INFINITY, hx[2] = -1.5f, hx[3] = 1.5f;
    for (int64_t bins = 7; bins <= 5007; bins += 5000) {
        ag_tensor *hf = ag_histc(ag_from_data(hx, AG_SHAPE(1000), AG_F32), bins, -1.5, 1.5);
        double *want = calloc((size_t)bins, sizeof *want), *got = calloc((size_t)bins, sizeof *got);
        for (int k = 0; k < 1000; k++) {
            if (!(hx[k] >= -1.5f && hx[k] <= 1.5f)) continue;
            int64_t b = (int64_t)((hx[k] - -1.5f) / (1.5f - -1.5f) * (float)bins);
            want[b < bins ? b : bins - 1]++;
        }
        ag_copy_to(hf, got, bins, AG_F64);
        int64_t bad = -1;
        for (int64_t b = 0; b < bins && hf; b++)
            if (got[b] != want[b]) bad = b;
        ok(hf && bad < 0, "histc float32 counts its formula's bins with %lld bins (first wrong %lld)", (long long)bins,
           (long long)bad);
        free(want), free(got);
    }
    /* unique_consecutive: -0.0 joins a run of 0.0 (the run keeps its first value), each NaN apart */
    ag_tensor *ui, *uc;
    ag_tensor *uy = ag_unique_consecutive(ag_from_data((float[]){0.0f, -0.0f, 0.0f, 1, 1, NAN, NAN, 2, -0.0f, 0.0f},
                                                       AG_SHAPE(10), AG_F32), &ui, &uc);
    float yv[6] = {0};
    int64_t iv[10] = {0}, cv[6] = {0};
    bool same = uy && ag_numel(uy) == 6 && ag_numel(uc) == 6;
    if (same) ag_copy_to(uy, yv, 6, AG_F32), ag_copy_to(ui, iv, 10, AG_I64), ag_copy_to(uc, cv, 6, AG_I64);
    const int64_t iw[10] = {0, 0, 0, 1, 1, 2, 3, 4, 5, 5}, cw[6] = {3, 2, 1, 1, 1, 2};
    for (int k = 0; same && k < 10; k++) same = iv[k] == iw[k] && (k >= 6 || cv[k] == cw[k]);
    ok(same && yv[0] == 0 && !signbit(yv[0]) && yv[1] == 1 && isnan(yv[2]) && isnan(yv[3]) && yv[4] == 2 && signbit(yv[5]),
       "unique_consecutive groups -0.0 with 0.0 and keeps each NaN apart (values, inverse, counts)");
    ag_scope_end();
}

/* any, all and count_nonzero take every dtype. */
static void test_truth_dtypes(void) {
    ag_scope_begin();
    ag_tensor *b = ag_from_data((bool[]){false, true, false, false}, AG_SHAPE(2, 2), AG_BOOL);
    ag_tensor *i = ag_from_data((int64_t[]){0, 5, -1, 0, 0, 0}, AG_SHAPE(3, 2), AG_I64);
    ag_tensor *u = ag_from_data((uint8_t[]){0, 255, 1}, AG_SHAPE(3), AG_U8);
    ag_tensor *rows = ag_any_dim(b, 1, false);
    bool r[2] = {0};
    ag_copy_to(rows, r, 2, AG_BOOL);
    ok(ag_item(ag_any(b)) == 1 && ag_item(ag_all(b)) == 0 && r[0] && !r[1], "any and all of a bool mask");
    ag_tensor *c = ag_count_nonzero(i, 1, (int[]){1});
    int64_t cv[3] = {0};
    ag_copy_to(c, cv, 3, AG_I64);
    ok(ag_dtype_of(c) == AG_I64 && cv[0] == 1 && cv[1] == 1 && cv[2] == 0, "count_nonzero of int64 rows (%lld %lld %lld)",
       (long long)cv[0], (long long)cv[1], (long long)cv[2]);
    ok(ag_item(ag_count_nonzero(u, 0, NULL)) == 2 && ag_item(ag_all(u)) == 0, "count_nonzero and all of uint8 data");
    ag_scope_end();
}

/* The composites own their intermediates: called with no scope open, only the result is left. */
static void test_no_scope(void) {
    ag_tensor *i = ag_ones(AG_SHAPE(2), AG_F64), *a = ag_ones(AG_SHAPE(2, 3), AG_F64), *b = ag_ones(AG_SHAPE(3, 2), AG_F64);
    ag_tensor *a3 = ag_ones(AG_SHAPE(1, 2, 3), AG_F64), *b3 = ag_ones(AG_SHAPE(1, 3, 2), AG_F64);
    ag_tensor *v = ag_ones(AG_SHAPE(2, 2), AG_F64);
    const long before = ag_live_tensors();
    ag_tensor *r[4] = {ag_addmm(i, a, b, 0.5, 2), ag_baddbmm(i, a3, b3, 1, 1), ag_outer(i, i), ag_diag(v, 0)};
    ok(r[0] && r[1] && r[2] && r[3] && ag_live_tensors() == before + 4,
       "addmm, baddbmm, outer and diag leave only their results without a scope (%ld new tensors)",
       ag_live_tensors() - before);
    double y[4] = {0};
    if (r[0]) ag_copy_to(r[0], y, 4, AG_F64);
    ok(y[0] == 0.5 + 2 * 3 && y[3] == 0.5 + 2 * 3, "addmm computes beta·input + alpha·a·b (%g)", y[0]);
    for (int k = 0; k < 4; k++) ag_release(r[k]);
    ag_release(i), ag_release(a), ag_release(b), ag_release(a3), ag_release(b3), ag_release(v);
}

/* The composites of einsum.c, distance.c and shape.c, called without a scope, leave nothing but
 * their results (and, for a result that is a view of a product, like PyTorch's, the base it views):
 * releasing the results frees everything. */
static void test_composites_no_scope(void) {
    ag_tensor *a = ag_ones(AG_SHAPE(2, 3), AG_F64), *b = ag_ones(AG_SHAPE(3, 2), AG_F64), *v = ag_ones(AG_SHAPE(3), AG_F64);
    ag_tensor *bt = ag_t(b);
    const long before = ag_live_tensors();
    ag_tensor *r[11] = {ag_einsum("ij,jk->ik", (ag_tensor *[]){a, b}, 2), ag_tensordot(a, b, 1, NULL, NULL), ag_kron(a, b),
                        ag_rot90(a, 1, NULL), ag_narrow_copy(a, 1, 1, 2), ag_cdist(a, bt, 2),
                        ag_pairwise_distance(a, a, 2, 1e-6, false), ag_cosine_similarity(a, v, 1, 1e-8),
                        ag_lp_normalize(a, 2, 1, 1e-12)};
    bool all = true;
    for (int k = 0; k < 9; k++) all = all && r[k];
    long made = ag_live_tensors() - before;
    all = all && ag_meshgrid((ag_tensor *[]){v, v}, 2, "xy", r + 9) == 2;
    for (int k = 0; k < 11; k++) ag_release(r[k]);
    ok(all && made <= 13 && ag_live_tensors() == before,
       "einsum, tensordot, kron, rot90, narrow_copy, cdist, pairwise_distance, cosine_similarity, normalize and "
       "meshgrid without a scope: releasing the results frees everything (%ld tensors while held)", made);
    ag_release(bt), ag_release(a), ag_release(b), ag_release(v);
}

/* take_along_dim, mode, unique_dim and nanmedian: their errors, mode's NaN rule, and no scope. */
static void test_take_mode_unique(void) {
    ag_scope_begin();
    ag_tensor *x = ag_from_data((double[]){1, 2, 3, 4, 5, 6}, AG_SHAPE(2, 3), AG_F64);
    ag_tensor *i1 = ag_from_data((int64_t[]){1}, AG_SHAPE(1), AG_I64);
    ok(failed_with(ag_take_along_dim(x, i1, (int[]){1}), AG_ERR_SHAPE,
                   "take_along_dim: input and indices should have the same number of dims, got [2, 3] and [1]"),
       "take_along_dim with indices of another rank fails");
    ok(failed_with(ag_take_along_dim(x, ag_zeros(AG_SHAPE(3, 1), AG_I64), (int[]){1}), AG_ERR_SHAPE,
                   "take_along_dim: input [2, 3] and indices [3, 1] do not broadcast at dim 0 (dim 1 excepted)"),
       "take_along_dim with shapes that do not broadcast fails");
    ok(!ag_take_along_dim(x, ag_from_data((int64_t[]){-1}, AG_SHAPE(1, 1), AG_I64), (int[]){1}) &&
           ag_last_status() == AG_ERR_INDEX,
       "take_along_dim with a negative index fails with AG_ERR_INDEX, as PyTorch");
    ag_clear_error();
    ok(!ag_take_along_dim(x, ag_zeros(AG_SHAPE(1), AG_F64), NULL) && ag_last_status() == AG_ERR_DTYPE,
       "take_along_dim with float indices fails with AG_ERR_DTYPE");
    ag_clear_error();
    ok(failed_with(ag_unique_dim(ag_scalar(1.0, AG_F64), 0, NULL, NULL), AG_ERR_INDEX,
                   "unique_dim: dim 0 is out of range for a 0-d tensor"),
       "unique_dim of a 0-d tensor fails, as PyTorch");
    ok(failed_with(ag_unique_dim(ag_zeros(AG_SHAPE(2, 0), AG_F64), 0, NULL, NULL), AG_ERR_SHAPE,
                   "unique_dim: x of shape [2, 0] has an empty dim other than dim 0"),
       "unique_dim of empty slices fails, as PyTorch");
    ok(failed_with(ag_mode(ag_zeros(AG_SHAPE(2, 0), AG_F64), 1, false, NULL), AG_ERR_SHAPE,
                   "mode: cannot reduce the empty dim 1 of a tensor of shape [2, 0]"),
       "mode along an empty dim fails, as PyTorch");
    ok(!ag_take_along_dim(NULL, i1, NULL) && !ag_mode(NULL, 0, false, NULL) && !ag_unique_dim(NULL, 0, NULL, NULL) &&
           !ag_nanmedian(NULL) && ag_last_status() == AG_OK,
       "NULL passes through take_along_dim, mode, unique_dim and nanmedian without a message");
    /* mode with NaN: the NaN count as one value, larger than every number (PyTorch 1.13's
     * answer depends on its unstable sort: it gives NaN at index 0 here) */
    ag_tensor *idx = NULL, *m = ag_mode(ag_from_data((double[]){NAN, 1, NAN, 1, NAN}, AG_SHAPE(5), AG_F64), 0, false, &idx);
    ok(m && isnan(ag_item(m)) && ag_item(idx) == 4, "mode counts the NaN together: NaN at its last index (%g at %g)",
       m ? ag_item(m) : 0, idx ? ag_item(idx) : -1);
    m = ag_mode(ag_from_data((double[]){NAN, 2, 1, 2, 1}, AG_SHAPE(5), AG_F64), 0, false, &idx);
    ok(m && ag_item(m) == 1 && ag_item(idx) == 4, "mode of two equally frequent values is the smaller (%g at %g)",
       m ? ag_item(m) : 0, idx ? ag_item(idx) : -1);
    /* unique_dim: a row holding NaN is distinct even from itself; int64 rows compare exactly */
    ag_tensor *inv = NULL, *cnt = NULL;
    ag_tensor *u = ag_unique_dim(ag_from_data((double[]){NAN, 1, NAN, 1, 0, 1}, AG_SHAPE(3, 2), AG_F64), 0, &inv, &cnt);
    int64_t iv[3] = {0};
    if (inv) ag_copy_to(inv, iv, 3, AG_I64);
    ok(u && ag_size(u, 0) == 3 && iv[0] == 1 && iv[1] == 2 && iv[2] == 0,
       "unique_dim keeps rows holding NaN apart, after the others (inverse %lld %lld %lld)", (long long)iv[0],
       (long long)iv[1], (long long)iv[2]);
    int64_t big = (int64_t)1 << 60;
    u = ag_unique_dim(ag_from_data((int64_t[]){big + 1, 0, big, 0, big + 1, 0}, AG_SHAPE(3, 2), AG_I64), 0, &inv, &cnt);
    int64_t uv[4] = {0}, cv[2] = {0};
    if (u) ag_copy_to(u, uv, 4, AG_I64);
    if (cnt) ag_copy_to(cnt, cv, 2, AG_I64);
    ok(u && ag_size(u, 0) == 2 && uv[0] == big && uv[2] == big + 1 && cv[0] == 1 && cv[1] == 2,
       "unique_dim of int64 rows differing past 2^53 tells them apart");
    ag_scope_end();
    /* the composites and unique_dim leave only their results without a scope */
    ag_tensor *a = ag_from_data((double[]){1, 2, 2, 0}, AG_SHAPE(2, 2), AG_F64), *ia = ag_zeros(AG_SHAPE(1, 2), AG_I64);
    const long before = ag_live_tensors();
    ag_tensor *mi = NULL, *ui = NULL, *uc = NULL;
    ag_tensor *r[4] = {ag_take_along_dim(a, ia, (int[]){0}), ag_mode(a, 1, true, &mi), ag_unique_dim(a, 1, &ui, &uc), ag_nanmedian(a)};
    long made = ag_live_tensors() - before;
    ok(r[0] && r[1] && r[2] && r[3] && made == 7, "take_along_dim, mode, unique_dim and nanmedian without a scope "
       "leave their results only (%ld tensors)", made);
    for (int k = 0; k < 4; k++) ag_release(r[k]);
    ag_release(mi), ag_release(ui), ag_release(uc), ag_release(a), ag_release(ia);
}

/* einsum's equation errors name the problem. */
static void test_einsum_errors(void) {
    ag_scope_begin();
    ag_tensor *m = ag_zeros(AG_SHAPE(2, 3), AG_F64), *sq = ag_zeros(AG_SHAPE(2, 2), AG_F64);
    ok(failed_with(ag_einsum("ij,jk", &m, 1), AG_ERR_ARG,
                   "einsum: more operands were specified in the equation than the 1 provided"),
       "einsum with fewer operands than the equation fails");
    ok(failed_with(ag_einsum("ijk", &m, 1), AG_ERR_ARG,
                   "einsum: the number of subscripts in the equation (3) does not match the number of dims (2) of "
                   "operand 0 and no ellipsis was given"),
       "einsum with too many subscripts fails");
    ok(failed_with(ag_einsum("ij->ii", &sq, 1), AG_ERR_ARG, "einsum: output subscript i appears more than once in the output"),
       "einsum with a repeated output subscript fails");
    ok(failed_with(ag_einsum("i->j", (ag_tensor *[]){ag_zeros(AG_SHAPE(2), AG_F64)}, 1), AG_ERR_ARG,
                   "einsum: output subscript j does not appear in the equation for any input operand"),
       "einsum with an output subscript no input has fails");
    ok(failed_with(ag_einsum("ii->i", &m, 1), AG_ERR_SHAPE,
                   "einsum: subscript i is repeated for operand 0 but the sizes don't match, 2 != 3"),
       "einsum's diagonal of a non-square pair fails");
    ok(failed_with(ag_einsum("i1", &m, 1), AG_ERR_ARG,
                   "einsum: invalid subscript '1' in \"i1\" (expected letters a-z, A-Z, ',', '->' and '...')"),
       "einsum with a digit fails");
    ok(failed_with(ag_einsum("ij,jk->ik", (ag_tensor *[]){m, m}, 2), AG_ERR_SHAPE,
                   "einsum: subscript j has size 3 in one operand and 2 in another (sizes must match or be 1)"),
       "einsum with sizes that disagree fails");
    ok(failed_with(ag_tensordot(m, m, 1, NULL, NULL), AG_ERR_SHAPE,
                   "tensordot: contracted dimensions need to match, but a has size 3 in dim 1 and b has size 2 in dim 0"),
       "tensordot of sizes that disagree fails");
    ok(failed_with(ag_rot90(m, 1, (const int[]){1, -1}), AG_ERR_ARG,
                   "rot90: expected rotation dims to be different, but got dim0 = 1 and dim1 = -1"),
       "rot90 in one dim fails");
    ag_tensor *grids[2];
    ok(ag_meshgrid((ag_tensor *[]){m, m}, 2, "ij", grids) == -1 && ag_last_status() == AG_ERR_SHAPE,
       "meshgrid of 2-D tensors fails");
    ag_clear_error();
    ok(failed_with(ag_cdist(m, ag_zeros(AG_SHAPE(2, 2), AG_F64), 2), AG_ERR_SHAPE,
                   "cdist: expects [..., P, M] and [..., R, M] with one M, got [2, 3] and [2, 2]"),
       "cdist of rows of different lengths fails");
    ok(failed_with(ag_lp_normalize(m, -1, 1, 1e-12), AG_ERR_VALUE, "normalize: p must be a non-negative number, got -1"),
       "normalize with a negative p fails");
    ok(failed_with(ag_linalg_solve_ex(sq, ag_zeros(AG_SHAPE(2), AG_F64), false), AG_ERR_SHAPE,
                   "linalg_solve: with left=false B must be a matrix [..., k, n], got [2] for A [2, 2]"),
       "solve with left=false of a vector fails, as PyTorch 1.13");
    ag_tensor *pieces[4];
    ok(ag_unbind(m, 1, pieces, 4) == 3 && ag_size(pieces[2], 0) == 2 && ag_unbind(m, 0, pieces, 1) == 2,
       "unbind gives one view per slice and counts them all");
    ag_scope_end();
}

/* cumsum of a lane long enough to be split over threads (ops/scan.c): on one thread each element
 * is the running float64 sum rounded once (bit for bit a plain loop's), on two within a last bit
 * of it (1e-13 relative in float64, one float32 ulp: the block carries are summed in another
 * order); the adjoint (sums from the end) of sum(cumsum(x)) is n - k exactly. */
static void test_cumsum_split(void) {
    const int64_t n = 150001;
    const int old = ag_get_num_threads();
    double *want = malloc(sizeof(double) * (size_t)(n));
    for (int dt = 0; dt < 2 && want; dt++) {
        ag_tensor *x = ag_requires_grad_(ag_randn(AG_SHAPE(1, n), dt ? AG_F64 : AG_F32), true);
#define AT(t, i) (dt ? ((const double *)ag_data(t))[i] : (double)((const float *)ag_data(t))[i])
        double a = 0;
        for (int64_t k = 0; k < n; k++) want[k] = dt ? a += AT(x, k) : (float)(a += AT(x, k));
        for (int th = 1; th <= 2; th++) {
            ag_set_num_threads(th);
            ag_tensor *y = ag_cumsum(x, 1);
            const bool back = y && ag_backward_ex(ag_sum(y), NULL, false) == AG_OK;
            double worst = 0, worst_g = 0;
            bool exact = true;
            for (int64_t i = 0; back && i < n; i++) {
                exact &= AT(y, i) == want[i];
                worst = fmax(worst, fabs(AT(y, i) - want[i]) / fmax(fabs(want[i]), 1));
                worst_g = fmax(worst_g, fabs(AT(ag_grad(x), i) - (double)(n - i % n)));
            }
            ok(back && (th == 1 ? exact : worst < (dt ? 1e-13 : 1.2e-7)) && worst_g == 0,
               "cumsum of [1, %lld] %s on %d thread(s): %s the running sum (worst %.2g), its adjoint exact",
               (long long)n, dt ? "float64" : "float32", th, th == 1 ? "bit for bit" : "within a last bit of", worst);
            ag_zero_grad(x);
        }
#undef AT
    }
    free(want);
    ag_set_num_threads(old);
}

/* repeat's row copies (rows outside the first tile copied from the ones written) and its adjoint
 * summed tile after tile, and repeat_interleave along the last dim (one-element rows): against an
 * element-by-element reference here, bit for bit, forward and the gradient of sum(w·y) (float64
 * sums of dy in dy's order, rounded once), on a transposed x, float32 and float64. */
static void test_repeat_paths(void) {
    for (int dt = 0; dt < 2; dt++) {
        const ag_dtype t = dt ? AG_F64 : AG_F32;
        const size_t es = dt ? sizeof(double) : sizeof(float);
#define AT(p, i) (dt ? ((const double *)(p))[i] : (double)((const float *)(p))[i])
        /* repeat of a transposed [7, 5] by (2, 3, 4): y [2, 21, 20], y[a, i, j] = x[i mod 7, j mod 5] */
        ag_tensor *x = ag_requires_grad_(ag_t(ag_randn(AG_SHAPE(5, 7), t)), true), *xc = ag_contiguous(x); /* row-major (a clone keeps the transposed layout) */
        ag_tensor *y = ag_repeat(x, AG_SHAPE(2, 3, 4)), *w = ag_randn(AG_SHAPE(2, 21, 20), t);
        bool same = y && ag_numel(y) == 2 * 21 * 20 && ag_backward(ag_sum(ag_mul(y, w))) == AG_OK;
        double acc[35] = {0};
        for (int64_t k = 0; same && k < 2 * 21 * 20; k++) {
            const int64_t i = k / 20 % 21 % 7, j = k % 20 % 5;
            same &= memcmp((const char *)ag_data(y) + k * (int64_t)es, (const char *)ag_data(xc) + (i * 5 + j) * (int64_t)es, es) == 0;
            acc[i * 5 + j] += AT(ag_data(w), k);
        }
        for (int k = 0; same && k < 35; k++) same &= AT(ag_data(ag_grad(x)), k) == (dt ? acc[k] : (double)(float)acc[k]);
        ok(same, "%s repeat of a transposed [7, 5] by (2, 3, 4) and its gradient, bit for bit", dt ? "float64" : "float32");
        /* repeat_interleave along the last dim of a transposed [6, 4] by counts 2, 0, 3, 1: y [6, 6] */
        const int64_t counts[4] = {2, 0, 3, 1}, src[6] = {0, 0, 2, 2, 2, 3};
        ag_tensor *u = ag_requires_grad_(ag_t(ag_randn(AG_SHAPE(4, 6), t)), true), *uc = ag_contiguous(u);
        ag_tensor *r = ag_repeat_interleave_tensor(u, ag_from_data(counts, AG_SHAPE(4), AG_I64), -1);
        ag_tensor *v = ag_randn(AG_SHAPE(6, 6), t);
        same = r && ag_numel(r) == 36 && ag_backward(ag_sum(ag_mul(r, v))) == AG_OK;
        double g[24] = {0};
        for (int64_t k = 0; same && k < 36; k++) {
            const int64_t from = k / 6 * 4 + src[k % 6];
            same &= memcmp((const char *)ag_data(r) + k * (int64_t)es, (const char *)ag_data(uc) + from * (int64_t)es, es) == 0;
            g[from] += AT(ag_data(v), k);
        }
        for (int k = 0; same && k < 24; k++) same &= AT(ag_data(ag_grad(u)), k) == (dt ? g[k] : (double)(float)g[k]);
        ok(same, "%s repeat_interleave along the last dim of a transposed [6, 4] by counts 2, 0, 3, 1 and its gradient",
           dt ? "float64" : "float32");
#undef AT
    }
}

/* take from a strided [8, 14, 11] view (x [14, 11, 16] sliced by 2 along its last dim, then
 * permuted): few values are picked in place by the strides, many after a contiguous copy; both
 * against a plain loop over the view's contiguous copy, bit for bit, every element size */
static void test_take_strided(void) {
    static const ag_dtype dts[] = {AG_F32, AG_F64, AG_I64, AG_U8};
    static const int perm[3] = {2, 0, 1};
    const int64_t size = 8 * 14 * 11;
    int64_t many[40];
    for (int k = 0; k < 40; k++) many[k] = (k * 389 + 5) % (2 * size) - size; /* in [-size, size) */
    const int64_t few[7] = {0, size - 1, -1, -size, 17, 1000, -555};
    for (int d = 0; d < 4; d++) {
        ag_tensor *base = ag_to_dtype(ag_reshape(ag_arange(0, 14 * 11 * 16, 1, AG_F64), AG_SHAPE(14, 11, 16)), dts[d]);
        if (d < 2) base = ag_to_dtype(ag_randn(AG_SHAPE(14, 11, 16), AG_F64), dts[d]);
        ag_tensor *x = ag_permute(ag_slice(base, 2, 0, 16, 2), perm), *xc = ag_contiguous(x);
        const size_t es = ag_dtype_size(dts[d]);
        for (int c = 0; c < 2; c++) {
            const int64_t *iv = c ? many : few, n = c ? 40 : 7;
            ag_tensor *y = ag_take(x, ag_from_data(iv, AG_SHAPE(n), AG_I64));
            bool same = y && ag_numel(y) == n && !ag_is_contiguous(x);
            for (int64_t k = 0; same && k < n; k++) {
                const int64_t v = iv[k] < 0 ? iv[k] + size : iv[k];
                same = memcmp((const char *)ag_data(y) + k * (int64_t)es, (const char *)ag_data(xc) + v * (int64_t)es, es) == 0;
            }
            ok(same, "take of %d values (%s) from a strided [8, 14, 11] view, dtype %d, bit for bit", (int)n,
               c ? "after a copy" : "in place", (int)dts[d]);
        }
        ok(failed_with(ag_take(x, ag_from_data((int64_t[]){3, -1233}, AG_SHAPE(2), AG_I64)), AG_ERR_INDEX,
                       "take: index -1233 is out of range for a tensor of 1232 elements (shape [8, 14, 11])"),
           "take in place from a strided view fails on a value outside, dtype %d", (int)dts[d]);
    }
}

/* cdist's float32 adjoint by blocks (ops/distance.c, ratio_blocks: h made 64 rows at a time, each
 * block's h·b and hᵀ·a by oneDNN, hᵀ·a summed in parts): against the float64 adjoint of the same
 * inputs (h whole, one product each) within float32 rounding, at shapes with one to four parts,
 * a batch broadcast, a transposed a (the unfused form), a one-value dy (sum's), R = 256 (h's
 * blocks and gbᵀ's parts then 272 floats a row, block_ld), M = 128, and two shapes large enough
 * for two threads (ag__threads_for: from 2^17 distances); the same bits on 1 and 2 threads.  y (by blocks of 128 rows, dist_blocks) within float32's bound of float64's y, the same
 * bits on 1 and 2 threads. */
static void test_cdist_blocks(void) {
    static const struct {
        int na, nb;
        int64_t a[4], b[4];
        bool ta, weighted;
    } cs[] = {{2, 2, {300, 5}, {200, 5}, false, true},       {2, 2, {1024, 16}, {96, 16}, false, false},
              {4, 3, {2, 1, 130, 7}, {3, 70, 7}, false, true}, {2, 2, {40, 9}, {27, 9}, true, true},
              {2, 2, {26, 3}, {1, 3}, false, true},         {2, 2, {200, 6}, {256, 6}, false, true},
              {2, 2, {300, 128}, {150, 128}, false, false},  {2, 2, {600, 8}, {300, 8}, false, true},
              {4, 3, {2, 1, 300, 5}, {3, 150, 5}, false, true}};
    const int old = ag_get_num_threads();
    for (size_t c = 0; c < sizeof cs / sizeof cs[0]; c++) {
        ag_shape sa = {cs[c].na, {0}}, sb = {cs[c].nb, {0}};
        for (int d = 0; d < cs[c].na; d++) sa.dim[d] = cs[c].a[d];
        for (int d = 0; d < cs[c].nb; d++) sb.dim[d] = cs[c].b[d];
        if (cs[c].ta) { /* a as the transpose of a [M, P] tensor */
            int64_t t = sa.dim[0];
            sa.dim[0] = sa.dim[1], sa.dim[1] = t;
        }
        ag_tensor *a = ag_randn(sa, AG_F32), *b = ag_randn(sb, AG_F32);
        if (cs[c].ta) a = ag_transpose(a, 0, 1);
        ag_tensor *a64 = ag_requires_grad_(ag_to_dtype(a, AG_F64), true), *b64 = ag_requires_grad_(ag_to_dtype(b, AG_F64), true);
        ag_tensor *y64 = ag_cdist(a64, b64, 2), *w = y64 ? ag_randn(ag_shape_of(y64), AG_F32) : NULL;
        bool good = w && ag_backward(ag_sum(cs[c].weighted ? ag_mul(y64, ag_to_dtype(w, AG_F64)) : y64)) == AG_OK;
        ag_tensor *ga[2] = {NULL, NULL}, *gb[2] = {NULL, NULL}, *ys[2] = {NULL, NULL};
        a = ag_requires_grad_(ag_detach(a), true), b = ag_requires_grad_(ag_detach(b), true);
        for (int th = 1; th <= 2 && good; th++) {
            ag_set_num_threads(th);
            ag_tensor *y = ys[th - 1] = ag_cdist(a, b, 2);
            good = y && ag_backward(ag_sum(cs[c].weighted ? ag_mul(y, w) : y)) == AG_OK;
            ga[th - 1] = ag_detach(ag_grad(a)), gb[th - 1] = ag_detach(ag_grad(b));
            ag_zero_grad(a), ag_zero_grad(b);
        }
        ag_set_num_threads(old);
        double worst = 0;
        for (int k = 0; k < 2 && good; k++) {
            ag_tensor *g32 = k ? gb[0] : ga[0], *g64 = ag_grad(k ? b64 : a64);
            const int64_t n = ag_numel(g64);
            double top = 0;
            for (int64_t i = 0; i < n; i++) top = fmax(top, fabs(((const double *)ag_data(g64))[i]));
            for (int64_t i = 0; i < n; i++)
                worst = fmax(worst, fabs(((const float *)ag_data(g32))[i] - ((const double *)ag_data(g64))[i]) / top);
            good &= memcmp(ag_data(k ? gb[0] : ga[0]), ag_data(k ? gb[1] : ga[1]), (size_t)n * 4) == 0;
        }
        ok(good && worst < 2e-5, "cdist %s float32 adjoint (case %d) within %.2g of float64's, the same bits on 1 and 2 threads",
           cs[c].ta ? "unfused (transposed a)" : "by blocks", (int)c, worst);
        /* y: float64's distance within the float32 bound of the product's cancellation, |Δ(‖a‖² + ‖b‖² -
         * 2a·b)| <= (M + 4)·u·(‖a‖² + ‖b‖²) (u = 2^-24) over 2y, plus the rounding of the root; the same
         * bits on 1 and 2 threads (the forward by blocks: dist_blocks) */
        double yworst = 0;
        if (good) {
            ag_tensor *n64 = ag_sum_dims(ag_mul(a64, a64), 1, (int[]){-1}, false), *m64 = ag_sum_dims(ag_mul(b64, b64), 1, (int[]){-1}, false);
            ag_tensor *s64 = n64 && m64 ? ag_contiguous(ag_add(ag_unsqueeze(n64, -1), ag_unsqueeze(m64, -2))) : NULL;
            ag_tensor *y64c = ag_contiguous(y64), *y32 = ag_contiguous(ys[0]);
            good = s64 && y64c && y32 && ag_numel(s64) == ag_numel(y32);
            const int64_t n = good ? ag_numel(y32) : 0, M = cs[c].a[cs[c].na - 1];
            for (int64_t i = 0; i < n; i++) {
                const double e = ((const double *)ag_data(y64c))[i], f = ((const float *)ag_data(y32))[i];
                const double bound = (double)(M + 4) * 0x1p-24 * ((const double *)ag_data(s64))[i] / (2 * e) + 0x1p-23 * e;
                yworst = fmax(yworst, fabs(f - e) / bound);
            }
            good &= memcmp(ag_data(ys[0]), ag_data(ag_contiguous(ys[1])), (size_t)n * 4) == 0;
        }
        ok(good && yworst <= 1, "cdist float32 y (case %d) within %.2g of its bound from float64's, the same bits on 1 and 2 "
           "threads", (int)c, yworst);
    }
}

/* cdist's direct form (ops/distance.c, cdist_p) in float32: each distance within 0.51 float32 ulps of
 * (Σ_k |d_k|^p)^(1/p) summed here in float64 over the float32 differences d_k (PyTorch's), with libm's
 * pow (the kernel sums them in float64 and rounds once; for p other than 0, 1, 1.5, 2, 3 and inf it
 * takes |d|^p as 2^(p·log2|d|), within 1e-12); at more columns of b than a block holds (32) with a
 * tail, broadcast batch dims and a transposed a; y, da and db the same bits on 1 and 2 threads. */
static void test_cdist_direct(void) {
    static const double ps[] = {0, 0.5, 1, 1.5, 1.7, 2, 3, INFINITY};
    static const struct {
        int na, nb;
        int64_t a[4], b[4];
        bool ta;
    } cs[] = {{2, 2, {64, 40}, {70, 40}, false}, {4, 3, {2, 1, 9, 5}, {3, 37, 5}, false}, {2, 2, {33, 20}, {25, 20}, true}};
    const int old = ag_get_num_threads();
    for (size_t c = 0; c < sizeof cs / sizeof cs[0]; c++)
        for (size_t q = 0; q < sizeof ps / sizeof ps[0]; q++) {
            const double p = ps[q];
            ag_shape sa = {cs[c].na, {0}}, sb = {cs[c].nb, {0}};
            for (int d = 0; d < cs[c].na; d++) sa.dim[d] = cs[c].a[d];
            for (int d = 0; d < cs[c].nb; d++) sb.dim[d] = cs[c].b[d];
            if (p == 2) sa.dim[cs[c].na - 2] = 25, sb.dim[cs[c].nb - 2] = 25; /* the direct form's p = 2 */
            const int64_t P = sa.dim[cs[c].na - 2], R = sb.dim[cs[c].nb - 2], M = sb.dim[cs[c].nb - 1];
            if (cs[c].ta) {
                int64_t t = sa.dim[0];
                sa.dim[0] = sa.dim[1], sa.dim[1] = t;
            }
            ag_tensor *a = ag_randn(sa, AG_F32), *b = ag_randn(sb, AG_F32);
            if (cs[c].ta) a = ag_transpose(a, 0, 1);
            a = ag_requires_grad_(ag_detach(a), true), b = ag_requires_grad_(b, true);
            ag_tensor *y[2] = {NULL, NULL}, *ga[2] = {NULL, NULL}, *gb[2] = {NULL, NULL}, *w = NULL;
            bool good = true;
            for (int th = 1; th <= 2 && good; th++) {
                ag_set_num_threads(th);
                y[th - 1] = ag_cdist(a, b, p);
                if (!w && y[0]) w = ag_randn(ag_shape_of(y[0]), AG_F32);
                good = y[th - 1] && ag_backward(ag_sum(ag_mul(y[th - 1], w))) == AG_OK;
                ga[th - 1] = ag_detach(ag_grad(a)), gb[th - 1] = ag_detach(ag_grad(b));
                ag_zero_grad(a), ag_zero_grad(b);
            }
            ag_set_num_threads(old);
            double worst = 0; /* in ulps */
            if (good) {
                ag_tensor *ac = ag_contiguous(a);
                const int64_t nbatch = ag_numel(y[0]) / (P * R);
                for (int64_t e = 0; e < nbatch * P * R; e++) {
                    const int64_t bi = e / (P * R), i = e / R % P, j = e % R;
                    /* batch item bi of [2, 3] picks a's item bi / 3 and b's bi % 3; plain: item 0 */
                    const int64_t ai = cs[c].na == 4 ? bi / 3 : 0, bj = cs[c].na == 4 ? bi % 3 : 0;
                    const float *x = (const float *)ag_data(ac) + (ai * P + i) * M;
                    const float *z = (const float *)ag_data(b) + (bj * R + j) * M;
                    double s = 0;
                    for (int64_t k = 0; k < M; k++) {
                        const double d = fabs((double)(float)(x[k] - z[k]));
                        s = p == 0 ? s + (d != 0) : isinf(p) ? fmax(s, d) : s + pow(d, p);
                    }
                    const double ref = p == 0 || p == 1 || isinf(p) ? s : pow(s, 1 / p);
                    const double ulp = nextafterf((float)ref, INFINITY) - (float)ref;
                    worst = fmax(worst, fabs(((const float *)ag_data(y[0]))[e] - ref) / ulp);
                }
                good = memcmp(ag_data(y[0]), ag_data(y[1]), (size_t)ag_numel(y[0]) * 4) == 0 &&
                       memcmp(ag_data(ga[0]), ag_data(ga[1]), (size_t)ag_numel(ga[0]) * 4) == 0 &&
                       memcmp(ag_data(gb[0]), ag_data(gb[1]), (size_t)ag_numel(gb[0]) * 4) == 0;
            }
            ok(good && worst <= 0.51, "cdist p = %g float32 direct form (case %d) within %.2g ulps of the float64 sum, "
               "y and gradients the same bits on 1 and 2 threads", p, (int)c, worst);
        }
}

/* One pair's term of cdist_p's adjoint for the row x against the row o (ops/distance.c, CD_BWD): c·ψ(d)
 * with d = x_k - o_k rounded to the dtype, in the kernel's arithmetic (float64, or the dtype's lanes
 * for ±c at p = 1 and inf); c the pair's factor (coef), y its distance, f32 whether the rows are float32. */
static double cdist_term(double p, double c, double y, double dx, bool f32) {
    const double d = f32 ? (double)(float)dx : dx;
    if (p == 1 || isinf(p)) {
        const bool on = p == 1 ? d != 0 : fabs(d) == y;
        return on ? (f32 ? (double)((float)c * copysignf(1, (float)d)) : c * copysign(1, d)) : 0;
    }
    return p == 2 ? c * d : c * d * fabs(d);
}

/* cdist's direct-form adjoint below 16 columns (ops/distance.c: rows padded to 8 or 16 columns with
 * zeros, the sums in registers): da and db bit for bit against the kernel's sums done here, each
 * row's in float64 in the other side's row order, at M = 1, 3, 8, 12, 16 (and 20, the loop over any
 * M), p = 1, 2, 3 and inf, float32 and float64, a weighted dy. */
static void test_cdist_narrow_grads(void) {
    static const double ps[] = {1, 2, 3, INFINITY};
    static const int64_t ms[] = {1, 3, 8, 12, 16, 20};
    const int64_t P = 9, R = 13;
    for (int f = 0; f < 2; f++)
        for (size_t q = 0; q < sizeof ps / sizeof ps[0]; q++)
            for (size_t m = 0; m < sizeof ms / sizeof ms[0]; m++) {
                const ag_dtype dt = f ? AG_F64 : AG_F32;
                const double p = ps[q];
                const int64_t M = ms[m];
                ag_tensor *a = ag_requires_grad_(ag_randn(AG_SHAPE(P, M), dt), true);
                ag_tensor *b = ag_requires_grad_(ag_randn(AG_SHAPE(R, M), dt), true);
                if (M == 3) { /* a zero distance (b's row 0 is a's row 0) and a tie of the largest |d| (row 1) */
                    const double a1[3] = {0, 0, 0}, b1[3] = {1, -1, 0.5};
                    for (int k = 0; k < 3; k++) {
                        if (f) {
                            ((double *)ag_data(b))[k] = ((const double *)ag_data(a))[k];
                            ((double *)ag_data(a))[3 + k] = a1[k], ((double *)ag_data(b))[3 + k] = b1[k];
                        } else {
                            ((float *)ag_data(b))[k] = ((const float *)ag_data(a))[k];
                            ((float *)ag_data(a))[3 + k] = (float)a1[k], ((float *)ag_data(b))[3 + k] = (float)b1[k];
                        }
                    }
                }
                ag_tensor *y = ag_cdist(a, b, p), *w = ag_randn(AG_SHAPE(P, R), dt);
                bool good = y && ag_backward(ag_sum(ag_mul(y, w))) == AG_OK;
                int64_t bad = 0;
                for (int side = 0; side < 2 && good; side++) {
                    const int64_t rows = side ? R : P, others = side ? P : R;
                    ag_tensor *t = side ? b : a, *o = side ? a : b, *g = ag_grad(t);
                    for (int64_t r = 0; r < rows; r++)
                        for (int64_t k = 0; k < M; k++) {
                            double acc = 0;
                            for (int64_t s = 0; s < others; s++) {
                                const int64_t e = side ? s * R + r : r * R + s; /* the pair (i, j) */
                                const double yv = f ? ((const double *)ag_data(y))[e] : ((const float *)ag_data(y))[e];
                                const double dy = f ? ((const double *)ag_data(w))[e] : ((const float *)ag_data(w))[e];
                                const double tx = f ? ((const double *)ag_data(t))[r * M + k] : ((const float *)ag_data(t))[r * M + k];
                                const double ox = f ? ((const double *)ag_data(o))[s * M + k] : ((const float *)ag_data(o))[s * M + k];
                                double c = dy;
                                if (p == 2) c = yv == 0 ? 0 : dy / yv;
                                if (p == 3) c = yv == 0 ? 0 : dy / (yv * yv);
                                if (isinf(p) && yv == 0) continue;
                                acc += cdist_term(p, c, yv, tx - ox, !f);
                            }
                            const double got = f ? ((const double *)ag_data(g))[r * M + k] : ((const float *)ag_data(g))[r * M + k];
                            bad += f ? got != acc : got != (double)(float)acc;
                        }
                }
                ok(good && bad == 0, "cdist p = %g %s [%d, %d] x [%d, %d] direct-form gradients bit for bit the kernel's "
                   "sums (%lld differ)", p, f ? "float64" : "float32", (int)P, (int)M, (int)R, (int)M, (long long)bad);
            }
}

/* cdist's direct form past float64's range of |d|^p: a sum above 2^900 or below 2^-900 is summed again
 * scaled by the largest |d| (ops/distance.c, cd_scaled), so that the distance of [s, 0] and [0, s]
 * is 2^(1/p)·s without overflow or underflow: s = 1e200 and 1e-200 in float64 at p = 2, 3 and 0.5,
 * and s = 3e38 in float32 at p = 9 (whose |d|^9 is past 2^1020). */
static void test_cdist_range(void) {
    static const struct {
        ag_dtype dt;
        double s, p;
    } cs[] = {{AG_F64, 1e200, 2},   {AG_F64, 1e200, 3},  {AG_F64, 1e-200, 2},
              {AG_F64, 1e-200, 0.5}, {AG_F64, 1e200, 0.5}, {AG_F32, 3e38, 9}};
    for (size_t c = 0; c < sizeof cs / sizeof cs[0]; c++) {
        const double s = cs[c].dt == AG_F32 ? (double)(float)cs[c].s : cs[c].s;
        ag_tensor *a = ag_zeros(AG_SHAPE(1, 2), cs[c].dt), *b = ag_zeros(AG_SHAPE(2, 2), cs[c].dt);
        ag_fill_(ag_narrow(a, 1, 0, 1), s);
        ag_fill_(ag_narrow(ag_narrow(b, 0, 0, 1), 1, 1, 1), s);
        ag_tensor *y = ag_to_dtype(ag_cdist(a, b, cs[c].p), AG_F64);
        const double want = pow(2, 1 / cs[c].p) * s, *v = y ? (const double *)ag_data(y) : NULL;
        ok(v && fabs(v[0] - want) <= 4e-7 * want && v[1] == s,
           "cdist p = %g of [s, 0] and [0, s] at s = %g (%s) is 2^(1/p)·s, got %g", cs[c].p, s,
           ag_dtype_name(cs[c].dt), v ? v[0] : NAN);
    }
}

/* stack of two transposed [R, C] float32 inputs along the new last dim, through ops/join.c's 8 x 8 tiles:
 * R and C at, below and above multiples of 8, an input viewed from a wider storage (its columns further
 * apart, its start moved), one row-major input (the general copy), float64 (the general copy), on one
 * thread and on two (a [300, 250] pair, rows split in blocks of 8); every element of y against its input's
 * with ag_get, and the gradient of sum(w·y) (each dx_k = w[..., k]). */
static void test_stack_tiles(void) {
    static const int64_t sizes[] = {8, 9, 15, 16, 17, 23, 40};
    const int threads = ag_get_num_threads();
    int bad = 0, calls = 0;
    for (int v = 0; v < 6; v++)
        for (size_t a = 0; a < 7; a++)
            for (size_t b = 0; b < 7; b++) {
                if (v == 5 && (a || b)) continue;
                ag_scope_begin();
                const int64_t R = v == 5 ? 300 : sizes[a], C = v == 5 ? 250 : sizes[b];
                const ag_dtype dt = v == 4 ? AG_F64 : AG_F32;
                ag_set_num_threads(v == 5 ? 2 : 1);
                ag_tensor *x0 = ag_transpose(ag_randn(AG_SHAPE(C, R), dt), 0, 1);
                ag_tensor *x1 = v == 1 || v == 5 ? ag_transpose(ag_narrow(ag_randn(AG_SHAPE(C, R + 5), dt), 1, 3, R), 0, 1)
                                : v == 2 ? ag_randn(AG_SHAPE(R, C), dt) /* row-major */
                                : v == 3 ? ag_narrow(ag_transpose(ag_randn(AG_SHAPE(C + 2, R), dt), 0, 1), 1, 2, C)
                                         : ag_transpose(ag_randn(AG_SHAPE(C, R), dt), 0, 1);
                ag_requires_grad_(x0, true), ag_requires_grad_(x1, true);
                ag_tensor *y = ag_stack((ag_tensor *[]){x0, x1}, 2, -1);
                calls++;
                bad += !y || ag_shape_of(y).ndim != 3 || ag_shape_of(y).dim[2] != 2;
                for (int64_t i = 0; y && !bad && i < R; i++)
                    for (int64_t j = 0; j < C; j++)
                        for (int k = 0; k < 2; k++)
                            bad += ag_get(y, (int64_t[]){i, j, k}) != ag_get(k ? x1 : x0, (int64_t[]){i, j});
                ag_tensor *w = y ? ag_randn(ag_shape_of(y), dt) : NULL;
                bad += !w || ag_backward(ag_sum(ag_mul(w, y))) != AG_OK;
                for (int64_t i = 0; !bad && i < R; i++)
                    for (int64_t j = 0; j < C; j++)
                        for (int k = 0; k < 2; k++)
                            bad += ag_get(ag_grad(k ? x1 : x0), (int64_t[]){i, j}) != ag_get(w, (int64_t[]){i, j, k});
                ag_scope_end();
            }
    ag_set_num_threads(threads);
    ok(bad == 0, "stack of two transposed [R, C] inputs along -1 (R, C 8 to 40, wider storage, moved starts, a row-major "
       "input, float64, two threads on [300, 250]): each element and each gradient its input's (%d calls, %d off)",
       calls, bad);
}

int main(void) {
    bool loaded = (cases = fixture_read_cases(FIXTURES "/tensor_ops.txt", sizeof *cases, take_line, NULL, &ncases));
    if (ok(loaded, "read %d cases from %s", ncases, FIXTURES "/tensor_ops.txt"))
        for (int i = 0; i < ncases; i++) {
            check_case(&cases[i], AG_F64);
            check_case(&cases[i], AG_F32);
        }
    test_deviations();
    test_truth_dtypes();
    test_no_scope();
    test_composites_no_scope();
    test_einsum_errors();
    test_take_mode_unique();
    ag_scope_begin();
    test_cumsum_split();
    test_repeat_paths();
    test_stack_tiles();
    test_take_strided();
    test_cdist_blocks();
    test_cdist_direct();
    test_cdist_narrow_grads();
    test_cdist_range();
    ag_scope_end();
    test_errors();
    free_fixtures();
    ok(ag_live_tensors() == 0, "no tensors leaked");
    return tap_done();
}

/*
 * distance.c - cdist, pairwise_distance, cosine_similarity and F.normalize
 * (ag_lp_normalize).
 *
 * cdist with p = 2 past 25 rows (PyTorch's default compute mode, its _euclidean_dist)
 * is one op, y = sqrt(max(‖a‖² + ‖b‖² - 2a·b, 1e-30)), run as one product and one pass:
 * the product a·bᵀ is written into y, then one threaded pass turns each element into
 * the distance with the row norms (a pass over the inputs, P·M + R·M) added there; the
 * adjoint makes h = dy/y (0 where the distance is at its floor: a zero distance) in
 * blocks of 64 rows that also sum h's rows and, per block, its columns, and writes
 * da = rowsum(h)·a - h·b and db = colsum(h)·b - hᵀ·a straight into the gradients: in
 * float32 each block's h·b and hᵀ·a run while the block is in cache (h is never whole),
 * else h is made whole and each product runs once.  No augmented operand, clamp, sqrt or
 * division runs as an op of its own (cdist_1k forward + backward on one thread:
 * docs/benchmarks.md, sessions 8 and 15).  Every row, column block and part of hᵀ·a is
 * summed by one thread in a fixed order: the same bits on any thread count, but that with
 * fewer tasks of blocks than threads the float32 adjoint takes the unfused form (its products
 * threaded, their bits oneDNN's).
 *
 * The other forms are built from registered ops and have no adjoint of their own; the
 * norms go through ag_linalg_vector_norm, whose gradient is 0 where a norm is 0
 * (PyTorch's cdist and pairwise_distance give 0 there too).
 */
#include <math.h>
#include <string.h>
#include <omp.h>
#include "agrad/linalg.h"
#include "agrad/ops.h"
#include "autograd/tape.h"
#include "core/autocast.h"
#include "core/iter.h"
#include "core/parallel.h"
#include "core/sum.h"
#include "ops/jvp.h"
#include "ops/matmul.h"

/* p of a norm: not negative and not NaN. */
static ag_status check_p(const char *op, double p) {
    if (!(p >= 0)) return ag__fail(AG_ERR_VALUE, "%s: p must be a non-negative number, got %g", op, p);
    return AG_OK;
}

/* ---- cdist, p = 2, matrix form ------------------------------------------------------------------ */

/* The smallest squared distance (PyTorch's clamp_min(1e-30)): below it the distance is
 * sqrt(1e-30) and its gradient 0. */
#define D2_FLOOR 1e-30
/* Rows of h whose column sums one task adds up (a block never spans two batch items). */
#define COL_BLOCK 64
/* Parts a batch item's blocks are split into for the adjoint's hᵀ·a by blocks (ratio_blocks) */
#define GROUPS_MAX 4
/* Values of gb one task adds up from its parts */
#define PART_CHUNK 4096

/* The geometry of y [batch..., P, R] = cdist(a [batch_a..., P, M], b [batch_b..., R, M]),
 * the batch dims broadcast. */
typedef struct cd_geom {
    int nb;                      /* y's batch dims */
    int64_t bshape[AG_MAX_DIMS]; /* their sizes */
    int64_t nbatch, P, R, M;
} cd_geom;

/* Where batch item bi of y (row-major over g's batch dims) starts in t, whose last nt of
 * tn batch dims (sizes tshape, element strides tstride) broadcast over them. */
static int64_t batch_off(const cd_geom *g, int tn, const int64_t *tshape, const int64_t *tstride, int64_t bi) {
    int64_t off = 0;
    for (int d = g->nb - 1; d >= 0; d--) {
        const int64_t i = bi % g->bshape[d];
        bi /= g->bshape[d];
        const int td = d - (g->nb - tn);
        if (td >= 0 && tshape[td] != 1) off += i * tstride[td];
    }
    return off;
}

/* Where batch item bi's rows start in a's (which 0) or b's (which 1) contiguous norms
 * [batch_t..., rows]. */
static int64_t norms_off(const cd_geom *g, const ag_tensor *t, int64_t bi) {
    const int tn = t->ndim - 2;
    int64_t st[AG_MAX_DIMS];
    ag__contiguous_strides(tn, t->shape, st);
    for (int d = 0; d < tn; d++) st[d] *= t->shape[tn];
    return batch_off(g, tn, t->shape, st, bi);
}

/* n[r] = Σ_k t[r, k]² for every row r of t [..., rows, M] (any strides), in float64. */
#define ROW_NORMS(SUF, T)                                                                                     \
    AG_VEC_CLONES static void row_norms_##SUF(T *restrict n, const ag_tensor *t) {                                          \
        const int nd = t->ndim;                                                                               \
        const int64_t rows = ag__numel(nd - 1, t->shape), M = t->shape[nd - 1], cs = t->stride[nd - 1];       \
        const T *base = (const T *)ag__ptr(t);                                                                \
        for (int64_t r = 0; r < rows; r++) {                                                                  \
            int64_t off = 0, rest = r;                                                                        \
            for (int d = nd - 2; d >= 0; d--) {                                                               \
                off += rest % t->shape[d] * t->stride[d];                                                     \
                rest /= t->shape[d];                                                                          \
            }                                                                                                 \
            const T *x = base + off;                                                                          \
            double s;                                                                                         \
            if (cs == 1) AG_SUM8(s, M, k, (double)x[k] * (double)x[k]);                                       \
            else AG_SUM8(s, M, k, (double)x[k * cs] * (double)x[k * cs]);                                     \
            n[r] = (T)s;                                                                                      \
        }                                                                                                     \
    }
ROW_NORMS(f32, float)
ROW_NORMS(f64, double)

/* One row of the forward: y_j = sqrt(max(na + nb_j - 2·y_j, 1e-30)), y_j holding a·b_j */
#define DIST_ROW(SUF, T, SQRT)                                                                                \
    AG_VEC_CLONES_512 static void dist_row_##SUF(T *restrict y, T na, const T *restrict nb, int64_t R) {      \
        const T lo = (T)D2_FLOOR;                                                                             \
        for (int64_t j = 0; j < R; j++) {                                                                     \
            const T d = na + nb[j] - 2 * y[j];                                                                \
            y[j] = SQRT(d < lo ? lo : d); /* NaN stays NaN */                                                 \
        }                                                                                                     \
    }
DIST_ROW(f32, float, sqrtf)
DIST_ROW(f64, double, sqrt)

/* One row of the adjoint: h_j = dy_j / y_j where y_j is above lo (the distance of a squared
 * distance at the floor), else 0, with dy_j read at step gs (0: one value), also added into
 * acc (the column block's partial sums); returns Σ_j h_j, summed in 16 lanes of T (lane k
 * takes the terms j ≡ k mod 16, as the old form's product summed in float) then added in
 * float64 in lane order: the same bits on every clone. */
#define RATIO_LOOP(T, GJ)                                                                                       \
    for (; j0 < R16; j0 += 16)                                                                                \
        for (int k = 0; k < 16; k++) {                                                                        \
            const int64_t j = j0 + k;                                                                         \
            const T v = y[j] > lo ? (GJ) / y[j] : 0;                                                          \
            h[j] = v;                                                                                         \
            acc[j] += v;                                                                                      \
            lane[k] += v;                                                                                     \
        }
#define RATIO_ROW(SUF, T)                                                                                     \
    AG_VEC_CLONES_512 static double ratio_row_##SUF(T *restrict h, T *restrict acc, const T *restrict dy,     \
                                                    int64_t gs, const T *restrict y, T lo, int64_t R) {       \
        T lane[16] = {0};                                                                                     \
        int64_t j0 = 0;                                                                                       \
        const int64_t R16 = R - R % 16;                                                                       \
        const T g0 = dy[0];                                                                                   \
        if (gs == 1) RATIO_LOOP(T, dy[j])                                                                        \
        else if (gs == 0) RATIO_LOOP(T, g0)                                                                      \
        else RATIO_LOOP(T, dy[j * gs])                                                                           \
        for (int64_t j = R16; j < R; j++) {                                                                   \
            const T v = y[j] > lo ? dy[j * gs] / y[j] : 0;                                                    \
            h[j] = v;                                                                                         \
            acc[j] += v;                                                                                      \
            lane[j - R16] += v;                                                                               \
        }                                                                                                     \
        double s = 0;                                                                                         \
        for (int k = 0; k < 16; k++) s += (double)lane[k];                                                    \
        return s;                                                                                             \
    }                                                                                                         \
    /* g_k = s·x_k - g_k over one row of a gradient (x read at step xs): rowsum(h)·a - h·b */                  \
    AG_VEC_CLONES static void grad_row_##SUF(T *restrict g, T s, const T *restrict x, int64_t xs, int64_t M) {  \
        if (xs == 1)                                                                                          \
            for (int64_t k = 0; k < M; k++) g[k] = s * x[k] - g[k];                                           \
        else                                                                                                  \
            for (int64_t k = 0; k < M; k++) g[k] = s * x[k * xs] - g[k];                                      \
    }
RATIO_ROW(f32, float)
RATIO_ROW(f64, double)

/* y [batch..., P, R] holding a·bᵀ: the distances, in place, the rows split over the threads. */
static void dist_rows(const cd_geom *g, ag_tensor *y, const ag_tensor *a, const ag_tensor *b, const void *na,
                      const void *nb) {
    const int64_t rows = g->nbatch * g->P, R = g->R;
    const int nt = rows > 1 ? ag__threads_for(rows * R) : 1;
    const bool f64 = y->dtype == AG_F64;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (int64_t r = 0; r < rows; r++) {
        const int64_t bi = r / g->P, i = r % g->P;
        const int64_t oa = norms_off(g, a, bi) + i, ob = norms_off(g, b, bi);
        if (f64) dist_row_f64((double *)ag__ptr(y) + r * R, ((const double *)na)[oa], (const double *)nb + ob, R);
        else dist_row_f32((float *)ag__ptr(y) + r * R, ((const float *)na)[oa], (const float *)nb + ob, R);
    }
}

/* cs [batch..., R] from part [blocks, R], the column partials of the blocks of COL_BLOCK rows
 * (per a batch item), added in block order in float64. */
static void col_sums(const cd_geom *g, void *cs, const void *part, bool f64) {
    const int64_t R = g->R, per = ag__ceil_div(g->P, COL_BLOCK);
    for (int64_t bi = 0; bi < g->nbatch; bi++)
        for (int64_t j = 0; j < R; j++) {
            double s = 0;
            for (int64_t k = 0; k < per; k++)
                s += f64 ? ((const double *)part)[(bi * per + k) * R + j] : ((const float *)part)[(bi * per + k) * R + j];
            if (f64) ((double *)cs)[bi * R + j] = s;
            else ((float *)cs)[bi * R + j] = (float)s;
        }
}

/* h = dy/y (0 at the floor) for every row of y, its row sums rs [batch..., P] and column
 * sums cs [batch..., R]: tasks of COL_BLOCK rows of one batch item split over the threads,
 * each writing its rows' sums and its block's column partials (part [blocks, R]), then the
 * partials of each batch item added in block order (float64). */
static void ratio_rows(const cd_geom *g, ag_tensor *h, const ag_tensor *dy, const ag_tensor *y, void *rs, void *cs,
                       void *part) {
    const int nd = y->ndim;
    const int64_t P = g->P, R = g->R, per = ag__ceil_div(P, COL_BLOCK), tasks = g->nbatch * per;
    const int64_t gs = dy->stride[nd - 1], grs = dy->stride[nd - 2];
    const bool f64 = y->dtype == AG_F64;
    const size_t es = f64 ? 8 : 4;
    const double lo = f64 ? sqrt(D2_FLOOR) : (double)sqrtf((float)D2_FLOOR);
    const int nt = tasks > 1 ? ag__threads_for(g->nbatch * P * R) : 1;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (int64_t t = 0; t < tasks; t++) {
        const int64_t bi = t / per, i0 = t % per * COL_BLOCK, i1 = i0 + COL_BLOCK < P ? i0 + COL_BLOCK : P;
        const char *gp = ag__ptr(dy) + (int64_t)es * batch_off(g, g->nb, dy->shape, dy->stride, bi);
        memset((char *)part + (size_t)(t * R) * es, 0, (size_t)R * es);
        for (int64_t i = i0; i < i1; i++) {
            const int64_t r = bi * P + i;
            if (f64) {
                double *hr = (double *)ag__ptr(h) + r * R;
                ((double *)rs)[r] = ratio_row_f64(hr, (double *)part + t * R, (const double *)gp + i * grs, gs,
                                                  (const double *)ag__ptr(y) + r * R, lo, R);
            } else {
                float *hr = (float *)ag__ptr(h) + r * R;
                ((float *)rs)[r] = (float)ratio_row_f32(hr, (float *)part + t * R, (const float *)gp + i * grs, gs,
                                                        (const float *)ag__ptr(y) + r * R, (float)lo, R);
            }
        }
    }
    col_sums(g, cs, part, f64);
}

/* d_i = Σ_q p[q·n + i] over count parts in part order, for i < m (float32). */
AG_VEC_CLONES static void add_parts_f32(float *restrict d, const float *restrict p, int64_t n, int64_t count, int64_t m) {
    for (int64_t i = 0; i < m; i++) d[i] = p[i];
    for (int64_t q = 1; q < count; q++)
        for (int64_t i = 0; i < m; i++) d[i] += p[q * n + i];
}

/* Whether t [..., rows, M]'s rows are plain for sgemm: unit column step, row stride >= M >= 1. */
static bool sgemm_rows(const ag_tensor *t) {
    const int n = t->ndim;
    return t->shape[n - 1] >= 1 && t->stride[n - 1] == 1 && t->stride[n - 2] >= t->shape[n - 1];
}

/* The adjoint's products block by block, float32 by oneDNN (the caller checks sgemm_rows on a and
 * b): each task takes the blocks of COL_BLOCK rows of one part of a batch item (at most
 * GROUPS_MAX parts, fixed by P alone), makes each block of h in its own buffer with ratio_row
 * (row sums into rs, column partials into part, as ratio_rows), then, while the block is in
 * cache, writes the block's rows of h·b into ga and adds hᵀ·a over the block's rows into its
 * part's partial of gb (gb itself with one part); the partials are then added in part order, and
 * cs made as ratio_rows does.  h is never written whole nor read back from memory (cdist_1k:
 * docs/benchmarks.md, session 15).  The same bits on any thread count it runs on.  AG_OK, AG_ERR_NOMEM, or
 * AG_ERR_BACKEND (nothing recorded: the caller runs the unfused form) when a product failed or
 * there are fewer tasks than threads. */
static ag_status ratio_blocks(const cd_geom *g, const ag_tensor *dy, const ag_tensor *y, const ag_tensor *a,
                              const ag_tensor *b, ag_tensor *ga, ag_tensor *gb, float *rs, float *cs, float *part) {
    const int nd = y->ndim;
    const int64_t P = g->P, R = g->R, M = g->M, per = ag__ceil_div(P, COL_BLOCK);
    const int64_t bpg = ag__ceil_div(per, GROUPS_MAX), gpi = ag__ceil_div(per, bpg), tasks = g->nbatch * gpi;
    const int64_t gs = dy->stride[nd - 1], grs = dy->stride[nd - 2], hrows = P < COL_BLOCK ? P : COL_BLOCK;
    const int64_t lda = a->stride[a->ndim - 2], ldb = b->stride[b->ndim - 2];
    const float lo = sqrtf((float)D2_FLOOR);
    const int nt = ag__threads_for(g->nbatch * P * R);
    if (tasks < nt) return AG_ERR_BACKEND; /* fewer tasks than threads: the unfused form's products thread */
    int64_t nh = 0, np = 0;
    bool over = ag__mul_overflow(hrows * R, nt, &nh) || (gb && gpi > 1 && ag__mul_overflow(tasks * R, M, &np));
    float *hbuf = ag__alloc_n(over ? -1 : nh, 4), *parts = np ? ag__alloc_n(np, 4) : NULL;
    if (!hbuf || (np && !parts)) {
        ag__free(hbuf);
        ag__free(parts);
        return AG_ERR_NOMEM;
    }
    float *dbp = parts ? parts : gb ? (float *)ag__ptr(gb) : NULL;
    int failed = 0;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (int64_t t = 0; t < tasks; t++) {
        const int64_t bi = t / gpi, k0 = t % gpi * bpg, k1 = k0 + bpg < per ? k0 + bpg : per;
        float *hb = hbuf + omp_get_thread_num() * hrows * R;
        const float *gp = (const float *)ag__ptr(dy) + batch_off(g, g->nb, dy->shape, dy->stride, bi);
        const float *ap = (const float *)ag__ptr(a) + batch_off(g, a->ndim - 2, a->shape, a->stride, bi);
        const float *bp = (const float *)ag__ptr(b) + batch_off(g, b->ndim - 2, b->shape, b->stride, bi);
        float *dp = dbp ? dbp + (parts ? t : bi) * R * M : NULL;
        for (int64_t k = k0; k < k1; k++) {
            const int64_t i0 = k * COL_BLOCK, i1 = i0 + COL_BLOCK < P ? i0 + COL_BLOCK : P;
            float *pp = part + (bi * per + k) * R;
            memset(pp, 0, (size_t)R * 4);
            for (int64_t i = i0; i < i1; i++)
                rs[bi * P + i] = (float)ratio_row_f32(hb + (i - i0) * R, pp, gp + i * grs, gs,
                                                      (const float *)ag__ptr(y) + (bi * P + i) * R, lo, R);
            bool ok = !ga || ag__sgemm_1t(false, false, i1 - i0, M, R, hb, R, bp, ldb, false,
                                          (float *)ag__ptr(ga) + (bi * P + i0) * M, M);
            ok = ok && (!dp || ag__sgemm_1t(true, false, R, M, i1 - i0, hb, R, ap + i0 * lda, lda, k > k0, dp, M));
            if (!ok) {
#pragma omp atomic write
                failed = 1;
            }
        }
    }
    if (parts && !failed) { /* gb = Σ of its parts, in part order, in chunks over the threads */
        const int64_t n = R * M, per_item = ag__ceil_div(n, PART_CHUNK), chunks = g->nbatch * per_item;
        const int nts = chunks > 1 ? ag__threads_for(g->nbatch * n * gpi) : 1;
#pragma omp parallel for num_threads(nts) schedule(static) if (nts > 1)
        for (int64_t c = 0; c < chunks; c++) {
            const int64_t bi = c / per_item, i0 = c % per_item * PART_CHUNK, m = i0 + PART_CHUNK < n ? PART_CHUNK : n - i0;
            add_parts_f32((float *)ag__ptr(gb) + bi * n + i0, parts + bi * gpi * n + i0, n, gpi, m);
        }
    }
    ag__free(hbuf);
    ag__free(parts);
    if (failed) return AG_ERR_BACKEND;
    col_sums(g, cs, part, false);
    return AG_OK;
}

/* gr [batch..., rows, M] holding h·x or hᵀ·x: s_i·t_i - gr_i on every row, t broadcast over
 * the batch (any strides), s the rows' sums [batch..., rows]. */
static void grad_rows(const cd_geom *g, ag_tensor *gr, const ag_tensor *t, const void *s) {
    const int nd = gr->ndim, tn = t->ndim - 2;
    const int64_t rows = gr->shape[nd - 2], M = g->M, all = g->nbatch * rows;
    const int64_t rs = t->stride[t->ndim - 2], cs = t->stride[t->ndim - 1];
    const int nt = all > 1 ? ag__threads_for(all * M) : 1;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (int64_t r = 0; r < all; r++) {
        const int64_t bi = r / rows, i = r % rows, off = batch_off(g, tn, t->shape, t->stride, bi) + i * rs;
        if (gr->dtype == AG_F64)
            grad_row_f64((double *)ag__ptr(gr) + r * M, ((const double *)s)[r], (const double *)ag__ptr(t) + off, cs, M);
        else grad_row_f32((float *)ag__ptr(gr) + r * M, ((const float *)s)[r], (const float *)ag__ptr(t) + off, cs, M);
    }
}

static ag_status cdist_backward(ag_tensor *out, ag_tensor *gout);
static ag_status cdist_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin);
static ag_tensor *cdist_jvp(ag_tensor *out, ag_tensor *const *tin);
/* y = sqrt(max(‖a‖² + ‖b‖² - 2a·bᵀ, 1e-30));  h = dy/y (0 at the floor), da = rowsum(h)·a - h·b,
 * db = colsum(h)·b - hᵀ·a */
static const ag_op op_cdist = {.name = "cdist", .grad_fn = "EuclideanDistBackward0", .backward = cdist_backward,
                               .saves = AG_SAVES_IN0 | AG_SAVES_IN1 | AG_SAVES_OUT | AG_GOUT_ANY_STRIDES,
                               .math = "p = 2 past 25 rows: y = sqrt(max(‖a‖² + ‖b‖² - 2a·bᵀ, 1e-30)) over the rows "
                                       "of a [..., P, M] and b [..., R, M];  h = dy/y (0 where y is at its floor), "
                                       "da = rowsum(h)·a - h·b, db = colsum(h)·b - hᵀ·a",
                               .backward_graph = cdist_backward_graph, .jvp = cdist_jvp,
                               .tangent = "ẏ = (rowsum(a⊙ȧ) + rowsum(b⊙ḃ)ᵀ - ȧ·bᵀ - a·ḃᵀ)/y, 0 where y is at its floor"};

/* g from y's shape [batch..., P, R]. */
static void geom_of(cd_geom *g, const ag_tensor *y, int64_t M) {
    g->nb = y->ndim - 2;
    memcpy(g->bshape, y->shape, sizeof(int64_t) * (size_t)g->nb);
    g->nbatch = ag__numel(g->nb, y->shape);
    g->P = y->shape[g->nb], g->R = y->shape[g->nb + 1], g->M = M;
}

/* The matrix form: y = a·bᵀ by the product, then the distances in one pass.  float32
 * under autocast too (the caller turns it off): in bf16 near points would cancel to noise. */
static ag_tensor *cdist_mm(ag_tensor *a, ag_tensor *b, int nd, const int64_t *yshape) {
    ag_tensor *y = ag__new(a->dtype, nd, yshape), *na = NULL, *nb = NULL;
    if (!y) return NULL;
    cd_geom g;
    geom_of(&g, y, a->shape[a->ndim - 1]);
    if (g.nbatch * g.P * g.R == 0) goto record;
    na = ag__new_unowned(a->dtype, a->ndim - 1, a->shape, false);
    nb = na ? ag__new_unowned(a->dtype, b->ndim - 1, b->shape, false) : NULL;
    if (!nb || ag__batched_gemm(y, a, false, b, true)) {
        ag_release(na);
        ag_release(nb);
        ag__discard(y);
        return NULL;
    }
    if (a->dtype == AG_F64) row_norms_f64((double *)ag__ptr(na), a), row_norms_f64((double *)ag__ptr(nb), b);
    else row_norms_f32((float *)ag__ptr(na), a), row_norms_f32((float *)ag__ptr(nb), b);
    dist_rows(&g, y, a, b, ag__ptr(na), ag__ptr(nb));
    ag_release(na);
    ag_release(nb);
record:;
    ag_tensor *in[2] = {a, b};
    if (ag__needs_grad(in, 2) && !ag__record(y, &op_cdist, in, 2)) return NULL;
    return ag__check_finite(y, "cdist");
}

/* h = dy/y (0 at the floor);  da = rowsum(h)·a - h·b, db = colsum(h)·b - hᵀ·a, each product
 * written into the gradient and the norms' term added there (float32 products under autocast):
 * float32 through oneDNN block by block (ratio_blocks), else h whole, then one product each. */
static ag_status cdist_backward(ag_tensor *out, ag_tensor *gout) {
    ag_tensor *a = out->in[0], *b = out->in[1], *h = NULL, *ga = NULL, *gb = NULL;
    cd_geom g;
    geom_of(&g, out, a->shape[a->ndim - 1]);
    const size_t es = out->dtype == AG_F64 ? 8 : 4;
    const int64_t per = ag__ceil_div(g.P, COL_BLOCK);
    int64_t gshape[AG_MAX_DIMS];
    memcpy(gshape, out->shape, sizeof(int64_t) * (size_t)out->ndim);
    gshape[g.nb + 1] = g.M;
    ag_status st = AG_OK;
    const uint8_t autocast = ag__autocast;
    ag__autocast = 0;
    /* rows' sums (nbatch·P), columns' sums (nbatch·R), block partials (nbatch·per·R) */
    const bool any = g.nbatch * g.P * g.R != 0;
    int64_t nsums = 0;
    bool over = ag__mul_overflow(per, g.R, &nsums) || ag__add_overflow(nsums, g.P + g.R, &nsums) ||
                ag__mul_overflow(nsums, g.nbatch, &nsums);
    char *sums = any ? ag__alloc_n(over ? -1 : nsums, es) : NULL; /* -1: fails, recorded */
    if (any && !sums) {
        st = AG_ERR_NOMEM;
        goto done;
    }
    char *rs = sums, *cs = sums ? sums + es * (size_t)(g.nbatch * g.P) : NULL;
    char *part = sums ? cs + es * (size_t)(g.nbatch * g.R) : NULL;
    gshape[g.nb] = g.P;
    if (ag__wants(out, 0) && !(ga = ag__new_unowned(out->dtype, out->ndim, gshape, !sums))) st = AG_ERR_NOMEM;
    gshape[g.nb] = g.R;
    if (!st && ag__wants(out, 1) && !(gb = ag__new_unowned(out->dtype, out->ndim, gshape, !sums))) st = AG_ERR_NOMEM;
    if (st || !sums) goto grads;
    ag_status bs = AG_ERR_BACKEND; /* not run: the unfused form */
    if (out->dtype == AG_F32 && ag_onednn_enabled() && ag__backend == AG_BACKEND_AUTO && sgemm_rows(a) && sgemm_rows(b))
        bs = ratio_blocks(&g, gout, out, a, b, ga, gb, (float *)rs, (float *)cs, (float *)part);
    if (bs == AG_ERR_NOMEM) {
        st = bs;
        goto done;
    }
    if (bs) {
        if (!(h = ag__new_unowned(out->dtype, out->ndim, out->shape, false))) {
            st = AG_ERR_NOMEM;
            goto done;
        }
        ratio_rows(&g, h, gout, out, rs, cs, part);
        if ((ga && (st = ag__batched_gemm(ga, h, false, b, false))) || (gb && (st = ag__batched_gemm(gb, h, true, a, false))))
            goto done;
    }
    if (ga) grad_rows(&g, ga, a, rs);
    if (gb) grad_rows(&g, gb, b, cs);
grads: /* ag__accumulate takes the gradient, failing or not */
    if (!st && ga) st = ag__accumulate(a, ga), ga = NULL;
    if (!st && gb) st = ag__accumulate(b, gb), gb = NULL;
done:
    ag__autocast = autocast;
    ag_release(ga);
    ag_release(gb);
    ag_release(h);
    ag__free(sums);
    return st;
}

/* ---- the rules in differentiable ops (create_graph, forward mode) ------------------------------- */
static ag_tensor *mT(ag_tensor *t) { return ag_transpose(t, t->ndim - 2, t->ndim - 1); }

/* Where y is above its floor (a distance whose square was not clamped), a constant bool tensor. */
static ag_tensor *above_floor(ag_tensor *y) {
    const double lo = y->dtype == AG_F64 ? sqrt(D2_FLOOR) : (double)sqrtf((float)D2_FLOOR);
    return ag_gt(ag_detach(y), ag_scalar(lo, y->dtype));
}

/* h = where(y above the floor, dy/y, 0);  da = a·rowsum(h) - h·b, db = b·colsum(h)ᵀ - hᵀ·a */
static ag_status cdist_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin) {
    ag_tensor *a = out->in[0], *b = out->in[1];
    const uint8_t autocast = ag__autocast;
    ag__autocast = 0;
    ag_tensor *h = ag_where(above_floor(out), ag_div(gout, out), ag_scalar(0, out->dtype));
    if (h && ag__wants(out, 0)) gin[0] = ag_sub(ag_mul(a, ag_sum_dim(h, -1, true)), ag_matmul(h, b));
    if (h && ag__wants(out, 1)) gin[1] = ag_sub(ag_mul(b, mT(ag_sum_dim(h, -2, true))), ag_matmul(mT(h), a));
    ag__autocast = autocast;
    if (!h || (ag__wants(out, 0) && !gin[0]) || (ag__wants(out, 1) && !gin[1])) return ag_last_status();
    return AG_OK;
}

/* dy = where(y above the floor, (rowsum(a⊙da) + rowsum(b⊙db)ᵀ - da·bᵀ - a·dbᵀ)/y, 0) */
static ag_tensor *cdist_jvp(ag_tensor *out, ag_tensor *const *tin) {
    ag_tensor *a = out->in[0], *b = out->in[1], *d = NULL;
    const uint8_t autocast = ag__autocast;
    ag__autocast = 0;
    if (tin[0]) d = ag_sub(ag_sum_dim(ag_mul(a, tin[0]), -1, true), ag_matmul(tin[0], mT(b)));
    if (tin[1] && (d || !tin[0]))
        d = ag__jvp_add(d, ag_sub(mT(ag_sum_dim(ag_mul(b, tin[1]), -1, true)), ag_matmul(a, mT(tin[1]))));
    ag_tensor *dy = d ? ag_where(above_floor(out), ag_div(d, out), ag_scalar(0, out->dtype)) : NULL;
    ag__autocast = autocast;
    return dy;
}

/* The batch shape of cdist(x1, x2) into yshape (then P, R) and its dims into *nd; fails naming op. */
static ag_status cdist_shape(const char *op, const ag_tensor *x1, const ag_tensor *x2, int *nd, int64_t *yshape) {
    char s1[AG_SHAPE_STR], s2[AG_SHAPE_STR];
    int nb;
    if (ag__broadcast_dims(x1->ndim - 2, x1->shape, x2->ndim - 2, x2->shape, &nb, yshape))
        return ag__fail(AG_ERR_SHAPE, "%s: the batch dims of %s and %s do not broadcast", op, ag__tshape(s1, x1),
                        ag__tshape(s2, x2));
    yshape[nb] = x1->shape[x1->ndim - 2];
    yshape[nb + 1] = x2->shape[x2->ndim - 2];
    *nd = nb + 2;
    return ag__check_alloc(op, *nd, yshape, x1->dtype);
}

ag_tensor *ag_cdist(ag_tensor *x1, ag_tensor *x2, double p) {
    AG_CHECK_HANDLES(NULL, "cdist", x1, x2);
    if (!x1 || !x2) return NULL;
    const char *op = "cdist";
    char s1[AG_SHAPE_STR], s2[AG_SHAPE_STR];
    if (ag__check_float(op, x1, x2) || check_p(op, p)) return NULL;
    if (x1->ndim < 2 || x2->ndim < 2 || x1->shape[x1->ndim - 1] != x2->shape[x2->ndim - 1])
        return ag__fail_null(AG_ERR_SHAPE, "%s: expects [..., P, M] and [..., R, M] with one M, got %s and %s", op,
                             ag__tshape(s1, x1), ag__tshape(s2, x2));
    if (x1->ndim == AG_MAX_DIMS || x2->ndim == AG_MAX_DIMS)
        return ag__fail_null(AG_ERR_SHAPE, "%s: inputs of %d dims leave no room for the pair dim", op, AG_MAX_DIMS);
    const int64_t P = x1->shape[x1->ndim - 2], R = x2->shape[x2->ndim - 2];
    if (p == 2 && (P > 25 || R > 25)) { /* PyTorch's default compute mode (its _euclidean_dist) */
        int nd = 0;
        int64_t yshape[AG_MAX_DIMS];
        if (cdist_shape(op, x1, x2, &nd, yshape)) return NULL;
        const uint8_t autocast = ag__autocast; /* float32 under autocast too, as PyTorch's cdist: */
        ag__autocast = 0;                      /* in bf16 the difference would cancel to noise */
        ag_tensor *y = cdist_mm(x1, x2, nd, yshape);
        ag__autocast = autocast;
        return y;
    }
    if (ag__composite_begin(op)) return NULL;
    /* y[..., i, j] = ‖x1[..., i, :] - x2[..., j, :]‖_p, through [..., P, 1, M] - [..., 1, R, M] */
    ag_tensor *diff = ag_sub(ag_unsqueeze(x1, -2), ag_unsqueeze(x2, -3));
    return ag__composite_end(ag_linalg_vector_norm(diff, p, 1, (const int[]){-1}, false));
}

ag_tensor *ag_pairwise_distance(ag_tensor *x1, ag_tensor *x2, double p, double eps, bool keepdim) {
    AG_CHECK_HANDLES(NULL, "pairwise_distance", x1, x2);
    if (!x1 || !x2) return NULL;
    const char *op = "pairwise_distance";
    if (ag__check_float(op, x1, x2) || check_p(op, p)) return NULL;
    if (ag__composite_begin(op)) return NULL;
    /* y = ‖x1 - x2 + eps‖_p over the last dim (x1 and x2 broadcast) */
    ag_tensor *diff = ag_add_scalar(ag_sub(x1, x2), eps);
    if (diff && diff->ndim == 0) diff = ag_unsqueeze(diff, 0); /* two 0-d inputs: a norm over one element */
    return ag__composite_end(ag_linalg_vector_norm(diff, p, 1, (const int[]){-1}, keepdim));
}

ag_tensor *ag_cosine_similarity(ag_tensor *x1, ag_tensor *x2, int dim, double eps) {
    AG_CHECK_HANDLES(NULL, "cosine_similarity", x1, x2);
    if (!x1 || !x2) return NULL;
    const char *op = "cosine_similarity";
    if (ag__check_float(op, x1, x2)) return NULL;
    int ndim;
    int64_t shape[AG_MAX_DIMS];
    if (ag__broadcast_shape(op, x1, x2, &ndim, shape)) return NULL;
    if (ag__dim(op, dim, ndim) < 0) return NULL;
    if (ag__composite_begin(op)) return NULL;
    /* y = Σ x1·x2 / (max(‖x1‖, eps)·max(‖x2‖, eps)) along dim, x1 and x2 broadcast */
    ag_shape s = {ndim, {0}};
    for (int d = 0; d < ndim; d++) s.dim[d] = shape[d];
    ag_tensor *a = ag_expand(x1, s), *b = ag_expand(x2, s);
    ag_tensor *na = ag_clamp(ag_linalg_vector_norm(a, 2, 1, &dim, false), eps, INFINITY);
    ag_tensor *nb = ag_clamp(ag_linalg_vector_norm(b, 2, 1, &dim, false), eps, INFINITY);
    return ag__composite_end(ag_div(ag_sum_dim(ag_mul(a, b), dim, false), ag_mul(na, nb)));
}

ag_tensor *ag_lp_normalize(ag_tensor *x, double p, int dim, double eps) {
    AG_CHECK_HANDLES(NULL, "normalize", x);
    if (!x) return NULL;
    const char *op = "normalize";
    if (ag__check_float(op, x, NULL) || check_p(op, p) || ag__dim(op, dim, x->ndim) < 0) return NULL;
    if (ag__composite_begin(op)) return NULL;
    /* y = x / max(‖x‖_p along dim, eps) */
    ag_tensor *norm = ag_clamp(ag_linalg_vector_norm(x, p, 1, &dim, true), eps, INFINITY);
    return ag__composite_end(ag_div(x, norm));
}

const ag_op *const ag__distance_ops[] = {&op_cdist, NULL};

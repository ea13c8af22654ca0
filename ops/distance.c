/*
 * distance.c - cdist, pairwise_distance, cosine_similarity and F.normalize
 * (ag_lp_normalize).
 *
 * cdist with p = 2 past 25 rows (PyTorch's default compute mode, its _euclidean_dist)
 * is one op, y = sqrt(max(‖a‖² + ‖b‖² - 2a·b, 1e-30)), run as one product and one pass:
 * the product a·bᵀ is written into y, then one threaded pass turns each element into
 * the distance with the row norms (a pass over the inputs, P·M + R·M) added there; in
 * float32 by oneDNN the product runs in blocks of 128 rows, runs of blocks a thread, each
 * block turned into distances while it is in cache (dist_blocks).  The adjoint makes h = dy/y
 * (0 where the distance is at its floor: a zero distance) in blocks of 64 rows that also sum
 * h's rows and, per block, its columns, and writes da = rowsum(h)·a - h·b and db = colsum(h)·b
 * - hᵀ·a straight into the gradients: in float32 each block's h·b and hᵀ·a run while the block
 * is in cache (h is never whole), each thread's blocks in memory of its own, in one region with
 * the gradients' rows (ratio_blocks), else h is made whole and each product runs once.  No
 * augmented operand, clamp, sqrt or division runs as an op of its own (cdist_1k forward +
 * backward: docs/benchmarks.md, sessions 8, 15, 17 and 20).  Every row, column block and part of
 * hᵀ·a is summed by one thread in a fixed order: the same bits on any thread count, but that
 * with fewer tasks of blocks than threads the float32 forward takes the whole product (oneDNN's
 * matmul primitive, whose sums over M may differ from its sgemm's by blocks in the last bit:
 * they differed at M = 5 and 128, not at 8, 17, 33 and 64) and the adjoint the unfused form (its
 * products threaded, their bits oneDNN's).
 *
 * Every other cdist (p ≠ 2, or p = 2 at 25 rows or fewer; PyTorch's _cdist_forward) is the op
 * cdist_p, its direct form: no P·R·M differences are made; b is packed as bᵀ in blocks of 32
 * columns, and each row of a runs over a block at once (32 float64 sums in registers, one loop
 * a p: 0, 1, 2, inf, 1.5, 3 or any), the rows over the threads; its adjoint is the same loop
 * over one side's rows (PyTorch's _cdist_backward; rows of fewer than 16 columns padded with zeros to
 * 8 or 16, so the loop over them is one or two vectors), each gradient row summed by one thread.
 * The other forms (pairwise_distance, cosine_similarity, normalize) are built from registered
 * ops; their norms go through ag_linalg_vector_norm, whose gradient is 0 where a norm is 0.
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
#include "ops/vmathf.h"

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
/* Columns of gb (rows of its transposed parts) one task adds up and transposes */
#define PART_COLS 16

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

/* Where row r (row-major over all of t's dims but the last) of t starts, in elements. */
static int64_t row_off(const ag_tensor *t, int64_t r) {
    int64_t off = 0;
    for (int d = t->ndim - 2; d >= 0; d--) {
        off += r % t->shape[d] * t->stride[d];
        r /= t->shape[d];
    }
    return off;
}

/* Σ_k x_k² over one row of M contiguous float32 values, in float64 (row_norms_f32's sum of a row), rounded. */
AG_VEC_CLONES static float row_norm_f32(const float *restrict x, int64_t M) {
    double s;
    AG_SUM8(s, M, k, (double)x[k] * (double)x[k]);
    return (float)s;
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

/* d[j·M + k] = Σ_q p_q[k·ld + j] over count parts p_q [M, R] (rows ld apart) in part order
 * (float32), for the columns j0 <= j < j1 (at most PART_COLS) and every k < M: gb from the parts of
 * gbᵀ, added 16 columns by 16 rows at a time in a tile, then transposed out of it. */
AG_VEC_CLONES static void add_parts_t_f32(float *restrict d, const float *const *p, int64_t ld, int64_t M,
                                          int64_t count, int64_t j0, int64_t j1) {
    float tile[16 * PART_COLS];
    const int64_t w = j1 - j0;
    for (int64_t k0 = 0; k0 < M; k0 += 16) {
        const int64_t kn = M - k0 < 16 ? M - k0 : 16;
        for (int64_t kk = 0; kk < kn; kk++)
            for (int64_t jj = 0; jj < w; jj++) tile[kk * PART_COLS + jj] = p[0][(k0 + kk) * ld + j0 + jj];
        for (int64_t q = 1; q < count; q++)
            for (int64_t kk = 0; kk < kn; kk++)
                for (int64_t jj = 0; jj < w; jj++) tile[kk * PART_COLS + jj] += p[q][(k0 + kk) * ld + j0 + jj];
        for (int64_t jj = 0; jj < w; jj++)
            for (int64_t kk = 0; kk < kn; kk++) d[(j0 + jj) * M + k0 + kk] = tile[kk * PART_COLS + jj];
    }
}

/* The row stride (floats) of the adjoint's blocks of h and parts of gbᵀ, R floats a row: R rounded up
 * to 16, and 16 more where that is a multiple of 128 (512 bytes), so that a block's rows do not lie a
 * multiple of 4 KiB apart, where they fall into the same sets of the L1 cache.  At R = 1024 (rows
 * 4 KiB apart) oneDNN's h·b and aᵀ·h over 64-row blocks ran 8% faster on one thread with rows 1040
 * floats apart (1 416 -> 1 309 µs for the 16 blocks) and 8-10% on two (wall; 762-784 -> 700-718 µs):
 * docs/benchmarks.md, Session 20 (cdist20).  The row stride changes no product's terms nor their order. */
static int64_t block_ld(int64_t R) {
    const int64_t ld = ag__ceil_div(R, 16) * 16;
    return ld % 128 ? ld : ld + 16;
}

/* Whether t [..., rows, M]'s rows are plain for sgemm: unit column step, row stride >= M >= 1. */
static bool sgemm_rows(const ag_tensor *t) {
    const int n = t->ndim;
    return t->shape[n - 1] >= 1 && t->stride[n - 1] == 1 && t->stride[n - 2] >= t->shape[n - 1];
}

/* What ratio_blocks' threads share. */
typedef struct rb_job {
    const cd_geom *g;
    const ag_tensor *dy, *y, *a, *b;
    ag_tensor *ga, *gb;
    float *rs, *cs, *part;
    int64_t per, bpg, gpi, tasks, ld, hrows;
    float **own;   /* each thread's block: h's rows, then the parts of gbᵀ of its tasks */
    size_t *bytes; /* their sizes */
    bool on_caller; /* the blocks allocated by the calling thread (a user allocator is installed) */
    int failed;     /* 1: a product failed, or the team is not nt; 2: a block could not be allocated */
    int nt;         /* the threads the blocks were sized for */
} rb_job;

/* The thread of n that runs task tau (runs of consecutive tasks a thread, ag__share_start). */
static int task_owner(int64_t tasks, int n, int64_t tau) {
    int t = 0;
    while (t + 1 < n && ag__share_start(tasks, t + 1, n) <= tau) t++;
    return t;
}

/* Thread t of n's share of ratio_blocks (its barriers: every thread of the region calls it). */
static void ratio_blocks_share(rb_job *j, int t, int n) {
    const cd_geom *g = j->g;
    const int nd = j->y->ndim;
    const int64_t P = g->P, R = g->R, M = g->M, per = j->per, bpg = j->bpg, gpi = j->gpi, ld = j->ld;
    const int64_t gs = j->dy->stride[nd - 1], grs = j->dy->stride[nd - 2];
    const int64_t lda = j->a->stride[j->a->ndim - 2], ldb = j->b->stride[j->b->ndim - 2];
    const int64_t t0 = ag__share_start(j->tasks, t, n), t1 = ag__share_start(j->tasks, t + 1, n);
    const float lo = sqrtf((float)D2_FLOOR);
    if (n != j->nt) { /* OpenMP granted fewer threads than asked (OMP_DYNAMIC): each would take more */
        if (t == 0) { /* tasks than its block was sized for; every thread returns before any write */
#pragma omp atomic write
            j->failed = 1;
        }
        return;
    }
    if (!j->on_caller) {
        j->own[t] = ag__cache_alloc(j->bytes[t]);
        if (!j->own[t]) {
#pragma omp atomic write
            j->failed = 2;
        }
    }
    AG_BARRIER(n);
    float *own = j->own[t];
    int failed;
#pragma omp atomic read
    failed = j->failed;
    for (int64_t tau = t0; tau < t1 && !failed; tau++) {
        const int64_t bi = tau / gpi, k0 = tau % gpi * bpg, k1 = k0 + bpg < per ? k0 + bpg : per;
        const float *gp = (const float *)ag__ptr(j->dy) + batch_off(g, g->nb, j->dy->shape, j->dy->stride, bi);
        const float *ap = (const float *)ag__ptr(j->a) + batch_off(g, j->a->ndim - 2, j->a->shape, j->a->stride, bi);
        const float *bp = (const float *)ag__ptr(j->b) + batch_off(g, j->b->ndim - 2, j->b->shape, j->b->stride, bi);
        float *dp = j->gb ? own + j->hrows * ld + (tau - t0) * M * ld : NULL; /* this task's part of gbᵀ */
        for (int64_t k = k0; k < k1; k++) {
            const int64_t i0 = k * COL_BLOCK, i1 = i0 + COL_BLOCK < P ? i0 + COL_BLOCK : P;
            float *pp = j->part + (bi * per + k) * R, *gr = j->ga ? (float *)ag__ptr(j->ga) + (bi * P + i0) * M : NULL;
            memset(pp, 0, (size_t)R * 4);
            for (int64_t i = i0; i < i1; i++)
                j->rs[bi * P + i] = (float)ratio_row_f32(own + (i - i0) * ld, pp, gp + i * grs, gs,
                                                         (const float *)ag__ptr(j->y) + (bi * P + i) * R, lo, R);
            bool ok = !gr || ag__sgemm_1t(false, false, i1 - i0, M, R, own, ld, bp, ldb, false, gr, M);
            ok = ok && (!dp || ag__sgemm_1t(true, false, M, R, i1 - i0, ap + i0 * lda, lda, own, ld, k > k0, dp, ld));
            if (!ok) {
#pragma omp atomic write
                j->failed = 1;
                break;
            }
            if (gr) /* da's rows: rowsum(h)·a - h·b, while h·b is in cache */
                for (int64_t i = i0; i < i1; i++) grad_row_f32(gr + (i - i0) * M, j->rs[bi * P + i], ap + i * lda, 1, M);
        }
    }
    AG_BARRIER(n);
#pragma omp atomic read
    failed = j->failed;
    if (!failed && j->gb) { /* gb = (Σ of gbᵀ's parts, in part order)ᵀ, colsum(h)·b - that, by columns */
        const int64_t chunk_n = ag__ceil_div(R, PART_COLS), chunks = g->nbatch * chunk_n;
        const int64_t bcs = j->b->stride[j->b->ndim - 1];
        const float *parts[GROUPS_MAX];
        for (int64_t c = ag__share_start(chunks, t, n); c < ag__share_start(chunks, t + 1, n); c++) {
            const int64_t bi = c / chunk_n, c0 = c % chunk_n * PART_COLS, c1 = c0 + PART_COLS < R ? c0 + PART_COLS : R;
            for (int64_t q = 0; q < gpi; q++) {
                const int64_t tau = bi * gpi + q;
                const int o = task_owner(j->tasks, n, tau);
                parts[q] = j->own[o] + j->hrows * ld + (tau - ag__share_start(j->tasks, o, n)) * M * ld;
            }
            float *gbi = (float *)ag__ptr(j->gb) + bi * R * M;
            add_parts_t_f32(gbi, parts, ld, M, gpi, c0, c1);
            const float *bp = (const float *)ag__ptr(j->b) + batch_off(g, j->b->ndim - 2, j->b->shape, j->b->stride, bi);
            for (int64_t jc = c0; jc < c1; jc++) { /* colsum(h) in block order (col_sums' sums), then the row of gb */
                double sum = 0;
                for (int64_t k = 0; k < per; k++) sum += j->part[(bi * per + k) * R + jc];
                j->cs[bi * R + jc] = (float)sum;
                grad_row_f32(gbi + jc * M, (float)sum, bp + jc * ldb, bcs, M);
            }
        }
    }
    AG_BARRIER(n);
    if (!j->on_caller) ag__cache_free(own, j->bytes[t]);
}

/* The adjoint block by block, float32 by oneDNN (the caller checks sgemm_rows on a and b), in one
 * region: each thread takes a run of tasks, each the blocks of COL_BLOCK rows of one part of a
 * batch item (at most GROUPS_MAX parts, fixed by P alone); for each block it makes h in its own
 * block of memory with ratio_row (row sums into rs, column partials into part, as ratio_rows), then,
 * while the block is in cache, writes the block's rows of h·b into ga and turns them into da's
 * rows (rowsum(h)·a - h·b), and adds aᵀ·h over the block's rows into its task's partial of gbᵀ [M,
 * R] (at M = 64, R = 1024 oneDNN runs aᵀ·h, [64, 64]·[64, 1024], 20% faster than hᵀ·a into gb,
 * [1024, 64]·[64, 64]; the same terms, the same bits on the AMD host).  After a barrier the threads
 * take runs of PART_COLS columns of gb: the partials added in part order and transposed, colsum(h)
 * made in block order (col_sums' sums) and gb's rows finished as colsum(h)·b - hᵀ·a.  h is never
 * written whole nor read back from memory (cdist_1k: docs/benchmarks.md, sessions 15, 17 and 20).
 * Each thread's block comes from its own cache of freed blocks (ag__cache_alloc in the region), so
 * that it lies in that thread's caches step after step: with one block of the calling thread's for
 * all threads, the second thread's h rows ran 2-4x slower on the AMD host (cdist_1k on two threads
 * 1 670 -> 1 490 µs with blocks of their own; session 20).  The same bits on any thread count it
 * runs on.  AG_OK (ga and gb finished), AG_ERR_NOMEM (recorded), or AG_ERR_BACKEND (nothing
 * recorded: the caller runs the unfused form) when a product failed, there are fewer tasks than
 * threads, or OpenMP granted a smaller team than nt (OMP_DYNAMIC on a loaded machine): the blocks
 * are sized for nt threads' shares of the tasks. */
static ag_status ratio_blocks(const cd_geom *g, const ag_tensor *dy, const ag_tensor *y, const ag_tensor *a,
                              const ag_tensor *b, ag_tensor *ga, ag_tensor *gb, float *rs, float *cs, float *part) {
    const int64_t P = g->P, R = g->R, M = g->M, per = ag__ceil_div(P, COL_BLOCK);
    const int64_t bpg = ag__ceil_div(per, GROUPS_MAX), gpi = ag__ceil_div(per, bpg), tasks = g->nbatch * gpi;
    const int64_t ld = block_ld(R), hrows = P < COL_BLOCK ? P : COL_BLOCK;
    const int nt = ag__threads_for(g->nbatch * P * R);
    if (tasks < nt) return AG_ERR_BACKEND; /* fewer tasks than threads: the unfused form's products thread */
    int64_t most = 0; /* the largest thread block: h's rows and the parts of as many tasks as a thread takes */
    if (ag__mul_overflow(ag__ceil_div(tasks, nt) * M, ld, &most) || ag__add_overflow(most, hrows * ld, &most) ||
        most > AG_MAX_SIZE / 4)
        return ag__fail(AG_ERR_NOMEM, "out of memory allocating %lld items of %zu bytes", (long long)most, (size_t)4);
    float **own = ag__alloc_n(nt, sizeof *own);
    size_t *bytes = ag__alloc_n(nt, sizeof *bytes);
    if (!own || !bytes) {
        ag__free(own);
        ag__free(bytes);
        return AG_ERR_NOMEM;
    }
    /* A user allocator (ag_set_allocator) is only called on the calling thread: the blocks are made here */
    rb_job j = {g, dy, y, a, b, ga, gb, rs, cs, part, per, bpg, gpi, tasks, ld, hrows, own, bytes, ag__alloc_hooked, 0, nt};
    for (int t = 0; t < nt; t++) {
        const int64_t nt_tasks = ag__share_start(tasks, t + 1, nt) - ag__share_start(tasks, t, nt);
        bytes[t] = (size_t)(hrows * ld + (gb ? nt_tasks * M * ld : 0)) * 4;
        own[t] = NULL;
        if (j.on_caller && !(own[t] = ag__cache_alloc(bytes[t]))) j.failed = 2;
    }
    if (!j.failed) AG_PARALLEL(nt, { ratio_blocks_share(&j, ag__thread, ag__team); });
    int lost = -1; /* a thread whose block could not be allocated (its record is that thread's) */
    for (int t = 0; t < nt; t++) {
        if (!own[t] && lost < 0) lost = t;
        if (j.on_caller) ag__cache_free(own[t], bytes[t]);
    }
    const size_t lost_bytes = lost >= 0 ? bytes[lost] : 0;
    ag__free(own);
    ag__free(bytes);
    if (j.failed == 2) return ag__fail(AG_ERR_NOMEM, "out of memory allocating %zu bytes", lost_bytes);
    return j.failed ? AG_ERR_BACKEND : AG_OK;
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

/* Rows of a (of one batch item) whose product and distances one task of dist_blocks makes */
#define FWD_ROWS 128

/* Thread t of n's share of dist_blocks (its barrier: every thread of the region calls it). */
static void dist_blocks_share(const cd_geom *g, ag_tensor *y, const ag_tensor *a, const ag_tensor *b, float *nb, int t,
                              int n, int *failed) {
    const int64_t P = g->P, R = g->R, M = g->M, per = ag__ceil_div(P, FWD_ROWS), tasks = g->nbatch * per;
    const int64_t brows = ag__numel(b->ndim - 1, b->shape);
    const int64_t lda = a->stride[a->ndim - 2], ldb = b->stride[b->ndim - 2];
    const float *A = (const float *)ag__ptr(a), *B = (const float *)ag__ptr(b);
    for (int64_t r = ag__share_start(brows, t, n); r < ag__share_start(brows, t + 1, n); r++)
        nb[r] = row_norm_f32(B + row_off(b, r), M);
    AG_BARRIER(n);
    for (int64_t k = ag__share_start(tasks, t, n); k < ag__share_start(tasks, t + 1, n); k++) {
        const int64_t bi = k / per, i0 = k % per * FWD_ROWS, i1 = i0 + FWD_ROWS < P ? i0 + FWD_ROWS : P;
        const float *ap = A + batch_off(g, a->ndim - 2, a->shape, a->stride, bi) + i0 * lda;
        const float *bp = B + batch_off(g, b->ndim - 2, b->shape, b->stride, bi);
        float *yb = (float *)ag__ptr(y) + (bi * P + i0) * R;
        if (!ag__sgemm_1t(false, true, i1 - i0, R, M, ap, lda, bp, ldb, false, yb, R)) {
#pragma omp atomic write
            *failed = 1;
            continue;
        }
        const float *nbp = nb + norms_off(g, b, bi);
        for (int64_t i = 0; i < i1 - i0; i++) dist_row_f32(yb + i * R, row_norm_f32(ap + i * lda, M), nbp, R);
    }
}

/* The float32 forward by blocks (the caller checks sgemm_rows on a and b): b's norms into nb
 * [batch_b..., R], its rows split over the threads; then tasks of FWD_ROWS rows of a batch item,
 * runs of consecutive tasks a thread, each task's a_blk·bᵀ by ag__sgemm_1t into its rows of y and
 * the rows turned into distances (each row's norm made there) while they are in cache.  Thread t
 * writes the rows of y that the passes after it give thread t too (the sum's halves, the adjoint's
 * parts: on the 2-core AMD host a core reads what the other wrote 2-3x slower than its own, session
 * 20), and no pass reads y from memory (cdist_1k on two threads: docs/benchmarks.md, Session 20).  The
 * same terms in the same order as the unblocked form's norms and distances; the products are oneDNN's
 * sgemm's (the unblocked form's its matmul primitive's).  nt threads: at most the tasks, 1 in a
 * caller's region (core/parallel.h AG_PARALLEL: no region on one thread).  false when a product
 * failed (nothing recorded: the caller runs the unblocked form, which writes all of y and nb again). */
static bool dist_blocks(const cd_geom *g, ag_tensor *y, const ag_tensor *a, const ag_tensor *b, float *nb, int nt) {
    int failed = 0;
    AG_PARALLEL(nt, { dist_blocks_share(g, y, a, b, nb, ag__thread, ag__team, &failed); });
    return !failed;
}

/* The matrix form: y = a·bᵀ by the product, then the distances in one pass (float32 by oneDNN:
 * by blocks, dist_blocks, where there are as many blocks as threads).  float32
 * under autocast too (the caller turns it off): in bf16 near points would cancel to noise. */
static ag_tensor *cdist_mm(ag_tensor *a, ag_tensor *b, int nd, const int64_t *yshape) {
    ag_tensor *y = ag__new(a->dtype, nd, yshape), *na = NULL, *nb = NULL;
    if (!y) return NULL;
    cd_geom g;
    geom_of(&g, y, a->shape[a->ndim - 1]);
    if (g.nbatch * g.P * g.R == 0) goto record;
    nb = ag__new_unowned(a->dtype, b->ndim - 1, b->shape, false);
    const int nt = ag__threads_for(g.nbatch * g.P * g.R);
    if (nb && a->dtype == AG_F32 && ag_onednn_enabled() && ag__backend == AG_BACKEND_AUTO && sgemm_rows(a) &&
        sgemm_rows(b) && g.nbatch * ag__ceil_div(g.P, FWD_ROWS) >= nt && dist_blocks(&g, y, a, b, (float *)ag__ptr(nb), nt))
        goto done;
    na = nb ? ag__new_unowned(a->dtype, a->ndim - 1, a->shape, false) : NULL;
    if (!na || ag__batched_gemm(y, a, false, b, true)) {
        ag_release(na);
        ag_release(nb);
        ag__discard(y);
        return NULL;
    }
    if (a->dtype == AG_F64) row_norms_f64((double *)ag__ptr(na), a), row_norms_f64((double *)ag__ptr(nb), b);
    else row_norms_f32((float *)ag__ptr(na), a), row_norms_f32((float *)ag__ptr(nb), b);
    dist_rows(&g, y, a, b, ag__ptr(na), ag__ptr(nb));
done:
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
        if (ga) grad_rows(&g, ga, a, rs);
        if (gb) grad_rows(&g, gb, b, cs);
    }
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

/* ---- cdist, any other p: the direct op ---------------------------------------------------------- */

/* The inner loop a p takes: 0, 1, 2, inf, 1.5, 3 or any other (libm's pow). */
typedef enum cd_kind { CD_P0, CD_P1, CD_P2, CD_PINF, CD_P15, CD_P3, CD_PGEN } cd_kind;
static cd_kind kind_of(double p) {
    return p == 0 ? CD_P0 : p == 1 ? CD_P1 : p == 2 ? CD_P2 : isinf(p) ? CD_PINF : p == 1.5 ? CD_P15 : p == 3 ? CD_P3 : CD_PGEN;
}

/* Columns of b one block of the packed bᵀ holds: [M][CD_JB], the forward's accumulators (float64)
 * stay in registers */
#define CD_JB 32
/* Above or below these a sum of |d|^p may have overflowed or lost bits to underflow: the pair is
 * summed again scaled by its largest |d| (cd_scaled) */
#define CD_SUM_HI 0x1p900
#define CD_SUM_LO 0x1p-900

/* t^q for t >= 0: products and square roots where q is 0.5, 1, 2 or 3, else pow. */
static inline double pow_q(double t, double q) {
    if (q == 1) return t;
    if (q == 2) return t * t;
    if (q == 3) return t * t * t;
    if (q == 0.5) return sqrt(t);
    return pow(t, q);
}

/* |x|^q in float64 for a float32 x, as 2^(q·log2|x|) (vmathf_log2_d, vmathf_exp2_dd: within 1e-12
 * relative, where libm's pow is a call the loops cannot vectorise): 0 at x = 0, NaN for NaN, inf
 * past 2^1020. */
static inline __attribute__((always_inline)) double cd_powf(float x, double q) {
    const double t = q * vmathf_log2_d(x), r = t > 1020.0 ? INFINITY : vmathf_exp2_dd(t);
    return x == 0 ? 0 : x != x ? (double)x : r;
}

/* acc[jj] = the fold over k of STEP, d = a row's x[k] - bᵀ[k][jj] rounded to T (PyTorch's
 * difference) then widened: one block of CD_JB columns of b, summed in k order in float64. */
#define CD_FWD(NAME, T, STEP)                                                                                 \
    AG_VEC_CLONES_512 static void NAME(double *restrict acc, const T *restrict x, const T *restrict bt,       \
                                       int64_t M, double p) {                                                 \
        (void)p;                                                                                              \
        for (int jj = 0; jj < CD_JB; jj++) acc[jj] = 0;                                                       \
        for (int64_t k = 0; k < M; k++) {                                                                     \
            const T xk = x[k];                                                                                \
            const T *restrict c = bt + k * CD_JB;                                                             \
            for (int jj = 0; jj < CD_JB; jj++) {                                                              \
                const double d = (double)(T)(xk - c[jj]);                                                     \
                STEP;                                                                                         \
            }                                                                                                 \
        }                                                                                                     \
    }
#define CD_FWD_ALL(SUF, T, POW)                                                                               \
    CD_FWD(fwd_p0_##SUF, T, acc[jj] += d != 0)                                                                \
    CD_FWD(fwd_p1_##SUF, T, acc[jj] += fabs(d))                                                               \
    CD_FWD(fwd_p2_##SUF, T, acc[jj] += d * d)                                                                 \
    CD_FWD(fwd_pinf_##SUF, T, const double t = fabs(d); acc[jj] = t > acc[jj] ? t : acc[jj])                 \
    CD_FWD(fwd_p15_##SUF, T, const double t = fabs(d); acc[jj] += t * sqrt(t))                                \
    CD_FWD(fwd_p3_##SUF, T, const double t = fabs(d); acc[jj] += t * t * t)                                   \
    CD_FWD(fwd_pgen_##SUF, T, acc[jj] += POW(d, p))                                                              \
    typedef void (*cd_fwd_##SUF)(double *restrict, const T *restrict, const T *restrict, int64_t, double);    \
    static const cd_fwd_##SUF fwd_##SUF[] = {fwd_p0_##SUF,  fwd_p1_##SUF, fwd_p2_##SUF,  fwd_pinf_##SUF,      \
                                             fwd_p15_##SUF, fwd_p3_##SUF, fwd_pgen_##SUF};                    \
    /* (Σ_k |d_k|^p)^(1/p) of x and the row of b at bt[k·CD_JB] scaled by max|d| (NaN where s is) */          \
    static double cd_scaled_##SUF(double s, const T *x, const T *bt, int64_t M, double p) {                   \
        double m = 0, acc = 0;                                                                                \
        if (isnan(s)) return s;                                                                               \
        for (int64_t k = 0; k < M; k++) m = fmax(m, fabs((double)(T)(x[k] - bt[k * CD_JB])));                 \
        if (m == 0) return 0;                                                                                 \
        for (int64_t k = 0; k < M; k++) acc += pow_q(fabs((double)(T)(x[k] - bt[k * CD_JB])) / m, p);        \
        return m * (p == 2 ? sqrt(acc) : pow(acc, 1 / p));                                                    \
    }
/* |d|^p of a float32 difference by cd_powf, of a float64 one by libm */
#define CD_POW_F32(d, p) cd_powf((float)(d), p)
#define CD_POW_F64(d, p) pow(fabs(d), p)
CD_FWD_ALL(f32, float, CD_POW_F32)
CD_FWD_ALL(f64, double, CD_POW_F64)

/* The distance of a sum s of |d|^p (the count, Σ|d| or max|d| as they are). */
static inline double cd_finish(cd_kind kind, double s, double p) {
    switch (kind) {
    case CD_P2: return sqrt(s);
    case CD_P3: return cbrt(s);
    case CD_P15: case CD_PGEN: return pow(s, 1 / p);
    default: return s;
    }
}

/* Where batch item bi of y takes its item (in row-major order over t's own batch dims) of t. */
static int64_t item_of(const cd_geom *g, const ag_tensor *t, int64_t bi) {
    const int tn = t->ndim - 2;
    int64_t st[AG_MAX_DIMS];
    ag__contiguous_strides(tn, t->shape, st);
    return batch_off(g, tn, t->shape, st, bi);
}

/* bt [items, blocks, M, CD_JB] = b [items, R, M] (any strides) transposed block by block, the
 * columns past R zero. */
static void pack_bt(void *bt, const ag_tensor *b, int64_t R, int64_t M) {
    const int nd = b->ndim;
    const int64_t items = ag__numel(nd - 2, b->shape), nblk = ag__ceil_div(R, CD_JB);
    const int64_t rs = b->stride[nd - 2], cs = b->stride[nd - 1];
    const bool f64 = b->dtype == AG_F64;
    for (int64_t it = 0; it < items; it++) {
        int64_t off = 0, rest = it;
        for (int d = nd - 3; d >= 0; d--) {
            off += rest % b->shape[d] * b->stride[d];
            rest /= b->shape[d];
        }
        for (int64_t blk = 0; blk < nblk; blk++)
            for (int64_t k = 0; k < M; k++) {
                const int64_t o = ((it * nblk + blk) * M + k) * CD_JB;
                for (int jj = 0; jj < CD_JB; jj++) {
                    const int64_t j = blk * CD_JB + jj;
                    if (f64) ((double *)bt)[o + jj] = j < R ? ((const double *)ag__ptr(b))[off + j * rs + k * cs] : 0;
                    else ((float *)bt)[o + jj] = j < R ? ((const float *)ag__ptr(b))[off + j * rs + k * cs] : 0;
                }
            }
    }
}

/* y [batch..., P, R] = (Σ_k |a_ik - b_jk|^p)^(1/p) from ac (a contiguous) and bt (pack_bt):
 * the rows of y over the threads, each pair summed by one thread in k order: the same bits on any
 * thread count. */
static void cdist_p_rows(const cd_geom *g, ag_tensor *y, const ag_tensor *ac, const ag_tensor *b, const void *bt,
                         double p) {
    const int64_t P = g->P, R = g->R, M = g->M, rows = g->nbatch * P, nblk = ag__ceil_div(R, CD_JB);
    const cd_kind kind = kind_of(p);
    const bool f64 = y->dtype == AG_F64, ranged = kind == CD_P2 || kind == CD_P15 || kind == CD_P3 || kind == CD_PGEN;
    const int nt = rows > 1 ? ag__threads_for(rows * R * (M + 1)) : 1;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (int64_t r = 0; r < rows; r++) {
        const int64_t bi = r / P, i = r % P, xo = (item_of(g, ac, bi) * P + i) * M;
        const int64_t bo = item_of(g, b, bi) * nblk * M * CD_JB;
        double acc[CD_JB];
        for (int64_t blk = 0; blk < nblk; blk++) {
            const int64_t j0 = blk * CD_JB, n = R - j0 < CD_JB ? R - j0 : CD_JB;
            if (f64) {
                const double *x = (const double *)ag__ptr(ac) + xo, *c = (const double *)bt + bo + blk * M * CD_JB;
                fwd_f64[kind](acc, x, c, M, p);
                for (int64_t jj = 0; jj < n; jj++) {
                    const double s = acc[jj];
                    ((double *)ag__ptr(y))[r * R + j0 + jj] = ranged && !(s >= CD_SUM_LO && s <= CD_SUM_HI)
                                                                  ? cd_scaled_f64(s, x, c + jj, M, p)
                                                                  : cd_finish(kind, s, p);
                }
            } else {
                const float *x = (const float *)ag__ptr(ac) + xo, *c = (const float *)bt + bo + blk * M * CD_JB;
                fwd_f32[kind](acc, x, c, M, p);
                for (int64_t jj = 0; jj < n; jj++) {
                    const double s = acc[jj];
                    ((float *)ag__ptr(y))[r * R + j0 + jj] = (float)(ranged && !(s >= CD_SUM_LO && s <= CD_SUM_HI)
                                                                         ? cd_scaled_f32(s, x, c + jj, M, p)
                                                                         : cd_finish(kind, s, p));
                }
            }
        }
    }
}

/* acc[k] += Σ_s c[s]·ψ(d), d = x[k] - o[s·M + k] rounded to T (then widened where ψ needs it), s
 * in order: one row of a gradient (x a row of one side, o the other side's rows, c and y the
 * pairs' factors and distances, y NULL but for inf).  For 1 and inf c = dy is a T (ct exactly),
 * and ±c or 0 is chosen in T's lanes before it is widened.  NAME##_w8 and NAME##_w16 take rows
 * padded with zeros to 8 or 16 columns (M ignored; a zero d adds 0 to a lane that is dropped) and
 * hold the sums in registers: below 16 columns the loop over k of any M runs its scalar tail. */
#define CD_BWD_LOOP(T, PSI, ACC, M, UNROLL)                                                                     \
    for (int64_t s = 0; s < n; s++) {                                                                         \
        const double cs = c[s];                                                                               \
        const T *restrict os = o + s * (M), ys = yv ? yv[s] : 1, ct = (T)cs;                                  \
        (void)ct;                                                                                             \
        if (ys == 0) continue; /* inf at a zero distance: every d is 0, sgn(d) = 0 */                        \
        UNROLL                                                                                                \
        for (int64_t k = 0; k < (M); k++) {                                                                   \
            const T dt = x[k] - os[k];                                                                        \
            const double d = (double)dt;                                                                      \
            (void)d;                                                                                          \
            ACC[k] += PSI;                                                                                    \
        }                                                                                                     \
    }
#define CD_BWD(NAME, T, PSI)                                                                                  \
    AG_VEC_CLONES_512 static void NAME(double *restrict acc, const T *restrict x, const T *restrict o,       \
                                       int64_t n, int64_t M, const double *restrict c,                       \
                                       const T *restrict yv, double q) {                                      \
        (void)yv, (void)q;                                                                                    \
        CD_BWD_LOOP(T, PSI, acc, M, )                                                                         \
    }                                                                                                         \
    CD_BWD_W(NAME##_w8, T, PSI, 8)                                                                            \
    CD_BWD_W(NAME##_w16, T, PSI, 16)
/* (a fixed W stays a loop, vectorised, where gcc would unroll it into scalar code with branches) */
#define CD_BWD_W(NAME, T, PSI, W)                                                                             \
    AG_VEC_CLONES_512 static void NAME(double *restrict acc, const T *restrict x, const T *restrict o,       \
                                       int64_t n, int64_t M, const double *restrict c,                       \
                                       const T *restrict yv, double q) {                                      \
        double la[W];                                                                                         \
        (void)M, (void)yv, (void)q;                                                                           \
        for (int k = 0; k < W; k++) la[k] = acc[k];                                                           \
        CD_BWD_LOOP(T, PSI, la, W, _Pragma("GCC unroll 1"))                                                   \
        for (int k = 0; k < W; k++) acc[k] = la[k];                                                           \
    }
#define CD_SGN(d) (double)(((d) > 0) - ((d) < 0))
#define CD_BWD_ALL(SUF, T, CPS, POW)                                                                                 \
    CD_BWD(bwd_p1_##SUF, T, (double)(dt != 0 ? ct * CPS((T)1, dt) : 0))                                             \
    CD_BWD(bwd_p2_##SUF, T, cs * d)                                                                           \
    CD_BWD(bwd_pinf_##SUF, T, (double)(CPS(dt, 1) == ys ? ct * CPS((T)1, dt) : 0))                                       \
    CD_BWD(bwd_p15_##SUF, T, cs * CD_SGN(d) * sqrt(fabs(d)))                                                  \
    CD_BWD(bwd_p3_##SUF, T, cs * d * fabs(d))                                                                 \
    CD_BWD(bwd_pgen_##SUF, T, d == 0 ? 0 : cs * CD_SGN(d) * POW(d, q))                                           \
    typedef void (*cd_bwd_##SUF)(double *restrict, const T *restrict, const T *restrict, int64_t, int64_t,   \
                                 const double *restrict, const T *restrict, double);                          \
    static const cd_bwd_##SUF bwd_##SUF[][7] = {                                                             \
        {NULL, bwd_p1_##SUF, bwd_p2_##SUF, bwd_pinf_##SUF, bwd_p15_##SUF, bwd_p3_##SUF, bwd_pgen_##SUF},      \
        {NULL, bwd_p1_##SUF##_w8, bwd_p2_##SUF##_w8, bwd_pinf_##SUF##_w8, bwd_p15_##SUF##_w8,                 \
         bwd_p3_##SUF##_w8, bwd_pgen_##SUF##_w8},                                                             \
        {NULL, bwd_p1_##SUF##_w16, bwd_p2_##SUF##_w16, bwd_pinf_##SUF##_w16, bwd_p15_##SUF##_w16,             \
         bwd_p3_##SUF##_w16, bwd_pgen_##SUF##_w16}};
CD_BWD_ALL(f32, float, copysignf, CD_POW_F32)
CD_BWD_ALL(f64, double, copysign, CD_POW_F64)

/* The adjoint's factor of each pair: c = dy for 1 and inf, 0 where y = 0 and dy / y^(p-1) elsewhere
 * (PyTorch's _cdist_backward), for n pairs (y and dy of T). */
#define CD_COEF(SUF, T)                                                                                       \
    AG_VEC_CLONES static void coef_##SUF(double *restrict c, const T *restrict y, const T *restrict dy,      \
                                         int64_t n, cd_kind kind, double p) {                                 \
        if (kind == CD_P1 || kind == CD_PINF)                                                                 \
            for (int64_t e = 0; e < n; e++) c[e] = dy[e];                                                     \
        else if (kind == CD_P2)                                                                               \
            for (int64_t e = 0; e < n; e++) c[e] = y[e] == 0 ? 0 : (double)dy[e] / y[e];                      \
        else if (kind == CD_P15)                                                                              \
            for (int64_t e = 0; e < n; e++) c[e] = y[e] == 0 ? 0 : (double)dy[e] / sqrt((double)y[e]);        \
        else if (kind == CD_P3)                                                                               \
            for (int64_t e = 0; e < n; e++) c[e] = y[e] == 0 ? 0 : (double)dy[e] / ((double)y[e] * y[e]);     \
        else                                                                                                  \
            for (int64_t e = 0; e < n; e++) c[e] = y[e] == 0 ? 0 : (double)dy[e] / pow(y[e], p - 1);          \
    }
CD_COEF(f32, float)
CD_COEF(f64, double)

/* dst [items, cols, rows] = src [items, rows, cols] (elements of T), in tiles of 32 by 32. */
#define CD_TRANSPOSE(SUF, T)                                                                                  \
    static void transpose_##SUF(T *restrict dst, const T *restrict src, int64_t items, int64_t rows, int64_t cols) { \
        const int64_t per = ag__ceil_div(rows, 32), all = items * per;                                        \
        const int nt = all > 1 ? ag__threads_for(items * rows * cols) : 1;                                    \
        _Pragma("omp parallel for num_threads(nt) schedule(static) if (nt > 1)")                              \
        for (int64_t t = 0; t < all; t++) {                                                                   \
            const int64_t it = t / per, r0 = t % per * 32, r1 = r0 + 32 < rows ? r0 + 32 : rows;              \
            const int64_t base = it * rows * cols;                                                            \
            for (int64_t c0 = 0; c0 < cols; c0 += 32) {                                                       \
                const int64_t c1 = c0 + 32 < cols ? c0 + 32 : cols;                                           \
                for (int64_t c = c0; c < c1; c++)                                                             \
                    for (int64_t r = r0; r < r1; r++) dst[base + c * rows + r] = src[base + r * cols + c];    \
            }                                                                                                 \
        }                                                                                                     \
    }
CD_TRANSPOSE(f32, float)
CD_TRANSPOSE(f64, double)

/* Columns the adjoint's rows are padded to (zeros past M): 8 up to 8, 16 up to 16, else M itself. */
static int64_t bwd_width(int64_t M) { return M <= 8 ? 8 : M <= 16 ? 16 : M; }

/* One side's gradient: gt [t's items, rows, M] (t = a: side 0, or b: side 1) = Σ over the items of y
 * on t's item (in order), Σ over the other side's rows s (in order) of c·ψ(t_r - o_s) (CD_BWD), in
 * float64, each row by one thread: the same bits on any thread count.  tc and oc are contiguous
 * copies of t and the other side (their items and batch dims read from them), tp and op their rows
 * padded to bwd_width(M) columns (tc's and oc's own data where that is M); c [batch..., rows, others]
 * the pairs' factors and yv (NULL but for inf) their distances, laid out as this side reads them
 * (transposed for side 1).  false when out of memory. */
static bool cdist_p_side(const cd_geom *g, int side, ag_tensor *gt, const ag_tensor *tc, const ag_tensor *oc,
                         const void *tp, const void *op, const double *c, const void *yv, double p) {
    const cd_kind kind = kind_of(p);
    const int64_t P = g->P, R = g->R, M = g->M, rows = side ? R : P, others = side ? P : R, W = bwd_width(M);
    const int wk = W == 8 ? 1 : W == 16 ? 2 : 0; /* the kernel for W columns: any, 8 or 16 */
    const int64_t items = ag__numel(tc->ndim - 2, tc->shape), tasks = items * rows;
    const bool f64 = gt->dtype == AG_F64;
    const int nt = tasks > 1 ? ag__threads_for(g->nbatch * P * R * (M + 1)) : 1;
    int64_t *order = ag__alloc_n(g->nbatch + items + 1, sizeof(int64_t));
    double *scratch = order ? ag__alloc_n(W * nt, sizeof(double)) : NULL;
    if (!scratch) {
        ag__free(order);
        return false;
    }
    int64_t *start = order + g->nbatch; /* the items of y on t's item it: order[start[it]..start[it + 1]) */
    for (int64_t it = 0; it <= items; it++) start[it] = 0;
    for (int64_t bi = 0; bi < g->nbatch; bi++) start[item_of(g, tc, bi) + 1]++;
    for (int64_t it = 0; it < items; it++) start[it + 1] += start[it];
    for (int64_t bi = 0; bi < g->nbatch; bi++) order[start[item_of(g, tc, bi)]++] = bi;
    for (int64_t it = items; it > 0; it--) start[it] = start[it - 1];
    start[0] = 0;
    const double q = p - 1;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (int64_t t = 0; t < tasks; t++) {
        const int64_t it = t / rows, r = t % rows;
        double *acc = scratch + omp_get_thread_num() * W;
        for (int64_t k = 0; k < W; k++) acc[k] = 0;
        for (int64_t e = start[it]; e < start[it + 1]; e++) {
            const int64_t bi = order[e], oo = item_of(g, oc, bi) * others * W, at = (bi * rows + r) * others;
            if (f64)
                bwd_f64[wk][kind](acc, (const double *)tp + t * W, (const double *)op + oo, others, W, c + at,
                                  yv ? (const double *)yv + at : NULL, q);
            else
                bwd_f32[wk][kind](acc, (const float *)tp + t * W, (const float *)op + oo, others, W, c + at,
                                  yv ? (const float *)yv + at : NULL, q);
        }
        for (int64_t k = 0; k < M; k++) {
            if (f64) ((double *)ag__ptr(gt))[t * M + k] = acc[k];
            else ((float *)ag__ptr(gt))[t * M + k] = (float)acc[k];
        }
    }
    ag__free(scratch);
    ag__free(order);
    return true;
}

static ag_status cdist_p_backward(ag_tensor *out, ag_tensor *gout);
static ag_status cdist_p_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin);
static ag_tensor *cdist_p_jvp(ag_tensor *out, ag_tensor *const *tin);
/* y = (Σ_k |a_ik - b_jk|^p)^(1/p) (count of d ≠ 0 for 0, max |d| for inf);  da_i = Σ_j c_ij·ψ(a_i - b_j),
 * db_j = -Σ_i c_ij·ψ(a_i - b_j): c = dy for 1 and inf, dy / y^(p-1) (0 where y = 0) otherwise;
 * ψ(d) = sgn(d) for 1, sgn(d)·[|d| = y] for inf, sgn(d)·|d|^(p-1) (0 where d = 0) otherwise; 0 for 0 */
static const ag_op op_cdist_p = {.name = "cdist_p", .grad_fn = "CdistBackward0", .backward = cdist_p_backward,
                                 .saves = AG_SAVES_IN0 | AG_SAVES_IN1 | AG_SAVES_OUT,
                                 .math = "p ≠ 2, or 2 with 25 rows or fewer: y = (Σ_k |a_ik - b_jk|^p)^(1/p) over the rows "
                                         "of a [..., P, M] and b [..., R, M] (the count of d ≠ 0 for 0, max |d| for inf);  "
                                         "da_i = Σ_j c·ψ(a_i - b_j), db_j = -Σ_i c·ψ(a_i - b_j), c = dy for 1 and inf, "
                                         "dy / y^(p-1) (0 where y = 0) otherwise, ψ(d) = sgn(d) for 1, sgn(d)·[|d| = y] "
                                         "for inf (every tie), sgn(d)·|d|^(p-1) (0 where d = 0) otherwise; 0 for p = 0",
                                 .backward_graph = cdist_p_backward_graph, .jvp = cdist_p_jvp,
                                 .tangent = "ẏ_ij = Σ_k ψ(d_k)·(ȧ_ik - ḃ_jk)·c/dy, d = a_i - b_j (ψ and c/dy as the adjoint's)"};

/* The direct form: b packed as bᵀ in blocks (pack_bt), a contiguous, then cdist_p_rows; float32
 * sums in float64 of the float32 differences, rounded once. */
static ag_tensor *cdist_direct(ag_tensor *a, ag_tensor *b, double p, int nd, const int64_t *yshape) {
    ag_tensor *y = ag__new(a->dtype, nd, yshape);
    if (!y) return NULL;
    cd_geom g;
    geom_of(&g, y, a->shape[a->ndim - 1]);
    if (g.nbatch * g.P * g.R == 0) goto record;
    if (g.M == 0) {
        memset(ag__ptr(y), 0, ag__esize(y->dtype) * (size_t)ag_numel(y)); /* no term: 0 */
        goto record;
    }
    const int64_t items = ag__numel(b->ndim - 2, b->shape), nblk = ag__ceil_div(g.R, CD_JB);
    int64_t n = 0;
    bool over = ag__mul_overflow(items * nblk, g.M * CD_JB, &n);
    void *bt = ag__alloc_n(over ? -1 : n, ag__esize(a->dtype));
    ag_tensor *ac = bt ? ag__contig_or_copy(a) : NULL;
    if (!ac) {
        ag__free(bt);
        ag__discard(y);
        return NULL;
    }
    pack_bt(bt, b, g.R, g.M);
    cdist_p_rows(&g, y, ac, b, bt, p);
    ag__free(bt);
    ag_release(ac);
record:;
    ag_tensor *in[2] = {a, b};
    if (ag__needs_grad(in, 2)) {
        if (!ag__record(y, &op_cdist_p, in, 2)) return NULL;
        y->attr.a = p;
    }
    return ag__check_finite(y, "cdist");
}

/* The pairs' factors c (coef_f32/coef_f64's) in float64, then da and db by cdist_p_side (db reading c, and y
 * for inf, transposed), accumulated; zeros for p = 0. */
static ag_status cdist_p_backward(ag_tensor *out, ag_tensor *gout) {
    ag_tensor *in[2] = {out->in[0], out->in[1]}, *cc[2] = {NULL, NULL};
    void *pad[2] = {NULL, NULL}; /* the rows padded to bwd_width(M) columns, where that is not M */
    const double p = out->attr.a;
    const cd_kind kind = kind_of(p);
    cd_geom g;
    geom_of(&g, out, in[0]->shape[in[0]->ndim - 1]);
    const int64_t n = g.nbatch * g.P * g.R;
    const size_t es = ag__esize(out->dtype);
    const bool work = p != 0 && n * g.M != 0, f64 = out->dtype == AG_F64;
    const bool tr = work && ag__wants(out, 1); /* db reads c (and y) transposed */
    ag_status st = AG_OK;
    double *c = work ? ag__alloc_n(tr ? 2 * n : n, sizeof(double)) : NULL;
    void *yt = tr && kind == CD_PINF ? ag__alloc_n(n, es) : NULL;
    if (work && (!c || (tr && kind == CD_PINF && !yt))) st = AG_ERR_NOMEM;
    const int64_t W = bwd_width(g.M);
    for (int s = 0; s < 2 && work && !st; s++) {
        if (!(cc[s] = ag__contig_or_copy(in[s]))) st = AG_ERR_NOMEM;
        else if (W != g.M) {
            const int64_t rows = ag__numel(in[s]->ndim - 1, in[s]->shape);
            if (!(pad[s] = ag__alloc_n(rows * W, es))) st = AG_ERR_NOMEM;
            for (int64_t r = 0; !st && r < rows; r++) {
                memcpy((char *)pad[s] + (size_t)(r * W) * es, ag__ptr(cc[s]) + (size_t)(r * g.M) * es, (size_t)g.M * es);
                memset((char *)pad[s] + (size_t)(r * W + g.M) * es, 0, (size_t)(W - g.M) * es);
            }
        }
    }
    if (work && !st) {
        const int64_t rows = g.nbatch * g.P, per = ag__ceil_div(rows, 64);
        const int nt = per > 1 ? ag__threads_for(n) : 1;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
        for (int64_t t = 0; t < per; t++) { /* 64 rows of pairs a task */
            const int64_t e0 = t * 64 * g.R, m = (t * 64 + 64 < rows ? 64 : rows - t * 64) * g.R;
            if (f64) coef_f64(c + e0, (const double *)ag__ptr(out) + e0, (const double *)ag__ptr(gout) + e0, m, kind, p);
            else coef_f32(c + e0, (const float *)ag__ptr(out) + e0, (const float *)ag__ptr(gout) + e0, m, kind, p);
        }
        if (tr) transpose_f64(c + n, c, g.nbatch, g.P, g.R);
        if (yt && f64) transpose_f64(yt, (const double *)ag__ptr(out), g.nbatch, g.P, g.R);
        else if (yt) transpose_f32(yt, (const float *)ag__ptr(out), g.nbatch, g.P, g.R);
    }
    for (int s = 0; s < 2 && !st; s++) {
        if (!ag__wants(out, s)) continue;
        const void *yv = kind != CD_PINF ? NULL : s ? yt : ag__ptr(out);
        ag_tensor *gt = ag__new_unowned(out->dtype, in[s]->ndim, in[s]->shape, !work);
        const void *tp = pad[s] ? pad[s] : work ? ag__ptr(cc[s]) : NULL, *op = pad[1 - s] ? pad[1 - s] : work ? ag__ptr(cc[1 - s]) : NULL;
        if (!gt || (work && !cdist_p_side(&g, s, gt, cc[s], cc[1 - s], tp, op, s ? c + n : c, yv, p))) {
            ag_release(gt);
            st = AG_ERR_NOMEM;
        } else st = ag__accumulate(in[s], gt);
    }
    ag_release(cc[0]);
    ag_release(cc[1]);
    ag__free(pad[0]);
    ag__free(pad[1]);
    ag__free(c);
    ag__free(yt);
    return st;
}

/* ∂y/∂d of y = out over d = a_i - b_j [..., P, R, M] in differentiable ops: ψ(d)·c/dy of the
 * adjoint, |d| and y made 1 where they are 0 first (so no derivative of it is inf or NaN). */
static ag_tensor *cdist_p_partial(ag_tensor *out, ag_tensor *d) {
    const double p = out->attr.a;
    const cd_kind kind = kind_of(p);
    if (kind == CD_P0) return ag_zeros_like(d);
    if (kind == CD_P1) return ag_sign(d);
    ag_tensor *y = ag_unsqueeze(out, -1);
    if (kind == CD_PINF) return y ? ag_mul(ag_sign(d), ag_to_dtype(ag_eq(ag_abs(d), y), d->dtype)) : NULL;
    ag_tensor *ynz = y ? ag_to_dtype(ag_ne(y, ag_scalar(0, y->dtype)), y->dtype) : NULL;
    ag_tensor *ysafe = ag_add(y, ag_rsub_scalar(1, ynz));
    if (kind == CD_P2) return ag_mul(ag_div(d, ysafe), ynz);
    ag_tensor *dnz = ag_to_dtype(ag_ne(d, ag_scalar(0, d->dtype)), d->dtype);
    ag_tensor *adsafe = ag_add(ag_abs(d), ag_rsub_scalar(1, dnz));
    ag_tensor *r = ag_div(ag_pow_scalar(adsafe, p - 1), ag_pow_scalar(ysafe, p - 1));
    return ag_mul(ag_mul(ag_sign(d), r), ynz);
}

/* d = a[..., :, None, :] - b[..., None, :, :] as a differentiable op. */
static ag_tensor *pair_diff(ag_tensor *a, ag_tensor *b) { return ag_sub(ag_unsqueeze(a, -2), ag_unsqueeze(b, -3)); }

/* w = dy[..., None]·∂y/∂d;  da = Σ_j w, db = -Σ_i w (summed down to each input's shape by the engine) */
static ag_status cdist_p_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin) {
    ag_tensor *a = out->in[0], *b = out->in[1];
    ag_tensor *w = ag_mul(ag_unsqueeze(gout, -1), cdist_p_partial(out, pair_diff(a, b)));
    if (w && ag__wants(out, 0)) gin[0] = ag_sum_dim(w, -2, false);
    if (w && ag__wants(out, 1)) gin[1] = ag_neg(ag_sum_dim(w, -3, false));
    if (!w || (ag__wants(out, 0) && !gin[0]) || (ag__wants(out, 1) && !gin[1])) return ag_last_status();
    return AG_OK;
}

/* dy = Σ_k ∂y/∂d·(ȧ_i - ḃ_j) */
static ag_tensor *cdist_p_jvp(ag_tensor *out, ag_tensor *const *tin) {
    ag_tensor *a = out->in[0], *b = out->in[1], *dd = NULL;
    if (tin[0]) dd = ag_unsqueeze(tin[0], -2);
    if (tin[1]) dd = tin[0] ? ag_sub(dd, ag_unsqueeze(tin[1], -3)) : ag_neg(ag_unsqueeze(tin[1], -3));
    if (!dd) return NULL;
    return ag__jvp_shaped(ag_sum_dim(ag_mul(cdist_p_partial(out, pair_diff(a, b)), dd), -1, false), out);
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
    int nd = 0;
    int64_t yshape[AG_MAX_DIMS];
    if (cdist_shape(op, x1, x2, &nd, yshape)) return NULL;
    const uint8_t autocast = ag__autocast; /* float32 under autocast too, as PyTorch's cdist: */
    ag__autocast = 0;                      /* in bf16 the difference would cancel to noise */
    /* p = 2 past 25 rows: PyTorch's default compute mode (its _euclidean_dist); else the direct form */
    ag_tensor *y = p == 2 && (P > 25 || R > 25) ? cdist_mm(x1, x2, nd, yshape) : cdist_direct(x1, x2, p, nd, yshape);
    ag__autocast = autocast;
    return y;
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

const ag_op *const ag__distance_ops[] = {&op_cdist, &op_cdist_p, NULL};

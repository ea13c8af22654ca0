/*
 * scatter.c - element-by-element writes and reads through index tensors and
 * masks: scatter (src and value forms), scatter_reduce, take, put,
 * masked_select, masked_scatter, nonzero and argwhere.
 *
 * take and put read their index in place (wrapping negative values where they
 * use them).  The mask ops and nonzero run one branch-free pass where the mask
 * (and x) is contiguous with the broadcast shape; otherwise they first list the
 * element offsets the mask addresses, in row-major order of the broadcast shape,
 * then run plain loops over the list; forward and adjoint meet the places in
 * the same order both ways.  The adjoints work on
 * contiguous copies (of dy, and of x and src where they read them), so one
 * list of contiguous offsets serves every operand of one geometry.  Index
 * tensors and masks are node inputs (never differentiated): backward re-reads
 * them, and fails if they were modified in place (their version is checked).
 * scatter and scatter_reduce instead walk index by runs of lanes whose targets no other
 * run meets (lanes_make), split over the threads, without lists of offsets, each
 * run done from start to end while its box of x is in the cache (its tallies in
 * a scratch of the box's size); its amax/amin adjoint has no branch on which
 * value ties.  [1024, 1024] along dim 1, amax, forward + backward, bench_steps,
 * 1 thread, CPU time: 52.6 -> 16.3 ms (PyTorch 17.0); run by run (session 6)
 * 15.8 -> 8.6 ms at load 19 (PyTorch 14.7 there).  Session 9: scatter on the same walk, the
 * bounds check inside the forward walks, branch-free forward loops per reduction
 * (docs/benchmarks.md, "Session 9: scatter and index ops").  Session 10: the forward's scratch
 * holds only what its reduction needs (sum d0 16.2 -> 10.7 ms), runs narrowed to keep it near
 * 1 MiB; put wraps and checks index in its one loop (7.4 ms from 16.2).  Session 23: the run kernels
 * in x86-64-v4/v3 clones, scatter's lanes stored by AVX-512 scatters (docs/benchmarks.md, "Session
 * 23: scatter's lanes by AVX-512 scatters ...": [399, 532] along 1, 174 -> 110 us).
 */
#include <math.h>
#include <string.h>
#include <omp.h>
#include "core/iter.h"
#include "core/layout.h"
#include "core/parallel.h"
#include "core/sum.h"
#include "autograd/tape.h"
#include "agrad/ops.h"
#include "ops/index.h"

/* The rules in differentiable ops (backward_graph, jvp) of this file: ok when t was made. */
static ag_status made(ag_tensor *t) { return t ? AG_OK : ag_last_status(); }
static ag_tensor *or_zeros(ag_tensor *t, const ag_tensor *x) { return t ? t : ag_zeros_like(x); }

/* ---- offsets ---------------------------------------------------------------------------------- */
/* off[k]: the element offset of the k-th row-major position of shape in a tensor with element
 * strides `stride` (numel(shape) entries).  A dim of size 1 is never stepped along (its stride may
 * be huge). */
static void row_major_offsets(int ndim, const int64_t *shape, const int64_t *stride, int64_t *off) {
    const int64_t n = ag__numel(ndim, shape);
    if (n == 0) return;
    /* the last dim in a tight loop (a run of `inner` offsets `step` apart), the others carried */
    const int64_t inner = ndim ? shape[ndim - 1] : 1, step = inner > 1 ? stride[ndim - 1] : 0;
    int64_t pos[AG_MAX_DIMS] = {0}, o = 0;
    for (int64_t k = 0; k < n; k += inner) {
        for (int64_t j = 0; j < inner; j++) off[k + j] = o + j * step;
        for (int j = ndim - 2; j >= 0; j--) {
            if (++pos[j] < shape[j]) {
                o += stride[j];
                break;
            }
            o -= stride[j] * (shape[j] - 1);
            pos[j] = 0;
        }
    }
}

/* The element strides of t broadcast to ndim/shape (0 along broadcast dims). */
static void broadcast_strides(const ag_tensor *t, int ndim, const int64_t *shape, int64_t *stride) {
    for (int j = 0; j < ndim; j++) {
        int tj = j - (ndim - t->ndim);
        stride[j] = tj < 0 || t->shape[tj] != shape[j] ? 0 : t->stride[tj];
    }
}

/* A list of n offsets (one spare entry, so that n may be 0); NULL with AG_ERR_NOMEM. */
static int64_t *offsets_new(int64_t n) { return ag__alloc_n(n + 1, sizeof(int64_t)); }

/* A float element at offset off of base, as double, and its store. */
static inline double load(const char *base, ag_dtype dt, int64_t off) {
    return dt == AG_F64 ? ((const double *)base)[off] : (double)((const float *)base)[off];
}
static inline void store(char *base, ag_dtype dt, int64_t off, double v) {
    if (dt == AG_F64) ((double *)base)[off] = v;
    else ((float *)base)[off] = (float)v;
}

/* An unowned contiguous copy of t (or of t's shape filled with zeros when zero). */
static ag_tensor *contig_copy(const ag_tensor *t, int ndim, const int64_t *shape, bool zero) {
    ag_tensor *c = ag__new_unowned(t->dtype, ndim, shape, zero);
    if (c && !zero) ag__copy_into(c, t);
    return c;
}

/* The checks of the scatter forms: int64 index, src (if any) of x's dtype, dim, index no larger
 * than x (but along dim) and src.  Returns the normalised dim, -1 on failure.  The values' range
 * is checked by the forward walks as they read index (RUN_POS, walk_failed). */
static int check_scatter(const char *op, const ag_tensor *x, int dim, const ag_tensor *index, const ag_tensor *src) {
    if (ag__check_index_dtype(op, index)) return -1;
    if (src && src->dtype != x->dtype)
        return ag__fail(AG_ERR_DTYPE, "%s: src is %s but the input is %s (convert one with ag_to_dtype)", op,
                        ag_dtype_name(src->dtype), ag_dtype_name(x->dtype)),
               -1;
    int d = ag__dim(op, dim, x->ndim);
    if (d < 0 || ag__check_index_fits(op, index, x, "input", d) ||
        (src && ag__check_index_fits(op, index, src, "src", -1)))
        return -1;
    return d;
}

/* ---- the walk of scatter and scatter_reduce: runs whose targets no other run meets --------- */
/* Positions of index that differ only along dim d send to one lane of x (the same coordinates
 * but d), and lanes of different positions are disjoint: so the walk goes block by block, a
 * block being one lane (d the last dim) or the lanes of `width` adjacent positions along the
 * last dim (walked together, contiguous in x, src and index), and a block's width splits into
 * runs of `chunk` lanes.  A run's targets are a box of x: its lanes' x.shape[d] elements each,
 * so every pass of forward and adjoint goes run by run (the threads split the runs), each run
 * done from start to end while its box is in the cache: the box's tallies live in a scratch
 * of the box's size (q a target's place there), not in arrays of x's size.  Each target's
 * contributions come in row-major order on any number of threads.  When index spans x but
 * along d (index_spans), the boxes cover x: y and dx are written box by box and no full copy
 * of x or dy is made.  x, src and index are contiguous (copies). */
typedef struct lanes {
    int64_t blocks, len, width; /* blocks; positions along d per lane; lanes per block */
    int64_t xd, sd, id;         /* element strides along d: x (times the index value), src, index */
    int64_t xlen;               /* x's size along d: a run of w lanes has a box of xlen·w targets */
    int64_t *xb, *sb, *ib;      /* each block's first element in x (d's coordinate 0), src, index */
    int64_t chunk, chunks;      /* a block's width split into `chunks` runs of `chunk` lanes */
    int64_t runs, box;          /* blocks·chunks; the largest box (xlen·chunk) */
    int64_t tb, sbytes;         /* scratch bytes per target; per thread (box·tb rounded up to 64) */
    int64_t sstride, sblock;    /* the threads' scratch regions' distance, their block's bytes (scratch_new) */
} lanes;

static void lanes_free(lanes *L) { ag__free(L->xb), ag__free(L->sb), ag__free(L->ib); }

/* A run's scratch is kept to about this many bytes (in L2 with the box of y) where a block's
 * width allows runs of at least LANES_MIN lanes (whole cache lines of index and src a row). */
#define SCRATCH_CAP ((int64_t)1 << 20)
#define LANES_MIN 64

/* The blocks of index's positions (see above) for `threads` threads, with tb bytes of scratch
 * per target (0: none); AG_ERR_NOMEM on failure. */
static ag_status lanes_make(const ag_tensor *index, int d, const ag_tensor *x, const ag_tensor *src, int threads,
                            int64_t tb, lanes *L) {
    memset(L, 0, sizeof *L);
    const int n = index->ndim;
    if (ag_numel(index) == 0) return AG_OK; /* no block: none of the (maybe 2^60) empty lanes is walked */
    int64_t xs[AG_MAX_DIMS], ss[AG_MAX_DIMS], is[AG_MAX_DIMS], shape[AG_MAX_DIMS];
    ag__contiguous_strides(x->ndim, x->shape, xs);
    ag__contiguous_strides(src->ndim, src->shape, ss);
    ag__contiguous_strides(n, index->shape, is);
    memcpy(shape, index->shape, sizeof(int64_t) * (size_t)n);
    L->len = n ? shape[d] : 1;
    L->xlen = n ? x->shape[d] : 1;
    L->width = n && d < n - 1 ? shape[n - 1] : 1;
    if (n) L->xd = xs[d], L->sd = ss[d], L->id = is[d], shape[d] = 1, shape[n - 1] = 1;
    L->blocks = ag__numel(n, shape);
    L->xb = offsets_new(L->blocks), L->sb = offsets_new(L->blocks), L->ib = offsets_new(L->blocks);
    if (!L->xb || !L->sb || !L->ib) {
        lanes_free(L);
        return AG_ERR_NOMEM;
    }
    row_major_offsets(n, shape, xs, L->xb);
    row_major_offsets(n, shape, ss, L->sb);
    row_major_offsets(n, shape, is, L->ib);
    /* at least 4 runs per thread where the width allows, each of at least 16 lanes */
    int64_t want = 4 * (int64_t)threads, per = L->blocks >= want ? 1 : (want + L->blocks - 1) / L->blocks;
    L->chunk = (L->width + per - 1) / per;
    if (L->chunk < 16) L->chunk = 16;
    if (tb && L->xlen && L->chunk > LANES_MIN && L->chunk > SCRATCH_CAP / tb / L->xlen)
        L->chunk = SCRATCH_CAP / tb / L->xlen > LANES_MIN ? SCRATCH_CAP / tb / L->xlen : LANES_MIN;
    if (L->chunk > L->width) L->chunk = L->width;
    L->chunks = (L->width + L->chunk - 1) / L->chunk;
    L->runs = L->blocks * L->chunks;
    L->box = L->xlen * L->chunk; /* at most numel(x): chunk is at most x's last size, or 1 */
    L->tb = tb;
    if (ag__mul_overflow(L->box + 1, tb, &L->sbytes) || L->sbytes > INT64_MAX - 63) {
        lanes_free(L);
        return AG_ERR_NOMEM;
    }
    L->sbytes = (L->sbytes + 63) & ~(int64_t)63;
    return AG_OK;
}

/* Whether index has x's shape but along d: then the runs' boxes cover x. */
static bool index_spans(const ag_tensor *index, const ag_tensor *x, int d) {
    if (ag_numel(index) == 0) return ag_numel(x) == 0;
    for (int k = 0; k < x->ndim; k++)
        if (k != d && index->shape[k] != x->shape[k]) return false;
    return true;
}

/* Run u of the walk: block u / chunks, lanes [*t0, *t1) of it. */
static inline int64_t lanes_run(const lanes *L, int64_t u, int64_t *t0, int64_t *t1) {
    int64_t b = u / L->chunks;
    *t0 = u % L->chunks * L->chunk;
    *t1 = *t0 + L->chunk < L->width ? *t0 + L->chunk : L->width;
    return b;
}

/* Visits the box of the run (block b, lanes [t0, t1)): o a target (an element offset of x), q
 * its place in the run's scratch; the body uses them.  One lane (d the last dim) is one loop,
 * of unit steps (one the compiler can vectorise) when the lane is contiguous. */
#define BOX_FOR(L, b, t0, t1, ...)                                                                 \
    do {                                                                                           \
        const int64_t w_ = (t1) - (t0), xlen_ = (L)->xlen, xd_ = (L)->xd, xo_ = (L)->xb[b] + (t0); \
        if (w_ == 1 && xd_ == 1)                                                                   \
            for (int64_t q = 0; q < xlen_; q++) {                                                  \
                const int64_t o = xo_ + q;                                                         \
                (void)o;                                                                           \
                __VA_ARGS__                                                                        \
            }                                                                                      \
        else if (w_ == 1)                                                                          \
            for (int64_t q = 0; q < xlen_; q++) {                                                  \
                const int64_t o = xo_ + q * xd_;                                                   \
                (void)o;                                                                           \
                __VA_ARGS__                                                                        \
            }                                                                                      \
        else                                                                                       \
            for (int64_t k_ = 0; k_ < xlen_; k_++)                                                 \
                for (int64_t t_ = 0; t_ < w_; t_++) {                                              \
                    const int64_t o = xo_ + k_ * xd_ + t_, q = k_ * w_ + t_;                       \
                    (void)o, (void)q;                                                              \
                    __VA_ARGS__                                                                    \
                }                                                                                  \
    } while (0)

/* Visits the positions of the run (block b, lanes [t0, t1)) in row-major order: o its target,
 * q the target's place in the scratch, pos its offset in src; the body uses them.  iv the
 * index values.  With CHECK 1, a value outside [0, xlen) sets *bad (an int *) and is skipped (the forward's bounds check, in the walk's one read of index; nothing is
 * computed from it).  One lane (d the last dim) is one loop. */
#define RUN_POS(L, b, t0, t1, iv, CHECK, bad, ...)                                                     \
    do {                                                                                           \
        const int64_t w_ = (t1) - (t0), xd_ = (L)->xd, len_ = (L)->len, id_ = (L)->id, sd_ = (L)->sd; \
        const uint64_t xlen_ = (uint64_t)(L)->xlen;                                                \
        const int64_t *ib_ = (iv) + (L)->ib[b] + (t0);                                             \
        const int64_t xo_ = (L)->xb[b] + (t0), so_ = (L)->sb[b] + (t0);                            \
        (void)xlen_;                                                                               \
        if (w_ == 1)                                                                               \
            for (int64_t j_ = 0; j_ < len_; j_++) {                                                \
                const int64_t q = ib_[j_ * id_];                                                   \
                if ((CHECK) && (uint64_t)q >= xlen_) {                                             \
                    *(bad) = 1;                                                                    \
                    continue;                                                                      \
                }                                                                                  \
                const int64_t o = xo_ + q * xd_, pos = so_ + j_ * sd_;                             \
                (void)o, (void)pos;                                                                \
                __VA_ARGS__                                                                        \
            }                                                                                      \
        else                                                                                       \
            for (int64_t j_ = 0; j_ < len_; j_++)                                                  \
                for (int64_t t_ = 0; t_ < w_; t_++) {                                              \
                    const int64_t k_ = ib_[j_ * id_ + t_];                                         \
                    if ((CHECK) && (uint64_t)k_ >= xlen_) {                                        \
                        *(bad) = 1;                                                                \
                        continue;                                                                  \
                    }                                                                              \
                    const int64_t o = xo_ + k_ * xd_ + t_, q = k_ * w_ + t_, pos = so_ + j_ * sd_ + t_; \
                    (void)o, (void)q, (void)pos;                                                   \
                    __VA_ARGS__                                                                    \
                }                                                                                  \
    } while (0)

/* RUN_POS with v = src[pos] too (sp src, of type T), index values known in range. */
#define RUN_FOR(L, b, t0, t1, iv, sp, T, ...) \
    RUN_POS(L, b, t0, t1, iv, 0, (int *)0, {  \
        const T v = (sp)[pos];                \
        (void)v;                              \
        __VA_ARGS__                           \
    })

/* Runs the statement for every run u (block b, lanes [t0, t1)) of L, the runs split over nt
 * threads; its `scratch` (a char *) is its thread's L->sbytes in base (nt of them, scratch_new). */
#define FOR_RUNS(L, nt, base, ...)                                                                 \
    AG_PARALLEL(nt, {                                                                        \
        int t_ = ag__thread, k_ = ag__team;                                                        \
        const int64_t lo_ = ag__share_start((L)->runs, t_, k_), hi_ = ag__share_start((L)->runs, t_ + 1, k_); \
        char *scratch = (base) ? ag__scratch_at((base), (L)->sstride, t_) : NULL;             \
        (void)scratch;                                                                             \
        for (int64_t u = lo_; u < hi_; u++) {                                                      \
            int64_t t0, t1, b = lanes_run((L), u, &t0, &t1);                                       \
            __VA_ARGS__;                                                                           \
        }                                                                                          \
    })

/* A target's tallies in a run's scratch: cnt the contributions sent there (amax/amin: the
 * contributors equal to the result, its ties); the forward's sum, mean and prod accumulate in
 * aux (in double); the adjoint of prod counts the zero contributors in zeros and the product
 * of the others in aux, that of amax/amin keeps the share of dy of each tie in aux. */
typedef struct tally {
    int64_t cnt, zeros;
    double aux;
} tally;

/* The scratch of a run's box (L->sbytes), one region per thread (nt) in one block, set apart
 * (ag__scratch_stride: L->sstride, L->sblock), or NULL (AG_ERR_NOMEM).  Free with scratch_free. */
static char *scratch_new(lanes *L, int nt) {
    L->sstride = ag__scratch_stride(L->sbytes);
    L->sblock = ag__scratch_block(L->sstride, nt);
    if (L->sblock < 0) return NULL;
    return ag__cache_alloc((size_t)L->sblock);
}

static void scratch_free(char *work, const lanes *L) { ag__cache_free(work, (size_t)L->sblock); }

/* The scratch of walks that keep no tallies (a variable: clang warns on arithmetic on a null constant). */
static char *const no_scratch = NULL;

/* Sets *f to 1 (threads may race to). */
static inline void set_flag(int *f) {
#pragma omp atomic write
    *f = 1;
}

/* After a forward walk: AG_OK, or when a run met an index value outside [0, xlen) (bad) the
 * bounds check's error, naming the first such value. */
static ag_status walk_failed(int bad, const char *op, const ag_tensor *index, const ag_tensor *x, int d) {
    return bad ? ag__check_index_bounds(op, index, x, d) : AG_OK;
}

/* The threads for a walk over n index positions and x's nx elements (before lanes_make). */
static int walk_threads(int64_t n, int64_t nx) { return ag__threads_for(n > nx ? n : nx); }
/* At most one thread per run of L. */
static int runs_threads(const lanes *L, int nt) { return L->runs < nt ? (L->runs ? (int)L->runs : 1) : nt; }

/* ---- scatter ---------------------------------------------------------------------------------- */
/* scatter and its adjoint walk index as scatter_reduce does (lanes, above): no lists of offsets,
 * each run while its box is in the cache, the runs split over the threads (a target's writes
 * stay in row-major order: the same result on any number of threads).  Elements move as
 * unsigned integers of their size (bits, not values). */

#if AG_X86_INTRINSICS
#include <immintrin.h>
/* y[k[j]] = s[j] for j below n rounded down to 8, eight elements a hardware scatter (contiguous s
 * and k, one lane of y); a lane whose k[j] is not below size (unsigned) is masked off (nothing
 * written) and sets *out.  The writes of one scatter to one place land in lane order (the
 * architecture's rule for overlapping indices), so the last of repeated targets wins, as in the
 * scalar loop: the same bits.  Returns where the scalar loop goes on. */
#define SCATTER_LANE_512(NAME, T, SCATTER, LOAD)                                                            \
    __attribute__((target("avx512f"))) static int64_t NAME(T *y, const T *s, const int64_t *k, int64_t n,   \
                                                           uint64_t size, int *out) {                      \
        const __m512i vsize = _mm512_set1_epi64((long long)size);                                          \
        __mmask8 all = 0xff;                                                                               \
        int64_t j = 0;                                                                                     \
        for (; j + 8 <= n; j += 8) {                                                                       \
            const __m512i kk = _mm512_loadu_si512((const void *)(k + j));                                  \
            const __mmask8 in = _mm512_cmplt_epu64_mask(kk, vsize);                                        \
            all &= in;                                                                                     \
            SCATTER((void *)y, in, kk, LOAD(s + j), (int)sizeof(T));                                       \
        }                                                                                                  \
        *out |= all != 0xff;                                                                               \
        return j;                                                                                          \
    }
#define LOAD_4(p) _mm256_loadu_si256((const __m256i *)(const void *)(p))
#define LOAD_8(p) _mm512_loadu_si512((const void *)(p))
SCATTER_LANE_512(scatter_lane_4, uint32_t, _mm512_mask_i64scatter_epi32, LOAD_4)
SCATTER_LANE_512(scatter_lane_8, uint64_t, _mm512_mask_i64scatter_epi64, LOAD_8)
#define SCATTER_WIDE(T, y, s, k, n, size, out)                                                               \
    (sizeof(T) == 4 && AG_VEC_512() ? scatter_lane_4((uint32_t *)(void *)(y), (const uint32_t *)(const void *)(s), k, n, size, out) \
     : sizeof(T) == 8 && AG_VEC_512() ? scatter_lane_8((uint64_t *)(void *)(y), (const uint64_t *)(const void *)(s), k, n, size, out) \
                                      : 0)
#else
#define SCATTER_WIDE(T, y, s, k, n, size, out) 0
#endif

/* The run's forward: y[o] = src[pos] (sp), or the value's bits val when sp is NULL; y holds x's
 * box first (copied from xp here while in the cache, unless xp is NULL: y holds x already). */
#define SCATTER_RUN(NAME, T)                                                                              \
    AG_VEC_CLONES_512 static void NAME(const lanes *L, int64_t b, int64_t t0, int64_t t1, const int64_t *iv, const T *sp, T val, \
                     const T *xp, T *y, int *bad) {                                                      \
        int out = 0;                                                                                      \
        if (xp) BOX_FOR(L, b, t0, t1, { y[o] = xp[o]; });                                                 \
        if (sp && t1 - t0 == 1 && L->xd == 1 && L->sd == 1 && L->id == 1) { /* one contiguous lane */      \
            T *yl = y + L->xb[b] + t0;                                                                    \
            const T *sl = sp + L->sb[b] + t0;                                                             \
            const int64_t *kl = iv + L->ib[b] + t0;                                                       \
            const uint64_t size = (uint64_t)L->xlen;                                                      \
            for (int64_t j = SCATTER_WIDE(T, yl, sl, kl, L->len, size, &out); j < L->len; j++) {         \
                const uint64_t q = (uint64_t)kl[j];                                                       \
                if (q >= size) {                                                                          \
                    out = 1;                                                                              \
                    continue;                                                                             \
                }                                                                                         \
                yl[q] = sl[j];                                                                            \
            }                                                                                             \
        } else if (sp) RUN_POS(L, b, t0, t1, iv, 1, &out, { y[o] = sp[pos]; });                              \
        else RUN_POS(L, b, t0, t1, iv, 1, &out, { y[o] = val; });                                            \
        if (out) set_flag(bad);                                                                           \
    }
SCATTER_RUN(scatter_run_1, uint8_t)
SCATTER_RUN(scatter_run_4, uint32_t)
SCATTER_RUN(scatter_run_8, uint64_t)

/* The run's adjoint: gs[pos] = g[o] (gs may be NULL), then g[o] = +0 when zero (g is dx). */
#define SCATTER_ADJOINT(NAME, T)                                                                          \
    static void NAME(const lanes *L, int64_t b, int64_t t0, int64_t t1, const int64_t *iv, T *g, T *gs,   \
                     bool zero) {                                                                         \
        if (gs) RUN_POS(L, b, t0, t1, iv, 0, (int *)0, { gs[pos] = g[o]; });                                 \
        if (zero) RUN_POS(L, b, t0, t1, iv, 0, (int *)0, { g[o] = 0; });                                     \
    }
SCATTER_ADJOINT(scatter_adjoint_4, uint32_t)
SCATTER_ADJOINT(scatter_adjoint_8, uint64_t)

/* dx = dy, 0 at the written places;  dsrc[pos] = dy[target of pos] over index's region, 0 elsewhere */
static ag_status scatter_backward(ag_tensor *out, ag_tensor *gout) {
    ag_tensor *x = out->in[0], *index = out->in[1], *src = out->nin > 2 ? out->in[2] : NULL;
    const int d = (int)out->attr.i[0];
    const bool want_src = src && ag__wants(out, 2), want_x = ag__wants(out, 0);
    const int64_t n = ag_numel(index);
    lanes L;
    if (lanes_make(index, d, x, src ? src : index, walk_threads(n, ag_numel(x)), 0, &L))
        return AG_ERR_NOMEM;
    const int nt = runs_threads(&L, walk_threads(n, ag_numel(x)));
    ag_tensor *g = want_x ? contig_copy(gout, gout->ndim, gout->shape, false) : ag__contig_or_copy(gout);
    ag_tensor *gs = g && want_src ? ag__new_unowned(src->dtype, src->ndim, src->shape, ag_numel(src) != n) : NULL;
    ag_tensor *iv = ag__contig_or_copy((ag_tensor *)index);
    ag_status st = !g || !iv || (want_src && !gs) ? AG_ERR_NOMEM : AG_OK;
    if (st == AG_OK) {
        const int64_t *ip = (const int64_t *)ag__ptr(iv);
        if (ag_dtype_size(g->dtype) == 8)
            FOR_RUNS(&L, nt, no_scratch,
                     scatter_adjoint_8(&L, b, t0, t1, ip, (uint64_t *)ag__ptr(g),
                                       gs ? (uint64_t *)ag__ptr(gs) : NULL, want_x));
        else
            FOR_RUNS(&L, nt, no_scratch,
                     scatter_adjoint_4(&L, b, t0, t1, ip, (uint32_t *)ag__ptr(g),
                                       gs ? (uint32_t *)ag__ptr(gs) : NULL, want_x));
    }
    if (st == AG_OK && want_src) st = ag__accumulate(src, gs), gs = NULL;
    if (st == AG_OK && want_x) st = ag__accumulate(x, g), g = NULL;
    ag_release(g), ag_release(gs), ag_release(iv);
    lanes_free(&L);
    return st;
}

/* dx = scatter_value(dy, dim, index, 0);  dsrc = gather(dy, dim, index) in index's corner of src */
static ag_status scatter_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin) {
    const int d = (int)out->attr.i[0];
    if (ag__wants(out, 0) && !(gin[0] = ag_scatter_value(gout, d, out->in[1], 0))) return ag_last_status();
    if (out->nin > 2 && ag__wants(out, 2) &&
        !(gin[2] = ag__index_corner(ag_gather(gout, d, out->in[1]), ag_shape_of(out->in[2]))))
        return ag_last_status();
    return AG_OK;
}

/* dy = scatter(dx, dim, index, dsrc), or scatter_value(dx, dim, index, 0) */
static ag_tensor *scatter_jvp(ag_tensor *out, ag_tensor *const *tin) {
    ag_tensor *tx = or_zeros(tin[0], out->in[0]);
    const int d = (int)out->attr.i[0];
    if (out->nin == 2) return ag_scatter_value(tx, d, out->in[1], 0);
    ag_tensor *ts = or_zeros(tin[2], out->in[2]);
    return tx && ts ? ag_scatter(tx, d, out->in[1], ts) : NULL;
}

/* y = x, y[pos with dim = index[pos]] = src[pos];  dx = dy (0 where written), dsrc = gather(dy, dim, index) */
static const ag_op op_scatter = {.name = "scatter", .grad_fn = "ScatterBackward0", .backward = scatter_backward,
                                 .saves = AG_SAVES_IN1,
                                 .math = "y = x;  y[pos with pos[dim] = index[pos]] = src[pos];  "
                                         "dx = dy, 0 where written,  dsrc = gather(dy, dim, index)",
                                 .backward_graph = scatter_backward_graph, .jvp = scatter_jvp,
                                 .tangent = "ẏ = scatter(ẋ, dim, index, ṡrc)"};
/* y = x, y[pos with dim = index[pos]] = value;  dx = dy (0 where written) */
static const ag_op op_scatter_value = {.name = "scatter_value", .grad_fn = "ScatterBackward1",
                                       .backward = scatter_backward, .saves = AG_SAVES_IN1,
                                       .math = "y = x;  y[pos with pos[dim] = index[pos]] = value;  "
                                               "dx = dy, 0 where written",
                                       .backward_graph = scatter_backward_graph, .jvp = scatter_jvp,
                                       .tangent = "ẏ = scatter_value(ẋ, dim, index, 0)"};

/* The two scatter forms: src's elements, or value when src is NULL. */
static ag_tensor *scatter_impl(const char *op, ag_tensor *x, int dim, const ag_tensor *index, ag_tensor *src,
                               double value) {
    int d = check_scatter(op, x, dim, index, src);
    if (d < 0) return NULL;
    const ag_dtype dt = x->dtype;
    const int64_t n = ag_numel(index);
    lanes L;
    if (lanes_make(index, d, x, src ? src : index, walk_threads(n, ag_numel(x)), 0, &L))
        return NULL;
    const int nt = runs_threads(&L, walk_threads(n, ag_numel(x)));
    /* x's boxes copied run by run where they cover a contiguous x, else x copied first */
    const bool boxes = index_spans(index, x, d) && ag_is_contiguous(x);
    ag_tensor *sc = src ? ag__contig_or_copy(src) : NULL, *iv = ag__contig_or_copy((ag_tensor *)index);
    ag_tensor *y = (sc || !src) && iv ? ag__new(dt, x->ndim, x->shape) : NULL;
    ag_tensor *vt = y && !src ? ag__new_unowned(dt, 0, NULL, false) : NULL; /* the value in y's dtype */
    int bad = 0;
    if (y && (src || vt)) {
        if (!boxes) ag__copy_into(y, x);
        if (vt) ag__write(vt, 0, value);
        const int64_t *ip = (const int64_t *)ag__ptr(iv);
        const char *xp = boxes ? ag__ptr(x) : NULL, *sp = sc ? ag__ptr(sc) : NULL;
#define SCATTER_ALL(SZ, T)                                                                                    \
    FOR_RUNS(&L, nt, no_scratch,                                                                           \
             scatter_run_##SZ(&L, b, t0, t1, ip, (const T *)sp, vt ? *(const T *)ag__ptr(vt) : 0, (const T *)xp, \
                              (T *)ag__ptr(y), &bad))
        switch (ag_dtype_size(dt)) {
        case 8: SCATTER_ALL(8, uint64_t); break;
        case 4: SCATTER_ALL(4, uint32_t); break;
        default: SCATTER_ALL(1, uint8_t); break;
        }
#undef SCATTER_ALL
    }
    const bool ok = y && (src || vt) && walk_failed(bad, op, index, x, d) == AG_OK;
    ag_release(sc), ag_release(iv), ag_release(vt);
    lanes_free(&L);
    if (!ok) {
        if (y) ag__discard(y);
        return NULL;
    }
    ag_tensor *in[3] = {x, (ag_tensor *)index, src};
    int nin = src ? 3 : 2;
    if (ag__needs_grad(in, nin)) {
        if (!ag__record(y, src ? &op_scatter : &op_scatter_value, in, nin)) return NULL;
        y->attr.i[0] = d;
    }
    return y;
}

ag_tensor *ag_scatter(ag_tensor *x, int dim, const ag_tensor *index, ag_tensor *src) {
    AG_CHECK_HANDLES(NULL, "scatter", x, index, src);
    if (!x || !index || !src) return NULL;
    return scatter_impl("scatter", x, dim, index, src, 0);
}

ag_tensor *ag_scatter_value(ag_tensor *x, int dim, const ag_tensor *index, double value) {
    AG_CHECK_HANDLES(NULL, "scatter_value", x, index);
    if (!x || !index) return NULL;
    return scatter_impl("scatter_value", x, dim, index, NULL, value);
}

/* ---- scatter_reduce --------------------------------------------------------------------------- */
/* Whether v counts as equal to the result r of an amax/amin (NaN equals NaN), as 1 or 0
 * without branches, for loops where it is data, not a pattern. */
static inline int tie_bit(double v, double r) { return (v == r) | ((v != v) & (r != r)); }

/* Whether a and b have the same bits. */
static inline bool same_bits(double a, double b) {
    uint64_t ab, bb;
    memcpy(&ab, &a, sizeof ab), memcpy(&bb, &b, sizeof bb);
    return ab == bb;
}

/* The bytes of scratch per target of the forward (SR_FORWARD): amax/amin a mark without
 * include_self, none with it; sum and prod acc (double), and a mark without include_self;
 * mean acc and cnt (int64). */
static int64_t sr_target_bytes(int red, bool self) {
    if (red == AG_SCATTER_AMAX || red == AG_SCATTER_AMIN) return self ? 0 : 1;
    return red == AG_SCATTER_MEAN ? 16 : self ? 8 : 9;
}

/* The forward of run (b, [t0, t1)): y takes every contribution, y holding x's box already when
 * `copied` (else the run copies it first, while in the cache for the walk).  sum, mean and
 * prod accumulate in double (acc, the run's scratch: SR_TARGET_BYTES) from x (include_self) or
 * from -0 and 1, their identities (which the first value sent replaces exactly: -0 + v and 1·v
 * are v, bits and NaN payloads included); mean counts the values sent (cnt, after acc), and
 * without include_self sum and prod mark where something was sent (mark, after acc: x stays
 * where nothing was).  With include_self a target whose acc still holds x's bits takes x's
 * (nothing was sent, or the values sent left it unchanged: the same value).  amax/amin compare
 * in T, from x or from ∓inf (v against -inf is v for amax, whatever v), marking without
 * include_self where something was sent.  No loop over the values sent has a branch on them.
 * Index values outside x's dim set *bad (RUN_POS's check). */
/* y[o] = v where v is NaN or GT(v, a), else a (NaN stays), without a branch on the data: GT(v, a) ? v : a
 * is one maxss/minss (a where either is NaN), then v where v is NaN, a cmov.  (It was that select done on
 * the bits with masks: the same bits, 15 instructions an element against 12; amax along dim 1 of
 * [1024, 1024], forward, one thread: docs/benchmarks.md, "Session 13: repeat, ...".) */
#define SR_EXTREMUM_WALK(T, GT, MARK)                                                                              \
    RUN_POS(L, b, t0, t1, iv, 1, &out, {                                                                           \
        const T v = sp[pos], a = y[o], m = GT(v, a) ? v : a;                                                       \
        y[o] = v != v ? v : m;                                                                                     \
        MARK;                                                                                                      \
    })
#define SR_GT(v, a) ((v) > (a))
#define SR_LT(v, a) ((v) < (a))
/* acc[q] = acc[q] OP v over the run's positions, MARK after each */
#define SR_ACC_WALK(T, OP, MARK)                                                                                   \
    RUN_POS(L, b, t0, t1, iv, 1, &out, {                                                                           \
        acc[q] OP (double)sp[pos];                                                                                 \
        MARK;                                                                                                      \
    })
#define SR_FORWARD(NAME, T)                                                                                         \
    AG_VEC_CLONES_512 static void NAME(const lanes *L, int64_t b, int64_t t0, int64_t t1, const int64_t *iv, const T *sp,           \
                     const T *xp, T *y, char *scratch, int red, bool self, bool copied, int *bad) {               \
        int out = 0;                                                                                               \
        /* none with amax/amin and include_self (scratch NULL) */                                                 \
        const int64_t after_ = scratch && red != AG_SCATTER_AMAX && red != AG_SCATTER_AMIN ? 8 * L->box : 0;     \
        double *acc = (double *)scratch;                                                                           \
        uint8_t *mark = (uint8_t *)(scratch ? scratch + after_ : NULL);                                            \
        int64_t *cnt = (int64_t *)(scratch ? scratch + after_ : NULL);                                             \
        if (red == AG_SCATTER_AMAX || red == AG_SCATTER_AMIN) {                                                    \
            const bool max = red == AG_SCATTER_AMAX;                                                               \
            if (self && !copied) BOX_FOR(L, b, t0, t1, { y[o] = xp[o]; });                                        \
            if (!self)                                                                                             \
                BOX_FOR(L, b, t0, t1, {                                                                            \
                    y[o] = max ? -(T)INFINITY : (T)INFINITY;                                                       \
                    mark[q] = 0;                                                                                   \
                });                                                                                                \
            if (self && max) SR_EXTREMUM_WALK(T, SR_GT, (void)0);                                                     \
            else if (self) SR_EXTREMUM_WALK(T, SR_LT, (void)0);                                                       \
            else if (max) SR_EXTREMUM_WALK(T, SR_GT, mark[q] = 1);                                                    \
            else SR_EXTREMUM_WALK(T, SR_LT, mark[q] = 1);                                                             \
            if (!self) BOX_FOR(L, b, t0, t1, { y[o] = mark[q] ? y[o] : xp[o]; });                                  \
        } else if (red == AG_SCATTER_MEAN) {                                                                       \
            BOX_FOR(L, b, t0, t1, {                                                                                \
                acc[q] = self ? (double)xp[o] : -0.0;                                                              \
                cnt[q] = 0;                                                                                        \
            });                                                                                                    \
            SR_ACC_WALK(T, +=, cnt[q]++);                                                                          \
            BOX_FOR(L, b, t0, t1, { y[o] = cnt[q] == 0 ? xp[o] : (T)(acc[q] / (double)(cnt[q] + self)); });        \
        } else if (self) {                                                                                         \
            /* x's NaNs noted as x is read (not read again after the walk) */                                      \
            int nan = 0;                                                                                           \
            BOX_FOR(L, b, t0, t1, {                                                                                \
                acc[q] = (double)xp[o];                                                                            \
                nan |= xp[o] != xp[o];                                                                             \
            });                                                                                                    \
            if (red == AG_SCATTER_PROD) SR_ACC_WALK(T, *=, (void)0);                                               \
            else SR_ACC_WALK(T, +=, (void)0);                                                                      \
            /* y = (T)acc, which is x where acc holds (double)x but for a NaN x's bits: x's there */              \
            BOX_FOR(L, b, t0, t1, { y[o] = (T)acc[q]; });                                                          \
            if (nan) BOX_FOR(L, b, t0, t1, { y[o] = same_bits(acc[q], (double)xp[o]) ? xp[o] : y[o]; });          \
        } else {                                                                                                   \
            const double id = red == AG_SCATTER_PROD ? 1.0 : -0.0;                                                 \
            BOX_FOR(L, b, t0, t1, {                                                                                \
                acc[q] = id;                                                                                       \
                mark[q] = 0;                                                                                       \
            });                                                                                                    \
            if (red == AG_SCATTER_PROD) SR_ACC_WALK(T, *=, mark[q] = 1);                                           \
            else SR_ACC_WALK(T, +=, mark[q] = 1);                                                                  \
            BOX_FOR(L, b, t0, t1, { y[o] = mark[q] ? (T)acc[q] : xp[o]; });                                        \
        }                                                                                                          \
        if (out) set_flag(bad);                                                                                    \
    }
SR_FORWARD(sr_forward_f32, float)
SR_FORWARD(sr_forward_f64, double)

/* q where keep is 1, +0 where it is 0, without a branch (the bits masked: an infinite or NaN q
 * not kept gives 0, as the branch would). */
static inline float keep_f32(float q, int keep) {
    uint32_t b;
    memcpy(&b, &q, sizeof b);
    b &= 0u - (uint32_t)keep;
    memcpy(&q, &b, sizeof q);
    return q;
}
static inline double keep_f64(double q, int keep) {
    uint64_t b;
    memcpy(&b, &q, sizeof b);
    b &= 0u - (uint64_t)keep;
    memcpy(&q, &b, sizeof q);
    return q;
}
#define KEEP(q, keep) _Generic((q), float: keep_f32, double: keep_f64)((q), (keep))

/* The amax/amin adjoint of run (b, [t0, t1)): cnt the contributors equal to y[o] (ties), the
 * self value counted where it contributes; dsrc[pos] = dy[o]/cnt where src[pos] = y[o],
 * dx[o] = dy[o]/cnt where x[o] = y[o] (include_self), else dy[o] where nothing is sent.
 * Nothing sent is cnt = 0 without include_self (y[o] is one of the values sent, so one of them
 * ties), and cnt = 1 from x alone with it (y[o] = x[o]): no count of contributions is needed.
 * After the count, one pass over the box writes dx and keeps the share dy[o]/cnt that the walk
 * for dsrc reads.  Which value ties is data, not a pattern: the loops have no branch on it
 * (KEEP); without a NaN among the box's results a tie is plain equality (a NaN sent does not
 * equal a number), with one tie_bit tells (NaN ties NaN).  tl is the run's scratch; gx, gs may
 * be NULL (not wanted). */
#define SR_EXTREMUM_ADJOINT(NAME, T)                                                                               \
    static void NAME(const lanes *L, int64_t b, int64_t t0, int64_t t1, const int64_t *iv, const T *sp,           \
                     const T *xp, const T *y, const T *g, tally *tl, bool self, T *gx, T *gs) {                   \
        int nan = 0;                                                                                               \
        BOX_FOR(L, b, t0, t1, {                                                                                    \
            tl[q].cnt = self & tie_bit(xp[o], y[o]);                                                               \
            nan |= isnan(y[o]);                                                                                    \
        });                                                                                                        \
        if (nan) RUN_FOR(L, b, t0, t1, iv, sp, T, { tl[q].cnt += tie_bit(v, y[o]); });                             \
        else RUN_FOR(L, b, t0, t1, iv, sp, T, { tl[q].cnt += v == y[o]; });                                        \
        BOX_FOR(L, b, t0, t1, {                                                                                    \
            const double share = (double)g[o] / (double)tl[q].cnt;                                                 \
            if (gx) gx[o] = self ? KEEP((T)share, tie_bit(xp[o], y[o])) : KEEP(g[o], tl[q].cnt == 0);              \
            tl[q].aux = share;                                                                                     \
        });                                                                                                        \
        if (gs && nan) RUN_FOR(L, b, t0, t1, iv, sp, T, { gs[pos] = KEEP((T)tl[q].aux, tie_bit(v, y[o])); });      \
        else if (gs) RUN_FOR(L, b, t0, t1, iv, sp, T, { gs[pos] = KEEP((T)tl[q].aux, v == y[o]); });               \
    }
SR_EXTREMUM_ADJOINT(sr_extremum_adjoint_f32, float)
SR_EXTREMUM_ADJOINT(sr_extremum_adjoint_f64, double)

/* d(result)/d(contributor v) at target o (tallies c), times dy (sum, mean, prod): g of type T */
#define SR_CONTRIBUTION(v, o, c)                                                                               \
    (red == AG_SCATTER_SUM    ? (double)g[o]                                                                   \
     : red == AG_SCATTER_MEAN ? (double)g[o] / (double)((c).cnt + self)                                        \
     : ((v) != 0 ? ((c).zeros == 0 ? (double)g[o] * (c).aux / (v) : 0)                                         \
                 : ((c).zeros == 1 ? (double)g[o] * (c).aux : 0)))

/* The sum/mean/prod adjoint of run (b, [t0, t1)): the tallies (the self value where it
 * contributes: always with include_self; without it only where nothing is sent, and then
 * dx = dy needs no tally; sum with include_self needs none at all), dsrc, then dx.  tl is the
 * run's scratch; gx, gs may be NULL (not wanted). */
#define SR_ADJOINT(NAME, T)                                                                                        \
    static void NAME(const lanes *L, int64_t b, int64_t t0, int64_t t1, const int64_t *iv, const T *sp,           \
                     const T *xp, const T *g, tally *tl, int red, bool self, T *gx, T *gs) {                      \
        const bool prod = red == AG_SCATTER_PROD;                                                                  \
        if (red == AG_SCATTER_SUM && self) { /* no tally: dsrc[pos] = dy[o], dx = dy */                           \
            if (gs) RUN_FOR(L, b, t0, t1, iv, sp, T, { gs[pos] = g[o]; });                                         \
            if (gx) BOX_FOR(L, b, t0, t1, { gx[o] = g[o]; });                                                      \
            return;                                                                                                \
        }                                                                                                          \
        BOX_FOR(L, b, t0, t1, {                                                                                    \
            tl[q].cnt = 0;                                                                                         \
            tl[q].zeros = prod && self && xp[o] == 0;                                                              \
            tl[q].aux = prod && self && xp[o] != 0 ? (double)xp[o] : 1;                                            \
        });                                                                                                        \
        if (prod)                                                                                                  \
            RUN_FOR(L, b, t0, t1, iv, sp, T, {                                                                     \
                tl[q].cnt++;                                                                                       \
                v == 0 ? (void)tl[q].zeros++ : (void)(tl[q].aux *= v);                                             \
            });                                                                                                    \
        else if (red == AG_SCATTER_MEAN || !self) RUN_FOR(L, b, t0, t1, iv, sp, T, { tl[q].cnt++; });              \
        if (gs) RUN_FOR(L, b, t0, t1, iv, sp, T, { gs[pos] = (T)SR_CONTRIBUTION((double)v, o, tl[q]); });          \
        if (gx)                                                                                                    \
            BOX_FOR(L, b, t0, t1, {                                                                                \
                const double v = xp[o];                                                                            \
                gx[o] = (T)(tl[q].cnt == 0 ? (double)g[o] : self ? SR_CONTRIBUTION(v, o, tl[q]) : 0);              \
            });                                                                                                    \
    }
SR_ADJOINT(sr_adjoint_f32, float)
SR_ADJOINT(sr_adjoint_f64, double)

/* dx and dsrc run by run (the threads split the runs; see lanes above).  Where index does not
 * span x, dx starts as dy (nothing sent outside the boxes); where src is larger than index,
 * dsrc starts as 0. */
static ag_status scatter_reduce_backward(ag_tensor *out, ag_tensor *gout) {
    ag_tensor *x = out->in[0], *index = out->in[1], *src = out->in[2];
    const int d = (int)out->attr.i[0], red = (int)out->attr.i[1];
    const bool self = out->attr.i[2] != 0, f64 = x->dtype == AG_F64;
    const bool want_x = ag__wants(out, 0), want_src = ag__wants(out, 2);
    const bool extremum = red == AG_SCATTER_AMAX || red == AG_SCATTER_AMIN, spans = index_spans(index, x, d);
    const ag_dtype dt = x->dtype;
    const int64_t n = ag_numel(index), nx = ag_numel(x);
    int nt = ag__threads_for(n > nx ? n : nx);
    lanes L;
    if (lanes_make(index, d, x, src, nt, sizeof(tally), &L)) return AG_ERR_NOMEM;
    if (L.runs < nt) nt = L.runs ? (int)L.runs : 1;
    ag_tensor *g = ag__contig_or_copy(gout), *xc = ag__contig_or_copy(x), *sc = ag__contig_or_copy(src);
    ag_tensor *iv = ag__contig_or_copy((ag_tensor *)index);
    char *work = scratch_new(&L, nt);
    ag_tensor *gx = want_x ? ag__new_unowned(dt, x->ndim, x->shape, false) : NULL;
    ag_tensor *gs = want_src ? ag__new_unowned(dt, src->ndim, src->shape, ag_numel(src) != n) : NULL;
    ag_status st = AG_ERR_NOMEM;
    if (!g || !xc || !sc || !iv || !work || (want_x && !gx) || (want_src && !gs)) goto done;
    if (gx && !spans) ag__copy_into(gx, g);
    const int64_t *ip = (const int64_t *)ag__ptr(iv);
#define SR_BACKWARD(T, SUF)                                                                                          \
    do {                                                                                                             \
        const T *xp = (const T *)ag__ptr(xc), *sp = (const T *)ag__ptr(sc), *yp = (const T *)ag__ptr(out);          \
        const T *gp = (const T *)ag__ptr(g);                                                                         \
        T *gxp = gx ? (T *)ag__ptr(gx) : NULL, *gsp = gs ? (T *)ag__ptr(gs) : NULL;                                  \
        if (extremum)                                                                                                \
            FOR_RUNS(&L, nt, work, sr_extremum_adjoint_##SUF(&L, b, t0, t1, ip, sp, xp, yp, gp, (tally *)scratch, self, gxp, gsp)); \
        else                                                                                                         \
            FOR_RUNS(&L, nt, work, sr_adjoint_##SUF(&L, b, t0, t1, ip, sp, xp, gp, (tally *)scratch, red, self, gxp, gsp));   \
    } while (0)
    if (f64) SR_BACKWARD(double, f64);
    else SR_BACKWARD(float, f32);
#undef SR_BACKWARD
    st = AG_OK;
    if (want_x) st = ag__accumulate(x, gx), gx = NULL;
    if (st == AG_OK && want_src) st = ag__accumulate(src, gs), gs = NULL;
done:
    ag_release(g), ag_release(xc), ag_release(sc), ag_release(iv), ag_release(gx), ag_release(gs);
    scratch_free(work, &L);
    lanes_free(&L);
    return st;
}

/* src's region that index addresses (its leading corner of index's shape): a view of src. */
static ag_tensor *src_region(ag_tensor *src, const ag_tensor *index) {
    for (int k = 0; src && k < src->ndim; k++)
        if (src->shape[k] != index->shape[k]) src = ag_narrow(src, k, 0, index->shape[k]);
    return src;
}

/* Where v equals y (NaN equals NaN), as the first-order adjoint's tie_bit(). */
static ag_tensor *hits(ag_tensor *v, ag_tensor *y) { return ag_where(ag_isnan(y), ag_isnan(v), ag_eq(v, y)); }

/* The partial derivatives of scatter_reduce's y in differentiable ops, as PyTorch's
 * scatter_reduce_backward: *wx (x's shape), ∂y[o]/∂x[o], and *ws (over src's region r),
 * ∂y[target(pos)]/∂r[pos].  With N[o] the contributors (self counted when included):
 *   sum: 1, 1;   mean: 1/N, 1/N[target];
 *   prod: (product of the others) = y'/x' with x' = x, 1 where 0, y' its reduction, and
 *         y/r, or for a zero r the product of the others written out (below): exact to every
 *         order for one or two zeros sent to a target (PyTorch refuses double backward for
 *         two), to first order for more;
 *   amax/amin: [x = y]/T, [r = y[target]]/T[target], T[o] the contributors equal to y[o];
 * then wx is 0 where something is sent unless include_self (y[o] does not read x[o] there). */
static ag_status reduce_partials(ag_tensor *out, ag_tensor *r, ag_tensor **wx, ag_tensor **ws) {
    ag_tensor *x = out->in[0], *index = out->in[1];
    const int d = (int)out->attr.i[0], red = (int)out->attr.i[1];
    const bool self = out->attr.i[2] != 0;
    ag_tensor *zero = ag_scalar(0, x->dtype), *one = ag_scalar(1, x->dtype), *a = NULL, *b = NULL;
    if (red == AG_SCATTER_SUM) {
        a = ag_ones_like(x);
        b = ag_ones_like(r);
    } else if (red == AG_SCATTER_MEAN) {
        ag_tensor *n = ag_scatter_add(self ? ag_ones_like(x) : ag_zeros_like(x), d, index, ag_ones_like(r));
        a = ag_div(one, ag_masked_fill(n, ag_eq(n, zero), 1)); /* a target nothing reaches keeps x: 1 */
        b = ag_gather(a, d, index);
    } else if (red == AG_SCATTER_PROD) {
        ag_tensor *xm = ag_masked_fill(x, ag_eq(x, zero), 1);
        a = ag_div(ag_scatter_reduce(xm, d, index, r, AG_SCATTER_PROD, self), xm);
        /* a zero r[pos] sent: the others' product is the reduction with every zero sent made 1
         * (rest), times the other zeros sent there: 1 for none, the other one for two (written
         * as their sum minus r[pos], 0 in value, not in derivative), 0 for more (exact to first
         * order: its derivatives of second order, y's third, are not) */
        ag_tensor *r0 = ag_eq(r, zero);
        ag_tensor *count = ag_gather(ag_scatter_add(ag_zeros_like(x), d, index, ag_to_dtype(r0, x->dtype)), d, index);
        ag_tensor *sum = ag_gather(ag_scatter_add(ag_zeros_like(x), d, index, ag_where(r0, r, zero)), d, index);
        ag_tensor *rest = ag_scatter_reduce(x, d, index, ag_masked_fill(r, r0, 1), AG_SCATTER_PROD, self);
        ag_tensor *two = ag_eq(count, ag_scalar(2, x->dtype));
        ag_tensor *other = ag_where(ag_eq(count, one), one, ag_where(two, ag_sub(sum, r), zero));
        ag_tensor *nonzero = ag_div(ag_gather(out, d, index), ag_masked_fill(r, r0, 1));
        b = ag_where(r0, ag_mul(ag_gather(rest, d, index), other), nonzero);
    } else {
        ag_tensor *hx = ag_to_dtype(hits(x, out), x->dtype);
        if (!self) hx = ag_scatter_value(hx, d, index, 0);
        ag_tensor *hr = ag_to_dtype(hits(r, ag_gather(out, d, index)), x->dtype);
        ag_tensor *share = ag_div(one, ag_scatter_add(hx, d, index, hr));
        a = ag_mul(hx, share);
        b = ag_mul(hr, ag_gather(share, d, index));
    }
    if (a && !self) a = ag_scatter_value(a, d, index, 0);
    *wx = a;
    *ws = b;
    return a && b ? AG_OK : ag_last_status();
}

/* dx = dy·wx;  dsrc = gather(dy, dim, index)·ws in index's corner of src, 0 elsewhere */
static ag_status scatter_reduce_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin) {
    ag_tensor *src = out->in[2], *wx, *ws;
    ag_status st = reduce_partials(out, src_region(src, out->in[1]), &wx, &ws);
    if (st) return st;
    if (ag__wants(out, 0) && !(gin[0] = ag_mul(gout, wx))) return ag_last_status();
    if (ag__wants(out, 2)) {
        ag_tensor *g = ag_mul(ag_gather(gout, (int)out->attr.i[0], out->in[1]), ws);
        if (!(gin[2] = ag__index_corner(g, ag_shape_of(src)))) return ag_last_status();
    }
    return AG_OK;
}

/* dy = dx·wx + scatter_add(0, dim, index, dsrc·ws) over src's region */
static ag_tensor *scatter_reduce_jvp(ag_tensor *out, ag_tensor *const *tin) {
    ag_tensor *x = out->in[0], *wx, *ws;
    const int d = (int)out->attr.i[0];
    if (reduce_partials(out, src_region(out->in[2], out->in[1]), &wx, &ws)) return NULL;
    ag_tensor *dy = tin[0] ? ag_mul(tin[0], wx) : ag_zeros_like(x);
    if (dy && tin[2]) dy = ag_scatter_add(dy, d, out->in[1], ag_mul(src_region(tin[2], out->in[1]), ws));
    return dy;
}

/* y[o] = reduce({x[o] if include_self} ∪ {src[pos] : target(pos) = o}), x[o] where nothing is sent;
 * dx, dsrc: the reduction's partial derivatives times dy at each target */
static const ag_op op_scatter_reduce = {
    .name = "scatter_reduce", .grad_fn = "ScatterReduceBackward0", .backward = scatter_reduce_backward,
    .saves = AG_SAVES_IN0 | AG_SAVES_IN1 | AG_SAVES_IN2 | AG_SAVES_OUT,
    .math = "y[o] = reduce(x[o] if include_self, src[pos] sent to o);  "
            "dsrc = dy[o] (sum), dy[o]/count (mean), dy[o]·(product of the other contributors) (prod), "
            "dy[o]/(ties) where equal to y[o] (amax/amin); dx alike",
    .backward_graph = scatter_reduce_backward_graph, .jvp = scatter_reduce_jvp,
    .tangent = "ẏ = ẋ·∂y/∂x + scatter_add(0, dim, index, ṡrc·∂y/∂src), the partials of the reduction (as the "
               "adjoint's)"};

ag_tensor *ag_scatter_reduce(ag_tensor *x, int dim, const ag_tensor *index, ag_tensor *src,
                             ag_scatter_reduction reduce, bool include_self) {
    AG_CHECK_HANDLES(NULL, "scatter_reduce", x, index, src);
    if (!x || !index || !src) return NULL;
    const char *op = "scatter_reduce";
    if ((unsigned)reduce > AG_SCATTER_AMIN)
        return ag__fail_null(AG_ERR_ARG, "%s: unknown reduction %d (expected AG_SCATTER_SUM, _PROD, _MEAN, _AMAX or _AMIN)",
                             op, (int)reduce);
    if (ag__check_float(op, x, src)) return NULL;
    int d = check_scatter(op, x, dim, index, src);
    if (d < 0) return NULL;
    const ag_dtype dt = x->dtype;
    const int64_t n = ag_numel(index), nx = ag_numel(x);
    int nt = ag__threads_for(n > nx ? n : nx);
    const bool spans = index_spans(index, x, d); /* the runs copy x's boxes: no copy of x first */
    const int64_t tb = sr_target_bytes(reduce, include_self);
    lanes L;
    if (lanes_make(index, d, x, src, nt, tb, &L)) return NULL;
    if (L.runs < nt) nt = L.runs ? (int)L.runs : 1;
    ag_tensor *xc = ag__contig_or_copy(x), *sc = ag__contig_or_copy(src), *iv = ag__contig_or_copy((ag_tensor *)index);
    ag_tensor *y = ag__new(dt, x->ndim, x->shape);
    char *work = tb ? scratch_new(&L, nt) : NULL;
    int bad = 0;
    bool made = xc && sc && iv && y && (work || !tb);
    if (made) {
        if (!spans) ag__copy_into(y, x);
        const int64_t *ip = (const int64_t *)ag__ptr(iv);
#define SR_RUN(T, SUF)                                                                                          \
    FOR_RUNS(&L, nt, work,                                                                                      \
             sr_forward_##SUF(&L, b, t0, t1, ip, (const T *)ag__ptr(sc), (const T *)ag__ptr(xc), (T *)ag__ptr(y), \
                              scratch, reduce, include_self, !spans, &bad))
        if (dt == AG_F64) SR_RUN(double, f64);
        else SR_RUN(float, f32);
#undef SR_RUN
        made = walk_failed(bad, op, index, x, d) == AG_OK;
    }
    ag_release(xc), ag_release(sc), ag_release(iv);
    scratch_free(work, &L);
    lanes_free(&L);
    if (!made) {
        if (y) ag__discard(y);
        return NULL;
    }
    ag_tensor *in[3] = {x, (ag_tensor *)index, src};
    if (ag__needs_grad(in, 3)) {
        if (!ag__record(y, &op_scatter_reduce, in, 3)) return NULL;
        y->attr.i[0] = d;
        y->attr.i[1] = reduce;
        y->attr.i[2] = include_self;
    }
    return ag__check_finite(y, op);
}

/* ---- take, put --------------------------------------------------------------------------------
 * Both read index in place (contiguous, else a contiguous copy) and wrap a negative value v to
 * v + numel(x) where they use it, with typed loops: no copy of index, no memcpy call an element
 * (session 12: take's forward of 2^20 values from a [1024, 1024] float32 x, 1 thread, 18.9 ->
 * 7.2 ms, PyTorch 9.2). */
/* The error for an index value v outside [-numel, numel) of x read as 1-D. */
static void flat_fail(const char *op, int64_t v, const ag_tensor *x) {
    char s[AG_SHAPE_STR];
    ag__fail(AG_ERR_INDEX, "%s: index %lld is out of range for a tensor of %lld elements (shape %s)", op, (long long)v,
             (long long)ag_numel(x), ag__tshape(s, x));
}

/* Whether v lies in [-size, size) (unsigned: no sum overflows for size <= AG_MAX_SIZE). */
static inline bool flat_in(int64_t v, int64_t size) { return (uint64_t)v + (uint64_t)size < 2 * (uint64_t)size; }
/* v in [-size, size) taken into [0, size) */
static inline int64_t flat_wrap(int64_t v, int64_t size) { return v + (size & -(int64_t)(v < 0)); }

/* d[k] = x.flat[index[k]] for n values iv (wrapped from [-size, 0)), moved as bits; false at the
 * first value outside [-size, size), *bad (d written up to it).  d, x and iv contiguous. */
#define TAKE_FLAT(NAME, T)                                                                                   \
    static bool NAME(void *dp, const void *xp, const int64_t *restrict iv, int64_t n, int64_t size, int64_t *bad) { \
        T *restrict d = dp;                                                                                  \
        const T *restrict x = xp;                                                                            \
        for (int64_t k = 0; k < n; k++) {                                                                    \
            const int64_t v = iv[k];                                                                         \
            if (!flat_in(v, size)) {                                                                         \
                *bad = v;                                                                                    \
                return false;                                                                                \
            }                                                                                                \
            d[k] = x[flat_wrap(v, size)];                                                                    \
        }                                                                                                    \
        return true;                                                                                         \
    }
TAKE_FLAT(take_1, uint8_t)
TAKE_FLAT(take_4, uint32_t)
TAKE_FLAT(take_8, uint64_t)

/* take_1/4/8 by dt's element size. */
static bool take_flat(ag_dtype dt, void *d, const void *x, const int64_t *iv, int64_t n, int64_t size, int64_t *bad) {
    const size_t es = ag_dtype_size(dt);
    return es == 8 ? take_8(d, x, iv, n, size, bad) : es == 4 ? take_4(d, x, iv, n, size, bad) : take_1(d, x, iv, n, size, bad);
}

/* y.flat[v] = s[k], or += s[k] when acc (T's own add: the bits of the add in double rounded
 * once), for v = index[k] wrapped from [-size, 0); false at the first value outside
 * [-size, size), *bad (nothing after it written).  y, s and iv contiguous. */
#define PUT_FLAT(NAME, T)                                                                                    \
    static bool NAME(void *yp, const void *sp, const int64_t *restrict iv, int64_t n, int64_t size, bool acc, \
                     int64_t *bad) {                                                                         \
        T *restrict y = yp;                                                                                  \
        const T *restrict s = sp;                                                                            \
        for (int64_t k = 0; k < n; k++) {                                                                    \
            const int64_t v = iv[k];                                                                         \
            if (!flat_in(v, size)) {                                                                         \
                *bad = v;                                                                                    \
                return false;                                                                                \
            }                                                                                                \
            T *t = y + flat_wrap(v, size);                                                                   \
            *t = acc ? *t + s[k] : s[k];                                                                     \
        }                                                                                                    \
        return true;                                                                                         \
    }
PUT_FLAT(put_f32, float)
PUT_FLAT(put_f64, double)

/* take picks in place from a strided x with at most numel(x) / TAKE_COPY_RATIO values (an
 * unravel costs a few divisions a dim, a copy of x about a nanosecond an element) */
#define TAKE_COPY_RATIO 64

/* d[k] = x.flat[index[k]] for a strided x, each value unravelled (row-major) into its place by x's
 * strides, moved as bits: for few values, where copying x first would cost more than the picks
 * (take of 6 values of a transposed [1776, 2368] float32 x, forward, one thread: 3 083 -> 0.34 µs;
 * docs/benchmarks.md, "Session 14: the index family transposed ... (index15)").  false and *bad as
 * TAKE_FLAT. */
static bool take_strided(const ag_tensor *x, void *dp, const int64_t *iv, int64_t n, int64_t *bad) {
    const size_t es = ag_dtype_size(x->dtype);
    const int64_t size = ag_numel(x);
    const char *base = ag__ptr(x);
    char *d = dp;
    for (int64_t k = 0; k < n; k++) {
        int64_t v = iv[k], off = 0;
        if (!flat_in(v, size)) {
            *bad = v;
            return false;
        }
        v = flat_wrap(v, size);
        for (int i = x->ndim - 1; i >= 0; i--) /* shape[i] > 0: size > 0 here */
            off += v % x->shape[i] * x->stride[i], v /= x->shape[i];
        memcpy(d + (size_t)k * es, base + off * (int64_t)es, es);
    }
    return true;
}

/* put_flat into a y of any strides: y at the row-major position v = index[k] (wrapped from
 * [-size, 0)) is y's element at the strided offset of v's coordinates, so a y laid out as its x (a
 * transposed x: put keeps the layout, as torch 1.13) gets the row-major path's values, in the same
 * order (repeats summed in index order); false and *bad as PUT_FLAT.  s and iv contiguous. */
#define PUT_STRIDED(NAME, T)                                                                                 \
    static bool NAME(ag_tensor *yt, const void *sp, const int64_t *restrict iv, int64_t n, bool acc,          \
                     int64_t *bad) {                                                                         \
        T *restrict y = (T *)ag__ptr(yt);                                                                    \
        const T *restrict s = sp;                                                                            \
        const int64_t size = ag_numel(yt);                                                                   \
        for (int64_t k = 0; k < n; k++) {                                                                    \
            int64_t v = iv[k], off = 0;                                                                      \
            if (!flat_in(v, size)) {                                                                         \
                *bad = v;                                                                                    \
                return false;                                                                                \
            }                                                                                                \
            v = flat_wrap(v, size);                                                                          \
            for (int i = yt->ndim - 1; i >= 0; i--) /* shape[i] > 0: size > 0 here */                       \
                off += v % yt->shape[i] * yt->stride[i], v /= yt->shape[i];                                  \
            T *t = y + off;                                                                                  \
            *t = acc ? *t + s[k] : s[k];                                                                     \
        }                                                                                                    \
        return true;                                                                                         \
    }
PUT_STRIDED(put_strided_f32, float)
PUT_STRIDED(put_strided_f64, double)

/* put_f32/put_f64 by dt. */
static bool put_flat(ag_dtype dt, void *y, const void *s, const int64_t *iv, int64_t n, int64_t size, bool acc,
                     int64_t *bad) {
    return dt == AG_F64 ? put_f64(y, s, iv, n, size, acc, bad) : put_f32(y, s, iv, n, size, acc, bad);
}

/* dx = 0, dx.flat[index[k]] += dy[k] (index checked by the forward) */
static ag_status take_backward(ag_tensor *out, ag_tensor *gout) {
    ag_tensor *x = out->in[0];
    if (!ag__wants(out, 0)) return AG_OK;
    ag_tensor *iv = ag__contig_or_copy(out->in[1]), *g = iv ? ag__contig_or_copy(gout) : NULL;
    ag_tensor *gx = g ? ag__new_unowned(x->dtype, x->ndim, x->shape, true) : NULL;
    ag_status st = AG_ERR_NOMEM;
    int64_t bad;
    if (gx) {
        put_flat(x->dtype, ag__ptr(gx), ag__ptr(g), (const int64_t *)ag__ptr(iv), ag_numel(iv), ag_numel(x), true, &bad);
        st = ag__accumulate(x, gx);
    }
    ag_release(iv), ag_release(g);
    return st;
}

/* dx = put(0, index, dy, accumulate) */
static ag_status take_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin) {
    return made(gin[0] = ag_put(ag_zeros_like(out->in[0]), out->in[1], gout, true));
}

/* dy = take(dx, index) */
static ag_tensor *take_jvp(ag_tensor *out, ag_tensor *const *tin) { return ag_take(tin[0], out->in[1]); }

/* y[k] = x.flat[index[k]];  dx.flat[index[k]] += dy[k] */
static const ag_op op_take = {.name = "take", .grad_fn = "TakeBackward0", .backward = take_backward,
                              .saves = AG_SAVES_IN1,
                              .math = "y[k] = x.flat[index[k]];  dx.flat[index[k]] += dy[k]",
                              .backward_graph = take_backward_graph, .jvp = take_jvp,
                              .tangent = "ẏ = take(ẋ, index)"};

ag_tensor *ag_take(ag_tensor *x, const ag_tensor *index) {
    AG_CHECK_HANDLES(NULL, "take", x, index);
    if (!x || !index) return NULL;
    const char *op = "take";
    if (ag__check_index_dtype(op, index)) return NULL;
    /* a strided x with few values: picked in place (take_strided), else copied contiguous first */
    const bool in_place = !ag__contig(x) && ag_numel(index) <= ag_numel(x) / TAKE_COPY_RATIO;
    ag_tensor *iv = ag__contig_or_copy((ag_tensor *)index), *xc = iv && !in_place ? ag__contig_or_copy(x) : NULL;
    ag_tensor *y = iv && (xc || in_place) ? ag__new(x->dtype, index->ndim, index->shape) : NULL;
    const int64_t *v = iv ? (const int64_t *)ag__ptr(iv) : NULL, n = ag_numel(index);
    int64_t bad;
    if (y && !(in_place ? take_strided(x, ag__ptr(y), v, n, &bad)
                        : take_flat(x->dtype, ag__ptr(y), ag__ptr(xc), v, n, ag_numel(x), &bad))) {
        flat_fail(op, bad, x);
        ag__discard(y);
        y = NULL;
    }
    ag_release(iv), ag_release(xc);
    ag_tensor *in[2] = {x, (ag_tensor *)index};
    if (y && ag__needs_grad(in, 2) && !ag__record(y, &op_take, in, 2)) return NULL;
    return y;
}

/* dx = dy (0 at the written places unless accumulating);  dsource[k] = dy.flat[index[k]] */
static ag_status put_backward(ag_tensor *out, ag_tensor *gout) {
    ag_tensor *x = out->in[0], *source = out->in[2];
    ag_tensor *iv = ag__contig_or_copy(out->in[1]), *g = iv ? contig_copy(gout, gout->ndim, gout->shape, false) : NULL;
    ag_tensor *gs = g ? ag__new_unowned(source->dtype, source->ndim, source->shape, false) : NULL;
    ag_status st = AG_ERR_NOMEM;
    if (gs) { /* index checked by the forward */
        const int64_t *v = (const int64_t *)ag__ptr(iv), n = ag_numel(iv), size = ag_numel(x);
        int64_t bad;
        take_flat(g->dtype, ag__ptr(gs), ag__ptr(g), v, n, size, &bad);
        st = AG_OK;
        if (ag__wants(out, 2)) st = ag__accumulate(source, gs), gs = NULL;
        if (!out->attr.i[0])
            for (int64_t k = 0; k < n; k++) store(ag__ptr(g), g->dtype, flat_wrap(v[k], size), 0);
        if (st == AG_OK && ag__wants(out, 0)) st = ag__accumulate(x, g), g = NULL;
    }
    ag_release(iv), ag_release(g), ag_release(gs);
    return st;
}

/* dx = dy, or put(dy, index, 0) unless accumulating;  dsource = take(dy, index) shaped as source */
static ag_status put_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin) {
    ag_tensor *index = out->in[1], *source = out->in[2];
    if (ag__wants(out, 0) && !(gin[0] = out->attr.i[0] ? gout : ag_put(gout, index, ag_zeros_like(source), false)))
        return ag_last_status();
    if (ag__wants(out, 2) && !(gin[2] = ag_reshape(ag_take(gout, index), ag_shape_of(source)))) return ag_last_status();
    return AG_OK;
}

/* dy = put(dx, index, dsource, accumulate) */
static ag_tensor *put_jvp(ag_tensor *out, ag_tensor *const *tin) {
    ag_tensor *tx = or_zeros(tin[0], out->in[0]), *ts = or_zeros(tin[2], out->in[2]);
    return tx && ts ? ag_put(tx, out->in[1], ts, out->attr.i[0] != 0) : NULL;
}

/* y = x, y.flat[index[k]] = source[k] (+= when accumulate);  dx = dy (0 there unless accumulate), dsource = take(dy, index) */
static const ag_op op_put = {.name = "put", .grad_fn = "PutBackward0", .backward = put_backward, .saves = AG_SAVES_IN1,
                             .math = "y = x;  y.flat[index[k]] = source[k] (+= with accumulate);  "
                                     "dx = dy, 0 there unless accumulate,  dsource = take(dy, index)",
                             .backward_graph = put_backward_graph, .jvp = put_jvp,
                             .tangent = "ẏ = put(ẋ, index, ṡource, accumulate)"};

ag_tensor *ag_put(ag_tensor *x, const ag_tensor *index, ag_tensor *source, bool accumulate) {
    AG_CHECK_HANDLES(NULL, "put", x, index, source);
    if (!x || !index || !source) return NULL;
    const char *op = "put";
    if (ag__check_float(op, x, source) || ag__check_index_dtype(op, index)) return NULL;
    if (ag_numel(source) != ag_numel(index)) {
        char s1[AG_SHAPE_STR], s2[AG_SHAPE_STR];
        return ag__fail_null(AG_ERR_SHAPE, "%s: source %s and index %s must have the same number of elements", op,
                             ag__tshape(s1, source), ag__tshape(s2, index));
    }
    ag_tensor *iv = ag__contig_or_copy((ag_tensor *)index), *sc = iv ? ag__contig_or_copy(source) : NULL;
    /* y keeps a dense x's layout (a transposed x: one flat copy, not a transposing one; as torch) */
    ag_tensor *y = sc ? ag__new_map_result(x->dtype, x->ndim, x->shape, (const ag_tensor *const[]){x}, 1) : NULL;
    if (y) {
        ag__copy_into(y, x);
        const int64_t *v = (const int64_t *)ag__ptr(iv), n = ag_numel(iv), size = ag_numel(x);
        int64_t bad;
        const bool put = ag__contig(y) ? put_flat(x->dtype, ag__ptr(y), ag__ptr(sc), v, n, size, accumulate, &bad)
                         : x->dtype == AG_F64 ? put_strided_f64(y, ag__ptr(sc), v, n, accumulate, &bad)
                                              : put_strided_f32(y, ag__ptr(sc), v, n, accumulate, &bad);
        if (!put) {
            flat_fail(op, bad, x);
            ag__discard(y);
            y = NULL;
        }
    }
    ag_release(iv), ag_release(sc);
    ag_tensor *in[3] = {x, (ag_tensor *)index, source};
    if (y && ag__needs_grad(in, 3)) {
        if (!ag__record(y, &op_put, in, 3)) return NULL;
        y->attr.i[0] = accumulate;
    }
    return ag__check_finite(y, op);
}

/* ---- contiguous masks: one pass, no lists of offsets -------------------------------------------
 * Where mask (and the operands read or written with it) is contiguous with the broadcast shape,
 * the mask ops and nonzero run one pass without the lists above, branch-free: the c-th selected
 * element (c counting the trues so far) is written at its place whatever the mask says there and
 * c steps by the mask's byte, so a random mask mispredicts nothing; a write past the end goes to
 * a spare.  The same elements, moved as bits (session 12: masked_select of a [1024, 1024] float32
 * x by a random half-true mask, forward, 1 thread, 11.0 -> 0.97 ms, PyTorch 3.6; nonzero of that
 * mask 7.7 -> 1.6 ms, PyTorch 3.8). */

/* How many of m[0, n) are true. */
static int64_t count_true(const uint8_t *m, int64_t n) {
    int64_t c = 0;
    for (int64_t k = 0; k < n; k++) c += m[k] != 0;
    return c;
}

#define MASK_MOVES(SUF, T)                                                                               \
    /* y[c] = x[k] for the c-th true m[k] (y has count elements) */                                      \
    static void select_##SUF(T *restrict y, const T *restrict x, const uint8_t *restrict m, int64_t n,   \
                             int64_t count) {                                                            \
        T spare;                                                                                         \
        for (int64_t k = 0, c = 0; k < n; k++) {                                                         \
            *(c < count ? y + c : &spare) = x[k];                                                        \
            c += m[k] != 0;                                                                              \
        }                                                                                                \
    }                                                                                                    \
    /* y[k] = m[k] ? s[c] : x[k] for the c-th true m[k] (s has ns >= count > 0 elements) */              \
    static void scatter_##SUF(T *restrict y, const T *restrict x, const T *restrict s, const uint8_t *restrict m, \
                              int64_t n, int64_t ns) {                                                   \
        for (int64_t k = 0, c = 0; k < n; k++) {                                                         \
            const bool t = m[k] != 0;                                                                    \
            const T v = s[c < ns ? c : ns - 1];                                                          \
            y[k] = t ? v : x[k];                                                                         \
            c += t;                                                                                      \
        }                                                                                                \
    }                                                                                                    \
    /* dx[k] = m[k] ? dy[c] : 0 for the c-th true m[k] (dy has count > 0 elements) */                    \
    static void expand_##SUF(T *restrict dx, const T *restrict dy, const uint8_t *restrict m, int64_t n, \
                             int64_t count) {                                                            \
        for (int64_t k = 0, c = 0; k < n; k++) {                                                         \
            const bool t = m[k] != 0;                                                                    \
            const T v = dy[c < count ? c : count - 1];                                                   \
            dx[k] = t ? v : (T)0;                                                                        \
            c += t;                                                                                      \
        }                                                                                                \
    }                                                                                                    \
    /* ds[c] = dy[k] for the c-th true m[k] (ds: ns zeroed elements, ns >= count), dx[k] = m[k] ? 0 : dy[k] */ \
    static void unscatter_##SUF(T *restrict dx, T *restrict ds, const T *restrict dy, const uint8_t *restrict m, \
                                int64_t n, int64_t ns) {                                                 \
        T spare;                                                                                         \
        int64_t c = 0;                                                                                   \
        for (int64_t k = 0; k < n; k++) {                                                                \
            const bool t = m[k] != 0;                                                                    \
            *(c < ns ? ds + c : &spare) = dy[k];                                                         \
            dx[k] = t ? (T)0 : dy[k];                                                                    \
            c += t;                                                                                      \
        }                                                                                                \
        if (c < ns) ds[c] = 0; /* written after the last true */                                         \
    }
MASK_MOVES(1, uint8_t)
MASK_MOVES(4, uint32_t)
MASK_MOVES(8, uint64_t)

/* The moves above by element size es, on contiguous operands. */
static void mask_select(size_t es, void *y, const void *x, const uint8_t *m, int64_t n, int64_t count) {
    if (count == 0) return;
    es == 8 ? select_8(y, x, m, n, count) : es == 4 ? select_4(y, x, m, n, count) : select_1(y, x, m, n, count);
}
static void mask_scatter(size_t es, void *y, const void *x, const void *s, const uint8_t *m, int64_t n, int64_t ns) {
    if (ns == 0) memcpy(y, x, (size_t)n * es); /* nothing selected */
    else if (es == 8) scatter_8(y, x, s, m, n, ns);
    else if (es == 4) scatter_4(y, x, s, m, n, ns);
    else scatter_1(y, x, s, m, n, ns);
}
static void mask_expand(size_t es, void *dx, const void *dy, const uint8_t *m, int64_t n, int64_t count) {
    if (count == 0) return; /* dx stays 0 */
    es == 8 ? expand_8(dx, dy, m, n, count) : es == 4 ? expand_4(dx, dy, m, n, count) : expand_1(dx, dy, m, n, count);
}
static void mask_unscatter(size_t es, void *dx, void *ds, const void *dy, const uint8_t *m, int64_t n, int64_t ns) {
    es == 8 ? unscatter_8(dx, ds, dy, m, n, ns) : es == 4 ? unscatter_4(dx, ds, dy, m, n, ns) : unscatter_1(dx, ds, dy, m, n, ns);
}

/* ---- masked_select, masked_scatter ------------------------------------------------------------ */
/* The row-major positions of the broadcast shape (ndim, shape) where mask is true, as offsets in
 * a contiguous tensor of that shape: *pos (count entries).  NULL-safe on failure (AG_ERR_NOMEM). */
static ag_status mask_positions(const ag_tensor *mask, int ndim, const int64_t *shape, int64_t **pos, int64_t *count) {
    int64_t n = ag__numel(ndim, shape), stride[AG_MAX_DIMS];
    int64_t *off = offsets_new(n), *p = offsets_new(n);
    if (!off || !p) {
        ag__free(off), ag__free(p);
        return AG_ERR_NOMEM;
    }
    broadcast_strides(mask, ndim, shape, stride);
    row_major_offsets(ndim, shape, stride, off);
    const uint8_t *m = (const uint8_t *)ag__ptr(mask);
    int64_t c = 0;
    for (int64_t k = 0; k < n; k++)
        if (m[off[k]]) p[c++] = k;
    ag__free(off);
    *pos = p;
    *count = c;
    return AG_OK;
}

/* The broadcast shape of x and mask, after checking mask's dtype. */
static ag_status mask_shape(const char *op, const ag_tensor *x, const ag_tensor *mask, int *ndim, int64_t *shape) {
    if (ag__check_mask_dtype(op, "mask", mask)) return AG_ERR_DTYPE;
    return ag__broadcast_shape(op, x, mask, ndim, shape);
}

/* dx = 0, dx[k-th selected place] = dy[k], summed over the dims x was broadcast along */
static ag_status masked_select_backward(ag_tensor *out, ag_tensor *gout) {
    ag_tensor *x = out->in[0], *mask = out->in[1];
    if (!ag__wants(out, 0)) return AG_OK;
    int ndim;
    int64_t shape[AG_MAX_DIMS], *pos = NULL, count;
    if (ag__broadcast_shape("masked_select", x, mask, &ndim, shape)) return AG_ERR_NOMEM;
    const bool flat = ag__flat_as(mask, ndim, shape); /* one pass, no list */
    if (!flat && mask_positions(mask, ndim, shape, &pos, &count)) return AG_ERR_NOMEM;
    ag_tensor *g = ag__contig_or_copy(gout);
    ag_tensor *gx = g ? ag__new_unowned(x->dtype, ndim, shape, !flat || ag_numel(g) == 0) : NULL; /* else all written */
    ag_status st = AG_ERR_NOMEM;
    if (gx) {
        if (flat)
            mask_expand(ag_dtype_size(x->dtype), ag__ptr(gx), ag__ptr(g), (const uint8_t *)ag__ptr(mask), ag_numel(gx),
                        ag_numel(g));
        else
            for (int64_t k = 0; k < count; k++) store(ag__ptr(gx), x->dtype, pos[k], load(ag__ptr(g), x->dtype, k));
        st = ag__accumulate(x, gx);
    }
    ag_release(g);
    ag__free(pos);
    return st;
}

/* dx = masked_scatter(0, mask, dy) (the engine sums x's broadcast dims down) */
static ag_status masked_select_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin) {
    return made(gin[0] = ag_masked_scatter(ag_zeros_like(out->in[0]), out->in[1], gout));
}

/* dy = masked_select(dx, mask) */
static ag_tensor *masked_select_jvp(ag_tensor *out, ag_tensor *const *tin) {
    return ag_masked_select(tin[0], out->in[1]);
}

/* y = x[mask] (1-D, x and mask broadcast);  dx[mask] = dy, 0 elsewhere */
static const ag_op op_masked_select = {.name = "masked_select", .grad_fn = "MaskedSelectBackward0",
                                       .backward = masked_select_backward, .saves = AG_SAVES_IN1,
                                       .math = "y = x[mask] (1-D);  dx[mask] = dy, 0 elsewhere",
                                       .backward_graph = masked_select_backward_graph, .jvp = masked_select_jvp,
                                       .tangent = "ẏ = masked_select(ẋ, mask)"};

ag_tensor *ag_masked_select(ag_tensor *x, const ag_tensor *mask) {
    AG_CHECK_HANDLES(NULL, "masked_select", x, mask);
    if (!x || !mask) return NULL;
    const char *op = "masked_select";
    int ndim;
    int64_t shape[AG_MAX_DIMS], stride[AG_MAX_DIMS], *pos = NULL, count;
    if (mask_shape(op, x, mask, &ndim, shape) || ag__check_alloc(op, ndim, shape, AG_I64)) return NULL;
    const int64_t n = ag__numel(ndim, shape);
    ag_tensor *y = NULL;
    if (ag__flat_as(x, ndim, shape) && ag__flat_as(mask, ndim, shape)) { /* one pass, no list */
        const uint8_t *m = (const uint8_t *)ag__ptr(mask);
        count = count_true(m, n);
        if ((y = ag__new(x->dtype, 1, &count))) mask_select(ag_dtype_size(x->dtype), ag__ptr(y), ag__ptr(x), m, n, count);
    } else {
        if (mask_positions(mask, ndim, shape, &pos, &count)) return NULL;
        int64_t *xoff = offsets_new(n);
        if (xoff && (y = ag__new(x->dtype, 1, &count))) {
            broadcast_strides(x, ndim, shape, stride);
            row_major_offsets(ndim, shape, stride, xoff);
            const int64_t es = (int64_t)ag_dtype_size(x->dtype);
            for (int64_t k = 0; k < count; k++) memcpy(ag__ptr(y) + k * es, ag__ptr(x) + xoff[pos[k]] * es, (size_t)es);
        }
        ag__free(xoff);
        ag__free(pos);
    }
    ag_tensor *in[2] = {x, (ag_tensor *)mask};
    if (y && ag__needs_grad(in, 2) && !ag__record(y, &op_masked_select, in, 2)) return NULL;
    return y;
}

/* dx = dy, 0 where masked (summed over x's broadcast dims);  dsource.flat[k] = dy[k-th masked place], 0 past them */
static ag_status masked_scatter_backward(ag_tensor *out, ag_tensor *gout) {
    ag_tensor *x = out->in[0], *mask = out->in[1], *source = out->in[2];
    int64_t *pos = NULL, count;
    const bool flat = ag__flat_as(mask, out->ndim, out->shape); /* one pass, no list */
    if (!flat && mask_positions(mask, out->ndim, out->shape, &pos, &count)) return AG_ERR_NOMEM;
    ag_tensor *g = contig_copy(gout, gout->ndim, gout->shape, false), *gx = NULL;
    ag_tensor *gs = g ? ag__new_unowned(source->dtype, source->ndim, source->shape, true) : NULL;
    if (gs) gx = flat ? ag__new_unowned(gout->dtype, gout->ndim, gout->shape, false) : ag_retain(g); /* else g in place */
    ag_status st = AG_ERR_NOMEM;
    if (gx) {
        const ag_dtype dt = g->dtype;
        if (flat)
            mask_unscatter(ag_dtype_size(dt), ag__ptr(gx), ag__ptr(gs), ag__ptr(g), (const uint8_t *)ag__ptr(mask),
                           ag_numel(g), ag_numel(gs));
        else
            for (int64_t k = 0; k < count; k++) {
                store(ag__ptr(gs), dt, k, load(ag__ptr(g), dt, pos[k]));
                store(ag__ptr(g), dt, pos[k], 0);
            }
        st = AG_OK;
        if (ag__wants(out, 2)) st = ag__accumulate(source, gs), gs = NULL;
        if (st == AG_OK && ag__wants(out, 0)) st = ag__accumulate(x, gx), gx = NULL;
    }
    ag_release(gx), ag_release(g), ag_release(gs);
    ag__free(pos);
    return st;
}

/* dx = masked_fill(dy, mask, 0);  dsource = masked_select(dy, mask) followed by zeros, shaped as source */
static ag_status masked_scatter_backward_graph(ag_tensor *out, ag_tensor *gout, ag_tensor **gin) {
    ag_tensor *mask = out->in[1], *source = out->in[2];
    if (ag__wants(out, 0) && !(gin[0] = ag_masked_fill(gout, mask, 0))) return ag_last_status();
    if (ag__wants(out, 2)) {
        ag_tensor *g = ag__index_corner(ag_masked_select(gout, mask), AG_SHAPE(ag_numel(source)));
        if (!(gin[2] = ag_reshape(g, ag_shape_of(source)))) return ag_last_status();
    }
    return AG_OK;
}

/* dy = masked_scatter(dx, mask, dsource) */
static ag_tensor *masked_scatter_jvp(ag_tensor *out, ag_tensor *const *tin) {
    ag_tensor *tx = or_zeros(tin[0], out->in[0]), *ts = or_zeros(tin[2], out->in[2]);
    return tx && ts ? ag_masked_scatter(tx, out->in[1], ts) : NULL;
}

/* y = x (broadcast with mask), y[k-th masked place] = source.flat[k];  dx = dy, 0 where masked,  dsource.flat[k] = dy[k-th masked place] */
static const ag_op op_masked_scatter = {.name = "masked_scatter", .grad_fn = "MaskedScatterBackward0",
                                        .backward = masked_scatter_backward, .saves = AG_SAVES_IN1,
                                        .math = "y = x;  y[k-th true of mask] = source.flat[k];  "
                                                "dx = dy, 0 where masked,  dsource.flat[k] = dy[k-th true of mask]",
                                        .backward_graph = masked_scatter_backward_graph, .jvp = masked_scatter_jvp,
                                        .tangent = "ẏ = masked_scatter(ẋ, mask, ṡource)"};

ag_tensor *ag_masked_scatter(ag_tensor *x, const ag_tensor *mask, ag_tensor *source) {
    AG_CHECK_HANDLES(NULL, "masked_scatter", x, mask, source);
    if (!x || !mask || !source) return NULL;
    const char *op = "masked_scatter";
    if (source->dtype != x->dtype)
        return ag__fail_null(AG_ERR_DTYPE, "%s: source is %s but the input is %s (convert one with ag_to_dtype)", op,
                             ag_dtype_name(source->dtype), ag_dtype_name(x->dtype));
    int ndim;
    int64_t shape[AG_MAX_DIMS], *pos = NULL, count;
    if (mask_shape(op, x, mask, &ndim, shape) || ag__check_alloc(op, ndim, shape, x->dtype)) return NULL;
    const bool flat = ag__flat_as(x, ndim, shape) && ag__flat_as(mask, ndim, shape); /* one pass, no list */
    if (flat) count = count_true((const uint8_t *)ag__ptr(mask), ag__numel(ndim, shape));
    else if (mask_positions(mask, ndim, shape, &pos, &count)) return NULL;
    ag_tensor *y = NULL;
    if (count > ag_numel(source)) {
        char s[AG_SHAPE_STR];
        ag__fail(AG_ERR_SHAPE, "%s: the mask selects %lld elements but source %s has only %lld", op, (long long)count,
                 ag__tshape(s, source), (long long)ag_numel(source));
    } else {
        ag_tensor *sc = ag__contig_or_copy(source);
        if (sc && (y = ag__new(x->dtype, ndim, shape)) && flat)
            mask_scatter(ag_dtype_size(x->dtype), ag__ptr(y), ag__ptr(x), ag__ptr(sc), (const uint8_t *)ag__ptr(mask),
                         ag_numel(y), ag_numel(sc));
        else if (y) {
            ag__copy_into(y, x);
            const int64_t es = (int64_t)ag_dtype_size(x->dtype);
            for (int64_t k = 0; k < count; k++) memcpy(ag__ptr(y) + pos[k] * es, ag__ptr(sc) + k * es, (size_t)es);
        }
        ag_release(sc);
    }
    ag__free(pos);
    ag_tensor *in[3] = {x, (ag_tensor *)mask, source};
    if (y && ag__needs_grad(in, 3) && !ag__record(y, &op_masked_scatter, in, 3)) return NULL;
    return y;
}

/* ---- nonzero, argwhere ------------------------------------------------------------------------ */
/* Whether the element at p (of dtype dt) is nonzero; NaN is. */
static inline bool is_nonzero(const char *p, ag_dtype dt) {
    switch (dt) {
    case AG_F32: return *(const float *)p != 0;
    case AG_F64: return *(const double *)p != 0;
    case AG_I64: return *(const int64_t *)p != 0;
    default: return *(const uint8_t *)p != 0;
    }
}

/* A contiguous x of nd >= 1 dims (shape, n > 0 elements) by its element type: its nonzero count,
 * and the [count, nd] list of their coordinates written branch-free (as the mask moves above). */
#define NONZERO_LOOPS(SUF, T)                                                                            \
    static int64_t count_nz_##SUF(const void *xp, int64_t n) {                                           \
        const T *x = xp;                                                                                 \
        int64_t c = 0;                                                                                   \
        for (int64_t k = 0; k < n; k++) c += x[k] != 0;                                                  \
        return c;                                                                                        \
    }                                                                                                    \
    static void list_nz_##SUF(int64_t *restrict r, const void *xp, int nd, const int64_t *shape, int64_t n, \
                              int64_t count) {                                                           \
        const T *restrict x = xp;                                                                        \
        int64_t spare[AG_MAX_DIMS], pos[AG_MAX_DIMS] = {0}, c = 0;                                       \
        const int64_t inner = shape[nd - 1];                                                             \
        for (int64_t o = 0; o < n; o += inner) {                                                         \
            if (nd <= 2) /* a row's coordinates: (j) or (pos[0], j), two stores at most an element */   \
                for (int64_t j = 0; j < inner; j++) {                                                    \
                    int64_t *to = c < count ? r + c * nd : spare;                                        \
                    to[0] = pos[0];                                                                      \
                    to[nd - 1] = j;                                                                      \
                    c += x[o + j] != 0;                                                                  \
                }                                                                                        \
            else                                                                                         \
                for (int64_t j = 0; j < inner; j++) {                                                    \
                    int64_t *to = c < count ? r + c * nd : spare;                                        \
                    for (int q = 0; q < nd - 1; q++) to[q] = pos[q];                                     \
                    to[nd - 1] = j;                                                                      \
                    c += x[o + j] != 0;                                                                  \
                }                                                                                        \
            for (int q = nd - 2; q >= 0 && ++pos[q] == shape[q]; q--) pos[q] = 0;                        \
        }                                                                                                \
    }
NONZERO_LOOPS(f32, float)
NONZERO_LOOPS(f64, double)
NONZERO_LOOPS(i64, int64_t)
NONZERO_LOOPS(u8, uint8_t)

static ag_tensor *nonzero_impl(const char *op, const ag_tensor *x) {
    const int64_t n = ag_numel(x);
    if (n > 0 && x->ndim > 0 && ag__flat_as(x, x->ndim, x->shape)) { /* one count, one branch-free list */
        const int t = x->dtype == AG_F32 ? 0 : x->dtype == AG_F64 ? 1 : x->dtype == AG_I64 ? 2 : 3;
        static int64_t (*const count_nz[4])(const void *, int64_t) = {count_nz_f32, count_nz_f64, count_nz_i64,
                                                                       count_nz_u8};
        static void (*const list_nz[4])(int64_t *, const void *, int, const int64_t *, int64_t, int64_t) = {
            list_nz_f32, list_nz_f64, list_nz_i64, list_nz_u8};
        const int64_t shape[2] = {count_nz[t](ag__ptr(x), n), x->ndim};
        ag_tensor *y = ag__check_alloc(op, 2, shape, AG_I64) ? NULL : ag__new(AG_I64, 2, shape);
        if (y) list_nz[t]((int64_t *)ag__ptr(y), ag__ptr(x), x->ndim, x->shape, n, shape[0]);
        return y;
    }
    int64_t *off = offsets_new(n), count = 0;
    if (!off) return NULL;
    row_major_offsets(x->ndim, x->shape, x->stride, off);
    const int64_t es = (int64_t)ag_dtype_size(x->dtype);
    for (int64_t k = 0; k < n; k++) count += is_nonzero(ag__ptr(x) + off[k] * es, x->dtype);
    const int64_t shape[2] = {count, x->ndim};
    ag_tensor *y = ag__check_alloc(op, 2, shape, AG_I64) ? NULL : ag__new(AG_I64, 2, shape);
    if (y) {
        int64_t *r = (int64_t *)ag__ptr(y), pos[AG_MAX_DIMS] = {0};
        for (int64_t k = 0; k < n; k++) {
            if (is_nonzero(ag__ptr(x) + off[k] * es, x->dtype)) {
                memcpy(r, pos, sizeof(int64_t) * (size_t)x->ndim);
                r += x->ndim;
            }
            for (int j = x->ndim - 1; j >= 0 && ++pos[j] == x->shape[j]; j--) pos[j] = 0;
        }
    }
    ag__free(off);
    return y;
}

/* y[k] = the index of the k-th nonzero of x (row-major);  not differentiable */
static const ag_op op_nonzero = {.name = "nonzero",
                                 .math = "y[k, :] = index of the k-th nonzero of x;  not differentiable"};
static const ag_op op_argwhere = {.name = "argwhere",
                                  .math = "y[k, :] = index of the k-th nonzero of x;  not differentiable"};

ag_tensor *ag_nonzero(const ag_tensor *x) {
    AG_CHECK_HANDLES(NULL, "nonzero", x);
    if (!x) return NULL;
    return nonzero_impl("nonzero", x);
}

ag_tensor *ag_argwhere(const ag_tensor *x) {
    AG_CHECK_HANDLES(NULL, "argwhere", x);
    if (!x) return NULL;
    return nonzero_impl("argwhere", x);
}

const ag_op *const ag__scatter_ops[] = {&op_scatter, &op_scatter_value, &op_scatter_reduce, &op_take, &op_put,
                                        &op_masked_select, &op_masked_scatter, &op_nonzero, &op_argwhere, NULL};
